//! The control API's client, used by `lb status`, `lb backend ...` and `lb
//! reload`: one
//! HTTP/1.1 request per connection (hyper), bounded in time.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;

use super::model::{BackendStatus, ErrorBody, StatusReport, WeightRequest};
use crate::domain::{AdminAction, ReloadOutcome};

/// Bound of one whole request (connect, send, receive).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request to the API failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the lb API at {api} (is `lb run` running in this network namespace? see global.api)")]
    Connect {
        api: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the lb API at {api} did not answer within {REQUEST_TIMEOUT:?}")]
    Timeout { api: SocketAddr },
    #[error("HTTP exchange with the lb API failed")]
    Http(#[from] hyper::Error),
    #[error("{0}")]
    Refused(String),
    #[error("unexpected answer from the lb API (HTTP {status}): {body}")]
    Unexpected { status: StatusCode, body: String },
    #[error("{what} {name:?} is not a valid name (a-z, 0-9, '_' and '-')")]
    InvalidName { what: &'static str, name: String },
}

/// A client of the API at one address.
#[derive(Debug, Clone, Copy)]
pub struct ApiClient {
    api: SocketAddr,
}

impl ApiClient {
    pub fn new(api: SocketAddr) -> Self {
        ApiClient { api }
    }

    /// `GET /status`.
    pub async fn status(&self) -> Result<StatusReport, ClientError> {
        self.request(Method::GET, "/status".to_owned(), None).await
    }

    /// `POST /reload`: the running `lb` reloads its configuration file.
    pub async fn reload(&self) -> Result<ReloadOutcome, ClientError> {
        self.request(Method::POST, "/reload".to_owned(), None).await
    }

    /// Applies `action` to backend `backend` of service `service`.
    pub async fn backend(
        &self,
        service: &str,
        backend: &str,
        action: AdminAction,
    ) -> Result<BackendStatus, ClientError> {
        check_name("service", service)?;
        check_name("backend", backend)?;
        let base = format!("/services/{service}/backends/{backend}");
        let (method, path, body) = match action {
            AdminAction::Drain => (Method::POST, format!("{base}/drain"), None),
            AdminAction::Enable => (Method::POST, format!("{base}/enable"), None),
            AdminAction::Disable => (Method::POST, format!("{base}/disable"), None),
            AdminAction::Weight(weight) => (
                Method::PUT,
                format!("{base}/weight"),
                Some(
                    serde_json::to_vec(&WeightRequest { weight })
                        .expect("a struct of one integer serializes"),
                ),
            ),
        };
        self.request(method, path, body).await
    }

    async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        path: String,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let api = self.api;
        tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(method, path, body))
            .await
            .map_err(|_| ClientError::Timeout { api })?
    }

    async fn exchange<T: DeserializeOwned>(
        &self,
        method: Method,
        path: String,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let api = self.api;
        let stream = TcpStream::connect(api)
            .await
            .map_err(|source| ClientError::Connect { api, source })?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let connection = tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, api.to_string());
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .expect("method, path and headers were validated");
        let response = sender.send_request(request).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        drop(sender);
        // The server closes or keeps the connection: either way we are done.
        connection.abort();
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|error| ClientError::Unexpected {
                status,
                body: format!("{error}: {}", String::from_utf8_lossy(&bytes)),
            });
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(error) => Err(ClientError::Refused(error.error)),
            Err(_) => Err(ClientError::Unexpected {
                status,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            }),
        }
    }
}

/// Names go into the request path: only the characters the configuration
/// allows in names are accepted.
fn check_name(what: &'static str, name: &str) -> Result<(), ClientError> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(ClientError::InvalidName {
            what,
            name: name.to_owned(),
        })
    }
}
