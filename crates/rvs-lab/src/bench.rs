//! `rvs-lab bench`: RVS against the kernel baselines, side by side, on the
//! director's CPU alone.
//!
//! Every setup — kernel routing through the director, nftables DNAT,
//! HAProxy `mode tcp`, RVS in DR, NAT and TUN mode each with its XDP fast
//! path on and off (`-slow`) — gets a fresh [`Lab`] of the same topology and
//! the same loads, each bounded in time and count:
//!
//! - **UDP 64-byte frames** to VIP:9 from the client's address, over
//!   [`MANY_FLOWS`] source ports (distinct flows to one service, so each is
//!   a connection of its own) and over one. They are made by an XDP
//!   generator run with `BPF_PROG_TEST_RUN` in live-frames mode on the
//!   router's `rt-dir` ([`xdp`]), so they go straight into the director's
//!   `front` RX ring as a NIC would deliver them, at several Mpps from one
//!   CPU — more than any director here forwards, so the director is the
//!   bottleneck and the figure is its own. An XDP sink on the router's
//!   `p-dir` (the director's `back` leg) counts and drops what the director
//!   delivers; every setup leaves through `back`, so delivery is counted the
//!   same way for all. Before each run the flows are sent twice, paced, so
//!   the connections exist (a warm-up that is not measured).
//! - **HTTP keep-alive requests** with `wrk -t2 -c50`, and **new TCP
//!   connections** with the same wrk and `Connection: close`.
//!
//! **The director runs alone on CPU 1.** Its NAPI instances (`front`,
//! `back`) run in kernel threads of their own ([`Lab::thread_napi`]) pinned
//! to CPU 1, with rvsd or HAProxy; everything else — the generator, the
//! sink, the router's NAPI threads, nginx, wrk — is pinned to CPU 0. The
//! director's CPU per packet is then what its NAPI threads and its
//! processes spent on the CPU (`/proc/PID/schedstat`) over the load,
//! divided by what it delivered: the same threads do the whole director
//! hop in every setup (XDP, GRO, routing, nftables and transmission in the
//! NAPI threads; AF_XDP and the engine in rvsd; sockets in HAProxy), so
//! the figure compares like with like, also while other work shares the
//! machine.
//!
//! Each load runs `repetitions` times; the table shows the median and the
//! spread (min–max), and a second table the ratio of medians to nft-dnat.
//! A UDP run in which the director delivered (nearly) everything sent did
//! not saturate it: its pps is a floor, and the table says so. Benchmarks
//! print tables, they assert nothing about speed.

mod chart;
mod proc;
mod rvs;
mod xdp;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{unique_prefix, DirectorKind, Lab, LabSpec, Mode, VIP};

/// What `rvs-lab bench` runs; `Default` is the documented default run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// How often each load runs per setup (median and spread over these).
    pub repetitions: u32,
    /// Length of one load run, in seconds.
    pub duration_secs: u32,
    /// Setups to run (names as in [`SETUPS`]); `None` runs all of them.
    pub only: Option<Vec<String>>,
    /// TX and RX queues of every veth ([`LabSpec::queues`]).
    pub queues: u32,
    /// rvsd's `fast_path_slots` (`None`: its default, two per connection
    /// of the default `max_connections`).
    pub fast_path_slots: Option<u32>,
    /// Where to write the chart ([`Report::svg`]), if anywhere.
    pub svg: Option<std::path::PathBuf>,
}

impl Default for BenchOptions {
    fn default() -> BenchOptions {
        BenchOptions {
            repetitions: 3,
            duration_secs: 5,
            only: None,
            queues: 1,
            fast_path_slots: None,
            svg: None,
        }
    }
}

/// Names of the setups, in table order, for `--only`. `-slow`: rvsd with
/// `fast_path = false` (every packet through AF_XDP and the engine).
pub const SETUPS: [&str; 10] = [
    "kernel-route",
    "nft-dnat",
    "haproxy",
    "rvs-dr",
    "rvs-dr-slow",
    "rvs-nat",
    "rvs-nat-slow",
    "rvs-tun",
    "rvs-tun-slow",
    "rvs-fullnat",
];

/// The setup whose medians the ratio table divides by.
const REFERENCE: &str = "nft-dnat";
/// Distinct UDP flows (source ports 1024…) of the "many flows" load.
pub const MANY_FLOWS: u32 = 64_000;
/// Count bound of one UDP run, per second of duration.
const MAX_PPS: u64 = 20_000_000;
/// UDP port of the datagram service (discard).
const UDP_PORT: u16 = 9;
/// Pause between loads, so queues drain and one load's tail is not the
/// next one's head.
const SETTLE: Duration = Duration::from_millis(500);
/// Warm-up pace: one frame per 20 µs (50 k frames/s), slow enough for the
/// slowest director to take every new flow.
const WARMUP_INTERVAL: Duration = Duration::from_micros(20);
/// Warm-up bound in time.
const WARMUP_MAX: Duration = Duration::from_secs(15);
/// A run that delivered at least this share of what was sent did not
/// saturate the director.
const SATURATED_BELOW: f64 = 0.98;
/// Frames the director's `back` may drop toward the sink (the sink's ring
/// full), as a share of those delivered, before the run is flagged. Such
/// frames cost the director but are not counted as delivered, so they
/// inflate its µs/packet by that share. The sink's threads are SCHED_FIFO,
/// but the generator holds its CPU in short non-preemptible stretches, so a
/// few tenths of a percent are normal.
const SINK_DROPS_WARN: f64 = 0.01;
/// The CPU the director (its NAPI threads, rvsd, HAProxy) runs on.
const DIRECTOR_CPU: usize = 1;
/// The CPU everything else runs on.
const LOAD_CPU: usize = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    KernelRoute,
    NftDnat,
    Haproxy,
    /// RVS in this mode, with the fast path on (`true`) or off.
    Rvs(Mode, bool),
}

