//! `[[service]]` and its `[[service.backend]]`s: endpoints, scheduler,
//! forwarding, health check and backends, each service checked against the
//! ones before it and against `[global]`'s limits.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::ops::Range;

use toml::Spanned;

use super::fields::{self, integer_in, source_prefix, unicast_address};
use super::health::{self, CheckedService};
use crate::config::error::{quote, ConfigError, ErrorSite, Location};
use crate::config::model::{
    Backend, Forwarding, Global, HealthCheck, OnDown, Protocol, Scheduler, Service, SourcePrefix,
    SourceRateLimit, NEW_FLOWS_BURST_RANGE, NEW_FLOWS_PER_SECOND_RANGE, WEIGHT_RANGE,
};
use crate::config::raw::{RawBackend, RawService};
use crate::health::{ExpectRole, Health, ProbeKind};

/// Validates services one by one, remembering what earlier ones claimed.
pub(super) struct ServicesValidator<'a> {
    global: &'a Global,
    site: &'a ErrorSite<'a>,
    services: Vec<Service>,
    /// Service name -> line where it was defined.
    names: HashMap<String, usize>,
    /// (VIP, port, protocol) -> (service name, line).
    endpoints: HashMap<(Ipv4Addr, u16, Protocol), (String, usize)>,
    /// VIP -> (first service name, line).
    vips: HashMap<Ipv4Addr, (String, usize)>,
    /// Backend address -> (service name, backend name, line), the first seen.
    backend_addresses: HashMap<Ipv4Addr, (String, String, usize)>,
    backend_count: u64,
    /// `nat` backends' (address, port, protocol) -> (service, backend, line).
    nat_endpoints: HashMap<(Ipv4Addr, u16, String), (String, String, usize)>,
    /// Prefixes in the allow-lists of the services so far.
    allow_prefixes: u64,
}

impl<'a> ServicesValidator<'a> {
    pub(super) fn new(global: &'a Global, site: &'a ErrorSite<'a>) -> Self {
        ServicesValidator {
            global,
            site,
            services: Vec::new(),
            names: HashMap::new(),
            endpoints: HashMap::new(),
            vips: HashMap::new(),
            backend_addresses: HashMap::new(),
            backend_count: 0,
            nat_endpoints: HashMap::new(),
            allow_prefixes: 0,
        }
    }

    pub(super) fn into_services(self) -> Vec<Service> {
        self.services
    }

    fn line_of(&self, span: Range<usize>) -> usize {
        Location::of_offset(self.site.text, span.start).line
    }

