//! Source hashing (`sh`, ip_vs_sh.c): a 256-bucket table filled in list
//! order, each server taking `weight` consecutive buckets (a weight-0 server
//! still takes one; the kernel does not cap large weights, so a server of
//! weight >= 256 fills the rest of the table), looked up by
//! `hash_32(src_port + src_addr, 8)`, the port only with `sh-port`. If the
//! bucket's server is unavailable: `sh-fallback` probes
//! `hash_32(...) + offset` for the following offsets, otherwise no server.

use super::flags::{SH_FALLBACK, SH_PORT};
use super::{addr_fold, hash_32, same_ids, DestInfo, FlowInfo, Scheduler};

/// `IP_VS_SH_TAB_BITS` (CONFIG_IP_VS_SH_TAB_BITS default 8).
const TAB_BITS: u32 = 8;
const TAB_SIZE: usize = 1 << TAB_BITS;
const TAB_MASK: u32 = TAB_SIZE as u32 - 1;

/// Source hashing state: the bucket table and the `-b` flags.
#[derive(Debug, Clone)]
pub struct SourceHashing {
    /// Bucket → index into the list the table was built for.
    buckets: [Option<u32>; TAB_SIZE],
    /// Ids of that list.
    ids: Vec<u32>,
    /// `sh-fallback`.
    fallback: bool,
    /// `sh-port`.
    port: bool,
}

impl SourceHashing {
    /// A scheduler with `ipvsadm -b` flags (see [`super::flags`]).
    pub fn new(flags: u32) -> Self {
        SourceHashing {
            buckets: [None; TAB_SIZE],
            ids: Vec::new(),
            fallback: flags & SH_FALLBACK != 0,
            port: flags & SH_PORT != 0,
        }
    }

    /// `ip_vs_sh_reassign`.
    fn reassign(&mut self, dests: &[DestInfo]) {
        self.ids = dests.iter().map(|d| d.id).collect();
        let mut p = 0usize;
        let mut count = 0u64;
        for b in self.buckets.iter_mut() {
            let Some(d) = dests.get(p) else {
                *b = None;
                continue;
            };
            *b = Some(p as u32);
            // Move on once this server has `weight` buckets (>= 1).
            count += 1;
            if count >= u64::from(d.weight) {
                p = (p + 1) % dests.len();
                count = 0;
            }
        }
    }
}

/// `ip_vs_sh_hashkey`.
fn hashkey(addr: u32, port: u16, offset: u32) -> usize {
    (offset.wrapping_add(hash_32(u32::from(port).wrapping_add(addr), TAB_BITS)) & TAB_MASK) as usize
}

