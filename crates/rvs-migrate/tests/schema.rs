//! The emitted TOML parses into rvsd's own schema types
//! (`rvs_vocab::schema`, unknown keys refused, as rvsd does), its health
//! keys and checks pass rvs-health's validation (as rvsd runs it), and the
//! parsed structure is the one the keepalived file describes.

mod support;

use std::path::Path;

use rvs_migrate::{migrate_file, migrate_str, Options};
use rvs_vocab::schema::{Config, RealServer, Service};
use rvs_vocab::{ForwardMethod, Protocol};
use toml::Value;

/// Every service's health keys and checks, and every [[fwmark]] rule, as
/// rvsd validates them.
fn validate(c: &Config) {
    if let Err(e) = support::rvsd_validates(c) {
        panic!("{e}");
    }
}

fn service(c: &Config, i: usize) -> &Service {
    c.services[i].get_ref()
}

fn int(v: Option<&Value>) -> Option<i64> {
    v.and_then(Value::as_integer)
}

fn boolean(v: Option<&Value>) -> Option<bool> {
    v.and_then(Value::as_bool)
}

fn string(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str)
}

/// A check's key.
fn key<'a>(r: &'a RealServer, check: usize, k: &str) -> Option<&'a Value> {
    r.check[check].get(k)
}

/// `status_codes` as written: codes as numbers, ranges as "lo-hi".
fn codes(r: &RealServer, check: usize) -> Option<Vec<String>> {
    key(r, check, "status_codes")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|v| match v {
                    Value::Integer(i) => i.to_string(),
                    Value::String(s) => s.clone(),
                    other => panic!("status code {other}"),
                })
                .collect()
        })
}

fn load(case: &str, interfaces: Option<&[&str]>) -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(format!("{case}.conf"));
    let opts = Options {
        interfaces: interfaces.map(|i| i.iter().map(|s| s.to_string()).collect()),
        source_name: case.into(),
        firewall: support::firewall(case),
    };
    let m = migrate_file(&path, &opts).unwrap();
    let c = Config::parse(&m.toml).unwrap_or_else(|e| panic!("{case}: {e}\n{}", m.toml));
    validate(&c);
    c
}

#[test]
fn dr_web_structure() {
    let c = load("dr_web", Some(&["eth0"]));
    assert_eq!(c.interfaces, ["eth0"]);
    assert_eq!(c.services.len(), 2);
    let s = service(&c, 0);
    assert_eq!(
        (s.protocol, s.address, s.port),
        (
            Some(Protocol::Tcp),
            Some("192.0.2.10".parse().unwrap()),
            Some(80)
        )
    );
    assert_eq!(s.scheduler, "wrr");
    assert_eq!(s.persistence_timeout, Some(600));
    assert_eq!(s.persistence_netmask.as_deref(), Some("255.255.255.0"));
    assert_eq!(int(s.delay_loop.as_ref()), Some(10));
    let rs = &s.real_servers[0];
    assert_eq!(rs.address, "10.1.0.11".parse::<std::net::IpAddr>().unwrap());
    assert_eq!(
        (rs.weight, rs.method, rs.port),
        (3, ForwardMethod::Route, Some(80))
    );
    assert_eq!(rs.check.len(), 2, "one http check per url");
    assert_eq!(string(key(rs, 1, "path")), Some("/index.html"));
    assert_eq!(codes(rs, 1).unwrap(), ["200-204", "301"]);
    assert_eq!(
        string(key(rs, 1, "digest")),
        Some("9b3a0c85a887a256d6939da88aabd8cd")
    );
    assert_eq!(
        (
            int(key(rs, 0, "retry")),
            int(key(rs, 0, "delay_before_retry")),
            int(key(rs, 0, "connect_timeout"))
        ),
        (Some(2), Some(2), Some(3))
    );
    // keepalived's default accepted codes are 200-299.
    let second = &s.real_servers[1];
    assert_eq!(second.port, Some(80), "DR: the service port");
    assert_eq!(codes(second, 0).unwrap(), ["200-299"]);
    assert_eq!(int(key(second, 0, "connect_port")), Some(8081));
    assert_eq!(int(key(second, 0, "warmup")), Some(0));
    // SSL_GET becomes an ssl check; legacy lb_algo/lb_kind honoured.
    let https = service(&c, 1);
    assert_eq!(https.scheduler, "rr");
    assert_eq!(https.real_servers[0].method, ForwardMethod::Route);
    assert_eq!(string(key(&https.real_servers[0], 0, "type")), Some("ssl"));
    assert_eq!(codes(&https.real_servers[0], 0).unwrap(), ["200-299"]);
}

