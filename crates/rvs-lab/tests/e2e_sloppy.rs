//! Sloppy TCP scheduling takes over a live TCP connection (issue 12,
//! item 2): a client holds one HTTP keep-alive connection through rvsd
//! (DR, `mh`); rvsd is stopped with SIGTERM, which detaches XDP and forgets
//! every connection, and a fresh rvsd with the same configuration starts.
//!
//! 1. Without sloppy_tcp the next request on the connection is dropped
//!    (counted as `no_connection`) and gets no answer;
//! 2. `rvsadm --sysctl sloppy_tcp=1` at run time: the client's
//!    retransmission is scheduled by `mh` to the same real server, which
//!    answers on the same connection, now ESTABLISHED in `-Lnc`;
//! 3. again after a SIGTERM restart with `[sysctl] sloppy_tcp = 1` in the
//!    file: the next request is answered at once by the same server, and
//!    the connection's following segments are forwarded by the XDP program.
//!
//! Needs root; builds rvsd/rvsadm itself if needed. The lab (namespaces,
//! nginx, rvsd) is removed on exit, also on failure. About 10 s.

#[allow(dead_code)]
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

use rvs_lab::{Mode, VIP};

use common::Daemon;

/// The DR service on VIP:80 scheduled by Maglev hashing, and `extra`.
fn mh_service(extra: &str) -> String {
    format!(
        "{extra}{}",
        common::rr_service("dr", &[1, 2, 3]).replace("scheduler = \"rr\"", "scheduler = \"mh\"")
    )
}

/// Sends one keep-alive GET on `s`.
fn send_request(s: &mut TcpStream) {
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {VIP}\r\n\r\n").as_bytes())
        .expect("sending the request");
}

/// Reads one HTTP response from `s` within `timeout`; its body (the
/// server's name), or the I/O error.
fn read_response(s: &mut TcpStream, timeout: Duration) -> std::io::Result<String> {
    let deadline = Instant::now() + timeout;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        s.set_read_timeout(Some(left))?;
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw).into_owned();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or_else(|| panic!("no Content-Length in {head:?}"));
        if body.len() >= len {
            assert!(head.starts_with("HTTP/1.1 200"), "answered {head:?}");
            return Ok(body[..len].trim().to_owned());
        }
    }
}

/// The `-Lnc` line of the client's connection to the VIP.
fn conn_line(d: &Daemon<'_>, client: &str) -> Option<String> {
    d.rvsadm(&["-Lnc"])
        .lines()
        .find(|l| l.contains(client) && l.contains(&format!("{VIP}:80")))
        .map(str::to_owned)
}

fn counter(d: &Daemon<'_>, name: &str) -> u64 {
    d.counters().get(name).copied().unwrap_or(0)
}

#[test]
fn sloppy_tcp_takes_over_a_live_connection_after_a_restart() {
    common::with_lab("sloppy", common::lab_spec(Mode::Dr, 1), |lab| {
        let mut d = Daemon::start(lab, &mh_service(""));
        let client_ns = lab.ns("client");
        let mut conn = rvs_netns::run_in(&client_ns, || {
            TcpStream::connect_timeout(&SocketAddrV4::new(VIP, 80).into(), Duration::from_secs(5))
        })
        .expect("connecting to the VIP");
        conn.set_nodelay(true).unwrap();
        let client = conn.local_addr().unwrap().to_string();
        send_request(&mut conn);
        let server = read_response(&mut conn, Duration::from_secs(5)).expect("first answer");
        assert!(server.starts_with("rs"), "answered by {server:?}");
        eprintln!("sloppy: {client} is served by {server}");

        // 1. A fresh rvsd without sloppy_tcp does not know the connection.
        d.restart();
        assert_eq!(conn_line(&d, &client), None, "SIGTERM forgets connections");
        assert!(d.rvsadm(&["-L", "--sysctl"]).contains("sloppy_tcp = 0\n"));
        send_request(&mut conn);
        let r = read_response(&mut conn, Duration::from_secs(2));
        assert!(
            r.as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut),
            "without sloppy_tcp a mid-flow request must go unanswered: {r:?}"
        );
        let dropped = counter(&d, "drop_no_connection");
        assert!(dropped >= 1, "dropped as no_connection: {:?}", d.counters());
        assert_eq!(conn_line(&d, &client), None);

        // 2. Switched on at run time: the retransmission is scheduled to
        // the same server, which answers on the same connection.
        d.rvsadm(&["--sysctl", "sloppy_tcp=1"]);
        assert!(d.rvsadm(&["-L", "--sysctl"]).contains("sloppy_tcp = 1\n"));
        let again = read_response(&mut conn, Duration::from_secs(10))
            .expect("with sloppy_tcp the retransmitted request is answered");
        assert_eq!(again, server, "mh sends the flow to the same server");
        let line = conn_line(&d, &client).expect("the connection is tracked again");
        assert!(line.contains("ESTABLISHED"), "{line}");

        // 3. From the file, across another SIGTERM restart.
        d.write_config(&mh_service("[sysctl]\nsloppy_tcp = 1\n"));
        d.restart();
        assert!(d.rvsadm(&["-L", "--sysctl"]).contains("sloppy_tcp = 1\n"));
        send_request(&mut conn);
        let third = read_response(&mut conn, Duration::from_secs(3))
            .expect("a fresh rvsd with sloppy_tcp answers at once");
        assert_eq!(third, server);
        let line = conn_line(&d, &client).expect("tracked");
        assert!(line.contains("ESTABLISHED"), "{line}");
        // Established: the next request and its acknowledgements are the
        // XDP program's (the director's front leg forwards them itself).
        let fast = |d: &Daemon<'_>| counter(d, "xdp_front_fast_redirect");
        let before = fast(&d);
        for _ in 0..3 {
            send_request(&mut conn);
            assert_eq!(
                read_response(&mut conn, Duration::from_secs(3)).expect("answered"),
                server
            );
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while fast(&d) < before + 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            fast(&d) >= before + 3,
            "the established flow goes through the fast path: {:?}",
            d.counters()
        );
        drop(conn);
        d.stop();
    });
}
