//! State that outlives rvsd: the XDP links and the connection maps pinned
//! in a directory of a BPF file system, so that established flows keep
//! being forwarded by the XDP program while no rvsd runs (a restart, an
//! upgrade, a crash) and the next rvsd takes them over.
//!
//! The directory ([`PinDir`]) holds:
//! - `link-<ifindex>-<native|generic>`: the XDP link of each interface.
//!   While it is pinned the program stays attached, whatever happens to the
//!   process that attached it; the successor swaps its own program into the
//!   same link (`bpf_link_update`), atomically, without a moment with no
//!   program on the interface.
//! - `conn_slots4`, `conns4`, `conns6`: the connection maps of the program
//!   in force (the IPv4 slot table, its overflow, IPv6). The
//!   successor reads them ([`Inherited::flows`]), hands each forwarding
//!   entry to the engine ([`rvs_engine::Engine::adopt`]) which writes it
//!   into its own new maps, and only then swaps the program.
//!
//! Nothing else is carried over: the new program starts with new maps, so
//! a successor with another layout, other limits or other destination
//! slots is never confused by stale values. A stop that is not a handover
//! removes the directory, which detaches the program.

use std::ffi::CString;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd as _;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use aya::maps::{HashMap, MapData};
use aya::programs::links::{FdLink, PinnedLink};
use rvs_engine::{Adopted, ForwardMethod};

use crate::conn_table::{SlotTable, SLOT_BYTES};
use crate::fastpath::{action, ConnEntry, ConnEntry6, ConnKey, ConnKey4};
use crate::maps::{chain, is_not_found, map_err};
use crate::program::{monotonic_ns, XdpAttachMode};
use crate::DatapathError;

/// `BPF_FS_MAGIC` from `linux/magic.h`: the `f_type` of a bpffs.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Where rvsd pins its state unless told otherwise: one directory per
/// control socket, so two daemons on one host never share one.
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/rvs";

/// The pin directory for the daemon serving `socket` under `root`: the
/// socket's path with every character but letters, digits and `_` turned
/// into `-` (`/run/rvs/rvsd.sock` → `run-rvs-rvsd-sock`; a bpffs refuses
/// names with a dot).
pub fn pin_dir_for_socket(root: &Path, socket: &Path) -> PathBuf {
    let name: String = socket
        .to_string_lossy()
        .trim_start_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    root.join(name)
}

/// A directory on a BPF file system where this daemon pins its state.
#[derive(Debug, Clone)]
pub struct PinDir {
    path: PathBuf,
}

