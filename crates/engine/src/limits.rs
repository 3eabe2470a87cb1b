//! The data path's size limits, each defined once, here.
//!
//! The XDP program keeps what it steers and forwards in BPF maps of fixed
//! size. Every size is one constant of this file, used three ways:
//! [`crate::Snapshot::new`] refuses a configuration that would not fit (so
//! nothing of it is applied), the datapath's loader sizes the maps from it,
//! and the datapath's build script hands it to the C compiler for the
//! program's own bounds (`bpf/rvs_xdp.c` has no number of its own).
//!
//! This file must stay plain constants without `use`: the build script of
//! `rvs-datapath` compiles it on its own.

/// Interfaces one XDP program serves (its `ifaces` and `tx_ports` maps; the
/// program's interface slots).
pub const MAX_INTERFACES: u32 = 32;

/// RX queues per interface whose frames the program can hand to AF_XDP
/// sockets (`xsks` holds slot × this + queue).
pub const MAX_QUEUES_PER_INTERFACE: u32 = 256;

/// Entries of the `services` map: every (address, protocol, port) whose
/// first packets go to the engine — one per address-based service, and one
/// per address, protocol and port a firewall-mark rule in use covers.
/// Large enough for a 100,000-service restore; the map is not preallocated,
/// so its memory follows its use.
pub const MAX_SERVICES: u32 = 1 << 17;

/// Entries of the `vip_addrs` map: distinct virtual addresses, those of
/// address-based services and every address a firewall-mark rule in use
/// covers. Not preallocated either.
pub const MAX_VIPS: u32 = 1 << 16;

/// Next-hop slots the datapath must provide (size of its next-hop table).
/// The first [`MAX_DEST_SLOTS`] belong to real servers (next hop id = the
/// server's destination slot); the rest are the routes NAT replies take to
/// clients, shared by every connection behind the same gateway.
pub const MAX_NEXT_HOPS: u32 = 65_536;

/// Destination counter slots the datapath must provide. A real server whose
/// slot would lie beyond it is never put on the fast path (it still works,
/// through the engine), so it bounds nothing an operator configures.
pub const MAX_DEST_SLOTS: u32 = 16_384;

/// The largest `max_connections`. The connection maps hold two entries per
/// connection (a NAT connection has a reply direction), and the kernel
/// refuses a hash map of more than 2^27 buckets of 16 bytes (E2BIG).
pub const MAX_CONNECTIONS: u32 = 1 << 26;

/// Distinct FullNAT local addresses in one configuration: each has a
/// bitmap of its ports in the engine (8 KiB per protocol its services
/// balance), reserved when it appears.
pub const MAX_LOCAL_ADDRESSES: usize = 1024;

/// Interfaces with an ifindex below this find their slot by array lookup
/// (the `ifslots` map), the others by hash: a size, not a limit.
pub const SMALL_IFINDEX: u32 = 1024;

/// The largest `max_fragment_datagrams` (the engine's table of fragmented
/// datagrams in flight, at most 128 bytes each: 128 MiB at most).
pub const MAX_FRAGMENT_DATAGRAMS: u32 = 1 << 20;

/// Entries of the XDP program's `frags4` map (an LRU hash): IPv4 datagrams
/// whose first fragment belonged to a tracked connection and went to the
/// engine, so that their later fragments (which carry no ports) go there
/// too rather than to the kernel. Older datagrams are evicted first; a
/// size, not a limit on what an operator configures.
pub const FRAGMENT_STEERING: u32 = 1 << 14;

/// Ways per set of the XDP program's IPv4 slot table (`conn_slots4`): a
/// set is four 64-byte slots; an entry whose set is full goes to the
/// overflow hash map instead, which costs the fast path two more cache
/// misses per frame, not correctness.
pub const CONN_WAYS: u32 = 4;

/// The fewest slots of `conn_slots4`.
pub const MIN_FAST_PATH_SLOTS: u32 = 1 << 10;

/// The most slots of `conn_slots4` (64 bytes each: 4 GiB). An array map
/// must fit the kernel's 32-bit size arithmetic.
pub const MAX_FAST_PATH_SLOTS: u32 = 1 << 26;
