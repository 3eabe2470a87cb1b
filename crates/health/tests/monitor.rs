//! The monitor against real servers on 127.0.0.1, with short delay_loops and
//! bounded waits.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use rvs_health::{HealthEvent, HealthMonitor, ServerChecks, UpdateSummary};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const LOOP_MS: u64 = 200;
const TIMEOUT_MS: u64 = 1000;

fn tcp_check(retry: u32) -> String {
    let secs = LOOP_MS as f64 / 1000.0;
    format!(
        "type = \"tcp\"\ndelay_loop = {secs}\ndelay_before_retry = {secs}\nretry = {retry}\nconnect_timeout = {}",
        TIMEOUT_MS as f64 / 1000.0
    )
}

fn misc_check(path: &Path, extra: &str) -> String {
    format!(
        "type = \"misc\"\nscript = \"/bin/sh {}\"\ndelay_loop = {}\nmisc_timeout = 2\n{extra}",
        path.display(),
        LOOP_MS as f64 / 1000.0
    )
}

fn server(service: &str, addr: SocketAddr, alpha: bool, checks: &[String]) -> ServerChecks {
    ServerChecks {
        service: service.into(),
        server: addr,
        alpha,
        checks: checks.iter().map(|c| config(c, addr)).collect(),
    }
}

async fn next_event(rx: &mut mpsc::Receiver<HealthEvent>, within: Duration) -> HealthEvent {
    tokio::time::timeout(within, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no health event within {within:?}"))
        .expect("channel open")
}

async fn no_event(rx: &mut mpsc::Receiver<HealthEvent>, during: Duration) {
    if let Ok(Some(e)) = tokio::time::timeout(during, rx.recv()).await {
        panic!("unexpected event {e:?}");
    }
}

#[tokio::test]
async fn tcp_server_down_within_bound_and_back_up() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let mut mon = HealthMonitor::new(tx).unwrap();
    let retry = 1;
    mon.update([server("svc", addr, false, &[tcp_check(retry)])]);
    // Healthy and not alpha: the initial "up" is not an event.
    no_event(&mut rx, Duration::from_millis(3 * LOOP_MS)).await;
    assert!(mon.status("svc", addr).unwrap().up);

    let gone = Instant::now();
    drop(listener);
    let e = next_event(&mut rx, Duration::from_secs(10)).await;
    let took = gone.elapsed();
    assert!(!e.up, "{e:?}");
    assert_eq!((e.service.as_str(), e.server), ("svc", addr));
    assert!(e.reason.contains("refused"), "{e:?}");
    let bound = Duration::from_millis(LOOP_MS * (u64::from(retry) + 1) + TIMEOUT_MS);
    println!("down reported after {took:?} (bound {bound:?})");
    assert!(took <= bound, "down after {took:?}, bound {bound:?}");
    assert!(
        took >= Duration::from_millis(LOOP_MS * u64::from(retry)),
        "down after {took:?}: the retry was not waited for"
    );
    assert!(!mon.status("svc", addr).unwrap().up);

    // Back: one success is enough.
    let _listener = TcpListener::bind(addr).await.unwrap();
    let back = Instant::now();
    let e = next_event(&mut rx, Duration::from_secs(10)).await;
    assert!(e.up, "{e:?}");
    assert!(
        back.elapsed() <= Duration::from_millis(LOOP_MS + TIMEOUT_MS),
        "{:?}",
        back.elapsed()
    );
}

#[tokio::test]
async fn alpha_server_reports_up_after_first_pass() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let dead = closed_tcp_port();
    let (tx, mut rx) = mpsc::channel(16);
    let mut mon = HealthMonitor::new(tx).unwrap();
    mon.update([
        server("svc", addr, true, &[tcp_check(1)]),
        server("svc", dead, true, &[tcp_check(1)]),
    ]);
    assert!(!mon.status("svc", addr).unwrap().up);
    let e = next_event(&mut rx, Duration::from_secs(5)).await;
    assert!(e.up && e.server == addr, "{e:?}");
    // The dead one started down and stays silent.
    no_event(&mut rx, Duration::from_millis(3 * LOOP_MS)).await;
    assert!(!mon.status("svc", dead).unwrap().up);
}

#[tokio::test]
async fn any_failing_check_takes_the_server_down() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("healthy");
    std::fs::write(&flag, "").unwrap();
    let s = script(
        dir.path(),
        "flag.sh",
        &format!("test -e {}", flag.display()),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let mut mon = HealthMonitor::new(tx).unwrap();
    mon.update([server(
        "svc",
        addr,
        false,
        &[tcp_check(1), misc_check(&s, "")],
    )]);
    no_event(&mut rx, Duration::from_millis(2 * LOOP_MS)).await;
    std::fs::remove_file(&flag).unwrap();
    // misc retry defaults to 0: the first failed run takes it down.
    let e = next_event(&mut rx, Duration::from_secs(5)).await;
    assert!(!e.up && e.reason.contains("misc"), "{e:?}");
    std::fs::write(&flag, "").unwrap();
    let e = next_event(&mut rx, Duration::from_secs(5)).await;
    assert!(e.up, "{e:?}");
    // TCP fails now: down again although misc passes.
    drop(listener);
    let e = next_event(&mut rx, Duration::from_secs(5)).await;
    assert!(!e.up && e.reason.contains("tcp"), "{e:?}");
}

