//! Configuration snapshots: what the control plane hands the engine.
//!
//! A [`Config`] is plain data the control plane fills (from a file, rvsadm or
//! the kernel's interfaces and routes). [`Snapshot::new`] validates all of it
//! and precomputes what the hot path needs (service index, routes to real
//! servers); a config with any error is refused whole. The engine only ever
//! sees validated snapshots, shared as `Arc<Snapshot>`, swapped between
//! batches without stopping packet processing.
//!
//! A configuration must also fit the XDP program's maps
//! ([`crate::limits`]): `Snapshot::new` refuses one that does not, so
//! nothing of it is applied anywhere. A [`Validator`] checks the parts of a
//! configuration one at a time (a service, a real server, a rule), for a
//! control plane that validates an edit as it is made and names the part at
//! fault in time proportional to the edit.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use rvs_wire::EthernetAddress;
use thiserror::Error;

use crate::classify::{FwmarkMatch, Steering};
use crate::limits;
use crate::proto::Timeouts;
use crate::sched;
use crate::verdict::IfIndex;

pub use rvs_vocab::tunnel::TunnelError;
pub use rvs_vocab::{ForwardMethod, Protocol, Tunnel, TunnelChecksum};

/// A virtual service: (protocol, VIP, port), or a firewall mark (`-f`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// Transport protocol (ignored for firewall-mark services, which take
    /// TCP and UDP alike).
    pub protocol: Protocol,
    /// Virtual IP (the unspecified address of the family for fwmark services).
    pub addr: IpAddr,
    /// Virtual port; 0 = every port (persistent services only).
    pub port: u16,
    /// Firewall mark; 0 for address-based services.
    pub fwmark: u32,
}

impl ServiceKey {
    /// An address-based service.
    pub const fn new(protocol: Protocol, addr: IpAddr, port: u16) -> Self {
        ServiceKey {
            protocol,
            addr,
            port,
            fwmark: 0,
        }
    }

    /// A firewall-mark service of an address family.
    pub fn fwmark(mark: u32, v6: bool) -> Self {
        let addr = if v6 {
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        };
        ServiceKey {
            protocol: Protocol::Tcp,
            addr,
            port: 0,
            fwmark: mark,
        }
    }

    /// Whether this is a firewall-mark service.
    pub const fn is_fwmark(&self) -> bool {
        self.fwmark != 0
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_fwmark() {
            return write!(f, "FWM {}", self.fwmark);
        }
        match self.addr {
            IpAddr::V4(a) => write!(f, "{} {}:{}", self.protocol.name(), a, self.port),
            IpAddr::V6(a) => write!(f, "{} [{}]:{}", self.protocol.name(), a, self.port),
        }
    }
}

/// A real server of a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dest {
    /// Real server address (RIP).
    pub addr: IpAddr,
    /// Real server port; equal to the service port for DR and TUN.
    pub port: u16,
    /// Relative weight; 0 = quiescent (no new connections).
    pub weight: u32,
    /// Forwarding method.
    pub method: ForwardMethod,
    /// The encapsulation when `method` is TUN (`--tun-type`); IPIP, and
    /// unused, for the other methods.
    pub tunnel: Tunnel,
    /// Upper connection threshold (`-x`), 0 = none.
    pub upper_threshold: u32,
    /// Lower connection threshold (`-y`), 0 = none.
    pub lower_threshold: u32,
}

impl Dest {
    /// A destination with ipvsadm's defaults (weight 1, no thresholds).
    pub fn new(addr: IpAddr, port: u16, method: ForwardMethod) -> Self {
        Dest {
            addr,
            port,
            weight: 1,
            method,
            tunnel: Tunnel::Ipip,
            upper_threshold: 0,
            lower_threshold: 0,
        }
    }

    /// Builder-style weight.
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Builder-style tunnel type (for a TUN destination).
    pub fn tunnel(mut self, tunnel: Tunnel) -> Self {
        self.tunnel = tunnel;
        self
    }
}

/// Client persistence (`-p timeout -M netmask`): connections from one client
/// network go to the same real server while a template lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Persistence {
    /// Seconds a template outlives the last connection it scheduled.
    pub timeout: u32,
    /// Client addresses are grouped by this prefix length (`-M`; /32 or /128 = per address).
    pub prefix_len: u8,
}

/// A rule of RVS's own firewall-mark classifier. XDP sees no skb mark, so
/// instead of iptables/nft `MARK` rules the director marks packets itself:
/// a packet to `addr/prefix_len` on one of `ports` (any if empty) of
/// `protocol` (any if `None`) gets `mark`, and is scheduled by the service
/// with that firewall mark.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FwmarkRule {
    /// Mark assigned (non-zero).
    pub mark: u32,
    /// Protocol matched; `None` = TCP and UDP.
    pub protocol: Option<Protocol>,
    /// Destination network.
    pub addr: IpAddr,
    /// Prefix length of `addr`.
    pub prefix_len: u8,
    /// Destination ports; empty = all.
    pub ports: Vec<u16>,
}

/// A virtual service and its real servers, in the order they were added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// (protocol, VIP, port).
    pub key: ServiceKey,
    /// Scheduler name as ipvsadm spells it (`rr`, `wrr`, …).
    pub scheduler: String,
    /// Scheduler flags (`-b`, see [`crate::sched::flags`]).
    pub sched_flags: u32,
    /// Real servers in the order they were added (as with `ipvsadm -a`).
    pub dests: Vec<Dest>,
    /// `-p` / `-M`; `None` = not persistent.
    pub persistence: Option<Persistence>,
    /// `-o`: schedule every UDP datagram on its own, tracking no connection.
    pub one_packet: bool,
    /// FullNAT's local addresses (`--laddr`, an RVS extension): a FullNAT
    /// connection's client side becomes one of these with a port of
    /// [`Config::local_port_range`] (each protocol has its own), taken in
    /// turn. Addresses of the
    /// director that its real servers route back to (on a directly
    /// connected network, or routed to it); the service's family.
    pub local_addresses: Vec<IpAddr>,
    /// FullNAT: tell the real server the client's address and port in a
    /// TCP option (TOA, kind 254, as Alibaba's LVS and DPVS write it) on
    /// the client's handshake-completing ACK (`--toa`, RVS's).
    pub toa: bool,
}

impl Service {
    /// A service with no real servers, not persistent.
    pub fn new(key: ServiceKey, scheduler: &str) -> Self {
        Service {
            key,
            scheduler: scheduler.into(),
            sched_flags: 0,
            dests: Vec::new(),
            persistence: None,
            one_packet: false,
            local_addresses: Vec::new(),
            toa: false,
        }
    }
}