impl Setup {
    fn all() -> [Setup; 10] {
        [
            Setup::KernelRoute,
            Setup::NftDnat,
            Setup::Haproxy,
            Setup::Rvs(Mode::Dr, true),
            Setup::Rvs(Mode::Dr, false),
            Setup::Rvs(Mode::Nat, true),
            Setup::Rvs(Mode::Nat, false),
            Setup::Rvs(Mode::Tun, true),
            Setup::Rvs(Mode::Tun, false),
            Setup::Rvs(Mode::FullNat, true),
        ]
    }

    fn name(self) -> &'static str {
        match self {
            Setup::KernelRoute => "kernel-route",
            Setup::NftDnat => "nft-dnat",
            Setup::Haproxy => "haproxy",
            Setup::Rvs(Mode::Dr, true) => "rvs-dr",
            Setup::Rvs(Mode::Dr, false) => "rvs-dr-slow",
            Setup::Rvs(Mode::Nat, true) => "rvs-nat",
            Setup::Rvs(Mode::Nat, false) => "rvs-nat-slow",
            Setup::Rvs(Mode::Tun, true) => "rvs-tun",
            Setup::Rvs(Mode::Tun, false) => "rvs-tun-slow",
            Setup::Rvs(Mode::FullNat, _) => "rvs-fullnat",
        }
    }

    fn spec(self, queues: u32) -> LabSpec {
        let (mode, director) = match self {
            Setup::KernelRoute => (Mode::Dr, DirectorKind::KernelRoute),
            Setup::NftDnat => (Mode::Nat, DirectorKind::NftDnat),
            Setup::Haproxy => (Mode::Dr, DirectorKind::Haproxy),
            Setup::Rvs(mode, _) => (mode, DirectorKind::None),
        };
        LabSpec {
            prefix: unique_prefix(),
            mode,
            servers: 3,
            director,
            decap_bin: None,
            queues,
            directors: 1,
            vip_route: crate::VipRoute::FirstDirector,
        }
    }

    /// Whether the director can carry UDP to the servers at all.
    fn carries_udp(self) -> bool {
        self != Setup::Haproxy
    }
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    /// Frames per second the generator sent, many flows.
    UdpManySent,
    /// Frames per second the sink counted, many flows.
    UdpManyPps,
    /// Delivered / sent, many flows.
    UdpManyDelivered,
    /// Director CPU per delivered frame, many flows.
    UdpManyUs,
    /// Frames per second the generator sent, one flow.
    UdpOneSent,
    /// Frames per second the sink counted, one flow.
    UdpOnePps,
    /// Delivered / sent, one flow.
    UdpOneDelivered,
    /// Director CPU per delivered frame, one flow.
    UdpOneUs,
    /// HTTP requests per second on kept-alive connections.
    HttpKeepAlive,
    /// Director CPU per keep-alive request.
    HttpKeepAliveUs,
    /// HTTP requests per second, one connection each.
    HttpNewConn,
    /// Director CPU per new connection.
    HttpNewConnUs,
}

impl Metric {
    const ALL: [Metric; 12] = [
        Metric::UdpManySent,
        Metric::UdpManyPps,
        Metric::UdpManyDelivered,
        Metric::UdpManyUs,
        Metric::UdpOneSent,
        Metric::UdpOnePps,
        Metric::UdpOneDelivered,
        Metric::UdpOneUs,
        Metric::HttpKeepAlive,
        Metric::HttpKeepAliveUs,
        Metric::HttpNewConn,
        Metric::HttpNewConnUs,
    ];

    /// The row label.
    pub fn label(self) -> &'static str {
        match self {
            Metric::UdpManySent => "udp many flows: sent pps",
            Metric::UdpManyPps => "udp many flows: delivered pps",
            Metric::UdpManyDelivered => "udp many flows: delivered/sent",
            Metric::UdpManyUs => "udp many flows: director µs/pkt",
            Metric::UdpOneSent => "udp one flow: sent pps",
            Metric::UdpOnePps => "udp one flow: delivered pps",
            Metric::UdpOneDelivered => "udp one flow: delivered/sent",
            Metric::UdpOneUs => "udp one flow: director µs/pkt",
            Metric::HttpKeepAlive => "http keep-alive req/s",
            Metric::HttpKeepAliveUs => "http keep-alive: director µs/req",
            Metric::HttpNewConn => "http new conn/s",
            Metric::HttpNewConnUs => "http new conn: director µs/conn",
        }
    }

    fn format(self, v: f64) -> String {
        match self {
            Metric::UdpManySent
            | Metric::UdpManyPps
            | Metric::UdpOneSent
            | Metric::UdpOnePps
            | Metric::HttpKeepAlive
            | Metric::HttpNewConn => si(v),
            Metric::UdpManyDelivered | Metric::UdpOneDelivered => format!("{:.1}%", v * 100.0),
            Metric::UdpManyUs
            | Metric::UdpOneUs
            | Metric::HttpKeepAliveUs
            | Metric::HttpNewConnUs => {
                if v >= 10.0 {
                    format!("{v:.1}")
                } else {
                    format!("{v:.2}")
                }
            }
        }
    }

    /// Whether a ratio to the reference means something (not for what the
    /// generator sent or the delivered share).
    fn in_ratio_table(self) -> bool {
        !matches!(
            self,
            Metric::UdpManySent
                | Metric::UdpOneSent
                | Metric::UdpManyDelivered
                | Metric::UdpOneDelivered
        )
    }
}

