//! ICMP errors the director sends back to a client, built in place over the
//! frame that caused them (no allocation): "fragmentation needed" (ICMPv6
//! "packet too big") for TUN path MTU discovery and "port unreachable" when
//! no real server is available (what `ip_vs_leave` does in the kernel).

use rvs_wire::{checksum, icmpv4, icmpv6, ip_proto, ipv4, ipv6, EthernetAddress};

use crate::verdict::DropReason;
use rvs_wire::PacketBuf;

/// An IPv4 header plus an ICMP header.
const GROWTH: usize = ipv4::HEADER_LEN + icmpv4::HEADER_LEN;
/// RFC 1812 §4.3.2.3: an ICMP error is at most 576 bytes of IP.
const MAX_REPLY_IP: usize = 576;

/// The sender's MAC (the frame's source), the reply's destination.
fn sender_mac(data: &[u8]) -> Result<EthernetAddress, DropReason> {
    let m = data.get(6..12).ok_or(DropReason::Malformed)?;
    Ok(EthernetAddress([m[0], m[1], m[2], m[3], m[4], m[5]]))
}

/// Grows the frame by `growth` bytes in front, moves the L2 header there
/// with the MACs turned back toward `sender`: the original IP packet is
/// then exactly where the quoted part belongs (after the new IP and ICMP
/// headers). Returns the frame.
fn make_room<'a>(
    pkt: &'a mut PacketBuf<'_>,
    l2_len: usize,
    growth: usize,
    our_mac: EthernetAddress,
    sender: EthernetAddress,
) -> Result<&'a mut [u8], DropReason> {
    if !pkt.push_front(growth) {
        return Err(DropReason::NoHeadroom);
    }
    let data = pkt.data_mut();
    data.copy_within(growth..growth + l2_len, 0);
    super::fwd::set_macs(data, our_mac, sender);
    Ok(data)
}

/// Replaces the IPv4 frame in `pkt` (L2 header of `l2_len` bytes, kept, with
/// MACs swapped and `our_mac` as source) by an ICMP error quoting it. The
/// reply comes from the packet's destination (the VIP), like the kernel's
/// reply for a locally addressed packet.
pub(crate) fn icmpv4_error(
    pkt: &mut PacketBuf<'_>,
    l2_len: usize,
    our_mac: EthernetAddress,
    msg_type: u8,
    code: u8,
    mtu: u16,
    ident: u16,
) -> Result<(), DropReason> {
    let (client_mac, orig_src, orig_dst, orig_len) = {
        let data = pkt.data();
        let ip = ipv4::Packet::new_checked(data.get(l2_len..).ok_or(DropReason::Malformed)?)
            .map_err(|_| DropReason::Malformed)?;
        (
            sender_mac(data)?,
            ip.src_addr(),
            ip.dst_addr(),
            usize::from(ip.total_len()),
        )
    };
    let quoted = orig_len.min(MAX_REPLY_IP - GROWTH);
    let data = make_room(pkt, l2_len, GROWTH, our_mac, client_mac)?;
    ipv4::emit_header(
        &mut data[l2_len..],
        &ipv4::HeaderFields {
            src: orig_dst,
            dst: orig_src,
            protocol: ip_proto::ICMP,
            payload_len: (icmpv4::HEADER_LEN + quoted) as u16,
            ttl: 64,
            // IPTOS_PREC_INTERNETCONTROL, as the kernel's icmp_send uses.
            tos: 0xc0,
            ident,
            dont_frag: false,
        },
    )
    .map_err(|_| DropReason::Malformed)?;
    let icmp_start = l2_len + ipv4::HEADER_LEN;
    let icmp_end = icmp_start + icmpv4::HEADER_LEN + quoted;
    let icmp = &mut data[icmp_start..icmp_end];
    icmp[..icmpv4::HEADER_LEN].fill(0);
    icmp[0] = msg_type;
    icmp[1] = code;
    icmp[6..8].copy_from_slice(&mtu.to_be_bytes());
    let sum = checksum::compute(icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    pkt.truncate(icmp_end);
    Ok(())
}

/// An IPv6 header plus an ICMPv6 header.
const GROWTH_V6: usize = ipv6::HEADER_LEN + icmpv6::HEADER_LEN;
/// RFC 4443 §2.4 (c): an ICMPv6 error is at most the minimum MTU, 1280.
const MAX_REPLY_IP_V6: usize = 1280;

/// [`icmpv4_error`] for IPv6: the frame in `pkt` becomes an ICMPv6 error
/// from its destination to its source quoting it; `param` is the 32-bit
/// field after the checksum (the MTU of "packet too big").
pub(crate) fn icmpv6_error(
    pkt: &mut PacketBuf<'_>,
    l2_len: usize,
    our_mac: EthernetAddress,
    msg_type: u8,
    code: u8,
    param: u32,
) -> Result<(), DropReason> {
    let (client_mac, orig_src, orig_dst, orig_len) = {
        let data = pkt.data();
        let ip = ipv6::Packet::new_checked(data.get(l2_len..).ok_or(DropReason::Malformed)?)
            .map_err(|_| DropReason::Malformed)?;
        (
            sender_mac(data)?,
            ip.src_addr(),
            ip.dst_addr(),
            ipv6::HEADER_LEN + usize::from(ip.payload_len()),
        )
    };
    let quoted = orig_len.min(MAX_REPLY_IP_V6 - GROWTH_V6);
    let data = make_room(pkt, l2_len, GROWTH_V6, our_mac, client_mac)?;
    let icmp_len = icmpv6::HEADER_LEN + quoted;
    ipv6::emit_header(
        &mut data[l2_len..],
        &ipv6::HeaderFields {
            src: orig_dst,
            dst: orig_src,
            next_header: ip_proto::ICMPV6,
            payload_len: icmp_len as u16,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
        },
    )
    .map_err(|_| DropReason::Malformed)?;
    let icmp_start = l2_len + ipv6::HEADER_LEN;
    let icmp_end = icmp_start + icmp_len;
    let icmp = &mut data[icmp_start..icmp_end];
    icmp[..icmpv6::HEADER_LEN].fill(0);
    icmp[0] = msg_type;
    icmp[1] = code;
    icmp[4..8].copy_from_slice(&param.to_be_bytes());
    let pseudo = checksum::pseudo_header_v6(
        &orig_dst.octets(),
        &orig_src.octets(),
        ip_proto::ICMPV6,
        icmp_len as u32,
    );
    let sum = checksum::finish(checksum::combine(pseudo, checksum::sum(icmp)));
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    pkt.truncate(icmp_end);
    Ok(())
}
