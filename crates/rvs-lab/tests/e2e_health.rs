//! End to end for health checks, configuration reload and metrics: the real
//! rvsd in a DR lab's director namespace, run from full configuration files
//! written here (checks, quorum, sorry server, metrics_listen), the lab's
//! nginx on a real server stopped and started again under it, reloads by
//! SIGHUP and by the API command while wrk holds keep-alive connections, a
//! broken file refused, and the Prometheus scrape read with a real parser;
//! and every keepalived checker against real servers: a second nginx with
//! TLS (certificate made with the `openssl` CLI) and basic auth, an SMTP and
//! a DNS responder (python3) in the real servers' namespaces.
//! Needs root; builds rvsd/rvsadm/rvs-decap itself if needed.
//!
//! Every test builds its own lab (own prefix) and runs its own rvsd; the
//! lab's teardown (also on a failed assertion, through `Drop`) stops rvsd,
//! wrk, the restarted nginx, the responders and removes the namespaces. Loads: a few dozen
//! sequential requests, one `wrk -t2 -c20` of 8 s and one of 5 s. Checks
//! poll every 1 s (delay_loop 1, retry 1, delay_before_retry 1,
//! connect_timeout 1), so a stopped server is out within 3 s.

// Only some of the shared helpers are used here.
#[allow(dead_code)]
mod common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rvs_lab::{rs_ip, unique_prefix, DirectorKind, Lab, LabSpec, Mode};
use rvs_lab::{DIR_FRONT_IP, VIP};

use common::{counts, estab_resets, health_of, parse_wrk, spread, wrk_args, Daemon, Nginx};

/// The checks' timing: down after `retry + 1` failures `delay_before_retry`
/// apart, attempts `delay_loop` apart, each bounded by `connect_timeout`.
const DELAY_LOOP: u64 = 1;
const RETRY: u64 = 1;
const CONNECT_TIMEOUT: u64 = 1;

/// keepalived's bound on noticing a dead server: the attempt in flight and
/// `retry` more, plus the last one timing out.
fn detection_bound() -> Duration {
    Duration::from_secs(DELAY_LOOP * (RETRY + 1) + CONNECT_TIMEOUT)
}

/// What the measurement of a removal adds to the bound: the listing is
/// polled every 100 ms, each poll an rvsadm run in the namespace.
const POLL_SLACK: Duration = Duration::from_millis(500);

/// One HTTP check of `/` with the timing above.
fn http_check() -> String {
    format!(
        "    [[service.real_server.check]]\n    type = \"http\"\n    path = \"/\"\n    \
         connect_timeout = {CONNECT_TIMEOUT}\n    delay_loop = {DELAY_LOOP}\n    retry = {RETRY}\n    \
         delay_before_retry = 1\n"
    )
}

/// A `[[service.real_server]]` table for rs`n` (DR), with an HTTP check
/// when `checked`.
fn real_server(n: usize, weight: u32, checked: bool) -> String {
    let mut s = format!(
        "  [[service.real_server]]\n  address = \"{}\"\n  port = 80\n  weight = {weight}\n  method = \"dr\"\n",
        rs_ip(n)
    );
    if checked {
        s.push_str(&http_check());
    }
    s
}

/// The head of a TCP service on the VIP: `keys` are extra service keys.
fn service(port: u16, scheduler: &str, keys: &str) -> String {
    format!(
        "[[service]]\nprotocol = \"tcp\"\naddress = \"{VIP}\"\nport = {port}\nscheduler = \"{scheduler}\"\n{keys}"
    )
}

// What only these tests ask of rvsd; the rest is `common::Daemon`.
impl Daemon<'_> {
    /// `POST /v1/commands` with the body `"reload"`: HTTP status and body.
    fn reload_api(&self) -> (u16, String) {
        let sock = self.socket.display().to_string();
        let out = self
            .lab
            .exec_timeout(
                "dir",
                &[
                    "curl",
                    "-s",
                    "-m",
                    "10",
                    "--unix-socket",
                    &sock,
                    "-X",
                    "POST",
                    "-H",
                    "content-type: application/json",
                    "--data",
                    "\"reload\"",
                    "-w",
                    "\n%{http_code}",
                    "http://rvsd/v1/commands",
                ],
                Duration::from_secs(15),
            )
            .expect("POST /v1/commands \"reload\"");
        let (body, code) = out.rsplit_once('\n').unwrap_or(("", &out));
        let code = code
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no HTTP status in curl's output: {out:?}"));
        (code, body.to_owned())
    }

    /// `kill -HUP` rvsd (the reload runs asynchronously).
    fn sighup(&self) {
        let pid = self.process().pid().to_string();
        self.lab
            .exec("dir", &["kill", "-HUP", &pid])
            .expect("kill -HUP rvsd");
    }
}

