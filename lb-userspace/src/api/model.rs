//! What the control API sends and receives, as JSON: the status report of
//! `GET /status` and the bodies of the admin actions.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::domain::{
    AdminState, BackendSnapshot, BackendState, ConfigStatus, Health, HealthSource,
    LastCheckDuration,
};
use crate::flows::FlowCensus;
use crate::ha::bgp::BgpStatus;
use crate::neighbour::format_mac;
use crate::vrrp::State;

/// `GET /status`: every service and backend, as the controller sees them
/// now, the configuration file running, and the VRRP instance if `[vrrp]`
/// is configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub config: ConfigReport,
    pub services: Vec<ServiceStatus>,
    /// Packets of the data path by action and by pass/drop reason.
    #[serde(default)]
    pub data_path: DataPathReport,
    /// The flow table's last census.
    #[serde(default)]
    pub flows: FlowsReport,
    /// Absent without `[vrrp]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vrrp: Option<VrrpReport>,
    /// Absent without `[bgp]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<BgpReport>,
}

/// The configuration file running now and how its reloads went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigReport {
    /// FNV-1a of the file's bytes, 16 hex digits (`lb check-config` prints
    /// a file's).
    pub hash: String,
    /// When it was applied: at start, or by the last reload that took.
    #[serde(with = "rfc3339")]
    pub applied_at: SystemTime,
    /// Reloads since start, by outcome.
    pub reloads: ReloadCounts,
    /// Why the last reload failed, while the last one did; `null` otherwise.
    pub last_reload_error: Option<String>,
}

/// Reloads by outcome: `ok` took (the file runs), `failed` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReloadCounts {
    pub ok: u64,
    pub failed: u64,
}

impl ConfigReport {
    /// `status` as the API shows it.
    pub fn new(status: &ConfigStatus) -> Self {
        ConfigReport {
            hash: status.hash.clone(),
            applied_at: status.applied_at,
            reloads: ReloadCounts {
                ok: status.reloads_ok,
                failed: status.reloads_failed,
            },
            last_reload_error: status.last_error.clone(),
        }
    }
}

/// The BGP announcer of an active-active node: each VIP it may announce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BgpReport {
    pub vips: Vec<VipAnnouncementReport>,
}

/// One VIP's announcement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipAnnouncementReport {
    pub vip: Ipv4Addr,
    /// Its route is in `lb`'s table, so the routing daemon announces it.
    pub announced: bool,
    /// Why it is withdrawn (`no serving backend`, `xdp program not
    /// attached`, ...); `null` while it is wanted.
    pub withdraw_reason: Option<String>,
}

impl BgpReport {
    /// `status` as the API shows it.
    pub fn new(status: &BgpStatus) -> Self {
        BgpReport {
            vips: status
                .vips
                .iter()
                .map(|(&vip, announcement)| VipAnnouncementReport {
                    vip,
                    announced: announcement.announced,
                    withdraw_reason: announcement
                        .withdraw_reason
                        .map(|reason| reason.to_string()),
                })
                .collect(),
        }
    }
}

impl StatusReport {
    /// Backend `backend` of service `service`, if both exist.
    pub fn backend(&self, service: &str, backend: &str) -> Option<&BackendStatus> {
        self.services
            .iter()
            .find(|s| s.name == service)?
            .backends
            .iter()
            .find(|b| b.name == backend)
    }
}

/// One service and its backends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    pub vip: Ipv4Addr,
    pub port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// `maglev` or `round-robin`.
    pub scheduler: String,
    /// How packets reach the backend: `dsr-l2`.
    pub forwarding: String,
    /// The fingerprint of the service's table (16 hex digits): nodes that
    /// pick the same backend for every flow show the same.
    pub table_fingerprint: String,
    /// Traffic of the service, from the data path's counters.
    pub counters: Traffic,
    pub backends: Vec<BackendStatus>,
}

