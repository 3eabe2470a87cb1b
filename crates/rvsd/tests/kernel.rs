//! The kernel-facts module (rtnetlink) against real kernel state: interfaces,
//! routes and neighbours configured with iproute2 in network namespaces this
//! test creates, read back by `kernel.rs` from a thread that has `setns()`
//! into them (a netlink socket belongs to its creating thread's namespace).
//!
//! Each test owns namespaces `<unique prefix>-a` / `…-b` (rvs-netns) joined
//! by a veth pair, removed on drop (also when the test fails) and on Ctrl-C.
//! Needs root.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use rvs_engine::{IfIndex, Route};
use rvs_netns::{End, Veth};
use rvs_wire::EthernetAddress;

// rvsd is a binary crate: the module is compiled into this test as is.
// `rx_queues` reads sysfs, which follows the mount namespace rather than the
// thread's network namespace, so it is not exercised here.
#[path = "../src/kernel.rs"]
#[allow(dead_code)] // reason: rx_queues is not used by these tests (see above).
mod kernel;

const MAC_A: &str = "02:00:0a:4d:00:01";
const MAC_B: &str = "02:00:0a:4d:00:02";

fn mac(s: &str) -> EthernetAddress {
    s.parse().expect("MAC")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("IP")
}

/// Two namespaces, `a` and `b`, joined by veth `rvk0` (in a, MAC_A, MTU
/// 1400) — `rvk1` (in b, MAC_B), both up, with `a_addr` / `b_addr` on them.
struct Bed {
    nets: rvs_netns::Bed,
    a: String,
}

impl Bed {
    fn new(a_addr: &str, b_addr: &str) -> Bed {
        let mut nets = rvs_netns::Bed::new();
        let (a, b) = (nets.add("a"), nets.add("b"));
        Veth::new(
            End::new(&a, "rvk0").mac(MAC_A).mtu(1400).addr(a_addr),
            End::new(&b, "rvk1").mac(MAC_B).addr(b_addr),
        )
        .up()
        .create()
        .unwrap_or_else(|e| panic!("{e}"));
        Bed { nets, a }
    }

    /// `ip -n a <args>`; returns stdout.
    fn ip_a(&self, args: &[&str]) -> String {
        self.nets.ip(&self.a, args)
    }

    /// The kernel's ifindex of `rvk0`, as iproute2 sees it.
    fn index_a(&self) -> u32 {
        let out = self.ip_a(&["-j", "link", "show", "dev", "rvk0"]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j output");
        v[0]["ifindex"].as_u64().expect("ifindex") as u32
    }

    /// Runs `f` on a thread inside namespace `a`.
    fn in_a<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        rvs_netns::run_in(&self.a, f)
    }
}

#[test]
fn interface_facts_match_the_configuration() {
    let bed = Bed::new("10.77.50.1/24", "10.77.50.2/24");
    bed.ip_a(&["-6", "addr", "add", "fd77:50::1/64", "dev", "rvk0", "nodad"]);
    let index = bed.index_a();
    let (i, lo, missing) = bed.in_a(|| {
        (
            kernel::interface("rvk0").expect("rvk0"),
            kernel::interface("lo").expect("lo"),
            kernel::interface("rvk9").map(|_| ()),
        )
    });
    assert_eq!(i.index, IfIndex(index));
    assert_eq!(i.name, "rvk0");
    assert_eq!(i.mac, mac(MAC_A));
    assert_eq!(i.mtu, 1400);
    assert_eq!(
        i.addrs,
        vec![(ip("10.77.50.1"), 24), (ip("fd77:50::1"), 64)],
        "the veth's link-local fe80:: address must be left out"
    );

    // Loopback: MTU 65536 clamped, host-scope addresses kept.
    assert_eq!(lo.mtu, u16::MAX);
    assert_eq!(lo.mac, EthernetAddress([0; 6]));
    assert!(lo.addrs.contains(&(ip("127.0.0.1"), 8)), "{:?}", lo.addrs);

    let err = format!("{:#}", missing.expect_err("rvk9 does not exist"));
    assert!(
        err.contains("rvk9 not found") && err.contains("interfaces"),
        "{err}"
    );
}

#[test]
fn gateway_routes_of_the_main_table_with_their_egress() {
    let bed = Bed::new("10.77.51.1/24", "10.77.51.2/24");
    bed.ip_a(&["route", "add", "default", "via", "10.77.51.254"]);
    bed.ip_a(&["route", "add", "10.78.0.0/16", "via", "10.77.51.253"]);
    // Not in the main table: must not show up.
    bed.ip_a(&[
        "route",
        "add",
        "10.79.0.0/16",
        "via",
        "10.77.51.252",
        "table",
        "100",
    ]);
    bed.ip_a(&["-6", "addr", "add", "fd77:51::1/64", "dev", "rvk0", "nodad"]);
    bed.ip_a(&[
        "-6",
        "route",
        "add",
        "default",
        "via",
        "fd77:51::fe",
        "dev",
        "rvk0",
    ]);
    let index = IfIndex(bed.index_a());
    let (routes, none) = bed.in_a(|| {
        let i = kernel::interface("rvk0").expect("rvk0");
        let lo = kernel::interface("lo").expect("lo");
        (
            kernel::routes(std::slice::from_ref(&i)).expect("routes"),
            kernel::routes(&[lo]).expect("routes via lo"),
        )
    });
    let want = |dst: &str, prefix_len: u8, gw: &str| Route {
        dst: ip(dst),
        prefix_len,
        egress: index,
        gateway: Some(ip(gw)),
    };
    let mut got = routes.clone();
    got.sort_by_key(|r| (r.dst, r.prefix_len));
    let mut expected = vec![
        want("0.0.0.0", 0, "10.77.51.254"),
        want("10.78.0.0", 16, "10.77.51.253"),
        want("::", 0, "fd77:51::fe"),
    ];
    expected.sort_by_key(|r| (r.dst, r.prefix_len));
    assert_eq!(got, expected, "connected routes and table 100 left out");
    assert!(none.is_empty(), "routes via other interfaces: {none:?}");
}

