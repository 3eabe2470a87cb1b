//! `rvs-lab demo --ha vrrp` and `rvs-lab demo --directors N`: the
//! high-availability and scale-out layouts of [`crate::ha`] and
//! [`crate::ecmp`], shown step by step with requests from the client.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::demo::{find_binary, request, DemoError, DemoOptions, Rvsd, Spread, NO_ANSWER};
use crate::ecmp::{announce_policy, director_bird_conf, router_bird_conf, withdraw_command};
use crate::ha::{backup_sync_daemon, keepalived_conf};
use crate::{
    dir_front_ip, rs_ip, Lab, LabError, Mode, VipRoute, FLOATING_FRONT_IP, LOCAL_IPS, VIP,
};

const BIRDC: &str = "/usr/sbin/birdc";

fn lab(opts: &DemoOptions, directors: usize, vip_route: VipRoute) -> Result<Lab, DemoError> {
    let lab = Lab::build(crate::demo::lab_spec(opts, directors, vip_route))?;
    println!(
        "lab {} is up: client -> router -> {} on shared front, server and sync segments -> {}",
        lab.prefix(),
        lab.directors().join(", "),
        (1..=opts.weights.len())
            .map(|i| format!("rs{i} {}", rs_ip(i)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(lab)
}

/// The demo's service in rvsd's file: VIP:80 with its scheduler and one
/// real server per weight, `extra` in the service table and `check` under
/// each server.
fn service(opts: &DemoOptions, extra: &str, check: &str) -> String {
    let method = match opts.mode {
        Mode::Dr => "dr",
        Mode::Nat => "nat",
        Mode::Tun => "tun",
        Mode::FullNat => "fullnat",
    };
    let mut s = format!(
        "[[service]]\nprotocol = \"tcp\"\naddress = \"{VIP}\"\nport = 80\nscheduler = \"{}\"\n{extra}",
        opts.scheduler.name()
    );
    for (i, w) in opts.weights.iter().enumerate() {
        s.push_str(&format!(
            "  [[service.real_server]]\n  address = \"{}\"\n  port = 80\n  weight = {w}\n  method = \"{method}\"\n{check}",
            rs_ip(i + 1)
        ));
    }
    s
}

fn requests(lab: &Lab, n: usize, spread: &mut Spread) {
    let mut here = Spread::new();
    for _ in 0..n {
        let who = request(lab).unwrap_or_else(|_| NO_ANSWER.to_owned());
        *here.entry(who.clone()).or_insert(0) += 1;
        *spread.entry(who).or_insert(0) += 1;
    }
    let line: Vec<String> = here.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    println!("  {n} x curl http://{VIP}/ -> {}", line.join(", "));
}

/// Two directors, keepalived VRRP on each; the master crashes.
pub(crate) fn run_vrrp(opts: &DemoOptions) -> Result<Spread, DemoError> {
    let rvsd_bin = find_binary("rvsd")?;
    let rvsadm_bin = find_binary("rvsadm")?;
    let lab = lab(opts, 2, VipRoute::Floating)?;
    // FullNAT: the local addresses keepalived moves with the VIP.
    let locals = match opts.mode {
        Mode::FullNat => {
            let list: Vec<String> = LOCAL_IPS.iter().map(|a| format!("\"{a}\"")).collect();
            format!("local_addresses = [{}]\n", list.join(", "))
        }
        _ => String::new(),
    };
    let config = format!(
        "interfaces = [\"front\", \"back\"]\n{}{}",
        backup_sync_daemon(),
        service(opts, &locals, "")
    );
    let mut rvsds = Vec::new();
    let mut kas = Vec::new();
    for (k, role) in lab.directors().iter().enumerate() {
        if opts.mode == Mode::FullNat {
            lab.guard_local_ports(role)?;
        }
        let rvsd = Rvsd::start_on(&lab, role, &config, &rvsd_bin, &rvsadm_bin)?;
        let hook = format!(
            "/usr/bin/env RVSD_SOCKET={} {}",
            rvsd.socket().display(),
            rvsadm_bin.display()
        );
        let conf = keepalived_conf(k + 1, opts.mode, &hook);
        if k == 0 {
            println!("keepalived.conf of {role} (VRRP only; the other has priority 100):\n{conf}");
        }
        kas.push(lab.start_keepalived(role, &conf)?);
        rvsds.push(rvsd);
    }
    let took = lab.wait_holds("dir", FLOATING_FRONT_IP, Duration::from_secs(10))?;
    println!("dir became VRRP master in {took:.1?} and holds {FLOATING_FRONT_IP}, the router's next hop for {VIP}");
    let mut spread = Spread::new();
    requests(&lab, opts.requests, &mut spread);
    println!("# dir: rvsadm -L --daemon");
    print!("{}", rvsds[0].rvsadm(&["-L", "--daemon"])?);
    let backup = rvsds.pop().expect("two directors");
    let master = rvsds.pop().expect("two directors");
    let backup_ka = kas.pop().expect("two keepaliveds");
    let master_ka = kas.pop().expect("two keepaliveds");
    println!("crashing dir: SIGKILL to its rvsd and keepalived");
    let crashed = Instant::now();
    master.kill(libc::SIGKILL)?;
    master_ka.crash()?;
    lab.wait_holds("dir2", FLOATING_FRONT_IP, Duration::from_secs(10))?;
    println!(
        "dir2 holds {FLOATING_FRONT_IP} {:.2?} after the crash",
        crashed.elapsed()
    );
    requests(&lab, opts.requests, &mut spread);
    println!("# dir2: rvsadm -L --daemon");
    print!("{}", backup.rvsadm(&["-L", "--daemon"])?);
    std::thread::sleep(Duration::from_millis(500)); // rvsd's next 200 ms report
    println!("# dir2: rvsadm -Ln");
    print!("{}", backup.rvsadm(&["-Ln"])?);
    backup_ka.stop()?;
    backup.stop()?;
    drop(lab);
    println!("lab torn down");
    Ok(spread)
}

/// Which director (role) front address `hop` is.
fn director_of(lab: &Lab, hop: Ipv4Addr) -> String {
    (1..=lab.spec().directors)
        .find(|k| dir_front_ip(*k) == hop)
        .map(crate::director_role)
        .unwrap_or_else(|| hop.to_string())
}

/// How the router spreads 3,000 client ports over the directors now.
fn show_spread(lab: &Lab) -> Result<(), DemoError> {
    let ports: Vec<u16> = (30_000..33_000).collect();
    let hops = lab.vip_next_hop_per_port(&ports)?;
    let mut per = Spread::new();
    for h in hops {
        *per.entry(director_of(lab, h)).or_insert(0) += 1;
    }
    let line: Vec<String> = per.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!(
        "  the router's FIB sends {} client ports to: {}",
        ports.len(),
        line.join(", ")
    );
    Ok(())
}

/// The ECMP demo does not run FullNAT: behind ECMP each director would
/// need local addresses of its own, and the lab gives them to the first
/// director only.
fn no_fullnat(opts: &DemoOptions) -> Result<(), DemoError> {
    if opts.mode == Mode::FullNat {
        return Err(DemoError::Invalid(
            "--directors runs dr or tun: the lab holds FullNAT's local addresses on its first director only"
                .into(),
        ));
    }
    Ok(())
}

/// N directors behind the router's ECMP, BIRD on each; one leaves and
/// comes back.
pub(crate) fn run_ecmp(opts: &DemoOptions, directors: usize) -> Result<Spread, DemoError> {
    no_fullnat(opts)?;
    if opts.mode == Mode::Nat {
        return Err(DemoError::Invalid(
            "--directors needs --mode dr or tun: behind ECMP a NAT reply may reach another director"
                .into(),
        ));
    }
    let rvsd_bin = find_binary("rvsd")?;
    let rvsadm_bin = find_binary("rvsadm")?;
    let lab = lab(opts, directors, VipRoute::Announced)?;
    println!(
        "router's bird.conf:\n{}\nand beside it, copying BIRD's next hops into a resilient nexthop group:\n{}",
        router_bird_conf(directors),
        crate::ecmp::resilient_watcher()
    );
    let _router = lab.start_ecmp_router(directors)?;
    let mut birds = Vec::new();
    let mut rvsds = Vec::new();
    let check = "    [[service.real_server.check]]\n    type = \"tcp\"\n    connect_timeout = 1\n    delay_loop = 1\n    retry = 0\n    warmup = 0\n";
    for (k, role) in lab.directors().iter().enumerate() {
        let conf = director_bird_conf(k + 1);
        let bird = lab.start_bird(role, &conf)?;
        let rvsd_conf = format!(
            "interfaces = [\"front\", \"back\"]\nscript_user = \"root\"\n{}{}{}",
            crate::ecmp::sync_daemon("master"),
            crate::ecmp::sync_daemon("backup"),
            service(
                opts,
                &announce_policy(Path::new(BIRDC), bird.socket()),
                check
            )
        );
        if k == 0 {
            println!("{role}'s bird.conf:\n{conf}\n{role}'s rvsd.toml:\n{rvsd_conf}");
        }
        let withdraw = withdraw_command(Path::new(BIRDC), bird.socket());
        rvsds.push(Some(Rvsd::start_supervised(
            &lab,
            role,
            &rvsd_conf,
            &rvsd_bin,
            &rvsadm_bin,
            &withdraw,
        )?));
        birds.push(bird);
    }
    let all: Vec<Ipv4Addr> = (1..=directors).map(dir_front_ip).collect();
    let took = lab.wait_vip_next_hops(&all, Duration::from_secs(30))?;
    println!("every director announces {VIP} ({took:.1?}); the router's route:");
    print!(
        "{}",
        lab.exec("router", &["ip", "route", "show", &format!("{VIP}/32")])?
    );
    show_spread(&lab)?;
    let mut spread = Spread::new();
    requests(&lab, opts.requests, &mut spread);

    let leaving = crate::director_role(2);
    println!("stopping {leaving}'s rvsd (quorum_down: birdc disable vip)");
    let stopped = Instant::now();
    rvsds[1].take().expect("second director").stop()?;
    let remaining: Vec<Ipv4Addr> = all
        .iter()
        .copied()
        .filter(|a| *a != dir_front_ip(2))
        .collect();
    lab.wait_vip_next_hops(&remaining, Duration::from_secs(10))?;
    println!("withdrawn {:.2?} after the stop", stopped.elapsed());
    show_spread(&lab)?;
    requests(&lab, opts.requests, &mut spread);

    println!(
        "starting {leaving}'s rvsd again (announces after {} s, once the others' sync refresh reached it)",
        crate::ecmp::ANNOUNCE_DELAY_SECS
    );
    let started = Instant::now();
    rvsds[1] = Some(Rvsd::start_supervised(
        &lab,
        &leaving,
        &std::fs::read_to_string(lab.dir().join(format!("rvsd-{leaving}.toml")))
            .map_err(LabError::io("reading the director's rvsd.toml"))?,
        &rvsd_bin,
        &rvsadm_bin,
        &withdraw_command(Path::new(BIRDC), birds[1].socket()),
    )?);
    lab.wait_vip_next_hops(&all, Duration::from_secs(20))?;
    println!("announced again {:.2?} after the start", started.elapsed());
    show_spread(&lab)?;
    requests(&lab, opts.requests, &mut spread);
    for r in rvsds.into_iter().flatten() {
        r.stop()?;
    }
    drop(lab);
    println!("lab torn down");
    Ok(spread)
}
