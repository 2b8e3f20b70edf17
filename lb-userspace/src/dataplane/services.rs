//! Bookkeeping of the published services, with no IO: which id each service
//! uses, which half of its `SCHED_TABLE` region is live, what each half holds,
//! and how many services share each VIP.
//!
//! Service `id` owns slots `[id * 2 * M, (id * 2 + 2) * M)` of `SCHED_TABLE`
//! (M = table size): half 0 then half 1. A publication writes the half that is
//! not live and then flips the service to it. Only the slots whose content
//! differs from what that half last held are written: a backend leaving a
//! Maglev table changes about 1/N of its slots, so a republish costs a
//! fraction of a full write (aya has no batch update).

use std::collections::HashMap;

use lb_common::maps::ServiceKey;

use super::DataplaneError;

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

/// A published service: its id and live half.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Published {
    id: u32,
    half: u8,
}

/// The services the data path currently knows.
#[derive(Debug)]
pub struct ServiceRegistry {
    table_size: u32,
    max_services: u32,
    services: HashMap<ServiceKey, Published>,
    services_per_vip: HashMap<u32, u32>,
    /// What the two halves of each id's region hold, as far as written by
    /// this registry's owner: slot `i` of half `h` of id `id` is
    /// `halves[&id][h][i]`. A slot beyond the known length is unknown. Kept
    /// when a service is removed: the map keeps the values too.
    halves: HashMap<u32, [Vec<u32>; 2]>,
}

impl ServiceRegistry {
    /// An empty registry for maps sized for `max_services` services of
    /// `table_size` slots per half.
    pub fn new(table_size: u32, max_services: u32) -> Self {
        Self {
            table_size,
            max_services,
            services: HashMap::new(),
            services_per_vip: HashMap::new(),
            halves: HashMap::new(),
        }
    }

    /// The slots of `slots` that differ from what `placement`'s half of
    /// service `id` holds (or that are unknown), as (index in the half, backend id).
    pub fn stale_slots<'a>(
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

