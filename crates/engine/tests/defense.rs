//! SYN-flood defence: eviction of half-open connections when the table is
//! full, and IPVS's drop_entry, drop_packet and secure_tcp strategies.

mod common;

use std::collections::BTreeSet;

use common::*;
use proptest::prelude::*;
use rvs_engine::{Config, Defense, DropReason, ForwardMethod, Persistence, Protocol, Verdict};

/// A NAT service of three servers with a table of `max` entries.
fn nat(max: u32, defense: Defense) -> Config {
    Config {
        max_connections: max,
        defense,
        ..config(Protocol::Tcp, "rr", ForwardMethod::Masq, &[1, 1, 1])
    }
}

fn syn_from(client: &str, port: u16) -> Vec<u8> {
    tcp_frame(ROUTER_MAC, FRONT_MAC, (client, port), (VIP, 80), SYN, b"")
}

fn forwarded(v: Verdict) -> bool {
    matches!(v, Verdict::Forward { .. })
}

/// Opens a connection from CLIENT:`port` and completes it with the
/// client's ACK (ESTABLISHED in the normal table).
fn establish(d: &mut Director, port: u16) {
    assert!(forwarded(d.run(&from_client(port, SYN, b""), FRONT).0));
    assert!(forwarded(d.run(&from_client(port, ACK, b""), FRONT).0));
}

/// (client port, state) of every connection (not templates).
fn states(d: &Director) -> BTreeSet<(u16, &'static str)> {
    d.engine
        .connections(d.now)
        .into_iter()
        .filter(|c| !c.template)
        .map(|c| (c.client.1, c.state))
        .collect()
}

/// (active, inactive) summed over the servers.
fn dest_counts(d: &Director) -> (u32, u32) {
    d.engine.status()[0]
        .dests
        .iter()
        .fold((0, 0), |(a, i), s| (a + s.active, i + s.inactive))
}

fn assert_accounted(d: &Director) {
    let c = d.engine.counters();
    assert_eq!(c.rx_packets, c.accounted(), "every frame in one counter");
}

#[test]
fn a_full_table_evicts_the_oldest_half_open_and_never_an_established() {
    let mut d = Director::new(nat(4, Defense::default()));
    establish(&mut d, 1001);
    establish(&mut d, 1002);
    assert!(forwarded(d.run(&from_client(2001, SYN, b""), FRONT).0));
    d.advance(1);
    assert!(forwarded(d.run(&from_client(2002, SYN, b""), FRONT).0));
    assert!(d.maps.entries.contains_key(&client_key(2001)));
    // Full: the new SYN evicts 2001, the older half-open one.
    assert!(forwarded(d.run(&from_client(3000, SYN, b""), FRONT).0));
    let s = states(&d);
    assert!(!s.iter().any(|(p, _)| *p == 2001), "{s:?}");
    assert!(s.contains(&(1001, "ESTABLISHED")) && s.contains(&(1002, "ESTABLISHED")));
    assert_eq!(d.engine.counters().conns_evicted, 1);
    // Forgotten properly: out of the fast path's map, uncounted on its server.
    assert!(!d.maps.entries.contains_key(&client_key(2001)));
    assert_eq!(dest_counts(&d), (2, 2));
    // Twice more: the half-open ones go in age order, established stay.
    assert!(forwarded(d.run(&from_client(3001, SYN, b""), FRONT).0));
    assert!(forwarded(d.run(&from_client(3002, SYN, b""), FRONT).0));
    let s = states(&d);
    assert_eq!(
        s.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
        vec![1001, 1002, 3001, 3002]
    );
    assert_eq!(d.engine.counters().conns_evicted, 3);
    assert_eq!(d.engine.connection_count(), 4);
    assert_eq!(dest_counts(&d), (2, 2));
    assert_eq!(d.engine.counters().dropped(DropReason::ConnTableFull), 0);
    assert_accounted(&d);
}

#[test]
fn a_busy_second_of_finished_handshakes_does_not_hide_the_half_open() {
    // 80 connections established in the same second as 20 half-open ones
    // are queued first; eviction looks at 64 entries from the wheel's
    // start, which must still find a half-open one.
    let mut d = Director::new(nat(100, Defense::default()));
    for port in 0..80 {
        establish(&mut d, 1000 + port);
    }
    for port in 0..20 {
        assert!(forwarded(
            d.run(&from_client(3000 + port, SYN, b""), FRONT).0
        ));
    }
    assert!(forwarded(d.run(&from_client(5000, SYN, b""), FRONT).0));
    let c = d.engine.counters();
    assert_eq!(
        (c.conns_evicted, c.dropped(DropReason::ConnTableFull)),
        (1, 0)
    );
    assert!(
        !states(&d).iter().any(|(p, _)| *p == 3000),
        "the oldest half-open went"
    );
}

