//! The validated model of a health check: what to probe, how, and on what schedule.
//!
//! Every constructor validates its input and names the TOML key it came from
//! ([`SpecError::field`]), so the config module can point at the offending line.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hyper::header::HeaderValue;
use hyper::http::uri::PathAndQuery;

/// Time between checks of a stable backend unless configured (HAProxy's `inter` default).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
/// Bound of one whole check (connect, request, response) unless configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// Consecutive passing checks that bring a backend up (HAProxy's default).
pub const DEFAULT_RISE: u32 = 2;
/// Consecutive failing checks that bring a backend down (HAProxy's default).
pub const DEFAULT_FALL: u32 = 3;
/// HTTP statuses that pass unless configured.
pub const DEFAULT_EXPECT_STATUS: StatusRange = StatusRange {
    low: 200,
    high: 399,
};
/// Longest interface name the kernel accepts (`IFNAMSIZ` minus the NUL).
const MAX_INTERFACE_NAME: usize = 15;
/// Longest exec check command accepted.
const MAX_COMMAND: usize = 4096;
/// Longest MySQL user name: MariaDB's limit (MySQL's is 32).
const MAX_MYSQL_USER: usize = 80;
/// Longest MySQL database name (both servers).
const MAX_MYSQL_DATABASE: usize = 64;

/// A health-check setting that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("`{field}` must be longer than zero")]
    ZeroDuration { field: &'static str },
    #[error("`{field}` must be at least 1")]
    ZeroCount { field: &'static str },
    #[error("`port` must not be 0")]
    ZeroPort,
    #[error(
        "`expect_status` must be a status or a range of statuses within 100-599 like \"200-399\", got {value:?}"
    )]
    StatusRange { value: String },
    #[error("`path` must be an absolute request path like \"/health\", got {value:?}")]
    Path { value: String },
    #[error(
        "`host` must be a non-empty host name without spaces or control characters, got {value:?}"
    )]
    Host { value: String },
    #[error("`expect_body` must not be empty")]
    EmptyExpectBody,
    #[error("`interface` must be an interface name of 1 to 15 characters without '/', spaces or NUL, got {value:?}")]
    Interface { value: String },
    #[error("`command` must be a non-empty shell command of at most 4096 bytes without NUL")]
    Command,
    #[error("`user` must be a MySQL user name of 1 to 80 characters without NUL")]
    User,
    #[error("`database` must be a MySQL database name of 1 to 64 characters without NUL or '/'")]
    Database,
    #[error("`password_file` holds an empty password (a check user needs a password)")]
    EmptyPassword,
    #[error("`expect_role` must be \"primary\", \"replica\" or \"any\", got {value:?}")]
    ExpectRole { value: String },
    #[error(
        "`max_lag` only applies to expect_role = \"replica\" (a primary has no replication lag)"
    )]
    MaxLagWithoutReplica,
}

impl SpecError {
    /// The TOML key the rejected value belongs to.
    pub fn field(&self) -> &'static str {
        match self {
            SpecError::ZeroDuration { field } | SpecError::ZeroCount { field } => field,
            SpecError::ZeroPort => "port",
            SpecError::StatusRange { .. } => "expect_status",
            SpecError::Path { .. } => "path",
            SpecError::Host { .. } => "host",
            SpecError::EmptyExpectBody => "expect_body",
            SpecError::Interface { .. } => "interface",
            SpecError::Command => "command",
            SpecError::User => "user",
            SpecError::Database => "database",
            SpecError::EmptyPassword => "password_file",
            SpecError::ExpectRole { .. } => "expect_role",
            SpecError::MaxLagWithoutReplica => "max_lag",
        }
    }
}

/// A backend and the check that probes it: the unit the checker deduplicates on.
///
/// Two services that share a backend address and check definition produce equal
/// targets, so the backend is probed once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CheckTarget {
    address: Ipv4Addr,
    port: u16,
    spec: Arc<CheckSpec>,
}

impl CheckTarget {
    /// The check `spec` of the backend at `address`, probed on `port` (for a
    /// service's backend: the check's `port`, else the service port).
    pub fn new(address: Ipv4Addr, port: u16, spec: Arc<CheckSpec>) -> Result<Self, SpecError> {
        if port == 0 {
            return Err(SpecError::ZeroPort);
        }
        Ok(CheckTarget {
            address,
            port,
            spec,
        })
    }

