//! The seed's packet walks, frame by frame, for DR, NAT and TUN, plus the
//! connection-table behaviour an operator relies on.

mod common;

use common::*;
use rvs_engine::{ConfigError, DropReason, ForwardMethod, Protocol, Snapshot, Verdict};

fn forwarded_to(d: &mut Director, frame: &[u8]) -> (usize, Vec<u8>) {
    let (v, out) = d.run(frame, FRONT);
    assert_eq!(v, Verdict::Forward { egress: BACK }, "verdict");
    (server_of(check(&out).dst_mac), out)
}

#[test]
fn dr_rewrites_only_the_macs() {
    let mut d = Director::new(config(
        Protocol::Tcp,
        "rr",
        ForwardMethod::Route,
        &[1, 1, 1],
    ));
    let frame = from_client(40000, SYN, b"");
    let (v, out) = d.run(&frame, FRONT);
    assert_eq!(v, Verdict::Forward { egress: BACK });
    let seen = check(&out);
    // The last server added is first in the kernel's list.
    assert_eq!(seen.dst_mac, mac(13).0, "destination MAC = RMAC");
    assert_eq!(seen.src_mac, mac(BACK_MAC).0, "source MAC = DMAC");
    assert_eq!(
        &out[12..],
        &frame[12..],
        "IP packet untouched, byte for byte"
    );
}

#[test]
fn nat_translates_both_ways_and_keeps_the_client_address() {
    let mut d = Director::new(config(Protocol::Tcp, "rr", ForwardMethod::Masq, &[1, 1, 1]));
    let (v, out) = d.run(&from_client(40000, SYN, b""), FRONT);
    assert_eq!(v, Verdict::Forward { egress: BACK });
    let seen = check(&out);
    assert_eq!(seen.dst, ip(RS[2]), "destination = RIP");
    assert_eq!(seen.src, ip(CLIENT), "source = client");
    assert_eq!(
        seen.ports,
        Some((40000, 8080)),
        "destination port = RS port"
    );
    assert_eq!(seen.dst_mac, mac(13).0);

    // The reply from the real server comes back to the director (its gateway).
    let reply = tcp_frame(13, BACK_MAC, (RS[2], 8080), (CLIENT, 40000), SYNACK, b"");
    let (v, out) = d.run(&reply, BACK);
    assert_eq!(v, Verdict::Forward { egress: FRONT });
    let seen = check(&out);
    assert_eq!(seen.src, ip(VIP), "source = VIP");
    assert_eq!(seen.dst, ip(CLIENT));
    assert_eq!(seen.ports, Some((80, 40000)));
    assert_eq!(seen.ttl, 63, "routed: TTL decremented");
    assert_eq!(seen.dst_mac, mac(ROUTER_MAC).0, "to the client's next hop");
    assert_eq!(seen.src_mac, mac(FRONT_MAC).0);

    // Payload survives both ways, checksums stay right.
    let (_, out) = d.run(&from_client(40000, ACK, b"GET / HTTP/1.1\r\n\r\n"), FRONT);
    assert!(check(&out).ip_bytes.ends_with(b"GET / HTTP/1.1\r\n\r\n"));
    let st = d.engine.status();
    assert_eq!(st[0].stats.in_packets, 2);
    assert_eq!(st[0].stats.out_packets, 1);
}

#[test]
fn tun_wraps_the_untouched_packet_in_dip_to_rip() {
    let mut d = Director::new(config(
        Protocol::Tcp,
        "rr",
        ForwardMethod::Tunnel,
        &[1, 1, 1],
    ));
    let frame = from_client(40000, SYN, b"hello");
    let (v, out) = d.run(&frame, FRONT);
    assert_eq!(v, Verdict::Forward { egress: BACK });
    let seen = check(&out);
    assert_eq!(seen.protocol, 4, "IPIP");
    assert_eq!(seen.src, ip("10.0.2.10"), "outer source = DIP");
    assert_eq!(seen.dst, ip(RS[2]), "outer destination = RIP");
    let inner = seen.inner.expect("inner packet");
    assert_eq!(
        inner.ip_bytes,
        frame[14..].to_vec(),
        "inner packet untouched"
    );
    assert_eq!(out.len(), frame.len() + 20);
}

