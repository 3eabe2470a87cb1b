//! Connection sync between two rvsd over multicast, in the kernel's IPVS
//! format (issue 12, item 1): the lab's director runs a master sync daemon
//! on a link `sync0` to a second director namespace, whose rvsd runs a
//! backup daemon with the same service. While wrk holds keep-alive
//! connections through the master (NAT, 2 queues), the backup lists the
//! same connections — client, virtual address, real server, protocol,
//! state — and counts them on the same servers; datagrams of another sync
//! id, a truncated one and one with a bad entry are counted and ignored.
//!
//! FullNAT connections (an RVS extension, carried in a parameter of RVS's
//! own) reach the backup with their local ends: it lists each with the
//! local address and port the master gave it.
//!
//! `sync_threshold` (from the file, then from `rvsadm --start-daemon`)
//! picks which datagrams of a UDP flow the master sends it on, counted by
//! the engine with the fast path off.
//!
//! Needs root; builds rvsd/rvsadm itself if needed. The lab and the backup
//! namespace (with its end of the link and its rvsd) are removed on exit,
//! also on failure. Load: `wrk -t1 -c10` for 8 s, then for 6 s; two runs
//! of 20 UDP datagrams.

#[allow(dead_code)]
mod common;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use rvs_lab::{rs_ip, Mode, LOCAL_IPS, VIP};
use rvs_netns::{run_in, Bed, End, Veth};
use rvs_wire::ipvs_sync::{flags, Encoder, SyncConn};

use common::{counters_of, get_listing, Daemon};

const SYNCID: u8 = 7;

fn sync_daemon(role: &str, iface: &str) -> String {
    format!(
        "[[sync_daemon]]\nrole = \"{role}\"\nmcast_interface = \"{iface}\"\nsyncid = {SYNCID}\n"
    )
}

/// The IPv6 group of the IPv6 test (the kernel has no default one).
const GROUP6: &str = "ff02::8:81";

fn sync_daemon6(role: &str, iface: &str) -> String {
    format!("{}mcast_group = \"{GROUP6}\"\n", sync_daemon(role, iface))
}

/// The backup rvsd, killed on drop.
struct Backup {
    child: Child,
    log: std::path::PathBuf,
    socket: std::path::PathBuf,
}

impl Drop for Backup {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Backup {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn rvsadm(&self, args: &[&str]) -> String {
        let out = std::process::Command::new(&common::binaries().rvsadm)
            .args(args)
            .env("RVSD_SOCKET", &self.socket)
            .output()
            .expect("running rvsadm");
        assert!(out.status.success(), "rvsadm {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// (state, client, virtual, server) of each TCP entry of `rvsadm -Lnc`.
fn conns(listing: &str) -> BTreeSet<(String, String, String, String)> {
    listing
        .lines()
        .filter(|l| l.starts_with("TCP"))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 6).then(|| (f[2].into(), f[3].into(), f[4].into(), f[5].into()))
        })
        .filter(|c| c.2 == format!("{VIP}:80"))
        .collect()
}

/// A datagram from the master's side of the link, as another director
/// would send it.
fn send_raw(lab_dir_ns: &str, datagram: Vec<u8>) {
    run_in(lab_dir_ns, move || {
        let s = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::new(10, 250, 0, 1), 0)).unwrap();
        socket2::SockRef::from(&s)
            .set_multicast_if_v4(&Ipv4Addr::new(10, 250, 0, 1))
            .unwrap();
        s.send_to(
            &datagram,
            SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 81), 8848),
        )
        .unwrap();
    });
}

/// Waits until the backup's `rvsadm -Lnc`, as `read` reads it, has every
/// entry of `want` (the master's); the master sends within a second (a
/// partial datagram waits 1 s), so 5 s is ample.
fn wait_on_backup<T: Ord + std::fmt::Debug>(
    backup: &Backup,
    want: &BTreeSet<T>,
    read: fn(&str) -> BTreeSet<T>,
) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut on_backup = read(&backup.rvsadm(&["-Lnc"]));
    while !want.is_subset(&on_backup) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        on_backup = read(&backup.rvsadm(&["-Lnc"]));
    }
    assert!(
        want.is_subset(&on_backup),
        "on the master but not on the backup: {:?}\nbackup:\n{}\nlog:\n{}",
        want.difference(&on_backup).collect::<Vec<_>>(),
        backup.rvsadm(&["-Lnc"]),
        backup.log()
    );
}

