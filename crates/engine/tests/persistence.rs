//! Persistence templates (-p/-M), port-0 and firewall-mark services, and
//! one-packet scheduling, with IPVS's semantics.

mod common;

use common::*;
use rvs_engine::{Config, ForwardMethod, FwmarkRule, Persistence, Protocol, ServiceKey, Verdict};

fn persistent(timeout: u32, prefix_len: u8) -> Config {
    let mut c = config(Protocol::Tcp, "rr", ForwardMethod::Route, &[1, 1, 1]);
    c.services[0].persistence = Some(Persistence {
        timeout,
        prefix_len,
    });
    c
}

fn syn_from(client: &str, port: u16, vport: u16) -> Vec<u8> {
    tcp_frame(
        ROUTER_MAC,
        FRONT_MAC,
        (client, port),
        (VIP, vport),
        SYN,
        b"",
    )
}

fn server(d: &mut Director, frame: &[u8]) -> usize {
    let (v, out) = d.run(frame, FRONT);
    assert_eq!(v, Verdict::Forward { egress: BACK }, "verdict");
    server_of(check(&out).dst_mac)
}

#[test]
fn a_client_sticks_to_one_server_and_others_spread() {
    let mut d = Director::new(persistent(300, 32));
    let first = server(&mut d, &syn_from(CLIENT, 1000, 80));
    for port in 1001..1010 {
        assert_eq!(server(&mut d, &syn_from(CLIENT, port, 80)), first);
    }
    // Other clients are scheduled by rr as usual.
    let others: Vec<usize> = (3..6)
        .map(|i| server(&mut d, &syn_from(&format!("10.0.1.{i}"), 2000, 80)))
        .collect();
    assert_eq!(others.len(), 3);
    assert!(others.iter().any(|&s| s != first));
    let c = d.engine.connections(d.now);
    let templates: Vec<_> = c.iter().filter(|c| c.template).collect();
    assert_eq!(templates.len(), 4, "one template per client");
    let t = templates.iter().find(|t| t.client.0 == ip(CLIENT)).unwrap();
    assert_eq!((t.client.1, t.state, t.expires_in_secs), (0, "NONE", 300));
    let st = d.engine.status();
    assert_eq!(st[0].dests.iter().map(|x| x.persistent).sum::<u32>(), 4);
    assert!(st[0].dests[first - 1].persistent >= 1);
}

#[test]
fn the_netmask_groups_clients() {
    let mut d = Director::new(persistent(300, 24));
    let a = server(&mut d, &syn_from("10.0.1.2", 1000, 80));
    assert_eq!(server(&mut d, &syn_from("10.0.1.77", 1000, 80)), a);
    assert_ne!(server(&mut d, &syn_from("10.0.9.2", 1000, 80)), a);
}

#[test]
fn templates_expire_after_their_connections_and_the_timeout() {
    let mut d = Director::new(persistent(30, 32));
    let a = server(&mut d, &syn_from(CLIENT, 1000, 80));
    d.run(&from_client(1000, ACK, b""), FRONT); // ESTABLISHED, 900 s
    d.advance(100);
    // The template outlived its 30 s because a connection still uses it.
    assert!(d.engine.connections(d.now).iter().any(|c| c.template));
    assert_eq!(server(&mut d, &syn_from(CLIENT, 1001, 80)), a);
    // Close both connections (RST -> CLOSE, 10 s), then wait out the timeout.
    d.run(&from_client(1000, RST, b""), FRONT);
    d.run(&from_client(1001, ACK, b""), FRONT);
    d.run(&from_client(1001, RST, b""), FRONT);
    d.advance(11);
    assert!(d.engine.connections(d.now).iter().all(|c| c.template));
    d.advance(31);
    assert_eq!(d.engine.connection_count(), 0, "template let go");
    assert_eq!(d.engine.status()[0].dests[a - 1].persistent, 0);
    // The client is now scheduled afresh: rr moved on to the next server.
    assert_ne!(server(&mut d, &syn_from(CLIENT, 1002, 80)), a);
}

#[test]
fn a_quiescent_server_keeps_its_persistent_clients() {
    let mut d = Director::new(persistent(300, 32));
    let a = server(&mut d, &syn_from(CLIENT, 1000, 80));
    let mut cfg = persistent(300, 32);
    cfg.services[0].dests[a - 1].weight = 0;
    d.reconfigure(cfg);
    // expire_quiescent_template = 0: weight 0 does not break persistence…
    assert_eq!(server(&mut d, &syn_from(CLIENT, 1001, 80)), a);
    // …but new clients avoid the quiescent server.
    for i in 3..9 {
        assert_ne!(server(&mut d, &syn_from(&format!("10.0.1.{i}"), 1, 80)), a);
    }
}

