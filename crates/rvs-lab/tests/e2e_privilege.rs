//! Least privilege end to end (issue 13 item 3): the real rvsd in a DR
//! lab's director namespace, configured to become a user this test makes,
//! with a read-only socket group and a MISC_CHECK script. After setup
//! every thread of rvsd must hold exactly CAP_NET_ADMIN and CAP_NET_RAW
//! (effective, permitted and bounding; nothing inheritable or ambient;
//! no_new_privs) as that user, and the script must run as `nobody` with
//! no capability. Then everything rvsd does at run time is exercised —
//! traffic, rvsadm edits, a reload, a real server going down and up —
//! so that a capability missing for any of it shows as a failure; rvsd
//! must also stop cleanly (XDP detached) as that user.
//!
//! The user `rvsp<pid>` and the group `rvspr<pid>` are made here and
//! removed again, also when the test fails (`Made`). Loads: a few dozen
//! sequential requests.

#[allow(dead_code)]
mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rvs_lab::{rs_ip, unique_prefix, DirectorKind, LabSpec, Mode, VIP};

use common::{counts, spread, Daemon, Nginx};

/// A user or group made by the test, removed when dropped.
struct Made {
    del: &'static str,
    name: String,
}

impl Made {
    fn new(add: &[&str], del: &'static str, name: String) -> Made {
        let out = Command::new(add[0])
            .args(&add[1..])
            .arg(&name)
            .output()
            .unwrap();
        assert!(out.status.success(), "{add:?} {name}: {out:?}");
        Made { del, name }
    }

    fn id(&self, flag: &str) -> u32 {
        let out = Command::new("id")
            .args([flag, &self.name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        let _ = Command::new(self.del).arg(&self.name).status();
    }
}

fn gid_of(group: &str) -> u32 {
    let out = Command::new("getent")
        .args(["group", group])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split(':')
        .nth(2)
        .and_then(|g| g.parse().ok())
        .unwrap_or_else(|| panic!("no gid for {group}"))
}

/// The `Key:` line of a /proc status file, its words joined by one space.
fn field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| panic!("no {key} in\n{status}"))
}

/// CAP_NET_ADMIN (12) and CAP_NET_RAW (13).
const KEPT: &str = "0000000000003000";

fn pool(list: &str) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for l in list.lines() {
        if let Some(rest) = l.trim_start().strip_prefix("->") {
            let cols: Vec<&str> = rest.split_whitespace().collect();
            if let (Some(a), Some(Ok(w))) = (cols.first(), cols.get(2).map(|w| w.parse())) {
                out.insert(a.to_string(), w);
            }
        }
    }
    out
}

