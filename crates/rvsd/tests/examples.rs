//! Every example configuration passes `rvsd --check-config` on a machine
//! that has the interfaces it names: a namespace made for this test (eth0
//! 10.1.0.1/24, eth1 10.2.0.1/24). No packet is sent.

use std::path::Path;
use std::process::Command;

struct Netns(String);

impl Netns {
    fn new() -> Self {
        let name = format!("rvsex{}", std::process::id());
        let ip = |args: &[&str]| {
            let ok = Command::new("ip")
                .args(args)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(ok, "ip {}", args.join(" "));
        };
        ip(&["netns", "add", &name]);
        let ns = Netns(name.clone());
        ip(&[
            "-n", &name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
        ]);
        ip(&["-n", &name, "addr", "add", "10.1.0.1/24", "dev", "eth0"]);
        ip(&["-n", &name, "addr", "add", "10.2.0.1/24", "dev", "eth1"]);
        ip(&["-n", &name, "link", "set", "eth0", "up"]);
        ip(&["-n", &name, "link", "set", "eth1", "up"]);
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn every_example_passes_check_config() {
    let ns = Netns::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.0,
                env!("CARGO_BIN_EXE_rvsd"),
                "--check-config",
            ])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}{}",
            path.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert_eq!(checked, 3, "dr, nat and tun examples");
}
