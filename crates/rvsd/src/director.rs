//! The control plane's state: the configuration in force, the XDP filters
//! that must mirror it, and the workers' reports. Every change builds a new
//! engine configuration, validates it whole (a refused change alters
//! nothing), publishes it to the workers and then updates the XDP maps.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use rvs_api::{Command, ControlHandler, DestSpec, DestStatus, Listing, ServiceSpec, ServiceStatus};
use rvs_datapath::XdpFilter;
use rvs_engine::{
    Config, Counters, Dest, ForwardMethod, Protocol, Service, ServiceKey, Snapshot, Stats,
};

use crate::worker::{Report, Shared};

type XdpKey = (IpAddr, u8, u16);

/// What the XDP maps must hold for a configuration.
#[derive(Default, PartialEq, Eq)]
struct XdpSets {
    services: BTreeSet<XdpKey>,
    vips: BTreeSet<IpAddr>,
    nat_return: BTreeSet<XdpKey>,
}

impl XdpSets {
    fn of(cfg: &Config) -> Self {
        let mut s = XdpSets::default();
        for svc in &cfg.services {
            let proto = svc.key.protocol.number();
            s.services.insert((svc.key.addr, proto, svc.key.port));
            s.vips.insert(svc.key.addr);
            for d in svc.dests.iter().filter(|d| d.method == ForwardMethod::Masq) {
                s.nat_return.insert((d.addr, proto, d.port));
            }
        }
        s
    }
}

pub(crate) struct Director {
    config: Config,
    filters: Vec<XdpFilter>,
    installed: XdpSets,
    shared: Arc<Shared>,
    reports: Vec<Arc<Mutex<Report>>>,
}

impl Director {
    pub(crate) fn new(
        config: Config,
        filters: Vec<XdpFilter>,
        shared: Arc<Shared>,
        reports: Vec<Arc<Mutex<Report>>>,
    ) -> anyhow::Result<Self> {
        let mut d = Director {
            config,
            filters,
            installed: XdpSets::default(),
            shared,
            reports,
        };
        prime_neighbors(&d.config);
        d.sync_xdp()?;
        Ok(d)
    }

    /// Validates `config`, publishes it, and mirrors it into the XDP maps.
    fn apply(&mut self, config: Config) -> Result<(), String> {
        let snapshot = Snapshot::new(config.clone()).map_err(|e| e.to_string())?;
        prime_neighbors(&config);
        self.shared.snapshot.store(snapshot);
        self.config = config;
        self.sync_xdp().map_err(|e| {
            format!("configuration applied, but the XDP filter could not be updated: {e}")
        })
    }

    /// Mirrors the configuration into the XDP maps. Replies of NAT servers
    /// removed from the configuration keep being redirected while any worker
    /// still tracks their connections (they drain, see the engine), so this
    /// also runs periodically to let go once they are gone.
    pub(crate) fn sync_xdp(&mut self) -> anyhow::Result<()> {
        let mut want = XdpSets::of(&self.config);
        for r in &self.reports {
            let Ok(r) = r.lock() else { continue };
            for s in &r.services {
                let proto = s.key.protocol.number();
                // Any NAT server a worker still tracks connections for, whether
                // the report already marks it draining or predates the removal.
                let tracked = |d: &&rvs_engine::DestStatus| d.active + d.inactive > 0;
                for d in s
                    .dests
                    .iter()
                    .filter(tracked)
                    .filter(|d| d.method == ForwardMethod::Masq)
                {
                    want.nat_return.insert((d.addr, proto, d.port));
                }
            }
        }
        let have = std::mem::take(&mut self.installed);
        for f in &mut self.filters {
            for &(a, p, port) in want.services.difference(&have.services) {
                f.add_service(a, p, port)?;
            }
            for &a in want.vips.difference(&have.vips) {
                f.add_vip(a)?;
            }
            for &(a, p, port) in want.nat_return.difference(&have.nat_return) {
                f.add_nat_return(a, p, port)?;
            }
            for &(a, p, port) in have.services.difference(&want.services) {
                f.remove_service(a, p, port)?;
            }
            for &a in have.vips.difference(&want.vips) {
                f.remove_vip(a)?;
            }
            for &(a, p, port) in have.nat_return.difference(&want.nat_return) {
                f.remove_nat_return(a, p, port)?;
            }
        }
        self.installed = want;
        Ok(())
    }

    fn position(&self, key: &rvs_api::ServiceKey) -> Option<usize> {
        let k = engine_key(key);
        self.config.services.iter().position(|s| s.key == k)
    }

