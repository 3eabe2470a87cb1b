//! Syntax and value errors name the line and refuse the whole migration; the
//! binary then writes nothing.

use std::process::Command;

use rvs_migrate::{migrate_str, Options};

fn error_of(text: &str) -> String {
    migrate_str(text, &Options::default())
        .map(|m| panic!("expected an error, got:\n{}", m.toml))
        .unwrap_err()
        .to_string()
}

#[test]
fn unclosed_block() {
    let e =
        error_of("virtual_server 10.0.0.1 80 {\n  lvs_sched rr\n  real_server 10.0.0.2 80 {\n}\n");
    assert_eq!(e, "line 1: this '{' is never closed: add the missing '}'");
}

#[test]
fn stray_close() {
    let e = error_of("global_defs {\n}\n}\n");
    assert!(e.starts_with("line 3: '}' without a matching '{'"), "{e}");
}

#[test]
fn unterminated_quote() {
    let e = error_of("virtual_server 10.0.0.1 80 {\n quorum_up \"/bin/up\n}\n");
    assert!(e.starts_with("line 2: unterminated quoted string"), "{e}");
}

#[test]
fn bad_values() {
    let cases = [
        ("virtual_server 10.0.0.300 80 {\n}\n", "line 1: virtual_server: '10.0.0.300' is not an IP address"),
        ("virtual_server 10.0.0.1 80 {\n lvs_method FOO\n}\n", "line 2: lvs_method: 'FOO' is not NAT, DR or TUN"),
        (
            "virtual_server 10.0.0.1 80 {\n real_server 10.0.0.2 80 {\n  weight -1\n }\n}\n",
            "line 3: weight -1 is out of range 0..2147483647",
        ),
        ("virtual_server 10.0.0.1 80 {\n delay_loop soon\n}\n", "line 2: delay_loop: 'soon' is not a time in seconds"),
        ("virtual_server group NOPE {\n}\n", "line 1: virtual_server group NOPE: no virtual_server_group NOPE is defined"),
        ("virtual_server 10.0.0.1 99999 {\n}\n", "line 1: virtual_server: '99999' is not a port (0..65535)"),
        (
            "virtual_server 10.0.0.1 80 {\n real_server 10.0.0.2 80 {\n  HTTP_GET {\n   url {\n    digest xyz\n   }\n  }\n }\n}\n",
            "line 5: digest 'xyz' is not an MD5 digest (32 hex digits)",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(error_of(text), want);
    }
}

#[test]
fn error_in_included_file_names_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("main.conf"), "include sub/*.conf\n").unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(
        dir.path().join("sub/a.conf"),
        "# a\nvirtual_server 10.0.0.1 80 {\n",
    )
    .unwrap();
    let e = rvs_migrate::migrate_file(&dir.path().join("main.conf"), &Options::default())
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "sub/a.conf line 2: this '{' is never closed: add the missing '}'"
    );
}

#[test]
fn include_loop_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.conf"), "include a.conf\n").unwrap();
    let e = rvs_migrate::migrate_file(&dir.path().join("a.conf"), &Options::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("includes nested too deeply"), "{e}");
}

#[test]
fn binary_writes_nothing_on_error_and_the_file_on_success() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.conf");
    std::fs::write(&bad, "virtual_server 10.0.0.1 80 {\n  lvs_sched rr\n").unwrap();
    let out = dir.path().join("rvsd.toml");
    let r = Command::new(env!("CARGO_BIN_EXE_rvs-migrate"))
        .args([
            "keepalived",
            bad.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!r.status.success());
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(
        stderr.contains("bad.conf") || stderr.contains("line 1"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 1: this '{' is never closed"),
        "{stderr}"
    );
    assert!(!out.exists(), "no partial file on error");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temp file left"
    );

    let good = dir.path().join("good.conf");
    std::fs::write(
        &good,
        "vrrp_instance V {\n interface eth9\n}\nvirtual_server 10.0.0.1 80 {\n real_server 10.0.0.2 80 {\n  SSL_GET {\n  }\n }\n}\n",
    )
    .unwrap();
    let r = Command::new(env!("CARGO_BIN_EXE_rvs-migrate"))
        .args([
            "keepalived",
            good.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--interfaces",
            "eth0,eth1",
        ])
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(
        stderr.contains("line 1: vrrp_instance V stays with keepalived"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 6: SSL_GET without a url block: checking path / instead"),
        "{stderr}"
    );
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.contains("interfaces = [\"eth0\", \"eth1\"]\n"),
        "{text}"
    );
    assert!(text.contains("method = \"nat\""), "{text}");
}

