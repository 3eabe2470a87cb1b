//! IPVS sync datagrams as a master, kernel or not, might send them:
//! `ipvs_sync::decode` on any bytes, then what decodes re-encoded and
//! decoded again (the same entries), and installed in a backup engine
//! with `apply_sync` and expired. Checked: no panic, the round trip, the
//! table within its bound, and FullNAT's local ports held by exactly the
//! connections that list them, before and after expiry.
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use rvs_engine::{
    Config, Dest, Engine, ForwardMethod, IfIndex, Interface, Persistence, Protocol, Route,
    Service, ServiceKey, Snapshot, Time,
};
use rvs_wire::ipvs_sync::{decode, Encoder};
use rvs_wire::EthernetAddress;

const MAX_CONNS: u32 = 64;

/// The FullNAT service's local address.
const LOCAL: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 200);

fn engine() -> Engine {
    let mac = |n| EthernetAddress([2, 0, 0, 0, 0, n]);
    let service = |protocol, port, method, persistence| Service {
        key: ServiceKey {
            protocol,
            addr: Ipv4Addr::new(10, 0, 100, 1).into(),
            port,
            fwmark: 0,
        },
        scheduler: "rr".into(),
        sched_flags: 0,
        persistence,
        one_packet: false,
        local_addresses: Vec::new(),
        toa: false,
        dests: (11..14)
            // A port-0 service's servers keep the packet's port.
            .map(|i| Dest::new(Ipv4Addr::new(10, 0, 2, i).into(), port, method))
            .collect(),
    };
    let mut fullnat = service(Protocol::Tcp, 443, ForwardMethod::FullNat, None);
    fullnat.local_addresses = vec![LOCAL.into()];
    let cfg = Config {
        interfaces: vec![Interface {
            index: IfIndex(2),
            name: "back".into(),
            mac: mac(0xb0),
            addrs: vec![(Ipv4Addr::new(10, 0, 2, 10).into(), 24)],
            mtu: 1500,
        }],
        routes: vec![Route {
            dst: Ipv4Addr::UNSPECIFIED.into(),
            prefix_len: 0,
            egress: IfIndex(2),
            gateway: Some(Ipv4Addr::new(10, 0, 2, 1).into()),
        }],
        services: vec![
            service(Protocol::Tcp, 80, ForwardMethod::Masq, None),
            service(
                Protocol::Udp,
                0,
                ForwardMethod::Route,
                Some(Persistence {
                    timeout: 300,
                    prefix_len: 24,
                }),
            ),
            fullnat,
        ],
        max_connections: MAX_CONNS,
        ..Config::default()
    };
    Engine::new(Snapshot::new(cfg).expect("a valid config"), [1, 2, 3, 4])
}

fuzz_target!(|data: &[u8]| {
    let Ok(d) = decode(data) else { return };
    let mut e = Encoder::new(d.syncid, 1472);
    let mut grams: Vec<Vec<u8>> = d.conns.iter().filter_map(|c| e.push(c)).collect();
    grams.extend(e.flush());
    let back: Vec<_> = grams
        .iter()
        .flat_map(|g| decode(g).expect("our own datagram decodes").conns)
        .collect();
    assert_eq!(back, d.conns, "decode ∘ encode ∘ decode");

    let mut engine = engine();
    let mut now = Time::from_secs(1000);
    let ports_match = |engine: &Engine, now: Time| {
        let held = engine
            .connections(now)
            .iter()
            .filter(|c| c.local.is_some_and(|l| l.0 == LOCAL))
            .count();
        assert_eq!(engine.local_ports_in_use(LOCAL.into()) as usize, held);
    };
    for c in &d.conns {
        let _ = engine.apply_sync(now, c);
        assert!(engine.connection_count() <= MAX_CONNS);
    }
    ports_match(&engine, now);
    while engine.poll_fast_path().is_some() {}
    now = Time::from_secs(1000 + u64::from(u32::MAX));
    engine.handle_timeout(now);
    while engine.poll_fast_path().is_some() {}
    ports_match(&engine, now);
});