/// One backend of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendStatus {
    pub name: String,
    pub address: Ipv4Addr,
    /// What the data path does with it.
    pub state: BackendState,
    /// Why it is in `state`: the check or admin action that put it there.
    pub reason: String,
    /// When it entered `state`.
    #[serde(with = "rfc3339")]
    pub since: SystemTime,
    /// What the checks say, whatever the admin state; `None` (JSON
    /// `"unchecked"`): the service has no check.
    #[serde(with = "health_or_unchecked")]
    pub health: Option<Health>,
    /// The result that set `health`, or why it is not checked.
    pub health_reason: String,
    #[serde(with = "rfc3339")]
    pub health_since: SystemTime,
    /// The mechanism that set `health`: `checks`, or `passive` (its
    /// handshakes failed, see `observe`).
    #[serde(default)]
    pub health_by: HealthSource,
    /// Whether `health` is a fresh verdict of this node's checks (see
    /// [`BackendSnapshot::settled`]).
    pub settled: bool,
    /// Why this node cannot check the backend right now; `health` is then
    /// the last one it knew.
    pub health_unknown: Option<String>,
    /// See [`BackendSnapshot::joining`].
    pub joining: bool,
    pub admin: AdminState,
    /// The weight in use (set by the API, or the configured one).
    pub weight: u32,
    pub configured_weight: u32,
    /// How long its check's last completed run took, in seconds; `null`
    /// before the first one and for a backend that is not checked.
    #[serde(default, with = "seconds")]
    pub health_check_duration_seconds: Option<Duration>,
    /// The MAC its frames are sent to (`02:00:00:00:00:01`), the last one
    /// known while `mac_unresolved`.
    #[serde(default)]
    pub mac: Option<String>,
    /// Its neighbour entry failed and could not be resolved again: `down`
    /// (reason `no MAC: neighbour unresolved ...`) until it is.
    #[serde(default)]
    pub mac_unresolved: bool,
    /// Its flows seen within the idle timeout whose client sent no FIN or
    /// RST, at the last census (`flows.counted_at`).
    #[serde(default)]
    pub active_flows: u64,
    /// See [`BackendSnapshot::backup`].
    #[serde(default)]
    pub backup: bool,
    /// See [`BackendSnapshot::standby`].
    #[serde(default)]
    pub standby: bool,
    /// Changes of `state` since `lb` started.
    #[serde(default)]
    pub state_changes: u64,
    /// Its TCP handshakes as the data path saw them (passive health).
    #[serde(default)]
    pub handshakes: Handshakes,
    /// Traffic forwarded to it, from the data path's counters.
    pub counters: Traffic,
}

/// A backend's TCP handshakes seen by the data path (services with
/// `observe = "layer4"`), summed over CPUs since the program was loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Handshakes {
    /// Completed: the client's ACK after the SYN arrived.
    pub completed: u64,
    /// SYNs retransmitted on an incomplete handshake (each one sent to the
    /// next backend instead).
    pub retransmitted: u64,
    /// Seen to fail: retransmitted, or not completed within
    /// `handshake_timeout` (a watched sample under a high rate).
    pub failed: u64,
}

/// The last census of the flow table (see [`crate::flows`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FlowsReport {
    /// When the active flows were last counted; `null` before the first census.
    #[serde(default, with = "optional_rfc3339")]
    pub counted_at: Option<SystemTime>,
    /// Entries in the flow table, active or not.
    pub entries: u64,
    /// A flow idle this long no longer counts as active.
    pub idle_timeout_seconds: u64,
}

impl FlowsReport {
    pub fn new(census: &FlowCensus) -> Self {
        FlowsReport {
            counted_at: census.taken_at,
            entries: census.entries,
            idle_timeout_seconds: crate::flows::IDLE_TIMEOUT.as_secs(),
        }
    }
}

