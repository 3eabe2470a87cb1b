//! Weighted failover (`fo`, ip_vs_fo.c): everything to the available server
//! with the highest weight; the first one in list order on ties.

use super::{DestInfo, FlowInfo, Scheduler};

/// Weighted failover; stateless.
#[derive(Debug, Default, Clone, Copy)]
pub struct WeightedFailover;

impl Scheduler for WeightedFailover {
    fn name(&self) -> &'static str {
        "fo"
    }

    fn schedule(&mut self, dests: &[DestInfo], _flow: &FlowInfo) -> Option<usize> {
        let mut best: Option<usize> = None;
        let mut hw = 0u32; // weight 0 never beats it
        for (i, d) in dests.iter().enumerate() {
            if !d.overloaded && d.weight > hw {
                best = Some(i);
                hw = d.weight;
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{added, flow, picks};
    use super::*;

    #[test]
    fn highest_weight_then_fails_over() {
        let mut d = added(&[5, 10, 10, 1]); // [id4 w1, id3 w10, id2 w10, id1 w5]
        let mut s = WeightedFailover;
        // Tie of id3 and id2: the earlier one in the list (id3, newer).
        assert_eq!(picks(&mut s, &d, 2), vec![3, 3]);
        d[1].overloaded = true;
        assert_eq!(picks(&mut s, &d, 1), vec![2]);
        d[2].weight = 0;
        assert_eq!(picks(&mut s, &d, 1), vec![1]);
        // Load does not matter.
        d[3].active = 1_000_000;
        assert_eq!(picks(&mut s, &d, 1), vec![1]);
    }

    #[test]
    fn none_available() {
        let mut d = added(&[0, 1]);
        d[0].overloaded = true;
        let mut s = WeightedFailover;
        assert_eq!(s.schedule(&d, &flow()), None);
        assert_eq!(s.schedule(&[], &flow()), None);
    }
}
