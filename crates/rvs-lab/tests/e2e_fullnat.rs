//! FullNAT end to end (issue 16, item 2), on veths with 4 RX queues: the
//! real rvsd in the lab's director namespace, configured from its file
//! (`method = "fullnat"`, `local_addresses`, `toa`), in front of three
//! nginx real servers that have no route to the client at all (their
//! default route is deleted: neither the director nor the router is their
//! gateway) and no VIP; they answer the director's local addresses
//! 10.0.2.200–202, which it holds on its back leg.
//!
//! - rr 1,1,1 gives 20/20/20 over 60 new connections;
//! - the handshake's ACK reaches rs1 from the local address with the TOA
//!   option (kind 254: the client's port and address), read with
//!   etherparse; its checksums hold;
//! - 10 000 sequential connections from one client reach the servers from
//!   10 000 distinct (local address, port) pairs, as the servers saw them
//!   (nginx's `$remote_addr $remote_port`), the three local addresses
//!   taken in turn;
//! - established flows are forwarded by the XDP program (its counters grow
//!   with the requests);
//! - with a pool of 21 ports (a reload), the 22nd concurrent connection is
//!   refused at once (ICMP port unreachable: curl says "refused") and
//!   counted as `local_ports_exhausted`; nothing else is dropped.
//!
//! Needs root, nginx, curl; builds rvsd/rvsadm itself if needed. Load: 60 +
//! 3 + 10 000 + 21 requests, each bounded by curl's timeout.

#[allow(dead_code)]
mod common;

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use etherparse::{Ipv4Header, TcpHeader};
use rvs_lab::{rs_ip, Lab, Mode, CLIENT_IP, LOCAL_IPS, VIP};

use common::{counts, spread, Daemon};

/// The service in rvsd's file: VIP:80 rr over rs1..rs3 by FullNAT from
/// the lab's three [`LOCAL_IPS`], with TOA; `top` goes before it (e.g. a
/// port range).
fn config(top: &str) -> String {
    let locals: Vec<String> = LOCAL_IPS.iter().map(|a| format!("\"{a}\"")).collect();
    let mut s = format!(
        "{top}\n[[service]]\nprotocol = \"tcp\"\naddress = \"{VIP}\"\nport = 80\nscheduler = \"rr\"\n\
         local_addresses = [{}]\ntoa = true\n",
        locals.join(", ")
    );
    for n in 1..=3 {
        s.push_str(&format!(
            "[[service.real_server]]\naddress = \"{}\"\nport = 80\nmethod = \"fullnat\"\n",
            rs_ip(n)
        ));
    }
    s
}

/// The real servers lose every route but their own network's.
fn no_gateway(lab: &Lab) {
    for n in 1..=3 {
        let rs = format!("rs{n}");
        lab.exec(&rs, &["ip", "route", "del", "default"])
            .unwrap_or_else(|e| panic!("deleting {rs}'s default route: {e}"));
        let routes = lab.exec(&rs, &["ip", "route", "show"]).expect("ip route");
        assert!(!routes.contains("default"), "{rs}: {routes}");
    }
}

/// The TOA option of a TCP header's options, if any: (port, address).
fn toa(options: &[u8]) -> Option<(u16, Ipv4Addr)> {
    let mut i = 0;
    while i < options.len() {
        match options[i] {
            0 => return None,
            1 => i += 1,
            kind => {
                let len = usize::from(*options.get(i + 1)?);
                if len < 2 {
                    return None;
                }
                let body = options.get(i + 2..i + len)?;
                if kind == 254 && len == 8 {
                    let port = u16::from_be_bytes([body[0], body[1]]);
                    return Some((port, Ipv4Addr::new(body[2], body[3], body[4], body[5])));
                }
                i += len;
            }
        }
    }
    None
}

/// The first pure ACK from the local address that reaches rs1 (the one
/// that completes the handshake) carries TOA with the client's address.
fn toa_check(lab: &Lab) {
    let from: Vec<String> = LOCAL_IPS.iter().map(|a| format!("src host {a}")).collect();
    let filter = format!(
        "tcp and ({}) and dst port 80 and tcp[13] = 0x10",
        from.join(" or ")
    );
    let cap = lab
        .capture("rs1", "eth0", &filter, 1, Duration::from_secs(10))
        .expect("tcpdump on rs1");
    let seen = spread(lab, 3);
    assert_eq!(seen.get("rs1"), Some(&1), "rs1 answered once: {seen:?}");
    let frames = common::pcap_frames(&cap.finish().expect("capture"));
    let frame = frames
        .first()
        .unwrap_or_else(|| panic!("no ACK from a local address reached rs1"));
    let (ip, rest) = Ipv4Header::from_slice(&frame[14..]).expect("IPv4 header");
    assert_eq!(ip.header_checksum, ip.calc_header_checksum());
    assert!(LOCAL_IPS.contains(&Ipv4Addr::from(ip.source)), "{ip:?}");
    assert_eq!(Ipv4Addr::from(ip.destination), rs_ip(1));
    let l4_len = usize::from(ip.total_len) - ip.header_len();
    let (tcp, payload) = TcpHeader::from_slice(&rest[..l4_len]).expect("TCP header");
    assert_eq!(
        tcp.checksum,
        tcp.calc_checksum_ipv4(&ip, payload).expect("checksum"),
        "TCP checksum with TOA added"
    );
    let (port, addr) = toa(tcp.options.as_slice())
        .unwrap_or_else(|| panic!("no TOA in the handshake's ACK: {tcp:?}"));
    assert_eq!(addr, CLIENT_IP, "TOA carries the client's address");
    assert!(port >= 1024, "TOA carries the client's port: {port}");
    assert!(
        (1024..=32767).contains(&tcp.source_port),
        "a port of the default local range: {}",
        tcp.source_port
    );
}