impl BackendStatus {
    /// `backend` as the controller published it, with its `counters`, its
    /// `handshakes` and its active flows at the last census.
    pub fn new(
        backend: &BackendSnapshot,
        counters: Traffic,
        handshakes: Handshakes,
        census: &FlowCensus,
    ) -> Self {
        BackendStatus {
            name: backend.name.clone(),
            address: backend.address,
            state: backend.state,
            reason: backend.reason.clone(),
            since: backend.since,
            health: backend.health,
            health_reason: backend.health_reason.clone(),
            health_since: backend.health_since,
            health_by: backend.health_by,
            settled: backend.settled,
            health_unknown: backend.health_unknown.clone(),
            joining: backend.joining,
            admin: backend.admin,
            weight: backend.weight,
            configured_weight: backend.configured_weight,
            health_check_duration_seconds: backend
                .last_check
                .as_ref()
                .and_then(LastCheckDuration::get),
            mac: backend.mac.as_ref().map(format_mac),
            mac_unresolved: backend.mac_unresolved,
            active_flows: census.active_flows(backend.id),
            backup: backend.backup,
            standby: backend.standby,
            state_changes: backend.state_changes,
            handshakes,
            counters,
        }
    }
}

/// Counters of the data path, summed over CPUs since `lb run` started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Traffic {
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
}

/// The data path's per-action and per-reason packet counters, summed over
/// CPUs since the program was loaded; every action and reason is listed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DataPathReport {
    /// Packets by XDP action (`aborted`, `drop`, `pass`, `tx`, `redirect`).
    pub actions: BTreeMap<String, u64>,
    /// Packets passed or dropped, by reason (`not_for_us`, `vip_other_port`,
    /// `fragment`, ...).
    pub reasons: BTreeMap<String, u64>,
}

/// This node's VRRP instance (`[vrrp]`), as it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VrrpReport {
    pub vrid: u8,
    pub interface: String,
    /// `[vrrp] gateway_address`, held with the VIPs while master (on
    /// `global.server_interface`). Absent when not configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_address: Option<Ipv4Addr>,
    /// `initialize`, `backup`, `master` or `fault`.
    #[serde(with = "vrrp_state")]
    pub state: State,
    /// The priority advertised now (tracking may have lowered it).
    pub priority: u8,
    /// `[vrrp] priority`.
    pub configured_priority: u8,
    /// This node's primary address while master, the current master's
    /// while backup; `null` otherwise (or while no master is heard).
    pub master: Option<Ipv4Addr>,
    /// When it entered `state`.
    #[serde(with = "rfc3339")]
    pub since: SystemTime,
    /// State changes since start.
    pub transitions: u64,
    /// Times this node resigned as master because it lost its data path.
    pub resignations: u64,
    /// Times tracking held the priority at the lowest until this node's
    /// health view was fresh (after start, or after it could not check).
    pub preemption_holds: u64,
    /// Adverts received and accepted since start.
    pub adverts_accepted: u64,
    /// Adverts received and rejected since start, by reason (`ttl`,
    /// `checksum`, `vrid_mismatch`, ...; every reason is listed).
    pub adverts_rejected: BTreeMap<String, u64>,
    /// Adverts sent since start.
    pub adverts_sent: u64,
    /// While master without every VIP (and the gateway address) in place:
    /// why one was refused (it is retried with every advert). Absent
    /// otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_error: Option<String>,
}

/// Body of `PUT /services/{service}/backends/{backend}/weight`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightRequest {
    pub weight: u32,
}

/// Body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// Times as RFC 3339 strings in UTC with milliseconds, e.g.
/// `"2024-05-01T12:00:00.123Z"`.
mod rfc3339 {
    use std::time::SystemTime;

    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(time: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_rfc3339_millis(*time))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_rfc3339(&text).map_err(D::Error::custom)
    }
}

