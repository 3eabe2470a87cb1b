//! The harness against the kernel: namespaces come and go exactly as
//! promised, on drop, on removal with a process inside, and on SIGTERM.
//! Needs root.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rvs_netns::{command, exec_output, ip, list, run_in, wait_until, Bed, End, Netns, Veth};

fn exists(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}

fn alive(pid: u32) -> bool {
    // A killed child stays a zombie until reaped; count that as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

#[test]
fn a_bed_removes_exactly_its_namespaces_on_drop_and_on_panic() {
    let mut bed = Bed::new();
    let prefix = bed.prefix().to_owned();
    let a = bed.add("a");
    let b = bed.add("b");
    assert_eq!(a, format!("{prefix}-a"));
    let mut listed = list(&prefix).unwrap();
    listed.sort();
    assert_eq!(listed, vec![a.clone(), b.clone()]);
    assert!(ip(&a, &["link", "show", "lo"]).unwrap().contains("UP"));
    drop(bed);
    assert!(!exists(&a) && !exists(&b));
    assert!(list(&prefix).unwrap().is_empty());

    let kept = std::thread::spawn(|| {
        let mut bed = Bed::new();
        let name = bed.add("p");
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _bed = bed;
            panic!("test failure");
        }));
        name
    })
    .join()
    .unwrap();
    assert!(!exists(&kept), "{kept} survived a panic");
}

#[test]
fn an_existing_name_is_refused_and_left_alone() {
    let mut bed = Bed::new();
    let a = bed.add("a");
    let err = Netns::add(&a).expect_err("added twice");
    assert!(err.to_string().contains("netns add"), "{err}");
    assert!(
        exists(&a),
        "the failed add removed the namespace it did not create"
    );
}

#[test]
fn removal_kills_what_runs_inside() {
    let ns = Netns::add(&format!("{}-k", rvs_netns::unique_prefix())).unwrap();
    let name = ns.name().to_owned();
    let mut sleeper = command(&name, &["sleep", "60"]).spawn().unwrap();
    let pid = sleeper.id();
    // `ip netns exec` enters the namespace before it runs sleep: wait for it.
    let deadline = Instant::now() + Duration::from_secs(5);
    let inside = |pid: u32| {
        rvs_netns::run(
            Command::new("ip").args(["netns", "pids", &name]),
            Duration::from_secs(5),
        )
        .unwrap()
        .split_whitespace()
        .any(|p| p == pid.to_string())
    };
    while !inside(pid) {
        assert!(
            Instant::now() < deadline,
            "sleep {pid} never entered {name}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    ns.remove().unwrap();
    assert!(!exists(&name));
    let status = wait_until(&mut sleeper, Instant::now() + Duration::from_secs(5)).unwrap();
    assert!(status.is_some(), "sleep {pid} still runs");
    assert!(!alive(pid));
}

#[test]
fn veth_ends_are_configured_and_threads_see_their_namespace() {
    let mut bed = Bed::new();
    let (a, b) = (bed.add("a"), bed.add("b"));
    Veth::new(
        End::new(&a, "va")
            .mac("02:00:0a:63:00:01")
            .mtu(1400)
            .addr("10.99.0.1/24"),
        End::new(&b, "vb")
            .mac("02:00:0a:63:00:02")
            .addr("10.99.0.2/24"),
    )
    .queues(2)
    .ethtool(&["tx", "off"])
    .up()
    .create()
    .unwrap();
    let va = ip(&a, &["link", "show", "va"]).unwrap();
    assert!(
        va.contains("mtu 1400") && va.contains("02:00:0a:63:00:01"),
        "{va}"
    );
    let vb = ip(&b, &["-d", "link", "show", "vb"]).unwrap();
    assert!(
        vb.contains("mtu 1500") && vb.contains("02:00:0a:63:00:02"),
        "{vb}"
    );
    assert!(vb.contains("numtxqueues 2 numrxqueues 2"), "{vb}");
    let feats = exec_output(&b, &["ethtool", "-k", "vb"]).unwrap();
    assert!(String::from_utf8_lossy(&feats.stdout).contains("tx-checksumming: off"));
    let ping = exec_output(&a, &["ping", "-c", "1", "-W", "2", "10.99.0.2"]).unwrap();
    assert!(ping.status.success(), "{ping:?}");

    // A socket made on a thread in `b` stays there: it can bind b's address.
    let s = run_in(&b, || UdpSocket::bind("10.99.0.2:0"));
    assert!(s.is_ok(), "{s:?}");
    assert!(
        UdpSocket::bind("10.99.0.2:0").is_err(),
        "the test thread moved"
    );

    // Both ends in one namespace.
    let c = bed.add("c");
    Veth::new(End::new(&c, "x0"), End::new(&c, "x1"))
        .up()
        .create()
        .unwrap();
    assert!(ip(&c, &["link", "show", "x1"]).unwrap().contains("x1@x0"));
}

const CHILD: &str = "RVS_NETNS_SIGNAL_CHILD";

/// In the child: a bed with a process inside, then wait for the signal.
fn hold_until_signalled() {
    let mut bed = Bed::new();
    let a = bed.add("a");
    let mut sleeper = command(&a, &["sleep", "60"]).spawn().unwrap();
    println!("ready {} {}", bed.prefix(), sleeper.id());
    std::thread::sleep(Duration::from_secs(30));
    drop(bed);
    let _ = sleeper.wait();
    panic!("no signal within 30 s");
}

#[test]
fn sigterm_removes_the_namespaces_and_exits_130() {
    if std::env::var_os(CHILD).is_some() {
        hold_until_signalled();
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sigterm_removes_the_namespaces_and_exits_130",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // libtest prints `test NAME ... ` without a newline before it.
    let ready = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| Some(l.split_once("ready ")?.1.to_owned()))
        .expect("the child never got ready");
    let mut words = ready.split_whitespace();
    let prefix = words.next().unwrap().to_owned();
    let sleeper: u32 = words.next().unwrap().parse().unwrap();
    assert_eq!(list(&prefix).unwrap().len(), 1);

    rvs_netns::run(
        Command::new("kill").args(["-TERM", &child.id().to_string()]),
        Duration::from_secs(5),
    )
    .unwrap();
    let status = wait_until(&mut child, Instant::now() + Duration::from_secs(20))
        .unwrap()
        .expect("the child did not exit on SIGTERM");
    assert_eq!(status.code(), Some(130));
    assert!(list(&prefix).unwrap().is_empty(), "namespaces left behind");
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(sleeper) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(sleeper), "the process inside survived");
}