    /// Applies one rvsadm command; the whole change or nothing.
    pub(crate) fn command(&mut self, cmd: Command) -> Result<(), String> {
        let mut next = self.config.clone();
        match cmd {
            Command::AddService(spec) => {
                refuse_unsupported(&spec)?;
                if self.position(&spec.key).is_some() {
                    return Err("Service already exists".into());
                }
                next.services.push(Service {
                    key: engine_key(&spec.key),
                    scheduler: spec.scheduler,
                    sched_flags: 0,
                    dests: Vec::new(),
                });
            }
            Command::EditService(spec) => {
                refuse_unsupported(&spec)?;
                let pos = self.position(&spec.key).ok_or("No such service")?;
                next.services[pos].scheduler = spec.scheduler;
            }
            Command::DeleteService(key) => {
                let pos = self.position(&key).ok_or("No such service")?;
                next.services.remove(pos);
            }
            Command::AddDest { service, dest } => {
                let pos = self.position(&service).ok_or("Service not defined")?;
                let dests = &mut next.services[pos].dests;
                if dests
                    .iter()
                    .any(|d| d.addr == dest.addr && d.port == dest.port)
                {
                    return Err("Destination already exists".into());
                }
                dests.push(engine_dest(&dest));
            }
            Command::EditDest { service, dest } => {
                let pos = self.position(&service).ok_or("Service not defined")?;
                let d = next.services[pos]
                    .dests
                    .iter_mut()
                    .find(|d| d.addr == dest.addr && d.port == dest.port)
                    .ok_or("No such destination")?;
                *d = engine_dest(&dest);
            }
            Command::DeleteDest {
                service,
                addr,
                port,
            } => {
                let pos = self.position(&service).ok_or("Service not defined")?;
                let dests = &mut next.services[pos].dests;
                let i = dests
                    .iter()
                    .position(|d| d.addr == addr && d.port == port)
                    .ok_or("No such destination")?;
                dests.remove(i);
            }
            Command::Clear => next.services.clear(),
            Command::ZeroCounters(_) => {
                self.shared
                    .zero_epoch
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Ok(());
            }
            Command::SetTimeouts { tcp, tcpfin, udp } => next.timeouts.set(tcp, tcpfin, udp),
        }
        self.apply(next)
    }

    /// The merged view of configuration and worker counters.
    pub(crate) fn listing(&self) -> Listing {
        let mut merged: BTreeMap<(ServiceKey, IpAddr, u16), (u32, u32, Stats)> = BTreeMap::new();
        let mut svc_stats: BTreeMap<ServiceKey, Stats> = BTreeMap::new();
        let mut counters = Counters::default();
        let mut tx_failed = 0;
        let mut connections = 0u64;
        for r in &self.reports {
            let Ok(r) = r.lock() else { continue };
            counters.add(&r.counters);
            tx_failed += r.tx_failed;
            connections += u64::from(r.connections);
            for s in &r.services {
                svc_stats.entry(s.key).or_default().add(&s.stats);
                for d in &s.dests {
                    let e = merged.entry((s.key, d.addr, d.port)).or_default();
                    e.0 += d.active;
                    e.1 += d.inactive;
                    e.2.add(&d.stats);
                }
            }
        }
        let services = self
            .config
            .services
            .iter()
            .map(|s| ServiceStatus {
                spec: ServiceSpec {
                    key: api_key(&s.key),
                    scheduler: s.scheduler.clone(),
                    persistence_timeout: None,
                    netmask: None,
                    flags: Vec::new(),
                },
                dests: s
                    .dests
                    .iter()
                    .map(|d| {
                        let (active, inactive, stats) = merged
                            .get(&(s.key, d.addr, d.port))
                            .copied()
                            .unwrap_or_default();
                        DestStatus {
                            spec: api_dest(d),
                            active_conns: active,
                            inactive_conns: inactive,
                            stats: api_stats(&stats),
                        }
                    })
                    .collect(),
                stats: api_stats(&svc_stats.get(&s.key).copied().unwrap_or_default()),
            })
            .collect();
        let mut c = BTreeMap::new();
        c.insert("rx_packets".into(), counters.rx_packets);
        c.insert("forwarded".into(), counters.forwarded);
        c.insert("replies".into(), counters.replies);
        c.insert("unresolved".into(), counters.unresolved);
        c.insert("passed".into(), counters.passed);
        c.insert("conns_created".into(), counters.conns_created);
        c.insert("conns_expired".into(), counters.conns_expired);
        c.insert("connections".into(), connections);
        c.insert("tx_failed".into(), tx_failed);
        for r in rvs_engine::DropReason::ALL {
            c.insert(format!("drop_{}", r.label()), counters.dropped(*r));
        }
        for f in &self.filters {
            if let Ok(s) = f.stats() {
                let name = f.ifname();
                c.insert(format!("xdp_{name}_redirected"), s.redirected);
                c.insert(format!("xdp_{name}_passed"), s.passed);
                c.insert(format!("xdp_{name}_redirect_failed"), s.redirect_failed);
                c.insert(format!("xdp_{name}_parse_errors"), s.parse_errors);
            }
        }
        Listing {
            conn_table_size: self.config.max_connections,
            services,
            counters: c,
        }
    }
}

