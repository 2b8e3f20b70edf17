//! The `exec` check (keepalived's `MISC_CHECK`): the check's command, run
//! with `sh -c` in a process group of its own, with the backend in its
//! environment; exit status 0 passes, any other status or a signal fails,
//! and a command still running at the check's timeout is killed (its whole
//! process group) and fails.
//!
//! Its stdin and stdout are `/dev/null`; from stderr the first
//! [`MAX_OUTPUT_KEPT`] bytes are kept and the rest is read and dropped, so
//! a chatty command never blocks on a full pipe nor costs memory. The
//! first non-empty line of what was kept, shortened to [`MAX_REASON_CHARS`],
//! is the failure's reason. The command runs in `lb`'s own network
//! namespace, with `lb`'s privileges after start (at most `CAP_NET_ADMIN`,
//! with `no_new_privs`).

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use rustix::process::{kill_process_group, Pid, Signal};
use tokio::io::AsyncReadExt;
use tokio::process::{ChildStderr, Command};
use tokio::time::{self, Instant};

use super::result::{CheckFailure, CheckPass, CheckResult};
use super::spec::{CheckTarget, ExecProbe};

/// Bytes of the command's stderr kept for the failure's reason.
pub const MAX_OUTPUT_KEPT: usize = 4096;
/// Characters of the first line shown as the reason.
pub const MAX_REASON_CHARS: usize = 100;
/// How long the rest of stderr is read once the command has exited.
const OUTPUT_GRACE: Duration = Duration::from_millis(50);

/// Runs `exec`'s command for `target`; the result arrives within `timeout`
/// (plus the moment it takes to kill and reap a command that overran it).
pub(super) async fn check(
    exec: &ExecProbe,
    target: &CheckTarget,
    timeout: Duration,
) -> CheckResult {
    let deadline = Instant::now() + timeout;
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(exec.command())
        .env("LB_BACKEND_ADDRESS", target.address().to_string())
        .env("LB_BACKEND_PORT", target.port().to_string())
        .env("LB_SERVICE", exec.service())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => return CheckResult::Fail(CheckFailure::CommandSpawn(error.to_string())),
    };
    // The group's id is the child's PID (`process_group(0)`).
    let group = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .and_then(Pid::from_raw);
    let mut stderr = child.stderr.take();
    let mut output = Output::default();
    let waited = time::timeout_at(deadline, async {
        loop {
            tokio::select! {
                status = child.wait() => break status,
                () = output.read_some(&mut stderr), if stderr.is_some() => {}
            }
        }
    })
    .await;
    let result = match waited {
        Err(_) => CheckResult::Fail(CheckFailure::CommandTimeout(timeout)),
        Ok(Err(error)) => CheckResult::Fail(CheckFailure::CommandSpawn(error.to_string())),
        Ok(Ok(status)) => {
            let grace = deadline.min(Instant::now() + OUTPUT_GRACE);
            let _ = time::timeout_at(grace, async {
                while stderr.is_some() {
                    output.read_some(&mut stderr).await;
                }
            })
            .await;
            judge(status, output.first_line())
        }
    };
    // Whatever the command left running (a background job, or all of it on
    // a timeout) goes with its group. The group outlives its leader only
    // while a member is left, so the id names no other process.
    if let Some(group) = group {
        let _ = kill_process_group(group, Signal::KILL);
    }
    // Reaps the leader if it overran (kill_on_drop would too, later).
    let _ = child.kill().await;
    result
}

/// The result of a command that exited with `status`.
fn judge(status: ExitStatus, output: Option<String>) -> CheckResult {
    match (status.code(), status.signal()) {
        (Some(0), _) => CheckResult::Pass(CheckPass::CommandSucceeded),
        (Some(code), _) => CheckResult::Fail(CheckFailure::CommandExit { code, output }),
        (None, Some(signal)) => CheckResult::Fail(CheckFailure::CommandSignal { signal, output }),
        // Neither an exit code nor a signal: not on Linux.
        (None, None) => CheckResult::Fail(CheckFailure::CommandSpawn(status.to_string())),
    }
}

/// What was kept of the command's stderr.
#[derive(Debug, Default)]
struct Output {
    kept: Vec<u8>,
}

impl Output {
    /// Reads what `stderr` has next, keeping it within [`MAX_OUTPUT_KEPT`];
    /// at its end (or an error) sets it to `None`. Cancel safe.
    async fn read_some(&mut self, stderr: &mut Option<ChildStderr>) {
        let Some(pipe) = stderr else {
            return;
        };
        let mut buffer = [0u8; 1024];
        match pipe.read(&mut buffer).await {
            Ok(0) | Err(_) => *stderr = None,
            Ok(read) => {
                let room = MAX_OUTPUT_KEPT - self.kept.len();
                self.kept.extend_from_slice(&buffer[..read.min(room)]);
            }
        }
    }

