//! Generic UDP Encapsulation (GUE, draft-ietf-intarea-gue), the `gue`
//! tunnel type of IPVS (`ipvs_gue_encap` in the kernel's `ip_vs_xmit.c`):
//! outer IP, UDP to the real server's GUE port, a 4-byte GUE header of
//! version 0 naming the inner protocol (4 for IPv4, 41 for IPv6), then the
//! untouched inner packet.
//!
//! GUE header, version 0 (the kernel's `struct guehdr`):
//! ```text
//!  0   1   2   3   bits of byte 0: version (2) | control (1) | hlen (5)
//! +---+---+---+---+
//! |vch| pr| flags |   hlen = option words after these 4 bytes
//! +---+---+---+---+
//! ```
//! Version 1 ("direct IP", no header: the first nibble of the payload is 4
//! or 6) is accepted when decapsulating, as the kernel's `fou` does.

use crate::{ip_proto, udp, Error, Result};

/// Bytes of the GUE header without options.
pub const HEADER_LEN: usize = 4;
/// Bytes UDP and GUE add between the outer IP header and the inner packet.
pub const UDP_OVERHEAD: usize = udp::HEADER_LEN + HEADER_LEN;

/// The kernel's default local port range (`ip_local_port_range`, 32768 to
/// 60999), from which `udp_flow_src_port` draws a tunnel's source port.
const SOURCE_PORT_MIN: u32 = 32768;
/// The range's end (exclusive in `udp_flow_src_port`'s arithmetic).
const SOURCE_PORT_MAX: u32 = 60999;

/// The UDP source port for a flow hash, as `udp_flow_src_port` maps it:
/// the hash folded with itself shifted by 16 (only the upper half counts)
/// and scaled into the local port range. One flow keeps one source port,
/// so routers that hash on UDP ports keep it on one path.
pub fn source_port(flow_hash: u32) -> u16 {
    let h = flow_hash ^ (flow_hash << 16);
    let port = ((u64::from(h) * u64::from(SOURCE_PORT_MAX - SOURCE_PORT_MIN)) >> 32)
        + u64::from(SOURCE_PORT_MIN);
    // Below SOURCE_PORT_MAX by construction.
    port as u16
}

/// Writes UDP (checksum 0) and a GUE version 0 header without options into
/// `buf[..UDP_OVERHEAD]`, for an inner packet of `inner_len` bytes with IP
/// protocol `inner_proto`. The caller fills the UDP checksum if it wants
/// one. Fails when `buf` is too short or the datagram would exceed 65535
/// bytes.
pub fn emit(
    buf: &mut [u8],
    src_port: u16,
    dst_port: u16,
    inner_proto: u8,
    inner_len: usize,
) -> Result<()> {
    let len = u16::try_from(UDP_OVERHEAD + inner_len).map_err(|_| Error)?;
    let hdr = buf.get_mut(..UDP_OVERHEAD).ok_or(Error)?;
    hdr[0..2].copy_from_slice(&src_port.to_be_bytes());
    hdr[2..4].copy_from_slice(&dst_port.to_be_bytes());
    hdr[4..6].copy_from_slice(&len.to_be_bytes());
    hdr[6..8].copy_from_slice(&[0, 0]);
    hdr[8..12].copy_from_slice(&[0, inner_proto, 0, 0]);
    Ok(())
}

/// The inner packet of a GUE payload (the UDP payload): its IP protocol
/// (4 or 41) and where it starts. Refuses control messages, versions other
/// than 0 and 1, options beyond the payload and inner protocols other than
/// IPv4 and IPv6.
pub fn inner(payload: &[u8]) -> Result<(u8, usize)> {
    let first = *payload.first().ok_or(Error)?;
    match first >> 6 {
        0 => {
            if first & 0x20 != 0 {
                return Err(Error);
            }
            let start = HEADER_LEN + usize::from(first & 0x1f) * 4;
            let proto = *payload.get(1).ok_or(Error)?;
            if start > payload.len() || !matches!(proto, ip_proto::IPIP | ip_proto::IPV6) {
                return Err(Error);
            }
            Ok((proto, start))
        }
        1 => match first >> 4 {
            4 => Ok((ip_proto::IPIP, 0)),
            6 => Ok((ip_proto::IPV6, 0)),
            _ => Err(Error),
        },
        _ => Err(Error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emits_udp_and_gue_v0() {
        let mut buf = [0xaau8; UDP_OVERHEAD];
        emit(&mut buf, 40000, 6080, ip_proto::IPIP, 84).unwrap();
        // UDP 40000 -> 6080, length 8 + 4 + 84 = 96, checksum 0; GUE
        // version 0, no control, hlen 0, protocol 4, flags 0.
        assert_eq!(
            buf,
            [0x9c, 0x40, 0x17, 0xc0, 0x00, 0x60, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00]
        );
        assert!(emit(&mut buf[..11], 1, 2, 4, 0).is_err());
        assert!(emit(&mut buf, 1, 2, 4, 65535).is_err());
    }

    #[test]
    fn source_port_stays_in_the_local_range_as_the_kernel_scales_it() {
        assert_eq!(source_port(0), 32768);
        // h = 0xffff_ffff ^ 0xffff_0000 = 0x0000_ffff: the low half alone
        // barely moves the port, as in the kernel.
        assert_eq!(source_port(u32::MAX), 32768);
        assert_eq!(source_port(0x8000_0000), 32768 + (60999 - 32768) / 2);
        for h in [1u32, 0x1234_5678, 0xdead_beef, 0x7fff_ffff] {
            assert!((32768..60999).contains(&source_port(h)));
        }
    }

    #[test]
    fn inner_reads_v0_and_direct_ip() {
        assert_eq!(inner(&[0, 4, 0, 0, 0x45]), Ok((ip_proto::IPIP, 4)));
        // hlen 1: one option word skipped.
        assert_eq!(
            inner(&[1, 41, 0, 0, 0, 0, 0, 0, 0x60]),
            Ok((ip_proto::IPV6, 8))
        );
        assert_eq!(inner(&[0x45, 0]), Ok((ip_proto::IPIP, 0)));
        assert_eq!(inner(&[0x60]), Ok((ip_proto::IPV6, 0)));
        // Control message, options past the end, other protocol, version 2.
        assert!(inner(&[0x20, 4, 0, 0]).is_err());
        assert!(inner(&[2, 4, 0, 0, 0]).is_err());
        assert!(inner(&[0, 17, 0, 0]).is_err());
        assert!(inner(&[0x80, 4, 0, 0]).is_err());
        assert!(inner(&[]).is_err());
        assert!(inner(&[0]).is_err());
    }
}
