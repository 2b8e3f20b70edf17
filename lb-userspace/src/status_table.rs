//! Renders a [`StatusReport`] as what `lb status` prints, in the spirit of
//! `ipvsadm -Ln --stats --rate`: the VRRP line (with `[vrrp]`) or the BGP
//! line (with `[bgp]`), then one line per service, then one per backend
//! with its state, why and for how long, and its traffic (with the rates
//! since the previous report under `--watch`), then the data path's
//! non-zero action and reason counters, and the running configuration's line.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use crate::api::model::{
    BackendStatus, BgpReport, ConfigReport, DataPathReport, StatusReport, Traffic, VrrpReport,
};
use crate::domain::{BackendState, Health, HealthSource};

/// Traffic per second of each service and backend between two reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rates {
    services: HashMap<String, Rate>,
    backends: HashMap<(String, String), Rate>,
}

/// Packets, bytes and new flows per second.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Rate {
    packets: f64,
    bytes: f64,
    new_flows: f64,
}

impl Rate {
    /// From `earlier` to `later` over `elapsed`; a counter that went back
    /// (the daemon restarted) counts as 0.
    fn between(earlier: Traffic, later: Traffic, elapsed: Duration) -> Rate {
        let seconds = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
        let per_second = |earlier: u64, later: u64| later.saturating_sub(earlier) as f64 / seconds;
        Rate {
            packets: per_second(earlier.packets, later.packets),
            bytes: per_second(earlier.bytes, later.bytes),
            new_flows: per_second(earlier.new_flows, later.new_flows),
        }
    }

    fn cells(rate: Option<&Rate>) -> [String; 3] {
        match rate {
            Some(rate) => {
                [rate.packets, rate.bytes, rate.new_flows].map(|value| format!("{value:.0}"))
            }
            None => ["-", "-", "-"].map(str::to_owned),
        }
    }
}

impl Rates {
    /// The rates from `earlier` to `later`, taken `elapsed` apart. Services
    /// and backends missing from `earlier` have none.
    pub fn between(earlier: &StatusReport, later: &StatusReport, elapsed: Duration) -> Rates {
        let mut rates = Rates::default();
        for service in &later.services {
            let Some(before) = earlier.services.iter().find(|s| s.name == service.name) else {
                continue;
            };
            rates.services.insert(
                service.name.clone(),
                Rate::between(before.counters, service.counters, elapsed),
            );
            for backend in &service.backends {
                if let Some(old) = before.backends.iter().find(|b| b.name == backend.name) {
                    rates.backends.insert(
                        (service.name.clone(), backend.name.clone()),
                        Rate::between(old.counters, backend.counters, elapsed),
                    );
                }
            }
        }
        rates
    }
}

/// The report as text, ages counted up to `now`.
pub fn render(report: &StatusReport, now: SystemTime) -> String {
    render_with(report, None, now)
}

/// [`render`] with rate columns (`PKT/S`, `BYTES/S`, `NEW/S`), `-` where
/// `rates` has none: what `lb status --watch` shows.
pub fn render_with_rates(report: &StatusReport, rates: &Rates, now: SystemTime) -> String {
    render_with(report, Some(rates), now)
}

fn render_with(report: &StatusReport, rates: Option<&Rates>, now: SystemTime) -> String {
    let mut text = String::new();
    if let Some(vrrp) = &report.vrrp {
        text.push_str(&vrrp_line(vrrp, now));
        text.push_str("\n\n");
    }
    if let Some(bgp) = &report.bgp {
        text.push_str(&bgp_line(bgp));
        text.push_str("\n\n");
    }
    text.push_str(&tables(report, rates, now));
    text.push('\n');
    text.push_str(&data_path_lines(&report.data_path));
    text.push_str(&config_line(&report.config, now));
    text.push('\n');
    text
}

/// E.g. `Config 3a9f1c07e2b4d816, applied 40s ago; reloads: 2 ok, 1 failed`,
/// and why the last reload failed while it did.
pub fn config_line(config: &ConfigReport, now: SystemTime) -> String {
    let mut line = format!(
        "Config {}, applied {} ago; reloads: {} ok, {} failed",
        config.hash,
        age(config.applied_at, now),
        config.reloads.ok,
        config.reloads.failed
    );
    if let Some(error) = &config.last_reload_error {
        line.push_str("; last reload: ");
        line.push_str(error);
    }
    line
}

