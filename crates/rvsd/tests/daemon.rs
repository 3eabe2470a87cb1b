//! rvsd as a process without interfaces (no `--config`): it starts empty,
//! answers on its socket, refuses to share it with a second rvsd and removes
//! only the socket it created.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rvs_api::{Client, ClientError, Command as Cmd, ServiceKey, ServiceSpec};

/// An rvsd started by a test, killed if the test ends before it stops.
struct Daemon {
    child: Child,
}

impl Daemon {
    fn start(socket: &Path) -> Daemon {
        let child = Command::new(env!("CARGO_BIN_EXE_rvsd"))
            .arg("--socket")
            .arg(socket)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Daemon { child }
    }

    /// Waits (up to 20 s) until it answers on `socket`.
    fn ready(socket: &Path) -> Daemon {
        let d = Daemon::start(socket);
        let client = Client::new(socket);
        let t = Instant::now();
        loop {
            match client.listing() {
                Ok(_) => return d,
                Err(ClientError::NotRunning { .. }) if t.elapsed() < Duration::from_secs(20) => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => panic!("rvsd did not come up: {e}"),
            }
        }
    }

    /// SIGTERM, then its exit code and what it wrote to stderr.
    fn stop(mut self) -> (i32, String) {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        self.wait()
    }

    /// Its exit code (waiting up to 20 s) and its stderr.
    fn wait(&mut self) -> (i32, String) {
        let t = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(t.elapsed() < Duration::from_secs(20), "rvsd did not exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            e.read_to_string(&mut err).unwrap();
        }
        (status.code().unwrap_or(-1), err)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn socket_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("rvsd.sock")
}

#[test]
fn without_config_it_starts_empty_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(&dir);
    let d = Daemon::ready(&socket);
    let listing = Client::new(&socket).listing().unwrap();
    assert!(listing.services.is_empty(), "{listing:?}");
    assert_eq!(listing.config_file, None);
    let (code, err) = d.stop();
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("started without a configuration file"),
        "{err}"
    );
    assert!(!socket.exists(), "rvsd left its socket behind");
}

#[test]
fn a_second_rvsd_leaves_the_live_socket_alone() {
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(&dir);
    let first = Daemon::ready(&socket);

    let mut second = Daemon::start(&socket);
    let (code, err) = second.wait();
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "another rvsd is already serving {}",
            socket.display()
        )),
        "{err}"
    );
    assert!(
        socket.exists(),
        "the second rvsd removed the first one's socket"
    );
    Client::new(&socket)
        .listing()
        .expect("the first rvsd still answers");

    let (code, err) = first.stop();
    assert_eq!(code, 0, "{err}");
    assert!(!socket.exists());
}

#[test]
fn a_socket_replaced_by_someone_else_is_not_removed() {
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(&dir);
    let d = Daemon::ready(&socket);
    // Someone else's socket now at the path (an rvsd started after this
    // one's was deleted by hand).
    std::fs::remove_file(&socket).unwrap();
    let other = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let (code, err) = d.stop();
    assert_eq!(code, 0, "{err}");
    assert!(socket.exists(), "rvsd removed a socket it did not create");
    drop(other);
}

#[test]
fn a_restore_may_zero_counters_as_ipvsadm_restore_does() {
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(&dir);
    let _d = Daemon::ready(&socket);
    let client = Client::new(&socket);
    let key = ServiceKey::Fwmark {
        mark: 7,
        af: rvs_api::Family::Ipv4,
    };
    let spec = ServiceSpec {
        key,
        scheduler: "rr".into(),
        persistence_timeout: None,
        netmask: None,
        flags: vec![],
        one_packet: false,
        local_addresses: vec![],
        toa: false,
    };
    client
        .command(&Cmd::Restore(vec![
            Cmd::ZeroCounters(None),
            Cmd::AddService(spec.clone()),
            Cmd::ZeroCounters(Some(key)),
        ]))
        .unwrap();
    let listing = client.listing().unwrap();
    assert_eq!(listing.services.len(), 1);
    assert_eq!(listing.services[0].spec, spec);
    // Zeroing a service the restore has not created (yet) is refused,
    // naming the command; nothing of the restore is applied.
    let other = ServiceKey::Fwmark {
        mark: 8,
        af: rvs_api::Family::Ipv4,
    };
    let e = client
        .command(&Cmd::Restore(vec![
            Cmd::DeleteService(key),
            Cmd::ZeroCounters(Some(other)),
        ]))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "command 1 of the restore: service FWM 8 does not exist"
    );
    assert_eq!(client.listing().unwrap().services.len(), 1);
}

