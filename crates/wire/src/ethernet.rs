//! Ethernet II frames with up to two 802.1Q / 802.1ad VLAN tags.
//!
//! The director reads the ethertype behind the tags to dispatch, and the DR
//! method rewrites only the MAC addresses, so tags are skipped, not edited.
//!
//! Once [`Frame::new_checked`] has returned `Ok`, no accessor of that frame
//! can panic.

use crate::bytes::{get_u16, set_u16};
use crate::{Error, EthernetAddress, Result};

/// Ethertypes the director dispatches on (IEEE 802 numbers).
pub mod ethertype {
    /// Internet Protocol version 4.
    pub const IPV4: u16 = 0x0800;
    /// Address Resolution Protocol, answered for VIPs.
    pub const ARP: u16 = 0x0806;
    /// IEEE 802.1Q customer VLAN tag.
    pub const VLAN: u16 = 0x8100;
    /// IEEE 802.1ad service VLAN tag (Q-in-Q outer tag).
    pub const QINQ: u16 = 0x88A8;
    /// Internet Protocol version 6.
    pub const IPV6: u16 = 0x86DD;
}

/// Length of an untagged Ethernet II header.
pub const HEADER_LEN: usize = 14;

/// Bytes one VLAN tag adds to the header.
pub const VLAN_TAG_LEN: usize = 4;

/// Most VLAN tags this view looks through; a third tag is reported as the
/// ethertype, and the frame then goes to the slow path.
pub const MAX_VLAN_TAGS: usize = 2;

mod field {
    use core::ops::Range;

    pub(super) const DESTINATION: Range<usize> = 0..6;
    pub(super) const SOURCE: Range<usize> = 6..12;
    pub(super) const ETHERTYPE: usize = 12;
    /// The TCI of the outermost tag, right after its TPID at 12..14.
    pub(super) const OUTER_TCI: usize = 14;
}

fn is_tag(ethertype: u16) -> bool {
    ethertype == ethertype::VLAN || ethertype == ethertype::QINQ
}

