//! The slow-path worker: one thread, one engine, every RX queue of every
//! interface. It receives a batch from all AF_XDP sockets, runs each frame
//! through the engine, applies the engine's fast-path ops to the XDP maps,
//! then transmits the batch — so an entry (a NAT reply's, say) is always in
//! the maps before the packet that created it leaves. Established flows
//! never get here: the XDP program forwards them (docs/fastpath.md).
//!
//! No allocation, lock or panic per packet: configuration arrives as
//! snapshots picked up with one atomic load per batch; the datapath's map
//! handles are locked once per batch, only when there are ops to apply.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rvs_datapath::{monotonic_ns, InheritedFlows, RxFrame, XdpDatapath, XskGroup, XskStats};
use rvs_engine::{
    AdoptError, ConnInfo, Counters, DefenseStatus, Engine, FastPathOp, IfIndex, NeighborTable,
    ServiceKey, ServiceStatus, Snapshot, Time, Verdict,
};

/// Frames handled per batch.
const BATCH: usize = 64;
/// How often the worker folds fast-path counters and publishes its report.
const REPORT_EVERY: Duration = Duration::from_millis(200);
/// How often expiry runs.
const TIMER_EVERY: Duration = Duration::from_millis(100);
/// How often the worker looks for RX queues an interface gained.
const QUEUE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// What the control plane shares with the worker.
pub(crate) struct Shared {
    pub(crate) snapshot: ArcSwap<Snapshot>,
    pub(crate) neighbors: ArcSwap<NeighborTable>,
    pub(crate) stop: AtomicBool,
    /// CLOCK_MONOTONIC_COARSE at start: engine time 0. The XDP program stamps
    /// entries with the same clock.
    epoch_ns: u64,
}

impl Shared {
    pub(crate) fn new(snapshot: Arc<Snapshot>, neighbors: NeighborTable) -> Shared {
        Shared {
            snapshot: ArcSwap::new(snapshot),
            neighbors: ArcSwap::from_pointee(neighbors),
            stop: AtomicBool::new(false),
            epoch_ns: monotonic_ns(),
        }
    }

    /// Engine time now.
    pub(crate) fn now(&self) -> Time {
        self.time_of(monotonic_ns())
    }

    /// Engine time of a CLOCK_MONOTONIC_COARSE reading.
    fn time_of(&self, monotonic: u64) -> Time {
        Time::from_nanos(monotonic.saturating_sub(self.epoch_ns))
    }
}

/// What the control plane asks of the worker.
pub(crate) enum WorkerCommand {
    /// `ipvsadm -Z [service]`.
    Zero(Option<ServiceKey>),
    /// `ipvsadm -Lc`: every connection, with fresh fast-path activity.
    Dump(Sender<Vec<ConnInfo>>),
    /// `--start-daemon master` (with its socket) / `--stop-daemon master`.
    SyncMaster(Option<crate::sync::MasterOut>),
    /// Entries a sync master sent (the backup thread decoded them).
    Synced(Vec<rvs_wire::ipvs_sync::SyncConn>),
}

/// The running datapath as the control plane holds it: the XDP maps (for
/// services, VIPs and counters), the worker's report and its commands.
pub(crate) struct Plane {
    pub(crate) datapath: Arc<Mutex<XdpDatapath>>,
    pub(crate) report: Arc<Mutex<Report>>,
    pub(crate) commands: Sender<WorkerCommand>,
}