#[tokio::test]
async fn misc_dynamic_weight_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let code = dir.path().join("code");
    std::fs::write(&code, "12").unwrap();
    let s = script(
        dir.path(),
        "dyn.sh",
        &format!("exit $(cat {})", code.display()),
    );
    let addr = closed_tcp_port();
    let (tx, mut rx) = mpsc::channel(16);
    let mut mon = HealthMonitor::new(tx).unwrap();
    mon.update([server(
        "svc",
        addr,
        false,
        &[misc_check(&s, "misc_dynamic = true")],
    )]);
    let e = next_event(&mut rx, Duration::from_secs(5)).await;
    assert!(e.up, "{e:?}");
    assert_eq!(e.weight, Some(10));
    std::fs::write(&code, "3").unwrap();
    let e = next_event(&mut rx, Duration::from_secs(5)).await;
    assert_eq!((e.up, e.weight), (true, Some(1)), "{e:?}");
    std::fs::write(&code, "1").unwrap();
    let e = next_event(&mut rx, Duration::from_secs(5)).await;
    assert!(!e.up, "{e:?}");
}

fn runs(counter: &Path) -> usize {
    std::fs::read_to_string(counter)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

#[tokio::test]
async fn reconfigure_keeps_unchanged_checks_running() {
    let dir = tempfile::tempdir().unwrap();
    let count_a = dir.path().join("a");
    let count_b = dir.path().join("b");
    let a = script(
        dir.path(),
        "a.sh",
        &format!("echo run >> {}", count_a.display()),
    );
    let b = script(
        dir.path(),
        "b.sh",
        &format!("echo run >> {}", count_b.display()),
    );
    // A slow loop, so that a restart would show as an extra immediate run.
    let slow = |p: &Path, timeout: u32| {
        format!(
            "type = \"misc\"\nscript = \"/bin/sh {}\"\ndelay_loop = 5\nmisc_timeout = {timeout}",
            p.display()
        )
    };
    let addr_a: SocketAddr = "127.0.0.1:1001".parse().unwrap();
    let addr_b: SocketAddr = "127.0.0.1:1002".parse().unwrap();
    let set_a = server("svc", addr_a, false, &[slow(&a, 2)]);
    let set_b = server("svc", addr_b, false, &[slow(&b, 2)]);
    let (tx, mut rx) = mpsc::channel(16);
    let mut mon = HealthMonitor::new(tx).unwrap();
    let s = mon.update([set_a.clone()]);
    assert_eq!(
        s,
        UpdateSummary {
            started: 1,
            ..Default::default()
        }
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(runs(&count_a), 1);

    // Same A plus new B: A untouched, B starts.
    let s = mon.update([set_a.clone(), set_b.clone()]);
    assert_eq!(
        s,
        UpdateSummary {
            started: 1,
            unchanged: 1,
            ..Default::default()
        }
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(runs(&count_a), 1, "an unchanged check was restarted");
    assert_eq!(runs(&count_b), 1);

    // A's check changes: restarted (runs again at once); B removed.
    let changed_a = server("svc", addr_a, false, &[slow(&a, 3)]);
    let s = mon.update([changed_a]);
    assert_eq!(
        s,
        UpdateSummary {
            restarted: 1,
            stopped: 1,
            ..Default::default()
        }
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(runs(&count_a), 2);
    assert!(mon.status("svc", addr_b).is_none());
    assert!(mon.status("svc", addr_a).unwrap().up);

    // Stopping stops everything; no events were due (all stayed up).
    mon.shutdown();
    no_event(&mut rx, Duration::from_millis(200)).await;
    assert_eq!(runs(&count_b), 1);
}

#[tokio::test]
async fn server_without_checks_is_up_and_silent() {
    let (tx, mut rx) = mpsc::channel(4);
    let mut mon = HealthMonitor::new(tx).unwrap();
    let addr: SocketAddr = "127.0.0.1:1003".parse().unwrap();
    mon.update([ServerChecks {
        service: "svc".into(),
        server: addr,
        alpha: true,
        checks: vec![],
    }]);
    assert!(mon.status("svc", addr).unwrap().up);
    no_event(&mut rx, Duration::from_millis(200)).await;
}

#[test]
fn monitor_needs_a_runtime() {
    let (tx, _rx) = mpsc::channel(1);
    let e = HealthMonitor::new(tx).unwrap_err();
    assert!(e.to_string().contains("tokio runtime"));
}
