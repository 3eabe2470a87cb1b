//! Property tests for NAT rewrites: random TCP/UDP packets over IPv4 and
//! IPv6 get random address and port rewrites applied the way the engine does
//! (incremental, RFC 1624), and must come out with checksums that verify and
//! equal a full recomputation.
//!
//! Where incremental and full results may legitimately differ: RFC 1624
//! eqn. 3, HC' = ~(~HC + ~m + m'), yields the same 16-bit value as a full
//! computation in every case but one. The full computation folds a non-zero
//! sum into 1..=0xffff and so never writes 0xffff (it writes +0, 0x0000,
//! where the data sums to -0). Eqn. 3 writes 0xffff exactly when its
//! accumulator is 0, which needs ~HC == 0 (the old field already held the
//! alternative zero 0xffff) and every replaced word going from 0xffff to
//! 0x0000 — the same one's-complement value, so the data sum did not change.
//! Both encodings of zero verify, so the packet is correct either way. The
//! tests allow exactly that pair (incremental 0xffff, full 0x0000) and only
//! when a 0xffff checksum was fed into an update. UDP is stricter: both paths
//! write a computed 0 as 0xffff, so they must agree bit for bit.

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use rvs_wire::{ip_proto, ipv4, ipv6, tcp, udp};

/// How the L4 checksum field looks before the rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Force {
    /// Whatever a full computation gives.
    Natural,
    /// The data sums to -0, so the full checksum is 0x0000 (for UDP written
    /// as 0xffff).
    Zero,
    /// As `Zero`, but the field holds the other encoding, 0xffff.
    Ffff,
    /// UDP only: no checksum at all (field 0), which must stay 0.
    Absent,
}

fn force_strategy(udp: bool) -> impl Strategy<Value = Force> {
    let mut v = vec![Force::Natural, Force::Natural, Force::Zero, Force::Ffff];
    if udp {
        v.push(Force::Absent);
    }
    proptest::sample::select(v)
}

fn v4_addr() -> impl Strategy<Value = Ipv4Addr> + Clone {
    prop_oneof![
        4 => any::<u32>().prop_map(Ipv4Addr::from),
        1 => Just(Ipv4Addr::BROADCAST),
        1 => Just(Ipv4Addr::UNSPECIFIED),
    ]
}

fn v6_addr() -> impl Strategy<Value = Ipv6Addr> + Clone {
    prop_oneof![
        4 => any::<u128>().prop_map(Ipv6Addr::from),
        1 => Just(Ipv6Addr::from(u128::MAX)),
        1 => Just(Ipv6Addr::UNSPECIFIED),
    ]
}

fn port() -> impl Strategy<Value = u16> + Clone {
    prop_oneof![4 => any::<u16>(), 1 => Just(0xffff), 1 => Just(0)]
}

/// Lengths 0..=65 cover odd and even payloads.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..=65)
}

/// The L4 part of a packet: header + payload, checksum not yet filled.
/// The first two payload bytes (or, for an empty payload, a spare word we
/// do not have) are the "fudge" word used to force a -0 data sum; with an
/// empty payload TCP uses its urgent pointer and UDP cannot be forced.
fn l4_segment(is_tcp: bool, sport: u16, dport: u16, payload: &[u8], flags: u8) -> Vec<u8> {
    let hl = if is_tcp {
        tcp::HEADER_LEN
    } else {
        udp::HEADER_LEN
    };
    let mut seg = vec![0u8; hl + payload.len()];
    seg[hl..].copy_from_slice(payload);
    if is_tcp {
        let mut t = tcp::Packet::new_unchecked(&mut seg[..]);
        t.set_src_port(sport);
        t.set_dst_port(dport);
        t.set_seq_number(0x1234_5678);
        t.set_ack_number(0x9abc_def0);
        t.set_header_len(tcp::HEADER_LEN);
        t.set_flags(flags);
        t.set_window(29200);
    } else {
        let len = seg.len() as u16;
        let mut u = udp::Packet::new_unchecked(&mut seg[..]);
        u.set_src_port(sport);
        u.set_dst_port(dport);
        u.set_len(len);
    }
    seg
}