/// The worker's last published state.
#[derive(Default, Clone)]
pub(crate) struct Report {
    pub(crate) services: Vec<ServiceStatus>,
    pub(crate) counters: Counters,
    /// Frames the engine meant to send that could not be queued.
    pub(crate) tx_failed: u64,
    pub(crate) connections: u32,
    /// Receive batches with at least one frame.
    pub(crate) batches: u64,
    /// Fast-path ops applied, and those the kernel refused (logged).
    pub(crate) fast_ops: u64,
    pub(crate) fast_op_errors: u64,
    /// Entries in the XDP connection map.
    pub(crate) fast_entries: u64,
    /// Slots of its IPv4 table, those in use, and IPv4 entries that found
    /// their set full (in the overflow hash map).
    pub(crate) fast_slots: u64,
    pub(crate) fast_active_slots: u64,
    pub(crate) fast_overflow: u64,
    /// The AF_XDP sockets' counters (ours and the kernel's).
    pub(crate) xsk: XskStats,
    /// Sync datagrams sent, and those the socket refused.
    pub(crate) sync_datagrams: u64,
    pub(crate) sync_send_errors: u64,
    /// Synced entries this engine could not place.
    pub(crate) sync_refused: u64,
    /// The SYN-flood defence's live state.
    pub(crate) defense: Option<DefenseStatus>,
    /// FullNAT ports in use on each local address of the configuration.
    pub(crate) local_ports: Vec<(IpAddr, u32)>,
}

pub(crate) struct Worker {
    pub(crate) group: XskGroup,
    pub(crate) engine: Engine,
    pub(crate) datapath: Arc<Mutex<XdpDatapath>>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) report: Arc<Mutex<Report>>,
    pub(crate) resolve: SyncSender<IpAddr>,
    pub(crate) commands: Receiver<WorkerCommand>,
    /// The sync master's socket and datagram, while one runs.
    pub(crate) sync: Option<crate::sync::MasterOut>,
    /// (ifindex, queue) pairs whose socket could not be added (logged once).
    pub(crate) queue_failures: Vec<(u32, u32)>,
}

/// Counters the loop keeps besides the engine's.
#[derive(Default)]
struct Tally {
    tx_failed: u64,
    batches: u64,
    fast_ops: u64,
    fast_op_errors: u64,
    sync_refused: u64,
}

impl Worker {
    pub(crate) fn run(mut self) {
        let mut rx = [RxFrame::default(); BATCH];
        let mut tally = Tally::default();
        let mut last_report = Instant::now();
        let mut last_timer = Instant::now();
        let mut last_queue_check = Instant::now();
        while !self.shared.stop.load(Ordering::Relaxed) {
            let snap = self.shared.snapshot.load();
            if !Arc::ptr_eq(&snap, self.engine.snapshot()) {
                self.engine.set_config(Arc::clone(&snap));
            }
            let neigh = self.shared.neighbors.load();
            self.engine.set_neighbors_if_newer(&neigh);
            while let Ok(cmd) = self.commands.try_recv() {
                self.command(cmd, &mut tally);
            }

            let n = self.group.recv(&mut rx);
            tally.batches += u64::from(n > 0);
            let now = self.shared.now();
            for f in &rx[..n] {
                self.frame(now, f, &mut tally);
            }
            // Before the batch leaves: see the module doc.
            self.apply_fast_path(&mut tally);
            self.group.flush();
            self.send_sync();
            if n == 0 {
                self.group.poll(Duration::from_millis(20));
            }
            if last_timer.elapsed() >= TIMER_EVERY {
                self.engine.handle_timeout(self.shared.now());
                self.apply_fast_path(&mut tally);
                last_timer = Instant::now();
            }
            if last_report.elapsed() >= REPORT_EVERY {
                self.fold_fast_path_counters();
                self.publish(&tally);
                last_report = Instant::now();
            }
            if last_queue_check.elapsed() >= QUEUE_CHECK_EVERY {
                self.serve_new_queues();
                last_queue_check = Instant::now();
            }
        }
        self.fold_fast_path_counters();
        self.publish(&tally);
    }

