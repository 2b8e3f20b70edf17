//! The `lb` binary's command line, run as a user would: `check-config` and
//! `run` with configurations that must be rejected before anything starts,
//! `reload` with no daemon to ask, and `cleanup` with nothing to remove or
//! a lock held.

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
        stdout.contains("ok: 2 service(s), 4 backend(s), interface eth0, hash "),
        "{stdout}"
    );
    let hash = stdout.trim_end().rsplit(' ').next().unwrap();
    assert!(
        hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
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

/// A loopback port nothing listens on (bound, then released).
fn unused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn reload_without_a_daemon_says_none_answers() {
    let api = format!("127.0.0.1:{}", unused_port());
    let output = lb(&["reload", "--api", &api]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.starts_with(&format!(
            "error: reload failed: cannot reach the lb API at {api} (is `lb run` running"
        )),
        "{stderr}"
    );
}

/// A path under the temporary directory, unique to this run and `test`.
fn scratch(test: &str) -> PathBuf {
    std::env::temp_dir().join(format!("lb-cli-{test}-{}", std::process::id()))
}

#[test]
fn cleanup_with_nothing_pinned_says_so_every_time() {
    let dir = scratch("cleanup-absent");
    for _ in 0..2 {
        let output = lb(&["cleanup", "--pin-dir", dir.to_str().unwrap()]);
        assert!(output.status.success(), "{output:?}");
        assert_eq!(
            String::from_utf8(output.stdout).unwrap(),
            format!("nothing pinned in {}: nothing to remove\n", dir.display())
        );
        assert!(!dir.exists(), "not created");
    }
}

#[test]
fn cleanup_refuses_while_an_lb_holds_the_lock_and_names_its_pid() {
    let dir = scratch("cleanup-held");
    // This test holds it, as a running lb would.
    let lock = lb::pin_lock::acquire(&dir).unwrap();
    let output = lb(&["cleanup", "--pin-dir", dir.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains(&format!(
            "another lb (PID {}) drives the data path pinned in {}; stop it first",
            std::process::id(),
            dir.display()
        )),
        "{stderr}"
    );
    assert!(dir.is_dir(), "left alone");
    drop(lock);
}

#[test]
fn cleanup_finds_the_pin_dir_in_the_configuration() {
    let path = config_file(
        "cleanup_unpinned",
        "[global]\ninterface = \"eth0\"\npin_dir = \"\"\n\n[[service]]\nname = \"web\"\nvip = \"10.0.0.100\"\nport = 80\nprotocol = \"tcp\"\nbackend = [{ name = \"web1\", address = \"10.0.0.1\" }]\n",
    );
    let output = lb(&["cleanup", "--config", path.to_str().unwrap()]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "global.pin_dir is \"\" (pinning off): nothing is pinned, nothing to remove\n"
    );
    let output = lb(&["cleanup"]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "--pin-dir or --config: {output:?}"
    );
}

#[test]
fn status_and_watch_without_a_daemon_fail_with_a_clear_message() {
    let api = format!("127.0.0.1:{}", unused_port());
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
