//! Soak: rvsd (NAT, two RX queues, fast path on) under mixed load for a
//! bounded time — HTTP keep-alive, HTTP with a new connection per request,
//! UDP request/response — while its file is reloaded with new weights,
//! rvsadm edits weights, and a real server flaps under its health checks.
//! Checked: rvsd never panics or exits; its memory is flat after warm-up;
//! the connection table drains to zero once the load stops; per-server
//! counters add up to the service's; every frame is in exactly one counter.
//!
//! `RVS_SOAK_SECS` sets the load's length (default 120 s, the suite's;
//! `scripts/soak` runs 30 minutes by hand).

// Only some of the shared helpers are used here.
#[allow(dead_code)]
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rvs_lab::{rs_ip, Lab, Mode, VIP};

use common::{counters_of, parse_wrk, Daemon, Nginx};

/// UDP service port; a small echo server answers on every real server.
const UDP_PORT: u16 = 5353;
/// Warm-up before the memory baseline is taken.
const WARM_UP: Duration = Duration::from_secs(30);
/// How long the table may take to drain: the kernel's TIME_WAIT (2 min)
/// plus slack.
const DRAIN: Duration = Duration::from_secs(150);
/// RSS growth allowed after warm-up: a quarter plus 8 MB.
fn rss_bound(baseline_kb: u64) -> u64 {
    baseline_kb + baseline_kb / 4 + 8 * 1024
}

const UDP_ECHO: &str = "import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('0.0.0.0', 5353))
while True:
    d, a = s.recvfrom(2048)
    s.sendto(d, a)
";

/// Sends `rate` datagrams a second for `secs` seconds from fresh source
/// ports (a new UDP connection each), and prints how many were answered.
const UDP_LOAD: &str = "import socket, sys, time
vip, port, secs, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
sent = answered = 0
end = time.time() + secs
socks = []
while time.time() < end:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    s.sendto(b'soak', (vip, port))
    sent += 1
    socks.append(s)
    time.sleep(1.0 / rate)
    for o in socks[:]:
        try:
            o.recv(64)
            answered += 1
            o.close()
            socks.remove(o)
        except BlockingIOError:
            if len(socks) > 64:
                o.close()
                socks.remove(o)
print(f'udp sent {sent} answered {answered}', flush=True)
";

fn config(weights: [u32; 3]) -> String {
    // Short FIN_WAIT and UDP timeouts (ipvsadm --set), so the table can
    // drain within the test: TIME_WAIT keeps its 2 minutes.
    let mut c = format!(
        "[timeouts]\ntcp = 900\ntcpfin = 10\nudp = 10\n\n[[service]]\nprotocol = \"tcp\"\naddress = \"{VIP}\"\nport = 80\nscheduler = \"wlc\"\n\
         inhibit_on_failure = true\n"
    );
    for (n, w) in (1..=3).zip(weights) {
        c.push_str(&format!(
            "  [[service.real_server]]\n  address = \"{}\"\n  port = 80\n  weight = {w}\n  method = \"nat\"\n\
             \x20   [[service.real_server.check]]\n    type = \"http\"\n    path = \"/\"\n    \
             connect_timeout = 1\n    delay_loop = 1\n    retry = 1\n    delay_before_retry = 1\n",
            rs_ip(n)
        ));
    }
    c.push_str(&format!(
        "[[service]]\nprotocol = \"udp\"\naddress = \"{VIP}\"\nport = {UDP_PORT}\nscheduler = \"rr\"\n"
    ));
    for n in 1..=3 {
        c.push_str(&format!(
            "  [[service.real_server]]\n  address = \"{}\"\n  port = {UDP_PORT}\n  method = \"nat\"\n",
            rs_ip(n)
        ));
    }
    c
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// A service's (conns, in_packets, out_packets), and the same summed over
/// its real servers.
struct Totals {
    key: String,
    own: [u64; 3],
    sum: [u64; 3],
}

/// Every service's totals, and the connections still in the table.
fn stats(listing: &serde_json::Value) -> (Vec<Totals>, u64) {
    let mut out = Vec::new();
    let mut table = 0;
    for s in listing["services"].as_array().into_iter().flatten() {
        let get = |v: &serde_json::Value| {
            ["conns", "in_packets", "out_packets"].map(|k| v[k].as_u64().unwrap_or(0))
        };
        let own = get(&s["stats"]);
        let mut sum = [0u64; 3];
        for d in s["dests"].as_array().into_iter().flatten() {
            let ds = get(&d["stats"]);
            for i in 0..3 {
                sum[i] += ds[i];
            }
            table +=
                d["active_conns"].as_u64().unwrap_or(0) + d["inactive_conns"].as_u64().unwrap_or(0);
        }
        out.push(Totals {
            key: s["spec"]["key"].to_string(),
            own,
            sum,
        });
    }
    (out, table)
}

#[test]
fn soak_mixed_load_reloads_edits_and_flapping() {
    let secs: u64 = std::env::var("RVS_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    common::with_lab("soak", common::lab_spec(Mode::Nat, 2), |lab| {
        soak(lab, secs)
    });
}

