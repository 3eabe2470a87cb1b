//! The engine: the director's services, connections and counters, driven by
//! the datapath. This file is the per-packet path; the rest of the engine
//! lives beside it, one concern per file:
//!
//! - `dests.rs`: services and real servers at run time, reconciling a new
//!   configuration, scheduling, counting connections on their server;
//! - `persist.rs`: persistence templates (`-p`, `-M`);
//! - `icmp.rs`: ICMP errors about tracked connections, relayed;
//! - `fragment.rs`: later fragments following their datagram's first;
//! - `defense.rs`: SYN-flood defence (eviction of half-open connections,
//!   IPVS's drop_entry, drop_packet and secure_tcp);
//! - `fast.rs`: the fast path's maps as values (entries, next hops,
//!   activity, counters), see [`crate::fastpath`];
//! - `view.rs`: read-outs for the control plane.
//!
//! A packet's walk: [`Engine::process`] parses the frame once
//! ([`crate::parse`]), finds its connection (or classifies and schedules a
//! new one), applies the protocol state machine, and hands the frame to the
//! one transmitter of the connection's forwarding method ([`crate::fwd`]).

mod adopt;
mod defense;
mod dests;
mod fast;
mod fragment;
mod icmp;
mod local_ports;
mod persist;
mod sync;
mod view;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use rvs_wire::{icmpv4, ip_proto, PacketBuf};

use crate::config::{ServiceKey, Snapshot};
use crate::conn::{addr_bytes, flag, Conn, ConnTable, FlowKey, NewConn, NIL};
use crate::fwd;
use crate::neighbor::NeighborTable;
use crate::parse::{parse, Parsed};
use crate::proto::{sctp as sctp_state, tcp as tcp_state, Direction, SctpState, TcpState};
use crate::reply;
use crate::stats::Counters;
use crate::time::Time;
use crate::verdict::{DropReason, IfIndex, Verdict};

pub use adopt::{AdoptError, Adopted};
use defense::DefenseRt;
pub use defense::DefenseStatus;
use dests::{DestRt, ServiceRt};
use fast::FastState;
use local_ports::LocalPorts;
pub use sync::SyncRefused;

/// The director's state: services, schedulers, connection table and
/// counters, with no I/O and no clock. One engine serves every RX queue of
/// every interface (the datapath polls them all), so persistence,
/// thresholds, connection counts and scheduler positions are one table.
///
/// Call order:
/// 1. [`Engine::new`] with a validated [`Snapshot`];
/// 2. for each received frame, [`Engine::process`] — act on the [`Verdict`];
/// 3. after each batch, drain [`Engine::poll_fast_path`] and apply the ops
///    to the XDP program's maps before transmitting the batch (answer
///    `ReadActivity` with [`Engine::fast_path_activity`]);
/// 4. between batches, [`Engine::handle_timeout`] with the current time (at
///    least once a second; [`Engine::poll_timeout`] says when next), and now
///    and then [`Engine::fold_fast_path_counters`] for each
///    [`Engine::fast_path_dest_slots`];
/// 5. when the control plane publishes, [`Engine::set_config`] /
///    [`Engine::set_neighbors`] — in-flight connections keep flowing.
pub struct Engine {
    snapshot: Arc<Snapshot>,
    neighbors: Arc<NeighborTable>,
    services: Vec<ServiceRt>,
    dests: Vec<DestRt>,
    dest_free: Vec<u32>,
    dest_index: HashMap<(ServiceKey, IpAddr, u16), u32>,
    conns: ConnTable,
    counters: Counters,
    ident: u16,
    clock_started: bool,
    sched_seed: u64,
    /// Reused by handle_timeout (control path; grows to the largest burst).
    expired: Vec<Conn>,
    fast: FastState,
    /// Connections to send to backups ([`Engine::poll_sync`]).
    sync_out: std::collections::VecDeque<rvs_wire::ipvs_sync::SyncConn>,
    /// A sync master runs ([`Engine::set_sync_master`]).
    sync_master: bool,
    /// Its `sync_threshold` (the last one set; the kernel's default before).
    sync_threshold: rvs_vocab::sync::SyncThreshold,
    defense: DefenseRt,
    /// Fragmented datagrams in flight ([`crate::frag`]).
    frags: crate::frag::FragTable,
    /// Frames the last verdict sends beyond its own ([`crate::extra`]).
    extra: crate::extra::ExtraFrames,
    /// FullNAT's local addresses and the ports given out on them.
    local_ports: LocalPorts,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("services", &self.services.len())
            .field("connections", &self.conns.len())
            .finish()
    }
}

