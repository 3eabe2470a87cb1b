//! Idle, slow and huge clients against the real server (fake handler):
//! each is cut off or made to wait, and the operator's client is still
//! answered meanwhile.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use rvs_api::server::Limits;
use rvs_api::testing::{empty_listing as empty, FakeHandler, Served};
use rvs_api::{Client, Command, Listing};

fn serve(path: &Path, limits: Limits) -> Served {
    Served::start_with(path, FakeHandler::new(empty(), Vec::new()), limits).unwrap()
}

/// Whether the server has closed `s` (EOF or reset), waiting up to `wait`.
fn closed_by_server(s: &mut UnixStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut b = [0u8; 512];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            // A reply (e.g. a timeout's refusal) before the close.
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// What the server sends until it closes (or 5 s pass).
fn read_reply(s: &mut UnixStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = Vec::new();
    let _ = s.read_to_end(&mut b);
    String::from_utf8_lossy(&b).into_owned()
}

/// The listing, and how long it took.
fn timed_listing(path: &Path) -> (Result<Listing, rvs_api::ClientError>, Duration) {
    let t = Instant::now();
    let r = Client::new(path).listing();
    (r, t.elapsed())
}

#[test]
fn idle_connections_beyond_the_cap_do_not_shut_out_a_client() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rvsd.sock");
    // Idle connections are not cut off by time in this test: only the cap
    // can make room.
    let _served = serve(
        &path,
        Limits {
            max_connections: 8,
            header_timeout: Duration::from_secs(60),
            ..Limits::default()
        },
    );
    // One connection in the middle of a request: it is busy, never closed
    // to make room.
    let mut busy = UnixStream::connect(&path).unwrap();
    let body = br#""clear""#;
    write!(
        busy,
        "POST /v1/commands HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    busy.write_all(&body[..2]).unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let mut idle: Vec<UnixStream> = (0..100)
        .map(|_| UnixStream::connect(&path).unwrap())
        .collect();
    let (listing, took) = timed_listing(&path);
    assert_eq!(listing.unwrap(), empty());
    assert!(took < Duration::from_secs(2), "answered after {took:?}");

    // All but the newest few idle connections were closed by the server.
    let closed = idle
        .iter_mut()
        .filter_map(|s| closed_by_server(s, Duration::from_millis(50)).then_some(()))
        .count();
    assert!(
        closed >= 100 - 8,
        "only {closed} of 100 idle connections closed"
    );

    // The busy one was kept and finishes its request.
    busy.write_all(&body[2..]).unwrap();
    let mut reply = String::new();
    busy.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    busy.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        reply
            .to_ascii_lowercase()
            .contains("content-length: 11\r\n"),
        "{reply}"
    );
}

#[test]
fn slow_and_idle_clients_are_cut_off_while_another_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rvsd.sock");
    let served = serve(
        &path,
        Limits {
            header_timeout: Duration::from_secs(1),
            body_timeout: Duration::from_secs(1),
            ..Limits::default()
        },
    );
    let start = Instant::now();
    let mut idle = UnixStream::connect(&path).unwrap();
    // Headers one byte at a time, never finished: a slowloris.
    let slow_path = path.clone();
    let slow = std::thread::spawn(move || {
        let mut s = UnixStream::connect(&slow_path).unwrap();
        let t = Instant::now();
        for b in b"GET /v1/services HTTP/1.1\r\nHost: x\r\nX-Slow: "
            .iter()
            .cycle()
        {
            if s.write_all(&[*b]).is_err() || t.elapsed() > Duration::from_secs(5) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        t.elapsed()
    });
    // Headers at once, then a body that never arrives.
    let mut stalled = UnixStream::connect(&path).unwrap();
    stalled
        .write_all(
            b"POST /v1/commands HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 100\r\n\r\n{\"",
        )
        .unwrap();

    // Meanwhile the operator is answered at once.
    let (listing, took) = timed_listing(&path);
    assert_eq!(listing.unwrap(), empty());
    assert!(took < Duration::from_millis(800), "answered after {took:?}");

    let slow_for = slow.join().unwrap();
    assert!(
        slow_for >= Duration::from_millis(900) && slow_for < Duration::from_secs(4),
        "the slow client was cut off after {slow_for:?}"
    );
    assert!(closed_by_server(&mut idle, Duration::from_secs(3)));
    assert!(start.elapsed() < Duration::from_secs(5));
    let reply = read_reply(&mut stalled);
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("did not arrive within 1 s"), "{reply}");
    assert!(served.handler.seen().is_empty());
}