#[test]
fn tun_too_big_with_df_gets_fragmentation_needed() {
    let mut d = Director::new(config(Protocol::Tcp, "rr", ForwardMethod::Tunnel, &[1]));
    d.run(&from_client(40000, SYN, b""), FRONT);
    let mut big = from_client(40000, ACK, &[0x55; 1500 - 40]);
    {
        let mut ip = rvs_wire::ipv4::Packet::new_checked(&mut big[14..]).unwrap();
        ip.set_dont_frag(true);
        ip.fill_checksum();
    }
    let (v, out) = d.run(&big, FRONT);
    assert_eq!(
        v,
        Verdict::Reply {
            egress: FRONT,
            cause: DropReason::FragNeeded
        }
    );
    let seen = check(&out);
    assert_eq!(seen.protocol, 1);
    assert_eq!((seen.src, seen.dst), (ip(VIP), ip(CLIENT)));
    assert_eq!(seen.dst_mac, mac(ROUTER_MAC).0);
    let icmp = &seen.ip_bytes[20..];
    assert_eq!((icmp[0], icmp[1]), (3, 4), "dest unreachable / frag needed");
    assert_eq!(
        u16::from_be_bytes([icmp[6], icmp[7]]),
        1480,
        "MTU minus IPIP overhead"
    );
    assert_eq!(&icmp[8..28], &big[14..34], "quotes the original header");
    assert!(seen.ip_bytes.len() <= 576);

    // Without DF the outer packet is fragmented, as the kernel does: the
    // first fragment is the verdict's frame, the rest extra frames; put
    // back together they are the outer packet around the untouched inner.
    let mut big_nodf = big.clone();
    {
        let mut ip = rvs_wire::ipv4::Packet::new_checked(&mut big_nodf[14..]).unwrap();
        ip.set_dont_frag(false);
        ip.fill_checksum();
    }
    let (v, first) = d.run(&big_nodf, FRONT);
    assert_eq!(v, Verdict::Forward { egress: BACK });
    let mut frames = vec![first];
    let mut buf = [0u8; 2048];
    while let Some(n) = d.engine.next_extra_frame(&mut buf) {
        frames.push(buf[..n].to_vec());
    }
    assert_eq!(
        frames.len(),
        2,
        "1520 bytes over a 1500-byte link: two fragments"
    );
    let mut inner = Vec::new();
    let mut ids = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        assert!(f.len() - 14 <= 1500, "each fits the MTU");
        assert_eq!(&f[..6], &mac(11).0, "to the real server's MAC");
        let h = rvs_wire::ipv4::Packet::new_checked(&f[14..]).unwrap();
        assert!(h.verify_checksum());
        assert_eq!(
            (h.protocol(), h.dst_addr()),
            (4, "10.0.2.11".parse().unwrap())
        );
        assert_eq!(
            usize::from(h.frag_offset()),
            inner.len(),
            "fragment {i} in place"
        );
        assert_eq!(h.more_frags(), i == 0);
        assert!(!h.dont_frag());
        ids.push(h.ident());
        inner.extend_from_slice(h.payload());
    }
    assert_eq!(ids[0], ids[1], "one identification");
    assert_eq!(inner, big_nodf[14..].to_vec(), "the inner packet, whole");
    assert_eq!(d.engine.counters().extra_frames, 1);
    // 1480 bytes of IP fit exactly.
    let fits = from_client(40000, ACK, &[0; 1480 - 40]);
    assert_eq!(d.run(&fits, FRONT).0, Verdict::Forward { egress: BACK });
}

#[test]
fn rr_sixty_requests_split_20_20_20_in_every_mode() {
    for method in [
        ForwardMethod::Route,
        ForwardMethod::Masq,
        ForwardMethod::Tunnel,
    ] {
        let mut d = Director::new(config(Protocol::Tcp, "rr", method, &[1, 1, 1]));
        let mut counts = [0usize; 4];
        for port in 0..60u16 {
            let frame = from_client(30000 + port, SYN, b"");
            let (v, out) = d.run(&frame, FRONT);
            assert_eq!(v, Verdict::Forward { egress: BACK });
            counts[server_of(check(&out).dst_mac)] += 1;
        }
        assert_eq!(&counts[1..], &[20, 20, 20], "{method:?}");
    }
}

