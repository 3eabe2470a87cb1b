//! Shared pieces of the end-to-end tests: the workspace binaries, one test
//! at a time, named checks that all run and report together, and readers
//! for curl spreads, wrk output, captures and rvsd's counters.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use rvs_lab::demo::{self, Rvsd, Scheduler};
use rvs_lab::Lab;

/// The binaries the tests run, built for the profile the tests run in.
pub(crate) struct Bins {
    pub(crate) rvsd: PathBuf,
    pub(crate) rvsadm: PathBuf,
}

/// Builds rvsd, rvsadm and rvs-decap once per test process (a no-op when
/// they are up to date) into the profile dir of this test binary, so
/// `cargo test -p rvs-lab` works from a clean checkout, then finds them.
pub(crate) fn binaries() -> &'static Bins {
    static BINS: OnceLock<Bins> = OnceLock::new();
    BINS.get_or_init(|| {
        build_binaries();
        Bins {
            rvsd: demo::find_binary("rvsd").unwrap_or_else(|e| panic!("{e}")),
            rvsadm: demo::find_binary("rvsadm").unwrap_or_else(|e| panic!("{e}")),
        }
    })
}

fn build_binaries() {
    let profile_dir = demo::profile_dir().expect("cannot locate the test binary");
    let profile = profile_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let target_dir = profile_dir
        .parent()
        .expect("profile dir has a parent (the target dir)");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut c = Command::new(cargo);
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "-p", "rvsd", "-p", "rvsadm", "-p", "rvs-decap"])
        .arg("--target-dir")
        .arg(target_dir);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            c.arg("--release");
        }
        other => {
            c.args(["--profile", other]);
        }
    }
    eprintln!("e2e: building the workspace binaries: {c:?}");
    let status = c
        .status()
        .unwrap_or_else(|e| panic!("running {c:?}: {e} (is cargo installed?)"));
    assert!(
        status.success(),
        "{c:?} failed ({status}); build them by hand with `cargo build -p rvsd -p rvsadm -p rvs-decap`"
    );
}

/// One mode's suite at a time: each loads the 2-core machine (wrk, rvsd's
/// workers) and concurrent runs would turn bounded checks into flaky ones.
pub(crate) fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Named checks of one suite: each runs even if an earlier one failed, and
/// [`Checks::finish`] fails the test with every failure and rvsd's output.
pub(crate) struct Checks {
    suite: String,
    failures: Vec<String>,
}

impl Checks {
    pub(crate) fn new(suite: impl Into<String>) -> Checks {
        Checks {
            suite: suite.into(),
            failures: Vec::new(),
        }
    }

    pub(crate) fn run(&mut self, name: &str, f: impl FnOnce()) {
        let t = Instant::now();
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(()) => eprintln!("{}: ok     {name} ({:.1?})", self.suite, t.elapsed()),
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panicked".into());
                eprintln!("{}: FAILED {name} ({:.1?})", self.suite, t.elapsed());
                self.failures.push(format!("{name}: {msg}"));
            }
        }
    }

    pub(crate) fn finish(self, rvsd: &Rvsd<'_>) {
        if self.failures.is_empty() {
            return;
        }
        let log = rvsd.log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!(
            "{}: {} check(s) failed:\n- {}\nrvsd running: {}; last lines of its output:\n{}",
            self.suite,
            self.failures.len(),
            self.failures.join("\n- "),
            rvsd.is_running(),
            tail.join("\n")
        );
    }
}

/// Starts over with one service: `rvsadm -C`, then the service.
pub(crate) fn reset(rvsd: &Rvsd<'_>, sched: Scheduler, weights: &[u32]) {
    rvsd.rvsadm(&["-C"]).expect("rvsadm -C");
    rvsd.configure(sched, weights)
        .expect("configuring the service");
}

/// `n` sequential new connections from the client; who answered how often.
pub(crate) fn spread(lab: &Lab, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for i in 0..n {
        let who = demo::request(lab).unwrap_or_else(|e| panic!("request {}: {e}", i + 1));
        *seen.entry(who).or_insert(0) += 1;
    }
    seen
}

/// `rs1 → a, rs2 → b, ...`.
pub(crate) fn counts(per_server: &[usize]) -> BTreeMap<String, usize> {
    per_server
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(i, n)| (format!("rs{}", i + 1), *n))
        .collect()
}

/// What a wrk run reported.
#[derive(Debug)]
pub(crate) struct WrkResult {
    pub(crate) requests: u64,
    /// Lines reporting errors (`Socket errors: ...`, `Non-2xx ...`).
    pub(crate) errors: Vec<String>,
}

