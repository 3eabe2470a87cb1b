//! The emitted TOML parses into a local serde model of docs/rvsd.md's
//! target schema (unknown keys refused, as rvsd does), and the parsed
//! structure is the one the keepalived file describes.

use std::path::Path;

use rvs_migrate::{migrate_file, migrate_str, Options};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    interfaces: Vec<String>,
    #[allow(dead_code)] // part of the schema; not written by the migration
    metrics_listen: Option<String>,
    timeouts: Option<Timeouts>,
    #[serde(default)]
    fwmark: Vec<Fwmark>,
    #[serde(default)]
    service: Vec<Service>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Timeouts {
    tcp: Option<u64>,
    tcpfin: Option<u64>,
    udp: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // mirrors the schema; the migration only comments it out
struct Fwmark {
    mark: u32,
    protocol: String,
    address: String,
    ports: Vec<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Service {
    protocol: Option<String>,
    address: Option<String>,
    port: Option<u16>,
    fwmark: Option<u32>,
    scheduler: String,
    #[serde(default)]
    scheduler_flags: Vec<String>,
    persistence_timeout: Option<u32>,
    persistence_netmask: Option<String>,
    one_packet: Option<bool>,
    delay_loop: u64,
    quorum: u32,
    hysteresis: u32,
    inhibit_on_failure: bool,
    alpha: bool,
    omega: bool,
    quorum_up: Option<String>,
    quorum_down: Option<String>,
    sorry_server: Option<Server>,
    #[serde(default)]
    real_server: Vec<RealServer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Server {
    address: String,
    port: Option<u16>,
    method: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RealServer {
    address: String,
    port: Option<u16>,
    weight: u32,
    method: String,
    upper_threshold: Option<u32>,
    lower_threshold: Option<u32>,
    inhibit_on_failure: bool,
    #[serde(default)]
    check: Vec<Check>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Check {
    #[serde(rename = "type")]
    kind: String,
    path: Option<String>,
    status_codes: Option<Vec<u16>>,
    digest: Option<String>,
    connect_ip: Option<String>,
    connect_port: Option<u16>,
    connect_timeout: Option<u64>,
    delay_loop: u64,
    retry: u32,
    delay_before_retry: u64,
    warmup: u64,
    script: Option<String>,
    misc_timeout: Option<u64>,
    misc_dynamic: Option<bool>,
    payload: Option<String>,
    require_reply: Option<bool>,
}

fn load(case: &str, interfaces: Option<&[&str]>) -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(format!("{case}.conf"));
    let opts = Options {
        interfaces: interfaces.map(|i| i.iter().map(|s| s.to_string()).collect()),
        source_name: case.into(),
    };
    let m = migrate_file(&path, &opts).unwrap();
    toml::from_str(&m.toml).unwrap_or_else(|e| panic!("{case}: {e}\n{}", m.toml))
}

#[test]
fn dr_web_structure() {
    let c = load("dr_web", Some(&["eth0"]));
    assert_eq!(c.interfaces, ["eth0"]);
    assert_eq!(c.service.len(), 2);
    let s = &c.service[0];
    assert_eq!(
        (s.protocol.as_deref(), s.address.as_deref(), s.port),
        (Some("tcp"), Some("192.0.2.10"), Some(80))
    );
    assert_eq!(s.scheduler, "wrr");
    assert_eq!(s.persistence_timeout, Some(600));
    assert_eq!(s.persistence_netmask.as_deref(), Some("255.255.255.0"));
    assert_eq!(s.delay_loop, 10);
    let rs = &s.real_server[0];
    assert_eq!(rs.address, "10.1.0.11");
    assert_eq!(
        (rs.weight, rs.method.as_str(), rs.port),
        (3, "dr", Some(80))
    );
    assert_eq!(rs.check.len(), 2, "one http check per url");
    assert_eq!(rs.check[1].path.as_deref(), Some("/index.html"));
    assert_eq!(
        rs.check[1].status_codes.as_deref(),
        Some(&[200, 201, 202, 203, 204, 301][..])
    );
    assert_eq!(
        rs.check[1].digest.as_deref(),
        Some("9b3a0c85a887a256d6939da88aabd8cd")
    );
    assert_eq!(
        (
            rs.check[0].retry,
            rs.check[0].delay_before_retry,
            rs.check[0].connect_timeout
        ),
        (2, 2, Some(3))
    );
    // keepalived's default accepted codes are 200-299.
    let second = &s.real_server[1];
    assert_eq!(second.port, Some(80), "DR: the service port");
    let codes = second.check[0].status_codes.as_ref().unwrap();
    assert_eq!((codes.len(), codes[0], codes[99]), (100, 200, 299));
    assert_eq!(second.check[0].connect_port, Some(8081));
    assert_eq!(second.check[0].warmup, 0);
    // SSL_GET becomes a TCP check; legacy lb_algo/lb_kind honoured.
    let https = &c.service[1];
    assert_eq!(https.scheduler, "rr");
    assert_eq!(https.real_server[0].method, "dr");
    assert_eq!(https.real_server[0].check[0].kind, "tcp");
}

#[test]
fn nat_sorry_structure() {
    let c = load("nat_sorry", Some(&["front", "back"]));
    let s = &c.service[0];
    assert_eq!(s.scheduler, "lc");
    assert_eq!((s.quorum, s.hysteresis), (2, 1));
    assert!(s.alpha && s.omega && s.inhibit_on_failure);
    assert_eq!(
        s.quorum_up.as_deref(),
        Some("/usr/local/bin/notify 'db pool' up")
    );
    assert_eq!(s.quorum_down.as_deref(), Some("/usr/local/bin/notify-down"));
    let sorry = s.sorry_server.as_ref().unwrap();
    assert_eq!(
        (sorry.address.as_str(), sorry.port, sorry.method.as_str()),
        ("10.2.0.99", Some(3307), "nat")
    );
    assert!(
        s.real_server.iter().all(|r| r.method == "nat"),
        "keepalived defaults to NAT"
    );
    let r0 = &s.real_server[0];
    assert_eq!(
        (r0.upper_threshold, r0.lower_threshold),
        (Some(500), Some(400))
    );
    assert_eq!(r0.check[0].connect_timeout, Some(3));
    assert_eq!(r0.check[0].retry, 3, "inherited from the virtual server");
    let r1 = &s.real_server[1];
    assert!(!r1.inhibit_on_failure);
    assert_eq!(r1.check[0].connect_ip.as_deref(), Some("10.2.1.22"));
    assert_eq!(r1.check[0].connect_timeout, Some(3), "2.5 rounded up");
    let r2 = &s.real_server[2];
    assert_eq!((r2.port, r2.weight), (Some(3306), 0));
    assert!(r2.check.is_empty());
}

#[test]
fn fwmark_structure() {
    let c = load("fwmark_persist", Some(&["eth0"]));
    assert!(
        c.fwmark.is_empty(),
        "the [[fwmark]] rule is only a commented template"
    );
    let s = &c.service[0];
    assert_eq!(
        (s.fwmark, s.protocol.as_ref(), s.address.as_ref()),
        (Some(7), None, None)
    );
    assert_eq!(s.scheduler_flags, ["sh-port", "sh-fallback"]);
    assert_eq!(
        s.persistence_timeout,
        Some(360),
        "keepalived's default without a value"
    );
    assert_eq!(s.real_server[0].method, "tun");
    assert_eq!(s.real_server[0].port, None);
    assert_eq!(s.real_server[1].method, "dr");
    assert_eq!(s.real_server[0].check[1].kind, "ping");
}

#[test]
fn misc_udp_structure() {
    let c = load("misc_udp", Some(&["eth0"]));
    let s = &c.service[0];
    assert_eq!(
        (s.protocol.as_deref(), s.one_packet),
        (Some("udp"), Some(true))
    );
    let misc = &s.real_server[0].check[0];
    assert_eq!(misc.kind, "misc");
    assert_eq!(
        misc.script.as_deref(),
        Some("/usr/local/bin/check_dns.sh 10.4.0.41 'example org'")
    );
    assert_eq!(
        (misc.misc_timeout, misc.misc_dynamic, misc.retry),
        (Some(4), Some(true), 0)
    );
    assert_eq!(
        misc.connect_timeout, None,
        "MISC_CHECK has no connection options"
    );
    let udp = &s.real_server[1].check;
    assert_eq!(
        (udp[0].kind.as_str(), udp[0].require_reply),
        ("udp", Some(true))
    );
    assert_eq!(udp[0].payload.as_deref(), Some("0a0b 0c"));
    assert_eq!(udp[0].delay_loop, 5, "the service's delay_loop");
    assert_eq!(udp[1].kind, "udp", "DNS_CHECK as a UDP query");
    assert_eq!((udp[1].retry, udp[1].delay_before_retry), (3, 5));
    let other = &c.service[1];
    assert_eq!(other.real_server[0].check[0].misc_timeout, Some(60));
}

#[test]
fn includes_structure() {
    let c = load("include_main", Some(&["eth0"]));
    let ports: Vec<_> = c.service.iter().map(|s| s.port.unwrap()).collect();
    assert_eq!(ports, [80, 25], "sorted glob order; SCTP service left out");
    assert_eq!(c.service[1].real_server[0].check[0].kind, "tcp");
}

#[test]
fn vrrp_group_structure() {
    let c = load("vrrp_group", None);
    assert_eq!(c.interfaces, ["eth0"]);
    let t = c.timeouts.as_ref().unwrap();
    assert_eq!((t.tcp, t.tcpfin, t.udp), (Some(7200), Some(60), Some(120)));
    let got: Vec<_> = c
        .service
        .iter()
        .map(|s| (s.address.clone(), s.port, s.fwmark))
        .collect();
    assert_eq!(
        got,
        [
            (Some("192.0.2.30".to_string()), Some(80), None),
            (Some("192.0.2.31".to_string()), Some(8080), None),
            (Some("192.0.2.32".to_string()), Some(8080), None),
            (None, None, Some(9)),
        ]
    );
    for s in &c.service {
        assert_eq!(s.delay_loop, 15);
        assert_eq!(s.real_server[0].check[0].path.as_deref(), Some("/"));
    }
    assert_eq!(c.service[1].real_server[0].port, Some(8080));
}

#[test]
fn awkward_strings_stay_valid_toml() {
    let m = migrate_str(
        "virtual_server 10.0.0.1 80 {\n real_server 10.0.0.2 80 {\n  MISC_CHECK {\n   \
         misc_path \"/bin/x \\\"q\\\" \\\\ \\t end\"\n  }\n }\n}\n",
        &Options {
            interfaces: Some(vec!["e\"th0".into()]),
            source_name: "mem".into(),
        },
    )
    .unwrap();
    let c: Config = toml::from_str(&m.toml).unwrap();
    assert_eq!(c.interfaces, ["e\"th0"]);
    assert_eq!(
        c.service[0].real_server[0].check[0].script.as_deref(),
        Some("/bin/x \"q\" \\ \t end")
    );
}