#[test]
fn a_table_full_of_established_refuses_new_ones_counted_once() {
    let mut d = Director::new(nat(3, Defense::default()));
    for port in [1001, 1002, 1003] {
        establish(&mut d, port);
    }
    let (v, _) = d.run(&from_client(4000, SYN, b""), FRONT);
    assert_eq!(v, Verdict::Drop(DropReason::ConnTableFull));
    let c = d.engine.counters();
    assert_eq!(c.dropped(DropReason::ConnTableFull), 1);
    assert_eq!(c.total_drops(), 1);
    assert_eq!(c.conns_evicted, 0);
    assert_eq!(
        states(&d),
        [1001, 1002, 1003]
            .into_iter()
            .map(|p| (p, "ESTABLISHED"))
            .collect()
    );
    assert_accounted(&d);
}

#[test]
fn templates_are_never_evicted() {
    let mut cfg = nat(3, Defense::default());
    cfg.services[0].persistence = Some(Persistence {
        timeout: 300,
        prefix_len: 32,
    });
    let mut d = Director::new(cfg);
    // Client A: a template and a half-open connection.
    assert!(forwarded(d.run(&syn_from("10.0.1.2", 1000), FRONT).0));
    assert_eq!(d.engine.connection_count(), 2);
    // Client B needs a template and a connection; one entry is free.
    assert!(forwarded(d.run(&syn_from("10.0.1.3", 1000), FRONT).0));
    let conns = d.engine.connections(d.now);
    let templates: Vec<_> = conns.iter().filter(|c| c.template).collect();
    assert_eq!(templates.len(), 2, "{conns:?}");
    assert_eq!(conns.iter().filter(|c| !c.template).count(), 1);
    assert_eq!(d.engine.counters().conns_evicted, 1);
    // Now only templates and B's half-open connection: C's template
    // evicts B's connection, C's own connection finds nothing to evict.
    let (v, _) = d.run(&syn_from("10.0.1.4", 1000), FRONT);
    assert_eq!(v, Verdict::Drop(DropReason::ConnTableFull));
    assert_eq!(
        d.engine
            .connections(d.now)
            .iter()
            .filter(|c| c.template)
            .count(),
        3
    );
    assert_accounted(&d);
}

#[test]
fn drop_packet_always_drops_one_in_am_droprate() {
    let defense = Defense {
        drop_packet: 3,
        am_droprate: 4,
        ..Defense::default()
    };
    let mut d = Director::new(nat(1000, defense));
    let verdicts: Vec<bool> = (0..8)
        .map(|i| forwarded(d.run(&from_client(2000 + i, SYN, b""), FRONT).0))
        .collect();
    assert_eq!(
        verdicts,
        [false, true, true, true, false, true, true, true],
        "the kernel's countdown: the first, then every fourth"
    );
    let c = d.engine.counters();
    assert_eq!(c.dropped(DropReason::DefenseDropPacket), 2);
    assert_eq!(d.engine.defense().drop_rate, 4);
    // Packets of existing connections are never dropped by it.
    for _ in 0..8 {
        assert!(forwarded(d.run(&from_client(2001, ACK, b"x"), FRONT).0));
    }
    assert_accounted(&d);
}

#[test]
fn drop_packet_automatic_follows_free_entries() {
    let defense = Defense {
        drop_packet: 1,
        amemthresh: 8,
        ..Defense::default()
    };
    let mut d = Director::new(nat(16, defense));
    for port in 0..12 {
        assert!(forwarded(
            d.run(&from_client(3000 + port, SYN, b""), FRONT).0
        ));
    }
    assert_eq!(d.engine.defense().drop_rate, 0, "evaluated once a second");
    d.advance(1);
    let st = d.engine.defense();
    assert!(st.low_memory);
    assert_eq!(st.free_entries, 4);
    assert_eq!(
        st.settings.drop_packet, 2,
        "automatic mode reads 2 while active"
    );
    assert_eq!(st.drop_rate, 2, "amemthresh / (amemthresh - free) = 8 / 4");
    let v: Vec<bool> = (0..4)
        .map(|i| forwarded(d.run(&from_client(4000 + i, SYN, b""), FRONT).0))
        .collect();
    assert_eq!(v, [true, false, true, false]);
    // Everything expires: back to mode 1, nothing dropped. (The NAT reply
    // entries forward the servers' SYN+ACKs, so expiry first asks the XDP
    // program for activity; the defence sees the freed entries on its
    // next evaluation, a second later.)
    d.advance(200);
    d.advance(1);
    let st = d.engine.defense();
    assert_eq!(d.engine.connection_count(), 0);
    assert!(!st.low_memory);
    assert_eq!((st.settings.drop_packet, st.drop_rate), (1, 0));
    assert!(forwarded(d.run(&from_client(5000, SYN, b""), FRONT).0));
    assert_eq!(
        d.engine.counters().dropped(DropReason::DefenseDropPacket),
        2
    );
    assert_accounted(&d);
}

