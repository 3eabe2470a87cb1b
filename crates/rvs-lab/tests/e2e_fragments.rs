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
//! the director fragments the outer packet (as the kernel does) and the
//! real server reassembles it before rvs-decap unwraps the fragment.
//!
//! One lab per mode (DR, NAT, TUN; 2 RX queues per veth). Needs root;
//! builds rvsd/rvsadm/rvs-decap itself if needed. Loads: a few datagrams
//! and 20,000 small frames per mode, each step bounded in time.

#[allow(dead_code)]
mod common;

use std::time::Duration;

use rvs_lab::{rs_ip, rs_ip6, Lab, Mode, VIP, VIP6};

use common::{counters_of, Daemon};

const PORT: u16 = 9000;

/// A UDP service on VIP:9000, round robin over rs1..rs3 port 9000.
fn udp_service(method: &str) -> String {
    let mut s = format!(
        "max_fragment_datagrams = 1024\n[[service]]\nprotocol = \"udp\"\naddress = \"{VIP}\"\nport = {PORT}\nscheduler = \"rr\"\n"
    );
    for n in 1..=3 {
        s.push_str(&format!(
            "  [[service.real_server]]\n  address = \"{}\"\n  port = {PORT}\n  method = \"{method}\"\n",
            rs_ip(n)
        ));
    }
    s
}

/// The echo server: every datagram straight back to its sender. Bound to
/// the VIP where the server holds it (DR, TUN: the answer must come from
/// the VIP), to every address for NAT (the director translates).
fn echo_server(bind: &str) -> String {
    format!(
        "import socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)\n\
         s.bind(('{bind}', {PORT}))\n\
         while True:\n\
         \x20   d, a = s.recvfrom(65535)\n\
         \x20   s.sendto(d, a)\n"
    )
}

/// Sends datagrams of the given sizes from one client port and checks each
/// echo; prints `ok N` per size. Small warm-up datagrams first (they may
/// meet a neighbour resolution on the way), each size then exactly once.
fn client_script(sizes: &[usize]) -> String {
    let sizes: Vec<String> = sizes.iter().map(usize::to_string).collect();
    format!(
        "import socket, sys\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)\n\
         s.settimeout(1)\n\
         s.connect(('{VIP}', {PORT}))\n\
         for attempt in range(10):\n\
         \x20   s.send(b'warm-up')\n\
         \x20   try:\n\
         \x20       if s.recv(100) == b'warm-up':\n\
         \x20           break\n\
         \x20   except socket.timeout:\n\
         \x20       pass\n\
         else:\n\
         \x20   sys.exit('no echo for a small datagram')\n\
         s.settimeout(5)\n\
         for n in [{sizes}]:\n\
         \x20   data = bytes((i * 7) % 251 for i in range(n))\n\
         \x20   s.send(data)\n\
         \x20   try:\n\
         \x20       back = s.recv(65535)\n\
         \x20   except socket.timeout:\n\
         \x20       sys.exit('no echo for %d bytes' % n)\n\
         \x20   if back != data:\n\
         \x20       sys.exit('echo of %d bytes came back as %d different bytes' % (n, len(back)))\n\
         \x20   print('ok', n)\n",
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

fn suite(mode: Mode, name: &str) {
    common::with_lab(name, common::lab_spec(mode, 2), |lab| {
        let d = Daemon::start(lab, &udp_service(common::method_name(mode)));
        let bind = if mode == Mode::Nat {
            "0.0.0.0".to_owned()
        } else {
            VIP.to_string()
        };
        for n in 1..=3 {
            lab.spawn(&format!("rs{n}"), &["python3", "-c", &echo_server(&bind)])
                .expect("starting an echo server");
        }
        std::thread::sleep(Duration::from_millis(500));
        let out = run_python(lab, "client", &client_script(&[4000, 60000]), name);
        assert!(
            out.contains("ok 4000") && out.contains("ok 60000"),
            "{name}: echoes:\n{out}"
        );
        // The worker publishes its counters every 200 ms (bounded wait).
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut c = counters_of(&d.listing());
        while c["fragments_followed"] < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            c = counters_of(&d.listing());
        }
        eprintln!(
            "{name}: 4,000 and 60,000 bytes echoed intact; fragments tracked {} followed {}",
            c["fragments_tracked"], c["fragments_followed"]
        );
        assert!(
            c["fragments_followed"] >= 2 + 40,
            "{name}: the later fragments went through the director: {c:?}"
        );

        let tracked_before = c["fragments_tracked"];
        run_python(lab, "client", &flood_script(), "the fragment flood");
        // Frames the sockets could not take in time are counted there
        // (xsk_*_rx_dropped); those that reached the engine each took an
        // entry, the table holds 1,024, so the rest evicted older ones.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut c = counters_of(&d.listing());
        let flooded =
            |c: &std::collections::BTreeMap<String, u64>| c["fragments_tracked"] - tracked_before;
        while flooded(&c) < 19_000 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            c = counters_of(&d.listing());
        }
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
        assert!(
            c["fragments_evicted"] >= flooded(&c) - 1024,
            "{name}: the 1,024-entry table held, older datagrams were evicted: {c:?}"
        );
        let out = run_python(lab, "client", &client_script(&[4000]), name);
        assert!(
            out.contains("ok 4000"),
            "{name}: service after the flood:\n{out}"
        );
        assert!(d.process().is_running(), "{name}: rvsd still runs");
    });
}

