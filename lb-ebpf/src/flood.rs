//! Flood protection, on the new-flow side only (an established flow never
//! reaches it): the per-source new-flow rate limit and the flow-table insert
//! guard. The arithmetic is `lb_common::maps::{TokenBucket, InsertWindow}`,
//! shared with the reference model.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use lb_common::maps::{service_flags, Flow, FlowKey, Reason, Service, SourceKey, TokenBucket};

use crate::{
    maps::{FLOWS, INSERT_WINDOW, RATE_LIMITS, SETTINGS, SOURCE_BUCKETS},
    stats,
};

/// The packet's clock: `bpf_ktime_get_ns` read when a guard first needs it,
/// at most once per packet (a helper call costs as much as the rest of a
/// guard).
pub struct Clock {
    now_ns: Option<u64>,
}

impl Clock {
    /// Not read yet.
    #[inline(always)]
    pub const fn new() -> Self {
        Self { now_ns: None }
    }

    /// The packet's time, read now if not yet.
    #[inline(always)]
    pub fn now_ns(&mut self) -> u64 {
        match self.now_ns {
            Some(now_ns) => now_ns,
            None => {
                // SAFETY: a helper call without arguments.
                let now_ns = unsafe { bpf_ktime_get_ns() };
                self.now_ns = Some(now_ns);
                now_ns
            }
        }
    }
}

/// Whether a new flow of `flow` to `service` is over its source's token
/// bucket (and must be dropped). Takes a token when it is not. A service
/// without the `RATE_LIMIT` flag pays one bit test: no map, no clock.
#[inline(always)]
pub fn over_rate_limit(service: &Service, flow: &FlowKey, clock: &mut Clock) -> bool {
    if service.flags & service_flags::RATE_LIMIT == 0 {
        return false;
    }
    let Some(limit) = RATE_LIMITS.get(service.id) else {
        return false;
    };
    if limit.refill_interval_ns == 0 {
        return false;
    }
    let key = SourceKey {
        service_id: service.id,
        src_ip: flow.src_ip,
    };
    let entry = SOURCE_BUCKETS.get_ptr_mut(key);
    // SAFETY: a pointer returned by a map lookup is valid for the value's size during this run.
    let bucket = entry.map(|bucket| unsafe { *bucket });
    let Some(taken) = TokenBucket::take(bucket, *limit, clock.now_ns()) else {
        return true;
    };
    match entry {
        // A known source's bucket is written in place: no second hash
        // lookup, no LRU update (racing CPUs may lose a token either way).
        // SAFETY: as above; the value is plain data, written whole.
        Some(bucket) => unsafe { *bucket = taken },
        None => {
            // An LRU insert only fails on allocation failure; the flow then
            // goes through with the source's bucket unrecorded.
            let _ = SOURCE_BUCKETS.insert(key, taken, 0);
        }
    }
    false
}

/// Records `flow` with `entry` in the flow table, unless this CPU's
/// inserts this second reached `flow_insert_limit_per_cpu`: then the flow is
/// forwarded without an entry and counted as `insert_skipped`.
#[inline(always)]
pub fn record_flow(flow: &FlowKey, entry: Flow, clock: &mut Clock) {
    if admit_insert(clock) {
        // An LRU insert only fails on allocation failure; the packet is
        // still forwarded and the next one is scheduled again.
        let _ = FLOWS.insert(flow, entry, 0);
    } else {
        stats::count_reason(Reason::InsertSkipped);
    }
}

/// Whether this CPU may insert one more flow now, counting it if so.
#[inline(always)]
fn admit_insert(clock: &mut Clock) -> bool {
    let limit = match SETTINGS.get(0) {
        Some(settings) if settings.flow_insert_limit_per_cpu != 0 => {
            settings.flow_insert_limit_per_cpu
        }
        _ => return true,
    };
    let Some(window) = INSERT_WINDOW.get_ptr_mut(0) else {
        return true;
    };
    // SAFETY: a per-CPU map value, valid during this run and used by this CPU only.
    let window = unsafe { &mut *window };
    // The clock is read only once the window is full (see `InsertWindow::admit`).
    let (admitted, next) = window.admit(limit, || clock.now_ns());
    *window = next;
    admitted
}