impl PinDir {
    /// Opens `path`, creating it (and its parents) if needed. It must be on
    /// a BPF file system (`mount -t bpf bpf /sys/fs/bpf`); nothing is
    /// created when it is not.
    pub fn open(path: &Path) -> Result<Self, DatapathError> {
        let existing = path
            .ancestors()
            .find(|p| p.exists())
            .unwrap_or(Path::new("/"));
        if !is_bpffs(existing)? {
            return Err(DatapathError::NotBpfFs(existing.to_path_buf()));
        }
        let new = path.strip_prefix(existing).unwrap_or(path);
        if new.to_string_lossy().contains('.') {
            return Err(DatapathError::InvalidArgument(format!(
                "{}: a BPF file system refuses names with a dot",
                path.display()
            )));
        }
        std::fs::create_dir_all(path)
            .map_err(|e| DatapathError::syscall("creating the BPF pin directory", e))?;
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What a previous rvsd left here: its links and connection maps
    /// (empty on a first start). Pins this version cannot use (another
    /// layout) are left out and logged.
    pub fn inherit(&self) -> Result<Inherited, DatapathError> {
        let mut links = Vec::new();
        let entries = std::fs::read_dir(&self.path)
            .map_err(|e| DatapathError::syscall("reading the BPF pin directory", e))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| DatapathError::syscall("reading the BPF pin directory", e))?;
            let name = entry.file_name();
            let Some((ifindex, mode)) = name.to_str().and_then(parse_link_name) else {
                continue;
            };
            let pinned = PinnedLink::from_pin(entry.path()).map_err(|e| {
                DatapathError::syscall(
                    "opening a pinned XDP link",
                    std::io::Error::other(chain(&e)),
                )
            })?;
            links.push(InheritedLink {
                ifindex,
                mode,
                path: entry.path(),
                link: FdLink::from(pinned),
            });
        }
        Ok(Inherited {
            links,
            slots4: self.open_slots()?,
            conns4: self.open_map("conns4")?,
            conns6: self.open_map("conns6")?,
        })
    }

    /// The pinned IPv4 slot table, mapped, if there is one of this layout.
    fn open_slots(&self) -> Result<Option<SlotTable>, DatapathError> {
        const NAME: &str = "conn_slots4";
        let path = self.path.join(NAME);
        if !path.exists() {
            return Ok(None);
        }
        let data = MapData::from_pin(&path).map_err(|e| map_err(NAME, "open the pinned", e))?;
        let info = data
            .info()
            .map_err(|e| map_err(NAME, "inspect the pinned", e))?;
        if info.value_size() != SLOT_BYTES || !info.max_entries().is_power_of_two() {
            tracing::warn!(
                map = %path.display(),
                value_size = info.value_size(),
                "a pinned connection table of another layout (another RVS version?): its connections are not adopted"
            );
            return Ok(None);
        }
        // Only walked: the seed does not matter.
        SlotTable::map(data.fd().as_fd(), info.max_entries(), 0).map(Some)
    }

    /// A pinned connection map of a layout this version reads, if any.
    fn open_map<K: aya::Pod, V: aya::Pod>(
        &self,
        name: &'static str,
    ) -> Result<Option<HashMap<MapData, K, V>>, DatapathError> {
        let path = self.path.join(name);
        if !path.exists() {
            return Ok(None);
        }
        let data = MapData::from_pin(&path).map_err(|e| map_err(name, "open the pinned", e))?;
        match HashMap::try_from(aya::maps::Map::HashMap(data)) {
            Ok(map) => Ok(Some(map)),
            Err(e) => {
                tracing::warn!(
                    map = %path.display(),
                    error = %chain(&e),
                    "a pinned connection map this version cannot read (another RVS version?): its connections are not adopted"
                );
                Ok(None)
            }
        }
    }

    pub(crate) fn link_path(&self, ifindex: u32, mode: XdpAttachMode) -> PathBuf {
        let mode = match mode {
            XdpAttachMode::Native => "native",
            XdpAttachMode::Generic => "generic",
        };
        self.path.join(format!("link-{ifindex}-{mode}"))
    }

    pub(crate) fn map_path(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

/// `link-<ifindex>-<mode>` → (ifindex, mode).
fn parse_link_name(name: &str) -> Option<(u32, XdpAttachMode)> {
    let rest = name.strip_prefix("link-")?;
    let (ifindex, mode) = rest.split_once('-')?;
    let mode = match mode {
        "native" => XdpAttachMode::Native,
        "generic" => XdpAttachMode::Generic,
        _ => return None,
    };
    Some((ifindex.parse().ok()?, mode))
}

/// Whether `path` is on a BPF file system.
fn is_bpffs(path: &Path) -> Result<bool, DatapathError> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        DatapathError::InvalidArgument(format!("{} has a NUL byte", path.display()))
    })?;
    // SAFETY: statfs writes one `struct statfs` into `buf`, which is zeroed,
    // ours and outlives the call; `c` is a NUL-terminated path.
    let (r, buf) = unsafe {
        let mut buf: libc::statfs = std::mem::zeroed();
        (libc::statfs(c.as_ptr(), &mut buf), buf)
    };
    if r != 0 {
        return Err(DatapathError::syscall(
            "statfs of the BPF pin directory",
            std::io::Error::last_os_error(),
        ));
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width differs by architecture
    Ok(buf.f_type as i64 == BPF_FS_MAGIC)
}

/// An XDP link a previous rvsd pinned.
#[derive(Debug)]
pub(crate) struct InheritedLink {
    pub(crate) ifindex: u32,
    pub(crate) mode: XdpAttachMode,
    pub(crate) path: PathBuf,
    pub(crate) link: FdLink,
}

/// What a previous rvsd left pinned: [`PinDir::inherit`].
#[derive(Debug, Default)]
pub struct Inherited {
    pub(crate) links: Vec<InheritedLink>,
    slots4: Option<SlotTable>,
    conns4: Option<HashMap<MapData, ConnKey4, ConnEntry>>,
    conns6: Option<HashMap<MapData, ConnKey, crate::fastpath::ConnEntry6>>,
}

/// The flows of a previous rvsd's maps, and how many entries were not
/// flows to adopt.
#[derive(Debug, Default)]
pub struct InheritedFlows {
    /// Forwarding client → server entries, as the engine adopts them.
    pub flows: Vec<Adopted>,
    /// Entries only the old engine could place: NAT reply directions (their
    /// connection is adopted through its other direction) and connections
    /// in states the engine had to see every packet of (handshake, close).
    pub skipped: usize,
}