#[test]
fn wrr_weights_1_2_3_split_10_20_30() {
    let mut d = Director::new(config(
        Protocol::Tcp,
        "wrr",
        ForwardMethod::Route,
        &[1, 2, 3],
    ));
    let mut counts = [0usize; 4];
    let mut order = Vec::new();
    for port in 0..60u16 {
        let (s, _) = forwarded_to(&mut d, &from_client(30000 + port, SYN, b""));
        counts[s] += 1;
        order.push(s);
    }
    assert_eq!(&counts[1..], &[10, 20, 30]);
    // The kernel's sequence for servers added with weights 1, 2, 3.
    assert_eq!(&order[..9], &[3, 2, 1, 3, 3, 2, 3, 2, 1]);
}

#[test]
fn tcp_states_drive_active_inactive_and_timeouts() {
    let mut d = Director::new(config(Protocol::Tcp, "rr", ForwardMethod::Route, &[1]));
    let counts = |d: &Director| {
        let s = &d.engine.status()[0].dests[0];
        (s.active, s.inactive)
    };
    d.run(&from_client(40000, SYN, b""), FRONT);
    assert_eq!(counts(&d), (0, 1), "SYN_RECV is inactive");
    let c = d.engine.connections(d.now);
    assert_eq!((c[0].state, c[0].expires_in_secs), ("SYN_RECV", 60));
    d.run(&from_client(40000, ACK, b""), FRONT);
    assert_eq!(counts(&d), (1, 0), "ESTABLISHED is active");
    assert_eq!(d.engine.connections(d.now)[0].expires_in_secs, 900);
    d.run(&from_client(40000, FINACK, b""), FRONT);
    assert_eq!(counts(&d), (0, 1));
    assert_eq!(d.engine.connections(d.now)[0].state, "FIN_WAIT");
    d.advance(119);
    assert_eq!(d.engine.connection_count(), 1);
    d.advance(2);
    assert_eq!(d.engine.connection_count(), 0, "FIN_WAIT 120 s expired");
    assert_eq!(counts(&d), (0, 0));
    assert_eq!(d.engine.counters().conns_expired, 1);
}

#[test]
fn established_connections_expire_after_900s_idle_and_refresh_on_traffic() {
    let mut d = Director::new(config(Protocol::Tcp, "rr", ForwardMethod::Route, &[1]));
    d.run(&from_client(40000, SYN, b""), FRONT);
    d.run(&from_client(40000, ACK, b""), FRONT);
    d.advance(800);
    d.run(&from_client(40000, ACK, b"x"), FRONT); // refresh
    d.advance(800);
    assert_eq!(d.engine.connection_count(), 1);
    d.advance(101);
    assert_eq!(d.engine.connection_count(), 0);
    // A mid-stream segment now has no connection: dropped and counted.
    assert_eq!(
        d.run(&from_client(40000, ACK, b"x"), FRONT).0,
        Verdict::Drop(DropReason::NoConnection)
    );
}

#[test]
fn udp_is_inactive_with_300s_timeout() {
    let mut d = Director::new(config(Protocol::Udp, "rr", ForwardMethod::Masq, &[1, 1]));
    let (v, out) = d.run(&udp_frame((CLIENT, 5353), (VIP, 80), b"q"), FRONT);
    assert_eq!(v, Verdict::Forward { egress: BACK });
    assert_eq!(check(&out).ports, Some((5353, 8080)));
    let s = &d.engine.status()[0];
    let total: u32 = s.dests.iter().map(|x| x.inactive + x.active).sum();
    assert_eq!(total, 1);
    assert!(s.dests.iter().all(|x| x.active == 0));
    assert_eq!(d.engine.connections(d.now)[0].state, "UDP");
    d.advance(299);
    assert_eq!(d.engine.connection_count(), 1);
    d.advance(2);
    assert_eq!(d.engine.connection_count(), 0);
}

#[test]
fn weight_zero_quiesces_without_breaking_established_flows() {
    let mut d = Director::new(config(
        Protocol::Tcp,
        "rr",
        ForwardMethod::Route,
        &[1, 1, 1],
    ));
    let (first, _) = forwarded_to(&mut d, &from_client(40000, SYN, b""));
    assert_eq!(first, 3);
    let mut weights = [1, 1, 1];
    weights[first - 1] = 0;
    d.reconfigure(config(Protocol::Tcp, "rr", ForwardMethod::Route, &weights));
    // The established flow still reaches its server…
    assert_eq!(forwarded_to(&mut d, &from_client(40000, ACK, b"")).0, first);
    // …and no new flow does.
    for port in 0..10 {
        assert_ne!(
            forwarded_to(&mut d, &from_client(41000 + port, SYN, b"")).0,
            first
        );
    }
}

