//! The XDP program (`bpf/rvs_xdp.c`) loaded and attached from Rust.
//!
//! It sends to user space only what the engine must see: packets to a
//! service (VIP, protocol, port), replies from NAT real servers, and malformed
//! packets to a VIP (so user space counts and drops them instead of the kernel
//! answering for the VIP). Everything else — ARP, ping to a VIP, ssh to the
//! director — stays with the kernel.

use std::error::Error as StdError;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::os::fd::RawFd;

use aya::maps::{HashMap, MapData, PerCpuArray, XskMap};
use aya::programs::{Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader, Pod};

use crate::iface::ifindex_by_name;
use crate::DatapathError;

/// The object file built by build.rs from `bpf/rvs_filter.c`.
static XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/rvs_filter.o"));

const PROGRAM: &str = "rvs_xdp";
/// Size of the `xsks` map: the highest RX queue index the filter can redirect is one less.
pub(crate) const MAX_QUEUES: u32 = 64;

/// Key of `services` and `nat_return` (layout shared with `struct l4_key` in C).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct L4Key {
    family: u8,
    proto: u8,
    port_be: [u8; 2],
    addr: [u8; 16],
}

// SAFETY: repr(C), only byte fields, no padding: every bit pattern is valid.
unsafe impl Pod for L4Key {}

/// Key of `vip_addrs` (layout shared with `struct addr_key` in C).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct AddrKey {
    family: u8,
    pad: [u8; 3],
    addr: [u8; 16],
}

// SAFETY: repr(C), only byte fields, no padding: every bit pattern is valid.
unsafe impl Pod for AddrKey {}

fn family_addr(addr: IpAddr) -> (u8, [u8; 16]) {
    let mut out = [0u8; 16];
    match addr {
        IpAddr::V4(a) => {
            out[..4].copy_from_slice(&a.octets());
            (4, out)
        }
        IpAddr::V6(a) => (6, a.octets()),
    }
}

impl L4Key {
    fn new(addr: IpAddr, proto: u8, port: u16) -> Self {
        let (family, addr) = family_addr(addr);
        Self {
            family,
            proto,
            port_be: port.to_be_bytes(),
            addr,
        }
    }
}

impl AddrKey {
    fn new(addr: IpAddr) -> Self {
        let (family, addr) = family_addr(addr);
        Self {
            family,
            pad: [0; 3],
            addr,
        }
    }
}

/// How the program ended up attached; generic mode works everywhere but is slower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpAttachMode {
    /// In the driver (XDP_FLAGS_DRV_MODE): the fast path.
    Native,
    /// In the generic network stack (XDP_FLAGS_SKB_MODE): works on any device.
    Generic,
}

/// Which attach modes to try, so operators can force one when a driver misbehaves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XdpModePolicy {
    /// Native first, generic if the driver refuses.
    #[default]
    Auto,
    /// Native only.
    Native,
    /// Generic only.
    Generic,
}

/// Counters of the XDP program summed over CPUs, to see what the filter decided.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpStats {
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

fn chain(e: &dyn StdError) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let _ = write!(s, ": {c}");
        cur = c.source();
    }
    s
}

fn map_err(map: &'static str, op: &'static str, e: aya::maps::MapError) -> DatapathError {
    DatapathError::Map {
        map,
        op,
        detail: chain(&e),
    }
}

fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, DatapathError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or_else(|| {
        DatapathError::BpfLoad(format!("map `{name}` missing from the object (build bug)").into())
    })?;
    T::try_from(map).map_err(|e| map_err(name, "open", e))
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
        let mut ebpf = EbpfLoader::new().load(XDP_OBJECT).map_err(|e| {
            if let aya::EbpfError::MapError(aya::maps::MapError::CreateError { io_error, .. }) = &e
            {
                if matches!(io_error.raw_os_error(), Some(libc::EPERM)) {
                    return DatapathError::PermissionDenied {
                        what: "loading BPF maps",
                        source: std::io::Error::from_raw_os_error(libc::EPERM),
                    };
                }
            }
            DatapathError::BpfLoad(chain(&e).into())
        })?;

        let prog: &mut Xdp = ebpf
            .program_mut(PROGRAM)
            .ok_or_else(|| DatapathError::BpfLoad("program rvs_xdp missing (build bug)".into()))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| DatapathError::BpfLoad(chain(&e).into()))?;
        prog.load()
            .map_err(|e| DatapathError::BpfLoad(chain(&e).into()))?;

        let tries: &[(XdpMode, XdpAttachMode)] = match policy {
            XdpModePolicy::Auto => &[
                (XdpMode::Driver, XdpAttachMode::Native),
                (XdpMode::Skb, XdpAttachMode::Generic),
            ],
            XdpModePolicy::Native => &[(XdpMode::Driver, XdpAttachMode::Native)],
            XdpModePolicy::Generic => &[(XdpMode::Skb, XdpAttachMode::Generic)],
        };
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
    pub fn stats(&self) -> Result<XdpStats, DatapathError> {
        let read = |i: u32| -> Result<u64, DatapathError> {
            let v = self
                .stats
                .get(&i, 0)
                .map_err(|e| map_err("stats", "read", e))?;
            Ok(v.iter().copied().fold(0u64, u64::wrapping_add))
        };
        Ok(XdpStats {
            redirected: read(0)?,
            passed: read(1)?,
            redirect_failed: read(2)?,
            parse_errors: read(3)?,
        })
    }
}

fn is_not_found(e: &aya::maps::MapError) -> bool {
    match e {
        aya::maps::MapError::KeyNotFound => true,
        aya::maps::MapError::SyscallError(s) => s.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}

fn remove<K: Pod>(
    map: &mut HashMap<MapData, K, u32>,
    key: &K,
    name: &'static str,
) -> Result<(), DatapathError> {
    match map.remove(key) {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(map_err(name, "remove", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_the_c_layout() {
        assert_eq!(std::mem::size_of::<L4Key>(), 20);
        assert_eq!(std::mem::size_of::<AddrKey>(), 20);
        let k = L4Key::new("10.1.2.3".parse().unwrap(), 17, 0x1234);
        assert_eq!(k.family, 4);
        assert_eq!(k.port_be, [0x12, 0x34]);
        assert_eq!(&k.addr[..4], &[10, 1, 2, 3]);
        assert!(k.addr[4..].iter().all(|&b| b == 0));
        let v = AddrKey::new("2001:db8::1".parse().unwrap());
        assert_eq!(v.family, 6);
        assert_eq!(v.addr[0..2], [0x20, 0x01]);
        assert_eq!(v.addr[15], 1);
    }
}
