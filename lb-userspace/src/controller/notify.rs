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

use std::net::Ipv4Addr;

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
        self.queue(&Transition {
            service: &change.service,
            backend: &change.backend,
            address: change.address,
            port: change.port,
            from: &change.from.to_string(),
            to: &change.to.to_string(),
            reason: &change.reason,
        });
    }

    /// Queues the `drained` hook of `backend` of `service`, if a command is
    /// configured.
    pub fn drained(&self, service: &ServiceSnapshot, backend: &BackendSnapshot) {
        self.queue(&Transition {
            service: &service.name,
            backend: &backend.name,
            address: backend.address,
            port: service.port,
            from: &BackendState::Draining.to_string(),
            to: "drained",
            reason: "no active flow left",
        });
    }

    fn queue(&self, transition: &Transition<'_>) {
        if let Some(command) = &self.command {
            self.runner.queue(transition.hook(command));
        }
    }

    /// Waits until every queued hook has finished (or timed out).
    pub async fn finish(self) {
        self.runner.finish().await;
    }
}

/// What a backend hook is about: the membership, the state it left and the
/// one it entered (a [`BackendState`], or `drained`), and why.
struct Transition<'a> {
    service: &'a str,
    backend: &'a str,
    address: Ipv4Addr,
    port: u16,
    from: &'a str,
    to: &'a str,
    reason: &'a str,
}

impl Transition<'_> {
    /// The run of `command` for it.
    fn hook(&self, command: &str) -> Hook {
        Hook {
            command: command.to_owned(),
            env: vec![
                ("LB_SERVICE", self.service.to_owned()),
                ("LB_BACKEND", self.backend.to_owned()),
                ("LB_BACKEND_ADDRESS", self.address.to_string()),
                ("LB_BACKEND_PORT", self.port.to_string()),
                ("LB_BACKEND_STATE", self.to.to_owned()),
                ("LB_BACKEND_PREVIOUS_STATE", self.from.to_owned()),
                ("LB_BACKEND_REASON", self.reason.to_owned()),
            ],
            about: format!(
                "backend {}/{} {} -> {}",
                self.service, self.backend, self.from, self.to
            ),
        }
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