#[test]
fn a_removed_server_drains_its_connections_then_goes() {
    let mut d = Director::new(config(Protocol::Tcp, "rr", ForwardMethod::Masq, &[1, 1, 1]));
    let (first, _) = forwarded_to(&mut d, &from_client(40000, SYN, b""));
    assert_eq!(first, 3);
    d.run(&from_client(40000, ACK, b""), FRONT);
    d.reconfigure(config(Protocol::Tcp, "rr", ForwardMethod::Masq, &[1, 1]));
    let st = d.engine.status();
    assert_eq!(st[0].dests.len(), 3);
    assert!(st[0].dests[2].draining);
    assert_eq!(forwarded_to(&mut d, &from_client(40000, ACK, b"more")).0, 3);
    let reply = tcp_frame(13, BACK_MAC, (RS[2], 8080), (CLIENT, 40000), ACK, b"ok");
    assert_eq!(d.run(&reply, BACK).0, Verdict::Forward { egress: FRONT });
    for port in 0..6 {
        assert_ne!(
            forwarded_to(&mut d, &from_client(41000 + port, SYN, b"")).0,
            3
        );
    }
    d.run(&from_client(40000, RST, b""), FRONT);
    d.advance(11);
    // Only the new flows' servers remain listed once the drained one is gone.
    let st = d.engine.status();
    assert_eq!(st[0].dests.len(), 2);
}

#[test]
fn a_full_table_drops_new_flows_and_keeps_established_ones() {
    let mut cfg = config(Protocol::Tcp, "rr", ForwardMethod::Route, &[1]);
    cfg.max_connections = 2;
    let mut d = Director::new(cfg);
    // Established: a full table of half-open ones would evict instead
    // (tests/defense.rs).
    for port in [1, 2] {
        d.run(&from_client(port, SYN, b""), FRONT);
        d.run(&from_client(port, ACK, b""), FRONT);
    }
    assert_eq!(
        d.run(&from_client(3, SYN, b""), FRONT).0,
        Verdict::Drop(DropReason::ConnTableFull)
    );
    assert_eq!(
        d.run(&from_client(1, ACK, b""), FRONT).0,
        Verdict::Forward { egress: BACK }
    );
    assert_eq!(d.engine.counters().dropped(DropReason::ConnTableFull), 1);
}

#[test]
fn no_available_server_answers_port_unreachable() {
    let mut d = Director::new(config(Protocol::Tcp, "rr", ForwardMethod::Route, &[0, 0]));
    let frame = from_client(40000, SYN, b"");
    let (v, out) = d.run(&frame, FRONT);
    assert_eq!(
        v,
        Verdict::Reply {
            egress: FRONT,
            cause: DropReason::NoDestination
        }
    );
    let seen = check(&out);
    assert_eq!((seen.src, seen.dst), (ip(VIP), ip(CLIENT)));
    assert_eq!(&seen.ip_bytes[20..22], &[3, 3]);
    let c = d.engine.counters();
    assert_eq!(c.dropped(DropReason::NoDestination), 1);
    assert_eq!(c.replies, 1, "one ICMP error sent");
    assert_eq!(c.rx_packets, c.accounted(), "the frame is counted once");
}

#[test]
fn unknown_next_hop_asks_for_resolution() {
    let mut d = Director::new(config(Protocol::Tcp, "rr", ForwardMethod::Route, &[1]));
    d.engine
        .set_neighbors(std::sync::Arc::new(rvs_engine::NeighborTable::default()));
    let (v, _) = d.run(&from_client(40000, SYN, b""), FRONT);
    assert_eq!(
        v,
        Verdict::Resolve {
            egress: BACK,
            next_hop: ip(RS[0])
        }
    );
    // Once the kernel resolved it, the same flow goes out.
    d.engine.set_neighbors(neighbors());
    assert_eq!(
        d.run(&from_client(40000, ACK, b""), FRONT).0,
        Verdict::Forward { egress: BACK }
    );
}

