//! End to end for a service group (keepalived's `virtual_server_group`):
//! the real rvsd in a DR lab's director namespace runs one group of two
//! member services, VIP:80 and a second VIP's port 80, over two real
//! servers with an HTTP check each. Stopping one real server's nginx takes
//! it out of both members, traffic to either VIP goes to the other server
//! only, quorum_down runs once (not once per member), and rvsd runs two
//! check loops (one per real server, not one per member and server); it
//! comes back into both, with one quorum_up. A reload of a member listed
//! twice is refused whole; one dropping the second member is applied.
//! Needs root; builds rvsd/rvsadm itself if needed.
//!
//! The lab (own prefix) and everything in it goes on teardown, also on a
//! failed assertion (`Drop`): the second VIP's route and addresses live in
//! the lab's namespaces only. Load: a few dozen sequential requests. Checks
//! poll every 1 s, so a stopped server is out within 3 s.

// Only some of the shared helpers are used here.
#[allow(dead_code)]
mod common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use rvs_lab::{rs_ip, unique_prefix, DirectorKind, Lab, LabSpec, Mode};
use rvs_lab::{DIR_FRONT_IP, VIP};

use common::{Daemon, Nginx};

/// The group's second VIP: routed to the director like the first, held on
/// each real server's `lo` (DR).
const VIP2: Ipv4Addr = Ipv4Addr::new(10, 0, 100, 2);

/// Where rvsd serves its metrics (the director's front address).
const METRICS_PORT: u16 = 9813;

/// The group: both VIPs' port 80, rs1 and rs2 with an HTTP check each,
/// quorum 2 with commands appending to `log`; `members` VIPs.
fn group_config(members: &[Ipv4Addr], log: &Path) -> String {
    let log = log.display();
    let mut cfg = format!(
        "metrics_listen = \"{DIR_FRONT_IP}:{METRICS_PORT}\"\n\
         [[service]]\ngroup = \"web\"\nscheduler = \"rr\"\nquorum = 2\n\
         quorum_up = \"/bin/sh -c 'echo up >> {log}'\"\n\
         quorum_down = \"/bin/sh -c 'echo down >> {log}'\"\n"
    );
    for vip in members {
        cfg.push_str(&format!(
            "  [[service.member]]\n  protocol = \"tcp\"\n  address = \"{vip}\"\n  port = 80\n"
        ));
    }
    for n in 1..=2 {
        cfg.push_str(&format!(
            "  [[service.real_server]]\n  address = \"{}\"\n  port = 80\n  method = \"dr\"\n    \
             [[service.real_server.check]]\n    type = \"http\"\n    path = \"/\"\n    \
             connect_timeout = 1\n    delay_loop = 1\n    retry = 1\n    delay_before_retry = 1\n",
            rs_ip(n)
        ));
    }
    cfg
}

/// Every service of an `rvsadm -Ln` listing with its real servers and
/// weights: `"TCP 10.0.100.1:80" → {"10.0.2.11:80" → 1}`.
fn services(list: &str) -> BTreeMap<String, BTreeMap<String, u32>> {
    let mut out: BTreeMap<String, BTreeMap<String, u32>> = BTreeMap::new();
    let mut current = None;
    for l in list.lines() {
        let cols: Vec<&str> = l.split_whitespace().collect();
        match cols.first() {
            Some(&"TCP" | &"UDP" | &"FWM") => {
                let key = format!("{} {}", cols[0], cols.get(1).copied().unwrap_or(""));
                out.entry(key.clone()).or_default();
                current = Some(key);
            }
            Some(&"->") => {
                let (Some(key), Some(addr), Some(Ok(w))) =
                    (&current, cols.get(1), cols.get(3).map(|w| w.parse()))
                else {
                    continue;
                };
                if *addr != "RemoteAddress:Port" {
                    out.get_mut(key).unwrap().insert(addr.to_string(), w);
                }
            }
            _ => {}
        }
    }
    out
}

/// The listing of both members with `servers` (rs numbers) at weight 1.
fn both_members(vips: &[Ipv4Addr], servers: &[usize]) -> BTreeMap<String, BTreeMap<String, u32>> {
    vips.iter()
        .map(|v| {
            let pool = servers.iter().map(|n| (format!("{}:80", rs_ip(*n)), 1));
            (format!("TCP {v}:80"), pool.collect())
        })
        .collect()
}

