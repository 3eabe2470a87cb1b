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

mod rr;
mod wrr;

pub use rr::RoundRobin;
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

/// Scheduler flags (`ipvsadm -b`), with the kernel's values.
pub mod flags {
    /// sh: if the hashed server is unavailable, walk on to the next one.
    pub const SH_FALLBACK: u32 = 0x08;
    /// sh: hash the source port too.
    pub const SH_PORT: u32 = 0x10;
    /// mh: if the looked-up server is unavailable, walk on to the next one.
    pub const MH_FALLBACK: u32 = 0x08;
    /// mh: hash the source port too.
    pub const MH_PORT: u32 = 0x10;
}

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

/// Names of the schedulers this build has.
pub const NAMES: &[&str] = &["rr", "wrr"];

/// A fresh scheduler by ipvsadm name.
pub fn create(name: &str, _params: SchedParams) -> Option<Box<dyn Scheduler>> {
    match name {
        "rr" => Some(Box::new(RoundRobin::default())),
        "wrr" => Some(Box::new(WeightedRoundRobin::default())),
        _ => None,
    }
}

/// Position of the dest with `id` in `list`.
fn position(list: &[DestInfo], id: u32) -> Option<usize> {
    list.iter().position(|d| d.id == id)
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