/// The wrk command line the tests use: keep-alive, bounded in time.
pub(crate) fn wrk_args(seconds: u32) -> Vec<String> {
    [
        "wrk",
        "-t2",
        "-c20",
        &format!("-d{seconds}s"),
        "--timeout",
        "3s",
        &format!("http://{}/", rvs_lab::VIP),
    ]
    .map(String::from)
    .to_vec()
}

pub(crate) fn parse_wrk(out: &str) -> WrkResult {
    let requests = out
        .lines()
        .find_map(|l| {
            let (n, _) = l.trim().split_once(" requests in ")?;
            n.trim().parse().ok()
        })
        .unwrap_or_else(|| panic!("no `N requests in` line in wrk's output:\n{out}"));
    let errors = out
        .lines()
        .filter(|l| l.contains("Socket errors") || l.contains("Non-2xx"))
        .map(|l| l.trim().to_owned())
        .collect();
    WrkResult { requests, errors }
}

/// The frames of a pcap file (read with `pcap-file`).
pub(crate) fn pcap_frames(path: &std::path::Path) -> Vec<Vec<u8>> {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut r = pcap_file::pcap::PcapReader::new(f)
        .unwrap_or_else(|e| panic!("{} is not a pcap: {e}", path.display()));
    assert_eq!(
        r.header().datalink,
        pcap_file::DataLink::ETHERNET,
        "{}: link type",
        path.display()
    );
    let mut frames = Vec::new();
    while let Some(p) = r.next_packet() {
        frames.push(p.expect("pcap record").data.into_owned());
    }
    frames
}

/// MAC of `dev` in `role`.
pub(crate) fn mac(lab: &Lab, role: &str, dev: &str) -> [u8; 6] {
    let s = lab
        .exec(role, &["cat", &format!("/sys/class/net/{dev}/address")])
        .unwrap_or_else(|e| panic!("MAC of {dev} in {role}: {e}"));
    let mut m = [0u8; 6];
    let parts: Vec<&str> = s.trim().split(':').collect();
    assert_eq!(parts.len(), 6, "MAC of {dev} in {role}: {s:?}");
    for (b, p) in m.iter_mut().zip(parts) {
        *b = u8::from_str_radix(p, 16).expect("hex MAC");
    }
    m
}

/// rvsd's datapath counters (`counters` of `GET /v1/services`), read over
/// the control socket with curl as an operator could.
pub(crate) fn rvsd_counters(lab: &Lab, rvsd: &Rvsd<'_>) -> BTreeMap<String, u64> {
    let sock = rvsd.socket().display().to_string();
    let body = lab
        .exec(
            "dir",
            &[
                "curl",
                "-sf",
                "-m",
                "5",
                "--unix-socket",
                &sock,
                "http://rvsd/v1/services",
            ],
        )
        .expect("GET /v1/services on rvsd's socket");
    let v: serde_json::Value = serde_json::from_str(&body).expect("listing is JSON");
    let Some(obj) = v.get("counters").and_then(|c| c.as_object()) else {
        panic!("rvsd's listing has no `counters` object: {body}");
    };
    obj.iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
        .collect()
}

/// Counters that changed between `a` and `b`, as `name +delta`.
pub(crate) fn deltas(
    a: &BTreeMap<String, u64>,
    b: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    b.iter()
        .filter_map(|(k, v)| {
            let d = v.saturating_sub(a.get(k).copied().unwrap_or(0));
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

/// Established TCP connections to port 80 in `role`.
pub(crate) fn established_http(lab: &Lab, role: &str) -> usize {
    lab.exec(
        role,
        &[
            "ss",
            "-Htn",
            "state",
            "established",
            "(",
            "sport",
            "=",
            ":80",
            ")",
        ],
    )
    .unwrap_or_else(|e| panic!("ss in {role}: {e}"))
    .lines()
    .filter(|l| !l.trim().is_empty())
    .count()
}

/// The `Tcp: EstabResets` counter of `role`'s namespace: established
/// connections that were reset, whoever sent the RST.
pub(crate) fn estab_resets(lab: &Lab, role: &str) -> u64 {
    let snmp = lab
        .exec(role, &["cat", "/proc/net/snmp"])
        .unwrap_or_else(|e| panic!("/proc/net/snmp in {role}: {e}"));
    let tcp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Tcp:")).collect();
    let [names, values] = tcp[..] else {
        panic!("no Tcp lines in /proc/net/snmp of {role}:\n{snmp}");
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "EstabResets")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no EstabResets in /proc/net/snmp of {role}"))
}
