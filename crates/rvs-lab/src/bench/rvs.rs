//! Starting rvsd on the lab's director and configuring it with rvsadm, the
//! way an operator would.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{rs_ip, Lab, Mode, Spawned, VIP};

/// How long rvsd gets to print `rvsd: ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// `name` from `$env`, else beside the running executable or in its parent
/// directory (where cargo puts binaries relative to test executables).
pub(super) fn find_bin(name: &str, env: &str) -> Result<PathBuf> {
    let mut searched = Vec::new();
    if let Some(p) = std::env::var_os(env) {
        searched.push(PathBuf::from(p));
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(2) {
            searched.push(dir.join(name));
        }
    }
    if let Some(p) = searched.iter().find(|p| is_executable(p)) {
        return Ok(p.clone());
    }
    bail!(
        "{name} not found (looked at {}); build it with `cargo build --release -p {name}` \
         (same profile as rvs-lab) or set ${env}",
        searched
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Where the bench's rvsd serves metrics: the director's front address,
/// reachable from the router like a monitoring system on the client side.
const METRICS: &str = "10.0.3.2:9813";

/// A running rvsd in the lab's `dir` namespace.
#[derive(Debug)]
pub(super) struct Rvsd {
    proc: Spawned,
    socket: PathBuf,
    rvsadm: PathBuf,
}

impl Rvsd {
    /// Starts rvsd on `front` and `back` with no services, the XDP fast
    /// path on or off (`fast_path` in its config), all its threads on `cpu`
    /// if given (it runs under `taskset -c CPU`), and waits until it says it
    /// is ready. `slots`: its `fast_path_slots`, if not the default.
    pub(super) fn start(
        lab: &Lab,
        fast_path: bool,
        slots: Option<u32>,
        cpu: Option<usize>,
    ) -> Result<Rvsd> {
        let rvsd = find_bin("rvsd", "RVSD")?;
        let rvsadm = find_bin("rvsadm", "RVSADM")?;
        let config = lab.dir().join("rvsd.toml");
        std::fs::write(
            &config,
            format!(
                "interfaces = [\"front\", \"back\"]\nmetrics_listen = \"{METRICS}\"\n\
                 fast_path = {fast_path}\n{}",
                slots.map_or(String::new(), |n| format!("fast_path_slots = {n}\n"))
            ),
        )
        .with_context(|| format!("writing {}", config.display()))?;
        let socket = lab.dir().join("rvsd.sock");
        let (rvsd, config, socket_s) = (
            rvsd.display().to_string(),
            config.display().to_string(),
            socket.display().to_string(),
        );
        let cpu = cpu.map(|c| c.to_string());
        let mut argv: Vec<&str> = Vec::new();
        if let Some(c) = &cpu {
            // taskset execs rvsd: same pid, and every thread inherits the CPU.
            argv.extend_from_slice(&["taskset", "-c", c]);
        }
        argv.extend_from_slice(&[&rvsd, "--config", &config, "--socket", &socket_s]);
        let proc = lab.spawn("dir", &argv)?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let log = proc.log();
            if log.contains("rvsd: ready") {
                break;
            }
            if !proc.is_running() {
                bail!(
                    "rvsd exited before it was ready; its output:\n{}",
                    log.trim()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "rvsd did not print `rvsd: ready` within {READY_TIMEOUT:?}; its output:\n{}",
                    log.trim()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Rvsd {
            proc,
            socket,
            rvsadm,
        })
    }

    /// rvsd's process id (its threads are counted with it).
    pub(super) fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Runs `rvsadm ARGS` against this rvsd from inside the director's
    /// namespace.
    pub(super) fn rvsadm(&self, lab: &Lab, args: &[&str]) -> Result<String> {
        let bin = self.rvsadm.display().to_string();
        let socket = self.socket.display().to_string();
        let mut argv = vec![bin.as_str(), "--socket", socket.as_str()];
        argv.extend_from_slice(args);
        lab.exec_timeout("dir", &argv, Duration::from_secs(20))
            .with_context(|| format!("rvsadm {}", args.join(" ")))
    }

    /// TCP VIP:80 and UDP VIP:9, round robin over every real server, with
    /// the forwarding method of `mode`.
    pub(super) fn configure(&self, lab: &Lab, mode: Mode) -> Result<()> {
        let method = crate::demo::method_flag(mode);
        let locals: Vec<String> = crate::LOCAL_IPS.iter().map(|a| a.to_string()).collect();
        for (proto, port) in [("-t", 80), ("-u", 9)] {
            let svc = format!("{VIP}:{port}");
            let mut service = vec!["-A", proto, &svc, "-s", "rr"];
            if mode == Mode::FullNat {
                for local in &locals {
                    service.extend(["--laddr", local.as_str()]);
                }
            }
            self.rvsadm(lab, &service)?;
            for i in 1..=lab.spec().servers {
                let rs = format!("{}:{port}", rs_ip(i));
                self.rvsadm(lab, &["-a", proto, &svc, "-r", &rs, method])?;
            }
        }
        Ok(())
    }

    /// Scrapes rvsd's Prometheus endpoint from the router (as a monitoring
    /// system would) and sums the worker verdict counters.
    pub(super) fn scrape(&self, lab: &Lab) -> Result<String> {
        let url = format!("http://{METRICS}/metrics");
        let text = lab
            .exec_timeout(
                "router",
                &["curl", "-s", "--max-time", "5", &url],
                Duration::from_secs(10),
            )
            .with_context(|| format!("scraping {url}"))?;
        let sum = |prefix: &str| -> f64 {
            text.lines()
                .filter(|l| l.starts_with(prefix))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        let forwarded = sum("rvs_worker_packets_total{verdict=\"forwarded\"");
        let forwarded = if forwarded > 0.0 {
            forwarded
        } else {
            text.lines()
                .filter(|l| {
                    l.starts_with("rvs_worker_packets_total") && l.contains("verdict=\"forwarded\"")
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        let dropped: f64 = text
            .lines()
            .filter(|l| l.starts_with("rvs_worker_drops_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        let conns = sum("rvs_service_connections_total");
        if text.lines().filter(|l| l.starts_with("rvs_")).count() == 0 {
            bail!("{url} answered without rvs_ metrics");
        }
        Ok(format!(
            "{} metric samples; forwarded {forwarded}, dropped {dropped}, connections scheduled {conns}",
            text.lines().filter(|l| !l.starts_with('#')).count()
        ))
    }

    /// Stops rvsd (SIGTERM) and returns what it printed.
    pub(super) fn stop(self) -> String {
        match self.proc.stop(Duration::from_secs(5)) {
            Ok((status, log)) if status.success() => log,
            Ok((status, log)) => format!("{log}\n(rvsd exited with {status})"),
            Err(e) => e.to_string(),
        }
    }
}
