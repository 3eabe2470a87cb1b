//! The control plane's state: the configuration in force, the XDP maps
//! that must mirror it, and the worker's reports. Every change builds a new
//! engine configuration, validates it whole (a refused change alters
//! nothing), publishes it to the worker and then updates the XDP maps.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use rvs_api::{
    Command, ConnectionEntry, ControlError, ControlHandler, DestSpec, DestStatus, Entity, Family,
    Listing, ServiceSpec, ServiceStatus,
};
use rvs_engine::{Config, Dest, Persistence, Protocol, Service, ServiceKey, Snapshot, Stats};

use crate::estimator::{Estimator, Rates};
use crate::health::{self, Health};
use crate::worker::{Plane, Report, Shared, WorkerCommand};
use std::path::PathBuf;

type XdpKey = (IpAddr, u8, u16);

/// What the XDP maps must hold for a configuration: the first packets of
/// which services go to the engine, and which addresses are VIPs (malformed
/// frames to them are the engine's to count). Frames of tracked connections
/// (NAT replies included) are found through the connection map the engine
/// writes itself.
#[derive(Default, PartialEq, Eq)]
struct XdpSets {
    services: BTreeSet<XdpKey>,
    vips: BTreeSet<IpAddr>,
}

impl XdpSets {
    fn of(cfg: &Config) -> Self {
        let mut s = XdpSets::default();
        for svc in &cfg.services {
            if svc.key.is_fwmark() {
                continue; // its addresses come from the classifier rules
            }
            let proto = svc.key.protocol.number();
            s.services.insert((svc.key.addr, proto, svc.key.port));
            s.vips.insert(svc.key.addr);
        }
        for r in &cfg.fwmarks {
            // Only rules some service uses; every address of the prefix
            // (bounded by the engine's validation), each port or all (0).
            if !cfg.services.iter().any(|svc| svc.key.fwmark == r.mark) {
                continue;
            }
            let protos: Vec<u8> = r.protocol.map_or(vec![6, 17], |p| vec![p.number()]);
            let ports: Vec<u16> = if r.ports.is_empty() {
                vec![0]
            } else {
                r.ports.clone()
            };
            for addr in prefix_addrs(r.addr, r.prefix_len) {
                for &p in &protos {
                    for &port in &ports {
                        s.services.insert((addr, p, port));
                    }
                }
                s.vips.insert(addr);
            }
        }
        s
    }
}

/// Every address of `addr/prefix_len` (the engine caps the count).
fn prefix_addrs(addr: IpAddr, prefix_len: u8) -> Vec<IpAddr> {
    let width: u8 = if addr.is_ipv4() { 32 } else { 128 };
    let host_bits =
        u32::from(width - prefix_len.min(width)).min(rvs_engine::config::MAX_FWMARK_HOST_BITS);
    let count = 1u128 << host_bits;
    match addr {
        IpAddr::V4(a) => {
            let base = u128::from(u32::from(a)) & !(count - 1);
            (0..count)
                .map(|i| IpAddr::from(std::net::Ipv4Addr::from((base + i) as u32)))
                .collect()
        }
        IpAddr::V6(a) => {
            let base = u128::from(a) & !(count - 1);
            (0..count)
                .map(|i| IpAddr::from(std::net::Ipv6Addr::from(base + i)))
                .collect()
        }
    }
}

pub(crate) struct Director {
    /// The operator's configuration: the file plus rvsadm changes.
    config: Config,
    /// What the engine runs: `config` as health checks allow.
    effective: Config,
    health: Health,
    /// The configuration file, for reloads.
    file: Option<PathBuf>,
    /// rvsadm changed the configuration since the file was (re)loaded.
    diverged: bool,
    /// The datapath, if rvsd runs on interfaces.
    plane: Option<Plane>,
    installed: XdpSets,
    shared: Arc<Shared>,
    service_rates: Estimator<ServiceKey>,
    dest_rates: Estimator<(ServiceKey, IpAddr, u16)>,
}

