//! rvsd: the RVS director daemon. See docs/rvsd.md.

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::Parser;
use rvs_datapath::{ConnCapacity, XdpDatapath, XdpModePolicy, XskConfig, XskGroup};
use rvs_engine::{Engine, Snapshot};

mod config;
mod director;
mod estimator;
mod handover;
mod health;
mod kernel;
mod logging;
mod metrics;
mod notify;
mod privilege;
mod sync;
mod watch;
mod worker;

use director::{Director, Handler};
use worker::{Plane, Report, Shared, Worker};

/// The RVS director daemon: XDP + AF_XDP load balancing with ipvsadm semantics.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Configuration file (TOML; see docs/rvsd.md).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Control socket path (default /run/rvs/rvsd.sock or $RVSD_SOCKET).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Directory on a BPF file system where the XDP program's links and
    /// connection maps are pinned, so that established connections outlive
    /// a restart (default /sys/fs/bpf/rvs/<the socket path, escaped>;
    /// skipped with a warning when that is not on a bpffs).
    #[arg(long, value_name = "DIR")]
    pin_dir: Option<PathBuf>,
    /// XDP attach mode: auto (native, else generic), native or generic.
    #[arg(long, default_value = "auto", value_parser = ["auto", "native", "generic"])]
    xdp_mode: String,
    /// Validate FILE and report every error with its line; apply nothing.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check_config: Option<PathBuf>,
    /// Print the man page or a shell completion script and exit (for
    /// packaging).
    #[arg(long, value_name = "WHAT", hide = true)]
    generate: Option<Generated>,
    /// Internal: run scripts for rvsd as UID:GID (privilege.rs).
    #[arg(long, value_name = "UID:GID", hide = true)]
    script_runner: Option<String>,
}

/// What `--generate` prints.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Generated {
    /// rvsd.8, from these very definitions.
    Man,
    /// Completion scripts.
    Bash,
    Zsh,
    Fish,
}

/// Writes what `--generate` asked for to stdout.
fn generate(what: Generated) -> std::io::Result<()> {
    use clap::CommandFactory;
    let mut cmd = Args::command();
    let mut out = std::io::stdout().lock();
    let shell = match what {
        Generated::Man => return clap_mangen::Man::new(cmd).section("8").render(&mut out),
        Generated::Bash => clap_complete::Shell::Bash,
        Generated::Zsh => clap_complete::Shell::Zsh,
        Generated::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut cmd, "rvsd", &mut out);
    Ok(())
}

fn random_seeds() -> [u64; 4] {
    let mut b = [0u8; 32];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    let mut s = [0u64; 4];
    for (i, c) in b.chunks_exact(8).enumerate() {
        s[i] = u64::from_ne_bytes(c.try_into().unwrap_or([0; 8]));
    }
    s
}

