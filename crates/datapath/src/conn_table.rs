//! The connection maps the XDP program looks frames up in, and how rvsd
//! writes them.
//!
//! IPv4 entries live in `conn_slots4`: an mmapable array map of 64-byte
//! slots, in sets of [`CONN_WAYS`], the set picked by a seeded hash of the
//! key. Key and entry share one cache line, so a fast-path hit costs one
//! memory access where a BPF hash map costs three (bucket, element header,
//! value) — at many flows that was over half of the director's per-frame
//! time. rvsd writes the slots through its own mapping (no system call per
//! entry) under a per-slot sequence count, which the program reads around
//! its copy of the entry (`struct conn_slot4` in `bpf/rvs_xdp.c`).
//!
//! An entry whose set is full goes to `conns4`, a BPF hash map the program
//! looks in after the set; IPv6 entries all live in the hash map `conns6`.
//! So the table never refuses what the engine tracks: a full set costs
//! speed, not correctness.
//!
//! Only a prefix of the sets is in use: [`START_SLOTS`] at first, doubled
//! whenever the entries fill more than half of it, up to the whole table.
//! The table is sized for `max_connections`, but a frame's cost is the
//! cache and TLB misses of its slot: 64 k flows spread over the default
//! 128 MiB cost a TLB miss per frame, the same flows in a 16 MiB prefix far
//! fewer. The program reads the prefix's set mask from `conn_geometry`.
//! Growing from S to 2S sets moves an entry of set s either nowhere or to
//! set s + S, which only set s feeds, so it always has room: the entries
//! are copied there first, the mask published, then the old copies freed,
//! and a frame finds its entry under either mask throughout. Both sweeps
//! go [`STEP_SETS`] sets per write, so no write waits for a whole table
//! (a doubling to 2 M slots in one go took about 100 ms); while the copy
//! runs, a write to a set already copied is made in its copy too.

use std::collections::HashSet;
use std::os::fd::{AsRawFd as _, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU64, Ordering};

use aya::maps::{Array, HashMap, MapData};
use rvs_engine::limits::{CONN_WAYS, MAX_FAST_PATH_SLOTS, MIN_FAST_PATH_SLOTS};

use crate::fastpath::{ConnEntry, ConnEntry6, ConnKey, ConnKey4, Tail6};
use crate::maps::{is_not_found, map_err, remove};
use crate::DatapathError;

/// Bytes of a slot: `struct conn_slot4`.
pub(crate) const SLOT_BYTES: u32 = 64;
/// Words of a slot: sequence count, key (2), entry (5).
const SLOT_WORDS: usize = 8;
const KEY_WORD: usize = 1;
const ENTRY_WORD: usize = 3;
const WAYS: usize = CONN_WAYS as usize;

/// The slot count for `requested` slots (or, with none, two per
/// connection of `conn_capacity`, which keeps sets mostly below full at
/// capacity): a power of two within the limits.
pub(crate) fn slot_count(requested: Option<u32>, conn_capacity: u32) -> u32 {
    requested
        .unwrap_or_else(|| conn_capacity.saturating_mul(2))
        .clamp(MIN_FAST_PATH_SLOTS, MAX_FAST_PATH_SLOTS)
        .next_power_of_two()
}

/// A `ConnKey4` as the two words the program compares and hashes.
fn key_words(k: &ConnKey4) -> [u64; 2] {
    let a = [
        k.saddr[0], k.saddr[1], k.saddr[2], k.saddr[3], k.daddr[0], k.daddr[1], k.daddr[2],
        k.daddr[3],
    ];
    let b = [
        k.sport[0], k.sport[1], k.dport[0], k.dport[1], k.proto, 0, 0, 0,
    ];
    [u64::from_ne_bytes(a), u64::from_ne_bytes(b)]
}

fn key_of_words(w: [u64; 2]) -> ConnKey4 {
    let a = w[0].to_ne_bytes();
    let b = w[1].to_ne_bytes();
    ConnKey4 {
        saddr: [a[0], a[1], a[2], a[3]],
        daddr: [a[4], a[5], a[6], a[7]],
        sport: [b[0], b[1]],
        dport: [b[2], b[3]],
        proto: b[4],
        pad: [0; 3],
    }
}

/// Slots in use when a table is new (256 KiB), unless the table is smaller.
pub(crate) const START_SLOTS: usize = 4096;

