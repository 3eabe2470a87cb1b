//! The async runner: every check of every real server on its own tokio task,
//! far from the data path, reporting server transitions on a channel.
//!
//! Per check, keepalived's rules ([`RetryState`]): a check that is up goes
//! down after `retry + 1` consecutive failed attempts, the attempts of a
//! failing series `delay_before_retry` apart; one success brings it up. The
//! next attempt starts `delay_loop` (or `delay_before_retry` inside a failing
//! series) after the previous one started, or at once if that one took longer.
//!
//! Per server: up when every check is up. An event is sent when that changes,
//! or when a misc_dynamic script changes the weight of an up server. Initial
//! state: up, or down with `alpha` (then the first pass of all checks sends
//! "up"); nothing is sent for a server that stays in its initial state.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::check::check_once;
use crate::spec::CheckConfig;

/// A change of a real server's health, for the daemon to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthEvent {
    /// The service name the caller gave in [`ServerChecks::service`].
    pub service: String,
    /// The real server (address and port as configured).
    pub server: SocketAddr,
    /// Whether every check of the server passes now.
    pub up: bool,
    /// The weight a misc_dynamic script or a weighted file check set last;
    /// `None` = configured weight.
    pub weight: Option<u32>,
    /// What caused the change, for logs and the operator.
    pub reason: String,
}

/// The checks of one real server, the unit the monitor starts, keeps or
/// restarts on [`HealthMonitor::update`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerChecks {
    /// Names the service in events (e.g. "tcp 10.0.100.1:80" or "fwmark 1").
    pub service: String,
    /// The real server.
    pub server: SocketAddr,
    /// keepalived's alpha: start down until every check passed once.
    pub alpha: bool,
    /// All must pass. Empty = always up, nothing runs.
    pub checks: Vec<CheckConfig>,
}

/// A server's current health as the monitor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStatus {
    /// Every check passes.
    pub up: bool,
    /// Last misc_dynamic / weighted file check weight.
    pub weight: Option<u32>,
    /// Reason of the last change.
    pub reason: String,
}

/// What [`HealthMonitor::update`] did, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpdateSummary {
    /// Servers new to the monitor.
    pub started: usize,
    /// Servers whose checks changed: their checks restarted, state kept.
    pub restarted: usize,
    /// Servers no longer configured: their checks stopped.
    pub stopped: usize,
    /// Servers left running untouched.
    pub unchanged: usize,
}

/// Misuse of the monitor by the caller.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// `HealthMonitor::new` ran outside a tokio runtime.
    #[error("the health monitor must be created inside a tokio runtime")]
    NoRuntime,
}

/// Runs the checks of a set of real servers; see the module doc for the rules.
///
/// Create it inside a tokio runtime, give it the full set with
/// [`update`](Self::update) whenever the configuration changes, read
/// [`HealthEvent`]s from the channel. Dropping it stops every check (and
/// kills running scripts).
#[derive(Debug)]
pub struct HealthMonitor {
    events: mpsc::Sender<HealthEvent>,
    runtime: tokio::runtime::Handle,
    servers: HashMap<(String, SocketAddr), Running>,
}

