//! The example Prometheus alert rules (`examples/prometheus/lb-alerts.yml`)
//! are valid (`promtool check rules`) and fire when they should
//! (`promtool test rules` on `lb-alerts.test.yml` beside them). Needs
//! `promtool` (Debian's `prometheus`, installed by `cargo xtask bootstrap`):
//! without it the test fails, never skips.

use std::path::PathBuf;
use std::process::Command;

fn promtool(args: &[&str]) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/prometheus");
    let output = Command::new("promtool")
        .args(args)
        .current_dir(&dir)
        .output()
        .expect("running promtool (Debian package prometheus; cargo xtask bootstrap installs it)");
    assert!(
        output.status.success(),
        "promtool {}: {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_alert_rules_are_valid() {
    promtool(&["check", "rules", "lb-alerts.yml"]);
}

#[test]
fn each_alert_fires_when_it_should_and_only_then() {
    promtool(&["test", "rules", "lb-alerts.test.yml"]);
}
