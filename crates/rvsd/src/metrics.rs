//! The Prometheus endpoint: per service and real server (connections,
//! packets and bytes in/out, active/inactive, rates, weight, health), per
//! worker (packets by verdict, batches, drops by reason, table occupancy),
//! per interface (the XDP program's verdicts, AF_XDP socket losses), the
//! fast path (entries, map updates), configuration state, reloads, each
//! service's quorum and sorry-server state, and the build. Rendered fresh on
//! each scrape from the same data `rvsadm -L` reads, so the two never
//! disagree.

use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rvs_api::Listing;

use rvs_datapath::{XdpStats, XskSocketStats};

use crate::worker::Report;

/// What rvsd knows about itself that an operator alerts on.
#[derive(Clone, Debug, Default)]
pub(crate) struct DaemonFacts {
    /// Outcomes of configuration reloads (SIGHUP, `rvsadm --reload`).
    pub(crate) reloads: ReloadStats,
    /// Each health-checked service's quorum state.
    pub(crate) quorum: Vec<QuorumState>,
    /// Health-check loops running: one per checked real server of each
    /// service or service group (not one per group member).
    pub(crate) check_loops: usize,
}

/// Reload outcomes since rvsd started.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ReloadStats {
    /// Reloads applied.
    pub(crate) succeeded: u64,
    /// Reloads refused (nothing was applied).
    pub(crate) failed: u64,
    /// When the last reload was applied, in seconds since the Unix epoch.
    pub(crate) last_success_unix: Option<u64>,
}

impl ReloadStats {
    /// Counts one reload's outcome.
    pub(crate) fn record(&mut self, applied: bool) {
        if applied {
            self.succeeded += 1;
            self.last_success_unix = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs());
        } else {
            self.failed += 1;
        }
    }
}

/// A service's quorum as its health policy last evaluated it.
#[derive(Clone, Debug)]
pub(crate) struct QuorumState {
    /// The service, as the other `service` labels write it.
    pub(crate) service: String,
    /// The live servers' weight reaches the quorum.
    pub(crate) up: bool,
    /// The sorry server has replaced the pool.
    pub(crate) sorry_active: bool,
    /// The service group whose quorum this is, for a member: a `group`
    /// label, so an alert can count a group's quorum once.
    pub(crate) group: Option<String>,
}

/// AF_XDP socket counters of one interface, summed over its queues.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct XskTotals {
    /// Sockets: the RX queues served.
    pub(crate) sockets: u64,
    pub(crate) rx_packets: u64,
    pub(crate) tx_packets: u64,
    pub(crate) rx_dropped: u64,
    pub(crate) rx_ring_full: u64,
    pub(crate) fill_ring_empty: u64,
    pub(crate) tx_invalid: u64,
    pub(crate) tx_ring_full: u64,
}

impl XskTotals {
    pub(crate) fn add(&mut self, s: &XskSocketStats) {
        self.sockets += 1;
        self.rx_packets += s.rx_packets;
        self.tx_packets += s.tx_packets;
        self.rx_dropped += s.rx_dropped;
        self.rx_ring_full += s.rx_ring_full;
        self.fill_ring_empty += s.fill_ring_empty;
        self.tx_invalid += s.tx_invalid;
        self.tx_ring_full += s.tx_ring_full;
    }

