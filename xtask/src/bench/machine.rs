//! The machine a benchmark ran on: kernel, CPU, memory, the versions of the
//! programs compared, and the commit measured.

use std::fs;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::{cmd, paths};

/// What the results came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub kernel: String,
    pub cpu_model: String,
    pub cores: usize,
    pub memory_gib: f64,
    /// The CPU reports the `hypervisor` flag: a virtual machine.
    pub virtual_machine: bool,
    pub nginx: String,
    pub haproxy: String,
    pub wrk: String,
    pub nft: String,
    pub bpftool: String,
    /// `git describe --always --dirty` of the workspace.
    pub commit: String,
}

impl Machine {
    /// Describes this machine; what cannot be read is reported as "unknown".
    pub fn describe() -> Self {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Machine {
            kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|release| release.trim().to_owned())
                .unwrap_or_else(|_| unknown()),
            cpu_model: cpu_model(&cpuinfo).unwrap_or_else(unknown),
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            memory_gib: memory_kib(&meminfo).map_or(0.0, |kib| kib as f64 / (1024.0 * 1024.0)),
            virtual_machine: cpuinfo
                .lines()
                .filter(|line| line.starts_with("flags"))
                .any(|line| line.split_whitespace().any(|flag| flag == "hypervisor")),
            nginx: version("nginx", &["-v"], "nginx version: nginx/"),
            haproxy: version("haproxy", &["-v"], "HAProxy version "),
            wrk: version("wrk", &["-v"], "wrk "),
            nft: version("nft", &["--version"], "nftables "),
            bpftool: version("bpftool", &["version"], "bpftool "),
            commit: version("git", &["describe", "--always", "--dirty"], ""),
        }
    }
}

fn unknown() -> String {
    "unknown".to_owned()
}

fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name")?.split_once(':'))
        .map(|(_, model)| model.trim().to_owned())
}

fn memory_kib(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// The version `program ARGS` prints: the first word after `prefix` on the
/// first line (stdout, else stderr: some print their version on stderr or
/// exit non-zero).
fn version(program: &str, args: &[&str], prefix: &str) -> String {
    let mut command = Command::new(program);
    command.args(args).current_dir(paths::workspace_root());
    let Ok(output) = cmd::output_unchecked(&mut command) else {
        return unknown();
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    stdout
        .lines()
        .chain(stderr.lines())
        .map(str::trim)
        .find(|line| !line.is_empty())
        .and_then(|line| {
            line.strip_prefix(prefix)
                .unwrap_or(line)
                .split_whitespace()
                .next()
        })
        .map_or_else(unknown, str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_model_and_memory() {
        let cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu hypervisor\n";
        assert_eq!(cpu_model(cpuinfo).as_deref(), Some("AMD EPYC"));
        assert_eq!(
            memory_kib("MemTotal:       24576000 kB\n"),
            Some(24_576_000)
        );
    }

    #[test]
    fn version_is_the_word_after_the_prefix_and_survives_missing_programs() {
        assert_eq!(
            version("echo", &["wrk 4.1.0 [epoll] Copyright (C) 2012"], "wrk "),
            "4.1.0"
        );
        assert_eq!(version("no-such-program-xtask", &[], ""), "unknown");
    }
}
