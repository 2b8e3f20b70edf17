//! Turns the raw file ([`super::raw`]) into the model, rejecting anything the
//! load balancer cannot run with.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::{Range, RangeInclusive};

use lb_common::maglev::is_prime;
use lb_common::maps::defaults;
use lb_common::ring::round_robin_ring;
use toml::Spanned;

use super::error::{ConfigError, ErrorSite};
use super::health::{self, CheckedService};
use super::raw::{RawBackend, RawConfig, RawGlobal, RawService};
use super::{
    Backend, Config, Forwarding, Global, Protocol, Scheduler, Service, DEFAULT_API, WEIGHT_RANGE,
};
use crate::dataplane::XdpModePreference;
use crate::health::{Health, ProbeSource};

/// Longest service or backend name.
const MAX_NAME_LEN: usize = 32;
/// Longest Linux interface name (IFNAMSIZ - 1).
const MAX_INTERFACE_NAME_LEN: usize = 15;

/// The model of `raw`, or the first problem found in file order.
pub(super) fn validate(raw: RawConfig, site: &ErrorSite<'_>) -> Result<Config, ConfigError> {
    let global = validate_global(&raw.global, site)?;
    let mut validator = ServicesValidator::new(&global, site);
    for raw_service in &raw.services {
        validator.add(raw_service)?;
    }
    let services = validator.into_services();
    let vrrp = raw
        .vrrp
        .as_ref()
        .map(|vrrp| super::vrrp::validate(vrrp, &global, &services, site))
        .transpose()?;
    Ok(Config {
        global,
        services,
        vrrp,
    })
}

fn validate_global(raw: &RawGlobal, site: &ErrorSite<'_>) -> Result<Global, ConfigError> {
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
        pin_dir: super::pin_dir::validate(raw.pin_dir.as_ref(), interface, site)?,
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

/// Validates services one by one, remembering what earlier ones claimed.
struct ServicesValidator<'a> {
    global: &'a Global,
    site: &'a ErrorSite<'a>,
    services: Vec<Service>,
    /// Service name -> line where it was defined.
    names: HashMap<String, usize>,
    /// (VIP, port, protocol) -> (service name, line).
    endpoints: HashMap<(Ipv4Addr, u16, Protocol), (String, usize)>,
    backend_count: u64,
}

impl<'a> ServicesValidator<'a> {
    fn new(global: &'a Global, site: &'a ErrorSite<'a>) -> Self {
        ServicesValidator {
            global,
            site,
            services: Vec::new(),
            names: HashMap::new(),
            endpoints: HashMap::new(),
            backend_count: 0,
        }
    }

    fn into_services(self) -> Vec<Service> {
        self.services
    }

    fn line_of(&self, span: Range<usize>) -> usize {
        super::Location::of_offset(self.site.text, span.start).line
    }

