//! SCTP services end to end (issue 16, items 3 and 4) in every forwarding
//! method, on veths with 4 RX queues: the real rvsd in the lab's director
//! namespace balances `protocol = "sctp"` VIP:5000, round robin, over three
//! real servers, by DR, TUN (IPIP, rvs-decap on the servers), NAT to the
//! servers' port 5999 and FullNAT to the same (so the director rewrites the
//! port, and the XDP program updates the CRC32c).
//!
//! This kernel has no SCTP sockets, so both ends are played by the test
//! over raw IPv4 sockets of protocol 132 (the kernel hands such packets to
//! raw sockets with or without an SCTP module, and then sends no ICMP):
//! - a client in the client namespace sets up 30 associations one after
//!   the other (INIT, COOKIE ECHO), sends 10 DATA chunks on each, each
//!   answered by a SACK, and shuts it down (SHUTDOWN, SHUTDOWN COMPLETE);
//! - a responder on every real server answers as a server's SCTP stack
//!   would: INIT ACK with a state cookie naming the server, COOKIE ACK, a
//!   SACK per DATA, SHUTDOWN ACK; like a stack, it ignores packets whose
//!   CRC32c is wrong (and counts them), and so does the client.
//!
//! Checked: every association completes (so every packet the director
//! rewrote kept a right CRC32c, both ways); rr 1,1,1 gives 10/10/10 by the
//! servers' own word; no server saw a bad CRC; the DATA chunks (and, where
//! replies cross the director, the SACKs) were forwarded by the XDP program
//! (its counters grow by at least their number); `-Lnc` lists the 30
//! associations as SCTP, CLOSED once shut down.
//!
//! Needs root; builds rvsd/rvsadm/rvs-decap itself if needed. Load: 4 × 30
//! associations of 14 packets each way, every wait bounded (3 s).

#[allow(dead_code)]
mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use rvs_lab::{rs_ip, Lab, Mode, CLIENT_IP, LOCAL_IPS, VIP};

use common::{counts, Daemon};

/// The service's port.
const SERVICE_PORT: u16 = 5000;
/// The real servers' port under NAT and FullNAT: not the service's, so the
/// director rewrites it.
const SERVER_PORT: u16 = 5999;
/// Associations per mode, and DATA chunks per association.
const ASSOCIATIONS: u16 = 30;
const DATA_PER_ASSOCIATION: u32 = 10;
/// How long one answer may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);

const IPPROTO_SCTP: i32 = 132;

/// Chunk types (RFC 9260 §3.2).
mod chunk {
    pub(super) const DATA: u8 = 0;
    pub(super) const INIT: u8 = 1;
    pub(super) const INIT_ACK: u8 = 2;
    pub(super) const SACK: u8 = 3;
    pub(super) const SHUTDOWN: u8 = 7;
    pub(super) const SHUTDOWN_ACK: u8 = 8;
    pub(super) const COOKIE_ECHO: u8 = 10;
    pub(super) const COOKIE_ACK: u8 = 11;
    pub(super) const SHUTDOWN_COMPLETE: u8 = 14;
}

/// An SCTP packet with one chunk, its CRC32c filled in.
fn sctp_packet(sport: u16, dport: u16, vtag: u32, kind: u8, flags: u8, value: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(16 + value.len() + 3);
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&vtag.to_be_bytes());
    p.extend_from_slice(&[0; 4]);
    p.extend_from_slice(&[kind, flags]);
    p.extend_from_slice(&((4 + value.len()) as u16).to_be_bytes());
    p.extend_from_slice(value);
    p.resize(p.len().next_multiple_of(4), 0);
    rvs_wire::sctp::Packet::new_unchecked(&mut p[..]).fill_checksum();
    p
}

/// `payload` behind an IPv4 header `src` → `dst`, protocol 132, DF (the
/// kernel fills in the checksum and the identification of a raw socket's
/// IP_HDRINCL packet).
fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let len = (20 + payload.len()) as u16;
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&len.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, IPPROTO_SCTP as u8, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    p
}

/// One received SCTP packet, as far as these peers read it.
#[derive(Debug)]
struct Received {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    crc_ok: bool,
    kind: u8,
    /// The first chunk's value.
    value: Vec<u8>,
}