    /// Records that slot `index` of `placement`'s half of service `id` now holds `backend`.
    pub fn wrote_slot(&mut self, id: u32, placement: Placement, index: u32, backend: u32) {
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
    pub fn placement(
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
            .any(|(other_key, published)| other_key != key && published.id == id)
        {
            return Err(DataplaneError::ServiceIdInUse { id });
        }
        let half = match self.services.get(key) {
            Some(published) if published.id == id => 1 - published.half,
            _ => 0,
        };
        // Cannot overflow: `load` checked that max_services * 2 * table_size fits a u32.
        let base = (id * 2 + u32::from(half)) * self.table_size;
        Ok(Placement { half, base })
    }

    /// Records that `key` now serves from `half` of service `id`'s region.
    /// Returns the number of services on the key's VIP.
    pub fn record(&mut self, key: ServiceKey, id: u32, half: u8) -> u32 {
        let previous = self.services.insert(key, Published { id, half });
        let count = self.services_per_vip.entry(key.vip).or_insert(0);
        if previous.is_none() {
            *count += 1;
        }
        *count
    }

    /// Whether `key` is published.
    pub fn contains(&self, key: &ServiceKey) -> bool {
        self.services.contains_key(key)
    }

    /// Forgets `key`. Returns the VIP's remaining service count (0: the VIP is
    /// gone), or `None` when `key` was not published.
    pub fn forget(&mut self, key: &ServiceKey) -> Option<u32> {
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

    #[test]
    fn publications_alternate_halves() {
        let mut registry = ServiceRegistry::new(7, 4);
        let web = key(1, 80);
        let first = registry.placement(&web, 3, 7).unwrap();
        assert_eq!(first, Placement { half: 0, base: 42 });
        registry.record(web, 3, first.half);
        let second = registry.placement(&web, 3, 7).unwrap();
        assert_eq!(second, Placement { half: 1, base: 49 });
        registry.record(web, 3, second.half);
        assert_eq!(registry.placement(&web, 3, 7).unwrap().half, 0);
    }

    #[test]
    fn rejects_ids_and_lengths_the_maps_cannot_hold() {
        let registry = ServiceRegistry::new(7, 4);
        assert!(matches!(
            registry.placement(&key(1, 80), 4, 1),
            Err(DataplaneError::ServiceIdOutOfRange { id: 4, max: 4 })
        ));
        assert!(matches!(
            registry.placement(&key(1, 80), 0, 8),
            Err(DataplaneError::TableTooLong {
                len: 8,
                table_size: 7
            })
        ));
    }

    #[test]
    fn an_id_belongs_to_one_service() {
        let mut registry = ServiceRegistry::new(7, 4);
        registry.record(key(1, 80), 0, 0);
        assert!(matches!(
            registry.placement(&key(1, 443), 0, 1),
            Err(DataplaneError::ServiceIdInUse { id: 0 })
        ));
        registry.forget(&key(1, 80));
        assert!(registry.placement(&key(1, 443), 0, 1).is_ok());
    }

    fn stale(registry: &ServiceRegistry, id: u32, half: u8, slots: &[u32]) -> Vec<(u32, u32)> {
        let placement = Placement { half, base: 0 };
        registry.stale_slots(id, placement, slots).collect()
    }

    fn write_all(registry: &mut ServiceRegistry, id: u32, half: u8, slots: &[u32]) {
        let placement = Placement { half, base: 0 };
        let stale: Vec<_> = registry.stale_slots(id, placement, slots).collect();
        for (index, backend) in stale {
            registry.wrote_slot(id, placement, index, backend);
        }
    }

    #[test]
    fn a_half_never_written_is_written_whole() {
        let registry = ServiceRegistry::new(7, 4);
        assert_eq!(stale(&registry, 0, 0, &[5, 6, 5]), [(0, 5), (1, 6), (2, 5)]);
    }

    #[test]
    fn only_slots_that_differ_from_the_same_half_are_stale() {
        let mut registry = ServiceRegistry::new(7, 4);
        write_all(&mut registry, 0, 0, &[1, 2, 3, 1, 2, 3, 1]);
        // The other half and the other ids know nothing yet.
        assert_eq!(stale(&registry, 0, 1, &[1, 2]), [(0, 1), (1, 2)]);
        assert_eq!(stale(&registry, 1, 0, &[1]), [(0, 1)]);
        // Backend 2 leaves: only its slots change.
        let without_2 = [1, 3, 3, 1, 1, 3, 1];
        assert_eq!(stale(&registry, 0, 0, &without_2), [(1, 3), (4, 1)]);
        write_all(&mut registry, 0, 0, &without_2);
        assert!(stale(&registry, 0, 0, &without_2).is_empty());
    }

    #[test]
    fn a_shorter_table_keeps_what_lies_beyond_it() {
        let mut registry = ServiceRegistry::new(7, 4);
        write_all(&mut registry, 0, 1, &[1, 2, 3]);
        write_all(&mut registry, 0, 1, &[4]);
        assert_eq!(stale(&registry, 0, 1, &[4, 2, 3]), []);
        assert_eq!(stale(&registry, 0, 1, &[4, 2, 3, 9]), [(3, 9)]);
    }

    #[test]
    fn a_slot_written_past_the_known_end_leaves_the_gap_unknown() {
        let mut registry = ServiceRegistry::new(7, 4);
        let placement = Placement { half: 0, base: 0 };
        registry.wrote_slot(0, placement, 2, 7);
        assert_eq!(stale(&registry, 0, 0, &[0, 0, 7]), [(0, 0), (1, 0)]);
    }

    #[test]
    fn counts_services_per_vip() {
        let mut registry = ServiceRegistry::new(7, 4);
        assert_eq!(registry.record(key(1, 80), 0, 0), 1);
        assert_eq!(registry.record(key(1, 443), 1, 0), 2);
        assert_eq!(registry.record(key(1, 443), 1, 1), 2);
        assert_eq!(registry.record(key(2, 80), 2, 0), 1);
        assert!(registry.contains(&key(1, 80)));
        assert_eq!(registry.forget(&key(1, 80)), Some(1));
        assert!(!registry.contains(&key(1, 80)));
        assert_eq!(registry.forget(&key(1, 80)), None);
        assert_eq!(registry.forget(&key(1, 443)), Some(0));
    }
}
