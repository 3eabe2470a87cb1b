//! Fragmented datagrams, forwarded fragment by fragment without
//! reassembly (as Cilium does): the first fragment carries the ports, so it
//! is classified, scheduled and forwarded like a whole packet, and its
//! datagram — (source, destination, protocol, identification) — is recorded
//! with the connection and direction it took; every later fragment of the
//! datagram follows it to the same real server (or client). The real server
//! reassembles, as it would behind the kernel's IPVS.
//!
//! Each entry also keeps which bytes of the datagram went through, as up to
//! [`PIECES`] disjoint ranges that merge as the gaps fill (in-order
//! fragments keep one range): a fragment overlapping what went through
//! (a duplicate, or an overlap attack) is dropped, as is one that would
//! need more disjoint ranges than that (too many out of order); the entry
//! is freed once the datagram is complete.
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
/// Disjoint byte ranges an entry tracks (merged as gaps fill).
pub(crate) const PIECES: usize = 6;

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
    /// Byte ranges [start, end) of the datagram that went through, sorted,
    /// disjoint and not adjacent; the first `pieces` are used.
    ranges: [(u32, u32); PIECES],
    pieces: u8,
    /// The datagram's length, once its last fragment went through; 0
    /// before.
    total: u32,
}

/// Why a later fragment does not follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Its datagram's first fragment was not seen, or timed out.
    Unknown,
    /// It overlaps bytes that went through (a duplicate or an attack).
    Overlap,
    /// Its datagram arrived in more disjoint pieces than are tracked.
    TooMany,
}

impl Entry {
    /// Marks [start, end) as through, unless it overlaps what is.
    fn cover(&mut self, start: u32, end: u32) -> Result<(), Refused> {
        let used = usize::from(self.pieces);
        let r = &mut self.ranges;
        if r[..used].iter().any(|&(a, b)| start < b && a < end) {
            return Err(Refused::Overlap);
        }
        // Insert in order, then merge neighbours that touch.
        let at = r[..used]
            .iter()
            .position(|&(a, _)| a > start)
            .unwrap_or(used);
        let touches_prev = at > 0 && r[at - 1].1 == start;
        let touches_next = at < used && r[at].0 == end;
        match (touches_prev, touches_next) {
            (true, true) => {
                r[at - 1].1 = r[at].1;
                r.copy_within(at + 1..used, at);
                self.pieces -= 1;
            }
            (true, false) => r[at - 1].1 = end,
            (false, true) => r[at].0 = start,
            (false, false) => {
                if used == PIECES {
                    return Err(Refused::TooMany);
                }
                r.copy_within(at..used, at + 1);
                r[at] = (start, end);
                self.pieces += 1;
            }
        }
        Ok(())
    }

    fn complete(&self) -> bool {
        self.total != 0 && self.pieces == 1 && self.ranges[0] == (0, self.total)
    }
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
            ranges: [(0, 0); PIECES],
            pieces: 0,
            total: 0,
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

    /// Records where the datagram of `key` goes (its first fragment, of
    /// `first_len` data bytes, was just forwarded), until `now_s` + the
    /// timeout.
    pub(crate) fn record(
        &mut self,
        now_s: u32,
        key: &DatagramKey,
        route: Route,
        first_len: u32,
    ) -> Recorded {
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
        let mut ranges = [(0, 0); PIECES];
        ranges[0] = (0, first_len);
        bucket[slot] = Entry {
            key: *key,
            route,
            expires,
            ranges,
            pieces: 1,
            total: 0,
        };
        outcome
    }

