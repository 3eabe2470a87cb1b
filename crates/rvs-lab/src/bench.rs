//! `rvs-lab bench`: RVS against the kernel baselines, side by side.
//!
//! Every setup (kernel routing to one server, nftables DNAT, HAProxy
//! `mode tcp`, RVS in DR, NAT and TUN mode) gets a fresh [`Lab`] of the same
//! topology and the same loads, each bounded in time and count:
//!
//! - 64-byte UDP frames to VIP:9 from the client, over 256 flows and over
//!   one flow, sent by [`udp`] (a thread in the client's namespace); what
//!   reaches the UDP layer of the servers (`/proc/net/snmp`) is counted;
//! - HTTP keep-alive requests with `wrk -t2 -c50`;
//! - new TCP connections with the same wrk and `Connection: close`;
//! - the director's CPU time per packet / request where it belongs to one
//!   process (rvsd, haproxy), and the machine's softirq time per UDP packet
//!   (the whole path: kernel forwarding, and nftables' NAT, happen there).
//!
//! Each load runs `repetitions` times; the table shows the median and the
//! spread (min–max), and a second table the ratio of medians to nft-dnat.
//! Benchmarks print tables, they assert nothing about speed.

mod proc;
mod rvs;
mod udp;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddrV4;
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
}

impl Default for BenchOptions {
    fn default() -> BenchOptions {
        BenchOptions {
            repetitions: 3,
            duration_secs: 5,
            only: None,
        }
    }
}

/// Names of the setups, in table order, for `--only`.
pub const SETUPS: [&str; 6] = [
    "kernel-route",
    "nft-dnat",
    "haproxy",
    "rvs-dr",
    "rvs-nat",
    "rvs-tun",
];

/// The setup whose medians the ratio table divides by.
const REFERENCE: &str = "nft-dnat";
/// UDP flows (source ports) of the "many flows" load.
const MANY_FLOWS: usize = 256;
/// Count bound of one UDP run, per second of duration.
const MAX_PPS: u64 = 5_000_000;
/// UDP port of the datagram service (discard).
const UDP_PORT: u16 = 9;
/// Pause between loads, so queues drain and one load's tail is not the
/// next one's head.
const SETTLE: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    KernelRoute,
    NftDnat,
    Haproxy,
    Rvs(Mode),
}

impl Setup {
    fn all() -> [Setup; 6] {
        [
            Setup::KernelRoute,
            Setup::NftDnat,
            Setup::Haproxy,
            Setup::Rvs(Mode::Dr),
            Setup::Rvs(Mode::Nat),
            Setup::Rvs(Mode::Tun),
        ]
    }

