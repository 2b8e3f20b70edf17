//! `[global]`: the node's interface, table sizes, probe source, XDP mode,
//! control API and pin directory.

use std::net::SocketAddr;

use lb_common::maglev::is_prime;
use lb_common::maps::defaults;
use toml::Spanned;

use super::fields::{command, integer_in, interface_name, unicast_address};
use super::pin_dir;
use crate::config::error::{quote, ConfigError, ErrorSite};
use crate::config::model::{Global, Service, DEFAULT_API, DEFAULT_FLOW_INSERT_LIMIT_PER_CPU};
use crate::config::raw::RawGlobal;
use crate::dataplane::{VipIcmpEcho, XdpModePreference};
use crate::health::ProbeSource;

/// Most entries of the LRU flow table: 16M. An entry costs about 100 bytes
/// of kernel memory (key, value, hash and LRU bookkeeping), so this is about
/// 1.6 GiB, far beyond what one node's connections need.
pub(super) const MAX_FLOW_TABLE_SIZE: i64 = 1 << 24;
/// Largest Maglev table size, a prime: 1,000,003. Maglev balances within 1%
/// from about 100 slots per backend, so this serves 10,000 backends; every
/// rebuild (on each health change) walks the whole table.
pub(super) const MAX_MAGLEV_TABLE_SIZE: i64 = 1_000_003;
/// Most services: 4096 (each holds two halves of M slots in `SCHED_TABLE`).
pub(super) const MAX_SERVICES: i64 = 4096;
/// Most (service, backend) memberships: 65,536 (each has per-CPU counters).
pub(super) const MAX_BACKENDS: i64 = 1 << 16;
/// Most `SCHED_TABLE` slots (max_services x 2 x maglev_table_size):
/// 270,000,000, room for 2048 services of the default 65,537 slots. The
/// kernel stores each u32 entry of an array map in 8 bytes, so this is about
/// 2 GiB of kernel memory.
pub(super) const MAX_SCHED_TABLE_SLOTS: u64 = 270_000_000;

// flood protection
/// Most entries of the per-source token-bucket LRU: 16M (an entry costs
/// about 100 bytes of kernel memory, as a flow-table entry does).
pub(super) const MAX_RATE_LIMIT_TABLE_SIZE: i64 = 1 << 24;
/// Highest `flow_insert_limit_per_cpu`: 100M per second, beyond what one
/// CPU can insert (0 turns the guard off).
pub(super) const MAX_FLOW_INSERT_LIMIT_PER_CPU: i64 = 100_000_000;

// source policies
/// Most prefixes in all services' allow-lists together: 16M (an LPM trie
/// allocates an entry, about 100 bytes of kernel memory, only when it is
/// written).
pub(super) const MAX_ALLOW_TABLE_SIZE: i64 = 1 << 24;

/// The model of `[global]`.
pub(super) fn validate(raw: &RawGlobal, site: &ErrorSite<'_>) -> Result<Global, ConfigError> {
    let interface = interface_name(&raw.interface, "global.interface", site)?;
    let server_interface = server_interface(raw, &interface, site)?;
    let size = |value: &Option<Spanned<i64>>, field: &str, max: i64, default: u32| match value {
        Some(value) => integer_in(value, 1..=max, field, site).map(|v| v as u32),
        None => Ok(default),
    };
    let flow_table_size = size(
        &raw.flow_table_size,
        "global.flow_table_size",
        MAX_FLOW_TABLE_SIZE,
        defaults::FLOW_TABLE_SIZE,
    )?;
    let maglev_table_size = size(
        &raw.maglev_table_size,
        "global.maglev_table_size",
        MAX_MAGLEV_TABLE_SIZE,
        defaults::MAGLEV_TABLE_SIZE,
    )?;
    let max_services = size(
        &raw.max_services,
        "global.max_services",
        MAX_SERVICES,
        defaults::MAX_SERVICES,
    )?;
    let max_backends = size(
        &raw.max_backends,
        "global.max_backends",
        MAX_BACKENDS,
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
    let slots = u64::from(max_services) * 2 * u64::from(maglev_table_size);
    if slots > MAX_SCHED_TABLE_SLOTS {
        let span = raw
            .maglev_table_size
            .as_ref()
            .or(raw.max_services.as_ref())
            .map_or(0..0, Spanned::span);
        return Err(site.invalid(
            span,
            "global.maglev_table_size",
            format!("max_services ({max_services}) x 2 x maglev_table_size ({maglev_table_size}) = {slots} slots, more than the {MAX_SCHED_TABLE_SLOTS} (about 2 GiB) the scheduling table may hold; lower either"),
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
                        "unknown XDP mode {} (expected \"auto\", \"driver\" or \"generic\")",
                        quote(other)
                    ),
                ))
            }
        },
    };
    let rate_limit_table_size = size(
        &raw.rate_limit_table_size,
        "global.rate_limit_table_size",
        MAX_RATE_LIMIT_TABLE_SIZE,
        defaults::RATE_LIMIT_TABLE_SIZE,
    )?;
    let flow_insert_limit_per_cpu = match &raw.flow_insert_limit_per_cpu {
        Some(value) => integer_in(
            value,
            0..=MAX_FLOW_INSERT_LIMIT_PER_CPU,
            "global.flow_insert_limit_per_cpu",
            site,
        )? as u32,
        None => DEFAULT_FLOW_INSERT_LIMIT_PER_CPU,
    };
    let allow_table_size = size(
        &raw.allow_table_size,
        "global.allow_table_size",
        MAX_ALLOW_TABLE_SIZE,
        defaults::ALLOW_TABLE_SIZE,
    )?;
    let vip_icmp_echo = match &raw.vip_icmp_echo {
        None => VipIcmpEcho::Pass,
        Some(value) => match value.get_ref().as_str() {
            "pass" => VipIcmpEcho::Pass,
            "drop" => VipIcmpEcho::Drop,
            other => {
                let problem = if other == "reply" {
                    "\"reply\" is not supported yet (expected \"pass\" or \"drop\")".to_owned()
                } else {
                    format!(
                        "unknown value {} (expected \"pass\" or \"drop\")",
                        quote(other)
                    )
                };
                return Err(site.invalid(value.span(), "global.vip_icmp_echo", problem));
            }
        },
    };
    Ok(Global {
        notify_backend: command(&raw.notify_backend, "global.notify_backend", site)?,
        rate_limit_table_size,
        flow_insert_limit_per_cpu,
        allow_table_size,
        vip_icmp_echo,
        flow_table_size,
        maglev_table_size,
        max_services,
        max_backends,
        health_source: health_source(raw, site)?,
        xdp_mode,
        api: api_address(raw, site)?,
        pin_dir: pin_dir::validate(raw.pin_dir.as_ref(), &interface, site)?,
        interface,
        server_interface,
    })
}