#[test]
fn nat_sorry_structure() {
    let c = load("nat_sorry", Some(&["front", "back"]));
    let s = service(&c, 0);
    assert_eq!(s.scheduler, "lc");
    assert_eq!(
        (int(s.quorum.as_ref()), int(s.hysteresis.as_ref())),
        (Some(2), Some(1))
    );
    assert_eq!(
        (
            boolean(s.alpha.as_ref()),
            boolean(s.omega.as_ref()),
            boolean(s.inhibit_on_failure.as_ref())
        ),
        (Some(true), Some(true), Some(true))
    );
    assert_eq!(
        string(s.quorum_up.as_ref()),
        Some("/usr/local/bin/notify 'db pool' up")
    );
    assert_eq!(
        string(s.quorum_down.as_ref()),
        Some("/usr/local/bin/notify-down")
    );
    let sorry = s.sorry_server.as_ref().unwrap();
    assert_eq!(
        (
            string(sorry.get("address")),
            int(sorry.get("port")),
            string(sorry.get("method"))
        ),
        (Some("10.2.0.99"), Some(3307), Some("nat"))
    );
    assert!(
        s.real_servers
            .iter()
            .all(|r| r.method == ForwardMethod::Masq),
        "keepalived defaults to NAT"
    );
    let r0 = &s.real_servers[0];
    assert_eq!(
        (r0.upper_threshold, r0.lower_threshold),
        (Some(500), Some(400))
    );
    assert_eq!(int(key(r0, 0, "connect_timeout")), Some(3));
    assert_eq!(
        int(key(r0, 0, "retry")),
        Some(3),
        "inherited from the virtual server"
    );
    let r1 = &s.real_servers[1];
    assert_eq!(r1.inhibit_on_failure, Some(false));
    assert_eq!(string(key(r1, 0, "connect_ip")), Some("10.2.1.22"));
    assert_eq!(
        int(key(r1, 0, "connect_timeout")),
        Some(3),
        "2.5 rounded up"
    );
    let r2 = &s.real_servers[2];
    assert_eq!((r2.port, r2.weight), (Some(3306), 0));
    assert!(r2.check.is_empty());
}

#[test]
fn fwmark_structure() {
    let c = load("fwmark_persist", Some(&["eth0"]));
    assert!(
        c.fwmarks.is_empty(),
        "the [[fwmark]] rule is only a commented template"
    );
    assert_eq!(support::marks_without_rules(&c), [7]);
    let s = service(&c, 0);
    assert_eq!((s.fwmark, s.protocol, s.address), (Some(7), None, None));
    assert_eq!(s.scheduler_flags, ["sh-port", "sh-fallback"]);
    assert_eq!(
        s.persistence_timeout,
        Some(360),
        "keepalived's default without a value"
    );
    assert_eq!(s.real_servers[0].method, ForwardMethod::Tunnel);
    assert_eq!(s.real_servers[0].port, None);
    assert_eq!(s.real_servers[1].method, ForwardMethod::Route);
    assert_eq!(string(key(&s.real_servers[0], 1, "type")), Some("ping"));
}

