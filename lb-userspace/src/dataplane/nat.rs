//! Each `nat` service id's reverse translation as the data path holds it:
//! its backends' endpoints in `NAT_REVERSE`, each naming the service's
//! endpoint, and its `NAT` flag (through [`ServiceTables::set_flag`]),
//! written through any [`EntryWriter`].
//!
//! The order keeps every step safe: new and changed entries are written
//! before the flag is set, stale ones deleted after, so a backend that takes
//! new flows always has its entry. Only writes that succeeded are recorded:
//! after a failure the same call writes what is still missing.

use std::collections::BTreeMap;

use lb_common::maps::{service_flags, Endpoint};

use super::error::DataplaneError;
use super::map_writer::{EntryWriter, NatReverse};
use super::tables::ServiceTables;

/// What `NAT_REVERSE` holds, as far as written by this value's owner.
#[derive(Debug, Default)]
pub struct NatTranslations {
    /// Each service id's entries: backend endpoint → service endpoint.
    written: BTreeMap<u32, BTreeMap<Endpoint, Endpoint>>,
}

impl NatTranslations {
    /// [`super::MapWriter::set_nat`] through `maps`.
    pub fn set(
        &mut self,
        maps: &mut impl EntryWriter,
        tables: &mut ServiceTables,
        id: u32,
        nat: Option<&NatReverse>,
    ) -> Result<(), DataplaneError> {
        let wanted: BTreeMap<Endpoint, Endpoint> = nat
            .map(|nat| {
                nat.backends
                    .iter()
                    .map(|&backend| (backend, nat.service))
                    .collect()
            })
            .unwrap_or_default();
        if nat.is_none() {
            tables.set_flag(maps, id, service_flags::NAT, false)?;
        }
        for (backend, service) in &wanted {
            let written = self.written.entry(id).or_default();
            if written.get(backend) != Some(service) {
                maps.write_nat_reverse(backend, service)?;
                written.insert(*backend, *service);
            }
        }
        if nat.is_some() {
            tables.set_flag(maps, id, service_flags::NAT, true)?;
        }
        let stale: Vec<Endpoint> = self
            .written
            .get(&id)
            .into_iter()
            .flat_map(|written| written.keys())
            .filter(|backend| !wanted.contains_key(backend))
            .copied()
            .collect();
        for backend in stale {
            // Another service may have claimed the endpoint meanwhile (a
            // backend moved between services by a reload): its entry stays.
            let claimed = self
                .written
                .iter()
                .any(|(&other, entries)| other != id && entries.contains_key(&backend));
            if !claimed {
                maps.delete_nat_reverse(&backend)?;
            }
            if let Some(written) = self.written.get_mut(&id) {
                written.remove(&backend);
            }
        }
        if self.written.get(&id).is_some_and(BTreeMap::is_empty) {
            self.written.remove(&id);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use lb_common::maps::{names, IPPROTO_TCP};

    use super::*;
    use crate::dataplane::fake::FakeMaps;
    use crate::dataplane::{LoadOptions, MapWriter as _};

    fn endpoint(last: u8, port: u16) -> Endpoint {
        Endpoint {
            addr: u32::from_ne_bytes([10, 1, 0, last]),
            port: port.to_be(),
            proto: IPPROTO_TCP,
            _pad: 0,
        }
    }

    fn fake() -> FakeMaps {
        FakeMaps::new(&LoadOptions {
            table_size: 13,
            max_services: 4,
            max_backends: 8,
            ..LoadOptions::default()
        })
    }

    #[test]
    fn entries_follow_the_backends_and_go_with_the_service() {
        let mut maps = fake();
        let service = endpoint(100, 80);
        let nat = |backends: &[Endpoint]| NatReverse {
            service,
            backends: backends.iter().copied().collect(),
        };
        maps.set_nat(0, Some(&nat(&[endpoint(21, 80), endpoint(22, 8080)])))
            .unwrap();
        assert_eq!(
            maps.nat_reverse(),
            [(endpoint(21, 80), service), (endpoint(22, 8080), service)].into()
        );
        maps.set_nat(0, Some(&nat(&[endpoint(22, 8080)]))).unwrap();
        assert_eq!(maps.nat_reverse(), [(endpoint(22, 8080), service)].into());
        maps.set_nat(0, None).unwrap();
        assert!(maps.nat_reverse().is_empty());
    }

    #[test]
    fn a_failed_write_is_completed_by_the_next_call() {
        let mut maps = fake();
        let nat = NatReverse {
            service: endpoint(100, 80),
            backends: [endpoint(21, 80), endpoint(22, 80)].into(),
        };
        maps.fail_map(names::NAT_REVERSE);
        assert!(maps.set_nat(0, Some(&nat)).is_err());
        maps.heal();
        maps.set_nat(0, Some(&nat)).unwrap();
        assert_eq!(maps.nat_reverse().len(), 2);
    }
}
