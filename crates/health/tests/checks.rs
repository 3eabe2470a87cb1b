//! One attempt of each check type against real servers on 127.0.0.1.

mod common;

use std::time::{Duration, Instant};

use common::*;
use md5::{Digest, Md5};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test]
async fn tcp_listener_up_then_closed_down() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let c = config("type = \"tcp\"\nconnect_timeout = 1", addr);
    let r = rvs_health::check_once(&c).await;
    assert!(r.ok, "{r:?}");
    drop(listener);
    let r = rvs_health::check_once(&c).await;
    assert!(!r.ok, "{r:?}");
    assert!(r.reason.contains("refused"), "{r:?}");
    // connect_port overrides the server's port.
    let c = config("type = \"tcp\"\nconnect_port = 9", closed_tcp_port());
    assert_eq!(c.target.port(), 9);
}

#[tokio::test]
async fn http_status_codes() {
    let (addr, _server) = http_server().await;
    let ok = rvs_health::check_once(&config("type = \"http\"\npath = \"/ok\"", addr)).await;
    assert!(ok.ok, "{ok:?}");
    let fail = rvs_health::check_once(&config("type = \"http\"\npath = \"/fail\"", addr)).await;
    assert!(!fail.ok, "{fail:?}");
    assert!(fail.reason.contains("status 500"), "{fail:?}");
    let accepted = rvs_health::check_once(&config(
        "type = \"http\"\npath = \"/fail\"\nstatus_codes = [200, 500]",
        addr,
    ))
    .await;
    assert!(accepted.ok, "{accepted:?}");
    let closed = rvs_health::check_once(&config(
        "type = \"http\"\nconnect_timeout = 1",
        closed_tcp_port(),
    ))
    .await;
    assert!(!closed.ok, "{closed:?}");
}

#[tokio::test]
async fn http_digest_match_and_mismatch() {
    let (addr, _server) = http_server().await;
    let good = hex(&Md5::digest(HELLO));
    let r = rvs_health::check_once(&config(
        &format!("type = \"http\"\npath = \"/ok\"\ndigest = \"{good}\""),
        addr,
    ))
    .await;
    assert!(r.ok, "{r:?}");
    let bad = hex(&Md5::digest(b"something else"));
    let r = rvs_health::check_once(&config(
        &format!("type = \"http\"\npath = \"/ok\"\ndigest = \"{bad}\""),
        addr,
    ))
    .await;
    assert!(!r.ok, "{r:?}");
    assert!(r.reason.contains("digest"), "{r:?}");
}

#[tokio::test]
async fn misc_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let s0 = script(dir.path(), "ok.sh", "exit 0");
    let s1 = script(dir.path(), "fail.sh", "exit 1");
    let s5 = script(dir.path(), "five.sh", "exit 5");
    let any = closed_tcp_port();
    let run = |path: &std::path::Path, extra: &str| {
        config(
            &format!(
                "type = \"misc\"\nscript = \"/bin/sh {}\"\nmisc_timeout = 5\n{extra}",
                path.display()
            ),
            any,
        )
    };
    let r = rvs_health::check_once(&run(&s0, "")).await;
    assert!(r.ok && r.weight.is_none(), "{r:?}");
    let r = rvs_health::check_once(&run(&s1, "")).await;
    assert!(!r.ok, "{r:?}");
    let r = rvs_health::check_once(&run(&s5, "")).await;
    assert!(!r.ok, "exit 5 without misc_dynamic is a failure: {r:?}");
    let r = rvs_health::check_once(&run(&s5, "misc_dynamic = true")).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(r.weight, Some(3), "weight = exit code - 2");
    let r = rvs_health::check_once(&run(&s1, "misc_dynamic = true")).await;
    assert!(!r.ok, "exit 1 fails even with misc_dynamic: {r:?}");
    let r = rvs_health::check_once(&run(&s0, "misc_dynamic = true")).await;
    assert!(
        r.ok && r.weight.is_none(),
        "exit 0 leaves the weight: {r:?}"
    );
    let r = rvs_health::check_once(&config(
        "type = \"misc\"\nscript = \"/nonexistent/check\"",
        any,
    ))
    .await;
    assert!(!r.ok && r.reason.contains("cannot run"), "{r:?}");
}

#[tokio::test]
async fn misc_timeout_kills_the_script_group() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("survived");
    // The child `sleep` must die with the script (same process group).
    let slow = script(
        dir.path(),
        "slow.sh",
        &format!("sleep 3; touch {}", marker.display()),
    );
    let c = config(
        &format!(
            "type = \"misc\"\nscript = \"/bin/sh {}\"\nmisc_timeout = 0.3",
            slow.display()
        ),
        closed_tcp_port(),
    );
    let t = Instant::now();
    let r = rvs_health::check_once(&c).await;
    assert!(!r.ok && r.reason.contains("timed out"), "{r:?}");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(
        !marker.exists(),
        "the script kept running after its timeout"
    );
}

#[tokio::test]
async fn udp_echo_closed_and_silent() {
    let (echo, _server) = udp_echo().await;
    let c = config(
        "type = \"udp\"\npayload = \"deadbeef\"\nrequire_reply = true\nconnect_timeout = 1",
        echo,
    );
    let r = rvs_health::check_once(&c).await;
    assert!(r.ok && r.reason.contains("4 bytes"), "{r:?}");

    let closed = closed_udp_port();
    for require in [true, false] {
        let c = config(
            &format!("type = \"udp\"\nrequire_reply = {require}\nconnect_timeout = 1"),
            closed,
        );
        let r = rvs_health::check_once(&c).await;
        assert!(!r.ok && r.reason.contains("port unreachable"), "{r:?}");
    }

    // Bound but never answering: down only when a reply is required.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let r = rvs_health::check_once(&config(
        "type = \"udp\"\nrequire_reply = true\nconnect_timeout = 0.3",
        addr,
    ))
    .await;
    assert!(!r.ok && r.reason.contains("no reply"), "{r:?}");
    let r = rvs_health::check_once(&config("type = \"udp\"\nconnect_timeout = 0.3", addr)).await;
    assert!(r.ok, "{r:?}");
}

#[tokio::test]
async fn ping_loopback() {
    let c = config(
        "type = \"ping\"\nconnect_timeout = 2",
        "127.0.0.1:0".parse().unwrap(),
    );
    let r = rvs_health::check_once(&c).await;
    assert!(r.ok, "{r:?}");
    let c = config(
        "type = \"ping\"\nconnect_ip = \"127.0.0.2\"\nconnect_timeout = 2",
        "127.0.0.1:80".parse().unwrap(),
    );
    let r = rvs_health::check_once(&c).await;
    assert!(r.ok, "{r:?}");
}

#[tokio::test]
async fn run_command_reports_exit_codes() {
    assert_eq!(
        rvs_health::run_command("/bin/sh -c 'exit 3'", Duration::from_secs(5)).await,
        Ok(3)
    );
    assert_eq!(
        rvs_health::run_command("/bin/true", Duration::from_secs(5)).await,
        Ok(0)
    );
    let e = rvs_health::run_command("/bin/sleep 5", Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(e.contains("timed out"), "{e}");
    assert!(rvs_health::run_command("'", Duration::from_secs(1))
        .await
        .is_err());
}
