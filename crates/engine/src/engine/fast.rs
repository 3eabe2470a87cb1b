//! The engine's side of the XDP fast path (see [`crate::fastpath`]): which
//! map entries each connection has, the next-hop table, activity checks
//! before expiry, and folding the program's counters back in.
//!
//! Per connection a few bits ([`crate::conn::fast`]) say what the maps
//! hold: `MAPPED` (every direction has an entry), `FORWARD` (the entries
//! forward in XDP) and `REPLY_SYN` (only the NAT reply entry forwards, and
//! only the server's SYN+ACK). [`Engine::fast_sync`] compares them with what the
//! connection's state calls for after every packet the engine sees, and
//! emits ops only when they differ, so an established flow costs no map
//! write per packet.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use rvs_wire::EthernetAddress;

use super::{secs, Engine};
use crate::config::{ServiceKey, Snapshot};
use crate::conn::{addr_bytes, bytes_addr, fast, Conn, FlowKey, NIL};
use crate::fastpath::{
    DestCounters, DestSlot, FastAction, FastForward, FastKey, FastPathOp, NextHop, NextHopId,
    TcpSegments, MAX_DEST_SLOTS, MAX_NEXT_HOPS,
};
use crate::fwd;
use crate::proto::tcp::{self as tcp_state, Flags};
use crate::proto::{Direction, TcpState};
use crate::time::Time;
use crate::verdict::IfIndex;

/// A connection due to expire while the XDP program forwards it is kept
/// this long while the caller reads its last-seen time.
pub(super) const ACTIVITY_GRACE_SECS: u32 = 2;

/// Room reserved for ops between two drains (a batch creates a few per
/// frame; expiry may need more, and then the queue grows off the hot path).
const OPS_CAPACITY: usize = 4096;
/// Routes to clients expected at most, reserved up front.
const ROUTE_HOPS_RESERVED: usize = 1024;

/// Fast-path state of one real server.
#[derive(Clone, Copy, Debug, Default)]
pub(in crate::engine) struct DestFast {
    /// The next hop last sent for its slot (`None`: never sent).
    hop_sent: Option<Option<NextHop>>,
    /// The program's counter totals at the last fold.
    base: DestCounters,
}

#[derive(Debug)]
struct RouteHop {
    key: (IfIndex, IpAddr),
    src_mac: EthernetAddress,
    refs: u32,
    sent: Option<NextHop>,
}

/// Next hops of NAT replies (routes to clients), shared by the connections
/// behind one gateway and freed when the last one goes.
#[derive(Debug, Default)]
struct RouteHops {
    index: HashMap<(IfIndex, IpAddr), u32>,
    /// Slot `i` is next hop `MAX_DEST_SLOTS + i`; `None` = free.
    slots: Vec<Option<RouteHop>>,
    free: Vec<u32>,
}

/// The engine's fast-path bookkeeping.
#[derive(Debug)]
pub(super) struct FastState {
    enabled: bool,
    ops: VecDeque<FastPathOp>,
    route_hops: RouteHops,
    /// Connections whose activity to ask about (reused between calls).
    activity: Vec<u32>,
    /// Entries the connection map holds (a NAT connection has two).
    entries: u64,
    /// The activity answers being waited for are a `sync_retries` round:
    /// only connections with traffic since the previous round are sent.
    retry_round: bool,
}

impl FastState {
    pub(super) fn new(enabled: bool) -> Self {
        FastState {
            enabled,
            ops: VecDeque::with_capacity(OPS_CAPACITY),
            route_hops: RouteHops {
                index: HashMap::with_capacity(ROUTE_HOPS_RESERVED),
                slots: Vec::with_capacity(ROUTE_HOPS_RESERVED),
                free: Vec::new(),
            },
            activity: Vec::new(),
            entries: 0,
            retry_round: false,
        }
    }

    pub(super) fn take_activity_list(&mut self) -> Vec<u32> {
        let mut v = std::mem::take(&mut self.activity);
        v.clear();
        v
    }
}