/// Optional times as RFC 3339 strings, or `null`.
mod optional_rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        time: &Option<SystemTime>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match time {
            Some(time) => super::rfc3339::serialize(time, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<SystemTime>, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?;
        text.map(|text| humantime::parse_rfc3339(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// `Option<Duration>` as a number of seconds, or `null`.
mod seconds {
    use std::time::Duration;

    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        duration: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match duration {
            Some(duration) => serializer.serialize_f64(duration.as_secs_f64()),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<f64>::deserialize(deserializer)?
            .map(|seconds| Duration::try_from_secs_f64(seconds).map_err(D::Error::custom))
            .transpose()
    }
}

/// `Option<Health>` as `"up"`, `"down"` or `"unchecked"` (`None`).
mod health_or_unchecked {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    use crate::domain::Health;

    const UNCHECKED: &str = "unchecked";

    pub fn serialize<S: Serializer>(
        health: &Option<Health>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match health {
            Some(health) => serializer.collect_str(health),
            None => serializer.serialize_str(UNCHECKED),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Health>, D::Error> {
        match String::deserialize(deserializer)?.as_str() {
            "up" => Ok(Some(Health::Up)),
            "down" => Ok(Some(Health::Down)),
            UNCHECKED => Ok(None),
            other => Err(D::Error::unknown_variant(other, &["up", "down", UNCHECKED])),
        }
    }
}

/// A VRRP [`State`] as its lowercase name.
mod vrrp_state {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    use crate::vrrp::State;

    const STATES: [State; 4] = [
        State::Initialize,
        State::Backup,
        State::Master,
        State::Fault,
    ];

    pub fn serialize<S: Serializer>(state: &State, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(state.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<State, D::Error> {
        let name = String::deserialize(deserializer)?;
        STATES
            .into_iter()
            .find(|state| state.as_str() == name)
            .ok_or_else(|| {
                D::Error::unknown_variant(&name, &["initialize", "backup", "master", "fault"])
            })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn backend(health: Option<Health>, since: SystemTime) -> BackendStatus {
        BackendStatus {
            name: "web1".into(),
            address: Ipv4Addr::new(10, 0, 0, 1),
            state: BackendState::Draining,
            reason: "drained by admin".into(),
            since,
            health,
            health_reason: "HTTP status 200".into(),
            health_since: since,
            settled: true,
            health_unknown: None,
            joining: false,
            admin: AdminState::Draining,
            weight: 2,
            configured_weight: 1,
            health_check_duration_seconds: Some(Duration::from_micros(1_500)),
            mac: Some("02:00:00:00:00:01".into()),
            mac_unresolved: false,
            active_flows: 0,
            backup: false,
            standby: false,
            state_changes: 0,
            counters: Traffic {
                packets: 10,
                bytes: 1000,
                new_flows: 2,
            },
            health_by: crate::domain::HealthSource::Checks,
            handshakes: Default::default(),
        }
    }

    fn report(backends: Vec<BackendStatus>, vrrp: Option<VrrpReport>) -> StatusReport {
        StatusReport {
            config: ConfigReport {
                hash: "0123456789abcdef".into(),
                applied_at: SystemTime::UNIX_EPOCH,
                reloads: ReloadCounts { ok: 2, failed: 1 },
                last_reload_error: Some("lb.toml:3:1: unknown field `mtu`".into()),
            },
            services: vec![ServiceStatus {
                name: "web".into(),
                vip: Ipv4Addr::new(10, 0, 0, 100),
                port: 80,
                protocol: "tcp".into(),
                scheduler: "maglev".into(),
                forwarding: "dsr-l2".into(),
                table_fingerprint: "00000000deadbeef".into(),
                counters: Traffic::default(),
                backends,
            }],
            data_path: DataPathReport {
                actions: [("tx".to_owned(), 5)].into(),
                reasons: [("not_for_us".to_owned(), 2)].into(),
            },
            flows: FlowsReport::default(),
            vrrp,
            bgp: None,
        }
    }

    #[test]
    fn a_report_survives_json_with_millisecond_times() {
        let since = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let report = report(vec![backend(Some(Health::Up), since)], None);
        let json = serde_json::to_string(&report).unwrap();
        assert!(
            json.contains(r#""since":"2023-11-14T22:13:20.123Z""#),
            "{json}"
        );
        assert!(json.contains(r#""state":"draining""#), "{json}");
        assert!(json.contains(r#""health":"up""#), "{json}");
        assert!(
            json.contains(r#""health_check_duration_seconds":0.0015,"mac":"02:00:00:00:00:01","mac_unresolved":false"#),
            "{json}"
        );
        assert!(!json.contains("vrrp"), "absent without [vrrp]: {json}");
        assert!(
            json.contains(r#""config":{"hash":"0123456789abcdef","applied_at":"1970-01-01T00:00:00.000Z","reloads":{"ok":2,"failed":1}"#),
            "{json}"
        );
        let back: StatusReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
        assert_eq!(
            back.backend("web", "web1").map(|b| b.state),
            Some(BackendState::Draining)
        );
        assert!(back.backend("web", "web9").is_none());
    }

    #[test]
    fn a_backup_says_so_and_a_report_without_the_fields_still_reads() {
        let mut standby = backend(Some(Health::Up), SystemTime::UNIX_EPOCH);
        standby.backup = true;
        standby.standby = true;
        let json = serde_json::to_value(&standby).unwrap();
        assert_eq!(
            (&json["backup"], &json["standby"]),
            (&true.into(), &true.into())
        );
        // From an lb that predates backups.
        let mut older = json;
        let object = older.as_object_mut().unwrap();
        object.remove("backup");
        object.remove("standby");
        let back: BackendStatus = serde_json::from_value(older).unwrap();
        assert!(!back.backup && !back.standby);
    }

    #[test]
    fn a_backend_without_checks_has_health_unchecked() {
        let json = serde_json::to_value(backend(None, SystemTime::UNIX_EPOCH)).unwrap();
        assert_eq!(json["health"], "unchecked");
        let back: BackendStatus = serde_json::from_value(json).unwrap();
        assert_eq!(back.health, None);
    }

    #[test]
    fn the_vrrp_report_has_lowercase_states_and_a_null_master_when_none() {
        let since = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let vrrp = VrrpReport {
            vrid: 51,
            interface: "eth0".into(),
            gateway_address: None,
            state: State::Backup,
            priority: 90,
            configured_priority: 150,
            master: None,
            since,
            transitions: 1,
            resignations: 0,
            preemption_holds: 0,
            adverts_accepted: 10,
            adverts_rejected: BTreeMap::from([("ttl".to_owned(), 1)]),
            adverts_sent: 3,
            address_error: None,
        };
        let report = report(Vec::new(), Some(vrrp.clone()));
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(
            json["vrrp"],
            serde_json::json!({
                "vrid": 51,
                "interface": "eth0",
                "state": "backup",
                "priority": 90,
                "configured_priority": 150,
                "master": null,
                "since": "2023-11-14T22:13:20.123Z",
                "transitions": 1,
                "resignations": 0,
                "preemption_holds": 0,
                "adverts_accepted": 10,
                "adverts_rejected": {"ttl": 1},
                "adverts_sent": 3,
            })
        );
        let back: StatusReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);

        // A master whose VIP the kernel refused says why.
        let refused = VrrpReport {
            state: State::Master,
            address_error: Some("10.0.0.100: No buffer space available".into()),
            ..vrrp
        };
        let json = serde_json::to_value(&refused).unwrap();
        assert_eq!(
            json["address_error"],
            "10.0.0.100: No buffer space available"
        );
        assert_eq!(serde_json::from_value::<VrrpReport>(json).unwrap(), refused);

        // A two-armed node shows its gateway address.
        let two_armed = VrrpReport {
            gateway_address: Some(Ipv4Addr::new(10, 1, 0, 1)),
            ..refused
        };
        let json = serde_json::to_value(&two_armed).unwrap();
        assert_eq!(json["gateway_address"], "10.1.0.1");
        assert_eq!(
            serde_json::from_value::<VrrpReport>(json).unwrap(),
            two_armed
        );
    }
}
