//! Direct routing (`-g`, IPVS "Route"): the IP packet leaves untouched; only
//! the destination MAC becomes the real server's and the source MAC the
//! director's. The real server holds the VIP on a non-ARPing interface and
//! answers the client directly.

use rvs_wire::EthernetAddress;

/// Rewrites the frame for the real server at `server_mac`.
pub(crate) fn transmit(
    frame: &mut [u8],
    director_mac: EthernetAddress,
    server_mac: EthernetAddress,
) {
    super::set_macs(frame, director_mac, server_mac);
}
