//! The TUN tunnel types (`--tun-type gue | gre`): the headers the kernel's
//! `ipvs_gue_encap` / `ipvs_gre_encap` write between the outer IP header
//! and the untouched inner packet, byte for byte, in both families; the
//! path MTU accounting for their longer headers; and which of their flows
//! the XDP program may forward (those without a checksum).

mod common;

use common::*;
use rvs_engine::{
    Config, ConfigError, DropReason, FastAction, ForwardMethod, Protocol, Rewrite, Snapshot,
    Tunnel, TunnelChecksum, TunnelEncap, Verdict,
};
use rvs_wire::{gre, ipv4, ipv6, udp};

const GUE_PORT: u16 = 6080;

fn gue(checksum: TunnelChecksum) -> Tunnel {
    Tunnel::Gue {
        port: GUE_PORT,
        checksum,
    }
}

fn gre(checksum: TunnelChecksum) -> Tunnel {
    Tunnel::Gre { checksum }
}

fn tunnel_config(tunnel: Tunnel, weights: &[u32]) -> Config {
    let mut cfg = config(Protocol::Tcp, "rr", ForwardMethod::Tunnel, weights);
    for d in &mut cfg.services[0].dests {
        d.tunnel = tunnel;
    }
    cfg
}

/// The outer IPv4 packet of a forwarded frame, its header checked.
fn outer_v4(out: &[u8]) -> ipv4::Packet<&[u8]> {
    let h = ipv4::Packet::new_checked(&out[14..]).expect("outer IPv4");
    assert!(h.verify_checksum(), "outer header checksum");
    h
}

#[test]
fn gue_v4_is_udp_to_the_tun_port_then_gue_v0_then_the_inner_packet() {
    for checksum in TunnelChecksum::ALL {
        let mut d = Director::new(tunnel_config(gue(checksum), &[1]));
        let frame = from_client(40000, SYN, b"hello");
        let (v, out) = d.run(&frame, FRONT);
        assert_eq!(v, Verdict::Forward { egress: BACK });
        assert_eq!(&out[..6], &mac(11).0, "to the real server's MAC");
        let h = outer_v4(&out);
        assert_eq!(h.protocol(), 17, "UDP");
        assert_eq!(
            h.src_addr(),
            "10.0.2.10".parse::<std::net::Ipv4Addr>().unwrap()
        );
        assert_eq!(h.dst_addr(), RS[0].parse::<std::net::Ipv4Addr>().unwrap());
        assert_eq!(usize::from(h.total_len()), 20 + 8 + 4 + frame.len() - 14);
        let dgram = udp::Packet::new_checked(h.payload()).unwrap();
        assert_eq!(dgram.dst_port(), GUE_PORT);
        assert!(
            (32768..60999).contains(&dgram.src_port()),
            "local port range"
        );
        assert_eq!(usize::from(dgram.len()), 8 + 4 + frame.len() - 14);
        if checksum.summed() {
            assert_ne!(dgram.checksum(), 0, "{checksum:?}: summed");
            assert!(dgram.verify_checksum_v4(&h.src_addr(), &h.dst_addr()));
        } else {
            assert_eq!(dgram.checksum(), 0, "nocsum: no UDP checksum");
        }
        // GUE version 0, no control, hlen 0 (no remote-checksum option on a
        // complete packet), protocol 4, flags 0.
        assert_eq!(&dgram.payload()[..4], &[0, 4, 0, 0]);
        assert_eq!(&dgram.payload()[4..], &frame[14..], "inner untouched");
    }
}

#[test]
fn gue_source_port_is_one_per_connection_and_spreads_over_connections() {
    let mut d = Director::new(tunnel_config(gue(TunnelChecksum::Nocsum), &[1]));
    let port_of = |d: &mut Director, cport: u16, flags| {
        let (_, out) = d.run(&from_client(cport, flags, b""), FRONT);
        udp::Packet::new_checked(outer_v4(&out).payload())
            .unwrap()
            .src_port()
    };
    let first = port_of(&mut d, 40000, SYN);
    assert_eq!(port_of(&mut d, 40000, ACK), first, "same flow, same port");
    let ports: std::collections::HashSet<u16> =
        (0..32).map(|i| port_of(&mut d, 41000 + i, SYN)).collect();
    assert!(ports.len() > 24, "32 flows, {} ports", ports.len());
}

