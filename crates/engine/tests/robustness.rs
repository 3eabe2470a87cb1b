//! process() on hostile input: arbitrary bytes and mutations of valid frames
//! never panic, and every frame is accounted for in exactly one counter.

mod common;

use common::*;
use proptest::prelude::*;
use rvs_engine::{ForwardMethod, PacketBuf, Protocol, Time};

fn director(method: ForwardMethod) -> Director {
    let mut cfg = config(Protocol::Tcp, "rr", method, &[1, 2, 3]);
    // FullNAT with TOA, so mutated first ACKs grow too.
    cfg.services[0].toa = method == ForwardMethod::FullNat;
    Director::new(cfg)
}

fn method_strategy() -> impl Strategy<Value = ForwardMethod> {
    prop_oneof![
        Just(ForwardMethod::Route),
        Just(ForwardMethod::Masq),
        Just(ForwardMethod::Tunnel),
        Just(ForwardMethod::FullNat)
    ]
}

/// The client end a real server answers: FullNAT's first local port, or
/// the client.
fn client_end(method: ForwardMethod) -> (&'static str, u16) {
    if method == ForwardMethod::FullNat {
        (LADDR, rvs_engine::config::DEFAULT_LOCAL_PORT_RANGE.0)
    } else {
        (CLIENT, 40000)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(method in method_strategy(), bytes in proptest::collection::vec(any::<u8>(), 0..200), headroom in 0usize..64) {
        let mut d = director(method);
        let mut buf = vec![0u8; headroom + bytes.len()];
        buf[headroom..].copy_from_slice(&bytes);
        let mut pkt = PacketBuf::new(&mut buf, headroom, bytes.len()).unwrap();
        let _ = d.engine.process(Time::from_secs(5), &mut pkt, FRONT);
        let c = d.engine.counters();
        prop_assert_eq!(c.rx_packets, c.accounted());
    }

    #[test]
    fn mutated_valid_frames_never_panic(
        method in method_strategy(),
        flips in proptest::collection::vec((0usize..80, any::<u8>()), 1..6),
        payload in proptest::collection::vec(any::<u8>(), 0..40),
        from_server in any::<bool>(),
    ) {
        let mut d = director(method);
        // Establish a flow so lookups in both directions are exercised.
        d.run(&from_client(40000, SYN, b""), FRONT);
        let mut frame = if from_server {
            tcp_frame(13, BACK_MAC, (RS[2], 8080), client_end(method), ACK, &payload)
        } else {
            from_client(40000, ACK, &payload)
        };
        for (pos, val) in flips {
            if pos < frame.len() {
                frame[pos] = val;
            }
        }
        let _ = d.run(&frame, if from_server { BACK } else { FRONT });
        let c = d.engine.counters();
        prop_assert_eq!(c.rx_packets, c.accounted());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// ICMP errors about a tracked flow with their quote mutated and cut
    /// anywhere, the ICMP checksum made right again so every byte reaches
    /// the quote's parser: never a panic, one counter per frame.
    #[test]
    fn mutated_icmp_errors_never_panic(
        method in method_strategy(),
        flips in proptest::collection::vec((0usize..48, any::<u8>()), 0..6),
        cut in 0usize..48,
        msg_type in prop_oneof![Just(3u8), Just(4), Just(11), any::<u8>()],
        from_server in any::<bool>(),
    ) {
        let mut d = director(method);
        d.run(&from_client(40000, SYN, b""), FRONT);
        let (quoted, src, dst, macs, ingress) = if from_server {
            (
                tcp_frame(BACK_MAC, 13, client_end(method), (RS[2], 8080), ACK, b""),
                RS[2],
                client_end(method).0,
                (13, BACK_MAC),
                BACK,
            )
        } else {
            (
                tcp_frame(FRONT_MAC, ROUTER_MAC, (VIP, 80), (CLIENT, 40000), ACK, &[7; 20]),
                "10.0.3.1",
                VIP,
                (ROUTER_MAC, FRONT_MAC),
                FRONT,
            )
        };
        let mut frame = icmp_v4(macs, src, dst, msg_type, 4, 1400, &quoted);
        let quote_at = 14 + 20 + 8;
        for (pos, val) in flips {
            if quote_at + pos < frame.len() {
                frame[quote_at + pos] = val;
            }
        }
        let keep = (quote_at + cut).min(frame.len());
        frame.truncate(keep);
        let ip_len = (keep - 14) as u16;
        frame[16..18].copy_from_slice(&ip_len.to_be_bytes());
        frame[24..26].fill(0);
        let c = rvs_wire::checksum::compute(&frame[14..34]);
        frame[24..26].copy_from_slice(&c.to_be_bytes());
        frame[36..38].fill(0);
        let c = rvs_wire::checksum::compute(&frame[34..]);
        frame[36..38].copy_from_slice(&c.to_be_bytes());
        let _ = d.run(&frame, ingress);
        let c = d.engine.counters();
        prop_assert_eq!(c.rx_packets, c.accounted());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Fragment sequences in any order, repeated, cut or with flipped bytes
    /// (the IPv4 header checksum made right again so they reach the
    /// fragment path): never a panic, one counter per frame.
    #[test]
    fn fragment_sequences_never_panic(
        method in method_strategy(),
        len in 9usize..6000,
        order in proptest::collection::vec(0usize..8, 1..12),
        flips in proptest::collection::vec((14usize..80, any::<u8>()), 0..4),
        cut in proptest::option::of(14usize..200),
    ) {
        let mut d = Director::new(config(Protocol::Udp, "rr", method, &[1, 2, 3]));
        let payload = vec![0x5au8; len];
        let whole = udp_frame((CLIENT, 5000), (VIP, 80), &payload);
        let udp = &whole[34..];
        let mut frags = Vec::new();
        let mut off = 0;
        while off < udp.len() {
            let end = (off + 1480).min(udp.len());
            let mut f = whole[..34].to_vec();
            f[16..18].copy_from_slice(&((20 + end - off) as u16).to_be_bytes());
            f[18..20].copy_from_slice(&9u16.to_be_bytes());
            let field = (if end < udp.len() { 0x2000 } else { 0 }) | (off / 8) as u16;
            f[20..22].copy_from_slice(&field.to_be_bytes());
            f.extend_from_slice(&udp[off..end]);
            frags.push(f);
            off = end;
        }
        for &i in &order {
            let mut f = frags[i % frags.len()].clone();
            for &(pos, val) in &flips {
                if pos < f.len() {
                    f[pos] = val;
                }
            }
            if let Some(c) = cut {
                f.truncate(c.max(14));
            }
            if f.len() >= 34 {
                f[24..26].fill(0);
                let c = rvs_wire::checksum::compute(&f[14..34]);
                f[24..26].copy_from_slice(&c.to_be_bytes());
            }
            let _ = d.run(&f, FRONT);
        }
        let c = d.engine.counters();
        prop_assert_eq!(c.rx_packets, c.accounted());
    }
}
