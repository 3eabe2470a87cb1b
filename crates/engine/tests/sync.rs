//! Connection sync between two engines, as IPVS's master and backup sync
//! daemons have it: the master emits a connection when it enters a state
//! IPVS sends (and UDP when it starts), the backup installs it in that
//! state on the same real server, counts it there and forwards its next
//! packet there; the entries go through the kernel's datagram format on
//! the way.

mod common;

use common::*;
use rvs_engine::{
    Config, FastAction, FastKey, ForwardMethod, Persistence, Protocol, SyncRefused, Verdict,
};
use rvs_vocab::sync::SyncThreshold;
use rvs_wire::ipvs_sync::{decode, flags, Encoder, SyncConn};

fn master(cfg: Config) -> Director {
    let mut d = Director::new(cfg);
    d.engine.set_sync_master(Some(SyncThreshold::DEFAULT));
    d
}

fn sent(d: &mut Director) -> Vec<SyncConn> {
    std::iter::from_fn(|| d.engine.poll_sync()).collect()
}

/// Through the kernel's datagram format and back.
fn over_the_wire(conns: &[SyncConn]) -> Vec<SyncConn> {
    let mut e = Encoder::new(7, 1472);
    let mut grams: Vec<Vec<u8>> = conns.iter().filter_map(|c| e.push(c)).collect();
    grams.extend(e.flush());
    grams
        .iter()
        .flat_map(|g| decode(g).expect("our datagram decodes").conns)
        .collect()
}

