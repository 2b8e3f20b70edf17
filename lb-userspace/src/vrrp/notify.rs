//! Notify hooks (keepalived's `notify_master`, `notify_backup`, `notify_fault`):
//! the command configured for the state entered runs on the shared
//! [`HookRunner`] (`sh -c`, in a task of its own, hooks one after another in
//! the order of the transitions, killed after [`HOOK_TIMEOUT`]), so the VRRP
//! loop never waits for them; failures count under `hook="vrrp"`.
//!
//! The command sees `LB_VRRP_STATE`, `LB_VRRP_PREVIOUS_STATE`, `LB_VRRP_VRID`
//! and `LB_VRRP_INTERFACE` in its environment.

use super::config::NotifyCommands;
use super::machine::State;
use crate::hooks::{Hook, HookFailures, HookKind, HookRunner, HOOK_TIMEOUT};

/// Queues the hooks of the configured states on a [`HookRunner`].
#[derive(Debug)]
pub struct Notifier {
    commands: NotifyCommands,
    vrid: u8,
    interface: String,
    runner: HookRunner,
}

impl Notifier {
    /// Spawns the hook task on the current tokio runtime; failed hooks are
    /// counted in `failures` under `vrrp`.
    pub fn spawn(
        commands: NotifyCommands,
        vrid: u8,
        interface: String,
        failures: HookFailures,
    ) -> Self {
        Notifier {
            commands,
            vrid,
            interface,
            runner: HookRunner::spawn(HookKind::Vrrp, HOOK_TIMEOUT, failures),
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
            self.runner.queue(Hook {
                command: command.clone(),
                env: vec![
                    ("LB_VRRP_STATE", to.as_str().to_owned()),
                    ("LB_VRRP_PREVIOUS_STATE", from.as_str().to_owned()),
                    ("LB_VRRP_VRID", self.vrid.to_string()),
                    ("LB_VRRP_INTERFACE", self.interface.clone()),
                ],
                about: format!("vrrp state {to}"),
            });
        }
    }

    /// Waits until every queued hook has finished (or timed out).
    pub async fn finish(self) {
        self.runner.finish().await;
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
        let notifier = Notifier::spawn(commands, 7, "veth0".into(), HookFailures::default());
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
