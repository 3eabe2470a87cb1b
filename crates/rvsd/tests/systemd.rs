//! rvsd under systemd: the unit as shipped passes `systemd-analyze
//! verify` and keeps its hardening score, and rvsd speaks the readiness
//! protocol `Type=notify` relies on (READY=1 once its socket answers,
//! RELOADING=1 then READY=1 around a reload, whatever its outcome).

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repository_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

/// The shipped unit with its `/usr/sbin/` binaries pointed at this
/// build's (rvsadm as a link to rvsd: verify only checks it can run it).
fn unit_with_built_binaries(dir: &Path) -> PathBuf {
    let unit = std::fs::read_to_string(repository_file("packaging/rvsd.service"))
        .expect("packaging/rvsd.service");
    let rvsd = Path::new(env!("CARGO_BIN_EXE_rvsd"));
    let rvsadm = dir.join("rvsadm");
    std::os::unix::fs::symlink(rvsd, &rvsadm).expect("link rvsadm");
    let unit = unit
        .replace("/usr/sbin/rvsd ", &format!("{} ", rvsd.display()))
        .replace("/usr/sbin/rvsadm", &rvsadm.display().to_string());
    assert!(!unit.contains("/usr/sbin/"), "a binary path left: {unit}");
    let path = dir.join("rvsd.service");
    std::fs::write(&path, unit).expect("write the unit");
    path
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let dir = tempfile::tempdir().expect("temp dir");
    let unit = unit_with_built_binaries(dir.path());
    // --man=no: the man pages are checked where they are built.
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze runs (the test command installs systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "verify failed:\n{stderr}");
    // Verify exits 0 on some warnings; none is acceptable in our unit.
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("rvsd.service"))
        .collect();
    assert!(warnings.is_empty(), "verify warned:\n{stderr}");
}

#[test]
fn the_unit_keeps_its_hardening() {
    let dir = tempfile::tempdir().expect("temp dir");
    let unit = unit_with_built_binaries(dir.path());
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for rvsd.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    // 2.9 when this test was written ("OK"), 2.5 since rvsd runs as its
    // own user without CAP_SYS_ADMIN; 10 is fully exposed. A directive
    // dropped from the unit raises it.
    assert!(score <= 2.6, "exposure {score} (was 2.5):\n{text}");
}

/// rvsd without a configuration, notifying `socket`.
fn start_rvsd(dir: &Path, notify: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_rvsd"))
        .arg("--socket")
        .arg(dir.join("rvsd.sock"))
        .env("NOTIFY_SOCKET", notify)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rvsd starts")
}

/// The next notification, or `None` after `limit`.
fn next_message(socket: &UnixDatagram, limit: Duration) -> Option<String> {
    socket.set_read_timeout(Some(limit)).ok()?;
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn ready_reloading_and_stopping_are_notified() {
    let dir = tempfile::tempdir().expect("temp dir");
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("bind the notify socket");
    let child = start_rvsd(dir.path(), &notify_path);
    let pid = child.id().to_string();

    let ready = next_message(&notify, Duration::from_secs(20));
    let socket_up = dir.path().join("rvsd.sock").exists();
    let Some(ready) = ready else {
        stop(child);
        panic!("no READY=1 within 20 s");
    };
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert!(ready.contains("STATUS="), "{ready:?}");
    // READY=1 means the control socket is there to answer.
    assert!(socket_up, "READY=1 before the socket was bound");

    // Without --config a reload is refused; systemd still needs the
    // RELOADING=1 / READY=1 pair, and the status says why.
    let _ = Command::new("kill").args(["-HUP", &pid]).status();
    let reloading = next_message(&notify, Duration::from_secs(10));
    let reloaded = next_message(&notify, Duration::from_secs(10));
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let stopping = next_message(&notify, Duration::from_secs(10));
    stop(child);

    let reloading = reloading.expect("RELOADING=1 after SIGHUP");
    assert!(
        reloading.lines().any(|l| l == "RELOADING=1"),
        "{reloading:?}"
    );
    let usec = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(usec.is_some_and(|u| u > 0), "{reloading:?}");
    let reloaded = reloaded.expect("READY=1 after the reload");
    assert!(reloaded.lines().any(|l| l == "READY=1"), "{reloaded:?}");
    assert!(
        reloaded.contains("STATUS=last reload refused"),
        "{reloaded:?}"
    );
    let stopping = stopping.expect("STOPPING=1 on SIGTERM");
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
}