/// Real servers of the service `header` (e.g. `TCP  10.0.100.1:80`) in an
/// `rvsadm -Ln` listing: address → weight.
fn pool(list: &str, header: &str) -> BTreeMap<Ipv4Addr, u32> {
    let mut out = BTreeMap::new();
    let mut inside = false;
    for l in list.lines() {
        if let Some(rest) = l.trim_start().strip_prefix("->") {
            if !inside {
                continue;
            }
            let cols: Vec<&str> = rest.split_whitespace().collect();
            // RemoteAddress:Port Forward Weight ActiveConn InActConn
            let Some((addr, _port)) = cols.first().and_then(|a| a.rsplit_once(':')) else {
                continue;
            };
            let (Ok(addr), Some(Ok(w))) = (addr.parse(), cols.get(2).map(|w| w.parse())) else {
                continue;
            };
            out.insert(addr, w);
        } else if l.starts_with("TCP") || l.starts_with("UDP") || l.starts_with("FWM") {
            let norm = l.split_whitespace().collect::<Vec<_>>().join(" ");
            inside = norm.starts_with(&header.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    out
}

fn vip80() -> String {
    format!("TCP {VIP}:80")
}

/// `rs → weight` from `(n, weight)` pairs.
fn weights(pairs: &[(usize, u32)]) -> BTreeMap<Ipv4Addr, u32> {
    pairs.iter().map(|&(n, w)| (rs_ip(n), w)).collect()
}

/// Polls `rvsadm -Ln` until the VIP:80 pool is `want` or `within` passes;
/// returns how long it took, or panics with the last listing.
fn wait_pool(d: &Daemon<'_>, want: &BTreeMap<Ipv4Addr, u32>, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let list = d.rvsadm(&["-Ln"]);
        if pool(&list, &vip80()) == *want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "VIP:80 pool still not {want:?} after {within:?}:\n{list}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs one test: a fresh DR lab of `servers`, then `body`; on failure the
/// last lines of rvsd's output (if `body` started it) are printed, and the
/// lab is torn down either way.
fn with_lab(name: &str, servers: usize, body: impl FnOnce(&Lab)) {
    common::with_lab(
        name,
        LabSpec {
            prefix: unique_prefix(),
            mode: Mode::Dr,
            servers,
            director: DirectorKind::None,
            decap_bin: None,
            queues: 1,
            directors: 1,
            vip_route: rvs_lab::VipRoute::FirstDirector,
        },
        body,
    );
}

/// A stopped nginx leaves the pool within keepalived's bound, takes no new
/// connection while down, shows as down in the listing, and comes back when
/// it serves again.
#[test]
fn failed_server_leaves_the_pool_and_comes_back() {
    with_lab("health-remove", 3, |lab| {
        let mut cfg = service(80, "rr", "");
        for n in 1..=3 {
            cfg.push_str(&real_server(n, 1, true));
        }
        let d = Daemon::start(lab, &cfg);
        let all = weights(&[(1, 1), (2, 1), (3, 1)]);
        wait_pool(&d, &all, Duration::from_secs(1));
        assert_eq!(spread(lab, 6), counts(&[2, 2, 2]), "all three serve");

        let rs2 = Nginx::of(lab, 2);
        rs2.stop(lab);
        let took = wait_pool(&d, &weights(&[(1, 1), (3, 1)]), Duration::from_secs(10));
        eprintln!(
            "  rs2 left the pool {took:.1?} after its nginx stopped (bound {:?})",
            detection_bound()
        );
        assert!(
            took <= detection_bound() + POLL_SLACK,
            "rs2 left the pool after {took:?}, bound delay_loop × (retry + 1) + connect_timeout = {:?}",
            detection_bound()
        );
        // Zero errors (spread panics on a failed request), none to rs2.
        assert_eq!(
            spread(lab, 30),
            counts(&[15, 0, 15]),
            "30 new requests with rs2 down"
        );
        let list = d.rvsadm(&["-Ln"]);
        assert!(
            !list.contains(&format!("{}:80", rs_ip(2))),
            "keepalived semantics: a failed server is removed from the listing:\n{list}"
        );
        let l = d.listing();
        match health_of(&l, 2) {
            Some((false, reason)) => assert!(!reason.is_empty(), "rs2 down without a reason"),
            other => panic!("listing health for rs2 should be down, is {other:?}: {l}"),
        }

        rs2.start(lab);
        let back = wait_pool(&d, &all, Duration::from_secs(10));
        eprintln!("  rs2 back in the pool {back:.1?} after nginx serves again");
        assert_eq!(
            spread(lab, 30),
            counts(&[10, 10, 10]),
            "rs2 receives requests again"
        );
        assert_eq!(
            health_of(&d.listing(), 2).map(|h| h.0),
            Some(true),
            "listing health for rs2 is up again"
        );
        d.stop();
    });
}

/// With inhibit_on_failure a failed server stays listed at weight 0, gets
/// nothing, and returns to its configured weight when it recovers.
#[test]
fn inhibit_on_failure_quiesces_instead_of_removing() {
    with_lab("health-inhibit", 3, |lab| {
        let mut cfg = service(80, "wrr", "inhibit_on_failure = true\n");
        for (n, w) in [(1, 1), (2, 3), (3, 1)] {
            cfg.push_str(&real_server(n, w, true));
        }
        let d = Daemon::start(lab, &cfg);
        let configured = weights(&[(1, 1), (2, 3), (3, 1)]);
        wait_pool(&d, &configured, Duration::from_secs(1));

        let rs2 = Nginx::of(lab, 2);
        rs2.stop(lab);
        let inhibited = weights(&[(1, 1), (2, 0), (3, 1)]);
        let took = wait_pool(&d, &inhibited, Duration::from_secs(10));
        eprintln!("  rs2 at weight 0 {took:.1?} after its nginx stopped");
        assert!(
            took <= detection_bound() + POLL_SLACK,
            "rs2 inhibited after {took:?}, bound {:?}",
            detection_bound()
        );
        assert_eq!(
            spread(lab, 12),
            counts(&[6, 0, 6]),
            "an inhibited server gets no new connection"
        );
        assert_eq!(
            health_of(&d.listing(), 2).map(|h| h.0),
            Some(false),
            "listing health for rs2"
        );

        rs2.start(lab);
        wait_pool(&d, &configured, Duration::from_secs(10));
        // wrr 1,3,1: any 10 consecutive picks are two full rounds.
        assert_eq!(spread(lab, 10), counts(&[2, 6, 2]), "rs2 back at weight 3");
        d.stop();
    });
}

/// Losing quorum replaces the pool with the sorry server and runs
/// quorum_down; regaining it restores the pool and runs quorum_up.
#[test]
fn quorum_loss_switches_to_the_sorry_server_and_back() {
    with_lab("health-quorum", 4, |lab| {
        // Quorum commands run as the script user (nobody), not as root:
        // they write where nobody may.
        let shared = lab.dir().join("scripts");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let up_file = shared.join("quorum-up");
        let down_file = shared.join("quorum-down");
        let keys = format!(
            "quorum = 2\nquorum_up = \"touch {}\"\nquorum_down = \"touch {}\"\n\
             [service.sorry_server]\naddress = \"{}\"\nport = 80\nmethod = \"dr\"\n",
            up_file.display(),
            down_file.display(),
            rs_ip(4)
        );
        let mut cfg = service(80, "rr", &keys);
        for n in 1..=3 {
            cfg.push_str(&real_server(n, 1, true));
        }
        let d = Daemon::start(lab, &cfg);
        let all = weights(&[(1, 1), (2, 1), (3, 1)]);
        wait_pool(&d, &all, Duration::from_secs(1));
        assert_eq!(spread(lab, 6), counts(&[2, 2, 2]), "rs1..rs3 serve");
        assert!(
            !up_file.exists() && !down_file.exists(),
            "starting with quorum runs no quorum command"
        );

        let (rs1, rs2) = (Nginx::of(lab, 1), Nginx::of(lab, 2));
        rs1.stop(lab);
        wait_pool(&d, &weights(&[(2, 1), (3, 1)]), Duration::from_secs(10));
        assert!(!down_file.exists(), "live weight 2 still is quorum 2");
        rs2.stop(lab);
        let took = wait_pool(&d, &weights(&[(4, 1)]), Duration::from_secs(10));
        eprintln!("  quorum lost: sorry server alone {took:.1?} after the second stop");
        assert_eq!(
            spread(lab, 12),
            counts(&[0, 0, 0, 12]),
            "quorum lost: the sorry server answers everything"
        );
        wait_file(&down_file, Duration::from_secs(5), "quorum_down");
        let l = d.listing();
        for n in [1, 2] {
            assert_eq!(
                health_of(&l, n).map(|h| h.0),
                Some(false),
                "rs{n} down: {l}"
            );
        }

        rs1.start(lab);
        rs2.start(lab);
        wait_pool(&d, &all, Duration::from_secs(10));
        assert_eq!(
            spread(lab, 12),
            counts(&[4, 4, 4, 0]),
            "quorum back: the pool serves, the sorry server no longer"
        );
        wait_file(&up_file, Duration::from_secs(5), "quorum_up");
        d.stop();
    });
}

fn wait_file(p: &Path, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    while !p.exists() {
        assert!(
            Instant::now() < deadline,
            "{what} did not run: {} not created within {within:?}",
            p.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `services[]` entry of the listing for VIP:`port`.
fn service_json(l: &serde_json::Value, port: u16) -> serde_json::Value {
    l["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["spec"]["key"]["port"] == port))
        .cloned()
        .unwrap_or_else(|| panic!("no service on port {port} in the listing: {l}"))
}

/// A second service on VIP:81 → rs1, served by a Python HTTP server there.
fn second_service(lab: &Lab) -> String {
    let docroot = lab.dir().join("rs1").join("html").display().to_string();
    lab.spawn(
        "rs1",
        &[
            "python3",
            "-m",
            "http.server",
            "81",
            "--bind",
            "0.0.0.0",
            "--directory",
            &docroot,
        ],
    )
    .expect("starting python3 -m http.server 81 on rs1");
    lab.wait_http("rs1", "http://127.0.0.1:81/big", Duration::from_secs(10))
        .expect("python http.server on rs1:81");
    // Route forwarding keeps the service port: no port on the server.
    format!(
        "{}  [[service.real_server]]\n  address = \"{}\"\n  method = \"dr\"\n",
        service(81, "rr", ""),
        rs_ip(1)
    )
}

/// The configuration of the reload test: VIP:80 wrr with rs1 at `w1`, and
/// the unchanged VIP:81.
fn reload_config(w1: u32, second: &str) -> String {
    let mut cfg = service(80, "wrr", "");
    for (n, w) in [(1, w1), (2, 1), (3, 1)] {
        cfg.push_str(&real_server(n, w, true));
    }
    cfg.push_str(second);
    cfg
}

/// The VIP:81 service's InPkts and connections, once the workers have
/// published at least `at_least` connections.
fn second_stats(d: &Daemon<'_>, at_least: u64) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let s = service_json(&d.listing(), 81);
        let pkts = s["stats"]["in_packets"].as_u64().unwrap_or(0);
        let conns = s["stats"]["conns"].as_u64().unwrap_or(0);
        if conns >= at_least || Instant::now() >= deadline {
            return (pkts, conns);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Reloads changing one weight, by SIGHUP and by the API, while wrk holds
/// 20 keep-alive connections: no error, no reset, the new weight listed,
/// and the untouched service's counters carried over.
#[test]
fn reload_under_load_changes_a_weight_without_errors() {
    with_lab("health-reload", 3, |lab| {
        let second = second_service(lab);
        let d = Daemon::start(lab, &reload_config(1, &second));
        wait_pool(
            &d,
            &weights(&[(1, 1), (2, 1), (3, 1)]),
            Duration::from_secs(1),
        );
        for i in 0..5 {
            lab.exec_timeout(
                "client",
                &["curl", "-sf", "-m", "5", &format!("http://{VIP}:81/big")],
                Duration::from_secs(10),
            )
            .unwrap_or_else(|e| panic!("request {} to VIP:81: {e}", i + 1));
        }
        let (pkts_before, conns_before) = second_stats(&d, 5);
        assert!(
            conns_before >= 5 && pkts_before > 0,
            "VIP:81 counted its 5 requests: conns {conns_before}, InPkts {pkts_before}"
        );

        let roles = ["client", "rs1", "rs2", "rs3"];
        let resets_before: Vec<u64> = roles.iter().map(|r| estab_resets(lab, r)).collect();
        let args = wrk_args(8);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let wrk = lab.spawn("client", &args).expect("starting wrk");
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_millis(2500));
        d.write_config(&reload_config(3, &second));
        d.sighup();
        let took = wait_pool(
            &d,
            &weights(&[(1, 3), (2, 1), (3, 1)]),
            Duration::from_secs(2),
        );
        eprintln!(
            "  SIGHUP at {:.1?}: weight 3 listed after {took:.1?}",
            t0.elapsed() - took
        );
        std::thread::sleep(Duration::from_millis(5000).saturating_sub(t0.elapsed()));
        d.write_config(&reload_config(2, &second));
        let (code, body) = d.reload_api();
        assert_eq!(code, 200, "API reload of a good file: {body}");
        let list = d.rvsadm(&["-Ln"]);
        assert_eq!(
            pool(&list, &vip80()),
            weights(&[(1, 2), (2, 1), (3, 1)]),
            "the API reload applied before answering:\n{list}"
        );
        let at_api = t0.elapsed();
        // Still inside wrk's run: closing at its end resets busy connections.
        std::thread::sleep(Duration::from_secs(1));
        let resets: Vec<u64> = roles
            .iter()
            .zip(&resets_before)
            .map(|(r, b)| estab_resets(lab, r) - b)
            .collect();
        let still_running = wrk.is_running();
        let deadline = Instant::now() + Duration::from_secs(20);
        while wrk.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let (status, out) = wrk.stop(Duration::from_secs(2)).expect("wrk");
        assert!(
            still_running,
            "wrk ended before the resets were read (API reload at {at_api:?})"
        );
        assert!(status.success(), "wrk: {status}\n{out}");
        let r = parse_wrk(&out);
        eprintln!(
            "  wrk: {} requests in 8 s across both reloads (API reload at {at_api:.1?})",
            r.requests
        );
        assert!(r.requests > 0, "wrk made no requests:\n{out}");
        assert!(r.errors.is_empty(), "wrk errors across the reloads:\n{out}");
        assert_eq!(
            resets,
            vec![0; 4],
            "established connections reset (client, rs1, rs2, rs3) across the reloads"
        );

        let (pkts_after, conns_after) = second_stats(&d, conns_before);
        assert!(
            pkts_after >= pkts_before && conns_after >= conns_before,
            "the unchanged VIP:81's counters were reset by the reloads: \
             InPkts {pkts_before} → {pkts_after}, conns {conns_before} → {conns_after}"
        );
        let list = d.rvsadm(&["-Ln", "--stats"]);
        eprintln!("  after the reloads:\n{list}");
        d.stop();
    });
}

/// Services and real servers of a listing without anything that traffic
/// or time changes (counters, rates, connection counts).
fn config_view(l: &serde_json::Value) -> serde_json::Value {
    let services: Vec<serde_json::Value> = l["services"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|s| {
                    let dests: Vec<serde_json::Value> = s["dests"]
                        .as_array()
                        .map(|d| d.iter().map(|d| d["spec"].clone()).collect())
                        .unwrap_or_default();
                    serde_json::json!({ "spec": s["spec"], "dests": dests })
                })
                .collect()
        })
        .unwrap_or_default();
    serde_json::json!({
        "services": services,
        "timeouts": l["timeouts"],
        "config_diverged": l["config_diverged"],
        "config_file": l["config_file"],
    })
}

/// `rvsd --check-config FILE` in the director namespace: success, stderr.
fn check_config(lab: &Lab, file: &Path) -> (bool, String, String) {
    let rvsd = &common::binaries().rvsd;
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.ns("dir")])
        .arg(rvsd)
        .arg("--check-config")
        .arg(file)
        .output()
        .expect("running rvsd --check-config");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A file with an error is refused by SIGHUP, by the API (which answers
/// the error) and by --check-config (naming the line); the running service
/// stays as it was. An rvsadm change marks the configuration diverged; a
/// reload clears the mark and undoes the change.
#[test]
fn broken_config_is_refused_and_runtime_changes_are_undone_by_reload() {
    with_lab("health-broken", 3, |lab| {
        let mut good = service(80, "rr", "");
        for n in 1..=3 {
            good.push_str(&real_server(n, 1, false));
        }
        let d = Daemon::start(lab, &good);
        let all = weights(&[(1, 1), (2, 1), (3, 1)]);
        wait_pool(&d, &all, Duration::from_secs(1));
        assert_eq!(spread(lab, 6), counts(&[2, 2, 2]));
        let before = d.listing();
        assert_eq!(
            before["config_file"].as_str(),
            Some(d.config.display().to_string().as_str())
        );
        assert_eq!(before["config_diverged"], false, "fresh from the file");
        let (ok, out, err) = check_config(lab, &d.config);
        assert!(ok, "--check-config accepts the running file:\n{out}{err}");

        // rs2's weight becomes a string: a type error on a known line.
        let text = std::fs::read_to_string(&d.config).expect("reading the config");
        let rs2_at = text
            .find(&format!("address = \"{}\"", rs_ip(2)))
            .expect("rs2 in the config");
        let weight_at = rs2_at + text[rs2_at..].find("weight = 1").expect("rs2's weight");
        let line = text[..weight_at].matches('\n').count() + 1;
        let broken = format!(
            "{}weight = \"heavy\"{}",
            &text[..weight_at],
            &text[weight_at + "weight = 1".len()..]
        );
        std::fs::write(&d.config, &broken).expect("writing the broken config");

        let refusals = |log: &str| log.matches("reload refused").count();
        let refused_before = refusals(&d.log());
        d.sighup();
        let deadline = Instant::now() + Duration::from_secs(5);
        while refusals(&d.log()) == refused_before {
            assert!(
                Instant::now() < deadline,
                "no `reload refused` in rvsd's log 5 s after SIGHUP with a broken file:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(d.process().is_running(), "rvsd died on a broken file");
        assert_eq!(
            config_view(&d.listing()),
            config_view(&before),
            "SIGHUP with a broken file changed the running configuration"
        );
        assert_eq!(spread(lab, 6), counts(&[2, 2, 2]), "traffic after SIGHUP");

        let (code, body) = d.reload_api();
        assert_eq!(code, 400, "API reload of a broken file must fail: {body}");
        let msg: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("error body ({e}): {body}"));
        let msg = msg["error"].as_str().unwrap_or_default().to_owned();
        assert!(
            msg.contains(&d.config.display().to_string()) && msg.contains(&format!("line {line}")),
            "the API's refusal names the file and line {line}: {msg:?}"
        );
        eprintln!("  API reload refused: {msg}");
        assert_eq!(
            config_view(&d.listing()),
            config_view(&before),
            "API reload with a broken file changed the running configuration"
        );
        assert_eq!(spread(lab, 6), counts(&[2, 2, 2]), "traffic after the API");

        let (ok, out, err) = check_config(lab, &d.config);
        assert!(!ok, "--check-config accepted a broken file:\n{out}{err}");
        assert!(
            err.contains(&format!("line {line}")),
            "--check-config names line {line}:\n{err}"
        );
        eprintln!("  --check-config: {}", err.trim());

        // Runtime change, then a reload of the (fixed) file undoes it.
        std::fs::write(&d.config, &text).expect("restoring the config");
        d.rvsadm(&[
            "-e",
            "-t",
            &format!("{VIP}:80"),
            "-r",
            &rs_ip(1).to_string(),
            "-g",
            "-w",
            "4",
        ]);
        let l = d.listing();
        assert_eq!(l["config_diverged"], true, "after rvsadm -e: {l}");
        assert_eq!(
            pool(&d.rvsadm(&["-Ln"]), &vip80()),
            weights(&[(1, 4), (2, 1), (3, 1)])
        );
        let (code, body) = d.reload_api();
        assert_eq!(code, 200, "API reload of the fixed file: {body}");
        let l = d.listing();
        assert_eq!(l["config_diverged"], false, "after the reload: {l}");
        assert_eq!(
            pool(&d.rvsadm(&["-Ln"]), &vip80()),
            all,
            "the reload undid rvsadm's weight"
        );
        assert_eq!(config_view(&l), config_view(&before));
        d.stop();
    });
}

/// A sample's value of a parsed scrape.
fn value(s: &prometheus_parse::Sample) -> f64 {
    match s.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        _ => f64::NAN,
    }
}

/// The Prometheus endpoint on the director's front address, scraped from
/// the router during wrk, parsed with prometheus-parse.
#[test]
fn metrics_endpoint_reports_services_servers_and_workers() {
    with_lab("health-metrics", 3, |lab| {
        let mut cfg = format!("metrics_listen = \"{DIR_FRONT_IP}:9813\"\n");
        // No alpha: every checked server must have a health entry from the
        // start, not only after its state first changes.
        cfg.push_str(&service(80, "rr", ""));
        for n in 1..=3 {
            cfg.push_str(&real_server(n, 1, true));
        }
        let d = Daemon::start(lab, &cfg);
        wait_pool(
            &d,
            &weights(&[(1, 1), (2, 1), (3, 1)]),
            Duration::from_secs(5),
        );
        let url = format!("http://{DIR_FRONT_IP}:9813/metrics");
        lab.wait_http("router", &url, Duration::from_secs(5))
            .expect("metrics endpoint answers from the router");

        let args = wrk_args(5);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let wrk = lab.spawn("client", &args).expect("starting wrk");
        std::thread::sleep(Duration::from_millis(2500));
        let text = lab
            .exec_timeout(
                "router",
                &["curl", "-sf", "-m", "5", &url],
                Duration::from_secs(10),
            )
            .expect("scraping /metrics from the router");
        let during = wrk.is_running();
        let deadline = Instant::now() + Duration::from_secs(20);
        while wrk.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let (status, out) = wrk.stop(Duration::from_secs(2)).expect("wrk");
        assert!(during, "the scrape was not taken during traffic");
        assert!(status.success(), "wrk: {status}\n{out}");
        assert!(parse_wrk(&out).errors.is_empty(), "wrk errors:\n{out}");

        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
            .unwrap_or_else(|e| panic!("the exposition does not parse ({e}):\n{text}"));
        let samples = |name: &str| -> Vec<&prometheus_parse::Sample> {
            scrape.samples.iter().filter(|s| s.metric == name).collect()
        };
        let svc = format!("TCP {VIP}:80");
        let report = |name: &str| {
            samples(name)
                .iter()
                .map(|s| format!("{}{:?} {}", s.metric, s.labels, value(s)))
                .collect::<Vec<_>>()
                .join("\n")
        };

        let conns: f64 = samples("rvs_service_connections_total")
            .iter()
            .filter(|s| s.labels.get("service") == Some(svc.as_str()))
            .map(|s| value(s))
            .sum();
        assert!(
            conns >= 20.0,
            "rvs_service_connections_total{{service=\"{svc}\"}} = {conns}, wrk opened 20:\n{}",
            report("rvs_service_connections_total")
        );
        let per_server = |name: &str| -> BTreeMap<String, f64> {
            samples(name)
                .iter()
                .filter(|s| s.labels.get("service") == Some(svc.as_str()))
                .filter_map(|s| Some((s.labels.get("server")?.to_owned(), value(s))))
                .collect()
        };
        let servers: Vec<String> = (1..=3).map(|n| format!("{}:80", rs_ip(n))).collect();
        let active = per_server("rvs_real_server_active_connections");
        let inactive = per_server("rvs_real_server_inactive_connections");
        for s in &servers {
            assert!(
                active.get(s).is_some_and(|v| *v > 0.0),
                "rvs_real_server_active_connections for {s} during wrk: {active:?}"
            );
            assert!(
                inactive.get(s).is_some_and(|v| *v >= 0.0),
                "rvs_real_server_inactive_connections for {s}: {inactive:?}"
            );
        }
        assert_eq!(
            active.values().sum::<f64>(),
            20.0,
            "wrk's 20 keep-alive connections are active"
        );
        let up = per_server("rvs_real_server_up");
        let want: BTreeMap<String, f64> = servers.iter().map(|s| (s.clone(), 1.0)).collect();
        assert_eq!(
            up,
            want,
            "rvs_real_server_up for every checked server:\n{}",
            report("rvs_real_server_up")
        );
        let forwarded: f64 = samples("rvs_worker_packets_total")
            .iter()
            .filter(|s| s.labels.get("verdict") == Some("forwarded"))
            .map(|s| value(s))
            .sum();
        assert!(
            forwarded > 0.0,
            "rvs_worker_packets_total{{verdict=\"forwarded\"}}:\n{}",
            report("rvs_worker_packets_total")
        );
        let drops = samples("rvs_worker_drops_total");
        assert!(
            drops
                .iter()
                .any(|s| s.labels.get("reason") == Some("malformed")),
            "rvs_worker_drops_total by reason:\n{text}"
        );
        eprintln!(
            "  scrape: {} samples; connections {conns}, forwarded {forwarded}, active {active:?}",
            scrape.samples.len()
        );
        d.stop();
    });
}

/// An SMTP responder for the smtp check: a 220 greeting, 250 to HELO (the
/// name it was given appended to `helo.log`), 221 to QUIT. Port in argv.
const SMTP_RESPONDER: &str = r#"
import socketserver, sys
LOG = sys.argv[2]
class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        self.wfile.write(b"220-rs.test ESMTP test responder\r\n220 ready\r\n")
        for line in self.rfile:
            word = line.strip().split(b" ")
            if word[0].upper() == b"HELO":
                with open(LOG, "ab") as f:
                    f.write(line.strip() + b"\n")
                self.wfile.write(b"250 rs.test\r\n")
            elif word[0].upper() == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"500 unknown\r\n")
class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
Server(("0.0.0.0", int(sys.argv[1])), Handler).serve_forever()
"#;

/// A DNS responder for the dns check: answers every query with the same
/// id, the question, and for an A query one A record; the rcode is argv[2]
/// (0 = NOERROR, 2 = SERVFAIL). Port in argv[1].
const DNS_RESPONDER: &str = r#"
import socket, struct, sys
rcode = int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
while True:
    q, peer = s.recvfrom(512)
    if len(q) < 12:
        continue
    end = 12
    while end < len(q) and q[end] != 0:
        end += q[end] + 1
    question = q[12:end + 5]
    qtype = struct.unpack("!H", q[end + 1:end + 3])[0] if end + 3 <= len(q) else 0
    answer = b""
    if rcode == 0 and qtype == 1:
        answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([10, 0, 2, 1])
    flags = 0x8180 | rcode
    head = q[:2] + struct.pack("!HHHHH", flags, 1, 1 if answer else 0, 0, 0)
    s.sendto(head + question + answer, peer)
"#;

/// nginx with TLS (a self-signed certificate) and basic auth: `/health`
/// for the virtual host `www.rs.test` behind `auth_basic`, anything else
/// (another Host) 421.
fn tls_nginx_conf(dir: &Path, temp_modules: &[String]) -> String {
    let d = dir.display();
    let mut temp = format!("    client_body_temp_path {d}/tmp-body;\n");
    for m in temp_modules {
        temp.push_str(&format!("    {m}_temp_path {d}/tmp-{m};\n"));
    }
    format!(
        "daemon off;\nmaster_process on;\nworker_processes 1;\nuser root root;\n\
         pid {d}/nginx.pid;\nerror_log {d}/error.log warn;\nevents {{ worker_connections 64; }}\n\
         http {{\n    access_log off;\n{temp}    default_type text/plain;\n\
         ssl_certificate {d}/cert.pem;\n    ssl_certificate_key {d}/key.pem;\n\
             server {{\n        listen 0.0.0.0:443 ssl default_server;\n        \
         location / {{ return 421; }}\n    }}\n\
             server {{\n        listen 0.0.0.0:443 ssl;\n        server_name www.rs.test;\n        \
         root {d}/html;\n        location = /health {{\n            \
         auth_basic \"rvs\";\n            auth_basic_user_file {d}/htpasswd;\n        }}\n    }}\n}}\n"
    )
}

/// Runs `program args` on the host, panicking with its output on failure.
fn host_run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every keepalived checker RVS added, against real servers in the lab:
/// rs1 is nginx over TLS with basic auth (ssl check with virtualhost, SNI
/// and credentials, plus a file check on the director), rs2 an SMTP
/// responder (smtp check with helo_name, notify_up/notify_down commands),
/// rs3 a DNS responder (dns check).
/// Each goes down when its server answers wrong or not at all and comes
/// back when it answers right. Loads: only the checks, one a second.
#[test]
fn every_keepalived_checker_against_real_servers() {
    with_lab("health-checkers", 3, |lab| {
        // rs1: a second nginx, TLS on 443, its own directory.
        let tls = lab.dir().join("rs1-tls");
        std::fs::create_dir_all(tls.join("html")).unwrap();
        std::fs::write(tls.join("html/health"), "healthy\n").unwrap();
        let (cert, key) = (tls.join("cert.pem"), tls.join("key.pem"));
        host_run(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=www.rs.test",
                "-keyout",
                key.to_str().unwrap(),
                "-out",
                cert.to_str().unwrap(),
            ],
        );
        let htpasswd = tls.join("htpasswd");
        std::fs::write(&htpasswd, "monitor:{PLAIN}right-password\n").unwrap();
        let nginx_v = Command::new("nginx").arg("-V").output().unwrap();
        let v = String::from_utf8_lossy(&nginx_v.stderr).into_owned();
        let temp: Vec<String> = ["proxy", "fastcgi", "uwsgi", "scgi"]
            .into_iter()
            .filter(|m| !v.contains(&format!("--without-http_{m}_module")))
            .map(String::from)
            .collect();
        let conf = tls.join("nginx.conf");
        std::fs::write(&conf, tls_nginx_conf(&tls, &temp)).unwrap();
        let tls_dir = tls.display().to_string();
        lab.spawn(
            "rs1",
            &["nginx", "-p", &tls_dir, "-c", conf.to_str().unwrap()],
        )
        .expect("starting the TLS nginx");

        // rs2: SMTP on 2525; rs3: DNS on 5353.
        let smtp_py = lab.dir().join("smtp_responder.py");
        std::fs::write(&smtp_py, SMTP_RESPONDER).unwrap();
        let helo_log = lab.dir().join("helo.log");
        let smtp_argv = [
            "python3",
            smtp_py.to_str().unwrap(),
            "2525",
            helo_log.to_str().unwrap(),
        ];
        let smtp = lab
            .spawn("rs2", &smtp_argv)
            .expect("starting the SMTP responder");
        let dns_py = lab.dir().join("dns_responder.py");
        std::fs::write(&dns_py, DNS_RESPONDER).unwrap();
        let dns_argv = |rcode: &'static str| {
            ["python3", dns_py.to_str().unwrap(), "5353", rcode].map(String::from)
        };
        let spawn_dns = |rcode: &'static str| {
            let argv = dns_argv(rcode);
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            lab.spawn("rs3", &argv).expect("starting the DNS responder")
        };
        let dns = spawn_dns("0");

        let file = lab.dir().join("rs1.weight");
        // notify commands run as the script user (nobody).
        let shared = lab.dir().join("notify");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let (rs2_up, rs2_down) = (shared.join("rs2-up"), shared.join("rs2-down"));
        let timing = format!(
            "    connect_timeout = {CONNECT_TIMEOUT}\n    delay_loop = {DELAY_LOOP}\n    \
             retry = {RETRY}\n    delay_before_retry = 1\n"
        );
        let server = |n: usize, checks: &str| {
            format!(
                "  [[service.real_server]]\n  address = \"{}\"\n  port = 80\n  weight = 1\n  \
                 method = \"dr\"\n{checks}",
                rs_ip(n)
            )
        };
        let mut cfg = service(80, "wrr", "");
        cfg.push_str(&server(
            1,
            &format!(
                "    [[service.real_server.check]]\n    type = \"ssl\"\n    path = \"/health\"\n    \
                 status_codes = [\"200-299\"]\n    virtualhost = \"www.rs.test\"\n    \
                 enable_sni = true\n    username = \"monitor\"\n    password = \"right-password\"\n    \
                 connect_port = 443\n{timing}\
                 \n    [[service.real_server.check]]\n    type = \"file\"\n    file = \"{}\"\n    \
                 weight = 2\n    delay_loop = 1\n",
                file.display()
            ),
        ));
        cfg.push_str(&server(
            2,
            &format!(
                "  notify_up = \"touch {}\"\n  notify_down = \"touch {}\"\n\
                 \x20   [[service.real_server.check]]\n    type = \"smtp\"\n    \
                 helo_name = \"director.rvs.test\"\n    connect_port = 2525\n{timing}",
                rs2_up.display(),
                rs2_down.display()
            ),
        ));
        cfg.push_str(&server(
            3,
            &format!(
                "    [[service.real_server.check]]\n    type = \"dns\"\n    query_type = \"A\"\n    \
                 query_name = \"www.rs.test\"\n    connect_port = 5353\n{timing}"
            ),
        ));
        let d = Daemon::start(lab, &cfg);
        let all = weights(&[(1, 1), (2, 1), (3, 1)]);
        // The responders may still be starting: a first failure is allowed.
        wait_pool(&d, &all, Duration::from_secs(10));
        let bound = Duration::from_secs(10);

        // ssl: a wrong password gets 401, the server leaves; right again, back.
        std::fs::write(&htpasswd, "monitor:{PLAIN}another-password\n").unwrap();
        wait_pool(&d, &weights(&[(2, 1), (3, 1)]), bound);
        match health_of(&d.listing(), 1) {
            Some((false, reason)) => assert!(reason.contains("status 401"), "{reason}"),
            other => panic!("rs1 should be down on 401, is {other:?}"),
        }
        std::fs::write(&htpasswd, "monitor:{PLAIN}right-password\n").unwrap();
        wait_pool(&d, &all, bound);

        // file: 3 × weight 2 is added to the configured 1; the fault value
        // takes the server down; 0 gives the configured weight back.
        std::fs::write(&file, "3\n").unwrap();
        wait_pool(&d, &weights(&[(1, 7), (2, 1), (3, 1)]), bound);
        std::fs::write(&file, "-1073741824\n").unwrap();
        wait_pool(&d, &weights(&[(2, 1), (3, 1)]), bound);
        std::fs::write(&file, "0\n").unwrap();
        wait_pool(&d, &all, bound);

        // smtp: the responder stopped, the server leaves; started, back.
        let helo = std::fs::read_to_string(&helo_log).unwrap_or_default();
        assert!(
            helo.lines().next() == Some("HELO director.rvs.test"),
            "the smtp check says HELO with helo_name: {helo:?}"
        );
        // A slow first start may have run them: only transitions from here count.
        let _ = std::fs::remove_file(&rs2_up);
        let _ = std::fs::remove_file(&rs2_down);
        smtp.stop(Duration::from_secs(2))
            .expect("stopping the SMTP responder");
        wait_pool(&d, &weights(&[(1, 1), (3, 1)]), bound);
        wait_file(&rs2_down, Duration::from_secs(5), "rs2's notify_down");
        assert!(!rs2_up.exists(), "notify_up ran while rs2 went down");
        let smtp = lab
            .spawn("rs2", &smtp_argv)
            .expect("restarting the SMTP responder");
        wait_pool(&d, &all, bound);
        wait_file(&rs2_up, Duration::from_secs(5), "rs2's notify_up");

        // dns: SERVFAIL takes the server down, NOERROR brings it back.
        dns.stop(Duration::from_secs(2))
            .expect("stopping the DNS responder");
        let dns = spawn_dns("2");
        wait_pool(&d, &weights(&[(1, 1), (2, 1)]), bound);
        match health_of(&d.listing(), 3) {
            Some((false, reason)) => assert!(reason.contains("rcode 2"), "{reason}"),
            other => panic!("rs3 should be down on SERVFAIL, is {other:?}"),
        }
        dns.stop(Duration::from_secs(2))
            .expect("stopping the DNS responder");
        let dns = spawn_dns("0");
        wait_pool(&d, &all, bound);

        d.stop();
        smtp.stop(Duration::from_secs(2))
            .expect("stopping the SMTP responder");
        dns.stop(Duration::from_secs(2))
            .expect("stopping the DNS responder");
    });
}
