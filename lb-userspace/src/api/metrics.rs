//! `GET /metrics`: the node's services, backends, VRRP instance and data
//! path counters in the Prometheus text format (0.0.4), rendered on each
//! request from the published snapshot, the counters read at that moment and
//! the VRRP status; nothing runs in the background and nothing is cached.
//!
//! Conventions: base units (`_bytes`), `_total` on counters, and only
//! low-cardinality labels (`service`, `backend`, `vrid`, and the fixed sets
//! `state`, `health`, `action`, `reason`, `outcome`). A service's VIP, port, protocol
//! and scheduler, and a backend's address, are labels of the `*_info`
//! gauges (value 1) only, to be joined in queries. States are enum-style
//! gauges: one series per state name, 1 for the current one, 0 for the
//! others. A counter the data path cannot read is left out of that scrape
//! (logged), rather than shown as a zero that would look like a reset.

use std::fmt;
use std::sync::Arc;

use lb_common::handshake::HandshakeCounters;
use lb_common::maps::{Counters, Reason, XDP_ACTION_NAMES};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    prometheus_text, DescriptorEncoder, EncodeGaugeValue, EncodeMetric,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::model::{BgpReport, VrrpReport};
use crate::dataplane::{CounterReader, DataplaneError};
use crate::domain::{BackendState, ConfigStatus, Health, HealthSource, Snapshot};
use crate::flows::FlowCensus;
use crate::hooks::{HookFailures, HookKind};
use crate::vrrp::State;

/// The `Content-Type` of what [`render`] returns.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Every backend state, in the order `lb_backend_state` lists them.
const BACKEND_STATES: [BackendState; 4] = [
    BackendState::Up,
    BackendState::Down,
    BackendState::Draining,
    BackendState::Disabled,
];

/// Every health a checked backend can have, in the order `lb_backend_health` lists them.
const HEALTHS: [Health; 2] = [Health::Up, Health::Down];

/// Every VRRP state, in the order `lb_vrrp_state` lists them.
const VRRP_STATES: [State; 4] = [
    State::Initialize,
    State::Backup,
    State::Master,
    State::Fault,
];

/// The exposition of one scrape (see [`Scrape`]).
pub fn render(scrape: Scrape) -> Result<String, fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape));
    let mut text = String::new();
    prometheus_text::encode(&mut text, &registry)?;
    Ok(text)
}

/// What one scrape shows, as a [`Collector`] of const metrics: the
/// controller's `snapshot`, with the traffic read from `counters` now, the
/// running configuration and its reloads (`config`), the VRRP instance's
/// report and the BGP announcer's if there are, the count of health check
/// results set aside as unknown, the notify hooks' failures and the last
/// census of active flows.
pub struct Scrape {
    pub snapshot: Arc<Snapshot>,
    pub counters: Arc<dyn CounterReader>,
    pub config: ConfigStatus,
    pub vrrp: Option<VrrpReport>,
    pub bgp: Option<BgpReport>,
    pub unknown_results: u64,
    pub hook_failures: HookFailures,
    pub census: Arc<FlowCensus>,
}

impl fmt::Debug for Scrape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scrape").finish_non_exhaustive()
    }
}

/// The labels of one series.
type Labels = Vec<(&'static str, String)>;

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let e = &mut encoder;
        gauge(
            e,
            "lb_build_info",
            "The running lb's version (value 1)",
            [(vec![("version", env!("CARGO_PKG_VERSION").to_owned())], 1)],
        )?;
        self.encode_config(e)?;
        self.encode_services(e)?;
        self.encode_backends(e)?;
        counter(
            e,
            "lb_notify_hook_failures",
            "Notify hooks that failed (could not start, exited non-zero, were killed after their timeout, or found the queue full), by hook: vrrp (notify_master, notify_backup, notify_fault) or backend (notify_backend)",
            HookKind::ALL
                .map(|kind| (vec![("hook", kind.name().to_owned())], self.hook_failures.get(kind))),
        )?;
        if let Some(vrrp) = &self.vrrp {
            encode_vrrp(e, vrrp)?;
        }
        if let Some(bgp) = &self.bgp {
            gauge(
                e,
                "lb_bgp_vip_announced",
                "1 while the VIP's route is in lb's table, so the routing daemon announces it (with [bgp] only)",
                bgp.vips.iter().map(|vip| {
                    (vec![("vip", vip.vip.to_string())], i64::from(vip.announced))
                }),
            )?;
        }
        self.encode_xdp(e)
    }
}

