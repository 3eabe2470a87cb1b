//! The engine's fast-path values ([`rvs_engine::FastKey`],
//! [`rvs_engine::FastAction`], [`rvs_engine::NextHop`]) encoded as the XDP
//! program's map keys and values (`struct conn_key`, `struct conn_entry`,
//! `struct next_hop` in `bpf/rvs_xdp.c`; the layouts must match byte for
//! byte, see the tests).
//!
//! The checksum deltas are computed here, once per entry, so that the XDP
//! program adds one 16-bit value per checksum: for a NAT entry the old
//! address and port are the key's and the new ones the entry's, so
//! `D = fold(Σ ~old words + Σ new words)` is constant, and the program's
//! `~fold(~check + D)` equals [`rvs_wire::checksum::adjust`]`(check, old,
//! new)` — what the engine's slow path computes (property-tested below).

use std::net::IpAddr;

use aya::Pod;
use rvs_engine::{
    fastpath::{MAX_DEST_SLOTS, MAX_NEXT_HOPS},
    DestSlot, FastAction, FastKey, NextHop, NextHopId, Rewrite, TunnelEncap,
};
use rvs_wire::checksum;

use crate::DatapathError;

/// `enum conn_action` in C.
pub(crate) mod action {
    pub(crate) const TO_ENGINE: u8 = 0;
    pub(crate) const ROUTE: u8 = 1;
    pub(crate) const MASQ_IN: u8 = 2;
    pub(crate) const MASQ_OUT: u8 = 3;
    pub(crate) const TUNNEL: u8 = 4;
    pub(crate) const FNAT_IN: u8 = 5;
    pub(crate) const FNAT_OUT: u8 = 6;
    pub(crate) const TUNNEL6: u8 = 7;
}

/// `tun.encap` of `struct conn_entry`: what follows the outer IPv4 header
/// (the kernel's `IP_VS_CONN_F_TUNNEL_TYPE_*` numbers).
pub(crate) mod encap {
    pub(crate) const IPIP: u8 = 0;
    pub(crate) const GUE: u8 = 1;
    pub(crate) const GRE: u8 = 2;
}

/// `struct conn_key4`: the key of `conns4`, an IPv4 connection direction.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ConnKey4 {
    pub(crate) saddr: [u8; 4],
    pub(crate) daddr: [u8; 4],
    pub(crate) sport: [u8; 2],
    pub(crate) dport: [u8; 2],
    pub(crate) proto: u8,
    pub(crate) pad: [u8; 3],
}

// SAFETY: repr(C), only byte fields, no padding: every bit pattern is valid.
unsafe impl Pod for ConnKey4 {}

/// `struct conn_key`: one direction of a connection, the frame's own tuple
/// (the key of `conns6`; IPv4 keys are stored as [`ConnKey4`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ConnKey {
    pub(crate) family: u8,
    pub(crate) proto: u8,
    pub(crate) sport: [u8; 2],
    pub(crate) dport: [u8; 2],
    pub(crate) pad: [u8; 2],
    pub(crate) saddr: [u8; 16],
    pub(crate) daddr: [u8; 16],
}

// SAFETY: repr(C), only byte fields, no padding: every bit pattern is valid.
unsafe impl Pod for ConnKey {}

/// `struct conn_entry`. `addr` is the C union: the NAT address, or for a
/// tunnel the outer source (bytes 0..4), destination (4..8) and the MTU
/// (8..10, host order).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConnEntry {
    pub(crate) last_seen: u64,
    pub(crate) next_hop: u32,
    pub(crate) dest: u32,
    pub(crate) action: u8,
    /// [`rvs_engine::TcpSegments`] bits: which TCP segments it forwards.
    pub(crate) tcp_segments: u8,
    pub(crate) port: [u8; 2],
    pub(crate) ip_delta: u16,
    pub(crate) l4_delta: u16,
    pub(crate) addr: [u8; 16],
}

// SAFETY: repr(C); fields laid out 8+4+4+1+1+2+2+2+16 = 40 bytes with no
// padding (checked in the tests); every bit pattern is valid.
unsafe impl Pod for ConnEntry {}

const _: () =
    assert!(std::mem::size_of::<ConnEntry>() == 40 && std::mem::align_of::<ConnEntry>() == 8);