/// 320 half-open and 10 established connections, then 20 seconds of the
/// strategy: (dropped entries, established left, connections left).
fn drop_entry_run(defense: Defense) -> (u64, usize, u32) {
    let mut d = Director::new(nat(640, defense));
    for port in 0..10 {
        establish(&mut d, 1000 + port);
    }
    for port in 0..320 {
        assert!(forwarded(
            d.run(&from_client(20000 + port, SYN, b""), FRONT).0
        ));
    }
    for _ in 0..20 {
        d.advance(1);
    }
    let established = states(&d)
        .iter()
        .filter(|(_, s)| *s == "ESTABLISHED")
        .count();
    assert_accounted(&d);
    // Every removal was forgotten on its server.
    let (active, inactive) = dest_counts(&d);
    assert_eq!(active + inactive, d.engine.connection_count());
    (
        d.engine.counters().defense_entries_dropped,
        established,
        d.engine.connection_count(),
    )
}

#[test]
fn drop_entry_removes_half_open_entries_only_when_active() {
    let (dropped, established, left) = drop_entry_run(Defense {
        drop_entry: 3,
        ..Defense::default()
    });
    assert!(dropped > 0, "mode 3 drops");
    assert_eq!(established, 10, "never an established connection");
    assert_eq!(u64::from(left), 330 - dropped);

    let (dropped, _, left) = drop_entry_run(Defense::default());
    assert_eq!((dropped, left), (0, 330), "mode 0 never drops");

    // Automatic: 310 free of 640 is above a threshold of 100 (inactive)…
    let (dropped, _, _) = drop_entry_run(Defense {
        drop_entry: 1,
        amemthresh: 100,
        ..Defense::default()
    });
    assert_eq!(dropped, 0);
    // …and below one of 400 (active).
    let (dropped, established, _) = drop_entry_run(Defense {
        drop_entry: 1,
        amemthresh: 400,
        ..Defense::default()
    });
    assert!(dropped > 0);
    assert_eq!(established, 10);
}

#[test]
fn drop_entry_automatic_mode_reads_two_while_active() {
    let defense = Defense {
        drop_entry: 1,
        amemthresh: 4,
        ..Defense::default()
    };
    let mut d = Director::new(nat(8, defense));
    assert_eq!(d.engine.defense().settings.drop_entry, 1);
    for port in 0..6 {
        establish(&mut d, 1000 + port);
    }
    d.advance(1);
    let st = d.engine.defense();
    assert!(st.drop_entry_active && st.low_memory);
    assert_eq!(st.settings.drop_entry, 2);
    // Established connections are not its targets.
    assert_eq!(d.engine.counters().defense_entries_dropped, 0);
    assert_eq!(d.engine.connection_count(), 6);
}

#[test]
fn secure_tcp_establishes_nat_only_after_both_sides() {
    let server_of = |d: &Director, port: u16| {
        let c = d.engine.connections(d.now);
        let c = c.iter().find(|c| c.client.1 == port).expect("tracked");
        c.dest.0.to_string()
    };
    let server_syn_ack = |d: &mut Director, port: u16| {
        let rs = server_of(d, port);
        let f = tcp_frame(13, BACK_MAC, (&rs, 8080), (CLIENT, port), SYNACK, b"");
        d.run(&f, BACK).0
    };
    let state = |d: &Director, port: u16| {
        states(d)
            .into_iter()
            .find(|(p, _)| *p == port)
            .map(|(_, s)| s)
    };
    // Off: the client's ACK alone establishes.
    let mut d = Director::new(nat(100, Defense::default()));
    establish(&mut d, 1000);
    assert_eq!(state(&d, 1000), Some("ESTABLISHED"));
    assert!(!d.engine.defense().secure_tcp_active);

    // Always on.
    let mut d = Director::new(nat(
        100,
        Defense {
            secure_tcp: 3,
            ..Defense::default()
        },
    ));
    assert!(d.engine.defense().secure_tcp_active);
    establish(&mut d, 1000);
    assert_eq!(state(&d, 1000), Some("SYN_RECV"));
    assert!(forwarded(server_syn_ack(&mut d, 1000)));
    assert_eq!(state(&d, 1000), Some("SYNACK"));
    let rs = server_of(&d, 1000);
    let ack = tcp_frame(13, BACK_MAC, (&rs, 8080), (CLIENT, 1000), ACK, b"hi");
    assert!(forwarded(d.run(&ack, BACK).0));
    assert_eq!(state(&d, 1000), Some("ESTABLISHED"));

    // Automatic, with a threshold above the table's size: active at once,
    // mode read as 2.
    let d = Director::new(nat(
        100,
        Defense {
            secure_tcp: 1,
            amemthresh: 1000,
            ..Defense::default()
        },
    ));
    let st = d.engine.defense();
    assert!(st.secure_tcp_active);
    assert_eq!(st.settings.secure_tcp, 2);
}

