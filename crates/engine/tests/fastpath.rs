//! The engine's fast-path ops: which entries each connection has in the XDP
//! program's maps and when, next hops, activity before expiry and counter
//! folding — checked on a model of the maps (`common::FastMaps`) that the
//! harness keeps from the ops exactly as the datapath applies them.

mod common;

use common::*;
use rvs_engine::{
    DestCounters, DestSlot, FastAction, FastForward, FastKey, FastPathOp, ForwardMethod, NextHop,
    Protocol, Rewrite, TcpSegments, Time,
};

fn key(src: (&str, u16), dst: (&str, u16), proto: u8) -> FastKey {
    FastKey {
        proto,
        saddr: ip(src.0),
        sport: src.1,
        daddr: ip(dst.0),
        dport: dst.1,
    }
}

fn forward(d: &Director, k: &FastKey) -> FastForward {
    match d.maps.entries.get(k) {
        Some(FastAction::Forward(f)) => *f,
        other => panic!("{k:?}: expected a forwarding entry, found {other:?}"),
    }
}

/// The slot and MAC of the real server a frame went to.
fn dest_of(out: &[u8]) -> usize {
    server_of(check(out).dst_mac)
}

#[test]
fn tcp_dr_entry_forwards_from_established_until_it_expires() {
    let mut d = Director::new(config(Protocol::Tcp, "rr", ForwardMethod::Route, &[1]));
    let k = client_key(40000);
    d.run(&from_client(40000, SYN, b""), FRONT);
    assert_eq!(
        d.maps.entries.get(&k),
        Some(&FastAction::ToEngine),
        "tracked from the SYN on, but the handshake stays with the engine"
    );
    d.run(&from_client(40000, ACK, b""), FRONT);
    let f = forward(&d, &k);
    assert_eq!(f.rewrite, Rewrite::Route { server: ip(RS[0]) });
    assert_eq!(
        d.maps.next_hops.get(&f.next_hop),
        Some(&Some(NextHop {
            iface: BACK,
            src_mac: mac(BACK_MAC),
            dst_mac: mac(11)
        })),
        "the server's next hop is in the table before any entry uses it"
    );
    // More established traffic changes nothing in the maps.
    let writes = d.maps.log.len();
    for _ in 0..5 {
        d.run(&from_client(40000, ACK, b"data"), FRONT);
    }
    assert_eq!(d.maps.log.len(), writes, "no map write per packet");
    // The FIN itself comes to the engine (the XDP program sends every FIN
    // there) and moves the connection to FIN_WAIT, where an ACK changes
    // nothing: the entry keeps forwarding the closing ACKs, unchanged.
    d.run(&from_client(40000, FINACK, b""), FRONT);
    assert_eq!(d.engine.connections(d.now)[0].state, "FIN_WAIT");
    assert_eq!(
        forward(&d, &k).rewrite,
        Rewrite::Route { server: ip(RS[0]) }
    );
    assert_eq!(d.maps.log.len(), writes, "no map write for the FIN");
    // A RST moves it to CLOSE, where ACKs change nothing either.
    d.run(&from_client(40000, RST, b""), FRONT);
    assert_eq!(d.engine.connections(d.now)[0].state, "CLOSE");
    forward(&d, &k);
    // Expiry removes it.
    assert_eq!(d.engine.fast_path_entries(), 1);
    d.advance(200);
    assert_eq!(d.engine.connection_count(), 0);
    assert!(d.maps.entries.is_empty(), "{:?}", d.maps.entries);
    assert_eq!(d.engine.fast_path_entries(), 0);
}

