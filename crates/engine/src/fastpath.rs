//! The fast path, as the engine describes it: what the XDP program must do
//! with the frames of each tracked connection, emitted as values.
//!
//! The engine stays the one authority. It decides every new flow and every
//! state change on the frames that reach it (first packets, SYN/FIN/RST, any
//! frame the XDP program does not fully understand), and tells the datapath
//! what the XDP program may do on its own with [`FastPathOp`]s, which the
//! caller drains with [`crate::Engine::poll_fast_path`] and applies to the
//! BPF maps before it transmits the batch the ops came from. The engine does
//! no I/O: it never sees the maps, only values in and out.
//!
//! Every direction of a tracked connection has one [`FastKey`] in the
//! connection map, whether the XDP program may forward it
//! ([`FastAction::Forward`]) or must hand it to the engine
//! ([`FastAction::ToEngine`]): that is how the XDP program knows a frame is
//! part of a tracked connection and never swallows anything else. An entry
//! forwards only the segments on which the slow path would change nothing
//! but timers and counters ([`TcpSegments`]): the ACKs of an ESTABLISHED or
//! closing TCP connection, a NAT server's SYN+ACK while the connection is
//! in SYN_RECV, every UDP datagram. Every other segment goes to the engine.
//!
//! Next hops are an indirection (an adjacency table): an entry names a
//! [`NextHopId`], whose interface and MACs the engine sets with
//! [`FastPathOp::SetNextHop`] and changes in one op when the neighbour
//! changes, however many connections use it. Traffic counters are kept by
//! the XDP program per destination slot ([`DestSlot`]) and folded back into
//! the engine's statistics with [`crate::Engine::fold_fast_path_counters`];
//! last-seen times per entry drive expiry through
//! [`FastPathOp::ReadActivity`] and [`crate::Engine::fast_path_activity`].

use std::net::{IpAddr, Ipv4Addr};

use rvs_wire::EthernetAddress;

use crate::verdict::IfIndex;

/// The sizes of the next-hop and destination tables (defined with every
/// other size of the data path in [`crate::limits`]).
pub use crate::limits::{MAX_DEST_SLOTS, MAX_NEXT_HOPS};

/// Index of a next hop in the datapath's next-hop table, `< MAX_NEXT_HOPS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NextHopId(pub u32);

/// Index of a real server's counters in the datapath, `< MAX_DEST_SLOTS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DestSlot(pub u32);

/// One direction of a tracked connection as the XDP program matches it: the
/// packet's own protocol, source and destination on the wire (for NAT the
/// reply direction has its own key: real server → client).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FastKey {
    /// IP protocol number (TCP 6, UDP 17).
    pub proto: u8,
    /// Source address (same family as `daddr`).
    pub saddr: IpAddr,
    /// Source port.
    pub sport: u16,
    /// Destination address.
    pub daddr: IpAddr,
    /// Destination port.
    pub dport: u16,
}

/// What the XDP program does with the frames of one [`FastKey`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FastAction {
    /// Hand every frame to the engine (AF_XDP): the connection is in a state
    /// the engine must see each packet of, or the fast path is switched off.
    ToEngine,
    /// Rewrite and send frames without the engine.
    Forward(FastForward),
}

/// How the XDP program forwards the frames of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FastForward {
    /// The method-specific rewrite.
    pub rewrite: Rewrite,
    /// Where the frame goes: interface and both MACs.
    pub next_hop: NextHopId,
    /// Which TCP segments the XDP program forwards (ignored for UDP); the
    /// others go to the engine.
    pub segments: TcpSegments,
    /// Counters to add the frame to (client → server frames count as "in",
    /// [`Rewrite::MasqOut`] and [`Rewrite::FullNatOut`] frames as "out"; bytes are IP bytes before any
    /// encapsulation, as the engine counts them).
    pub dest: DestSlot,
}

/// A set of TCP segment classes, as IPVS's state table classes a segment
/// by its flags: RST if set, else SYN, else FIN, else ACK (a segment with
/// none of them is in no class: it closes the connection, so the engine
/// must see it). An entry forwards a segment only if its class is in the
/// set: exactly those on which the engine's table, in the connection's
/// state and the entry's direction, would leave the state as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpSegments(u8);

