//! [`XdpDatapath`]: the RVS XDP program (`bpf/rvs_xdp.c`) loaded once,
//! attached to every interface of the director, with one set of maps that
//! every interface, queue and CPU shares (docs/fastpath.md is the contract).
//!
//! The program forwards established flows itself from the `conns` map,
//! which the engine fills through [`XdpDatapath::apply`]; it hands to the
//! AF_XDP sockets ([`XdpDatapath::register_socket`]) first packets to a
//! service, frames of connections the engine must see and malformed frames
//! to a VIP; everything else — including replies from a real server that
//! belong to no tracked connection, such as the director's own health
//! checks — goes to the kernel.
//!
//! Call order: [`load`](XdpDatapath::load) on every interface; services and
//! VIPs; an [`XskGroup`](crate::XskGroup) over every (interface, queue) and
//! `register_socket` for each socket; then per batch of frames the engine
//! processed, [`apply`](XdpDatapath::apply) its fast-path ops before the
//! batch is transmitted. Counters: [`dest_counters`](XdpDatapath::dest_counters)
//! and [`iface_stats`](XdpDatapath::iface_stats).

use std::fmt::Write as _;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, RawFd};

use aya::maps::{Array, DevMap, HashMap, IterableMap, MapData, PerCpuArray, PerCpuValues, XskMap};
use aya::programs::links::FdLink;
use aya::programs::xdp::{XdpLink, XdpLinkId};
use aya::programs::{Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use rvs_engine::limits::{
    FRAGMENT_STEERING, MAX_DEST_SLOTS, MAX_INTERFACES, MAX_NEXT_HOPS, MAX_QUEUES_PER_INTERFACE,
    MAX_SERVICES, MAX_VIPS, SMALL_IFINDEX,
};
use rvs_engine::{DestCounters, DestSlot, FastKey, FastPathOp};

use crate::conn_table::{slot_count, ConnMaps, SlotTable};
use crate::fastpath::{check_dest, ConnEntry, ConnKey, DestValue, IfCounters, NextHopValue};
use crate::handover::{Inherited, PinDir};
use crate::iface::name_by_ifindex;
use crate::maps::{chain, is_not_found, load_err, map_err, remove, take, AddrKey, L4Key};
use crate::test_run::{self, TestRun, TestRunner};
use crate::DatapathError;

/// The object file built by build.rs from `bpf/rvs_xdp.c`.
static XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/rvs_xdp.o"));

const PROGRAM: &str = "rvs_xdp";
/// The same program under a second name (see `reattach`).
const TWIN: &str = "rvs_xdp_twin";

/// The program's `crc32c_zeros` (see [`crate::crc32c_shift`]).
static CRC32C_ZEROS: [u32; 16] = crate::crc32c_shift::zeros_operators();

/// Smallest `conns` map, whatever the connection capacity.
const MIN_CONN_ENTRIES: u32 = 1024;

/// How large the connection maps are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnCapacity {
    /// The engine's connection table size (`max_connections`): the hash
    /// maps `conns4` (IPv4 overflow) and `conns6` take two entries per
    /// connection, at least 1024.
    pub connections: u32,
    /// Slots of the IPv4 table `conn_slots4` (`fast_path_slots`, 64 bytes
    /// each), rounded up to a power of two; default two per connection.
    pub fast_path_slots: Option<u32>,
}