impl Scheduler for SourceHashing {
    fn name(&self) -> &'static str {
        "sh"
    }

    fn dests_changed(&mut self, _old: &[DestInfo], new: &[DestInfo]) {
        self.reassign(new);
    }

    fn schedule(&mut self, dests: &[DestInfo], flow: &FlowInfo) -> Option<usize> {
        if !same_ids(&self.ids, dests) {
            self.reassign(dests);
        }
        let addr = addr_fold(&flow.src);
        let port = if self.port { flow.src_port } else { 0 };
        let usable = |i: u32| dests.get(i as usize).is_some_and(DestInfo::available);
        let ihash = hashkey(addr, port, 0);
        let first = self.buckets[ihash]?;
        if usable(first) {
            return Some(first as usize);
        }
        if !self.fallback {
            return None;
        }
        // `ip_vs_sh_get_fallback`: offsets from the original hash value on.
        for offset in 0..TAB_SIZE {
            let roffset = ((offset + ihash) % TAB_SIZE) as u32;
            let i = self.buckets[hashkey(addr, port, roffset)]?;
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

    /// The ids picked for clients 10.0.1.1 ..= 10.0.1.20 (source port 40000
    /// or `port`), 0 for none.
    fn clients(s: &mut SourceHashing, d: &[DestInfo], port: u16) -> Vec<u32> {
        (1..=20)
            .map(|i| {
                let mut f = flow();
                f.src = IpAddr::V4(Ipv4Addr::new(10, 0, 1, i));
                f.src_port = port;
                s.schedule(d, &f).map_or(0, |x| d[x].id)
            })
            .collect()
    }

    fn fresh(flags: u32, d: &[DestInfo]) -> SourceHashing {
        let mut s = SourceHashing::new(flags);
        s.dests_changed(&[], d);
        s
    }

    // Expected ids below come from a separate Python model of ip_vs_sh.c
    // (table fill, hash_32 with GOLDEN_RATIO_32, fallback walk), written from
    // the kernel source, not from this file. List [id3 w3, id2 w2, id1 w1]:
    // buckets repeat 3,3,3,2,2,1.

    #[test]
    fn twenty_clients_map_to_fixed_servers() {
        let d = added(&[1, 2, 3]);
        let mut s = fresh(0, &d);
        assert_eq!(
            clients(&mut s, &d, 40000),
            vec![3, 2, 1, 2, 1, 3, 1, 3, 3, 3, 3, 1, 3, 2, 3, 2, 3, 3, 2, 3]
        );
        // Stable across calls and source ports (port not hashed).
        assert_eq!(clients(&mut s, &d, 1), clients(&mut s, &d, 2));
    }

    #[test]
    fn port_flag_hashes_the_source_port() {
        let d = added(&[1, 2, 3]);
        let mut s = fresh(SH_PORT, &d);
        assert_eq!(
            clients(&mut s, &d, 40000),
            vec![2, 3, 2, 1, 2, 1, 3, 2, 3, 2, 3, 3, 1, 3, 2, 3, 3, 3, 3, 2]
        );
        assert_eq!(
            clients(&mut s, &d, 40001),
            vec![3, 2, 1, 2, 1, 3, 2, 3, 2, 3, 3, 1, 3, 2, 3, 3, 3, 3, 2, 3]
        );
    }

    #[test]
    fn unavailable_without_and_with_fallback() {
        let mut d = added(&[1, 2, 3]);
        d[0].overloaded = true; // id3
        let mut s = fresh(0, &d);
        assert_eq!(
            clients(&mut s, &d, 40000),
            vec![0, 2, 1, 2, 1, 0, 1, 0, 0, 0, 0, 1, 0, 2, 0, 2, 0, 0, 2, 0]
        );
        let mut s = fresh(SH_FALLBACK, &d);
        assert_eq!(
            clients(&mut s, &d, 40000),
            vec![2, 2, 1, 2, 1, 2, 1, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 2, 2]
        );
        // Quiescing (weight 0) is unavailable too, and takes one bucket.
        let mut q = added(&[1, 2, 0]);
        let mut s = fresh(SH_FALLBACK, &q);
        assert!(clients(&mut s, &q, 1).iter().all(|&id| id == 1 || id == 2));
        q.iter_mut().for_each(|x| x.weight = 0);
        let mut s = fresh(SH_FALLBACK, &q);
        assert!(clients(&mut s, &q, 1).iter().all(|&id| id == 0));
    }

    #[test]
    fn table_fill_follows_weights() {
        let d = added(&[1, 2, 3]);
        let s = fresh(0, &d);
        let ids: Vec<u32> = s.buckets[..8]
            .iter()
            .map(|b| d[b.unwrap() as usize].id)
            .collect();
        assert_eq!(ids, vec![3, 3, 3, 2, 2, 1, 3, 3]);
        // A weight above the table size takes every bucket from its turn on.
        let d = added(&[1, 1000]);
        let s = fresh(0, &d);
        assert!(s.buckets.iter().all(|b| *b == Some(0)));
        let d = added(&[0, 0]);
        let s = fresh(0, &d);
        assert_eq!(s.buckets[..4], [Some(0), Some(1), Some(0), Some(1)]);
    }

    #[test]
    fn empty_is_none() {
        let mut s = fresh(SH_FALLBACK, &[]);
        assert_eq!(s.schedule(&[], &flow()), None);
    }
}
