//! Adopting connections a previous rvsd left in the XDP maps: each adopted
//! flow is tracked on the server its entry names, established, counted,
//! expired and persisted like a scheduled one, and put back in the maps;
//! what cannot be placed is refused with its reason and changes nothing.

mod common;

use std::net::SocketAddr;

use common::*;
use rvs_engine::{
    AdoptError, Adopted, FastAction, FastKey, ForwardMethod, Persistence, Protocol, Rewrite,
};

fn sock(a: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip(a), port)
}

/// A flow from the lab's client to VIP:80 on real server `rs`.
fn flow(port: u16, rs: usize, method: ForwardMethod) -> Adopted {
    Adopted {
        proto: 6,
        client: sock(CLIENT, port),
        virtual_addr: sock(VIP, 80),
        server: ip(RS[rs]),
        server_port: (method == ForwardMethod::Masq).then_some(8080),
        method,
        local: None,
        idle_secs: 0,
    }
}

fn server_counts(d: &Director, rs: usize) -> (u32, u32, u32, u64) {
    let svc = &d.engine.status()[0];
    let s = svc
        .dests
        .iter()
        .find(|s| s.addr == ip(RS[rs]))
        .expect("server listed");
    (s.active, s.inactive, s.persistent, s.stats.conns)
}

#[test]
fn an_adopted_dr_flow_stays_on_its_server_established_and_forwarding() {
    let mut d = Director::new(config(
        Protocol::Tcp,
        "rr",
        ForwardMethod::Route,
        &[1, 1, 1],
    ));
    // Server 2, where rr would have picked server 1 first.
    d.engine
        .adopt(d.now, &flow(40000, 1, ForwardMethod::Route))
        .unwrap();
    d.drain();
    match d.maps.entries.get(&client_key(40000)) {
        Some(FastAction::Forward(f)) => assert_eq!(f.rewrite, Rewrite::Route { server: ip(RS[1]) }),
        other => panic!("expected a forwarding entry, found {other:?}"),
    }
    let conns = d.engine.connections(d.now);
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0].state, "ESTABLISHED");
    assert_eq!(conns[0].dest, (ip(RS[1]), 80));
    assert_eq!(
        server_counts(&d, 1),
        (1, 0, 0, 0),
        "active on its server, not counted as scheduled"
    );
    assert_eq!(d.engine.counters().conns_adopted, 1);
    assert_eq!(d.engine.counters().conns_created, 0);

    // A frame the engine still sees (a FIN) goes to the same server, and
    // the state machine goes on from ESTABLISHED.
    let (v, out) = d.run(&from_client(40000, FINACK, b""), FRONT);
    assert!(matches!(v, rvs_engine::Verdict::Forward { .. }), "{v:?}");
    assert_eq!(server_of(check(&out).dst_mac), 2);
    assert_eq!(d.engine.connections(d.now)[0].state, "FIN_WAIT");
    assert_eq!(server_counts(&d, 1), (0, 1, 0, 0));
}

#[test]
fn an_adopted_nat_flow_gets_both_entries_and_its_replies_are_translated() {
    let mut d = Director::new(config(Protocol::Tcp, "rr", ForwardMethod::Masq, &[1, 1]));
    d.engine
        .adopt(d.now, &flow(40001, 1, ForwardMethod::Masq))
        .unwrap();
    d.drain();
    let out_key = FastKey {
        proto: 6,
        saddr: ip(RS[1]),
        sport: 8080,
        daddr: ip(CLIENT),
        dport: 40001,
    };
    assert!(matches!(
        d.maps.entries.get(&client_key(40001)),
        Some(FastAction::Forward(_))
    ));
    assert!(
        matches!(d.maps.entries.get(&out_key), Some(FastAction::Forward(_))),
        "the reply direction is back in the maps: {:?}",
        d.maps.entries
    );
    let reply = tcp_frame(12, BACK_MAC, (RS[1], 8080), (CLIENT, 40001), ACK, b"x");
    let (_, out) = d.run(&reply, BACK);
    let seen = check(&out);
    assert_eq!(
        (seen.src, seen.ports),
        (ip(VIP), Some((80, 40001))),
        "translated back to the VIP"
    );
}

#[test]
fn adopted_flows_rebuild_the_persistence_template_new_connections_follow() {
    let mut cfg = config(Protocol::Tcp, "rr", ForwardMethod::Route, &[1, 1, 1]);
    cfg.services[0].persistence = Some(Persistence {
        timeout: 300,
        prefix_len: 32,
    });
    let mut d = Director::new(cfg);
    for port in [40010, 40011] {
        d.engine
            .adopt(d.now, &flow(port, 2, ForwardMethod::Route))
            .unwrap();
    }
    d.drain();
    let conns = d.engine.connections(d.now);
    assert_eq!(
        conns.iter().filter(|c| c.template).count(),
        1,
        "one template for the client: {conns:?}"
    );
    assert_eq!(server_counts(&d, 2), (2, 0, 1, 0));
    // The client's next connection goes where its template points.
    let (_, out) = d.run(&from_client(40012, SYN, b""), FRONT);
    assert_eq!(server_of(check(&out).dst_mac), 3);
}

#[test]
fn adopted_flows_expire_after_their_timeout_less_the_idle_time() {
    let mut d = Director::new(config(Protocol::Udp, "rr", ForwardMethod::Route, &[1]));
    let udp = Adopted {
        proto: 17,
        virtual_addr: sock(VIP, 80),
        idle_secs: 200,
        ..flow(5353, 0, ForwardMethod::Route)
    };
    d.engine.adopt(d.now, &udp).unwrap();
    d.drain();
    // UDP's default timeout is 300 s: 100 s are left. Nothing forwards it
    // in the model maps, so expiry goes ahead once the grace passes.
    let left = d.engine.connections(d.now)[0].expires_in_secs;
    assert!((99..=100).contains(&left), "{left} s left");
    d.advance(90);
    assert_eq!(d.engine.connection_count(), 1);
    d.advance(15);
    assert_eq!(d.engine.connection_count(), 0);
    assert_eq!(d.engine.counters().conns_expired, 1);
    assert!(d.maps.entries.is_empty(), "its entry left the maps too");
}

