//! IP-in-IP tunnelling (`-i`, IPVS "Tunnel", `ip_vs_tunnel_xmit` and
//! `ip_vs_tunnel_xmit_v6`): an outer header DIP → RIP is put in front of the
//! untouched inner packet, IPv4 in IPv4 (protocol 4, RFC 2003) or IPv6 in
//! IPv6 (next header 41, RFC 2473). The real server decapsulates and answers
//! the client directly from the VIP.
//!
//! The outer packet must fit the egress MTU. When an IPv4 packet would not
//! and has DF set, the client gets ICMP "fragmentation needed" with the MTU
//! minus the 20-byte overhead, as the kernel does; without DF the outer
//! packet is fragmented, as the kernel does it (the first fragment in
//! place, the others as extra frames of the verdict), and the real server
//! reassembles it. IPv6 is never fragmented on the way: an IPv6 packet that
//! would not fit gets ICMPv6 "packet too big" with the MTU minus 40.
//!
//! Outer header fields: TOS and DF copied from the inner header, TTL 64, and
//! identification 0 when DF is set (the kernel's `ip_select_ident` gives
//! unfragmentable packets id 0) or the inner packet's otherwise — the
//! kernel would draw a fresh one there; copying it keeps the fast path free
//! of a shared counter and the two paths byte-identical.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rvs_wire::{icmpv4, icmpv6, ipip, ipv4, ipv6, PacketBuf};

use super::{Ctx, ToServer};
use crate::conn::Conn;
use crate::fastpath::Rewrite;
use crate::parse::Parsed;
use crate::reply;
use crate::verdict::{DropReason, Verdict};

/// TTL of the outer header (the kernel's default hop limit).
const OUTER_TTL: u8 = 64;

/// Wraps the packet and sends it to the real server, or answers the client
/// when it is too big for the tunnel.
pub(crate) fn transmit(
    pkt: &mut PacketBuf<'_>,
    p: &Parsed,
    c: &Conn,
    to: &ToServer,
    ctx: &mut Ctx<'_>,
) -> Verdict {
    match (to.egress.tunnel_source(c.v6()), p.v6) {
        (Some(IpAddr::V4(src)), false) => transmit_v4(pkt, p, c, to, ctx, src),
        (Some(IpAddr::V6(src)), true) => transmit_v6(pkt, p, c, to, ctx, src),
        _ => Verdict::Drop(DropReason::UnsupportedFamily),
    }
}

/// IPv4 in IPv4.
fn transmit_v4(
    pkt: &mut PacketBuf<'_>,
    p: &Parsed,
    c: &Conn,
    to: &ToServer,
    ctx: &mut Ctx<'_>,
    src: Ipv4Addr,
) -> Verdict {
    let dst = Ipv4Addr::new(c.daddr[0], c.daddr[1], c.daddr[2], c.daddr[3]);
    // The IPv4 header parse validated (the connection is IPv4).
    let Some(inner) = p.ip(pkt.data_mut()) else {
        return Verdict::Drop(DropReason::Malformed);
    };
    let inner = ipv4::Packet::new_unchecked(&*inner);
    let (tos, dont_frag, inner_ident) = (inner.tos(), inner.dont_frag(), inner.ident());
    if p.ip_len + ipip::OVERHEAD > usize::from(to.egress.mtu) {
        if !dont_frag {
            let outer = Outer {
                src,
                dst,
                tos,
                dont_frag: false,
                ident: ctx.next_ident(),
            };
            return fragment_outer(pkt, p, to, &outer, ctx);
        }
        let mtu = to.egress.mtu.saturating_sub(ipip::OVERHEAD as u16);
        return frag_needed(pkt, p, mtu, ctx);
    }
    let outer = Outer {
        src,
        dst,
        tos,
        dont_frag,
        // As ip_select_ident for unfragmentable packets; see the module doc.
        ident: if dont_frag { 0 } else { inner_ident },
    };
    match encapsulate(pkt, p, &outer) {
        Ok(()) => super::send(pkt, &to.egress, to.mac),
        Err(reason) => Verdict::Drop(reason),
    }
}

