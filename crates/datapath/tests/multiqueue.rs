//! One XskGroup over every RX queue of an interface: a veth with 4 queues,
//! many client flows spread over them by the sender's TX hash, and one
//! thread receiving every first packet from whichever queue it arrived on —
//! and sending a frame back out without a copy. Needs root.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::director::Director;
use common::{off, udp_dport};
use rvs_datapath::{RxFrame, XdpModePolicy};
use rvs_netns::{spawn_in, Bed, End, Veth};

const UDP: u8 = 17;
const VIP: Ipv4Addr = Ipv4Addr::new(10, 205, 0, 100);
const QUEUES: u32 = 4;
const FLOWS: u16 = 64;

#[test]
fn one_group_receives_from_every_queue() {
    let mut lab = Bed::new();
    let cli = lab.add("cli");
    let dir = lab.add("dir");
    // As common::veth, with QUEUES queues on both ends.
    Veth::new(
        End::new(&cli, "eth0")
            .mac("02:00:00:00:05:01")
            .addr("10.205.0.1/24"),
        End::new(&dir, "eth0")
            .mac("02:00:00:00:05:02")
            .addr("10.205.0.2/24"),
    )
    .queues(QUEUES)
    .ethtool(&["tx", "off"])
    .up()
    .create()
    .unwrap();
    lab.ip(&dir, &["addr", "add", "10.205.0.100/32", "dev", "eth0"]);

    let (ready_tx, ready_rx) = mpsc::channel();
    let director = spawn_in(&dir, move || {
        let mut d = Director::start_with(&["eth0"], QUEUES, XdpModePolicy::Auto);
        assert_eq!(d.group.len(), QUEUES as usize, "one socket per queue");
        d.dp.add_service(IpAddr::V4(VIP), UDP, 5000).unwrap();
        d.dp.add_vip(IpAddr::V4(VIP)).unwrap();
        ready_tx.send(()).unwrap();
        // source port -> queue it arrived on
        let mut seen: BTreeMap<u16, u32> = BTreeMap::new();
        let mut batch = [RxFrame::default(); 16];
        let mut echoed = false;
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen.len() < usize::from(FLOWS) && Instant::now() < deadline {
            let n = d.group.recv(&mut batch);
            for rx in &batch[..n] {
                let queue = d.group.queue(rx.iface).unwrap();
                let mut f = d.group.frame_mut(rx.addr, rx.len).expect("received frame");
                assert_eq!(udp_dport(f.data()), Some(5000));
                let data = f.data();
                let sport = u16::from_be_bytes([data[off::UDP], data[off::UDP + 1]]);
                assert!(seen.insert(sport, queue).is_none(), "flow {sport} twice");
                if !echoed {
                    // Bounce the first frame back to the client, unchanged
                    // but for the MACs, out of the interface's TX socket.
                    echoed = true;
                    let d2 = f.data_mut();
                    let (dst, src) = (d2[6..12].to_vec(), d2[0..6].to_vec());
                    d2[0..6].copy_from_slice(&dst);
                    d2[6..12].copy_from_slice(&src);
                    let (start, len) = (f.start(), f.len());
                    let slot = d.group.tx_slot(d.ifindex(0)).unwrap();
                    assert!(d.group.send_at(slot, rx.addr, start, len));
                } else {
                    d.group.release(rx.addr);
                }
            }
            d.group.flush();
            if n == 0 {
                d.group.poll(Duration::from_millis(20));
            }
        }
        // Reap the bounced frame's completion.
        let deadline = Instant::now() + Duration::from_secs(5);
        while d
            .group
            .stats()
            .sockets
            .iter()
            .map(|s| s.tx_packets)
            .sum::<u64>()
            < 1
            && Instant::now() < deadline
        {
            d.group.flush();
            std::thread::sleep(Duration::from_millis(5));
        }
        let stats = d.dp.iface_stats(d.ifindex(0)).unwrap();
        let xsk = d.group.stats();
        (seen, stats, xsk)
    });
    ready_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("director ready");
    let ping = lab.exec(&cli, &["ping", "-c", "1", "-W", "2", "10.205.0.100"]);
    assert!(ping.status.success(), "ARP/ping to the VIP");
    // One socket per flow: each picks its TX queue by its own hash.
    spawn_in(&cli, || {
        for i in 0..FLOWS {
            let s = UdpSocket::bind(("10.205.0.1", 42000 + i)).unwrap();
            s.send_to(b"first", SocketAddr::from((VIP, 5000))).unwrap();
        }
    })
    .join()
    .expect("client");
    let (seen, stats, xsk) = director.join().expect("director");

    let want: BTreeSet<u16> = (0..FLOWS).map(|i| 42000 + i).collect();
    assert_eq!(
        seen.keys().copied().collect::<BTreeSet<_>>(),
        want,
        "every flow's first packet reached the one group"
    );
    let queues: BTreeSet<u32> = seen.values().copied().collect();
    assert!(
        queues.len() >= 2,
        "flows arrived on several queues: {queues:?}"
    );
    for s in &xsk.sockets {
        let from_queue = seen.values().filter(|&&q| q == s.queue).count() as u64;
        assert_eq!(
            s.rx_packets, from_queue,
            "socket on queue {}: {s:?}",
            s.queue
        );
    }
    assert_eq!(stats.to_user, u64::from(FLOWS), "{stats:?}");
    assert_eq!(stats.to_user_failed, 0, "{stats:?}");
    let tx: u64 = xsk.sockets.iter().map(|s| s.tx_packets).sum();
    assert_eq!(tx, 1, "the bounced frame completed: {xsk:?}");
    drop(lab);
}

