//! Maglev hashing (`mh`, ip_vs_mh.c): a lookup table of prime size M (4093
//! by default) that every server fills along its own permutation
//! (offset = h1 % M, skip = h2 % (M - 1) + 1, hashes of the server's address
//! and port), taking weight-proportional turns; a client's source address
//! (and port with `mh-port`) hashed with h1 picks the slot. Removing one
//! server moves only the keys that were on it (plus a little).
//!
//! The hash is the kernel's 64-bit `hsiphash` with the kernel's fixed keys
//! (`generate_hash_secret` in ip_vs_mh.c sets both words of key 1 to
//! 2654435761 and of key 2 to 2654446892: not random per boot), so for the
//! same servers, weights and order our table is the kernel's.
//!
//! Weights are the kernel's `last_weight`: the weight at `ipvsadm -a`, then
//! the latest non-zero one. Quiescing a server (weight 0) therefore keeps its
//! slots; lookups landing there find it unavailable (no server, or with
//! `mh-fallback` a walk to the next usable slot), and un-quiescing gives the
//! same slots back.

use super::flags::{MH_FALLBACK, MH_PORT};
use super::hsiphash::{hsiphash, HsipKey};
use super::{addr_fold, same_ids, DestInfo, FlowInfo, Scheduler};

/// The kernel's table sizes, indexed by `CONFIG_IP_VS_MH_TAB_INDEX - 8`.
pub(super) const PRIMES: [u32; 10] = [
    251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071,
];

/// `CONFIG_IP_VS_MH_TAB_INDEX` default: 12, so M = 4093.
pub(super) const DEFAULT_TAB_INDEX: u32 = 12;

/// `generate_hash_secret`: key for offsets and lookups.
const HASH1: HsipKey = HsipKey([2_654_435_761, 2_654_435_761]);
/// `generate_hash_secret`: key for skips.
const HASH2: HsipKey = HsipKey([2_654_446_892, 2_654_446_892]);

/// Maglev state: the lookup table and what it was built from.
#[derive(Debug, Clone)]
pub struct MaglevHashing {
    /// M.
    size: u32,
    /// `IP_VS_MH_TAB_BITS` = CONFIG_IP_VS_MH_TAB_INDEX / 2: how many bits of
    /// weight/gcd are kept.
    tab_bits: u32,
    /// Slot → index into the list the table was built for.
    lookup: Vec<Option<u32>>,
    /// Ids of that list.
    ids: Vec<u32>,
    /// `last_weight` per entry of `ids`.
    last_weight: Vec<u32>,
    /// `mh-fallback`.
    fallback: bool,
    /// `mh-port`.
    port: bool,
}

impl MaglevHashing {
    /// A scheduler with `ipvsadm -b` flags and the kernel's default table.
    pub fn new(flags: u32) -> Self {
        Self::with_tab_index(flags, DEFAULT_TAB_INDEX)
    }

    /// As the kernel built with `CONFIG_IP_VS_MH_TAB_INDEX = tab_index`
    /// (8..=17; clamped), to match a kernel configured differently.
    pub fn with_tab_index(flags: u32, tab_index: u32) -> Self {
        let tab_index = tab_index.clamp(8, 17);
        let size = PRIMES[(tab_index - 8) as usize];
        MaglevHashing {
            size,
            tab_bits: tab_index / 2,
            lookup: vec![None; size as usize],
            ids: Vec::new(),
            last_weight: Vec::new(),
            fallback: flags & MH_FALLBACK != 0,
            port: flags & MH_PORT != 0,
        }
    }

    /// `ip_vs_mh_dest_changed`: new last_weights, then gcd, shift and table.
    fn update(&mut self, new: &[DestInfo]) {
        let lw: Vec<u32> = new
            .iter()
            .map(|d| match self.ids.iter().position(|&id| id == d.id) {
                Some(p) if d.weight == 0 => self.last_weight[p],
                _ => d.weight,
            })
            .collect();
        if new.len() > self.size as usize {
            // ip_vs_mh_reassign refuses (-EINVAL) and keeps the old table;
            // keep pointing at the same servers where they still exist.
            let pos: Vec<Option<u32>> = self
                .ids
                .iter()
                .map(|id| new.iter().position(|d| d.id == *id).map(|p| p as u32))
                .collect();
            for slot in self.lookup.iter_mut() {
                *slot = slot.and_then(|i| pos.get(i as usize).copied().flatten());
            }
        } else {
            self.populate(new, &lw);
        }
        self.ids = new.iter().map(|d| d.id).collect();
        self.last_weight = lw;
    }

