//! One `lb` per pinned data path: with `lb` running on lb1 in the lab, a
//! second `lb run` on the same pin directory exits non-zero, naming the
//! first one's PID, and the first one keeps serving. `lb cleanup` is refused
//! the same way while it runs; once it was SIGKILLed (its data path still
//! attached and pinned), `lb cleanup` removes the pins, which detaches the
//! program, and says so; run again, it finds nothing to remove.
//!
//! Needs root (namespaces, XDP) and the built `lb` (`LB_BINARY`, set by
//! `cargo xtask test`); without them it fails, never skips.

use lb_tests::e2e::{one_at_a_time, Pair, Setup};
use xtask::lab::{self, Node, Scheduler};
use xtask::paths;

#[test]
fn a_second_lb_on_the_same_pin_dir_is_refused_naming_the_first() {
    let _serial = one_at_a_time();
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

/// Whether an XDP program is attached to lb1's `eth0`.
fn xdp_attached(pair: &Pair) -> bool {
    let link = pair
        .lab()
        .run(
            Node::Lb1,
            "ip",
            &["-d", "link", "show", lab::HOST_INTERFACE],
        )
        .expect("ip link show");
    link.contains("prog/xdp")
}

#[test]
fn cleanup_waits_for_the_lock_then_removes_what_a_killed_lb_left_pinned() {
    let _serial = one_at_a_time();
    let mut pair = Pair::start(
        "lbm-cu-",
        Setup::Single(lab::lb_config_toml(Scheduler::Maglev)),
    );
    let pin_dir = pair.lab().lb_pin_dir(Node::Lb1);
    let dir = pin_dir.to_string_lossy().into_owned();
    let refused = pair
        .try_lb(Node::Lb1, &["cleanup", "--pin-dir", &dir])
        .expect_err("cleanup while lb runs");
    assert!(
        refused.to_string().contains("another lb (PID ")
            && refused.to_string().contains("stop it first"),
        "{refused}"
    );
    assert!(xdp_attached(&pair) && pin_dir.join("flows").exists());

    pair.kill(Node::Lb1);
    assert!(xdp_attached(&pair), "the pinned link holds the program");
    let removed = pair.lb(Node::Lb1, &["cleanup", "--pin-dir", &dir]);
    for pin in ["link_eth0", "flows", "backends"] {
        assert!(
            removed.contains(&format!("removed {}", pin_dir.join(pin).display())),
            "{removed}"
        );
    }
    assert!(!pin_dir.exists(), "{removed}");
    assert!(!xdp_attached(&pair), "the program left with its link");
    let again = pair.lb(Node::Lb1, &["cleanup", "--pin-dir", &dir]);
    assert_eq!(
        again,
        format!("nothing pinned in {dir}: nothing to remove\n")
    );
    pair.down();
}
