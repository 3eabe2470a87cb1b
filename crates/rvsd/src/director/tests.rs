//! The director against a real XDP program: a configuration the maps
//! cannot hold is refused whole (listing and maps as they were), and what
//! the maps hold follows the configuration, down to empty after `-C`.
//!
//! Each test owns a namespace pair from rvs-netns (removed on drop, on a
//! failed assertion and on Ctrl-C) joined by a veth; the director runs on a
//! thread inside the first. Needs root.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{mpsc, Arc, Mutex};

use rvs_api::{Command, ServiceKey as ApiKey, ServiceSpec};
use rvs_datapath::{XdpDatapath, XdpModePolicy};
use rvs_engine::{Config, NeighborTable, Protocol, Snapshot};
use rvs_netns::{End, Veth};

use super::Director;
use crate::health::Health;
use crate::worker::{Plane, Report, Shared};

/// The director's interface in the test namespace.
const IFACE: &str = "rvdir0";

/// A namespace pair joined by a veth, `IFACE` (10.61.0.1/24) in the first.
struct Rig {
    nets: rvs_netns::Bed,
    dir: String,
}

impl Rig {
    fn new() -> Rig {
        let mut nets = rvs_netns::Bed::new();
        let (dir, peer) = (nets.add("dir"), nets.add("peer"));
        Veth::new(
            End::new(&dir, IFACE).addr("10.61.0.1/24"),
            End::new(&peer, "rvdir1").addr("10.61.0.2/24"),
        )
        .up()
        .create()
        .unwrap_or_else(|e| panic!("{e}"));
        Rig { nets, dir }
    }

    /// Runs `f` with a director on `IFACE` (XDP attached, maps empty), on a
    /// thread inside the director namespace; `file` is its configuration
    /// file, for reloads.
    fn run<T: Send + 'static>(
        &self,
        file: Option<std::path::PathBuf>,
        f: impl FnOnce(&mut Director, &Mutex<XdpDatapath>) -> T + Send + 'static,
    ) -> T {
        self.inside(move || {
            let (mut d, datapath) = director(file, true);
            let datapath = datapath.expect("a datapath");
            let r = f(&mut d, &datapath);
            // The program detaches in this namespace.
            drop(d);
            r
        })
    }

    /// Runs `f` on a thread inside the director namespace.
    fn inside<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let _keep = &self.nets;
        rvs_netns::run_in(&self.dir, f)
    }
}

/// A director on `IFACE` (call it inside the rig's namespace), with the XDP
/// program attached (maps empty) if `xdp`, or without a datapath.
fn director(
    file: Option<std::path::PathBuf>,
    xdp: bool,
) -> (Director, Option<Arc<Mutex<XdpDatapath>>>) {
    let config = base_config();
    let datapath = xdp.then(|| {
        let ifindex = config.interfaces[0].index.0;
        let dp = XdpDatapath::load(&[ifindex], XdpModePolicy::Auto, config.max_connections)
            .expect("loading the XDP program");
        Arc::new(Mutex::new(dp))
    });
    let plane = datapath.as_ref().map(|dp| Plane {
        datapath: Arc::clone(dp),
        report: Arc::new(Mutex::new(Report::default())),
        commands: mpsc::channel().0,
    });
    let shared = Arc::new(Shared::new(
        Snapshot::new(config.clone()).expect("the base configuration"),
        NeighborTable::new(BTreeMap::new(), 1),
    ));
    let d = Director::new(config, Health::new(None), file, plane, shared).expect("the director");
    (d, datapath)
}

/// `IFACE` with its routes, no services.
fn base_config() -> Config {
    let iface = crate::kernel::interface(IFACE).expect("the test interface");
    let routes = crate::kernel::routes(std::slice::from_ref(&iface)).expect("routes");
    Config {
        interfaces: vec![iface],
        routes,
        max_connections: 1024,
        ..Config::default()
    }
}

