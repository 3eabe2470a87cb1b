//! Health checks in the director: keepalived's semantics, built in.
//!
//! The operator's configuration (file + rvsadm changes) is the *base*; the
//! health state turns it into the *effective* configuration the engine runs:
//! failed real servers leave the pool (or drop to weight 0 with
//! inhibit_on_failure), misc_dynamic sets weights, and while a service's
//! quorum is lost its sorry server replaces the pool. Checks run in
//! `rvs_health::HealthMonitor` tasks, off the data path.
//!
//! Health and quorum belong to a [`Unit`]: a service, or a service group
//! (keepalived's `virtual_server_group`), whose member services share one
//! check per real server and one quorum state, as keepalived runs a group
//! as one virtual server: a real server's result applies to it in every
//! member, quorum_up/quorum_down run once for the group, and its sorry
//! server stands in for every member.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use rvs_engine::{Config, Dest, ServiceKey};
use rvs_health::policy::{
    Evaluation, PolicyConfig, PolicyServer, QuorumCommand, ServicePolicy, SorryServer,
};
use rvs_health::spec::{RealServerHealthSpec, ServiceHealthSpec};
use rvs_health::{HealthEvent, HealthMonitor, ServerChecks};

/// Health configuration of one service, from the file.
#[derive(Clone, Debug, Default)]
pub(crate) struct ServiceHealth {
    pub(crate) spec: ServiceHealthSpec,
    /// Per real server (address, port) its checks and override.
    pub(crate) servers: HashMap<SocketAddr, RealServerHealthSpec>,
    /// The service group it is a member of (every member has the same
    /// `spec` and `servers`): its health and quorum are the group's.
    pub(crate) group: Option<String>,
    /// A group member's real servers (address, port in this member) →
    /// the one the group checks, where they differ (a DR member's port).
    pub(crate) checked_as: HashMap<SocketAddr, SocketAddr>,
}

/// What one health state per real server and one quorum state belong to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Unit {
    /// A service on its own.
    Service(ServiceKey),
    /// A service group, by name.
    Group(String),
}

impl Unit {
    /// How checks and logs name it.
    fn name(&self) -> String {
        match self {
            Unit::Service(k) => k.to_string(),
            Unit::Group(g) => format!("group {g}"),
        }
    }
}

/// All services' health configuration.
pub(crate) type HealthPlan = HashMap<ServiceKey, ServiceHealth>;

/// The sorry server of each service that has one.
pub(crate) type SorryServers = HashMap<ServiceKey, rvs_health::spec::SorryServerSpec>;

/// `base` with every sorry server of `sorry` added to its service (unless
/// it is one of its real servers already).
pub(crate) fn with_sorry_servers(base: &Config, sorry: &SorryServers) -> Config {
    let mut cfg = base.clone();
    if sorry.is_empty() {
        return cfg;
    }
    for svc in &mut cfg.services {
        let Some(s) = sorry.get(&svc.key) else {
            continue;
        };
        let port = s.port.unwrap_or(svc.key.port);
        if !svc
            .dests
            .iter()
            .any(|d| d.addr == s.address && d.port == port)
        {
            svc.dests.push(sorry_dest(s, port));
        }
    }
    cfg
}

/// The current health state of a real server, for the API.
#[derive(Clone, Debug)]
pub(crate) struct ServerHealth {
    pub(crate) service: ServiceKey,
    pub(crate) server: SocketAddr,
    pub(crate) up: bool,
    pub(crate) reason: String,
}

pub(crate) struct Health {
    monitor: Option<HealthMonitor>,
    plan: HealthPlan,
    policies: HashMap<Unit, (ServicePolicy, Evaluation)>,
    /// Each unit by the name its checks report under.
    names: HashMap<String, Unit>,
    /// Each unit's services, in configuration order.
    members: HashMap<Unit, Vec<ServiceKey>>,
    /// Each service's unit.
    units: HashMap<ServiceKey, Unit>,
    status: HashMap<(Unit, SocketAddr), (bool, String)>,
    /// Each unit's real servers with the weight health started from (a
    /// group's: that in its first member having the server).
    configured: HashMap<Unit, HashMap<SocketAddr, u32>>,
    /// One per (unit, real server) with checks: the check loops running.
    check_loops: usize,
}

fn server_addr(key: &ServiceKey, d: &Dest) -> SocketAddr {
    let port = if d.port == 0 { key.port } else { d.port };
    SocketAddr::new(d.addr, port)
}

