//! A small-packet UDP sender that runs inside a lab namespace.
//!
//! The sender is a thread of this process that enters the client's network
//! namespace with `setns(2)` (a network namespace is per thread, so the rest
//! of the process stays where it was) and blasts 64-byte frames with
//! `sendmmsg(2)` over connected sockets, one socket per flow (source port).
//! No helper binary is needed and the sender's cost is the same for every
//! setup it is compared across.

use std::fs::File;
use std::io;
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// UDP payload of a 64-byte Ethernet frame: 64 − 4 FCS − 14 Ethernet −
/// 20 IPv4 − 8 UDP.
pub(super) const PAYLOAD: usize = 18;
/// Messages per `sendmmsg` call; flows rotate between calls.
const BATCH: usize = 32;
/// Where `ip netns add` pins namespaces (iproute2's NETNS_RUN_DIR).
const NETNS_DIR: &str = "/var/run/netns";

/// What one blast sent.
#[derive(Debug, Clone, Copy)]
pub(super) struct Blast {
    /// Datagrams the kernel accepted from the sender.
    pub(super) sent: u64,
    /// How long the sender ran.
    pub(super) elapsed: Duration,
}

/// Sends `PAYLOAD`-byte datagrams to `dst` from `flows` sockets inside the
/// namespace `netns` until `duration` passes or `max_packets` are sent.
pub(super) fn blast(
    netns: &str,
    dst: SocketAddrV4,
    flows: usize,
    duration: Duration,
    max_packets: u64,
) -> Result<Blast> {
    let path = Path::new(NETNS_DIR).join(netns);
    let ns = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let flows = flows.max(1);
    let sender = std::thread::Builder::new()
        .name("udp-blast".into())
        .spawn(move || -> Result<Blast> {
            enter_netns(&ns)
                .with_context(|| format!("entering network namespace {}", path.display()))?;
            let socks = (0..flows)
                .map(|_| {
                    let s = UdpSocket::bind("0.0.0.0:0")?;
                    s.connect(dst)?;
                    Ok(s)
                })
                .collect::<io::Result<Vec<_>>>()
                .with_context(|| format!("opening {flows} UDP sockets toward {dst}"))?;
            send_loop(&socks, duration, max_packets)
        })
        .context("starting the UDP sender thread")?;
    sender
        .join()
        .map_err(|_| anyhow!("the UDP sender thread panicked"))?
}

/// Moves the calling thread (only) into the network namespace `ns`.
fn enter_netns(ns: &File) -> io::Result<()> {
    // SAFETY: setns(2) with a valid open namespace file descriptor and
    // CLONE_NEWNET changes only the calling thread's network namespace; it
    // touches no memory of ours.
    let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn send_loop(socks: &[UdpSocket], duration: Duration, max_packets: u64) -> Result<Blast> {
    let mut payload = *b"rvs-lab bench 64B\n";
    let mut iov = libc::iovec {
        iov_base: payload.as_mut_ptr().cast(),
        iov_len: payload.len(),
    };
    // SAFETY: mmsghdr is plain old data for which all-zero bytes are valid
    // (null pointers, zero lengths and flags).
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for m in msgs.iter_mut() {
        m.msg_hdr.msg_iov = &mut iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    let start = Instant::now();
    let deadline = start + duration;
    let mut sent = 0u64;
    let mut next = 0usize;
    while sent < max_packets && Instant::now() < deadline {
        let fd = socks[next % socks.len()].as_raw_fd();
        next = next.wrapping_add(1);
        let want = BATCH.min(usize::try_from(max_packets - sent).unwrap_or(BATCH));
        // SAFETY: the first `want` entries of `msgs` each point at the one
        // valid iovec `iov`, which points at `payload`; both outlive the call
        // and the kernel only reads them. `fd` is an open socket borrowed
        // from `socks` for the duration of the call.
        let n = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), want as libc::c_uint, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                // An ICMP port unreachable from a server surfaces on the next
                // send of a connected socket; queues may be briefly full.
                Some(libc::ECONNREFUSED | libc::ENOBUFS | libc::EAGAIN | libc::EINTR) => continue,
                _ => bail!("sendmmsg: {e}"),
            }
        }
        sent += n as u64;
    }
    Ok(Blast {
        sent,
        elapsed: start.elapsed(),
    })
}
