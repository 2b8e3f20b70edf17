//! The control API's HTTP server (axum), on a loopback address of the LB
//! node's network namespace:
//!
//! | request | does |
//! | --- | --- |
//! | `GET /status` | every service and backend, and VRRP ([`StatusReport`]) |
//! | `POST /services/{service}/backends/{backend}/drain` | admin drain |
//! | `POST /services/{service}/backends/{backend}/disable` | admin disable |
//! | `POST /services/{service}/backends/{backend}/enable` | clears drain/disable |
//! | `PUT /services/{service}/backends/{backend}/weight` `{"weight": N}` | sets the weight |
//!
//! Actions answer the backend's new [`BackendStatus`] once the data path
//! follows it; errors answer `{"error": "..."}` with 404 (unknown name), 400
//! (bad weight), 500 (recorded but not applied yet) or 503 (stopping).
//!
//! The server never waits for the controller to read: `GET /status` joins
//! the snapshot the controller last published, the counters read from the
//! data path at request time ([`CounterReader`]) and the VRRP instance's
//! published status. Only admin actions go to the controller, as commands.

use std::future::Future;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use lb_common::maps::Counters;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::model::{
    BackendStatus, ErrorBody, ServiceStatus, StatusReport, Traffic, VrrpReport, WeightRequest,
};
use crate::dataplane::{CounterReader, DataplaneError};
use crate::domain::{AdminAction, AdminCommandError, AdminCommands, AdminError, SnapshotReceiver};
use crate::vrrp::VrrpStatus;

/// What the API serves from.
#[derive(Clone)]
pub struct ApiState {
    /// The controller's published snapshot.
    pub snapshot: SnapshotReceiver,
    /// Where admin actions go.
    pub admin: AdminCommands,
    /// The data path's traffic counters.
    pub counters: Arc<dyn CounterReader>,
    /// The VRRP instance, if `[vrrp]` is configured.
    pub vrrp: Option<VrrpFeed>,
}

/// The VRRP instance as the API reports it: its fixed settings and its
/// published status.
#[derive(Debug, Clone)]
pub struct VrrpFeed {
    pub vrid: u8,
    pub interface: String,
    pub configured_priority: u8,
    pub status: watch::Receiver<VrrpStatus>,
}

impl VrrpFeed {
    /// The instance as it is now.
    pub fn report(&self) -> VrrpReport {
        let status = self.status.borrow();
        VrrpReport {
            vrid: self.vrid,
            interface: self.interface.clone(),
            state: status.state,
            priority: status.priority,
            configured_priority: self.configured_priority,
            master: status.master_address,
            since: status.since,
            transitions: status.transitions,
            adverts_accepted: status.received.accepted,
            adverts_rejected: status
                .received
                .rejections()
                .iter()
                .map(|&(reason, count)| (reason.to_owned(), count))
                .collect(),
            adverts_sent: status.sent.adverts,
        }
    }
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The API's routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/services/{service}/backends/{backend}/drain", post(drain))
        .route(
            "/services/{service}/backends/{backend}/disable",
            post(disable),
        )
        .route(
            "/services/{service}/backends/{backend}/enable",
            post(enable),
        )
        .route("/services/{service}/backends/{backend}/weight", put(weight))
        .with_state(state)
}

type Names = Path<(String, String)>;

async fn status(State(state): State<ApiState>) -> Json<StatusReport> {
    Json(state.report())
}

async fn drain(State(state): State<ApiState>, names: Names) -> ActionResult {
    state.act(names, AdminAction::Drain).await
}

async fn disable(State(state): State<ApiState>, names: Names) -> ActionResult {
    state.act(names, AdminAction::Disable).await
}

async fn enable(State(state): State<ApiState>, names: Names) -> ActionResult {
    state.act(names, AdminAction::Enable).await
}

async fn weight(
    State(state): State<ApiState>,
    names: Names,
    Json(request): Json<WeightRequest>,
) -> ActionResult {
    state.act(names, AdminAction::Weight(request.weight)).await
}

type ActionResult = Result<Json<BackendStatus>, ApiError>;

impl ApiState {
    /// The status of every service and backend, and of VRRP.
    fn report(&self) -> StatusReport {
        let snapshot = self.snapshot.borrow().clone();
        let services = snapshot
            .services
            .iter()
            .map(|service| ServiceStatus {
                name: service.name.clone(),
                vip: service.vip,
                port: service.port,
                protocol: service.protocol.clone(),
                scheduler: service.scheduler.clone(),
                table_fingerprint: format!("{:016x}", service.table_fingerprint),
                counters: traffic(self.counters.service_counters(service.id)),
                backends: service
                    .backends
                    .iter()
                    .map(|backend| {
                        let counters = traffic(self.counters.backend_counters(backend.id));
                        BackendStatus::new(backend, counters)
                    })
                    .collect(),
            })
            .collect();
        StatusReport {
            services,
            vrrp: self.vrrp.as_ref().map(VrrpFeed::report),
        }
    }

    async fn act(&self, Path((service, backend)): Names, action: AdminAction) -> ActionResult {
        let snapshot = self.admin.send(&service, &backend, action).await?;
        let counters = traffic(self.counters.backend_counters(snapshot.id));
        Ok(Json(BackendStatus::new(&snapshot, counters)))
    }
}

/// Counters as the API shows them; a read error is logged and shown as zeros.
fn traffic(counters: Result<Counters, DataplaneError>) -> Traffic {
    match counters {
        Ok(c) => Traffic {
            packets: c.packets,
            bytes: c.bytes,
            new_flows: c.new_flows,
        },
        Err(error) => {
            tracing::warn!(%error, "reading counters");
            Traffic::default()
        }
    }
}

/// An [`AdminCommandError`] as an HTTP response.
#[derive(Debug)]
struct ApiError(AdminCommandError);

impl From<AdminCommandError> for ApiError {
    fn from(error: AdminCommandError) -> Self {
        ApiError(error)
    }
}

impl ApiError {
    fn status_code(&self) -> StatusCode {
        match &self.0 {
            AdminCommandError::Refused(
                AdminError::UnknownService(_) | AdminError::UnknownBackend { .. },
            ) => StatusCode::NOT_FOUND,
            AdminCommandError::Refused(AdminError::Weight { .. }) => StatusCode::BAD_REQUEST,
            AdminCommandError::NotApplied(_) => StatusCode::INTERNAL_SERVER_ERROR,
            AdminCommandError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let body = ErrorBody {
            error: self.0.to_string(),
        };
        (status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_its_documented_status_code() {
        let code = |error| ApiError(error).status_code();
        assert_eq!(
            code(AdminError::UnknownService("x".into()).into()),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            code(
                AdminError::UnknownBackend {
                    service: "x".into(),
                    backend: "y".into()
                }
                .into()
            ),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            code(
                AdminError::Weight {
                    weight: 0,
                    low: 1,
                    high: 100
                }
                .into()
            ),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            code(AdminCommandError::NotApplied("map full".into())),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            code(AdminCommandError::Stopped),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
