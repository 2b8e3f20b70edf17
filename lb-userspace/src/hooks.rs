//! Notify hooks: operator commands run with `sh -c` when something changes
//! state (the VRRP instance, a backend), in a task of their own, one after
//! another in the order the changes happened, so the state machine or the
//! controller that queued them never waits for them.
//!
//! A hook that does not finish within its runner's timeout is killed (the
//! next one runs then). A hook that cannot start, exits non-zero, is killed
//! by a signal, times out, or finds the queue full is logged (warn) and
//! counted in [`HookFailures`] under its [`HookKind`], which `/metrics` shows
//! as `lb_notify_hook_failures_total{hook}`.

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A hook still running after this long is killed, so the next one can run.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(60);

/// Hooks that may wait for the runner; beyond them a hook is dropped and
/// counted as failed, so a flapping source cannot grow memory without bound.
pub const HOOK_QUEUE: usize = 1024;

/// Which hooks a runner runs: the label of their failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    /// `[vrrp] notify_master`, `notify_backup`, `notify_fault`.
    Vrrp,
    /// `global.notify_backend`.
    Backend,
}

impl HookKind {
    /// Every kind, in the order `/metrics` lists them.
    pub const ALL: [HookKind; 2] = [HookKind::Vrrp, HookKind::Backend];

    /// The `hook` label: `vrrp` or `backend`.
    pub fn name(self) -> &'static str {
        match self {
            HookKind::Vrrp => "vrrp",
            HookKind::Backend => "backend",
        }
    }

    fn index(self) -> usize {
        match self {
            HookKind::Vrrp => 0,
            HookKind::Backend => 1,
        }
    }
}

/// How many hooks failed since start, by kind; shared by the runners and
/// the API (cheap to clone, every clone counts into the same totals).
#[derive(Debug, Clone, Default)]
pub struct HookFailures(Arc<[AtomicU64; 2]>);

impl HookFailures {
    /// The failures of hooks of `kind` so far.
    pub fn get(&self, kind: HookKind) -> u64 {
        self.0[kind.index()].load(Ordering::Relaxed)
    }

    /// Failures as if `vrrp` and `backend` hooks had failed (for tests).
    #[cfg(test)]
    pub(crate) fn counted(vrrp: u64, backend: u64) -> Self {
        HookFailures(Arc::new([AtomicU64::new(vrrp), AtomicU64::new(backend)]))
    }

    fn count(&self, kind: HookKind) {
        self.0[kind.index()].fetch_add(1, Ordering::Relaxed);
    }
}

/// One run of a hook: the command and its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// Run as `sh -c COMMAND`.
    pub command: String,
    /// Added to the inherited environment.
    pub env: Vec<(&'static str, String)>,
    /// What the hook is about, for the logs (e.g. `state master`).
    pub about: String,
}

/// Runs the hooks queued on it, one at a time, in a task of its own.
#[derive(Debug)]
pub struct HookRunner {
    kind: HookKind,
    failures: HookFailures,
    queue: mpsc::Sender<Hook>,
    task: JoinHandle<()>,
}

impl HookRunner {
    /// Spawns the runner of `kind`'s hooks on the current tokio runtime;
    /// each hook gets `timeout`, failures are counted in `failures`.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn(kind: HookKind, timeout: Duration, failures: HookFailures) -> Self {
        let (queue, mut hooks) = mpsc::channel::<Hook>(HOOK_QUEUE);
        let task_failures = failures.clone();
        let task = tokio::spawn(async move {
            while let Some(hook) = hooks.recv().await {
                if let Err(failure) = run(&hook, timeout).await {
                    tracing::warn!(
                        hook = kind.name(),
                        command = %hook.command,
                        about = %hook.about,
                        %failure,
                        "notify hook failed"
                    );
                    task_failures.count(kind);
                }
            }
        });
        HookRunner {
            kind,
            failures,
            queue,
            task,
        }
    }

    /// Queues `hook` behind those already queued; never waits. A full queue
    /// drops it (logged and counted as a failure).
    pub fn queue(&self, hook: Hook) {
        if let Err(error) = self.queue.try_send(hook) {
            let (mpsc::error::TrySendError::Full(hook) | mpsc::error::TrySendError::Closed(hook)) =
                error;
            tracing::warn!(
                hook = self.kind.name(),
                command = %hook.command,
                about = %hook.about,
                "notify hook dropped: {HOOK_QUEUE} hooks already queued (or the runner is gone)"
            );
            self.failures.count(self.kind);
        }
    }

    /// Waits until every queued hook has finished (or timed out).
    pub async fn finish(self) {
        let HookRunner { queue, task, .. } = self;
        drop(queue);
        if let Err(error) = task.await {
            tracing::error!(%error, "notify hook task failed");
        }
    }
}

