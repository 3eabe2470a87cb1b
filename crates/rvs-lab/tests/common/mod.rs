//! Shared pieces of the end-to-end tests: the workspace binaries, one test
//! at a time, named checks that all run and report together, rvsd run from
//! a configuration file ([`Daemon`]), the lab's nginx stopped and started
//! again ([`Nginx`]), and readers for curl spreads, wrk output, captures,
//! rvsd's counters and health entries.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use rvs_lab::demo::{self, Rvsd, Scheduler};
use rvs_lab::{rs_ip, DirectorKind, Lab, LabError, LabSpec, Mode, Spawned};

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

    pub(crate) fn finish(self, rvsd: &impl Running) {
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

/// What [`Checks::finish`] shows of the rvsd under test.
pub(crate) trait Running {
    fn is_running(&self) -> bool;
    fn log(&self) -> String;
}

impl Running for Rvsd<'_> {
    fn is_running(&self) -> bool {
        Rvsd::is_running(self)
    }
    fn log(&self) -> String {
        Rvsd::log(self)
    }
}

impl Running for Daemon<'_> {
    fn is_running(&self) -> bool {
        self.process.as_ref().is_some_and(Spawned::is_running)
    }
    fn log(&self) -> String {
        Daemon::log(self)
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

/// The frames of a pcap file (read with `rvs_lab::read_pcap`).
pub(crate) fn pcap_frames(path: &std::path::Path) -> Vec<Vec<u8>> {
    let pcap = rvs_lab::read_pcap(path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        pcap.linktype,
        rvs_lab::LINKTYPE_ETHERNET,
        "{}: link type",
        path.display()
    );
    pcap.frames
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

/// rvsd's datapath counters (`counters` of `GET /v1/services`).
pub(crate) fn rvsd_counters(_lab: &Lab, rvsd: &Rvsd<'_>) -> BTreeMap<String, u64> {
    counters_of(&get_listing(rvsd.socket()))
}

/// `GET /v1/services` on rvsd's control socket, as an operator's
/// `curl --unix-socket` would send it, straight from the test process: a
/// Unix socket is a file, reachable from any network namespace, and no
/// process is started per poll (under the heaviest loads `ip netns exec`
/// alone took seconds).
pub(crate) fn get_listing(socket: &std::path::Path) -> serde_json::Value {
    use std::io::{Read, Write};
    let fail = |what: &str| -> ! { panic!("GET /v1/services on {}: {what}", socket.display()) };
    let mut s = std::os::unix::net::UnixStream::connect(socket)
        .unwrap_or_else(|e| fail(&format!("connect: {e}")));
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .and_then(|()| s.set_write_timeout(Some(Duration::from_secs(10))))
        .unwrap_or_else(|e| fail(&format!("timeouts: {e}")));
    s.write_all(b"GET /v1/services HTTP/1.1\r\nHost: rvsd\r\nConnection: close\r\n\r\n")
        .unwrap_or_else(|e| fail(&format!("send: {e}")));
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .unwrap_or_else(|e| fail(&format!("read: {e}")));
    let text = String::from_utf8_lossy(&raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        fail(&format!("no HTTP header in {text:?}"));
    };
    if !head.starts_with("HTTP/1.1 200") {
        fail(&format!("answered {head:?}"));
    }
    serde_json::from_str(body).unwrap_or_else(|e| fail(&format!("not JSON ({e}): {body}")))
}

/// The `counters` object of a listing (`GET /v1/services`).
pub(crate) fn counters_of(listing: &serde_json::Value) -> BTreeMap<String, u64> {
    let Some(obj) = listing.get("counters").and_then(|c| c.as_object()) else {
        panic!("rvsd's listing has no `counters` object: {listing}");
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

/// rvsd in the lab's director namespace, started on a configuration file
/// of ours (which may carry services, checks, `[[fwmark]]` rules or
/// `fast_path = false`), and the rvsadm that drives it. The lab's teardown
/// stops it if [`Daemon::stop`] was not called.
pub(crate) struct Daemon<'a> {
    pub(crate) lab: &'a Lab,
    pub(crate) process: Option<Spawned>,
    pub(crate) rvsd: PathBuf,
    pub(crate) rvsadm: PathBuf,
    pub(crate) config: PathBuf,
    pub(crate) socket: PathBuf,
    /// More command-line arguments (e.g. `--pin-dir`).
    pub(crate) args: Vec<String>,
}

impl<'a> Daemon<'a> {
    /// Writes `interfaces = [front, back]` plus `rest` to the lab dir and
    /// starts rvsd on it; returns once it says it is ready and answers.
    pub(crate) fn start(lab: &'a Lab, rest: &str) -> Daemon<'a> {
        Self::start_with(lab, rest, &[])
    }

    /// [`Daemon::start`] with more command-line arguments.
    pub(crate) fn start_with(lab: &'a Lab, rest: &str, args: &[&str]) -> Daemon<'a> {
        let bins = binaries();
        let mut d = Daemon {
            lab,
            process: None,
            rvsd: bins.rvsd.clone(),
            rvsadm: bins.rvsadm.clone(),
            config: lab.dir().join("rvsd-file.toml"),
            socket: lab.dir().join("rvsd-file.sock"),
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        d.write_config(rest);
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        let (rvsd, config, socket) = (
            self.rvsd.display().to_string(),
            self.config.display().to_string(),
            self.socket.display().to_string(),
        );
        let mut argv = vec![
            rvsd.as_str(),
            "--config",
            config.as_str(),
            "--socket",
            socket.as_str(),
        ];
        argv.extend(self.args.iter().map(String::as_str));
        let p = self.lab.spawn("dir", &argv).expect("starting rvsd");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(p.is_running(), "rvsd exited while starting:\n{}", p.log());
            if p.log().contains("rvsd: ready") && self.try_rvsadm(&["-Ln"]).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "rvsd not ready within 30 s:\n{}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.process = Some(p);
    }

    /// SIGTERM and wait (rvsd detaches XDP and removes its socket), then the
    /// same binary on the same config again: an empty table.
    pub(crate) fn restart(&mut self) {
        let p = self.process.take().expect("rvsd runs");
        let (status, log) = p.stop(Duration::from_secs(5)).expect("stopping rvsd");
        assert!(status.success(), "rvsd exited with {status}:\n{log}");
        self.spawn();
    }

    /// Stops rvsd with `signal` (SIGUSR2: for a successor; SIGKILL: a
    /// crash), then starts the same binary on the same files again.
    /// Returns the old process's output.
    pub(crate) fn stop_and_start(&mut self, signal: libc::c_int) -> String {
        let p = self.process.take().expect("rvsd runs");
        let (status, log) = p
            .stop_with(signal, Duration::from_secs(5))
            .expect("stopping rvsd");
        if signal == libc::SIGKILL {
            assert!(!status.success(), "rvsd survived SIGKILL:\n{log}");
        } else {
            assert!(status.success(), "rvsd exited with {status}:\n{log}");
        }
        self.spawn();
        log
    }

    /// Replaces the configuration file (rvsd reads it on reload only).
    pub(crate) fn write_config(&self, rest: &str) {
        std::fs::write(
            &self.config,
            format!("interfaces = [\"front\", \"back\"]\n{rest}"),
        )
        .unwrap_or_else(|e| panic!("writing {}: {e}", self.config.display()));
    }

    pub(crate) fn process(&self) -> &Spawned {
        self.process.as_ref().expect("rvsd was started")
    }

    /// What rvsd has printed so far.
    pub(crate) fn log(&self) -> String {
        self.process.as_ref().map(Spawned::log).unwrap_or_default()
    }

    pub(crate) fn try_rvsadm(&self, args: &[&str]) -> Result<String, LabError> {
        let env = format!("RVSD_SOCKET={}", self.socket.display());
        let bin = self.rvsadm.display().to_string();
        let mut argv: Vec<&str> = vec!["env", &env, &bin];
        argv.extend_from_slice(args);
        self.lab.exec_timeout("dir", &argv, Duration::from_secs(10))
    }

    pub(crate) fn rvsadm(&self, args: &[&str]) -> String {
        self.try_rvsadm(args)
            .unwrap_or_else(|e| panic!("rvsadm {}: {e}", args.join(" ")))
    }

    /// `GET /v1/services` on the control socket, as JSON.
    pub(crate) fn listing(&self) -> serde_json::Value {
        get_listing(&self.socket)
    }

    /// The listing's datapath counters.
    pub(crate) fn counters(&self) -> BTreeMap<String, u64> {
        counters_of(&self.listing())
    }

    /// SIGTERM; rvsd must exit cleanly.
    pub(crate) fn stop(mut self) {
        if let Some(p) = self.process.take() {
            let (status, log) = p.stop(Duration::from_secs(5)).expect("stopping rvsd");
            assert!(
                status.success(),
                "rvsd exited with {status} on SIGTERM:\n{log}"
            );
        }
    }
}

/// The `health` entry of real server rs`n` (port 80) of the service on
/// port 80: (up, reason).
pub(crate) fn health_of(listing: &serde_json::Value, n: usize) -> Option<(bool, String)> {
    let ip = rs_ip(n).to_string();
    listing["health"].as_array()?.iter().find_map(|h| {
        (h["addr"] == ip.as_str() && h["port"] == 80 && h["service"]["port"] == 80).then(|| {
            (
                h["up"].as_bool().unwrap_or(false),
                h["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
    })
}

/// The nginx of a real server as the lab started it: its command line (read
/// from /proc through the pid file the lab's config names), to stop it with
/// `-s stop` and start it again the same way.
pub(crate) struct Nginx {
    role: String,
    argv: Vec<String>,
}

impl Nginx {
    pub(crate) fn of(lab: &Lab, n: usize) -> Nginx {
        let role = format!("rs{n}");
        let pid_file = lab.dir().join(&role).join("nginx.pid");
        let pid = std::fs::read_to_string(&pid_file)
            .unwrap_or_else(|e| panic!("{}: {e}", pid_file.display()));
        let pid = pid.trim();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .unwrap_or_else(|e| panic!("command line of {role}'s nginx (pid {pid}): {e}"));
        let mut argv: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        // nginx retitles its master as `nginx: master process ARGV...`
        // (one string; the lab's paths hold no spaces).
        if let [title] = &argv[..] {
            if let Some(rest) = title.strip_prefix("nginx: master process ") {
                argv = rest.split_whitespace().map(String::from).collect();
            }
        }
        assert!(
            argv.first().is_some_and(|a| a.ends_with("nginx")),
            "pid {pid} of {role} is not nginx: {argv:?}"
        );
        Nginx { role, argv }
    }

    /// `nginx -s stop` with the lab's options; returns once port 80 refuses.
    pub(crate) fn stop(&self, lab: &Lab) {
        let mut argv: Vec<&str> = self.argv.iter().map(String::as_str).collect();
        argv.extend(["-s", "stop"]);
        lab.exec(&self.role, &argv)
            .unwrap_or_else(|e| panic!("stopping nginx in {}: {e}", self.role));
        let deadline = Instant::now() + Duration::from_secs(5);
        while lab
            .exec_timeout(
                &self.role,
                &["curl", "-sf", "-m", "1", "http://127.0.0.1/"],
                Duration::from_secs(3),
            )
            .is_ok()
        {
            assert!(
                Instant::now() < deadline,
                "nginx of {} still serving 5 s after -s stop",
                self.role
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts it again as the lab did; returns once it serves its page.
    pub(crate) fn start(&self, lab: &Lab) {
        let argv: Vec<&str> = self.argv.iter().map(String::as_str).collect();
        lab.spawn(&self.role, &argv)
            .unwrap_or_else(|e| panic!("starting nginx in {}: {e}", self.role));
        let body = lab
            .wait_http(&self.role, "http://127.0.0.1/", Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("restarted nginx of {}: {e}", self.role));
        assert_eq!(body.trim(), self.role, "restarted nginx serves its page");
    }
}

/// Runs one test: builds the lab of `spec`, then `body`; on failure the
/// last lines of every rvsd `body` started are printed, and the lab (with
/// everything it runs) is torn down either way.
pub(crate) fn with_lab(name: &str, spec: LabSpec, body: impl FnOnce(&Lab)) {
    let _one_at_a_time = serial();
    binaries();
    let started = Instant::now();
    let lab = Lab::build(spec).unwrap_or_else(|e| panic!("{name}: building the lab: {e}"));
    eprintln!("{name}: lab {} up", lab.prefix());
    let r = catch_unwind(AssertUnwindSafe(|| body(&lab)));
    if r.is_err() {
        let logs: Vec<PathBuf> = std::fs::read_dir(lab.dir())
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with("dir-rvsd"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        for l in logs {
            let text = std::fs::read_to_string(&l).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!(
                "{name}: last lines of {}:\n{}",
                l.display(),
                tail.join("\n")
            );
        }
    }
    drop(lab);
    eprintln!("{name}: done in {:.1?}", started.elapsed());
    if let Err(p) = r {
        resume_unwind(p);
    }
}

/// The numeric columns (Weight, ActiveConn, InActConn, or whatever the
/// listing prints) of real server rs`n` (port 80) in a one-service `-Ln`,
/// with the method word dropped.
pub(crate) fn dest_columns(list: &str, n: usize) -> Option<Vec<u64>> {
    let want = format!("{}:80", rs_ip(n));
    list.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next()? == "->" && w.next()? == want).then(|| w.filter_map(|x| x.parse().ok()).collect())
    })
}

/// The lab most end-to-end tests run in: three nginx servers wired for
/// `mode`, no director started, `queues` queues per veth, a fresh prefix.
pub(crate) fn lab_spec(mode: Mode, queues: u32) -> LabSpec {
    LabSpec {
        prefix: rvs_lab::unique_prefix(),
        mode,
        servers: 3,
        director: DirectorKind::None,
        decap_bin: None,
        queues,
        directors: 1,
        vip_route: rvs_lab::VipRoute::FirstDirector,
    }
}

/// The configuration file's word for `mode`'s forwarding method.
pub(crate) fn method_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Dr => "dr",
        Mode::Nat => "nat",
        Mode::Tun => "tun",
        Mode::FullNat => "fullnat",
    }
}

/// A TCP service on VIP:80, round robin, with real servers `n` (port 80)
/// forwarded by `method` (`dr`, `nat`, `tun`, `fullnat`: from the lab's
/// first local address), as rvsd's file writes it.
pub(crate) fn rr_service(method: &str, servers: &[usize]) -> String {
    let mut s = format!(
        "[[service]]\nprotocol = \"tcp\"\naddress = \"{}\"\nport = 80\nscheduler = \"rr\"\n",
        rvs_lab::VIP
    );
    if method == "fullnat" {
        s.push_str(&format!(
            "local_addresses = [\"{}\"]\n",
            rvs_lab::LOCAL_IPS[0]
        ));
    }
    for n in servers {
        s.push_str(&format!(
            "  [[service.real_server]]\n  address = \"{}\"\n  port = 80\n  method = \"{method}\"\n",
            rs_ip(*n)
        ));
    }
    s
}
