//! Validation of received tunnel packets: IPIP, GUE and GRE.
//!
//! Pure functions over byte slices, no I/O: the receive loop hands in what the
//! raw socket delivered (outer IPv4 header included, as Linux raw IPv4 sockets
//! do) and gets back either the inner packet to inject or the reason to drop
//! it. Headers are read through rvs-wire's checked views, so no input can
//! panic.

use std::net::{Ipv4Addr, Ipv6Addr};

use rvs_wire::ethernet::ethertype;
use rvs_wire::ipv4::Packet;
use rvs_wire::{gre, gue, ip_proto, ipv6};

/// Why a received packet was not injected; each reason has its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drop {
    /// Outer header too short, wrong version/IHL/length/checksum, not IPIP,
    /// or a fragment.
    OuterMalformed,
    /// Inner packet too short, not IPv4, bad IHL/length/checksum.
    InnerMalformed,
    /// Inner destination is not one of the configured VIPs.
    NotVip,
}

/// An IPv4 packet at the start of `buf` whose version, IHL, total length
/// and header checksum are consistent with `buf` (rvs-wire's checked view:
/// no accessor of it can panic).
fn checked(buf: &[u8]) -> Option<Packet<&[u8]>> {
    Packet::new_checked(buf)
        .ok()
        .filter(|p| p.verify_checksum())
}

/// Returns the inner IPv4 packet of an IPIP datagram if both headers are
/// well formed and the inner destination is one of `vips`.
pub(crate) fn decapsulate<'a>(pkt: &'a [u8], vips: &[Ipv4Addr]) -> Result<&'a [u8], Drop> {
    inner_v4(outer_payload(pkt, ip_proto::IPIP)?, vips)
}

/// The payload of a raw IPv4 socket's packet (outer header included) of
/// protocol `proto`, its outer header checked.
fn outer_payload(pkt: &[u8], proto: u8) -> Result<&[u8], Drop> {
    let outer = checked(pkt).ok_or(Drop::OuterMalformed)?;
    // More-fragments flag or a non-zero offset: the kernel reassembles before
    // raw delivery, so a fragment here is malformed input.
    if outer.protocol() != proto || outer.is_fragment() {
        return Err(Drop::OuterMalformed);
    }
    // The payload with the buffer's lifetime: header length and total
    // length were checked against `pkt`.
    Ok(&pkt[outer.header_len()..usize::from(outer.total_len())])
}

/// The inner IPv4 packet at the start of `payload`, checked, to a VIP.
fn inner_v4<'a>(payload: &'a [u8], vips: &[Ipv4Addr]) -> Result<&'a [u8], Drop> {
    let inner = checked(payload).ok_or(Drop::InnerMalformed)?;
    if !vips.contains(&inner.dst_addr()) {
        return Err(Drop::NotVip);
    }
    Ok(&payload[..usize::from(inner.total_len())])
}

/// Returns the inner packet of a GUE datagram (the UDP payload a UDP
/// socket on the GUE port delivers, the kernel having checked UDP): IPv4
/// to one of `vips4` or IPv6 to one of `vips6`, as the GUE header's
/// protocol says. A GUE header that is not version 0 or 1 data carrying
/// IPv4 or IPv6 counts as outer malformed.
pub(crate) fn decapsulate_gue<'a>(
    payload: &'a [u8],
    vips4: &[Ipv4Addr],
    vips6: &[Ipv6Addr],
) -> Result<&'a [u8], Drop> {
    let (proto, start) = gue::inner(payload).map_err(|_| Drop::OuterMalformed)?;
    let inner = &payload[start..];
    if proto == ip_proto::IPV6 {
        decapsulate_v6(inner, vips6)
    } else {
        inner_v4(inner, vips4)
    }
}

/// Returns the inner IPv4 packet of a GRE-in-IPv4 packet as a raw IPv4
/// socket for protocol 47 delivers it (outer header included).
pub(crate) fn decapsulate_gre<'a>(pkt: &'a [u8], vips: &[Ipv4Addr]) -> Result<&'a [u8], Drop> {
    let payload = outer_payload(pkt, ip_proto::GRE)?;
    match gre::inner(payload) {
        Ok((ethertype::IPV4, start)) => inner_v4(&payload[start..], vips),
        _ => Err(Drop::OuterMalformed),
    }
}

/// Returns the inner IPv6 packet of a GRE-in-IPv6 packet; a raw IPv6
/// socket delivers the GRE header and what follows.
pub(crate) fn decapsulate_gre_v6<'a>(
    payload: &'a [u8],
    vips: &[Ipv6Addr],
) -> Result<&'a [u8], Drop> {
    match gre::inner(payload) {
        Ok((ethertype::IPV6, start)) => decapsulate_v6(&payload[start..], vips),
        _ => Err(Drop::OuterMalformed),
    }
}

