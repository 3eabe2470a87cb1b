//! The TUN tunnel types end to end (issue 16, item 1): the real rvsd in the
//! lab's director namespace sends GUE (configured with the real rvsadm:
//! `-i --tun-type gue --tun-port 6080 --tun-csum`) and then GRE (from the
//! configuration file: `tun_type = "gre"`, `tun_checksum = "csum"`, applied
//! by `rvsadm --reload`) to three nginx real servers that run `rvs-decap`.
//! For each: rr 1,1,1 gives 20/20/20 over 60 new connections; a capture on
//! rs1 parsed by scapy (an independent dissector) shows the encapsulation
//! (outer DIP → RIP, the tunnel header with a checksum scapy recomputes,
//! the client's untouched SYN inside); rs1's answer leaves to the router,
//! not back through the director; `-Ln --tun-info` and `-S` list the
//! tunnel as ipvsadm 1.31 does.
//!
//! With checksums and without (`--tun-nocsum`, the default), GUE and GRE
//! flows are encapsulated by the XDP program once established: 20/20/20
//! again, rvsd's fast-path counter counts their requests, and a request
//! captured on rs1 carries a tunnel checksum scapy recomputes (the program
//! fills it from the headers).
//!
//! The same over IPv6 (the lab made dual-stack): GUE with a zero UDP
//! checksum, which rvs-decap must accept, plain GRE, and GUE with a
//! checksum.
//!
//! Needs root, tcpdump and python3-scapy (`/usr/bin/python3`); builds
//! rvsd/rvsadm/rvs-decap itself if needed. Load: 9 × 60 + 7 × 3 curl
//! requests.

#[allow(dead_code)]
mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use std::net::IpAddr;

use rvs_lab::demo::Family;
use rvs_lab::{
    rs_ip, rs_ip6, Lab, Mode, CLIENT_IP, CLIENT_IP6, DIR_BACK_IP, DIR_BACK_IP6, GUE_PORT, VIP, VIP6,
};

use common::{counts, mac, spread, Daemon};

/// Reads the first packet of a pcap with scapy and prints what it sees as
/// `key=value` lines: the outer IPv4 or IPv6 header, then the UDP and GUE
/// headers (scapy has no GUE layer, so its 4 bytes are read here and the
/// rest handed to scapy's IP/IPv6) or scapy's GRE layer, then the inner
/// packet and its TCP header. Checksums are recomputed by scapy (`*_ok`).
const DISSECT: &str = r#"
import sys
from scapy.all import rdpcap, raw, Ether, IP, IPv6, UDP, TCP, GRE
from scapy.utils import checksum

def recomputed(pkt, layer):
    copy = pkt.copy()
    del copy[layer].chksum
    return type(pkt)(raw(copy))[layer].chksum

def fresh(ip):
    return type(ip)(raw(ip))

p = rdpcap(sys.argv[1])[0]
ip = p[Ether].payload
v6 = isinstance(ip, IPv6)
proto = ip.nh if v6 else ip.proto
out = {"outer_src": ip.src, "outer_dst": ip.dst, "outer_proto": proto}
if not v6:
    out["outer_csum_ok"] = ip.chksum == recomputed(fresh(ip), IP)
inner_class = IPv6 if v6 else IP
if proto == 17:
    u = ip[UDP]
    out["udp_sport"] = u.sport
    out["udp_dport"] = u.dport
    out["udp_csum"] = u.chksum
    out["udp_csum_ok"] = u.chksum == recomputed(fresh(ip), UDP)
    gue = bytes(u.payload)
    out["gue_version"] = gue[0] >> 6
    out["gue_control"] = (gue[0] >> 5) & 1
    out["gue_hlen"] = gue[0] & 0x1F
    out["gue_proto"] = gue[1]
    inner = inner_class(gue[4 + 4 * (gue[0] & 0x1F):])
elif proto == 47:
    g = ip[GRE]
    out["gre_chksum_present"] = g.chksum_present
    out["gre_proto"] = hex(g.proto)
    out["gre_csum_ok"] = checksum(raw(g)) == 0
    inner = g[inner_class]
else:
    sys.exit("neither UDP nor GRE: " + repr(p))
