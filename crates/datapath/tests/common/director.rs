//! The director side of a test: the XDP program on every interface and one
//! XskGroup with a socket on every (interface, queue), registered in the
//! program's socket map — in the current thread's namespace.

use rvs_datapath::{ConnCapacity, XdpDatapath, XdpModePolicy, XskConfig, XskGroup};

/// The program plus one group.
pub struct Director {
    /// The program, attached to every interface.
    pub dp: XdpDatapath,
    /// Sockets on queues `0..queues` of every interface, interface-major.
    pub group: XskGroup,
}

impl Director {
    /// Attach to `ifaces` (names in the current thread's namespace), one socket each on queue 0.
    pub fn start(ifaces: &[&str]) -> Self {
        Self::start_with(ifaces, 1, XdpModePolicy::Auto)
    }

    /// Attach to `ifaces` with `policy`, sockets on queues `0..queues` of each.
    pub fn start_with(ifaces: &[&str], queues: u32, policy: XdpModePolicy) -> Self {
        Self::start_sized(ifaces, queues, policy, 4096.into())
    }

    /// [`start_with`](Self::start_with) with connection maps of `capacity`.
    pub fn start_sized(
        ifaces: &[&str],
        queues: u32,
        policy: XdpModePolicy,
        capacity: ConnCapacity,
    ) -> Self {
        let idx: Vec<u32> = ifaces
            .iter()
            .map(|i| rvs_datapath::ifindex_by_name(i).unwrap_or_else(|e| panic!("{i}: {e}")))
            .collect();
        let mut dp =
            XdpDatapath::load(&idx, policy, capacity).unwrap_or_else(|e| panic!("load XDP: {e}"));
        let pairs: Vec<(u32, u32)> = idx
            .iter()
            .flat_map(|&i| (0..queues).map(move |q| (i, q)))
            .collect();
        let group = XskGroup::with_queues(&pairs, &XskConfig::default())
            .unwrap_or_else(|e| panic!("XskGroup: {e}"));
        for slot in 0..group.len() {
            dp.register_socket(
                group.ifindex(slot).unwrap(),
                group.queue(slot).unwrap(),
                group.socket_fd(slot),
            )
            .expect("register socket");
        }
        Self { dp, group }
    }

    /// The ifindex of interface slot `i` (the order given to `start`).
    pub fn ifindex(&self, i: usize) -> u32 {
        self.dp.interfaces()[i].ifindex
    }
}
