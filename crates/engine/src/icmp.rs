//! ICMP errors about the packets of tracked connections, as IPVS handles
//! them (`ip_vs_in_icmp` / `ip_vs_out_icmp`): the error quotes the IP header
//! and the first bytes of the packet it is about; that packet's flow,
//! reversed, is a direction of a connection, and the error goes to whoever
//! sent that packet.
//!
//! - An error from the client's side (a router on the way to the client
//!   saying "fragmentation needed", "time exceeded", or the client's
//!   "port unreachable") quotes a packet VIP → client: reversed, the
//!   connection's client → VIP direction. It goes to the real server: for
//!   NAT with the outer destination and the quoted source translated to the
//!   real server, for DR and TUN as it is (the server holds the VIP).
//! - An error from the servers' side (NAT only) quotes a packet client →
//!   RIP: reversed, the connection's reply direction. It goes to the client
//!   with the outer source and the quoted destination translated to the VIP.
//!
//! The kernel takes ICMPv4 destination unreachable, source quench and time
//! exceeded, and every ICMPv6 error; so does RVS. The quoted header must be
//! whole and carry TCP or UDP ports. Every checksum that covers a changed
//! byte is fixed: the outer IPv4 header's, the quoted IPv4 header's, the
//! quoted TCP/UDP checksum when the quote holds it (incrementally: the rest
//! of that segment is not there), and the ICMP checksum over the message.

use rvs_wire::{checksum, ethernet, icmpv4, icmpv6, ip_proto, ipv4, ipv6};

use crate::conn::{AddrBytes, FlowKey};
use crate::verdict::DropReason;

/// An ICMP error that quotes a TCP or UDP packet, as found in a frame.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IcmpError {
    pub(crate) v6: bool,
    /// Where the outer IP header starts.
    pub(crate) l2_len: usize,
    /// Outer IP packet length (the frame may be longer: padding).
    pub(crate) ip_len: usize,
    /// Where the ICMP header starts.
    pub(crate) icmp_start: usize,
    /// Where the quoted IP header starts.
    inner_start: usize,
    /// Where the quoted TCP/UDP header starts.
    inner_l4: usize,
    /// The quoted packet's protocol, addresses and ports.
    pub(crate) proto: u8,
    inner_src: AddrBytes,
    inner_dst: AddrBytes,
    inner_sport: u16,
    inner_dport: u16,
}

impl IcmpError {
    /// The quoted packet's flow reversed: the direction of the connection
    /// the error travels in (client → VIP for an error from the client's
    /// side, RIP → client for one from the servers' side).
    pub(crate) fn flow(&self) -> FlowKey {
        FlowKey {
            template: false,
            proto: self.proto,
            v6: self.v6,
            saddr: self.inner_dst,
            sport: self.inner_dport,
            daddr: self.inner_src,
            dport: self.inner_sport,
        }
    }

    /// The outer destination.
    pub(crate) fn dst(&self, frame: &[u8]) -> AddrBytes {
        let mut a = [0u8; 16];
        let ip = &frame[self.l2_len..];
        if self.v6 {
            a.copy_from_slice(&ip[24..40]);
        } else {
            a[..4].copy_from_slice(&ip[16..20]);
        }
        a
    }
}

/// What a frame is to the ICMP handling.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Icmp {
    /// Not ICMP, or an ICMP message that is not an error (echo, ...).
    NotAnError,
    /// An error quoting a TCP or UDP packet.
    Error(IcmpError),
}

/// Whether ICMPv4 `msg_type` is one of the errors IPVS relays.
fn relayed_v4(msg_type: u8) -> bool {
    matches!(
        msg_type,
        icmpv4::DEST_UNREACHABLE | icmpv4::SOURCE_QUENCH | icmpv4::TIME_EXCEEDED
    )
}

/// Whether ICMPv6 `msg_type` is an error (RFC 4443: types below 128).
fn relayed_v6(msg_type: u8) -> bool {
    matches!(
        msg_type,
        icmpv6::DST_UNREACHABLE
            | icmpv6::PACKET_TOO_BIG
            | icmpv6::TIME_EXCEEDED
            | icmpv6::PARAM_PROBLEM
    )
}