#[test]
fn gre_v4_carries_the_ethertype_and_with_csum_a_checksum() {
    let frame = from_client(40000, SYN, b"hello");
    let mut d = Director::new(tunnel_config(gre(TunnelChecksum::Nocsum), &[1]));
    let (_, out) = d.run(&frame, FRONT);
    let h = outer_v4(&out);
    assert_eq!(h.protocol(), 47, "GRE");
    assert_eq!(usize::from(h.total_len()), 20 + 4 + frame.len() - 14);
    assert_eq!(&h.payload()[..4], &[0x00, 0x00, 0x08, 0x00]);
    assert_eq!(&h.payload()[4..], &frame[14..]);

    let mut d = Director::new(tunnel_config(gre(TunnelChecksum::Csum), &[1]));
    let (_, out) = d.run(&frame, FRONT);
    let h = outer_v4(&out);
    assert_eq!(usize::from(h.total_len()), 20 + 8 + frame.len() - 14);
    let g = h.payload();
    assert_eq!(&g[..4], &[0x80, 0x00, 0x08, 0x00], "C bit, IPv4");
    assert_eq!(&g[6..8], &[0, 0], "reserved1");
    assert_eq!(
        rvs_wire::checksum::compute(g),
        0,
        "checksum over all of GRE"
    );
    assert_eq!(gre::inner(g), Ok((0x0800, 8)));
    assert_eq!(&g[8..], &frame[14..]);
}

/// A frame from the client with DF set or clear and `len` bytes of IP.
fn big(len: usize, df: bool) -> Vec<u8> {
    let mut f = from_client(40000, ACK, &vec![0x55; len - 40]);
    let mut ip = ipv4::Packet::new_checked(&mut f[14..]).unwrap();
    ip.set_dont_frag(df);
    ip.fill_checksum();
    f
}

#[test]
fn frag_needed_reports_the_mtu_minus_each_tunnel_s_overhead() {
    for (tunnel, overhead) in [
        (Tunnel::Ipip, 20),
        (gue(TunnelChecksum::Csum), 32),
        (gre(TunnelChecksum::Nocsum), 24),
        (gre(TunnelChecksum::Csum), 28),
    ] {
        let mut d = Director::new(tunnel_config(tunnel, &[1]));
        d.run(&from_client(40000, SYN, b""), FRONT);
        let fits = big(1500 - overhead, true);
        assert_eq!(
            d.run(&fits, FRONT).0,
            Verdict::Forward { egress: BACK },
            "{tunnel:?}: {} bytes fit",
            1500 - overhead
        );
        let (v, out) = d.run(&big(1500 - overhead + 1, true), FRONT);
        assert_eq!(
            v,
            Verdict::Reply {
                egress: FRONT,
                cause: DropReason::FragNeeded
            },
            "{tunnel:?}"
        );
        let icmp = &check(&out).ip_bytes[20..];
        assert_eq!((icmp[0], icmp[1]), (3, 4));
        assert_eq!(
            usize::from(u16::from_be_bytes([icmp[6], icmp[7]])),
            1500 - overhead,
            "{tunnel:?}"
        );
    }
}

#[test]
fn without_df_the_outer_packet_is_fragmented_with_the_tunnel_header_in_the_first() {
    for tunnel in [gue(TunnelChecksum::Csum), gre(TunnelChecksum::Csum)] {
        let mut d = Director::new(tunnel_config(tunnel, &[1]));
        d.run(&from_client(40000, SYN, b""), FRONT);
        let frame = big(1500, false);
        let (v, first) = d.run(&frame, FRONT);
        assert_eq!(v, Verdict::Forward { egress: BACK }, "{tunnel:?}");
        let mut frames = vec![first];
        let mut buf = [0u8; 2048];
        while let Some(n) = d.engine.next_extra_frame(&mut buf) {
            frames.push(buf[..n].to_vec());
        }
        assert_eq!(frames.len(), 2, "{tunnel:?}");
        let mut payload = Vec::new();
        let (mut src, mut dst) = (None, None);
        for (i, f) in frames.iter().enumerate() {
            assert!(f.len() - 14 <= 1500);
            let h = outer_v4(f);
            assert_eq!(usize::from(h.frag_offset()), payload.len(), "{i}");
            assert_eq!(h.more_frags(), i == 0);
            (src, dst) = (Some(h.src_addr()), Some(h.dst_addr()));
            payload.extend_from_slice(h.payload());
        }
        // Reassembled: the tunnel header, checksum right, then the inner packet.
        let inner_start = match tunnel {
            Tunnel::Gue { .. } => {
                let dgram = udp::Packet::new_checked(&payload[..]).unwrap();
                assert!(dgram.verify_checksum_v4(&src.unwrap(), &dst.unwrap()));
                12
            }
            _ => {
                assert_eq!(gre::inner(&payload), Ok((0x0800, 8)));
                8
            }
        };
        assert_eq!(&payload[inner_start..], &frame[14..], "{tunnel:?}");
    }
}