    pub fn address(&self) -> Ipv4Addr {
        self.address
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn spec(&self) -> &CheckSpec {
        &self.spec
    }
}

impl fmt::Display for CheckTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{} ({})",
            self.address, self.port, self.spec.probe.kind
        )
    }
}

/// A complete check definition: the probe and the schedule that drives it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct CheckSpec {
    pub probe: ProbeSpec,
    pub params: HealthParams,
}

/// When to check and how many results change a backend's health.
///
/// The schedule follows HAProxy: `interval` while the state is stable and up,
/// `fastinter` while a transition is in progress (some results disagree with
/// the current state but not yet `rise`/`fall` of them), `downinter` while
/// stable and down. `fastinter` and `downinter` default to `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HealthParams {
    interval: Duration,
    fastinter: Duration,
    downinter: Duration,
    rise: u32,
    fall: u32,
}

impl HealthParams {
    /// Checks every `interval`; `rise` passes bring a backend up, `fall` failures down.
    pub fn new(interval: Duration, rise: u32, fall: u32) -> Result<Self, SpecError> {
        Ok(HealthParams {
            interval: non_zero_duration(interval, "interval")?,
            fastinter: interval,
            downinter: interval,
            rise: non_zero_count(rise, "rise")?,
            fall: non_zero_count(fall, "fall")?,
        })
    }

    /// Sets the interval used while a transition is in progress.
    pub fn with_fastinter(self, fastinter: Duration) -> Result<Self, SpecError> {
        Ok(HealthParams {
            fastinter: non_zero_duration(fastinter, "fastinter")?,
            ..self
        })
    }

    /// Sets the interval used while the backend is down and no check has passed since.
    pub fn with_downinter(self, downinter: Duration) -> Result<Self, SpecError> {
        Ok(HealthParams {
            downinter: non_zero_duration(downinter, "downinter")?,
            ..self
        })
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    pub fn fastinter(&self) -> Duration {
        self.fastinter
    }

    pub fn downinter(&self) -> Duration {
        self.downinter
    }

    pub fn rise(&self) -> u32 {
        self.rise
    }

    pub fn fall(&self) -> u32 {
        self.fall
    }
}

impl Default for HealthParams {
    fn default() -> Self {
        HealthParams {
            interval: DEFAULT_INTERVAL,
            fastinter: DEFAULT_INTERVAL,
            downinter: DEFAULT_INTERVAL,
            rise: DEFAULT_RISE,
            fall: DEFAULT_FALL,
        }
    }
}

/// One probe: what it sends, how long it may take, and where it is sent from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProbeSpec {
    kind: ProbeKind,
    timeout: Duration,
    source: ProbeSource,
}

impl ProbeSpec {
    /// A probe of `kind` whose whole exchange must finish within `timeout`.
    pub fn new(kind: ProbeKind, timeout: Duration) -> Result<Self, SpecError> {
        Ok(ProbeSpec {
            kind,
            timeout: non_zero_duration(timeout, "timeout")?,
            source: ProbeSource::default(),
        })
    }

    /// Sends the probe from `source` instead of letting the kernel choose.
    pub fn with_source(self, source: ProbeSource) -> Self {
        ProbeSpec { source, ..self }
    }

    /// The same probe schedule and source with another `kind`.
    pub fn with_kind(self, kind: ProbeKind) -> Self {
        ProbeSpec { kind, ..self }
    }

    pub fn kind(&self) -> &ProbeKind {
        &self.kind
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn source(&self) -> &ProbeSource {
        &self.source
    }
}

impl Default for ProbeSpec {
    /// A TCP connect check bounded by [`DEFAULT_TIMEOUT`].
    fn default() -> Self {
        ProbeSpec {
            kind: ProbeKind::Tcp,
            timeout: DEFAULT_TIMEOUT,
            source: ProbeSource::default(),
        }
    }
}

/// What a probe does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// The TCP connection alone passes.
    Tcp,
    /// An HTTP/1.1 GET whose response must match.
    Http(HttpProbe),
    /// A command of this node whose exit status 0 passes.
    Exec(ExecProbe),
    /// A MySQL/MariaDB login whose server must have the expected role.
    Mysql(MysqlProbe),
}