/// Parses an IPv4 packet of protocol 132 as a raw socket hands it over.
fn parse(b: &[u8]) -> Option<Received> {
    let ihl = usize::from(b.first()? & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*b.get(2)?, *b.get(3)?]));
    let sctp = b.get(ihl..total.min(b.len()))?;
    let packet = rvs_wire::sctp::Packet::new_checked(sctp).ok()?;
    let chunk_len = usize::from(u16::from_be_bytes([*sctp.get(14)?, *sctp.get(15)?]));
    Some(Received {
        src: Ipv4Addr::new(b[12], b[13], b[14], b[15]),
        dst: Ipv4Addr::new(b[16], b[17], b[18], b[19]),
        sport: packet.src_port(),
        dport: packet.dst_port(),
        crc_ok: packet.verify_checksum(),
        kind: *sctp.get(12)?,
        value: sctp.get(16..chunk_len.max(4) + 12)?.to_vec(),
    })
}

/// A raw IPv4 socket of protocol 132 that writes its own IP headers.
fn raw_socket() -> Socket {
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(IPPROTO_SCTP)))
        .expect("raw SCTP socket (needs root)");
    s.set_header_included_v4(true).expect("IP_HDRINCL");
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("SO_RCVTIMEO");
    s
}

fn send(sock: &Socket, src: Ipv4Addr, dst: Ipv4Addr, sctp: &[u8]) {
    let to = SockAddr::from(SocketAddrV4::new(dst, 0));
    sock.send_to(&ipv4_packet(src, dst, sctp), &to)
        .unwrap_or_else(|e| panic!("sending SCTP {src} -> {dst}: {e}"));
}

/// The next packet on `sock`, or None after its read timeout.
fn receive(mut sock: &Socket) -> Option<Received> {
    let mut buf = [0u8; 2048];
    let n = sock.read(&mut buf).ok()?;
    parse(&buf[..n])
}

/// What a real server's responder saw.
#[derive(Debug, Default)]
struct ServerReport {
    bad_crc: u64,
    data: u64,
    completed: u64,
}

/// A real server's SCTP stack, played until `stop`: answers as a server
/// would, from the address and port the packet came to, with the
/// client's verification tag; the state cookie names the server.
fn respond(name: String, stop: Arc<AtomicBool>) -> ServerReport {
    let sock = raw_socket();
    let mut report = ServerReport::default();
    let mut tags: HashMap<(Ipv4Addr, u16), u32> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        let Some(r) = receive(&sock) else { continue };
        if !r.crc_ok {
            report.bad_crc += 1;
            continue;
        }
        let peer = (r.src, r.sport);
        let (kind, value) = match r.kind {
            chunk::INIT if r.value.len() >= 16 => {
                tags.insert(peer, u32::from_be_bytes(r.value[..4].try_into().unwrap()));
                let cookie = name.as_bytes();
                let mut v = Vec::new();
                v.extend_from_slice(&0x5e5e_0001u32.to_be_bytes()); // initiate tag
                v.extend_from_slice(&65536u32.to_be_bytes()); // a_rwnd
                v.extend_from_slice(&1u16.to_be_bytes()); // outbound streams
                v.extend_from_slice(&1u16.to_be_bytes()); // inbound streams
                v.extend_from_slice(&1u32.to_be_bytes()); // initial TSN
                v.extend_from_slice(&7u16.to_be_bytes()); // State Cookie
                v.extend_from_slice(&((4 + cookie.len()) as u16).to_be_bytes());
                v.extend_from_slice(cookie);
                (chunk::INIT_ACK, v)
            }
            chunk::COOKIE_ECHO => (chunk::COOKIE_ACK, Vec::new()),
            chunk::DATA if r.value.len() >= 4 => {
                report.data += 1;
                let mut v = r.value[..4].to_vec(); // cumulative TSN ack
                v.extend_from_slice(&65536u32.to_be_bytes());
                v.extend_from_slice(&[0; 4]); // no gap blocks, no duplicates
                (chunk::SACK, v)
            }
            chunk::SHUTDOWN => (chunk::SHUTDOWN_ACK, Vec::new()),
            chunk::SHUTDOWN_COMPLETE => {
                report.completed += 1;
                tags.remove(&peer);
                continue;
            }
            _ => continue,
        };
        let vtag = tags.get(&peer).copied().unwrap_or(0);
        let p = sctp_packet(r.dport, r.sport, vtag, kind, 0, &value);
        send(&sock, r.dst, r.src, &p);
    }
    report
}