/// FullNAT's settings through a running rvsd: kept and listed as given,
/// replaced by -E, and a FullNAT real server on a service without local
/// addresses refused with what to add.
#[test]
fn fullnat_settings_are_kept_listed_and_required() {
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(&dir);
    let _d = Daemon::ready(&socket);
    let client = Client::new(&socket);
    let key = ServiceKey::Fwmark {
        mark: 9,
        af: rvs_api::Family::Ipv4,
    };
    let mut spec = ServiceSpec {
        key,
        scheduler: "rr".into(),
        persistence_timeout: None,
        netmask: None,
        flags: vec![],
        one_packet: false,
        local_addresses: vec!["10.9.0.200".parse().unwrap(), "10.9.0.201".parse().unwrap()],
        toa: true,
    };
    client.command(&Cmd::AddService(spec.clone())).unwrap();
    assert_eq!(client.listing().unwrap().services[0].spec, spec);
    spec.local_addresses.clear();
    spec.toa = false;
    client.command(&Cmd::EditService(spec.clone())).unwrap();
    assert_eq!(client.listing().unwrap().services[0].spec, spec);
    let e = client
        .command(&Cmd::AddDest {
            service: key,
            dest: rvs_api::DestSpec {
                addr: "10.9.0.11".parse().unwrap(),
                port: 80,
                weight: 1,
                method: rvs_api::ForwardMethod::FullNat,
                tunnel: rvs_api::Tunnel::Ipip,
                upper_threshold: 0,
                lower_threshold: 0,
            },
        })
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("add local_addresses (rvsadm --laddr)"),
        "{e}"
    );
    // A local address of the other family is refused by name.
    spec.local_addresses = vec!["fd00::200".parse().unwrap()];
    let e = client.command(&Cmd::EditService(spec)).unwrap_err();
    assert!(
        e.to_string()
            .contains("local address fd00::200: not of the service's address family"),
        "{e}"
    );
}

/// The `Key:` line of a /proc status file, its words joined by one space.
fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| panic!("no {key} in\n{status}"))
}

/// Once ready, every thread of rvsd (root here, no `user`) holds exactly
/// CAP_NET_ADMIN and CAP_NET_RAW, and its script runner — its only child
/// — runs as nobody with no capability. The lab test
/// `e2e_privilege` does the same with XDP, a user and traffic.
#[test]
fn rvsd_keeps_two_capabilities_and_its_script_runner_none() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("rvsd.sock");
    let d = Daemon::ready(&socket);
    let pid = d.child.id();
    let kept = "0000000000003000";
    let none = "0000000000000000";
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let st = std::fs::read_to_string(t.unwrap().path().join("status")).unwrap();
        let who = status_field(&st, "Name");
        assert_eq!(status_field(&st, "Uid"), "0 0 0 0", "{who}");
        for (key, want) in [
            ("CapEff", kept),
            ("CapPrm", kept),
            ("CapBnd", kept),
            ("CapInh", none),
            ("CapAmb", none),
            ("NoNewPrivs", "1"),
        ] {
            assert_eq!(status_field(&st, key), want, "{key} of thread {who}");
        }
    }
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    let runner: Vec<&str> = children.split_whitespace().collect();
    assert_eq!(
        runner.len(),
        1,
        "one child, the script runner: {children:?}"
    );
    // The runner drops its privileges first thing after it starts, before
    // it takes any command; on a loaded machine that may come just after
    // rvsd says it is ready (bounded wait).
    let runner_status = || std::fs::read_to_string(format!("/proc/{}/status", runner[0])).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut st = runner_status();
    while status_field(&st, "Uid") != "65534 65534 65534 65534"
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
        st = runner_status();
    }
    assert_eq!(status_field(&st, "Uid"), "65534 65534 65534 65534");
    assert_eq!(status_field(&st, "Groups"), "65534");
    for key in ["CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"] {
        assert_eq!(status_field(&st, key), none, "{key} of the script runner");
    }
    assert_eq!(status_field(&st, "NoNewPrivs"), "1");
    let (code, err) = d.stop();
    assert_eq!(code, 0, "{err}");
    // Its stdin closed with rvsd: it exits (and is reaped by init).
    let gone = || {
        std::fs::read_to_string(format!("/proc/{}/status", runner[0]))
            .map_or(true, |s| s.contains("State:\tZ"))
    };
    let t = Instant::now();
    while !gone() {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the script runner outlived rvsd"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
