//! The control plane's state: the configuration in force, the XDP maps
//! that must mirror it, and the worker's reports. Every change builds a new
//! engine configuration, validates it whole (a refused change alters
//! nothing), publishes it to the worker and then updates the XDP maps.
//!
//! Its rooms: [`edit`] applies a command to a configuration, [`convert`]
//! translates between the API's and the engine's types, [`listing`] answers
//! what rvsadm lists, [`reload`] re-reads the file, [`facts`] follows the
//! kernel's interfaces and routes.

mod convert;
mod edit;
mod facts;
mod listing;
mod reload;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rvs_api::{Command, ConnectionEntry, ControlError, ControlHandler, Entity, Listing};
use rvs_engine::{Config, ServiceKey, Snapshot, Steering};

use self::convert::{engine_key, refused};
use crate::estimator::Estimator;
use crate::health::{self, Health};
use crate::worker::{Plane, Shared, WorkerCommand};

pub(crate) use listing::connections;

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
    /// What the XDP maps hold.
    installed: Steering,
    shared: Arc<Shared>,
    service_rates: Estimator<ServiceKey>,
    dest_rates: Estimator<(ServiceKey, IpAddr, u16)>,
    /// Reload outcomes, for the metrics.
    reloads: crate::metrics::ReloadStats,
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
            installed: Steering::default(),
            shared,
            service_rates: Estimator::default(),
            dest_rates: Estimator::default(),
            reloads: Default::default(),
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
        let steering = snapshot.steering();
        self.shared.snapshot.store(snapshot);
        self.effective = effective;
        self.sync_xdp(steering).map_err(|e| {
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

    /// quorum_down commands for omega services, to run at shutdown.
    pub(crate) fn shutdown(&mut self) -> Vec<rvs_health::policy::QuorumCommand> {
        self.health.shutdown()
    }

    /// Makes the XDP maps steer `want` (services and VIPs, derived by the
    /// engine from the configuration it runs; the engine keeps the
    /// connection map itself).
    fn sync_xdp(&mut self, want: Steering) -> anyhow::Result<()> {
        let Some(plane) = &self.plane else {
            self.installed = want;
            return Ok(());
        };
        let mut dp = plane
            .datapath
            .lock()
            .map_err(|_| anyhow::anyhow!("datapath lock poisoned"))?;
        let have = &self.installed;
        for k in want.services.difference(&have.services) {
            dp.add_service(k.addr, k.protocol, k.port)?;
        }
        for &a in want.vips.difference(&have.vips) {
            dp.add_vip(a)?;
        }
        for k in have.services.difference(&want.services) {
            dp.remove_service(k.addr, k.protocol, k.port)?;
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
        match cmd {
            Command::Restore(cmds) => edit::restore(&mut next, cmds)?,
            cmd => edit::edit(&mut next, cmd)?,
        }
        self.apply(next)
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