    /// `ip_vs_mh_permutate` + `ip_vs_mh_populate`.
    fn populate(&mut self, dests: &[DestInfo], lw: &[u32]) {
        let m = self.size;
        let g = lw
            .iter()
            .filter(|&&w| w > 0)
            .fold(0, |g, &w| if g > 0 { gcd(w, g) } else { w });
        if g < 1 {
            self.lookup.iter_mut().for_each(|s| *s = None);
            return;
        }
        let mw = lw.iter().copied().max().unwrap_or(0) / g;
        let fls = 32 - mw.leading_zeros();
        let rshift = fls.saturating_sub(self.tab_bits);
        // (perm, skip, turns) per server.
        let mut setup: Vec<(u32, u32, u32)> = dests
            .iter()
            .zip(lw)
            .map(|(d, &w)| {
                let a = addr_fold(&d.addr);
                let offset = hashkey(a, d.port, &HASH1, 0) % m;
                let skip = hashkey(a, d.port, &HASH2, 0) % (m - 1) + 1;
                let turns = match (w / g) >> rshift {
                    0 => u32::from(w != 0),
                    t => t,
                };
                (offset, skip, turns)
            })
            .collect();
        let mut taken = vec![false; m as usize];
        let mut n = 0u32;
        let mut dt_count = 0u32;
        // Passes over the list; each server places `turns` slots in a row.
        loop {
            let mut p = 0;
            while p < setup.len() {
                let (perm, skip, turns) = &mut setup[p];
                if *turns < 1 {
                    p += 1;
                    continue;
                }
                while taken[*perm as usize] {
                    *perm += *skip;
                    if *perm >= m {
                        *perm -= m;
                    }
                }
                taken[*perm as usize] = true;
                self.lookup[*perm as usize] = Some(p as u32);
                n += 1;
                if n == m {
                    return;
                }
                dt_count += 1;
                if dt_count >= *turns {
                    dt_count = 0;
                    p += 1;
                }
            }
        }
    }
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `ip_vs_mh_hashkey`: hsiphash of the u32 `offset + port + addr` in
/// memory order (little-endian on x86_64).
fn hashkey(addr: u32, port: u16, key: &HsipKey, offset: u32) -> u32 {
    let v = offset.wrapping_add(u32::from(port)).wrapping_add(addr);
    hsiphash(&v.to_le_bytes(), key)
}

impl Scheduler for MaglevHashing {
    fn name(&self) -> &'static str {
        "mh"
    }

    fn dests_changed(&mut self, _old: &[DestInfo], new: &[DestInfo]) {
        self.update(new);
    }

