//! The data path's global settings (`SETTINGS`), written once at load: the
//! flow-table insert guard's limit and what to do with ICMP echo requests
//! to a VIP. Each service's rate limit is a source policy (`policy`).

use aya::maps::Array;
use aya::Ebpf;
use lb_common::maps::{names, Settings};

use super::error::{map_error, DataplaneError};
use super::LoadOptions;

/// Writes `SETTINGS` from `options`.
pub(super) fn write_settings(ebpf: &mut Ebpf, options: &LoadOptions) -> Result<(), DataplaneError> {
    let map = ebpf
        .map_mut(names::SETTINGS)
        .ok_or(DataplaneError::MissingMap(names::SETTINGS))?;
    let mut settings: Array<_, Settings> =
        Array::try_from(map).map_err(map_error(names::SETTINGS))?;
    let value = Settings {
        flow_insert_limit_per_cpu: options.flow_insert_limit_per_cpu,
        vip_icmp_echo: options.vip_icmp_echo.map_value(),
        _pad: [0; 3],
    };
    settings
        .set(0, value, 0)
        .map_err(map_error(names::SETTINGS))
}
