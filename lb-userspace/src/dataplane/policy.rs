//! Each service id's policies as the data path holds them: its per-source
//! new-flow rate limit (`RATE_LIMITS`), its source allow-list
//! (`ALLOW_LISTS`), its passive health settings, and the service flags
//! that turn them on (through [`ServiceTables::set_flag`]), written through
//! any [`EntryWriter`].
//!
//! The order of the writes keeps a change safe at every step: a policy's
//! entries are in place before its flag is set, and its flag is cleared
//! before they go; a changed allow-list gains its new prefixes before it
//! loses its old ones. Only writes that succeeded are recorded, so after a
//! failure the same call writes what is still missing.

use std::collections::{BTreeSet, HashMap};

use lb_common::handshake::Observe;
use lb_common::maps::{service_flags, RateLimit, SourcePrefix};

use super::error::DataplaneError;
use super::map_writer::EntryWriter;
use super::tables::ServiceTables;

/// What the policy maps hold, as far as written by this value's owner.
#[derive(Debug)]
pub struct SourcePolicies {
    max_services: u32,
    /// The `ALLOW_LISTS` prefixes of each service id.
    allowed: HashMap<u32, BTreeSet<SourcePrefix>>,
}

impl SourcePolicies {
    /// No policy written yet, in maps sized for `max_services` services.
    pub fn new(max_services: u32) -> Self {
        Self {
            max_services,
            allowed: HashMap::new(),
        }
    }

    fn check_id(&self, id: u32) -> Result<(), DataplaneError> {
        if id >= self.max_services {
            return Err(DataplaneError::ServiceIdOutOfRange {
                id,
                max: self.max_services,
            });
        }
        Ok(())
    }

    /// [`super::MapWriter::set_rate_limit`] through `maps`: a limit (a
    /// non-zero refill interval) is written before the flag is set; no
    /// limit clears the flag first, then zeroes the entry.
    pub fn set_rate_limit(
        &mut self,
        maps: &mut impl EntryWriter,
        tables: &mut ServiceTables,
        id: u32,
        limit: RateLimit,
    ) -> Result<(), DataplaneError> {
        self.check_id(id)?;
        if limit.refill_interval_ns != 0 {
            maps.write_rate_limit(id, limit)?;
            tables.set_flag(maps, id, service_flags::RATE_LIMIT, true)
        } else {
            tables.set_flag(maps, id, service_flags::RATE_LIMIT, false)?;
            maps.write_rate_limit(id, RateLimit::default())
        }
    }

    /// [`super::MapWriter::set_allow_list`] through `maps`: the prefixes
    /// `allow` adds, then the flag, then the deletion of the prefixes it no
    /// longer holds.
    pub fn set_allow_list(
        &mut self,
        maps: &mut impl EntryWriter,
        tables: &mut ServiceTables,
        id: u32,
        allow: Option<&[SourcePrefix]>,
    ) -> Result<(), DataplaneError> {
        self.check_id(id)?;
        let wanted: BTreeSet<SourcePrefix> = allow.unwrap_or_default().iter().copied().collect();
        let held = self.allowed.entry(id).or_default();
        let added: Vec<SourcePrefix> = wanted.difference(held).copied().collect();
        for prefix in added {
            maps.write_allowed(id, prefix)?;
            held.insert(prefix);
        }
        tables.set_flag(maps, id, service_flags::ALLOW_LIST, allow.is_some())?;
        let removed: Vec<SourcePrefix> = held.difference(&wanted).copied().collect();
        for prefix in removed {
            maps.delete_allowed(id, prefix)?;
            held.remove(&prefix);
        }
        Ok(())
    }

    /// [`super::MapWriter::set_observe`] through `maps`: the settings live in
    /// the service's own `SERVICES` entry, so one write turns them on, off
    /// or changes them.
    pub fn set_observe(
        &mut self,
        maps: &mut impl EntryWriter,
        tables: &mut ServiceTables,
        id: u32,
        observe: Option<Observe>,
    ) -> Result<(), DataplaneError> {
        self.check_id(id)?;
        tables.set_observe(maps, id, observe)
    }
}

#[cfg(test)]
mod tests {
    use lb_common::maps::{names, service_flags, RateLimit, Scheduler, ServiceKey, SourcePrefix};

    use crate::dataplane::fake::{FakeMaps, FakeWrite};
    use crate::dataplane::{DataplaneError, LoadOptions, MapWriter};

    fn maps() -> FakeMaps {
        FakeMaps::new(&LoadOptions {
            table_size: 7,
            max_services: 4,
            max_backends: 8,
            ..LoadOptions::default()
        })
    }

    fn web() -> ServiceKey {
        ServiceKey {
            vip: 1,
            port: 80,
            proto: lb_common::maps::IPPROTO_TCP,
            _pad: 0,
        }
    }

    fn prefix(octets: [u8; 4], len: u8) -> SourcePrefix {
        SourcePrefix::new(octets, len).unwrap()
    }

    fn flags(maps: &FakeMaps) -> u8 {
        maps.live_table(&web()).unwrap().0.flags
    }

