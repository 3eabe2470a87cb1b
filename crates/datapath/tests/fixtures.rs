//! Differential fixtures (Katran's `KatranTestFixtures` idea, our own table):
//! for every forwarding method and direction, IPv4 and IPv6, a connection is
//! brought to the state where the fast path takes it by running its first
//! frames through the Rust engine and applying the engine's ops to the real,
//! loaded XDP program's maps; then the frame under test goes through both
//! the engine and the program (`BPF_PROG_TEST_RUN`). The two must produce
//! byte-identical frames, the same way out (XDP_TX / redirect vs the
//! engine's egress) and the same counter deltas — and the frame must be what
//! the fixture expects, read with an independent parser (etherparse).
//! Frames the fast path must not take (state changes, TTL running out, IPv4
//! options, a bad header checksum, a tunnel over the MTU) must go to user
//! space unchanged.

mod common;

use std::net::IpAddr;
use std::sync::Arc;

use common::veth;
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use rvs_datapath::{XdpAction, XdpDatapath, XdpModePolicy, XdpStats};
use rvs_engine::{
    Config, Dest, DestCounters, DestSlot, Engine, FastPathOp, ForwardMethod, IfIndex, Interface,
    NeighborTable, PacketBuf, Protocol, Route, Service, ServiceKey, Snapshot, Time, Tunnel,
    TunnelChecksum, Verdict,
};
use rvs_netns::{spawn_in, Bed};
use rvs_wire::EthernetAddress;

const FRONT_MAC: &str = "02:00:00:00:f0:01";
const FRONT_PEER_MAC: &str = "02:00:00:00:f0:02";
const BACK_MAC: &str = "02:00:00:00:b0:01";
const BACK_PEER_MAC: &str = "02:00:00:00:b0:02";
/// The client's gateway (router) on the front leg.
const ROUTER: ([u8; 6], &str, &str) = ([2, 0, 0, 0, 0, 1], "10.0.3.1", "fd00:3::1");
/// Real servers on the back leg, and one on the front leg (one-armed DR).
const RS: ([u8; 6], &str, &str) = ([2, 0, 0, 0, 0, 0x11], "10.0.2.11", "fd00:2::11");
const RS_FRONT: ([u8; 6], &str) = ([2, 0, 0, 0, 0, 0x21], "10.0.3.21");
const CLIENT: (&str, &str) = ("10.0.1.2", "fd00:1::2");
const VIP: (&str, &str) = ("10.0.100.1", "fd00:100::1");
const CPORT: u16 = 40_000;
const VPORT: u16 = 80;
const NAT_PORT: u16 = 8080;
/// FullNAT's local address on the back leg, and the first port it gives.
const LADDR: (&str, &str) = ("10.0.2.200", "fd00:2::200");
const LPORT: u16 = rvs_engine::config::DEFAULT_LOCAL_PORT_RANGE.0;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

fn emac(m: &str) -> EthernetAddress {
    EthernetAddress(common::mac(m))
}

/// Which leg of the director a frame arrives on or leaves by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Leg {
    Front,
    Back,
}

#[derive(Clone, Copy, Debug)]
struct Legs {
    front: u32,
    back: u32,
}

impl Legs {
    fn index(self, leg: Leg) -> u32 {
        match leg {
            Leg::Front => self.front,
            Leg::Back => self.back,
        }
    }
}

/// TCP flags of a test segment.
#[derive(Clone, Copy, Debug, Default)]
struct Tcp {
    syn: bool,
    ack: bool,
    fin: bool,
    rst: bool,
}
const SYN: Tcp = Tcp {
    syn: true,
    ack: false,
    fin: false,
    rst: false,
};
const SYNACK: Tcp = Tcp {
    syn: true,
    ack: true,
    fin: false,
    rst: false,
};
const ACK: Tcp = Tcp {
    syn: false,
    ack: true,
    fin: false,
    rst: false,
};
const FINACK: Tcp = Tcp {
    syn: false,
    ack: true,
    fin: true,
    rst: false,
};

