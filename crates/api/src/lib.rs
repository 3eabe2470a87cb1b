//! rvsd's control API: HTTP/1.1 + JSON on a root-only Unix socket.
//!
//! - `GET /v1/services` → [`Listing`]
//! - `GET /v1/connections` → a JSON array of [`ConnectionEntry`] (what
//!   `ipvsadm -Lc` shows)
//! - `POST /v1/commands` with a [`Command`] → `200 {"ok":true}`, or a
//!   refusal: `400` (`500` for rvsd's own failure) with an [`ErrorBody`],
//!   the typed [`ControlError`] beside its one-line text. A refused
//!   [`Command::Restore`] names the failing command's index
//!   ([`ControlError::Refused`]).
//!
//! The socket is root-only (0600); with a read-only group (rvsd's
//! `socket_group`, [`Access`]) it is 0660 of that group, and the group's
//! members may `GET` but every command is refused (403,
//! [`ControlError::PermissionDenied`]). At most [`server::MAX_HEADERS`]
//! header fields per request.
//!
//! The socket path is [`DEFAULT_SOCKET`], overridable with the environment
//! variable [`SOCKET_ENV`] (and rvsadm's `--socket`); see [`socket_path`].
//! [`Client`] is the blocking client rvsadm uses; [`server`] is the side rvsd
//! runs.

mod client;
mod error;
pub mod server;
#[cfg(feature = "testing")]
pub mod testing;
mod types;

use std::path::{Path, PathBuf};

pub use client::{Client, ClientError};
pub use error::{ControlError, Entity, ErrorBody};
pub use rvs_vocab::{SyncDaemon, SyncRole};
pub use server::{
    bind, bind_with, serve, serve_with, serve_with_access, Access, ControlHandler, Limits,
    ReadOnlyGroup, SocketFile,
};
pub use types::{
    Command, ConnectionEntry, DefenseStatus, DestSpec, DestStatus, Family, ForwardMethod,
    FwmarkRuleSpec, HealthStatus, Listing, Protocol, ServiceKey, ServiceSpec, ServiceStatus, Stats,
    SyncDaemonStatus, SysctlSettings, SysctlStatus, Timeouts, Tunnel, TunnelChecksum,
};

/// Where rvsd listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/rvs/rvsd.sock";

/// Environment variable that overrides [`DEFAULT_SOCKET`] for rvsd and rvsadm.
pub const SOCKET_ENV: &str = "RVSD_SOCKET";

/// Path of the listing endpoint.
pub const SERVICES_PATH: &str = "/v1/services";

/// Path of the connection listing endpoint.
pub const CONNECTIONS_PATH: &str = "/v1/connections";

/// Path of the command endpoint.
pub const COMMANDS_PATH: &str = "/v1/commands";

/// The socket to use: an explicit flag wins, then `$RVSD_SOCKET` (if set and
/// non-empty), then [`DEFAULT_SOCKET`]. One rule for daemon and CLI.
pub fn socket_path(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    match std::env::var_os(SOCKET_ENV) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(DEFAULT_SOCKET),
    }
}
