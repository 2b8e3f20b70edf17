//! `[bgp]`: an active-active node. `lb` keeps a route per announced VIP in
//! a kernel table of its own, which the node's routing daemon exports; the
//! routers spread flows over every announcing node. Absent: `lb` announces
//! nothing.

use std::collections::BTreeSet;
use std::time::Duration;

use toml::Spanned;

use super::fields::{duration_in, integer_in, unicast_address, DurationRange};
use crate::config::error::{ConfigError, ErrorSite};
use crate::config::model::{BgpNode, Global, Scheduler, Service};
use crate::config::raw::{RawBgp, RawConfig};

/// The table unless configured: outside the kernel's own (253..=255) and
/// the range distributions hand out by default.
const DEFAULT_TABLE: u32 = 200;
/// The kernel's own tables: default, main and local.
const KERNEL_TABLES: std::ops::RangeInclusive<u32> = 253..=255;
/// How long a graceful stop keeps forwarding after withdrawing, unless
/// configured: routers with BFD converge well within it.
const DEFAULT_WITHDRAW_GRACE: Duration = Duration::from_secs(2);
/// Accepted `withdraw_grace`: none, up to a minute.
const WITHDRAW_GRACE_RANGE: DurationRange = DurationRange {
    min: Duration::ZERO,
    max: Duration::from_secs(60),
};

/// The model of `[bgp]` (`raw`), given the whole raw file (for `[vrrp]` and
/// the services' spans) and its validated sections.
pub(super) fn validate(
    raw: &Spanned<RawBgp>,
    file: &RawConfig,
    global: &Global,
    services: &[Service],
    site: &ErrorSite<'_>,
) -> Result<BgpNode, ConfigError> {
    let section = raw.span();
    let raw = raw.get_ref();
    if file.vrrp.is_some() {
        return Err(site.invalid(
            section,
            "bgp",
            "cannot be combined with [vrrp]: a node is either one of an active-passive pair (VRRP) or an active-active node announcing over BGP",
        ));
    }
    if global.pin_dir.is_none() {
        return Err(site.invalid(
            section,
            "bgp",
            "needs the data path to outlive lb (global.pin_dir must not be empty): otherwise a crashed lb leaves its announcements in place with no XDP program behind them",
        ));
    }
    for (raw_service, service) in file.services.iter().zip(services) {
        if service.scheduler == Scheduler::RoundRobin {
            let span = raw_service
                .scheduler
                .as_ref()
                .map_or_else(|| raw_service.name.span(), Spanned::span);
            return Err(site.invalid(
                span,
                format!("service[{}].scheduler", service.name),
                "\"round-robin\" cannot be used with [bgp]: each node's ring turns on its own, so a flow the routers move to another node would reach another backend; use \"maglev\", which picks the same backend on every node",
            ));
        }
    }
    let table = match &raw.table {
        Some(value) => {
            // Fits: checked against the u32 range.
            let table = integer_in(value, 1..=i64::from(u32::MAX), "bgp.table", site)? as u32;
            if KERNEL_TABLES.contains(&table) {
                return Err(site.invalid(
                    value.span(),
                    "bgp.table",
                    format!("{table} is one of the kernel's own tables (253 default, 254 main, 255 local); use a table of lb's own, e.g. 200"),
                ));
            }
            table
        }
        None => DEFAULT_TABLE,
    };
    let announce = raw
        .announce
        .as_ref()
        .map(|list| {
            list.get_ref()
                .iter()
                .map(|value| {
                    let vip = unicast_address(value, "bgp.announce", site)?;
                    if services.iter().any(|service| service.vip == vip) {
                        Ok(vip)
                    } else {
                        Err(site.invalid(
                            value.span(),
                            "bgp.announce",
                            format!("{vip} is not the VIP of a configured service"),
                        ))
                    }
                })
                .collect::<Result<BTreeSet<_>, _>>()
        })
        .transpose()?;
    let withdraw_grace = match &raw.withdraw_grace {
        Some(value) => duration_in(value, WITHDRAW_GRACE_RANGE, "bgp.withdraw_grace", site)?,
        None => DEFAULT_WITHDRAW_GRACE,
    };
    Ok(BgpNode {
        table,
        announce,
        withdraw_grace,
    })
}
