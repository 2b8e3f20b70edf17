//! wrk in the lab's client: the Lua script that spreads its threads over the
//! target addresses and prints a JSON summary, the command line, and the
//! parsing of that summary.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::cmd::{self, CommandError};
use crate::lab::{Lab, Node, HTTP_PORT};

/// Starts the line holding the JSON summary in wrk's output.
const SUMMARY_MARKER: &str = "@@wrk-json ";

/// Extra time `timeout` allows wrk beyond its duration before killing it.
const TIMEOUT_SLACK: Duration = Duration::from_secs(20);

/// A wrk run failed or printed no summary.
#[derive(Debug, Error)]
pub enum WrkError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("wrk printed no summary line ({SUMMARY_MARKER:?}); its output:\n{0}")]
    NoSummary(String),
    #[error("wrk's summary line is not the expected JSON ({error}): {line}")]
    BadSummary {
        line: String,
        error: serde_json::Error,
    },
}

/// One wrk run.
#[derive(Debug, Clone)]
pub struct WrkPlan {
    /// Threads, which take the targets in turn (thread i connects to
    /// `targets[i % len]`).
    pub threads: u32,
    /// Open connections, spread evenly over the threads.
    pub connections: u32,
    pub duration: Duration,
    /// Send `Connection: close`: a new TCP connection per request.
    pub close: bool,
}

/// What wrk reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WrkSummary {
    /// Completed requests.
    pub requests: u64,
    /// Actual run time, µs.
    pub duration_us: u64,
    pub bytes: u64,
    pub errors: WrkErrors,
    pub latency_us: Latency,
}

impl WrkSummary {
    /// Requests per second.
    pub fn requests_per_sec(&self) -> f64 {
        if self.duration_us == 0 {
            0.0
        } else {
            self.requests as f64 * 1e6 / self.duration_us as f64
        }
    }
}

/// wrk's error counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrkErrors {
    pub connect: u64,
    pub read: u64,
    pub write: u64,
    /// Responses with a status of 400 or more (nginx serving a static file
    /// answers 200 or an error; it never redirects here).
    pub status: u64,
    pub timeout: u64,
}

impl WrkErrors {
    /// All errors: socket errors, timeouts and error statuses.
    pub fn total(&self) -> u64 {
        self.connect + self.read + self.write + self.status + self.timeout
    }
}

/// Request latency over the whole run (all threads), µs. wrk starts the
/// clock when the request is written, so a new connection's handshake is
/// not included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
    pub mean: f64,
}

/// The Lua script for `targets`: thread i connects to `targets[i % len]`;
/// `done()` prints the summary as one JSON line.
pub fn script(targets: &[Ipv4Addr]) -> String {
    let mut list = String::new();
    for target in targets {
        let _ = write!(list, "\"{target}\", ");
    }
    format!(
        r#"-- Written by `cargo xtask bench`; removed with the lab.
local targets = {{ {list}}}
local threads = 0

function setup(thread)
  threads = threads + 1
  local target = targets[(threads - 1) % #targets + 1]
  thread.addr = wrk.lookup(target, "{HTTP_PORT}")[1]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{SUMMARY_MARKER}{{"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}},' ..
    '"latency_us":{{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"#
    )
}

/// The command running `plan` from the client with `script` (written by
/// [`script`] for the same targets), bounded by `timeout`.
pub fn command(lab: &Lab, plan: &WrkPlan, script: &Path, first_target: Ipv4Addr) -> Command {
    let limit = plan.duration + TIMEOUT_SLACK;
    let mut command = lab.command(Node::Client, "timeout");
    command
        .args(["--kill-after=5", &format!("{}s", limit.as_secs())])
        .arg("wrk")
        .arg(format!("--threads={}", plan.threads))
        .arg(format!("--connections={}", plan.connections))
        .arg(format!("--duration={}s", plan.duration.as_secs()))
        .arg("--script")
        .arg(script);
    if plan.close {
        command.args(["--header", "Connection: close"]);
    }
    command.arg(format!("http://{first_target}:{HTTP_PORT}/"));
    command
}

/// Runs `plan` and returns wrk's summary.
pub fn run(
    lab: &Lab,
    plan: &WrkPlan,
    script: &Path,
    first_target: Ipv4Addr,
) -> Result<WrkSummary, WrkError> {
    let stdout = cmd::output(&mut command(lab, plan, script, first_target))?;
    parse(&stdout)
}

/// Finds and parses the summary line in wrk's output.
pub fn parse(output: &str) -> Result<WrkSummary, WrkError> {
    let line = output
        .lines()
        .find_map(|line| line.strip_prefix(SUMMARY_MARKER))
        .ok_or_else(|| WrkError::NoSummary(output.to_owned()))?;
    serde_json::from_str(line).map_err(|error| WrkError::BadSummary {
        line: line.to_owned(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "Running 2s test @ http://10.0.0.1:80/\n  3 threads and 24 connections\n\
        @@wrk-json {\"requests\":20000,\"duration_us\":2000000,\"bytes\":4800000,\
        \"errors\":{\"connect\":0,\"read\":1,\"write\":0,\"status\":2,\"timeout\":0},\
        \"latency_us\":{\"p50\":900,\"p90\":1500,\"p99\":3200,\"max\":9000,\"mean\":1010.5}}\n\
        Requests/sec:  10000.00\n";

    #[test]
    fn parses_the_summary_line() {
        let summary = parse(OUTPUT).unwrap();
        assert_eq!(summary.requests, 20_000);
        assert_eq!(summary.requests_per_sec(), 10_000.0);
        assert_eq!(summary.errors.total(), 3);
        assert_eq!(summary.latency_us.p99, 3200);
    }

    #[test]
    fn missing_or_broken_summary_is_an_error() {
        assert!(matches!(
            parse("Requests/sec: 1\n"),
            Err(WrkError::NoSummary(_))
        ));
        assert!(matches!(
            parse("@@wrk-json {\"requests\":1}\n"),
            Err(WrkError::BadSummary { .. })
        ));
    }

    #[test]
    fn script_lists_every_target_and_prints_the_marker() {
        let script = script(&[Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)]);
        assert!(script.contains(r#"local targets = { "10.0.0.1", "10.0.0.2", }"#));
        assert!(script.contains(SUMMARY_MARKER));
        assert!(script.contains("latency:percentile(99)"));
    }
}
