//! `rvs-decap`: a user-space tunnel decapsulator for TUN-mode real servers.
//!
//! On kernels without the `ipip` (or `ip6_tunnel`, `fou`, `ip_gre`) module a
//! real server cannot terminate the director's tunnel. This program receives
//! the tunnelled packets — IPIP on a raw socket per family, GUE on a UDP
//! socket per family (`--gue-port`), GRE on a raw socket per family
//! (`--gre`) — checks them, and injects the inner packet into a TUN device
//! that holds the VIPs, so the local stack answers the client directly with
//! the VIP as source. See README.md.

mod packet;
mod tun;

use std::io::{ErrorKind, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use rvs_wire::ip_proto;
use socket2::{Domain, Protocol, Socket, Type};

use packet::{
    decapsulate, decapsulate_gre, decapsulate_gre_v6, decapsulate_gue, decapsulate_v6, Drop,
};
use tun::Tun;

/// Command line: which VIPs to accept and what to call the device.
#[derive(Parser, Debug)]
#[command(
    version,
    about = "Decapsulate IPIP, GUE and GRE (LVS TUN mode) into a TUN device holding the VIPs"
)]
struct Args {
    /// Virtual IP the director tunnels to this server (repeat for several;
    /// IPv4 VIPs arrive in IPIP, IPv6 VIPs in IPv6-in-IPv6).
    #[arg(long = "vip", required = true)]
    vips: Vec<IpAddr>,
    /// Also receive GUE (`--tun-type gue --tun-port PORT`) on this UDP port.
    #[arg(long)]
    gue_port: Option<u16>,
    /// Also receive GRE (`--tun-type gre`, protocol 47).
    #[arg(long)]
    gre: bool,
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

impl Counters {
    /// Adds another receive loop's counters.
    fn add(&mut self, o: &Counters) {
        self.received += o.received;
        self.forwarded += o.forwarded;
        self.outer_malformed += o.outer_malformed;
        self.inner_malformed += o.inner_malformed;
        self.not_vip += o.not_vip;
        self.write_errors += o.write_errors;
    }
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
    let vips4: Vec<Ipv4Addr> = args
        .vips
        .iter()
        .filter_map(|v| match v {
            IpAddr::V4(a) => Some(*a),
            IpAddr::V6(_) => None,
        })
        .collect();
    let vips6: Vec<Ipv6Addr> = args
        .vips
        .iter()
        .filter_map(|v| match v {
            IpAddr::V6(a) => Some(*a),
            IpAddr::V4(_) => None,
        })
        .collect();
    // Per family that has a VIP: a raw socket for IPIP, and as asked one
    // for GRE and a UDP socket on the GUE port. Each gets a receive loop.
    let (v4, v6) = (!vips4.is_empty(), !vips6.is_empty());
    let mut receivers: Vec<(Socket, Decap<'_>)> = Vec::new();
    if v4 {
        let what = "IPv4 socket for protocol 4 (IPIP)";
        let socket = raw_socket(Domain::IPV4, ip_proto::IPIP, what)?;
        receivers.push((socket, Box::new(|b| decapsulate(b, &vips4))));
    }
    if v6 {
        let what = "IPv6 socket for next header 41 (IPv6 in IPv6)";
        let socket = raw_socket(Domain::IPV6, ip_proto::IPV6, what)?;
        receivers.push((socket, Box::new(|b| decapsulate_v6(b, &vips6))));
    }
    if args.gre {
        if v4 {
            let socket = raw_socket(Domain::IPV4, ip_proto::GRE, "IPv4 socket for GRE")?;
            receivers.push((socket, Box::new(|b| decapsulate_gre(b, &vips4))));
        }
        if v6 {
            let socket = raw_socket(Domain::IPV6, ip_proto::GRE, "IPv6 socket for GRE")?;
            receivers.push((socket, Box::new(|b| decapsulate_gre_v6(b, &vips6))));
        }
    }
    if let Some(port) = args.gue_port {
        for (family, wanted) in [(Domain::IPV4, v4), (Domain::IPV6, v6)] {
            if wanted {
                let socket = gue_socket(family, port)?;
                receivers.push((socket, Box::new(|b| decapsulate_gue(b, &vips4, &vips6))));
            }
        }
    }

    let tun = Tun::open(&args.tun_name).with_context(|| {
        format!(
            "creating TUN device {} (needs /dev/net/tun and CAP_NET_ADMIN)",
            args.tun_name
        )
    })?;
    configure(tun.name(), &args.vips)?;
    tracing::info!(device = tun.name(), vips = ?args.vips, gue_port = ?args.gue_port, gre = args.gre, "decapsulating");

    let counters = std::thread::scope(|s| -> Result<Counters> {
        let mut loops = Vec::new();
        for (socket, decap) in &receivers {
            let mut tun = tun.try_clone().context("duplicating the TUN descriptor")?;
            let stop = &stop;
            loops.push(s.spawn(move || receive_loop(socket, &mut tun, stop, decap)));
        }
        let mut total = Counters::default();
        for h in loops {
            let c = h
                .join()
                .map_err(|_| anyhow::anyhow!("a receive loop panicked"))?;
            total.add(&c);
        }
        Ok(total)
    })?;

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

/// What a receive loop does with each received buffer: the inner packet to
/// inject, or why not.
type Decap<'a> = Box<dyn for<'b> Fn(&'b [u8]) -> Result<&'b [u8], Drop> + Send + Sync + 'a>;

/// A UDP socket of `domain` bound to the GUE `port` on every address. An
/// IPv6 one accepts datagrams with a zero UDP checksum, which the
/// director sends with `--tun-nocsum` as the kernel does (RFC 6935).
fn gue_socket(domain: Domain, port: u16) -> Result<Socket> {
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))
        .context("opening a UDP socket for GUE")?;
    let addr: std::net::SocketAddr = if domain == Domain::IPV6 {
        socket
            .set_only_v6(true)
            .context("IPV6_V6ONLY on the GUE socket")?;
        let on: libc::c_int = 1;
        // SAFETY: a valid socket descriptor, a c_int option value of the
        // size passed.
        let rc = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&socket),
                libc::IPPROTO_UDP,
                libc::UDP_NO_CHECK6_RX,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .context("UDP_NO_CHECK6_RX on the IPv6 GUE socket");
        }
        (Ipv6Addr::UNSPECIFIED, port).into()
    } else {
        (Ipv4Addr::UNSPECIFIED, port).into()
    };
    socket
        .bind(&addr.into())
        .with_context(|| format!("binding the GUE socket to UDP port {port}"))?;
    socket
        .set_read_timeout(Some(POLL))
        .context("setting the receive timeout on the GUE socket")?;
    if let Err(e) = socket.set_recv_buffer_size(4 << 20) {
        tracing::warn!("could not enlarge the receive buffer: {e}");
    }
    Ok(socket)
}

