//! MISC_CHECK: runs the script (no shell; the words of `script`) in its own
//! process group with stdin/stdout/stderr on /dev/null.
//!
//! Exit 0 = up; with misc_dynamic, exit 2..=255 = up with weight `code − 2`
//! (keepalived's rule; exit 0 leaves the weight as it is); anything else,
//! including death by a signal, = down. On timeout the group gets SIGTERM,
//! then SIGKILL after [`KILL_GRACE`], and the attempt counts as failed. If the
//! attempt is dropped (server removed from the monitor), the group is killed.
//!
//! Where a script runner is installed ([`crate::script`], rvsd), scripts
//! run there, as the script user without capabilities, by the same rules.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use super::{fmt_duration, CheckResult};
use crate::spec::MiscSpec;

/// Time a script gets between SIGTERM and SIGKILL.
pub(crate) const KILL_GRACE: Duration = Duration::from_secs(1);

pub(super) async fn check(spec: &MiscSpec, timeout: Duration) -> CheckResult {
    let what = format!("misc {:?}", spec.script);
    match run(&spec.argv, timeout).await {
        Err(e) => CheckResult::down(format!("{what}: {e}")),
        Ok(status) => match status.code() {
            Some(0) => CheckResult::up(format!("{what}: exited 0")),
            Some(code @ 2..=255) if spec.dynamic => CheckResult {
                ok: true,
                weight: Some(code as u32 - 2),
                reason: format!("{what}: exited {code}, weight {}", code - 2),
            },
            Some(code) => CheckResult::down(format!("{what}: exited {code}")),
            None => CheckResult::down(format!("{what}: killed by a signal ({status})")),
        },
    }
}

/// Kills the child's process group when dropped before the child was reaped.
struct GroupGuard(Option<Pid>);

impl GroupGuard {
    fn signal(&self, sig: Signal) {
        if let Some(pid) = self.0 {
            // ESRCH (already gone) is the expected race; nothing else to do.
            let _ = killpg(pid, sig);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.signal(Signal::SIGKILL);
    }
}

/// Runs `argv` with a time limit, in the installed script runner if there
/// is one; `Err` when it could not run or timed out.
async fn run(argv: &[String], timeout: Duration) -> Result<ExitStatus, String> {
    match crate::script::installed() {
        Some(runner) => runner.run(argv, timeout).await,
        None => run_here(argv, timeout).await,
    }
}

/// Runs `argv` in this process with a time limit.
pub(crate) async fn run_here(argv: &[String], timeout: Duration) -> Result<ExitStatus, String> {
    let (program, args) = argv.split_first().ok_or("empty command")?;
    let mut child: Child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let mut guard = GroupGuard(
        child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .map(Pid::from_raw),
    );
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => {
            // Reaped: the pid may be reused now, so never signal it again.
            guard.0 = None;
            Ok(status)
        }
        Ok(Err(e)) => Err(format!("waiting for {program}: {e}")),
        Err(_) => {
            guard.signal(Signal::SIGTERM);
            if tokio::time::timeout(KILL_GRACE, child.wait())
                .await
                .is_err()
            {
                guard.signal(Signal::SIGKILL);
                let _ = child.wait().await;
            }
            guard.0 = None;
            Err(format!("timed out after {}", fmt_duration(timeout)))
        }
    }
}

/// Runs an operator command line (quorum_up, quorum_down) the way scripts
/// run: split into words, no shell, bounded by `timeout`. Returns the exit
/// code, or why there is none.
pub async fn run_command(command: &str, timeout: Duration) -> Result<i32, String> {
    let argv = crate::spec::split_words(command).map_err(|e| format!("command {command:?} {e}"))?;
    let status = run(&argv, timeout).await?;
    status
        .code()
        .ok_or_else(|| format!("{command:?} was killed by a signal ({status})"))
}
