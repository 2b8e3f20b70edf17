//! The desired state of every backend membership (configuration, health and
//! admin overrides), combined by the rules of [`BackendState::of`] into what
//! the data path does. Pure: the clock is passed in, the controller does the
//! IO.
//!
//! # Backup backends
//!
//! A backend configured `backup = true` takes new flows only while no other
//! backend of its service is up (enabled and healthy; draining and disabled
//! ones do not count). Then every up backup is in the table, by weight
//! (HAProxy's `backup` with `option allbackups`; not only the first, whose
//! choice would depend on the order of the file, which nodes of an
//! active-active fleet must not depend on). While a primary is up, an up
//! backup is on *standby*: out of the table, and written `draining` to the
//! data path, so the flows it took meanwhile stay on it and only new flows
//! go to the primary; a standby backup that goes down or is disabled moves
//! its flows like any other.

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::time::SystemTime;

use super::image::BackendPlan;
use super::layout::Layout;
use crate::config::{Backend, Config, OnDown, Service, WEIGHT_RANGE};
use crate::domain::{
    AdminAction, AdminError, AdminState, BackendSnapshot, BackendState, Health, HealthSource,
    LastCheckDuration,
};
use crate::health::{CheckTarget, DesiredTarget, HealthEvent, TargetStatus};

/// A change of the state a backend serves with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    pub service: String,
    pub backend: String,
    pub address: Ipv4Addr,
    /// The port its packets go to: the service's.
    pub port: u16,
    pub from: BackendState,
    pub to: BackendState,
    pub reason: String,
}

/// Why and when something last changed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Change {
    reason: String,
    at: SystemTime,
}

/// One (service, backend) membership.
#[derive(Debug, Clone)]
struct Member {
    service: String,
    name: String,
    address: Ipv4Addr,
    /// The service's port, where the backend's packets go.
    port: u16,
    /// `backup = true`: in the table only while no other backend is up.
    backup: bool,
    /// The service's `on_down`.
    on_down: OnDown,
    configured_weight: u32,
    /// Set through the API; kept across reloads until `lb` restarts.
    admin_weight: Option<u32>,
    /// `None`: the service is not checked.
    target: Option<CheckTarget>,
    health: Option<Health>,
    health_change: Change,
    /// Who set `health`.
    health_by: HealthSource,
    /// See [`BackendSnapshot::settled`].
    settled: bool,
    /// See [`BackendSnapshot::health_unknown`].
    health_unknown: Option<String>,
    /// See [`BackendSnapshot::joining`].
    joining: bool,
    admin: AdminState,
    /// See [`BackendSnapshot::mac_unresolved`].
    mac_unresolved: bool,
    /// Its check's, as the checker reports it; `None`: not checked.
    last_check: Option<LastCheckDuration>,
    state: BackendState,
    state_change: Change,
    /// Changes of `state` since `lb` started (reloads included).
    state_changes: u64,
}

impl Member {
    /// `backend` of `service` before any event and admin action: checked, it
    /// has its check's `status` (as the checker reports it), or its
    /// configured initial health while the check has none; unchecked, up.
    fn new(
        service: &Service,
        backend: &Backend,
        status_of: impl Fn(&CheckTarget) -> Option<TargetStatus>,
        now: SystemTime,
    ) -> Self {
        let target = service.check_target(backend);
        let mut health_unknown = None;
        let mut last_check = None;
        let mut health_by = HealthSource::Checks;
        let (health, health_change, settled) = match &target {
            None => (
                None,
                Change {
                    reason: "not checked: always up".to_owned(),
                    at: now,
                },
                true,
            ),
            Some(target) => match status_of(target) {
                Some(status) => {
                    health_unknown = status.unknown;
                    last_check = Some(status.last_check);
                    health_by = status.by;
                    (
                        Some(status.health),
                        Change {
                            reason: status.reason,
                            at: status.since,
                        },
                        status.settled,
                    )
                }
                None => (
                    Some(backend.initial),
                    Change {
                        reason: format!("initial state: {}", backend.initial),
                        at: now,
                    },
                    false,
                ),
            },
        };
        Member {
            service: service.name.clone(),
            name: backend.name.clone(),
            address: backend.address,
            port: service.port,
            backup: backend.backup,
            on_down: service.on_down,
            configured_weight: backend.weight,
            admin_weight: None,
            target,
            state: BackendState::of(AdminState::Enabled, health, false),
            state_change: health_change.clone(),
            health,
            health_change,
            settled,
            health_unknown,
            health_by,
            joining: false,
            admin: AdminState::Enabled,
            mac_unresolved: false,
            last_check,
            state_changes: 0,
        }
    }

