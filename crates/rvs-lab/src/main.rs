//! `rvs-lab`: bring the LVS namespaces lab up by hand.
//!
//! `rvs-lab up --mode dr --kind none [--queues N]` builds the lab, prints the
//! namespace names and keeps it until Ctrl-C/SIGTERM, then removes
//! everything; `demo` and `bench` build their own labs (also `--queues N`).

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use rvs_lab::{demo, unique_prefix, DirectorKind, Lab, LabSpec, Mode};

/// Command line of the lab tool.
#[derive(Parser, Debug)]
#[command(version, about = "RVS network-namespace lab")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Build the lab and keep it until Ctrl-C.
    Up {
        /// How the real servers are wired.
        #[arg(long, value_enum, default_value_t = ModeArg::Dr)]
        mode: ModeArg,
        /// Director the lab runs itself (none: attach your own to dir's front/back).
        #[arg(long, value_enum, default_value_t = KindArg::None)]
        kind: KindArg,
        /// Number of real servers.
        #[arg(long, default_value_t = 3)]
        servers: usize,
        /// Namespace name prefix (default: unique per process).
        #[arg(long)]
        prefix: Option<String>,
        /// rvs-decap binary for --mode tun (default: next to this program).
        #[arg(long)]
        decap: Option<PathBuf>,
        /// TX and RX queues of every veth.
        #[arg(long, default_value_t = 1)]
        queues: u32,
    },
    /// Build a lab, run rvsd in it, configure it with rvsadm and send
    /// requests; prints who answered. Needs root and the workspace binaries
    /// (`cargo build -p rvsd -p rvsadm -p rvs-decap`, same profile).
    Demo {
        /// Forwarding method (and how the real servers are wired).
        #[arg(long, value_enum, default_value_t = ModeArg::Dr)]
        mode: ModeArg,
        /// Scheduler of the virtual service.
        #[arg(long, value_enum, default_value_t = SchedArg::Rr)]
        scheduler: SchedArg,
        /// Number of sequential requests from the client.
        #[arg(long, default_value_t = 12)]
        requests: usize,
        /// One weight per real server, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,1,1")]
        weights: Vec<u32>,
        /// Namespace name prefix (default: unique per process).
        #[arg(long)]
        prefix: Option<String>,
        /// TX and RX queues of every veth (rvsd serves each RX queue).
        #[arg(long, default_value_t = 1)]
        queues: u32,
        /// Two directors with keepalived VRRP (active/passive; the master
        /// crashes half-way), or N behind ECMP with BIRD (see --directors).
        #[arg(long, value_enum)]
        ha: Option<HaArg>,
        /// Directors behind the router's ECMP, each announcing the VIP with
        /// BIRD (active/active; one leaves and returns). Implies --ha ecmp;
        /// default 3 with --ha ecmp.
        #[arg(long)]
        directors: Option<usize>,
        /// Address family of the service: 6 makes the lab dual-stack and
        /// balances [fd00:100::1]:80 over IPv6 real servers.
        #[arg(long, value_enum, default_value_t = FamilyArg::V4)]
        family: FamilyArg,
    },
    /// Measure RVS in each mode against kernel routing, nftables DNAT and
    /// HAProxy on the same lab, and print one table (median and spread).
    Bench {
        /// Repetitions of every load.
        #[arg(long, default_value_t = 3)]
        repetitions: u32,
        /// Seconds per load.
        #[arg(long, default_value_t = 5)]
        duration: u32,
        /// Only these setups (comma-separated): kernel-route, nft-dnat,
        /// haproxy, rvs-dr, rvs-dr-slow, rvs-nat, rvs-nat-slow, rvs-tun,
        /// rvs-tun-slow, rvs-fullnat (`-slow`: rvsd with `fast_path =
        /// false`).
        #[arg(long, value_delimiter = ',')]
        only: Option<Vec<String>>,
        /// TX and RX queues of every veth.
        #[arg(long, default_value_t = 1)]
        queues: u32,
        /// rvsd's `fast_path_slots` (default: its own, two per connection
        /// of the default max_connections).
        #[arg(long, value_name = "N")]
        fast_path_slots: Option<u32>,
        /// Also write the results as an SVG chart to this file.
        #[arg(long, value_name = "FILE", default_value = "bench.svg")]
        svg: std::path::PathBuf,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ModeArg {
    Dr,
    Nat,
    Tun,
    /// FullNAT (RVS's extension): servers need neither the director as
    /// gateway nor the VIP.
    Fullnat,
}

/// `--family`: the service's address family.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum FamilyArg {
    /// IPv4.
    #[value(name = "4")]
    V4,
    /// IPv6.
    #[value(name = "6")]
    V6,
}