#[test]
fn nat_has_both_directions_from_the_syn_and_forwards_both_when_established() {
    let mut d = Director::new(config(Protocol::Tcp, "rr", ForwardMethod::Masq, &[1]));
    let k_in = client_key(40000);
    let k_out = key((RS[0], 8080), (CLIENT, 40000), 6);
    d.run(&from_client(40000, SYN, b""), FRONT);
    assert_eq!(d.maps.entries.get(&k_in), Some(&FastAction::ToEngine));
    // The reply key must be in the map before the SYN leaves: the ops come
    // with the verdict of the SYN itself. In SYN_RECV the server's SYN+ACK
    // changes nothing but the timer, so the XDP program forwards it; any
    // other segment of the reply direction still comes here.
    let syn_reply = forward(&d, &k_out);
    assert_eq!(syn_reply.segments, TcpSegments::SYN);
    let reply = tcp_frame(11, BACK_MAC, (RS[0], 8080), (CLIENT, 40000), SYNACK, b"");
    d.run(&reply, BACK);
    assert_eq!(d.engine.connections(d.now)[0].state, "SYN_RECV");
    let writes = d.maps.log.len();
    d.run(&reply, BACK);
    assert_eq!(
        d.maps.log.len(),
        writes,
        "a SYN+ACK again: nothing to write"
    );
    d.run(&from_client(40000, ACK, b""), FRONT);
    let fin = forward(&d, &k_in);
    assert_eq!(fin.segments, TcpSegments::ACK);
    assert_eq!(
        fin.rewrite,
        Rewrite::MasqIn {
            addr: ip(RS[0]),
            port: 8080
        }
    );
    let fout = forward(&d, &k_out);
    assert_eq!(
        fout.rewrite,
        Rewrite::MasqOut {
            addr: ip(VIP),
            port: 80
        }
    );
    assert_eq!(fout.segments, TcpSegments::ACK, "no SYN once established");
    assert_eq!(fout.next_hop, syn_reply.next_hop);
    assert_eq!(fin.dest, fout.dest, "both directions count on one server");
    assert_eq!(
        d.maps.next_hops.get(&fout.next_hop),
        Some(&Some(NextHop {
            iface: FRONT,
            src_mac: mac(FRONT_MAC),
            dst_mac: mac(ROUTER_MAC)
        })),
        "replies go to the client's gateway"
    );
    assert_ne!(fout.next_hop, fin.next_hop);
    assert_eq!(d.engine.fast_path_entries(), d.maps.entries.len() as u64);
}

/// With `secure_tcp` possible, the server's SYN+ACK moves SYN_RECV to
/// SYNACK (the kernel's `tcp_states_dos`): it must reach the engine. Turning
/// the defence on rewrites the reply entry of a connection in SYN_RECV,
/// turning it off again lets it forward.
#[test]
fn the_reply_syn_ack_stays_with_the_engine_while_secure_tcp_may_act() {
    let mut cfg = config(Protocol::Tcp, "rr", ForwardMethod::Masq, &[1]);
    cfg.defense.secure_tcp = 1;
    let mut d = Director::new(cfg.clone());
    let k_out = key((RS[0], 8080), (CLIENT, 40000), 6);
    d.run(&from_client(40000, SYN, b""), FRONT);
    assert_eq!(d.maps.entries.get(&k_out), Some(&FastAction::ToEngine));

    cfg.defense.secure_tcp = 0;
    d.reconfigure(cfg.clone());
    assert_eq!(forward(&d, &k_out).segments, TcpSegments::SYN);

    cfg.defense.secure_tcp = 3;
    d.reconfigure(cfg);
    assert_eq!(d.maps.entries.get(&k_out), Some(&FastAction::ToEngine));
    let reply = tcp_frame(11, BACK_MAC, (RS[0], 8080), (CLIENT, 40000), SYNACK, b"");
    d.run(&reply, BACK);
    assert_eq!(d.engine.connections(d.now)[0].state, "SYNACK");
}

/// A SYN_RECV connection whose reply entry forwards is asked for activity
/// before it expires, as an established one is: the server's SYN+ACKs the
/// XDP program forwarded restart its timer as they would in the kernel.
#[test]
fn a_syn_recv_connection_forwarded_in_xdp_expires_only_after_an_activity_check() {
    let mut d = Director::new(config(Protocol::Tcp, "rr", ForwardMethod::Masq, &[1]));
    let k_out = key((RS[0], 8080), (CLIENT, 40000), 6);
    d.run(&from_client(40000, SYN, b""), FRONT);
    forward(&d, &k_out);
    let syn_recv = u64::from(
        d.engine.snapshot().config().timeouts.tcp[rvs_engine::proto::TcpState::SynRecv as usize],
    );
    // The XDP program saw a SYN+ACK just before the timeout.
    d.advance(syn_recv - 1);
    d.maps.last_seen.insert(k_out, d.now);
    d.advance(1);
    assert_eq!(d.engine.connection_count(), 1, "kept: seen a second ago");
    d.advance(syn_recv + 1);
    assert_eq!(d.engine.connection_count(), 0);
    assert!(d.maps.entries.is_empty());
}

#[test]
fn udp_forwards_from_the_first_datagram_and_tun_describes_its_tunnel() {
    let mut cfg = config(Protocol::Udp, "rr", ForwardMethod::Tunnel, &[1]);
    cfg.interfaces[1].mtu = 1400;
    let mut d = Director::new(cfg);
    d.run(&udp_frame((CLIENT, 5000), (VIP, 80), b"q"), FRONT);
    let f = forward(&d, &key((CLIENT, 5000), (VIP, 80), 17));
    assert_eq!(
        f.rewrite,
        Rewrite::Tunnel {
            src: "10.0.2.10".parse().unwrap(),
            dst: RS[0].parse().unwrap(),
            mtu: 1400,
            encap: rvs_engine::TunnelEncap::Ipip,
        }
    );
}