impl From<u32> for ConnCapacity {
    /// `connections`, with the default slot count.
    fn from(connections: u32) -> Self {
        Self {
            connections,
            fast_path_slots: None,
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

/// The attach flags to try in order under `policy`.
pub(crate) fn attach_modes(policy: XdpModePolicy) -> &'static [(XdpMode, XdpAttachMode)] {
    match policy {
        XdpModePolicy::Auto => &[
            (XdpMode::Driver, XdpAttachMode::Native),
            (XdpMode::Skb, XdpAttachMode::Generic),
        ],
        XdpModePolicy::Native => &[(XdpMode::Driver, XdpAttachMode::Native)],
        XdpModePolicy::Generic => &[(XdpMode::Skb, XdpAttachMode::Generic)],
    }
}

/// Attach `prog` to one interface, trying the modes of `policy` in order.
fn attach(
    prog: &mut Xdp,
    ifindex: u32,
    ifname: &str,
    policy: XdpModePolicy,
) -> Result<(XdpLinkId, XdpAttachMode), DatapathError> {
    let mut detail = String::new();
    for &(flags, mode) in attach_modes(policy) {
        match prog.attach_to_if_index(ifindex, flags) {
            Ok(id) => return Ok((id, mode)),
            Err(e) => {
                let text = chain(&e);
                let hint = if text.contains("Device or resource busy") {
                    " (another XDP program is attached: `ip link set dev IFACE xdp off`)"
                } else {
                    ""
                };
                let _ = write!(
                    detail,
                    "{}{mode:?} mode: {text}{hint}",
                    if detail.is_empty() { "" } else { "; " }
                );
            }
        }
    }
    Err(DatapathError::XdpAttach {
        iface: ifname.to_string(),
        detail,
    })
}

/// Per-interface verdict counters of the program, summed over CPUs.
///
/// `passed + to_user + to_user_failed + fast_tx + fast_redirect` is every
/// frame the program saw on the interface; `parse_errors` counts frames
/// with unparseable IP/L4 headers among them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpStats {
    /// Frames left to the kernel.
    pub passed: u64,
    /// Frames handed to an AF_XDP socket (first packets, connections the
    /// engine must see, malformed frames to a VIP).
    pub to_user: u64,
    /// Frames meant for user space with no socket on their queue (dropped,
    /// so the kernel never answers for a VIP).
    pub to_user_failed: u64,
    /// Frames forwarded out of the interface they came in on (XDP_TX).
    pub fast_tx: u64,
    /// Frames forwarded out of another interface (redirect through `tx_ports`).
    pub fast_redirect: u64,
    /// Frames whose IP/L4 headers were truncated or malformed.
    pub parse_errors: u64,
}

impl XdpStats {
    /// Every frame the program saw: the sum of the five verdicts.
    pub fn frames(&self) -> u64 {
        self.passed
            .wrapping_add(self.to_user)
            .wrapping_add(self.to_user_failed)
            .wrapping_add(self.fast_tx)
            .wrapping_add(self.fast_redirect)
    }
}

/// One interface the program is attached to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachedInterface {
    /// Its index.
    pub ifindex: u32,
    /// Its name at attach time.
    pub name: String,
    /// Native or generic.
    pub mode: XdpAttachMode,
}

/// The current CLOCK_MONOTONIC_COARSE time in nanoseconds: the clock the
/// XDP program stamps entries with (`bpf_ktime_get_coarse_ns()`), so
/// comparable with [`XdpDatapath::last_seen`]; it advances once per kernel
/// tick (a few ms), ample for timeouts counted in seconds.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`, which outlives the call.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    debug_assert_eq!(r, 0, "CLOCK_MONOTONIC_COARSE always exists");
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// The RVS XDP program attached to every interface, with its shared maps.
///
/// Dropping it detaches the program from every interface (do it in the
/// network namespace it was loaded in).
pub struct XdpDatapath {
    conns: ConnMaps,
    next_hops: Array<MapData, NextHopValue>,
    dest_stats: PerCpuArray<MapData, DestValue>,
    services: HashMap<MapData, L4Key, u32>,
    vips: HashMap<MapData, AddrKey, u32>,
    xsks: XskMap<MapData>,
    if_stats: PerCpuArray<MapData, IfCounters>,
    /// The interfaces to attach to (index, name), in slot order.
    targets: Vec<(u32, String)>,
    interfaces: Vec<AttachedInterface>,
    conn_entries: u32,
    /// With a pin directory: the pinned links, which keep the program
    /// attached until their pins go.
    pins: Option<Pins>,
    /// Without a pin directory: (ifindex, link) of each attachment, which
    /// the program running there owns.
    unpinned: Vec<(u32, XdpLinkId)>,
    /// Interfaces whose link runs [`TWIN`] now (see `reattach`).
    on_twin: Vec<u32>,
    // Last: owns the program and its unpinned links; dropping it detaches.
    ebpf: Ebpf,
}

/// What this datapath pinned (see crate::handover).
struct Pins {
    dir: PinDir,
    /// (ifindex, pin path, link).
    links: Vec<(u32, std::path::PathBuf, FdLink)>,
    /// Leave everything pinned on drop, for a successor to take over.
    keep: bool,
}

impl Drop for XdpDatapath {
    /// Unless kept for a successor, removes every pin, so that dropping
    /// the links then detaches the program.
    fn drop(&mut self) {
        let Some(pins) = &self.pins else { return };
        if pins.keep {
            tracing::info!(dir = %pins.dir.path().display(), "XDP program left attached, its state pinned for the next rvsd");
            return;
        }
        for (_, path, _) in &pins.links {
            remove_pin(path);
        }
        for name in CONN_MAPS {
            remove_pin(&pins.dir.map_path(name));
        }
        // Empty now, unless someone put something else there.
        let _ = std::fs::remove_dir(pins.dir.path());
    }
}

/// The maps a successor reads connections from.
const CONN_MAPS: [&str; 3] = ["conn_slots4", "conns4", "conns6"];

fn remove_pin(path: &std::path::Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(pin = %path.display(), error = %e, "could not remove a BPF pin"),
    }
}

impl std::fmt::Debug for XdpDatapath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpDatapath")
            .field("interfaces", &self.interfaces)
            .field("conn_entries", &self.conn_entries)
            .finish_non_exhaustive()
    }
}

