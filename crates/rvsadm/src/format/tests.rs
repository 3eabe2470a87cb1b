//! Exact listing text, checked against ipvsadm's printf formats and against
//! output captured from real ipvsadm 1.31 (trailing blanks included).

use super::*;
use rvs_api::{DestSpec, ForwardMethod, ServiceSpec, Stats};

fn svc(proto: Protocol, addr: &str, port: u16, sched: &str) -> ServiceStatus {
    ServiceStatus {
        spec: ServiceSpec {
            key: ServiceKey::addr(proto, addr.parse().unwrap(), port),
            scheduler: sched.into(),
            persistence_timeout: None,
            netmask: None,
            flags: vec![],
            one_packet: false,
        },
        dests: vec![],
        stats: Stats::default(),
    }
}

fn dst(
    addr: &str,
    port: u16,
    method: ForwardMethod,
    weight: u32,
    act: u32,
    inact: u32,
) -> DestStatus {
    DestStatus {
        spec: DestSpec {
            addr: addr.parse().unwrap(),
            port,
            weight,
            method,
            upper_threshold: 0,
            lower_threshold: 0,
        },
        active_conns: act,
        inactive_conns: inact,
        persistent_conns: 0,
        stats: Stats::default(),
    }
}

fn numeric() -> ListRequest {
    ListRequest {
        numeric: true,
        ..Default::default()
    }
}

fn show(services: Vec<ServiceStatus>, req: &ListRequest) -> String {
    listing(
        &Listing {
            conn_table_size: 4096,
            counters: Default::default(),
            timeouts: Default::default(),
            services,
        },
        req,
        &Numeric,
    )
    .unwrap()
}

const HEAD: &str = "IP Virtual Server version 1.2.1 (size=4096)\n\
Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n";

#[test]
fn empty_table() {
    assert_eq!(show(vec![], &numeric()), HEAD);
}

#[test]
fn masq_matches_captured_ipvsadm_output() {
    // Captured from ipvsadm 1.31 `-L -n` (NAT, two real servers).
    let mut s = svc(Protocol::Tcp, "192.168.146.100", 80, "rr");
    s.dests = vec![
        dst("192.168.177.20", 80, ForwardMethod::Masq, 1, 0, 0),
        dst("192.168.177.10", 80, ForwardMethod::Masq, 1, 0, 0),
    ];
    let want = format!(
        "{HEAD}TCP  192.168.146.100:80 rr\n\
\x20 -> 192.168.177.10:80            Masq    1      0          0         \n\
\x20 -> 192.168.177.20:80            Masq    1      0          0         \n"
    );
    assert_eq!(show(vec![s], &numeric()), want);
}

#[test]
fn dr_tun_persistent_and_ordering() {
    let mut web = svc(Protocol::Tcp, "10.10.0.100", 80, "rr");
    web.dests = vec![dst("10.10.0.11", 80, ForwardMethod::Route, 1, 0, 20)];
    let mut pers = svc(Protocol::Tcp, "10.10.0.100", 443, "wlc");
    pers.spec.persistence_timeout = Some(300);
    pers.dests = vec![dst(
        "10.10.0.12",
        443,
        ForwardMethod::Tunnel,
        65535,
        123456,
        7,
    )];
    let mut masked = svc(Protocol::Udp, "10.10.0.100", 53, "sh");
    masked.spec.persistence_timeout = Some(1800);
    masked.spec.netmask = Some(24);
    masked.spec.flags = vec!["sh-port".into(), "sh-fallback".into()];
    // Given out of order: ipvsadm sorts by protocol, address, port.
    let got = show(vec![masked, pers, web], &numeric());
    let want = format!(
        "{HEAD}TCP  10.10.0.100:80 rr\n\
\x20 -> 10.10.0.11:80                Route   1      0          20        \n\
TCP  10.10.0.100:443 wlc persistent 300\n\
\x20 -> 10.10.0.12:443               Tunnel  65535  123456     7         \n\
UDP  10.10.0.100:53 sh (sh-fallback,sh-port) persistent 1800 mask 255.255.255.0\n"
    );
    assert_eq!(got, want);
}

#[test]
fn ipv6_brackets_and_prefix_mask() {
    let mut s = svc(Protocol::Tcp, "2001:db8::100", 80, "mh");
    s.spec.persistence_timeout = Some(60);
    s.spec.netmask = Some(64);
    s.spec.flags = vec!["mh-port".into()];
    s.dests = vec![
        dst(
            "2001:db8:0:1::11",
            8080,
            ForwardMethod::Masq,
            2147483647,
            4294967295,
            4294967295,
        ),
        dst("2001:db8::11", 80, ForwardMethod::Route, 0, 0, 0),
    ];
    let got = show(vec![s], &numeric());
    let want = format!(
        "{HEAD}TCP  [2001:db8::100]:80 mh (mh-port) persistent 60 mask 64\n\
\x20 -> [2001:db8::11]:80            Route   0      0          0         \n\
\x20 -> [2001:db8:0:1::11]:8080      Masq    2147483647 4294967295 4294967295\n"
    );
    assert_eq!(got, want);
}

