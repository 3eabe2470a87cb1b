//! IPv6 end to end (issue 11, item 1): the lab made dual-stack, an IPv6
//! service `[fd00:100::1]:80` with IPv6 real servers, in DR, NAT, TUN
//! (IPv6-in-IPv6) and FullNAT (from the local address fd00:2::200, to
//! servers whose gateway is the router), mirroring the IPv4 suite: rr 1,1,1 gives 20/20/20 and
//! wrr 1,2,3 gives 10/20/30 over 60 new connections, a capture on rs1 shows
//! the packet walk of the mode, a wrk keep-alive run has no error, and
//! `rvsadm -Ln` prints the addresses as ipvsadm does (`[addr]:port`).
//!
//! One lab and one rvsd per mode (2 RX queues per veth), configured with
//! the real rvsadm. Needs root; builds rvsd/rvsadm/rvs-decap itself if
//! needed. Loads: 60 + 60 + 3 curl requests and `wrk -c20` for 6 s per mode.

#[allow(dead_code)]
mod common;

use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::time::Duration;

use etherparse::{Ethernet2Header, IpNumber, Ipv6Header, TcpHeader};
use rvs_lab::{rs_ip6, Lab, Mode, CLIENT_IP6, DIR_BACK_IP6, VIP6};

use common::{counts, mac, parse_wrk, pcap_frames, Daemon};

fn vip() -> String {
    format!("[{VIP6}]:80")
}

/// `rvsadm -C`, then the IPv6 service with `sched` and one real server per
/// weight, forwarded by the lab's mode.
fn reset(d: &Daemon<'_>, mode: Mode, sched: &str, weights: &[u32]) {
    d.rvsadm(&["-C"]);
    let (local, svc) = (rvs_lab::LOCAL_IP6.to_string(), vip());
    let mut service = vec!["-A", "-t", &svc, "-s", sched];
    if mode == Mode::FullNat {
        service.extend(["--laddr", &local]);
    }
    d.rvsadm(&service);
    let flag = rvs_lab::demo::method_flag(mode);
    for (i, w) in weights.iter().enumerate() {
        let rs = format!("[{}]:80", rs_ip6(i + 1));
        d.rvsadm(&["-a", "-t", &vip(), "-r", &rs, flag, "-w", &w.to_string()]);
    }
}

/// One new connection to the IPv6 VIP: the server's name.
fn request(lab: &Lab) -> String {
    lab.exec_timeout(
        "client",
        &["curl", "-s", "-S", "-m", "5", &format!("http://[{VIP6}]/")],
        Duration::from_secs(10),
    )
    .unwrap_or_else(|e| panic!("request to [{VIP6}]: {e}"))
    .trim()
    .to_owned()
}

fn spread(lab: &Lab, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        *seen.entry(request(lab)).or_insert(0) += 1;
    }
    seen
}

