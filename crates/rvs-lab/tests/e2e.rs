//! End to end: the real rvsd in a lab's director namespace, configured with
//! the real rvsadm, serving curl and wrk from the client, for DR, NAT, TUN
//! and FullNAT. Needs root; builds rvsd/rvsadm/rvs-decap itself if needed.
//!
//! One lab and one rvsd per mode; every check starts by replacing the
//! service (`rvsadm -C`, `-A`, `-a`), so checks do not depend on each other,
//! and all of a mode's checks run and report even when one fails. The three
//! modes run one after another (2 cores).

// Only some of the shared helpers are used here.
#[allow(dead_code)]
mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use etherparse::{Ethernet2Header, IpNumber, Ipv4Header, TcpHeader};
use rvs_lab::demo::{method_flag, real_server_arg, service_arg, Rvsd, Scheduler};
use rvs_lab::{
    rs_ip, unique_prefix, DirectorKind, Lab, LabSpec, Mode, CLIENT_IP, DIR_BACK_IP, VIP,
};

use common::{
    binaries, counts, deltas, estab_resets, established_http, mac, parse_wrk, pcap_frames, reset,
    rvsd_counters, spread, wrk_args, Checks,
};

fn suite(mode: Mode, name: &str) {
    let _one_at_a_time = common::serial();
    let bins = binaries();
    let started = Instant::now();
    let lab = Lab::build(LabSpec {
        prefix: unique_prefix(),
        mode,
        servers: 3,
        director: DirectorKind::None,
        decap_bin: None,
        queues: 1,
        directors: 1,
        vip_route: rvs_lab::VipRoute::FirstDirector,
    })
    .unwrap_or_else(|e| panic!("{name}: building the lab: {e}"));
    let rvsd = Rvsd::start(&lab, &bins.rvsd, &bins.rvsadm)
        .unwrap_or_else(|e| panic!("{name}: starting rvsd: {e}"));
    eprintln!("{name}: lab {} and rvsd up", lab.prefix());

    let mut checks = Checks::new(name);
    checks.run("rr 1,1,1: 60 requests split 20/20/20", || {
        reset(&rvsd, Scheduler::Rr, &[1, 1, 1]);
        assert_eq!(spread(&lab, 60), counts(&[20, 20, 20]));
    });
    checks.run("wrr 1,2,3: 60 requests split 10/20/30", || {
        reset(&rvsd, Scheduler::Wrr, &[1, 2, 3]);
        assert_eq!(spread(&lab, 60), counts(&[10, 20, 30]));
    });
    checks.run("capture on rs1 shows the documented packet", || {
        capture_check(&lab, &rvsd, mode)
    });
    checks.run("wrk keep-alive 10 s: no errors", || {
        reset(&rvsd, Scheduler::Rr, &[1, 1, 1]);
        let args = wrk_args(10);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = lab
            .exec_timeout("client", &args, Duration::from_secs(30))
            .expect("wrk");
        let r = parse_wrk(&out);
        assert!(r.requests > 0, "wrk made no requests:\n{out}");
        assert!(r.errors.is_empty(), "wrk reported errors:\n{out}");
        eprintln!("  wrk: {} requests in 10 s, no errors", r.requests);
    });
    checks.run(
        "weight 0 and removal under load: no lost connection, then avoided",
        || changes_under_load(&lab, &rvsd, mode),
    );
    checks.run(
        "malformed frames to the VIP: counted, dropped, service goes on",
        || malformed(&lab, &rvsd),
    );
    checks.finish(&rvsd);

    let (status, _) = rvsd.stop().expect("stopping rvsd");
    assert!(
        status.success(),
        "{name}: rvsd exited with {status} on SIGTERM"
    );
    drop(lab);
    eprintln!("{name}: done in {:.1?}", started.elapsed());
}

#[test]
fn dr_end_to_end() {
    suite(Mode::Dr, "dr");
}

#[test]
fn nat_end_to_end() {
    suite(Mode::Nat, "nat");
}

#[test]
fn tun_end_to_end() {
    suite(Mode::Tun, "tun");
}

#[test]
fn fullnat_end_to_end() {
    suite(Mode::FullNat, "fullnat");
}