/// 3 significant digits with k/M suffix.
fn si(v: f64) -> String {
    let (x, suffix) = if v >= 1e6 {
        (v / 1e6, "M")
    } else if v >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    if x >= 100.0 || suffix.is_empty() && x >= 10.0 {
        format!("{x:.0}{suffix}")
    } else if x >= 10.0 {
        format!("{x:.1}{suffix}")
    } else {
        format!("{x:.2}{suffix}")
    }
}

/// What one setup produced for one metric.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// One value per repetition.
    Samples(Vec<f64>),
    /// Not measurable here; the short reason.
    NotApplicable(&'static str),
    /// The load failed (the error is in [`Report::errors`]).
    Failed,
}

impl Cell {
    /// Median of the samples, if there are any.
    pub fn median(&self) -> Option<f64> {
        let Cell::Samples(v) = self else { return None };
        if v.is_empty() {
            return None;
        }
        let mut s = v.clone();
        s.sort_by(f64::total_cmp);
        let m = s.len() / 2;
        Some(if s.len() % 2 == 1 {
            s[m]
        } else {
            (s[m - 1] + s[m]) / 2.0
        })
    }

    fn render(&self, metric: Metric) -> String {
        match self {
            Cell::Samples(v) if !v.is_empty() => {
                let med = self.median().unwrap_or(0.0);
                if v.len() == 1 {
                    return metric.format(med);
                }
                let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                format!(
                    "{} ({}–{})",
                    metric.format(med),
                    metric.format(lo),
                    metric.format(hi)
                )
            }
            Cell::Samples(_) | Cell::Failed => "FAILED".into(),
            Cell::NotApplicable(_) => "n/a".into(),
        }
    }
}

/// Everything one bench run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// Setups in column order.
    pub setups: Vec<String>,
    /// Per setup, per metric.
    pub cells: BTreeMap<(String, Metric), Cell>,
    /// UDP runs that did not saturate the director (delivered ≥ 98 % of
    /// what was sent): their pps is a floor, not the director's limit.
    pub unsaturated: Vec<String>,
    /// Load failures and setups that could not be built, in order.
    pub errors: Vec<String>,
    /// Warnings worth reading next to the numbers (e.g. HTTP errors).
    pub warnings: Vec<String>,
    /// What the run was asked to do.
    pub repetitions: u32,
    /// Seconds per load run.
    pub duration_secs: u32,
    /// Queues per veth.
    pub queues: u32,
    /// rvsd's `fast_path_slots`, when not its default.
    pub fast_path_slots: Option<u32>,
    /// Whether the director was pinned alone on its CPU (needs 2 CPUs).
    pub pinned: bool,
    /// Wall time of the whole run.
    pub elapsed: Duration,
    /// 1-minute load average of the machine at the start and the end (other
    /// work on the machine makes the rates noisy; the µs figures much less).
    pub loadavg: (String, String),
}

impl Report {
    /// The cell of `setup` for `metric`.
    pub fn cell(&self, setup: &str, metric: Metric) -> Option<&Cell> {
        self.cells.get(&(setup.to_owned(), metric))
    }

    /// Whether a UDP run of `setup` for the load of `metric` did not
    /// saturate the director.
    fn unsaturated(&self, setup: &str, metric: Metric) -> bool {
        let load = match metric {
            Metric::UdpManyPps => "many",
            Metric::UdpOnePps => "one",
            _ => return false,
        };
        let key = format!("{setup} udp {load}");
        self.unsaturated.iter().any(|u| u.starts_with(&key))
    }