fn secs(now: Time) -> u32 {
    u32::try_from(now.as_secs()).unwrap_or(u32::MAX)
}

impl Engine {
    /// An engine for `snapshot`, with a connection table sized by its
    /// `max_connections` (all memory reserved now) and hash seeds from the
    /// caller (random in production, fixed in tests).
    pub fn new(snapshot: Arc<Snapshot>, hash_seeds: [u64; 4]) -> Self {
        let max = snapshot.config().max_connections;
        let mut e = Engine {
            snapshot: Arc::clone(&snapshot),
            neighbors: Arc::new(NeighborTable::default()),
            services: Vec::new(),
            dests: Vec::new(),
            dest_free: Vec::new(),
            dest_index: HashMap::new(),
            conns: ConnTable::new(max, hash_seeds),
            counters: Counters::default(),
            ident: 1,
            clock_started: false,
            sched_seed: hash_seeds[0] ^ hash_seeds[3].rotate_left(32),
            expired: Vec::new(),
            fast: FastState::new(snapshot.config().fast_path),
            sync_out: std::collections::VecDeque::with_capacity(sync::SYNC_QUEUE),
            sync_master: false,
            sync_threshold: rvs_vocab::sync::SyncThreshold::DEFAULT,
            defense: DefenseRt::new(
                snapshot.config().defense,
                hash_seeds[1] ^ hash_seeds[2].rotate_left(17),
            ),
            extra: crate::extra::ExtraFrames::new(),
            local_ports: LocalPorts::default(),
            frags: crate::frag::FragTable::new(
                snapshot.config().max_fragment_datagrams,
                [hash_seeds[3], hash_seeds[2], hash_seeds[1], hash_seeds[0]],
            ),
        };
        e.set_config(snapshot);
        e.defense_evaluate();
        e
    }

    /// After a [`Verdict::Forward`], the next frame to send out of the same
    /// egress as well (the outer fragments of a tunnelled packet over the
    /// MTU): copies it into `out` and returns its length; `None` when there
    /// is none left (or it does not fit `out`, then it is not sent). Take
    /// them before the next [`Engine::process`].
    pub fn next_extra_frame(&mut self, out: &mut [u8]) -> Option<usize> {
        self.extra.pop_into(out)
    }

    /// Whether [`Engine::next_extra_frame`] has a frame.
    pub fn has_extra_frames(&self) -> bool {
        self.extra.pending()
    }

    /// The configuration in force.
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    /// Decides what to do with one frame received on `ingress`, rewriting it
    /// in place. Never panics and never allocates.
    pub fn process(&mut self, now: Time, pkt: &mut PacketBuf<'_>, ingress: IfIndex) -> Verdict {
        self.counters.rx_packets += 1;
        self.extra.clear();
        let verdict = self.decide(now, pkt, ingress);
        match verdict {
            Verdict::Forward { .. } => {
                self.counters.forwarded += 1;
                self.counters.extra_frames += self.extra.len() as u64;
            }
            Verdict::Reply { cause, .. } => {
                self.counters.replies += 1;
                self.counters.drops[cause.index()] += 1;
            }
            Verdict::Resolve { .. } => self.counters.unresolved += 1,
            Verdict::Pass => self.counters.untracked += 1,
            Verdict::Drop(r) => self.counters.drops[r.index()] += 1,
        }
        verdict
    }