/// Waits for `wrk` to finish (20 s at most) and checks it saw no error.
fn wrk_without_errors(wrk: rvs_lab::Spawned) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while wrk.is_running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, out) = wrk.stop(Duration::from_secs(2)).expect("wrk");
    assert!(status.success(), "wrk: {out}");
    assert!(common::parse_wrk(&out).errors.is_empty(), "wrk: {out}");
}

/// The second director's rvsd in `dir2`, with the lab's NAT service and
/// `daemon` (its `[[sync_daemon]]`); returns once it is ready.
fn spawn_backup(lab: &rvs_lab::Lab, dir2: &str, daemon: &str) -> Backup {
    spawn_backup_with(lab, dir2, &common::rr_service("nat", &[1, 2, 3]), daemon)
}

/// [`spawn_backup`] with `service` in its file.
fn spawn_backup_with(lab: &rvs_lab::Lab, dir2: &str, service: &str, daemon: &str) -> Backup {
    let tmp = lab.dir().join("backup");
    std::fs::create_dir_all(&tmp).unwrap();
    let config = tmp.join("rvsd.toml");
    std::fs::write(
        &config,
        format!("interfaces = [\"sync1\"]\n{service}{daemon}"),
    )
    .unwrap();
    let socket = tmp.join("rvsd.sock");
    let log = tmp.join("rvsd.log");
    let bins = common::binaries();
    let child = rvs_netns::command(
        dir2,
        &[
            bins.rvsd.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--socket",
            socket.to_str().unwrap(),
        ],
    )
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&log).unwrap())
    .spawn()
    .expect("starting the backup rvsd");
    let backup = Backup { child, log, socket };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !backup.log().contains("rvsd: ready") {
        assert!(
            Instant::now() < deadline,
            "backup not ready:\n{}",
            backup.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    backup
}

/// The second director's namespace and the sync link `sync0` (the lab's
/// director, 10.250.0.1) – `sync1` (its, 10.250.0.2); removed with the bed.
fn second_director(lab: &rvs_lab::Lab) -> (Bed, String) {
    let mut bed = Bed::new();
    let dir2 = bed.add("dir2");
    Veth::new(
        End::new(&lab.ns("dir"), "sync0").addr("10.250.0.1/24"),
        End::new(&dir2, "sync1").addr("10.250.0.2/24"),
    )
    .up()
    .create()
    .unwrap_or_else(|e| panic!("{e}"));
    bed.ip(&dir2, &["route", "add", "10.0.2.0/24", "via", "10.250.0.1"]);
    (bed, dir2)
}

#[test]
fn a_backup_lists_the_masters_connections_and_ignores_bad_datagrams() {
    let spec = common::lab_spec(Mode::Nat, 2);
    common::with_lab("sync", spec, |lab| {
        let (bed, dir2) = second_director(lab);
        let dir = lab.ns("dir");

        let master = Daemon::start(
            lab,
            &format!(
                "{}{}",
                common::rr_service("nat", &[1, 2, 3]),
                sync_daemon("master", "sync0")
            ),
        );
        let backup = spawn_backup(lab, &dir2, &sync_daemon("backup", "sync1"));
        assert_eq!(
            master.rvsadm(&["-L", "--daemon"]),
            "master sync daemon (mcast=sync0, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n"
        );
        assert!(backup
            .rvsadm(&["-L", "--daemon"])
            .starts_with("backup sync daemon (mcast=sync1, syncid=7"));

        // Keep-alive connections through the master.
        let wrk = lab
            .spawn(
                "client",
                &["wrk", "-t1", "-c10", "-d8s", &format!("http://{VIP}/")],
            )
            .expect("starting wrk");
        std::thread::sleep(Duration::from_secs(3));
        let on_master = conns(&master.rvsadm(&["-Lnc"]));
        let established: BTreeSet<_> = on_master
            .iter()
            .filter(|c| c.0 == "ESTABLISHED")
            .cloned()
            .collect();
        assert!(
            established.len() >= 10,
            "wrk's connections on the master: {on_master:?}"
        );
        wait_on_backup(&backup, &established, conns);
        // Counted on the same servers.
        let active = |ln: &str| -> Vec<(String, u64)> {
            ln.lines()
                .filter(|l| l.trim_start().starts_with("->") && !l.contains("RemoteAddress"))
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    Some((f.get(1)?.to_string(), f.get(4)?.parse().ok()?))
                })
                .collect()
        };
        let backup_active: u64 = active(&backup.rvsadm(&["-Ln"])).iter().map(|a| a.1).sum();
        assert!(backup_active >= 10, "{}", backup.rvsadm(&["-Ln"]));

        wrk_without_errors(wrk);

        // Datagrams the backup must count and ignore.
        let before = counters_of(&get_listing(&backup.socket));
        let entry = SyncConn {
            protocol: 6,
            flags: flags::MASQ,
            state: 1,
            client: ("10.0.1.2".parse().unwrap(), 1),
            virtual_addr: (VIP.into(), 80),
            dest: (rs_ip(1).into(), 80),
            fwmark: 0,
            timeout: 900,
            local: None,
        };
        let gram = |syncid: u8, e: &SyncConn| {
            let mut enc = Encoder::new(syncid, 1472);
            enc.push(e);
            enc.flush().unwrap()
        };
        let dir_ns = dir.clone();
        send_raw(&dir_ns, gram(SYNCID + 1, &entry));
        let mut truncated = gram(SYNCID, &entry);
        truncated.truncate(20);
        send_raw(&dir_ns, truncated);
        send_raw(&dir_ns, gram(SYNCID, &SyncConn { state: 40, ..entry }));
        let deadline = Instant::now() + Duration::from_secs(5);
        let get =
            |c: &std::collections::BTreeMap<String, u64>, k: &str| c.get(k).copied().unwrap_or(0);
        loop {
            let now = counters_of(&get_listing(&backup.socket));
            let d = |k: &str| get(&now, k) - get(&before, k);
            if d("sync_rx_other_syncid") >= 1
                && d("sync_rx_malformed") >= 1
                && d("sync_rx_skipped_entries") >= 1
            {
                assert!(
                    !conns(&backup.rvsadm(&["-Lnc"]))
                        .iter()
                        .any(|c| c.1 == "10.0.1.2:1"),
                    "an ignored entry was installed"
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "bad datagrams not counted: before {before:?}\nnow {now:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let m = master.counters();
        let b = counters_of(&get_listing(&backup.socket));
        eprintln!(
            "sync: {} established synced; master sent {} datagrams ({} entries), backup installed {}",
            established.len(),
            get(&m, "sync_datagrams_sent"),
            get(&m, "sync_sent"),
            get(&b, "sync_installed")
        );
        assert!(get(&b, "sync_installed") >= 10);
        master.stop();
        drop(backup);
        drop(bed);
    });
}

/// (client, local end) of each ESTABLISHED FullNAT entry of `rvsadm -Lnc`
/// (` local LIP:lport` after ipvsadm's columns).
fn local_ends(listing: &str) -> BTreeSet<(String, String)> {
    listing
        .lines()
        .filter(|l| l.starts_with("TCP") && l.contains("ESTABLISHED"))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let at = f.iter().position(|w| *w == "local")?;
            Some((f.get(3)?.to_string(), f.get(at + 1)?.to_string()))
        })
        .collect()
}

