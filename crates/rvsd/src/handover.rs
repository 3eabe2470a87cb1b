//! Restart and upgrade without losing connections (docs/rvsd.md, "Restart
//! and upgrade"): the XDP links and connection maps are pinned in a
//! directory of a BPF file system, one per control socket. While no rvsd
//! runs, the program keeps forwarding every established flow; the next
//! rvsd adopts those flows into its engine, fills its own maps and swaps
//! its program into the pinned links. SIGUSR2 (the unit's
//! `RestartKillSignal`) stops rvsd for such a successor; SIGTERM stops it
//! for good and detaches.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rvs_datapath::{pin_dir_for_socket, Inherited, PinDir, DEFAULT_PIN_ROOT};

/// The pin directory and what a previous rvsd left there.
pub(crate) struct Carried {
    pub(crate) pins: PinDir,
    pub(crate) inherited: Inherited,
}

/// Opens the pin directory: `explicit` (`--pin-dir`) must work; the
/// default (under /sys/fs/bpf/rvs) is skipped with a warning when there is
/// no BPF file system there, and rvsd then runs without surviving a restart.
pub(crate) fn open(explicit: Option<&Path>, socket: &Path) -> anyhow::Result<Option<Carried>> {
    let path: PathBuf = match explicit {
        Some(p) => p.to_path_buf(),
        None => pin_dir_for_socket(Path::new(DEFAULT_PIN_ROOT), socket),
    };
    let pins = match PinDir::open(&path) {
        Ok(p) => p,
        // The default is best effort: no bpffs there, or no right to
        // write it (the unit creates /sys/fs/bpf/rvs for its user).
        Err(e) if explicit.is_none() => {
            tracing::warn!(dir = %path.display(), error = %e, "connections will not survive a restart of rvsd");
            return Ok(None);
        }
        Err(e) => return Err(e).context("opening the pin directory (--pin-dir)"),
    };
    let inherited = pins
        .inherit()
        .with_context(|| format!("reading what a previous rvsd pinned in {}", path.display()))?;
    if !inherited.is_empty() {
        tracing::info!(dir = %path.display(), interfaces = ?inherited.interfaces(), "taking over from a previous rvsd");
    }
    Ok(Some(Carried { pins, inherited }))
}

/// Gives the pin directory to rvsd's user (`user` in the config), so that
/// it can remove its pins at stop once it has dropped to it.
pub(crate) fn give_to(dir: &Path, uid: u32) -> anyhow::Result<()> {
    std::os::unix::fs::chown(dir, Some(uid), None)
        .with_context(|| format!("giving the pin directory {} to uid {uid}", dir.display()))
}