/// The IPv6 variant: a UDP service on [VIP6]:9000 over IPv6 real servers.
fn udp_service6(method: &str) -> String {
    let mut s = format!(
        "[[service]]\nprotocol = \"udp\"\naddress = \"{VIP6}\"\nport = {PORT}\nscheduler = \"rr\"\n"
    );
    for n in 1..=3 {
        s.push_str(&format!(
            "  [[service.real_server]]\n  address = \"{}\"\n  port = {PORT}\n  method = \"{method}\"\n",
            rs_ip6(n)
        ));
    }
    s
}

/// The echo server over IPv6.
fn echo_server6(bind: &str) -> String {
    echo_server(bind).replace("AF_INET,", "AF_INET6,")
}

/// The client over IPv6. Each size may be sent up to three times: through
/// TUN a full-size fragment no longer fits the link once wrapped and the
/// director answers ICMPv6 "packet too big", as the kernel's ip6ip6 does
/// (IPv6 is not fragmented on the way); the client's kernel then cuts the
/// datagram smaller and the next send arrives whole (the socket may report
/// the "packet too big" once, as EMSGSIZE).
fn client_script6(sizes: &[usize]) -> String {
    let sizes: Vec<String> = sizes.iter().map(usize::to_string).collect();
    format!(
        "import socket, sys\n\
         s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)\n\
         s.settimeout(1)\n\
         s.connect(('{VIP6}', {PORT}))\n\
         for attempt in range(10):\n\
         \x20   s.send(b'warm-up')\n\
         \x20   try:\n\
         \x20       if s.recv(100) == b'warm-up':\n\
         \x20           break\n\
         \x20   except socket.timeout:\n\
         \x20       pass\n\
         else:\n\
         \x20   sys.exit('no echo for a small datagram')\n\
         s.settimeout(3)\n\
         for n in [{sizes}]:\n\
         \x20   data = bytes((i * 7) % 251 for i in range(n))\n\
         \x20   for attempt in range(3):\n\
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
        sizes = sizes.join(", ")
    )
}

fn suite6(mode: Mode, name: &str) {
    common::with_lab(name, common::lab_spec(mode, 2), |lab| {
        lab.enable_ipv6().expect("making the lab dual-stack");
        let d = Daemon::start(lab, &udp_service6(common::method_name(mode)));
        let bind = if mode == Mode::Nat {
            "::".to_owned()
        } else {
            VIP6.to_string()
        };
        for n in 1..=3 {
            lab.spawn(&format!("rs{n}"), &["python3", "-c", &echo_server6(&bind)])
                .expect("starting an echo server");
        }
        std::thread::sleep(Duration::from_millis(500));
        let out = run_python(lab, "client", &client_script6(&[4000, 60000]), name);
        assert!(
            out.contains("ok 4000") && out.contains("ok 60000"),
            "{name}: echoes:\n{out}"
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut c = counters_of(&d.listing());
        while c["fragments_followed"] < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            c = counters_of(&d.listing());
        }
        eprintln!(
            "{name}: IPv6 4,000 and 60,000 bytes echoed intact ({}); fragments tracked {} followed {}",
            out.trim().replace('\n', ", "),
            c["fragments_tracked"],
            c["fragments_followed"]
        );
        assert!(
            c["fragments_followed"] >= 2 + 40,
            "{name}: the later fragments went through the director: {c:?}"
        );
    });
}

#[test]
fn ipv6_fragmented_datagrams_through_dr() {
    suite6(Mode::Dr, "frag6-dr");
}

#[test]
fn ipv6_fragmented_datagrams_through_nat() {
    suite6(Mode::Nat, "frag6-nat");
}

#[test]
fn ipv6_fragmented_datagrams_through_tun() {
    suite6(Mode::Tun, "frag6-tun");
}

#[test]
fn fragmented_datagrams_through_dr() {
    suite(Mode::Dr, "frag-dr");
}

#[test]
fn fragmented_datagrams_through_nat() {
    suite(Mode::Nat, "frag-nat");
}

#[test]
fn fragmented_datagrams_through_tun() {
    suite(Mode::Tun, "frag-tun");
}
