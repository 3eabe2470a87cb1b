//! SCTP common headers (RFC 9260 §3.1): ports for the connection table,
//! the first chunks for IPVS's state machine, and the CRC32c checksum NAT
//! must recompute when it changes a port.
//!
//! Unlike TCP and UDP, the checksum covers the SCTP packet alone (no
//! pseudo-header) and is a CRC, which cannot be updated incrementally: a
//! rewritten packet gets it computed afresh over all its bytes, as the
//! kernel's `sctp_nat_csum` does.
//!
//! Once [`Packet::new_checked`] has returned `Ok`, no accessor of that packet
//! can panic.

use crate::bytes::{get_u16, set_u16};
use crate::{Error, Result};

/// Length of the common header (ports, verification tag, checksum).
pub const HEADER_LEN: usize = 12;
/// Length of a chunk header (type, flags, length).
pub const CHUNK_HEADER_LEN: usize = 4;

mod field {
    pub(super) const SRC_PORT: usize = 0;
    pub(super) const DST_PORT: usize = 2;
    pub(super) const CHECKSUM: core::ops::Range<usize> = 8..12;
}

/// A view of an SCTP packet (the IP payload) in a caller-owned buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without validation; accessors may panic on short
    /// buffers.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks that the common header fits.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error);
        }
        Ok(())
    }

    /// The source port.
    pub fn src_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// The destination port.
    pub fn dst_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The type of the first chunk, if the packet holds a chunk header.
    pub fn first_chunk_type(&self) -> Option<u8> {
        self.chunk_at(HEADER_LEN).map(|(t, _)| t)
    }

    /// The type of the chunk after the first, if the first's length field
    /// is sane and a chunk header follows it (RFC 9260 §3.2: chunks are
    /// padded to 4 bytes).
    pub fn second_chunk_type(&self) -> Option<u8> {
        let (_, len) = self.chunk_at(HEADER_LEN)?;
        if usize::from(len) < CHUNK_HEADER_LEN {
            return None;
        }
        let next = HEADER_LEN.checked_add(usize::from(len).next_multiple_of(4))?;
        self.chunk_at(next).map(|(t, _)| t)
    }

    /// Type and length field of the chunk header at `at`, if it fits.
    fn chunk_at(&self, at: usize) -> Option<(u8, u16)> {
        let b = self
            .buffer
            .as_ref()
            .get(at..at.checked_add(CHUNK_HEADER_LEN)?)?;
        Some((b[0], u16::from_be_bytes([b[2], b[3]])))
    }

    /// The checksum field as stored.
    pub fn checksum(&self) -> [u8; 4] {
        let b = &self.buffer.as_ref()[field::CHECKSUM];
        [b[0], b[1], b[2], b[3]]
    }

    /// The CRC32c the packet should carry, over every byte with the
    /// checksum field taken as zero, in the field's byte order (the CRC's
    /// least significant byte first, as Linux stores it).
    pub fn compute_checksum(&self) -> [u8; 4] {
        let b = self.buffer.as_ref();
        let mut crc = crc32c::crc32c(&b[..field::CHECKSUM.start]);
        crc = crc32c::crc32c_append(crc, &[0; 4]);
        crc = crc32c::crc32c_append(crc, &b[field::CHECKSUM.end..]);
        crc.to_le_bytes()
    }

    /// Whether the stored checksum is right.
    pub fn verify_checksum(&self) -> bool {
        self.checksum() == self.compute_checksum()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source port (the checksum is not touched).
    pub fn set_src_port(&mut self, port: u16) {
        set_u16(self.buffer.as_mut(), field::SRC_PORT, port);
    }

    /// Sets the destination port (the checksum is not touched).
    pub fn set_dst_port(&mut self, port: u16) {
        set_u16(self.buffer.as_mut(), field::DST_PORT, port);
    }

    /// Writes the CRC32c of the packet's current bytes.
    pub fn fill_checksum(&mut self) {
        let c = self.compute_checksum();
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An INIT packet (common header, INIT with a supported-address-types
    /// parameter) whose checksum comes from the bit-by-bit CRC32c below,
    /// independent of the crate the module uses.
    fn init_packet() -> Vec<u8> {
        let mut p = vec![
            0x9c, 0x40, 0x00, 0x50, // ports 40000 -> 80
            0x00, 0x00, 0x00, 0x00, // verification tag 0 (INIT)
            0, 0, 0, 0, // checksum
            0x01, 0x00, 0x00, 0x1c, // INIT, 28 bytes with its parameter
            0x12, 0x34, 0x56, 0x78, // initiate tag
            0x00, 0x01, 0xa0, 0x00, // a_rwnd
            0x00, 0x0a, 0xff, 0xff, // streams out / in
            0x12, 0x34, 0x56, 0x78, // initial TSN
            0x00, 0x0c, 0x00, 0x06, 0x00, 0x05, 0x00, 0x00, // supported: IPv4
        ];
        let c = bitwise_crc32c(&p).to_le_bytes();
        p[8..12].copy_from_slice(&c);
        p
    }

    /// CRC32c (Castagnoli, reflected, init and final xor 0xffffffff), one
    /// bit at a time: the definition, not the crate's tables.
    fn bitwise_crc32c(data: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0x82f6_3b78
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn crc32c_check_value() {
        // The catalogue's check value of CRC-32C over "123456789".
        assert_eq!(bitwise_crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn reads_ports_chunks_and_checks_the_checksum() {
        let p = init_packet();
        let pkt = Packet::new_checked(&p[..]).unwrap();
        assert_eq!((pkt.src_port(), pkt.dst_port()), (40000, 80));
        assert_eq!(pkt.first_chunk_type(), Some(1));
        assert_eq!(pkt.second_chunk_type(), None);
        assert!(pkt.verify_checksum());
        let mut bad = p.clone();
        bad[20] ^= 1;
        assert!(!Packet::new_checked(&bad[..]).unwrap().verify_checksum());
    }

    #[test]
    fn a_port_rewrite_gets_a_fresh_checksum() {
        let mut p = init_packet();
        let mut pkt = Packet::new_checked(&mut p[..]).unwrap();
        pkt.set_dst_port(8080);
        assert!(!pkt.verify_checksum());
        pkt.fill_checksum();
        assert!(pkt.verify_checksum());
        let want = {
            let mut z = p.clone();
            z[8..12].fill(0);
            bitwise_crc32c(&z).to_le_bytes()
        };
        assert_eq!(p[8..12], want);
    }

    #[test]
    fn the_chunk_after_a_cookie_echo() {
        // COOKIE ECHO of 5 bytes (padded to 8), then ABORT.
        let mut p = vec![0u8; HEADER_LEN];
        p.extend_from_slice(&[10, 0, 0, 5, 0xaa, 0, 0, 0]);
        p.extend_from_slice(&[6, 0, 0, 4]);
        let pkt = Packet::new_checked(&p[..]).unwrap();
        assert_eq!(pkt.first_chunk_type(), Some(10));
        assert_eq!(pkt.second_chunk_type(), Some(6));
        // A first chunk whose length is below a header's: nothing after it.
        p[15] = 2;
        assert_eq!(
            Packet::new_checked(&p[..]).unwrap().second_chunk_type(),
            None
        );
        // Short packets.
        assert!(Packet::new_checked(&p[..11]).is_err());
        let header_only = Packet::new_checked(&p[..12]).unwrap();
        assert_eq!(header_only.first_chunk_type(), None);
        assert_eq!(header_only.second_chunk_type(), None);
    }
}
