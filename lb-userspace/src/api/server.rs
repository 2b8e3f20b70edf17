//! The control API's HTTP server (axum), on a loopback address of the LB
//! node's network namespace:
//!
//! | request | does |
//! | --- | --- |
//! | `GET /status` | every service and backend ([`StatusReport`]) |
//! | `POST /services/{service}/backends/{backend}/drain` | admin drain |
//! | `POST /services/{service}/backends/{backend}/disable` | admin disable |
//! | `POST /services/{service}/backends/{backend}/enable` | clears drain/disable |
//! | `PUT /services/{service}/backends/{backend}/weight` `{"weight": N}` | sets the weight |
//!
//! Actions answer the backend's new [`BackendStatus`] once the data path
//! follows it; errors answer `{"error": "..."}` with 404 (unknown name), 400
//! (bad weight), 500 (recorded but not applied yet) or 503 (stopping).

use std::future::Future;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use tokio::net::TcpListener;

use super::model::{BackendStatus, ErrorBody, StatusReport, WeightRequest};
use crate::controller::{AdminAction, AdminError, ControllerHandle, RequestError};

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    controller: ControllerHandle,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(controller))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The API's routes.
pub fn router(controller: ControllerHandle) -> Router {
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
        .with_state(controller)
}

type Names = Path<(String, String)>;

async fn status(
    State(controller): State<ControllerHandle>,
) -> Result<Json<StatusReport>, ApiError> {
    Ok(Json(controller.status().await?))
}

async fn drain(State(controller): State<ControllerHandle>, names: Names) -> ActionResult {
    act(&controller, names, AdminAction::Drain).await
}

async fn disable(State(controller): State<ControllerHandle>, names: Names) -> ActionResult {
    act(&controller, names, AdminAction::Disable).await
}

async fn enable(State(controller): State<ControllerHandle>, names: Names) -> ActionResult {
    act(&controller, names, AdminAction::Enable).await
}

async fn weight(
    State(controller): State<ControllerHandle>,
    names: Names,
    Json(request): Json<WeightRequest>,
) -> ActionResult {
    act(&controller, names, AdminAction::Weight(request.weight)).await
}

type ActionResult = Result<Json<BackendStatus>, ApiError>;

async fn act(
    controller: &ControllerHandle,
    Path((service, backend)): Names,
    action: AdminAction,
) -> ActionResult {
    Ok(Json(controller.admin(&service, &backend, action).await?))
}

/// A [`RequestError`] as an HTTP response.
struct ApiError(RequestError);

impl From<RequestError> for ApiError {
    fn from(error: RequestError) -> Self {
        ApiError(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            RequestError::Refused(
                AdminError::UnknownService(_) | AdminError::UnknownBackend { .. },
            ) => StatusCode::NOT_FOUND,
            RequestError::Refused(AdminError::Weight(_)) => StatusCode::BAD_REQUEST,
            RequestError::NotApplied(_) => StatusCode::INTERNAL_SERVER_ERROR,
            RequestError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
        };
        let body = ErrorBody {
            error: self.0.to_string(),
        };
        (status, Json(body)).into_response()
    }
}
