//! Test frames built by hand (every field under the test's control, valid
//! checksums computed in full), and the frames the engine's slow path would
//! send for them, built with rvs-wire the way `crates/engine/src/fwd/` does
//! (the expected output of the XDP fast path, byte for byte). `verify`
//! re-parses an output with etherparse and recomputes every checksum in
//! full, an oracle independent of both.

use std::net::{IpAddr, Ipv4Addr};

use rvs_wire::{checksum, ipip, ipv4, ipv6, tcp, udp};

/// TCP flag bits (byte 13 of the header).
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// IP protocol numbers.
pub const TCP: u8 = 6;
/// UDP.
pub const UDP: u8 = 17;
/// SCTP.
pub const SCTP: u8 = 132;

/// Everything that varies between test frames.
#[derive(Clone, Debug)]
pub struct Flow {
    /// Ethernet source.
    pub src_mac: [u8; 6],
    /// Ethernet destination.
    pub dst_mac: [u8; 6],
    /// VLAN tags, outermost first: (TPID, TCI).
    pub vlans: Vec<(u16, u16)>,
    /// IP source.
    pub src: IpAddr,
    /// IP destination (same family).
    pub dst: IpAddr,
    /// TCP or UDP.
    pub proto: u8,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// TCP flags byte.
    pub flags: u8,
    /// TTL / hop limit.
    pub ttl: u8,
    /// IPv4 DF.
    pub df: bool,
    /// IPv4 identification.
    pub id: u16,
    /// IPv4 TOS / IPv6 traffic class.
    pub tos: u8,
    /// L4 payload.
    pub payload: Vec<u8>,
    /// IPv4 option bytes (a multiple of 4).
    pub options: Vec<u8>,
    /// Zero bytes after the IP packet (Ethernet padding).
    pub padding: usize,
    /// Send UDP without a checksum (0), as IPv4 allows.
    pub udp_no_checksum: bool,
}

impl Flow {
    /// A UDP flow src:sport -> dst:dport with sane defaults.
    pub fn udp(src: &str, sport: u16, dst: &str, dport: u16) -> Self {
        Self {
            src_mac: [2, 0, 0, 0, 0, 0xc1],
            dst_mac: [2, 0, 0, 0, 0, 0xd1],
            vlans: Vec::new(),
            src: src.parse().expect("src address"),
            dst: dst.parse().expect("dst address"),
            proto: UDP,
            sport,
            dport,
            flags: 0,
            ttl: 64,
            df: true,
            id: 0x1234,
            tos: 0x10,
            payload: b"rvs fast path".to_vec(),
            options: Vec::new(),
            padding: 0,
            udp_no_checksum: false,
        }
    }

    /// A TCP flow (ACK set: an established connection's segment).
    pub fn tcp(src: &str, sport: u16, dst: &str, dport: u16) -> Self {
        Self {
            proto: TCP,
            flags: tcp_flags::ACK | tcp_flags::PSH,
            ..Self::udp(src, sport, dst, dport)
        }
    }

    /// An SCTP flow whose packets carry one INIT chunk (the payload holds
    /// the chunks; verification tag 0, CRC32c right).
    pub fn sctp_init(src: &str, sport: u16, dst: &str, dport: u16) -> Self {
        let mut init = vec![1, 0, 0, 20];
        init.extend_from_slice(&[0x11, 0x22, 0x33, 0x44, 0, 1, 0, 0, 0, 10, 0, 10, 0, 0, 0, 1]);
        Self {
            proto: SCTP,
            payload: init,
            ..Self::udp(src, sport, dst, dport)
        }
    }

    /// The same flow's frames in the other direction (addresses and ports swapped).
    pub fn reversed(&self) -> Self {
        Self {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            src_mac: self.dst_mac,
            dst_mac: self.src_mac,
            ..self.clone()
        }
    }

    /// Length of the L2 header.
    pub fn l2_len(&self) -> usize {
        14 + 4 * self.vlans.len()
    }