    fn decide(&mut self, now: Time, pkt: &mut PacketBuf<'_>, ingress: IfIndex) -> Verdict {
        if !self.clock_started {
            self.conns.start_clock(secs(now));
            self.clock_started = true;
        }
        let now_s = secs(now);
        let p = match parse(pkt.data(), ingress) {
            Ok(Some(p)) => p,
            Ok(None) => return self.icmp(pkt, ingress),
            Err(DropReason::Fragment) => return self.later_fragment(now_s, pkt, ingress),
            Err(reason) => return Verdict::Drop(reason),
        };
        if let Some(idx) = self.conns.find_in(&p.key) {
            let reuse = {
                let c = self.conns.get(idx);
                match p.key.proto {
                    ip_proto::TCP => {
                        p.tcp_flags.is_some_and(|f| f.syn)
                            && TcpState::from_u8(c.state).is_some_and(tcp_state::syn_reuses)
                    }
                    // The kernel's is_new_conn_expected for SCTP: an INIT
                    // on a CLOSED association.
                    ip_proto::SCTP => {
                        p.sctp_event == Some(sctp_state::Event::Init)
                            && c.state == SctpState::Closed as u8
                    }
                    _ => false,
                }
            };
            if !reuse {
                return self.forward_in(now_s, pkt, idx, &p);
            }
            // A new connection on a tuple in TIME_WAIT/CLOSE: the old entry
            // goes now and the SYN is scheduled afresh (conn_reuse_mode 1);
            // it expires early, as the kernel expires it now.
            let old = self.conns.remove(idx);
            self.forget(&old);
            self.counters.conns_expired += 1;
        }
        if let Some(idx) = self.conns.find_out(&p.key) {
            return self.forward_out(now_s, pkt, idx, &p);
        }
        let Some(pos) = self.classify(&p) else {
            return Verdict::Pass;
        };
        self.new_connection(now_s, pkt, pos, &p)
    }

    /// Which service a packet without a connection belongs to: RVS's
    /// firewall-mark classifier first (as an iptables MARK rule would run
    /// before IPVS), then (protocol, VIP, port), then a persistent port-0
    /// service on the VIP.
    fn classify(&self, p: &Parsed) -> Option<usize> {
        self.classify_flow(&p.key, p.dst)
    }

    /// [`Engine::classify`] of a flow `key` whose destination is `dst`.
    fn classify_flow(&self, key: &FlowKey, dst: IpAddr) -> Option<usize> {
        let proto = crate::config::Protocol::from_number(key.proto)?;
        let mark = self.snapshot.classify(key.proto, dst, key.dport);
        if mark != 0 {
            if let Some(pos) = self
                .snapshot
                .service_position(&ServiceKey::fwmark(mark, key.v6))
            {
                return Some(pos);
            }
        }
        self.snapshot
            .service_position(&ServiceKey::new(proto, dst, key.dport))
            .or_else(|| {
                self.snapshot
                    .service_position(&ServiceKey::new(proto, dst, 0))
            })
    }

