//! One probe of one target: a TCP connect, or an HTTP/1.1 GET over a fresh
//! connection (no reuse, like HAProxy), the whole exchange bounded by the
//! check's timeout; or an `exec` or `mysql` check ([`super::exec`],
//! [`super::mysql`]). Probes leave from the LB node's own network
//! namespace, TCP and HTTP ones bound to the configured source address and
//! interface.
//!
//! A target that misbehaves costs one probe no more than the timeout and a
//! bounded buffer: a response head longer than [`MAX_RESPONSE_HEAD`] fails
//! at once, a body is searched in its first [`MAX_BODY_SEARCHED`] bytes
//! only (and not read at all without `expect_body`), and the connection is
//! reset when the probe ends, whatever the server is still sending.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, HOST, USER_AGENT};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{self, Instant};

use super::result::{is_local_fault, CheckFailure, CheckPass, CheckResult, LocalFault};
use super::spec::{CheckTarget, HttpProbe, ProbeKind, ProbeSource, ProbeSpec};
use crate::error_chain::error_chain;

/// The body prefix searched for `expect_body`; the rest of a longer body is not read.
pub const MAX_BODY_SEARCHED: usize = 64 * 1024;
/// The largest response head read (status line and headers); a longer one
/// fails the check at once, however fast or slow it comes.
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;
const USER_AGENT_VALUE: &str = "lb-health-check";

/// Probes `target` once; the result arrives within the check's timeout.
pub async fn check(target: &CheckTarget) -> CheckResult {
    let probe = &target.spec().probe;
    match probe.kind() {
        ProbeKind::Tcp => connect_check(target, None).await,
        ProbeKind::Http(http) => connect_check(target, Some(http)).await,
        ProbeKind::Exec(exec) => super::exec::check(exec, target, probe.timeout()).await,
        ProbeKind::Mysql(mysql) => super::mysql::check(mysql, target, probe.timeout()).await,
    }
}

/// A TCP connect to `target`, then the GET of `http` if given.
async fn connect_check(target: &CheckTarget, http: Option<&HttpProbe>) -> CheckResult {
    let probe = &target.spec().probe;
    let deadline = Instant::now() + probe.timeout();
    let address = SocketAddr::from((target.address(), target.port()));
    let stream = match connect(address, probe, deadline).await {
        Ok(stream) => stream,
        Err(result) => return result,
    };
    let Some(http) = http else {
        return CheckResult::Pass(CheckPass::TcpConnected);
    };
    match time::timeout_at(deadline, http_get(stream, http, target)).await {
        Ok(result) => result,
        Err(_) => CheckResult::Fail(CheckFailure::ResponseTimeout(probe.timeout())),
    }
}

/// Connects from the probe's source to `address` before `deadline`; the
/// error is the check's result. The stream resets the connection when
/// dropped, so checks leave no TIME_WAIT sockets behind.
async fn connect(
    address: SocketAddr,
    probe: &ProbeSpec,
    deadline: Instant,
) -> Result<TcpStream, CheckResult> {
    let local = |fault| CheckResult::Unknown(fault);
    let failed = |failure| CheckResult::Fail(failure);
    let socket = probe_socket(probe.source()).map_err(|error| local(LocalFault::Socket(error)))?;
    let stream = match time::timeout_at(deadline, socket.connect(address)).await {
        Err(_) => return Err(failed(CheckFailure::ConnectTimeout(probe.timeout()))),
        Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(failed(CheckFailure::ConnectionRefused))
        }
        Ok(Err(error)) if is_local_fault(&error) => {
            return Err(local(LocalFault::Unreachable(error.to_string())))
        }
        Ok(Err(error)) => return Err(failed(CheckFailure::Connect(error.to_string()))),
        Ok(Ok(stream)) => stream,
    };
    stream
        .set_zero_linger()
        .map_err(|error| local(LocalFault::Socket(format!("SO_LINGER: {error}"))))?;
    Ok(stream)
}

/// A TCP socket bound to `source`'s interface and address, if configured.
fn probe_socket(source: &ProbeSource) -> Result<TcpSocket, String> {
    let socket = TcpSocket::new_v4().map_err(|error| error.to_string())?;
    if let Some(interface) = source.interface() {
        socket
            .bind_device(Some(interface.as_bytes()))
            .map_err(|error| format!("bind to interface {interface}: {error}"))?;
    }
    if let Some(address) = source.address() {
        socket
            .bind(SocketAddr::from((address, 0)))
            .map_err(|error| format!("bind to address {address}: {error}"))?;
    }
    Ok(socket)
}

