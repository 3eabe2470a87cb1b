//! End to end for kernel facts: the real rvsd in a lab's director
//! namespace (two RX queues per veth), serving real servers reached the
//! ways the kernel routes them — a point-to-point peer address and an
//! on-link route, no gateway and no extra route — and following a route, a
//! real server's MAC and an interface MTU as they change under traffic,
//! without a reload. Needs root; builds rvsd/rvsadm/rvs-decap itself if
//! needed.
//!
//! A route moved to the interface the requests come in on is not among the
//! changes: established flows then leave by `XDP_TX`, which a veth hands to
//! a peer without an XDP program only when other traffic wakes it (a lab
//! limit, README "Veth caveats"; a NIC transmits them).
//!
//! Every test builds its own lab (own prefix) and runs its own rvsd; the
//! lab's teardown (also on a failed assertion, through `Drop`) stops rvsd
//! and removes the namespaces with every address, route and MAC changed
//! in them. Loads: sequential curl requests only, each bounded by 2 s, at
//! most [`MAX_REQUESTS`] per change and [`TRAFFIC_BOUND`] long.

// Only some of the shared helpers are used here.
#[allow(dead_code)]
mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rvs_lab::{rs_ip, unique_prefix, DirectorKind, Lab, LabSpec, Mode, VIP};

use common::{counts, spread, Daemon};

/// Consecutive successful requests that make the service steady again.
const STEADY: usize = 10;
/// How soon after a change the service must be steady again. What it
/// covers: the notification (milliseconds), rvsd's 150 ms debounce, the
/// new configuration and neighbour table reaching the worker, a next-hop
/// resolution, and one SYN retransmission (1 s) for a request caught in
/// between.
const STEADY_BOUND: Duration = Duration::from_secs(5);
/// Failed requests tolerated after a change (each one a request that hit
/// the moment of the change and timed out).
const MAX_FAILURES: usize = 2;
/// Traffic goes on at least this long after a change: past rvsd's
/// debounce, so what is checked ran on the facts rvsd applied.
const SETTLE: Duration = Duration::from_secs(2);
/// Bounds of one run of traffic.
const MAX_REQUESTS: usize = 400;
const TRAFFIC_BOUND: Duration = Duration::from_secs(40);

fn with_lab(name: &str, mode: Mode, servers: usize, body: impl FnOnce(&Lab)) {
    common::with_lab(
        name,
        LabSpec {
            prefix: unique_prefix(),
            mode,
            servers,
            director: DirectorKind::None,
            decap_bin: None,
            queues: 2,
            directors: 1,
            vip_route: rvs_lab::VipRoute::FirstDirector,
        },
        body,
    );
}

/// `ip ARGS` in `role`'s namespace.
fn ip(lab: &Lab, role: &str, args: &[&str]) -> String {
    let mut argv = vec!["ip"];
    argv.extend_from_slice(args);
    lab.exec(role, &argv)
        .unwrap_or_else(|e| panic!("ip {} in {role}: {e}", args.join(" ")))
}

/// One request from the client, bounded by 2 s: who answered, or curl's
/// complaint.
fn request(lab: &Lab) -> Result<String, String> {
    let url = format!("http://{VIP}/");
    lab.exec_timeout(
        "client",
        &["curl", "-s", "-S", "-m", "2", &url],
        Duration::from_secs(5),
    )
    .map(|b| b.trim().to_owned())
    .map_err(|e| e.to_string())
}

/// What the client saw around one change.
struct Traffic {
    /// Requests that ended before the change: (answer or error).
    before: Vec<Result<String, String>>,
    /// Requests that ended after it: (time since the change, answer or error).
    after: Vec<(Duration, Result<String, String>)>,
}

impl Traffic {
    /// The final run of successful requests after the change: how long
    /// after the change it started (the request before it ended), and who
    /// answered in it.
    fn steady(&self) -> (Duration, usize, BTreeMap<String, usize>) {
        let mut who = BTreeMap::new();
        let mut run = 0;
        let mut from = Duration::ZERO;
        for (i, (_, r)) in self.after.iter().enumerate().rev() {
            match r {
                Ok(name) => {
                    run += 1;
                    *who.entry(name.clone()).or_insert(0) += 1;
                }
                Err(_) => {
                    from = self.after[i].0;
                    break;
                }
            }
        }
        (from, run, who)
    }

    fn failures(&self) -> Vec<&str> {
        self.after
            .iter()
            .filter_map(|(_, r)| r.as_ref().err().map(String::as_str))
            .collect()
    }