/// Finds an ICMP error in a frame the TCP/UDP parser did not take. Errors:
/// an ICMP error the director cannot relay (bad checksum, a quote too short
/// or not TCP/UDP), counted and dropped as the kernel drops it.
pub(crate) fn parse(data: &[u8]) -> Result<Icmp, DropReason> {
    let Ok(eth) = ethernet::Frame::new_checked(data) else {
        return Ok(Icmp::NotAnError);
    };
    let l2_len = eth.header_len();
    let l3 = data.get(l2_len..).ok_or(DropReason::Malformed)?;
    let (v6, ip_len, header_len) = match eth.ethertype() {
        ethernet::ethertype::IPV4 => {
            let ip = ipv4::Packet::new_checked(l3).map_err(|_| DropReason::Malformed)?;
            if ip.protocol() != ip_proto::ICMP || ip.is_fragment() {
                return Ok(Icmp::NotAnError);
            }
            (false, usize::from(ip.total_len()), ip.header_len())
        }
        ethernet::ethertype::IPV6 => {
            let ip = ipv6::Packet::new_checked(l3).map_err(|_| DropReason::Malformed)?;
            if ip.next_header() != ip_proto::ICMPV6 {
                return Ok(Icmp::NotAnError);
            }
            (
                true,
                ipv6::HEADER_LEN + usize::from(ip.payload_len()),
                ipv6::HEADER_LEN,
            )
        }
        _ => return Ok(Icmp::NotAnError),
    };
    let message = l3.get(header_len..ip_len).ok_or(DropReason::Malformed)?;
    let Some(&msg_type) = message.first() else {
        return Err(DropReason::Malformed);
    };
    let relayed = if v6 {
        relayed_v6(msg_type)
    } else {
        relayed_v4(msg_type)
    };
    if !relayed {
        return Ok(Icmp::NotAnError);
    }
    if message.len() < icmpv4::HEADER_LEN || icmp_checksum(l3, header_len, ip_len, v6) != 0 {
        return Err(DropReason::Malformed);
    }
    let icmp_start = l2_len + header_len;
    let inner_start = icmp_start + icmpv4::HEADER_LEN;
    let quote = &message[icmpv4::HEADER_LEN..];
    let (proto, inner_header, src, dst) = if v6 {
        let q = ipv6::Packet::new_unchecked(quote);
        if quote.len() < ipv6::HEADER_LEN || q.version() != 6 {
            return Err(DropReason::IcmpUnrelayable);
        }
        (
            q.next_header(),
            ipv6::HEADER_LEN,
            q.src_addr().octets(),
            q.dst_addr().octets(),
        )
    } else {
        let q = ipv4::Packet::new_unchecked(quote);
        if quote.len() < ipv4::HEADER_LEN
            || q.version() != 4
            || q.header_len() < ipv4::HEADER_LEN
            || quote.len() < q.header_len()
            || q.frag_offset() != 0
        {
            return Err(DropReason::IcmpUnrelayable);
        }
        let mut s = [0u8; 16];
        let mut d = [0u8; 16];
        s[..4].copy_from_slice(&q.src_addr().octets());
        d[..4].copy_from_slice(&q.dst_addr().octets());
        (q.protocol(), q.header_len(), s, d)
    };
    if ![ip_proto::TCP, ip_proto::UDP, ip_proto::SCTP].contains(&proto) {
        return Err(DropReason::IcmpUnrelayable);
    }
    // The kernel asks for the ports (8 bytes of the quoted transport header
    // in every error a conforming router sends).
    let ports = quote
        .get(inner_header..inner_header + 4)
        .ok_or(DropReason::IcmpUnrelayable)?;
    Ok(Icmp::Error(IcmpError {
        v6,
        l2_len,
        ip_len,
        icmp_start,
        inner_start,
        inner_l4: inner_start + inner_header,
        proto,
        inner_src: src,
        inner_dst: dst,
        inner_sport: u16::from_be_bytes([ports[0], ports[1]]),
        inner_dport: u16::from_be_bytes([ports[2], ports[3]]),
    }))
}

/// The ICMP checksum over the message (ICMPv6: with its pseudo-header);
/// 0 when it verifies.
fn icmp_checksum(l3: &[u8], header_len: usize, ip_len: usize, v6: bool) -> u16 {
    let message = &l3[header_len..ip_len];
    let mut sum = checksum::sum(message);
    if v6 {
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src.copy_from_slice(&l3[8..24]);
        dst.copy_from_slice(&l3[24..40]);
        sum = checksum::combine(
            sum,
            checksum::pseudo_header_v6(&src, &dst, ip_proto::ICMPV6, message.len() as u32),
        );
    }
    checksum::finish(sum)
}

/// Which end of the error to translate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Toward {
    /// To the real server: outer destination VIP → RIP, quoted source
    /// VIP:vport → RIP:rport.
    Server,
    /// To the client: outer source → VIP, quoted destination RIP:rport →
    /// VIP:vport.
    Client,
    /// FullNAT's other end, to the real server: the quoted destination
    /// CIP:cport → LIP:lport (after [`Toward::Server`]).
    ServerPeer,
    /// FullNAT's other end, to the client: outer destination LIP → CIP,
    /// quoted source LIP:lport → CIP:cport (after [`Toward::Client`]).
    ClientPeer,
}

