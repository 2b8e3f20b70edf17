//! The API end to end over loopback: the client, the axum server and a
//! controller loop that has no data path.

use std::net::SocketAddr;

use tokio::net::TcpListener;

use super::model::{AdminState, HealthStatus, ServingState};
use super::{server, ApiClient, ClientError};
use crate::config;
use crate::controller::{self, AdminAction};

const CONFIG: &str = r#"
    [global]
    interface = "eth0"

    [[service]]
    name = "web"
    vip = "10.0.0.100"
    port = 80
    protocol = "tcp"

    [[service.backend]]
    name = "web1"
    address = "10.0.0.1"
    initial = "up"

    [[service.backend]]
    name = "web2"
    address = "10.0.0.2"
"#;

/// Serves the API for `CONFIG` on an ephemeral loopback port.
async fn api() -> ApiClient {
    let config = config::parse(CONFIG, "test.toml").unwrap();
    let handle = controller::spawn_without_dataplane(&config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(server::serve(listener, handle, std::future::pending()));
    ApiClient::new(address)
}

#[tokio::test]
async fn status_lists_services_and_backends() {
    let report = api().await.status().await.unwrap();
    assert_eq!(report.services.len(), 1);
    let web = &report.services[0];
    assert_eq!((web.name.as_str(), web.port), ("web", 80));
    let states: Vec<(&str, ServingState, HealthStatus)> = web
        .backends
        .iter()
        .map(|b| (b.name.as_str(), b.state, b.health))
        .collect();
    assert_eq!(
        states,
        [
            ("web1", ServingState::Up, HealthStatus::Up),
            ("web2", ServingState::Down, HealthStatus::Down),
        ]
    );
}

#[tokio::test]
async fn admin_actions_answer_the_new_backend_status() {
    let api = api().await;
    let web1 = api
        .backend("web", "web1", AdminAction::Drain)
        .await
        .unwrap();
    assert_eq!(
        (web1.state, web1.admin),
        (ServingState::Draining, AdminState::Draining)
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
    assert_eq!(web1.state, ServingState::Disabled);
    let web1 = api
        .backend("web", "web1", AdminAction::Enable)
        .await
        .unwrap();
    assert_eq!(web1.state, ServingState::Up);
    let report = api.status().await.unwrap();
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
        .backend("web", "web1", AdminAction::Weight(0))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::Refused(m) if m.contains("out of range")),
        "{error}"
    );
    let error = api
        .backend("web/../x", "web1", AdminAction::Drain)
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::InvalidName { .. }), "{error}");
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