#[test]
fn misc_udp_structure() {
    let c = load("misc_udp", Some(&["eth0"]));
    let s = service(&c, 0);
    assert_eq!((s.protocol, s.one_packet), (Some(Protocol::Udp), true));
    let misc = &s.real_servers[0];
    assert_eq!(string(key(misc, 0, "type")), Some("misc"));
    assert_eq!(
        string(key(misc, 0, "script")),
        Some("/usr/local/bin/check_dns.sh 10.4.0.41 'example org'")
    );
    assert_eq!(
        (
            int(key(misc, 0, "misc_timeout")),
            boolean(key(misc, 0, "misc_dynamic")),
            int(key(misc, 0, "retry"))
        ),
        (Some(4), Some(true), Some(0))
    );
    assert_eq!(
        key(misc, 0, "connect_timeout"),
        None,
        "MISC_CHECK has no connection options"
    );
    let udp = &s.real_servers[1];
    assert_eq!(
        (
            string(key(udp, 0, "type")),
            boolean(key(udp, 0, "require_reply"))
        ),
        (Some("udp"), Some(true))
    );
    assert_eq!(string(key(udp, 0, "payload")), Some("0a 0b 0c"));
    assert_eq!(
        int(key(udp, 0, "delay_loop")),
        Some(5),
        "the service's delay_loop"
    );
    assert_eq!(
        (
            string(key(udp, 1, "type")),
            string(key(udp, 1, "query_type")),
            string(key(udp, 1, "query_name"))
        ),
        (Some("dns"), Some("A"), Some("example.org")),
        "DNS_CHECK as a dns check"
    );
    assert_eq!(
        (
            int(key(udp, 1, "retry")),
            int(key(udp, 1, "delay_before_retry"))
        ),
        (Some(3), Some(5))
    );
    let other = service(&c, 1);
    assert_eq!(
        int(key(&other.real_servers[0], 0, "misc_timeout")),
        Some(60)
    );
}

#[test]
fn includes_structure() {
    let c = load("include_main", Some(&["eth0"]));
    let ports: Vec<_> = c
        .services
        .iter()
        .map(|s| s.get_ref().port.unwrap())
        .collect();
    assert_eq!(
        ports,
        [80, 25, 53],
        "sorted glob order, then the included SCTP service"
    );
    let mail = &service(&c, 1).real_servers[0];
    assert_eq!(
        (
            string(key(mail, 0, "type")),
            string(key(mail, 0, "helo_name"))
        ),
        (Some("smtp"), Some("lb.example.org"))
    );
}

#[test]
fn vrrp_group_structure() {
    let c = load("vrrp_group", None);
    assert_eq!(c.interfaces, ["eth0"]);
    let t = c.timeouts.as_ref().unwrap();
    assert_eq!((t.tcp, t.tcpfin, t.udp), (Some(7200), Some(60), Some(120)));
    // One service group: its members, one health check per real server.
    assert_eq!(c.services.len(), 1);
    assert_eq!(service(&c, 0).group.as_deref(), Some("WEB"));
    let got: Vec<_> = service(&c, 0)
        .members
        .iter()
        .map(|m| (m.address.map(|a| a.to_string()), m.port, m.fwmark))
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
    for s in &c.services {
        let s = s.get_ref();
        assert_eq!(int(s.delay_loop.as_ref()), Some(15));
        assert_eq!(string(key(&s.real_servers[0], 0, "path")), Some("/"));
    }
    // The port written, checked once; DR copies take each member's port.
    assert_eq!(service(&c, 0).real_servers[0].port, Some(80));
}

#[test]
fn awkward_strings_stay_valid_toml() {
    let m = migrate_str(
        "virtual_server 10.0.0.1 80 {\n real_server 10.0.0.2 80 {\n  MISC_CHECK {\n   \
         misc_path \"/bin/x \\\"q\\\" \\\\ \\t end\"\n  }\n }\n}\n",
        &Options {
            interfaces: Some(vec!["e\"th0".into()]),
            source_name: "mem".into(),
            ..Default::default()
        },
    )
    .unwrap();
    let c = Config::parse(&m.toml).unwrap();
    validate(&c);
    assert_eq!(c.interfaces, ["e\"th0"]);
    assert_eq!(
        string(key(&service(&c, 0).real_servers[0], 0, "script")),
        Some("/bin/x \"q\" \\ \t end")
    );
}

/// Found by the keepalived_parse fuzz target: a control character in a
/// keepalived.conf keyword was echoed into the header comment, where TOML
/// refuses it, so rvsd could not read the migrated file.
#[test]
fn control_characters_in_notes_keep_the_file_valid() {
    for text in ["\u{11}\n", "vrrp_script x\u{1}y {\n}\n", "foo\u{7f}\n"] {
        let m = migrate_str(text, &Options::default()).expect("migrates");
        assert!(!m.notes.is_empty(), "{text:?} should leave a note");
        Config::parse(&m.toml).unwrap_or_else(|e| panic!("{text:?}: {e}\n{}", m.toml));
    }
}

