//! In-memory stand-ins for the data path, for tests without root:
//! [`FakeMaps`], a [`MapWriter`] over plain collections that runs the same
//! publication code as the kernel's maps, logs every write and fails the
//! writes it is told to; and [`FakeCounters`], a [`CounterReader`] of fixed
//! values.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;

use aya::maps::MapError;
use aya::sys::SyscallError;
use lb_common::handshake::{HandshakeCounters, HandshakeWatch, Observe};
use lb_common::maps::{
    names, Backend, Counters, Endpoint, RateLimit, Reason, Scheduler, Service, ServiceKey,
    SourcePrefix, XDP_ACTION_COUNT,
};

use super::counters::CounterReader;
use super::error::DataplaneError;
use super::map_writer::NatReverse;
use super::map_writer::{EntryWriter, MapWriter};
use super::nat::NatTranslations;
use super::policy::SourcePolicies;
use super::tables::ServiceTables;
use super::LoadOptions;

/// One successful update of the fake's maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeWrite {
    Backend { id: u32, backend: Backend },
    Handshakes { id: u32, watch: HandshakeWatch },
    Slot { index: u32, backend_id: u32 },
    Service { key: ServiceKey, service: Service },
    RemoveService { key: ServiceKey },
    Vip { vip: u32, services: u32 },
    RemoveVip { vip: u32 },
    RateLimit { id: u32, limit: RateLimit },
    Allowed { id: u32, prefix: SourcePrefix },
    RemoveAllowed { id: u32, prefix: SourcePrefix },
    Cursors { id: u32, ring_len: u32 },
}

/// The maps the controller writes, in memory.
#[derive(Debug)]
pub struct FakeMaps {
    entries: FakeEntries,
    tables: ServiceTables,
    policies: SourcePolicies,
    nat: NatTranslations,
}

/// The entries of the fake maps and the failures to inject.
#[derive(Debug)]
struct FakeEntries {
    max_backends: u32,
    backends: BTreeMap<u32, Backend>,
    handshakes: BTreeMap<u32, HandshakeWatch>,
    sched_table: Vec<u32>,
    services: HashMap<ServiceKey, Service>,
    vips: HashMap<u32, u32>,
    rate_limits: BTreeMap<u32, RateLimit>,
    allowed: BTreeSet<(u32, SourcePrefix)>,
    nat_reverse: BTreeMap<Endpoint, Endpoint>,
    log: Vec<FakeWrite>,
    /// Writes attempted so far, failed ones included.
    attempts: usize,
    /// Attempt numbers (counted from 0 at creation) that fail.
    failing_attempts: BTreeSet<usize>,
    /// Maps whose every write fails.
    failing_maps: BTreeSet<&'static str>,
}

impl FakeMaps {
    /// Empty maps of the sizes `options` gives (zeroed `SCHED_TABLE`, as
    /// the kernel creates it).
    pub fn new(options: &LoadOptions) -> Self {
        let sched_entries = options.max_services * 2 * options.table_size;
        FakeMaps {
            entries: FakeEntries {
                max_backends: options.max_backends,
                backends: BTreeMap::new(),
                handshakes: BTreeMap::new(),
                sched_table: vec![0; sched_entries as usize],
                services: HashMap::new(),
                vips: HashMap::new(),
                rate_limits: BTreeMap::new(),
                allowed: BTreeSet::new(),
                nat_reverse: BTreeMap::new(),
                log: Vec::new(),
                attempts: 0,
                failing_attempts: BTreeSet::new(),
                failing_maps: BTreeSet::new(),
            },
            tables: ServiceTables::new(options.table_size, options.max_services),
            policies: SourcePolicies::new(options.max_services),
            nat: NatTranslations::default(),
        }
    }

    /// `NAT_REVERSE`: backend endpoint → service endpoint.
    pub fn nat_reverse(&self) -> BTreeMap<Endpoint, Endpoint> {
        self.entries.nat_reverse.clone()
    }

    /// Makes the `n`-th write from now fail (0: the next one), once.
    pub fn fail_write(&mut self, n: usize) {
        let attempt = self.entries.attempts + n;
        self.entries.failing_attempts.insert(attempt);
    }

    /// Makes every write to map `name` (see [`names`]) fail until [`FakeMaps::heal`].
    pub fn fail_map(&mut self, name: &'static str) {
        self.entries.failing_maps.insert(name);
    }

    /// Stops every injected failure.
    pub fn heal(&mut self) {
        self.entries.failing_attempts.clear();
        self.entries.failing_maps.clear();
    }

    /// The successful writes so far, in order.
    pub fn log(&self) -> &[FakeWrite] {
        &self.entries.log
    }

    /// Writes attempted so far, failed ones included.
    pub fn attempts(&self) -> usize {
        self.entries.attempts
    }

