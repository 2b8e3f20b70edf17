//! CPU accounting for the load balancers under test: a process's user+system
//! time, the machine's softirq time, and the run time of an XDP program from
//! the kernel's BPF statistics (enabled for the run, restored afterwards).

use std::fs;
use std::io;
use std::process::Command;

use nix::unistd::{sysconf, SysconfVar};
use serde::Deserialize;
use thiserror::Error;

use crate::cmd::{self, CommandError};
use crate::lab::{Lab, Node, HOST_INTERFACE};

/// Where the kernel's BPF run-time statistics are switched on and off.
const BPF_STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// A CPU figure could not be read.
#[derive(Debug, Error)]
pub enum CpuError {
    #[error("reading {path}: {error}")]
    Read { path: String, error: io::Error },
    #[error("writing {path}: {error}")]
    Write { path: String, error: io::Error },
    #[error("{path} does not have the expected format: {line:?}")]
    Format { path: String, line: String },
    #[error("the clock tick rate (sysconf CLK_TCK) is unknown")]
    ClockTicks,
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("unexpected JSON from `{command}`: {error}")]
    Json {
        command: String,
        error: serde_json::Error,
    },
    #[error("no XDP program is attached to {interface} in {namespace}")]
    NoXdpProgram {
        namespace: String,
        interface: String,
    },
}

fn read(path: &str) -> Result<String, CpuError> {
    fs::read_to_string(path).map_err(|error| CpuError::Read {
        path: path.to_owned(),
        error,
    })
}

/// Milliseconds per clock tick (`/proc` times are in ticks).
fn ms_per_tick() -> Result<f64, CpuError> {
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(ticks)) if ticks > 0 => Ok(1000.0 / ticks as f64),
        _ => Err(CpuError::ClockTicks),
    }
}

/// User plus system time of process `pid` (all its threads), in ms, from
/// `/proc/PID/stat`.
pub fn process_cpu_ms(pid: u32) -> Result<f64, CpuError> {
    let path = format!("/proc/{pid}/stat");
    let stat = read(&path)?;
    let ticks = parse_process_ticks(&stat).ok_or_else(|| CpuError::Format {
        path,
        line: stat.clone(),
    })?;
    Ok(ticks as f64 * ms_per_tick()?)
}

/// `utime + stime` from a `/proc/PID/stat` line. The command name is in
/// parentheses and may hold spaces, so fields are counted after the last ')'.
fn parse_process_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state(3) ... utime is field 14, stime field 15 (1-based).
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// Softirq time of all CPUs since boot, in ms, from `/proc/stat`. This kernel
/// samples it at each tick (no `CONFIG_IRQ_TIME_ACCOUNTING`), so it is a
/// statistical figure, good over seconds.
pub fn softirq_ms() -> Result<f64, CpuError> {
    let path = "/proc/stat";
    let stat = read(path)?;
    let ticks = parse_softirq_ticks(&stat).ok_or_else(|| CpuError::Format {
        path: path.to_owned(),
        line: stat.lines().next().unwrap_or_default().to_owned(),
    })?;
    Ok(ticks as f64 * ms_per_tick()?)
}

/// The softirq column of the aggregate `cpu` line of `/proc/stat`
/// (`cpu user nice system idle iowait irq softirq ...`).
fn parse_softirq_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    line.split_whitespace().nth(7)?.parse().ok()
}

/// Keeps `kernel.bpf_stats_enabled` at 1 while it lives and puts the previous
/// value back when dropped.
#[derive(Debug)]
pub struct BpfStats {
    previous: String,
}

impl BpfStats {
    /// Enables the kernel's per-program run time and run count statistics.
    pub fn enable() -> Result<Self, CpuError> {
        let previous = read(BPF_STATS_SYSCTL)?.trim().to_owned();
        write_sysctl("1")?;
        Ok(BpfStats { previous })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        if let Err(error) = write_sysctl(&self.previous) {
            eprintln!(
                "bench: could not restore kernel.bpf_stats_enabled to {}: {error}",
                self.previous
            );
        }
    }
}

