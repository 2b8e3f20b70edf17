//! The maps the controller writes (`BACKENDS`, `SCHED_TABLE`, `SERVICES`,
//! `VIPS`, `RATE_LIMITS`, `ALLOW_LISTS`, and `HANDSHAKES` when it clears a
//! record) as the kernel holds them: each
//! [`EntryWriter`] call is one `bpf_map_update_elem` or
//! `bpf_map_delete_elem`.

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap, MapData, MapError, PerCpuArray, PerCpuValues};
use aya::util::nr_cpus;
use lb_common::handshake::HandshakeWatch;
use lb_common::maps::{
    names, AllowedSource, Backend, Endpoint, RateLimit, Service, ServiceKey, SourcePrefix, ALLOWED,
};
use lb_common::ring::cursor_start;

use super::error::{map_error, DataplaneError};
use super::map_writer::EntryWriter;

/// The written maps of a loaded data path.
pub(super) struct KernelMaps {
    pub(super) services: HashMap<MapData, ServiceKey, Service>,
    pub(super) vips: HashMap<MapData, u32, u32>,
    pub(super) backends: Array<MapData, Backend>,
    pub(super) sched_table: Array<MapData, u32>,
    pub(super) rate_limits: Array<MapData, RateLimit>,
    pub(super) allow_lists: LpmTrie<MapData, AllowedSource, u8>,
    pub(super) rr_cursor: PerCpuArray<MapData, u32>,
    pub(super) handshakes: Array<MapData, HandshakeWatch>,
    pub(super) nat_reverse: HashMap<MapData, Endpoint, Endpoint>,
    pub(super) max_backends: u32,
}

impl KernelMaps {
    /// `HANDSHAKES[id]`.
    pub(super) fn read_handshakes(&self, id: u32) -> Result<HandshakeWatch, DataplaneError> {
        self.handshakes
            .get(&id, 0)
            .map_err(map_error(names::HANDSHAKES))
    }
}

/// The `ALLOW_LISTS` key of `prefix` in service `id`'s list.
fn allow_key(id: u32, prefix: SourcePrefix) -> Key<AllowedSource> {
    let (prefix_len, data) = prefix.allow_key(id);
    Key::new(prefix_len, data)
}

impl EntryWriter for KernelMaps {
    fn write_backend(&mut self, id: u32, backend: &Backend) -> Result<(), DataplaneError> {
        if id >= self.max_backends {
            return Err(DataplaneError::BackendIdOutOfRange {
                id,
                max: self.max_backends,
            });
        }
        self.backends
            .set(id, backend, 0)
            .map_err(map_error(names::BACKENDS))
    }

    fn write_handshakes(&mut self, id: u32, watch: &HandshakeWatch) -> Result<(), DataplaneError> {
        self.handshakes
            .set(id, watch, 0)
            .map_err(map_error(names::HANDSHAKES))
    }

    fn write_slot(&mut self, index: u32, backend_id: u32) -> Result<(), DataplaneError> {
        self.sched_table
            .set(index, backend_id, 0)
            .map_err(map_error(names::SCHED_TABLE))
    }

    fn write_service(&mut self, key: &ServiceKey, service: &Service) -> Result<(), DataplaneError> {
        self.services
            .insert(key, service, 0)
            .map_err(map_error(names::SERVICES))
    }

    fn delete_service(&mut self, key: &ServiceKey) -> Result<(), DataplaneError> {
        absent_is_deleted(self.services.remove(key)).map_err(map_error(names::SERVICES))
    }

    fn write_vip(&mut self, vip: u32, services: u32) -> Result<(), DataplaneError> {
        self.vips
            .insert(vip, services, 0)
            .map_err(map_error(names::VIPS))
    }

    fn delete_vip(&mut self, vip: u32) -> Result<(), DataplaneError> {
        absent_is_deleted(self.vips.remove(&vip)).map_err(map_error(names::VIPS))
    }

    fn write_nat_reverse(
        &mut self,
        backend: &Endpoint,
        service: &Endpoint,
    ) -> Result<(), DataplaneError> {
        self.nat_reverse
            .insert(backend, service, 0)
            .map_err(map_error(names::NAT_REVERSE))
    }

    fn delete_nat_reverse(&mut self, backend: &Endpoint) -> Result<(), DataplaneError> {
        absent_is_deleted(self.nat_reverse.remove(backend)).map_err(map_error(names::NAT_REVERSE))
    }

    fn write_rate_limit(&mut self, id: u32, limit: RateLimit) -> Result<(), DataplaneError> {
        self.rate_limits
            .set(id, limit, 0)
            .map_err(map_error(names::RATE_LIMITS))
    }

    fn write_allowed(&mut self, id: u32, prefix: SourcePrefix) -> Result<(), DataplaneError> {
        self.allow_lists
            .insert(&allow_key(id, prefix), ALLOWED, 0)
            .map_err(map_error(names::ALLOW_LISTS))
    }

    fn delete_allowed(&mut self, id: u32, prefix: SourcePrefix) -> Result<(), DataplaneError> {
        absent_is_deleted(self.allow_lists.remove(&allow_key(id, prefix)))
            .map_err(map_error(names::ALLOW_LISTS))
    }

    fn write_cursors(&mut self, id: u32, ring_len: u32) -> Result<(), DataplaneError> {
        let cpus = nr_cpus().map_err(|(_, source)| DataplaneError::Cpus(source))?;
        let starts: Vec<u32> = (0..cpus)
            .map(|cpu| cursor_start(cpu, cpus, ring_len))
            .collect();
        let values = PerCpuValues::try_from(starts).map_err(DataplaneError::Cpus)?;
        self.rr_cursor
            .set(id, values, 0)
            .map_err(map_error(names::RR_CURSOR))
    }
}

/// A delete of an absent entry (`ENOENT`) as a success.
fn absent_is_deleted(result: Result<(), MapError>) -> Result<(), MapError> {
    match result {
        Err(MapError::SyscallError(error))
            if error.io_error.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(())
        }
        other => other,
    }
}