impl Scrape {
    fn encode_config(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let config = &self.config;
        gauge(
            e,
            "lb_config_info",
            "The configuration file running: the FNV-1a hash of its bytes, as lb check-config prints it (value 1)",
            [(vec![("hash", config.hash.clone())], 1)],
        )?;
        counter(
            e,
            "lb_config_reloads",
            "Reloads of the configuration file since start, by result: ok (the file runs), failed (refused; the running configuration stays)",
            [
                (vec![("result", "ok".to_owned())], config.reloads_ok),
                (vec![("result", "failed".to_owned())], config.reloads_failed),
            ],
        )?;
        let applied_at = config
            .applied_at
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        gauge(
            e,
            "lb_config_last_reload_success_timestamp_seconds",
            "When the running configuration was applied (at start, or by the last reload that took), in seconds since the Unix epoch",
            [(Labels::new(), applied_at.as_secs_f64())],
        )
    }

    fn encode_services(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let services = &self.snapshot.services;
        gauge(
            e,
            "lb_service_info",
            "A configured service: its VIP, port, protocol and scheduler (value 1)",
            services.iter().map(|s| {
                let labels = vec![
                    ("service", s.name.clone()),
                    ("vip", s.vip.to_string()),
                    ("port", s.port.to_string()),
                    ("protocol", s.protocol.clone()),
                    ("scheduler", s.scheduler.clone()),
                ];
                (labels, 1)
            }),
        )?;
        let traffic: Vec<(Labels, Counters)> = services
            .iter()
            .filter_map(|s| {
                let counters = readable(self.counters.service_counters(s.id), "service")?;
                Some((vec![("service", s.name.clone())], counters))
            })
            .collect();
        encode_traffic(e, "lb_service", "service", &traffic)
    }

