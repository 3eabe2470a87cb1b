//! What rvsadm lists: the configuration in force with the worker's
//! counters and rates, the connection table, and the metrics built on them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use rvs_api::{ConnectionEntry, DestStatus, Listing, ServiceStatus};
use rvs_engine::{ServiceKey, Stats};

use super::convert::{api_connection, api_dest, api_key, api_spec, api_stats};
use super::Director;
use crate::worker::{Report, WorkerCommand};

impl Director {
    /// The merged view of configuration and worker counters.
    pub(crate) fn listing(&self) -> Listing {
        let (svc_stats, merged) = self.merged();
        let report = self.report();
        let counters = &report.counters;
        let services = self
            .effective
            .services
            .iter()
            .map(|s| ServiceStatus {
                spec: api_spec(s),
                dests: s
                    .dests
                    .iter()
                    .map(|d| {
                        let key = (s.key, d.addr, d.port);
                        let (active, inactive, stats, persistent) =
                            merged.get(&key).copied().unwrap_or_default();
                        DestStatus {
                            spec: api_dest(d),
                            active_conns: active,
                            inactive_conns: inactive,
                            persistent_conns: persistent,
                            stats: api_stats(&stats, self.dest_rates.rates(&key)),
                        }
                    })
                    .collect(),
                stats: api_stats(
                    &svc_stats.get(&s.key).copied().unwrap_or_default(),
                    self.service_rates.rates(&s.key),
                ),
                group: self.health.group_of(&s.key),
            })
            .collect();
        let mut c = BTreeMap::new();
        c.insert("rx_packets".into(), counters.rx_packets);
        c.insert("forwarded".into(), counters.forwarded);
        c.insert("replies".into(), counters.replies);
        c.insert("icmp_relayed".into(), counters.icmp_relayed);
        c.insert("icmp_translated".into(), counters.icmp_translated);
        c.insert("fragments_tracked".into(), counters.fragments_tracked);
        c.insert("fragments_followed".into(), counters.fragments_followed);
        c.insert("fragments_evicted".into(), counters.fragments_evicted);
        c.insert("extra_frames".into(), counters.extra_frames);
        c.insert("unresolved".into(), counters.unresolved);
        c.insert("untracked".into(), counters.untracked);
        c.insert("conns_created".into(), counters.conns_created);
        c.insert("conns_expired".into(), counters.conns_expired);
        c.insert("conns_adopted".into(), counters.conns_adopted);
        c.insert("sync_sent".into(), counters.sync_sent);
        c.insert("sync_queue_dropped".into(), counters.sync_dropped);
        c.insert("sync_received".into(), counters.sync_received);
        c.insert("sync_installed".into(), counters.sync_installed);
        c.insert("sync_refused".into(), report.sync_refused);
        c.insert("sync_datagrams_sent".into(), report.sync_datagrams);
        c.insert("sync_send_errors".into(), report.sync_send_errors);
        {
            use std::sync::atomic::Ordering::Relaxed;
            let b = &self.sync.stats;
            c.insert("sync_rx_datagrams".into(), b.datagrams.load(Relaxed));
            c.insert("sync_rx_malformed".into(), b.malformed.load(Relaxed));
            c.insert("sync_rx_other_syncid".into(), b.other_syncid.load(Relaxed));
            c.insert(
                "sync_rx_skipped_entries".into(),
                b.skipped_entries.load(Relaxed),
            );
            c.insert("sync_rx_entries".into(), b.entries.load(Relaxed));
        }
        c.insert("conns_evicted".into(), counters.conns_evicted);
        c.insert(
            "defense_entries_dropped".into(),
            counters.defense_entries_dropped,
        );
        c.insert("connections".into(), u64::from(report.connections));
        c.insert("tx_failed".into(), report.tx_failed);
        c.insert("fast_path_ops".into(), report.fast_ops);
        c.insert("fast_path_op_errors".into(), report.fast_op_errors);
        c.insert("fast_path_entries".into(), report.fast_entries);
        c.insert("fast_path_slots".into(), report.fast_slots);
        c.insert("fast_path_active_slots".into(), report.fast_active_slots);
        c.insert("fast_path_overflow_entries".into(), report.fast_overflow);
        for r in rvs_engine::DropReason::ALL {
            c.insert(format!("drop_{}", r.label()), counters.dropped(*r));
        }
        for v in self.interfaces_view(&report) {
            v.insert_counters(&mut c);
        }
        c.insert("config_diverged".into(), u64::from(self.diverged));
        let t = &self.config.timeouts;
        let defense = Some(self.defense_status(&report));
        let sysctl = Some(rvs_api::SysctlStatus {
            sloppy_tcp: self.config.sloppy_tcp,
            sloppy_sctp: self.config.sloppy_sctp,
            sync_persist_mode: self.config.sync_persist_mode,
        });
        Listing {
            sync_daemons: self.sync.status(),
            defense,
            sysctl,
            health: self
                .health
                .statuses()
                .into_iter()
                .map(|h| rvs_api::HealthStatus {
                    service: api_key(&h.service),
                    addr: h.server.ip(),
                    port: h.server.port(),
                    up: h.up,
                    reason: h.reason,
                })
                .collect(),
            fwmark_rules: self
                .config
                .fwmarks
                .iter()
                .map(|r| rvs_api::FwmarkRuleSpec {
                    mark: r.mark,
                    protocol: r.protocol,
                    addr: r.addr,
                    prefix_len: r.prefix_len,
                    ports: r.ports.clone(),
                })
                .collect(),
            config_file: self.file.as_ref().map(|f| f.display().to_string()),
            config_diverged: self.diverged,
            conn_table_size: self.config.max_connections,
            services,
            counters: c,
            timeouts: rvs_api::Timeouts {
                tcp: t.tcp[rvs_engine::proto::TcpState::Established as usize],
                tcpfin: t.tcp[rvs_engine::proto::TcpState::FinWait as usize],
                udp: t.udp,
            },
        }
    }