impl fmt::Display for ProbeKind {
    /// Logged with every check: never the command (it may hold secrets) nor
    /// the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeKind::Tcp => f.write_str("tcp connect"),
            ProbeKind::Http(http) => write!(f, "http GET {}", http.path),
            ProbeKind::Exec(exec) => write!(f, "exec command of service {}", exec.service),
            ProbeKind::Mysql(mysql) => write!(
                f,
                "mysql as {}, expect_role {}",
                mysql.user, mysql.expect_role
            ),
        }
    }
}

/// keepalived's `MISC_CHECK`: `command` run with `sh -c` on this node,
/// with the backend in its environment (`LB_BACKEND_ADDRESS`,
/// `LB_BACKEND_PORT`, `LB_SERVICE`). The service is part of the check, so
/// a backend in two services with the same command is checked once per
/// service.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExecProbe {
    command: String,
    service: String,
}

impl ExecProbe {
    /// Runs `command` for the backends of service `service`.
    pub fn new(command: &str, service: &str) -> Result<Self, SpecError> {
        if command.trim().is_empty() || command.len() > MAX_COMMAND || command.contains('\0') {
            return Err(SpecError::Command);
        }
        Ok(ExecProbe {
            command: command.to_owned(),
            service: service.to_owned(),
        })
    }

    pub fn command(&self) -> &str {
        &self.command
    }

    pub fn service(&self) -> &str {
        &self.service
    }
}

/// The role a MySQL check expects of its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ExpectRole {
    /// Writable: `@@global.read_only = 0`.
    Primary,
    /// Read-only, with both replication threads running (and within
    /// `max_lag`, if set).
    Replica,
    /// Any server that takes the login and answers.
    #[default]
    Any,
}

impl FromStr for ExpectRole {
    type Err = SpecError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "primary" => Ok(ExpectRole::Primary),
            "replica" => Ok(ExpectRole::Replica),
            "any" => Ok(ExpectRole::Any),
            other => Err(SpecError::ExpectRole {
                value: other.to_owned(),
            }),
        }
    }
}

impl fmt::Display for ExpectRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExpectRole::Primary => "primary",
            ExpectRole::Replica => "replica",
            ExpectRole::Any => "any",
        })
    }
}

/// A MySQL password, read from `password_file`: compared and hashed (so a
/// changed password restarts the check), never printed, not even by `Debug`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Password(String);

impl Password {
    /// The password `text`, which must not be empty.
    pub fn new(text: String) -> Result<Self, SpecError> {
        if text.is_empty() {
            return Err(SpecError::EmptyPassword);
        }
        Ok(Password(text))
    }

    /// The password itself, for the login only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A MySQL/MariaDB login as `user`, then the server's role
/// (`@@global.read_only`, and `SHOW REPLICA STATUS` for a replica).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MysqlProbe {
    user: String,
    password: Password,
    database: Option<String>,
    expect_role: ExpectRole,
    max_lag: Option<Duration>,
}

impl MysqlProbe {
    /// Logs in as `user` with `password`, expecting any role.
    pub fn new(user: &str, password: Password) -> Result<Self, SpecError> {
        if user.is_empty() || user.chars().count() > MAX_MYSQL_USER || user.contains('\0') {
            return Err(SpecError::User);
        }
        Ok(MysqlProbe {
            user: user.to_owned(),
            password,
            database: None,
            expect_role: ExpectRole::Any,
            max_lag: None,
        })
    }

    /// Logs in to `database` (which the user must be allowed to use).
    pub fn with_database(self, database: &str) -> Result<Self, SpecError> {
        let valid = !database.is_empty()
            && database.chars().count() <= MAX_MYSQL_DATABASE
            && !database.contains(['\0', '/']);
        if !valid {
            return Err(SpecError::Database);
        }
        Ok(MysqlProbe {
            database: Some(database.to_owned()),
            ..self
        })
    }

    /// Passes only a server of role `expect_role`; a `max_lag` set before
    /// stays only if it is [`ExpectRole::Replica`].
    pub fn with_expect_role(self, expect_role: ExpectRole) -> Self {
        let max_lag = self.max_lag.filter(|_| expect_role == ExpectRole::Replica);
        MysqlProbe {
            expect_role,
            max_lag,
            ..self
        }
    }

