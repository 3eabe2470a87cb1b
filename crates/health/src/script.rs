//! Scripts (MISC_CHECK, quorum_up, quorum_down) run by a separate runner
//! process, so that they never run with the daemon's user or capabilities.
//!
//! rvsd starts the runner before it drops its privileges; the runner takes
//! the `script_user`'s identity with no capability at all and then runs
//! every script rvsd asks for (keepalived's `script_user`). They talk over
//! the runner's stdin and stdout, one JSON object per line:
//!
//! ```text
//! rvsd → runner  {"run":{"id":7,"argv":["/usr/local/bin/check","10.0.2.11"],"timeout_ms":5000}}
//! rvsd → runner  {"cancel":7}                  (the check was dropped)
//! runner → rvsd  {"id":7,"status":0}           (wait status, as waitpid gives it)
//! runner → rvsd  {"id":7,"error":"timed out after 5s"}
//! ```
//!
//! The runner enforces the timeout itself, exactly as a script run in
//! process is (its process group gets SIGTERM, then SIGKILL). It exits when
//! its stdin closes (rvsd stopped or died), killing what still runs; it
//! ignores SIGINT, SIGTERM and SIGHUP meant for rvsd's process group or
//! cgroup, so that rvsd can still run omega's quorum_down while it stops.
//!
//! [`install`] makes every script of this process go to a runner; without
//! one, scripts run in this process (tools, tests).

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

/// A request to the runner.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Request {
    Run {
        id: u64,
        argv: Vec<String>,
        timeout_ms: u64,
    },
    Cancel(u64),
}

/// The runner's answer to a [`Request::Run`].
#[derive(Debug, Serialize, Deserialize)]
struct Answer {
    id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

type Pending = Arc<Mutex<Option<HashMap<u64, oneshot::Sender<Result<ExitStatus, String>>>>>>;

/// rvsd's side of a runner process: sends it scripts, gets their exit
/// statuses back. Cheap to share; requests may overlap.
#[derive(Debug)]
pub struct ScriptRunner {
    requests: mpsc::UnboundedSender<Request>,
    /// Waiting callers by request id; `None` once the runner is gone.
    pending: Pending,
    next: AtomicU64,
}

/// Why a runner could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("a script runner is installed already")]
pub struct AlreadyInstalled;

static RUNNER: OnceLock<ScriptRunner> = OnceLock::new();

/// Makes `runner` run every script of this process from now on. Once only.
pub fn install(runner: ScriptRunner) -> Result<(), AlreadyInstalled> {
    RUNNER.set(runner).map_err(|_| AlreadyInstalled)
}

/// The installed runner, if any.
pub(crate) fn installed() -> Option<&'static ScriptRunner> {
    RUNNER.get()
}

impl ScriptRunner {
    /// A runner that reads requests from `to_runner` and answers on
    /// `from_runner` (the runner process's stdin and stdout). Must be
    /// called inside a tokio runtime: two tasks carry the lines.
    pub fn new<W, R>(to_runner: W, from_runner: R) -> ScriptRunner
    where
        W: AsyncWrite + Unpin + Send + 'static,
        R: AsyncRead + Unpin + Send + 'static,
    {
        let (requests, mut queue) = mpsc::unbounded_channel::<Request>();
        let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
        let mut writer = to_runner;
        tokio::spawn(async move {
            while let Some(req) = queue.recv().await {
                let Ok(mut line) = serde_json::to_vec(&req) else {
                    continue;
                };
                line.push(b'\n');
                if let Err(e) = writer.write_all(&line).await {
                    tracing::error!(error = %e, "the script runner stopped reading; scripts cannot run");
                    return;
                }
                let _ = writer.flush().await;
            }
        });
        let answers = Arc::clone(&pending);
        tokio::spawn(async move {
            let mut lines = BufReader::new(from_runner).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(a) = serde_json::from_str::<Answer>(&line) else {
                    tracing::warn!(%line, "the script runner said something else than an answer");
                    continue;
                };
                let result = match (a.status, a.error) {
                    (Some(s), _) => Ok(ExitStatus::from_raw(s)),
                    (None, e) => Err(e.unwrap_or_else(|| "no status".into())),
                };
                let tx = lock(&answers).as_mut().and_then(|p| p.remove(&a.id));
                if let Some(tx) = tx {
                    let _ = tx.send(result);
                }
            }
            tracing::error!("the script runner has exited: MISC_CHECK scripts and quorum commands fail from now on (restart rvsd)");
            // Dropping the senders fails every waiting caller.
            lock(&answers).take();
        });
        ScriptRunner {
            requests,
            pending,
            next: AtomicU64::new(1),
        }
    }

    /// Runs `argv` in the runner, bounded by `timeout` there; `Err` when it
    /// could not run or timed out, as for a script run here.
    pub async fn run(&self, argv: &[String], timeout: Duration) -> Result<ExitStatus, String> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        match lock(&self.pending).as_mut() {
            Some(p) => p.insert(id, tx),
            None => return Err("the script runner has exited (see rvsd's log)".into()),
        };
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let mut cancel = Cancel {
            id,
            runner: Some(self),
        };
        self.requests
            .send(Request::Run {
                id,
                argv: argv.to_vec(),
                timeout_ms,
            })
            .map_err(|_| "the script runner has exited (see rvsd's log)".to_string())?;
        // The runner answers within the timeout and the kill's grace; a
        // runner that does not is as good as gone.
        let bound = timeout + super::check::KILL_GRACE + Duration::from_secs(5);
        let answer = tokio::time::timeout(bound, rx).await;
        cancel.runner = None;
        match answer {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err("the script runner has exited (see rvsd's log)".into()),
            Err(_) => {
                lock(&self.pending).as_mut().map(|p| p.remove(&id));
                let _ = self.requests.send(Request::Cancel(id));
                Err(format!("the script runner did not answer within {bound:?}"))
            }
        }
    }
}