    /// The worker's counters: per service, and per real server
    /// (active, inactive, persistent, stats).
    #[allow(clippy::type_complexity)] // two plain maps, named at the call sites
    pub(super) fn merged(
        &self,
    ) -> (
        BTreeMap<ServiceKey, Stats>,
        BTreeMap<(ServiceKey, IpAddr, u16), (u32, u32, Stats, u32)>,
    ) {
        let mut dests: BTreeMap<(ServiceKey, IpAddr, u16), (u32, u32, Stats, u32)> =
            BTreeMap::new();
        let mut svc_stats: BTreeMap<ServiceKey, Stats> = BTreeMap::new();
        let r = self.report();
        {
            for s in &r.services {
                svc_stats.entry(s.key).or_default().add(&s.stats);
                for d in &s.dests {
                    let e = dests.entry((s.key, d.addr, d.port)).or_default();
                    e.0 += d.active;
                    e.1 += d.inactive;
                    e.2.add(&d.stats);
                    e.3 += d.persistent;
                }
            }
        }
        (svc_stats, dests)
    }

    /// The worker's last report (empty without a datapath).
    /// The defence as the worker last reported it, or as configured (and
    /// inactive) without a running datapath.
    fn defense_status(&self, report: &Report) -> rvs_api::DefenseStatus {
        let (settings, live) = match report.defense {
            Some(d) => (d.settings, Some(d)),
            None => (self.config.defense, None),
        };
        rvs_api::DefenseStatus {
            drop_entry: settings.drop_entry,
            drop_packet: settings.drop_packet,
            secure_tcp: settings.secure_tcp,
            amemthresh: settings.amemthresh,
            am_droprate: settings.am_droprate,
            free_entries: live.map_or(self.config.max_connections, |d| d.free_entries),
            low_memory: live.is_some_and(|d| d.low_memory),
            drop_entry_active: live.is_some_and(|d| d.drop_entry_active),
            drop_rate: live.map_or(0, |d| d.drop_rate),
            secure_tcp_active: live.is_some_and(|d| d.secure_tcp_active),
        }
    }

    fn report(&self) -> Report {
        self.plane
            .as_ref()
            .and_then(|p| p.report.lock().ok().map(|g| g.clone()))
            .unwrap_or_default()
    }

    /// Per interface: the XDP program's verdicts and the AF_XDP sockets'
    /// counters, to see where frames go and where they are lost.
    fn interfaces_view(&self, report: &Report) -> Vec<crate::metrics::InterfaceView> {
        let Some(plane) = &self.plane else {
            return Vec::new();
        };
        let Ok(dp) = plane.datapath.lock() else {
            return Vec::new();
        };
        dp.interfaces()
            .iter()
            .map(|i| {
                let mut v = crate::metrics::InterfaceView {
                    name: i.name.clone(),
                    xdp: dp.iface_stats(i.ifindex).unwrap_or_default(),
                    ..Default::default()
                };
                for s in report.xsk.sockets.iter().filter(|s| s.ifindex == i.ifindex) {
                    v.xsk.add(s);
                }
                v
            })
            .collect()
    }

    /// The Prometheus exposition of the current state.
    pub(crate) fn metrics_text(&self) -> String {
        let report = self.report();
        let interfaces = self.interfaces_view(&report);
        let daemon = crate::metrics::DaemonFacts {
            reloads: self.reloads,
            quorum: self
                .health
                .quorum_states()
                .into_iter()
                .map(|(key, up, sorry_active)| crate::metrics::QuorumState {
                    service: api_key(&key).to_string(),
                    up,
                    sorry_active,
                    group: self.health.group_of(&key),
                })
                .collect(),
            check_loops: self.health.check_loops(),
        };
        crate::metrics::render(&self.listing(), &[report], &interfaces, &daemon)
    }
}

/// Every connection and template (`ipvsadm -Lc`), asked of the worker over
/// `commands` and waited for (bounded) without holding the state lock.
pub(crate) fn connections(
    commands: Option<std::sync::mpsc::Sender<WorkerCommand>>,
) -> Vec<ConnectionEntry> {
    let Some(commands) = commands else {
        return Vec::new();
    };
    let (tx, rx) = std::sync::mpsc::channel();
    if commands.send(WorkerCommand::Dump(tx)).is_err() {
        return Vec::new();
    }
    let Ok(conns) = rx.recv_timeout(std::time::Duration::from_secs(5)) else {
        tracing::warn!("the worker did not answer the connection dump in time");
        return Vec::new();
    };
    conns.iter().map(api_connection).collect()
}