    /// The main table, the ratio table and the notes, ready to print.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "rvs-lab bench: {} repetition(s) × {} s per load, median (min–max); {} setups in {:.0} s; \
             {} queue(s) per veth; director {}; load average {} at start, {} at end",
            self.repetitions,
            self.duration_secs,
            self.setups.len(),
            self.elapsed.as_secs_f64(),
            self.queues,
            if self.pinned {
                "alone on CPU 1"
            } else {
                "NOT pinned (fewer than 2 CPUs)"
            },
            self.loadavg.0,
            self.loadavg.1
        );
        if let Some(n) = self.fast_path_slots {
            let _ = writeln!(out, "rvsd with fast_path_slots = {n}");
        }
        let rows: Vec<(String, Vec<String>)> = Metric::ALL
            .iter()
            .map(|&m| {
                let cells = self
                    .setups
                    .iter()
                    .map(|s| {
                        let mut c = self
                            .cell(s, m)
                            .map(|c| c.render(m))
                            .unwrap_or_else(|| "-".into());
                        if self.unsaturated(s, m) {
                            c.push_str(" !");
                        }
                        c
                    })
                    .collect();
                (m.label().to_owned(), cells)
            })
            .collect();
        render_table(&mut out, "load", &self.setups, &rows);

        if self.setups.iter().any(|s| s == REFERENCE) {
            let _ = writeln!(
                out,
                "\nratio of medians vs {REFERENCE} (rates: higher is better; µs: lower is cheaper):"
            );
            let rows: Vec<(String, Vec<String>)> = Metric::ALL
                .iter()
                .filter(|m| m.in_ratio_table())
                .filter(|&&m| self.cell(REFERENCE, m).and_then(Cell::median).is_some())
                .map(|&m| {
                    let base = self.cell(REFERENCE, m).and_then(Cell::median);
                    let cells = self
                        .setups
                        .iter()
                        .map(|s| match (self.cell(s, m).and_then(Cell::median), base) {
                            (Some(v), Some(b)) if b > 0.0 => format!("{:.2}×", v / b),
                            _ => "n/a".into(),
                        })
                        .collect();
                    (m.label().to_owned(), cells)
                })
                .collect();
            render_table(&mut out, "load", &self.setups, &rows);
        } else {
            let _ = writeln!(out, "\n(no ratio table: {REFERENCE} was not run)");
        }

        let _ = writeln!(
            out,
            "\nnotes:\n\
             - udp: 64 B frames (UDP payload {} B, checksum 0) from {} to {VIP}:{UDP_PORT}, written by an XDP \
             generator (BPF_PROG_TEST_RUN, live frames) on the router's rt-dir straight into the director's \
             front; {MANY_FLOWS} source ports (each a connection, created by a paced warm-up before the run) \
             or one. delivered = frames an XDP sink on the router's p-dir (the director's back leg) counted.\n\
             - ! = the director delivered ≥ {:.0}% of what was sent: it was not saturated, so that pps is a \
             floor, not its limit.\n\
             - director µs: CPU time of the director's NAPI threads (front, back) and of rvsd / haproxy \
             (/proc/PID/schedstat) over the load, per delivered packet or completed request. With the \
             director alone on CPU 1 this is its whole cost in every setup: kernel forwarding and nftables \
             run in the NAPI threads, RVS's XDP there too and its engine in rvsd.\n\
             - http: wrk -t2 -c50 against http://{VIP}/ (nginx, 3 servers; kernel-route: rs1 only, no \
             balancing); wrk, nginx and the router share CPU 0, so req/s is bounded there — compare the µs.\n\
             - -slow: rvsd with fast_path = false (every packet through AF_XDP and the engine).",
            xdp::PAYLOAD,
            crate::CLIENT_IP,
            SATURATED_BELOW * 100.0
        );
        for u in &self.unsaturated {
            let _ = writeln!(out, "not saturated: {u}");
        }
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        for e in &self.errors {
            let _ = writeln!(out, "error: {e}");
        }
        out
    }
}

