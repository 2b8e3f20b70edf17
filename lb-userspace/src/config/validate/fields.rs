//! Checks of single values that several sections share: integers and
//! durations in a range, names, interface names, addresses. Each error names
//! the field, points at the value and says what is allowed.

use std::fmt;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::time::Duration;

use toml::Spanned;

use crate::config::error::{quote, ConfigError, ErrorSite};
use crate::config::model::SourcePrefix;

/// Longest service or backend name.
const MAX_NAME_LEN: usize = 32;
/// Longest Linux interface name (IFNAMSIZ - 1).
const MAX_INTERFACE_NAME_LEN: usize = 15;

/// `value` if it lies in `range`.
pub(super) fn integer_in(
    value: &Spanned<i64>,
    range: RangeInclusive<i64>,
    field: &str,
    site: &ErrorSite<'_>,
) -> Result<i64, ConfigError> {
    let v = *value.get_ref();
    if range.contains(&v) {
        Ok(v)
    } else {
        Err(site.invalid(
            value.span(),
            field,
            format!("{v} is out of range ({}..={})", range.start(), range.end()),
        ))
    }
}

/// The durations a setting accepts, both ends included.
#[derive(Debug, Clone, Copy)]
pub(super) struct DurationRange {
    pub min: Duration,
    pub max: Duration,
}

impl fmt::Display for DurationRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..={}", Short(self.min), Short(self.max))
    }
}

/// A duration the way a user writes it: `0s`, `10ms`, `40.95s`, `1m`, `24h`.
struct Short(Duration);

impl fmt::Display for Short {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
        match (secs, nanos) {
            (0, 0) => f.write_str("0s"),
            (0, _) if nanos % 1_000_000 == 0 => write!(f, "{}ms", nanos / 1_000_000),
            (_, 0) if secs % 3600 == 0 => write!(f, "{}h", secs / 3600),
            (_, 0) if secs % 60 == 0 => write!(f, "{}m", secs / 60),
            (_, 0) => write!(f, "{secs}s"),
            _ => {
                let fraction = format!("{nanos:09}");
                write!(f, "{secs}.{}s", fraction.trim_end_matches('0'))
            }
        }
    }
}

/// A duration such as `"500ms"`, `"2s"` or `"1m 30s"`, within `range`.
pub(super) fn duration_in(
    value: &Spanned<String>,
    range: DurationRange,
    field: &str,
    site: &ErrorSite<'_>,
) -> Result<Duration, ConfigError> {
    let text = value.get_ref();
    let out_of_range = || {
        site.invalid(
            value.span(),
            field,
            format!("{} is out of range ({range})", quote(text)),
        )
    };
    match humantime::parse_duration(text) {
        Ok(duration) if (range.min..=range.max).contains(&duration) => Ok(duration),
        Ok(_) | Err(humantime::DurationError::NumberOverflow) => Err(out_of_range()),
        Err(error) => Err(site.invalid(
            value.span(),
            field,
            format!(
                "{} is not a duration ({error}); write e.g. \"500ms\", \"2s\" or \"1m 30s\", within {range}",
                quote(text)
            ),
        )),
    }
}

/// A service or backend name: 1 to 32 characters of a-z, 0-9, '_' and '-'.
pub(super) fn name(
    name: &Spanned<String>,
    field: &str,
    site: &ErrorSite<'_>,
) -> Result<(), ConfigError> {
    let n = name.get_ref();
    let valid = !n.is_empty()
        && n.len() <= MAX_NAME_LEN
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(site.invalid(
            name.span(),
            field,
            format!(
                "{} is not a valid name (1 to {MAX_NAME_LEN} characters of a-z, 0-9, '_' and '-')",
                quote(n)
            ),
        ))
    }
}

/// A name the kernel accepts for a network interface (its `dev_valid_name`):
/// 1 to 15 bytes, not `.` or `..`, no `/`, `:`, whitespace or control
/// character. It is also a path component of the default pin directory, so
/// it can never lead out of it.
pub(super) fn interface_name(
    value: &Spanned<String>,
    field: &str,
    site: &ErrorSite<'_>,
) -> Result<String, ConfigError> {
    let text = value.get_ref();
    let valid = (1..=MAX_INTERFACE_NAME_LEN).contains(&text.len())
        && text != "."
        && text != ".."
        && !text
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if valid {
        Ok(text.clone())
    } else {
        Err(site.invalid(
            value.span(),
            field,
            format!(
                "{} is not an interface name (1 to {MAX_INTERFACE_NAME_LEN} bytes, not \".\" or \"..\", no '/', ':', whitespace or control characters)",
                quote(text)
            ),
        ))
    }
}