/// `server_interface`: a valid name, not `interface` itself.
fn server_interface(
    raw: &RawGlobal,
    interface: &str,
    site: &ErrorSite<'_>,
) -> Result<Option<String>, ConfigError> {
    let Some(value) = &raw.server_interface else {
        return Ok(None);
    };
    let name = interface_name(value, "global.server_interface", site)?;
    if name == interface {
        return Err(site.invalid(
            value.span(),
            "global.server_interface",
            format!("{name} is global.interface itself; server_interface is the other side of a two-armed node (leave it out on a one-armed node)"),
        ));
    }
    Ok(Some(name))
}

/// Probes leave from `health_source` if set, through `health_interface`,
/// which defaults to the servers' side: `server_interface` if set, else the
/// XDP interface.
fn health_source(raw: &RawGlobal, site: &ErrorSite<'_>) -> Result<ProbeSource, ConfigError> {
    let (interface, span) = match &raw.health_interface {
        Some(name) => (
            interface_name(name, "global.health_interface", site)?,
            name.span(),
        ),
        None => {
            let side = raw.server_interface.as_ref().unwrap_or(&raw.interface);
            (side.get_ref().clone(), side.span())
        }
    };
    let mut source = ProbeSource::default()
        .with_interface(&interface)
        .map_err(|error| site.invalid(span, "global.health_interface", error.to_string()))?;
    if let Some(address) = &raw.health_source {
        source = source.with_address(unicast_address(address, "global.health_source", site)?);
    }
    Ok(source)
}

/// Rejects a `health_source` that is a service's VIP: with dsr-l2 every
/// backend holds the VIPs itself, so it would answer such probes locally and
/// the checks would always fail.
pub(super) fn check_health_source(
    raw: &RawGlobal,
    global: &Global,
    services: &[Service],
    site: &ErrorSite<'_>,
) -> Result<(), ConfigError> {
    let (Some(value), Some(address)) = (&raw.health_source, global.health_source.address()) else {
        return Ok(());
    };
    match services.iter().find(|service| service.vip == address) {
        Some(service) => Err(site.invalid(
            value.span(),
            "global.health_source",
            format!("{address} is the VIP of service {:?}; probes must leave from an address of this node that is not a VIP (the backends hold the VIPs and would answer themselves)", service.name),
        )),
        None => Ok(()),
    }
}

/// The control API listens on loopback only: it has no authentication.
fn api_address(raw: &RawGlobal, site: &ErrorSite<'_>) -> Result<SocketAddr, ConfigError> {
    let Some(api) = &raw.api else {
        return Ok(DEFAULT_API);
    };
    let invalid = |problem: String| site.invalid(api.span(), "global.api", problem);
    let address: SocketAddr = api.get_ref().parse().map_err(|_| {
        invalid(format!(
            "{} is not an address and port (e.g. \"127.0.0.1:9180\")",
            quote(api.get_ref())
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
