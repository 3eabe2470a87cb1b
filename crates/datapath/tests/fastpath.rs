//! The XDP program run with BPF_PROG_TEST_RUN against its live maps: every
//! forwarding method and direction, IPv4 and IPv6, VLAN tags, every case the
//! contract sends to user space, misses, and the counter partition. Expected
//! frames are built independently (tests/common/frames.rs: rvs-wire as the
//! engine's slow path uses it, and etherparse re-verifying every checksum).
//! Needs root (CAP_BPF, CAP_NET_ADMIN); each test makes its own namespace.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::director::Director;
use common::frames::{self, tcp_flags, Flow, SCTP, TCP, UDP};
use common::veth;
use rvs_datapath::{
    monotonic_ns, ConnCapacity, TestRun, XdpAction, XdpAttachMode, XdpDatapath, XdpModePolicy,
    XdpStats,
};
use rvs_engine::{
    DestCounters, DestSlot, FastAction, FastForward, FastKey, FastPathOp, IfIndex, NextHop,
    NextHopId, Rewrite, TcpSegments,
};
use rvs_netns::{spawn_in, Bed};
use rvs_wire::EthernetAddress;

const D1_MAC: [u8; 6] = [2, 0, 0, 0, 0xd1, 1];
const RS_MAC: [u8; 6] = [2, 0, 0, 0, 0x55, 5];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0xc1, 1];
const D0_MAC: [u8; 6] = [2, 0, 0, 0, 0xd0, 1];
/// The real server a direct-routing entry names (the frame does not carry it).
const DR_SERVER: Rewrite = Rewrite::Route {
    server: IpAddr::V4(Ipv4Addr::new(10, 210, 1, 2)),
};

/// Where each frame went, read from the ingress interface's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Passed,
    ToUser,
    ToUserFailed,
    FastTx,
    FastRedirect,
}

/// A director namespace with a veth pair d0 — d1 (both ends inside), the
/// program on both, a socket on queue 0 of each; `f` runs in a thread there.
fn with_director<T: Send + 'static>(f: impl FnOnce(&mut Env) -> T + Send + 'static) -> T {
    with_director_sized(4096.into(), f)
}

/// [`with_director`] with connection maps of `capacity`.
fn with_director_sized<T: Send + 'static>(
    capacity: ConnCapacity,
    f: impl FnOnce(&mut Env) -> T + Send + 'static,
) -> T {
    let mut lab = Bed::new();
    let ns = lab.add("dir");
    // The kernel's own IPv6 frames (router solicitations, MLD reports)
    // would cross the pair while a test counts one frame's verdict.
    for k in [
        "net.ipv6.conf.all.disable_ipv6=1",
        "net.ipv6.conf.default.disable_ipv6=1",
    ] {
        let o = lab.exec(&ns, &["sysctl", "-qw", k]);
        assert!(o.status.success(), "sysctl {k}: {o:?}");
    }
    veth(
        &ns,
        "d0",
        "02:00:00:00:d0:01",
        "10.210.0.2/24",
        &ns,
        "d1",
        "02:00:00:00:d1:01",
        "10.211.0.2/24",
    );
    let r = spawn_in(&ns, move || {
        let d = Director::start_sized(&["d0", "d1"], 1, XdpModePolicy::Auto, capacity);
        let mut env = Env {
            d0: d.ifindex(0),
            d1: d.ifindex(1),
            d,
        };
        f(&mut env)
    })
    .join();
    drop(lab);
    r.unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// An entry that forwards `flow`'s established segments (ACKs) with
/// `rewrite` through next hop `hop`, counted on `dest`.
fn upsert(flow: &Flow, rewrite: Rewrite, hop: u32, dest: u32) -> FastPathOp {
    FastPathOp::Upsert {
        key: key(flow),
        action: FastAction::Forward(FastForward {
            rewrite,
            next_hop: NextHopId(hop),
            segments: TcpSegments::ACK,
            dest: DestSlot(dest),
        }),
    }
}

struct Env {
    d: Director,
    d0: u32,
    d1: u32,
}

impl Env {
    fn dp(&mut self) -> &mut XdpDatapath {
        &mut self.d.dp
    }

    fn apply(&mut self, op: FastPathOp) -> Option<u64> {
        self.d
            .dp
            .apply(&op)
            .unwrap_or_else(|e| panic!("{op:?}: {e}"))
    }

    /// Next hop `id` out of `ifindex`, from `src` MAC to `dst` MAC.
    fn hop(&mut self, id: u32, ifindex: u32, src: [u8; 6], dst: [u8; 6]) {
        self.apply(FastPathOp::SetNextHop {
            id: NextHopId(id),
            hop: Some(NextHop {
                iface: IfIndex(ifindex),
                src_mac: EthernetAddress(src),
                dst_mac: EthernetAddress(dst),
            }),
        });
    }

    fn forward(&mut self, flow: &Flow, rewrite: Rewrite, hop: u32, dest: u32) {
        self.apply(upsert(flow, rewrite, hop, dest));
    }

    /// Run `frame` in on d0 queue 0; the verdict from the counter that moved.
    fn run(&self, frame: &[u8]) -> (Verdict, TestRun) {
        self.run_on(frame, self.d0, 0)
    }

    fn run_on(&self, frame: &[u8], ifindex: u32, queue: u32) -> (Verdict, TestRun) {
        let before = self.d.dp.iface_stats(ifindex).unwrap();
        let r = self.d.dp.test_run(frame, ifindex, queue).expect("test run");
        let after = self.d.dp.iface_stats(ifindex).unwrap();
        (classify(&before, &after), r)
    }

    /// The frame must reach user space unchanged.
    fn assert_to_user(&self, frame: &[u8], what: &str) {
        let (v, r) = self.run(frame);
        assert_eq!(v, Verdict::ToUser, "{what}");
        assert_eq!(r.action, XdpAction::Redirect, "{what}");
        assert_eq!(r.frame, frame, "{what}: handed over as it arrived");
    }
}

fn classify(before: &XdpStats, after: &XdpStats) -> Verdict {
    let moved = [
        (after.passed - before.passed, Verdict::Passed),
        (after.to_user - before.to_user, Verdict::ToUser),
        (
            after.to_user_failed - before.to_user_failed,
            Verdict::ToUserFailed,
        ),
        (after.fast_tx - before.fast_tx, Verdict::FastTx),
        (
            after.fast_redirect - before.fast_redirect,
            Verdict::FastRedirect,
        ),
    ];
    let hits: Vec<Verdict> = moved
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|&(_, v)| v)
        .collect();
    assert_eq!(
        (moved.iter().map(|(n, _)| n).sum::<u64>(), hits.len()),
        (1, 1),
        "exactly one verdict counter moves per frame: {before:?} -> {after:?}"
    );
    hits[0]
}