/// Asks the kernel to resolve every real server now, so the first SYN to a
/// new server does not wait for ARP (it would be dropped and retransmitted).
pub(crate) fn prime_neighbors(config: &Config) {
    for gw in config.routes.iter().filter_map(|r| r.gateway) {
        crate::kernel::trigger_resolution(gw);
    }
    for svc in &config.services {
        for d in &svc.dests {
            crate::kernel::trigger_resolution(d.addr);
        }
    }
}

fn refuse_unsupported(spec: &ServiceSpec) -> Result<(), String> {
    if spec.persistence_timeout.is_some() || spec.netmask.is_some() {
        return Err("persistence (-p/-M) is not available in this version of rvsd".into());
    }
    if !spec.flags.is_empty() {
        return Err("scheduler flags (-b) are not available in this version of rvsd".into());
    }
    Ok(())
}

fn engine_key(k: &rvs_api::ServiceKey) -> ServiceKey {
    ServiceKey {
        protocol: match k.protocol {
            rvs_api::Protocol::Tcp => Protocol::Tcp,
            rvs_api::Protocol::Udp => Protocol::Udp,
        },
        addr: k.addr,
        port: k.port,
    }
}

fn api_key(k: &ServiceKey) -> rvs_api::ServiceKey {
    rvs_api::ServiceKey {
        protocol: match k.protocol {
            Protocol::Tcp => rvs_api::Protocol::Tcp,
            Protocol::Udp => rvs_api::Protocol::Udp,
        },
        addr: k.addr,
        port: k.port,
    }
}

fn engine_dest(d: &DestSpec) -> Dest {
    Dest {
        addr: d.addr,
        port: d.port,
        weight: d.weight,
        method: match d.method {
            rvs_api::ForwardMethod::Route => ForwardMethod::Route,
            rvs_api::ForwardMethod::Masq => ForwardMethod::Masq,
            rvs_api::ForwardMethod::Tunnel => ForwardMethod::Tunnel,
        },
        upper_threshold: d.upper_threshold,
        lower_threshold: d.lower_threshold,
    }
}

fn api_dest(d: &Dest) -> DestSpec {
    DestSpec {
        addr: d.addr,
        port: d.port,
        weight: d.weight,
        method: match d.method {
            ForwardMethod::Route => rvs_api::ForwardMethod::Route,
            ForwardMethod::Masq => rvs_api::ForwardMethod::Masq,
            ForwardMethod::Tunnel => rvs_api::ForwardMethod::Tunnel,
        },
        upper_threshold: d.upper_threshold,
        lower_threshold: d.lower_threshold,
    }
}

fn api_stats(s: &Stats) -> rvs_api::Stats {
    rvs_api::Stats {
        conns: s.conns,
        in_packets: s.in_packets,
        out_packets: s.out_packets,
        in_bytes: s.in_bytes,
        out_bytes: s.out_bytes,
    }
}

/// The API handler: one lock around the director (commands are rare).
pub(crate) struct Handler(pub(crate) Mutex<Director>);

impl Handler {
    /// Periodic XDP map resync (drained NAT servers).
    pub(crate) fn resync_xdp(&self) {
        if let Ok(mut d) = self.0.lock() {
            if let Err(e) = d.sync_xdp() {
                tracing::warn!(error = %e, "updating the XDP maps");
            }
        }
    }
}

impl ControlHandler for Handler {
    fn listing(&self) -> Listing {
        match self.0.lock() {
            Ok(d) => d.listing(),
            Err(p) => p.into_inner().listing(),
        }
    }

    fn command(&self, cmd: Command) -> Result<(), String> {
        let mut d = self
            .0
            .lock()
            .map_err(|_| "rvsd internal error: state lock poisoned".to_string())?;
        tracing::info!(?cmd, "control command");
        let r = d.command(cmd);
        if let Err(e) = &r {
            tracing::warn!(error = %e, "command refused");
        }
        r
    }
}
