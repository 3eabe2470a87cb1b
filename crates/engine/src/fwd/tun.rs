//! IPIP tunnelling (`-i`, IPVS "Tunnel", `ip_vs_tunnel_xmit`): an outer IPv4
//! header DIP → RIP, protocol 4, is put in front of the untouched inner
//! packet (RFC 2003). The real server decapsulates and answers the client
//! directly from the VIP.
//!
//! The outer packet must fit the egress MTU. When it would not and the inner
//! packet has DF set, the client gets ICMP "fragmentation needed" with the
//! MTU minus the 20-byte overhead, as the kernel does; without DF the kernel
//! would fragment the outer packet, which this version does not (counted drop).
//!
//! Outer header fields: TOS and DF copied from the inner header, TTL 64, and
//! identification 0 when DF is set (the kernel's `ip_select_ident` gives
//! unfragmentable packets id 0) or the inner packet's otherwise — the
//! kernel would draw a fresh one there; copying it keeps the fast path free
//! of a shared counter and the two paths byte-identical.

use std::net::Ipv4Addr;

use rvs_wire::{icmpv4, ipip, ipv4, PacketBuf};

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
    let (Some(src), false) = (to.egress.source_v4, c.v6()) else {
        return Verdict::Drop(DropReason::UnsupportedFamily);
    };
    let dst = Ipv4Addr::new(c.daddr[0], c.daddr[1], c.daddr[2], c.daddr[3]);
    // The IPv4 header parse validated (the connection is IPv4).
    let Some(inner) = p.ip(pkt.data_mut()) else {
        return Verdict::Drop(DropReason::Malformed);
    };
    let inner = ipv4::Packet::new_unchecked(&*inner);
    let (tos, dont_frag, inner_ident) = (inner.tos(), inner.dont_frag(), inner.ident());
    if p.ip_len + ipip::OVERHEAD > usize::from(to.egress.mtu) {
        if !dont_frag {
            return Verdict::Drop(DropReason::TooBig);
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

/// The XDP program's rewrite for this server (IPv4 only: IPIP carries IPv4).
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