/// An interface the director uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// Kernel ifindex.
    pub index: IfIndex,
    /// Name, for messages.
    pub name: String,
    /// Its MAC: the source MAC of everything sent out of it (DMAC).
    pub mac: EthernetAddress,
    /// Addresses with prefix lengths: the directly connected networks, and
    /// the DIP used as the outer source of tunnelled packets.
    pub addrs: Vec<(IpAddr, u8)>,
    /// MTU of the link.
    pub mtu: u16,
}

/// A route (from the kernel's table) the director uses to reach real servers
/// and, for NAT replies, clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Destination network.
    pub dst: IpAddr,
    /// Prefix length of `dst`.
    pub prefix_len: u8,
    /// Interface to send on.
    pub egress: IfIndex,
    /// Next-hop router, or `None` when the destination is on the link.
    pub gateway: Option<IpAddr>,
}

/// Everything the engine is configured with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Interfaces used for receiving and sending.
    pub interfaces: Vec<Interface>,
    /// Routes (e.g. the default, or the kernel's whole main table), most
    /// preferred first among those of one prefix length: longest prefix
    /// wins, then the first listed, then the interfaces' connected networks
    /// (so a table that holds its connected routes itself, as the kernel's
    /// does, decides ties as the kernel does).
    pub routes: Vec<Route>,
    /// Virtual services.
    pub services: Vec<Service>,
    /// Firewall-mark classifier rules, first match wins.
    pub fwmarks: Vec<FwmarkRule>,
    /// Per-state timeouts (`ipvsadm --set`).
    pub timeouts: Timeouts,
    /// Maximum tracked connections; new flows beyond it are dropped.
    pub max_connections: u32,
    /// Forward established flows inside the XDP program (see
    /// [`crate::fastpath`]); when false every frame of a tracked connection
    /// goes through the engine.
    pub fast_path: bool,
    /// Slots of the XDP program's IPv4 connection table (64 bytes each,
    /// allocated at start, rounded up to a power of two); `None`: two per
    /// connection of `max_connections`. Entries that find their set full
    /// are still forwarded, from a slower hash map.
    pub fast_path_slots: Option<u32>,
    /// SYN-flood defence: IPVS's strategies (`drop_entry`, `drop_packet`,
    /// `secure_tcp`) with their sysctl semantics.
    pub defense: Defense,
    /// IPVS's `sloppy_tcp`: a TCP packet to a service that belongs to no
    /// known connection and is not a SYN (nor a RST, which never creates
    /// one) is scheduled as a first packet instead of dropped, so a
    /// director that takes over a flow mid-way (a restart, a failover, an
    /// ECMP change) forwards it; with `mh` or `sh` and the same
    /// configuration every director picks the same real server.
    pub sloppy_tcp: bool,
    /// IPVS's `sloppy_sctp`, the same for SCTP packets that are not an
    /// INIT (never an ABORT). Kept and listed; it takes effect when RVS
    /// balances SCTP (not yet).
    pub sloppy_sctp: bool,
    /// IPVS's `sync_persist_mode`: a sync master sends a connection that a
    /// persistence template controls only as its template, to cut sync
    /// traffic; a backup then schedules its packets by the template,
    /// mid-flow ones with `sloppy_tcp`.
    pub sync_persist_mode: bool,
    /// Fragmented datagrams tracked at once (see `crate::frag`): the
    /// table's memory, reserved at start (at most 128 bytes each).
    pub max_fragment_datagrams: u32,
    /// The ports FullNAT allocates on each local address, both ends
    /// included. The default stays below the kernel's ephemeral range
    /// (32768–60999), so a connection the director's own kernel opens from
    /// a local address never meets a port FullNAT gave out.
    pub local_port_range: (u16, u16),
}

/// [`Config::local_port_range`]'s default.
pub const DEFAULT_LOCAL_PORT_RANGE: (u16, u16) = (1024, 32767);

/// IPVS's defence strategies against connection-table exhaustion (the
/// kernel's `/proc/sys/net/ipv4/vs/` sysctls of the same names), with one
/// mapping of RVS's own: the kernel's "available memory" is here the
/// connection table's free entries, so `amemthresh` counts entries, not
/// pages.
///
/// Each strategy mode is 0 (off), 1 (automatic, currently inactive), 2
/// (automatic, currently active) or 3 (always on). In the automatic modes
/// the engine moves between 1 and 2 by itself, once a second, as the
/// kernel's `update_defense_level` does: active while fewer than
/// `amemthresh` entries are free.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Defense {
    /// Drop random half-open (SYN_RECV / SYNACK) entries, scanning 1/32 of
    /// the table per second.
    pub drop_entry: u8,
    /// Drop 1 in `rate` packets that would create a connection; automatic
    /// rate `amemthresh / (amemthresh - free)`, mode 3 uses `am_droprate`.
    pub drop_packet: u8,
    /// Use the kernel's more conservative TCP state table
    /// ([`crate::proto::tcp`]'s secure table).
    pub secure_tcp: u8,
    /// Free connection-table entries below which the automatic modes
    /// switch on.
    pub amemthresh: u32,
    /// `drop_packet` mode 3's rate: one packet in this many is dropped.
    pub am_droprate: u32,
}

impl Defense {
    /// Highest strategy mode (always on).
    pub const MAX_MODE: u8 = 3;
    /// The kernel's default `amemthresh` (there in pages, here in entries).
    pub const DEFAULT_AMEMTHRESH: u32 = 1024;
    /// The kernel's default `am_droprate`.
    pub const DEFAULT_AM_DROPRATE: u32 = 10;
}

impl Defense {
    /// Refuses modes beyond 3 and a zero `am_droprate`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("drop_entry", self.drop_entry),
            ("drop_packet", self.drop_packet),
            ("secure_tcp", self.secure_tcp),
        ] {
            if value > Self::MAX_MODE {
                return Err(ConfigError::DefenseMode { key, value });
            }
        }
        if self.am_droprate == 0 {
            return Err(ConfigError::ZeroDropRate);
        }
        Ok(())
    }
}