/// Returns the inner IPv6 packet of an IPv6-in-IPv6 (RFC 2473) datagram.
/// A raw IPv6 socket delivers the payload without the outer header (the
/// kernel checked that header), so `payload` is the inner packet: its
/// version and payload length must be consistent and its destination one
/// of `vips`.
pub(crate) fn decapsulate_v6<'a>(payload: &'a [u8], vips: &[Ipv6Addr]) -> Result<&'a [u8], Drop> {
    let inner = ipv6::Packet::new_checked(payload).map_err(|_| Drop::InnerMalformed)?;
    if inner.version() != 6 {
        return Err(Drop::InnerMalformed);
    }
    if !vips.contains(&inner.dst_addr()) {
        return Err(Drop::NotVip);
    }
    Ok(&payload[..ipv6::HEADER_LEN + usize::from(inner.payload_len())])
}

#[cfg(test)]
mod tests {
    use super::*;

    use rvs_wire::ipv4::{self, HeaderFields};

    /// Writes a valid IPv4 header checksum into `hdr`.
    fn fill_checksum(hdr: &mut [u8]) {
        Packet::new_unchecked(hdr).fill_checksum();
    }

    fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0; ipv4::HEADER_LEN];
        ipv4::emit_header(
            &mut p,
            &HeaderFields {
                src: src.into(),
                dst: dst.into(),
                protocol: proto,
                payload_len: payload.len() as u16,
                ttl: 64,
                tos: 0,
                ident: 1,
                dont_frag: true,
            },
        )
        .unwrap();
        p.extend_from_slice(payload);
        p
    }

    const VIP: [u8; 4] = [10, 0, 100, 1];

    fn good() -> (Vec<u8>, Vec<u8>) {
        let inner = ipv4(
            [10, 0, 1, 2],
            VIP,
            17,
            &[0x9c, 0x40, 0, 7, 0, 12, 0, 0, b'h', b'i', b'!', b'\n'],
        );
        let outer = ipv4([10, 0, 2, 10], [10, 0, 2, 11], ip_proto::IPIP, &inner);
        (outer, inner)
    }

    fn vips() -> Vec<Ipv4Addr> {
        vec![Ipv4Addr::from(VIP)]
    }

    #[test]
    fn forwards_inner_packet_to_vip() {
        let (outer, inner) = good();
        assert_eq!(decapsulate(&outer, &vips()), Ok(&inner[..]));
    }

    #[test]
    fn trailing_bytes_after_outer_total_length_are_ignored() {
        let (mut outer, inner) = good();
        outer.extend_from_slice(&[0xee; 6]);
        assert_eq!(decapsulate(&outer, &vips()), Ok(&inner[..]));
    }

    #[test]
    fn inner_to_other_address_is_not_vip() {
        let inner = ipv4([10, 0, 1, 2], [10, 0, 100, 2], 17, &[0; 8]);
        let outer = ipv4([10, 0, 2, 10], [10, 0, 2, 11], ip_proto::IPIP, &inner);
        assert_eq!(decapsulate(&outer, &vips()), Err(Drop::NotVip));
    }

    #[test]
    fn every_truncation_is_rejected_without_panic() {
        let (outer, _) = good();
        for len in 0..outer.len() {
            let r = decapsulate(&outer[..len], &vips());
            assert!(r.is_err(), "truncated to {len} accepted");
        }
    }

    #[test]
    fn outer_checksum_error_is_outer_malformed() {
        let (mut outer, _) = good();
        outer[8] ^= 1; // TTL changed, checksum not updated
        assert_eq!(decapsulate(&outer, &vips()), Err(Drop::OuterMalformed));
    }

    #[test]
    fn inner_checksum_error_is_inner_malformed() {
        let (mut outer, _) = good();
        outer[20 + 8] ^= 1;
        assert_eq!(decapsulate(&outer, &vips()), Err(Drop::InnerMalformed));
    }

    #[test]
    fn inner_not_ipv4_is_inner_malformed() {
        let (mut outer, _) = good();
        outer[20] = 0x65;
        assert_eq!(decapsulate(&outer, &vips()), Err(Drop::InnerMalformed));
    }

    #[test]
    fn wrong_outer_protocol_or_fragment_is_outer_malformed() {
        let (outer, _) = good();
        let mut p = outer.clone();
        p[9] = 17;
        fill_checksum(&mut p[..20]);
        assert_eq!(decapsulate(&p, &vips()), Err(Drop::OuterMalformed));
        let mut p = outer;
        p[6] = 0x20; // MF
        fill_checksum(&mut p[..20]);
        assert_eq!(decapsulate(&p, &vips()), Err(Drop::OuterMalformed));
    }

    #[test]
    fn inner_total_length_beyond_outer_payload_is_inner_malformed() {
        let (mut outer, _) = good();
        outer[20 + 3] += 4;
        fill_checksum(&mut outer[20..40]);
        assert_eq!(decapsulate(&outer, &vips()), Err(Drop::InnerMalformed));
    }

    fn ipv6_packet(dst: Ipv6Addr, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        ipv6::emit_header(
            &mut p,
            &ipv6::HeaderFields {
                src: "fd00:1::2".parse().unwrap(),
                dst,
                next_header: 17,
                payload_len: payload.len() as u16,
                hop_limit: 64,
                traffic_class: 0,
                flow_label: 0,
            },
        )
        .unwrap();
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn ipv6_inner_packet_to_a_vip_is_forwarded_and_checked() {
        let vip: Ipv6Addr = "fd00:100::1".parse().unwrap();
        let inner = ipv6_packet(
            vip,
            &[0x9c, 0x40, 0, 7, 0, 12, 0, 0, b'h', b'i', b'!', b'\n'],
        );
        let mut padded = inner.clone();
        padded.extend_from_slice(&[0xee; 4]);
        assert_eq!(decapsulate_v6(&padded, &[vip]), Ok(&inner[..]));
        let other = ipv6_packet("fd00:100::2".parse().unwrap(), &[0; 8]);
        assert_eq!(decapsulate_v6(&other, &[vip]), Err(Drop::NotVip));
        for len in 0..inner.len() {
            assert!(
                decapsulate_v6(&inner[..len], &[vip]).is_err(),
                "truncated to {len} accepted"
            );
        }
        let mut v4 = inner.clone();
        v4[0] = 0x45;
        assert_eq!(decapsulate_v6(&v4, &[vip]), Err(Drop::InnerMalformed));
    }

    #[test]
    fn gue_carries_either_family_to_its_vips() {
        let (_, inner) = good();
        let mut gue_v0 = vec![0, ip_proto::IPIP, 0, 0];
        gue_v0.extend_from_slice(&inner);
        assert_eq!(decapsulate_gue(&gue_v0, &vips(), &[]), Ok(&inner[..]));
        // Version 1: the inner packet directly.
        assert_eq!(decapsulate_gue(&inner, &vips(), &[]), Ok(&inner[..]));
        let vip6: Ipv6Addr = "fd00:100::1".parse().unwrap();
        let inner6 = ipv6_packet(vip6, b"hi");
        let mut gue6 = vec![0, ip_proto::IPV6, 0, 0];
        gue6.extend_from_slice(&inner6);
        assert_eq!(decapsulate_gue(&gue6, &vips(), &[vip6]), Ok(&inner6[..]));
        assert_eq!(decapsulate_gue(&gue6, &vips(), &[]), Err(Drop::NotVip));
        // A control message, and IPv6 announced but IPv4 inside.
        let mut control = gue_v0.clone();
        control[0] = 0x20;
        assert_eq!(
            decapsulate_gue(&control, &vips(), &[]),
            Err(Drop::OuterMalformed)
        );
        let mut lying = gue_v0.clone();
        lying[1] = ip_proto::IPV6;
        assert_eq!(
            decapsulate_gue(&lying, &vips(), &[vip6]),
            Err(Drop::InnerMalformed)
        );
        for len in 0..gue_v0.len() {
            assert!(decapsulate_gue(&gue_v0[..len], &vips(), &[vip6]).is_err());
        }
    }

    #[test]
    fn gre_with_and_without_checksum_in_both_families() {
        let (_, inner) = good();
        for with_checksum in [false, true] {
            let mut g = vec![0; gre::header_len(with_checksum)];
            gre::emit(&mut g, ethertype::IPV4, with_checksum).unwrap();
            g.extend_from_slice(&inner);
            if with_checksum {
                gre::fill_checksum(&mut g).unwrap();
            }
            let outer = ipv4([10, 0, 2, 10], [10, 0, 2, 11], ip_proto::GRE, &g);
            assert_eq!(decapsulate_gre(&outer, &vips()), Ok(&inner[..]));
            if with_checksum {
                let mut bad = outer.clone();
                let last = bad.len() - 1;
                bad[last] ^= 1;
                assert_eq!(decapsulate_gre(&bad, &vips()), Err(Drop::OuterMalformed));
            }
            // An IPIP packet is not GRE.
            let ipip = ipv4([10, 0, 2, 10], [10, 0, 2, 11], ip_proto::IPIP, &g);
            assert_eq!(decapsulate_gre(&ipip, &vips()), Err(Drop::OuterMalformed));
        }
        let vip6: Ipv6Addr = "fd00:100::1".parse().unwrap();
        let inner6 = ipv6_packet(vip6, b"hi");
        let mut g6 = vec![0; 4];
        gre::emit(&mut g6, ethertype::IPV6, false).unwrap();
        g6.extend_from_slice(&inner6);
        assert_eq!(decapsulate_gre_v6(&g6, &[vip6]), Ok(&inner6[..]));
        let mut g4 = vec![0; 4];
        gre::emit(&mut g4, ethertype::IPV4, false).unwrap();
        g4.extend_from_slice(&inner);
        assert_eq!(decapsulate_gre_v6(&g4, &[vip6]), Err(Drop::OuterMalformed));
    }
}