    /// `BACKENDS[id]`, if ever written.
    /// Sets `HANDSHAKES[id]` as the data path would (unlogged).
    pub fn record_handshakes(&mut self, id: u32, watch: HandshakeWatch) {
        self.entries.handshakes.insert(id, watch);
    }

    pub fn backend(&self, id: u32) -> Option<Backend> {
        self.entries.backends.get(&id).copied()
    }

    /// What the data path reads for service `key`: its entry and the slots
    /// of its live half.
    pub fn live_table(&self, key: &ServiceKey) -> Option<(Service, Vec<u32>)> {
        let service = *self.entries.services.get(key)?;
        let start = service.table_base as usize;
        let slots = self.entries.sched_table[start..start + service.table_len as usize].to_vec();
        Some((service, slots))
    }

    /// `VIPS[vip]`, if present.
    pub fn vip(&self, vip: u32) -> Option<u32> {
        self.entries.vips.get(&vip).copied()
    }

    /// `RATE_LIMITS[id]` (zero if never written).
    pub fn rate_limit(&self, id: u32) -> RateLimit {
        self.entries
            .rate_limits
            .get(&id)
            .copied()
            .unwrap_or_default()
    }

    /// Service `id`'s prefixes in `ALLOW_LISTS`, in order.
    pub fn allowed(&self, id: u32) -> Vec<SourcePrefix> {
        self.entries
            .allowed
            .iter()
            .filter(|(owner, _)| *owner == id)
            .map(|&(_, prefix)| prefix)
            .collect()
    }
}

impl MapWriter for FakeMaps {
    fn set_backend(&mut self, id: u32, backend: &Backend) -> Result<(), DataplaneError> {
        self.entries.write_backend(id, backend)
    }

    fn set_service(
        &mut self,
        key: ServiceKey,
        id: u32,
        scheduler: Scheduler,
        slots: &[u32],
    ) -> Result<usize, DataplaneError> {
        self.tables
            .publish(&mut self.entries, key, id, scheduler, slots)
    }

    fn remove_service(&mut self, key: &ServiceKey) -> Result<(), DataplaneError> {
        self.tables.remove(&mut self.entries, key)
    }

    fn set_rate_limit(&mut self, id: u32, limit: RateLimit) -> Result<(), DataplaneError> {
        self.policies
            .set_rate_limit(&mut self.entries, &mut self.tables, id, limit)
    }

    fn set_allow_list(
        &mut self,
        id: u32,
        allow: Option<&[SourcePrefix]>,
    ) -> Result<(), DataplaneError> {
        self.policies
            .set_allow_list(&mut self.entries, &mut self.tables, id, allow)
    }

    fn set_observe(&mut self, id: u32, observe: Option<Observe>) -> Result<(), DataplaneError> {
        self.policies
            .set_observe(&mut self.entries, &mut self.tables, id, observe)
    }

    fn set_nat(&mut self, id: u32, nat: Option<&NatReverse>) -> Result<(), DataplaneError> {
        self.nat.set(&mut self.entries, &mut self.tables, id, nat)
    }

    fn handshakes(&self, id: u32) -> Result<HandshakeWatch, DataplaneError> {
        Ok(self
            .entries
            .handshakes
            .get(&id)
            .copied()
            .unwrap_or_default())
    }

    fn clear_handshakes(&mut self, id: u32) -> Result<(), DataplaneError> {
        self.entries
            .write_handshakes(id, &HandshakeWatch::default())
    }
}

impl FakeEntries {
    /// Counts an attempt to write `map`; fails it if told to, like a
    /// failed syscall.
    fn attempt(&mut self, map: &'static str) -> Result<(), DataplaneError> {
        let attempt = self.attempts;
        self.attempts += 1;
        if self.failing_attempts.remove(&attempt) || self.failing_maps.contains(map) {
            return Err(DataplaneError::Map {
                map,
                source: MapError::SyscallError(SyscallError {
                    call: "bpf_map_update_elem",
                    io_error: io::Error::from_raw_os_error(libc::ENOMEM),
                }),
            });
        }
        Ok(())
    }
}

impl EntryWriter for FakeEntries {
    fn write_backend(&mut self, id: u32, backend: &Backend) -> Result<(), DataplaneError> {
        if id >= self.max_backends {
            return Err(DataplaneError::BackendIdOutOfRange {
                id,
                max: self.max_backends,
            });
        }
        self.attempt(names::BACKENDS)?;
        self.backends.insert(id, *backend);
        self.log.push(FakeWrite::Backend {
            id,
            backend: *backend,
        });
        Ok(())
    }