    /// Where frames were lost, by name (the `reason` label and listing key).
    fn losses(&self) -> [(&'static str, u64); 5] {
        [
            ("rx_dropped", self.rx_dropped),
            ("rx_ring_full", self.rx_ring_full),
            ("fill_ring_empty", self.fill_ring_empty),
            ("tx_invalid", self.tx_invalid),
            ("tx_ring_full", self.tx_ring_full),
        ]
    }
}

/// One interface: what the XDP program did with its frames and what its
/// AF_XDP sockets lost.
#[derive(Clone, Debug, Default)]
pub(crate) struct InterfaceView {
    pub(crate) name: String,
    pub(crate) xdp: XdpStats,
    pub(crate) xsk: XskTotals,
}

impl InterfaceView {
    /// The XDP program's verdicts, which partition the interface's frames.
    fn verdicts(&self) -> [(&'static str, u64); 5] {
        let x = &self.xdp;
        [
            ("passed", x.passed),
            ("to_user", x.to_user),
            ("to_user_failed", x.to_user_failed),
            ("fast_tx", x.fast_tx),
            ("fast_redirect", x.fast_redirect),
        ]
    }

    /// The same numbers as listing counters (`xdp_IF_*`, `xsk_IF_*`).
    pub(crate) fn insert_counters(&self, c: &mut std::collections::BTreeMap<String, u64>) {
        let name = &self.name;
        for (k, v) in self.verdicts() {
            c.insert(format!("xdp_{name}_{k}"), v);
        }
        c.insert(format!("xdp_{name}_parse_errors"), self.xdp.parse_errors);
        c.insert(format!("xsk_{name}_sockets"), self.xsk.sockets);
        c.insert(format!("xsk_{name}_rx_packets"), self.xsk.rx_packets);
        c.insert(format!("xsk_{name}_tx_packets"), self.xsk.tx_packets);
        for (k, v) in self.xsk.losses() {
            c.insert(format!("xsk_{name}_{k}"), v);
        }
    }
}

type Labels = Vec<(String, String)>;

fn counter(r: &mut Registry, name: &str, help: &str) -> Family<Labels, Counter> {
    let f = Family::<Labels, Counter>::default();
    r.register(name, help, f.clone());
    f
}

fn gauge(r: &mut Registry, name: &str, help: &str) -> Family<Labels, Gauge> {
    let f = Family::<Labels, Gauge>::default();
    r.register(name, help, f.clone());
    f
}

fn l(pairs: &[(&str, String)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect()
}

fn g(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The exposition text for the current state.
pub(crate) fn render(
    listing: &Listing,
    workers: &[Report],
    interfaces: &[InterfaceView],
    daemon: &DaemonFacts,
) -> String {
    let mut r = Registry::default();
    render_daemon(&mut r, daemon);
    let svc_conns = counter(
        &mut r,
        "rvs_service_connections",
        "Connections scheduled by the virtual service.",
    );
    let svc_packets = counter(
        &mut r,
        "rvs_service_packets",
        "Packets of the virtual service by direction (in: client to server).",
    );
    let svc_bytes = counter(
        &mut r,
        "rvs_service_bytes",
        "IP bytes of the virtual service by direction.",
    );
    let svc_cps = gauge(
        &mut r,
        "rvs_service_connections_per_second",
        "Connection rate (IPVS estimator, 2 s EWMA).",
    );
    let svc_pps = gauge(
        &mut r,
        "rvs_service_packets_per_second",
        "Packet rate by direction (IPVS estimator).",
    );
    let svc_bps = gauge(
        &mut r,
        "rvs_service_bytes_per_second",
        "Byte rate by direction (IPVS estimator).",
    );
    let rs_conns = counter(
        &mut r,
        "rvs_real_server_connections",
        "Connections scheduled to the real server.",
    );
    let rs_packets = counter(
        &mut r,
        "rvs_real_server_packets",
        "Packets to/from the real server by direction.",
    );
    let rs_bytes = counter(
        &mut r,
        "rvs_real_server_bytes",
        "IP bytes to/from the real server by direction.",
    );
    let rs_active = gauge(
        &mut r,
        "rvs_real_server_active_connections",
        "ESTABLISHED connections (ipvsadm ActiveConn).",
    );
    let rs_inactive = gauge(
        &mut r,
        "rvs_real_server_inactive_connections",
        "Other tracked connections (ipvsadm InActConn).",
    );
    let rs_persistent = gauge(
        &mut r,
        "rvs_real_server_persistent_connections",
        "Persistence templates pointing at the real server.",
    );
    let rs_weight = gauge(
        &mut r,
        "rvs_real_server_weight",
        "Effective weight (0 = quiescent).",
    );
    let rs_cps = gauge(
        &mut r,
        "rvs_real_server_connections_per_second",
        "Connection rate (IPVS estimator).",
    );
    let rs_up = gauge(
        &mut r,
        "rvs_real_server_up",
        "1 when the real server's health checks pass, 0 when they fail.",
    );
    let w_packets = counter(
        &mut r,
        "rvs_worker_packets",
        "Frames handled by the worker, by verdict.",
    );
    let w_drops = counter(
        &mut r,
        "rvs_worker_drops",
        "Frames dropped by the worker, by reason.",
    );
    let w_batches = counter(
        &mut r,
        "rvs_worker_batches",
        "Receive batches processed by the worker.",
    );
    let w_tx_failed = counter(
        &mut r,
        "rvs_worker_tx_failed",
        "Frames the worker could not queue for transmission.",
    );
    let w_adopted = counter(
        &mut r,
        "rvs_worker_connections_adopted",
        "Connections taken over at start from the XDP maps a previous rvsd left pinned (a restart or an upgrade).",
    );
    let w_icmp = counter(
        &mut r,
        "rvs_worker_icmp_errors_relayed",
        "ICMP errors about tracked connections relayed to whoever sent the quoted packet (relayed: unchanged, DR/TUN; translated: NAT); counted among the forwarded packets. Dropped ones are in rvs_worker_drops (icmp_no_connection, icmp_unrelayable).",
    );
    let w_frags = counter(
        &mut r,
        "rvs_worker_fragments",
        "IPv4 fragments: tracked (first fragments whose datagram was recorded), followed (later fragments forwarded after their first), evicted (datagrams dropped from the full fragment table). Dropped fragments are in rvs_worker_drops (fragment, fragment_oversized).",
    );
    let w_extra = counter(
        &mut r,
        "rvs_worker_extra_frames",
        "Frames sent beyond the one of their verdict: the outer fragments after the first of tunnelled packets over the egress MTU without DF (the kernel fragments the outer packet too).",
    );
    let w_conns = gauge(
        &mut r,
        "rvs_worker_connections",
        "Connections tracked in the worker's table.",
    );
    let w_capacity = gauge(
        &mut r,
        "rvs_worker_connection_capacity",
        "Size of the worker's connection table.",
    );
    let xdp_packets = counter(
        &mut r,
        "rvs_xdp_packets",
        "Frames the XDP program saw, by interface and verdict (passed: to the kernel; to_user: to rvsd over AF_XDP; to_user_failed: no socket, dropped; fast_tx / fast_redirect: forwarded in XDP out of the same / another interface).",
    );
    let xdp_parse_errors = counter(
        &mut r,
        "rvs_xdp_parse_errors",
        "Frames with unparseable IP/L4 headers (among the verdicts above).",
    );
    let xsk_losses = counter(
        &mut r,
        "rvs_xsk_drops",
        "Frames lost at the AF_XDP sockets, by interface and reason (kernel XDP_STATISTICS and our TX ring).",
    );
    let xsk_sockets = gauge(
        &mut r,
        "rvs_xsk_sockets",
        "AF_XDP sockets by interface: the RX queues rvsd serves (every queue in use; one the interface gains is bound within a second).",
    );
    let fast_entries = gauge(
        &mut r,
        "rvs_fast_path_entries",
        "Entries in the XDP connection map (a NAT connection has two).",
    );
    let fast_slots = gauge(
        &mut r,
        "rvs_fast_path_slots",
        "Slots of the XDP program's IPv4 connection table (fast_path_slots).",
    );
    let fast_active_slots = gauge(
        &mut r,
        "rvs_fast_path_active_slots",
        "Slots of the IPv4 connection table in use: a prefix doubled whenever its entries fill more than half of it, so that a few flows stay dense in memory.",
    );
    let fast_overflow = gauge(
        &mut r,
        "rvs_fast_path_overflow_entries",
        "IPv4 entries whose set of four slots was full, kept in a hash map that costs the fast path about three cache misses per frame instead of one; many of them: raise fast_path_slots.",
    );
    let fast_ops = counter(
        &mut r,
        "rvs_fast_path_map_updates",
        "Fast-path map updates the worker applied.",
    );
    let fast_op_errors = counter(
        &mut r,
        "rvs_fast_path_map_update_errors",
        "Fast-path map updates the kernel refused.",
    );
    let local_ports = gauge(
        &mut r,
        "rvs_local_ports_in_use",
        "FullNAT ports held by connections on each local address (of local_port_range's ports); when a service's addresses run out, new connections count as rvs_worker_drops{reason=\"local_ports_exhausted\"}.",
    );
    let diverged = gauge(
        &mut r,
        "rvs_config_diverged",
        "1 when rvsadm changed the running configuration since the file was loaded.",
    );

    for s in &listing.services {
        let svc = s.spec.key.to_string();
        svc_conns
            .get_or_create(&l(&[("service", svc.clone())]))
            .inc_by(s.stats.conns);
        for (dir, p, b, pps, bps) in [
            (
                "in",
                s.stats.in_packets,
                s.stats.in_bytes,
                s.stats.in_pps,
                s.stats.in_bps,
            ),
            (
                "out",
                s.stats.out_packets,
                s.stats.out_bytes,
                s.stats.out_pps,
                s.stats.out_bps,
            ),
        ] {
            let lab = l(&[("service", svc.clone()), ("direction", dir.into())]);
            svc_packets.get_or_create(&lab).inc_by(p);
            svc_bytes.get_or_create(&lab).inc_by(b);
            svc_pps.get_or_create(&lab).set(g(pps));
            svc_bps.get_or_create(&lab).set(g(bps));
        }
        svc_cps
            .get_or_create(&l(&[("service", svc.clone())]))
            .set(g(s.stats.cps));
        for d in &s.dests {
            let server = SocketAddr::new(d.spec.addr, d.spec.port).to_string();
            let lab = l(&[("service", svc.clone()), ("server", server.clone())]);
            rs_conns.get_or_create(&lab).inc_by(d.stats.conns);
            rs_active.get_or_create(&lab).set(i64::from(d.active_conns));
            rs_inactive
                .get_or_create(&lab)
                .set(i64::from(d.inactive_conns));
            rs_persistent
                .get_or_create(&lab)
                .set(i64::from(d.persistent_conns));
            rs_weight.get_or_create(&lab).set(i64::from(d.spec.weight));
            rs_cps.get_or_create(&lab).set(g(d.stats.cps));
            for (dir, p, b) in [
                ("in", d.stats.in_packets, d.stats.in_bytes),
                ("out", d.stats.out_packets, d.stats.out_bytes),
            ] {
                let lab = l(&[
                    ("service", svc.clone()),
                    ("server", server.clone()),
                    ("direction", dir.into()),
                ]);
                rs_packets.get_or_create(&lab).inc_by(p);
                rs_bytes.get_or_create(&lab).inc_by(b);
            }
        }
    }
    for h in &listing.health {
        let lab = l(&[
            ("service", h.service.to_string()),
            ("server", SocketAddr::new(h.addr, h.port).to_string()),
        ]);
        rs_up.get_or_create(&lab).set(i64::from(h.up));
    }
    for (i, w) in workers.iter().enumerate() {
        let worker = i.to_string();
        let c = &w.counters;
        for (verdict, n) in [
            ("forwarded", c.forwarded),
            ("unresolved", c.unresolved),
            ("untracked", c.untracked),
            ("dropped", c.total_drops()),
        ] {
            w_packets
                .get_or_create(&l(&[
                    ("worker", worker.clone()),
                    ("verdict", verdict.into()),
                ]))
                .inc_by(n);
        }
        for reason in rvs_engine::DropReason::ALL {
            w_drops
                .get_or_create(&l(&[
                    ("worker", worker.clone()),
                    ("reason", reason.label().into()),
                ]))
                .inc_by(c.dropped(*reason));
        }
        let lab = l(&[("worker", worker.clone())]);
        w_batches.get_or_create(&lab).inc_by(w.batches);
        w_tx_failed.get_or_create(&lab).inc_by(w.tx_failed);
        w_adopted.get_or_create(&lab).inc_by(c.conns_adopted);
        w_extra.get_or_create(&lab).inc_by(c.extra_frames);
        for (event, n) in [
            ("tracked", c.fragments_tracked),
            ("followed", c.fragments_followed),
            ("evicted", c.fragments_evicted),
        ] {
            w_frags
                .get_or_create(&l(&[("worker", worker.clone()), ("event", event.into())]))
                .inc_by(n);
        }
        for (how, n) in [
            ("relayed", c.icmp_relayed),
            ("translated", c.icmp_translated),
        ] {
            w_icmp
                .get_or_create(&l(&[("worker", worker.clone()), ("how", how.into())]))
                .inc_by(n);
        }
        for (addr, n) in &w.local_ports {
            local_ports
                .get_or_create(&l(&[("address", addr.to_string())]))
                .inc_by(i64::from(*n));
        }
        w_conns.get_or_create(&lab).set(i64::from(w.connections));
        w_capacity
            .get_or_create(&lab)
            .set(i64::from(listing.conn_table_size));
    }
    for v in interfaces {
        for (verdict, n) in v.verdicts() {
            xdp_packets
                .get_or_create(&l(&[
                    ("interface", v.name.clone()),
                    ("verdict", verdict.into()),
                ]))
                .inc_by(n);
        }
        xdp_parse_errors
            .get_or_create(&l(&[("interface", v.name.clone())]))
            .inc_by(v.xdp.parse_errors);
        xsk_sockets
            .get_or_create(&l(&[("interface", v.name.clone())]))
            .set(g(v.xsk.sockets));
        for (reason, n) in v.xsk.losses() {
            xsk_losses
                .get_or_create(&l(&[
                    ("interface", v.name.clone()),
                    ("reason", reason.into()),
                ]))
                .inc_by(n);
        }
    }
    for w in workers {
        fast_ops.get_or_create(&Vec::new()).inc_by(w.fast_ops);
        fast_op_errors
            .get_or_create(&Vec::new())
            .inc_by(w.fast_op_errors);
        fast_entries
            .get_or_create(&Vec::new())
            .set(g(w.fast_entries));
        fast_slots.get_or_create(&Vec::new()).set(g(w.fast_slots));
        fast_active_slots
            .get_or_create(&Vec::new())
            .set(g(w.fast_active_slots));
        fast_overflow
            .get_or_create(&Vec::new())
            .set(g(w.fast_overflow));
    }
    diverged
        .get_or_create(&Vec::new())
        .set(i64::from(listing.config_diverged));
    render_defense(&mut r, listing, workers);
    render_sysctl(&mut r, listing);
    render_sync(&mut r, listing);
    let mut out = String::new();
    if encode(&mut out, &r).is_err() {
        out.clear();
    }
    out
}

/// Connection sync: which daemons run, entries and datagrams both ways
/// (from the listing's counters, which rvsd fills from the worker and the
/// backup thread).
fn render_sync(r: &mut Registry, listing: &Listing) {
    let up = gauge(
        r,
        "rvs_sync_daemon_up",
        "1 for each sync daemon running, by role (master, backup).",
    );
    for d in &listing.sync_daemons {
        up.get_or_create(&l(&[("role", d.daemon.role.name().into())]))
            .set(1);
    }
    let entries = counter(
        r,
        "rvs_sync_entries",
        "Connection entries of the sync protocol, by event: queued (master), queue_dropped (master queue full), received, installed (new on this backup), refused (no such service or server here), skipped (unknown protocol, state or parameter).",
    );
    let datagrams = counter(
        r,
        "rvs_sync_datagrams",
        "Sync datagrams, by event: sent, send_error (master); received, malformed, other_syncid (backup).",
    );
    let get = |k: &str| listing.counters.get(k).copied().unwrap_or(0);
    for (event, key) in [
        ("queued", "sync_sent"),
        ("queue_dropped", "sync_queue_dropped"),
        ("received", "sync_rx_entries"),
        ("installed", "sync_installed"),
        ("refused", "sync_refused"),
        ("skipped", "sync_rx_skipped_entries"),
    ] {
        entries
            .get_or_create(&l(&[("event", event.into())]))
            .inc_by(get(key));
    }
    for (event, key) in [
        ("sent", "sync_datagrams_sent"),
        ("send_error", "sync_send_errors"),
        ("received", "sync_rx_datagrams"),
        ("malformed", "sync_rx_malformed"),
        ("other_syncid", "sync_rx_other_syncid"),
    ] {
        datagrams
            .get_or_create(&l(&[("event", event.into())]))
            .inc_by(get(key));
    }
}

/// The SYN-flood defence: what it removed and dropped, and its state.
fn render_defense(r: &mut Registry, listing: &Listing, workers: &[Report]) {
    let evicted = counter(
        r,
        "rvs_conns_evicted",
        "Half-open connections evicted to make room for a new one when the connection table was full.",
    );
    let entries = counter(
        r,
        "rvs_defense_entries_dropped",
        "Half-open connections removed by the drop_entry defence.",
    );
    for w in workers {
        evicted
            .get_or_create(&Vec::new())
            .inc_by(w.counters.conns_evicted);
        entries
            .get_or_create(&Vec::new())
            .inc_by(w.counters.defense_entries_dropped);
    }
    let Some(d) = &listing.defense else {
        return;
    };
    let mode = gauge(
        r,
        "rvs_defense_mode",
        "Live mode of each defence strategy (0 off, 1 automatic inactive, 2 automatic active, 3 always), as the kernel's sysctls read.",
    );
    let active = gauge(
        r,
        "rvs_defense_active",
        "1 while a defence strategy acts (drop_packet: a drop rate is set).",
    );
    for (strategy, m, on) in [
        ("drop_entry", d.drop_entry, d.drop_entry_active),
        ("drop_packet", d.drop_packet, d.drop_rate > 0),
        ("secure_tcp", d.secure_tcp, d.secure_tcp_active),
    ] {
        let lab = l(&[("strategy", strategy.into())]);
        mode.get_or_create(&lab).set(i64::from(m));
        active.get_or_create(&lab).set(i64::from(on));
    }
    gauge(
        r,
        "rvs_defense_drop_rate",
        "drop_packet drops one new connection in this many; 0 when inactive.",
    )
    .get_or_create(&Vec::new())
    .set(i64::from(d.drop_rate));
    gauge(
        r,
        "rvs_defense_free_entries",
        "Free connection-table entries, the defence's available memory.",
    )
    .get_or_create(&Vec::new())
    .set(i64::from(d.free_entries));
    gauge(
        r,
        "rvs_defense_low_memory",
        "1 while fewer than amemthresh connection-table entries are free.",
    )
    .get_or_create(&Vec::new())
    .set(i64::from(d.low_memory));
}

/// The IPVS switches outside the defence (`rvs_vocab::sysctl`), so a
/// director running without sloppy_tcp among its peers shows.
fn render_sysctl(r: &mut Registry, listing: &Listing) {
    let Some(s) = &listing.sysctl else {
        return;
    };
    let g = gauge(
        r,
        "rvs_sysctl",
        "IPVS sysctls outside the SYN-flood defence by the kernel's name: 1 on, 0 off.",
    );
    for (name, on) in [
        ("sloppy_sctp", s.sloppy_sctp),
        ("sloppy_tcp", s.sloppy_tcp),
        ("sync_persist_mode", s.sync_persist_mode),
    ] {
        g.get_or_create(&l(&[("name", name.into())]))
            .set(i64::from(on));
    }
}

/// rvsd's own state: build, reloads, quorum.
fn render_daemon(r: &mut Registry, daemon: &DaemonFacts) {
    gauge(
        r,
        "rvs_build_info",
        "Always 1; the labels say which rvsd is running.",
    )
    .get_or_create(&l(&[("version", env!("CARGO_PKG_VERSION").into())]))
    .set(1);
    let reloads = counter(
        r,
        "rvs_config_reloads",
        "Configuration reloads by result (a failed one applied nothing).",
    );
    let stats = &daemon.reloads;
    for (result, n) in [("success", stats.succeeded), ("failure", stats.failed)] {
        reloads
            .get_or_create(&l(&[("result", result.into())]))
            .inc_by(n);
    }
    let last = gauge(
        r,
        "rvs_config_last_reload_success_timestamp_seconds",
        "When the last reload was applied (0: none since rvsd started).",
    );
    last.get_or_create(&Vec::new())
        .set(g(stats.last_success_unix.unwrap_or(0)));
    let quorum = gauge(
        r,
        "rvs_service_quorum_up",
        "1 while the service's live servers reach its quorum.",
    );
    let sorry = gauge(
        r,
        "rvs_service_sorry_server_active",
        "1 while the sorry server replaces the service's pool.",
    );
    for q in &daemon.quorum {
        let mut lab = l(&[("service", q.service.clone())]);
        if let Some(g) = &q.group {
            lab.push(("group".into(), g.clone()));
        }
        quorum.get_or_create(&lab).set(i64::from(q.up));
        sorry.get_or_create(&lab).set(i64::from(q.sorry_active));
    }
    gauge(
        r,
        "rvs_health_check_loops",
        "Health-check loops running: one per checked real server of a service or service group.",
    )
    .get_or_create(&Vec::new())
    .set(g(daemon.check_loops as u64));
}

/// Serves `GET /metrics` on `addr` until the runtime stops.
pub(crate) async fn serve(
    addr: SocketAddr,
    state: Arc<dyn Fn() -> String + Send + Sync>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics endpoint listening (GET /metrics)");
    loop {
        let (stream, _) = listener.accept().await?;
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let state = Arc::clone(&state);
                async move {
                    let resp = if req.uri().path() == "/metrics" {
                        let body = tokio::task::spawn_blocking(move || state())
                            .await
                            .unwrap_or_default();
                        Response::builder()
                            .header(
                                "content-type",
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )
                            .body(Full::new(Bytes::from(body)))
                    } else {
                        Response::builder()
                            .status(404)
                            .body(Full::new(Bytes::from_static(b"only /metrics here\n")))
                    };
                    Ok::<_, hyper::http::Error>(resp.unwrap_or_default())
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_api::{
        DestSpec, DestStatus, ForwardMethod, Protocol, ServiceKey, ServiceSpec, ServiceStatus,
        Stats,
    };

    #[test]
    fn exposition_parses_with_a_real_parser() {
        check_sample(&sample_exposition());
    }

    /// An exposition with every family populated.
    fn sample_exposition() -> String {
        let key = ServiceKey::addr(Protocol::Tcp, "10.0.100.1".parse().unwrap(), 80);
        let listing = Listing {
            conn_table_size: 1024,
            services: vec![ServiceStatus {
                spec: ServiceSpec {
                    key,
                    scheduler: "rr".into(),
                    persistence_timeout: None,
                    netmask: None,
                    flags: vec![],
                    one_packet: false,
                    local_addresses: vec!["10.0.2.200".parse().unwrap()],
                    toa: false,
                },
                dests: vec![DestStatus {
                    spec: DestSpec {
                        addr: "10.0.2.11".parse().unwrap(),
                        port: 80,
                        weight: 3,
                        method: ForwardMethod::Route,
                        tunnel: rvs_api::Tunnel::Ipip,
                        upper_threshold: 0,
                        lower_threshold: 0,
                    },
                    active_conns: 7,
                    inactive_conns: 2,
                    persistent_conns: 0,
                    stats: Stats {
                        conns: 9,
                        in_packets: 100,
                        in_bytes: 6400,
                        ..Stats::default()
                    },
                }],
                stats: Stats {
                    conns: 9,
                    in_packets: 100,
                    in_bytes: 6400,
                    cps: 4,
                    ..Stats::default()
                },
                group: None,
            }],
            counters: [("sync_installed".to_string(), 12u64)]
                .into_iter()
                .collect(),
            timeouts: Default::default(),
            health: vec![rvs_api::HealthStatus {
                service: key,
                addr: "10.0.2.11".parse().unwrap(),
                port: 80,
                up: true,
                reason: "ok".into(),
            }],
            config_file: None,
            config_diverged: true,
            sync_daemons: vec![rvs_api::SyncDaemonStatus {
                daemon: rvs_api::SyncDaemon {
                    role: rvs_api::SyncRole::Backup,
                    mcast_interface: "eth1".into(),
                    syncid: 7,
                    sync_maxlen: None,
                    mcast_group: None,
                    mcast_port: None,
                    mcast_ttl: None,
                    sync_refresh_period: None,
                    sync_retries: None,
                    sync_threshold: None,
                },
                maxlen: 1472,
            }],
            defense: Some(rvs_api::DefenseStatus {
                drop_entry: 2,
                drop_packet: 3,
                secure_tcp: 1,
                amemthresh: 1024,
                am_droprate: 10,
                free_entries: 100,
                low_memory: true,
                drop_entry_active: true,
                drop_rate: 10,
                secure_tcp_active: false,
            }),
            sysctl: Some(rvs_api::SysctlStatus {
                sloppy_tcp: true,
                ..Default::default()
            }),
            fwmark_rules: Vec::new(),
        };
        let mut w = Report::default();
        w.counters.rx_packets = 5;
        w.counters.forwarded = 4;
        w.counters.drops[rvs_engine::DropReason::Malformed.index()] = 1;
        w.counters.conns_evicted = 6;
        w.counters.defense_entries_dropped = 8;
        w.counters.icmp_translated = 2;
        w.connections = 9;
        w.batches = 3;
        w.fast_entries = 14;
        w.fast_slots = 2048;
        w.fast_active_slots = 1024;
        w.fast_overflow = 3;
        w.local_ports = vec![("10.0.2.200".parse().unwrap(), 5)];
        let iface = InterfaceView {
            name: "front".into(),
            xdp: XdpStats {
                passed: 4,
                to_user: 3,
                fast_redirect: 20,
                ..XdpStats::default()
            },
            xsk: XskTotals {
                sockets: 4,
                rx_ring_full: 2,
                ..XskTotals::default()
            },
        };
        let daemon = DaemonFacts {
            reloads: ReloadStats {
                succeeded: 2,
                failed: 1,
                last_success_unix: Some(1_800_000_000),
            },
            quorum: vec![
                QuorumState {
                    service: key.to_string(),
                    up: false,
                    sorry_active: true,
                    group: None,
                },
                QuorumState {
                    service: "FWM 7".into(),
                    up: true,
                    sorry_active: false,
                    group: Some("web".into()),
                },
            ],
            check_loops: 3,
        };
        render(&listing, &[w], &[iface], &daemon)
    }

    fn check_sample(text: &str) {
        let lines = text.lines().map(|s| Ok(s.to_owned()));
        let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition");
        let find = |name: &str, label: &str, value: &str| {
            scrape
                .samples
                .iter()
                .find(|s| s.metric == name && s.labels.get(label) == Some(value))
                .map(|s| match s.value {
                    prometheus_parse::Value::Counter(v)
                    | prometheus_parse::Value::Gauge(v)
                    | prometheus_parse::Value::Untyped(v) => v,
                    _ => f64::NAN,
                })
        };
        assert_eq!(
            find(
                "rvs_service_connections_total",
                "service",
                "TCP 10.0.100.1:80"
            ),
            Some(9.0)
        );
        assert_eq!(
            find(
                "rvs_real_server_active_connections",
                "server",
                "10.0.2.11:80"
            ),
            Some(7.0)
        );
        assert_eq!(
            find("rvs_real_server_weight", "server", "10.0.2.11:80"),
            Some(3.0)
        );
        assert_eq!(
            find("rvs_real_server_up", "server", "10.0.2.11:80"),
            Some(1.0)
        );
        assert_eq!(
            find("rvs_worker_drops_total", "reason", "malformed"),
            Some(1.0)
        );
        assert_eq!(
            find("rvs_local_ports_in_use", "address", "10.0.2.200"),
            Some(5.0)
        );
        // The drop reasons come from the engine's list: FullNAT's is there.
        assert_eq!(
            find("rvs_worker_drops_total", "reason", "local_ports_exhausted"),
            Some(0.0)
        );
        assert_eq!(find("rvs_worker_connections", "worker", "0"), Some(9.0));
        assert_eq!(find("rvs_worker_batches_total", "worker", "0"), Some(3.0));
        assert_eq!(
            find("rvs_xdp_packets_total", "verdict", "fast_redirect"),
            Some(20.0)
        );
        assert_eq!(
            find("rvs_xsk_drops_total", "reason", "rx_ring_full"),
            Some(2.0)
        );
        assert_eq!(find("rvs_xsk_sockets", "interface", "front"), Some(4.0));
        assert!(text.contains("rvs_fast_path_entries 14"), "{text}");
        assert!(text.contains("rvs_fast_path_slots 2048"), "{text}");
        assert!(text.contains("rvs_fast_path_active_slots 1024"), "{text}");
        assert!(text.contains("rvs_fast_path_overflow_entries 3"), "{text}");
        assert!(text.contains("rvs_conns_evicted_total 6"), "{text}");
        assert!(
            text.contains("rvs_sync_daemon_up{role=\"backup\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("rvs_sync_entries_total{event=\"installed\"} 12"),
            "{text}"
        );
        assert!(
            text.contains("rvs_defense_entries_dropped_total 8"),
            "{text}"
        );
        assert!(
            text.contains(
                "rvs_worker_icmp_errors_relayed_total{worker=\"0\",how=\"translated\"} 2"
            ),
            "{text}"
        );
        assert_eq!(
            find("rvs_defense_mode", "strategy", "drop_packet"),
            Some(3.0)
        );
        assert_eq!(
            find("rvs_defense_active", "strategy", "drop_entry"),
            Some(1.0)
        );
        assert_eq!(
            find("rvs_defense_active", "strategy", "secure_tcp"),
            Some(0.0)
        );
        assert!(text.contains("rvs_defense_drop_rate 10"), "{text}");
        assert!(text.contains("rvs_defense_free_entries 100"), "{text}");
        assert!(text.contains("rvs_defense_low_memory 1"), "{text}");
        assert_eq!(find("rvs_sysctl", "name", "sloppy_tcp"), Some(1.0));
        assert_eq!(find("rvs_sysctl", "name", "sync_persist_mode"), Some(0.0));
        assert!(text.contains("rvs_config_diverged 1"), "{text}");
        let build = scrape
            .samples
            .iter()
            .find(|s| s.metric == "rvs_build_info")
            .expect("rvs_build_info");
        assert_eq!(build.labels.get("version"), Some(env!("CARGO_PKG_VERSION")));
        assert_eq!(
            find("rvs_config_reloads_total", "result", "success"),
            Some(2.0)
        );
        assert_eq!(
            find("rvs_config_reloads_total", "result", "failure"),
            Some(1.0)
        );
        assert!(
            text.contains("rvs_config_last_reload_success_timestamp_seconds 1800000000"),
            "{text}"
        );
        assert!(text.contains("\nrvs_health_check_loops 3\n"), "{text}");
        assert!(
            text.contains("rvs_service_quorum_up{service=\"FWM 7\",group=\"web\"} 1\n"),
            "{text}"
        );
        assert_eq!(
            find("rvs_service_quorum_up", "service", "TCP 10.0.100.1:80"),
            Some(0.0)
        );
        assert_eq!(
            find(
                "rvs_service_sorry_server_active",
                "service",
                "TCP 10.0.100.1:80"
            ),
            Some(1.0)
        );
    }

    /// The `rvs_*` names a file uses (alert rules, dashboard queries).
    fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
        let mut names = std::collections::BTreeSet::new();
        for (i, _) in text.match_indices("rvs_") {
            let before = text[..i].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            names.insert(name);
        }
        names
    }

    /// What an operator alerts on and looks at must be what rvsd serves: a
    /// renamed metric would leave an alert that never fires.
    #[test]
    fn alert_rules_and_dashboard_use_metrics_rvsd_serves() {
        let text = sample_exposition();
        let served: std::collections::BTreeSet<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.split(['{', ' ']).next())
            .collect();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        for file in [
            "packaging/prometheus/rvs.rules.yml",
            "packaging/prometheus/rvs.rules.test.yml",
            "packaging/grafana/rvs.json",
        ] {
            let content = std::fs::read_to_string(root.join(file)).expect(file);
            let used = metric_names(&content);
            assert!(!used.is_empty(), "{file} names no metric");
            for name in used {
                assert!(
                    served.contains(name.as_str()),
                    "{file} uses {name}, which rvsd does not serve (it serves {served:?})"
                );
            }
        }
    }
}
