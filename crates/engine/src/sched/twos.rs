//! Weighted random two choices (`twos`, ip_vs_twos.c): draw two servers at
//! random, each with probability proportional to its weight, and take the one
//! with the smaller overhead per weight.
//!
//! The kernel draws with `get_random_u32()`; we draw from a seeded
//! SplitMix64 so a run is replayable. The structure is the kernel's: both
//! draws are `rand % (total + 1)` (so the draw range is inclusive and the
//! first available server gets one extra chance), each is walked down the
//! list subtracting weights until it reaches `<= 0`, and the second choice
//! replaces the first only if strictly better (`w2 * oh1 > w1 * oh2`).

use super::{DestInfo, FlowInfo, Scheduler};

/// Two random choices with a deterministic generator.
#[derive(Debug, Clone)]
pub struct TwoChoices {
    /// SplitMix64 state.
    state: u64,
}

impl TwoChoices {
    /// A scheduler drawing from `seed` (the engine derives it per service).
    pub fn new(seed: u64) -> Self {
        TwoChoices { state: seed }
    }

    /// Next 32 random bits (SplitMix64, upper half).
    fn next_u32(&mut self) -> u32 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 32) as u32
    }
}

impl Scheduler for TwoChoices {
    fn name(&self) -> &'static str {
        "twos"
    }

    fn schedule(&mut self, dests: &[DestInfo], _flow: &FlowInfo) -> Option<usize> {
        let total: u64 = dests
            .iter()
            .filter(|d| d.available())
            .map(|d| u64::from(d.weight))
            .sum();
        if total == 0 {
            return None;
        }
        let mut r1 = i128::from(u64::from(self.next_u32()) % (total + 1));
        let mut r2 = i128::from(u64::from(self.next_u32()) % (total + 1));
        let mut c1: Option<usize> = None;
        let mut c2: Option<usize> = None;
        for (i, d) in dests.iter().enumerate() {
            if !d.available() {
                continue;
            }
            r1 -= i128::from(d.weight);
            r2 -= i128::from(d.weight);
            if r1 <= 0 && c1.is_none() {
                c1 = Some(i);
            }
            if r2 <= 0 && c2.is_none() {
                c2 = Some(i);
            }
            if c1.is_some() && c2.is_some() {
                break;
            }
        }
        // Both draws are at most the total, so both walks end on a server.
        let (c1, c2) = (c1?, c2?);
        let (a, b) = (&dests[c1], &dests[c2]);
        let better = u128::from(b.weight) * u128::from(a.overhead())
            > u128::from(a.weight) * u128::from(b.overhead());
        Some(if better { c2 } else { c1 })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{added, flow};
    use super::*;

    fn counts(s: &mut TwoChoices, d: &[DestInfo], n: usize) -> Vec<usize> {
        let mut c = vec![0; d.len()];
        for _ in 0..n {
            c[s.schedule(d, &flow()).unwrap()] += 1;
        }
        c
    }

    #[test]
    fn deterministic_per_seed() {
        let d = added(&[1, 2, 3]);
        let a: Vec<_> = {
            let mut s = TwoChoices::new(42);
            (0..50).map(|_| s.schedule(&d, &flow())).collect()
        };
        let mut s = TwoChoices::new(42);
        let b: Vec<_> = (0..50).map(|_| s.schedule(&d, &flow())).collect();
        assert_eq!(a, b);
        let mut s = TwoChoices::new(43);
        let c: Vec<_> = (0..50).map(|_| s.schedule(&d, &flow())).collect();
        assert_ne!(a, c);
    }

    #[test]
    fn idle_servers_drawn_by_weight() {
        // All idle: overheads are 0, so the second choice never wins and the
        // pick is the first draw: P(server) = weight / (total + 1), except
        // the first in list order, which also takes the draw r == 0.
        // List [id3 w3, id2 w2, id1 w1], total 6: id3 4/7, id2 2/7, id1 1/7.
        let d = added(&[1, 2, 3]);
        let mut s = TwoChoices::new(7);
        let n = 70_000;
        let c = counts(&mut s, &d, n);
        for (got, want) in c.iter().zip([40_000, 20_000, 10_000]) {
            assert!(got.abs_diff(want) < 1_000, "{c:?}");
        }
    }

    #[test]
    fn loaded_server_loses_the_duel() {
        // id2 is busy: whenever it is one of two different draws it loses.
        let mut d = added(&[1, 1]); // [id2, id1]
        d[0].active = 10;
        let mut s = TwoChoices::new(1);
        let c = counts(&mut s, &d, 30_000);
        // id2 only wins when both draws hit it: P = (2/3)^2 = 4/9.
        assert!(c[0].abs_diff(13_333) < 700, "{c:?}");
    }

    #[test]
    fn skips_unavailable_and_none() {
        let mut d = added(&[1, 0, 1]); // [id3, id2 w0, id1]
        d[0].overloaded = true;
        let mut s = TwoChoices::new(3);
        for _ in 0..100 {
            assert_eq!(s.schedule(&d, &flow()).map(|i| d[i].id), Some(1));
        }
        d[2].weight = 0;
        assert_eq!(s.schedule(&d, &flow()), None);
        assert_eq!(s.schedule(&[], &flow()), None);
    }
}