impl Default for Defense {
    /// Every strategy off, the kernel's thresholds.
    fn default() -> Self {
        Defense {
            drop_entry: 0,
            drop_packet: 0,
            secure_tcp: 0,
            amemthresh: Self::DEFAULT_AMEMTHRESH,
            am_droprate: Self::DEFAULT_AM_DROPRATE,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            interfaces: Vec::new(),
            routes: Vec::new(),
            services: Vec::new(),
            fwmarks: Vec::new(),
            timeouts: Timeouts::default(),
            max_connections: 1 << 20,
            fast_path: true,
            fast_path_slots: None,
            defense: Defense::default(),
            sloppy_tcp: false,
            sloppy_sctp: false,
            sync_persist_mode: false,
            max_fragment_datagrams: 4096,
            local_port_range: DEFAULT_LOCAL_PORT_RANGE,
        }
    }
}

/// Why a configuration was refused. Nothing of it was applied.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// Two services with the same key.
    #[error("service {0} is defined twice; merge the two definitions")]
    DuplicateService(ServiceKey),
    /// Two real servers with the same address and port in one service.
    #[error("service {service}: real server {addr} port {port} is listed twice")]
    DuplicateDest {
        /// The service.
        service: ServiceKey,
        /// Server address.
        addr: IpAddr,
        /// Server port.
        port: u16,
    },
    /// The scheduler is not (yet) implemented.
    #[error("service {service}: scheduler '{name}' is not available; use one of: {available}")]
    UnknownScheduler {
        /// The service.
        service: ServiceKey,
        /// Requested name.
        name: String,
        /// Names that exist.
        available: String,
    },
    /// Port 0 needs persistence.
    #[error(
        "service {0}: port 0 (all ports) is only valid for persistent services; give a port or -p"
    )]
    ZeroPort(ServiceKey),
    /// Persistence parameters out of range.
    #[error("service {service}: {what}")]
    Persistence {
        /// The service.
        service: ServiceKey,
        /// What is wrong.
        what: String,
    },
    /// One-packet scheduling on a TCP or SCTP service.
    #[error("service {0}: one-packet scheduling (-o) applies to UDP only")]
    OnePacketNotUdp(ServiceKey),
    /// A classifier rule that cannot match.
    #[error("firewall-mark rule for mark {mark}: {what}")]
    FwmarkRule {
        /// The rule's mark.
        mark: u32,
        /// What is wrong.
        what: String,
    },
    /// Weight outside IPVS's range.
    #[error("service {service}: weight {weight} of {addr} is out of range 0..=2147483647")]
    WeightRange {
        /// The service.
        service: ServiceKey,
        /// Server address.
        addr: IpAddr,
        /// Given weight.
        weight: u32,
    },
    /// Lower threshold above the upper one.
    #[error("service {service}: real server {addr} has lower threshold {lower} above upper threshold {upper}")]
    ThresholdOrder {
        /// The service.
        service: ServiceKey,
        /// Server address.
        addr: IpAddr,
        /// `-y`.
        lower: u32,
        /// `-x`.
        upper: u32,
    },
    /// DR and TUN cannot change the port.
    #[error("service {service}: real server {addr} uses port {port}, but {method} forwarding keeps the service port {service_port}; drop the port or use NAT (-m)")]
    PortMapping {
        /// The service.
        service: ServiceKey,
        /// Server address.
        addr: IpAddr,
        /// Port given for the server.
        port: u16,
        /// The service's port.
        service_port: u16,
        /// Method name.
        method: &'static str,
    },
    /// A tunnel type on a server not forwarded by tunnel, or settings the
    /// type does not allow.
    #[error("service {service}: real server {addr}: {reason}")]
    Tunnel {
        /// The service.
        service: ServiceKey,
        /// Server address.
        addr: IpAddr,
        /// What is wrong, in the operator's words.
        reason: TunnelError,
    },
    /// Service and real server of different families (only same-family is supported).
    #[error("service {service}: real server {addr} is of another address family than the VIP")]
    FamilyMismatch {
        /// The service.
        service: ServiceKey,
        /// Server address.
        addr: IpAddr,
    },
    /// No interface or route reaches a real server.
    #[error("service {service}: no route to real server {addr}; add an interface on its network or a route")]
    NoRoute {
        /// The service.
        service: ServiceKey,
        /// Server address.
        addr: IpAddr,
    },
    /// DR needs the server on a directly connected network.
    #[error("service {service}: real server {addr} is reached through a gateway, but direct routing (-g) needs it on a directly connected network")]
    NotOnLink {
        /// The service.
        service: ServiceKey,
        /// Server address.
        addr: IpAddr,
    },
    /// The tunnel needs a source address of the server's family on the
    /// egress interface (IPv4, or a global IPv6 address for ip6ip6).
    #[error("service {service}: tunnel to {addr} leaves through {iface}, which has no address of that family to use as the outer source (IPv4, or a global IPv6 address); add one")]
    NoTunnelSource {
        /// The service.
        service: ServiceKey,
        /// Server address.
        addr: IpAddr,
        /// Interface name.
        iface: String,
    },
    /// Route through an interface that is not configured.
    #[error(
        "route to {dst}/{prefix_len} uses ifindex {egress}, which is not a configured interface"
    )]
    UnknownInterface {
        /// Route destination.
        dst: IpAddr,
        /// Route prefix length.
        prefix_len: u8,
        /// Missing ifindex.
        egress: u32,
    },
    /// Two interfaces with the same index.
    #[error("interface {0} is listed twice")]
    DuplicateInterface(String),
    /// Prefix length beyond the address size.
    #[error("prefix length /{prefix_len} is too long for {addr}")]
    PrefixLength {
        /// Address.
        addr: IpAddr,
        /// Given length.
        prefix_len: u8,
    },
    /// MTU too small for IP.
    #[error("interface {name} has MTU {mtu}; IPv4 needs at least 576 (IPv6: 1280)")]
    Mtu {
        /// Interface name.
        name: String,
        /// Given MTU.
        mtu: u16,
    },
    /// The fast-path table's size is out of range.
    #[error(
        "fast_path_slots = {0}: use {min} to {max} (64 bytes each)",
        min = limits::MIN_FAST_PATH_SLOTS,
        max = limits::MAX_FAST_PATH_SLOTS
    )]
    FastPathSlots(u32),
    /// The fragment table's size is out of range.
    #[error("max_fragment_datagrams = {0}: use 1 to {max}", max = limits::MAX_FRAGMENT_DATAGRAMS)]
    FragmentDatagrams(u32),
    /// A FullNAT server in a service without local addresses.
    #[error("service {service}: real server {addr} is FullNAT, but the service has no local address to connect from; add local_addresses (rvsadm --laddr)")]
    NoLocalAddress {
        /// The service.
        service: ServiceKey,
        /// Server address.
        addr: IpAddr,
    },
    /// A local address that cannot be used.
    #[error("service {service}: local address {addr}: {reason}")]
    LocalAddress {
        /// The service.
        service: ServiceKey,
        /// The address.
        addr: IpAddr,
        /// What is wrong.
        reason: &'static str,
    },
    /// A FullNAT setting on a service that cannot take it.
    #[error("service {service}: {reason}")]
    FullNat {
        /// The service.
        service: ServiceKey,
        /// What is wrong, with the fix.
        reason: &'static str,
    },
    /// An empty or reversed port range.
    #[error("local_port_range = {lo}-{hi}: give the lowest port first, from 1 to 65535")]
    LocalPortRange {
        /// First port.
        lo: u16,
        /// Last port.
        hi: u16,
    },
    /// A connection limit of zero would drop everything.
    #[error("max_connections must be at least 1")]
    ZeroConnections,
    /// A defence strategy mode outside 0..=3.
    #[error(
        "defense: {key} = {value} is not a mode; use 0 (off), 1 or 2 (automatic) or 3 (always)"
    )]
    DefenseMode {
        /// The key (`drop_entry`, `drop_packet`, `secure_tcp`).
        key: &'static str,
        /// The value given.
        value: u8,
    },
    /// A drop rate of zero would drop nothing while claiming to.
    #[error(
        "defense: am_droprate must be at least 1 (1 drops every new connection, 10 one in ten)"
    )]
    ZeroDropRate,
    /// More connections than the XDP connection maps can be sized for.
    #[error(
        "max_connections = {0} is more than the XDP connection maps can hold; use at most {max} (MAX_CONNECTIONS)",
        max = crate::limits::MAX_CONNECTIONS
    )]
    TooManyConnections(u32),
    /// More of something than the XDP program's maps hold
    /// ([`crate::limits`]).
    #[error("{count} {what}, but the XDP filter holds at most {max} ({limit}); {fix}")]
    TooMany {
        /// What there are too many of.
        what: &'static str,
        /// How many the configuration has.
        count: usize,
        /// How many there may be.
        max: u32,
        /// The limit's name in [`crate::limits`].
        limit: &'static str,
        /// What the operator can do.
        fix: &'static str,
    },
}

