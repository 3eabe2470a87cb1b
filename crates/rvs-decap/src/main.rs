//! `rvs-decap`: a user-space IPIP decapsulator for TUN-mode real servers.
//!
//! On kernels without the `ipip` module a real server cannot terminate the
//! director's IPv4-in-IPv4 tunnel. This program receives the tunnelled
//! packets on a raw IPIP socket, checks them, and injects the inner packet
//! into a TUN device that holds the VIPs, so the local stack answers the
//! client directly with the VIP as source. See README.md.

mod packet;
mod tun;

use std::io::{ErrorKind, Read};
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use rvs_wire::ip_proto;
use socket2::{Domain, Protocol, Socket, Type};

use packet::{decapsulate, Drop};
use tun::Tun;

/// Command line: which VIPs to accept and what to call the device.
#[derive(Parser, Debug)]
#[command(
    version,
    about = "Decapsulate IPIP (LVS TUN mode) into a TUN device holding the VIPs"
)]
struct Args {
    /// Virtual IP the director tunnels to this server (repeat for several).
    #[arg(long = "vip", required = true)]
    vips: Vec<Ipv4Addr>,
    /// Name of the TUN device to create; removed again on exit.
    #[arg(long, default_value = "rvsdecap0")]
    tun_name: String,
}

/// What happened to received packets; printed on exit.
#[derive(Debug, Default)]
struct Counters {
    received: u64,
    forwarded: u64,
    outer_malformed: u64,
    inner_malformed: u64,
    not_vip: u64,
    write_errors: u64,
}

/// How long a receive blocks before the loop looks at the stop flag again.
const POLL: Duration = Duration::from_millis(200);

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Escape codes only where a terminal shows them as colour.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    if let Err(e) = run(Args::parse()) {
        tracing::error!("{e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .context("installing the SIGINT/SIGTERM handler")?;
    }

    let socket = Socket::new(
        Domain::IPV4,
        Type::RAW,
        Some(Protocol::from(i32::from(ip_proto::IPIP))),
    )
    .context("opening a raw IPv4 socket for protocol 4 (IPIP); this needs root or CAP_NET_RAW")?;
    socket
        .set_read_timeout(Some(POLL))
        .context("setting the receive timeout on the raw socket")?;
    // Large bursts from the director should queue rather than drop.
    if let Err(e) = socket.set_recv_buffer_size(4 << 20) {
        tracing::warn!("could not enlarge the receive buffer: {e}");
    }

    let mut tun = Tun::open(&args.tun_name).with_context(|| {
        format!(
            "creating TUN device {} (needs /dev/net/tun and CAP_NET_ADMIN)",
            args.tun_name
        )
    })?;
    configure(tun.name(), &args.vips)?;
    tracing::info!(device = tun.name(), vips = ?args.vips, "decapsulating IPIP");

    let counters = receive_loop(&socket, &mut tun, &args.vips, &stop);

    tracing::info!(device = tun.name(), "shutting down, removing device");
    drop(tun);
    println!(
        "rvs-decap counters: received={} forwarded={} outer_malformed={} inner_malformed={} not_vip={} write_errors={}",
        counters.received,
        counters.forwarded,
        counters.outer_malformed,
        counters.inner_malformed,
        counters.not_vip,
        counters.write_errors
    );
    Ok(())
}

/// Receives until `stop` is set; one buffer for the whole run, no allocation
/// per packet.
fn receive_loop(socket: &Socket, tun: &mut Tun, vips: &[Ipv4Addr], stop: &AtomicBool) -> Counters {
    let mut counters = Counters::default();
    let mut buf = vec![0u8; 65536];
    let mut reader = socket;
    while !stop.load(Ordering::Relaxed) {
        let n = match reader.read(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => {
                tracing::warn!("raw socket receive failed: {e}");
                std::thread::sleep(POLL);
                continue;
            }
        };
        counters.received += 1;
        match decapsulate(&buf[..n], vips) {
            Ok(inner) => match tun.inject(inner) {
                Ok(()) => counters.forwarded += 1,
                Err(e) => {
                    counters.write_errors += 1;
                    tracing::debug!("TUN write failed: {e}");
                }
            },
            Err(reason) => {
                tracing::trace!(?reason, len = n, "dropped");
                match reason {
                    Drop::OuterMalformed => counters.outer_malformed += 1,
                    Drop::InnerMalformed => counters.inner_malformed += 1,
                    Drop::NotVip => counters.not_vip += 1,
                }
            }
        }
    }
    counters
}

/// Puts the VIPs on the device, brings it up and turns reverse-path
/// filtering off where it would drop the injected packets.
fn configure(dev: &str, vips: &[Ipv4Addr]) -> Result<()> {
    for vip in vips {
        ip(&["addr", "add", &format!("{vip}/32"), "dev", dev])?;
    }
    ip(&["link", "set", "dev", dev, "up"])?;
    // Inner sources are clients, reached through another interface: strict
    // (or loose, for unrouted clients) reverse-path filtering would drop them.
    // The kernel uses max(all, dev), so both must be 0.
    for scope in ["all", dev] {
        let path = format!("/proc/sys/net/ipv4/conf/{scope}/rp_filter");
        std::fs::write(&path, "0").with_context(|| format!("writing 0 to {path}"))?;
    }
    tracing::info!("set net.ipv4.conf.all.rp_filter=0 and net.ipv4.conf.{dev}.rp_filter=0");
    Ok(())
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running `ip` (install the iproute2 package)")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