#[test]
fn only_usable_neighbours_are_reported() {
    let bed = Bed::new("10.77.52.1/24", "10.77.52.2/24");
    let neigh = |args: &[&str]| {
        let mut v = vec!["neigh"];
        v.extend_from_slice(args);
        v.extend_from_slice(&["dev", "rvk0"]);
        bed.ip_a(&v);
    };
    neigh(&[
        "add",
        "10.77.52.7",
        "lladdr",
        "02:00:00:00:52:07",
        "nud",
        "permanent",
    ]);
    neigh(&[
        "add",
        "10.77.52.10",
        "lladdr",
        "02:00:00:00:52:10",
        "nud",
        "stale",
    ]);
    neigh(&[
        "add",
        "fd77:52::7",
        "lladdr",
        "02:00:00:00:52:77",
        "nud",
        "permanent",
    ]);
    // Once resolved, now given up on: FAILED.
    neigh(&[
        "add",
        "10.77.52.8",
        "lladdr",
        "02:00:00:00:52:08",
        "nud",
        "stale",
    ]);
    neigh(&["change", "10.77.52.8", "nud", "failed"]);
    neigh(&["add", "10.77.52.9", "nud", "incomplete"]);
    let table = bed.ip_a(&["neigh", "show", "dev", "rvk0"]);
    assert!(
        table.contains("10.77.52.8 FAILED") && table.contains("10.77.52.9 INCOMPLETE"),
        "the test's FAILED / INCOMPLETE entries are missing:\n{table}"
    );

    let n = bed.in_a(|| kernel::neighbors().expect("neighbours"));
    assert_eq!(n.get(&ip("10.77.52.7")), Some(&mac("02:00:00:00:52:07")));
    assert_eq!(n.get(&ip("10.77.52.10")), Some(&mac("02:00:00:00:52:10")));
    assert_eq!(n.get(&ip("fd77:52::7")), Some(&mac("02:00:00:00:52:77")));
    assert!(!n.contains_key(&ip("10.77.52.8")), "FAILED reported: {n:?}");
    assert!(
        !n.contains_key(&ip("10.77.52.9")),
        "INCOMPLETE reported: {n:?}"
    );
}

#[test]
fn usable_neighbour_states() {
    use netlink_packet_route::neighbour::NeighbourState as S;
    for s in [
        S::Reachable,
        S::Stale,
        S::Delay,
        S::Probe,
        S::Permanent,
        S::Noarp,
    ] {
        assert!(kernel::usable(s), "{s:?}");
    }
    for s in [S::Incomplete, S::Failed, S::None, S::Other(0x02 | 0x20)] {
        assert!(!kernel::usable(s), "{s:?}");
    }
}

/// Polls the neighbour table of namespace `a` until `addr` shows up, at most
/// 5 s.
fn wait_for_neighbour(bed: &Bed, addr: IpAddr) -> Option<EthernetAddress> {
    bed.in_a(move || {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Some(m) = kernel::neighbors().expect("neighbours").get(&addr) {
                return Some(*m);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    })
}

#[test]
fn trigger_resolution_resolves_an_on_link_address() {
    let bed = Bed::new("10.77.53.1/24", "10.77.53.2/24");
    let peer = ip("10.77.53.2");
    let before = bed.in_a(move || {
        let before = kernel::neighbors().expect("neighbours");
        // Netlink itself must accept the request on this kernel (no fallback).
        kernel::ask_resolution(peer).expect("RTM_NEWNEIGH with NTF_USE");
        before
    });
    assert!(!before.contains_key(&peer), "already resolved: {before:?}");
    assert_eq!(wait_for_neighbour(&bed, peer), Some(mac(MAC_B)));

    // Nobody answers for .99: the kernel tries, the entry must not be reported.
    let silent = ip("10.77.53.99");
    bed.in_a(move || kernel::trigger_resolution(silent));
    let start = Instant::now();
    loop {
        let t = bed.ip_a(&["neigh", "show", "10.77.53.99"]);
        if t.contains("INCOMPLETE") || t.contains("FAILED") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no resolution attempt for 10.77.53.99: {t:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let n = bed.in_a(|| kernel::neighbors().expect("neighbours"));
    assert!(!n.contains_key(&silent), "{n:?}");
}

#[test]
fn trigger_resolution_resolves_the_gateway_of_a_routed_address() {
    let bed = Bed::new("10.77.54.1/24", "10.77.54.2/24");
    bed.ip_a(&["route", "add", "10.78.0.0/16", "via", "10.77.54.2"]);
    bed.in_a(|| kernel::trigger_resolution(ip("10.78.1.1")));
    assert_eq!(wait_for_neighbour(&bed, ip("10.77.54.2")), Some(mac(MAC_B)));
    let n = bed.in_a(|| kernel::neighbors().expect("neighbours"));
    assert!(!n.contains_key(&ip("10.78.1.1")), "{n:?}");
}