#[test]
fn a_removed_server_hands_its_clients_to_another() {
    let mut d = Director::new(persistent(300, 32));
    let a = server(&mut d, &syn_from(CLIENT, 1000, 80));
    assert_eq!(a, 3);
    d.reconfigure(config(Protocol::Tcp, "rr", ForwardMethod::Route, &[1, 1]).with_persistence(300));
    let b = server(&mut d, &syn_from(CLIENT, 1001, 80));
    assert_ne!(b, 3);
    assert_eq!(
        server(&mut d, &syn_from(CLIENT, 1002, 80)),
        b,
        "sticks to the new one"
    );
}

#[test]
fn port_zero_services_take_every_port_and_keep_it() {
    let mut cfg = persistent(300, 32);
    cfg.services[0].key.port = 0;
    for dst in &mut cfg.services[0].dests {
        dst.port = 0;
    }
    let mut d = Director::new(cfg);
    let a = server(&mut d, &syn_from(CLIENT, 1000, 80));
    let (v, out) = d.run(&syn_from(CLIENT, 1001, 443), FRONT);
    assert_eq!(v, Verdict::Forward { egress: BACK });
    let seen = check(&out);
    assert_eq!(
        server_of(seen.dst_mac),
        a,
        "443 follows 80 to the same server"
    );
    assert_eq!(seen.ports, Some((1001, 443)));
    assert_eq!(
        d.engine
            .connections(d.now)
            .iter()
            .filter(|c| c.template)
            .count(),
        1
    );
}

#[test]
fn firewall_marks_group_ports_into_one_service() {
    let mut cfg = config(Protocol::Tcp, "rr", ForwardMethod::Masq, &[1, 1, 1]);
    cfg.fwmarks.push(FwmarkRule {
        mark: 7,
        protocol: Some(Protocol::Tcp),
        addr: ip(VIP),
        prefix_len: 32,
        ports: vec![80, 443],
    });
    cfg.services[0].key = ServiceKey::fwmark(7, false);
    cfg.services[0].persistence = Some(Persistence {
        timeout: 300,
        prefix_len: 32,
    });
    for dst in &mut cfg.services[0].dests {
        dst.port = 0; // keep the packet's port
    }
    let mut d = Director::new(cfg);
    let (v, out) = d.run(&syn_from(CLIENT, 1000, 443), FRONT);
    assert_eq!(v, Verdict::Forward { egress: BACK });
    let first = check(&out);
    assert_eq!(first.ports, Some((1000, 443)));
    let (_, out) = d.run(&syn_from(CLIENT, 1001, 80), FRONT);
    let second = check(&out);
    assert_eq!(second.dst, first.dst, "80 and 443 stick together");
    assert_eq!(second.ports, Some((1001, 80)));
    // A port outside the rule is not the service's.
    assert_eq!(d.run(&syn_from(CLIENT, 1002, 8443), FRONT).0, Verdict::Pass);
    let t = d
        .engine
        .connections(d.now)
        .into_iter()
        .find(|c| c.template)
        .unwrap();
    assert_eq!(
        (t.protocol, t.virtual_),
        (0, (ip("0.0.0.7"), 0)),
        "fwmark template as ipvsadm shows it"
    );
    assert_eq!(d.engine.status()[0].key.to_string(), "FWM 7");
}

#[test]
fn one_packet_scheduling_tracks_nothing() {
    let mut cfg = config(Protocol::Udp, "rr", ForwardMethod::Route, &[1, 1, 1]);
    cfg.services[0].one_packet = true;
    let mut d = Director::new(cfg);
    let picks: Vec<usize> = (0..6)
        .map(|_| {
            let (v, out) = d.run(&udp_frame((CLIENT, 5353), (VIP, 80), b"q"), FRONT);
            assert_eq!(v, Verdict::Forward { egress: BACK });
            server_of(check(&out).dst_mac)
        })
        .collect();
    assert_eq!(
        picks,
        vec![3, 2, 1, 3, 2, 1],
        "each datagram scheduled on its own"
    );
    assert_eq!(d.engine.connection_count(), 0);
    assert_eq!(d.engine.status()[0].stats.conns, 6);
}

#[test]
fn persistence_config_errors() {
    let mut c = persistent(0, 32);
    assert!(rvs_engine::Snapshot::new(c.clone()).is_err());
    c.services[0].persistence = Some(Persistence {
        timeout: 10,
        prefix_len: 33,
    });
    assert!(rvs_engine::Snapshot::new(c).is_err());
    let mut c = config(Protocol::Tcp, "rr", ForwardMethod::Route, &[1]);
    c.services[0].one_packet = true;
    let e = rvs_engine::Snapshot::new(c).unwrap_err();
    assert!(e.to_string().contains("UDP only"), "{e}");
    let mut c = config(Protocol::Tcp, "rr", ForwardMethod::Route, &[1]);
    c.services[0].key.port = 0;
    assert!(rvs_engine::Snapshot::new(c)
        .unwrap_err()
        .to_string()
        .contains("-p"));
}

trait WithPersistence {
    fn with_persistence(self, timeout: u32) -> Self;
}

impl WithPersistence for Config {
    fn with_persistence(mut self, timeout: u32) -> Self {
        self.services[0].persistence = Some(Persistence {
            timeout,
            prefix_len: 32,
        });
        self
    }
}