    /// The checks every change must pass: every request before it served,
    /// at most [`MAX_FAILURES`] after it, and [`STEADY`] successes in a row
    /// that began within [`STEADY_BOUND`] of it, every server of `servers`
    /// among the answers.
    fn check(&self, what: &str, servers: &[usize]) {
        let failed_before: Vec<_> = self.before.iter().filter(|r| r.is_err()).collect();
        assert!(
            !self.before.is_empty() && failed_before.is_empty(),
            "{what}: requests before the change: {} made, failed: {failed_before:?}",
            self.before.len()
        );
        let failures = self.failures();
        let (from, run, who) = self.steady();
        eprintln!(
            "  {what}: {} requests before, {} after; {} failed; steady {from:.1?} after the change: {who:?}",
            self.before.len(),
            self.after.len(),
            failures.len()
        );
        assert!(
            run >= STEADY,
            "{what}: not steady again: the last {run} requests succeeded (want {STEADY}); failures {failures:?}"
        );
        assert!(
            from <= STEADY_BOUND,
            "{what}: steady only {from:?} after the change (bound {STEADY_BOUND:?}); failures {failures:?}"
        );
        assert!(
            failures.len() <= MAX_FAILURES,
            "{what}: {} requests failed after the change: {failures:?}",
            failures.len()
        );
        for n in servers {
            let name = format!("rs{n}");
            assert!(
                who.contains_key(&name),
                "{what}: {name} did not answer after the change: {who:?}"
            );
        }
    }
}

/// Sends requests one after another from the client while `change` runs:
/// a second of them first, then the change, then until [`STEADY`] in a row
/// have succeeded after it and [`SETTLE`] has passed, or the traffic bounds
/// are reached.
fn under_traffic(lab: &Lab, change: impl FnOnce()) -> Traffic {
    let log: Mutex<Vec<(Instant, Result<String, String>)>> = Mutex::new(Vec::new());
    let changed_at: Mutex<Option<Instant>> = Mutex::new(None);
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let started = Instant::now();
            let mut run = 0;
            while !done.load(Ordering::Relaxed)
                && started.elapsed() < TRAFFIC_BOUND
                && log.lock().map_or(MAX_REQUESTS, |l| l.len()) < MAX_REQUESTS
            {
                let r = request(lab);
                let now = Instant::now();
                let at = *changed_at.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(at) = at {
                    run = if r.is_ok() { run + 1 } else { 0 };
                    if run >= STEADY && now.duration_since(at) >= SETTLE {
                        done.store(true, Ordering::Relaxed);
                    }
                }
                log.lock().unwrap_or_else(|p| p.into_inner()).push((now, r));
            }
        });
        std::thread::sleep(Duration::from_secs(1));
        change();
        *changed_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    });
    let at = changed_at
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .expect("the change ran");
    let log = log.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut t = Traffic {
        before: Vec::new(),
        after: Vec::new(),
    };
    for (when, r) in log {
        match when.checked_duration_since(at) {
            Some(d) => t.after.push((d, r)),
            None => t.before.push(r),
        }
    }
    t
}

