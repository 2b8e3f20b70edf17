//! The double-buffered scheduling tables: which id each published service
//! uses, which half of its `SCHED_TABLE` region is live, what each half
//! holds, how many services share each VIP, each id's policy flags and
//! passive health settings, and the
//! publication and removal of a service through any [`EntryWriter`].
//!
//! Service `id` owns slots `[id * 2 * M, (id * 2 + 2) * M)` of `SCHED_TABLE`
//! (M = table size): half 0 then half 1. A publication writes the half that is
//! not live and then flips the service to it. Only the slots whose content
//! differs from what that half last held are written: a backend leaving a
//! Maglev table changes about 1/N of its slots, so a republish costs a
//! fraction of a full write (aya has no batch update).
//!
//! Only writes that succeeded are recorded, so after a failure the next
//! publication of the service writes what is still missing, and never
//! flips to a half whose slots are not all written.

use std::collections::HashMap;

use lb_common::handshake::Observe;
use lb_common::maps::{service_flags, Scheduler, Service, ServiceKey};

use super::error::DataplaneError;
use super::map_writer::EntryWriter;

/// Marks a slot whose content is not known; no table holds this backend id
/// (ids are below `max_backends`, a `u32` map size).
const UNKNOWN_SLOT: u32 = u32::MAX;

/// Where a publication writes its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// The half (0 or 1) being written, live once the service is flipped.
    pub half: u8,
    /// Index in `SCHED_TABLE` of slot 0 of that half.
    pub base: u32,
}

/// A published service: the `SERVICES` value last written for it (its id,
/// live half and flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Published {
    service: Service,
}

/// The services the data path currently knows.
#[derive(Debug)]
pub struct ServiceTables {
    table_size: u32,
    max_services: u32,
    services: HashMap<ServiceKey, Published>,
    services_per_vip: HashMap<u32, u32>,
    /// What the two halves of each id's region hold, as far as written by
    /// this value's owner: slot `i` of half `h` of id `id` is
    /// `halves[&id][h][i]`. A slot beyond the known length is unknown. Kept
    /// when a service is removed: the map keeps the values too.
    halves: HashMap<u32, [Vec<u32>; 2]>,
    /// Each id's [`lb_common::maps::service_flags`]: what its policy maps
    /// hold, carried into every publication under the id.
    flags: HashMap<u32, u8>,
    /// Each id's passive health settings (with its `OBSERVE` flag), carried
    /// into every publication under the id.
    observe: HashMap<u32, Observe>,
}

impl ServiceTables {
    /// Nothing published yet, in maps sized for `max_services` services of
    /// `table_size` slots per half.
    pub fn new(table_size: u32, max_services: u32) -> Self {
        Self {
            table_size,
            max_services,
            services: HashMap::new(),
            services_per_vip: HashMap::new(),
            halves: HashMap::new(),
            flags: HashMap::new(),
            observe: HashMap::new(),
        }
    }

    /// [`super::MapWriter::set_service`] through `maps`: writes the stale
    /// slots of the half that is not live, flips `SERVICES[key]` to it, then
    /// writes the VIP's service count. Returns the number of slots written.
    pub fn publish(
        &mut self,
        maps: &mut impl EntryWriter,
        key: ServiceKey,
        id: u32,
        scheduler: Scheduler,
        slots: &[u32],
    ) -> Result<usize, DataplaneError> {
        let placement = self.placement(&key, id, slots.len())?;
        let stale: Vec<(u32, u32)> = self.stale_slots(id, placement, slots).collect();
        for &(index, backend_id) in &stale {
            if let Err(error) = maps.write_slot(placement.base + index, backend_id) {
                self.wrote_slot(id, placement, index, UNKNOWN_SLOT);
                return Err(error);
            }
            self.wrote_slot(id, placement, index, backend_id);
        }
        let service = self.with_policies(Service {
            id,
            table_base: placement.base,
            // Fits: `placement` checked it against table_size.
            table_len: slots.len() as u32,
            scheduler: scheduler as u8,
            table_half: placement.half,
            ..Service::default()
        });
        // The flip, once every slot of the half is written. A failed flip
        // leaves the old half live and this one the target of the retry.
        maps.write_service(&key, &service)?;
        let services_on_vip = self.record(key, service);
        // Written on every publication, so a failed write is repaired by the next one.
        maps.write_vip(key.vip, services_on_vip)?;
        // A ring that changed starts its CPUs' cursors spread over it again.
        if scheduler == Scheduler::RoundRobin && !stale.is_empty() {
            maps.write_cursors(id, service.table_len)?;
        }
        tracing::debug!(
            ?key,
            id,
            ?scheduler,
            slots = slots.len(),
            written = stale.len(),
            half = placement.half,
            "service published"
        );
        Ok(stale.len())
    }