/// Sends the GET of `http` over `stream` and judges the response.
async fn http_get(stream: TcpStream, http: &HttpProbe, target: &CheckTarget) -> CheckResult {
    let (mut sender, connection) = match hyper::client::conn::http1::Builder::new()
        .max_buf_size(MAX_RESPONSE_HEAD)
        .handshake(TokioIo::new(stream))
        .await
    {
        Ok(parts) => parts,
        Err(error) => return CheckResult::Fail(CheckFailure::Http(error_chain(&error))),
    };
    let exchange = async {
        let response = sender
            .send_request(request(http, target))
            .await
            .map_err(|error| CheckFailure::Http(error_chain(&error)))?;
        let status = response.status().as_u16();
        if !http.expect_status().contains(status) {
            return Err(CheckFailure::Status {
                status,
                expected: http.expect_status(),
            });
        }
        if let Some(needle) = http.expect_body() {
            let found = body_contains(response.into_body(), needle.as_bytes())
                .await
                .map_err(|error| CheckFailure::Http(error_chain(&error)))?;
            if !found {
                return Err(CheckFailure::BodyMismatch {
                    expected: needle.to_owned(),
                });
            }
        }
        Ok(CheckPass::HttpStatus(status))
    };
    // The connection future does the IO; once it ends (the server closed, or
    // an error), the exchange sees the outcome through its channels, so keep
    // waiting for the exchange only.
    let drive_connection = async {
        // Its error also reaches the exchange, which reports it.
        let _ = connection.await;
        std::future::pending::<Infallible>().await
    };
    tokio::select! {
        outcome = exchange => match outcome {
            Ok(pass) => CheckResult::Pass(pass),
            Err(failure) => CheckResult::Fail(failure),
        },
        never = drive_connection => match never {},
    }
}

/// The GET request of `http` for `target`, with its Host header.
fn request(http: &HttpProbe, target: &CheckTarget) -> Request<Empty<Bytes>> {
    let mut request = Request::new(Empty::new());
    *request.uri_mut() = Uri::from(http.path().clone());
    let host = http.host().cloned().unwrap_or_else(|| default_host(target));
    let headers = request.headers_mut();
    headers.insert(HOST, host);
    headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    request
}

/// The target's address, and its port unless it is HTTP's default (RFC 9110 §7.2).
fn default_host(target: &CheckTarget) -> HeaderValue {
    let host = match target.port() {
        80 => target.address().to_string(),
        port => format!("{}:{port}", target.address()),
    };
    HeaderValue::from_str(&host).expect("an IPv4 address and a port are a valid header value")
}