/// keepalived's `script_user USER [GROUP]` becomes rvsd's `script_user`
/// and `script_group`; enable_script_security needs nothing (rvsd never
/// runs scripts with its own privileges) and is not reported as ignored.
#[test]
fn script_user_is_carried_over() {
    let conf = "global_defs {\n  script_user checker staff\n  enable_script_security\n}\n\
                virtual_server 10.0.0.1 80 {\n  real_server 10.0.1.1 80 {\n  }\n}\n";
    let m = migrate_str(conf, &Options::default()).unwrap();
    assert!(m.toml.contains("script_user = \"checker\"\n"), "{}", m.toml);
    assert!(m.toml.contains("script_group = \"staff\"\n"), "{}", m.toml);
    let notes = format!("{:?}", m.notes);
    assert!(!notes.contains("global_defs is ignored"), "{notes}");
    let conf = "global_defs {\n  script_user checker\n}\n\
                virtual_server 10.0.0.1 80 {\n  real_server 10.0.1.1 80 {\n  }\n}\n";
    let m = migrate_str(conf, &Options::default()).unwrap();
    assert!(m.toml.contains("script_user = \"checker\"\n"), "{}", m.toml);
    assert!(!m.toml.contains("script_group"), "{}", m.toml);
    assert!(error_of("global_defs {\n  script_user\n}\n").contains("script_user needs USER"));
}

/// Runs `rvs-migrate keepalived` with `args` in `dir`.
fn run_in(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rvs-migrate"))
        .current_dir(dir)
        .arg("keepalived")
        .args(args)
        .output()
        .unwrap()
}

/// A malformed --iptables-save or --nft file is an error naming the file
/// and the line, and nothing is written; good ones become [[fwmark]] rules.
#[test]
fn malformed_firewall_rules_stop_the_migration_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(
        p.join("k.conf"),
        "virtual_server fwmark 1 {\n lvs_method DR\n real_server 10.0.1.1 {\n }\n}\n",
    )
    .unwrap();
    let bad: [(&str, &str, &[u8], &str); 3] = [
        (
            "--iptables-save",
            "rules.v4",
            b"*mangle\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -d 10.0.0.300 -j MARK --set-mark 1\nCOMMIT\n",
            "rules.v4 line 3: '10.0.0.300' is not an address or prefix",
        ),
        (
            "--nft",
            "ruleset.nft",
            b"table ip mangle {\n\tchain pre {\n\t\ttype filter hook prerouting priority mangle;\n",
            "ruleset.nft line 2: this '{' is never closed",
        ),
        (
            "--iptables-save",
            "latin1.v4",
            b"*mangle\n-A PREROUTING -m comment --comment \"caf\xe9\" -j ACCEPT\nCOMMIT\n",
            "latin1.v4 line 2: not UTF-8 text (byte 0xe9 at column 40)",
        ),
    ];
    for (flag, name, text, want) in bad {
        std::fs::write(p.join(name), text).unwrap();
        let r = run_in(p, &["k.conf", "-o", "out.toml", flag, name]);
        let stderr = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success(), "{name}: {stderr}");
        assert!(stderr.contains(want), "{name}: {stderr}");
        assert!(!p.join("out.toml").exists(), "{name}: nothing is written");
    }

    std::fs::write(
        p.join("good.v4"),
        "*mangle\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -d 10.0.0.1/32 -p tcp -m tcp --dport 80 -j MARK --set-xmark 0x1/0xffffffff\n\
         -A PREROUTING -i eth1 -d 10.0.0.2/32 -j MARK --set-xmark 0x1/0xffffffff\nCOMMIT\n",
    )
    .unwrap();
    let r = run_in(
        p,
        &["k.conf", "-o", "out.toml", "--iptables-save", "good.v4"],
    );
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "{stderr}");
    assert!(
        stderr.contains("good.v4 line 4: mark 1 not carried over: -i eth1 (an interface match)"),
        "{stderr}"
    );
    let text = std::fs::read_to_string(p.join("out.toml")).unwrap();
    assert!(
        text.contains(
            "[[fwmark]]\nmark = 1\nprotocol = \"tcp\"\naddress = \"10.0.0.1\"\nports = [80]\n"
        ),
        "{text}"
    );
}

/// A keepalived.conf that is not UTF-8 is refused naming the line.
#[test]
fn keepalived_conf_not_utf8_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.conf");
    std::fs::write(&path, b"# ok\n# Ren\xe9\n").unwrap();
    let e = rvs_migrate::migrate_file(&path, &Options::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("line 2: not UTF-8 text (byte 0xe9 at column 6)"),
        "{e}"
    );
}