/// Where packets for one real server leave, worked out once per snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Egress {
    pub(crate) iface: IfIndex,
    pub(crate) mac: EthernetAddress,
    pub(crate) mtu: u16,
    /// Address whose MAC goes into the frame (the server, or a gateway).
    pub(crate) next_hop: IpAddr,
    /// IPv4 DIP on that interface (outer source for tunnels).
    pub(crate) source_v4: Option<Ipv4Addr>,
    /// Its first global IPv6 address (outer source for IPv6 tunnels).
    pub(crate) source_v6: Option<Ipv6Addr>,
}

impl Egress {
    /// The outer source of a tunnel to a server of this family, if the
    /// interface has an address of it.
    pub(crate) fn tunnel_source(&self, v6: bool) -> Option<IpAddr> {
        if v6 {
            self.source_v6.map(IpAddr::V6)
        } else {
            self.source_v4.map(IpAddr::V4)
        }
    }
}

#[derive(Clone, Debug)]
struct RouteEntry {
    net: u128,
    mask: u128,
    v6: bool,
    iface_pos: usize,
    gateway: Option<IpAddr>,
    /// The interface's facts, worked out once per snapshot (the lookup runs
    /// per NAT reply packet).
    iface: IfIndex,
    mac: EthernetAddress,
    mtu: u16,
    source_v4: Option<Ipv4Addr>,
    source_v6: Option<Ipv6Addr>,
}

/// A validated, immutable configuration, ready for the engine.
#[derive(Debug)]
pub struct Snapshot {
    config: Config,
    service_index: HashMap<ServiceKey, usize>,
    routes: Vec<RouteEntry>,
    /// `dest_egress[s][d]` for service `s`, destination `d`.
    dest_egress: Vec<Vec<Egress>>,
    fwmark_rules: Vec<FwmarkMatch>,
    /// What the XDP program must steer, worked out (and checked against the
    /// maps' sizes) once.
    steering: Steering,
}

pub use crate::classify::MAX_FWMARK_HOST_BITS;

/// An address as bits (IPv4 in the low 32) and whether it is IPv6.
pub(crate) fn addr_bits(a: IpAddr) -> (u128, bool) {
    match a {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), false),
        IpAddr::V6(v6) => (u128::from(v6), true),
    }
}

/// The mask of a prefix length, in [`addr_bits`]'s layout.
pub(crate) fn mask_for(prefix_len: u8, v6: bool) -> u128 {
    let width = if v6 { 128 } else { 32 };
    if prefix_len == 0 {
        0
    } else {
        let ones = (!0u128) << (128 - u32::from(prefix_len));
        ones >> (128 - width)
    }
}

/// Checks the parts of a configuration one at a time — a service's
/// settings, a real server, a classifier rule — against the configuration's
/// interfaces and routes, with the same checks and messages as
/// [`Snapshot::new`]. A control plane applying many edits validates each as
/// it is made (naming the edit at fault) at the cost of the edit, then the
/// result once with `Snapshot::new`, which alone checks the whole: services
/// defined twice, and what the XDP maps hold ([`crate::limits`]).
#[derive(Clone, Debug)]
pub struct Validator {
    interfaces: Vec<Interface>,
    /// Longest prefix first.
    routes: Vec<RouteEntry>,
}