    /// After a reload: keeps `previous`'s admin state and weight, and its
    /// health if its check is unchanged; a new check is joining until
    /// settled. The state keeps its reason unless it changed.
    fn carry_over(&mut self, previous: &Member, now: SystemTime) {
        self.admin = previous.admin;
        self.admin_weight = previous.admin_weight;
        self.mac_unresolved = previous.mac_unresolved;
        if self.target == previous.target {
            self.health = previous.health;
            self.health_change = previous.health_change.clone();
            self.settled = previous.settled;
            self.health_unknown = previous.health_unknown.clone();
            self.health_by = previous.health_by;
            self.joining = previous.joining;
        } else {
            self.joining = !self.settled;
        }
        self.state = BackendState::of(self.admin, self.health, self.mac_unresolved);
        self.state_changes = previous.state_changes + u64::from(self.state != previous.state);
        self.state_change = if self.state == previous.state {
            previous.state_change.clone()
        } else {
            Change {
                reason: format!("check changed by a reload: {}", self.health_change.reason),
                at: now,
            }
        };
    }

    /// Its change from its state now to `to`, for `reason`.
    fn change_to(&self, to: BackendState, reason: String) -> StateChange {
        StateChange {
            service: self.service.clone(),
            backend: self.name.clone(),
            address: self.address,
            port: self.port,
            from: self.state,
            to,
            reason,
        }
    }

    /// Whether it is an up backup kept out of the table because a primary
    /// of its service is up (`with_primary_up`).
    fn is_standby(&self, with_primary_up: &HashSet<&str>) -> bool {
        self.backup
            && self.state == BackendState::Up
            && with_primary_up.contains(self.service.as_str())
    }

    /// Whether it is down by its checks in a service with `on_down =
    /// "keep"`, or by passive health (which judges new connections only):
    /// its established flows stay (the data path sees it draining). A down
    /// backend whose MAC is unresolved moves them all the same: frames to
    /// its old MAC reach nobody.
    fn keeps_flows_while_down(&self) -> bool {
        (self.on_down == OnDown::Keep || self.health_by == HealthSource::Passive)
            && self.state == BackendState::Down
            && self.admin == AdminState::Enabled
            && !self.mac_unresolved
    }

    /// The weight in use.
    fn weight(&self) -> u32 {
        self.admin_weight.unwrap_or(self.configured_weight)
    }

    /// Recomputes the serving state after a change explained by `reason`;
    /// returns the change of state, if any.
    fn settle(&mut self, reason: String, at: SystemTime) -> Option<StateChange> {
        let state = BackendState::of(self.admin, self.health, self.mac_unresolved);
        if state == self.state {
            return None;
        }
        let change = self.change_to(state, reason.clone());
        self.state = state;
        self.state_change = Change { reason, at };
        self.state_changes += 1;
        Some(change)
    }
}

/// The desired state of every backend membership, by backend id.
#[derive(Debug, Clone)]
pub struct DesiredState {
    members: BTreeMap<u32, Member>,
}

