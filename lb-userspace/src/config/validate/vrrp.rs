//! `[vrrp]`: how this node shares the VIPs with its peer as an
//! active-passive pair (the VRRP instance) and when it hands over on its own
//! (tracking). Absent: a single node, the VIPs are managed by someone else.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use toml::Spanned;

use super::fields::{
    command, duration_in, integer_in, interface_name, unicast_address, DurationRange,
};
use crate::config::error::{quote, ConfigError, ErrorSite};
use crate::config::model::{Global, Service, Tracking, VrrpPair};
use crate::config::raw::RawVrrp;
use crate::vrrp::config::{MAX_VIRTUAL_ADDRESSES, OWNER_PRIORITY};
use crate::vrrp::{AdvertInterval, GarpConfig, Gateway, NotifyCommands, VrrpConfig};

/// Weight subtracted while this node's XDP program is not attached to its
/// interface, unless configured: the priority drops to 1, so any peer that
/// can serve takes over.
const DEFAULT_TRACK_XDP_WEIGHT: u8 = 254;
/// Weight subtracted for each tracked service that has no serving backend,
/// unless configured (the priority drops to 1, as for the XDP program).
const DEFAULT_TRACK_SERVICE_WEIGHT: u8 = 254;
/// Accepted `advert_interval`: what the advert's 12-bit centisecond field
/// carries (and it must be whole centiseconds).
const ADVERT_INTERVAL_RANGE: DurationRange = DurationRange {
    min: Duration::from_millis(10),
    max: Duration::from_millis(40_950),
};
/// Accepted `preempt_delay`: none, up to an hour.
const PREEMPT_DELAY_RANGE: DurationRange = DurationRange {
    min: Duration::ZERO,
    max: Duration::from_secs(3600),
};
/// Accepted `garp_interval` between the rounds sent on becoming master.
const GARP_INTERVAL_RANGE: DurationRange = DurationRange {
    min: Duration::from_millis(10),
    max: Duration::from_secs(60),
};
/// Accepted `garp_refresh` period.
const GARP_REFRESH_RANGE: DurationRange = DurationRange {
    min: Duration::from_secs(1),
    max: Duration::from_secs(24 * 3600),
};

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
        Some(name) => interface_name(name, "vrrp.interface", site)?,
        None => global.interface.clone(),
    };
    let vrid = integer_in(&raw.vrid, 1..=255, "vrrp.vrid", site)? as u8;
    let priority = priority(&raw.priority, site)?;
    let advert_interval = match &raw.advert_interval {
        Some(value) => {
            let interval = duration_in(value, ADVERT_INTERVAL_RANGE, "vrrp.advert_interval", site)?;
            AdvertInterval::from_duration(interval).ok_or_else(|| {
                site.invalid(
                    value.span(),
                    "vrrp.advert_interval",
                    format!("{} is not a whole number of centiseconds (e.g. \"100ms\", \"1s\"; the advert carries centiseconds)", quote(value.get_ref())),
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
    check_listed_virtual_addresses(raw, &virtual_addresses, global, services, site)?;
    let gateway = gateway(
        raw,
        &virtual_addresses,
        &unicast_peers,
        primary_address,
        global,
        services,
        site,
    )?;
    let preempt_delay = match &raw.preempt_delay {
        Some(value) => duration_in(value, PREEMPT_DELAY_RANGE, "vrrp.preempt_delay", site)?,
        None => Duration::ZERO,
    };
    let instance = VrrpConfig {
        interface,
        vrid,
        priority,
        advert_interval,
        virtual_addresses,
        unicast_peers,
        preempt: raw.preempt.as_ref().is_none_or(|p| *p.get_ref()),
        preempt_delay,
        gateway,
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

/// `priority`: 1..=254. 255 is the RFC 5798 address owner's, a router that
/// holds the virtual addresses as its own and keeps priority 255; lb adds and
/// removes the VIPs with the master role and tracking lowers its priority,
/// so it cannot be the owner.
fn priority(value: &Spanned<i64>, site: &ErrorSite<'_>) -> Result<u8, ConfigError> {
    if *value.get_ref() == i64::from(OWNER_PRIORITY) {
        return Err(site.invalid(
            value.span(),
            "vrrp.priority",
            "255 is the address owner's priority (RFC 5798: a router whose own addresses are the virtual addresses); lb adds and removes the VIPs with the master role and tracking lowers its priority, so use 1..=254",
        ));
    }
    Ok(integer_in(value, 1..=254, "vrrp.priority", site)? as u8)
}

/// Rejects a listed virtual address that is a backend's address or the
/// probes' source: both must stay with their host, not move with the
/// master role.
fn check_listed_virtual_addresses(
    raw: &RawVrrp,
    virtual_addresses: &[Ipv4Addr],
    global: &Global,
    services: &[Service],
    site: &ErrorSite<'_>,
) -> Result<(), ConfigError> {
    let Some(list) = &raw.virtual_addresses else {
        // The default, the service VIPs, were checked against the backends.
        return Ok(());
    };
    // `virtual_addresses` holds the parsed `list`, element by element.
    for (value, address) in list.get_ref().iter().zip(virtual_addresses) {
        let backend = services.iter().find_map(|service| {
            let backend = service.backends.iter().find(|b| b.address == *address)?;
            Some((&service.name, &backend.name))
        });
        let problem = if let Some((service, backend)) = backend {
            format!("{address} is the address of backend {backend:?} of service {service:?}; a backend cannot also be a virtual address")
        } else if global.health_source.address() == Some(*address) {
            format!("{address} is global.health_source; probes must leave from an address this node always holds")
        } else {
            continue;
        };
        return Err(site.invalid(value.span(), "vrrp.virtual_addresses", problem));
    }
    Ok(())
}

/// `gateway_address`, the servers' default gateway on
/// `global.server_interface`: an address of its own, which the master holds
/// beside the VIPs. Not a VIP or a virtual address (the gateway address is
/// not in the advert, and the VIPs already move), not an address this node
/// always holds (its primary address, the probes' source), and not a
/// backend's or a peer's.
fn gateway(
    raw: &RawVrrp,
    virtual_addresses: &[Ipv4Addr],
    unicast_peers: &[Ipv4Addr],
    primary_address: Option<Ipv4Addr>,
    global: &Global,
    services: &[Service],
    site: &ErrorSite<'_>,
) -> Result<Option<Gateway>, ConfigError> {
    const FIELD: &str = "vrrp.gateway_address";
    let Some(value) = &raw.gateway_address else {
        return Ok(None);
    };
    let address = unicast_address(value, FIELD, site)?;
    let Some(interface) = &global.server_interface else {
        return Err(site.invalid(
            value.span(),
            FIELD,
            "needs global.server_interface (the servers' side of a two-armed node, where the gateway address is added while master); set it, or leave gateway_address out",
        ));
    };
    let backend = services.iter().find_map(|service| {
        let backend = service.backends.iter().find(|b| b.address == address)?;
        Some((&service.name, &backend.name))
    });
    let problem = if let Some(service) = services.iter().find(|s| s.vip == address) {
        format!("{address} is the VIP of service {:?}", service.name)
    } else if virtual_addresses.contains(&address) {
        format!("{address} is also a virtual address")
    } else if primary_address == Some(address) {
        format!("{address} is vrrp.primary_address")
    } else if let Some((service, backend)) = backend {
        format!("{address} is the address of backend {backend:?} of service {service:?}")
    } else if global.health_source.address() == Some(address) {
        format!("{address} is global.health_source")
    } else if unicast_peers.contains(&address) {
        format!("{address} is a unicast peer")
    } else {
        return Ok(Some(Gateway {
            interface: interface.clone(),
            address,
        }));
    };
    Err(site.invalid(
        value.span(),
        FIELD,
        format!("{problem}; the gateway address must be an address of its own, the servers' default gateway on {interface}"),
    ))
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
        Some(value) => duration_in(value, GARP_INTERVAL_RANGE, "vrrp.garp_interval", site)?,
        None => defaults.interval,
    };
    let refresh = match &raw.garp_refresh {
        Some(value) => Some(duration_in(
            value,
            GARP_REFRESH_RANGE,
            "vrrp.garp_refresh",
            site,
        )?),
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
        None => None,
        Some(list) => {
            let mut names: Vec<String> = Vec::with_capacity(list.get_ref().len());
            for name in list.get_ref() {
                let text = name.get_ref();
                let problem = if !services.iter().any(|s| &s.name == text) {
                    Some(format!("{} is not a configured service", quote(text)))
                } else if names.contains(text) {
                    Some(format!("{} is listed twice", quote(text)))
                } else {
                    None
                };
                if let Some(problem) = problem {
                    return Err(site.invalid(name.span(), "vrrp.track_services", problem));
                }
                names.push(text.clone());
            }
            Some(names)
        }
    };
    Ok(Tracking {
        xdp_weight,
        service_weight,
        services,
    })
}
