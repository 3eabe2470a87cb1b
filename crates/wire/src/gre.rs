//! GRE (RFC 2784, with RFC 2890's key and sequence fields when reading),
//! the `gre` tunnel type of IPVS (`ipvs_gre_encap` in the kernel's
//! `ip_vs_xmit.c`): outer IP with protocol 47, a GRE header carrying the
//! inner packet's EtherType (0x0800 or 0x86DD) and, with `--tun-csum`, a
//! checksum over the GRE header and the inner packet.
//!
//! ```text
//! +--------+--------+--------+--------+
//! |C| flags, ver 0  |  protocol type  |
//! +--------+--------+--------+--------+
//! | checksum (if C) | reserved1 (0)   |
//! +--------+--------+--------+--------+
//! ```

use crate::ethernet::ethertype;
use crate::{checksum, Error, Result};

/// Bytes of the GRE header without optional fields.
pub const HEADER_LEN: usize = 4;
/// Checksum present (RFC 2784).
pub const FLAG_CHECKSUM: u16 = 0x8000;
/// Routing present (RFC 1701); never valid in RFC 2784 GRE.
const FLAG_ROUTING: u16 = 0x4000;
/// Key present (RFC 2890).
const FLAG_KEY: u16 = 0x2000;
/// Sequence number present (RFC 2890).
const FLAG_SEQUENCE: u16 = 0x1000;
/// The version bits; IPVS and RFC 2784 use version 0.
const VERSION_MASK: u16 = 0x0007;

/// The header length IPVS writes: 4 bytes, 8 with a checksum (the
/// kernel's `gre_calc_hlen` for no flags or `TUNNEL_CSUM`).
pub const fn header_len(with_checksum: bool) -> usize {
    if with_checksum {
        HEADER_LEN + 4
    } else {
        HEADER_LEN
    }
}

/// Writes the GRE header for an inner packet of EtherType `protocol` into
/// `buf[..header_len(with_checksum)]`, with a zero checksum field; the
/// caller then calls [`fill_checksum`] once the inner packet follows.
pub fn emit(buf: &mut [u8], protocol: u16, with_checksum: bool) -> Result<()> {
    let hdr = buf.get_mut(..header_len(with_checksum)).ok_or(Error)?;
    let flags = if with_checksum { FLAG_CHECKSUM } else { 0 };
    hdr[0..2].copy_from_slice(&flags.to_be_bytes());
    hdr[2..4].copy_from_slice(&protocol.to_be_bytes());
    if with_checksum {
        hdr[4..8].copy_from_slice(&[0; 4]);
    }
    Ok(())
}

/// Writes the checksum of a GRE packet (header with the checksum flag,
/// then the payload) that [`emit`] started: the Internet checksum of the
/// whole GRE packet (RFC 2784 §2.5), the field counted as zero.
pub fn fill_checksum(packet: &mut [u8]) -> Result<()> {
    let field = packet.get_mut(4..6).ok_or(Error)?;
    field.copy_from_slice(&[0, 0]);
    let sum = checksum::compute(packet);
    packet[4..6].copy_from_slice(&sum.to_be_bytes());
    Ok(())
}

/// The inner packet of a GRE packet: its EtherType (IPv4 or IPv6) and
/// where it starts. Skips key and sequence fields, verifies a checksum
/// when one is present, and refuses routing, versions other than 0 and
/// other protocols.
pub fn inner(packet: &[u8]) -> Result<(u16, usize)> {
    let hdr = packet.get(..HEADER_LEN).ok_or(Error)?;
    let flags = u16::from_be_bytes([hdr[0], hdr[1]]);
    let protocol = u16::from_be_bytes([hdr[2], hdr[3]]);
    if flags & (FLAG_ROUTING | VERSION_MASK) != 0 {
        return Err(Error);
    }
    if !matches!(protocol, ethertype::IPV4 | ethertype::IPV6) {
        return Err(Error);
    }
    let mut start = HEADER_LEN;
    for flag in [FLAG_CHECKSUM, FLAG_KEY, FLAG_SEQUENCE] {
        if flags & flag != 0 {
            start += 4;
        }
    }
    if start > packet.len() {
        return Err(Error);
    }
    if flags & FLAG_CHECKSUM != 0 && checksum::compute(packet) != 0 {
        return Err(Error);
    }
    Ok((protocol, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emits_the_kernel_s_two_layouts() {
        let mut buf = [0xaau8; 8];
        emit(&mut buf, ethertype::IPV4, false).unwrap();
        assert_eq!(buf[..4], [0x00, 0x00, 0x08, 0x00]);
        emit(&mut buf, ethertype::IPV6, true).unwrap();
        assert_eq!(buf, [0x80, 0x00, 0x86, 0xdd, 0, 0, 0, 0]);
        assert_eq!((header_len(false), header_len(true)), (4, 8));
        assert!(emit(&mut buf[..7], ethertype::IPV4, true).is_err());
    }

    #[test]
    fn checksum_covers_header_and_payload() {
        let mut pkt = [0u8; 8 + 5];
        emit(&mut pkt, ethertype::IPV4, true).unwrap();
        pkt[8..].copy_from_slice(&[0x45, 1, 2, 3, 4]);
        fill_checksum(&mut pkt).unwrap();
        // 0x8000 + 0x0800 + 0x4501 + 0x0203 + 0x0400 = 0xd304, complemented 0x2cfb
        assert_eq!(pkt[4..6], [0x2c, 0xfb]);
        assert_eq!(inner(&pkt), Ok((ethertype::IPV4, 8)));
        pkt[9] ^= 1;
        assert!(inner(&pkt).is_err());
    }

    #[test]
    fn inner_skips_key_and_sequence_and_refuses_the_rest() {
        let keyed = [0x30, 0, 0x86, 0xdd, 0, 0, 0, 1, 0, 0, 0, 2, 0x60];
        assert_eq!(inner(&keyed), Ok((ethertype::IPV6, 12)));
        assert!(inner(&[0x40, 0, 8, 0]).is_err(), "routing");
        assert!(inner(&[0, 1, 8, 0]).is_err(), "version 1 (PPTP)");
        assert!(inner(&[0, 0, 0x88, 0x0b]).is_err(), "PPP");
        assert!(inner(&[0x80, 0, 8, 0]).is_err(), "checksum field missing");
        assert!(inner(&[0, 0, 8]).is_err());
    }
}