fn wait_pool(d: &Daemon<'_>, want: &[(usize, u32)], within: Duration) {
    let want: BTreeMap<String, u32> = want
        .iter()
        .map(|&(n, w)| (format!("{}:80", rs_ip(n)), w))
        .collect();
    let start = Instant::now();
    loop {
        let list = d.rvsadm(&["-Ln"]);
        if pool(&list) == want {
            return;
        }
        assert!(
            start.elapsed() < within,
            "pool still not {want:?} after {within:?}:\n{list}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn config(user: &str, group: &str, script: &Path, rs2_weight: u32) -> String {
    let mut s = format!(
        "user = \"{user}\"\nsocket_group = \"{group}\"\n\
         [[service]]\nprotocol = \"tcp\"\naddress = \"{VIP}\"\nport = 80\nscheduler = \"wrr\"\n"
    );
    for (n, w) in [(1, 1), (2, rs2_weight), (3, 1)] {
        s.push_str(&format!(
            "  [[service.real_server]]\n  address = \"{}\"\n  port = 80\n  weight = {w}\n  method = \"dr\"\n\
             \x20   [[service.real_server.check]]\n    type = \"http\"\n    path = \"/\"\n    connect_timeout = 1\n    delay_loop = 1\n    retry = 1\n    delay_before_retry = 1\n",
            rs_ip(n)
        ));
        if n == 1 {
            s.push_str(&format!(
                "    [[service.real_server.check]]\n    type = \"misc\"\n    script = \"/bin/sh {}\"\n    misc_timeout = 5\n    delay_loop = 1\n",
                script.display()
            ));
        }
    }
    s
}

#[test]
fn after_setup_rvsd_keeps_two_capabilities_as_its_user_and_scripts_keep_none() {
    let pid = std::process::id();
    let user = Made::new(
        &[
            "useradd",
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
        ],
        "userdel",
        format!("rvsp{pid}"),
    );
    let group = Made::new(&["groupadd"], "groupdel", format!("rvspr{pid}"));
    let (uid, read_gid) = (user.id("-u"), gid_of(&group.name));
    common::with_lab(
        "privilege",
        LabSpec {
            prefix: unique_prefix(),
            mode: Mode::Dr,
            servers: 3,
            director: DirectorKind::None,
            decap_bin: None,
            queues: 1,
            directors: 1,
            vip_route: rvs_lab::VipRoute::FirstDirector,
        },
        |lab| {
            // rvsd's user reads the file on reload; nobody runs the script
            // and writes what it finds in a directory of its own.
            std::fs::set_permissions(lab.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
            let scripts = lab.dir().join("scripts");
            std::fs::create_dir(&scripts).unwrap();
            std::fs::set_permissions(&scripts, std::fs::Permissions::from_mode(0o777)).unwrap();
            let found = scripts.join("found");
            let script = scripts.join("check.sh");
            std::fs::write(
                &script,
                format!(
                    "#!/bin/sh\n{{ id -u; grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):' /proc/self/status; }} > {0}.tmp && mv {0}.tmp {0}\nexit 0\n",
                    found.display()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

            let mut d = Daemon::start(lab, &config(&user.name, &group.name, &script, 1));
            let rvsd_pid = d.process().pid();

            // Every thread: the user, two capabilities, nothing to gain.
            let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{rvsd_pid}/task"))
                .unwrap()
                .map(|t| t.unwrap().path())
                .collect();
            assert!(
                tasks.len() >= 4,
                "worker, kernel, resolver, runtime: {tasks:?}"
            );
            for t in &tasks {
                let st = std::fs::read_to_string(t.join("status")).unwrap();
                let who = format!("{} ({})", field(&st, "Name"), t.display());
                assert_eq!(
                    field(&st, "Uid"),
                    format!("{uid} {uid} {uid} {uid}"),
                    "{who}"
                );
                assert_eq!(field(&st, "Groups"), "", "{who}: supplementary groups");
                assert_eq!(field(&st, "CapEff"), KEPT, "{who}");
                assert_eq!(field(&st, "CapPrm"), KEPT, "{who}");
                assert_eq!(field(&st, "CapBnd"), KEPT, "{who}");
                assert_eq!(field(&st, "CapInh"), "0000000000000000", "{who}");
                assert_eq!(field(&st, "CapAmb"), "0000000000000000", "{who}");
                assert_eq!(field(&st, "NoNewPrivs"), "1", "{who}");
            }

            // The MISC_CHECK script: nobody, no capability at all.
            let t = Instant::now();
            while !found.exists() {
                assert!(
                    t.elapsed() < Duration::from_secs(10),
                    "the script never ran:\n{}",
                    d.log()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            let seen = std::fs::read_to_string(&found).unwrap();
            assert_eq!(seen.lines().next(), Some("65534"), "script uid:\n{seen}");
            for key in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
                assert_eq!(
                    field(&seen, key),
                    "0000000000000000",
                    "{key} of the script:\n{seen}"
                );
            }
            assert_eq!(field(&seen, "NoNewPrivs"), "1", "{seen}");

            // Traffic, then rvsadm edits (map updates without CAP_BPF).
            wait_pool(&d, &[(1, 1), (2, 1), (3, 1)], Duration::from_secs(10));
            assert_eq!(spread(lab, 6), counts(&[2, 2, 2]));
            let vip = format!("{VIP}:80");
            let rs3 = format!("{}:80", rs_ip(3));
            d.rvsadm(&["-d", "-t", &vip, "-r", &rs3]);
            wait_pool(&d, &[(1, 1), (2, 1)], Duration::from_secs(2));
            assert_eq!(spread(lab, 4), counts(&[2, 2]));
            d.rvsadm(&["-a", "-t", &vip, "-r", &rs3, "-g", "-w", "1"]);
            wait_pool(&d, &[(1, 1), (2, 1), (3, 1)], Duration::from_secs(2));
            assert_eq!(spread(lab, 6), counts(&[2, 2, 2]));

            // A reload (SIGHUP) of a changed file, read as rvsd's user.
            d.write_config(&config(&user.name, &group.name, &script, 2));
            let hup = Command::new("kill")
                .args(["-HUP", &rvsd_pid.to_string()])
                .status()
                .unwrap();
            assert!(hup.success());
            wait_pool(&d, &[(1, 1), (2, 2), (3, 1)], Duration::from_secs(5));
            assert_eq!(spread(lab, 8), counts(&[2, 4, 2]));

            // A real server down and up again: health checks after the drop.
            let rs2 = Nginx::of(lab, 2);
            rs2.stop(lab);
            wait_pool(&d, &[(1, 1), (3, 1)], Duration::from_secs(10));
            assert_eq!(spread(lab, 4), counts(&[2, 0, 2]));
            rs2.start(lab);
            wait_pool(&d, &[(1, 1), (2, 2), (3, 1)], Duration::from_secs(10));
            assert_eq!(spread(lab, 8), counts(&[2, 4, 2]));

            // The read-only group lists and is refused changes; others are
            // not let in. rvsadm as nobody, in the group or not.
            let rvsadm = |gid: u32, args: &[&str]| {
                Command::new(&d.rvsadm)
                    .args(args)
                    .env("RVSD_SOCKET", &d.socket)
                    .uid(65534)
                    .gid(gid)
                    .output()
                    .unwrap()
            };
            let listed = rvsadm(read_gid, &["-Ln"]);
            assert!(listed.status.success(), "{listed:?}");
            assert!(
                String::from_utf8_lossy(&listed.stdout).contains(&rs3),
                "{listed:?}"
            );
            let added = rvsadm(read_gid, &["-A", "-t", "10.0.100.9:80"]);
            assert_eq!(added.status.code(), Some(255), "{added:?}");
            let said = String::from_utf8_lossy(&added.stderr);
            assert!(
                said.contains(&format!(
                    "permission denied: this socket grants read-only access to group {}",
                    group.name
                )),
                "{said}"
            );
            let outside = rvsadm(65534, &["-Ln"]);
            assert!(!outside.status.success(), "{outside:?}");
            assert!(
                String::from_utf8_lossy(&outside.stderr).contains("permission denied"),
                "{outside:?}"
            );
            assert!(
                !d.rvsadm(&["-Ln"]).contains("10.0.100.9"),
                "the refused -A applied"
            );

            let log = d.log();
            assert!(!log.contains("Operation not permitted"), "{log}");
            assert!(!log.contains("EPERM"), "{log}");
            let p = d.process.take().expect("rvsd runs");
            let (status, log) = p.stop(Duration::from_secs(5)).expect("stopping rvsd");
            assert!(
                status.success(),
                "rvsd as its user exited with {status}:\n{log}"
            );
            assert!(log.contains("XDP detached"), "{log}");
            let out = Command::new("ip")
                .args(["-n", &lab.ns("dir"), "link", "show", "front"])
                .output()
                .unwrap();
            let shown = String::from_utf8_lossy(&out.stdout);
            assert!(
                !shown.contains("xdp"),
                "XDP still attached after stop:\n{shown}"
            );
        },
    );
}

/// The capabilities of a `KEY=` line of the shipped unit, as setpriv
/// wants them (`+net_admin,+net_raw,…`).
fn unit_caps(key: &str) -> String {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/rvsd.service"),
    )
    .unwrap();
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in the unit"));
    line.split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_ascii_lowercase()))
        .collect::<Vec<_>>()
        .join(",")
}

/// rvsd started as systemd starts it with the shipped unit — a user that
/// is not root, holding only the unit's ambient capabilities within its
/// bounding set — sets up (XDP, AF_XDP, the script runner), forwards,
/// takes edits and drops to the same two capabilities. A capability the
/// unit lacks for setup fails the start.
#[test]
fn the_units_capabilities_are_enough_to_set_up() {
    let user = Made::new(
        &[
            "useradd",
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
        ],
        "userdel",
        format!("rvsu{}", std::process::id()),
    );
    let uid = user.id("-u");
    common::with_lab(
        "privilege-unit",
        LabSpec {
            prefix: unique_prefix(),
            mode: Mode::Dr,
            servers: 2,
            director: DirectorKind::None,
            decap_bin: None,
            queues: 1,
            directors: 1,
            vip_route: rvs_lab::VipRoute::FirstDirector,
        },
        |lab| {
            std::fs::set_permissions(lab.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
            // The socket's directory is the user's, as RuntimeDirectory= makes it.
            let run = lab.dir().join("run");
            std::fs::create_dir(&run).unwrap();
            std::os::unix::fs::chown(&run, Some(uid), None).unwrap();
            let bins = common::binaries();
            let mut d = Daemon {
                lab,
                process: None,
                rvsd: bins.rvsd.clone(),
                rvsadm: bins.rvsadm.clone(),
                config: lab.dir().join("rvsd-unit.toml"),
                socket: run.join("rvsd.sock"),
                args: Vec::new(),
            };
            let mut cfg = format!(
                "[[service]]\nprotocol = \"tcp\"\naddress = \"{VIP}\"\nport = 80\nscheduler = \"rr\"\n"
            );
            for n in 1..=2 {
                cfg.push_str(&format!(
                    "  [[service.real_server]]\n  address = \"{}\"\n  port = 80\n  method = \"dr\"\n\
                     \x20   [[service.real_server.check]]\n    type = \"ping\"\n    connect_timeout = 1\n    delay_loop = 1\n",
                    rs_ip(n)
                ));
            }
            d.write_config(&cfg);
            let (ambient, bounding) = (
                unit_caps("AmbientCapabilities"),
                unit_caps("CapabilityBoundingSet"),
            );
            let (config, socket, rvsd) = (
                d.config.display().to_string(),
                d.socket.display().to_string(),
                d.rvsd.display().to_string(),
            );
            let uid_s = uid.to_string();
            let bounding = format!("-all,{bounding}");
            let p = lab
                .spawn(
                    "dir",
                    &[
                        "setpriv",
                        "--reuid",
                        &uid_s,
                        "--regid",
                        &uid_s,
                        "--clear-groups",
                        "--inh-caps",
                        &ambient,
                        "--ambient-caps",
                        &ambient,
                        "--bounding-set",
                        &bounding,
                        "--",
                        &rvsd,
                        "--config",
                        &config,
                        "--socket",
                        &socket,
                    ],
                )
                .expect("starting rvsd under setpriv");
            let t = Instant::now();
            while !(p.log().contains("rvsd: ready") && d.try_rvsadm(&["-Ln"]).is_ok()) {
                assert!(
                    p.is_running(),
                    "rvsd with the unit's capabilities exited:\n{}",
                    p.log()
                );
                assert!(
                    t.elapsed() < Duration::from_secs(30),
                    "not ready:\n{}",
                    p.log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            d.process = Some(p);
            let st =
                std::fs::read_to_string(format!("/proc/{}/status", d.process().pid())).unwrap();
            assert_eq!(field(&st, "Uid"), format!("{uid} {uid} {uid} {uid}"));
            assert_eq!(field(&st, "CapEff"), KEPT, "{st}");
            assert_eq!(field(&st, "CapBnd"), KEPT, "{st}");
            assert_eq!(field(&st, "CapAmb"), "0000000000000000", "{st}");
            // Ping checks (raw ICMP, CAP_NET_RAW kept) bring both servers up.
            wait_pool(&d, &[(1, 1), (2, 1)], Duration::from_secs(10));
            assert_eq!(spread(lab, 4), counts(&[2, 2]));
            let vip = format!("{VIP}:80");
            d.rvsadm(&["-d", "-t", &vip, "-r", &format!("{}:80", rs_ip(2))]);
            wait_pool(&d, &[(1, 1)], Duration::from_secs(2));
            assert_eq!(spread(lab, 2), counts(&[2]));
            let p = d.process.take().expect("rvsd runs");
            let (status, log) = p.stop(Duration::from_secs(5)).expect("stopping rvsd");
            assert!(status.success(), "{status}:\n{log}");
            assert!(log.contains("XDP detached, socket removed"), "{log}");
        },
    );
}
