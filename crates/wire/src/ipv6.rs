//! IPv6 fixed headers (RFC 8200).
//!
//! Extension headers are not walked: [`Packet::next_header`] is returned as
//! stored, and a director that meets one it cannot handle passes the packet
//! to the slow path. IPv6 has no header checksum, so address rewrites only
//! touch the L4 checksum (through its pseudo header).
//!
//! Once [`Packet::new_checked`] has returned `Ok`, no accessor of that packet
//! can panic: the payload length is known to fit the buffer.

use std::net::Ipv6Addr;

use crate::bytes::{get_u16, get_u32, set_u16, set_u32};
use crate::{Error, Result};

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;

mod field {
    use core::ops::Range;

    /// Version (4 bits), traffic class (8), flow label (20).
    pub(super) const VER_TC_FLOW: usize = 0;
    pub(super) const LENGTH: usize = 4;
    pub(super) const NXT_HDR: usize = 6;
    pub(super) const HOP_LIMIT: usize = 7;
    pub(super) const SRC_ADDR: Range<usize> = 8..24;
    pub(super) const DST_ADDR: Range<usize> = 24..40;
}

/// A view of an IPv6 packet in a caller-owned buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without validation; accessors may panic on short
    /// buffers. For packets this crate built itself.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len); untrusted packets
    /// must come through here.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks length >= 40, version 6 and 40 + payload length <= buffer
    /// length (trailing padding is allowed and ignored).
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN
            || self.version() != 6
            || HEADER_LEN + usize::from(self.payload_len()) > len
        {
            return Err(Error);
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn first_word(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::VER_TC_FLOW)
    }

    /// The version nibble; 6 on any checked packet.
    pub fn version(&self) -> u8 {
        (self.first_word() >> 28) as u8
    }

    /// The traffic class (DSCP/ECN), which tunnels copy outward.
    pub fn traffic_class(&self) -> u8 {
        (self.first_word() >> 20) as u8
    }

    /// The 20-bit flow label, usable as a hash input for scheduling.
    pub fn flow_label(&self) -> u32 {
        self.first_word() & 0x000f_ffff
    }

    /// Length of everything after the fixed header, extension headers
    /// included.
    pub fn payload_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// The next header number as stored (see [`crate::ip_proto`]).
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NXT_HDR]
    }

    /// The hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// The source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC_ADDR]);
        Ipv6Addr::from(a)
    }

    /// The destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST_ADDR]);
        Ipv6Addr::from(a)
    }

    /// The fixed header.
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..HEADER_LEN]
    }

    /// The bytes after the fixed header, bounded by the payload length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }

    /// Header and payload without trailing padding.
    pub fn packet(&self) -> &[u8] {
        &self.buffer.as_ref()[..HEADER_LEN + usize::from(self.payload_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_first_word(&mut self, v: u32) {
        set_u32(self.buffer.as_mut(), field::VER_TC_FLOW, v);
    }

    /// Sets the version nibble.
    pub fn set_version(&mut self, version: u8) {
        let w = (self.first_word() & 0x0fff_ffff) | (u32::from(version & 0x0f) << 28);
        self.set_first_word(w);
    }

    /// Sets the traffic class.
    pub fn set_traffic_class(&mut self, tc: u8) {
        let w = (self.first_word() & 0xf00f_ffff) | (u32::from(tc) << 20);
        self.set_first_word(w);
    }

    /// Sets the flow label (the low 20 bits of `label`).
    pub fn set_flow_label(&mut self, label: u32) {
        let w = (self.first_word() & 0xfff0_0000) | (label & 0x000f_ffff);
        self.set_first_word(w);
    }

    /// Sets the payload length.
    pub fn set_payload_len(&mut self, len: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// Sets the next header number.
    pub fn set_next_header(&mut self, nh: u8) {
        self.buffer.as_mut()[field::NXT_HDR] = nh;
    }

    /// Sets the hop limit.
    pub fn set_hop_limit(&mut self, hl: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = hl;
    }

    /// Sets the source address; the L4 checksum is the caller's to update.
    pub fn set_src_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address; the L4 checksum is the caller's to
    /// update.
    pub fn set_dst_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// The payload bounded by the payload length, for rewriting in place.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The fields of a fixed IPv6 header the director builds itself (IPv6
/// tunnels, ICMPv6 errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderFields {
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// Next header number.
    pub next_header: u8,
    /// Payload length in bytes.
    pub payload_len: u16,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label (low 20 bits used).
    pub flow_label: u32,
}

/// Writes a complete 40-byte IPv6 header into `buf[..40]`; a shorter `buf`
/// gives `Err`.
pub fn emit_header(buf: &mut [u8], h: &HeaderFields) -> Result<()> {
    let hdr = buf.get_mut(..HEADER_LEN).ok_or(Error)?;
    let mut p = Packet::new_unchecked(hdr);
    p.set_first_word(0);
    p.set_version(6);
    p.set_traffic_class(h.traffic_class);
    p.set_flow_label(h.flow_label);
    p.set_payload_len(h.payload_len);
    p.set_next_header(h.next_header);
    p.set_hop_limit(h.hop_limit);
    p.set_src_addr(h.src);
    p.set_dst_addr(h.dst);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ip_proto;

    /// A captured TCP SYN header from 2001:db8::1 to 2001:db8::2 (payload
    /// length 40, traffic class 0x10, flow label 0x4d1a3); the TCP segment
    /// is zeroed here.
    fn syn() -> [u8; 80] {
        let mut b = [0u8; 80];
        b[..40].copy_from_slice(&[
            0x61, 0x04, 0xd1, 0xa3, 0x00, 0x28, 0x06, 0x40, // ver/tc/flow, len, nh, hl
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // src
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, // dst
        ]);
        b
    }

    #[test]
    fn deconstruct() {
        let b = syn();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0x10);
        assert_eq!(p.flow_label(), 0x4d1a3);
        assert_eq!(p.payload_len(), 40);
        assert_eq!(p.next_header(), ip_proto::TCP);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.dst_addr(), "2001:db8::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.payload().len(), 40);
        assert_eq!(p.header(), &b[..40]);
    }

    #[test]
    fn construct() {
        let expected = syn();
        let mut buf = [0xffu8; 80];
        buf[40..].fill(0);
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_version(6);
        p.set_traffic_class(0x10);
        p.set_flow_label(0x4d1a3);
        p.set_payload_len(40);
        p.set_next_header(ip_proto::TCP);
        p.set_hop_limit(64);
        p.set_src_addr("2001:db8::1".parse().unwrap());
        p.set_dst_addr("2001:db8::2".parse().unwrap());
        p.payload_mut().fill(0);
        assert_eq!(buf, expected);

        let mut emitted = [0xaau8; 40];
        emit_header(
            &mut emitted,
            &HeaderFields {
                src: "2001:db8::1".parse().unwrap(),
                dst: "2001:db8::2".parse().unwrap(),
                next_header: ip_proto::TCP,
                payload_len: 40,
                hop_limit: 64,
                traffic_class: 0x10,
                flow_label: 0x4d1a3,
            },
        )
        .unwrap();
        assert_eq!(emitted[..], expected[..40]);
        assert_eq!(
            emit_header(
                &mut emitted[..39],
                &HeaderFields {
                    src: Ipv6Addr::UNSPECIFIED,
                    dst: Ipv6Addr::UNSPECIFIED,
                    next_header: 0,
                    payload_len: 0,
                    hop_limit: 0,
                    traffic_class: 0,
                    flow_label: 0,
                }
            ),
            Err(Error)
        );
    }

    #[test]
    fn truncated() {
        let b = syn();
        for len in 0..80 {
            assert_eq!(Packet::new_checked(&b[..len]), Err(Error), "len {len}");
        }
        assert!(Packet::new_checked(&b[..]).is_ok());
    }

    #[test]
    fn malformed() {
        let mut b = syn();
        b[0] = 0x41;
        assert_eq!(Packet::new_checked(&b[..]), Err(Error));
        let mut b = syn();
        b[5] = 41;
        assert_eq!(Packet::new_checked(&b[..]), Err(Error));
    }

    #[test]
    fn padding_is_ignored() {
        let mut b = [0u8; 90];
        b[..80].copy_from_slice(&syn());
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.payload().len(), 40);
        assert_eq!(p.packet().len(), 80);
    }
}
