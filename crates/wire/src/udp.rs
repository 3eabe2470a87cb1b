//! UDP headers (RFC 768): ports for the connection table and the
//! port/checksum rewrites NAT needs.
//!
//! UDP over IPv4 may omit its checksum (field 0), and a computed 0 is sent
//! as 0xffff; the methods here keep both rules so rewritten datagrams stay
//! valid. Over IPv6 the checksum is mandatory (RFC 8200 §8.1).
//!
//! Once [`Packet::new_checked`] has returned `Ok`, no accessor of that packet
//! can panic: the length field is known to fit the buffer.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::bytes::{get_u16, set_u16};
use crate::{checksum, ip_proto, Error, Result};

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

mod field {
    pub(super) const SRC_PORT: usize = 0;
    pub(super) const DST_PORT: usize = 2;
    pub(super) const LENGTH: usize = 4;
    pub(super) const CHECKSUM: usize = 6;
}

/// A view of a UDP datagram in a caller-owned buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without validation; accessors may panic on short
    /// buffers. For datagrams this crate built itself.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len); untrusted
    /// datagrams must come through here.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks length >= 8 and 8 <= length field <= buffer length.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error);
        }
        let field_len = usize::from(self.len());
        if field_len < HEADER_LEN || field_len > len {
            return Err(Error);
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The source port.
    pub fn src_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// The destination port.
    pub fn dst_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The length field: header plus payload.
    pub fn len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// True when the datagram carries no payload.
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    /// The checksum field as stored; 0 means "none" over IPv4.
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The payload, bounded by the length field.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }

    /// Header and payload as bounded by the length field.
    fn datagram(&self) -> &[u8] {
        &self.buffer.as_ref()[..usize::from(self.len())]
    }

    fn sum_v4(&self, src: &Ipv4Addr, dst: &Ipv4Addr) -> u32 {
        let ph =
            checksum::pseudo_header_v4(&src.octets(), &dst.octets(), ip_proto::UDP, self.len());
        checksum::combine(ph, checksum::sum(self.datagram()))
    }

    fn sum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> u32 {
        let ph = checksum::pseudo_header_v6(
            &src.octets(),
            &dst.octets(),
            ip_proto::UDP,
            u32::from(self.len()),
        );
        checksum::combine(ph, checksum::sum(self.datagram()))
    }

    /// True when the checksum is correct or absent (0 means "none" over
    /// IPv4).
    pub fn verify_checksum_v4(&self, src: &Ipv4Addr, dst: &Ipv4Addr) -> bool {
        self.checksum() == 0 || checksum::fold(self.sum_v4(src, dst)) == 0xffff
    }

    /// True when the checksum is present and correct; IPv6 forbids 0.
    pub fn verify_checksum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        self.checksum() != 0 && checksum::fold(self.sum_v6(src, dst)) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source port without touching the checksum.
    pub fn set_src_port(&mut self, port: u16) {
        set_u16(self.buffer.as_mut(), field::SRC_PORT, port);
    }

    /// Sets the destination port without touching the checksum.
    pub fn set_dst_port(&mut self, port: u16) {
        set_u16(self.buffer.as_mut(), field::DST_PORT, port);
    }

    /// Sets the length field.
    pub fn set_len(&mut self, len: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// Stores `value` in the checksum field as is.
    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// The payload bounded by the length field.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    /// Like tcp's, but a zero checksum (IPv4 "no checksum") stays zero, and a
    /// result of 0x0000 is written as 0xFFFF.
    pub fn update_checksum(&mut self, old: &[u8], new: &[u8]) {
        let c = self.checksum();
        if c == 0 {
            return;
        }
        let c = match checksum::adjust(c, old, new) {
            0 => 0xffff,
            c => c,
        };
        self.set_checksum(c);
    }

    /// Computes the checksum in full over the IPv4 pseudo header and the
    /// datagram; a computed 0 is written as 0xffff so it is not read as
    /// "none".
    pub fn fill_checksum_v4(&mut self, src: &Ipv4Addr, dst: &Ipv4Addr) {
        self.set_checksum(0);
        let c = match checksum::finish(self.sum_v4(src, dst)) {
            0 => 0xffff,
            c => c,
        };
        self.set_checksum(c);
    }

    /// Computes the checksum in full over the IPv6 pseudo header and the
    /// datagram; a computed 0 is written as 0xffff.
    pub fn fill_checksum_v6(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let c = match checksum::finish(self.sum_v6(src, dst)) {
            0 => 0xffff,
            c => c,
        };
        self.set_checksum(c);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 53);

    /// A DNS query for "a.io" A IN, 10.0.0.1:51234 -> 10.0.0.53:53.
    const DNS: [u8; 30] = [
        0xc8, 0x22, 0x00, 0x35, 0x00, 0x1e, 0x9d, 0x23, // header
        0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // DNS header
        0x01, b'a', 0x02, b'i', b'o', 0x00, 0x00, 0x01, 0x00, 0x01, // question
    ];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&DNS[..]).unwrap();
        assert_eq!(p.src_port(), 51234);
        assert_eq!(p.dst_port(), 53);
        assert_eq!(p.len(), 30);
        assert!(!p.is_empty());
        assert_eq!(p.checksum(), 0x9d23);
        assert_eq!(p.payload(), &DNS[8..]);
        assert!(p.verify_checksum_v4(&SRC, &DST));
        assert!(!p.verify_checksum_v4(&DST, &DST));
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 30];
        buf[8..].copy_from_slice(&DNS[8..]);
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_src_port(51234);
        p.set_dst_port(53);
        p.set_len(30);
        p.fill_checksum_v4(&SRC, &DST);
        assert_eq!(buf, DNS);
    }

    #[test]
    fn padding_beyond_length_is_ignored() {
        let mut buf = [0u8; 34];
        buf[..30].copy_from_slice(&DNS);
        buf[30..].copy_from_slice(&[1, 2, 3, 4]);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.payload(), &DNS[8..]);
        assert!(p.verify_checksum_v4(&SRC, &DST));
    }

    #[test]
    fn truncated() {
        for len in 0..DNS.len() {
            assert_eq!(Packet::new_checked(&DNS[..len]), Err(Error), "len {len}");
        }
    }

    #[test]
    fn malformed_length() {
        for l in 0..8u8 {
            let mut b = DNS;
            b[5] = l;
            assert_eq!(Packet::new_checked(&b[..]), Err(Error), "length {l}");
        }
        let mut b = DNS;
        b[5] = 31;
        assert_eq!(Packet::new_checked(&b[..]), Err(Error));
        let mut b = DNS;
        b[5] = 8;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.is_empty());
        assert_eq!(p.payload(), &[] as &[u8]);
    }

    #[test]
    fn zero_checksum_means_none_over_v4() {
        let mut b = DNS;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_checksum(0);
        assert!(p.verify_checksum_v4(&SRC, &DST));
        p.update_checksum(&53u16.to_be_bytes(), &5353u16.to_be_bytes());
        assert_eq!(p.checksum(), 0, "no checksum stays no checksum");
        let src6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert!(!p.verify_checksum_v6(&src6, &src6), "v6 forbids 0");
    }

    /// A datagram whose checksum computes to 0 must carry 0xffff, and
    /// verify in both encodings of one's-complement zero.
    #[test]
    fn computed_zero_is_sent_as_ffff() {
        let mut b = DNS;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        // With the payload's first word zero the checksum is c; writing c
        // into that word makes the datagram sum to -0, so the computed
        // checksum becomes 0.
        p.payload_mut()[..2].copy_from_slice(&[0, 0]);
        p.fill_checksum_v4(&SRC, &DST);
        let c = p.checksum();
        p.payload_mut()[..2].copy_from_slice(&c.to_be_bytes());
        p.fill_checksum_v4(&SRC, &DST);
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum_v4(&SRC, &DST));
    }
}
