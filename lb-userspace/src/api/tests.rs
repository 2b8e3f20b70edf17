//! The API end to end over loopback: the client and the axum server, in
//! front of a stand-in controller (a published snapshot and a task that
//! answers admin commands) and fixed counters.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::SystemTime;

use lb_common::maps::{Counters, Reason, XDP_ACTION_NAMES};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use super::model::StatusReport;
use super::server::{self, ApiLimits, ApiState, VrrpFeed};
use super::{ApiClient, ClientError};
use crate::dataplane::fake::FakeCounters;
use crate::domain::{
    AdminAction, AdminCommand, AdminCommandError, AdminCommands, AdminError, AdminState,
    BackendSnapshot, BackendState, ConfigStatus, Health, ReloadCommand, ReloadCommands,
    ReloadError, ReloadOutcome, ServiceSnapshot, Snapshot,
};
use crate::health::UnknownResults;
use crate::vrrp::{State, VrrpStatus};

fn backend(id: u32, name: &str, health: Health) -> BackendSnapshot {
    BackendSnapshot {
        id,
        name: name.into(),
        address: Ipv4Addr::new(10, 0, 0, 1 + id as u8),
        state: BackendState::of(AdminState::Enabled, Some(health), false),
        reason: format!("initial state: {health}"),
        since: SystemTime::UNIX_EPOCH,
        health: Some(health),
        health_reason: format!("initial state: {health}"),
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
    }
}

/// Service "web" with web1 up and web2 down.
fn snapshot() -> Snapshot {
    Snapshot {
        services: vec![ServiceSnapshot {
            id: 0,
            name: "web".into(),
            vip: Ipv4Addr::new(10, 0, 0, 100),
            port: 80,
            protocol: "tcp".into(),
            scheduler: "maglev".into(),
            forwarding: "dsr-l2".into(),
            table_fingerprint: 0xdead_beef,
            backends: vec![
                backend(0, "web1", Health::Up),
                backend(1, "web2", Health::Down),
            ],
        }],
    }
}

/// Answers admin commands on `snapshot` the way the controller does, and
/// publishes the result; "web2" cannot be written to the data path.
async fn stand_in_controller(
    mut commands: mpsc::Receiver<AdminCommand>,
    snapshot: watch::Sender<Arc<Snapshot>>,
) {
    while let Some(command) = commands.recv().await {
        let mut next = (**snapshot.borrow()).clone();
        let reply = match next.services[0]
            .backends
            .iter_mut()
            .find(|b| command.service == "web" && b.name == command.backend)
        {
            None => Err(AdminError::UnknownBackend {
                service: command.service.clone(),
                backend: command.backend.clone(),
            }
            .into()),
            Some(_) if command.backend == "web2" => {
                Err(AdminCommandError::NotApplied("map full".into()))
            }
            Some(backend) => {
                match command.action {
                    AdminAction::Drain => backend.admin = AdminState::Draining,
                    AdminAction::Disable => backend.admin = AdminState::Disabled,
                    AdminAction::Enable => backend.admin = AdminState::Enabled,
                    AdminAction::Weight(weight) => backend.weight = weight,
                }
                backend.state = BackendState::of(backend.admin, backend.health, false);
                Ok(backend.clone())
            }
        };
        snapshot.send_replace(Arc::new(next));
        let _ = command.reply.send(reply);
    }
}

/// Answers reloads the way the reloader does: the first takes, the next
/// ones are refused; each is counted in `status`.
async fn stand_in_reloader(
    mut requests: mpsc::Receiver<ReloadCommand>,
    status: watch::Sender<ConfigStatus>,
) {
    while let Some(request) = requests.recv().await {
        let reply = if status.borrow().reloads_ok == 0 {
            status.send_modify(|status| {
                status.hash = "00000000000000bb".into();
                status.reloads_ok += 1;
            });
            Ok(ReloadOutcome {
                hash: "00000000000000bb".into(),
                changes: "services: 1 changed (web), 0 unchanged".into(),
            })
        } else {
            status.send_modify(|status| status.reloads_failed += 1);
            Err(ReloadError::Refused(
                "lb.toml:3:1: unknown field `mtu`".into(),
            ))
        };
        let _ = request.reply.send(reply);
    }
}