impl TcpSegments {
    /// No TCP segment.
    pub const NONE: Self = Self(0);
    /// SYN set, RST not (a SYN+ACK too).
    pub const SYN: Self = Self(1 << 0);
    /// FIN set, SYN and RST not.
    pub const FIN: Self = Self(1 << 1);
    /// ACK set, SYN, FIN and RST not.
    pub const ACK: Self = Self(1 << 2);
    /// RST set.
    pub const RST: Self = Self(1 << 3);
    /// Not a TCP class: on an SCTP entry, the packets whose first chunk
    /// IPVS classes as its DATA event (every chunk type but INIT, INIT
    /// ACK, ABORT, the SHUTDOWNs, ERROR and the COOKIEs).
    pub const SCTP_DATA: Self = Self(1 << 4);

    /// The set as the XDP program's entry stores it (bit `1 << class`,
    /// classes in the kernel's row order syn, fin, ack, rst).
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// The set of `bits`; unknown bits are dropped.
    pub const fn from_bits(bits: u8) -> Self {
        Self(bits & 0x1f)
    }

    /// Both sets.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Whether every class of `other` is in the set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

/// The rewrite of one forwarding method, as its transmitter in `fwd/` does
/// it on the slow path. The output frame must be byte for byte what the
/// engine would have produced; a frame the XDP program cannot treat exactly
/// so (IPv4 options, a bad IPv4 header checksum, a TTL about to run out, a
/// packet too big for the tunnel, an unknown next hop) goes to the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rewrite {
    /// Direct routing: only the MACs change (source = the egress interface's,
    /// destination = the real server's).
    Route {
        /// The real server. The frame does not carry it; the map entry
        /// does, so that a successor rvsd can adopt the connection
        /// (docs/rvsd.md, "Restart and upgrade").
        server: IpAddr,
    },
    /// NAT, client → real server: the destination address and port become
    /// these; IPv4 header and TCP/UDP checksums updated incrementally
    /// (RFC 1624; a UDP checksum of 0 stays 0, a result of 0 is written
    /// 0xffff). TTL / hop limit unchanged.
    MasqIn {
        /// Real server address.
        addr: IpAddr,
        /// Real server port.
        port: u16,
    },
    /// NAT, real server → client: TTL / hop limit decremented first (frames
    /// arriving with 1 or 0 go to the engine), then the source becomes the
    /// virtual address and port, checksums as for [`Rewrite::MasqIn`].
    MasqOut {
        /// Virtual address.
        addr: IpAddr,
        /// Virtual port.
        port: u16,
    },
    /// FullNAT, client → real server: the source becomes the local address
    /// and port, the destination the real server's; checksums as for
    /// [`Rewrite::MasqIn`], TTL / hop limit unchanged.
    FullNatIn {
        /// Local address.
        src: IpAddr,
        /// Local port.
        src_port: u16,
        /// Real server address.
        dst: IpAddr,
        /// Real server port.
        dst_port: u16,
    },
    /// FullNAT, real server → client: TTL / hop limit decremented first
    /// (as for [`Rewrite::MasqOut`]), then the source becomes the virtual
    /// address and port and the destination the client's.
    FullNatOut {
        /// Virtual address.
        src: IpAddr,
        /// Virtual port.
        src_port: u16,
        /// Client address.
        dst: IpAddr,
        /// Client port.
        dst_port: u16,
    },
    /// A tunnel: an outer IPv4 header `src` → `dst` between the L2 header
    /// and the inner packet (Ethernet padding dropped), and `encap`'s
    /// header after it. Outer fields: TOS and DF copied from the inner
    /// header, identification 0 when DF is set (as the kernel's
    /// `ip_select_ident` does) and the inner packet's identification
    /// otherwise, TTL 64, protocol 4 (IPIP), 17 (GUE) or 47 (GRE), full
    /// header checksum. A frame whose inner total length plus the overhead
    /// (20 plus [`TunnelEncap::len`]) exceeds `mtu` goes to the engine
    /// (which answers "fragmentation needed" or fragments it).
    Tunnel {
        /// Outer source: the director's address on the egress interface.
        src: Ipv4Addr,
        /// Outer destination: the real server.
        dst: Ipv4Addr,
        /// MTU of the egress interface.
        mtu: u16,
        /// What follows the outer header.
        encap: TunnelEncap,
    },
    /// A tunnel over IPv6, for an IPv6 connection: as [`Rewrite::Tunnel`]
    /// with an outer IPv6 header `src` → `dst` (traffic class copied from
    /// the inner header, flow label 0, hop limit 64, next header 41, 17 or
    /// 47). The overhead is 40 plus [`TunnelEncap::len`] against `mtu`.
    Tunnel6 {
        /// Outer source: the director's global address on the egress
        /// interface.
        src: std::net::Ipv6Addr,
        /// Outer destination: the real server.
        dst: std::net::Ipv6Addr,
        /// MTU of the egress interface.
        mtu: u16,
        /// What follows the outer header.
        encap: TunnelEncap,
    },
}

