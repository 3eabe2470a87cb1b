//! The rvsadm binary end to end against rvs-api's real server with a fake
//! handler: what reaches rvsd, what the operator sees, and exit codes.

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};

use rvs_api::testing::{FakeHandler, Served};
use rvs_api::{
    Command, ConnectionEntry, ControlError, DestSpec, DestStatus, Entity, ForwardMethod,
    FwmarkRuleSpec, Listing, Protocol, ServiceKey, ServiceSpec, ServiceStatus, Stats, Timeouts,
};

/// rvsd with one service and one connection; it refuses the scheduler
/// "nosuch" and (in a restore too) every delete of a service, as if the
/// service were missing, and keeps mark rules as rvsd does.
fn fake() -> FakeHandler {
    let listing = Listing {
        conn_table_size: 4096,
        counters: [
            ("conns_evicted".to_string(), 5),
            ("drop_defense_drop_packet".to_string(), 0),
        ]
        .into_iter()
        .collect(),
        timeouts: Timeouts {
            tcp: 7200,
            tcpfin: 60,
            udp: 30,
        },
        health: Vec::new(),
        fwmark_rules: Vec::new(),
        config_file: None,
        config_diverged: false,
        sync_daemons: vec![rvs_api::SyncDaemonStatus {
            daemon: rvs_api::SyncDaemon {
                role: rvs_api::SyncRole::Master,
                mcast_interface: "eth0".into(),
                syncid: 7,
                sync_maxlen: None,
                mcast_group: None,
                mcast_port: None,
                mcast_ttl: None,
                sync_refresh_period: None,
                sync_retries: None,
                sync_threshold: None,
            },
            maxlen: 1472,
        }],
        defense: Some(rvs_api::DefenseStatus {
            drop_entry: 2,
            drop_packet: 0,
            secure_tcp: 3,
            amemthresh: 1024,
            am_droprate: 10,
            free_entries: 12,
            low_memory: true,
            drop_entry_active: true,
            drop_rate: 0,
            secure_tcp_active: true,
        }),
        sysctl: Some(rvs_api::SysctlStatus {
            sloppy_tcp: true,
            sloppy_sctp: false,
            sync_persist_mode: false,
        }),
        services: vec![ServiceStatus {
            spec: ServiceSpec {
                key: ServiceKey::addr(Protocol::Tcp, "10.10.0.100".parse().unwrap(), 80),
                scheduler: "rr".into(),
                persistence_timeout: None,
                netmask: None,
                flags: vec![],
                one_packet: false,
                local_addresses: vec![],
                toa: false,
            },
            dests: vec![DestStatus {
                spec: DestSpec {
                    addr: "10.10.0.11".parse().unwrap(),
                    port: 80,
                    weight: 1,
                    method: ForwardMethod::Route,
                    tunnel: rvs_api::Tunnel::Ipip,
                    upper_threshold: 0,
                    lower_threshold: 0,
                },
                active_conns: 0,
                inactive_conns: 20,
                persistent_conns: 0,
                stats: Stats::default(),
            }],
            stats: Stats::default(),
            group: None,
        }],
    };
    let connections = vec![ConnectionEntry {
        protocol: Protocol::Tcp,
        client: ("10.10.0.9".parse().unwrap(), 51000),
        virtual_: ("10.10.0.100".parse().unwrap(), 80),
        dest: ("10.10.0.11".parse().unwrap(), 80),
        state: "ESTABLISHED".into(),
        expires_secs: 899,
        template: false,
        fwmark: None,
        local: None,
    }];
    FakeHandler::new(listing, connections).refusing(|c| match c {
        Command::AddService(s) if s.scheduler == "nosuch" => {
            Some(ControlError::bad_request("Scheduler not found: nosuch"))
        }
        Command::DeleteService(key) => Some(ControlError::NotFound {
            what: Entity::Service(*key),
        }),
        Command::Reload => Some(ControlError::bad_request(RELOAD_REFUSED)),
        _ => None,
    })
}

/// What the fake rvsd answers to `--reload`.
const RELOAD_REFUSED: &str =
    "/etc/rvs/rvsd.toml: line 3: unknown key `sheduler` (nothing was applied)";