impl XdpDatapath {
    /// Load the program once and attach it to every interface in
    /// `ifindexes` (native, else generic, as `policy` allows; see
    /// [`interfaces`](Self::interfaces) for the outcome). Interface slot `i`
    /// (for the AF_XDP socket map and the counters) is `ifindexes[i]`; every
    /// interface can be a redirect target of the fast path.
    ///
    /// `conn_capacity` is the engine's connection table size: the `conns`
    /// map holds twice as many entries (a NAT connection has two), at least
    /// 1024. An empty `ifindexes` loads the program without attaching it
    /// (for [`test_run`](Self::test_run)).
    pub fn load(
        ifindexes: &[u32],
        policy: XdpModePolicy,
        conn_capacity: impl Into<ConnCapacity>,
    ) -> Result<Self, DatapathError> {
        let mut dp = Self::load_detached(ifindexes, conn_capacity)?;
        dp.attach(policy, None)?;
        Ok(dp)
    }

    /// [`load`](Self::load) without attaching: fill the maps first (services,
    /// VIPs, adopted connections), then [`attach`](Self::attach).
    pub fn load_detached(
        ifindexes: &[u32],
        conn_capacity: impl Into<ConnCapacity>,
    ) -> Result<Self, DatapathError> {
        let capacity = conn_capacity.into();
        if ifindexes.len() > MAX_INTERFACES as usize {
            return Err(DatapathError::InvalidArgument(format!(
                "{} interfaces: the XDP program serves at most {MAX_INTERFACES}",
                ifindexes.len()
            )));
        }
        let mut names = Vec::with_capacity(ifindexes.len());
        for (i, &ifindex) in ifindexes.iter().enumerate() {
            if ifindexes[..i].contains(&ifindex) {
                return Err(DatapathError::InvalidArgument(format!(
                    "{} is listed twice",
                    crate::iface::describe(ifindex)
                )));
            }
            names.push(
                name_by_ifindex(ifindex).ok_or(DatapathError::InterfaceIndexNotFound(ifindex))?,
            );
        }
        let conn_entries = capacity.connections.saturating_mul(2).max(MIN_CONN_ENTRIES);
        let slots = slot_count(capacity.fast_path_slots, capacity.connections);
        let seed = random_seed()?;

        // The engine's sizes (rvs_engine::limits), whatever the object
        // carries: the configurations the engine accepts fit exactly.
        let mut ebpf = EbpfLoader::new()
            .map_max_entries("conn_slots4", slots)
            .override_global("conn_hash_seed", &seed, true)
            .override_global("crc32c_zeros", &CRC32C_ZEROS, true)
            .map_max_entries("conns4", conn_entries)
            .map_max_entries("conns6", conn_entries)
            .map_max_entries("next_hops", MAX_NEXT_HOPS)
            .map_max_entries("dest_stats", MAX_DEST_SLOTS)
            .map_max_entries("services", MAX_SERVICES)
            .map_max_entries("vip_addrs", MAX_VIPS)
            .map_max_entries("ifaces", MAX_INTERFACES)
            .map_max_entries("ifslots", SMALL_IFINDEX)
            .map_max_entries("frags4", FRAGMENT_STEERING)
            .map_max_entries("frags6", FRAGMENT_STEERING)
            .map_max_entries("tx_ports", MAX_INTERFACES)
            .map_max_entries("xsks", MAX_INTERFACES * MAX_QUEUES_PER_INTERFACE)
            .map_max_entries("if_stats", MAX_INTERFACES + 1)
            .load(XDP_OBJECT)
            .map_err(load_err)?;
        for name in [PROGRAM, TWIN] {
            xdp_mut(&mut ebpf, name)?
                .load()
                .map_err(|e| DatapathError::BpfLoad(chain(&e).into()))?;
        }

        // Interfaces are known to the maps before the program sees a frame.
        {
            let mut ifaces: HashMap<&mut MapData, u32, u32> =
                HashMap::try_from(map_mut(&mut ebpf, "ifaces")?)
                    .map_err(|e| map_err("ifaces", "open", e))?;
            for (slot, &ifindex) in ifindexes.iter().enumerate() {
                ifaces
                    .insert(ifindex, slot as u32, 0)
                    .map_err(|e| map_err("ifaces", "insert", e))?;
            }
            // Small ifindexes (all of them, usually) also by array: slot + 1.
            let mut ifslots: Array<&mut MapData, u32> =
                Array::try_from(map_mut(&mut ebpf, "ifslots")?)
                    .map_err(|e| map_err("ifslots", "open", e))?;
            for (slot, &ifindex) in ifindexes.iter().enumerate() {
                if ifindex < SMALL_IFINDEX {
                    ifslots
                        .set(ifindex, slot as u32 + 1, 0)
                        .map_err(|e| map_err("ifslots", "update", e))?;
                }
            }
        }
        {
            let mut tx_ports: DevMap<&mut MapData> =
                DevMap::try_from(map_mut(&mut ebpf, "tx_ports")?)
                    .map_err(|e| map_err("tx_ports", "open", e))?;
            for (slot, &ifindex) in ifindexes.iter().enumerate() {
                tx_ports
                    .set(slot as u32, ifindex, None, 0)
                    .map_err(|e| DatapathError::Map {
                        map: "tx_ports",
                        op: "insert",
                        detail: chain(&e),
                    })?;
            }
        }

        let slot_map = match ebpf.take_map("conn_slots4") {
            Some(aya::maps::Map::Array(m)) => m,
            _ => {
                return Err(DatapathError::BpfLoad(
                    "map `conn_slots4` missing from the object or not an array (build bug)".into(),
                ))
            }
        };
        let table = SlotTable::map(slot_map.fd().as_fd(), slots, seed)?;
        Ok(Self {
            conns: ConnMaps::new(
                table,
                slot_map,
                take(&mut ebpf, "conn_geometry")?,
                take(&mut ebpf, "conns4")?,
                take(&mut ebpf, "conns6")?,
            )?,
            next_hops: take(&mut ebpf, "next_hops")?,
            dest_stats: take(&mut ebpf, "dest_stats")?,
            services: take(&mut ebpf, "services")?,
            vips: take(&mut ebpf, "vip_addrs")?,
            xsks: take(&mut ebpf, "xsks")?,
            if_stats: take(&mut ebpf, "if_stats")?,
            targets: ifindexes.iter().copied().zip(names).collect(),
            interfaces: Vec::new(),
            conn_entries,
            pins: None,
            unpinned: Vec::new(),
            on_twin: Vec::new(),
            ebpf,
        })
    }