/// Sets a doubling copies or frees per write (1,024 slots, 64 KiB: tens of
/// microseconds). A doubling is due again only after as many new entries
/// as the table then has sets, far more writes than its two sweeps take.
const STEP_SETS: usize = 256;

/// Where a doubling of the sets in use stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Growth {
    Steady,
    /// Sets `0..next` of the sets in use have their moving entries copied
    /// to set s + (sets in use); the program does not look there yet.
    Copying {
        next: usize,
    },
    /// The program uses the doubled sets; sets `next..` of the old half
    /// may still hold the old copies of entries that moved.
    Freeing {
        next: usize,
    },
}

/// What a step of [`SlotTable::advance_growth`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GrowthStep {
    /// Nothing to do.
    Idle,
    /// A sweep went on.
    Working,
    /// The program was told the doubled mask.
    Published,
}

/// `conn_hash4` of the program: the same mix, the same seed.
fn hash(seed: u64, w: [u64; 2]) -> u32 {
    let h = (w[0] ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let h = (h ^ (h >> 32) ^ w[1]).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let h = (h ^ (h >> 29)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (h ^ (h >> 32)) as u32
}

/// `conn_slots4` mapped into this process.
pub(crate) struct SlotTable {
    base: NonNull<AtomicU64>,
    slots: usize,
    seed: u64,
    /// Sets in use, a power of two: the program's mask + 1.
    active_sets: usize,
    /// Keys in slots (old copies and copies not yet in use not counted).
    used: usize,
    growth: Growth,
}

// SAFETY: the mapping belongs to this value alone (unmapped on drop) and is
// only ever accessed through atomics, from any thread.
unsafe impl Send for SlotTable {}
// SAFETY: as above; `&self` methods only read, with atomic loads.
unsafe impl Sync for SlotTable {}

impl std::fmt::Debug for SlotTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotTable")
            .field("slots", &self.slots)
            .field("active_sets", &self.active_sets)
            .field("used", &self.used)
            .field("growth", &self.growth)
            .finish_non_exhaustive()
    }
}

impl Drop for SlotTable {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, of this length, unmapped once;
        // no reference into it outlives `self`.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.slots * SLOT_BYTES as usize);
        }
    }
}

