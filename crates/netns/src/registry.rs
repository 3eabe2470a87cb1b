//! The namespaces this process created and has not removed yet, and the
//! SIGINT/SIGTERM handler that removes them.
//!
//! Creation holds the registry's lock while `ip netns add` runs, and the
//! handler takes the lock before it sweeps, so a namespace is either in the
//! list the handler removes or not created at all; after a signal no new one
//! is created.

use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cmd::{run, Error, COMMAND_TIMEOUT};

struct Registry {
    live: Vec<String>,
    /// Set by the signal handler: the process is about to exit.
    closing: bool,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    live: Vec::new(),
    closing: false,
});
static HOOKS: Mutex<Vec<fn()>> = Mutex::new(Vec::new());
static HANDLER: OnceLock<Result<(), String>> = OnceLock::new();

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `hook` when SIGINT or SIGTERM arrives, before this crate removes
/// every namespace the process still has and exits with status 130 — for
/// owners of more than namespaces (the lab stops its processes gracefully
/// and removes its temp dir). Installs the handler if it is not yet; it is
/// installed anyway when the first namespace is created.
///
/// Fails when the process already has a SIGINT handler of its own (the
/// `ctrlc` crate allows one); namespaces are then removed on drop only.
pub fn on_signal(hook: fn()) -> Result<(), Error> {
    lock(&HOOKS).push(hook);
    install()
}

fn install() -> Result<(), Error> {
    HANDLER
        .get_or_init(|| ctrlc::set_handler(on_signal_received).map_err(|e| e.to_string()))
        .clone()
        .map_err(|e| Error::Io {
            what: "installing the SIGINT/SIGTERM handler that removes network namespaces".into(),
            source: std::io::Error::other(e),
        })
}

fn on_signal_received() {
    let hooks = lock(&HOOKS).clone();
    for hook in hooks {
        hook();
    }
    let left = {
        let mut r = lock(&REGISTRY);
        r.closing = true;
        std::mem::take(&mut r.live)
    };
    for name in left.iter().rev() {
        let _ = remove(name);
    }
    std::process::exit(130);
}

/// `ip netns add name`, recorded for the handler.
pub(crate) fn add(name: &str) -> Result<(), Error> {
    // Without a handler (the process has its own) namespaces are still
    // removed on drop.
    let _ = install();
    let mut r = lock(&REGISTRY);
    if r.closing {
        return Err(Error::Io {
            what: format!("creating network namespace {name}"),
            source: std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                "SIGINT/SIGTERM received: this process is removing its namespaces",
            ),
        });
    }
    run(
        Command::new("ip").args(["netns", "add", name]),
        COMMAND_TIMEOUT,
    )?;
    r.live.push(name.to_owned());
    Ok(())
}

/// Kills what still runs inside `name` (never this process), then deletes
/// it.
pub(crate) fn remove(name: &str) -> Result<(), Error> {
    if let Ok(pids) = crate::pids(name) {
        let me = std::process::id();
        for pid in pids.into_iter().filter(|p| *p != me) {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
    run(
        Command::new("ip").args(["netns", "del", name]),
        COMMAND_TIMEOUT,
    )
    .map(drop)
}

/// Drops `name` from the handler's list (after [`remove`]: a signal in
/// between only repeats a deletion that fails harmlessly).
pub(crate) fn forget(name: &str) {
    lock(&REGISTRY).live.retain(|n| n != name);
}
