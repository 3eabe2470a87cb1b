//! End to end on multi-queue links, as an operator would check the XDP fast
//! path (issue 9, items 6 and 7): every veth of the lab has 4 RX/TX queues,
//! so the client's connections arrive on several RX queues of the
//! director's `front` (and NAT replies on several of `back`). There the XDP
//! program forwards established flows from maps every queue shares, and
//! one rvsd worker serving every queue over AF_XDP decides each new flow
//! and state change. What IPVS keeps once must read as one table from
//! every queue, so each mode (DR, NAT, TUN) is checked for:
//!
//! - 1000 sequential new connections without a failure, spread over
//!   several RX queues, the established segments carried by the fast path
//!   and counted by `rvsadm -Ln --stats`;
//! - persistence (`-p 300`): 200 connections of one client, on as many
//!   source ports, on one server;
//! - upper thresholds (`-x 4`): 20 connections opened at once never put
//!   more than 4 on a limited server, the rest go to the unlimited one, and
//!   the limited servers take connections again once theirs are gone;
//! - health checks (`tcp` and `http` on port 80, every second) of the real
//!   servers reaching them and coming back through the director's kernel
//!   while wrk loads the VIP, and failing when nginx stops;
//!
//! and NAT once more with `fast_path = false`, so the slow path alone stays
//! covered, and once on links that gain queues while rvsd runs (`ethtool
//! -L`), which rvsd must start serving.
//!
//! Needs root; builds rvsd/rvsadm/rvs-decap itself if needed. Every test
//! builds its own lab (own prefix) and rvsd; the lab's teardown (also on a
//! failed check) stops rvsd, wrk, the connection holder, a restarted nginx
//! and removes the namespaces. Loads: sequential curl runs of 1000, 200 and
//! 300 connections (5 s per exchange, 90 s per run), 20 held connections,
//! and `wrk -t2 -c20` for 60 s in each mode.

// Only some of the shared helpers are used here.
#[allow(dead_code)]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rvs_lab::demo::{method_flag, real_server_arg, service_arg};
use rvs_lab::{rs_ip, Lab, Mode};
use rvs_lab::{CLIENT_IP, VIP};

use common::{counters_of, deltas, dest_columns, health_of, parse_wrk, wrk_args};
use common::{Checks, Daemon, Nginx};

/// RX and TX queues of every veth.
const QUEUES: u32 = 4;

fn rs(n: usize) -> String {
    format!("rs{n}")
}

/// `rs1 → a, ...` for the servers with a count.
fn tally<'a>(who: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for w in who {
        *m.entry(w.to_owned()).or_insert(0) += 1;
    }
    m
}

// ---------------------------------------------------------------------------
// Sequential connections

/// One HTTP exchange as curl reported it.
#[derive(Debug)]
struct Exchange {
    /// The body: the answering server's name (`rs2`), empty if none.
    who: String,
    /// HTTP status, 0 when the exchange failed.
    code: u16,
    /// Connections curl opened for it (1: a new one, as asked).
    connects: u32,
    /// The client's source port.
    local_port: u16,
}

impl Exchange {
    fn ok(&self) -> bool {
        self.code == 200 && self.connects == 1 && self.who.starts_with("rs")
    }
}

/// `n` sequential HTTP exchanges from the client to the VIP, each on a new
/// connection: one curl over `/?1` .. `/?n` with `Connection: close`, 5 s
/// per exchange, 90 s for the run. Fails on anything but `n` successful
/// exchanges, with curl's errors.
fn exchanges(lab: &Lab, n: usize) -> Vec<Exchange> {
    let errors = lab.dir().join(format!("curl-errors-{n}.txt"));
    let script = format!(
        "curl -s -S -m 5 -H 'Connection: close' \
         -w '|%{{http_code}}|%{{num_connects}}|%{{local_port}}\\n' \
         'http://{VIP}/?[1-{n}]' 2>'{}'; echo \"|exit|$?\"",
        errors.display()
    );
    let out = lab
        .exec_timeout("client", &["sh", "-c", &script], Duration::from_secs(90))
        .unwrap_or_else(|e| panic!("{n} exchanges from the client: {e}"));
    let mut got = Vec::new();
    let mut body: Option<String> = None;
    let mut exit = None;
    for l in out.lines() {
        let Some(fields) = l.strip_prefix('|') else {
            body = Some(l.trim().to_owned());
            continue;
        };
        let f: Vec<&str> = fields.split('|').collect();
        if f.first() == Some(&"exit") {
            exit = f.get(1).map(|s| s.to_string());
            continue;
        }
        let num = |i: usize| f.get(i).and_then(|s| s.parse::<u32>().ok()).unwrap_or(0);
        got.push(Exchange {
            who: body.take().unwrap_or_default(),
            code: num(0) as u16,
            connects: num(1),
            local_port: num(2) as u16,
        });
    }
    let failed: Vec<(usize, &Exchange)> = got.iter().enumerate().filter(|(_, e)| !e.ok()).collect();
    if got.len() != n || !failed.is_empty() {
        let curl_errors = std::fs::read_to_string(&errors).unwrap_or_default();
        let first: Vec<String> = curl_errors.lines().take(10).map(str::to_owned).collect();
        panic!(
            "{} of {n} exchanges failed ({} reported, curl exit {exit:?}); first failures \
             (index, exchange): {:?}\ncurl's errors:\n{}",
            failed.len() + n.saturating_sub(got.len()),
            got.len(),
            &failed[..failed.len().min(10)],
            first.join("\n")
        );
    }
    got
}