    /// The first non-empty line, control characters replaced, at most
    /// [`MAX_REASON_CHARS`] characters (then `…`).
    fn first_line(&self) -> Option<String> {
        let text = String::from_utf8_lossy(&self.kept);
        let line = text.lines().map(str::trim).find(|line| !line.is_empty())?;
        let mut shown: String = line
            .chars()
            .take(MAX_REASON_CHARS)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if line.chars().count() > MAX_REASON_CHARS {
            shown.push('…');
        }
        Some(shown)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use super::super::spec::{CheckSpec, HealthParams, ProbeKind, ProbeSpec};
    use super::*;

    const TIMEOUT: Duration = Duration::from_millis(500);

    fn target(command: &str) -> (ExecProbe, CheckTarget) {
        let exec = ExecProbe::new(command, "web").unwrap();
        let spec = CheckSpec {
            probe: ProbeSpec::new(ProbeKind::Exec(exec.clone()), TIMEOUT).unwrap(),
            params: HealthParams::default(),
        };
        let target = CheckTarget::new(Ipv4Addr::new(10, 0, 0, 7), 8080, Arc::new(spec)).unwrap();
        (exec, target)
    }

    async fn run(command: &str) -> CheckResult {
        let (exec, target) = target(command);
        check(&exec, &target, TIMEOUT).await
    }

    /// Whether a process with `pid` still exists (a zombie counts as gone).
    fn alive(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| !stat.contains(") Z "))
    }

    #[tokio::test]
    async fn exit_status_zero_passes_and_any_other_fails_with_its_first_line() {
        assert_eq!(
            run("exit 0").await,
            CheckResult::Pass(CheckPass::CommandSucceeded)
        );
        let result = run(
            "echo 'noise on stdout'; echo; echo ' replica lagging ' >&2; echo more >&2; exit 3",
        )
        .await;
        assert_eq!(
            result,
            CheckResult::Fail(CheckFailure::CommandExit {
                code: 3,
                output: Some("replica lagging".to_owned())
            })
        );
        assert_eq!(
            result.to_string(),
            "command exited with status 3: replica lagging"
        );
        assert_eq!(
            run("exit 1").await.to_string(),
            "command exited with status 1"
        );
        // A command that is not there: sh says so and exits 127.
        let result = run("no-such-command-lb-test").await;
        assert!(
            result
                .to_string()
                .starts_with("command exited with status 127: "),
            "{result}"
        );
    }

    #[tokio::test]
    async fn the_backend_and_service_are_in_the_environment() {
        let result = run(
            r#"[ "$LB_BACKEND_ADDRESS:$LB_BACKEND_PORT/$LB_SERVICE" = "10.0.0.7:8080/web" ] || { echo "got $LB_BACKEND_ADDRESS:$LB_BACKEND_PORT/$LB_SERVICE" >&2; exit 1; }"#,
        )
        .await;
        assert_eq!(
            result,
            CheckResult::Pass(CheckPass::CommandSucceeded),
            "{result}"
        );
    }

    #[tokio::test]
    async fn a_command_past_its_timeout_is_killed_with_its_children() {
        let pid_file = std::env::temp_dir().join(format!("lb-exec-check-{}", std::process::id()));
        let command = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
        let started = Instant::now();
        let result = run(&command).await;
        let elapsed = started.elapsed();
        assert_eq!(
            result,
            CheckResult::Fail(CheckFailure::CommandTimeout(TIMEOUT))
        );
        assert_eq!(result.to_string(), "command timeout after 500ms: killed");
        assert!(elapsed >= TIMEOUT && elapsed < TIMEOUT * 3, "{elapsed:?}");
        let sleeper: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let _ = std::fs::remove_file(&pid_file);
        let gone = Instant::now() + Duration::from_secs(2);
        while alive(sleeper) && Instant::now() < gone {
            time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            !alive(sleeper),
            "the command's child {sleeper} outlived the check"
        );
    }

    #[tokio::test]
    async fn a_background_job_does_not_hold_the_result_back() {
        // Exits at once, leaving a job that keeps stderr open.
        let started = Instant::now();
        let result = run("sleep 30 & exit 0").await;
        assert_eq!(result, CheckResult::Pass(CheckPass::CommandSucceeded));
        assert!(started.elapsed() < TIMEOUT, "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_signal_fails_and_a_flood_of_output_is_cut_to_one_short_line() {
        assert_eq!(
            run("kill -TERM $$").await.to_string(),
            "command killed by signal 15"
        );
        // About 1 MiB on stderr, in one line: read, dropped, not kept.
        let result = run("head -c 1048576 /dev/zero | tr '\\0' x >&2; exit 2").await;
        let CheckResult::Fail(CheckFailure::CommandExit {
            code: 2,
            output: Some(line),
        }) = &result
        else {
            panic!("{result:?}");
        };
        assert_eq!(line.chars().count(), MAX_REASON_CHARS + 1, "{line}");
        assert!(line.ends_with('…'));
    }
}
