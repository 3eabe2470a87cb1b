//! Fragmented datagrams, forwarded fragment by fragment without
//! reassembly (as Cilium does): the first fragment carries the ports, so it
//! is classified, scheduled and forwarded like a whole packet, and its
//! datagram — (source, destination, protocol, identification) — is recorded
//! with the connection and direction it took; every later fragment of the
//! datagram follows it to the same real server (or client). The real server
//! reassembles, as it would behind the kernel's IPVS.
//!
//! Memory is a fixed table of `max_fragment_datagrams` entries, reserved at
//! start, in buckets of [`WAYS`]: a datagram not completed within
//! [`FRAGMENT_TIMEOUT_SECS`] (the kernel's `ipfrag_time`) is forgotten; a
//! full bucket evicts its oldest entry (counted). Later fragments whose
//! first fragment was not seen (reordered before it, or evicted, or timed
//! out) are dropped and counted: without their ports nothing says where
//! they belong.

use ahash::RandomState;

use crate::conn::AddrBytes;
use crate::proto::Direction;

/// How long a datagram's fragments are expected, in seconds (the kernel's
/// `net.ipv4.ipfrag_time` default).
pub(crate) const FRAGMENT_TIMEOUT_SECS: u32 = 30;
/// Entries per bucket: a bucket is searched in full.
pub(crate) const WAYS: usize = 4;

/// Identifies a fragmented datagram (RFC 791: the fields that make the
/// identification unique).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct DatagramKey {
    pub(crate) src: AddrBytes,
    pub(crate) dst: AddrBytes,
    pub(crate) proto: u8,
    pub(crate) id: u32,
}

/// Where a datagram's fragments go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Route {
    /// The connection's index in the table.
    pub(crate) conn: u32,
    /// Client → server, or (NAT) server → client.
    pub(crate) dir: Direction,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    key: DatagramKey,
    route: Route,
    /// Engine second the entry is forgotten at; 0: free.
    expires: u32,
}

/// The fixed table of datagrams in flight.
pub(crate) struct FragTable {
    entries: Vec<Entry>,
    buckets_mask: usize,
    hasher: RandomState,
}

/// What [`FragTable::record`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// New or refreshed.
    Stored,
    /// Stored in place of the oldest entry of its full bucket.
    Evicted,
}

impl FragTable {
    /// A table of at least `capacity` entries (rounded up to whole
    /// power-of-two buckets), all memory reserved now.
    pub(crate) fn new(capacity: u32, seeds: [u64; 4]) -> Self {
        let buckets = (capacity as usize)
            .div_ceil(WAYS)
            .max(1)
            .next_power_of_two();
        let free = Entry {
            key: DatagramKey::default(),
            route: Route {
                conn: 0,
                dir: Direction::Input,
            },
            expires: 0,
        };
        FragTable {
            entries: vec![free; buckets * WAYS],
            buckets_mask: buckets - 1,
            hasher: RandomState::with_seeds(seeds[0], seeds[1], seeds[2], seeds[3]),
        }
    }

    /// Entries the table holds at most.
    pub(crate) fn capacity(&self) -> usize {
        self.entries.len()
    }

    fn bucket(&mut self, key: &DatagramKey) -> &mut [Entry] {
        let h = self.hasher.hash_one((key.src, key.dst, key.proto, key.id)) as usize;
        let b = (h & self.buckets_mask) * WAYS;
        &mut self.entries[b..b + WAYS]
    }

    /// Records where the datagram of `key` goes (its first fragment was just
    /// forwarded), until `now_s` + the timeout.
    pub(crate) fn record(&mut self, now_s: u32, key: &DatagramKey, route: Route) -> Recorded {
        let expires = now_s.saturating_add(FRAGMENT_TIMEOUT_SECS).max(1);
        let bucket = self.bucket(key);
        let live = |e: &Entry| e.expires > now_s;
        let slot = bucket
            .iter()
            .position(|e| live(e) && e.key == *key)
            .or_else(|| bucket.iter().position(|e| !live(e)));
        let (slot, outcome) = match slot {
            Some(i) => (i, Recorded::Stored),
            None => {
                let oldest = (0..WAYS).min_by_key(|&i| bucket[i].expires).unwrap_or(0);
                (oldest, Recorded::Evicted)
            }
        };
        bucket[slot] = Entry {
            key: *key,
            route,
            expires,
        };
        outcome
    }

    /// Where a later fragment of `key`'s datagram goes, if its first
    /// fragment was seen and has not timed out.
    pub(crate) fn lookup(&mut self, now_s: u32, key: &DatagramKey) -> Option<Route> {
        self.bucket(key)
            .iter()
            .find(|e| e.expires > now_s && e.key == *key)
            .map(|e| e.route)
    }

    /// Forgets the datagram (its last fragment went through).
    pub(crate) fn forget(&mut self, key: &DatagramKey) {
        if let Some(e) = self.bucket(key).iter_mut().find(|e| e.key == *key) {
            e.expires = 0;
        }
    }

    /// Datagrams currently tracked (for the listing; O(capacity)).
    pub(crate) fn live(&self, now_s: u32) -> usize {
        self.entries.iter().filter(|e| e.expires > now_s).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u32) -> DatagramKey {
        let mut src = [0u8; 16];
        src[..4].copy_from_slice(&[10, 0, 1, 2]);
        let mut dst = [0u8; 16];
        dst[..4].copy_from_slice(&[10, 0, 100, 1]);
        DatagramKey {
            src,
            dst,
            proto: 17,
            id,
        }
    }

    fn to(conn: u32) -> Route {
        Route {
            conn,
            dir: Direction::Input,
        }
    }

    #[test]
    fn a_recorded_datagram_is_found_until_it_times_out_or_is_forgotten() {
        let mut t = FragTable::new(64, [1, 2, 3, 4]);
        assert_eq!(t.record(100, &key(7), to(3)), Recorded::Stored);
        assert_eq!(t.lookup(100, &key(7)), Some(to(3)));
        assert_eq!(t.lookup(100, &key(8)), None);
        assert_eq!(
            t.lookup(100 + FRAGMENT_TIMEOUT_SECS - 1, &key(7)),
            Some(to(3))
        );
        assert_eq!(t.lookup(100 + FRAGMENT_TIMEOUT_SECS, &key(7)), None);
        t.record(200, &key(9), to(4));
        t.forget(&key(9));
        assert_eq!(t.lookup(200, &key(9)), None);
        assert_eq!(t.live(200), 0);
    }

    #[test]
    fn a_flood_stays_within_the_table_and_evicts_the_oldest() {
        let mut t = FragTable::new(64, [1, 2, 3, 4]);
        let cap = t.capacity();
        assert_eq!(cap, 64);
        let mut evicted = 0;
        for id in 0..10_000u32 {
            if t.record(100 + id / 1000, &key(id), to(id)) == Recorded::Evicted {
                evicted += 1;
            }
        }
        assert!(t.live(110) <= cap);
        assert!(evicted >= 10_000 - cap as u32, "{evicted}");
        assert_eq!(t.capacity(), cap, "no growth");
        // The newest survive.
        assert_eq!(t.lookup(109, &key(9_999)), Some(to(9_999)));
    }
}