/// The real server `d` of service `key` as its health is known: itself,
/// or in a group member the group's server it is.
fn checked_server(plan: &HealthPlan, key: &ServiceKey, d: &Dest) -> SocketAddr {
    let addr = server_addr(key, d);
    plan.get(key)
        .and_then(|h| h.checked_as.get(&addr))
        .copied()
        .unwrap_or(addr)
}

impl Health {
    /// `monitor` is `None` when checks cannot run (no runtime, in tests).
    pub(crate) fn new(monitor: Option<HealthMonitor>) -> Self {
        Health {
            monitor,
            plan: HashMap::new(),
            policies: HashMap::new(),
            names: HashMap::new(),
            members: HashMap::new(),
            units: HashMap::new(),
            status: HashMap::new(),
            configured: HashMap::new(),
            check_loops: 0,
        }
    }

    /// Replaces the plan (file reload), returning the previous one.
    pub(crate) fn replace_plan(&mut self, plan: HealthPlan) -> HealthPlan {
        std::mem::replace(&mut self.plan, plan)
    }

    /// `base` with every configured sorry server added to its service, so a
    /// configuration is validated against every pool health may produce.
    pub(crate) fn with_sorry_servers(&self, base: &Config) -> Config {
        with_sorry_servers(base, &self.sorry_servers())
    }

    /// The unit `key`'s health belongs to, as the plan says.
    fn unit_of(&self, key: ServiceKey) -> Unit {
        match self.plan.get(&key).and_then(|h| h.group.clone()) {
            Some(g) => Unit::Group(g),
            None => Unit::Service(key),
        }
    }

    /// The service group `key` is a member of, if any.
    pub(crate) fn group_of(&self, key: &ServiceKey) -> Option<String> {
        self.plan.get(key).and_then(|h| h.group.clone())
    }

    /// How many check loops run: one per real server with checks of each
    /// service and group, never one per group member.
    pub(crate) fn check_loops(&self) -> usize {
        self.check_loops
    }

    /// Every configured sorry server, by service (each group member has
    /// its group's): what [`with_sorry_servers`] needs of the plan, to use
    /// without `self`.
    pub(crate) fn sorry_servers(&self) -> SorryServers {
        self.plan
            .iter()
            .filter_map(|(k, h)| Some((*k, h.spec.sorry_server.clone()?)))
            .collect()
    }

