//! The crate's promise: `new_checked` never panics, and once it returns `Ok`
//! no accessor can panic, whatever the bytes. Each property feeds arbitrary
//! bytes (biased so that a good share parse) and calls every getter, then
//! every setter that does not change a length field, plus the checksum and
//! incremental-update methods.

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use rvs_wire::{ethernet, icmpv4, icmpv6, ipv4, ipv6, tcp, udp, EthernetAddress};

/// Arbitrary bytes, and arbitrary bytes with a few header bytes overwritten
/// by `patch` so that the interesting (parsing) branch is reached often.
fn bytes_with(max: usize, patch: fn(&mut [u8], u8, u8)) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..max),
        (
            proptest::collection::vec(any::<u8>(), 0..max),
            any::<u8>(),
            any::<u8>()
        )
            .prop_map(move |(mut v, a, b)| {
                patch(&mut v, a, b);
                v
            }),
    ]
}

/// Sets byte `at` when it exists.
fn put(v: &mut [u8], at: usize, value: u8) {
    if let Some(b) = v.get_mut(at) {
        *b = value;
    }
}

/// A 16-bit length no larger than the buffer (plus a little, to hit the
/// boundary from both sides).
fn len_field(v: &[u8], r: u8) -> u16 {
    (usize::from(r) % (v.len() + 3)) as u16
}

fn patch_ipv4(v: &mut [u8], a: u8, b: u8) {
    put(v, 0, 0x40 | (a & 0x0f));
    let l = len_field(v, b).to_be_bytes();
    put(v, 2, l[0]);
    put(v, 3, l[1]);
}

fn patch_ipv6(v: &mut [u8], _a: u8, b: u8) {
    put(v, 0, 0x60);
    let l = (len_field(v, b).saturating_sub(40)).to_be_bytes();
    put(v, 4, l[0]);
    put(v, 5, l[1]);
}

fn patch_tcp(v: &mut [u8], a: u8, _b: u8) {
    put(v, 12, a & 0xf0);
}

fn patch_udp(v: &mut [u8], _a: u8, b: u8) {
    let l = len_field(v, b).to_be_bytes();
    put(v, 4, l[0]);
    put(v, 5, l[1]);
}

fn patch_eth(v: &mut [u8], a: u8, b: u8) {
    let tags = [0x8100u16, 0x88a8, 0x0800, 0x86dd];
    for (i, at) in [12usize, 16, 20].into_iter().enumerate() {
        let t = tags[usize::from((a >> (2 * i)) & 3)].to_be_bytes();
        put(v, at, t[0]);
        put(v, at + 1, t[1]);
    }
    let _ = b;
}

fn patch_none(_v: &mut [u8], _a: u8, _b: u8) {}

