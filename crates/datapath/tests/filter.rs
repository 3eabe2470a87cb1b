//! The XDP filter in front of the AF_XDP sockets, with real packets in
//! network namespaces: what goes to user space and what stays with the kernel.
//! Needs root (CAP_NET_ADMIN, CAP_BPF).

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::director::Director;
use common::{in_netns, off, udp_dport, Lab};
use rvs_datapath::{RxFrame, XdpAttachMode, XdpStats, XskStats};

const UDP: u8 = 17;
const VIP: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 100);

#[test]
fn service_goes_to_xsk_ping_and_other_ports_stay_in_kernel() {
    let mut lab = Lab::new("a");
    let cli = lab.netns("cli");
    let dir = lab.netns("dir");
    lab.veth(
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
    let director = in_netns(&dir, move || {
        let mut d = Director::start(&["eth0"]);
        let f = &mut d.filters[0];
        f.add_service(IpAddr::V4(VIP), UDP, 5000).unwrap();
        f.add_vip(IpAddr::V4(VIP)).unwrap();
        let kern = UdpSocket::bind((VIP, 6000)).unwrap();
        kern.set_nonblocking(true).unwrap();
        ready_tx.send(f.mode()).unwrap();

        let mut svc: Vec<Vec<u8>> = Vec::new();
        let mut unexpected = 0;
        let mut kernel: Vec<Vec<u8>> = Vec::new();
        let mut batch = [RxFrame::default(); 64];
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && (svc.len() < N_SVC || kernel.len() < N_KERN) {
            let n = d.group.recv(&mut batch);
            for rx in &batch[..n] {
                let data = d.group.frame_mut(rx.addr, rx.len).data().to_vec();
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
        let stats: XdpStats = d.filters[0].stats().unwrap();
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

    let sender = in_netns(&cli, || {
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
    assert_eq!(stats.redirected, N_SVC as u64, "{stats:?}");
    assert_eq!(stats.redirect_failed, 0, "{stats:?}");
    // 3 echo requests + 5 datagrams + ARP (at least one request or reply).
    assert!(stats.passed > 3 + N_KERN as u64, "{stats:?}");
    assert_eq!(xsk.sockets[0].rx_packets, N_SVC as u64, "{xsk:?}");
}