    fn add(&mut self, raw: &RawService) -> Result<(), ConfigError> {
        let site = self.site;
        let name = raw.name.get_ref();
        check_name(&raw.name, "service.name", site)?;
        let field = |leaf: &str| format!("service[{name}].{leaf}");
        if let Some(line) = self.names.get(name) {
            return Err(site.invalid(
                raw.name.span(),
                field("name"),
                format!("duplicate service name (already used on line {line})"),
            ));
        }
        if self.services.len() as u64 >= u64::from(self.global.max_services) {
            return Err(site.invalid(
                raw.name.span(),
                format!("service[{name}]"),
                format!(
                    "more services than global.max_services ({})",
                    self.global.max_services
                ),
            ));
        }
        let vip = unicast_address(&raw.vip, &field("vip"), site)?;
        let port = integer_in(&raw.port, 1..=i64::from(u16::MAX), &field("port"), site)? as u16;
        let protocol = match raw.protocol.get_ref().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            other => {
                return Err(site.invalid(
                    raw.protocol.span(),
                    field("protocol"),
                    format!("unknown protocol {other:?} (expected \"tcp\" or \"udp\")"),
                ))
            }
        };
        let scheduler = match raw.scheduler.as_ref().map(|s| s.get_ref().as_str()) {
            None | Some("maglev") => Scheduler::Maglev,
            Some("round-robin") => Scheduler::RoundRobin,
            Some(other) => {
                return Err(site.invalid(
                    raw.scheduler.as_ref().map_or(0..0, Spanned::span),
                    field("scheduler"),
                    format!("unknown scheduler {other:?} (expected \"maglev\" or \"round-robin\")"),
                ))
            }
        };
        let forwarding = match raw.forwarding.as_ref().map(|f| f.get_ref().as_str()) {
            None | Some("dsr-l2") => Forwarding::DsrL2,
            Some(other) => {
                let problem = if matches!(other, "ipip" | "nat") {
                    format!("forwarding mode {other:?} is not supported yet (only \"dsr-l2\")")
                } else {
                    format!("unknown forwarding mode {other:?} (expected \"dsr-l2\")")
                };
                return Err(site.invalid(
                    raw.forwarding.as_ref().map_or(0..0, Spanned::span),
                    field("forwarding"),
                    problem,
                ));
            }
        };
        let endpoint = (vip, port, protocol);
        if let Some((other, line)) = self.endpoints.get(&endpoint) {
            return Err(site.invalid(
                raw.vip.span(),
                field("vip"),
                format!(
                    "{vip}:{port}/{protocol} is already served by service {other:?} (line {line})"
                ),
            ));
        }
        let health = health::validate(
            raw.health.as_ref(),
            &CheckedService {
                name,
                protocol,
                port,
                source: &self.global.health_source,
            },
            site,
        )?;
        let backends = self.backends(raw, vip, health.is_some())?;
        let service = Service {
            name: name.clone(),
            vip,
            port,
            protocol,
            scheduler,
            forwarding,
            health,
            backends,
        };
        self.check_table_fits(&service, raw)?;
        let line = self.line_of(raw.name.span());
        self.names.insert(name.clone(), line);
        self.endpoints.insert(endpoint, (name.clone(), line));
        self.services.push(service);
        Ok(())
    }

    fn backends(
        &mut self,
        raw: &RawService,
        vip: Ipv4Addr,
        checked: bool,
    ) -> Result<Vec<Backend>, ConfigError> {
        let site = self.site;
        let service = raw.name.get_ref();
        if raw.backends.is_empty() {
            return Err(site.invalid(
                raw.name.span(),
                format!("service[{service}].backend"),
                "a service needs at least one [[service.backend]]",
            ));
        }
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut addresses: HashMap<Ipv4Addr, (&str, usize)> = HashMap::new();
        let mut backends = Vec::with_capacity(raw.backends.len());
        for RawBackend {
            name,
            address,
            weight,
            initial,
        } in &raw.backends
        {
            check_name(name, &format!("service[{service}].backend.name"), site)?;
            let field =
                |leaf: &str| format!("service[{service}].backend[{}].{leaf}", name.get_ref());
            let line = self.line_of(name.span());
            if let Some(first) = names.insert(name.get_ref(), line) {
                return Err(site.invalid(
                    name.span(),
                    field("name"),
                    format!(
                        "duplicate backend name in this service (already used on line {first})"
                    ),
                ));
            }
            self.backend_count += 1;
            if self.backend_count > u64::from(self.global.max_backends) {
                return Err(site.invalid(
                    name.span(),
                    format!("service[{service}].backend[{}]", name.get_ref()),
                    format!(
                        "more backends than global.max_backends ({}); a server in two services counts twice",
                        self.global.max_backends
                    ),
                ));
            }
            let parsed = unicast_address(address, &field("address"), site)?;
            if parsed == vip {
                return Err(site.invalid(
                    address.span(),
                    field("address"),
                    format!("{parsed} is the service's own VIP"),
                ));
            }
            if let Some((other, first)) = addresses.insert(parsed, (name.get_ref(), line)) {
                return Err(site.invalid(
                    address.span(),
                    field("address"),
                    format!("duplicate backend address {parsed} in this service (backend {other:?}, line {first})"),
                ));
            }
            let weight = match weight {
                Some(weight) => integer_in(
                    weight,
                    i64::from(*WEIGHT_RANGE.start())..=i64::from(*WEIGHT_RANGE.end()),
                    &field("weight"),
                    site,
                )? as u32,
                None => 1,
            };
            let initial = match initial {
                None if checked => Health::Down,
                None => Health::Up,
                Some(initial) if !checked => {
                    return Err(site.invalid(
                        initial.span(),
                        field("initial"),
                        "the service is not health-checked (a udp service without [service.health], or type = \"none\"), so its backends are always up",
                    ))
                }
                Some(initial) => match initial.get_ref().as_str() {
                    "up" => Health::Up,
                    "down" => Health::Down,
                    other => {
                        return Err(site.invalid(
                            initial.span(),
                            field("initial"),
                            format!("unknown initial state {other:?} (expected \"up\" or \"down\")"),
                        ))
                    }
                },
            };
            backends.push(Backend {
                name: name.get_ref().clone(),
                address: parsed,
                weight,
                initial,
            });
        }
        Ok(backends)
    }

    /// Checks that the service's scheduling table can be built in M slots.
    fn check_table_fits(&self, service: &Service, raw: &RawService) -> Result<(), ConfigError> {
        let table_size = self.global.maglev_table_size;
        let problem = match service.scheduler {
            Scheduler::Maglev => {
                // The lightest backend gets about M * lightest / total slots:
                // at least one as long as M >= total / lightest.
                let weights = service.backends.iter().map(|b| u64::from(b.weight));
                let total: u64 = weights.clone().sum();
                let needed = total.div_ceil(weights.min().unwrap_or(1));
                (needed > u64::from(table_size)).then(|| {
                    format!("Maglev needs at least {needed} slots (sum of weights / smallest weight) so that every backend gets one")
                })
            }
            Scheduler::RoundRobin => {
                let weighted: Vec<(u32, u32)> = (0..)
                    .zip(service.backends.iter().map(|b| b.weight))
                    .collect();
                round_robin_ring(&weighted, table_size as usize)
                    .err()
                    .map(|e| e.to_string())
            }
        };
        match problem {
            None => Ok(()),
            Some(problem) => Err(self.site.invalid(
                raw.name.span(),
                format!("service[{}]", service.name),
                format!("global.maglev_table_size ({table_size}) is too small for this service's backends: {problem}"),
            )),
        }
    }
}

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

fn check_name(
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
