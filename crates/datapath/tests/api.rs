//! Operator-facing errors and the group's frame-ownership rules.

mod common;

use std::time::{Duration, Instant};

use common::veth;
use rvs_datapath::{DatapathError, XdpDatapath, XdpModePolicy, XskConfig, XskGroup, FRAME_SIZE};
use rvs_netns::{spawn_in, Bed};

#[test]
fn unknown_interfaces_are_named_in_the_error() {
    let e = rvs_datapath::ifindex_by_name("rvsdp-nosuch0").unwrap_err();
    assert!(matches!(e, DatapathError::InterfaceNotFound(_)), "{e:?}");
    assert!(
        e.to_string().contains("interface rvsdp-nosuch0 not found"),
        "{e}"
    );

    // Refused before anything is loaded or attached.
    let e = XdpDatapath::load(&[u32::MAX - 7], XdpModePolicy::Auto, 1000).unwrap_err();
    assert!(
        matches!(e, DatapathError::InterfaceIndexNotFound(_)),
        "{e:?}"
    );
    let e = XdpDatapath::load(&[1, 1], XdpModePolicy::Auto, 1000).unwrap_err();
    assert!(e.to_string().contains("listed twice"), "{e}");
    let many: Vec<u32> = (1..=33).collect();
    let e = XdpDatapath::load(&many, XdpModePolicy::Auto, 1000).unwrap_err();
    assert!(e.to_string().contains("at most 32"), "{e}");

    let e = XskGroup::new(&[u32::MAX - 7], 0, &XskConfig::default()).unwrap_err();
    assert!(
        matches!(e, DatapathError::InterfaceIndexNotFound(_)),
        "{e:?}"
    );
}

#[test]
fn bad_ring_sizes_are_refused_before_touching_the_kernel() {
    let cfg = XskConfig {
        rx_size: 1000,
        ..XskConfig::default()
    };
    // ifindex 1 is `lo` in every namespace; validation fails first.
    let e = XskGroup::new(&[1], 0, &cfg).unwrap_err();
    assert!(
        e.to_string()
            .contains("rx_size = 1000: must be a power of two"),
        "{e}"
    );
    let e = XskGroup::new(&[], 0, &XskConfig::default()).unwrap_err();
    assert!(matches!(e, DatapathError::InvalidArgument(_)), "{e:?}");
    // One socket per queue: a pair listed twice cannot be bound.
    let e = XskGroup::with_queues(&[(1, 0), (1, 1), (1, 0)], &XskConfig::default()).unwrap_err();
    assert!(e.to_string().contains("queue 0 is listed twice"), "{e}");
    // Explicit UMEM sizes still need two frames per socket.
    let cfg = XskConfig {
        frame_count: 3,
        ..XskConfig::default()
    };
    let e = XskGroup::with_queues(&[(1, 0), (1, 1)], &cfg).unwrap_err();
    assert!(e.to_string().contains("need at least 2 per socket"), "{e}");
}

#[test]
fn frames_are_owned_once_and_wrong_addresses_are_refused() {
    let mut lab = Bed::new();
    let ns = lab.add("one");
    veth(
        &ns,
        "x0",
        "02:00:00:00:10:01",
        "10.204.0.1/24",
        &ns,
        "x1",
        "02:00:00:00:10:02",
        "10.204.0.2/24",
    );
    spawn_in(&ns, || {
        let ifx = rvs_datapath::ifindex_by_name("x0").unwrap();
        let cfg = XskConfig {
            frame_count: 64,
            ..XskConfig::default()
        };
        let mut g = XskGroup::new(&[ifx], 0, &cfg).unwrap();
        let free0 = g.free_frames();
        assert!(
            free0 > 0 && free0 < 64,
            "some frames went to the FILL ring: {free0}"
        );

        let a = g.alloc_frame().expect("a free frame");
        assert_eq!(g.free_frames(), free0 - 1);
        assert_eq!(
            a % u64::from(FRAME_SIZE),
            256,
            "data after the kernel headroom"
        );
        g.release(a);
        g.release(a); // double release: ignored
        assert_eq!(g.free_frames(), free0);
        assert!(
            g.frame_mut(a, 60).is_none(),
            "a released frame cannot be written"
        );
        assert!(!g.send(0, a, 60), "a released frame cannot be sent");
        assert!(
            !g.send(0, u64::MAX, 60),
            "an address outside the UMEM is refused"
        );

        // Too long for the chunk: refused and back in the pool.
        let b = g.alloc_frame().unwrap();
        assert!(!g.send(0, b, FRAME_SIZE));
        assert_eq!(g.free_frames(), free0);
        // Unknown slot: same.
        let b = g.alloc_frame().unwrap();
        assert!(!g.send(5, b, 60));
        assert_eq!(g.free_frames(), free0);

        // A frame built from scratch goes out and comes back through COMPLETION.
        let c = g.alloc_frame().unwrap();
        {
            let mut f = g.frame_mut(c, 0).expect("an allocated frame is ours");
            assert!(f.set_len(60));
            let d = f.data_mut();
            d[..6].copy_from_slice(&[0xff; 6]);
            d[6..12].copy_from_slice(&[2, 0, 0, 0, 0x10, 1]);
            d[12..14].copy_from_slice(&[0x88, 0xb5]); // local experimental ethertype
        }
        assert!(g.send(0, c, 60));
        assert!(!g.send(0, c, 60), "queued once only");
        let deadline = Instant::now() + Duration::from_secs(5);
        while g.stats().sockets[0].tx_packets < 1 && Instant::now() < deadline {
            g.flush();
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(g.stats().sockets[0].tx_packets, 1);
        assert_eq!(g.free_frames(), free0, "completed frame back in the pool");
    })
    .join()
    .expect("datapath thread");
}

/// The steering maps hold exactly what the engine's limits let a
/// configuration steer: the last key fits, one more is refused, and reading
/// the maps back gives what was written.
#[test]
fn the_steering_maps_hold_exactly_the_engines_limits() {
    use rvs_engine::limits::{MAX_SERVICES, MAX_VIPS};
    use std::net::{IpAddr, Ipv4Addr};

    let addr = |i: u32| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
    let mut lab = Bed::new();
    let ns = lab.add("sizes");
    spawn_in(&ns, move || {
        // Loaded without attaching: the maps only.
        let mut dp = XdpDatapath::load(&[], XdpModePolicy::Auto, 1000).unwrap();
        for i in 0..MAX_VIPS {
            dp.add_vip(addr(i)).unwrap();
        }
        let e = dp.add_vip(addr(MAX_VIPS)).unwrap_err();
        assert!(e.to_string().contains("vip_addrs"), "{e}");
        // Every port of one address, then the rest on a second one.
        let key = |i: u32| (addr(i >> 16), 6, (i & 0xffff) as u16);
        for i in 0..MAX_SERVICES {
            let (a, p, port) = key(i);
            dp.add_service(a, p, port).unwrap();
        }
        let (a, p, port) = key(MAX_SERVICES);
        let e = dp.add_service(a, p, port).unwrap_err();
        assert!(e.to_string().contains("services"), "{e}");

        let mut vips = dp.vips().unwrap();
        vips.sort();
        assert_eq!(vips, (0..MAX_VIPS).map(addr).collect::<Vec<_>>());
        let mut services = dp.services().unwrap();
        services.sort();
        assert_eq!(services, (0..MAX_SERVICES).map(key).collect::<Vec<_>>());
        // Room again after a removal.
        dp.remove_vip(addr(0)).unwrap();
        dp.add_vip(addr(MAX_VIPS)).unwrap();
    })
    .join()
    .unwrap();
}
