//! What one check found: a pass, the reason it failed, or why this node
//! could not check at all, worded for operators.

use std::fmt;
use std::time::Duration;

use super::spec::StatusRange;

/// The outcome of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckResult {
    Pass(CheckPass),
    Fail(CheckFailure),
    /// The probe could not be made because of this node's own state: it
    /// says nothing about the backend, so it counts neither way.
    Unknown(LocalFault),
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckResult::Pass(pass) => pass.fmt(f),
            CheckResult::Fail(failure) => failure.fmt(f),
            CheckResult::Unknown(fault) => fault.fmt(f),
        }
    }
}

/// What a passing probe saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckPass {
    TcpConnected,
    HttpStatus(u16),
}

impl fmt::Display for CheckPass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckPass::TcpConnected => f.write_str("TCP connect succeeded"),
            CheckPass::HttpStatus(status) => write!(f, "HTTP status {status}"),
        }
    }
}

/// Why this node could not probe: its own link, routes or addresses, not
/// the backend's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalFault {
    /// The probe's own socket could not be set up (source address or interface).
    #[error("cannot prepare the probe socket: {0}")]
    Socket(String),
    /// The connect failed before leaving this node: its link is down, it
    /// has no route to the backend, or the source address is gone.
    #[error("this node cannot reach the backend: {0}")]
    Unreachable(String),
}

/// Why a probe failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckFailure {
    #[error("connection refused")]
    ConnectionRefused,
    #[error("connect timeout after {0:?}")]
    ConnectTimeout(Duration),
    #[error("connect failed: {0}")]
    Connect(String),
    /// Connected, but no complete response within the check's timeout.
    #[error("HTTP response timeout after {0:?}")]
    ResponseTimeout(Duration),
    /// The server closed the connection or did not speak HTTP/1.
    #[error("HTTP exchange failed: {0}")]
    Http(String),
    #[error("HTTP status {status} (expected {expected})")]
    Status { status: u16, expected: StatusRange },
    #[error("response body does not contain {expected:?}")]
    BodyMismatch { expected: String },
}