impl ConnEntry {
    /// The entry as the five words of its slot in `conn_slots4`.
    pub(crate) fn to_words(self) -> [u64; 5] {
        // SAFETY: both types are 40 bytes (asserted above) of plain
        // integers without padding; every bit pattern is a valid [u64; 5].
        unsafe { std::mem::transmute::<ConnEntry, [u64; 5]>(self) }
    }

    /// The inverse of [`to_words`](Self::to_words).
    pub(crate) fn from_words(w: [u64; 5]) -> Self {
        // SAFETY: as in `to_words`: every bit pattern is a valid ConnEntry
        // (integers and byte arrays only).
        unsafe { std::mem::transmute::<[u64; 5], ConnEntry>(w) }
    }
}

/// `struct next_hop`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct NextHopValue {
    pub(crate) ifindex: u32,
    pub(crate) src_mac: [u8; 6],
    pub(crate) dst_mac: [u8; 6],
    /// 1 + the egress interface's slot in `tx_ports`; 0: not usable.
    pub(crate) tx_port: u32,
}

// SAFETY: repr(C), 4 + 6 + 6 + 4 = 20 bytes, no padding; any bits are valid.
unsafe impl Pod for NextHopValue {}

/// `struct dest_counters`, one per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct DestValue {
    pub(crate) in_pkts: u64,
    pub(crate) in_bytes: u64,
    pub(crate) out_pkts: u64,
    pub(crate) out_bytes: u64,
}

// SAFETY: repr(C), four u64, no padding; any bits are valid.
unsafe impl Pod for DestValue {}

/// `struct if_counters`, one per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct IfCounters {
    pub(crate) passed: u64,
    pub(crate) to_user: u64,
    pub(crate) to_user_failed: u64,
    pub(crate) fast_tx: u64,
    pub(crate) fast_redirect: u64,
    pub(crate) parse_errors: u64,
}

// SAFETY: repr(C), six u64, no padding; any bits are valid.
unsafe impl Pod for IfCounters {}

/// (family, 16 bytes with IPv4 in the first 4).
pub(crate) fn family_addr(addr: IpAddr) -> (u8, [u8; 16]) {
    let mut out = [0u8; 16];
    match addr {
        IpAddr::V4(a) => {
            out[..4].copy_from_slice(&a.octets());
            (4, out)
        }
        IpAddr::V6(a) => (6, a.octets()),
    }
}

fn addr_len(family: u8) -> usize {
    if family == 4 {
        4
    } else {
        16
    }
}

impl ConnKey {
    /// The compact key of `conns4`, for an IPv4 key.
    pub(crate) fn v4(&self) -> Option<ConnKey4> {
        (self.family == 4).then(|| ConnKey4 {
            saddr: [self.saddr[0], self.saddr[1], self.saddr[2], self.saddr[3]],
            daddr: [self.daddr[0], self.daddr[1], self.daddr[2], self.daddr[3]],
            sport: self.sport,
            dport: self.dport,
            proto: self.proto,
            pad: [0; 3],
        })
    }

    /// The full-width form of a `conns4` key.
    pub(crate) fn from_v4(k: &ConnKey4) -> Self {
        let mut saddr = [0u8; 16];
        let mut daddr = [0u8; 16];
        saddr[..4].copy_from_slice(&k.saddr);
        daddr[..4].copy_from_slice(&k.daddr);
        Self {
            family: 4,
            proto: k.proto,
            sport: k.sport,
            dport: k.dport,
            pad: [0; 2],
            saddr,
            daddr,
        }
    }

    pub(crate) fn new(k: &FastKey) -> Result<Self, DatapathError> {
        let (family, saddr) = family_addr(k.saddr);
        let (dfamily, daddr) = family_addr(k.daddr);
        if family != dfamily {
            return Err(DatapathError::InvalidArgument(format!(
                "fast-path key {} -> {} mixes address families",
                k.saddr, k.daddr
            )));
        }
        Ok(Self {
            family,
            proto: k.proto,
            sport: k.sport.to_be_bytes(),
            dport: k.dport.to_be_bytes(),
            pad: [0; 2],
            saddr,
            daddr,
        })
    }
}

/// RFC 1624 delta `fold(Σ ~old words + Σ new words)` for equal-length byte
/// strings of even length, as the XDP program adds it to `~check`.
pub(crate) fn csum_delta(old: &[u8], new: &[u8]) -> u16 {
    debug_assert!(old.len() == new.len() && old.len() & 1 == 0);
    let mut acc = 0u32;
    for (o, n) in old.chunks_exact(2).zip(new.chunks_exact(2)) {
        acc = checksum::combine(acc, u32::from(!u16::from_be_bytes([o[0], o[1]])));
        acc = checksum::combine(acc, u32::from(u16::from_be_bytes([n[0], n[1]])));
    }
    checksum::fold(acc)
}

