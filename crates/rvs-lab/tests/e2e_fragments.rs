//! Fragmented UDP datagrams through the director (issue 11, item 3): the
//! client sends 4,000- and 60,000-byte datagrams over 1,500-byte links to a
//! UDP service; each real server runs an echo server that sends every
//! datagram back, and the client must get each one back intact (same
//! length, same bytes): the datagram reached one real server whole (its
//! kernel reassembled the fragments the director forwarded), and for NAT
//! the fragmented answer came back through the director. Then a flood of
//! 20,000 first fragments with fresh identifications, into a 1,024-entry
//! fragment table: counted as evictions, and the service still echoes.
//!
//! For TUN each 1,500-byte fragment no longer fits the link once wrapped:
//! over IPv4 the director fragments the outer packet (as the kernel does)
//! and the real server reassembles it before rvs-decap unwraps the
//! fragment; over IPv6 it answers ICMPv6 "packet too big", as the kernel's
//! ip6ip6 does (IPv6 is not fragmented on the way), the client's kernel
//! cuts the datagram smaller and the resend arrives whole (the socket may
//! report the "packet too big" once, as EMSGSIZE), so IPv6 sends each size
//! up to three times, IPv4 exactly once. The flood runs over IPv4.
//!
//! One lab per mode and family (DR, NAT, TUN; 2 RX queues per veth). Needs root;
//! builds rvsd/rvsadm/rvs-decap itself if needed. Loads: a few datagrams
//! and 20,000 small frames per mode, each step bounded in time.

#[allow(dead_code)]
mod common;

use std::time::Duration;

use rvs_lab::{rs_ip, rs_ip6, Lab, Mode, VIP, VIP6};

use common::{counters_of, Daemon};

const PORT: u16 = 9000;

/// The service's address family.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn vip(self) -> String {
        match self {
            Family::V4 => VIP.to_string(),
            Family::V6 => VIP6.to_string(),
        }
    }

    fn server(self, n: usize) -> String {
        match self {
            Family::V4 => rs_ip(n).to_string(),
            Family::V6 => rs_ip6(n).to_string(),
        }
    }

    fn socket(self) -> &'static str {
        match self {
            Family::V4 => "AF_INET",
            Family::V6 => "AF_INET6",
        }
    }

    /// What the echo server binds to: the VIP where the server holds it
    /// (DR, TUN: the answer must come from the VIP), every address for NAT
    /// (the director translates).
    fn bind(self, mode: Mode) -> String {
        match (mode, self) {
            (Mode::Nat, Family::V4) => "0.0.0.0".into(),
            (Mode::Nat, Family::V6) => "::".into(),
            _ => self.vip(),
        }
    }

    /// Sends of each size (see the module doc).
    fn attempts(self) -> u32 {
        match self {
            Family::V4 => 1,
            Family::V6 => 3,
        }
    }
}

/// A UDP service on VIP:9000, round robin over rs1..rs3 port 9000.
fn udp_service(method: &str, family: Family) -> String {
    let mut s = format!(
        "max_fragment_datagrams = 1024\n[[service]]\nprotocol = \"udp\"\naddress = \"{}\"\nport = {PORT}\nscheduler = \"rr\"\n",
        family.vip()
    );
    for n in 1..=3 {
        s.push_str(&format!(
            "  [[service.real_server]]\n  address = \"{}\"\n  port = {PORT}\n  method = \"{method}\"\n",
            family.server(n)
        ));
    }
    s
}

/// The echo server: every datagram straight back to its sender.
fn echo_server(family: Family, bind: &str) -> String {
    format!(
        "import socket\n\
         s = socket.socket(socket.{af}, socket.SOCK_DGRAM)\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)\n\
         s.bind(('{bind}', {PORT}))\n\
         while True:\n\
         \x20   d, a = s.recvfrom(65535)\n\
         \x20   s.sendto(d, a)\n",
        af = family.socket()
    )
}

/// Sends datagrams of the given sizes from one client port and checks each
/// echo; prints `ok N attempt K` per size. Small warm-up datagrams first
/// (they may meet a neighbour resolution on the way), then each size at
/// most `family.attempts()` times.
fn client_script(family: Family, sizes: &[usize]) -> String {
    let sizes: Vec<String> = sizes.iter().map(usize::to_string).collect();
    format!(
        "import socket, sys\n\
         s = socket.socket(socket.{af}, socket.SOCK_DGRAM)\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)\n\
         s.settimeout(1)\n\
         s.connect(('{vip}', {PORT}))\n\
         for attempt in range(10):\n\
         \x20   s.send(b'warm-up')\n\
         \x20   try:\n\
         \x20       if s.recv(100) == b'warm-up':\n\
         \x20           break\n\
         \x20   except socket.timeout:\n\
         \x20       pass\n\
         else:\n\
         \x20   sys.exit('no echo for a small datagram')\n\
         s.settimeout(5 if {attempts} == 1 else 3)\n\
         for n in [{sizes}]:\n\
         \x20   data = bytes((i * 7) % 251 for i in range(n))\n\
         \x20   for attempt in range({attempts}):\n\
         \x20       try:\n\
         \x20           s.send(data)\n\
         \x20           back = s.recv(65535)\n\
         \x20       except socket.timeout:\n\
         \x20           continue\n\
         \x20       except OSError as e:\n\
         \x20           print('attempt', attempt + 1, 'of', n, 'bytes:', e)\n\
         \x20           continue\n\
         \x20       if back != data:\n\
         \x20           sys.exit('echo of %d bytes came back as %d different bytes' % (n, len(back)))\n\
         \x20       print('ok', n, 'attempt', attempt + 1)\n\
         \x20       break\n\
         \x20   else:\n\
         \x20       sys.exit('no echo for %d bytes' % n)\n",
        af = family.socket(),
        vip = family.vip(),
        attempts = family.attempts(),
        sizes = sizes.join(", ")
    )
}

