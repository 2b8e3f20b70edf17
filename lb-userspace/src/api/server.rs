//! The control API's HTTP server (axum), on a loopback address of the LB
//! node's network namespace:
//!
//! | request | does |
//! | --- | --- |
//! | `GET /status` | the running configuration, every service and backend, and VRRP ([`StatusReport`]) |
//! | `GET /metrics` | the same and the data path's counters, for Prometheus ([`super::metrics`]) |
//! | `POST /reload` | reloads the configuration file ([`crate::reload`]); answers its hash and what changed |
//! | `POST /services/{service}/backends/{backend}/drain` | admin drain |
//! | `POST /services/{service}/backends/{backend}/disable` | admin disable |
//! | `POST /services/{service}/backends/{backend}/enable` | clears drain/disable |
//! | `PUT /services/{service}/backends/{backend}/weight` `{"weight": N}` | sets the weight |
//!
//! Actions answer the backend's new [`BackendStatus`] once the data path
//! follows it; errors answer `{"error": "..."}` with 404 (unknown name), 400
//! (weight out of range), 409 (the service's weights would not fit its
//! table; nothing changed), 422 (a reload refused: the file is invalid or
//! needs a restart; nothing changed), 500 (recorded but not applied yet) or
//! 503 (stopping).
//!
//! The server never waits for the controller to read: `GET /status` joins
//! the snapshot the controller last published, the counters read from the
//! data path at request time ([`CounterReader`]) and the VRRP instance's
//! published status. Only admin actions go to the controller, as commands,
//! and reloads to the reloader.
//!
//! A flood of requests or clients that send slowly (or never) cannot take
//! it over ([`ApiLimits`]): at most `max_connections` connections are
//! served at once (the next ones wait in the listen backlog), a client has
//! `header_read_timeout` to send each request head, a request has
//! `request_timeout` from its head to its answer (body read and the
//! controller's reply included; 408 after that), and heads and bodies are
//! capped in size.

use std::fmt;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use lb_common::maps::{Counters, Reason, XDP_ACTION_NAMES};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::metrics;
use super::model::{
    BackendStatus, BgpReport, ConfigReport, DataPathReport, ErrorBody, FlowsReport, Handshakes,
    ServiceStatus, StatusReport, Traffic, VrrpReport, WeightRequest,
};
use crate::dataplane::{CounterReader, DataplaneError};
use crate::domain::{
    AdminAction, AdminCommandError, AdminCommands, AdminError, BackendSnapshot,
    ConfigStatusReceiver, ReloadCommands, ReloadError, ReloadOutcome, SnapshotReceiver,
};
use crate::flows::{FlowCensus, FlowCensusReceiver};
use crate::ha::bgp::BgpStatus;
use crate::health::UnknownResults;
use crate::hooks::HookFailures;
use crate::vrrp::VrrpStatus;

/// What the API serves from.
#[derive(Clone)]
pub struct ApiState {
    /// The controller's published snapshot.
    pub snapshot: SnapshotReceiver,
    /// Where admin actions go.
    pub admin: AdminCommands,
    /// Where reload requests go.
    pub reload: ReloadCommands,
    /// The running configuration's hash and the reloads' counts.
    pub config: ConfigStatusReceiver,
    /// The data path's traffic counters.
    pub counters: Arc<dyn CounterReader>,
    /// The latest census of active flows.
    pub flows: FlowCensusReceiver,
    /// The VRRP instance, if `[vrrp]` is configured.
    pub vrrp: Option<VrrpFeed>,
    /// Health check results set aside as unknown (this node's own faults).
    pub unknown_results: UnknownResults,
    /// Failed notify hooks, by hook.
    pub hook_failures: HookFailures,
    /// The BGP announcer, if `[bgp]` is configured.
    pub bgp: Option<watch::Receiver<BgpStatus>>,
}

/// The VRRP instance as the API reports it: its fixed settings and its
/// published status.
#[derive(Debug, Clone)]
pub struct VrrpFeed {
    pub vrid: u8,
    pub interface: String,
    /// `[vrrp] gateway_address`, if configured.
    pub gateway_address: Option<Ipv4Addr>,
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
            gateway_address: self.gateway_address,
            state: status.state,
            priority: status.priority,
            configured_priority: self.configured_priority,
            master: status.master_address,
            since: status.since,
            transitions: status.transitions,
            resignations: status.resignations,
            preemption_holds: status.preemption_holds,
            adverts_accepted: status.received.accepted,
            adverts_rejected: status
                .received
                .rejections()
                .iter()
                .map(|&(reason, count)| (reason.to_owned(), count))
                .collect(),
            adverts_sent: status.sent.adverts,
            address_error: status.address_error.clone(),
        }
    }
}