// ---------------------------------------------------------------------------
// What the director reports

/// Frames the XDP program saw on each RX queue of `dev` in the director
/// (`ethtool -S`: `rx_queue_N_xdp_packets`).
fn xdp_per_queue(lab: &Lab, dev: &str) -> Vec<u64> {
    let out = lab
        .exec("dir", &["ethtool", "-S", dev])
        .unwrap_or_else(|e| panic!("ethtool -S {dev} in the director: {e}"));
    let mut v = vec![0; QUEUES as usize];
    for l in out.lines() {
        let Some(rest) = l.trim().strip_prefix("rx_queue_") else {
            continue;
        };
        let Some((q, rest)) = rest.split_once('_') else {
            continue;
        };
        let (Ok(q), Some(n)) = (q.parse::<usize>(), rest.strip_prefix("xdp_packets:")) else {
            continue;
        };
        if let (Some(slot), Ok(n)) = (v.get_mut(q), n.trim().parse()) {
            *slot = n;
        }
    }
    v
}

/// Per-queue frames of `dev` since `before`.
fn queue_deltas(lab: &Lab, dev: &str, before: &[u64]) -> Vec<u64> {
    xdp_per_queue(lab, dev)
        .iter()
        .zip(before)
        .map(|(a, b)| a.saturating_sub(*b))
        .collect()
}

/// [`exchanges`], and the frames each RX queue of the director's `front`
/// and `back` carried meanwhile.
fn exchanges_per_queue(lab: &Lab, n: usize) -> (Vec<Exchange>, Vec<u64>, Vec<u64>) {
    let front = xdp_per_queue(lab, "front");
    let back = xdp_per_queue(lab, "back");
    let got = exchanges(lab, n);
    let front = queue_deltas(lab, "front", &front);
    let back = queue_deltas(lab, "back", &back);
    eprintln!("  XDP frames per RX queue: front {front:?}, back {back:?}");
    (got, front, back)
}

/// At least two RX queues carried `percent` of the frames each: the flows
/// really were spread, and more than one queue's frames reached the worker
/// and the fast path. (The lab's router never uses the fourth queue of its
/// veth toward the director; three carry the flows.)
fn assert_spread(what: &str, per_queue: &[u64], percent: u64) {
    let total: u64 = per_queue.iter().sum();
    let busy = per_queue
        .iter()
        .filter(|&&n| n > 0 && n * 100 >= total * percent)
        .count();
    assert!(
        busy >= 2,
        "{what}: frames per RX queue {per_queue:?}; at least two queues should carry {percent}% each"
    );
}

/// Counters that must not move during clean traffic: drops, frames the
/// engine could not place, frames no AF_XDP socket took or that the rings
/// lost, sends that failed, map updates the kernel refused.
fn is_trouble(name: &str) -> bool {
    name.starts_with("drop_")
        || name.ends_with("_to_user_failed")
        || [
            "_rx_dropped",
            "_rx_ring_full",
            "_fill_ring_empty",
            "_tx_invalid",
            "_tx_ring_full",
        ]
        .iter()
        .any(|s| name.starts_with("xsk_") && name.ends_with(s))
        || matches!(
            name,
            "untracked" | "unresolved" | "tx_failed" | "fast_path_op_errors"
        )
}