    /// Re-derives policies and running checks from the base configuration
    /// (after a reload or an rvsadm change). Servers that stay keep their
    /// health and their running checks. A group's real servers are those
    /// of all its members (one check each, whatever the members).
    pub(crate) fn reconcile(&mut self, base: &Config) -> Vec<QuorumCommand> {
        let mut commands = Vec::new();
        let mut checks = Vec::new();
        let mut policies = HashMap::new();
        let mut members: HashMap<Unit, Vec<&rvs_engine::Service>> = HashMap::new();
        let mut order = Vec::new();
        for svc in &base.services {
            let unit = self.unit_of(svc.key);
            members
                .entry(unit.clone())
                .or_insert_with(|| {
                    order.push(unit);
                    Vec::new()
                })
                .push(svc);
        }
        self.names.clear();
        self.units.clear();
        self.members.clear();
        self.configured.clear();
        for unit in order {
            let services = &members[&unit];
            let first = services[0].key;
            let sh = self.plan.get(&first).cloned().unwrap_or_default();
            let name = unit.name();
            self.names.insert(name.clone(), unit.clone());
            for s in services {
                self.units.insert(s.key, unit.clone());
            }
            self.members
                .insert(unit.clone(), services.iter().map(|s| s.key).collect());
            let mut servers: Vec<PolicyServer> = Vec::new();
            for (key, d) in services
                .iter()
                .flat_map(|s| s.dests.iter().map(|d| (s.key, d)))
            {
                let addr = checked_server(&self.plan, &key, d);
                if servers.iter().any(|s| s.addr == addr) {
                    // The same real server in another member: one check.
                    continue;
                }
                let rs = sh.servers.get(&addr).cloned().unwrap_or_default();
                servers.push(PolicyServer {
                    addr,
                    weight: d.weight,
                    inhibit_on_failure: rs.inhibit_on_failure(&sh.spec),
                    checked: !rs.check.is_empty(),
                });
                if !rs.check.is_empty() {
                    // Known from the start: up, or down with alpha, until
                    // a check says otherwise (the monitor reports changes only).
                    self.status.entry((unit.clone(), addr)).or_insert_with(|| {
                        if sh.spec.alpha {
                            (false, "alpha: down until a check passes".to_string())
                        } else {
                            (true, "no check has failed yet".to_string())
                        }
                    });
                    checks.push(ServerChecks {
                        service: name.clone(),
                        server: addr,
                        alpha: sh.spec.alpha,
                        checks: rs
                            .check
                            .iter()
                            .map(|c| {
                                c.resolve(addr, sh.spec.delay_loop)
                                    .with_server_weight(d.weight)
                            })
                            .collect(),
                    });
                }
            }
            self.configured.insert(
                unit.clone(),
                servers.iter().map(|s| (s.addr, s.weight)).collect(),
            );
            let cfg = policy_config(&first, &sh.spec);
            let (quorum, hysteresis) = rvs_health::policy::effective_quorum(&cfg, &servers);
            if (quorum, hysteresis) != (cfg.quorum, cfg.hysteresis) {
                tracing::warn!(
                    service = %name,
                    configured_quorum = cfg.quorum,
                    configured_hysteresis = cfg.hysteresis,
                    quorum,
                    hysteresis,
                    "quorum above the real servers' total weight, or hysteresis not below quorum: \
                     clamped as keepalived does"
                );
            }
            let (policy, eval) = match self.policies.remove(&unit) {
                Some((mut p, _)) => {
                    let e = p.reconfigure(cfg, servers);
                    (p, e)
                }
                None => {
                    let mut p = ServicePolicy::new(cfg, servers);
                    let e = p.evaluate();
                    (p, e)
                }
            };
            commands.extend(eval.commands.iter().cloned());
            policies.insert(unit, (policy, eval));
        }
        self.policies = policies;
        // Keep the state of checked servers that remain (a set, not a
        // search of the configuration per server: a large one is O(n²)).
        let remain: std::collections::HashSet<(&Unit, SocketAddr)> = if self.status.is_empty() {
            Default::default()
        } else {
            base.services
                .iter()
                .flat_map(|s| {
                    let unit = &self.units[&s.key];
                    let plan = &self.plan;
                    s.dests
                        .iter()
                        .map(move |d| (unit, checked_server(plan, &s.key, d)))
                })
                .collect()
        };
        let checked: std::collections::HashSet<(Unit, SocketAddr)> = self
            .status
            .keys()
            .filter(|(u, a)| {
                remain.contains(&(u, *a))
                    && self
                        .members
                        .get(u)
                        .and_then(|m| m.first())
                        .is_some_and(|k| {
                            self.plan
                                .get(k)
                                .and_then(|h| h.servers.get(a))
                                .is_some_and(|rs| !rs.check.is_empty())
                        })
            })
            .cloned()
            .collect();
        drop(remain);
        self.status.retain(|k, _| checked.contains(k));
        self.check_loops = checks.len();
        if let Some(m) = &mut self.monitor {
            let s = m.update(checks);
            tracing::info!(
                started = s.started,
                restarted = s.restarted,
                stopped = s.stopped,
                unchanged = s.unchanged,
                check_loops = self.check_loops,
                "health checks reconciled"
            );
        }
        commands
    }

    /// Applies a check result; true when the effective pool may have changed.
    pub(crate) fn on_event(&mut self, ev: &HealthEvent) -> (bool, Vec<QuorumCommand>) {
        let Some(unit) = self.names.get(&ev.service).cloned() else {
            return (false, Vec::new());
        };
        let name = &ev.service;
        if ev.up {
            tracing::info!(service = %name, server = %ev.server, weight = ?ev.weight, reason = %ev.reason, "real server UP");
        } else {
            tracing::warn!(service = %name, server = %ev.server, reason = %ev.reason, "real server DOWN");
        }
        self.status
            .insert((unit.clone(), ev.server), (ev.up, ev.reason.clone()));
        let notify = self
            .members
            .get(&unit)
            .and_then(|m| m.first())
            .and_then(|k| self.plan.get(k))
            .and_then(|h| h.servers.get(&ev.server))
            .and_then(|rs| {
                if ev.up {
                    rs.notify_up.clone()
                } else {
                    rs.notify_down.clone()
                }
            });
        if let Some(command) = notify {
            run_notify(command, ev.server, ev.up);
        }
        let Some((policy, last)) = self.policies.get_mut(&unit) else {
            return (false, Vec::new());
        };
        let e = policy.on_health(ev.server, ev.up, ev.weight);
        if let Some(t) = e.transition {
            tracing::warn!(service = %name, transition = ?t, live_weight = e.live_weight, sorry = e.sorry_active, "quorum changed");
        }
        let changed = e.pool != last.pool;
        let cmds = e.commands.clone();
        *last = e;
        (changed, cmds)
    }