#[test]
fn fullnat_connections_reach_the_backup_with_their_local_ends() {
    let spec = common::lab_spec(Mode::FullNat, 2);
    common::with_lab("sync-fullnat", spec, |lab| {
        let (bed, dir2) = second_director(lab);
        let service = common::rr_service("fullnat", &[1, 2, 3]);
        let master = Daemon::start(lab, &format!("{service}{}", sync_daemon("master", "sync0")));
        let backup = spawn_backup_with(lab, &dir2, &service, &sync_daemon("backup", "sync1"));
        let wrk = lab
            .spawn(
                "client",
                &["wrk", "-t1", "-c10", "-d6s", &format!("http://{VIP}/")],
            )
            .expect("starting wrk");
        std::thread::sleep(Duration::from_secs(3));
        let on_master = local_ends(&master.rvsadm(&["-Lnc"]));
        assert!(
            on_master.len() >= 10
                && on_master
                    .iter()
                    .all(|(_, l)| l.starts_with(&format!("{}:", LOCAL_IPS[0]))),
            "wrk's connections on the master, with local ends: {on_master:?}"
        );
        wait_on_backup(&backup, &on_master, local_ends);
        wrk_without_errors(wrk);
        let refused = counters_of(&get_listing(&backup.socket))
            .get("sync_refused")
            .copied()
            .unwrap_or(0);
        assert_eq!(refused, 0, "backup log:\n{}", backup.log());
        master.stop();
        drop(backup);
        drop(bed);
    });
}