fn vip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 100, 0, 0)) + i))
}

fn add_service(addr: IpAddr, port: u16) -> Command {
    Command::AddService(ServiceSpec {
        key: ApiKey::addr(Protocol::Tcp, addr, port),
        scheduler: "rr".into(),
        persistence_timeout: None,
        netmask: None,
        flags: vec![],
        one_packet: false,
        local_addresses: vec![],
        toa: false,
    })
}

/// What the maps hold: services and VIPs.
type Maps = (BTreeSet<(IpAddr, u8, u16)>, BTreeSet<IpAddr>);

fn maps(dp: &Mutex<XdpDatapath>) -> Maps {
    let dp = dp.lock().expect("datapath lock");
    (
        dp.services().expect("services map").into_iter().collect(),
        dp.vips().expect("VIP map").into_iter().collect(),
    )
}

fn listed(d: &Director) -> Vec<ApiKey> {
    d.listing().services.iter().map(|s| s.spec.key).collect()
}

#[test]
fn an_oversize_restore_changes_nothing_and_clear_empties_the_maps() {
    let rig = Rig::new();
    rig.run(None, |d, dp| {
        let three: Vec<Command> = (0..3).map(|i| add_service(vip(i), 80)).collect();
        d.command(Command::Restore(three)).expect("three services");
        let before = (listed(d), maps(dp));
        assert_eq!(before.1 .1.len(), 3, "{before:?}");
        assert_eq!(before.1 .0.len(), 3, "{before:?}");

        // One VIP more than the map holds, after a -C: refused whole.
        let too_many = rvs_engine::limits::MAX_VIPS + 1;
        let mut restore = vec![Command::Clear];
        restore.extend((0..too_many).map(|i| add_service(vip(1000 + i), 80)));
        let e = d
            .command(Command::Restore(restore))
            .expect_err("more VIPs than the map holds")
            .to_string();
        assert!(e.contains("MAX_VIPS"), "{e}");
        assert_eq!(listed(d), before.0, "the listing changed: {e}");
        assert_eq!(maps(dp), before.1, "the XDP maps changed: {e}");

        // -C leaves no key behind.
        d.command(Command::Clear).expect("-C");
        assert!(listed(d).is_empty());
        let (services, vips) = maps(dp);
        assert!(services.is_empty(), "stale services: {services:?}");
        assert!(vips.is_empty(), "stale VIPs: {vips:?}");
    });
}

/// A configuration file on `IFACE`: `services` plain services, then
/// `rules` firewall-mark rules of 4,096 addresses each, each used by a
/// service.
fn file(services: u32, rules: u32) -> String {
    let mut s = format!("interfaces = [\"{IFACE}\"]\n");
    for i in 0..services {
        s += &format!(
            "[[service]]\nprotocol = \"tcp\"\naddress = \"{}\"\nport = 80\nscheduler = \"rr\"\n",
            vip(i)
        );
    }
    for mark in 1..=rules {
        s += &format!(
            "[[fwmark]]\nmark = {mark}\nprotocol = \"tcp\"\naddress = \"10.{}.0.0/20\"\nports = [80]\n\
             [[service]]\nfwmark = {mark}\nscheduler = \"rr\"\n",
            mark + 110
        );
    }
    s
}

#[test]
fn a_reload_the_maps_cannot_hold_changes_nothing() {
    let rig = Rig::new();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("rvsd.toml");
    std::fs::write(&path, file(2, 1)).expect("writing the file");
    rig.run(Some(path.clone()), move |d, dp| {
        d.reload().expect("the file as it starts");
        let before = (listed(d), maps(dp));
        assert_eq!(before.0.len(), 3, "{:?}", before.0);
        assert_eq!(before.1 .1.len(), 2 + 4096);

        // 17 rules of 4,096 addresses: more VIPs than the map holds.
        std::fs::write(&path, file(2, 17)).expect("writing the file");
        let e = d
            .reload()
            .expect_err("more VIPs than the map holds")
            .to_string();
        assert!(e.contains("MAX_VIPS"), "{e}");
        assert!(e.contains("nothing was applied"), "{e}");
        assert_eq!(listed(d), before.0, "the listing changed: {e}");
        assert_eq!(maps(dp), before.1, "the XDP maps changed: {e}");
    });
}

