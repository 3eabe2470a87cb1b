//! A Linux Virtual Server test bed in network namespaces.
//!
//! [`Lab::build`] wires a client, a router, a director and N real servers
//! (nginx) the way an LVS site is wired, inside namespaces named after a
//! unique prefix, and [`Drop`] removes exactly those namespaces again (also
//! on panic, and on SIGINT/SIGTERM through [`install_signal_handler`]).
//! Demos, benchmarks and end-to-end tests share this one topology so their
//! numbers and results are comparable.
//!
//! ```text
//!  client 10.0.1.2 ── 10.0.1.1 router 10.0.3.1 ── 10.0.3.2 (front) dir
//!                               br0 10.0.2.1                  (back) 10.0.2.10
//!                                │ server LAN (bridge in router) │
//!                      rs1 10.0.2.11, rs2 10.0.2.12, ... ────────┘
//!  VIP 10.0.100.1/32 is routed by the router to the director (front).
//! ```
//!
//! With [`LabSpec::directors`] > 1 (high availability, scale-out) every
//! director's legs join shared L2 segments, as the directors of an LVS
//! cluster share their LANs: `front` a bridge `brf` in the router (the
//! router's 10.0.3.1 on it; director *k* at 10.0.3.(1+k)), `back` the server
//! LAN `br0` (director 1 at 10.0.2.10, director *k* ≥ 2 at 10.0.2.(100+k)),
//! and a third leg `sync0` on a bridge `brs` in the router that carries only
//! the sync daemons' multicast (director *k* at 10.0.4.*k*). Directors are
//! named `dir`, `dir2`, `dir3`, …; [`LabSpec::vip_route`] says how the
//! router reaches the VIP (a floating VRRP address, or routes a routing
//! daemon installs), and the directors do not forward in the kernel: a
//! director whose rvsd is gone must drop, not route, what still reaches it
//! (a NAT reply forwarded untranslated would make the client reset the
//! connection).
//!
//! ```text
//!                  router: brf 10.0.3.1 ─┬─ dir (front 10.0.3.2) ─ back 10.0.2.10 ─┐
//!                                        ├─ dir2 (10.0.3.3)     ─ back 10.0.2.102 ─┤ br0
//!                          brs (no addr) ┴─ sync0 10.0.4.k on every director       │
//! ```
//!
//! Every veth is made to behave like a NIC for XDP and multi-queue work:
//!
//! - **Queues**: each pair is created with `numtxqueues N numrxqueues N` on
//!   both ends ([`LabSpec::queues`], default 1). A veth puts a packet sent
//!   on TX queue *i* into the peer's RX queue *i*, and the kernel picks the TX
//!   queue by flow hash, so many flows spread over the peer's RX queues as
//!   RSS spreads them on a NIC (`ethtool -S dev` shows per-queue counters).
//! - **GRO on** (`ethtool -K dev gro on`): a veth runs NAPI on its RX queues
//!   only when an XDP program is attached or GRO is on, and a frame that is
//!   `XDP_REDIRECT`ed (or `XDP_TX`ed) into a veth is taken only when the
//!   receiving peer runs NAPI; otherwise it is dropped. A NIC always takes
//!   them, so every veth end runs NAPI from the start. It also makes every
//!   RX queue a NAPI instance that can run in its own kernel thread
//!   ([`Lab::thread_napi`]).
//! - **TX checksum offload off** (`ethtool -K dev tx off`): a veth hands the
//!   peer a packet with a *partial* checksum that the kernel would complete
//!   on a real NIC; a user-space director that receives the frame through
//!   AF_XDP and rewrites it would forward that partial checksum and the
//!   receiver would drop the segment. (This also turns TSO off, so every
//!   packet a veth sends goes through the peer's NAPI, none through the
//!   backlog of the sending CPU.)

pub mod bench;
mod cmd;
mod conf;
mod error;
mod pcap;

pub mod demo;
mod demo_ha;
pub mod ecmp;
pub mod flood;
pub mod ha;
mod ipv6;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rvs_netns::{End, Netns, Veth};

pub use conf::BIG_PAGE_BYTES;
pub use error::LabError;
pub use ipv6::{
    rs_ip6, CLIENT_IP6, DIR_BACK_IP6, DIR_FRONT_IP6, ROUTER_CLIENT_IP6, ROUTER_DIR_IP6,
    ROUTER_LAN_IP6, VIP6,
};
pub use pcap::{read_pcap, Pcap, LINKTYPE_ETHERNET};

/// The virtual service address clients connect to.
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 100, 1);
/// The client's address (`client` eth0).
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
/// The router's address toward the client (the client's gateway).
pub const ROUTER_CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);
/// The router's address toward the director's front leg.
pub const ROUTER_DIR_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 3, 1);
/// The router's address on the server LAN (`br0`).
pub const ROUTER_LAN_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 1);
/// The director's client-side address (`dir` front); the VIP is routed here.
pub const DIR_FRONT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 3, 2);
/// The director's server-side address (`dir` back), the DIP.
pub const DIR_BACK_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 10);
/// FullNAT's local addresses, on the director's back leg in
/// [`Mode::FullNat`]: three, so that the bench's 64 000 UDP flows from one
/// client find ports (31 744 per address and protocol by default).
pub const LOCAL_IPS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(10, 0, 2, 200),
    Ipv4Addr::new(10, 0, 2, 201),
    Ipv4Addr::new(10, 0, 2, 202),
];
/// The first of [`LOCAL_IPS`], what a service with one local address uses.
pub const LOCAL_IP: Ipv4Addr = LOCAL_IPS[0];
/// [`LOCAL_IP`] of a dual-stack lab.
pub const LOCAL_IP6: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 0x200);
/// The UDP port the TUN servers' rvs-decap receives GUE on
/// (`--tun-type gue --tun-port GUE_PORT`).
pub const GUE_PORT: u16 = 6080;
/// Most real servers a lab can have (10.0.2.11 ..= 10.0.2.99).
pub const MAX_SERVERS: usize = 89;
/// Most queues a lab's veths can have (the RVS XDP filter serves 64).
pub const MAX_QUEUES: u32 = 64;
/// Most directors a lab can have.
pub const MAX_DIRECTORS: usize = 9;
/// The address VRRP floats on the front segment ([`VipRoute::Floating`]):
/// the router routes the VIP to it.
pub const FLOATING_FRONT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 3, 254);
/// The address VRRP floats on the server LAN ([`VipRoute::Floating`]): the
/// NAT real servers' gateway, so their replies follow the active director.
pub const FLOATING_BACK_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 254);

