//! The lab builds each baseline, traffic flows the documented way, and
//! nothing with the lab's prefix survives the drop. Needs root.

use std::collections::BTreeMap;
use std::time::Duration;

use rvs_lab::{
    unique_prefix, DirectorKind, Lab, LabError, LabSpec, Mode, BIG_PAGE_BYTES, LINKTYPE_ETHERNET,
    VIP,
};

fn spec(mode: Mode, servers: usize, director: DirectorKind) -> LabSpec {
    LabSpec {
        prefix: unique_prefix(),
        mode,
        servers,
        director,
        decap_bin: None,
        queues: 1,
        directors: 1,
        vip_route: rvs_lab::VipRoute::FirstDirector,
    }
}

fn namespaces_with(prefix: &str) -> Vec<String> {
    rvs_netns::list(prefix).unwrap()
}

/// Drops the lab and checks that its namespaces and temp dir are gone.
fn drop_and_check(lab: Lab) {
    let prefix = lab.prefix().to_owned();
    let dir = lab.dir().to_owned();
    assert_eq!(namespaces_with(&prefix).len(), lab.roles().len());
    drop(lab);
    assert_eq!(
        namespaces_with(&prefix),
        Vec::<String>::new(),
        "namespaces left behind"
    );
    assert!(!dir.exists(), "{} left behind", dir.display());
}

fn vip_url() -> String {
    format!("http://{VIP}/")
}

/// `n` new connections from the client to the VIP; which server answered
/// how often.
fn spread(lab: &Lab, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let body = lab
            .exec("client", &["curl", "-s", "-m", "5", &vip_url()])
            .unwrap();
        *seen.entry(body.trim().to_owned()).or_insert(0) += 1;
    }
    seen
}

fn even(servers: usize, each: usize) -> BTreeMap<String, usize> {
    (1..=servers).map(|i| (format!("rs{i}"), each)).collect()
}

#[test]
fn kernel_route_reaches_rs1_through_the_director() {
    let lab = Lab::build(spec(Mode::Dr, 3, DirectorKind::KernelRoute)).unwrap();

    // The same hop RVS takes: router -> director (front) -> rs1 (back).
    let route = lab
        .exec("router", &["ip", "route", "get", &VIP.to_string()])
        .unwrap();
    assert!(route.contains("via 10.0.3.2"), "{route}");
    let route = lab
        .exec("dir", &["ip", "route", "get", &VIP.to_string()])
        .unwrap();
    assert!(
        route.contains("via 10.0.2.11") && route.contains("dev back"),
        "{route}"
    );

    // Watch the client leg while fetching: the reply comes from the VIP.
    let cap = lab
        .capture(
            "client",
            "eth0",
            "tcp and src host 10.0.100.1",
            3,
            Duration::from_secs(5),
        )
        .unwrap();
    assert_eq!(
        lab.exec("client", &["curl", "-s", "-m", "5", &vip_url()])
            .unwrap(),
        "rs1\n"
    );
    let pcap = cap.packets().unwrap();
    assert_eq!(pcap.linktype, LINKTYPE_ETHERNET);
    assert!(!pcap.frames.is_empty(), "no packet from the VIP captured");
    for f in &pcap.frames {
        assert_eq!(&f[12..14], &[0x08, 0x00], "IPv4 frame");
        assert_eq!(&f[26..30], &VIP.octets(), "source is the VIP");
    }

    let size = lab
        .exec(
            "client",
            &[
                "curl",
                "-s",
                "-m",
                "10",
                "-o",
                "/dev/null",
                "-w",
                "%{size_download}",
                &format!("{}big", vip_url()),
            ],
        )
        .unwrap();
    assert_eq!(size, BIG_PAGE_BYTES.to_string());

    // The same prefix cannot be built twice.
    let again = LabSpec {
        prefix: lab.prefix().to_owned(),
        ..spec(Mode::Dr, 1, DirectorKind::None)
    };
    match Lab::build(again) {
        Err(LabError::PrefixInUse { .. }) => {}
        other => panic!("second lab with the same prefix: {other:?}"),
    }
    drop_and_check(lab);
}

#[test]
fn nft_dnat_rotates_over_all_servers() {
    let lab = Lab::build(spec(Mode::Nat, 3, DirectorKind::NftDnat)).unwrap();
    let gw = lab
        .exec("rs2", &["ip", "route", "show", "default"])
        .unwrap();
    assert!(
        gw.contains("via 10.0.2.10"),
        "NAT servers route via the director: {gw}"
    );
    assert_eq!(spread(&lab, 30), even(3, 10));
    drop_and_check(lab);
}

#[test]
fn haproxy_round_robins_over_all_servers() {
    let lab = Lab::build(spec(Mode::Dr, 3, DirectorKind::Haproxy)).unwrap();
    assert_eq!(spread(&lab, 30), even(3, 10));
    drop_and_check(lab);
}

