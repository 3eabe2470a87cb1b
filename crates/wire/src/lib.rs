//! Typed, zero-copy views over the packet headers an RVS director reads and
//! rewrites: Ethernet (with up to two VLAN tags), IPv4, IPv6, TCP, UDP,
//! ICMPv4, ICMPv6, plus IP-in-IP, GUE and GRE encapsulation and RFC 1071/1624 checksums.
//!
//! The shape follows smoltcp's `wire` module: each header is a
//! `Packet<T: AsRef<[u8]>>` wrapping a caller-owned buffer, so the data path
//! parses and rewrites frames in place without allocating.
//!
//! * `new_unchecked` wraps any buffer; accessors may then panic on a buffer
//!   that is too short, so use it only on bytes this crate just wrote, or on
//!   a buffer an earlier `new_checked` validated and whose length has not
//!   changed since (the engine parses each frame once and keeps the offsets).
//! * `new_checked` validates every length field against the buffer. **Once it
//!   has returned `Ok`, no getter, setter or checksum method of that packet can
//!   panic**, whatever the bytes contain. Untrusted input must go through it.
//! * Getters need `T: AsRef<[u8]>`, setters `T: AsMut<[u8]>`.
//!
//! Errors are a single zero-sized [`Error`]: the data path only needs to know
//! "drop this", and counts the drop by the layer that refused it.
#![forbid(unsafe_code)]

use core::fmt;
use core::str::FromStr;

pub mod checksum;
pub mod ethernet;
pub mod gre;
pub mod gue;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipip;
pub mod ipv4;
pub mod ipv6;
pub mod ipvs_sync;
mod packet;
pub mod sctp;
pub mod tcp;
pub mod udp;

/// A packet was shorter than its headers claim or carried an impossible
/// field; the data path drops such packets, so the error carries no detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("truncated or malformed packet")]
pub struct Error;

/// Result of parsing or emitting a header.
pub type Result<T> = core::result::Result<T, Error>;

pub use packet::PacketBuf;

/// IP protocol numbers (IANA "Assigned Internet Protocol Numbers") that the
/// director dispatches on.
pub mod ip_proto {
    /// Internet Control Message Protocol (RFC 792).
    pub const ICMP: u8 = 1;
    /// IPv4 encapsulated in IPv4 (RFC 2003), used by the TUN forwarding method.
    pub const IPIP: u8 = 4;
    /// Transmission Control Protocol.
    pub const TCP: u8 = 6;
    /// User Datagram Protocol.
    pub const UDP: u8 = 17;
    /// IPv6 encapsulated in IP (RFC 2473 / RFC 4213).
    pub const IPV6: u8 = 41;
    /// Generic Routing Encapsulation (RFC 2784).
    pub const GRE: u8 = 47;
    /// The IPv6 fragment extension header (RFC 8200 §4.5).
    pub const IPV6_FRAGMENT: u8 = 44;
    /// ICMP for IPv6 (RFC 4443).
    pub const ICMPV6: u8 = 58;
    /// Stream Control Transmission Protocol (RFC 9260).
    pub const SCTP: u8 = 132;
}

/// A 48-bit Ethernet MAC address, as the DR forwarding method rewrites it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    /// ff:ff:ff:ff:ff:ff, the destination of ARP requests.
    pub const BROADCAST: EthernetAddress = EthernetAddress([0xff; 6]);

    /// Reads an address from the first six bytes of `data`; `None` when shorter.
    pub fn from_bytes(data: &[u8]) -> Option<EthernetAddress> {
        let bytes: [u8; 6] = data.get(..6)?.try_into().ok()?;
        Some(EthernetAddress(bytes))
    }

    /// The raw six bytes, in wire order.
    pub const fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    /// True for ff:ff:ff:ff:ff:ff, which every station receives.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// True when the group bit (lowest bit of the first octet) is set;
    /// broadcast is a multicast address too.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// True for an address naming one station (group bit clear).
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A MAC address in configuration or on the command line could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address: write six hex pairs separated by ':' or '-', like 02:00:0a:00:00:01")]
pub struct ParseEthernetAddressError;

impl FromStr for EthernetAddress {
    type Err = ParseEthernetAddressError;

    fn from_str(s: &str) -> core::result::Result<Self, Self::Err> {
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut parts = s.split(sep);
        for byte in out.iter_mut() {
            let part = parts.next().ok_or(ParseEthernetAddressError)?;
            if part.len() != 2 || !part.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(ParseEthernetAddressError);
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| ParseEthernetAddressError)?;
        }
        if parts.next().is_some() {
            return Err(ParseEthernetAddressError);
        }
        Ok(EthernetAddress(out))
    }
}

/// Big-endian field access shared by the header modules. The callers index
/// only inside lengths that `new_checked` validated.
pub(crate) mod bytes {
    pub(crate) fn get_u16(data: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([data[at], data[at + 1]])
    }

    pub(crate) fn get_u32(data: &[u8], at: usize) -> u32 {
        u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
    }

    pub(crate) fn set_u16(data: &mut [u8], at: usize, value: u16) {
        data[at..at + 2].copy_from_slice(&value.to_be_bytes());
    }

    pub(crate) fn set_u32(data: &mut [u8], at: usize, value: u32) {
        data[at..at + 4].copy_from_slice(&value.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_zero_sized_and_displays() {
        assert_eq!(core::mem::size_of::<Error>(), 0);
        assert_eq!(Error.to_string(), "truncated or malformed packet");
    }

    #[test]
    fn ethernet_address_display_and_parse() {
        let a = EthernetAddress([0x02, 0x00, 0x0a, 0xbc, 0xde, 0xff]);
        assert_eq!(a.to_string(), "02:00:0a:bc:de:ff");
        assert_eq!(format!("{a:?}"), "02:00:0a:bc:de:ff");
        assert_eq!("02:00:0a:bc:de:ff".parse::<EthernetAddress>(), Ok(a));
        assert_eq!("02-00-0A-BC-DE-FF".parse::<EthernetAddress>(), Ok(a));
        for bad in [
            "",
            "02:00:0a:bc:de",
            "02:00:0a:bc:de:ff:00",
            "2:00:0a:bc:de:ff",
            "02:00:0a:bc:de:fg",
            "02:00-0a:bc:de:ff",
            "+2:00:0a:bc:de:ff",
        ] {
            assert_eq!(
                bad.parse::<EthernetAddress>(),
                Err(ParseEthernetAddressError),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn ethernet_address_classes() {
        assert!(EthernetAddress::BROADCAST.is_broadcast());
        assert!(EthernetAddress::BROADCAST.is_multicast());
        assert!(!EthernetAddress::BROADCAST.is_unicast());
        let mcast = EthernetAddress([0x01, 0x00, 0x5e, 0x00, 0x00, 0x12]);
        assert!(mcast.is_multicast() && !mcast.is_broadcast() && !mcast.is_unicast());
        let ucast = EthernetAddress([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        assert!(ucast.is_unicast() && !ucast.is_multicast() && !ucast.is_broadcast());
        assert_eq!(EthernetAddress::from_bytes(&[1, 2, 3, 4, 5]), None);
        assert_eq!(
            EthernetAddress::from_bytes(&[1, 2, 3, 4, 5, 6, 7]),
            Some(EthernetAddress([1, 2, 3, 4, 5, 6]))
        );
    }
}