#[test]
fn switched_off_every_entry_goes_to_the_engine_and_back_on_it_forwards() {
    let mut cfg = config(Protocol::Tcp, "rr", ForwardMethod::Masq, &[1]);
    cfg.fast_path = false;
    let mut d = Director::new(cfg.clone());
    d.run(&from_client(40000, SYN, b""), FRONT);
    let reply = tcp_frame(11, BACK_MAC, (RS[0], 8080), (CLIENT, 40000), SYNACK, b"");
    d.run(&reply, BACK);
    d.run(&from_client(40000, ACK, b""), FRONT);
    assert_eq!(d.maps.entries.len(), 2);
    assert!(
        d.maps.entries.values().all(|a| *a == FastAction::ToEngine),
        "tracked, but never forwarded in XDP: {:?}",
        d.maps.entries
    );
    // Switching it on (a reload) rewrites the established connection's entries.
    cfg.fast_path = true;
    d.reconfigure(cfg.clone());
    assert!(
        d.maps
            .entries
            .values()
            .all(|a| matches!(a, FastAction::Forward(_))),
        "{:?}",
        d.maps.entries
    );
    cfg.fast_path = false;
    d.reconfigure(cfg);
    assert!(d.maps.entries.values().all(|a| *a == FastAction::ToEngine));
}

#[test]
fn expiry_asks_the_fast_path_and_keeps_a_connection_it_forwards() {
    let mut d = Director::new(config(Protocol::Tcp, "rr", ForwardMethod::Route, &[1]));
    let k = client_key(40000);
    d.run(&from_client(40000, SYN, b""), FRONT);
    d.run(&from_client(40000, ACK, b""), FRONT);
    let t0 = d.now;
    // The XDP program forwards traffic 800 s later; the engine sees none.
    d.maps
        .last_seen
        .insert(k, Time::from_secs(t0.as_secs() + 800));
    d.advance(901);
    assert!(
        d.maps
            .log
            .iter()
            .any(|op| matches!(op, FastPathOp::ReadActivity { key, reply: None } if *key == k)),
        "the engine asked before expiring"
    );
    assert_eq!(d.engine.connection_count(), 1, "kept: seen 101 s ago");
    let c = &d.engine.connections(d.now)[0];
    assert_eq!(c.state, "ESTABLISHED");
    assert_eq!(
        c.expires_in_secs,
        800 + 900 - 901,
        "900 s after the last frame"
    );
    d.advance(800 + 900 - 901 + 3);
    assert_eq!(d.engine.connection_count(), 0, "idle for its timeout: gone");
    assert!(d.maps.entries.is_empty());
    assert_eq!(d.engine.status()[0].dests[0].active, 0);
}

#[test]
fn expiry_of_a_connection_the_fast_path_never_saw_is_unchanged() {
    let mut d = Director::new(config(Protocol::Udp, "rr", ForwardMethod::Route, &[1]));
    d.run(&udp_frame((CLIENT, 5000), (VIP, 80), b"q"), FRONT);
    d.advance(299);
    assert_eq!(d.engine.connection_count(), 1);
    d.advance(1);
    assert_eq!(
        d.engine.connection_count(),
        0,
        "UDP timeout 300 s, as before"
    );
    assert_eq!(d.engine.counters().conns_expired, 1);
}

#[test]
fn fast_path_counters_fold_into_server_and_service_statistics() {
    let mut d = Director::new(config(Protocol::Tcp, "rr", ForwardMethod::Masq, &[1, 1]));
    let slots: Vec<DestSlot> = d.engine.fast_path_dest_slots().collect();
    assert_eq!(slots.len(), 2);
    assert_eq!(
        d.maps.resets.len(),
        2,
        "each server's counters start from zero"
    );
    let before = d.engine.status()[0].stats;
    let totals = DestCounters {
        in_packets: 10,
        in_bytes: 1000,
        out_packets: 7,
        out_bytes: 7000,
    };
    d.engine.fold_fast_path_counters(slots[0], totals);
    // Folding the same totals again adds nothing; growth adds the difference.
    d.engine.fold_fast_path_counters(slots[0], totals);
    d.engine.fold_fast_path_counters(
        slots[0],
        DestCounters {
            in_packets: 12,
            in_bytes: 1200,
            ..totals
        },
    );
    let st = d.engine.status();
    let svc = st[0].stats;
    assert_eq!(svc.in_packets - before.in_packets, 12);
    assert_eq!(svc.in_bytes - before.in_bytes, 1200);
    assert_eq!(svc.out_packets - before.out_packets, 7);
    assert_eq!(svc.out_bytes - before.out_bytes, 7000);
    let per_dest: u64 = st[0].dests.iter().map(|x| x.stats.in_packets).sum();
    assert_eq!(per_dest, 12);
}