    /// The base configuration with every service's pool as health allows
    /// (a group member's as its group's health allows).
    pub(crate) fn effective(&self, base: &Config) -> Config {
        let mut cfg = base.clone();
        for svc in &mut cfg.services {
            let Some((unit, (_, e))) = self
                .units
                .get(&svc.key)
                .and_then(|u| Some((u, self.policies.get(u)?)))
            else {
                continue;
            };
            let configured = self.configured.get(unit);
            let spec = self
                .plan
                .get(&svc.key)
                .map(|h| h.spec.clone())
                .unwrap_or_default();
            let mut dests = Vec::with_capacity(e.pool.len());
            for entry in &e.pool {
                if entry.sorry {
                    let Some(s) = &spec.sorry_server else {
                        continue;
                    };
                    let mut d = sorry_dest(s, s.port.unwrap_or(svc.key.port));
                    d.weight = entry.weight.max(1);
                    dests.push(d);
                } else if let Some(d) = svc
                    .dests
                    .iter()
                    .find(|d| checked_server(&self.plan, &svc.key, d) == entry.addr)
                {
                    let mut d = d.clone();
                    // Health's weight, unless it is the configured one: a
                    // group member keeps its own then (an rvsadm edit of
                    // one member's weight holds, as in the kernel).
                    let unchanged = configured
                        .and_then(|c| c.get(&entry.addr))
                        .is_some_and(|w| *w == entry.weight);
                    if !unchanged {
                        d.weight = entry.weight;
                    }
                    dests.push(d);
                }
            }
            svc.dests = dests;
        }
        cfg
    }

    /// Commands to run when rvsd stops (omega).
    pub(crate) fn shutdown(&mut self) -> Vec<QuorumCommand> {
        if let Some(m) = &mut self.monitor {
            m.shutdown();
        }
        self.policies
            .values()
            .flat_map(|(p, _)| p.shutdown())
            .collect()
    }

    /// Each health-checked service's quorum and sorry-server state (a
    /// group member's is its group's).
    pub(crate) fn quorum_states(&self) -> Vec<(ServiceKey, bool, bool)> {
        let mut v: Vec<_> = self
            .units
            .iter()
            .filter_map(|(k, u)| {
                let (_, e) = self.policies.get(u)?;
                Some((*k, e.quorum_up, e.sorry_active))
            })
            .collect();
        v.sort_by_key(|(k, _, _)| *k);
        v
    }

    /// Every checked server's last known state, in each service it is in
    /// (a group's in each of its members).
    pub(crate) fn statuses(&self) -> Vec<ServerHealth> {
        let mut v: Vec<ServerHealth> = self
            .status
            .iter()
            .flat_map(|((u, a), (up, reason))| {
                self.members
                    .get(u)
                    .into_iter()
                    .flatten()
                    .map(move |k| ServerHealth {
                        service: *k,
                        // As the member has it.
                        server: self
                            .plan
                            .get(k)
                            .and_then(|h| h.checked_as.iter().find(|(_, c)| *c == a))
                            .map_or(*a, |(own, _)| *own),
                        up: *up,
                        reason: reason.clone(),
                    })
            })
            .collect();
        v.sort_by_key(|h| (h.service, h.server));
        v
    }
}

fn sorry_dest(s: &rvs_health::spec::SorryServerSpec, port: u16) -> Dest {
    Dest {
        addr: s.address,
        port,
        weight: 1,
        method: s.method,
        tunnel: rvs_engine::Tunnel::Ipip,
        upper_threshold: 0,
        lower_threshold: 0,
    }
}

fn policy_config(key: &ServiceKey, spec: &ServiceHealthSpec) -> PolicyConfig {
    PolicyConfig {
        quorum: spec.quorum,
        hysteresis: spec.hysteresis,
        alpha: spec.alpha,
        omega: spec.omega,
        quorum_up: spec.quorum_up.clone(),
        quorum_down: spec.quorum_down.clone(),
        sorry_server: spec.sorry_server.as_ref().map(|s| SorryServer {
            addr: SocketAddr::new(s.address, s.port.unwrap_or(key.port)),
            weight: 1,
        }),
    }
}