impl SlotTable {
    /// Maps the value area of `fd`, an mmapable array map of `slots`
    /// 64-byte values, shared with the kernel. `seed` is the program's
    /// `conn_hash_seed` (any value, to walk an inherited table). A new
    /// table is empty and uses its first [`START_SLOTS`]; call
    /// [`SlotTable::set_mask`] for what the program must be told.
    pub(crate) fn map(fd: BorrowedFd<'_>, slots: u32, seed: u64) -> Result<Self, DatapathError> {
        if slots == 0 || !slots.is_power_of_two() {
            return Err(DatapathError::InvalidArgument(format!(
                "conn_slots4 has {slots} slots, not a power of two"
            )));
        }
        let len = slots as usize * SLOT_BYTES as usize;
        // SAFETY: a new shared mapping of the map's value area; the kernel
        // checks `len` against the map's size and the fd is valid for the
        // call. Nothing else in this process refers to the new range.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(DatapathError::syscall(
                "mapping the connection slots (conn_slots4) into memory",
                std::io::Error::last_os_error(),
            ));
        }
        let base = NonNull::new(p.cast()).ok_or_else(|| {
            DatapathError::syscall(
                "mapping the connection slots",
                std::io::Error::other("mmap returned NULL"),
            )
        })?;
        let slots = slots as usize;
        Ok(Self {
            base,
            slots,
            seed,
            active_sets: START_SLOTS.min(slots).max(WAYS) / WAYS,
            used: 0,
            growth: Growth::Steady,
        })
    }

    fn words(&self) -> &[AtomicU64] {
        // SAFETY: `base` is a live, page-aligned mapping of `slots` × 64
        // bytes (see `map`); AtomicU64 has u64's layout, and this process
        // reads and writes the range only through these atomics (the
        // program's accesses are the kernel's, word-sized).
        unsafe { std::slice::from_raw_parts(self.base.as_ptr(), self.slots * SLOT_WORDS) }
    }

    fn word(&self, slot: usize, word: usize) -> &AtomicU64 {
        &self.words()[slot * SLOT_WORDS + word]
    }

    pub(crate) fn slots(&self) -> usize {
        self.slots
    }

    /// Slots in use: the prefix the program looks in.
    pub(crate) fn active_slots(&self) -> usize {
        self.active_sets * WAYS
    }

    /// The program's `conn_geometry` value: sets in use - 1.
    pub(crate) fn set_mask(&self) -> u32 {
        (self.active_sets - 1) as u32
    }

    /// The first slot of `key`'s set among `sets` sets.
    fn set_in(&self, w: [u64; 2], sets: usize) -> usize {
        (hash(self.seed, w) as usize & (sets - 1)) * WAYS
    }

    /// The first slot of `key`'s set.
    fn set_of(&self, w: [u64; 2]) -> usize {
        self.set_in(w, self.active_sets)
    }

    /// Whether the entries fill more than half of the slots in use and the
    /// table has more (and no doubling is under way).
    pub(crate) fn wants_to_grow(&self) -> bool {
        self.growth == Growth::Steady
            && self.active_slots() < self.slots
            && self.used * 2 > self.active_slots()
    }

    /// Takes a doubling of the sets in use a step further (`sets` sets of a
    /// sweep), starting one if [`SlotTable::wants_to_grow`]. `publish` tells
    /// the program the new mask once every moving entry has its copy; if
    /// it fails, the copies are dropped and the table is as before.
    pub(crate) fn advance_growth<E>(
        &mut self,
        sets: usize,
        publish: impl FnOnce(u32) -> Result<(), E>,
    ) -> Result<GrowthStep, E> {
        match self.growth {
            Growth::Steady if self.wants_to_grow() => {
                self.growth = Growth::Copying { next: 0 };
                self.advance_growth(sets, publish)
            }
            Growth::Steady => Ok(GrowthStep::Idle),
            Growth::Copying { next } => {
                let old = self.active_sets;
                let end = (next + sets).min(old);
                for set in next..end {
                    self.copy_moving(set);
                }
                if end < old {
                    self.growth = Growth::Copying { next: end };
                    return Ok(GrowthStep::Working);
                }
                if let Err(e) = publish((old * 2 - 1) as u32) {
                    for slot in old * WAYS..old * 2 * WAYS {
                        if self.key_at(slot) != [0, 0] {
                            self.write(slot, Some([0, 0]), None);
                        }
                    }
                    self.growth = Growth::Steady;
                    return Err(e);
                }
                self.active_sets = old * 2;
                self.growth = Growth::Freeing { next: 0 };
                Ok(GrowthStep::Published)
            }
            Growth::Freeing { next } => {
                let half = self.active_sets / 2;
                let end = (next + sets).min(half);
                for set in next..end {
                    self.free_old_copies(set);
                }
                self.growth = if end < half {
                    Growth::Freeing { next: end }
                } else {
                    Growth::Steady
                };
                Ok(GrowthStep::Working)
            }
        }
    }

    /// The set (first slot) where the doubled table will hold `w`, if it
    /// differs from its set now.
    fn destination(&self, w: [u64; 2]) -> Option<usize> {
        let to = self.set_in(w, self.active_sets * 2);
        (to != self.set_of(w)).then_some(to)
    }

    /// During a copy, the slot in its future set that `w` has or gets: only
    /// for a key that moves, of a set already copied.
    fn copy_slot(&self, w: [u64; 2]) -> Option<usize> {
        let Growth::Copying { next } = self.growth else {
            return None;
        };
        if self.set_of(w) >= next * WAYS {
            return None;
        }
        let to = self.destination(w)?;
        self.way_for(to, w, |s| self.key_at(s) == [0, 0])
    }

    /// The way of the set starting at `set` that holds `w`, else the first
    /// way `free` accepts.
    fn way_for(&self, set: usize, w: [u64; 2], free: impl Fn(usize) -> bool) -> Option<usize> {
        (set..set + WAYS)
            .find(|&s| self.key_at(s) == w)
            .or_else(|| (set..set + WAYS).find(|&s| free(s)))
    }

    /// The slot of `w`'s second copy while a doubling holds two: the copy
    /// not in use yet, or the old one not freed yet.
    fn other_copy(&self, w: [u64; 2]) -> Option<usize> {
        let set = match self.growth {
            Growth::Steady => return None,
            Growth::Copying { .. } => return self.copy_slot(w).filter(|&c| self.key_at(c) == w),
            Growth::Freeing { .. } => self.set_in(w, self.active_sets / 2),
        };
        (set != self.set_of(w))
            .then(|| (set..set + WAYS).find(|&s| self.key_at(s) == w))
            .flatten()
    }

    /// Copies set `set`'s entries that move into set `set + sets in use`
    /// (which only this set feeds: it has room for all four).
    fn copy_moving(&mut self, set: usize) {
        let mut free = (set + self.active_sets) * WAYS;
        for slot in set * WAYS..(set + 1) * WAYS {
            let w = self.key_at(slot);
            if w == [0, 0] || self.destination(w).is_none() {
                continue;
            }
            let entry = self.entry_at(slot);
            self.write(free, Some(w), Some(&entry));
            free += 1;
        }
    }

    /// Frees the old copies in set `set` of entries that moved, keeping
    /// the later `last_seen` (the program may have stamped the old one
    /// before it read the new mask).
    fn free_old_copies(&mut self, set: usize) {
        for slot in set * WAYS..(set + 1) * WAYS {
            let w = self.key_at(slot);
            if w == [0, 0] || self.set_of(w) == set * WAYS {
                continue;
            }
            let seen = self.word(slot, ENTRY_WORD).load(Ordering::Relaxed);
            if let Some(live) = self.find_words(w) {
                self.word(live, ENTRY_WORD)
                    .fetch_max(seen, Ordering::Relaxed);
            }
            self.write(slot, Some([0, 0]), None);
        }
    }

    /// Whether `slot` holds a key the program finds there: not an old copy
    /// of an entry that moved, not a copy it does not use yet.
    fn holds_live_key(&self, slot: usize, w: [u64; 2]) -> bool {
        w != [0, 0] && slot < self.active_slots() && self.set_of(w) == slot / WAYS * WAYS
    }

    fn key_at(&self, slot: usize) -> [u64; 2] {
        [
            self.word(slot, KEY_WORD).load(Ordering::Relaxed),
            self.word(slot, KEY_WORD + 1).load(Ordering::Relaxed),
        ]
    }

    /// The slot holding `key`, if any.
    fn find(&self, key: &ConnKey4) -> Option<usize> {
        self.find_words(key_words(key))
    }

    fn find_words(&self, w: [u64; 2]) -> Option<usize> {
        let set = self.set_of(w);
        (set..set + WAYS).find(|&s| self.key_at(s) == w)
    }

    /// The entry of `key`, if it has a slot.
    pub(crate) fn get(&self, key: &ConnKey4) -> Option<ConnEntry> {
        self.find(key).map(|s| self.entry_at(s))
    }

    fn entry_at(&self, slot: usize) -> ConnEntry {
        let mut w = [0u64; 5];
        for (i, v) in w.iter_mut().enumerate() {
            *v = self.word(slot, ENTRY_WORD + i).load(Ordering::Relaxed);
        }
        ConnEntry::from_words(w)
    }

    /// Writes `entry` for `key`: in its slot, else in a free way of its
    /// set. False when the set is full (nothing written).
    /// A way whose old copy a doubling has yet to free counts as free.
    pub(crate) fn upsert(&mut self, key: &ConnKey4, entry: &ConnEntry) -> bool {
        let w = key_words(key);
        let set = self.set_of(w);
        let Some(slot) = self.way_for(set, w, |s| !self.holds_live_key(s, self.key_at(s))) else {
            return false;
        };
        if self.key_at(slot) != w {
            self.used += 1;
        }
        if let Some(copy) = self.copy_slot(w) {
            self.write(copy, Some(w), Some(entry));
        }
        self.write(slot, Some(w), Some(entry));
        true
    }

    /// Frees `key`'s slot; false if it had none.
    pub(crate) fn remove(&mut self, key: &ConnKey4) -> bool {
        match self.find(key) {
            Some(slot) => {
                let w = self.key_at(slot);
                // Its other copy too: a reader of an inherited table must not
                // find a removed key.
                if let Some(other) = self.other_copy(w) {
                    self.write(other, Some([0, 0]), None);
                }
                self.write(slot, Some([0, 0]), None);
                self.used -= 1;
                true
            }
            None => false,
        }
    }

    /// The sequence-count write the program's reader expects: odd while
    /// anything changes, each step visible in order (the release fences
    /// are `smp_wmb`).
    fn write(&mut self, slot: usize, key: Option<[u64; 2]>, entry: Option<&ConnEntry>) {
        let seq = self.word(slot, 0);
        let start = seq.load(Ordering::Relaxed) | 1;
        seq.store(start, Ordering::Relaxed);
        fence(Ordering::Release);
        if let Some(e) = entry {
            for (i, v) in e.to_words().into_iter().enumerate() {
                self.word(slot, ENTRY_WORD + i).store(v, Ordering::Relaxed);
            }
        }
        if let Some(k) = key {
            self.word(slot, KEY_WORD).store(k[0], Ordering::Relaxed);
            self.word(slot, KEY_WORD + 1).store(k[1], Ordering::Relaxed);
        }
        fence(Ordering::Release);
        self.word(slot, 0)
            .store(start.wrapping_add(1), Ordering::Relaxed);
    }

    /// Every entry the program finds in the table: O(slots) reads of this
    /// process's memory.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (ConnKey4, ConnEntry)> + '_ {
        (0..self.active_slots()).filter_map(|s| {
            let w = self.key_at(s);
            self.holds_live_key(s, w)
                .then(|| (key_of_words(w), self.entry_at(s)))
        })
    }

    /// Every key in any slot, with its entry, for a table another rvsd
    /// wrote (whose mask and seed this one does not know): a key that a
    /// doubling under way holds twice comes once, with the later
    /// `last_seen`.
    pub(crate) fn inherited_entries(&self) -> Vec<(ConnKey4, ConnEntry)> {
        let mut seen: std::collections::HashMap<[u64; 2], ConnEntry> =
            std::collections::HashMap::new();
        for slot in 0..self.slots {
            let w = self.key_at(slot);
            if w == [0, 0] {
                continue;
            }
            let e = self.entry_at(slot);
            seen.entry(w)
                .and_modify(|had| {
                    if e.last_seen > had.last_seen {
                        *had = e;
                    }
                })
                .or_insert(e);
        }
        seen.into_iter()
            .map(|(w, e)| (key_of_words(w), e))
            .collect()
    }
}

