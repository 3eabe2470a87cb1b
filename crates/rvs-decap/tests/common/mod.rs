//! Inner packets built by hand for the namespace tests, with rvs-wire's
//! header emitter and checksums.
// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::net::Ipv4Addr;

use rvs_wire::checksum::{combine, finish, pseudo_header_v4, sum};
use rvs_wire::ip_proto;
use rvs_wire::ipv4::{self, HeaderFields};

pub(crate) fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0; ipv4::HEADER_LEN];
    ipv4::emit_header(
        &mut p,
        &HeaderFields {
            src,
            dst,
            protocol: proto,
            payload_len: payload.len() as u16,
            ttl: 64,
            tos: 0,
            ident: 0x1234,
            dont_frag: true,
        },
    )
    .expect("an IPv4 header");
    p.extend_from_slice(payload);
    p
}

pub(crate) fn udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]); // no UDP checksum (allowed over IPv4)
    u.extend_from_slice(data);
    ipv4(src, dst, ip_proto::UDP, &u)
}

pub(crate) fn tcp_syn(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&0x0102_0304u32.to_be_bytes()); // seq
    t.extend_from_slice(&0u32.to_be_bytes()); // ack
    t.extend_from_slice(&[0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]); // doff 5, SYN, win
    let pseudo = pseudo_header_v4(&src.octets(), &dst.octets(), ip_proto::TCP, t.len() as u16);
    let c = finish(combine(pseudo, sum(&t)));
    t[16..18].copy_from_slice(&c.to_be_bytes());
    ipv4(src, dst, ip_proto::TCP, &t)
}