/// What one client may cost the API, so that a flood or slow clients
/// leave it answering the others (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    /// Connections served at once; further ones wait to be accepted.
    pub max_connections: usize,
    /// Time to send a request head, counted from the connection's start or
    /// the previous answer (an idle keep-alive connection is closed then).
    pub header_read_timeout: Duration,
    /// Time from a request's head to its answer.
    pub request_timeout: Duration,
    /// Largest request head (request line and headers), in bytes.
    pub max_head: usize,
    /// Largest request body, in bytes.
    pub max_body: usize,
    /// Connections the kernel completes and queues while all
    /// `max_connections` are busy (capped by `net.core.somaxconn`); beyond
    /// it, new connections' SYNs are dropped and retried after a second.
    pub backlog: u32,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_connections: 256,
            header_read_timeout: Duration::from_secs(5),
            // The CLI waits as long; a large table takes a while to write.
            request_timeout: Duration::from_secs(10),
            // hyper's smallest read buffer; a request head is a few hundred bytes.
            max_head: 8 * 1024,
            // `{"weight": 100}` is 15 bytes.
            max_body: 1024,
            // Linux's default somaxconn: a flood of a few thousand clients
            // waits its turn instead of being dropped.
            backlog: 4096,
        }
    }
}

/// The API's listening socket on `address`, with the backlog of `limits`.
pub fn listen(address: SocketAddr, limits: &ApiLimits) -> std::io::Result<TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // Like std's bind: a restarted lb finds its port despite TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(limits.backlog)
}

/// Pause after a failed accept (e.g. out of file descriptors), so a
/// persistent error does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Serves the API on `listener` within `limits` until `shutdown`
/// completes; then stops accepting and lets each connection finish the
/// request it is serving.
pub async fn serve(
    listener: TcpListener,
    state: ApiState,
    limits: ApiLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = router(state, limits);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stopping, stop) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => {
                permit.expect("the semaphore is never closed")
            }
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "control API: accepting a connection failed");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        connections.spawn(serve_connection(
            stream,
            router.clone(),
            limits,
            stop.clone(),
            permit,
        ));
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = stopping.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Serves one connection (HTTP/1.1) until the client leaves, a limit
/// closes it, or the server stops; holds `_permit` until then.
async fn serve_connection(
    stream: TcpStream,
    router: Router,
    limits: ApiLimits,
    mut stop: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_head);
    let connection =
        builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "control API connection ended");
            }
        }
        () = async {
            // The guard it returns is not Send: dropped here.
            let _ = stop.wait_for(|stopping| *stopping).await;
        } => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// The API's routes, with the per-request limits of `limits`.
pub fn router(state: ApiState, limits: ApiLimits) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/metrics", get(metrics))
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
        .route("/reload", post(reload))
        .layer(DefaultBodyLimit::max(limits.max_body))
        .layer(middleware::from_fn_with_state(
            limits.request_timeout,
            within_request_timeout,
        ))
        .with_state(state)
}

/// Answers 408 when `request` is not answered within `timeout`. An admin
/// action already sent to the controller may still be applied.
async fn within_request_timeout(
    State(timeout): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let body = ErrorBody {
                error: format!("the request was not answered within {timeout:?}"),
            };
            (StatusCode::REQUEST_TIMEOUT, Json(body)).into_response()
        }
    }
}

type Names = Path<(String, String)>;

async fn status(State(state): State<ApiState>) -> Json<StatusReport> {
    Json(state.report())
}

