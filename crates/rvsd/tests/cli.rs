//! rvsd refuses bad input with one clear message and a non-zero exit,
//! before touching any interface.

use std::process::Command;

fn rvsd(config: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rvsd.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rvsd"))
        .arg("--config")
        .arg(&path)
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let (code, err) = rvsd("interfaces = [\"lo\"]\n\nmax_conections = 5\n");
    assert_eq!(code, 1);
    assert!(
        err.contains("max_conections") && err.contains("line 3"),
        "{err}"
    );
}

#[test]
fn no_interfaces_says_what_to_write() {
    let (code, err) = rvsd("");
    assert_eq!(code, 1);
    assert!(err.contains("interfaces = [\"eth0\"]"), "{err}");
}

#[test]
fn missing_interface_is_named() {
    let (code, err) = rvsd("interfaces = [\"rvsnosuch0\"]\n");
    assert_eq!(code, 1);
    assert!(err.contains("rvsnosuch0 not found"), "{err}");
}

#[test]
fn invalid_service_is_refused_whole() {
    // `lo` exists everywhere; the real server is unreachable from it.
    let (code, err) = rvsd(
        r#"interfaces = ["lo"]
[[service]]
protocol = "tcp"
address = "10.0.100.1"
port = 80
scheduler = "rr"
  [[service.real_server]]
  address = "10.99.0.1"
"#,
    );
    assert_eq!(code, 1);
    assert!(err.contains("no route to real server 10.99.0.1"), "{err}");
}

#[test]
fn unknown_scheduler_lists_what_exists() {
    // Refused during validation, before any interface is touched.
    let (code, err) = rvsd(
        r#"interfaces = ["lo"]
[[service]]
protocol = "udp"
address = "10.0.100.1"
port = 53
scheduler = "xyz"
"#,
    );
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "scheduler 'xyz' is not available; use one of: rr, wrr, lc, wlc, sed, nq, lblc, lblcr, dh, sh, mh, fo, ovf, twos"
        ),
        "{err}"
    );
}

fn check_config(config: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rvsd.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rvsd"))
        .arg("--check-config")
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_reports_every_error_with_its_line() {
    let (code, _, err) = check_config(
        r#"interfaces = ["lo"]

[[service]]
protocol = "tcp"
address = "10.0.100.1"
port = 80
scheduler = "xyz"

[[service]]
protocol = "tcp"
address = "10.0.100.1"
port = 81
scheduler = "rr"
quorum = 0

[[service]]
fwmark = 3
port = 80

[[service]]
protocol = "tcp"
address = "10.0.100.2"
port = 80
scheduler = "rr"
  [[service.real_server]]
  address = "127.0.0.1"
    [[service.real_server.check]]
    type = "http"
    connect_timeout = "soon"
"#,
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("line 9:") && err.contains("quorum"), "{err}");
    assert!(
        err.contains("line 16:") && err.contains("either protocol, address and port, or fwmark"),
        "{err}"
    );
    assert!(
        err.contains("line 20:")
            && err.contains("check #1 (http)")
            && err.contains("a number of seconds"),
        "{err}"
    );
    assert!(err.contains("nothing was applied"), "{err}");
    // The scheduler error is found once the others are fixed (engine check).
    let (code, _, err) = check_config(
        "interfaces = [\"lo\"]\n\n[[service]]\nprotocol = \"tcp\"\naddress = \"10.0.100.1\"\nport = 80\nscheduler = \"xyz\"\n",
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("line 3:") && err.contains("scheduler 'xyz'"),
        "{err}"
    );
}

#[test]
fn check_config_accepts_a_good_file() {
    let (code, out, err) = check_config(
        r#"interfaces = ["lo"]
[[service]]
protocol = "tcp"
address = "127.0.0.1"
port = 80
scheduler = "wlc"
persistence_timeout = 60
  [[service.real_server]]
  address = "127.0.0.2"
  method = "nat"
    [[service.real_server.check]]
    type = "tcp"
"#,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("OK (1 services, 1 real servers)"), "{out}");
}

/// A fwmark service without a [[fwmark]] rule of its mark is valid but
/// gets no traffic: --check-config says so on stderr and still exits 0.
#[test]
fn check_config_warns_about_a_fwmark_service_without_a_rule() {
    let file = r#"interfaces = ["lo"]
[[fwmark]]
mark = 1
protocol = "tcp"
address = "127.0.0.1"
ports = [80]
[[service]]
fwmark = 1
scheduler = "rr"
[[service]]
fwmark = 7
scheduler = "rr"
"#;
    let (code, out, err) = check_config(file);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("OK (2 services, 0 real servers), 1 warning"),
        "{out}"
    );
    assert!(
        err.contains(
            "warning: line 10: [[service]] fwmark = 7 has no [[fwmark]] rule with mark = 7"
        ) && err.contains("receives NO traffic"),
        "{err}"
    );
    assert!(!err.contains("fwmark = 1 has no"), "{err}");
}

/// A file whose firewall-mark rules, each in use, cover more virtual
/// addresses than the XDP filter's VIP map holds (MAX_VIPS, 65,536):
/// 17 rules of 4,096 addresses.
fn more_vips_than_the_map_holds(interface: &str) -> String {
    let mut s = format!("interfaces = [\"{interface}\"]\n");
    for mark in 1..=17 {
        s += &format!(
            "[[fwmark]]\nmark = {mark}\nprotocol = \"tcp\"\naddress = \"10.{mark}.0.0/20\"\nports = [80]\n\
             [[service]]\nfwmark = {mark}\nscheduler = \"rr\"\n"
        );
    }
    s
}

#[test]
fn check_config_refuses_what_the_xdp_maps_cannot_hold() {
    let (code, out, err) = check_config(&more_vips_than_the_map_holds("lo"));
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("69632 virtual addresses") && err.contains("at most 65536 (MAX_VIPS)"),
        "{err}"
    );
    assert!(err.contains("nothing was applied"), "{err}");
}