#[test]
fn a_map_update_the_kernel_refuses_is_undone_and_nothing_is_applied() {
    let rig = Rig::new();
    rig.run(None, |d, dp| {
        d.command(Command::Restore(vec![add_service(vip(0), 80)]))
            .expect("one service");
        // Fill the VIP map but one entry behind the director's back: the
        // configuration fits the limits, the kernel refuses the second VIP.
        let foreign = |i: u32| IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i));
        {
            let mut dp = dp.lock().expect("datapath lock");
            for i in 0..rvs_engine::limits::MAX_VIPS - 2 {
                dp.add_vip(foreign(i)).expect("room in the VIP map");
            }
        }
        let before = (listed(d), maps(dp));
        let engine_before = d.shared.snapshot.load().config().services.len();
        let e = d
            .command(Command::Restore(
                (1..4).map(|i| add_service(vip(i), 80)).collect(),
            ))
            .expect_err("the kernel's map is full")
            .to_string();
        assert!(e.contains("nothing was applied"), "{e}");
        assert_eq!(listed(d), before.0, "the listing changed: {e}");
        assert_eq!(maps(dp), before.1, "the XDP maps changed: {e}");
        assert_eq!(
            d.shared.snapshot.load().config().services.len(),
            engine_before,
            "the engine got the refused configuration"
        );
        // The next change that fits goes through.
        d.command(add_service(vip(1), 80))
            .expect("one more VIP fits");
        assert_eq!(listed(d).len(), 2);
    });
}

/// A writer the test's log goes to.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_restore_is_logged_as_one_short_line() {
    use rvs_api::ControlHandler;

    let rig = Rig::new();
    let log = rig.inside(|| {
        let (d, _) = director(None, false);
        let h = super::Handler(Mutex::new(d));
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let cmds = (0..5000).map(|i| add_service(vip(i), 80)).collect();
            h.command(Command::Restore(cmds)).expect("the restore");
        });
        let text = captured.0.lock().expect("log buffer").clone();
        String::from_utf8(text).expect("UTF-8 log")
    });
    let line = log
        .lines()
        .find(|l| l.contains("restore"))
        .unwrap_or_else(|| panic!("no line about the restore in:\n{log}"));
    assert!(line.contains("commands=5000"), "{line}");
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 300, "a log line of {longest} bytes");
}

#[test]
fn a_restore_built_from_a_configuration_no_longer_in_force_is_built_again() {
    let rig = Rig::new();
    rig.inside(|| {
        let (mut d, _) = director(None, false);
        let build = |base: &Config| {
            let (next, _) = super::edit::restore(base, &[add_service(vip(1), 80)])?;
            let checked = super::check(&next, &Default::default())?;
            Ok((next, checked))
        };
        let (base, generation) = (Arc::clone(&d.config), d.generation);
        let built = build(&base);
        // Another command in the meantime.
        d.command(add_service(vip(2), 80)).expect("one service");
        assert!(
            d.apply_built(generation, built).is_none(),
            "applied over a change"
        );
        assert_eq!(listed(&d), [ApiKey::addr(Protocol::Tcp, vip(2), 80)]);
        // Built from what is in force: applied.
        let (base, generation) = (Arc::clone(&d.config), d.generation);
        let built = build(&base);
        d.apply_built(generation, built)
            .expect("still in force")
            .expect("applied");
        assert_eq!(listed(&d).len(), 2);
    });
}