/// E.g. `Data path actions: pass=4 tx=120` and `Data path reasons:
/// not_for_us=3 vip_other_port=2`: the non-zero counters, `none` if all are.
pub fn data_path_lines(data_path: &DataPathReport) -> String {
    let non_zero = |counters: &BTreeMap<String, u64>| {
        let shown: Vec<String> = counters
            .iter()
            .filter(|(_, packets)| **packets > 0)
            .map(|(name, packets)| format!("{name}={packets}"))
            .collect();
        if shown.is_empty() {
            "none".to_owned()
        } else {
            shown.join(" ")
        }
    };
    format!(
        "Data path actions: {}\nData path reasons: {}\n",
        non_zero(&data_path.actions),
        non_zero(&data_path.reasons)
    )
}

/// E.g. `BGP: 10.0.0.100 announced, 10.0.0.101 withdrawn (no serving
/// backend)`; `BGP: no VIP` before the services are observed.
pub fn bgp_line(bgp: &BgpReport) -> String {
    if bgp.vips.is_empty() {
        return "BGP: no VIP".to_owned();
    }
    let vips: Vec<String> = bgp
        .vips
        .iter()
        .map(|vip| match (&vip.withdraw_reason, vip.announced) {
            (None, true) => format!("{} announced", vip.vip),
            (None, false) => format!("{} announcing", vip.vip),
            (Some(reason), true) => format!("{} withdrawing ({reason})", vip.vip),
            (Some(reason), false) => format!("{} withdrawn ({reason})", vip.vip),
        })
        .collect();
    format!("BGP: {}", vips.join(", "))
}

/// E.g. `VRRP vrid 51 on eth0: master, priority 150 (configured 150),
/// master 10.0.0.11, since 12s`; `master -` while none is known; then
/// `; VIP missing: ...` while a VIP is refused.
pub fn vrrp_line(vrrp: &VrrpReport, now: SystemTime) -> String {
    let master = vrrp
        .master
        .map_or_else(|| "-".to_owned(), |address| address.to_string());
    let mut line = format!(
        "VRRP vrid {} on {}: {}, priority {} (configured {}), master {master}, since {}",
        vrrp.vrid,
        vrrp.interface,
        vrrp.state,
        vrrp.priority,
        vrrp.configured_priority,
        age(vrrp.since, now)
    );
    if let Some(error) = &vrrp.address_error {
        line.push_str("; VIP missing: ");
        line.push_str(error);
    }
    line
}

/// A backend's health as the tables show it: `-` when not checked.
pub fn health(health: Option<Health>) -> &'static str {
    match health {
        Some(Health::Up) => "up",
        Some(Health::Down) => "down",
        None => "-",
    }
}

/// The STATE cell: the state, and for a backup whether it is in use
/// (`up, backup`) or on standby while a primary serves (`up, backup standby`).
fn state_cell(backend: &BackendStatus) -> String {
    match (backend.backup, backend.standby) {
        (false, _) => backend.state.to_string(),
        (true, false) => format!("{}, backup", backend.state),
        (true, true) => format!("{}, backup standby", backend.state),
    }
}

/// The HEALTH cell: the health, marked while this node cannot check
/// ("unknown, was up") or awaits fresh results ("up, checking"), or set by
/// passive health ("down, passive").
fn health_cell(backend: &BackendStatus) -> String {
    let known = health(backend.health);
    if backend.health_by == HealthSource::Passive {
        format!("{known}, passive")
    } else if backend.health_unknown.is_some() {
        format!("unknown, was {known}")
    } else if !backend.settled {
        format!("{known}, checking")
    } else {
        known.to_owned()
    }
}

/// The HANDSHAKES cell: completed/retransmitted/failed (passive health).
fn handshakes_cell(backend: &BackendStatus) -> String {
    let handshakes = backend.handshakes;
    format!(
        "{}/{}/{}",
        handshakes.completed, handshakes.retransmitted, handshakes.failed
    )
}