    fn schedule(&mut self, dests: &[DestInfo], flow: &FlowInfo) -> Option<usize> {
        if !same_ids(&self.ids, dests) {
            // Not told about this list: build for it (the engine always
            // tells; this keeps a direct caller correct).
            self.update(dests);
        }
        let m = self.size;
        let addr = addr_fold(&flow.src);
        let port = if self.port { flow.src_port } else { 0 };
        let usable = |i: u32| dests.get(i as usize).is_some_and(DestInfo::available);
        let ihash = hashkey(addr, port, &HASH1, 0) % m;
        let first = self.lookup[ihash as usize]?;
        if usable(first) {
            return Some(first as usize);
        }
        if !self.fallback {
            return None;
        }
        // `ip_vs_mh_get_fallback`: rehash with growing offsets.
        for offset in 0..m {
            let roffset = (offset + ihash) % m;
            let i = self.lookup[(hashkey(addr, port, &HASH1, roffset) % m) as usize]?;
            if usable(i) {
                return Some(i as usize);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{added, flow};
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn fresh(flags: u32, d: &[DestInfo]) -> MaglevHashing {
        let mut s = MaglevHashing::new(flags);
        s.dests_changed(&[], d);
        s
    }

    fn client(i: u32, port: u16) -> FlowInfo {
        let mut f = flow();
        f.src = IpAddr::V4(Ipv4Addr::from(0x0a00_0100 + i));
        f.src_port = port;
        f
    }

    /// Ids for clients 10.0.1.1 ..= 10.0.1.20, 0 for none.
    fn clients(s: &mut MaglevHashing, d: &[DestInfo], port: u16) -> Vec<u32> {
        (1..=20)
            .map(|i| s.schedule(d, &client(i, port)).map_or(0, |x| d[x].id))
            .collect()
    }

    fn slot_ids(s: &MaglevHashing, d: &[DestInfo]) -> Vec<u32> {
        s.lookup
            .iter()
            .map(|x| x.map_or(0, |i| d[i as usize].id))
            .collect()
    }

    // Expected values come from a separate Python model of ip_vs_mh.c and
    // lib/siphash.c (its hsiphash checked against the kernel's vectors),
    // written from the kernel source, not from this file. Servers are
    // testutil::added: id i at 10.0.2.(10+i):80, newest first.

    #[test]
    fn equal_weights_table_and_twenty_clients() {
        let d = added(&[1, 1, 1]);
        let mut s = fresh(0, &d);
        let slots = slot_ids(&s, &d);
        let count = |id| slots.iter().filter(|&&x| x == id).count();
        assert_eq!((count(1), count(2), count(3)), (1364, 1364, 1365));
        assert_eq!(
            clients(&mut s, &d, 40000),
            vec![3, 1, 2, 3, 3, 2, 1, 1, 3, 1, 2, 2, 3, 1, 3, 1, 1, 3, 3, 1]
        );
    }

    #[test]
    fn weighted_table_and_twenty_clients() {
        let d = added(&[1, 2, 3]);
        let mut s = fresh(0, &d);
        let slots = slot_ids(&s, &d);
        assert_eq!(slots[..12], [3, 1, 2, 3, 2, 1, 3, 2, 3, 1, 3, 2]);
        let count = |id| slots.iter().filter(|&&x| x == id).count();
        assert_eq!((count(1), count(2), count(3)), (682, 1364, 2047));
        assert_eq!(
            clients(&mut s, &d, 40000),
            vec![3, 3, 2, 3, 3, 3, 1, 2, 3, 1, 2, 2, 3, 3, 3, 2, 2, 3, 3, 2]
        );
        let mut s = fresh(MH_PORT, &d);
        assert_eq!(
            clients(&mut s, &d, 40000),
            vec![3, 2, 2, 1, 2, 3, 3, 3, 3, 3, 3, 3, 3, 2, 3, 3, 3, 3, 3, 3]
        );
    }

    #[test]
    fn unavailable_without_and_with_fallback() {
        let mut d = added(&[1, 2, 3]);
        d[0].overloaded = true; // id3
        let mut s = fresh(0, &d);
        assert_eq!(
            clients(&mut s, &d, 40000),
            vec![0, 0, 2, 0, 0, 0, 1, 2, 0, 1, 2, 2, 0, 0, 0, 2, 2, 0, 0, 2]
        );
        let mut s = fresh(MH_FALLBACK, &d);
        assert_eq!(
            clients(&mut s, &d, 40000),
            vec![1, 1, 2, 2, 2, 2, 1, 2, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 1, 2]
        );
    }

    #[test]
    fn quiescing_keeps_the_slots() {
        // Weight 0 by update keeps last_weight: same table, id3's clients get
        // no server; restoring the weight gives the same picks back.
        let d = added(&[1, 2, 3]);
        let mut s = fresh(0, &d);
        let before = slot_ids(&s, &d);
        let mut q = d.clone();
        q[0].weight = 0;
        s.dests_changed(&d, &q);
        assert_eq!(slot_ids(&s, &q), before);
        assert_eq!(clients(&mut s, &q, 1)[..2], [0, 0]);
        s.dests_changed(&q, &d);
        assert_eq!(clients(&mut s, &d, 1)[..2], [3, 3]);
        // But a server added with weight 0 takes no slots at all.
        let z = added(&[1, 0]);
        let s = fresh(0, &z);
        assert!(slot_ids(&s, &z).iter().all(|&id| id == 1));
        let z = added(&[0, 0]);
        let mut s = fresh(MH_FALLBACK, &z);
        assert!(s.lookup.iter().all(Option::is_none));
        assert_eq!(s.schedule(&z, &flow()), None);
    }

    #[test]
    fn removing_a_server_moves_about_one_nth() {
        // 10 equal servers; remove id 4. Keys on id 4 must move; of the
        // others Maglev moves only a few percent.
        let d = added(&[1; 10]);
        let mut s = fresh(0, &d);
        let keys: Vec<FlowInfo> = (0..5000).map(|i| client(i * 7919, 0)).collect();
        let before: Vec<u32> = keys
            .iter()
            .map(|f| d[s.schedule(&d, f).unwrap()].id)
            .collect();
        let d2: Vec<DestInfo> = d.iter().copied().filter(|x| x.id != 4).collect();
        s.dests_changed(&d, &d2);
        let after: Vec<u32> = keys
            .iter()
            .map(|f| d2[s.schedule(&d2, f).unwrap()].id)
            .collect();
        let on_removed = before.iter().filter(|&&id| id == 4).count();
        let moved_others = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| **b != 4 && b != a)
            .count();
        assert!(after.iter().all(|&id| id != 4));
        // ~1/10 of the keys were on the removed server.
        assert!((400..600).contains(&on_removed), "{on_removed}");
        // And fewer than 5% of the rest moved.
        assert!(
            moved_others * 20 < keys.len() - on_removed,
            "{moved_others}"
        );
    }

    #[test]
    fn smallest_table_and_empty() {
        let d = added(&[1, 1]);
        let mut s = MaglevHashing::with_tab_index(0, 8);
        s.dests_changed(&[], &d);
        assert_eq!(s.lookup.len(), 251);
        assert!(s.lookup.iter().all(Option::is_some));
        let mut s = MaglevHashing::new(MH_FALLBACK);
        s.dests_changed(&[], &[]);
        assert_eq!(s.schedule(&[], &flow()), None);
    }
}
