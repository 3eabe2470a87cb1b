//! Active/passive failover with keepalived VRRP (issue 12, items 3 and 5):
//! two directors on shared front, server and sync segments, each running
//! rvsd with the same service and a backup sync daemon, and keepalived in
//! VRRP-only mode whose notify hooks start and stop rvsd's master sync
//! daemon. Under a wrk keep-alive load through the master, its rvsd and
//! keepalived crash (SIGKILL, keepalived's addresses left behind as after
//! a real crash); the backup must hold the floating address within 3 s,
//! and wrk must see no socket error and no non-2xx answer: the backup
//! already had the connections from sync and forwards them from their
//! first packet. NAT (the real servers' gateway fails over in the same
//! VRRP sync group), DR, and FullNAT (the local addresses the servers
//! answer fail over in that group; the backup had each connection with its
//! local end and port), one after the other.
//!
//! Needs root, keepalived and wrk; builds rvsd/rvsadm itself if needed.
//! Everything runs in the lab's namespaces and goes with them. Load:
//! `wrk -t1 -c10 -d18s` per mode.

#[allow(dead_code)]
mod common;

use std::time::{Duration, Instant};

use rvs_lab::demo::Rvsd;
use rvs_lab::ha::{backup_sync_daemon, keepalived_conf};
use std::net::Ipv4Addr;

use rvs_lab::{LabSpec, Mode, VipRoute, FLOATING_BACK_IP, FLOATING_FRONT_IP, LOCAL_IPS, VIP};

/// The takeover the issue asks for.
const TAKEOVER_BOUND: Duration = Duration::from_secs(3);

/// The address of the back leg's VRRP instance that must move with the
/// VIP: the NAT servers' gateway or FullNAT's first local address.
fn floating_back(mode: Mode) -> Option<Ipv4Addr> {
    match mode {
        Mode::Nat => Some(FLOATING_BACK_IP),
        Mode::FullNat => Some(LOCAL_IPS[0]),
        Mode::Dr | Mode::Tun => None,
    }
}

