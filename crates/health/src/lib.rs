//! Health checking for RVS, with keepalived's semantics and defaults.
//!
//! Three layers, usable apart:
//!
//! - [`spec`]: the `[[service.real_server.check]]` tables and the service's
//!   health keys of `docs/rvsd.md`, deserialized with serde and validated
//!   (unknown keys and options of another check type are errors), then
//!   [`CheckSpec::resolve`]d against a real server into a [`CheckConfig`].
//! - [`check_once`] runs one check (TCP connect, HTTP GET, HTTPS GET, MISC
//!   script, UDP, ICMP echo, SMTP dialogue, DNS query, tracked file) and [`HealthMonitor`] runs all of them on tokio, applies
//!   keepalived's retry rules and sends [`HealthEvent`]s on a channel. Nothing
//!   here touches the data path: the daemon turns events into engine updates.
//! - [`policy`]: pure functions (no I/O, no clock) that turn configured
//!   servers plus their health into the effective pool: inhibit_on_failure,
//!   quorum with hysteresis, the sorry server, quorum_up / quorum_down
//!   commands, omega.
//!
//! - [`script`]: MISC_CHECK scripts and quorum commands in a separate
//!   runner process, as keepalived's `script_user`, never with the
//!   daemon's identity or capabilities.
//!
//! Call order for a daemon: parse specs → `resolve` → `HealthMonitor::update`
//! → for each received event, `ServicePolicy::on_health` → apply the returned
//! [`policy::Evaluation`] (pool + commands) → on stop, `ServicePolicy::shutdown`.

#![forbid(unsafe_code)]

mod check;
mod monitor;
pub mod policy;
pub mod script;
pub mod spec;

pub use check::{check_once, run_command, CheckResult};
pub use monitor::{
    HealthEvent, HealthMonitor, MonitorError, ServerChecks, ServerStatus, UpdateSummary,
};
pub use spec::{
    CheckConfig, CheckKind, CheckSpec, DnsSpec, FileSpec, HttpSpec, MiscSpec, SmtpSpec, SpecError,
    UdpSpec,
};