/// A request's first segment as rs1 receives it, against the seed's walk of
/// each mode (shared/seed): DR rewrites only the MACs, NAT the destination
/// address, TUN wraps the untouched packet in DIP → RIP IPIP; FullNAT
/// rewrites both addresses (LIP → RIP).
fn capture_check(lab: &Lab, rvsd: &Rvsd<'_>, mode: Mode) {
    reset(rvsd, Scheduler::Rr, &[1, 1, 1]);
    let rs1_mac = mac(lab, "rs1", "eth0");
    let back_mac = mac(lab, "dir", "back");
    let filter = match mode {
        Mode::Dr => format!("tcp and dst host {VIP} and dst port 80"),
        Mode::Nat | Mode::FullNat => format!("tcp and dst host {} and dst port 80", rs_ip(1)),
        Mode::Tun => "ip proto 4".to_owned(),
    };
    let cap = lab
        .capture("rs1", "eth0", &filter, 1, Duration::from_secs(10))
        .expect("tcpdump on rs1");
    // Three servers, round robin: one of three new connections is rs1's.
    let seen = spread(lab, 3);
    assert_eq!(seen.get("rs1"), Some(&1), "rs1 answered once: {seen:?}");
    let path = cap.finish().expect("capture");
    let frames = pcap_frames(&path);
    let frame = frames
        .first()
        .unwrap_or_else(|| panic!("nothing matching `{filter}` reached rs1 eth0"));

    let (eth, rest) = Ethernet2Header::from_slice(frame).expect("Ethernet header");
    assert_eq!(eth.destination, rs1_mac, "destination MAC is rs1's eth0");
    assert_eq!(eth.source, back_mac, "source MAC is the director's `back`");
    let (outer, rest) = Ipv4Header::from_slice(rest).expect("IPv4 header");
    assert_eq!(
        outer.header_checksum,
        outer.calc_header_checksum(),
        "IPv4 header checksum of {outer:?}"
    );
    let (inner, l4) = match mode {
        Mode::Dr | Mode::Nat | Mode::FullNat => (outer, rest),
        Mode::Tun => {
            assert_eq!(outer.protocol, IpNumber::IPV4, "outer protocol 4 (IPIP)");
            assert_eq!(Ipv4Addr::from(outer.source), DIR_BACK_IP, "outer source");
            assert_eq!(Ipv4Addr::from(outer.destination), rs_ip(1), "outer dest");
            let (inner, rest) = Ipv4Header::from_slice(rest).expect("inner IPv4 header");
            assert_eq!(
                inner.header_checksum,
                inner.calc_header_checksum(),
                "inner IPv4 header checksum"
            );
            (inner, rest)
        }
    };
    let want_dst = match mode {
        Mode::Nat | Mode::FullNat => rs_ip(1),
        Mode::Dr | Mode::Tun => VIP,
    };
    let want_src = match mode {
        Mode::FullNat => rvs_lab::LOCAL_IP,
        Mode::Dr | Mode::Nat | Mode::Tun => CLIENT_IP,
    };
    assert_eq!(inner.protocol, IpNumber::TCP, "{inner:?}");
    assert_eq!(
        Ipv4Addr::from(inner.source),
        want_src,
        "source is the client (FullNAT: the local address)"
    );
    assert_eq!(Ipv4Addr::from(inner.destination), want_dst, "destination");
    let l4_len = usize::from(inner.total_len) - inner.header_len();
    let (tcp, payload) = TcpHeader::from_slice(&l4[..l4_len]).expect("TCP header");
    assert_eq!(tcp.destination_port, 80);
    assert!(tcp.syn, "first segment is the SYN: {tcp:?}");
    assert_eq!(
        tcp.checksum,
        tcp.calc_checksum_ipv4(&inner, payload).expect("checksum"),
        "TCP checksum after the rewrite"
    );
}

