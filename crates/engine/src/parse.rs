//! Parsing a frame once: every header the engine needs is validated here and
//! its offset kept in [`Parsed`], so the transmitters rewrite in place
//! without validating a header a second time.

use std::net::IpAddr;

use rvs_wire::{ethernet, ip_proto, ipv4, ipv6, sctp, tcp, udp};

use crate::conn::{addr_bytes, FlowKey};
use crate::frag::DatagramKey;
use crate::proto::{sctp as sctp_state, tcp as tcp_state};
use crate::verdict::{DropReason, IfIndex};

/// What the engine knows about the frame being processed. The offsets stay
/// valid as long as the frame's headers are rewritten in place (a
/// transmitter that grows the frame is the last to use them).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Parsed {
    /// Length of the L2 header (Ethernet and VLAN tags): where IP starts.
    pub(crate) l2_len: usize,
    /// Where the TCP/UDP header starts, from the frame's start.
    pub(crate) l4_start: usize,
    /// IP packet length (IPv4 total length / IPv6 40 + payload length); the
    /// frame may be longer (Ethernet padding).
    pub(crate) ip_len: usize,
    pub(crate) v6: bool,
    pub(crate) key: FlowKey,
    pub(crate) src: IpAddr,
    pub(crate) dst: IpAddr,
    pub(crate) tcp_flags: Option<tcp_state::Flags>,
    /// SCTP: the packet's event for the state machine (`None`: not SCTP,
    /// or a packet without a chunk, which changes no state).
    pub(crate) sctp_event: Option<sctp_state::Event>,
    pub(crate) ingress: IfIndex,
    /// The first fragment of a fragmented datagram: its datagram, which
    /// the later fragments follow ([`crate::frag`]).
    pub(crate) first_fragment: Option<DatagramKey>,
}

impl Parsed {
    /// The IP packet (header and payload, no padding).
    pub(crate) fn ip<'a>(&self, frame: &'a mut [u8]) -> Option<&'a mut [u8]> {
        frame.get_mut(self.l2_len..self.l2_len + self.ip_len)
    }

    /// The IP header and the L4 segment, split, both validated by [`parse`].
    pub(crate) fn ip_and_l4<'a>(
        &self,
        frame: &'a mut [u8],
    ) -> Option<(&'a mut [u8], &'a mut [u8])> {
        let ip = self.ip(frame)?;
        let (header, l4) = ip.split_at_mut(self.l4_start - self.l2_len);
        Some((header, l4))
    }
}

/// Parses the headers the engine needs. `Ok(None)`: not IP/TCP/UDP/SCTP, so not
/// ours. Errors are drop reasons; [`DropReason::Fragment`] is an IPv4
/// fragment other than the first ([`parse_later_fragment`] reads it). A
/// first fragment is parsed like a whole packet, its transport header
/// checked as far as it lies in the fragment.
pub(crate) fn parse(data: &[u8], ingress: IfIndex) -> Result<Option<Parsed>, DropReason> {
    let eth = ethernet::Frame::new_checked(data).map_err(|_| DropReason::Malformed)?;
    let l2_len = eth.header_len();
    let l3 = data.get(l2_len..).ok_or(DropReason::Malformed)?;
    let mut first_fragment = None;
    let (v6, ip_len, l3_header, proto, src, dst) = match eth.ethertype() {
        ethernet::ethertype::IPV4 => {
            let ip = ipv4::Packet::new_checked(l3).map_err(|_| DropReason::Malformed)?;
            if !ip.verify_checksum() {
                return Err(DropReason::BadIpChecksum);
            }
            if ip.frag_offset() != 0 {
                return Err(DropReason::Fragment);
            }
            let (src, dst) = (IpAddr::V4(ip.src_addr()), IpAddr::V4(ip.dst_addr()));
            if ip.more_frags() {
                first_fragment = Some(DatagramKey {
                    src: addr_bytes(src),
                    dst: addr_bytes(dst),
                    proto: ip.protocol(),
                    id: u32::from(ip.ident()),
                });
            }
            (
                false,
                usize::from(ip.total_len()),
                ip.header_len(),
                ip.protocol(),
                src,
                dst,
            )
        }
        ethernet::ethertype::IPV6 => {
            let ip = ipv6::Packet::new_checked(l3).map_err(|_| DropReason::Malformed)?;
            let (src, dst) = (IpAddr::V6(ip.src_addr()), IpAddr::V6(ip.dst_addr()));
            let ip_len = ipv6::HEADER_LEN + usize::from(ip.payload_len());
            let (proto, header) = match ip.next_header() {
                ip_proto::IPV6_FRAGMENT => {
                    let f = fragment_header_v6(l3, ip_len).ok_or(DropReason::Malformed)?;
                    if f.offset != 0 {
                        return Err(DropReason::Fragment);
                    }
                    if f.more {
                        first_fragment = Some(DatagramKey {
                            src: addr_bytes(src),
                            dst: addr_bytes(dst),
                            proto: f.next_header,
                            id: f.id,
                        });
                    }
                    // Offset 0 without M: an atomic fragment (RFC 6946), a
                    // whole packet.
                    (f.next_header, ipv6::HEADER_LEN + FRAGMENT_HEADER_V6)
                }
                nh => (nh, ipv6::HEADER_LEN),
            };
            (true, ip_len, header, proto, src, dst)
        }
        _ => return Ok(None),
    };
    let l4 = l3.get(l3_header..ip_len).ok_or(DropReason::Malformed)?;
    let mut sctp_event = None;
    let (sport, dport, tcp_flags) = match proto {
        ip_proto::TCP => {
            let t = tcp::Packet::new_checked(l4).map_err(|_| DropReason::Malformed)?;
            let flags = tcp_state::Flags {
                syn: t.syn(),
                fin: t.fin(),
                ack: t.ack(),
                rst: t.rst(),
            };
            (t.src_port(), t.dst_port(), Some(flags))
        }
        ip_proto::UDP => {
            // A first fragment holds the header, not the whole datagram its
            // length field counts.
            let u = if first_fragment.is_some() && l4.len() >= udp::HEADER_LEN {
                udp::Packet::new_unchecked(l4)
            } else {
                udp::Packet::new_checked(l4).map_err(|_| DropReason::Malformed)?
            };
            (u.src_port(), u.dst_port(), None)
        }
        ip_proto::SCTP => {
            let p = sctp::Packet::new_checked(l4).map_err(|_| DropReason::Malformed)?;
            sctp_event = p
                .first_chunk_type()
                .map(|first| sctp_state::Event::of_chunks(first, p.second_chunk_type()));
            (p.src_port(), p.dst_port(), None)
        }
        _ => return Ok(None),
    };
    Ok(Some(Parsed {
        l2_len,
        l4_start: l2_len + l3_header,
        ip_len,
        v6,
        key: FlowKey {
            template: false,
            proto,
            v6,
            saddr: addr_bytes(src),
            sport,
            daddr: addr_bytes(dst),
            dport,
        },
        src,
        dst,
        tcp_flags,
        sctp_event,
        ingress,
        first_fragment,
    }))
}