/// What an IPv6 entry holds beyond a [`ConnEntry`]: two IPv6 ends do not
/// fit the entry's 16 address bytes (FullNAT's new source and its port; a
/// tunnel's outer source and destination).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tail6 {
    pub(crate) src: [u8; 16],
    pub(crate) dst: [u8; 16],
    pub(crate) sport: [u8; 2],
}

/// `struct conn_entry6`, the value of `conns6`: an entry and its tail.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConnEntry6 {
    pub(crate) entry: ConnEntry,
    pub(crate) src6: [u8; 16],
    pub(crate) dst6: [u8; 16],
    pub(crate) sport6: [u8; 2],
    pub(crate) pad: [u8; 6],
}

// SAFETY: repr(C); 40 + 16 + 16 + 2 + 6 = 80 bytes with no padding
// (asserted below); every bit pattern is valid.
unsafe impl Pod for ConnEntry6 {}

const _: () =
    assert!(std::mem::size_of::<ConnEntry6>() == 80 && std::mem::align_of::<ConnEntry6>() == 8);

impl ConnEntry6 {
    pub(crate) fn new(entry: ConnEntry, tail: Tail6) -> Self {
        Self {
            entry,
            src6: tail.src,
            dst6: tail.dst,
            sport6: tail.sport,
            pad: [0; 6],
        }
    }
}

impl ConnEntry {
    /// The entry for `key` alone (tests; an IPv6 FullNAT entry needs its
    /// tail, see [`ConnEntry::build`]).
    #[cfg(test)]
    pub(crate) fn new(
        key: &ConnKey,
        act: &FastAction,
        last_seen: u64,
    ) -> Result<Self, DatapathError> {
        Self::build(key, act, last_seen).map(|(e, _)| e)
    }

    /// The entry for `key`, and what an IPv6 entry holds beyond it;
    /// `last_seen` is the caller's (now).
    pub(crate) fn build(
        key: &ConnKey,
        act: &FastAction,
        last_seen: u64,
    ) -> Result<(Self, Tail6), DatapathError> {
        let mut tail = Tail6::default();
        let mut e = Self {
            last_seen,
            next_hop: 0,
            dest: 0,
            action: action::TO_ENGINE,
            tcp_segments: 0,
            port: [0; 2],
            ip_delta: 0,
            l4_delta: 0,
            addr: [0; 16],
        };
        let FastAction::Forward(f) = act else {
            return Ok((e, tail));
        };
        check_next_hop(f.next_hop)?;
        check_dest(f.dest)?;
        e.next_hop = f.next_hop.0;
        e.dest = f.dest.0;
        e.tcp_segments = f.segments.bits();
        match f.rewrite {
            Rewrite::Route { server } => {
                // Unused by the program; read back by a successor rvsd.
                e.action = action::ROUTE;
                e.addr = family_addr(server).1;
            }
            Rewrite::MasqIn { addr, port } => {
                e.action = action::MASQ_IN;
                e.set_nat(key, addr, port, &key.daddr, key.dport)?;
            }
            Rewrite::MasqOut { addr, port } => {
                e.action = action::MASQ_OUT;
                e.set_nat(key, addr, port, &key.saddr, key.sport)?;
            }
            Rewrite::FullNatIn {
                src,
                src_port,
                dst,
                dst_port,
            } => {
                e.action = action::FNAT_IN;
                tail = e.set_fullnat(key, (src, src_port), (dst, dst_port))?;
            }
            Rewrite::FullNatOut {
                src,
                src_port,
                dst,
                dst_port,
            } => {
                e.action = action::FNAT_OUT;
                tail = e.set_fullnat(key, (src, src_port), (dst, dst_port))?;
            }
            Rewrite::Tunnel {
                src,
                dst,
                mtu,
                encap,
            } => {
                e.action = action::TUNNEL;
                e.addr[0..4].copy_from_slice(&src.octets());
                e.addr[4..8].copy_from_slice(&dst.octets());
                e.set_tunnel(mtu, encap);
            }
            Rewrite::Tunnel6 {
                src,
                dst,
                mtu,
                encap,
            } => {
                if key.family != 6 {
                    return Err(DatapathError::InvalidArgument(format!(
                        "an IPv6 tunnel to {dst} for an IPv4 connection"
                    )));
                }
                e.action = action::TUNNEL6;
                e.set_tunnel(mtu, encap);
                tail.src = src.octets();
                tail.dst = dst.octets();
            }
        }
        Ok((e, tail))
    }