/// The IPv6 director of `common` with every server on `tunnel`.
fn ipv6_tunnel_director(tunnel: Tunnel) -> Director {
    let mut cfg = ipv6_config(Protocol::Tcp, ForwardMethod::Tunnel);
    cfg.services[0].dests[0].tunnel = tunnel;
    ipv6_director_with(cfg)
}

fn v6_frame(payload: &[u8]) -> Vec<u8> {
    let o = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap().octets();
    let mut f = Vec::new();
    etherparse::PacketBuilder::ethernet2(mac(ROUTER_MAC).0, mac(FRONT_MAC).0)
        .ipv6(o("fd00:1::2"), o("fd00:100::1"), 64)
        .tcp(40000, 80, 1, 1000)
        .syn()
        .write(&mut f, payload)
        .unwrap();
    f
}

#[test]
fn ipv6_gue_and_gre_wrap_in_an_outer_ipv6_header() {
    let frame = v6_frame(b"hello");
    for (tunnel, next_header, encap) in [
        (gue(TunnelChecksum::Nocsum), 17, 12),
        (gue(TunnelChecksum::Csum), 17, 12),
        (gre(TunnelChecksum::Nocsum), 47, 4),
        (gre(TunnelChecksum::Csum), 47, 8),
    ] {
        let mut d = ipv6_tunnel_director(tunnel);
        let (v, out) = d.run(&frame, FRONT);
        assert_eq!(v, Verdict::Forward { egress: BACK }, "{tunnel:?}");
        let h = ipv6::Packet::new_checked(&out[14..]).unwrap();
        assert_eq!(h.next_header(), next_header, "{tunnel:?}");
        assert_eq!(usize::from(h.payload_len()), encap + frame.len() - 14);
        assert_eq!(
            h.dst_addr(),
            "fd00:2::11".parse::<std::net::Ipv6Addr>().unwrap()
        );
        let p = &out[54..];
        match tunnel {
            Tunnel::Gue { checksum, .. } => {
                let dgram = udp::Packet::new_checked(p).unwrap();
                assert_eq!(dgram.dst_port(), GUE_PORT);
                assert_eq!(&dgram.payload()[..4], &[0, 41, 0, 0], "GUE: IPv6 inside");
                if checksum.summed() {
                    assert!(dgram.verify_checksum_v6(&h.src_addr(), &h.dst_addr()));
                } else {
                    assert_eq!(dgram.checksum(), 0, "the kernel sends 0 (RFC 6935)");
                }
            }
            _ => assert_eq!(gre::inner(p), Ok((0x86dd, encap))),
        }
        assert_eq!(&p[encap..], &frame[14..], "{tunnel:?}: inner untouched");
    }
    // Too big: packet too big with the MTU minus 40 + 12.
    let mut d = ipv6_tunnel_director(gue(TunnelChecksum::Nocsum));
    let (v, out) = d.run(&v6_frame(&[0; 1500 - 60 - 40 + 1]), FRONT);
    assert_eq!(
        v,
        Verdict::Reply {
            egress: FRONT,
            cause: DropReason::FragNeeded
        }
    );
    let icmp = &out[54..];
    assert_eq!(icmp[0], 2, "packet too big");
    assert_eq!(
        u32::from_be_bytes([icmp[4], icmp[5], icmp[6], icmp[7]]),
        1448
    );
}