/// How a test frame is built.
#[derive(Clone, Copy, Debug)]
struct Frame {
    v6: bool,
    /// Some(flags): TCP; None: UDP (or SCTP, below).
    tcp: Option<Tcp>,
    /// Some(chunk type): an SCTP packet with one chunk of that type.
    sctp: Option<u8>,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: (&'static str, u16),
    dst: (&'static str, u16),
    vlan: Option<u16>,
    ttl: u8,
    dont_frag: bool,
    payload_len: usize,
    /// Overwrite the UDP checksum with 0 ("no checksum", IPv4).
    udp_zero_checksum: bool,
    /// Pad the Ethernet frame to this length (60: the minimum frame).
    pad_to: usize,
}

impl Frame {
    fn build(&self) -> Vec<u8> {
        let eth = PacketBuilder::ethernet2(self.src_mac, self.dst_mac);
        let payload: Vec<u8> = (0..self.payload_len).map(|i| (i * 7 + 3) as u8).collect();
        let mut out = Vec::new();
        let sctp = self
            .sctp
            .map(|chunk| sctp_packet(self.src.1, self.dst.1, chunk, &payload));
        macro_rules! finish {
            ($b:expr) => {{
                let b = $b;
                if let Some(sctp) = &sctp {
                    b.write(&mut out, etherparse::IpNumber::SCTP, sctp).unwrap();
                } else {
                    match self.tcp {
                        Some(f) => {
                            let mut t = b.tcp(self.src.1, self.dst.1, 1000, 64000);
                            if f.syn {
                                t = t.syn();
                            }
                            if f.ack {
                                t = t.ack(5000);
                            }
                            if f.fin {
                                t = t.fin();
                            }
                            if f.rst {
                                t = t.rst();
                            }
                            t.write(&mut out, &payload).unwrap();
                        }
                        None => b
                            .udp(self.src.1, self.dst.1)
                            .write(&mut out, &payload)
                            .unwrap(),
                    }
                }
            }};
        }
        match (self.vlan, self.v6) {
            (None, false) => finish!(eth.ipv4(v4(self.src.0), v4(self.dst.0), self.ttl)),
            (None, true) => finish!(eth.ipv6(v6(self.src.0), v6(self.dst.0), self.ttl)),
            (Some(id), false) => finish!(eth
                .single_vlan(etherparse::VlanId::try_new(id).unwrap())
                .ipv4(v4(self.src.0), v4(self.dst.0), self.ttl)),
            (Some(id), true) => finish!(eth
                .single_vlan(etherparse::VlanId::try_new(id).unwrap())
                .ipv6(v6(self.src.0), v6(self.dst.0), self.ttl)),
        }
        let l2 = 14 + if self.vlan.is_some() { 4 } else { 0 };
        if !self.v6 {
            // DF as the fixture says (etherparse sets it by default), and an
            // identification that is not 0, so the tunnel's choice shows.
            out[l2 + 6] = (out[l2 + 6] & !0x40) | if self.dont_frag { 0x40 } else { 0 };
            out[l2 + 4..l2 + 6].copy_from_slice(&0x1234u16.to_be_bytes());
            fix_ipv4_checksum(&mut out[l2..l2 + 20]);
        }
        if self.udp_zero_checksum && self.tcp.is_none() && !self.v6 {
            out[l2 + 20 + 6] = 0;
            out[l2 + 20 + 7] = 0;
        }
        if out.len() < self.pad_to {
            out.resize(self.pad_to, 0);
        }
        out
    }
}

/// An SCTP packet (verification tag 0x01020304) with one chunk of type
/// `chunk` carrying `payload`, padded to 4 bytes, its CRC32c filled in.
fn sctp_packet(sport: u16, dport: u16, chunk: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(16 + payload.len() + 3);
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&[1, 2, 3, 4, 0, 0, 0, 0]);
    p.extend_from_slice(&[chunk, 0]);
    p.extend_from_slice(&((4 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(payload);
    p.resize(p.len().next_multiple_of(4), 0);
    rvs_wire::sctp::Packet::new_unchecked(&mut p[..]).fill_checksum();
    p
}

fn v4(s: &str) -> [u8; 4] {
    s.parse::<std::net::Ipv4Addr>().unwrap().octets()
}

fn v6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

fn fix_ipv4_checksum(h: &mut [u8]) {
    h[10] = 0;
    h[11] = 0;
    let c = rvs_wire::checksum::compute(h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
}

/// What must come out of the frame under test.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Forwarded in XDP: out of `egress`, to `dst_mac`, as IP `src` → `dst`
    /// with these ports (for a tunnel: outer addresses and protocol, 4 for
    /// IPIP, 17 for GUE, 47 for GRE).
    Fast {
        egress: Leg,
        dst_mac: [u8; 6],
        src: &'static str,
        dst: &'static str,
        ports: (u16, u16),
        tunnel: Option<(&'static str, &'static str, u8)>,
        /// The frame counts on the server as client → server (in) or back (out).
        out_direction: bool,
    },
    /// Not for the fast path: the program hands it to user space.
    ToEngine,
}

struct Fixture {
    name: &'static str,
    method: ForwardMethod,
    /// The server's tunnel type (TUN only).
    tunnel: Tunnel,
    protocol: Protocol,
    v6: bool,
    /// The server on the front leg (one-armed DR: XDP_TX).
    server_on_front: bool,
    /// Frames that bring the connection to where the fast path takes it.
    setup: Vec<(Frame, Leg)>,
    input: (Frame, Leg),
    expect: Expect,
}

fn client(v6: bool, tcp: Option<Tcp>) -> Frame {
    Frame {
        v6,
        tcp,
        sctp: None,
        src_mac: ROUTER.0,
        dst_mac: common::mac(FRONT_MAC),
        src: (if v6 { CLIENT.1 } else { CLIENT.0 }, CPORT),
        dst: (if v6 { VIP.1 } else { VIP.0 }, VPORT),
        vlan: None,
        ttl: 64,
        dont_frag: false,
        payload_len: 100,
        udp_zero_checksum: false,
        pad_to: 0,
    }
}

fn server(v6: bool, tcp: Option<Tcp>) -> Frame {
    Frame {
        src_mac: RS.0,
        dst_mac: common::mac(BACK_MAC),
        src: (if v6 { RS.2 } else { RS.1 }, NAT_PORT),
        dst: (if v6 { CLIENT.1 } else { CLIENT.0 }, CPORT),
        ..client(v6, tcp)
    }
}

/// SCTP chunk types of the fixtures.
const SCTP_DATA: u8 = 0;
const SCTP_INIT: u8 = 1;
const SCTP_INIT_ACK: u8 = 2;
const SCTP_SACK: u8 = 3;
const SCTP_SHUTDOWN: u8 = 7;
const SCTP_COOKIE_ECHO: u8 = 10;
const SCTP_COOKIE_ACK: u8 = 11;

/// A client's SCTP packet with one chunk of type `chunk`.
fn sctp_client(v6: bool, chunk: u8) -> Frame {
    Frame {
        sctp: Some(chunk),
        ..client(v6, None)
    }
}

/// A NAT real server's SCTP packet (from its own port, NAT_PORT).
fn sctp_server(v6: bool, chunk: u8) -> Frame {
    Frame {
        sctp: Some(chunk),
        ..server(v6, None)
    }
}

/// A FullNAT real server's SCTP packet: to the local address and port.
fn sctp_fullnat_server(v6: bool, chunk: u8) -> Frame {
    Frame {
        sctp: Some(chunk),
        ..fullnat_server(v6, None)
    }
}

/// A FullNAT real server's frame: to the local address and port.
fn fullnat_server(v6: bool, tcp: Option<Tcp>) -> Frame {
    Frame {
        dst: (if v6 { LADDR.1 } else { LADDR.0 }, LPORT),
        ..server(v6, tcp)
    }
}

fn rs_addr(v6: bool) -> &'static str {
    if v6 {
        RS.2
    } else {
        RS.1
    }
}

/// The table: a connection per method, direction, protocol and family.
fn fixtures() -> Vec<Fixture> {
    let mut t = Vec::new();
    for v6 in [false, true] {
        let (c, v) = if v6 {
            (CLIENT.1, VIP.1)
        } else {
            (CLIENT.0, VIP.0)
        };
        // DR, TCP and UDP.
        t.push(Fixture {
            name: if v6 { "dr tcp v6" } else { "dr tcp v4" },
            method: ForwardMethod::Route,
            tunnel: Tunnel::Ipip,
            protocol: Protocol::Tcp,
            v6,
            server_on_front: false,
            setup: vec![
                (client(v6, Some(SYN)), Leg::Front),
                (client(v6, Some(ACK)), Leg::Front),
            ],
            input: (client(v6, Some(ACK)), Leg::Front),
            expect: Expect::Fast {
                egress: Leg::Back,
                dst_mac: RS.0,
                src: c,
                dst: v,
                ports: (CPORT, VPORT),
                tunnel: None,
                out_direction: false,
            },
        });
        t.push(Fixture {
            name: if v6 { "dr udp v6" } else { "dr udp v4" },
            method: ForwardMethod::Route,
            tunnel: Tunnel::Ipip,
            protocol: Protocol::Udp,
            v6,
            server_on_front: false,
            setup: vec![(client(v6, None), Leg::Front)],
            input: (client(v6, None), Leg::Front),
            expect: Expect::Fast {
                egress: Leg::Back,
                dst_mac: RS.0,
                src: c,
                dst: v,
                ports: (CPORT, VPORT),
                tunnel: None,
                out_direction: false,
            },
        });
        // NAT both ways, TCP and UDP.
        for tcp in [true, false] {
            let setup = if tcp {
                vec![
                    (client(v6, Some(SYN)), Leg::Front),
                    (server(v6, Some(SYNACK)), Leg::Back),
                    (client(v6, Some(ACK)), Leg::Front),
                ]
            } else {
                vec![(client(v6, None), Leg::Front)]
            };
            let flags = tcp.then_some(ACK);
            let protocol = if tcp { Protocol::Tcp } else { Protocol::Udp };
            t.push(Fixture {
                name: match (tcp, v6) {
                    (true, false) => "nat tcp in v4",
                    (true, true) => "nat tcp in v6",
                    (false, false) => "nat udp in v4",
                    (false, true) => "nat udp in v6",
                },
                method: ForwardMethod::Masq,
                tunnel: Tunnel::Ipip,
                protocol,
                v6,
                server_on_front: false,
                setup: setup.clone(),
                input: (client(v6, flags), Leg::Front),
                expect: Expect::Fast {
                    egress: Leg::Back,
                    dst_mac: RS.0,
                    src: c,
                    dst: rs_addr(v6),
                    ports: (CPORT, NAT_PORT),
                    tunnel: None,
                    out_direction: false,
                },
            });
            if tcp {
                // The server's SYN+ACK while the connection is in SYN_RECV:
                // the engine's state stays, so the XDP program forwards it.
                t.push(Fixture {
                    name: if v6 {
                        "nat tcp syn-ack out v6"
                    } else {
                        "nat tcp syn-ack out v4"
                    },
                    method: ForwardMethod::Masq,
                    tunnel: Tunnel::Ipip,
                    protocol,
                    v6,
                    server_on_front: false,
                    setup: vec![(client(v6, Some(SYN)), Leg::Front)],
                    input: (server(v6, Some(SYNACK)), Leg::Back),
                    expect: Expect::Fast {
                        egress: Leg::Front,
                        dst_mac: ROUTER.0,
                        src: v,
                        dst: c,
                        ports: (VPORT, CPORT),
                        tunnel: None,
                        out_direction: true,
                    },
                });
            }
            t.push(Fixture {
                name: match (tcp, v6) {
                    (true, false) => "nat tcp out v4",
                    (true, true) => "nat tcp out v6",
                    (false, false) => "nat udp out v4",
                    (false, true) => "nat udp out v6",
                },
                method: ForwardMethod::Masq,
                tunnel: Tunnel::Ipip,
                protocol,
                v6,
                server_on_front: false,
                setup,
                input: (server(v6, flags), Leg::Back),
                expect: Expect::Fast {
                    egress: Leg::Front,
                    dst_mac: ROUTER.0,
                    src: v,
                    dst: c,
                    ports: (VPORT, CPORT),
                    tunnel: None,
                    out_direction: true,
                },
            });
        }
    }
    // FullNAT (IPv4) both ways, TCP and UDP, and the server's SYN+ACK.
    for tcp in [true, false] {
        let setup = if tcp {
            vec![
                (client(false, Some(SYN)), Leg::Front),
                (fullnat_server(false, Some(SYNACK)), Leg::Back),
                (client(false, Some(ACK)), Leg::Front),
            ]
        } else {
            vec![(client(false, None), Leg::Front)]
        };
        let flags = tcp.then_some(ACK);
        let protocol = if tcp { Protocol::Tcp } else { Protocol::Udp };
        let into = Expect::Fast {
            egress: Leg::Back,
            dst_mac: RS.0,
            src: LADDR.0,
            dst: RS.1,
            ports: (LPORT, NAT_PORT),
            tunnel: None,
            out_direction: false,
        };
        let back = Expect::Fast {
            egress: Leg::Front,
            dst_mac: ROUTER.0,
            src: VIP.0,
            dst: CLIENT.0,
            ports: (VPORT, CPORT),
            tunnel: None,
            out_direction: true,
        };
        let rows = [
            (
                if tcp {
                    "fullnat tcp in v4"
                } else {
                    "fullnat udp in v4"
                },
                setup.clone(),
                (client(false, flags), Leg::Front),
                into,
            ),
            (
                if tcp {
                    "fullnat tcp out v4"
                } else {
                    "fullnat udp out v4"
                },
                setup,
                (fullnat_server(false, flags), Leg::Back),
                back,
            ),
        ];
        for (name, setup, input, expect) in rows {
            t.push(Fixture {
                name,
                method: ForwardMethod::FullNat,
                tunnel: Tunnel::Ipip,
                protocol,
                v6: false,
                server_on_front: false,
                setup,
                input,
                expect,
            });
        }
    }
    t.push(Fixture {
        name: "fullnat tcp syn-ack out v4",
        method: ForwardMethod::FullNat,
        tunnel: Tunnel::Ipip,
        protocol: Protocol::Tcp,
        v6: false,
        server_on_front: false,
        setup: vec![(client(false, Some(SYN)), Leg::Front)],
        input: (fullnat_server(false, Some(SYNACK)), Leg::Back),
        expect: Expect::Fast {
            egress: Leg::Front,
            dst_mac: ROUTER.0,
            src: VIP.0,
            dst: CLIENT.0,
            ports: (VPORT, CPORT),
            tunnel: None,
            out_direction: true,
        },
    });
    // SCTP, established: DATA-class packets in DR, TUN, and NAT and
    // FullNAT to another port (the program updates the CRC32c for the
    // changed ports; it covers no address).
    for v6 in [false, true] {
        let (c, v) = if v6 {
            (CLIENT.1, VIP.1)
        } else {
            (CLIENT.0, VIP.0)
        };
        let one_way = vec![
            (sctp_client(v6, SCTP_INIT), Leg::Front),
            (sctp_client(v6, SCTP_COOKIE_ECHO), Leg::Front),
        ];
        let both_ways = vec![
            (sctp_client(v6, SCTP_INIT), Leg::Front),
            (sctp_server(v6, SCTP_INIT_ACK), Leg::Back),
            (sctp_client(v6, SCTP_COOKIE_ECHO), Leg::Front),
            (sctp_server(v6, SCTP_COOKIE_ACK), Leg::Back),
        ];
        let fullnat_both_ways = vec![
            (sctp_client(v6, SCTP_INIT), Leg::Front),
            (sctp_fullnat_server(v6, SCTP_INIT_ACK), Leg::Back),
            (sctp_client(v6, SCTP_COOKIE_ECHO), Leg::Front),
            (sctp_fullnat_server(v6, SCTP_COOKIE_ACK), Leg::Back),
        ];
        let to_server = |src, dst, ports| Expect::Fast {
            egress: Leg::Back,
            dst_mac: RS.0,
            src,
            dst,
            ports,
            tunnel: None,
            out_direction: false,
        };
        let to_client = Expect::Fast {
            egress: Leg::Front,
            dst_mac: ROUTER.0,
            src: v,
            dst: c,
            ports: (VPORT, CPORT),
            tunnel: None,
            out_direction: true,
        };
        // A long packet: its length's higher bits take their factors too.
        let long_data = Frame {
            payload_len: 1200,
            ..sctp_client(v6, SCTP_DATA)
        };
        let laddr = if v6 { LADDR.1 } else { LADDR.0 };
        let rows = [
            (
                if v6 { "dr sctp v6" } else { "dr sctp v4" },
                ForwardMethod::Route,
                one_way.clone(),
                (sctp_client(v6, SCTP_DATA), Leg::Front),
                to_server(c, v, (CPORT, VPORT)),
            ),
            (
                if v6 {
                    "nat sctp in v6"
                } else {
                    "nat sctp in v4"
                },
                ForwardMethod::Masq,
                both_ways.clone(),
                (sctp_client(v6, SCTP_DATA), Leg::Front),
                to_server(c, rs_addr(v6), (CPORT, NAT_PORT)),
            ),
            (
                if v6 {
                    "nat sctp in v6 long"
                } else {
                    "nat sctp in v4 long"
                },
                ForwardMethod::Masq,
                both_ways.clone(),
                (long_data, Leg::Front),
                to_server(c, rs_addr(v6), (CPORT, NAT_PORT)),
            ),
            (
                if v6 {
                    "nat sctp out v6"
                } else {
                    "nat sctp out v4"
                },
                ForwardMethod::Masq,
                both_ways,
                (sctp_server(v6, SCTP_SACK), Leg::Back),
                to_client,
            ),
            (
                if v6 {
                    "fullnat sctp in v6"
                } else {
                    "fullnat sctp in v4"
                },
                ForwardMethod::FullNat,
                fullnat_both_ways.clone(),
                (sctp_client(v6, SCTP_DATA), Leg::Front),
                to_server(laddr, rs_addr(v6), (LPORT, NAT_PORT)),
            ),
            (
                if v6 {
                    "fullnat sctp out v6"
                } else {
                    "fullnat sctp out v4"
                },
                ForwardMethod::FullNat,
                fullnat_both_ways,
                (sctp_fullnat_server(v6, SCTP_SACK), Leg::Back),
                to_client,
            ),
        ];
        for (name, method, setup, input, expect) in rows {
            t.push(Fixture {
                name,
                method,
                tunnel: Tunnel::Ipip,
                protocol: Protocol::Sctp,
                v6,
                server_on_front: false,
                setup,
                input,
                expect,
            });
        }
        if !v6 {
            t.push(Fixture {
                name: "tun sctp v4",
                method: ForwardMethod::Tunnel,
                tunnel: Tunnel::Ipip,
                protocol: Protocol::Sctp,
                v6,
                server_on_front: false,
                setup: one_way.clone(),
                input: (sctp_client(v6, SCTP_DATA), Leg::Front),
                expect: Expect::Fast {
                    egress: Leg::Back,
                    dst_mac: RS.0,
                    src: c,
                    dst: v,
                    ports: (CPORT, VPORT),
                    tunnel: Some(("10.0.2.10", RS.1, 4)),
                    out_direction: false,
                },
            });
            for (name, chunk) in [
                ("sctp shutdown goes to the engine", SCTP_SHUTDOWN),
                (
                    "sctp init on an established association goes to the engine",
                    SCTP_INIT,
                ),
            ] {
                t.push(Fixture {
                    name,
                    method: ForwardMethod::Route,
                    tunnel: Tunnel::Ipip,
                    protocol: Protocol::Sctp,
                    v6,
                    server_on_front: false,
                    setup: one_way.clone(),
                    input: (sctp_client(v6, chunk), Leg::Front),
                    expect: Expect::ToEngine,
                });
            }
        }
    }
    // IPIP (IPv4), TCP and UDP, DF set and clear (identification differs).
    for (name, tcp, df) in [("tun tcp v4 df", true, true), ("tun udp v4", false, false)] {
        let mut f = client(false, tcp.then_some(ACK));
        f.dont_frag = df;
        let setup = if tcp {
            vec![
                (client(false, Some(SYN)), Leg::Front),
                (client(false, Some(ACK)), Leg::Front),
            ]
        } else {
            vec![(client(false, None), Leg::Front)]
        };
        t.push(Fixture {
            name,
            method: ForwardMethod::Tunnel,
            tunnel: Tunnel::Ipip,
            protocol: if tcp { Protocol::Tcp } else { Protocol::Udp },
            v6: false,
            server_on_front: false,
            setup,
            input: (f, Leg::Front),
            expect: Expect::Fast {
                egress: Leg::Back,
                dst_mac: RS.0,
                src: CLIENT.0,
                dst: VIP.0,
                ports: (CPORT, VPORT),
                tunnel: Some(("10.0.2.10", RS.1, 4)),
                out_direction: false,
            },
        });
    }
    // GUE and GRE, as the engine writes them; their checksums, where
    // asked for, filled by the program from the headers alone.
    for (name, tcp, tunnel, proto) in [
        ("tun gue tcp v4", true, gue(TunnelChecksum::Nocsum), 17),
        ("tun gue udp v4", false, gue(TunnelChecksum::Nocsum), 17),
        ("tun gue csum tcp v4", true, gue(TunnelChecksum::Csum), 17),
        ("tun gue csum udp v4", false, gue(TunnelChecksum::Csum), 17),
        (
            "tun gue remcsum tcp v4",
            true,
            gue(TunnelChecksum::Remcsum),
            17,
        ),
        (
            "tun gre csum tcp v4",
            true,
            Tunnel::Gre {
                checksum: TunnelChecksum::Csum,
            },
            47,
        ),
        (
            "tun gre csum udp v4",
            false,
            Tunnel::Gre {
                checksum: TunnelChecksum::Csum,
            },
            47,
        ),
        (
            "tun gre tcp v4",
            true,
            Tunnel::Gre {
                checksum: TunnelChecksum::Nocsum,
            },
            47,
        ),
        (
            "tun gre udp v4",
            false,
            Tunnel::Gre {
                checksum: TunnelChecksum::Nocsum,
            },
            47,
        ),
    ] {
        let setup = if tcp {
            vec![
                (client(false, Some(SYN)), Leg::Front),
                (client(false, Some(ACK)), Leg::Front),
            ]
        } else {
            vec![(client(false, None), Leg::Front)]
        };
        t.push(Fixture {
            name,
            method: ForwardMethod::Tunnel,
            tunnel,
            protocol: if tcp { Protocol::Tcp } else { Protocol::Udp },
            v6: false,
            server_on_front: false,
            setup,
            input: (client(false, tcp.then_some(ACK)), Leg::Front),
            expect: Expect::Fast {
                egress: Leg::Back,
                dst_mac: RS.0,
                src: CLIENT.0,
                dst: VIP.0,
                ports: (CPORT, VPORT),
                tunnel: Some(("10.0.2.10", RS.1, proto)),
                out_direction: false,
            },
        });
    }
    // Tunnels over IPv6 (IPv6 in IPv6, GUE and GRE): the outer addresses
    // ride in conns6's tail.
    for (name, tcp, tunnel, proto) in [
        ("tun ip6ip6 tcp v6", true, Tunnel::Ipip, 41),
        ("tun gue udp v6", false, gue(TunnelChecksum::Nocsum), 17),
        ("tun gue csum tcp v6", true, gue(TunnelChecksum::Csum), 17),
        ("tun gue csum udp v6", false, gue(TunnelChecksum::Csum), 17),
        (
            "tun gre csum tcp v6",
            true,
            Tunnel::Gre {
                checksum: TunnelChecksum::Csum,
            },
            47,
        ),
        (
            "tun gre tcp v6",
            true,
            Tunnel::Gre {
                checksum: TunnelChecksum::Nocsum,
            },
            47,
        ),
    ] {
        let setup = if tcp {
            vec![
                (client(true, Some(SYN)), Leg::Front),
                (client(true, Some(ACK)), Leg::Front),
            ]
        } else {
            vec![(client(true, None), Leg::Front)]
        };
        t.push(Fixture {
            name,
            method: ForwardMethod::Tunnel,
            tunnel,
            protocol: if tcp { Protocol::Tcp } else { Protocol::Udp },
            v6: true,
            server_on_front: false,
            setup,
            input: (client(true, tcp.then_some(ACK)), Leg::Front),
            expect: Expect::Fast {
                egress: Leg::Back,
                dst_mac: RS.0,
                src: CLIENT.1,
                dst: VIP.1,
                ports: (CPORT, VPORT),
                tunnel: Some(("fd00:2::10", RS.2, proto)),
                out_direction: false,
            },
        });
    }
    let mut big6 = client(true, None);
    big6.payload_len = 1500 - 40 - 8 - 10; // fits the link, not the tunnel
    t.push(Fixture {
        name: "ipv6 tunnel over the mtu goes to the engine",
        method: ForwardMethod::Tunnel,
        tunnel: Tunnel::Ipip,
        protocol: Protocol::Udp,
        v6: true,
        server_on_front: false,
        setup: vec![(client(true, None), Leg::Front)],
        input: (big6, Leg::Front),
        expect: Expect::ToEngine,
    });
    // A minimum-size frame with Ethernet padding: the tunnel drops the padding.
    let mut padded = client(false, None);
    padded.payload_len = 4;
    padded.pad_to = 60;
    t.push(Fixture {
        name: "tun udp v4 padded",
        method: ForwardMethod::Tunnel,
        tunnel: Tunnel::Ipip,
        protocol: Protocol::Udp,
        v6: false,
        server_on_front: false,
        setup: vec![(client(false, None), Leg::Front)],
        input: (padded, Leg::Front),
        expect: Expect::Fast {
            egress: Leg::Back,
            dst_mac: RS.0,
            src: CLIENT.0,
            dst: VIP.0,
            ports: (CPORT, VPORT),
            tunnel: Some(("10.0.2.10", RS.1, 4)),
            out_direction: false,
        },
    });
    // VLAN-tagged NAT, and a UDP datagram without checksum.
    let mut tagged = client(false, None);
    tagged.vlan = Some(100);
    t.push(Fixture {
        name: "nat udp in v4 vlan",
        method: ForwardMethod::Masq,
        tunnel: Tunnel::Ipip,
        protocol: Protocol::Udp,
        v6: false,
        server_on_front: false,
        setup: vec![(tagged, Leg::Front)],
        input: (tagged, Leg::Front),
        expect: Expect::Fast {
            egress: Leg::Back,
            dst_mac: RS.0,
            src: CLIENT.0,
            dst: RS.1,
            ports: (CPORT, NAT_PORT),
            tunnel: None,
            out_direction: false,
        },
    });
    let mut nocsum = client(false, None);
    nocsum.udp_zero_checksum = true;
    t.push(Fixture {
        name: "nat udp in v4 no checksum",
        method: ForwardMethod::Masq,
        tunnel: Tunnel::Ipip,
        protocol: Protocol::Udp,
        v6: false,
        server_on_front: false,
        setup: vec![(client(false, None), Leg::Front)],
        input: (nocsum, Leg::Front),
        expect: Expect::Fast {
            egress: Leg::Back,
            dst_mac: RS.0,
            src: CLIENT.0,
            dst: RS.1,
            ports: (CPORT, NAT_PORT),
            tunnel: None,
            out_direction: false,
        },
    });
    // One-armed DR: the server is on the leg the frame came in on (XDP_TX).
    t.push(Fixture {
        name: "dr udp v4 one-armed",
        method: ForwardMethod::Route,
        tunnel: Tunnel::Ipip,
        protocol: Protocol::Udp,
        v6: false,
        server_on_front: true,
        setup: vec![(client(false, None), Leg::Front)],
        input: (client(false, None), Leg::Front),
        expect: Expect::Fast {
            egress: Leg::Front,
            dst_mac: RS_FRONT.0,
            src: CLIENT.0,
            dst: VIP.0,
            ports: (CPORT, VPORT),
            tunnel: None,
            out_direction: false,
        },
    });
    // What the fast path must leave to the engine.
    let est_nat = vec![
        (client(false, Some(SYN)), Leg::Front),
        (server(false, Some(SYNACK)), Leg::Back),
        (client(false, Some(ACK)), Leg::Front),
    ];
    let mut ttl1 = server(false, Some(ACK));
    ttl1.ttl = 1;
    let mut big = client(false, None);
    big.payload_len = 1500 - 20 - 8 - 10; // fits the link, not the tunnel
    big.dont_frag = true;
    let syn_recv = vec![(client(false, Some(SYN)), Leg::Front)];
    let mut fullnat_ttl1 = fullnat_server(false, Some(ACK));
    fullnat_ttl1.ttl = 1;
    for (name, method, protocol, setup, input) in [
        (
            "the client's ack in syn_recv goes to the engine",
            ForwardMethod::Masq,
            Protocol::Tcp,
            syn_recv.clone(),
            (client(false, Some(ACK)), Leg::Front),
        ),
        (
            "a server's ack in syn_recv goes to the engine",
            ForwardMethod::Masq,
            Protocol::Tcp,
            syn_recv,
            (server(false, Some(ACK)), Leg::Back),
        ),
        (
            "a syn-ack once established goes to the engine",
            ForwardMethod::Masq,
            Protocol::Tcp,
            est_nat.clone(),
            (server(false, Some(SYNACK)), Leg::Back),
        ),
        (
            "fin goes to the engine",
            ForwardMethod::Masq,
            Protocol::Tcp,
            est_nat.clone(),
            (client(false, Some(FINACK)), Leg::Front),
        ),
        (
            "syn on an established tuple goes to the engine",
            ForwardMethod::Masq,
            Protocol::Tcp,
            est_nat.clone(),
            (client(false, Some(SYN)), Leg::Front),
        ),
        (
            "nat reply with ttl 1 goes to the engine",
            ForwardMethod::Masq,
            Protocol::Tcp,
            est_nat,
            (ttl1, Leg::Back),
        ),
        (
            "tunnel over the mtu goes to the engine",
            ForwardMethod::Tunnel,
            Protocol::Udp,
            vec![(client(false, None), Leg::Front)],
            (big, Leg::Front),
        ),
        (
            "fullnat reply with ttl 1 goes to the engine",
            ForwardMethod::FullNat,
            Protocol::Tcp,
            fullnat_established(false),
            (fullnat_ttl1, Leg::Back),
        ),
        (
            "fullnat fin goes to the engine",
            ForwardMethod::FullNat,
            Protocol::Tcp,
            fullnat_established(false),
            (fullnat_server(false, Some(FINACK)), Leg::Back),
        ),
    ] {
        t.push(Fixture {
            name,
            method,
            tunnel: Tunnel::Ipip,
            protocol,
            v6: false,
            server_on_front: false,
            setup,
            input,
            expect: Expect::ToEngine,
        });
    }
    // GUE's 12 more bytes: a frame IPIP would carry is too big for GUE.
    let mut gue_big = client(false, None);
    gue_big.payload_len = 1500 - 20 - 8 - 22; // IP 1478: +20 fits, +32 does not
    let mut gre_csum_big = client(false, None);
    gre_csum_big.payload_len = 1500 - 20 - 8 - 4; // IP 1476: +24 fits, +28 does not
                                                  // A UDP datagram without a checksum gives no sum to fill a tunnel's
                                                  // checksum from: the engine sums its bytes.
    let mut no_udp_checksum = client(false, None);
    no_udp_checksum.udp_zero_checksum = true;
    for (name, tunnel, input) in [
        (
            "gue over the mtu goes to the engine",
            gue(TunnelChecksum::Nocsum),
            gue_big,
        ),
        (
            "gre with csum over the mtu goes to the engine",
            Tunnel::Gre {
                checksum: TunnelChecksum::Csum,
            },
            gre_csum_big,
        ),
        (
            "gue csum of udp without a checksum goes to the engine",
            gue(TunnelChecksum::Csum),
            no_udp_checksum,
        ),
    ] {
        t.push(Fixture {
            name,
            method: ForwardMethod::Tunnel,
            tunnel,
            protocol: Protocol::Udp,
            v6: false,
            server_on_front: false,
            setup: vec![(client(false, None), Leg::Front)],
            input: (input, Leg::Front),
            expect: Expect::ToEngine,
        });
    }
    // IPv6 FullNAT: the new source rides in conns6's tail.
    let rows = [
        (
            "fullnat tcp in v6",
            (client(true, Some(ACK)), Leg::Front),
            Expect::Fast {
                egress: Leg::Back,
                dst_mac: RS.0,
                src: LADDR.1,
                dst: RS.2,
                ports: (LPORT, NAT_PORT),
                tunnel: None,
                out_direction: false,
            },
        ),
        (
            "fullnat tcp out v6",
            (fullnat_server(true, Some(ACK)), Leg::Back),
            Expect::Fast {
                egress: Leg::Front,
                dst_mac: ROUTER.0,
                src: VIP.1,
                dst: CLIENT.1,
                ports: (VPORT, CPORT),
                tunnel: None,
                out_direction: true,
            },
        ),
    ];
    for (name, input, expect) in rows {
        t.push(Fixture {
            name,
            method: ForwardMethod::FullNat,
            tunnel: Tunnel::Ipip,
            protocol: Protocol::Tcp,
            v6: true,
            server_on_front: false,
            setup: fullnat_established(true),
            input,
            expect,
        });
    }
    let mut hop1 = fullnat_server(true, Some(ACK));
    hop1.ttl = 1;
    t.push(Fixture {
        name: "fullnat v6 reply with hop limit 1 goes to the engine",
        method: ForwardMethod::FullNat,
        tunnel: Tunnel::Ipip,
        protocol: Protocol::Tcp,
        v6: true,
        server_on_front: false,
        setup: fullnat_established(true),
        input: (hop1, Leg::Back),
        expect: Expect::ToEngine,
    });
    t
}

/// The frames that establish a FullNAT TCP connection.
fn fullnat_established(v6: bool) -> Vec<(Frame, Leg)> {
    vec![
        (client(v6, Some(SYN)), Leg::Front),
        (fullnat_server(v6, Some(SYNACK)), Leg::Back),
        (client(v6, Some(ACK)), Leg::Front),
    ]
}

/// The GUE port of the fixtures' GUE server.
const GUE_PORT: u16 = 6080;

fn gue(checksum: TunnelChecksum) -> Tunnel {
    Tunnel::Gue {
        port: GUE_PORT,
        checksum,
    }
}

/// The engine's configuration for a fixture, on the test's real interfaces.
fn config(f: &Fixture, legs: Legs) -> Config {
    let (vip, rs) = if f.v6 {
        (VIP.1, RS.2)
    } else if f.server_on_front {
        (VIP.0, RS_FRONT.1)
    } else {
        (VIP.0, RS.1)
    };
    let port = if f.method.translates() {
        NAT_PORT
    } else {
        VPORT
    };
    let mut svc = Service::new(ServiceKey::new(f.protocol, ip(vip), VPORT), "rr");
    if f.method == ForwardMethod::FullNat {
        svc.local_addresses = vec![ip(if f.v6 { LADDR.1 } else { LADDR.0 })];
    }
    svc.dests
        .push(Dest::new(ip(rs), port, f.method).tunnel(f.tunnel));
    Config {
        interfaces: vec![
            Interface {
                index: IfIndex(legs.front),
                name: "front".into(),
                mac: emac(FRONT_MAC),
                addrs: vec![(ip("10.0.3.2"), 24), (ip("fd00:3::2"), 64)],
                mtu: 1500,
            },
            Interface {
                index: IfIndex(legs.back),
                name: "back".into(),
                mac: emac(BACK_MAC),
                addrs: vec![(ip("10.0.2.10"), 24), (ip("fd00:2::10"), 64)],
                mtu: 1500,
            },
        ],
        routes: vec![
            Route {
                dst: ip("0.0.0.0"),
                prefix_len: 0,
                egress: IfIndex(legs.front),
                gateway: Some(ip(ROUTER.1)),
            },
            Route {
                dst: ip("::"),
                prefix_len: 0,
                egress: IfIndex(legs.front),
                gateway: Some(ip(ROUTER.2)),
            },
        ],
        services: vec![svc],
        ..Config::default()
    }
}

fn neighbors() -> Arc<NeighborTable> {
    Arc::new(NeighborTable::new(
        [
            (ip(ROUTER.1), EthernetAddress(ROUTER.0)),
            (ip(ROUTER.2), EthernetAddress(ROUTER.0)),
            (ip(RS.1), EthernetAddress(RS.0)),
            (ip(RS.2), EthernetAddress(RS.0)),
            (ip(RS_FRONT.1), EthernetAddress(RS_FRONT.0)),
        ],
        1,
    ))
}

/// One frame through the engine, as the worker does: verdict and output.
fn engine_run(
    e: &mut Engine,
    dp: &mut XdpDatapath,
    now: Time,
    frame: &[u8],
    ingress: u32,
) -> (Verdict, Vec<u8>) {
    let mut buf = vec![0u8; 256 + frame.len() + 64];
    buf[256..256 + frame.len()].copy_from_slice(frame);
    let mut pkt = PacketBuf::new(&mut buf, 256, frame.len()).unwrap();
    let v = e.process(now, &mut pkt, IfIndex(ingress));
    let out = pkt.data().to_vec();
    apply_ops(e, dp, now);
    (v, out)
}

/// The engine's ops into the real maps, as the worker applies them.
fn apply_ops(e: &mut Engine, dp: &mut XdpDatapath, now: Time) {
    while let Some(op) = e.poll_fast_path() {
        let seen = dp.apply(&op).unwrap_or_else(|err| panic!("{op:?}: {err}"));
        if let FastPathOp::ReadActivity { key, .. } = op {
            e.fast_path_activity(now, &key, seen.map(Time::from_nanos));
        }
    }
}

fn delta(a: XdpStats, b: XdpStats) -> [u64; 5] {
    [
        b.passed - a.passed,
        b.to_user - a.to_user,
        b.to_user_failed - a.to_user_failed,
        b.fast_tx - a.fast_tx,
        b.fast_redirect - a.fast_redirect,
    ]
}

/// The checks of one fixture; `Err` says what differs.
fn check(f: &Fixture, legs: Legs, dp: &mut XdpDatapath) -> Result<(), String> {
    let snapshot = Snapshot::new(config(f, legs)).map_err(|e| e.to_string())?;
    let mut e = Engine::new(snapshot, [1, 2, 3, 4]);
    e.set_neighbors(neighbors());
    let now = Time::from_secs(100);
    apply_ops(&mut e, dp, now);
    for (frame, leg) in &f.setup {
        let (v, _) = engine_run(&mut e, dp, now, &frame.build(), legs.index(*leg));
        if !matches!(v, Verdict::Forward { .. }) {
            return Err(format!("setup frame {frame:?}: engine said {v:?}"));
        }
    }
    let (frame, leg) = f.input;
    let input = frame.build();
    let ingress = legs.index(leg);
    let slot = DestSlot(0);
    let (xdp_before, dest_before) = (
        dp.iface_stats(ingress).unwrap(),
        dp.dest_counters(slot).unwrap(),
    );
    let stats_before = e.status()[0].dests[0].stats;
    let x = dp.test_run(&input, ingress, 0).map_err(|e| e.to_string())?;
    let (xdp_after, dest_after) = (
        dp.iface_stats(ingress).unwrap(),
        dp.dest_counters(slot).unwrap(),
    );
    let (v, out) = engine_run(&mut e, dp, now, &input, ingress);
    let stats_after = e.status()[0].dests[0].stats;
    let verdicts = delta(xdp_before, xdp_after);
    match f.expect {
        Expect::ToEngine => {
            // No socket is registered in this test: "to user, failed".
            if x.action != XdpAction::Drop || verdicts != [0, 0, 1, 0, 0] {
                return Err(format!(
                    "XDP forwarded or passed it: {:?}, verdicts {verdicts:?}",
                    x.action
                ));
            }
            if dest_after != dest_before {
                return Err("XDP counted a frame it did not forward".into());
            }
            Ok(())
        }
        Expect::Fast {
            egress,
            dst_mac,
            src,
            dst,
            ports,
            tunnel,
            out_direction,
        } => {
            let want_action = if egress == leg {
                XdpAction::Tx
            } else {
                XdpAction::Redirect
            };
            if x.action != want_action {
                return Err(format!("XDP action {:?}, want {want_action:?}", x.action));
            }
            let want_verdicts = if egress == leg {
                [0, 0, 0, 1, 0]
            } else {
                [0, 0, 0, 0, 1]
            };
            if verdicts != want_verdicts {
                return Err(format!(
                    "XDP verdict counters moved by {verdicts:?}, want {want_verdicts:?}"
                ));
            }
            if v != (Verdict::Forward {
                egress: IfIndex(legs.index(egress)),
            }) {
                return Err(format!("engine verdict {v:?}"));
            }
            if x.frame != out {
                return Err(format!(
                    "frames differ\n  engine: {}\n  xdp:    {}",
                    hex(&out),
                    hex(&x.frame)
                ));
            }
            read_back(&out, dst_mac, src, dst, ports, tunnel)?;
            // Counters: one frame, its IP bytes, on the right side, in both.
            let ip_len = ip_len(&input);
            let want = if out_direction {
                DestCounters {
                    out_packets: 1,
                    out_bytes: ip_len,
                    ..DestCounters::default()
                }
            } else {
                DestCounters {
                    in_packets: 1,
                    in_bytes: ip_len,
                    ..DestCounters::default()
                }
            };
            let xdp_delta = DestCounters {
                in_packets: dest_after.in_packets - dest_before.in_packets,
                in_bytes: dest_after.in_bytes - dest_before.in_bytes,
                out_packets: dest_after.out_packets - dest_before.out_packets,
                out_bytes: dest_after.out_bytes - dest_before.out_bytes,
            };
            let engine_delta = DestCounters {
                in_packets: stats_after.in_packets - stats_before.in_packets,
                in_bytes: stats_after.in_bytes - stats_before.in_bytes,
                out_packets: stats_after.out_packets - stats_before.out_packets,
                out_bytes: stats_after.out_bytes - stats_before.out_bytes,
            };
            if xdp_delta != want || engine_delta != want {
                return Err(format!(
                    "counters: xdp {xdp_delta:?}, engine {engine_delta:?}, want {want:?}"
                ));
            }
            Ok(())
        }
    }
}

/// IP length of an (optionally VLAN-tagged) frame.
fn ip_len(frame: &[u8]) -> u64 {
    let s = SlicedPacket::from_ethernet(frame).expect("test frame parses");
    match s.net {
        Some(NetSlice::Ipv4(i)) => u64::from(i.header().total_len()),
        Some(NetSlice::Ipv6(i)) => 40 + u64::from(i.header().payload_length()),
        _ => panic!("test frame without IP"),
    }
}

/// The length of a GUE (`proto` 17) or GRE (47) header before an inner
/// packet of `family`, after checking it: GUE is UDP to the tunnel port,
/// then version 0 naming the inner protocol, its UDP checksum 0 or right
/// over `pseudo` (the outer pseudo-header); GRE version 0 names the inner
/// EtherType, with no flags or with a checksum (8 bytes) that is right.
fn tunnel_header(payload: &[u8], proto: u8, family: u8, pseudo: u32) -> Result<usize, String> {
    use rvs_wire::checksum::{combine, compute, finish, sum};
    let bad = || format!("tunnel header {:02x?}", &payload[..12.min(payload.len())]);
    let (inner_proto, ethertype) = if family == 4 {
        (4, [8, 0])
    } else {
        (41, [0x86, 0xdd])
    };
    if proto == 17 {
        if payload.len() < 12
            || payload[2..4] != GUE_PORT.to_be_bytes()
            || usize::from(u16::from_be_bytes([payload[4], payload[5]])) != payload.len()
            || payload[8..12] != [0, inner_proto, 0, 0]
        {
            return Err(bad());
        }
        if payload[6..8] != [0, 0] && finish(combine(pseudo, sum(payload))) != 0 {
            return Err(format!("GUE's UDP checksum is wrong: {}", bad()));
        }
        return Ok(12);
    }
    match payload.get(..4) {
        Some([0, 0, t0, t1]) if [*t0, *t1] == ethertype => Ok(4),
        Some([0x80, 0, t0, t1]) if [*t0, *t1] == ethertype => {
            if payload.len() < 8 || payload[6..8] != [0, 0] || compute(payload) != 0 {
                return Err(format!("GRE checksum is wrong: {}", bad()));
            }
            Ok(8)
        }
        _ => Err(bad()),
    }
}

/// Reads the output with etherparse: MACs, addresses, ports, checksums.
fn read_back(
    out: &[u8],
    dst_mac: [u8; 6],
    src: &str,
    dst: &str,
    ports: (u16, u16),
    tunnel: Option<(&str, &str, u8)>,
) -> Result<(), String> {
    if out[0..6] != dst_mac {
        return Err(format!("destination MAC {:02x?}", &out[0..6]));
    }
    let s = SlicedPacket::from_ethernet(out).map_err(|e| format!("output does not parse: {e}"))?;
    let inner_ip: Vec<u8> = match (&s.net, tunnel) {
        (Some(NetSlice::Ipv4(outer)), Some((osrc, odst, proto))) => {
            let h = outer.header();
            if h.source_addr() != osrc.parse::<std::net::Ipv4Addr>().unwrap()
                || h.destination_addr() != odst.parse::<std::net::Ipv4Addr>().unwrap()
                || h.protocol().0 != proto
            {
                return Err(format!("outer header {:?}", h.to_header()));
            }
            if rvs_wire::checksum::compute(h.slice()) != 0 {
                return Err("outer IPv4 checksum".into());
            }
            let payload = outer.payload().payload;
            let pseudo = rvs_wire::checksum::pseudo_header_v4(
                &h.source_addr().octets(),
                &h.destination_addr().octets(),
                17,
                payload.len() as u16,
            );
            let start = match proto {
                17 | 47 => tunnel_header(payload, proto, 4, pseudo)?,
                4 => 0,
                _ => {
                    return Err(format!(
                        "tunnel header {:02x?}",
                        &payload[..12.min(payload.len())]
                    ))
                }
            };
            payload[start..].to_vec()
        }
        (Some(NetSlice::Ipv6(outer)), Some((osrc, odst, proto))) => {
            let h = outer.header();
            if h.source_addr() != osrc.parse::<std::net::Ipv6Addr>().unwrap()
                || h.destination_addr() != odst.parse::<std::net::Ipv6Addr>().unwrap()
                || h.next_header().0 != proto
                || h.hop_limit() != 64
                || h.flow_label().value() != 0
            {
                return Err(format!("outer header {:?}", h.to_header()));
            }
            let payload = outer.payload().payload;
            let pseudo = rvs_wire::checksum::pseudo_header_v6(
                &h.source_addr().octets(),
                &h.destination_addr().octets(),
                17,
                payload.len() as u32,
            );
            let start = match proto {
                17 | 47 => tunnel_header(payload, proto, 6, pseudo)?,
                41 => 0,
                _ => {
                    return Err(format!(
                        "tunnel header {:02x?}",
                        &payload[..12.min(payload.len())]
                    ))
                }
            };
            payload[start..].to_vec()
        }
        _ => Vec::new(),
    };
    let checked = if tunnel.is_some() {
        SlicedPacket::from_ip(&inner_ip).map_err(|e| format!("inner does not parse: {e}"))?
    } else {
        s
    };
    let (a, b) = match &checked.net {
        Some(NetSlice::Ipv4(i)) => (
            IpAddr::from(i.header().source_addr()),
            IpAddr::from(i.header().destination_addr()),
        ),
        Some(NetSlice::Ipv6(i)) => (
            IpAddr::from(i.header().source_addr()),
            IpAddr::from(i.header().destination_addr()),
        ),
        _ => return Err("no IP".into()),
    };
    if (a, b) != (ip(src), ip(dst)) {
        return Err(format!("addresses {a} -> {b}, want {src} -> {dst}"));
    }
    let got = match &checked.transport {
        Some(TransportSlice::Tcp(t)) => (t.source_port(), t.destination_port()),
        Some(TransportSlice::Udp(u)) => (u.source_port(), u.destination_port()),
        // etherparse has no SCTP: the ports by hand, the CRC32c by rvs-wire.
        None => {
            let l4 = match &checked.net {
                Some(NetSlice::Ipv4(i)) if i.header().protocol().0 == 132 => i.payload().payload,
                Some(NetSlice::Ipv6(i)) if i.header().next_header().0 == 132 => i.payload().payload,
                _ => return Err("no TCP/UDP/SCTP".into()),
            };
            let p = rvs_wire::sctp::Packet::new_checked(l4).map_err(|_| "short SCTP")?;
            if !p.verify_checksum() {
                return Err("SCTP CRC32c".into());
            }
            (p.src_port(), p.dst_port())
        }
        _ => return Err("no TCP/UDP".into()),
    };
    if got != ports {
        return Err(format!("ports {got:?}, want {ports:?}"));
    }
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn engine_and_xdp_program_produce_identical_frames_for_every_mode_and_direction() {
    let mut lab = Bed::new();
    let ns = lab.add("dir");
    let peer = lab.add("peer");
    veth(
        &ns,
        "front",
        FRONT_MAC,
        "10.0.3.2/24",
        &peer,
        "front-p",
        FRONT_PEER_MAC,
        "10.0.3.1/24",
    );
    veth(
        &ns,
        "back",
        BACK_MAC,
        "10.0.2.10/24",
        &peer,
        "back-p",
        BACK_PEER_MAC,
        "10.0.2.1/24",
    );
    let failures = spawn_in(&ns, move || {
        let legs = Legs {
            front: rvs_datapath::ifindex_by_name("front").unwrap(),
            back: rvs_datapath::ifindex_by_name("back").unwrap(),
        };
        let mut failures = Vec::new();
        let table = fixtures();
        let n = table.len();
        for f in &table {
            // A fresh program per fixture: empty maps, zero counters.
            let mut dp = XdpDatapath::load(&[legs.front, legs.back], XdpModePolicy::Auto, 1024)
                .expect("loading the XDP program");
            if let Err(e) = check(f, legs, &mut dp) {
                failures.push(format!("{}: {e}", f.name));
            }
        }
        (n, failures)
    })
    .join()
    .expect("fixture thread");
    let (n, failures) = failures;
    assert!(n >= 20, "the table has {n} fixtures");
    assert!(
        failures.is_empty(),
        "{} of {n} fixtures failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
