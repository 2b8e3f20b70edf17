//! A node's `GET /status`, as the e2e tests read it: only the fields they
//! assert on, parsed into the harness's own types so that the tests do not
//! follow every rename inside `lb` (unknown fields are ignored).

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::time::SystemTime;

use serde::{Deserialize, Deserializer};

/// `GET /status` of one node.
#[derive(Clone, Debug, Deserialize)]
pub struct StatusReport {
    /// The configuration file running and its reloads.
    #[serde(default)]
    pub config: Option<ConfigReport>,
    pub services: Vec<ServiceReport>,
    /// The node's VRRP instance; absent when it has no `[vrrp]`.
    #[serde(default)]
    pub vrrp: Option<VrrpReport>,
    /// The node's BGP announcer; absent when it has no `[bgp]`.
    #[serde(default)]
    pub bgp: Option<BgpReport>,
    /// The data path's packet counters by action and reason.
    #[serde(default)]
    pub data_path: DataPathReport,
}

/// The data path's packet counters.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct DataPathReport {
    /// Packets passed or dropped, by reason.
    #[serde(default)]
    pub reasons: BTreeMap<String, u64>,
}

/// The configuration file a node runs, and how its reloads went.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ConfigReport {
    /// The hash of the file (as `lb check-config` prints it).
    pub hash: String,
    pub reloads: ReloadCounts,
    /// Why the last reload failed, while it did.
    pub last_reload_error: Option<String>,
}

/// Reloads by outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub struct ReloadCounts {
    pub ok: u64,
    pub failed: u64,
}

/// The BGP announcer of an active-active node.
#[derive(Clone, Debug, Deserialize)]
pub struct BgpReport {
    pub vips: Vec<VipAnnouncement>,
}

/// One VIP's announcement.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct VipAnnouncement {
    pub vip: Ipv4Addr,
    /// Its route is in the node's table: the routing daemon announces it.
    pub announced: bool,
    /// Why it is withdrawn, while it is.
    pub withdraw_reason: Option<String>,
}

/// One service and its backends.
#[derive(Clone, Debug, Deserialize)]
pub struct ServiceReport {
    pub name: String,
    /// The fingerprint of its table: equal on nodes that agree.
    pub table_fingerprint: String,
    /// What the node's data path forwarded for the service.
    pub counters: Counters,
    pub backends: Vec<BackendReport>,
}

/// One backend of a service.
#[derive(Clone, Debug, Deserialize)]
pub struct BackendReport {
    pub name: String,
    /// What the data path does with it.
    pub state: BackendState,
    /// Why it is in `state`.
    pub reason: String,
    /// When it entered `state`.
    #[serde(deserialize_with = "rfc3339")]
    pub since: SystemTime,
    /// What its health checks (or the data path's observation of its
    /// handshakes) say, whatever the admin state.
    pub health: Health,
    /// The mechanism that set `health`; absent from an `lb` without
    /// passive health.
    #[serde(default)]
    pub health_by: Option<HealthBy>,
    /// The check result behind its health.
    pub health_reason: String,
    /// Whether its health is a fresh verdict of the node's checks.
    pub settled: bool,
    /// Why the node cannot check it right now (its own fault).
    #[serde(default)]
    pub health_unknown: Option<String>,
    /// The weight in use (the API's, or the configured one).
    #[serde(default)]
    pub weight: u32,
    #[serde(default)]
    pub configured_weight: u32,
    /// How long its last completed check took, in seconds.
    #[serde(default)]
    pub health_check_duration_seconds: Option<f64>,
    /// The MAC its frames are sent to.
    #[serde(default)]
    pub mac: Option<String>,
    /// Its neighbour entry failed and could not be resolved again.
    #[serde(default)]
    pub mac_unresolved: bool,
    /// Its active flows at the last census.
    #[serde(default)]
    pub active_flows: u64,
    pub counters: Counters,
    /// The TCP handshakes of new flows to it, as the data path saw them;
    /// absent from an `lb` without passive health.
    #[serde(default)]
    pub handshakes: Option<Handshakes>,
}

/// A backend's health (README "Health checks").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Up,
    Down,
    /// The service has no check.
    Unchecked,
}

