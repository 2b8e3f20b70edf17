//! The load balancer's domain vocabulary, shared by the controller, the
//! health checks, HA tracking and the API: a backend's health, admin state
//! and resulting state, the operator's actions on it, the snapshot of
//! every service the controller publishes, and the reload of the
//! configuration file and its published status. One name per concept, spelled the
//! same in code, JSON, `lb status` and the README.
//!
//! It imports no other module of the crate, so everyone can depend on it.
//!
//! The state a backend serves with is the first that applies of:
//! 1. admin `disabled`: out of the table, its established flows move;
//! 2. its MAC cannot be resolved (its neighbour entry failed): `down`, out
//!    of the table, its established flows move, since frames to its last
//!    known MAC would reach nobody;
//! 3. admin `draining`: out of the table, its established flows stay, even if
//!    its checks fail meanwhile: the operator asked to let them finish;
//! 4. health `down`: out of the table, its established flows move;
//! 5. health `up`, or a service without checks: in the table.

use std::fmt;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lb_common::maps::backend_state;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

/// What the health checks say about a backend. A backend of a service
/// without checks has no health (`Option<Health>` is `None`: "unchecked").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Up,
    Down,
}

impl Health {
    /// Up for down, down for up.
    pub fn opposite(self) -> Health {
        match self {
            Health::Up => Health::Down,
            Health::Down => Health::Up,
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Health::Up => "up",
            Health::Down => "down",
        })
    }
}

/// Which mechanism set a backend's health: its active checks, or passive
/// health (`observe = "layer4"`: handshakes the data path saw fail), which
/// can only mark it down; the checks bring it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthSource {
    #[default]
    Checks,
    Passive,
}

impl fmt::Display for HealthSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HealthSource::Checks => "checks",
            HealthSource::Passive => "passive",
        })
    }
}

/// The operator's override of a backend, set through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminState {
    /// No override: the health decides.
    Enabled,
    Draining,
    Disabled,
}

impl fmt::Display for AdminState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AdminState::Enabled => "enabled",
            AdminState::Draining => "draining",
            AdminState::Disabled => "disabled",
        })
    }
}

/// What the data path does with a backend; see README "Backend states".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendState {
    /// Takes new flows.
    Up,
    /// Failed its checks: no new flows, its established flows move to a
    /// serving backend on their next packet.
    Down,
    /// Admin drain: no new flows, established flows stay on it.
    Draining,
    /// Admin disable: no new flows, established flows move like `down`.
    Disabled,
}

impl BackendState {
    /// The state of a backend with override `admin`, health `health`
    /// (`None`: not checked) and whose MAC is resolved or not
    /// (`mac_unresolved`), by the rules in this module's documentation.
    pub fn of(admin: AdminState, health: Option<Health>, mac_unresolved: bool) -> BackendState {
        match (admin, health) {
            (AdminState::Disabled, _) => BackendState::Disabled,
            _ if mac_unresolved => BackendState::Down,
            (AdminState::Draining, _) => BackendState::Draining,
            (AdminState::Enabled, Some(Health::Down)) => BackendState::Down,
            (AdminState::Enabled, Some(Health::Up) | None) => BackendState::Up,
        }
    }

    /// The `state` byte of the backend's `BACKENDS` entry: the data path
    /// tells only up, draining (flows stay) and down (flows move) apart.
    pub fn map_value(self) -> u8 {
        match self {
            BackendState::Up => backend_state::UP,
            BackendState::Draining => backend_state::DRAINING,
            BackendState::Down | BackendState::Disabled => backend_state::DOWN,
        }
    }
}

impl fmt::Display for BackendState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendState::Up => "up",
            BackendState::Down => "down",
            BackendState::Draining => "draining",
            BackendState::Disabled => "disabled",
        })
    }
}

/// An operator's action on one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminAction {
    /// No new flows; established flows stay.
    Drain,
    /// No new flows; established flows move.
    Disable,
    /// Clears `Drain` and `Disable`: the health decides again.
    Enable,
    /// Sets the backend's share of new flows until restart.
    Weight(u32),
}