impl DesiredState {
    /// The state of `config`'s backends (ids from `layout`) before any event:
    /// checked backends take their target's status from `status_of` (as the
    /// checker reports it), the others are up.
    pub fn new(
        config: &Config,
        layout: &Layout,
        status_of: impl Fn(&CheckTarget) -> Option<TargetStatus>,
        now: SystemTime,
    ) -> Self {
        let mut members = BTreeMap::new();
        for (service, slot) in config.services.iter().zip(&layout.services) {
            for (backend, backend_slot) in service.backends.iter().zip(&slot.backends) {
                members.insert(
                    backend_slot.id,
                    Member::new(service, backend, &status_of, now),
                );
            }
        }
        DesiredState { members }
    }

    /// The state after reloading `config` (ids from `layout`, reassigned
    /// from this state's): a membership that remains keeps its admin state
    /// and weight, and its health if its check is unchanged; a new one, or
    /// a new check, starts as [`DesiredState::new`] does and is joining
    /// until its health is settled.
    pub fn reloaded(
        &self,
        config: &Config,
        layout: &Layout,
        status_of: impl Fn(&CheckTarget) -> Option<TargetStatus>,
        now: SystemTime,
    ) -> Self {
        let mut members = BTreeMap::new();
        for (service, slot) in config.services.iter().zip(&layout.services) {
            for (backend, backend_slot) in service.backends.iter().zip(&slot.backends) {
                let mut member = Member::new(service, backend, &status_of, now);
                match self.remaining(backend_slot.id, service, backend) {
                    Some(previous) => member.carry_over(previous, now),
                    None => member.joining = !member.settled,
                }
                members.insert(backend_slot.id, member);
            }
        }
        DesiredState { members }
    }

    /// The changes of state from `previous` to this state of the
    /// memberships in both (same id, service, name and address): what a
    /// reload changed.
    pub fn changes_from(&self, previous: &DesiredState) -> Vec<StateChange> {
        self.members
            .iter()
            .filter_map(|(id, member)| {
                let before = previous.members.get(id).filter(|before| {
                    before.service == member.service
                        && before.name == member.name
                        && before.address == member.address
                })?;
                (before.state != member.state)
                    .then(|| before.change_to(member.state, member.state_change.reason.clone()))
            })
            .collect()
    }

    /// The checks of `config` (ids from `layout`, reassigned from this
    /// state's). A membership that remains but whose check changed starts
    /// that check from its health now, so a new check does not take a
    /// healthy backend out while it first runs.
    pub fn reloaded_targets(&self, config: &Config, layout: &Layout) -> Vec<DesiredTarget> {
        let mut targets = Vec::new();
        for (service, slot) in config.services.iter().zip(&layout.services) {
            for (backend, backend_slot) in service.backends.iter().zip(&slot.backends) {
                let Some(target) = service.check_target(backend) else {
                    continue;
                };
                let initial = self
                    .remaining(backend_slot.id, service, backend)
                    .and_then(|member| member.health)
                    .unwrap_or(backend.initial);
                targets.push(DesiredTarget { target, initial });
            }
        }
        targets
    }

    /// The membership id `id` names now, if it is `backend` of `service`
    /// (the same server, by name and address, in the same service).
    fn remaining(&self, id: u32, service: &Service, backend: &Backend) -> Option<&Member> {
        self.members.get(&id).filter(|member| {
            member.service == service.name
                && member.name == backend.name
                && member.address == backend.address
        })
    }

    /// The state membership `id` serves with, if it exists.
    pub fn state(&self, id: u32) -> Option<BackendState> {
        self.members.get(&id).map(|member| member.state)
    }

    /// The check target of membership `id` while its health is up: what a
    /// passive verdict marks down.
    pub fn up_target(&self, id: u32) -> Option<&CheckTarget> {
        let member = self.members.get(&id)?;
        member
            .target
            .as_ref()
            .filter(|_| member.health == Some(Health::Up))
    }