fn failover(mode: Mode) {
    let spec = LabSpec {
        directors: 2,
        vip_route: VipRoute::Floating,
        ..common::lab_spec(mode, 1)
    };
    let name = format!("ha-{}", common::method_name(mode));
    common::with_lab(&name, spec, |lab| {
        let bins = common::binaries();
        let config = format!(
            "interfaces = [\"front\", \"back\"]\n{}{}",
            common::rr_service(common::method_name(mode), &[1, 2, 3]),
            backup_sync_daemon()
        );
        if mode == Mode::FullNat {
            for role in lab.directors() {
                lab.guard_local_ports(&role)
                    .unwrap_or_else(|e| panic!("nftables in {role}: {e}"));
            }
        }
        let mut directors = Vec::new();
        let mut keepaliveds = Vec::new();
        for (k, role) in lab.directors().iter().enumerate() {
            let rvsd = Rvsd::start_on(lab, role, &config, &bins.rvsd, &bins.rvsadm)
                .unwrap_or_else(|e| panic!("rvsd in {role}: {e}"));
            let hook = format!(
                "/usr/bin/env RVSD_SOCKET={} {}",
                rvsd.socket().display(),
                bins.rvsadm.display()
            );
            let ka = lab
                .start_keepalived(role, &keepalived_conf(k + 1, mode, &hook))
                .unwrap_or_else(|e| panic!("keepalived in {role}: {e}"));
            directors.push(rvsd);
            keepaliveds.push(ka);
        }
        let [master, backup] = <[Rvsd; 2]>::try_from(directors).expect("two directors");
        let [master_ka, backup_ka] =
            <[rvs_lab::ha::Keepalived; 2]>::try_from(keepaliveds).expect("two keepaliveds");

        // dir (priority 150) becomes master and starts its master daemon.
        lab.wait_holds("dir", FLOATING_FRONT_IP, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{e}\nkeepalived:\n{}", master_ka.log()));
        if let Some(back) = floating_back(mode) {
            lab.wait_holds("dir", back, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("{e}\nkeepalived:\n{}", master_ka.log()));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !master
            .rvsadm(&["-L", "--daemon"])
            .unwrap_or_default()
            .contains("master sync daemon")
        {
            assert!(
                Instant::now() < deadline,
                "notify_master did not start rvsd's master sync daemon:\n{}",
                master_ka.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            !lab.holds("dir2", FLOATING_FRONT_IP).unwrap(),
            "both directors hold {FLOATING_FRONT_IP}"
        );
        assert!(
            !backup
                .rvsadm(&["-L", "--daemon"])
                .unwrap()
                .contains("master sync daemon"),
            "the backup runs a master sync daemon"
        );
        lab.wait_http("client", &format!("http://{VIP}/"), Duration::from_secs(10))
            .expect("the VIP answers through the master");

        // Keep-alive load through the master, timeouts long enough to ride
        // over the takeover.
        let wrk = lab
            .spawn(
                "client",
                &[
                    "wrk",
                    "-t1",
                    "-c10",
                    "-d18s",
                    "--timeout",
                    "8s",
                    &format!("http://{VIP}/"),
                ],
            )
            .expect("starting wrk");
        std::thread::sleep(Duration::from_secs(4));
        let on_backup = backup.rvsadm(&["-Lnc"]).unwrap();
        let synced = on_backup
            .lines()
            .filter(|l| l.contains("ESTABLISHED"))
            .count();
        assert!(
            synced >= 10,
            "wrk's connections are not on the backup before the crash:\n{on_backup}"
        );
        if mode == Mode::FullNat {
            let local = format!(" local {}:", LOCAL_IPS[0]);
            let with_local = on_backup
                .lines()
                .filter(|l| l.contains("ESTABLISHED") && l.contains(&local))
                .count();
            assert!(
                with_local >= 10,
                "the backup lacks the local ends:\n{on_backup}"
            );
        }
        let before = backup.rvsadm(&["-Ln", "--stats", "--exact"]).unwrap();

        let crashed = Instant::now();
        let (_, master_log) = master.kill(libc::SIGKILL).expect("killing rvsd");
        master_ka.crash().expect("killing keepalived");
        let takeover = lab
            .wait_holds("dir2", FLOATING_FRONT_IP, Duration::from_secs(10))
            .map(|_| crashed.elapsed())
            .unwrap_or_else(|e| panic!("{e}\nbackup keepalived:\n{}", backup_ka.log()));
        if let Some(back) = floating_back(mode) {
            lab.wait_holds("dir2", back, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("{e}\nbackup keepalived:\n{}", backup_ka.log()));
        }
        eprintln!("{name}: the backup holds {FLOATING_FRONT_IP} {takeover:.2?} after the crash");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !backup
            .rvsadm(&["-L", "--daemon"])
            .unwrap_or_default()
            .contains("master sync daemon")
        {
            assert!(
                Instant::now() < deadline,
                "notify_master did not start the new master's sync daemon:\n{}",
                backup_ka.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }

        // The crashed director comes back: rvsd (empty table) and
        // keepalived again. It learns the connections from the new
        // master's refresh before its preempt_delay lets it take the
        // addresses back, so the flows it gets back are known there.
        std::thread::sleep(Duration::from_secs(1));
        let returned = Rvsd::start_on(lab, "dir", &config, &bins.rvsd, &bins.rvsadm)
            .unwrap_or_else(|e| panic!("rvsd in dir again: {e}"));
        let hook = format!(
            "/usr/bin/env RVSD_SOCKET={} {}",
            returned.socket().display(),
            bins.rvsadm.display()
        );
        let returned_ka = lab
            .start_keepalived("dir", &keepalived_conf(1, mode, &hook))
            .expect("keepalived in dir again");
        let back = Instant::now();
        // keepalived (BACKUP at start) first drops what the crash left.
        let deadline = Instant::now() + Duration::from_secs(15);
        let failback = loop {
            if lab.holds("dir", FLOATING_FRONT_IP).unwrap()
                && !lab.holds("dir2", FLOATING_FRONT_IP).unwrap()
            {
                break back.elapsed();
            }
            assert!(
                Instant::now() < deadline,
                "dir did not take {FLOATING_FRONT_IP} back:\n{}",
                returned_ka.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        eprintln!("{name}: dir took {FLOATING_FRONT_IP} back {failback:.2?} after it returned");

        let deadline = Instant::now() + Duration::from_secs(30);
        while wrk.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        let (status, out) = wrk.stop(Duration::from_secs(2)).expect("wrk");
        let result = common::parse_wrk(&out);
        let after = backup.rvsadm(&["-Ln", "--stats", "--exact"]).unwrap();
        let daemons = backup.rvsadm(&["-L", "--daemon"]).unwrap();
        // wrk does not count a keep-alive connection that stalls; a flow a
        // master did not know would be dropped there as mid-flow.
        let unknown = |r: &Rvsd| {
            common::counters_of(&common::get_listing(r.socket()))
                .get("drop_no_connection")
                .copied()
                .unwrap_or(0)
        };
        let unknown = (unknown(&backup), unknown(&returned));
        eprintln!(
            "{name}: wrk {} requests, errors {:?}; backup stats before the crash:\n{before}after:\n{after}",
            result.requests, result.errors
        );
        assert!(status.success(), "wrk: {out}");
        assert!(
            takeover <= TAKEOVER_BOUND,
            "takeover took {takeover:?}\n{}",
            backup_ka.log()
        );
        assert!(
            result.errors.is_empty(),
            "wrk saw errors across the takeover:\n{out}\nbackup rvsd:\n{}\nold master rvsd:\n{master_log}",
            backup.log()
        );
        assert_eq!(
            unknown,
            (0, 0),
            "(backup, returned master) dropped packets of connections they did not know"
        );
        let returned_daemons = returned.rvsadm(&["-L", "--daemon"]).unwrap();
        assert!(
            returned_daemons.contains("master sync daemon") && !daemons.contains("master sync daemon"),
            "after the failback only dir should run a master: dir {returned_daemons:?}, dir2 {daemons:?}"
        );
        // The load went through the backup while it was master: its service
        // counted packets after the takeover.
        let in_pkts = |stats: &str| -> u64 {
            stats
                .lines()
                .find(|l| l.starts_with("TCP"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        assert!(
            in_pkts(&after) > in_pkts(&before),
            "no packets through the new master:\n{after}"
        );
        backup_ka.stop().expect("stopping keepalived");
        backup.stop().expect("stopping rvsd");
        returned_ka.stop().expect("stopping keepalived");
        returned.stop().expect("stopping rvsd");
    });
}

#[test]
fn the_backup_takes_over_under_load_without_errors() {
    for mode in [Mode::Nat, Mode::Dr] {
        failover(mode);
    }
}

#[test]
fn the_backup_takes_fullnat_connections_over_with_their_local_ends() {
    failover(Mode::FullNat);
}