    /// Fails a replica more than `max_lag` behind its primary; only for
    /// [`ExpectRole::Replica`] (set the role first).
    pub fn with_max_lag(self, max_lag: Duration) -> Result<Self, SpecError> {
        if self.expect_role != ExpectRole::Replica {
            return Err(SpecError::MaxLagWithoutReplica);
        }
        Ok(MysqlProbe {
            max_lag: Some(max_lag),
            ..self
        })
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn password(&self) -> &Password {
        &self.password
    }

    pub fn database(&self) -> Option<&str> {
        self.database.as_deref()
    }

    pub fn expect_role(&self) -> ExpectRole {
        self.expect_role
    }

    pub fn max_lag(&self) -> Option<Duration> {
        self.max_lag
    }
}

/// An HTTP GET and what its response must look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpProbe {
    path: PathAndQuery,
    host: Option<HeaderValue>,
    expect_status: StatusRange,
    expect_body: Option<String>,
}

impl HttpProbe {
    /// GET `path` (with an optional query), expecting [`DEFAULT_EXPECT_STATUS`];
    /// the Host header is the backend's address until [`HttpProbe::with_host`].
    pub fn new(path: &str) -> Result<Self, SpecError> {
        let invalid = || SpecError::Path {
            value: path.to_owned(),
        };
        if !path.starts_with('/') {
            return Err(invalid());
        }
        let path = PathAndQuery::from_str(path).map_err(|_| invalid())?;
        Ok(HttpProbe {
            path,
            host: None,
            expect_status: DEFAULT_EXPECT_STATUS,
            expect_body: None,
        })
    }

    /// Sends `host` as the Host header.
    pub fn with_host(self, host: &str) -> Result<Self, SpecError> {
        let invalid = || SpecError::Host {
            value: host.to_owned(),
        };
        if host.is_empty() || host.chars().any(char::is_whitespace) {
            return Err(invalid());
        }
        let host = HeaderValue::from_str(host).map_err(|_| invalid())?;
        Ok(HttpProbe {
            host: Some(host),
            ..self
        })
    }

    /// Passes only a response status within `expect_status`.
    pub fn with_expect_status(self, expect_status: StatusRange) -> Self {
        HttpProbe {
            expect_status,
            ..self
        }
    }

    /// Passes only a response whose body contains `needle`.
    pub fn with_expect_body(self, needle: &str) -> Result<Self, SpecError> {
        if needle.is_empty() {
            return Err(SpecError::EmptyExpectBody);
        }
        Ok(HttpProbe {
            expect_body: Some(needle.to_owned()),
            ..self
        })
    }

    pub fn path(&self) -> &PathAndQuery {
        &self.path
    }

    pub fn host(&self) -> Option<&HeaderValue> {
        self.host.as_ref()
    }

    pub fn expect_status(&self) -> StatusRange {
        self.expect_status
    }

    pub fn expect_body(&self) -> Option<&str> {
        self.expect_body.as_deref()
    }
}

impl Hash for HttpProbe {
    // `PathAndQuery` is not `Hash`; its equality is that of its text.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.path.as_str().hash(state);
        self.host.hash(state);
        self.expect_status.hash(state);
        self.expect_body.hash(state);
    }
}

/// An inclusive range of HTTP statuses, written `"200-399"` or `"204"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusRange {
    low: u16,
    high: u16,
}

impl StatusRange {
    /// Statuses HTTP defines.
    const VALID: std::ops::RangeInclusive<u16> = 100..=599;

    /// Whether `status` is within the range.
    pub fn contains(&self, status: u16) -> bool {
        (self.low..=self.high).contains(&status)
    }
}

impl FromStr for StatusRange {
    type Err = SpecError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || SpecError::StatusRange {
            value: text.to_owned(),
        };
        let status = |s: &str| {
            s.parse::<u16>()
                .ok()
                .filter(|n| Self::VALID.contains(n))
                .ok_or_else(invalid)
        };
        let (low, high) = match text.split_once('-') {
            Some((low, high)) => (status(low)?, status(high)?),
            None => {
                let only = status(text)?;
                (only, only)
            }
        };
        if low > high {
            return Err(invalid());
        }
        Ok(StatusRange { low, high })
    }
}

impl fmt::Display for StatusRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.low == self.high {
            write!(f, "{}", self.low)
        } else {
            write!(f, "{}-{}", self.low, self.high)
        }
    }
}