out["inner_src"] = inner.src
out["inner_dst"] = inner.dst
out["inner_proto"] = inner.nh if v6 else inner.proto
if not v6:
    out["inner_csum_ok"] = inner.chksum == recomputed(fresh(inner), IP)
t = inner[TCP]
out["tcp_dport"] = t.dport
out["tcp_flags"] = str(t.flags)
out["tcp_csum_ok"] = t.chksum == recomputed(fresh(inner), TCP)
for k, v in out.items():
    print(f"{k}={v}")
"#;

/// What [`DISSECT`] printed about `pcap`.
fn dissect(lab: &Lab, pcap: &Path) -> BTreeMap<String, String> {
    let script = lab.dir().join("dissect.py");
    std::fs::write(&script, DISSECT).expect("writing the dissector script");
    // Debian's python3 (python3-scapy), whatever else is first on PATH.
    let out = Command::new("/usr/bin/python3")
        .arg(&script)
        .arg(pcap)
        .output()
        .expect("running /usr/bin/python3 (install python3-scapy)");
    assert!(
        out.status.success(),
        "scapy failed on {}: {}",
        pcap.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Three new connections to the `family` VIP while rs1 captures the first
/// tunnelled packet (`filter`) and its first answer to the client: the
/// tunnelled packet as scapy reads it, and the answer's destination MAC.
fn capture(lab: &Lab, family: Family, filter: &str) -> (BTreeMap<String, String>, [u8; 6]) {
    let tunnelled = lab
        .capture("rs1", "eth0", filter, 1, Duration::from_secs(10))
        .expect("tcpdump on rs1");
    let (vip, client): (IpAddr, IpAddr) = match family {
        Family::V4 => (VIP.into(), CLIENT_IP.into()),
        Family::V6 => (VIP6.into(), CLIENT_IP6.into()),
    };
    let answer_filter = format!("tcp and src host {vip} and src port 80 and dst host {client}");
    let answer = lab
        .capture("rs1", "eth0", &answer_filter, 1, Duration::from_secs(10))
        .expect("tcpdump on rs1");
    let seen = spread_for(lab, family, 3);
    assert_eq!(seen.get("rs1"), Some(&1), "rs1 answered once: {seen:?}");
    let fields = dissect(lab, &tunnelled.finish().expect("capture"));
    let frames = common::pcap_frames(&answer.finish().expect("capture"));
    let first = frames
        .first()
        .unwrap_or_else(|| panic!("no answer from {VIP}:80 left rs1 eth0"));
    let mut dst_mac = [0u8; 6];
    dst_mac.copy_from_slice(&first[..6]);
    (fields, dst_mac)
}

/// Three new connections to the `family` VIP while rs1 captures the first
/// tunnelled (`filter`) request: an established segment, which the XDP
/// program encapsulates; as scapy reads it, after checking what every
/// tunnel shares (the inner packet, its checksums, that it carries data).
fn capture_request(lab: &Lab, family: Family, filter: &str) -> BTreeMap<String, String> {
    // A SYN in the largest tunnel is 146 bytes; a request is more.
    let tunnelled = lab
        .capture(
            "rs1",
            "eth0",
            &format!("({filter}) and greater 150"),
            1,
            Duration::from_secs(10),
        )
        .expect("tcpdump on rs1");
    let seen = spread_for(lab, family, 3);
    assert_eq!(seen.get("rs1"), Some(&1), "rs1 answered once: {seen:?}");
    let f = dissect(lab, &tunnelled.finish().expect("capture"));
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("<missing>");
    assert_eq!(get("tcp_dport"), "80", "{f:?}");
    assert_eq!(get("tcp_flags"), "PA", "the client's request: {f:?}");
    assert_eq!(get("tcp_csum_ok"), "True", "{f:?}");
    if family == Family::V4 {
        assert_eq!(get("outer_csum_ok"), "True", "{f:?}");
        assert_eq!(get("inner_csum_ok"), "True", "{f:?}");
    }
    f
}

/// `n` new connections to the `family` VIP; who answered how often.
fn spread_for(lab: &Lab, family: Family, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for i in 0..n {
        let who = rvs_lab::demo::request_for(lab, family)
            .unwrap_or_else(|e| panic!("request {}: {e}", i + 1));
        *seen.entry(who).or_insert(0) += 1;
    }
    seen
}

/// The checks both types share: outer DIP → rs1, the client's SYN to the
/// VIP inside with its checksums intact, the answer sent to the router.
fn common_fields(lab: &Lab, family: Family, f: &BTreeMap<String, String>, answer_mac: [u8; 6]) {
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("<missing>");
    let (dir, rs1, client, vip): (IpAddr, IpAddr, IpAddr, IpAddr) = match family {
        Family::V4 => (
            DIR_BACK_IP.into(),
            rs_ip(1).into(),
            CLIENT_IP.into(),
            VIP.into(),
        ),
        Family::V6 => (
            DIR_BACK_IP6.into(),
            rs_ip6(1).into(),
            CLIENT_IP6.into(),
            VIP6.into(),
        ),
    };
    assert_eq!(get("outer_src"), dir.to_string(), "{f:?}");
    assert_eq!(get("outer_dst"), rs1.to_string(), "{f:?}");
    assert_eq!(get("inner_src"), client.to_string(), "{f:?}");
    assert_eq!(get("inner_dst"), vip.to_string(), "{f:?}");
    assert_eq!(get("inner_proto"), "6", "{f:?}");
    if family == Family::V4 {
        assert_eq!(get("outer_csum_ok"), "True", "{f:?}");
        assert_eq!(get("inner_csum_ok"), "True", "{f:?}");
    }
    assert_eq!(get("tcp_dport"), "80", "{f:?}");
    assert_eq!(get("tcp_flags"), "S", "the client's SYN: {f:?}");
    assert_eq!(get("tcp_csum_ok"), "True", "{f:?}");
    assert_eq!(
        answer_mac,
        mac(lab, "router", "br0"),
        "rs1 answers the client through the router"
    );
    assert_ne!(
        answer_mac,
        mac(lab, "dir", "back"),
        "not through the director"
    );
}

/// `rvsadm -C`, then VIP:80 rr with rs1..rs3 on `tunnel`'s options.
fn v4_service(d: &Daemon<'_>, tunnel: &[&str]) {
    d.rvsadm(&["-C"]);
    let svc = format!("{VIP}:80");
    d.rvsadm(&["-A", "-t", &svc, "-s", "rr"]);
    for n in 1..=3 {
        let rs = rs_ip(n).to_string();
        let mut args = vec!["-a", "-t", &svc, "-r", &rs, "-i"];
        args.extend_from_slice(tunnel);
        d.rvsadm(&args);
    }
}

/// rr 1,1,1 over 60 new connections gives 20/20/20, and their established
/// segments (the requests) are forwarded by the XDP program: rvsd's
/// front-leg redirect counter grows by at least one per connection.
fn spread_in_xdp(lab: &Lab, d: &Daemon<'_>, family: Family, what: &str) {
    let fast = || {
        d.counters()
            .get("xdp_front_fast_redirect")
            .copied()
            .unwrap_or(0)
    };
    let before = fast();
    assert_eq!(
        spread_for(lab, family, 60),
        counts(&[20, 20, 20]),
        "{what}: rr 1,1,1"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while fast() < before + 60 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        fast() >= before + 60,
        "{what}: established segments forwarded in XDP: {} → {}",
        before,
        fast()
    );
}

/// The configuration file's VIP:80 rr with rs1..rs3 tunnelled by GRE.
fn gre_file() -> String {
    let mut s = format!(
        "[[service]]\nprotocol = \"tcp\"\naddress = \"{VIP}\"\nport = 80\nscheduler = \"rr\"\n"
    );
    for n in 1..=3 {
        s.push_str(&format!(
            "[[service.real_server]]\naddress = \"{}\"\nmethod = \"tun\"\ntun_type = \"gre\"\ntun_checksum = \"csum\"\n",
            rs_ip(n)
        ));
    }
    s
}

/// The `-Ln --tun-info` line of rs`n`, whitespace-separated.
fn tun_info_row(list: &str, n: usize) -> Vec<String> {
    let want = format!("{}:80", rs_ip(n));
    list.lines()
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .find(|w| w.len() > 2 && w[0] == "->" && w[1] == want)
        .unwrap_or_else(|| panic!("rs{n} missing from:\n{list}"))
}

#[test]
fn gue_and_gre_tunnels_balance_and_show_their_headers() {
    common::with_lab("tun-types", common::lab_spec(Mode::Tun, 1), |lab| {
        let d = Daemon::start(lab, "");

        // GUE with a checksum (the engine's), configured with rvsadm.
        let port = GUE_PORT.to_string();
        let gue = ["--tun-type", "gue", "--tun-port", &port];
        v4_service(&d, &[&gue[..], &["--tun-csum"]].concat());
        assert_eq!(spread(lab, 60), counts(&[20, 20, 20]), "gue: rr 1,1,1");
        let (f, answer_mac) = capture(lab, Family::V4, &format!("udp and dst port {GUE_PORT}"));
        eprintln!("gue, as scapy reads it: {f:?}");
        common_fields(lab, Family::V4, &f, answer_mac);
        let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("<missing>");
        assert_eq!(get("outer_proto"), "17", "{f:?}");
        assert_eq!(get("udp_dport"), GUE_PORT.to_string(), "{f:?}");
        let sport: u16 = get("udp_sport").parse().expect("UDP source port");
        assert!((32768..60999).contains(&sport), "source port {sport}");
        assert_ne!(get("udp_csum"), "0", "--tun-csum: a UDP checksum");
        assert_eq!(get("udp_csum_ok"), "True", "{f:?}");
        assert_eq!(
            (get("gue_version"), get("gue_control"), get("gue_hlen")),
            ("0", "0", "0"),
            "{f:?}"
        );
        assert_eq!(get("gue_proto"), "4", "GUE carries IPv4: {f:?}");
        let list = d.rvsadm(&["-Ln", "--tun-info"]);
        assert!(
            list.contains("Forward TunnelInfo    Weight ActiveConn InActConn"),
            "{list}"
        );
        assert_eq!(tun_info_row(&list, 1)[2..4], ["Tunnel", "gue:6080:+c"]);
        let saved = d.rvsadm(&["-S", "-n"]);
        assert!(
            saved.contains(&format!(
                "-a -t {VIP}:80 -r {}:80 -i -w 1 --tun-type gue --tun-port 6080 --tun-csum\n",
                rs_ip(2)
            )),
            "{saved}"
        );

        // The XDP program encapsulates established flows, filling the
        // checksum from the headers.
        spread_in_xdp(lab, &d, Family::V4, "gue csum");
        let f = capture_request(lab, Family::V4, &format!("udp and dst port {GUE_PORT}"));
        eprintln!("gue request, as scapy reads it: {f:?}");
        assert_ne!(f["udp_csum"], "0", "--tun-csum in XDP: {f:?}");
        assert_eq!(f["udp_csum_ok"], "True", "{f:?}");

        // And without checksums.
        v4_service(&d, &gue);
        spread_in_xdp(lab, &d, Family::V4, "gue nocsum");
        v4_service(&d, &["--tun-type", "gre"]);
        spread_in_xdp(lab, &d, Family::V4, "gre nocsum");

        // GRE with a checksum, from the configuration file, applied by a
        // reload.
        d.write_config(&gre_file());
        d.rvsadm(&["--reload"]);
        assert_eq!(spread(lab, 60), counts(&[20, 20, 20]), "gre: rr 1,1,1");
        let (f, answer_mac) = capture(lab, Family::V4, "ip proto 47");
        eprintln!("gre, as scapy reads it: {f:?}");
        common_fields(lab, Family::V4, &f, answer_mac);
        let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("<missing>");
        assert_eq!(get("outer_proto"), "47", "{f:?}");
        assert_eq!(get("gre_proto"), "0x800", "GRE carries IPv4: {f:?}");
        assert_eq!(get("gre_chksum_present"), "1", "{f:?}");
        assert_eq!(get("gre_csum_ok"), "True", "{f:?}");
        spread_in_xdp(lab, &d, Family::V4, "gre csum");
        let f = capture_request(lab, Family::V4, "ip proto 47");
        eprintln!("gre request, as scapy reads it: {f:?}");
        assert_eq!(f["gre_chksum_present"], "1", "{f:?}");
        assert_eq!(f["gre_csum_ok"], "True", "{f:?}");
        let list = d.rvsadm(&["-Ln", "--tun-info"]);
        assert_eq!(tun_info_row(&list, 3)[2..4], ["Tunnel", "gre:+c"]);
        let saved = d.rvsadm(&["-S", "-n"]);
        assert!(
            saved.contains(&format!(
                "-a -t {VIP}:80 -r {}:80 -i -w 1 --tun-type gre --tun-csum\n",
                rs_ip(1)
            )),
            "{saved}"
        );
    });
}

/// `rvsadm -C`, then [VIP6]:80 rr with rs1..rs3 (IPv6) on `tunnel`'s
/// options.
fn v6_service(d: &Daemon<'_>, tunnel: &[&str]) {
    d.rvsadm(&["-C"]);
    let svc = format!("[{VIP6}]:80");
    d.rvsadm(&["-A", "-t", &svc, "-s", "rr"]);
    for n in 1..=3 {
        let rs = format!("[{}]:80", rs_ip6(n));
        let mut args = vec!["-a", "-t", &svc, "-r", &rs, "-i"];
        args.extend_from_slice(tunnel);
        d.rvsadm(&args);
    }
}

#[test]
fn ipv6_gue_and_gre() {
    common::with_lab("tun-types-v6", common::lab_spec(Mode::Tun, 1), |lab| {
        lab.enable_ipv6().expect("making the lab dual-stack");
        let d = Daemon::start(lab, "");
        let port = GUE_PORT.to_string();

        // GUE with a zero UDP checksum, as the kernel sends IPv6 GUE
        // with --tun-nocsum: rvs-decap must take it.
        v6_service(&d, &["--tun-type", "gue", "--tun-port", &port]);
        assert_eq!(
            spread_for(lab, Family::V6, 60),
            counts(&[20, 20, 20]),
            "ipv6 gue: rr 1,1,1"
        );
        let filter = format!("ip6 and udp and dst port {GUE_PORT}");
        let (f, answer_mac) = capture(lab, Family::V6, &filter);
        eprintln!("ipv6 gue, as scapy reads it: {f:?}");
        common_fields(lab, Family::V6, &f, answer_mac);
        let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("<missing>");
        assert_eq!(get("outer_proto"), "17", "{f:?}");
        assert_eq!(get("udp_dport"), port, "{f:?}");
        assert_eq!(get("udp_csum"), "0", "--tun-nocsum: {f:?}");
        assert_eq!(get("gue_proto"), "41", "GUE carries IPv6: {f:?}");

        // GRE without checksum.
        v6_service(&d, &["--tun-type", "gre"]);
        assert_eq!(
            spread_for(lab, Family::V6, 60),
            counts(&[20, 20, 20]),
            "ipv6 gre: rr 1,1,1"
        );
        let (f, answer_mac) = capture(lab, Family::V6, "ip6 proto 47");
        eprintln!("ipv6 gre, as scapy reads it: {f:?}");
        common_fields(lab, Family::V6, &f, answer_mac);
        let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("<missing>");
        assert_eq!(get("outer_proto"), "47", "{f:?}");
        assert_eq!(get("gre_proto"), "0x86dd", "GRE carries IPv6: {f:?}");
        assert_eq!(get("gre_chksum_present"), "0", "{f:?}");
        let list = d.rvsadm(&["-Ln", "--tun-info"]);
        assert!(list.contains(" gre:-c "), "{list}");

        // Established IPv6 flows of each type are encapsulated in XDP.
        spread_in_xdp(lab, &d, Family::V6, "ipv6 gre nocsum");
        v6_service(&d, &["--tun-type", "gue", "--tun-port", &port]);
        spread_in_xdp(lab, &d, Family::V6, "ipv6 gue nocsum");
        v6_service(&d, &["--tun-type", "ipip"]);
        spread_in_xdp(lab, &d, Family::V6, "ipv6 in ipv6");

        // GUE with a checksum over IPv6, filled by the XDP program.
        v6_service(
            &d,
            &["--tun-type", "gue", "--tun-port", &port, "--tun-csum"],
        );
        spread_in_xdp(lab, &d, Family::V6, "ipv6 gue csum");
        let f = capture_request(
            lab,
            Family::V6,
            &format!("ip6 and udp and dst port {GUE_PORT}"),
        );
        eprintln!("ipv6 gue request, as scapy reads it: {f:?}");
        assert_ne!(f["udp_csum"], "0", "--tun-csum in XDP: {f:?}");
        assert_eq!(f["udp_csum_ok"], "True", "{f:?}");
    });
}