/// The services table and the backends table, with rate columns if
/// `rates` is given.
fn tables(report: &StatusReport, rates: Option<&Rates>, now: SystemTime) -> String {
    let services: Vec<Vec<String>> = report
        .services
        .iter()
        .map(|service| {
            let up = service
                .backends
                .iter()
                .filter(|b| b.state == BackendState::Up)
                .count();
            let mut row = vec![
                service.name.clone(),
                format!("{}:{}/{}", service.vip, service.port, service.protocol),
                service.scheduler.clone(),
                service.forwarding.clone(),
                service.table_fingerprint.clone(),
                format!("{up}/{}", service.backends.len()),
                service.counters.packets.to_string(),
                service.counters.bytes.to_string(),
                service.counters.new_flows.to_string(),
            ];
            if let Some(rates) = rates {
                row.extend(Rate::cells(rates.services.get(&service.name)));
            }
            row
        })
        .collect();
    let backends: Vec<Vec<String>> = report
        .services
        .iter()
        .flat_map(|service| {
            service.backends.iter().map(move |backend| {
                let mut row = vec![
                    service.name.clone(),
                    backend.name.clone(),
                    backend.address.to_string(),
                    state_cell(backend),
                    health_cell(backend),
                    age(backend.since, now),
                    backend.weight.to_string(),
                    backend.active_flows.to_string(),
                    backend.counters.packets.to_string(),
                    backend.counters.bytes.to_string(),
                    backend.counters.new_flows.to_string(),
                    handshakes_cell(backend),
                ];
                if let Some(rates) = rates {
                    let key = (service.name.clone(), backend.name.clone());
                    row.extend(Rate::cells(rates.backends.get(&key)));
                }
                row.push(
                    backend
                        .health_unknown
                        .clone()
                        .unwrap_or_else(|| backend.reason.clone()),
                );
                row
            })
        })
        .collect();
    let rate_headers: &[&str] = if rates.is_some() {
        &["PKT/S", "BYTES/S", "NEW/S"]
    } else {
        &[]
    };
    let service_headers = [
        &[
            "SERVICE",
            "ENDPOINT",
            "SCHEDULER",
            "FORWARDING",
            "TABLE",
            "UP",
            "PACKETS",
            "BYTES",
            "NEW FLOWS",
        ][..],
        rate_headers,
    ]
    .concat();
    let backend_headers = [
        &[
            "SERVICE",
            "BACKEND",
            "ADDRESS",
            "STATE",
            "HEALTH",
            "SINCE",
            "WEIGHT",
            "ACTIVE",
            "PACKETS",
            "BYTES",
            "NEW FLOWS",
            "HANDSHAKES",
        ][..],
        rate_headers,
        &["REASON"],
    ]
    .concat();
    let mut text = table(&service_headers, &services);
    text.push('\n');
    text.push_str(&table(&backend_headers, &backends));
    text
}

