//! Sloppy TCP scheduling (IPVS's `sloppy_tcp`): a director that meets a
//! mid-flow segment of a connection it does not know schedules it as a
//! first packet (never a RST), the kernel's state table makes it
//! ESTABLISHED, and the XDP program gets its forwarding entry at once; with
//! `mh` or `sh` two directors of the same configuration (different hash
//! seeds, different histories) send the flow to the same real server.

mod common;

use common::*;
use rvs_engine::{
    Config, DropReason, Engine, FastAction, FastKey, ForwardMethod, IfIndex, PacketBuf, Protocol,
    Snapshot, Time, Verdict,
};

fn sloppy(mut cfg: Config) -> Config {
    cfg.sloppy_tcp = true;
    cfg
}

/// (active, inactive) of the first real server.
fn counts(d: &Director) -> (u32, u32) {
    let s = &d.engine.status()[0].dests[0];
    (s.active, s.inactive)
}

const PSHACK_DATA: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

#[test]
fn without_sloppy_tcp_a_mid_flow_segment_is_dropped_and_counted_as_before() {
    let mut d = Director::new(config(Protocol::Tcp, "rr", ForwardMethod::Route, &[1]));
    for flags in [ACK, FINACK, RST] {
        let (v, _) = d.run(&from_client(40000, flags, PSHACK_DATA), FRONT);
        assert_eq!(v, Verdict::Drop(DropReason::NoConnection));
    }
    assert_eq!(d.engine.connection_count(), 0);
    assert_eq!(d.engine.counters().dropped(DropReason::NoConnection), 3);
    assert_eq!(d.engine.counters().conns_created, 0);
    assert!(
        d.maps.entries.is_empty(),
        "no fast-path entry: {:?}",
        d.maps
    );
}

#[test]
fn with_sloppy_tcp_a_mid_flow_ack_is_scheduled_established_and_forwarded_in_xdp() {
    let mut d = Director::new(sloppy(config(
        Protocol::Tcp,
        "rr",
        ForwardMethod::Route,
        &[1],
    )));
    let (v, out) = d.run(&from_client(40000, ACK, PSHACK_DATA), FRONT);
    assert_eq!(v, Verdict::Forward { egress: BACK });
    assert_eq!(server_of(check(&out).dst_mac), 1);
    let c = d.engine.connections(d.now);
    assert_eq!(c.len(), 1);
    assert_eq!(
        (c[0].state, c[0].expires_in_secs),
        ("ESTABLISHED", 900),
        "the kernel's table: INPUT-ONLY ack from NONE"
    );
    assert_eq!(counts(&d), (1, 0), "ESTABLISHED counts as active");
    assert_eq!(d.engine.counters().conns_created, 1);
    match d.maps.entries.get(&client_key(40000)) {
        Some(FastAction::Forward(_)) => {}
        other => panic!("expected a forwarding entry at once, found {other:?}"),
    }
    // The next segment is the XDP program's; if it still reaches the
    // engine (fast path off, a race) it is the same connection.
    let (v, _) = d.run(&from_client(40000, ACK, b"x"), FRONT);
    assert_eq!(v, Verdict::Forward { egress: BACK });
    assert_eq!(d.engine.connection_count(), 1);
}

#[test]
fn with_sloppy_tcp_a_nat_mid_flow_ack_forwards_both_directions() {
    let mut d = Director::new(sloppy(config(
        Protocol::Tcp,
        "rr",
        ForwardMethod::Masq,
        &[1],
    )));
    let (v, _) = d.run(&from_client(40000, ACK, PSHACK_DATA), FRONT);
    assert_eq!(v, Verdict::Forward { egress: BACK });
    assert_eq!(d.engine.connections(d.now)[0].state, "ESTABLISHED");
    let reply = FastKey {
        proto: 6,
        saddr: ip(RS[0]),
        sport: 8080,
        daddr: ip(CLIENT),
        dport: 40000,
    };
    for k in [client_key(40000), reply] {
        assert!(
            matches!(d.maps.entries.get(&k), Some(FastAction::Forward(_))),
            "{k:?}: {:?}",
            d.maps.entries.get(&k)
        );
    }
    // The server's answer goes back to the client, from the VIP.
    let answer = tcp_frame(11, BACK_MAC, (RS[0], 8080), (CLIENT, 40000), ACK, b"200");
    let (v, out) = d.run(&answer, BACK);
    assert_eq!(v, Verdict::Forward { egress: FRONT });
    let seen = check(&out);
    assert_eq!((seen.src, seen.ports), (ip(VIP), Some((80, 40000))));
}

#[test]
fn a_rst_never_creates_a_connection_even_with_sloppy_tcp() {
    let mut d = Director::new(sloppy(config(
        Protocol::Tcp,
        "rr",
        ForwardMethod::Route,
        &[1],
    )));
    let rst_ack = Flags { ack: true, ..RST };
    let syn_rst = Flags { syn: true, ..RST };
    for flags in [RST, rst_ack, syn_rst] {
        let (v, _) = d.run(&from_client(40000, flags, b""), FRONT);
        assert_eq!(v, Verdict::Drop(DropReason::NoConnection));
    }
    assert_eq!(d.engine.connection_count(), 0);
    assert!(d.maps.entries.is_empty());
}

