//! The `lb` binary's command line, run as a user would: `check-config` and
//! `run` with configurations that must be rejected before anything starts.

use std::path::PathBuf;
use std::process::{Command, Output};

fn lb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lb"))
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .expect("the lb binary runs")
}

/// Writes `text` to a fresh file named after the test and returns its path.
fn config_file(test: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lb-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{test}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/lb.toml");

#[test]
fn check_config_prints_a_one_line_summary() {
    let output = lb(&["check-config", EXAMPLE]);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.contains("ok: 2 service(s), 4 backend(s), interface eth0"),
        "{stdout}"
    );
}

#[test]
fn check_config_rejects_with_file_line_and_field() {
    let path = config_file(
        "check_config_rejects",
        "[global]\ninterface = \"eth0\"\n\n[[service]]\nname = \"web\"\nvip = \"10.0.0.100\"\nport = 0\nprotocol = \"tcp\"\n",
    );
    let output = lb(&["check-config", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains(&format!("{}:7:8: service[web].port", path.display())),
        "{stderr}"
    );
}

#[test]
fn run_with_a_bad_config_exits_before_starting() {
    let path = config_file("run_bad", "[global]\ninterface = \"eth0\"\nmtu = 9000\n");
    let output = lb(&["run", "--config", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains(":3:1: unknown field `mtu`"), "{stderr}");
    assert!(!stderr.contains("ready"), "{stderr}");
    assert!(!stderr.contains("attached"), "{stderr}");
}

#[test]
fn a_missing_file_is_an_error() {
    let output = lb(&["check-config", "/nonexistent/lb.toml"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("/nonexistent/lb.toml: cannot read: No such file"),
        "{stderr}"
    );
}

#[test]
fn run_checks_pin_dir_like_global_pin_dir() {
    for bad in ["relative/pins", "/sys/fs/bpf/lb/../../../tmp"] {
        let output = lb(&["run", "--config", EXAMPLE, "--pin-dir", bad]);
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(
            stderr.contains(&format!(
                "error: --pin-dir: {bad:?} must be an absolute path without '.' or '..'"
            )),
            "{stderr}"
        );
        assert!(!stderr.contains("attached"), "{stderr}");
    }
}

/// A loopback address where nothing listens.
fn unused_api_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

#[test]
fn status_and_watch_without_a_daemon_fail_with_a_clear_message() {
    let api = unused_api_address();
    for args in [vec!["status"], vec!["status", "--watch", "1"]] {
        let output = lb(&[&args[..], &["--api", &api]].concat());
        assert_eq!(output.status.code(), Some(1), "{args:?}: {output:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.contains(&api), "{args:?}: {stderr}");
    }
}

#[test]
fn watch_takes_whole_seconds_from_one_to_an_hour() {
    for bad in ["0", "3601", "1.5"] {
        let output = lb(&["status", "--watch", bad]);
        assert_eq!(output.status.code(), Some(2), "{bad}: {output:?}");
    }
    let output = lb(&["status", "--watch", "2", "--json"]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "--watch and --json exclude each other"
    );
}
