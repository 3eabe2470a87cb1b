//! Weighted round robin (`wrr`, ip_vs_wrr.c): passes over the list with a
//! decreasing current weight `cw`, stepping by the gcd of the weights, so a
//! server of weight w is picked w/gcd times per cycle.

use super::{DestInfo, FlowInfo, Scheduler};

/// Weighted round robin state: the kernel's `ip_vs_wrr_mark`.
#[derive(Debug, Default)]
pub struct WeightedRoundRobin {
    /// Last picked index; `None` = list head.
    cl: Option<usize>,
    /// Current weight.
    cw: i64,
    /// Maximum weight, reduced by `di - 1` so the last pass runs at cw = 1.
    mw: i64,
    /// Step: gcd of the positive weights.
    di: i64,
    /// Set once `dests_changed` or the first schedule computed mw/di.
    initialised: bool,
}

fn gcd(mut a: i64, mut b: i64) -> i64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl WeightedRoundRobin {
    fn recompute(&mut self, dests: &[DestInfo]) {
        let g = dests
            .iter()
            .map(|d| i64::from(d.weight))
            .filter(|&w| w > 0)
            .fold(0, |g, w| if g > 0 { gcd(w, g) } else { w });
        self.di = if g > 0 { g } else { 1 };
        let max = dests.iter().map(|d| i64::from(d.weight)).max().unwrap_or(0);
        self.mw = max - (self.di - 1);
        self.initialised = true;
    }
}

impl Scheduler for WeightedRoundRobin {
    fn name(&self) -> &'static str {
        "wrr"
    }

    fn dests_changed(&mut self, _old: &[DestInfo], new: &[DestInfo]) {
        let fresh = !self.initialised;
        self.cl = None;
        self.recompute(new);
        if fresh || self.cw > self.mw || self.cw == 0 {
            self.cw = self.mw;
        } else if self.di > 1 {
            self.cw = (self.cw / self.di) * self.di + 1;
        }
    }

    fn schedule(&mut self, dests: &[DestInfo], _flow: &FlowInfo) -> Option<usize> {
        if !self.initialised {
            self.recompute(dests);
            self.cw = self.mw;
        }
        if self.mw <= 0 || dests.is_empty() {
            return None;
        }
        let last = self.cl;
        let mut cur = self.cl;
        let mut stop: Option<usize> = None;
        let mut last_pass = false;
        let mut restarted = false;
        loop {
            // Continue the walk after `cur` to the end of the list.
            let from = cur.map_or(0, |i| i + 1);
            for (i, d) in dests.iter().enumerate().skip(from) {
                if !d.overloaded && i64::from(d.weight) >= self.cw {
                    self.cl = Some(i);
                    return Some(i);
                }
                if Some(i) == stop {
                    self.cl = Some(i);
                    return None;
                }
            }
            cur = None; // wrapped to the head
            self.cw -= self.di;
            if self.cw <= 0 {
                self.cw = self.mw;
                if last_pass || last.is_none() {
                    self.cl = None;
                    return None;
                }
                restarted = true;
            }
            last_pass = self.cw <= self.di;
            if last_pass && restarted && last.is_some() {
                stop = last;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{added, flow, picks};
    use super::*;

    /// A service whose servers were added one `ipvsadm -a` at a time: the
    /// kernel calls dest_changed after each.
    fn fresh(d: &[DestInfo]) -> WeightedRoundRobin {
        let mut s = WeightedRoundRobin::default();
        let mut list: Vec<DestInfo> = Vec::new();
        for x in d.iter().rev() {
            let old = list.clone();
            list.insert(0, *x);
            s.dests_changed(&old, &list);
        }
        s
    }

    #[test]
    fn weights_1_2_3_give_the_kernel_sequence() {
        // Kernel list after adding weights 1,2,3: [id3 w3, id2 w2, id1 w1].
        // Adding them one by one leaves cw = 1 (dest_changed keeps a non-zero
        // cw that is <= mw), so the first pass takes everyone; then cycles of
        // cw=3: id3; cw=2: id3,id2; cw=1: id3,id2,id1.
        let d = added(&[1, 2, 3]);
        let mut s = fresh(&d);
        assert_eq!(
            picks(&mut s, &d, 12),
            vec![3, 2, 1, 3, 3, 2, 3, 2, 1, 3, 3, 2]
        );
    }

    #[test]
    fn all_at_once_starts_at_max_weight() {
        let d = added(&[1, 2, 3]);
        let mut s = WeightedRoundRobin::default();
        s.dests_changed(&[], &d);
        assert_eq!(picks(&mut s, &d, 6), vec![3, 3, 2, 3, 2, 1]);
    }

    #[test]
    fn sixty_picks_split_10_20_30() {
        let d = added(&[1, 2, 3]);
        let mut s = fresh(&d);
        let p = picks(&mut s, &d, 60);
        let count = |id| p.iter().filter(|&&x| x == id).count();
        assert_eq!((count(1), count(2), count(3)), (10, 20, 30));
    }

    #[test]
    fn gcd_steps() {
        // Weights 2 then 4. Adding 2: di 2, mw 1, cw 0 -> mw = 1. Adding 4:
        // di 2, mw 4 - 1 = 3, cw 1 stays (1/2*2+1 = 1). So the first pass
        // (cw 1) takes both; then cycles of cw=3: id2 (w4); cw=1: id2, id1.
        let d = added(&[2, 4]);
        let mut s = fresh(&d);
        assert_eq!(picks(&mut s, &d, 8), vec![2, 1, 2, 2, 1, 2, 2, 1]);
    }

    #[test]
    fn equal_weights_are_round_robin() {
        let d = added(&[5, 5, 5]);
        let mut s = fresh(&d);
        assert_eq!(picks(&mut s, &d, 6), vec![3, 2, 1, 3, 2, 1]);
    }

    #[test]
    fn all_zero_or_overloaded_is_none() {
        let d = added(&[0, 0]);
        let mut s = fresh(&d);
        assert_eq!(s.schedule(&d, &flow()), None);
        let mut d = added(&[1, 1]);
        d.iter_mut().for_each(|x| x.overloaded = true);
        let mut s = fresh(&d);
        assert_eq!(s.schedule(&d, &flow()), None);
        // And it recovers once one is available again.
        d[1].overloaded = false;
        assert_eq!(s.schedule(&d, &flow()).map(|i| d[i].id), Some(1));
    }

    #[test]
    fn quiescing_a_server_mid_cycle() {
        let d = added(&[1, 1, 1]);
        let mut s = fresh(&d);
        assert_eq!(picks(&mut s, &d, 1), vec![3]);
        let mut d2 = d.clone();
        d2[1].weight = 0; // id 2 quiesced
        s.dests_changed(&d, &d2);
        assert_eq!(picks(&mut s, &d2, 4), vec![3, 1, 3, 1]);
    }

    #[test]
    fn first_schedule_without_dests_changed_initialises() {
        let d = added(&[1, 3]);
        let mut s = WeightedRoundRobin::default();
        // mw = 3: cw=3: id2; cw=2: id2; cw=1: id2, id1.
        assert_eq!(picks(&mut s, &d, 4), vec![2, 2, 2, 1]);
    }
}
