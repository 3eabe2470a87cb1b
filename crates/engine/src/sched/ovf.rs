//! Overflow connection (`ovf`, ip_vs_ovf.c): the highest-weight server whose
//! active connections do not exceed its weight; the first one in list order
//! on ties. Only active connections count (so UDP barely works with it, as the
//! kernel's comment warns).

use super::{DestInfo, FlowInfo, Scheduler};

/// Overflow connection; stateless.
#[derive(Debug, Default, Clone, Copy)]
pub struct Overflow;

impl Scheduler for Overflow {
    fn name(&self) -> &'static str {
        "ovf"
    }

    fn schedule(&mut self, dests: &[DestInfo], _flow: &FlowInfo) -> Option<usize> {
        let mut best: Option<usize> = None;
        let mut hw = 0u32;
        for (i, d) in dests.iter().enumerate() {
            // The kernel skips a server once active > weight, so it still
            // takes one while active == weight.
            if d.overloaded || d.weight == 0 || d.active > d.weight {
                continue;
            }
            if best.is_none() || d.weight > hw {
                best = Some(i);
                hw = d.weight;
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{added, flow};
    use super::*;

    #[test]
    fn fills_the_heaviest_then_overflows() {
        // [id2 w2, id1 w3]. Adding one active per pick: id1 takes picks while
        // active <= 3 (4 picks: 0,1,2,3 before each), then id2 while <= 2
        // (3 picks), then nothing.
        let mut d = added(&[3, 2]);
        let mut s = Overflow;
        let mut got = Vec::new();
        while let Some(i) = s.schedule(&d, &flow()) {
            d[i].active += 1;
            got.push(d[i].id);
            assert!(got.len() <= 10);
        }
        assert_eq!(got, vec![1, 1, 1, 1, 2, 2, 2]);
    }

    #[test]
    fn ties_keep_list_order_and_skip_unavailable() {
        let mut d = added(&[4, 4, 0]); // [id3 w0, id2 w4, id1 w4]
        let mut s = Overflow;
        assert_eq!(s.schedule(&d, &flow()).map(|i| d[i].id), Some(2));
        d[1].overloaded = true;
        assert_eq!(s.schedule(&d, &flow()).map(|i| d[i].id), Some(1));
        d[2].active = 5;
        assert_eq!(s.schedule(&d, &flow()), None);
    }
}