impl Validator {
    /// Checks what every part is checked against: the connection limit,
    /// the interfaces and the routes of `config` (not its services or rules).
    pub fn new(config: &Config) -> Result<Validator, ConfigError> {
        if config.max_connections == 0 {
            return Err(ConfigError::ZeroConnections);
        }
        if config.max_connections > limits::MAX_CONNECTIONS {
            return Err(ConfigError::TooManyConnections(config.max_connections));
        }
        if let Some(slots) = config.fast_path_slots {
            if !(limits::MIN_FAST_PATH_SLOTS..=limits::MAX_FAST_PATH_SLOTS).contains(&slots) {
                return Err(ConfigError::FastPathSlots(slots));
            }
        }
        if !(1..=limits::MAX_FRAGMENT_DATAGRAMS).contains(&config.max_fragment_datagrams) {
            return Err(ConfigError::FragmentDatagrams(
                config.max_fragment_datagrams,
            ));
        }
        config.defense.validate()?;
        let (lo, hi) = config.local_port_range;
        if lo == 0 || lo > hi {
            return Err(ConfigError::LocalPortRange { lo, hi });
        }
        let local: std::collections::HashSet<IpAddr> = config
            .services
            .iter()
            .flat_map(|s| s.local_addresses.iter().copied())
            .collect();
        if local.len() > limits::MAX_LOCAL_ADDRESSES {
            return Err(ConfigError::TooMany {
                what: "FullNAT local addresses",
                count: local.len(),
                max: limits::MAX_LOCAL_ADDRESSES as u32,
                limit: "MAX_LOCAL_ADDRESSES",
                fix: "share local addresses between services",
            });
        }
        if config.interfaces.len() > limits::MAX_INTERFACES as usize {
            return Err(ConfigError::TooMany {
                what: "interfaces",
                count: config.interfaces.len(),
                max: limits::MAX_INTERFACES,
                limit: "MAX_INTERFACES",
                fix: "run another director for the others",
            });
        }
        let mut seen_if = HashMap::new();
        for (pos, iface) in config.interfaces.iter().enumerate() {
            if seen_if.insert(iface.index, pos).is_some() {
                return Err(ConfigError::DuplicateInterface(iface.name.clone()));
            }
            if iface.mtu < 576 {
                return Err(ConfigError::Mtu {
                    name: iface.name.clone(),
                    mtu: iface.mtu,
                });
            }
        }
        let mut connected = Vec::new();
        for (pos, iface) in config.interfaces.iter().enumerate() {
            for &(addr, prefix_len) in &iface.addrs {
                let (bits, v6) = addr_bits(addr);
                if prefix_len > if v6 { 128 } else { 32 } {
                    return Err(ConfigError::PrefixLength { addr, prefix_len });
                }
                let mask = mask_for(prefix_len, v6);
                connected.push((
                    prefix_len,
                    RouteEntry {
                        net: bits & mask,
                        mask,
                        v6,
                        iface_pos: pos,
                        gateway: None,
                        iface: iface.index,
                        mac: iface.mac,
                        mtu: iface.mtu,
                        source_v4: None,
                        source_v6: None,
                    },
                ));
            }
        }
        let mut routes = Vec::with_capacity(config.routes.len() + connected.len());
        for r in &config.routes {
            let (bits, v6) = addr_bits(r.dst);
            if r.prefix_len > if v6 { 128 } else { 32 } {
                return Err(ConfigError::PrefixLength {
                    addr: r.dst,
                    prefix_len: r.prefix_len,
                });
            }
            let Some(&pos) = seen_if.get(&r.egress) else {
                return Err(ConfigError::UnknownInterface {
                    dst: r.dst,
                    prefix_len: r.prefix_len,
                    egress: r.egress.0,
                });
            };
            let mask = mask_for(r.prefix_len, v6);
            routes.push((
                r.prefix_len,
                RouteEntry {
                    net: bits & mask,
                    mask,
                    v6,
                    iface_pos: pos,
                    gateway: r.gateway,
                    iface: r.egress,
                    mac: EthernetAddress([0; 6]),
                    mtu: 0,
                    source_v4: None,
                    source_v6: None,
                },
            ));
        }
        // Longest prefix first; stable, so at one prefix length the routes
        // keep their given order and the connected networks come last: the
        // kernel's main table holds the connected routes itself, with their
        // metrics, and may prefer another route of the same prefix (an IPv6
        // gateway route with a metric below 256, a replaced connected route).
        routes.extend(connected);
        routes.sort_by_key(|r| std::cmp::Reverse(r.0));
        let routes: Vec<RouteEntry> = routes
            .into_iter()
            .map(|(_, mut r)| {
                let i = &config.interfaces[r.iface_pos];
                r.iface = i.index;
                r.mac = i.mac;
                r.mtu = i.mtu;
                r.source_v4 = i.addrs.iter().find_map(|(a, _)| match a {
                    IpAddr::V4(v4) => Some(*v4),
                    IpAddr::V6(_) => None,
                });
                // Link-local (fe80::/10) addresses are no tunnel source.
                r.source_v6 = i.addrs.iter().find_map(|(a, _)| match a {
                    IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 != 0xfe80 => Some(*v6),
                    _ => None,
                });
                r
            })
            .collect();
        Ok(Validator {
            interfaces: config.interfaces.clone(),
            routes,
        })
    }

    /// A whole service: its settings and every real server (values, none
    /// listed twice, each reachable as its method needs).
    pub fn service(&self, svc: &Service) -> Result<(), ConfigError> {
        self.service_values(svc)?;
        for d in &svc.dests {
            self.dest_route(svc.key, d)?;
        }
        Ok(())
    }

    /// A service's own settings — port, persistence, `-o`, scheduler —
    /// without its real servers (whose checks depend only on the service's
    /// key, not on these).
    pub fn settings(&self, svc: &Service) -> Result<(), ConfigError> {
        let key = svc.key;
        if key.port == 0 && !key.is_fwmark() && svc.persistence.is_none() {
            return Err(ConfigError::ZeroPort(key));
        }
        if let Some(p) = svc.persistence {
            let max = if key.addr.is_ipv4() { 32 } else { 128 };
            if p.timeout == 0 {
                return Err(ConfigError::Persistence {
                    service: key,
                    what: "persistence timeout must be at least 1 second".into(),
                });
            }
            if p.prefix_len > max {
                return Err(ConfigError::Persistence {
                    service: key,
                    what: format!(
                        "persistence netmask /{} is longer than the address",
                        p.prefix_len
                    ),
                });
            }
        }
        if svc.one_packet && !key.is_fwmark() && key.protocol != Protocol::Udp {
            return Err(ConfigError::OnePacketNotUdp(key));
        }
        local_addresses(svc)?;
        // Every name in NAMES has its scheduler (a test of `sched` says so);
        // building one here would cost a Maglev table per service.
        if !sched::NAMES.contains(&svc.scheduler.as_str()) {
            return Err(ConfigError::UnknownScheduler {
                service: key,
                name: svc.scheduler.clone(),
                available: sched::NAMES.join(", "),
            });
        }
        Ok(())
    }

    /// One real server of the service `service`: its values and its route.
    /// Whether the service lists it twice is the caller's to know.
    pub fn dest(&self, service: ServiceKey, d: &Dest) -> Result<(), ConfigError> {
        dest_values(service, d)?;
        self.dest_route(service, d).map(|_| ())
    }

    /// What a real server asks of its whole service beyond its key: a
    /// FullNAT server needs local addresses and a connection to answer
    /// through (not `-o`).
    pub fn dest_in_service(svc: &Service, d: &Dest) -> Result<(), ConfigError> {
        fullnat_dest(svc, d)
    }

