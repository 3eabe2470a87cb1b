//! State that outlives the process: a datapath that pins its links and
//! connection maps leaves the program attached when it is dropped for a
//! successor; the successor reads the old connections, swaps its own
//! program into the same links and pins its own maps; a datapath dropped
//! without handing over detaches and leaves nothing pinned.

mod common;

use std::net::IpAddr;

use common::veth;
use rvs_datapath::{PinDir, XdpDatapath, XdpModePolicy};
use rvs_engine::{
    Adopted, DestSlot, FastAction, FastForward, FastKey, FastPathOp, ForwardMethod, NextHopId,
    Rewrite, TcpSegments,
};
use rvs_netns::{run_in, Bed, BpfFs};

/// The id of the XDP program attached to `dev` in `ns`, if any.
fn attached_program(bed: &Bed, ns: &str, dev: &str) -> Option<u32> {
    let out = bed.ip(ns, &["link", "show", "dev", dev]);
    let at = out.find("prog/xdp id ")?;
    out[at + "prog/xdp id ".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn key(sport: u16) -> FastKey {
    FastKey {
        proto: 6,
        saddr: "10.205.0.2".parse().unwrap(),
        sport,
        daddr: "10.205.0.100".parse().unwrap(),
        dport: 80,
    }
}

fn forward(rewrite: Rewrite) -> FastAction {
    FastAction::Forward(FastForward {
        rewrite,
        next_hop: NextHopId(1),
        segments: TcpSegments::ACK,
        dest: DestSlot(1),
    })
}

#[test]
fn a_successor_adopts_the_connections_and_swaps_the_program_in_place() {
    let mut bed = Bed::new();
    let ns = bed.add("dir");
    veth(
        &ns,
        "h0",
        "02:00:00:00:20:01",
        "10.205.0.1/24",
        &ns,
        "h1",
        "02:00:00:00:20:02",
        "10.205.0.2/24",
    );
    let fs = BpfFs::mount(bed.prefix()).unwrap();
    let dir = fs.path().join("rvs/test-sock");

    // The first daemon: attaches, pins, forwards four kinds of entries.
    let (first_id, d) = {
        let dir = dir.clone();
        run_in(&ns, move || {
            let ifx = rvs_datapath::ifindex_by_name("h0").unwrap();
            let pins = PinDir::open(&dir).unwrap();
            let inherited = pins.inherit().unwrap();
            assert!(inherited.is_empty(), "a first start inherits nothing");
            let mut dp = XdpDatapath::load_detached(&[ifx], 1000).unwrap();
            dp.attach(XdpModePolicy::Generic, Some((pins, inherited)))
                .unwrap();
            let rs: IpAddr = "10.205.1.11".parse().unwrap();
            for (sport, action) in [
                (40000, forward(Rewrite::Route { server: rs })),
                (
                    40001,
                    forward(Rewrite::MasqIn {
                        addr: rs,
                        port: 8080,
                    }),
                ),
                (40002, FastAction::ToEngine),
            ] {
                dp.apply(&FastPathOp::Upsert {
                    key: key(sport),
                    action,
                })
                .unwrap();
            }
            // The NAT connection's reply direction.
            let reply = FastKey {
                proto: 6,
                saddr: rs,
                sport: 8080,
                daddr: "10.205.0.2".parse().unwrap(),
                dport: 40001,
            };
            dp.apply(&FastPathOp::Upsert {
                key: reply,
                action: forward(Rewrite::MasqOut {
                    addr: "10.205.0.100".parse().unwrap(),
                    port: 80,
                }),
            })
            .unwrap();
            let id = dp.program_id().unwrap();
            dp.keep_for_successor();
            drop(dp);
            (id, ifx)
        })
    };
    let ifx = d;
    assert_eq!(
        attached_program(&bed, &ns, "h0"),
        Some(first_id),
        "kept attached after the process let go"
    );
    let pinned: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    for want in [
        "conn_slots4",
        "conns4",
        "conns6",
        &format!("link-{ifx}-generic"),
    ] {
        assert!(pinned.iter().any(|p| p == want), "{want} in {pinned:?}");
    }

    // The successor: reads the flows, swaps in, re-pins its own maps.
    let second_id = {
        let dir = dir.clone();
        run_in(&ns, move || {
            let pins = PinDir::open(&dir).unwrap();
            let inherited = pins.inherit().unwrap();
            assert_eq!(inherited.interfaces(), vec![ifx]);
            let mut got = inherited.flows().unwrap();
            got.flows.sort_by_key(|f| f.client.port());
            assert_eq!(got.skipped, 2, "the NAT reply and the engine's entry");
            let rs: IpAddr = "10.205.1.11".parse().unwrap();
            let base = Adopted {
                proto: 6,
                client: "10.205.0.2:40000".parse().unwrap(),
                virtual_addr: "10.205.0.100:80".parse().unwrap(),
                server: rs,
                server_port: None,
                method: ForwardMethod::Route,
                local: None,
                idle_secs: 0,
            };
            let idle: Vec<u32> = got.flows.iter().map(|f| f.idle_secs).collect();
            assert!(idle.iter().all(|&s| s <= 1), "{idle:?}");
            for f in &mut got.flows {
                f.idle_secs = 0;
            }
            assert_eq!(
                got.flows,
                vec![
                    base,
                    Adopted {
                        client: "10.205.0.2:40001".parse().unwrap(),
                        server_port: Some(8080),
                        method: ForwardMethod::Masq,
                        ..base
                    }
                ]
            );
            let mut dp = XdpDatapath::load_detached(&[ifx], 1000).unwrap();
            dp.attach(XdpModePolicy::Generic, Some((pins, inherited)))
                .unwrap();
            let id = dp.program_id().unwrap();
            // The pinned maps are this datapath's now: an entry written
            // here is what a third daemon would read.
            dp.apply(&FastPathOp::Upsert {
                key: key(40100),
                action: forward(Rewrite::Route { server: rs }),
            })
            .unwrap();
            let third = PinDir::open(&dir).unwrap().inherit().unwrap();
            let seen = third.flows().unwrap();
            assert_eq!(
                (seen.flows.len(), seen.flows[0].client.port(), seen.skipped),
                (1, 40100, 0)
            );
            drop(third);
            assert_eq!(dp.pin_dir(), Some(dir.as_path()));
            (id, dp)
        })
    };
    let (second, dp) = second_id;
    assert_ne!(second, first_id);
    assert_eq!(
        attached_program(&bed, &ns, "h0"),
        Some(second),
        "the successor's program, in the same link"
    );

    // A stop that is not a handover detaches and unpins everything.
    run_in(&ns, move || drop(dp));
    assert_eq!(attached_program(&bed, &ns, "h0"), None);
    assert!(!dir.exists(), "the pin directory is gone");
}

#[test]
fn an_interface_no_longer_served_is_detached_and_pins_off_bpffs_are_refused() {
    let mut bed = Bed::new();
    let ns = bed.add("dir");
    veth(
        &ns,
        "g0",
        "02:00:00:00:21:01",
        "10.206.0.1/24",
        &ns,
        "g1",
        "02:00:00:00:21:02",
        "10.206.0.2/24",
    );
    let fs = BpfFs::mount(bed.prefix()).unwrap();
    let dir = fs.path().join("two");
    {
        let dir = dir.clone();
        run_in(&ns, move || {
            let a = rvs_datapath::ifindex_by_name("g0").unwrap();
            let b = rvs_datapath::ifindex_by_name("g1").unwrap();
            let pins = PinDir::open(&dir).unwrap();
            let inherited = pins.inherit().unwrap();
            let mut dp = XdpDatapath::load_detached(&[a, b], 1000).unwrap();
            dp.attach(XdpModePolicy::Generic, Some((pins, inherited)))
                .unwrap();
            dp.keep_for_successor();
        });
    }
    assert!(attached_program(&bed, &ns, "g1").is_some());
    let dp = {
        let dir = dir.clone();
        run_in(&ns, move || {
            let a = rvs_datapath::ifindex_by_name("g0").unwrap();
            let pins = PinDir::open(&dir).unwrap();
            let inherited = pins.inherit().unwrap();
            let mut dp = XdpDatapath::load_detached(&[a], 1000).unwrap();
            dp.attach(XdpModePolicy::Generic, Some((pins, inherited)))
                .unwrap();
            dp
        })
    };
    assert!(attached_program(&bed, &ns, "g0").is_some());
    assert_eq!(
        attached_program(&bed, &ns, "g1"),
        None,
        "the previous daemon's interface that this one does not serve"
    );
    run_in(&ns, move || drop(dp));
    assert_eq!(attached_program(&bed, &ns, "g0"), None);

    let e =
        PinDir::open(&std::env::temp_dir().join(format!("{}-nobpf/x", bed.prefix()))).unwrap_err();
    assert!(e.to_string().contains("is not on a BPF file system"), "{e}");
    let e = PinDir::open(&fs.path().join("a.b")).unwrap_err();
    assert!(e.to_string().contains("refuses names with a dot"), "{e}");
}
