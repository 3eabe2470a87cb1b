//! Forwarding methods, one file each (the kernel's `ip_vs_xmit.c` split by
//! method): what the frame looks like after the director.

pub(crate) mod dr;
pub(crate) mod nat;
pub(crate) mod tun;

use rvs_wire::EthernetAddress;

/// Writes the Ethernet addresses (the first 12 bytes of every frame).
/// The caller has checked the frame holds an Ethernet header.
pub(crate) fn set_macs(frame: &mut [u8], src: EthernetAddress, dst: EthernetAddress) {
    if frame.len() >= 12 {
        frame[0..6].copy_from_slice(&dst.0);
        frame[6..12].copy_from_slice(&src.0);
    }
}
