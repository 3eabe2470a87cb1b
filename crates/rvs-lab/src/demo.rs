//! `rvs-lab demo`, and the pieces the end-to-end tests share with it: find
//! the sibling `rvsd`/`rvsadm` binaries, run `rvsd` inside a lab's director
//! namespace, and configure it with `rvsadm` exactly as an operator would.
//!
//! The binaries are looked up in the cargo profile directory of the running
//! executable (`target/<profile>/`), so `cargo build --workspace` (or
//! `cargo build -p rvsd -p rvsadm -p rvs-decap`, with `--release` for a
//! release `rvs-lab`) must have run first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use crate::{cmd, rs_ip, rs_ip6, DirectorKind, Lab, LabError, LabSpec, Mode, Spawned, VIP, VIP6};

/// How long rvsd gets to answer on its control socket after starting.
const RVSD_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long rvsd gets to exit on SIGTERM (it detaches XDP first).
const RVSD_STOP_GRACE: Duration = Duration::from_secs(5);
/// Bound for one rvsadm invocation.
const RVSADM_TIMEOUT: Duration = Duration::from_secs(10);

/// Why rvsd could not be run or driven in a lab.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Building or using the lab failed.
    #[error(transparent)]
    Lab(#[from] LabError),
    /// A sibling binary has not been built.
    #[error("`{name}` not found (looked at {searched:?}): build it first with `cargo build -p rvsd -p rvsadm -p rvs-decap` in the same profile as rvs-lab (add --release for a release rvs-lab)")]
    BinaryNotFound {
        /// The binary looked for.
        name: &'static str,
        /// Paths that were tried.
        searched: Vec<PathBuf>,
    },
    /// rvsd died while starting.
    #[error("rvsd exited before its control socket answered ({status}); its output:\n{log}")]
    RvsdExited {
        /// How it exited.
        status: String,
        /// What it printed.
        log: String,
    },
    /// rvsd kept running but never answered `rvsadm -Ln`.
    #[error("rvsd did not answer `rvsadm -Ln` on {socket} within {after:?} (last error: {last}); its output:\n{log}")]
    RvsdNotReady {
        /// The control socket.
        socket: PathBuf,
        /// The bound that was hit.
        after: Duration,
        /// rvsadm's last error.
        last: String,
        /// What rvsd printed.
        log: String,
    },
    /// The demo's arguments do not describe a run.
    #[error("invalid demo arguments: {0}")]
    Invalid(String),
}

/// The scheduler the demo configures (`rvsadm -s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduler {
    /// Round robin: weights only matter as 0 (quiesced) or not.
    Rr,
    /// Weighted round robin: servers get connections in proportion to weight.
    Wrr,
}

impl Scheduler {
    /// The name rvsadm takes after `-s`.
    pub fn name(self) -> &'static str {
        match self {
            Scheduler::Rr => "rr",
            Scheduler::Wrr => "wrr",
        }
    }
}

/// The rvsadm flag that selects the forwarding method a lab is wired for.
pub fn method_flag(mode: Mode) -> &'static str {
    match mode {
        Mode::Dr => "-g",
        Mode::Nat => "-m",
        Mode::Tun => "-i",
        Mode::FullNat => "--fullnat",
    }
}

/// The address family of the demo's service (the lab is dual-stack for 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Family {
    /// The IPv4 service VIP:80 and servers 10.0.2.x.
    #[default]
    V4,
    /// The IPv6 service [VIP6]:80 and servers fd00:2::x.
    V6,
}

/// `-r` argument for real server `n`: NAT names the port (it is rewritten);
/// DR and TUN cannot change it, so like ipvsadm they give the address only
/// (IPv6 in brackets with the port, as ipvsadm takes it).
pub fn real_server_arg(mode: Mode, n: usize) -> String {
    real_server_arg_for(mode, n, Family::V4)
}

/// [`real_server_arg`] for either family.
pub fn real_server_arg_for(mode: Mode, n: usize, family: Family) -> String {
    match (family, mode) {
        (Family::V4, Mode::Nat | Mode::FullNat) => format!("{}:80", rs_ip(n)),
        (Family::V4, Mode::Dr | Mode::Tun) => rs_ip(n).to_string(),
        (Family::V6, _) => format!("[{}]:80", rs_ip6(n)),
    }
}

/// The `-t` argument of the demo's virtual service.
pub fn service_arg() -> String {
    service_arg_for(Family::V4)
}

