//! The per-interface XDP filter (`bpf/rvs_filter.c`), loaded and attached
//! from Rust: superseded by [`crate::XdpDatapath`] (one program on every
//! interface, shared maps, the fast path) and kept until rvsd uses it.
//!
//! It sends to user space only what the engine must see: packets to a
//! service (VIP, protocol, port), replies from NAT real servers, and malformed
//! packets to a VIP (so user space counts and drops them instead of the kernel
//! answering for the VIP). Everything else — ARP, ping to a VIP, ssh to the
//! director — stays with the kernel.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::os::fd::RawFd;

use aya::maps::{HashMap, MapData, PerCpuArray, XskMap};
use aya::programs::Xdp;
use aya::{Ebpf, EbpfLoader};

use crate::iface::ifindex_by_name;
use crate::maps::{chain, is_not_found, load_err, map_err, remove, take, AddrKey, L4Key};
use crate::program::{attach_modes, XdpAttachMode, XdpModePolicy};
use crate::DatapathError;

/// The object file built by build.rs from `bpf/rvs_filter.c`.
static XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/rvs_filter.o"));

const PROGRAM: &str = "rvs_xdp";
/// Size of the `xsks` map: the highest RX queue index the filter can redirect is one less.
pub(crate) const MAX_QUEUES: u32 = 64;

/// Counters of the per-interface filter summed over CPUs, to see what it decided.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpFilterStats {
    /// Frames handed to an AF_XDP socket.
    pub redirected: u64,
    /// Frames left to the kernel.
    pub passed: u64,
    /// Frames meant for user space with no socket on their queue (dropped).
    pub redirect_failed: u64,
    /// Frames whose IP/L4 headers were truncated or malformed.
    pub parse_errors: u64,
}

/// The RVS XDP program attached to one interface, with its maps.
///
/// Each filter has its own maps (including `xsks`); the control plane mirrors
/// services/VIPs/NAT entries into every filter. Dropping it detaches the
/// program (do it in the network namespace it was attached in).
pub struct XdpFilter {
    services: HashMap<MapData, L4Key, u32>,
    nat_return: HashMap<MapData, L4Key, u32>,
    vips: HashMap<MapData, AddrKey, u32>,
    xsks: XskMap<MapData>,
    stats: PerCpuArray<MapData, u64>,
    ifindex: u32,
    ifname: String,
    mode: XdpAttachMode,
    // Last: owns the program and its link; dropping it detaches.
    _ebpf: Ebpf,
}