/// Length of the IPv6 fragment extension header (RFC 8200 §4.5).
pub(crate) const FRAGMENT_HEADER_V6: usize = 8;

/// The fields of an IPv6 fragment header.
struct FragmentHeaderV6 {
    next_header: u8,
    offset: usize,
    more: bool,
    id: u32,
}

/// The fragment header right after the fixed IPv6 header in `l3` (RVS
/// follows fragments whose header comes first; other extension headers
/// before it are not read).
fn fragment_header_v6(l3: &[u8], ip_len: usize) -> Option<FragmentHeaderV6> {
    if ip_len < ipv6::HEADER_LEN + FRAGMENT_HEADER_V6 {
        return None;
    }
    let h = l3.get(ipv6::HEADER_LEN..ipv6::HEADER_LEN + FRAGMENT_HEADER_V6)?;
    let field = u16::from_be_bytes([h[2], h[3]]);
    Some(FragmentHeaderV6 {
        next_header: h[0],
        offset: usize::from(field & 0xfff8),
        more: field & 1 != 0,
        id: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
    })
}

/// A fragment after the first (IPv4, or IPv6 with its fragment header
/// first): where it is and which datagram it belongs to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LaterFragment {
    pub(crate) v6: bool,
    pub(crate) l2_len: usize,
    pub(crate) ip_len: usize,
    /// IP header length, the IPv6 fragment header included: where the
    /// fragment's data starts.
    pub(crate) header_len: usize,
    pub(crate) datagram: DatagramKey,
    /// More fragments follow (MF / M set).
    pub(crate) more: bool,
    /// Fragment offset in bytes.
    pub(crate) offset: usize,
}

/// Reads a frame [`parse`] refused as [`DropReason::Fragment`] (its IP
/// header is already checked).
pub(crate) fn parse_later_fragment(data: &[u8]) -> Option<LaterFragment> {
    let eth = ethernet::Frame::new_checked(data).ok()?;
    let l2_len = eth.header_len();
    let l3 = data.get(l2_len..)?;
    if eth.ethertype() == ethernet::ethertype::IPV6 {
        let ip = ipv6::Packet::new_checked(l3).ok()?;
        let ip_len = ipv6::HEADER_LEN + usize::from(ip.payload_len());
        let f = fragment_header_v6(l3, ip_len)?;
        return Some(LaterFragment {
            v6: true,
            l2_len,
            ip_len,
            header_len: ipv6::HEADER_LEN + FRAGMENT_HEADER_V6,
            datagram: DatagramKey {
                src: addr_bytes(IpAddr::V6(ip.src_addr())),
                dst: addr_bytes(IpAddr::V6(ip.dst_addr())),
                proto: f.next_header,
                id: f.id,
            },
            more: f.more,
            offset: f.offset,
        });
    }
    let ip = ipv4::Packet::new_checked(l3).ok()?;
    Some(LaterFragment {
        v6: false,
        l2_len,
        ip_len: usize::from(ip.total_len()),
        header_len: ip.header_len(),
        datagram: DatagramKey {
            src: addr_bytes(IpAddr::V4(ip.src_addr())),
            dst: addr_bytes(IpAddr::V4(ip.dst_addr())),
            proto: ip.protocol(),
            id: u32::from(ip.ident()),
        },
        more: ip.more_frags(),
        offset: usize::from(ip.frag_offset()),
    })
}
