//! What one check found: a pass, the reason it failed, or why this node
//! could not check at all, worded for operators; and which connect errors
//! are this node's own fault ([`is_local_fault`]), for every probe that connects.

use std::fmt;
use std::time::Duration;

use super::spec::{ExpectRole, StatusRange};

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
    /// The exec check's command exited with status 0.
    CommandSucceeded,
    /// The MySQL server took the login and has this role; a replica's lag
    /// in seconds, when it was asked for.
    MysqlRole {
        role: ServerRole,
        lag: Option<u64>,
    },
}

impl fmt::Display for CheckPass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckPass::TcpConnected => f.write_str("TCP connect succeeded"),
            CheckPass::HttpStatus(status) => write!(f, "HTTP status {status}"),
            CheckPass::CommandSucceeded => f.write_str("command exited with status 0"),
            CheckPass::MysqlRole { role, lag: None } => write!(f, "role {role}"),
            CheckPass::MysqlRole {
                role,
                lag: Some(lag),
            } => write!(f, "role {role}, lag {lag}s"),
        }
    }
}

/// What a MySQL server is, by `@@global.read_only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerRole {
    /// Writable (`read_only = 0`).
    Primary,
    /// Read-only (`read_only = 1`).
    Replica,
}

impl fmt::Display for ServerRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServerRole::Primary => "primary",
            ServerRole::Replica => "replica",
        })
    }
}

/// `: line` for a failed command's first line of output, nothing without one.
fn output_suffix(line: Option<&str>) -> String {
    line.map(|line| format!(": {line}")).unwrap_or_default()
}

/// Whether a failed connect never left this node: its link is down
/// (`ENETDOWN`, or `ENETUNREACH` once the link's routes are gone), it has
/// no route to the backend (`ENETUNREACH`), or the source address is gone
/// (`EADDRNOTAVAIL`). `EHOSTUNREACH` is not among them: it is also what a
/// dead backend on the node's own link gives (no ARP reply). The TCP, HTTP
/// and `mysql` checks' connects are judged by it, and the probe datagram
/// of a backend's MAC resolution (`crate::neighbour`).
pub fn is_local_fault(error: &std::io::Error) -> bool {
    use rustix::io::Errno;
    [Errno::NETUNREACH, Errno::NETDOWN, Errno::ADDRNOTAVAIL]
        .iter()
        .any(|errno| error.raw_os_error() == Some(errno.raw_os_error()))
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
    /// The exec check's command could not be started.
    #[error("cannot run the command: {0}")]
    CommandSpawn(String),
    /// With the first line the command wrote to stderr, if any (shortened).
    #[error("command exited with status {code}{}", output_suffix(.output.as_deref()))]
    CommandExit { code: i32, output: Option<String> },
    #[error("command killed by signal {signal}{}", output_suffix(.output.as_deref()))]
    CommandSignal { signal: i32, output: Option<String> },
    #[error("command timeout after {0:?}: killed")]
    CommandTimeout(Duration),
    /// The whole MySQL check (connect, login, queries) overran its timeout.
    #[error("MySQL check timeout after {0:?}")]
    MysqlTimeout(Duration),
    /// The server refused the login; its message names the user, never the password.
    #[error("login failed: {0}")]
    MysqlLogin(String),
    /// The handshake, a query or the connection failed after connecting.
    #[error("MySQL error: {0}")]
    Mysql(String),
    #[error("role is {role}, expected {expected}")]
    Role {
        role: ServerRole,
        expected: ExpectRole,
    },
    /// `thread` is `IO` or `SQL`, `state` what the server says (`No`, `Connecting`).
    #[error("replication stopped: {thread} thread {state}")]
    ReplicationStopped { thread: &'static str, state: String },
    #[error("read-only but not a replica: SHOW REPLICA STATUS is empty")]
    NotReplicating,
    #[error("replication lag unknown: Seconds_Behind_Master is NULL")]
    LagUnknown,
    #[error("lag {lag}s > max_lag {max:?}")]
    Lag { lag: u64, max: Duration },
}
