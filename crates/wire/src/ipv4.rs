//! IPv4 headers (RFC 791): parsing, in-place rewriting with incremental
//! checksum updates, and emitting the option-less headers the director builds
//! (IP-in-IP outer headers, ICMP errors).
//!
//! Once [`Packet::new_checked`] has returned `Ok`, no accessor of that packet
//! can panic: the header length and total length are known to fit the buffer.

use std::net::Ipv4Addr;

use crate::bytes::{get_u16, set_u16};
use crate::checksum;
use crate::{Error, Result};

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;

mod field {
    use core::ops::Range;

    pub(super) const VER_IHL: usize = 0;
    pub(super) const TOS: usize = 1;
    pub(super) const LENGTH: usize = 2;
    pub(super) const IDENT: usize = 4;
    pub(super) const FLG_OFF: usize = 6;
    pub(super) const TTL: usize = 8;
    pub(super) const PROTOCOL: usize = 9;
    pub(super) const CHECKSUM: usize = 10;
    pub(super) const SRC_ADDR: Range<usize> = 12..16;
    pub(super) const DST_ADDR: Range<usize> = 16..20;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet in a caller-owned buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without validation; accessors may panic on short or
    /// inconsistent buffers. For packets this crate built itself.
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

    /// Checks version 4, IHL >= 5, header length <= total length <= buffer
    /// length. Bytes past the total length (Ethernet padding) are allowed
    /// and ignored by [`payload`](Self::payload).
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || self.version() != 4 {
            return Err(Error);
        }
        let header_len = self.header_len();
        let total_len = usize::from(self.total_len());
        if header_len < HEADER_LEN || header_len > total_len || total_len > len {
            return Err(Error);
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The version nibble; 4 on any checked packet.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL × 4), options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The DSCP/ECN byte, which tunnels copy to the outer header.
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }

    /// Total length of header and payload in bytes.
    pub fn total_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// The identification field, which groups fragments.
    pub fn ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::IDENT)
    }

    /// The don't-fragment flag, which decides between fragmenting and
    /// sending ICMP "fragmentation needed" when a tunnel grows the packet.
    pub fn dont_frag(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_DF != 0
    }

    /// The more-fragments flag.
    pub fn more_frags(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field × 8).
    pub fn frag_offset(&self) -> u16 {
        (get_u16(self.buffer.as_ref(), field::FLG_OFF) & OFFSET_MASK) << 3
    }

    /// True for any fragment, first or later; only the first carries ports.
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// The payload's protocol number, see [`crate::ip_proto`].
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// The header checksum field as stored.
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        let d = &self.buffer.as_ref()[field::SRC_ADDR];
        Ipv4Addr::new(d[0], d[1], d[2], d[3])
    }

    /// The destination address (the VIP for client traffic).
    pub fn dst_addr(&self) -> Ipv4Addr {
        let d = &self.buffer.as_ref()[field::DST_ADDR];
        Ipv4Addr::new(d[0], d[1], d[2], d[3])
    }

    /// The option bytes between the fixed header and the payload.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// The whole header, options included; IP-in-IP and ICMP errors quote it.
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }

    /// The payload, bounded by the total length so that Ethernet padding is
    /// never mistaken for data.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }

    /// The header and payload up to the total length, without padding.
    pub fn packet(&self) -> &[u8] {
        &self.buffer.as_ref()[..usize::from(self.total_len())]
    }

    /// True when the header checksum is correct.
    pub fn verify_checksum(&self) -> bool {
        checksum::compute(self.header()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the version nibble, keeping the IHL.
    pub fn set_version(&mut self, version: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (version << 4);
    }

    /// Sets the header length in bytes (a multiple of 4, at most 60),
    /// keeping the version.
    pub fn set_header_len(&mut self, len: usize) {
        let ihl = ((len / 4) & 0x0f) as u8;
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ihl;
    }

    /// Sets the source address without touching the checksum.
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address without touching the checksum.
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// Sets the TTL without touching the checksum.
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    /// Sets the protocol without touching the checksum.
    pub fn set_protocol(&mut self, protocol: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol;
    }

    /// Sets the DSCP/ECN byte without touching the checksum.
    pub fn set_tos(&mut self, tos: u8) {
        self.buffer.as_mut()[field::TOS] = tos;
    }

    /// Sets the total length without touching the checksum.
    pub fn set_total_len(&mut self, len: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// Sets the identification without touching the checksum.
    pub fn set_ident(&mut self, ident: u16) {
        set_u16(self.buffer.as_mut(), field::IDENT, ident);
    }

    /// Sets or clears DF, keeping MF and the offset.
    pub fn set_dont_frag(&mut self, df: bool) {
        let v = get_u16(self.buffer.as_ref(), field::FLG_OFF);
        let v = if df { v | FLAG_DF } else { v & !FLAG_DF };
        set_u16(self.buffer.as_mut(), field::FLG_OFF, v);
    }

    /// Sets or clears MF, keeping DF and the offset.
    pub fn set_more_frags(&mut self, mf: bool) {
        let v = get_u16(self.buffer.as_ref(), field::FLG_OFF);
        let v = if mf { v | FLAG_MF } else { v & !FLAG_MF };
        set_u16(self.buffer.as_mut(), field::FLG_OFF, v);
    }

    /// Sets the fragment offset in bytes (rounded down to a multiple of 8).
    pub fn set_frag_offset(&mut self, offset: u16) {
        let v = get_u16(self.buffer.as_ref(), field::FLG_OFF);
        let v = (v & !OFFSET_MASK) | ((offset >> 3) & OFFSET_MASK);
        set_u16(self.buffer.as_mut(), field::FLG_OFF, v);
    }

    /// Stores `value` in the checksum field as is.
    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Recomputes the header checksum in full, for headers built from scratch.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::compute(self.header());
        self.set_checksum(c);
    }

    /// The payload up to the total length, for rewriting L4 headers in place.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        &mut self.buffer.as_mut()[range]
    }

    /// Changes the source address and updates the header checksum
    /// incrementally (RFC 1624). The L4 checksum, which covers the address
    /// through the pseudo header, is the caller's to update.
    pub fn set_src_addr_incremental(&mut self, addr: Ipv4Addr) {
        let mut old = [0u8; 4];
        old.copy_from_slice(&self.buffer.as_ref()[field::SRC_ADDR]);
        let c = checksum::adjust(self.checksum(), &old, &addr.octets());
        self.set_src_addr(addr);
        self.set_checksum(c);
    }

    /// Changes the destination address and updates the header checksum
    /// incrementally (RFC 1624); see
    /// [`set_src_addr_incremental`](Self::set_src_addr_incremental).
    pub fn set_dst_addr_incremental(&mut self, addr: Ipv4Addr) {
        let mut old = [0u8; 4];
        old.copy_from_slice(&self.buffer.as_ref()[field::DST_ADDR]);
        let c = checksum::adjust(self.checksum(), &old, &addr.octets());
        self.set_dst_addr(addr);
        self.set_checksum(c);
    }

    /// Decrements the TTL by one and updates the checksum incrementally, as
    /// a router must when forwarding. Returns the new TTL; a TTL already 0 is
    /// left alone (the caller should have dropped the packet).
    pub fn decrement_ttl_incremental(&mut self) -> u8 {
        let ttl = self.ttl();
        if ttl == 0 {
            return 0;
        }
        let old = get_u16(self.buffer.as_ref(), field::TTL);
        let new = old - 0x0100;
        let c = checksum::adjust_u16(self.checksum(), old, new);
        self.set_ttl(ttl - 1);
        self.set_checksum(c);
        ttl - 1
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The fields of an option-less IPv4 header the director builds itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderFields {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Payload protocol, see [`crate::ip_proto`].
    pub protocol: u8,
    /// Payload length in bytes; the total length is this plus 20.
    pub payload_len: u16,
    /// Time to live.
    pub ttl: u8,
    /// DSCP/ECN byte.
    pub tos: u8,
    /// Identification.
    pub ident: u16,
    /// Don't-fragment flag.
    pub dont_frag: bool,
}

/// Writes a complete 20-byte option-less IPv4 header (checksum filled) into
/// `buf[..20]`; a `buf` shorter than 20, or a payload too long for the 16-bit
/// total length, gives `Err`.
pub fn emit_header(buf: &mut [u8], h: &HeaderFields) -> Result<()> {
    let hdr = buf.get_mut(..HEADER_LEN).ok_or(Error)?;
    let total = h.payload_len.checked_add(HEADER_LEN as u16).ok_or(Error)?;
    hdr.fill(0);
    let mut p = Packet::new_unchecked(hdr);
    p.set_version(4);
    p.set_header_len(HEADER_LEN);
    p.set_tos(h.tos);
    p.set_total_len(total);
    p.set_ident(h.ident);
    p.set_dont_frag(h.dont_frag);
    p.set_ttl(h.ttl);
    p.set_protocol(h.protocol);
    p.set_src_addr(h.src);
    p.set_dst_addr(h.dst);
    p.fill_checksum();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ip_proto;

    /// A captured UDP/IPv4 packet: 192.168.0.1 -> 192.168.0.199, total
    /// length 0x73 (header only here, payload trimmed), checksum 0xb861.
    const HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    /// A captured ICMP echo request from `ping -c1 -s 4 10.0.0.2`, with two
    /// bytes of Ethernet padding appended after the 32-byte datagram.
    const PING: [u8; 34] = [
        0x45, 0x00, 0x00, 0x20, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x01, 0x0a, 0x95, 0x0a, 0x00, 0x00,
        0x01, 0x0a, 0x00, 0x00, 0x02, // IP header
        0x08, 0x00, 0x5a, 0x60, 0x00, 0x01, 0x00, 0x01, // ICMP echo, id 1 seq 1
        0xde, 0xad, 0xbe, 0xef, // data
        0x00, 0x00, // padding
    ];

    #[test]
    fn deconstruct() {
        let mut buf = [0u8; 0x73];
        buf[..20].copy_from_slice(&HEADER);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.tos(), 0);
        assert_eq!(p.total_len(), 0x73);
        assert_eq!(p.ident(), 0);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), ip_proto::UDP);
        assert_eq!(p.checksum(), 0xb861);
        assert_eq!(p.src_addr(), Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(192, 168, 0, 199));
        assert_eq!(p.options(), &[] as &[u8]);
        assert_eq!(p.header(), &HEADER);
        assert_eq!(p.payload().len(), 0x73 - 20);
        assert!(p.verify_checksum());
    }

    #[test]
    fn deconstruct_ping_ignores_padding() {
        let p = Packet::new_checked(&PING[..]).unwrap();
        assert_eq!(p.total_len(), 32);
        assert_eq!(p.ident(), 0x1c46);
        assert_eq!(p.protocol(), ip_proto::ICMP);
        assert_eq!(p.src_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(10, 0, 0, 2));
        assert!(p.verify_checksum());
        assert_eq!(p.payload(), &PING[20..32]);
        assert_eq!(p.packet(), &PING[..32]);
        let icmp = crate::icmpv4::Packet::new_checked(p.payload()).unwrap();
        assert!(icmp.verify_checksum());
    }

    #[test]
    fn deconstruct_options_and_fragment() {
        // IHL 6 with a 4-byte Router Alert option; MF set, offset 185*8.
        let mut bytes = [
            0x46, 0xb8, 0x00, 0x1c, 0x12, 0x34, 0x20, 0xb9, 0x01, 0x06, 0x00, 0x00, 0x0a, 0x00,
            0x00, 0x01, 0x0a, 0x00, 0x00, 0x02, 0x94, 0x04, 0x00, 0x00, 0xaa, 0xbb, 0xcc, 0xdd,
        ];
        let mut p = Packet::new_checked(&mut bytes[..]).unwrap();
        p.fill_checksum();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.tos(), 0xb8);
        assert_eq!(p.options(), &[0x94, 0x04, 0x00, 0x00]);
        assert!(!p.dont_frag());
        assert!(p.more_frags());
        assert_eq!(p.frag_offset(), 185 * 8);
        assert!(p.is_fragment());
        assert_eq!(p.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
        assert!(p.verify_checksum());
        // A last fragment: MF clear, offset non-zero.
        p.set_more_frags(false);
        assert!(p.is_fragment());
        p.set_frag_offset(0);
        assert!(!p.is_fragment());
        assert_eq!(&bytes[6..8], &[0x00, 0x00]);
    }

    #[test]
    fn construct_with_setters() {
        let mut buf = [0u8; 20];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_version(4);
        p.set_header_len(20);
        p.set_tos(0);
        p.set_total_len(0x73);
        p.set_ident(0);
        p.set_dont_frag(true);
        p.set_ttl(64);
        p.set_protocol(ip_proto::UDP);
        p.set_src_addr(Ipv4Addr::new(192, 168, 0, 1));
        p.set_dst_addr(Ipv4Addr::new(192, 168, 0, 199));
        p.fill_checksum();
        assert_eq!(buf, HEADER);
    }

    #[test]
    fn emit_header_matches_capture() {
        let mut buf = [0xeeu8; 24];
        let h = HeaderFields {
            src: Ipv4Addr::new(192, 168, 0, 1),
            dst: Ipv4Addr::new(192, 168, 0, 199),
            protocol: ip_proto::UDP,
            payload_len: 0x73 - 20,
            ttl: 64,
            tos: 0,
            ident: 0,
            dont_frag: true,
        };
        emit_header(&mut buf, &h).unwrap();
        assert_eq!(&buf[..20], &HEADER);
        assert_eq!(&buf[20..], &[0xee; 4], "bytes past the header untouched");
        assert_eq!(emit_header(&mut buf[..19], &h), Err(Error));
        let too_long = HeaderFields {
            payload_len: u16::MAX - 19,
            ..h
        };
        assert_eq!(emit_header(&mut buf, &too_long), Err(Error));
        let max = HeaderFields {
            payload_len: u16::MAX - 20,
            ..h
        };
        assert_eq!(emit_header(&mut buf, &max), Ok(()));
    }

    #[test]
    fn truncated() {
        let mut buf = [0u8; 0x73];
        buf[..20].copy_from_slice(&HEADER);
        for len in 0..0x73 {
            assert_eq!(Packet::new_checked(&buf[..len]), Err(Error), "len {len}");
        }
        assert!(Packet::new_checked(&buf[..]).is_ok());
    }

    #[test]
    fn malformed() {
        let mut bad_version = PING;
        bad_version[0] = 0x65;
        assert_eq!(Packet::new_checked(&bad_version[..]), Err(Error));
        for ihl in 0..5 {
            let mut b = PING;
            b[0] = 0x40 | ihl;
            assert_eq!(Packet::new_checked(&b[..]), Err(Error), "ihl {ihl}");
        }
        // Total length beyond the buffer (34 bytes).
        let mut long = PING;
        long[3] = 35;
        assert_eq!(Packet::new_checked(&long[..]), Err(Error));
        long[3] = 34;
        assert!(Packet::new_checked(&long[..]).is_ok());
        // Header longer than the total length.
        let mut short_total = PING;
        short_total[0] = 0x46;
        short_total[3] = 20;
        assert_eq!(Packet::new_checked(&short_total[..]), Err(Error));
        // IHL 15 (60 bytes) in a 34-byte buffer.
        let mut big_ihl = PING;
        big_ihl[0] = 0x4f;
        assert_eq!(Packet::new_checked(&big_ihl[..]), Err(Error));
    }

    #[test]
    fn incremental_rewrites_match_full_recompute() {
        let mut bytes = PING;
        let mut p = Packet::new_checked(&mut bytes[..]).unwrap();
        p.set_dst_addr_incremental(Ipv4Addr::new(10, 0, 1, 17));
        p.set_src_addr_incremental(Ipv4Addr::new(192, 0, 2, 200));
        assert_eq!(p.decrement_ttl_incremental(), 63);
        assert!(p.verify_checksum());
        let incremental = p.checksum();
        p.fill_checksum();
        assert_eq!(p.checksum(), incremental);
        assert_eq!(&bytes[8..9], &[63]);
        assert_eq!(&bytes[12..20], &[192, 0, 2, 200, 10, 0, 1, 17]);
    }

    #[test]
    fn decrement_ttl_at_zero_is_noop() {
        let mut bytes = PING;
        let mut p = Packet::new_checked(&mut bytes[..]).unwrap();
        p.set_ttl(1);
        p.fill_checksum();
        assert_eq!(p.decrement_ttl_incremental(), 0);
        assert!(p.verify_checksum());
        let before = p.checksum();
        assert_eq!(p.decrement_ttl_incremental(), 0);
        assert_eq!(p.checksum(), before);
        assert_eq!(p.ttl(), 0);
    }
}
