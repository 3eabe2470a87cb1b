//! Never queue (`nq`, ip_vs_nq.c): the first idle server (no active
//! connections) in list order; if none is idle, shortest expected delay.

use super::sed::sed_overhead;
use super::{DestInfo, FlowInfo, Scheduler};

/// Never queue; stateless.
#[derive(Debug, Default, Clone, Copy)]
pub struct NeverQueue;

impl Scheduler for NeverQueue {
    fn name(&self) -> &'static str {
        "nq"
    }

    fn schedule(&mut self, dests: &[DestInfo], _flow: &FlowInfo) -> Option<usize> {
        let mut least: Option<(usize, u64)> = None;
        for (i, d) in dests.iter().enumerate() {
            if !d.available() {
                continue;
            }
            if d.active == 0 {
                return Some(i);
            }
            let doh = sed_overhead(d);
            let better = least.is_none_or(|(l, loh)| {
                u128::from(loh) * u128::from(d.weight)
                    > u128::from(doh) * u128::from(dests[l].weight)
            });
            if better {
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
    fn idle_server_wins_even_if_slow() {
        // [id2 w10 busy, id1 w1 idle]: sed would pick id2 (2/10 < 1/1), nq
        // takes the idle id1.
        let mut d = added(&[1, 10]);
        d[0].active = 1;
        let mut s = NeverQueue;
        assert_eq!(picks(&mut s, &d, 1), vec![1]);
        // Inactive connections do not make a server busy.
        d[1].inactive = 50;
        assert_eq!(picks(&mut s, &d, 1), vec![1]);
    }

    #[test]
    fn all_busy_falls_back_to_sed() {
        let mut d = added(&[1, 10]);
        d[0].active = 1; // id2: 2/10
        d[1].active = 1; // id1: 2/1
        let mut s = NeverQueue;
        assert_eq!(picks(&mut s, &d, 1), vec![2]);
        // Tie keeps the first in list order: id2 (10+1)/10 vs id1 ... make
        // them equal: id2 active 19 -> 20/10 = 2 = id1 2/1.
        d[0].active = 19;
        assert_eq!(picks(&mut s, &d, 1), vec![2]);
        d[0].active = 20;
        assert_eq!(picks(&mut s, &d, 1), vec![1]);
    }

    #[test]
    fn skips_unavailable() {
        let mut d = added(&[1, 0, 1]); // [id3, id2 w0, id1]
        d[0].overloaded = true;
        let mut s = NeverQueue;
        assert_eq!(picks(&mut s, &d, 1), vec![1]);
        d[2].weight = 0;
        assert_eq!(s.schedule(&d, &flow()), None);
    }
}