    pub(super) fn add(&mut self, raw: &RawService) -> Result<(), ConfigError> {
        let site = self.site;
        let name = raw.name.get_ref();
        fields::name(&raw.name, "service.name", site)?;
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
        if let Some((service, backend, line)) = self.backend_addresses.get(&vip) {
            return Err(site.invalid(
                raw.vip.span(),
                field("vip"),
                format!("{vip} is the address of backend {backend:?} of service {service:?} (line {line}); a VIP cannot also be a backend"),
            ));
        }
        let port = integer_in(&raw.port, 1..=i64::from(u16::MAX), &field("port"), site)? as u16;
        let protocol = match raw.protocol.get_ref().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            other => {
                return Err(site.invalid(
                    raw.protocol.span(),
                    field("protocol"),
                    format!(
                        "unknown protocol {} (expected \"tcp\" or \"udp\")",
                        quote(other)
                    ),
                ))
            }
        };
        let scheduler = match raw.scheduler.as_ref().map(|s| s.get_ref().as_str()) {
            None | Some("maglev") => Scheduler::Maglev,
            Some("round-robin") => Scheduler::RoundRobin,
            Some("source") => Scheduler::Source,
            Some(other) => {
                return Err(site.invalid(
                    raw.scheduler.as_ref().map_or(0..0, Spanned::span),
                    field("scheduler"),
                    format!(
                        "unknown scheduler {} (expected \"maglev\", \"round-robin\" or \"source\")",
                        quote(other)
                    ),
                ))
            }
        };
        let forwarding_span = raw.forwarding.as_ref().map_or(0..0, Spanned::span);
        let forwarding = match raw.forwarding.as_ref().map(|f| f.get_ref().as_str()) {
            None | Some("dsr-l2") => Forwarding::DsrL2,
            Some("nat") if self.global.server_interface.is_none() => {
                return Err(site.invalid(
                    forwarding_span,
                    field("forwarding"),
                    "\"nat\" needs global.server_interface, the servers' side: the backends' replies must come back through this node, and a client on the backends' own subnet would get them straight from the backend",
                ));
            }
            Some("nat") => Forwarding::Nat,
            Some(other) => {
                let problem = if other == "ipip" {
                    format!(
                        "forwarding mode {} is not supported yet (\"dsr-l2\" or \"nat\")",
                        quote(other)
                    )
                } else {
                    format!(
                        "unknown forwarding mode {} (expected \"dsr-l2\" or \"nat\")",
                        quote(other)
                    )
                };
                return Err(site.invalid(forwarding_span, field("forwarding"), problem));
            }
        };
        let on_down = match raw.on_down.as_ref().map(|o| o.get_ref().as_str()) {
            None | Some("reset") => OnDown::Reset,
            Some("keep") => OnDown::Keep,
            Some(other) => {
                return Err(site.invalid(
                    raw.on_down.as_ref().map_or(0..0, Spanned::span),
                    field("on_down"),
                    format!(
                        "unknown value {} (expected \"reset\" or \"keep\")",
                        quote(other)
                    ),
                ))
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
        let allow = self.allow(raw)?;
        let rate_limit = rate_limit(raw, site)?;
        let health = health::validate(
            raw.health.as_ref(),
            &CheckedService {
                name,
                protocol,
                source: &self.global.health_source,
            },
            site,
        )?;
        let backends = self.backends(raw, vip, forwarding, health.as_ref())?;
        let service = Service {
            name: name.clone(),
            vip,
            port,
            protocol,
            scheduler,
            forwarding,
            on_down,
            allow,
            rate_limit,
            health,
            backends,
        };
        self.check_table_fits(&service, raw)?;
        let line = self.line_of(raw.name.span());
        self.names.insert(name.clone(), line);
        self.endpoints.insert(endpoint, (name.clone(), line));
        self.vips.entry(vip).or_insert((name.clone(), line));
        for (backend, raw_backend) in service.backends.iter().zip(&raw.backends) {
            let line = self.line_of(raw_backend.address.span());
            self.backend_addresses.entry(backend.address).or_insert((
                name.clone(),
                backend.name.clone(),
                line,
            ));
        }
        self.services.push(service);
        Ok(())
    }

    /// `allow`: distinct prefixes, at least one, and room for them in the
    /// allow-lists' map (`global.allow_table_size`) beside the services'
    /// before.
    fn allow(&mut self, raw: &RawService) -> Result<Option<Vec<SourcePrefix>>, ConfigError> {
        let site = self.site;
        let Some(list) = &raw.allow else {
            return Ok(None);
        };
        let field = format!("service[{}].allow", raw.name.get_ref());
        if list.get_ref().is_empty() {
            return Err(site.invalid(
                list.span(),
                field,
                "an empty list would drop every source; leave allow out to take every source",
            ));
        }
        let mut prefixes: Vec<SourcePrefix> = Vec::with_capacity(list.get_ref().len());
        let mut seen: HashSet<SourcePrefix> = HashSet::with_capacity(list.get_ref().len());
        for value in list.get_ref() {
            let prefix = source_prefix(value, &field, site)?;
            if !seen.insert(prefix) {
                return Err(site.invalid(value.span(), field, format!("{prefix} is listed twice")));
            }
            prefixes.push(prefix);
        }
        self.allow_prefixes += prefixes.len() as u64;
        let capacity = self.global.allow_table_size;
        if self.allow_prefixes > u64::from(capacity) {
            return Err(site.invalid(
                list.span(),
                field,
                format!(
                    "the allow lists hold {} prefixes in all so far, more than global.allow_table_size ({capacity}); raise it or shorten the lists",
                    self.allow_prefixes
                ),
            ));
        }
        Ok(Some(prefixes))
    }

    fn backends(
        &mut self,
        raw: &RawService,
        vip: Ipv4Addr,
        forwarding: Forwarding,
        health: Option<&HealthCheck>,
    ) -> Result<Vec<Backend>, ConfigError> {
        let checked = health.is_some();
        let mysql = health.is_some_and(|h| matches!(h.spec.probe.kind(), ProbeKind::Mysql(_)));
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
            port,
            weight,
            initial,
            backup,
            expect_role,
        } in &raw.backends
        {
            fields::name(name, &format!("service[{service}].backend.name"), site)?;
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
            if let Some((other, line)) = self.vips.get(&parsed) {
                return Err(site.invalid(
                    address.span(),
                    field("address"),
                    format!("{parsed} is the VIP of service {other:?} (line {line}); a backend cannot also be a VIP"),
                ));
            }
            if let Some((other, first)) = addresses.insert(parsed, (name.get_ref(), line)) {
                return Err(site.invalid(
                    address.span(),
                    field("address"),
                    format!("duplicate backend address {parsed} in this service (backend {other:?}, line {first})"),
                ));
            }
            let port = self.backend_port(raw, port.as_ref(), forwarding, &field("port"))?;
            if forwarding == Forwarding::Nat {
                self.claim_nat_endpoint(raw, name.get_ref(), parsed, port, address.span())?;
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
                            format!("unknown initial state {} (expected \"up\" or \"down\")", quote(other)),
                        ))
                    }
                },
            };
            let expect_role = match expect_role {
                None => None,
                Some(role) if !mysql => {
                    return Err(site.invalid(
                        role.span(),
                        field("expect_role"),
                        "only applies to a service whose check is type = \"mysql\"",
                    ))
                }
                Some(role) => Some(role.get_ref().parse::<ExpectRole>().map_err(|_| {
                    site.invalid(
                        role.span(),
                        field("expect_role"),
                        format!(
                            "unknown role {} (expected \"primary\", \"replica\" or \"any\")",
                            quote(role.get_ref())
                        ),
                    )
                })?),
            };
            backends.push(Backend {
                name: name.get_ref().clone(),
                address: parsed,
                port,
                weight,
                initial,
                backup: backup.as_ref().is_some_and(|backup| *backup.get_ref()),
                expect_role,
            });
        }
        Ok(backends)
    }

    /// A backend's `port`: 1..=65535, with `forwarding = "nat"` only; the
    /// service's port by default.
    fn backend_port(
        &self,
        raw: &RawService,
        port: Option<&Spanned<i64>>,
        forwarding: Forwarding,
        field: &str,
    ) -> Result<u16, ConfigError> {
        let service_port = u16::try_from(*raw.port.get_ref()).unwrap_or_default();
        match port {
            None => Ok(service_port),
            Some(port) if forwarding != Forwarding::Nat => Err(self.site.invalid(
                port.span(),
                field,
                "only applies to forwarding = \"nat\": with dsr-l2 the backend gets the packet as the client sent it, on the service's port",
            )),
            Some(port) => Ok(integer_in(port, 1..=i64::from(u16::MAX), field, self.site)? as u16),
        }
    }

    /// Records that `nat` backend `backend` of `raw` serves on
    /// `address:port`; refused when a `nat` backend of an earlier service
    /// does (the data path translates a reply by its source alone).
    fn claim_nat_endpoint(
        &mut self,
        raw: &RawService,
        backend: &str,
        address: Ipv4Addr,
        port: u16,
        span: Range<usize>,
    ) -> Result<(), ConfigError> {
        let service = raw.name.get_ref();
        let protocol = raw.protocol.get_ref().clone();
        let line = self.line_of(span.clone());
        let key = (address, port, protocol.clone());
        match self.nat_endpoints.get(&key) {
            Some((other, other_backend, first)) if other != service => Err(self.site.invalid(
                span,
                format!("service[{service}].backend[{backend}].address"),
                format!("{address}:{port}/{protocol} is already backend {other_backend:?} of nat service {other:?} (line {first}); a nat reply is translated by its source address and port alone, so each may serve one nat service (give it another port)"),
            )),
            _ => {
                self.nat_endpoints
                    .insert(key, (service.clone(), backend.to_owned(), line));
                Ok(())
            }
        }
    }

    /// Checks that the service's scheduling table can be built in M slots
    /// with a slot for every backend, whichever of them are up.
    fn check_table_fits(&self, service: &Service, raw: &RawService) -> Result<(), ConfigError> {
        let table_size = self.global.maglev_table_size;
        let weights: Vec<u32> = service.backends.iter().map(|b| b.weight).collect();
        service
            .scheduler
            .check_weights(&weights, table_size)
            .map_err(|problem| {
                self.site.invalid(
                    raw.name.span(),
                    format!("service[{}]", service.name),
                    problem.to_string(),
                )
            })
    }
}

