//! Every example configuration, and the one the Debian package installs as
//! /etc/rvs/rvsd.toml, passes `rvsd --check-config` on a machine
//! that has the interfaces it names: a namespace made for this test (eth0
//! 10.1.0.1/24, eth1 10.2.0.1/24). No packet is sent.

use std::path::Path;

use rvs_netns::{End, Veth};

#[test]
fn every_example_passes_check_config() {
    let mut bed = rvs_netns::Bed::new();
    let ns = bed.add("ex");
    Veth::new(
        End::new(&ns, "eth0").addr("10.1.0.1/24"),
        End::new(&ns, "eth1").addr("10.2.0.1/24"),
    )
    .up()
    .create()
    .unwrap_or_else(|e| panic!("{e}"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files: Vec<_> = std::fs::read_dir(root.join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.push(root.join("packaging/debian/rvsd.toml"));
    let mut checked = 0;
    for path in files {
        let out = rvs_netns::command(&ns, &[env!("CARGO_BIN_EXE_rvsd"), "--check-config"])
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
    assert_eq!(
        checked, 6,
        "dr, nat, tun, fullnat and group examples and the packaged file"
    );
}