    /// A firewall-mark classifier rule on its own.
    pub fn fwmark_rule(&self, r: &FwmarkRule) -> Result<(), ConfigError> {
        FwmarkMatch::new(r).map(|_| ())
    }

    /// Settings and real servers' values (none twice), without routes.
    fn service_values(&self, svc: &Service) -> Result<(), ConfigError> {
        self.settings(svc)?;
        let key = svc.key;
        let mut seen = std::collections::HashSet::with_capacity(svc.dests.len());
        for d in &svc.dests {
            if !seen.insert((d.addr, d.port)) {
                return Err(ConfigError::DuplicateDest {
                    service: key,
                    addr: d.addr,
                    port: d.port,
                });
            }
            dest_values(key, d)?;
            fullnat_dest(svc, d)?;
        }
        Ok(())
    }

    fn dest_route(&self, service: ServiceKey, d: &Dest) -> Result<Egress, ConfigError> {
        let Some(egress) = route(&self.routes, d.addr) else {
            return Err(ConfigError::NoRoute {
                service,
                addr: d.addr,
            });
        };
        if d.method == ForwardMethod::Route && egress.next_hop != d.addr {
            return Err(ConfigError::NotOnLink {
                service,
                addr: d.addr,
            });
        }
        if d.method == ForwardMethod::Tunnel && egress.tunnel_source(d.addr.is_ipv6()).is_none() {
            let name = self
                .interfaces
                .iter()
                .find(|i| i.index == egress.iface)
                .map(|i| i.name.clone())
                .unwrap_or_default();
            return Err(ConfigError::NoTunnelSource {
                service,
                addr: d.addr,
                iface: name,
            });
        }
        Ok(egress)
    }
}

/// A service's FullNAT settings on their own: local addresses of its
/// family, none twice, none that cannot be a source; TOA only where TCP
/// can be.
fn local_addresses(svc: &Service) -> Result<(), ConfigError> {
    let key = svc.key;
    if svc.local_addresses.len() > limits::MAX_LOCAL_ADDRESSES {
        return Err(ConfigError::TooMany {
            what: "local addresses in one service",
            count: svc.local_addresses.len(),
            max: limits::MAX_LOCAL_ADDRESSES as u32,
            limit: "MAX_LOCAL_ADDRESSES",
            fix: "use fewer local addresses",
        });
    }
    for (i, &addr) in svc.local_addresses.iter().enumerate() {
        let reason = if addr.is_ipv4() != key.addr.is_ipv4() {
            Some("not of the service's address family")
        } else if addr.is_unspecified()
            || addr.is_multicast()
            || addr.is_loopback()
            || addr == IpAddr::V4(Ipv4Addr::BROADCAST)
        {
            Some("not a unicast address the real servers can answer")
        } else if svc.local_addresses[..i].contains(&addr) {
            Some("listed twice")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(ConfigError::LocalAddress {
                service: key,
                addr,
                reason,
            });
        }
    }
    if svc.toa && !key.is_fwmark() && key.protocol != Protocol::Tcp {
        return Err(ConfigError::FullNat {
            service: key,
            reason: "toa is a TCP option; drop it from a UDP or SCTP service",
        });
    }
    Ok(())
}

/// A FullNAT real server needs its service's local addresses, and a
/// connection to answer through (not `-o`).
fn fullnat_dest(svc: &Service, d: &Dest) -> Result<(), ConfigError> {
    if d.method != ForwardMethod::FullNat {
        return Ok(());
    }
    if svc.local_addresses.is_empty() {
        return Err(ConfigError::NoLocalAddress {
            service: svc.key,
            addr: d.addr,
        });
    }
    if svc.one_packet {
        return Err(ConfigError::FullNat {
            service: svc.key,
            reason: "one-packet scheduling (-o) tracks no connection, which a FullNAT reply needs; drop -o or use NAT",
        });
    }
    Ok(())
}

/// A real server's own values, as its service's key allows them.
fn dest_values(key: ServiceKey, d: &Dest) -> Result<(), ConfigError> {
    if d.weight > i32::MAX as u32 {
        return Err(ConfigError::WeightRange {
            service: key,
            addr: d.addr,
            weight: d.weight,
        });
    }
    if d.upper_threshold != 0 && d.lower_threshold > d.upper_threshold {
        return Err(ConfigError::ThresholdOrder {
            service: key,
            addr: d.addr,
            lower: d.lower_threshold,
            upper: d.upper_threshold,
        });
    }
    if d.addr.is_ipv4() != key.addr.is_ipv4() {
        return Err(ConfigError::FamilyMismatch {
            service: key,
            addr: d.addr,
        });
    }
    let tunnel_error = if d.method != ForwardMethod::Tunnel && d.tunnel != Tunnel::Ipip {
        Some(TunnelError::NotTunnelMethod)
    } else {
        d.tunnel.validate().err()
    };
    if let Some(reason) = tunnel_error {
        return Err(ConfigError::Tunnel {
            service: key,
            addr: d.addr,
            reason,
        });
    }
    if !d.method.translates() && d.port != key.port {
        return Err(ConfigError::PortMapping {
            service: key,
            addr: d.addr,
            port: d.port,
            service_port: key.port,
            method: d.method.name(),
        });
    }
    Ok(())
}

/// Longest-prefix-match lookup in `routes` (longest first; allocation-free,
/// used per NAT reply).
fn route(routes: &[RouteEntry], addr: IpAddr) -> Option<Egress> {
    let (bits, v6) = addr_bits(addr);
    let entry = routes
        .iter()
        .find(|r| r.v6 == v6 && bits & r.mask == r.net)?;
    Some(Egress {
        iface: entry.iface,
        mac: entry.mac,
        mtu: entry.mtu,
        next_hop: entry.gateway.unwrap_or(addr),
        source_v4: entry.source_v4,
        source_v6: entry.source_v6,
    })
}

impl Snapshot {
    /// Validates `config` and prepares it for the engine; any error refuses
    /// the whole configuration, as does one the XDP program's maps cannot
    /// hold ([`crate::limits`]).
    pub fn new(config: Config) -> Result<Arc<Snapshot>, ConfigError> {
        let validator = Validator::new(&config)?;
        let services = &config.services;
        let mut service_index = HashMap::with_capacity(services.len());
        let mut dest_egress = Vec::with_capacity(services.len());
        for (si, svc) in services.iter().enumerate() {
            validator.service_values(svc)?;
            if service_index.insert(svc.key, si).is_some() {
                return Err(ConfigError::DuplicateService(svc.key));
            }
            let egress = svc
                .dests
                .iter()
                .map(|d| validator.dest_route(svc.key, d))
                .collect::<Result<Vec<_>, _>>()?;
            dest_egress.push(egress);
        }
        let fwmark_rules = config
            .fwmarks
            .iter()
            .map(FwmarkMatch::new)
            .collect::<Result<Vec<_>, _>>()?;
        let steering = crate::classify::steering(&config.services, &fwmark_rules)?;
        Ok(Arc::new(Snapshot {
            config,
            service_index,
            routes: validator.routes,
            dest_egress,
            fwmark_rules,
            steering,
        }))
    }

