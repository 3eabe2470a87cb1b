//! The per-destination-address table shared by lblc and lblcr
//! (`ip_vs_lblc_table` / `ip_vs_lblcr_table`): 1024 hash buckets of entries
//! keyed by the packet's destination address, each with a last-use time, and
//! the kernel's garbage collection.
//!
//! The kernel collects with a timer every 60 s: every 30th run is a full
//! check dropping entries unused for `lblc[r]_expiration` (24 h); between
//! those, only when the table holds more than 16 × 1024 entries, a partial
//! check drops entries unused for 6 minutes, bucket by bucket from a rover,
//! until it removed (entries − max) × 4/3 (at most max/2). We have no timer:
//! [`Table::run_timers`] replays the runs that fell due before `now` at their
//! own times, so the outcome is the kernel's, only observed at the next
//! schedule.

use core::time::Duration;
use std::net::IpAddr;

use super::{addr_fold, hash_32};
use crate::time::Time;

/// `CHECK_EXPIRE_INTERVAL`.
const CHECK_EXPIRE_INTERVAL: Duration = Duration::from_secs(60);
/// `ENTRY_TIMEOUT`: idle time after which a partial check may drop an entry.
const ENTRY_TIMEOUT: Duration = Duration::from_secs(6 * 60);
/// `DEFAULT_EXPIRATION`: the sysctls `lblc_expiration` / `lblcr_expiration`.
pub(super) const DEFAULT_EXPIRATION: Duration = Duration::from_secs(24 * 60 * 60);
/// `COUNT_FOR_FULL_EXPIRATION`.
const COUNT_FOR_FULL_EXPIRATION: u64 = 30;
/// `CONFIG_IP_VS_LBLC_TAB_BITS` / `..._LBLCR_TAB_BITS` default.
const TAB_BITS: u32 = 10;
const TAB_SIZE: usize = 1 << TAB_BITS;
/// `tbl->max_size`.
const MAX_SIZE: u64 = TAB_SIZE as u64 * 16;

/// One destination address and what it maps to.
#[derive(Debug, Clone)]
pub(super) struct Entry<V> {
    /// The packet destination address this entry is for.
    pub(super) addr: IpAddr,
    /// Last time a new connection looked it up.
    pub(super) lastuse: Time,
    /// The server (lblc) or server set (lblcr).
    pub(super) value: V,
}

/// The table and its collection state.
#[derive(Debug, Clone)]
pub(super) struct Table<V> {
    buckets: Vec<Vec<Entry<V>>>,
    /// The kernel's `entries` counter (see [`Table::replace`] for why it may
    /// exceed the real count).
    entries: u64,
    rover: usize,
    counter: u64,
    /// When the next collection run is due; set at the first use.
    next_check: Option<Time>,
    /// `lblc[r]_expiration`.
    expiration: Duration,
    /// No entry was used before this (lower bound): full checks before
    /// `min_lastuse + expiration` cannot drop anything.
    min_lastuse: Option<Time>,
}

impl<V> Table<V> {
    pub(super) fn new(expiration: Duration) -> Self {
        Table {
            buckets: (0..TAB_SIZE).map(|_| Vec::new()).collect(),
            entries: 0,
            rover: 0,
            counter: 1,
            next_check: None,
            expiration,
            min_lastuse: None,
        }
    }

    fn bucket(addr: &IpAddr) -> usize {
        hash_32(addr_fold(addr), TAB_BITS) as usize
    }

    /// The kernel's entry counter.
    #[cfg(test)]
    pub(super) fn entries(&self) -> u64 {
        self.entries
    }

    /// The entry for `addr`, if any.
    pub(super) fn get_mut(&mut self, addr: &IpAddr) -> Option<&mut Entry<V>> {
        self.buckets[Self::bucket(addr)]
            .iter_mut()
            .find(|e| e.addr == *addr)
    }