/// (template, protocol, client, server, state) of a listed connection.
type Row = (bool, String, (String, u16), (String, u16), &'static str);

fn listing(d: &Director) -> Vec<Row> {
    let mut v: Vec<_> = d
        .engine
        .connections(d.now)
        .into_iter()
        .map(|c| {
            (
                c.template,
                format!("{}", c.protocol),
                (c.client.0.to_string(), c.client.1),
                (c.dest.0.to_string(), c.dest.1),
                c.state,
            )
        })
        .collect();
    v.sort();
    v
}

/// Sends `n` more segments of the client's connection on port 40000 (its
/// 1-based packet numbers `from..from + n`) and returns the numbers of
/// those after which the master sent something, with what it sent.
fn packets_sent(d: &mut Director, from: u32, n: u32) -> Vec<(u32, Vec<SyncConn>)> {
    (from..from + n)
        .filter_map(|i| {
            d.run(&from_client(40000, ACK, b"more"), FRONT);
            let s = sent(d);
            (!s.is_empty()).then_some((i, s))
        })
        .collect()
}

/// The numbers alone of [`packets_sent`].
fn packets_sent_at(d: &mut Director, from: u32, n: u32) -> Vec<u32> {
    packets_sent(d, from, n).iter().map(|(i, _)| *i).collect()
}

#[test]
fn a_tcp_connection_is_sent_on_the_states_ipvs_sends() {
    let mut m = master(config(Protocol::Tcp, "rr", ForwardMethod::Route, &[1]));
    m.run(&from_client(40000, SYN, b""), FRONT);
    assert!(sent(&mut m).is_empty(), "SYN_RECV is not sent");
    // ESTABLISHED on packet 2: the XDP program takes the connection over
    // here, so it is sent now rather than on the 3rd packet, which the
    // engine may never see.
    m.run(&from_client(40000, ACK, b""), FRONT);
    let s = sent(&mut m);
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(
        s[0],
        SyncConn {
            protocol: 6,
            flags: flags::DROUTE | flags::NOOUTPUT,
            state: 1,
            client: (ip(CLIENT), 40000),
            virtual_addr: (ip(VIP), 80),
            dest: (ip(RS[0]), 80),
            fwmark: 0,
            timeout: 900,
            local: None,
        }
    );
    // The packets the engine still sees are counted as the kernel counts
    // them: the 3rd, then every 50th (sync_threshold 3 50).
    assert_eq!(packets_sent_at(&mut m, 3, 101), vec![3, 53, 103]);
    m.run(&from_client(40000, FINACK, b""), FRONT);
    let s = sent(&mut m);
    assert_eq!(s.len(), 1);
    assert_eq!((s[0].state, s[0].timeout), (4, 120), "FIN_WAIT");
    assert_ne!(s[0].flags & flags::INACTIVE, 0);
    assert_eq!(m.engine.counters().sync_sent, 5);
}

#[test]
fn without_the_fast_path_a_connection_is_sent_by_its_packet_count_alone() {
    let slow = |threshold, period| {
        let mut cfg = config(Protocol::Tcp, "rr", ForwardMethod::Route, &[1]);
        cfg.fast_path = false;
        let mut d = Director::new(cfg);
        d.engine
            .set_sync_master(Some(SyncThreshold { threshold, period }));
        d.run(&from_client(40000, SYN, b""), FRONT);
        d.run(&from_client(40000, ACK, b""), FRONT);
        d
    };
    // The kernel's default: ESTABLISHED is sent on the 3rd packet, not
    // as it is entered on the 2nd, then on the 53rd, 103rd ...
    let mut m = slow(3, 50);
    assert!(sent(&mut m).is_empty(), "ESTABLISHED alone is not sent");
    let runs = packets_sent(&mut m, 3, 151);
    let at: Vec<u32> = runs.iter().map(|(i, _)| *i).collect();
    assert_eq!(at, vec![3, 53, 103, 153]);
    assert!(runs.iter().all(|(_, s)| s.len() == 1 && s[0].state == 1));
    // A closing state is sent whatever the count.
    m.run(&from_client(40000, FINACK, b""), FRONT);
    assert_eq!(
        sent(&mut m).iter().map(|s| s.state).collect::<Vec<_>>(),
        vec![4]
    );

    // Another threshold and period.
    let mut m = slow(10, 20);
    assert_eq!(packets_sent_at(&mut m, 3, 50), vec![10, 30, 50]);
    // Period 0: the threshold's packet, once.
    let mut m = slow(5, 0);
    assert_eq!(packets_sent_at(&mut m, 3, 200), vec![5]);
    // Threshold 0: no packet count is 0 modulo 50 before the 50th.
    let mut m = slow(0, 50);
    assert_eq!(packets_sent_at(&mut m, 3, 100), vec![50, 100]);

    // UDP too: its 3rd datagram, not its first.
    let mut cfg = config(Protocol::Udp, "rr", ForwardMethod::Masq, &[1]);
    cfg.fast_path = false;
    let mut m = Director::new(cfg);
    m.engine.set_sync_master(Some(SyncThreshold::DEFAULT));
    let mut at = Vec::new();
    for i in 1..=60u32 {
        m.run(&udp_frame((CLIENT, 5353), (VIP, 80), b"q"), FRONT);
        if !sent(&mut m).is_empty() {
            at.push(i);
        }
    }
    assert_eq!(at, vec![3, 53]);
}

#[test]
fn a_template_is_sent_with_every_packet_of_its_connections() {
    let mut cfg = config(Protocol::Tcp, "rr", ForwardMethod::Route, &[1, 1]);
    cfg.fast_path = false;
    cfg.services[0].persistence = Some(Persistence {
        timeout: 300,
        prefix_len: 32,
    });
    let mut m = master(cfg);
    let kinds = |s: Vec<SyncConn>| {
        s.iter()
            .map(|e| e.flags & flags::TEMPLATE != 0)
            .collect::<Vec<_>>()
    };
    // The SYN: its connection is not sent (SYN_RECV), its template is.
    m.run(&from_client(40000, SYN, b""), FRONT);
    let s = sent(&mut m);
    assert_eq!(kinds(s.clone()), vec![true], "{s:?}");
    assert_eq!(
        s[0].timeout, 300,
        "a template carries the persistence timeout"
    );
    m.run(&from_client(40000, ACK, b""), FRONT);
    assert_eq!(kinds(sent(&mut m)), vec![true]);
    // The 3rd packet: the connection, then its template.
    m.run(&from_client(40000, ACK, b"x"), FRONT);
    assert_eq!(kinds(sent(&mut m)), vec![false, true]);
}

#[test]
fn udp_is_sent_as_it_starts_and_nothing_without_master() {
    let mut m = master(config(Protocol::Udp, "rr", ForwardMethod::Masq, &[1]));
    m.run(&udp_frame((CLIENT, 5353), (VIP, 80), b"q"), FRONT);
    let s = sent(&mut m);
    assert_eq!(s.len(), 1);
    assert_eq!(
        (
            s[0].protocol,
            s[0].state,
            s[0].flags,
            s[0].dest,
            s[0].timeout
        ),
        // UDP stays inactive on its server, as in the kernel.
        (17, 0, flags::MASQ | flags::INACTIVE, (ip(RS[0]), 8080), 300)
    );
    let mut quiet = Director::new(config(Protocol::Udp, "rr", ForwardMethod::Masq, &[1]));
    quiet.run(&udp_frame((CLIENT, 5353), (VIP, 80), b"q"), FRONT);
    assert!(sent(&mut quiet).is_empty());
}

#[test]
fn the_backup_lists_the_masters_connections_and_forwards_them_to_the_same_server() {
    let mut cfg = config(Protocol::Tcp, "rr", ForwardMethod::Route, &[1, 1, 1]);
    cfg.services[0].persistence = Some(Persistence {
        timeout: 300,
        prefix_len: 32,
    });
    let mut m = master(cfg.clone());
    let mut b = Director::new(cfg);
    // Two clients' worth of connections on the master.
    for port in [40000, 40001, 40002] {
        m.run(&from_client(port, SYN, b""), FRONT);
        m.run(&from_client(port, ACK, b""), FRONT);
    }
    let entries = over_the_wire(&sent(&mut m));
    assert!(
        entries.iter().any(|e| e.flags & flags::TEMPLATE != 0),
        "the template goes with its first connection: {entries:?}"
    );
    for e in &entries {
        b.engine.apply_sync(b.now, e).unwrap();
    }
    b.drain();
    assert_eq!(
        listing(&b),
        listing(&m),
        "same connections, servers, states"
    );
    // Counted on their server as on the master.
    let count = |d: &Director| {
        d.engine.status()[0]
            .dests
            .iter()
            .map(|s| (s.addr, s.active, s.inactive, s.persistent))
            .collect::<Vec<_>>()
    };
    assert_eq!(count(&b), count(&m));
    // After a takeover the next segment goes where the master sent it,
    // forwarded by the fast path's entry or by the engine alike.
    let k = FastKey {
        proto: 6,
        saddr: ip(CLIENT),
        sport: 40001,
        daddr: ip(VIP),
        dport: 80,
    };
    assert!(matches!(
        b.maps.entries.get(&k),
        Some(FastAction::Forward(_))
    ));
    let want = server_of(check(&m.run(&from_client(40001, ACK, b"x"), FRONT).1).dst_mac);
    let (v, out) = b.run(&from_client(40001, ACK, b"x"), FRONT);
    assert!(matches!(v, Verdict::Forward { .. }), "{v:?}");
    assert_eq!(server_of(check(&out).dst_mac), want);
    assert_eq!(b.engine.counters().sync_received, entries.len() as u64);
    assert_eq!(
        b.engine.counters().sync_installed,
        3,
        "three new connections; the template is not one"
    );
}

#[test]
fn a_state_update_recounts_and_the_timeout_sent_rules_expiry() {
    let cfg = config(Protocol::Tcp, "rr", ForwardMethod::Masq, &[1]);
    let mut b = Director::new(cfg);
    let mut e = SyncConn {
        protocol: 6,
        flags: flags::MASQ,
        state: 1,
        client: (ip(CLIENT), 40000),
        virtual_addr: (ip(VIP), 80),
        dest: (ip(RS[0]), 8080),
        fwmark: 0,
        timeout: 30,
        local: None,
    };
    b.engine.apply_sync(b.now, &e).unwrap();
    let counts = |d: &Director| {
        let s = &d.engine.status()[0].dests[0];
        (s.active, s.inactive)
    };
    assert_eq!(counts(&b), (1, 0));
    e.state = 4;
    b.engine.apply_sync(b.now, &e).unwrap();
    assert_eq!(counts(&b), (0, 1), "FIN_WAIT: inactive");
    assert_eq!(b.engine.connections(b.now)[0].state, "FIN_WAIT");
    b.advance(25);
    assert_eq!(b.engine.connection_count(), 1);
    b.advance(10);
    assert_eq!(
        b.engine.connection_count(),
        0,
        "gone 30 s after the last sync"
    );
}

#[test]
fn entries_this_director_cannot_place_are_refused() {
    let mut b = Director::new(config(Protocol::Tcp, "rr", ForwardMethod::Masq, &[1]));
    let ok = SyncConn {
        protocol: 6,
        flags: flags::MASQ,
        state: 1,
        client: (ip(CLIENT), 40000),
        virtual_addr: (ip(VIP), 80),
        dest: (ip(RS[0]), 8080),
        fwmark: 0,
        timeout: 0,
        local: None,
    };
    let cases = [
        (
            SyncConn {
                virtual_addr: (ip("10.0.100.9"), 80),
                ..ok
            },
            SyncRefused::NoService,
        ),
        (
            SyncConn {
                dest: (ip(RS[1]), 8080),
                ..ok
            },
            SyncRefused::NoServer,
        ),
        (
            SyncConn {
                dest: (ip(RS[0]), 8081),
                ..ok
            },
            SyncRefused::NoServer,
        ),
        (SyncConn { fwmark: 5, ..ok }, SyncRefused::NoService),
        (
            SyncConn {
                dest: (ip("fd00::1"), 8080),
                ..ok
            },
            SyncRefused::Malformed,
        ),
        (SyncConn { state: 99, ..ok }, SyncRefused::Malformed),
        (SyncConn { protocol: 47, ..ok }, SyncRefused::Malformed),
    ];
    for (c, want) in cases {
        assert_eq!(b.engine.apply_sync(b.now, &c), Err(want), "{c:?}");
    }
    assert_eq!(b.engine.connection_count(), 0);
    assert_eq!(b.engine.counters().sync_received, 0);
}

/// A client → VIP:80 segment from another client address.
fn from_other(n: u8, port: u16, flags: Flags) -> Vec<u8> {
    let addr = format!("10.0.1.{}", 100 + n);
    tcp_frame(ROUTER_MAC, FRONT_MAC, (&addr, port), (VIP, 80), flags, b"")
}

#[test]
fn sync_persist_mode_sends_templates_only_and_a_sloppy_backup_follows_them() {
    let mut cfg = config(Protocol::Tcp, "rr", ForwardMethod::Route, &[1, 1, 1]);
    cfg.services[0].persistence = Some(Persistence {
        timeout: 300,
        prefix_len: 32,
    });
    let is_template = |e: &SyncConn| e.flags & flags::TEMPLATE != 0;
    // Mode 0: the connection and its template.
    let mut m0 = master(cfg.clone());
    m0.run(&from_client(40000, SYN, b""), FRONT);
    m0.run(&from_client(40000, ACK, b""), FRONT);
    let e0 = sent(&mut m0);
    assert!(e0.iter().any(is_template) && e0.iter().any(|e| !is_template(e)));

    // Mode 1: two other clients first, so the client's server is not the
    // one a fresh rr would pick.
    let mut m = master(Config {
        sync_persist_mode: true,
        ..cfg.clone()
    });
    for n in 0..2 {
        m.run(&from_other(n, 30000, SYN), FRONT);
        m.run(&from_other(n, 30000, ACK), FRONT);
    }
    let (_, out) = m.run(&from_client(40000, SYN, b""), FRONT);
    let server = server_of(check(&out).dst_mac);
    m.run(&from_client(40000, ACK, b""), FRONT);
    m.run(&from_client(40000, FINACK, b""), FRONT);
    let entries = over_the_wire(&sent(&mut m));
    assert!(
        !entries.is_empty() && entries.iter().all(is_template),
        "templates only: {entries:?}"
    );

    // A backup without sloppy_tcp has no connection to forward the
    // client's next segment by; with it, the template schedules it.
    for sloppy in [false, true] {
        let mut b = Director::new(Config {
            sloppy_tcp: sloppy,
            ..cfg.clone()
        });
        for e in &entries {
            b.engine.apply_sync(b.now, e).unwrap();
        }
        let (v, out) = b.run(&from_client(40001, ACK, b"x"), FRONT);
        if sloppy {
            assert!(matches!(v, Verdict::Forward { .. }), "{v:?}");
            assert_eq!(
                server_of(check(&out).dst_mac),
                server,
                "the template's server"
            );
        } else {
            assert_eq!(v, Verdict::Drop(rvs_engine::DropReason::NoConnection));
        }
    }
}

/// What the worker asks for at a `sync_refresh_period` or `sync_retries`.
#[derive(Clone, Copy)]
enum Round {
    Refresh,
    Retry,
}

/// Runs a round; the client ports of the connections it sent, sorted.
fn round(d: &mut Director, round: Round) -> Vec<u16> {
    match round {
        Round::Refresh => d.engine.refresh_fast_path_activity(),
        Round::Retry => d.engine.retry_fast_path_sync(),
    }
    d.drain();
    let mut ports: Vec<u16> = sent(d).iter().map(|c| c.client.1).collect();
    ports.sort_unstable();
    ports
}

/// `sync_refresh_period` (the worker calls `refresh_fast_path_activity`
/// each period): a master re-sends the connections the XDP program here
/// forwards, idle or not, but never echoes one a peer sent it and it did
/// not forward since — with several directors each running a master and
/// a backup, an echo would bounce between them and could bring back a
/// state the owner has left.
#[test]
fn a_refresh_resends_what_this_director_forwards_and_echoes_nothing() {
    let cfg = config(Protocol::Tcp, "rr", ForwardMethod::Route, &[1]);
    let mut d = master(cfg);
    // Its own connection, forwarded in XDP (the datapath stamps an entry
    // when it writes it).
    d.run(&from_client(40000, SYN, b""), FRONT);
    d.run(&from_client(40000, ACK, b""), FRONT);
    d.maps.last_seen.insert(client_key(40000), d.now);
    // A peer's, installed from its sync (stamped at install, as here).
    let peer = SyncConn {
        protocol: 6,
        flags: flags::DROUTE | flags::NOOUTPUT,
        state: 1,
        client: (ip(CLIENT), 40001),
        virtual_addr: (ip(VIP), 80),
        dest: (ip(RS[0]), 80),
        fwmark: 0,
        timeout: 900,
        local: None,
    };
    d.engine.apply_sync(d.now, &peer).unwrap();
    d.drain();
    d.maps.last_seen.insert(client_key(40001), d.now);
    sent(&mut d);

    d.advance(2);
    d.maps.last_seen.insert(client_key(40000), d.now);
    assert_eq!(
        round(&mut d, Round::Refresh),
        [40000],
        "its own, not the peer's"
    );
    d.advance(2);
    assert_eq!(
        round(&mut d, Round::Refresh),
        [40000],
        "idle, still its own and alive"
    );
    // The router moved the peer's flow here: forwarded in XDP now.
    d.advance(2);
    d.maps.last_seen.insert(client_key(40001), d.now);
    assert_eq!(
        round(&mut d, Round::Refresh),
        [40000, 40001],
        "forwarded here: ours"
    );
    // The peer took it back (its sync arrives again): not ours any more.
    d.engine.apply_sync(d.now, &peer).unwrap();
    d.drain();
    d.advance(2);
    assert_eq!(round(&mut d, Round::Refresh), [40000]);
    assert_eq!(d.engine.connection_count(), 2, "both alive");
}

/// `sync_retries` (the worker calls `retry_fast_path_sync` period / 8
/// after a refresh, up to that many times): a retry sends again only the
/// connections the XDP program forwarded since the previous round, as the
/// kernel resends a connection only when its packets come; a full refresh
/// still sends every live one.
#[test]
fn a_retry_resends_only_what_was_forwarded_since_the_last_round() {
    let cfg = config(Protocol::Tcp, "rr", ForwardMethod::Route, &[1]);
    let mut d = master(cfg);
    for port in [40000, 40001] {
        d.run(&from_client(port, SYN, b""), FRONT);
        d.run(&from_client(port, ACK, b""), FRONT);
        d.maps.last_seen.insert(client_key(port), d.now);
    }
    sent(&mut d);
    d.advance(2);
    d.maps.last_seen.insert(client_key(40000), d.now);
    d.maps.last_seen.insert(client_key(40001), d.now);
    assert_eq!(
        round(&mut d, Round::Refresh),
        [40000, 40001],
        "a refresh: every live one"
    );
    d.advance(2);
    d.maps.last_seen.insert(client_key(40001), d.now);
    assert_eq!(
        round(&mut d, Round::Retry),
        [40001],
        "a retry: only the one with traffic"
    );
    d.advance(2);
    assert_eq!(
        round(&mut d, Round::Retry),
        Vec::<u16>::new(),
        "nothing forwarded since"
    );
    assert_eq!(
        round(&mut d, Round::Refresh),
        [40000, 40001],
        "the next refresh sends both"
    );
}

/// FullNAT (RVS's): the master sends the local end as its parameter, the
/// backup takes that very port on that local address, lists the
/// connection with it and sends the next segment from it; what it cannot
/// honour is refused: a port it holds, a local address it does not list,
/// a server that is FullNAT on one side only.
#[test]
fn fullnat_connections_are_synced_with_their_local_end() {
    let cfg = config(Protocol::Tcp, "rr", ForwardMethod::FullNat, &[1]);
    let mut m = master(cfg.clone());
    let mut b = Director::new(cfg.clone());
    m.run(&from_client(40000, SYN, b""), FRONT);
    let local = m.engine.connections(m.now)[0].local.expect("a local end");
    let laddr = local.0.to_string();
    m.run(
        &tcp_frame(11, BACK_MAC, (RS[0], 8080), (&laddr, local.1), SYNACK, b""),
        BACK,
    );
    m.run(&from_client(40000, ACK, b""), FRONT);
    let entries = over_the_wire(&sent(&mut m));
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].local, Some(local));
    assert_eq!(entries[0].flags & flags::FWD_MASK, flags::MASQ);
    b.engine.apply_sync(b.now, &entries[0]).unwrap();
    b.drain();
    let listed = b.engine.connections(b.now);
    assert_eq!(listed[0].local, Some(local));
    assert_eq!(listed[0].method, ForwardMethod::FullNat);
    assert_eq!(b.engine.local_ports_in_use(local.0), 1);
    // After a takeover: from the same local end to the same server.
    let (v, out) = b.run(&from_client(40000, ACK, b"x"), FRONT);
    assert!(matches!(v, Verdict::Forward { .. }), "{v:?}");
    let seen = check(&out);
    assert_eq!((seen.src, seen.ports.unwrap().0), local);
    assert_eq!(seen.dst, ip(RS[0]));
    // The backup's own new connection does not take that port.
    let (_, out) = b.run(&from_client(40001, SYN, b""), FRONT);
    assert_ne!(check(&out).ports.unwrap().0, local.1);

    // Another client on the same local end: the port is held.
    let other = SyncConn {
        client: (ip(CLIENT), 40002),
        ..entries[0]
    };
    assert_eq!(
        b.engine.apply_sync(b.now, &other),
        Err(SyncRefused::LocalPort)
    );
    // A local address this director does not list.
    let elsewhere = SyncConn {
        client: (ip(CLIENT), 40003),
        local: Some((ip("10.0.2.99"), 5000)),
        ..entries[0]
    };
    assert_eq!(
        b.engine.apply_sync(b.now, &elsewhere),
        Err(SyncRefused::LocalPort)
    );
    // FullNAT on one side only, either way.
    let plain = SyncConn {
        client: (ip(CLIENT), 40004),
        local: None,
        ..entries[0]
    };
    assert_eq!(b.engine.apply_sync(b.now, &plain), Err(SyncRefused::Method));
    let mut nat = Director::new(config(Protocol::Tcp, "rr", ForwardMethod::Masq, &[1]));
    assert_eq!(
        nat.engine.apply_sync(nat.now, &entries[0]),
        Err(SyncRefused::Method)
    );
    nat.drain();
    assert_eq!(b.engine.local_ports_in_use(local.0), 2, "nothing leaked");
}