    /// Sets or clears `flag` of service id `id`: in every later publication
    /// under the id, and at once in the live `SERVICES` entry of the
    /// service published under it, if any (the same half, only the flags
    /// change). After a failed write a repeat of the call writes it again.
    pub fn set_flag(
        &mut self,
        maps: &mut impl EntryWriter,
        id: u32,
        flag: u8,
        on: bool,
    ) -> Result<(), DataplaneError> {
        let flags = self.flags.entry(id).or_insert(0);
        if on {
            *flags |= flag;
        } else {
            *flags &= !flag;
        }
        self.rewrite_live(maps, id)
    }

    /// Sets service id `id`'s passive health settings (`None`: off) and its
    /// `OBSERVE` flag, like [`ServiceTables::set_flag`].
    pub fn set_observe(
        &mut self,
        maps: &mut impl EntryWriter,
        id: u32,
        observe: Option<Observe>,
    ) -> Result<(), DataplaneError> {
        match observe {
            Some(observe) => self.observe.insert(id, observe),
            None => self.observe.remove(&id),
        };
        self.set_flag(maps, id, service_flags::OBSERVE, observe.is_some())
    }

    /// `service` with id `service.id`'s flags and passive health settings.
    fn with_policies(&self, service: Service) -> Service {
        let observe = self.observe.get(&service.id).copied().unwrap_or_default();
        Service {
            flags: self.flags.get(&service.id).copied().unwrap_or(0),
            error_limit: observe.error_limit,
            handshake_timeout: observe.handshake_timeout,
            ..service
        }
    }

    /// Rewrites the live `SERVICES` entry of the service published under
    /// id `id`, if any, when its policies changed.
    fn rewrite_live(&mut self, maps: &mut impl EntryWriter, id: u32) -> Result<(), DataplaneError> {
        let live = self
            .services
            .iter()
            .find(|(_, published)| published.service.id == id)
            .map(|(key, published)| (*key, published.service));
        if let Some((key, service)) = live {
            let updated = self.with_policies(service);
            if updated != service {
                maps.write_service(&key, &updated)?;
                if let Some(published) = self.services.get_mut(&key) {
                    published.service = updated;
                }
            }
        }
        Ok(())
    }

    /// [`super::MapWriter::remove_service`] through `maps`.
    pub fn remove(
        &mut self,
        maps: &mut impl EntryWriter,
        key: &ServiceKey,
    ) -> Result<(), DataplaneError> {
        if self.services.contains_key(key) {
            maps.delete_service(key)?;
            self.forget(key);
        }
        // Written even when `key` was removed before, so that a retry after
        // a failed VIPS write repairs it.
        match self.services_per_vip.get(&key.vip) {
            None => maps.delete_vip(key.vip)?,
            Some(&services) => maps.write_vip(key.vip, services)?,
        }
        tracing::debug!(?key, "service removed");
        Ok(())
    }