#[test]
fn a_client_that_acknowledged_is_not_evicted_in_secure_mode() {
    // secure_tcp keeps a NAT connection in SYN_RECV/SYNACK until the server
    // answers; its client's ACK shows it is no spoofed source.
    let secure = Defense {
        secure_tcp: 3,
        ..Defense::default()
    };
    let mut d = Director::new(nat(2, secure));
    establish(&mut d, 1000);
    assert!(forwarded(d.run(&from_client(2000, SYN, b""), FRONT).0));
    d.advance(1);
    assert!(forwarded(d.run(&from_client(3000, SYN, b""), FRONT).0));
    assert_eq!(
        states(&d),
        [(1000, "SYN_RECV"), (3000, "SYN_RECV")]
            .into_iter()
            .collect()
    );
    // The newer 3000 is evicted, being the only one without an ACK.
    assert!(forwarded(d.run(&from_client(4000, SYN, b""), FRONT).0));
    assert_eq!(
        states(&d),
        [(1000, "SYN_RECV"), (4000, "SYN_RECV")]
            .into_iter()
            .collect()
    );
    assert_eq!(d.engine.counters().conns_evicted, 2);
    // drop_entry takes 4000 and spares 1000.
    d.reconfigure(nat(
        2,
        Defense {
            drop_entry: 3,
            ..secure
        },
    ));
    for _ in 0..30 {
        d.advance(1);
    }
    assert_eq!(states(&d), [(1000, "SYN_RECV")].into_iter().collect());
    assert_eq!(d.engine.counters().defense_entries_dropped, 1);
}

#[test]
fn a_changed_setting_applies_at_once() {
    let mut d = Director::new(nat(100, Defense::default()));
    assert!(!d.engine.defense().secure_tcp_active);
    d.reconfigure(nat(
        100,
        Defense {
            secure_tcp: 3,
            ..Defense::default()
        },
    ));
    assert!(d.engine.defense().secure_tcp_active);
    d.reconfigure(nat(100, Defense::default()));
    assert!(!d.engine.defense().secure_tcp_active);
}

#[derive(Clone, Debug)]
enum Op {
    /// A SYN from a new client port.
    Syn(u16),
    /// The client's ACK on the n-th port opened so far (if any).
    Ack(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any::<u16>().prop_map(|p| Op::Syn(p | 1024)),
        1 => any::<usize>().prop_map(Op::Ack),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever the mix of SYNs and completed handshakes on a small table:
    /// an established connection stays, the table never exceeds its size,
    /// every connection created is either still there or was evicted, and
    /// every frame is counted once.
    #[test]
    fn established_connections_survive_any_flood(
        max in 1u32..12,
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let mut d = Director::new(nat(max, Defense::default()));
        let mut opened: Vec<u16> = Vec::new();
        let mut established: BTreeSet<u16> = BTreeSet::new();
        for op in ops {
            match op {
                Op::Syn(port) => {
                    if opened.contains(&port) {
                        continue;
                    }
                    let (v, _) = d.run(&from_client(port, SYN, b""), FRONT);
                    if forwarded(v) {
                        opened.push(port);
                    } else {
                        prop_assert_eq!(v, Verdict::Drop(DropReason::ConnTableFull));
                        prop_assert_eq!(established.len() as u32, max);
                    }
                }
                Op::Ack(n) => {
                    if opened.is_empty() {
                        continue;
                    }
                    let port = opened[n % opened.len()];
                    let (v, _) = d.run(&from_client(port, ACK, b""), FRONT);
                    let live = states(&d).iter().any(|(p, s)| *p == port && *s == "ESTABLISHED");
                    if forwarded(v) && live {
                        established.insert(port);
                    }
                }
            }
            let now: BTreeSet<u16> = states(&d)
                .into_iter()
                .filter(|(_, s)| *s == "ESTABLISHED")
                .map(|(p, _)| p)
                .collect();
            prop_assert!(established.is_subset(&now), "{:?} lost from {:?}", established, now);
            prop_assert!(d.engine.connection_count() <= max);
            let c = d.engine.counters();
            prop_assert_eq!(c.conns_created - c.conns_evicted, u64::from(d.engine.connection_count()));
            prop_assert_eq!(c.rx_packets, c.accounted());
        }
    }
}