fn key(f: &Flow) -> FastKey {
    FastKey {
        proto: f.proto,
        saddr: f.src,
        sport: f.sport,
        daddr: f.dst,
        dport: f.dport,
    }
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn direct_routing_v4_and_v6_redirects_or_transmits_with_new_macs() {
    with_director(|env| {
        let (d0, d1) = (env.d0, env.d1);
        env.hop(1, d1, D1_MAC, RS_MAC);
        env.hop(2, d0, D0_MAC, RS_MAC);
        for (i, flow) in [
            Flow::tcp("10.210.0.1", 40000, "10.210.0.100", 80),
            Flow::udp("10.210.0.1", 40001, "10.210.0.100", 53),
            Flow::tcp("fd00:210::1", 40000, "fd00:210::100", 80),
            Flow::udp("fd00:210::1", 40001, "fd00:210::100", 53),
        ]
        .iter()
        .enumerate()
        {
            let frame = flow.frame();
            // Out of another interface: redirect through tx_ports.
            env.forward(flow, DR_SERVER, 1, 3);
            let (v, r) = env.run(&frame);
            let mut want = frame.clone();
            frames::set_macs(&mut want, D1_MAC, RS_MAC);
            assert_eq!(
                (v, r.action),
                (Verdict::FastRedirect, XdpAction::Redirect),
                "{i}"
            );
            assert_eq!(r.frame, want, "flow {i}: only the MACs change");
            // Back out of the interface it came in on: XDP_TX.
            env.forward(flow, DR_SERVER, 2, 3);
            let (v, r) = env.run(&frame);
            frames::set_macs(&mut want, D0_MAC, RS_MAC);
            assert_eq!((v, r.action), (Verdict::FastTx, XdpAction::Tx), "{i}");
            assert_eq!(r.frame, want);
        }
        // Counted as "in", IP bytes, 8 frames.
        let c = env.dp().dest_counters(DestSlot(3)).unwrap();
        let ip_bytes = |f: Flow| (f.frame().len() - 14) as u64;
        let per_round = ip_bytes(Flow::tcp("10.210.0.1", 1, "10.210.0.100", 80))
            + ip_bytes(Flow::udp("10.210.0.1", 1, "10.210.0.100", 53))
            + ip_bytes(Flow::tcp("fd00:210::1", 1, "fd00:210::100", 80))
            + ip_bytes(Flow::udp("fd00:210::1", 1, "fd00:210::100", 53));
        assert_eq!(
            c,
            DestCounters {
                in_packets: 8,
                in_bytes: 2 * per_round,
                out_packets: 0,
                out_bytes: 0
            }
        );
    });
}

#[test]
fn nat_both_directions_v4_and_v6_match_the_slow_path_byte_for_byte() {
    with_director(|env| {
        let d1 = env.d1;
        let d0 = env.d0;
        env.hop(1, d1, D1_MAC, RS_MAC);
        env.hop(2, d0, D0_MAC, CLIENT_MAC);
        let cases = [
            ("10.210.0.1", "10.210.0.100", "10.211.0.5", TCP),
            ("10.210.0.1", "10.210.0.100", "10.211.0.5", UDP),
            ("fd00:210::1", "fd00:210::100", "fd00:211::5", TCP),
            ("fd00:210::1", "fd00:210::100", "fd00:211::5", UDP),
        ];
        for (client, vip, rip, proto) in cases {
            let mut inbound = Flow::udp(client, 41000, vip, 80);
            if proto == TCP {
                inbound = Flow::tcp(client, 41000, vip, 80);
            }
            // Client -> VIP:80 becomes client -> RIP:8080 (TTL unchanged).
            env.forward(
                &inbound,
                Rewrite::MasqIn {
                    addr: ip(rip),
                    port: 8080,
                },
                1,
                4,
            );
            let frame = inbound.frame();
            let (v, r) = env.run(&frame);
            let want = frames::expect_masq_in(&frame, 14, ip(rip), 8080, (D1_MAC, RS_MAC));
            assert_eq!(v, Verdict::FastRedirect, "{client} {proto} in");
            assert_eq!(r.frame, want, "{client} {proto} in");
            frames::verify(&r.frame, "NAT in");

            // The reply RIP:8080 -> client comes back as VIP:80 -> client.
            let mut reply = inbound.reversed();
            reply.src = ip(rip);
            reply.sport = 8080;
            reply.ttl = 63;
            env.forward(
                &reply,
                Rewrite::MasqOut {
                    addr: ip(vip),
                    port: 80,
                },
                2,
                4,
            );
            let frame = reply.frame();
            let (v, r) = env.run(&frame);
            let want = frames::expect_masq_out(&frame, 14, ip(vip), 80, (D0_MAC, CLIENT_MAC));
            assert_eq!(v, Verdict::FastTx, "{client} {proto} out");
            assert_eq!(r.frame, want, "{client} {proto} out");
            frames::verify(&r.frame, "NAT out");
            assert_eq!(
                r.frame[14 + if vip.contains(':') { 7 } else { 8 }],
                62,
                "TTL / hop limit decremented"
            );
        }
        let c = env.dp().dest_counters(DestSlot(4)).unwrap();
        assert_eq!((c.in_packets, c.out_packets), (4, 4), "{c:?}");
        assert!(c.in_bytes > 0 && c.in_bytes == c.out_bytes, "{c:?}");
    });
}

#[test]
fn udp_without_checksum_stays_without_and_a_zero_result_becomes_ffff() {
    with_director(|env| {
        let d1 = env.d1;
        env.hop(1, d1, D1_MAC, RS_MAC);
        let mut flow = Flow::udp("10.210.0.1", 42000, "10.210.0.100", 53);
        flow.udp_no_checksum = true;
        env.forward(
            &flow,
            Rewrite::MasqIn {
                addr: ip("10.211.0.5"),
                port: 5353,
            },
            1,
            0,
        );
        let frame = flow.frame();
        let (_, r) = env.run(&frame);
        assert_eq!(
            r.frame[14 + 20 + 6..14 + 20 + 8],
            [0, 0],
            "no checksum stays none"
        );
        assert_eq!(
            r.frame,
            frames::expect_masq_in(&frame, 14, ip("10.211.0.5"), 5353, (D1_MAC, RS_MAC))
        );

        // Find a payload whose rewritten checksum computes to 0: XDP must write 0xffff.
        let (frame, want) = (0u16..=0xffff)
            .find_map(|n| {
                let mut f = Flow::udp("10.210.0.1", 42001, "10.210.0.100", 53);
                f.payload = n.to_be_bytes().to_vec();
                let frame = f.frame();
                let want =
                    frames::expect_masq_in(&frame, 14, ip("10.211.0.5"), 5353, (D1_MAC, RS_MAC));
                (want[14 + 20 + 6..14 + 20 + 8] == [0xff, 0xff]).then_some((frame, want))
            })
            .expect("a payload that sums to zero after NAT");
        let flow = Flow::udp("10.210.0.1", 42001, "10.210.0.100", 53);
        env.forward(
            &flow,
            Rewrite::MasqIn {
                addr: ip("10.211.0.5"),
                port: 5353,
            },
            1,
            0,
        );
        let (_, r) = env.run(&frame);
        assert_eq!(r.frame, want, "a computed 0 is written 0xffff");
        frames::verify(&r.frame, "UDP -0");
    });
}

#[test]
fn tunnel_encapsulates_trims_padding_and_keeps_vlan_tags() {
    with_director(|env| {
        let d1 = env.d1;
        env.hop(1, d1, D1_MAC, RS_MAC);
        let (src, dst) = (v4("10.211.0.2"), v4("10.211.0.5"));
        for (what, vlans, df, padding, proto) in [
            ("DF, TCP", vec![], true, 0, TCP),
            ("no DF: inner id", vec![], false, 0, UDP),
            ("Ethernet padding", vec![], true, 6, UDP),
            ("802.1Q", vec![(0x8100, 10)], true, 0, TCP),
            (
                "QinQ, padded",
                vec![(0x88a8, 20), (0x8100, 10)],
                false,
                4,
                UDP,
            ),
        ] {
            let mut flow = if proto == TCP {
                Flow::tcp("10.210.0.1", 43000, "10.210.0.100", 80)
            } else {
                Flow::udp("10.210.0.1", 43000, "10.210.0.100", 80)
            };
            flow.vlans = vlans;
            flow.df = df;
            flow.padding = padding;
            flow.payload = vec![0x5a; 3];
            env.forward(
                &flow,
                Rewrite::Tunnel {
                    src,
                    dst,
                    mtu: 1500,
                    encap: rvs_engine::TunnelEncap::Ipip,
                },
                1,
                6,
            );
            let frame = flow.frame();
            let (v, r) = env.run(&frame);
            let want = frames::expect_tunnel(&frame, flow.l2_len(), src, dst, (D1_MAC, RS_MAC));
            assert_eq!(v, Verdict::FastRedirect, "{what}");
            assert_eq!(r.frame, want, "{what}");
            let l2 = flow.l2_len();
            assert_eq!(
                &r.frame[l2 + 4..l2 + 6],
                if df { [0, 0] } else { 0x1234u16.to_be_bytes() },
                "{what}: identification"
            );
            frames::verify(&r.frame, what);
        }
        // Bytes counted are the inner IP packet's.
        let c = env.dp().dest_counters(DestSlot(6)).unwrap();
        assert_eq!(c.in_packets, 5);
    });
}

#[test]
fn vlan_tagged_frames_take_the_fast_path() {
    with_director(|env| {
        let d1 = env.d1;
        env.hop(1, d1, D1_MAC, RS_MAC);
        for vlans in [vec![(0x8100, 7)], vec![(0x88a8, 100), (0x8100, 7)]] {
            let mut flow = Flow::tcp("10.210.0.1", 44000, "10.210.0.100", 80);
            flow.vlans = vlans.clone();
            let frame = flow.frame();
            env.forward(&flow, DR_SERVER, 1, 0);
            let (v, r) = env.run(&frame);
            let mut want = frame.clone();
            frames::set_macs(&mut want, D1_MAC, RS_MAC);
            assert_eq!(
                (v, &r.frame),
                (Verdict::FastRedirect, &want),
                "DR {vlans:?}"
            );

            let mut flow = Flow::udp("fd00:210::1", 44000, "fd00:210::100", 80);
            flow.vlans = vlans.clone();
            let frame = flow.frame();
            env.forward(
                &flow,
                Rewrite::MasqIn {
                    addr: ip("fd00:211::5"),
                    port: 8080,
                },
                1,
                0,
            );
            let (v, r) = env.run(&frame);
            let want = frames::expect_masq_in(
                &frame,
                flow.l2_len(),
                ip("fd00:211::5"),
                8080,
                (D1_MAC, RS_MAC),
            );
            assert_eq!(
                (v, &r.frame),
                (Verdict::FastRedirect, &want),
                "NAT {vlans:?}"
            );
        }
        // A third tag is not looked through: the kernel's, as the engine's.
        let mut flow = Flow::tcp("10.210.0.1", 44000, "10.210.0.100", 80);
        flow.vlans = vec![(0x88a8, 1), (0x8100, 2), (0x8100, 3)];
        let (v, r) = env.run(&flow.frame());
        assert_eq!((v, r.action), (Verdict::Passed, XdpAction::Pass));
    });
}

#[test]
fn frames_the_engine_must_see_go_to_user_space_unchanged() {
    with_director(|env| {
        let (d0, d1) = (env.d0, env.d1);
        env.hop(1, d1, D1_MAC, RS_MAC);
        let nat_in = |env: &mut Env, f: &Flow| {
            env.forward(
                f,
                Rewrite::MasqIn {
                    addr: ip("10.211.0.5"),
                    port: 8080,
                },
                1,
                0,
            )
        };
        let base = Flow::tcp("10.210.0.1", 45000, "10.210.0.100", 80);
        nat_in(env, &base);
        assert_eq!(env.run(&base.frame()).0, Verdict::FastRedirect, "baseline");

        for (what, flags) in [
            ("SYN", tcp_flags::SYN),
            ("SYN+ACK", tcp_flags::SYN | tcp_flags::ACK),
            ("FIN", tcp_flags::FIN | tcp_flags::ACK),
            ("RST", tcp_flags::RST),
            // No ACK: IPVS moves the connection to CLOSE.
            ("no flags", 0),
            ("PSH without ACK", tcp_flags::PSH),
        ] {
            let mut f = base.clone();
            f.flags = flags;
            env.assert_to_user(&f.frame(), what);
        }
        let mut f = base.clone();
        f.flags = tcp_flags::PSH | tcp_flags::ACK;
        assert_eq!(
            env.run(&f.frame()).0,
            Verdict::FastRedirect,
            "PSH+ACK is data"
        );

        let mut f = base.clone();
        f.options = vec![1, 1, 1, 0]; // NOP NOP NOP EOL
        env.assert_to_user(&f.frame(), "IPv4 options");

        let mut frame = base.frame();
        frame[14 + 10] ^= 0x01;
        env.assert_to_user(&frame, "bad IPv4 header checksum");

        let mut frame = base.frame();
        frame[14 + 20 + 12] = 4 << 4; // TCP data offset 16 bytes
        env.assert_to_user(&frame, "TCP data offset below 20 bytes, tracked");
        let before = env.d.dp.iface_stats(d0).unwrap().parse_errors;
        env.run(&frame);
        assert_eq!(
            env.d.dp.iface_stats(d0).unwrap().parse_errors,
            before + 1,
            "counted as a parse error too"
        );

        // UDP length beyond the IP payload, on a tracked connection.
        let u = Flow::udp("10.210.0.1", 45001, "10.210.0.100", 53);
        nat_in(env, &u);
        let mut frame = u.frame();
        frame[14 + 20 + 4] = 0x7f;
        env.assert_to_user(&frame, "UDP length beyond the packet");

        // First fragment (MF) of a tracked flow: the engine drops fragments.
        let mut frame = u.frame();
        frame[14 + 6] |= 0x20;
        let c = rvs_wire::checksum::compute(&{
            let mut h = frame[14..34].to_vec();
            h[10] = 0;
            h[11] = 0;
            h
        });
        frame[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
        env.assert_to_user(&frame, "first fragment of a tracked flow");

        // ToEngine entry.
        let f = Flow::tcp("10.210.0.1", 45002, "10.210.0.100", 80);
        env.apply(FastPathOp::Upsert {
            key: key(&f),
            action: FastAction::ToEngine,
        });
        env.assert_to_user(&f.frame(), "ToEngine entry");

        // Next hop unknown (never set) and made invalid.
        let f = Flow::tcp("10.210.0.1", 45003, "10.210.0.100", 80);
        env.forward(&f, DR_SERVER, 99, 0);
        env.assert_to_user(&f.frame(), "next hop never set");
        env.hop(98, d1, D1_MAC, RS_MAC);
        env.forward(&f, DR_SERVER, 98, 0);
        assert_eq!(env.run(&f.frame()).0, Verdict::FastRedirect);
        env.apply(FastPathOp::SetNextHop {
            id: NextHopId(98),
            hop: None,
        });
        env.assert_to_user(&f.frame(), "next hop withdrawn");

        // Egress interface without a transmit port (lo is not one of ours).
        env.hop(97, 1, D1_MAC, RS_MAC);
        env.forward(&f, DR_SERVER, 97, 0);
        env.assert_to_user(&f.frame(), "egress without a tx port");

        // NAT reply with TTL 1 / 0, hop limit 1.
        env.hop(2, d0, D0_MAC, CLIENT_MAC);
        for (src, client, vip, ttl) in [
            ("10.211.0.5", "10.210.0.1", "10.210.0.100", 1),
            ("10.211.0.5", "10.210.0.1", "10.210.0.100", 0),
            ("fd00:211::5", "fd00:210::1", "fd00:210::100", 1),
        ] {
            let mut reply = Flow::tcp(src, 8080, client, 45004);
            reply.ttl = ttl;
            env.forward(
                &reply,
                Rewrite::MasqOut {
                    addr: ip(vip),
                    port: 80,
                },
                2,
                0,
            );
            env.assert_to_user(&reply.frame(), &format!("NAT reply, TTL {ttl}, {src}"));
            reply.ttl = 2;
            assert_eq!(env.run(&reply.frame()).0, Verdict::FastTx, "TTL 2 is fine");
        }

        // Tunnel: over the MTU, and an IPv6 frame.
        let mut f = Flow::udp("10.210.0.1", 45005, "10.210.0.100", 80);
        f.payload = vec![0; 1000];
        let tun = |mtu| Rewrite::Tunnel {
            src: v4("10.211.0.2"),
            dst: v4("10.211.0.5"),
            mtu,
            encap: rvs_engine::TunnelEncap::Ipip,
        };
        let ip_len = (f.frame().len() - 14) as u16;
        env.forward(&f, tun(ip_len + 19), 1, 0);
        env.assert_to_user(&f.frame(), "tunnelled packet one byte over the MTU");
        env.forward(&f, tun(ip_len + 20), 1, 0);
        assert_eq!(
            env.run(&f.frame()).0,
            Verdict::FastRedirect,
            "exactly the MTU"
        );
        let f6 = Flow::udp("fd00:210::1", 45005, "fd00:210::100", 80);
        env.forward(&f6, tun(1500), 1, 0);
        env.assert_to_user(&f6.frame(), "IPv6 for an IPIP entry");
    });
}

#[test]
fn misses_go_to_services_vips_or_the_kernel() {
    with_director(|env| {
        let vip = ip("10.210.0.100");
        env.dp().add_service(vip, TCP, 80).unwrap();
        env.dp().add_service(ip("10.210.0.101"), UDP, 0).unwrap();
        env.dp().add_vip(vip).unwrap();
        env.dp().add_service(ip("fd00:210::100"), TCP, 443).unwrap();
        env.dp().add_vip(ip("fd00:210::100")).unwrap();

        let first = Flow::tcp("10.210.0.1", 46000, "10.210.0.100", 80);
        let mut syn = first.clone();
        syn.flags = tcp_flags::SYN;
        env.assert_to_user(&syn.frame(), "first packet to a service");
        env.assert_to_user(&first.frame(), "untracked non-SYN to a service");
        env.assert_to_user(
            &Flow::udp("10.210.0.1", 46000, "10.210.0.101", 9999).frame(),
            "port-0 service",
        );
        env.assert_to_user(
            &Flow::tcp("fd00:210::1", 46000, "fd00:210::100", 443).frame(),
            "IPv6 service",
        );
        env.dp().add_service(vip, SCTP, 2905).unwrap();
        env.assert_to_user(
            &Flow::sctp_init("10.210.0.1", 46000, "10.210.0.100", 2905).frame(),
            "SCTP INIT to an SCTP service",
        );

        let pass = |env: &Env, frame: &[u8], what: &str| {
            let (v, r) = env.run(frame);
            assert_eq!((v, r.action), (Verdict::Passed, XdpAction::Pass), "{what}");
            assert_eq!(r.frame, frame, "{what}");
        };
        pass(
            env,
            &Flow::tcp("10.210.0.1", 46000, "10.210.0.100", 22).frame(),
            "VIP, not a service port",
        );
        pass(
            env,
            &Flow::udp("10.210.0.1", 46000, "10.210.0.2", 80).frame(),
            "the director's own address",
        );
        pass(
            env,
            &Flow::sctp_init("10.210.0.1", 46000, "10.210.0.2", 2905).frame(),
            "SCTP to the director's own address",
        );
        // A tracked SCTP association is always the engine's, even with a
        // Forward entry (which the engine never writes for SCTP).
        let assoc = Flow::sctp_init("10.210.0.1", 46002, "10.210.0.100", 2905);
        env.hop(3, env.d0, D0_MAC, CLIENT_MAC);
        env.forward(
            &assoc,
            Rewrite::Route {
                server: ip("10.211.0.5"),
            },
            3,
            0,
        );
        env.assert_to_user(&assoc.frame(), "tracked SCTP association");

        // The health-check case: the director talks to a NAT real server's
        // service port itself. The server's answer (RIP:8080 -> director)
        // belongs to no tracked connection and must reach the kernel, while
        // a tracked NAT reply from the same port is forwarded.
        env.hop(2, env.d0, D0_MAC, CLIENT_MAC);
        let tracked = Flow::tcp("10.211.0.5", 8080, "10.210.0.1", 46001);
        env.forward(
            &tracked,
            Rewrite::MasqOut {
                addr: vip,
                port: 80,
            },
            2,
            0,
        );
        assert_eq!(
            env.run(&tracked.frame()).0,
            Verdict::FastTx,
            "tracked reply"
        );
        let mut health = Flow::tcp("10.211.0.5", 8080, "10.211.0.2", 50000);
        pass(
            env,
            &health.frame(),
            "health-check answer from the real server",
        );
        health.flags = tcp_flags::SYN | tcp_flags::ACK;
        pass(env, &health.frame(), "health-check SYN+ACK");

        // Malformed / fragments: the engine's when for a VIP.
        let mut frame = first.frame();
        frame.truncate(14 + 20 + 10);
        frame[14 + 2..14 + 4].copy_from_slice(&30u16.to_be_bytes());
        let c = rvs_wire::checksum::compute(&{
            let mut h = frame[14..34].to_vec();
            h[10] = 0;
            h[11] = 0;
            h
        });
        frame[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
        let pe = env.d.dp.iface_stats(env.d0).unwrap().parse_errors;
        env.assert_to_user(&frame, "truncated TCP header to a VIP");
        assert_eq!(env.d.dp.iface_stats(env.d0).unwrap().parse_errors, pe + 1);
        let mut other = frame.clone();
        other[14 + 16..14 + 20].copy_from_slice(&[10, 210, 0, 2]);
        pass(env, &other, "truncated TCP header to the director");

        let mut frag = Flow::udp("10.210.0.1", 46000, "10.210.0.100", 53).frame();
        frag[14 + 6..14 + 8].copy_from_slice(&185u16.to_be_bytes());
        env.assert_to_user(&frag, "non-first fragment to a VIP");
        let mut frame = Flow::tcp("10.210.0.1", 46000, "10.210.0.100", 80).frame();
        frame[14] = 0x44; // IHL 4
        env.assert_to_user(&frame, "IHL 4 to a VIP");

        // IPv6 fragments of UDP to the VIP, first and later: the engine's.
        let frame = Flow::udp("fd00:210::1", 46000, "fd00:210::100", 53).frame();
        env.assert_to_user(
            &as_fragment_v6(frame.clone(), 5, true, 0),
            "IPv6 first fragment to a VIP",
        );
        env.assert_to_user(
            &as_fragment_v6(frame.clone(), 5, false, 8),
            "IPv6 later fragment to a VIP",
        );
        // A fragment header whose next header is not TCP/UDP: the kernel's,
        // as for IPv4 (a large ping).
        let mut other = as_fragment_v6(frame, 6, true, 0);
        other[14 + 40] = 58;
        let (v, _) = env.run(&other);
        assert_eq!(v, Verdict::Passed, "IPv6 ICMP fragment to a VIP");

        // ICMP to the VIP (ping) and ARP stay with the kernel.
        let mut ping = Flow::udp("10.210.0.1", 0, "10.210.0.100", 0).frame();
        ping[14 + 9] = 1;
        pass(env, &ping, "ICMP to a VIP");
        let mut arp = vec![0xff; 6];
        arp.extend_from_slice(&CLIENT_MAC);
        arp.extend_from_slice(&[0x08, 0x06]);
        arp.extend_from_slice(&[0u8; 28]);
        pass(env, &arp, "ARP");
        // An IPv4 ethertype and no room for the header: a parse error, the kernel's.
        let mut runt = Flow::udp("10.210.0.1", 1, "10.210.0.100", 2).frame();
        runt.truncate(14 + 19);
        let pe = env.d.dp.iface_stats(env.d0).unwrap().parse_errors;
        pass(env, &runt, "truncated IPv4 header");
        assert_eq!(env.d.dp.iface_stats(env.d0).unwrap().parse_errors, pe + 1);
    });
}

#[test]
fn no_socket_means_dropped_and_counted_and_unknown_interfaces_have_their_own_counters() {
    with_director(|env| {
        let d0 = env.d0;
        let vip = ip("10.210.0.100");
        env.dp().add_service(vip, UDP, 53).unwrap();
        let frame = Flow::udp("10.210.0.1", 47000, "10.210.0.100", 53).frame();
        env.dp().unregister_socket(d0, 0).unwrap();
        env.dp()
            .unregister_socket(d0, 0)
            .expect("unregistering twice is fine");
        let (v, r) = env.run(&frame);
        assert_eq!((v, r.action), (Verdict::ToUserFailed, XdpAction::Drop));
        let e = env.dp().register_socket(d0, 256, 0).unwrap_err();
        assert!(e.to_string().contains("queue 256"), "{e}");
        let e = env.dp().register_socket(1, 0, 0).unwrap_err();
        assert!(e.to_string().contains("not an interface"), "{e}");

        // lo (ifindex 1) is not one of the program's interfaces.
        let before = env.d.dp.unknown_iface_stats().unwrap();
        let r = env.d.dp.test_run(&frame, 1, 0).unwrap();
        let after = env.d.dp.unknown_iface_stats().unwrap();
        assert_eq!(
            r.action,
            XdpAction::Drop,
            "no socket for an unknown interface"
        );
        assert_eq!(after.to_user_failed, before.to_user_failed + 1);
        assert!(env.d.dp.iface_stats(1).is_err());
    });
}

#[test]
fn counters_partition_every_frame() {
    with_director(|env| {
        let (d0, d1) = (env.d0, env.d1);
        let vip = ip("10.210.0.100");
        env.dp().add_service(vip, TCP, 80).unwrap();
        env.dp().add_vip(vip).unwrap();
        env.hop(1, d1, D1_MAC, RS_MAC);
        env.hop(2, d0, D0_MAC, CLIENT_MAC);
        let fwd = Flow::tcp("10.210.0.1", 48000, "10.210.0.100", 80);
        env.forward(&fwd, DR_SERVER, 1, 0);
        let tx = Flow::tcp("10.210.0.1", 48001, "10.210.0.100", 80);
        env.forward(&tx, DR_SERVER, 2, 0);
        let mut bad = Flow::udp("10.210.0.1", 48002, "10.210.0.100", 80).frame();
        bad.truncate(14 + 20 + 4);
        bad[14 + 2..14 + 4].copy_from_slice(&24u16.to_be_bytes());
        let c = rvs_wire::checksum::compute(&{
            let mut h = bad[14..34].to_vec();
            h[10] = 0;
            h[11] = 0;
            h
        });
        bad[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
        let mix: Vec<(Vec<u8>, Verdict)> = vec![
            (fwd.frame(), Verdict::FastRedirect),
            (tx.frame(), Verdict::FastTx),
            (
                Flow::tcp("10.210.0.1", 48003, "10.210.0.100", 80).frame(),
                Verdict::ToUser,
            ),
            (
                Flow::tcp("10.210.0.1", 48003, "10.210.0.100", 81).frame(),
                Verdict::Passed,
            ),
            (bad, Verdict::ToUser),
        ];
        let before0 = env.d.dp.iface_stats(d0).unwrap();
        let before1 = env.d.dp.iface_stats(d1).unwrap();
        let rounds = 7;
        for _ in 0..rounds {
            for (frame, want) in &mix {
                assert_eq!(env.run(frame).0, *want);
            }
        }
        // Frames that arrive on d1 with d1's socket unregistered.
        env.dp().unregister_socket(d1, 0).unwrap();
        for _ in 0..3 {
            let (v, _) = env.run_on(&mix[2].0, d1, 0);
            assert_eq!(v, Verdict::ToUserFailed);
        }
        let after0 = env.d.dp.iface_stats(d0).unwrap();
        let after1 = env.d.dp.iface_stats(d1).unwrap();
        let n = rounds * mix.len() as u64;
        assert_eq!(after0.frames() - before0.frames(), n, "{after0:?}");
        assert_eq!(after0.fast_redirect - before0.fast_redirect, rounds);
        assert_eq!(after0.fast_tx - before0.fast_tx, rounds);
        assert_eq!(after0.to_user - before0.to_user, 2 * rounds);
        assert_eq!(after0.passed - before0.passed, rounds);
        assert_eq!(after0.parse_errors - before0.parse_errors, rounds);
        assert_eq!(after1.frames() - before1.frames(), 3, "{after1:?}");
        assert_eq!(after1.to_user_failed - before1.to_user_failed, 3);
    });
}

#[test]
fn ops_write_and_read_back_the_maps() {
    with_director(|env| {
        let d1 = env.d1;
        env.hop(1, d1, D1_MAC, RS_MAC);
        let inbound = Flow::tcp("10.210.0.1", 49000, "10.210.0.100", 80);
        let reply = Flow::tcp("10.211.0.5", 8080, "10.210.0.1", 49000);
        let t0 = monotonic_ns();
        env.forward(
            &inbound,
            Rewrite::MasqIn {
                addr: ip("10.211.0.5"),
                port: 8080,
            },
            1,
            2,
        );
        let t1 = monotonic_ns();
        let seen = env.dp().last_seen(&key(&inbound)).unwrap().unwrap();
        assert!(
            (t0..=t1).contains(&seen),
            "an upsert stamps now: {t0} {seen} {t1}"
        );
        assert_eq!(env.dp().last_seen(&key(&reply)).unwrap(), None);
        let read = FastPathOp::ReadActivity {
            key: key(&inbound),
            reply: Some(key(&reply)),
        };
        assert_eq!(env.apply(read), Some(seen), "the reply has no entry yet");

        // A forwarded frame within a second of the stamp leaves it; later ones move it.
        env.run(&inbound.frame());
        assert_eq!(env.dp().last_seen(&key(&inbound)).unwrap(), Some(seen));
        std::thread::sleep(Duration::from_millis(1100));
        env.forward(
            &reply,
            Rewrite::MasqOut {
                addr: ip("10.210.0.100"),
                port: 80,
            },
            1,
            2,
        );
        let reply_seen = env.dp().last_seen(&key(&reply)).unwrap().unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        let before = monotonic_ns();
        assert_eq!(env.run(&inbound.frame()).0, Verdict::FastRedirect);
        let fwd_seen = env.dp().last_seen(&key(&inbound)).unwrap().unwrap();
        assert!(
            fwd_seen >= before && fwd_seen > reply_seen,
            "refreshed by XDP"
        );
        assert_eq!(env.apply(read), Some(fwd_seen), "latest of both directions");

        assert_eq!(env.dp().conn_entry_count().unwrap(), 2);
        let c = env.dp().dest_counters(DestSlot(2)).unwrap();
        assert_eq!(c.in_packets, 2);
        env.apply(FastPathOp::ResetDest { slot: DestSlot(2) });
        assert_eq!(
            env.dp().dest_counters(DestSlot(2)).unwrap(),
            DestCounters::default()
        );

        env.apply(FastPathOp::Remove { key: key(&inbound) });
        env.apply(FastPathOp::Remove { key: key(&inbound) }); // absent is fine
        assert_eq!(env.dp().last_seen(&key(&inbound)).unwrap(), None);
        assert_eq!(env.apply(read), Some(reply_seen));
        env.apply(FastPathOp::Remove { key: key(&reply) });
        assert_eq!(env.apply(read), None, "neither direction exists");
        assert_eq!(env.dp().conn_entry_count().unwrap(), 0);
        // Gone from the map: the frame is an untracked one again.
        assert_eq!(env.run(&inbound.frame()).0, Verdict::Passed);

        // Out-of-range ids are refused, not truncated.
        let e = env
            .dp()
            .apply(&FastPathOp::ResetDest {
                slot: DestSlot(65_536),
            })
            .unwrap_err();
        assert!(e.to_string().contains("beyond"), "{e}");
    });
}

#[test]
fn random_nat_frames_match_the_slow_path() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

    with_director(|env| {
        let (d0, d1) = (env.d0, env.d1);
        env.hop(1, d1, D1_MAC, RS_MAC);
        env.hop(2, d0, D0_MAC, CLIENT_MAC);
        let addr4 = any::<[u8; 4]>().prop_map(IpAddr::from);
        let addr6 = any::<[u8; 16]>().prop_map(IpAddr::from);
        let addrs = prop_oneof![
            (addr4.clone(), addr4.clone(), addr4),
            (addr6.clone(), addr6.clone(), addr6),
        ];
        let strategy = (
            addrs,
            any::<(u16, u16, u16)>(),
            prop_oneof![Just(TCP), Just(UDP)],
            proptest::collection::vec(any::<u8>(), 0..64),
            any::<bool>(),
            prop_oneof![Just(false), Just(true)],
            2u8..=255,
        );
        let mut runner = TestRunner::new_with_rng(
            Config {
                cases: 300,
                failure_persistence: None,
                ..Config::default()
            },
            TestRng::deterministic_rng(RngAlgorithm::ChaCha),
        );
        let dp = std::cell::RefCell::new(&mut env.d.dp);
        runner
            .run(
                &strategy,
                |(
                    (client, vip, rip),
                    (cport, vport, rport),
                    proto,
                    payload,
                    outbound,
                    no_csum,
                    ttl,
                )| {
                    let (mut f, rewrite, l2) = if outbound {
                        let mut f = Flow::udp("10.0.0.1", rport, "10.0.0.2", cport);
                        f.src = rip;
                        f.dst = client;
                        (
                            f,
                            Rewrite::MasqOut {
                                addr: vip,
                                port: vport,
                            },
                            2,
                        )
                    } else {
                        let mut f = Flow::udp("10.0.0.1", cport, "10.0.0.2", vport);
                        f.src = client;
                        f.dst = vip;
                        (
                            f,
                            Rewrite::MasqIn {
                                addr: rip,
                                port: rport,
                            },
                            1,
                        )
                    };
                    f.proto = proto;
                    if proto == TCP {
                        f.flags = tcp_flags::ACK;
                    }
                    f.payload = payload;
                    f.ttl = ttl;
                    f.udp_no_checksum = no_csum && proto == UDP && vip.is_ipv4();
                    let op = FastPathOp::Upsert {
                        key: key(&f),
                        action: FastAction::Forward(FastForward {
                            rewrite,
                            next_hop: NextHopId(l2),
                            segments: TcpSegments::ACK,
                            dest: DestSlot(0),
                        }),
                    };
                    let mut dp = dp.borrow_mut();
                    dp.apply(&op).unwrap();
                    let frame = f.frame();
                    let r = dp.test_run(&frame, d0, 0).unwrap();
                    let want = match rewrite {
                        Rewrite::MasqIn { addr, port } => {
                            frames::expect_masq_in(&frame, 14, addr, port, (D1_MAC, RS_MAC))
                        }
                        Rewrite::MasqOut { addr, port } => {
                            frames::expect_masq_out(&frame, 14, addr, port, (D0_MAC, CLIENT_MAC))
                        }
                        _ => unreachable!(),
                    };
                    prop_assert_eq!(&r.frame, &want);
                    frames::verify(&r.frame, "random NAT");
                    dp.apply(&FastPathOp::Remove { key: key(&f) }).unwrap();
                    Ok(())
                },
            )
            .unwrap();
    });
}

#[test]
fn generic_mode_runs_the_same_program() {
    let mut lab = Bed::new();
    let ns = lab.add("dir");
    veth(
        &ns,
        "g0",
        "02:00:00:00:e0:01",
        "10.212.0.2/24",
        &ns,
        "g1",
        "02:00:00:00:e1:01",
        "10.212.1.2/24",
    );
    spawn_in(&ns, || {
        let idx: Vec<u32> = ["g0", "g1"]
            .iter()
            .map(|n| rvs_datapath::ifindex_by_name(n).unwrap())
            .collect();
        let mut dp = XdpDatapath::load(&idx, XdpModePolicy::Generic, 0).expect("generic load");
        assert!(dp
            .interfaces()
            .iter()
            .all(|i| i.mode == XdpAttachMode::Generic));
        assert_eq!(dp.mode(idx[1]), Some(XdpAttachMode::Generic));
        assert_eq!(dp.conn_map_capacity(), 1024, "the floor");
        dp.apply(&FastPathOp::SetNextHop {
            id: NextHopId(1),
            hop: Some(NextHop {
                iface: IfIndex(idx[1]),
                src_mac: EthernetAddress(D1_MAC),
                dst_mac: EthernetAddress(RS_MAC),
            }),
        })
        .unwrap();
        let f = Flow::tcp("10.212.0.1", 40000, "10.212.0.100", 80);
        dp.apply(&upsert(&f, DR_SERVER, 1, 0)).unwrap();
        let r = dp.test_run(&f.frame(), idx[0], 0).unwrap();
        assert_eq!(r.action, XdpAction::Redirect);
        assert_eq!(&r.frame[..6], &RS_MAC);
        drop(dp);
        // Detached from every interface on drop: loading again in native
        // mode finds them free.
        let dp = XdpDatapath::load(&idx, XdpModePolicy::Native, 10).expect("native load");
        assert!(dp
            .interfaces()
            .iter()
            .all(|i| i.mode == XdpAttachMode::Native));
        assert_eq!(dp.conn_map_capacity(), 1024);
    })
    .join()
    .expect("director");
    drop(lab);
}

/// Kernel bytes per connection entry, measured, for the README: 100,000
/// IPv4 entries (50,000 NAT connections, two entries each) in the default
/// table for that capacity (131,072 slots of 64 bytes, allocated at load),
/// and what the entries whose set was full cost in the overflow hash map
/// (its memlock growth, fdinfo). Asserted within generous bounds only.
#[test]
fn conns_memory_per_entry() {
    const ENTRIES: u32 = 100_000;
    let mut lab = Bed::new();
    let ns = lab.add("dir");
    let (slotted, overflow, table, per_overflow) = spawn_in(&ns, || {
        let mut dp = XdpDatapath::load(&[], XdpModePolicy::Auto, ENTRIES / 2).unwrap();
        assert_eq!(dp.conn_map_capacity(), ENTRIES);
        assert_eq!(dp.conn_slots(), 131_072);
        let empty = dp.conn_map_memlock().unwrap();
        for i in 0..ENTRIES / 2 {
            let client = IpAddr::from([10, 220, (i >> 8) as u8, i as u8]);
            let inbound = FastKey {
                proto: TCP,
                saddr: client,
                sport: 40000,
                daddr: ip("10.210.0.100"),
                dport: 80,
            };
            let reply = FastKey {
                proto: TCP,
                saddr: ip("10.211.0.5"),
                sport: 8080,
                daddr: client,
                dport: 40000,
            };
            let fwd = |rewrite| {
                FastAction::Forward(FastForward {
                    rewrite,
                    next_hop: NextHopId(1),
                    segments: TcpSegments::ACK,
                    dest: DestSlot(1),
                })
            };
            dp.apply(&FastPathOp::Upsert {
                key: inbound,
                action: fwd(Rewrite::MasqIn {
                    addr: ip("10.211.0.5"),
                    port: 8080,
                }),
            })
            .unwrap();
            dp.apply(&FastPathOp::Upsert {
                key: reply,
                action: fwd(Rewrite::MasqOut {
                    addr: ip("10.210.0.100"),
                    port: 80,
                }),
            })
            .unwrap();
        }
        let full = dp.conn_map_memlock().unwrap();
        assert_eq!(dp.conn_entry_count().unwrap(), ENTRIES as usize);
        let (slotted, overflow) = dp.conn_slot_usage();
        let table = dp.conn_slots() as u64 * 64;
        let per_overflow = (full - empty) / (overflow as u64).max(1);
        println!(
            "conns: {ENTRIES} entries: {slotted} in {} slots of 64 B ({table} B, allocated at \
             load), {overflow} in the overflow map at {per_overflow} B each; memlock empty \
             {empty} B, full {full} B",
            dp.conn_slots(),
        );
        (slotted, overflow, table, per_overflow)
    })
    .join()
    .expect("measurement");
    drop(lab);
    assert_eq!(slotted + overflow, ENTRIES as usize);
    // At 0.76 entries per slot, 4-way sets hold all but about a tenth.
    assert!(
        overflow < ENTRIES as usize / 5,
        "{overflow} entries overflowed"
    );
    assert!(table >= 131_072 * 64);
    assert!(
        (96..=512).contains(&per_overflow),
        "{per_overflow} B per overflow entry"
    );
}

/// IPv4 entries beyond what their set of four slots holds go to the
/// overflow hash map and are forwarded all the same; removing and
/// rewriting works wherever an entry lives.
#[test]
fn full_sets_overflow_to_the_hash_map_and_still_forward() {
    const FLOWS: u32 = 2000;
    let capacity = ConnCapacity {
        connections: 4096,
        fast_path_slots: Some(1024),
    };
    with_director_sized(capacity, |env| {
        let (d0, d1) = (env.d0, env.d1);
        env.hop(1, d1, D1_MAC, RS_MAC);
        env.hop(2, d0, D0_MAC, CLIENT_MAC);
        let flows: Vec<Flow> = (0..FLOWS)
            .map(|i| {
                let client = format!("10.210.{}.{}", 10 + (i >> 8), i & 255);
                Flow::udp(&client, 40000, "10.210.0.100", 80)
            })
            .collect();
        for f in &flows {
            env.forward(f, DR_SERVER, 1, 0);
        }
        assert_eq!(env.dp().conn_slots(), 1024);
        let (slotted, overflow) = env.dp().conn_slot_usage();
        assert_eq!(slotted + overflow, FLOWS as usize);
        assert!(slotted <= 1024 && slotted > 900, "{slotted} in slots");
        assert!(overflow >= 900, "{overflow} overflowed");
        assert_eq!(env.dp().conn_overflow_entries(), overflow);
        assert_eq!(env.dp().conn_entry_count().unwrap(), FLOWS as usize);

        let out_mac = |env: &Env, f: &Flow| -> Option<[u8; 6]> {
            let r = env.d.dp.test_run(&f.frame(), env.d0, 0).unwrap();
            matches!(r.action, XdpAction::Redirect | XdpAction::Tx)
                .then(|| r.frame[..6].try_into().unwrap())
                .filter(|m: &[u8; 6]| *m != CLIENT_MAC || r.action == XdpAction::Tx)
        };
        for f in &flows {
            assert_eq!(out_mac(env, f), Some(RS_MAC), "{f:?}");
        }
        // Remove every other flow: those go to the kernel (no service).
        for f in flows.iter().step_by(2) {
            env.apply(FastPathOp::Remove { key: key(f) });
        }
        assert_eq!(env.dp().conn_entry_count().unwrap(), FLOWS as usize / 2);
        for (i, f) in flows.iter().enumerate() {
            let (v, _) = env.run(&f.frame());
            let want = if i % 2 == 0 {
                Verdict::Passed
            } else {
                Verdict::FastRedirect
            };
            assert_eq!(v, want, "flow {i}");
        }
        // Rewrite the rest in place (out of d0 now), put the others back.
        for (i, f) in flows.iter().enumerate() {
            env.forward(f, DR_SERVER, if i % 2 == 0 { 1 } else { 2 }, 0);
        }
        assert_eq!(env.dp().conn_entry_count().unwrap(), FLOWS as usize);
        for (i, f) in flows.iter().enumerate() {
            let want = if i % 2 == 0 { RS_MAC } else { CLIENT_MAC };
            assert_eq!(out_mac(env, f), Some(want), "flow {i}");
        }
    });
}

/// The slots in use start small and double as entries come
/// (`conn_geometry`); while they do, frames of the entries already there
/// keep finding them: another thread runs frames of 256 established flows
/// through the program while 20,000 more are written, and none of them
/// misses its entry. Afterwards every flow is forwarded in XDP.
#[test]
fn the_slots_in_use_grow_under_traffic_and_no_frame_misses_its_entry() {
    const WATCHED: u32 = 256;
    const FLOWS: u32 = 20_000;
    let capacity = ConnCapacity {
        connections: 65_536,
        fast_path_slots: None,
    };
    with_director_sized(capacity, |env| {
        let (d0, d1) = (env.d0, env.d1);
        env.hop(1, d1, D1_MAC, RS_MAC);
        let flows: Vec<Flow> = (0..WATCHED + FLOWS)
            .map(|i| {
                let client = format!("10.210.{}.{}", 10 + (i >> 8), i & 255);
                Flow::udp(&client, 40000, "10.210.0.100", 80)
            })
            .collect();
        for f in &flows[..WATCHED as usize] {
            env.forward(f, DR_SERVER, 1, 0);
        }
        assert_eq!(env.dp().conn_slots(), 131_072);
        assert_eq!(
            env.dp().conn_active_slots(),
            4096,
            "a new table starts small"
        );
        let frames: Vec<Vec<u8>> = flows[..WATCHED as usize].iter().map(Flow::frame).collect();
        let runner = env.d.dp.test_runner().unwrap();
        let done = std::sync::atomic::AtomicBool::new(false);
        // Frames forwarded, sent to user space untouched (an entry being
        // written: the engine forwards those), and missed (to the kernel).
        let (seen, growths) = std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let mut seen = [0usize; 3];
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
                let mut i = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed)
                    && std::time::Instant::now() < deadline
                {
                    let frame = &frames[i % frames.len()];
                    i += 1;
                    let r = runner.run(frame, d0, 0).unwrap();
                    let at = if r.action == XdpAction::Redirect && r.frame[..6] == RS_MAC {
                        0
                    } else if r.action == XdpAction::Redirect && r.frame == *frame {
                        1
                    } else {
                        2
                    };
                    seen[at] += 1;
                }
                seen
            });
            let mut growths = 0;
            let mut active = env.d.dp.conn_active_slots();
            for f in &flows[WATCHED as usize..] {
                env.d.dp.apply(&upsert(f, DR_SERVER, 1, 0)).unwrap();
                if env.d.dp.conn_active_slots() != active {
                    active = env.d.dp.conn_active_slots();
                    growths += 1;
                }
            }
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            (reader.join().unwrap(), growths)
        });
        println!(
            "{growths} doublings; watched frames forwarded {}, to user space {}, missed {}",
            seen[0], seen[1], seen[2]
        );
        assert_eq!(seen[2], 0, "a frame missed its entry while the table grew");
        assert!(seen[0] > 1000, "{seen:?}: the reader raced the growth");
        // 20,256 entries fill more than half of 32,768 slots.
        assert_eq!(growths, 4);
        assert_eq!(env.dp().conn_active_slots(), 65_536);
        let (slotted, overflow) = env.dp().conn_slot_usage();
        assert_eq!(slotted + overflow, flows.len());
        // At most half full, a set of four is full for about 1 % of them.
        assert!(
            overflow < flows.len() * 3 / 100,
            "{overflow} entries overflowed"
        );
        for f in &flows {
            let (v, r) = env.run(&f.frame());
            assert_eq!(v, Verdict::FastRedirect, "{f:?}");
            assert_eq!(r.frame[..6], RS_MAC);
        }
    });
}

