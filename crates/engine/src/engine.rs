//! The engine: one shard of the director's state, driven by the datapath.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use rvs_wire::{ethernet, icmpv4, ip_proto, ipv4, ipv6, tcp, udp, EthernetAddress};

use crate::config::{Egress, ForwardMethod, ServiceKey, Snapshot};
use crate::conn::{addr_bytes, bytes_addr, flag, Conn, ConnTable, FlowKey, NewConn, NIL};
use crate::fwd::{self, nat, tun};
use crate::neighbor::NeighborTable;
use crate::packet::PacketBuf;
use crate::proto::{tcp as tcp_state, Direction, TcpState};
use crate::reply;
use crate::sched::{self, DestInfo, FlowInfo, Scheduler};
use crate::stats::{Counters, Stats};
use crate::status::{ConnInfo, DestStatus, ServiceStatus};
use crate::time::Time;
use crate::verdict::{DropReason, IfIndex, Verdict};

/// Runtime state of a real server. Lives in a slab whose ids stay stable
/// across snapshots, so connections can point at it; a server removed from
/// the configuration stays here (still forwarding its connections) until its
/// last connection ends.
#[derive(Debug)]
struct DestRt {
    live: bool,
    in_config: bool,
    service: ServiceKey,
    addr: IpAddr,
    port: u16,
    weight: u32,
    method: ForwardMethod,
    upper: u32,
    lower: u32,
    overloaded: bool,
    active: u32,
    inactive: u32,
    /// Persistence templates pointing at it.
    persistent: u32,
    /// Connections and templates bound to it.
    refs: u32,
    egress: Egress,
    /// Cached next-hop MAC and the neighbour generation it came from.
    mac: Option<EthernetAddress>,
    mac_generation: u64,
    /// Position of its service in the current snapshot, or NIL.
    service_pos: u32,
    stats: Stats,
}

impl DestRt {
    /// IPVS `ip_vs_dest_totalconns`: active + inactive + persistent.
    fn total_conns(&self) -> u32 {
        self.active + self.inactive + self.persistent
    }

    /// IPVS `ip_vs_bind_dest` overload rule.
    fn check_overload_on_bind(&mut self) {
        if self.upper != 0 && self.total_conns() >= self.upper {
            self.overloaded = true;
        }
    }

    /// IPVS `ip_vs_unbind_dest` rule: resume below the lower threshold, or
    /// below 3/4 of the upper one when no lower threshold is set.
    fn check_overload_on_unbind(&mut self) {
        let total = u64::from(self.total_conns());
        if self.lower != 0 {
            if total < u64::from(self.lower) {
                self.overloaded = false;
            }
        } else if self.upper != 0 {
            if total * 4 < u64::from(self.upper) * 3 {
                self.overloaded = false;
            }
        } else {
            self.overloaded = false;
        }
    }
}

/// Runtime state of a virtual service.
#[derive(Debug)]
struct ServiceRt {
    key: ServiceKey,
    scheduler_name: String,
    sched_flags: u32,
    sched: Box<dyn Scheduler>,
    /// Destinations in the kernel's list order (newest first).
    list: Vec<DestInfo>,
    stats: Stats,
}

/// Parsed facts about the frame being processed.
#[derive(Clone, Copy, Debug)]
struct Parsed {
    l2_len: usize,
    v6: bool,
    /// IP packet length (IPv4 total length / IPv6 40 + payload length).
    ip_len: usize,
    key: FlowKey,
    src: IpAddr,
    dst: IpAddr,
    tcp_flags: Option<tcp_state::Flags>,
    ingress: IfIndex,
}

