//! Tracking: the priority this node advertises is the configured one minus
//! a weight while its XDP program is not attached to the interface, and
//! minus a weight for each tracked service without a serving backend, so
//! that a node that cannot serve hands over to its peer. While the health
//! of a tracked service's backend is not a fresh verdict (after start, and
//! after any time this node could not check), the priority is held at the
//! lowest: a node must not take the VIP with a view its peer may not share.
//! A backend a reload adds (or whose check it changes) is left out until
//! its health is settled, and a service a reload adds until one of its
//! backends is, so a reload never lowers the priority by itself: a master
//! keeps the VIP through it. Observations in, priority out; no IO.

use std::collections::BTreeSet;
use std::fmt;

use crate::config::Tracking;
use crate::domain::Snapshot;

/// The lowest priority tracking leaves: 0 means "I quit" on the wire.
const LOWEST_PRIORITY: u8 = 1;

/// What tracking last saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracker {
    configured: u8,
    track: Tracking,
    xdp_attached: bool,
    /// Whether the services have been observed; until then every tracked
    /// service counts as without a serving backend.
    services_observed: bool,
    /// Tracked services whose backends are all out of the table.
    without_backend: BTreeSet<String>,
    /// Backends of tracked services whose health was not settled at the
    /// last observation (only counted while services are tracked).
    unsettled_backends: usize,
}

impl Tracker {
    /// A tracker for `configured` priority that has not observed anything:
    /// the XDP program counts as attached, every tracked one of `services`
    /// (those configured at start) as without a serving backend (a node
    /// must not win an election on services it has not seen serve).
    pub fn new(
        configured: u8,
        track: Tracking,
        services: impl IntoIterator<Item = String>,
    ) -> Self {
        let mut tracker = Tracker {
            configured,
            track,
            xdp_attached: true,
            services_observed: false,
            without_backend: BTreeSet::new(),
            unsettled_backends: 0,
        };
        tracker.without_backend = services
            .into_iter()
            .filter(|service| tracker.tracks(service))
            .collect();
        tracker
    }

    /// Whether service `name` is tracked.
    fn tracks(&self, name: &str) -> bool {
        self.track
            .services
            .as_ref()
            .is_none_or(|names| names.iter().any(|tracked| tracked == name))
    }

    /// Records whether the load balancer program is attached to the
    /// interface. Returns true when this observation is the loss of a
    /// tracked program: a master must then resign at once rather than only
    /// lower its priority, since its kernel answers for the VIPs without it.
    #[must_use]
    pub fn observe_xdp(&mut self, attached: bool) -> bool {
        let lost = self.xdp_attached && !attached && self.track.xdp_weight > 0;
        self.xdp_attached = attached;
        lost
    }

    /// Records which tracked services have a serving (`up`) backend, once
    /// every one of their backends is settled. Until then the last verdict
    /// stands and the priority is held ([`Tracker::is_holding`]). Backends
    /// still joining after a reload, and services with nothing else, are
    /// left out.
    pub fn observe_services(&mut self, snapshot: &Snapshot) {
        let tracked: Vec<_> = snapshot
            .services
            .iter()
            .filter(|service| self.tracks(&service.name) && !service.is_joining())
            .collect();
        self.unsettled_backends = tracked
            .iter()
            .flat_map(|service| service.joined_backends())
            .filter(|backend| !backend.settled)
            .count();
        if self.unsettled_backends > 0 {
            return;
        }
        self.services_observed = true;
        self.without_backend = tracked
            .iter()
            .filter(|service| !service.is_serving())
            .map(|service| service.name.clone())
            .collect();
    }

    /// Whether the priority is held at the lowest because some tracked
    /// backend's health is not a fresh verdict yet.
    pub fn is_holding(&self) -> bool {
        self.track.service_weight > 0 && self.unsettled_backends > 0
    }

    /// The priority to advertise now.
    pub fn priority(&self) -> u8 {
        if self.is_holding() {
            return LOWEST_PRIORITY;
        }
        let mut penalty = 0u32;
        if !self.xdp_attached {
            penalty += u32::from(self.track.xdp_weight);
        }
        penalty += u32::from(self.track.service_weight) * self.without_backend.len() as u32;
        let priority = u32::from(self.configured).saturating_sub(penalty);
        // Fits: at most the configured u8.
        (priority as u8).max(LOWEST_PRIORITY)
    }

    /// Why the priority is lowered, for the log.
    pub fn reasons(&self) -> Reasons<'_> {
        Reasons(self)
    }
}

/// [`Tracker::reasons`]: "none", or each failing check.
pub struct Reasons<'a>(&'a Tracker);

