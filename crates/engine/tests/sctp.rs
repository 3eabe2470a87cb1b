//! SCTP services (IPVS `ip_vs_proto_sctp.c`) through the engine, with SCTP
//! packets built here: which chunk starts an association, the state machine
//! seen in the listing and in the active/inactive counts, NAT's port
//! rewrite with a CRC32c recomputed in full (checked against a bit-by-bit
//! CRC here), DR and TUN leaving the SCTP packet as it came, reuse of a
//! CLOSED association, sync, and malformed packets counted. This kernel has
//! no SCTP sockets, so the end-to-end path is covered by these recorded
//! packets and the XDP program's own tests (crates/datapath).

mod common;

use common::*;
use etherparse::{IpNumber, PacketBuilder};
use rvs_engine::{DropReason, FastAction, ForwardMethod, Protocol, Verdict};

const DATA: u8 = 0;
const INIT: u8 = 1;
const INIT_ACK: u8 = 2;
const ABORT: u8 = 6;
const SHUTDOWN: u8 = 7;
const SHUTDOWN_ACK: u8 = 8;
const COOKIE_ECHO: u8 = 10;
const COOKIE_ACK: u8 = 11;
const SHUTDOWN_COMPLETE: u8 = 14;

/// CRC32c by its definition (reflected Castagnoli polynomial), one bit at
/// a time: an oracle independent of the crate rvs-wire uses.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// An SCTP packet `sport → dport` holding `chunks` (type, value bytes),
/// each padded to 4 bytes, with its CRC32c (least significant byte first,
/// as Linux writes it).
fn sctp(sport: u16, dport: u16, chunks: &[(u8, &[u8])]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&0x0bad_cafeu32.to_be_bytes());
    p.extend_from_slice(&[0; 4]);
    for (t, value) in chunks {
        p.extend_from_slice(&[*t, 0]);
        p.extend_from_slice(&((4 + value.len()) as u16).to_be_bytes());
        p.extend_from_slice(value);
        while p.len() % 4 != 0 {
            p.push(0);
        }
    }
    let c = crc32c(&p);
    p[8..12].copy_from_slice(&c.to_le_bytes());
    p
}

fn frame(
    src_mac: u8,
    dst_mac: u8,
    src: (&str, u16),
    dst: (&str, u16),
    chunks: &[(u8, &[u8])],
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(mac(src_mac).0, mac(dst_mac).0).ipv4(v4(src.0), v4(dst.0), 64);
    let mut out = Vec::new();
    b.write(&mut out, IpNumber(132), &sctp(src.1, dst.1, chunks))
        .unwrap();
    out
}

/// Client → VIP:80 with one chunk of type `t`.
fn from_client_sctp(port: u16, t: u8) -> Vec<u8> {
    frame(
        ROUTER_MAC,
        FRONT_MAC,
        (CLIENT, port),
        (VIP, 80),
        &[(t, b"client")],
    )
}

/// NAT real server `rs`:8080 → client with one chunk of type `t`.
fn from_server_sctp(rs: &str, mac: u8, port: u16, t: u8) -> Vec<u8> {
    frame(mac, BACK_MAC, (rs, 8080), (CLIENT, port), &[(t, b"server")])
}

/// The SCTP packet of an output frame, its CRC checked: (ports, chunk type).
fn sctp_of(out: &[u8]) -> ((u16, u16), u8) {
    let seen = check(out);
    let ip = &seen.ip_bytes;
    assert_eq!(ip[9], 132, "an SCTP packet");
    let l4 = &ip[usize::from(ip[0] & 0x0f) * 4..];
    let mut zeroed = l4.to_vec();
    zeroed[8..12].fill(0);
    assert_eq!(
        l4[8..12],
        crc32c(&zeroed).to_le_bytes(),
        "CRC32c of the packet sent"
    );
    (
        (
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        ),
        l4[12],
    )
}

fn state(d: &Director) -> &'static str {
    d.engine.connections(d.now)[0].state
}

fn counts(d: &Director) -> (u32, u32) {
    let s = &d.engine.status()[0].dests[0];
    (s.active, s.inactive)
}