/// Whether expiry must first ask the XDP program when it last saw `c`.
pub(super) fn due_for_activity_check(c: &Conn) -> bool {
    c.fast & (fast::FORWARD | fast::REPLY_SYN) != 0
}

/// The client → virtual direction of `c`.
fn in_key(c: &Conn) -> FastKey {
    let v6 = c.v6();
    FastKey {
        proto: c.proto,
        saddr: bytes_addr(&c.caddr, v6),
        sport: c.cport,
        daddr: bytes_addr(&c.vaddr, v6),
        dport: c.vport,
    }
}

/// The real server → client direction of a NAT or FullNAT connection:
/// to the client, or to FullNAT's local address and port.
fn out_key(c: &Conn) -> Option<FastKey> {
    let v6 = c.v6();
    c.method().translates().then(|| FastKey {
        proto: c.proto,
        saddr: bytes_addr(&c.daddr, v6),
        sport: c.dport,
        daddr: bytes_addr(&c.laddr, v6),
        dport: c.lport,
    })
}

/// States in which the slow path changes nothing but timers and counters
/// for every segment the XDP program forwards (ACK set, no SYN, FIN or
/// RST): in IPVS's tables, both the normal and the `secure_tcp` one, an
/// ACK leaves ESTABLISHED, FIN_WAIT, TIME_WAIT, CLOSE and CLOSE_WAIT as
/// they are in every direction. (LAST_ACK is not among them: a client's
/// ACK moves it to CLOSE.) So a connection's closing ACKs do not cost a
/// trip through the engine; its FINs and RSTs still do.
///
/// SCTP: the states past the handshake in which IPVS's table leaves the
/// association as it is for a DATA-class packet in every direction
/// (ESTABLISHED and the SHUTDOWN states), in every method: where the
/// rewrite changes a port (NAT to another port, FullNAT) the program
/// updates the CRC32c for the changed ports (docs/fastpath.md).
fn forwardable_state(c: &Conn) -> bool {
    const FORWARDABLE: [TcpState; 5] = [
        TcpState::Established,
        TcpState::FinWait,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
    ];
    match c.proto {
        rvs_wire::ip_proto::TCP => FORWARDABLE.iter().any(|&s| c.state == s as u8),
        rvs_wire::ip_proto::SCTP => sctp_data_keeps(c.state),
        _ => true,
    }
}

/// Whether an SCTP association in `state` (past its handshake) stays there
/// for a DATA-class packet in every direction.
fn sctp_data_keeps(state: u8) -> bool {
    use crate::proto::{sctp, SctpState};
    let Some(s) = SctpState::from_u8(state) else {
        return false;
    };
    !sctp::half_open(s)
        && s != SctpState::Closed
        && [Direction::Input, Direction::Output, Direction::InputOnly]
            .into_iter()
            .all(|dir| sctp::next_state(s, dir, sctp::Event::Data) == s)
}

/// Whether the XDP program may forward a NAT real server's SYN+ACK on its
/// own: the connection is in SYN_RECV, where IPVS's normal table leaves an
/// OUTPUT SYN in SYN_RECV (nothing but the timer is reset), so the
/// handshake costs one trip through the engine less. Never while the
/// `secure_tcp` defence may turn on (`never_secure` false): its table
/// moves SYN_RECV to SYNACK on that segment.
fn reply_syn_forwardable(c: &Conn, never_secure: bool) -> bool {
    const SYN: Flags = Flags {
        syn: true,
        fin: false,
        ack: true,
        rst: false,
    };
    let syn_recv = TcpState::SynRecv;
    never_secure
        && c.proto == rvs_wire::ip_proto::TCP
        && c.method().translates()
        && c.state == syn_recv as u8
        && c.flags & crate::conn::flag::NO_OUTPUT == 0
        && tcp_state::next_state(syn_recv, Direction::Output, SYN) == syn_recv
}