impl std::fmt::Debug for XdpFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpFilter")
            .field("ifname", &self.ifname)
            .field("ifindex", &self.ifindex)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl XdpFilter {
    /// Attach to the interface called `ifname` (native mode, else generic).
    pub fn attach(ifname: &str) -> Result<Self, DatapathError> {
        let ifindex = ifindex_by_name(ifname)?;
        Self::attach_with(ifindex, XdpModePolicy::Auto)
    }

    /// Attach to an interface by index (native mode, else generic).
    pub fn attach_ifindex(ifindex: u32) -> Result<Self, DatapathError> {
        Self::attach_with(ifindex, XdpModePolicy::Auto)
    }

    /// Attach with an explicit mode policy.
    pub fn attach_with(ifindex: u32, policy: XdpModePolicy) -> Result<Self, DatapathError> {
        let ifname = crate::iface::name_by_ifindex(ifindex)
            .ok_or(DatapathError::InterfaceIndexNotFound(ifindex))?;
        let mut ebpf = EbpfLoader::new().load(XDP_OBJECT).map_err(load_err)?;

        let prog: &mut Xdp = ebpf
            .program_mut(PROGRAM)
            .ok_or_else(|| DatapathError::BpfLoad("program rvs_xdp missing (build bug)".into()))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| DatapathError::BpfLoad(chain(&e).into()))?;
        prog.load()
            .map_err(|e| DatapathError::BpfLoad(chain(&e).into()))?;

        let tries = attach_modes(policy);
        let mut detail = String::new();
        let mut mode = None;
        for &(flags, m) in tries {
            match prog.attach_to_if_index(ifindex, flags) {
                Ok(_) => {
                    mode = Some(m);
                    break;
                }
                Err(e) => {
                    let text = chain(&e);
                    let hint = if text.contains("Device or resource busy") {
                        " (another XDP program is attached: `ip link set dev IFACE xdp off`)"
                    } else {
                        ""
                    };
                    let _ = write!(
                        detail,
                        "{}{m:?} mode: {text}{hint}",
                        if detail.is_empty() { "" } else { "; " }
                    );
                }
            }
        }
        let Some(mode) = mode else {
            return Err(DatapathError::XdpAttach {
                iface: ifname,
                detail,
            });
        };
        tracing::info!(iface = %ifname, ?mode, "RVS XDP filter attached");

        Ok(Self {
            services: take(&mut ebpf, "services")?,
            nat_return: take(&mut ebpf, "nat_return")?,
            vips: take(&mut ebpf, "vip_addrs")?,
            xsks: take(&mut ebpf, "xsks")?,
            stats: take(&mut ebpf, "stats")?,
            ifindex,
            ifname,
            mode,
            _ebpf: ebpf,
        })
    }

    /// How the program is attached.
    pub fn mode(&self) -> XdpAttachMode {
        self.mode
    }

    /// The interface the filter is attached to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The interface's name at attach time.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// Send packets to (addr, proto, port) to user space.
    pub fn add_service(&mut self, addr: IpAddr, proto: u8, port: u16) -> Result<(), DatapathError> {
        self.services
            .insert(L4Key::new(addr, proto, port), 0, 0)
            .map_err(|e| map_err("services", "insert", e))
    }

    /// Stop sending a service to user space (absent entries are fine).
    pub fn remove_service(
        &mut self,
        addr: IpAddr,
        proto: u8,
        port: u16,
    ) -> Result<(), DatapathError> {
        remove(
            &mut self.services,
            &L4Key::new(addr, proto, port),
            "services",
        )
    }

    /// Mark `addr` as a VIP: malformed packets to it go to user space (to be
    /// counted and dropped) instead of the kernel.
    pub fn add_vip(&mut self, addr: IpAddr) -> Result<(), DatapathError> {
        self.vips
            .insert(AddrKey::new(addr), 0, 0)
            .map_err(|e| map_err("vip_addrs", "insert", e))
    }

    /// Forget a VIP (absent entries are fine).
    pub fn remove_vip(&mut self, addr: IpAddr) -> Result<(), DatapathError> {
        remove(&mut self.vips, &AddrKey::new(addr), "vip_addrs")
    }

    /// Send packets *from* (addr, proto, port) — a NAT real server's replies — to user space.
    pub fn add_nat_return(
        &mut self,
        addr: IpAddr,
        proto: u8,
        port: u16,
    ) -> Result<(), DatapathError> {
        self.nat_return
            .insert(L4Key::new(addr, proto, port), 0, 0)
            .map_err(|e| map_err("nat_return", "insert", e))
    }

    /// Stop matching a NAT real server (absent entries are fine).
    pub fn remove_nat_return(
        &mut self,
        addr: IpAddr,
        proto: u8,
        port: u16,
    ) -> Result<(), DatapathError> {
        remove(
            &mut self.nat_return,
            &L4Key::new(addr, proto, port),
            "nat_return",
        )
    }

    /// Deliver this interface's RX queue `queue_id` to the AF_XDP socket `fd`.
    pub fn register_socket(&mut self, queue_id: u32, fd: RawFd) -> Result<(), DatapathError> {
        if queue_id >= MAX_QUEUES {
            return Err(DatapathError::InvalidArgument(format!(
                "queue {queue_id} on {}: the XDP filter supports queues 0..{MAX_QUEUES}",
                self.ifname
            )));
        }
        self.xsks
            .set(queue_id, fd, 0)
            .map_err(|e| map_err("xsks", "insert", e))
    }

    /// Stop delivering `queue_id` to user space (its service traffic is then dropped).
    pub fn unregister_socket(&mut self, queue_id: u32) -> Result<(), DatapathError> {
        if queue_id >= MAX_QUEUES {
            return Ok(());
        }
        match self.xsks.unset(queue_id) {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(map_err("xsks", "remove", e)),
        }
    }

    /// The program's counters, summed over CPUs.
    pub fn stats(&self) -> Result<XdpFilterStats, DatapathError> {
        let read = |i: u32| -> Result<u64, DatapathError> {
            let v = self
                .stats
                .get(&i, 0)
                .map_err(|e| map_err("stats", "read", e))?;
            Ok(v.iter().copied().fold(0u64, u64::wrapping_add))
        };
        Ok(XdpFilterStats {
            redirected: read(0)?,
            passed: read(1)?,
            redirect_failed: read(2)?,
            parse_errors: read(3)?,
        })
    }
}