#[test]
fn a_nat_association_is_translated_and_followed_through_its_states() {
    let mut d = Director::new(config(Protocol::Sctp, "rr", ForwardMethod::Masq, &[1]));
    let (v, out) = d.run(&from_client_sctp(40000, INIT), FRONT);
    assert_eq!(v, Verdict::Forward { egress: BACK });
    assert_eq!(
        sctp_of(&out),
        ((40000, 8080), INIT),
        "destination port rewritten"
    );
    assert_eq!(check(&out).dst, ip(RS[0]));
    assert_eq!((state(&d), counts(&d)), ("INIT1", (0, 1)));
    assert_eq!(d.engine.connections(d.now)[0].expires_in_secs, 4);

    let (v, out) = d.run(&from_server_sctp(RS[0], 11, 40000, INIT_ACK), BACK);
    assert_eq!(v, Verdict::Forward { egress: FRONT });
    assert_eq!(
        sctp_of(&out),
        ((80, 40000), INIT_ACK),
        "source port back to the VIP's"
    );
    assert_eq!(check(&out).src, ip(VIP));
    assert_eq!(state(&d), "C-SENT");

    d.run(&from_client_sctp(40000, COOKIE_ECHO), FRONT);
    assert_eq!(state(&d), "C-REPLIED");
    d.run(&from_server_sctp(RS[0], 11, 40000, COOKIE_ACK), BACK);
    assert_eq!((state(&d), counts(&d)), ("ESTABLISHED", (1, 0)));
    assert_eq!(d.engine.connections(d.now)[0].expires_in_secs, 900);
    let (_, out) = d.run(&from_client_sctp(40000, DATA), FRONT);
    assert_eq!(sctp_of(&out), ((40000, 8080), DATA));
    assert_eq!(state(&d), "ESTABLISHED");

    d.run(&from_client_sctp(40000, SHUTDOWN), FRONT);
    assert_eq!((state(&d), counts(&d)), ("S-RECEIVED", (0, 1)));
    d.run(&from_server_sctp(RS[0], 11, 40000, SHUTDOWN_ACK), BACK);
    assert_eq!(state(&d), "S-ACK-SENT");
    d.run(&from_client_sctp(40000, SHUTDOWN_COMPLETE), FRONT);
    assert_eq!(state(&d), "CLOSED");
    assert_eq!(d.engine.connections(d.now)[0].expires_in_secs, 61);

    // Every direction is in the XDP program's map, and every one hands
    // its packets to the engine.
    assert_eq!(d.maps.entries.len(), 2);
    assert!(d.maps.entries.values().all(|a| *a == FastAction::ToEngine));
    d.advance(62);
    assert_eq!(d.engine.connection_count(), 0);
    assert!(d.maps.entries.is_empty());
}

#[test]
fn dr_and_tun_send_the_sctp_packet_unchanged() {
    for method in [ForwardMethod::Route, ForwardMethod::Tunnel] {
        let mut d = Director::new(config(Protocol::Sctp, "rr", method, &[1]));
        let input = from_client_sctp(40000, INIT);
        let (v, out) = d.run(&input, FRONT);
        assert_eq!(v, Verdict::Forward { egress: BACK }, "{method:?}");
        let seen = check(&out);
        let inner = match method {
            ForwardMethod::Tunnel => {
                assert_eq!(seen.protocol, 4, "IPIP");
                seen.inner.expect("the inner packet").ip_bytes
            }
            _ => seen.ip_bytes,
        };
        assert_eq!(
            inner[20..],
            input[14 + 20..],
            "{method:?}: SCTP bytes as sent"
        );
        // DR/TUN see one direction: INPUT_ONLY's table.
        assert_eq!(state(&d), "INIT1");
        d.run(&from_client_sctp(40000, COOKIE_ECHO), FRONT);
        assert_eq!(state(&d), "ESTABLISHED", "{method:?}");
    }
}