#[test]
fn dr_wiring_without_director() {
    let lab = Lab::build(spec(Mode::Dr, 2, DirectorKind::None)).unwrap();
    for rs in ["rs1", "rs2"] {
        let lo = lab
            .exec(rs, &["ip", "-o", "-4", "addr", "show", "dev", "lo"])
            .unwrap();
        assert!(lo.contains("10.0.100.1/32"), "{rs} lo: {lo}");
        for dev in ["all", "eth0"] {
            let ign = lab
                .exec(
                    rs,
                    &["sysctl", "-n", &format!("net.ipv4.conf.{dev}.arp_ignore")],
                )
                .unwrap();
            let ann = lab
                .exec(
                    rs,
                    &["sysctl", "-n", &format!("net.ipv4.conf.{dev}.arp_announce")],
                )
                .unwrap();
            assert_eq!((ign.trim(), ann.trim()), ("1", "2"), "{rs} {dev}");
        }
        let gw = lab.exec(rs, &["ip", "route", "show", "default"]).unwrap();
        assert!(gw.contains("via 10.0.2.1 "), "{rs}: {gw}");
    }
    let route = lab
        .exec("router", &["ip", "route", "get", &VIP.to_string()])
        .unwrap();
    assert!(route.contains("via 10.0.3.2 dev rt-dir"), "{route}");
    for dev in ["front", "back"] {
        let k = lab.exec("dir", &["ethtool", "-k", dev]).unwrap();
        assert!(k.contains("tx-checksumming: off"), "{dev}: {k}");
    }
    // Servers are reachable by their own address through the router.
    assert_eq!(
        lab.exec("client", &["curl", "-s", "-m", "5", "http://10.0.2.12/"])
            .unwrap(),
        "rs2\n"
    );
    // Without a director nothing answers for the VIP.
    assert!(lab
        .exec_timeout(
            "client",
            &["curl", "-s", "-m", "1", &vip_url()],
            Duration::from_secs(5)
        )
        .is_err());

    let sleeper = lab.spawn("dir", &["sleep", "600"]).unwrap();
    assert!(sleeper.is_running());
    lab.set_sysctl("dir", "net.ipv4.conf.front.accept_local", "1")
        .unwrap();
    assert_eq!(
        lab.exec("dir", &["sysctl", "-n", "net.ipv4.conf.front.accept_local"])
            .unwrap()
            .trim(),
        "1"
    );
    let pid = sleeper.pid();
    drop(sleeper); // dropping the guard leaves it to the teardown
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    drop_and_check(lab);
    let gone =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z "));
    assert!(gone, "spawned process survived teardown");
}

#[test]
fn bad_specs_are_refused_before_anything_is_created() {
    let e = Lab::build(spec(Mode::Dr, 0, DirectorKind::None)).unwrap_err();
    assert!(matches!(e, LabError::InvalidSpec(_)), "{e}");
    for queues in [0, 65] {
        let e = Lab::build(LabSpec {
            queues,
            ..spec(Mode::Dr, 1, DirectorKind::None)
        })
        .unwrap_err();
        assert!(matches!(e, LabError::InvalidSpec(_)), "{queues}: {e}");
    }
    let e = Lab::build(LabSpec {
        prefix: "Bad-Prefix".into(),
        ..spec(Mode::Dr, 1, DirectorKind::None)
    })
    .unwrap_err();
    assert!(matches!(e, LabError::InvalidSpec(_)), "{e}");
    let e = Lab::build(LabSpec {
        decap_bin: Some("/nonexistent/rvs-decap".into()),
        ..spec(Mode::Tun, 1, DirectorKind::None)
    })
    .unwrap_err();
    assert!(matches!(e, LabError::DecapNotFound { .. }), "{e}");
    assert!(e.to_string().contains("cargo build -p rvs-decap"), "{e}");
}

#[test]
fn unique_prefixes_differ_and_stay_short() {
    let a = unique_prefix();
    let b = unique_prefix();
    assert_ne!(a, b);
    assert!(a.len() <= 10, "{a}");
    assert!(format!("{a}-client").len() <= 17);
}

/// Per-RX-queue packet counters of a veth (`ethtool -S`:
/// `rx_queue_N_xdp_packets`, counted by its NAPI poll).
fn rx_queue_packets(lab: &Lab, role: &str, dev: &str) -> Vec<u64> {
    let out = lab.exec(role, &["ethtool", "-S", dev]).unwrap();
    let mut v = Vec::new();
    for line in out.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix("rx_queue_") else {
            continue;
        };
        let Some((q, n)) = rest.split_once("_xdp_packets:") else {
            continue;
        };
        let q: usize = q.parse().unwrap();
        if v.len() <= q {
            v.resize(q + 1, 0);
        }
        v[q] = n.trim().parse().unwrap();
    }
    v
}

