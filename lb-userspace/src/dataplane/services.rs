//! Bookkeeping of the published services, with no IO: which id each service
//! uses, which half of its `SCHED_TABLE` region is live, and how many services
//! share each VIP.
//!
//! Service `id` owns slots `[id * 2 * M, (id * 2 + 2) * M)` of `SCHED_TABLE`
//! (M = table size): half 0 then half 1. A publication writes the half that is
//! not live and then flips the service to it.

use std::collections::HashMap;

use lb_common::maps::ServiceKey;

use super::DataplaneError;

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
        }
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