fn render_table(out: &mut String, head: &str, cols: &[String], rows: &[(String, Vec<String>)]) {
    let label_w = rows
        .iter()
        .map(|(l, _)| l.chars().count())
        .chain(std::iter::once(head.chars().count()))
        .max()
        .unwrap_or(0);
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .map(|(_, cells)| cells.get(i).map_or(0, |s| s.chars().count()))
                .chain(std::iter::once(c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let pad = |s: &str, w: usize| format!("{s}{}", " ".repeat(w.saturating_sub(s.chars().count())));
    let mut line = pad(head, label_w);
    for (c, &w) in cols.iter().zip(&widths) {
        line.push_str("  ");
        line.push_str(&pad(c, w));
    }
    let _ = writeln!(out, "{}", line.trim_end());
    for (label, cells) in rows {
        let mut line = pad(label, label_w);
        for (c, &w) in cells.iter().zip(&widths) {
            line.push_str("  ");
            line.push_str(&pad(c, w));
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

/// Runs the benchmark and prints the tables on stdout (progress on
/// stderr). Fails, after printing, if any setup or load failed.
pub fn run(opts: &BenchOptions) -> Result<()> {
    let report = measure(opts)?;
    print!("{}", report.table());
    if let Some(path) = &opts.svg {
        std::fs::write(path, report.svg())
            .with_context(|| format!("writing the chart to {}", path.display()))?;
        eprintln!("bench: chart written to {}", path.display());
    }
    if report.errors.is_empty() {
        Ok(())
    } else {
        bail!(
            "{} load(s) or setup(s) failed (see the errors under the table)",
            report.errors.len()
        )
    }
}

fn selected(opts: &BenchOptions) -> Result<Vec<Setup>> {
    let Some(only) = &opts.only else {
        return Ok(Setup::all().to_vec());
    };
    for name in only {
        if !SETUPS.contains(&name.as_str()) {
            bail!(
                "unknown setup {name:?} in --only; known: {}",
                SETUPS.join(", ")
            );
        }
    }
    let picked: Vec<Setup> = Setup::all()
        .into_iter()
        .filter(|s| only.iter().any(|n| n == s.name()))
        .collect();
    if picked.is_empty() {
        bail!("--only selects no setup; known: {}", SETUPS.join(", "));
    }
    Ok(picked)
}

/// Runs the benchmark and returns what it measured without printing the
/// table (progress goes to stderr). A setup or load that fails is recorded
/// in [`Report::errors`] and the others still run; only invalid options are
/// an `Err`.
pub fn measure(opts: &BenchOptions) -> Result<Report> {
    if opts.repetitions == 0 || opts.duration_secs == 0 {
        bail!("repetitions and duration must be at least 1");
    }
    if opts.duration_secs > 600 || opts.repetitions > 100 {
        bail!("refusing an unbounded run: duration at most 600 s, repetitions at most 100");
    }
    if opts.queues == 0 || opts.queues > crate::MAX_QUEUES {
        bail!("queues must be 1..={}", crate::MAX_QUEUES);
    }
    let setups = selected(opts)?;
    crate::install_signal_handler();
    let pinned = std::thread::available_parallelism().map_or(1, |n| n.get()) > DIRECTOR_CPU;
    let started = Instant::now();
    let mut report = Report {
        setups: setups.iter().map(|s| s.name().to_owned()).collect(),
        cells: BTreeMap::new(),
        unsaturated: Vec::new(),
        errors: Vec::new(),
        warnings: Vec::new(),
        repetitions: opts.repetitions,
        duration_secs: opts.duration_secs,
        queues: opts.queues,
        fast_path_slots: opts.fast_path_slots,
        pinned,
        elapsed: Duration::ZERO,
        loadavg: (loadavg(), String::new()),
    };
    for setup in setups {
        let t = Instant::now();
        eprintln!("bench: {} — building the lab", setup.name());
        let mut samples: BTreeMap<Metric, Cell> = BTreeMap::new();
        if let Err(e) = bench_setup(setup, opts, pinned, &mut samples, &mut report) {
            report.errors.push(format!("{}: {e:#}", setup.name()));
        }
        for m in Metric::ALL {
            let cell = samples.remove(&m).unwrap_or(Cell::Failed);
            report.cells.insert((setup.name().to_owned(), m), cell);
        }
        eprintln!(
            "bench: {} done in {:.0} s",
            setup.name(),
            t.elapsed().as_secs_f64()
        );
    }
    report.elapsed = started.elapsed();
    report.loadavg.1 = loadavg();
    Ok(report)
}

/// The 1-minute load average, as `/proc/loadavg` prints it.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(String::from))
        .unwrap_or_else(|| "?".into())
}

/// The threads whose CPU time is the director's.
#[derive(Debug, Default)]
struct Director {
    /// NAPI kernel threads of the director's `front` and `back`.
    napi: Vec<u32>,
    /// Director processes (rvsd, haproxy), all their threads.
    processes: Vec<u32>,
}

impl Director {
    fn cpu_secs(&self) -> f64 {
        let napi: f64 = self
            .napi
            .iter()
            .filter_map(|&p| proc::task_cpu_secs(p))
            .sum();
        let procs: f64 = self
            .processes
            .iter()
            .map(|&p| proc::threads_cpu_secs(p))
            .sum();
        napi + procs
    }
}

/// CPU time of the director and, as a cross-check, of its whole CPU.
#[derive(Debug, Clone, Copy)]
struct CpuMark {
    director: f64,
    cpu: Option<f64>,
}

impl CpuMark {
    fn now(d: &Director) -> CpuMark {
        CpuMark {
            director: d.cpu_secs(),
            cpu: proc::cpu_busy_secs(DIRECTOR_CPU),
        }
    }
}

fn push(samples: &mut BTreeMap<Metric, Cell>, m: Metric, v: f64) {
    match samples.entry(m).or_insert(Cell::Samples(Vec::new())) {
        Cell::Samples(s) => s.push(v),
        other => *other = Cell::Failed,
    }
}

fn bench_setup(
    setup: Setup,
    opts: &BenchOptions,
    pinned: bool,
    samples: &mut BTreeMap<Metric, Cell>,
    report: &mut Report,
) -> Result<()> {
    let lab = Lab::build(setup.spec(opts.queues))?;
    // Same client-side limits for every setup: new connections need ports.
    for role in ["client", "dir"] {
        lab.set_sysctl(role, "net.ipv4.ip_local_port_range", "1024 65000")?;
        lab.set_sysctl(role, "net.ipv4.tcp_tw_reuse", "1")?;
    }
    let cpu = |c: usize| pinned.then_some(c);
    let mut rvsd = None;
    let mut director = Director::default();
    match setup {
        Setup::KernelRoute | Setup::NftDnat => {}
        Setup::Haproxy => {
            director.processes = proc::pids_named(&lab, "dir", "haproxy")?;
            if director.processes.is_empty() {
                bail!("no haproxy process in {}", lab.ns("dir"));
            }
        }
        Setup::Rvs(mode, fast_path) => {
            let d = rvs::Rvsd::start(&lab, fast_path, opts.fast_path_slots, cpu(DIRECTOR_CPU))?;
            d.configure(&lab, mode)?;
            director.processes = vec![d.pid()];
            rvsd = Some(d);
        }
    }
    let mut rig = xdp::Rig::attach(&lab, UDP_PORT)?;
    for dev in ["front", "back"] {
        director.napi.extend(lab.thread_napi("dir", dev)?);
    }
    let mut router_napi = Vec::new();
    for dev in ["rt-dir", "p-dir"] {
        router_napi.extend(lab.thread_napi("router", dev)?);
    }
    if pinned {
        pin_everything(&lab, &director, &router_napi)?;
    }
    let result = run_loads(&lab, &mut rig, setup, opts, &director, samples, report);
    drop(rig);
    if let Some(d) = &rvsd {
        match d.scrape(&lab) {
            Ok(summary) => eprintln!("bench: {}: /metrics scrape: {summary}", setup.name()),
            Err(e) => eprintln!("bench: {}: /metrics scrape failed: {e:#}", setup.name()),
        }
    }
    if let Some(d) = rvsd {
        let log = d.stop();
        if result.is_err() {
            eprintln!("bench: rvsd output:\n{}", log.trim());
        }
    }
    result
}

/// The director's NAPI threads and processes on [`DIRECTOR_CPU`];
/// everything else of the lab (router NAPI threads, nginx, rvs-decap) on
/// [`LOAD_CPU`], where the generator and wrk also run. The sink's NAPI
/// threads (`router`'s `p-dir` and `rt-dir`) are SCHED_FIFO, so they take
/// every frame the director delivers however hard the generator pushes on
/// the same CPU, and the delivered count is never the sink's limit.
fn pin_everything(lab: &Lab, director: &Director, router_napi: &[u32]) -> Result<()> {
    for &p in &director.napi {
        proc::pin(p, DIRECTOR_CPU, false)?;
    }
    for p in proc::pids_in(lab, "dir")? {
        proc::pin(p, DIRECTOR_CPU, true)?;
    }
    for &p in router_napi {
        proc::pin(p, LOAD_CPU, false)?;
        proc::realtime(p)?;
    }
    let roles = lab.roles();
    for role in roles.iter().filter(|r| r.as_str() != "dir") {
        for p in proc::pids_in(lab, role)? {
            proc::pin(p, LOAD_CPU, true)?;
        }
    }
    Ok(())
}

fn run_loads(
    lab: &Lab,
    rig: &mut xdp::Rig,
    setup: Setup,
    opts: &BenchOptions,
    director: &Director,
    samples: &mut BTreeMap<Metric, Cell>,
    report: &mut Report,
) -> Result<()> {
    let url = format!("http://{VIP}/");
    lab.wait_http("client", &url, Duration::from_secs(10))
        .with_context(|| format!("{url} does not answer through {}", setup.name()))?;
    let duration = Duration::from_secs(u64::from(opts.duration_secs));
    let name = setup.name();

    if !setup.carries_udp() {
        for m in Metric::ALL.iter().filter(|m| m.label().starts_with("udp")) {
            samples.insert(*m, Cell::NotApplicable("TCP only"));
        }
    }
    let loads = [
        (
            MANY_FLOWS,
            "many",
            [
                Metric::UdpManySent,
                Metric::UdpManyPps,
                Metric::UdpManyDelivered,
                Metric::UdpManyUs,
            ],
        ),
        (
            1,
            "one",
            [
                Metric::UdpOneSent,
                Metric::UdpOnePps,
                Metric::UdpOneDelivered,
                Metric::UdpOneUs,
            ],
        ),
    ];
    for rep in 1..=opts.repetitions {
        let tag = format!("{name} {rep}/{}", opts.repetitions);
        if setup.carries_udp() {
            for (flows, load, [sent_m, pps_m, share_m, us_m]) in loads {
                match udp_load(lab, rig, flows, duration, director) {
                    Ok(r) => {
                        eprintln!(
                            "bench: {tag}: udp {load} ({flows} flow(s)): sent {} pps (generator {:.0}% of CPU \
                             {LOAD_CPU}), delivered {} pps ({:.1}%), director {:.3} µs/packet (CPU {DIRECTOR_CPU} \
                             busy {}){}",
                            si(r.sent_pps),
                            r.generator_share * 100.0,
                            si(r.delivered_pps),
                            r.delivered_share * 100.0,
                            r.director_us,
                            r.cpu_us
                                .map(|u| format!("{u:.3} µs/packet"))
                                .unwrap_or_else(|| "?".into()),
                            if r.warmup_delivered < r.warmup_sent {
                                format!(
                                    "; warm-up delivered {} of {}",
                                    r.warmup_delivered, r.warmup_sent
                                )
                            } else {
                                String::new()
                            }
                        );
                        if r.delivered_share >= SATURATED_BELOW {
                            report.unsaturated.push(format!(
                                "{name} udp {load} flow(s) rep {rep}: sent {} pps, delivered {:.1}%",
                                si(r.sent_pps),
                                r.delivered_share * 100.0
                            ));
                        }
                        let delivered = r.delivered_pps * f64::from(opts.duration_secs);
                        if r.back_drops as f64 > SINK_DROPS_WARN * delivered {
                            report.warnings.push(format!(
                                "{tag}: udp {load}: the sink's ring overflowed: {} frames the director sent \
                                 ({:.2}% of those delivered) were not counted, so its µs/packet is that much high",
                                r.back_drops,
                                r.back_drops as f64 * 100.0 / delivered.max(1.0)
                            ));
                        }
                        push(samples, sent_m, r.sent_pps);
                        push(samples, pps_m, r.delivered_pps);
                        push(samples, share_m, r.delivered_share);
                        push(samples, us_m, r.director_us);
                    }
                    Err(e) => {
                        for m in [sent_m, pps_m, share_m, us_m] {
                            samples.insert(m, Cell::Failed);
                        }
                        report
                            .errors
                            .push(format!("{tag}: udp {load} ({flows} flows): {e:#}"));
                    }
                }
                std::thread::sleep(SETTLE);
            }
        }
        for (close, rate_metric, cpu_metric, what) in [
            (
                false,
                Metric::HttpKeepAlive,
                Metric::HttpKeepAliveUs,
                "keep-alive",
            ),
            (true, Metric::HttpNewConn, Metric::HttpNewConnUs, "new conn"),
        ] {
            match http_load(lab, &url, opts.duration_secs, close, director) {
                Ok(r) => {
                    eprintln!(
                        "bench: {tag}: http {what}: {} req/s ({} requests, {} errors), director {:.2} µs/req",
                        si(r.rps),
                        r.requests,
                        r.errors,
                        r.director_us
                    );
                    if r.errors > 0 {
                        report.warnings.push(format!(
                            "{tag}: http {what}: wrk reported {} socket errors / non-2xx of {} requests",
                            r.errors, r.requests
                        ));
                    }
                    push(samples, rate_metric, r.rps);
                    push(samples, cpu_metric, r.director_us);
                }
                Err(e) => {
                    samples.insert(rate_metric, Cell::Failed);
                    samples.insert(cpu_metric, Cell::Failed);
                    report.errors.push(format!("{tag}: http {what}: {e:#}"));
                }
            }
            std::thread::sleep(SETTLE);
        }
    }
    Ok(())
}

struct UdpResult {
    sent_pps: f64,
    generator_share: f64,
    delivered_pps: f64,
    delivered_share: f64,
    director_us: f64,
    cpu_us: Option<f64>,
    back_drops: u64,
    warmup_sent: u64,
    warmup_delivered: u64,
}

/// Frames the director's `back` could not hand to the sink's ring.
fn back_tx_dropped(lab: &Lab) -> Result<u64> {
    let s = lab.exec("dir", &["cat", "/sys/class/net/back/statistics/tx_dropped"])?;
    s.trim()
        .parse()
        .with_context(|| format!("tx_dropped of back: {s:?}"))
}

fn udp_load(
    lab: &Lab,
    rig: &mut xdp::Rig,
    flows: u32,
    duration: Duration,
    director: &Director,
) -> Result<UdpResult> {
    // Warm-up: every flow twice, paced, so the connections exist (and ARP
    // is resolved) before the measured run.
    rig.configure(flows, Some(WARMUP_INTERVAL))?;
    let w0 = rig.delivered()?;
    let warm = rig.blast(LOAD_CPU, WARMUP_MAX, u64::from(flows.max(128)) * 2)?;
    std::thread::sleep(SETTLE);
    let warmup_delivered = rig.delivered()?.saturating_sub(w0);

    let d0 = rig.delivered()?;
    let drops0 = back_tx_dropped(lab)?;
    let c0 = CpuMark::now(director);
    let max = MAX_PPS.saturating_mul(duration.as_secs().max(1));
    rig.configure(flows, None)?;
    let blast = rig.blast(LOAD_CPU, duration, max)?;
    // Let what is still queued on the path arrive before counting.
    std::thread::sleep(Duration::from_millis(200));
    let c1 = CpuMark::now(director);
    let delivered = rig.delivered()?.saturating_sub(d0);
    let back_drops = back_tx_dropped(lab)?.saturating_sub(drops0);
    if blast.sent == 0 {
        bail!("the generator sent nothing");
    }
    if delivered == 0 {
        bail!(
            "the director delivered none of {} frames to the sink",
            blast.sent
        );
    }
    let secs = blast.elapsed.as_secs_f64().max(1e-3);
    let per_packet = |s: f64| s * 1e6 / delivered as f64;
    Ok(UdpResult {
        sent_pps: blast.sent as f64 / secs,
        generator_share: blast.cpu.as_secs_f64() / secs,
        delivered_pps: delivered as f64 / secs,
        delivered_share: delivered as f64 / blast.sent as f64,
        director_us: per_packet(c1.director - c0.director),
        cpu_us: c0.cpu.zip(c1.cpu).map(|(a, b)| per_packet(b - a)),
        back_drops,
        warmup_sent: warm.sent,
        warmup_delivered,
    })
}

struct HttpResult {
    rps: f64,
    requests: u64,
    errors: u64,
    director_us: f64,
}

fn http_load(
    lab: &Lab,
    url: &str,
    secs: u32,
    close: bool,
    director: &Director,
) -> Result<HttpResult> {
    let d = format!("{secs}s");
    let cpu = LOAD_CPU.to_string();
    let mut args = vec![
        "taskset",
        "-c",
        &cpu,
        "wrk",
        "-t2",
        "-c50",
        "-d",
        &d,
        "--timeout",
        "2s",
    ];
    if close {
        args.extend_from_slice(&["-H", "Connection: close"]);
    }
    args.push(url);
    let c0 = director.cpu_secs();
    let out = lab.exec_timeout("client", &args, Duration::from_secs(u64::from(secs) + 30))?;
    let c1 = director.cpu_secs();
    let w = parse_wrk(&out).with_context(|| format!("unreadable wrk output:\n{out}"))?;
    if w.requests == 0 {
        bail!("wrk completed no request:\n{}", out.trim());
    }
    Ok(HttpResult {
        rps: w.rps,
        requests: w.requests,
        errors: w.errors,
        director_us: (c1 - c0) * 1e6 / w.requests as f64,
    })
}

#[derive(Debug, PartialEq)]
struct Wrk {
    requests: u64,
    rps: f64,
    errors: u64,
}

fn parse_wrk(out: &str) -> Option<Wrk> {
    let mut requests = None;
    let mut rps = None;
    let mut errors = 0u64;
    for line in out.lines().map(str::trim) {
        if line.contains(" requests in ") {
            requests = line.split_whitespace().next()?.parse().ok();
        } else if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            // connect 0, read 0, write 0, timeout 0
            errors += v
                .split(',')
                .filter_map(|p| p.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            errors += v.trim().parse::<u64>().unwrap_or(0);
        }
    }
    Some(Wrk {
        requests: requests?,
        rps: rps?,
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output_is_parsed() {
        let out = "Running 5s test @ http://10.0.100.1/
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.92ms    1.03ms  23.50ms   89.01%
    Req/Sec    13.20k     1.10k   15.32k    70.00%
  131419 requests in 5.00s, 20.93MB read
  Socket errors: connect 2, read 5, write 0, timeout 1
  Non-2xx or 3xx responses: 3
Requests/sec:  26282.81
Transfer/sec:      4.19MB
";
        assert_eq!(
            parse_wrk(out),
            Some(Wrk {
                requests: 131419,
                rps: 26282.81,
                errors: 11
            })
        );
        assert_eq!(parse_wrk("unable to connect to 10.0.100.1:80"), None);
    }

    #[test]
    fn cells_show_median_and_spread() {
        let c = Cell::Samples(vec![300_000.0, 100_000.0, 200_000.0]);
        assert_eq!(c.median(), Some(200_000.0));
        assert_eq!(c.render(Metric::UdpManyPps), "200k (100k–300k)");
        let c = Cell::Samples(vec![1.5, 2.5]);
        assert_eq!(c.median(), Some(2.0));
        assert_eq!(c.render(Metric::UdpManyUs), "2.00 (1.50–2.50)");
        assert_eq!(
            Cell::Samples(vec![1_234_567.0]).render(Metric::UdpOnePps),
            "1.23M"
        );
        assert_eq!(Cell::NotApplicable("x").render(Metric::UdpOnePps), "n/a");
        assert_eq!(Cell::Failed.median(), None);
    }

    #[test]
    fn only_accepts_known_names_in_table_order() {
        let opts = |only: &[&str]| BenchOptions {
            only: Some(only.iter().map(|s| s.to_string()).collect()),
            ..BenchOptions::default()
        };
        let s = selected(&opts(&["rvs-dr-slow", "rvs-dr", "kernel-route"])).unwrap();
        assert_eq!(
            s,
            vec![
                Setup::KernelRoute,
                Setup::Rvs(Mode::Dr, true),
                Setup::Rvs(Mode::Dr, false)
            ]
        );
        assert!(selected(&opts(&["ipvs"])).is_err());
        assert_eq!(
            selected(&BenchOptions::default()).unwrap().len(),
            SETUPS.len()
        );
        for (s, n) in Setup::all().iter().zip(SETUPS) {
            assert_eq!(s.name(), n);
        }
    }

    /// Two setups, every metric measured: nft-dnat 100, rvs-dr 150.
    fn two_setups() -> Report {
        let mut cells = BTreeMap::new();
        for m in Metric::ALL {
            cells.insert(("nft-dnat".to_owned(), m), Cell::Samples(vec![100.0]));
            cells.insert(("rvs-dr".to_owned(), m), Cell::Samples(vec![150.0]));
        }
        Report {
            setups: vec!["nft-dnat".into(), "rvs-dr".into()],
            cells,
            unsaturated: vec!["rvs-dr udp many flow(s) rep 1: sent 1M pps, delivered 99.0%".into()],
            errors: vec![],
            warnings: vec![],
            repetitions: 1,
            duration_secs: 1,
            queues: 1,
            fast_path_slots: None,
            pinned: true,
            elapsed: Duration::from_secs(3),
            loadavg: ("0.10".into(), "1.00".into()),
        }
    }

    #[test]
    fn the_chart_has_a_bar_and_a_value_per_setup_and_panel() {
        let svg = two_setups().svg();
        if let Some(path) = std::env::var_os("RVS_CHART_SAMPLE") {
            std::fs::write(path, &svg).ok();
        }
        std::fs::write("/tmp/two_setups.svg", &svg).ok();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"), "{svg}");
        for title in [
            "UDP many flows: delivered pps",
            "UDP many flows: director CPU per packet",
            "UDP one flow: delivered pps",
            "UDP one flow: director CPU per packet",
        ] {
            assert!(svg.contains(title), "no panel {title:?}");
        }
        // plotters writes each text on a line of its own.
        let texts = |t: &str| svg.lines().filter(|l| *l == t).count();
        for setup in ["nft-dnat", "rvs-dr"] {
            assert_eq!(texts(setup), 4, "{setup}'s labels in {svg}");
        }
        // Values as the table writes them: pps as "150", µs as "150.0".
        for value in [" 100", " 150", " 100.0", " 150.0"] {
            assert_eq!(texts(value), 2, "{value:?} in {svg}");
        }
        // Bars, by colour: delivered and sent in the two pps panels, the
        // cost in the two µs panels; one per setup each.
        for (colour, bars) in [("#1F77B4", 4), ("#C6DBEF", 4), ("#D66027", 4)] {
            let drawn = svg
                .lines()
                .filter(|l| l.starts_with("<rect") && l.contains(&format!("fill=\"{colour}\"")))
                .count();
            assert_eq!(drawn, bars, "{colour} bars in {svg}");
        }
    }

    #[test]
    fn table_has_every_row_and_ratios_against_nft() {
        let r = two_setups();
        let t = r.table();
        for m in Metric::ALL {
            let rows = t.lines().filter(|l| l.starts_with(m.label())).count();
            let want = if m.in_ratio_table() { 2 } else { 1 };
            assert_eq!(rows, want, "{m:?} in\n{t}");
        }
        assert!(t.contains("1.50×"), "{t}");
        let many = t
            .lines()
            .find(|l| l.starts_with(Metric::UdpManyPps.label()))
            .unwrap();
        assert!(many.ends_with("150 !"), "unsaturated run flagged: {many}");
        let one = t
            .lines()
            .find(|l| l.starts_with(Metric::UdpOnePps.label()))
            .unwrap();
        assert!(!one.contains('!'), "{one}");
    }
}
