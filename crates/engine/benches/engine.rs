//! Engine cost per packet, by criterion, plus a memory table.
//!
//! Run: `cargo bench -p rvs-engine --bench engine`
//! - `established/{dr,nat_in,nat_out,tun}`: lookup + state + rewrite of a
//!   packet on one of 100k established flows, fast path off (with it on,
//!   these packets never reach the engine: this is the slow path's cost);
//! - `new_flow/rr` and `new_flow/rr_fast`: SYN → schedule → insert →
//!   rewrite (table grows to 1M), fast path off / on (on: including the
//!   map ops the SYN emits, drained as the worker does);
//! - `table_1m/{insert,expire}`: per-entry cost when filling to and expiring
//!   1 M connections;
//! - a table of bytes per connection at 1 M and 10 M (reserved, and measured
//!   resident growth).

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rvs_engine::{
    Config, Dest, Engine, ForwardMethod, IfIndex, Interface, NeighborTable, PacketBuf, Protocol,
    Route, Service, ServiceKey, Snapshot, Time, Verdict,
};
use rvs_wire::EthernetAddress;

const FRONT: IfIndex = IfIndex(2);
const BACK: IfIndex = IfIndex(3);
const HEADROOM: usize = 64;

fn mac(n: u8) -> EthernetAddress {
    EthernetAddress([2, 0, 0, 0, 0, n])
}

fn engine(method: ForwardMethod, max: u32, fast_path: bool) -> Engine {
    let port = if method == ForwardMethod::Masq {
        8080
    } else {
        80
    };
    let cfg = Config {
        interfaces: vec![
            Interface {
                index: FRONT,
                name: "front".into(),
                mac: mac(0xf0),
                addrs: vec![("10.0.3.2".parse().unwrap(), 24)],
                mtu: 1500,
            },
            Interface {
                index: BACK,
                name: "back".into(),
                mac: mac(0xb0),
                addrs: vec![("10.0.2.10".parse().unwrap(), 24)],
                mtu: 1500,
            },
        ],
        routes: vec![Route {
            dst: "0.0.0.0".parse().unwrap(),
            prefix_len: 0,
            egress: FRONT,
            gateway: Some("10.0.3.1".parse().unwrap()),
        }],
        services: vec![Service {
            key: ServiceKey {
                protocol: Protocol::Tcp,
                addr: "10.0.100.1".parse().unwrap(),
                port: 80,
                fwmark: 0,
            },
            scheduler: "rr".into(),
            sched_flags: 0,
            persistence: None,
            one_packet: false,
            local_addresses: Vec::new(),
            toa: false,
            dests: (11..14)
                .map(|i| Dest::new(Ipv4Addr::new(10, 0, 2, i).into(), port, method))
                .collect(),
        }],
        max_connections: max,
        fast_path,
        ..Config::default()
    };
    let mut e = Engine::new(Snapshot::new(cfg).unwrap(), [7, 7, 7, 7]);
    let mut neigh: Vec<_> = (11..14)
        .map(|i| (Ipv4Addr::new(10, 0, 2, i).into(), mac(i)))
        .collect();
    neigh.push(("10.0.3.1".parse().unwrap(), mac(1)));
    e.set_neighbors(Arc::new(NeighborTable::new(neigh, 1)));
    e
}

/// A 64-byte-class TCP frame (no payload) from client `n` (address and port
/// derived from n) to the VIP, or its reply from `rs`.
fn frame(n: u32, syn: bool, reply_from: Option<u8>) -> Vec<u8> {
    let client = [10, 1 + (n >> 16) as u8, (n >> 8) as u8, n as u8];
    let cport = 1024 + (n % 60000) as u16;
    let b = match reply_from {
        None => etherparse::PacketBuilder::ethernet2(mac(1).0, mac(0xf0).0)
            .ipv4(client, [10, 0, 100, 1], 64)
            .tcp(cport, 80, 1, 1000),
        Some(rs) => etherparse::PacketBuilder::ethernet2(mac(rs).0, mac(0xb0).0)
            .ipv4([10, 0, 2, rs], client, 64)
            .tcp(8080, cport, 1, 1000),
    };
    let b = if syn { b.syn() } else { b.ack(1) };
    let mut out = Vec::new();
    b.write(&mut out, &[]).unwrap();
    out
}

fn run(e: &mut Engine, now: Time, template: &[u8], buf: &mut [u8], ingress: IfIndex) -> Verdict {
    buf[HEADROOM..HEADROOM + template.len()].copy_from_slice(template);
    let mut pkt = PacketBuf::new(buf, HEADROOM, template.len()).unwrap();
    let v = e.process(now, &mut pkt, ingress);
    drain(e);
    v
}

/// Takes the fast-path ops as the worker would (here: discards them).
fn drain(e: &mut Engine) {
    while let Some(op) = e.poll_fast_path() {
        black_box(op);
    }
}

const FLOWS: u32 = 100_000;

