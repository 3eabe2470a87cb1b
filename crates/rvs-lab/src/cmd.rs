//! Running programs with a bound on time and a readable error.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::LabError;

/// Output of a command that succeeded.
pub(crate) struct Output {
    pub(crate) stdout: String,
}

pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion, killing it after `timeout`; non-zero exit is an
/// error carrying stderr.
pub(crate) fn run(cmd: &mut Command, timeout: Duration) -> Result<Output, LabError> {
    let line = describe(cmd);
    tracing::debug!("run: {line}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(LabError::io(format!("starting `{line}`")))?;
    let out = reader(child.stdout.take());
    let err = reader(child.stderr.take());
    let status = wait_until(&mut child, Instant::now() + timeout)
        .map_err(LabError::io(format!("waiting for `{line}`")))?;
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(LabError::Timeout {
            what: line,
            after: timeout,
        });
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if !status.success() {
        return Err(LabError::Command {
            cmd: line,
            status: status.to_string(),
            stderr: stderr.trim().to_owned(),
        });
    }
    Ok(Output { stdout })
}

fn reader<R: Read + Send + 'static>(r: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut s);
        }
        String::from_utf8_lossy(&s).into_owned()
    })
}

/// Polls `child` until it exits or `deadline` passes (`Ok(None)`).
pub(crate) fn wait_until(
    child: &mut Child,
    deadline: Instant,
) -> std::io::Result<Option<ExitStatus>> {
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(Some(s));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
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
