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