    /// NAT: the new address and port, and the deltas from the key's
    /// `old_addr`/`old_port` (the side being rewritten).
    fn set_nat(
        &mut self,
        key: &ConnKey,
        addr: IpAddr,
        port: u16,
        old_addr: &[u8; 16],
        old_port: [u8; 2],
    ) -> Result<(), DatapathError> {
        let (family, new_addr) = family_addr(addr);
        if family != key.family {
            return Err(DatapathError::InvalidArgument(format!(
                "NAT to {addr} for an IPv{} connection",
                key.family
            )));
        }
        let alen = addr_len(family);
        self.addr = new_addr;
        self.port = port.to_be_bytes();
        if family == 4 {
            self.ip_delta = csum_delta(&old_addr[..4], &new_addr[..4]);
        }
        // Address and port together, as the engine's fwd/nat.rs updates them.
        let mut old = [0u8; 18];
        let mut new = [0u8; 18];
        old[..alen].copy_from_slice(&old_addr[..alen]);
        old[alen..alen + 2].copy_from_slice(&old_port);
        new[..alen].copy_from_slice(&new_addr[..alen]);
        new[alen..alen + 2].copy_from_slice(&self.port);
        self.l4_delta = csum_delta(&old[..alen + 2], &new[..alen + 2]);
        Ok(())
    }
}

impl ConnEntry {
    /// A tunnel's MTU and encapsulation in `tun` (`addr[8..16]`): MTU in
    /// host order, the kind, whether its checksum is filled, then GUE's
    /// ports in network order.
    fn set_tunnel(&mut self, mtu: u16, encap: TunnelEncap) {
        self.addr[8..10].copy_from_slice(&mtu.to_ne_bytes());
        let (kind, checksum, ports) = match encap {
            TunnelEncap::Ipip => (encap::IPIP, false, [0; 4]),
            TunnelEncap::Gre { checksum } => (encap::GRE, checksum, [0; 4]),
            TunnelEncap::Gue {
                src_port,
                dst_port,
                checksum,
            } => {
                let (s, d) = (src_port.to_be_bytes(), dst_port.to_be_bytes());
                (encap::GUE, checksum, [s[0], s[1], d[0], d[1]])
            }
        };
        self.addr[10] = kind;
        self.addr[11] = u8::from(checksum);
        self.addr[12..16].copy_from_slice(&ports);
    }

    /// FullNAT: the new destination in `addr` (IPv4: `addr[0..4]`) and its
    /// port in `port`; IPv4 keeps the new source in `addr[4..8]` and its
    /// port in `addr[8..10]`, IPv6 in the returned tail. The deltas cover
    /// both ends at once (the engine's two incremental updates, one per
    /// end, sum to the same checksum); IPv6 has no header checksum.
    fn set_fullnat(
        &mut self,
        key: &ConnKey,
        src: (IpAddr, u16),
        dst: (IpAddr, u16),
    ) -> Result<Tail6, DatapathError> {
        let (family, s) = family_addr(src.0);
        let (dfamily, d) = family_addr(dst.0);
        if family != key.family || dfamily != key.family {
            return Err(DatapathError::InvalidArgument(format!(
                "FullNAT from {} to {} for an IPv{} connection",
                src.0, dst.0, key.family
            )));
        }
        let alen = addr_len(family);
        let mut tail = Tail6::default();
        self.port = dst.1.to_be_bytes();
        if family == 4 {
            self.addr[0..4].copy_from_slice(&d[..4]);
            self.addr[4..8].copy_from_slice(&s[..4]);
            self.addr[8..10].copy_from_slice(&src.1.to_be_bytes());
        } else {
            self.addr = d;
            tail = Tail6 {
                src: s,
                sport: src.1.to_be_bytes(),
                ..Tail6::default()
            };
        }
        // Old and new: source address, destination address, then ports.
        let mut old = [0u8; 36];
        let mut new = [0u8; 36];
        old[..alen].copy_from_slice(&key.saddr[..alen]);
        old[alen..2 * alen].copy_from_slice(&key.daddr[..alen]);
        old[2 * alen..2 * alen + 2].copy_from_slice(&key.sport);
        old[2 * alen + 2..2 * alen + 4].copy_from_slice(&key.dport);
        new[..alen].copy_from_slice(&s[..alen]);
        new[alen..2 * alen].copy_from_slice(&d[..alen]);
        new[2 * alen..2 * alen + 2].copy_from_slice(&src.1.to_be_bytes());
        new[2 * alen + 2..2 * alen + 4].copy_from_slice(&dst.1.to_be_bytes());
        if family == 4 {
            self.ip_delta = csum_delta(&old[..8], &new[..8]);
        }
        self.l4_delta = csum_delta(&old[..2 * alen + 4], &new[..2 * alen + 4]);
        Ok(tail)
    }
}