/// Every connection map of the program, written as the engine asks.
pub(crate) struct ConnMaps {
    pub(crate) slots: SlotTable,
    /// `conn_slots4` itself, for pinning and its memory figure.
    pub(crate) slot_map: MapData,
    /// `conn_geometry`: the set mask of the slots in use, for the program.
    geometry: Array<MapData, u32>,
    /// `conns4`: IPv4 entries whose set was full.
    pub(crate) overflow: HashMap<MapData, ConnKey4, ConnEntry>,
    /// The keys in `overflow`, so that a key is never in both places.
    overflowed: HashSet<ConnKey4>,
    /// `conns6`.
    pub(crate) v6: HashMap<MapData, ConnKey, ConnEntry6>,
}

impl ConnMaps {
    /// Tells the program the slots in use of the new, empty `slots`.
    pub(crate) fn new(
        slots: SlotTable,
        slot_map: MapData,
        mut geometry: Array<MapData, u32>,
        overflow: HashMap<MapData, ConnKey4, ConnEntry>,
        v6: HashMap<MapData, ConnKey, ConnEntry6>,
    ) -> Result<Self, DatapathError> {
        publish_mask(&mut geometry, slots.set_mask())?;
        Ok(Self {
            slots,
            slot_map,
            geometry,
            overflow,
            overflowed: HashSet::new(),
            v6,
        })
    }