/// Role (namespace suffix) of director `k` (1-based): `dir`, `dir2`, ….
pub fn director_role(k: usize) -> String {
    if k <= 1 {
        "dir".to_owned()
    } else {
        format!("dir{k}")
    }
}

/// Front (client-side) address of director `k`: 10.0.3.(1+k).
pub fn dir_front_ip(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 3, 1 + k.clamp(1, MAX_DIRECTORS) as u8)
}

/// Back (server LAN) address of director `k`: [`DIR_BACK_IP`] for the
/// first, 10.0.2.(100+k) for the others (10.0.2.11..=99 are servers').
pub fn dir_back_ip(k: usize) -> Ipv4Addr {
    match k {
        0 | 1 => DIR_BACK_IP,
        k => Ipv4Addr::new(10, 0, 2, 100 + k.min(MAX_DIRECTORS) as u8),
    }
}

/// Sync-segment address of director `k` (its `sync0` leg): 10.0.4.k.
pub fn dir_sync_ip(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 4, k.clamp(1, MAX_DIRECTORS) as u8)
}

/// How the router reaches the VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VipRoute {
    /// A static route to the first director's front address (one director).
    FirstDirector,
    /// A static route to [`FLOATING_FRONT_IP`], which VRRP (keepalived)
    /// moves between directors; NAT servers' gateway is
    /// [`FLOATING_BACK_IP`].
    Floating,
    /// No route from the lab: a routing daemon (BIRD over BGP) installs one
    /// path per director that announces the VIP.
    Announced,
}

/// Address of real server `n` (1-based): 10.0.2.(10+n).
pub fn rs_ip(n: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 2, 10 + n.clamp(1, MAX_SERVERS) as u8)
}

/// How the real servers are wired, after the LVS forwarding method the
/// director will use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Direct routing: VIP on each server's `lo` with arp_ignore=1 /
    /// arp_announce=2; servers reply through the router.
    Dr,
    /// NAT: servers' default gateway is the director's back leg.
    Nat,
    /// Tunnel: each server runs `rvs-decap --vip VIP` and replies through
    /// the router; it takes IPIP, GUE on [`GUE_PORT`] and GRE, so the
    /// director may use any `--tun-type`.
    Tun,
    /// FullNAT (RVS's extension): servers hold no VIP and their default
    /// gateway is the router, not the director; the director holds the
    /// local addresses [`LOCAL_IPS`] on its back leg, which servers answer.
    FullNat,
}

/// What, if anything, the lab itself runs as the director, so benchmarks can
/// compare RVS with kernel baselines on the same hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectorKind {
    /// Nothing: the caller attaches its director (XDP) to `front`/`back`.
    None,
    /// No balancing: the director's namespace routes the VIP to rs1 over
    /// `back` (rs1 holds the VIP on `lo`): plain kernel forwarding through the
    /// same hop, the same legs and the same veths RVS uses.
    KernelRoute,
    /// nftables DNAT on the director (`numgen inc` over the servers), servers
    /// wired with the director as gateway.
    NftDnat,
    /// HAProxy `mode tcp` round robin on the director, which holds the VIP on
    /// `lo`; servers answer HAProxy's address directly.
    Haproxy,
}

/// Everything [`Lab::build`] needs to know.
///
/// `LabSpec { prefix, mode, servers, director, ..Default::default() }`
/// leaves `decap_bin` to be found next to the running executable.
#[derive(Debug, Clone)]
pub struct LabSpec {
    /// Namespace name prefix; must be unique on the machine (see
    /// [`unique_prefix`]). Lowercase letters and digits, at most 20.
    pub prefix: String,
    /// How the real servers are wired.
    pub mode: Mode,
    /// Number of real servers, 1..=[`MAX_SERVERS`].
    pub servers: usize,
    /// Which director, if any, the lab runs itself.
    pub director: DirectorKind,
    /// The `rvs-decap` binary for [`Mode::Tun`]. `None`: `$RVS_DECAP`, then
    /// `rvs-decap` beside the current executable or in its parent directory
    /// (where cargo puts it relative to test binaries), then PATH.
    pub decap_bin: Option<PathBuf>,
    /// TX and RX queues of every veth (both ends), 1..=[`MAX_QUEUES`].
    pub queues: u32,
    /// Number of directors, 1..=[`MAX_DIRECTORS`]; more than one shares
    /// the front, server and sync segments (see the module doc).
    pub directors: usize,
    /// How the router reaches the VIP; [`VipRoute::FirstDirector`] is the
    /// only choice for one director and not one for several.
    pub vip_route: VipRoute,
}

impl Default for LabSpec {
    fn default() -> LabSpec {
        LabSpec {
            prefix: unique_prefix(),
            mode: Mode::Dr,
            servers: 3,
            director: DirectorKind::None,
            decap_bin: None,
            queues: 1,
            directors: 1,
            vip_route: VipRoute::FirstDirector,
        }
    }
}

