//! Validation of received IPIP packets.
//!
//! Pure functions over byte slices, no I/O: the receive loop hands in what the
//! raw socket delivered (outer IPv4 header included, as Linux raw IPv4 sockets
//! do) and gets back either the inner packet to inject or the reason to drop
//! it. Headers are read through rvs-wire's checked views, so no input can
//! panic.

use std::net::{Ipv4Addr, Ipv6Addr};

use rvs_wire::ip_proto;
use rvs_wire::ipv4::Packet;
use rvs_wire::ipv6;

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
    let outer = checked(pkt).ok_or(Drop::OuterMalformed)?;
    // More-fragments flag or a non-zero offset: the kernel reassembles before
    // raw delivery, so a fragment here is malformed input.
    if outer.protocol() != ip_proto::IPIP || outer.is_fragment() {
        return Err(Drop::OuterMalformed);
    }
    // The payload with the buffer's lifetime: header length and total
    // length were checked against `pkt`.
    let payload = &pkt[outer.header_len()..usize::from(outer.total_len())];
    let inner = checked(payload).ok_or(Drop::InnerMalformed)?;
    if !vips.contains(&inner.dst_addr()) {
        return Err(Drop::NotVip);
    }
    Ok(&payload[..usize::from(inner.total_len())])
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
}