    /// The frame, all checksums correct.
    pub fn frame(&self) -> Vec<u8> {
        let mut l4 = Vec::new();
        match self.proto {
            TCP => {
                let mut h = [0u8; 20];
                h[0..2].copy_from_slice(&self.sport.to_be_bytes());
                h[2..4].copy_from_slice(&self.dport.to_be_bytes());
                h[4..8].copy_from_slice(&0x0102_0304u32.to_be_bytes());
                h[8..12].copy_from_slice(&0x0a0b_0c0du32.to_be_bytes());
                h[12] = 5 << 4;
                h[13] = self.flags;
                h[14..16].copy_from_slice(&64240u16.to_be_bytes());
                l4.extend_from_slice(&h);
            }
            SCTP => {
                let mut h = [0u8; 12];
                h[0..2].copy_from_slice(&self.sport.to_be_bytes());
                h[2..4].copy_from_slice(&self.dport.to_be_bytes());
                l4.extend_from_slice(&h);
            }
            _ => {
                let mut h = [0u8; 8];
                h[0..2].copy_from_slice(&self.sport.to_be_bytes());
                h[2..4].copy_from_slice(&self.dport.to_be_bytes());
                h[4..6].copy_from_slice(&((8 + self.payload.len()) as u16).to_be_bytes());
                l4.extend_from_slice(&h);
            }
        }
        l4.extend_from_slice(&self.payload);
        if self.proto == SCTP {
            rvs_wire::sctp::Packet::new_unchecked(&mut l4[..]).fill_checksum();
        } else {
            self.fill_internet_checksum(&mut l4);
        }
        self.wrap(&l4)
    }

    /// The TCP/UDP checksum of `l4` (with the pseudo-header).
    fn fill_internet_checksum(&self, l4: &mut [u8]) {
        let pseudo = match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                checksum::pseudo_header_v4(&s.octets(), &d.octets(), self.proto, l4.len() as u16)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                checksum::pseudo_header_v6(&s.octets(), &d.octets(), self.proto, l4.len() as u32)
            }
            _ => panic!("mixed families"),
        };
        let c = checksum::finish(checksum::combine(pseudo, checksum::sum(l4)));
        let at = if self.proto == TCP { 16 } else { 6 };
        let c = match (self.proto, c) {
            (UDP, _) if self.udp_no_checksum => 0,
            (UDP, 0) => 0xffff,
            (_, c) => c,
        };
        l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }

    /// The L2 and IP headers around `l4`.
    fn wrap(&self, l4: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        for &(tpid, tci) in &self.vlans {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&tci.to_be_bytes());
        }
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                f.extend_from_slice(&[0x08, 0x00]);
                let hl = 20 + self.options.len();
                let mut ip = vec![0u8; hl];
                ip[0] = 0x40 | (hl / 4) as u8;
                ip[1] = self.tos;
                ip[2..4].copy_from_slice(&((hl + l4.len()) as u16).to_be_bytes());
                ip[4..6].copy_from_slice(&self.id.to_be_bytes());
                if self.df {
                    ip[6] = 0x40;
                }
                ip[8] = self.ttl;
                ip[9] = self.proto;
                ip[12..16].copy_from_slice(&s.octets());
                ip[16..20].copy_from_slice(&d.octets());
                ip[20..].copy_from_slice(&self.options);
                let c = checksum::compute(&ip);
                ip[10..12].copy_from_slice(&c.to_be_bytes());
                f.extend_from_slice(&ip);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                f.extend_from_slice(&[0x86, 0xdd]);
                let mut ip = [0u8; 40];
                let w = (6u32 << 28) | (u32::from(self.tos) << 20) | 0x12345;
                ip[0..4].copy_from_slice(&w.to_be_bytes());
                ip[4..6].copy_from_slice(&(l4.len() as u16).to_be_bytes());
                ip[6] = self.proto;
                ip[7] = self.ttl;
                ip[8..24].copy_from_slice(&s.octets());
                ip[24..40].copy_from_slice(&d.octets());
                f.extend_from_slice(&ip);
            }
            _ => unreachable!(),
        }
        f.extend_from_slice(l4);
        f.extend(std::iter::repeat_n(0u8, self.padding));
        f
    }
}