/// Waits until `dev` in `ns` has an IPv6 link-local address past duplicate
/// address detection (multicast needs a source address).
fn wait_ipv6_ready(ns: &str, dev: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = rvs_netns::ip(ns, &["-6", "addr", "show", "dev", dev]).unwrap_or_default();
        if out.contains("inet6 fe80") && !out.contains("tentative") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{dev} in {ns} has no usable IPv6 link-local address:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The same sync over an IPv6 multicast group, as the kernel takes one
/// (`--mcast-group ff02::8:81`: the sockets follow the group's family).
/// Load: `wrk -t1 -c4` for 4 s.
#[test]
fn sync_runs_over_an_ipv6_multicast_group() {
    let spec = common::lab_spec(Mode::Nat, 1);
    common::with_lab("sync6", spec, |lab| {
        let mut bed = Bed::new();
        let dir2 = bed.add("dir2");
        let dir = lab.ns("dir");
        // The lab switches IPv6 off in its namespaces; the sync link has it.
        lab.exec(
            "dir",
            &["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=0"],
        )
        .expect("enabling IPv6 for the sync link");
        Veth::new(
            End::new(&dir, "sync0").addr("10.250.0.1/24"),
            End::new(&dir2, "sync1").addr("10.250.0.2/24"),
        )
        .up()
        .create()
        .unwrap_or_else(|e| panic!("{e}"));
        lab.exec(
            "dir",
            &["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"],
        )
        .expect("restoring the lab's default");
        bed.ip(&dir2, &["route", "add", "10.0.2.0/24", "via", "10.250.0.1"]);
        wait_ipv6_ready(&dir, "sync0");
        wait_ipv6_ready(&dir2, "sync1");

        let master = Daemon::start(
            lab,
            &format!(
                "{}{}",
                common::rr_service("nat", &[1, 2, 3]),
                sync_daemon6("master", "sync0")
            ),
        );
        let backup = spawn_backup(lab, &dir2, &sync_daemon6("backup", "sync1"));
        assert_eq!(
            master.rvsadm(&["-L", "--daemon"]),
            format!(
                "master sync daemon (mcast=sync0, syncid=7, maxlen=1452, group={GROUP6}, port=8848, ttl=1)\n"
            ),
            "the IPv6 and UDP headers take 48 bytes of the MTU"
        );
        assert!(backup
            .rvsadm(&["-L", "--daemon"])
            .contains(&format!("group={GROUP6}, port=8848")));

        let wrk = lab
            .spawn(
                "client",
                &["wrk", "-t1", "-c4", "-d4s", &format!("http://{VIP}/")],
            )
            .expect("starting wrk");
        std::thread::sleep(Duration::from_secs(2));
        let established: BTreeSet<_> = conns(&master.rvsadm(&["-Lnc"]))
            .into_iter()
            .filter(|c| c.0 == "ESTABLISHED")
            .collect();
        assert!(established.len() >= 4, "wrk's connections: {established:?}");
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut on_backup = conns(&backup.rvsadm(&["-Lnc"]));
        while !established.is_subset(&on_backup) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            on_backup = conns(&backup.rvsadm(&["-Lnc"]));
        }
        assert!(
            established.is_subset(&on_backup),
            "not synced over {GROUP6}: {:?}\nbackup log:\n{}",
            established.difference(&on_backup).collect::<Vec<_>>(),
            backup.log()
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while wrk.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        let (status, out) = wrk.stop(Duration::from_secs(2)).expect("wrk");
        assert!(status.success(), "wrk: {out}");
        let b = counters_of(&get_listing(&backup.socket));
        assert!(b.get("sync_installed").copied().unwrap_or(0) >= 4, "{b:?}");
        master.stop();
        drop(backup);
        drop(bed);
    });
}

/// The UDP service of the threshold test: VIP:53 by NAT to rs1's port 53.
fn udp_service() -> String {
    format!(
        "[[service]]\nprotocol = \"udp\"\naddress = \"{VIP}\"\nport = 53\nscheduler = \"rr\"\n  \
         [[service.real_server]]\n  address = \"{}\"\n  port = 53\n  method = \"nat\"\n",
        rs_ip(1)
    )
}

/// (client, state) of each UDP entry of `rvsadm -Lnc`.
fn udp_conns(listing: &str) -> BTreeSet<(String, String)> {
    listing
        .lines()
        .filter(|l| l.starts_with("UDP"))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 6).then(|| (f[3].into(), f[2].into()))
        })
        .collect()
}