/// Polls `rvsadm -Ln` until it lists `want`; returns how long it took.
fn wait_listing(
    d: &Daemon<'_>,
    want: &BTreeMap<String, BTreeMap<String, u32>>,
    within: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        let list = d.rvsadm(&["-Ln"]);
        if services(&list) == *want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "listing still not {want:?} after {within:?}:\n{list}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `n` sequential new connections from the client to `vip`: who answered
/// how often (each request must succeed).
fn spread_to(lab: &Lab, vip: Ipv4Addr, n: usize) -> BTreeMap<String, usize> {
    let url = format!("http://{vip}/");
    let mut seen = BTreeMap::new();
    for i in 0..n {
        let who = lab
            .exec_timeout(
                "client",
                &["curl", "-s", "-S", "-m", "5", &url],
                Duration::from_secs(10),
            )
            .unwrap_or_else(|e| panic!("request {} to {vip}: {e}", i + 1));
        *seen.entry(who.trim().to_owned()).or_insert(0) += 1;
    }
    seen
}

/// The value of the unlabelled metric `name` in rvsd's exposition.
fn metric(lab: &Lab, name: &str) -> f64 {
    let url = format!("http://{DIR_FRONT_IP}:{METRICS_PORT}/metrics");
    let text = lab
        .exec_timeout(
            "router",
            &["curl", "-sf", "-m", "5", &url],
            Duration::from_secs(10),
        )
        .expect("scraping /metrics from the router");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in the exposition:\n{text}"))
}

/// The lines the quorum commands wrote so far.
fn quorum_log(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// Waits until the quorum log holds `want`, then a little longer to see
/// that nothing more comes (a command per member would).
fn wait_quorum_log(path: &Path, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while quorum_log(path) != want {
        assert!(
            Instant::now() < deadline,
            "quorum commands wrote {:?}, not {want:?}",
            quorum_log(path)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(quorum_log(path), want, "one quorum command per change");
}

#[test]
fn a_group_checks_each_real_server_once_for_all_its_members() {
    common::with_lab(
        "group",
        LabSpec {
            prefix: unique_prefix(),
            mode: Mode::Dr,
            servers: 2,
            director: DirectorKind::None,
            decap_bin: None,
            queues: 1,
            directors: 1,
            vip_route: rvs_lab::VipRoute::FirstDirector,
        },
        |lab| {
            // The second VIP, as the lab wires the first.
            let front = DIR_FRONT_IP.to_string();
            let vip2 = format!("{VIP2}/32");
            lab.exec("router", &["ip", "route", "add", &vip2, "via", &front])
                .expect("routing the second VIP to the director");
            for n in 1..=2 {
                lab.exec(
                    &format!("rs{n}"),
                    &["ip", "addr", "add", &vip2, "dev", "lo"],
                )
                .expect("the second VIP on a real server's lo");
            }
            // Quorum commands run as the script user (nobody).
            let scripts = lab.dir().join("scripts");
            std::fs::create_dir(&scripts).unwrap();
            std::fs::set_permissions(&scripts, std::fs::Permissions::from_mode(0o777)).unwrap();
            let log = scripts.join("quorum.log");

            let vips = [VIP, VIP2];
            let d = Daemon::start(lab, &group_config(&vips, &log));
            wait_listing(&d, &both_members(&vips, &[1, 2]), Duration::from_secs(5));
            for vip in vips {
                let seen = spread_to(lab, vip, 4);
                assert_eq!(seen.values().sum::<usize>(), 4);
                assert_eq!(seen.len(), 2, "both serve {vip}: {seen:?}");
            }
            assert_eq!(
                metric(lab, "rvs_health_check_loops"),
                2.0,
                "one check loop per real server, not per member"
            );
            let l = d.listing();
            let groups: Vec<&str> = l["services"]
                .as_array()
                .expect("services")
                .iter()
                .map(|s| s["group"].as_str().unwrap_or("none"))
                .collect();
            assert_eq!(groups, ["web", "web"], "the API names the group: {l}");

            // rs2 stops: out of both members, quorum (2) lost once.
            let rs2 = Nginx::of(lab, 2);
            rs2.stop(lab);
            let took = wait_listing(&d, &both_members(&vips, &[1]), Duration::from_secs(10));
            eprintln!("  rs2 left both members {took:.1?} after its nginx stopped");
            for vip in vips {
                let seen = spread_to(lab, vip, 6);
                assert_eq!(seen, BTreeMap::from([("rs1".into(), 6)]), "{vip}");
            }
            wait_quorum_log(&log, &["down"]);
            let l = d.listing();
            let rs2_health: Vec<(String, bool)> = l["health"]
                .as_array()
                .expect("health entries")
                .iter()
                .filter(|h| h["addr"] == rs_ip(2).to_string().as_str())
                .map(|h| {
                    let svc = &h["service"];
                    (
                        format!("{}:{}", svc["addr"].as_str().unwrap_or("?"), svc["port"]),
                        h["up"].as_bool().unwrap_or(true),
                    )
                })
                .collect();
            assert_eq!(
                rs2_health,
                [(format!("{VIP}:80"), false), (format!("{VIP2}:80"), false)],
                "rs2 down in each member: {l}"
            );

            // rs2 serves again: back in both, quorum_up once.
            rs2.start(lab);
            wait_listing(&d, &both_members(&vips, &[1, 2]), Duration::from_secs(10));
            wait_quorum_log(&log, &["down", "up"]);
            for vip in vips {
                assert_eq!(spread_to(lab, vip, 4).len(), 2, "both serve {vip} again");
            }

            // A group listing a member twice is refused whole.
            d.write_config(&group_config(&[VIP, VIP2, VIP], &log));
            let refused = d.try_rvsadm(&["--reload"]);
            let Err(e) = refused else {
                panic!("a reload of a group with a member twice was applied: {refused:?}");
            };
            assert!(e.to_string().contains("list each member once"), "{e}");
            wait_listing(&d, &both_members(&vips, &[1, 2]), Duration::from_secs(1));

            // A reload drops the second member; the group keeps its checks.
            d.write_config(&group_config(&[VIP], &log));
            d.rvsadm(&["--reload"]);
            wait_listing(&d, &both_members(&[VIP], &[1, 2]), Duration::from_secs(5));
            assert_eq!(metric(lab, "rvs_health_check_loops"), 2.0);
            assert_eq!(quorum_log(&log), ["down", "up"], "no quorum change");
            d.stop();
        },
    );
}