/// A raw socket of `domain` for IP protocol `proto`, with a receive timeout
/// (so the loop sees the stop flag) and a large buffer (bursts queue rather
/// than drop).
fn raw_socket(domain: Domain, proto: u8, what: &str) -> Result<Socket> {
    let socket = Socket::new(domain, Type::RAW, Some(Protocol::from(i32::from(proto))))
        .with_context(|| format!("opening a raw {what}; this needs root or CAP_NET_RAW"))?;
    socket
        .set_read_timeout(Some(POLL))
        .context("setting the receive timeout on the raw socket")?;
    if let Err(e) = socket.set_recv_buffer_size(4 << 20) {
        tracing::warn!("could not enlarge the receive buffer: {e}");
    }
    Ok(socket)
}

/// Receives until `stop` is set, injecting what `decap` accepts; one buffer
/// for the whole run, no allocation per packet.
fn receive_loop(socket: &Socket, tun: &mut Tun, stop: &AtomicBool, decap: &Decap<'_>) -> Counters {
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
        match decap(&buf[..n]) {
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
fn configure(dev: &str, vips: &[IpAddr]) -> Result<()> {
    for vip in vips {
        match vip {
            IpAddr::V4(v) => ip(&["addr", "add", &format!("{v}/32"), "dev", dev])?,
            // No duplicate address detection: the VIP is meant to be on
            // every real server (and the director).
            IpAddr::V6(v) => ip(&["addr", "add", &format!("{v}/128"), "dev", dev, "nodad"])?,
        }
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
