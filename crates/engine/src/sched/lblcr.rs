//! Locality-based least connection with replication (`lblcr`,
//! ip_vs_lblcr.c): remembers a *set* of servers per packet destination
//! address. A new connection goes to the set's weighted-least-loaded member;
//! if there is none, or it is overloaded in lblc's sense, a fresh weighted
//! least-connection pick is added to the set (replication). A set of more
//! than one that was not modified for `lblcr_expiration` (24 h) loses its
//! weighted-most-loaded member. Entries expire as the kernel's do (see
//! `locality.rs`).

use core::time::Duration;

use super::locality::{Table, DEFAULT_EXPIRATION};
use super::{locality_overloaded, position, weighted_least, DestInfo, FlowInfo, Scheduler};
use crate::time::Time;

/// `ip_vs_dest_set`: member ids, most recently added first.
#[derive(Debug, Clone)]
struct DestSet {
    members: Vec<u32>,
    lastmod: Time,
}

impl DestSet {
    /// `ip_vs_dest_set_insert` with check: at the head unless present.
    fn insert(&mut self, id: u32, now: Time) {
        if !self.members.contains(&id) {
            self.members.insert(0, id);
            self.lastmod = now;
        }
    }

    /// `ip_vs_dest_set_min`: the first member that is in the list and
    /// available, then any later one, not over its threshold and in the list,
    /// with strictly less overhead per weight.
    fn min(&self, dests: &[DestInfo]) -> Option<usize> {
        let mut it = self.members.iter().filter_map(|&id| position(dests, id));
        let mut least = it.find(|&i| dests[i].available())?;
        for i in it {
            let (d, l) = (&dests[i], &dests[least]);
            if d.overloaded {
                continue;
            }
            if u128::from(l.overhead()) * u128::from(d.weight)
                > u128::from(d.overhead()) * u128::from(l.weight)
            {
                least = i;
            }
        }
        Some(least)
    }

    /// `ip_vs_dest_set_max`: the first member with weight > 0, then any later
    /// one with weight > 0 and strictly more overhead per weight. Threshold
    /// overload does not matter here.
    fn max(&self, dests: &[DestInfo]) -> Option<u32> {
        let mut it = self
            .members
            .iter()
            .filter_map(|&id| position(dests, id))
            .filter(|&i| dests[i].weight > 0);
        let mut most = it.next()?;
        for i in it {
            let (d, m) = (&dests[i], &dests[most]);
            if u128::from(m.overhead()) * u128::from(d.weight)
                < u128::from(d.overhead()) * u128::from(m.weight)
            {
                most = i;
            }
        }
        Some(dests[most].id)
    }
}

/// lblcr state: destination address → server set.
#[derive(Debug, Clone)]
pub struct LocalityLeastConnectionReplication {
    table: Table<DestSet>,
    /// `lblcr_expiration`, also the set's shrink interval.
    expiration: Duration,
}

impl Default for LocalityLeastConnectionReplication {
    fn default() -> Self {
        Self::with_expiration(DEFAULT_EXPIRATION)
    }
}

impl LocalityLeastConnectionReplication {
    /// With the sysctl `net.ipv4.vs.lblcr_expiration` set to `expiration`
    /// (default 24 h).
    pub fn with_expiration(expiration: Duration) -> Self {
        LocalityLeastConnectionReplication {
            table: Table::new(expiration),
            expiration,
        }
    }
}