/// One thread rewrites a NAT entry back and forth (two rewrites that
/// differ in address, port, checksum deltas and next hop; and removal)
/// while another runs frames of it through the program: every frame comes
/// out wholly under one version, or goes to the engine or the kernel
/// untouched, never with a mix of the two.
#[test]
fn an_entry_rewritten_while_frames_arrive_is_never_read_torn() {
    const RUNS: usize = 20_000;
    with_director(|env| {
        let (d0, d1) = (env.d0, env.d1);
        env.hop(1, d1, D1_MAC, RS_MAC);
        env.hop(2, d0, D0_MAC, CLIENT_MAC);
        let flow = Flow::tcp("10.210.0.1", 41000, "10.210.0.100", 80);
        let frame = flow.frame();
        let a = frames::expect_masq_in(&frame, 14, ip("10.211.0.5"), 1111, (D1_MAC, RS_MAC));
        let b = frames::expect_masq_in(&frame, 14, ip("10.211.9.77"), 2222, (D0_MAC, CLIENT_MAC));
        let version = |addr: &str, port: u16, hop: u32| FastPathOp::Upsert {
            key: key(&flow),
            action: FastAction::Forward(FastForward {
                rewrite: Rewrite::MasqIn {
                    addr: ip(addr),
                    port,
                },
                next_hop: NextHopId(hop),
                segments: TcpSegments::ACK,
                dest: DestSlot(0),
            }),
        };
        let ops = [
            version("10.211.0.5", 1111, 1),
            version("10.211.9.77", 2222, 2),
            FastPathOp::Remove { key: key(&flow) },
        ];
        env.apply(ops[0]);
        let runner = env.d.dp.test_runner().unwrap();
        let done = std::sync::atomic::AtomicBool::new(false);
        let writes_so_far = std::sync::atomic::AtomicUsize::new(0);
        let ingress = env.d0;
        let (seen, writes) = std::thread::scope(|s| {
            let reader = s.spawn(|| {
                use std::sync::atomic::Ordering::Relaxed;
                let mut seen = [0usize; 4]; // a, b, untouched, torn
                                            // On a loaded machine the writer may not run at first:
                                            // race it only once it writes, and go on (bounded) until
                                            // both versions were read.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
                while writes_so_far.load(Relaxed) == 0 && std::time::Instant::now() < deadline {
                    std::thread::yield_now();
                }
                let mut runs = 0;
                while (runs < RUNS || seen[0] == 0 || seen[1] == 0)
                    && std::time::Instant::now() < deadline
                {
                    runs += 1;
                    let r = runner.run(&frame, ingress, 0).unwrap();
                    let i = if r.frame == a && r.action == XdpAction::Redirect {
                        0
                    } else if r.frame == b && r.action == XdpAction::Tx {
                        1
                    } else if r.frame == frame {
                        2
                    } else {
                        3
                    };
                    seen[i] += 1;
                }
                done.store(true, std::sync::atomic::Ordering::Relaxed);
                seen
            });
            let mut writes = 0usize;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                env.d.dp.apply(&ops[writes % ops.len()]).unwrap();
                writes += 1;
                writes_so_far.store(writes, std::sync::atomic::Ordering::Relaxed);
            }
            (reader.join().unwrap(), writes)
        });
        println!(
            "{writes} rewrites; frames out as A {}, as B {}, untouched {}, torn {}",
            seen[0], seen[1], seen[2], seen[3]
        );
        assert_eq!(seen[3], 0, "a frame came out under a mix of two entries");
        assert!(seen[0] > 0 && seen[1] > 0, "both versions seen: {seen:?}");
        assert!(writes > 1000, "{writes} rewrites raced the reader");
    });
}

