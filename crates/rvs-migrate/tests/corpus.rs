//! The project's own keepalived.conf corpus (tests/corpus/*.conf, written
//! for RVS): between them the files use every LVS keyword of
//! keepalived.conf(5) ([`KEYWORDS`] and [`every_form_is_in_the_corpus`]
//! check it). Each migrates to exactly the .toml and .notes next to it
//! (and, with VRRP, the VRRP-only `.keepalived.conf`), with the firewall
//! rules of the `.iptables`, `.ip6tables` and `.nft` files of the same name
//! when there are any, and what it writes passes rvsd's validation.
//! `UPDATE_GOLDEN=1 cargo test -p rvs-migrate --test corpus` rewrites the
//! goldens (review the diff before committing). keepalived itself reads
//! the corpus without complaint ([`keepalived_accepts_the_corpus`]), so it
//! is keepalived's language and not ours. The property test that mutates
//! these files is tests/corpus_mutations.rs.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rvs_migrate::parse::{parse_file, Node};
use rvs_migrate::{migrate_file, Options};

/// Every LVS-related keyword of keepalived.conf(5): global_defs' LVS and
/// checker-process settings, SSL, track_file, virtual_server_group,
/// virtual_server, real_server, the checkers and their options.
const KEYWORDS: &[&str] = &[
    // Top level.
    "global_defs",
    "SSL",
    "track_file",
    "virtual_server_group",
    "virtual_server",
    // global_defs.
    "lvs_sync_daemon",
    "lvs_timeouts",
    "lvs_flush",
    "lvs_flush_on_stop",
    "lvs_notify_fifo",
    "lvs_notify_fifo_script",
    "lvs_netlink_cmd_rcv_bufs",
    "lvs_netlink_cmd_rcv_bufs_force",
    "lvs_netlink_monitor_rcv_bufs",
    "lvs_netlink_monitor_rcv_bufs_force",
    "checker_priority",
    "checker_no_swap",
    "checker_rt_priority",
    "checker_rlimit_rtime",
    "script_user",
    "enable_script_security",
    // SSL.
    "password",
    "ca",
    "certificate",
    "key",
    // track_file.
    "file",
    "init_file",
    // virtual_server.
    "ip_family",
    "delay_loop",
    "lvs_sched",
    "lb_algo",
    "hashed",
    "flag-1",
    "flag-2",
    "flag-3",
    "sh-port",
    "sh-fallback",
    "mh-port",
    "mh-fallback",
    "ops",
    "lvs_method",
    "lb_kind",
    "persistence_engine",
    "persistence_timeout",
    "persistence_granularity",
    "protocol",
    "ha_suspend",
    "smtp_alert",
    "virtualhost",
    "snmp_name",
    "alpha",
    "omega",
    "quorum",
    "hysteresis",
    "quorum_up",
    "quorum_down",
    "sorry_server",
    "sorry_server_inhibit",
    "sorry_server_lvs_method",
    "inhibit_on_failure",
    "weight",
    "real_server",
    // real_server.
    "notify_up",
    "notify_down",
    "uthreshold",
    "lthreshold",
    // Checkers.
    "TCP_CHECK",
    "HTTP_GET",
    "SSL_GET",
    "SMTP_CHECK",
    "DNS_CHECK",
    "MISC_CHECK",
    "FILE_CHECK",
    "BFD_CHECK",
    "UDP_CHECK",
    "PING_CHECK",
    // Options of every checker (and defaults on the servers).
    "connect_ip",
    "connect_port",
    "bindto",
    "bind_if",
    "bind_port",
    "connect_timeout",
    "fwmark",
    "retry",
    "nb_get_retry",
    "delay_before_retry",
    "warmup",
    "log_all_failures",
    // HTTP_GET / SSL_GET.
    "http_protocol",
    "fast_recovery",
    "url",
    "path",
    "digest",
    "status_code",
    "regex",
    "regex_no_match",
    "regex_options",
    "regex_stack",
    "regex_min_offset",
    "regex_max_offset",
    "tls_compliant",
    "enable_sni",
    "sni_name",
    // SMTP_CHECK.
    "helo_name",
    "host",
    // DNS_CHECK (and BFD_CHECK's name).
    "type",
    "name",
    // MISC_CHECK.
    "misc_path",
    "misc_timeout",
    "misc_dynamic",
    "user",
    // UDP_CHECK.
    "payload",
    "require_reply",
    "min_reply_length",
    "max_reply_length",
    // FILE_CHECK.
    "dynamic",
];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// The corpus' cases: the `.conf` files of tests/corpus (not those it
/// includes from include.d).
fn cases() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".conf")
                .filter(|n| !n.ends_with(".keepalived"))
                .map(str::to_string)
        })
        .collect();
    out.sort();
    assert!(out.len() >= 4, "the corpus is missing: {out:?}");
    out
}

/// Every statement of the corpus (includes followed), depth first.
fn statements() -> Vec<Node> {
    fn walk(nodes: &[Node], out: &mut Vec<Node>) {
        for n in nodes {
            out.push(n.clone());
            walk(n.children(), out);
        }
    }
    let mut out = Vec::new();
    for case in cases() {
        let tree = parse_file(&corpus_dir().join(format!("{case}.conf")), &mut Vec::new())
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        walk(&tree, &mut out);
    }
    out
}