    /// Attaches the program to every interface it was loaded for (native,
    /// else generic, as `policy` allows).
    ///
    /// With a pin directory, the links and connection maps are pinned there
    /// (crate::handover): the program then stays attached if this process
    /// dies, and a successor takes over. The links of `inherited` (what a
    /// previous rvsd pinned there) get this program swapped in atomically
    /// instead of a new attachment; inherited links of interfaces no longer
    /// served are detached. Call it once the maps hold what a frame may need
    /// (services, VIPs, adopted connections).
    pub fn attach(
        &mut self,
        policy: XdpModePolicy,
        pin: Option<(PinDir, Inherited)>,
    ) -> Result<(), DatapathError> {
        let (dir, mut inherited) = match pin {
            Some((dir, inherited)) => (Some(dir), inherited),
            None => (None, Inherited::default()),
        };
        let mut pinned = Vec::new();
        for (ifindex, name) in self.targets.clone() {
            let prog = program_mut(&mut self.ebpf)?;
            let old = inherited.links.iter().position(|l| l.ifindex == ifindex);
            let (id, mode, path) = match (old, &dir) {
                (Some(i), Some(_)) => {
                    let old = inherited.links.swap_remove(i);
                    let link = XdpLink::try_from(old.link)
                        .map_err(|e| handover_err("reading a pinned XDP link", chain(&e)))?;
                    let id = prog.attach_to_link(link).map_err(|e| {
                        handover_err("swapping the program into the pinned XDP link", chain(&e))
                    })?;
                    tracing::info!(iface = %name, mode = ?old.mode, "RVS XDP program swapped in, taking over from the previous rvsd");
                    (id, old.mode, Some(old.path))
                }
                _ => {
                    let (id, mode) = attach(prog, ifindex, &name, policy)?;
                    tracing::info!(iface = %name, ?mode, "RVS XDP program attached");
                    (id, mode, None)
                }
            };
            if let Some(dir) = &dir {
                let link = prog
                    .take_link(id)
                    .map_err(|e| handover_err("taking the XDP link", chain(&e)))?;
                match FdLink::try_from(link) {
                    Ok(fd) => {
                        let (path, fd) = match path {
                            Some(p) => (p, fd),
                            None => {
                                let p = dir.link_path(ifindex, mode);
                                let fd = fd
                                    .pin(&p)
                                    .map_err(|e| handover_err("pinning the XDP link", chain(&e)))?;
                                (p, FdLink::from(fd))
                            }
                        };
                        pinned.push((ifindex, path, fd));
                    }
                    Err(e) => {
                        // A netlink attachment (kernel < 5.9): it went with
                        // the link; attach again, unpinned.
                        tracing::warn!(iface = %name, error = %chain(&e), "no BPF link on this kernel: connections will not outlive rvsd");
                        let prog = program_mut(&mut self.ebpf)?;
                        attach(prog, ifindex, &name, policy)?;
                    }
                }
            } else {
                self.unpinned.push((ifindex, id));
            }
            self.interfaces.push(AttachedInterface {
                ifindex,
                name,
                mode,
            });
        }
        let Some(dir) = dir else { return Ok(()) };
        // Interfaces the previous rvsd served and this one does not.
        for old in inherited.links.drain(..) {
            tracing::info!(
                ifindex = old.ifindex,
                "detaching the previous rvsd's XDP program from an interface no longer served"
            );
            remove_pin(&old.path);
        }
        // The successor reads connections from the maps in force now.
        for (name, map) in CONN_MAPS.iter().zip([
            &self.conns.slot_map,
            self.conns.overflow.map(),
            self.conns.v6.map(),
        ]) {
            let path = dir.map_path(name);
            remove_pin(&path);
            map.pin(&path)
                .map_err(|e| handover_err("pinning a connection map", chain(&e)))?;
        }
        self.pins = Some(Pins {
            dir,
            links: pinned,
            keep: false,
        });
        Ok(())
    }

