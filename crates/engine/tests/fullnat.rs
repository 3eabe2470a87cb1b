//! FullNAT: both ends translated both ways, local ports handed out once and
//! given back, exhaustion counted and answered, TOA on the handshake's ACK,
//! the fast path's entries, and the configurations refused.

mod common;

use common::*;
use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use rvs_engine::config::DEFAULT_LOCAL_PORT_RANGE;
use rvs_engine::{
    ConfigError, DropReason, FastAction, FastKey, ForwardMethod, Protocol, Rewrite, Snapshot,
    Verdict,
};

const LPORT: u16 = DEFAULT_LOCAL_PORT_RANGE.0;

fn fullnat() -> rvs_engine::Config {
    config(Protocol::Tcp, "rr", ForwardMethod::FullNat, &[1])
}

/// A FullNAT real server's frame: RS[0]:8080 → `to`.
fn from_server(to: (&str, u16), flags: Flags) -> Vec<u8> {
    tcp_frame(11, BACK_MAC, (RS[0], 8080), to, flags, b"")
}

/// The TCP options of an output frame (IPv4 or IPv6), checksums checked.
fn tcp_options(frame: &[u8]) -> Vec<u8> {
    let p = SlicedPacket::from_ethernet(frame).expect("parses");
    let Some(TransportSlice::Tcp(t)) = p.transport else {
        panic!("not TCP")
    };
    t.options().to_vec()
}

#[test]
fn both_ends_are_translated_both_ways() {
    let mut d = Director::new(fullnat());
    let (v, out) = d.run(&from_client(40_000, SYN, b""), FRONT);
    assert_eq!(v, Verdict::Forward { egress: BACK });
    let seen = check(&out);
    assert_eq!((seen.src, seen.dst), (ip(LADDR), ip(RS[0])));
    assert_eq!(seen.ports, Some((LPORT, 8080)));
    assert_eq!(seen.dst_mac, mac(11).0);
    assert_eq!(seen.ttl, 64, "the way in is not routed: TTL stays");

    let (v, out) = d.run(&from_server((LADDR, LPORT), SYNACK), BACK);
    assert_eq!(v, Verdict::Forward { egress: FRONT });
    let seen = check(&out);
    assert_eq!((seen.src, seen.dst), (ip(VIP), ip(CLIENT)));
    assert_eq!(seen.ports, Some((80, 40_000)));
    assert_eq!(seen.dst_mac, mac(ROUTER_MAC).0);
    assert_eq!(seen.ttl, 63, "the reply is routed: TTL down");

    let conns = d.engine.connections(d.now);
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0].method, ForwardMethod::FullNat);
    assert_eq!(conns[0].local, Some((ip(LADDR), LPORT)));
    assert_eq!(conns[0].client, (ip(CLIENT), 40_000));
    assert_eq!(d.engine.local_ports_in_use(ip(LADDR)), 1);

    // A frame to the client's own address is not the connection's reply.
    let (v, _) = d.run(&from_server((CLIENT, 40_000), ACK), BACK);
    assert_eq!(v, Verdict::Pass);
}

#[test]
fn every_connection_gets_its_own_local_port_and_gives_it_back() {
    let mut d = Director::new(fullnat());
    let mut pairs = std::collections::HashSet::new();
    for port in 0..500u16 {
        let (_, out) = d.run(&from_client(20_000 + port, SYN, b""), FRONT);
        let seen = check(&out);
        assert!(pairs.insert((seen.src, seen.ports.unwrap().0)));
    }
    assert_eq!(d.engine.local_ports_in_use(ip(LADDR)), 500);
    // Half-open connections expire (SYN_RECV's 60 s): the ports come back.
    d.advance(200);
    assert_eq!(d.engine.connection_count(), 0);
    assert_eq!(d.engine.local_ports_in_use(ip(LADDR)), 0);
}

