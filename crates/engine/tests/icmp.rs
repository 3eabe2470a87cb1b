//! ICMP errors about tracked connections (`ip_vs_in_icmp` /
//! `ip_vs_out_icmp`): relayed to whoever sent the quoted packet, translated
//! for NAT with every checksum right; errors about nothing we track are
//! counted and dropped; every frame lands in one counter.

mod common;

use common::*;
use rvs_engine::{DropReason, ForwardMethod, Protocol, Verdict};
use rvs_wire::checksum;

const ROUTER: &str = "10.0.3.1";

/// "Fragmentation needed" from the router on the client's side about a
/// reply VIP:80 → client:`port`.
fn frag_needed_about_reply(port: u16) -> Vec<u8> {
    let reply = tcp_frame(
        FRONT_MAC,
        ROUTER_MAC,
        (VIP, 80),
        (CLIENT, port),
        ACK,
        &[0u8; 64],
    );
    icmp_v4((ROUTER_MAC, FRONT_MAC), ROUTER, VIP, 3, 4, 1400, &reply)
}

/// The quoted packet of an ICMP error as (source, destination, ports).
fn quoted(seen_ip: &[u8]) -> (std::net::IpAddr, std::net::IpAddr, (u16, u16)) {
    let q = &seen_ip[20 + 8..];
    let ihl = usize::from(q[0] & 0x0f) * 4;
    assert_eq!(
        checksum::compute(&q[..ihl]),
        0,
        "quoted IPv4 header checksum"
    );
    let a = |b: &[u8]| std::net::IpAddr::from([b[0], b[1], b[2], b[3]]);
    let port = |i: usize| u16::from_be_bytes([q[ihl + i], q[ihl + i + 1]]);
    (a(&q[12..16]), a(&q[16..20]), (port(0), port(2)))
}

fn established(method: ForwardMethod) -> Director {
    let mut d = Director::new(config(Protocol::Tcp, "rr", method, &[1]));
    let (v, _) = d.run(&from_client(40000, SYN, b""), FRONT);
    assert_eq!(v, Verdict::Forward { egress: BACK });
    d
}

#[test]
fn nat_error_from_the_client_side_reaches_the_server_translated() {
    let mut d = established(ForwardMethod::Masq);
    let before = d.engine.status()[0].stats;
    let (v, out) = d.run(&frag_needed_about_reply(40000), FRONT);
    assert_eq!(v, Verdict::Forward { egress: BACK });
    let seen = check(&out); // every checksum, ICMP included
    assert_eq!(seen.protocol, 1);
    assert_eq!(seen.src, ip(ROUTER), "the router still speaks");
    assert_eq!(seen.dst, ip(RS[0]), "outer destination = RIP");
    assert_eq!(seen.dst_mac, mac(11).0);
    assert_eq!(
        quoted(&seen.ip_bytes),
        (ip(RS[0]), ip(CLIENT), (8080, 40000)),
        "the quoted reply is the one the server sent"
    );
    assert_eq!(&seen.ip_bytes[26..28], &1400u16.to_be_bytes(), "MTU kept");
    let c = d.engine.counters();
    assert_eq!((c.icmp_translated, c.icmp_relayed), (1, 0));
    assert_eq!(d.engine.status()[0].stats.in_packets, before.in_packets + 1);
    assert_eq!(c.accounted(), c.rx_packets);
}

#[test]
fn nat_error_from_the_server_side_reaches_the_client_from_the_vip() {
    let mut d = established(ForwardMethod::Masq);
    // The server says port unreachable about the client's (translated) packet.
    let translated = tcp_frame(BACK_MAC, 11, (CLIENT, 40000), (RS[0], 8080), ACK, b"");
    let err = icmp_v4((11, BACK_MAC), RS[0], CLIENT, 3, 3, 0, &translated);
    let (v, out) = d.run(&err, BACK);
    assert_eq!(v, Verdict::Forward { egress: FRONT });
    let seen = check(&out);
    assert_eq!(
        seen.src,
        ip(VIP),
        "outer source = VIP, as the kernel sets it"
    );
    assert_eq!(seen.dst, ip(CLIENT));
    assert_eq!(seen.ttl, 63, "routed: TTL decremented");
    assert_eq!(seen.dst_mac, mac(ROUTER_MAC).0);
    assert_eq!(
        quoted(&seen.ip_bytes),
        (ip(CLIENT), ip(VIP), (40000, 80)),
        "the quoted packet is the one the client sent"
    );
    assert_eq!(d.engine.counters().icmp_translated, 1);
    assert_eq!(d.engine.status()[0].stats.out_packets, 1);
}