    /// The slots of `slots` that differ from what `placement`'s half of
    /// service `id` holds (or that are unknown), as (index in the half, backend id).
    fn stale_slots<'a>(
        &'a self,
        id: u32,
        placement: Placement,
        slots: &'a [u32],
    ) -> impl Iterator<Item = (u32, u32)> + 'a {
        let held: &[u32] = self
            .halves
            .get(&id)
            .map_or(&[], |halves| &halves[usize::from(placement.half)]);
        (0u32..)
            .zip(slots.iter().copied())
            .filter(move |&(index, backend)| held.get(index as usize) != Some(&backend))
    }

    /// Records that slot `index` of `placement`'s half of service `id` now
    /// holds `backend` ([`UNKNOWN_SLOT`]: its content is not known).
    fn wrote_slot(&mut self, id: u32, placement: Placement, index: u32, backend: u32) {
        let half = &mut self.halves.entry(id).or_default()[usize::from(placement.half)];
        let index = index as usize;
        if half.len() <= index {
            // Slots between the known end and `index` are unknown; a value
            // that no table uses keeps them stale until written.
            half.resize(index + 1, UNKNOWN_SLOT);
        }
        half[index] = backend;
    }

    /// Where to write a `len`-slot table for service `key` with id `id`: the
    /// half that is not live (half 0 for a service not yet published).
    fn placement(
        &self,
        key: &ServiceKey,
        id: u32,
        len: usize,
    ) -> Result<Placement, DataplaneError> {
        if id >= self.max_services {
            return Err(DataplaneError::ServiceIdOutOfRange {
                id,
                max: self.max_services,
            });
        }
        if len > self.table_size as usize {
            return Err(DataplaneError::TableTooLong {
                len,
                table_size: self.table_size,
            });
        }
        if self
            .services
            .iter()
            .any(|(other_key, published)| other_key != key && published.service.id == id)
        {
            return Err(DataplaneError::ServiceIdInUse { id });
        }
        let half = match self.services.get(key) {
            Some(published) if published.service.id == id => 1 - published.service.table_half,
            _ => 0,
        };
        // Cannot overflow: `load` checked that max_services * 2 * table_size fits a u32.
        let base = (id * 2 + u32::from(half)) * self.table_size;
        Ok(Placement { half, base })
    }

    /// Records that `key` now serves as `service` (its id, half and flags).
    /// Returns the number of services on the key's VIP.
    fn record(&mut self, key: ServiceKey, service: Service) -> u32 {
        let previous = self.services.insert(key, Published { service });
        let count = self.services_per_vip.entry(key.vip).or_insert(0);
        if previous.is_none() {
            *count += 1;
        }
        *count
    }

    /// Forgets `key`. Returns the VIP's remaining service count (0: the VIP is
    /// gone), or `None` when `key` was not published.
    fn forget(&mut self, key: &ServiceKey) -> Option<u32> {
        self.services.remove(key)?;
        let count = self.services_per_vip.get_mut(&key.vip)?;
        *count -= 1;
        let remaining = *count;
        if remaining == 0 {
            self.services_per_vip.remove(&key.vip);
        }
        Some(remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(vip: u32, port: u16) -> ServiceKey {
        ServiceKey {
            vip,
            port,
            proto: lb_common::maps::IPPROTO_TCP,
            _pad: 0,
        }
    }

    /// Service `id` published in `half`.
    fn published(id: u32, half: u8) -> Service {
        Service {
            id,
            table_half: half,
            ..Service::default()
        }
    }

    #[test]
    fn publications_alternate_halves() {
        let mut tables = ServiceTables::new(7, 4);
        let web = key(1, 80);
        let first = tables.placement(&web, 3, 7).unwrap();
        assert_eq!(first, Placement { half: 0, base: 42 });
        tables.record(web, published(3, first.half));
        let second = tables.placement(&web, 3, 7).unwrap();
        assert_eq!(second, Placement { half: 1, base: 49 });
        tables.record(web, published(3, second.half));
        assert_eq!(tables.placement(&web, 3, 7).unwrap().half, 0);
    }

    #[test]
    fn rejects_ids_and_lengths_the_maps_cannot_hold() {
        let tables = ServiceTables::new(7, 4);
        assert!(matches!(
            tables.placement(&key(1, 80), 4, 1),
            Err(DataplaneError::ServiceIdOutOfRange { id: 4, max: 4 })
        ));
        assert!(matches!(
            tables.placement(&key(1, 80), 0, 8),
            Err(DataplaneError::TableTooLong {
                len: 8,
                table_size: 7
            })
        ));
    }

    #[test]
    fn an_id_belongs_to_one_service() {
        let mut tables = ServiceTables::new(7, 4);
        tables.record(key(1, 80), published(0, 0));
        assert!(matches!(
            tables.placement(&key(1, 443), 0, 1),
            Err(DataplaneError::ServiceIdInUse { id: 0 })
        ));
        tables.forget(&key(1, 80));
        assert!(tables.placement(&key(1, 443), 0, 1).is_ok());
    }

    fn stale(tables: &ServiceTables, id: u32, half: u8, slots: &[u32]) -> Vec<(u32, u32)> {
        let placement = Placement { half, base: 0 };
        tables.stale_slots(id, placement, slots).collect()
    }

    fn write_all(tables: &mut ServiceTables, id: u32, half: u8, slots: &[u32]) {
        let placement = Placement { half, base: 0 };
        let stale: Vec<_> = tables.stale_slots(id, placement, slots).collect();
        for (index, backend) in stale {
            tables.wrote_slot(id, placement, index, backend);
        }
    }

    #[test]
    fn a_half_never_written_is_written_whole() {
        let tables = ServiceTables::new(7, 4);
        assert_eq!(stale(&tables, 0, 0, &[5, 6, 5]), [(0, 5), (1, 6), (2, 5)]);
    }

    #[test]
    fn only_slots_that_differ_from_the_same_half_are_stale() {
        let mut tables = ServiceTables::new(7, 4);
        write_all(&mut tables, 0, 0, &[1, 2, 3, 1, 2, 3, 1]);
        // The other half and the other ids know nothing yet.
        assert_eq!(stale(&tables, 0, 1, &[1, 2]), [(0, 1), (1, 2)]);
        assert_eq!(stale(&tables, 1, 0, &[1]), [(0, 1)]);
        // Backend 2 leaves: only its slots change.
        let without_2 = [1, 3, 3, 1, 1, 3, 1];
        assert_eq!(stale(&tables, 0, 0, &without_2), [(1, 3), (4, 1)]);
        write_all(&mut tables, 0, 0, &without_2);
        assert!(stale(&tables, 0, 0, &without_2).is_empty());
    }

    #[test]
    fn a_shorter_table_keeps_what_lies_beyond_it() {
        let mut tables = ServiceTables::new(7, 4);
        write_all(&mut tables, 0, 1, &[1, 2, 3]);
        write_all(&mut tables, 0, 1, &[4]);
        assert_eq!(stale(&tables, 0, 1, &[4, 2, 3]), []);
        assert_eq!(stale(&tables, 0, 1, &[4, 2, 3, 9]), [(3, 9)]);
    }

    #[test]
    fn a_slot_written_past_the_known_end_leaves_the_gap_unknown() {
        let mut tables = ServiceTables::new(7, 4);
        let placement = Placement { half: 0, base: 0 };
        tables.wrote_slot(0, placement, 2, 7);
        assert_eq!(stale(&tables, 0, 0, &[0, 0, 7]), [(0, 0), (1, 0)]);
    }

    #[test]
    fn counts_services_per_vip() {
        let mut tables = ServiceTables::new(7, 4);
        assert_eq!(tables.record(key(1, 80), published(0, 0)), 1);
        assert_eq!(tables.record(key(1, 443), published(1, 0)), 2);
        assert_eq!(tables.record(key(1, 443), published(1, 1)), 2);
        assert_eq!(tables.record(key(2, 80), published(2, 0)), 1);
        assert!(tables.services.contains_key(&key(1, 80)));
        assert_eq!(tables.forget(&key(1, 80)), Some(1));
        assert!(!tables.services.contains_key(&key(1, 80)));
        assert_eq!(tables.forget(&key(1, 80)), None);
        assert_eq!(tables.forget(&key(1, 443)), Some(0));
    }

    /// The double buffer through the in-memory maps: what the data path
    /// could read at any moment.
    mod through_the_maps {
        use std::collections::HashMap;

        use lb_common::maps::{names, Scheduler, Service, ServiceKey};

        use super::key;
        use crate::dataplane::fake::{FakeMaps, FakeWrite};
        use crate::dataplane::{LoadOptions, MapWriter};

        const M: u32 = 7;

        fn maps() -> FakeMaps {
            FakeMaps::new(&LoadOptions {
                table_size: M,
                max_services: 4,
                max_backends: 8,
                ..LoadOptions::default()
            })
        }

        /// Successive tables of one service: backends leave and come back.
        const TABLES: [[u32; M as usize]; 4] = [
            [1, 2, 3, 1, 2, 3, 1],
            [1, 3, 3, 1, 1, 3, 1],
            [3, 3, 3, 3, 3, 3, 3],
            [1, 2, 3, 1, 2, 3, 1],
        ];

        /// Replays `log`, asserting that no slot of a live half is written
        /// and that each flip (the `k`-th `SERVICES` write) goes to a half
        /// that already holds all of `flips[k]`.
        fn check_double_buffer(log: &[FakeWrite], flips: &[&[u32]]) {
            let mut sched: HashMap<u32, u32> = HashMap::new();
            let mut live: HashMap<ServiceKey, Service> = HashMap::new();
            let mut flip = 0;
            for write in log {
                match write {
                    FakeWrite::Slot { index, backend_id } => {
                        for service in live.values() {
                            let half = service.table_base..service.table_base + M;
                            assert!(!half.contains(index), "slot {index} of a live half written");
                        }
                        sched.insert(*index, *backend_id);
                    }
                    FakeWrite::Service { key, service } => {
                        let held: Vec<u32> = (service.table_base..)
                            .take(service.table_len as usize)
                            .map(|index| sched.get(&index).copied().unwrap_or(0))
                            .collect();
                        assert_eq!(held, flips[flip], "flip {flip} to a half not fully written");
                        flip += 1;
                        live.insert(*key, *service);
                    }
                    FakeWrite::RemoveService { key } => {
                        live.remove(key);
                    }
                    _ => {}
                }
            }
            assert_eq!(flip, flips.len());
        }

        #[test]
        fn the_live_half_is_never_written_and_flips_follow_complete_halves() {
            let mut maps = maps();
            let web = key(1, 80);
            for table in &TABLES {
                maps.set_service(web, 2, Scheduler::Maglev, table).unwrap();
                assert_eq!(maps.live_table(&web).unwrap().1, table);
            }
            let flips: Vec<&[u32]> = TABLES.iter().map(|t| &t[..]).collect();
            check_double_buffer(maps.log(), &flips);
            // The halves alternate.
            let halves: Vec<u8> = maps
                .log()
                .iter()
                .filter_map(|write| match write {
                    FakeWrite::Service { service, .. } => Some(service.table_half),
                    _ => None,
                })
                .collect();
            assert_eq!(halves, [0, 1, 0, 1]);
        }

        /// Maps where service `web` went through `old`, `TABLES[1]`, `old`.
        fn published(web: ServiceKey, old: &[u32]) -> FakeMaps {
            let mut maps = maps();
            for table in [old, &TABLES[1], old] {
                maps.set_service(web, 0, Scheduler::Maglev, table).unwrap();
            }
            maps
        }

        #[test]
        fn a_failed_publication_leaves_the_old_table_or_the_new_one_and_a_retry_completes_it() {
            let web = key(1, 80);
            let (old, new) = (TABLES[0], TABLES[2]);
            let mut probe = published(web, &old);
            let before = probe.attempts();
            probe.set_service(web, 0, Scheduler::Maglev, &new).unwrap();
            let writes = probe.attempts() - before;
            assert!(writes > 2, "some slots, SERVICES and VIPS");
            for n in 0..writes {
                let mut maps = published(web, &old);
                maps.fail_write(n);
                assert!(maps.set_service(web, 0, Scheduler::Maglev, &new).is_err());
                let seen = maps.live_table(&web).unwrap().1;
                assert!(seen == old || seen == new, "write {n}: {seen:?}");
                let flipped = seen == new;
                maps.set_service(web, 0, Scheduler::Maglev, &new).unwrap();
                assert_eq!(
                    maps.live_table(&web).unwrap().1,
                    new,
                    "after failing write {n}"
                );
                assert_eq!(maps.vip(web.vip), Some(1));
                let mut flips: Vec<&[u32]> = vec![&old, &TABLES[1], &old, &new];
                if flipped {
                    // Failed after the flip (the VIPS write): the retry flips again.
                    flips.push(&new);
                }
                check_double_buffer(maps.log(), &flips);
            }
        }

        #[test]
        fn a_removal_whose_vip_write_failed_is_repaired_by_its_retry() {
            let mut maps = maps();
            let (web, tls) = (key(1, 80), key(1, 443));
            maps.set_service(web, 0, Scheduler::Maglev, &TABLES[0])
                .unwrap();
            maps.set_service(tls, 1, Scheduler::Maglev, &TABLES[0])
                .unwrap();
            assert_eq!(maps.vip(1), Some(2));
            maps.fail_map(names::VIPS);
            assert!(maps.remove_service(&web).is_err());
            assert!(maps.live_table(&web).is_none());
            assert_eq!(maps.vip(1), Some(2), "the failed write left the count");
            maps.heal();
            maps.remove_service(&web).unwrap();
            assert_eq!(maps.vip(1), Some(1));
            maps.remove_service(&tls).unwrap();
            assert_eq!(maps.vip(1), None);
            // Removing again changes nothing.
            maps.remove_service(&tls).unwrap();
            assert_eq!(maps.vip(1), None);
        }
    }
}