/// Every checker keepalived has, each as the RVS check that does the same,
/// accepted by rvs-health as rvsd validates it (`load`).
#[test]
fn checkers_structure() {
    let c = load("checkers", Some(&["eth0"]));
    let https = service(&c, 0);
    let first = &https.real_servers[0];
    assert_eq!(first.check.len(), 2, "one ssl check per url");
    assert_eq!(string(key(first, 0, "type")), Some("ssl"));
    assert_eq!(codes(first, 0).unwrap(), ["200-299", "401", "503-504"]);
    // virtualhost: url, else checker, else real server, else virtual server.
    assert_eq!(
        string(key(first, 0, "virtualhost")),
        Some("url.example.org")
    );
    assert_eq!(string(key(first, 1, "virtualhost")), Some("rs.example.org"));
    let second = &https.real_servers[1];
    assert_eq!(
        string(key(second, 0, "virtualhost")),
        Some("ck.example.org")
    );
    assert_eq!(string(key(second, 0, "sni_name")), Some("sni.example.org"));
    assert_eq!(
        string(key(&https.real_servers[2], 0, "virtualhost")),
        Some("vs.example.org")
    );
    assert_eq!(
        (
            string(key(first, 0, "username")),
            string(key(first, 0, "password")),
            boolean(key(first, 0, "enable_sni"))
        ),
        (Some("monitor"), Some("s3cret pass"), Some(true))
    );
    // FILE_CHECK: the track_file's path; the checker's weight, else the
    // track_file's, else keepalived's 1; BFD_CHECK not carried.
    assert_eq!(second.check.len(), 3);
    assert_eq!(
        (
            string(key(second, 1, "file")),
            int(key(second, 1, "weight")),
            int(key(second, 2, "weight")),
            boolean(key(second, 2, "reverse"))
        ),
        (
            Some("/run/keepalived/maintenance"),
            Some(0),
            Some(3),
            Some(false)
        )
    );
    let third = &https.real_servers[2];
    assert_eq!(
        (
            int(key(third, 1, "weight")),
            boolean(key(third, 1, "reverse"))
        ),
        (Some(2), Some(true))
    );
    // SMTP_CHECK: the server itself, or one check per host block.
    let mail = service(&c, 1);
    assert_eq!(
        string(key(&mail.real_servers[0], 0, "helo_name")),
        Some("director.example.org")
    );
    let hosts = &mail.real_servers[1];
    assert_eq!(hosts.check.len(), 2);
    assert_eq!(
        (
            string(key(hosts, 0, "connect_ip")),
            int(key(hosts, 0, "connect_port")),
            string(key(hosts, 1, "connect_ip")),
            int(key(hosts, 1, "connect_timeout"))
        ),
        (Some("10.2.1.12"), Some(2525), Some("10.2.1.112"), Some(7))
    );
    // DNS_CHECK: keepalived's defaults (SOA ., retry 3, delay_before_retry
    // = delay_loop) written out.
    let dns = service(&c, 2);
    assert_eq!(
        (
            string(key(&dns.real_servers[0], 0, "query_type")),
            string(key(&dns.real_servers[0], 0, "query_name")),
            int(key(&dns.real_servers[0], 0, "retry")),
            int(key(&dns.real_servers[0], 0, "delay_before_retry"))
        ),
        (Some("AAAA"), Some("www.example.org"), Some(3), Some(60))
    );
    // UDP_CHECK: keepalived's free hex (odd digits, x wildcards) as pairs.
    let udp = &dns.real_servers[1];
    assert_eq!(
        (
            string(key(udp, 1, "payload")),
            string(key(udp, 1, "reply_pattern")),
            int(key(udp, 1, "min_reply_length")),
            int(key(udp, 1, "max_reply_length"))
        ),
        (Some("ab 12 0f 03"), Some("0x 8x"), Some(12), Some(512))
    );
}