    /// Moves `ifindex`'s link to the program's twin (the same code and
    /// maps under a second name), or back: an atomic link update, never a
    /// moment without the program. A driver that gives each RX queue the
    /// program then gives it to queues added since it was attached: veth
    /// does not give one added by `ethtool -L` the program otherwise, and
    /// an update to the program already attached changes nothing.
    pub fn reattach(&mut self, ifindex: u32) -> Result<(), DatapathError> {
        let twin = self.on_twin.contains(&ifindex);
        let (from, to) = if twin {
            (TWIN, PROGRAM)
        } else {
            (PROGRAM, TWIN)
        };
        let update = |e: aya::programs::ProgramError| {
            handover_err("updating the XDP link to the program's twin", chain(&e))
        };
        let pinned = self.pins.as_mut().and_then(|p| {
            let i = p.links.iter().position(|(x, _, _)| *x == ifindex)?;
            Some((p, i))
        });
        if let Some((pins, i)) = pinned {
            // The pin keeps the link attached while this fd changes hands.
            let (x, path, fd) = pins.links.swap_remove(i);
            let link = XdpLink::try_from(fd)
                .map_err(|e| handover_err("reading a pinned XDP link", chain(&e)))?;
            let prog = xdp_mut(&mut self.ebpf, to)?;
            let id = prog.attach_to_link(link).map_err(update)?;
            let fd = FdLink::try_from(prog.take_link(id).map_err(update)?)
                .map_err(|e| handover_err("taking the XDP link", chain(&e)))?;
            pins.links.push((x, path, fd));
        } else {
            let Some(i) = self.unpinned.iter().position(|(x, _)| *x == ifindex) else {
                return Err(DatapathError::InvalidArgument(format!(
                    "{} has no XDP link of this program to update",
                    crate::iface::describe(ifindex)
                )));
            };
            let (x, id) = self.unpinned.swap_remove(i);
            let link = xdp_mut(&mut self.ebpf, from)?
                .take_link(id)
                .map_err(update)?;
            let id = xdp_mut(&mut self.ebpf, to)?
                .attach_to_link(link)
                .map_err(update)?;
            self.unpinned.push((x, id));
        }
        if twin {
            self.on_twin.retain(|&x| x != ifindex);
        } else {
            self.on_twin.push(ifindex);
        }
        Ok(())
    }

    /// On drop, leave the program attached and its state pinned for the
    /// next rvsd (a restart or an upgrade) instead of detaching it. Without
    /// a pin directory there is nothing to keep and the program detaches.
    pub fn keep_for_successor(&mut self) {
        if let Some(p) = &mut self.pins {
            p.keep = true;
        }
    }

    /// The kernel's id of this program (what `ip link` shows as
    /// `prog/xdp id N` on an interface it is attached to; one that gained
    /// RX queues may run its twin instead, see `reattach`).
    pub fn program_id(&self) -> Result<u32, DatapathError> {
        let prog = program(&self.ebpf)?;
        prog.info()
            .map(|i| i.id())
            .map_err(|e| DatapathError::BpfLoad(chain(&e).into()))
    }

    /// The pin directory, if the program's state is pinned.
    pub fn pin_dir(&self) -> Option<&std::path::Path> {
        self.pins.as_ref().map(|p| p.dir.path())
    }

    /// The interfaces the program is attached to, in slot order, with their mode.
    pub fn interfaces(&self) -> &[AttachedInterface] {
        &self.interfaces
    }

    /// How the program is attached to `ifindex` (None: not one of ours).
    pub fn mode(&self, ifindex: u32) -> Option<XdpAttachMode> {
        self.interfaces
            .iter()
            .find(|i| i.ifindex == ifindex)
            .map(|i| i.mode)
    }