/// Byte offset of the word [`force_l4`] may overwrite to steer the sum.
fn fudge_offset(is_tcp: bool, payload_len: usize) -> Option<usize> {
    if is_tcp {
        Some(18) // urgent pointer
    } else if payload_len >= 2 {
        Some(udp::HEADER_LEN)
    } else {
        None
    }
}

/// Fills the L4 checksum, first steering the data sum as `force` asks.
/// `fill` computes the checksum in full into the segment.
fn force_l4(
    seg: &mut [u8],
    is_tcp: bool,
    force: Force,
    payload_len: usize,
    fill: &dyn Fn(&mut [u8]),
) {
    let check_at = if is_tcp { 16 } else { 6 };
    match force {
        Force::Natural => fill(seg),
        Force::Absent => {
            seg[check_at..check_at + 2].copy_from_slice(&[0, 0]);
        }
        Force::Zero | Force::Ffff => {
            match fudge_offset(is_tcp, payload_len) {
                Some(at) => {
                    // With the fudge word 0 the checksum is c = ~S; storing c
                    // in the fudge word makes the covered data sum to -0.
                    seg[at..at + 2].copy_from_slice(&[0, 0]);
                    fill(seg);
                    let c = [seg[check_at], seg[check_at + 1]];
                    seg[at..at + 2].copy_from_slice(&c);
                    fill(seg);
                    let now = u16::from_be_bytes([seg[check_at], seg[check_at + 1]]);
                    if is_tcp {
                        assert_eq!(now, 0x0000, "forcing a -0 sum failed");
                    } else {
                        assert_eq!(now, 0xffff, "UDP writes a computed 0 as 0xffff");
                    }
                }
                None => fill(seg),
            }
            if force == Force::Ffff && is_tcp {
                // The alternative encoding of zero: still verifies.
                seg[check_at..check_at + 2].copy_from_slice(&[0xff, 0xff]);
            }
        }
    }
}

fn check_ok(incremental: u16, full: u16, fed_ffff: bool, what: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        incremental == full || (incremental == 0xffff && full == 0x0000 && fed_ffff),
        "{what}: incremental {incremental:#06x} vs full {full:#06x} (fed 0xffff: {fed_ffff})"
    );
    Ok(())
}

#[derive(Debug, Clone)]
struct Rewrite<A> {
    src: Option<A>,
    dst: Option<A>,
    sport: Option<u16>,
    dport: Option<u16>,
}

fn rewrite<A: std::fmt::Debug + Clone + 'static>(
    addr: impl Strategy<Value = A> + Clone + 'static,
) -> impl Strategy<Value = Rewrite<A>> {
    (
        proptest::option::of(addr.clone()),
        proptest::option::of(addr),
        proptest::option::of(port()),
        proptest::option::of(port()),
    )
        .prop_map(|(src, dst, sport, dport)| Rewrite {
            src,
            dst,
            sport,
            dport,
        })
}

