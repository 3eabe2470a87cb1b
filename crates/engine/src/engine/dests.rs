//! Services and real servers at run time: reconciling a new configuration
//! with the state that must survive it, scheduling, and counting
//! connections on their server (the kernel's `ip_vs_bind_dest` /
//! `ip_vs_unbind_dest` with their threshold rules).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use rvs_wire::EthernetAddress;

use super::{Engine, Parsed};
use crate::config::{Dest, Egress, ForwardMethod, ServiceKey, Snapshot};
use crate::conn::{flag, Conn, NIL};
use crate::fwd::ToServer;
use crate::neighbor::NeighborTable;
use crate::sched::{self, DestInfo, FlowInfo, Scheduler};
use crate::stats::Stats;
use crate::time::Time;

/// Runtime state of a real server. Lives in a slab whose ids stay stable
/// across snapshots, so connections can point at it; a server removed from
/// the configuration stays here (still forwarding its connections) until its
/// last connection ends.
#[derive(Debug)]
pub(super) struct DestRt {
    pub(super) live: bool,
    pub(super) in_config: bool,
    pub(super) service: ServiceKey,
    pub(super) addr: IpAddr,
    pub(super) port: u16,
    pub(super) weight: u32,
    pub(super) method: ForwardMethod,
    pub(super) tunnel: rvs_vocab::Tunnel,
    pub(super) upper: u32,
    pub(super) lower: u32,
    pub(super) overloaded: bool,
    pub(super) active: u32,
    pub(super) inactive: u32,
    /// Persistence templates pointing at it.
    pub(super) persistent: u32,
    /// Connections and templates bound to it.
    pub(super) refs: u32,
    pub(super) egress: Egress,
    /// Cached next-hop MAC and the neighbour generation it came from.
    pub(super) mac: Option<EthernetAddress>,
    pub(super) mac_generation: u64,
    /// Position of its service in the current snapshot, or NIL.
    pub(super) service_pos: u32,
    pub(super) stats: Stats,
    /// Fast-path state of its next hop and counter slot.
    pub(super) fast: super::fast::DestFast,
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

    /// The next-hop MAC, cached per neighbour generation.
    fn mac(&mut self, neighbors: &NeighborTable) -> Option<EthernetAddress> {
        let generation = neighbors.generation();
        if self.mac_generation != generation {
            self.mac = neighbors.lookup(self.egress.next_hop);
            self.mac_generation = generation;
        }
        self.mac
    }
}

/// Runtime state of a virtual service.
#[derive(Debug)]
pub(super) struct ServiceRt {
    pub(super) key: ServiceKey,
    pub(super) scheduler_name: String,
    pub(super) sched_flags: u32,
    sched: Box<dyn Scheduler>,
    /// Destinations in the kernel's list order (newest first).
    list: Vec<DestInfo>,
    pub(super) stats: Stats,
    /// The local address FullNAT tries first for the next connection.
    pub(super) next_local: usize,
}

impl ServiceRt {
    /// Its real servers' slab ids, in list order.
    pub(super) fn dest_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.list.iter().map(|i| i.id)
    }
}

impl Engine {
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
                        next_local: 0,
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
        self.local_ports.reconcile(snapshot.config());
        let previous = std::mem::replace(&mut self.snapshot, snapshot);
        self.fast_config_changed(&previous);
        self.defense_config_changed();
        self.fragment_config_changed();
    }

    fn upsert_dest(&mut self, service: ServiceKey, d: &Dest, egress: Egress, pos: u32) -> u32 {
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
                    tunnel: d.tunnel,
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
                    fast: super::fast::DestFast::default(),
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
                self.fast_dest_created(id);
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
        rt.tunnel = d.tunnel;
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
        self.fast_neighbors_changed();
    }

    /// Installs `neighbors` if its generation differs from the current one
    /// (cheap to call once per batch).
    pub fn set_neighbors_if_newer(&mut self, neighbors: &Arc<NeighborTable>) {
        if neighbors.generation() != self.neighbors.generation() {
            self.set_neighbors(Arc::clone(neighbors));
        }
    }

    /// The way to a real server, with its next-hop MAC if resolved.
    pub(super) fn way_to_server(&mut self, id: u32) -> ToServer {
        let d = &mut self.dests[id as usize];
        ToServer {
            egress: d.egress,
            mac: d.mac(&self.neighbors),
            tunnel: d.tunnel,
        }
    }

    /// Runs the service's scheduler; `None` when no server is available.
    pub(super) fn schedule(&mut self, now_s: u32, pos: usize, p: &Parsed) -> Option<u32> {
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

    /// Counts a new connection (or template) on its server, and a
    /// connection as one the scheduler made.
    pub(super) fn bind(&mut self, dest: u32, template: bool) {
        self.attach_to_dest(dest, template);
        if !template {
            self.count_scheduled(dest);
        }
    }

    /// Counts a connection (inactive until established) or template on its
    /// server, with the threshold rule.
    pub(super) fn attach_to_dest(&mut self, dest: u32, template: bool) {
        let d = &mut self.dests[dest as usize];
        d.refs += 1;
        if template {
            d.persistent += 1;
        } else {
            d.inactive += 1;
        }
        d.check_overload_on_bind();
    }

    /// Uncounts a connection or template that left the table.
    pub(super) fn unbind(&mut self, c: &Conn) {
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

    /// A connection was scheduled to `dest` (IPVS's `conns` counter).
    pub(super) fn count_scheduled(&mut self, dest: u32) {
        let d = &mut self.dests[dest as usize];
        d.stats.conns += 1;
        if let Some(s) = svc_stats(&mut self.services, d.service_pos) {
            s.conns += 1;
        }
    }

    /// A client → server packet of `dest`.
    pub(super) fn count_in(&mut self, dest: u32, p: &Parsed) {
        self.add_traffic(dest, 1, p.ip_len as u64, 0, 0);
    }

    /// A server → client packet of `dest` (NAT).
    pub(super) fn count_out(&mut self, dest: u32, p: &Parsed) {
        self.add_traffic(dest, 0, 0, 1, p.ip_len as u64);
    }

    /// Adds traffic to a server and its service (a draining server whose
    /// service is gone counts on itself only).
    pub(super) fn add_traffic(
        &mut self,
        dest: u32,
        in_packets: u64,
        in_bytes: u64,
        out_packets: u64,
        out_bytes: u64,
    ) {
        let d = &mut self.dests[dest as usize];
        add(&mut d.stats, in_packets, in_bytes, out_packets, out_bytes);
        if let Some(s) = svc_stats(&mut self.services, d.service_pos) {
            add(s, in_packets, in_bytes, out_packets, out_bytes);
        }
    }
}

fn add(s: &mut Stats, in_packets: u64, in_bytes: u64, out_packets: u64, out_bytes: u64) {
    s.in_packets += in_packets;
    s.in_bytes += in_bytes;
    s.out_packets += out_packets;
    s.out_bytes += out_bytes;
}

/// The stats of the service at `pos`; `None` for a draining server whose
/// service is gone.
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