/// The [[fwmark]] rules of the iptables-save files: what rvsd would
/// classify, in the order that gives each packet the firewall's mark.
#[test]
fn fwmark_rules_from_iptables_structure() {
    let c = load("fwmark_iptables", Some(&["eth0"]));
    let rules: Vec<(u32, Option<Protocol>, &str, Vec<u16>)> = c
        .fwmarks
        .iter()
        .map(|r| (r.mark, r.protocol, r.address.as_str(), r.ports.clone()))
        .collect();
    let tcp = Some(Protocol::Tcp);
    assert_eq!(
        rules,
        [
            (1, tcp, "192.0.2.10", vec![80]),
            (1, tcp, "192.0.2.10", vec![443]),
            // The later MARK wins in iptables: mark 99 (no service's)
            // first, so 192.0.2.16/29:8080 is not balanced, as before.
            (99, tcp, "192.0.2.16/29", vec![8080]),
            (1, tcp, "192.0.2.16/29", vec![80, 443, 8080, 8081, 8082]),
            // 192.0.2.33-38 as prefixes; 192.0.2.34:587 is marked 1 later.
            (2, tcp, "192.0.2.33", vec![25, 587]),
            (1, tcp, "192.0.2.34", vec![587]),
            (2, tcp, "192.0.2.34/31", vec![25, 587]),
            (2, tcp, "192.0.2.36/31", vec![25, 587]),
            (2, tcp, "192.0.2.38", vec![25, 587]),
            (3, Some(Protocol::Udp), "192.0.2.53", vec![53]),
            (6, tcp, "2001:db8:100::10", vec![443]),
            (6, tcp, "2001:db8:100::1:0/116", vec![80]),
        ]
    );
    let v6 = c
        .services
        .iter()
        .map(|s| s.get_ref())
        .find(|s| s.fwmark == Some(6))
        .unwrap();
    assert_eq!(
        v6.family.as_deref(),
        Some("ipv6"),
        "its real server is IPv6"
    );
    // Mark 4's rules all match on what rvsd cannot express.
    assert_eq!(support::marks_without_rules(&c), [4]);
}

#[test]
fn fwmark_rules_from_nft_structure() {
    let c = load("fwmark_nft", Some(&["eth0"]));
    let marks: Vec<(u32, &str)> = c
        .fwmarks
        .iter()
        .map(|r| (r.mark, r.address.as_str()))
        .collect();
    assert_eq!(
        marks,
        [
            (99, "203.0.113.0/26"),
            (11, "203.0.113.10"),
            (11, "203.0.113.16/30"),
            (11, "203.0.113.24/31"),
            (11, "203.0.113.26"),
            (12, "2001:db8:200::10"),
            (12, "2001:db8:200::/120"),
            // The later chain (priority filter + 10) marks 11 last.
            (11, "203.0.113.52/30"),
            (13, "203.0.113.53"),
        ]
    );
    // The group MARKED's members, then the services.
    assert_eq!(service(&c, 0).group.as_deref(), Some("MARKED"));
    let families: Vec<(Option<u32>, Option<&str>)> = c
        .services
        .iter()
        .map(|s| s.get_ref())
        .flat_map(|s| {
            let own = (s.fwmark, s.family.as_deref());
            let members = s.members.iter().map(|m| (m.fwmark, m.family.as_deref()));
            members.chain(s.members.is_empty().then_some(own))
        })
        .collect();
    assert_eq!(
        families,
        [
            (Some(11), None),
            (Some(12), Some("ipv6")),
            (Some(13), None),
            (Some(14), None)
        ]
    );
    assert_eq!(support::marks_without_rules(&c), [14]);
}

/// The limits the migration applies to a rule are rvsd's.
#[test]
fn rule_limits_are_the_engines() {
    assert_eq!(
        rvs_migrate::firewall::MAX_RULE_HOST_BITS,
        rvs_engine::config::MAX_FWMARK_HOST_BITS
    );
    assert_eq!(
        rvs_migrate::firewall::MAX_SERVICE_KEYS,
        u64::from(rvs_engine::limits::MAX_SERVICES)
    );
}