impl fmt::Display for Reasons<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tracker = self.0;
        let mut reasons = Vec::new();
        if !tracker.xdp_attached && tracker.track.xdp_weight > 0 {
            reasons.push(format!(
                "XDP program not attached (-{})",
                tracker.track.xdp_weight
            ));
        }
        if tracker.is_holding() {
            reasons.push(format!(
                "waiting for a fresh health verdict on {} backend(s) (held at {LOWEST_PRIORITY})",
                tracker.unsettled_backends
            ));
        } else if tracker.track.service_weight > 0 && !tracker.services_observed {
            reasons.push(format!(
                "services not observed yet (-{} each)",
                tracker.track.service_weight
            ));
        } else if tracker.track.service_weight > 0 {
            for service in &tracker.without_backend {
                reasons.push(format!(
                    "service {service} has no serving backend (-{})",
                    tracker.track.service_weight
                ));
            }
        }
        if reasons.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&reasons.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::SystemTime;

    use super::*;
    use crate::domain::{AdminState, BackendSnapshot, BackendState, ServiceSnapshot};

    fn tracking(xdp_weight: u8, service_weight: u8, services: &[&str]) -> Tracking {
        Tracking {
            xdp_weight,
            service_weight,
            services: Some(services.iter().map(|s| s.to_string()).collect()),
        }
    }

    /// A tracker of `track` that started with services `web` and `dns`.
    fn tracker_of(configured: u8, track: Tracking) -> Tracker {
        Tracker::new(configured, track, ["web".to_owned(), "dns".to_owned()])
    }

    fn report(services: &[(&str, &[BackendState])]) -> Snapshot {
        let backend = |state: BackendState| BackendSnapshot {
            id: 0,
            name: "b".into(),
            address: Ipv4Addr::new(10, 0, 0, 1),
            state,
            reason: String::new(),
            since: SystemTime::UNIX_EPOCH,
            health: None,
            health_reason: String::new(),
            health_since: SystemTime::UNIX_EPOCH,
            settled: true,
            health_unknown: None,
            joining: false,
            admin: AdminState::Enabled,
            weight: 1,
            configured_weight: 1,
            last_check: None,
            mac: None,
            mac_unresolved: false,
            backup: false,
            standby: false,
            state_changes: 0,
            health_by: crate::domain::HealthSource::Checks,
        };
        Snapshot {
            services: (0..)
                .zip(services)
                .map(|(id, (name, states))| ServiceSnapshot {
                    id,
                    name: name.to_string(),
                    vip: Ipv4Addr::new(10, 0, 0, 100),
                    port: 80,
                    protocol: "tcp".into(),
                    scheduler: "maglev".into(),
                    forwarding: "dsr-l2".into(),
                    table_fingerprint: 0,
                    backends: states.iter().copied().map(backend).collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn services_count_as_down_until_observed() {
        let mut tracker = tracker_of(150, tracking(100, 60, &["web", "dns"]));
        assert_eq!(tracker.priority(), 30);
        assert_eq!(
            tracker.reasons().to_string(),
            "services not observed yet (-60 each)"
        );
        tracker.observe_services(&report(&[
            ("web", &[BackendState::Up]),
            ("dns", &[BackendState::Up]),
        ]));
        assert_eq!(tracker.priority(), 150);
    }

    #[test]
    fn a_healthy_node_advertises_its_configured_priority() {
        let mut tracker = tracker_of(150, tracking(100, 60, &["web"]));
        tracker.observe_services(&report(&[("web", &[BackendState::Down, BackendState::Up])]));
        assert_eq!(tracker.priority(), 150);
        assert_eq!(tracker.reasons().to_string(), "none");
    }

    #[test]
    fn each_failing_check_subtracts_its_weight() {
        let mut tracker = tracker_of(150, tracking(100, 30, &["web", "dns"]));
        tracker.observe_services(&report(&[
            ("web", &[BackendState::Up]),
            ("dns", &[BackendState::Up]),
        ]));
        assert!(tracker.observe_xdp(false), "the loss of the program");
        assert_eq!(tracker.priority(), 50);
        tracker.observe_services(&report(&[
            ("web", &[BackendState::Down, BackendState::Draining]),
            ("dns", &[BackendState::Up]),
        ]));
        assert_eq!(tracker.priority(), 20);
        assert_eq!(
            tracker.reasons().to_string(),
            "XDP program not attached (-100), service web has no serving backend (-30)"
        );
        assert!(!tracker.observe_xdp(true));
        tracker.observe_services(&report(&[
            ("web", &[BackendState::Up]),
            ("dns", &[BackendState::Up]),
        ]));
        assert_eq!(tracker.priority(), 150);
    }

    #[test]
    fn the_program_is_lost_once_per_detachment() {
        let mut tracker = tracker_of(150, tracking(100, 0, &[]));
        assert!(!tracker.observe_xdp(true));
        assert!(tracker.observe_xdp(false));
        assert!(
            !tracker.observe_xdp(false),
            "still detached: not lost again"
        );
        assert!(!tracker.observe_xdp(true));
        assert!(tracker.observe_xdp(false), "lost again after it came back");
    }

    #[test]
    fn the_priority_never_drops_below_one() {
        let mut tracker = tracker_of(150, tracking(254, 254, &["web"]));
        let _ = tracker.observe_xdp(false);
        tracker.observe_services(&report(&[("web", &[BackendState::Disabled])]));
        assert_eq!(tracker.priority(), 1);
    }

    #[test]
    fn untracked_services_and_zero_weights_change_nothing() {
        let mut tracker = tracker_of(100, tracking(0, 50, &["web"]));
        assert!(
            !tracker.observe_xdp(false),
            "an untracked program is never lost"
        );
        tracker.observe_services(&report(&[("other", &[BackendState::Down])]));
        assert_eq!(tracker.priority(), 100);
        assert_eq!(tracker.reasons().to_string(), "none");
    }

    #[test]
    fn an_unsettled_backend_holds_the_priority_at_the_lowest_until_settled() {
        let mut tracker = tracker_of(150, tracking(100, 60, &["web"]));
        let mut snapshot = report(&[("web", &[BackendState::Up, BackendState::Up])]);
        tracker.observe_services(&snapshot);
        assert_eq!(tracker.priority(), 150);
        // This node could not check for a while: web2's health is its last
        // known one, not a fresh verdict.
        snapshot.services[0].backends[1].settled = false;
        tracker.observe_services(&snapshot);
        assert!(tracker.is_holding());
        assert_eq!(tracker.priority(), 1);
        assert_eq!(
            tracker.reasons().to_string(),
            "waiting for a fresh health verdict on 1 backend(s) (held at 1)"
        );
        // Fresh again, and web2 really went down meanwhile: the verdict of
        // the fresh view counts (one of two up still serves).
        snapshot.services[0].backends[1].settled = true;
        snapshot.services[0].backends[1].state = BackendState::Down;
        tracker.observe_services(&snapshot);
        assert!(!tracker.is_holding());
        assert_eq!(tracker.priority(), 150);
    }

    #[test]
    fn untracked_services_never_hold_the_priority() {
        let mut tracker = tracker_of(150, tracking(100, 60, &["web"]));
        let mut snapshot = report(&[("web", &[BackendState::Up]), ("dns", &[BackendState::Up])]);
        snapshot.services[1].backends[0].settled = false;
        tracker.observe_services(&snapshot);
        assert_eq!(tracker.priority(), 150);
        let mut untracked = tracker_of(150, tracking(100, 0, &["web"]));
        snapshot.services[0].backends[0].settled = false;
        untracked.observe_services(&snapshot);
        assert!(
            !untracked.is_holding(),
            "service weight 0: services are not tracked"
        );
        assert_eq!(untracked.priority(), 150);
    }

    #[test]
    fn by_default_every_service_is_tracked_those_a_reload_adds_included() {
        let every = Tracking {
            services: None,
            ..tracking(0, 60, &[])
        };
        let mut tracker = tracker_of(150, every);
        assert_eq!(tracker.priority(), 30, "web and dns count until observed");
        tracker.observe_services(&report(&[
            ("web", &[BackendState::Up]),
            ("dns", &[BackendState::Up]),
            ("api", &[BackendState::Down]),
        ]));
        assert_eq!(tracker.priority(), 90);
        assert_eq!(
            tracker.reasons().to_string(),
            "service api has no serving backend (-60)"
        );
    }

    #[test]
    fn a_reload_never_lowers_the_priority_by_itself() {
        let mut tracker = tracker_of(150, tracking(100, 60, &["web", "api"]));
        let mut snapshot = report(&[("web", &[BackendState::Up, BackendState::Up])]);
        tracker.observe_services(&snapshot);
        assert_eq!(tracker.priority(), 150);
        // A reload adds web3 to web and the service api, all down and
        // unsettled until their checks have run.
        snapshot = report(&[
            (
                "web",
                &[BackendState::Up, BackendState::Up, BackendState::Down],
            ),
            ("api", &[BackendState::Down]),
        ]);
        let joining = [(0, 2), (1, 0)];
        for (service, backend) in joining {
            let backend = &mut snapshot.services[service].backends[backend];
            backend.settled = false;
            backend.joining = true;
        }
        tracker.observe_services(&snapshot);
        assert!(!tracker.is_holding());
        assert_eq!(tracker.priority(), 150);
        // Once settled they count: api has no serving backend.
        for (service, backend) in joining {
            let backend = &mut snapshot.services[service].backends[backend];
            backend.settled = true;
            backend.joining = false;
        }
        tracker.observe_services(&snapshot);
        assert_eq!(tracker.priority(), 90);
    }
}
