//! The global flood-protection settings (`FLOOD_SETTINGS`), written once at
//! load. Each service's rate limit is a source policy (`policy`).

use aya::maps::Array;
use aya::Ebpf;
use lb_common::maps::{names, FloodSettings};

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
