//! TCP headers (RFC 9293): the fields the connection table tracks (ports,
//! flags) and the port/checksum rewrites NAT needs.
//!
//! The view covers one whole segment (header and data): pass it the IP
//! payload, which [`crate::ipv4::Packet::payload`] already bounds by the
//! total length, so that checksums cover exactly the segment.
//!
//! Once [`Packet::new_checked`] has returned `Ok`, no accessor of that packet
//! can panic: the data offset is known to fit the buffer.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::bytes::{get_u16, get_u32, set_u16, set_u32};
use crate::{checksum, ip_proto, Error, Result};

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = 20;

/// Flag bits of byte 13, for [`Packet::flags`] and [`Packet::set_flags`].
pub mod flags {
    /// No more data from sender.
    pub const FIN: u8 = 0x01;
    /// Synchronize sequence numbers: a connection attempt.
    pub const SYN: u8 = 0x02;
    /// Reset the connection.
    pub const RST: u8 = 0x04;
    /// Push function.
    pub const PSH: u8 = 0x08;
    /// The acknowledgment field is significant.
    pub const ACK: u8 = 0x10;
    /// The urgent pointer is significant.
    pub const URG: u8 = 0x20;
    /// ECN echo (RFC 3168).
    pub const ECE: u8 = 0x40;
    /// Congestion window reduced (RFC 3168).
    pub const CWR: u8 = 0x80;
}

mod field {
    pub(super) const SRC_PORT: usize = 0;
    pub(super) const DST_PORT: usize = 2;
    pub(super) const SEQ_NUM: usize = 4;
    pub(super) const ACK_NUM: usize = 8;
    /// Data offset in the high nibble.
    pub(super) const DATA_OFF: usize = 12;
    pub(super) const FLAGS: usize = 13;
    pub(super) const WIN_SIZE: usize = 14;
    pub(super) const CHECKSUM: usize = 16;
    pub(super) const URGENT: usize = 18;
}