fn established(c: &mut Criterion) {
    let mut g = c.benchmark_group("established");
    g.throughput(Throughput::Elements(1));
    for (name, method, reply) in [
        ("dr", ForwardMethod::Route, false),
        ("nat_in", ForwardMethod::Masq, false),
        ("nat_out", ForwardMethod::Masq, true),
        ("tun", ForwardMethod::Tunnel, false),
    ] {
        let mut e = engine(method, FLOWS * 2, false);
        let now = Time::from_secs(10);
        let mut buf = vec![0u8; 2048];
        for n in 0..FLOWS {
            run(&mut e, now, &frame(n, true, None), &mut buf, FRONT);
            run(&mut e, now, &frame(n, false, None), &mut buf, FRONT);
        }
        // rr over 3 servers: flow n went to server 13 - (n % 3).
        let templates: Vec<Vec<u8>> = (0..1024u32)
            .map(|k| {
                let n = k.wrapping_mul(97) % FLOWS;
                frame(n, false, reply.then(|| 13 - (n % 3) as u8))
            })
            .collect();
        let ingress = if reply { BACK } else { FRONT };
        let mut i = 0usize;
        g.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) & 1023;
                let v = run(&mut e, now, &templates[i], &mut buf, ingress);
                debug_assert!(matches!(v, Verdict::Forward { .. }));
                black_box(v)
            })
        });
    }
    g.finish();
}

fn new_flows(c: &mut Criterion) {
    let mut g = c.benchmark_group("new_flow");
    g.throughput(Throughput::Elements(1));
    const MAX: u32 = 1 << 20;
    let templates: Vec<Vec<u8>> = (0..MAX)
        .step_by(7)
        .take(4096)
        .map(|n| frame(n, true, None))
        .collect();
    for (name, fast_path) in [("rr", false), ("rr_fast", true)] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                let mut buf = vec![0u8; 2048];
                while left > 0 {
                    let chunk = left.min(u64::from(MAX));
                    let mut e = engine(ForwardMethod::Route, MAX, fast_path);
                    let now = Time::from_secs(10);
                    let start = Instant::now();
                    for k in 0..chunk {
                        // Distinct tuples: vary the client address per template round.
                        let t = &templates[(k % 4096) as usize];
                        buf[HEADROOM..HEADROOM + t.len()].copy_from_slice(t);
                        let round = (k / 4096) as u16;
                        buf[HEADROOM + 34..HEADROOM + 36]
                            .copy_from_slice(&(1024 + round).to_be_bytes());
                        let mut pkt = PacketBuf::new(&mut buf, HEADROOM, t.len()).unwrap();
                        black_box(e.process(now, &mut pkt, FRONT));
                        drain(&mut e);
                    }
                    total += start.elapsed();
                    left -= chunk;
                }
                total
            })
        });
    }
    g.finish();
}

fn table_1m(c: &mut Criterion) {
    let mut g = c.benchmark_group("table_1m");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1_000_000));
    let syns: Vec<Vec<u8>> = (0..1_000_000u32).map(|n| frame(n, true, None)).collect();
    g.bench_function("insert", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut buf = vec![0u8; 2048];
            for _ in 0..iters {
                let mut e = engine(ForwardMethod::Route, 1 << 20, false);
                let now = Time::from_secs(10);
                let start = Instant::now();
                for s in &syns {
                    black_box(run(&mut e, now, s, &mut buf, FRONT));
                }
                total += start.elapsed();
                assert_eq!(e.connection_count(), 1_000_000);
            }
            total
        })
    });
    g.bench_function("expire", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut buf = vec![0u8; 2048];
            for _ in 0..iters {
                let mut e = engine(ForwardMethod::Route, 1 << 20, false);
                let now = Time::from_secs(10);
                for s in &syns {
                    run(&mut e, now, s, &mut buf, FRONT);
                }
                let start = Instant::now();
                e.handle_timeout(Time::from_secs(10 + 61));
                total += start.elapsed();
                assert_eq!(e.connection_count(), 0);
            }
            total
        })
    });
    g.finish();
}

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn memory_table(_c: &mut Criterion) {
    println!("\nbytes per tracked connection");
    println!(
        "{:>12} {:>20} {:>26}",
        "connections", "reserved B/conn", "measured RSS growth B/conn"
    );
    for n in [1_000_000u32, 10_000_000] {
        let before = rss_bytes();
        let mut e = engine(ForwardMethod::Masq, n, false);
        let mut buf = vec![0u8; 2048];
        let now = Time::from_secs(10);
        for k in 0..n {
            let t = frame(k, true, None);
            run(&mut e, now, &t, &mut buf, FRONT);
        }
        let grown = rss_bytes().saturating_sub(before);
        assert_eq!(e.connection_count(), n);
        println!(
            "{:>12} {:>20.1} {:>26.1}",
            n,
            e.bytes_per_connection(),
            grown as f64 / f64::from(n)
        );
    }
}

criterion_group!(benches, established, new_flows, table_1m, memory_table);
criterion_main!(benches);