impl Inherited {
    /// Whether anything was inherited.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
            && self.slots4.is_none()
            && self.conns4.is_none()
            && self.conns6.is_none()
    }

    /// Interfaces with an inherited XDP link.
    pub fn interfaces(&self) -> Vec<u32> {
        self.links.iter().map(|l| l.ifindex).collect()
    }

    /// Every flow the old program forwards on its own, read from its maps
    /// (the slot table through memory, the hash maps with one system call
    /// per entry: at start only).
    pub fn flows(&self) -> Result<InheritedFlows, DatapathError> {
        let now = monotonic_ns();
        let mut out = InheritedFlows::default();
        if let Some(table) = &self.slots4 {
            for (k, e) in table.inherited_entries() {
                out.push(flow_of(&ConnKey::from_v4(&k), &e, None, now));
            }
        }
        if let Some(map) = &self.conns4 {
            for item in map.iter() {
                match item {
                    Ok((k, e)) => out.push(flow_of(&ConnKey::from_v4(&k), &e, None, now)),
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(map_err("conns4", "walk", e)),
                }
            }
        }
        if let Some(map) = &self.conns6 {
            for item in map.iter() {
                match item {
                    Ok((k, e)) => out.push(flow_of(&k, &e.entry, Some(&e), now)),
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(map_err("conns6", "walk", e)),
                }
            }
        }
        Ok(out)
    }
}

impl InheritedFlows {
    fn push(&mut self, flow: Option<Adopted>) {
        match flow {
            Some(f) => self.flows.push(f),
            None => self.skipped += 1,
        }
    }
}

