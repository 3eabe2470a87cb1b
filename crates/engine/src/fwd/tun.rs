//! Tunnelling (`-i`, IPVS "Tunnel", `ip_vs_tunnel_xmit` and
//! `ip_vs_tunnel_xmit_v6`): an outer header DIP → RIP is put in front of the
//! untouched inner packet, and the real server decapsulates and answers the
//! client directly from the VIP. The destination's [`Tunnel`] picks what
//! lies between the two headers, as the kernel's `tun_type` does:
//!
//! * IPIP: nothing; IPv4 in IPv4 (protocol 4, RFC 2003) or IPv6 in IPv6
//!   (next header 41, RFC 2473).
//! * GUE: UDP from a source port of the flow's hash to the server's GUE
//!   port, then a GUE version 0 header naming the inner protocol
//!   (`ipvs_gue_encap`). The UDP checksum is 0 with `nocsum` and summed
//!   with `csum` and `remcsum` (the kernel adds the remote-checksum option
//!   only to packets whose checksum is still partial, which a forwarded
//!   packet never is).
//! * GRE: a 4-byte header with the inner EtherType, 8 bytes with the
//!   checksum flag and field for `csum` (`ipvs_gre_encap`).
//!
//! The outer packet must fit the egress MTU. When an IPv4 packet would not
//! and has DF set, the client gets ICMP "fragmentation needed" with the MTU
//! minus the tunnel's overhead (20 for IPIP, 32 for GUE, 24 or 28 for GRE),
//! as the kernel does; without DF the outer packet is fragmented, as the
//! kernel does it (the first fragment in place, the others as extra frames
//! of the verdict), and the real server reassembles it. IPv6 is never
//! fragmented on the way: an IPv6 packet that would not fit gets ICMPv6
//! "packet too big" with the MTU minus the overhead (40 more than IPv4's).
//!
//! Outer header fields: TOS and DF copied from the inner header, TTL 64, and
//! identification 0 when DF is set (the kernel's `ip_select_ident` gives
//! unfragmentable packets id 0) or the inner packet's otherwise — the
//! kernel would draw a fresh one there; copying it keeps the fast path free
//! of a shared counter and the two paths byte-identical.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rvs_vocab::Tunnel;
use rvs_wire::ethernet::ethertype;
use rvs_wire::{checksum, gre, gue, icmpv4, icmpv6, ip_proto, ipv4, ipv6, udp, PacketBuf};

use super::{Ctx, ToServer};
use crate::conn::Conn;
use crate::fastpath::{Rewrite, TunnelEncap};
use crate::parse::Parsed;
use crate::reply;
use crate::verdict::{DropReason, Verdict};

/// TTL of the outer header (the kernel's default hop limit).
const OUTER_TTL: u8 = 64;

/// The longest header between the outer IP header and the inner packet
/// (UDP + GUE; GRE with checksum is 8).
const MAX_ENCAP_LEN: usize = gue::UDP_OVERHEAD;

/// Bytes of the header between the outer IP header and the inner packet.
pub(crate) fn encap_len(tunnel: Tunnel) -> usize {
    match tunnel {
        Tunnel::Ipip => 0,
        Tunnel::Gue { .. } => gue::UDP_OVERHEAD,
        Tunnel::Gre { checksum } => gre::header_len(checksum.summed()),
    }
}

/// The outer IP header's protocol for this tunnel and inner family.
fn outer_protocol(tunnel: Tunnel, inner_v6: bool) -> u8 {
    match tunnel {
        Tunnel::Ipip if inner_v6 => ip_proto::IPV6,
        Tunnel::Ipip => ip_proto::IPIP,
        Tunnel::Gue { .. } => ip_proto::UDP,
        Tunnel::Gre { .. } => ip_proto::GRE,
    }
}

