//! `[global]`: the node's interface, table sizes, probe source, XDP mode,
//! control API and pin directory.

use std::net::SocketAddr;

use lb_common::maglev::is_prime;
use lb_common::maps::defaults;
use toml::Spanned;

use super::fields::{integer_in, unicast_address};
use super::pin_dir;
use crate::config::error::{ConfigError, ErrorSite};
use crate::config::model::{Global, DEFAULT_API};
use crate::config::raw::RawGlobal;
use crate::dataplane::XdpModePreference;
use crate::health::ProbeSource;

/// Longest Linux interface name (IFNAMSIZ - 1).
const MAX_INTERFACE_NAME_LEN: usize = 15;

/// The model of `[global]`.
pub(super) fn validate(raw: &RawGlobal, site: &ErrorSite<'_>) -> Result<Global, ConfigError> {
    let interface = raw.interface.get_ref();
    if interface.is_empty()
        || interface.len() > MAX_INTERFACE_NAME_LEN
        || interface.contains(|c: char| c == '/' || c.is_whitespace())
    {
        return Err(site.invalid(
            raw.interface.span(),
            "global.interface",
            format!("{interface:?} is not an interface name (1 to {MAX_INTERFACE_NAME_LEN} characters, no '/' or spaces)"),
        ));
    }
    let size = |value: &Option<Spanned<i64>>, field: &str, default: u32| match value {
        Some(value) => integer_in(value, 1..=i64::from(u32::MAX), field, site).map(|v| v as u32),
        None => Ok(default),
    };
    let flow_table_size = size(
        &raw.flow_table_size,
        "global.flow_table_size",
        defaults::FLOW_TABLE_SIZE,
    )?;
    let maglev_table_size = size(
        &raw.maglev_table_size,
        "global.maglev_table_size",
        defaults::MAGLEV_TABLE_SIZE,
    )?;
    let max_services = size(
        &raw.max_services,
        "global.max_services",
        defaults::MAX_SERVICES,
    )?;
    let max_backends = size(
        &raw.max_backends,
        "global.max_backends",
        defaults::MAX_BACKENDS,
    )?;
    if !is_prime(maglev_table_size) {
        let span = raw.maglev_table_size.as_ref().map_or(0..0, Spanned::span);
        return Err(site.invalid(
            span,
            "global.maglev_table_size",
            format!(
                "{maglev_table_size} is not prime (Maglev needs a prime table size, e.g. 65537)"
            ),
        ));
    }
    // Two halves (double buffering) of M slots per service, in one array map.
    if u64::from(max_services) * 2 * u64::from(maglev_table_size) > u64::from(u32::MAX) {
        let span = raw
            .maglev_table_size
            .as_ref()
            .or(raw.max_services.as_ref())
            .map_or(0..0, Spanned::span);
        return Err(site.invalid(
            span,
            "global.maglev_table_size",
            format!("max_services ({max_services}) x 2 x maglev_table_size ({maglev_table_size}) slots do not fit in one BPF array (at most {} entries)", u32::MAX),
        ));
    }
    let xdp_mode = match &raw.xdp_mode {
        None => XdpModePreference::Auto,
        Some(mode) => match mode.get_ref().as_str() {
            "auto" => XdpModePreference::Auto,
            "driver" => XdpModePreference::Driver,
            "generic" => XdpModePreference::Generic,
            other => {
                return Err(site.invalid(
                    mode.span(),
                    "global.xdp_mode",
                    format!(
                        "unknown XDP mode {other:?} (expected \"auto\", \"driver\" or \"generic\")"
                    ),
                ))
            }
        },
    };
    Ok(Global {
        interface: interface.clone(),
        flow_table_size,
        maglev_table_size,
        max_services,
        max_backends,
        health_source: health_source(raw, site)?,
        xdp_mode,
        api: api_address(raw, site)?,
        pin_dir: pin_dir::validate(raw.pin_dir.as_ref(), interface, site)?,
    })
}

/// Probes leave from `health_source` if set, through `health_interface`,
/// which defaults to the XDP interface.
fn health_source(raw: &RawGlobal, site: &ErrorSite<'_>) -> Result<ProbeSource, ConfigError> {
    let (interface, span) = match &raw.health_interface {
        Some(name) => (name.get_ref(), name.span()),
        None => (raw.interface.get_ref(), raw.interface.span()),
    };
    let mut source = ProbeSource::default()
        .with_interface(interface)
        .map_err(|error| site.invalid(span, "global.health_interface", error.to_string()))?;
    if let Some(address) = &raw.health_source {
        source = source.with_address(unicast_address(address, "global.health_source", site)?);
    }
    Ok(source)
}

/// The control API listens on loopback only: it has no authentication.
fn api_address(raw: &RawGlobal, site: &ErrorSite<'_>) -> Result<SocketAddr, ConfigError> {
    let Some(api) = &raw.api else {
        return Ok(DEFAULT_API);
    };
    let invalid = |problem: String| site.invalid(api.span(), "global.api", problem);
    let address: SocketAddr = api.get_ref().parse().map_err(|_| {
        invalid(format!(
            "{:?} is not an address and port (e.g. \"127.0.0.1:9180\")",
            api.get_ref()
        ))
    })?;
    if !address.ip().is_loopback() {
        return Err(invalid(format!(
            "{address} is not a loopback address: the API has no authentication, so it listens on 127.0.0.0/8 or [::1] only"
        )));
    }
    if address.port() == 0 {
        return Err(invalid("the port must not be 0".to_owned()));
    }
    Ok(address)
}