/// `sync_threshold` end to end (file, rvsadm, worker, engine): with the
/// fast path off the engine counts every datagram of a UDP flow, and a
/// master sends the flow on the ones the threshold and period pick.
#[test]
fn a_master_sends_a_flow_on_the_packets_its_sync_threshold_picks() {
    let spec = common::lab_spec(Mode::Nat, 2);
    common::with_lab("synthr", spec, |lab| {
        let (bed, dir2) = second_director(lab);
        let master = Daemon::start(
            lab,
            &format!(
                "fast_path = false\n{}{}sync_threshold = [2, 4]\n",
                udp_service(),
                sync_daemon("master", "sync0")
            ),
        );
        let backup = spawn_backup_with(lab, &dir2, &udp_service(), &sync_daemon("backup", "sync1"));
        // Something listens on rs1, so no ICMP error comes back.
        let sink = lab
            .spawn(
                "rs1",
                &[
                    "python3",
                    "-c",
                    "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
                     s.bind(('', 53))\nwhile True: s.recv(2048)",
                ],
            )
            .expect("starting a UDP sink on rs1");
        // 20 datagrams from one client port; waits until the backup lists
        // the flow and the master's counters have settled, and returns how
        // many entries the master sent meanwhile.
        let flow = |port: u16| -> u64 {
            let before = master.counters().get("sync_sent").copied().unwrap_or(0);
            let send = format!(
                "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
                 s.bind(('', {port}))\nfor _ in range(20): s.sendto(b'q', ('{VIP}', 53))"
            );
            lab.exec("client", &["python3", "-c", &send])
                .expect("sending 20 datagrams");
            let client = format!("{}:{port}", rvs_lab::CLIENT_IP);
            let want = BTreeSet::from([(client.clone(), "UDP".to_string())]);
            let deadline = Instant::now() + Duration::from_secs(5);
            while !udp_conns(&backup.rvsadm(&["-Lnc"])).is_superset(&want) {
                assert!(
                    Instant::now() < deadline,
                    "{client} not on the backup:\n{}\nmaster:\n{}",
                    backup.rvsadm(&["-Lnc"]),
                    master.rvsadm(&["-Lnc"])
                );
                std::thread::sleep(Duration::from_millis(200));
            }
            std::thread::sleep(Duration::from_millis(600));
            master.counters().get("sync_sent").copied().unwrap_or(0) - before
        };
        // [2, 4]: datagrams 2, 6, 10, 14 and 18.
        assert_eq!(flow(40001), 5, "entries sent for 20 datagrams at [2, 4]");
        // rvsadm's way, a period of 0: datagram 1 alone.
        master.rvsadm(&["--stop-daemon", "master"]);
        master.rvsadm(&[
            "--start-daemon",
            "master",
            "--mcast-interface",
            "sync0",
            "--syncid",
            &SYNCID.to_string(),
            "--sync-threshold",
            "1,0",
        ]);
        assert_eq!(flow(40002), 1, "entries sent for 20 datagrams at 1,0");
        drop(sink);
        master.stop();
        drop(backup);
        drop(bed);
    });
}