/// Cancels its request in the runner if dropped before the answer (the
/// check was stopped), so that the script is killed there.
struct Cancel<'a> {
    id: u64,
    runner: Option<&'a ScriptRunner>,
}

impl Drop for Cancel<'_> {
    fn drop(&mut self) {
        if let Some(r) = self.runner {
            lock(&r.pending).as_mut().map(|p| p.remove(&self.id));
            let _ = r.requests.send(Request::Cancel(self.id));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The runner's side: answers requests from `input` on `output` until
/// `input` ends, then kills what still runs. Scripts run as this process
/// runs them; the caller has already taken the script user's identity.
pub async fn serve<R, W>(input: R, mut output: W) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // Signals for rvsd's group or cgroup are not ours: rvsd ends us by
    // closing our stdin. Holding the streams keeps the handlers installed.
    let mut ignored = Vec::new();
    for kind in [
        tokio::signal::unix::SignalKind::interrupt(),
        tokio::signal::unix::SignalKind::terminate(),
        tokio::signal::unix::SignalKind::hangup(),
    ] {
        ignored.push(tokio::signal::unix::signal(kind)?);
    }
    let (done_tx, mut done) = mpsc::unbounded_channel::<Answer>();
    let mut running: HashMap<u64, tokio::task::AbortHandle> = HashMap::new();
    let mut lines = BufReader::new(input).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line? else { break };
                match serde_json::from_str::<Request>(&line) {
                    Ok(Request::Run { id, argv, timeout_ms }) => {
                        let tx = done_tx.clone();
                        let task = tokio::spawn(async move {
                            let r = super::check::run_here(&argv, Duration::from_millis(timeout_ms)).await;
                            let (status, error) = match r {
                                Ok(s) => (Some(s.into_raw()), None),
                                Err(e) => (None, Some(e)),
                            };
                            let _ = tx.send(Answer { id, status, error });
                        });
                        running.insert(id, task.abort_handle());
                    }
                    Ok(Request::Cancel(id)) => {
                        if let Some(t) = running.remove(&id) {
                            t.abort();
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "script runner: not a request"),
                }
            }
            Some(answer) = done.recv() => {
                running.remove(&answer.id);
                let mut line = serde_json::to_vec(&answer).unwrap_or_default();
                line.push(b'\n');
                output.write_all(&line).await?;
                output.flush().await?;
            }
        }
    }
    // Aborted tasks drop their scripts, whose process groups are killed.
    for (_, t) in running {
        t.abort();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(ignored);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(script: &str) -> Vec<String> {
        ["/bin/sh", "-c", script].map(String::from).to_vec()
    }

    /// A runner served in this process over in-memory pipes: exit codes,
    /// timeouts and cancellation come back as for a script run here, and
    /// the runner ends when its input does.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_runner_answers_times_out_and_cancels() {
        let (to_runner, runner_in) = tokio::io::duplex(4096);
        let (runner_out, from_runner) = tokio::io::duplex(4096);
        let served = tokio::spawn(serve(runner_in, runner_out));
        let runner = ScriptRunner::new(to_runner, from_runner);
        let second = Duration::from_secs(1);

        let s = runner.run(&argv("exit 3"), 5 * second).await.unwrap();
        assert_eq!(s.code(), Some(3));
        let (slow, quick) = (argv("sleep 0.3; exit 0"), argv("exit 7"));
        let (a, b) = tokio::join!(
            runner.run(&slow, 5 * second),
            runner.run(&quick, 5 * second)
        );
        assert_eq!((a.unwrap().code(), b.unwrap().code()), (Some(0), Some(7)));
        let e = runner
            .run(&argv("sleep 5"), Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(e.contains("timed out after 0.2s"), "{e}");
        let e = runner
            .run(&["/nonexistent/x".to_string()], second)
            .await
            .unwrap_err();
        assert!(e.contains("cannot run /nonexistent/x"), "{e}");

        // A dropped run is cancelled: the script is killed before it writes.
        let dir = tempfile::tempdir().unwrap();
        let mark = dir.path().join("ran");
        let script = format!("sleep 0.5; touch {}", mark.display());
        let dropped = tokio::time::timeout(
            Duration::from_millis(100),
            runner.run(&argv(&script), 5 * second),
        )
        .await;
        assert!(dropped.is_err(), "the run should still be going");
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert!(!mark.exists(), "a cancelled script ran to its end");

        // The runner ends with its input; callers then get an error.
        drop(runner);
        tokio::time::timeout(5 * second, served)
            .await
            .expect("the runner ends when its input closes")
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn a_gone_runner_fails_runs_at_once() {
        let (to_runner, runner_in) = tokio::io::duplex(4096);
        let (runner_out, from_runner) = tokio::io::duplex(4096);
        let runner = ScriptRunner::new(to_runner, from_runner);
        drop((runner_in, runner_out));
        let t = std::time::Instant::now();
        let e = runner
            .run(&argv("exit 0"), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(e.contains("the script runner has exited"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }
}
