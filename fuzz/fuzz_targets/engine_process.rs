//! `Engine::process` on frame sequences the fuzzer shapes: well-formed
//! TCP/UDP frames of clients and real servers (so connections are made,
//! answered, closed and expired), mutated ones, and raw bytes, under a
//! configuration it picks (method, scheduler, persistence, fast path,
//! table size). Checked: no panic, every frame counted exactly once, and,
//! for every well-formed frame forwarded or answered, IPv4, TCP and UDP
//! checksums right (the inner packet's too for IPIP). A mutated frame may
//! carry a wrong transport checksum through, as IPVS forwards it.
#![no_main]

use std::net::Ipv4Addr;
use std::sync::Arc;

use arbitrary::Arbitrary;
use etherparse::{Ipv4HeaderSlice, PacketBuilder, TcpHeaderSlice, UdpHeaderSlice};
use libfuzzer_sys::fuzz_target;
use rvs_engine::{
    Config, Dest, Engine, ForwardMethod, IfIndex, Interface, NeighborTable, PacketBuf, Persistence,
    Protocol, Route, Service, ServiceKey, Snapshot, Time, Verdict,
};
use rvs_wire::EthernetAddress;

const FRONT: IfIndex = IfIndex(2);
const BACK: IfIndex = IfIndex(3);
const VIP: [u8; 4] = [10, 0, 100, 1];
const ROUTER: [u8; 4] = [10, 0, 3, 1];
const SERVERS: u8 = 3;
/// FullNAT's local address; its connections' ports start at the range's.
const LOCAL: [u8; 4] = [10, 0, 2, 200];

#[derive(Arbitrary, Debug)]
struct Setup {
    method: u8,
    scheduler: u8,
    udp: bool,
    persistent: bool,
    fast_path: bool,
    /// Mid-flow segments of unknown connections are scheduled.
    sloppy_tcp: bool,
    weights: [u8; 3],
    max_conns: u8,
}

#[derive(Arbitrary, Debug)]
enum Frame {
    /// A client's segment to the VIP, or a real server's answer to it.
    Tcp {
        from_server: Option<u8>,
        client: u8,
        flags: u8,
        payload: u8,
        flip: Option<(u16, u8)>,
    },
    /// A client's datagram to the VIP, or a real server's answer.
    Udp {
        from_server: Option<u8>,
        client: u8,
        payload: u8,
        flip: Option<(u16, u8)>,
    },
    /// Anything, on either leg.
    Raw { back: bool, bytes: Vec<u8> },
}

#[derive(Arbitrary, Debug)]
struct Input {
    setup: Setup,
    frames: Vec<(Frame, u8)>,
}

fn mac(n: u8) -> EthernetAddress {
    EthernetAddress([2, 0, 0, 0, 0, n])
}

fn server_ip(k: u8) -> [u8; 4] {
    [10, 0, 2, 11 + k % SERVERS]
}

fn client(c: u8) -> ([u8; 4], u16) {
    ([10, 0, 9, 1 + c % 4], 40_000 + u16::from(c % 16))
}

fn config(s: &Setup) -> Config {
    let method = match s.method % 4 {
        0 => ForwardMethod::Route,
        1 => ForwardMethod::Masq,
        2 => ForwardMethod::Tunnel,
        _ => ForwardMethod::FullNat,
    };
    let port = if method.translates() { 8080 } else { 80 };
    let fullnat = method == ForwardMethod::FullNat;
    let names = rvs_vocab::sched::NAMES;
    let scheduler = names[usize::from(s.scheduler) % names.len()];
    Config {
        interfaces: vec![
            Interface {
                index: FRONT,
                name: "front".into(),
                mac: mac(0xf0),
                addrs: vec![(Ipv4Addr::new(10, 0, 3, 2).into(), 24)],
                mtu: 1500,
            },
            Interface {
                index: BACK,
                name: "back".into(),
                mac: mac(0xb0),
                addrs: vec![(Ipv4Addr::new(10, 0, 2, 10).into(), 24)],
                mtu: 1500,
            },
        ],
        routes: vec![Route {
            dst: Ipv4Addr::UNSPECIFIED.into(),
            prefix_len: 0,
            egress: FRONT,
            gateway: Some(Ipv4Addr::from(ROUTER).into()),
        }],
        services: vec![Service {
            key: ServiceKey {
                protocol: if s.udp { Protocol::Udp } else { Protocol::Tcp },
                addr: Ipv4Addr::from(VIP).into(),
                port: 80,
                fwmark: 0,
            },
            scheduler: scheduler.into(),
            sched_flags: 0,
            persistence: s.persistent.then_some(Persistence {
                timeout: 60,
                prefix_len: 32,
            }),
            one_packet: false,
            local_addresses: if fullnat {
                vec![Ipv4Addr::from(LOCAL).into()]
            } else {
                Vec::new()
            },
            toa: fullnat && !s.udp,
            dests: (0..SERVERS)
                .map(|k| {
                    Dest::new(Ipv4Addr::from(server_ip(k)).into(), port, method)
                        .weight(u32::from(s.weights[usize::from(k)] % 4))
                })
                .collect(),
        }],
        max_connections: u32::from(s.max_conns % 16) + 1,
        fast_path: s.fast_path,
        sloppy_tcp: s.sloppy_tcp,
        ..Config::default()
    }
}