    /// Takes a doubling of the slots in use a step further, or starts one
    /// when the entries fill more than half of them. A doubling that fails
    /// costs speed, not the entry just written: logged, tried again later.
    fn advance_growth(&mut self) {
        if let Err(e) = self.try_advance_growth() {
            tracing::warn!(
                error = %e,
                active_slots = self.slots.active_slots(),
                "the fast path's IPv4 slot table could not grow; it keeps its size for now"
            );
        }
    }

    /// [`ConnMaps::advance_growth`]; once the program uses the doubled
    /// sets, brings the overflowed entries that now fit into slots.
    fn try_advance_growth(&mut self) -> Result<(), DatapathError> {
        let geometry = &mut self.geometry;
        let step = self
            .slots
            .advance_growth(STEP_SETS, |mask| publish_mask(geometry, mask))?;
        if step != GrowthStep::Published {
            return Ok(());
        }
        tracing::debug!(
            active_slots = self.slots.active_slots(),
            entries = self.slots.used,
            "fast-path slot table doubled"
        );
        let keys: Vec<ConnKey4> = self.overflowed.iter().copied().collect();
        for k4 in keys {
            let e = match self.overflow.get(&k4, 0) {
                Ok(e) => e,
                Err(e) if is_not_found(&e) => continue,
                Err(e) => return Err(map_err("conns4", "read", e)),
            };
            // The slot first: the program looks there before the map.
            if self.slots.upsert(&k4, &e) {
                self.overflowed.remove(&k4);
                remove(&mut self.overflow, &k4, "conns4")?;
            }
        }
        Ok(())
    }