    fn new_connection(
        &mut self,
        now_s: u32,
        pkt: &mut PacketBuf<'_>,
        pos: usize,
        p: &Parsed,
    ) -> Verdict {
        if let Some(f) = p.tcp_flags {
            // The kernel's tcp_conn_schedule: only a SYN starts a
            // connection, or with sloppy_tcp any segment but a RST (which
            // must never create one); the table then gives the state (a
            // mid-flow ACK from NONE is ESTABLISHED).
            if f.rst || !(f.syn || self.snapshot.config().sloppy_tcp) {
                return Verdict::Drop(DropReason::NoConnection);
            }
        }
        if p.key.proto == ip_proto::SCTP {
            // sctp_conn_schedule: only an INIT starts an association, or
            // with sloppy_sctp any packet with a chunk but an ABORT.
            let starts = match p.sctp_event {
                Some(sctp_state::Event::Init) => true,
                Some(sctp_state::Event::Abort) | None => false,
                Some(_) => self.snapshot.config().sloppy_sctp,
            };
            if !starts {
                return Verdict::Drop(DropReason::NoConnection);
            }
        }
        if self.defense.drop_this_one() {
            return Verdict::Drop(DropReason::DefenseDropPacket);
        }
        let (persistence, one_packet) = {
            let svc = &self.snapshot.config().services[pos];
            // -o is for UDP only, as in the kernel.
            (
                svc.persistence,
                svc.one_packet && p.key.proto == ip_proto::UDP,
            )
        };
        let (template, dest_id) = match persistence {
            Some(pers) => match self.persistent_dest(now_s, pos, p, pers) {
                Ok((t, d)) => (t, d),
                Err(Some(reason)) => return Verdict::Drop(reason),
                Err(None) => return self.unreachable(pkt, p, DropReason::NoDestination),
            },
            None => match self.schedule(now_s, pos, p) {
                Some(d) => (NIL, d),
                None => return self.unreachable(pkt, p, DropReason::NoDestination),
            },
        };
        let (daddr, dport, method) = {
            let d = &self.dests[dest_id as usize];
            // Port-0 and firewall-mark services keep the packet's port when
            // the server has none.
            let port = if d.port == 0 { p.key.dport } else { d.port };
            (d.addr, port, d.method)
        };
        let mut new = NewConn {
            key: p.key,
            daddr: addr_bytes(daddr),
            dport,
            laddr: p.key.saddr,
            lport: p.key.sport,
            method,
            dest: dest_id,
            // TCP's and SCTP's NONE; UDP's one state.
            state: 0,
            expires: now_s.saturating_add(self.snapshot.config().timeouts.tcp[0]),
            control: template,
        };
        if one_packet {
            // -o: schedule this datagram alone; nothing is tracked.
            self.count_scheduled(dest_id);
            self.counters.conns_created += 1;
            self.count_in(dest_id, p);
            return self.transmit_in(pkt, &Conn::ephemeral(&new), p, false);
        }
        if self.conns.len() >= self.conns.capacity() && !self.evict_half_open() {
            return Verdict::Drop(DropReason::ConnTableFull);
        }
        if method == crate::config::ForwardMethod::FullNat {
            let Some((laddr, lport)) = self.take_local_port(pos, p.key.proto) else {
                return self.unreachable(pkt, p, DropReason::LocalPortsExhausted);
            };
            (new.laddr, new.lport) = (addr_bytes(laddr), lport);
        }
        let Some(idx) = self.conns.insert(new) else {
            if method == crate::config::ForwardMethod::FullNat {
                let laddr = crate::conn::bytes_addr(&new.laddr, p.v6);
                self.local_ports.give_back(laddr, p.key.proto, new.lport);
            }
            return Verdict::Drop(DropReason::ConnTableFull);
        };
        if template != NIL {
            self.conns.get_mut(template).control += 1;
        }
        self.counters.conns_created += 1;
        self.bind(dest_id, false);
        self.forward_in(now_s, pkt, idx, p)
    }

    /// No real server available (or, for FullNAT, no local port): like
    /// `ip_vs_leave`, tell the client with ICMP port unreachable (IPv4) so
    /// it fails fast; counted once, under `cause`.
    fn unreachable(&mut self, pkt: &mut PacketBuf<'_>, p: &Parsed, cause: DropReason) -> Verdict {
        if p.v6 {
            return Verdict::Drop(cause);
        }
        let Some(mac) = self.snapshot.interface(p.ingress).map(|i| i.mac) else {
            return Verdict::Drop(cause);
        };
        self.ident = self.ident.wrapping_add(1);
        match reply::icmpv4_error(
            pkt,
            p.l2_len,
            mac,
            icmpv4::DEST_UNREACHABLE,
            icmpv4::CODE_PORT_UNREACHABLE,
            0,
            self.ident,
        ) {
            Ok(()) => Verdict::Reply {
                egress: p.ingress,
                cause,
            },
            Err(r) => Verdict::Drop(r),
        }
    }

    /// Sets a connection's expiry after a packet. Expiry is lazy (an entry
    /// stays in its wheel slot until that comes due), except for an entry
    /// that can no longer be evicted (its handshake completed, or its
    /// client acknowledged): it moves to its real slot now, so the wheel's
    /// first slots, where eviction looks, hold evictable entries and not a
    /// busy second's worth of finished connections.
    fn set_expiry(&mut self, idx: u32, expires: u32) {
        let settled = !defense::evictable(self.conns.get(idx));
        self.conns.set_expiry_settled(idx, expires, settled);
    }

