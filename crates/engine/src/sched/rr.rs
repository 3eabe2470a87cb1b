//! Round robin (`rr`, ip_vs_rr.c): each available server in list order.

use super::{position, DestInfo, FlowInfo, Scheduler};

/// Round robin; remembers the last server picked (or the list head).
#[derive(Debug, Default)]
pub struct RoundRobin {
    /// Index of the last pick; `None` = the list head (before the first).
    last: Option<usize>,
}

impl Scheduler for RoundRobin {
    fn name(&self) -> &'static str {
        "rr"
    }

    fn dests_changed(&mut self, old: &[DestInfo], new: &[DestInfo]) {
        // The kernel keeps its cursor on the same server; if that server was
        // removed, it steps back to the entry before it (or the head).
        self.last = self.last.and_then(|i| {
            old.get(..=i)?
                .iter()
                .rev()
                .find_map(|d| position(new, d.id))
        });
    }

    fn schedule(&mut self, dests: &[DestInfo], _flow: &FlowInfo) -> Option<usize> {
        let n = dests.len();
        if n == 0 {
            return None;
        }
        let start = match self.last {
            Some(i) if i < n => i + 1,
            _ => 0,
        };
        // One full lap starting after the cursor, wrapping past the head.
        let pick = (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| dests[i].available())?;
        self.last = Some(pick);
        Some(pick)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{added, flow, picks};
    use super::*;

    #[test]
    fn newest_first_like_the_kernel_list() {
        let d = added(&[1, 1, 1]);
        let mut s = RoundRobin::default();
        assert_eq!(picks(&mut s, &d, 7), vec![3, 2, 1, 3, 2, 1, 3]);
    }

    #[test]
    fn skips_quiescent_and_overloaded() {
        let mut d = added(&[1, 0, 1, 1]);
        d[0].overloaded = true; // id 4
        let mut s = RoundRobin::default();
        assert_eq!(picks(&mut s, &d, 4), vec![3, 1, 3, 1]);
    }

    #[test]
    fn none_available() {
        let d = added(&[0, 0]);
        let mut s = RoundRobin::default();
        assert_eq!(s.schedule(&d, &flow()), None);
        assert_eq!(s.schedule(&[], &flow()), None);
    }

    #[test]
    fn cursor_survives_additions_and_removals() {
        let d = added(&[1, 1, 1]); // list: 3 2 1
        let mut s = RoundRobin::default();
        assert_eq!(picks(&mut s, &d, 2), vec![3, 2]);
        // Add server 4: it goes to the head; the cursor stays on 2.
        let d2 = added(&[1, 1, 1, 1]); // 4 3 2 1
        s.dests_changed(&d, &d2);
        assert_eq!(picks(&mut s, &d2, 4), vec![1, 4, 3, 2]);
        // Remove server 2 (the cursor): it steps back to 3.
        let d3: Vec<_> = d2.iter().copied().filter(|x| x.id != 2).collect();
        s.dests_changed(&d2, &d3);
        assert_eq!(picks(&mut s, &d3, 3), vec![1, 4, 3]);
    }
}
