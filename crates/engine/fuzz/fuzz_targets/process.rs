//! Fuzzes `Engine::process` with arbitrary frame sequences and a config
//! chosen by the fuzzer (method, scheduler, weights, table size), checking
//! that it never panics and that every frame is counted exactly once.
#![no_main]

use std::net::Ipv4Addr;
use std::sync::Arc;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use rvs_engine::{
    Config, Dest, Engine, ForwardMethod, IfIndex, Interface, NeighborTable, PacketBuf, Protocol,
    Route, Service, ServiceKey, Snapshot, Time,
};
use rvs_wire::EthernetAddress;

#[derive(Arbitrary, Debug)]
struct Input {
    method: u8,
    wrr: bool,
    udp: bool,
    weights: [u8; 3],
    max_conns: u8,
    frames: Vec<(bool, u8, Vec<u8>)>,
}

fuzz_target!(|input: Input| {
    let method = match input.method % 3 {
        0 => ForwardMethod::Route,
        1 => ForwardMethod::Masq,
        _ => ForwardMethod::Tunnel,
    };
    let port = if method == ForwardMethod::Masq { 8080 } else { 80 };
    let mac = |n: u8| EthernetAddress([2, 0, 0, 0, 0, n]);
    let cfg = Config {
        interfaces: vec![
            Interface { index: IfIndex(2), name: "front".into(), mac: mac(0xf0), addrs: vec![(Ipv4Addr::new(10, 0, 3, 2).into(), 24)], mtu: 1500 },
            Interface { index: IfIndex(3), name: "back".into(), mac: mac(0xb0), addrs: vec![(Ipv4Addr::new(10, 0, 2, 10).into(), 24)], mtu: 1500 },
        ],
        routes: vec![Route { dst: Ipv4Addr::UNSPECIFIED.into(), prefix_len: 0, egress: IfIndex(2), gateway: Some(Ipv4Addr::new(10, 0, 3, 1).into()) }],
        services: vec![Service {
            key: ServiceKey { protocol: if input.udp { Protocol::Udp } else { Protocol::Tcp }, addr: Ipv4Addr::new(10, 0, 100, 1).into(), port: 80, fwmark: 0 },
            scheduler: if input.wrr { "wrr" } else { "rr" }.into(),
            sched_flags: 0,
            persistence: None,
            one_packet: false,
            dests: input.weights.iter().enumerate().map(|(i, &w)| Dest::new(Ipv4Addr::new(10, 0, 2, 11 + i as u8).into(), port, method).weight(u32::from(w % 4))).collect(),
        }],
        max_connections: u32::from(input.max_conns % 16) + 1,
        ..Config::default()
    };
    let Ok(snap) = Snapshot::new(cfg) else { return };
    let mut e = Engine::new(snap, [1, 2, 3, 4]);
    e.set_neighbors(Arc::new(NeighborTable::new(
        (11..14).map(|i| (Ipv4Addr::new(10, 0, 2, i).into(), mac(i))).chain([(Ipv4Addr::new(10, 0, 3, 1).into(), mac(1))]),
        1,
    )));
    let mut now = 1_000u64;
    let mut buf = vec![0u8; 4096];
    for (back, tick, frame) in input.frames.iter().take(64) {
        now += u64::from(*tick);
        let len = frame.len().min(buf.len() - 128);
        buf[128..128 + len].copy_from_slice(&frame[..len]);
        let Some(mut pkt) = PacketBuf::new(&mut buf, 128, len) else { return };
        let _ = e.process(Time::from_secs(now), &mut pkt, IfIndex(if *back { 3 } else { 2 }));
        e.handle_timeout(Time::from_secs(now));
    }
    let c = e.counters();
    assert_eq!(c.rx_packets, c.forwarded + c.replies + c.unresolved + c.passed + c.total_drops());
});
