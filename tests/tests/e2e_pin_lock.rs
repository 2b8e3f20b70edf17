//! One `lb` per pinned data path: with `lb` running on lb1 in the lab, a
//! second `lb run` on the same pin directory exits non-zero, naming the
//! first one's PID, and the first one keeps serving.
//!
//! Needs root (namespaces, XDP) and the built `lb` (`LB_BINARY`, set by
//! `cargo xtask test`); without them it fails, never skips.

use lb_tests::e2e::{Pair, Setup};
use xtask::lab::{self, Node, Scheduler};
use xtask::paths;

#[test]
fn a_second_lb_on_the_same_pin_dir_is_refused_naming_the_first() {
    let pair = Pair::start(
        "lbm-lk-",
        Setup::Single(lab::lb_config_toml(Scheduler::Maglev)),
    );
    let lab = pair.lab();
    let output = lab
        .command(Node::Lb1, paths::lb_binary())
        .arg("run")
        .arg("--config")
        .arg(lab.run_dir().join("lb-lb1.toml"))
        .arg("--pin-dir")
        .arg(lab.lb_pin_dir(Node::Lb1))
        .output()
        .expect("running a second lb");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the second lb ran: {stderr}");
    let named: u32 = stderr
        .split("another lb (PID ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no PID named: {stderr}"));
    // The PID named is the lb running in lb1's namespace.
    let pids = std::process::Command::new("ip")
        .args(["netns", "pids", &lab.namespace(Node::Lb1)])
        .output()
        .expect("ip netns pids");
    let pids = String::from_utf8_lossy(&pids.stdout);
    assert!(
        pids.split_whitespace().any(|pid| pid == named.to_string()),
        "PID {named} is not in lb1: {pids}"
    );
    let comm = std::fs::read_to_string(format!("/proc/{named}/comm")).unwrap_or_default();
    assert_eq!(comm.trim(), "lb", "PID {named} is not lb");
    let reply = lab.http_get(&lab::vip_url()).expect("a request to the VIP");
    assert!(reply.is_ok(), "the first lb stopped serving: {reply:?}");
    pair.down();
}