fn soak(lab: &Lab, secs: u64) {
    let mut d = Daemon::start(lab, &config([1, 1, 1]));
    for n in 1..=3 {
        lab.spawn(&format!("rs{n}"), &["python3", "-c", UDP_ECHO])
            .expect("UDP echo on a real server");
    }
    let flapping = Nginx::of(lab, 3);
    let pid = d.process().pid();
    let d_secs = secs.to_string();

    // The load, each bounded by its own duration.
    let keepalive = lab
        .spawn(
            "client",
            &[
                "wrk",
                "-t1",
                "-c10",
                &format!("-d{secs}s"),
                "--timeout",
                "3s",
                &format!("http://{VIP}/"),
            ],
        )
        .expect("wrk keep-alive");
    let fresh = lab
        .spawn(
            "client",
            &[
                "wrk",
                "-t1",
                "-c4",
                &format!("-d{secs}s"),
                "--timeout",
                "3s",
                "-H",
                "Connection: close",
                &format!("http://{VIP}/"),
            ],
        )
        .expect("wrk new connections");
    let udp = lab
        .spawn(
            "client",
            &[
                "python3",
                "-c",
                UDP_LOAD,
                &VIP.to_string(),
                &UDP_PORT.to_string(),
                &d_secs,
                "100",
            ],
        )
        .expect("UDP load");

    let started = Instant::now();
    let mut rss: Vec<(Duration, u64)> = Vec::new();
    let mut reloads = 0;
    let mut edits = 0;
    let mut flaps = 0;
    let mut step = 0u64;
    while started.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(1));
        step += 1;
        assert!(
            d.process().is_running(),
            "rvsd exited under load:\n{}",
            d.log()
        );
        if step.is_multiple_of(5) {
            rss.push((started.elapsed(), rss_kb(pid)));
        }
        match step % 12 {
            // A reload with other weights (the file wins over rvsadm edits).
            3 => {
                let w = (step / 12 % 3) as u32 + 1;
                d.write_config(&config([w, 1 + (w % 2), 2]));
                let pid_s = pid.to_string();
                lab.exec("dir", &["kill", "-HUP", &pid_s]).expect("SIGHUP");
                reloads += 1;
            }
            // An operator's edit.
            9 => {
                let w = (step % 5 + 1).to_string();
                let svc = format!("{VIP}:80");
                let rs = format!("{}:80", rs_ip(2));
                d.rvsadm(&["-e", "-t", &svc, "-r", &rs, "-m", "-w", &w]);
                edits += 1;
            }
            _ => {}
        }
        // rs3's nginx goes away for 4 s every 20 s; its check takes it down
        // (weight 0, inhibit_on_failure) and back up.
        if step % 20 == 10 && started.elapsed() + Duration::from_secs(6) < Duration::from_secs(secs)
        {
            flapping.stop(lab);
            std::thread::sleep(Duration::from_secs(4));
            flapping.start(lab);
            flaps += 1;
        }
    }
    let wait_done = |p: rvs_lab::Spawned, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while p.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        let (status, out) = p.stop(Duration::from_secs(2)).expect(what);
        assert!(status.success(), "{what}: {status}\n{out}");
        out
    };
    let ka = parse_wrk(&wait_done(keepalive, "wrk keep-alive"));
    let fr = parse_wrk(&wait_done(fresh, "wrk new connections"));
    let udp_out = wait_done(udp, "UDP load");
    eprintln!(
        "soak: {secs} s: keep-alive {} requests {:?}, new-connection {} requests {:?}, {}; \
         {reloads} reloads, {edits} edits, {flaps} flaps",
        ka.requests,
        ka.errors,
        fr.requests,
        fr.errors,
        udp_out.trim()
    );
    assert!(
        ka.requests > 0 && fr.requests > 0,
        "no HTTP load went through"
    );
    let answered: u64 = udp_out
        .split_whitespace()
        .last()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(answered > 0, "no UDP answer came back: {udp_out}");
    assert!(
        reloads > 0 && edits > 0 && flaps > 0,
        "the churn did not happen"
    );

    // Memory: flat after warm-up.
    let baseline = rss
        .iter()
        .find(|(t, _)| *t >= WARM_UP)
        .map(|(_, kb)| *kb)
        .unwrap_or_else(|| rss.last().map(|r| r.1).unwrap_or(0));
    let peak = rss
        .iter()
        .filter(|(t, _)| *t >= WARM_UP)
        .map(|r| r.1)
        .max()
        .unwrap_or(0);
    eprintln!("soak: rvsd RSS samples (s, kB): {rss:?}");
    assert!(
        peak <= rss_bound(baseline),
        "rvsd's RSS grew after warm-up: {baseline} kB at {WARM_UP:?}, peak {peak} kB"
    );

    // The table drains once the load is gone (every server up again first,
    // so none is quiesced with connections held).
    let drain_start = Instant::now();
    let (services, table) = loop {
        let (services, table) = stats(&d.listing());
        if table == 0 {
            break (services, table);
        }
        assert!(
            drain_start.elapsed() < DRAIN,
            "{table} connections still in the table {DRAIN:?} after the load stopped"
        );
        std::thread::sleep(Duration::from_secs(2));
    };
    eprintln!("soak: table drained in {:.0?}", drain_start.elapsed());
    assert_eq!(table, 0);
    for Totals { key, own, sum } in &services {
        assert_eq!(
            own, sum,
            "{key}: service (conns, in, out) {own:?} != sum over its real servers {sum:?}"
        );
        assert!(own[0] > 0, "{key} scheduled no connection");
    }

    // Every frame the engine saw is in exactly one counter.
    let c: BTreeMap<String, u64> = counters_of(&d.listing());
    let drops: u64 = c
        .iter()
        .filter(|(k, _)| k.starts_with("drop_"))
        .map(|(_, v)| v)
        .sum();
    let accounted = c["forwarded"] + c["unresolved"] + c["untracked"] + drops;
    assert_eq!(
        c["rx_packets"], accounted,
        "frames received != forwarded + unresolved + untracked + drops: {c:?}"
    );
    let log = d.log();
    assert!(!log.contains("panicked"), "rvsd panicked:\n{log}");
    d.restart();
    d.stop();
}