/// An ICMP error `src → dst` (either family) of `msg_type` quoting the IP
/// packet of `quoted` (its first 28 bytes past the IP header).
fn icmp_error(src: &str, dst: &str, msg_type: u8, quoted: &Flow) -> Vec<u8> {
    let q = quoted.frame();
    let ip_start = quoted.l2_len();
    let header = if quoted.src.is_ipv4() { 20 } else { 40 };
    let mut icmp = vec![msg_type, 0, 0, 0, 0, 0, 0x05, 0x78];
    icmp.extend_from_slice(&q[ip_start..(ip_start + header + 28).min(q.len())]);
    let (src, dst) = (ip(src), ip(dst));
    let mut f = CLIENT_MAC.to_vec();
    f.extend_from_slice(&D0_MAC);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let c = rvs_wire::checksum::compute(&icmp);
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
            let mut h = vec![0u8; 20];
            h[0] = 0x45;
            h[2..4].copy_from_slice(&((20 + icmp.len()) as u16).to_be_bytes());
            h[8] = 64;
            h[9] = 1;
            h[12..16].copy_from_slice(&s.octets());
            h[16..20].copy_from_slice(&d.octets());
            let c = rvs_wire::checksum::compute(&h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&[0x08, 0x00]);
            f.extend_from_slice(&h);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let pseudo = rvs_wire::checksum::pseudo_header_v6(
                &s.octets(),
                &d.octets(),
                58,
                icmp.len() as u32,
            );
            let c = rvs_wire::checksum::finish(rvs_wire::checksum::combine(
                pseudo,
                rvs_wire::checksum::sum(&icmp),
            ));
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
            let mut h = vec![0u8; 40];
            h[0] = 0x60;
            h[4..6].copy_from_slice(&(icmp.len() as u16).to_be_bytes());
            h[6] = 58;
            h[7] = 64;
            h[8..24].copy_from_slice(&s.octets());
            h[24..40].copy_from_slice(&d.octets());
            f.extend_from_slice(&[0x86, 0xdd]);
            f.extend_from_slice(&h);
        }
        _ => panic!("mixed families"),
    }
    f.extend_from_slice(&icmp);
    f
}