    /// Before the loop starts: takes the flows a previous rvsd's program
    /// forwards into the engine and writes them into this datapath's maps
    /// (see handover.rs). Returns how many were adopted; the others are
    /// logged by reason and left to end.
    pub(crate) fn adopt(&mut self, inherited: &InheritedFlows) -> usize {
        let neigh = self.shared.neighbors.load();
        self.engine.set_neighbors_if_newer(&neigh);
        let mut tally = Tally::default();
        let mut adopted = 0;
        let mut refused: Vec<(AdoptError, usize)> = Vec::new();
        for (i, flow) in inherited.flows.iter().enumerate() {
            match self.engine.adopt(self.shared.now(), flow) {
                Ok(()) => adopted += 1,
                Err(e) => match refused.iter_mut().find(|(r, _)| *r == e) {
                    Some((_, n)) => *n += 1,
                    None => refused.push((e, 1)),
                },
            }
            // Bounded op queue: apply as we go.
            if i % 1024 == 1023 {
                self.apply_fast_path(&mut tally);
            }
        }
        self.apply_fast_path(&mut tally);
        for (reason, count) in refused {
            tracing::warn!(count, %reason, "connections of the previous rvsd not adopted");
        }
        tracing::info!(
            adopted,
            not_forwarding = inherited.skipped,
            map_errors = tally.fast_op_errors,
            "connections taken over from the previous rvsd"
        );
        adopted
    }

    /// Binds a socket on every RX queue an interface gained since the last
    /// look (`ethtool -L`): until then the XDP program has no socket there
    /// and drops that queue's frames for user space (`to_user_failed`), and
    /// RSS keeps sending the same flows to it. A queue taken away keeps its
    /// socket, which then receives nothing.
    fn serve_new_queues(&mut self) {
        for ifindex in self.group.ifindexes() {
            let Some(name) = rvs_datapath::name_by_ifindex(ifindex) else {
                continue;
            };
            let in_use = crate::kernel::rx_queues(&name);
            let mut added = 0;
            for queue in 0..in_use {
                if self.group.slot_of(ifindex, queue).is_some()
                    || self.queue_failures.contains(&(ifindex, queue))
                {
                    continue;
                }
                match self.add_queue(ifindex, queue) {
                    Ok(()) => {
                        added += 1;
                        tracing::info!(interface = %name, queue, "RX queue added: its AF_XDP socket is bound");
                    }
                    Err(e) => {
                        self.queue_failures.push((ifindex, queue));
                        tracing::warn!(interface = %name, queue, error = %e, "RX queue added but not served: its frames for rvsd are dropped (to_user_failed); restart rvsd");
                    }
                }
            }
            if added > 0 {
                // Sockets first, then the program on the new queues.
                let done = match self.datapath.lock() {
                    Ok(mut dp) => dp.reattach(ifindex).map_err(anyhow::Error::from),
                    Err(_) => Err(anyhow::anyhow!("datapath lock poisoned")),
                };
                if let Err(e) = done {
                    tracing::warn!(interface = %name, error = %e, "the XDP program could not be given to the added RX queues; restart rvsd");
                }
            }
        }
    }

    /// A socket on `(ifindex, queue)`, registered with the XDP program.
    fn add_queue(&mut self, ifindex: u32, queue: u32) -> anyhow::Result<()> {
        let slot = self.group.add_queue(ifindex, queue)?;
        let fd = self.group.socket_fd(slot);
        let mut dp = self
            .datapath
            .lock()
            .map_err(|_| anyhow::anyhow!("datapath lock poisoned"))?;
        dp.register_socket(ifindex, queue, fd)?;
        Ok(())
    }

    /// One received frame: through the engine, then out or back to the pool.
    fn frame(&mut self, now: Time, f: &RxFrame, tally: &mut Tally) {
        let ingress = IfIndex(self.group.ifindex(f.iface).unwrap_or(0));
        let (verdict, start, len) = {
            let Some(mut pkt) = self.group.frame_mut(f.addr, f.len) else {
                return; // not ours to touch (cannot happen for a frame recv gave)
            };
            let v = self.engine.process(now, &mut pkt, ingress);
            (v, pkt.start(), pkt.len())
        };
        match verdict {
            Verdict::Forward { egress } | Verdict::Reply { egress, .. } => {
                match self.group.tx_slot(egress.0) {
                    Some(slot) => {
                        if !self.group.send_at(slot, f.addr, start, len) {
                            tally.tx_failed += 1;
                        }
                        self.send_extra_frames(slot, tally);
                    }
                    None => {
                        tally.tx_failed += 1;
                        self.group.release(f.addr);
                    }
                }
            }
            Verdict::Resolve { next_hop, .. } => {
                self.group.release(f.addr);
                let _ = self.resolve.try_send(next_hop);
            }
            Verdict::Pass | Verdict::Drop(_) => self.group.release(f.addr),
        }
    }