    /// Applies the TCP state machine and counts active/inactive as IPVS
    /// does; returns the timeout of the state the connection is now in.
    fn transition(&mut self, idx: u32, dir: Direction, p: &Parsed) -> u32 {
        let timeouts = self.snapshot.config().timeouts;
        let sctp = p.key.proto == ip_proto::SCTP;
        if p.tcp_flags.is_none() && !sctp {
            return timeouts.udp;
        }
        let secure = self.defense.secure();
        let c = self.conns.get_mut(idx);
        if sctp && p.sctp_event.is_none() {
            // A packet without a chunk: set_sctp_state changes nothing.
            let state = SctpState::from_u8(c.state).unwrap_or(SctpState::None);
            return timeouts.sctp[state as usize];
        }
        let dir = if c.flags & flag::NO_OUTPUT != 0 {
            if dir == Direction::Output {
                c.flags &= !flag::NO_OUTPUT;
                Direction::Output
            } else {
                Direction::InputOnly
            }
        } else {
            dir
        };
        // (old, new, whether new is ESTABLISHED, timeout of new)
        let (old, new, established, timeout) = match (p.tcp_flags, p.sctp_event) {
            (Some(flags), _) => {
                if dir != Direction::Output && flags.ack && !flags.syn && !flags.rst {
                    c.client_acked = true;
                }
                let old = TcpState::from_u8(c.state).unwrap_or(TcpState::None);
                let new = tcp_state::next_state_in(secure, old, dir, flags);
                let est = new == TcpState::Established;
                (old as u8, new as u8, est, timeouts.tcp[new as usize])
            }
            (None, Some(event)) => {
                let old = SctpState::from_u8(c.state).unwrap_or(SctpState::None);
                let new = sctp_state::next_state(old, dir, event);
                let est = new == SctpState::Established;
                (old as u8, new as u8, est, timeouts.sctp[new as usize])
            }
            (None, None) => return timeouts.udp,
        };
        if new != old {
            let d = &mut self.dests[c.dest as usize];
            let inactive = c.flags & flag::INACTIVE != 0;
            if !inactive && !established {
                d.active -= 1;
                d.inactive += 1;
                c.flags |= flag::INACTIVE;
            } else if inactive && established {
                d.active += 1;
                d.inactive -= 1;
                c.flags &= !flag::INACTIVE;
            }
            c.state = new;
        }
        timeout
    }

    fn forward_in(&mut self, now_s: u32, pkt: &mut PacketBuf<'_>, idx: u32, p: &Parsed) -> Verdict {
        let acked = self.conns.get(idx).client_acked;
        let timeout = self.transition(idx, Direction::Input, p);
        self.set_expiry(idx, now_s.saturating_add(timeout));
        self.fast_sync(idx);
        self.sync_after_input(idx);
        self.track_datagram(now_s, idx, Direction::Input, p);
        let c = *self.conns.get(idx);
        self.count_in(c.dest, p);
        // TOA rides on the client's first ACK, which completes the handshake.
        let toa = !acked && c.client_acked && self.wants_toa(&c);
        self.transmit_in(pkt, &c, p, toa)
    }

    /// Sends a frame that is not a plain TCP/UDP packet of `c` (an ICMP
    /// error, a later fragment) toward its real server: for NAT after
    /// `nat_rewrite` translated it (false: the frame no longer holds what
    /// was parsed), for DR and TUN by the method's transmitter, unchanged
    /// inside.
    fn send_toward_server(
        &mut self,
        pkt: &mut PacketBuf<'_>,
        c: &Conn,
        p: &Parsed,
        nat_rewrite: impl FnOnce(&mut [u8]) -> bool,
    ) -> Verdict {
        if !c.method().translates() {
            return self.transmit_in(pkt, c, p, false);
        }
        if !nat_rewrite(pkt.data_mut()) {
            return Verdict::Drop(DropReason::Malformed);
        }
        let to = self.way_to_server(c.dest);
        fwd::send(pkt, &to.egress, to.mac)
    }

    /// Routes a rewritten server → client frame to `dst` (the director is
    /// the client's router for NAT replies).
    fn send_toward_client(&self, pkt: &mut PacketBuf<'_>, dst: IpAddr) -> Verdict {
        let Some(route) = self.snapshot.route(dst) else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        fwd::send(pkt, &route, self.neighbors.lookup(route.next_hop))
    }

    /// Sends a client → server packet with the transmitter of the
    /// connection's method (`toa`: FullNAT adds the client's address).
    fn transmit_in(&mut self, pkt: &mut PacketBuf<'_>, c: &Conn, p: &Parsed, toa: bool) -> Verdict {
        let to = self.way_to_server(c.dest);
        let mut ctx = fwd::Ctx {
            snapshot: &self.snapshot,
            ident: &mut self.ident,
            extra: &mut self.extra,
        };
        fwd::transmit(pkt, p, c, &to, &mut ctx, toa)
    }

