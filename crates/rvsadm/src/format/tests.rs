//! Exact listing text, checked against ipvsadm's printf formats and against
//! output captured from real ipvsadm 1.31 (trailing blanks included).

use super::*;
use rvs_api::{
    ConnectionEntry, DestSpec, Family, ForwardMethod, FwmarkRuleSpec, ServiceSpec, Stats, Timeouts,
    TunnelChecksum,
};

fn svc(proto: Protocol, addr: &str, port: u16, sched: &str) -> ServiceStatus {
    ServiceStatus {
        spec: ServiceSpec {
            key: ServiceKey::addr(proto, addr.parse().unwrap(), port),
            scheduler: sched.into(),
            persistence_timeout: None,
            netmask: None,
            flags: vec![],
            one_packet: false,
            local_addresses: vec![],
            toa: false,
        },
        dests: vec![],
        stats: Stats::default(),
        group: None,
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
            tunnel: rvs_api::Tunnel::Ipip,
            upper_threshold: 0,
            lower_threshold: 0,
        },
        active_conns: act,
        inactive_conns: inact,
        persistent_conns: 0,
        stats: Stats::default(),
    }
}

fn gue_dst(addr: &str, port: u16, tun_port: u16, checksum: TunnelChecksum) -> DestStatus {
    let mut d = dst(addr, port, ForwardMethod::Tunnel, 1, 0, 0);
    d.spec.tunnel = Tunnel::Gue {
        port: tun_port,
        checksum,
    };
    d
}