#[test]
fn large_bodies_take_turns_small_ones_do_not_wait() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rvsd.sock");
    let served = serve(
        &path,
        Limits {
            small_body: 1024,
            large_bodies: 1,
            body_timeout: Duration::from_millis(1500),
            ..Limits::default()
        },
    );
    let large = |path: &Path| {
        let mut s = UnixStream::connect(path).unwrap();
        s.write_all(
            b"POST /v1/commands HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 5000\r\n\r\n",
        )
        .unwrap();
        s
    };
    // A takes the only turn and stalls; B waits for it.
    let mut a = large(&path);
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    let mut b = large(&path);
    let mut padded = br#""clear""#.to_vec();
    padded.resize(5000, b' ');
    b.write_all(&padded).unwrap();

    // A small command is answered at once meanwhile.
    Client::new(&path).command(&Command::Clear).unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(1000),
        "{:?}",
        t.elapsed()
    );

    let mut reply = String::new();
    b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    b.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    // B was read only once A's turn ended with its timeout.
    assert!(
        t.elapsed() >= Duration::from_millis(1200),
        "the second large body was read after {:?}, while the first held the turn",
        t.elapsed()
    );
    let reply = read_reply(&mut a);
    assert!(reply.contains("did not arrive within"), "{reply}");
    assert_eq!(served.handler.seen(), vec![Command::Clear, Command::Clear]);

    // Too large for any turn: refused before anything is read.
    let mut s = UnixStream::connect(&path).unwrap();
    write!(
        s,
        "POST /v1/commands HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        rvs_api::server::MAX_BODY + 1
    )
    .unwrap();
    let reply = read_reply(&mut s);
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(
        reply.contains("larger than the 64 MiB rvsd accepts"),
        "{reply}"
    );
}

/// A request with more header fields than `MAX_HEADERS` is answered 431
/// and closed, at once; a client with a normal request is served
/// meanwhile, and the handler never sees the oversized one.
#[test]
fn too_many_headers_are_refused_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rvsd.sock");
    let served = serve(&path, Limits::default());
    let mut req = String::from("POST /v1/commands HTTP/1.1\r\nHost: x\r\n");
    for i in 0..rvs_api::server::MAX_HEADERS {
        req.push_str(&format!("X-Filler-{i}: {i}\r\n"));
    }
    req.push_str("Content-Length: 7\r\n\r\n\"clear\"");
    let t = Instant::now();
    let mut big = UnixStream::connect(&path).unwrap();
    big.write_all(req.as_bytes()).unwrap();
    let reply = read_reply(&mut big);
    assert!(
        reply.starts_with("HTTP/1.1 431 Request Header Fields Too Large"),
        "{reply}"
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let (listing, _) = timed_listing(&path);
    assert_eq!(listing.unwrap(), empty());
    assert!(served.handler.seen().is_empty());

    // One header fewer than the limit (the 64 fillers less one, Host and
    // Content-Length) is an ordinary request.
    let mut req = String::from("POST /v1/commands HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for i in 0..rvs_api::server::MAX_HEADERS - 3 {
        req.push_str(&format!("X-Filler-{i}: {i}\r\n"));
    }
    req.push_str("Content-Length: 7\r\n\r\n\"clear\"");
    let mut ok = UnixStream::connect(&path).unwrap();
    ok.write_all(req.as_bytes()).unwrap();
    let reply = read_reply(&mut ok);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert_eq!(served.handler.seen(), vec![Command::Clear]);
}