/// A view of a TCP segment in a caller-owned buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without validation; accessors may panic on short
    /// buffers. For segments this crate built itself.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len); untrusted
    /// segments must come through here.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks length >= 20, data offset >= 5 words, header length <= buffer.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error);
        }
        let header_len = self.header_len();
        if header_len < HEADER_LEN || header_len > len {
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

    /// The destination port (the virtual service's port for client traffic).
    pub fn dst_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The sequence number.
    pub fn seq_number(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::SEQ_NUM)
    }

    /// The acknowledgment number.
    pub fn ack_number(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::ACK_NUM)
    }

    /// Header length in bytes (data offset × 4), options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// All eight flag bits of byte 13, see [`flags`].
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// FIN: the sender is done; drives the FIN_WAIT/CLOSE states.
    pub fn fin(&self) -> bool {
        self.flags() & flags::FIN != 0
    }

    /// SYN: a connection attempt, the only segment that may pick a server.
    pub fn syn(&self) -> bool {
        self.flags() & flags::SYN != 0
    }

    /// RST: the connection is aborted.
    pub fn rst(&self) -> bool {
        self.flags() & flags::RST != 0
    }

    /// PSH.
    pub fn psh(&self) -> bool {
        self.flags() & flags::PSH != 0
    }

    /// ACK.
    pub fn ack(&self) -> bool {
        self.flags() & flags::ACK != 0
    }

    /// URG.
    pub fn urg(&self) -> bool {
        self.flags() & flags::URG != 0
    }

    /// The receive window.
    pub fn window(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::WIN_SIZE)
    }

    /// The checksum field as stored.
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The urgent pointer.
    pub fn urgent_at(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::URGENT)
    }

    /// The option bytes (MSS, window scale, ...), which SYN proxies read.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// The segment data after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    fn sum_v4(&self, src: &Ipv4Addr, dst: &Ipv4Addr) -> u32 {
        let data = self.buffer.as_ref();
        // An IPv4 segment cannot exceed 65535 bytes; a longer buffer gives a
        // wrong (never panicking) checksum.
        let len = data.len() as u16;
        let ph = checksum::pseudo_header_v4(&src.octets(), &dst.octets(), ip_proto::TCP, len);
        checksum::combine(ph, checksum::sum(data))
    }

    fn sum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> u32 {
        let data = self.buffer.as_ref();
        let len = data.len() as u32;
        let ph = checksum::pseudo_header_v6(&src.octets(), &dst.octets(), ip_proto::TCP, len);
        checksum::combine(ph, checksum::sum(data))
    }

    /// True when the checksum over the IPv4 pseudo header and the whole
    /// segment is correct.
    pub fn verify_checksum_v4(&self, src: &Ipv4Addr, dst: &Ipv4Addr) -> bool {
        checksum::fold(self.sum_v4(src, dst)) == 0xffff
    }

    /// True when the checksum over the IPv6 pseudo header and the whole
    /// segment is correct.
    pub fn verify_checksum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        checksum::fold(self.sum_v6(src, dst)) == 0xffff
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

    /// Sets the sequence number.
    pub fn set_seq_number(&mut self, seq: u32) {
        set_u32(self.buffer.as_mut(), field::SEQ_NUM, seq);
    }

    /// Sets the acknowledgment number.
    pub fn set_ack_number(&mut self, ack: u32) {
        set_u32(self.buffer.as_mut(), field::ACK_NUM, ack);
    }

    /// Sets the header length in bytes (a multiple of 4, at most 60),
    /// keeping the reserved bits.
    pub fn set_header_len(&mut self, len: usize) {
        let off = ((len / 4) & 0x0f) as u8;
        let b = &mut self.buffer.as_mut()[field::DATA_OFF];
        *b = (*b & 0x0f) | (off << 4);
    }

    /// Sets all eight flag bits of byte 13, see [`flags`].
    pub fn set_flags(&mut self, value: u8) {
        self.buffer.as_mut()[field::FLAGS] = value;
    }

    /// Sets the receive window.
    pub fn set_window(&mut self, window: u16) {
        set_u16(self.buffer.as_mut(), field::WIN_SIZE, window);
    }

    /// Stores `value` in the checksum field as is.
    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the urgent pointer.
    pub fn set_urgent_at(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::URGENT, value);
    }

    /// The segment data after the header.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }

    /// Incremental checksum update after `old` bytes were replaced by `new`
    /// (RFC 1624) — used for address (pseudo-header) and port rewrites.
    pub fn update_checksum(&mut self, old: &[u8], new: &[u8]) {
        let c = checksum::adjust(self.checksum(), old, new);
        self.set_checksum(c);
    }

    /// Computes the checksum in full over the IPv4 pseudo header and the
    /// segment, for segments the director builds (e.g. RSTs).
    pub fn fill_checksum_v4(&mut self, src: &Ipv4Addr, dst: &Ipv4Addr) {
        self.set_checksum(0);
        let c = checksum::finish(self.sum_v4(src, dst));
        self.set_checksum(c);
    }

    /// Computes the checksum in full over the IPv6 pseudo header and the
    /// segment.
    pub fn fill_checksum_v6(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let c = checksum::finish(self.sum_v6(src, dst));
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
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    /// A SYN as Linux sends it (`curl http://10.0.0.2/` from 10.0.0.1):
    /// port 45678 -> 80, seq 0x3a1c8e21, window 64240, options MSS 1460,
    /// SACK permitted, timestamps, NOP, window scale 7.
    const SYN: [u8; 40] = [
        0xb2, 0x6e, 0x00, 0x50, // ports
        0x3a, 0x1c, 0x8e, 0x21, // seq
        0x00, 0x00, 0x00, 0x00, // ack
        0xa0, 0x02, 0xfa, 0xf0, // offset 10, SYN, window 64240
        0x03, 0xa7, 0x00, 0x00, // checksum, urgent
        0x02, 0x04, 0x05, 0xb4, // MSS 1460
        0x04, 0x02, // SACK permitted
        0x08, 0x0a, 0x9c, 0x2f, 0x1e, 0x3a, 0x00, 0x00, 0x00, 0x00, // timestamps
        0x01, // NOP
        0x03, 0x03, 0x07, // window scale 7
    ];

    #[test]
    fn deconstruct_syn() {
        let p = Packet::new_checked(&SYN[..]).unwrap();
        assert_eq!(p.src_port(), 45678);
        assert_eq!(p.dst_port(), 80);
        assert_eq!(p.seq_number(), 0x3a1c_8e21);
        assert_eq!(p.ack_number(), 0);
        assert_eq!(p.header_len(), 40);
        assert!(p.syn());
        assert!(!p.ack() && !p.fin() && !p.rst() && !p.psh() && !p.urg());
        assert_eq!(p.flags(), flags::SYN);
        assert_eq!(p.window(), 64240);
        assert_eq!(p.checksum(), 0x03a7);
        assert_eq!(p.urgent_at(), 0);
        assert_eq!(p.options(), &SYN[20..]);
        assert_eq!(p.payload(), &[] as &[u8]);
        assert!(p.verify_checksum_v4(&SRC, &DST));
        assert!(!p.verify_checksum_v4(&SRC, &Ipv4Addr::new(10, 0, 0, 3)));
    }

    #[test]
    fn construct_syn() {
        let mut buf = [0u8; 40];
        buf[20..].copy_from_slice(&SYN[20..]);
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_src_port(45678);
        p.set_dst_port(80);
        p.set_seq_number(0x3a1c_8e21);
        p.set_ack_number(0);
        p.set_header_len(40);
        p.set_flags(flags::SYN);
        p.set_window(64240);
        p.set_urgent_at(0);
        p.fill_checksum_v4(&SRC, &DST);
        assert_eq!(buf, SYN);
    }

    #[test]
    fn payload_and_flags() {
        let mut buf = [0u8; 23];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_header_len(20);
        p.set_flags(flags::FIN | flags::ACK | flags::PSH | flags::RST | flags::URG);
        p.payload_mut().copy_from_slice(b"abc");
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert!(p.fin() && p.ack() && p.psh() && p.rst() && p.urg() && !p.syn());
        assert_eq!(p.payload(), b"abc");
    }

    #[test]
    fn truncated() {
        for len in 0..SYN.len() {
            assert_eq!(Packet::new_checked(&SYN[..len]), Err(Error), "len {len}");
        }
    }

    #[test]
    fn malformed_data_offset() {
        for off in 0..5u8 {
            let mut b = SYN;
            b[12] = off << 4;
            assert_eq!(Packet::new_checked(&b[..]), Err(Error), "offset {off}");
        }
        let mut b = SYN;
        b[12] = 0xb0; // 44 bytes in a 40-byte buffer
        assert_eq!(Packet::new_checked(&b[..]), Err(Error));
    }

    #[test]
    fn nat_rewrite_incremental_matches_full() {
        let mut b = SYN;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        // DNAT: VIP 10.0.0.2:80 -> real server 10.0.1.7:8080.
        let rs = Ipv4Addr::new(10, 0, 1, 7);
        p.update_checksum(&DST.octets(), &rs.octets());
        p.update_checksum(&80u16.to_be_bytes(), &8080u16.to_be_bytes());
        p.set_dst_port(8080);
        assert!(p.verify_checksum_v4(&SRC, &rs));
        let inc = p.checksum();
        p.fill_checksum_v4(&SRC, &rs);
        assert_eq!(inc, p.checksum());
    }

    #[test]
    fn v6_checksum() {
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let mut b = SYN;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.fill_checksum_v6(&src, &dst);
        assert!(p.verify_checksum_v6(&src, &dst));
        assert!(!p.verify_checksum_v6(&dst, &dst));
        let new_dst: Ipv6Addr = "2001:db8:1::99".parse().unwrap();
        p.update_checksum(&dst.octets(), &new_dst.octets());
        assert!(p.verify_checksum_v6(&src, &new_dst));
    }
}
