//! Destination hashing (`dh`, ip_vs_dh.c): a 256-bucket table filled with the
//! servers round robin in list order (weights play no part), looked up by a
//! hash of the packet's *destination* address. An unavailable server in the
//! bucket means no server: dh never falls back.

use super::{addr_fold, hash_32, same_ids, DestInfo, FlowInfo, Scheduler};

/// `IP_VS_DH_TAB_BITS` (CONFIG_IP_VS_DH_TAB_BITS default 8).
const TAB_BITS: u32 = 8;
const TAB_SIZE: usize = 1 << TAB_BITS;

/// The bucket table, as list positions.
#[derive(Debug, Clone)]
pub struct DestinationHashing {
    /// Bucket → index into the list the table was built for.
    buckets: [Option<u32>; TAB_SIZE],
    /// Ids of that list, to notice a list the table was not built for.
    ids: Vec<u32>,
}

impl Default for DestinationHashing {
    fn default() -> Self {
        DestinationHashing {
            buckets: [None; TAB_SIZE],
            ids: Vec::new(),
        }
    }
}

impl DestinationHashing {
    /// `ip_vs_dh_reassign`: bucket i gets server i mod n.
    fn reassign(&mut self, dests: &[DestInfo]) {
        self.ids = dests.iter().map(|d| d.id).collect();
        for (i, b) in self.buckets.iter_mut().enumerate() {
            *b = (!dests.is_empty()).then(|| (i % dests.len()) as u32);
        }
    }
}

/// `ip_vs_dh_hashkey`.
fn hashkey(flow: &FlowInfo) -> usize {
    hash_32(addr_fold(&flow.dst), TAB_BITS) as usize
}

impl Scheduler for DestinationHashing {
    fn name(&self) -> &'static str {
        "dh"
    }

    fn dests_changed(&mut self, _old: &[DestInfo], new: &[DestInfo]) {
        self.reassign(new);
    }

    fn schedule(&mut self, dests: &[DestInfo], flow: &FlowInfo) -> Option<usize> {
        if !same_ids(&self.ids, dests) {
            self.reassign(dests);
        }
        let i = self.buckets[hashkey(flow)]? as usize;
        dests.get(i).filter(|d| d.available()).map(|_| i)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{added, flow};
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn to(d: &[DestInfo], s: &mut DestinationHashing, dst: [u8; 4]) -> Option<u32> {
        let mut f = flow();
        f.dst = IpAddr::V4(Ipv4Addr::from(dst));
        s.schedule(d, &f).map(|i| d[i].id)
    }

    #[test]
    fn hashes_the_destination_address() {
        // hash_32(a, 8) = (a * 0x61C88647 mod 2^32) >> 24, computed apart
        // from this code (Python one-liner):
        // 10.0.100.1 = 0x0A006401 -> bucket 124 -> 124 % 3 = 1
        // 10.0.100.4 = 0x0A006404 -> bucket 161 -> 161 % 3 = 2
        // 10.0.100.2 = 0x0A006402 -> bucket 222 -> 222 % 3 = 0
        // List [id3, id2, id1]: positions 1, 2, 0 are ids 2, 1, 3.
        let d = added(&[1, 1, 1]);
        let mut s = DestinationHashing::default();
        s.dests_changed(&[], &d);
        assert_eq!(to(&d, &mut s, [10, 0, 100, 1]), Some(2));
        assert_eq!(to(&d, &mut s, [10, 0, 100, 4]), Some(1));
        assert_eq!(to(&d, &mut s, [10, 0, 100, 2]), Some(3));
        // The source does not matter.
        let mut f = flow();
        f.dst = IpAddr::V4(Ipv4Addr::new(10, 0, 100, 1));
        f.src = IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9));
        assert_eq!(s.schedule(&d, &f).map(|i| d[i].id), Some(2));
    }

    #[test]
    fn weights_do_not_matter_but_zero_means_none() {
        let mut d = added(&[1, 100, 1]);
        let mut s = DestinationHashing::default();
        s.dests_changed(&[], &d);
        assert_eq!(to(&d, &mut s, [10, 0, 100, 1]), Some(2));
        let old = d.clone();
        d[1].weight = 0; // id2 quiesced: its buckets give no server
        s.dests_changed(&old, &d);
        assert_eq!(to(&d, &mut s, [10, 0, 100, 1]), None);
        d[1].weight = 1;
        d[1].overloaded = true;
        assert_eq!(to(&d, &mut s, [10, 0, 100, 1]), None);
        assert_eq!(to(&d, &mut s, [10, 0, 100, 2]), Some(3));
    }

    #[test]
    fn empty_list_is_none() {
        let mut s = DestinationHashing::default();
        s.dests_changed(&[], &[]);
        assert_eq!(s.schedule(&[], &flow()), None);
    }
}
