//! rvsd's log as a file or the journal receives it: no escape codes when
//! stderr is not a terminal, and no second timestamp under journald.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Starts rvsd without a configuration (it serves the API and nothing
/// else), reads its log until it is ready, stops it with SIGTERM and
/// returns everything it logged.
fn log_of_a_run(journal: bool) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("rvsd.sock");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rvsd"));
    cmd.arg("--socket")
        .arg(&socket)
        .env_remove("RUST_LOG")
        .env_remove("JOURNAL_STREAM")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if journal {
        // What systemd sets: the device and inode of the journal's stream.
        cmd.env("JOURNAL_STREAM", "8:12345");
    }
    let mut child = cmd.spawn().expect("rvsd starts");
    let stderr = child.stderr.take().expect("piped stderr");
    let (lines, seen) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = lines.send(line.contains("ready"));
            log.push_str(&line);
            log.push('\n');
        }
        log
    });
    // Stopped once it says it is ready (the socket exists a little before).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut ready = false;
    while !ready {
        let left = deadline.saturating_duration_since(Instant::now());
        match seen.recv_timeout(left) {
            Ok(r) => ready = r,
            Err(_) => break,
        }
    }
    let ready = ready && socket.exists();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let waited = Instant::now();
    while child.try_wait().ok().flatten().is_none() {
        if waited.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = reader.join().expect("reader thread");
    assert!(ready, "rvsd did not bind its socket; its log:\n{log}");
    assert!(log.contains("ready"), "no ready line in:\n{log}");
    log
}

#[test]
fn a_log_file_has_no_escape_codes() {
    let log = log_of_a_run(false);
    assert!(!log.contains('\u{1b}'), "escape codes in:\n{log:?}");
    // Outside the journal each line carries its own RFC 3339 time.
    for line in log.lines() {
        assert!(
            line.starts_with("20") && line.as_bytes().get(4) == Some(&b'-'),
            "line without a timestamp: {line:?}"
        );
    }
}

#[test]
fn under_journald_lines_have_no_timestamp_of_their_own() {
    let log = log_of_a_run(true);
    assert!(!log.contains('\u{1b}'), "escape codes in:\n{log:?}");
    for line in log.lines() {
        let level = line.trim_start();
        assert!(
            ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
                .iter()
                .any(|l| level.starts_with(l)),
            "line not starting with its level: {line:?}"
        );
        assert!(level.contains("rvsd"), "target missing: {line:?}");
    }
}
