//! What the engine decided about one frame.

use std::net::IpAddr;

/// Identifies an interface the director sends and receives on (the kernel's
/// ifindex, so the datapath needs no translation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IfIndex(pub u32);

/// The engine's decision for one frame. The frame has been rewritten in place
/// for `Forward`, `Reply` and `Resolve`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Transmit the rewritten frame out of `egress`; both MACs are set.
    Forward {
        /// Interface to transmit on.
        egress: IfIndex,
    },
    /// The frame was refused for `cause` and replaced by an ICMP error to its
    /// sender; transmit out of `egress`, the interface it came in on. The
    /// frame is counted once, under `cause`.
    Reply {
        /// Interface to transmit on.
        egress: IfIndex,
        /// Why the frame itself was not forwarded.
        cause: DropReason,
    },
    /// The frame is rewritten but the next hop's MAC is unknown: the caller
    /// drops it (counted) and asks the kernel to resolve `next_hop`.
    Resolve {
        /// Interface the next hop is on.
        egress: IfIndex,
        /// Address whose MAC is missing.
        next_hop: IpAddr,
    },
    /// Neither a tracked connection nor a new flow of a virtual service: the
    /// kernel's business (the XDP program keeps such frames in the kernel;
    /// one reaching the engine is counted as `untracked`).
    Pass,
    /// Dropped; counted under the reason.
    Drop(DropReason),
}

macro_rules! drop_reasons {
    ($($(#[$doc:meta])* $name:ident => $label:literal,)*) => {
        /// Why a frame was dropped. Every reason has its own counter.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason {
            $($(#[$doc])* $name,)*
        }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$name,)*];
            /// Number of reasons (size of a counter array).
            pub const COUNT: usize = Self::ALL.len();

            /// Stable snake_case name for logs and metrics labels.
            pub const fn label(self) -> &'static str {
                match self { $(DropReason::$name => $label,)* }
            }

            /// Index into a counter array.
            pub const fn index(self) -> usize {
                self as usize
            }
        }
    };
}

drop_reasons! {
    /// A header was truncated or inconsistent.
    Malformed => "malformed",
    /// The IPv4 header checksum was wrong.
    BadIpChecksum => "bad_ip_checksum",
    /// A later IPv4 fragment of a datagram whose first fragment was not
    /// seen (it came later, or was evicted or timed out from the fragment
    /// table): without ports nothing says where it belongs.
    Fragment => "fragment",
    /// A fragment reaching past the 65,535 bytes of a datagram.
    FragmentOversized => "fragment_oversized",
    /// A fragment overlapping bytes of its datagram that went through
    /// already (a duplicate, or an overlap attack), or past its end.
    FragmentOverlap => "fragment_overlap",
    /// A fragment of a datagram that arrived in more disjoint pieces than
    /// the fragment table tracks (far out of order).
    FragmentTooMany => "fragment_too_many",
    /// A TCP segment without SYN for a flow the director does not track.
    NoConnection => "no_connection",
    /// The scheduler found no available real server (IPv4: answered with
    /// ICMP port unreachable).
    NoDestination => "no_destination",
    /// The connection table is at its configured maximum and holds no
    /// half-open connection to evict.
    ConnTableFull => "conn_table_full",
    /// A FullNAT connection found every port of its service's local
    /// addresses in use (IPv4: answered with ICMP port unreachable).
    LocalPortsExhausted => "local_ports_exhausted",
    /// The `drop_packet` defence dropped a packet that would have created
    /// a connection (one in `rate`).
    DefenseDropPacket => "defense_drop_packet",
    /// The frame had no room to grow (headroom) for encapsulation or a reply.
    NoHeadroom => "no_headroom",
    /// A TUN packet too big for the egress MTU without DF; fragmenting the
    /// outer packet is not supported.
    TooBig => "too_big",
    /// A TUN packet too big for the egress MTU with DF set: answered with
    /// ICMP fragmentation needed.
    FragNeeded => "frag_needed",
    /// TTL ran out on a routed (NAT reply) packet.
    TtlExceeded => "ttl_exceeded",
    /// No route to the address (no configured interface or route covers it).
    NoRoute => "no_route",
    /// The forwarding method cannot carry this address family (e.g. IPIP with IPv6).
    UnsupportedFamily => "unsupported_family",
    /// An ICMP error sent to a VIP about no tracked connection: never
    /// relayed to a real server blindly.
    IcmpNoConnection => "icmp_no_connection",
    /// An ICMP error the director cannot relay: its quote is cut short or
    /// not a TCP/UDP packet.
    IcmpUnrelayable => "icmp_unrelayable",
}
