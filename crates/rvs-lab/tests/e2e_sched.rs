//! End to end for the schedulers beyond rr/wrr, persistence, thresholds and
//! `rvsadm -S`/`-R`: the real rvsd in a DR lab's director namespace,
//! configured with the real rvsadm, serving curl from the client (with extra
//! client addresses where a scheduler hashes the source). Needs root; builds
//! rvsd/rvsadm/rvs-decap itself if needed.
//!
//! Every test builds its own lab (own prefix) and runs its own rvsd, started
//! as [`common::Daemon`] rather than `demo::Rvsd` because the hashing test
//! restarts the same daemon on the same config file (which may carry more
//! than the interfaces, e.g. `[[fwmark]]` rules).
//! Loads are a few dozen requests and at most 30 held connections; closed
//! connections are made to expire in seconds with `--set 0 2 0`.

// Only some of the shared helpers are used here.
#[allow(dead_code)]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use rvs_lab::{rs_ip, unique_prefix, DirectorKind, Lab, LabError, LabSpec, Mode, Spawned};
use rvs_lab::{CLIENT_IP, VIP};

use common::{dest_columns, Daemon};

/// `-t` argument of the lab's service.
fn svc() -> String {
    format!("{VIP}:80")
}

// What only these tests ask of rvsd; the rest is `common::Daemon`.
impl Daemon<'_> {
    /// `rvsadm -R` with `input` on stdin (through a file in the lab dir).
    fn restore(&self, input: &str) -> Result<String, LabError> {
        let file = self.lab.dir().join("restore.txt");
        std::fs::write(&file, input).expect("writing the restore input");
        let script = format!(
            "RVSD_SOCKET='{}' '{}' -R < '{}'",
            self.socket.display(),
            self.rvsadm.display(),
            file.display()
        );
        self.lab
            .exec_timeout("dir", &["sh", "-c", &script], Duration::from_secs(10))
    }

    /// Adds a TCP service on the VIP with `opts` after `-s`, then rs1..rsN
    /// (DR) with `weights`, after clearing the table.
    fn service(&self, sched_opts: &[&str], weights: &[u32]) {
        self.rvsadm(&["-C"]);
        let s = svc();
        let mut a = vec!["-A", "-t", &s, "-s"];
        a.extend_from_slice(sched_opts);
        self.rvsadm(&a);
        for (i, w) in weights.iter().enumerate() {
            self.add_server(i + 1, *w, &[]);
        }
    }

    fn add_server(&self, n: usize, weight: u32, extra: &[&str]) {
        let (s, rs, w) = (svc(), rs_ip(n).to_string(), weight.to_string());
        let mut a = vec!["-a", "-t", &s, "-r", &rs, "-g", "-w", &w];
        a.extend_from_slice(extra);
        self.rvsadm(&a);
    }

    /// `(ActiveConn, InActConn)` of real server `n` in a one-service `-Ln`.
    fn conns_of(&self, n: usize) -> (u64, u64) {
        let list = self.rvsadm(&["-Ln"]);
        dest_columns(&list, n)
            .map(|c| (c[1], c[2]))
            .unwrap_or_else(|| panic!("rs{n} not in the listing:\n{list}"))
    }

    /// Polls `-Ln` until rs`n` has `active` active connections.
    fn wait_active(&self, n: usize, active: u64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (a, _) = self.conns_of(n);
            if a == active {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "rs{n} should show ActiveConn {active}, has {a}:\n{}",
                self.rvsadm(&["-Ln"])
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls `-Lnc` until the connection table is empty (closed connections
    /// and templates expired), within `bound`.
    fn wait_no_conns(&self, bound: Duration) {
        let deadline = Instant::now() + bound;
        loop {
            let list = self.rvsadm(&["-Lnc"]);
            if conn_lines(&list).is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "connections still listed after {bound:?}:\n{list}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Entries of `-Lnc` (without the two title lines).
fn conn_lines(list: &str) -> Vec<&str> {
    list.lines()
        .skip(2)
        .filter(|l| !l.trim().is_empty())
        .collect()
}

/// Builds the lab, starts rvsd, runs `body`; on failure prints rvsd's last
/// lines before the lab (and rvsd with it) is torn down.
fn with_lab(name: &str, extra_config: &str, body: impl FnOnce(&Lab, &mut Daemon<'_>)) {
    let _one_at_a_time = common::serial();
    common::binaries();
    let started = Instant::now();
    let lab = Lab::build(LabSpec {
        prefix: unique_prefix(),
        mode: Mode::Dr,
        servers: 3,
        director: DirectorKind::None,
        decap_bin: None,
        queues: 1,
        directors: 1,
        vip_route: rvs_lab::VipRoute::FirstDirector,
    })
    .unwrap_or_else(|e| panic!("{name}: building the lab: {e}"));
    let mut d = Daemon::start(&lab, extra_config);
    eprintln!("{name}: lab {} and rvsd up", lab.prefix());
    if let Err(p) = catch_unwind(AssertUnwindSafe(|| body(&lab, &mut d))) {
        let log = d.log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        eprintln!(
            "{name}: FAILED; rvsd running: {}; last lines of its output:\n{}",
            d.process.as_ref().is_some_and(Spawned::is_running),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
        resume_unwind(p);
    }
    if let Some(p) = d.process.take() {
        let (status, log) = p.stop(Duration::from_secs(5)).expect("stopping rvsd");
        assert!(
            status.success(),
            "{name}: rvsd exited with {status}:\n{log}"
        );
    }
    drop(lab);
    eprintln!("{name}: done in {:.1?}", started.elapsed());
}

/// One request per entry, sequentially in one shell in the client: `curl`
/// with the entry's extra arguments to `url`. Returns who answered each.
fn who(lab: &Lab, url: &str, extra: &[Vec<String>]) -> Vec<String> {
    let mut script = String::new();
    for e in extra {
        script.push_str(&format!(
            "curl -s -S -m 3 {} {url} || echo FAIL\n",
            e.join(" ")
        ));
    }
    let out = lab
        .exec_timeout("client", &["sh", "-c", &script], Duration::from_secs(60))
        .expect("curls from the client");
    let got: Vec<String> = out.lines().map(|l| l.trim().to_owned()).collect();
    assert_eq!(
        got.len(),
        extra.len(),
        "one answer per request expected:\n{out}"
    );
    assert!(
        !got.iter().any(|g| g == "FAIL"),
        "requests failed: {got:?} for\n{script}"
    );
    got
}

fn vip_url() -> String {
    format!("http://{VIP}/")
}

/// `n` requests from the client's main address.
fn plain(lab: &Lab, n: usize) -> Vec<String> {
    who(lab, &vip_url(), &vec![Vec::new(); n])
}

/// One request from source address `src`.
fn from(lab: &Lab, src: &str) -> String {
    who(lab, &vip_url(), &[vec!["--interface".into(), src.into()]]).remove(0)
}

fn tally(v: &[String]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for s in v {
        *m.entry(s.clone()).or_insert(0) += 1;
    }
    m
}

/// Extra client addresses 10.0.1.10 ..= 10.0.1.(10+n-1) on the client's eth0.
fn client_addrs(lab: &Lab, n: u8) -> Vec<String> {
    let addrs: Vec<String> = (10..10 + n).map(|i| format!("10.0.1.{i}")).collect();
    let script: String = addrs
        .iter()
        .map(|a| format!("ip addr add {a}/24 dev eth0\n"))
        .collect();
    lab.exec("client", &["sh", "-c", &script])
        .expect("adding client addresses");
    addrs
}

/// Long-lived keep-alive connections: `n` connections to the VIP, one
/// request each (prints who answered), then held until stopped (at most
/// 90 s).
const HOLD: &str = r#"
import socket, sys, time
vip, n = sys.argv[1], int(sys.argv[2])
socks = []
for i in range(n):
    s = socket.create_connection((vip, 80), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n")
    buf = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            sys.exit("connection %d closed before the answer" % i)
        buf += chunk
        head, sep, body = buf.partition(b"\r\n\r\n")
        if sep:
            length = [int(l.split(b":")[1]) for l in head.split(b"\r\n")
                      if l.lower().startswith(b"content-length:")][0]
            if len(body) >= length:
                break
    print(body.decode().strip(), flush=True)
    socks.append(s)
print("ready", flush=True)
time.sleep(90)
"#;

/// Starts [`HOLD`] in the client with `n` connections and waits until all
/// are answered; returns the holder and who answered.
fn hold(lab: &Lab, n: usize) -> (Spawned, BTreeMap<String, usize>) {
    let ns = n.to_string();
    let vip = VIP.to_string();
    let p = lab
        .spawn("client", &["python3", "-c", HOLD, &vip, &ns])
        .expect("starting the connection holder");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let log = p.log();
        if log.lines().any(|l| l == "ready") {
            let answers: Vec<String> = log
                .lines()
                .filter(|l| l.starts_with("rs"))
                .map(str::to_owned)
                .collect();
            assert_eq!(answers.len(), n, "holder output:\n{log}");
            return (p, tally(&answers));
        }
        assert!(
            p.is_running() && Instant::now() < deadline,
            "holder of {n} connections not ready:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn release(p: Spawned) {
    let _ = p.stop(Duration::from_secs(2));
}

fn rs(n: usize) -> String {
    format!("rs{n}")
}

// ---------------------------------------------------------------------------

/// `-p 5`: one client stays on one server over 15 connections, `-Lnc` shows
/// its template (client port 0), the template expires `p` seconds after the
/// last connection, and the client then follows rr again.
#[test]
fn persistence_holds_then_lets_go() {
    with_lab("persistence", "", |lab, d| {
        let other = client_addrs(lab, 1).remove(0);
        d.rvsadm(&["--set", "0", "2", "0"]);
        d.service(&["rr", "-p", "5"], &[1, 1, 1]);
        let first = plain(lab, 15);
        let last_use = Instant::now();
        let t = tally(&first);
        assert_eq!(t.len(), 1, "15 connections of one client: {t:?}");
        let s = first[0].clone();
        let n: usize = s[2..].parse().expect("rsN");

        let list = d.rvsadm(&["-Lnc"]);
        let template = format!("{CLIENT_IP}:0");
        let tline = conn_lines(&list)
            .into_iter()
            .find(|l| l.split_whitespace().nth(3) == Some(template.as_str()))
            .unwrap_or_else(|| panic!("no template with {template} in -Lnc:\n{list}"));
        let w: Vec<&str> = tline.split_whitespace().collect();
        assert_eq!(w[0], "TCP", "template line {tline:?}");
        assert_eq!(w[4], svc(), "template line {tline:?}");
        assert_eq!(w[5], format!("{}:80", rs_ip(n)), "template line {tline:?}");

        // Wait until the template is gone: not before the timeout.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let list = d.rvsadm(&["-Lnc"]);
            if !list.contains(&template) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "template still there 20 s after the last connection:\n{list}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let gone_after = last_use.elapsed();
        eprintln!("  template of {CLIENT_IP} gone {gone_after:.1?} after its last use");
        assert!(
            gone_after >= Duration::from_secs(4),
            "template with -p 5 expired after only {gone_after:?}"
        );

        // The rr cursor has not moved since the first connection (templates
        // answered them all): another client gets the next server, and our
        // client, scheduled again, the one after — not its old one.
        let b = from(lab, &other);
        let again = from(lab, &CLIENT_IP.to_string());
        eprintln!("  before: {s}; after expiry: other client {b}, our client {again}");
        assert_ne!(b, s, "rr after {s}: another client");
        assert_ne!(
            again, s,
            "after expiry the client is scheduled anew (rr: third server)"
        );
        assert_ne!(again, b, "rr: three connections, three servers");

        // And within the timeout it would have stayed: a fresh template.
        let stay = plain(lab, 5);
        assert_eq!(tally(&stay).len(), 1, "persistent again: {stay:?}");
        assert_eq!(stay[0], again, "the new template holds");
    });
}

/// Destinations of the dh check: 10.0.100.32 ..= .51, one dh service each
/// (same servers, same order), routed by the router to the director and
/// held by every server on `lo` (DR). Plain services rather than one
/// fwmark service over them: rvsd does not yet redirect traffic of
/// `[[fwmark]]` rule addresses in its XDP filter (see the report).
fn dh_destinations() -> Vec<String> {
    (32..52).map(|i| format!("10.0.100.{i}")).collect()
}

/// A map key → who answered, made twice in a row (each key must get the
/// same server both times).
fn stable_map(
    lab: &Lab,
    what: &str,
    keys: &[String],
    req: impl Fn(&str) -> (String, Vec<String>),
) -> BTreeMap<String, String> {
    let mut rounds = Vec::new();
    for _ in 0..2 {
        let mut m = BTreeMap::new();
        for k in keys {
            let (url, extra) = req(k);
            m.insert(k.clone(), who(lab, &url, &[extra]).remove(0));
        }
        rounds.push(m);
    }
    assert_eq!(
        rounds[0], rounds[1],
        "{what}: every key should get the same server again"
    );
    rounds.remove(0)
}

/// The servers a map uses.
fn servers_of(m: &BTreeMap<String, String>) -> BTreeSet<&str> {
    m.values().map(String::as_str).collect()
}

/// sh and mh map 20 client addresses, dh 20 destination addresses, each to
/// a fixed server, over more than one server, identically after an rvsd
/// restart with the same configuration; dh ignores the source (all 20
/// clients to one server); sh with `-b sh-port` spreads the source ports of
/// one address where plain sh keeps them together.
#[test]
fn hashing_schedulers_map_sources_to_fixed_servers() {
    with_lab("hashing", "", |lab, d| {
        // The sh checks below pick source ports 41000..42020 themselves:
        // keep the client's ephemeral ports away from them, or an earlier
        // connection's TIME_WAIT on the same 4-tuple refuses one (a flake).
        lab.set_sysctl("client", "net.ipv4.ip_local_reserved_ports", "41000-42019")
            .expect("reserving the test's source ports");
        let clients = client_addrs(lab, 20);
        let dests = dh_destinations();
        let mut script = format!(
            "ip route add 10.0.100.32/27 via {}\n",
            rvs_lab::DIR_FRONT_IP
        );
        lab.exec("router", &["sh", "-c", &script])
            .expect("routing the dh destinations to the director");
        script = dests
            .iter()
            .map(|a| format!("ip addr add {a}/32 dev lo\n"))
            .collect();
        for n in 1..=3 {
            lab.exec(&rs(n), &["sh", "-c", &script])
                .expect("dh destinations on the servers' lo");
        }
        let by_source = |k: &str| (vip_url(), vec!["--interface".to_owned(), k.to_owned()]);
        let by_dest = |k: &str| (format!("http://{k}/"), Vec::new());
        let dh_setup = |d: &Daemon<'_>| {
            let mut rules = String::from("-C\n");
            for a in &dests {
                rules.push_str(&format!("-A -t {a}:80 -s dh\n"));
                for n in 1..=3 {
                    rules.push_str(&format!("-a -t {a}:80 -r {} -g -w 1\n", rs_ip(n)));
                }
            }
            d.restore(&rules).expect("rvsadm -R of the dh services");
        };

        let maps = |d: &Daemon<'_>| -> Vec<BTreeMap<String, String>> {
            let mut out = Vec::new();
            for sched in ["sh", "mh"] {
                d.service(&[sched], &[1, 1, 1]);
                out.push(stable_map(lab, sched, &clients, by_source));
            }
            dh_setup(d);
            out.push(stable_map(lab, "dh", &dests, by_dest));
            // dh on the VIP: one destination, whatever the source.
            d.service(&["dh"], &[1, 1, 1]);
            out.push(stable_map(lab, "dh on the VIP", &clients, by_source));
            out
        };
        let before = maps(d);
        for (what, m) in ["sh", "mh", "dh"].iter().zip(&before) {
            eprintln!("  {what}: {:?}", servers_of(m));
            assert!(
                servers_of(m).len() > 1,
                "{what}: 20 keys all on one server: {m:?}"
            );
        }
        assert_eq!(
            servers_of(&before[3]).len(),
            1,
            "dh hashes the destination: 20 clients of one VIP on one server: {:?}",
            before[3]
        );

        d.restart();
        let after = maps(d);
        for (what, (a, b)) in ["sh", "mh", "dh", "dh on the VIP"]
            .iter()
            .zip(before.iter().zip(&after))
        {
            assert_eq!(a, b, "{what}: the mapping changed across an rvsd restart");
        }

        // sh on source ports: one address, 20 source ports.
        let ports =
            |base: u16| -> Vec<String> { (base..base + 20).map(|p| p.to_string()).collect() };
        let by_port = |k: &str| (vip_url(), vec!["--local-port".to_owned(), k.to_owned()]);
        d.service(&["sh"], &[1, 1, 1]);
        let plain_sh: Vec<String> = ports(41000)
            .iter()
            .map(|p| who(lab, &vip_url(), &[by_port(p).1]).remove(0))
            .collect();
        assert_eq!(
            tally(&plain_sh).len(),
            1,
            "plain sh: one address is one server whatever its port: {plain_sh:?}"
        );
        d.service(&["sh", "-b", "sh-port"], &[1, 1, 1]);
        let port_sh: Vec<String> = ports(42000)
            .iter()
            .map(|p| who(lab, &vip_url(), &[by_port(p).1]).remove(0))
            .collect();
        eprintln!("  sh-port: {:?}", tally(&port_sh));
        assert!(
            tally(&port_sh).len() > 1,
            "sh-port: 20 source ports of one address all on one server: {port_sh:?}"
        );
    });
}

/// lc, wlc, sed and nq send new connections away from a server holding 30
/// open connections: with rs1 holding them, rs2 and rs3 added, 10 new
/// sequential connections avoid rs1; lc/wlc count the closed ones
/// (inactive) and alternate, sed/nq count only active ones and keep
/// picking the same idle server.
#[test]
fn least_connection_schedulers_avoid_a_loaded_server() {
    with_lab("leastconn", "", |lab, d| {
        d.rvsadm(&["--set", "0", "2", "0"]);
        for sched in ["lc", "wlc", "sed", "nq"] {
            d.service(&[sched], &[1]);
            let (holder, held) = hold(lab, 30);
            let r = catch_unwind(AssertUnwindSafe(|| {
                assert_eq!(
                    held,
                    BTreeMap::from([(rs(1), 30)]),
                    "{sched}: held connections"
                );
                d.wait_active(1, 30);
                d.add_server(2, 1, &[]);
                d.add_server(3, 1, &[]);
                let got = tally(&plain(lab, 10));
                eprintln!("  {sched}: 10 new connections {got:?} while rs1 holds 30");
                assert_eq!(
                    got.get("rs1"),
                    None,
                    "{sched}: new connections to the loaded rs1: {got:?}"
                );
                match sched {
                    "lc" | "wlc" => assert_eq!(
                        got.values().copied().collect::<Vec<_>>(),
                        vec![5, 5],
                        "{sched}: inactive connections count, so rs2/rs3 alternate: {got:?}"
                    ),
                    _ => assert_eq!(
                        got.len(),
                        1,
                        "{sched}: only active connections count, so one idle server takes all: {got:?}"
                    ),
                }
                let (a, _) = d.conns_of(1);
                assert_eq!(a, 30, "{sched}: rs1 ActiveConn after the new connections");
            }));
            release(holder);
            if let Err(p) = r {
                resume_unwind(p);
            }
            d.rvsadm(&["-C"]);
            d.wait_no_conns(Duration::from_secs(10));
        }
    });
}

/// `-x 4` on rs1: with 4 connections held it takes no new ones; at 3 it
/// still takes none (IPVS resumes only when total * 4 < upper * 3); at 2 it
/// takes its turn again.
#[test]
fn upper_threshold_stops_and_resumes() {
    with_lab("threshold", "", |lab, d| {
        d.rvsadm(&["--set", "0", "2", "0"]);
        d.rvsadm(&["-C"]);
        d.rvsadm(&["-A", "-t", &svc(), "-s", "rr"]);
        d.add_server(1, 1, &["-x", "4"]);
        let (h1, a) = hold(lab, 1);
        let (h2, b) = hold(lab, 1);
        let (h3, c) = hold(lab, 2);
        let held = [a, b, c];
        d.add_server(2, 1, &[]);
        d.add_server(3, 1, &[]);
        let r = catch_unwind(AssertUnwindSafe(|| {
            for h in &held {
                assert_eq!(h.keys().collect::<Vec<_>>(), vec!["rs1"], "held: {held:?}");
            }
            d.wait_active(1, 4);
            let th = d.rvsadm(&["-Ln", "--thresholds"]);
            assert_eq!(
                dest_columns(&th, 1),
                Some(vec![4, 0, 4, 0]),
                "rs1: Uthreshold 4, Lthreshold 0, 4 active:\n{th}"
            );
            assert_eq!(dest_columns(&th, 2), Some(vec![0, 0, 0, 0]), "rs2:\n{th}");

            let full = tally(&plain(lab, 6));
            assert_eq!(
                full,
                BTreeMap::from([(rs(2), 3), (rs(3), 3)]),
                "rs1 at 4 of 4"
            );
            close_and_settle(d, h1, 3);
            let three = tally(&plain(lab, 6));
            assert_eq!(
                three,
                BTreeMap::from([(rs(2), 3), (rs(3), 3)]),
                "rs1 at 3 of 4: 3*4 < 4*3 is false, still overloaded"
            );
            close_and_settle(d, h2, 2);
            let two = tally(&plain(lab, 3));
            assert_eq!(
                two,
                BTreeMap::from([(rs(1), 1), (rs(2), 1), (rs(3), 1)]),
                "rs1 at 2 of 4: takes its turn again"
            );
        }));
        release(h3);
        if let Err(p) = r {
            resume_unwind(p);
        }
    });
}

/// Closes a holder and waits until its connections left rs1's count (the
/// closed ones expire after tcpfin = 2 s) so that rs1 has `total` left.
fn close_and_settle(d: &Daemon<'_>, h: Spawned, total: u64) {
    release(h);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (a, i) = d.conns_of(1);
        if a + i == total {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "rs1 should come down to {total} connections, has {a} active + {i} inactive"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// fo: everything to the highest weight; quiesced, to the next one.
#[test]
fn fo_sends_everything_to_the_highest_weight() {
    with_lab("fo", "", |lab, d| {
        d.service(&["fo"], &[1, 3, 2]);
        assert_eq!(
            tally(&plain(lab, 8)),
            BTreeMap::from([(rs(2), 8)]),
            "weights 1,3,2"
        );
        d.add_server_edit(2, 0);
        assert_eq!(
            tally(&plain(lab, 8)),
            BTreeMap::from([(rs(3), 8)]),
            "rs2 quiesced: weight 2 is the highest"
        );
    });
}

impl Daemon<'_> {
    /// `-e` real server `n` of the VIP service to `weight`.
    fn add_server_edit(&self, n: usize, weight: u32) {
        let (s, r, w) = (svc(), rs_ip(n).to_string(), weight.to_string());
        self.rvsadm(&["-e", "-t", &s, "-r", &r, "-g", "-w", &w]);
    }
}

/// The rich configuration of the save/restore check, as rvsadm commands.
const RICH: &[&str] = &[
    "-A -t 10.0.100.1:80 -s wlc -p 120 -M 255.255.255.0",
    "-a -t 10.0.100.1:80 -r 10.0.2.11 -g -w 2 -x 100 -y 50",
    "-a -t 10.0.100.1:80 -r 10.0.2.12:8080 -m -w 1",
    "-a -t 10.0.100.1:80 -r 10.0.2.13 -i -w 3 -x 20",
    "-A -f 7 -s rr",
    "-a -f 7 -r 10.0.2.11 -g -w 1",
    "-a -f 7 -r 10.0.2.12 -g -w 4",
    "-A -u 10.0.100.1:53 -s rr -o",
    "-a -u 10.0.100.1:53 -r 10.0.2.12:5353 -m -w 1",
    "-a -u 10.0.100.1:53 -r 10.0.2.13:5353 -m -w 0",
    "-A -t 10.0.100.1:443 -s sh -b sh-fallback,sh-port",
    "-a -t 10.0.100.1:443 -r 10.0.2.11 -g -w 1 -x 10",
    "-a -t 10.0.100.1:443 -r 10.0.2.12 -g -w 5",
    "-A -t 10.0.100.1:8080 -s mh -b mh-port -p",
    "-a -t 10.0.100.1:8080 -r 10.0.2.13 -i -w 2",
    "-A -t 10.0.100.2:80 -s lblcr",
    "-a -t 10.0.100.2:80 -r 10.0.2.11 -g -w 1",
];

/// Everything a listing shows, in the views the options give.
fn views(d: &Daemon<'_>) -> Vec<String> {
    [
        "-Ln",
        "-Ln --thresholds",
        "-Ln --persistent-conn",
        "-Sn",
        "-L --timeout",
    ]
    .iter()
    .map(|v| {
        let args: Vec<&str> = v.split_whitespace().collect();
        d.rvsadm(&args)
    })
    .collect()
}

/// `-S`, `-C`, `-R` gives back the identical table; a restore input with a
/// bad line in the middle changes nothing and names the line.
#[test]
fn save_clear_restore_round_trips() {
    with_lab("saverestore", "", |_lab, d| {
        d.rvsadm(&["--set", "600", "60", "100"]);
        for c in RICH {
            let args: Vec<&str> = c.split_whitespace().collect();
            d.rvsadm(&args);
        }
        let before = views(d);
        let saved = d.rvsadm(&["-S", "-n"]);
        eprintln!("  saved:\n{saved}");
        assert_eq!(
            saved.lines().count(),
            RICH.len(),
            "one save line per rule:\n{saved}"
        );
        d.rvsadm(&["-C"]);
        let empty = d.rvsadm(&["-Ln"]);
        assert!(!empty.contains("10.0.100"), "-C left services:\n{empty}");
        d.restore(&saved).expect("rvsadm -R of the saved rules");
        let after = views(d);
        for (a, b) in before.iter().zip(&after) {
            assert_eq!(a, b, "listing after -S, -C, -R");
        }

        // A bad line in the middle, parse error and refused rule, each after
        // a -C that an all-or-nothing restore must not apply either.
        let lines: Vec<&str> = saved.lines().collect();
        let mid = lines.len() / 2;
        for (what, bad) in [
            (
                "unparsable weight",
                "-a -t 10.0.100.1:80 -r 10.0.2.14 -g -w lots",
            ),
            (
                "server of a missing service",
                "-a -t 10.0.100.9:80 -r 10.0.2.14 -g -w 1",
            ),
        ] {
            let mut input = vec!["-C"];
            input.extend_from_slice(&lines[..mid]);
            input.push(bad);
            input.extend_from_slice(&lines[mid..]);
            let bad_line = mid + 2; // 1-based, after the -C
            let r = d.restore(&(input.join("\n") + "\n"));
            match r {
                Ok(out) => panic!("{what}: -R accepted a bad line {bad_line}:\n{out}"),
                Err(LabError::Command { status, stderr, .. }) => {
                    eprintln!("  {what}: {status}: {stderr}");
                    assert!(
                        stderr.contains(&format!("line {bad_line}")),
                        "{what}: stderr should name line {bad_line}: {stderr}"
                    );
                }
                Err(e) => panic!("{what}: running -R: {e}"),
            }
            assert_eq!(views(d), before, "{what}: a refused -R changed the table");
        }
    });
}

/// A firewall-mark service groups addresses (and ports) into one service:
/// RVS's classifier marks TCP to 10.0.100.32/30 port 80, and with
/// persistence one client stays on one server across all four addresses,
/// while another client is scheduled afresh.
#[test]
fn firewall_mark_service_is_one_sticky_service_across_addresses() {
    let extra =
        "[[fwmark]]\nmark = 7\nprotocol = \"tcp\"\naddress = \"10.0.100.32/30\"\nports = [80]\n";
    with_lab("fwmark", extra, |lab, d| {
        let route = format!(
            "ip route add 10.0.100.32/30 via {}\n",
            rvs_lab::DIR_FRONT_IP
        );
        lab.exec("router", &["sh", "-c", &route])
            .expect("routing the marked addresses to the director");
        let on_lo: String = (32..36)
            .map(|h| format!("ip addr add 10.0.100.{h}/32 dev lo\n"))
            .collect();
        for n in 1..=3 {
            lab.exec(&rs(n), &["sh", "-c", &on_lo])
                .expect("marked addresses on the servers' lo");
        }
        d.rvsadm(&["-A", "-f", "7", "-s", "rr", "-p", "60"]);
        for n in 1..=3 {
            d.rvsadm(&[
                "-a",
                "-f",
                "7",
                "-r",
                &rs_ip(n).to_string(),
                "-g",
                "-w",
                "1",
            ]);
        }
        let list = d.rvsadm(&["-Ln"]);
        assert!(list.contains("FWM  7 rr persistent 60"), "{list}");
        let mut answers = Vec::new();
        for _round in 0..2 {
            for h in 32..36 {
                answers.push(who(lab, &format!("http://10.0.100.{h}/"), &[Vec::new()]).remove(0));
            }
        }
        assert!(
            answers.iter().all(|a| *a == answers[0]),
            "one client, one server across the marked addresses: {answers:?}"
        );
        let other = client_addrs(lab, 1).remove(0);
        let theirs = who(
            lab,
            "http://10.0.100.33/",
            &[vec!["--interface".to_owned(), other]],
        )
        .remove(0);
        assert_ne!(
            theirs, answers[0],
            "another client is scheduled afresh by rr"
        );
        let conns = d.rvsadm(&["-Lnc"]);
        assert!(
            conns.contains("0.0.0.7:0"),
            "the fwmark template as ipvsadm shows it:\n{conns}"
        );
    });
}
