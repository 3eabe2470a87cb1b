//! Restart and upgrade without losing connections (issue 13, item 2): with
//! its XDP links and connection maps pinned on a BPF file system, rvsd can
//! stop for a successor (SIGUSR2, the unit's `RestartKillSignal`) or crash
//! (SIGKILL), and established connections keep flowing: the XDP program
//! forwards them while no rvsd runs, and the next rvsd adopts them.
//!
//! In each mode (DR, NAT, TUN, FullNAT; 2 RX queues per veth), wrk holds 20
//! keep-alive connections through the VIP for 24 s while rvsd is handed
//! over twice and then killed and started again: wrk must see no error, and
//! every new rvsd must have adopted the connections (they show as
//! ESTABLISHED in `rvsadm -Lnc` and as active connections in `-Ln`;
//! FullNAT's keep their local ends, as `-Lnc` shows). The pin directory is
//! gone after the last, ordinary stop.
//!
//! Needs root; builds rvsd/rvsadm itself if needed. Every test has its own
//! lab (own prefix), its own bpffs under /tmp (unmounted on exit, also on
//! failure or Ctrl-C) and its own rvsd; wrk runs 24 s.

#[allow(dead_code)]
mod common;

use std::time::{Duration, Instant};

use rvs_lab::{Mode, LOCAL_IPS, VIP};
use rvs_netns::BpfFs;

use common::{parse_wrk, wrk_args, Daemon};

/// How long wrk runs: long enough for three restarts with time between.
const WRK_SECONDS: u32 = 24;

/// ESTABLISHED connections to the VIP in `rvsadm -Lnc`.
fn established(d: &Daemon<'_>) -> usize {
    d.rvsadm(&["-Lnc"])
        .lines()
        .filter(|l| l.contains("ESTABLISHED") && l.contains(&format!("{VIP}:80")))
        .count()
}

/// The sum of the ActiveConn column of `rvsadm -Ln`.
fn active(d: &Daemon<'_>) -> u64 {
    d.rvsadm(&["-Ln"])
        .lines()
        .filter(|l| l.trim_start().starts_with("->") && !l.contains("RemoteAddress"))
        .filter_map(|l| l.split_whitespace().nth(4)?.parse::<u64>().ok())
        .sum()
}

/// "adopted=N" of the new rvsd's take-over line.
fn adopted(log: &str) -> Option<u64> {
    let line = log
        .lines()
        .find(|l| l.contains("connections taken over from the previous rvsd"))?;
    let at = line.find("adopted=")? + "adopted=".len();
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn suite(mode: Mode, name: &str) {
    let spec = common::lab_spec(mode, 2);
    // Declared before the lab: unmounted after rvsd and the namespaces go.
    let fs = BpfFs::mount(&spec.prefix).unwrap_or_else(|e| panic!("{e}"));
    let pins = fs.path().join("rvsd");
    common::with_lab(name, spec, |lab| {
        let pin_arg = pins.display().to_string();
        let conf = common::rr_service(common::method_name(mode), &[1, 2, 3]);
        let mut d = Daemon::start_with(lab, &conf, &["--pin-dir", &pin_arg]);
        assert!(pins.exists(), "rvsd pinned its state in {}", pins.display());

        let args = wrk_args(WRK_SECONDS);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let wrk = lab.spawn("client", &args).expect("starting wrk");
        let t = Instant::now();
        let mut report = Vec::new();
        for (at, signal, what) in [
            (4, libc::SIGUSR2, "handover"),
            (10, libc::SIGUSR2, "second handover"),
            (16, libc::SIGKILL, "crash"),
        ] {
            std::thread::sleep(Duration::from_secs(at).saturating_sub(t.elapsed()));
            let before = established(&d);
            let gap = Instant::now();
            d.stop_and_start(signal);
            let gap = gap.elapsed();
            let log = d.log();
            let took = adopted(&log)
                .unwrap_or_else(|| panic!("{name}: no take-over line after the {what}:\n{log}"));
            let after = established(&d);
            report.push(format!(
                "{what}: {before} established before, {took} adopted, {after} after; \
                 rvsd down for {gap:.1?}"
            ));
            assert!(
                before >= 20,
                "{name}: wrk's 20 connections established before the {what}: {before}"
            );
            assert!(
                took >= 20 && after >= 20,
                "{name}: after the {what}: {took} adopted, {after} established"
            );
            if mode == Mode::FullNat {
                // Adopted with their local ends, which the servers know.
                let list = d.rvsadm(&["-Lnc"]);
                let local = format!(" local {}:", LOCAL_IPS[0]);
                let with_local = list
                    .lines()
                    .filter(|l| l.contains("ESTABLISHED") && l.contains(&local))
                    .count();
                assert!(with_local >= 20, "{name}: after the {what}:\n{list}");
            }
            // The listing's counts are published every 200 ms.
            let deadline = Instant::now() + Duration::from_secs(2);
            while active(&d) < 20 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            assert!(
                active(&d) >= 20,
                "{name}: active connections after the {what}:\n{}",
                d.rvsadm(&["-Ln"])
            );
        }
        let deadline = t + Duration::from_secs(u64::from(WRK_SECONDS) + 15);
        while wrk.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        let (status, out) = wrk.stop(Duration::from_secs(2)).expect("wrk");
        let r = parse_wrk(&out);
        eprintln!(
            "{name}: {}; wrk: {} requests",
            report.join("; "),
            r.requests
        );
        assert!(status.success(), "wrk: {status}\n{out}");
        assert!(r.requests > 1000, "wrk made few requests:\n{out}");
        assert!(
            r.errors.is_empty(),
            "{name}: wrk saw errors across the restarts:\n{out}"
        );
        d.stop();
        assert!(
            !pins.exists(),
            "an ordinary stop removes the pinned state ({})",
            pins.display()
        );
    });
    drop(fs);
}

#[test]
fn nat_connections_survive_two_handovers_and_a_crash() {
    suite(Mode::Nat, "restart-nat");
}

#[test]
fn dr_connections_survive_two_handovers_and_a_crash() {
    suite(Mode::Dr, "restart-dr");
}

#[test]
fn tun_connections_survive_two_handovers_and_a_crash() {
    suite(Mode::Tun, "restart-tun");
}

#[test]
fn fullnat_connections_survive_two_handovers_and_a_crash() {
    suite(Mode::FullNat, "restart-fullnat");
}
