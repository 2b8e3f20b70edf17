//! The exposition of a fixed snapshot, counters and VRRP report: every
//! series exactly, and Prometheus's own linter (`promtool check metrics`)
//! accepting it.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lb_common::handshake::HandshakeCounters;
use lb_common::maps::{Counters, Reason};

use super::{render, Scrape};
use crate::api::model::VrrpReport;
use crate::dataplane::fake::FakeCounters;
use crate::domain::{
    AdminState, BackendSnapshot, BackendState, ConfigStatus, Health, LastCheckDuration,
    ServiceSnapshot, Snapshot,
};
use crate::flows::FlowCensus;
use crate::hooks::HookFailures;
use crate::vrrp::State;

fn backend(id: u32, name: &str, admin: AdminState, health: Option<Health>) -> BackendSnapshot {
    BackendSnapshot {
        id,
        name: name.into(),
        address: Ipv4Addr::new(10, 0, 0, 10 + id as u8),
        state: BackendState::of(admin, health, false),
        reason: String::new(),
        since: SystemTime::UNIX_EPOCH,
        health,
        health_reason: String::new(),
        health_since: SystemTime::UNIX_EPOCH,
        admin,
        weight: 1 + id,
        configured_weight: 1,
        last_check: None,
        mac: None,
        mac_unresolved: false,
        backup: false,
        standby: false,
        state_changes: 3,
        settled: true,
        health_unknown: None,
        joining: false,
        health_by: crate::domain::HealthSource::Checks,
    }
}

/// "web" (checked) with web1 up and web2 down by passive health, and web1
/// this node cannot check right now; "dns" (unchecked) with dns1 draining.
fn snapshot() -> Snapshot {
    let mut web1 = backend(1, "web1", AdminState::Enabled, Some(Health::Up));
    web1.settled = false;
    web1.health_unknown = Some("this node cannot reach the backend: Network is unreachable".into());
    let checked = |took: Duration| {
        let last_check = LastCheckDuration::default();
        last_check.record(took);
        Some(last_check)
    };
    web1.last_check = checked(Duration::from_micros(12_500));
    let mut web2 = backend(2, "web2", AdminState::Enabled, Some(Health::Down));
    web2.last_check = checked(Duration::from_millis(300));
    web2.health_by = crate::domain::HealthSource::Passive;

    Snapshot {
        services: vec![
            ServiceSnapshot {
                id: 0,
                name: "web".into(),
                vip: Ipv4Addr::new(10, 0, 0, 100),
                port: 80,
                protocol: "tcp".into(),
                scheduler: "maglev".into(),
                forwarding: "dsr-l2".into(),
                table_fingerprint: 0x1234,
                backends: vec![web1, web2],
            },
            ServiceSnapshot {
                id: 1,
                name: "dns".into(),
                vip: Ipv4Addr::new(10, 0, 0, 101),
                port: 53,
                protocol: "udp".into(),
                scheduler: "round-robin".into(),
                forwarding: "dsr-l2".into(),
                table_fingerprint: 0x5678,
                backends: vec![backend(3, "dns1", AdminState::Draining, None)],
            },
        ],
    }
}

fn counters() -> FakeCounters {
    let mut counters = FakeCounters::default();
    let traffic = |n: u64| Counters {
        packets: n,
        bytes: n * 100,
        new_flows: n / 10,
    };
    counters.services.insert(0, traffic(50));
    counters.services.insert(1, traffic(7));
    counters.backends.insert(1, traffic(30));
    counters.backends.insert(2, traffic(20));
    counters.backends.insert(3, traffic(7));
    counters.handshakes.insert(
        2,
        HandshakeCounters {
            completed: 40,
            retransmitted: 1,
            failed: 3,
        },
    );
    counters.actions = [0, 4, 100, 57, 0];
    counters.reasons[Reason::NotService as usize] = 96;
    counters.reasons[Reason::Fragment as usize] = 4;
    counters
}

