//! The flow table seen from userspace: the flow clock the data path copies
//! into each entry as its last-seen mark (`FLOW_CLOCK`), and reads of the
//! entries (`FLOWS`) for the census of active flows.
//!
//! [`FlowTable`] is shared (`Arc`) between the data path's owner and the
//! task that ticks the clock and counts active flows, so that neither waits
//! for the other.

use std::collections::BTreeMap;
use std::sync::Mutex;

use aya::maps::{Array, HashMap, MapData};
use lb_common::maps::{names, Flow, FlowKey};
use rustix::time::{clock_gettime, ClockId};

use super::error::{map_error, DataplaneError};

/// The flow table of a loaded data path, and its clock.
pub struct FlowTable {
    pub(super) flows: HashMap<MapData, FlowKey, Flow>,
    pub(super) clock: Mutex<Array<MapData, u32>>,
}

/// Active flows by backend id, as one walk of the flow table found them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActiveFlows {
    /// Active flows per backend id (ids without one are absent).
    pub by_backend: BTreeMap<u32, u64>,
    /// Entries in the table, active or not.
    pub entries: u64,
}

impl ActiveFlows {
    /// Counts `flows` active at clock `now` (see [`Flow::is_active`]).
    pub fn count(flows: impl IntoIterator<Item = Flow>, now: u32, idle_timeout: u32) -> Self {
        let mut active = ActiveFlows::default();
        for flow in flows {
            active.entries += 1;
            if flow.is_active(now, idle_timeout) {
                *active.by_backend.entry(flow.backend_id).or_default() += 1;
            }
        }
        active
    }
}

/// The flow clock now: seconds of `CLOCK_MONOTONIC` plus one (never
/// [`Flow::CLOSED`]). System-wide, so a restarted `lb` continues the clock
/// of the pinned flow table it takes over.
pub fn clock_now() -> u32 {
    let now = clock_gettime(ClockId::Monotonic);
    // Wraps after 136 years of uptime; the marks' comparisons wrap with it.
    (now.tv_sec as u32).wrapping_add(1).max(Flow::CLOSED + 1)
}

impl FlowTable {
    /// Sets the flow clock to [`clock_now`]; returns the time set.
    pub fn tick(&self) -> Result<u32, DataplaneError> {
        let now = clock_now();
        let mut clock = self
            .clock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        clock.set(0, now, 0).map_err(map_error(names::FLOW_CLOCK))?;
        Ok(now)
    }

    /// Walks the table and counts the flows active at clock `now`: one
    /// lookup per entry (O(entries) system calls). Entries that vanish
    /// during the walk (evicted by the LRU) are skipped.
    pub fn active_flows(&self, now: u32, idle_timeout: u32) -> ActiveFlows {
        ActiveFlows::count(
            self.flows
                .iter()
                .filter_map(|entry| entry.ok().map(|(_, flow)| flow)),
            now,
            idle_timeout,
        )
    }

    /// Number of entries in the table. Walks the keys: O(entries) system calls.
    pub fn entries(&self) -> usize {
        self.flows.keys().filter(Result::is_ok).count()
    }
}

impl std::fmt::Debug for FlowTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowTable").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_flows_seen_within_the_idle_timeout_and_not_closed_are_active() {
        let flow = |backend_id, last_seen| Flow {
            backend_id,
            last_seen,
        };
        let active = ActiveFlows::count(
            [
                flow(1, 100),
                flow(1, 41),
                flow(1, 40),
                flow(2, Flow::CLOSED),
                flow(3, 99),
            ],
            100,
            60,
        );
        assert_eq!(active.entries, 5);
        assert_eq!(active.by_backend, BTreeMap::from([(1, 2), (3, 1)]));
    }
}
