//! Shortest expected delay (`sed`, ip_vs_sed.c): the smallest
//! (active + 1) / weight, inactive connections ignored, compared as
//! `loh * dw > doh * lw`; the first one in list order on ties.

use super::{weighted_least, DestInfo, FlowInfo, Scheduler};

/// `ip_vs_sed_dest_overhead`: the active connections plus the new one.
pub(super) fn sed_overhead(d: &DestInfo) -> u64 {
    u64::from(d.active) + 1
}

/// Shortest expected delay; stateless.
#[derive(Debug, Default, Clone, Copy)]
pub struct ShortestExpectedDelay;

impl Scheduler for ShortestExpectedDelay {
    fn name(&self) -> &'static str {
        "sed"
    }

    fn schedule(&mut self, dests: &[DestInfo], _flow: &FlowInfo) -> Option<usize> {
        // Same two-stage scan as wlc, only the overhead differs.
        weighted_least(dests, sed_overhead)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{added, flow, picks};
    use super::*;

    #[test]
    fn counts_the_new_connection() {
        // [id2 w1, id1 w3], both idle: id2 costs 1/1, id1 1/3: id1 wins
        // (wlc would keep the head: 0 vs 0).
        let d = added(&[3, 1]);
        let mut s = ShortestExpectedDelay;
        assert_eq!(picks(&mut s, &d, 1), vec![1]);
    }

    #[test]
    fn greedy_sequence() {
        // Adding one active per pick to [id2 w1, id1 w2]:
        // (a2+1)/1 vs (a1+1)/2. Start 1 vs 1/2 -> id1; 1 vs 1 tie -> id2
        // (head); 2 vs 1 -> id1; 2 vs 3/2 -> id1; 2 vs 2 tie -> id2; ...
        let mut d = added(&[2, 1]);
        let mut s = ShortestExpectedDelay;
        let mut got = Vec::new();
        for _ in 0..6 {
            let i = s.schedule(&d, &flow()).unwrap();
            d[i].active += 1;
            got.push(d[i].id);
        }
        assert_eq!(got, vec![1, 2, 1, 1, 2, 1]);
    }

    #[test]
    fn inactive_ignored_zero_and_overloaded_skipped() {
        let mut d = added(&[1, 1, 1]); // [id3, id2, id1]
        d[0].inactive = 1000;
        let mut s = ShortestExpectedDelay;
        assert_eq!(picks(&mut s, &d, 1), vec![3]);
        d[0].weight = 0;
        d[1].overloaded = true;
        assert_eq!(picks(&mut s, &d, 1), vec![1]);
        d[2].overloaded = true;
        assert_eq!(s.schedule(&d, &flow()), None);
    }
}