fn vrrp() -> VrrpReport {
    let rejected = BTreeMap::from([
        ("checksum".to_owned(), 0),
        ("ttl".to_owned(), 2),
        ("vrid_mismatch".to_owned(), 0),
    ]);
    VrrpReport {
        vrid: 51,
        interface: "eth0".into(),
        gateway_address: None,
        state: State::Master,
        priority: 140,
        configured_priority: 150,
        master: Some(Ipv4Addr::new(10, 0, 0, 2)),
        since: SystemTime::UNIX_EPOCH,
        transitions: 2,
        adverts_accepted: 9,
        adverts_rejected: rejected,
        adverts_sent: 300,
        address_error: None,
        resignations: 1,
        preemption_holds: 2,
    }
}

/// Running since a reload at 1700000000.25 s, after 2 reloads that took and
/// 1 refused.
fn config() -> ConfigStatus {
    ConfigStatus {
        hash: "3a9f1c07e2b4d816".into(),
        applied_at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_250),
        reloads_ok: 2,
        reloads_failed: 1,
        last_error: Some("lb.toml:3:1: unknown field `mtu`".into()),
    }
}

/// Four active flows on backend 1 (web1), none elsewhere; 9 entries.
fn census() -> FlowCensus {
    FlowCensus {
        taken_at: Some(SystemTime::UNIX_EPOCH),
        active: [(1, 4)].into(),
        entries: 9,
    }
}

/// One failed VRRP hook, three failed backend hooks.
fn hook_failures() -> HookFailures {
    HookFailures::counted(1, 3)
}

fn rendered(vrrp: Option<VrrpReport>) -> String {
    render(Scrape {
        snapshot: Arc::new(snapshot()),
        counters: Arc::new(counters()),
        config: config(),
        vrrp,
        bgp: None,
        unknown_results: 7,
        hook_failures: hook_failures(),
        census: Arc::new(census()),
    })
    .unwrap()
}

/// The lines of `text` that are series (not `# HELP` / `# TYPE`).
fn series(text: &str) -> Vec<&str> {
    text.lines().filter(|line| !line.starts_with('#')).collect()
}