fn main() {
    logging::init();
    let args = Args::parse();
    if let Some(who) = &args.script_runner {
        std::process::exit(privilege::script_runner_main(who));
    }
    if let Some(what) = args.generate {
        if let Err(e) = generate(what) {
            eprintln!("rvsd: writing the {what:?} output: {e}");
            std::process::exit(1);
        }
        return;
    }
    if let Some(path) = &args.check_config {
        std::process::exit(config::check(path));
    }
    if let Err(e) = run(args) {
        eprintln!("rvsd: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let start = config::start(args.config.as_deref())?;
    let (config, plan, metrics_listen) = (start.config, start.plan, start.metrics_listen);
    let start_sync = start.sync_daemons;
    let ifaces = config.interfaces.clone();
    let where_ = args
        .config
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let snapshot = Snapshot::new(config.clone()).map_err(|e| anyhow!("{where_}: {e}"))?;

    let privileges = start.privileges;
    // Setup runs on this one thread (privilege.rs): a runtime without
    // threads of its own binds the socket, the serving one starts after
    // the capabilities are dropped.
    let (listener, socket_file, socket) = {
        let setup = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let _in_setup = setup.enter();
        // The socket first: a second rvsd fails here, before it touches
        // the interfaces the first one runs on. Only the socket file this
        // daemon created is removed when it stops.
        let socket = rvs_api::socket_path(args.socket.as_deref());
        let group = privileges.socket_group.as_ref().map(|g| g.gid);
        let (listener, file) = rvs_api::bind_with(&socket, group)
            .with_context(|| format!("binding the control socket {}", socket.display()))?;
        (listener.into_std()?, file, socket)
    };
    if let Some(u) = &privileges.user {
        // rvsd's own user removes the socket at stop.
        std::os::unix::fs::chown(&socket, Some(u.uid), None)
            .with_context(|| format!("giving {} to user {}", socket.display(), u.user))?;
    }

    // Kernel facts by event (watch.rs): subscribed before the neighbour
    // table is read, so no change falls in between.
    let watch = watch::Watch::start(&ifaces, &config.routes)?;
    let shared = Arc::new(Shared::new(Arc::clone(&snapshot), watch.table()));

    let policy = match args.xdp_mode.as_str() {
        "native" => XdpModePolicy::Native,
        "generic" => XdpModePolicy::Generic,
        _ => XdpModePolicy::Auto,
    };
    let (resolve_tx, resolve_rx) = mpsc::sync_channel(1024);
    let mut worker = None;
    let plane = if ifaces.is_empty() {
        None
    } else {
        // What a previous rvsd pinned (handover.rs): adopted below, its
        // links taken over once the maps are filled.
        let mut carried = handover::open(args.pin_dir.as_deref(), &socket)?;
        // One XDP program on every interface, its maps shared by all of
        // them; attached once they hold what a frame may need.
        let ifindexes: Vec<u32> = ifaces.iter().map(|i| i.index.0).collect();
        let mut datapath = XdpDatapath::load_detached(
            &ifindexes,
            ConnCapacity {
                connections: config.max_connections,
                fast_path_slots: config.fast_path_slots,
            },
        )?;
        // A socket on every RX queue of every interface, one UMEM, one
        // thread; room for the queues an interface may gain later (the
        // worker binds them as they appear): up to what the kernel
        // allocated, but no more than doubling the queues in use or one
        // queue per CPU, since NICs allocate far more than anyone runs.
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        let mut sockets = Vec::new();
        let mut spare_sockets = 0;
        for i in &ifaces {
            let in_use = kernel::rx_queues(&i.name);
            for q in 0..in_use {
                sockets.push((i.index.0, q));
            }
            let capacity = kernel::rx_queue_capacity(&i.name)?;
            spare_sockets += capacity.saturating_sub(in_use).min(in_use.max(cpus));
        }
        let xsk_config = XskConfig {
            spare_sockets,
            ..XskConfig::default()
        };
        let group =
            XskGroup::with_queues(&sockets, &xsk_config).context("setting up AF_XDP sockets")?;
        for (slot, &(ifindex, queue)) in sockets.iter().enumerate() {
            datapath.register_socket(ifindex, queue, group.socket_fd(slot))?;
        }
        tracing::info!(sockets = sockets.len(), bind = ?group.mode(0), "AF_XDP sockets bound on every queue");
        let datapath = Arc::new(Mutex::new(datapath));
        let report = Arc::new(Mutex::new(Report::default()));
        let (commands, command_rx) = mpsc::channel();
        let mut w = Worker {
            group,
            engine: Engine::new(Arc::clone(&snapshot), random_seeds()),
            datapath: Arc::clone(&datapath),
            shared: Arc::clone(&shared),
            report: Arc::clone(&report),
            resolve: resolve_tx.clone(),
            commands: command_rx,
            sync: None,
            queue_failures: Vec::new(),
        };
        if let Some(c) = &carried {
            let flows = c
                .inherited
                .flows()
                .context("reading the previous rvsd's connections")?;
            w.adopt(&flows);
        }
        // Services and VIPs (the director installs them again, the same),
        // adopted connections: the maps hold what a frame may need, so
        // attach, or swap this program into the previous rvsd's links.
        let mut dp = datapath
            .lock()
            .map_err(|_| anyhow!("datapath lock poisoned"))?;
        director::prefill_steering(&mut dp, &snapshot.steering())
            .context("filling the XDP maps")?;
        dp.attach(
            policy,
            carried
                .take()
                .map(|c: handover::Carried| (c.pins, c.inherited)),
        )?;
        if let (Some(dir), Some(u)) = (dp.pin_dir(), &privileges.user) {
            // rvsd's own user removes its pins at stop.
            handover::give_to(dir, u.uid)?;
        }
        for a in dp.interfaces() {
            tracing::info!(interface = %a.name, mode = ?a.mode, "XDP program attached");
        }
        drop(dp);
        worker = Some(w);
        Some(Plane {
            datapath,
            report,
            commands,
        })
    };
    // Scripts run in a process of their own, as the script user.
    let mut runner = privilege::spawn_script_runner(&privileges.script)?;
    let probe = plane.as_ref().map(|p| {
        let d = Arc::clone(&p.datapath);
        move || d.lock().is_ok_and(|d| d.vips().is_ok())
    });
    let kept = privilege::drop_privileges(
        privileges.user.as_ref(),
        probe.as_ref().map(|p| p as &dyn Fn() -> bool),
    )?;
    tracing::info!(capabilities = ?kept.caps, bounding_set_narrowed = kept.bounding, user = ?privileges.user.as_ref().map(|u| &u.user), script_user = %privileges.script.user, "set up; privileges dropped");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let in_runtime = rt.enter();
    let listener = tokio::net::UnixListener::from_std(listener)?;
    if let (Some(stdin), Some(stdout)) = (runner.stdin.take(), runner.stdout.take()) {
        let runner = rvs_health::script::ScriptRunner::new(
            tokio::process::ChildStdin::from_std(stdin)?,
            tokio::process::ChildStdout::from_std(stdout)?,
        );
        let _ = rvs_health::script::install(runner);
    }
    let worker_thread = match worker {
        Some(w) => Some(
            std::thread::Builder::new()
                .name("rvs-worker".into())
                .spawn(move || w.run())?,
        ),
        None => None,
    };

    // Next hops the worker has no MAC for: the kernel is asked to resolve
    // them (the answer comes as a neighbour notification).
    let resolve_stop = Arc::clone(&shared);
    let resolver = std::thread::Builder::new()
        .name("rvs-resolve".into())
        .spawn(move || watch::resolve_next_hops(resolve_rx, &resolve_stop.stop))?;

    let (health_tx, mut health_rx) = tokio::sync::mpsc::channel(256);
    let monitor = rvs_health::HealthMonitor::new(health_tx)?;
    let mut health = health::Health::new(Some(monitor));
    health.replace_plan(plan);
    let director = Director::new(
        config,
        health,
        args.config.clone(),
        plane,
        Arc::clone(&shared),
    )?;
    let mut director = director;
    director.start_sync(&start_sync)?;
    let handler = Arc::new(Handler(Mutex::new(director)));
    let datapath = handler.0.lock().ok().and_then(|d| d.datapath());
    // Neighbour changes go to the worker, interface and route changes to
    // the director (validated whole, as a reload).
    let kernel_thread = {
        let shared = Arc::clone(&shared);
        let handler = Arc::clone(&handler);
        std::thread::Builder::new()
            .name("rvs-kernel".into())
            .spawn(move || {
                watch.run(
                    &shared.stop,
                    |table| shared.neighbors.store(Arc::new(table)),
                    |ifaces, routes| handler.apply_facts(ifaces, routes),
                )
            })?
    };

    let served = rt.block_on(async {
        // Health events change the effective pool.
        let events = Arc::clone(&handler);
        tokio::spawn(async move {
            while let Some(ev) = health_rx.recv().await {
                let h = Arc::clone(&events);
                let _ = tokio::task::spawn_blocking(move || h.on_health(&ev)).await;
            }
        });
        if let Some(addr) = metrics_listen {
            let m = Arc::clone(&handler);
            let state: Arc<dyn Fn() -> String + Send + Sync> =
                Arc::new(move || m.0.lock().map(|d| d.metrics_text()).unwrap_or_default());
            tokio::spawn(async move {
                if let Err(e) = metrics::serve(addr, state).await {
                    tracing::error!(%addr, error = %e, "metrics endpoint failed");
                }
            });
        }
        // SIGHUP reloads the configuration file.
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let reload = Arc::clone(&handler);
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the configuration");
                let h = Arc::clone(&reload);
                let _ = tokio::task::spawn_blocking(move || h.reload()).await;
            }
        });
        tracing::info!(socket = %socket.display(), "rvsd: ready");
        notify::ready(&format!("ready; control socket {}", socket.display()));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        // IPVS's rate estimator runs every 2 s.
        let rates = Arc::clone(&handler);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(estimator::TICK);
            loop {
                tick.tick().await;
                let h = Arc::clone(&rates);
                let _ = tokio::task::spawn_blocking(move || h.tick_rates()).await;
            }
        });
        let mut usr2 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined2())?;
        tokio::select! {
            never = rvs_api::serve_with_access(listener, Arc::clone(&handler), rvs_api::Limits::default(), rvs_api::Access { read_only_group: privileges.socket_group.clone() }) => match never {},
            _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: shutting down"); Ok(Stop::ForGood) }
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); Ok(Stop::ForGood) }
            _ = usr2.recv() => {
                tracing::info!("SIGUSR2: stopping for a successor; established connections keep flowing");
                Ok(Stop::ForSuccessor)
            }
        }
    });

    notify::stopping();
    let handing_over = matches!(served, Ok(Stop::ForSuccessor));
    let (last, queued) = handler
        .0
        .lock()
        .map(|mut d| d.shutdown())
        .unwrap_or_default();
    if handing_over {
        // The services go on under the successor: no quorum_down, and the
        // program stays attached with its state pinned (if it is).
        if let Some(dp) = &datapath {
            match dp.lock() {
                Ok(mut dp) if dp.pin_dir().is_some() => dp.keep_for_successor(),
                _ => tracing::warn!(
                    "no pinned state (no BPF file system): stopping as for good, connections end"
                ),
            }
        }
    } else {
        // omega: quorum_down for services that ask for it, before stopping.
        rt.block_on(async {
            // After the quorum commands still running or queued (bounded
            // by their own 30 s timeouts).
            if let Some(q) = queued {
                let _ = tokio::time::timeout(Duration::from_secs(65), q).await;
            }
            for c in last {
                tracing::info!(command = %c.command, "running quorum_down (omega)");
                let _ = rvs_health::run_command(&c.command, Duration::from_secs(10)).await;
            }
        });
    }
    shared.stop.store(true, Ordering::Relaxed);
    if let Some(w) = worker_thread {
        let _ = w.join();
    }
    let _ = kernel_thread.join();
    let _ = resolver.join();
    // Dropping the director detaches XDP from every interface (unless kept
    // for a successor).
    drop(datapath);
    drop(handler);
    // The runner ends when its stdin closes (with the runtime's tasks).
    drop(in_runtime);
    rt.shutdown_timeout(Duration::from_secs(2));
    for _ in 0..30 {
        if !matches!(runner.try_wait(), Ok(None)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if matches!(runner.try_wait(), Ok(None)) {
        let _ = runner.kill();
        let _ = runner.wait();
    }
    let xdp = if handing_over {
        "XDP left attached for the next rvsd"
    } else {
        "XDP detached"
    };
    if socket_file.remove() {
        tracing::info!("rvsd stopped; {xdp}, socket removed");
    } else {
        tracing::warn!(socket = %socket.display(), "rvsd stopped; {xdp}; the socket path is no longer this daemon's socket and was left alone");
    }
    served.map(|_| ())
}

/// How rvsd was asked to stop.
enum Stop {
    /// SIGTERM, SIGINT: detach and forget.
    ForGood,
    /// SIGUSR2: leave established flows to the XDP program for the next rvsd.
    ForSuccessor,
}
