//! The backend hook (`global.notify_backend`): a command run with `sh -c`
//! on the shared [`HookRunner`] each time a backend membership's state
//! changes among `up`, `down`, `draining` and `disabled`, so the controller
//! never waits for it. Hooks run one after another in the order of the
//! changes, each killed after [`HOOK_TIMEOUT`]; failures count under
//! `lb_notify_hook_failures_total{hook="backend"}`.
//!
//! The command sees `LB_SERVICE`, `LB_BACKEND` (the backend's name),
//! `LB_BACKEND_ADDRESS`, `LB_BACKEND_PORT` (the port its packets are sent
//! to: the service's, as dsr-l2 keeps it), `LB_BACKEND_STATE`,
//! `LB_BACKEND_PREVIOUS_STATE` and `LB_BACKEND_REASON` in its environment.
//!
//! `drained` (`LB_BACKEND_STATE=drained`, previous `draining`) runs once per
//! drain, when a census of active flows taken after the drain began finds
//! none left on the backend ([`BackendNotifier::drained`]).

use super::desired::StateChange;
use crate::domain::{BackendSnapshot, BackendState, ServiceSnapshot};
use crate::hooks::{Hook, HookFailures, HookKind, HookRunner, HOOK_TIMEOUT};

/// Queues the backend hook of every state change, while one is configured.
#[derive(Debug)]
pub struct BackendNotifier {
    command: Option<String>,
    runner: HookRunner,
}

impl BackendNotifier {
    /// Spawns the hook task on the current tokio runtime; `command` is
    /// `global.notify_backend` (`None`: no hook until a reload sets one).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn(command: Option<String>, failures: HookFailures) -> Self {
        BackendNotifier {
            command,
            runner: HookRunner::spawn(HookKind::Backend, HOOK_TIMEOUT, failures),
        }
    }

    /// Uses `command` for the changes from now on (a reload); hooks already
    /// queued run with the command they were queued with.
    pub fn set_command(&mut self, command: Option<String>) {
        self.command = command;
    }

    /// Queues the hook of `change`, if a command is configured.
    pub fn state_changed(&self, change: &StateChange) {
        if let Some(command) = &self.command {
            self.runner.queue(hook(command, change));
        }
    }

    /// Queues the `drained` hook of `backend` of `service`, if a command is
    /// configured.
    pub fn drained(&self, service: &ServiceSnapshot, backend: &BackendSnapshot) {
        let Some(command) = &self.command else {
            return;
        };
        let change = StateChange {
            service: service.name.clone(),
            backend: backend.name.clone(),
            address: backend.address,
            port: service.port,
            from: BackendState::Draining,
            to: BackendState::Draining,
            reason: "no active flow left".to_owned(),
        };
        let mut hook = hook(command, &change);
        for (name, value) in &mut hook.env {
            if *name == "LB_BACKEND_STATE" {
                *value = "drained".to_owned();
            }
        }
        hook.about = format!(
            "backend {}/{} draining -> drained",
            service.name, backend.name
        );
        self.runner.queue(hook);
    }

    /// Waits until every queued hook has finished (or timed out).
    pub async fn finish(self) {
        self.runner.finish().await;
    }
}

/// The run of `command` for `change`.
fn hook(command: &str, change: &StateChange) -> Hook {
    Hook {
        command: command.to_owned(),
        env: vec![
            ("LB_SERVICE", change.service.clone()),
            ("LB_BACKEND", change.backend.clone()),
            ("LB_BACKEND_ADDRESS", change.address.to_string()),
            ("LB_BACKEND_PORT", change.port.to_string()),
            ("LB_BACKEND_STATE", change.to.to_string()),
            ("LB_BACKEND_PREVIOUS_STATE", change.from.to_string()),
            ("LB_BACKEND_REASON", change.reason.clone()),
        ],
        about: format!(
            "backend {}/{} {} -> {}",
            change.service, change.backend, change.from, change.to
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::domain::BackendState;

    fn change(from: BackendState, to: BackendState, reason: &str) -> StateChange {
        StateChange {
            service: "web".into(),
            backend: "web2".into(),
            address: Ipv4Addr::new(10, 0, 0, 2),
            port: 80,
            from,
            to,
            reason: reason.into(),
        }
    }

    #[tokio::test]
    async fn each_change_runs_the_hook_with_the_backend_in_its_environment() {
        let dir = std::env::temp_dir().join(format!("lb-backend-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("log");
        let command = format!(
            "echo \"$LB_SERVICE $LB_BACKEND $LB_BACKEND_ADDRESS:$LB_BACKEND_PORT \
             $LB_BACKEND_PREVIOUS_STATE>$LB_BACKEND_STATE ($LB_BACKEND_REASON)\" >> {}",
            log.display()
        );
        let failures = HookFailures::default();
        let mut notifier = BackendNotifier::spawn(None, failures.clone());
        use BackendState::{Disabled, Down, Draining, Up};
        notifier.state_changed(&change(Up, Down, "not configured yet"));
        notifier.set_command(Some(command));
        notifier.state_changed(&change(Up, Down, "health down: connection refused"));
        notifier.state_changed(&change(Down, Draining, "drained by admin"));
        notifier.state_changed(&change(Draining, Disabled, "disabled by admin"));
        notifier.set_command(None);
        notifier.state_changed(&change(Disabled, Up, "hook removed by a reload"));
        notifier.finish().await;
        let written = std::fs::read_to_string(&log).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            written,
            "web web2 10.0.0.2:80 up>down (health down: connection refused)\n\
             web web2 10.0.0.2:80 down>draining (drained by admin)\n\
             web web2 10.0.0.2:80 draining>disabled (disabled by admin)\n"
        );
        assert_eq!(failures.get(HookKind::Backend), 0);
    }
}