#[derive(Debug)]
struct Running {
    spec: ServerChecks,
    status: Arc<StdMutex<ServerStatus>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl HealthMonitor {
    /// A monitor sending events on `events`; checks run on the current runtime.
    pub fn new(events: mpsc::Sender<HealthEvent>) -> Result<Self, MonitorError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| MonitorError::NoRuntime)?;
        Ok(Self {
            events,
            runtime,
            servers: HashMap::new(),
        })
    }

    /// Makes `servers` the monitored set. Servers identical to the running
    /// ones keep running untouched (their retry counters and timers too);
    /// changed ones restart their checks from their current state (no event
    /// unless the state then changes); missing ones stop without an event;
    /// new ones start in their initial state. A later duplicate of the same
    /// (service, server) replaces an earlier one.
    pub fn update(&mut self, servers: impl IntoIterator<Item = ServerChecks>) -> UpdateSummary {
        let mut wanted: HashMap<(String, SocketAddr), ServerChecks> = HashMap::new();
        for s in servers {
            wanted.insert((s.service.clone(), s.server), s);
        }
        let mut summary = UpdateSummary::default();
        let before = self.servers.len();
        self.servers.retain(|k, _| wanted.contains_key(k));
        summary.stopped = before - self.servers.len();
        for (key, spec) in wanted {
            let initial = match self.servers.get(&key) {
                Some(r) if r.spec == spec => {
                    summary.unchanged += 1;
                    continue;
                }
                Some(r) => {
                    summary.restarted += 1;
                    lock_status(&r.status).clone()
                }
                None => {
                    summary.started += 1;
                    ServerStatus {
                        up: !spec.alpha || spec.checks.is_empty(),
                        weight: None,
                        reason: if spec.alpha {
                            "alpha: down until its checks pass".into()
                        } else {
                            "initial state".into()
                        },
                    }
                }
            };
            // Dropping the old entry aborts its tasks before new ones start.
            self.servers.remove(&key);
            let running = self.start(spec, initial);
            self.servers.insert(key, running);
        }
        tracing::debug!(?summary, "health monitor updated");
        summary
    }

    /// The current health of one server, if monitored.
    pub fn status(&self, service: &str, server: SocketAddr) -> Option<ServerStatus> {
        self.servers
            .get(&(service.to_string(), server))
            .map(|r| lock_status(&r.status).clone())
    }

    /// Stops every check; the monitor can be given a new set afterwards.
    pub fn shutdown(&mut self) {
        self.servers.clear();
    }

    fn start(&self, spec: ServerChecks, initial: ServerStatus) -> Running {
        let status = Arc::new(StdMutex::new(initial.clone()));
        let shared = Arc::new(Mutex::new(Aggregate {
            service: spec.service.clone(),
            server: spec.server,
            checks: vec![initial.up; spec.checks.len()],
            current: initial.clone(),
            status: status.clone(),
            events: self.events.clone(),
        }));
        let tasks = spec
            .checks
            .iter()
            .enumerate()
            .map(|(index, check)| {
                let task = CheckTask {
                    index,
                    check: check.clone(),
                    state: RetryState::new(initial.up, check.retry),
                    shared: shared.clone(),
                };
                self.runtime.spawn(task.run())
            })
            .collect();
        Running {
            spec,
            status,
            tasks,
        }
    }
}

fn lock_status(s: &StdMutex<ServerStatus>) -> std::sync::MutexGuard<'_, ServerStatus> {
    // A poisoned lock only means a panic elsewhere; the value is still whole.
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// keepalived's per-check retry rule, without time or I/O.
///
/// Feed it every attempt's result; it answers whether the check's reported
/// state changed, and which delay comes before the next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryState {
    up: bool,
    retry: u32,
    failures: u32,
}

impl RetryState {
    pub(crate) fn new(up: bool, retry: u32) -> Self {
        Self {
            up,
            retry,
            failures: 0,
        }
    }

    pub(crate) fn up(&self) -> bool {
        self.up
    }

    /// Consecutive failures counted so far in the current series.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// Records one attempt; returns true when the check's state flipped.
    pub(crate) fn record(&mut self, ok: bool) -> bool {
        if ok {
            self.failures = 0;
            let flipped = !self.up;
            self.up = true;
            return flipped;
        }
        if !self.up {
            return false;
        }
        self.failures += 1;
        if self.failures > self.retry {
            self.up = false;
            self.failures = 0;
            return true;
        }
        false
    }

    /// Delay before the next attempt: delay_before_retry inside a failing
    /// series of an up check, delay_loop otherwise.
    pub(crate) fn next_delay(
        &self,
        delay_loop: Duration,
        delay_before_retry: Duration,
    ) -> Duration {
        if self.up && self.failures > 0 {
            delay_before_retry
        } else {
            delay_loop
        }
    }
}

/// Per-server state shared by its check tasks; the async lock also orders
/// the events of one server.
#[derive(Debug)]
struct Aggregate {
    service: String,
    server: SocketAddr,
    checks: Vec<bool>,
    current: ServerStatus,
    status: Arc<StdMutex<ServerStatus>>,
    events: mpsc::Sender<HealthEvent>,
}

