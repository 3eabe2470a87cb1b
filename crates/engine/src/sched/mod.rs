//! Schedulers: which real server gets a new connection.
//!
//! One file per scheduler, registered under its ipvsadm name, with the
//! kernel's semantics (`net/netfilter/ipvs/ip_vs_<name>.c`). The destination
//! list a scheduler sees is in the kernel's order: IPVS inserts a new real
//! server at the *head* of the service's list, so the most recently added
//! server comes first. Keeping that order is what makes our picks equal the
//! kernel's for the same `ipvsadm -a` sequence.

use std::fmt;
use std::net::IpAddr;

mod dh;
mod fo;
mod hsiphash;
mod lblc;
mod lblcr;
mod lc;
mod locality;
mod mh;
mod nq;
mod ovf;
mod rr;
mod sed;
mod sh;
mod twos;
mod wlc;
mod wrr;

pub use dh::DestinationHashing;
pub use fo::WeightedFailover;
pub use lblc::LocalityLeastConnection;
pub use lblcr::LocalityLeastConnectionReplication;
pub use lc::LeastConnection;
pub use mh::MaglevHashing;
pub use nq::NeverQueue;
pub use ovf::Overflow;
pub use rr::RoundRobin;
pub use sed::ShortestExpectedDelay;
pub use sh::SourceHashing;
pub use twos::TwoChoices;
pub use wlc::WeightedLeastConnection;
pub use wrr::WeightedRoundRobin;

/// The scheduler-visible state of one real server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DestInfo {
    /// Stable identity across configuration changes (engine slot id).
    pub id: u32,
    /// Real server address.
    pub addr: IpAddr,
    /// Real server port.
    pub port: u16,
    /// Weight; 0 = quiescent.
    pub weight: u32,
    /// Connections in ESTABLISHED.
    pub active: u32,
    /// All other tracked connections.
    pub inactive: u32,
    /// Over its upper threshold: takes no new connections.
    pub overloaded: bool,
}

impl DestInfo {
    /// Whether it may take new connections (weight > 0 and not overloaded).
    pub fn available(&self) -> bool {
        self.weight > 0 && !self.overloaded
    }

    /// The kernel's load measure: active × 256 + inactive.
    pub fn overhead(&self) -> u64 {
        u64::from(self.active) * 256 + u64::from(self.inactive)
    }
}

/// Scheduler flags (`ipvsadm -b`), with the kernel's values; the names
/// and defaults every crate shares live in `rvs_vocab::sched`.
pub use rvs_vocab::sched::{flags, DEFAULT, NAMES};

/// What a scheduler is created with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedParams {
    /// `-b` flags (see [`flags`]).
    pub flags: u32,
    /// Seed for schedulers that draw random numbers (twos); fixed in tests.
    pub seed: u64,
}

/// The packet fields hashing schedulers look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowInfo {
    /// Engine time, for schedulers with expiring state (lblc, lblcr).
    pub now: crate::time::Time,
    /// Client address.
    pub src: IpAddr,
    /// Client port.
    pub src_port: u16,
    /// Virtual address.
    pub dst: IpAddr,
    /// Virtual port.
    pub dst_port: u16,
}

/// A scheduling algorithm with per-service state.
///
/// Call order: [`Scheduler::dests_changed`] whenever the list or any weight
/// changed (the kernel's add_dest/del_dest/upd_dest), then
/// [`Scheduler::schedule`] for each new connection.
pub trait Scheduler: Send + fmt::Debug {
    /// ipvsadm name.
    fn name(&self) -> &'static str;

    /// The destination list changed from `old` to `new` (kernel order).
    fn dests_changed(&mut self, _old: &[DestInfo], _new: &[DestInfo]) {}

    /// Picks a destination (index into `dests`) for a new connection, or
    /// `None` when none is available.
    fn schedule(&mut self, dests: &[DestInfo], flow: &FlowInfo) -> Option<usize>;
}

/// A fresh scheduler by ipvsadm name.
pub fn create(name: &str, params: SchedParams) -> Option<Box<dyn Scheduler>> {
    Some(match name {
        "rr" => Box::new(RoundRobin::default()),
        "wrr" => Box::new(WeightedRoundRobin::default()),
        "lc" => Box::new(LeastConnection),
        "wlc" => Box::new(WeightedLeastConnection),
        "sed" => Box::new(ShortestExpectedDelay),
        "nq" => Box::new(NeverQueue),
        "lblc" => Box::new(LocalityLeastConnection::default()),
        "lblcr" => Box::new(LocalityLeastConnectionReplication::default()),
        "dh" => Box::new(DestinationHashing::default()),
        "sh" => Box::new(SourceHashing::new(params.flags)),
        "mh" => Box::new(MaglevHashing::new(params.flags)),
        "fo" => Box::new(WeightedFailover),
        "ovf" => Box::new(Overflow),
        "twos" => Box::new(TwoChoices::new(params.seed)),
        _ => return None,
    })
}

