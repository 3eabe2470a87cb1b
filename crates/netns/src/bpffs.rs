//! A private BPF file system for a test: what rvsd pins to outlive a
//! restart must be on a bpffs that outlives rvsd too, and `ip netns exec`
//! hides the host's `/sys/fs/bpf` behind a fresh `/sys`. A bpffs mounted
//! under `/tmp` in the test's own mount namespace stays visible there and
//! to every process the test starts.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::cmd::{run, Error, COMMAND_TIMEOUT};

/// Mounts not unmounted yet, for the signal hook.
static MOUNTED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// A bpffs mounted at `/tmp/<prefix>-bpf`, unmounted (with everything
/// pinned in it) and removed on drop or on SIGINT/SIGTERM.
#[derive(Debug)]
pub struct BpfFs {
    path: PathBuf,
}

impl BpfFs {
    /// Mounts a new bpffs for the test whose names start with `prefix`
    /// (a [`crate::unique_prefix`]).
    pub fn mount(prefix: &str) -> Result<BpfFs, Error> {
        let path = std::env::temp_dir().join(format!("{prefix}-bpf"));
        std::fs::create_dir(&path).map_err(|e| Error::Io {
            what: format!("creating {}", path.display()),
            source: e,
        })?;
        let mounted = run(
            Command::new("mount").args(["-t", "bpf", "bpf"]).arg(&path),
            COMMAND_TIMEOUT,
        );
        if let Err(e) = mounted {
            let _ = std::fs::remove_dir(&path);
            return Err(e);
        }
        lock().push(path.clone());
        crate::on_signal(unmount_all)?;
        Ok(BpfFs { path })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn lock() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    MOUNTED.lock().unwrap_or_else(|p| p.into_inner())
}

fn unmount(path: &Path) {
    // Lazy: a process still holding a pinned object's fd does not block it.
    let _ = run(Command::new("umount").arg("-l").arg(path), COMMAND_TIMEOUT);
    let _ = std::fs::remove_dir(path);
}

fn unmount_all() {
    for p in lock().drain(..) {
        unmount(&p);
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        lock().retain(|p| p != &self.path);
        unmount(&self.path);
    }
}