    /// Whether `c` is FullNAT on a service that asks for TOA.
    fn wants_toa(&self, c: &Conn) -> bool {
        c.method() == crate::config::ForwardMethod::FullNat
            && self
                .dests
                .get(c.dest as usize)
                .and_then(|d| self.snapshot.config().services.get(d.service_pos as usize))
                .is_some_and(|s| s.toa)
    }

    /// A local address of service `pos` and a free port of IP protocol
    /// `proto` on it, the addresses taken in turn; `None` when every port
    /// of every one is in use (counted by the caller).
    fn take_local_port(&mut self, pos: usize, proto: u8) -> Option<(IpAddr, u16)> {
        let svc = &self.snapshot.config().services[pos];
        let range = self.snapshot.config().local_port_range;
        let count = svc.local_addresses.len();
        let first = self.services[pos].next_local;
        for i in 0..count {
            let at = (first + i) % count;
            let addr = svc.local_addresses[at];
            if let Some(port) = self.local_ports.take(addr, proto, range) {
                self.services[pos].next_local = (at + 1) % count;
                return Some((addr, port));
            }
        }
        None
    }

    fn forward_out(
        &mut self,
        now_s: u32,
        pkt: &mut PacketBuf<'_>,
        idx: u32,
        p: &Parsed,
    ) -> Verdict {
        let old = self.conns.get(idx).state;
        let timeout = self.transition(idx, Direction::Output, p);
        self.sync_on_transition(idx, old);
        self.set_expiry(idx, now_s.saturating_add(timeout));
        self.fast_sync(idx);
        self.track_datagram(now_s, idx, Direction::Output, p);
        let c = *self.conns.get(idx);
        self.count_out(c.dest, p);
        fwd::transmit_out(pkt, p, &c, &self.snapshot, &self.neighbors)
    }

    /// Expires connections due at `now`. Call between batches. A template
    /// that still controls connections lives on for its persistence timeout
    /// (IPVS re-arms it the same way); a connection the XDP program forwards
    /// is only expired once its last-seen time says so (see
    /// [`crate::fastpath::FastPathOp::ReadActivity`]).
    pub fn handle_timeout(&mut self, now: Time) {
        let now_s = secs(now);
        if !self.clock_started {
            self.conns.start_clock(now_s);
            self.clock_started = true;
            return;
        }
        let mut gone = std::mem::take(&mut self.expired);
        gone.clear();
        let mut ask = self.fast.take_activity_list();
        let (snapshot, dests) = (&self.snapshot, &self.dests);
        self.conns.expire(
            now_s,
            |idx, c| {
                if c.is_template() {
                    return (c.control > 0).then(|| {
                        let timeout = dests
                            .get(c.dest as usize)
                            .and_then(|d| snapshot.config().services.get(d.service_pos as usize))
                            .and_then(|s| s.persistence)
                            .map_or(300, |p| p.timeout);
                        now_s.saturating_add(timeout)
                    });
                }
                fast::due_for_activity_check(c).then(|| {
                    ask.push(idx);
                    now_s.saturating_add(fast::ACTIVITY_GRACE_SECS)
                })
            },
            |c| gone.push(*c),
        );
        for c in &gone {
            self.forget(c);
            if !c.is_template() {
                self.counters.conns_expired += 1;
            }
        }
        self.expired = gone;
        self.ask_activity(ask);
        self.defense_tick(now);
    }

    /// When [`Engine::handle_timeout`] next has work, if any.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.conns
            .next_tick()
            .map(|s| Time::from_secs(u64::from(s)))
    }

    /// A connection or template left the table: uncount it on its server,
    /// take its fast-path entries out of the maps and give back its FullNAT
    /// local port.
    fn forget(&mut self, c: &Conn) {
        self.fast_remove(c);
        self.unbind(c);
        if c.holds_local_port() {
            let laddr = crate::conn::bytes_addr(&c.laddr, c.v6());
            self.local_ports.give_back(laddr, c.proto, c.lport);
        }
    }
}
