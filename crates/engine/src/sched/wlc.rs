//! Weighted least connection (`wlc`, ip_vs_wlc.c; ipvsadm's default): the
//! smallest overhead / weight, compared without division as
//! `loh * dw > doh * lw`; the first one in list order on ties.

use super::{weighted_least, DestInfo, FlowInfo, Scheduler};

/// Weighted least connection; stateless.
#[derive(Debug, Default, Clone, Copy)]
pub struct WeightedLeastConnection;

impl Scheduler for WeightedLeastConnection {
    fn name(&self) -> &'static str {
        "wlc"
    }

    fn schedule(&mut self, dests: &[DestInfo], _flow: &FlowInfo) -> Option<usize> {
        weighted_least(dests, DestInfo::overhead)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{added, flow, picks};
    use super::*;

    #[test]
    fn overhead_per_weight() {
        // [id2 w3, id1 w1]. id2: 3 active = 768 / 3 = 256; id1: 1 active =
        // 256 / 1 = 256: tie, the head (id2) stays.
        let mut d = added(&[1, 3]);
        d[0].active = 3;
        d[1].active = 1;
        let mut s = WeightedLeastConnection;
        assert_eq!(picks(&mut s, &d, 1), vec![2]);
        // One more inactive on id2: 769 * 1 > 256 * 3, id1 wins.
        d[0].inactive = 1;
        assert_eq!(picks(&mut s, &d, 1), vec![1]);
    }

    #[test]
    fn simulated_load_follows_weights() {
        // Each pick adds one active connection to the picked server: after
        // 40 picks the split is 10/30 for weights 1/3 (the kernel's greedy
        // rule keeps active/weight level).
        let mut d = added(&[1, 3]);
        let mut s = WeightedLeastConnection;
        for _ in 0..40 {
            let i = s.schedule(&d, &flow()).unwrap();
            d[i].active += 1;
        }
        assert_eq!((d[1].active, d[0].active), (10, 30));
    }

    #[test]
    fn first_available_is_the_start_even_if_busy() {
        // [id3 w0, id2 overloaded, id1 w1]: only id1 is a candidate.
        let mut d = added(&[1, 1, 0]);
        d[1].overloaded = true;
        d[2].active = 1000;
        let mut s = WeightedLeastConnection;
        assert_eq!(picks(&mut s, &d, 1), vec![1]);
        d[2].weight = 0;
        assert_eq!(s.schedule(&d, &flow()), None);
        assert_eq!(s.schedule(&[], &flow()), None);
    }

    #[test]
    fn large_counts_do_not_overflow() {
        let mut d = added(&[2_000_000_000, 2_000_000_000]);
        d[0].active = u32::MAX;
        d[1].active = u32::MAX - 1;
        let mut s = WeightedLeastConnection;
        assert_eq!(picks(&mut s, &d, 1), vec![1]);
    }
}