#[test]
fn local_addresses_are_taken_in_turn() {
    let mut cfg = fullnat();
    cfg.services[0].local_addresses = vec![ip(LADDR), ip("10.0.2.201")];
    let mut d = Director::new(cfg);
    let sources: Vec<_> = (0..4)
        .map(|i| check(&d.run(&from_client(30_000 + i, SYN, b""), FRONT).1).src)
        .collect();
    assert_eq!(
        sources,
        [ip(LADDR), ip("10.0.2.201"), ip(LADDR), ip("10.0.2.201")]
    );
}

#[test]
fn an_exhausted_pool_is_counted_and_answered_and_recovers() {
    let mut cfg = fullnat();
    cfg.local_port_range = (5000, 5009);
    let mut d = Director::new(cfg);
    for i in 0..10 {
        let (v, _) = d.run(&from_client(30_000 + i, SYN, b""), FRONT);
        assert!(matches!(v, Verdict::Forward { .. }));
    }
    let (v, out) = d.run(&from_client(31_000, SYN, b""), FRONT);
    assert_eq!(
        v,
        Verdict::Reply {
            egress: FRONT,
            cause: DropReason::LocalPortsExhausted
        }
    );
    let seen = check(&out);
    assert_eq!(seen.protocol, 1, "ICMP port unreachable to the client");
    assert_eq!(seen.dst, ip(CLIENT));
    assert_eq!(
        d.engine.counters().dropped(DropReason::LocalPortsExhausted),
        1
    );
    assert_eq!(d.engine.connection_count(), 10, "nothing half-made is left");
    d.advance(200);
    let (v, out) = d.run(&from_client(31_000, SYN, b""), FRONT);
    assert!(matches!(v, Verdict::Forward { .. }));
    assert!((5000..=5009).contains(&check(&out).ports.unwrap().0));
}

#[test]
fn toa_rides_on_the_first_ack_only() {
    let mut cfg = fullnat();
    cfg.services[0].toa = true;
    let mut d = Director::new(cfg);
    let (_, syn) = d.run(&from_client(40_000, SYN, b""), FRONT);
    assert!(tcp_options(&syn).is_empty(), "no TOA on the SYN");
    d.run(&from_server((LADDR, LPORT), SYNACK), BACK);

    let input = from_client(40_000, ACK, b"GET / HTTP/1.1\r\n\r\n");
    let (v, out) = d.run(&input, FRONT);
    assert!(matches!(v, Verdict::Forward { .. }));
    let seen = check(&out); // checksums recomputed in full by etherparse
    assert_eq!(seen.ip_bytes.len(), input.len() - 14 + 8);
    let mut want = vec![254, 8];
    want.extend_from_slice(&40_000u16.to_be_bytes());
    want.extend_from_slice(&v4(CLIENT));
    assert_eq!(tcp_options(&out), want);
    let payload_at = out.len() - 18;
    assert_eq!(&out[payload_at..], b"GET / HTTP/1.1\r\n\r\n");

    let (_, later) = d.run(&from_client(40_000, ACK, b"more"), FRONT);
    check(&later);
    assert!(tcp_options(&later).is_empty(), "only the first ACK");
}

#[test]
fn without_toa_the_ack_is_left_alone() {
    let mut d = Director::new(fullnat());
    d.run(&from_client(40_000, SYN, b""), FRONT);
    d.run(&from_server((LADDR, LPORT), SYNACK), BACK);
    let input = from_client(40_000, ACK, b"x");
    let (_, out) = d.run(&input, FRONT);
    assert_eq!(out.len(), input.len());
    assert!(tcp_options(&out).is_empty());
}

