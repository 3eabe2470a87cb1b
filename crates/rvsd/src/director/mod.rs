//! The control plane's state: the configuration in force, the XDP maps
//! that must mirror it, and the worker's reports. Every change builds a new
//! engine configuration and validates it whole — including whether the XDP
//! maps can hold it — then brings the maps to it, all or nothing, and only
//! then publishes it to the worker: a refused change, or one the maps
//! refused, alters nothing.
//!
//! Its rooms: [`edit`] applies commands to a configuration, [`steering`]
//! updates the XDP maps, [`convert`] translates between the API's and the
//! engine's types, [`listing`] answers what rvsadm lists, [`reload`]
//! re-reads the file, [`facts`] follows the kernel's interfaces and routes.

mod convert;
mod edit;
mod facts;
mod listing;
mod reload;
mod steering;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use rvs_api::{Command, ConnectionEntry, ControlError, ControlHandler, Entity, Listing};
use rvs_engine::{Config, ServiceKey, Snapshot, Steering};

use self::convert::{engine_key, refused};
use crate::estimator::Estimator;
use crate::health::{self, Health, SorryServers};
use crate::worker::{Plane, Shared, WorkerCommand};

pub(crate) use listing::connections;
pub(crate) use steering::prefill as prefill_steering;

pub(crate) struct Director {
    /// The operator's configuration: the file plus rvsadm changes (shared,
    /// so a restore can be built from it without the lock).
    config: Arc<Config>,
    /// Counts the changes of `config`, for a restore built without the
    /// lock to see whether it still applies to what is in force.
    generation: u64,
    /// What the engine runs: `config` as health checks allow.
    effective: Config,
    health: Health,
    /// The configuration file, for reloads.
    file: Option<PathBuf>,
    /// rvsadm changed the configuration since the file was (re)loaded.
    diverged: bool,
    /// The datapath, if rvsd runs on interfaces.
    plane: Option<Plane>,
    /// What the XDP maps hold.
    installed: Steering,
    shared: Arc<Shared>,
    service_rates: Estimator<ServiceKey>,
    dest_rates: Estimator<(ServiceKey, IpAddr, u16)>,
    /// Reload outcomes, for the metrics.
    reloads: crate::metrics::ReloadStats,
    /// Connection-sync daemons (`--start-daemon`, `[[sync_daemon]]`).
    sync: crate::sync::Daemons,
    /// Runs the quorum commands in order.
    quorum: health::QuorumRunner,
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
            // Nothing is in force yet: every real server is new to it.
            effective: Config::default(),
            config: Arc::default(),
            generation: 0,
            health,
            file,
            diverged: false,
            plane,
            installed: Steering::default(),
            shared,
            service_rates: Estimator::default(),
            dest_rates: Estimator::default(),
            reloads: Default::default(),
            sync: Default::default(),
            quorum: Default::default(),
        };
        d.apply(config).map_err(|e| anyhow::anyhow!(e))?;
        Ok(d)
    }

    /// Validates the base configuration `config` (with every sorry server
    /// it may fall back to, and against what the XDP maps hold), brings the
    /// maps to it, then derives the effective one from health and publishes
    /// it. A refusal, or a map update that fails (and is undone), changes
    /// nothing.
    fn apply(&mut self, config: Config) -> Result<(), ControlError> {
        let checked = check(&config, &self.health.sorry_servers())?;
        self.apply_checked(config, &checked)
    }

    /// [`apply`](Self::apply) of a configuration [`check`] accepted with
    /// the sorry servers in force.
    fn apply_checked(&mut self, config: Config, checked: &Snapshot) -> Result<(), ControlError> {
        // Health changes real servers, never which services there are: the
        // effective configuration steers what this one does. The maps go
        // first, so a failure leaves everything as it was; a first packet
        // to a new service that reaches the worker before its snapshot
        // does is dropped and retransmitted.
        self.sync_xdp(checked.steering()).map_err(|e| {
            ControlError::internal(format!(
                "the XDP filter could not be updated, so nothing was applied: {e}"
            ))
        })?;
        let commands = self.health.reconcile(&config);
        self.config = Arc::new(config);
        self.generation += 1;
        self.quorum.run(commands);
        self.publish_effective()
    }

    fn publish_effective(&mut self) -> Result<(), ControlError> {
        let effective = self.health.effective(&self.config);
        // Health only narrows what `apply` validated with every sorry server.
        let snapshot = Snapshot::new(effective.clone()).map_err(|e| {
            ControlError::internal(format!("the configuration as health allows it: {e}"))
        })?;
        prime_neighbors(&self.effective, &effective);
        let steering = snapshot.steering();
        self.shared.snapshot.store(snapshot);
        self.effective = effective;
        // Normally nothing to do (`apply` did it); repairs the maps after
        // an update whose rollback failed.
        self.sync_xdp(steering).map_err(|e| {
            ControlError::internal(format!(
                "configuration applied, but the XDP filter could not be updated: {e}"
            ))
        })
    }

    /// A health check changed state.
    pub(crate) fn on_health(&mut self, ev: &rvs_health::HealthEvent) {
        let (changed, commands) = self.health.on_event(ev);
        self.quorum.run(commands);
        if changed {
            if let Err(e) = self.publish_effective() {
                tracing::error!(error = %e, "applying a health change");
            }
        }
    }

    /// Starts the configuration file's sync daemons (at start).
    pub(crate) fn start_sync(&mut self, daemons: &[rvs_vocab::SyncDaemon]) -> anyhow::Result<()> {
        let worker = self.commands();
        self.sync
            .reconcile(daemons, worker.as_ref())
            .map_err(|e| anyhow::anyhow!("[[sync_daemon]]: {e}"))
    }

    /// The XDP datapath, if the director has interfaces.
    pub(crate) fn datapath(&self) -> Option<Arc<Mutex<rvs_datapath::XdpDatapath>>> {
        self.plane.as_ref().map(|p| Arc::clone(&p.datapath))
    }

    /// quorum_down commands for omega services, to run at shutdown, and
    /// what resolves once the quorum commands still queued have run:
    /// omega's come after those.
    pub(crate) fn shutdown(
        &mut self,
    ) -> (
        Vec<rvs_health::policy::QuorumCommand>,
        Option<tokio::sync::oneshot::Receiver<()>>,
    ) {
        (self.health.shutdown(), self.quorum.drained())
    }

    /// Makes the XDP maps steer `want` (services and VIPs, derived by the
    /// engine from the configuration it runs; the engine keeps the
    /// connection map itself), all or nothing: on failure the maps are as
    /// they were.
    fn sync_xdp(&mut self, want: Steering) -> anyhow::Result<()> {
        let Some(plane) = &self.plane else {
            self.installed = want;
            return Ok(());
        };
        if want == self.installed {
            return Ok(());
        }
        let mut dp = plane
            .datapath
            .lock()
            .map_err(|_| anyhow::anyhow!("datapath lock poisoned"))?;
        let (now, result) = steering::update(&mut *dp, &self.installed, &want);
        drop(dp);
        self.installed = now;
        result
    }

    /// Applies one rvsadm command; the whole change or nothing.
    pub(crate) fn command(&mut self, cmd: Command) -> Result<(), ControlError> {
        if let Command::Reload = cmd {
            return self.reload().map(|_| ());
        }
        if let Command::StartDaemon(_) | Command::StopDaemon(_) = cmd {
            let worker = self.commands();
            let r = match cmd {
                Command::StartDaemon(d) => self.sync.start(d, worker.as_ref()),
                Command::StopDaemon(role) => self.sync.stop(role, worker.as_ref()),
                _ => unreachable!("matched above"),
            };
            if r.is_ok() {
                self.diverge();
            }
            return r;
        }
        let changes = !matches!(cmd, Command::ZeroCounters(_));
        let r = self.command_inner(cmd);
        if r.is_ok() && changes {
            self.diverge();
        }
        r
    }

    /// rvsadm changed the configuration: it now differs from the file.
    fn diverge(&mut self) {
        if let Some(f) = &self.file {
            if !self.diverged {
                tracing::warn!(file = %f.display(), "runtime change with rvsadm: the running configuration now differs from the file; it is lost at the next reload or restart unless written to the file");
            }
            self.diverged = true;
        }
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
            return self.zero(only);
        }
        let (next, zero) = match &cmd {
            Command::Restore(cmds) => edit::restore(&self.config, cmds)?,
            cmd => (edit::edit(&self.config, cmd)?, Vec::new()),
        };
        self.apply(next)?;
        zero.into_iter().try_for_each(|only| self.zero(only))
    }

    /// Zeroes the counters and rates of one service, or of all.
    fn zero(&mut self, only: Option<ServiceKey>) -> Result<(), ControlError> {
        if let Some(plane) = &self.plane {
            plane
                .commands
                .send(WorkerCommand::Zero(only))
                .map_err(|_| ControlError::internal("the worker has stopped"))?;
        }
        self.service_rates.retain(|k| only.is_some_and(|o| o != *k));
        self.dest_rates
            .retain(|(k, _, _)| only.is_some_and(|o| o != *k));
        Ok(())
    }

    /// Applies a restore built and checked from the configuration (and
    /// sorry servers) of `generation`, if that is still the one in force;
    /// `None` if it is not (the caller builds it again).
    fn apply_built(
        &mut self,
        generation: u64,
        built: Result<(Config, Arc<Snapshot>), ControlError>,
    ) -> Option<Result<(), ControlError>> {
        if generation != self.generation {
            return None;
        }
        let r = built.and_then(|(next, checked)| self.apply_checked(next, &checked));
        if r.is_ok() {
            self.diverge();
        }
        Some(r)
    }

    /// One 2-second estimator step over the workers' counters.
    pub(crate) fn tick_rates(&mut self) {
        let (svc, dests) = self.merged();
        self.service_rates.tick(svc.iter().map(|(k, s)| (*k, s)));
        self.dest_rates.tick(dests.iter().map(|(k, v)| (*k, &v.2)));
    }

    /// The worker's command channel, to wait on it without the state lock.
    pub(crate) fn commands(&self) -> Option<std::sync::mpsc::Sender<WorkerCommand>> {
        self.plane.as_ref().map(|p| p.commands.clone())
    }
}