fn gre_dst(addr: &str, port: u16, checksum: TunnelChecksum) -> DestStatus {
    let mut d = dst(addr, port, ForwardMethod::Tunnel, 1, 0, 0);
    d.spec.tunnel = Tunnel::Gre { checksum };
    d
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
            services,
            ..rvs_api::testing::empty_listing()
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

/// A group member lists as ipvsadm lists the service keepalived made of
/// it: the group name is the API's, not the listing's.
#[test]
fn a_group_member_lists_as_a_service_of_its_own() {
    let mut s = svc(Protocol::Tcp, "192.168.146.100", 80, "rr");
    s.dests = vec![dst("192.168.177.10", 80, ForwardMethod::Route, 1, 0, 0)];
    let mut member = s.clone();
    member.group = Some("web".into());
    for req in [
        numeric(),
        ListRequest {
            stats: true,
            ..numeric()
        },
    ] {
        assert_eq!(
            show(vec![member.clone()], &req),
            show(vec![s.clone()], &req)
        );
    }
}

#[test]
fn tun_info_column_is_ipvsadm_1_31_s() {
    // ipvsadm 1.31's `-L -n --tun-info`: "%-28s %-7s %-13s %-6d %-10u %-10u"
    // with fwd_tun_info's "ipip", "gue:PORT:FLAG", "gre:FLAG", "n/a".
    let mut s = svc(Protocol::Tcp, "10.0.100.1", 80, "rr");
    s.dests = vec![
        dst("10.0.2.11", 80, ForwardMethod::Route, 1, 0, 0),
        dst("10.0.2.12", 80, ForwardMethod::Tunnel, 1, 2, 3),
        gue_dst("10.0.2.13", 80, 6080, TunnelChecksum::Nocsum),
        gre_dst("10.0.2.14", 80, TunnelChecksum::Csum),
        gue_dst("10.0.2.15", 80, 65535, TunnelChecksum::Remcsum),
    ];
    let req = ListRequest {
        numeric: true,
        tun_info: true,
        ..Default::default()
    };
    let want = "IP Virtual Server version 1.2.1 (size=4096)\n\
Prot LocalAddress:Port Scheduler Flags\n\
\x20 -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n\
TCP  10.0.100.1:80 rr\n\
\x20 -> 10.0.2.11:80                 Route   n/a           1      0          0         \n\
\x20 -> 10.0.2.12:80                 Tunnel  ipip          1      2          3         \n\
\x20 -> 10.0.2.13:80                 Tunnel  gue:6080:-c   1      0          0         \n\
\x20 -> 10.0.2.14:80                 Tunnel  gre:+c        1      0          0         \n\
\x20 -> 10.0.2.15:80                 Tunnel  gue:65535:r+c 1      0          0         \n";
    assert_eq!(show(vec![s], &req), want);
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
            services: vec![s],
            ..rvs_api::testing::empty_listing()
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
            services: vec![s],
            ..rvs_api::testing::empty_listing()
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
        services: vec![a, b],
        ..rvs_api::testing::empty_listing()
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

fn fwm_svc(mark: u32, af: Family, sched: &str) -> ServiceStatus {
    let mut s = svc(Protocol::Tcp, "10.0.0.1", 80, sched);
    s.spec.key = ServiceKey::Fwmark { mark, af };
    s
}

fn conn(
    proto: Protocol,
    client: (&str, u16),
    virt: (&str, u16),
    dest: (&str, u16),
    state: &str,
    expires_secs: u32,
) -> ConnectionEntry {
    ConnectionEntry {
        protocol: proto,
        client: (client.0.parse().unwrap(), client.1),
        virtual_: (virt.0.parse().unwrap(), virt.1),
        dest: (dest.0.parse().unwrap(), dest.1),
        state: state.into(),
        expires_secs,
        template: false,
        fwmark: None,
        local: None,
    }
}

#[test]
fn rate_view_and_exact() {
    // Expected text made with C printf formats (%-33s, %8llu, print_largenum).
    let mut s = svc(Protocol::Tcp, "10.0.0.1", 80, "rr");
    s.stats = Stats {
        cps: 12,
        in_pps: 345,
        in_bps: 123_456_789,
        conns: 999_999_999_999,
        ..Default::default()
    };
    let mut d = dst("10.0.0.2", 80, ForwardMethod::Route, 1, 0, 0);
    d.stats = Stats {
        cps: 1,
        in_pps: 100_000_000,
        out_pps: 2,
        in_bps: 999,
        out_bps: 100_000_000_000,
        ..Default::default()
    };
    s.dests = vec![d];
    let req = ListRequest {
        numeric: true,
        rate: true,
        ..Default::default()
    };
    let services = vec![fwm_svc(7, Family::Ipv4, "rr"), s];
    assert_eq!(
        show(services.clone(), &req),
        "IP Virtual Server version 1.2.1 (size=4096)\n\
Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n  -> RemoteAddress:Port\n\
TCP  10.0.0.1:80                        12      345        0  123456K        0\n\
\x20 -> 10.0.0.2:80                         1 100000000        2      999     100G\n\
FWM  7                                   0        0        0        0        0\n"
    );
    let exact = ListRequest { exact: true, ..req };
    assert_eq!(
        show(services, &exact),
        "IP Virtual Server version 1.2.1 (size=4096)\n\
Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n  -> RemoteAddress:Port\n\
TCP  10.0.0.1:80                        12      345        0 123456789        0\n\
\x20 -> 10.0.0.2:80                         1 100000000        2      999 100000000000\n\
FWM  7                                   0        0        0        0        0\n"
    );
}

#[test]
fn persistent_conn_view() {
    let mut s = svc(Protocol::Tcp, "10.0.0.1", 80, "wlc");
    s.spec.persistence_timeout = Some(300);
    s.spec.netmask = Some(16);
    let mut d = dst("10.0.0.2", 80, ForwardMethod::Route, 3, 4, 5);
    d.persistent_conns = 17;
    s.dests = vec![d];
    let req = ListRequest {
        numeric: true,
        persistent_conn: true,
        ..Default::default()
    };
    assert_eq!(
        show(vec![s], &req),
        "IP Virtual Server version 1.2.1 (size=4096)\n\
Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn \n  -> RemoteAddress:Port\n\
TCP  10.0.0.1:80 wlc persistent 300 mask 255.255.0.0\n\
\x20 -> 10.0.0.2:80                  3         17          4          5         \n"
    );
}

#[test]
fn fwmark_ops_and_flags_in_the_flags_column() {
    let mut u = svc(Protocol::Udp, "10.0.0.1", 53, "rr");
    u.spec.one_packet = true;
    let mut f1 = fwm_svc(1, Family::Ipv4, "sh");
    f1.spec.persistence_timeout = Some(60);
    f1.spec.flags = vec!["sh-port".into(), "flag-1".into()];
    f1.spec.one_packet = true;
    f1.dests = vec![dst("10.0.0.5", 0, ForwardMethod::Route, 1, 0, 0)];
    let mut f2 = fwm_svc(2, Family::Ipv6, "mh");
    f2.spec.persistence_timeout = Some(300);
    f2.spec.netmask = Some(64);
    f2.dests = vec![dst("2001:db8::5", 0, ForwardMethod::Masq, 1, 0, 0)];
    // Marks sort after address services (which count as mark 0), by mark.
    assert_eq!(
        show(vec![f2, f1, u], &numeric()),
        format!(
            "{HEAD}UDP  10.0.0.1:53 rr ops\n\
FWM  1 sh (sh-fallback,sh-port) persistent 60 ops\n\
\x20 -> 10.0.0.5:0                   Route   1      0          0         \n\
FWM  2 IPv6 mh persistent 300 mask 64\n\
\x20 -> [2001:db8::5]:0              Masq    1      0          0         \n"
        )
    );
    // One mark service: found by mark and family.
    let l = Listing {
        services: vec![fwm_svc(3, Family::Ipv4, "rr")],
        ..rvs_api::testing::empty_listing()
    };
    let one = |af| ListRequest {
        numeric: true,
        service: Some(ServiceKey::Fwmark { mark: 3, af }),
        ..Default::default()
    };
    assert_eq!(
        listing(&l, &one(Family::Ipv4), &Numeric).unwrap(),
        "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\nFWM  3 rr\n"
    );
    assert_eq!(
        listing(&l, &one(Family::Ipv6), &Numeric),
        Err(NoSuchService)
    );
}

fn save_sample() -> Listing {
    let mut web = svc(Protocol::Tcp, "10.0.100.1", 80, "rr");
    web.dests = vec![
        dst("10.0.2.12", 80, ForwardMethod::Tunnel, 2, 0, 0),
        dst("10.0.2.11", 80, ForwardMethod::Route, 1, 0, 0),
    ];
    let mut nat = svc(Protocol::Tcp, "10.0.100.1", 443, "sh");
    nat.spec.persistence_timeout = Some(600);
    nat.spec.netmask = Some(24);
    nat.spec.flags = vec!["sh-fallback".into(), "sh-port".into()];
    let mut d = dst("10.0.2.11", 8443, ForwardMethod::Masq, 0, 0, 0);
    d.spec.upper_threshold = 100;
    d.spec.lower_threshold = 50;
    nat.dests = vec![d];
    let mut full = svc(Protocol::Tcp, "10.0.100.2", 80, "rr");
    full.spec.local_addresses = vec!["10.0.2.200".parse().unwrap(), "10.0.2.201".parse().unwrap()];
    full.spec.toa = true;
    full.dests = vec![dst("10.0.2.16", 8080, ForwardMethod::FullNat, 1, 0, 0)];
    let mut dns = svc(Protocol::Udp, "10.0.100.1", 53, "wlc");
    dns.spec.one_packet = true;
    dns.dests = vec![
        dst("10.0.2.13", 53, ForwardMethod::Route, 65535, 0, 0),
        gue_dst("10.0.2.14", 53, 6080, TunnelChecksum::Remcsum),
        gre_dst("10.0.2.15", 53, TunnelChecksum::Csum),
    ];
    let mut v6 = svc(Protocol::Tcp, "2001:db8::1", 0, "wlc");
    v6.spec.persistence_timeout = Some(300);
    v6.spec.netmask = Some(64);
    v6.spec.local_addresses = vec!["2001:db8::200".parse().unwrap()];
    v6.dests = vec![dst("2001:db8::11", 0, ForwardMethod::Route, 1, 0, 0)];
    let mut f = fwm_svc(1, Family::Ipv4, "rr");
    f.spec.persistence_timeout = Some(300);
    f.dests = vec![dst("10.0.2.11", 0, ForwardMethod::Route, 1, 0, 0)];
    let mut f6 = fwm_svc(2, Family::Ipv6, "mh");
    f6.spec.flags = vec!["mh-port".into()];
    f6.dests = vec![dst("2001:db8::12", 8080, ForwardMethod::Masq, 3, 0, 0)];
    Listing {
        services: vec![f6, f, v6, dns, full, nat, web],
        ..rvs_api::testing::empty_listing()
    }
}

const SAVED: &str = "\
-A -t 10.0.100.1:80 -s rr
-a -t 10.0.100.1:80 -r 10.0.2.11:80 -g -w 1
-a -t 10.0.100.1:80 -r 10.0.2.12:80 -i -w 2 --tun-type ipip
-A -t 10.0.100.1:443 -s sh -p 600 -M 255.255.255.0 -b sh-fallback,sh-port
-a -t 10.0.100.1:443 -r 10.0.2.11:8443 -m -w 0 -x 100 -y 50
-A -t 10.0.100.2:80 -s rr --laddr 10.0.2.200 --laddr 10.0.2.201 --toa
-a -t 10.0.100.2:80 -r 10.0.2.16:8080 --fullnat -w 1
-A -u 10.0.100.1:53 -s wlc -o
-a -u 10.0.100.1:53 -r 10.0.2.13:53 -g -w 65535
-a -u 10.0.100.1:53 -r 10.0.2.14:53 -i -w 1 --tun-type gue --tun-port 6080 --tun-remcsum
-a -u 10.0.100.1:53 -r 10.0.2.15:53 -i -w 1 --tun-type gre --tun-csum
-A -t [2001:db8::1]:0 -s wlc -p 300 -M 64 --laddr 2001:db8::200
-a -t [2001:db8::1]:0 -r [2001:db8::11]:0 -g -w 1
-A -f 1 -s rr -p 300
-a -f 1 -r 10.0.2.11:0 -g -w 1
-A -f 2 -6 -s mh -b mh-port
-a -f 2 -6 -r [2001:db8::12]:8080 -m -w 3
";

#[test]
fn save_format() {
    assert_eq!(save(&save_sample(), &Numeric), SAVED);
    // Without -n names are used, uncut, as ipvsadm does.
    struct Long;
    impl Names for Long {
        fn host(&self, a: IpAddr) -> Option<String> {
            (a.to_string() == "10.0.0.1")
                .then(|| "a-very-long-virtual-host-name.example.internal".into())
        }
        fn service(&self, port: u16, _: Protocol) -> Option<String> {
            (port == 80).then(|| "http".into())
        }
    }
    let mut s = svc(Protocol::Tcp, "10.0.0.1", 80, "rr");
    s.dests = vec![dst("10.0.0.2", 80, ForwardMethod::Route, 1, 0, 0)];
    let l = Listing {
        services: vec![s],
        ..rvs_api::testing::empty_listing()
    };
    assert_eq!(
        save(&l, &Long),
        "-A -t a-very-long-virtual-host-name.example.internal:http -s rr\n\
-a -t a-very-long-virtual-host-name.example.internal:http -r 10.0.0.2:http -g -w 1\n"
    );
}

/// ipvsadm prints "SCTP  addr" ("%s  %s", as for TCP and UDP) in listings,
/// `--sctp-service` in rules, and "%-3s" lets "SCTP" push the connection
/// line one column right.
#[test]
fn sctp_services_and_connections() {
    let mut s = svc(Protocol::Sctp, "10.0.0.1", 2905, "rr");
    s.dests = vec![dst("10.0.0.2", 2905, ForwardMethod::Masq, 1, 1, 0)];
    assert_eq!(
        show(vec![s.clone()], &numeric()),
        format!("{HEAD}SCTP  10.0.0.1:2905 rr\n  -> 10.0.0.2:2905                Masq    1      1          0         \n")
    );
    let l = Listing {
        services: vec![s],
        ..rvs_api::testing::empty_listing()
    };
    assert_eq!(
        save(&l, &Numeric),
        "-A --sctp-service 10.0.0.1:2905 -s rr\n\
-a --sctp-service 10.0.0.1:2905 -r 10.0.0.2:2905 -m -w 1\n"
    );
    let c = conn(
        Protocol::Sctp,
        ("10.0.0.9", 40000),
        ("10.0.0.1", 2905),
        ("10.0.0.2", 2905),
        "ESTABLISHED",
        899,
    );
    assert_eq!(
        connections(&[c], false, &Numeric),
        "IPVS connection entries\n\
pro expire state       source             virtual            destination\n\
SCTP 14:59  ESTABLISHED 10.0.0.9:40000     10.0.0.1:2905      10.0.0.2:2905\n"
    );
}

#[test]
fn save_then_restore_gives_the_same_table() {
    struct NoLookup;
    impl crate::parse::Lookup for NoLookup {
        fn host(&self, _: &str) -> Option<IpAddr> {
            None
        }
        fn service(&self, _: &str, _: Protocol) -> Option<u16> {
            None
        }
    }
    let table = save_sample();
    let cmds: Vec<rvs_api::Command> =
        crate::parse::parse_restore(&save(&table, &Numeric), &NoLookup)
            .unwrap()
            .into_iter()
            .map(|(_, c)| c)
            .collect();
    // What each service and real server of the table is, as commands, in
    // the saved (sorted) order.
    let mut want = Vec::new();
    let mut services: Vec<&ServiceStatus> = table.services.iter().collect();
    services.sort_by(|a, b| cmp_keys(&a.spec.key, &b.spec.key));
    for s in services {
        want.push(rvs_api::Command::AddService(s.spec.clone()));
        let mut dests: Vec<&DestStatus> = s.dests.iter().collect();
        dests.sort_by(|a, b| cmp_dests(a, b));
        for d in dests {
            want.push(rvs_api::Command::AddDest {
                service: s.spec.key,
                dest: d.spec.clone(),
            });
        }
    }
    assert_eq!(want.len(), 17);
    assert_eq!(cmds, want);
}

#[test]
fn connection_listing() {
    let mut tmpl = conn(
        Protocol::Tcp,
        ("10.0.0.0", 0),
        ("10.0.0.1", 80),
        ("10.0.0.2", 80),
        "NONE",
        6000,
    );
    tmpl.template = true;
    let mut ftmpl = conn(
        Protocol::Tcp,
        ("10.0.0.9", 0),
        ("0.0.0.0", 0),
        ("10.0.0.5", 0),
        "NONE",
        59,
    );
    ftmpl.template = true;
    ftmpl.fwmark = Some(7);
    let mut ftmpl6 = conn(
        Protocol::Udp,
        ("2001:db8::9", 0),
        ("::", 0),
        ("2001:db8::5", 0),
        "NONE",
        0,
    );
    ftmpl6.template = true;
    ftmpl6.fwmark = Some(7);
    // A mark service's real connection shows its real protocol and address.
    let mut fconn = conn(
        Protocol::Tcp,
        ("2001:db8::9", 40000),
        ("2001:db8::1", 443),
        ("2001:db8::2", 443),
        "SYN_RECV",
        61,
    );
    fconn.fwmark = Some(7);
    let conns = vec![
        conn(
            Protocol::Tcp,
            ("10.0.0.9", 40000),
            ("10.0.0.1", 80),
            ("10.0.0.2", 80),
            "ESTABLISHED",
            899,
        ),
        conn(
            Protocol::Udp,
            ("10.0.0.9", 5353),
            ("10.0.0.1", 53),
            ("10.0.0.3", 53),
            "UDP",
            5,
        ),
        tmpl,
        ftmpl,
        ftmpl6,
        fconn,
    ];
    assert_eq!(
        connections(&conns, false, &Numeric),
        "IPVS connection entries\n\
pro expire state       source             virtual            destination\n\
TCP 14:59  ESTABLISHED 10.0.0.9:40000     10.0.0.1:80        10.0.0.2:80\n\
UDP 00:05  UDP         10.0.0.9:5353      10.0.0.1:53        10.0.0.3:53\n\
TCP 100:00 NONE        10.0.0.0:0         10.0.0.1:80        10.0.0.2:80\n\
IP  00:59  NONE        10.0.0.9:0         0.0.0.7:0          10.0.0.5:0\n\
IP  00:00  NONE        [2001:db8::9]:0    [0:7::]:0          [2001:db8::5]:0\n\
TCP 01:01  SYN_RECV    [2001:db8::9]:40000 [2001:db8::1]:443  [2001:db8::2]:443\n"
    );
    assert_eq!(
        connections(&conns[..1], true, &Numeric),
        "IPVS connection entries\n\
pro expire state       source             virtual            destination        pe name          pe_data\n\
TCP 14:59  ESTABLISHED 10.0.0.9:40000     10.0.0.1:80        10.0.0.2:80\n"
    );
    assert_eq!(
        connections(&[], false, &Numeric),
        "IPVS connection entries\npro expire state       source             virtual            destination\n"
    );
    // Names without -n; a mark template's port 0 stays a number.
    struct Fake;
    impl Names for Fake {
        fn host(&self, a: IpAddr) -> Option<String> {
            (a.to_string() == "10.0.0.9").then(|| "client".into())
        }
        fn service(&self, port: u16, _: Protocol) -> Option<String> {
            (port == 0 || port == 80).then(|| format!("svc{port}"))
        }
    }
    assert_eq!(
        connections(&conns[3..4], false, &Fake),
        "IPVS connection entries\npro expire state       source             virtual            destination\n\
IP  00:59  NONE        client:0           0.0.0.7:0          10.0.0.5:0\n"
    );
}

#[test]
fn timeout_line() {
    assert_eq!(
        timeouts(&Timeouts::default()),
        "Timeout (tcp tcpfin udp): 900 120 300\n"
    );
    assert_eq!(
        timeouts(&Timeouts {
            tcp: 0,
            tcpfin: 1,
            udp: 2678400
        }),
        "Timeout (tcp tcpfin udp): 0 1 2678400\n"
    );
}

fn mark_rule(
    mark: u32,
    protocol: Option<Protocol>,
    net: &str,
    len: u8,
    ports: &[u16],
) -> FwmarkRuleSpec {
    FwmarkRuleSpec {
        mark,
        protocol,
        addr: net.parse().unwrap(),
        prefix_len: len,
        ports: ports.to_vec(),
    }
}

/// In rvsd's (match) order, deliberately not sorted.
fn sample_rules() -> Vec<FwmarkRuleSpec> {
    vec![
        mark_rule(7, Some(Protocol::Tcp), "10.0.100.32", 30, &[80, 443]),
        mark_rule(2, None, "2001:db8::", 64, &[]),
        mark_rule(7, Some(Protocol::Udp), "10.0.100.1", 32, &[53]),
    ]
}

#[test]
fn mark_rule_listing() {
    assert_eq!(mark_rules(&[]), "");
    assert_eq!(
        mark_rules(&sample_rules()),
        "MARK 7 tcp 10.0.100.32/30 ports 80,443\n\
         MARK 2 any 2001:db8::/64\n\
         MARK 7 udp 10.0.100.1/32 ports 53\n"
    );
    // -L stays ipvsadm's text unless --mark-rules asks for the rules.
    let mut l = save_sample();
    l.fwmark_rules = sample_rules();
    let plain = listing(&l, &numeric(), &Numeric).unwrap();
    l.fwmark_rules.clear();
    assert_eq!(plain, listing(&l, &numeric(), &Numeric).unwrap());
    assert!(!plain.contains("MARK"));
    l.fwmark_rules = sample_rules();
    let req = ListRequest {
        mark_rules: true,
        ..numeric()
    };
    assert_eq!(
        listing(&l, &req, &Numeric).unwrap(),
        format!("{plain}{}", mark_rules(&sample_rules()))
    );
    // Also after a single service.
    let one = ListRequest {
        service: Some(ServiceKey::Fwmark {
            mark: 1,
            af: Family::Ipv4,
        }),
        ..req
    };
    assert_eq!(
        listing(&l, &one, &Numeric).unwrap(),
        "Prot LocalAddress:Port Scheduler Flags\n\
\x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
FWM  1 rr persistent 300\n\
\x20 -> 10.0.2.11:0                  Route   1      0          0         \n\
MARK 7 tcp 10.0.100.32/30 ports 80,443\n\
MARK 2 any 2001:db8::/64\n\
MARK 7 udp 10.0.100.1/32 ports 53\n"
    );
}

#[test]
fn save_writes_mark_rules_first_in_match_order() {
    let mut l = save_sample();
    l.fwmark_rules = sample_rules();
    assert_eq!(
        save(&l, &Numeric),
        format!(
            "--add-mark-rule 7 -t 10.0.100.32/30 --ports 80,443\n\
             --add-mark-rule 2 --any 2001:db8::/64\n\
             --add-mark-rule 7 -u 10.0.100.1/32 --ports 53\n\
             {SAVED}"
        )
    );
    // And -R reads them back as the same rules, before the services.
    struct NoLookup;
    impl crate::parse::Lookup for NoLookup {
        fn host(&self, _: &str) -> Option<IpAddr> {
            None
        }
        fn service(&self, _: &str, _: Protocol) -> Option<u16> {
            None
        }
    }
    let cmds: Vec<rvs_api::Command> = crate::parse::parse_restore(&save(&l, &Numeric), &NoLookup)
        .unwrap()
        .into_iter()
        .map(|(_, c)| c)
        .collect();
    let rules: Vec<rvs_api::Command> = sample_rules()
        .into_iter()
        .map(rvs_api::Command::AddFwmarkRule)
        .collect();
    assert_eq!(cmds.len(), 20);
    assert_eq!(cmds[..3], rules[..]);
    assert!(matches!(cmds[3], rvs_api::Command::AddService(_)));
}

/// RVS's FullNAT: the Forward column's word, `toa` among the flags and the
/// local addresses on a line of their own; a service without them lists
/// as ipvsadm lists it. `-c` names a FullNAT entry's local end after
/// ipvsadm's columns.
#[test]
fn fullnat_listing() {
    let mut s = svc(Protocol::Tcp, "10.0.100.2", 80, "rr");
    s.spec.local_addresses = vec!["10.0.2.200".parse().unwrap(), "10.0.2.201".parse().unwrap()];
    s.spec.toa = true;
    s.dests = vec![dst("10.0.2.16", 8080, ForwardMethod::FullNat, 1, 2, 0)];
    let plain = svc(Protocol::Tcp, "10.0.100.3", 80, "rr");
    assert_eq!(
        show(vec![s.clone(), plain.clone()], &numeric()),
        format!(
            "{HEAD}TCP  10.0.100.2:80 rr toa\n\
\x20 local addresses: 10.0.2.200 10.0.2.201\n\
\x20 -> 10.0.2.16:8080               FullNat 1      2          0         \n\
TCP  10.0.100.3:80 rr\n"
        )
    );
    // Not among the counters of --stats.
    let stats = ListRequest {
        stats: true,
        ..numeric()
    };
    assert!(!show(vec![s.clone()], &stats).contains("local addresses"));
    // Without toa and addresses nothing is added.
    s.spec.toa = false;
    s.spec.local_addresses.clear();
    assert_eq!(
        show(vec![s], &numeric()),
        format!("{HEAD}TCP  10.0.100.2:80 rr\n  -> 10.0.2.16:8080               FullNat 1      2          0         \n")
    );
    let mut c = conn(
        Protocol::Tcp,
        ("192.0.2.7", 51000),
        ("10.0.100.2", 80),
        ("10.0.2.16", 8080),
        "ESTABLISHED",
        899,
    );
    let nat = c.clone();
    c.local = Some(("10.0.2.200".parse().unwrap(), 1024));
    assert_eq!(
        connections(&[c, nat], false, &Numeric),
        "IPVS connection entries\n\
pro expire state       source             virtual            destination\n\
TCP 14:59  ESTABLISHED 192.0.2.7:51000    10.0.100.2:80      10.0.2.16:8080 local 10.0.2.200:1024\n\
TCP 14:59  ESTABLISHED 192.0.2.7:51000    10.0.100.2:80      10.0.2.16:8080\n"
    );
}