#[test]
fn syn_on_a_time_wait_tuple_is_a_new_connection() {
    let mut d = Director::new(config(Protocol::Tcp, "rr", ForwardMethod::Masq, &[1, 1]));
    let (a, _) = forwarded_to(&mut d, &from_client(40000, SYN, b""));
    d.run(&from_client(40000, ACK, b""), FRONT);
    let r = |f| {
        tcp_frame(
            10 + a as u8,
            BACK_MAC,
            (RS[a - 1], 8080),
            (CLIENT, 40000),
            f,
            b"",
        )
    };
    d.run(&r(FINACK), BACK);
    d.run(&from_client(40000, FINACK, b""), FRONT);
    d.run(&r(ACK), BACK);
    assert_eq!(d.engine.connections(d.now)[0].state, "TIME_WAIT");
    let (b, _) = forwarded_to(&mut d, &from_client(40000, SYN, b""));
    assert_ne!(a, b, "rescheduled by rr");
    assert_eq!(d.engine.connection_count(), 1);
    assert_eq!(d.engine.connections(d.now)[0].state, "SYN_RECV");
    // The replaced connection counts as expired: created − expired = tracked.
    let c = d.engine.counters();
    assert_eq!((c.conns_created, c.conns_expired), (2, 1));
}

#[test]
fn upper_threshold_stops_new_connections_and_resumes_below_three_quarters() {
    let mut cfg = config(Protocol::Tcp, "rr", ForwardMethod::Route, &[1, 1]);
    cfg.services[0].dests[1].upper_threshold = 4; // server 2 (first in rr order)
    let mut d = Director::new(cfg);
    let mut to2 = Vec::new();
    for port in 0..12u16 {
        let (s, _) = forwarded_to(&mut d, &from_client(1000 + port, SYN, b""));
        if s == 2 {
            to2.push(1000 + port);
        }
    }
    assert_eq!(to2.len(), 4, "server 2 stops at its threshold");
    assert!(d.engine.status()[0].dests[1].overloaded);
    // Closing one leaves 3 = 3/4 of 4: still overloaded; closing two resumes.
    for (i, port) in to2.iter().take(2).enumerate() {
        // ESTABLISHED then RST -> CLOSE (10 s). (RST in SYN_RECV would stay
        // SYN_RECV: the kernel's input-only table.)
        d.run(&from_client(*port, ACK, b""), FRONT);
        d.run(&from_client(*port, RST, b""), FRONT);
        d.advance(11);
        assert_eq!(d.engine.status()[0].dests[1].overloaded, i == 0);
    }
}

#[test]
fn not_ours_passes_and_malformed_is_counted() {
    let mut d = Director::new(config(Protocol::Tcp, "rr", ForwardMethod::Route, &[1]));
    // Another port on the VIP, another address, ARP: the kernel's business.
    let other = tcp_frame(ROUTER_MAC, FRONT_MAC, (CLIENT, 1), (VIP, 22), SYN, b"");
    assert_eq!(d.run(&other, FRONT).0, Verdict::Pass);
    let mut arp = vec![0u8; 42];
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(d.run(&arp, FRONT).0, Verdict::Pass);
    // Truncations of a valid SYN at every length are dropped, never panic.
    let frame = from_client(40000, SYN, b"");
    for len in 0..frame.len() {
        let (v, _) = d.run(&frame[..len], FRONT);
        assert!(
            matches!(v, Verdict::Drop(DropReason::Malformed)),
            "len {len}: {v:?}"
        );
    }
    let mut bad = frame.clone();
    bad[24] ^= 0xff; // IPv4 header checksum byte
    assert_eq!(
        d.run(&bad, FRONT).0,
        Verdict::Drop(DropReason::BadIpChecksum)
    );
    let c = d.engine.counters();
    assert_eq!(c.dropped(DropReason::Malformed), frame.len() as u64);
    assert_eq!(c.untracked, 2);
    assert_eq!(c.rx_packets, c.accounted());
}