fn check_next_hop(id: NextHopId) -> Result<(), DatapathError> {
    if id.0 >= MAX_NEXT_HOPS {
        return Err(DatapathError::InvalidArgument(format!(
            "next hop {} beyond the table ({MAX_NEXT_HOPS} entries)",
            id.0
        )));
    }
    Ok(())
}

pub(crate) fn check_dest(slot: DestSlot) -> Result<(), DatapathError> {
    if slot.0 >= MAX_DEST_SLOTS {
        return Err(DatapathError::InvalidArgument(format!(
            "destination slot {} beyond the table ({MAX_DEST_SLOTS} entries)",
            slot.0
        )));
    }
    Ok(())
}

impl NextHopValue {
    /// `slot_of` gives an interface's slot in `tx_ports`; a next hop out of
    /// an interface that has none is stored unusable (frames of its entries
    /// go to the engine).
    pub(crate) fn new(
        id: NextHopId,
        hop: Option<&NextHop>,
        slot_of: impl Fn(u32) -> Option<u32>,
    ) -> Result<Self, DatapathError> {
        check_next_hop(id)?;
        Ok(match hop.and_then(|h| Some((h, slot_of(h.iface.0)?))) {
            Some((h, slot)) => Self {
                ifindex: h.iface.0,
                src_mac: h.src_mac.0,
                dst_mac: h.dst_mac.0,
                tx_port: slot + 1,
            },
            None => Self::default(),
        })
    }
}

/// Entries as the datapath writes them, for other modules' tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// The key and entry `apply` would write for `key` and `act`.
    pub(crate) fn entry(key: &FastKey, act: &FastAction, last_seen: u64) -> (ConnKey, ConnEntry) {
        let k = ConnKey::new(key).unwrap();
        let (e, _) = ConnEntry::build(&k, act, last_seen).unwrap();
        // What the program's map holds for IPv4: the compact key, widened.
        let k = k.v4().map_or(k, |k4| ConnKey::from_v4(&k4));
        (k, e)
    }
}

