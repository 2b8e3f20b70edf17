//! Network namespaces, links and sysctls, through iproute2's `ip`.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::process::Command;

use crate::cmd::{self, CommandError};

/// The names of all network namespaces (`ip netns list`).
pub(super) fn list() -> Result<BTreeSet<String>, CommandError> {
    let listing = cmd::output(Command::new("ip").args(["netns", "list"]))?;
    Ok(parse_list(&listing))
}

/// Parses `ip netns list`, whose lines look like `lbl-web1 (id: 3)`.
fn parse_list(listing: &str) -> BTreeSet<String> {
    listing
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Creates namespace `name` and brings its loopback up.
pub(super) fn add(name: &str) -> Result<(), CommandError> {
    cmd::run_quiet(Command::new("ip").args(["netns", "add", name]))?;
    ip(name, &["link", "set", "lo", "up"])
}

/// Deletes namespace `name`.
pub(super) fn delete(name: &str) -> Result<(), CommandError> {
    cmd::run_quiet(Command::new("ip").args(["netns", "delete", name]))
}

/// The PIDs of the processes inside namespace `name` (`ip netns pids`).
pub(super) fn pids(name: &str) -> Result<Vec<i32>, CommandError> {
    let listing = cmd::output(Command::new("ip").args(["netns", "pids", name]))?;
    Ok(listing
        .split_whitespace()
        .filter_map(|pid| pid.parse().ok())
        .collect())
}

/// Runs `ip -n NAMESPACE ARGS...`.
pub(super) fn ip(namespace: &str, args: &[&str]) -> Result<(), CommandError> {
    cmd::run_quiet(Command::new("ip").args(["-n", namespace]).args(args))
}

/// A command that runs `program` inside `namespace` (`ip netns exec`, which
/// `exec`s the program, so the child's PID is the program's).
pub fn exec(namespace: &str, program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", namespace]).arg(program);
    command
}

/// Sets sysctl `key` (dotted, e.g. `net.ipv4.conf.all.arp_ignore`) inside
/// `namespace`. Network sysctls are per namespace: /proc/sys/net shows the
/// namespace of the process that opens it.
pub(super) fn set_sysctl(namespace: &str, key: &str, value: &str) -> Result<(), CommandError> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    cmd::run_quiet(
        exec(namespace, "sh")
            .args(["-c", r#"echo "$2" > "$1""#, "sh"])
            .args([&path, value]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_list_keeps_names_only() {
        let names = parse_list("lbl-web1 (id: 3)\nlbl-switch\n\n");
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            ["lbl-switch", "lbl-web1"]
        );
    }
}