/// `ethtool -L` on `dev` in `ns`: `queues` RX and TX queues in use.
fn set_channels(lab: &Bed, ns: &str, dev: &str, queues: u32) {
    let n = queues.to_string();
    let out = lab.exec(ns, &["ethtool", "-L", dev, "rx", &n, "tx", &n]);
    assert!(
        out.status.success(),
        "ethtool -L {dev} rx {n} tx {n} in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An interface that gains RX queues while the group runs (`ethtool -L`
/// from 2 to 4): `add_queue` binds a socket on each new one to the same
/// UMEM, from frames `spare_sockets` kept for them, and first packets that
/// arrive there reach the group instead of being dropped as
/// `to_user_failed`. A queue that has a socket already is refused.
#[test]
fn queues_gained_at_run_time_get_sockets_and_frames() {
    let mut lab = Bed::new();
    let cli = lab.add("cli");
    let dir = lab.add("dir");
    Veth::new(
        End::new(&cli, "eth0")
            .mac("02:00:00:00:06:01")
            .addr("10.206.0.1/24"),
        End::new(&dir, "eth0")
            .mac("02:00:00:00:06:02")
            .addr("10.206.0.2/24"),
    )
    .queues(QUEUES)
    .ethtool(&["tx", "off", "gro", "on"])
    .up()
    .create()
    .unwrap();
    lab.ip(&dir, &["addr", "add", "10.206.0.100/32", "dev", "eth0"]);
    // Two queues in use of the four allocated, as on a NIC before `ethtool -L`.
    set_channels(&lab, &cli, "eth0", 2);
    set_channels(&lab, &dir, "eth0", 2);
    let vip = Ipv4Addr::new(10, 206, 0, 100);

    let (ready_tx, ready_rx) = mpsc::channel();
    let (grown_tx, grown_rx) = mpsc::channel::<()>();
    let (added_tx, added_rx) = mpsc::channel();
    let director = spawn_in(&dir, move || {
        let ifx = rvs_datapath::ifindex_by_name("eth0").unwrap();
        let mut dp = rvs_datapath::XdpDatapath::load(&[ifx], XdpModePolicy::Auto, 4096_u32)
            .expect("load XDP");
        let cfg = rvs_datapath::XskConfig {
            spare_sockets: 2,
            ..rvs_datapath::XskConfig::default()
        };
        let mut group =
            rvs_datapath::XskGroup::with_queues(&[(ifx, 0), (ifx, 1)], &cfg).expect("two sockets");
        for slot in 0..group.len() {
            dp.register_socket(ifx, group.queue(slot).unwrap(), group.socket_fd(slot))
                .unwrap();
        }
        dp.add_service(IpAddr::V4(vip), UDP, 5000).unwrap();
        dp.add_vip(IpAddr::V4(vip)).unwrap();
        let free_before = group.free_frames();
        ready_tx.send(()).unwrap();
        grown_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("queues added");
        for queue in [2, 3] {
            let slot = group
                .add_queue(ifx, queue)
                .expect("a socket on a new queue");
            assert_eq!(group.queue(slot), Some(queue));
            dp.register_socket(ifx, queue, group.socket_fd(slot))
                .unwrap();
        }
        dp.reattach(ifx)
            .expect("the program put in place of itself");
        let again = group.add_queue(ifx, 2).unwrap_err();
        assert!(
            again.to_string().contains("queue 2 has a socket already"),
            "{again}"
        );
        assert_eq!(group.len(), 4);
        let free_after = group.free_frames();
        assert!(
            free_after < free_before && free_after > 0,
            "the new sockets took their FILL share from the free pool, leaving some: {free_before} -> {free_after}"
        );
        added_tx.send(()).unwrap();

        let mut seen: BTreeMap<u16, u32> = BTreeMap::new();
        let mut batch = [RxFrame::default(); 16];
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen.len() < usize::from(FLOWS) && Instant::now() < deadline {
            let n = group.recv(&mut batch);
            for rx in &batch[..n] {
                let queue = group.queue(rx.iface).unwrap();
                let f = group.frame_mut(rx.addr, rx.len).expect("received frame");
                let data = f.data();
                let sport = u16::from_be_bytes([data[off::UDP], data[off::UDP + 1]]);
                seen.insert(sport, queue);
                group.release(rx.addr);
            }
            group.flush();
            if n == 0 {
                group.poll(Duration::from_millis(20));
            }
        }
        (seen, dp.iface_stats(ifx).unwrap(), group.stats())
    });
    ready_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("director ready");
    // The receiving end first: with XDP attached, a veth takes no more TX
    // queues from its peer than it has RX queues.
    set_channels(&lab, &dir, "eth0", QUEUES);
    set_channels(&lab, &cli, "eth0", QUEUES);
    grown_tx.send(()).unwrap();
    added_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("sockets added");
    let ping = lab.exec(&cli, &["ping", "-c", "1", "-W", "2", "10.206.0.100"]);
    assert!(ping.status.success(), "ARP/ping to the VIP");
    spawn_in(&cli, move || {
        for i in 0..FLOWS {
            let s = UdpSocket::bind(("10.206.0.1", 43000 + i)).unwrap();
            s.send_to(b"first", SocketAddr::from((vip, 5000))).unwrap();
        }
    })
    .join()
    .expect("client");
    let (seen, stats, xsk) = director.join().expect("director");

    assert_eq!(
        seen.len(),
        usize::from(FLOWS),
        "every first packet reached the group: {seen:?}\nXDP: {stats:?}\nsockets: {xsk:?}"
    );
    let queues: BTreeSet<u32> = seen.values().copied().collect();
    assert!(
        queues.iter().any(|&q| q >= 2),
        "flows arrived on the queues added at run time: {queues:?}"
    );
    assert_eq!(stats.to_user_failed, 0, "{stats:?}");
    assert_eq!(stats.to_user, u64::from(FLOWS), "{stats:?}");
    for s in &xsk.sockets {
        assert_eq!(
            s.fill_ring_empty, 0,
            "socket on queue {} ran out of frames: {s:?}",
            s.queue
        );
    }
    drop(lab);
}