/// The first SYN to port 80 that reaches rs1, checked against the mode's
/// packet walk: destination MAC rs1's, source MAC the director's `back`;
/// DR the packet as the client sent it, NAT the destination rewritten to
/// rs1 with a right TCP checksum, TUN wrapped in DIP6 → RIP6 (next header
/// 41) around the untouched packet.
fn capture_check(lab: &Lab, d: &Daemon<'_>, mode: Mode) {
    reset(d, mode, "rr", &[1, 1, 1]);
    let filter = match mode {
        Mode::Dr => format!("ip6 and tcp and dst host {VIP6} and dst port 80"),
        Mode::Nat | Mode::FullNat => {
            format!("ip6 and tcp and dst host {} and dst port 80", rs_ip6(1))
        }
        Mode::Tun => "ip6 proto 41".to_owned(),
    };
    let cap = lab
        .capture("rs1", "eth0", &filter, 1, Duration::from_secs(10))
        .expect("tcpdump on rs1");
    let seen = spread(lab, 3);
    assert_eq!(seen.get("rs1"), Some(&1), "rs1 answered once: {seen:?}");
    let path = cap.finish().expect("capture");
    let frames = pcap_frames(&path);
    let frame = frames
        .first()
        .unwrap_or_else(|| panic!("nothing matching `{filter}` reached rs1 eth0"));
    let (eth, rest) = Ethernet2Header::from_slice(frame).expect("Ethernet header");
    assert_eq!(eth.destination, mac(lab, "rs1", "eth0"), "to rs1's MAC");
    assert_eq!(
        eth.source,
        mac(lab, "dir", "back"),
        "from the director's back"
    );
    let (outer, rest) = Ipv6Header::from_slice(rest).expect("IPv6 header");
    let (inner, l4) = match mode {
        Mode::Dr | Mode::Nat | Mode::FullNat => (outer, rest),
        Mode::Tun => {
            assert_eq!(outer.next_header, IpNumber::IPV6, "IPv6 in IPv6");
            assert_eq!(Ipv6Addr::from(outer.source), DIR_BACK_IP6, "outer source");
            assert_eq!(Ipv6Addr::from(outer.destination), rs_ip6(1), "outer dest");
            Ipv6Header::from_slice(rest).expect("inner IPv6 header")
        }
    };
    assert_eq!(inner.next_header, IpNumber::TCP, "{inner:?}");
    let want_src = if mode == Mode::FullNat {
        rvs_lab::LOCAL_IP6
    } else {
        CLIENT_IP6
    };
    assert_eq!(
        Ipv6Addr::from(inner.source),
        want_src,
        "source is the client (FullNAT: the local address)"
    );
    let want_dst = if matches!(mode, Mode::Nat | Mode::FullNat) {
        rs_ip6(1)
    } else {
        VIP6
    };
    assert_eq!(Ipv6Addr::from(inner.destination), want_dst, "destination");
    let (tcp, payload) =
        TcpHeader::from_slice(&l4[..usize::from(inner.payload_length)]).expect("TCP header");
    assert!(tcp.syn, "first segment is the SYN: {tcp:?}");
    assert_eq!(tcp.destination_port, 80);
    assert_eq!(
        tcp.checksum,
        tcp.calc_checksum_ipv6(&inner, payload).expect("checksum"),
        "TCP checksum after the director"
    );
}

fn suite(mode: Mode, name: &str) {
    common::with_lab(name, common::lab_spec(mode, 2), |lab| {
        lab.enable_ipv6().expect("making the lab dual-stack");
        let d = Daemon::start(lab, "");

        reset(&d, mode, "rr", &[1, 1, 1]);
        assert_eq!(spread(lab, 60), counts(&[20, 20, 20]), "{name}: rr 1,1,1");
        reset(&d, mode, "wrr", &[1, 2, 3]);
        assert_eq!(spread(lab, 60), counts(&[10, 20, 30]), "{name}: wrr 1,2,3");

        let list = d.rvsadm(&["-Ln"]);
        assert!(
            list.contains(&format!("TCP  [{VIP6}]:80 wrr")),
            "{name}: the service as ipvsadm prints it:\n{list}"
        );
        assert!(
            list.contains(&format!("-> [{}]:80", rs_ip6(3))),
            "{name}: the real servers as ipvsadm prints them:\n{list}"
        );

        capture_check(lab, &d, mode);

        reset(&d, mode, "rr", &[1, 1, 1]);
        let url = format!("http://[{VIP6}]/");
        let out = lab
            .exec_timeout(
                "client",
                &["wrk", "-t2", "-c20", "-d6s", "--timeout", "3s", &url],
                Duration::from_secs(30),
            )
            .expect("wrk");
        let r = parse_wrk(&out);
        assert!(r.requests > 0, "{name}: wrk made no requests:\n{out}");
        assert!(r.errors.is_empty(), "{name}: wrk reported errors:\n{out}");
        eprintln!(
            "{name}: wrk over IPv6: {} requests in 6 s, no errors",
            r.requests
        );
    });
}

#[test]
fn ipv6_dr() {
    suite(Mode::Dr, "ipv6-dr");
}

#[test]
fn ipv6_nat() {
    suite(Mode::Nat, "ipv6-nat");
}

#[test]
fn ipv6_tun() {
    suite(Mode::Tun, "ipv6-tun");
}

#[test]
fn ipv6_fullnat() {
    suite(Mode::FullNat, "ipv6-fullnat");
}