impl Director {
    pub(crate) fn new(
        config: Config,
        health: Health,
        file: Option<PathBuf>,
        plane: Option<Plane>,
        shared: Arc<Shared>,
    ) -> anyhow::Result<Self> {
        let mut d = Director {
            effective: config.clone(),
            config: Config::default(),
            health,
            file,
            diverged: false,
            plane,
            installed: XdpSets::default(),
            shared,
            service_rates: Estimator::default(),
            dest_rates: Estimator::default(),
        };
        d.apply(config).map_err(|e| anyhow::anyhow!(e))?;
        Ok(d)
    }

    /// Validates the base configuration `config` (with every sorry server
    /// it may fall back to), derives the effective one from health, publishes
    /// it and mirrors it into the XDP maps. A refusal changes nothing.
    fn apply(&mut self, config: Config) -> Result<(), ControlError> {
        Snapshot::new(self.health.with_sorry_servers(&config)).map_err(refused)?;
        let commands = self.health.reconcile(&config);
        self.config = config;
        health::run_commands(commands);
        self.publish_effective()
    }

    fn publish_effective(&mut self) -> Result<(), ControlError> {
        let effective = self.health.effective(&self.config);
        // Health only narrows what `apply` validated with every sorry server.
        let snapshot = Snapshot::new(effective.clone()).map_err(|e| {
            ControlError::internal(format!("the configuration as health allows it: {e}"))
        })?;
        prime_neighbors(&effective);
        self.shared.snapshot.store(snapshot);
        self.effective = effective;
        self.sync_xdp().map_err(|e| {
            ControlError::internal(format!(
                "configuration applied, but the XDP filter could not be updated: {e}"
            ))
        })
    }

    /// A health check changed state.
    pub(crate) fn on_health(&mut self, ev: &rvs_health::HealthEvent) {
        let (changed, commands) = self.health.on_event(ev);
        health::run_commands(commands);
        if changed {
            if let Err(e) = self.publish_effective() {
                tracing::error!(error = %e, "applying a health change");
            }
        }
    }

    /// Re-reads the configuration file and applies it whole; any error
    /// changes nothing. Counters of unchanged services and established
    /// connections are kept (the engine drains removed servers).
    pub(crate) fn reload(&mut self) -> Result<String, ControlError> {
        let path = self.file.clone().ok_or_else(|| {
            ControlError::bad_request(
                "rvsd was started without --config: there is no file to reload",
            )
        })?;
        let bad = ControlError::bad_request;
        let text = std::fs::read_to_string(&path)
            .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
        let file = rvs_vocab::schema::Config::parse(&text)
            .map_err(|e| bad(format!("{}: {e}", path.display())))?;
        let (services, plan) = crate::config::build(&file, &text)
            .map_err(|errs| bad(format!("{}: {}", path.display(), errs.join("; "))))?;
        let names: Vec<&String> = self.config.interfaces.iter().map(|i| &i.name).collect();
        if file.interfaces.iter().collect::<Vec<_>>() != names {
            return Err(bad(format!("{}: interfaces changed; restart rvsd to attach to other interfaces (nothing was applied)", path.display())));
        }
        if let Some(m) = file.max_connections {
            if m != self.config.max_connections {
                return Err(bad(format!("{}: max_connections changed; restart rvsd to resize the connection table (nothing was applied)", path.display())));
            }
        }
        let mut next = self.config.clone();
        next.services = services;
        next.fwmarks = crate::config::engine_fwmarks(&file).map_err(|e| bad(e.to_string()))?;
        next.timeouts = crate::config::timeouts(&file);
        next.fast_path = crate::config::fast_path(&file);
        next.routes = crate::kernel::routes(&next.interfaces)
            .map_err(|e| ControlError::internal(format!("reading routes: {e}")))?;
        let previous_plan = self.health.replace_plan(plan);
        if let Err(e) = self.apply(next) {
            self.health.replace_plan(previous_plan);
            let message = format!("{}: {e} (nothing was applied)", path.display());
            return Err(match e {
                ControlError::Internal { .. } => ControlError::internal(message),
                _ => bad(message),
            });
        }
        self.diverged = false;
        let msg = format!(
            "reloaded {}: {} services",
            path.display(),
            self.config.services.len()
        );
        tracing::info!("{msg}");
        Ok(msg)
    }