    fn encode_backends(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let members: Vec<_> = self
            .snapshot
            .services
            .iter()
            .flat_map(|s| s.backends.iter().map(move |b| (s, b)))
            .collect();
        let labels = |service: &str, backend: &str| -> Labels {
            vec![
                ("service", service.to_owned()),
                ("backend", backend.to_owned()),
            ]
        };
        gauge(
            e,
            "lb_backend_info",
            "A backend of a service: its address (value 1)",
            members.iter().map(|(s, b)| {
                let mut labels = labels(&s.name, &b.name);
                labels.push(("address", b.address.to_string()));
                (labels, 1)
            }),
        )?;
        gauge(
            e,
            "lb_backend_state",
            "What the data path does with the backend: 1 for its state, 0 for the others",
            members.iter().flat_map(|(s, b)| {
                BACKEND_STATES.iter().map(move |&state| {
                    let mut labels = labels(&s.name, &b.name);
                    labels.push(("state", state.to_string()));
                    (labels, i64::from(b.state == state))
                })
            }),
        )?;
        gauge(
            e,
            "lb_backend_health",
            "What the checks say about the backend: 1 for its health, 0 for the other (checked backends only)",
            members.iter().flat_map(|(s, b)| {
                let checked = b.health;
                HEALTHS.iter().filter_map(move |&health| {
                    let mut labels = labels(&s.name, &b.name);
                    labels.push(("health", health.to_string()));
                    Some((labels, i64::from(checked? == health)))
                })
            }),
        )?;
        gauge(
            e,
            "lb_backend_health_passive",
            "1 while the backend's health was set by passive health (its handshakes failed), 0 while by its checks (checked backends only)",
            members
                .iter()
                .filter(|(_, b)| b.health.is_some())
                .map(|(s, b)| {
                    let passive = b.health_by == HealthSource::Passive;
                    (labels(&s.name, &b.name), i64::from(passive))
                }),
        )?;
        gauge(
            e,
            "lb_backend_health_unknown",
            "1 while this node cannot check the backend (its own link, route or source address); lb_backend_health is then the last health it knew",
            members
                .iter()
                .filter(|(_, b)| b.health.is_some())
                .map(|(s, b)| (labels(&s.name, &b.name), i64::from(b.health_unknown.is_some()))),
        )?;
        gauge(
            e,
            "lb_backend_health_settled",
            "1 once the backend's health is a fresh verdict of this node's checks (after start, after a change, and after any time this node could not check)",
            members
                .iter()
                .map(|(s, b)| (labels(&s.name, &b.name), i64::from(b.settled))),
        )?;
        gauge(
            e,
            "lb_backend_health_check_duration_seconds",
            "How long the backend's last completed health check took (checked backends, once checked)",
            members.iter().filter_map(|(s, b)| {
                let took = b.last_check.as_ref()?.get()?;
                Some((labels(&s.name, &b.name), took.as_secs_f64()))
            }),
        )?;
        counter(
            e,
            "lb_health_check_results_unknown",
            "Health check results set aside as unknown because of this node's own state (link down, no route, source address missing)",
            [(Labels::new(), self.unknown_results)],
        )?;
        gauge(
            e,
            "lb_backend_weight",
            "The backend's weight in use",
            members
                .iter()
                .map(|(s, b)| (labels(&s.name, &b.name), i64::from(b.weight))),
        )?;
        counter(
            e,
            "lb_backend_state_changes",
            "Changes of the backend's state (up, down, draining, disabled) since lb started",
            members
                .iter()
                .map(|(s, b)| (labels(&s.name, &b.name), b.state_changes)),
        )?;
        gauge(
            e,
            "lb_backend_active_flows",
            "The backend's flows seen within the idle timeout whose client sent no FIN or RST, at the last census of the flow table",
            members.iter().map(|(s, b)| {
                let active = i64::try_from(self.census.active_flows(b.id)).unwrap_or(i64::MAX);
                (labels(&s.name, &b.name), active)
            }),
        )?;
        gauge(
            e,
            "lb_flow_table_entries",
            "Entries in the flow table, active or not, at its last census",
            [(
                Labels::new(),
                i64::try_from(self.census.entries).unwrap_or(i64::MAX),
            )],
        )?;
        let traffic: Vec<(Labels, Counters)> = members
            .iter()
            .filter_map(|(s, b)| {
                let counters = readable(self.counters.backend_counters(b.id), "backend")?;
                Some((labels(&s.name, &b.name), counters))
            })
            .collect();
        encode_traffic(e, "lb_backend", "backend", &traffic)?;
        let handshakes: Vec<(Labels, HandshakeCounters)> = members
            .iter()
            .filter_map(|(s, b)| {
                let counters = readable(self.counters.handshake_counters(b.id), "handshake")?;
                Some((labels(&s.name, &b.name), counters))
            })
            .collect();
        counter(
            e,
            "lb_backend_handshakes",
            "TCP handshakes the data path saw for the backend (passive health), by outcome: completed, retransmitted (the SYN was sent again, and given to the next backend), failed (retransmitted, or not completed within handshake_timeout)",
            handshakes.iter().flat_map(|(labels, counters)| {
                [
                    ("completed", counters.completed),
                    ("retransmitted", counters.retransmitted),
                    ("failed", counters.failed),
                ]
                .map(|(outcome, count)| {
                    let mut labels = labels.clone();
                    labels.push(("outcome", outcome.to_owned()));
                    (labels, count)
                })
            }),
        )
    }

    fn encode_xdp(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let actions = readable(self.counters.action_counters(), "XDP action")
            .into_iter()
            .flat_map(|packets| XDP_ACTION_NAMES.into_iter().zip(packets))
            .map(|(action, packets)| (vec![("action", action.to_owned())], packets));
        counter(
            e,
            "lb_xdp_packets",
            "Packets seen by the XDP program, by the action it returned",
            actions,
        )?;
        let reasons = readable(self.counters.reason_counters(), "reason")
            .into_iter()
            .flat_map(|packets| Reason::ALL.into_iter().zip(packets))
            .map(|(reason, packets)| (vec![("reason", reason.name().to_owned())], packets));
        counter(
            e,
            "lb_xdp_reason_packets",
            "Packets the XDP program passed to the kernel or dropped, by reason",
            reasons,
        )
    }
}

