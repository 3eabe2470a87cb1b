//! One AF_XDP worker per RX queue: receive a batch, run each frame through
//! its engine shard, transmit on the right interface, repeat. No allocation,
//! lock or panic per packet; configuration arrives as snapshots picked up
//! with one atomic load per batch.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rvs_datapath::{RxFrame, XskGroup};
use rvs_engine::{
    ConnInfo, Counters, Engine, IfIndex, NeighborTable, PacketBuf, ServiceStatus, Snapshot, Time,
    Verdict,
};

/// Frames handled per batch.
const BATCH: usize = 64;
/// How often a worker publishes its counters.
const REPORT_EVERY: Duration = Duration::from_millis(200);

/// What the control plane shares with every worker.
pub(crate) struct Shared {
    pub(crate) snapshot: ArcSwap<Snapshot>,
    pub(crate) neighbors: ArcSwap<NeighborTable>,
    pub(crate) stop: AtomicBool,
    /// Bumped by `ipvsadm -Z`; workers zero their counters when it moves.
    pub(crate) zero_epoch: AtomicU64,
    /// Which service the last `-Z` named (`None` = all).
    pub(crate) zero_target: Mutex<Option<rvs_engine::ServiceKey>>,
    /// Bumped to ask every worker for its connection table (`-Lc`).
    pub(crate) dump_epoch: AtomicU64,
    pub(crate) started: Instant,
}

impl Shared {
    pub(crate) fn now(&self) -> Time {
        Time::from_nanos(u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }
}

/// A worker's last published counters.
#[derive(Default, Clone)]
pub(crate) struct Report {
    pub(crate) services: Vec<ServiceStatus>,
    pub(crate) counters: Counters,
    pub(crate) tx_failed: u64,
    pub(crate) connections: u32,
    /// Receive batches with at least one frame.
    pub(crate) batches: u64,
    /// The last connection dump and the request it answered.
    pub(crate) dump: Vec<ConnInfo>,
    pub(crate) dump_epoch: u64,
}

/// Asks every worker for its connections and waits (bounded) for them.
pub(crate) fn dump_connections(shared: &Shared, reports: &[Arc<Mutex<Report>>]) -> Vec<ConnInfo> {
    let epoch = shared.dump_epoch.fetch_add(1, Ordering::Relaxed) + 1;
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut out = Vec::new();
    for r in reports {
        loop {
            if let Ok(mut g) = r.lock() {
                if g.dump_epoch >= epoch {
                    out.append(&mut g.dump);
                    break;
                }
            }
            if Instant::now() > deadline {
                tracing::warn!("a worker did not answer the connection dump in time");
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    out
}

pub(crate) struct Worker {
    pub(crate) group: XskGroup,
    pub(crate) engine: Engine,
    /// ifindex of each group slot.
    pub(crate) slot_ifindex: Vec<u32>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) report: Arc<Mutex<Report>>,
    pub(crate) resolve: SyncSender<IpAddr>,
}

impl Worker {
    fn slot_of(&self, egress: IfIndex) -> Option<usize> {
        self.slot_ifindex.iter().position(|&i| i == egress.0)
    }

    pub(crate) fn run(mut self) {
        let mut rx = [RxFrame::default(); BATCH];
        let mut last_report = Instant::now();
        let mut last_timer = Instant::now();
        let mut zero_seen = self.shared.zero_epoch.load(Ordering::Relaxed);
        let mut dump_seen = self.shared.dump_epoch.load(Ordering::Relaxed);
        let mut tx_failed = 0u64;
        let mut batches = 0u64;
        while !self.shared.stop.load(Ordering::Relaxed) {
            let snap = self.shared.snapshot.load();
            if !Arc::ptr_eq(&snap, self.engine.snapshot()) {
                self.engine.set_config(Arc::clone(&snap));
            }
            let neigh = self.shared.neighbors.load();
            self.engine.set_neighbors_if_newer(&neigh);
            let zero = self.shared.zero_epoch.load(Ordering::Relaxed);
            if zero != zero_seen {
                zero_seen = zero;
                let only = self.shared.zero_target.lock().map(|g| *g).unwrap_or(None);
                self.engine.zero_stats(only);
            }
            let dump = self.shared.dump_epoch.load(Ordering::Relaxed);
            if dump != dump_seen {
                dump_seen = dump;
                let conns = self.engine.connections(self.shared.now());
                if let Ok(mut g) = self.report.lock() {
                    g.dump = conns;
                    g.dump_epoch = dump;
                }
            }

            let n = self.group.recv(&mut rx);
            batches += u64::from(n > 0);
            let now = self.shared.now();
            for f in &rx[..n] {
                let ingress = IfIndex(self.slot_ifindex.get(f.iface).copied().unwrap_or(0));
                let (verdict, addr, len) = {
                    let mut fm = self.group.frame_mut(f.addr, f.len);
                    let (offset, flen, base) =
                        (fm.offset(), fm.len(), fm.addr() - fm.offset() as u64);
                    let Some(mut pkt) = PacketBuf::new(fm.chunk_mut(), offset, flen) else {
                        self.group.release(f.addr);
                        continue;
                    };
                    let v = self.engine.process(now, &mut pkt, ingress);
                    (v, base + pkt.start() as u64, pkt.len() as u32)
                };
                match verdict {
                    Verdict::Forward { egress } | Verdict::Reply { egress, .. } => {
                        match self.slot_of(egress) {
                            Some(slot) => {
                                if !self.group.send(slot, addr, len) {
                                    tx_failed += 1;
                                }
                            }
                            None => {
                                tx_failed += 1;
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
            // Until rvsd programs the XDP fast path, nothing forwards there:
            // every connection's activity is what the engine saw itself.
            while let Some(op) = self.engine.poll_fast_path() {
                if let rvs_engine::FastPathOp::ReadActivity { key, .. } = op {
                    self.engine
                        .fast_path_activity(self.shared.now(), &key, None);
                }
            }
            self.group.flush();
            if n == 0 {
                self.group.poll(Duration::from_millis(20));
            }
            if last_timer.elapsed() >= Duration::from_millis(100) {
                self.engine.handle_timeout(self.shared.now());
                while let Some(op) = self.engine.poll_fast_path() {
                    if let rvs_engine::FastPathOp::ReadActivity { key, .. } = op {
                        self.engine
                            .fast_path_activity(self.shared.now(), &key, None);
                    }
                }
                last_timer = Instant::now();
            }
            if last_report.elapsed() >= REPORT_EVERY {
                self.publish(tx_failed, batches);
                last_report = Instant::now();
            }
        }
        self.publish(tx_failed, batches);
    }

    fn publish(&self, tx_failed: u64, batches: u64) {
        let services = self.engine.status();
        if let Ok(mut g) = self.report.lock() {
            g.services = services;
            g.counters = self.engine.counters().clone();
            g.tx_failed = tx_failed;
            g.batches = batches;
            g.connections = self.engine.connection_count();
        }
    }
}
