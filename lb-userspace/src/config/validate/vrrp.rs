//! `[vrrp]`: how this node shares the VIPs with its peer as an
//! active-passive pair (the VRRP instance) and when it hands over on its own
//! (tracking). Absent: a single node, the VIPs are managed by someone else.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use toml::Spanned;

use super::fields::{integer_in, unicast_address};
use crate::config::error::{ConfigError, ErrorSite};
use crate::config::model::{Global, Service, Tracking, VrrpPair};
use crate::config::raw::RawVrrp;
use crate::vrrp::config::MAX_VIRTUAL_ADDRESSES;
use crate::vrrp::{AdvertInterval, GarpConfig, NotifyCommands, VrrpConfig};

/// Weight subtracted while this node's XDP program is not attached to its
/// interface, unless configured: the priority drops to 1, so any peer that
/// can serve takes over.
const DEFAULT_TRACK_XDP_WEIGHT: u8 = 254;
/// Weight subtracted for each tracked service that has no serving backend,
/// unless configured (the priority drops to 1, as for the XDP program).
const DEFAULT_TRACK_SERVICE_WEIGHT: u8 = 254;
/// Longest Linux interface name (IFNAMSIZ - 1).
const MAX_INTERFACE_NAME_LEN: usize = 15;

/// The model of `[vrrp]` (`raw`), given the validated rest of the file.
pub(super) fn validate(
    raw: &Spanned<RawVrrp>,
    global: &Global,
    services: &[Service],
    site: &ErrorSite<'_>,
) -> Result<VrrpPair, ConfigError> {
    let section = raw.span();
    let raw = raw.get_ref();
    if global.pin_dir.is_none() {
        return Err(site.invalid(
            section,
            "vrrp",
            "needs the data path to outlive lb (global.pin_dir must not be empty): otherwise a crashed master keeps the VIP with no XDP program and its kernel resets every connection",
        ));
    }
    let interface = match &raw.interface {
        Some(name) => interface_name(name, site)?,
        None => global.interface.clone(),
    };
    let vrid = integer_in(&raw.vrid, 1..=255, "vrrp.vrid", site)? as u8;
    let priority = integer_in(&raw.priority, 1..=255, "vrrp.priority", site)? as u8;
    let advert_interval = match &raw.advert_interval {
        Some(value) => {
            let interval = duration(value, "vrrp.advert_interval", site)?;
            AdvertInterval::from_duration(interval).ok_or_else(|| {
                site.invalid(
                    value.span(),
                    "vrrp.advert_interval",
                    format!("{:?} must be a whole number of centiseconds between 10ms and 40.95s (e.g. \"100ms\", \"1s\")", value.get_ref()),
                )
            })?
        }
        None => AdvertInterval::DEFAULT,
    };
    let primary_address = raw
        .primary_address
        .as_ref()
        .map(|value| unicast_address(value, "vrrp.primary_address", site))
        .transpose()?;
    let virtual_addresses = match &raw.virtual_addresses {
        Some(list) => address_list(list, "vrrp.virtual_addresses", site)?,
        None => service_vips(services),
    };
    if virtual_addresses.is_empty() {
        let span = raw
            .virtual_addresses
            .as_ref()
            .map_or(section.clone(), Spanned::span);
        return Err(site.invalid(
            span,
            "vrrp.virtual_addresses",
            "no virtual address: list them, or define services (their VIPs are the default)",
        ));
    }
    if virtual_addresses.len() > MAX_VIRTUAL_ADDRESSES {
        let span = raw
            .virtual_addresses
            .as_ref()
            .map_or(section.clone(), Spanned::span);
        return Err(site.invalid(
            span,
            "vrrp.virtual_addresses",
            format!("at most {MAX_VIRTUAL_ADDRESSES} addresses fit in an advert"),
        ));
    }
    let unicast_peers = match &raw.unicast_peers {
        Some(list) => address_list(list, "vrrp.unicast_peers", site)?,
        None => Vec::new(),
    };
    if let Some(primary) = &raw.primary_address {
        let address = primary_address.expect("parsed above");
        if virtual_addresses.contains(&address) || unicast_peers.contains(&address) {
            return Err(site.invalid(
                primary.span(),
                "vrrp.primary_address",
                format!("{address} is also a virtual address or a unicast peer"),
            ));
        }
    }
    if let Some(list) = &raw.unicast_peers {
        // `unicast_peers` holds the parsed `list`, element by element.
        let conflict = list
            .get_ref()
            .iter()
            .zip(&unicast_peers)
            .find(|(_, peer)| virtual_addresses.contains(peer));
        if let Some((value, peer)) = conflict {
            return Err(site.invalid(
                value.span(),
                "vrrp.unicast_peers",
                format!("{peer} is a virtual address"),
            ));
        }
    }
    let preempt_delay = optional_duration(&raw.preempt_delay, "vrrp.preempt_delay", site)?
        .unwrap_or(Duration::ZERO);
    let instance = VrrpConfig {
        interface,
        vrid,
        priority,
        advert_interval,
        virtual_addresses,
        unicast_peers,
        preempt: raw.preempt.as_ref().is_none_or(|p| *p.get_ref()),
        preempt_delay,
        garp: garp(raw, site)?,
        notify: NotifyCommands {
            master: command(&raw.notify_master, "vrrp.notify_master", site)?,
            backup: command(&raw.notify_backup, "vrrp.notify_backup", site)?,
            fault: command(&raw.notify_fault, "vrrp.notify_fault", site)?,
        },
    };
    Ok(VrrpPair {
        instance,
        primary_address,
        track: tracking(raw, services, site)?,
    })
}