    /// quorum_down commands for omega services, to run at shutdown.
    pub(crate) fn shutdown(&mut self) -> Vec<rvs_health::policy::QuorumCommand> {
        self.health.shutdown()
    }

    /// Mirrors the configuration into the XDP maps (services and VIPs; the
    /// engine keeps the connection map itself).
    pub(crate) fn sync_xdp(&mut self) -> anyhow::Result<()> {
        let want = XdpSets::of(&self.effective);
        let Some(plane) = &self.plane else {
            self.installed = want;
            return Ok(());
        };
        let mut dp = plane
            .datapath
            .lock()
            .map_err(|_| anyhow::anyhow!("datapath lock poisoned"))?;
        let have = &self.installed;
        for &(a, p, port) in want.services.difference(&have.services) {
            dp.add_service(a, p, port)?;
        }
        for &a in want.vips.difference(&have.vips) {
            dp.add_vip(a)?;
        }
        for &(a, p, port) in have.services.difference(&want.services) {
            dp.remove_service(a, p, port)?;
        }
        for &a in have.vips.difference(&want.vips) {
            dp.remove_vip(a)?;
        }
        drop(dp);
        self.installed = want;
        Ok(())
    }

    /// Applies one rvsadm command; the whole change or nothing.
    pub(crate) fn command(&mut self, cmd: Command) -> Result<(), ControlError> {
        if let Command::Reload = cmd {
            return self.reload().map(|_| ());
        }
        let changes = !matches!(cmd, Command::ZeroCounters(_));
        let r = self.command_inner(cmd);
        if r.is_ok() && changes {
            if let Some(f) = &self.file {
                if !self.diverged {
                    tracing::warn!(file = %f.display(), "runtime change with rvsadm: the running configuration now differs from the file; it is lost at the next reload or restart unless written to the file");
                }
                self.diverged = true;
            }
        }
        r
    }

    fn command_inner(&mut self, cmd: Command) -> Result<(), ControlError> {
        if let Command::ZeroCounters(key) = cmd {
            let only = key.as_ref().map(engine_key);
            if let (Some(k), Some(key)) = (only, key) {
                if !self.config.services.iter().any(|s| s.key == k) {
                    return Err(ControlError::NotFound {
                        what: Entity::Service(key),
                    });
                }
            }
            if let Some(plane) = &self.plane {
                plane
                    .commands
                    .send(WorkerCommand::Zero(only))
                    .map_err(|_| ControlError::internal("the worker has stopped"))?;
            }
            self.service_rates.retain(|k| only.is_some_and(|o| o != *k));
            self.dest_rates
                .retain(|(k, _, _)| only.is_some_and(|o| o != *k));
            return Ok(());
        }
        let mut next = self.config.clone();
        if let Command::Restore(cmds) = cmd {
            // ipvsadm -R: every command against a scratch copy, validated as
            // one configuration at the end; the first failure names its index.
            for (index, c) in cmds.into_iter().enumerate() {
                let at = |cause| ControlError::Refused {
                    index,
                    cause: Box::new(cause),
                };
                if matches!(c, Command::Restore(_)) {
                    return Err(at(ControlError::bad_request("nested restore")));
                }
                edit(&mut next, c).map_err(at)?;
                Snapshot::new(next.clone()).map_err(|e| at(refused(e)))?;
            }
            return self.apply(next);
        }
        edit(&mut next, cmd)?;
        self.apply(next)
    }

    /// One 2-second estimator step over the workers' counters.
    pub(crate) fn tick_rates(&mut self) {
        let (svc, dests) = self.merged();
        self.service_rates.tick(svc.iter().map(|(k, s)| (*k, s)));
        self.dest_rates.tick(dests.iter().map(|(k, v)| (*k, &v.2)));
    }