/// Writes the next hop's MACs, as every method does last.
pub fn set_macs(frame: &mut [u8], src: [u8; 6], dst: [u8; 6]) {
    frame[0..6].copy_from_slice(&dst);
    frame[6..12].copy_from_slice(&src);
}

/// The engine's fwd/nat.rs rewrite of one side of the IP packet at `ip`.
fn nat_rewrite(ip: &mut [u8], dst_side: bool, new_addr: IpAddr, new_port: u16) {
    let (l4_start, l4_end, proto, old_addr) = match new_addr {
        IpAddr::V4(new) => {
            let mut p = ipv4::Packet::new_checked(&mut *ip).expect("ipv4");
            let old = if dst_side { p.dst_addr() } else { p.src_addr() };
            if dst_side {
                p.set_dst_addr_incremental(new);
            } else {
                p.set_src_addr_incremental(new);
            }
            (
                p.header_len(),
                usize::from(p.total_len()),
                p.protocol(),
                IpAddr::V4(old),
            )
        }
        IpAddr::V6(new) => {
            let mut p = ipv6::Packet::new_checked(&mut *ip).expect("ipv6");
            let old = if dst_side { p.dst_addr() } else { p.src_addr() };
            if dst_side {
                p.set_dst_addr(new);
            } else {
                p.set_src_addr(new);
            }
            (
                40,
                40 + usize::from(p.payload_len()),
                p.next_header(),
                IpAddr::V6(old),
            )
        }
    };
    let octets = |a: IpAddr| -> Vec<u8> {
        match a {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        }
    };
    let l4 = &mut ip[l4_start..l4_end];
    let old_port = if dst_side {
        u16::from_be_bytes([l4[2], l4[3]])
    } else {
        u16::from_be_bytes([l4[0], l4[1]])
    };
    let mut old = octets(old_addr);
    old.extend_from_slice(&old_port.to_be_bytes());
    let mut new = octets(new_addr);
    new.extend_from_slice(&new_port.to_be_bytes());
    if proto == TCP {
        let mut t = tcp::Packet::new_checked(l4).expect("tcp");
        if dst_side {
            t.set_dst_port(new_port);
        } else {
            t.set_src_port(new_port);
        }
        t.update_checksum(&old, &new);
    } else {
        let mut u = udp::Packet::new_checked(l4).expect("udp");
        if dst_side {
            u.set_dst_port(new_port);
        } else {
            u.set_src_port(new_port);
        }
        u.update_checksum(&old, &new);
    }
}

/// NAT client -> real server: destination becomes `addr:port`, MACs last.
pub fn expect_masq_in(
    frame: &[u8],
    l2_len: usize,
    addr: IpAddr,
    port: u16,
    macs: ([u8; 6], [u8; 6]),
) -> Vec<u8> {
    let mut f = frame.to_vec();
    nat_rewrite(&mut f[l2_len..], true, addr, port);
    set_macs(&mut f, macs.0, macs.1);
    f
}

/// NAT real server -> client: TTL / hop limit first, then the source.
pub fn expect_masq_out(
    frame: &[u8],
    l2_len: usize,
    addr: IpAddr,
    port: u16,
    macs: ([u8; 6], [u8; 6]),
) -> Vec<u8> {
    let mut f = frame.to_vec();
    let ip = &mut f[l2_len..];
    if addr.is_ipv4() {
        ipv4::Packet::new_checked(&mut *ip)
            .expect("ipv4")
            .decrement_ttl_incremental();
    } else {
        let mut p = ipv6::Packet::new_checked(&mut *ip).expect("ipv6");
        let h = p.hop_limit();
        p.set_hop_limit(h - 1);
    }
    nat_rewrite(ip, false, addr, port);
    set_macs(&mut f, macs.0, macs.1);
    f
}