/// A view of an Ethernet II frame in a caller-owned buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps `buffer` without validation; accessors may panic if it is
    /// shorter than the header. For frames this crate built itself.
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wraps `buffer` after checking that the header, including up to two
    /// VLAN tags, fits; untrusted frames must come through here.
    pub fn new_checked(buffer: T) -> Result<Frame<T>> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Checks that every tag the header announces fits in the buffer, so
    /// that no accessor can index past it.
    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        let mut at = field::ETHERTYPE;
        for _ in 0..=MAX_VLAN_TAGS {
            if data.len() < at + 2 {
                return Err(Error);
            }
            if at == field::ETHERTYPE + MAX_VLAN_TAGS * VLAN_TAG_LEN || !is_tag(get_u16(data, at)) {
                return Ok(());
            }
            at += VLAN_TAG_LEN;
        }
        Ok(())
    }

    /// Gives the buffer back, e.g. to hand it to the next layer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Offset of the final ethertype field (12, 16 or 20).
    fn ethertype_offset(&self) -> usize {
        let data = self.buffer.as_ref();
        let mut at = field::ETHERTYPE;
        for _ in 0..MAX_VLAN_TAGS {
            if !is_tag(get_u16(data, at)) {
                break;
            }
            at += VLAN_TAG_LEN;
        }
        at
    }

    /// The destination MAC, which DR rewrites to the real server's.
    pub fn dst_addr(&self) -> EthernetAddress {
        let mut a = [0u8; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::DESTINATION]);
        EthernetAddress(a)
    }

    /// The source MAC.
    pub fn src_addr(&self) -> EthernetAddress {
        let mut a = [0u8; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::SOURCE]);
        EthernetAddress(a)
    }

    /// The ethertype of the payload, after any VLAN tags.
    pub fn ethertype(&self) -> u16 {
        get_u16(self.buffer.as_ref(), self.ethertype_offset())
    }

    /// The 12-bit VLAN id of the outermost tag, if the frame is tagged, so
    /// services can be bound per VLAN.
    pub fn vlan_id(&self) -> Option<u16> {
        let data = self.buffer.as_ref();
        if is_tag(get_u16(data, field::ETHERTYPE)) {
            Some(get_u16(data, field::OUTER_TCI) & 0x0fff)
        } else {
            None
        }
    }

    /// Number of VLAN tags the header carries (0, 1 or 2).
    pub fn vlan_tags(&self) -> usize {
        (self.ethertype_offset() - field::ETHERTYPE) / VLAN_TAG_LEN
    }

    /// Header length including tags: 14, 18 or 22.
    pub fn header_len(&self) -> usize {
        self.ethertype_offset() + 2
    }

    /// The bytes after the header (IP packet plus any Ethernet padding).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the destination MAC (DR: the chosen real server).
    pub fn set_dst_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&addr.0);
    }

    /// Sets the source MAC (DR: the director's outgoing interface).
    pub fn set_src_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&addr.0);
    }

    /// Sets the ethertype after any VLAN tags, e.g. when building a reply.
    pub fn set_ethertype(&mut self, value: u16) {
        let at = self.ethertype_offset();
        set_u16(self.buffer.as_mut(), at, value);
    }

    /// The bytes after the header, for rewriting the packet in place.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Frame<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An untagged frame carrying the start of an IPv4 packet.
    const UNTAGGED: [u8; 18] = [
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // dst
        0x02, 0x00, 0x0a, 0x00, 0x00, 0x01, // src
        0x08, 0x00, // IPv4
        0x45, 0x00, 0x00, 0x14,
    ];

    /// A Q-in-Q frame: 802.1ad tag VID 100, 802.1Q tag VID 200, then IPv6.
    const QINQ: [u8; 24] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst
        0x02, 0x00, 0x0a, 0x00, 0x00, 0x02, // src
        0x88, 0xa8, 0x00, 0x64, // S-tag, PCP 0, VID 100
        0x81, 0x00, 0xa0, 0xc8, // C-tag, PCP 5, VID 200
        0x86, 0xdd, // IPv6
        0x60, 0x00,
    ];

    #[test]
    fn deconstruct_untagged() {
        let f = Frame::new_checked(&UNTAGGED[..]).unwrap();
        assert_eq!(
            f.dst_addr(),
            EthernetAddress([0x52, 0x54, 0x00, 0x12, 0x34, 0x56])
        );
        assert_eq!(
            f.src_addr(),
            EthernetAddress([0x02, 0x00, 0x0a, 0x00, 0x00, 0x01])
        );
        assert_eq!(f.ethertype(), ethertype::IPV4);
        assert_eq!(f.vlan_id(), None);
        assert_eq!(f.vlan_tags(), 0);
        assert_eq!(f.header_len(), 14);
        assert_eq!(f.payload(), &[0x45, 0x00, 0x00, 0x14]);
    }

    #[test]
    fn deconstruct_single_tag() {
        let bytes = [
            0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x02, 0x00, 0x0a, 0x00, 0x00, 0x01, 0x81, 0x00,
            0x20, 0x0a, // PCP 1, VID 10
            0x08, 0x06, // ARP
            0x00, 0x01,
        ];
        let f = Frame::new_checked(&bytes[..]).unwrap();
        assert_eq!(f.ethertype(), ethertype::ARP);
        assert_eq!(f.vlan_id(), Some(10));
        assert_eq!(f.vlan_tags(), 1);
        assert_eq!(f.header_len(), 18);
        assert_eq!(f.payload(), &[0x00, 0x01]);
    }

    #[test]
    fn deconstruct_qinq() {
        let f = Frame::new_checked(&QINQ[..]).unwrap();
        assert!(f.dst_addr().is_broadcast());
        assert_eq!(f.ethertype(), ethertype::IPV6);
        assert_eq!(f.vlan_id(), Some(100));
        assert_eq!(f.vlan_tags(), 2);
        assert_eq!(f.header_len(), 22);
        assert_eq!(f.payload(), &[0x60, 0x00]);
    }

    #[test]
    fn third_tag_is_reported_as_ethertype() {
        let mut bytes = QINQ;
        bytes[20] = 0x81;
        bytes[21] = 0x00;
        let f = Frame::new_checked(&bytes[..]).unwrap();
        assert_eq!(f.ethertype(), ethertype::VLAN);
        assert_eq!(f.header_len(), 22);
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 16];
        let mut f = Frame::new_unchecked(&mut buf[..]);
        f.set_dst_addr(EthernetAddress([1, 2, 3, 4, 5, 6]));
        f.set_src_addr(EthernetAddress([7, 8, 9, 10, 11, 12]));
        f.set_ethertype(ethertype::IPV6);
        f.payload_mut().copy_from_slice(&[0xaa, 0xbb]);
        assert_eq!(
            buf,
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x86, 0xdd, 0xaa, 0xbb]
        );
    }

    #[test]
    fn rewrite_macs_keeps_tags() {
        let mut bytes = QINQ;
        let mut f = Frame::new_checked(&mut bytes[..]).unwrap();
        f.set_dst_addr(EthernetAddress([0x52, 0x54, 0, 0, 0, 9]));
        f.set_ethertype(ethertype::IPV4);
        assert_eq!(&bytes[..6], &[0x52, 0x54, 0, 0, 0, 9]);
        assert_eq!(
            &bytes[12..22],
            &[0x88, 0xa8, 0x00, 0x64, 0x81, 0x00, 0xa0, 0xc8, 0x08, 0x00]
        );
    }

    #[test]
    fn truncated() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Frame::new_checked(&UNTAGGED[..len]),
                Err(Error),
                "len {len}"
            );
        }
        assert!(Frame::new_checked(&UNTAGGED[..HEADER_LEN]).is_ok());
        // Two tags need 22 bytes.
        for len in 0..22 {
            assert_eq!(Frame::new_checked(&QINQ[..len]), Err(Error), "len {len}");
        }
        let f = Frame::new_checked(&QINQ[..22]).unwrap();
        assert_eq!(f.payload(), &[] as &[u8]);
    }
}