/// What large restores and checks cost (a test-bench: it prints figures,
/// asserts only what was built), for `n` services with one real server
/// each on 1,000 VIPs: 10,000, or the sizes `RVS_BENCH_SERVICES` lists.
/// Figures worth quoting: `RVS_BENCH_SERVICES=10000,100000 cargo test -p
/// rvsd --release --bin rvsd -- --nocapture restore_and_check_cost`.
#[test]
fn restore_and_check_cost() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use rvs_api::{ControlHandler, DestSpec, ForwardMethod};

    use super::Handler;

    let sizes: Vec<u32> = match std::env::var("RVS_BENCH_SERVICES") {
        Ok(list) => list
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .expect("RVS_BENCH_SERVICES: numbers, comma-separated")
            })
            .collect(),
        Err(_) => vec![10_000],
    };
    let rig = Rig::new();
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let dir = tmp.path().to_path_buf();
    let lines = rig.inside(move || {
        let mut lines = Vec::new();
        for n in sizes {
            let key = |i: u32| ApiKey::addr(Protocol::Tcp, vip(i % 1000), 1000 + (i / 1000) as u16);
            let mut cmds = vec![Command::Clear];
            for i in 0..n {
                cmds.push(Command::AddService(ServiceSpec {
                    key: key(i),
                    scheduler: "wlc".into(),
                    persistence_timeout: None,
                    netmask: None,
                    flags: vec![],
                    one_packet: false,
                    local_addresses: vec![],
                    toa: false,
                }));
                cmds.push(Command::AddDest {
                    service: key(i),
                    dest: DestSpec {
                        addr: IpAddr::from([10, 61, 0, 10 + (i % 200) as u8]),
                        port: 0,
                        weight: 1,
                        method: ForwardMethod::Masq,
                        tunnel: rvs_api::Tunnel::Ipip,
                        upper_threshold: 0,
                        lower_threshold: 0,
                    },
                });
            }
            for xdp in [false, true] {
                let (d, _dp) = director(None, xdp);
                let h = Arc::new(Handler(Mutex::new(d)));
                // How long the state lock is held: another caller's longest wait.
                let stop = Arc::new(AtomicBool::new(false));
                let waiter = {
                    let (h, stop) = (Arc::clone(&h), Arc::clone(&stop));
                    std::thread::spawn(move || {
                        let mut longest = Duration::ZERO;
                        while !stop.load(Ordering::Relaxed) {
                            let t = Instant::now();
                            drop(h.0.lock());
                            longest = longest.max(t.elapsed());
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        longest
                    })
                };
                let t = Instant::now();
                h.command(Command::Restore(cmds.clone())).expect("the restore");
                let took = t.elapsed();
                stop.store(true, Ordering::Relaxed);
                let waited = waiter.join().expect("the waiting thread");
                assert_eq!(h.listing().services.len(), n as usize);
                lines.push(format!(
                    "restore {n:>7} services ({}): {took:>10.2?}, longest lock wait {waited:>10.2?}",
                    if xdp { "XDP maps" } else { "no datapath" }
                ));
            }
            let path = dir.join(format!("{n}.toml"));
            let mut text = format!("interfaces = [\"{IFACE}\"]\n");
            for i in 0..n {
                text += &format!(
                    "[[service]]\nprotocol = \"tcp\"\naddress = \"{}\"\nport = {}\nscheduler = \"wlc\"\n  [[service.real_server]]\n  address = \"10.61.0.{}\"\n  method = \"nat\"\n",
                    vip(i % 1000),
                    1000 + i / 1000,
                    10 + i % 200
                );
            }
            std::fs::write(&path, text).expect("writing the file");
            let t = Instant::now();
            let code = crate::config::check(&path);
            let took = t.elapsed();
            assert_eq!(code, 0, "--check-config of {n} services");
            lines.push(format!("check-config {n:>7} services: {took:>10.2?}"));
        }
        lines
    });
    for l in lines {
        println!("{l}");
    }
}
