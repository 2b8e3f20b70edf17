//! What the control API sends and receives, as JSON: the status report of
//! `GET /status` and the bodies of the admin actions.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// `GET /status`: every service and backend, as the controller sees them now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub services: Vec<ServiceStatus>,
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
    pub state: ServingState,
    /// Why it is in `state`: the check or admin action that put it there.
    pub reason: String,
    /// When it entered `state`.
    #[serde(with = "rfc3339")]
    pub since: SystemTime,
    /// What the checks say, whatever the admin state.
    pub health: HealthStatus,
    /// The result that set `health`, or why it is not checked.
    pub health_reason: String,
    #[serde(with = "rfc3339")]
    pub health_since: SystemTime,
    pub admin: AdminState,
    /// The weight in use (set by the API, or the configured one).
    pub weight: u32,
    pub configured_weight: u32,
    /// Traffic forwarded to it, from the data path's counters.
    pub counters: Traffic,
}

/// Counters of the data path, summed over CPUs since `lb run` started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Traffic {
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
}

/// What the data path does with a backend; see README "Backend states".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServingState {
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

impl fmt::Display for ServingState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServingState::Up => "up",
            ServingState::Down => "down",
            ServingState::Draining => "draining",
            ServingState::Disabled => "disabled",
        })
    }
}

/// What the health checks say about a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Up,
    Down,
    /// The service has no check: always up.
    Unchecked,
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HealthStatus::Up => "up",
            HealthStatus::Down => "down",
            HealthStatus::Unchecked => "-",
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_report_survives_json_with_millisecond_times() {
        let since = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let backend = BackendStatus {
            name: "web1".into(),
            address: Ipv4Addr::new(10, 0, 0, 1),
            state: ServingState::Draining,
            reason: "drained by admin".into(),
            since,
            health: HealthStatus::Up,
            health_reason: "HTTP status 200".into(),
            health_since: since,
            admin: AdminState::Draining,
            weight: 2,
            configured_weight: 1,
            counters: Traffic {
                packets: 10,
                bytes: 1000,
                new_flows: 2,
            },
        };
        let report = StatusReport {
            services: vec![ServiceStatus {
                name: "web".into(),
                vip: Ipv4Addr::new(10, 0, 0, 100),
                port: 80,
                protocol: "tcp".into(),
                scheduler: "maglev".into(),
                counters: Traffic::default(),
                backends: vec![backend],
            }],
        };
        let json = serde_json::to_string(&report).unwrap();
        assert!(
            json.contains(r#""since":"2023-11-14T22:13:20.123Z""#),
            "{json}"
        );
        assert!(json.contains(r#""state":"draining""#), "{json}");
        let back: StatusReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
        assert_eq!(
            back.backend("web", "web1").map(|b| b.state),
            Some(ServingState::Draining)
        );
        assert!(back.backend("web", "web9").is_none());
    }
}
