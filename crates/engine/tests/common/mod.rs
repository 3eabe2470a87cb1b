//! Shared fixtures: a two-legged director (front = client side, back =
//! server side) like the lab's, frames built and checked with etherparse (an
//! independent parser), and a virtual clock.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use rvs_engine::{
    Config, Dest, DestSlot, Engine, FastAction, FastKey, FastPathOp, ForwardMethod, IfIndex,
    Interface, NeighborTable, NextHop, NextHopId, PacketBuf, Protocol, Route, Service, ServiceKey,
    Snapshot, Time, Verdict,
};
use rvs_wire::EthernetAddress;

pub const FRONT: IfIndex = IfIndex(2);
pub const BACK: IfIndex = IfIndex(3);
pub const HEADROOM: usize = 128;

pub fn mac(n: u8) -> EthernetAddress {
    EthernetAddress([0x02, 0, 0, 0, 0, n])
}
pub const ROUTER_MAC: u8 = 1;
pub const FRONT_MAC: u8 = 0xf0;
pub const BACK_MAC: u8 = 0xb0;

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}
pub fn v4(s: &str) -> [u8; 4] {
    s.parse::<Ipv4Addr>().unwrap().octets()
}

pub const VIP: &str = "10.0.100.1";
pub const CLIENT: &str = "10.0.1.2";
pub const RS: [&str; 3] = ["10.0.2.11", "10.0.2.12", "10.0.2.13"];
/// FullNAT's local address in [`config`] (on the servers' network).
pub const LADDR: &str = "10.0.2.200";

/// The fast-path key of TCP client port `port` → VIP:80.
pub fn client_key(port: u16) -> FastKey {
    FastKey {
        proto: 6,
        saddr: ip(CLIENT),
        sport: port,
        daddr: ip(VIP),
        dport: 80,
    }
}

pub fn vip_key(protocol: Protocol) -> ServiceKey {
    ServiceKey {
        protocol,
        addr: ip(VIP),
        port: 80,
        fwmark: 0,
    }
}

pub fn interfaces() -> Vec<Interface> {
    vec![
        Interface {
            index: FRONT,
            name: "front".into(),
            mac: mac(FRONT_MAC),
            addrs: vec![(ip("10.0.3.2"), 24)],
            mtu: 1500,
        },
        Interface {
            index: BACK,
            name: "back".into(),
            mac: mac(BACK_MAC),
            addrs: vec![(ip("10.0.2.10"), 24)],
            mtu: 1500,
        },
    ]
}

/// A config with one service (TCP and UDP variants) on the VIP.
pub fn config(
    protocol: Protocol,
    scheduler: &str,
    method: ForwardMethod,
    weights: &[u32],
) -> Config {
    let port = if method.translates() { 8080 } else { 80 };
    Config {
        interfaces: interfaces(),
        routes: vec![Route {
            dst: ip("0.0.0.0"),
            prefix_len: 0,
            egress: FRONT,
            gateway: Some(ip("10.0.3.1")),
        }],
        services: vec![Service {
            key: vip_key(protocol),
            scheduler: scheduler.into(),
            sched_flags: 0,
            persistence: None,
            one_packet: false,
            local_addresses: if method == ForwardMethod::FullNat {
                vec![ip(LADDR)]
            } else {
                Vec::new()
            },
            toa: false,
            dests: weights
                .iter()
                .enumerate()
                .map(|(i, &w)| Dest::new(ip(RS[i]), port, method).weight(w))
                .collect(),
        }],
        ..Config::default()
    }
}

pub fn neighbors() -> Arc<NeighborTable> {
    Arc::new(NeighborTable::new(
        [
            (ip("10.0.3.1"), mac(ROUTER_MAC)),
            (ip(RS[0]), mac(11)),
            (ip(RS[1]), mac(12)),
            (ip(RS[2]), mac(13)),
        ],
        1,
    ))
}

/// Which real server a MAC belongs to (1-based), for counting picks.
pub fn server_of(mac: [u8; 6]) -> usize {
    match mac[5] {
        11 => 1,
        12 => 2,
        13 => 3,
        other => panic!("frame sent to unknown MAC ..:{other:02x}"),
    }
}

/// What the XDP program's maps would hold, kept from the engine's ops the
/// way the datapath applies them; `last_seen` is what a test says the XDP
/// program forwarded (activity checks are answered from it).
#[derive(Debug, Default)]
pub struct FastMaps {
    pub entries: HashMap<FastKey, FastAction>,
    pub next_hops: HashMap<NextHopId, Option<NextHop>>,
    pub resets: Vec<DestSlot>,
    pub last_seen: HashMap<FastKey, Time>,
    /// Every op in order, for tests that check what was written when.
    pub log: Vec<FastPathOp>,
}

pub struct Director {
    pub engine: Engine,
    pub now: Time,
    pub maps: FastMaps,
}

impl Director {
    pub fn new(cfg: Config) -> Self {
        let snap = Snapshot::new(cfg).expect("valid config");
        let mut engine = Engine::new(snap, [1, 2, 3, 4]);
        engine.set_neighbors(neighbors());
        let mut d = Director {
            engine,
            now: Time::from_secs(1000),
            maps: FastMaps::default(),
        };
        d.drain();
        d
    }