/// The outer packet of an inner packet without DF too big for the egress
/// MTU, fragmented as the kernel fragments it (RFC 791): the first
/// fragment in place, the others as extra frames ([`Ctx::extra`]) with the
/// same L2 header, one identification for all. The real server reassembles
/// the outer packet before it decapsulates.
fn fragment_outer(
    pkt: &mut PacketBuf<'_>,
    p: &Parsed,
    to: &ToServer,
    o: &Outer,
    ctx: &mut Ctx<'_>,
) -> Verdict {
    let Some(next_hop_mac) = to.mac else {
        // Resolving first: nothing is sent now anyway.
        return super::send(pkt, &to.egress, None);
    };
    let chunk = (usize::from(to.egress.mtu).saturating_sub(ipip::OVERHEAD)) / 8 * 8;
    if chunk == 0 {
        return Verdict::Drop(DropReason::TooBig);
    }
    let l2_len = p.l2_len;
    let ip_start = l2_len;
    // The later fragments first, from the untouched inner packet.
    let mut offset = chunk;
    while offset < p.ip_len {
        let end = (offset + chunk).min(p.ip_len);
        let more = end < p.ip_len;
        let frame_len = l2_len + ipip::OVERHEAD + (end - offset);
        let data = pkt.data();
        let Some(out) = ctx.extra.push(frame_len) else {
            return Verdict::Drop(DropReason::TooBig);
        };
        out[..l2_len].copy_from_slice(&data[..l2_len]);
        super::set_macs(out, to.egress.mac, next_hop_mac);
        if emit_fragment_header(&mut out[l2_len..], o, end - offset, more, offset).is_err() {
            return Verdict::Drop(DropReason::Malformed);
        }
        out[l2_len + ipip::OVERHEAD..].copy_from_slice(&data[ip_start + offset..ip_start + end]);
        offset = end;
    }
    // The first fragment in place: the outer header, the first chunk.
    if !pkt.push_front(ipip::OVERHEAD) {
        return Verdict::Drop(DropReason::NoHeadroom);
    }
    let data = pkt.data_mut();
    data.copy_within(ipip::OVERHEAD..ipip::OVERHEAD + l2_len, 0);
    if emit_fragment_header(&mut data[l2_len..], o, chunk, true, 0).is_err() {
        return Verdict::Drop(DropReason::Malformed);
    }
    pkt.truncate(l2_len + ipip::OVERHEAD + chunk);
    super::send(pkt, &to.egress, to.mac)
}

/// An outer IPIP header of one fragment: `len` bytes of the inner packet
/// from byte `offset`, more to follow or not.
fn emit_fragment_header(
    buf: &mut [u8],
    o: &Outer,
    len: usize,
    more: bool,
    offset: usize,
) -> Result<(), rvs_wire::Error> {
    ipip::emit_outer(buf, o.src, o.dst, o.tos, false, len, OUTER_TTL, o.ident)?;
    let mut h = ipv4::Packet::new_unchecked(&mut buf[..ipv4::HEADER_LEN]);
    h.set_more_frags(more);
    h.set_frag_offset(u16::try_from(offset).map_err(|_| rvs_wire::Error)?);
    h.fill_checksum();
    Ok(())
}