#[test]
fn a_neighbour_change_moves_one_next_hop_not_every_connection() {
    let mut d = Director::new(config(Protocol::Tcp, "rr", ForwardMethod::Route, &[1]));
    for port in 0..20 {
        d.run(&from_client(1000 + port, SYN, b""), FRONT);
        d.run(&from_client(1000 + port, ACK, b""), FRONT);
    }
    let hop = forward(&d, &client_key(1000)).next_hop;
    let writes = d.maps.log.len();
    d.engine
        .set_neighbors(std::sync::Arc::new(rvs_engine::NeighborTable::new(
            [(ip("10.0.3.1"), mac(ROUTER_MAC)), (ip(RS[0]), mac(99))],
            2,
        )));
    d.drain();
    let new_ops = &d.maps.log[writes..];
    assert_eq!(
        new_ops,
        &[FastPathOp::SetNextHop {
            id: hop,
            hop: Some(NextHop {
                iface: BACK,
                src_mac: mac(BACK_MAC),
                dst_mac: mac(99)
            })
        }]
    );
    // The MAC gone: entries keep forwarding to the engine through the hop.
    d.engine
        .set_neighbors(std::sync::Arc::new(rvs_engine::NeighborTable::default()));
    d.drain();
    assert_eq!(d.maps.next_hops.get(&hop), Some(&None));
}

#[test]
fn nat_reply_next_hops_are_shared_and_freed_with_their_last_connection() {
    let mut d = Director::new(config(Protocol::Udp, "rr", ForwardMethod::Masq, &[1]));
    d.run(&udp_frame((CLIENT, 5000), (VIP, 80), b"q"), FRONT);
    d.run(&udp_frame((CLIENT, 5001), (VIP, 80), b"q"), FRONT);
    let a = forward(&d, &key((RS[0], 8080), (CLIENT, 5000), 17)).next_hop;
    let b = forward(&d, &key((RS[0], 8080), (CLIENT, 5001), 17)).next_hop;
    assert_eq!(a, b, "one gateway, one next hop");
    let hop_sets = |d: &Director| {
        d.maps
            .log
            .iter()
            .filter(|op| matches!(op, FastPathOp::SetNextHop { id, .. } if *id == a))
            .count()
    };
    assert_eq!(hop_sets(&d), 1);
    d.advance(301);
    assert_eq!(d.engine.connection_count(), 0);
    d.run(&udp_frame((CLIENT, 5002), (VIP, 80), b"q"), FRONT);
    let c = forward(&d, &key((RS[0], 8080), (CLIENT, 5002), 17)).next_hop;
    assert_eq!(c, a, "the freed slot is taken again");
    assert_eq!(hop_sets(&d), 2, "and set again before use");
}

#[test]
fn templates_and_one_packet_datagrams_have_no_entries() {
    let mut cfg = config(Protocol::Udp, "rr", ForwardMethod::Route, &[1, 1]);
    cfg.services[0].one_packet = true;
    let mut d = Director::new(cfg);
    d.run(&udp_frame((CLIENT, 5000), (VIP, 80), b"q"), FRONT);
    assert!(d.maps.entries.is_empty(), "{:?}", d.maps.entries);

    let mut cfg = config(Protocol::Tcp, "rr", ForwardMethod::Route, &[1, 1]);
    cfg.services[0].persistence = Some(rvs_engine::Persistence {
        timeout: 300,
        prefix_len: 32,
    });
    let mut d = Director::new(cfg);
    d.run(&from_client(40000, SYN, b""), FRONT);
    assert_eq!(
        d.maps.entries.keys().collect::<Vec<_>>(),
        vec![&client_key(40000)],
        "the connection, not its template"
    );
}

#[test]
fn syn_reusing_a_closed_tuple_replaces_the_entry() {
    let mut d = Director::new(config(Protocol::Tcp, "rr", ForwardMethod::Route, &[1, 1]));
    let (_, out) = d.run(&from_client(40000, SYN, b""), FRONT);
    let first = dest_of(&out);
    d.run(&from_client(40000, ACK, b""), FRONT);
    d.run(&from_client(40000, RST, b""), FRONT);
    let (_, out) = d.run(&from_client(40000, SYN, b""), FRONT);
    assert_ne!(dest_of(&out), first, "rescheduled");
    assert_eq!(
        d.maps.entries.get(&client_key(40000)),
        Some(&FastAction::ToEngine)
    );
    let n = d.maps.log.len();
    assert!(matches!(
        d.maps.log[n - 2..],
        [FastPathOp::Remove { .. }, FastPathOp::Upsert { .. }]
    ));
}