/// What set a backend's current health.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthBy {
    /// Its active health checks.
    Checks,
    /// The data path's observation of its handshakes (passive health).
    Passive,
}

/// The handshakes of new TCP flows to a backend, as the data path saw
/// them: the client's SYN, then its completing ACK (or not).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Handshakes {
    /// Completed: the client's ACK came within `handshake_timeout`.
    pub completed: u64,
    /// SYNs retransmitted on a tuple whose handshake never completed.
    pub retransmitted: u64,
    /// Not completed within `handshake_timeout`.
    pub failed: u64,
}

/// Data path counters since `lb run` started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
}

/// What the data path does with a backend (README "Backend states").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendState {
    Up,
    Down,
    Draining,
    Disabled,
}

/// The node's VRRP instance.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct VrrpReport {
    /// Its role now.
    pub state: VrrpState,
    /// The priority it advertises now (tracking may have lowered it).
    pub priority: u8,
    /// The master it knows of (itself when master).
    #[serde(default)]
    pub master: Option<Ipv4Addr>,
    /// When it entered `state`.
    #[serde(deserialize_with = "rfc3339")]
    pub since: SystemTime,
    /// How many times its state changed since it started.
    pub transitions: u64,
    /// How many times it resigned as master (it lost its data path).
    pub resignations: u64,
    /// How many times tracking held its priority down until its health
    /// view was fresh.
    pub preemption_holds: u64,
    /// Adverts it rejected since it started, by reason (`ttl`, `checksum`, ...).
    pub adverts_rejected: BTreeMap<String, u64>,
}

/// A VRRP instance's role (RFC 5798 §6.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VrrpState {
    Initialize,
    Backup,
    Master,
    Fault,
}

impl StatusReport {
    /// Parses the JSON of `GET /status`.
    pub fn from_json(json: &str) -> Result<StatusReport, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// Service `name`.
    ///
    /// # Panics
    /// If the node has no such service: every test knows its services.
    pub fn service(&self, name: &str) -> &ServiceReport {
        self.services
            .iter()
            .find(|service| service.name == name)
            .unwrap_or_else(|| panic!("no service {name:?} in the status: {self:?}"))
    }

    /// Packets passed or dropped for `reason` (0 when not listed).
    pub fn data_path_reason(&self, reason: &str) -> u64 {
        self.data_path.reasons.get(reason).copied().unwrap_or(0)
    }

    /// Every backend of every service.
    pub fn backends(&self) -> impl Iterator<Item = &BackendReport> {
        self.services.iter().flat_map(|service| &service.backends)
    }

    /// The configuration running.
    ///
    /// # Panics
    /// If the status carries none: every `lb` reports it.
    pub fn config(&self) -> ConfigReport {
        self.config
            .clone()
            .unwrap_or_else(|| panic!("the node's /status has no `config` (hash, reloads)"))
    }

    /// The VRRP instance.
    ///
    /// # Panics
    /// If the status carries none: the node runs VRRP, so a missing `vrrp`
    /// means `lb` does not report it, and the test must fail, not skip.
    pub fn vrrp(&self) -> VrrpReport {
        self.vrrp.clone().unwrap_or_else(|| {
            panic!("the node runs VRRP but its /status has no `vrrp` (role, priority, master)")
        })
    }
}

impl ServiceReport {
    /// Backend `name`.
    ///
    /// # Panics
    /// If the service has no such backend.
    pub fn backend(&self, name: &str) -> &BackendReport {
        self.backends
            .iter()
            .find(|backend| backend.name == name)
            .unwrap_or_else(|| panic!("no backend {name:?} in service {}", self.name))
    }
}

impl Counters {
    /// What was counted since `earlier` was read (counters only grow while
    /// one `lb` runs).
    pub fn since(self, earlier: Counters) -> Counters {
        Counters {
            packets: self.packets.saturating_sub(earlier.packets),
            bytes: self.bytes.saturating_sub(earlier.bytes),
            new_flows: self.new_flows.saturating_sub(earlier.new_flows),
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

impl fmt::Display for VrrpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VrrpState::Initialize => "initialize",
            VrrpState::Backup => "backup",
            VrrpState::Master => "master",
            VrrpState::Fault => "fault",
        })
    }
}

