//! I/O plumbing of the RVS director: the XDP filter that decides which frames
//! leave the kernel, and AF_XDP sockets that carry them to and from the
//! worker threads.
//!
//! Everything `unsafe` in RVS lives here (bpf, mmap'd rings, socket options),
//! wrapped in safe types; the engine above sees only byte slices.
//!
//! Building blocks, in the order a worker uses them:
//! 1. [`XdpFilter::attach`] on every interface carrying VIP or NAT-return
//!    traffic, then `add_service` / `add_vip` / `add_nat_return` mirrored into
//!    each filter.
//! 2. One [`XskGroup`] per worker (queue id): one UMEM shared by one AF_XDP
//!    socket per interface, so a frame received on one interface can be sent
//!    out of another without a copy. Register [`XskGroup::socket_fd`] in the
//!    matching filter with [`XdpFilter::register_socket`].
//! 3. The loop: [`XskGroup::recv`] → [`XskGroup::frame_mut`] (engine rewrites)
//!    → [`XskGroup::send`] or [`XskGroup::release`] → [`XskGroup::flush`];
//!    [`XskGroup::poll`] when idle.
//!
//! AF_XDP sockets and XDP attachments act on the network namespace of the
//! calling *thread*: create them in the thread that has the right namespace.

mod error;
mod filter;
mod iface;
mod xsk;

pub use error::DatapathError;
pub use filter::{XdpAttachMode, XdpFilter, XdpModePolicy, XdpStats};
pub use iface::{ifindex_by_name, name_by_ifindex};
pub use xsk::{
    BindMode, BindPolicy, FrameMut, RxFrame, XskConfig, XskGroup, XskSocketStats, XskStats,
    FRAME_SIZE,
};
