//! Turns a service's `[service.health]` table into its check, with the
//! defaults: a TCP service without the table is checked by a TCP connect to
//! the service port; a UDP service without it is not checked (its backends
//! are always up). A TCP service's checks come with passive health
//! (`observe = "layer4"`) unless it says `observe = "none"`.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::fields::{duration_in, integer_in, DurationRange};
use crate::config::error::{quote, ConfigError, ErrorSite};
use crate::config::model::{HealthCheck, PassiveHealth, Protocol};
use crate::config::raw::RawHealth;
use crate::health::spec::{DEFAULT_FALL, DEFAULT_INTERVAL, DEFAULT_RISE, DEFAULT_TIMEOUT};
use crate::health::{
    CheckSpec, ExecProbe, ExpectRole, HealthParams, HttpProbe, MysqlProbe, Password, ProbeKind,
    ProbeSource, ProbeSpec, SpecError, StatusRange,
};

/// Accepted values of `rise` and `fall`.
const COUNT_RANGE: std::ops::RangeInclusive<i64> = 1..=1000;
/// Path of an HTTP check unless configured.
const DEFAULT_PATH: &str = "/";
/// Accepted `interval`, `fastinter` and `downinter`: more than 10 checks a
/// second per backend is load, not information; an hour is the longest
/// useful wait before noticing a change.
const INTERVAL_RANGE: DurationRange = DurationRange {
    min: Duration::from_millis(100),
    max: Duration::from_secs(3600),
};
/// Accepted `timeout` of one whole check.
const TIMEOUT_RANGE: DurationRange = DurationRange {
    min: Duration::from_millis(10),
    max: Duration::from_secs(60),
};
/// Accepted `max_lag` of a MySQL replica, in whole seconds (the server's unit).
const MAX_LAG_RANGE: DurationRange = DurationRange {
    min: Duration::ZERO,
    max: Duration::from_secs(86_400),
};
/// Accepted `handshake_timeout`: below 10 ms even a LAN client's handshake
/// may not have completed; beyond 10 s the client gave up long before.
const HANDSHAKE_TIMEOUT_RANGE: DurationRange = DurationRange {
    min: Duration::from_millis(10),
    max: Duration::from_secs(10),
};
/// `handshake_timeout` unless configured: TCP's initial retransmission
/// timeout (RFC 6298), after which the client sends its SYN again anyway.
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(1);
/// Accepted `error_limit` (the data path holds it in a byte).
const ERROR_LIMIT_RANGE: std::ops::RangeInclusive<i64> = 1..=255;
/// `error_limit` unless configured.
const DEFAULT_ERROR_LIMIT: u8 = 3;
/// Largest `password_file` read.
const MAX_PASSWORD_FILE: u64 = 4096;

/// The service whose check is validated.
pub(super) struct CheckedService<'a> {
    pub name: &'a str,
    pub protocol: Protocol,
    /// Where probes leave from (`global.health_source`, `global.health_interface`).
    pub source: &'a ProbeSource,
}

/// What `type` asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CheckType {
    Tcp,
    Http,
    Exec,
    Mysql,
    None,
}

/// The check of `service`, `None` when it is not checked.
pub(super) fn validate(
    raw: Option<&Spanned<RawHealth>>,
    service: &CheckedService<'_>,
    site: &ErrorSite<'_>,
) -> Result<Option<HealthCheck>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(match service.protocol {
            Protocol::Tcp => Some(HealthCheck {
                spec: Arc::new(CheckSpec {
                    probe: ProbeSpec::default().with_source(service.source.clone()),
                    params: HealthParams::default(),
                }),
                port: None,
                observe: Some(PassiveHealth {
                    error_limit: DEFAULT_ERROR_LIMIT,
                    handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
                }),
            }),
            Protocol::Udp => None,
        });
    };
    HealthValidator {
        table: raw.span(),
        raw: raw.get_ref(),
        service,
        site,
    }
    .validate()
}

struct HealthValidator<'a> {
    /// Span of the whole table, for errors about a missing key.
    table: Range<usize>,
    raw: &'a RawHealth,
    service: &'a CheckedService<'a>,
    site: &'a ErrorSite<'a>,
}

