//! Per-CPU counters: per XDP action, per pass/drop reason, per service and per
//! backend, and each backend's handshakes.

use aya_ebpf::maps::PerCpuArray;
use lb_common::{
    handshake::HandshakeDelta,
    maps::{Counters, Reason},
};

use crate::{
    balance::Verdict,
    maps::{ACTION_STATS, HANDSHAKE_STATS, REASON_STATS},
};

/// Counts a packet under its action and, when passed or dropped, its reason.
#[inline(always)]
pub fn count_verdict(verdict: &Verdict) {
    increment(&ACTION_STATS, verdict.action());
    if let Some(reason) = verdict.reason() {
        increment(&REASON_STATS, reason as u32);
    }
}

/// Counts `reason` for a packet that is forwarded all the same
/// (`insert_skipped`).
#[inline(always)]
pub fn count_reason(reason: Reason) {
    increment(&REASON_STATS, reason as u32);
}

/// Adds one forwarded packet of `bytes` bytes (and a new flow when `new_flow`)
/// to entry `index` of a service or backend counter map.
#[inline(always)]
pub fn count_traffic(map: &PerCpuArray<Counters>, index: u32, bytes: u64, new_flow: bool) {
    let Some(counters) = map.get_ptr_mut(index) else {
        return;
    };
    // SAFETY: a per-CPU map value, valid during this run and used by this CPU only.
    let counters = unsafe { &mut *counters };
    counters.packets += 1;
    counters.bytes += bytes;
    counters.new_flows += u64::from(new_flow);
}

/// Adds what one packet counted to backend `backend_id`'s handshake counters.
#[inline(always)]
pub fn count_handshakes(backend_id: u32, delta: HandshakeDelta) {
    let Some(counters) = HANDSHAKE_STATS.get_ptr_mut(backend_id) else {
        return;
    };
    // SAFETY: a per-CPU map value, valid during this run and used by this CPU only.
    let counters = unsafe { &mut *counters };
    *counters = counters.plus(delta);
}

#[inline(always)]
fn increment(map: &PerCpuArray<u64>, index: u32) {
    if let Some(counter) = map.get_ptr_mut(index) {
        // SAFETY: a per-CPU map value, valid during this run and used by this CPU only.
        unsafe { *counter += 1 };
    }
}
