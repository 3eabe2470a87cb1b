//! Frames received on one interface and sent out of another through the
//! shared UMEM, without copies: plain MAC rewrite (DR-like) and a frame grown
//! by 20 bytes into the headroom (IPIP, TUN-like); and a NAT flow forwarded
//! both ways by the XDP program alone, in native and generic mode. Needs root.
//!
//! Topology (each `ns` created by the test):
//! `A eth0 10.201.1.1` — `D ethA 10.201.1.2 (+VIP)` | `D ethB 10.201.2.2` — `B eth0 10.201.2.1 (VIP on lo)`

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::director::Director;
use common::{csum, mac, off, udp_dport, veth};
use rvs_datapath::{BindMode, RxFrame, XdpAttachMode, XdpModePolicy, XskStats};
use rvs_engine::{
    DestSlot, FastAction, FastForward, FastKey, FastPathOp, IfIndex, NextHop, NextHopId, Rewrite,
    TcpSegments,
};
use rvs_netns::{spawn_in, Bed};
use rvs_wire::EthernetAddress;

const UDP: u8 = 17;
const VIP: Ipv4Addr = Ipv4Addr::new(10, 201, 1, 100);
const D_B_MAC: &str = "02:00:00:00:b2:02";
const B_MAC: &str = "02:00:00:00:b2:01";
const N: usize = 30;

struct Topo {
    lab: Bed,
    a: String,
    d: String,
    b: String,
}