/// Ethernet and IPv4 of a client's packet to the VIP (`from_server`
/// `None`) or of real server `k`'s answer to that client (FullNAT: to the
/// local address, at one of the first ports it gives); the leg it arrives
/// on and its (source, destination) ports.
fn head(
    from_server: Option<u8>,
    c: u8,
    method: ForwardMethod,
) -> (
    etherparse::PacketBuilderStep<etherparse::IpHeaders>,
    IfIndex,
    u16,
    u16,
) {
    let (cip, cport) = client(c);
    let server_port = if method.translates() { 8080 } else { 80 };
    let (to, to_port) = if method == ForwardMethod::FullNat {
        (LOCAL, 1024 + u16::from(c % 16))
    } else {
        (cip, cport)
    };
    match from_server {
        None => (
            PacketBuilder::ethernet2(mac(1).0, mac(0xf0).0).ipv4(cip, VIP, 64),
            FRONT,
            cport,
            80,
        ),
        Some(k) => (
            PacketBuilder::ethernet2(mac(11 + k % SERVERS).0, mac(0xb0).0).ipv4(
                server_ip(k),
                to,
                64,
            ),
            BACK,
            server_port,
            to_port,
        ),
    }
}

/// The frame's bytes, the leg it arrives on, and whether it is well formed.
fn build(frame: &Frame, method: ForwardMethod) -> (Vec<u8>, IfIndex, bool) {
    let (bytes, leg, flip) = match frame {
        Frame::Raw { back, bytes } => {
            return (bytes.clone(), if *back { BACK } else { FRONT }, false);
        }
        Frame::Tcp {
            from_server,
            client: c,
            flags,
            payload,
            flip,
        } => {
            let (head, leg, sport, dport) = head(*from_server, *c, method);
            let mut b = head.tcp(sport, dport, 1000, 64000);
            if flags & 1 != 0 {
                b = b.syn();
            }
            if flags & 2 != 0 {
                b = b.ack(1);
            }
            if flags & 4 != 0 {
                b = b.fin();
            }
            if flags & 8 != 0 {
                b = b.rst();
            }
            let body = vec![0x61; usize::from(*payload)];
            let mut out = Vec::with_capacity(b.size(body.len()));
            let _ = b.write(&mut out, &body);
            (out, leg, *flip)
        }
        Frame::Udp {
            from_server,
            client: c,
            payload,
            flip,
        } => {
            let (head, leg, sport, dport) = head(*from_server, *c, method);
            let b = head.udp(sport, dport);
            let body = vec![0x62; usize::from(*payload)];
            let mut out = Vec::with_capacity(b.size(body.len()));
            let _ = b.write(&mut out, &body);
            (out, leg, *flip)
        }
    };
    let mut bytes = bytes;
    let mut intact = true;
    if let Some((at, x)) = flip {
        if !bytes.is_empty() && x != 0 {
            let i = usize::from(at) % bytes.len();
            bytes[i] ^= x;
            intact = false;
        }
    }
    (bytes, leg, intact)
}

/// Asserts the checksums of the IPv4 packet `ip` (and of its inner packet
/// for IPIP) are right.
fn check_ipv4(ip: &[u8]) {
    let h = Ipv4HeaderSlice::from_slice(ip).expect("a forwarded frame parses as IPv4");
    let header = h.to_header();
    assert_eq!(
        header.header_checksum,
        header.calc_header_checksum(),
        "IPv4 header checksum of {ip:02x?}"
    );
    let total = usize::from(header.total_len).min(ip.len());
    let body = &ip[h.slice().len()..total];
    match header.protocol.0 {
        4 => check_ipv4(body),
        6 => {
            let t = TcpHeaderSlice::from_slice(body).expect("TCP header");
            let want = t
                .to_header()
                .calc_checksum_ipv4(&header, &body[t.slice().len()..])
                .expect("checksum computable");
            assert_eq!(t.checksum(), want, "TCP checksum of {ip:02x?}");
        }
        17 => {
            let u = UdpHeaderSlice::from_slice(body).expect("UDP header");
            if u.checksum() != 0 {
                let want = u
                    .to_header()
                    .calc_checksum_ipv4(&header, &body[8..])
                    .expect("checksum computable");
                assert_eq!(u.checksum(), want, "UDP checksum of {ip:02x?}");
            }
        }
        _ => {}
    }
}

fuzz_target!(|input: Input| {
    let cfg = config(&input.setup);
    let method = cfg.services[0].dests[0].method;
    let Ok(snapshot) = Snapshot::new(cfg) else {
        return;
    };
    let mut engine = Engine::new(snapshot, [1, 2, 3, 4]);
    engine.set_neighbors(Arc::new(NeighborTable::new(
        (0..SERVERS)
            .map(|k| (Ipv4Addr::from(server_ip(k)).into(), mac(11 + k)))
            .chain([(Ipv4Addr::from(ROUTER).into(), mac(1))]),
        1,
    )));
    let mut now = 1_000u64;
    let mut buf = vec![0u8; 4096];
    for (frame, tick) in input.frames.iter().take(128) {
        now += u64::from(*tick % 64);
        let (bytes, leg, intact) = build(frame, method);
        let len = bytes.len().min(buf.len() - 256);
        buf[256..256 + len].copy_from_slice(&bytes[..len]);
        let Some(mut pkt) = PacketBuf::new(&mut buf, 256, len) else {
            continue;
        };
        let verdict = engine.process(Time::from_secs(now), &mut pkt, leg);
        let sent = matches!(verdict, Verdict::Forward { .. } | Verdict::Reply { .. });
        if intact && sent {
            let out = pkt.data();
            if out.len() > 14 && out[12..14] == [0x08, 0x00] {
                check_ipv4(&out[14..]);
            }
        }
        while engine.poll_fast_path().is_some() {}
        engine.handle_timeout(Time::from_secs(now));
    }
    let c = engine.counters();
    // A frame answered with an ICMP error counts under its cause (and
    // `replies` counts the answers), so `accounted` leaves replies out.
    assert_eq!(
        c.rx_packets,
        c.accounted(),
        "every frame in exactly one counter: {c:?}"
    );
});
