//! Next-hop MAC addresses, learnt by the control plane from the kernel's
//! neighbour table (rtnetlink) and handed to the engine as a snapshot.

use std::collections::HashMap;
use std::net::IpAddr;

use ahash::RandomState;

use rvs_wire::EthernetAddress;

/// An immutable neighbour snapshot. `generation` changes with every new
/// snapshot so per-destination MAC caches know when to look again.
#[derive(Clone, Debug)]
pub struct NeighborTable {
    /// ahash: looked up per NAT reply packet; SipHash cost more than the rewrite.
    entries: HashMap<IpAddr, EthernetAddress, RandomState>,
    generation: u64,
}

impl Default for NeighborTable {
    fn default() -> Self {
        NeighborTable::new([], 0)
    }
}

impl NeighborTable {
    /// A table from `(address, MAC)` pairs; `generation` must differ from the
    /// previous table's (the control plane counts up).
    pub fn new(
        entries: impl IntoIterator<Item = (IpAddr, EthernetAddress)>,
        generation: u64,
    ) -> Self {
        let mut map = HashMap::with_hasher(RandomState::with_seeds(1, 2, 3, 4));
        map.extend(entries);
        NeighborTable {
            entries: map,
            generation,
        }
    }

    /// The MAC for `addr`, if the kernel has resolved it.
    pub fn lookup(&self, addr: IpAddr) -> Option<EthernetAddress> {
        self.entries.get(&addr).copied()
    }

    /// Snapshot generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