/// rvsd on `config` and `socket` (and `more` arguments) in namespace `ns`,
/// run to its end (bounded at 60 s).
fn rvsd_in(
    ns: &str,
    config: &std::path::Path,
    socket: &std::path::Path,
    more: &[&str],
) -> std::process::Output {
    let mut args = vec![
        env!("CARGO_BIN_EXE_rvsd"),
        "--config",
        config.to_str().unwrap(),
        "--socket",
        socket.to_str().unwrap(),
    ];
    args.extend_from_slice(more);
    rvs_netns::output(
        &mut rvs_netns::command(ns, &args),
        std::time::Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn start_refuses_what_the_xdp_maps_cannot_hold() {
    // In a namespace of its own: were the file accepted, rvsd would attach
    // to that namespace's `lo`, not the machine's.
    let mut bed = rvs_netns::Bed::new();
    let ns = bed.add("start");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rvsd.toml");
    std::fs::write(&path, more_vips_than_the_map_holds("lo")).unwrap();
    let socket = dir.path().join("s.sock");
    let out = rvsd_in(&ns, &path, &socket, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("at most 65536 (MAX_VIPS)"), "{err}");
    assert!(!socket.exists(), "rvsd served before refusing");
}

#[test]
fn an_explicit_pin_dir_off_a_bpf_file_system_is_refused_before_attaching() {
    let mut bed = rvs_netns::Bed::new();
    let ns = bed.add("pins");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rvsd.toml");
    std::fs::write(&path, "interfaces = [\"lo\"]\n").unwrap();
    let socket = dir.path().join("s.sock");
    let pins = dir.path().join("pins");
    let out = rvsd_in(&ns, &path, &socket, &["--pin-dir", pins.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("is not on a BPF file system") && err.contains("--pin-dir"),
        "{err}"
    );
    assert!(!pins.exists(), "nothing created off the bpffs");
    let link = rvs_netns::ip(&ns, &["link", "show", "dev", "lo"]).unwrap();
    assert!(!link.contains("xdp"), "nothing attached: {link}");
}
