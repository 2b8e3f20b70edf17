//! Passive health, like `lb-ebpf/src/passive.rs`: the handshake watch on a
//! new flow's SYN, the second chance of a retransmitted SYN, and the
//! completion of a pending handshake. The record arithmetic is
//! [`crate::handshake`], shared with the program.
//!
//! The clock is the packet's [`Ingress::now_ns`]; the program reads
//! `bpf_ktime_get_ns`, so a comparison against the program holds only for
//! timeouts that do not depend on it (0: always overdue, `u32::MAX`: never).

use super::contents::MapContents;
use super::decision::{FlowChange, HandshakeEffect, Ingress};
use crate::handshake::{self, HandshakeDelta, HandshakeWatch};
use crate::hash::{flow_hash, source_hash};
use crate::maps::{
    backend_state, service_flags, tcp_flags, Backend, Flow, FlowKey, Scheduler, Service,
};

/// Slots after the flow's own that a second chance looks at.
const SECOND_CHANCE_SLOTS: u32 = 8;
/// What a retransmitted SYN counts against the backend that did not answer.
const RETRANSMITTED: HandshakeDelta = HandshakeDelta {
    retransmitted: 1,
    failed: 1,
    completed: 0,
};

/// Whether `service` watches handshakes.
pub(super) fn observes(service: &Service) -> bool {
    service.flags & service_flags::OBSERVE != 0
}

/// Whether `flags` are a client's opening SYN (SYN without ACK).
pub(super) fn is_opening_syn(flags: u8) -> bool {
    flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN
}

/// The handshake records as this packet leaves them: the maps' values with
/// the packet's own writes on top.
struct Records<'a> {
    maps: &'a MapContents,
    effect: HandshakeEffect,
}

impl<'a> Records<'a> {
    fn new(maps: &'a MapContents) -> Self {
        Self {
            maps,
            effect: HandshakeEffect::default(),
        }
    }

    fn get(&self, id: u32) -> Option<HandshakeWatch> {
        self.effect
            .watches
            .iter()
            .rev()
            .find(|(written, _)| *written == id)
            .map(|(_, watch)| *watch)
            .or_else(|| self.maps.handshakes(id))
    }

    fn put(&mut self, id: u32, watch: HandshakeWatch) {
        self.effect.watches.push((id, watch));
    }

    /// Watches the handshake of `flow` opened at `now` on `backend_id`.
    fn watch(&mut self, backend_id: u32, flow: &FlowKey, now: u32) {
        if let Some(mut watch) = self.get(backend_id) {
            watch.watch(flow.src_ip, flow.src_port, now);
            self.put(backend_id, watch);
        }
    }
}

/// The backend of a new flow opened by a SYN to an observed service, and
/// what choosing it did to passive health (see the program's
/// `choose_for_syn`); `stale` is the flow's entry naming a backend that no
/// longer serves it, if any (see the program's `on_stale_syn`).
pub(super) fn choose_for_syn(
    service: &Service,
    flow: &FlowKey,
    scheduled: (u32, Backend),
    stale: Option<Flow>,
    ingress: &Ingress,
    maps: &MapContents,
) -> ((u32, Backend), HandshakeEffect) {
    let now = handshake::clock(ingress.now_ns);
    let (scheduled_id, _) = scheduled;
    let mut records = Records::new(maps);
    if let Some(entry) = stale.filter(Flow::handshake_pending) {
        records
            .effect
            .counted
            .push((entry.backend_id, RETRANSMITTED));
        if let Some(mut watch) = records.get(entry.backend_id) {
            watch.fail(flow.src_ip, flow.src_port);
            records.put(entry.backend_id, watch);
        }
    }
    let mut chosen = scheduled;
    if let Some(mut watch) = records.get(scheduled_id) {
        let failed = watch.expire(now, service.handshake_timeout);
        if failed != 0 {
            records.effect.counted.push((
                scheduled_id,
                HandshakeDelta {
                    failed,
                    ..HandshakeDelta::default()
                },
            ));
        }
        records.put(scheduled_id, watch);
        if watch.is_ejected(service.error_limit) {
            if let Some(next) = second_chance(service, flow, scheduled_id, &records) {
                chosen = next;
            }
        }
    }
    records.watch(chosen.0, flow, now);
    (chosen, records.effect)
}

/// A packet of an observed service on `key`'s flow, whose `entry` (naming
/// `backend_id`) has its handshake pending: a retransmitted SYN moves it
/// to the next slot's backend (returned with the entry's replacement), a
/// completing ACK is counted (see the program's `on_pending`).
pub(super) fn on_pending(
    service: &Service,
    key: &FlowKey,
    flags: u8,
    (backend_id, entry): (u32, Flow),
    ingress: &Ingress,
    maps: &MapContents,
) -> (Option<(u32, Backend, FlowChange)>, HandshakeEffect) {
    let mut records = Records::new(maps);
    if is_opening_syn(flags) {
        records.effect.counted.push((backend_id, RETRANSMITTED));
        if let Some(mut watch) = records.get(backend_id) {
            watch.fail(key.src_ip, key.src_port);
            records.put(backend_id, watch);
        }
        let Some((next_id, next)) = second_chance(service, key, backend_id, &records) else {
            return (None, records.effect);
        };
        records.watch(next_id, key, handshake::clock(ingress.now_ns));
        let replaced = FlowChange::Replaced {
            key: *key,
            flow: Flow {
                backend_id: next_id,
                last_seen: Flow::opened(maps.flow_clock()),
            },
            previous: entry,
        };
        return (Some((next_id, next, replaced)), records.effect);
    }
    if flags & (tcp_flags::SYN | tcp_flags::ACK | tcp_flags::RST) == tcp_flags::ACK {
        records.effect.counted.push((
            backend_id,
            HandshakeDelta {
                completed: 1,
                ..HandshakeDelta::default()
            },
        ));
        if let Some(mut watch) = records.get(backend_id) {
            if watch.complete(key.src_ip, key.src_port) {
                records.put(backend_id, watch);
            }
        }
    }
    (None, records.effect)
}

/// The first of the [`SECOND_CHANCE_SLOTS`] slots after the flow's own
/// whose backend is not `avoid`, is up and is not ejected.
fn second_chance(
    service: &Service,
    flow: &FlowKey,
    avoid: u32,
    records: &Records<'_>,
) -> Option<(u32, Backend)> {
    if service.table_len == 0 {
        return None;
    }
    let hash = if service.scheduler == Scheduler::Source as u8 {
        source_hash(flow)
    } else {
        flow_hash(flow)
    };
    let start = hash % service.table_len;
    (1..=SECOND_CHANCE_SLOTS).find_map(|step| {
        let slot = start.wrapping_add(step) % service.table_len;
        let backend_id = records
            .maps
            .table_slot(service.table_base.wrapping_add(slot))?;
        if backend_id == avoid {
            return None;
        }
        let backend = records.maps.backend(backend_id)?;
        let ejected = records
            .get(backend_id)
            .is_some_and(|watch| watch.is_ejected(service.error_limit));
        (backend.state == backend_state::UP && !ejected).then_some((backend_id, backend))
    })
}