/// The trouble counters among `d`.
fn trouble(d: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    d.iter()
        .filter(|(k, v)| is_trouble(k) && **v > 0)
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// Frames the XDP program forwarded itself, over both interfaces.
fn fast(d: &BTreeMap<String, u64>) -> u64 {
    d.iter()
        .filter(|(k, _)| {
            k.starts_with("xdp_") && (k.ends_with("_fast_tx") || k.ends_with("_fast_redirect"))
        })
        .map(|(_, v)| *v)
        .sum()
}

/// Conns, InPkts, OutPkts of the VIP:80 service in `rvsadm -Ln --stats
/// --exact`.
fn service_stats(d: &Daemon<'_>) -> [u64; 3] {
    let list = d.rvsadm(&["-Ln", "--stats", "--exact"]);
    let head = format!("TCP  {VIP}:80");
    let cols: Vec<u64> = list
        .lines()
        .find(|l| l.starts_with(&head))
        .unwrap_or_else(|| panic!("no `{head}` in the listing:\n{list}"))
        .split_whitespace()
        .skip(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    match cols[..] {
        [conns, inp, outp, ..] => [conns, inp, outp],
        _ => panic!("no counters on `{head}`:\n{list}"),
    }
}

/// What the director reports before and after a run of `n` connections,
/// and the checks of it: every connection created once, nothing dropped or
/// lost, (with the fast path on) the established segments forwarded in XDP,
/// and every frame counted once by `rvsadm --stats`, whichever path
/// forwarded it.
struct Accounting {
    counters: BTreeMap<String, u64>,
    stats: [u64; 3],
}

impl Accounting {
    fn take(d: &Daemon<'_>) -> Accounting {
        Accounting {
            counters: d.counters(),
            stats: service_stats(d),
        }
    }

    /// A reading once the worker's report has caught up: the listing is
    /// the worker's report of up to 200 ms ago, so right after `rvsadm -C`
    /// and `-A` it may still show the previous service's counters. Two
    /// equal readings 300 ms apart, within 5 s.
    fn settled(d: &Daemon<'_>) -> Accounting {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut last = Accounting::take(d);
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let now = Accounting::take(d);
            if (now.counters == last.counters && now.stats == last.stats)
                || Instant::now() >= deadline
            {
                return now;
            }
            last = now;
        }
    }

    /// Waits (the worker folds and publishes every 200 ms) until the
    /// listing shows the `n` connections and the service's packets since
    /// `self` equal the frames the worker and the XDP program forwarded
    /// since `self`, then checks the run.
    fn check(&self, d: &Daemon<'_>, n: u64, fast_path: bool, mode: Mode) {
        let deadline = Instant::now() + Duration::from_secs(3);
        let (c, s) = loop {
            let now = Accounting::take(d);
            let c = deltas(&self.counters, &now.counters);
            let s: Vec<u64> = now
                .stats
                .iter()
                .zip(&self.stats)
                .map(|(a, b)| a.saturating_sub(*b))
                .collect();
            let forwarded = c.get("forwarded").copied().unwrap_or(0) + fast(&c);
            let created = c.get("conns_created").copied().unwrap_or(0);
            if (s[0] >= n && created >= n && s[1] + s[2] == forwarded) || Instant::now() >= deadline
            {
                break (c, s);
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let g = |k: &str| c.get(k).copied().unwrap_or(0);
        eprintln!(
            "  {n} connections: rvsadm Conns +{} InPkts +{} OutPkts +{}; worker forwarded +{}, \
             XDP forwarded +{}; counters that moved: {c:?}",
            s[0],
            s[1],
            s[2],
            g("forwarded"),
            fast(&c)
        );
        assert_eq!(
            trouble(&c),
            BTreeMap::new(),
            "drops, losses or untracked frames during {n} clean connections"
        );
        assert_eq!(g("conns_created"), n, "connections the engine created");
        assert_eq!(s[0], n, "rvsadm Conns of the service");
        assert!(
            s[1] >= 4 * n,
            "rvsadm InPkts +{} for {n} connections (SYN, ACK, request, FIN at least)",
            s[1]
        );
        if mode == Mode::Nat {
            assert!(
                s[2] >= 3 * n,
                "rvsadm OutPkts +{} for {n} NAT connections",
                s[2]
            );
        }
        assert_eq!(
            s[1] + s[2],
            g("forwarded") + fast(&c),
            "rvsadm's InPkts + OutPkts must count every frame forwarded, by the worker or in XDP"
        );
        if fast_path {
            // The request (and in NAT the response) of each connection is
            // sent once it is established; it is forwarded in XDP unless it
            // overtakes the engine's update of the entry (the handshake's
            // last ACK goes to the engine). About 2 frames per connection
            // take the fast path here, fewer when the machine is busy.
            assert!(
                fast(&c) >= n / 2,
                "the fast path forwarded {} frames for {n} connections",
                fast(&c)
            );
            if mode == Mode::Nat {
                assert!(
                    g("xdp_back_fast_redirect") >= n / 2,
                    "NAT replies forwarded in XDP: {}",
                    g("xdp_back_fast_redirect")
                );
            }
        } else {
            assert_eq!(fast(&c), 0, "fast_path = false, yet XDP forwarded frames");
        }
    }
}

// ---------------------------------------------------------------------------
// Configuration by rvsadm

/// `-C`, then VIP:80 with `opts` after `-A -t VIP:80`, and rs1..rs3 at
/// weight 1 forwarding as the lab is wired, `extra[i]` after rs(i+1)'s `-a`.
fn service(d: &Daemon<'_>, mode: Mode, opts: &[&str], extra: [&[&str]; 3]) {
    d.rvsadm(&["-C"]);
    let svc = service_arg();
    let mut a = vec!["-A", "-t", &svc];
    a.extend_from_slice(opts);
    d.rvsadm(&a);
    for (i, x) in extra.iter().enumerate() {
        let r = real_server_arg(mode, i + 1);
        let mut a = vec!["-a", "-t", &svc, "-r", &r, method_flag(mode), "-w", "1"];
        a.extend_from_slice(x);
        d.rvsadm(&a);
    }
}

/// Waits until every connection still tracked is one that a new SYN on
/// the same addresses and ports replaces (TIME_WAIT, CLOSE; templates show
/// NONE), as IPVS does with `conn_reuse_mode` 1. The client reuses source
/// ports of earlier checks; a SYN matching a connection still in FIN_WAIT
/// (DR and TUN close that way; 2 s here) is that connection's, forwarded
/// to its server without scheduling, which would break the counts of the
/// next check.
fn quiesce(d: &Daemon<'_>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = d.rvsadm(&["-Lnc"]);
        let live: Vec<&str> = list
            .lines()
            .skip(2)
            .filter(|l| {
                !matches!(
                    l.split_whitespace().nth(2),
                    None | Some("TIME_WAIT" | "CLOSE" | "NONE")
                )
            })
            .collect();
        if live.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} connections still live 10 s after the last check, e.g. {:?}",
            live.len(),
            &live[..live.len().min(5)]
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// ActiveConn + InActConn of rs1..rs3 in `-Ln`.
fn conns(d: &Daemon<'_>) -> [u64; 3] {
    let list = d.rvsadm(&["-Ln"]);
    [1, 2, 3].map(|n| {
        dest_columns(&list, n)
            .and_then(|c| Some(c.get(1)? + c.get(2)?))
            .unwrap_or_else(|| panic!("rs{n} not in the listing:\n{list}"))
    })
}

// ---------------------------------------------------------------------------
// One suite per mode

fn suite(mode: Mode) {
    let name = format!("{}-4q", common::method_name(mode));
    common::with_lab(&name, common::lab_spec(mode, QUEUES), |lab| {
        let d = Daemon::start(lab, "");
        // Connections closed by the client (DR, TUN: FIN_WAIT) leave in 2 s.
        d.rvsadm(&["--set", "0", "2", "0"]);
        let mut checks = Checks::new(name.as_str());
        // First: the thresholds count every connection the servers have.
        checks.run(
            "upper threshold: 20 connections at once, -x 4 on rs1 and rs2",
            || thresholds(lab, &d, mode),
        );
        checks.run(
            "1000 new connections: no failure, several queues, fast path, counted",
            || thousand(lab, &d, mode),
        );
        checks.run(
            "persistence: 200 connections of one client on one server",
            || persistence(lab, &d, mode),
        );
        checks.finish(&d);
        d.stop();
    });
}

#[test]
fn dr_four_queues() {
    suite(Mode::Dr);
}

#[test]
fn nat_four_queues() {
    suite(Mode::Nat);
}

#[test]
fn tun_four_queues() {
    suite(Mode::Tun);
}

/// 1000 sequential new connections, rr over three servers.
fn thousand(lab: &Lab, d: &Daemon<'_>, mode: Mode) {
    const N: usize = 1000;
    quiesce(d);
    service(d, mode, &["-s", "rr"], [&[], &[], &[]]);
    let before = Accounting::settled(d);
    let t = Instant::now();
    let (got, front, back) = exchanges_per_queue(lab, N);
    eprintln!("  {N} connections in {:.1?}", t.elapsed());
    let servers = tally(got.iter().map(|e| e.who.as_str()));
    let mut per_server: Vec<usize> = servers.values().copied().collect();
    per_server.sort_unstable();
    // The director's own view (Conns per server: what rr picked) tells a
    // scheduling fault from a delivery fault when this fails.
    assert_eq!(
        per_server,
        vec![333, 333, 334],
        "rr over three servers by their answers: {servers:?}; the director's listing:\n{}\n\
         its counters: {:?}",
        d.rvsadm(&["-Ln", "--stats", "--exact"]),
        deltas(&before.counters, &d.counters())
    );
    assert_spread("front (client → VIP)", &front, 10);
    if mode == Mode::Nat {
        assert_spread("back (NAT replies)", &back, 10);
    }
    before.check(d, N as u64, true, mode);
}

/// `-p 300`: 200 connections of one client, on 200 source ports spread
/// over the RX queues, all on one server, under one template.
fn persistence(lab: &Lab, d: &Daemon<'_>, mode: Mode) {
    const N: usize = 200;
    quiesce(d);
    service(d, mode, &["-s", "rr", "-p", "300"], [&[], &[], &[]]);
    let front = xdp_per_queue(lab, "front");
    let got = exchanges(lab, N);
    let front = queue_deltas(lab, "front", &front);
    let ports: BTreeSet<u16> = got.iter().map(|e| e.local_port).collect();
    let servers = tally(got.iter().map(|e| e.who.as_str()));
    eprintln!(
        "  {N} connections from {} source ports: {servers:?}; XDP frames per RX queue of front {front:?}",
        ports.len()
    );
    assert!(
        ports.len() >= N / 2,
        "the premise: new source ports ({} distinct of {N})",
        ports.len()
    );
    assert_spread("front (client → VIP)", &front, 10);
    assert_eq!(servers.len(), 1, "one client, one server: {servers:?}");
    let server: usize = servers.keys().next().expect("a server")[2..]
        .parse()
        .expect("rsN");
    let list = d.rvsadm(&["-Lnc"]);
    let template = format!("{CLIENT_IP}:0");
    let templates: Vec<&str> = list
        .lines()
        .filter(|l| l.split_whitespace().nth(3) == Some(template.as_str()))
        .collect();
    assert_eq!(
        templates.len(),
        1,
        "one persistence template for {CLIENT_IP}:\n{list}"
    );
    assert_eq!(
        templates[0].split_whitespace().nth(5),
        Some(format!("{}:80", rs_ip(server)).as_str()),
        "the template points at {}:\n{list}",
        rs(server)
    );
}

/// Opens `n` connections to the VIP at once (all SYNs out before the first
/// handshake completes), sends one request on each, prints who answered
/// each, then `ready`, and holds them until killed (at most 90 s). Closing
/// (when killed) resets them (SO_LINGER 0): the director then keeps them
/// in CLOSE for 10 s, where a FIN would leave a NAT connection in TIME_WAIT
/// for 2 minutes.
const HOLD_AT_ONCE: &str = r#"
import os, select, socket, struct, sys, time
vip, n = sys.argv[1], int(sys.argv[2])
socks = []
for i in range(n):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.setblocking(False)
    s.connect_ex((vip, 80))
    socks.append(s)
pending = list(socks)
deadline = time.time() + 10
while pending:
    _, ready, _ = select.select([], pending, [], max(0.0, deadline - time.time()))
    if not ready:
        sys.exit("%d of %d connections not established within 10 s" % (len(pending), n))
    for s in ready:
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            sys.exit("connect: " + os.strerror(err))
        pending.remove(s)
for s in socks:
    s.setblocking(True)
    s.settimeout(5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n")
for i, s in enumerate(socks):
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
print("ready", flush=True)
time.sleep(90)
"#;

/// `-x 4` on rs1 and rs2, none on rs3, rr: 20 connections opened at once
/// (on several queues) put exactly 4 on rs1 and rs2 and 12 on rs3, and
/// `-Ln` never shows more than 4 on rs1 or rs2 meanwhile; once they are
/// gone, rs1 and rs2 take their turns again.
fn thresholds(lab: &Lab, d: &Daemon<'_>, mode: Mode) {
    const N: usize = 20;
    const UPPER: u64 = 4;
    let x = UPPER.to_string();
    service(
        d,
        mode,
        &["-s", "rr"],
        [&["-x", x.as_str()], &["-x", x.as_str()], &[]],
    );
    assert_eq!(conns(d), [0, 0, 0], "a fresh service");
    let front = xdp_per_queue(lab, "front");
    let vip = VIP.to_string();
    let holder = lab
        .spawn(
            "client",
            &["python3", "-c", HOLD_AT_ONCE, &vip, &N.to_string()],
        )
        .expect("starting the connection holder");
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // Poll -Ln while the connections open and a while after.
        let mut most = [0u64; 3];
        let mut polls = 0;
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut ready_at = None;
        loop {
            let c = conns(d);
            polls += 1;
            for (m, v) in most.iter_mut().zip(c) {
                *m = (*m).max(v);
            }
            let ready = holder.log().lines().any(|l| l == "ready");
            if ready && ready_at.is_none() {
                ready_at = Some(polls);
            }
            if ready_at.is_some_and(|at| polls >= at + 5) {
                break;
            }
            assert!(
                holder.is_running() && Instant::now() < deadline,
                "holder of {N} connections not ready:\n{}",
                holder.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = holder.log();
        let held = tally(log.lines().filter(|l| l.starts_with("rs")));
        let now = conns(d);
        let front = queue_deltas(lab, "front", &front);
        eprintln!(
            "  {N} held at once: {held:?}; -Ln ActiveConn+InActConn now {now:?}, most seen \
             over {polls} polls {most:?}; XDP frames per RX queue of front {front:?}"
        );
        assert_spread("front (client → VIP)", &front, 5);
        assert_eq!(
            held,
            BTreeMap::from([(rs(1), 4), (rs(2), 4), (rs(3), 12)]),
            "who answered the held connections (rs1, rs2 at -x {UPPER})"
        );
        assert!(
            most[0] <= UPPER && most[1] <= UPPER,
            "-Ln showed rs1/rs2 above their threshold {UPPER}: most seen {most:?}"
        );
        assert_eq!(now, [4, 4, 12], "-Ln while the connections are held");
    }));
    let _ = holder.stop(Duration::from_secs(2));
    if let Err(p) = r {
        std::panic::resume_unwind(p);
    }
    // Reset connections stay in CLOSE for 10 s.
    let deadline = Instant::now() + Duration::from_secs(20);
    let t = Instant::now();
    loop {
        let c = conns(d);
        if c[0] == 0 && c[1] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rs1/rs2 still hold connections 20 s after they were reset: {c:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!("  rs1/rs2 free {:.1?} after the reset", t.elapsed());
    let got = exchanges(lab, 6);
    assert_eq!(
        tally(got.iter().map(|e| e.who.as_str())),
        BTreeMap::from([(rs(1), 2), (rs(2), 2), (rs(3), 2)]),
        "below the threshold again, rs1 and rs2 take their turns"
    );
}

// ---------------------------------------------------------------------------
// Health checks under load

/// Check timing: every second; down after `retry + 1` failed attempts
/// `delay_before_retry` apart. The connect timeout is generous because the
/// checks run beside wrk on two cores; a stopped nginx refuses at once.
const DELAY_LOOP: u64 = 1;
const RETRY: u64 = 1;
const CONNECT_TIMEOUT: u64 = 3;

/// keepalived's bound on noticing a dead server.
fn detection_bound() -> Duration {
    Duration::from_secs(DELAY_LOOP * (RETRY + 1) + CONNECT_TIMEOUT)
}

/// VIP:80 rr (`alpha`: servers start down until their checks pass) with
/// rs1..rs3 forwarding as `mode` is wired, each with a `tcp` and an `http`
/// check of port 80.
fn checked_service(mode: Mode) -> String {
    let method = common::method_name(mode);
    let timing = format!(
        "    connect_timeout = {CONNECT_TIMEOUT}\n    delay_loop = {DELAY_LOOP}\n    \
         retry = {RETRY}\n    delay_before_retry = 1\n"
    );
    let mut s = format!(
        "[[service]]\nprotocol = \"tcp\"\naddress = \"{VIP}\"\nport = 80\nscheduler = \"rr\"\n\
         alpha = true\n"
    );
    for n in 1..=3 {
        s.push_str(&format!(
            "  [[service.real_server]]\n  address = \"{}\"\n  port = 80\n  method = \"{method}\"\n\
             \x20   [[service.real_server.check]]\n    type = \"tcp\"\n{timing}\
             \x20   [[service.real_server.check]]\n    type = \"http\"\n    path = \"/\"\n{timing}",
            rs_ip(n)
        ));
    }
    s
}

/// Health entries of rs1..rs3: (up, reason) or none.
fn health(l: &serde_json::Value) -> [Option<(bool, String)>; 3] {
    [1, 2, 3].map(|n| health_of(l, n))
}

/// Polls the listing until every server's health entry is up.
fn wait_all_up(d: &Daemon<'_>, within: Duration) -> Duration {
    let t = Instant::now();
    loop {
        let l = d.listing();
        if health(&l).iter().all(|h| h.as_ref().is_some_and(|h| h.0)) {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < within,
            "not every server up {within:?} after start: {:?}",
            health(&l)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// rvsd from a file with `tcp` and `http` checks of each real server; the
/// checks pass (alpha: they bring the servers up), every server stays up
/// while wrk loads the VIP for `seconds` (0 errors), the checks' replies
/// come back through the director's kernel (XDP passes them; the worker
/// never sees them), and when rs1's nginx stops it goes down within
/// keepalived's bound, and up again when it serves.
fn health_under_load(mode: Mode, seconds: u32) {
    let name = format!("{}-4q-health", common::method_name(mode));
    common::with_lab(&name, common::lab_spec(mode, QUEUES), |lab| {
        let d = Daemon::start(lab, &checked_service(mode));
        let took = wait_all_up(&d, Duration::from_secs(10));
        eprintln!("  every server up {took:.1?} after start (alpha: checks passed)");
        // rvsd learns a neighbour from the kernel's notification, a moment
        // after the check resolved it: a SYN to a server in that moment is
        // dropped as `unresolved` (and retransmitted by the client 1 s
        // later). Not what this test is about; start the load once the
        // table has caught up.
        std::thread::sleep(Duration::from_secs(1));
        let before = d.counters();
        // Every down transition is logged, however short: polls could miss
        // a flap.
        let downs = |d: &Daemon<'_>| d.log().matches("real server DOWN").count();
        let downs_before = downs(&d);

        let args = wrk_args(seconds);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let wrk = lab.spawn("client", &args).expect("starting wrk");
        let t = Instant::now();
        let mut polls = 0u32;
        let mut down = Vec::new();
        let deadline = t + Duration::from_secs(u64::from(seconds) + 20);
        while wrk.is_running() && Instant::now() < deadline {
            let l = d.listing();
            polls += 1;
            for (i, h) in health(&l).iter().enumerate() {
                if !h.as_ref().is_some_and(|h| h.0) {
                    down.push(format!("{:.1?}: rs{} {h:?}", t.elapsed(), i + 1));
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let (status, out) = wrk.stop(Duration::from_secs(2)).expect("wrk");
        let during = t.elapsed();
        let after = d.counters();
        let flaps = downs(&d) - downs_before;
        let c = deltas(&before, &after);
        let g = |k: &str| c.get(k).copied().unwrap_or(0);
        let r = parse_wrk(&out);
        eprintln!(
            "  wrk {seconds} s: {} requests; {polls} health polls, {} not up; kernel got +{} \
             frames on back, XDP forwarded +{}; counters that moved: {c:?}",
            r.requests,
            down.len(),
            g("xdp_back_passed"),
            fast(&c)
        );
        assert!(status.success(), "wrk: {status}\n{out}");
        assert!(r.requests > 0, "wrk made no requests:\n{out}");
        assert!(r.errors.is_empty(), "wrk reported errors:\n{out}");
        assert!(
            polls >= seconds / 2 && during >= Duration::from_secs(u64::from(seconds)),
            "only {polls} health polls in {during:?}"
        );
        assert!(
            down.is_empty(),
            "servers not up under load (first 10): {:?}",
            &down[..down.len().min(10)]
        );
        assert_eq!(flaps, 0, "`real server DOWN` logged under load");
        assert_eq!(
            trouble(&c),
            BTreeMap::new(),
            "drops, losses or untracked frames under wrk with checks running"
        );
        // Each second each server answers two checks (a handshake and a
        // close each, at least 2 frames): all to the director's kernel.
        let want = 2 * 2 * 3 * u64::from(seconds) / 2;
        assert!(
            g("xdp_back_passed") >= want,
            "frames to the kernel on back (the checks' replies): +{}, want at least {want}",
            g("xdp_back_passed")
        );
        assert!(fast(&c) > 0, "wrk's keep-alive traffic took the fast path");

        // The negative control: the checks can fail.
        let rs1 = Nginx::of(lab, 1);
        rs1.stop(lab);
        let t = Instant::now();
        let bound = detection_bound() + Duration::from_secs(1);
        let reason = loop {
            let l = d.listing();
            if let Some((false, reason)) = health_of(&l, 1) {
                break reason;
            }
            assert!(
                t.elapsed() < bound,
                "rs1 still up {bound:?} after its nginx stopped: {:?}",
                health_of(&l, 1)
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        eprintln!(
            "  rs1 down {:.1?} after nginx stopped: {reason}",
            t.elapsed()
        );
        assert!(!reason.is_empty(), "rs1 down without a reason");
        assert!(
            downs(&d) > downs_before,
            "rs1 went down without `real server DOWN` in rvsd's log"
        );
        let list = d.rvsadm(&["-Ln"]);
        assert!(
            !list.contains(&format!("{}:80", rs_ip(1))),
            "a failed server leaves the pool:\n{list}"
        );
        rs1.start(lab);
        let back = wait_all_up(&d, Duration::from_secs(10));
        eprintln!("  rs1 up again {back:.1?} after nginx serves");
        d.stop();
    });
}

/// NAT: the checks' replies come from the service port of a server whose
/// gateway is the director — the frames most easily mistaken for NAT
/// replies. 60 s under load.
#[test]
fn nat_health_checks_pass_under_load() {
    health_under_load(Mode::Nat, 60);
}

/// DR and TUN: the servers answer the checks straight to the director too,
/// from the service port; the same minute under load.
#[test]
fn dr_health_checks_pass_under_load() {
    health_under_load(Mode::Dr, 60);
}

#[test]
fn tun_health_checks_pass_under_load() {
    health_under_load(Mode::Tun, 60);
}

// ---------------------------------------------------------------------------
// The slow path alone

/// `fast_path = false`, NAT from the configuration file, 4 queues: 300
/// sequential connections without a failure, all through the worker (the
/// XDP program forwards nothing), every frame counted.
#[test]
fn nat_without_fast_path() {
    common::with_lab("nat-4q-slow", common::lab_spec(Mode::Nat, QUEUES), |lab| {
        let mut cfg = format!(
            "fast_path = false\n[[service]]\nprotocol = \"tcp\"\naddress = \"{VIP}\"\nport = 80\n\
             scheduler = \"rr\"\n"
        );
        for n in 1..=3 {
            cfg.push_str(&format!(
                "  [[service.real_server]]\n  address = \"{}\"\n  port = 80\n  method = \"nat\"\n",
                rs_ip(n)
            ));
        }
        let d = Daemon::start(lab, &cfg);
        let before = Accounting::settled(&d);
        let (got, front, back) = exchanges_per_queue(lab, 300);
        assert_eq!(
            tally(got.iter().map(|e| e.who.as_str())),
            BTreeMap::from([(rs(1), 100), (rs(2), 100), (rs(3), 100)]),
            "rr over three servers"
        );
        assert_spread("front (client → VIP)", &front, 10);
        assert_spread("back (NAT replies)", &back, 10);
        before.check(&d, 300, false, Mode::Nat);
        let now = counters_of(&d.listing());
        assert_eq!(
            fast(&now),
            0,
            "nothing forwarded in XDP since start with fast_path = false"
        );
        d.stop();
    });
}

/// `ethtool -L dev rx n tx n` in `role`.
fn set_channels(lab: &Lab, role: &str, dev: &str, n: u32) {
    let n = n.to_string();
    lab.exec(role, &["ethtool", "-L", dev, "rx", &n, "tx", &n])
        .unwrap_or_else(|e| panic!("ethtool -L {dev} rx {n} tx {n} in {role}: {e}"));
}

/// Waits up to 5 s (rvsd looks for new queues every second and reports
/// every 200 ms) until `front` and `back` have `n` AF_XDP sockets each.
fn wait_for_sockets(d: &Daemon<'_>, n: u32, what: &str) {
    let sockets = || {
        let c = d.counters();
        [c.get("xsk_front_sockets"), c.get("xsk_back_sockets")].map(|n| n.copied())
    };
    let want = [Some(u64::from(n)); 2];
    let deadline = Instant::now() + Duration::from_secs(5);
    while sockets() != want {
        assert!(
            Instant::now() < deadline,
            "{what}: sockets on front and back {:?}, want {n} each",
            sockets()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The director's legs and their router-side peers, receiving end first.
const LEGS: [(&str, &str, &str, &str); 2] = [
    ("dir", "front", "router", "rt-dir"),
    ("dir", "back", "router", "p-dir"),
];

/// NAT on links that gain queues while rvsd runs, as `ethtool -L` does on
/// a NIC: rvsd starts with 2 of the 4 queues in use on every leg, then all
/// 4 are put in use. Within seconds rvsd serves them
/// (`xsk_IF_sockets` 4), and 300 sequential connections, spread over the
/// new queues too, all succeed with no frame for rvsd dropped for want of
/// a socket (`to_user_failed`).
#[test]
fn nat_serves_queues_the_links_gain_while_it_runs() {
    common::with_lab("nat-grow", common::lab_spec(Mode::Nat, QUEUES), |lab| {
        for (dir, dev, router, peer) in LEGS {
            set_channels(lab, dir, dev, 2);
            set_channels(lab, router, peer, 2);
        }
        let d = Daemon::start(lab, "");
        service(&d, Mode::Nat, &["-s", "rr"], [&[], &[], &[]]);
        wait_for_sockets(&d, 2, "one socket per queue in use at the start");
        // The director's end first: with XDP attached, a veth refuses a
        // peer with more TX queues than it has RX queues.
        for (dir, dev, router, peer) in LEGS {
            set_channels(lab, dir, dev, QUEUES);
            set_channels(lab, router, peer, QUEUES);
        }
        wait_for_sockets(&d, QUEUES, "the queues put in use get sockets");
        let before = Accounting::settled(&d);
        let (got, front, back) = exchanges_per_queue(lab, 300);
        assert!(
            front[2..].iter().chain(&back[2..]).any(|&n| n > 0),
            "no frame arrived on the queues put in use: front {front:?}, back {back:?}"
        );
        assert_eq!(
            tally(got.iter().map(|e| e.who.as_str())),
            BTreeMap::from([(rs(1), 100), (rs(2), 100), (rs(3), 100)]),
            "rr over three servers"
        );
        let c = deltas(&before.counters, &d.counters());
        for key in ["xdp_front_to_user_failed", "xdp_back_to_user_failed"] {
            assert_eq!(c.get(key), None, "frames for rvsd dropped: {c:?}");
        }
        before.check(&d, 300, true, Mode::Nat);
        d.stop();
    });
}
