//! The UDP generator and sink of the bench: two tiny XDP programs
//! (`bpf/bench_xdp.c`) loaded with aya in the router's namespace.
//!
//! - The **generator** runs with `BPF_PROG_TEST_RUN` in live-frames mode
//!   (`BPF_F_TEST_XDP_LIVE_FRAMES`, through aya's [`TestRun`]) with the
//!   router's `rt-dir` as ingress device: each frame it writes is `XDP_TX`ed
//!   out of `rt-dir`, into the director's `front` RX ring, as if a NIC had
//!   received it. Nothing on the router forwards it, so the router is not in
//!   the measured path, and one CPU sends several million frames per second
//!   — more than any director here takes.
//! - The **sink** is attached to `p-dir`, the router's end of the
//!   director's `back` leg: it counts and drops what the director delivers
//!   to the bench's UDP service and passes everything else. Every setup
//!   (kernel routing, nftables, RVS in DR/NAT/TUN) leaves the director
//!   through `back`, so delivered packets are counted the same way for all.
//!
//! A network namespace is per thread: the programs are loaded, attached and
//! run on short-lived threads that enter the router's namespace (interface
//! names and indexes resolve there); the attachment is a BPF link, detached
//! when [`Rig`] is dropped, from any thread.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use aya::maps::{Array, MapData, PerCpuArray};
use aya::programs::{ProgramError, TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};

use crate::{Lab, CLIENT_IP, VIP};

/// The object built by build.rs from `bpf/bench_xdp.c`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench_xdp.o"));

/// Frame length without the FCS: 64 bytes on the wire.
pub(super) const FRAME_LEN: usize = 60;
/// UDP payload of that frame: 60 − 14 Ethernet − 20 IPv4 − 8 UDP.
pub(super) const PAYLOAD: usize = FRAME_LEN - 42;
/// `sizeof(struct gen_config)` in the C program: interval (u64), flows
/// (u32), base port (u16), padding (u16), frame (64 bytes).
const CONFIG_LEN: usize = 80;
/// Offset of the frame in `struct gen_config`.
const CONFIG_FRAME: usize = 16;
/// Frames per live-frames batch (the kernel's default, NAPI's budget).
const LIVE_BATCH: u32 = 64;
/// Generator threads, all on the generator's CPU. Each `BPF_PROG_TEST_RUN`
/// call in live-frames mode ends by tearing down its page pool, which waits
/// for an RCU grace period (tens of ms here): with one thread the director
/// would idle through every such gap, with two one runs while the other
/// waits.
const THREADS: usize = 2;
/// Target CPU time of one `BPF_PROG_TEST_RUN` call: long enough that the
/// per-call teardown is rare, short enough to stop close to the deadline.
const CALL_TARGET: Duration = Duration::from_millis(50);
/// Frames of the first call, before the per-frame cost is known.
const FIRST_CHUNK: u32 = 1 << 14;
/// The router's end of the director's front leg (generator ingress).
const GEN_DEV: &str = "rt-dir";
/// The router's end of the director's back leg (sink).
const SINK_DEV: &str = "p-dir";

/// What one blast did.
#[derive(Debug, Clone, Copy)]
pub(super) struct Blast {
    /// Frames the generator handed to `rt-dir` for transmission.
    pub(super) sent: u64,
    /// How long it ran.
    pub(super) elapsed: Duration,
    /// CPU time the generator threads used (their share of
    /// [`Blast::elapsed`] on their CPU; the rest went to the sink, to idle
    /// gaps and to whatever else runs there).
    pub(super) cpu: Duration,
}

/// The generator and the sink, loaded and attached in one lab.
pub(super) struct Rig {
    // Owns the programs, the maps and the sink's link (detached on drop).
    ebpf: Ebpf,
    router_ns: String,
    /// `ingress_ifindex` of the generator's frames.
    gen_ifindex: u32,
    /// The frame template (Ethernet to `front`, IPv4 client → VIP, UDP).
    frame: [u8; FRAME_LEN],
}

impl std::fmt::Debug for Rig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rig")
            .field("router_ns", &self.router_ns)
            .field("gen_ifindex", &self.gen_ifindex)
            .finish_non_exhaustive()
    }
}