/// An RFC 3339 time such as `"2024-05-01T12:00:00.123Z"`.
fn rfc3339<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SystemTime, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_rfc3339(&text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A report as `lb` writes it, with fields the harness does not read.
    const REPORT: &str = r#"{
      "services": [{
        "name": "web", "vip": "10.0.0.100", "port": 80, "protocol": "tcp",
        "scheduler": "maglev", "table_fingerprint": "00000000deadbeef",
        "counters": {"packets": 10, "bytes": 1000, "new_flows": 2},
        "backends": [{
          "name": "web1", "address": "10.0.0.1", "state": "draining",
          "reason": "drained by admin", "since": "2023-11-14T22:13:20.123Z",
          "health": "up", "health_reason": "HTTP status 200",
          "health_since": "2023-11-14T22:13:20.123Z", "settled": true,
          "health_unknown": null, "admin": "draining",
          "weight": 1, "configured_weight": 1,
          "counters": {"packets": 4, "bytes": 400, "new_flows": 1}
        }, {
          "name": "web2", "address": "10.0.0.2", "state": "down",
          "reason": "passive: 3 handshakes not completed",
          "since": "2023-11-14T22:13:20.123Z",
          "health": "down", "health_by": "passive",
          "health_reason": "passive: 3 handshakes not completed",
          "health_since": "2023-11-14T22:13:20.123Z", "settled": true,
          "health_unknown": null, "admin": "enabled",
          "weight": 1, "configured_weight": 1,
          "counters": {"packets": 4, "bytes": 400, "new_flows": 1},
          "handshakes": {"completed": 7, "retransmitted": 1, "failed": 3}
        }]
      }],
      "vrrp": {
        "state": "backup", "priority": 100, "configured_priority": 100,
        "master": "10.0.0.11", "since": "2023-11-14T22:13:20.123Z",
        "transitions": 1, "resignations": 0, "preemption_holds": 3,
        "adverts_rejected": {"ttl": 2, "checksum": 0}
      }
    }"#;

    #[test]
    fn a_report_is_read_ignoring_unknown_fields() {
        let report = StatusReport::from_json(REPORT).unwrap();
        let service = report.service("web");
        assert_eq!(service.counters.packets, 10);
        let backend = service.backend("web1");
        assert_eq!(backend.state, BackendState::Draining);
        assert_eq!(backend.health, Health::Up);
        assert_eq!(backend.health_by, None, "an lb without passive health");
        assert_eq!(backend.handshakes, None);
        let passive = service.backend("web2");
        assert_eq!(
            (passive.state, passive.health, passive.health_by),
            (BackendState::Down, Health::Down, Some(HealthBy::Passive))
        );
        assert_eq!(
            passive.handshakes,
            Some(Handshakes {
                completed: 7,
                retransmitted: 1,
                failed: 3
            })
        );
        assert_eq!(
            backend.since,
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)
        );
        assert_eq!(
            report.vrrp(),
            VrrpReport {
                state: VrrpState::Backup,
                priority: 100,
                master: Some(Ipv4Addr::new(10, 0, 0, 11)),
                since: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
                transitions: 1,
                resignations: 0,
                preemption_holds: 3,
                adverts_rejected: BTreeMap::from([
                    ("ttl".to_owned(), 2),
                    ("checksum".to_owned(), 0)
                ]),
            }
        );
    }

    #[test]
    #[should_panic(expected = "no `vrrp`")]
    fn a_missing_vrrp_report_fails_loudly() {
        let report = StatusReport::from_json(r#"{"services": []}"#).unwrap();
        assert!(report.vrrp.is_none());
        report.vrrp();
    }

    #[test]
    fn counters_since_an_earlier_read() {
        let earlier = Counters {
            packets: 5,
            bytes: 500,
            new_flows: 1,
        };
        let now = Counters {
            packets: 8,
            bytes: 900,
            new_flows: 1,
        };
        assert_eq!(
            now.since(earlier),
            Counters {
                packets: 3,
                bytes: 400,
                new_flows: 0
            }
        );
    }
}
