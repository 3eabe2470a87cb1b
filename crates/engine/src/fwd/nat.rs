//! NAT (`-m`, IPVS "Masq", `ip_vs_nat_xmit` and the reply path of
//! `ip_vs_out`): on the way in the destination VIP:vport becomes RIP:rport;
//! on the way back the source RIP:rport becomes VIP:vport and the packet is
//! routed to the client (TTL decremented: the director is its router). The
//! client address is preserved both ways. Checksums are updated
//! incrementally (RFC 1624), never recomputed over the payload.

use std::net::Ipv4Addr;

use rvs_wire::{ip_proto, ipv4, ipv6, sctp, tcp, udp, PacketBuf};

use super::ToServer;
use crate::config::Snapshot;
use crate::conn::{bytes_addr, AddrBytes, Conn};
use crate::fastpath::Rewrite;
use crate::neighbor::NeighborTable;
use crate::parse::Parsed;
use crate::verdict::{DropReason, Verdict};

/// Which end of the packet to rewrite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Side {
    /// Destination (input direction: VIP → RIP).
    Dst,
    /// Source (output direction: RIP → VIP).
    Src,
}

/// Client → real server: destination becomes the server.
pub(crate) fn transmit_in(pkt: &mut PacketBuf<'_>, p: &Parsed, c: &Conn, to: &ToServer) -> Verdict {
    if rewrite(pkt.data_mut(), p, Side::Dst, &c.daddr, c.dport).is_none() {
        return Verdict::Drop(DropReason::Malformed);
    }
    super::send(pkt, &to.egress, to.mac)
}

/// Real server → client: TTL down, source becomes the virtual service, then
/// routed to the client like any forwarded packet.
pub(crate) fn transmit_out(
    pkt: &mut PacketBuf<'_>,
    p: &Parsed,
    c: &Conn,
    snapshot: &Snapshot,
    neighbors: &NeighborTable,
) -> Verdict {
    let reply = Reply {
        snapshot,
        neighbors,
        client: p.dst,
    };
    reply.send(pkt, p, |frame| {
        rewrite(frame, p, Side::Src, &c.vaddr, c.vport)
    })
}

/// A reply the director routes to the client (NAT's and FullNAT's way
/// back): where to, and the tables that say how.
pub(super) struct Reply<'a> {
    pub(super) snapshot: &'a Snapshot,
    pub(super) neighbors: &'a NeighborTable,
    pub(super) client: std::net::IpAddr,
}

impl Reply<'_> {
    /// TTL / hop limit down first (the director is the client's router),
    /// then the method's `rewrite` of the frame, then the route to the
    /// client.
    pub(super) fn send(
        &self,
        pkt: &mut PacketBuf<'_>,
        p: &Parsed,
        rewrite: impl FnOnce(&mut [u8]) -> Option<()>,
    ) -> Verdict {
        let Some(ip) = p.ip(pkt.data_mut()) else {
            return Verdict::Drop(DropReason::Malformed);
        };
        if !decrement_ttl(ip, p.v6) {
            return Verdict::Drop(DropReason::TtlExceeded);
        }
        if rewrite(pkt.data_mut()).is_none() {
            return Verdict::Drop(DropReason::Malformed);
        }
        let Some(route) = self.snapshot.route(self.client) else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        super::send(pkt, &route, self.neighbors.lookup(route.next_hop))
    }
}

/// The XDP program's client → server rewrite.
pub(crate) fn fast_rewrite_in(c: &Conn) -> Rewrite {
    Rewrite::MasqIn {
        addr: bytes_addr(&c.daddr, c.v6()),
        port: c.dport,
    }
}

/// The XDP program's server → client rewrite.
pub(crate) fn fast_rewrite_out(c: &Conn) -> Rewrite {
    Rewrite::MasqOut {
        addr: bytes_addr(&c.vaddr, c.v6()),
        port: c.vport,
    }
}

