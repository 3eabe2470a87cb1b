//! IP-in-IP encapsulation, the TUN forwarding method: IPv4 in IPv4 (RFC
//! 2003) and IPv6 in IPv6 (RFC 2473), as the kernel's IPVS tunnels them. The
//! director prepends an outer header addressed to the real server, which
//! decapsulates and answers the client directly.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::ipv4::{self, HeaderFields};
use crate::{ip_proto, ipv6, Error, Result};

/// Bytes an IPv4-in-IPv4 (RFC 2003) encapsulation adds.
pub const OVERHEAD: usize = 20;
/// Bytes an IPv6-in-IPv6 (RFC 2473) encapsulation adds.
pub const OVERHEAD_V6: usize = ipv6::HEADER_LEN;

/// Writes the outer IPv6 header into buf[..40] for an inner IPv6 packet of
/// `inner_len` bytes: next header 41, the inner traffic class, flow label
/// 0, the given hop limit (what the kernel's `ip_vs_tunnel_xmit_v6`
/// writes). Fails when `buf` is shorter than 40 bytes or the inner packet
/// exceeds a 65535-byte payload.
pub fn emit_outer_v6(
    buf: &mut [u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    traffic_class: u8,
    inner_len: usize,
    hop_limit: u8,
) -> Result<()> {
    let payload_len = u16::try_from(inner_len).map_err(|_| Error)?;
    ipv6::emit_header(
        buf,
        &ipv6::HeaderFields {
            src,
            dst,
            next_header: ip_proto::IPV6,
            payload_len,
            hop_limit,
            traffic_class,
            flow_label: 0,
        },
    )
}

/// Writes the outer header into buf[..20] for an inner IPv4 packet of
/// `inner_len` bytes: protocol 4, TTL as given, TOS copied from the inner
/// packet, DF copied from the inner packet (RFC 2003 §3.1).
///
/// Fails when `buf` is shorter than 20 bytes or the encapsulated packet
/// would exceed the 65535-byte IPv4 total length.
#[allow(clippy::too_many_arguments)] // Mirrors the RFC 2003 §3.1 field list; a struct would only rename ipv4::HeaderFields.
pub fn emit_outer(
    buf: &mut [u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    inner_tos: u8,
    inner_df: bool,
    inner_len: usize,
    ttl: u8,
    ident: u16,
) -> Result<()> {
    let payload_len = u16::try_from(inner_len).map_err(|_| Error)?;
    ipv4::emit_header(
        buf,
        &HeaderFields {
            src,
            dst,
            protocol: ip_proto::IPIP,
            payload_len,
            ttl,
            tos: inner_tos,
            ident,
            dont_frag: inner_df,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Outer header of a packet the kernel's ipip module sent from
    /// 192.168.1.1 to 192.168.1.2 for an 84-byte inner ping with TOS 0x10.
    const OUTER: [u8; 20] = [
        0x45, 0x10, 0x00, 0x68, 0xbe, 0xef, 0x40, 0x00, 0x40, 0x04, 0xf8, 0x3e, 0xc0, 0xa8, 0x01,
        0x01, 0xc0, 0xa8, 0x01, 0x02,
    ];

    #[test]
    fn emits_rfc2003_header() {
        let mut buf = [0u8; 20 + 84];
        emit_outer(
            &mut buf,
            Ipv4Addr::new(192, 168, 1, 1),
            Ipv4Addr::new(192, 168, 1, 2),
            0x10,
            true,
            84,
            64,
            0xbeef,
        )
        .unwrap();
        assert_eq!(buf[..20], OUTER);
        let p = ipv4::Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.protocol(), ip_proto::IPIP);
        assert_eq!(p.total_len(), 104);
        assert!(p.dont_frag());
        assert!(p.verify_checksum());
    }

    #[test]
    fn df_clear_is_copied() {
        let mut buf = [0u8; 20];
        emit_outer(
            &mut buf,
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            0,
            false,
            40,
            1,
            7,
        )
        .unwrap();
        let p = ipv4::Packet::new_unchecked(&buf[..]);
        assert!(!p.dont_frag());
        assert_eq!(p.ttl(), 1);
        assert_eq!(p.ident(), 7);
        assert!(p.verify_checksum());
    }

    #[test]
    fn ip6ip6_outer_header_carries_the_inner_packet() {
        let mut buf = [0u8; 40];
        let (a, b): (Ipv6Addr, Ipv6Addr) = (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        );
        emit_outer_v6(&mut buf, a, b, 0x28, 60, 64).unwrap();
        let p = ipv6::Packet::new_unchecked(&buf[..]);
        assert_eq!(p.next_header(), ip_proto::IPV6);
        assert_eq!(p.payload_len(), 60);
        assert_eq!(
            (p.traffic_class(), p.flow_label(), p.hop_limit()),
            (0x28, 0, 64)
        );
        assert_eq!((p.src_addr(), p.dst_addr()), (a, b));
        assert_eq!(emit_outer_v6(&mut buf, a, b, 0, 65_536, 64), Err(Error));
        assert_eq!(emit_outer_v6(&mut buf[..39], a, b, 0, 60, 64), Err(Error));
    }

    #[test]
    fn errors() {
        let a = Ipv4Addr::new(10, 0, 0, 1);
        let mut short = [0u8; 19];
        assert_eq!(emit_outer(&mut short, a, a, 0, true, 40, 64, 0), Err(Error));
        let mut buf = [0u8; 20];
        assert_eq!(
            emit_outer(&mut buf, a, a, 0, true, 65_516, 64, 0),
            Err(Error)
        );
        assert_eq!(emit_outer(&mut buf, a, a, 0, true, 65_515, 64, 0), Ok(()));
        assert_eq!(
            emit_outer(&mut buf, a, a, 0, true, usize::MAX, 64, 0),
            Err(Error)
        );
    }
}