/// Where probes leave from: by default the kernel picks the address and interface
/// from the routing table of the LB node's own network namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ProbeSource {
    address: Option<Ipv4Addr>,
    interface: Option<String>,
}

impl ProbeSource {
    /// Binds probes to the local `address`.
    pub fn with_address(self, address: Ipv4Addr) -> Self {
        ProbeSource {
            address: Some(address),
            ..self
        }
    }

    /// Sends probes through `interface` only (`SO_BINDTODEVICE`; needs `CAP_NET_RAW`).
    pub fn with_interface(self, interface: &str) -> Result<Self, SpecError> {
        let valid = (1..=MAX_INTERFACE_NAME).contains(&interface.len())
            && !interface
                .chars()
                .any(|c| c == '/' || c == '\0' || c.is_whitespace());
        if !valid {
            return Err(SpecError::Interface {
                value: interface.to_owned(),
            });
        }
        Ok(ProbeSource {
            interface: Some(interface.to_owned()),
            ..self
        })
    }

    pub fn address(&self) -> Option<Ipv4Addr> {
        self.address
    }

    pub fn interface(&self) -> Option<&str> {
        self.interface.as_deref()
    }
}

fn non_zero_duration(value: Duration, field: &'static str) -> Result<Duration, SpecError> {
    if value.is_zero() {
        Err(SpecError::ZeroDuration { field })
    } else {
        Ok(value)
    }
}

