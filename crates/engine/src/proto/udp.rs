//! UDP (ip_vs_proto_udp.c): one state, "UDP", refreshed by every packet.
//! UDP connections never count as active.

/// Default UDP timeout in seconds.
pub const DEFAULT_TIMEOUT: u32 = 300;

/// The state name in listings.
pub const STATE_NAME: &str = "UDP";
