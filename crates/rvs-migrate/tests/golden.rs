//! Golden-file tests: each keepalived.conf under tests/data migrates to
//! exactly the .toml and .notes next to it (and, with VRRP, the
//! VRRP-only `.keepalived.conf`), with the firewall rules of the
//! `.iptables`, `.ip6tables` and `.nft` files of the same name when there
//! are any. `UPDATE_GOLDEN=1 cargo test` rewrites them (review the diff
//! before committing).

mod support;

use std::path::Path;

use rvs_migrate::{migrate_file, Options};
use support::{data, firewall};

fn golden(case: &str, interfaces: Option<&[&str]>) {
    let opts = Options {
        interfaces: interfaces.map(|i| i.iter().map(|s| s.to_string()).collect()),
        source_name: format!("{case}.conf"),
        firewall: firewall(case),
    };
    let m = migrate_file(&data(&format!("{case}.conf")), &opts)
        .unwrap_or_else(|e| panic!("{case}: {e}"));
    let notes: String = m.notes.iter().map(|n| format!("{n}\n")).collect();
    let toml_path = data(&format!("{case}.toml"));
    let notes_path = data(&format!("{case}.notes"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&toml_path, &m.toml).unwrap();
        std::fs::write(&notes_path, &notes).unwrap();
    }
    let vrrp_path = data(&format!("{case}.keepalived.conf"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        match &m.vrrp {
            Some(v) => std::fs::write(&vrrp_path, v).unwrap(),
            None => {
                let _ = std::fs::remove_file(&vrrp_path);
            }
        }
    }
    assert_eq!(
        m.vrrp,
        std::fs::read_to_string(&vrrp_path).ok(),
        "{case}: the VRRP-only keepalived.conf differs from {}",
        vrrp_path.display()
    );
    let want_toml = std::fs::read_to_string(&toml_path).unwrap();
    let want_notes = std::fs::read_to_string(&notes_path).unwrap();
    assert_eq!(
        m.toml,
        want_toml,
        "{case}: TOML differs from {}",
        toml_path.display()
    );
    assert_eq!(
        notes,
        want_notes,
        "{case}: notes differ from {}",
        notes_path.display()
    );
}

#[test]
fn tunnel_types_are_carried_over() {
    golden("tun_types", Some(&["eth0"]));
}

/// keepalived's refusals of tunnel options (check_parser.c), refused here
/// whole, naming the line.
#[test]
fn impossible_tunnel_options_are_refused() {
    let opts = Options {
        interfaces: Some(vec!["eth0".into()]),
        source_name: "t.conf".into(),
        firewall: Default::default(),
    };
    for (options, why) in [
        ("TUN type gue", "GUE tunnels need a port"),
        ("TUN type gre port 6080", "a tunnel port is for GUE"),
        ("TUN type gre remcsum", "remote checksum offload"),
        ("TUN type ipip csum", "IPIP tunnels have no checksum"),
        ("TUN type vxlan", "unknown tunnel type 'vxlan'"),
        ("TUN type gue port 0", "a GUE port is 1..65535"),
        ("TUN bogus", "'bogus' is not a tunnel option"),
        ("NAT type gue port 6080", "need TUN"),
    ] {
        let conf = format!(
            "virtual_server 10.20.0.1 80 {{\n  protocol TCP\n  lvs_method {options}\n  real_server 10.20.1.11 80 {{\n  }}\n}}\n"
        );
        let e = rvs_migrate::migrate_str(&conf, &opts)
            .err()
            .unwrap_or_else(|| panic!("`lvs_method {options}` must be refused"))
            .to_string();
        assert!(e.contains(why) && e.contains("line 3"), "{options}: {e}");
    }
}

#[test]
fn dr_web_farm_with_http_get() {
    golden("dr_web", Some(&["eth0"]));
}

#[test]
fn nat_tcp_check_sorry_server_quorum() {
    golden("nat_sorry", Some(&["front", "back"]));
}

#[test]
fn fwmark_service_with_persistence() {
    golden("fwmark_persist", Some(&["eth0"]));
}

#[test]
fn misc_check_dynamic_and_udp_checks() {
    golden("misc_udp", Some(&["eth0"]));
}

#[test]
fn includes_with_wildcards_and_braces() {
    golden("include_main", Some(&["eth0"]));
}

#[test]
fn vrrp_and_global_defs_ignored_group_expanded() {
    // No --interfaces: taken from the vrrp_instance.
    golden("vrrp_group", None);
}

#[test]
fn nat_pair_keeps_its_vrrp_sync_group_with_rvsadm_hooks() {
    golden("vrrp_nat_pair", Some(&["eth0", "eth1"]));
}

/// keepalived itself accepts the VRRP-only file (`keepalived --config-test`),
/// and it holds no virtual_server: keepalived must not program IPVS beside rvsd.
#[test]
fn keepalived_accepts_the_vrrp_only_file() {
    let keepalived = ["/usr/sbin/keepalived", "/sbin/keepalived"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect(
            "keepalived is not installed: `apt-get install keepalived` (scripts/test-all does)",
        );
    for case in ["vrrp_group", "vrrp_nat_pair"] {
        let opts = Options {
            interfaces: None,
            source_name: format!("{case}.conf"),
            ..Default::default()
        };
        let m = migrate_file(&data(&format!("{case}.conf")), &opts).unwrap();
        let vrrp = m.vrrp.expect("a VRRP-only file");
        assert!(!vrrp.contains("virtual_server"), "{case}:\n{vrrp}");
        assert!(!vrrp.contains("lvs_"), "{case}:\n{vrrp}");
        let file = std::env::temp_dir().join(format!(
            "rvs-migrate-{}-{case}.keepalived.conf",
            std::process::id()
        ));
        std::fs::write(&file, &vrrp).unwrap();
        let out = std::process::Command::new(keepalived)
            .arg("--config-test")
            .arg("--use-file")
            .arg(&file)
            .output()
            .expect("running keepalived --config-test");
        let _ = std::fs::remove_file(&file);
        // This machine need not have the director's interfaces: refusing
        // the file for that alone is not a fault of the file.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let only_missing_interfaces = stderr.lines().all(|l| {
            l.trim().is_empty()
                || l.contains("doesn't exist")
                || l.contains("Non-existent interface")
        });
        assert!(
            out.status.success() || only_missing_interfaces,
            "{case}: keepalived --config-test refused:\n{}\n{vrrp}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn every_checker_with_its_options() {
    golden("checkers", Some(&["eth0"]));
}

#[test]
fn keepalived_validation_rules() {
    golden("semantics", Some(&["eth0"]));
}

#[test]
fn fwmark_rules_from_iptables_save() {
    golden("fwmark_iptables", Some(&["eth0"]));
}

#[test]
fn fwmark_rules_from_nft_list_ruleset() {
    golden("fwmark_nft", Some(&["eth0"]));
}
