//! End to end: a real server namespace runs `rvs-decap`, a director namespace
//! sends hand-built IPIP packets, and the client namespace must receive the
//! server's answer directly, with the VIP as source.
//!
//! Topology (namespaces created here, removed on drop and on Ctrl-C):
//!
//! ```text
//!  {p}-dir  back 10.77.2.10 ── eth0 10.77.2.11  {p}-rs  eth1 10.77.1.1 ── eth0 10.77.1.2  {p}-cli
//!                                 rvs-decap: rvsdecap0 holds VIP 10.77.100.1
//! ```
//! The server has no route to the client through the director, so a reply
//! seen in `cli` went straight from the real server.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

mod common;
use common::{tcp_syn, udp};
use rvs_netns::{run_in, End, Veth};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 100, 1);
const OTHER: Ipv4Addr = Ipv4Addr::new(10, 77, 100, 9);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 2);
const RIP: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 11);

/// Owns the namespaces and the decapsulator process of one test.
struct Bed {
    nets: rvs_netns::Bed,
    decap: Option<Child>,
}

impl Bed {
    fn ns(&self, role: &str) -> String {
        self.nets.name(role)
    }

    fn new() -> Bed {
        let mut nets = rvs_netns::Bed::new();
        let (dir, rs, cli) = (nets.add("dir"), nets.add("rs"), nets.add("cli"));
        for (a, b) in [
            (
                End::new(&dir, "back").addr("10.77.2.10/24"),
                End::new(&rs, "eth0").addr("10.77.2.11/24"),
            ),
            (
                End::new(&rs, "eth1").addr("10.77.1.1/24"),
                End::new(&cli, "eth0").addr("10.77.1.2/24"),
            ),
        ] {
            Veth::new(a, b)
                .up()
                .create()
                .unwrap_or_else(|e| panic!("{e}"));
        }
        nets.ip(&cli, &["route", "add", "default", "via", "10.77.1.1"]);
        Bed { nets, decap: None }
    }

    fn start_decap(&mut self) {
        let child = rvs_netns::command(&self.ns("rs"), &[env!("CARGO_BIN_EXE_rvs-decap")])
            .args(["--vip", &VIP.to_string(), "--vip", "10.77.100.2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn rvs-decap");
        self.decap = Some(child);
    }

    /// SIGTERM the decapsulator and return (exit ok, stdout, stderr).
    fn stop_decap(&mut self) -> (bool, String, String) {
        let mut child = self.decap.take().expect("decap running");
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "rvs-decap did not exit on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut out = String::new();
        let mut err = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status.success(), out, err)
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        if let Some(mut c) = self.decap.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // `nets` removes the namespaces.
    }
}

/// Raw IPIP socket in the director namespace: the kernel adds the outer
/// header (DIP → RIP, protocol 4), we supply the inner packet.
fn ipip_sender(ns: &str) -> Socket {
    run_in(ns, || {
        Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(4))).expect("raw IPIP socket")
    })
}

fn send_ipip(sock: &Socket, inner: &[u8]) {
    let to = SocketAddr::V4(SocketAddrV4::new(RIP, 0));
    sock.send_to(inner, &to.into()).expect("send IPIP");
}

/// Binds `addr` in `ns`, retrying until rvs-decap has put the VIP on its
/// device (binding a non-local address fails until then).
fn bind_when_ready<T: Send + 'static>(
    ns: &str,
    bind: impl Fn() -> std::io::Result<T> + Send + 'static,
) -> T {
    run_in(ns, move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match bind() {
                Ok(s) => return s,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("VIP never became local in the server namespace: {e}"),
            }
        }
    })
}

