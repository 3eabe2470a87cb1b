//! ICMPv4 messages (RFC 792): the director answers echo requests to VIPs,
//! forwards errors that quote a balanced connection to the right real
//! server, and sends "fragmentation needed" (RFC 1191) when a tunnel makes a
//! DF packet too big.
//!
//! Once [`Packet::new_checked`] has returned `Ok`, no accessor of that packet
//! can panic: the 8-byte header is known to be present.

use crate::bytes::{get_u16, set_u16};
use crate::{checksum, Error, Result};

/// Echo reply.
pub const ECHO_REPLY: u8 = 0;
/// Destination unreachable; code [`CODE_FRAG_NEEDED`] carries a next-hop MTU.
pub const DEST_UNREACHABLE: u8 = 3;
/// Source quench (deprecated, still an error message).
pub const SOURCE_QUENCH: u8 = 4;
/// Redirect.
pub const REDIRECT: u8 = 5;
/// Echo request.
pub const ECHO_REQUEST: u8 = 8;
/// Time exceeded.
pub const TIME_EXCEEDED: u8 = 11;
/// Parameter problem.
pub const PARAM_PROBLEM: u8 = 12;

/// Destination unreachable code: port unreachable.
pub const CODE_PORT_UNREACHABLE: u8 = 3;
/// Destination unreachable code: fragmentation needed and DF set (RFC 1191).
pub const CODE_FRAG_NEEDED: u8 = 4;

/// Length of the ICMPv4 header (type, code, checksum, 4 type-specific bytes).
pub const HEADER_LEN: usize = 8;

mod field {
    pub(super) const TYPE: usize = 0;
    pub(super) const CODE: usize = 1;
    pub(super) const CHECKSUM: usize = 2;
    pub(super) const ECHO_IDENT: usize = 4;
    pub(super) const ECHO_SEQNO: usize = 6;
    /// RFC 1191: bytes 6..8 of a "fragmentation needed" message.
    pub(super) const NEXT_HOP_MTU: usize = 6;
}

/// A view of an ICMPv4 message in a caller-owned buffer.
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

    /// Next-hop MTU of a "fragmentation needed" message (bytes 6..8).
    pub fn next_hop_mtu(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::NEXT_HOP_MTU)
    }

    /// Identifier of an echo request/reply.
    pub fn echo_ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Sequence number of an echo request/reply.
    pub fn echo_seq(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_SEQNO)
    }

    /// Everything after the 8-byte header: echo data, or for errors the
    /// quoted IP header plus at least 8 bytes of its payload.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// True for error messages (types 3, 4, 5, 11, 12), which quote the
    /// offending packet and must be matched to its connection.
    pub fn is_error(&self) -> bool {
        matches!(
            self.msg_type(),
            DEST_UNREACHABLE | SOURCE_QUENCH | REDIRECT | TIME_EXCEEDED | PARAM_PROBLEM
        )
    }

    /// True when the checksum over the whole buffer is correct.
    pub fn verify_checksum(&self) -> bool {
        checksum::compute(self.buffer.as_ref()) == 0
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

    /// Sets the next-hop MTU (bytes 6..8).
    pub fn set_next_hop_mtu(&mut self, mtu: u16) {
        set_u16(self.buffer.as_mut(), field::NEXT_HOP_MTU, mtu);
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

    /// Computes the checksum in full over the whole buffer, which must hold
    /// exactly the message.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::compute(self.buffer.as_ref());
        self.set_checksum(c);
    }

    /// Incremental checksum update after `old` bytes inside the message
    /// were replaced by `new` (e.g. the quoted header's address when NAT
    /// rewrites an error).
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

    /// An echo request from `ping -s 4`: id 1, seq 1, data de ad be ef.
    const ECHO: [u8; 12] = [
        0x08, 0x00, 0x5a, 0x60, 0x00, 0x01, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef,
    ];

    /// A "fragmentation needed, MTU 1480" error quoting the first 28 bytes
    /// of a DF UDP datagram 10.0.0.1 -> 10.0.0.2.
    fn frag_needed() -> [u8; 36] {
        let mut b = [0u8; 36];
        b[..8].copy_from_slice(&[0x03, 0x04, 0x00, 0x00, 0x00, 0x00, 0x05, 0xc8]);
        b[8..28].copy_from_slice(&[
            0x45, 0x00, 0x05, 0xdc, 0x00, 0x01, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0x0a, 0x00,
            0x00, 0x01, 0x0a, 0x00, 0x00, 0x02,
        ]);
        b[28..].copy_from_slice(&[0x30, 0x39, 0x00, 0x35, 0x05, 0xc8, 0x00, 0x00]);
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.fill_checksum();
        b
    }

    #[test]
    fn deconstruct_echo() {
        let p = Packet::new_checked(&ECHO[..]).unwrap();
        assert_eq!(p.msg_type(), ECHO_REQUEST);
        assert_eq!(p.msg_code(), 0);
        assert_eq!(p.checksum(), 0x5a60);
        assert_eq!(p.echo_ident(), 1);
        assert_eq!(p.echo_seq(), 1);
        assert_eq!(p.data(), &[0xde, 0xad, 0xbe, 0xef]);
        assert!(!p.is_error());
        assert!(p.verify_checksum());
    }

    #[test]
    fn construct_echo_reply() {
        let mut b = ECHO;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_msg_type(ECHO_REPLY);
        p.fill_checksum();
        assert_eq!(b[..4], [0x00, 0x00, 0x62, 0x60]);
        let mut fresh = [0u8; 12];
        let mut p = Packet::new_unchecked(&mut fresh[..]);
        p.set_msg_type(ECHO_REQUEST);
        p.set_msg_code(0);
        p.set_echo_ident(1);
        p.set_echo_seq(1);
        p.data_mut().copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        p.fill_checksum();
        assert_eq!(fresh, ECHO);
    }

    #[test]
    fn deconstruct_frag_needed() {
        let b = frag_needed();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.msg_type(), DEST_UNREACHABLE);
        assert_eq!(p.msg_code(), CODE_FRAG_NEEDED);
        assert_eq!(p.next_hop_mtu(), 1480);
        assert!(p.is_error());
        assert!(p.verify_checksum());
        let quoted = crate::ipv4::Packet::new_unchecked(p.data());
        assert_eq!(quoted.dst_addr(), std::net::Ipv4Addr::new(10, 0, 0, 2));
    }

    #[test]
    fn error_types() {
        for (t, err) in [
            (0, false),
            (3, true),
            (4, true),
            (5, true),
            (8, false),
            (11, true),
            (12, true),
            (13, false),
        ] {
            let mut b = ECHO;
            b[0] = t;
            assert_eq!(
                Packet::new_checked(&b[..]).unwrap().is_error(),
                err,
                "type {t}"
            );
        }
    }

    #[test]
    fn set_mtu_and_update_checksum() {
        let mut b = frag_needed();
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_next_hop_mtu(1400);
        p.update_checksum(&1480u16.to_be_bytes(), &1400u16.to_be_bytes());
        assert!(p.verify_checksum());
        assert_eq!(b[6..8], [0x05, 0x78]);
        assert_eq!(b[1], CODE_FRAG_NEEDED);
        let _ = CODE_PORT_UNREACHABLE;
    }

    #[test]
    fn truncated() {
        for len in 0..HEADER_LEN {
            assert_eq!(Packet::new_checked(&ECHO[..len]), Err(Error), "len {len}");
        }
        assert!(Packet::new_checked(&ECHO[..HEADER_LEN]).is_ok());
    }
}