    /// The configuration this snapshot was built from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The firewall mark RVS's classifier gives a packet (0 = none).
    pub fn classify(&self, protocol: u8, dst: IpAddr, dport: u16) -> u32 {
        crate::classify::mark(&self.fwmark_rules, protocol, dst, dport)
    }

    /// What the XDP program must steer to the engine for this
    /// configuration, from the classifier's own rules (see
    /// [`crate::Steering`]); it fits the maps.
    pub fn steering(&self) -> Steering {
        self.steering.clone()
    }

    /// Index of a service in `config().services`.
    pub fn service_position(&self, key: &ServiceKey) -> Option<usize> {
        self.service_index.get(key).copied()
    }

    pub(crate) fn dest_egress(&self, service: usize, dest: usize) -> Option<Egress> {
        self.dest_egress.get(service)?.get(dest).copied()
    }

    /// An interface by index.
    pub fn interface(&self, index: IfIndex) -> Option<&Interface> {
        self.config.interfaces.iter().find(|i| i.index == index)
    }

    /// Longest-prefix-match route lookup (allocation-free, used per NAT reply).
    pub(crate) fn route(&self, addr: IpAddr) -> Option<Egress> {
        route(&self.routes, addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{MAX_CONNECTIONS, MAX_INTERFACES, MAX_SERVICES, MAX_VIPS};

    #[test]
    fn defense_modes_and_rate_are_checked() {
        assert_eq!(Snapshot::new(Config::default()).map(|_| ()), Ok(()));
        for (which, value) in [(0, 4u8), (1, 9), (2, 255)] {
            let mut cfg = Config::default();
            let key = match which {
                0 => &mut cfg.defense.drop_entry,
                1 => &mut cfg.defense.drop_packet,
                _ => &mut cfg.defense.secure_tcp,
            };
            *key = value;
            let err = Snapshot::new(cfg).unwrap_err();
            assert!(matches!(err, ConfigError::DefenseMode { value: v, .. } if v == value));
            assert!(err.to_string().contains("not a mode"), "{err}");
        }
        let mut cfg = Config::default();
        cfg.defense.am_droprate = 0;
        assert_eq!(Snapshot::new(cfg).unwrap_err(), ConfigError::ZeroDropRate);
        let cfg = Config {
            defense: Defense {
                drop_entry: 3,
                drop_packet: 2,
                secure_tcp: 1,
                amemthresh: 0,
                am_droprate: 1,
            },
            ..Config::default()
        };
        assert!(Snapshot::new(cfg).is_ok());
    }

    fn v4(i: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))
    }

    fn tcp(addr: IpAddr, port: u16) -> Service {
        Service::new(ServiceKey::new(Protocol::Tcp, addr, port), "rr")
    }

    #[test]
    fn as_many_vips_as_the_map_holds_and_not_one_more() {
        let mut cfg = Config {
            services: (0..MAX_VIPS).map(|i| tcp(v4(i), 80)).collect(),
            ..Config::default()
        };
        let snap = Snapshot::new(cfg.clone()).expect("exactly MAX_VIPS");
        assert_eq!(snap.steering().vips.len(), MAX_VIPS as usize);
        cfg.services.push(tcp(v4(MAX_VIPS), 80));
        let e = Snapshot::new(cfg).unwrap_err().to_string();
        assert!(
            e.starts_with("65537 virtual addresses, but the XDP filter holds at most 65536 (MAX_VIPS); remove services"),
            "{e}"
        );
    }

    #[test]
    fn as_many_service_keys_as_the_map_holds_and_not_one_more() {
        // Two VIPs, both protocols, every port but 0: 4 × 65,535 keys.
        let key = |i: u32| {
            let port = (i % 65_535) as u16 + 1;
            let protocol = [Protocol::Tcp, Protocol::Udp][(i / 65_535 % 2) as usize];
            ServiceKey::new(protocol, v4(i / (2 * 65_535)), port)
        };
        let mut cfg = Config {
            services: (0..MAX_SERVICES)
                .map(|i| Service::new(key(i), "rr"))
                .collect(),
            ..Config::default()
        };
        Snapshot::new(cfg.clone()).expect("exactly MAX_SERVICES");
        cfg.services.push(Service::new(key(MAX_SERVICES), "rr"));
        let e = Snapshot::new(cfg).unwrap_err().to_string();
        assert!(
            e.starts_with("131073 service keys (") && e.contains("at most 131072 (MAX_SERVICES)"),
            "{e}"
        );
    }

    #[test]
    fn fwmark_rules_count_every_address_protocol_and_port_they_steer() {
        let rule = |mark: u32, addr: &str, ports: Vec<u16>| FwmarkRule {
            mark,
            protocol: None,
            addr: addr.parse().unwrap(),
            prefix_len: 20,
            ports,
        };
        // One rule alone beyond the services map: refused even unused.
        let mut cfg = Config::default();
        cfg.fwmarks.push(rule(1, "10.1.0.0", (1..=17).collect()));
        let e = Snapshot::new(cfg).unwrap_err().to_string();
        assert!(
            e.contains("mark 1: 10.1.0.0/20 covers 139264 (address, protocol, port) keys")
                && e.contains("(MAX_SERVICES)"),
            "{e}"
        );
        // Rules that fit alone but not together, once in use.
        let mut cfg = Config::default();
        for m in 1..=17 {
            cfg.fwmarks.push(rule(m, &format!("10.{m}.0.0"), vec![80]));
        }
        Snapshot::new(cfg.clone()).expect("rules no service uses steer nothing");
        cfg.services = (1..=17)
            .map(|m| Service::new(ServiceKey::fwmark(m, false), "rr"))
            .collect();
        let e = Snapshot::new(cfg).unwrap_err().to_string();
        assert!(e.contains("at most 131072 (MAX_SERVICES)"), "{e}");
    }

