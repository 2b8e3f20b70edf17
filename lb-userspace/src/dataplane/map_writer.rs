//! The fence between the controller and the data path's maps, in two layers
//! (as aya fences its syscalls in `sys/` and tests the code above with fakes):
//!
//! - [`MapWriter`]: what the controller asks of the maps: write a backend,
//!   publish a service's table (double-buffered), remove a service, set a
//!   service's source policies. The aya [`super::Dataplane`] and the
//!   in-memory fake implement it with the same code
//!   ([`super::tables::ServiceTables`], [`super::policy::SourcePolicies`]).
//! - [`EntryWriter`]: one map entry per call, the only part that differs
//!   between the kernel's maps and the fake's.

use std::collections::BTreeSet;

use lb_common::handshake::{HandshakeWatch, Observe};
use lb_common::maps::{Backend, Endpoint, RateLimit, Scheduler, Service, ServiceKey, SourcePrefix};

use super::error::DataplaneError;

/// A `nat` service's reverse translation: a reply from any of `backends`
/// leaves as `service`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatReverse {
    /// The VIP, port and protocol (network order).
    pub service: Endpoint,
    /// Each backend's address, port and protocol (network order).
    pub backends: BTreeSet<Endpoint>,
}

/// Writes the maps the controller owns: `BACKENDS`, `SCHED_TABLE`,
/// `SERVICES`, `VIPS`, `RATE_LIMITS` and `ALLOW_LISTS`, and reads and
/// clears the backends' `HANDSHAKES` records (which the data path writes).
///
/// After an error, what the maps hold is what the successful writes before
/// it left there: a call can be repeated, and the repeat completes it.
pub trait MapWriter {
    /// Writes backend `id`. Its `state` decides whether established flows
    /// stay on it (up, draining) and whether tables may name it (up).
    fn set_backend(&mut self, id: u32, backend: &Backend) -> Result<(), DataplaneError>;

    /// Publishes service `key` with id `id`, `scheduler` and its table:
    /// backend ids of the Maglev table (`slots[hash % len]`) or of the
    /// weight-expanded round-robin ring. An empty table means "no serving
    /// backend": new flows are passed to the kernel.
    ///
    /// The table is written into the half of the service's region that the
    /// data path is not reading, then the service is flipped to it with one
    /// update of its `SERVICES` entry, so no packet sees a half-written
    /// table; the flip happens only once every slot is written. Only the
    /// slots that differ from what that half held before are written;
    /// returns their number.
    fn set_service(
        &mut self,
        key: ServiceKey,
        id: u32,
        scheduler: Scheduler,
        slots: &[u32],
    ) -> Result<usize, DataplaneError>;

    /// Removes service `key`; its VIP stops being recognised once no service
    /// uses it. Established flows are not removed: set their backends down.
    fn remove_service(&mut self, key: &ServiceKey) -> Result<(), DataplaneError>;

    /// Sets service `id`'s per-source new-flow rate limit
    /// (`RateLimit::default()`: none). A policy belongs to the id: it
    /// applies to the service published under it, now or later, until it
    /// is set again. The service's `RATE_LIMIT` flag is set once the limit
    /// is written, and cleared before the limit is.
    fn set_rate_limit(&mut self, id: u32, limit: RateLimit) -> Result<(), DataplaneError>;

    /// Sets service `id`'s source allow-list: `None`, every source;
    /// `Some(prefixes)`, only sources in one of them (an empty list: no
    /// source). Belongs to the id, like [`MapWriter::set_rate_limit`]. New
    /// prefixes are written before the `ALLOW_LIST` flag is set and old ones
    /// deleted after it changed, so while the list changes a source that
    /// both lists allow is never dropped.
    fn set_allow_list(
        &mut self,
        id: u32,
        allow: Option<&[SourcePrefix]>,
    ) -> Result<(), DataplaneError>;

    /// Sets service `id`'s passive health (`None`: off): its settings and
    /// its `OBSERVE` flag, in the live `SERVICES` entry and in every later
    /// publication. Belongs to the id, like [`MapWriter::set_rate_limit`].
    fn set_observe(&mut self, id: u32, observe: Option<Observe>) -> Result<(), DataplaneError>;

    /// Sets service `id`'s forwarding by NAT (`None`: `dsr-l2`): the
    /// `NAT_REVERSE` entries of its backends and its `NAT` flag. Belongs
    /// to the id, like [`MapWriter::set_rate_limit`]; see
    /// [`super::nat`] for the order of the writes.
    fn set_nat(&mut self, id: u32, nat: Option<&NatReverse>) -> Result<(), DataplaneError>;

    /// Backend `id`'s handshake record, as the data path left it.
    fn handshakes(&self, id: u32) -> Result<HandshakeWatch, DataplaneError>;

    /// Clears backend `id`'s handshake record (no failure in a row, nothing
    /// watched): done before it takes new flows again, so that an ejection
    /// the controller has acted on does not outlive it.
    fn clear_handshakes(&mut self, id: u32) -> Result<(), DataplaneError>;
}

/// One update of one map entry per call. A failed call leaves the entry as
/// it was (a BPF map update is atomic); deleting an absent entry succeeds, so
/// a delete can be retried whatever the previous attempt did.
pub(super) trait EntryWriter {
    /// `BACKENDS[id] = backend`.
    fn write_backend(&mut self, id: u32, backend: &Backend) -> Result<(), DataplaneError>;
    /// `HANDSHAKES[id] = watch`.
    fn write_handshakes(&mut self, id: u32, watch: &HandshakeWatch) -> Result<(), DataplaneError>;
    /// `SCHED_TABLE[index] = backend_id`.
    fn write_slot(&mut self, index: u32, backend_id: u32) -> Result<(), DataplaneError>;
    /// `SERVICES[key] = service`.
    fn write_service(&mut self, key: &ServiceKey, service: &Service) -> Result<(), DataplaneError>;
    /// Deletes `SERVICES[key]`.
    fn delete_service(&mut self, key: &ServiceKey) -> Result<(), DataplaneError>;
    /// `VIPS[vip] = services` (the number of services on that address).
    fn write_vip(&mut self, vip: u32, services: u32) -> Result<(), DataplaneError>;
    /// Deletes `VIPS[vip]`.
    fn delete_vip(&mut self, vip: u32) -> Result<(), DataplaneError>;
    /// `RATE_LIMITS[id] = limit`.
    fn write_rate_limit(&mut self, id: u32, limit: RateLimit) -> Result<(), DataplaneError>;
    /// Adds `prefix` to service `id`'s entries in `ALLOW_LISTS`.
    fn write_allowed(&mut self, id: u32, prefix: SourcePrefix) -> Result<(), DataplaneError>;
    /// Deletes `prefix` from service `id`'s entries in `ALLOW_LISTS`.
    fn delete_allowed(&mut self, id: u32, prefix: SourcePrefix) -> Result<(), DataplaneError>;
    /// `NAT_REVERSE[backend] = service`.
    fn write_nat_reverse(
        &mut self,
        backend: &Endpoint,
        service: &Endpoint,
    ) -> Result<(), DataplaneError>;
    /// Deletes `NAT_REVERSE[backend]`.
    fn delete_nat_reverse(&mut self, backend: &Endpoint) -> Result<(), DataplaneError>;
    /// `RR_CURSOR[id]` on every CPU at its [`lb_common::ring::cursor_start`]
    /// on a ring of `ring_len` slots.
    fn write_cursors(&mut self, id: u32, ring_len: u32) -> Result<(), DataplaneError>;
}