/// `rvsadm -e ... -w 0` and `rvsadm -d ...` while 20 keep-alive connections
/// are busy on all three servers: none of them breaks, and afterwards new
/// connections go to the one server left.
fn changes_under_load(lab: &Lab, rvsd: &Rvsd<'_>, mode: Mode) {
    reset(rvsd, Scheduler::Wrr, &[1, 1, 1]);
    let args = wrk_args(10);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let wrk = lab.spawn("client", &args).expect("starting wrk");
    let started = Instant::now();

    // Wait until every server holds some of wrk's connections.
    let deadline = Instant::now() + Duration::from_secs(5);
    let per_server = || -> Vec<usize> {
        ["rs1", "rs2", "rs3"]
            .iter()
            .map(|rs| established_http(lab, rs))
            .collect()
    };
    loop {
        let n = per_server();
        if n.iter().all(|&c| c > 0) || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Let wrk settle (all 20 connected), then take the reference.
    std::thread::sleep(Duration::from_secs(2));
    let before = per_server();
    assert!(
        before.iter().all(|&c| c > 0) && before.iter().sum::<usize>() == 20,
        "wrk's 20 connections should be on every server, established per server: {before:?}"
    );
    let roles = ["client", "rs1", "rs2", "rs3"];
    let resets_before: Vec<u64> = roles.iter().map(|r| estab_resets(lab, r)).collect();
    let svc = service_arg();
    let rs1 = real_server_arg(mode, 1);
    let rs2 = real_server_arg(mode, 2);
    rvsd.rvsadm(&["-e", "-t", &svc, "-r", &rs1, method_flag(mode), "-w", "0"])
        .expect("rvsadm -e -w 0");
    std::thread::sleep(Duration::from_secs(2));
    rvsd.rvsadm(&["-d", "-t", &svc, "-r", &rs2])
        .expect("rvsadm -d");
    std::thread::sleep(Duration::from_secs(2));
    // Still inside wrk's run: closing at its end resets busy connections.
    let during = per_server();
    let resets: Vec<u64> = roles
        .iter()
        .zip(&resets_before)
        .map(|(r, b)| estab_resets(lab, r) - b)
        .collect();
    let still_running = wrk.is_running();

    let deadline = Instant::now() + Duration::from_secs(25);
    while wrk.is_running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, out) = wrk.stop(Duration::from_secs(2)).expect("wrk");
    assert!(
        still_running,
        "wrk ended before the changes were checked ({:?})",
        started.elapsed()
    );
    assert!(status.success(), "wrk: {status}\n{out}");
    let r = parse_wrk(&out);
    eprintln!(
        "  under load: established per server before {before:?}, after the changes {during:?}; \
         resets (client, rs1..3) {resets:?}; wrk {} requests",
        r.requests
    );
    assert!(r.requests > 0, "wrk made no requests:\n{out}");
    assert!(
        r.errors.is_empty(),
        "connections were lost when rs1 was quiesced / rs2 removed:\n{out}"
    );
    // wrk does not notice a connection that stalls or whose server side is
    // reset, so look at the servers too.
    assert_eq!(
        resets,
        vec![0; 4],
        "established connections reset (client, rs1, rs2, rs3) after quiescing rs1 / removing rs2"
    );
    assert_eq!(
        during[..2],
        before[..2],
        "rs1/rs2 must keep every established connection (before {before:?}, after {during:?})"
    );

    let list = rvsd.rvsadm(&["-Ln"]).expect("rvsadm -Ln");
    assert!(
        !list.contains(&rs_ip(2).to_string()),
        "rs2 removed:\n{list}"
    );
    assert_eq!(
        spread(lab, 12),
        counts(&[0, 0, 12]),
        "only rs3 is left\n{list}"
    );
}