fn rvsadm_stdin(socket: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rvsadm"))
        .args(args)
        .env("RVSD_SOCKET", socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn rvsadm(socket: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_rvsadm"))
        .args(args)
        .env("RVSD_SOCKET", socket)
        .output()
        .unwrap()
}

#[test]
fn rvsadm_against_a_served_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rvsd.sock");
    let served = Served::start(&path, fake()).unwrap();
    let fake = &served.handler;

    let out = rvsadm(&path, &["-A", "-t", "10.10.0.100:80", "-s", "rr"]);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");

    let out = rvsadm(&path, &["-Ln"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "IP Virtual Server version 1.2.1 (size=4096)\n\
         Prot LocalAddress:Port Scheduler Flags\n\
         \x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
         TCP  10.10.0.100:80 rr\n\
         \x20 -> 10.10.0.11:80                Route   1      0          20        \n"
    );

    // rvsd's refusal is printed as is, exit 255 (ipvsadm's -1).
    let out = rvsadm(&path, &["-A", "-t", "10.10.0.100:81", "-s", "nosuch"]);
    assert_eq!(out.status.code(), Some(255));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "Scheduler not found: nosuch\n"
    );

    // --reload: rvsd's verdict on its file, as systemctl reload shows it.
    let out = rvsadm(&path, &["--reload"]);
    assert_eq!(out.status.code(), Some(255));
    assert_eq!(fake.seen().last(), Some(&Command::Reload));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!("{RELOAD_REFUSED}\n")
    );

    // A usage error exits 2 and sends nothing.
    let before = fake.seen().len();
    let out = rvsadm(&path, &["-A", "-t", "10.10.0.100:80", "-r", "10.0.0.1"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "Illegal 'real-server' option with the 'add-service' command\n"
    );
    assert_eq!(fake.seen().len(), before);

    // -S -n prints rules; fed to -R they come back as one Restore.
    let out = rvsadm(&path, &["-S", "-n"]);
    assert!(out.status.success(), "{out:?}");
    let rules = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        rules,
        "-A -t 10.10.0.100:80 -s rr\n-a -t 10.10.0.100:80 -r 10.10.0.11:80 -g -w 1\n"
    );
    let out = rvsadm_stdin(&path, &["-R"], &rules);
    assert!(out.status.success(), "{out:?}");
    let service = ServiceKey::addr(Protocol::Tcp, "10.10.0.100".parse().unwrap(), 80);
    assert_eq!(
        fake.seen().last(),
        Some(&Command::Restore(vec![
            Command::AddService(ServiceSpec {
                key: service,
                scheduler: "rr".into(),
                persistence_timeout: None,
                netmask: None,
                flags: vec![],
                one_packet: false,
                local_addresses: vec![],
                toa: false,
            }),
            Command::AddDest {
                service,
                dest: DestSpec {
                    addr: "10.10.0.11".parse().unwrap(),
                    port: 80,
                    weight: 1,
                    method: ForwardMethod::Route,
                    tunnel: rvs_api::Tunnel::Ipip,
                    upper_threshold: 0,
                    lower_threshold: 0,
                },
            },
        ]))
    );

    // A malformed line: named, exit 2, nothing sent.
    let before = fake.seen().len();
    let out = rvsadm_stdin(
        &path,
        &["-R"],
        "-C\n\n# comment\n-a -t 10.10.0.100:80 -r 10.10.0.12 -w lots\n",
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "line 4: illegal weight specified\nnothing restored\n"
    );
    assert_eq!(fake.seen().len(), before);

    // rvsd's refusal of command 2 is reported against input line 5.
    let out = rvsadm_stdin(
        &path,
        &["-R"],
        "-C\n\nipvsadm -A -t 10.10.0.100:80\n# next fails\n-D -t 10.10.0.100:81\n-Z\n",
    );
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "line 5: No such service\nnothing restored\n"
    );

    // Connections and timeouts come from their own data.
    let out = rvsadm(&path, &["-Lcn"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "IPVS connection entries\n\
         pro expire state       source             virtual            destination\n\
         TCP 14:59  ESTABLISHED 10.10.0.9:51000    10.10.0.100:80     10.10.0.11:80\n"
    );
    // ipvsadm's line for each sync daemon.
    let out = rvsadm(&path, &["-L", "--daemon"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "master sync daemon (mcast=eth0, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n"
    );
    let out = rvsadm(&path, &["-L", "--timeout"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "Timeout (tcp tcpfin udp): 7200 60 30\n"
    );

    // --socket beats the environment.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rvsadm"))
        .args(["--socket", path.to_str().unwrap(), "-C"])
        .env("RVSD_SOCKET", dir.path().join("elsewhere.sock"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(fake.seen().last(), Some(&Command::Clear));

    drop(served);

    // Daemon gone: one clear line, exit 2 (ipvsadm's when IPVS is missing).
    let gone = dir.path().join("gone.sock");
    let out = rvsadm(&gone, &["-Ln"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!(
            "rvsd is not running (no control socket at {})\n",
            gone.display()
        )
    );
}

#[test]
fn mark_rules_add_list_save_restore() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rvsd.sock");
    let served = Served::start(&path, fake()).unwrap();
    let fake = &served.handler;
    let last = || fake.seen().last().cloned();
    let r7 = FwmarkRuleSpec {
        mark: 7,
        protocol: Some(Protocol::Tcp),
        addr: "10.10.0.32".parse().unwrap(),
        prefix_len: 30,
        ports: vec![80, 443],
    };
    let r8 = FwmarkRuleSpec {
        mark: 8,
        protocol: None,
        addr: "2001:db8::".parse().unwrap(),
        prefix_len: 64,
        ports: vec![],
    };

    // No rules yet: nothing listed, -S as ipvsadm's.
    let out = rvsadm(&path, &["--list-mark-rules"]);
    assert!(out.status.success() && out.stdout.is_empty(), "{out:?}");

    let out = rvsadm(
        &path,
        &[
            "--add-mark-rule",
            "7",
            "-t",
            "10.10.0.32/30",
            "--ports",
            "80,443",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
    assert_eq!(last(), Some(Command::AddFwmarkRule(r7.clone())));
    let out = rvsadm(&path, &["--add-mark-rule", "8", "--any", "[2001:db8::]/64"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(last(), Some(Command::AddFwmarkRule(r8.clone())));

    let listed = "MARK 7 tcp 10.10.0.32/30 ports 80,443\nMARK 8 any 2001:db8::/64\n";
    let out = rvsadm(&path, &["--list-mark-rules"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), listed);

    // -L is ipvsadm's byte for byte; --mark-rules appends the rules.
    let table = "IP Virtual Server version 1.2.1 (size=4096)\n\
         Prot LocalAddress:Port Scheduler Flags\n\
         \x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
         TCP  10.10.0.100:80 rr\n\
         \x20 -> 10.10.0.11:80                Route   1      0          20        \n";
    let out = rvsadm(&path, &["-Ln"]);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), table);
    let out = rvsadm(&path, &["-Ln", "--mark-rules"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{table}{listed}")
    );

    // Malformed: ipvsadm-style message, exit 2, nothing sent.
    let before = fake.seen().len();
    for (args, msg) in [
        (
            &["--add-mark-rule", "0", "-t", "10.10.0.1"][..],
            "invalid fwmark value `0' specified\n",
        ),
        (
            &["--add-mark-rule", "7", "10.10.0.1"][..],
            "You need to supply -t, -u or --any with the rule's address[/prefix] for the 'add-mark-rule' command\n",
        ),
        (
            &["--add-mark-rule", "7", "-u", "10.10.0.1/40"][..],
            "illegal prefix length `/40' specified (0-32)\n",
        ),
        (
            &["--add-mark-rule", "7", "-t", "10.10.0.1", "--ports", "80,x"][..],
            "illegal port `x' in port list `80,x' specified (1-65535, comma-separated)\n",
        ),
        (
            &["--delete-mark-rule", "seven"][..],
            "invalid fwmark value `seven' specified\n",
        ),
    ] {
        let out = rvsadm(&path, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert_eq!(String::from_utf8(out.stderr).unwrap(), msg, "{args:?}");
    }
    assert_eq!(fake.seen().len(), before);

    // -S puts the rules first; -C keeps them; -R replaces them (a delete
    // for each mark that exists, under the line of its first rule), so the
    // round trip leaves the same rules, not duplicates.
    let out = rvsadm(&path, &["-S", "-n"]);
    assert!(out.status.success(), "{out:?}");
    let saved = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        saved,
        "--add-mark-rule 7 -t 10.10.0.32/30 --ports 80,443\n\
         --add-mark-rule 8 --any 2001:db8::/64\n\
         -A -t 10.10.0.100:80 -s rr\n\
         -a -t 10.10.0.100:80 -r 10.10.0.11:80 -g -w 1\n"
    );
    let out = rvsadm(&path, &["-C"]);
    assert!(out.status.success(), "{out:?}");
    let out = rvsadm_stdin(&path, &["-R"], &saved);
    assert!(out.status.success(), "{out:?}");
    let service = ServiceKey::addr(Protocol::Tcp, "10.10.0.100".parse().unwrap(), 80);
    assert_eq!(
        last(),
        Some(Command::Restore(vec![
            Command::DeleteFwmarkRule { mark: 7 },
            Command::AddFwmarkRule(r7.clone()),
            Command::DeleteFwmarkRule { mark: 8 },
            Command::AddFwmarkRule(r8.clone()),
            Command::AddService(ServiceSpec {
                key: service,
                scheduler: "rr".into(),
                persistence_timeout: None,
                netmask: None,
                flags: vec![],
                one_packet: false,
                local_addresses: vec![],
                toa: false,
            }),
            Command::AddDest {
                service,
                dest: DestSpec {
                    addr: "10.10.0.11".parse().unwrap(),
                    port: 80,
                    weight: 1,
                    method: ForwardMethod::Route,
                    tunnel: rvs_api::Tunnel::Ipip,
                    upper_threshold: 0,
                    lower_threshold: 0,
                },
            },
        ]))
    );
    assert_eq!(fake.rules(), vec![r7.clone(), r8.clone()]);
    // Restored twice more: still the same rules.
    let out = rvsadm_stdin(&path, &["-R"], &saved);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(fake.rules(), vec![r7.clone(), r8.clone()]);

    // Delete: gone from the listing; deleting it again is rvsd's refusal.
    let out = rvsadm(&path, &["--delete-mark-rule", "8"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(last(), Some(Command::DeleteFwmarkRule { mark: 8 }));
    let out = rvsadm(&path, &["--list-mark-rules"]);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "MARK 7 tcp 10.10.0.32/30 ports 80,443\n"
    );
    let out = rvsadm(&path, &["--delete-mark-rule", "8"]);
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "no firewall-mark rule with mark 8\n"
    );

    // A restore whose own delete fails is reported against its line.
    let out = rvsadm_stdin(&path, &["-R"], "-C\n--delete-mark-rule 9\n");
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "line 2: no firewall-mark rule with mark 9\nnothing restored\n"
    );
    assert_eq!(fake.rules(), vec![r7]);

    drop(served);
}

#[test]
fn out_of_range_ports_are_refused_before_sending() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rvsd.sock");
    let served = Served::start(&path, fake()).unwrap();

    // 65617 once wrapped to 81 through getaddrinfo, deleting the wrong
    // service; ipvsadm refuses it.
    for args in [
        &["-D", "-t", "10.10.0.100:65617"][..],
        &["-a", "-t", "10.10.0.100:80", "-r", "10.10.0.11:65536", "-m"],
        &[
            "--add-mark-rule",
            "1",
            "--any",
            "10.10.0.0/24",
            "--ports",
            "80,65617",
        ],
    ] {
        let out = rvsadm(&path, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains("illegal"), "{args:?}: {err}");
    }

    assert!(
        served.handler.seen().is_empty(),
        "{:?}",
        served.handler.seen()
    );
}

#[test]
fn a_word_that_is_not_utf8_is_refused_not_a_panic() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rvsd.sock");
    let served = Served::start(&path, fake()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rvsadm"))
        .arg("-A")
        .arg("-t")
        .arg(std::ffi::OsStr::from_bytes(b"10.10.0.100:\xff"))
        .env("RVSD_SOCKET", &path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("argument 3 (`10.10.0.100:\u{fffd}') is not valid UTF-8"),
        "{err}"
    );
    assert!(
        served.handler.seen().is_empty(),
        "{:?}",
        served.handler.seen()
    );
}

#[test]
fn defense_set_and_list() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rvsd.sock");
    let served = Served::start(&path, fake()).unwrap();
    let out = rvsadm(
        &path,
        &["--defense", "drop_entry=1", "--defense=secure_tcp=3"],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        served.handler.last(),
        Some(Command::SetSysctl(rvs_api::SysctlSettings {
            drop_entry: Some(1),
            secure_tcp: Some(3),
            ..Default::default()
        }))
    );
    let out = rvsadm(&path, &["-L", "--defense"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("12 of 4096 connection entries free"),
        "{text}"
    );
    assert!(text.contains("drop_entry   2     yes"), "{text}");
    assert!(text.contains("secure_tcp   3     yes"), "{text}");
    assert!(text.contains("Evicted half-open 5"), "{text}");
    let out = rvsadm(&path, &["--defense", "drop_entry=7"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("0 (off)"),
        "{out:?}"
    );
}

#[test]
fn sysctl_set_and_list() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rvsd.sock");
    let served = Served::start(&path, fake()).unwrap();
    let out = rvsadm(
        &path,
        &["--sysctl", "sloppy_tcp=1", "--sysctl=sloppy_sctp=0"],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        served.handler.last(),
        Some(Command::SetSysctl(rvs_api::SysctlSettings {
            sloppy_tcp: Some(true),
            sloppy_sctp: Some(false),
            ..Default::default()
        }))
    );
    let out = rvsadm(&path, &["-L", "--sysctl"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "am_droprate = 10\namemthresh = 1024\ndrop_entry = 2\ndrop_packet = 0\n\
         secure_tcp = 3\nsloppy_sctp = 0\nsloppy_tcp = 1\nsync_persist_mode = 0\n"
    );
    let before = served.handler.seen().len();
    let out = rvsadm(&path, &["--sysctl", "sloppy_tcp=2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("sloppy_tcp=2: use 0 (off) or 1 (on)"),
        "{out:?}"
    );
    assert_eq!(served.handler.seen().len(), before, "nothing was sent");
}

/// RVS's FullNAT end to end: the options reach rvsd, the listing shows
/// them, and what -S saves -R restores.
#[test]
fn fullnat_add_list_save_restore() {
    let service = ServiceKey::addr(Protocol::Tcp, "10.10.0.100".parse().unwrap(), 80);
    let spec = ServiceSpec {
        key: service,
        scheduler: "rr".into(),
        persistence_timeout: None,
        netmask: None,
        flags: vec![],
        one_packet: false,
        local_addresses: vec![
            "10.10.0.200".parse().unwrap(),
            "10.10.0.201".parse().unwrap(),
        ],
        toa: true,
    };
    let dest = DestSpec {
        addr: "10.10.0.11".parse().unwrap(),
        port: 8080,
        weight: 2,
        method: ForwardMethod::FullNat,
        tunnel: rvs_api::Tunnel::Ipip,
        upper_threshold: 0,
        lower_threshold: 0,
    };
    let listing = Listing {
        services: vec![ServiceStatus {
            spec: spec.clone(),
            dests: vec![DestStatus {
                spec: dest.clone(),
                active_conns: 1,
                inactive_conns: 0,
                persistent_conns: 0,
                stats: Stats::default(),
            }],
            stats: Stats::default(),
            group: None,
        }],
        ..rvs_api::testing::empty_listing()
    };
    let conns = vec![ConnectionEntry {
        protocol: Protocol::Tcp,
        client: ("192.0.2.7".parse().unwrap(), 51000),
        virtual_: ("10.10.0.100".parse().unwrap(), 80),
        dest: ("10.10.0.11".parse().unwrap(), 8080),
        state: "ESTABLISHED".into(),
        expires_secs: 899,
        template: false,
        fwmark: None,
        local: Some(("10.10.0.200".parse().unwrap(), 1024)),
    }];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rvsd.sock");
    let served = Served::start(&path, FakeHandler::new(listing, conns)).unwrap();

    let out = rvsadm(
        &path,
        &[
            "-A",
            "-t",
            "10.10.0.100:80",
            "-s",
            "rr",
            "--laddr",
            "10.10.0.200",
            "--laddr",
            "10.10.0.201",
            "--toa",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        served.handler.last(),
        Some(Command::AddService(spec.clone()))
    );
    let out = rvsadm(
        &path,
        &[
            "-a",
            "-t",
            "10.10.0.100:80",
            "-r",
            "10.10.0.11:8080",
            "--fullnat",
            "-w",
            "2",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        served.handler.last(),
        Some(Command::AddDest {
            service,
            dest: dest.clone()
        })
    );
    // The short letters are ipvsadm's: FullNAT has none.
    let out = rvsadm(
        &path,
        &["-a", "-t", "10.10.0.100:80", "-r", "10.10.0.11", "-F"],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    let out = rvsadm(&path, &["-Ln"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "IP Virtual Server version 1.2.1 (size=4096)\n\
         Prot LocalAddress:Port Scheduler Flags\n\
         \x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
         TCP  10.10.0.100:80 rr toa\n\
         \x20 local addresses: 10.10.0.200 10.10.0.201\n\
         \x20 -> 10.10.0.11:8080              FullNat 2      1          0         \n"
    );
    let out = rvsadm(&path, &["-Lnc"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .ends_with("10.10.0.11:8080 local 10.10.0.200:1024\n"),);

    let out = rvsadm(&path, &["-S", "-n"]);
    assert!(out.status.success(), "{out:?}");
    let rules = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        rules,
        "-A -t 10.10.0.100:80 -s rr --laddr 10.10.0.200 --laddr 10.10.0.201 --toa\n\
         -a -t 10.10.0.100:80 -r 10.10.0.11:8080 --fullnat -w 2\n"
    );
    let out = rvsadm_stdin(&path, &["-R"], &rules);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        served.handler.last(),
        Some(Command::Restore(vec![
            Command::AddService(spec),
            Command::AddDest { service, dest },
        ]))
    );
}