/// A prefix no other process (and no other lab of this one) uses; the
/// namespaces' own harness makes it (`rvs<pid in base 36><letters>`).
pub use rvs_netns::unique_prefix;

/// Bound for [`Lab::exec`]; a lab command that takes longer is stuck.
const EXEC_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound for one setup command.
const SETUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a spawned process gets to exit on SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// How long a drop waits for a teardown another thread is running.
const TEARDOWN_WAIT: Duration = Duration::from_secs(30);

/// Live state shared by a [`Lab`], its [`Spawned`] guards and the signal
/// handler; torn down exactly once.
#[derive(Debug)]
struct State {
    namespaces: Vec<Netns>,
    children: HashMap<u64, Child>,
    next_child: u64,
    tmp: PathBuf,
    /// Only a temp dir this lab created is removed again.
    tmp_created: bool,
    torn_down: bool,
    /// The teardown has finished (namespaces and temp dir are gone).
    teardown_done: bool,
    /// NAPI kernel threads per (namespace, device), see [`Lab::thread_napi`].
    napi_threads: HashMap<(String, String), Vec<u32>>,
}

type Shared = Arc<Mutex<State>>;

/// Labs not torn down yet, for the SIGINT/SIGTERM handler.
static LIVE: Mutex<Vec<Shared>> = Mutex::new(Vec::new());

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// Installs (once per process) a SIGINT/SIGTERM handler that tears down
/// every live lab and exits with status 130 (rvs-netns's handler, which
/// then removes any namespace left). [`Lab::build`] calls it; a program
/// with its own handler keeps it (the lab then relies on `Drop`) and should
/// call [`teardown_all`] from it.
pub fn install_signal_handler() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let r = rvs_netns::on_signal(|| {
            eprintln!("rvs-lab: signal received, tearing down labs");
            teardown_all();
        });
        if let Err(e) = r {
            tracing::warn!(
                "rvs-lab: not installing a signal handler ({e}); labs are removed on drop only"
            );
        }
    });
}

/// Tears down every lab of this process that is still alive.
pub fn teardown_all() {
    let labs: Vec<Shared> = LIVE.lock().map(|v| v.clone()).unwrap_or_default();
    for s in labs {
        teardown(&s);
    }
}