    /// The worker's counters: per service, and per real server
    /// (active, inactive, persistent, stats).
    #[allow(clippy::type_complexity)] // two plain maps, named at the call sites
    fn merged(
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
        crate::metrics::render(&self.listing(), &[report], &interfaces)
    }

    /// The worker's command channel, to wait on it without the state lock.
    pub(crate) fn commands(&self) -> Option<std::sync::mpsc::Sender<WorkerCommand>> {
        self.plane.as_ref().map(|p| p.commands.clone())
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
    {
        let mut out = Vec::with_capacity(conns.len());
        for c in conns {
            let fwmark = (c.template && c.protocol == 0).then(|| match c.virtual_.0 {
                IpAddr::V4(a) => u32::from(a),
                IpAddr::V6(_) => 0,
            });
            out.push(ConnectionEntry {
                protocol: Protocol::from_number(c.protocol).unwrap_or(Protocol::Tcp),
                client: c.client,
                virtual_: c.virtual_,
                dest: c.dest,
                state: c.state.to_string(),
                expires_secs: c.expires_in_secs,
                template: c.template,
                fwmark,
            });
        }
        out
    }
}

/// The engine's refusal of a configuration, for the operator.
fn refused(e: rvs_engine::ConfigError) -> ControlError {
    ControlError::bad_request(e.to_string())
}

/// Applies one command to `next` (not yet validated as a whole).
fn edit(next: &mut Config, cmd: Command) -> Result<(), ControlError> {
    let position = |cfg: &Config, key: &rvs_api::ServiceKey| {
        let k = engine_key(key);
        cfg.services
            .iter()
            .position(|s| s.key == k)
            .ok_or(ControlError::NotFound {
                what: Entity::Service(*key),
            })
    };
    let no_dest = |addr, port| ControlError::NotFound {
        what: Entity::Destination { addr, port },
    };
    match cmd {
        Command::AddService(spec) => {
            if position(next, &spec.key).is_ok() {
                return Err(ControlError::Exists {
                    what: Entity::Service(spec.key),
                });
            }
            let mut svc = Service::new(engine_key(&spec.key), &spec.scheduler);
            apply_spec(&mut svc, &spec)?;
            next.services.push(svc);
        }
        Command::EditService(spec) => {
            let pos = position(next, &spec.key)?;
            apply_spec(&mut next.services[pos], &spec)?;
        }
        Command::DeleteService(key) => {
            let pos = position(next, &key)?;
            next.services.remove(pos);
        }
        Command::AddDest { service, dest } => {
            let pos = position(next, &service)?;
            let dests = &mut next.services[pos].dests;
            if dests
                .iter()
                .any(|d| d.addr == dest.addr && d.port == dest.port)
            {
                return Err(ControlError::Exists {
                    what: Entity::Destination {
                        addr: dest.addr,
                        port: dest.port,
                    },
                });
            }
            dests.push(engine_dest(&dest));
        }
        Command::EditDest { service, dest } => {
            let pos = position(next, &service)?;
            let d = next.services[pos]
                .dests
                .iter_mut()
                .find(|d| d.addr == dest.addr && d.port == dest.port)
                .ok_or_else(|| no_dest(dest.addr, dest.port))?;
            *d = engine_dest(&dest);
        }
        Command::DeleteDest {
            service,
            addr,
            port,
        } => {
            let pos = position(next, &service)?;
            let dests = &mut next.services[pos].dests;
            let i = dests
                .iter()
                .position(|d| d.addr == addr && d.port == port)
                .ok_or_else(|| no_dest(addr, port))?;
            dests.remove(i);
        }
        Command::Clear => next.services.clear(),
        Command::AddFwmarkRule(r) => next.fwmarks.push(rvs_engine::FwmarkRule {
            mark: r.mark,
            protocol: r.protocol,
            addr: r.addr,
            prefix_len: r.prefix_len,
            ports: r.ports,
        }),
        Command::DeleteFwmarkRule { mark } => {
            let before = next.fwmarks.len();
            next.fwmarks.retain(|r| r.mark != mark);
            if next.fwmarks.len() == before {
                return Err(ControlError::NotFound {
                    what: Entity::FwmarkRule { mark },
                });
            }
        }
        Command::SetTimeouts { tcp, tcpfin, udp } => next.timeouts.set(tcp, tcpfin, udp),
        Command::ZeroCounters(_) | Command::Restore(_) | Command::Reload => {
            return Err(ControlError::bad_request("not valid inside a restore"))
        }
    }
    Ok(())
}

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
            })
            .collect();
        let mut c = BTreeMap::new();
        c.insert("rx_packets".into(), counters.rx_packets);
        c.insert("forwarded".into(), counters.forwarded);
        c.insert("replies".into(), counters.replies);
        c.insert("unresolved".into(), counters.unresolved);
        c.insert("untracked".into(), counters.untracked);
        c.insert("conns_created".into(), counters.conns_created);
        c.insert("conns_expired".into(), counters.conns_expired);
        c.insert("connections".into(), u64::from(report.connections));
        c.insert("tx_failed".into(), report.tx_failed);
        c.insert("fast_path_ops".into(), report.fast_ops);
        c.insert("fast_path_op_errors".into(), report.fast_op_errors);
        c.insert("fast_path_entries".into(), report.fast_entries);
        for r in rvs_engine::DropReason::ALL {
            c.insert(format!("drop_{}", r.label()), counters.dropped(*r));
        }
        for v in self.interfaces_view(&report) {
            v.insert_counters(&mut c);
        }
        c.insert("config_diverged".into(), u64::from(self.diverged));
        let t = &self.config.timeouts;
        Listing {
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

fn apply_spec(svc: &mut Service, spec: &ServiceSpec) -> Result<(), ControlError> {
    svc.scheduler = spec.scheduler.clone();
    svc.sched_flags = rvs_vocab::sched::flag_bits(&spec.flags)
        .map_err(|e| ControlError::bad_request(e.to_string()))?;
    svc.one_packet = spec.one_packet;
    let full = if svc.key.addr.is_ipv4() { 32 } else { 128 };
    svc.persistence = spec.persistence_timeout.map(|timeout| Persistence {
        timeout,
        prefix_len: spec.netmask.unwrap_or(full),
    });
    Ok(())
}

fn api_spec(s: &Service) -> ServiceSpec {
    let full = if s.key.addr.is_ipv4() { 32 } else { 128 };
    // sh/mh flags are shown under their scheduler's names, as ipvsadm does.
    let flags = rvs_vocab::sched::flag_names(&s.scheduler, s.sched_flags);
    ServiceSpec {
        key: api_key(&s.key),
        scheduler: s.scheduler.clone(),
        persistence_timeout: s.persistence.map(|p| p.timeout),
        netmask: s
            .persistence
            .and_then(|p| (p.prefix_len != full).then_some(p.prefix_len)),
        flags,
        one_packet: s.one_packet,
    }
}

fn engine_key(k: &rvs_api::ServiceKey) -> ServiceKey {
    match *k {
        rvs_api::ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => ServiceKey::new(protocol, addr, port),
        rvs_api::ServiceKey::Fwmark { mark, af } => ServiceKey::fwmark(mark, af == Family::Ipv6),
    }
}

fn api_key(k: &ServiceKey) -> rvs_api::ServiceKey {
    if k.is_fwmark() {
        return rvs_api::ServiceKey::Fwmark {
            mark: k.fwmark,
            af: if k.addr.is_ipv6() {
                Family::Ipv6
            } else {
                Family::Ipv4
            },
        };
    }
    rvs_api::ServiceKey::addr(k.protocol, k.addr, k.port)
}

fn engine_dest(d: &DestSpec) -> Dest {
    Dest {
        addr: d.addr,
        port: d.port,
        weight: d.weight,
        method: d.method,
        upper_threshold: d.upper_threshold,
        lower_threshold: d.lower_threshold,
    }
}

fn api_dest(d: &Dest) -> DestSpec {
    DestSpec {
        addr: d.addr,
        port: d.port,
        weight: d.weight,
        method: d.method,
        upper_threshold: d.upper_threshold,
        lower_threshold: d.lower_threshold,
    }
}

fn api_stats(s: &Stats, r: Rates) -> rvs_api::Stats {
    rvs_api::Stats {
        conns: s.conns,
        in_packets: s.in_packets,
        out_packets: s.out_packets,
        in_bytes: s.in_bytes,
        out_bytes: s.out_bytes,
        cps: r.cps,
        in_pps: r.in_pps,
        out_pps: r.out_pps,
        in_bps: r.in_bps,
        out_bps: r.out_bps,
    }
}

/// The API handler: one lock around the director (commands are rare).
pub(crate) struct Handler(pub(crate) Mutex<Director>);

impl Handler {
    /// A health event from the monitor.
    pub(crate) fn on_health(&self, ev: &rvs_health::HealthEvent) {
        if let Ok(mut d) = self.0.lock() {
            d.on_health(ev);
        }
    }

    /// SIGHUP.
    pub(crate) fn reload(&self) {
        match self.0.lock() {
            Ok(mut d) => {
                if let Err(e) = d.reload() {
                    tracing::error!(error = %e, "reload refused");
                }
            }
            Err(_) => tracing::error!("reload: state lock poisoned"),
        }
    }

    /// Periodic estimator step (every 2 s).
    pub(crate) fn tick_rates(&self) {
        if let Ok(mut d) = self.0.lock() {
            d.tick_rates();
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

    fn connections(&self) -> Vec<ConnectionEntry> {
        let commands = match self.0.lock() {
            Ok(d) => d.commands(),
            Err(p) => p.into_inner().commands(),
        };
        connections(commands)
    }

    fn command(&self, cmd: Command) -> Result<(), ControlError> {
        let mut d = self
            .0
            .lock()
            .map_err(|_| ControlError::internal("state lock poisoned"))?;
        tracing::info!(?cmd, "control command");
        let r = d.command(cmd);
        if let Err(e) = &r {
            tracing::warn!(error = %e, "command refused");
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_engine::{FwmarkRule, Persistence};

    #[test]
    fn xdp_sets_cover_port_zero_services_and_fwmark_prefixes() {
        let mut cfg = Config::default();
        let mut port0 = Service::new(
            ServiceKey::new(Protocol::Tcp, "10.0.100.1".parse().unwrap(), 0),
            "rr",
        );
        port0.persistence = Some(Persistence {
            timeout: 60,
            prefix_len: 32,
        });
        cfg.services.push(port0);
        cfg.services
            .push(Service::new(ServiceKey::fwmark(7, false), "dh"));
        cfg.fwmarks.push(FwmarkRule {
            mark: 7,
            protocol: Some(Protocol::Tcp),
            addr: "10.0.100.32".parse().unwrap(),
            prefix_len: 30,
            ports: vec![80],
        });
        // A rule no service uses installs nothing.
        cfg.fwmarks.push(FwmarkRule {
            mark: 9,
            protocol: None,
            addr: "10.0.200.0".parse().unwrap(),
            prefix_len: 24,
            ports: vec![],
        });
        let s = XdpSets::of(&cfg);
        let a = |x: &str| -> IpAddr { x.parse().unwrap() };
        assert!(
            s.services.contains(&(a("10.0.100.1"), 6, 0)),
            "port 0 = every port"
        );
        for host in 32..36 {
            assert!(s
                .services
                .contains(&(a(&format!("10.0.100.{host}")), 6, 80)));
        }
        assert_eq!(s.services.len(), 1 + 4);
        assert_eq!(prefix_addrs(a("10.0.100.33"), 30).len(), 4);
        assert_eq!(prefix_addrs(a("10.0.0.0"), 8).len(), 4096, "capped");
    }
}