    /// Applies the engine's fast-path ops to the model maps, answering
    /// activity checks from `maps.last_seen`, as the datapath worker does.
    pub fn drain(&mut self) {
        while let Some(op) = self.engine.poll_fast_path() {
            self.maps.log.push(op);
            match op {
                FastPathOp::Upsert { key, action } => {
                    self.maps.entries.insert(key, action);
                }
                FastPathOp::Remove { key } => {
                    self.maps.entries.remove(&key);
                    self.maps.last_seen.remove(&key);
                }
                FastPathOp::SetNextHop { id, hop } => {
                    self.maps.next_hops.insert(id, hop);
                }
                FastPathOp::ResetDest { slot } => self.maps.resets.push(slot),
                FastPathOp::ReadActivity { key, reply } => {
                    let seen = [Some(key), reply]
                        .into_iter()
                        .flatten()
                        .filter(|k| self.maps.entries.contains_key(k))
                        .filter_map(|k| self.maps.last_seen.get(&k).copied())
                        .max();
                    self.engine.fast_path_activity(self.now, &key, seen);
                }
            }
        }
    }

    pub fn reconfigure(&mut self, cfg: Config) {
        self.engine
            .set_config(Snapshot::new(cfg).expect("valid config"));
        self.drain();
    }

    pub fn advance(&mut self, secs: u64) {
        self.now = Time::from_nanos(self.now.as_nanos() + secs * 1_000_000_000);
        self.engine.handle_timeout(self.now);
        self.drain();
    }

    /// Processes `frame` as received on `ingress`; returns the verdict and
    /// the resulting frame bytes.
    pub fn run(&mut self, frame: &[u8], ingress: IfIndex) -> (Verdict, Vec<u8>) {
        let mut buf = vec![0u8; HEADROOM + frame.len() + 64];
        buf[HEADROOM..HEADROOM + frame.len()].copy_from_slice(frame);
        let mut pkt = PacketBuf::new(&mut buf, HEADROOM, frame.len()).unwrap();
        let v = self.engine.process(self.now, &mut pkt, ingress);
        let out = pkt.data().to_vec();
        self.drain();
        (v, out)
    }
}

#[derive(Clone, Copy, Default)]
pub struct Flags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
}
pub const SYN: Flags = Flags {
    syn: true,
    ack: false,
    fin: false,
    rst: false,
};
pub const ACK: Flags = Flags {
    syn: false,
    ack: true,
    fin: false,
    rst: false,
};
pub const SYNACK: Flags = Flags {
    syn: true,
    ack: true,
    fin: false,
    rst: false,
};
pub const FINACK: Flags = Flags {
    syn: false,
    ack: true,
    fin: true,
    rst: false,
};
pub const RST: Flags = Flags {
    syn: false,
    ack: false,
    fin: false,
    rst: true,
};

/// A TCP/IPv4 frame `src → dst` with the given flags and payload.
pub fn tcp_frame(
    src_mac: u8,
    dst_mac: u8,
    src: (&str, u16),
    dst: (&str, u16),
    flags: Flags,
    payload: &[u8],
) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(mac(src_mac).0, mac(dst_mac).0)
        .ipv4(v4(src.0), v4(dst.0), 64)
        .tcp(src.1, dst.1, 1000, 64000);
    if flags.syn {
        b = b.syn();
    }
    if flags.ack {
        b = b.ack(5000);
    }
    if flags.fin {
        b = b.fin();
    }
    if flags.rst {
        b = b.rst();
    }
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).unwrap();
    out
}

/// A client → VIP:80 TCP frame arriving on the front leg.
pub fn from_client(port: u16, flags: Flags, payload: &[u8]) -> Vec<u8> {
    tcp_frame(
        ROUTER_MAC,
        FRONT_MAC,
        (CLIENT, port),
        (VIP, 80),
        flags,
        payload,
    )
}

pub fn udp_frame(src: (&str, u16), dst: (&str, u16), payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(mac(ROUTER_MAC).0, mac(FRONT_MAC).0)
        .ipv4(v4(src.0), v4(dst.0), 64)
        .udp(src.1, dst.1);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).unwrap();
    out
}

/// Parsed view of an output frame, with every checksum checked by etherparse.
#[derive(Debug)]
pub struct Seen {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: u8,
    pub ttl: u8,
    /// For IPIP: the inner packet's view.
    pub inner: Option<Box<Seen>>,
    pub ports: Option<(u16, u16)>,
    pub ip_bytes: Vec<u8>,
}

/// Parses a frame with etherparse and asserts that the IPv4 header, TCP, UDP
/// and ICMP checksums are all correct (recomputed in full by etherparse).
pub fn check(frame: &[u8]) -> Seen {
    let p = SlicedPacket::from_ethernet(frame).expect("etherparse parses the frame");
    let eth = match p.link {
        Some(etherparse::LinkSlice::Ethernet2(e)) => e,
        other => panic!("not ethernet: {other:?}"),
    };
    let mut seen = check_ip(&frame[14..]);
    seen.dst_mac = eth.destination();
    seen.src_mac = eth.source();
    seen
}