impl Rig {
    /// Loads both programs in `lab`'s router namespace, attaches the sink to
    /// `p-dir` and prepares 64-byte frames from the client to `VIP:port`
    /// addressed to the director's `front`.
    pub(super) fn attach(lab: &Lab, port: u16) -> Result<Rig> {
        let router_ns = lab.ns("router");
        let mac = |role: &str, dev: &str| -> Result<[u8; 6]> {
            let s = lab.exec(role, &["cat", &format!("/sys/class/net/{dev}/address")])?;
            parse_mac(s.trim()).with_context(|| format!("MAC of {dev} in {}", lab.ns(role)))
        };
        let dst = mac("dir", "front")?;
        let src = mac("router", GEN_DEV)?;
        let gen_ifindex: u32 = lab
            .exec(
                "router",
                &["cat", &format!("/sys/class/net/{GEN_DEV}/ifindex")],
            )?
            .trim()
            .parse()
            .context("ifindex of rt-dir")?;
        let frame = udp_frame(dst, src, CLIENT_IP, VIP, 1024, port);
        let ns = router_ns.clone();
        let ebpf = std::thread::scope(|s| {
            s.spawn(move || -> Result<Ebpf> {
                rvs_netns::enter(&ns)?;
                let mut ebpf = EbpfLoader::new()
                    .load(OBJECT)
                    .context("loading the bench's XDP object")?;
                for name in ["rvs_lab_gen", "rvs_lab_sink"] {
                    program(&mut ebpf, name)?
                        .load()
                        .with_context(|| format!("loading {name}"))?;
                }
                program(&mut ebpf, "rvs_lab_sink")?
                    .attach(SINK_DEV, XdpMode::Driver)
                    .with_context(|| format!("attaching the sink to {SINK_DEV} in {ns}"))?;
                Ok(ebpf)
            })
            .join()
            .map_err(|_| anyhow!("the XDP loader thread panicked"))?
        })?;
        let mut rig = Rig {
            ebpf,
            router_ns,
            gen_ifindex,
            frame,
        };
        rig.configure(1, None)?;
        Ok(rig)
    }

    /// Makes the generator cycle its UDP source port over `flows` values
    /// (1024, 1025, …): that many distinct flows to one service; with
    /// `interval` at most one frame per interval (`None`: as fast as it can).
    pub(super) fn configure(&mut self, flows: u32, interval: Option<Duration>) -> Result<()> {
        let interval_ns = interval.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let mut cfg = [0u8; CONFIG_LEN];
        cfg[0..8].copy_from_slice(&interval_ns.to_ne_bytes());
        cfg[8..12].copy_from_slice(&flows.max(1).to_ne_bytes());
        cfg[12..14].copy_from_slice(&1024u16.to_ne_bytes());
        cfg[CONFIG_FRAME..CONFIG_FRAME + FRAME_LEN].copy_from_slice(&self.frame);
        let map = self
            .ebpf
            .map_mut("gen_config")
            .ok_or_else(|| anyhow!("map gen_config missing (build bug)"))?;
        let mut arr: Array<&mut MapData, [u8; CONFIG_LEN]> =
            Array::try_from(map).context("opening gen_config")?;
        arr.set(0, cfg, 0).context("writing gen_config")?;
        Ok(())
    }

    /// Frames the generator has sent so far (field `sent` of its per-CPU
    /// state, summed).
    pub(super) fn sent(&self) -> Result<u64> {
        let map = self
            .ebpf
            .map("gen_state")
            .ok_or_else(|| anyhow!("map gen_state missing (build bug)"))?;
        let arr: PerCpuArray<&MapData, [u64; 2]> =
            PerCpuArray::try_from(map).context("opening gen_state")?;
        let v = arr.get(&0, 0).context("reading gen_state")?;
        Ok(v.iter().map(|s| s[0]).sum())
    }

    /// Frames the sink has counted (and dropped) so far.
    pub(super) fn delivered(&self) -> Result<u64> {
        let map = self
            .ebpf
            .map("sink_count")
            .ok_or_else(|| anyhow!("map sink_count missing (build bug)"))?;
        let arr: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(map).context("opening sink_count")?;
        let v = arr.get(&0, 0).context("reading sink_count")?;
        Ok(v.iter().sum())
    }

