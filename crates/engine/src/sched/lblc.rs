//! Locality-based least connection (`lblc`, ip_vs_lblc.c): remembers one
//! server per packet *destination* address (cache clusters) and keeps using
//! it unless it is gone, quiesced, or "overloaded" in lblc's own sense (more
//! active connections than its weight while some server is below half of its
//! weight); then picks afresh by weighted least connection and remembers
//! that. Entries expire as the kernel's do (see `locality.rs`).
//!
//! Note, as in the kernel: a remembered server over its upper threshold
//! (`overloaded` flag) is still used; only the fresh pick skips it.

use core::time::Duration;

use super::locality::{Table, DEFAULT_EXPIRATION};
use super::{locality_overloaded, position, weighted_least, DestInfo, FlowInfo, Scheduler};

/// lblc state: destination address → server id.
#[derive(Debug, Clone)]
pub struct LocalityLeastConnection {
    table: Table<u32>,
}

impl Default for LocalityLeastConnection {
    fn default() -> Self {
        Self::with_expiration(DEFAULT_EXPIRATION)
    }
}

impl LocalityLeastConnection {
    /// With the sysctl `net.ipv4.vs.lblc_expiration` set to `expiration`
    /// (default 24 h).
    pub fn with_expiration(expiration: Duration) -> Self {
        LocalityLeastConnection {
            table: Table::new(expiration),
        }
    }
}

impl Scheduler for LocalityLeastConnection {
    fn name(&self) -> &'static str {
        "lblc"
    }

    fn schedule(&mut self, dests: &[DestInfo], flow: &FlowInfo) -> Option<usize> {
        let now = flow.now;
        self.table.run_timers(now);
        let remembered = self.table.get_mut(&flow.dst).map(|en| {
            en.lastuse = now;
            en.value
        });
        if let Some(i) = remembered.and_then(|id| position(dests, id)) {
            let d = &dests[i];
            if d.weight > 0 && !locality_overloaded(d, dests) {
                return Some(i);
            }
        }
        let pick = weighted_least(dests, DestInfo::overhead)?;
        let id = dests[pick].id;
        match remembered {
            None => self.table.insert(flow.dst, now, id),
            Some(old) if old != id => self.table.replace(flow.dst, now, id),
            Some(_) => {}
        }
        Some(pick)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{added, flow};
    use super::*;
    use crate::time::Time;
    use std::net::{IpAddr, Ipv4Addr};

    fn at(secs: u64, dst: u8) -> FlowInfo {
        let mut f = flow();
        f.now = Time::from_secs(secs);
        f.dst = IpAddr::V4(Ipv4Addr::new(10, 0, 100, dst));
        f
    }

    fn pick(s: &mut LocalityLeastConnection, d: &[DestInfo], f: FlowInfo) -> Option<u32> {
        s.schedule(d, &f).map(|i| d[i].id)
    }

    #[test]
    fn sticks_to_the_remembered_server() {
        // [id2, id1], both idle: wlc picks the head, id2, for 10.0.100.1.
        let mut d = added(&[1, 1]);
        let mut s = LocalityLeastConnection::default();
        assert_eq!(pick(&mut s, &d, at(0, 1)), Some(2));
        // Even when id2 gets busier than id1, 10.0.100.1 stays on id2 ...
        d[0].active = 1;
        assert_eq!(pick(&mut s, &d, at(1, 1)), Some(2));
        // ... while a new destination address goes by wlc: id1.
        assert_eq!(pick(&mut s, &d, at(1, 2)), Some(1));
    }

    #[test]
    fn moves_when_overloaded_in_lblc_sense() {
        let mut d = added(&[1, 4]); // [id2 w4, id1 w1]
        let mut s = LocalityLeastConnection::default();
        assert_eq!(pick(&mut s, &d, at(0, 1)), Some(2));
        // active 5 > weight 4, but nobody below half their weight
        // (id1: 1 * 2 < 1 is false): stays.
        d[0].active = 5;
        d[1].active = 1;
        assert_eq!(pick(&mut s, &d, at(1, 1)), Some(2));
        // id1 idle (0 * 2 < 1): id2 counts as overloaded, wlc picks id1
        // (5*256 * 1 > 0 * 4) and the entry now says id1.
        d[1].active = 0;
        assert_eq!(pick(&mut s, &d, at(2, 1)), Some(1));
        d[0].active = 0;
        assert_eq!(pick(&mut s, &d, at(3, 1)), Some(1));
        // Quiesced or removed: picked afresh.
        d[1].weight = 0;
        assert_eq!(pick(&mut s, &d, at(4, 1)), Some(2));
        let only1: Vec<_> = added(&[1]);
        assert_eq!(pick(&mut s, &only1, at(5, 1)), Some(1));
    }

    #[test]
    fn threshold_overload_flag_does_not_move_a_remembered_server() {
        let mut d = added(&[1, 1]);
        let mut s = LocalityLeastConnection::default();
        assert_eq!(pick(&mut s, &d, at(0, 1)), Some(2));
        d[0].overloaded = true;
        assert_eq!(pick(&mut s, &d, at(1, 1)), Some(2));
        // A fresh pick skips it.
        assert_eq!(pick(&mut s, &d, at(1, 2)), Some(1));
        d[1].overloaded = true;
        assert_eq!(pick(&mut s, &d, at(1, 3)), None);
    }

    #[test]
    fn entries_expire_after_a_day_idle_at_the_full_check() {
        let mut d = added(&[1, 1]);
        let mut s = LocalityLeastConnection::default();
        // First use at t=0 arms the timer: runs at 60, 120, ... s with the
        // counter starting at 1, so the run at k * 60 s sees counter k and
        // full checks fall on every multiple of 30 minutes.
        assert_eq!(pick(&mut s, &d, at(0, 1)), Some(2));
        d[0].active = 1; // wlc would now prefer id1
                         // Used again 23 h later: the full check at 24 h does not drop it.
        assert_eq!(pick(&mut s, &d, at(23 * 3600, 1)), Some(2));
        assert_eq!(pick(&mut s, &d, at(25 * 3600, 2)), Some(1));
        // Idle since 23 h, it is dropped by the first full check at or after
        // 23 h + 24 h = 47 h, which is a multiple of 30 minutes; then the
        // pick is fresh.
        let t = 47 * 3600;
        s.table.run_timers(Time::from_secs(t - 1));
        assert!(s.table.contains(&at(0, 1).dst));
        assert_eq!(pick(&mut s, &d, at(t, 1)), Some(1));
    }

    #[test]
    fn none_when_nothing_available() {
        let d = added(&[0, 0]);
        let mut s = LocalityLeastConnection::default();
        assert_eq!(pick(&mut s, &d, at(0, 1)), None);
        assert_eq!(s.schedule(&[], &flow()), None);
    }
}