impl Toward {
    /// (whether the outer destination, not the source, changes; `None`:
    /// no outer address changes) and whether the quoted packet's source,
    /// not its destination, changes.
    fn fields(self) -> (Option<bool>, bool) {
        match self {
            Toward::Server => (Some(true), true),
            Toward::Client => (Some(false), false),
            Toward::ServerPeer => (None, false),
            Toward::ClientPeer => (Some(true), true),
        }
    }
}

/// NAT translation of an error in place: the outer address on `toward`'s
/// side and the quoted packet's matching end become `addr` (and the quoted
/// port `port`); every checksum covering them is fixed. `None` if the frame
/// no longer holds what [`parse`] found.
pub(crate) fn translate(
    frame: &mut [u8],
    e: &IcmpError,
    toward: Toward,
    addr: &AddrBytes,
    port: u16,
) -> Option<()> {
    let alen = if e.v6 { 16 } else { 4 };
    let end = e.l2_len + e.ip_len;
    let frame = frame.get_mut(..end)?;
    let (outer_dst, quoted_src) = toward.fields();
    // Outer header: destination or source; its IPv4 checksum
    // incrementally.
    if let Some(outer_dst) = outer_dst {
        let outer = e.l2_len + if e.v6 { 8 } else { 12 } + if outer_dst { alen } else { 0 };
        let old_outer: AddrBytes = {
            let mut a = [0u8; 16];
            a[..alen].copy_from_slice(frame.get(outer..outer + alen)?);
            a
        };
        frame[outer..outer + alen].copy_from_slice(&addr[..alen]);
        if !e.v6 {
            let c = u16::from_be_bytes([frame[e.l2_len + 10], frame[e.l2_len + 11]]);
            let c = checksum::adjust(c, &old_outer[..4], &addr[..4]);
            frame[e.l2_len + 10..e.l2_len + 12].copy_from_slice(&c.to_be_bytes());
        }
    }
    // Quoted header: its source (ours, going to the client) or its
    // destination (the server's, coming from the client).
    let (addr_at, port_at) = if quoted_src {
        (e.inner_start + if e.v6 { 8 } else { 12 }, e.inner_l4)
    } else {
        (e.inner_start + if e.v6 { 24 } else { 16 }, e.inner_l4 + 2)
    };
    let mut old = [0u8; 18];
    let mut new = [0u8; 18];
    old[..alen].copy_from_slice(frame.get(addr_at..addr_at + alen)?);
    old[alen..alen + 2].copy_from_slice(frame.get(port_at..port_at + 2)?);
    new[..alen].copy_from_slice(&addr[..alen]);
    new[alen..alen + 2].copy_from_slice(&port.to_be_bytes());
    frame[addr_at..addr_at + alen].copy_from_slice(&addr[..alen]);
    frame[port_at..port_at + 2].copy_from_slice(&port.to_be_bytes());
    if !e.v6 {
        let inner = frame.get_mut(e.inner_start..e.inner_l4)?;
        let mut q = ipv4::Packet::new_unchecked(inner);
        q.fill_checksum();
    }
    // The quoted TCP/UDP checksum, when quoted: address and port changed.
    // SCTP's CRC32c covers the whole packet, which a quote does not hold:
    // left as it is, as the kernel's ip_vs_nat_icmp leaves it.
    let check_at = e.inner_l4 + if e.proto == ip_proto::TCP { 16 } else { 6 };
    let checked = e.proto != ip_proto::SCTP;
    if let Some(bytes) = frame.get_mut(check_at..check_at + 2).filter(|_| checked) {
        let c = u16::from_be_bytes([bytes[0], bytes[1]]);
        // UDP without a checksum stays without.
        if !(e.proto == ip_proto::UDP && c == 0) {
            let mut c = checksum::adjust(c, &old[..alen + 2], &new[..alen + 2]);
            if e.proto == ip_proto::UDP && c == 0 {
                c = 0xffff;
            }
            bytes.copy_from_slice(&c.to_be_bytes());
        }
    }
    refill_icmp_checksum(frame, e);
    Some(())
}

