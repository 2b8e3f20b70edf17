//! The flood-protection maps the controller writes: the global settings
//! (`FLOOD_SETTINGS`, once at load) and each service's per-source new-flow
//! rate limit (`RATE_LIMITS`).

use aya::maps::Array;
use aya::Ebpf;
use lb_common::maps::{names, FloodSettings, RateLimit};

use super::error::{map_error, DataplaneError};
use super::LoadOptions;

/// Writes `FLOOD_SETTINGS` from `options`.
pub(super) fn write_settings(ebpf: &mut Ebpf, options: &LoadOptions) -> Result<(), DataplaneError> {
    let map = ebpf
        .map_mut(names::FLOOD_SETTINGS)
        .ok_or(DataplaneError::MissingMap(names::FLOOD_SETTINGS))?;
    let mut settings: Array<_, FloodSettings> =
        Array::try_from(map).map_err(map_error(names::FLOOD_SETTINGS))?;
    let value = FloodSettings {
        flow_insert_limit_per_cpu: options.flow_insert_limit_per_cpu,
        _pad: 0,
    };
    settings
        .set(0, value, 0)
        .map_err(map_error(names::FLOOD_SETTINGS))
}

/// Writes service `service_id`'s per-source rate limit (all zero: none).
pub(super) fn write_rate_limit(
    ebpf: &mut Ebpf,
    service_id: u32,
    limit: RateLimit,
) -> Result<(), DataplaneError> {
    let map = ebpf
        .map_mut(names::RATE_LIMITS)
        .ok_or(DataplaneError::MissingMap(names::RATE_LIMITS))?;
    let mut limits: Array<_, RateLimit> =
        Array::try_from(map).map_err(map_error(names::RATE_LIMITS))?;
    limits
        .set(service_id, limit, 0)
        .map_err(map_error(names::RATE_LIMITS))
}