/// 20,000 first fragments (MF set, offset 0) to the service, each with its
/// own identification, through a raw socket: a datagram table flood.
fn flood_script() -> String {
    format!(
        "import socket, struct\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)\n\
         dst = socket.inet_aton('{VIP}')\n\
         src = socket.inet_aton('{client}')\n\
         udp = struct.pack('!HHHH', 40000, {PORT}, 3008, 0) + bytes(1472)\n\
         def csum(h):\n\
         \x20   t = sum(struct.unpack('!10H', h))\n\
         \x20   t = (t & 0xffff) + (t >> 16)\n\
         \x20   t = (t & 0xffff) + (t >> 16)\n\
         \x20   return ~t & 0xffff\n\
         for i in range(20000):\n\
         \x20   h = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), i, 0x2000, 64, 17, 0, src, dst)\n\
         \x20   h = h[:10] + struct.pack('!H', csum(h)) + h[12:]\n\
         \x20   s.sendto(h + udp, ('{VIP}', 0))\n\
         print('sent', 20000)\n",
        client = rvs_lab::CLIENT_IP
    )
}

fn run_python(lab: &Lab, role: &str, script: &str, what: &str) -> String {
    lab.exec_timeout(role, &["python3", "-c", script], Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// The worker publishes its counters every 200 ms: the listing's counters
/// once `ready` says they are there (bounded wait; the caller asserts).
fn counters_when(
    d: &Daemon<'_>,
    ready: impl Fn(&std::collections::BTreeMap<String, u64>) -> bool,
) -> std::collections::BTreeMap<String, u64> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut c = counters_of(&d.listing());
    while !ready(&c) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        c = counters_of(&d.listing());
    }
    c
}

fn suite(mode: Mode, family: Family, name: &str) {
    common::with_lab(name, common::lab_spec(mode, 2), |lab| {
        if family == Family::V6 {
            lab.enable_ipv6().expect("making the lab dual-stack");
        }
        let d = Daemon::start(lab, &udp_service(common::method_name(mode), family));
        let bind = family.bind(mode);
        for n in 1..=3 {
            lab.spawn(
                &format!("rs{n}"),
                &["python3", "-c", &echo_server(family, &bind)],
            )
            .expect("starting an echo server");
        }
        std::thread::sleep(Duration::from_millis(500));
        let out = run_python(lab, "client", &client_script(family, &[4000, 60000]), name);
        assert!(
            out.contains("ok 4000") && out.contains("ok 60000"),
            "{name}: echoes:\n{out}"
        );
        let c = counters_when(&d, |c| c["fragments_followed"] >= 2 + 40);
        eprintln!(
            "{name}: 4,000 and 60,000 bytes echoed intact ({}); fragments tracked {} followed {}",
            out.trim().replace('\n', ", "),
            c["fragments_tracked"],
            c["fragments_followed"]
        );
        assert!(
            c["fragments_followed"] >= 2 + 40,
            "{name}: the later fragments went through the director: {c:?}"
        );
        if family == Family::V6 {
            return;
        }

        let tracked_before = c["fragments_tracked"];
        run_python(lab, "client", &flood_script(), "the fragment flood");
        // Frames the sockets could not take in time are counted there
        // (xsk_*_rx_dropped); those that reached the engine each took an
        // entry, the table holds 1,024, so the rest evicted older ones.
        let flooded =
            |c: &std::collections::BTreeMap<String, u64>| c["fragments_tracked"] - tracked_before;
        let c = counters_when(&d, |c| flooded(c) >= 19_000);
        eprintln!(
            "{name}: flood of 20,000 first fragments: {} tracked, {} evicted, {} lost at the sockets",
            flooded(&c),
            c["fragments_evicted"],
            c["xsk_front_rx_dropped"]
        );
        // On a loaded machine the sockets may lose many (counted): enough
        // must reach the engine to fill the table four times over.
        assert!(
            flooded(&c) >= 4 * 1024,
            "{name}: the flood reached the engine: {c:?}"
        );
        // A flooded IP id may meet a datagram of the echoes above still in
        // the table (same addresses, protocol and id): it takes that entry
        // without evicting one, at most once per earlier datagram.
        assert!(
            c["fragments_evicted"] + tracked_before >= flooded(&c) - 1024,
            "{name}: the 1,024-entry table held, older datagrams were evicted: {c:?}"
        );
        let out = run_python(lab, "client", &client_script(family, &[4000]), name);
        assert!(
            out.contains("ok 4000"),
            "{name}: service after the flood:\n{out}"
        );
        assert!(d.process().is_running(), "{name}: rvsd still runs");
    });
}

#[test]
fn fragmented_datagrams_through_dr() {
    suite(Mode::Dr, Family::V4, "frag-dr");
}

#[test]
fn fragmented_datagrams_through_nat() {
    suite(Mode::Nat, Family::V4, "frag-nat");
}

#[test]
fn fragmented_datagrams_through_tun() {
    suite(Mode::Tun, Family::V4, "frag-tun");
}

#[test]
fn ipv6_fragmented_datagrams_through_dr() {
    suite(Mode::Dr, Family::V6, "frag6-dr");
}

#[test]
fn ipv6_fragmented_datagrams_through_nat() {
    suite(Mode::Nat, Family::V6, "frag6-nat");
}

#[test]
fn ipv6_fragmented_datagrams_through_tun() {
    suite(Mode::Tun, Family::V6, "frag6-tun");
}