    /// Records a change of health of `event.target` (or its settling), for
    /// every membership checked by it; returns the resulting changes of state.
    pub fn record_health(&mut self, event: &HealthEvent) -> Vec<StateChange> {
        let mut changes = Vec::new();
        for member in self.members.values_mut() {
            if member.target.as_ref() != Some(&event.target) {
                continue;
            }
            member.settled = event.settled;
            member.joining &= !event.settled;
            member.health_unknown = event.unknown.clone();
            if member.health == Some(event.health) {
                // Settled without a change: the health and its reason stand.
                continue;
            }
            member.health = Some(event.health);
            member.health_by = event.by;
            member.health_change = Change {
                reason: event.reason.clone(),
                at: event.at,
            };
            // A passive verdict names itself ("passive: ...").
            let reason = match event.by {
                HealthSource::Checks => format!("health {}: {}", event.health, event.reason),
                HealthSource::Passive => event.reason.clone(),
            };
            changes.extend(member.settle(reason, event.at));
        }
        changes
    }

    /// Records whether the MAC of `address` is unresolved (its neighbour
    /// entry failed), for every membership of that address; `reason`
    /// explains the change. Returns the resulting changes of state.
    pub fn record_mac(
        &mut self,
        address: Ipv4Addr,
        unresolved: bool,
        reason: &str,
        now: SystemTime,
    ) -> Vec<StateChange> {
        let mut changes = Vec::new();
        for member in self.members.values_mut() {
            if member.address != address || member.mac_unresolved == unresolved {
                continue;
            }
            member.mac_unresolved = unresolved;
            let reason = if unresolved {
                reason.to_owned()
            } else {
                match member.health {
                    Some(health) => {
                        format!("{reason}; health {health}: {}", member.health_change.reason)
                    }
                    None => format!("{reason}; {}", member.health_change.reason),
                }
            };
            changes.extend(member.settle(reason, now));
        }
        changes
    }

    /// Applies `action` to backend `backend` of service `service` at `now`;
    /// returns the change of state it made, if any.
    pub fn admin(
        &mut self,
        service: &str,
        backend: &str,
        action: AdminAction,
        now: SystemTime,
    ) -> Result<Option<StateChange>, AdminError> {
        let id = self.find(service, backend)?;
        let member = self.members.get_mut(&id).expect("found above");
        let (admin, reason) = match action {
            AdminAction::Weight(weight) => {
                if !WEIGHT_RANGE.contains(&weight) {
                    return Err(AdminError::Weight {
                        weight,
                        low: *WEIGHT_RANGE.start(),
                        high: *WEIGHT_RANGE.end(),
                    });
                }
                member.admin_weight = Some(weight);
                return Ok(None);
            }
            AdminAction::Drain => (AdminState::Draining, "drained by admin".to_owned()),
            AdminAction::Disable => (AdminState::Disabled, "disabled by admin".to_owned()),
            AdminAction::Enable => {
                let health = match member.health {
                    Some(health) => format!("health {health}: {}", member.health_change.reason),
                    None => member.health_change.reason.clone(),
                };
                (AdminState::Enabled, format!("enabled by admin; {health}"))
            }
        };
        member.admin = admin;
        Ok(member.settle(reason, now))
    }

    /// The id of backend `backend` of service `service`.
    pub fn find(&self, service: &str, backend: &str) -> Result<u32, AdminError> {
        let mut of_service = self
            .members
            .iter()
            .filter(|(_, m)| m.service == service)
            .peekable();
        if of_service.peek().is_none() {
            return Err(AdminError::UnknownService(service.to_owned()));
        }
        of_service
            .find(|(_, m)| m.name == backend)
            .map(|(&id, _)| id)
            .ok_or_else(|| AdminError::UnknownBackend {
                service: service.to_owned(),
                backend: backend.to_owned(),
            })
    }

    /// What the data path should do with each backend id.
    pub fn plans(&self) -> BTreeMap<u32, BackendPlan> {
        let with_primary_up = self.services_with_a_primary_up();
        self.members
            .iter()
            .map(|(&id, member)| {
                let plan = BackendPlan {
                    state: member.state,
                    weight: member.weight(),
                    standby: member.is_standby(&with_primary_up),
                    keeps_flows: member.keeps_flows_while_down(),
                };
                (id, plan)
            })
            .collect()
    }

