//! The kernel-facts module (rtnetlink) against real kernel state: interfaces,
//! routes and neighbours configured with iproute2 in network namespaces this
//! test creates, read back by `kernel.rs` from a thread that has `setns()`
//! into them (a netlink socket belongs to its creating thread's namespace);
//! the notifications a subscription receives, and the watcher (`watch.rs`)
//! that turns them into neighbour tables and facts for the director.
//!
//! Each test owns namespaces `<unique prefix>-a` / `…-b` (rvs-netns) joined
//! by a veth pair (some a second one), removed on drop (also when the test
//! fails) and on Ctrl-C. Needs root.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use rvs_engine::{
    Config, ConfigError, Dest, ForwardMethod, IfIndex, Interface, Protocol, Route, Service,
    ServiceKey, Snapshot,
};
use rvs_netns::{End, Veth};
use rvs_wire::EthernetAddress;

// rvsd is a binary crate: the modules are compiled into this test as they
// are. `rx_queues` reads sysfs, which follows the mount namespace rather
// than the thread's network namespace, so it is not exercised here.
#[path = "../src/kernel.rs"]
#[allow(dead_code)] // reason: rx_queues is not used by these tests (see above).
mod kernel;
#[path = "../src/watch.rs"]
#[allow(dead_code)] // reason: the next-hop resolver thread is rvsd's (main.rs).
mod watch;

use kernel::{Event, Neighbour};

/// How long a notification may take to arrive (they come within
/// milliseconds; the bound allows for a loaded machine).
const EVENT_BOUND: Duration = Duration::from_secs(2);

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

    /// A second veth pair: `rvk2` (in a, `a_addr`) — `rvk3` (in b, `b_addr`).
    fn second_link(&self, a_addr: &str, b_addr: &str) {
        Veth::new(
            End::new(&self.a, "rvk2").addr(a_addr),
            End::new(&self.nets.name("b"), "rvk3").addr(b_addr),
        )
        .up()
        .create()
        .unwrap_or_else(|e| panic!("{e}"));
    }

    /// `rvk0` (and whatever else is named) as the engine sees it, and the
    /// routes through them.
    fn facts(&self, names: &[&'static str]) -> (Vec<Interface>, Vec<Route>) {
        let names = names.to_vec();
        self.in_a(move || {
            let ifaces: Vec<Interface> = names
                .iter()
                .map(|n| kernel::interface(n).unwrap_or_else(|e| panic!("{n}: {e:#}")))
                .collect();
            let routes = kernel::routes(&ifaces).expect("routes");
            (ifaces, routes)
        })
    }

    /// Whether the kernel of namespace a sends to `addr` directly (no
    /// gateway), per `ip route get`.
    fn kernel_on_link(&self, addr: &str) -> bool {
        let out = self.ip_a(&["-j", "route", "get", addr]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j output");
        v[0].get("gateway").is_none() && v[0].get("via").is_none()
    }
}

/// Usable neighbours of the calling thread's namespace: address → MAC.
fn neighbors() -> BTreeMap<IpAddr, EthernetAddress> {
    kernel::neighbour_entries()
        .expect("neighbours")
        .into_iter()
        .filter_map(|n| Some((n.addr, n.mac?)))
        .collect()
}

/// What the engine makes of DR real servers `addrs` (one service per
/// family) with `ifaces` and `routes`: accepted only if each is on-link.
fn engine_dr(ifaces: &[Interface], routes: &[Route], addrs: &[&str]) -> Result<(), ConfigError> {
    let services = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let vip = if ip(a).is_ipv4() {
                format!("10.99.0.{}", i + 1)
            } else {
                format!("fd99::{}", i + 1)
            };
            let mut svc = Service::new(ServiceKey::new(Protocol::Tcp, ip(&vip), 80), "rr");
            svc.dests = vec![Dest::new(ip(a), 80, ForwardMethod::Route)];
            svc
        })
        .collect();
    let config = Config {
        interfaces: ifaces.to_vec(),
        routes: routes.to_vec(),
        services,
        ..Config::default()
    };
    Snapshot::new(config).map(|_| ())
}