/// Runs a real server's notify_up / notify_down in the background, as
/// scripts run (the script runner when installed), bounded like quorum
/// commands.
fn run_notify(command: String, server: SocketAddr, up: bool) {
    tokio::spawn(async move {
        let which = if up { "notify_up" } else { "notify_down" };
        tracing::info!(%command, %server, which, "running real server notify command");
        match rvs_health::run_command(&command, Duration::from_secs(30)).await {
            Ok(0) => {}
            Ok(code) => tracing::warn!(%command, %server, code, "{which} command failed"),
            Err(e) => {
                tracing::warn!(%command, %server, error = %e, "{which} command could not run")
            }
        }
    });
}

/// Runs quorum_up / quorum_down commands in the background, one at a time
/// in the order quorum changed: a `quorum_down` queued before a
/// `quorum_up` must not finish after it (a BGP announcement switched by
/// them would end withdrawn while quorum is up).
#[derive(Debug, Default)]
pub(crate) struct QuorumRunner {
    /// To the task that runs them, started with the first command.
    queue: Option<tokio::sync::mpsc::UnboundedSender<Queued>>,
}

/// What the runner's task is given.
#[derive(Debug)]
enum Queued {
    Run(QuorumCommand),
    /// Answered once everything queued before it has run.
    Drained(tokio::sync::oneshot::Sender<()>),
}