/// The header a fast-path tunnel writes after the outer IP header.
///
/// A GUE or GRE checksum (`--tun-csum`, `--tun-remcsum`) is filled from
/// the headers alone, as the kernel's local checksum offload does: a TCP
/// or UDP segment whose checksum is right sums to the complement of its
/// pseudo-header, so the inner packet's sum needs no pass over its
/// payload. That equals the engine's sum over the bytes for every packet
/// whose checksums are right; the program hands the rest of the cases
/// (UDP without a checksum, SCTP) to the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TunnelEncap {
    /// IPIP: nothing.
    Ipip,
    /// UDP `src_port` → `dst_port`, then GUE version 0 with protocol 4
    /// (IPv6: 41), the engine's header byte for byte: it chose the source
    /// port from the flow's hash.
    Gue {
        /// UDP source port.
        src_port: u16,
        /// The real server's GUE port.
        dst_port: u16,
        /// The UDP checksum is filled (else 0).
        checksum: bool,
    },
    /// GRE version 0 with EtherType 0x0800 (IPv6: 0x86dd).
    Gre {
        /// The checksum flag is set and the checksum follows (8 bytes, else 4).
        checksum: bool,
    },
}

impl TunnelEncap {
    /// Bytes between the outer IP header and the inner packet.
    pub const fn len(self) -> usize {
        match self {
            TunnelEncap::Ipip => 0,
            TunnelEncap::Gue { .. } => 12,
            TunnelEncap::Gre { checksum: false } => 4,
            TunnelEncap::Gre { checksum: true } => 8,
        }
    }

    /// Whether nothing is written between the headers (IPIP).
    pub const fn is_empty(self) -> bool {
        matches!(self, TunnelEncap::Ipip)
    }
}

/// An entry of the next-hop table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextHop {
    /// Interface to send on (XDP_TX when it is the one the frame came in on).
    pub iface: IfIndex,
    /// Source MAC: the egress interface's.
    pub src_mac: EthernetAddress,
    /// Destination MAC: the real server's, the client's or a gateway's.
    pub dst_mac: EthernetAddress,
}

/// Traffic the XDP program forwarded for one destination slot, summed over
/// CPUs since the slot was last reset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DestCounters {
    /// Frames client → server.
    pub in_packets: u64,
    /// IP bytes client → server.
    pub in_bytes: u64,
    /// Frames server → client (NAT).
    pub out_packets: u64,
    /// IP bytes server → client.
    pub out_bytes: u64,
}

/// One change the datapath must make to the XDP program's maps, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FastPathOp {
    /// Insert or replace the entry for `key`.
    Upsert {
        /// The direction of a connection.
        key: FastKey,
        /// What to do with its frames.
        action: FastAction,
    },
    /// Delete the entry for `key` (absent is fine).
    Remove {
        /// The direction of a connection.
        key: FastKey,
    },
    /// Set a next hop; `None` makes every entry using it hand its frames to
    /// the engine (the MAC is not known: the engine asks the kernel).
    SetNextHop {
        /// The slot.
        id: NextHopId,
        /// Interface and MACs, if known.
        hop: Option<NextHop>,
    },
    /// A destination slot is taken by a new real server: zero its counters.
    ResetDest {
        /// The slot.
        slot: DestSlot,
    },
    /// Read when the XDP program last forwarded a frame of `key` (and of
    /// `reply`, the NAT reply direction, if any) and answer with
    /// [`crate::Engine::fast_path_activity`]: the connection is due to
    /// expire unless it saw traffic the engine did not.
    ReadActivity {
        /// The client → virtual direction (identifies the connection).
        key: FastKey,
        /// The reply direction of a NAT connection.
        reply: Option<FastKey>,
    },
}