/// IPIP as the contract words it: outer header after the L2 header, TOS and
/// DF copied, identification 0 with DF else the inner one, TTL 64, padding
/// dropped.
pub fn expect_tunnel(
    frame: &[u8],
    l2_len: usize,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    macs: ([u8; 6], [u8; 6]),
) -> Vec<u8> {
    let inner = ipv4::Packet::new_checked(&frame[l2_len..]).expect("inner ipv4");
    let inner_len = usize::from(inner.total_len());
    let ident = if inner.dont_frag() { 0 } else { inner.ident() };
    let mut f = frame[..l2_len].to_vec();
    f.extend_from_slice(&[0u8; ipip::OVERHEAD]);
    ipip::emit_outer(
        &mut f[l2_len..],
        src,
        dst,
        inner.tos(),
        inner.dont_frag(),
        inner_len,
        64,
        ident,
    )
    .expect("outer header");
    f.extend_from_slice(&frame[l2_len..l2_len + inner_len]);
    set_macs(&mut f, macs.0, macs.1);
    f
}

/// Re-parses `frame` with etherparse and checks every checksum in full:
/// the IPv4 header's, the TCP/UDP one (UDP 0 allowed on IPv4), and for
/// IPIP the inner packet's too. Panics with `what` on any mismatch.
pub fn verify(frame: &[u8], what: &str) {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    let p = SlicedPacket::from_ethernet(frame).unwrap_or_else(|e| panic!("{what}: {e}"));
    let (src, dst, v6, payload_is_ipip) = match &p.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header();
            assert_eq!(
                h.to_header().calc_header_checksum(),
                h.header_checksum(),
                "{what}: IPv4 header checksum"
            );
            (
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
                false,
                h.protocol().0 == 4,
            )
        }
        Some(NetSlice::Ipv6(ip)) => (
            IpAddr::V6(ip.header().source_addr()),
            IpAddr::V6(ip.header().destination_addr()),
            true,
            false,
        ),
        other => panic!("{what}: not IP: {other:?}"),
    };
    if payload_is_ipip {
        // Verify the inner packet as if it had its own Ethernet header.
        let l2 = frame.len()
            - match &p.net {
                Some(NetSlice::Ipv4(ip)) => ip.header().slice().len() + ip.payload().payload.len(),
                _ => unreachable!(),
            };
        let mut inner = frame[..l2].to_vec();
        inner.extend_from_slice(&frame[l2 + 20..]);
        return verify(&inner, what);
    }
    match &p.transport {
        Some(TransportSlice::Tcp(t)) => {
            let want = match (src, dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => t.calc_checksum_ipv4(s.octets(), d.octets()),
                (IpAddr::V6(s), IpAddr::V6(d)) => t.calc_checksum_ipv6(s.octets(), d.octets()),
                _ => unreachable!(),
            }
            .expect("tcp checksum");
            assert_eq!(t.checksum(), want, "{what}: TCP checksum");
        }
        Some(TransportSlice::Udp(u)) => {
            if u.checksum() == 0 && !v6 {
                return;
            }
            let h = u.to_header();
            let want = match (src, dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    h.calc_checksum_ipv4_raw(s.octets(), d.octets(), u.payload())
                }
                (IpAddr::V6(s), IpAddr::V6(d)) => {
                    h.calc_checksum_ipv6_raw(s.octets(), d.octets(), u.payload())
                }
                _ => unreachable!(),
            }
            .expect("udp checksum");
            assert_eq!(u.checksum(), want, "{what}: UDP checksum");
        }
        other => panic!("{what}: not TCP/UDP: {other:?}"),
    }
}
