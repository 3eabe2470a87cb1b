//! Path MTU discovery through the director (issue 11, item 2): the router's
//! link to the client carries at most 1400 bytes while every other link
//! carries 1500, so neither end knows the path is narrower (the client
//! announces an MSS of 1460). A real server's full-size segments of a
//! 1 MB download only get through once the router's ICMP "fragmentation
//! needed" — sent to the segments' source, the VIP, so routed to the
//! director — reaches the real server: translated for NAT, relayed as it is
//! for DR, encapsulated for TUN. Without that relay the download stalls and
//! curl times out.
//!
//! The same for IPv6 (the lab made dual-stack): the router's ICMPv6
//! "packet too big" about a reply VIP6 → client reaches the real server.
//!
//! One lab per mode and family (2 RX queues per veth), rvsd with the fast
//! path on. Needs root; builds rvsd/rvsadm/rvs-decap itself if needed.
//! Loads: three 1 MB downloads per mode, each bounded to 20 s.

#[allow(dead_code)]
mod common;

use std::time::Duration;

use rvs_lab::{rs_ip6, Mode, BIG_PAGE_BYTES, VIP, VIP6};

use common::{counters_of, Daemon};

/// MTU of the router's link toward the client.
const NARROW_MTU: &str = "1400";

/// A TCP service on VIP6:80, round robin, real servers rs1..rs3 over IPv6.
fn rr_service6(method: &str) -> String {
    let mut s = format!(
        "[[service]]\nprotocol = \"tcp\"\naddress = \"{VIP6}\"\nport = 80\nscheduler = \"rr\"\n"
    );
    for n in 1..=3 {
        s.push_str(&format!(
            "  [[service.real_server]]\n  address = \"{}\"\n  port = 80\n  method = \"{method}\"\n",
            rs_ip6(n)
        ));
    }
    s
}

fn suite(mode: Mode, v6: bool, name: &str) {
    common::with_lab(name, common::lab_spec(mode, 2), |lab| {
        let method = common::method_name(mode);
        let (service, url) = if v6 {
            lab.enable_ipv6().expect("making the lab dual-stack");
            (rr_service6(method), format!("http://[{VIP6}]/big"))
        } else {
            (
                common::rr_service(method, &[1, 2, 3]),
                format!("http://{VIP}/big"),
            )
        };
        let d = Daemon::start(lab, &service);
        lab.exec(
            "router",
            &["ip", "link", "set", "dev", "rt-client", "mtu", NARROW_MTU],
        )
        .expect("narrowing the router's client link");
        let before = counters_of(&d.listing());
        // Three downloads: round robin sends one to each real server, each
        // of which must learn the path MTU from a relayed error.
        for i in 0..3 {
            let out = lab
                .exec_timeout(
                    "client",
                    &[
                        "curl",
                        "-sS",
                        "-o",
                        "/dev/null",
                        "-m",
                        "20",
                        "-w",
                        "%{size_download}",
                        &url,
                    ],
                    Duration::from_secs(30),
                )
                .unwrap_or_else(|e| panic!("{name}: download {i} did not complete: {e}"));
            assert_eq!(
                out.trim(),
                BIG_PAGE_BYTES.to_string(),
                "{name}: download {i} size"
            );
        }
        // The worker publishes its counters every 200 ms: wait for them
        // to cover the downloads (bounded; the assertions below decide).
        let want = if mode == Mode::Nat {
            "icmp_translated"
        } else {
            "icmp_relayed"
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut after = counters_of(&d.listing());
        while after.get(want).copied().unwrap_or(0) < 3 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            after = counters_of(&d.listing());
        }
        let moved =
            |k: &str| after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0);
        let (relayed, translated) = (moved("icmp_relayed"), moved("icmp_translated"));
        eprintln!(
            "{name}: 3 × 1 MB through a {NARROW_MTU}-byte link; ICMP errors relayed {relayed}, translated {translated}, dropped as unknown {}",
            moved("drop_icmp_no_connection")
        );
        if mode == Mode::Nat {
            assert!(
                translated >= 3,
                "{name}: one error per server at least, translated"
            );
        } else {
            assert!(
                relayed >= 3,
                "{name}: one error per server at least, relayed"
            );
        }
        assert_eq!(
            moved("drop_icmp_no_connection"),
            0,
            "{name}: every error was about a tracked connection"
        );
    });
}

#[test]
fn pmtu_discovery_works_through_nat() {
    suite(Mode::Nat, false, "pmtu-nat");
}

#[test]
fn pmtu_discovery_works_through_dr() {
    suite(Mode::Dr, false, "pmtu-dr");
}

#[test]
fn pmtu_discovery_works_through_tun() {
    suite(Mode::Tun, false, "pmtu-tun");
}

#[test]
fn ipv6_pmtu_discovery_works_through_nat() {
    suite(Mode::Nat, true, "pmtu6-nat");
}

#[test]
fn ipv6_pmtu_discovery_works_through_dr() {
    suite(Mode::Dr, true, "pmtu6-dr");
}

#[test]
fn ipv6_pmtu_discovery_works_through_tun() {
    suite(Mode::Tun, true, "pmtu6-tun");
}
