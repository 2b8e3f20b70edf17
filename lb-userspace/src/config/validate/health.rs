//! Turns a service's `[service.health]` table into its check, with the
//! defaults: a TCP service without the table is checked by a TCP connect to
//! the service port; a UDP service without it is not checked (its backends
//! are always up).

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::fields::{duration_in, integer_in, DurationRange};
use crate::config::error::{quote, ConfigError, ErrorSite};
use crate::config::model::{HealthCheck, Protocol};
use crate::config::raw::RawHealth;
use crate::health::spec::{DEFAULT_FALL, DEFAULT_INTERVAL, DEFAULT_RISE, DEFAULT_TIMEOUT};
use crate::health::{
    CheckSpec, HealthParams, HttpProbe, ProbeKind, ProbeSource, ProbeSpec, SpecError, StatusRange,
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

/// The service whose check is validated.
pub(super) struct CheckedService<'a> {
    pub name: &'a str,
    pub protocol: Protocol,
    pub port: u16,
    /// Where probes leave from (`global.health_source`, `global.health_interface`).
    pub source: &'a ProbeSource,
}

/// What `type` asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CheckType {
    Tcp,
    Http,
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
                port: service.port,
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
        };
        let port = match &self.raw.port {
            Some(port) => integer_in(
                port,
                1..=i64::from(u16::MAX),
                &self.field("port"),
                self.site,
            )? as u16,
            None => self.service.port,
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
        }))
    }

    fn check_type(&self) -> Result<CheckType, ConfigError> {
        match &self.raw.kind {
            Some(kind) => match kind.get_ref().as_str() {
                "tcp" => Ok(CheckType::Tcp),
                "http" => Ok(CheckType::Http),
                "none" => Ok(CheckType::None),
                other => Err(self.invalid(
                    kind.span(),
                    "type",
                    format!("unknown check type {} (expected \"tcp\", \"http\" or \"none\")", quote(other)),
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
        if check_type != CheckType::Http {
            if let Some((leaf, value)) = http_only.iter().find_map(|(l, v)| Some((l, v.as_ref()?)))
            {
                return Err(self.invalid(
                    value.span(),
                    leaf,
                    "only applies to checks of type = \"http\"",
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
            | SpecError::Interface { value } => error
                .to_string()
                .replace(&format!("{value:?}"), &quote(value)),
            _ => error.to_string(),
        };
        self.invalid(span, leaf, message)
    }
}
