//! Every example configuration passes `rvsd --check-config` on a machine
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
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
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
    assert_eq!(checked, 3, "dr, nat and tun examples");
}
