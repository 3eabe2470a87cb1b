//! Health checks in the director: keepalived's semantics, built in.
//!
//! The operator's configuration (file + rvsadm changes) is the *base*; the
//! health state turns it into the *effective* configuration the engine runs:
//! failed real servers leave the pool (or drop to weight 0 with
//! inhibit_on_failure), misc_dynamic sets weights, and while a service's
//! quorum is lost its sorry server replaces the pool. Checks run in
//! `rvs_health::HealthMonitor` tasks, off the data path.

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
    policies: HashMap<ServiceKey, (ServicePolicy, Evaluation)>,
    names: HashMap<String, ServiceKey>,
    status: HashMap<(ServiceKey, SocketAddr), (bool, String)>,
}

fn server_addr(key: &ServiceKey, d: &Dest) -> SocketAddr {
    let port = if d.port == 0 { key.port } else { d.port };
    SocketAddr::new(d.addr, port)
}

impl Health {
    /// `monitor` is `None` when checks cannot run (no runtime, in tests).
    pub(crate) fn new(monitor: Option<HealthMonitor>) -> Self {
        Health {
            monitor,
            plan: HashMap::new(),
            policies: HashMap::new(),
            names: HashMap::new(),
            status: HashMap::new(),
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

    /// Every configured sorry server, by service: what
    /// [`with_sorry_servers`] needs of the plan, to use without `self`.
    pub(crate) fn sorry_servers(&self) -> SorryServers {
        self.plan
            .iter()
            .filter_map(|(k, h)| Some((*k, h.spec.sorry_server.clone()?)))
            .collect()
    }

    /// Re-derives policies and running checks from the base configuration
    /// (after a reload or an rvsadm change). Servers that stay keep their
    /// health and their running checks.
    pub(crate) fn reconcile(&mut self, base: &Config) -> Vec<QuorumCommand> {
        let mut commands = Vec::new();
        let mut checks = Vec::new();
        let mut policies = HashMap::new();
        self.names.clear();
        for svc in &base.services {
            let sh = self.plan.get(&svc.key).cloned().unwrap_or_default();
            let name = svc.key.to_string();
            self.names.insert(name.clone(), svc.key);
            let mut servers = Vec::new();
            for d in &svc.dests {
                let addr = server_addr(&svc.key, d);
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
                    self.status.entry((svc.key, addr)).or_insert_with(|| {
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
            let cfg = policy_config(&svc.key, &sh.spec);
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
            let (policy, eval) = match self.policies.remove(&svc.key) {
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
            policies.insert(svc.key, (policy, eval));
        }
        self.policies = policies;
        // Keep the state of checked servers that remain (a set, not a
        // search of the configuration per server: a large one is O(n²)).
        let remain: std::collections::HashSet<(ServiceKey, SocketAddr)> = if self.status.is_empty()
        {
            Default::default()
        } else {
            base.services
                .iter()
                .flat_map(|s| s.dests.iter().map(|d| (s.key, server_addr(&s.key, d))))
                .collect()
        };
        let plan = &self.plan;
        self.status.retain(|(k, a), _| {
            remain.contains(&(*k, *a))
                && plan
                    .get(k)
                    .and_then(|h| h.servers.get(a))
                    .is_some_and(|rs| !rs.check.is_empty())
        });
        if let Some(m) = &mut self.monitor {
            let s = m.update(checks);
            tracing::info!(
                started = s.started,
                restarted = s.restarted,
                stopped = s.stopped,
                unchanged = s.unchanged,
                "health checks reconciled"
            );
        }
        commands
    }

    /// Applies a check result; true when the effective pool may have changed.
    pub(crate) fn on_event(&mut self, ev: &HealthEvent) -> (bool, Vec<QuorumCommand>) {
        let Some(&key) = self.names.get(&ev.service) else {
            return (false, Vec::new());
        };
        if ev.up {
            tracing::info!(service = %key, server = %ev.server, weight = ?ev.weight, reason = %ev.reason, "real server UP");
        } else {
            tracing::warn!(service = %key, server = %ev.server, reason = %ev.reason, "real server DOWN");
        }
        self.status
            .insert((key, ev.server), (ev.up, ev.reason.clone()));
        let notify = self
            .plan
            .get(&key)
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
        let Some((policy, last)) = self.policies.get_mut(&key) else {
            return (false, Vec::new());
        };
        let e = policy.on_health(ev.server, ev.up, ev.weight);
        if let Some(t) = e.transition {
            tracing::warn!(service = %key, transition = ?t, live_weight = e.live_weight, sorry = e.sorry_active, "quorum changed");
        }
        let changed = e.pool != last.pool;
        let cmds = e.commands.clone();
        *last = e;
        (changed, cmds)
    }

    /// The base configuration with every service's pool as health allows.
    pub(crate) fn effective(&self, base: &Config) -> Config {
        let mut cfg = base.clone();
        for svc in &mut cfg.services {
            let Some((_, e)) = self.policies.get(&svc.key) else {
                continue;
            };
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
                    .find(|d| server_addr(&svc.key, d) == entry.addr)
                {
                    let mut d = d.clone();
                    d.weight = entry.weight;
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

    /// Each health-checked service's quorum and sorry-server state.
    pub(crate) fn quorum_states(&self) -> Vec<(ServiceKey, bool, bool)> {
        let mut v: Vec<_> = self
            .policies
            .iter()
            .map(|(k, (_, e))| (*k, e.quorum_up, e.sorry_active))
            .collect();
        v.sort_by_key(|(k, _, _)| *k);
        v
    }

    /// Every checked server's last known state.
    pub(crate) fn statuses(&self) -> Vec<ServerHealth> {
        let mut v: Vec<ServerHealth> = self
            .status
            .iter()
            .map(|((k, a), (up, reason))| ServerHealth {
                service: *k,
                server: *a,
                up: *up,
                reason: reason.clone(),
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