    fn write_handshakes(&mut self, id: u32, watch: &HandshakeWatch) -> Result<(), DataplaneError> {
        self.attempt(names::HANDSHAKES)?;
        self.handshakes.insert(id, *watch);
        self.log.push(FakeWrite::Handshakes { id, watch: *watch });
        Ok(())
    }

    fn write_slot(&mut self, index: u32, backend_id: u32) -> Result<(), DataplaneError> {
        self.attempt(names::SCHED_TABLE)?;
        self.sched_table[index as usize] = backend_id;
        self.log.push(FakeWrite::Slot { index, backend_id });
        Ok(())
    }

    fn write_service(&mut self, key: &ServiceKey, service: &Service) -> Result<(), DataplaneError> {
        self.attempt(names::SERVICES)?;
        self.services.insert(*key, *service);
        self.log.push(FakeWrite::Service {
            key: *key,
            service: *service,
        });
        Ok(())
    }

    fn delete_service(&mut self, key: &ServiceKey) -> Result<(), DataplaneError> {
        self.attempt(names::SERVICES)?;
        self.services.remove(key);
        self.log.push(FakeWrite::RemoveService { key: *key });
        Ok(())
    }

    fn write_vip(&mut self, vip: u32, services: u32) -> Result<(), DataplaneError> {
        self.attempt(names::VIPS)?;
        self.vips.insert(vip, services);
        self.log.push(FakeWrite::Vip { vip, services });
        Ok(())
    }

    fn write_nat_reverse(
        &mut self,
        backend: &Endpoint,
        service: &Endpoint,
    ) -> Result<(), DataplaneError> {
        self.attempt(names::NAT_REVERSE)?;
        self.nat_reverse.insert(*backend, *service);
        Ok(())
    }

    fn delete_nat_reverse(&mut self, backend: &Endpoint) -> Result<(), DataplaneError> {
        self.attempt(names::NAT_REVERSE)?;
        self.nat_reverse.remove(backend);
        Ok(())
    }

    fn delete_vip(&mut self, vip: u32) -> Result<(), DataplaneError> {
        self.attempt(names::VIPS)?;
        self.vips.remove(&vip);
        self.log.push(FakeWrite::RemoveVip { vip });
        Ok(())
    }

    fn write_rate_limit(&mut self, id: u32, limit: RateLimit) -> Result<(), DataplaneError> {
        self.attempt(names::RATE_LIMITS)?;
        self.rate_limits.insert(id, limit);
        self.log.push(FakeWrite::RateLimit { id, limit });
        Ok(())
    }

    fn write_allowed(&mut self, id: u32, prefix: SourcePrefix) -> Result<(), DataplaneError> {
        self.attempt(names::ALLOW_LISTS)?;
        self.allowed.insert((id, prefix));
        self.log.push(FakeWrite::Allowed { id, prefix });
        Ok(())
    }

    fn delete_allowed(&mut self, id: u32, prefix: SourcePrefix) -> Result<(), DataplaneError> {
        self.attempt(names::ALLOW_LISTS)?;
        self.allowed.remove(&(id, prefix));
        self.log.push(FakeWrite::RemoveAllowed { id, prefix });
        Ok(())
    }

    fn write_cursors(&mut self, id: u32, ring_len: u32) -> Result<(), DataplaneError> {
        self.attempt(names::RR_CURSOR)?;
        self.log.push(FakeWrite::Cursors { id, ring_len });
        Ok(())
    }
}

/// Counters that read as set by the test; zero for ids never set.
#[derive(Debug, Clone, Default)]
pub struct FakeCounters {
    pub services: HashMap<u32, Counters>,
    pub backends: HashMap<u32, Counters>,
    /// Packets per XDP action, by action index.
    pub actions: [u64; XDP_ACTION_COUNT as usize],
    /// Packets per pass/drop reason, by reason index.
    pub reasons: [u64; Reason::COUNT as usize],
    pub handshakes: HashMap<u32, HandshakeCounters>,
}

impl CounterReader for FakeCounters {
    fn service_counters(&self, id: u32) -> Result<Counters, DataplaneError> {
        Ok(self.services.get(&id).copied().unwrap_or_default())
    }

    fn backend_counters(&self, id: u32) -> Result<Counters, DataplaneError> {
        Ok(self.backends.get(&id).copied().unwrap_or_default())
    }

    fn action_counters(&self) -> Result<[u64; XDP_ACTION_COUNT as usize], DataplaneError> {
        Ok(self.actions)
    }

    fn reason_counters(&self) -> Result<[u64; Reason::COUNT as usize], DataplaneError> {
        Ok(self.reasons)
    }

    fn handshake_counters(&self, id: u32) -> Result<HandshakeCounters, DataplaneError> {
        Ok(self.handshakes.get(&id).copied().unwrap_or_default())
    }
}