#[test]
fn every_tunnel_kind_goes_to_xdp_with_its_checksum_choice() {
    for (tunnel, checksum, len) in [
        (Tunnel::Ipip, false, 0),
        (gre(TunnelChecksum::Nocsum), false, 4),
        (gre(TunnelChecksum::Csum), true, 8),
        (gue(TunnelChecksum::Nocsum), false, 12),
        (gue(TunnelChecksum::Csum), true, 12),
        // RVS sends remcsum as a full checksum (see fwd/tun.rs).
        (gue(TunnelChecksum::Remcsum), true, 12),
    ] {
        let mut d = Director::new(tunnel_config(tunnel, &[1]));
        d.run(&from_client(40000, SYN, b""), FRONT);
        let (_, out) = d.run(&from_client(40000, ACK, b""), FRONT);
        let Some(FastAction::Forward(f)) = d.maps.entries.get(&client_key(40000)) else {
            panic!("{tunnel:?}: {:?}", d.maps.entries)
        };
        let Rewrite::Tunnel { encap, .. } = f.rewrite else {
            panic!("{tunnel:?}: {f:?}")
        };
        assert_eq!(encap.len(), len, "{tunnel:?}");
        let outer = outer_v4(&out);
        match (tunnel, encap) {
            (Tunnel::Ipip, TunnelEncap::Ipip) => {}
            (Tunnel::Gre { .. }, TunnelEncap::Gre { checksum: c }) => {
                assert_eq!(c, checksum, "{tunnel:?}");
                // The engine's own header says the same.
                assert_eq!(outer.payload()[0] & 0x80 != 0, checksum, "{tunnel:?}");
            }
            // GUE: the entry carries the UDP ports the engine writes
            // itself, so the two paths send the same bytes.
            (
                Tunnel::Gue { port, .. },
                TunnelEncap::Gue {
                    src_port,
                    dst_port,
                    checksum: c,
                },
            ) => {
                let dgram = udp::Packet::new_checked(outer.payload()).unwrap();
                assert_eq!((src_port, dst_port), (dgram.src_port(), port));
                assert_eq!(c, checksum, "{tunnel:?}");
                assert_eq!(dgram.checksum() != 0, checksum, "{tunnel:?}");
            }
            other => panic!("{other:?}"),
        }
    }
    // Changing an IPIP server to GUE with a checksum rewrites its
    // established flows' entries (they would go on in IPIP), and back.
    let cfg = tunnel_config(Tunnel::Ipip, &[1]);
    let mut d = Director::new(cfg.clone());
    d.run(&from_client(40000, SYN, b""), FRONT);
    d.run(&from_client(40000, ACK, b""), FRONT);
    assert!(matches!(
        d.maps.entries.get(&client_key(40000)),
        Some(FastAction::Forward(_))
    ));
    d.reconfigure(tunnel_config(gue(TunnelChecksum::Csum), &[1]));
    assert!(matches!(
        d.maps.entries.get(&client_key(40000)),
        Some(FastAction::Forward(f)) if matches!(
            f.rewrite,
            Rewrite::Tunnel { encap: TunnelEncap::Gue { checksum: true, .. }, .. }
        )
    ));
    let (_, out) = d.run(&from_client(40000, ACK, b""), FRONT);
    assert_eq!(outer_v4(&out).protocol(), 17, "the engine now sends GUE");
    d.reconfigure(cfg);
    assert!(matches!(
        d.maps.entries.get(&client_key(40000)),
        Some(FastAction::Forward(f))
            if matches!(f.rewrite, Rewrite::Tunnel { encap: TunnelEncap::Ipip, .. })
    ));
}

#[test]
fn tunnel_settings_the_kernel_refuses_are_refused() {
    let mut cfg = config(Protocol::Tcp, "rr", ForwardMethod::Route, &[1]);
    cfg.services[0].dests[0].tunnel = gre(TunnelChecksum::Nocsum);
    let e = Snapshot::new(cfg).unwrap_err();
    assert!(matches!(e, ConfigError::Tunnel { .. }), "{e}");
    assert!(e.to_string().contains("method = \"tun\""), "{e}");
    for bad in [
        Tunnel::Gue {
            port: 0,
            checksum: TunnelChecksum::Nocsum,
        },
        gre(TunnelChecksum::Remcsum),
    ] {
        let e = Snapshot::new(tunnel_config(bad, &[1])).unwrap_err();
        assert!(matches!(e, ConfigError::Tunnel { .. }), "{bad:?}: {e}");
    }
}