#[test]
fn long_ipv4_names_are_cut_like_ipvsadm() {
    struct Long;
    impl Names for Long {
        fn host(&self, _: IpAddr) -> Option<String> {
            Some("a-very-long-host-name.example.internal".into())
        }
        fn service(&self, port: u16, _: Protocol) -> Option<String> {
            (port == 80).then(|| "http".into())
        }
    }
    let mut s = svc(Protocol::Tcp, "10.0.0.1", 80, "rr");
    s.dests = vec![dst("10.0.0.2", 8080, ForwardMethod::Masq, 1, 0, 0)];
    let out = listing(
        &Listing {
            conn_table_size: 4096,
            counters: Default::default(),
            timeouts: Default::default(),
            services: vec![s],
        },
        &ListRequest::default(),
        &Long,
    )
    .unwrap();
    let want = format!(
        "{HEAD}TCP  a-very-long-host-name.exampl rr\n\
\x20 -> a-very-long-host-name.exampl Masq    1      0          0         \n"
    );
    assert_eq!(out, want);
}

#[test]
fn names_are_used_without_numeric() {
    struct Fake;
    impl Names for Fake {
        fn host(&self, a: IpAddr) -> Option<String> {
            (a.to_string() == "10.0.0.1").then(|| "vip".into())
        }
        fn service(&self, port: u16, proto: Protocol) -> Option<String> {
            (port == 53 && proto == Protocol::Udp).then(|| "domain".into())
        }
    }
    let mut s = svc(Protocol::Udp, "10.0.0.1", 53, "rr");
    s.dests = vec![dst("10.0.0.9", 53, ForwardMethod::Route, 1, 0, 0)];
    let out = listing(
        &Listing {
            conn_table_size: 4096,
            counters: Default::default(),
            timeouts: Default::default(),
            services: vec![s],
        },
        &ListRequest::default(),
        &Fake,
    )
    .unwrap();
    let want = format!(
        "{HEAD}UDP  vip:domain rr\n\
\x20 -> 10.0.0.9:domain              Route   1      0          0         \n"
    );
    assert_eq!(out, want);
}

#[test]
fn one_service_has_no_version_line() {
    let a = svc(Protocol::Tcp, "10.0.0.1", 80, "rr");
    let b = svc(Protocol::Tcp, "10.0.0.2", 80, "wrr");
    let req = ListRequest {
        numeric: true,
        service: Some(b.spec.key),
        ..Default::default()
    };
    let l = Listing {
        conn_table_size: 4096,
        counters: Default::default(),
        timeouts: Default::default(),
        services: vec![a, b],
    };
    assert_eq!(
        listing(&l, &req, &Numeric).unwrap(),
        "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
TCP  10.0.0.2:80 wrr\n"
    );
    let missing = ListRequest {
        service: Some(ServiceKey::addr(
            Protocol::Udp,
            "10.0.0.2".parse().unwrap(),
            80,
        )),
        ..Default::default()
    };
    assert_eq!(listing(&l, &missing, &Numeric), Err(NoSuchService));
}

#[test]
fn stats_with_large_counters() {
    let mut s = svc(Protocol::Tcp, "10.0.0.1", 80, "rr");
    s.stats = Stats {
        conns: 99_999_999,
        in_packets: 100_000_000,
        out_packets: 1_000_000_000,
        in_bytes: 100_000_000_000,
        out_bytes: u64::MAX,
        ..Default::default()
    };
    let mut d = dst("10.0.0.2", 80, ForwardMethod::Route, 1, 0, 0);
    d.stats = Stats {
        conns: 0,
        in_packets: 1,
        out_packets: 12345,
        in_bytes: 999_999_999,
        out_bytes: 100_000_000_000_000,
        ..Default::default()
    };
    s.dests = vec![d];
    let req = ListRequest {
        numeric: true,
        stats: true,
        ..Default::default()
    };
    let got = show(vec![s.clone()], &req);
    let want = "IP Virtual Server version 1.2.1 (size=4096)\n\
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n\
\x20 -> RemoteAddress:Port\n\
TCP  10.0.0.1:80                  99999999  100000K    1000M     100G18446744T\n\
\x20 -> 10.0.0.2:80                         0        1    12345  999999K     100T\n";
    assert_eq!(got, want);

    let exact = ListRequest { exact: true, ..req };
    let got = show(vec![s], &exact);
    let want = "IP Virtual Server version 1.2.1 (size=4096)\n\
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n\
\x20 -> RemoteAddress:Port\n\
TCP  10.0.0.1:80                  99999999 100000000 1000000000 100000000000 18446744073709551615\n\
\x20 -> 10.0.0.2:80                         0        1    12345 999999999 100000000000000\n";
    assert_eq!(got, want);
}

#[test]
fn thresholds_view() {
    let mut s = svc(Protocol::Tcp, "10.0.0.1", 80, "wlc");
    let mut d = dst("10.0.0.2", 80, ForwardMethod::Route, 1, 3, 4);
    d.spec.upper_threshold = 100;
    d.spec.lower_threshold = 75;
    s.dests = vec![d];
    let req = ListRequest {
        numeric: true,
        thresholds: true,
        ..Default::default()
    };
    let want = "IP Virtual Server version 1.2.1 (size=4096)\n\
Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn \n\
\x20 -> RemoteAddress:Port\n\
TCP  10.0.0.1:80 wlc\n\
\x20 -> 10.0.0.2:80                  100        75         3          4         \n";
    assert_eq!(show(vec![s], &req), want);
}

#[test]
fn nosort_keeps_rvsd_order() {
    let a = svc(Protocol::Udp, "10.0.0.1", 53, "rr");
    let b = svc(Protocol::Tcp, "10.0.0.1", 80, "rr");
    let req = ListRequest {
        numeric: true,
        nosort: true,
        ..Default::default()
    };
    assert_eq!(
        show(vec![a, b], &req),
        format!("{HEAD}UDP  10.0.0.1:53 rr\nTCP  10.0.0.1:80 rr\n")
    );
}