impl Engine {
    /// The next change to make to the XDP program's maps, in order. Drain
    /// after each batch, before transmitting it.
    pub fn poll_fast_path(&mut self) -> Option<FastPathOp> {
        self.fast.ops.pop_front()
    }

    /// Brings the map entries of connection `idx` in line with its state.
    pub(super) fn fast_sync(&mut self, idx: u32) {
        self.fast_sync_with(idx, false);
    }

    /// As [`Engine::fast_sync`]; `force` rewrites the entries even if their
    /// kind did not change (routes, interfaces or the switch changed).
    fn fast_sync_with(&mut self, idx: u32, force: bool) {
        let c = self.conns.get(idx);
        if c.is_template() {
            return;
        }
        let usable = self.fast.enabled && c.dest < MAX_DEST_SLOTS;
        let never_secure = self.snapshot.config().defense.secure_tcp == 0;
        let wanted = if !usable {
            0
        } else if forwardable_state(c) {
            fast::FORWARD
        } else if reply_syn_forwardable(c, never_secure) {
            fast::REPLY_SYN
        } else {
            0
        };
        // The common case, once per packet the engine sees: nothing changes.
        if !force {
            let settled = if wanted == 0 {
                c.fast == fast::MAPPED && c.out_hop == NIL
            } else {
                c.fast == fast::MAPPED | wanted
            };
            if settled {
                return;
            }
        }
        let c = *c;
        let out = out_key(&c);
        let mut actions = (FastAction::ToEngine, FastAction::ToEngine);
        let mut out_hop = NIL;
        if wanted != 0 {
            if let Some(forward) = self.forward_actions(&c, out.is_some(), wanted) {
                (actions, out_hop) = forward;
            }
        }
        let forwarding = matches!(
            actions,
            (FastAction::Forward(_), _) | (_, FastAction::Forward(_))
        );
        let bits = fast::MAPPED | if forwarding { wanted } else { 0 };
        self.fast.ops.push_back(FastPathOp::Upsert {
            key: in_key(&c),
            action: actions.0,
        });
        if let Some(key) = out {
            self.fast.ops.push_back(FastPathOp::Upsert {
                key,
                action: actions.1,
            });
        }
        if c.out_hop != NIL {
            self.release_route_hop(c.out_hop);
        }
        if c.fast & fast::MAPPED == 0 {
            self.fast.entries += 1 + u64::from(out.is_some());
        }
        let c = self.conns.get_mut(idx);
        c.fast = bits | (c.fast & fast::PEER);
        c.out_hop = out_hop;
    }

    /// The actions of both directions of `c` for the [`fast`] bit `wanted`
    /// (`FORWARD`: both forward; `REPLY_SYN`: only the NAT reply, only its
    /// SYN+ACK) and the route hop the reply direction holds a reference on;
    /// `None` if some part cannot be forwarded in XDP (the connection then
    /// stays with the engine).
    fn forward_actions(
        &mut self,
        c: &Conn,
        nat: bool,
        wanted: u8,
    ) -> Option<((FastAction, FastAction), u32)> {
        let to = self.way_to_server(c.dest);
        let rewrite = fwd::fast_rewrite(c, &to)?;
        let slot = DestSlot(c.dest);
        let forwarded = if c.proto == rvs_wire::ip_proto::SCTP {
            TcpSegments::SCTP_DATA
        } else {
            TcpSegments::ACK
        };
        let (in_action, reply_segments) = if wanted == fast::FORWARD {
            self.send_dest_hop(c.dest);
            let in_action = FastAction::Forward(FastForward {
                rewrite,
                next_hop: NextHopId(c.dest),
                segments: forwarded,
                dest: slot,
            });
            (in_action, forwarded)
        } else {
            (FastAction::ToEngine, TcpSegments::SYN)
        };
        if !nat {
            return Some(((in_action, FastAction::ToEngine), NIL));
        }
        let reply_rewrite = fwd::fast_rewrite_out(c)?;
        let hop = self.take_route_hop(bytes_addr(&c.caddr, c.v6()))?;
        let out_action = FastAction::Forward(FastForward {
            rewrite: reply_rewrite,
            next_hop: NextHopId(hop),
            segments: reply_segments,
            dest: slot,
        });
        Some(((in_action, out_action), hop))
    }