/// Whether the first [`MAX_BODY_SEARCHED`] bytes of `body` contain `needle`.
async fn body_contains(mut body: Incoming, needle: &[u8]) -> Result<bool, hyper::Error> {
    let mut seen = Vec::new();
    while seen.len() < MAX_BODY_SEARCHED {
        let Some(frame) = body.frame().await else {
            break;
        };
        if let Ok(data) = frame?.into_data() {
            let room = MAX_BODY_SEARCHED - seen.len();
            seen.extend_from_slice(&data[..data.len().min(room)]);
            if contains(&seen, needle) {
                return Ok(true);
            }
        }
    }
    Ok(contains(&seen, needle))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::net::TcpListener;

    use super::super::spec::{CheckSpec, HealthParams, StatusRange};
    use super::super::test_server::{Reply, StubServer};
    use super::*;

    const TIMEOUT: Duration = Duration::from_millis(300);

    fn target(port: u16, kind: ProbeKind, source: ProbeSource) -> CheckTarget {
        let probe = ProbeSpec::new(kind, TIMEOUT).unwrap().with_source(source);
        let spec = CheckSpec {
            probe,
            params: HealthParams::default(),
        };
        CheckTarget::new(Ipv4Addr::LOCALHOST, port, Arc::new(spec)).unwrap()
    }

    fn http(path: &str) -> HttpProbe {
        HttpProbe::new(path).unwrap()
    }

    async fn check_http(server: &StubServer, probe: HttpProbe) -> CheckResult {
        let target = target(
            server.port(),
            ProbeKind::Http(probe),
            ProbeSource::default(),
        );
        check(&target).await
    }

    /// A port on 127.0.0.1 where nothing listens.
    async fn closed_port() -> u16 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        listener.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn tcp_check_passes_when_the_port_accepts() {
        let server = StubServer::start(Reply::Silent).await;
        let target = target(server.port(), ProbeKind::Tcp, ProbeSource::default());
        assert_eq!(
            check(&target).await,
            CheckResult::Pass(CheckPass::TcpConnected)
        );
    }

    #[tokio::test]
    async fn tcp_check_reports_a_refused_connection() {
        let target = target(closed_port().await, ProbeKind::Tcp, ProbeSource::default());
        let result = check(&target).await;
        assert_eq!(result, CheckResult::Fail(CheckFailure::ConnectionRefused));
        assert_eq!(result.to_string(), "connection refused");
    }

    #[tokio::test]
    async fn tcp_check_times_out_when_the_syn_goes_unanswered() {
        // A listener that never accepts, with its accept queue filled: the
        // kernel drops further SYNs, so the next connect hangs.
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind((Ipv4Addr::LOCALHOST, 0).into()).unwrap();
        let listener = socket.listen(0).unwrap();
        let address = listener.local_addr().unwrap();
        let mut queued = Vec::new();
        for _ in 0..8 {
            match time::timeout(TIMEOUT, TcpStream::connect(address)).await {
                Ok(stream) => queued.push(stream.unwrap()),
                Err(_) => break,
            }
        }
        assert!(queued.len() < 8, "the accept queue never filled");
        let target = target(address.port(), ProbeKind::Tcp, ProbeSource::default());
        let started = Instant::now();
        let result = check(&target).await;
        assert!(
            matches!(result, CheckResult::Fail(CheckFailure::ConnectTimeout(_))),
            "{result:?}"
        );
        assert!(started.elapsed() >= TIMEOUT && started.elapsed() < TIMEOUT * 3);
        assert!(result.to_string().starts_with("connect timeout after "));
    }

    #[tokio::test]
    async fn http_check_passes_on_an_expected_status_and_sends_path_and_host() {
        let server = StubServer::start(Reply::http(200, "ok")).await;
        let result = check_http(&server, http("/health?deep=1")).await;
        assert_eq!(result, CheckResult::Pass(CheckPass::HttpStatus(200)));
        let request = server.requests().pop().expect("one request");
        assert!(
            request.starts_with("GET /health?deep=1 HTTP/1.1\r\n"),
            "{request}"
        );
        let host = format!("host: 127.0.0.1:{}\r\n", server.port());
        assert!(request.to_lowercase().contains(&host), "{request}");
    }

    #[tokio::test]
    async fn http_check_sends_the_configured_host() {
        let server = StubServer::start(Reply::http(204, "")).await;
        let probe = http("/").with_host("www.example.test").unwrap();
        let result = check_http(&server, probe).await;
        assert_eq!(result, CheckResult::Pass(CheckPass::HttpStatus(204)));
        let request = server.requests().pop().expect("one request");
        assert!(
            request
                .to_lowercase()
                .contains("host: www.example.test\r\n"),
            "{request}"
        );
    }

    #[tokio::test]
    async fn http_check_fails_on_a_status_outside_the_range() {
        let server = StubServer::start(Reply::http(503, "busy")).await;
        let result = check_http(&server, http("/health")).await;
        assert_eq!(result.to_string(), "HTTP status 503 (expected 200-399)");

        let strict: StatusRange = "200".parse().unwrap();
        let server = StubServer::start(Reply::http(301, "")).await;
        let result = check_http(&server, http("/").with_expect_status(strict)).await;
        assert_eq!(result.to_string(), "HTTP status 301 (expected 200)");
    }

    #[tokio::test]
    async fn http_check_matches_a_body_substring() {
        let server = StubServer::start(Reply::http(200, "{\"status\":\"ready\"}")).await;
        let probe = http("/health").with_expect_body("\"ready\"").unwrap();
        let result = check_http(&server, probe).await;
        assert_eq!(result, CheckResult::Pass(CheckPass::HttpStatus(200)));

        let probe = http("/health").with_expect_body("healthy").unwrap();
        let result = check_http(&server, probe).await;
        assert_eq!(
            result.to_string(),
            "response body does not contain \"healthy\""
        );
    }

    #[tokio::test]
    async fn http_check_times_out_when_the_server_accepts_but_never_answers() {
        let server = StubServer::start(Reply::Silent).await;
        let started = Instant::now();
        let result = check_http(&server, http("/health")).await;
        assert_eq!(
            result,
            CheckResult::Fail(CheckFailure::ResponseTimeout(TIMEOUT))
        );
        assert_eq!(result.to_string(), "HTTP response timeout after 300ms");
        assert!(started.elapsed() >= TIMEOUT && started.elapsed() < TIMEOUT * 3);
    }

    #[tokio::test]
    async fn http_check_fails_when_the_server_closes_without_answering() {
        let server = StubServer::start(Reply::Close).await;
        let result = check_http(&server, http("/health")).await;
        assert!(
            matches!(result, CheckResult::Fail(CheckFailure::Http(_))),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn http_check_fails_on_a_response_that_is_not_http() {
        let server =
            StubServer::start(Reply::Respond("SSH-2.0-OpenSSH_9.2\r\n\r\n".to_owned())).await;
        let result = check_http(&server, http("/health")).await;
        assert!(
            matches!(result, CheckResult::Fail(CheckFailure::Http(_))),
            "{result:?}"
        );
    }

    /// Waits until `server` saw `count` connections closed by the probe.
    async fn closed_by_the_probe(server: &StubServer, count: usize) -> bool {
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if server.closed_by_client() >= count {
                return true;
            }
            time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test]
    async fn a_reset_after_accept_fails_the_http_check_at_once() {
        let server = StubServer::start(Reply::Reset).await;
        let started = Instant::now();
        let result = check_http(&server, http("/health")).await;
        // Seen while reading the response, or already by the end of the
        // handshake when the RST comes first.
        assert!(
            matches!(
                result,
                CheckResult::Fail(CheckFailure::Http(_) | CheckFailure::Connect(_))
            ),
            "{result:?}"
        );
        assert!(started.elapsed() < TIMEOUT, "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_server_that_trickles_bytes_times_out_and_is_cut_off() {
        let server = StubServer::start(Reply::Trickle).await;
        let started = Instant::now();
        let result = check_http(&server, http("/health")).await;
        assert_eq!(
            result,
            CheckResult::Fail(CheckFailure::ResponseTimeout(TIMEOUT))
        );
        let elapsed = started.elapsed();
        assert!(elapsed >= TIMEOUT && elapsed < TIMEOUT * 2, "{elapsed:?}");
        // The next trickled byte finds the connection reset.
        assert!(closed_by_the_probe(&server, 1).await);
    }

    #[tokio::test]
    async fn an_endless_body_is_searched_in_its_first_64_kib_only() {
        let server = StubServer::start(Reply::EndlessBody).await;
        let started = Instant::now();
        let probe = http("/health").with_expect_body("ready").unwrap();
        let result = check_http(&server, probe).await;
        assert_eq!(
            result,
            CheckResult::Fail(CheckFailure::BodyMismatch {
                expected: "ready".to_owned()
            })
        );
        // Judged on the capped prefix, not when the timeout cut the read.
        assert!(started.elapsed() < TIMEOUT, "{:?}", started.elapsed());
        assert!(closed_by_the_probe(&server, 1).await);

        // Without expect_body the body is not read at all.
        let started = Instant::now();
        let result = check_http(&server, http("/health")).await;
        assert_eq!(result, CheckResult::Pass(CheckPass::HttpStatus(200)));
        assert!(started.elapsed() < TIMEOUT, "{:?}", started.elapsed());
        assert!(closed_by_the_probe(&server, 2).await);
    }

    #[tokio::test]
    async fn an_endless_response_head_fails_at_its_cap() {
        let server = StubServer::start(Reply::EndlessHeader).await;
        let started = Instant::now();
        let result = check_http(&server, http("/health")).await;
        assert!(
            matches!(result, CheckResult::Fail(CheckFailure::Http(ref reason)) if reason.contains("too large")),
            "{result:?}"
        );
        assert!(started.elapsed() < TIMEOUT, "{:?}", started.elapsed());
        assert!(closed_by_the_probe(&server, 1).await);
    }

    #[tokio::test]
    async fn http_check_reports_a_refused_connection() {
        let port = closed_port().await;
        let kind = ProbeKind::Http(http("/health"));
        let result = check(&target(port, kind, ProbeSource::default())).await;
        assert_eq!(result, CheckResult::Fail(CheckFailure::ConnectionRefused));
    }

    #[tokio::test]
    async fn probes_leave_from_the_configured_source_address_and_interface() {
        let server = StubServer::start(Reply::http(200, "")).await;
        let source = ProbeSource::default()
            .with_address(Ipv4Addr::new(127, 0, 0, 2))
            .with_interface("lo")
            .unwrap();
        let kind = ProbeKind::Http(http("/"));
        let result = check(&target(server.port(), kind, source)).await;
        assert_eq!(result, CheckResult::Pass(CheckPass::HttpStatus(200)));
        assert_eq!(server.peers(), [Ipv4Addr::new(127, 0, 0, 2)]);
    }

    #[tokio::test]
    async fn a_source_that_cannot_be_bound_is_a_fault_of_this_node() {
        let server = StubServer::start(Reply::http(200, "")).await;
        let source = ProbeSource::default()
            .with_interface("no-such-if0")
            .unwrap();
        let result = check(&target(server.port(), ProbeKind::Tcp, source)).await;
        assert!(
            matches!(result, CheckResult::Unknown(LocalFault::Socket(_))),
            "{result:?}"
        );
        assert!(server.peers().is_empty());
    }
}