/// Left-aligned columns two spaces apart, without trailing blanks.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    let mut text = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            line.push_str(&format!("{cell:<width$}  "));
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// How long ago `since` was, in its two largest units: `42s`, `3m05s`,
/// `2h07m`, `5d03h`. A time in the future (clock change) shows as `0s`.
pub fn age(since: SystemTime, now: SystemTime) -> String {
    let seconds = now
        .duration_since(since)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let (minute, hour, day) = (60, 3600, 86_400);
    match seconds {
        s if s < minute => format!("{s}s"),
        s if s < hour => format!("{}m{:02}s", s / minute, s % minute),
        s if s < day => format!("{}h{:02}m", s / hour, s % hour / minute),
        s => format!("{}d{:02}h", s / day, s % day / hour),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::api::model::{Handshakes, ReloadCounts, ServiceStatus};
    use crate::domain::AdminState;
    use crate::vrrp::State;

    /// Started 100 s before `now`, never reloaded.
    fn config(now: SystemTime) -> ConfigReport {
        ConfigReport {
            hash: "3a9f1c07e2b4d816".into(),
            applied_at: now - Duration::from_secs(100),
            reloads: ReloadCounts::default(),
            last_reload_error: None,
        }
    }

    #[test]
    fn the_config_line_shows_the_hash_the_reloads_and_the_last_refusal() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let mut config = config(now);
        assert_eq!(
            config_line(&config, now),
            "Config 3a9f1c07e2b4d816, applied 1m40s ago; reloads: 0 ok, 0 failed"
        );
        config.reloads = ReloadCounts { ok: 2, failed: 1 };
        config.last_reload_error = Some("lb.toml:3:1: unknown field `mtu`".into());
        assert_eq!(
            config_line(&config, now),
            "Config 3a9f1c07e2b4d816, applied 1m40s ago; reloads: 2 ok, 1 failed; last reload: lb.toml:3:1: unknown field `mtu`"
        );
    }

    #[test]
    fn ages_use_their_two_largest_units() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let ago = |s: u64| age(now - Duration::from_secs(s), now);
        assert_eq!(ago(0), "0s");
        assert_eq!(ago(59), "59s");
        assert_eq!(ago(185), "3m05s");
        assert_eq!(ago(7_620), "2h07m");
        assert_eq!(ago(86_400 * 5 + 3 * 3600 + 59), "5d03h");
        assert_eq!(age(now + Duration::from_secs(5), now), "0s");
    }

    #[test]
    fn the_table_has_a_line_per_service_and_per_backend() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let backend = |name: &str, state, reason: &str| BackendStatus {
            name: name.into(),
            address: Ipv4Addr::new(10, 0, 0, 1),
            state,
            reason: reason.into(),
            since: now - Duration::from_secs(65),
            health: Some(Health::Up),
            health_reason: "HTTP status 200".into(),
            health_since: now,
            settled: true,
            health_unknown: None,
            joining: false,
            admin: AdminState::Enabled,
            weight: 1,
            configured_weight: 1,
            health_check_duration_seconds: None,
            mac: None,
            mac_unresolved: false,
            active_flows: 2,
            backup: false,
            standby: false,
            state_changes: 0,
            counters: Traffic {
                packets: 12,
                bytes: 1200,
                new_flows: 3,
            },
            health_by: crate::domain::HealthSource::Checks,
            handshakes: Default::default(),
        };
        let report = StatusReport {
            config: config(now),
            services: vec![ServiceStatus {
                name: "web".into(),
                vip: Ipv4Addr::new(10, 0, 0, 100),
                port: 80,
                protocol: "tcp".into(),
                scheduler: "maglev".into(),
                forwarding: "dsr-l2".into(),
                table_fingerprint: "00000000deadbeef".into(),
                counters: Traffic {
                    packets: 24,
                    bytes: 2400,
                    new_flows: 6,
                },
                backends: vec![
                    backend("web1", BackendState::Up, "health up: HTTP status 200"),
                    backend("web2", BackendState::Draining, "drained by admin"),
                ],
            }],
            data_path: DataPathReport::default(),
            flows: Default::default(),
            vrrp: None,
            bgp: None,
        };
        let mut report = report;
        report.services[0].backends[1].handshakes = Handshakes {
            completed: 12,
            retransmitted: 0,
            failed: 1,
        };
        let text = render(&report, now);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0].split_whitespace().next(), Some("SERVICE"));
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            [
                "web",
                "10.0.0.100:80/tcp",
                "maglev",
                "dsr-l2",
                "00000000deadbeef",
                "1/2",
                "24",
                "2400",
                "6"
            ]
        );
        assert_eq!(lines[2], "");
        assert!(lines[3].starts_with("SERVICE  BACKEND  ADDRESS"));
        assert_eq!(
            lines[5].split_whitespace().collect::<Vec<_>>(),
            [
                "web", "web2", "10.0.0.1", "draining", "up", "1m05s", "1", "2", "12", "1200", "3",
                "12/0/1", "drained", "by", "admin"
            ]
        );
        // Columns line up: every backend line has its state where the header says.
        let state_column = lines[3].find("STATE").unwrap();
        assert_eq!(&lines[4][state_column..state_column + 2], "up");
        assert!(lines.iter().all(|line| !line.ends_with(' ')));
        assert_eq!(
            lines.last(),
            Some(&"Config 3a9f1c07e2b4d816, applied 1m40s ago; reloads: 0 ok, 0 failed")
        );
    }

    #[test]
    fn a_backup_shows_whether_it_is_in_use_or_on_standby() {
        let mut backend = BackendStatus {
            name: "db3".into(),
            address: Ipv4Addr::new(10, 0, 0, 3),
            state: BackendState::Up,
            reason: "health up".into(),
            since: SystemTime::UNIX_EPOCH,
            health: Some(Health::Up),
            health_reason: "role replica".into(),
            health_since: SystemTime::UNIX_EPOCH,
            settled: true,
            health_unknown: None,
            joining: false,
            admin: AdminState::Enabled,
            weight: 1,
            configured_weight: 1,
            health_check_duration_seconds: None,
            mac: None,
            mac_unresolved: false,
            active_flows: 0,
            backup: false,
            standby: false,
            state_changes: 0,
            counters: Traffic::default(),
            health_by: crate::domain::HealthSource::Checks,
            handshakes: Default::default(),
        };
        assert_eq!(state_cell(&backend), "up");
        backend.backup = true;
        assert_eq!(state_cell(&backend), "up, backup");
        backend.standby = true;
        assert_eq!(state_cell(&backend), "up, backup standby");
        backend.standby = false;
        backend.state = BackendState::Down;
        assert_eq!(state_cell(&backend), "down, backup");
    }

    #[test]
    fn watch_shows_the_rates_since_the_previous_report() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let report = |packets: u64, bytes: u64, new_flows: u64| {
            let counters = Traffic {
                packets,
                bytes,
                new_flows,
            };
            StatusReport {
                services: vec![ServiceStatus {
                    name: "web".into(),
                    vip: Ipv4Addr::new(10, 0, 0, 100),
                    port: 80,
                    protocol: "tcp".into(),
                    scheduler: "maglev".into(),
                    forwarding: "dsr-l2".into(),
                    table_fingerprint: "00000000deadbeef".into(),
                    counters,
                    backends: vec![BackendStatus {
                        name: "web1".into(),
                        address: Ipv4Addr::new(10, 0, 0, 1),
                        state: BackendState::Up,
                        reason: "health up".into(),
                        since: now,
                        health: Some(Health::Up),
                        health_reason: "HTTP status 200".into(),
                        health_since: now,
                        settled: true,
                        health_unknown: None,
                        joining: false,
                        admin: AdminState::Enabled,
                        weight: 1,
                        configured_weight: 1,
                        health_check_duration_seconds: None,
                        mac: None,
                        mac_unresolved: false,
                        active_flows: 0,
                        backup: false,
                        standby: false,
                        state_changes: 0,
                        counters,
                        health_by: crate::domain::HealthSource::Checks,
                        handshakes: Default::default(),
                    }],
                }],
                data_path: DataPathReport::default(),
                flows: Default::default(),
                vrrp: None,
                bgp: None,
                config: config(now),
            }
        };
        let earlier = report(100, 10_000, 10);
        let later = report(300, 50_000, 30);
        let rates = Rates::between(&earlier, &later, Duration::from_secs(2));
        let text = render_with_rates(&later, &rates, now);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].ends_with("NEW FLOWS  PKT/S  BYTES/S  NEW/S"),
            "{text}"
        );
        let service: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(service[service.len() - 3..], ["100", "20000", "10"]);
        let backend: Vec<&str> = lines[4].split_whitespace().collect();
        assert_eq!(backend[12..15], ["100", "20000", "10"], "{text}");
        // A daemon that restarted (counters back to 0) shows 0, not a wrap.
        let restarted = Rates::between(&later, &earlier, Duration::from_secs(2));
        let last_three = |text: &str| -> Vec<String> {
            let line: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
            line[line.len() - 3..]
                .iter()
                .map(|cell| cell.to_string())
                .collect()
        };
        assert_eq!(
            last_three(&render_with_rates(&earlier, &restarted, now)),
            ["0", "0", "0"]
        );
        // The first frame, with nothing to compare: dashes.
        let first = render_with_rates(&later, &Rates::default(), now);
        assert_eq!(last_three(&first), ["-", "-", "-"], "{first}");
    }

    #[test]
    fn a_backend_this_node_cannot_check_shows_unknown_and_why() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let mut backend = BackendStatus {
            name: "web1".into(),
            address: Ipv4Addr::new(10, 0, 0, 1),
            state: BackendState::Up,
            reason: "health up: HTTP status 200".into(),
            since: now,
            health: Some(Health::Up),
            health_reason: "HTTP status 200".into(),
            health_since: now,
            settled: false,
            health_unknown: None,
            joining: false,
            admin: AdminState::Enabled,
            weight: 1,
            configured_weight: 1,
            health_check_duration_seconds: None,
            mac: None,
            mac_unresolved: false,
            active_flows: 0,
            backup: false,
            standby: false,
            state_changes: 0,
            counters: Traffic::default(),
            health_by: crate::domain::HealthSource::Checks,
            handshakes: Default::default(),
        };
        assert_eq!(health_cell(&backend), "up, checking");
        backend.health_unknown =
            Some("this node cannot reach the backend: Network is unreachable".into());
        assert_eq!(health_cell(&backend), "unknown, was up");
        backend.settled = true;
        backend.health_unknown = None;
        assert_eq!(health_cell(&backend), "up");
    }

    #[test]
    fn data_path_lines_show_the_non_zero_counters() {
        let counters = |pairs: &[(&str, u64)]| {
            pairs
                .iter()
                .map(|(name, packets)| ((*name).to_owned(), *packets))
                .collect()
        };
        let data_path = DataPathReport {
            actions: counters(&[("drop", 2), ("pass", 0), ("tx", 120)]),
            reasons: counters(&[("fragment", 0), ("not_for_us", 3), ("vip_other_port", 2)]),
        };
        assert_eq!(
            data_path_lines(&data_path),
            "Data path actions: drop=2 tx=120\nData path reasons: not_for_us=3 vip_other_port=2\n"
        );
        assert_eq!(
            data_path_lines(&DataPathReport::default()),
            "Data path actions: none\nData path reasons: none\n"
        );
    }

    #[test]
    fn with_vrrp_a_line_above_the_tables_says_who_is_master() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let mut vrrp = VrrpReport {
            vrid: 51,
            interface: "eth0".into(),
            gateway_address: None,
            state: State::Master,
            priority: 150,
            configured_priority: 150,
            master: Some(std::net::Ipv4Addr::new(10, 0, 0, 11)),
            since: now - Duration::from_secs(12),
            transitions: 1,
            resignations: 0,
            preemption_holds: 0,
            adverts_accepted: 0,
            adverts_rejected: Default::default(),
            adverts_sent: 0,
            address_error: None,
        };
        let report = StatusReport {
            config: config(now),
            services: Vec::new(),
            data_path: DataPathReport::default(),
            flows: Default::default(),
            vrrp: Some(vrrp.clone()),
            bgp: None,
        };
        let text = render(&report, now);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "VRRP vrid 51 on eth0: master, priority 150 (configured 150), master 10.0.0.11, since 12s"
        );
        assert_eq!(lines[1], "");
        assert_eq!(lines[2].split_whitespace().next(), Some("SERVICE"));
        vrrp.state = State::Backup;
        vrrp.priority = 90;
        vrrp.master = None;
        assert_eq!(
            vrrp_line(&vrrp, now),
            "VRRP vrid 51 on eth0: backup, priority 90 (configured 150), master -, since 12s"
        );
        vrrp.state = State::Master;
        vrrp.address_error = Some("10.0.0.100: No buffer space available".into());
        assert!(vrrp_line(&vrrp, now)
            .ends_with("since 12s; VIP missing: 10.0.0.100: No buffer space available"));
    }

    #[test]
    fn unchecked_backends_show_a_dash() {
        assert_eq!(health(None), "-");
        assert_eq!(health(Some(Health::Down)), "down");
    }

    #[test]
    fn the_bgp_line_names_each_vip_and_why_it_is_withdrawn() {
        use crate::api::model::VipAnnouncementReport;
        let vip = |last: u8, announced, reason: Option<&str>| VipAnnouncementReport {
            vip: Ipv4Addr::new(10, 0, 0, last),
            announced,
            withdraw_reason: reason.map(str::to_owned),
        };
        let bgp = BgpReport {
            vips: vec![
                vip(100, true, None),
                vip(101, false, Some("no serving backend")),
            ],
        };
        assert_eq!(
            bgp_line(&bgp),
            "BGP: 10.0.0.100 announced, 10.0.0.101 withdrawn (no serving backend)"
        );
        assert_eq!(bgp_line(&BgpReport { vips: Vec::new() }), "BGP: no VIP");
    }
}