    /// Takes a connection's entries out of the maps (it left the table).
    pub(super) fn fast_remove(&mut self, c: &Conn) {
        if c.is_template() || c.fast & fast::MAPPED == 0 {
            return;
        }
        self.fast
            .ops
            .push_back(FastPathOp::Remove { key: in_key(c) });
        let out = out_key(c);
        if let Some(key) = out {
            self.fast.ops.push_back(FastPathOp::Remove { key });
        }
        self.fast.entries -= 1 + u64::from(out.is_some());
        if c.out_hop != NIL {
            self.release_route_hop(c.out_hop);
        }
    }

    /// Entries the XDP program's connection map holds (a NAT connection
    /// has two), once the ops drained so far are applied.
    pub fn fast_path_entries(&self) -> u64 {
        self.fast.entries
    }

    /// Sends the next hop of real server `id` if it is not what was last sent.
    fn send_dest_hop(&mut self, id: u32) {
        if id >= MAX_DEST_SLOTS {
            return;
        }
        let to = self.way_to_server(id);
        let hop = to.mac.map(|mac| NextHop {
            iface: to.egress.iface,
            src_mac: to.egress.mac,
            dst_mac: mac,
        });
        let d = &mut self.dests[id as usize];
        if d.fast.hop_sent != Some(hop) {
            d.fast.hop_sent = Some(hop);
            self.fast.ops.push_back(FastPathOp::SetNextHop {
                id: NextHopId(id),
                hop,
            });
        }
    }

    /// A reference on the next hop of the route to `client`, created (and
    /// sent) if needed; `None` without a route or with the table full.
    fn take_route_hop(&mut self, client: IpAddr) -> Option<u32> {
        let route = self.snapshot.route(client)?;
        let key = (route.iface, route.next_hop);
        let hops = &mut self.fast.route_hops;
        if let Some(&id) = hops.index.get(&key) {
            if let Some(Some(h)) = hops.slots.get_mut((id - MAX_DEST_SLOTS) as usize) {
                h.refs += 1;
                return Some(id);
            }
        }
        let slot = match hops.free.pop() {
            Some(s) => s,
            None => {
                let s = hops.slots.len() as u32;
                if MAX_DEST_SLOTS + s >= MAX_NEXT_HOPS {
                    return None;
                }
                hops.slots.push(None);
                s
            }
        };
        let id = MAX_DEST_SLOTS + slot;
        let hop = self.neighbors.lookup(route.next_hop).map(|mac| NextHop {
            iface: route.iface,
            src_mac: route.mac,
            dst_mac: mac,
        });
        let hops = &mut self.fast.route_hops;
        hops.slots[slot as usize] = Some(RouteHop {
            key,
            src_mac: route.mac,
            refs: 1,
            sent: hop,
        });
        hops.index.insert(key, id);
        self.fast.ops.push_back(FastPathOp::SetNextHop {
            id: NextHopId(id),
            hop,
        });
        Some(id)
    }

    fn release_route_hop(&mut self, id: u32) {
        let hops = &mut self.fast.route_hops;
        let Some(slot) = id.checked_sub(MAX_DEST_SLOTS) else {
            return;
        };
        let Some(entry) = hops.slots.get_mut(slot as usize) else {
            return;
        };
        let Some(h) = entry else { return };
        h.refs = h.refs.saturating_sub(1);
        if h.refs == 0 {
            hops.index.remove(&h.key);
            *entry = None;
            hops.free.push(slot);
        }
    }