impl QuorumRunner {
    /// Queues `cmds` behind those still running; needs a tokio runtime.
    pub(crate) fn run(&mut self, cmds: Vec<QuorumCommand>) {
        if cmds.is_empty() {
            return;
        }
        let queue = self.queue.get_or_insert_with(|| {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Queued>();
            tokio::spawn(async move {
                while let Some(q) = rx.recv().await {
                    match q {
                        Queued::Run(c) => run_command(c).await,
                        Queued::Drained(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            });
            tx
        });
        for c in cmds {
            if let Err(e) = queue.send(Queued::Run(c)) {
                // The task is gone only when the runtime shuts down.
                if let Queued::Run(c) = e.0 {
                    tracing::warn!(command = %c.command, "quorum command not run: rvsd is stopping");
                }
            }
        }
    }

    /// Resolves once the commands queued so far have run (at once if
    /// none were), so omega's quorum_down at stop comes after them: a
    /// quorum_up still running must not announce after it.
    pub(crate) fn drained(&self) -> Option<tokio::sync::oneshot::Receiver<()>> {
        let queue = self.queue.as_ref()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        queue.send(Queued::Drained(tx)).ok()?;
        Some(rx)
    }
}

async fn run_command(c: QuorumCommand) {
    tracing::info!(command = %c.command, transition = ?c.transition, "running quorum command");
    match rvs_health::run_command(&c.command, Duration::from_secs(30)).await {
        Ok(0) => {}
        Ok(code) => tracing::warn!(command = %c.command, code, "quorum command failed"),
        Err(e) => {
            tracing::warn!(command = %c.command, error = %e, "quorum command could not run")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_health::policy::QuorumTransition;

    /// A group of three members (two ports of one VIP and a second VIP)
    /// with two checked real servers, quorum 2, and the same written as
    /// three services.
    const GROUP: &str = r#"
[[service]]
group = "web"
scheduler = "rr"
quorum = 2
quorum_up = "/bin/true up"
quorum_down = "/bin/true down"
  [[service.member]]
  protocol = "tcp"
  address = "10.0.100.1"
  port = 80
  [[service.member]]
  protocol = "tcp"
  address = "10.0.100.1"
  port = 443
  [[service.member]]
  protocol = "tcp"
  address = "10.0.100.2"
  port = 80
  [[service.real_server]]
  address = "10.0.2.11"
  port = 80
    [[service.real_server.check]]
    type = "tcp"
  [[service.real_server]]
  address = "10.0.2.12"
  port = 80
    [[service.real_server.check]]
    type = "tcp"
"#;

    fn health_of(text: &str) -> (Health, Config) {
        let file = rvs_vocab::schema::Config::parse(text).unwrap();
        let (config, plan, _) =
            crate::config::engine_config(&file, text, |_| unreachable!("no interfaces"))
                .unwrap_or_else(|e| panic!("{e:?}"));
        let mut health = Health::new(None);
        health.replace_plan(plan);
        (health, config)
    }

    fn event(service: &str, server: &str, up: bool) -> HealthEvent {
        HealthEvent {
            service: service.into(),
            server: server.parse().unwrap(),
            up,
            weight: None,
            reason: "test".into(),
        }
    }

    /// The servers each service has in the effective configuration.
    fn pools(health: &Health, base: &Config) -> Vec<(String, Vec<String>)> {
        health
            .effective(base)
            .services
            .iter()
            .map(|s| {
                let d = s.dests.iter().map(|d| format!("{}:{}", d.addr, d.port));
                (s.key.to_string(), d.collect())
            })
            .collect()
    }

    #[test]
    fn a_group_checks_each_real_server_once_and_has_one_quorum() {
        let (mut health, base) = health_of(GROUP);
        assert_eq!(base.services.len(), 3, "one engine service per member");
        assert!(health.reconcile(&base).is_empty(), "starts with quorum up");
        assert_eq!(health.check_loops(), 2, "one check per real server");

        // One server down: gone from every member, quorum (2) lost once.
        let (changed, commands) = health.on_event(&event("group web", "10.0.2.11:80", false));
        assert!(changed);
        assert_eq!(
            commands,
            vec![QuorumCommand {
                transition: QuorumTransition::Down,
                command: "/bin/true down".into()
            }]
        );
        // DR: each member's real servers take its port.
        for (svc, pool) in pools(&health, &base) {
            let port = &svc[svc.rfind(':').unwrap() + 1..];
            assert_eq!(pool, [format!("10.0.2.12:{port}")], "{svc}");
        }
        let down: Vec<_> = health
            .statuses()
            .into_iter()
            .filter(|h| !h.up)
            .map(|h| format!("{} {}", h.service, h.server))
            .collect();
        assert_eq!(
            down,
            [
                "TCP 10.0.100.1:80 10.0.2.11:80",
                "TCP 10.0.100.1:443 10.0.2.11:443",
                "TCP 10.0.100.2:80 10.0.2.11:80"
            ],
            "reported down in each member, as the member has it"
        );
        assert!(health.quorum_states().iter().all(|(_, up, _)| !up));

        // Back up: quorum_up runs once for the group.
        let (_, commands) = health.on_event(&event("group web", "10.0.2.11:80", true));
        assert_eq!(commands.len(), 1, "{commands:?}");
        assert_eq!(commands[0].transition, QuorumTransition::Up);
        for (svc, pool) in pools(&health, &base) {
            let port = &svc[svc.rfind(':').unwrap() + 1..];
            assert_eq!(
                pool,
                [format!("10.0.2.11:{port}"), format!("10.0.2.12:{port}")],
                "{svc}"
            );
        }
        // Stopping with omega would run quorum_down once too.
        assert!(health.shutdown().is_empty(), "no omega");
    }

    /// A reload that adds a member keeps the group's health and quorum:
    /// the new member starts without the failed server, and nothing runs.
    #[test]
    fn a_member_added_by_a_reload_takes_the_group_s_health() {
        let (mut health, base) = health_of(GROUP);
        health.reconcile(&base);
        let (_, commands) = health.on_event(&event("group web", "10.0.2.11:80", false));
        assert_eq!(commands.len(), 1, "quorum lost");
        let more = GROUP.replace(
            "  [[service.real_server]]\n  address = \"10.0.2.11\"",
            "  [[service.member]]\n  fwmark = 9\n  [[service.real_server]]\n  address = \"10.0.2.11\"",
        );
        let file = rvs_vocab::schema::Config::parse(&more).unwrap();
        let (next, plan, _) =
            crate::config::engine_config(&file, &more, |_| unreachable!()).unwrap();
        assert_eq!(next.services.len(), 4);
        health.replace_plan(plan);
        assert!(health.reconcile(&next).is_empty(), "no quorum change");
        assert_eq!(health.check_loops(), 2);
        let pools = pools(&health, &next);
        assert_eq!(
            pools[3],
            ("FWM 9".to_string(), vec!["10.0.2.12:0".to_string()])
        );
        assert!(health.quorum_states().iter().all(|(_, up, _)| !up));
    }

    /// An rvsadm edit of one member's weight holds while health leaves the
    /// server alone; health's weight 0 (inhibit) reaches every member.
    #[test]
    fn a_member_keeps_its_own_weight_until_health_changes_it() {
        let text = GROUP.replace("quorum = 2\n", "quorum = 1\ninhibit_on_failure = true\n");
        let (mut health, mut base) = health_of(&text);
        base.services[1].dests[0].weight = 5;
        health.reconcile(&base);
        let weights = |health: &Health| -> Vec<Vec<u32>> {
            health
                .effective(&base)
                .services
                .iter()
                .map(|s| s.dests.iter().map(|d| d.weight).collect())
                .collect()
        };
        assert_eq!(weights(&health), [[1, 1], [5, 1], [1, 1]]);
        health.on_event(&event("group web", "10.0.2.11:80", false));
        assert_eq!(weights(&health), [[0, 1], [0, 1], [0, 1]]);
        health.on_event(&event("group web", "10.0.2.11:80", true));
        assert_eq!(weights(&health), [[1, 1], [5, 1], [1, 1]]);
    }

    #[test]
    fn the_same_services_written_apart_check_and_vote_apart() {
        // What a group replaces: each service its own checks and quorum.
        let text = GROUP
            .replace("group = \"web\"\n", "")
            .replace("[[service.member]]", "[[service]]");
        // Three services, each with the group's keys and real servers.
        let mut apart = String::new();
        let body: Vec<&str> = text.split("[[service]]").collect();
        let keys = body[1];
        let servers = &body[4][body[4].find("[[service.real_server]]").unwrap()..];
        for member in &body[2..5] {
            let member = member.split("[[service.real_server]]").next().unwrap();
            apart.push_str(&format!("[[service]]{member}{keys}{servers}"));
        }
        let (mut health, base) = health_of(&apart);
        health.reconcile(&base);
        assert_eq!(health.check_loops(), 6, "{apart}");
        let mut downs = 0;
        for svc in &base.services {
            let (_, c) = health.on_event(&event(&svc.key.to_string(), "10.0.2.11:80", false));
            downs += c.len();
        }
        assert_eq!(downs, 3);
    }

    #[test]
    fn a_group_s_sorry_server_stands_in_for_every_member() {
        let text = GROUP.replace(
            "quorum_down = \"/bin/true down\"\n",
            "quorum_down = \"/bin/true down\"\ninhibit_on_failure = true\n[service.sorry_server]\naddress = \"10.0.2.99\"\n",
        );
        let (mut health, base) = health_of(&text);
        health.reconcile(&base);
        health.on_event(&event("group web", "10.0.2.11:80", false));
        for (svc, pool) in pools(&health, &base) {
            let port = &svc[svc.rfind(':').unwrap() + 1..];
            assert_eq!(
                pool,
                [format!("10.0.2.11:{port}"), format!("10.0.2.99:{port}")],
                "{svc}: inhibited server kept at weight 0, sorry server on the member's port"
            );
        }
        let sorry = health.with_sorry_servers(&base);
        assert!(sorry.services.iter().all(|s| s.dests.len() == 3));
    }

    /// A slow quorum_down queued before a quick quorum_up still finishes
    /// first: the order quorum changed in is the order the world sees.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn quorum_commands_run_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let cmd = |transition, delay: &str, word: &str| QuorumCommand {
            transition,
            command: format!(
                "/bin/sh -c 'sleep {delay}; echo {word} >> {}'",
                log.display()
            ),
        };
        let mut runner = QuorumRunner::default();
        runner.run(vec![cmd(QuorumTransition::Down, "0.3", "down")]);
        runner.run(vec![cmd(QuorumTransition::Up, "0", "up")]);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.lines().count() == 2 {
                assert_eq!(text, "down\nup\n");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "ran: {text:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What stopping waits for: a quorum_up still running has finished
    /// before omega's quorum_down runs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn drained_resolves_after_the_queued_commands() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let mut runner = QuorumRunner::default();
        assert!(
            runner.drained().is_none(),
            "nothing queued, nothing to wait for"
        );
        runner.run(vec![QuorumCommand {
            transition: QuorumTransition::Up,
            command: format!("/bin/sh -c 'sleep 0.3; echo up >> {}'", log.display()),
        }]);
        let drained = runner.drained().expect("a queue");
        tokio::time::timeout(Duration::from_secs(10), drained)
            .await
            .expect("drained in time")
            .expect("answered");
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "up\n");
    }
}
