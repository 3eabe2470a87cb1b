//! The alert rules shipped in packaging/prometheus load in Prometheus and
//! fire on the series they are written for (`promtool`, from Debian's
//! prometheus package, which the test command installs).

use std::path::Path;
use std::process::Command;

fn promtool(args: &[&str]) -> (bool, String) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/prometheus");
    let out = Command::new("promtool")
        .args(args)
        .current_dir(&dir)
        .output()
        .expect("promtool runs (apt-get install prometheus)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn the_alert_rules_load() {
    let (ok, text) = promtool(&["check", "rules", "rvs.rules.yml"]);
    assert!(ok, "{text}");
    assert!(text.contains("SUCCESS: 8 rules found"), "{text}");
}

#[test]
fn the_alerts_fire_on_their_series() {
    let (ok, text) = promtool(&["test", "rules", "rvs.rules.test.yml"]);
    assert!(ok, "{text}");
}
