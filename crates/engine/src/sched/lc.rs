//! Least connection (`lc`, ip_vs_lc.c): the available server with the
//! smallest overhead (active × 256 + inactive); the first one in list order
//! on ties.

use super::{DestInfo, FlowInfo, Scheduler};

/// Least connection; stateless.
#[derive(Debug, Default, Clone, Copy)]
pub struct LeastConnection;

impl Scheduler for LeastConnection {
    fn name(&self) -> &'static str {
        "lc"
    }

    fn schedule(&mut self, dests: &[DestInfo], _flow: &FlowInfo) -> Option<usize> {
        let mut least: Option<(usize, u64)> = None;
        for (i, d) in dests.iter().enumerate() {
            if !d.available() {
                continue;
            }
            let doh = d.overhead();
            // Strictly smaller only: the first minimum in list order stays.
            if least.is_none_or(|(_, loh)| doh < loh) {
                least = Some((i, doh));
            }
        }
        least.map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{added, flow, picks};
    use super::*;

    #[test]
    fn fewest_connections_first_in_list_order_on_ties() {
        // List is newest first: [id3, id2, id1]. All idle: id3 (head) wins
        // every time because the counts do not change between picks here.
        let mut d = added(&[1, 1, 1]);
        let mut s = LeastConnection;
        assert_eq!(picks(&mut s, &d, 3), vec![3, 3, 3]);
        // id3 with one active (256) loses to id2 with 255 inactive.
        d[0].active = 1;
        d[1].inactive = 255;
        d[2].inactive = 255;
        assert_eq!(picks(&mut s, &d, 1), vec![2]);
        // 256 inactive equals one active: tie, the earlier one (id3) wins.
        d[1].inactive = 256;
        d[2].inactive = 256;
        assert_eq!(picks(&mut s, &d, 1), vec![3]);
    }

    #[test]
    fn weight_is_ignored_except_zero() {
        let mut d = added(&[1, 100]); // [id2 w100, id1 w1]
        d[0].inactive = 2;
        d[1].inactive = 1;
        let mut s = LeastConnection;
        assert_eq!(picks(&mut s, &d, 1), vec![1]);
        d[1].weight = 0;
        assert_eq!(picks(&mut s, &d, 1), vec![2]);
    }

    #[test]
    fn skips_overloaded_and_none_when_nothing_left() {
        let mut d = added(&[1, 1]);
        d[1].inactive = 10; // id1 busier
        d[0].overloaded = true; // id2 over its threshold
        let mut s = LeastConnection;
        assert_eq!(picks(&mut s, &d, 1), vec![1]);
        d[1].overloaded = true;
        assert_eq!(s.schedule(&d, &flow()), None);
        assert_eq!(s.schedule(&[], &flow()), None);
    }
}