    /// The frames a verdict sends beyond its own (the outer fragments of a
    /// tunnelled packet over the MTU), each copied into a frame from the
    /// free pool and queued on the same interface.
    fn send_extra_frames(&mut self, slot: usize, tally: &mut Tally) {
        while self.engine.has_extra_frames() {
            let Some(addr) = self.group.alloc_frame() else {
                // No free frame: the rest are lost, counted as not sent.
                while self.engine.has_extra_frames() {
                    let _ = self.engine.next_extra_frame(&mut []);
                    tally.tx_failed += 1;
                }
                return;
            };
            let written = match self.group.frame_mut(addr, u32::MAX) {
                Some(mut buf) => self.engine.next_extra_frame(buf.data_mut()),
                None => None,
            };
            match written.and_then(|n| u32::try_from(n).ok()) {
                Some(n) => {
                    if !self.group.send(slot, addr, n) {
                        tally.tx_failed += 1;
                    }
                }
                None => {
                    tally.tx_failed += 1;
                    self.group.release(addr);
                }
            }
        }
    }

    /// Applies the engine's ops to the XDP maps and answers its activity
    /// reads. One lock per call, and only if there is something to do.
    fn apply_fast_path(&mut self, tally: &mut Tally) {
        let Some(first) = self.engine.poll_fast_path() else {
            return;
        };
        let Ok(mut dp) = self.datapath.lock() else {
            tracing::error!("datapath lock poisoned: fast-path ops dropped");
            while self.engine.poll_fast_path().is_some() {}
            return;
        };
        let mut next = Some(first);
        while let Some(op) = next {
            tally.fast_ops += 1;
            match dp.apply(&op) {
                Ok(seen) => {
                    if let FastPathOp::ReadActivity { key, .. } = op {
                        let now = self.shared.now();
                        let seen = seen.map(|ns| self.shared.time_of(ns));
                        self.engine.fast_path_activity(now, &key, seen);
                    }
                }
                Err(e) => {
                    tally.fast_op_errors += 1;
                    // The first and then every 1024th: a full map would
                    // otherwise log once per connection.
                    if tally.fast_op_errors % 1024 == 1 {
                        tracing::warn!(error = %e, ?op, errors = tally.fast_op_errors, "a fast-path map update failed; the connection's frames may miss the fast path");
                    }
                    if let FastPathOp::ReadActivity { key, .. } = op {
                        // Unknown activity: let the engine's own timers decide.
                        self.engine
                            .fast_path_activity(self.shared.now(), &key, None);
                    }
                }
            }
            next = self.engine.poll_fast_path();
        }
    }

    /// Drains the engine's sync entries into the master's datagrams; at
    /// the end of each `sync_refresh_period` asks for every forwarded
    /// connection's activity, whose answers send the live ones again.
    fn send_sync(&mut self) {
        let Some(m) = &mut self.sync else { return };
        match m.refresh_due() {
            Some(crate::sync::Round::Refresh) => self.engine.refresh_fast_path_activity(),
            Some(crate::sync::Round::Retry) => self.engine.retry_fast_path_sync(),
            None => {}
        }
        while let Some(c) = self.engine.poll_sync() {
            m.push(&c);
        }
        m.tick();
    }

