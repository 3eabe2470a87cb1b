//! The XDP program in front of the AF_XDP sockets, with real packets in
//! network namespaces: what goes to user space and what stays with the kernel.
//! Needs root (CAP_NET_ADMIN, CAP_BPF).

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::director::Director;
use common::{ipv4_frame, mac, off, udp, udp_dport, veth, Injector};
use rvs_datapath::{RxFrame, XdpAttachMode, XdpStats, XskStats};
use rvs_engine::{FastAction, FastKey, FastPathOp};
use rvs_netns::{spawn_in, Bed};

const UDP: u8 = 17;
const VIP: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 100);

#[test]
fn service_goes_to_xsk_ping_and_other_ports_stay_in_kernel() {
    let mut lab = Bed::new();
    let cli = lab.add("cli");
    let dir = lab.add("dir");
    veth(
        &cli,
        "eth0",
        "02:00:00:00:0a:01",
        "10.200.0.1/24",
        &dir,
        "eth0",
        "02:00:00:00:0a:02",
        "10.200.0.2/24",
    );
    lab.ip(&dir, &["addr", "add", "10.200.0.100/32", "dev", "eth0"]);

    const N_SVC: usize = 20;
    const N_KERN: usize = 5;
    let (ready_tx, ready_rx) = mpsc::channel();
    let director = spawn_in(&dir, move || {
        let mut d = Director::start(&["eth0"]);
        d.dp.add_service(IpAddr::V4(VIP), UDP, 5000).unwrap();
        d.dp.add_vip(IpAddr::V4(VIP)).unwrap();
        let kern = UdpSocket::bind((VIP, 6000)).unwrap();
        kern.set_nonblocking(true).unwrap();
        ready_tx.send(d.dp.interfaces()[0].mode).unwrap();

        let mut svc: Vec<Vec<u8>> = Vec::new();
        let mut unexpected = 0;
        let mut kernel: Vec<Vec<u8>> = Vec::new();
        let mut batch = [RxFrame::default(); 64];
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && (svc.len() < N_SVC || kernel.len() < N_KERN) {
            let n = d.group.recv(&mut batch);
            for rx in &batch[..n] {
                let data = d
                    .group
                    .frame_mut(rx.addr, rx.len)
                    .expect("received frame")
                    .data()
                    .to_vec();
                if udp_dport(&data) == Some(5000) {
                    svc.push(data[off::PAYLOAD..].to_vec());
                } else {
                    unexpected += 1;
                }
                d.group.release(rx.addr);
            }
            d.group.flush();
            let mut buf = [0u8; 256];
            while let Ok(len) = kern.recv(&mut buf) {
                kernel.push(buf[..len].to_vec());
            }
            if n == 0 {
                d.group.poll(Duration::from_millis(20));
            }
        }
        let stats: XdpStats = d.dp.iface_stats(d.ifindex(0)).unwrap();
        let xsk: XskStats = d.group.stats();
        (svc, kernel, unexpected, stats, xsk)
    });
    let mode = ready_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("director ready");
    assert_eq!(mode, XdpAttachMode::Native, "veth supports native XDP");

    // Ping the VIP: ICMP must pass to the kernel, which answers.
    let ping = lab.exec(
        &cli,
        &["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.200.0.100"],
    );
    assert!(
        ping.status.success(),
        "ping to VIP failed: {}",
        String::from_utf8_lossy(&ping.stdout)
    );

    let sender = spawn_in(&cli, || {
        let s = UdpSocket::bind("10.200.0.1:0").unwrap();
        for i in 0..N_SVC {
            s.send_to(format!("svc-{i}").as_bytes(), SocketAddr::from((VIP, 5000)))
                .unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        for i in 0..N_KERN {
            s.send_to(
                format!("kern-{i}").as_bytes(),
                SocketAddr::from((VIP, 6000)),
            )
            .unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    sender.join().expect("sender");
    let (svc, kernel, unexpected, stats, xsk) = director.join().expect("director");

    let want_svc: Vec<Vec<u8>> = (0..N_SVC)
        .map(|i| format!("svc-{i}").into_bytes())
        .collect();
    let want_kern: Vec<Vec<u8>> = (0..N_KERN)
        .map(|i| format!("kern-{i}").into_bytes())
        .collect();
    assert_eq!(svc, want_svc, "service datagrams in user space, in order");
    assert_eq!(
        kernel, want_kern,
        "datagrams to a non-service port reach the kernel socket"
    );
    assert_eq!(unexpected, 0, "nothing but service traffic is redirected");
    assert_eq!(stats.to_user, N_SVC as u64, "{stats:?}");
    assert_eq!(stats.to_user_failed, 0, "{stats:?}");
    assert_eq!(stats.fast_tx + stats.fast_redirect, 0, "{stats:?}");
    // 3 echo requests + 5 datagrams + ARP (at least one request or reply).
    assert!(stats.passed > 3 + N_KERN as u64, "{stats:?}");
    assert_eq!(xsk.sockets[0].rx_packets, N_SVC as u64, "{xsk:?}");
}

/// Collect frames from the group until `want` arrived or `timeout` passed; release them all.
fn collect(d: &mut Director, want: usize, timeout: Duration) -> Vec<(usize, Vec<u8>)> {
    let mut got = Vec::new();
    let mut batch = [RxFrame::default(); 64];
    let deadline = Instant::now() + timeout;
    while got.len() < want && Instant::now() < deadline {
        let n = d.group.recv(&mut batch);
        for rx in &batch[..n] {
            got.push((
                rx.iface,
                d.group
                    .frame_mut(rx.addr, rx.len)
                    .expect("received frame")
                    .data()
                    .to_vec(),
            ));
            d.group.release(rx.addr);
        }
        d.group.flush();
        if n == 0 {
            d.group.poll(Duration::from_millis(20));
        }
    }
    got
}

#[test]
fn malformed_packets_to_a_vip_are_redirected_and_counted() {
    let mut lab = Bed::new();
    let cli = lab.add("cli");
    let dir = lab.add("dir");
    let (cli_mac, dir_mac) = ("02:00:00:00:0d:01", "02:00:00:00:0d:02");
    veth(
        &cli,
        "eth0",
        cli_mac,
        "10.200.0.1/24",
        &dir,
        "eth0",
        dir_mac,
        "10.200.0.2/24",
    );
    let (dst, src) = (mac(dir_mac), mac(cli_mac));
    let (c, v, own) = ([10, 200, 0, 1], VIP.octets(), [10, 200, 0, 2]);
    let svc = udp(40000, 5000, b"ok");

    // (frame, expected in user space, is a parse error)
    let cases: Vec<(&str, Vec<u8>, bool, bool)> = vec![
        (
            "UDP header cut to 4 bytes, to VIP",
            ipv4_frame(dst, src, &[], 5, 0, UDP, c, v, &svc[..4], None),
            true,
            true,
        ),
        (
            "non-first fragment to VIP",
            ipv4_frame(dst, src, &[], 5, 185, UDP, c, v, &[0u8; 8], None),
            true,
            false,
        ),
        (
            "IHL 4 to VIP",
            ipv4_frame(dst, src, &[], 4, 0, UDP, c, v, &svc, None),
            true,
            true,
        ),
        (
            "TCP header cut to 10 bytes, to VIP",
            ipv4_frame(dst, src, &[], 5, 0, 6, c, v, &[0u8; 10], None),
            true,
            true,
        ),
        (
            "UDP header cut, to the director's own address",
            ipv4_frame(dst, src, &[], 5, 0, UDP, c, own, &svc[..4], None),
            false,
            true,
        ),
        (
            "802.1Q-tagged service packet",
            ipv4_frame(dst, src, &[(0x8100, 10)], 5, 0, UDP, c, v, &svc, None),
            true,
            false,
        ),
        (
            "QinQ-tagged service packet",
            ipv4_frame(
                dst,
                src,
                &[(0x88A8, 20), (0x8100, 10)],
                5,
                0,
                UDP,
                c,
                v,
                &svc,
                None,
            ),
            true,
            false,
        ),
        (
            "well-formed UDP to VIP, non-service port",
            ipv4_frame(
                dst,
                src,
                &[],
                5,
                0,
                UDP,
                c,
                v,
                &udp(40000, 5001, b"no"),
                None,
            ),
            false,
            false,
        ),
    ];
    let frames: Vec<Vec<u8>> = cases.iter().map(|c| c.1.clone()).collect();
    let want: Vec<Vec<u8>> = cases.iter().filter(|c| c.2).map(|c| c.1.clone()).collect();
    let want_errors = cases.iter().filter(|c| c.3).count() as u64;

    let (ready_tx, ready_rx) = mpsc::channel();
    let (sent_tx, sent_rx) = mpsc::channel::<()>();
    let n_want = want.len();
    let director = spawn_in(&dir, move || {
        let mut d = Director::start(&["eth0"]);
        d.dp.add_service(IpAddr::V4(VIP), UDP, 5000).unwrap();
        d.dp.add_vip(IpAddr::V4(VIP)).unwrap();
        let before = d.dp.iface_stats(d.ifindex(0)).unwrap();
        ready_tx.send(()).unwrap();
        let mut got = collect(&mut d, n_want, Duration::from_secs(10));
        // Anything extra that should not have come up?
        sent_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("injector done");
        got.extend(collect(&mut d, usize::MAX, Duration::from_millis(200)));
        let after = d.dp.iface_stats(d.ifindex(0)).unwrap();
        (got, before, after)
    });
    ready_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("director ready");
    spawn_in(&cli, move || {
        let inj = Injector::new("eth0");
        for f in &frames {
            inj.send(f);
        }
    })
    .join()
    .expect("injector");
    sent_tx.send(()).unwrap();
    let (got, before, after) = director.join().expect("director");

    let got: Vec<Vec<u8>> = got
        .into_iter()
        .map(|(slot, f)| {
            assert_eq!(slot, 0);
            f
        })
        .collect();
    assert_eq!(
        got, want,
        "exactly the malformed-to-VIP and service frames, byte for byte"
    );
    // Deltas: IPv6 autoconfiguration (MLD, router solicitations) may pass
    // through the filter before `before` is read.
    let delta = |f: fn(&XdpStats) -> u64| f(&after) - f(&before);
    assert_eq!(
        delta(|s| s.parse_errors),
        want_errors,
        "{before:?} -> {after:?}"
    );
    assert_eq!(
        delta(|s| s.to_user),
        want.len() as u64,
        "{before:?} -> {after:?}"
    );
    assert_eq!(after.to_user_failed, 0, "{after:?}");
    assert!(
        delta(|s| s.passed) >= 2,
        "non-VIP error and non-service port passed: {before:?} -> {after:?}"
    );
}

/// The bug the shared `conns` map fixes: replies from a NAT real server's
/// service port used to be matched by source alone, which swallowed the
/// director's own traffic with that server (health checks). Now only
/// directions the engine tracks reach user space.
#[test]
fn tracked_reply_goes_to_user_space_untracked_reply_from_the_same_port_passes() {
    let mut lab = Bed::new();
    let rs = lab.add("rs");
    let dir = lab.add("dir");
    veth(
        &rs,
        "eth0",
        "02:00:00:00:0e:01",
        "10.202.0.1/24",
        &dir,
        "eth0",
        "02:00:00:00:0e:02",
        "10.202.0.2/24",
    );
    const N_NAT: usize = 10;
    const N_OWN: usize = 4;
    let rip = IpAddr::V4(Ipv4Addr::new(10, 202, 0, 1));
    // The reply direction of a NAT connection the engine tracks:
    // RIP:8080 -> client 10.202.0.2:7000 (the director stands in for the client).
    let tracked = FastKey {
        proto: UDP,
        saddr: rip,
        sport: 8080,
        daddr: IpAddr::V4(Ipv4Addr::new(10, 202, 0, 2)),
        dport: 7000,
    };

    let (ready_tx, ready_rx) = mpsc::channel();
    let director = spawn_in(&dir, move || {
        let mut d = Director::start(&["eth0"]);
        d.dp.apply(&FastPathOp::Upsert {
            key: tracked,
            action: FastAction::ToEngine,
        })
        .unwrap();
        // A service on the real server's port must not match by source.
        d.dp.add_service(rip, UDP, 8080).unwrap();
        let kern = UdpSocket::bind("10.202.0.2:7000").unwrap();
        kern.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let health = UdpSocket::bind("10.202.0.2:7001").unwrap();
        health
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        ready_tx.send(()).unwrap();
        let nat = collect(&mut d, N_NAT, Duration::from_secs(10));
        let mut own = Vec::new();
        let mut buf = [0u8; 256];
        while own.len() < N_OWN {
            match health.recv_from(&mut buf) {
                Ok((n, from)) => own.push((buf[..n].to_vec(), from.port())),
                Err(_) => break,
            }
        }
        // Removing the entry sends the next replies to the kernel.
        d.dp.apply(&FastPathOp::Remove { key: tracked }).unwrap();
        d.dp.apply(&FastPathOp::Remove { key: tracked })
            .expect("removing twice is fine");
        (nat, own, kern, d)
    });
    ready_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("director ready");
    let sender = |dport: u16, prefix: &'static str, n: usize| {
        spawn_in(&rs, move || {
            let s = UdpSocket::bind(("10.202.0.1", 8080)).unwrap();
            for i in 0..n {
                s.send_to(format!("{prefix}-{i}").as_bytes(), ("10.202.0.2", dport))
                    .unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        })
        .join()
        .expect("sender");
    };
    sender(7000, "nat", N_NAT);
    sender(7001, "own", N_OWN);
    let (nat, own, kern, d) = director.join().expect("director");

    let nat_payloads: Vec<Vec<u8>> = nat
        .iter()
        .map(|(_, f)| f[off::PAYLOAD..].to_vec())
        .collect();
    let want: Vec<Vec<u8>> = (0..N_NAT)
        .map(|i| format!("nat-{i}").into_bytes())
        .collect();
    assert_eq!(nat_payloads, want, "the tracked reply goes to user space");
    let want_own: Vec<(Vec<u8>, u16)> = (0..N_OWN)
        .map(|i| (format!("own-{i}").into_bytes(), 8080))
        .collect();
    assert_eq!(
        own, want_own,
        "the same server port to another (untracked) port reaches the kernel"
    );

    // After removal, the formerly tracked direction is the kernel's.
    sender(7000, "late", 1);
    let mut buf = [0u8; 64];
    let (n, from) = kern
        .recv_from(&mut buf)
        .expect("kernel gets RIP:8080 after removal");
    assert_eq!((&buf[..n], from.port()), (&b"late-0"[..], 8080));
    let stats = d.dp.iface_stats(d.ifindex(0)).unwrap();
    assert_eq!(stats.to_user, N_NAT as u64, "{stats:?}");
    // The director thread is gone; drop its datapath objects in the lab's lifetime.
    drop(d);
}

#[test]
fn ipv6_service_is_redirected_and_neighbour_discovery_passes() {
    use std::net::Ipv6Addr;
    let mut lab = Bed::new();
    let cli = lab.add("cli");
    let dir = lab.add("dir");
    // IPv6 needs an address family the rules do not cover with 10.x: ULA
    // addresses, only inside these namespaces; nodad so they work at once.
    veth(
        &cli,
        "eth0",
        "02:00:00:00:0f:01",
        "10.203.0.1/24",
        &dir,
        "eth0",
        "02:00:00:00:0f:02",
        "10.203.0.2/24",
    );
    lab.ip(
        &cli,
        &["addr", "add", "fd00:203::1/64", "dev", "eth0", "nodad"],
    );
    lab.ip(
        &dir,
        &["addr", "add", "fd00:203::2/64", "dev", "eth0", "nodad"],
    );
    lab.ip(
        &dir,
        &["addr", "add", "fd00:203::100/128", "dev", "eth0", "nodad"],
    );
    let vip6: Ipv6Addr = "fd00:203::100".parse().unwrap();
    const N6: usize = 8;

    let (ready_tx, ready_rx) = mpsc::channel();
    let director = spawn_in(&dir, move || {
        let mut d = Director::start(&["eth0"]);
        d.dp.add_service(IpAddr::V6(vip6), UDP, 5000).unwrap();
        d.dp.add_vip(IpAddr::V6(vip6)).unwrap();
        let kern = UdpSocket::bind((vip6, 6000)).unwrap();
        kern.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        ready_tx.send(()).unwrap();
        let got = collect(&mut d, N6, Duration::from_secs(10));
        let mut buf = [0u8; 64];
        let kernel = kern.recv(&mut buf).map(|n| buf[..n].to_vec());
        let stats = d.dp.iface_stats(d.ifindex(0)).unwrap();
        (got, kernel, stats)
    });
    ready_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("director ready");
    spawn_in(&cli, move || {
        let s = UdpSocket::bind("[fd00:203::1]:0").unwrap();
        for i in 0..N6 {
            s.send_to(format!("v6-{i}").as_bytes(), SocketAddr::from((vip6, 5000)))
                .unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        s.send_to(b"v6-kernel", SocketAddr::from((vip6, 6000)))
            .unwrap();
    })
    .join()
    .expect("sender");
    let (got, kernel, stats) = director.join().expect("director");

    // Ethernet 14 + IPv6 40 + UDP 8.
    let payloads: Vec<Vec<u8>> = got
        .iter()
        .map(|(_, f)| {
            assert_eq!(&f[12..14], &[0x86, 0xdd]);
            f[62..].to_vec()
        })
        .collect();
    let want: Vec<Vec<u8>> = (0..N6).map(|i| format!("v6-{i}").into_bytes()).collect();
    assert_eq!(payloads, want, "IPv6 service datagrams in user space");
    assert_eq!(
        kernel.expect("kernel socket"),
        b"v6-kernel".to_vec(),
        "non-service port stays in the kernel"
    );
    assert_eq!(stats.to_user, N6 as u64, "{stats:?}");
    assert_eq!(stats.parse_errors, 0, "{stats:?}");
}