/// The client's side of association `i`: handshake, DATA and SACKs,
/// shutdown. Returns the server its state cookie names.
fn associate(sock: &Socket, i: u16) -> Result<String, String> {
    let cport = 41000 + i;
    let my_tag = 0x0c00_0000 | u32::from(i);
    let expect = |kind: u8, what: &str| -> Result<Received, String> {
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        while Instant::now() < deadline {
            let Some(r) = receive(sock) else { continue };
            if r.src != VIP || r.sport != SERVICE_PORT || r.dport != cport {
                continue;
            }
            if !r.crc_ok {
                return Err(format!("association {i}: {what} with a wrong CRC32c"));
            }
            if r.kind == kind {
                return Ok(r);
            }
        }
        Err(format!(
            "association {i}: no {what} within {ANSWER_TIMEOUT:?}"
        ))
    };
    let to_vip = |vtag: u32, kind: u8, flags: u8, value: &[u8]| {
        let p = sctp_packet(cport, SERVICE_PORT, vtag, kind, flags, value);
        send(sock, CLIENT_IP, VIP, &p);
    };

    let mut init = Vec::new();
    init.extend_from_slice(&my_tag.to_be_bytes());
    init.extend_from_slice(&65536u32.to_be_bytes());
    init.extend_from_slice(&1u16.to_be_bytes());
    init.extend_from_slice(&1u16.to_be_bytes());
    init.extend_from_slice(&1u32.to_be_bytes());
    to_vip(0, chunk::INIT, 0, &init);
    let ack = expect(chunk::INIT_ACK, "INIT ACK")?;
    let peer_tag = u32::from_be_bytes(ack.value[..4].try_into().unwrap());
    // The State Cookie parameter follows the 16 fixed bytes.
    let param = ack.value.get(16..).ok_or("INIT ACK without parameters")?;
    let plen = usize::from(u16::from_be_bytes([param[2], param[3]]));
    let cookie = param.get(4..plen).ok_or("short state cookie")?.to_vec();
    to_vip(peer_tag, chunk::COOKIE_ECHO, 0, &cookie);
    expect(chunk::COOKIE_ACK, "COOKIE ACK")?;

    for tsn in 1..=DATA_PER_ASSOCIATION {
        let mut v = Vec::new();
        v.extend_from_slice(&tsn.to_be_bytes());
        v.extend_from_slice(&0u16.to_be_bytes()); // stream 0
        v.extend_from_slice(&((tsn - 1) as u16).to_be_bytes()); // SSN
        v.extend_from_slice(&0u32.to_be_bytes()); // PPID
        v.extend_from_slice(format!("message {tsn} of association {i}").as_bytes());
        to_vip(peer_tag, chunk::DATA, 0x03, &v);
        let sack = expect(chunk::SACK, "SACK")?;
        let acked = u32::from_be_bytes(sack.value[..4].try_into().unwrap());
        if acked != tsn {
            return Err(format!("association {i}: SACK for TSN {acked}, sent {tsn}"));
        }
    }

    to_vip(
        peer_tag,
        chunk::SHUTDOWN,
        0,
        &DATA_PER_ASSOCIATION.to_be_bytes(),
    );
    expect(chunk::SHUTDOWN_ACK, "SHUTDOWN ACK")?;
    to_vip(peer_tag, chunk::SHUTDOWN_COMPLETE, 0, &[]);
    Ok(String::from_utf8_lossy(&cookie).into_owned())
}

/// The responders on rs1..rs3, stopped and reported by [`Responders::stop`].
struct Responders {
    stop: Arc<AtomicBool>,
    threads: Vec<(String, JoinHandle<ServerReport>)>,
}

impl Responders {
    fn start(lab: &Lab) -> Responders {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (1..=3)
            .map(|n| {
                let name = format!("rs{n}");
                let (flag, who) = (Arc::clone(&stop), name.clone());
                let t = rvs_netns::spawn_in(&lab.ns(&name), move || respond(who, flag));
                (name, t)
            })
            .collect();
        // The sockets exist before the first INIT.
        std::thread::sleep(Duration::from_millis(200));
        Responders { stop, threads }
    }