/// A firewall rule's text goes into a comment: control characters in it
/// must not break the TOML.
#[test]
fn control_characters_in_firewall_rules_keep_the_file_valid() {
    let rules = rvs_migrate::firewall::iptables::parse(
        "*mangle\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -d 10.0.0.1/32 -m comment --comment \"a\u{1}b\" -j MARK --set-mark 5\nCOMMIT\n",
        "fw\u{7f}",
    )
    .unwrap();
    let m = migrate_str(
        "virtual_server fwmark 5 {\n real_server 10.0.1.1 {\n }\n}\n",
        &Options {
            interfaces: Some(vec!["eth0".into()]),
            firewall: vec![rules],
            ..Default::default()
        },
    )
    .unwrap();
    let c = Config::parse(&m.toml).unwrap_or_else(|e| panic!("{e}\n{}", m.toml));
    assert_eq!(c.fwmarks.len(), 1, "{}", m.toml);
    assert!(m.toml.contains("\\u{1}"), "{}", m.toml);
}

/// keepalived's own fixes of an address virtual server (check_data.c),
/// found by running keepalived --config-test on the corpus: without a
/// protocol (or with one it does not know) it is UDP, and an address
/// without a port makes the virtual server persistent (360 s), the whole
/// group (every member gets the virtual server's persistence from
/// ipvswrapper.c, a fwmark one too).
#[test]
fn keepalived_makes_a_service_udp_and_a_portless_one_persistent() {
    let migrate = |text: &str| {
        let m = migrate_str(
            text,
            &Options {
                interfaces: Some(vec!["eth0".into()]),
                ..Default::default()
            },
        )
        .unwrap();
        let c = Config::parse(&m.toml).unwrap();
        validate(&c);
        let notes: Vec<String> = m.notes.iter().map(ToString::to_string).collect();
        (c, notes.join("\n"))
    };
    let (c, notes) = migrate("virtual_server 10.0.0.1 80 {\n real_server 10.0.0.2 80 {\n }\n}\n");
    assert_eq!(service(&c, 0).protocol, Some(Protocol::Udp));
    assert!(
        notes.contains("line 1: no protocol: keepalived makes this a UDP service"),
        "{notes}"
    );
    let (c, notes) = migrate(
        "virtual_server 10.0.0.1 80 {\n protocol http\n real_server 10.0.0.2 80 {\n }\n}\n",
    );
    assert_eq!(service(&c, 0).protocol, Some(Protocol::Udp));
    assert!(
        notes.contains("line 2: protocol HTTP: not TCP, UDP or SCTP"),
        "{notes}"
    );
    let (c, notes) =
        migrate("virtual_server 10.0.0.1 {\n protocol TCP\n real_server 10.0.0.2 {\n }\n}\n");
    assert_eq!(
        (service(&c, 0).port, service(&c, 0).persistence_timeout),
        (Some(0), Some(360))
    );
    assert!(notes.contains("persistence_timeout 360 written"), "{notes}");
    let (c, _) = migrate(
        "virtual_server_group G {\n 10.0.0.1 80\n 10.0.0.2\n fwmark 3\n}\n\
         virtual_server group G {\n protocol TCP\n lvs_method DR\n real_server 10.0.0.9 {\n }\n}\n",
    );
    assert_eq!(c.services.len(), 1, "one service group");
    assert_eq!(service(&c, 0).members.len(), 3);
    assert_eq!(service(&c, 0).persistence_timeout, Some(360));
    let (c, _) = migrate(
        "virtual_server 10.0.0.1 80 {\n protocol TCP\n persistence_timeout 50\n real_server 10.0.0.2 80 {\n }\n}\n",
    );
    assert_eq!(service(&c, 0).persistence_timeout, Some(50));
    // ops stays with UDP (the default), not with TCP.
    let (c, _) = migrate("virtual_server 10.0.0.1 53 {\n ops\n real_server 10.0.0.2 53 {\n }\n}\n");
    assert!(service(&c, 0).one_packet);
    let (c, notes) = migrate(
        "virtual_server 10.0.0.1 80 {\n protocol TCP\n ops\n real_server 10.0.0.2 80 {\n }\n}\n",
    );
    assert!(!service(&c, 0).one_packet);
    assert!(
        notes.contains("line 3: ops (one-packet scheduling) applies to UDP only"),
        "{notes}"
    );
}
