//! What a running `lb` can take from a reloaded file, and what needs a
//! restart.
//!
//! Taken at runtime: every `[[service]]` (added, removed or changed: its
//! backends, weights, checks, scheduler, VIP, port), where the probes
//! leave from (`global.health_source`, `global.health_interface`) and the
//! backend hook (`global.notify_backend`).
//!
//! Fixed while `lb` runs, so a file that changes them is refused as a
//! whole: what the maps were sized or the program attached with
//! (`global.interface`, the table and map sizes, `xdp_mode`, `pin_dir`, the
//! flood guard), the API's socket (`global.api`), and all of `[vrrp]` and
//! `[bgp]` as validated. The VRRP instance and the BGP announcer run with
//! the settings they started with: changing an instance under a running
//! pair would make it flap. So `vrrp.virtual_addresses`, by default every
//! service VIP, also fixes the VIPs a pair's services may use.

use std::fmt;

use super::model::{BgpNode, Config, Global, Service, VrrpPair};

/// A reloaded file changes a setting that is fixed while `lb` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{field} cannot change while lb runs: restart lb to apply it (nothing was changed)")]
pub struct RestartRequired {
    /// The setting, as the file names it (`global.interface`, `[vrrp]`, ...).
    pub field: &'static str,
}

/// Whether a running `lb` configured by `running` can take `proposed`
/// without a restart; if not, the first setting that needs one.
pub fn check_reloadable(running: &Config, proposed: &Config) -> Result<(), RestartRequired> {
    let field = global_change(&running.global, &proposed.global)
        .or_else(|| section_change("[vrrp]", &running.vrrp, &proposed.vrrp, vrrp_change))
        .or_else(|| section_change("[bgp]", &running.bgp, &proposed.bgp, bgp_change));
    match field {
        Some(field) => Err(RestartRequired { field }),
        None => Ok(()),
    }
}

/// The name of the first field whose flag says it differs.
fn first_differing(fields: &[(&'static str, bool)]) -> Option<&'static str> {
    fields
        .iter()
        .find(|(_, differs)| *differs)
        .map(|(name, _)| *name)
}

fn global_change(a: &Global, b: &Global) -> Option<&'static str> {
    first_differing(&[
        ("global.interface", a.interface != b.interface),
        (
            "global.flow_table_size",
            a.flow_table_size != b.flow_table_size,
        ),
        (
            "global.maglev_table_size",
            a.maglev_table_size != b.maglev_table_size,
        ),
        ("global.max_services", a.max_services != b.max_services),
        ("global.max_backends", a.max_backends != b.max_backends),
        ("global.xdp_mode", a.xdp_mode != b.xdp_mode),
        ("global.api", a.api != b.api),
        ("global.pin_dir", a.pin_dir != b.pin_dir),
        (
            "global.rate_limit_table_size",
            a.rate_limit_table_size != b.rate_limit_table_size,
        ),
        (
            "global.flow_insert_limit_per_cpu",
            a.flow_insert_limit_per_cpu != b.flow_insert_limit_per_cpu,
        ),
        (
            "global.allow_table_size",
            a.allow_table_size != b.allow_table_size,
        ),
        ("global.vip_icmp_echo", a.vip_icmp_echo != b.vip_icmp_echo),
    ])
    .or_else(|| {
        // Any other difference but the probes' source and the backend
        // hook: a setting added to the model later is fixed until it is
        // listed above.
        let runtime_only = Global {
            health_source: a.health_source.clone(),
            notify_backend: a.notify_backend.clone(),
            ..b.clone()
        };
        (runtime_only != *a).then_some("global")
    })
}

/// `section` added or removed, or the first of its fields that changed.
fn section_change<T: PartialEq>(
    section: &'static str,
    running: &Option<T>,
    proposed: &Option<T>,
    fields: fn(&T, &T) -> Option<&'static str>,
) -> Option<&'static str> {
    match (running, proposed) {
        (Some(running), Some(proposed)) => {
            fields(running, proposed).or_else(|| (running != proposed).then_some(section))
        }
        (None, None) => None,
        _ => Some(section),
    }
}

fn vrrp_change(a: &VrrpPair, b: &VrrpPair) -> Option<&'static str> {
    let (i, j) = (&a.instance, &b.instance);
    first_differing(&[
        ("vrrp.interface", i.interface != j.interface),
        ("vrrp.vrid", i.vrid != j.vrid),
        ("vrrp.priority", i.priority != j.priority),
        (
            "vrrp.advert_interval",
            i.advert_interval != j.advert_interval,
        ),
        (
            "vrrp.virtual_addresses (by default every service VIP)",
            i.virtual_addresses != j.virtual_addresses,
        ),
        ("vrrp.unicast_peers", i.unicast_peers != j.unicast_peers),
        (
            "vrrp.primary_address",
            a.primary_address != b.primary_address,
        ),
        ("vrrp.gateway_address", i.gateway != j.gateway),
        ("vrrp.preempt", i.preempt != j.preempt),
        ("vrrp.preempt_delay", i.preempt_delay != j.preempt_delay),
        ("vrrp.garp_count", i.garp.count != j.garp.count),
        ("vrrp.garp_interval", i.garp.interval != j.garp.interval),
        ("vrrp.garp_refresh", i.garp.refresh != j.garp.refresh),
        ("vrrp.notify_master", i.notify.master != j.notify.master),
        ("vrrp.notify_backup", i.notify.backup != j.notify.backup),
        ("vrrp.notify_fault", i.notify.fault != j.notify.fault),
        (
            "vrrp.track_xdp_weight",
            a.track.xdp_weight != b.track.xdp_weight,
        ),
        (
            "vrrp.track_service_weight",
            a.track.service_weight != b.track.service_weight,
        ),
        ("vrrp.track_services", a.track.services != b.track.services),
    ])
}

fn bgp_change(a: &BgpNode, b: &BgpNode) -> Option<&'static str> {
    first_differing(&[
        ("bgp.table", a.table != b.table),
        ("bgp.announce", a.announce != b.announce),
        ("bgp.withdraw_grace", a.withdraw_grace != b.withdraw_grace),
    ])
}

/// How the services of a reloaded file differ from the running ones, by
/// name: what a reload adds, removes, rebuilds and leaves alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: usize,
}

impl ServiceChanges {
    pub fn between(running: &Config, proposed: &Config) -> Self {
        fn find<'a>(services: &'a [Service], name: &str) -> Option<&'a Service> {
            services.iter().find(|s| s.name == name)
        }
        let mut changes = ServiceChanges::default();
        for service in &proposed.services {
            match find(&running.services, &service.name) {
                None => changes.added.push(service.name.clone()),
                Some(before) if before != service => changes.changed.push(service.name.clone()),
                Some(_) => changes.unchanged += 1,
            }
        }
        changes.removed = running
            .services
            .iter()
            .filter(|s| find(&proposed.services, &s.name).is_none())
            .map(|s| s.name.clone())
            .collect();
        changes
    }
}

impl fmt::Display for ServiceChanges {
    /// E.g. `services: 1 added (api), 1 removed (alt), 1 changed (web), 2 unchanged`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        for (what, names) in [
            ("added", &self.added),
            ("removed", &self.removed),
            ("changed", &self.changed),
        ] {
            if !names.is_empty() {
                parts.push(format!("{} {what} ({})", names.len(), names.join(", ")));
            }
        }
        parts.push(format!("{} unchanged", self.unchanged));
        write!(f, "services: {}", parts.join(", "))
    }
}