impl Scheduler for LocalityLeastConnectionReplication {
    fn name(&self) -> &'static str {
        "lblcr"
    }

    fn schedule(&mut self, dests: &[DestInfo], flow: &FlowInfo) -> Option<usize> {
        let now = flow.now;
        self.table.run_timers(now);
        let expiration = self.expiration;
        if let Some(en) = self.table.get_mut(&flow.dst) {
            en.lastuse = now;
            let set = &mut en.value;
            let dest = set.min(dests);
            // Shrink a set that has not changed for the expiration time
            // (`time_after`: strictly later).
            if set.members.len() > 1 && now > set.lastmod + expiration {
                if let Some(m) = set.max(dests) {
                    set.members.retain(|&id| id != m);
                    set.lastmod = now;
                }
            }
            if let Some(i) = dest.filter(|&i| !locality_overloaded(&dests[i], dests)) {
                return Some(i);
            }
            let pick = weighted_least(dests, DestInfo::overhead)?;
            set.insert(dests[pick].id, now);
            return Some(pick);
        }
        let pick = weighted_least(dests, DestInfo::overhead)?;
        let set = DestSet {
            members: vec![dests[pick].id],
            lastmod: now,
        };
        self.table.insert(flow.dst, now, set);
        Some(pick)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{added, flow};
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn at(secs: u64, dst: u8) -> FlowInfo {
        let mut f = flow();
        f.now = Time::from_secs(secs);
        f.dst = IpAddr::V4(Ipv4Addr::new(10, 0, 100, dst));
        f
    }

    fn pick(
        s: &mut LocalityLeastConnectionReplication,
        d: &[DestInfo],
        f: FlowInfo,
    ) -> Option<u32> {
        s.schedule(d, &f).map(|i| d[i].id)
    }

    fn members(s: &mut LocalityLeastConnectionReplication, dst: u8) -> Vec<u32> {
        s.table
            .get_mut(&at(0, dst).dst)
            .map(|e| e.value.members.clone())
            .unwrap_or_default()
    }

    #[test]
    fn replicates_when_overloaded_then_balances_in_the_set() {
        let mut d = added(&[1, 2, 2]); // [id3 w2, id2 w2, id1 w1]
        let mut s = LocalityLeastConnectionReplication::default();
        assert_eq!(pick(&mut s, &d, at(0, 1)), Some(3));
        assert_eq!(members(&mut s, 1), vec![3]);
        // id3 over its weight while id1 idle (0*2 < 1): replicate; wlc over
        // all picks id2 (first of the least loaded after id3).
        d[0].active = 3;
        assert_eq!(pick(&mut s, &d, at(1, 1)), Some(2));
        assert_eq!(members(&mut s, 1), vec![2, 3]);
        // Now the set's least loaded member serves: id2 (idle).
        assert_eq!(pick(&mut s, &d, at(2, 1)), Some(2));
        // Ties in the set go to the first member (most recently added).
        d[0].active = 1;
        d[1].active = 1;
        assert_eq!(pick(&mut s, &d, at(3, 1)), Some(2));
        d[1].active = 2;
        assert_eq!(pick(&mut s, &d, at(4, 1)), Some(3));
    }

    #[test]
    fn shrinks_a_stale_set_by_its_most_loaded_member() {
        let mut d = added(&[1, 1]); // [id2, id1]
        let mut s = LocalityLeastConnectionReplication::default();
        assert_eq!(pick(&mut s, &d, at(0, 1)), Some(2));
        d[0].active = 2; // id2 > weight 1, id1 idle: replicate to id1
        assert_eq!(pick(&mut s, &d, at(10, 1)), Some(1));
        assert_eq!(members(&mut s, 1), vec![1, 2]);
        // Exactly 24 h after the last change: not yet (strictly after).
        let day = 24 * 3600;
        assert_eq!(pick(&mut s, &d, at(10 + day, 1)), Some(1));
        assert_eq!(members(&mut s, 1), vec![1, 2]);
        // One second later the most loaded (id2) leaves the set.
        assert_eq!(pick(&mut s, &d, at(11 + day, 1)), Some(1));
        assert_eq!(members(&mut s, 1), vec![1]);
    }

    #[test]
    fn removed_or_quiesced_members_are_skipped() {
        let mut d = added(&[1, 1]);
        let mut s = LocalityLeastConnectionReplication::default();
        assert_eq!(pick(&mut s, &d, at(0, 1)), Some(2));
        d[0].weight = 0;
        // No usable member: fresh pick id1 joins the set.
        assert_eq!(pick(&mut s, &d, at(1, 1)), Some(1));
        assert_eq!(members(&mut s, 1), vec![1, 2]);
        let only1 = added(&[1]);
        assert_eq!(pick(&mut s, &only1, at(2, 1)), Some(1));
        assert_eq!(pick(&mut s, &added(&[0]), at(3, 1)), None);
        assert_eq!(s.schedule(&[], &flow()), None);
    }

    #[test]
    fn idle_entries_expire() {
        let d = added(&[1, 1]);
        let mut s = LocalityLeastConnectionReplication::default();
        assert_eq!(pick(&mut s, &d, at(0, 1)), Some(2));
        assert_eq!(s.table.entries(), 1);
        // Full checks fall on multiples of 30 min; at 24 h the entry (last
        // used at 0) is dropped.
        s.table.run_timers(Time::from_secs(24 * 3600 - 1));
        assert_eq!(s.table.entries(), 1);
        s.table.run_timers(Time::from_secs(24 * 3600));
        assert_eq!(s.table.entries(), 0);
    }
}