#[test]
fn what_cannot_be_placed_is_refused_with_its_reason_and_changes_nothing() {
    let mut cfg = config(Protocol::Tcp, "rr", ForwardMethod::Masq, &[1, 1]);
    cfg.max_connections = 2;
    let mut d = Director::new(cfg);
    let ok = flow(40020, 0, ForwardMethod::Masq);
    let cases = [
        (
            Adopted {
                virtual_addr: sock("10.0.100.9", 80),
                ..ok
            },
            AdoptError::NoService,
        ),
        (
            Adopted {
                server: ip("10.0.2.99"),
                ..ok
            },
            AdoptError::NoServer,
        ),
        (
            Adopted {
                method: ForwardMethod::Route,
                server_port: None,
                ..ok
            },
            AdoptError::NoServer,
        ),
        (
            Adopted {
                server_port: Some(8081),
                ..ok
            },
            AdoptError::NoServer,
        ),
        (
            Adopted {
                idle_secs: 900,
                ..ok
            },
            AdoptError::Expired,
        ),
        (
            Adopted {
                server: "fd00::1".parse().unwrap(),
                ..ok
            },
            AdoptError::Malformed,
        ),
        (Adopted { proto: 1, ..ok }, AdoptError::Malformed),
    ];
    for (a, want) in cases {
        assert_eq!(d.engine.adopt(d.now, &a), Err(want), "{a:?}");
    }
    d.drain();
    assert_eq!(d.engine.connection_count(), 0);
    assert!(d.maps.entries.is_empty());

    d.engine.adopt(d.now, &ok).unwrap();
    assert_eq!(d.engine.adopt(d.now, &ok), Err(AdoptError::Exists));
    d.engine
        .adopt(d.now, &flow(40021, 1, ForwardMethod::Masq))
        .unwrap();
    assert_eq!(
        d.engine.adopt(d.now, &flow(40022, 1, ForwardMethod::Masq)),
        Err(AdoptError::TableFull)
    );
    assert_eq!(d.engine.counters().conns_adopted, 2);
    assert_eq!(server_counts(&d, 0), (1, 0, 0, 0));
    assert_eq!(server_counts(&d, 1), (1, 0, 0, 0));
}

/// A FullNAT flow keeps its local end: the successor holds that port on
/// that local address, lists it and forwards from it; a local address no
/// service lists, or a port held already, is refused.
#[test]
fn an_adopted_fullnat_flow_keeps_its_local_end() {
    let mut d = Director::new(config(Protocol::Tcp, "rr", ForwardMethod::FullNat, &[1]));
    let fullnat = |port: u16, local: SocketAddr| Adopted {
        server_port: Some(8080),
        local: Some(local),
        ..flow(port, 0, ForwardMethod::FullNat)
    };
    let local = sock(LADDR, 31000);
    d.engine.adopt(d.now, &fullnat(40000, local)).unwrap();
    d.drain();
    let conns = d.engine.connections(d.now);
    assert_eq!(conns[0].local, Some((local.ip(), local.port())));
    assert_eq!(d.engine.local_ports_in_use(local.ip()), 1);
    match d.maps.entries.get(&client_key(40000)) {
        Some(FastAction::Forward(f)) => assert!(
            matches!(f.rewrite, Rewrite::FullNatIn { src, src_port, .. } if src == local.ip() && src_port == 31000),
            "{f:?}"
        ),
        other => panic!("expected a forwarding entry, found {other:?}"),
    }
    assert_eq!(
        d.engine.adopt(d.now, &fullnat(40001, local)),
        Err(AdoptError::LocalPort)
    );
    assert_eq!(
        d.engine
            .adopt(d.now, &fullnat(40002, sock("10.0.2.99", 31000))),
        Err(AdoptError::LocalPort)
    );
    let without = Adopted {
        local: None,
        ..fullnat(40003, local)
    };
    assert_eq!(d.engine.adopt(d.now, &without), Err(AdoptError::Malformed));
    assert_eq!(d.engine.local_ports_in_use(local.ip()), 1, "nothing leaked");
}

/// An SCTP association the old program forwarded comes back ESTABLISHED
/// on its server, active there, its DATA-class packets in the fast path.
#[test]
fn an_adopted_sctp_association_is_established_and_forwarding() {
    let mut d = Director::new(config(Protocol::Sctp, "rr", ForwardMethod::Route, &[1, 1]));
    let sctp = Adopted {
        proto: 132,
        ..flow(40000, 1, ForwardMethod::Route)
    };
    d.engine.adopt(d.now, &sctp).unwrap();
    d.drain();
    let conns = d.engine.connections(d.now);
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0].state, "ESTABLISHED");
    assert_eq!(conns[0].dest.0, ip(RS[1]));
    assert_eq!(server_counts(&d, 1).0, 1, "active on its server");
    let key = FastKey {
        proto: 132,
        saddr: ip(CLIENT),
        sport: 40000,
        daddr: ip(VIP),
        dport: 80,
    };
    match d.maps.entries.get(&key) {
        Some(FastAction::Forward(f)) => {
            assert_eq!(f.segments, rvs_engine::TcpSegments::SCTP_DATA)
        }
        other => panic!("expected a forwarding entry, found {other:?}"),
    }
}