const A4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const B6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn ethernet_never_panics(mut v in bytes_with(40, patch_eth)) {
        if let Ok(f) = ethernet::Frame::new_checked(&v[..]) {
            let _ = (f.dst_addr(), f.src_addr(), f.ethertype(), f.vlan_id(), f.vlan_tags());
            prop_assert!(f.header_len() <= v.len());
            prop_assert_eq!(f.payload().len(), v.len() - f.header_len());
            let mut f = ethernet::Frame::new_checked(&mut v[..]).unwrap();
            f.set_dst_addr(EthernetAddress::BROADCAST);
            f.set_src_addr(EthernetAddress([2, 0, 0, 0, 0, 1]));
            f.set_ethertype(ethernet::ethertype::IPV4);
            f.payload_mut().fill(0);
        } else {
            prop_assert!(v.len() < ethernet::HEADER_LEN + 8);
        }
    }

    #[test]
    fn ipv4_never_panics(mut v in bytes_with(80, patch_ipv4)) {
        if let Ok(p) = ipv4::Packet::new_checked(&v[..]) {
            let _ = (p.version(), p.tos(), p.ident(), p.dont_frag(), p.more_frags());
            let _ = (p.frag_offset(), p.is_fragment(), p.ttl(), p.protocol(), p.checksum());
            let _ = (p.src_addr(), p.dst_addr(), p.verify_checksum());
            prop_assert!(p.header_len() >= ipv4::HEADER_LEN);
            prop_assert_eq!(p.options().len(), p.header_len() - ipv4::HEADER_LEN);
            prop_assert_eq!(p.header().len(), p.header_len());
            prop_assert_eq!(p.header_len() + p.payload().len(), usize::from(p.total_len()));
            prop_assert_eq!(p.packet().len(), usize::from(p.total_len()));
            let mut p = ipv4::Packet::new_checked(&mut v[..]).unwrap();
            p.set_src_addr_incremental(B4);
            p.set_dst_addr_incremental(A4);
            p.decrement_ttl_incremental();
            p.set_tos(1);
            p.set_ident(2);
            p.set_dont_frag(true);
            p.set_more_frags(true);
            p.set_frag_offset(0xffff);
            p.set_ttl(0);
            p.set_protocol(6);
            p.set_src_addr(A4);
            p.set_dst_addr(B4);
            p.set_checksum(0xffff);
            p.fill_checksum();
            prop_assert!(p.verify_checksum());
            p.payload_mut().fill(0);
        }
    }

    #[test]
    fn ipv6_never_panics(mut v in bytes_with(100, patch_ipv6)) {
        if let Ok(p) = ipv6::Packet::new_checked(&v[..]) {
            let _ = (p.version(), p.traffic_class(), p.flow_label(), p.next_header());
            let _ = (p.hop_limit(), p.src_addr(), p.dst_addr(), p.header());
            prop_assert_eq!(p.payload().len(), usize::from(p.payload_len()));
            prop_assert_eq!(p.packet().len(), ipv6::HEADER_LEN + usize::from(p.payload_len()));
            let mut p = ipv6::Packet::new_checked(&mut v[..]).unwrap();
            p.set_src_addr(A6);
            p.set_dst_addr(B6);
            p.set_hop_limit(1);
            p.set_traffic_class(0xff);
            p.set_flow_label(u32::MAX);
            p.set_next_header(17);
            p.payload_mut().fill(0);
            prop_assert_eq!(p.version(), 6);
        }
    }

    #[test]
    fn tcp_never_panics(mut v in bytes_with(80, patch_tcp)) {
        if let Ok(p) = tcp::Packet::new_checked(&v[..]) {
            let _ = (p.src_port(), p.dst_port(), p.seq_number(), p.ack_number(), p.flags());
            let _ = (p.fin(), p.syn(), p.rst(), p.psh(), p.ack(), p.urg());
            let _ = (p.window(), p.checksum(), p.urgent_at(), p.options());
            let _ = (p.verify_checksum_v4(&A4, &B4), p.verify_checksum_v6(&A6, &B6));
            prop_assert_eq!(p.header_len() + p.payload().len(), v.len());
            let mut p = tcp::Packet::new_checked(&mut v[..]).unwrap();
            p.set_src_port(1);
            p.set_dst_port(2);
            p.set_seq_number(3);
            p.set_ack_number(4);
            p.set_flags(0xff);
            p.set_window(5);
            p.set_urgent_at(6);
            p.update_checksum(&A4.octets(), &B4.octets());
            p.fill_checksum_v4(&A4, &B4);
            prop_assert!(p.verify_checksum_v4(&A4, &B4));
            p.fill_checksum_v6(&A6, &B6);
            prop_assert!(p.verify_checksum_v6(&A6, &B6));
            p.payload_mut().fill(0);
        }
    }

    #[test]
    fn udp_never_panics(mut v in bytes_with(60, patch_udp)) {
        if let Ok(p) = udp::Packet::new_checked(&v[..]) {
            let _ = (p.src_port(), p.dst_port(), p.checksum(), p.is_empty());
            let _ = (p.verify_checksum_v4(&A4, &B4), p.verify_checksum_v6(&A6, &B6));
            prop_assert_eq!(udp::HEADER_LEN + p.payload().len(), usize::from(p.len()));
            let mut p = udp::Packet::new_checked(&mut v[..]).unwrap();
            p.set_src_port(1);
            p.set_dst_port(2);
            p.update_checksum(&A4.octets(), &B4.octets());
            p.fill_checksum_v4(&A4, &B4);
            prop_assert!(p.verify_checksum_v4(&A4, &B4));
            prop_assert_ne!(p.checksum(), 0);
            p.fill_checksum_v6(&A6, &B6);
            prop_assert!(p.verify_checksum_v6(&A6, &B6));
            p.payload_mut().fill(0);
        }
    }

    #[test]
    fn icmpv4_never_panics(mut v in bytes_with(40, patch_none)) {
        if let Ok(p) = icmpv4::Packet::new_checked(&v[..]) {
            let _ = (p.msg_type(), p.msg_code(), p.checksum(), p.next_hop_mtu());
            let _ = (p.echo_ident(), p.echo_seq(), p.is_error(), p.verify_checksum());
            prop_assert_eq!(p.data().len() + icmpv4::HEADER_LEN, v.len());
            let mut p = icmpv4::Packet::new_checked(&mut v[..]).unwrap();
            p.set_msg_type(3);
            p.set_msg_code(4);
            p.set_next_hop_mtu(1400);
            p.set_echo_ident(1);
            p.set_echo_seq(2);
            p.update_checksum(&[1, 2], &[3, 4]);
            p.fill_checksum();
            prop_assert!(p.verify_checksum());
            p.data_mut().fill(0);
        } else {
            prop_assert!(v.len() < icmpv4::HEADER_LEN);
        }
    }

    #[test]
    fn icmpv6_never_panics(mut v in bytes_with(40, patch_none)) {
        if let Ok(p) = icmpv6::Packet::new_checked(&v[..]) {
            let _ = (p.msg_type(), p.msg_code(), p.checksum(), p.mtu());
            let _ = (p.echo_ident(), p.echo_seq(), p.is_error(), p.verify_checksum(&A6, &B6));
            prop_assert_eq!(p.data().len() + icmpv6::HEADER_LEN, v.len());
            let mut p = icmpv6::Packet::new_checked(&mut v[..]).unwrap();
            p.set_msg_type(2);
            p.set_msg_code(0);
            p.set_mtu(1280);
            p.set_echo_ident(1);
            p.set_echo_seq(2);
            p.update_checksum(&A6.octets(), &B6.octets());
            p.fill_checksum(&A6, &B6);
            prop_assert!(p.verify_checksum(&A6, &B6));
            p.data_mut().fill(0);
        } else {
            prop_assert!(v.len() < icmpv6::HEADER_LEN);
        }
    }

    /// Parsing arbitrary strings as MAC addresses never panics, and what
    /// parses prints back in canonical form.
    #[test]
    fn mac_parse_never_panics(s in "[0-9a-fA-F:-]{0,20}|\\PC{0,20}") {
        if let Ok(mac) = s.parse::<EthernetAddress>() {
            prop_assert_eq!(mac.to_string().parse::<EthernetAddress>(), Ok(mac));
            prop_assert_eq!(mac.to_string(), s.to_ascii_lowercase().replace('-', ":"));
        }
    }
}