/// IPv6: the same both ways, and TOA of 20 bytes (port, then the address).
#[test]
fn ipv6_fullnat_with_toa() {
    const VIP6: &str = "fd00:100::1";
    const CLIENT6: &str = "fd00:1::2";
    const RS6: &str = "fd00:2::11";
    const LADDR6: &str = "fd00:2::200";
    let mut cfg = fullnat();
    for i in &mut cfg.interfaces {
        let a = if i.index == FRONT {
            "fd00:3::2"
        } else {
            "fd00:2::10"
        };
        i.addrs.push((ip(a), 64));
    }
    cfg.routes.push(rvs_engine::Route {
        dst: ip("::"),
        prefix_len: 0,
        egress: FRONT,
        gateway: Some(ip("fd00:3::1")),
    });
    let svc = &mut cfg.services[0];
    svc.key.addr = ip(VIP6);
    svc.dests[0].addr = ip(RS6);
    svc.local_addresses = vec![ip(LADDR6)];
    svc.toa = true;
    let mut d = Director::new(cfg);
    d.engine
        .set_neighbors(std::sync::Arc::new(rvs_engine::NeighborTable::new(
            [(ip("fd00:3::1"), mac(ROUTER_MAC)), (ip(RS6), mac(11))],
            2,
        )));
    let frame6 = |src: (&str, u16), dst: (&str, u16), flags: Flags, payload: &[u8]| {
        let a = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap().octets();
        let mut b = PacketBuilder::ethernet2(mac(1).0, mac(2).0)
            .ipv6(a(src.0), a(dst.0), 64)
            .tcp(src.1, dst.1, 1000, 64000);
        if flags.syn {
            b = b.syn();
        }
        if flags.ack {
            b = b.ack(5000);
        }
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    };
    let ends = |frame: &[u8]| {
        let p = SlicedPacket::from_ethernet(frame).unwrap();
        let Some(etherparse::NetSlice::Ipv6(ip6)) = &p.net else {
            panic!("not IPv6")
        };
        let h = ip6.header().to_header();
        let Some(TransportSlice::Tcp(t)) = &p.transport else {
            panic!("not TCP")
        };
        let want = t.to_header().calc_checksum_ipv6(&h, t.payload()).unwrap();
        assert_eq!(t.checksum(), want, "TCP checksum");
        (
            std::net::IpAddr::from(h.source),
            t.source_port(),
            std::net::IpAddr::from(h.destination),
            t.destination_port(),
            h.hop_limit,
        )
    };
    let (v, out) = d.run(&frame6((CLIENT6, 40_000), (VIP6, 80), SYN, b""), FRONT);
    assert_eq!(v, Verdict::Forward { egress: BACK });
    assert_eq!(ends(&out), (ip(LADDR6), LPORT, ip(RS6), 8080, 64));
    let (v, out) = d.run(&frame6((RS6, 8080), (LADDR6, LPORT), SYNACK, b""), BACK);
    assert_eq!(v, Verdict::Forward { egress: FRONT });
    assert_eq!(ends(&out), (ip(VIP6), 80, ip(CLIENT6), 40_000, 63));
    let (_, out) = d.run(&frame6((CLIENT6, 40_000), (VIP6, 80), ACK, b"hi"), FRONT);
    ends(&out);
    let mut want = vec![254, 20];
    want.extend_from_slice(&40_000u16.to_be_bytes());
    want.extend_from_slice(&CLIENT6.parse::<std::net::Ipv6Addr>().unwrap().octets());
    assert_eq!(tcp_options(&out), want);
    // Established: both directions forward in XDP, with IPv6 ends.
    assert_eq!(d.maps.entries.len(), 2);
    for a in d.maps.entries.values() {
        let FastAction::Forward(f) = a else {
            panic!("not forwarding: {a:?}")
        };
        assert!(matches!(
            f.rewrite,
            Rewrite::FullNatIn { src, .. } | Rewrite::FullNatOut { src, .. } if src.is_ipv6()
        ));
    }
}