/// Packets, bytes and new flows of services or backends (`prefix` `lb_service`
/// or `lb_backend`, `what` names them in the help).
fn encode_traffic(
    e: &mut DescriptorEncoder,
    prefix: &str,
    what: &str,
    traffic: &[(Labels, Counters)],
) -> fmt::Result {
    let series = |value: fn(&Counters) -> u64| {
        traffic
            .iter()
            .map(move |(labels, counters)| (labels.clone(), value(counters)))
    };
    counter(
        e,
        &format!("{prefix}_packets"),
        &format!("Packets forwarded to the {what}"),
        series(|c| c.packets),
    )?;
    counter(
        e,
        &format!("{prefix}_bytes"),
        &format!("Bytes of the packets forwarded to the {what}"),
        series(|c| c.bytes),
    )?;
    counter(
        e,
        &format!("{prefix}_new_flows"),
        &format!("Flows the scheduler gave to the {what}"),
        series(|c| c.new_flows),
    )
}

fn encode_vrrp(e: &mut DescriptorEncoder, vrrp: &VrrpReport) -> fmt::Result {
    let vrid = || -> Labels { vec![("vrid", vrrp.vrid.to_string())] };
    gauge(
        e,
        "lb_vrrp_info",
        "The VRRP instance: its interface (value 1)",
        [(
            vec![
                ("vrid", vrrp.vrid.to_string()),
                ("interface", vrrp.interface.clone()),
            ],
            1,
        )],
    )?;
    gauge(
        e,
        "lb_vrrp_state",
        "The VRRP instance's state: 1 for the current one, 0 for the others",
        VRRP_STATES.iter().map(|&state| {
            let mut labels = vrid();
            labels.push(("state", state.to_string()));
            (labels, i64::from(vrrp.state == state))
        }),
    )?;
    gauge(
        e,
        "lb_vrrp_priority",
        "The priority advertised now (tracking may have lowered it)",
        [(vrid(), i64::from(vrrp.priority))],
    )?;
    gauge(
        e,
        "lb_vrrp_configured_priority",
        "The configured priority ([vrrp] priority)",
        [(vrid(), i64::from(vrrp.configured_priority))],
    )?;
    counter(
        e,
        "lb_vrrp_transitions",
        "State changes of the VRRP instance (to and from master) since start",
        [(vrid(), vrrp.transitions)],
    )?;
    counter(
        e,
        "lb_vrrp_resignations",
        "Times this node resigned as master because its XDP program was no longer attached",
        [(vrid(), vrrp.resignations)],
    )?;
    counter(
        e,
        "lb_vrrp_preemption_holds",
        "Times tracking held the priority at the lowest until this node's health view was fresh",
        [(vrid(), vrrp.preemption_holds)],
    )?;
    counter(
        e,
        "lb_vrrp_adverts_sent",
        "VRRP adverts sent",
        [(vrid(), vrrp.adverts_sent)],
    )?;
    counter(
        e,
        "lb_vrrp_adverts_accepted",
        "VRRP adverts received and accepted",
        [(vrid(), vrrp.adverts_accepted)],
    )?;
    counter(
        e,
        "lb_vrrp_adverts_rejected",
        "VRRP adverts received and rejected, by reason",
        vrrp.adverts_rejected.iter().map(|(reason, &count)| {
            let mut labels = vrid();
            labels.push(("reason", reason.clone()));
            (labels, count)
        }),
    )
}

/// A counter family `name` (`_total` is added) with one series per item.
fn counter(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Labels, u64)>,
) -> fmt::Result {
    let mut family = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in series {
        ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A gauge family `name` with one series per item.
fn gauge<N: EncodeGaugeValue>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Labels, N)>,
) -> fmt::Result {
    let mut family = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in series {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// The value read, or `None` (logged) if the data path could not be read.
fn readable<T>(read: Result<T, DataplaneError>, what: &str) -> Option<T> {
    read.map_err(|error| tracing::warn!(%error, "reading {what} counters for /metrics"))
        .ok()
}

#[cfg(test)]
mod tests;