    fn name(self) -> &'static str {
        match self {
            Setup::KernelRoute => "kernel-route",
            Setup::NftDnat => "nft-dnat",
            Setup::Haproxy => "haproxy",
            Setup::Rvs(Mode::Dr) => "rvs-dr",
            Setup::Rvs(Mode::Nat) => "rvs-nat",
            Setup::Rvs(Mode::Tun) => "rvs-tun",
        }
    }

    fn spec(self) -> LabSpec {
        let (mode, director) = match self {
            Setup::KernelRoute => (Mode::Dr, DirectorKind::KernelRoute),
            Setup::NftDnat => (Mode::Nat, DirectorKind::NftDnat),
            Setup::Haproxy => (Mode::Dr, DirectorKind::Haproxy),
            Setup::Rvs(mode) => (mode, DirectorKind::None),
        };
        LabSpec {
            prefix: unique_prefix(),
            mode,
            servers: 3,
            director,
            decap_bin: None,
            queues: 1,
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
    /// UDP datagrams per second delivered to the servers, 256 flows.
    UdpManyPps,
    /// UDP datagrams per second delivered to the servers, one flow.
    UdpOnePps,
    /// Share of the sent datagrams that arrived, 256 flows.
    UdpManyDelivered,
    /// HTTP requests per second on kept-alive connections.
    HttpKeepAlive,
    /// HTTP requests per second, one connection each.
    HttpNewConn,
    /// Director process CPU per delivered datagram (256 flows).
    DirectorUsPerPacket,
    /// Director process CPU per keep-alive request.
    DirectorUsPerRequest,
    /// Director process CPU per new connection.
    DirectorUsPerConn,
    /// Machine softirq time per delivered datagram (256 flows).
    SoftirqUsPerPacket,
}

impl Metric {
    const ALL: [Metric; 9] = [
        Metric::UdpManyPps,
        Metric::UdpOnePps,
        Metric::UdpManyDelivered,
        Metric::HttpKeepAlive,
        Metric::HttpNewConn,
        Metric::DirectorUsPerPacket,
        Metric::DirectorUsPerRequest,
        Metric::DirectorUsPerConn,
        Metric::SoftirqUsPerPacket,
    ];

    /// The row label.
    pub fn label(self) -> &'static str {
        match self {
            Metric::UdpManyPps => "udp 64B pps, many flows",
            Metric::UdpOnePps => "udp 64B pps, one flow",
            Metric::UdpManyDelivered => "udp delivered/sent, many",
            Metric::HttpKeepAlive => "http keep-alive req/s",
            Metric::HttpNewConn => "http new conn/s",
            Metric::DirectorUsPerPacket => "director µs/packet (udp)",
            Metric::DirectorUsPerRequest => "director µs/req (keep-alive)",
            Metric::DirectorUsPerConn => "director µs/conn (new conn)",
            Metric::SoftirqUsPerPacket => "machine softirq µs/packet",
        }
    }

    fn format(self, v: f64) -> String {
        match self {
            Metric::UdpManyPps
            | Metric::UdpOnePps
            | Metric::HttpKeepAlive
            | Metric::HttpNewConn => si(v),
            Metric::UdpManyDelivered => format!("{:.1}%", v * 100.0),
            Metric::DirectorUsPerPacket
            | Metric::DirectorUsPerRequest
            | Metric::DirectorUsPerConn
            | Metric::SoftirqUsPerPacket => {
                if v >= 10.0 {
                    format!("{v:.1}")
                } else {
                    format!("{v:.2}")
                }
            }
        }
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
    /// Load failures and setups that could not be built, in order.
    pub errors: Vec<String>,
    /// Warnings worth reading next to the numbers (e.g. HTTP errors).
    pub warnings: Vec<String>,
    /// What the run was asked to do.
    pub repetitions: u32,
    /// Seconds per load run.
    pub duration_secs: u32,
    /// Wall time of the whole run.
    pub elapsed: Duration,
    /// 1-minute load average of the machine at the start and the end (other
    /// work on the machine makes the numbers noisy).
    pub loadavg: (String, String),
}

impl Report {
    /// The cell of `setup` for `metric`.
    pub fn cell(&self, setup: &str, metric: Metric) -> Option<&Cell> {
        self.cells.get(&(setup.to_owned(), metric))
    }

    /// The main table, the ratio table and the notes, ready to print.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "rvs-lab bench: {} repetition(s) × {} s per load, median (min–max); {} setups in {:.0} s; \
             load average {} at start, {} at end",
            self.repetitions,
            self.duration_secs,
            self.setups.len(),
            self.elapsed.as_secs_f64(),
            self.loadavg.0,
            self.loadavg.1
        );
        let rows: Vec<(String, Vec<String>)> = Metric::ALL
            .iter()
            .map(|&m| {
                let cells = self
                    .setups
                    .iter()
                    .map(|s| {
                        self.cell(s, m)
                            .map(|c| c.render(m))
                            .unwrap_or_else(|| "-".into())
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
             - udp: {} B frames (UDP payload {} B) to {VIP}:{UDP_PORT} from one sender thread in the client \
             namespace, {MANY_FLOWS} source ports or one; pps = datagrams that reached the servers' UDP layer \
             (/proc/net/snmp InDatagrams+NoPorts+InErrors) per second sent.\n\
             - http: wrk -t2 -c50 against http://{VIP}/ (nginx, 3 servers; kernel-route: rs1 only, no balancing).\n\
             - director µs: user+system CPU of the rvsd / haproxy processes over the load, per delivered \
             packet or completed request; n/a where the director's work is kernel softirq (nft-dnat), there \
             is no director (kernel-route) or the load does not apply (haproxy is TCP only). rvsd's figure \
             excludes the XDP redirect done in softirq before its sockets see a frame.\n\
             - machine softirq µs/packet: all CPUs' softirq time over the udp many-flows load per delivered \
             packet: the whole path (client, router, director, servers), so compare columns, not absolutes; \
             the difference to kernel-route is roughly the director hop.\n\
             - the ratio table leaves out rows {REFERENCE} has no value for (its director work is softirq).\n\
             - all setups share one 2-core machine with the load generators; other work on it adds noise.",
            64,
            udp::PAYLOAD
        );
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
    let setups = selected(opts)?;
    crate::install_signal_handler();
    let started = Instant::now();
    let mut report = Report {
        setups: setups.iter().map(|s| s.name().to_owned()).collect(),
        cells: BTreeMap::new(),
        errors: Vec::new(),
        warnings: Vec::new(),
        repetitions: opts.repetitions,
        duration_secs: opts.duration_secs,
        elapsed: Duration::ZERO,
        loadavg: (loadavg(), String::new()),
    };
    for setup in setups {
        let t = Instant::now();
        eprintln!("bench: {} — building the lab", setup.name());
        let mut samples: BTreeMap<Metric, Cell> = BTreeMap::new();
        if let Err(e) = bench_setup(setup, opts, &mut samples, &mut report) {
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

/// Where the director's CPU time can be read, if anywhere.
enum Director {
    /// No director process (kernel-route, nft-dnat).
    Kernel(&'static str),
    /// These processes are the director.
    Processes(Vec<u32>),
}

impl Director {
    fn cpu_secs(&self) -> Option<f64> {
        match self {
            Director::Kernel(_) => None,
            Director::Processes(p) => Some(proc::processes_cpu_secs(p)),
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
    samples: &mut BTreeMap<Metric, Cell>,
    report: &mut Report,
) -> Result<()> {
    let lab = Lab::build(setup.spec())?;
    // Same client-side limits for every setup: new connections need ports.
    for role in ["client", "dir"] {
        lab.set_sysctl(role, "net.ipv4.ip_local_port_range", "1024 65000")?;
        lab.set_sysctl(role, "net.ipv4.tcp_tw_reuse", "1")?;
    }
    let mut rvsd = None;
    let director = match setup {
        Setup::KernelRoute => Director::Kernel("no director"),
        Setup::NftDnat => Director::Kernel("kernel softirq"),
        Setup::Haproxy => {
            let pids = proc::pids_named(&lab, "dir", "haproxy")?;
            if pids.is_empty() {
                bail!("no haproxy process in {}", lab.ns("dir"));
            }
            Director::Processes(pids)
        }
        Setup::Rvs(mode) => {
            let d = rvs::Rvsd::start(&lab)?;
            d.configure(&lab, mode)?;
            let pid = d.pid();
            rvsd = Some(d);
            Director::Processes(vec![pid])
        }
    };
    let result = run_loads(&lab, setup, opts, &director, samples, report);
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

fn run_loads(
    lab: &Lab,
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
        for m in [
            Metric::UdpManyPps,
            Metric::UdpOnePps,
            Metric::UdpManyDelivered,
            Metric::DirectorUsPerPacket,
            Metric::SoftirqUsPerPacket,
        ] {
            samples.insert(m, Cell::NotApplicable("TCP only"));
        }
    }
    if let Director::Kernel(why) = director {
        for m in [
            Metric::DirectorUsPerPacket,
            Metric::DirectorUsPerRequest,
            Metric::DirectorUsPerConn,
        ] {
            samples.insert(m, Cell::NotApplicable(why));
        }
    }

    for rep in 1..=opts.repetitions {
        let tag = format!("{name} {rep}/{}", opts.repetitions);
        if setup.carries_udp() {
            for (flows, pps_metric) in [(MANY_FLOWS, Metric::UdpManyPps), (1, Metric::UdpOnePps)] {
                match udp_load(lab, flows, duration, director) {
                    Ok(r) => {
                        eprintln!(
                            "bench: {tag}: udp {flows} flow(s): sent {} pps, delivered {} pps{}",
                            si(r.sent_pps),
                            si(r.delivered_pps),
                            r.director_us
                                .map(|u| format!(", director {u:.2} µs/packet"))
                                .unwrap_or_default()
                        );
                        push(samples, pps_metric, r.delivered_pps);
                        if flows == MANY_FLOWS {
                            push(samples, Metric::UdpManyDelivered, r.delivered_share);
                            push(samples, Metric::SoftirqUsPerPacket, r.softirq_us);
                            if let Some(u) = r.director_us {
                                push(samples, Metric::DirectorUsPerPacket, u);
                            }
                        }
                    }
                    Err(e) => {
                        samples.insert(pps_metric, Cell::Failed);
                        report
                            .errors
                            .push(format!("{tag}: udp {flows} flow(s): {e:#}"));
                    }
                }
                std::thread::sleep(SETTLE);
            }
        }
        for (close, rate_metric, cpu_metric, what) in [
            (
                false,
                Metric::HttpKeepAlive,
                Metric::DirectorUsPerRequest,
                "keep-alive",
            ),
            (
                true,
                Metric::HttpNewConn,
                Metric::DirectorUsPerConn,
                "new conn",
            ),
        ] {
            match http_load(lab, &url, opts.duration_secs, close, director) {
                Ok(r) => {
                    eprintln!(
                        "bench: {tag}: http {what}: {} req/s ({} requests, {} errors){}",
                        si(r.rps),
                        r.requests,
                        r.errors,
                        r.director_us
                            .map(|u| format!(", director {u:.2} µs/req"))
                            .unwrap_or_default()
                    );
                    if r.errors > 0 {
                        report.warnings.push(format!(
                            "{tag}: http {what}: wrk reported {} socket errors / non-2xx of {} requests",
                            r.errors, r.requests
                        ));
                    }
                    push(samples, rate_metric, r.rps);
                    if let Some(u) = r.director_us {
                        push(samples, cpu_metric, u);
                    }
                }
                Err(e) => {
                    samples.insert(rate_metric, Cell::Failed);
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
    delivered_pps: f64,
    delivered_share: f64,
    softirq_us: f64,
    director_us: Option<f64>,
}

fn udp_arrived_all(lab: &Lab) -> Result<u64> {
    (1..=lab.spec().servers)
        .map(|i| proc::udp_arrived(lab, &format!("rs{i}")))
        .sum()
}

fn udp_load(lab: &Lab, flows: usize, duration: Duration, director: &Director) -> Result<UdpResult> {
    let dst = SocketAddrV4::new(VIP, UDP_PORT);
    let before = udp_arrived_all(lab)?;
    let cpu0 = proc::MachineCpu::now()?;
    let dir0 = director.cpu_secs();
    let max = MAX_PPS.saturating_mul(duration.as_secs().max(1));
    let blast = udp::blast(&lab.ns("client"), dst, flows, duration, max)?;
    // Let what is still queued on the path arrive before counting.
    std::thread::sleep(Duration::from_millis(200));
    let dir1 = director.cpu_secs();
    let cpu1 = proc::MachineCpu::now()?;
    let after = udp_arrived_all(lab)?;
    let delivered = after.saturating_sub(before);
    let secs = blast.elapsed.as_secs_f64().max(1e-3);
    if blast.sent == 0 {
        bail!("the sender could not send a single datagram to {dst}");
    }
    let per_packet = |secs: f64| secs * 1e6 / delivered.max(1) as f64;
    Ok(UdpResult {
        sent_pps: blast.sent as f64 / secs,
        delivered_pps: delivered as f64 / secs,
        delivered_share: delivered as f64 / blast.sent as f64,
        softirq_us: per_packet(cpu1.softirq_since(&cpu0)),
        director_us: match (dir0, dir1) {
            (Some(a), Some(b)) if delivered > 0 => Some(per_packet(b - a)),
            _ => None,
        },
    })
}

struct HttpResult {
    rps: f64,
    requests: u64,
    errors: u64,
    director_us: Option<f64>,
}

fn http_load(
    lab: &Lab,
    url: &str,
    secs: u32,
    close: bool,
    director: &Director,
) -> Result<HttpResult> {
    let d = format!("{secs}s");
    let mut args = vec!["wrk", "-t2", "-c50", "-d", &d, "--timeout", "2s"];
    if close {
        args.extend_from_slice(&["-H", "Connection: close"]);
    }
    args.push(url);
    let dir0 = director.cpu_secs();
    let out = lab.exec_timeout("client", &args, Duration::from_secs(u64::from(secs) + 30))?;
    let dir1 = director.cpu_secs();
    let w = parse_wrk(&out).with_context(|| format!("unreadable wrk output:\n{out}"))?;
    if w.requests == 0 {
        bail!("wrk completed no request:\n{}", out.trim());
    }
    Ok(HttpResult {
        rps: w.rps,
        requests: w.requests,
        errors: w.errors,
        director_us: match (dir0, dir1) {
            (Some(a), Some(b)) => Some((b - a) * 1e6 / w.requests as f64),
            _ => None,
        },
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
        assert_eq!(c.render(Metric::DirectorUsPerPacket), "2.00 (1.50–2.50)");
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
        let s = selected(&opts(&["rvs-dr", "kernel-route"])).unwrap();
        assert_eq!(s, vec![Setup::KernelRoute, Setup::Rvs(Mode::Dr)]);
        assert!(selected(&opts(&["ipvs"])).is_err());
        assert_eq!(
            selected(&BenchOptions::default()).unwrap().len(),
            SETUPS.len()
        );
        for (s, n) in Setup::all().iter().zip(SETUPS) {
            assert_eq!(s.name(), n);
        }
    }

    #[test]
    fn table_has_every_row_and_ratios_against_nft() {
        let mut cells = BTreeMap::new();
        for m in Metric::ALL {
            cells.insert(("nft-dnat".to_owned(), m), Cell::Samples(vec![100.0]));
            cells.insert(("rvs-dr".to_owned(), m), Cell::Samples(vec![150.0]));
        }
        let r = Report {
            setups: vec!["nft-dnat".into(), "rvs-dr".into()],
            cells,
            errors: vec![],
            warnings: vec![],
            repetitions: 1,
            duration_secs: 1,
            elapsed: Duration::from_secs(3),
            loadavg: ("0.10".into(), "1.00".into()),
        };
        let t = r.table();
        for m in Metric::ALL {
            let rows = t.lines().filter(|l| l.starts_with(m.label())).count();
            assert_eq!(rows, 2, "{m:?} in\n{t}");
        }
        assert!(t.contains("1.50×"), "{t}");
    }
}