async fn metrics(State(state): State<ApiState>) -> Response {
    let snapshot = state.snapshot.borrow().clone();
    let vrrp = state.vrrp.as_ref().map(VrrpFeed::report);
    let bgp = state
        .bgp
        .as_ref()
        .map(|status| BgpReport::new(&status.borrow()));
    let unknown_results = state.unknown_results.get();
    let config = state.config.borrow().clone();
    match metrics::render(metrics::Scrape {
        snapshot,
        counters: state.counters.clone(),
        config,
        vrrp,
        bgp,
        unknown_results,
        hook_failures: state.hook_failures.clone(),
        census: state.flows.borrow().clone(),
    }) {
        Ok(text) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(fmt::Error) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
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

async fn reload(State(state): State<ApiState>) -> Result<Json<ReloadOutcome>, ApiError> {
    Ok(Json(state.reload.send().await?))
}

type ActionResult = Result<Json<BackendStatus>, ApiError>;

impl ApiState {
    /// The status of every service and backend, and of VRRP.
    fn report(&self) -> StatusReport {
        let snapshot = self.snapshot.borrow().clone();
        let census = self.flows.borrow().clone();
        let services = snapshot
            .services
            .iter()
            .map(|service| ServiceStatus {
                name: service.name.clone(),
                vip: service.vip,
                port: service.port,
                protocol: service.protocol.clone(),
                scheduler: service.scheduler.clone(),
                forwarding: service.forwarding.clone(),
                table_fingerprint: format!("{:016x}", service.table_fingerprint),
                counters: traffic(self.counters.service_counters(service.id)),
                backends: service
                    .backends
                    .iter()
                    .map(|backend| self.backend_status(backend, &census))
                    .collect(),
            })
            .collect();
        StatusReport {
            config: ConfigReport::new(&self.config.borrow()),
            services,
            data_path: self.data_path(),
            flows: FlowsReport::new(&census),
            vrrp: self.vrrp.as_ref().map(VrrpFeed::report),
            bgp: self
                .bgp
                .as_ref()
                .map(|status| BgpReport::new(&status.borrow())),
        }
    }

    /// Every action and reason counter; a read error is logged and shown as
    /// zeros.
    fn data_path(&self) -> DataPathReport {
        let actions = self.counters.action_counters().unwrap_or_else(|error| {
            tracing::warn!(%error, "reading XDP action counters");
            Default::default()
        });
        let reasons = self.counters.reason_counters().unwrap_or_else(|error| {
            tracing::warn!(%error, "reading reason counters");
            Default::default()
        });
        DataPathReport {
            actions: XDP_ACTION_NAMES
                .iter()
                .zip(actions)
                .map(|(name, packets)| ((*name).to_owned(), packets))
                .collect(),
            reasons: Reason::ALL
                .iter()
                .zip(reasons)
                .map(|(reason, packets)| (reason.name().to_owned(), packets))
                .collect(),
        }
    }

    async fn act(&self, Path((service, backend)): Names, action: AdminAction) -> ActionResult {
        let snapshot = self.admin.send(&service, &backend, action).await?;
        let census = self.flows.borrow().clone();
        Ok(Json(self.backend_status(&snapshot, &census)))
    }

    /// `backend` with its counters read now; a read error is logged and
    /// shown as zeros.
    fn backend_status(&self, backend: &BackendSnapshot, census: &FlowCensus) -> BackendStatus {
        let counters = traffic(self.counters.backend_counters(backend.id));
        let handshakes = match self.counters.handshake_counters(backend.id) {
            Ok(c) => Handshakes {
                completed: c.completed,
                retransmitted: c.retransmitted,
                failed: c.failed,
            },
            Err(error) => {
                tracing::warn!(%error, "reading handshake counters");
                Handshakes::default()
            }
        };
        BackendStatus::new(backend, counters, handshakes, census)
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

/// A refused request as an HTTP response: its status code and
/// `{"error": "..."}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl From<AdminCommandError> for ApiError {
    fn from(error: AdminCommandError) -> Self {
        ApiError {
            status: admin_status_code(&error),
            message: error.to_string(),
        }
    }
}

impl From<ReloadError> for ApiError {
    fn from(error: ReloadError) -> Self {
        ApiError {
            status: reload_status_code(&error),
            message: error.to_string(),
        }
    }
}

fn admin_status_code(error: &AdminCommandError) -> StatusCode {
    match error {
        AdminCommandError::Refused(
            AdminError::UnknownService(_) | AdminError::UnknownBackend { .. },
        ) => StatusCode::NOT_FOUND,
        AdminCommandError::Refused(AdminError::Weight { .. }) => StatusCode::BAD_REQUEST,
        AdminCommandError::Refused(AdminError::WeightsDoNotFit { .. }) => StatusCode::CONFLICT,
        AdminCommandError::NotApplied(_) => StatusCode::INTERNAL_SERVER_ERROR,
        AdminCommandError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn reload_status_code(error: &ReloadError) -> StatusCode {
    match error {
        ReloadError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ReloadError::NotApplied(_) => StatusCode::INTERNAL_SERVER_ERROR,
        ReloadError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_its_documented_status_code() {
        let code = |error| admin_status_code(&error);
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
            code(
                AdminError::WeightsDoNotFit {
                    service: "x".into(),
                    reason: "too small".into()
                }
                .into()
            ),
            StatusCode::CONFLICT
        );
        assert_eq!(
            code(AdminCommandError::NotApplied("map full".into())),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            code(AdminCommandError::Stopped),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let code = |error| reload_status_code(&error);
        assert_eq!(
            code(ReloadError::Refused("lb.toml:3:1: unknown field".into())),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            code(ReloadError::NotApplied("map full".into())),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(code(ReloadError::Stopped), StatusCode::SERVICE_UNAVAILABLE);
    }
}