/// Builds an IPv4 packet, rewrites it incrementally and checks it.
#[allow(clippy::too_many_arguments)] // One argument per random input.
fn run_v4(
    is_tcp: bool,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    payload: &[u8],
    flags: u8,
    force: Force,
    ip_force_ffff: bool,
    rw: &Rewrite<Ipv4Addr>,
) -> Result<(), TestCaseError> {
    let proto = if is_tcp { ip_proto::TCP } else { ip_proto::UDP };
    let mut seg = l4_segment(is_tcp, sport, dport, payload, flags);
    force_l4(&mut seg, is_tcp, force, payload.len(), &|s: &mut [u8]| {
        if is_tcp {
            tcp::Packet::new_unchecked(s).fill_checksum_v4(&src, &dst);
        } else {
            udp::Packet::new_unchecked(s).fill_checksum_v4(&src, &dst);
        }
    });
    let mut buf = vec![0u8; ipv4::HEADER_LEN + seg.len()];
    let fields = ipv4::HeaderFields {
        src,
        dst,
        protocol: proto,
        payload_len: seg.len() as u16,
        ttl: 64,
        tos: 0,
        ident: 0,
        dont_frag: true,
    };
    ipv4::emit_header(&mut buf, &fields).unwrap();
    if ip_force_ffff {
        // Steer the header to sum to -0 through the ident field, then store
        // the alternative zero 0xffff.
        let c = u16::from_be_bytes([buf[10], buf[11]]);
        ipv4::emit_header(&mut buf, &ipv4::HeaderFields { ident: c, ..fields }).unwrap();
        prop_assert_eq!(&buf[10..12], &[0, 0]);
        buf[10] = 0xff;
        buf[11] = 0xff;
    }
    buf[ipv4::HEADER_LEN..].copy_from_slice(&seg);

    {
        let ip = ipv4::Packet::new_checked(&buf[..]).unwrap();
        prop_assert!(ip.verify_checksum());
        if is_tcp {
            let t = tcp::Packet::new_checked(ip.payload()).unwrap();
            prop_assert!(t.verify_checksum_v4(&src, &dst));
        } else {
            let u = udp::Packet::new_checked(ip.payload()).unwrap();
            prop_assert!(u.verify_checksum_v4(&src, &dst));
        }
    }

    // A field that starts as 0xffff and is never updated stays 0xffff too.
    let mut ip_fed_ffff = ipv4::Packet::new_unchecked(&buf[..]).checksum() == 0xffff;
    let mut l4_fed_ffff = l4_check(&seg, is_tcp) == 0xffff;
    let orig_l4_check;
    {
        let mut ip = ipv4::Packet::new_checked(&mut buf[..]).unwrap();
        if let Some(new) = rw.src {
            let old = ip.src_addr();
            ip_fed_ffff |= ip.checksum() == 0xffff;
            ip.set_src_addr_incremental(new);
            let p = ip.payload_mut();
            l4_fed_ffff |= l4_check(p, is_tcp) == 0xffff;
            l4_update(p, is_tcp, &old.octets(), &new.octets());
        }
        if let Some(new) = rw.dst {
            let old = ip.dst_addr();
            ip_fed_ffff |= ip.checksum() == 0xffff;
            ip.set_dst_addr_incremental(new);
            let p = ip.payload_mut();
            l4_fed_ffff |= l4_check(p, is_tcp) == 0xffff;
            l4_update(p, is_tcp, &old.octets(), &new.octets());
        }
        let p = ip.payload_mut();
        orig_l4_check = l4_check(&seg, is_tcp);
        if let Some(new) = rw.sport {
            let old = u16::from_be_bytes([p[0], p[1]]);
            l4_fed_ffff |= l4_check(p, is_tcp) == 0xffff;
            l4_update(p, is_tcp, &old.to_be_bytes(), &new.to_be_bytes());
            p[0..2].copy_from_slice(&new.to_be_bytes());
        }
        if let Some(new) = rw.dport {
            let old = u16::from_be_bytes([p[2], p[3]]);
            l4_fed_ffff |= l4_check(p, is_tcp) == 0xffff;
            l4_update(p, is_tcp, &old.to_be_bytes(), &new.to_be_bytes());
            p[2..4].copy_from_slice(&new.to_be_bytes());
        }
    }

    let ip = ipv4::Packet::new_checked(&buf[..]).unwrap();
    let (nsrc, ndst) = (ip.src_addr(), ip.dst_addr());
    prop_assert_eq!(nsrc, rw.src.unwrap_or(src));
    prop_assert_eq!(ndst, rw.dst.unwrap_or(dst));
    prop_assert!(ip.verify_checksum(), "IP header checksum after rewrite");
    let mut full = buf.clone();
    let mut fp = ipv4::Packet::new_checked(&mut full[..]).unwrap();
    fp.fill_checksum();
    check_ok(ip.checksum(), fp.checksum(), ip_fed_ffff, "IPv4 header")?;

    let inc = l4_check(ip.payload(), is_tcp);
    if is_tcp {
        let t = tcp::Packet::new_checked(ip.payload()).unwrap();
        prop_assert!(
            t.verify_checksum_v4(&nsrc, &ndst),
            "TCP checksum after rewrite"
        );
        let mut seg = ip.payload().to_vec();
        tcp::Packet::new_unchecked(&mut seg[..]).fill_checksum_v4(&nsrc, &ndst);
        check_ok(inc, l4_check(&seg, true), l4_fed_ffff, "TCP")?;
    } else {
        let u = udp::Packet::new_checked(ip.payload()).unwrap();
        prop_assert!(
            u.verify_checksum_v4(&nsrc, &ndst),
            "UDP checksum after rewrite"
        );
        if orig_l4_check == 0 {
            prop_assert_eq!(inc, 0, "an absent UDP checksum must stay absent");
        } else {
            let mut seg = ip.payload().to_vec();
            udp::Packet::new_unchecked(&mut seg[..]).fill_checksum_v4(&nsrc, &ndst);
            prop_assert_eq!(inc, l4_check(&seg, false), "UDP must match exactly");
        }
    }
    Ok(())
}