fn teardown(shared: &Shared) {
    let (namespaces, tmp) = {
        let mut st = lock(shared);
        if st.torn_down {
            // Another thread (the signal handler) is tearing it down: wait
            // until it is done, or a caller returning now (main, on the
            // error a vanished namespace caused) would end the process
            // before the temp dir is removed.
            let deadline = Instant::now() + TEARDOWN_WAIT;
            while !st.teardown_done && Instant::now() < deadline {
                drop(st);
                std::thread::sleep(Duration::from_millis(20));
                st = lock(shared);
            }
            return;
        }
        st.torn_down = true;
        for child in st.children.values() {
            cmd::signal(child.id(), libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_GRACE;
        for child in st.children.values_mut() {
            if !matches!(cmd::wait_until(child, deadline), Ok(Some(_))) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        st.children.clear();
        let tmp = st.tmp_created.then(|| st.tmp.clone());
        (std::mem::take(&mut st.namespaces), tmp)
    };
    // Anything still inside (nginx workers, a capture) goes with each.
    for ns in namespaces {
        if let Err(e) = ns.remove() {
            tracing::warn!("{e}");
        }
    }
    if let Some(tmp) = tmp {
        if let Err(e) = std::fs::remove_dir_all(&tmp) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("removing {}: {e}", tmp.display());
            }
        }
    }
    if let Ok(mut live) = LIVE.lock() {
        live.retain(|s| !Arc::ptr_eq(s, shared));
    }
    lock(shared).teardown_done = true;
}

/// A built lab. Dropping it kills what it spawned and deletes its
/// namespaces and temp dir.
#[derive(Debug)]
pub struct Lab {
    spec: LabSpec,
    tmp: PathBuf,
    shared: Shared,
}

impl Lab {
    /// Checks the machine, then builds the topology for `spec`, starts nginx
    /// on every server and the baseline director if one was asked for. On
    /// any error everything created so far is removed again.
    pub fn build(spec: LabSpec) -> Result<Lab, LabError> {
        preflight(&spec)?;
        let decap = match spec.mode {
            Mode::Tun => Some(find_decap(spec.decap_bin.as_deref())?),
            _ => None,
        };
        install_signal_handler();
        let tmp = std::env::temp_dir().join(format!("rvs-lab-{}", spec.prefix));

        let shared = Arc::new(Mutex::new(State {
            namespaces: Vec::new(),
            children: HashMap::new(),
            next_child: 0,
            tmp: tmp.clone(),
            tmp_created: false,
            torn_down: false,
            teardown_done: false,
            napi_threads: HashMap::new(),
        }));
        if let Ok(mut live) = LIVE.lock() {
            live.push(Arc::clone(&shared));
        }
        // From here on, `lab` owns everything: an early return drops it.
        let lab = Lab { spec, tmp, shared };
        // Everything that creates something does so through `guarded`, so a
        // signal-triggered teardown racing the build cannot miss it.
        lab.guarded(|st| {
            std::fs::create_dir(&st.tmp).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    LabError::PrefixInUse {
                        prefix: lab.spec.prefix.clone(),
                        existing: format!("directory {}", st.tmp.display()),
                    }
                } else {
                    LabError::io(format!("creating {}", st.tmp.display()))(e)
                }
            })?;
            st.tmp_created = true;
            Ok(())
        })?;
        let started = Instant::now();
        lab.wire()?;
        lab.start_servers(decap.as_deref())?;
        lab.start_director()?;
        tracing::info!(
            prefix = %lab.spec.prefix,
            "lab up in {:?}",
            started.elapsed()
        );
        Ok(lab)
    }

    /// Runs `f` under the state lock unless the lab was torn down.
    fn guarded<T>(&self, f: impl FnOnce(&mut State) -> Result<T, LabError>) -> Result<T, LabError> {
        let mut st = lock(&self.shared);
        if st.torn_down {
            return Err(LabError::TornDown {
                prefix: self.spec.prefix.clone(),
            });
        }
        f(&mut st)
    }

    /// The prefix every namespace name starts with.
    pub fn prefix(&self) -> &str {
        &self.spec.prefix
    }

    /// The spec the lab was built from.
    pub fn spec(&self) -> &LabSpec {
        &self.spec
    }

    /// The lab's temp dir (configs, logs, captures); removed on teardown.
    pub fn dir(&self) -> &Path {
        &self.tmp
    }

    /// Roles of this lab in creation order: client, router, dir,
    /// dir2..dirM, rs1..rsN.
    pub fn roles(&self) -> Vec<String> {
        let mut r: Vec<String> = ["client", "router"].map(String::from).to_vec();
        r.extend(self.directors());
        r.extend((1..=self.spec.servers).map(|i| format!("rs{i}")));
        r
    }

    /// Roles of the directors: `dir`, `dir2`, ….
    pub fn directors(&self) -> Vec<String> {
        (1..=self.spec.directors).map(director_role).collect()
    }

    /// Full namespace name of `role` (`client`, `router`, `dir`, `rsN`), for
    /// `ip netns exec` and for callers that attach programs themselves. A
    /// full name of one of this lab's namespaces is returned unchanged.
    pub fn ns(&self, role: &str) -> String {
        match role.strip_prefix(&format!("{}-", self.spec.prefix)) {
            Some(_) => role.to_owned(),
            None => format!("{}-{role}", self.spec.prefix),
        }
    }

    fn checked_ns(&self, role: &str) -> Result<String, LabError> {
        let ns = self.ns(role);
        let bare = &ns[self.spec.prefix.len() + 1..];
        if self.roles().iter().any(|r| r == bare) {
            Ok(ns)
        } else {
            Err(LabError::UnknownRole {
                role: role.to_owned(),
                prefix: self.spec.prefix.clone(),
                servers: self.spec.servers,
            })
        }
    }

    fn ns_command(&self, role: &str, args: &[&str]) -> Result<Command, LabError> {
        let ns = self.checked_ns(role)?;
        if args.is_empty() {
            return Err(LabError::InvalidSpec("empty command".into()));
        }
        Ok(rvs_netns::command(&ns, args))
    }

    /// Runs `args` inside `role`'s namespace, waits (at most 120 s) and
    /// returns its stdout; a non-zero exit is an error with its stderr.
    pub fn exec(&self, role: &str, args: &[&str]) -> Result<String, LabError> {
        self.exec_timeout(role, args, EXEC_TIMEOUT)
    }

    /// [`Lab::exec`] with an explicit bound.
    pub fn exec_timeout(
        &self,
        role: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<String, LabError> {
        let mut c = self.ns_command(role, args)?;
        cmd::run(&mut c, timeout)
    }

    /// Starts a long-running `args` inside `role`'s namespace, stdout and
    /// stderr to a log file in the lab dir. It runs until [`Spawned::stop`]
    /// or the lab's teardown; dropping the guard does *not* stop it.
    pub fn spawn(&self, role: &str, args: &[&str]) -> Result<Spawned, LabError> {
        let c = self.ns_command(role, args)?;
        let line = cmd::describe(&c);
        self.guarded(|st| self.spawn_locked(st, role, args, c, line))
    }

    fn spawn_locked(
        &self,
        st: &mut State,
        role: &str,
        args: &[&str],
        mut c: Command,
        line: String,
    ) -> Result<Spawned, LabError> {
        let id = st.next_child;
        st.next_child += 1;
        let base = Path::new(args[0])
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let log = self
            .tmp
            .join(format!("{}-{base}-{id}.log", self.bare(role)));
        let file = std::fs::File::create(&log)
            .map_err(LabError::io(format!("creating {}", log.display())))?;
        let err = file
            .try_clone()
            .map_err(LabError::io("duplicating a log file handle"))?;
        tracing::debug!("spawn: {line}");
        let child = c
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(LabError::io(format!("starting `{line}`")))?;
        let pid = child.id();
        st.children.insert(id, child);
        Ok(Spawned {
            id,
            pid,
            log,
            command: line,
            shared: Arc::clone(&self.shared),
        })
    }

    fn bare(&self, role: &str) -> String {
        let ns = self.ns(role);
        ns[self.spec.prefix.len() + 1..].to_owned()
    }

    /// Polls `url` with curl from inside `role` until it answers 2xx or
    /// `timeout` passes; returns the body.
    pub fn wait_http(&self, role: &str, url: &str, timeout: Duration) -> Result<String, LabError> {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.exec_timeout(
                role,
                &["curl", "-sf", "-m", "1", url],
                Duration::from_secs(3),
            );
            match r {
                Ok(body) => return Ok(body),
                Err(e) if Instant::now() >= deadline => {
                    return Err(LabError::Timeout {
                        what: format!("HTTP {url} from {} (last error: {e})", self.ns(role)),
                        after: timeout,
                    })
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Starts tcpdump on `dev` in `role` with a BPF `filter` (may be empty),
    /// writing a pcap in the lab dir. It stops after `count` packets or when
    /// `timeout` has passed since the start; [`Capture::finish`] waits for
    /// that and returns the file. Returns once tcpdump is listening.
    pub fn capture(
        &self,
        role: &str,
        dev: &str,
        filter: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<Capture, LabError> {
        cmd::require("tcpdump", "tcpdump")?;
        let ns = self.checked_ns(role)?;
        let id = self.guarded(|st| {
            st.next_child += 1;
            Ok(st.next_child)
        })?;
        let path = self
            .tmp
            .join(format!("{}-{dev}-{id}.pcap", self.bare(role)));
        let mut c = rvs_netns::command(&ns, &["tcpdump", "-i", dev, "-n", "-U", "-Z", "root"]);
        c.args(["-c", &count.to_string(), "-w"]).arg(&path);
        c.args(filter.split_whitespace());
        let line = cmd::describe(&c);
        let mut child = self.guarded(|_| {
            c.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(LabError::io(format!("starting `{line}`")))
        })?;
        let started = Instant::now();
        let stderr = child.stderr.take();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let Some(stderr) = stderr else { return };
            let mut seen = String::new();
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                if l.contains("listening on") {
                    let _ = tx.send(Ok(()));
                } else {
                    seen.push_str(&l);
                    seen.push('\n');
                }
            }
            let _ = tx.send(Err(seen));
        });
        let mut cap = Capture {
            child: Some(child),
            path,
            deadline: started + timeout,
            command: line.clone(),
        };
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(cap),
            Ok(Err(stderr)) => {
                cap.kill();
                Err(LabError::Command {
                    cmd: line,
                    status: "exited before listening".into(),
                    stderr: stderr.trim().to_owned(),
                })
            }
            Err(_) => {
                cap.kill();
                Err(LabError::Timeout {
                    what: line,
                    after: Duration::from_secs(10),
                })
            }
        }
    }

    /// Sets sysctl `key` (dotted, e.g. `net.ipv4.ip_forward`) in `role`.
    pub fn set_sysctl(&self, role: &str, key: &str, value: &str) -> Result<(), LabError> {
        self.exec_timeout(
            role,
            &["sysctl", "-qw", &format!("{key}={value}")],
            SETUP_TIMEOUT,
        )?;
        Ok(())
    }

    /// Tears the lab down now (same as dropping it).
    pub fn teardown(self) {}

    fn ip(&self, role: &str, args: &[&str]) -> Result<(), LabError> {
        rvs_netns::ip(&self.ns(role), args)?;
        Ok(())
    }

    fn veth(&self, a: &str, a_dev: &str, b: &str, b_dev: &str) -> Result<(), LabError> {
        // See the crate doc: rewritten frames must carry full checksums,
        // and frames redirected into a veth need NAPI on its peer.
        Veth::new(End::new(&self.ns(a), a_dev), End::new(&self.ns(b), b_dev))
            .queues(self.spec.queues)
            .ethtool(&["tx", "off", "gro", "on"])
            .create()?;
        Ok(())
    }

    /// Runs the NAPI instances of `dev` in `role` in kernel threads of their
    /// own (`/sys/class/net/DEV/threaded`), one `napi/DEV-ID` thread per RX
    /// queue, and returns their pids so they can be pinned (`taskset`) and
    /// their CPU time read (`/proc/PID/schedstat`). Their work — XDP, GRO,
    /// forwarding, nftables — is then the threads' CPU time instead of
    /// softirq time on whatever CPU raised it. Calling it again returns the
    /// same threads.
    ///
    /// Kernel threads live in no namespace, so they are told apart by name
    /// and by which ones appeared when threading was switched on; another
    /// lab switching on a device of the same name at the same instant could
    /// be mixed in (the names then carry both labs' NAPI ids).
    pub fn thread_napi(&self, role: &str, dev: &str) -> Result<Vec<u32>, LabError> {
        let file = format!("/sys/class/net/{dev}/threaded");
        let key = (self.ns(role), dev.to_owned());
        let mut st = lock(&self.shared);
        if st.torn_down {
            return Err(LabError::TornDown {
                prefix: self.spec.prefix.clone(),
            });
        }
        if let Some(pids) = st.napi_threads.get(&key) {
            return Ok(pids.clone());
        }
        let name = format!("napi/{dev}-");
        let before = kthreads_named(&name);
        self.exec_timeout(
            role,
            &["sh", "-c", &format!("echo 1 > {file}")],
            SETUP_TIMEOUT,
        )?;
        let mut pids: Vec<u32> = kthreads_named(&name)
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        pids.sort_unstable();
        let want = self.spec.queues as usize;
        if pids.len() != want {
            return Err(LabError::Command {
                cmd: format!("echo 1 > {file} in {}", self.ns(role)),
                status: format!(
                    "{} new `{name}*` kernel threads, expected one per RX queue ({want})",
                    pids.len()
                ),
                stderr: "is GRO on (`ethtool -k DEV`) and the device up?".into(),
            });
        }
        st.napi_threads.insert(key, pids.clone());
        Ok(pids)
    }

    fn addr_up(&self, role: &str, dev: &str, cidr: &str) -> Result<(), LabError> {
        self.ip(role, &["addr", "add", cidr, "dev", dev])?;
        self.ip(role, &["link", "set", dev, "up"])
    }

    fn wire(&self) -> Result<(), LabError> {
        let n = self.spec.servers;
        for role in self.roles() {
            let ns = self.ns(&role);
            self.guarded(|st| {
                st.namespaces.push(Netns::add(&ns)?);
                Ok(())
            })?;
            // Before any device exists, so every device inherits `default`:
            // replies in DR/TUN come back on another leg than the VIP route
            // (router), and IPv6 chatter would only clutter captures.
            for (k, v) in [
                ("net.ipv4.conf.all.rp_filter", "0"),
                ("net.ipv4.conf.default.rp_filter", "0"),
                ("net.ipv6.conf.all.disable_ipv6", "1"),
                ("net.ipv6.conf.default.disable_ipv6", "1"),
            ] {
                self.set_sysctl(&role, k, v)?;
            }
        }

        self.veth("client", "eth0", "router", "rt-client")?;
        self.ip("router", &["link", "add", "br0", "type", "bridge"])?;
        self.addr_up("router", "br0", &format!("{ROUTER_LAN_IP}/24"))?;
        let several = self.spec.directors > 1;
        if several {
            for br in ["brf", "brs"] {
                self.ip("router", &["link", "add", br, "type", "bridge"])?;
            }
            self.addr_up("router", "brf", &format!("{ROUTER_DIR_IP}/24"))?;
            self.ip("router", &["link", "set", "brs", "up"])?;
        }
        for (k, dir) in self.directors().iter().enumerate() {
            let k = k + 1;
            let port = |leg: &str| match k {
                1 => format!("{leg}-dir"),
                k => format!("{leg}-dir{k}"),
            };
            if several {
                self.veth(dir, "front", "router", &port("f"))?;
                self.bridge_port(&port("f"), "brf")?;
                self.veth(dir, "sync0", "router", &port("s"))?;
                self.bridge_port(&port("s"), "brs")?;
                self.addr_up(dir, "sync0", &format!("{}/24", dir_sync_ip(k)))?;
            } else {
                self.veth(dir, "front", "router", "rt-dir")?;
                self.addr_up("router", "rt-dir", &format!("{ROUTER_DIR_IP}/24"))?;
            }
            self.veth(dir, "back", "router", &port("p"))?;
            self.bridge_port(&port("p"), "br0")?;
            self.addr_up(dir, "front", &format!("{}/24", dir_front_ip(k)))?;
            self.addr_up(dir, "back", &format!("{}/24", dir_back_ip(k)))?;
            // With VRRP (a floating VIP route) keepalived moves them.
            if self.spec.mode == Mode::FullNat
                && k <= 1
                && self.spec.vip_route != VipRoute::Floating
            {
                for local in LOCAL_IPS {
                    let local = format!("{local}/24");
                    self.ip(dir, &["addr", "add", &local, "dev", "back"])?;
                }
            }
            self.ip(
                dir,
                &["route", "add", "default", "via", &ROUTER_DIR_IP.to_string()],
            )?;
            // One director forwards in the kernel as the baselines need;
            // several must not (see the module doc).
            self.set_sysctl(dir, "net.ipv4.ip_forward", if several { "0" } else { "1" })?;
        }
        for i in 1..=n {
            self.veth(&format!("rs{i}"), "eth0", "router", &format!("p-rs{i}"))?;
            self.bridge_port(&format!("p-rs{i}"), "br0")?;
        }

        self.addr_up("client", "eth0", &format!("{CLIENT_IP}/24"))?;
        self.ip(
            "client",
            &[
                "route",
                "add",
                "default",
                "via",
                &ROUTER_CLIENT_IP.to_string(),
            ],
        )?;

        self.addr_up("router", "rt-client", &format!("{ROUTER_CLIENT_IP}/24"))?;
        self.set_sysctl("router", "net.ipv4.ip_forward", "1")?;
        if self.spec.vip_route == VipRoute::Announced {
            // ECMP by the L4 hash, so one client's flows spread.
            self.set_sysctl("router", "net.ipv4.fib_multipath_hash_policy", "1")?;
        }
        let vip_via = match self.spec.vip_route {
            VipRoute::FirstDirector => Some(DIR_FRONT_IP),
            VipRoute::Floating => Some(FLOATING_FRONT_IP),
            VipRoute::Announced => None,
        };
        if let Some(via) = vip_via {
            self.ip(
                "router",
                &[
                    "route",
                    "add",
                    &format!("{VIP}/32"),
                    "via",
                    &via.to_string(),
                ],
            )?;
        }
        if self.spec.director == DirectorKind::KernelRoute {
            self.ip(
                "dir",
                &[
                    "route",
                    "add",
                    &format!("{VIP}/32"),
                    "via",
                    &rs_ip(1).to_string(),
                    "dev",
                    "back",
                ],
            )?;
        }

        let gateway = match (self.spec.director, self.spec.mode, self.spec.vip_route) {
            (DirectorKind::None, Mode::Nat, VipRoute::Floating) => FLOATING_BACK_IP,
            (DirectorKind::NftDnat, _, _) | (DirectorKind::None, Mode::Nat, _) => DIR_BACK_IP,
            _ => ROUTER_LAN_IP,
        };
        for i in 1..=n {
            let rs = format!("rs{i}");
            self.addr_up(&rs, "eth0", &format!("{}/24", rs_ip(i)))?;
            self.ip(
                &rs,
                &["route", "add", "default", "via", &gateway.to_string()],
            )?;
            let vip_on_lo = self.spec.mode == Mode::Dr
                || (i == 1 && self.spec.director == DirectorKind::KernelRoute);
            if vip_on_lo {
                self.ip(&rs, &["addr", "add", &format!("{VIP}/32"), "dev", "lo"])?;
                for dev in ["all", "eth0"] {
                    self.set_sysctl(&rs, &format!("net.ipv4.conf.{dev}.arp_ignore"), "1")?;
                    self.set_sysctl(&rs, &format!("net.ipv4.conf.{dev}.arp_announce"), "2")?;
                }
            }
        }
        Ok(())
    }

    fn bridge_port(&self, port: &str, bridge: &str) -> Result<(), LabError> {
        self.ip("router", &["link", "set", port, "master", bridge, "up"])
    }

    fn start_servers(&self, decap: Option<&Path>) -> Result<(), LabError> {
        let nginx = cmd::require("nginx", "nginx-light")?;
        let optional = nginx_optional_temp_paths(&nginx);
        let optional: Vec<&str> = optional.iter().map(String::as_str).collect();
        for i in 1..=self.spec.servers {
            let rs = format!("rs{i}");
            let d = self.tmp.join(&rs);
            // create_dir, not create_dir_all: never recreate a removed lab dir.
            for sub in [d.clone(), d.join("html"), d.join("tmp")] {
                std::fs::create_dir(&sub)
                    .map_err(LabError::io(format!("creating {}", sub.display())))?;
            }
            let big = vec![b'x'; BIG_PAGE_BYTES];
            std::fs::write(d.join("html/big"), big)
                .map_err(LabError::io("writing the /big page"))?;
            let conf = d.join("nginx.conf");
            std::fs::write(&conf, conf::nginx(&d, &rs, &optional))
                .map_err(LabError::io(format!("writing {}", conf.display())))?;
            let (prefix, conf_s, err_log) = (
                format!("{}/", d.display()),
                conf.display().to_string(),
                d.join("error.log").display().to_string(),
            );
            let nginx_s = nginx.display().to_string();
            self.spawn(
                &rs,
                &[&nginx_s, "-p", &prefix, "-e", &err_log, "-c", &conf_s],
            )?;
            if let Some(bin) = decap {
                let bin = bin.display().to_string();
                let gue_port = GUE_PORT.to_string();
                let vip = VIP.to_string();
                self.spawn(
                    &rs,
                    &[&bin, "--vip", &vip, "--gue-port", &gue_port, "--gre"],
                )?;
            }
        }
        for i in 1..=self.spec.servers {
            let rs = format!("rs{i}");
            let body = self
                .wait_http(&rs, "http://127.0.0.1/", Duration::from_secs(10))
                .map_err(|e| LabError::Command {
                    cmd: format!("nginx in {}", self.ns(&rs)),
                    status: format!("not serving ({e})"),
                    stderr: std::fs::read_to_string(self.tmp.join(&rs).join("error.log"))
                        .unwrap_or_default()
                        .trim()
                        .to_owned(),
                })?;
            if body != format!("{rs}\n") {
                return Err(LabError::Command {
                    cmd: format!("nginx in {}", self.ns(&rs)),
                    status: "wrong page".into(),
                    stderr: format!("served {body:?}"),
                });
            }
        }
        if decap.is_some() {
            for i in 1..=self.spec.servers {
                self.wait_vip(&format!("rs{i}"), Duration::from_secs(10))?;
            }
        }
        Ok(())
    }

    /// Waits until rvs-decap has put the VIP on its device in `role`.
    fn wait_vip(&self, role: &str, timeout: Duration) -> Result<(), LabError> {
        self.wait_decap_addr(role, std::net::IpAddr::V4(VIP), timeout)
    }

    /// Waits until rvs-decap has put `vip` (a /32 or /128) on its device
    /// in `role`.
    fn wait_decap_addr(
        &self,
        role: &str,
        vip: std::net::IpAddr,
        timeout: Duration,
    ) -> Result<(), LabError> {
        let (family, prefix) = if vip.is_ipv6() {
            ("-6", 128)
        } else {
            ("-4", 32)
        };
        let deadline = Instant::now() + timeout;
        loop {
            let out =
                self.exec_timeout(role, &["ip", "-o", family, "addr", "show"], SETUP_TIMEOUT)?;
            if out.contains(&format!("{vip}/{prefix}")) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    what: format!("rvs-decap putting {vip} on its device in {}", self.ns(role)),
                    after: timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn servers(&self) -> Vec<Ipv4Addr> {
        (1..=self.spec.servers).map(rs_ip).collect()
    }

    fn start_director(&self) -> Result<(), LabError> {
        match self.spec.director {
            DirectorKind::None | DirectorKind::KernelRoute => Ok(()),
            DirectorKind::NftDnat => {
                let file = self.tmp.join("dnat.nft");
                std::fs::write(&file, conf::nft_dnat(VIP, &self.servers()))
                    .map_err(LabError::io(format!("writing {}", file.display())))?;
                let file = file.display().to_string();
                self.exec_timeout("dir", &["nft", "-f", &file], SETUP_TIMEOUT)?;
                Ok(())
            }
            DirectorKind::Haproxy => {
                self.ip("dir", &["addr", "add", &format!("{VIP}/32"), "dev", "lo"])?;
                let file = self.tmp.join("haproxy.cfg");
                std::fs::write(&file, conf::haproxy(VIP, &self.servers()))
                    .map_err(LabError::io(format!("writing {}", file.display())))?;
                let file = file.display().to_string();
                let haproxy = self.spawn("dir", &["haproxy", "-db", "-f", &file])?;
                self.wait_http("dir", &format!("http://{VIP}/"), Duration::from_secs(10))
                    .map_err(|e| LabError::Command {
                        cmd: format!("haproxy -f {file} in {}", self.ns("dir")),
                        status: format!("not serving the VIP ({e})"),
                        stderr: haproxy.log().trim().to_owned(),
                    })?;
                Ok(())
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        teardown(&self.shared);
    }
}

/// A process started by [`Lab::spawn`]. It is stopped by [`Spawned::stop`]
/// or by the lab's teardown, not by dropping this guard.
#[derive(Debug)]
pub struct Spawned {
    id: u64,
    pid: u32,
    log: PathBuf,
    command: String,
    shared: Shared,
}

impl Spawned {
    /// Process id (of the program itself: `ip netns exec` execs it).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// File that receives its stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// What it has printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it is still running.
    pub fn is_running(&self) -> bool {
        let mut st = lock(&self.shared);
        match st.children.get_mut(&self.id) {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; returns how it exited and its
    /// output.
    pub fn stop(self, grace: Duration) -> Result<(ExitStatus, String), LabError> {
        self.stop_with(libc::SIGTERM, grace)
    }

    /// As [`Spawned::stop`] with `signal` first (SIGKILL: at once).
    pub fn stop_with(
        self,
        signal: libc::c_int,
        grace: Duration,
    ) -> Result<(ExitStatus, String), LabError> {
        let child = lock(&self.shared).children.remove(&self.id);
        let Some(mut child) = child else {
            return Err(LabError::InvalidSpec(format!(
                "`{}` was already stopped by the lab's teardown",
                self.command
            )));
        };
        cmd::signal(child.id(), signal);
        let status = match cmd::wait_until(&mut child, Instant::now() + grace)
            .map_err(LabError::io(format!("waiting for `{}`", self.command)))?
        {
            Some(s) => s,
            None => {
                let _ = child.kill();
                child
                    .wait()
                    .map_err(LabError::io(format!("waiting for `{}`", self.command)))?
            }
        };
        Ok((status, self.log()))
    }
}

/// A running tcpdump started by [`Lab::capture`].
#[derive(Debug)]
pub struct Capture {
    child: Option<Child>,
    path: PathBuf,
    deadline: Instant,
    command: String,
}

impl Capture {
    /// Where the pcap is written (inside the lab dir).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits until tcpdump has its packet count or the capture's timeout
    /// passes, stops it (flushing the file) and returns the pcap path.
    pub fn finish(mut self) -> Result<PathBuf, LabError> {
        if let Some(mut child) = self.child.take() {
            let done = cmd::wait_until(&mut child, self.deadline)
                .map_err(LabError::io(format!("waiting for `{}`", self.command)))?;
            if done.is_none() {
                cmd::signal(child.id(), libc::SIGINT);
                if !matches!(
                    cmd::wait_until(&mut child, Instant::now() + STOP_GRACE),
                    Ok(Some(_))
                ) {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        Ok(self.path.clone())
    }

    /// Waits like [`Capture::finish`] and parses the file.
    pub fn packets(self) -> Result<Pcap, LabError> {
        let p = self.finish()?;
        read_pcap(&p)
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.kill();
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn preflight(spec: &LabSpec) -> Result<(), LabError> {
    let p = &spec.prefix;
    if p.is_empty()
        || p.len() > 20
        || !p
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(LabError::InvalidSpec(format!(
            "prefix {p:?} must be 1..=20 lowercase letters or digits"
        )));
    }
    if spec.servers == 0 || spec.servers > MAX_SERVERS {
        return Err(LabError::InvalidSpec(format!(
            "servers = {} but must be 1..={MAX_SERVERS}",
            spec.servers
        )));
    }
    if spec.queues == 0 || spec.queues > MAX_QUEUES {
        return Err(LabError::InvalidSpec(format!(
            "queues = {} but must be 1..={MAX_QUEUES}",
            spec.queues
        )));
    }
    if spec.directors == 0 || spec.directors > MAX_DIRECTORS {
        return Err(LabError::InvalidSpec(format!(
            "directors = {} but must be 1..={MAX_DIRECTORS}",
            spec.directors
        )));
    }
    let one = spec.directors == 1;
    if one != (spec.vip_route == VipRoute::FirstDirector) {
        return Err(LabError::InvalidSpec(format!(
            "vip_route = {:?} with {} director(s): one director takes FirstDirector, several Floating or Announced",
            spec.vip_route, spec.directors
        )));
    }
    if !one && spec.director != DirectorKind::None {
        return Err(LabError::InvalidSpec(
            "several directors run RVS only (director = None)".into(),
        ));
    }
    if !is_root() {
        return Err(LabError::NotRoot);
    }
    cmd::require("ip", "iproute2")?;
    cmd::require("nginx", "nginx-light")?;
    cmd::require("curl", "curl")?;
    cmd::require("ethtool", "ethtool")?;
    cmd::require("sysctl", "procps")?;
    match spec.director {
        DirectorKind::NftDnat => {
            cmd::require("nft", "nftables")?;
        }
        DirectorKind::Haproxy => {
            cmd::require("haproxy", "haproxy")?;
        }
        DirectorKind::None | DirectorKind::KernelRoute => {}
    }
    let taken = rvs_netns::list(p)?;
    if !taken.is_empty() {
        return Err(LabError::PrefixInUse {
            prefix: p.clone(),
            existing: format!("namespaces {}", taken.join(", ")),
        });
    }
    Ok(())
}

fn find_decap(explicit: Option<&Path>) -> Result<PathBuf, LabError> {
    let mut searched = Vec::new();
    if let Some(p) = explicit {
        if cmd::is_executable(p) {
            return Ok(p.to_owned());
        }
        return Err(LabError::DecapNotFound {
            searched: vec![p.to_owned()],
        });
    }
    if let Some(p) = std::env::var_os("RVS_DECAP") {
        searched.push(PathBuf::from(p));
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(2) {
            searched.push(dir.join("rvs-decap"));
        }
    }
    if let Some(p) = searched.iter().find(|p| cmd::is_executable(p)) {
        return Ok(p.clone());
    }
    if let Some(p) = cmd::find_tool("rvs-decap") {
        return Ok(p);
    }
    searched.push(PathBuf::from("$PATH/rvs-decap"));
    Err(LabError::DecapNotFound { searched })
}

/// `*_temp_path` directives whose module this nginx has (nginx-light lacks
/// some; naming them would be a configuration error).
fn nginx_optional_temp_paths(nginx: &Path) -> Vec<String> {
    let v = Command::new(nginx)
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .unwrap_or_default();
    ["proxy", "fastcgi", "uwsgi", "scgi"]
        .into_iter()
        .filter(|m| !v.contains(&format!("--without-http_{m}_module")))
        .map(String::from)
        .collect()
}

/// Pids of kernel threads whose name starts with `prefix` (kernel threads
/// are children of `kthreadd`, pid 2).
fn kthreads_named(prefix: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                return false;
            };
            let ppid = stat[close + 1..].split_whitespace().nth(1);
            stat[open + 1..close].starts_with(prefix) && ppid == Some("2")
        })
        .collect()
}
