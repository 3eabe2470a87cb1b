//! Read-outs for the control plane (listings, metrics).

use std::net::IpAddr;

use crate::config::{ForwardMethod, ServiceKey};
use crate::stats::Stats;

/// One service as `ipvsadm -L` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceStatus {
    /// (protocol, VIP, port).
    pub key: ServiceKey,
    /// Scheduler name.
    pub scheduler: String,
    /// Real servers: configured ones in the order they were added, then
    /// removed ones still draining connections.
    pub dests: Vec<DestStatus>,
    /// Traffic counters.
    pub stats: Stats,
}

/// One real server's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestStatus {
    /// Address.
    pub addr: IpAddr,
    /// Port.
    pub port: u16,
    /// Weight.
    pub weight: u32,
    /// Forwarding method.
    pub method: ForwardMethod,
    /// ESTABLISHED connections.
    pub active: u32,
    /// Other connections.
    pub inactive: u32,
    /// Persistence templates pointing at it.
    pub persistent: u32,
    /// Above its upper threshold.
    pub overloaded: bool,
    /// Removed from the configuration, kept while connections remain.
    pub draining: bool,
    /// Traffic counters.
    pub stats: Stats,
}

/// One tracked connection or persistence template (`ipvsadm -Lc`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnInfo {
    /// IP protocol number (0 for a firewall-mark service's template).
    pub protocol: u8,
    /// A persistence template (client port 0, `--persistent-conn`).
    pub template: bool,
    /// Client address and port.
    pub client: (IpAddr, u16),
    /// Virtual address and port.
    pub virtual_: (IpAddr, u16),
    /// Real server address and port.
    pub dest: (IpAddr, u16),
    /// State name as ipvsadm prints it.
    pub state: &'static str,
    /// Seconds until it expires.
    pub expires_in_secs: u32,
    /// Forwarding method.
    pub method: ForwardMethod,
    /// FullNAT: the local address and port the real server sees as the
    /// client (`None` for the other methods).
    pub local: Option<(IpAddr, u16)>,
}
