//! NAT (`-m`, IPVS "Masq"): on the way in the destination VIP:vport becomes
//! RIP:rport; on the way back the source RIP:rport becomes VIP:vport. The
//! client address is preserved both ways. Checksums are updated
//! incrementally (RFC 1624), never recomputed over the payload.

use std::net::IpAddr;

use rvs_wire::{ip_proto, ipv4, ipv6, tcp, udp};

/// Which end of the packet to rewrite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// Destination (input direction: VIP → RIP).
    Dst,
    /// Source (output direction: RIP → VIP).
    Src,
}

/// Rewrites the address and port on `side` of the IP packet `ip` (starting at
/// the IP header). `Err` if a header is malformed or the families differ.
pub(crate) fn rewrite(
    ip: &mut [u8],
    side: Side,
    new_addr: IpAddr,
    new_port: u16,
) -> Result<(), rvs_wire::Error> {
    let (l4_start, l4_end, proto, old_addr): (usize, usize, u8, IpAddr) = match new_addr {
        IpAddr::V4(new) => {
            let mut p = ipv4::Packet::new_checked(&mut *ip)?;
            let old = match side {
                Side::Dst => p.dst_addr(),
                Side::Src => p.src_addr(),
            };
            match side {
                Side::Dst => p.set_dst_addr_incremental(new),
                Side::Src => p.set_src_addr_incremental(new),
            }
            (
                p.header_len(),
                usize::from(p.total_len()),
                p.protocol(),
                IpAddr::V4(old),
            )
        }
        IpAddr::V6(new) => {
            let mut p = ipv6::Packet::new_checked(&mut *ip)?;
            let old = match side {
                Side::Dst => p.dst_addr(),
                Side::Src => p.src_addr(),
            };
            match side {
                Side::Dst => p.set_dst_addr(new),
                Side::Src => p.set_src_addr(new),
            }
            (
                ipv6::HEADER_LEN,
                ipv6::HEADER_LEN + usize::from(p.payload_len()),
                p.next_header(),
                IpAddr::V6(old),
            )
        }
    };
    let l4 = ip.get_mut(l4_start..l4_end).ok_or(rvs_wire::Error)?;
    if old_addr.is_ipv4() != new_addr.is_ipv4() {
        return Err(rvs_wire::Error);
    }
    // One incremental update for address and port together: the bytes
    // [address, port] before and after (RFC 1624 works on any even run).
    let alen = if new_addr.is_ipv4() { 4 } else { 16 };
    let mut old_bytes = [0u8; 18];
    let mut new_bytes = [0u8; 18];
    old_bytes[..16].copy_from_slice(&addr_octets(old_addr));
    new_bytes[..16].copy_from_slice(&addr_octets(new_addr));
    // Addresses sit in the first `alen` bytes; the ports follow them.
    new_bytes[alen..alen + 2].copy_from_slice(&new_port.to_be_bytes());
    match proto {
        ip_proto::TCP => {
            let mut t = tcp::Packet::new_checked(l4)?;
            let old_port = match side {
                Side::Dst => t.dst_port(),
                Side::Src => t.src_port(),
            };
            match side {
                Side::Dst => t.set_dst_port(new_port),
                Side::Src => t.set_src_port(new_port),
            }
            old_bytes[alen..alen + 2].copy_from_slice(&old_port.to_be_bytes());
            t.update_checksum(&old_bytes[..alen + 2], &new_bytes[..alen + 2]);
        }
        ip_proto::UDP => {
            let mut u = udp::Packet::new_checked(l4)?;
            let old_port = match side {
                Side::Dst => u.dst_port(),
                Side::Src => u.src_port(),
            };
            match side {
                Side::Dst => u.set_dst_port(new_port),
                Side::Src => u.set_src_port(new_port),
            }
            old_bytes[alen..alen + 2].copy_from_slice(&old_port.to_be_bytes());
            u.update_checksum(&old_bytes[..alen + 2], &new_bytes[..alen + 2]);
        }
        _ => return Err(rvs_wire::Error),
    }
    Ok(())
}

fn addr_octets(a: IpAddr) -> [u8; 16] {
    let mut b = [0u8; 16];
    match a {
        IpAddr::V4(v4) => b[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => b = v6.octets(),
    }
    b
}

/// Decrements TTL / hop limit for a routed reply; `false` when it ran out.
pub(crate) fn decrement_ttl(ip: &mut [u8], v6: bool) -> Result<bool, rvs_wire::Error> {
    if v6 {
        let mut p = ipv6::Packet::new_checked(ip)?;
        let h = p.hop_limit();
        if h <= 1 {
            return Ok(false);
        }
        p.set_hop_limit(h - 1);
    } else {
        let mut p = ipv4::Packet::new_checked(ip)?;
        if p.ttl() <= 1 {
            return Ok(false);
        }
        p.decrement_ttl_incremental();
    }
    Ok(true)
}
