//! The data path's per-CPU counters, read-only: per service, per backend,
//! per XDP action and per pass/drop reason, and each backend's handshakes,
//! each summed over CPUs.
//!
//! [`CounterMaps`] is shared (`Arc`) between the controller's owner and the
//! control API, which reads counters when a request asks for them, so they
//! are always current and the controller never waits on a status request.

use aya::maps::{MapData, PerCpuArray};
use lb_common::handshake::HandshakeCounters;
use lb_common::maps::{names, Counters, Reason, XDP_ACTION_COUNT};

use super::error::{map_error, DataplaneError};

/// Reads the data path's counters: the traffic of services and backends by
/// id, and the packets per XDP action and per pass/drop reason.
pub trait CounterReader: Send + Sync {
    /// Traffic of service `id`, summed over CPUs.
    fn service_counters(&self, id: u32) -> Result<Counters, DataplaneError>;
    /// Traffic of backend `id`, summed over CPUs.
    fn backend_counters(&self, id: u32) -> Result<Counters, DataplaneError>;
    /// Packets per XDP action (index = action: aborted, drop, pass, tx,
    /// redirect, named by `XDP_ACTION_NAMES`), summed over CPUs.
    fn action_counters(&self) -> Result<[u64; XDP_ACTION_COUNT as usize], DataplaneError>;
    /// Passed or dropped packets per [`Reason`] (index = reason), summed over CPUs.
    fn reason_counters(&self) -> Result<[u64; Reason::COUNT as usize], DataplaneError>;
    /// Handshakes of backend `id` (passive health), summed over CPUs.
    fn handshake_counters(&self, id: u32) -> Result<HandshakeCounters, DataplaneError>;
}

/// The counter maps of a loaded data path.
pub struct CounterMaps {
    pub(super) service_stats: PerCpuArray<MapData, Counters>,
    pub(super) backend_stats: PerCpuArray<MapData, Counters>,
    pub(super) action_stats: PerCpuArray<MapData, u64>,
    pub(super) reason_stats: PerCpuArray<MapData, u64>,
    pub(super) handshake_stats: PerCpuArray<MapData, HandshakeCounters>,
}

impl CounterReader for CounterMaps {
    fn service_counters(&self, id: u32) -> Result<Counters, DataplaneError> {
        sum_counters(&self.service_stats, names::SERVICE_STATS, id)
    }

    fn backend_counters(&self, id: u32) -> Result<Counters, DataplaneError> {
        sum_counters(&self.backend_stats, names::BACKEND_STATS, id)
    }

    fn action_counters(&self) -> Result<[u64; XDP_ACTION_COUNT as usize], DataplaneError> {
        sum_all(&self.action_stats, names::ACTION_STATS)
    }

    fn reason_counters(&self) -> Result<[u64; Reason::COUNT as usize], DataplaneError> {
        sum_all(&self.reason_stats, names::REASON_STATS)
    }

    fn handshake_counters(&self, id: u32) -> Result<HandshakeCounters, DataplaneError> {
        sum_entry(
            &self.handshake_stats,
            names::HANDSHAKE_STATS,
            id,
            |sum, cpu| HandshakeCounters {
                completed: sum.completed + cpu.completed,
                retransmitted: sum.retransmitted + cpu.retransmitted,
                failed: sum.failed + cpu.failed,
            },
        )
    }
}

impl std::fmt::Debug for CounterMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CounterMaps").finish_non_exhaustive()
    }
}

/// Entry `index` of a per-CPU traffic counter map, summed over CPUs.
fn sum_counters(
    map: &PerCpuArray<MapData, Counters>,
    name: &'static str,
    index: u32,
) -> Result<Counters, DataplaneError> {
    sum_entry(map, name, index, |sum, cpu| Counters {
        packets: sum.packets + cpu.packets,
        bytes: sum.bytes + cpu.bytes,
        new_flows: sum.new_flows + cpu.new_flows,
    })
}

/// Entry `index` of per-CPU map `name`, its CPUs' values added up by `add`.
fn sum_entry<T: aya::Pod + Default>(
    map: &PerCpuArray<MapData, T>,
    name: &'static str,
    index: u32,
    add: impl Fn(T, &T) -> T,
) -> Result<T, DataplaneError> {
    let per_cpu = map.get(&index, 0).map_err(map_error(name))?;
    Ok(per_cpu.iter().fold(T::default(), add))
}

/// Every entry of a per-CPU `u64` map, each summed over CPUs.
fn sum_all<const N: usize>(
    map: &PerCpuArray<MapData, u64>,
    name: &'static str,
) -> Result<[u64; N], DataplaneError> {
    let mut sums = [0u64; N];
    for (index, sum) in (0u32..).zip(sums.iter_mut()) {
        *sum = map.get(&index, 0).map_err(map_error(name))?.iter().sum();
    }
    Ok(sums)
}