    /// Size of the `conns` map (entries, two per NAT connection).
    pub fn conn_map_capacity(&self) -> u32 {
        self.conn_entries
    }

    /// Slots of the IPv4 table (`conn_slots4`).
    pub fn conn_slots(&self) -> usize {
        self.conns.slots.slots()
    }

    /// Slots of the IPv4 table in use: the prefix the program looks in,
    /// doubled whenever its entries fill more than half of it.
    pub fn conn_active_slots(&self) -> usize {
        self.conns.slots.active_slots()
    }

    /// IPv4 entries in the overflow map because their set of slots was
    /// full (O(1)): many of them say `fast_path_slots` is too small.
    pub fn conn_overflow_entries(&self) -> usize {
        self.conns.overflow_entries()
    }

    /// IPv4 entries in their slots and in the overflow map (`conns4`):
    /// O(slots) reads of memory, for diagnostics and tests.
    pub fn conn_slot_usage(&self) -> (usize, usize) {
        self.conns.v4_counts()
    }

    /// The slot and name of one of the interfaces the program was loaded
    /// for (attached or not yet).
    fn iface(&self, ifindex: u32) -> Option<(u32, &str)> {
        self.targets
            .iter()
            .enumerate()
            .find(|(_, (i, _))| *i == ifindex)
            .map(|(slot, (_, name))| (slot as u32, name.as_str()))
    }

    fn xsk_index(&self, ifindex: u32, queue: u32) -> Result<u32, DatapathError> {
        let (slot, i) = self.iface(ifindex).ok_or_else(|| {
            DatapathError::InvalidArgument(format!(
                "{} is not an interface the XDP program was loaded on",
                crate::iface::describe(ifindex)
            ))
        })?;
        if queue >= MAX_QUEUES_PER_INTERFACE {
            return Err(DatapathError::InvalidArgument(format!(
                "queue {queue} on {}: the XDP program hands queues 0..{MAX_QUEUES_PER_INTERFACE} \
                 to user space (lower the interface's queue count with `ethtool -L`)",
                i
            )));
        }
        Ok(slot * MAX_QUEUES_PER_INTERFACE + queue)
    }

    /// Deliver frames meant for user space that arrive on `ifindex` queue
    /// `queue` to the AF_XDP socket `fd` (e.g. [`crate::XskGroup::socket_fd`]).
    pub fn register_socket(
        &mut self,
        ifindex: u32,
        queue: u32,
        fd: RawFd,
    ) -> Result<(), DatapathError> {
        let index = self.xsk_index(ifindex, queue)?;
        self.xsks
            .set(index, fd, 0)
            .map_err(|e| map_err("xsks", "insert", e))
    }

    /// Stop delivering that queue to user space (its frames for user space
    /// are then dropped and counted as `to_user_failed`).
    pub fn unregister_socket(&mut self, ifindex: u32, queue: u32) -> Result<(), DatapathError> {
        let index = self.xsk_index(ifindex, queue)?;
        match self.xsks.unset(index) {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(map_err("xsks", "remove", e)),
        }
    }

    /// Send first packets to (addr, proto, port) to user space; port 0
    /// covers every port of the address.
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

    /// Mark `addr` as a VIP: malformed packets and fragments to it go to
    /// user space (to be counted and dropped) instead of the kernel.
    pub fn add_vip(&mut self, addr: IpAddr) -> Result<(), DatapathError> {
        self.vips
            .insert(AddrKey::new(addr), 0, 0)
            .map_err(|e| map_err("vip_addrs", "insert", e))
    }

    /// Forget a VIP (absent entries are fine).
    pub fn remove_vip(&mut self, addr: IpAddr) -> Result<(), DatapathError> {
        remove(&mut self.vips, &AddrKey::new(addr), "vip_addrs")
    }

    /// What the `services` map holds, as (address, protocol, port): to
    /// compare the maps with the configuration (diagnostics, tests). One
    /// system call per entry.
    pub fn services(&self) -> Result<Vec<(IpAddr, u8, u16)>, DatapathError> {
        walk(self.services.keys(), "services", |k: L4Key| k.parts())
    }

    /// What the `vip_addrs` map holds (diagnostics, tests; one system call
    /// per entry).
    pub fn vips(&self) -> Result<Vec<IpAddr>, DatapathError> {
        walk(self.vips.keys(), "vip_addrs", |k: AddrKey| k.addr())
    }