#[test]
fn decapsulated_requests_are_answered_directly_from_the_vip() {
    let mut bed = Bed::new();
    bed.start_decap();
    let (dir, rs, cli) = (bed.ns("dir"), bed.ns("rs"), bed.ns("cli"));

    // Servers on the VIP inside the real server.
    let echo = bind_when_ready(&rs, || UdpSocket::bind((VIP, 7777)));
    echo.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let _listener = bind_when_ready(&rs, || TcpListener::bind((VIP, 8080)));
    let done = Arc::new(AtomicBool::new(false));
    let echo_done = Arc::clone(&done);
    let echo_thread = std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut echoed = 0;
        while Instant::now() < deadline && echoed < 20 && !echo_done.load(Ordering::SeqCst) {
            if let Ok((n, from)) = echo.recv_from(&mut buf) {
                echo.send_to(&buf[..n], from).unwrap();
                echoed += 1;
            }
        }
    });

    // Client sockets: a UDP socket for the echo, a raw TCP socket to see the
    // SYN-ACK (the client kernel will answer it with RST; we only look).
    let client_udp = run_in(&cli, || {
        UdpSocket::bind((CLIENT, 40000)).expect("client udp")
    });
    client_udp
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let client_tcp = run_in(&cli, || {
        Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::TCP)).expect("client raw tcp")
    });
    client_tcp
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();

    let sender = ipip_sender(&dir);

    // Malformed and foreign packets first: they must be counted, not injected.
    send_ipip(&sender, &udp(CLIENT, OTHER, 40000, 7777, b"not-for-us"));
    let mut bad = udp(CLIENT, VIP, 40000, 7777, b"bad-checksum");
    bad[10] ^= 0xff;
    send_ipip(&sender, &bad);
    send_ipip(&sender, &[0x45, 0, 0]);

    // UDP: the echo must come back from VIP:7777 to the client directly.
    let request = udp(CLIENT, VIP, 40000, 7777, b"hello-rvs");
    let mut got = None;
    for _ in 0..10 {
        send_ipip(&sender, &request);
        let mut buf = [0u8; 1500];
        if let Ok((n, from)) = client_udp.recv_from(&mut buf) {
            got = Some((buf[..n].to_vec(), from));
            break;
        }
    }
    let (data, from) = got.expect("no UDP reply reached the client");
    assert_eq!(data, b"hello-rvs");
    assert_eq!(from, SocketAddr::V4(SocketAddrV4::new(VIP, 7777)));

    // TCP: a tunnelled SYN to VIP:8080 gets a SYN-ACK from the VIP.
    let syn = tcp_syn(CLIENT, VIP, 40001, 8080);
    let mut synack = false;
    'outer: for _ in 0..10 {
        send_ipip(&sender, &syn);
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            let mut buf = [0u8; 1500];
            let Ok(n) = (&client_tcp).read(&mut buf) else {
                break;
            };
            let p = &buf[..n];
            let ihl = usize::from(p[0] & 0x0f) * 4;
            let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
            let t = &p[ihl..];
            let (sport, dport) = (
                u16::from_be_bytes([t[0], t[1]]),
                u16::from_be_bytes([t[2], t[3]]),
            );
            if src == VIP && sport == 8080 && dport == 40001 && t[13] & 0x12 == 0x12 {
                let ack = u32::from_be_bytes([t[8], t[9], t[10], t[11]]);
                assert_eq!(ack, 0x0102_0305, "SYN-ACK acknowledges our SYN");
                synack = true;
                break 'outer;
            }
        }
    }
    assert!(synack, "no SYN-ACK from the VIP reached the client");

    let (ok, out, err) = bed.stop_decap();
    assert!(ok, "rvs-decap exited with failure: {err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("rvs-decap counters:"))
        .unwrap_or_else(|| panic!("no counters printed; stdout={out} stderr={err}"));
    let counter = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("counter {name} missing in {line}"))
    };
    assert!(counter("forwarded") >= 2, "{line}");
    assert!(counter("not_vip") >= 1, "{line}");
    assert!(counter("inner_malformed") >= 2, "{line}");
    assert_eq!(counter("write_errors"), 0, "{line}");

    // The device is gone with the process.
    let still = Command::new("ip")
        .args(["-n", &rs, "link", "show", "rvsdecap0"])
        .output()
        .unwrap();
    assert!(!still.status.success(), "rvsdecap0 still exists after exit");
    done.store(true, Ordering::SeqCst);
    echo_thread.join().unwrap();
}

#[test]
fn refuses_to_start_without_a_vip() {
    let out = Command::new(env!("CARGO_BIN_EXE_rvs-decap"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--vip"));
}