#[test]
fn dr_and_tun_relay_the_error_unchanged_to_the_server() {
    let mut d = established(ForwardMethod::Route);
    let err = frag_needed_about_reply(40000);
    let (v, out) = d.run(&err, FRONT);
    assert_eq!(v, Verdict::Forward { egress: BACK });
    assert_eq!(check(&out).dst_mac, mac(11).0);
    assert_eq!(&out[12..], &err[12..], "IP packet untouched");
    assert_eq!(d.engine.counters().icmp_relayed, 1);

    let mut d = established(ForwardMethod::Tunnel);
    let (v, out) = d.run(&err, FRONT);
    assert_eq!(v, Verdict::Forward { egress: BACK });
    let seen = check(&out);
    assert_eq!((seen.protocol, seen.dst), (4, ip(RS[0])), "IPIP to the RIP");
    assert_eq!(seen.inner.unwrap().ip_bytes, err[14..].to_vec());
    assert_eq!(d.engine.counters().icmp_relayed, 1);
}

#[test]
fn errors_about_nothing_tracked_are_dropped_and_echo_is_not_ours() {
    let mut d = established(ForwardMethod::Masq);
    let (v, _) = d.run(&frag_needed_about_reply(40001), FRONT);
    assert_eq!(v, Verdict::Drop(DropReason::IcmpNoConnection));
    // A quote cut before the ports.
    let reply = tcp_frame(FRONT_MAC, ROUTER_MAC, (VIP, 80), (CLIENT, 40000), ACK, b"");
    let short = icmp_v4(
        (ROUTER_MAC, FRONT_MAC),
        ROUTER,
        VIP,
        11,
        0,
        0,
        &reply[..14 + 22],
    );
    assert_eq!(
        d.run(&short, FRONT).0,
        Verdict::Drop(DropReason::IcmpUnrelayable)
    );
    // A bad ICMP checksum.
    let mut bad = frag_needed_about_reply(40000);
    bad[14 + 20 + 2] ^= 0xff;
    assert_eq!(d.run(&bad, FRONT).0, Verdict::Drop(DropReason::Malformed));
    // Echo request to the VIP: the kernel's.
    let mut echo = frag_needed_about_reply(40000);
    echo[14 + 20] = 8;
    echo[14 + 21] = 0;
    let icmp_len = echo.len() - 34;
    echo[34 + 2..34 + 4].fill(0);
    let c = checksum::compute(&echo[34..34 + icmp_len]);
    echo[34 + 2..34 + 4].copy_from_slice(&c.to_be_bytes());
    assert_eq!(d.run(&echo, FRONT).0, Verdict::Pass);
    let c = d.engine.counters();
    assert_eq!(c.dropped(DropReason::IcmpNoConnection), 1);
    assert_eq!(c.accounted(), c.rx_packets, "every frame counted once");
}