#[test]
fn only_an_init_starts_an_association_unless_sloppy_and_never_an_abort() {
    let mut cfg = config(Protocol::Sctp, "rr", ForwardMethod::Route, &[1]);
    let mut d = Director::new(cfg.clone());
    for t in [DATA, COOKIE_ECHO, ABORT] {
        assert_eq!(
            d.run(&from_client_sctp(40000, t), FRONT).0,
            Verdict::Drop(DropReason::NoConnection),
            "chunk {t}"
        );
    }
    let chunkless = frame(ROUTER_MAC, FRONT_MAC, (CLIENT, 40000), (VIP, 80), &[]);
    assert_eq!(
        d.run(&chunkless, FRONT).0,
        Verdict::Drop(DropReason::NoConnection)
    );
    assert_eq!(d.engine.connection_count(), 0);

    cfg.sloppy_sctp = true;
    d.reconfigure(cfg);
    assert_eq!(
        d.run(&from_client_sctp(40000, ABORT), FRONT).0,
        Verdict::Drop(DropReason::NoConnection),
        "an ABORT never creates one"
    );
    assert_eq!(
        d.run(&from_client_sctp(40000, DATA), FRONT).0,
        Verdict::Forward { egress: BACK }
    );
    assert_eq!(state(&d), "ESTABLISHED", "DATA from NONE (INPUT_ONLY)");
}

#[test]
fn an_abort_bundled_after_a_cookie_echo_is_what_counts() {
    let mut d = Director::new(config(Protocol::Sctp, "rr", ForwardMethod::Route, &[1]));
    d.run(&from_client_sctp(40000, INIT), FRONT);
    let bundled = frame(
        ROUTER_MAC,
        FRONT_MAC,
        (CLIENT, 40000),
        (VIP, 80),
        &[(COOKIE_ECHO, b"cookie!"), (ABORT, b"")],
    );
    d.run(&bundled, FRONT);
    assert_eq!(state(&d), "CLOSED");
}

#[test]
fn an_init_on_a_closed_association_is_scheduled_afresh() {
    let mut d = Director::new(config(Protocol::Sctp, "rr", ForwardMethod::Route, &[1, 1]));
    let (_, out) = d.run(&from_client_sctp(40000, INIT), FRONT);
    let first = server_of(check(&out).dst_mac);
    d.run(&from_client_sctp(40000, ABORT), FRONT);
    assert_eq!(state(&d), "CLOSED");
    let (_, out) = d.run(&from_client_sctp(40000, INIT), FRONT);
    assert_ne!(server_of(check(&out).dst_mac), first, "rr moved on");
    assert_eq!((d.engine.connection_count(), state(&d)), (1, "INIT1"));
    // Not in another state: the INIT follows the association.
    d.run(&from_client_sctp(40000, COOKIE_ECHO), FRONT);
    let (_, out) = d.run(&from_client_sctp(40000, INIT), FRONT);
    assert_ne!(server_of(check(&out).dst_mac), first);
}

#[test]
fn short_sctp_packets_are_counted_and_dropped() {
    let mut d = Director::new(config(Protocol::Sctp, "rr", ForwardMethod::Route, &[1]));
    let b =
        PacketBuilder::ethernet2(mac(ROUTER_MAC).0, mac(FRONT_MAC).0).ipv4(v4(CLIENT), v4(VIP), 64);
    let mut out = Vec::new();
    b.write(&mut out, IpNumber(132), &[0x9c, 0x40, 0, 80, 0, 0, 0])
        .unwrap();
    assert_eq!(d.run(&out, FRONT).0, Verdict::Drop(DropReason::Malformed));
    assert_eq!(d.engine.counters().dropped(DropReason::Malformed), 1);
}

#[test]
fn one_packet_scheduling_is_refused_for_sctp() {
    let mut cfg = config(Protocol::Sctp, "rr", ForwardMethod::Route, &[1]);
    cfg.services[0].one_packet = true;
    let err = rvs_engine::Snapshot::new(cfg).unwrap_err().to_string();
    assert!(err.contains("UDP only"), "{err}");
}