/// `n` sequential new connections to `/peer` in one curl: the servers'
/// view of each peer.
fn peers(lab: &Lab, n: usize) -> Vec<(String, u16)> {
    let url = format!("http://{VIP}/peer?[1-{n}]");
    let out = lab
        .exec_timeout(
            "client",
            &[
                "curl",
                "-s",
                "-S",
                "-m",
                "5",
                "-H",
                "Connection: close",
                &url,
            ],
            Duration::from_secs(300),
        )
        .unwrap_or_else(|e| panic!("{n} requests to /peer: {e}"));
    out.lines()
        .map(|l| {
            let (a, p) = l
                .split_once(' ')
                .unwrap_or_else(|| panic!("not `addr port`: {l:?}"));
            (a.to_owned(), p.parse().expect("port"))
        })
        .collect()
}

#[test]
fn fullnat_serves_servers_without_a_gateway() {
    common::with_lab("fullnat", common::lab_spec(Mode::FullNat, 4), |lab| {
        no_gateway(lab);
        let d = Daemon::start(lab, &config(""));

        assert_eq!(spread(lab, 60), counts(&[20, 20, 20]), "rr 1,1,1");
        toa_check(lab);

        // 10 000 connections, one client: 10 000 distinct local pairs.
        let fast = |d: &Daemon<'_>| {
            d.counters()
                .get("xdp_front_fast_redirect")
                .copied()
                .unwrap_or(0)
        };
        let before = fast(&d);
        let seen = peers(lab, 10_000);
        assert_eq!(seen.len(), 10_000, "every request answered");
        let locals: Vec<String> = LOCAL_IPS.iter().map(|a| a.to_string()).collect();
        assert!(
            seen.iter().all(|(a, _)| locals.contains(a)),
            "every server saw a local address"
        );
        for local in &locals {
            let n = seen.iter().filter(|(a, _)| a == local).count();
            assert!((3300..=3400).contains(&n), "{local} taken in turn: {n}");
        }
        let distinct: HashSet<&(String, u16)> = seen.iter().collect();
        assert_eq!(
            distinct.len(),
            10_000,
            "distinct (local address, port) pairs"
        );
        assert!(seen.iter().all(|(_, p)| (1024..=32767).contains(p)));
        let forwarded = fast(&d) - before;
        eprintln!("fullnat: 10 000 connections; the XDP program forwarded {forwarded} of their frames from the front");
        assert!(
            forwarded >= 9_000,
            "each connection's request is forwarded in XDP: {forwarded}"
        );
        let listing = d.rvsadm(&["-Ln"]);
        assert!(listing.contains("FullNat"), "{listing}");

        // A pool of 21 ports (7 on each local address): connections in
        // TIME_WAIT hold theirs, so the 22nd is refused and counted;
        // nothing else is dropped for it.
        d.write_config(&config("local_port_range = [40000, 40006]"));
        d.rvsadm(&["--reload"]);
        let before = d.counters();
        let held = peers(lab, 21);
        assert!(
            held.iter().all(|(_, p)| (40000..=40006).contains(p)),
            "{held:?}"
        );
        let started = std::time::Instant::now();
        let refused = lab.exec_timeout(
            "client",
            &["curl", "-s", "-S", "-m", "5", &format!("http://{VIP}/")],
            Duration::from_secs(10),
        );
        let err = refused.expect_err("the 21st connection must fail");
        // curl says "refused" or "Couldn't connect" after an ICMP port
        // unreachable, by version; a dropped SYN would time out instead.
        let msg = err.to_string();
        assert!(
            msg.contains("refused") || msg.contains("Couldn't connect"),
            "refused at once (ICMP port unreachable): {msg}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "answered, not timed out: {:?}",
            started.elapsed()
        );
        // The worker's counters reach the listing within a second or so.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let delta = loop {
            let delta = common::deltas(&before, &d.counters());
            if delta.contains_key("drop_local_ports_exhausted")
                || std::time::Instant::now() > deadline
            {
                break delta;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(
            delta
                .get("drop_local_ports_exhausted")
                .copied()
                .unwrap_or(0)
                >= 1,
            "counted: {delta:?}"
        );
        let other_drops: Vec<_> = delta
            .iter()
            .filter(|(k, _)| k.starts_with("drop_") && *k != "drop_local_ports_exhausted")
            .collect();
        assert!(other_drops.is_empty(), "no other drop: {other_drops:?}");
        d.stop();
    });
}