/// Recomputes the ICMP checksum over the whole message, as the kernel does
/// after a translation (an error is at most 576 / 1280 bytes).
fn refill_icmp_checksum(frame: &mut [u8], e: &IcmpError) {
    let end = e.l2_len + e.ip_len;
    frame[e.icmp_start + 2] = 0;
    frame[e.icmp_start + 3] = 0;
    let header_len = e.icmp_start - e.l2_len;
    let c = icmp_checksum(&frame[e.l2_len..end], header_len, e.ip_len, e.v6);
    frame[e.icmp_start + 2..e.icmp_start + 4].copy_from_slice(&c.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet + IPv4 + ICMP "fragmentation needed" from `router`
    /// quoting a TCP segment VIP:80 → client:40000 (20-byte TCP header).
    fn frag_needed_v4() -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let quote_len = 20 + 20;
        let ip_len = 20 + 8 + quote_len;
        let mut ip = vec![0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
        ip[8] = 64;
        ip[9] = 1;
        ip[12..16].copy_from_slice(&[10, 0, 1, 1]);
        ip[16..20].copy_from_slice(&[10, 0, 100, 1]);
        let c = checksum::compute(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let mut q = vec![0u8; 20];
        q[0] = 0x45;
        q[2..4].copy_from_slice(&1500u16.to_be_bytes());
        q[6] = 0x40;
        q[8] = 63;
        q[9] = 6;
        q[12..16].copy_from_slice(&[10, 0, 100, 1]);
        q[16..20].copy_from_slice(&[10, 0, 1, 2]);
        let c = checksum::compute(&q);
        q[10..12].copy_from_slice(&c.to_be_bytes());
        let mut t = vec![0u8; 20];
        t[0..2].copy_from_slice(&80u16.to_be_bytes());
        t[2..4].copy_from_slice(&40000u16.to_be_bytes());
        t[12] = 0x50;
        t[16..18].copy_from_slice(&0x1234u16.to_be_bytes());
        let mut icmp = vec![3, 4, 0, 0, 0, 0, 0x05, 0xa0];
        icmp.extend_from_slice(&q);
        icmp.extend_from_slice(&t);
        let c = checksum::compute(&icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&icmp);
        f
    }

    fn v4(a: [u8; 4]) -> AddrBytes {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&a);
        b
    }

    #[test]
    fn an_error_quoting_a_reply_names_the_client_to_vip_direction() {
        let f = frag_needed_v4();
        let Icmp::Error(e) = parse(&f).unwrap() else {
            panic!("not parsed as an error");
        };
        let k = e.flow();
        assert_eq!((k.saddr, k.sport), (v4([10, 0, 1, 2]), 40000));
        assert_eq!((k.daddr, k.dport), (v4([10, 0, 100, 1]), 80));
        assert_eq!(e.dst(&f), v4([10, 0, 100, 1]));
    }

    #[test]
    fn translation_keeps_every_checksum_valid() {
        let mut f = frag_needed_v4();
        let Icmp::Error(e) = parse(&f).unwrap() else {
            panic!("not parsed as an error");
        };
        let rip = v4([10, 0, 2, 11]);
        translate(&mut f, &e, Toward::Server, &rip, 8080).unwrap();
        let ip = ipv4::Packet::new_checked(&f[14..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.dst_addr().octets(), [10, 0, 2, 11]);
        assert_eq!(icmp_checksum(&f[14..], 20, f.len() - 14, false), 0);
        let q = ipv4::Packet::new_unchecked(&f[14 + 28..14 + 48]);
        assert!(q.verify_checksum());
        assert_eq!(q.src_addr().octets(), [10, 0, 2, 11]);
        assert_eq!(&f[14 + 48..14 + 50], &8080u16.to_be_bytes());
        // The quoted TCP checksum moved by exactly the change: translating
        // back gives the original frame, byte for byte.
        translate(&mut f, &e, Toward::Server, &v4([10, 0, 100, 1]), 80).unwrap();
        assert_eq!(f, frag_needed_v4());
    }

    #[test]
    fn echo_and_other_protocols_are_not_errors_and_bad_ones_are_refused() {
        let mut f = frag_needed_v4();
        f[14 + 20] = 8; // echo request
        assert!(matches!(parse(&f), Ok(Icmp::NotAnError)));
        let mut f = frag_needed_v4();
        f[14 + 22] ^= 1; // ICMP checksum
        assert_eq!(parse(&f).unwrap_err(), DropReason::Malformed);
        let mut f = frag_needed_v4();
        f[14 + 28 + 9] = 47; // quoted GRE
        f[14 + 22..14 + 24].fill(0);
        let c = checksum::compute(&f[14 + 20..]);
        f[14 + 22..14 + 24].copy_from_slice(&c.to_be_bytes());
        assert_eq!(parse(&f).unwrap_err(), DropReason::IcmpUnrelayable);
        let mut f = frag_needed_v4();
        f.truncate(14 + 20 + 8 + 10);
        f[14 + 2..14 + 4].copy_from_slice(&38u16.to_be_bytes());
        assert!(parse(&f).is_err(), "a quote shorter than its IP header");
    }
}