/// Address blocks that are never a host of their own: a VIP, backend, probe
/// source or VRRP address there is a mistake.
const NOT_UNICAST: [(Ipv4Addr, u8, &str); 4] = [
    (Ipv4Addr::new(0, 0, 0, 0), 8, "\"this network\""),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "loopback"),
    (Ipv4Addr::new(224, 0, 0, 0), 4, "multicast"),
    (
        Ipv4Addr::new(240, 0, 0, 0),
        4,
        "reserved (and holds the broadcast address)",
    ),
];

/// An IPv4 unicast address: anything outside 0.0.0.0/8, 127.0.0.0/8,
/// 224.0.0.0/4 (multicast) and 240.0.0.0/4 (reserved, and 255.255.255.255).
pub(super) fn unicast_address(
    value: &Spanned<String>,
    field: &str,
    site: &ErrorSite<'_>,
) -> Result<Ipv4Addr, ConfigError> {
    let text = value.get_ref();
    let address: Ipv4Addr = text.parse().map_err(|_| {
        site.invalid(
            value.span(),
            field,
            format!(
                "{} is not an IPv4 address (dotted quad, e.g. \"10.0.0.1\")",
                quote(text)
            ),
        )
    })?;
    let block = NOT_UNICAST.iter().find(|(network, prefix, _)| {
        u32::from(address) >> (32 - prefix) == u32::from(*network) >> (32 - prefix)
    });
    if let Some((network, prefix, what)) = block {
        return Err(site.invalid(
            value.span(),
            field,
            format!("{address} is not a unicast address: {network}/{prefix} is {what}; use one outside 0.0.0.0/8, 127.0.0.0/8, 224.0.0.0/4 and 240.0.0.0/4"),
        ));
    }
    Ok(address)
}

/// A prefix of source addresses, `address/length`: any IPv4 address, a
/// length of 0 to 32, and no bit set beyond the length (a set bit is
/// refused with the network it probably means, rather than silently
/// cleared).
pub(super) fn source_prefix(
    value: &Spanned<String>,
    field: &str,
    site: &ErrorSite<'_>,
) -> Result<SourcePrefix, ConfigError> {
    let text = value.get_ref();
    let invalid = |problem: String| site.invalid(value.span(), field, problem);
    let not_a_prefix = || {
        invalid(format!(
            "{} is not an IPv4 prefix (address/length, e.g. \"203.0.113.0/24\", or \"198.51.100.7/32\" for one address)",
            quote(text)
        ))
    };
    let (address, len) = text.split_once('/').ok_or_else(not_a_prefix)?;
    let address: Ipv4Addr = address.parse().map_err(|_| not_a_prefix())?;
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_a_prefix());
    }
    let len = match len.parse::<u8>() {
        Ok(len) if len <= 32 => len,
        _ => {
            return Err(invalid(format!(
                "{}: prefix length {len} is out of range (0..=32)",
                quote(text)
            )))
        }
    };
    SourcePrefix::new(address.octets(), len).ok_or_else(|| {
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        let network = Ipv4Addr::from(u32::from(address) & mask);
        invalid(format!(
            "{} has bits set beyond its first {len}: write \"{network}/{len}\" for the network, or \"{address}/32\" for the one address",
            quote(text)
        ))
    })
}

/// A hook's shell command (`sh -c`); `None` when the key is left out, an
/// error when it is blank.
pub(super) fn command(
    value: &Option<Spanned<String>>,
    field: &str,
    site: &ErrorSite<'_>,
) -> Result<Option<String>, ConfigError> {
    match value {
        Some(command) if command.get_ref().trim().is_empty() => Err(site.invalid(
            command.span(),
            field,
            "the command is empty (leave the key out for no hook)",
        )),
        Some(command) => Ok(Some(command.get_ref().clone())),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::{DurationRange, Short};
    use std::time::Duration;

    #[test]
    fn durations_are_shown_as_written() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(10), "10ms"),
            (Duration::from_millis(40_950), "40.95s"),
            (Duration::from_secs(30), "30s"),
            (Duration::from_secs(60), "1m"),
            (Duration::from_secs(3600 * 24), "24h"),
        ];
        for (duration, text) in cases {
            assert_eq!(Short(duration).to_string(), text);
        }
        let range = DurationRange {
            min: Duration::from_millis(100),
            max: Duration::from_secs(3600),
        };
        assert_eq!(range.to_string(), "100ms..=1h");
    }
}