/// The adoptable flow an entry describes, if it is one; `e6` is an IPv6
/// entry whole, whose tail holds a tunnel's outer destination or
/// FullNAT's local end.
fn flow_of(k: &ConnKey, e: &ConnEntry, e6: Option<&ConnEntry6>, now_ns: u64) -> Option<Adopted> {
    let v4 = k.family == 4;
    let addr = |b: &[u8]| -> IpAddr {
        if v4 {
            IpAddr::from([b[0], b[1], b[2], b[3]])
        } else {
            let mut a = [0u8; 16];
            a.copy_from_slice(&b[..16]);
            IpAddr::from(a)
        }
    };
    let mut local = None;
    let (method, server, server_port) = match e.action {
        action::ROUTE => (ForwardMethod::Route, addr(&e.addr), None),
        action::MASQ_IN => (
            ForwardMethod::Masq,
            addr(&e.addr),
            Some(u16::from_be_bytes(e.port)),
        ),
        // IPIP: the outer destination, bytes 4..8.
        action::TUNNEL if v4 => (ForwardMethod::Tunnel, addr(&e.addr[4..8]), None),
        action::TUNNEL6 => (ForwardMethod::Tunnel, IpAddr::from(e6?.dst6), None),
        // FullNAT, client to server: the local end in `fnat` (IPv4: bytes
        // 4..8 and 8..10) or the tail (IPv6).
        action::FNAT_IN => {
            local = Some(match e6 {
                None if v4 => SocketAddr::new(
                    addr(&e.addr[4..8]),
                    u16::from_be_bytes([e.addr[8], e.addr[9]]),
                ),
                Some(t) if !v4 => {
                    SocketAddr::new(IpAddr::from(t.src6), u16::from_be_bytes(t.sport6))
                }
                _ => return None,
            });
            (
                ForwardMethod::FullNat,
                addr(&e.addr),
                Some(u16::from_be_bytes(e.port)),
            )
        }
        _ => return None,
    };
    Some(Adopted {
        proto: k.proto,
        client: SocketAddr::new(addr(&k.saddr), u16::from_be_bytes(k.sport)),
        virtual_addr: SocketAddr::new(addr(&k.daddr), u16::from_be_bytes(k.dport)),
        server,
        server_port,
        method,
        local,
        idle_secs: u32::try_from(now_ns.saturating_sub(e.last_seen) / 1_000_000_000)
            .unwrap_or(u32::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fastpath::tests_support::entry;
    use rvs_engine::{DestSlot, FastAction, FastForward, FastKey, NextHopId, Rewrite, TcpSegments};

    #[test]
    fn pin_directories_are_named_after_the_socket() {
        assert_eq!(
            pin_dir_for_socket(
                Path::new("/sys/fs/bpf/rvs"),
                Path::new("/run/rvs/rvsd.sock")
            ),
            Path::new("/sys/fs/bpf/rvs/run-rvs-rvsd-sock")
        );
        assert_eq!(
            pin_dir_for_socket(Path::new("/b"), Path::new("/tmp/a b/x:y.sock")),
            Path::new("/b/tmp-a-b-x-y-sock")
        );
    }

    #[test]
    fn link_names_round_trip() {
        let d = PinDir {
            path: PathBuf::from("/x"),
        };
        for mode in [XdpAttachMode::Native, XdpAttachMode::Generic] {
            let p = d.link_path(7, mode);
            let name = p.file_name().unwrap().to_str().unwrap();
            assert_eq!(parse_link_name(name), Some((7, mode)));
        }
        assert_eq!(parse_link_name("link-7-other"), None);
        assert_eq!(parse_link_name("conns4"), None);
        assert_eq!(parse_link_name("link-x-native"), None);
    }

    #[test]
    fn a_directory_off_bpffs_is_refused_and_nothing_is_created() {
        let base = std::env::temp_dir().join(format!("rvs-pin-test-{}", std::process::id()));
        let dir = base.join("a/b");
        assert!(matches!(
            PinDir::open(&dir),
            Err(DatapathError::NotBpfFs(_))
        ));
        assert!(!base.exists());
    }

    fn key(proto: u8) -> FastKey {
        FastKey {
            proto,
            saddr: "10.1.0.2".parse().unwrap(),
            sport: 40000,
            daddr: "10.1.0.100".parse().unwrap(),
            dport: 80,
        }
    }

    fn forward(rewrite: Rewrite) -> FastAction {
        FastAction::Forward(FastForward {
            rewrite,
            next_hop: NextHopId(1),
            segments: TcpSegments::ACK,
            dest: DestSlot(2),
        })
    }

    #[test]
    fn entries_decode_to_the_flows_they_forward() {
        let now = 100_000_000_000;
        let rs: IpAddr = "10.2.0.11".parse().unwrap();
        let cases = [
            (
                forward(Rewrite::Route { server: rs }),
                Some((ForwardMethod::Route, None, None)),
            ),
            (
                forward(Rewrite::MasqIn {
                    addr: rs,
                    port: 8080,
                }),
                Some((ForwardMethod::Masq, Some(8080), None)),
            ),
            (
                forward(Rewrite::FullNatIn {
                    src: "10.2.0.200".parse().unwrap(),
                    src_port: 31000,
                    dst: rs,
                    dst_port: 8080,
                }),
                Some((
                    ForwardMethod::FullNat,
                    Some(8080),
                    Some("10.2.0.200:31000".parse().unwrap()),
                )),
            ),
            (
                forward(Rewrite::Tunnel {
                    src: "10.2.0.1".parse().unwrap(),
                    dst: "10.2.0.11".parse().unwrap(),
                    mtu: 1500,
                    encap: rvs_engine::TunnelEncap::Ipip,
                }),
                Some((ForwardMethod::Tunnel, None, None)),
            ),
            (
                forward(Rewrite::MasqOut {
                    addr: "10.1.0.100".parse().unwrap(),
                    port: 80,
                }),
                None,
            ),
            (FastAction::ToEngine, None),
        ];
        for (act, want) in cases {
            let (k, e) = entry(&key(6), &act, now - 3_500_000_000);
            let got = flow_of(&k, &e, None, now);
            match want {
                None => assert_eq!(got, None, "{act:?}"),
                Some((method, server_port, local)) => assert_eq!(
                    got,
                    Some(Adopted {
                        proto: 6,
                        client: "10.1.0.2:40000".parse().unwrap(),
                        virtual_addr: "10.1.0.100:80".parse().unwrap(),
                        server: rs,
                        server_port,
                        method,
                        local,
                        idle_secs: 3,
                    }),
                    "{act:?}"
                ),
            }
        }
        // IPv6 direct routing.
        let k6 = FastKey {
            proto: 17,
            saddr: "fd00::2".parse().unwrap(),
            sport: 5000,
            daddr: "fd00::100".parse().unwrap(),
            dport: 53,
        };
        let rs6: IpAddr = "fd00:2::11".parse().unwrap();
        let (k, e) = entry(&k6, &forward(Rewrite::Route { server: rs6 }), now);
        let got = flow_of(&k, &e, None, now).unwrap();
        assert_eq!(
            (got.server, got.client.port(), got.idle_secs),
            (rs6, 5000, 0)
        );
    }
}
