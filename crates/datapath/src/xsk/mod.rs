//! AF_XDP: UMEM, sockets and rings, wrapped in [`XskGroup`] — the one type a
//! worker thread uses, with a socket on every (interface, queue) it serves.

mod group;
mod ring;
mod socket;
mod sys;
mod umem;

pub use group::XskGroup;

/// Size of one UMEM frame: one page, the kernel's aligned-chunk mode.
pub const FRAME_SIZE: u32 = 4096;

/// Headroom the kernel itself leaves before RX data in every frame
/// (XDP_PACKET_HEADROOM); configurable headroom comes on top of it.
pub(crate) const KERNEL_HEADROOM: u32 = 256;

/// Whether a socket's frames are DMA'd straight into the UMEM or copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindMode {
    /// XDP_ZEROCOPY: the driver writes into the UMEM.
    ZeroCopy,
    /// XDP_COPY: the kernel copies (always the case on veth).
    Copy,
}

/// Which bind modes [`XskGroup::new`] may use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BindPolicy {
    /// Zero-copy on every interface if they all support it, else copy mode.
    #[default]
    Auto,
    /// Zero-copy or fail.
    ZeroCopy,
    /// Copy mode only.
    Copy,
}

/// Sizes and modes of one [`XskGroup`]. Ring sizes must be powers of two.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XskConfig {
    /// Frames in the shared UMEM (each [`FRAME_SIZE`] bytes); 0 (the
    /// default) sizes it from the socket count: 1024 per socket, 256 per
    /// spare socket, plus 2048, at least 4096 (16 MiB) and at most 262144
    /// (1 GiB).
    pub frame_count: u32,
    /// Extra headroom before packet data, on top of the kernel's 256 bytes,
    /// so encapsulation (IPIP: 20 bytes) can be prepended in place.
    pub headroom: u32,
    /// RX ring entries per socket.
    pub rx_size: u32,
    /// TX ring entries per socket.
    pub tx_size: u32,
    /// FILL ring entries per socket.
    pub fill_size: u32,
    /// COMPLETION ring entries per socket.
    pub comp_size: u32,
    /// Zero-copy / copy choice.
    pub bind: BindPolicy,
    /// Use XDP_USE_NEED_WAKEUP (fewer syscalls when the kernel does not need kicking).
    pub need_wakeup: bool,
    /// Sockets [`XskGroup::add_queue`] may add later (queues an interface
    /// can gain with `ethtool -L`). The automatic UMEM size gives each 256
    /// frames, and every socket's FILL share is sized as if they were
    /// bound: frames on the FILL ring of a queue that sees no traffic
    /// never come back, so a share taken before they are added would
    /// leave them none.
    pub spare_sockets: u32,
}

impl Default for XskConfig {
    fn default() -> Self {
        Self {
            frame_count: 0,
            headroom: 0,
            rx_size: 2048,
            tx_size: 2048,
            fill_size: 2048,
            comp_size: 2048,
            bind: BindPolicy::Auto,
            need_wakeup: true,
            spare_sockets: 0,
        }
    }
}

/// One received frame: which socket (slot) it came in on and where it lies in the UMEM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxFrame {
    /// The socket's slot: an index into the pairs given to
    /// [`XskGroup::with_queues`] (into the `ifindexes` of [`XskGroup::new`]);
    /// [`XskGroup::ifindex`] and [`XskGroup::queue`] name it.
    pub iface: usize,
    /// UMEM address of the first data byte (past the headroom).
    pub addr: u64,
    /// Data length in bytes.
    pub len: u32,
}

/// Per-socket counters, to tell where frames are lost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XskSocketStats {
    /// Interface index of the socket.
    pub ifindex: u32,
    /// RX queue the socket is bound to.
    pub queue: u32,
    /// Zero-copy or copy.
    pub mode: Option<BindMode>,
    /// Frames taken from the RX ring.
    pub rx_packets: u64,
    /// Frames the kernel reported sent (COMPLETION ring).
    pub tx_packets: u64,
    /// Frames not queued because the TX ring was full (released).
    pub tx_ring_full: u64,
    /// Kernel: frames dropped for other reasons (XDP_STATISTICS rx_dropped).
    pub rx_dropped: u64,
    /// Kernel: frames dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Kernel: times the FILL ring was empty when a frame arrived.
    pub fill_ring_empty: u64,
    /// Kernel: invalid TX descriptors (bad address/length).
    pub tx_invalid: u64,
}

/// Counters of every socket of a group, in slot order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XskStats {
    /// One entry per socket, in slot order.
    pub sockets: Vec<XskSocketStats>,
    /// Frames currently in the group's free pool.
    pub free_frames: u32,
}