/// Waits until rvsd's output contains `text`, at most `within`.
fn wait_log(d: &Daemon<'_>, text: &str, within: Duration) {
    let start = Instant::now();
    while !d.log().contains(text) {
        assert!(
            start.elapsed() < within,
            "rvsd did not log {text:?} within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// DR to three servers the director reaches only through what the kernel
/// offers besides its default route (via the router, on `front`): rs1 as
/// the peer of a point-to-point address on `back`, rs2 and rs3 through an
/// on-link route. Before rvsd used every route of the main table, the
/// default route's gateway made DR refuse all three.
#[test]
fn real_servers_behind_a_peer_address_and_an_on_link_route() {
    with_lab("facts-onlink", Mode::Dr, 3, |lab| {
        let back = format!("{}/24", rvs_lab::DIR_BACK_IP);
        ip(lab, "dir", &["addr", "del", &back, "dev", "back"]);
        let local = rvs_lab::DIR_BACK_IP.to_string();
        let peer = format!("{}/32", rs_ip(1));
        ip(
            lab,
            "dir",
            &["addr", "add", &local, "peer", &peer, "dev", "back"],
        );
        let pair = format!("{}/31", rs_ip(2));
        ip(lab, "dir", &["route", "add", &pair, "dev", "back"]);
        for n in 1..=3 {
            let way = ip(lab, "dir", &["route", "get", &rs_ip(n).to_string()]);
            assert!(
                way.contains("dev back") && !way.contains(" via "),
                "the kernel routes rs{n} on-link over back: {way}"
            );
        }
        let way = ip(lab, "dir", &["route", "get", "10.0.2.14"]);
        assert!(way.contains(" via "), "anything else via the router: {way}");

        let d = Daemon::start(lab, &common::rr_service("dr", &[1, 2, 3]));
        assert_eq!(spread(lab, 30), counts(&[10, 10, 10]), "all three serve");

        // A server the kernel reaches only through the router: DR refuses it.
        let vip = format!("{VIP}:80");
        let err = d
            .try_rvsadm(&["-a", "-t", &vip, "-r", "10.0.2.14:80", "-g"])
            .expect_err("DR through a gateway");
        assert!(err.to_string().contains("gateway"), "{err}");

        // rs3 now behind the router as the kernel sees it: the facts are
        // refused whole (logged), and the service runs on as before.
        let rs3 = format!("{}/32", rs_ip(3));
        let router = rvs_lab::ROUTER_DIR_IP.to_string();
        ip(
            lab,
            "dir",
            &["route", "add", &rs3, "via", &router, "dev", "front"],
        );
        wait_log(&d, "refuses them", Duration::from_secs(5));
        assert_eq!(
            spread(lab, 30),
            counts(&[10, 10, 10]),
            "a refused change changes nothing"
        );
        ip(lab, "dir", &["route", "del", &rs3]);
        d.stop();
    });
}

/// NAT to two servers under continuous requests: rs1's route moves from
/// the router to another gateway on the LAN (rs2, forwarding), rs2's MAC
/// changes (it announces it: `arp_notify`) while it is both a real server
/// and rs1's gateway, `back`'s MTU changes; after each, requests succeed
/// again within the bound, without a reload.
#[test]
fn route_mac_and_mtu_changes_under_traffic() {
    with_lab("facts-changes", Mode::Nat, 2, |lab| {
        let rs1 = format!("{}/32", rs_ip(1));
        let router = rvs_lab::ROUTER_LAN_IP.to_string();
        let rs2 = rs_ip(2).to_string();
        ip(
            lab,
            "dir",
            &["route", "add", &rs1, "via", &router, "dev", "back"],
        );
        lab.set_sysctl("rs2", "net.ipv4.ip_forward", "1")
            .expect("forwarding on rs2");
        let d = Daemon::start(lab, &common::rr_service("nat", &[1, 2]));
        assert_eq!(spread(lab, 10), counts(&[5, 5]), "both serve");

        // 1. The route to rs1 moves to another gateway (another MAC).
        let via_rs2 = lab
            .capture(
                "router",
                "p-rs2",
                &format!("tcp and dst host {} and dst port 80", rs_ip(1)),
                1,
                Duration::from_secs(30),
            )
            .expect("capturing on the router's port to rs2");
        let t = under_traffic(lab, || {
            ip(
                lab,
                "dir",
                &["route", "replace", &rs1, "via", &rs2, "dev", "back"],
            );
        });
        t.check("route to rs1 via rs2", &[1, 2]);
        let seen = via_rs2.packets().expect("the capture");
        assert!(
            !seen.frames.is_empty(),
            "no request to rs1 went through rs2 after the route change"
        );
        let moved = format!("route + {rs1} via {rs2} dev back");
        wait_log(&d, &moved, Duration::from_secs(1));

        // 2. rs2's MAC changes; it says so with a gratuitous ARP, the
        //    director's kernel updates its neighbour entry and rvsd follows
        //    the notification (the old MAC reaches nobody now): rs2 and,
        //    through it, rs1 serve again.
        lab.set_sysctl("rs2", "net.ipv4.conf.eth0.arp_notify", "1")
            .expect("arp_notify on rs2");
        let before = common::mac(lab, "rs2", "eth0");
        let t = under_traffic(lab, || {
            ip(
                lab,
                "rs2",
                &["link", "set", "dev", "eth0", "address", "02:00:0a:00:02:99"],
            );
        });
        assert_ne!(common::mac(lab, "rs2", "eth0"), before, "rs2's MAC changed");
        let neigh = ip(lab, "dir", &["neigh", "show", &rs_ip(2).to_string()]);
        assert!(
            neigh.contains("02:00:0a:00:02:99"),
            "the director's kernel learnt rs2's new MAC: {neigh}"
        );
        t.check("rs2's MAC changed", &[1, 2]);

        // 3. back's MTU changes (and back again): applied as facts.
        let t = under_traffic(lab, || {
            ip(lab, "dir", &["link", "set", "dev", "back", "mtu", "1400"]);
        });
        t.check("back's MTU 1500 -> 1400", &[1, 2]);
        wait_log(&d, "back: mtu 1500 -> 1400", Duration::from_secs(1));
        ip(lab, "dir", &["link", "set", "dev", "back", "mtu", "1500"]);
        wait_log(&d, "back: mtu 1400 -> 1500", Duration::from_secs(5));
        assert_eq!(spread(lab, 10), counts(&[5, 5]), "both serve at the end");
        assert!(
            !d.log().contains("refuses them"),
            "no change was refused:\n{}",
            d.log()
        );
        d.stop();
    });
}