/// Validates `config` whole, as health may run it (with every sorry server
/// it may fall back to), and against what the XDP maps hold.
fn check(config: &Config, sorry: &SorryServers) -> Result<Arc<Snapshot>, ControlError> {
    Snapshot::new(health::with_sorry_servers(config, sorry)).map_err(refused)
}

/// Asks the kernel to resolve every real server (and gateway) `next` has
/// and `previous` had not, so the first SYN to a new server does not wait
/// for ARP (it would be dropped and retransmitted). On a thread of its own:
/// each is a netlink round trip, and a large restore must not hold the
/// director's lock for them.
fn prime_neighbors(previous: &Config, next: &Config) {
    let known: HashSet<IpAddr> = addresses(previous).collect();
    let mut fresh: Vec<IpAddr> = addresses(next).filter(|a| !known.contains(a)).collect();
    fresh.sort_unstable();
    fresh.dedup();
    if fresh.is_empty() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("rvs-prime".into())
        .spawn(move || {
            for a in fresh {
                crate::kernel::trigger_resolution(a);
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start resolving new real servers ahead; they are resolved at their first packet");
    }
}

/// The gateways and real servers of `config`.
fn addresses(config: &Config) -> impl Iterator<Item = IpAddr> + '_ {
    let gateways = config.routes.iter().filter_map(|r| r.gateway);
    let servers = config
        .services
        .iter()
        .flat_map(|s| s.dests.iter().map(|d| d.addr));
    gateways.chain(servers)
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

    fn lock(&self) -> Result<MutexGuard<'_, Director>, ControlError> {
        self.0
            .lock()
            .map_err(|_| ControlError::internal("state lock poisoned"))
    }

    /// `ipvsadm -R`: built, checked command by command and then whole,
    /// without the lock, from the configuration in force when it started
    /// (a large one takes a while, and listings and other commands need not
    /// wait for it); then, under the lock, applied if that configuration is
    /// still in force — else built again under the lock.
    fn restore(&self, cmds: Vec<Command>) -> Result<(), ControlError> {
        let (base, generation, sorry) = {
            let d = self.lock()?;
            (
                Arc::clone(&d.config),
                d.generation,
                d.health.sorry_servers(),
            )
        };
        let (built, zero) = match edit::restore(&base, &cmds) {
            Ok((next, zero)) => (check(&next, &sorry).map(|checked| (next, checked)), zero),
            Err(e) => (Err(e), Vec::new()),
        };
        drop(base);
        let mut d = self.lock()?;
        match d.apply_built(generation, built) {
            // `-Z` lines zero once the whole restore is in force.
            Some(Ok(())) => zero.into_iter().try_for_each(|only| d.zero(only)),
            Some(Err(e)) => Err(e),
            None => d.command(Command::Restore(cmds)),
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
        let r = match cmd {
            // One short line, not the whole rule file.
            Command::Restore(cmds) => {
                tracing::info!(commands = cmds.len(), "control command: restore");
                self.restore(cmds)
            }
            cmd => {
                tracing::info!(?cmd, "control command");
                self.lock()?.command(cmd)
            }
        };
        if let Err(e) = &r {
            tracing::warn!(error = %e, "command refused");
        }
        r
    }
}