    /// Writes `e` for `k`; an IPv6 entry takes `tail` with it.
    pub(crate) fn insert(
        &mut self,
        k: &ConnKey,
        e: ConnEntry,
        tail: Tail6,
    ) -> Result<(), DatapathError> {
        let Some(k4) = k.v4() else {
            return self
                .v6
                .insert(k, ConnEntry6::new(e, tail), 0)
                .map_err(|e| map_err("conns6", "insert", e));
        };
        if self.overflowed.contains(&k4) || !self.slots.upsert(&k4, &e) {
            self.overflow
                .insert(k4, e, 0)
                .map_err(|e| map_err("conns4", "insert", e))?;
            self.overflowed.insert(k4);
        }
        self.advance_growth();
        Ok(())
    }

    /// Absent is fine.
    pub(crate) fn remove(&mut self, k: &ConnKey) -> Result<(), DatapathError> {
        let Some(k4) = k.v4() else {
            return remove(&mut self.v6, k, "conns6");
        };
        if self.overflowed.remove(&k4) {
            return remove(&mut self.overflow, &k4, "conns4");
        }
        self.slots.remove(&k4);
        Ok(())
    }

    pub(crate) fn get(&self, k: &ConnKey) -> Result<Option<ConnEntry>, DatapathError> {
        let (got, name) = match k.v4() {
            Some(k4) if !self.overflowed.contains(&k4) => return Ok(self.slots.get(&k4)),
            Some(k4) => (self.overflow.get(&k4, 0), "conns4"),
            None => (self.v6.get(k, 0).map(|e6| e6.entry), "conns6"),
        };
        match got {
            Ok(e) => Ok(Some(e)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(map_err(name, "read", e)),
        }
    }

    /// IPv4 entries in the overflow map (O(1)).
    pub(crate) fn overflow_entries(&self) -> usize {
        self.overflowed.len()
    }

    /// IPv4 entries in their slots, and in the overflow map.
    pub(crate) fn v4_counts(&self) -> (usize, usize) {
        (self.slots.entries().count(), self.overflowed.len())
    }
}

fn publish_mask(geometry: &mut Array<MapData, u32>, mask: u32) -> Result<(), DatapathError> {
    geometry
        .set(0, mask, 0)
        .map_err(|e| map_err("conn_geometry", "update", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_counts_are_powers_of_two_within_the_limits() {
        assert_eq!(slot_count(None, 0), MIN_FAST_PATH_SLOTS);
        assert_eq!(slot_count(None, 50_000), 131_072);
        assert_eq!(slot_count(None, 1 << 20), 1 << 21);
        assert_eq!(slot_count(Some(3000), 1 << 20), 4096);
        assert_eq!(slot_count(Some(u32::MAX), 1), MAX_FAST_PATH_SLOTS);
        assert_eq!(slot_count(None, u32::MAX), MAX_FAST_PATH_SLOTS);
    }

    #[test]
    fn keys_round_trip_through_their_words() {
        let k = ConnKey4 {
            saddr: [10, 1, 2, 3],
            daddr: [10, 9, 8, 7],
            sport: [0x9c, 0x40],
            dport: [0, 80],
            proto: 6,
            pad: [0; 3],
        };
        assert_eq!(key_of_words(key_words(&k)), k);
        assert_ne!(key_words(&k), [0, 0], "a real key is never the free mark");
    }

    /// A table over anonymous shared memory (the layout of the map's
    /// value area), and its file.
    fn memory_table(slots: u32) -> (SlotTable, std::os::fd::OwnedFd) {
        use std::os::fd::{AsFd as _, FromRawFd as _};
        // SAFETY: a new anonymous file; the name is a NUL-terminated literal.
        let fd = unsafe { libc::memfd_create(c"rvs-slots".as_ptr(), 0) };
        assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
        // SAFETY: `fd` was just created and is owned here alone.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        // SAFETY: `fd` is a valid file; the length fits i64.
        let r = unsafe { libc::ftruncate(fd.as_raw_fd(), i64::from(slots) * 64) };
        assert_eq!(r, 0, "ftruncate: {}", std::io::Error::last_os_error());
        let table = SlotTable::map(fd.as_fd(), slots, 0x5eed).unwrap();
        (table, fd)
    }

    fn flow(i: u32) -> ConnKey4 {
        ConnKey4 {
            saddr: [10, 1, (i >> 8) as u8, i as u8],
            daddr: [10, 0, 0, 100],
            sport: ((i >> 16) as u16 + 1024).to_be_bytes(),
            dport: [0, 80],
            proto: 6,
            pad: [0; 3],
        }
    }

    fn entry(i: u32) -> ConnEntry {
        ConnEntry::from_words([u64::from(i) + 1, u64::from(i) << 32, 7, 0, 0])
    }

    /// Takes every doubling that is due to its end, a few sets per step;
    /// the masks published.
    fn grow_fully(t: &mut SlotTable, masks: &mut Vec<u32>) {
        while t.advance_growth(16, |m| {
            masks.push(m);
            Ok::<(), ()>(())
        }) != Ok(GrowthStep::Idle)
        {}
    }

    /// Entries until a doubling is due; how many were written.
    fn fill_to_half(t: &mut SlotTable) -> u32 {
        let mut i = 0;
        while !t.wants_to_grow() {
            t.upsert(&flow(i), &entry(i));
            i += 1;
        }
        i
    }

    /// Keys in any slot, copies included.
    fn raw_keys(t: &SlotTable) -> usize {
        (0..t.slots()).filter(|&s| t.key_at(s) != [0, 0]).count()
    }

    #[test]
    fn the_slots_in_use_double_at_half_full_and_every_entry_stays_found() {
        const FLOWS: u32 = 20_000;
        let (mut t, _fd) = memory_table(1 << 16);
        assert_eq!(t.active_slots(), START_SLOTS);
        let mut masks = vec![t.set_mask()];
        // A full set refuses (ConnMaps sends that entry to the hash map).
        let mut placed = Vec::new();
        for i in 0..FLOWS {
            if t.upsert(&flow(i), &entry(i)) {
                placed.push(i);
            }
            // One step per write, as ConnMaps takes them.
            t.advance_growth(STEP_SETS, |m| {
                masks.push(m);
                Ok::<(), ()>(())
            })
            .unwrap();
            // Every entry so far is where the program would look, also
            // halfway through a doubling.
            if i % 2999 == 0 {
                for &j in &placed {
                    assert_eq!(t.get(&flow(j)), Some(entry(j)), "flow {j} after {i}");
                }
                assert_eq!(t.entries().count(), t.used, "after {i}: {:?}", t.growth);
            }
        }
        grow_fully(&mut t, &mut masks);
        assert!(
            placed.len() > FLOWS as usize * 9 / 10,
            "{} placed",
            placed.len()
        );
        // 20,000 entries: 32,768 slots fill 61 %, 65,536 would be 31 %.
        assert_eq!(t.active_slots(), 1 << 16);
        assert_eq!(
            masks,
            vec![1023, 2047, 4095, 8191, 16383],
            "one doubling at a time"
        );
        assert_eq!(t.entries().count(), placed.len());
        assert_eq!(raw_keys(&t), placed.len(), "no copy left behind");
        for &i in &placed {
            assert_eq!(t.get(&flow(i)), Some(entry(i)));
            assert!(t.remove(&flow(i)));
        }
        assert_eq!(t.used, 0);
        assert_eq!(raw_keys(&t), 0);
    }

    #[test]
    fn writes_during_a_doubling_reach_both_copies() {
        let (mut t, _fd) = memory_table(1 << 14);
        let mut i = fill_to_half(&mut t);
        let mut live: std::collections::BTreeMap<u32, ConnEntry> =
            (0..i).filter_map(|k| Some((k, t.get(&flow(k))?))).collect();
        let mut masks = Vec::new();
        let publish = |m: u32, masks: &mut Vec<u32>| {
            masks.push(m);
            Ok::<(), ()>(())
        };
        // Halfway through the copy, then halfway through the freeing:
        // remove a third, rewrite a third, add as many new ones.
        for phase in 0..2 {
            while !matches!(
                (phase, t.growth),
                (0, Growth::Copying { next }) | (1, Growth::Freeing { next }) if next >= 512
            ) {
                t.advance_growth(64, |m| publish(m, &mut masks)).unwrap();
            }
            let keys: Vec<u32> = live.keys().copied().collect();
            for (n, k) in keys.into_iter().enumerate() {
                match n % 3 {
                    0 => {
                        assert!(t.remove(&flow(k)));
                        live.remove(&k);
                    }
                    1 => {
                        let e = entry(k + 1_000_000);
                        assert!(t.upsert(&flow(k), &e));
                        live.insert(k, e);
                    }
                    _ => {}
                }
            }
            for _ in 0..500 {
                if t.upsert(&flow(i), &entry(i)) {
                    live.insert(i, entry(i));
                }
                i += 1;
            }
        }
        grow_fully(&mut t, &mut masks);
        assert_eq!(masks, vec![2047]);
        assert_eq!(t.used, live.len());
        assert_eq!(raw_keys(&t), live.len(), "a removed key left a copy");
        for (&k, e) in &live {
            assert_eq!(t.get(&flow(k)), Some(*e), "flow {k}");
        }
        let removed = (0..i).filter(|k| !live.contains_key(k));
        for k in removed {
            assert_eq!(t.get(&flow(k)), None, "flow {k} was removed");
        }
    }

    #[test]
    fn an_inherited_table_halfway_through_a_doubling_lists_each_key_once() {
        let (mut t, fd) = memory_table(1 << 14);
        fill_to_half(&mut t);
        let want = t.used;
        t.advance_growth(128, |_| Ok::<(), ()>(())).unwrap();
        assert!(matches!(t.growth, Growth::Copying { .. }));
        assert!(raw_keys(&t) > want, "some entries have two copies");
        use std::os::fd::AsFd as _;
        let other = SlotTable::map(fd.as_fd(), 1 << 14, 0).unwrap();
        let listed = other.inherited_entries();
        assert_eq!(listed.len(), want);
        for (k, e) in listed {
            assert_eq!(t.get(&k), Some(e));
        }
    }

    #[test]
    fn a_doubling_the_program_was_not_told_of_leaves_the_table_as_it_was() {
        let (mut t, _fd) = memory_table(1 << 14);
        fill_to_half(&mut t);
        let before: Vec<_> = t.entries().collect();
        let mut refused = Ok(GrowthStep::Idle);
        for _ in 0..100 {
            refused = t.advance_growth(64, |_| Err("refused"));
            if refused.is_err() {
                break;
            }
        }
        assert_eq!(refused, Err("refused"));
        assert_eq!(t.active_slots(), START_SLOTS);
        assert_eq!(t.growth, Growth::Steady);
        assert_eq!(t.entries().collect::<Vec<_>>(), before);
        assert_eq!(raw_keys(&t), before.len(), "the copies were dropped");
        for (k, e) in before {
            assert_eq!(t.get(&k), Some(e));
        }
    }

    #[test]
    fn a_small_table_is_in_use_whole() {
        let (t, _fd) = memory_table(1024);
        assert_eq!(t.active_slots(), 1024);
        assert_eq!(t.set_mask(), 255);
        assert!(!t.wants_to_grow());
    }

    #[test]
    fn the_hash_spreads_neighbouring_flows() {
        // 4096 flows from one client that differ only in the source port
        // land in nearly as many sets of 1024 as a uniform hash would fill.
        let mut seen = HashSet::new();
        for port in 0..4096u16 {
            let k = ConnKey4 {
                saddr: [10, 0, 0, 1],
                daddr: [10, 0, 0, 100],
                sport: port.to_be_bytes(),
                dport: [0, 80],
                proto: 17,
                pad: [0; 3],
            };
            seen.insert(hash(0x1234_5678, key_words(&k)) & 1023);
        }
        // A uniform hash fills 1024 × (1 − e^−4) ≈ 1005 sets.
        assert!(seen.len() > 980, "{} sets", seen.len());
    }
}