fn non_zero_count(value: u32, field: &'static str) -> Result<u32, SpecError> {
    if value == 0 {
        Err(SpecError::ZeroCount { field })
    } else {
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn status_range_parses_a_range_and_a_single_status() {
        let range: StatusRange = "200-399".parse().unwrap();
        assert!(range.contains(200) && range.contains(399));
        assert!(!range.contains(199) && !range.contains(400));
        assert_eq!(range.to_string(), "200-399");

        let single: StatusRange = "204".parse().unwrap();
        assert!(single.contains(204) && !single.contains(200));
        assert_eq!(single.to_string(), "204");
    }

    #[test]
    fn status_range_rejects_reversed_out_of_range_and_garbage() {
        for text in [
            "399-200", "99", "200-600", "2xx", "", "200-", "-399", " 200",
        ] {
            let error = text.parse::<StatusRange>().unwrap_err();
            assert_eq!(error.field(), "expect_status", "{text:?}");
        }
    }

    #[test]
    fn zero_durations_and_counts_are_rejected_with_their_field() {
        let second = Duration::from_secs(1);
        let field = |r: Result<HealthParams, SpecError>| r.unwrap_err().field();
        assert_eq!(field(HealthParams::new(Duration::ZERO, 2, 3)), "interval");
        assert_eq!(field(HealthParams::new(second, 0, 3)), "rise");
        assert_eq!(field(HealthParams::new(second, 2, 0)), "fall");
        let params = HealthParams::new(second, 2, 3).unwrap();
        assert_eq!(field(params.with_fastinter(Duration::ZERO)), "fastinter");
        assert_eq!(field(params.with_downinter(Duration::ZERO)), "downinter");
        let probe = ProbeSpec::new(ProbeKind::Tcp, Duration::ZERO);
        assert_eq!(probe.unwrap_err().field(), "timeout");
    }

    #[test]
    fn fastinter_and_downinter_default_to_the_interval() {
        let params = HealthParams::new(Duration::from_secs(5), 2, 3).unwrap();
        assert_eq!(params.fastinter(), Duration::from_secs(5));
        assert_eq!(params.downinter(), Duration::from_secs(5));
        let params = params
            .with_fastinter(Duration::from_millis(500))
            .unwrap()
            .with_downinter(Duration::from_secs(10))
            .unwrap();
        assert_eq!(params.interval(), Duration::from_secs(5));
        assert_eq!(params.fastinter(), Duration::from_millis(500));
        assert_eq!(params.downinter(), Duration::from_secs(10));
    }

    #[test]
    fn http_probe_validates_path_host_and_body() {
        assert_eq!(HttpProbe::new("health").unwrap_err().field(), "path");
        assert_eq!(HttpProbe::new("/a b").unwrap_err().field(), "path");
        let probe = HttpProbe::new("/health?full=1").unwrap();
        assert_eq!(probe.path().as_str(), "/health?full=1");
        assert_eq!(probe.expect_status(), DEFAULT_EXPECT_STATUS);
        for host in ["", "a b", "a\nb"] {
            let error = probe.clone().with_host(host).unwrap_err();
            assert_eq!(error.field(), "host", "{host:?}");
        }
        assert_eq!(
            probe.clone().with_expect_body("").unwrap_err().field(),
            "expect_body"
        );
        let probe = probe.with_host("www.example.test:8080").unwrap();
        assert_eq!(probe.host().unwrap(), "www.example.test:8080");
    }

    #[test]
    fn interface_names_are_validated() {
        for name in ["", "a/b", "eth 0", "sixteen-chars-xx"] {
            let error = ProbeSource::default().with_interface(name).unwrap_err();
            assert_eq!(error.field(), "interface", "{name:?}");
        }
        let source = ProbeSource::default().with_interface("veth-lb1").unwrap();
        assert_eq!(source.interface(), Some("veth-lb1"));
    }

    #[test]
    fn exec_and_mysql_probes_validate_their_settings() {
        for command in ["", "  ", "a\0b"] {
            assert_eq!(
                ExecProbe::new(command, "web").unwrap_err().field(),
                "command"
            );
        }
        assert_eq!(
            ExecProbe::new(&"x".repeat(4097), "web")
                .unwrap_err()
                .field(),
            "command"
        );
        let exec = ExecProbe::new("exit 0", "web").unwrap();
        assert_eq!((exec.command(), exec.service()), ("exit 0", "web"));

        assert_eq!(
            Password::new(String::new()).unwrap_err().field(),
            "password_file"
        );
        let password = || Password::new("s3cret-pw".to_owned()).unwrap();
        assert_eq!(MysqlProbe::new("", password()).unwrap_err().field(), "user");
        let probe = MysqlProbe::new("lbcheck", password()).unwrap();
        assert_eq!(probe.expect_role(), ExpectRole::Any);
        for database in ["", "a/b", &"d".repeat(65)] {
            let error = probe.clone().with_database(database).unwrap_err();
            assert_eq!(error.field(), "database", "{database:?}");
        }
        let error = "leader".parse::<ExpectRole>().unwrap_err();
        assert_eq!(error.field(), "expect_role");
        for role in [ExpectRole::Primary, ExpectRole::Any] {
            let error = probe
                .clone()
                .with_expect_role(role)
                .with_max_lag(Duration::from_secs(5))
                .unwrap_err();
            assert_eq!(error.field(), "max_lag", "{role}");
        }
        let replica = probe
            .with_expect_role("replica".parse().unwrap())
            .with_max_lag(Duration::from_secs(5))
            .unwrap();
        assert_eq!(replica.max_lag(), Some(Duration::from_secs(5)));
    }

    #[test]
    fn the_password_is_never_printed() {
        let probe =
            MysqlProbe::new("lbcheck", Password::new("s3cret-pw".to_owned()).unwrap()).unwrap();
        let kind = ProbeKind::Mysql(probe);
        for text in [format!("{kind:?}"), kind.to_string()] {
            assert!(!text.contains("s3cret-pw"), "{text}");
        }
        assert!(format!("{kind:?}").contains("<redacted>"));
    }

    #[test]
    fn port_zero_is_rejected() {
        let spec = Arc::new(CheckSpec::default());
        let error = CheckTarget::new(Ipv4Addr::LOCALHOST, 0, spec).unwrap_err();
        assert_eq!(error.field(), "port");
    }

    #[test]
    fn equal_definitions_make_equal_targets_and_any_difference_a_distinct_one() {
        let http = |path: &str| {
            let kind = ProbeKind::Http(HttpProbe::new(path).unwrap());
            let probe = ProbeSpec::new(kind, DEFAULT_TIMEOUT).unwrap();
            Arc::new(CheckSpec {
                probe,
                params: HealthParams::default(),
            })
        };
        let address = Ipv4Addr::new(10, 0, 0, 2);
        let target = |port, spec| CheckTarget::new(address, port, spec).unwrap();
        let targets: HashSet<CheckTarget> = [
            target(80, http("/health")),
            // Another service's identical check, separately allocated.
            target(80, http("/health")),
            target(80, http("/ready")),
            target(8080, http("/health")),
        ]
        .into_iter()
        .collect();
        assert_eq!(targets.len(), 3);
    }
}