#[test]
fn an_established_association_is_synced_and_a_backup_installs_it() {
    let mut m = Director::new(config(Protocol::Sctp, "rr", ForwardMethod::Masq, &[1]));
    m.engine
        .set_sync_master(Some(rvs_vocab::sync::SyncThreshold::DEFAULT));
    m.run(&from_client_sctp(40000, INIT), FRONT);
    m.run(&from_server_sctp(RS[0], 11, 40000, INIT_ACK), BACK);
    m.run(&from_client_sctp(40000, COOKIE_ECHO), FRONT);
    assert!(
        m.engine.poll_sync().is_none(),
        "handshake states are not sent"
    );
    m.run(&from_server_sctp(RS[0], 11, 40000, COOKIE_ACK), BACK);
    let sent: Vec<_> = std::iter::from_fn(|| m.engine.poll_sync()).collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].protocol, sent[0].state, sent[0].timeout),
        (132, 8, 900)
    );

    // Through the kernel's datagram format to a backup.
    let mut enc = rvs_wire::ipvs_sync::Encoder::new(7, 1472);
    let mut grams: Vec<Vec<u8>> = sent.iter().filter_map(|c| enc.push(c)).collect();
    grams.extend(enc.flush());
    let got = rvs_wire::ipvs_sync::decode(&grams[0]).unwrap().conns;
    let mut b = Director::new(config(Protocol::Sctp, "rr", ForwardMethod::Masq, &[1]));
    b.engine.apply_sync(b.now, &got[0]).unwrap();
    assert_eq!((state(&b), counts(&b)), ("ESTABLISHED", (1, 0)));
    // A state number beyond SCTP's table is refused.
    let mut bad = got[0];
    bad.state = 14;
    assert!(b.engine.apply_sync(b.now, &bad).is_err());
}

#[test]
fn an_ipv6_nat_association_is_translated_with_a_fresh_crc() {
    let mut d = ipv6_director(Protocol::Sctp, ForwardMethod::Masq);
    let v6 = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap().octets();
    let build = |src_mac: u8, dst_mac: u8, src: (&str, u16), dst: (&str, u16), t: u8| {
        let b =
            PacketBuilder::ethernet2(mac(src_mac).0, mac(dst_mac).0).ipv6(v6(src.0), v6(dst.0), 64);
        let mut out = Vec::new();
        b.write(&mut out, IpNumber(132), &sctp(src.1, dst.1, &[(t, b"v6")]))
            .unwrap();
        out
    };
    let l4_of = |out: &[u8]| -> Vec<u8> { out[14 + 40..].to_vec() };
    let crc_ok = |l4: &[u8]| {
        let mut z = l4.to_vec();
        z[8..12].fill(0);
        l4[8..12] == crc32c(&z).to_le_bytes()
    };
    let (v, out) = d.run(
        &build(
            ROUTER_MAC,
            FRONT_MAC,
            ("fd00:1::2", 40000),
            ("fd00:100::1", 80),
            INIT,
        ),
        FRONT,
    );
    assert_eq!(v, Verdict::Forward { egress: BACK });
    let l4 = l4_of(&out);
    assert_eq!(u16::from_be_bytes([l4[2], l4[3]]), 8080);
    assert!(crc_ok(&l4));
    assert_eq!(out[14 + 24..14 + 40], v6("fd00:2::11"));
    let (v, out) = d.run(
        &build(
            11,
            BACK_MAC,
            ("fd00:2::11", 8080),
            ("fd00:1::2", 40000),
            INIT_ACK,
        ),
        BACK,
    );
    assert_eq!(v, Verdict::Forward { egress: FRONT });
    let l4 = l4_of(&out);
    assert_eq!(u16::from_be_bytes([l4[0], l4[1]]), 80);
    assert!(crc_ok(&l4));
    assert_eq!(out[14 + 8..14 + 24], v6("fd00:100::1"));
    assert_eq!(state(&d), "C-SENT");
}

