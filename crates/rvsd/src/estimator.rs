//! Rate estimation the way IPVS does it (ip_vs_est.c), so `rvsadm -L --rate`
//! reads like the kernel's: every 2 s the counter deltas are scaled
//! (connections and packets `<< 9`, bytes `<< 4`), folded into an average with
//! weight 1/4, and read out rounded (`(avg + 0x1FF) >> 10` per second for
//! connections and packets, `(avg + 0xF) >> 5` for bytes).

use std::collections::HashMap;
use std::hash::Hash;

use rvs_engine::Stats;

/// How often [`Estimator::tick`] must run, as IPVS's timer.
pub(crate) const TICK: std::time::Duration = std::time::Duration::from_secs(2);

/// Per-second rates, as `ipvsadm --rate` shows them (BPS = bytes/s).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Rates {
    pub(crate) cps: u64,
    pub(crate) in_pps: u64,
    pub(crate) out_pps: u64,
    pub(crate) in_bps: u64,
    pub(crate) out_bps: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Est {
    last: Stats,
    cps: u64,
    inpps: u64,
    outpps: u64,
    inbps: u64,
    outbps: u64,
}

fn fold(avg: &mut u64, delta: u64, shift: u32) {
    // avg += (rate - avg) >> 2, in signed arithmetic as the kernel's s64.
    let rate = (delta << shift) as i64;
    let a = *avg as i64;
    *avg = (a + ((rate - a) >> 2)).max(0) as u64;
}

impl Est {
    fn update(&mut self, now: &Stats) {
        let d = |a: u64, b: u64| a.saturating_sub(b);
        fold(&mut self.cps, d(now.conns, self.last.conns), 9);
        fold(&mut self.inpps, d(now.in_packets, self.last.in_packets), 9);
        fold(
            &mut self.outpps,
            d(now.out_packets, self.last.out_packets),
            9,
        );
        fold(&mut self.inbps, d(now.in_bytes, self.last.in_bytes), 4);
        fold(&mut self.outbps, d(now.out_bytes, self.last.out_bytes), 4);
        self.last = *now;
    }

    fn rates(&self) -> Rates {
        Rates {
            cps: (self.cps + 0x1FF) >> 10,
            in_pps: (self.inpps + 0x1FF) >> 10,
            out_pps: (self.outpps + 0x1FF) >> 10,
            in_bps: (self.inbps + 0xF) >> 5,
            out_bps: (self.outbps + 0xF) >> 5,
        }
    }
}

/// Estimators for a set of counters keyed by `K`.
#[derive(Debug)]
pub(crate) struct Estimator<K: Eq + Hash> {
    ests: HashMap<K, Est>,
}

impl<K: Eq + Hash> Default for Estimator<K> {
    fn default() -> Self {
        Estimator {
            ests: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash + Clone> Estimator<K> {
    /// One 2-second step with the current counters; keys not seen are dropped.
    pub(crate) fn tick<'a>(&mut self, current: impl IntoIterator<Item = (K, &'a Stats)>) {
        let mut next = HashMap::with_capacity(self.ests.len());
        for (k, s) in current {
            let mut e = self.ests.remove(&k).unwrap_or(Est {
                last: *s,
                ..Est::default()
            });
            e.update(s);
            next.insert(k, e);
        }
        self.ests = next;
    }

    pub(crate) fn rates(&self, k: &K) -> Rates {
        self.ests.get(k).map(Est::rates).unwrap_or_default()
    }

    /// `ipvsadm -Z`: rates restart from zero (ip_vs_zero_estimator).
    #[cfg(test)]
    pub(crate) fn clear(&mut self) {
        self.ests.clear();
    }

    /// `ipvsadm -Z [service]`: keeps only the estimators `keep` accepts.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.ests.retain(|k, _| keep(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(conns: u64, pkts: u64, bytes: u64) -> Stats {
        Stats {
            conns,
            in_packets: pkts,
            out_packets: 0,
            in_bytes: bytes,
            out_bytes: 0,
        }
    }

    #[test]
    fn converges_to_the_steady_rate_like_the_kernel() {
        let mut e: Estimator<u8> = Estimator::default();
        // 100 conn/s, 1000 pkt/s, 1 MB/s for a while.
        for i in 0..100u64 {
            e.tick([(1u8, &stats(200 * i, 2000 * i, 2_000_000 * i))]);
        }
        let r = e.rates(&1);
        assert_eq!((r.cps, r.in_pps, r.in_bps), (100, 1000, 1_000_000));
    }

    #[test]
    fn first_steps_follow_the_quarter_weighted_average() {
        let mut e: Estimator<u8> = Estimator::default();
        e.tick([(1u8, &stats(0, 0, 0))]);
        e.tick([(1u8, &stats(200, 0, 0))]);
        // rate = 200 << 9 = 102400; avg = 102400 / 4 = 25600; (25600 + 511) >> 10 = 25.
        assert_eq!(e.rates(&1).cps, 25);
        e.tick([(1u8, &stats(400, 0, 0))]);
        // avg = 25600 + (102400 - 25600) / 4 = 44800 -> 44.
        assert_eq!(e.rates(&1).cps, 44);
        e.clear();
        assert_eq!(e.rates(&1).cps, 0);
    }
}