/// The flow hash a GUE source port is drawn from: a fixed-key mix of the
/// connection's client and virtual addresses, ports and protocol. The
/// kernel uses the skb's flow hash (random key per boot); what matters for
/// the network is the same: one connection, one source port, connections
/// spread over the range.
fn flow_hash(c: &Conn) -> u32 {
    let len = if c.v6() { 16 } else { 4 };
    // FNV-1a, then murmur3's finalizer so the upper half (the part
    // `gue::source_port` uses) depends on every input bit.
    let mut h: u32 = 0x811c_9dc5;
    let ports = [c.cport.to_be_bytes(), c.vport.to_be_bytes()];
    let bytes = c.caddr[..len]
        .iter()
        .chain(&c.vaddr[..len])
        .chain(ports.iter().flatten())
        .chain(core::iter::once(&c.proto));
    for &b in bytes {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// The header between the outer IP header and an inner packet of
/// `inner` bytes, checksums included, into `out[..encap_len(tunnel)]`.
/// `pseudo` is the outer IP pseudo-header sum of a UDP datagram of the
/// resulting length (used by GUE with a checksum).
fn emit_encap(
    out: &mut [u8],
    tunnel: Tunnel,
    c: &Conn,
    inner: &[u8],
    pseudo: impl Fn(u16) -> u32,
) -> Result<(), DropReason> {
    let v6 = c.v6();
    match tunnel {
        Tunnel::Ipip => Ok(()),
        Tunnel::Gue { port, checksum } => {
            let proto = if v6 { ip_proto::IPV6 } else { ip_proto::IPIP };
            gue::emit(
                out,
                gue::source_port(flow_hash(c)),
                port,
                proto,
                inner.len(),
            )
            .map_err(|_| DropReason::TooBig)?;
            if checksum.summed() {
                let len = (gue::UDP_OVERHEAD + inner.len()) as u16;
                let sum = checksum::combine(
                    pseudo(len),
                    checksum::combine(
                        checksum::sum(&out[..gue::UDP_OVERHEAD]),
                        checksum::sum(inner),
                    ),
                );
                // RFC 768: a computed 0 is sent as all ones.
                let value = match checksum::finish(sum) {
                    0 => 0xffff,
                    v => v,
                };
                udp::Packet::new_unchecked(&mut out[..udp::HEADER_LEN]).set_checksum(value);
            }
            Ok(())
        }
        Tunnel::Gre { checksum } => {
            let proto = if v6 { ethertype::IPV6 } else { ethertype::IPV4 };
            let with_checksum = checksum.summed();
            gre::emit(out, proto, with_checksum).map_err(|_| DropReason::Malformed)?;
            if with_checksum {
                let len = gre::header_len(true);
                let sum = checksum::combine(checksum::sum(&out[..len]), checksum::sum(inner));
                out[4..6].copy_from_slice(&checksum::finish(sum).to_be_bytes());
            }
            Ok(())
        }
    }
}

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

/// IPv4 in IPv4, with the destination's tunnel header between.
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
    let inner = &*inner;
    let (tos, dont_frag, inner_ident) = {
        let h = ipv4::Packet::new_unchecked(inner);
        (h.tos(), h.dont_frag(), h.ident())
    };
    let enc_len = encap_len(to.tunnel);
    let mut encap = [0u8; MAX_ENCAP_LEN];
    let pseudo =
        |len: u16| checksum::pseudo_header_v4(&src.octets(), &dst.octets(), ip_proto::UDP, len);
    if let Err(reason) = emit_encap(&mut encap[..enc_len], to.tunnel, c, inner, pseudo) {
        return Verdict::Drop(reason);
    }
    let overhead = ipv4::HEADER_LEN + enc_len;
    let protocol = outer_protocol(to.tunnel, false);
    if p.ip_len + overhead > usize::from(to.egress.mtu) {
        if !dont_frag {
            let outer = Outer {
                src,
                dst,
                protocol,
                tos,
                dont_frag: false,
                ident: ctx.next_ident(),
            };
            return fragment_outer(pkt, p, to, &outer, &encap[..enc_len], ctx);
        }
        let mtu = to.egress.mtu.saturating_sub(overhead as u16);
        return frag_needed(pkt, p, mtu, ctx);
    }
    let outer = Outer {
        src,
        dst,
        protocol,
        tos,
        dont_frag,
        // As ip_select_ident for unfragmentable packets; see the module doc.
        ident: if dont_frag { 0 } else { inner_ident },
    };
    match encapsulate(pkt, p, &outer, &encap[..enc_len]) {
        Ok(()) => super::send(pkt, &to.egress, to.mac),
        Err(reason) => Verdict::Drop(reason),
    }
}

/// The outer packet of an inner packet without DF too big for the egress
/// MTU, fragmented as the kernel fragments it (RFC 791): the first
/// fragment in place, the others as extra frames ([`Ctx::extra`]) with the
/// same L2 header, one identification for all. The outer payload is the
/// tunnel header `encap` followed by the inner packet; the real server
/// reassembles the outer packet before it decapsulates.
fn fragment_outer(
    pkt: &mut PacketBuf<'_>,
    p: &Parsed,
    to: &ToServer,
    o: &Outer,
    encap: &[u8],
    ctx: &mut Ctx<'_>,
) -> Verdict {
    let Some(next_hop_mac) = to.mac else {
        // Resolving first: nothing is sent now anyway.
        return super::send(pkt, &to.egress, None);
    };
    let chunk = (usize::from(to.egress.mtu).saturating_sub(ipv4::HEADER_LEN)) / 8 * 8;
    if chunk < encap.len().max(8) {
        return Verdict::Drop(DropReason::TooBig);
    }
    let l2_len = p.l2_len;
    let ip_start = l2_len;
    let payload_len = encap.len() + p.ip_len;
    // The later fragments first, from the untouched inner packet (the
    // tunnel header lies wholly in the first fragment: chunk >= its length).
    let mut offset = chunk;
    while offset < payload_len {
        let end = (offset + chunk).min(payload_len);
        let more = end < payload_len;
        let frame_len = l2_len + ipv4::HEADER_LEN + (end - offset);
        let data = pkt.data();
        let Some(out) = ctx.extra.push(frame_len) else {
            return Verdict::Drop(DropReason::TooBig);
        };
        out[..l2_len].copy_from_slice(&data[..l2_len]);
        super::set_macs(out, to.egress.mac, next_hop_mac);
        if emit_fragment_header(&mut out[l2_len..], o, end - offset, more, offset).is_err() {
            return Verdict::Drop(DropReason::Malformed);
        }
        let (from, to_) = (
            ip_start + offset - encap.len(),
            ip_start + end - encap.len(),
        );
        out[l2_len + ipv4::HEADER_LEN..].copy_from_slice(&data[from..to_]);
        offset = end;
    }
    // The first fragment in place: outer header, tunnel header, the start
    // of the inner packet.
    let overhead = ipv4::HEADER_LEN + encap.len();
    if !pkt.push_front(overhead) {
        return Verdict::Drop(DropReason::NoHeadroom);
    }
    let data = pkt.data_mut();
    data.copy_within(overhead..overhead + l2_len, 0);
    if emit_fragment_header(&mut data[l2_len..], o, chunk, true, 0).is_err() {
        return Verdict::Drop(DropReason::Malformed);
    }
    let enc_start = l2_len + ipv4::HEADER_LEN;
    data[enc_start..enc_start + encap.len()].copy_from_slice(encap);
    pkt.truncate(l2_len + ipv4::HEADER_LEN + chunk);
    super::send(pkt, &to.egress, to.mac)
}

/// An outer header of one fragment: `len` bytes of the outer payload
/// from byte `offset`, more to follow or not.
fn emit_fragment_header(
    buf: &mut [u8],
    o: &Outer,
    len: usize,
    more: bool,
    offset: usize,
) -> Result<(), rvs_wire::Error> {
    o.emit(buf, false, len)?;
    let mut h = ipv4::Packet::new_unchecked(&mut buf[..ipv4::HEADER_LEN]);
    h.set_more_frags(more);
    h.set_frag_offset(u16::try_from(offset).map_err(|_| rvs_wire::Error)?);
    h.fill_checksum();
    Ok(())
}

/// IPv6 in IPv6, with the destination's tunnel header between.
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
    let inner = &*inner;
    let traffic_class = ipv6::Packet::new_unchecked(inner).traffic_class();
    let dst = Ipv6Addr::from(c.daddr);
    let enc_len = encap_len(to.tunnel);
    let mut encap = [0u8; MAX_ENCAP_LEN];
    let pseudo = |len: u16| {
        checksum::pseudo_header_v6(&src.octets(), &dst.octets(), ip_proto::UDP, u32::from(len))
    };
    if let Err(reason) = emit_encap(&mut encap[..enc_len], to.tunnel, c, inner, pseudo) {
        return Verdict::Drop(reason);
    }
    let overhead = ipv6::HEADER_LEN + enc_len;
    if p.ip_len + overhead > usize::from(to.egress.mtu) {
        let mtu = to.egress.mtu.saturating_sub(overhead as u16);
        return too_big_v6(pkt, p, mtu, ctx);
    }
    let Ok(payload_len) = u16::try_from(enc_len + p.ip_len) else {
        return Verdict::Drop(DropReason::TooBig);
    };
    if !pkt.push_front(overhead) {
        return Verdict::Drop(DropReason::NoHeadroom);
    }
    let l2_len = p.l2_len;
    let data = pkt.data_mut();
    data.copy_within(overhead..overhead + l2_len, 0);
    let fields = ipv6::HeaderFields {
        src,
        dst,
        next_header: outer_protocol(to.tunnel, true),
        payload_len,
        hop_limit: OUTER_TTL,
        traffic_class,
        flow_label: 0,
    };
    if ipv6::emit_header(&mut data[l2_len..], &fields).is_err() {
        return Verdict::Drop(DropReason::Malformed);
    }
    let enc_start = l2_len + ipv6::HEADER_LEN;
    data[enc_start..enc_start + enc_len].copy_from_slice(&encap[..enc_len]);
    pkt.truncate(l2_len + overhead + p.ip_len);
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

/// The XDP program's rewrite for this server. A GUE or GRE checksum is
/// filled there from the headers ([`TunnelEncap`]), which holds for TCP and
/// UDP only: SCTP connections through such a tunnel stay with the engine.
pub(crate) fn fast_rewrite(c: &Conn, to: &ToServer) -> Option<Rewrite> {
    let checksum = to.tunnel.checksum().summed();
    if checksum && c.proto == ip_proto::SCTP {
        return None;
    }
    let encap = match to.tunnel {
        Tunnel::Ipip => TunnelEncap::Ipip,
        Tunnel::Gue { port, .. } => TunnelEncap::Gue {
            src_port: gue::source_port(flow_hash(c)),
            dst_port: port,
            checksum,
        },
        Tunnel::Gre { .. } => TunnelEncap::Gre { checksum },
    };
    let mtu = to.egress.mtu;
    if c.v6() {
        return Some(Rewrite::Tunnel6 {
            src: to.egress.source_v6?,
            dst: Ipv6Addr::from(c.daddr),
            mtu,
            encap,
        });
    }
    Some(Rewrite::Tunnel {
        src: to.egress.source_v4?,
        dst: Ipv4Addr::new(c.daddr[0], c.daddr[1], c.daddr[2], c.daddr[3]),
        mtu,
        encap,
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
    protocol: u8,
    tos: u8,
    dont_frag: bool,
    ident: u16,
}

impl Outer {
    /// Writes the outer IPv4 header into `buf[..20]` for `payload_len`
    /// bytes after it; TOS copied from the inner packet, as RFC 2003 §3.1
    /// and the kernel do.
    fn emit(
        &self,
        buf: &mut [u8],
        dont_frag: bool,
        payload_len: usize,
    ) -> Result<(), rvs_wire::Error> {
        let payload_len = u16::try_from(payload_len).map_err(|_| rvs_wire::Error)?;
        ipv4::emit_header(
            buf,
            &ipv4::HeaderFields {
                src: self.src,
                dst: self.dst,
                protocol: self.protocol,
                payload_len,
                ttl: OUTER_TTL,
                tos: self.tos,
                ident: self.ident,
                dont_frag,
            },
        )
    }
}

/// Prepends the outer header and the tunnel header `encap` between the L2
/// header (kept) and the inner packet, trimming any Ethernet padding.
fn encapsulate(
    pkt: &mut PacketBuf<'_>,
    p: &Parsed,
    o: &Outer,
    encap: &[u8],
) -> Result<(), DropReason> {
    let overhead = ipv4::HEADER_LEN + encap.len();
    if !pkt.push_front(overhead) {
        return Err(DropReason::NoHeadroom);
    }
    let l2_len = p.l2_len;
    let data = pkt.data_mut();
    data.copy_within(overhead..overhead + l2_len, 0);
    o.emit(&mut data[l2_len..], o.dont_frag, encap.len() + p.ip_len)
        .map_err(|_| DropReason::Malformed)?;
    let enc_start = l2_len + ipv4::HEADER_LEN;
    data[enc_start..enc_start + encap.len()].copy_from_slice(encap);
    pkt.truncate(l2_len + overhead + p.ip_len);
    Ok(())
}