    fn stop(self) -> BTreeMap<String, ServerReport> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .map(|(name, t)| (name, t.join().expect("responder thread")))
            .collect()
    }
}

/// rvsd's file: the SCTP service over rs1..rs3 by `method`.
fn config(mode: Mode) -> String {
    let method = common::method_name(mode);
    let translates = matches!(mode, Mode::Nat | Mode::FullNat);
    let port = if translates {
        SERVER_PORT
    } else {
        SERVICE_PORT
    };
    let mut s = format!(
        "[[service]]\nprotocol = \"sctp\"\naddress = \"{VIP}\"\nport = {SERVICE_PORT}\nscheduler = \"rr\"\n"
    );
    if mode == Mode::FullNat {
        s.push_str(&format!("local_addresses = [\"{}\"]\n", LOCAL_IPS[0]));
    }
    for n in 1..=3 {
        s.push_str(&format!(
            "[[service.real_server]]\naddress = \"{}\"\nport = {port}\nmethod = \"{method}\"\n",
            rs_ip(n)
        ));
    }
    s
}

fn run_mode(mode: Mode, name: &str) {
    common::with_lab(name, common::lab_spec(mode, 4), |lab| {
        let d = Daemon::start(lab, &config(mode));
        let responders = Responders::start(lab);
        let before = d.counters();
        let client_ns = lab.ns("client");
        let results = rvs_netns::run_in(&client_ns, || {
            let sock = raw_socket();
            // The first failure ends the run.
            (0..ASSOCIATIONS)
                .map(|i| associate(&sock, i))
                .collect::<Result<Vec<_>, _>>()
        });
        let after = d.counters();
        let reports = responders.stop();
        eprintln!("{name}: servers {reports:?}");

        let servers = results.unwrap_or_else(|e| {
            panic!("{name}: {e}\n{}\nservers: {reports:?}", d.rvsadm(&["-Lnc"]))
        });
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for who in servers {
            *seen.entry(who).or_insert(0) += 1;
        }
        let per_server = usize::from(ASSOCIATIONS) / 3;
        assert_eq!(seen, counts(&[per_server; 3]), "{name}: rr 1,1,1");
        for (rs, r) in &reports {
            assert_eq!(r.bad_crc, 0, "{name}: {rs} saw a wrong CRC32c: {r:?}");
            assert_eq!(
                r.data,
                per_server as u64 * u64::from(DATA_PER_ASSOCIATION),
                "{name}: {rs}'s DATA chunks: {r:?}"
            );
            assert_eq!(r.completed, per_server as u64, "{name}: {rs}: {r:?}");
        }

        // The DATA chunks, and where replies cross the director the
        // SACKs, went through the XDP program.
        let grew =
            |k: &str| after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0);
        let data = u64::from(ASSOCIATIONS) * u64::from(DATA_PER_ASSOCIATION);
        let to_servers = grew("xdp_front_fast_redirect");
        assert!(
            to_servers >= data,
            "{name}: {to_servers} frames forwarded in XDP toward the servers, {data} DATA sent"
        );
        if matches!(mode, Mode::Nat | Mode::FullNat) {
            let to_client = grew("xdp_back_fast_redirect");
            assert!(
                to_client >= data,
                "{name}: {to_client} replies forwarded in XDP, {data} SACKs sent"
            );
        }

        // -Lnc: the associations, SCTP, closed.
        let list = d.rvsadm(&["-Lnc"]);
        let ours: Vec<&str> = list
            .lines()
            .filter(|l| l.contains(&format!("{CLIENT_IP}:41")))
            .collect();
        assert_eq!(ours.len(), usize::from(ASSOCIATIONS), "{name}:\n{list}");
        for l in &ours {
            let w: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(w.first(), Some(&"SCTP"), "{name}: {l}");
            assert!(w.contains(&"CLOSED"), "{name}: {l}\n{list}");
        }
    });
}

#[test]
fn sctp_by_dr() {
    run_mode(Mode::Dr, "sctp-dr");
}

#[test]
fn sctp_by_tun() {
    run_mode(Mode::Tun, "sctp-tun");
}

#[test]
fn sctp_by_nat_to_another_port() {
    run_mode(Mode::Nat, "sctp-nat");
}

#[test]
fn sctp_by_fullnat() {
    run_mode(Mode::FullNat, "sctp-fullnat");
}