#[test]
fn every_series_of_a_known_state() {
    let version = env!("CARGO_PKG_VERSION");
    let expected = format!(
        r#"lb_build_info{{version="{version}"}} 1
lb_config_info{{hash="3a9f1c07e2b4d816"}} 1
lb_config_reloads_total{{result="ok"}} 2
lb_config_reloads_total{{result="failed"}} 1
lb_config_last_reload_success_timestamp_seconds 1700000000.25
lb_service_info{{service="web",vip="10.0.0.100",port="80",protocol="tcp",scheduler="maglev"}} 1
lb_service_info{{service="dns",vip="10.0.0.101",port="53",protocol="udp",scheduler="round-robin"}} 1
lb_service_packets_total{{service="web"}} 50
lb_service_packets_total{{service="dns"}} 7
lb_service_bytes_total{{service="web"}} 5000
lb_service_bytes_total{{service="dns"}} 700
lb_service_new_flows_total{{service="web"}} 5
lb_service_new_flows_total{{service="dns"}} 0
lb_backend_info{{service="web",backend="web1",address="10.0.0.11"}} 1
lb_backend_info{{service="web",backend="web2",address="10.0.0.12"}} 1
lb_backend_info{{service="dns",backend="dns1",address="10.0.0.13"}} 1
lb_backend_state{{service="web",backend="web1",state="up"}} 1
lb_backend_state{{service="web",backend="web1",state="down"}} 0
lb_backend_state{{service="web",backend="web1",state="draining"}} 0
lb_backend_state{{service="web",backend="web1",state="disabled"}} 0
lb_backend_state{{service="web",backend="web2",state="up"}} 0
lb_backend_state{{service="web",backend="web2",state="down"}} 1
lb_backend_state{{service="web",backend="web2",state="draining"}} 0
lb_backend_state{{service="web",backend="web2",state="disabled"}} 0
lb_backend_state{{service="dns",backend="dns1",state="up"}} 0
lb_backend_state{{service="dns",backend="dns1",state="down"}} 0
lb_backend_state{{service="dns",backend="dns1",state="draining"}} 1
lb_backend_state{{service="dns",backend="dns1",state="disabled"}} 0
lb_backend_health{{service="web",backend="web1",health="up"}} 1
lb_backend_health{{service="web",backend="web1",health="down"}} 0
lb_backend_health{{service="web",backend="web2",health="up"}} 0
lb_backend_health{{service="web",backend="web2",health="down"}} 1
lb_backend_health_passive{{service="web",backend="web1"}} 0
lb_backend_health_passive{{service="web",backend="web2"}} 1
lb_backend_health_unknown{{service="web",backend="web1"}} 1
lb_backend_health_unknown{{service="web",backend="web2"}} 0
lb_backend_health_settled{{service="web",backend="web1"}} 0
lb_backend_health_settled{{service="web",backend="web2"}} 1
lb_backend_health_settled{{service="dns",backend="dns1"}} 1
lb_backend_health_check_duration_seconds{{service="web",backend="web1"}} 0.0125
lb_backend_health_check_duration_seconds{{service="web",backend="web2"}} 0.3
lb_health_check_results_unknown_total 7
lb_backend_weight{{service="web",backend="web1"}} 2
lb_backend_weight{{service="web",backend="web2"}} 3
lb_backend_weight{{service="dns",backend="dns1"}} 4
lb_backend_state_changes_total{{service="web",backend="web1"}} 3
lb_backend_state_changes_total{{service="web",backend="web2"}} 3
lb_backend_state_changes_total{{service="dns",backend="dns1"}} 3
lb_backend_active_flows{{service="web",backend="web1"}} 4
lb_backend_active_flows{{service="web",backend="web2"}} 0
lb_backend_active_flows{{service="dns",backend="dns1"}} 0
lb_flow_table_entries 9
lb_backend_packets_total{{service="web",backend="web1"}} 30
lb_backend_packets_total{{service="web",backend="web2"}} 20
lb_backend_packets_total{{service="dns",backend="dns1"}} 7
lb_backend_bytes_total{{service="web",backend="web1"}} 3000
lb_backend_bytes_total{{service="web",backend="web2"}} 2000
lb_backend_bytes_total{{service="dns",backend="dns1"}} 700
lb_backend_new_flows_total{{service="web",backend="web1"}} 3
lb_backend_new_flows_total{{service="web",backend="web2"}} 2
lb_backend_new_flows_total{{service="dns",backend="dns1"}} 0
lb_backend_handshakes_total{{service="web",backend="web1",outcome="completed"}} 0
lb_backend_handshakes_total{{service="web",backend="web1",outcome="retransmitted"}} 0
lb_backend_handshakes_total{{service="web",backend="web1",outcome="failed"}} 0
lb_backend_handshakes_total{{service="web",backend="web2",outcome="completed"}} 40
lb_backend_handshakes_total{{service="web",backend="web2",outcome="retransmitted"}} 1
lb_backend_handshakes_total{{service="web",backend="web2",outcome="failed"}} 3
lb_backend_handshakes_total{{service="dns",backend="dns1",outcome="completed"}} 0
lb_backend_handshakes_total{{service="dns",backend="dns1",outcome="retransmitted"}} 0
lb_backend_handshakes_total{{service="dns",backend="dns1",outcome="failed"}} 0
lb_notify_hook_failures_total{{hook="vrrp"}} 1
lb_notify_hook_failures_total{{hook="backend"}} 3
lb_vrrp_info{{vrid="51",interface="eth0"}} 1
lb_vrrp_state{{vrid="51",state="initialize"}} 0
lb_vrrp_state{{vrid="51",state="backup"}} 0
lb_vrrp_state{{vrid="51",state="master"}} 1
lb_vrrp_state{{vrid="51",state="fault"}} 0
lb_vrrp_priority{{vrid="51"}} 140
lb_vrrp_configured_priority{{vrid="51"}} 150
lb_vrrp_transitions_total{{vrid="51"}} 2
lb_vrrp_resignations_total{{vrid="51"}} 1
lb_vrrp_preemption_holds_total{{vrid="51"}} 2
lb_vrrp_adverts_sent_total{{vrid="51"}} 300
lb_vrrp_adverts_accepted_total{{vrid="51"}} 9
lb_vrrp_adverts_rejected_total{{vrid="51",reason="checksum"}} 0
lb_vrrp_adverts_rejected_total{{vrid="51",reason="ttl"}} 2
lb_vrrp_adverts_rejected_total{{vrid="51",reason="vrid_mismatch"}} 0
lb_xdp_packets_total{{action="aborted"}} 0
lb_xdp_packets_total{{action="drop"}} 4
lb_xdp_packets_total{{action="pass"}} 100
lb_xdp_packets_total{{action="tx"}} 57
lb_xdp_packets_total{{action="redirect"}} 0
lb_xdp_reason_packets_total{{reason="not_ipv4"}} 0
lb_xdp_reason_packets_total{{reason="not_service"}} 96
lb_xdp_reason_packets_total{{reason="short_ethernet"}} 0
lb_xdp_reason_packets_total{{reason="short_ipv4"}} 0
lb_xdp_reason_packets_total{{reason="bad_ihl"}} 0
lb_xdp_reason_packets_total{{reason="bad_total_length"}} 0
lb_xdp_reason_packets_total{{reason="fragment"}} 4
lb_xdp_reason_packets_total{{reason="short_l4"}} 0
lb_xdp_reason_packets_total{{reason="no_backend"}} 0
lb_xdp_reason_packets_total{{reason="bad_backend"}} 0
lb_xdp_reason_packets_total{{reason="not_for_us"}} 0
lb_xdp_reason_packets_total{{reason="link_multicast"}} 0
lb_xdp_reason_packets_total{{reason="vip_other_port"}} 0
lb_xdp_reason_packets_total{{reason="vip_other_protocol"}} 0
lb_xdp_reason_packets_total{{reason="vip_icmp"}} 0
lb_xdp_reason_packets_total{{reason="rate_limited"}} 0
lb_xdp_reason_packets_total{{reason="insert_skipped"}} 0
lb_xdp_reason_packets_total{{reason="not_allowed"}} 0
lb_xdp_reason_packets_total{{reason="vip_icmp_echo"}} 0
lb_xdp_reason_packets_total{{reason="bypassed_xdp"}} 0
lb_xdp_reason_packets_total{{reason="nat_hairpin"}} 0
lb_xdp_reason_packets_total{{reason="nat_no_client"}} 0"#
    );
    let text = rendered(Some(vrrp()));
    assert_eq!(
        series(&text),
        expected.lines().collect::<Vec<_>>(),
        "{text}"
    );
}