fn l4_check(seg: &[u8], is_tcp: bool) -> u16 {
    if is_tcp {
        tcp::Packet::new_unchecked(seg).checksum()
    } else {
        udp::Packet::new_unchecked(seg).checksum()
    }
}

fn l4_update(seg: &mut [u8], is_tcp: bool, old: &[u8], new: &[u8]) {
    if is_tcp {
        tcp::Packet::new_unchecked(seg).update_checksum(old, new);
    } else {
        udp::Packet::new_unchecked(seg).update_checksum(old, new);
    }
}

/// Builds an IPv6 packet, rewrites it incrementally and checks it.
#[allow(clippy::too_many_arguments)] // One argument per random input.
fn run_v6(
    is_tcp: bool,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    sport: u16,
    dport: u16,
    payload: &[u8],
    flags: u8,
    force: Force,
    rw: &Rewrite<Ipv6Addr>,
) -> Result<(), TestCaseError> {
    let proto = if is_tcp { ip_proto::TCP } else { ip_proto::UDP };
    let mut seg = l4_segment(is_tcp, sport, dport, payload, flags);
    force_l4(&mut seg, is_tcp, force, payload.len(), &|s: &mut [u8]| {
        if is_tcp {
            tcp::Packet::new_unchecked(s).fill_checksum_v6(&src, &dst);
        } else {
            udp::Packet::new_unchecked(s).fill_checksum_v6(&src, &dst);
        }
    });
    let mut buf = vec![0u8; ipv6::HEADER_LEN + seg.len()];
    ipv6::emit_header(
        &mut buf,
        &ipv6::HeaderFields {
            src,
            dst,
            next_header: proto,
            payload_len: seg.len() as u16,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0x12345,
        },
    )
    .unwrap();
    buf[ipv6::HEADER_LEN..].copy_from_slice(&seg);

    let mut fed_ffff = l4_check(&seg, is_tcp) == 0xffff;
    {
        let mut ip = ipv6::Packet::new_checked(&mut buf[..]).unwrap();
        if let Some(new) = rw.src {
            let old = ip.src_addr();
            ip.set_src_addr(new);
            let p = ip.payload_mut();
            fed_ffff |= l4_check(p, is_tcp) == 0xffff;
            l4_update(p, is_tcp, &old.octets(), &new.octets());
        }
        if let Some(new) = rw.dst {
            let old = ip.dst_addr();
            ip.set_dst_addr(new);
            let p = ip.payload_mut();
            fed_ffff |= l4_check(p, is_tcp) == 0xffff;
            l4_update(p, is_tcp, &old.octets(), &new.octets());
        }
        let p = ip.payload_mut();
        if let Some(new) = rw.sport {
            let old = u16::from_be_bytes([p[0], p[1]]);
            fed_ffff |= l4_check(p, is_tcp) == 0xffff;
            l4_update(p, is_tcp, &old.to_be_bytes(), &new.to_be_bytes());
            p[0..2].copy_from_slice(&new.to_be_bytes());
        }
        if let Some(new) = rw.dport {
            let old = u16::from_be_bytes([p[2], p[3]]);
            fed_ffff |= l4_check(p, is_tcp) == 0xffff;
            l4_update(p, is_tcp, &old.to_be_bytes(), &new.to_be_bytes());
            p[2..4].copy_from_slice(&new.to_be_bytes());
        }
    }

    let ip = ipv6::Packet::new_checked(&buf[..]).unwrap();
    let (nsrc, ndst) = (ip.src_addr(), ip.dst_addr());
    prop_assert_eq!(nsrc, rw.src.unwrap_or(src));
    prop_assert_eq!(ndst, rw.dst.unwrap_or(dst));
    let inc = l4_check(ip.payload(), is_tcp);
    let mut seg = ip.payload().to_vec();
    if is_tcp {
        let t = tcp::Packet::new_checked(ip.payload()).unwrap();
        prop_assert!(
            t.verify_checksum_v6(&nsrc, &ndst),
            "TCP/IPv6 checksum after rewrite"
        );
        tcp::Packet::new_unchecked(&mut seg[..]).fill_checksum_v6(&nsrc, &ndst);
        check_ok(inc, l4_check(&seg, true), fed_ffff, "TCP/IPv6")?;
    } else {
        let u = udp::Packet::new_checked(ip.payload()).unwrap();
        prop_assert!(
            u.verify_checksum_v6(&nsrc, &ndst),
            "UDP/IPv6 checksum after rewrite"
        );
        udp::Packet::new_unchecked(&mut seg[..]).fill_checksum_v6(&nsrc, &ndst);
        prop_assert_eq!(inc, l4_check(&seg, false), "UDP/IPv6 must match exactly");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn ipv4_tcp_rewrites(
        src in v4_addr(), dst in v4_addr(), sport in port(), dport in port(),
        payload in payload(), flags in any::<u8>(), force in force_strategy(false),
        ip_ffff in any::<bool>(), rw in rewrite(v4_addr()),
    ) {
        run_v4(true, src, dst, sport, dport, &payload, flags, force, ip_ffff, &rw)?;
    }

    #[test]
    fn ipv4_udp_rewrites(
        src in v4_addr(), dst in v4_addr(), sport in port(), dport in port(),
        payload in payload(), force in force_strategy(true),
        ip_ffff in any::<bool>(), rw in rewrite(v4_addr()),
    ) {
        run_v4(false, src, dst, sport, dport, &payload, 0, force, ip_ffff, &rw)?;
    }

    #[test]
    fn ipv6_tcp_rewrites(
        src in v6_addr(), dst in v6_addr(), sport in port(), dport in port(),
        payload in payload(), flags in any::<u8>(), force in force_strategy(false),
        rw in rewrite(v6_addr()),
    ) {
        run_v6(true, src, dst, sport, dport, &payload, flags, force, &rw)?;
    }

    #[test]
    fn ipv6_udp_rewrites(
        src in v6_addr(), dst in v6_addr(), sport in port(), dport in port(),
        payload in payload(), force in force_strategy(false),
        rw in rewrite(v6_addr()),
    ) {
        run_v6(false, src, dst, sport, dport, &payload, 0, force, &rw)?;
    }
}

/// The one case where eqn. 3 and a full computation disagree, forced: a TCP
/// checksum of 0xffff and a source address going from 255.255.255.255 to
/// 0.0.0.0 (all-0xffff words to all-0x0000 words).
#[test]
fn forced_eqn3_corner_gives_ffff_and_verifies() {
    let src = Ipv4Addr::BROADCAST;
    let dst = Ipv4Addr::new(10, 0, 0, 2);
    let mut seg = l4_segment(true, 1234, 80, b"hello", 0x18);
    force_l4(&mut seg, true, Force::Ffff, 5, &|s: &mut [u8]| {
        tcp::Packet::new_unchecked(s).fill_checksum_v4(&src, &dst);
    });
    let mut t = tcp::Packet::new_checked(&mut seg[..]).unwrap();
    assert_eq!(t.checksum(), 0xffff);
    assert!(t.verify_checksum_v4(&src, &dst));
    t.update_checksum(&src.octets(), &Ipv4Addr::UNSPECIFIED.octets());
    assert_eq!(t.checksum(), 0xffff, "eqn. 3 keeps -0 here");
    assert!(t.verify_checksum_v4(&Ipv4Addr::UNSPECIFIED, &dst));
    t.fill_checksum_v4(&Ipv4Addr::UNSPECIFIED, &dst);
    assert_eq!(t.checksum(), 0x0000, "a full computation writes +0");
}

/// Forced corners through the same path as the property tests, so they run
/// even if the random search never draws them.
#[test]
fn forced_corner_cases() {
    let a = Ipv4Addr::new(192, 0, 2, 1);
    let b = Ipv4Addr::new(198, 51, 100, 7);
    let rw = Rewrite {
        src: Some(Ipv4Addr::new(10, 1, 1, 1)),
        dst: Some(Ipv4Addr::UNSPECIFIED),
        sport: Some(0xffff),
        dport: Some(8080),
    };
    for is_tcp in [true, false] {
        for force in [Force::Natural, Force::Zero, Force::Ffff, Force::Absent] {
            if is_tcp && force == Force::Absent {
                continue;
            }
            for ip_ffff in [false, true] {
                for payload in [&b""[..], b"x", b"odd", b"even"] {
                    run_v4(is_tcp, a, b, 40000, 80, payload, 0x12, force, ip_ffff, &rw)
                        .unwrap_or_else(|e| {
                            panic!("tcp={is_tcp} {force:?} ip_ffff={ip_ffff} {payload:?}: {e}")
                        });
                }
            }
        }
    }
    let a6: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let b6: Ipv6Addr = "2001:db8::2".parse().unwrap();
    let rw6 = Rewrite {
        src: Some(Ipv6Addr::UNSPECIFIED),
        dst: Some("fd00::7".parse().unwrap()),
        sport: None,
        dport: Some(0),
    };
    for is_tcp in [true, false] {
        for force in [Force::Natural, Force::Zero, Force::Ffff] {
            for payload in [&b""[..], b"x", b"odd", b"even"] {
                run_v6(is_tcp, a6, b6, 40000, 443, payload, 0x02, force, &rw6)
                    .unwrap_or_else(|e| panic!("v6 tcp={is_tcp} {force:?} {payload:?}: {e}"));
            }
        }
    }
}

/// An absent IPv4 UDP checksum stays absent across every rewrite.
#[test]
fn udp_zero_checksum_stays_zero() {
    let mut seg = l4_segment(false, 5353, 53, b"query", 0);
    let mut u = udp::Packet::new_checked(&mut seg[..]).unwrap();
    assert_eq!(u.checksum(), 0);
    u.update_checksum(&[10, 0, 0, 1], &[172, 16, 0, 1]);
    u.update_checksum(&53u16.to_be_bytes(), &5300u16.to_be_bytes());
    assert_eq!(u.checksum(), 0);
}