/// Why an admin action was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    #[error("no service named {0:?}")]
    UnknownService(String),
    #[error("service {service:?} has no backend named {backend:?}")]
    UnknownBackend { service: String, backend: String },
    #[error("weight {weight} is out of range ({low}..={high})")]
    Weight { weight: u32, low: u32, high: u32 },
    /// The service's weights after the action would not fit its table (the
    /// check the configuration file gets); `reason` names the limit.
    #[error("service {service:?}: {reason}")]
    WeightsDoNotFit { service: String, reason: String },
}

/// Why an admin command did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminCommandError {
    #[error(transparent)]
    Refused(#[from] AdminError),
    /// The change is recorded, but the maps could not be written; the
    /// controller keeps retrying.
    #[error(
        "the change is recorded but could not be applied to the data path yet (retrying): {0}"
    )]
    NotApplied(String),
    #[error("the controller has stopped")]
    Stopped,
}

/// What an admin command answers: the backend as it is once the data path
/// follows the action.
pub type AdminReply = Result<BackendSnapshot, AdminCommandError>;

/// An admin action on backend `backend` of service `service`, sent to the
/// controller, which answers on `reply`.
#[derive(Debug)]
pub struct AdminCommand {
    pub service: String,
    pub backend: String,
    pub action: AdminAction,
    pub reply: oneshot::Sender<AdminReply>,
}

/// The sending end of the controller's admin commands; cheap to clone.
#[derive(Debug, Clone)]
pub struct AdminCommands {
    sender: mpsc::Sender<AdminCommand>,
}

impl AdminCommands {
    pub fn new(sender: mpsc::Sender<AdminCommand>) -> Self {
        AdminCommands { sender }
    }

    /// Sends `action` on backend `backend` of service `service` and waits
    /// for the controller's answer.
    pub async fn send(&self, service: &str, backend: &str, action: AdminAction) -> AdminReply {
        let (reply, answer) = oneshot::channel();
        let command = AdminCommand {
            service: service.to_owned(),
            backend: backend.to_owned(),
            action,
            reply,
        };
        self.sender
            .send(command)
            .await
            .map_err(|_| AdminCommandError::Stopped)?;
        answer.await.map_err(|_| AdminCommandError::Stopped)?
    }
}

/// Why a reload of the configuration file did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    /// The file was refused: invalid, a setting that needs a restart, a
    /// new backend that cannot be resolved, or weights set through the API
    /// that would no longer fit. Nothing changed.
    #[error("{0}")]
    Refused(String),
    /// The new configuration is recorded, but the maps could not be written
    /// yet; the controller keeps retrying.
    #[error("{0}")]
    NotApplied(String),
    #[error("lb is stopping")]
    Stopped,
}

/// A reload that took: the hash of the file now running and what changed
/// (the JSON answer of `POST /reload`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadOutcome {
    /// [`crate::config::ContentHash`] of the file, 16 hex digits.
    pub hash: String,
    /// E.g. `services: 1 added (api), 1 changed (web), 2 unchanged`.
    pub changes: String,
}

/// What a reload request answers.
pub type ReloadReply = Result<ReloadOutcome, ReloadError>;

/// A request to reload the configuration file, answered on `reply`.
#[derive(Debug)]
pub struct ReloadCommand {
    pub reply: oneshot::Sender<ReloadReply>,
}

/// The sending end of the reload requests; cheap to clone.
#[derive(Debug, Clone)]
pub struct ReloadCommands {
    sender: mpsc::Sender<ReloadCommand>,
}

impl ReloadCommands {
    pub fn new(sender: mpsc::Sender<ReloadCommand>) -> Self {
        ReloadCommands { sender }
    }

    /// Asks for a reload and waits for its outcome.
    pub async fn send(&self) -> ReloadReply {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(ReloadCommand { reply })
            .await
            .map_err(|_| ReloadError::Stopped)?;
        answer.await.map_err(|_| ReloadError::Stopped)?
    }
}

/// The configuration running now and how its reloads went, published on a
/// `watch` channel ([`ConfigStatusReceiver`]) after every reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigStatus {
    /// [`crate::config::ContentHash`] of the file running now, 16 hex digits.
    pub hash: String,
    /// When the running configuration was applied: at start, or by the
    /// last reload that took.
    pub applied_at: SystemTime,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    /// Why the last reload failed, while the last one did.
    pub last_error: Option<String>,
}