    /// The `SERVICES` writes after the first `from` of `maps`'s log.
    fn service_writes(maps: &FakeMaps, from: usize) -> Vec<u8> {
        maps.log()[from..]
            .iter()
            .filter_map(|write| match write {
                FakeWrite::Service { service, .. } => Some(service.flags),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_policy_set_before_publication_is_in_the_first_publication() {
        let mut maps = maps();
        maps.set_rate_limit(2, RateLimit::new(5, 10)).unwrap();
        maps.set_allow_list(2, Some(&[prefix([10, 0, 0, 0], 8)]))
            .unwrap();
        maps.set_service(web(), 2, Scheduler::Maglev, &[1]).unwrap();
        assert_eq!(
            service_writes(&maps, 0),
            [service_flags::RATE_LIMIT | service_flags::ALLOW_LIST],
            "published once, open to no one it should not be"
        );
        assert_eq!(maps.rate_limit(2), RateLimit::new(5, 10));
        assert_eq!(maps.allowed(2), [prefix([10, 0, 0, 0], 8)]);
    }

    #[test]
    fn a_live_service_gets_its_flag_after_the_entries_and_loses_it_before() {
        let mut maps = maps();
        maps.set_service(web(), 0, Scheduler::Maglev, &[1]).unwrap();
        let from = maps.log().len();
        maps.set_allow_list(0, Some(&[prefix([10, 0, 0, 0], 8)]))
            .unwrap();
        let log = &maps.log()[from..];
        assert!(matches!(log[0], FakeWrite::Allowed { id: 0, .. }));
        assert!(
            matches!(log[1], FakeWrite::Service { service, .. } if service.flags == service_flags::ALLOW_LIST)
        );
        // The same half: only the flags changed.
        assert_eq!(maps.live_table(&web()).unwrap().1, [1]);

        // A new list: new prefix first, old one deleted last.
        let from = maps.log().len();
        maps.set_allow_list(0, Some(&[prefix([192, 0, 2, 0], 24)]))
            .unwrap();
        let log = &maps.log()[from..];
        assert_eq!(log.len(), 2, "the flag was set already: {log:?}");
        assert!(matches!(log[0], FakeWrite::Allowed { .. }));
        assert!(matches!(log[1], FakeWrite::RemoveAllowed { .. }));

        // No list: the flag goes, then the entries.
        let from = maps.log().len();
        maps.set_allow_list(0, None).unwrap();
        let log = &maps.log()[from..];
        assert!(matches!(log[0], FakeWrite::Service { service, .. } if service.flags == 0));
        assert!(matches!(log[1], FakeWrite::RemoveAllowed { .. }));
        assert!(maps.allowed(0).is_empty());

        // The rate limit alike; setting the same again writes no flag.
        maps.set_rate_limit(0, RateLimit::new(1, 1)).unwrap();
        assert_eq!(flags(&maps), service_flags::RATE_LIMIT);
        let from = maps.log().len();
        maps.set_rate_limit(0, RateLimit::new(1, 1)).unwrap();
        assert!(service_writes(&maps, from).is_empty());
        maps.set_rate_limit(0, RateLimit::default()).unwrap();
        assert_eq!(flags(&maps), 0);
        assert_eq!(maps.rate_limit(0), RateLimit::default());
        // An empty list allows no one: the flag is set, no entry.
        maps.set_allow_list(0, Some(&[])).unwrap();
        assert_eq!(flags(&maps), service_flags::ALLOW_LIST);
    }

    #[test]
    fn after_a_failed_write_the_same_call_completes_the_policy() {
        let list = [prefix([10, 0, 0, 0], 8), prefix([192, 0, 2, 1], 32)];
        for failing in 0..3 {
            let mut maps = maps();
            maps.set_service(web(), 0, Scheduler::Maglev, &[1]).unwrap();
            maps.fail_write(failing);
            assert!(maps.set_allow_list(0, Some(&list)).is_err());
            if failing < 2 {
                // An entry missing: the service is not yet restricted.
                assert_eq!(flags(&maps), 0, "write {failing}");
            }
            maps.set_allow_list(0, Some(&list)).unwrap();
            assert_eq!(flags(&maps), service_flags::ALLOW_LIST);
            assert_eq!(maps.allowed(0), list);
        }
        let mut maps = maps();
        maps.set_service(web(), 0, Scheduler::Maglev, &[1]).unwrap();
        maps.set_allow_list(0, Some(&list)).unwrap();
        maps.fail_map(names::ALLOW_LISTS);
        assert!(maps.set_allow_list(0, None).is_err());
        // The flag went first: the service takes every source already.
        assert_eq!(flags(&maps), 0);
        maps.heal();
        maps.set_allow_list(0, None).unwrap();
        assert!(maps.allowed(0).is_empty());
    }

    #[test]
    fn ids_beyond_the_maps_are_refused() {
        let mut maps = maps();
        assert!(matches!(
            maps.set_rate_limit(4, RateLimit::new(1, 1)),
            Err(DataplaneError::ServiceIdOutOfRange { id: 4, max: 4 })
        ));
        assert!(matches!(
            maps.set_allow_list(4, None),
            Err(DataplaneError::ServiceIdOutOfRange { id: 4, max: 4 })
        ));
    }
}
