//! The one error type of the lab: every message says what to do about it.

use std::path::PathBuf;
use std::time::Duration;

/// Why a lab could not be built or a command in it failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// Namespaces, veths and sysctls need root.
    #[error("the lab needs root (network namespaces, veth, sysctl): run as root or with sudo")]
    NotRoot,
    /// A program the lab runs is not installed.
    #[error("`{tool}` not found in PATH: install it with `apt-get install {package}`")]
    MissingTool {
        /// Program name.
        tool: &'static str,
        /// Debian package that provides it.
        package: &'static str,
    },
    /// Namespaces (or the temp dir) with this prefix exist already.
    #[error("lab prefix {prefix:?} is already in use ({existing}); pick another prefix (see unique_prefix()) or remove the leftovers with `ip netns del`")]
    PrefixInUse {
        /// The prefix asked for.
        prefix: String,
        /// What already uses it.
        existing: String,
    },
    /// The spec cannot describe a lab.
    #[error("invalid lab spec: {0}")]
    InvalidSpec(String),
    /// `exec`/`spawn` was given a role that is not in this lab.
    #[error("no namespace for role {role:?} in lab {prefix}: use client, router, dir (dir2.. with several directors) or rs1..rs{servers}")]
    UnknownRole {
        /// The role asked for.
        role: String,
        /// The lab's prefix.
        prefix: String,
        /// How many real servers the lab has.
        servers: usize,
    },
    /// A command ran and exited unsuccessfully.
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        cmd: String,
        /// Exit status as text.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A command or wait did not finish in time.
    #[error("`{what}` did not finish within {after:?}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// The bound that was hit.
        after: Duration,
    },
    /// TUN mode needs the `rvs-decap` binary.
    #[error("rvs-decap binary not found (looked at {searched:?}): build it with `cargo build -p rvs-decap` or set LabSpec::decap_bin")]
    DecapNotFound {
        /// Paths that were tried.
        searched: Vec<PathBuf>,
    },
    /// The lab was torn down (by a signal) while it was being used.
    #[error("lab {prefix} was torn down (SIGINT/SIGTERM) while in use")]
    TornDown {
        /// The lab's prefix.
        prefix: String,
    },
    /// An operating-system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// The harness's errors are the lab's: a command failed, timed out or could
/// not be started.
impl From<rvs_netns::Error> for LabError {
    fn from(e: rvs_netns::Error) -> LabError {
        match e {
            rvs_netns::Error::Command {
                cmd,
                status,
                stderr,
            } => LabError::Command {
                cmd,
                status,
                stderr,
            },
            rvs_netns::Error::Timeout { what, after } => LabError::Timeout { what, after },
            rvs_netns::Error::Io { what, source } => LabError::Io { what, source },
        }
    }
}

impl LabError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LabError {
        let what = what.into();
        move |source| LabError::Io { what, source }
    }
}
