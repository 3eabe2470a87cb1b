//! Forwarding methods, one complete transmitter per file, as the kernel's
//! `ip_vs_xmit.c` binds one per connection (`ip_vs_bind_xmit`): each decides
//! the whole way out for its method — the rewrite, the MTU check and its
//! ICMP answer, both MACs — and describes the same rewrite for the XDP fast
//! path, so the two cannot drift apart.

pub(crate) mod dr;
pub(crate) mod fullnat;
pub(crate) mod nat;
pub(crate) mod tun;

use rvs_wire::{EthernetAddress, PacketBuf};

use crate::config::{Egress, ForwardMethod, Snapshot};
use crate::conn::Conn;
use crate::fastpath::Rewrite;
use crate::parse::Parsed;
use crate::verdict::Verdict;

/// The way to a real server (the kernel's destination with its cached route):
/// where it leaves, if the kernel has resolved it the next hop's MAC, and
/// for TUN the tunnel type (the kernel's `dest->tun_type`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ToServer {
    pub(crate) egress: Egress,
    pub(crate) mac: Option<EthernetAddress>,
    /// The encapsulation of a TUN server (IPIP for the other methods).
    pub(crate) tunnel: rvs_vocab::Tunnel,
}

/// What a transmitter may need beyond the frame, its connection and the way
/// to the server: the configuration (interfaces, for ICMP answers), the
/// identification counter of the packets the director makes (ICMP errors,
/// fragmented outer headers) and room for frames beyond the first.
pub(crate) struct Ctx<'a> {
    pub(crate) snapshot: &'a Snapshot,
    pub(crate) ident: &'a mut u16,
    pub(crate) extra: &'a mut crate::extra::ExtraFrames,
}

impl Ctx<'_> {
    pub(crate) fn next_ident(&mut self) -> u16 {
        *self.ident = self.ident.wrapping_add(1);
        *self.ident
    }
}

/// Sends a client → server packet of `c` with the transmitter of its
/// method; `toa`: FullNAT adds the client's address to this packet.
pub(crate) fn transmit(
    pkt: &mut PacketBuf<'_>,
    p: &Parsed,
    c: &Conn,
    to: &ToServer,
    ctx: &mut Ctx<'_>,
    toa: bool,
) -> Verdict {
    match c.method() {
        ForwardMethod::Route => dr::transmit(pkt, to),
        ForwardMethod::Masq => nat::transmit_in(pkt, p, c, to),
        ForwardMethod::Tunnel => tun::transmit(pkt, p, c, to, ctx),
        ForwardMethod::FullNat => fullnat::transmit_in(pkt, p, c, to, toa),
    }
}

/// Sends a real server → client packet of a NAT or FullNAT connection.
pub(crate) fn transmit_out(
    pkt: &mut PacketBuf<'_>,
    p: &Parsed,
    c: &Conn,
    snapshot: &Snapshot,
    neighbors: &crate::neighbor::NeighborTable,
) -> Verdict {
    match c.method() {
        ForwardMethod::FullNat => fullnat::transmit_out(pkt, p, c, snapshot, neighbors),
        _ => nat::transmit_out(pkt, p, c, snapshot, neighbors),
    }
}

/// The fast-path rewrite of the client → server direction of `c`, if its
/// method can be forwarded in XDP for this server.
pub(crate) fn fast_rewrite(c: &Conn, to: &ToServer) -> Option<Rewrite> {
    match c.method() {
        ForwardMethod::Route => Some(dr::fast_rewrite(c)),
        ForwardMethod::Masq => Some(nat::fast_rewrite_in(c)),
        ForwardMethod::Tunnel => tun::fast_rewrite(c, to),
        ForwardMethod::FullNat => Some(fullnat::fast_rewrite_in(c)),
    }
}

/// The fast-path rewrite of the server → client direction of a NAT or
/// FullNAT connection (`None` for the methods whose replies bypass the
/// director).
pub(crate) fn fast_rewrite_out(c: &Conn) -> Option<Rewrite> {
    match c.method() {
        ForwardMethod::Masq => Some(nat::fast_rewrite_out(c)),
        ForwardMethod::FullNat => Some(fullnat::fast_rewrite_out(c)),
        ForwardMethod::Route | ForwardMethod::Tunnel => None,
    }
}

/// The last step of every transmitter: both MACs and the egress, or a
/// request to resolve the next hop when its MAC is not known yet.
pub(crate) fn send(
    pkt: &mut PacketBuf<'_>,
    egress: &Egress,
    mac: Option<EthernetAddress>,
) -> Verdict {
    match mac {
        Some(mac) => {
            set_macs(pkt.data_mut(), egress.mac, mac);
            Verdict::Forward {
                egress: egress.iface,
            }
        }
        None => Verdict::Resolve {
            egress: egress.iface,
            next_hop: egress.next_hop,
        },
    }
}

/// Writes the Ethernet addresses (the first 12 bytes of every frame).
/// The caller has checked the frame holds an Ethernet header.
pub(crate) fn set_macs(frame: &mut [u8], src: EthernetAddress, dst: EthernetAddress) {
    if frame.len() >= 12 {
        frame[0..6].copy_from_slice(&dst.0);
        frame[6..12].copy_from_slice(&src.0);
    }
}