/// Once established, an association's DATA-class packets are the XDP
/// program's, with the SCTP class only, in DR, TUN and NAT to either port
/// (the program updates the CRC32c for changed ports); a tunnel whose
/// checksum the program fills from TCP/UDP headers keeps them with the
/// engine.
#[test]
fn established_associations_go_to_the_fast_path() {
    use rvs_engine::TcpSegments;
    let establish = |d: &mut Director, server_port: u16| {
        d.run(&from_client_sctp(40000, INIT), FRONT);
        d.run(&from_server_sctp(RS[0], 11, server_port, INIT_ACK), BACK);
        d.run(&from_client_sctp(40000, COOKIE_ECHO), FRONT);
        d.run(&from_server_sctp(RS[0], 11, server_port, COOKIE_ACK), BACK);
    };
    for method in [ForwardMethod::Route, ForwardMethod::Tunnel] {
        let mut d = Director::new(config(Protocol::Sctp, "rr", method, &[1]));
        d.run(&from_client_sctp(40000, INIT), FRONT);
        d.run(&from_client_sctp(40000, COOKIE_ECHO), FRONT);
        assert_eq!(state(&d), "ESTABLISHED");
        let Some(FastAction::Forward(f)) = d.maps.entries.get(&sctp_key()) else {
            panic!("{method:?}: {:?}", d.maps.entries)
        };
        assert_eq!(f.segments, TcpSegments::SCTP_DATA, "{method:?}");
        d.run(&from_client_sctp(40000, SHUTDOWN), FRONT);
        assert!(
            matches!(
                d.maps.entries.get(&sctp_key()),
                Some(FastAction::Forward(_))
            ),
            "{method:?}: SHUTDOWN_RECEIVED keeps DATA as it is"
        );
        d.run(&from_client_sctp(40000, ABORT), FRONT);
        assert_eq!(
            d.maps.entries.get(&sctp_key()),
            Some(&FastAction::ToEngine),
            "{method:?}: closed"
        );
    }
    // A tunnel whose checksum XDP fills from the headers (true of TCP and
    // UDP only) keeps the association with the engine.
    let mut cfg = config(Protocol::Sctp, "rr", ForwardMethod::Tunnel, &[1]);
    cfg.services[0].dests[0].tunnel = rvs_engine::Tunnel::Gre {
        checksum: rvs_engine::TunnelChecksum::Csum,
    };
    let mut d = Director::new(cfg);
    d.run(&from_client_sctp(40000, INIT), FRONT);
    d.run(&from_client_sctp(40000, COOKIE_ECHO), FRONT);
    assert_eq!(state(&d), "ESTABLISHED");
    assert_eq!(d.maps.entries.get(&sctp_key()), Some(&FastAction::ToEngine));
    // NAT to port 8080: both directions forward, the CRC updated in XDP.
    let mut d = Director::new(config(Protocol::Sctp, "rr", ForwardMethod::Masq, &[1]));
    establish(&mut d, 40000);
    assert_eq!(state(&d), "ESTABLISHED");
    assert_forwards_data_both_ways(&d);
    // NAT to the service's port: both directions forward.
    let mut cfg = config(Protocol::Sctp, "rr", ForwardMethod::Masq, &[1]);
    cfg.services[0].dests[0].port = 80;
    let mut d = Director::new(cfg);
    d.run(&from_client_sctp(40000, INIT), FRONT);
    let reply = |t| {
        let mut f = from_server_sctp(RS[0], 11, 40000, t);
        // The server answers from the service's port.
        f[34..36].copy_from_slice(&80u16.to_be_bytes());
        let crc = crc32c(&{
            let mut s = f[34..].to_vec();
            s[8..12].fill(0);
            s
        });
        f[42..46].copy_from_slice(&crc.to_le_bytes());
        f
    };
    d.run(&reply(INIT_ACK), BACK);
    d.run(&from_client_sctp(40000, COOKIE_ECHO), FRONT);
    d.run(&reply(COOKIE_ACK), BACK);
    assert_eq!(state(&d), "ESTABLISHED");
    assert_forwards_data_both_ways(&d);
}