/// Why one hook failed.
#[derive(Debug, thiserror::Error)]
enum HookFailure {
    #[error("could not start: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("could not be waited for: {0}")]
    Wait(#[source] std::io::Error),
    #[error("exited with {0}")]
    Exit(std::process::ExitStatus),
    #[error("still running after {0:?}: killed")]
    Timeout(Duration),
}

/// Runs `hook` to its end, or kills it after `timeout`.
async fn run(hook: &Hook, timeout: Duration) -> Result<(), HookFailure> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(&hook.command)
        .envs(hook.env.iter().map(|(name, value)| (name, value)))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(HookFailure::Spawn)?;
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => {
            tracing::debug!(command = %hook.command, about = %hook.about, "notify hook done");
            Ok(())
        }
        Ok(Ok(status)) => Err(HookFailure::Exit(status)),
        Ok(Err(error)) => Err(HookFailure::Wait(error)),
        Err(_elapsed) => {
            // Kills it and reaps it.
            let _ = child.kill().await;
            Err(HookFailure::Timeout(timeout))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Instant;

    use super::*;

    /// A fresh directory for one test's files.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lb-hooks-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn hook(command: String, env: Vec<(&'static str, String)>) -> Hook {
        Hook {
            command,
            env,
            about: "test".into(),
        }
    }

    #[tokio::test]
    async fn hooks_run_in_order_with_their_environment() {
        let dir = scratch("order");
        let log = dir.join("log");
        let failures = HookFailures::default();
        let runner = HookRunner::spawn(HookKind::Backend, HOOK_TIMEOUT, failures.clone());
        for (n, delay) in [(1, "0.1"), (2, "0"), (3, "0.05")] {
            runner.queue(hook(
                format!("sleep {delay}; echo \"$N $LB_TEST\" >> {}", log.display()),
                vec![("N", n.to_string()), ("LB_TEST", format!("v{n}"))],
            ));
        }
        runner.finish().await;
        let written = std::fs::read_to_string(&log).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(written, "1 v1\n2 v2\n3 v3\n");
        assert_eq!(failures.get(HookKind::Backend), 0);
    }

    #[tokio::test]
    async fn a_hook_past_its_timeout_is_killed_counted_and_the_next_runs() {
        let dir = scratch("timeout");
        let pid_file = dir.join("pid");
        let after = dir.join("after");
        let failures = HookFailures::default();
        let runner =
            HookRunner::spawn(HookKind::Vrrp, Duration::from_millis(200), failures.clone());
        // `exec`, so the PID written is the sleeping process's own.
        runner.queue(hook(
            format!("echo $$ > {}; exec sleep 30", pid_file.display()),
            vec![],
        ));
        runner.queue(hook(format!("touch {}", after.display()), vec![]));
        let started = Instant::now();
        runner.finish().await;
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not waited out"
        );
        assert!(after.exists(), "the next hook ran");
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // SAFETY: kill with signal 0 only checks whether the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            !alive,
            "the timed-out hook (PID {pid}) was killed and reaped"
        );
        assert_eq!(failures.get(HookKind::Vrrp), 1);
        assert_eq!(failures.get(HookKind::Backend), 0);
    }

    #[tokio::test]
    async fn non_zero_exits_and_signals_are_counted_as_failures() {
        let failures = HookFailures::default();
        let runner = HookRunner::spawn(HookKind::Backend, HOOK_TIMEOUT, failures.clone());
        runner.queue(hook("exit 3".into(), vec![]));
        runner.queue(hook("kill -TERM $$".into(), vec![]));
        runner.queue(hook("true".into(), vec![]));
        runner.finish().await;
        assert_eq!(failures.get(HookKind::Backend), 2);
    }

    #[tokio::test]
    async fn clones_count_into_the_same_totals() {
        let failures = HookFailures::default();
        failures.clone().count(HookKind::Backend);
        assert_eq!(failures.get(HookKind::Backend), 1);
        assert_eq!(
            HookKind::ALL.map(HookKind::name),
            ["vrrp", "backend"],
            "the label values"
        );
    }
}