impl Aggregate {
    /// Applies one check's state (and weight); sends an event if the
    /// server's state or, while up, its weight changed.
    async fn apply(&mut self, index: usize, up: bool, weight: Option<u32>, reason: &str) {
        if let Some(slot) = self.checks.get_mut(index) {
            *slot = up;
        }
        let server_up = self.checks.iter().all(|&c| c);
        let new_weight = weight.or(self.current.weight);
        let changed =
            server_up != self.current.up || (server_up && new_weight != self.current.weight);
        self.current.weight = new_weight;
        if !changed {
            return;
        }
        self.current.up = server_up;
        self.current.reason = reason.to_string();
        *lock_status(&self.status) = self.current.clone();
        if server_up {
            tracing::info!(service = %self.service, server = %self.server, weight = ?new_weight, %reason, "real server up");
        } else {
            tracing::warn!(service = %self.service, server = %self.server, %reason, "real server down");
        }
        let event = HealthEvent {
            service: self.service.clone(),
            server: self.server,
            up: server_up,
            weight: new_weight,
            reason: reason.to_string(),
        };
        if self.events.send(event).await.is_err() {
            tracing::debug!("health event receiver gone; event dropped");
        }
    }
}

struct CheckTask {
    index: usize,
    check: CheckConfig,
    state: RetryState,
    shared: Arc<Mutex<Aggregate>>,
}

impl CheckTask {
    async fn run(mut self) {
        let c = &self.check;
        if !c.warmup.is_zero() {
            tokio::time::sleep(jitter(c.warmup)).await;
        }
        let mut last_weight = None;
        loop {
            let started = Instant::now();
            let result = check_once(&self.check).await;
            let flipped = self.state.record(result.ok);
            let weight_changed =
                result.ok && result.weight.is_some() && result.weight != last_weight;
            if result.ok && result.weight.is_some() {
                last_weight = result.weight;
            }
            if result.ok {
                tracing::trace!(reason = %result.reason, "check passed");
            } else {
                tracing::debug!(reason = %result.reason, failures = self.state.failures(), "check failed");
            }
            if flipped || weight_changed {
                let reason = if !result.ok && self.check.retry > 0 {
                    format!(
                        "{} ({} consecutive failures)",
                        result.reason,
                        self.check.retry + 1
                    )
                } else {
                    result.reason.clone()
                };
                let mut agg = self.shared.lock().await;
                agg.apply(self.index, self.state.up(), result.weight, &reason)
                    .await;
            }
            let delay = self
                .state
                .next_delay(self.check.delay_loop, self.check.delay_before_retry);
            tokio::time::sleep_until(started + delay).await;
        }
    }
}

/// A random duration in [0, max], for warmup.
fn jitter(max: Duration) -> Duration {
    let mut h = RandomState::new().build_hasher();
    h.write_u8(0);
    let r = h.finish();
    let nanos = max.as_nanos().min(u128::from(u64::MAX)) as u64;
    Duration::from_nanos(if nanos == 0 { 0 } else { r % (nanos + 1) })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOP: Duration = Duration::from_secs(60);
    const RETRY: Duration = Duration::from_secs(3);

    #[test]
    fn down_after_retry_plus_one_failures() {
        for retry in 0..4 {
            let mut s = RetryState::new(true, retry);
            for i in 0..retry {
                assert!(!s.record(false), "retry {retry}: failure {i} must not flip");
                assert!(s.up());
                assert_eq!(s.next_delay(LOOP, RETRY), RETRY, "inside a failing series");
            }
            assert!(
                s.record(false),
                "retry {retry}: failure {} flips",
                retry + 1
            );
            assert!(!s.up());
            assert_eq!(
                s.next_delay(LOOP, RETRY),
                LOOP,
                "down checks poll at delay_loop"
            );
            assert!(!s.record(false), "further failures stay quiet");
        }
    }

    #[test]
    fn one_success_brings_up_and_resets_the_series() {
        let mut s = RetryState::new(false, 2);
        assert!(s.record(true));
        assert!(s.up());
        assert!(!s.record(true));
        // A success inside a series restarts the count.
        assert!(!s.record(false));
        assert!(!s.record(false));
        assert!(!s.record(true));
        assert_eq!(s.failures(), 0);
        assert_eq!(s.next_delay(LOOP, RETRY), LOOP);
        assert!(!s.record(false));
        assert!(!s.record(false));
        assert!(s.record(false));
    }

    #[test]
    fn alpha_start_reports_first_success_only() {
        let mut s = RetryState::new(false, 1);
        assert!(!s.record(false));
        assert!(!s.up());
        assert!(s.record(true));
    }

    #[test]
    fn jitter_stays_in_range() {
        for _ in 0..100 {
            assert!(jitter(Duration::from_millis(5)) <= Duration::from_millis(5));
        }
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }
}