    /// Apply one of the engine's fast-path ops to the maps, in the order the
    /// engine emitted them.
    ///
    /// Returns `Ok(None)` for every op but [`FastPathOp::ReadActivity`], for
    /// which it returns the latest `last_seen` (CLOCK_MONOTONIC_COARSE ns, see
    /// [`monotonic_ns`]) of `key` and `reply`, or `None` if neither entry
    /// exists — what the caller hands to the engine. An `Upsert` stamps the
    /// entry with the current time, so a fresh entry never looks idle.
    pub fn apply(&mut self, op: &FastPathOp) -> Result<Option<u64>, DatapathError> {
        match op {
            FastPathOp::Upsert { key, action } => {
                let k = ConnKey::new(key)?;
                let (e, tail) = ConnEntry::build(&k, action, monotonic_ns())?;
                self.conns.insert(&k, e, tail)?;
            }
            FastPathOp::Remove { key } => self.conns.remove(&ConnKey::new(key)?)?,
            FastPathOp::SetNextHop { id, hop } => {
                let v = NextHopValue::new(*id, hop.as_ref(), |ifindex| {
                    self.iface(ifindex).map(|(slot, _)| slot)
                })?;
                self.next_hops
                    .set(id.0, v, 0)
                    .map_err(|e| map_err("next_hops", "update", e))?;
            }
            FastPathOp::ResetDest { slot } => self.reset_dest(*slot)?,
            FastPathOp::ReadActivity { key, reply } => {
                let a = self.last_seen(key)?;
                let b = match reply {
                    Some(r) => self.last_seen(r)?,
                    None => None,
                };
                return Ok(a.max(b));
            }
        }
        Ok(None)
    }

    /// When the program last forwarded a frame of `key` (or the entry was
    /// written): CLOCK_MONOTONIC_COARSE ns; `None` if there is no entry. The
    /// program refreshes it at most once a second per entry.
    pub fn last_seen(&self, key: &FastKey) -> Result<Option<u64>, DatapathError> {
        Ok(self.conns.get(&ConnKey::new(key)?)?.map(|e| e.last_seen))
    }

    fn reset_dest(&mut self, slot: DestSlot) -> Result<(), DatapathError> {
        check_dest(slot)?;
        let cpus = aya::util::nr_cpus().map_err(|(what, e)| DatapathError::Syscall {
            call: what,
            source: e,
        })?;
        let zero = PerCpuValues::try_from(vec![DestValue::default(); cpus]).map_err(|e| {
            DatapathError::Map {
                map: "dest_stats",
                op: "reset",
                detail: e.to_string(),
            }
        })?;
        self.dest_stats
            .set(slot.0, zero, 0)
            .map_err(|e| map_err("dest_stats", "reset", e))
    }

    /// Traffic the program forwarded for a destination slot since it was
    /// last reset, summed over CPUs.
    pub fn dest_counters(&self, slot: DestSlot) -> Result<DestCounters, DatapathError> {
        check_dest(slot)?;
        let per_cpu = self
            .dest_stats
            .get(&slot.0, 0)
            .map_err(|e| map_err("dest_stats", "read", e))?;
        Ok(per_cpu
            .iter()
            .fold(DestCounters::default(), |a, v| DestCounters {
                in_packets: a.in_packets.wrapping_add(v.in_pkts),
                in_bytes: a.in_bytes.wrapping_add(v.in_bytes),
                out_packets: a.out_packets.wrapping_add(v.out_pkts),
                out_bytes: a.out_bytes.wrapping_add(v.out_bytes),
            }))
    }

    /// The program's counters for frames arriving on `ifindex`, summed over CPUs.
    pub fn iface_stats(&self, ifindex: u32) -> Result<XdpStats, DatapathError> {
        let (slot, _) = self.iface(ifindex).ok_or_else(|| {
            DatapathError::InvalidArgument(format!(
                "{} is not an interface the XDP program was loaded on",
                crate::iface::describe(ifindex)
            ))
        })?;
        self.stats_slot(slot)
    }

    /// Counters of frames from interfaces the program does not know (only
    /// [`test_run`](Self::test_run) with another ifindex puts any there).
    pub fn unknown_iface_stats(&self) -> Result<XdpStats, DatapathError> {
        self.stats_slot(MAX_INTERFACES)
    }

    fn stats_slot(&self, slot: u32) -> Result<XdpStats, DatapathError> {
        let per_cpu = self
            .if_stats
            .get(&slot, 0)
            .map_err(|e| map_err("if_stats", "read", e))?;
        Ok(per_cpu.iter().fold(XdpStats::default(), |a, v| XdpStats {
            passed: a.passed.wrapping_add(v.passed),
            to_user: a.to_user.wrapping_add(v.to_user),
            to_user_failed: a.to_user_failed.wrapping_add(v.to_user_failed),
            fast_tx: a.fast_tx.wrapping_add(v.fast_tx),
            fast_redirect: a.fast_redirect.wrapping_add(v.fast_redirect),
            parse_errors: a.parse_errors.wrapping_add(v.parse_errors),
        }))
    }

    /// Entries in `conns`, by walking the map: O(entries) system calls, for
    /// diagnostics and tests, not for a hot loop.
    pub fn conn_entry_count(&self) -> Result<usize, DatapathError> {
        let (slotted, overflow) = self.conns.v4_counts();
        Ok(slotted + overflow + count(self.conns.v6.keys(), "conns6")?)
    }