/// IPv6 in IPv6.
fn transmit_v6(
    pkt: &mut PacketBuf<'_>,
    p: &Parsed,
    c: &Conn,
    to: &ToServer,
    ctx: &mut Ctx<'_>,
    src: Ipv6Addr,
) -> Verdict {
    let Some(inner) = p.ip(pkt.data_mut()) else {
        return Verdict::Drop(DropReason::Malformed);
    };
    let traffic_class = ipv6::Packet::new_unchecked(&*inner).traffic_class();
    if p.ip_len + ipip::OVERHEAD_V6 > usize::from(to.egress.mtu) {
        let mtu = to.egress.mtu.saturating_sub(ipip::OVERHEAD_V6 as u16);
        return too_big_v6(pkt, p, mtu, ctx);
    }
    if !pkt.push_front(ipip::OVERHEAD_V6) {
        return Verdict::Drop(DropReason::NoHeadroom);
    }
    let l2_len = p.l2_len;
    let data = pkt.data_mut();
    data.copy_within(ipip::OVERHEAD_V6..ipip::OVERHEAD_V6 + l2_len, 0);
    let dst = Ipv6Addr::from(c.daddr);
    if ipip::emit_outer_v6(
        &mut data[l2_len..],
        src,
        dst,
        traffic_class,
        p.ip_len,
        OUTER_TTL,
    )
    .is_err()
    {
        return Verdict::Drop(DropReason::Malformed);
    }
    pkt.truncate(l2_len + ipip::OVERHEAD_V6 + p.ip_len);
    super::send(pkt, &to.egress, to.mac)
}

/// ICMPv6 "packet too big" back to the client, out of the interface the
/// packet came in on.
fn too_big_v6(pkt: &mut PacketBuf<'_>, p: &Parsed, mtu: u16, ctx: &mut Ctx<'_>) -> Verdict {
    let cause = DropReason::FragNeeded;
    let Some(mac) = ctx.snapshot.interface(p.ingress).map(|i| i.mac) else {
        return Verdict::Drop(cause);
    };
    match reply::icmpv6_error(
        pkt,
        p.l2_len,
        mac,
        icmpv6::PACKET_TOO_BIG,
        0,
        u32::from(mtu),
    ) {
        Ok(()) => Verdict::Reply {
            egress: p.ingress,
            cause,
        },
        Err(r) => Verdict::Drop(r),
    }
}

/// The XDP program's rewrite for this server (IPv4 only: IPIP carries IPv4;
/// IPv6 tunnels take the slow path).
pub(crate) fn fast_rewrite(c: &Conn, to: &ToServer) -> Option<Rewrite> {
    let src = to.egress.source_v4?;
    if c.v6() {
        return None;
    }
    Some(Rewrite::Tunnel {
        src,
        dst: Ipv4Addr::new(c.daddr[0], c.daddr[1], c.daddr[2], c.daddr[3]),
        mtu: to.egress.mtu,
    })
}

/// "Fragmentation needed" back to the client, out of the interface the
/// packet came in on.
fn frag_needed(pkt: &mut PacketBuf<'_>, p: &Parsed, mtu: u16, ctx: &mut Ctx<'_>) -> Verdict {
    let cause = DropReason::FragNeeded;
    let Some(mac) = ctx.snapshot.interface(p.ingress).map(|i| i.mac) else {
        return Verdict::Drop(cause);
    };
    let ident = ctx.next_ident();
    match reply::icmpv4_error(
        pkt,
        p.l2_len,
        mac,
        icmpv4::DEST_UNREACHABLE,
        icmpv4::CODE_FRAG_NEEDED,
        mtu,
        ident,
    ) {
        Ok(()) => Verdict::Reply {
            egress: p.ingress,
            cause,
        },
        Err(r) => Verdict::Drop(r),
    }
}

/// The outer header's fields.
struct Outer {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    tos: u8,
    dont_frag: bool,
    ident: u16,
}

/// Prepends the outer header between the L2 header (kept) and the inner
/// packet, trimming any Ethernet padding.
fn encapsulate(pkt: &mut PacketBuf<'_>, p: &Parsed, o: &Outer) -> Result<(), DropReason> {
    if !pkt.push_front(ipip::OVERHEAD) {
        return Err(DropReason::NoHeadroom);
    }
    let l2_len = p.l2_len;
    let data = pkt.data_mut();
    data.copy_within(ipip::OVERHEAD..ipip::OVERHEAD + l2_len, 0);
    ipip::emit_outer(
        &mut data[l2_len..],
        o.src,
        o.dst,
        o.tos,
        o.dont_frag,
        p.ip_len,
        OUTER_TTL,
        o.ident,
    )
    .map_err(|_| DropReason::Malformed)?;
    pkt.truncate(l2_len + ipip::OVERHEAD + p.ip_len);
    Ok(())
}