#[test]
fn each_family_is_typed_and_explained() {
    let text = rendered(Some(vrrp()));
    assert!(text.contains("# TYPE lb_backend_packets_total counter\n"));
    assert!(text.contains("# TYPE lb_backend_state gauge\n"));
    let families = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
    let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
    assert_eq!((families, helps), (37, 37));
}

#[test]
fn without_vrrp_there_is_no_vrrp_family() {
    let text = rendered(None);
    assert!(!text.contains("lb_vrrp"), "{text}");
    assert!(text.contains("lb_xdp_packets_total{action=\"tx\"} 57\n"));
}

/// Needs `promtool` (Debian's `prometheus` package, installed by
/// `cargo xtask bootstrap`).
#[test]
fn promtool_accepts_the_exposition() {
    let text = rendered(Some(vrrp()));
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running promtool (Debian package prometheus; cargo xtask bootstrap installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool: {}\n{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn each_vip_of_a_bgp_node_has_its_announcement_gauge() {
    use crate::api::model::{BgpReport, VipAnnouncementReport};
    let bgp = BgpReport {
        vips: vec![
            VipAnnouncementReport {
                vip: Ipv4Addr::new(10, 0, 0, 100),
                announced: true,
                withdraw_reason: None,
            },
            VipAnnouncementReport {
                vip: Ipv4Addr::new(10, 0, 0, 101),
                announced: false,
                withdraw_reason: Some("no serving backend".into()),
            },
        ],
    };
    let text = render(Scrape {
        snapshot: Arc::new(snapshot()),
        counters: Arc::new(counters()),
        config: config(),
        vrrp: None,
        bgp: Some(bgp),
        unknown_results: 0,
        hook_failures: HookFailures::default(),
        census: Arc::new(census()),
    })
    .unwrap();
    let announced: Vec<&str> = series(&text)
        .into_iter()
        .filter(|line| line.starts_with("lb_bgp_"))
        .collect();
    assert_eq!(
        announced,
        [
            r#"lb_bgp_vip_announced{vip="10.0.0.100"} 1"#,
            r#"lb_bgp_vip_announced{vip="10.0.0.101"} 0"#
        ]
    );
    assert!(!rendered(None).contains("lb_bgp"), "only with [bgp]");
}