    /// The services with a backend up that is not a backup: their backups
    /// are on standby (see the module documentation).
    fn services_with_a_primary_up(&self) -> HashSet<&str> {
        self.members
            .values()
            .filter(|member| !member.backup && member.state == BackendState::Up)
            .map(|member| member.service.as_str())
            .collect()
    }

    /// Backend id `id` as the controller publishes it, but for its `mac`
    /// (the controller's neighbours know it).
    ///
    /// # Panics
    ///
    /// If no membership has that id.
    pub fn backend_snapshot(&self, id: u32) -> BackendSnapshot {
        let member = &self.members[&id];
        let standby = member.is_standby(&self.services_with_a_primary_up());
        BackendSnapshot {
            id,
            name: member.name.clone(),
            address: member.address,
            state: member.state,
            reason: member.state_change.reason.clone(),
            since: member.state_change.at,
            health: member.health,
            health_reason: member.health_change.reason.clone(),
            health_since: member.health_change.at,
            health_by: member.health_by,
            settled: member.settled,
            health_unknown: member.health_unknown.clone(),
            joining: member.joining,
            admin: member.admin,
            weight: member.weight(),
            configured_weight: member.configured_weight,
            last_check: member.last_check.clone(),
            mac: None,
            mac_unresolved: member.mac_unresolved,
            backup: member.backup,
            standby,
            state_changes: member.state_changes,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config;

    const CONFIG: &str = r#"
        [global]
        interface = "eth0"

        [[service]]
        name = "web"
        vip = "10.0.0.100"
        port = 80
        protocol = "tcp"
        [service.health]
        type = "http"
        path = "/health"

        [[service.backend]]
        name = "web1"
        address = "10.0.0.1"

        [[service.backend]]
        name = "web2"
        address = "10.0.0.2"
        initial = "up"
        weight = 2

        [[service]]
        name = "api"
        vip = "10.0.0.101"
        port = 80
        protocol = "tcp"
        [service.health]
        type = "http"
        path = "/health"

        [[service.backend]]
        name = "web2"
        address = "10.0.0.2"

        [[service]]
        name = "dns"
        vip = "10.0.0.100"
        port = 53
        protocol = "udp"

        [[service.backend]]
        name = "web1"
        address = "10.0.0.1"
    "#;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    /// The state before any event, as the checker would report it.
    fn desired() -> (Config, DesiredState) {
        let config = config::parse(CONFIG, "test.toml").unwrap();
        let layout = Layout::new(&config);
        // web2 is configured up in "web" only, so its shared target starts
        // down (the checker's rule): every target starts down.
        let initial = |_: &CheckTarget| {
            Some(TargetStatus {
                health: Health::Down,
                reason: "initial state: down until 2 consecutive checks pass".to_owned(),
                since: at(0),
                settled: false,
                unknown: None,
                last_check: Default::default(),
                by: crate::domain::HealthSource::Checks,
            })
        };
        let desired = DesiredState::new(&config, &layout, initial, at(0));
        (config, desired)
    }

    fn event(
        config: &Config,
        service: usize,
        backend: usize,
        health: Health,
        s: u64,
    ) -> HealthEvent {
        let service = &config.services[service];
        HealthEvent {
            target: service.check_target(&service.backends[backend]).unwrap(),
            health,
            reason: match health {
                Health::Up => "HTTP status 200".to_owned(),
                Health::Down => "connection refused".to_owned(),
            },
            at: at(s),
            settled: true,
            unknown: None,
            by: crate::domain::HealthSource::Checks,
        }
    }

    fn states(desired: &DesiredState) -> Vec<BackendState> {
        desired.plans().values().map(|plan| plan.state).collect()
    }

    use BackendState::{Disabled, Down, Draining, Up};

    #[test]
    fn checked_backends_start_as_the_checker_says_and_unchecked_ones_up() {
        let (_, desired) = desired();
        // web/web1, web/web2, api/web2, dns/web1 (udp, not checked).
        assert_eq!(states(&desired), [Down, Down, Down, Up]);
        let dns = desired.backend_snapshot(3);
        assert_eq!(dns.health, None);
        assert_eq!(dns.reason, "not checked: always up");
        let web1 = desired.backend_snapshot(0);
        assert_eq!(web1.state, BackendState::Down);
        assert_eq!(
            web1.reason,
            "initial state: down until 2 consecutive checks pass"
        );
    }

    #[test]
    fn settling_without_a_change_keeps_the_health_and_its_reason() {
        let (config, mut desired) = desired();
        assert!(!desired.backend_snapshot(0).settled);
        let changes = desired.record_health(&event(&config, 0, 0, Health::Down, 5));
        assert!(changes.is_empty());
        let web1 = desired.backend_snapshot(0);
        assert!(web1.settled);
        assert_eq!(
            (web1.health, web1.health_since),
            (Some(Health::Down), at(0))
        );
        assert_eq!(
            web1.health_reason,
            "initial state: down until 2 consecutive checks pass"
        );
        // The other backends are not settled by it.
        assert!(!desired.backend_snapshot(1).settled);
    }

    #[test]
    fn one_health_event_moves_every_service_of_a_shared_target() {
        let (config, mut desired) = desired();
        let changes = desired.record_health(&event(&config, 0, 1, Health::Up, 5));
        assert_eq!(changes.len(), 2, "web/web2 and api/web2: {changes:?}");
        assert_eq!(states(&desired), [Down, Up, Up, Up]);
        let status = desired.backend_snapshot(2);
        assert_eq!(status.state, BackendState::Up);
        assert_eq!(status.reason, "health up: HTTP status 200");
        assert_eq!(status.since, at(5));
        assert_eq!(status.health_since, at(5));
    }

    #[test]
    fn draining_keeps_flows_whatever_the_health_does() {
        let (config, mut desired) = desired();
        desired.record_health(&event(&config, 0, 0, Health::Up, 1));
        let change = desired
            .admin("web", "web1", AdminAction::Drain, at(10))
            .unwrap()
            .unwrap();
        assert_eq!(
            (change.from, change.to),
            (BackendState::Up, BackendState::Draining)
        );
        assert_eq!(states(&desired)[0], Draining);
        // Failing checks while draining change the health, not the state.
        let changes = desired.record_health(&event(&config, 0, 0, Health::Down, 20));
        assert!(changes.is_empty());
        let status = desired.backend_snapshot(0);
        assert_eq!(
            (status.state, status.health, status.since),
            (BackendState::Draining, Some(Health::Down), at(10))
        );
        assert_eq!(status.reason, "drained by admin");
        assert_eq!(status.health_since, at(20));
        // Enabled again, the health decides: down.
        let change = desired
            .admin("web", "web1", AdminAction::Enable, at(30))
            .unwrap()
            .unwrap();
        assert_eq!(change.to, BackendState::Down);
        assert_eq!(
            change.reason,
            "enabled by admin; health down: connection refused"
        );
        assert_eq!(states(&desired)[0], Down);
    }

    #[test]
    fn disabling_moves_flows_and_enabling_restores_the_health_state() {
        let (config, mut desired) = desired();
        desired.record_health(&event(&config, 0, 0, Health::Up, 1));
        desired
            .admin("web", "web1", AdminAction::Disable, at(2))
            .unwrap();
        assert_eq!(states(&desired)[0], Disabled);
        assert_eq!(desired.backend_snapshot(0).state, BackendState::Disabled);
        // A health change while disabled is remembered for later.
        desired.record_health(&event(&config, 0, 0, Health::Down, 3));
        desired.record_health(&event(&config, 0, 0, Health::Up, 4));
        let change = desired
            .admin("web", "web1", AdminAction::Enable, at(5))
            .unwrap()
            .unwrap();
        assert_eq!(change.to, BackendState::Up);
        assert_eq!(states(&desired)[0], Up);
        // up, disabled, up; the health changes while disabled were none.
        assert_eq!(desired.backend_snapshot(0).state_changes, 3);
    }

    #[test]
    fn admin_actions_only_touch_the_named_membership() {
        let (config, mut desired) = desired();
        desired.record_health(&event(&config, 0, 1, Health::Up, 1));
        desired
            .admin("api", "web2", AdminAction::Drain, at(2))
            .unwrap();
        assert_eq!(states(&desired), [Down, Up, Draining, Up]);
        // Draining twice changes nothing.
        let again = desired.admin("api", "web2", AdminAction::Drain, at(3));
        assert_eq!(again, Ok(None));
        assert_eq!(desired.backend_snapshot(2).since, at(2));
        // Down (initial) to up, up to draining.
        assert_eq!(desired.backend_snapshot(2).state_changes, 2);
    }

    #[test]
    fn weights_are_set_within_range_and_reach_the_plans() {
        let (_, mut desired) = desired();
        assert_eq!(desired.plans()[&1].weight, 2);
        assert_eq!(
            desired.admin("web", "web2", AdminAction::Weight(7), at(1)),
            Ok(None)
        );
        assert_eq!(desired.plans()[&1].weight, 7);
        let status = desired.backend_snapshot(1);
        assert_eq!((status.weight, status.configured_weight), (7, 2));
        for weight in [0, 101] {
            assert_eq!(
                desired.admin("web", "web2", AdminAction::Weight(weight), at(1)),
                Err(AdminError::Weight {
                    weight,
                    low: 1,
                    high: 100
                })
            );
        }
    }

    #[test]
    fn an_unresolved_mac_takes_every_membership_of_the_address_down_until_resolved() {
        let (config, mut desired) = desired();
        for backend in [0, 1] {
            desired.record_health(&event(&config, 0, backend, Health::Up, 1));
        }
        desired
            .admin("web", "web2", AdminAction::Drain, at(2))
            .unwrap();
        assert_eq!(states(&desired), [Up, Draining, Up, Up]);
        let web2 = Ipv4Addr::new(10, 0, 0, 2);
        let changes = desired.record_mac(web2, true, "no MAC: neighbour unresolved", at(3));
        // web/web2 (draining: its flows cannot reach it either) and api/web2.
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert_eq!(states(&desired), [Up, Down, Down, Up]);
        let status = desired.backend_snapshot(2);
        assert!(status.mac_unresolved);
        assert_eq!(status.reason, "no MAC: neighbour unresolved");
        // Health changes meanwhile are kept for later; the state stays down.
        assert!(desired
            .record_health(&event(&config, 0, 1, Health::Up, 4))
            .is_empty());
        // Unresolved twice changes nothing.
        assert!(desired.record_mac(web2, true, "again", at(5)).is_empty());
        let changes = desired.record_mac(web2, false, "MAC 02:00:00:00:00:02", at(6));
        assert_eq!(states(&desired), [Up, Draining, Up, Up]);
        assert_eq!(
            changes[1].reason,
            "MAC 02:00:00:00:00:02; health up: HTTP status 200"
        );
        assert!(!desired.backend_snapshot(2).mac_unresolved);
    }

    #[test]
    fn unknown_names_are_refused() {
        let (_, mut desired) = desired();
        assert_eq!(
            desired.admin("mail", "web1", AdminAction::Drain, at(1)),
            Err(AdminError::UnknownService("mail".into()))
        );
        assert_eq!(
            desired.admin("api", "web1", AdminAction::Drain, at(1)),
            Err(AdminError::UnknownBackend {
                service: "api".into(),
                backend: "web1".into()
            })
        );
    }
}