    /// Where a later fragment of `key`'s datagram goes — its data bytes
    /// [offset, offset + len), the last one unless `more` — if its first
    /// fragment was seen and has not timed out and it overlaps nothing that
    /// went through. The entry is freed once the datagram is complete.
    pub(crate) fn follow(
        &mut self,
        now_s: u32,
        key: &DatagramKey,
        offset: u32,
        len: u32,
        more: bool,
    ) -> Result<Route, Refused> {
        let e = self
            .bucket(key)
            .iter_mut()
            .find(|e| e.expires > now_s && e.key == *key)
            .ok_or(Refused::Unknown)?;
        let end = offset + len;
        if e.total != 0 && end > e.total || (!more && end < e.ranges[usize::from(e.pieces) - 1].1) {
            return Err(Refused::Overlap);
        }
        e.cover(offset, end)?;
        if !more {
            e.total = end;
        }
        let route = e.route;
        if e.complete() {
            e.expires = 0;
        }
        Ok(route)
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
    fn a_recorded_datagram_is_followed_until_it_times_out_or_completes() {
        let mut t = FragTable::new(64, [1, 2, 3, 4]);
        assert_eq!(t.record(100, &key(7), to(3), 1480), Recorded::Stored);
        assert_eq!(t.follow(100, &key(7), 1480, 1480, true), Ok(to(3)));
        assert_eq!(t.follow(100, &key(8), 1480, 8, true), Err(Refused::Unknown));
        let late = 100 + FRAGMENT_TIMEOUT_SECS;
        assert_eq!(
            t.follow(late, &key(7), 2960, 8, false),
            Err(Refused::Unknown)
        );
        // Complete: the entry goes.
        t.record(200, &key(9), to(4), 1480);
        assert_eq!(t.follow(200, &key(9), 1480, 100, false), Ok(to(4)));
        assert_eq!(t.live(200), 0);
        t.record(200, &key(10), to(4), 8);
        t.forget(&key(10));
        assert_eq!(t.live(200), 0);
    }

    #[test]
    fn out_of_order_fragments_follow_and_overlaps_are_refused() {
        let mut t = FragTable::new(64, [1, 2, 3, 4]);
        t.record(10, &key(1), to(1), 16);
        // The last before the middle: still followed, entry kept.
        assert_eq!(t.follow(10, &key(1), 48, 16, false), Ok(to(1)));
        assert_eq!(t.follow(10, &key(1), 16, 16, true), Ok(to(1)));
        // A duplicate, an overlap, bytes past the end.
        assert_eq!(t.follow(10, &key(1), 16, 16, true), Err(Refused::Overlap));
        assert_eq!(t.follow(10, &key(1), 8, 16, true), Err(Refused::Overlap));
        assert_eq!(t.follow(10, &key(1), 64, 8, true), Err(Refused::Overlap));
        assert_eq!(t.live(10), 1);
        assert_eq!(t.follow(10, &key(1), 32, 16, true), Ok(to(1)));
        assert_eq!(t.live(10), 0, "complete");
        // Too many disjoint pieces.
        t.record(10, &key(2), to(2), 8);
        for i in 1..PIECES as u32 {
            assert_eq!(t.follow(10, &key(2), i * 16, 8, true), Ok(to(2)));
        }
        assert_eq!(t.follow(10, &key(2), 1000, 8, true), Err(Refused::TooMany));
    }

    #[test]
    fn an_entry_is_at_most_128_bytes() {
        // The figure the documentation of max_fragment_datagrams gives.
        assert!(
            std::mem::size_of::<Entry>() <= 128,
            "{}",
            std::mem::size_of::<Entry>()
        );
    }

    #[test]
    fn a_flood_stays_within_the_table_and_evicts_the_oldest() {
        let mut t = FragTable::new(64, [1, 2, 3, 4]);
        let cap = t.capacity();
        assert_eq!(cap, 64);
        let mut evicted = 0;
        for id in 0..10_000u32 {
            if t.record(100 + id / 1000, &key(id), to(id), 8) == Recorded::Evicted {
                evicted += 1;
            }
        }
        assert!(t.live(110) <= cap);
        assert!(evicted >= 10_000 - cap as u32, "{evicted}");
        assert_eq!(t.capacity(), cap, "no growth");
        // The newest survive.
        assert_eq!(t.follow(109, &key(9_999), 8, 8, true), Ok(to(9_999)));
    }
}