/// Position of the dest with `id` in `list`.
fn position(list: &[DestInfo], id: u32) -> Option<usize> {
    list.iter().position(|d| d.id == id)
}

/// Whether `ids` is exactly the id sequence of `list`: hashing schedulers keep
/// tables of list positions and rebuild them if the list moved under them.
fn same_ids(ids: &[u32], list: &[DestInfo]) -> bool {
    ids.len() == list.len() && ids.iter().zip(list).all(|(a, d)| *a == d.id)
}

/// The kernel's address fold for its hash tables (`addr_fold` in ip_vs_sh.c,
/// ip_vs_dh.c, ip_vs_lblc*.c, ip_vs_mh.c), in host order: IPv4 as is, IPv6
/// as the XOR of its four 32-bit words.
fn addr_fold(addr: &IpAddr) -> u32 {
    match addr {
        IpAddr::V4(a) => u32::from(*a),
        IpAddr::V6(a) => a
            .segments()
            .chunks_exact(2)
            .fold(0, |acc, w| acc ^ (u32::from(w[0]) << 16 | u32::from(w[1]))),
    }
}

/// The kernel's `hash_32(val, bits)` (include/linux/hash.h, generic version
/// used on x86_64): multiply by GOLDEN_RATIO_32, keep the top `bits`.
fn hash_32(val: u32, bits: u32) -> u32 {
    val.wrapping_mul(0x61C8_8647) >> (32 - bits)
}

/// Weighted least-connection pick shared by wlc, lblc and lblcr
/// (`ip_vs_wlc_schedule`, `__ip_vs_lblc_schedule`, `__ip_vs_lblcr_schedule`):
/// the first available server in list order, then any later one that is not
/// overloaded and strictly less loaded per weight (`loh * dw > doh * lw`).
fn weighted_least(dests: &[DestInfo], overhead: impl Fn(&DestInfo) -> u64) -> Option<usize> {
    let first = dests.iter().position(DestInfo::available)?;
    let mut least = first;
    let mut loh = overhead(&dests[first]);
    for (i, d) in dests.iter().enumerate().skip(first + 1) {
        if d.overloaded {
            continue;
        }
        let doh = overhead(d);
        // 128-bit products: the kernel's are 64-bit of 32-bit operands; ours
        // are 64-bit overheads times 32-bit weights. A weight-0 server never
        // wins (0 > x is false), as in the kernel.
        if u128::from(loh) * u128::from(d.weight)
            > u128::from(doh) * u128::from(dests[least].weight)
        {
            least = i;
            loh = doh;
        }
    }
    Some(least)
}

/// lblc/lblcr's `is_overloaded`: more active connections than its weight
/// while some server (any in the list) is below half of its own.
fn locality_overloaded(dest: &DestInfo, dests: &[DestInfo]) -> bool {
    dest.active > dest.weight
        && dests
            .iter()
            .any(|d| u64::from(d.active) * 2 < u64::from(d.weight))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shared_name_has_its_scheduler_and_no_other_does() {
        for name in NAMES {
            let s = create(name, SchedParams::default()).expect(name);
            assert_eq!(s.name(), name);
        }
        assert!(create("xyz", SchedParams::default()).is_none());
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;
    use std::net::Ipv4Addr;

    /// Dests as the kernel lists them after `ipvsadm -a` of `weights` in order
    /// (newest first). ids are 1-based in order of addition.
    pub(crate) fn added(weights: &[u32]) -> Vec<DestInfo> {
        let mut v: Vec<DestInfo> = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| DestInfo {
                id: i as u32 + 1,
                addr: IpAddr::V4(Ipv4Addr::new(10, 0, 2, 11 + i as u8)),
                port: 80,
                weight: w,
                active: 0,
                inactive: 0,
                overloaded: false,
            })
            .collect();
        v.reverse();
        v
    }

    pub(crate) fn flow() -> FlowInfo {
        FlowInfo {
            now: crate::time::Time::from_secs(100),
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 1, 2)),
            src_port: 40000,
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 100, 1)),
            dst_port: 80,
        }
    }

    /// Runs `n` picks and returns the picked ids.
    pub(crate) fn picks(s: &mut dyn Scheduler, dests: &[DestInfo], n: usize) -> Vec<u32> {
        (0..n)
            .map(|_| s.schedule(dests, &flow()).map_or(0, |i| dests[i].id))
            .collect()
    }
}