    #[test]
    fn interfaces_and_connections_beyond_the_maps_are_refused() {
        let iface = |i: u32| Interface {
            index: IfIndex(i + 1),
            name: format!("eth{i}"),
            mac: EthernetAddress([2, 0, 0, 0, 0, i as u8]),
            addrs: Vec::new(),
            mtu: 1500,
        };
        let mut cfg = Config {
            interfaces: (0..MAX_INTERFACES).map(iface).collect(),
            max_connections: MAX_CONNECTIONS,
            ..Config::default()
        };
        Snapshot::new(cfg.clone()).expect("at the limits");
        cfg.interfaces.push(iface(MAX_INTERFACES));
        let e = Snapshot::new(cfg.clone()).unwrap_err().to_string();
        assert!(
            e.starts_with("33 interfaces, but the XDP filter holds at most 32 (MAX_INTERFACES)"),
            "{e}"
        );
        cfg.interfaces.pop();
        cfg.max_connections = MAX_CONNECTIONS + 1;
        let e = Snapshot::new(cfg).unwrap_err().to_string();
        assert!(e.contains("use at most 67108864 (MAX_CONNECTIONS)"), "{e}");
    }

    #[test]
    fn fast_path_slots_outside_the_limits_are_refused() {
        for ok in [None, Some(1024), Some(3000), Some(1 << 26)] {
            let cfg = Config {
                fast_path_slots: ok,
                ..Config::default()
            };
            Snapshot::new(cfg).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        }
        for bad in [0, 1023, (1 << 26) + 1] {
            let cfg = Config {
                fast_path_slots: Some(bad),
                ..Config::default()
            };
            let e = Snapshot::new(cfg).unwrap_err().to_string();
            assert_eq!(
                e,
                format!("fast_path_slots = {bad}: use 1024 to 67108864 (64 bytes each)")
            );
        }
    }

    #[test]
    fn the_validator_checks_parts_as_snapshot_new_checks_the_whole() {
        let cfg = Config {
            interfaces: vec![Interface {
                index: IfIndex(2),
                name: "back".into(),
                mac: EthernetAddress([2, 0, 0, 0, 0, 2]),
                addrs: vec![(v4(0x0200), 24)],
                mtu: 1500,
            }],
            ..Config::default()
        };
        let v = Validator::new(&cfg).unwrap();
        let mut svc = tcp(v4(0x6401), 80);
        svc.scheduler = "xyz".into();
        let whole = |svc: &Service| {
            let mut c = cfg.clone();
            c.services = vec![svc.clone()];
            Snapshot::new(c).map(|_| ())
        };
        assert_eq!(v.settings(&svc), whole(&svc));
        assert!(v.settings(&svc).is_err());
        svc.scheduler = "rr".into();
        let near = Dest::new(v4(0x020b), 80, ForwardMethod::Route);
        let far = Dest::new(v4(0x0900), 80, ForwardMethod::Route);
        assert_eq!(v.dest(svc.key, &near), Ok(()));
        let e = v.dest(svc.key, &far).unwrap_err();
        svc.dests = vec![near.clone(), far];
        assert_eq!(Err(e), whole(&svc));
        assert_eq!(v.service(&svc), whole(&svc));
        svc.dests = vec![near.clone(), near];
        assert!(matches!(
            v.service(&svc),
            Err(ConfigError::DuplicateDest { .. })
        ));
        assert_eq!(v.service(&svc), whole(&svc));
    }

    #[test]
    fn shared_protocol_numbers_are_the_wire_s() {
        use rvs_wire::ip_proto;
        assert_eq!(Protocol::Tcp.number(), ip_proto::TCP);
        assert_eq!(Protocol::Udp.number(), ip_proto::UDP);
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    /// The next hop the snapshot picks for `addr` with `routes` on one
    /// interface holding 10.1.0.2/24 and fd01::2/64.
    fn next_hop(routes: &[(&str, u8, Option<&str>)], addr: &str) -> Option<IpAddr> {
        let config = Config {
            interfaces: vec![Interface {
                index: IfIndex(7),
                name: "eth1".into(),
                mac: EthernetAddress([2, 0, 0, 0, 0, 7]),
                addrs: vec![(ip("10.1.0.2"), 24), (ip("fd01::2"), 64)],
                mtu: 1500,
            }],
            routes: routes
                .iter()
                .map(|&(dst, prefix_len, gw)| Route {
                    dst: ip(dst),
                    prefix_len,
                    egress: IfIndex(7),
                    gateway: gw.map(ip),
                })
                .collect(),
            ..Config::default()
        };
        let snap = Snapshot::new(config).expect("valid configuration");
        snap.route(ip(addr)).map(|e| e.next_hop)
    }

    /// The kernel's choice: longest prefix, then the first route of that
    /// prefix in the table's order; an interface's connected network only
    /// when no listed route has its prefix length.
    #[test]
    fn routes_are_chosen_as_the_kernel_chooses() {
        let on_link = Some(ip("10.1.0.9"));
        assert_eq!(next_hop(&[], "10.1.0.9"), on_link, "connected network");
        assert_eq!(next_hop(&[], "10.2.0.9"), None, "no route");
        let default = ("0.0.0.0", 0, Some("10.1.0.1"));
        assert_eq!(
            next_hop(&[default], "10.1.0.9"),
            on_link,
            "a longer connected prefix beats the default route"
        );
        assert_eq!(next_hop(&[default], "10.2.0.9"), Some(ip("10.1.0.1")));
        // A gateway route replacing the connected route, or preferred to it
        // by its metric (listed first), wins the tie.
        assert_eq!(
            next_hop(&[("10.1.0.0", 24, Some("10.1.0.254"))], "10.1.0.9"),
            Some(ip("10.1.0.254"))
        );
        assert_eq!(
            next_hop(
                &[("fd01::", 64, Some("fd01::fe")), ("fd01::", 64, None)],
                "fd01::9"
            ),
            Some(ip("fd01::fe"))
        );
        // The connected route listed first (a lower metric) keeps it on-link.
        assert_eq!(
            next_hop(
                &[("fd01::", 64, None), ("fd01::", 64, Some("fd01::fe"))],
                "fd01::9"
            ),
            Some(ip("fd01::9"))
        );
        // On-link routes (no gateway) beyond the connected networks.
        assert_eq!(
            next_hop(&[default, ("10.9.0.0", 16, None)], "10.9.3.4"),
            Some(ip("10.9.3.4"))
        );
        // A more specific route through a gateway beats the connected /24.
        assert_eq!(
            next_hop(&[("10.1.0.128", 25, Some("10.1.0.1"))], "10.1.0.200"),
            Some(ip("10.1.0.1"))
        );
    }
}
