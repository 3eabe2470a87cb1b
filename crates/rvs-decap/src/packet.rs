//! Validation of received IPIP packets.
//!
//! Pure functions over byte slices, no I/O: the receive loop hands in what the
//! raw socket delivered (outer IPv4 header included, as Linux raw IPv4 sockets
//! do) and gets back either the inner packet to inject or the reason to drop
//! it. Every index is checked before use, so no input can panic.

use std::net::Ipv4Addr;

/// IP protocol number of IPv4-in-IPv4 encapsulation (RFC 2003).
pub(crate) const IPPROTO_IPIP: u8 = 4;

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

/// The IPv4 header checksum is valid when the one's-complement sum over the
/// header (checksum field included) folds to 0xffff.
fn header_checksum_ok(hdr: &[u8]) -> bool {
    let mut sum: u32 = 0;
    for pair in hdr.chunks(2) {
        let hi = u32::from(pair[0]);
        let lo = pair.get(1).map_or(0, |b| u32::from(*b));
        sum += (hi << 8) | lo;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum == 0xffff
}

/// Checks an IPv4 header at the start of `buf` and returns
/// `(header_len, total_len)` if version, IHL, total length and checksum are
/// consistent with `buf`.
fn check_ipv4(buf: &[u8]) -> Option<(usize, usize)> {
    let first = *buf.first()?;
    if first >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(first & 0x0f) * 4;
    if ihl < 20 || buf.len() < ihl {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    if total < ihl || total > buf.len() {
        return None;
    }
    if !header_checksum_ok(&buf[..ihl]) {
        return None;
    }
    Some((ihl, total))
}

/// Returns the inner IPv4 packet of an IPIP datagram if both headers are
/// well formed and the inner destination is one of `vips`.
pub(crate) fn decapsulate<'a>(pkt: &'a [u8], vips: &[Ipv4Addr]) -> Result<&'a [u8], Drop> {
    let (ihl, total) = check_ipv4(pkt).ok_or(Drop::OuterMalformed)?;
    if pkt[9] != IPPROTO_IPIP {
        return Err(Drop::OuterMalformed);
    }
    // More-fragments flag or a non-zero offset: the kernel reassembles before
    // raw delivery, so a fragment here is malformed input.
    let frag = u16::from_be_bytes([pkt[6], pkt[7]]);
    if frag & 0x3fff != 0 {
        return Err(Drop::OuterMalformed);
    }
    let payload = &pkt[ihl..total];
    let (_, inner_total) = check_ipv4(payload).ok_or(Drop::InnerMalformed)?;
    let dst = Ipv4Addr::new(payload[16], payload[17], payload[18], payload[19]);
    if !vips.contains(&dst) {
        return Err(Drop::NotVip);
    }
    Ok(&payload[..inner_total])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes a valid IPv4 header checksum into `hdr`.
    pub(crate) fn fill_checksum(hdr: &mut [u8]) {
        hdr[10] = 0;
        hdr[11] = 0;
        let mut sum: u32 = 0;
        for pair in hdr.chunks(2) {
            sum += (u32::from(pair[0]) << 8) | u32::from(pair[1]);
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        let c = !(sum as u16);
        hdr[10..12].copy_from_slice(&c.to_be_bytes());
    }

    fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
        let total = (20 + payload.len()) as u16;
        let mut p = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, proto, 0, 0];
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        fill_checksum(&mut p[..20]);
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
        let outer = ipv4([10, 0, 2, 10], [10, 0, 2, 11], IPPROTO_IPIP, &inner);
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
        let outer = ipv4([10, 0, 2, 10], [10, 0, 2, 11], IPPROTO_IPIP, &inner);
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
}