/// Follows the published [`ConfigStatus`].
pub type ConfigStatusReceiver = watch::Receiver<ConfigStatus>;

/// The controller's view of every service and backend, published on a
/// `watch` channel ([`SnapshotReceiver`]) after every change of it. It has no
/// traffic counters: readers take those from the data path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub services: Vec<ServiceSnapshot>,
}

/// Follows the controller's published [`Snapshot`].
pub type SnapshotReceiver = watch::Receiver<Arc<Snapshot>>;

/// One service and its backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSnapshot {
    /// The data path's id of the service (index of its counters).
    pub id: u32,
    pub name: String,
    pub vip: Ipv4Addr,
    pub port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// `maglev` or `round-robin`.
    pub scheduler: String,
    /// How packets reach the backend: `dsr-l2`.
    pub forwarding: String,
    /// [`ServiceTable::fingerprint`](crate::controller) of the table last
    /// written to the data path: equal on nodes that agree.
    pub table_fingerprint: u64,
    pub backends: Vec<BackendSnapshot>,
}

impl ServiceSnapshot {
    /// Its backends but those still joining ([`BackendSnapshot::joining`]):
    /// what HA judges the service by.
    pub fn joined_backends(&self) -> impl Iterator<Item = &BackendSnapshot> {
        self.backends.iter().filter(|b| !b.joining)
    }

    /// Whether some joined backend takes new flows.
    pub fn is_serving(&self) -> bool {
        self.joined_backends().any(|b| b.state == BackendState::Up)
    }

    /// Whether every joined backend's health is settled
    /// ([`BackendSnapshot::settled`]).
    pub fn is_settled(&self) -> bool {
        self.joined_backends().all(|b| b.settled)
    }

    /// Whether every backend is still joining: a service a reload just
    /// added, with nothing for HA to judge it by yet.
    pub fn is_joining(&self) -> bool {
        self.joined_backends().next().is_none()
    }
}

/// One backend membership of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSnapshot {
    /// The data path's id of the membership (index of its counters).
    pub id: u32,
    pub name: String,
    pub address: Ipv4Addr,
    pub state: BackendState,
    /// Why it is in `state`: the check or admin action that put it there.
    pub reason: String,
    /// When it entered `state`.
    pub since: SystemTime,
    /// What the checks say, whatever the admin state; `None`: not checked.
    pub health: Option<Health>,
    /// The result that set `health`, or why it is not checked.
    pub health_reason: String,
    pub health_since: SystemTime,
    /// The mechanism that set `health`.
    pub health_by: HealthSource,
    /// Whether `health` is a fresh verdict of the checks: not checked,
    /// started up, or checked `rise` times since it was added, and checked
    /// again since this node's last own fault. Until every backend of a
    /// service is settled, this node's table may differ from its peers'.
    pub settled: bool,
    /// Why this node cannot check the backend right now (its link, route or
    /// source address); `health` is then the last one it knew.
    pub health_unknown: Option<String>,
    /// Its checks started with a reload (it was added, or its check
    /// changed) and its health is not settled yet. HA tracking and the BGP
    /// announcer leave it out until it is, so a reload never makes this node
    /// hand over or withdraw by itself.
    pub joining: bool,
    pub admin: AdminState,
    /// The weight in use (set by the API, or the configured one).
    pub weight: u32,
    pub configured_weight: u32,
    /// The duration of its check's last completed run, live; `None`: not
    /// checked.
    pub last_check: Option<LastCheckDuration>,
    /// The MAC its frames are sent to: the neighbour table's, or the last
    /// one known while `mac_unresolved`; `None` before it is known.
    pub mac: Option<[u8; 6]>,
    /// Its neighbour entry failed and probing did not resolve it: `down`
    /// until its MAC is known again.
    pub mac_unresolved: bool,
    /// Configured `backup = true`: takes new flows only while no other
    /// backend of the service is up.
    pub backup: bool,
    /// A backup that is up while another backend of its service is up: out
    /// of the table, its established flows stay (the data path sees it
    /// draining). Always `false` for a backend that is not a backup.
    pub standby: bool,
    /// Changes of `state` since `lb` started (reloads included).
    pub state_changes: u64,
}

