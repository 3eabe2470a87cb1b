//! Direct routing (`-g`, IPVS "Route", `ip_vs_dr_xmit`): the IP packet
//! leaves untouched; only the destination MAC becomes the real server's and
//! the source MAC the director's. The real server holds the VIP on a
//! non-ARPing interface and answers the client directly, so the director
//! sees one direction only. DR needs the server on a directly connected
//! network (checked when the configuration is validated).

use rvs_wire::PacketBuf;

use super::ToServer;
use crate::conn::{bytes_addr, Conn};
use crate::fastpath::Rewrite;
use crate::verdict::Verdict;

/// Sends the frame to the real server: MACs only.
pub(crate) fn transmit(pkt: &mut PacketBuf<'_>, to: &ToServer) -> Verdict {
    super::send(pkt, &to.egress, to.mac)
}

/// The XDP program does the same: MACs from the server's next hop.
pub(crate) fn fast_rewrite(c: &Conn) -> Rewrite {
    Rewrite::Route {
        server: bytes_addr(&c.daddr, c.v6()),
    }
}
