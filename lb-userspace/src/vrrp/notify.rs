//! Notify hooks (keepalived's `notify_master`, `notify_backup`, `notify_fault`):
//! the command configured for the state entered runs with `sh -c` in a task of
//! its own, hooks one after another in the order of the transitions, so the
//! VRRP loop never waits for them.
//!
//! The command sees `LB_VRRP_STATE`, `LB_VRRP_PREVIOUS_STATE`, `LB_VRRP_VRID`
//! and `LB_VRRP_INTERFACE` in its environment.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::config::NotifyCommands;
use super::machine::State;

/// A hook still running after this long is killed, so the next one can run.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(60);

/// Queues hooks for the task that runs them.
#[derive(Debug)]
pub struct Notifier {
    commands: NotifyCommands,
    queue: mpsc::UnboundedSender<Hook>,
    task: JoinHandle<()>,
}

#[derive(Debug)]
struct Hook {
    command: String,
    from: State,
    to: State,
}

impl Notifier {
    /// Spawns the hook task on the current tokio runtime.
    pub fn spawn(commands: NotifyCommands, vrid: u8, interface: String) -> Self {
        let (queue, mut hooks) = mpsc::unbounded_channel::<Hook>();
        let task = tokio::spawn(async move {
            while let Some(hook) = hooks.recv().await {
                run(&hook, vrid, &interface).await;
            }
        });
        Notifier {
            commands,
            queue,
            task,
        }
    }

    /// Queues the hook of state `to`, if one is configured.
    pub fn state_changed(&self, from: State, to: State) {
        let command = match to {
            State::Master => &self.commands.master,
            State::Backup => &self.commands.backup,
            State::Fault => &self.commands.fault,
            State::Initialize => &None,
        };
        if let Some(command) = command {
            let hook = Hook {
                command: command.clone(),
                from,
                to,
            };
            // The task lives as long as `self`; a send can only fail after it panicked.
            if self.queue.send(hook).is_err() {
                tracing::error!("vrrp notify task is gone; hook for {to} not run");
            }
        }
    }

    /// Waits until every queued hook has finished (or timed out).
    pub async fn finish(self) {
        let Notifier { queue, task, .. } = self;
        drop(queue);
        if let Err(error) = task.await {
            tracing::error!(%error, "vrrp notify task failed");
        }
    }
}

async fn run(hook: &Hook, vrid: u8, interface: &str) {
    let child = Command::new("sh")
        .arg("-c")
        .arg(&hook.command)
        .env("LB_VRRP_STATE", hook.to.as_str())
        .env("LB_VRRP_PREVIOUS_STATE", hook.from.as_str())
        .env("LB_VRRP_VRID", vrid.to_string())
        .env("LB_VRRP_INTERFACE", interface)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => {
            tracing::warn!(%error, command = %hook.command, "vrrp notify hook could not start");
            return;
        }
    };
    match tokio::time::timeout(HOOK_TIMEOUT, child.wait()).await {
        Ok(Ok(status)) if status.success() => {
            tracing::debug!(command = %hook.command, state = %hook.to, "vrrp notify hook done");
        }
        Ok(Ok(status)) => {
            tracing::warn!(command = %hook.command, state = %hook.to, %status, "vrrp notify hook failed");
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, command = %hook.command, "vrrp notify hook could not be waited for");
        }
        Err(_elapsed) => {
            tracing::warn!(command = %hook.command, timeout = ?HOOK_TIMEOUT, "vrrp notify hook timed out; killed");
            // kill_on_drop kills it; wait to reap it.
            let _ = child.kill().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hooks_run_in_order_with_the_state_in_their_environment() {
        let dir = std::env::temp_dir().join(format!("lb-vrrp-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("log");
        let append = |tag: &str| {
            Some(format!(
                "sleep 0.05; echo \"{tag} $LB_VRRP_PREVIOUS_STATE $LB_VRRP_STATE $LB_VRRP_VRID $LB_VRRP_INTERFACE\" >> {}",
                log.display()
            ))
        };
        let commands = NotifyCommands {
            master: append("m"),
            backup: append("b"),
            fault: append("f"),
        };
        let notifier = Notifier::spawn(commands, 7, "veth0".into());
        notifier.state_changed(State::Initialize, State::Backup);
        notifier.state_changed(State::Backup, State::Master);
        notifier.state_changed(State::Master, State::Fault);
        notifier.state_changed(State::Fault, State::Initialize);
        notifier.finish().await;
        let written = std::fs::read_to_string(&log).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            written,
            "b initialize backup 7 veth0\nm backup master 7 veth0\nf master fault 7 veth0\n"
        );
    }
}