/// One shard of the director: services, schedulers, connection table and
/// counters, with no I/O and no clock.
///
/// Call order, per worker:
/// 1. [`Engine::new`] with a validated [`Snapshot`];
/// 2. for each received frame, [`Engine::process`] — act on the [`Verdict`];
/// 3. between batches, [`Engine::handle_timeout`] with the current time
///    (at least once a second; [`Engine::poll_timeout`] says when next);
/// 4. when the control plane publishes, [`Engine::set_config`] /
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
        };
        e.set_config(snapshot);
        e
    }

    /// Installs a new configuration. Unchanged services keep their counters
    /// and scheduler position; established connections keep flowing, also to
    /// real servers that were removed (they drain). The connection limit is
    /// fixed at construction.
    pub fn set_config(&mut self, snapshot: Arc<Snapshot>) {
        let mut old: HashMap<ServiceKey, ServiceRt> =
            self.services.drain(..).map(|s| (s.key, s)).collect();
        for d in self.dests.iter_mut().filter(|d| d.live) {
            d.in_config = false;
            d.service_pos = NIL;
        }
        let mut services = Vec::with_capacity(snapshot.config().services.len());
        for (si, svc) in snapshot.config().services.iter().enumerate() {
            let mut rt = match old.remove(&svc.key) {
                Some(rt)
                    if rt.scheduler_name == svc.scheduler && rt.sched_flags == svc.sched_flags =>
                {
                    rt
                }
                previous => {
                    // New service, or a new scheduler: fresh scheduler state.
                    let stats = previous.map(|p| p.stats).unwrap_or_default();
                    let params = sched::SchedParams {
                        flags: svc.sched_flags,
                        seed: self.sched_seed ^ (si as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    };
                    ServiceRt {
                        key: svc.key,
                        scheduler_name: svc.scheduler.clone(),
                        sched_flags: svc.sched_flags,
                        sched: sched::create(&svc.scheduler, params)
                            .unwrap_or_else(|| Box::new(sched::RoundRobin::default())),
                        list: Vec::new(),
                        stats,
                    }
                }
            };
            // Kernel order: the last added first.
            let mut new_list = Vec::with_capacity(svc.dests.len());
            for (di, d) in svc.dests.iter().enumerate().rev() {
                let Some(egress) = snapshot.dest_egress(si, di) else {
                    continue;
                };
                let id = self.upsert_dest(svc.key, d, egress, si as u32);
                new_list.push(self.dest_info(id));
            }
            apply_changes(rt.sched.as_mut(), &mut rt.list, new_list);
            services.push(rt);
        }
        self.services = services;
        // Servers no longer configured and without connections go now.
        for id in 0..self.dests.len() as u32 {
            let d = &self.dests[id as usize];
            if d.live && !d.in_config && d.refs == 0 {
                self.free_dest(id);
            }
        }
        self.snapshot = snapshot;
    }

    fn upsert_dest(
        &mut self,
        service: ServiceKey,
        d: &crate::config::Dest,
        egress: Egress,
        pos: u32,
    ) -> u32 {
        let key = (service, d.addr, d.port);
        let id = match self.dest_index.get(&key) {
            Some(&id) => id,
            None => {
                let rt = DestRt {
                    live: true,
                    in_config: true,
                    service,
                    addr: d.addr,
                    port: d.port,
                    weight: d.weight,
                    method: d.method,
                    upper: d.upper_threshold,
                    lower: d.lower_threshold,
                    overloaded: false,
                    active: 0,
                    inactive: 0,
                    persistent: 0,
                    refs: 0,
                    egress,
                    mac: None,
                    mac_generation: u64::MAX,
                    service_pos: pos,
                    stats: Stats::default(),
                };
                let id = match self.dest_free.pop() {
                    Some(id) => {
                        self.dests[id as usize] = rt;
                        id
                    }
                    None => {
                        self.dests.push(rt);
                        (self.dests.len() - 1) as u32
                    }
                };
                self.dest_index.insert(key, id);
                id
            }
        };
        let rt = &mut self.dests[id as usize];
        // IPVS clears OVERLOAD when the upper threshold is removed or raised.
        if d.upper_threshold == 0 || d.upper_threshold > rt.upper {
            rt.overloaded = false;
        }
        rt.in_config = true;
        rt.service_pos = pos;
        rt.weight = d.weight;
        rt.method = d.method;
        rt.upper = d.upper_threshold;
        rt.lower = d.lower_threshold;
        if rt.egress != egress {
            rt.egress = egress;
            rt.mac_generation = u64::MAX;
        }
        id
    }

    fn free_dest(&mut self, id: u32) {
        let d = &mut self.dests[id as usize];
        d.live = false;
        let key = (d.service, d.addr, d.port);
        self.dest_index.remove(&key);
        self.dest_free.push(id);
    }

    fn dest_info(&self, id: u32) -> DestInfo {
        let d = &self.dests[id as usize];
        DestInfo {
            id,
            addr: d.addr,
            port: d.port,
            weight: d.weight,
            active: d.active,
            inactive: d.inactive,
            overloaded: d.overloaded,
        }
    }

    /// Installs a new neighbour snapshot.
    pub fn set_neighbors(&mut self, neighbors: Arc<NeighborTable>) {
        self.neighbors = neighbors;
    }

    /// Installs `neighbors` if its generation differs from the current one
    /// (cheap to call once per batch).
    pub fn set_neighbors_if_newer(&mut self, neighbors: &Arc<NeighborTable>) {
        if neighbors.generation() != self.neighbors.generation() {
            self.neighbors = Arc::clone(neighbors);
        }
    }

    /// The configuration in force.
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    /// Decides what to do with one frame received on `ingress`, rewriting it
    /// in place. Never panics and never allocates.
    pub fn process(&mut self, now: Time, pkt: &mut PacketBuf<'_>, ingress: IfIndex) -> Verdict {
        self.counters.rx_packets += 1;
        let verdict = self.decide(now, pkt, ingress);
        match verdict {
            Verdict::Forward { .. } => self.counters.forwarded += 1,
            Verdict::Reply { .. } => self.counters.replies += 1,
            Verdict::Resolve { .. } => self.counters.unresolved += 1,
            Verdict::Pass => self.counters.passed += 1,
            Verdict::Drop(r) => self.counters.drops[r.index()] += 1,
        }
        verdict
    }

    fn decide(&mut self, now: Time, pkt: &mut PacketBuf<'_>, ingress: IfIndex) -> Verdict {
        if !self.clock_started {
            self.conns.start_clock(secs(now));
            self.clock_started = true;
        }
        let parsed = match parse(pkt.data(), ingress) {
            Ok(Some(p)) => p,
            Ok(None) => return Verdict::Pass,
            Err(reason) => return Verdict::Drop(reason),
        };
        let now_s = secs(now);
        if let Some(idx) = self.conns.find_in(&parsed.key) {
            let reuse = {
                let c = self.conns.get(idx);
                parsed.tcp_flags.is_some_and(|f| f.syn)
                    && TcpState::from_u8(c.state).is_some_and(tcp_state::syn_reuses)
            };
            if !reuse {
                return self.forward_in(now_s, pkt, idx, &parsed);
            }
            // A new connection on a tuple in TIME_WAIT/CLOSE: the old entry
            // goes now and the SYN is scheduled afresh (conn_reuse_mode 1).
            let old = self.conns.remove(idx);
            self.unbind(&old);
        }
        if let Some(idx) = self.conns.find_out(&parsed.key) {
            return self.forward_out(now_s, pkt, idx, &parsed);
        }
        let Some(pos) = self.classify(&parsed) else {
            return Verdict::Pass;
        };
        self.new_connection(now_s, pkt, pos, &parsed)
    }

    /// Which service a packet without a connection belongs to: RVS's
    /// firewall-mark classifier first (as an iptables MARK rule would run
    /// before IPVS), then (protocol, VIP, port), then a persistent port-0
    /// service on the VIP.
    fn classify(&self, p: &Parsed) -> Option<usize> {
        let proto = crate::config::Protocol::from_number(p.key.proto)?;
        let mark = self.snapshot.classify(p.key.proto, p.dst, p.key.dport);
        if mark != 0 {
            if let Some(pos) = self
                .snapshot
                .service_position(&ServiceKey::fwmark(mark, p.v6))
            {
                return Some(pos);
            }
        }
        self.snapshot
            .service_position(&ServiceKey::new(proto, p.dst, p.key.dport))
            .or_else(|| {
                self.snapshot
                    .service_position(&ServiceKey::new(proto, p.dst, 0))
            })
    }

    /// Runs the service's scheduler; `None` when no server is available.
    fn schedule(&mut self, now_s: u32, pos: usize, p: &Parsed) -> Option<u32> {
        let svc = self.services.get_mut(pos)?;
        // Refresh the counts the scheduler sees (O(servers), like the kernel's scans).
        for info in svc.list.iter_mut() {
            let d = &self.dests[info.id as usize];
            info.active = d.active;
            info.inactive = d.inactive;
            info.overloaded = d.overloaded;
        }
        let flow = FlowInfo {
            now: Time::from_secs(u64::from(now_s)),
            src: p.src,
            src_port: p.key.sport,
            dst: p.dst,
            dst_port: p.key.dport,
        };
        let pick = svc.sched.schedule(&svc.list, &flow)?;
        Some(svc.list[pick].id)
    }

    /// The persistence template for this client, creating it (and scheduling
    /// its server) if needed, as `ip_vs_sched_persist` does. Returns the
    /// template index and its server.
    fn persistent_dest(
        &mut self,
        now_s: u32,
        pos: usize,
        p: &Parsed,
        pers: crate::config::Persistence,
    ) -> Result<(u32, u32), Option<DropReason>> {
        let key = self.snapshot.config().services[pos].key;
        let mut tkey = FlowKey {
            template: true,
            proto: if key.is_fwmark() { 0 } else { p.key.proto },
            v6: p.v6,
            saddr: masked(p.key.saddr, p.v6, pers.prefix_len),
            sport: 0,
            daddr: p.key.daddr,
            dport: if key.port == 0 { 0 } else { p.key.dport },
        };
        if key.is_fwmark() {
            tkey.daddr = [0; 16];
            tkey.daddr[..4].copy_from_slice(&key.fwmark.to_be_bytes());
        }
        let expires = now_s.saturating_add(pers.timeout);
        if let Some(t) = self.conns.find_in(&tkey) {
            let dest = self.conns.get(t).dest;
            // ip_vs_check_template: a server still configured keeps its
            // clients, even at weight 0 (expire_quiescent_template = 0).
            if self.dests[dest as usize].in_config {
                self.conns.set_expiry(t, expires);
                return Ok((t, dest));
            }
            // Its server is gone: re-point the template at a new pick.
            let new = self.schedule(now_s, pos, p).ok_or(None)?;
            let old = *self.conns.get(t);
            self.unbind(&old);
            let (daddr, dport) = {
                let d = &self.dests[new as usize];
                (addr_bytes(d.addr), d.port)
            };
            let c = self.conns.get_mut(t);
            c.dest = new;
            c.daddr = daddr;
            c.dport = dport;
            self.bind(new, true);
            self.conns.set_expiry(t, expires);
            return Ok((t, new));
        }
        let dest = self.schedule(now_s, pos, p).ok_or(None)?;
        let (daddr, dport, method) = {
            let d = &self.dests[dest as usize];
            (addr_bytes(d.addr), d.port, d.method)
        };
        let t = self
            .conns
            .insert(NewConn {
                key: tkey,
                daddr,
                dport,
                method,
                dest,
                state: 0,
                expires,
                control: NIL,
            })
            .ok_or(Some(DropReason::ConnTableFull))?;
        self.bind(dest, true);
        Ok((t, dest))
    }

    /// Counts a new connection (or template) on its server.
    fn bind(&mut self, dest: u32, template: bool) {
        let d = &mut self.dests[dest as usize];
        d.refs += 1;
        if template {
            d.persistent += 1;
        } else {
            d.inactive += 1;
            d.stats.conns += 1;
            if let Some(s) = svc_stats(&mut self.services, d.service_pos) {
                s.conns += 1;
            }
        }
        d.check_overload_on_bind();
    }

    fn new_connection(
        &mut self,
        now_s: u32,
        pkt: &mut PacketBuf<'_>,
        pos: usize,
        p: &Parsed,
    ) -> Verdict {
        if let Some(f) = p.tcp_flags {
            if !f.syn || f.rst {
                return Verdict::Drop(DropReason::NoConnection);
            }
        }
        let (persistence, one_packet) = {
            let svc = &self.snapshot.config().services[pos];
            (svc.persistence, svc.one_packet && p.tcp_flags.is_none())
        };
        let (template, dest_id) = match persistence {
            Some(pers) => match self.persistent_dest(now_s, pos, p, pers) {
                Ok((t, d)) => (t, d),
                Err(Some(reason)) => return Verdict::Drop(reason),
                Err(None) => return self.no_destination(pkt, p),
            },
            None => match self.schedule(now_s, pos, p) {
                Some(d) => (NIL, d),
                None => return self.no_destination(pkt, p),
            },
        };
        let (daddr, dport, method) = {
            let d = &self.dests[dest_id as usize];
            // Port-0 and firewall-mark services keep the packet's port when
            // the server has none.
            let port = if d.port == 0 { p.key.dport } else { d.port };
            (d.addr, port, d.method)
        };
        let new = NewConn {
            key: p.key,
            daddr: addr_bytes(daddr),
            dport,
            method,
            dest: dest_id,
            state: if p.tcp_flags.is_some() {
                TcpState::None as u8
            } else {
                0
            },
            expires: now_s.saturating_add(self.snapshot.config().timeouts.tcp[0]),
            control: template,
        };
        if one_packet {
            // -o: schedule this datagram alone; nothing is tracked.
            let d = &mut self.dests[dest_id as usize];
            d.stats.conns += 1;
            if let Some(s) = svc_stats(&mut self.services, d.service_pos) {
                s.conns += 1;
            }
            self.counters.conns_created += 1;
            self.count_in(dest_id, p);
            return self.transmit_in(pkt, &Conn::ephemeral(&new), p);
        }
        let Some(idx) = self.conns.insert(new) else {
            return Verdict::Drop(DropReason::ConnTableFull);
        };
        if template != NIL {
            self.conns.get_mut(template).control += 1;
        }
        self.counters.conns_created += 1;
        self.bind(dest_id, false);
        self.forward_in(now_s, pkt, idx, p)
    }

    /// No real server available: like `ip_vs_leave`, tell the client with
    /// ICMP port unreachable (IPv4) so it fails fast; counted as a drop.
    fn no_destination(&mut self, pkt: &mut PacketBuf<'_>, p: &Parsed) -> Verdict {
        self.counters.drops[DropReason::NoDestination.index()] += 1;
        if p.v6 {
            return Verdict::Drop(DropReason::NoDestination);
        }
        self.icmp_reply(pkt, p, icmpv4::CODE_PORT_UNREACHABLE, 0)
            .unwrap_or(Verdict::Drop(DropReason::NoDestination))
    }

    /// Replaces the frame by an ICMP destination-unreachable with `code` and
    /// sends it back out of the interface it came in on.
    fn icmp_reply(
        &mut self,
        pkt: &mut PacketBuf<'_>,
        p: &Parsed,
        code: u8,
        mtu: u16,
    ) -> Option<Verdict> {
        let mac = self.snapshot.interface(p.ingress)?.mac;
        let ident = self.next_ident();
        Some(
            match reply::icmpv4_error(
                pkt,
                p.l2_len,
                mac,
                icmpv4::DEST_UNREACHABLE,
                code,
                mtu,
                ident,
            ) {
                Ok(()) => Verdict::Reply { egress: p.ingress },
                Err(r) => Verdict::Drop(r),
            },
        )
    }

    /// Applies the TCP state machine and counts active/inactive as IPVS does.
    fn transition(&mut self, idx: u32, dir: Direction, p: &Parsed) -> u32 {
        let timeouts = self.snapshot.config().timeouts;
        let Some(flags) = p.tcp_flags else {
            return timeouts.udp;
        };
        let c = self.conns.get_mut(idx);
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
        let old = TcpState::from_u8(c.state).unwrap_or(TcpState::None);
        let new = tcp_state::next_state(old, dir, flags);
        if new != old {
            let d = &mut self.dests[c.dest as usize];
            let inactive = c.flags & flag::INACTIVE != 0;
            if !inactive && new != TcpState::Established {
                d.active -= 1;
                d.inactive += 1;
                c.flags |= flag::INACTIVE;
            } else if inactive && new == TcpState::Established {
                d.active += 1;
                d.inactive -= 1;
                c.flags &= !flag::INACTIVE;
            }
            c.state = new as u8;
        }
        timeouts.tcp[new as usize]
    }

    fn forward_in(&mut self, now_s: u32, pkt: &mut PacketBuf<'_>, idx: u32, p: &Parsed) -> Verdict {
        let timeout = self.transition(idx, Direction::Input, p);
        self.conns.set_expiry(idx, now_s.saturating_add(timeout));
        let c = *self.conns.get(idx);
        self.count_in(c.dest, p);
        self.transmit_in(pkt, &c, p)
    }

    fn count_in(&mut self, dest: u32, p: &Parsed) {
        let bytes = p.ip_len as u64;
        let d = &mut self.dests[dest as usize];
        d.stats.in_packets += 1;
        d.stats.in_bytes += bytes;
        if let Some(s) = svc_stats(&mut self.services, d.service_pos) {
            s.in_packets += 1;
            s.in_bytes += bytes;
        }
    }

    /// Rewrites an input packet for connection `c` and picks the next hop.
    fn transmit_in(&mut self, pkt: &mut PacketBuf<'_>, c: &Conn, p: &Parsed) -> Verdict {
        let egress = self.dests[c.dest as usize].egress;
        let mac = self.dest_mac(c.dest);
        match self.rewrite_in(pkt, c, p, &egress) {
            Ok(()) => {}
            Err(InError::Drop(r)) => return Verdict::Drop(r),
            Err(InError::FragNeeded(mtu)) => {
                return self
                    .icmp_reply(pkt, p, icmpv4::CODE_FRAG_NEEDED, mtu)
                    .unwrap_or(Verdict::Drop(DropReason::TooBig))
            }
        }
        match mac {
            Some(mac) if c.method() == ForwardMethod::Route => {
                fwd::dr::transmit(pkt.data_mut(), egress.mac, mac);
                Verdict::Forward {
                    egress: egress.iface,
                }
            }
            Some(mac) => {
                fwd::set_macs(pkt.data_mut(), egress.mac, mac);
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

    /// The method-specific rewrite of an input packet (MACs aside).
    fn rewrite_in(
        &mut self,
        pkt: &mut PacketBuf<'_>,
        c: &Conn,
        p: &Parsed,
        egress: &Egress,
    ) -> Result<(), InError> {
        match c.method() {
            ForwardMethod::Route => Ok(()),
            ForwardMethod::Masq => {
                let ip = pkt
                    .data_mut()
                    .get_mut(p.l2_len..)
                    .ok_or(InError::Drop(DropReason::Malformed))?;
                nat::rewrite(ip, nat::Side::Dst, bytes_addr(&c.daddr, c.v6()), c.dport)
                    .map_err(|_| InError::Drop(DropReason::Malformed))
            }
            ForwardMethod::Tunnel => {
                let (IpAddr::V4(dst), Some(src)) = (bytes_addr(&c.daddr, c.v6()), egress.source_v4)
                else {
                    return Err(InError::Drop(DropReason::UnsupportedFamily));
                };
                let ip = pkt
                    .data()
                    .get(p.l2_len..)
                    .ok_or(InError::Drop(DropReason::Malformed))?;
                match tun::fit(ip, egress.mtu).map_err(|_| InError::Drop(DropReason::Malformed))? {
                    tun::Fit::Fits => {}
                    tun::Fit::NeedsFragmentation(mtu) => return Err(InError::FragNeeded(mtu)),
                    tun::Fit::TooBig => return Err(InError::Drop(DropReason::TooBig)),
                }
                let ident = self.next_ident();
                tun::encapsulate(pkt, p.l2_len, src, dst, ident).map_err(InError::Drop)
            }
        }
    }

    fn forward_out(
        &mut self,
        now_s: u32,
        pkt: &mut PacketBuf<'_>,
        idx: u32,
        p: &Parsed,
    ) -> Verdict {
        let timeout = self.transition(idx, Direction::Output, p);
        self.conns.set_expiry(idx, now_s.saturating_add(timeout));
        let c = *self.conns.get(idx);
        let bytes = p.ip_len as u64;
        let d = &mut self.dests[c.dest as usize];
        d.stats.out_packets += 1;
        d.stats.out_bytes += bytes;
        if let Some(s) = svc_stats(&mut self.services, d.service_pos) {
            s.out_packets += 1;
            s.out_bytes += bytes;
        }
        let Some(ip) = pkt.data_mut().get_mut(p.l2_len..) else {
            return Verdict::Drop(DropReason::Malformed);
        };
        match nat::decrement_ttl(ip, p.v6) {
            Ok(true) => {}
            Ok(false) => return Verdict::Drop(DropReason::TtlExceeded),
            Err(_) => return Verdict::Drop(DropReason::Malformed),
        }
        if nat::rewrite(ip, nat::Side::Src, bytes_addr(&c.vaddr, c.v6()), c.vport).is_err() {
            return Verdict::Drop(DropReason::Malformed);
        }
        let Some(route) = self.snapshot.route(p.dst) else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        match self.neighbors.lookup(route.next_hop) {
            Some(mac) => {
                fwd::set_macs(pkt.data_mut(), route.mac, mac);
                Verdict::Forward {
                    egress: route.iface,
                }
            }
            None => Verdict::Resolve {
                egress: route.iface,
                next_hop: route.next_hop,
            },
        }
    }

    /// The next-hop MAC of a real server, cached per neighbour generation.
    fn dest_mac(&mut self, id: u32) -> Option<EthernetAddress> {
        let generation = self.neighbors.generation();
        let d = &mut self.dests[id as usize];
        if d.mac_generation != generation {
            d.mac = self.neighbors.lookup(d.egress.next_hop);
            d.mac_generation = generation;
        }
        d.mac
    }

    fn next_ident(&mut self) -> u16 {
        self.ident = self.ident.wrapping_add(1);
        self.ident
    }

    /// Uncounts a connection or template that left the table.
    fn unbind(&mut self, c: &Conn) {
        if !c.is_template() && c.control != NIL {
            let t = self.conns.get_mut(c.control);
            if t.is_template() && t.flags & flag::LIVE != 0 {
                t.control = t.control.saturating_sub(1);
            }
        }
        let d = &mut self.dests[c.dest as usize];
        if c.is_template() {
            d.persistent = d.persistent.saturating_sub(1);
        } else if c.flags & flag::INACTIVE != 0 {
            d.inactive = d.inactive.saturating_sub(1);
        } else {
            d.active = d.active.saturating_sub(1);
        }
        d.refs = d.refs.saturating_sub(1);
        d.check_overload_on_unbind();
        if d.refs == 0 && !d.in_config {
            self.free_dest(c.dest);
        }
    }

    /// Expires connections due at `now`. Call between batches. A template
    /// that still controls connections lives on for its persistence timeout
    /// (IPVS re-arms it the same way).
    pub fn handle_timeout(&mut self, now: Time) {
        let now_s = secs(now);
        if !self.clock_started {
            self.conns.start_clock(now_s);
            self.clock_started = true;
            return;
        }
        let mut gone = std::mem::take(&mut self.expired);
        gone.clear();
        let (snapshot, dests) = (&self.snapshot, &self.dests);
        self.conns.expire(
            now_s,
            |c| {
                (c.is_template() && c.control > 0).then(|| {
                    let timeout = dests
                        .get(c.dest as usize)
                        .and_then(|d| snapshot.config().services.get(d.service_pos as usize))
                        .and_then(|s| s.persistence)
                        .map_or(300, |p| p.timeout);
                    now_s.saturating_add(timeout)
                })
            },
            |c| gone.push(*c),
        );
        for c in &gone {
            self.unbind(c);
            if !c.is_template() {
                self.counters.conns_expired += 1;
            }
        }
        self.expired = gone;
    }

    /// When [`Engine::handle_timeout`] next has work, if any.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.conns
            .next_tick()
            .map(|s| Time::from_secs(u64::from(s)))
    }

    /// Engine-wide counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Tracked connections.
    pub fn connection_count(&self) -> u32 {
        self.conns.len()
    }

    /// The connection limit this engine was built with.
    pub fn connection_capacity(&self) -> u32 {
        self.conns.capacity()
    }

    /// Memory reserved per connection slot (slab + both indexes), in bytes.
    pub fn bytes_per_connection(&self) -> f64 {
        self.conns.bytes_per_connection()
    }

    /// Services, their real servers (configured ones in `ipvsadm -a` order,
    /// then draining ones) and counters. For the control plane; allocates.
    pub fn status(&self) -> Vec<ServiceStatus> {
        let mut out = Vec::with_capacity(self.services.len());
        for (pos, svc) in self.services.iter().enumerate() {
            let cfg = &self.snapshot.config().services[pos];
            let mut dests: Vec<DestStatus> = cfg
                .dests
                .iter()
                .filter_map(|d| {
                    let id = *self.dest_index.get(&(svc.key, d.addr, d.port))?;
                    Some(self.dest_status(id))
                })
                .collect();
            for d in self.dests.iter().enumerate() {
                let (id, rt) = d;
                if rt.live && !rt.in_config && rt.service == svc.key {
                    dests.push(self.dest_status(id as u32));
                }
            }
            out.push(ServiceStatus {
                key: svc.key,
                scheduler: svc.scheduler_name.clone(),
                dests,
                stats: svc.stats,
            });
        }
        out
    }

    fn dest_status(&self, id: u32) -> DestStatus {
        let d = &self.dests[id as usize];
        DestStatus {
            addr: d.addr,
            port: d.port,
            weight: d.weight,
            method: d.method,
            active: d.active,
            inactive: d.inactive,
            persistent: d.persistent,
            overloaded: d.overloaded,
            draining: !d.in_config,
            stats: d.stats,
        }
    }

    /// Every tracked connection (`ipvsadm -Lc`). For the control plane; allocates.
    pub fn connections(&self, now: Time) -> Vec<ConnInfo> {
        let now_s = secs(now);
        let mut out = Vec::with_capacity(self.conns.len() as usize);
        self.conns.for_each(|c| {
            let v6 = c.v6();
            out.push(ConnInfo {
                protocol: c.proto,
                template: c.is_template(),
                client: (bytes_addr(&c.caddr, v6), c.cport),
                virtual_: (bytes_addr(&c.vaddr, v6), c.vport),
                dest: (bytes_addr(&c.daddr, v6), c.dport),
                state: if c.is_template() {
                    "NONE"
                } else if c.proto == ip_proto::TCP {
                    TcpState::from_u8(c.state).unwrap_or(TcpState::None).name()
                } else {
                    crate::proto::udp::STATE_NAME
                },
                expires_in_secs: c.expires.saturating_sub(now_s),
                method: c.method(),
            });
        });
        out
    }

    /// Zeroes the traffic counters of one service and its real servers, or
    /// of all (`ipvsadm -Z [service]`); connection counts are state, not
    /// counters, and stay.
    pub fn zero_stats(&mut self, only: Option<ServiceKey>) {
        let hit = |k: &ServiceKey| only.is_none_or(|o| o == *k);
        for s in self.services.iter_mut().filter(|s| hit(&s.key)) {
            s.stats = Stats::default();
        }
        for d in self.dests.iter_mut().filter(|d| hit(&d.service)) {
            d.stats = Stats::default();
        }
    }

    /// Drops every tracked connection (e.g. `ipvsadm -C` semantics).
    pub fn clear_connections(&mut self) {
        let mut bound: Vec<Conn> = Vec::with_capacity(self.conns.len() as usize);
        self.conns.clear(|c| bound.push(*c));
        for c in &bound {
            self.unbind(c);
        }
    }
}

/// Why an input rewrite did not produce a frame to forward.
enum InError {
    Drop(DropReason),
    FragNeeded(u16),
}

/// `addr` with only its first `prefix_len` bits kept (the `-M` netmask).
fn masked(addr: [u8; 16], v6: bool, prefix_len: u8) -> [u8; 16] {
    let width = if v6 { 128 } else { 32 };
    let keep = u32::from(prefix_len.min(width));
    let mut out = [0u8; 16];
    for (i, b) in addr.iter().enumerate().take(width as usize / 8) {
        let bits_before = i as u32 * 8;
        out[i] = if bits_before + 8 <= keep {
            *b
        } else if bits_before >= keep {
            0
        } else {
            b & (0xffu8 << (8 - (keep - bits_before)))
        };
    }
    out
}

/// The stats of the service at `pos`; `None` for a draining server whose
/// service is gone (its packets still count on the server itself).
fn svc_stats(services: &mut [ServiceRt], pos: u32) -> Option<&mut Stats> {
    services.get_mut(pos as usize).map(|s| &mut s.stats)
}

/// Feeds a snapshot's destination list to a scheduler the way the kernel
/// would have seen it: one del_dest per removed server, one add_dest per new
/// server (inserted at the head, in the order they were added), one upd_dest
/// per changed weight. Runs on configuration changes only.
fn apply_changes(sched: &mut dyn Scheduler, list: &mut Vec<DestInfo>, new_list: Vec<DestInfo>) {
    let mut cur = list.clone();
    for gone in list
        .iter()
        .filter(|d| !new_list.iter().any(|n| n.id == d.id))
    {
        let prev = cur.clone();
        cur.retain(|d| d.id != gone.id);
        sched.dests_changed(&prev, &cur);
    }
    for added in new_list.iter().rev() {
        if !cur.iter().any(|d| d.id == added.id) {
            let prev = cur.clone();
            cur.insert(0, *added);
            sched.dests_changed(&prev, &cur);
        }
    }
    for n in &new_list {
        if let Some(pos) = cur.iter().position(|d| d.id == n.id) {
            if cur[pos].weight != n.weight {
                let prev = cur.clone();
                cur[pos] = *n;
                sched.dests_changed(&prev, &cur);
            }
        }
    }
    let same_order =
        cur.len() == new_list.len() && cur.iter().zip(&new_list).all(|(a, b)| a.id == b.id);
    if !same_order {
        sched.dests_changed(&cur, &new_list);
    }
    *list = new_list;
}

/// Parses the headers the engine needs. `Ok(None)`: not IP/TCP/UDP, so not
/// ours. Errors are drop reasons.
fn parse(data: &[u8], ingress: IfIndex) -> Result<Option<Parsed>, DropReason> {
    let eth = ethernet::Frame::new_checked(data).map_err(|_| DropReason::Malformed)?;
    let l2_len = eth.header_len();
    let l3 = data.get(l2_len..).ok_or(DropReason::Malformed)?;
    let (v6, ip_len, proto, src, dst, l4) = match eth.ethertype() {
        ethernet::ethertype::IPV4 => {
            let ip = ipv4::Packet::new_checked(l3).map_err(|_| DropReason::Malformed)?;
            if !ip.verify_checksum() {
                return Err(DropReason::BadIpChecksum);
            }
            if ip.is_fragment() {
                return Err(DropReason::Fragment);
            }
            let total = usize::from(ip.total_len());
            (
                false,
                total,
                ip.protocol(),
                IpAddr::V4(ip.src_addr()),
                IpAddr::V4(ip.dst_addr()),
                l3.get(ip.header_len()..total)
                    .ok_or(DropReason::Malformed)?,
            )
        }
        ethernet::ethertype::IPV6 => {
            let ip = ipv6::Packet::new_checked(l3).map_err(|_| DropReason::Malformed)?;
            let total = ipv6::HEADER_LEN + usize::from(ip.payload_len());
            (
                true,
                total,
                ip.next_header(),
                IpAddr::V6(ip.src_addr()),
                IpAddr::V6(ip.dst_addr()),
                l3.get(ipv6::HEADER_LEN..total)
                    .ok_or(DropReason::Malformed)?,
            )
        }
        _ => return Ok(None),
    };
    let (sport, dport, tcp_flags) = match proto {
        ip_proto::TCP => {
            let t = tcp::Packet::new_checked(l4).map_err(|_| DropReason::Malformed)?;
            let flags = tcp_state::Flags {
                syn: t.syn(),
                fin: t.fin(),
                ack: t.ack(),
                rst: t.rst(),
            };
            (t.src_port(), t.dst_port(), Some(flags))
        }
        ip_proto::UDP => {
            let u = udp::Packet::new_checked(l4).map_err(|_| DropReason::Malformed)?;
            (u.src_port(), u.dst_port(), None)
        }
        _ => return Ok(None),
    };
    Ok(Some(Parsed {
        l2_len,
        v6,
        ip_len,
        key: FlowKey {
            template: false,
            proto,
            v6,
            saddr: addr_bytes(src),
            sport,
            daddr: addr_bytes(dst),
            dport,
        },
        src,
        dst,
        tcp_flags,
        ingress,
    }))
}