#[test]
fn multi_queue_lab_spreads_flows_over_rx_queues() {
    let lab = Lab::build(LabSpec {
        queues: 4,
        ..spec(Mode::Dr, 1, DirectorKind::KernelRoute)
    })
    .unwrap();
    for dev in ["front", "back"] {
        let queues = lab
            .exec("dir", &["ls", &format!("/sys/class/net/{dev}/queues")])
            .unwrap();
        let rx: Vec<&str> = queues
            .split_whitespace()
            .filter(|q| q.starts_with("rx-"))
            .collect();
        assert_eq!(rx, ["rx-0", "rx-1", "rx-2", "rx-3"], "{dev}: {queues}");
        let k = lab.exec("dir", &["ethtool", "-k", dev]).unwrap();
        assert!(k.contains("generic-receive-offload: on"), "{dev}: {k}");
        assert!(k.contains("tx-checksumming: off"), "{dev}: {k}");
    }

    // 200 UDP flows (one socket, so one source port, each) from the client,
    // forwarded by the router into the director's front leg.
    let before = rx_queue_packets(&lab, "dir", "front");
    assert_eq!(before.len(), 4, "{before:?}");
    lab.exec(
        "client",
        &[
            "python3",
            "-c",
            "import socket\n\
             for _ in range(200):\n\
             \x20   s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             \x20   s.sendto(b'x' * 18, ('10.0.3.2', 9))\n\
             \x20   s.close()\n",
        ],
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let after = rx_queue_packets(&lab, "dir", "front");
    let per_queue: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert!(
        per_queue.iter().sum::<u64>() >= 200,
        "the datagrams did not all arrive: {per_queue:?}"
    );
    let busy = per_queue.iter().filter(|&&n| n >= 10).count();
    assert!(
        busy >= 2,
        "200 flows landed on fewer than 2 of 4 RX queues: {per_queue:?}"
    );

    // Each RX queue is a NAPI instance that can get a thread of its own.
    let threads = lab.thread_napi("dir", "front").unwrap();
    assert_eq!(threads.len(), 4, "{threads:?}");
    for pid in &threads {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
        assert!(comm.starts_with("napi/front-"), "{pid}: {comm}");
    }
    assert_eq!(lab.thread_napi("dir", "front").unwrap(), threads);
    drop_and_check(lab);
    // The kernel dismantles a deleted namespace's devices asynchronously.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let alive = || {
        threads
            .iter()
            .filter(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
            .count()
    };
    while alive() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(alive(), 0, "NAPI threads {threads:?} outlived their device");
}

/// Several directors share the front, server and sync segments, do not
/// forward in the kernel, and go with the lab; impossible combinations
/// are refused before anything exists.
#[test]
fn several_directors_share_their_segments() {
    use rvs_lab::{dir_back_ip, dir_front_ip, dir_sync_ip, VipRoute, FLOATING_BACK_IP};
    for (directors, vip_route) in [(2, VipRoute::FirstDirector), (1, VipRoute::Floating)] {
        let e = Lab::build(LabSpec {
            directors,
            vip_route,
            ..spec(Mode::Dr, 1, DirectorKind::None)
        })
        .unwrap_err();
        assert!(matches!(e, LabError::InvalidSpec(_)), "{e}");
    }
    let lab = Lab::build(LabSpec {
        directors: 3,
        vip_route: VipRoute::Floating,
        ..spec(Mode::Nat, 2, DirectorKind::None)
    })
    .unwrap();
    assert_eq!(lab.directors(), ["dir", "dir2", "dir3"]);
    let ping = |role: &str, to: std::net::Ipv4Addr| {
        lab.exec(role, &["ping", "-c1", "-W2", &to.to_string()])
            .unwrap_or_else(|e| panic!("{role} -> {to}: {e}"));
    };
    ping("dir3", rvs_lab::ROUTER_DIR_IP);
    ping("dir3", dir_front_ip(1));
    ping("dir2", dir_back_ip(3));
    ping("dir", dir_sync_ip(3));
    ping("rs2", dir_back_ip(2));
    for role in lab.directors() {
        let f = lab
            .exec(&role, &["sysctl", "-n", "net.ipv4.ip_forward"])
            .unwrap();
        assert_eq!(f.trim(), "0", "{role} forwards in the kernel");
    }
    let route = lab
        .exec("rs1", &["ip", "route", "show", "default"])
        .unwrap();
    assert!(
        route.contains(&FLOATING_BACK_IP.to_string()),
        "NAT servers' gateway: {route}"
    );
    drop_and_check(lab);
}