#[test]
fn config_errors_name_the_fix_and_apply_nothing() {
    let base = || config(Protocol::Tcp, "rr", ForwardMethod::Route, &[1, 1]);
    let mut c = base();
    c.services[0].scheduler = "xyz".into();
    let e = Snapshot::new(c).unwrap_err();
    assert!(matches!(e, ConfigError::UnknownScheduler { .. }));
    assert!(
        e.to_string().contains(
            "use one of: rr, wrr, lc, wlc, sed, nq, lblc, lblcr, dh, sh, mh, fo, ovf, twos"
        ),
        "{e}"
    );

    let mut c = base();
    c.services.push(c.services[0].clone());
    assert!(matches!(
        Snapshot::new(c).unwrap_err(),
        ConfigError::DuplicateService(_)
    ));

    let mut c = base();
    c.services[0].dests[1].port = 8080;
    let e = Snapshot::new(c).unwrap_err();
    assert!(e.to_string().contains("use NAT (-m)"), "{e}");

    let mut c = base();
    c.services[0].dests[0].addr = ip("192.168.9.9"); // only via the default gateway
    assert!(matches!(
        Snapshot::new(c).unwrap_err(),
        ConfigError::NotOnLink { .. }
    ));

    let mut c = base();
    c.services[0].dests[0].weight = u32::MAX;
    assert!(matches!(
        Snapshot::new(c).unwrap_err(),
        ConfigError::WeightRange { .. }
    ));

    let mut c = base();
    c.services[0].dests[0].upper_threshold = 5;
    c.services[0].dests[0].lower_threshold = 6;
    assert!(matches!(
        Snapshot::new(c).unwrap_err(),
        ConfigError::ThresholdOrder { .. }
    ));

    let mut c = base();
    let dup = c.services[0].dests[0].clone();
    c.services[0].dests.push(dup);
    assert!(matches!(
        Snapshot::new(c).unwrap_err(),
        ConfigError::DuplicateDest { .. }
    ));

    let mut c = base();
    c.services[0].key.port = 0;
    assert!(matches!(
        Snapshot::new(c).unwrap_err(),
        ConfigError::ZeroPort(_)
    ));

    let mut c = base();
    c.services[0].dests[0].addr = ip("fd00::1");
    assert!(matches!(
        Snapshot::new(c).unwrap_err(),
        ConfigError::FamilyMismatch { .. }
    ));

    let mut c = base();
    c.routes[0].egress = rvs_engine::IfIndex(99);
    assert!(matches!(
        Snapshot::new(c).unwrap_err(),
        ConfigError::UnknownInterface { .. }
    ));

    // A running engine keeps its old config when the new one is refused:
    // the caller only ever gets a Snapshot from a valid Config.
    let mut d = Director::new(base());
    assert_eq!(
        d.run(&from_client(1, SYN, b""), FRONT).0,
        Verdict::Forward { egress: BACK }
    );
}

#[test]
fn ipv6_nat_and_dr() {
    use etherparse::PacketBuilder;
    let mut d = ipv6_director(Protocol::Tcp, ForwardMethod::Masq);
    let client: [u8; 16] = "fd00:1::2".parse::<std::net::Ipv6Addr>().unwrap().octets();
    let vip: [u8; 16] = "fd00:100::1"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    let b = PacketBuilder::ethernet2(mac(ROUTER_MAC).0, mac(FRONT_MAC).0)
        .ipv6(client, vip, 64)
        .tcp(40000, 80, 1, 1000)
        .syn();
    let mut frame = Vec::new();
    b.write(&mut frame, b"").unwrap();
    let (v, out) = d.run(&frame, FRONT);
    assert_eq!(v, Verdict::Forward { egress: BACK });
    let p = etherparse::SlicedPacket::from_ethernet(&out).unwrap();
    let Some(etherparse::NetSlice::Ipv6(ip6)) = &p.net else {
        panic!()
    };
    let h = ip6.header().to_header();
    assert_eq!(
        std::net::Ipv6Addr::from(h.destination),
        "fd00:2::11".parse::<std::net::Ipv6Addr>().unwrap()
    );
    let Some(etherparse::TransportSlice::Tcp(t)) = &p.transport else {
        panic!()
    };
    assert_eq!(t.destination_port(), 8080);
    assert_eq!(
        t.checksum(),
        t.to_header().calc_checksum_ipv6(&h, t.payload()).unwrap()
    );
}

#[test]
fn a_mass_expiry_returns_every_count() {
    // More connections expiring at once than any internal batch size.
    let mut d = Director::new(config(
        Protocol::Tcp,
        "rr",
        ForwardMethod::Route,
        &[1, 1, 1],
    ));
    for port in 0..500u16 {
        d.run(&from_client(20000 + port, SYN, b""), FRONT);
    }
    let total = |d: &Director| -> u32 {
        d.engine.status()[0]
            .dests
            .iter()
            .map(|x| x.inactive + x.active)
            .sum()
    };
    assert_eq!(total(&d), 500);
    d.advance(61); // SYN_RECV: 60 s
    assert_eq!(d.engine.connection_count(), 0);
    assert_eq!(total(&d), 0, "every expired connection uncounted");
    assert_eq!(d.engine.counters().conns_expired, 500);
}