#[cfg(test)]
mod tests {
    use std::mem::{offset_of, size_of};
    use std::net::{Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;
    use rvs_engine::{FastForward, TcpSegments};

    use super::*;

    /// The XDP program's `~fold(~check + D)`.
    fn apply(check: u16, delta: u16) -> u16 {
        !checksum::fold(u32::from(!check) + u32::from(delta))
    }

    /// The XDP program's UDP rule: 0 (no checksum) stays 0, a computed 0 is 0xffff.
    fn apply_udp(check: u16, delta: u16) -> u16 {
        match check {
            0 => 0,
            c => match apply(c, delta) {
                0 => 0xffff,
                c => c,
            },
        }
    }

    /// What rvs_wire's `udp::Packet::update_checksum` does (the engine's NAT).
    fn wire_udp(check: u16, old: &[u8], new: &[u8]) -> u16 {
        let mut d = [0u8; 8];
        d[4..6].copy_from_slice(&8u16.to_be_bytes());
        d[6..8].copy_from_slice(&check.to_be_bytes());
        let mut p = rvs_wire::udp::Packet::new_checked(&mut d[..]).unwrap();
        p.update_checksum(old, new);
        p.checksum()
    }

    #[test]
    fn layouts_match_the_c_structs() {
        assert_eq!(size_of::<ConnKey>(), 40);
        assert_eq!(offset_of!(ConnKey, sport), 2);
        assert_eq!(offset_of!(ConnKey, saddr), 8);
        assert_eq!(offset_of!(ConnKey, daddr), 24);
        assert_eq!(size_of::<ConnEntry>(), 40);
        assert_eq!(offset_of!(ConnEntry, next_hop), 8);
        assert_eq!(offset_of!(ConnEntry, dest), 12);
        assert_eq!(offset_of!(ConnEntry, action), 16);
        assert_eq!(offset_of!(ConnEntry, port), 18);
        assert_eq!(offset_of!(ConnEntry, ip_delta), 20);
        assert_eq!(offset_of!(ConnEntry, l4_delta), 22);
        assert_eq!(offset_of!(ConnEntry, addr), 24);
        assert_eq!(size_of::<NextHopValue>(), 20);
        assert_eq!(offset_of!(NextHopValue, tx_port), 16);
        assert_eq!(size_of::<DestValue>(), 32);
        assert_eq!(size_of::<IfCounters>(), 48);
    }

    fn key4() -> FastKey {
        FastKey {
            proto: 17,
            saddr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            sport: 40000,
            daddr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100)),
            dport: 80,
        }
    }

    fn forward(rewrite: Rewrite) -> FastAction {
        FastAction::Forward(FastForward {
            rewrite,
            next_hop: NextHopId(7),
            segments: TcpSegments::ACK,
            dest: DestSlot(9),
        })
    }

    #[test]
    fn keys_put_ipv4_in_the_first_bytes() {
        let k = ConnKey::new(&key4()).unwrap();
        assert_eq!((k.family, k.proto), (4, 17));
        assert_eq!(k.sport, 40000u16.to_be_bytes());
        assert_eq!(k.dport, [0, 80]);
        assert_eq!(&k.saddr[..4], &[10, 0, 0, 1]);
        assert!(k.saddr[4..].iter().all(|&b| b == 0));
        assert_eq!(&k.daddr[..4], &[10, 0, 0, 100]);
        let mixed = FastKey {
            daddr: IpAddr::V6(Ipv6Addr::LOCALHOST),
            ..key4()
        };
        assert!(matches!(
            ConnKey::new(&mixed),
            Err(DatapathError::InvalidArgument(_))
        ));
    }

    #[test]
    fn entries_encode_each_rewrite() {
        let k = ConnKey::new(&key4()).unwrap();
        let e = ConnEntry::new(&k, &FastAction::ToEngine, 5).unwrap();
        assert_eq!(
            (e.action, e.last_seen, e.next_hop),
            (action::TO_ENGINE, 5, 0)
        );

        let server = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 3));
        let e = ConnEntry::new(&k, &forward(Rewrite::Route { server }), 1).unwrap();
        assert_eq!((e.action, e.next_hop, e.dest), (action::ROUTE, 7, 9));
        assert_eq!(&e.addr[..4], &[192, 168, 1, 3], "kept for a successor");

        let rip = Ipv4Addr::new(192, 168, 1, 2);
        let e = ConnEntry::new(
            &k,
            &forward(Rewrite::MasqIn {
                addr: IpAddr::V4(rip),
                port: 8080,
            }),
            1,
        )
        .unwrap();
        assert_eq!(e.action, action::MASQ_IN);
        assert_eq!(&e.addr[..4], &rip.octets());
        assert_eq!(e.port, 8080u16.to_be_bytes());
        assert_eq!(e.ip_delta, csum_delta(&[10, 0, 0, 100], &rip.octets()));
        assert_eq!(
            e.l4_delta,
            csum_delta(&[10, 0, 0, 100, 0, 80], &[192, 168, 1, 2, 0x1f, 0x90])
        );

        let e = ConnEntry::new(
            &k,
            &forward(Rewrite::Tunnel {
                src: Ipv4Addr::new(1, 2, 3, 4),
                dst: Ipv4Addr::new(5, 6, 7, 8),
                mtu: 1500,
                encap: TunnelEncap::Gue {
                    src_port: 40000,
                    dst_port: 6080,
                    checksum: true,
                },
            }),
            1,
        )
        .unwrap();
        assert_eq!(e.action, action::TUNNEL);
        assert_eq!(&e.addr[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(u16::from_ne_bytes([e.addr[8], e.addr[9]]), 1500);
        // GUE (1), its checksum filled, then both ports in network order.
        assert_eq!(&e.addr[10..], &[1, 1, 0x9c, 0x40, 0x17, 0xc0]);

        // Wrong family, out-of-range ids.
        let v6 = forward(Rewrite::MasqOut {
            addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
            port: 1,
        });
        assert!(ConnEntry::new(&k, &v6, 1).is_err());
        let far = FastAction::Forward(FastForward {
            rewrite: Rewrite::Route {
                server: IpAddr::V4(Ipv4Addr::LOCALHOST),
            },
            next_hop: NextHopId(MAX_NEXT_HOPS),
            segments: TcpSegments::ACK,
            dest: DestSlot(0),
        });
        assert!(ConnEntry::new(&k, &far, 1).is_err());
        let far = FastAction::Forward(FastForward {
            rewrite: Rewrite::Route {
                server: IpAddr::V4(Ipv4Addr::LOCALHOST),
            },
            next_hop: NextHopId(0),
            segments: TcpSegments::ACK,
            dest: DestSlot(MAX_DEST_SLOTS),
        });
        assert!(ConnEntry::new(&k, &far, 1).is_err());
    }

    #[test]
    fn rfc1624_example_through_a_delta() {
        // HC = 0xdd2f, m = 0x5555 -> m' = 0x3285 gives 0x0000 (RFC 1624 §4).
        let d = csum_delta(&[0x55, 0x55], &[0x32, 0x85]);
        assert_eq!(apply(0xdd2f, d), 0x0000);
        assert_eq!(
            apply(0xdd2f, d),
            checksum::adjust_u16(0xdd2f, 0x5555, 0x3285)
        );
    }

    /// A checksum: the edge values (0 is "no checksum" for UDP, 0xffff is -0) or any.
    fn check() -> impl Strategy<Value = u16> {
        prop_oneof![Just(0u16), Just(0xffffu16), Just(1u16), any::<u16>()]
    }

    /// An address+port string of IPv4 (6 bytes) or IPv6 (18 bytes) length,
    /// biased to the all-0xff / all-0 words that produce -0 and +0 sums.
    fn addr_port() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![Just(0u8), Just(0xffu8), any::<u8>()];
        prop_oneof![
            proptest::collection::vec(byte.clone(), 6),
            proptest::collection::vec(byte, 18),
            Just(vec![0xff; 6]),
            Just(vec![0; 6]),
            Just(vec![0xff; 18]),
            Just(vec![0; 18]),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// TCP and the IPv4 header: ~fold(~check + D) == adjust(check, old, new).
        #[test]
        fn delta_equals_adjust(c in check(), old in addr_port(), new_seed in addr_port()) {
            let mut new = new_seed;
            new.resize(old.len(), 0xff);
            let d = csum_delta(&old, &new);
            prop_assert_eq!(apply(c, d), checksum::adjust(c, &old, &new));
        }

        /// UDP: 0 stays 0, a result of 0 becomes 0xffff, as rvs_wire does.
        #[test]
        fn udp_delta_equals_wire(c in check(), old in addr_port(), new_seed in addr_port()) {
            let mut new = new_seed;
            new.resize(old.len(), 0);
            let d = csum_delta(&old, &new);
            prop_assert_eq!(apply_udp(c, d), wire_udp(c, &old, &new));
        }

        /// The TTL/protocol word of a NAT reply, decremented.
        #[test]
        fn ttl_word_update_equals_adjust(c in check(), ttl in 2u8.., proto in any::<u8>()) {
            let old = u16::from_be_bytes([ttl, proto]);
            let new = old - 0x0100;
            let ours = !checksum::fold(u32::from(!c) + u32::from(!old) + u32::from(new));
            prop_assert_eq!(ours, checksum::adjust_u16(c, old, new));
        }
    }

    #[test]
    fn udp_zero_and_minus_zero_cases() {
        // No checksum stays none.
        let d = csum_delta(&[1, 2, 3, 4, 0, 80], &[5, 6, 7, 8, 0, 81]);
        assert_eq!(apply_udp(0, d), 0);
        assert_eq!(wire_udp(0, &[1, 2, 3, 4, 0, 80], &[5, 6, 7, 8, 0, 81]), 0);
        // A result of 0 is sent as 0xffff: pick a check that sums to it.
        let old = [0x12, 0x34];
        let new = [0x12, 0x35];
        let d = csum_delta(&old, &new);
        let c = (0u16..=0xffff)
            .find(|&c| c != 0 && apply(c, d) == 0)
            .expect("some checksum adjusts to 0");
        assert_eq!(apply_udp(c, d), 0xffff);
        assert_eq!(wire_udp(c, &old, &new), 0xffff);
    }
}