#[test]
fn ipv6_packet_too_big_is_translated_with_its_pseudo_header_checksum() {
    use etherparse::PacketBuilder;
    use std::net::Ipv6Addr;
    let mut d = ipv6_director(Protocol::Tcp, ForwardMethod::Masq);
    let o = |s: &str| s.parse::<Ipv6Addr>().unwrap().octets();
    let (client, vip, router, rip) = (
        o("fd00:1::2"),
        o("fd00:100::1"),
        o("fd00:3::1"),
        o("fd00:2::11"),
    );
    let mut syn = Vec::new();
    PacketBuilder::ethernet2(mac(ROUTER_MAC).0, mac(FRONT_MAC).0)
        .ipv6(client, vip, 64)
        .tcp(40000, 80, 1, 1000)
        .syn()
        .write(&mut syn, b"")
        .unwrap();
    assert_eq!(d.run(&syn, FRONT).0, Verdict::Forward { egress: BACK });
    // The reply VIP:80 → client, quoted by a router's packet too big.
    let mut reply = Vec::new();
    PacketBuilder::ethernet2(mac(FRONT_MAC).0, mac(ROUTER_MAC).0)
        .ipv6(vip, client, 63)
        .tcp(80, 40000, 1, 1000)
        .ack(5)
        .write(&mut reply, &[0u8; 32])
        .unwrap();
    let mut icmp = vec![2, 0, 0, 0, 0, 0, 0x05, 0x00];
    icmp.extend_from_slice(&reply[14..]);
    let sum = |src: &[u8; 16], dst: &[u8; 16], m: &[u8]| {
        checksum::finish(checksum::combine(
            checksum::sum(m),
            checksum::pseudo_header_v6(src, dst, 58, m.len() as u32),
        ))
    };
    let c = sum(&router, &vip, &icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut err = Vec::new();
    PacketBuilder::ethernet2(mac(ROUTER_MAC).0, mac(FRONT_MAC).0)
        .ipv6(router, vip, 64)
        .write(&mut err, etherparse::IpNumber(58), &icmp)
        .unwrap();
    let (v, out) = d.run(&err, FRONT);
    assert_eq!(v, Verdict::Forward { egress: BACK });
    let ip6 = &out[14..];
    let dst: [u8; 16] = ip6[24..40].try_into().unwrap();
    assert_eq!(dst, rip, "outer destination = RIP");
    let m = &ip6[40..];
    assert_eq!(
        sum(&router, &rip, m),
        0,
        "ICMPv6 checksum with the new pseudo-header"
    );
    let q = &m[8..];
    assert_eq!(&q[8..24], &rip, "quoted source = RIP");
    assert_eq!(&q[40..42], &8080u16.to_be_bytes(), "quoted source port");
    // The quoted TCP checksum still matches the quoted segment (it is whole here).
    let seg = &q[40..];
    let qs: [u8; 16] = q[8..24].try_into().unwrap();
    let qd: [u8; 16] = q[24..40].try_into().unwrap();
    assert_eq!(
        checksum::finish(checksum::combine(
            checksum::sum(seg),
            checksum::pseudo_header_v6(&qs, &qd, 6, seg.len() as u32)
        )),
        0,
        "quoted TCP checksum"
    );
    assert_eq!(d.engine.counters().icmp_translated, 1);
}

/// FullNAT: an error about a reply reaches the server about the local end
/// it talks to (LIP:lport), and the server's error about a packet from the
/// local end reaches the client from the VIP, about the client's packet.
#[test]
fn fullnat_errors_are_translated_at_both_ends() {
    let lport = rvs_engine::config::DEFAULT_LOCAL_PORT_RANGE.0;
    let mut d = established(ForwardMethod::FullNat);
    let (v, out) = d.run(&frag_needed_about_reply(40000), FRONT);
    assert_eq!(v, Verdict::Forward { egress: BACK });
    let seen = check(&out);
    assert_eq!((seen.src, seen.dst), (ip(ROUTER), ip(RS[0])));
    assert_eq!(
        quoted(&seen.ip_bytes),
        (ip(RS[0]), ip(LADDR), (8080, lport)),
        "the quoted reply is the one the server sent to the local end"
    );

    let translated = tcp_frame(BACK_MAC, 11, (LADDR, lport), (RS[0], 8080), ACK, b"");
    let err = icmp_v4((11, BACK_MAC), RS[0], LADDR, 3, 3, 0, &translated);
    let (v, out) = d.run(&err, BACK);
    assert_eq!(v, Verdict::Forward { egress: FRONT });
    let seen = check(&out);
    assert_eq!((seen.src, seen.dst), (ip(VIP), ip(CLIENT)));
    assert_eq!(seen.dst_mac, mac(ROUTER_MAC).0, "routed to the client");
    assert_eq!(
        quoted(&seen.ip_bytes),
        (ip(CLIENT), ip(VIP), (40000, 80)),
        "the quoted packet is the one the client sent"
    );
    let c = d.engine.counters();
    assert_eq!((c.icmp_translated, c.icmp_relayed), (2, 0));
    assert_eq!(c.accounted(), c.rx_packets);
}