    /// A new real server took slot `id`: its counters start from zero.
    pub(super) fn fast_dest_created(&mut self, id: u32) {
        self.dests[id as usize].fast = DestFast::default();
        if id < MAX_DEST_SLOTS {
            self.fast
                .ops
                .push_back(FastPathOp::ResetDest { slot: DestSlot(id) });
        }
    }

    /// The neighbour table changed: resend next hops whose MAC changed.
    pub(super) fn fast_neighbors_changed(&mut self) {
        for id in 0..self.dests.len() as u32 {
            let d = &self.dests[id as usize];
            if d.live && d.fast.hop_sent.is_some() {
                self.send_dest_hop(id);
            }
        }
        let neighbors = std::sync::Arc::clone(&self.neighbors);
        let hops = &mut self.fast.route_hops;
        for (slot, entry) in hops.slots.iter_mut().enumerate() {
            let Some(h) = entry else { continue };
            let hop = neighbors.lookup(h.key.1).map(|mac| NextHop {
                iface: h.key.0,
                src_mac: h.src_mac,
                dst_mac: mac,
            });
            if hop != h.sent {
                h.sent = hop;
                self.fast.ops.push_back(FastPathOp::SetNextHop {
                    id: NextHopId(MAX_DEST_SLOTS + slot as u32),
                    hop,
                });
            }
        }
    }

    /// A new configuration is in force (`self.snapshot`); `previous` was.
    /// When the switch, the interfaces or the routes changed every entry is
    /// rewritten (its rewrite or next hop may differ); otherwise only the
    /// next hops of servers are checked.
    pub(super) fn fast_config_changed(&mut self, previous: &Snapshot) {
        let (old, new) = (previous.config(), self.snapshot.config());
        let enabled = new.fast_path;
        // secure_tcp turning possible (or impossible) changes which
        // SYN_RECV reply entries may forward the server's SYN+ACK; a
        // server whose tunnel type changed needs its connections' entries
        // rewritten too (only checksum-free tunnels forward in XDP).
        let resync = enabled != self.fast.enabled
            || old.routes != new.routes
            || old.interfaces != new.interfaces
            || (old.defense.secure_tcp == 0) != (new.defense.secure_tcp == 0)
            || !tunnels_of(old).eq(tunnels_of(new));
        self.fast.enabled = enabled;
        if resync {
            let mut live = Vec::with_capacity(self.conns.len() as usize);
            self.conns.for_each_index(|idx| live.push(idx));
            for idx in live {
                self.fast_sync_with(idx, true);
            }
        }
        for id in 0..self.dests.len() as u32 {
            let d = &self.dests[id as usize];
            if d.live && d.fast.hop_sent.is_some() {
                self.send_dest_hop(id);
            }
        }
    }

    /// Asks for the activity of connections due to expire while forwarded
    /// in XDP (from [`Engine::handle_timeout`]).
    pub(super) fn ask_activity(&mut self, list: Vec<u32>) {
        self.fast.retry_round = false;
        for &idx in &list {
            let c = self.conns.get(idx);
            if due_for_activity_check(c) {
                self.fast.ops.push_back(FastPathOp::ReadActivity {
                    key: in_key(c),
                    reply: out_key(c),
                });
            }
        }
        self.fast.activity = list;
    }

    /// Asks for the activity of every connection the XDP program forwards,
    /// so that [`Engine::connections`] shows fresh expiry times.
    pub fn refresh_fast_path_activity(&mut self) {
        let mut live = Vec::new();
        self.conns.for_each_index(|idx| live.push(idx));
        self.ask_activity(live);
    }

    /// A `sync_retries` round: as [`Engine::refresh_fast_path_activity`],
    /// but of the answers only the connections the XDP program forwarded
    /// since the previous round are sent to the backups (the kernel
    /// resends a connection only when its packets come).
    pub fn retry_fast_path_sync(&mut self) {
        self.refresh_fast_path_activity();
        self.fast.retry_round = true;
    }

