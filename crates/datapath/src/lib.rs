//! I/O plumbing of the RVS director: the XDP program that forwards
//! established flows itself and decides which other frames leave the kernel,
//! and AF_XDP sockets that carry those to and from the engine's thread.
//!
//! Of the crates rvsd and rvsadm are built from, this is the only one with
//! `unsafe` (bpf, mmap'd rings, socket options), wrapped in safe types; the
//! engine above sees only byte slices and values. (Beside the director,
//! rvs-decap and rvs-lab make a few system calls of their own; see
//! `docs/CONTRIBUTING.md`.)
//!
//! Building blocks, in the order the director uses them:
//! 1. [`XdpDatapath::load`] once, on every interface: one program, one set of
//!    maps shared by every interface, queue and CPU; then `add_service` /
//!    `add_vip`.
//! 2. One [`XskGroup`] over every (interface, queue) pair
//!    ([`XskGroup::with_queues`]): one UMEM, so one thread receives from every
//!    queue and sends any frame out of any interface without a copy. Register
//!    each socket with [`XdpDatapath::register_socket`].
//! 3. The loop: [`XskGroup::recv`] → [`XskGroup::frame_mut`] (engine rewrites)
//!    → apply the engine's fast-path ops with [`XdpDatapath::apply`] → then
//!    [`XskGroup::send_at`] (on [`XskGroup::tx_slot`]) or [`XskGroup::release`]
//!    → [`XskGroup::flush`]; [`XskGroup::poll`] when idle.
//!
//! AF_XDP sockets and XDP attachments act on the network namespace of the
//! calling *thread*: create them in the thread that has the right namespace.

mod conn_table;
mod crc32c_shift;
mod error;
mod fastpath;
mod handover;
mod iface;
mod maps;
mod program;
mod test_run;
mod xsk;

pub use error::DatapathError;
pub use handover::{pin_dir_for_socket, Inherited, InheritedFlows, PinDir, DEFAULT_PIN_ROOT};
pub use iface::{ifindex_by_name, name_by_ifindex};
pub use program::{
    monotonic_ns, AttachedInterface, ConnCapacity, XdpAttachMode, XdpDatapath, XdpModePolicy,
    XdpStats,
};
/// How many interfaces and RX queues per interface the program serves (the
/// engine's limits, re-exported for the datapath's callers).
pub use rvs_engine::limits::{MAX_INTERFACES, MAX_QUEUES_PER_INTERFACE};
pub use rvs_wire::PacketBuf;
pub use test_run::{TestRun, TestRunner, XdpAction};
pub use xsk::{
    BindMode, BindPolicy, RxFrame, XskConfig, XskGroup, XskSocketStats, XskStats, FRAME_SIZE,
};