/// [`service_arg`] for either family.
pub fn service_arg_for(family: Family) -> String {
    match family {
        Family::V4 => format!("{VIP}:80"),
        Family::V6 => format!("[{VIP6}]:80"),
    }
}

/// The cargo profile directory (`target/<profile>`) of the running program:
/// its own directory, or the parent of `deps/` for test binaries.
pub fn profile_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    if dir.file_name().is_some_and(|n| n == "deps") {
        return dir.parent().map(Path::to_path_buf);
    }
    Some(dir.to_path_buf())
}

/// Finds a workspace binary (`rvsd`, `rvsadm`): in [`profile_dir`], else PATH.
pub fn find_binary(name: &'static str) -> Result<PathBuf, DemoError> {
    let mut searched = Vec::new();
    if let Some(dir) = profile_dir() {
        let p = dir.join(name);
        if cmd::is_executable(&p) {
            return Ok(p);
        }
        searched.push(p);
    }
    if let Some(p) = cmd::find_tool(name) {
        return Ok(p);
    }
    searched.push(PathBuf::from(format!("$PATH/{name}")));
    Err(DemoError::BinaryNotFound { name, searched })
}

/// The rvsd configuration the lab uses: the director's two legs and no
/// services (they come from rvsadm).
pub fn rvsd_config() -> String {
    "# Written by rvs-lab: the director's legs. Services are added with rvsadm.\n\
     interfaces = [\"front\", \"back\"]\n"
        .to_owned()
}

/// rvsd running in a lab's director namespace, with the rvsadm to drive it.
/// The lab's teardown stops it if [`Rvsd::stop`] was not called.
#[derive(Debug)]
pub struct Rvsd<'a> {
    lab: &'a Lab,
    role: String,
    /// rvsd itself, or the shell supervising it ([`Rvsd::start_supervised`]).
    process: Spawned,
    /// Where the supervising shell wrote rvsd's pid.
    supervised_pid: Option<PathBuf>,
    socket: PathBuf,
    rvsadm: PathBuf,
}

impl<'a> Rvsd<'a> {
    /// Writes the config into the lab dir, starts `rvsd --config FILE
    /// --socket <labdir>/rvsd.sock` in the `dir` namespace and waits until
    /// `rvsadm -Ln` answers.
    pub fn start(lab: &'a Lab, rvsd: &Path, rvsadm: &Path) -> Result<Rvsd<'a>, DemoError> {
        Self::start_on(lab, "dir", &rvsd_config(), rvsd, rvsadm)
    }

    /// Starts rvsd in director `role` (`dir`, `dir2`, …) on the
    /// configuration text `config`, written to `rvsd.toml` in the lab dir
    /// (`rvsd-ROLE.toml` for the other directors; their sockets likewise).
    pub fn start_on(
        lab: &'a Lab,
        role: &str,
        config_text: &str,
        rvsd: &Path,
        rvsadm: &Path,
    ) -> Result<Rvsd<'a>, DemoError> {
        Self::start_inner(lab, role, config_text, rvsd, rvsadm, None)
    }