/// Frames that claim to be TCP to the VIP but cannot be parsed, sent by the
/// router (the director's neighbour on `front`, so no kernel on the way
/// drops them first) through a raw AF_PACKET socket.
fn malformed(lab: &Lab, rvsd: &Rvsd<'_>) {
    reset(rvsd, Scheduler::Rr, &[1, 1, 1]);
    let front = mac(lab, "dir", "front");
    let router = mac(lab, "router", "rt-dir");
    // Anything of ours the director sends to the server LAN, plain or as
    // the inner packet of IPIP (our frames carry IP id MARK).
    let leak = lab
        .capture(
            "router",
            "p-dir",
            &format!("ip[4:2] = {MARK} or ( ip proto 4 and ip[24:2] = {MARK} )"),
            1,
            Duration::from_secs(4),
        )
        .expect("tcpdump on the server LAN");
    let mut prev = rvsd_counters(lab, rvsd);

    let kinds: [(&str, Builder); 5] = [
        ("IHL below 5", |sp| [ip(0x44, 40), tcp(sp, 0x50)].concat()),
        ("IHL past the packet", |sp| {
            [ip(0x4f, 40), tcp(sp, 0x50)].concat()
        }),
        ("TCP header truncated", |sp| {
            [ip(0x45, 30), tcp(sp, 0x50)[..10].to_vec()].concat()
        }),
        ("TCP data offset below 5", |sp| {
            [ip(0x45, 40), tcp(sp, 0x30)].concat()
        }),
        ("total length past the frame", |sp| {
            [ip(0x45, 200), tcp(sp, 0x50)].concat()
        }),
    ];
    const EACH: u64 = 10;
    let mut report = Vec::new();
    let mut ok = true;
    for (k, (what, build)) in kinds.iter().enumerate() {
        let frames: Vec<String> = (0..EACH as u16)
            .map(|i| {
                let mut f = Vec::new();
                f.extend_from_slice(&front);
                f.extend_from_slice(&router);
                f.extend_from_slice(&[0x08, 0x00]);
                f.extend(build(40000 + (k as u16) * 100 + i));
                hex(&f)
            })
            .collect();
        let mut argv = vec!["python3", "-c", SEND_FRAMES, "rt-dir"];
        argv.extend(frames.iter().map(String::as_str));
        lab.exec("router", &argv).expect("sending raw frames");
        // Workers publish counters every 200 ms.
        let deadline = Instant::now() + Duration::from_secs(3);
        let d = loop {
            let now = rvsd_counters(lab, rvsd);
            let d = deltas(&prev, &now);
            if d.get("drop_malformed").copied().unwrap_or(0) >= EACH || Instant::now() >= deadline {
                prev = now;
                break d;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let counted = d.get("drop_malformed").copied().unwrap_or(0);
        ok &= counted >= EACH;
        report.push(format!("{what}: {d:?}"));
    }
    for l in &report {
        eprintln!("  malformed: {l}");
    }
    let leaked = pcap_frames(&leak.finish().expect("capture"));

    // Service goes on.
    let seen = spread(lab, 3);
    assert_eq!(seen, counts(&[1, 1, 1]), "service after malformed frames");
    assert!(
        ok,
        "every kind of malformed frame ({EACH} each) should raise drop_malformed by {EACH}; counters that moved:\n{}",
        report.join("\n")
    );
    assert!(
        leaked.is_empty(),
        "a malformed frame reached the server LAN: {:02x?}",
        leaked.first()
    );
    assert!(rvsd.is_running(), "rvsd died");
}

/// Builds one malformed IP packet for a source port.
type Builder = fn(u16) -> Vec<u8>;

/// Sends each hex argument after the first (the device) as one frame.
const SEND_FRAMES: &str = "\
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
for h in sys.argv[2:]:
    s.send(bytes.fromhex(h))
";

/// IP identification of the hand-made frames, to recognise them anywhere.
const MARK: u16 = 0x5256;

/// An IPv4 header client → VIP, protocol TCP, id [`MARK`], with `ver_ihl`
/// and `total_len` as given and a checksum over its 20 bytes.
fn ip(ver_ihl: u8, total_len: u16) -> Vec<u8> {
    let mut h = vec![ver_ihl, 0];
    h.extend_from_slice(&total_len.to_be_bytes());
    h.extend_from_slice(&MARK.to_be_bytes());
    h.extend_from_slice(&[0x40, 0, 64, 6, 0, 0]);
    h.extend_from_slice(&CLIENT_IP.octets());
    h.extend_from_slice(&VIP.octets());
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let ck = !(sum as u16);
    h[10..12].copy_from_slice(&ck.to_be_bytes());
    h
}

/// A 20-byte TCP SYN to port 80 with `doff_byte` (data offset << 4).
fn tcp(sport: u16, doff_byte: u8) -> Vec<u8> {
    let mut t = sport.to_be_bytes().to_vec();
    t.extend_from_slice(&80u16.to_be_bytes());
    t.extend_from_slice(&[
        0, 0, 0, 1, 0, 0, 0, 0, doff_byte, 0x02, 0xff, 0xff, 0, 0, 0, 0,
    ]);
    t
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn demo_command_runs_dr_and_prints_the_spread() {
    let _one_at_a_time = common::serial();
    binaries();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rvs-lab"))
        .args([
            "demo",
            "--mode",
            "dr",
            "--requests",
            "6",
            "--weights",
            "1,2",
        ])
        .args(["--scheduler", "wrr", "--prefix", &unique_prefix()])
        .output()
        .expect("running rvs-lab demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "rvs-lab demo failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "# rvsadm -A -t 10.0.100.1:80 -s wrr",
        "# rvsadm -a -t 10.0.100.1:80 -r 10.0.2.12 -g -w 2",
        "rs1  10.0.2.11  weight 1       2 requests",
        "rs2  10.0.2.12  weight 2       4 requests",
        "TCP  10.0.100.1:80 wrr",
        "lab torn down",
    ] {
        assert!(
            stdout.contains(want),
            "demo output lacks {want:?}:\n{stdout}"
        );
    }
    let prefix = stdout
        .lines()
        .find_map(|l| l.strip_prefix("lab ")?.split_whitespace().next())
        .expect("the demo names its lab")
        .to_owned();
    let left = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let left = String::from_utf8_lossy(&left.stdout);
    assert!(
        !left.contains(&format!("{prefix}-")),
        "the demo left namespaces behind:\n{left}"
    );
}