#[test]
fn icmp_errors_about_tracked_flows_or_to_a_vip_go_to_user_space_the_rest_stays() {
    with_director(|env| {
        let vip = ip("10.210.0.100");
        env.dp().add_service(vip, TCP, 80).unwrap();
        env.dp().add_vip(vip).unwrap();
        env.dp().add_vip(ip("fd00:210::100")).unwrap();
        env.hop(1, env.d1, D1_MAC, RS_MAC);
        let pass = |env: &Env, frame: &[u8], what: &str| {
            let (v, r) = env.run(frame);
            assert_eq!((v, r.action), (Verdict::Passed, XdpAction::Pass), "{what}");
        };

        // A tracked client → VIP flow; the error is about its reply.
        let flow = Flow::tcp("10.210.0.1", 46000, "10.210.0.100", 80);
        env.forward(&flow, DR_SERVER, 1, 0);
        let frag_needed = icmp_error("10.210.0.9", "10.210.0.100", 3, &flow.reversed());
        env.assert_to_user(&frag_needed, "frag needed about a tracked reply");
        // The same error about an untracked flow: to a VIP, so the engine's.
        let other = Flow::tcp("10.210.0.1", 46999, "10.210.0.100", 80).reversed();
        env.assert_to_user(
            &icmp_error("10.210.0.9", "10.210.0.100", 11, &other),
            "time exceeded to a VIP about nothing tracked",
        );
        // From the servers' side, to the client, about a tracked NAT flow.
        let nat_reply = Flow::tcp("10.211.0.5", 8080, "10.210.0.1", 46001);
        env.forward(
            &nat_reply,
            Rewrite::MasqOut {
                addr: vip,
                port: 80,
            },
            1,
            0,
        );
        env.assert_to_user(
            &icmp_error("10.211.0.5", "10.210.0.1", 3, &nat_reply.reversed()),
            "port unreachable from a NAT server",
        );
        // About the director's own traffic: the kernel's.
        let own = Flow::tcp("10.210.0.2", 5555, "10.210.0.9", 22);
        pass(
            env,
            &icmp_error("10.210.0.9", "10.210.0.2", 3, &own),
            "error about the director's own connection",
        );
        // Not errors, or not about TCP/UDP: the kernel's, even to a VIP.
        pass(
            env,
            &icmp_error("10.210.0.9", "10.210.0.100", 8, &flow.reversed()),
            "echo request to a VIP",
        );
        let mut about_icmp = flow.reversed();
        about_icmp.proto = 1;
        pass(
            env,
            &icmp_error("10.210.0.9", "10.210.0.100", 3, &about_icmp),
            "error about an ICMP packet",
        );

        // IPv6: packet too big about a tracked reply, to the director's
        // address (a DR server's reply path does not touch the VIP's owner).
        let flow6 = Flow::tcp("fd00:210::1", 46000, "fd00:210::100", 80);
        env.forward(&flow6, DR_SERVER, 1, 0);
        env.assert_to_user(
            &icmp_error("fd00:210::9", "fd00:210::2", 2, &flow6.reversed()),
            "IPv6 packet too big about a tracked flow",
        );
        pass(
            env,
            &icmp_error("fd00:210::9", "fd00:210::2", 2, &own_v6()),
            "IPv6 error about the director's own traffic",
        );
        pass(
            env,
            &icmp_error("fd00:210::9", "fd00:210::100", 128, &flow6.reversed()),
            "IPv6 echo request to a VIP",
        );
    });
}

