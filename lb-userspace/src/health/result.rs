//! What one check found: a pass, or the reason it failed, worded for operators.

use std::fmt;
use std::time::Duration;

use super::spec::StatusRange;

/// The outcome of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckResult {
    Pass(CheckPass),
    Fail(CheckFailure),
}

impl CheckResult {
    pub fn passed(&self) -> bool {
        matches!(self, CheckResult::Pass(_))
    }
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckResult::Pass(pass) => pass.fmt(f),
            CheckResult::Fail(failure) => failure.fmt(f),
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

/// Why a probe failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckFailure {
    /// The probe's own socket could not be set up (source address or interface).
    #[error("cannot prepare the probe socket: {0}")]
    LocalSocket(String),
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
