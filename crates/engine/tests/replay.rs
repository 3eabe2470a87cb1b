//! Replays a recorded TCP exchange (curl → HTTP server, captured with
//! tcpdump: tests/data/handshake.pcap) through the engine in each mode,
//! writes what the director sends as a pcap, and checks every output frame
//! with an independent parser (etherparse) including all checksums.

mod common;

use common::*;
use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};
use rvs_engine::{ForwardMethod, Protocol, Verdict};

/// The recording: client 10.0.1.2 ↔ 10.0.100.1:80 (the VIP).
fn recorded() -> Vec<Vec<u8>> {
    let f = std::fs::File::open(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/handshake.pcap"
    ))
    .expect("recorded pcap");
    let mut r = PcapReader::new(f).expect("pcap header");
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        out.push(p.expect("pcap record").data.into_owned());
    }
    out
}

fn is_from_client(frame: &[u8]) -> bool {
    frame[26..30] == v4(CLIENT)
}

/// Server → client frames, as a NAT real server (RIP:8080) would send them
/// to `to` (the client, or FullNAT's local address and port).
fn as_real_server_reply(frame: &[u8], rip: &str, to: Option<(&str, u16)>) -> Vec<u8> {
    let mut f = frame.to_vec();
    let (src_mac, dst_mac) = (mac(13).0, mac(BACK_MAC).0);
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&src_mac);
    let src: std::net::Ipv4Addr = rip.parse().unwrap();
    let dst: std::net::Ipv4Addr = to.map_or(CLIENT, |t| t.0).parse().unwrap();
    {
        let mut ip = rvs_wire::ipv4::Packet::new_checked(&mut f[14..]).unwrap();
        ip.set_src_addr(src);
        ip.set_dst_addr(dst);
        ip.fill_checksum();
    }
    let total = u16::from_be_bytes([f[16], f[17]]) as usize;
    let mut t = rvs_wire::tcp::Packet::new_checked(&mut f[34..14 + total]).unwrap();
    t.set_src_port(8080);
    if let Some((_, port)) = to {
        t.set_dst_port(port);
    }
    t.fill_checksum_v4(&src, &dst);
    f
}

fn replay(method: ForwardMethod) -> Vec<Vec<u8>> {
    let mut d = Director::new(config(Protocol::Tcp, "rr", method, &[0, 0, 1]));
    let mut sent = Vec::new();
    for frame in recorded() {
        let (ingress, input) = if is_from_client(&frame) {
            let mut f = frame.clone();
            f[0..6].copy_from_slice(&mac(FRONT_MAC).0);
            (FRONT, f)
        } else if method == ForwardMethod::Masq {
            (BACK, as_real_server_reply(&frame, RS[2], None))
        } else if method == ForwardMethod::FullNat {
            // The first port of the default range on the one local address.
            let to = (LADDR, rvs_engine::config::DEFAULT_LOCAL_PORT_RANGE.0);
            (BACK, as_real_server_reply(&frame, RS[2], Some(to)))
        } else {
            continue; // DR/TUN replies bypass the director
        };
        let (v, out) = d.run(&input, ingress);
        assert!(matches!(v, Verdict::Forward { .. }), "{method:?}: {v:?}");
        sent.push(out);
    }
    sent
}

#[test]
fn every_mode_emits_frames_a_real_parser_accepts() {
    let dir = std::env::temp_dir().join(format!("rvs-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (method, name) in [
        (ForwardMethod::Route, "dr"),
        (ForwardMethod::Masq, "nat"),
        (ForwardMethod::Tunnel, "tun"),
        (ForwardMethod::FullNat, "fullnat"),
    ] {
        let frames = replay(method);
        let client_frames = recorded().iter().filter(|f| is_from_client(f)).count();
        let expected = if method.translates() {
            recorded().len()
        } else {
            client_frames
        };
        assert_eq!(frames.len(), expected, "{name}");
        // Write a pcap as a capture on the director's wire would look…
        let path = dir.join(format!("{name}.pcap"));
        {
            let mut w = PcapWriter::new(std::fs::File::create(&path).unwrap()).unwrap();
            for (i, f) in frames.iter().enumerate() {
                let ts = std::time::Duration::from_millis(i as u64);
                w.write_packet(&PcapPacket::new(ts, f.len() as u32, f))
                    .unwrap();
            }
        }
        // …and read it back with the parser, checking every checksum.
        let mut r = PcapReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        let mut n = 0;
        while let Some(p) = r.next_packet() {
            let seen = check(&p.unwrap().data);
            match method {
                ForwardMethod::Route => assert_eq!(seen.dst, common::ip(VIP)),
                ForwardMethod::Tunnel => {
                    assert_eq!((seen.protocol, seen.dst), (4, common::ip(RS[2])));
                    assert_eq!(seen.inner.unwrap().dst, common::ip(VIP));
                }
                ForwardMethod::Masq => {
                    assert!(seen.dst == common::ip(RS[2]) || seen.src == common::ip(VIP));
                }
                ForwardMethod::FullNat => {
                    let to_server = (seen.src, seen.dst) == (common::ip(LADDR), common::ip(RS[2]));
                    let to_client = (seen.src, seen.dst) == (common::ip(VIP), common::ip(CLIENT));
                    assert!(to_server || to_client, "{seen:?}");
                }
            }
            n += 1;
        }
        assert_eq!(n, expected);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