pub fn check_ip(ip: &[u8]) -> Seen {
    let p = SlicedPacket::from_ip(ip).expect("etherparse parses the IP packet");
    let Some(NetSlice::Ipv4(v4s)) = &p.net else {
        panic!("not IPv4")
    };
    let h = v4s.header().to_header();
    assert_eq!(
        h.header_checksum,
        h.calc_header_checksum(),
        "IPv4 header checksum"
    );
    let total = usize::from(h.total_len);
    let mut seen = Seen {
        dst_mac: [0; 6],
        src_mac: [0; 6],
        src: IpAddr::from(h.source),
        dst: IpAddr::from(h.destination),
        protocol: h.protocol.0,
        ttl: h.time_to_live,
        inner: None,
        ports: None,
        ip_bytes: ip[..total].to_vec(),
    };
    let payload = v4s.payload().payload;
    match &p.transport {
        Some(TransportSlice::Tcp(t)) => {
            let want = t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap();
            assert_eq!(t.checksum(), want, "TCP checksum");
            seen.ports = Some((t.source_port(), t.destination_port()));
        }
        Some(TransportSlice::Udp(u)) => {
            if u.checksum() != 0 {
                let want = u.to_header().calc_checksum_ipv4(&h, u.payload()).unwrap();
                assert_eq!(u.checksum(), want, "UDP checksum");
            }
            seen.ports = Some((u.source_port(), u.destination_port()));
        }
        Some(TransportSlice::Icmpv4(_)) => {
            assert_eq!(rvs_wire::checksum::compute(payload), 0, "ICMP checksum");
        }
        _ if h.protocol.0 == 4 => {
            seen.inner = Some(Box::new(check_ip(payload)));
        }
        // SCTP: its CRC32c is the caller's to check (tests/sctp.rs).
        _ if h.protocol.0 == 132 && payload.len() >= 4 => {
            seen.ports = Some((
                u16::from_be_bytes([payload[0], payload[1]]),
                u16::from_be_bytes([payload[2], payload[3]]),
            ));
        }
        other => panic!("unexpected transport {other:?}"),
    }
    seen
}

/// An IPv4 ICMP error `src → dst` of `msg_type`/`code` quoting the first
/// 48 bytes (IP header + 28) of the IP packet in `quoted_frame`; `macs`:
/// (source, destination).
pub fn icmp_v4(
    (src_mac, dst_mac): (u8, u8),
    src: &str,
    dst: &str,
    msg_type: u8,
    code: u8,
    mtu: u16,
    quoted_frame: &[u8],
) -> Vec<u8> {
    let quote = &quoted_frame[14..(14 + 48).min(quoted_frame.len())];
    let mut icmp = vec![msg_type, code, 0, 0, 0, 0];
    icmp.extend_from_slice(&mtu.to_be_bytes());
    icmp.extend_from_slice(quote);
    let c = rvs_wire::checksum::compute(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut ip = vec![0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + icmp.len()) as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 1;
    ip[12..16].copy_from_slice(&v4(src));
    ip[16..20].copy_from_slice(&v4(dst));
    let c = rvs_wire::checksum::compute(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut f = mac(dst_mac).0.to_vec();
    f.extend_from_slice(&mac(src_mac).0);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&icmp);
    f
}

/// A director with one IPv6 service [fd00:100::1]:80 of `protocol` and one
/// real server fd00:2::11 (port 8080 for NAT, else 80) forwarded by
/// `method`; the director has fd00:3::2 (front, default route via
/// fd00:3::1) and fd00:2::10 (back, after a link-local address, which is
/// no tunnel source); both next hops' MACs are known.
pub fn ipv6_director(protocol: Protocol, method: ForwardMethod) -> Director {
    ipv6_director_with(ipv6_config(protocol, method))
}

/// The configuration [`ipv6_director`] runs.
pub fn ipv6_config(protocol: Protocol, method: ForwardMethod) -> Config {
    let mut cfg = config(protocol, "rr", method, &[]);
    cfg.interfaces[1].addrs.push((ip("fe80::10"), 64));
    cfg.interfaces[1].addrs.push((ip("fd00:2::10"), 64));
    cfg.interfaces[0].addrs.push((ip("fd00:3::2"), 64));
    cfg.routes.push(Route {
        dst: ip("::"),
        prefix_len: 0,
        egress: FRONT,
        gateway: Some(ip("fd00:3::1")),
    });
    cfg.services[0].key.addr = ip("fd00:100::1");
    let port = if method.translates() { 8080 } else { 80 };
    cfg.services[0].dests = vec![Dest::new(ip("fd00:2::11"), port, method)];
    cfg
}

/// An IPv6 director for a configuration from [`ipv6_config`].
pub fn ipv6_director_with(cfg: Config) -> Director {
    let mut d = Director::new(cfg);
    d.engine.set_neighbors(Arc::new(NeighborTable::new(
        [
            (ip("fd00:2::11"), mac(11)),
            (ip("fd00:3::1"), mac(ROUTER_MAC)),
        ],
        2,
    )));
    d
}