    fn command(&mut self, cmd: WorkerCommand, tally: &mut Tally) {
        match cmd {
            WorkerCommand::SyncMaster(m) => {
                self.engine.set_sync_master(m.as_ref().map(|m| m.threshold));
                self.sync = m;
            }
            WorkerCommand::Synced(conns) => {
                let now = self.shared.now();
                for c in &conns {
                    if let Err(e) = self.engine.apply_sync(now, c) {
                        tally.sync_refused += 1;
                        if tally.sync_refused % 1024 == 1 {
                            tracing::warn!(error = %e, entry = ?c, "a synced connection was not installed");
                        }
                    }
                }
                self.apply_fast_path(tally);
            }
            WorkerCommand::Zero(only) => self.engine.zero_stats(only),
            WorkerCommand::Dump(reply) => {
                self.engine.refresh_fast_path_activity();
                self.apply_fast_path(tally);
                let _ = reply.send(self.engine.connections(self.shared.now()));
            }
        }
    }

    /// Adds what the XDP program forwarded to the engine's statistics.
    fn fold_fast_path_counters(&mut self) {
        let Ok(dp) = self.datapath.lock() else { return };
        let slots: Vec<_> = self.engine.fast_path_dest_slots().collect();
        for slot in slots {
            match dp.dest_counters(slot) {
                Ok(totals) => self.engine.fold_fast_path_counters(slot, totals),
                Err(e) => tracing::debug!(error = %e, ?slot, "reading fast-path counters"),
            }
        }
    }

    fn publish(&self, tally: &Tally) {
        let services = self.engine.status();
        let xsk = self.group.stats();
        if let Ok(mut g) = self.report.lock() {
            g.services = services;
            g.counters = self.engine.counters().clone();
            g.tx_failed = tally.tx_failed;
            g.batches = tally.batches;
            g.fast_ops = tally.fast_ops;
            g.fast_op_errors = tally.fast_op_errors;
            g.fast_entries = self.engine.fast_path_entries();
            if let Ok(dp) = self.datapath.lock() {
                g.fast_slots = dp.conn_slots() as u64;
                g.fast_active_slots = dp.conn_active_slots() as u64;
                g.fast_overflow = dp.conn_overflow_entries() as u64;
            }
            g.connections = self.engine.connection_count();
            g.xsk = xsk;
            g.sync_refused = tally.sync_refused;
            if let Some(m) = &self.sync {
                g.sync_datagrams = m.sent;
                g.sync_send_errors = m.send_errors;
            }
            g.defense = Some(self.engine.defense());
            g.local_ports = local_ports(&self.engine);
        }
    }
}

/// FullNAT ports in use on every local address of the engine's
/// configuration, each address once, in the order the services list them.
pub(crate) fn local_ports(engine: &Engine) -> Vec<(IpAddr, u32)> {
    let mut seen: Vec<IpAddr> = Vec::new();
    for s in &engine.snapshot().config().services {
        for a in &s.local_addresses {
            if !seen.contains(a) {
                seen.push(*a);
            }
        }
    }
    seen.into_iter()
        .map(|a| (a, engine.local_ports_in_use(a)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_engine::{Config, Protocol, Service};

    #[test]
    fn local_ports_name_each_local_address_of_the_configuration_once() {
        let a: IpAddr = "10.0.2.200".parse().unwrap();
        let b: IpAddr = "10.0.2.201".parse().unwrap();
        let service = |port, laddrs: &[IpAddr]| Service {
            local_addresses: laddrs.to_vec(),
            ..Service::new(
                ServiceKey::new(Protocol::Tcp, "10.0.100.1".parse().unwrap(), port),
                "rr",
            )
        };
        let config = Config {
            services: vec![service(80, &[a, b]), service(81, &[]), service(443, &[b])],
            ..Config::default()
        };
        let engine = Engine::new(Snapshot::new(config).unwrap(), [1, 2, 3, 4]);
        assert_eq!(local_ports(&engine), [(a, 0), (b, 0)]);
    }
}