/// How long a target's last completed health check took: written by the
/// check's task after each check, read live by `/status` and `/metrics`
/// (like the traffic counters, so a check's duration never republishes the
/// snapshot). Clones share the value; two are equal when they are the same
/// cell.
#[derive(Debug, Clone, Default)]
pub struct LastCheckDuration(Arc<AtomicU64>);

impl LastCheckDuration {
    /// Records the duration of a check that just completed.
    pub fn record(&self, took: Duration) {
        // 0 means "none yet": a check of 0 ns is stored as 1 ns.
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.0.store(nanos, Ordering::Relaxed);
    }

    /// The last recorded duration; `None` before the first check completed.
    pub fn get(&self) -> Option<Duration> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }
}

impl PartialEq for LastCheckDuration {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for LastCheckDuration {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_rules() {
        use AdminState as A;
        use BackendState as S;
        let cases = [
            (A::Enabled, Some(Health::Up), false, S::Up),
            (A::Enabled, None, false, S::Up),
            (A::Enabled, Some(Health::Down), false, S::Down),
            (A::Draining, Some(Health::Up), false, S::Draining),
            (A::Draining, Some(Health::Down), false, S::Draining),
            (A::Draining, None, false, S::Draining),
            (A::Disabled, Some(Health::Up), false, S::Disabled),
            (A::Disabled, Some(Health::Down), false, S::Disabled),
            (A::Disabled, None, false, S::Disabled),
            // No MAC: down, unless disabled.
            (A::Enabled, Some(Health::Up), true, S::Down),
            (A::Enabled, None, true, S::Down),
            (A::Draining, Some(Health::Up), true, S::Down),
            (A::Disabled, Some(Health::Up), true, S::Disabled),
        ];
        for (admin, health, mac_unresolved, expected) in cases {
            assert_eq!(
                BackendState::of(admin, health, mac_unresolved),
                expected,
                "{admin} {health:?} {mac_unresolved}"
            );
        }
    }

    #[test]
    fn the_data_path_moves_flows_of_down_and_disabled_backends_alike() {
        assert_eq!(BackendState::Up.map_value(), backend_state::UP);
        assert_eq!(BackendState::Draining.map_value(), backend_state::DRAINING);
        assert_eq!(BackendState::Down.map_value(), backend_state::DOWN);
        assert_eq!(BackendState::Disabled.map_value(), backend_state::DOWN);
    }

    #[test]
    fn names_are_the_same_in_json_and_text() {
        for state in [
            BackendState::Up,
            BackendState::Down,
            BackendState::Draining,
            BackendState::Disabled,
        ] {
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{state}\""));
        }
        for admin in [
            AdminState::Enabled,
            AdminState::Draining,
            AdminState::Disabled,
        ] {
            assert_eq!(
                serde_json::to_string(&admin).unwrap(),
                format!("\"{admin}\"")
            );
        }
        assert_eq!(serde_json::to_string(&Health::Down).unwrap(), "\"down\"");
        assert_eq!(Health::Up.opposite(), Health::Down);
    }

    #[test]
    fn a_check_duration_is_none_until_recorded_and_shared_by_clones() {
        let duration = LastCheckDuration::default();
        assert_eq!(duration.get(), None);
        let writer = duration.clone();
        writer.record(Duration::from_millis(12));
        assert_eq!(duration.get(), Some(Duration::from_millis(12)));
        writer.record(Duration::ZERO);
        assert_eq!(duration.get(), Some(Duration::from_nanos(1)));
        assert_eq!(duration, writer);
        assert_ne!(duration, LastCheckDuration::default());
    }

    #[tokio::test]
    async fn a_command_to_a_stopped_controller_says_so() {
        let (sender, receiver) = mpsc::channel(1);
        let commands = AdminCommands::new(sender);
        drop(receiver);
        let reply = commands.send("web", "web1", AdminAction::Drain).await;
        assert_eq!(reply, Err(AdminCommandError::Stopped));
    }
}