/// Serves the API on an ephemeral loopback port; `vrrp` as given.
async fn api_with(vrrp: Option<VrrpFeed>) -> ApiClient {
    let (snapshot_sender, snapshot_receiver) = watch::channel(Arc::new(snapshot()));
    let (command_sender, commands) = mpsc::channel(4);
    tokio::spawn(stand_in_controller(commands, snapshot_sender));
    let (config_sender, config) = watch::channel(ConfigStatus {
        hash: "00000000000000aa".into(),
        applied_at: SystemTime::UNIX_EPOCH,
        reloads_ok: 0,
        reloads_failed: 0,
        last_error: None,
    });
    let (reload_sender, reloads) = mpsc::channel(4);
    tokio::spawn(stand_in_reloader(reloads, config_sender));
    let mut counters = FakeCounters::default();
    counters.backends.insert(
        0,
        Counters {
            packets: 12,
            bytes: 1200,
            new_flows: 3,
        },
    );
    counters.actions[3] = 40; // XDP_TX
    counters.reasons[Reason::NotForUs as usize] = 3;
    let state = ApiState {
        snapshot: snapshot_receiver,
        admin: AdminCommands::new(command_sender),
        reload: ReloadCommands::new(reload_sender),
        config,
        counters: Arc::new(counters),
        flows: crate::flows::census_channel().1,
        vrrp,
        unknown_results: UnknownResults::default(),
        hook_failures: crate::hooks::HookFailures::default(),
        bgp: None,
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(server::serve(
        listener,
        state,
        ApiLimits::default(),
        std::future::pending(),
    ));
    ApiClient::new(address)
}

async fn api() -> ApiClient {
    api_with(None).await
}

#[tokio::test]
async fn status_lists_services_and_backends_with_their_counters() {
    let report = api().await.status().await.unwrap();
    assert_eq!(report.services.len(), 1);
    let web = &report.services[0];
    assert_eq!((web.name.as_str(), web.port), ("web", 80));
    let states: Vec<(&str, BackendState, Option<Health>, u64)> = web
        .backends
        .iter()
        .map(|b| (b.name.as_str(), b.state, b.health, b.counters.packets))
        .collect();
    assert_eq!(
        states,
        [
            ("web1", BackendState::Up, Some(Health::Up), 12),
            ("web2", BackendState::Down, Some(Health::Down), 0),
        ]
    );
    assert_eq!(report.vrrp, None);
}

#[tokio::test]
async fn status_lists_every_action_and_reason_counter() {
    let report = api().await.status().await.unwrap();
    let data_path = &report.data_path;
    assert_eq!(data_path.actions.len(), XDP_ACTION_NAMES.len());
    assert_eq!(data_path.actions["tx"], 40);
    assert_eq!(data_path.actions["drop"], 0);
    assert_eq!(data_path.reasons.len(), Reason::ALL.len());
    assert_eq!(data_path.reasons["not_for_us"], 3);
    assert_eq!(data_path.reasons["vip_other_port"], 0);
}

#[tokio::test]
async fn admin_actions_answer_the_new_backend_status() {
    let api = api().await;
    let web1 = api
        .backend("web", "web1", AdminAction::Drain)
        .await
        .unwrap();
    assert_eq!(
        (web1.state, web1.admin, web1.counters.new_flows),
        (BackendState::Draining, AdminState::Draining, 3)
    );
    let web1 = api
        .backend("web", "web1", AdminAction::Weight(5))
        .await
        .unwrap();
    assert_eq!(web1.weight, 5);
    let web1 = api
        .backend("web", "web1", AdminAction::Disable)
        .await
        .unwrap();
    assert_eq!(web1.state, BackendState::Disabled);
    let web1 = api
        .backend("web", "web1", AdminAction::Enable)
        .await
        .unwrap();
    assert_eq!(web1.state, BackendState::Up);
    let report: StatusReport = api.status().await.unwrap();
    assert_eq!(report.backend("web", "web1").unwrap().weight, 5);
}

#[tokio::test]
async fn refusals_carry_the_controllers_message() {
    let api = api().await;
    let error = api
        .backend("web", "web9", AdminAction::Drain)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::Refused(m) if m == "service \"web\" has no backend named \"web9\""),
        "{error}"
    );
    let error = api
        .backend("web", "web2", AdminAction::Drain)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::Refused(m) if m.contains("could not be applied to the data path yet")),
        "{error}"
    );
    let error = api
        .backend("web/../x", "web1", AdminAction::Drain)
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::InvalidName { .. }), "{error}");
}

#[tokio::test]
async fn a_reload_answers_its_outcome_or_why_it_was_refused_and_status_counts_it() {
    let api = api().await;
    let before = api.status().await.unwrap().config;
    assert_eq!(
        (
            before.hash.as_str(),
            before.reloads.ok,
            before.reloads.failed
        ),
        ("00000000000000aa", 0, 0)
    );
    let outcome = api.reload().await.unwrap();
    assert_eq!(outcome.hash, "00000000000000bb");
    assert_eq!(outcome.changes, "services: 1 changed (web), 0 unchanged");
    let refused = api.reload().await.unwrap_err();
    assert_eq!(refused.to_string(), "lb.toml:3:1: unknown field `mtu`");
    let after = api.status().await.unwrap().config;
    assert_eq!(
        (after.hash.as_str(), after.reloads.ok, after.reloads.failed),
        ("00000000000000bb", 1, 1)
    );
}

#[tokio::test]
async fn status_reports_the_vrrp_instance_as_published() {
    let mut status = VrrpStatus::new(150);
    status.state = State::Master;
    status.master_address = Some(Ipv4Addr::new(10, 0, 0, 11));
    status.transitions = 2;
    let (publish, published) = watch::channel(status);
    let feed = VrrpFeed {
        vrid: 51,
        interface: "eth0".into(),
        gateway_address: Some(Ipv4Addr::new(10, 1, 0, 1)),
        configured_priority: 150,
        status: published,
    };
    let api = api_with(Some(feed)).await;
    let vrrp = api.status().await.unwrap().vrrp.unwrap();
    assert_eq!(
        (vrrp.vrid, vrrp.state, vrrp.priority, vrrp.master),
        (51, State::Master, 150, Some(Ipv4Addr::new(10, 0, 0, 11)))
    );
    assert_eq!(vrrp.gateway_address, Some(Ipv4Addr::new(10, 1, 0, 1)));
    publish.send_modify(|status| {
        status.state = State::Backup;
        status.priority = 50;
        status.master_address = None;
    });
    let vrrp = api.status().await.unwrap().vrrp.unwrap();
    assert_eq!(
        (
            vrrp.state,
            vrrp.priority,
            vrrp.configured_priority,
            vrrp.master
        ),
        (State::Backup, 50, 150, None)
    );
}

#[tokio::test]
async fn an_absent_server_is_reported_as_unreachable() {
    // Bound then closed: nothing listens there.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let error = ApiClient::new(address).status().await.unwrap_err();
    assert!(matches!(error, ClientError::Connect { .. }), "{error}");
    assert!(error.to_string().contains("cannot reach the lb API"));
}
