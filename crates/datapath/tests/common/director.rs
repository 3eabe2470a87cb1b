//! The director side of a test: filters and one XskGroup in the current thread's namespace.

use rvs_datapath::{XdpFilter, XskConfig, XskGroup};

/// XDP filters on every interface plus one group (queue 0) with one socket per interface.
pub struct Director {
    /// Filters, in slot order.
    pub filters: Vec<XdpFilter>,
    /// The group.
    pub group: XskGroup,
}

impl Director {
    /// Attach to `ifaces` (names in the current thread's namespace) and register the sockets.
    pub fn start(ifaces: &[&str]) -> Self {
        let mut filters: Vec<XdpFilter> = ifaces
            .iter()
            .map(|i| XdpFilter::attach(i).unwrap_or_else(|e| panic!("attach {i}: {e}")))
            .collect();
        let idx: Vec<u32> = filters.iter().map(|f| f.ifindex()).collect();
        let group = XskGroup::new(&idx, 0, &XskConfig::default())
            .unwrap_or_else(|e| panic!("XskGroup: {e}"));
        for (slot, f) in filters.iter_mut().enumerate() {
            f.register_socket(0, group.socket_fd(slot))
                .expect("register socket");
        }
        Self { filters, group }
    }
}