fn own_v6() -> Flow {
    Flow::tcp("fd00:210::2", 5555, "fd00:210::9", 22)
}

/// `frame` (IPv4, no options) with the fragment field set: `more`
/// fragments follow, at byte `offset`; header checksum fixed.
fn as_fragment(mut frame: Vec<u8>, more: bool, offset: u16) -> Vec<u8> {
    let field = (if more { 0x2000 } else { 0 }) | (offset / 8);
    frame[14 + 6..14 + 8].copy_from_slice(&field.to_be_bytes());
    frame[14 + 10..14 + 12].fill(0);
    let c = rvs_wire::checksum::compute(&frame[14..34]);
    frame[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
    frame
}

#[test]
fn later_fragments_follow_a_tracked_first_fragment_to_user_space() {
    with_director(|env| {
        env.hop(2, env.d0, D0_MAC, CLIENT_MAC);
        // A NAT reply (server -> client: not to a VIP) of a tracked flow.
        let mut reply = Flow::udp("10.211.0.5", 8080, "10.210.0.1", 46002);
        reply.id = 4242;
        reply.payload = vec![7; 64];
        env.forward(
            &reply,
            Rewrite::MasqOut {
                addr: ip("10.210.0.100"),
                port: 80,
            },
            2,
            0,
        );
        let first = as_fragment(reply.frame(), true, 0);
        env.assert_to_user(&first, "first fragment of a tracked reply");
        let later = as_fragment(reply.frame(), false, 1480);
        env.assert_to_user(&later, "its later fragment");
        // Another datagram between the same hosts: never seen, the kernel's.
        let mut other = reply.clone();
        other.id = 4243;
        let (v, r) = env.run(&as_fragment(other.frame(), false, 1480));
        assert_eq!(
            (v, r.action),
            (Verdict::Passed, XdpAction::Pass),
            "unknown datagram"
        );
    });
}

/// An IPv6 `frame` turned into a fragment: a fragment header (id, offset,
/// M) inserted after the fixed header; with `offset` > 0 the transport
/// header is dropped (a later fragment carries only data).
fn as_fragment_v6(frame: Vec<u8>, id: u32, more: bool, offset: u16) -> Vec<u8> {
    let (head, rest) = frame.split_at(14 + 40);
    let mut f = head.to_vec();
    let next = f[14 + 6];
    f[14 + 6] = 44;
    let data: &[u8] = if offset > 0 { &rest[8..] } else { rest };
    let plen = (8 + data.len()) as u16;
    f[14 + 4..14 + 6].copy_from_slice(&plen.to_be_bytes());
    f.extend_from_slice(&[next, 0]);
    f.extend_from_slice(&(offset | u16::from(more)).to_be_bytes());
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(data);
    f
}

#[test]
fn ipv6_later_fragments_follow_a_tracked_first_fragment_to_user_space() {
    with_director(|env| {
        env.hop(2, env.d0, D0_MAC, CLIENT_MAC);
        let mut reply = Flow::udp("fd00:211::5", 8080, "fd00:210::1", 46002);
        reply.payload = vec![7; 64];
        env.forward(
            &reply,
            Rewrite::MasqOut {
                addr: ip("fd00:210::100"),
                port: 80,
            },
            2,
            0,
        );
        env.assert_to_user(
            &as_fragment_v6(reply.frame(), 99, true, 0),
            "first fragment of a tracked IPv6 reply",
        );
        env.assert_to_user(
            &as_fragment_v6(reply.frame(), 99, false, 1232),
            "its later fragment",
        );
        let (v, r) = env.run(&as_fragment_v6(reply.frame(), 100, false, 1232));
        assert_eq!(
            (v, r.action),
            (Verdict::Passed, XdpAction::Pass),
            "unknown datagram"
        );
        // An atomic fragment (offset 0, no M) of a tracked flow is never
        // forwarded here: the fast path reads TCP/UDP right after the fixed header.
        env.assert_to_user(
            &as_fragment_v6(reply.frame(), 101, false, 0),
            "atomic fragment",
        );
    });
}