impl HealthValidator<'_> {
    fn field(&self, leaf: &str) -> String {
        format!("service[{}].health.{leaf}", self.service.name)
    }

    fn invalid(&self, span: Range<usize>, leaf: &str, problem: impl Into<String>) -> ConfigError {
        self.site.invalid(span, self.field(leaf), problem)
    }

    fn validate(&self) -> Result<Option<HealthCheck>, ConfigError> {
        let check_type = self.check_type()?;
        self.reject_keys_not_for(check_type)?;
        let kind = match check_type {
            CheckType::None => return Ok(None),
            CheckType::Tcp => ProbeKind::Tcp,
            CheckType::Http => ProbeKind::Http(self.http_probe()?),
            CheckType::Exec => ProbeKind::Exec(self.exec_probe()?),
            CheckType::Mysql => ProbeKind::Mysql(self.mysql_probe()?),
        };
        let port = match &self.raw.port {
            Some(port) => Some(integer_in(
                port,
                1..=i64::from(u16::MAX),
                &self.field("port"),
                self.site,
            )? as u16),
            None => None,
        };
        let timeout = self.duration(&self.raw.timeout, "timeout", TIMEOUT_RANGE)?;
        let probe = ProbeSpec::new(kind, timeout.unwrap_or(DEFAULT_TIMEOUT))
            .map_err(|e| self.spec_error(&e))?
            .with_source(self.service.source.clone());
        Ok(Some(HealthCheck {
            spec: Arc::new(CheckSpec {
                probe,
                params: self.params()?,
            }),
            port,
            observe: self.observe()?,
        }))
    }

    /// `observe`, `error_limit` and `handshake_timeout`: passive health, on
    /// by default for a TCP service; a UDP service has no handshakes.
    fn observe(&self) -> Result<Option<PassiveHealth>, ConfigError> {
        let raw = self.raw;
        let on = match &raw.observe {
            None => self.service.protocol == Protocol::Tcp,
            Some(observe) => match observe.get_ref().as_str() {
                "layer4" if self.service.protocol == Protocol::Udp => {
                    return Err(self.invalid(
                        observe.span(),
                        "observe",
                        "observe = \"layer4\" watches TCP handshakes, and a udp service has none (expected \"none\")",
                    ))
                }
                "layer4" => true,
                "none" => false,
                other => {
                    return Err(self.invalid(
                        observe.span(),
                        "observe",
                        format!(
                            "unknown value {} (expected \"layer4\" or \"none\")",
                            quote(other)
                        ),
                    ))
                }
            },
        };
        if !on {
            let set = [
                ("error_limit", raw.error_limit.as_ref().map(Spanned::span)),
                (
                    "handshake_timeout",
                    raw.handshake_timeout.as_ref().map(Spanned::span),
                ),
            ];
            if let Some((leaf, span)) = set.into_iter().find_map(|(l, s)| Some((l, s?))) {
                return Err(self.invalid(
                    span,
                    leaf,
                    "only applies with observe = \"layer4\" (passive health of a tcp service)",
                ));
            }
            return Ok(None);
        }
        let error_limit = match &raw.error_limit {
            Some(limit) => integer_in(
                limit,
                ERROR_LIMIT_RANGE,
                &self.field("error_limit"),
                self.site,
            )? as u8,
            None => DEFAULT_ERROR_LIMIT,
        };
        let handshake_timeout = self
            .duration(
                &raw.handshake_timeout,
                "handshake_timeout",
                HANDSHAKE_TIMEOUT_RANGE,
            )?
            .unwrap_or(DEFAULT_HANDSHAKE_TIMEOUT);
        Ok(Some(PassiveHealth {
            error_limit,
            handshake_timeout,
        }))
    }

    fn check_type(&self) -> Result<CheckType, ConfigError> {
        match &self.raw.kind {
            Some(kind) => match kind.get_ref().as_str() {
                "tcp" => Ok(CheckType::Tcp),
                "http" => Ok(CheckType::Http),
                "exec" => Ok(CheckType::Exec),
                "mysql" => Ok(CheckType::Mysql),
                "none" => Ok(CheckType::None),
                other => Err(self.invalid(
                    kind.span(),
                    "type",
                    format!("unknown check type {} (expected \"tcp\", \"http\", \"exec\", \"mysql\" or \"none\")", quote(other)),
                )),
            },
            None => match self.service.protocol {
                Protocol::Tcp => Ok(CheckType::Tcp),
                Protocol::Udp => Err(self.invalid(
                    self.table.clone(),
                    "type",
                    "a udp service's check needs an explicit type: \"tcp\" or \"http\" (probes use TCP, e.g. to another port of the backend), or \"none\"",
                )),
            },
        }
    }

    /// Keys that mean nothing for `check_type` are errors, not silently ignored.
    fn reject_keys_not_for(&self, check_type: CheckType) -> Result<(), ConfigError> {
        let raw = self.raw;
        let http_only = [
            ("path", &raw.path),
            ("host", &raw.host),
            ("expect_status", &raw.expect_status),
            ("expect_body", &raw.expect_body),
        ];
        let mysql_only = [
            ("user", &raw.user),
            ("password_file", &raw.password_file),
            ("database", &raw.database),
            ("expect_role", &raw.expect_role),
            ("max_lag", &raw.max_lag),
        ];
        let exec_only = [("command", &raw.command)];
        for (only, keys) in [
            (CheckType::Http, &http_only[..]),
            (CheckType::Mysql, &mysql_only[..]),
            (CheckType::Exec, &exec_only[..]),
        ] {
            if check_type == only {
                continue;
            }
            if let Some((leaf, value)) = keys.iter().find_map(|(l, v)| Some((l, v.as_ref()?))) {
                let name = match only {
                    CheckType::Http => "http",
                    CheckType::Mysql => "mysql",
                    _ => "exec",
                };
                return Err(self.invalid(
                    value.span(),
                    leaf,
                    format!("only applies to checks of type = \"{name}\""),
                ));
            }
        }
        if check_type == CheckType::None {
            let spans = [
                ("port", raw.port.as_ref().map(Spanned::span)),
                ("interval", raw.interval.as_ref().map(Spanned::span)),
                ("fastinter", raw.fastinter.as_ref().map(Spanned::span)),
                ("downinter", raw.downinter.as_ref().map(Spanned::span)),
                ("timeout", raw.timeout.as_ref().map(Spanned::span)),
                ("rise", raw.rise.as_ref().map(Spanned::span)),
                ("fall", raw.fall.as_ref().map(Spanned::span)),
                ("observe", raw.observe.as_ref().map(Spanned::span)),
                ("error_limit", raw.error_limit.as_ref().map(Spanned::span)),
                (
                    "handshake_timeout",
                    raw.handshake_timeout.as_ref().map(Spanned::span),
                ),
            ];
            if let Some((leaf, span)) = spans.into_iter().find_map(|(l, s)| Some((l, s?))) {
                return Err(self.invalid(
                    span,
                    leaf,
                    "type = \"none\" (not checked, always up) takes no other settings",
                ));
            }
        }
        Ok(())
    }

    fn http_probe(&self) -> Result<HttpProbe, ConfigError> {
        let raw = self.raw;
        let path = raw.path.as_ref().map_or(DEFAULT_PATH, |p| p.get_ref());
        let mut probe = HttpProbe::new(path).map_err(|e| self.spec_error(&e))?;
        if let Some(host) = &raw.host {
            probe = probe
                .with_host(host.get_ref())
                .map_err(|e| self.spec_error(&e))?;
        }
        if let Some(status) = &raw.expect_status {
            let range: StatusRange = status.get_ref().parse().map_err(|e| self.spec_error(&e))?;
            probe = probe.with_expect_status(range);
        }
        if let Some(body) = &raw.expect_body {
            probe = probe
                .with_expect_body(body.get_ref())
                .map_err(|e| self.spec_error(&e))?;
        }
        Ok(probe)
    }

    /// `command`, required.
    fn exec_probe(&self) -> Result<ExecProbe, ConfigError> {
        let Some(command) = &self.raw.command else {
            return Err(self.invalid(
                self.table.clone(),
                "command",
                "type = \"exec\" needs a command (run with sh -c; exit status 0 passes)",
            ));
        };
        ExecProbe::new(command.get_ref(), self.service.name).map_err(|e| self.spec_error(&e))
    }

    /// `user` and `password_file`, required; `database`, `expect_role`
    /// and `max_lag` (a replica's only).
    fn mysql_probe(&self) -> Result<MysqlProbe, ConfigError> {
        let raw = self.raw;
        let (Some(user), Some(password_file)) = (&raw.user, &raw.password_file) else {
            let leaf = if raw.user.is_none() {
                "user"
            } else {
                "password_file"
            };
            return Err(self.invalid(
                self.table.clone(),
                leaf,
                "type = \"mysql\" needs user and password_file (a file holding the check user's password)",
            ));
        };
        let password = self.password(password_file)?;
        let mut probe =
            MysqlProbe::new(user.get_ref(), password).map_err(|e| self.spec_error(&e))?;
        if let Some(database) = &raw.database {
            probe = probe
                .with_database(database.get_ref())
                .map_err(|e| self.spec_error(&e))?;
        }
        if let Some(role) = &raw.expect_role {
            let role: ExpectRole = role.get_ref().parse().map_err(|e| self.spec_error(&e))?;
            probe = probe.with_expect_role(role);
        }
        if let Some(max_lag) = self.duration(&raw.max_lag, "max_lag", MAX_LAG_RANGE)? {
            if max_lag.subsec_nanos() != 0 {
                return Err(self.invalid(
                    raw.max_lag.as_ref().map_or(0..0, Spanned::span),
                    "max_lag",
                    format!(
                        "{} is not whole seconds (the server reports the lag in seconds)",
                        quote(raw.max_lag.as_ref().map_or("", |v| v.get_ref().as_str()))
                    ),
                ));
            }
            probe = probe
                .with_max_lag(max_lag)
                .map_err(|e| self.spec_error(&e))?;
        }
        Ok(probe)
    }

    /// The password in the file `path` names: an absolute path to a regular
    /// file of at most [`MAX_PASSWORD_FILE`] bytes of UTF-8, without its
    /// final line break. Errors name the path, never the content.
    fn password(&self, path: &Spanned<String>) -> Result<Password, ConfigError> {
        let span = path.span();
        let shown = quote(path.get_ref());
        let file = std::path::Path::new(path.get_ref());
        if !file.is_absolute() {
            return Err(self.invalid(
                span,
                "password_file",
                format!("{shown} must be an absolute path"),
            ));
        }
        let unreadable = |problem: String| {
            self.invalid(
                span.clone(),
                "password_file",
                format!("cannot read {shown}: {problem}"),
            )
        };
        let metadata = std::fs::metadata(file).map_err(|e| unreadable(e.to_string()))?;
        if !metadata.is_file() {
            return Err(unreadable("not a regular file".to_owned()));
        }
        if metadata.len() > MAX_PASSWORD_FILE {
            return Err(unreadable(format!("larger than {MAX_PASSWORD_FILE} bytes")));
        }
        let text = std::fs::read(file).map_err(|e| unreadable(e.to_string()))?;
        let text = String::from_utf8(text).map_err(|_| unreadable("not UTF-8".to_owned()))?;
        let password = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(&text);
        Password::new(password.to_owned()).map_err(|e| self.spec_error(&e))
    }

    fn params(&self) -> Result<HealthParams, ConfigError> {
        let raw = self.raw;
        let count = |value: &Option<Spanned<i64>>, leaf: &str, default: u32| match value {
            Some(value) => integer_in(value, COUNT_RANGE, &self.field(leaf), self.site)
                .map(|count| count as u32),
            None => Ok(default),
        };
        let rise = count(&raw.rise, "rise", DEFAULT_RISE)?;
        let fall = count(&raw.fall, "fall", DEFAULT_FALL)?;
        let interval = self.duration(&raw.interval, "interval", INTERVAL_RANGE)?;
        let mut params = HealthParams::new(interval.unwrap_or(DEFAULT_INTERVAL), rise, fall)
            .map_err(|e| self.spec_error(&e))?;
        if let Some(fastinter) = self.duration(&raw.fastinter, "fastinter", INTERVAL_RANGE)? {
            params = params
                .with_fastinter(fastinter)
                .map_err(|e| self.spec_error(&e))?;
        }
        if let Some(downinter) = self.duration(&raw.downinter, "downinter", INTERVAL_RANGE)? {
            params = params
                .with_downinter(downinter)
                .map_err(|e| self.spec_error(&e))?;
        }
        Ok(params)
    }

    fn duration(
        &self,
        value: &Option<Spanned<String>>,
        leaf: &str,
        range: DurationRange,
    ) -> Result<Option<Duration>, ConfigError> {
        value
            .as_ref()
            .map(|value| duration_in(value, range, &self.field(leaf), self.site))
            .transpose()
    }

    /// A rejection by the health model, located at the key it names.
    fn spec_error(&self, error: &SpecError) -> ConfigError {
        let raw = self.raw;
        let leaf = error.field();
        let strings = [
            ("path", &raw.path),
            ("host", &raw.host),
            ("expect_status", &raw.expect_status),
            ("expect_body", &raw.expect_body),
            ("interval", &raw.interval),
            ("fastinter", &raw.fastinter),
            ("downinter", &raw.downinter),
            ("timeout", &raw.timeout),
            ("command", &raw.command),
            ("user", &raw.user),
            ("password_file", &raw.password_file),
            ("database", &raw.database),
            ("expect_role", &raw.expect_role),
            ("max_lag", &raw.max_lag),
        ];
        let counts = [
            ("rise", &raw.rise),
            ("fall", &raw.fall),
            ("port", &raw.port),
        ];
        let span = strings
            .iter()
            .find(|(name, _)| *name == leaf)
            .and_then(|(_, value)| value.as_ref().map(Spanned::span))
            .or_else(|| {
                counts
                    .iter()
                    .find(|(name, _)| *name == leaf)
                    .and_then(|(_, value)| value.as_ref().map(Spanned::span))
            })
            .unwrap_or_else(|| self.table.clone());
        // The model quotes the rejected value whole; quote at most its start.
        let message = match error {
            SpecError::StatusRange { value }
            | SpecError::Path { value }
            | SpecError::Host { value }
            | SpecError::Interface { value }
            | SpecError::ExpectRole { value } => error
                .to_string()
                .replace(&format!("{value:?}"), &quote(value)),
            _ => error.to_string(),
        };
        self.invalid(span, leaf, message)
    }
}