/// Rewrites the address and port on `side` of the parsed packet in `frame`,
/// with one incremental update of the TCP/UDP checksum for both (RFC 1624
/// works on any even run: the bytes [address, port]) and one of the IPv4
/// header checksum for the address. `None` only if the frame no longer
/// matches what was parsed.
pub(super) fn rewrite(
    frame: &mut [u8],
    p: &Parsed,
    side: Side,
    addr: &AddrBytes,
    port: u16,
) -> Option<()> {
    let (header, l4) = p.ip_and_l4(frame)?;
    let alen = if p.v6 { 16 } else { 4 };
    let mut old = [0u8; 18];
    let mut new = [0u8; 18];
    new[..alen].copy_from_slice(&addr[..alen]);
    new[alen..alen + 2].copy_from_slice(&port.to_be_bytes());
    if p.v6 {
        let mut ip = ipv6::Packet::new_unchecked(header);
        let new_addr = std::net::Ipv6Addr::from(*addr);
        match side {
            Side::Dst => {
                old[..16].copy_from_slice(&ip.dst_addr().octets());
                ip.set_dst_addr(new_addr);
            }
            Side::Src => {
                old[..16].copy_from_slice(&ip.src_addr().octets());
                ip.set_src_addr(new_addr);
            }
        }
    } else {
        let mut ip = ipv4::Packet::new_unchecked(header);
        let new_addr = Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]);
        match side {
            Side::Dst => {
                old[..4].copy_from_slice(&ip.dst_addr().octets());
                ip.set_dst_addr_incremental(new_addr);
            }
            Side::Src => {
                old[..4].copy_from_slice(&ip.src_addr().octets());
                ip.set_src_addr_incremental(new_addr);
            }
        }
    }
    let (old, new) = (&mut old[..alen + 2], &new[..alen + 2]);
    match p.key.proto {
        ip_proto::TCP => {
            let mut t = tcp::Packet::new_unchecked(l4);
            let old_port = match side {
                Side::Dst => t.dst_port(),
                Side::Src => t.src_port(),
            };
            old[alen..].copy_from_slice(&old_port.to_be_bytes());
            match side {
                Side::Dst => t.set_dst_port(port),
                Side::Src => t.set_src_port(port),
            }
            t.update_checksum(old, new);
        }
        ip_proto::UDP => {
            let mut u = udp::Packet::new_unchecked(l4);
            let old_port = match side {
                Side::Dst => u.dst_port(),
                Side::Src => u.src_port(),
            };
            old[alen..].copy_from_slice(&old_port.to_be_bytes());
            match side {
                Side::Dst => u.set_dst_port(port),
                Side::Src => u.set_src_port(port),
            }
            u.update_checksum(old, new);
        }
        ip_proto::SCTP => {
            let mut sc = sctp::Packet::new_unchecked(l4);
            let old_port = match side {
                Side::Dst => sc.dst_port(),
                Side::Src => sc.src_port(),
            };
            // As sctp_dnat_handler / sctp_snat_handler: the CRC32c covers
            // the SCTP packet only (not the addresses) and is recomputed,
            // over the whole packet, only when the port changes. A first
            // fragment does not hold the whole packet: it cannot be given
            // a right checksum, so it is refused (SCTP sets DF and avoids
            // fragmentation; the kernel reassembles first).
            if old_port != port {
                if p.first_fragment.is_some() {
                    return None;
                }
                match side {
                    Side::Dst => sc.set_dst_port(port),
                    Side::Src => sc.set_src_port(port),
                }
                sc.fill_checksum();
            }
        }
        _ => return None,
    }
    Some(())
}

/// Decrements TTL / hop limit for a routed reply; `false` when it ran out.
pub(crate) fn decrement_ttl(ip: &mut [u8], v6: bool) -> bool {
    if v6 {
        let mut p = ipv6::Packet::new_unchecked(ip);
        let h = p.hop_limit();
        if h <= 1 {
            return false;
        }
        p.set_hop_limit(h - 1);
    } else {
        let mut p = ipv4::Packet::new_unchecked(ip);
        if p.ttl() <= 1 {
            return false;
        }
        p.decrement_ttl_incremental();
    }
    true
}