#[test]
fn an_established_connection_forwards_both_ways_in_xdp() {
    let mut d = Director::new(fullnat());
    d.run(&from_client(40_000, SYN, b""), FRONT);
    d.run(&from_server((LADDR, LPORT), SYNACK), BACK);
    d.run(&from_client(40_000, ACK, b""), FRONT);
    let reply = FastKey {
        proto: 6,
        saddr: ip(RS[0]),
        sport: 8080,
        daddr: ip(LADDR),
        dport: LPORT,
    };
    let Some(FastAction::Forward(f)) = d.maps.entries.get(&client_key(40_000)) else {
        panic!("client direction not forwarding: {:?}", d.maps.entries)
    };
    assert_eq!(
        f.rewrite,
        Rewrite::FullNatIn {
            src: ip(LADDR),
            src_port: LPORT,
            dst: ip(RS[0]),
            dst_port: 8080
        }
    );
    let Some(FastAction::Forward(f)) = d.maps.entries.get(&reply) else {
        panic!("reply direction not forwarding: {:?}", d.maps.entries)
    };
    assert_eq!(
        f.rewrite,
        Rewrite::FullNatOut {
            src: ip(VIP),
            src_port: 80,
            dst: ip(CLIENT),
            dst_port: 40_000
        }
    );
    assert_eq!(d.engine.fast_path_entries(), 2);
    // The connection leaves: both entries go and the port comes back.
    d.engine.clear_connections();
    d.drain();
    assert!(d.maps.entries.is_empty());
    assert_eq!(d.engine.local_ports_in_use(ip(LADDR)), 0);
}

#[test]
fn a_reload_without_the_address_lets_its_connections_drain() {
    let mut d = Director::new(fullnat());
    d.run(&from_client(40_000, SYN, b""), FRONT);
    let mut cfg = fullnat();
    cfg.services[0].local_addresses = vec![ip("10.0.2.201")];
    d.reconfigure(cfg);
    // The old connection still answers through its old local port…
    let (v, out) = d.run(&from_server((LADDR, LPORT), SYNACK), BACK);
    assert!(matches!(v, Verdict::Forward { .. }));
    assert_eq!(check(&out).dst, ip(CLIENT));
    assert_eq!(d.engine.local_ports_in_use(ip(LADDR)), 1);
    // …and new ones take the new address.
    let (_, out) = d.run(&from_client(40_001, SYN, b""), FRONT);
    assert_eq!(check(&out).src, ip("10.0.2.201"));
}

#[test]
fn configurations_that_cannot_work_are_refused() {
    let refused = |f: &dyn Fn(&mut rvs_engine::Config)| {
        let mut cfg = fullnat();
        f(&mut cfg);
        Snapshot::new(cfg).expect_err("refused")
    };
    assert!(matches!(
        refused(&|c| c.services[0].local_addresses.clear()),
        ConfigError::NoLocalAddress { .. }
    ));
    assert!(matches!(
        refused(&|c| c.services[0].local_addresses = vec![ip("fd00:2::200")]),
        ConfigError::LocalAddress { .. }
    ));
    assert!(matches!(
        refused(&|c| c.services[0].local_addresses = vec![ip(LADDR), ip(LADDR)]),
        ConfigError::LocalAddress { .. }
    ));
    assert!(matches!(
        refused(&|c| c.services[0].local_addresses = vec![ip("0.0.0.0")]),
        ConfigError::LocalAddress { .. }
    ));
    assert!(matches!(
        refused(&|c| c.local_port_range = (6000, 5000)),
        ConfigError::LocalPortRange { .. }
    ));
    assert!(matches!(
        refused(&|c| c.local_port_range = (0, 5000)),
        ConfigError::LocalPortRange { .. }
    ));
    let udp_toa = |c: &mut rvs_engine::Config| {
        c.services[0].key.protocol = Protocol::Udp;
        c.services[0].toa = true;
    };
    assert!(matches!(refused(&udp_toa), ConfigError::FullNat { .. }));
    let one_packet = |c: &mut rvs_engine::Config| {
        c.services[0].key.protocol = Protocol::Udp;
        c.services[0].one_packet = true;
    };
    assert!(matches!(refused(&one_packet), ConfigError::FullNat { .. }));
    // The messages say what to do.
    let msg = refused(&|c| c.services[0].local_addresses.clear()).to_string();
    assert!(msg.contains("local_addresses"), "{msg}");
}
