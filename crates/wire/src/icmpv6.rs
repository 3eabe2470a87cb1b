//! ICMPv6 messages (RFC 4443): echo for VIPs, error forwarding, and
//! "packet too big" when a tunnel grows a packet past the path MTU.
//!
//! Neighbor discovery is left to the host stack. Unlike ICMPv4, the checksum
//! covers the IPv6 pseudo header, so the methods take the addresses.
//!
//! Once [`Packet::new_checked`] has returned `Ok`, no accessor of that packet
//! can panic: the 8-byte header is known to be present.

use std::net::Ipv6Addr;

use crate::bytes::{get_u16, get_u32, set_u16, set_u32};
use crate::{checksum, ip_proto, Error, Result};

/// Destination unreachable.
pub const DST_UNREACHABLE: u8 = 1;
/// Packet too big; carries the MTU in bytes 4..8.
pub const PACKET_TOO_BIG: u8 = 2;
/// Time exceeded.
pub const TIME_EXCEEDED: u8 = 3;
/// Parameter problem.
pub const PARAM_PROBLEM: u8 = 4;
/// Echo request.
pub const ECHO_REQUEST: u8 = 128;
/// Echo reply.
pub const ECHO_REPLY: u8 = 129;

/// Length of the ICMPv6 header this view requires (type, code, checksum and
/// the 4-byte message-specific word every RVS-relevant type has).
pub const HEADER_LEN: usize = 8;

mod field {
    pub(super) const TYPE: usize = 0;
    pub(super) const CODE: usize = 1;
    pub(super) const CHECKSUM: usize = 2;
    pub(super) const MTU: usize = 4;
    pub(super) const ECHO_IDENT: usize = 4;
    pub(super) const ECHO_SEQNO: usize = 6;
}

/// A view of an ICMPv6 message in a caller-owned buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without validation; accessors may panic on short
    /// buffers. For messages this crate built itself.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer` after checking it holds the 8-byte header; untrusted
    /// messages must come through here.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks length >= 8.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error);
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The message type.
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// The message code.
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// The checksum field as stored.
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The MTU of a [`PACKET_TOO_BIG`] message (bytes 4..8).
    pub fn mtu(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::MTU)
    }

    /// Identifier of an echo request/reply.
    pub fn echo_ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Sequence number of an echo request/reply.
    pub fn echo_seq(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_SEQNO)
    }

    /// Everything after the 8-byte header: echo data, or for errors as much
    /// of the offending packet as fits.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// True for error messages (types below 128), which quote the offending
    /// packet.
    pub fn is_error(&self) -> bool {
        self.msg_type() < 128
    }

    fn sum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> u32 {
        let data = self.buffer.as_ref();
        let ph = checksum::pseudo_header_v6(
            &src.octets(),
            &dst.octets(),
            ip_proto::ICMPV6,
            data.len() as u32,
        );
        checksum::combine(ph, checksum::sum(data))
    }

    /// True when the checksum over the pseudo header and the whole buffer
    /// is correct.
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        checksum::fold(self.sum(src, dst)) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the message type.
    pub fn set_msg_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::TYPE] = value;
    }

    /// Sets the message code.
    pub fn set_msg_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    /// Stores `value` in the checksum field as is.
    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the MTU of a [`PACKET_TOO_BIG`] message.
    pub fn set_mtu(&mut self, mtu: u32) {
        set_u32(self.buffer.as_mut(), field::MTU, mtu);
    }

    /// Sets the echo identifier.
    pub fn set_echo_ident(&mut self, ident: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_IDENT, ident);
    }

    /// Sets the echo sequence number.
    pub fn set_echo_seq(&mut self, seq: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_SEQNO, seq);
    }

    /// Everything after the header, for writing the quoted packet.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }

    /// Computes the checksum in full over the pseudo header and the whole
    /// buffer, which must hold exactly the message.
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let c = checksum::finish(self.sum(src, dst));
        self.set_checksum(c);
    }

    /// Incremental checksum update after `old` bytes (in the message or its
    /// pseudo header) were replaced by `new` (RFC 1624).
    pub fn update_checksum(&mut self, old: &[u8], new: &[u8]) {
        let c = checksum::adjust(self.checksum(), old, new);
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

    fn addrs() -> (Ipv6Addr, Ipv6Addr) {
        (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        )
    }

    /// `ping -6 -c1 -s 4 2001:db8::2`: id 0x1234, seq 1, data 01 02 03 04.
    const ECHO: [u8; 12] = [
        0x80, 0x00, 0x0e, 0x09, 0x12, 0x34, 0x00, 0x01, 0x01, 0x02, 0x03, 0x04,
    ];

    #[test]
    fn deconstruct_echo() {
        let (src, dst) = addrs();
        let p = Packet::new_checked(&ECHO[..]).unwrap();
        assert_eq!(p.msg_type(), ECHO_REQUEST);
        assert_eq!(p.msg_code(), 0);
        assert_eq!(p.checksum(), 0x0e09);
        assert_eq!(p.echo_ident(), 0x1234);
        assert_eq!(p.echo_seq(), 1);
        assert_eq!(p.data(), &[1, 2, 3, 4]);
        assert!(!p.is_error());
        assert!(p.verify_checksum(&src, &dst));
        assert!(!p.verify_checksum(&dst, &dst));
    }

    #[test]
    fn construct_echo() {
        let (src, dst) = addrs();
        let mut b = [0u8; 12];
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_msg_type(ECHO_REQUEST);
        p.set_msg_code(0);
        p.set_echo_ident(0x1234);
        p.set_echo_seq(1);
        p.data_mut().copy_from_slice(&[1, 2, 3, 4]);
        p.fill_checksum(&src, &dst);
        assert_eq!(b, ECHO);
    }

    #[test]
    fn packet_too_big() {
        let (src, dst) = addrs();
        let mut b = [0u8; 48];
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_msg_type(PACKET_TOO_BIG);
        p.set_msg_code(0);
        p.set_mtu(1280);
        p.fill_checksum(&src, &dst);
        assert_eq!(b[..8], [0x02, 0x00, b[2], b[3], 0x00, 0x00, 0x05, 0x00]);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.mtu(), 1280);
        assert!(p.is_error());
        assert!(p.verify_checksum(&src, &dst));
        for t in [DST_UNREACHABLE, TIME_EXCEEDED, PARAM_PROBLEM] {
            let mut e = b;
            e[0] = t;
            assert!(Packet::new_checked(&e[..]).unwrap().is_error());
        }
        let mut r = ECHO;
        r[0] = ECHO_REPLY;
        assert!(!Packet::new_checked(&r[..]).unwrap().is_error());
    }

    #[test]
    fn address_rewrite_incremental() {
        let (src, dst) = addrs();
        let mut b = ECHO;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        let new_dst: Ipv6Addr = "2001:db8:ffff::7".parse().unwrap();
        p.update_checksum(&dst.octets(), &new_dst.octets());
        assert!(p.verify_checksum(&src, &new_dst));
    }

    #[test]
    fn truncated() {
        for len in 0..HEADER_LEN {
            assert_eq!(Packet::new_checked(&ECHO[..len]), Err(Error), "len {len}");
        }
    }
}