    /// Sends frames from [`THREADS`] threads on CPU `cpu` until `duration`
    /// passes or about `max_packets` are sent (checked after every call, so
    /// it may overshoot by one call's worth), as [`Rig::configure`] said.
    pub(super) fn blast(&self, cpu: usize, duration: Duration, max_packets: u64) -> Result<Blast> {
        let prog: &Xdp = self
            .ebpf
            .program("rvs_lab_gen")
            .ok_or_else(|| anyhow!("program rvs_lab_gen missing (build bug)"))?
            .try_into()
            .map_err(|e: ProgramError| anyhow!("rvs_lab_gen: {e}"))?;
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex,
        // rx_queue_index, egress_ifindex.
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(FRAME_LEN as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&self.gen_ifindex.to_ne_bytes());
        let before = self.sent()?;
        let stop_at = before.saturating_add(max_packets);
        let start = Instant::now();
        let deadline = start + duration;
        let ns = self.router_ns.as_str();
        let frame = &self.frame;
        let ctx = &ctx;
        let cpus = std::thread::scope(|s| -> Result<Vec<Duration>> {
            let threads: Vec<_> = (0..THREADS)
                .map(|_| {
                    s.spawn(move || -> Result<Duration> {
                        rvs_netns::enter(ns)?;
                        pin_current_thread(cpu)?;
                        let cpu0 = thread_cpu();
                        let mut chunk = FIRST_CHUNK;
                        loop {
                            let now = Instant::now();
                            if now >= deadline || self.sent()? >= stop_at {
                                break;
                            }
                            let opts = TestRunOptions {
                                data_in: Some(frame),
                                ctx_in: Some(ctx),
                                repeat: chunk,
                                attrs: TestRunAttrs::new().xdp_live_frames(LIVE_BATCH),
                                ..TestRunOptions::new()
                            };
                            match prog.test_run(opts) {
                                Ok(r) => {
                                    // Size the next call by this one's cost
                                    // per frame and the time that is left.
                                    let per_frame = r.duration.max(Duration::from_nanos(1));
                                    let left = deadline.saturating_duration_since(Instant::now());
                                    let want =
                                        CALL_TARGET.min(left).as_nanos() / per_frame.as_nanos();
                                    chunk = u32::try_from(want)
                                        .unwrap_or(u32::MAX)
                                        .clamp(LIVE_BATCH, 1 << 24);
                                }
                                Err(ProgramError::SyscallError(e))
                                    if e.io_error.raw_os_error() == Some(libc::EINTR) => {}
                                Err(e) => {
                                    return Err(anyhow!(
                                        "BPF_PROG_TEST_RUN (live frames) of the generator on \
                                         {GEN_DEV}: {e}"
                                    ))
                                }
                            }
                        }
                        Ok(thread_cpu().saturating_sub(cpu0))
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| {
                    t.join()
                        .map_err(|_| anyhow!("a generator thread panicked"))?
                })
                .collect()
        })?;
        let elapsed = start.elapsed();
        Ok(Blast {
            sent: self.sent()?.saturating_sub(before),
            elapsed,
            cpu: cpus.iter().sum(),
        })
    }
}

/// CPU time of the calling thread so far.
fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp> {
    ebpf.program_mut(name)
        .ok_or_else(|| anyhow!("program {name} missing (build bug)"))?
        .try_into()
        .map_err(|e: ProgramError| anyhow!("{name}: {e}"))
}

/// Pins the calling thread (only) to CPU `cpu`.
pub(super) fn pin_current_thread(cpu: usize) -> Result<()> {
    // SAFETY: cpu_set_t is a plain bit array for which all-zero bytes are the
    // empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
        bail!("CPU {cpu} is beyond cpu_set_t");
    }
    // SAFETY: `cpu` is within the set's bits (checked above); CPU_SET only
    // writes into `set`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; `set` is a valid cpu_set_t of the
    // size passed, read by the kernel only.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("pinning the generator thread to CPU {cpu}"));
    }
    Ok(())
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in out.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// A 60-byte Ethernet/IPv4/UDP frame with a valid IPv4 header checksum and
/// UDP checksum 0 (none, so nobody on the path sums the payload).
fn udp_frame(
    dst: [u8; 6],
    src: [u8; 6],
    from: Ipv4Addr,
    to: Ipv4Addr,
    sport: u16,
    dport: u16,
) -> [u8; FRAME_LEN] {
    let mut f = [0u8; FRAME_LEN];
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((FRAME_LEN - 14) as u16).to_be_bytes());
    ip[8] = 64; // TTL
    ip[9] = 17; // UDP
    ip[12..16].copy_from_slice(&from.octets());
    ip[16..20].copy_from_slice(&to.octets());
    let mut sum: u32 = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&sport.to_be_bytes());
    udp[2..4].copy_from_slice(&dport.to_be_bytes());
    udp[4..6].copy_from_slice(&((FRAME_LEN - 34) as u16).to_be_bytes());
    f[42..].copy_from_slice(b"rvs-lab bench 64B\n");
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_is_64_bytes_on_the_wire_with_a_valid_ip_checksum() {
        let f = udp_frame(
            [2, 0, 0, 0, 0, 1],
            [2, 0, 0, 0, 0, 2],
            CLIENT_IP,
            VIP,
            1024,
            9,
        );
        assert_eq!(f.len() + 4, 64);
        assert_eq!(PAYLOAD, 18);
        let mut sum: u32 = f[14..34]
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        assert_eq!(sum, 0xffff, "IPv4 header checksum verifies");
        assert_eq!(&f[26..30], &CLIENT_IP.octets());
        assert_eq!(&f[30..34], &VIP.octets());
        assert_eq!(u16::from_be_bytes([f[36], f[37]]), 9);
        assert_eq!(&f[40..42], &[0, 0], "no UDP checksum");
    }

    #[test]
    fn macs_parse() {
        assert_eq!(
            parse_mac("02:ab:00:10:ff:09"),
            Some([2, 0xab, 0, 0x10, 0xff, 9])
        );
        assert_eq!(parse_mac("02:ab:00:10:ff"), None);
        assert_eq!(parse_mac("02:ab:00:10:ff:09:00"), None);
    }
}