#[test]
fn zeroing_one_service_leaves_the_others() {
    let mut cfg = config(Protocol::Tcp, "rr", ForwardMethod::Route, &[1]);
    let mut other = cfg.services[0].clone();
    other.key.port = 81;
    other.dests[0].port = 81; // DR keeps the service port
    cfg.services.push(other);
    let mut d = Director::new(cfg);
    d.run(&from_client(1000, SYN, b""), FRONT);
    d.run(
        &tcp_frame(ROUTER_MAC, FRONT_MAC, (CLIENT, 1001), (VIP, 81), SYN, b""),
        FRONT,
    );
    let key80 = d.engine.status()[0].key;
    d.engine.zero_stats(Some(key80));
    let st = d.engine.status();
    assert_eq!((st[0].stats.conns, st[0].dests[0].stats.in_packets), (0, 0));
    assert_eq!((st[1].stats.conns, st[1].dests[0].stats.in_packets), (1, 1));
    assert_eq!(
        st[0].dests[0].inactive, 1,
        "connections are state, not counters"
    );
    d.engine.zero_stats(None);
    assert_eq!(d.engine.status()[1].stats.conns, 0);
}

#[test]
fn ipv6_tun_wraps_in_ip6ip6_and_answers_too_big_with_packet_too_big() {
    use etherparse::PacketBuilder;
    use std::net::Ipv6Addr;
    let mut d = ipv6_director(Protocol::Tcp, ForwardMethod::Tunnel);
    let o = |s: &str| s.parse::<Ipv6Addr>().unwrap().octets();
    let frame = |payload: &[u8], syn: bool| {
        let b = PacketBuilder::ethernet2(mac(ROUTER_MAC).0, mac(FRONT_MAC).0)
            .ipv6(o("fd00:1::2"), o("fd00:100::1"), 64)
            .tcp(40000, 80, 1, 1000);
        let b = if syn { b.syn() } else { b.ack(1) };
        let mut f = Vec::new();
        b.write(&mut f, payload).unwrap();
        f
    };
    let syn = frame(b"", true);
    let (v, out) = d.run(&syn, FRONT);
    assert_eq!(v, Verdict::Forward { egress: BACK });
    assert_eq!(&out[..6], &mac(11).0, "to the real server's MAC");
    let outer = &out[14..54];
    assert_eq!(outer[0] >> 4, 6);
    assert_eq!(outer[6], 41, "next header: IPv6 in IPv6");
    assert_eq!(outer[7], 64, "hop limit");
    assert_eq!(
        &outer[8..24],
        &o("fd00:2::10"),
        "outer source: a global address"
    );
    assert_eq!(
        &outer[24..40],
        &o("fd00:2::11"),
        "outer destination: the RIP"
    );
    assert_eq!(
        u16::from_be_bytes([outer[4], outer[5]]) as usize,
        syn.len() - 14
    );
    assert_eq!(&out[54..], &syn[14..], "inner packet untouched");

    // 1500 bytes of IPv6 cannot take 40 more on a 1500-byte link.
    let big = frame(&[0x55; 1500 - 40 - 20], false);
    let (v, out) = d.run(&big, FRONT);
    assert_eq!(
        v,
        Verdict::Reply {
            egress: FRONT,
            cause: rvs_engine::DropReason::FragNeeded
        }
    );
    let ip6 = &out[14..];
    assert_eq!(ip6[6], 58, "ICMPv6");
    assert_eq!(&ip6[8..24], &o("fd00:100::1"), "from the VIP");
    assert_eq!(&ip6[24..40], &o("fd00:1::2"), "to the client");
    let icmp = &ip6[40..];
    assert_eq!((icmp[0], icmp[1]), (2, 0), "packet too big");
    assert_eq!(
        u32::from_be_bytes([icmp[4], icmp[5], icmp[6], icmp[7]]),
        1460
    );
    assert!(ip6.len() <= 1280, "an ICMPv6 error fits the minimum MTU");
    let sum = rvs_wire::checksum::finish(rvs_wire::checksum::combine(
        rvs_wire::checksum::sum(icmp),
        rvs_wire::checksum::pseudo_header_v6(
            &o("fd00:100::1"),
            &o("fd00:1::2"),
            58,
            icmp.len() as u32,
        ),
    ));
    assert_eq!(sum, 0, "ICMPv6 checksum");
    assert_eq!(&icmp[8..48], &big[14..54], "quotes the packet");
}
