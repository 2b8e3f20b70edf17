//! Checks of single values that several sections share: integers in a range,
//! names, addresses. Each error names the field and points at the value.

use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use toml::Spanned;

use crate::config::error::{ConfigError, ErrorSite};

/// Longest service or backend name.
const MAX_NAME_LEN: usize = 32;

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
            format!("{n:?} is not a valid name (1 to {MAX_NAME_LEN} characters of a-z, 0-9, '_' and '-')"),
        ))
    }
}

/// An IPv4 address that is not 0.0.0.0, loopback, multicast or broadcast.
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
            format!("{text:?} is not an IPv4 address (dotted quad, e.g. \"10.0.0.1\")"),
        )
    })?;
    if address.is_unspecified()
        || address.is_loopback()
        || address.is_multicast()
        || address.is_broadcast()
    {
        return Err(site.invalid(
            value.span(),
            field,
            format!("{address} is not a unicast address"),
        ));
    }
    Ok(address)
}