/// The routes of `routes` to `dst/prefix_len`, most preferred first.
fn routes_to(routes: &[Route], dst: &str, prefix_len: u8) -> Vec<(Option<IpAddr>, IfIndex)> {
    routes
        .iter()
        .filter(|r| r.dst == ip(dst) && r.prefix_len == prefix_len)
        .map(|r| (r.gateway, r.egress))
        .collect()
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
fn routes_of_the_main_table_with_their_egress() {
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
    // Not unicast: must not show up either.
    bed.ip_a(&["route", "add", "blackhole", "10.80.0.0/16"]);
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
    let (_, routes) = bed.facts(&["rvk0"]);
    let (lo, via_lo) = bed.facts(&["lo"]);
    let want = |dst: &str, prefix_len: u8, gw: Option<&str>| Route {
        dst: ip(dst),
        prefix_len,
        egress: index,
        gateway: gw.map(ip),
    };
    let mut got = routes.clone();
    got.sort_by_key(|r| (r.dst, r.prefix_len));
    let mut expected = vec![
        want("0.0.0.0", 0, Some("10.77.51.254")),
        want("10.78.0.0", 16, Some("10.77.51.253")),
        // The connected networks are the kernel's on-link routes.
        want("10.77.51.0", 24, None),
        want("fd77:51::", 64, None),
        want("fe80::", 64, None),
        want("::", 0, Some("fd77:51::fe")),
    ];
    expected.sort_by_key(|r| (r.dst, r.prefix_len));
    assert_eq!(got, expected, "table 100 and the blackhole left out");
    assert!(
        via_lo.iter().all(|r| r.egress == lo[0].index),
        "routes via other interfaces: {via_lo:?}"
    );
}

/// An on-link route (`ip route add NET dev X`) and a point-to-point peer
/// (`ip addr add A peer B/32`) reach real servers without a gateway: the
/// engine takes them for direct routing, as the kernel routes them.
#[test]
fn on_link_routes_and_point_to_point_peers_reach_real_servers() {
    let bed = Bed::new("10.77.55.1/24", "10.77.55.2/24");
    bed.ip_a(&["route", "add", "default", "via", "10.77.55.254"]);
    bed.ip_a(&["route", "add", "10.78.0.0/16", "dev", "rvk0"]);
    bed.ip_a(&[
        "addr",
        "add",
        "10.79.0.1",
        "peer",
        "10.79.0.2/32",
        "dev",
        "rvk0",
    ]);
    bed.ip_a(&["-6", "addr", "add", "fd77:55::1/64", "dev", "rvk0", "nodad"]);
    bed.ip_a(&["-6", "route", "add", "fd78::/64", "dev", "rvk0"]);
    bed.ip_a(&[
        "-6",
        "route",
        "add",
        "default",
        "via",
        "fd77:55::fe",
        "dev",
        "rvk0",
    ]);
    let index = IfIndex(bed.index_a());
    let (ifaces, routes) = bed.facts(&["rvk0"]);
    assert!(
        ifaces[0].addrs.contains(&(ip("10.79.0.1"), 32)),
        "the local end of the peer address: {:?}",
        ifaces[0].addrs
    );
    assert_eq!(routes_to(&routes, "10.78.0.0", 16), vec![(None, index)]);
    assert_eq!(routes_to(&routes, "10.79.0.2", 32), vec![(None, index)]);
    assert_eq!(routes_to(&routes, "fd78::", 64), vec![(None, index)]);

    let servers = ["10.78.3.4", "10.79.0.2", "fd78::7"];
    for s in servers {
        assert!(bed.kernel_on_link(s), "the kernel routes {s} on-link");
    }
    engine_dr(&ifaces, &routes, &servers)
        .unwrap_or_else(|e| panic!("DR to on-link and peer servers refused: {e}"));
    // Beyond them, the default route's gateway: not on-link, for both.
    assert!(!bed.kernel_on_link("10.79.0.3"));
    let err = engine_dr(&ifaces, &routes, &["10.79.0.3"]).expect_err("gateway, not on-link");
    assert!(matches!(err, ConfigError::NotOnLink { .. }), "{err}");
    // Without the kernel's on-link routes, only the connected networks and
    // the default route: what rvsd used to see.
    let gateways: Vec<Route> = routes
        .iter()
        .filter(|r| r.gateway.is_some())
        .cloned()
        .collect();
    assert!(engine_dr(&ifaces, &gateways, &servers).is_err());
}

/// Among routes of one prefix the kernel prefers the lowest metric, a
/// gateway route included over the connected network (IPv6 connected routes
/// have metric 256): the engine must choose as the kernel does.
#[test]
fn routes_of_one_prefix_are_chosen_as_the_kernel_chooses() {
    let bed = Bed::new("10.77.56.1/24", "10.77.56.2/24");
    bed.ip_a(&["-6", "addr", "add", "fd77:56::1/64", "dev", "rvk0", "nodad"]);
    let route = |args: &[&str]| {
        let mut v = vec!["route", "add"];
        v.extend_from_slice(args);
        bed.ip_a(&v);
    };
    route(&["10.80.0.0/16", "dev", "rvk0", "metric", "10"]);
    route(&["10.80.0.0/16", "via", "10.77.56.2", "metric", "50"]);
    route(&["10.81.0.0/16", "via", "10.77.56.2", "metric", "10"]);
    route(&["10.81.0.0/16", "dev", "rvk0", "metric", "50"]);
    bed.ip_a(&[
        "-6",
        "route",
        "add",
        "fd77:56::/64",
        "via",
        "fd77:56::fe",
        "dev",
        "rvk0",
        "metric",
        "100",
    ]);
    let index = IfIndex(bed.index_a());
    let (ifaces, routes) = bed.facts(&["rvk0"]);
    let gw = Some(ip("10.77.56.2"));
    assert_eq!(
        routes_to(&routes, "10.80.0.0", 16),
        vec![(None, index), (gw, index)]
    );
    assert_eq!(
        routes_to(&routes, "10.81.0.0", 16),
        vec![(gw, index), (None, index)]
    );
    assert_eq!(
        routes_to(&routes, "fd77:56::", 64),
        vec![(Some(ip("fd77:56::fe")), index), (None, index)]
    );
    for server in ["10.80.1.1", "10.81.1.1", "fd77:56::7", "10.77.56.7"] {
        let kernel = bed.kernel_on_link(server);
        let engine = engine_dr(&ifaces, &routes, &[server]);
        assert_eq!(
            engine.is_ok(),
            kernel,
            "{server}: the kernel routes it {}, the engine says {engine:?}",
            if kernel {
                "on-link"
            } else {
                "through a gateway"
            }
        );
    }
    assert!(bed.kernel_on_link("10.80.1.1") && !bed.kernel_on_link("10.81.1.1"));
    assert!(!bed.kernel_on_link("fd77:56::7"));
}

/// A multipath route is used as its first next hop that leaves through one
/// of the director's interfaces (dead next hops skipped).
#[test]
fn multipath_routes_use_their_first_next_hop_through_our_interfaces() {
    let bed = Bed::new("10.77.57.1/24", "10.77.57.2/24");
    bed.second_link("10.77.157.1/24", "10.77.157.2/24");
    bed.ip_a(&["-6", "addr", "add", "fd77:57::1/64", "dev", "rvk0", "nodad"]);
    bed.ip_a(&[
        "-6",
        "addr",
        "add",
        "fd77:157::1/64",
        "dev",
        "rvk2",
        "nodad",
    ]);
    bed.ip_a(&[
        "route",
        "add",
        "10.82.0.0/16",
        "nexthop",
        "via",
        "10.77.157.2",
        "dev",
        "rvk2",
        "nexthop",
        "via",
        "10.77.57.2",
        "dev",
        "rvk0",
    ]);
    bed.ip_a(&[
        "-6",
        "route",
        "add",
        "fd82::/64",
        "nexthop",
        "via",
        "fd77:157::2",
        "dev",
        "rvk2",
        "nexthop",
        "via",
        "fd77:57::2",
        "dev",
        "rvk0",
    ]);
    let (a, _) = bed.facts(&["rvk0", "rvk2"]);
    let (rvk0, rvk2) = (a[0].index, a[1].index);

    let (_, only_rvk0) = bed.facts(&["rvk0"]);
    assert_eq!(
        routes_to(&only_rvk0, "10.82.0.0", 16),
        vec![(Some(ip("10.77.57.2")), rvk0)],
        "{only_rvk0:?}"
    );
    assert_eq!(
        routes_to(&only_rvk0, "fd82::", 64),
        vec![(Some(ip("fd77:57::2")), rvk0)],
        "{only_rvk0:?}"
    );
    let (_, both) = bed.facts(&["rvk0", "rvk2"]);
    assert_eq!(
        routes_to(&both, "10.82.0.0", 16),
        vec![(Some(ip("10.77.157.2")), rvk2)]
    );
    assert_eq!(
        routes_to(&both, "fd82::", 64),
        vec![(Some(ip("fd77:157::2")), rvk2)]
    );
    // rvk2 down: the kernel marks its IPv4 next hop dead, the other is used.
    bed.ip_a(&["link", "set", "rvk2", "down"]);
    let (_, after) = bed.facts(&["rvk0", "rvk2"]);
    assert_eq!(
        routes_to(&after, "10.82.0.0", 16),
        vec![(Some(ip("10.77.57.2")), rvk0)],
        "{after:?}"
    );
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

    let n = bed.in_a(neighbors);
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
            if let Some(m) = neighbors().get(&addr) {
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
        let before = neighbors();
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
    let n = bed.in_a(neighbors);
    assert!(!n.contains_key(&silent), "{n:?}");
}

#[test]
fn trigger_resolution_resolves_the_gateway_of_a_routed_address() {
    let bed = Bed::new("10.77.54.1/24", "10.77.54.2/24");
    bed.ip_a(&["route", "add", "10.78.0.0/16", "via", "10.77.54.2"]);
    bed.in_a(|| kernel::trigger_resolution(ip("10.78.1.1")));
    assert_eq!(wait_for_neighbour(&bed, ip("10.77.54.2")), Some(mac(MAC_B)));
    let n = bed.in_a(neighbors);
    assert!(!n.contains_key(&ip("10.78.1.1")), "{n:?}");
}

/// Receives from `sub` until an event `want` accepts, at most
/// [`EVENT_BOUND`]; returns how long it took, or fails with what came.
fn wait_event(
    sub: &mut kernel::Subscription,
    what: &str,
    want: impl Fn(&Event) -> bool,
) -> Duration {
    let start = Instant::now();
    let mut seen = Vec::new();
    while start.elapsed() < EVENT_BOUND {
        let mut got = Vec::new();
        sub.receive(Duration::from_millis(100), &mut got)
            .expect("receiving notifications");
        if got.iter().any(&want) {
            return start.elapsed();
        }
        seen.extend(got);
    }
    panic!("no notification of {what} within {EVENT_BOUND:?}; got {seen:#?}");
}

#[test]
fn a_subscription_is_told_of_neighbours_routes_addresses_and_links() {
    let bed = Bed::new("10.77.58.1/24", "10.77.58.2/24");
    bed.ip_a(&["-6", "addr", "add", "fd77:58::1/64", "dev", "rvk0", "nodad"]);
    let index = bed.index_a();
    let mut sub = bed.in_a(|| kernel::Subscription::open().expect("subscribing"));

    let neighbour = |addr: &str, m: Option<&str>| {
        Event::Neighbour(Neighbour {
            ifindex: index,
            addr: ip(addr),
            mac: m.map(mac),
        })
    };
    for (addr, lladdr) in [
        ("10.77.58.7", "02:00:00:00:58:07"),
        ("fd77:58::7", "02:00:00:00:58:77"),
    ] {
        bed.ip_a(&[
            "neigh", "add", addr, "lladdr", lladdr, "dev", "rvk0", "nud", "stale",
        ]);
        let took = wait_event(&mut sub, &format!("neighbour {addr}"), |e| {
            *e == neighbour(addr, Some(lladdr))
        });
        eprintln!("neighbour {addr} added: notified after {took:?}");
        bed.ip_a(&["neigh", "del", addr, "dev", "rvk0"]);
        wait_event(&mut sub, &format!("neighbour {addr} removed"), |e| {
            *e == neighbour(addr, None)
        });
    }
    // Resolved, then given up on: the entry stays, but is no longer usable.
    bed.ip_a(&[
        "neigh",
        "add",
        "10.77.58.8",
        "lladdr",
        "02:00:00:00:58:08",
        "dev",
        "rvk0",
        "nud",
        "stale",
    ]);
    wait_event(&mut sub, "neighbour 10.77.58.8", |e| {
        *e == neighbour("10.77.58.8", Some("02:00:00:00:58:08"))
    });
    bed.ip_a(&[
        "neigh",
        "change",
        "10.77.58.8",
        "dev",
        "rvk0",
        "nud",
        "failed",
    ]);
    wait_event(&mut sub, "a failed neighbour", |e| {
        *e == neighbour("10.77.58.8", None)
    });

    let route = |dst: &str, prefix_len: u8, removed: bool| Event::Route {
        dst: ip(dst),
        prefix_len,
        egress: vec![index],
        removed,
    };
    bed.ip_a(&["route", "add", "10.78.0.0/16", "via", "10.77.58.2"]);
    let took = wait_event(&mut sub, "a route added", |e| {
        *e == route("10.78.0.0", 16, false)
    });
    eprintln!("route added: notified after {took:?}");
    bed.ip_a(&["route", "del", "10.78.0.0/16"]);
    wait_event(&mut sub, "a route removed", |e| {
        *e == route("10.78.0.0", 16, true)
    });
    bed.ip_a(&["-6", "route", "add", "fd78::/64", "dev", "rvk0"]);
    wait_event(&mut sub, "an IPv6 route added", |e| {
        *e == route("fd78::", 64, false)
    });
    // Other tables are not rvsd's.
    bed.ip_a(&[
        "route",
        "add",
        "10.79.0.0/16",
        "via",
        "10.77.58.2",
        "table",
        "100",
    ]);
    bed.ip_a(&["addr", "add", "10.77.59.1/24", "dev", "rvk0"]);
    wait_event(&mut sub, "an address added", |e| {
        *e == Event::Address { index }
    });
    bed.ip_a(&["link", "set", "rvk0", "mtu", "1300"]);
    wait_event(&mut sub, "an MTU change", |e| *e == Event::Link { index });

    // Drain what is left: nothing about table 100.
    let mut rest = Vec::new();
    sub.receive(Duration::from_millis(200), &mut rest)
        .expect("receiving");
    assert!(
        !rest
            .iter()
            .any(|e| matches!(e, Event::Route { dst, .. } if *dst == ip("10.79.0.0"))),
        "a route of table 100 reported: {rest:?}"
    );
}

/// The watcher as rvsd runs it, in namespace a: a neighbour added is in the
/// next published table within the bound (one on another link is not); a
/// route added and an MTU changed reach the director's `apply` within the
/// bound (the debounce included).
#[test]
fn the_watcher_publishes_neighbours_and_hands_on_changed_facts() {
    let bed = Bed::new("10.77.60.1/24", "10.77.60.2/24");
    bed.second_link("10.77.160.1/24", "10.77.160.2/24");
    let index = IfIndex(bed.index_a());
    let (tables_tx, tables) = mpsc::channel();
    let (facts_tx, facts) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_w = Arc::clone(&stop);
    let (first_tx, first) = mpsc::channel();
    let thread = rvs_netns::spawn_in(&bed.a, move || {
        let rvk0 = kernel::interface("rvk0").expect("rvk0");
        let routes = kernel::routes(std::slice::from_ref(&rvk0)).expect("routes");
        let w = watch::Watch::start(std::slice::from_ref(&rvk0), &routes).expect("watching");
        let _ = first_tx.send(w.table().generation());
        w.run(
            &stop_w,
            |t| {
                let _ = tables_tx.send(t);
            },
            |i, r| {
                let _ = facts_tx.send((i, r));
                Ok(true)
            },
        );
    });
    let generation = first
        .recv_timeout(EVENT_BOUND)
        .expect("the watcher started");
    // Facts are read once at the start (they may have changed since rvsd
    // read them).
    let (ifaces, _) = facts
        .recv_timeout(EVENT_BOUND)
        .expect("the first facts at the start");
    assert_eq!(ifaces[0].index, index);
    assert_eq!(ifaces[0].mtu, 1400);

    let foreign = ip("10.77.160.7");
    bed.ip_a(&[
        "neigh",
        "add",
        "10.77.160.7",
        "lladdr",
        "02:00:00:01:60:07",
        "dev",
        "rvk2",
    ]);
    let ours = ip("10.77.60.7");
    let start = Instant::now();
    bed.ip_a(&[
        "neigh",
        "add",
        "10.77.60.7",
        "lladdr",
        "02:00:00:00:60:07",
        "dev",
        "rvk0",
    ]);
    let table = loop {
        let t = tables
            .recv_timeout(EVENT_BOUND.saturating_sub(start.elapsed()))
            .expect("a neighbour table with 10.77.60.7 within the bound");
        if t.lookup(ours).is_some() {
            break t;
        }
    };
    eprintln!("neighbour published after {:?}", start.elapsed());
    assert_eq!(table.lookup(ours), Some(mac("02:00:00:00:60:07")));
    assert!(table.generation() > generation, "a new generation");
    assert_eq!(table.lookup(foreign), None, "a neighbour on another link");

    let wait_facts = |what: &str, ok: &dyn Fn(&[Interface], &[Route]) -> bool| {
        let start = Instant::now();
        loop {
            let (i, r) = facts
                .recv_timeout(EVENT_BOUND.saturating_sub(start.elapsed()))
                .unwrap_or_else(|_| panic!("{what}: not handed on within {EVENT_BOUND:?}"));
            if ok(&i, &r) {
                return start.elapsed();
            }
        }
    };
    bed.ip_a(&["route", "add", "10.78.0.0/16", "via", "10.77.60.2"]);
    let took = wait_facts("a route added", &|_, r| {
        routes_to(r, "10.78.0.0", 16) == vec![(Some(ip("10.77.60.2")), index)]
    });
    eprintln!("route handed on after {took:?}");
    assert!(took >= watch::DEBOUNCE / 2, "debounced: {took:?}");
    bed.ip_a(&["link", "set", "rvk0", "mtu", "1300"]);
    wait_facts("an MTU change", &|i, _| i[0].mtu == 1300);
    bed.ip_a(&["route", "del", "10.78.0.0/16"]);
    wait_facts("a route removed", &|_, r| {
        routes_to(r, "10.78.0.0", 16).is_empty()
    });

    stop.store(true, Ordering::Relaxed);
    thread.join().expect("the watcher stops");
}