/// A full table evicts an association that has seen only its client's
/// INIT (all a spoofed INIT flood leaves; the kernel's drop_entry takes
/// the same states), never an established one.
#[test]
fn a_full_table_evicts_an_init_only_association_never_an_established_one() {
    let mut cfg = config(Protocol::Sctp, "rr", ForwardMethod::Route, &[1]);
    cfg.max_connections = 2;
    let mut d = Director::new(cfg);
    d.run(&from_client_sctp(40000, INIT), FRONT);
    d.run(&from_client_sctp(40000, COOKIE_ECHO), FRONT);
    d.run(&from_client_sctp(40001, INIT), FRONT);
    let (v, _) = d.run(&from_client_sctp(40002, INIT), FRONT);
    assert!(matches!(v, Verdict::Forward { .. }), "{v:?}");
    assert_eq!(d.engine.counters().conns_evicted, 1);
    let listed = |d: &Director| {
        let mut v: Vec<(u16, &str)> = d
            .engine
            .connections(d.now)
            .iter()
            .map(|c| (c.client.1, c.state))
            .collect();
        v.sort();
        v
    };
    assert_eq!(listed(&d), vec![(40000, "ESTABLISHED"), (40002, "INIT1")]);
    // Established both: nothing to evict, the next INIT is refused.
    d.run(&from_client_sctp(40002, COOKIE_ECHO), FRONT);
    let (v, _) = d.run(&from_client_sctp(40003, INIT), FRONT);
    assert_eq!(v, Verdict::Drop(DropReason::ConnTableFull));
    assert_eq!(d.engine.counters().conns_evicted, 1);
}

/// Both directions of the association are in the fast path, for its
/// DATA-class packets only.
fn assert_forwards_data_both_ways(d: &Director) {
    use rvs_engine::TcpSegments;
    assert_eq!(d.maps.entries.len(), 2);
    assert!(d
        .maps
        .entries
        .values()
        .all(|a| matches!(a, FastAction::Forward(f) if f.segments == TcpSegments::SCTP_DATA)));
}

/// The client → VIP direction of the test association.
fn sctp_key() -> rvs_engine::FastKey {
    rvs_engine::FastKey {
        proto: 132,
        ..client_key(40000)
    }
}

/// An ICMP error about an SCTP association is relayed as IPVS relays it:
/// a router's "fragmentation needed" about a reply reaches the NAT server
/// with the quoted source translated (the quoted CRC32c left as it is, as
/// the kernel leaves it), and one about nothing tracked is dropped.
#[test]
fn icmp_errors_about_an_association_are_relayed() {
    let mut d = Director::new(config(Protocol::Sctp, "rr", ForwardMethod::Masq, &[1]));
    d.run(&from_client_sctp(40000, INIT), FRONT);
    let reply = frame(
        FRONT_MAC,
        ROUTER_MAC,
        (VIP, 80),
        (CLIENT, 40000),
        &[(DATA, &[0u8; 64])],
    );
    let err = icmp_v4((ROUTER_MAC, FRONT_MAC), "10.0.3.1", VIP, 3, 4, 1400, &reply);
    let (v, out) = d.run(&err, FRONT);
    assert_eq!(v, Verdict::Forward { egress: BACK });
    let seen = check(&out); // outer IPv4 and ICMP checksums
    assert_eq!(seen.dst, ip(RS[0]));
    let q = &seen.ip_bytes[28..];
    assert_eq!(q[9], 132, "the quote is SCTP");
    assert_eq!(&q[12..16], &v4(RS[0]), "quoted source = RIP");
    assert_eq!(&q[20..24], &[0x1f, 0x90, 0x9c, 0x40], "ports 8080 → 40000");
    assert_eq!(d.engine.counters().icmp_translated, 1);

    let stray = frame(
        FRONT_MAC,
        ROUTER_MAC,
        (VIP, 80),
        (CLIENT, 40001),
        &[(DATA, b"x")],
    );
    let err = icmp_v4((ROUTER_MAC, FRONT_MAC), "10.0.3.1", VIP, 3, 4, 1400, &stray);
    let (v, _) = d.run(&err, FRONT);
    assert_eq!(v, Verdict::Drop(DropReason::IcmpNoConnection));
}