#[test]
fn every_lvs_keyword_is_in_the_corpus() {
    let used: BTreeSet<String> = statements().into_iter().map(|n| n.key).collect();
    let missing: Vec<&&str> = KEYWORDS.iter().filter(|k| !used.contains(**k)).collect();
    assert!(missing.is_empty(), "no corpus file uses {missing:?}");
}

/// The forms of a virtual_server and of a group's entries, and include.
#[test]
fn every_form_is_in_the_corpus() {
    let all = statements();
    let vs_forms: BTreeSet<&str> = all
        .iter()
        .filter(|n| n.key == "virtual_server")
        .map(|n| match n.args.first().map(String::as_str) {
            Some("fwmark") => "fwmark",
            Some("group") => "group",
            _ if n.args.len() == 1 => "address without port",
            _ => "address and port",
        })
        .collect();
    assert_eq!(
        vs_forms,
        BTreeSet::from([
            "address and port",
            "address without port",
            "fwmark",
            "group"
        ])
    );
    let entries: Vec<&Node> = all
        .iter()
        .filter(|n| n.key == "virtual_server_group")
        .flat_map(|n| n.children())
        .collect();
    let has = |f: &dyn Fn(&Node) -> bool| entries.iter().any(|n| f(n));
    assert!(
        has(&|n| n.key.parse::<std::net::IpAddr>().is_ok()),
        "an address"
    );
    assert!(
        has(&|n| n
            .key
            .split_once('-')
            .is_some_and(|(_, b)| !b.contains('.') && !b.contains(':'))),
        "a range ending in the last octet (10.0.0.1-10)"
    );
    assert!(
        has(&|n| n.key.split_once('-').is_some_and(|(_, b)| b.contains('.'))),
        "a range of two addresses"
    );
    assert!(has(&|n| n.key.contains('/')), "a prefix");
    assert!(
        has(&|n| n.key.contains(':') && n.key.contains('-')),
        "an IPv6 range"
    );
    assert!(has(&|n| n.key == "fwmark" && n.args.len() == 1), "fwmark N");
    assert!(
        has(&|n| n.key == "fwmark" && n.args.len() == 2),
        "fwmark N inet6"
    );
    let includes = cases().iter().any(|c| {
        std::fs::read_to_string(corpus_dir().join(format!("{c}.conf")))
            .unwrap()
            .lines()
            .any(|l| l.trim_start().starts_with("include "))
    });
    assert!(includes, "include");
}

/// Each case migrates to its goldens, and rvsd accepts what it writes.
#[test]
fn corpus_migrates_to_its_goldens_and_rvsd_accepts_them() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let dir = corpus_dir();
    for case in cases() {
        let opts = Options {
            interfaces: Some(vec!["eth0".into()]),
            source_name: format!("{case}.conf"),
            firewall: support::firewall_in(&dir, &case),
        };
        let m = migrate_file(&dir.join(format!("{case}.conf")), &opts)
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        support::rvsd_accepts(&m.toml);
        let notes: String = m.notes.iter().map(|n| format!("{n}\n")).collect();
        let files = [
            (dir.join(format!("{case}.toml")), Some(m.toml.clone())),
            (dir.join(format!("{case}.notes")), Some(notes)),
            (dir.join(format!("{case}.keepalived.conf")), m.vrrp.clone()),
        ];
        for (path, got) in files {
            if update {
                match &got {
                    Some(text) => std::fs::write(&path, text).unwrap(),
                    None => {
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
            let want = std::fs::read_to_string(&path).ok();
            assert_eq!(got, want, "{case}: differs from {}", path.display());
        }
    }
}

/// `keepalived --config-test` on every corpus file (and the VRRP-only
/// files written from them) finds nothing but what depends on the machine
/// (users, scripts and interfaces that do not exist here) or on
/// keepalived's version (keywords newer than 2.2), and what the corpus
/// means to show (a deprecated keyword, an SCTP service without a method).
#[test]
fn keepalived_accepts_the_corpus() {
    let keepalived = ["/usr/sbin/keepalived", "/sbin/keepalived"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect(
            "keepalived is not installed: `apt-get install keepalived` (scripts/test-all does)",
        );
    const EXPECTED: &[&str] = &[
        "uid/gid",
        "not found/accessible",
        "doesn't exist",
        "Non-existent interface",
        "Unknown keyword 'tls_compliant'",
        "Unknown keyword 'sni_name'",
        "Unknown keyword 'dynamic'",
        "nb_get_retry is deprecated",
        "sctp:2905: no forwarding method set",
    ];
    let mut files: Vec<PathBuf> = cases()
        .iter()
        .map(|c| corpus_dir().join(format!("{c}.conf")))
        .collect();
    files.extend(
        cases()
            .iter()
            .map(|c| corpus_dir().join(format!("{c}.keepalived.conf")))
            .filter(|p| p.exists()),
    );
    for file in files {
        let out = std::process::Command::new(keepalived)
            .arg("--config-test")
            .arg("--use-file")
            .arg(&file)
            .output()
            .expect("running keepalived --config-test");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let unexpected: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.trim().is_empty() && !EXPECTED.iter().any(|e| l.contains(e)))
            .collect();
        assert!(
            unexpected.is_empty(),
            "keepalived --config-test on {}:\n{}",
            file.display(),
            unexpected.join("\n")
        );
    }
}