    /// The answer to a [`FastPathOp::ReadActivity`]: `last_seen` is when the
    /// XDP program last forwarded a frame of the connection (the later of
    /// its entries; `None` if they are gone). The connection lives on for
    /// its state's timeout after that, or expires now.
    pub fn fast_path_activity(&mut self, now: Time, key: &FastKey, last_seen: Option<Time>) {
        let Some(idx) = self.conns.find_in(&flow_key(key)) else {
            return;
        };
        let c = *self.conns.get(idx);
        if !due_for_activity_check(&c) {
            return; // the engine saw a state change since: its timers rule
        }
        let timeout = self.snapshot.config().timeouts.for_state(c.proto, c.state);
        let until = last_seen.map_or(0, |t| secs(t).saturating_add(timeout));
        let now_s = secs(now);
        if until > now_s {
            // A peer's connection is ours once a frame was forwarded here
            // after its last sync (which set `expires` from that moment);
            // until then its expiry is the peer's and it is not sent.
            let ours = c.fast & fast::PEER == 0 || until > c.expires;
            if !ours {
                return;
            }
            let c = self.conns.get_mut(idx);
            c.fast &= !fast::PEER;
            let moved = until > c.expires;
            self.conns.set_expiry(idx, until);
            // Renewed: the backups' copies are too.
            if moved || !self.fast.retry_round {
                self.sync_now(idx);
            }
            return;
        }
        let gone = self.conns.remove(idx);
        self.forget(&gone);
        self.counters.conns_expired += 1;
    }

    /// Adds what the XDP program forwarded for `slot` since the last fold
    /// (`totals` = its counters, summed over CPUs) to the server's and its
    /// service's statistics.
    pub fn fold_fast_path_counters(&mut self, slot: DestSlot, totals: DestCounters) {
        let Some(d) = self.dests.get_mut(slot.0 as usize) else {
            return;
        };
        if !d.live {
            return;
        }
        let base = d.fast.base;
        let delta = if totals.in_packets >= base.in_packets
            && totals.in_bytes >= base.in_bytes
            && totals.out_packets >= base.out_packets
            && totals.out_bytes >= base.out_bytes
        {
            DestCounters {
                in_packets: totals.in_packets - base.in_packets,
                in_bytes: totals.in_bytes - base.in_bytes,
                out_packets: totals.out_packets - base.out_packets,
                out_bytes: totals.out_bytes - base.out_bytes,
            }
        } else {
            totals // the slot was reset since
        };
        d.fast.base = totals;
        self.add_traffic(
            slot.0,
            delta.in_packets,
            delta.in_bytes,
            delta.out_packets,
            delta.out_bytes,
        );
    }

    /// The destination slots whose counters to fold.
    pub fn fast_path_dest_slots(&self) -> impl Iterator<Item = DestSlot> + '_ {
        self.dests
            .iter()
            .enumerate()
            .take(MAX_DEST_SLOTS as usize)
            .filter(|(_, d)| d.live)
            .map(|(i, _)| DestSlot(i as u32))
    }
}

/// The servers of a configuration that tunnel other than by IPIP, in
/// order: equal sequences mean no TUN server changed its type.
fn tunnels_of(
    config: &crate::config::Config,
) -> impl Iterator<Item = (ServiceKey, IpAddr, u16, rvs_vocab::Tunnel)> + '_ {
    config.services.iter().flat_map(|s| {
        s.dests
            .iter()
            .filter(|d| d.tunnel != rvs_vocab::Tunnel::Ipip)
            .map(move |d| (s.key, d.addr, d.port, d.tunnel))
    })
}

fn flow_key(k: &FastKey) -> FlowKey {
    FlowKey {
        template: false,
        proto: k.proto,
        v6: k.saddr.is_ipv6(),
        saddr: addr_bytes(k.saddr),
        sport: k.sport,
        daddr: addr_bytes(k.daddr),
        dport: k.dport,
    }
}
