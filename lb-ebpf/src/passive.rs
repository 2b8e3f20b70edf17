//! Passive health (`observe = "layer4"`; the record and its arithmetic are
//! `lb_common::handshake`, shared with the reference model): watches each
//! backend's TCP handshakes, gives a SYN retransmitted on an incomplete
//! handshake to the next backend (its second chance), and keeps new flows
//! off an ejected backend until the controller has marked it down.
//!
//! A service without the `OBSERVE` flag pays one bit test per new flow and
//! nothing per established packet beyond the one that reads its entry.

use lb_common::{
    handshake::{self, HandshakeDelta},
    hash::{flow_hash, source_hash},
    maps::{backend_state, service_flags, tcp_flags, Backend, Flow, FlowKey, Scheduler, Service},
};

use crate::{
    balance::flow_clock,
    flood::Clock,
    maps::{BACKENDS, HANDSHAKES, SCHED_TABLE},
    stats,
};

/// Slots after the flow's own that a second chance looks at for a backend
/// that serves and is not ejected.
const SECOND_CHANCE_SLOTS: u32 = 8;

/// Whether `service` watches handshakes.
#[inline(always)]
pub fn observes(service: &Service) -> bool {
    service.flags & service_flags::OBSERVE != 0
}

/// Whether `tcp_flags` are a client's opening SYN (SYN without ACK; 0 for UDP).
#[inline(always)]
pub fn is_opening_syn(tcp_flags: u8) -> bool {
    tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN
}

/// The backend of a new flow opened by a SYN to an observed service:
/// `scheduled`, unless its overdue handshakes (counted as failed now) leave
/// it ejected, then the next slot's. The handshake is watched on the
/// backend chosen.
#[inline(always)]
pub fn choose_for_syn(
    service: &Service,
    flow: &FlowKey,
    scheduled: (u32, Backend),
    clock: &mut Clock,
) -> (u32, Backend) {
    let now = handshake::clock(clock.now_ns());
    let (scheduled_id, _) = scheduled;
    let mut chosen = scheduled;
    if let Some(watch) = HANDSHAKES.get_ptr_mut(scheduled_id) {
        // SAFETY: a pointer returned by a map lookup is valid for the value's
        // size during this run; other CPUs may write it too (see `lb_common::handshake`).
        let watch = unsafe { &mut *watch };
        let failed = watch.expire(now, service.handshake_timeout);
        if failed != 0 {
            stats::count_handshakes(
                scheduled_id,
                HandshakeDelta {
                    failed,
                    ..HandshakeDelta::default()
                },
            );
        }
        if watch.is_ejected(service.error_limit) {
            if let Some(next) = second_chance(service, flow, scheduled_id) {
                chosen = next;
            }
        }
    }
    watch(chosen.0, flow, now);
    chosen
}

/// A packet of an observed service on a flow whose handshake is pending,
/// its entry `entry` naming `backend_id`. A retransmitted SYN counts a
/// failed handshake and moves the flow to the next slot's backend (the
/// entry is rewritten, the handshake watched there): that backend is
/// returned. The completing ACK is counted (the caller's `mark_seen` then
/// clears the pending bit).
#[inline(always)]
pub fn on_pending(
    service: &Service,
    flow: &FlowKey,
    tcp_flags: u8,
    backend_id: u32,
    entry: *mut Flow,
    clock: &mut Clock,
) -> Option<(u32, Backend)> {
    if is_opening_syn(tcp_flags) {
        stats::count_handshakes(
            backend_id,
            HandshakeDelta {
                retransmitted: 1,
                failed: 1,
                completed: 0,
            },
        );
        if let Some(watch) = HANDSHAKES.get_ptr_mut(backend_id) {
            // SAFETY: as in `choose_for_syn`.
            unsafe { (*watch).fail(flow.src_ip, flow.src_port) };
        }
        let (next_id, next) = second_chance(service, flow, backend_id)?;
        watch(next_id, flow, handshake::clock(clock.now_ns()));
        // SAFETY: `entry` came from a lookup in this run and is valid for its size.
        unsafe {
            *entry = Flow {
                backend_id: next_id,
                last_seen: Flow::opened(flow_clock()),
            }
        };
        return Some((next_id, next));
    }
    if tcp_flags & (tcp_flags::SYN | tcp_flags::ACK | tcp_flags::RST) == tcp_flags::ACK {
        stats::count_handshakes(
            backend_id,
            HandshakeDelta {
                completed: 1,
                ..HandshakeDelta::default()
            },
        );
        if let Some(watch) = HANDSHAKES.get_ptr_mut(backend_id) {
            // SAFETY: as in `choose_for_syn`. Written only when it changes,
            // so the record's cache line stays shared between CPUs.
            let mut updated = unsafe { *watch };
            if updated.complete(flow.src_ip, flow.src_port) {
                // SAFETY: as above.
                unsafe { *watch = updated };
            }
        }
    }
    None
}

/// A client's opening SYN on `flow`, whose entry `stale` names a backend
/// that no longer serves it (it is scheduled afresh): if that entry's
/// handshake was pending, the SYN is a retransmission, counted (with a
/// failure) against the backend that did not answer.
#[inline(always)]
pub fn on_stale_syn(flow: &FlowKey, stale: *mut Flow) {
    // SAFETY: `stale` came from a lookup in this run and is valid for its size.
    let entry = unsafe { *stale };
    if !entry.handshake_pending() {
        return;
    }
    stats::count_handshakes(
        entry.backend_id,
        HandshakeDelta {
            retransmitted: 1,
            failed: 1,
            completed: 0,
        },
    );
    if let Some(watch) = HANDSHAKES.get_ptr_mut(entry.backend_id) {
        // SAFETY: as in `choose_for_syn`.
        unsafe { (*watch).fail(flow.src_ip, flow.src_port) };
    }
}

/// Watches the handshake of `flow` opened at `now` on `backend_id`.
#[inline(always)]
fn watch(backend_id: u32, flow: &FlowKey, now: u32) {
    if let Some(watch) = HANDSHAKES.get_ptr_mut(backend_id) {
        // SAFETY: as in `choose_for_syn`.
        unsafe { (*watch).watch(flow.src_ip, flow.src_port, now) };
    }
}

/// The second chance of `flow`: the backend of the first of the
/// [`SECOND_CHANCE_SLOTS`] slots after the flow's own (by its hash, the
/// client's for `source`) that is not `avoid`, is up and is not ejected.
#[inline(always)]
fn second_chance(service: &Service, flow: &FlowKey, avoid: u32) -> Option<(u32, Backend)> {
    if service.table_len == 0 {
        return None;
    }
    let hash = if service.scheduler == Scheduler::Source as u8 {
        source_hash(flow)
    } else {
        flow_hash(flow)
    };
    let start = hash % service.table_len;
    for step in 1..=SECOND_CHANCE_SLOTS {
        let slot = start.wrapping_add(step) % service.table_len;
        let Some(&backend_id) = SCHED_TABLE.get(service.table_base.wrapping_add(slot)) else {
            continue;
        };
        if backend_id == avoid {
            continue;
        }
        let Some(backend) = BACKENDS.get(backend_id) else {
            continue;
        };
        let ejected = HANDSHAKES
            .get(backend_id)
            .is_some_and(|watch| watch.is_ejected(service.error_limit));
        if backend.state == backend_state::UP && !ejected {
            return Some((backend_id, *backend));
        }
    }
    None
}
