//! Turns the raw file (`config::raw`) into the model (`config::model`),
//! section by section in file order, rejecting anything the load balancer
//! cannot run with. Each section's validator sees the validated sections it
//! depends on (services see `[global]`, `[vrrp]` and `[bgp]` see both), never the
//! other way round.

mod bgp;
mod fields;
mod global;
mod health;
mod pin_dir;
mod service;
mod vrrp;

pub use pin_dir::{default_pin_dir, validate_pin_dir};

use super::error::{ConfigError, ErrorSite};
use super::model::Config;
use super::raw::RawConfig;

/// The model of `raw`, or the first problem found in file order.
pub(super) fn validate(raw: RawConfig, site: &ErrorSite<'_>) -> Result<Config, ConfigError> {
    let global = global::validate(&raw.global, site)?;
    let mut services = service::ServicesValidator::new(&global, site);
    for raw_service in &raw.services {
        services.add(raw_service)?;
    }
    let services = services.into_services();
    global::check_health_source(&raw.global, &global, &services, site)?;
    let vrrp = raw
        .vrrp
        .as_ref()
        .map(|vrrp| vrrp::validate(vrrp, &global, &services, site))
        .transpose()?;
    let bgp = raw
        .bgp
        .as_ref()
        .map(|bgp| bgp::validate(bgp, &raw, &global, &services, site))
        .transpose()?;
    Ok(Config {
        global,
        services,
        vrrp,
        bgp,
    })
}