    /// A new entry (the caller checked there is none).
    pub(super) fn insert(&mut self, addr: IpAddr, now: Time, value: V) {
        self.buckets[Self::bucket(&addr)].push(Entry {
            addr,
            lastuse: now,
            value,
        });
        self.entries += 1;
        self.min_lastuse = Some(self.min_lastuse.map_or(now, |m| m.min(now)));
    }

    /// lblc's `ip_vs_lblc_new` over an existing entry: unlinks the old one
    /// *without* decrementing the counter (`ip_vs_lblc_del` does not), then
    /// inserts a fresh one, which increments it. Kept as the kernel does it:
    /// the counter decides when partial collections run.
    pub(super) fn replace(&mut self, addr: IpAddr, now: Time, value: V) {
        self.buckets[Self::bucket(&addr)].retain(|e| e.addr != addr);
        self.insert(addr, now, value);
    }

    /// Runs the collection timer for every minute that elapsed up to `now`.
    pub(super) fn run_timers(&mut self, now: Time) {
        let interval = CHECK_EXPIRE_INTERVAL.as_nanos() as u64;
        let mut next = *self.next_check.get_or_insert(now + CHECK_EXPIRE_INTERVAL);
        while next <= now {
            if !self.counter.is_multiple_of(COUNT_FOR_FULL_EXPIRATION) && self.entries <= MAX_SIZE {
                // Runs that only count up to the next full check: skip them
                // in one step.
                let to_full = COUNT_FOR_FULL_EXPIRATION - self.counter % COUNT_FOR_FULL_EXPIRATION;
                let due = (now.as_nanos() - next.as_nanos()) / interval + 1;
                let k = to_full.min(due);
                self.counter += k;
                next = Time::from_nanos(next.as_nanos().saturating_add(k * interval));
                continue;
            }
            self.check_expire(next);
            next = next + CHECK_EXPIRE_INTERVAL;
        }
        self.next_check = Some(next);
    }

    /// One timer run at time `t` (`ip_vs_lblc[r]_check_expire`).
    fn check_expire(&mut self, t: Time) {
        if self.counter.is_multiple_of(COUNT_FOR_FULL_EXPIRATION) {
            self.full_check(t);
            self.counter = 1;
            return;
        }
        if self.entries <= MAX_SIZE {
            self.counter += 1;
            return;
        }
        let mut goal = ((self.entries - MAX_SIZE) * 4 / 3).min(MAX_SIZE / 2) as i64;
        let mut j = self.rover;
        for _ in 0..TAB_SIZE {
            j = (j + 1) % TAB_SIZE;
            let removed = Self::drop_idle(&mut self.buckets[j], t, ENTRY_TIMEOUT);
            self.entries = self.entries.saturating_sub(removed);
            goal -= removed as i64;
            if goal <= 0 {
                break;
            }
        }
        self.rover = j;
        self.recompute_min();
    }

    /// `ip_vs_lblc[r]_full_check`: every bucket, the rover ends where it was.
    fn full_check(&mut self, t: Time) {
        if self.min_lastuse.is_some_and(|m| t < m + self.expiration) {
            return; // nothing old enough
        }
        for b in 0..TAB_SIZE {
            let removed = Self::drop_idle(&mut self.buckets[b], t, self.expiration);
            self.entries = self.entries.saturating_sub(removed);
        }
        self.recompute_min();
    }

    /// Drops the entries of a bucket unused for `idle` at `t` (kept while
    /// `t < lastuse + idle`, the kernel's `time_before`).
    fn drop_idle(bucket: &mut Vec<Entry<V>>, t: Time, idle: Duration) -> u64 {
        let before = bucket.len();
        bucket.retain(|e| t < e.lastuse + idle);
        (before - bucket.len()) as u64
    }

    fn recompute_min(&mut self) {
        self.min_lastuse = self.buckets.iter().flatten().map(|e| e.lastuse).min();
    }

    /// Whether an entry for `addr` exists.
    #[cfg(test)]
    pub(super) fn contains(&self, addr: &IpAddr) -> bool {
        self.buckets[Self::bucket(addr)]
            .iter()
            .any(|e| e.addr == *addr)
    }
}
