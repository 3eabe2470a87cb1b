//! Reload: the configuration file re-read and applied whole (SIGHUP, the
//! API's `reload`).

use rvs_api::ControlError;

use super::Director;
use crate::config;

impl Director {
    /// Re-reads the configuration file and applies it whole; any error
    /// changes nothing. Counters of unchanged services and established
    /// connections are kept (the engine drains removed servers). The
    /// outcome is counted for the metrics.
    pub(crate) fn reload(&mut self) -> Result<String, ControlError> {
        crate::notify::reloading();
        let outcome = self.reload_file();
        self.reloads.record(outcome.is_ok());
        crate::notify::reloaded(&match &outcome {
            Ok(applied) => applied.clone(),
            Err(e) => format!("last reload refused, nothing applied: {e}"),
        });
        outcome
    }

    fn reload_file(&mut self) -> Result<String, ControlError> {
        let path = self.file.clone().ok_or_else(|| {
            ControlError::bad_request(
                "rvsd was started without --config: there is no file to reload",
            )
        })?;
        let bad = ControlError::bad_request;
        let (file, text) = config::load(&path).map_err(|e| bad(format!("{e:#}")))?;
        // What only a restart can change, first.
        let running = &self.config.interfaces;
        if !file.interfaces.iter().eq(running.iter().map(|i| &i.name)) {
            return Err(bad(format!("{}: interfaces changed; restart rvsd to attach to other interfaces (nothing was applied)", path.display())));
        }
        if file
            .max_connections
            .is_some_and(|m| m != self.config.max_connections)
        {
            return Err(bad(format!("{}: max_connections changed; restart rvsd to resize the connection table (nothing was applied)", path.display())));
        }
        if file.fast_path_slots != self.config.fast_path_slots {
            return Err(bad(format!("{}: fast_path_slots changed; restart rvsd to resize the fast path's table (nothing was applied)", path.display())));
        }
        // The running interfaces' facts: XDP is attached to them.
        let (mut next, plan, _) = config::engine_config(&file, &text, |name| {
            running
                .iter()
                .find(|i| i.name == name)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("interface {name} is not one rvsd runs on"))
        })
        .map_err(|errs| bad(format!("{}: {}", path.display(), errs.join("; "))))?;
        next.max_connections = self.config.max_connections;
        let previous_plan = self.health.replace_plan(plan);
        if let Err(e) = self.apply(next) {
            self.health.replace_plan(previous_plan);
            let message = format!("{}: {e} (nothing was applied)", path.display());
            return Err(match e {
                ControlError::Internal { .. } => ControlError::internal(message),
                _ => bad(message),
            });
        }
        // Sync daemons last: a file whose daemons cannot start is reported,
        // the rest of it stays applied (as a daemon started by hand would).
        let commands = self.commands();
        if let Err(e) = self.sync.reconcile(&file.sync_daemons, commands.as_ref()) {
            return Err(bad(format!(
                "{}: the services were applied, but a [[sync_daemon]] was not: {e}",
                path.display()
            )));
        }
        self.diverged = false;
        for w in config::fwmark_warnings(&file, &text) {
            tracing::warn!("{}: {w}", path.display());
        }
        let msg = format!(
            "reloaded {}: {} services",
            path.display(),
            self.config.services.len()
        );
        tracing::info!("{msg}");
        Ok(msg)
    }
}
