//! IPIP tunnelling (`-i`, IPVS "Tunnel"): an outer IPv4 header DIP → RIP,
//! protocol 4, is put in front of the untouched inner packet (RFC 2003). The
//! real server decapsulates and answers the client directly from the VIP.
//!
//! The outer packet must fit the egress MTU. When it would not and the inner
//! packet has DF set, the client gets ICMP "fragmentation needed" with the
//! MTU minus the 20-byte overhead, as the kernel does; without DF the kernel
//! would fragment the outer packet, which this version does not (counted drop).

use std::net::Ipv4Addr;

use rvs_wire::{ipip, ipv4};

use crate::packet::PacketBuf;
use crate::verdict::DropReason;

/// TTL of the outer header (the kernel's default hop limit).
const OUTER_TTL: u8 = 64;

/// What to do with a packet that is about to be tunnelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fit {
    /// Fits: encapsulate.
    Fits,
    /// Too big, DF set: tell the client this MTU.
    NeedsFragmentation(u16),
    /// Too big, DF clear.
    TooBig,
}

/// Checks the encapsulated size of the IPv4 packet at `ip` against `mtu`.
pub(crate) fn fit(ip: &[u8], mtu: u16) -> Result<Fit, rvs_wire::Error> {
    let p = ipv4::Packet::new_checked(ip)?;
    let outer = usize::from(p.total_len()) + ipip::OVERHEAD;
    Ok(if outer <= usize::from(mtu) {
        Fit::Fits
    } else if p.dont_frag() {
        Fit::NeedsFragmentation(mtu.saturating_sub(ipip::OVERHEAD as u16))
    } else {
        Fit::TooBig
    })
}

/// Prepends the outer header between the L2 header (`l2_len` bytes, kept)
/// and the inner packet, trimming any Ethernet padding.
pub(crate) fn encapsulate(
    pkt: &mut PacketBuf<'_>,
    l2_len: usize,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ident: u16,
) -> Result<(), DropReason> {
    let (tos, df, inner_len) = {
        let inner = pkt.data().get(l2_len..).ok_or(DropReason::Malformed)?;
        let p = ipv4::Packet::new_checked(inner).map_err(|_| DropReason::Malformed)?;
        (p.tos(), p.dont_frag(), usize::from(p.total_len()))
    };
    if !pkt.push_front(ipip::OVERHEAD) {
        return Err(DropReason::NoHeadroom);
    }
    let data = pkt.data_mut();
    data.copy_within(ipip::OVERHEAD..ipip::OVERHEAD + l2_len, 0);
    ipip::emit_outer(
        &mut data[l2_len..],
        src,
        dst,
        tos,
        df,
        inner_len,
        OUTER_TTL,
        ident,
    )
    .map_err(|_| DropReason::Malformed)?;
    pkt.truncate(l2_len + ipip::OVERHEAD + inner_len);
    Ok(())
}