/// `new_flows_per_second_per_source` and `new_flows_burst_per_source`: both
/// in range; the burst defaults to one second's worth of flows, and needs a
/// rate.
fn rate_limit(
    raw: &RawService,
    site: &ErrorSite<'_>,
) -> Result<Option<SourceRateLimit>, ConfigError> {
    let name = raw.name.get_ref();
    let field = |leaf: &str| format!("service[{name}].{leaf}");
    let in_range = |value: &Spanned<i64>, range: &std::ops::RangeInclusive<u32>, leaf: &str| {
        integer_in(
            value,
            i64::from(*range.start())..=i64::from(*range.end()),
            &field(leaf),
            site,
        )
        .map(|v| v as u32)
    };
    match (
        &raw.new_flows_per_second_per_source,
        &raw.new_flows_burst_per_source,
    ) {
        (None, None) => Ok(None),
        (None, Some(burst)) => Err(site.invalid(
            burst.span(),
            field("new_flows_burst_per_source"),
            "a burst needs a rate: set new_flows_per_second_per_source too",
        )),
        (Some(per_second), burst) => {
            let per_second = in_range(
                per_second,
                &NEW_FLOWS_PER_SECOND_RANGE,
                "new_flows_per_second_per_source",
            )?;
            let burst = match burst {
                Some(burst) => {
                    in_range(burst, &NEW_FLOWS_BURST_RANGE, "new_flows_burst_per_source")?
                }
                None => per_second,
            };
            Ok(Some(SourceRateLimit { per_second, burst }))
        }
    }
}
