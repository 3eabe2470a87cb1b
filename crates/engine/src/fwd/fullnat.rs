//! FullNAT (an RVS extension; DPVS and Alibaba's LVS call it FNAT): both
//! ends of the packet are translated. On the way in the client
//! CIP:cport becomes one of the service's local addresses LIP:lport (given
//! to the connection when it was scheduled) and VIP:vport becomes
//! RIP:rport; on the way back RIP:rport becomes VIP:vport and LIP:lport
//! becomes CIP:cport, and the packet is routed to the client (TTL
//! decremented: the director is its router). So a real server anywhere
//! behind a route answers the director, which it need not have as its
//! gateway, and does not hold the VIP.
//!
//! The server does not see the client's address. With `toa` the client's
//! address and port ride in a TCP option (TOA: kind 254, length 8 with an
//! IPv4 address, 20 with an IPv6 one, port first, as DPVS writes it) on
//! the client's first ACK, the one that completes the handshake, which is
//! where the TOA kernel module on the server reads it.
//!
//! Checksums are updated incrementally as for NAT (`nat.rs`), each end a
//! rewrite of its own.

use rvs_wire::{ip_proto, ipv4, ipv6, tcp, PacketBuf};

use super::nat::{self, Side};
use super::ToServer;
use crate::config::Snapshot;
use crate::conn::{bytes_addr, Conn};
use crate::fastpath::Rewrite;
use crate::neighbor::NeighborTable;
use crate::parse::Parsed;
use crate::verdict::{DropReason, Verdict};

/// TOA's TCP option kind.
pub(crate) const TOA_KIND: u8 = 254;

/// Client → real server: the source becomes the local address and port,
/// the destination the server; with `toa` the client rides along in the
/// handshake-completing ACK.
pub(crate) fn transmit_in(
    pkt: &mut PacketBuf<'_>,
    p: &Parsed,
    c: &Conn,
    to: &ToServer,
    toa: bool,
) -> Verdict {
    let frame = pkt.data_mut();
    if nat::rewrite(frame, p, Side::Dst, &c.daddr, c.dport).is_none()
        || nat::rewrite(frame, p, Side::Src, &c.laddr, c.lport).is_none()
    {
        return Verdict::Drop(DropReason::Malformed);
    }
    if toa {
        add_toa(pkt, p, c, to.egress.mtu);
    }
    super::send(pkt, &to.egress, to.mac)
}

/// Real server → client: TTL down, the source becomes the virtual service
/// and the destination the client, then routed to the client.
pub(crate) fn transmit_out(
    pkt: &mut PacketBuf<'_>,
    p: &Parsed,
    c: &Conn,
    snapshot: &Snapshot,
    neighbors: &NeighborTable,
) -> Verdict {
    let reply = nat::Reply {
        snapshot,
        neighbors,
        client: bytes_addr(&c.caddr, c.v6()),
    };
    reply.send(pkt, p, |frame| {
        nat::rewrite(frame, p, Side::Src, &c.vaddr, c.vport)?;
        nat::rewrite(frame, p, Side::Dst, &c.caddr, c.cport)
    })
}

/// The XDP program's client → server rewrite.
pub(crate) fn fast_rewrite_in(c: &Conn) -> Rewrite {
    let v6 = c.v6();
    Rewrite::FullNatIn {
        src: bytes_addr(&c.laddr, v6),
        src_port: c.lport,
        dst: bytes_addr(&c.daddr, v6),
        dst_port: c.dport,
    }
}

/// The XDP program's server → client rewrite.
pub(crate) fn fast_rewrite_out(c: &Conn) -> Rewrite {
    let v6 = c.v6();
    Rewrite::FullNatOut {
        src: bytes_addr(&c.vaddr, v6),
        src_port: c.vport,
        dst: bytes_addr(&c.caddr, v6),
        dst_port: c.cport,
    }
}

/// Inserts the TOA option after the TCP header's options, moving the
/// payload up. Left out (the connection still works, without the client's
/// address) when the header has no room for it (60 bytes at most), the
/// packet would outgrow the egress MTU or the frame's buffer, or the packet
/// is a fragment. Checksums are adjusted, not recomputed: the option and
/// the payload after it start on even offsets, so only the data offset
/// word, the length in the pseudo header and the option's own words change
/// the sum.
fn add_toa(pkt: &mut PacketBuf<'_>, p: &Parsed, c: &Conn, mtu: u16) {
    if p.key.proto != ip_proto::TCP || p.first_fragment.is_some() {
        return;
    }
    let mut option = [0u8; 20];
    let alen = if p.v6 { 16 } else { 4 };
    let opt_len = 4 + alen;
    option[0] = TOA_KIND;
    option[1] = opt_len as u8;
    option[2..4].copy_from_slice(&c.cport.to_be_bytes());
    option[4..4 + alen].copy_from_slice(&c.caddr[..alen]);
    let option = &option[..opt_len];

    let ip_end = p.l2_len + p.ip_len;
    let l4_len = p.ip_len - (p.l4_start - p.l2_len);
    let frame_len = pkt.len();
    let Some(l4) = pkt.data().get(p.l4_start..ip_end) else {
        return;
    };
    let header_len = tcp::Packet::new_unchecked(l4).header_len();
    if header_len + opt_len > 60
        || p.ip_len + opt_len > usize::from(mtu)
        || ip_end + opt_len > frame_len + pkt.tailroom()
    {
        return;
    }
    // Ethernet padding beyond the IP packet goes; the frame ends where the
    // grown packet does.
    if !pkt.set_len(ip_end + opt_len) {
        return;
    }
    let frame = pkt.data_mut();
    let at = p.l4_start + header_len;
    frame.copy_within(at..ip_end, at + opt_len);
    frame[at..at + opt_len].copy_from_slice(option);

    let (header, l4) = frame[p.l2_len..ip_end + opt_len].split_at_mut(p.l4_start - p.l2_len);
    // Byte 12 holds the data offset over 4 reserved bits; byte 13 the flags.
    let old_word = [l4[12], l4[13]];
    l4[12] = ((((header_len + opt_len) / 4) as u8) << 4) | (l4[12] & 0x0f);
    let new_word = [l4[12], l4[13]];
    let mut seg = tcp::Packet::new_unchecked(l4);
    // Old and new, word for word: data offset, pseudo-header length, the
    // option (zero before).
    let mut old = [0u8; 24];
    let mut new = [0u8; 24];
    old[..2].copy_from_slice(&old_word);
    new[..2].copy_from_slice(&new_word);
    old[2..4].copy_from_slice(&(l4_len as u16).to_be_bytes());
    new[2..4].copy_from_slice(&((l4_len + opt_len) as u16).to_be_bytes());
    new[4..4 + opt_len].copy_from_slice(option);
    seg.update_checksum(&old[..4 + opt_len], &new[..4 + opt_len]);
    let grown = (p.ip_len + opt_len) as u16;
    if p.v6 {
        let mut ip = ipv6::Packet::new_unchecked(header);
        ip.set_payload_len(grown - 40);
    } else {
        let mut ip = ipv4::Packet::new_unchecked(header);
        let check = rvs_wire::checksum::adjust_u16(ip.checksum(), ip.total_len(), grown);
        ip.set_total_len(grown);
        ip.set_checksum(check);
    }
}
