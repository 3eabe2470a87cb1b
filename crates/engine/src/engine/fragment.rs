//! Later fragments of a datagram follow its first fragment's connection
//! ([`crate::frag`] has the table and the design).

use rvs_wire::{ipv4, ipv6, PacketBuf};

use super::Engine;
use crate::config::ForwardMethod;
use crate::conn::{bytes_addr, Conn};
use crate::frag::{DatagramKey, FragTable, Recorded, Refused, Route};
use crate::fwd::nat;
use crate::parse::{parse_later_fragment, LaterFragment, Parsed};
use crate::proto::Direction;
use crate::verdict::{DropReason, IfIndex, Verdict};

/// A datagram's fragmentable part is at most this long (IPv4's total
/// length, IPv6's payload length): a fragment reaching further is
/// malformed (the "ping of death").
const MAX_DATAGRAM: usize = 65_535;

impl Engine {
    /// A first fragment went through connection `idx` in `dir`: its later
    /// fragments will follow.
    pub(super) fn track_datagram(&mut self, now_s: u32, idx: u32, dir: Direction, p: &Parsed) {
        let Some(key) = p.first_fragment else {
            return;
        };
        self.counters.fragments_tracked += 1;
        let first_len = (p.l2_len + p.ip_len).saturating_sub(p.l4_start) as u32;
        if self
            .frags
            .record(now_s, &key, Route { conn: idx, dir }, first_len)
            == Recorded::Evicted
        {
            self.counters.fragments_evicted += 1;
        }
    }

    /// A new `max_fragment_datagrams` takes a new (empty) table.
    pub(super) fn fragment_config_changed(&mut self) {
        let want = self.snapshot.config().max_fragment_datagrams;
        if FragTable::new(want, [0; 4]).capacity() != self.frags.capacity() {
            self.frags = FragTable::new(want, [self.sched_seed, 1, 2, 3]);
        }
    }

    /// Datagrams whose later fragments are expected now.
    pub fn fragmented_datagrams(&self, now: crate::Time) -> usize {
        self.frags.live(super::secs(now))
    }

    /// A fragment after the first: sent where its datagram's first
    /// fragment went, with the same address translation (no ports: they
    /// are in the first fragment only), or dropped and counted.
    pub(super) fn later_fragment(
        &mut self,
        now_s: u32,
        pkt: &mut PacketBuf<'_>,
        ingress: IfIndex,
    ) -> Verdict {
        let Some(f) = parse_later_fragment(pkt.data()) else {
            return Verdict::Drop(DropReason::Malformed);
        };
        if f.offset + f.ip_len.saturating_sub(f.header_len) > MAX_DATAGRAM {
            return Verdict::Drop(DropReason::FragmentOversized);
        }
        let data_len = f.ip_len.saturating_sub(f.header_len) as u32;
        let route = match self
            .frags
            .follow(now_s, &f.datagram, f.offset as u32, data_len, f.more)
        {
            Ok(route) => route,
            Err(Refused::Unknown) => return Verdict::Drop(DropReason::Fragment),
            Err(Refused::Overlap) => return Verdict::Drop(DropReason::FragmentOverlap),
            Err(Refused::TooMany) => return Verdict::Drop(DropReason::FragmentTooMany),
        };
        let c = *self.conns.get(route.conn);
        if !belongs(&c, &f.datagram, route.dir) {
            // The connection ended and its slot was reused.
            self.frags.forget(&f.datagram);
            return Verdict::Drop(DropReason::Fragment);
        }
        let v6 = c.v6();
        let p = Parsed {
            l2_len: f.l2_len,
            l4_start: f.l2_len + f.header_len,
            ip_len: f.ip_len,
            v6,
            key: crate::conn::FlowKey {
                template: false,
                proto: f.datagram.proto,
                v6,
                saddr: f.datagram.src,
                sport: 0,
                daddr: f.datagram.dst,
                dport: 0,
            },
            src: bytes_addr(&f.datagram.src, v6),
            dst: bytes_addr(&f.datagram.dst, v6),
            tcp_flags: None,
            sctp_event: None,
            ingress,
            first_fragment: None,
        };
        let verdict = match route.dir {
            Direction::Output => {
                let Some(ip) = p.ip(pkt.data_mut()) else {
                    return Verdict::Drop(DropReason::Malformed);
                };
                if !nat::decrement_ttl(ip, f.v6) {
                    return Verdict::Drop(DropReason::TtlExceeded);
                }
                set_address(pkt.data_mut(), &f, false, &c.vaddr);
                if c.method() == ForwardMethod::FullNat {
                    set_address(pkt.data_mut(), &f, true, &c.caddr);
                }
                let client = bytes_addr(&c.caddr, v6);
                let v = self.send_toward_client(pkt, client);
                self.count_out(c.dest, &p);
                v
            }
            Direction::Input | Direction::InputOnly => {
                let v = self.send_toward_server(pkt, &c, &p, |frame| {
                    set_address(frame, &f, true, &c.daddr);
                    if c.method() == ForwardMethod::FullNat {
                        set_address(frame, &f, false, &c.laddr);
                    }
                    true
                });
                self.count_in(c.dest, &p);
                v
            }
        };
        if matches!(verdict, Verdict::Forward { .. }) {
            self.counters.fragments_followed += 1;
        }
        verdict
    }
}

/// Whether connection `c` is still the one the datagram was recorded for.
fn belongs(c: &Conn, d: &DatagramKey, dir: Direction) -> bool {
    match dir {
        Direction::Output => c.daddr == d.src && c.laddr == d.dst && c.proto == d.proto,
        _ => c.caddr == d.src && c.vaddr == d.dst && c.proto == d.proto,
    }
}

/// NAT for a later fragment: the destination or the source (FullNAT
/// translates both) becomes `addr`, the IPv4 header checksum
/// follows (IPv6 has none). The transport checksum is in the first
/// fragment, already adjusted.
fn set_address(frame: &mut [u8], f: &LaterFragment, destination: bool, addr: &[u8; 16]) {
    let Some(ip) = frame.get_mut(f.l2_len..f.l2_len + f.ip_len) else {
        return;
    };
    if f.v6 {
        let mut ip = ipv6::Packet::new_unchecked(ip);
        let a = std::net::Ipv6Addr::from(*addr);
        if destination {
            ip.set_dst_addr(a);
        } else {
            ip.set_src_addr(a);
        }
        return;
    }
    let mut ip = ipv4::Packet::new_unchecked(ip);
    let a = std::net::Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]);
    if destination {
        ip.set_dst_addr_incremental(a);
    } else {
        ip.set_src_addr_incremental(a);
    }
}