/// `--ha`: how several directors share the work.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum HaArg {
    /// Active/passive: keepalived VRRP.
    Vrrp,
    /// Active/active: ECMP, BIRD announcing the VIP.
    Ecmp,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum SchedArg {
    Rr,
    Wrr,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::Dr => Mode::Dr,
            ModeArg::Nat => Mode::Nat,
            ModeArg::Tun => Mode::Tun,
            ModeArg::Fullnat => Mode::FullNat,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum KindArg {
    None,
    Route,
    Nft,
    Haproxy,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Escape codes only where a terminal shows them as colour.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match Cli::parse().command {
        Cmd::Up {
            mode,
            kind,
            servers,
            prefix,
            decap,
            queues,
        } => {
            let spec = LabSpec {
                prefix: prefix.unwrap_or_else(unique_prefix),
                mode: mode.into(),
                servers,
                director: match kind {
                    KindArg::None => DirectorKind::None,
                    KindArg::Route => DirectorKind::KernelRoute,
                    KindArg::Nft => DirectorKind::NftDnat,
                    KindArg::Haproxy => DirectorKind::Haproxy,
                },
                decap_bin: decap,
                queues,
                directors: 1,
                vip_route: rvs_lab::VipRoute::FirstDirector,
            };
            // Install before building so a Ctrl-C during setup also cleans up.
            rvs_lab::install_signal_handler();
            let lab = Lab::build(spec)?;
            println!("lab {} is up ({:?}, {:?}):", lab.prefix(), mode, kind);
            for role in lab.roles() {
                println!("  {:<7} {}", role, lab.ns(&role));
            }
            println!(
                "try: ip netns exec {} curl -s http://{}/",
                lab.ns("client"),
                rvs_lab::VIP
            );
            println!("Ctrl-C tears it down.");
            // The signal handler tears the lab down and exits.
            loop {
                std::thread::park();
            }
        }
        Cmd::Bench {
            repetitions,
            duration,
            only,
            queues,
            fast_path_slots,
            svg,
        } => rvs_lab::bench::run(&rvs_lab::bench::BenchOptions {
            repetitions,
            duration_secs: duration,
            only,
            queues,
            fast_path_slots,
            svg: Some(svg),
        }),
        Cmd::Demo {
            mode,
            scheduler,
            requests,
            weights,
            prefix,
            queues,
            ha,
            directors,
            family,
        } => {
            let ha = match (ha, directors) {
                (None, None | Some(1)) => None,
                (Some(HaArg::Vrrp), None | Some(2)) => Some(demo::Ha::Vrrp),
                (Some(HaArg::Vrrp), Some(n)) => {
                    anyhow::bail!("--ha vrrp runs 2 directors, not {n}")
                }
                (None | Some(HaArg::Ecmp), n) => Some(demo::Ha::Ecmp {
                    directors: n.unwrap_or(3),
                }),
            };
            let opts = demo::DemoOptions {
                mode: mode.into(),
                scheduler: match scheduler {
                    SchedArg::Rr => demo::Scheduler::Rr,
                    SchedArg::Wrr => demo::Scheduler::Wrr,
                },
                requests,
                weights,
                prefix,
                queues,
                ha,
                family: match family {
                    FamilyArg::V4 => demo::Family::V4,
                    FamilyArg::V6 => demo::Family::V6,
                },
            };
            let spread = demo::run(&opts)?;
            if spread.contains_key(demo::NO_ANSWER) {
                anyhow::bail!("some requests got no answer (see above)");
            }
            Ok(())
        }
    }
}