fn write_sysctl(value: &str) -> Result<(), CpuError> {
    fs::write(BPF_STATS_SYSCTL, value).map_err(|error| CpuError::Write {
        path: BPF_STATS_SYSCTL.to_owned(),
        error,
    })
}

/// The id of the XDP program attached to `node`'s `eth0`.
pub fn xdp_program_id(lab: &Lab, node: Node) -> Result<u32, CpuError> {
    let mut command = lab.command(node, "ip");
    command.args(["-json", "link", "show", "dev", HOST_INTERFACE]);
    let output = cmd::output(&mut command)?;
    let links: Vec<LinkJson> = from_json(&command, &output)?;
    links
        .into_iter()
        .find_map(|link| link.xdp?.prog.map(|prog| prog.id))
        .ok_or_else(|| CpuError::NoXdpProgram {
            namespace: lab.namespace(node),
            interface: HOST_INTERFACE.to_owned(),
        })
}

#[derive(Deserialize)]
struct LinkJson {
    xdp: Option<XdpJson>,
}

#[derive(Deserialize)]
struct XdpJson {
    prog: Option<ProgJson>,
}

#[derive(Deserialize)]
struct ProgJson {
    id: u32,
}

/// What the kernel counted for one BPF program since it was loaded (while
/// statistics were enabled).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct ProgramStats {
    /// Total time spent running the program, ns.
    #[serde(default)]
    pub run_time_ns: u64,
    /// Number of runs (packets, for XDP).
    #[serde(default)]
    pub run_cnt: u64,
}

/// The statistics of program `id`, from `bpftool prog show id ID --json`
/// (bpftool leaves the fields out while they are zero).
pub fn program_stats(id: u32) -> Result<ProgramStats, CpuError> {
    let mut command = Command::new("bpftool");
    command.args(["prog", "show", "id", &id.to_string(), "--json"]);
    let output = cmd::output(&mut command)?;
    from_json(&command, &output)
}

fn from_json<T: for<'de> Deserialize<'de>>(command: &Command, text: &str) -> Result<T, CpuError> {
    serde_json::from_str(text).map_err(|error| CpuError::Json {
        command: cmd::describe(command),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_ticks_skip_a_command_name_with_spaces() {
        let stat = "4242 (hap roxy) S 1 4242 4242 0 -1 4194560 500 0 0 0 150 25 0 0 20 0 2 0 \
                    100 200000 3000 18446744073709551615";
        assert_eq!(parse_process_ticks(stat), Some(175));
        assert_eq!(parse_process_ticks("4242 (x) S 1"), None);
    }

    #[test]
    fn softirq_is_the_seventh_value_of_the_cpu_line() {
        let stat = "cpu  100 0 50 9000 3 0 77 0 0 0\ncpu0 50 0 25 4500 1 0 40 0 0 0\n";
        assert_eq!(parse_softirq_ticks(stat), Some(77));
    }

    #[test]
    fn program_stats_default_to_zero_when_absent() {
        let with: ProgramStats =
            serde_json::from_str(r#"{"id":7,"run_time_ns":1500,"run_cnt":10}"#).unwrap();
        assert_eq!(
            with,
            ProgramStats {
                run_time_ns: 1500,
                run_cnt: 10
            }
        );
        let without: ProgramStats = serde_json::from_str(r#"{"id":7,"name":"lb_xdp"}"#).unwrap();
        assert_eq!(without, ProgramStats::default());
    }

    #[test]
    fn xdp_program_id_is_read_from_ip_json() {
        let links: Vec<LinkJson> = serde_json::from_str(
            r#"[{"ifname":"eth0","xdp":{"mode":1,"prog":{"id":321,"name":"lb_xdp"}}}]"#,
        )
        .unwrap();
        assert_eq!(
            links[0].xdp.as_ref().unwrap().prog.as_ref().unwrap().id,
            321
        );
    }
}