    /// [`Rvsd::start_on`] under a shell that runs `post_stop` once rvsd
    /// has exited, however it ended — a crash included — as systemd runs
    /// a unit's `ExecStopPost=`. SIGTERM to the shell ([`Rvsd::stop`])
    /// is passed on to rvsd; [`Rvsd::kill`] signals rvsd itself.
    pub fn start_supervised(
        lab: &'a Lab,
        role: &str,
        config_text: &str,
        rvsd: &Path,
        rvsadm: &Path,
        post_stop: &str,
    ) -> Result<Rvsd<'a>, DemoError> {
        Self::start_inner(lab, role, config_text, rvsd, rvsadm, Some(post_stop))
    }

    fn start_inner(
        lab: &'a Lab,
        role: &str,
        config_text: &str,
        rvsd: &Path,
        rvsadm: &Path,
        post_stop: Option<&str>,
    ) -> Result<Rvsd<'a>, DemoError> {
        let stem = match role {
            "dir" => "rvsd".to_owned(),
            r => format!("rvsd-{r}"),
        };
        let config = lab.dir().join(format!("{stem}.toml"));
        std::fs::write(&config, config_text)
            .map_err(LabError::io(format!("writing {}", config.display())))?;
        let socket = lab.dir().join(format!("{stem}.sock"));
        let (rvsd_s, config_s, socket_s) = (
            rvsd.display().to_string(),
            config.display().to_string(),
            socket.display().to_string(),
        );
        let argv = [
            rvsd_s.as_str(),
            "--config",
            &config_s,
            "--socket",
            &socket_s,
        ];
        let (process, supervised_pid) = match post_stop {
            None => (lab.spawn(role, &argv)?, None),
            Some(post) => {
                let pid_file = lab.dir().join(format!("{stem}.pid"));
                // The first `wait` returns when rvsd exits or a signal
                // arrives (the trap passes it on); the second waits for
                // rvsd's exit either way.
                let script = format!(
                    "\"$@\" & echo $! > {pid}; trap 'kill -TERM $(cat {pid})' TERM INT; \
                     wait; wait; {post}",
                    pid = pid_file.display()
                );
                let mut full = vec!["/bin/sh", "-c", script.as_str(), "rvsd-supervisor"];
                full.extend(argv);
                (lab.spawn(role, &full)?, Some(pid_file))
            }
        };
        let me = Rvsd {
            lab,
            role: role.to_owned(),
            process,
            supervised_pid,
            socket,
            rvsadm: rvsadm.to_owned(),
        };
        me.wait_ready()?;
        Ok(me)
    }

    fn wait_ready(&self) -> Result<(), DemoError> {
        let deadline = Instant::now() + RVSD_START_TIMEOUT;
        let mut last = String::from("socket not created yet");
        loop {
            if !self.process.is_running() {
                return Err(DemoError::RvsdExited {
                    status: "see output".into(),
                    log: self.process.log(),
                });
            }
            if self.socket.exists() {
                match self.rvsadm(&["-Ln"]) {
                    Ok(_) => break,
                    Err(e) => last = e.to_string(),
                }
            }
            if Instant::now() >= deadline {
                return Err(DemoError::RvsdNotReady {
                    socket: self.socket.clone(),
                    after: RVSD_START_TIMEOUT,
                    last,
                    log: self.process.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // The socket may answer a moment before the workers run; rvsd says
        // `rvsd: ready` once both are up.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.process.log().contains("rvsd: ready") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// The control socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// rvsd's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Whether rvsd is still running.
    pub fn is_running(&self) -> bool {
        self.process.is_running()
    }

    /// What rvsd has printed so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Runs `RVSD_SOCKET=<socket> rvsadm ARGS` in the director namespace,
    /// as an operator on the director would, and returns its stdout.
    pub fn rvsadm(&self, args: &[&str]) -> Result<String, LabError> {
        let env = format!("RVSD_SOCKET={}", self.socket.display());
        let bin = self.rvsadm.display().to_string();
        let mut argv: Vec<&str> = vec!["env", &env, &bin];
        argv.extend_from_slice(args);
        self.lab.exec_timeout(&self.role, &argv, RVSADM_TIMEOUT)
    }

    /// The director namespace's role (`dir`, `dir2`, …).
    pub fn role(&self) -> &str {
        &self.role
    }

    /// Kills rvsd with `signal` (SIGKILL: a crash) and returns its output
    /// (supervised: once the post-stop command ran, with the shell's
    /// status).
    pub fn kill(self, signal: libc::c_int) -> Result<(ExitStatus, String), LabError> {
        let Some(pid_file) = &self.supervised_pid else {
            return self.process.stop_with(signal, RVSD_STOP_GRACE);
        };
        let pid = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok());
        if let Some(pid) = pid {
            cmd::signal(pid, signal);
        }
        let deadline = Instant::now() + RVSD_STOP_GRACE;
        while self.process.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.process.stop(RVSD_STOP_GRACE)
    }

    /// Adds one TCP service on VIP:80 with `sched` and real servers
    /// rs1..rsN with `weights`, forwarding as the lab's mode is wired
    /// (`rvsadm -C` first to start over). Returns the rvsadm argument lists
    /// it ran.
    pub fn configure(&self, sched: Scheduler, weights: &[u32]) -> Result<Vec<String>, LabError> {
        self.configure_for(sched, weights, Family::V4)
    }

    /// [`configure`](Self::configure) for a service of either family.
    pub fn configure_for(
        &self,
        sched: Scheduler,
        weights: &[u32],
        family: Family,
    ) -> Result<Vec<String>, LabError> {
        let mode = self.lab.spec().mode;
        let svc = service_arg_for(family);
        let mut service = ["-A", "-t", &svc, "-s", sched.name()]
            .map(String::from)
            .to_vec();
        if mode == Mode::FullNat {
            let local = match family {
                Family::V4 => crate::LOCAL_IP.to_string(),
                Family::V6 => crate::LOCAL_IP6.to_string(),
            };
            service.extend(["--laddr".to_owned(), local]);
        }
        let mut cmds: Vec<Vec<String>> = vec![service];
        for (i, w) in weights.iter().enumerate() {
            let rs = real_server_arg_for(mode, i + 1, family);
            cmds.push(
                [
                    "-a",
                    "-t",
                    &svc,
                    "-r",
                    &rs,
                    method_flag(mode),
                    "-w",
                    &w.to_string(),
                ]
                .map(String::from)
                .to_vec(),
            );
        }
        let mut ran = Vec::new();
        for c in cmds {
            let args: Vec<&str> = c.iter().map(String::as_str).collect();
            self.rvsadm(&args)?;
            ran.push(c.join(" "));
        }
        Ok(ran)
    }

    /// SIGTERM (rvsd detaches XDP and removes its socket), SIGKILL after a
    /// grace period; returns how it exited and everything it printed.
    pub fn stop(self) -> Result<(ExitStatus, String), LabError> {
        self.process.stop(RVSD_STOP_GRACE)
    }
}

/// What `rvs-lab demo` is asked to do.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Forwarding method (and lab wiring).
    pub mode: Mode,
    /// Scheduler of the virtual service.
    pub scheduler: Scheduler,
    /// Number of sequential requests from the client.
    pub requests: usize,
    /// One weight per real server; their number is the number of servers.
    pub weights: Vec<u32>,
    /// Namespace prefix (default: unique).
    pub prefix: Option<String>,
    /// Queues of every veth ([`LabSpec::queues`]).
    pub queues: u32,
    /// Several directors: active/passive with VRRP, or active/active
    /// behind ECMP; `None`: the one director.
    pub ha: Option<Ha>,
    /// The service's address family (one director only).
    pub family: Family,
}

/// How several directors share the work ([`DemoOptions::ha`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ha {
    /// Two directors, keepalived VRRP moving the VIP's next hop; the
    /// master crashes half-way ([`crate::ha`]).
    Vrrp,
    /// This many directors behind the router's ECMP, each announcing the
    /// VIP with BIRD; one leaves and returns ([`crate::ecmp`]).
    Ecmp {
        /// Number of directors, 2..=[`crate::MAX_DIRECTORS`].
        directors: usize,
    },
}

/// Which server answered how often (`"rs1"` → n), plus failed requests
/// under `"(no answer)"`.
pub type Spread = BTreeMap<String, usize>;

/// Label for requests that got no answer.
pub const NO_ANSWER: &str = "(no answer)";

/// One request from the lab's client to the VIP: the server's name, or the
/// error.
pub fn request(lab: &Lab) -> Result<String, LabError> {
    request_for(lab, Family::V4)
}

/// [`request`] to the service of either family.
pub fn request_for(lab: &Lab, family: Family) -> Result<String, LabError> {
    let url = match family {
        Family::V4 => format!("http://{VIP}/"),
        Family::V6 => format!("http://[{VIP6}]/"),
    };
    lab.exec_timeout(
        "client",
        &["curl", "-s", "-S", "-m", "5", &url],
        Duration::from_secs(10),
    )
    .map(|b| b.trim().to_owned())
}

/// The demo's lab: `opts`' mode, servers and queues, `directors`
/// directors with the VIP routed as `vip_route`.
pub(crate) fn lab_spec(
    opts: &DemoOptions,
    directors: usize,
    vip_route: crate::VipRoute,
) -> LabSpec {
    LabSpec {
        prefix: opts.prefix.clone().unwrap_or_else(crate::unique_prefix),
        mode: opts.mode,
        servers: opts.weights.len(),
        director: DirectorKind::None,
        decap_bin: None,
        queues: opts.queues,
        directors,
        vip_route,
    }
}

/// Runs the demo, printing as it goes: the lab, the rvsadm commands, who
/// answered each request, the per-server counts and the `rvsadm -Ln`
/// listing. Everything is torn down on return (and on Ctrl-C).
pub fn run(opts: &DemoOptions) -> Result<Spread, DemoError> {
    if !crate::is_root() {
        return Err(LabError::NotRoot.into());
    }
    if opts.weights.is_empty() || opts.weights.len() > crate::MAX_SERVERS {
        return Err(DemoError::Invalid(format!(
            "--weights needs 1..={} comma-separated numbers (one per real server)",
            crate::MAX_SERVERS
        )));
    }
    if opts.requests == 0 {
        return Err(DemoError::Invalid("--requests must be at least 1".into()));
    }
    if opts.ha.is_some() && opts.family == Family::V6 {
        return Err(DemoError::Invalid(
            "--family 6 runs with one director (no --ha / --directors)".into(),
        ));
    }
    match opts.ha {
        Some(Ha::Vrrp) => return crate::demo_ha::run_vrrp(opts),
        Some(Ha::Ecmp { directors }) => return crate::demo_ha::run_ecmp(opts, directors),
        None => {}
    }
    let rvsd_bin = find_binary("rvsd")?;
    let rvsadm_bin = find_binary("rvsadm")?;
    let weights: Vec<String> = opts.weights.iter().map(u32::to_string).collect();
    println!(
        "rvs-lab demo: {:?} mode, scheduler {}, weights {}, {} requests, {} queue(s) per veth",
        opts.mode,
        opts.scheduler.name(),
        weights.join(","),
        opts.requests,
        opts.queues
    );
    let lab = Lab::build(lab_spec(opts, 1, crate::VipRoute::FirstDirector))?;
    let v6 = opts.family == Family::V6;
    if v6 {
        lab.enable_ipv6()?;
    }
    let server = |i: usize| -> String {
        if v6 {
            rs_ip6(i).to_string()
        } else {
            rs_ip(i).to_string()
        }
    };
    let (client, front, back) = if v6 {
        (
            crate::CLIENT_IP6.to_string(),
            crate::DIR_FRONT_IP6.to_string(),
            crate::DIR_BACK_IP6.to_string(),
        )
    } else {
        (
            crate::CLIENT_IP.to_string(),
            crate::DIR_FRONT_IP.to_string(),
            crate::DIR_BACK_IP.to_string(),
        )
    };
    println!(
        "lab {} is up: client {client} -> router -> director {} (front {front} / back {back}) -> {}",
        lab.prefix(),
        lab.ns("dir"),
        (1..=opts.weights.len())
            .map(|i| format!("rs{i} {}", server(i)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let rvsd = Rvsd::start(&lab, &rvsd_bin, &rvsadm_bin)?;
    println!(
        "rvsd (pid {}) runs in {} with {}; commands below ran there with RVSD_SOCKET={}",
        rvsd.pid(),
        lab.ns("dir"),
        lab.dir().join("rvsd.toml").display(),
        rvsd.socket().display()
    );
    for c in rvsd.configure_for(opts.scheduler, &opts.weights, opts.family)? {
        println!("  # rvsadm {c}");
    }
    let mut spread = Spread::new();
    let url = if v6 {
        format!("http://[{VIP6}]/")
    } else {
        format!("http://{VIP}/")
    };
    println!(
        "{} x `curl -s {url}` from {}:",
        opts.requests,
        lab.ns("client")
    );
    for i in 1..=opts.requests {
        let who = match request_for(&lab, opts.family) {
            Ok(body) => body,
            Err(e) => {
                println!("  request {i:>3}: no answer ({e})");
                *spread.entry(NO_ANSWER.to_owned()).or_insert(0) += 1;
                continue;
            }
        };
        println!("  request {i:>3}: {who}");
        *spread.entry(who).or_insert(0) += 1;
    }
    println!("per server:");
    for (i, w) in opts.weights.iter().enumerate() {
        let name = format!("rs{}", i + 1);
        println!(
            "  {name:<4} {:<10} weight {w:<3} {:>5} requests",
            server(i + 1),
            spread.get(&name).copied().unwrap_or(0)
        );
    }
    if let Some(n) = spread.get(NO_ANSWER) {
        println!("  {NO_ANSWER}: {n}");
    }
    // rvsd publishes its counts every 200 ms: the last requests' closing
    // states (inactive connections) show after the next report.
    std::thread::sleep(std::time::Duration::from_millis(500));
    println!("# rvsadm -Ln");
    print!("{}", rvsd.rvsadm(&["-Ln"])?);
    match rvsd.stop() {
        Ok((status, _)) => println!("rvsd stopped ({status})"),
        Err(e) => println!("rvsd: {e}"),
    }
    drop(lab);
    println!("lab torn down");
    Ok(spread)
}