fn topo() -> Topo {
    let mut lab = Bed::new();
    let a = lab.add("a");
    let d = lab.add("d");
    let b = lab.add("b");
    veth(
        &a,
        "eth0",
        "02:00:00:00:b1:01",
        "10.201.1.1/24",
        &d,
        "ethA",
        "02:00:00:00:b1:02",
        "10.201.1.2/24",
    );
    veth(
        &d,
        "ethB",
        D_B_MAC,
        "10.201.2.2/24",
        &b,
        "eth0",
        B_MAC,
        "10.201.2.1/24",
    );
    lab.ip(&d, &["addr", "add", "10.201.1.100/32", "dev", "ethA"]);
    // B is a DR-style real server: VIP on lo, replies routed back through D.
    lab.ip(&b, &["addr", "add", "10.201.1.100/32", "dev", "lo"]);
    lab.ip(&b, &["route", "add", "default", "via", "10.201.2.2"]);
    for k in [
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.eth0.rp_filter=0",
    ] {
        let o = lab.exec(&b, &["sysctl", "-qw", k]);
        assert!(
            o.status.success(),
            "sysctl {k}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Topo { lab, a, d, b }
}

/// What the director thread returns: original IP packets seen, and the group's stats.
type DirectorResult = std::thread::JoinHandle<(Vec<Vec<u8>>, XskStats)>;

/// Runs the director in D: every frame to VIP:5000 arriving on ethA (slot 0)
/// goes through `rewrite` and out of ethB (slot 1). Returns the original IP
/// packets seen, and the group's stats.
fn run_director(
    d: &str,
    rewrite: fn(&mut rvs_datapath::PacketBuf<'_>) -> bool,
) -> (mpsc::Receiver<BindMode>, DirectorResult) {
    let (ready_tx, ready_rx) = mpsc::channel();
    let h = spawn_in(d, move || {
        let mut dir = Director::start(&["ethA", "ethB"]);
        dir.dp.add_service(IpAddr::V4(VIP), UDP, 5000).unwrap();
        let eth_b = dir.group.tx_slot(dir.ifindex(1)).expect("a socket on ethB");
        ready_tx.send(dir.group.mode(0).unwrap()).unwrap();
        let mut seen = Vec::new();
        let mut batch = [RxFrame::default(); 32];
        let mut sent = 0;
        let deadline = Instant::now() + Duration::from_secs(10);
        // Run until all frames were forwarded and completed (or time is up).
        while Instant::now() < deadline {
            let n = dir.group.recv(&mut batch);
            for rx in &batch[..n] {
                assert_eq!(rx.iface, 0, "service frames arrive on ethA");
                let mut f = dir
                    .group
                    .frame_mut(rx.addr, rx.len)
                    .expect("received frame");
                assert_eq!(udp_dport(f.data()), Some(5000));
                seen.push(f.data()[off::IP..].to_vec());
                if rewrite(&mut f) {
                    let (start, len) = (f.start(), f.len());
                    assert!(
                        dir.group.send_at(eth_b, rx.addr, start, len),
                        "TX ring accepts the frame"
                    );
                    sent += 1;
                } else {
                    dir.group.release(rx.addr);
                }
            }
            dir.group.flush();
            let st = dir.group.stats();
            if sent == N && st.sockets[1].tx_packets == N as u64 {
                break;
            }
            if n == 0 {
                dir.group.poll(Duration::from_millis(10));
            }
        }
        (seen, dir.group.stats())
    });
    (ready_rx, h)
}

fn set_macs(f: &mut rvs_datapath::PacketBuf<'_>) {
    let d = f.data_mut();
    d[0..6].copy_from_slice(&mac(B_MAC));
    d[6..12].copy_from_slice(&mac(D_B_MAC));
}

fn send_from_a(t: &Topo, prefix: &'static str) {
    let s = spawn_in(&t.a, move || {
        let s = UdpSocket::bind("10.201.1.1:0").unwrap();
        for i in 0..N {
            s.send_to(
                format!("{prefix}-{i}").as_bytes(),
                SocketAddr::from((VIP, 5000)),
            )
            .unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    s.join().expect("sender in A");
}

#[test]
fn frames_cross_interfaces_through_the_shared_umem() {
    let t = topo();
    // B listens on the VIP like a DR real server.
    let (bready_tx, bready_rx) = mpsc::channel();
    let receiver = spawn_in(&t.b, move || {
        let s = UdpSocket::bind((VIP, 5000)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        bready_tx.send(()).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        while got.len() < N {
            match s.recv_from(&mut buf) {
                Ok((len, from)) => got.push((buf[..len].to_vec(), from)),
                Err(_) => break,
            }
        }
        got
    });
    bready_rx.recv().unwrap();
    let (ready, director) = run_director(&t.d, |f| {
        set_macs(f);
        true
    });
    let mode = ready
        .recv_timeout(Duration::from_secs(20))
        .expect("director ready");
    assert_eq!(mode, BindMode::Copy, "veth has no AF_XDP zero-copy");
    // Resolve the VIP's MAC first so no datagram waits on ARP.
    let ping = t
        .lab
        .exec(&t.a, &["ping", "-c", "1", "-W", "2", "10.201.1.100"]);
    assert!(ping.status.success(), "ARP/ping to the VIP");
    send_from_a(&t, "fwd");

    let got = receiver.join().expect("receiver in B");
    let (seen, stats) = director.join().expect("director");
    assert_eq!(seen.len(), N);
    let want: Vec<(Vec<u8>, SocketAddr)> = (0..N)
        .map(|i| {
            (
                format!("fwd-{i}").into_bytes(),
                SocketAddr::from(([10, 201, 1, 1], 0)),
            )
        })
        .collect();
    assert_eq!(got.len(), N, "all forwarded datagrams reach B");
    for ((data, from), (wdata, wfrom)) in got.iter().zip(&want) {
        assert_eq!(data, wdata);
        assert_eq!(from.ip(), wfrom.ip(), "client address preserved");
    }
    assert_eq!(stats.sockets[0].rx_packets, N as u64, "{stats:?}");
    assert_eq!(stats.sockets[1].tx_packets, N as u64, "{stats:?}");
    assert_eq!(stats.sockets[1].tx_invalid, 0, "{stats:?}");
    drop(t);
}

/// Prepend an outer IPv4 header (IPIP, D → B) in the headroom: the Ethernet
/// header moves 20 bytes to the front, the inner packet stays where it is.
fn encap_ipip(f: &mut rvs_datapath::PacketBuf<'_>) -> bool {
    let inner_len = f.len() - 14;
    if !f.push_front(20) {
        return false;
    }
    let d = f.data_mut();
    d.copy_within(20..34, 0);
    let total = (inner_len + 20) as u16;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[8] = 64;
    ip[9] = 4; // IPPROTO_IPIP
    ip[12..16].copy_from_slice(&[10, 201, 2, 2]);
    ip[16..20].copy_from_slice(&[10, 201, 2, 1]);
    let c = csum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    d[14..34].copy_from_slice(&ip);
    set_macs(f);
    true
}

#[test]
fn frame_grown_into_headroom_is_sent_intact() {
    let t = topo();
    // B has no ipip module: a raw IPPROTO_IPIP socket sees the whole packet.
    let (bready_tx, bready_rx) = mpsc::channel();
    let receiver = spawn_in(&t.b, move || {
        // SAFETY: plain socket(2) in this thread's namespace; checked below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_IPIP) };
        assert!(
            fd >= 0,
            "raw IPIP socket: {}",
            std::io::Error::last_os_error()
        );
        let tv = libc::timeval {
            tv_sec: 5,
            tv_usec: 0,
        };
        // SAFETY: valid fd and a timeval of the right size.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        bready_tx.send(()).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while got.len() < N {
            // SAFETY: `buf` is writable for its length.
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n <= 0 {
                break;
            }
            got.push(buf[..n as usize].to_vec());
        }
        // SAFETY: closing our own fd.
        unsafe { libc::close(fd) };
        got
    });
    bready_rx.recv().unwrap();
    let (ready, director) = run_director(&t.d, encap_ipip);
    ready
        .recv_timeout(Duration::from_secs(20))
        .expect("director ready");
    let ping = t
        .lab
        .exec(&t.a, &["ping", "-c", "1", "-W", "2", "10.201.1.100"]);
    assert!(ping.status.success(), "ARP/ping to the VIP");
    send_from_a(&t, "tun");

    let got = receiver.join().expect("receiver in B");
    let (seen, stats) = director.join().expect("director");
    assert_eq!(seen.len(), N);
    assert_eq!(got.len(), N, "all encapsulated packets reach B; {stats:?}");
    for (i, (outer, inner)) in got.iter().zip(&seen).enumerate() {
        assert_eq!(outer[0], 0x45);
        assert_eq!(outer[9], 4, "outer protocol IPIP");
        assert_eq!(&outer[12..16], &[10, 201, 2, 2]);
        assert_eq!(&outer[16..20], &[10, 201, 2, 1]);
        assert_eq!(
            usize::from(u16::from_be_bytes([outer[2], outer[3]])),
            inner.len() + 20
        );
        assert_eq!(&outer[20..], &inner[..], "inner packet {i} unchanged");
        assert_eq!(&inner[28..], format!("tun-{i}").as_bytes());
    }
    assert_eq!(stats.sockets[1].tx_packets, N as u64, "{stats:?}");
    drop(t);
}

/// An established NAT flow, both directions forwarded by the XDP program
/// alone: A's datagrams to VIP:5000 go to B's 10.201.2.1:6000 (MasqIn, out
/// of ethB), B's answers come back to A from VIP:5000 (MasqOut, out of
/// ethA), and not one frame reaches user space.
fn nat_round_trip_in_xdp(policy: XdpModePolicy) {
    const CPORT: u16 = 41234;
    const ROUNDS: usize = 20;
    let t = topo();
    // A veth receiving XDP-redirected frames needs NAPI on: GRO does it.
    for ns in [&t.a, &t.b] {
        t.lab
            .exec(ns, &["ethtool", "-K", "eth0", "gro", "on"])
            .status
            .success()
            .then_some(())
            .expect("ethtool gro on");
    }
    let echo = spawn_in(&t.b, || {
        let s = UdpSocket::bind("10.201.2.1:6000").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 512];
        let mut n = 0;
        while n < ROUNDS {
            let Ok((len, from)) = s.recv_from(&mut buf) else {
                break;
            };
            assert_eq!(
                from,
                SocketAddr::from(([10, 201, 1, 1], CPORT)),
                "client kept"
            );
            s.send_to(&buf[..len], from).unwrap();
            n += 1;
        }
        n
    });
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let director = spawn_in(&t.d, move || {
        let mut dir = Director::start_with(&["ethA", "ethB"], 1, policy);
        let (eth_a, eth_b) = (dir.ifindex(0), dir.ifindex(1));
        let hop = |id, iface, src: &str, dst: &str| FastPathOp::SetNextHop {
            id: NextHopId(id),
            hop: Some(NextHop {
                iface: IfIndex(iface),
                src_mac: EthernetAddress(mac(src)),
                dst_mac: EthernetAddress(mac(dst)),
            }),
        };
        let client = IpAddr::V4(Ipv4Addr::new(10, 201, 1, 1));
        let rip = IpAddr::V4(Ipv4Addr::new(10, 201, 2, 1));
        let upsert = |key: FastKey, rewrite, hop| FastPathOp::Upsert {
            key,
            action: FastAction::Forward(FastForward {
                rewrite,
                next_hop: NextHopId(hop),
                segments: TcpSegments::ACK,
                dest: DestSlot(3),
            }),
        };
        for op in [
            hop(1, eth_b, D_B_MAC, B_MAC),
            hop(2, eth_a, "02:00:00:00:b1:02", "02:00:00:00:b1:01"),
            upsert(
                FastKey {
                    proto: UDP,
                    saddr: client,
                    sport: CPORT,
                    daddr: IpAddr::V4(VIP),
                    dport: 5000,
                },
                Rewrite::MasqIn {
                    addr: rip,
                    port: 6000,
                },
                1,
            ),
            upsert(
                FastKey {
                    proto: UDP,
                    saddr: rip,
                    sport: 6000,
                    daddr: client,
                    dport: CPORT,
                },
                Rewrite::MasqOut {
                    addr: IpAddr::V4(VIP),
                    port: 5000,
                },
                2,
            ),
        ] {
            dir.dp.apply(&op).unwrap();
        }
        ready_tx.send(dir.dp.interfaces()[0].mode).unwrap();
        done_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("client done");
        let stats = (
            dir.dp.iface_stats(eth_a).unwrap(),
            dir.dp.iface_stats(eth_b).unwrap(),
            dir.dp.dest_counters(DestSlot(3)).unwrap(),
        );
        (stats, dir.group.stats())
    });
    let mode = ready_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("director ready");
    assert_eq!(
        mode,
        match policy {
            XdpModePolicy::Generic => XdpAttachMode::Generic,
            _ => XdpAttachMode::Native,
        }
    );
    let ping = t
        .lab
        .exec(&t.a, &["ping", "-c", "1", "-W", "2", "10.201.1.100"]);
    assert!(ping.status.success(), "ARP/ping to the VIP");
    let answers = spawn_in(&t.a, || {
        let s = UdpSocket::bind(("10.201.1.1", CPORT)).unwrap();
        s.connect((VIP, 5000)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        for i in 0..ROUNDS {
            s.send(format!("nat-{i}").as_bytes()).unwrap();
            match s.recv(&mut buf) {
                Ok(n) => got.push(buf[..n].to_vec()),
                Err(e) => panic!("no answer to nat-{i} from VIP:5000: {e}"),
            }
        }
        got
    })
    .join()
    .expect("client in A");
    done_tx.send(()).unwrap();
    let ((a, b, dest), xsk) = director.join().expect("director");
    assert_eq!(echo.join().expect("echo server in B"), ROUNDS);
    let want: Vec<Vec<u8>> = (0..ROUNDS)
        .map(|i| format!("nat-{i}").into_bytes())
        .collect();
    assert_eq!(answers, want, "every datagram answered through the VIP");
    assert_eq!(a.fast_redirect, ROUNDS as u64, "ethA: {a:?}");
    assert_eq!(b.fast_redirect, ROUNDS as u64, "ethB: {b:?}");
    assert_eq!((a.to_user, b.to_user), (0, 0), "{a:?} {b:?}");
    assert_eq!(
        (dest.in_packets, dest.out_packets),
        (ROUNDS as u64, ROUNDS as u64)
    );
    assert!(
        xsk.sockets.iter().all(|s| s.rx_packets == 0),
        "nothing reached user space: {xsk:?}"
    );
    drop(t);
}

#[test]
fn nat_flow_is_forwarded_both_ways_by_xdp_native() {
    nat_round_trip_in_xdp(XdpModePolicy::Native);
}

#[test]
fn nat_flow_is_forwarded_both_ways_by_xdp_generic() {
    nat_round_trip_in_xdp(XdpModePolicy::Generic);
}
