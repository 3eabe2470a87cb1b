//! The sans-I/O core of RVS: services, schedulers, the connection table and
//! the forwarding methods (DR, NAT, TUN) of a Linux Virtual Server director.
//!
//! The engine does no I/O and reads no clock: frames come in as byte slices
//! with the time, decisions come out as [`Verdict`] values with the frame
//! rewritten in place. That makes every behaviour testable without root,
//! replayable from a capture, fuzzable and benchmarkable. See [`Engine`] for
//! the call order.
//!
//! Layout follows the kernel's `net/netfilter/ipvs/`: one file per scheduler
//! (`sched/`), per protocol state machine (`proto/`) and per forwarding
//! method (`fwd/`).

#![forbid(unsafe_code)]

mod classify;
pub mod config;
mod conn;
mod engine;
mod extra;
pub mod fastpath;
mod frag;
mod fwd;
mod icmp;
pub mod limits;
mod neighbor;
mod parse;
pub mod proto;
mod reply;
pub mod sched;
mod stats;
mod status;
mod time;
mod verdict;

pub use classify::{Steering, SteeringKey};
pub use config::{
    Config, ConfigError, Defense, Dest, ForwardMethod, FwmarkRule, Interface, Persistence,
    Protocol, Route, Service, ServiceKey, Snapshot, Tunnel, TunnelChecksum, TunnelError, Validator,
};
pub use engine::{AdoptError, Adopted, DefenseStatus, Engine, SyncRefused};
pub use fastpath::{
    DestCounters, DestSlot, FastAction, FastForward, FastKey, FastPathOp, NextHop, NextHopId,
    Rewrite, TcpSegments, TunnelEncap,
};
pub use neighbor::NeighborTable;
pub use proto::Timeouts;
pub use rvs_wire::PacketBuf;
pub use stats::{Counters, Stats};
pub use status::{ConnInfo, DestStatus, ServiceStatus};
pub use time::Time;
pub use verdict::{DropReason, IfIndex, Verdict};