#[test]
fn with_sloppy_tcp_a_fin_without_a_connection_is_forwarded_in_close() {
    // The kernel's table: INPUT-ONLY fin from NONE is CLOSE (10 s), so the
    // end of a flow another director carried still reaches its server.
    let mut d = Director::new(sloppy(config(
        Protocol::Tcp,
        "rr",
        ForwardMethod::Route,
        &[1],
    )));
    let (v, _) = d.run(&from_client(40000, FINACK, b""), FRONT);
    assert_eq!(v, Verdict::Forward { egress: BACK });
    let c = d.engine.connections(d.now);
    assert_eq!((c[0].state, c[0].expires_in_secs), ("CLOSE", 10));
    assert_eq!(counts(&d), (0, 1));
    assert!(
        matches!(
            d.maps.entries.get(&client_key(40000)),
            Some(&FastAction::Forward(_))
        ),
        "an ACK leaves CLOSE as it is: its ACKs forward in XDP"
    );
}

#[test]
fn sloppy_tcp_can_be_switched_at_run_time() {
    let cfg = config(Protocol::Tcp, "rr", ForwardMethod::Route, &[1]);
    let mut d = Director::new(cfg.clone());
    let (v, _) = d.run(&from_client(40000, ACK, b"x"), FRONT);
    assert_eq!(v, Verdict::Drop(DropReason::NoConnection));
    d.reconfigure(sloppy(cfg.clone()));
    let (v, _) = d.run(&from_client(40000, ACK, b"x"), FRONT);
    assert_eq!(v, Verdict::Forward { egress: BACK });
    d.reconfigure(cfg);
    let (v, _) = d.run(&from_client(40001, ACK, b"x"), FRONT);
    assert_eq!(v, Verdict::Drop(DropReason::NoConnection));
    assert_eq!(d.engine.connection_count(), 1, "the sloppy one stays");
}

/// A TCP segment from client `n` (its own address) to VIP:80.
fn from(n: u16, port: u16, flags: Flags, payload: &[u8]) -> Vec<u8> {
    let addr = format!("10.0.{}.{}", 1 + n / 250, 2 + n % 250);
    tcp_frame(
        ROUTER_MAC,
        FRONT_MAC,
        (&addr, port),
        (VIP, 80),
        flags,
        payload,
    )
}

fn engine(cfg: Config, seeds: [u64; 4]) -> Engine {
    let mut e = Engine::new(Snapshot::new(cfg).expect("valid config"), seeds);
    e.set_neighbors(neighbors());
    e
}

/// Which server `e` sends `frame` to (1-based), or why not.
fn pick(e: &mut Engine, now: Time, frame: &[u8], ingress: IfIndex) -> Result<usize, Verdict> {
    let mut buf = vec![0u8; HEADROOM + frame.len() + 64];
    buf[HEADROOM..HEADROOM + frame.len()].copy_from_slice(frame);
    let mut pkt = PacketBuf::new(&mut buf, HEADROOM, frame.len()).unwrap();
    match e.process(now, &mut pkt, ingress) {
        Verdict::Forward { .. } => Ok(server_of(check(pkt.data()).dst_mac)),
        v => Err(v),
    }
}

/// Director A carries 200 flows from their SYN; director B, started later
/// with the same configuration and sloppy_tcp, meets each flow mid-way and
/// sends it where A did. `sched_flags` selects the hashed field.
fn same_server_on_both(scheduler: &str, sched_flags: u32) {
    let mut cfg = config(Protocol::Tcp, scheduler, ForwardMethod::Route, &[1, 2, 3]);
    cfg.services[0].sched_flags = sched_flags;
    let now = Time::from_secs(1000);
    let mut a = engine(cfg.clone(), [1, 2, 3, 4]);
    let mut b = engine(sloppy(cfg), [9, 8, 7, 6]);
    let mut spread = [0usize; 4];
    for n in 0..200u16 {
        let port = 30000 + n;
        let on_a = pick(&mut a, now, &from(n, port, SYN, b""), FRONT).expect("A schedules");
        assert_eq!(pick(&mut a, now, &from(n, port, ACK, b""), FRONT), Ok(on_a));
        let on_b = pick(&mut b, now, &from(n, port, ACK, PSHACK_DATA), FRONT)
            .unwrap_or_else(|v| panic!("{scheduler}: B dropped client {n}: {v:?}"));
        assert_eq!(
            on_b, on_a,
            "{scheduler}: client {n} moved to another server"
        );
        spread[on_a] += 1;
    }
    assert!(
        spread[1..].iter().all(|&k| k > 20),
        "{scheduler}: the flows should spread over the servers: {spread:?}"
    );
    let c = b.connections(now);
    assert_eq!(c.len(), 200);
    assert!(c.iter().all(|c| c.state == "ESTABLISHED"));
}

#[test]
fn two_directors_with_mh_send_a_mid_flow_segment_to_the_same_server() {
    same_server_on_both("mh", 0);
}

#[test]
fn two_directors_with_sh_send_a_mid_flow_segment_to_the_same_server() {
    same_server_on_both("sh", 0);
}

#[test]
fn two_directors_with_mh_port_send_a_mid_flow_segment_to_the_same_server() {
    same_server_on_both("mh", rvs_vocab::sched::flags::MH_PORT);
}

#[test]
fn sloppy_scheduling_of_a_persistent_service_makes_its_template() {
    let mut cfg = sloppy(config(
        Protocol::Tcp,
        "rr",
        ForwardMethod::Route,
        &[1, 1, 1],
    ));
    cfg.services[0].persistence = Some(rvs_engine::Persistence {
        timeout: 300,
        prefix_len: 32,
    });
    let mut d = Director::new(cfg);
    let (_, out) = d.run(&from_client(40000, ACK, b"x"), FRONT);
    let first = server_of(check(&out).dst_mac);
    // The same client's next connection, mid-flow too, sticks to it.
    let (_, out) = d.run(&from_client(40001, ACK, b"x"), FRONT);
    assert_eq!(server_of(check(&out).dst_mac), first);
    let c = d.engine.connections(d.now);
    assert_eq!(c.iter().filter(|c| c.template).count(), 1, "{c:?}");
}
