//! Running programs with a bound on time and a readable error.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::LabError;

pub(crate) use rvs_netns::{describe, wait_until};

/// Runs `cmd` to completion, killing it after `timeout`; non-zero exit is an
/// error carrying stderr. Returns stdout.
pub(crate) fn run(cmd: &mut Command, timeout: Duration) -> Result<String, LabError> {
    tracing::debug!("run: {}", describe(cmd));
    Ok(rvs_netns::run(cmd, timeout)?)
}

/// Sends `sig` to `pid`; errors (already gone) are ignored.
pub(crate) fn signal(pid: u32, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pid <= 0 {
        return;
    }
    // SAFETY: kill(2) with a positive pid of a process we started (or found
    // inside a namespace this lab created); no memory is involved.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Finds `tool` in PATH or the sbin directories root normally has.
pub(crate) fn find_tool(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            ["/usr/local/sbin", "/usr/sbin", "/sbin"]
                .into_iter()
                .map(PathBuf::from),
        )
        .map(|d| d.join(tool))
        .find(|p| is_executable(p))
}

pub(crate) fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Ensures `tool` exists, naming the Debian package otherwise.
pub(crate) fn require(tool: &'static str, package: &'static str) -> Result<PathBuf, LabError> {
    find_tool(tool).ok_or(LabError::MissingTool { tool, package })
}
