//! Fragmented datagrams (issue 11, item 3): the first fragment is scheduled
//! like a whole packet, later fragments follow it to the same real server
//! (or, for NAT replies, the client) with the same translation, so the
//! receiver reassembles the datagram intact; unknown, oversized and flooding
//! fragments are counted and dropped within a fixed table.

mod common;

use common::*;
use rvs_engine::{Config, DropReason, ForwardMethod, Protocol, Verdict};
use rvs_wire::checksum;

/// An Ethernet + IPv4 + UDP datagram `src → dst` with `len` payload bytes,
/// cut into fragments of at most `mtu` bytes of IP (no DF), id `id`.
fn fragmented(
    (src_mac, dst_mac): (u8, u8),
    src: (&str, u16),
    dst: (&str, u16),
    len: usize,
    mtu: usize,
    id: u16,
) -> Vec<Vec<u8>> {
    let payload: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let whole = udp_frame(src, dst, &payload);
    let udp = &whole[14 + 20..];
    let chunk = (mtu - 20) / 8 * 8;
    let mut out = Vec::new();
    let mut off = 0;
    while off < udp.len() {
        let end = (off + chunk).min(udp.len());
        let more = end < udp.len();
        let mut ip = whole[14..34].to_vec();
        ip[2..4].copy_from_slice(&((20 + end - off) as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&id.to_be_bytes());
        let flags_off = (if more { 0x2000 } else { 0 }) | (off / 8) as u16;
        ip[6..8].copy_from_slice(&flags_off.to_be_bytes());
        ip[10..12].fill(0);
        let c = checksum::compute(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let mut f = mac(dst_mac).0.to_vec();
        f.extend_from_slice(&mac(src_mac).0);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&ip);
        f.extend_from_slice(&udp[off..end]);
        out.push(f);
        off = end;
    }
    out
}

/// Reassembles forwarded IPv4 fragments (in order) and checks the result:
/// every header checksum, then the UDP checksum over the whole datagram.
/// Returns (source, destination, ports, payload length).
fn reassemble(frames: &[Vec<u8>]) -> (Vec<u8>, Vec<u8>, (u16, u16), usize) {
    let mut data = Vec::new();
    let mut hdr = Vec::new();
    for f in frames {
        let ip = &f[14..];
        assert_eq!(checksum::compute(&ip[..20]), 0, "IPv4 header checksum");
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let off = usize::from(u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff) * 8;
        assert_eq!(off, data.len(), "fragments in order, no gap");
        data.extend_from_slice(&ip[20..total]);
        hdr = ip[..20].to_vec();
    }
    let (src, dst) = (hdr[12..16].to_vec(), hdr[16..20].to_vec());
    let pseudo = checksum::pseudo_header_v4(
        &src.clone().try_into().unwrap(),
        &dst.clone().try_into().unwrap(),
        17,
        data.len() as u16,
    );
    assert_eq!(
        checksum::finish(checksum::combine(pseudo, checksum::sum(&data))),
        0,
        "UDP checksum over the reassembled datagram"
    );
    let ports = (
        u16::from_be_bytes([data[0], data[1]]),
        u16::from_be_bytes([data[2], data[3]]),
    );
    (src, dst, ports, data.len() - 8)
}

fn udp_director(method: ForwardMethod) -> Director {
    Director::new(config(Protocol::Udp, "rr", method, &[1, 1, 1]))
}

fn run_all(d: &mut Director, frames: &[Vec<u8>], ingress: rvs_engine::IfIndex) -> Vec<Vec<u8>> {
    frames
        .iter()
        .map(|f| {
            let (v, out) = d.run(f, ingress);
            assert!(matches!(v, Verdict::Forward { .. }), "verdict {v:?}");
            out
        })
        .collect()
}

#[test]
fn dr_sends_every_fragment_of_a_datagram_to_one_server_untouched() {
    let mut d = udp_director(ForwardMethod::Route);
    for (i, len) in [4000usize, 60000].into_iter().enumerate() {
        let frags = fragmented(
            (ROUTER_MAC, FRONT_MAC),
            (CLIENT, 5000 + i as u16),
            (VIP, 80),
            len,
            1500,
            7,
        );
        let out = run_all(&mut d, &frags, FRONT);
        let server = out[0][5];
        for (o, f) in out.iter().zip(&frags) {
            assert_eq!(o[5], server, "one real server for the whole datagram");
            assert_eq!(&o[12..], &f[12..], "IP packet untouched");
        }
        assert_eq!(reassemble(&out).3, len);
    }
    let c = d.engine.counters();
    assert_eq!(c.fragments_tracked, 2);
    assert_eq!(c.fragments_followed, 2 + 40);
    assert_eq!(c.accounted(), c.rx_packets);
}

#[test]
fn nat_translates_the_first_fragment_fully_and_the_others_by_address() {
    let mut d = udp_director(ForwardMethod::Masq);
    let frags = fragmented(
        (ROUTER_MAC, FRONT_MAC),
        (CLIENT, 5000),
        (VIP, 80),
        4000,
        1500,
        9,
    );
    let out = run_all(&mut d, &frags, FRONT);
    let (src, dst, ports, len) = reassemble(&out);
    assert_eq!(src, v4(CLIENT));
    let rs = dst.clone();
    assert!(RS.iter().any(|r| v4(r).to_vec() == rs), "to a real server");
    assert_eq!(ports, (5000, 8080));
    assert_eq!(len, 4000);

    // The server's 4000-byte answer comes back fragmented too.
    let rs_name = RS.iter().find(|r| v4(r).to_vec() == rs).unwrap();
    let answer = fragmented(
        (11, BACK_MAC),
        (rs_name, 8080),
        (CLIENT, 5000),
        4000,
        1500,
        3,
    );
    let out = run_all(&mut d, &answer, BACK);
    let (src, dst, ports, len) = reassemble(&out);
    assert_eq!((src, dst), (v4(VIP).to_vec(), v4(CLIENT).to_vec()));
    assert_eq!(ports, (80, 5000));
    assert_eq!(len, 4000);
    for o in &out {
        assert_eq!(o[14 + 8], 63, "routed: TTL decremented");
    }
}

#[test]
fn unknown_oversized_and_flooding_fragments_are_dropped_and_counted() {
    let mut cfg = config(Protocol::Udp, "rr", ForwardMethod::Route, &[1]);
    cfg.max_fragment_datagrams = 64;
    let mut d = Director::new(cfg);
    let frags = fragmented(
        (ROUTER_MAC, FRONT_MAC),
        (CLIENT, 5000),
        (VIP, 80),
        4000,
        1500,
        11,
    );
    // The second fragment before the first: nothing says where it goes.
    assert_eq!(
        d.run(&frags[1], FRONT).0,
        Verdict::Drop(DropReason::Fragment)
    );
    // Past 65,535 bytes.
    let mut huge = frags[2].clone();
    huge[14 + 6..14 + 8].copy_from_slice(&(0x1fffu16).to_be_bytes());
    huge[14 + 10..14 + 12].fill(0);
    let c = checksum::compute(&huge[14..34]);
    huge[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
    assert_eq!(
        d.run(&huge, FRONT).0,
        Verdict::Drop(DropReason::FragmentOversized)
    );
    // A flood of first fragments with fresh ids: the table stays at 64.
    for id in 0..5000u16 {
        let f = fragmented(
            (ROUTER_MAC, FRONT_MAC),
            (CLIENT, 6000),
            (VIP, 80),
            3000,
            1500,
            id,
        );
        d.run(&f[0], FRONT);
    }
    assert!(d.engine.fragmented_datagrams(d.now) <= 64);
    let c = d.engine.counters();
    assert!(c.fragments_evicted >= 5000 - 64, "{}", c.fragments_evicted);
    // Out of order after the first: the last before the middle, both go;
    // then a duplicate is an overlap.
    let frags = fragmented(
        (ROUTER_MAC, FRONT_MAC),
        (CLIENT, 7100),
        (VIP, 80),
        4000,
        1500,
        41000,
    );
    for i in [0, 2, 1] {
        assert!(
            matches!(d.run(&frags[i], FRONT).0, Verdict::Forward { .. }),
            "fragment {i}"
        );
    }
    let frags = fragmented(
        (ROUTER_MAC, FRONT_MAC),
        (CLIENT, 7200),
        (VIP, 80),
        4000,
        1500,
        42000,
    );
    assert!(matches!(d.run(&frags[0], FRONT).0, Verdict::Forward { .. }));
    assert!(matches!(d.run(&frags[1], FRONT).0, Verdict::Forward { .. }));
    assert_eq!(
        d.run(&frags[1], FRONT).0,
        Verdict::Drop(DropReason::FragmentOverlap)
    );
    // Timed out: a datagram's later fragment 31 s after its first.
    let frags = fragmented(
        (ROUTER_MAC, FRONT_MAC),
        (CLIENT, 7000),
        (VIP, 80),
        4000,
        1500,
        40000,
    );
    assert!(matches!(d.run(&frags[0], FRONT).0, Verdict::Forward { .. }));
    d.advance(31);
    assert_eq!(
        d.run(&frags[1], FRONT).0,
        Verdict::Drop(DropReason::Fragment)
    );
    let c = d.engine.counters();
    assert_eq!(c.accounted(), c.rx_packets, "every frame in one counter");
}

#[test]
fn a_bad_fragment_table_size_is_refused() {
    let cfg = Config {
        max_fragment_datagrams: 0,
        ..Config::default()
    };
    assert!(rvs_engine::Snapshot::new(cfg)
        .unwrap_err()
        .to_string()
        .contains("max_fragment_datagrams"));
}

/// An Ethernet + IPv6 + UDP datagram cut into fragments (fragment header
/// right after the fixed header) of at most `mtu` bytes of IP.
fn fragmented_v6(
    (src_mac, dst_mac): (u8, u8),
    (src, sport): (std::net::Ipv6Addr, u16),
    (dst, dport): (std::net::Ipv6Addr, u16),
    len: usize,
    mtu: usize,
    id: u32,
) -> Vec<Vec<u8>> {
    let payload: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let mut udp = Vec::new();
    udp.extend_from_slice(&sport.to_be_bytes());
    udp.extend_from_slice(&dport.to_be_bytes());
    udp.extend_from_slice(&((8 + len) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&payload);
    let c = checksum::finish(checksum::combine(
        checksum::pseudo_header_v6(&src.octets(), &dst.octets(), 17, udp.len() as u32),
        checksum::sum(&udp),
    ));
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    let chunk = (mtu - 48) / 8 * 8;
    let mut out = Vec::new();
    let mut off = 0;
    while off < udp.len() {
        let end = (off + chunk).min(udp.len());
        let more = end < udp.len();
        let mut f = mac(dst_mac).0.to_vec();
        f.extend_from_slice(&mac(src_mac).0);
        f.extend_from_slice(&[0x86, 0xdd]);
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&((8 + end - off) as u16).to_be_bytes());
        f.extend_from_slice(&[44, 64]);
        f.extend_from_slice(&src.octets());
        f.extend_from_slice(&dst.octets());
        f.extend_from_slice(&[17, 0]);
        f.extend_from_slice(&((off as u16) | u16::from(more)).to_be_bytes());
        f.extend_from_slice(&id.to_be_bytes());
        f.extend_from_slice(&udp[off..end]);
        out.push(f);
        off = end;
    }
    out
}

/// Reassembles IPv6 fragments (in order): (source, destination, ports,
/// payload length), the UDP checksum checked over the whole datagram.
fn reassemble_v6(frames: &[Vec<u8>]) -> ([u8; 16], [u8; 16], (u16, u16), usize) {
    let mut data = Vec::new();
    let (mut src, mut dst) = ([0u8; 16], [0u8; 16]);
    for f in frames {
        let ip = &f[14..];
        assert_eq!(ip[6], 44, "a fragment header");
        let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
        let off = usize::from(u16::from_be_bytes([ip[42], ip[43]]) & 0xfff8);
        assert_eq!(off, data.len(), "in order, no gap");
        data.extend_from_slice(&ip[48..40 + plen]);
        src.copy_from_slice(&ip[8..24]);
        dst.copy_from_slice(&ip[24..40]);
    }
    let sum = checksum::finish(checksum::combine(
        checksum::pseudo_header_v6(&src, &dst, 17, data.len() as u32),
        checksum::sum(&data),
    ));
    assert_eq!(sum, 0, "UDP checksum over the reassembled datagram");
    let ports = (
        u16::from_be_bytes([data[0], data[1]]),
        u16::from_be_bytes([data[2], data[3]]),
    );
    (src, dst, ports, data.len() - 8)
}

#[test]
fn ipv6_fragments_follow_their_first_through_nat_both_ways_and_dr() {
    use std::net::Ipv6Addr;
    let a = |s: &str| s.parse::<Ipv6Addr>().unwrap();
    for method in [ForwardMethod::Masq, ForwardMethod::Route] {
        let mut d = ipv6_director(Protocol::Udp, method);
        let (client, vip, rs) = (a("fd00:1::2"), a("fd00:100::1"), a("fd00:2::11"));
        let frags = fragmented_v6(
            (ROUTER_MAC, FRONT_MAC),
            (client, 5000),
            (vip, 80),
            4000,
            1500,
            77,
        );
        assert_eq!(frags.len(), 3);
        let out = run_all(&mut d, &frags, FRONT);
        let (src, dst, ports, len) = reassemble_v6(&out);
        assert_eq!((src, len), (client.octets(), 4000));
        if method == ForwardMethod::Masq {
            assert_eq!((dst, ports), (rs.octets(), (5000, 8080)));
            let answer = fragmented_v6((11, BACK_MAC), (rs, 8080), (client, 5000), 4000, 1500, 78);
            let out = run_all(&mut d, &answer, BACK);
            let (src, dst, ports, len) = reassemble_v6(&out);
            assert_eq!(
                (src, dst, ports, len),
                (vip.octets(), client.octets(), (80, 5000), 4000)
            );
            assert!(out.iter().all(|o| o[14 + 7] == 63), "hop limit decremented");
        } else {
            assert_eq!((dst, ports), (vip.octets(), (5000, 80)));
            for (o, f) in out.iter().zip(&frags) {
                assert_eq!(&o[12..], &f[12..], "DR: untouched");
                assert_eq!(o[5], 11, "to the real server");
            }
        }
        // A later fragment of an unknown datagram.
        let stray = fragmented_v6(
            (ROUTER_MAC, FRONT_MAC),
            (client, 5001),
            (vip, 80),
            4000,
            1500,
            79,
        );
        assert_eq!(
            d.run(&stray[2], FRONT).0,
            Verdict::Drop(DropReason::Fragment)
        );
        let c = d.engine.counters();
        assert_eq!(c.accounted(), c.rx_packets);
    }
}