fn interface_name(name: &Spanned<String>, site: &ErrorSite<'_>) -> Result<String, ConfigError> {
    let text = name.get_ref();
    if text.is_empty()
        || text.len() > MAX_INTERFACE_NAME_LEN
        || text.contains(|c: char| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(site.invalid(
            name.span(),
            "vrrp.interface",
            format!("{text:?} is not an interface name (1 to {MAX_INTERFACE_NAME_LEN} characters, no '/', ':' or spaces)"),
        ));
    }
    Ok(text.clone())
}

/// Every distinct service VIP, in file order.
fn service_vips(services: &[Service]) -> Vec<Ipv4Addr> {
    let mut seen = HashSet::new();
    services
        .iter()
        .map(|service| service.vip)
        .filter(|vip| seen.insert(*vip))
        .collect()
}

fn address_list(
    list: &Spanned<Vec<Spanned<String>>>,
    field: &str,
    site: &ErrorSite<'_>,
) -> Result<Vec<Ipv4Addr>, ConfigError> {
    let mut addresses = Vec::with_capacity(list.get_ref().len());
    for value in list.get_ref() {
        let address = unicast_address(value, field, site)?;
        if addresses.contains(&address) {
            return Err(site.invalid(value.span(), field, format!("{address} is listed twice")));
        }
        addresses.push(address);
    }
    Ok(addresses)
}

fn garp(raw: &RawVrrp, site: &ErrorSite<'_>) -> Result<GarpConfig, ConfigError> {
    let defaults = GarpConfig::default();
    let count = match &raw.garp_count {
        Some(count) => integer_in(count, 1..=1000, "vrrp.garp_count", site)? as u32,
        None => defaults.count,
    };
    let interval = match &raw.garp_interval {
        Some(value) => {
            let interval = duration(value, "vrrp.garp_interval", site)?;
            if interval.is_zero() && count > 1 {
                return Err(site.invalid(
                    value.span(),
                    "vrrp.garp_interval",
                    "must be positive when garp_count > 1",
                ));
            }
            interval
        }
        None => defaults.interval,
    };
    let refresh = match &raw.garp_refresh {
        Some(value) => {
            let refresh = duration(value, "vrrp.garp_refresh", site)?;
            if refresh.is_zero() {
                return Err(site.invalid(
                    value.span(),
                    "vrrp.garp_refresh",
                    "must be positive (leave it out for no refresh)",
                ));
            }
            Some(refresh)
        }
        None => defaults.refresh,
    };
    Ok(GarpConfig {
        count,
        interval,
        refresh,
    })
}

fn tracking(
    raw: &RawVrrp,
    services: &[Service],
    site: &ErrorSite<'_>,
) -> Result<Tracking, ConfigError> {
    let weight = |value: &Option<Spanned<i64>>, field: &str, default: u8| match value {
        Some(value) => integer_in(value, 0..=254, field, site).map(|w| w as u8),
        None => Ok(default),
    };
    let xdp_weight = weight(
        &raw.track_xdp_weight,
        "vrrp.track_xdp_weight",
        DEFAULT_TRACK_XDP_WEIGHT,
    )?;
    let service_weight = weight(
        &raw.track_service_weight,
        "vrrp.track_service_weight",
        DEFAULT_TRACK_SERVICE_WEIGHT,
    )?;
    let services = match &raw.track_services {
        None => services.iter().map(|s| s.name.clone()).collect(),
        Some(list) => {
            let mut names: Vec<String> = Vec::with_capacity(list.get_ref().len());
            for name in list.get_ref() {
                let text = name.get_ref();
                let problem = if !services.iter().any(|s| &s.name == text) {
                    Some(format!("{text:?} is not a configured service"))
                } else if names.contains(text) {
                    Some(format!("{text:?} is listed twice"))
                } else {
                    None
                };
                if let Some(problem) = problem {
                    return Err(site.invalid(name.span(), "vrrp.track_services", problem));
                }
                names.push(text.clone());
            }
            names
        }
    };
    Ok(Tracking {
        xdp_weight,
        service_weight,
        services,
    })
}

fn command(
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

fn optional_duration(
    value: &Option<Spanned<String>>,
    field: &str,
    site: &ErrorSite<'_>,
) -> Result<Option<Duration>, ConfigError> {
    value
        .as_ref()
        .map(|value| duration(value, field, site))
        .transpose()
}

fn duration(
    value: &Spanned<String>,
    field: &str,
    site: &ErrorSite<'_>,
) -> Result<Duration, ConfigError> {
    humantime::parse_duration(value.get_ref()).map_err(|error| {
        site.invalid(
            value.span(),
            field,
            format!(
                "{:?} is not a duration ({error}); write e.g. \"100ms\" or \"1s\"",
                value.get_ref()
            ),
        )
    })
}