    /// Kernel memory charged to the `conns` map, as its fdinfo reports it
    /// (`memlock`): the bucket array plus, per entry, the element and its
    /// allocator header (a NAT connection has two entries). See the README
    /// for measured figures.
    pub fn conn_map_memlock(&self) -> Result<u64, DatapathError> {
        Ok(memlock(&self.conns.slot_map)?
            + memlock(self.conns.overflow.map())?
            + memlock(self.conns.v6.map())?)
    }

    /// A handle that test-runs the program from another thread (it owns
    /// a descriptor of the program; the maps are the live ones).
    pub fn test_runner(&self) -> Result<TestRunner, DatapathError> {
        let prog = program(&self.ebpf)?;
        let fd = prog
            .fd()
            .map_err(|e| DatapathError::BpfLoad(chain(&e).into()))?;
        let owned = fd
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| DatapathError::syscall("duplicating the program's descriptor", e))?;
        Ok(TestRunner::new(owned))
    }

    /// Run the program once on `frame` with `BPF_PROG_TEST_RUN`, as if it
    /// arrived on `ingress_ifindex` queue `rx_queue` (both must exist in the
    /// calling thread's network namespace), against the live maps and
    /// counters. Returns the action and the frame as the program left it;
    /// nothing is sent.
    pub fn test_run(
        &self,
        frame: &[u8],
        ingress_ifindex: u32,
        rx_queue: u32,
    ) -> Result<TestRun, DatapathError> {
        let prog = program(&self.ebpf)?;
        let fd = prog
            .fd()
            .map_err(|e| DatapathError::BpfLoad(chain(&e).into()))?;
        test_run::run(fd.as_fd(), frame, ingress_ifindex, rx_queue)
    }
}

/// Entries of a map, walking its keys (one system call each).
fn count<K>(
    keys: impl Iterator<Item = Result<K, aya::maps::MapError>>,
    name: &'static str,
) -> Result<usize, DatapathError> {
    Ok(walk(keys, name, |_| ())?.len())
}

/// Every key of a map, walked, as `f` reads it.
fn walk<K, T>(
    keys: impl Iterator<Item = Result<K, aya::maps::MapError>>,
    name: &'static str,
    f: impl Fn(K) -> T,
) -> Result<Vec<T>, DatapathError> {
    let mut out = Vec::new();
    for k in keys {
        match k {
            Ok(k) => out.push(f(k)),
            // An entry deleted while walking.
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(map_err(name, "walk", e)),
        }
    }
    Ok(out)
}

/// Kernel memory charged to a map (`memlock` in its fdinfo).
fn memlock(map: &MapData) -> Result<u64, DatapathError> {
    {
        let fd = map.fd().as_fd().as_raw_fd();
        let path = format!("/proc/self/fdinfo/{fd}");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| DatapathError::syscall("reading the conns map's fdinfo", e))?;
        text.lines()
            .find_map(|l| l.strip_prefix("memlock:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| DatapathError::Syscall {
                call: "reading the conns map's fdinfo",
                source: std::io::Error::other(format!("no memlock line in {path}")),
            })
    }
}

/// A hash seed nobody outside can guess (getrandom(2)).
fn random_seed() -> Result<u64, DatapathError> {
    let mut buf = [0u8; 8];
    // SAFETY: writes at most 8 bytes into `buf`, which outlives the call.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n != 8 {
        return Err(DatapathError::syscall(
            "getrandom for the connection table's hash seed",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(u64::from_ne_bytes(buf))
}

fn handover_err(what: &'static str, detail: String) -> DatapathError {
    DatapathError::syscall(what, std::io::Error::other(detail))
}

fn program(ebpf: &Ebpf) -> Result<&Xdp, DatapathError> {
    ebpf.program(PROGRAM)
        .ok_or_else(|| DatapathError::BpfLoad("program rvs_xdp missing (build bug)".into()))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| DatapathError::BpfLoad(chain(&e).into()))
}

fn program_mut(ebpf: &mut Ebpf) -> Result<&mut Xdp, DatapathError> {
    xdp_mut(ebpf, PROGRAM)
}

/// The program `name` of the object.
fn xdp_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp, DatapathError> {
    ebpf.program_mut(name)
        .ok_or_else(|| {
            DatapathError::BpfLoad(format!("program {name} missing (build bug)").into())
        })?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| DatapathError::BpfLoad(chain(&e).into()))
}

fn map_mut<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut aya::maps::Map, DatapathError> {
    ebpf.map_mut(name).ok_or_else(|| {
        DatapathError::BpfLoad(format!("map `{name}` missing from the object (build bug)").into())
    })
}
