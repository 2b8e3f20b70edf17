//! Applying a [`MapsImage`] to the maps through a [`MapWriter`], and the
//! record of what the maps really hold.
//!
//! [`Applier::apply`] writes only what differs from the record, in an order
//! that never lets a table name a backend that is not (yet, or any more) up,
//! nor publishes a service before its source policies are in place:
//! backends becoming up first, then the removal of services no longer
//! wanted and of their policies, then the policies of the services wanted,
//! then the services (each publication writes the inactive half of its
//! table and flips to it, see [`MapWriter::set_service`]), then the other
//! backends. It stops at the first failed write, so that order holds after
//! a failure too.
//!
//! The record is updated write by write: an entry whose write failed is
//! marked unknown and rewritten by the next apply, whatever the desired
//! image is by then. So a failed write followed by a change back to the
//! earlier state (a health flap) still converges on the next attempt.

use std::collections::BTreeSet;

use lb_common::maps::{self, backend_state, ServiceKey};

use super::image::{MapsImage, ServicePolicy, ServiceTable};
use crate::dataplane::{DataplaneError, MapWriter};

/// One write to the data path's maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapWrite {
    Backend {
        id: u32,
        backend: maps::Backend,
    },
    Service {
        id: u32,
        table: ServiceTable,
    },
    RemoveService {
        id: u32,
        key: ServiceKey,
    },
    /// A service id's rate limit and allow-list.
    Policy {
        id: u32,
        policy: ServicePolicy,
    },
    /// The policies of a service id no longer in use, cleared.
    RemovePolicy {
        id: u32,
    },
}

/// An entry of the record: a backend id's entry, a service id's publication
/// or its source policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Entry {
    Backend(u32),
    Service(u32),
    Policy(u32),
}

/// What [`Applier::apply`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    /// Backend entries written, services published or removed.
    pub map_writes: usize,
    /// Scheduling table slots written by the publications.
    pub table_slots: usize,
}

/// The record of what the maps hold, and the writes that bring them to a
/// desired image.
#[derive(Debug, Clone, Default)]
pub struct Applier {
    /// The last value written, or being written, to each entry.
    written: MapsImage,
    /// Entries whose last write failed: the maps may hold anything there.
    unknown: BTreeSet<Entry>,
}

impl Applier {
    /// The record of freshly loaded (empty) maps.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the maps are known to hold exactly `desired`.
    pub fn holds(&self, desired: &MapsImage) -> bool {
        self.unknown.is_empty() && self.written == *desired
    }

    /// Brings the maps to `desired`. After an error the maps hold part of
    /// the change, as recorded; the next call writes what is still missing.
    pub fn apply(
        &mut self,
        maps: &mut (impl MapWriter + ?Sized),
        desired: &MapsImage,
    ) -> Result<Applied, DataplaneError> {
        let mut applied = Applied::default();
        for write in self.writes(desired) {
            applied.table_slots += self.write(maps, write)?;
            applied.map_writes += 1;
        }
        Ok(applied)
    }

    /// Carries out `write`, recording it as unknown until it succeeded;
    /// returns the table slots it wrote.
    fn write(
        &mut self,
        maps: &mut (impl MapWriter + ?Sized),
        write: MapWrite,
    ) -> Result<usize, DataplaneError> {
        match write {
            MapWrite::Backend { id, backend } => {
                let entry = Entry::Backend(id);
                let was_up = self
                    .written
                    .backends
                    .get(&id)
                    .is_some_and(|written| written.state == backend_state::UP);
                self.written.backends.insert(id, backend);
                self.unknown.insert(entry);
                // A backend that takes new flows again starts with a clean
                // handshake record: an ejection the controller acted on
                // must not outlive the verdict.
                if backend.state == backend_state::UP && !was_up {
                    maps.clear_handshakes(id)?;
                }
                maps.set_backend(id, &backend)?;
                self.unknown.remove(&entry);
                Ok(0)
            }
            MapWrite::Service { id, table } => {
                let entry = Entry::Service(id);
                let result = maps.set_service(table.key, id, table.scheduler, &table.slots);
                // Recorded whatever the outcome: if it failed, the key it was
                // published under is the one a later removal must delete.
                self.written.services.insert(id, table);
                self.unknown.insert(entry);
                let slots = result?;
                self.unknown.remove(&entry);
                Ok(slots)
            }
            MapWrite::RemoveService { id, key } => {
                let entry = Entry::Service(id);
                self.unknown.insert(entry);
                maps.remove_service(&key)?;
                self.written.services.remove(&id);
                self.unknown.remove(&entry);
                Ok(0)
            }
            MapWrite::Policy { id, policy } => {
                let entry = Entry::Policy(id);
                self.unknown.insert(entry);
                write_policy(maps, id, &policy)?;
                self.written.policies.insert(id, policy);
                self.unknown.remove(&entry);
                Ok(0)
            }
            MapWrite::RemovePolicy { id } => {
                let entry = Entry::Policy(id);
                self.unknown.insert(entry);
                write_policy(maps, id, &ServicePolicy::default())?;
                self.written.policies.remove(&id);
                self.unknown.remove(&entry);
                Ok(0)
            }
        }
    }

    /// The writes that turn what the maps hold into `desired`, in the order
    /// of the module documentation.
    pub fn writes(&self, desired: &MapsImage) -> Vec<MapWrite> {
        let stale = |entry: Entry, same: bool| !same || self.unknown.contains(&entry);
        let changed_backends = desired.backends.iter().filter(|(&id, backend)| {
            stale(
                Entry::Backend(id),
                self.written.backends.get(&id) == Some(backend),
            )
        });
        let (up, not_up): (Vec<_>, Vec<_>) =
            changed_backends.partition(|(_, backend)| backend.state == backend_state::UP);
        let backend_write = |(id, backend): (&u32, &maps::Backend)| MapWrite::Backend {
            id: *id,
            backend: *backend,
        };

        let mut writes: Vec<MapWrite> = up.into_iter().map(backend_write).collect();
        for (&id, table) in &self.written.services {
            let key_gone = desired
                .services
                .get(&id)
                .is_none_or(|new| new.key != table.key);
            if key_gone {
                writes.push(MapWrite::RemoveService { id, key: table.key });
            }
        }
        for &id in self.written.policies.keys() {
            if !desired.policies.contains_key(&id) {
                writes.push(MapWrite::RemovePolicy { id });
            }
        }
        for (&id, policy) in &desired.policies {
            if stale(
                Entry::Policy(id),
                self.written.policies.get(&id) == Some(policy),
            ) {
                writes.push(MapWrite::Policy {
                    id,
                    policy: policy.clone(),
                });
            }
        }
        for (&id, table) in &desired.services {
            if stale(
                Entry::Service(id),
                self.written.services.get(&id) == Some(table),
            ) {
                writes.push(MapWrite::Service {
                    id,
                    table: table.clone(),
                });
            }
        }
        writes.extend(not_up.into_iter().map(backend_write));
        writes
    }
}

/// Writes each of a service id's policies.
fn write_policy(
    maps: &mut (impl MapWriter + ?Sized),
    id: u32,
    policy: &ServicePolicy,
) -> Result<(), DataplaneError> {
    maps.set_rate_limit(id, policy.rate_limit)?;
    maps.set_allow_list(id, policy.allow.as_deref())?;
    maps.set_observe(id, policy.observe)?;
    maps.set_nat(id, policy.nat.as_ref())
}

#[cfg(test)]
pub(super) mod tests {
    use std::collections::BTreeMap;

    use lb_common::maps::{names, service_flags, SourcePrefix};

    use super::super::image::tests::{config, image, neighbours_of, TABLE_SIZE};
    use super::super::image::BackendPlan;
    use super::*;
    use crate::config::SourceRateLimit;
    use crate::controller::layout::Layout;
    use crate::dataplane::fake::FakeMaps;
    use crate::dataplane::LoadOptions;
    use crate::domain::BackendState::{self, Down, Draining, Up};

    fn fake() -> FakeMaps {
        FakeMaps::new(&LoadOptions {
            table_size: TABLE_SIZE,
            max_services: 4,
            max_backends: 8,
            ..LoadOptions::default()
        })
    }

    /// An applier that has written `image` to a fresh fake.
    fn holding(image: &MapsImage) -> (Applier, FakeMaps) {
        let mut maps = fake();
        let mut applier = Applier::new();
        applier.apply(&mut maps, image).unwrap();
        assert!(applier.holds(image));
        (applier, maps)
    }

    fn kinds(writes: &[MapWrite]) -> Vec<String> {
        writes
            .iter()
            .map(|write| match write {
                MapWrite::Backend { id, .. } => format!("backend {id}"),
                MapWrite::Service { id, .. } => format!("service {id}"),
                MapWrite::RemoveService { id, .. } => format!("remove {id}"),
                MapWrite::Policy { id, .. } => format!("policy {id}"),
                MapWrite::RemovePolicy { id } => format!("remove policy {id}"),
            })
            .collect()
    }

    /// Asserts that `maps` hold `image`, as the data path reads them.
    pub(in crate::controller) fn assert_maps_hold(maps: &FakeMaps, image: &MapsImage) {
        for (&id, backend) in &image.backends {
            assert_eq!(maps.backend(id).as_ref(), Some(backend), "backend {id}");
        }
        for (&id, table) in &image.services {
            let (service, slots) = maps.live_table(&table.key).expect("service published");
            assert_eq!(service.id, id);
            assert_eq!(service.scheduler, table.scheduler as u8);
            assert_eq!(slots, table.slots, "service {id}");
            let policy = &image.policies[&id];
            let mut flags = 0;
            if policy.rate_limit.refill_interval_ns != 0 {
                flags |= service_flags::RATE_LIMIT;
            }
            if policy.allow.is_some() {
                flags |= service_flags::ALLOW_LIST;
            }
            if policy.observe.is_some() {
                flags |= service_flags::OBSERVE;
            }
            if policy.nat.is_some() {
                flags |= service_flags::NAT;
            }
            assert_eq!(service.flags, flags, "flags of service {id}");
        }
        for (&id, policy) in &image.policies {
            assert_eq!(maps.rate_limit(id), policy.rate_limit, "service {id}");
            let mut allowed = policy.allow.clone().unwrap_or_default();
            allowed.sort_unstable();
            assert_eq!(maps.allowed(id), allowed, "allow-list of service {id}");
        }
    }

    /// A service's policies in [`image_with_policies`].
    struct PolicySpec<'a> {
        service: &'a str,
        allow: Option<&'a [&'a str]>,
        per_second: Option<u32>,
    }

    /// The image of [`config`] with `policies` added, every backend up.
    fn image_with_policies(policies: &[PolicySpec<'_>]) -> MapsImage {
        let mut config = config();
        for &PolicySpec {
            service: name,
            allow,
            per_second,
        } in policies
        {
            let service = config.services.iter_mut().find(|s| s.name == name).unwrap();
            service.allow = allow.map(|list| {
                list.iter()
                    .map(|text| {
                        let (address, len) = text.split_once('/').unwrap();
                        let address: std::net::Ipv4Addr = address.parse().unwrap();
                        SourcePrefix::new(address.octets(), len.parse().unwrap()).unwrap()
                    })
                    .collect()
            });
            service.rate_limit = per_second.map(|per_second| SourceRateLimit {
                per_second,
                burst: per_second,
            });
        }
        let plans: BTreeMap<u32, BackendPlan> = (0..4)
            .map(|id| {
                let plan = BackendPlan {
                    state: Up,
                    weight: 1,
                    standby: false,
                    keeps_flows: false,
                };
                (id, plan)
            })
            .collect();
        MapsImage::build(&Layout::new(&config), &plans, &neighbours_of(3), TABLE_SIZE).unwrap()
    }

    #[test]
    fn policies_reach_the_maps_before_their_services_and_follow_each_change() {
        let restricted = image_with_policies(&[
            PolicySpec {
                service: "web",
                allow: Some(&["203.0.113.0/24", "198.51.100.7/32"]),
                per_second: Some(10),
            },
            PolicySpec {
                service: "dns",
                allow: None,
                per_second: Some(100),
            },
        ]);
        assert_eq!(
            restricted.policies[&0].rate_limit,
            lb_common::maps::RateLimit::new(10, 10)
        );
        let writes = Applier::new().writes(&restricted);
        let order = kinds(&writes);
        let first_service = order.iter().position(|k| k.starts_with("service")).unwrap();
        assert!(order[..first_service].contains(&"policy 0".to_owned()));
        assert!(order[..first_service].contains(&"policy 1".to_owned()));
        let (mut applier, mut maps) = holding(&restricted);
        assert_maps_hold(&maps, &restricted);

        // The next configuration (a restart, or a reload through the same
        // record) lifts web's list, changes dns's limit: only policies move.
        let relaxed = image_with_policies(&[PolicySpec {
            service: "dns",
            allow: None,
            per_second: Some(5),
        }]);
        assert_eq!(kinds(&applier.writes(&relaxed)), ["policy 0", "policy 1"]);
        applier.apply(&mut maps, &relaxed).unwrap();
        assert_maps_hold(&maps, &relaxed);
        assert!(applier.holds(&relaxed));

        // A service that goes away takes its policy with it.
        let mut without_dns = relaxed.clone();
        without_dns.services.remove(&1);
        without_dns.policies.remove(&1);
        assert_eq!(
            kinds(&applier.writes(&without_dns)),
            ["remove 1", "remove policy 1"]
        );
        applier.apply(&mut maps, &without_dns).unwrap();
        assert_eq!(maps.rate_limit(1), lb_common::maps::RateLimit::default());
        assert!(applier.holds(&without_dns));
    }

    #[test]
    fn a_failed_policy_write_is_retried_and_no_service_is_published_before_it() {
        let restricted = image_with_policies(&[PolicySpec {
            service: "web",
            allow: Some(&["203.0.113.0/24"]),
            per_second: None,
        }]);
        let mut maps = fake();
        maps.fail_map(names::ALLOW_LISTS);
        let mut applier = Applier::new();
        assert!(applier.apply(&mut maps, &restricted).is_err());
        let key = Layout::new(&config()).services[0].key();
        assert!(
            maps.live_table(&key).is_none(),
            "published without its list"
        );
        maps.heal();
        applier.apply(&mut maps, &restricted).unwrap();
        assert_maps_hold(&maps, &restricted);
    }

    #[test]
    fn the_first_apply_writes_backends_before_services() {
        let writes = Applier::new().writes(&image(&[Up; 4]));
        assert_eq!(
            kinds(&writes),
            [
                "backend 0",
                "backend 1",
                "backend 2",
                "backend 3",
                "policy 0",
                "policy 1",
                "service 0",
                "service 1"
            ]
        );
    }

    #[test]
    fn nothing_changed_means_no_writes() {
        let (applier, _) = holding(&image(&[Up; 4]));
        assert!(applier.writes(&image(&[Up; 4])).is_empty());
    }

    #[test]
    fn a_backend_going_down_leaves_the_table_before_its_state_changes() {
        let (applier, _) = holding(&image(&[Up; 4]));
        let writes = applier.writes(&image(&[Up, Up, Up, Down]));
        assert_eq!(kinds(&writes), ["service 1", "backend 3"]);
        let MapWrite::Service { table, .. } = &writes[0] else {
            unreachable!()
        };
        assert_eq!(table.slots, [2]);
    }

    #[test]
    fn a_backend_coming_up_is_written_before_the_table_names_it() {
        let (applier, _) = holding(&image(&[Up, Up, Up, Draining]));
        let writes = applier.writes(&image(&[Up; 4]));
        assert_eq!(kinds(&writes), ["backend 3", "service 1"]);
    }

    #[test]
    fn draining_takes_a_backend_out_of_the_table_and_keeps_its_entry_serving_flows() {
        let (applier, _) = holding(&image(&[Up; 4]));
        let writes = applier.writes(&image(&[Up, Up, Up, Draining]));
        assert_eq!(kinds(&writes), ["service 1", "backend 3"]);
        let MapWrite::Backend { backend, .. } = &writes[1] else {
            unreachable!()
        };
        assert_eq!(backend.state, backend_state::DRAINING);
    }

    #[test]
    fn with_every_backend_out_the_service_is_published_with_an_empty_table() {
        let (applier, _) = holding(&image(&[Up; 4]));
        let writes = applier.writes(&image(&[Down, Down, Up, Up]));
        assert_eq!(kinds(&writes), ["service 0", "backend 0", "backend 1"]);
        let MapWrite::Service { table, .. } = &writes[0] else {
            unreachable!()
        };
        assert!(table.slots.is_empty());
    }

    #[test]
    fn services_no_longer_desired_are_removed() {
        let (mut applier, mut maps) = holding(&image(&[Up; 4]));
        let mut desired = image(&[Up; 4]);
        desired.services.remove(&1);
        let key = Layout::new(&config()).services[1].key();
        let writes = applier.writes(&desired);
        assert_eq!(writes, [MapWrite::RemoveService { id: 1, key }]);
        applier.apply(&mut maps, &desired).unwrap();
        assert!(maps.live_table(&key).is_none());
        // The VIP still carries service 0.
        assert_eq!(maps.vip(key.vip), Some(1));
        assert!(applier.holds(&desired));
    }

    #[test]
    fn an_apply_counts_its_writes_and_slots() {
        let mut maps = fake();
        let applied = Applier::new().apply(&mut maps, &image(&[Up; 4])).unwrap();
        // 4 backends, 2 services and their policies; Maglev fills 13 slots,
        // the ring has 4.
        assert_eq!(
            applied,
            Applied {
                map_writes: 8,
                table_slots: 13 + 4
            }
        );
    }

    /// Applies `from`, then `to` with write `n` of it failing, then
    /// `back` without failures.
    fn fail_then_apply(
        from: &[BackendState],
        to: &[BackendState],
        n: usize,
        back: &[BackendState],
    ) -> (Applier, FakeMaps) {
        let (mut applier, mut maps) = holding(&image(from));
        maps.fail_write(n);
        let attempts = maps.attempts();
        let result = applier.apply(&mut maps, &image(to));
        assert!(maps.attempts() > attempts + n, "write {n} was reached");
        assert!(result.is_err(), "write {n} failed");
        assert!(!applier.holds(&image(to)));
        applier.apply(&mut maps, &image(back)).unwrap();
        (applier, maps)
    }

    /// How many map writes (attempts) going from `from` to `to` takes.
    fn attempts_of(from: &[BackendState], to: &[BackendState]) -> usize {
        let (mut applier, mut maps) = holding(&image(from));
        let before = maps.attempts();
        applier.apply(&mut maps, &image(to)).unwrap();
        maps.attempts() - before
    }

    #[test]
    fn after_a_failed_write_and_a_flap_back_the_maps_return_to_the_earlier_state() {
        // web2 in dns (id 3) goes down, and each write of that change fails
        // in turn; then its health flaps back up.
        let earlier = [Up; 4];
        let down = [Up, Up, Up, Down];
        for n in 0..attempts_of(&earlier, &down) {
            let (applier, maps) = fail_then_apply(&earlier, &down, n, &earlier);
            assert_maps_hold(&maps, &image(&earlier));
            assert!(applier.holds(&image(&earlier)), "after failing write {n}");
        }
    }

    #[test]
    fn after_a_failed_write_the_next_apply_of_the_same_image_completes_it() {
        let earlier = [Up; 4];
        let later = [Down, Up, Draining, Up];
        for n in 0..attempts_of(&earlier, &later) {
            let (applier, maps) = fail_then_apply(&earlier, &later, n, &later);
            assert_maps_hold(&maps, &image(&later));
            assert!(applier.holds(&image(&later)), "after failing write {n}");
        }
    }

    #[test]
    fn a_failed_removal_is_retried() {
        let (mut applier, mut maps) = holding(&image(&[Up; 4]));
        let mut desired = image(&[Up; 4]);
        desired.services.remove(&1);
        maps.fail_map(names::SERVICES);
        assert!(applier.apply(&mut maps, &desired).is_err());
        maps.heal();
        applier.apply(&mut maps, &desired).unwrap();
        let key = Layout::new(&config()).services[1].key();
        assert!(maps.live_table(&key).is_none());
        assert!(applier.holds(&desired));
    }

    #[test]
    fn a_failed_backend_write_stops_before_a_table_names_it() {
        let (mut applier, mut maps) = holding(&image(&[Up, Up, Up, Draining]));
        maps.fail_map(names::BACKENDS);
        assert!(applier.apply(&mut maps, &image(&[Up; 4])).is_err());
        // The ring still holds web2 only: web3 is not named while its entry
        // may still say draining.
        let key = Layout::new(&config()).services[1].key();
        assert_eq!(maps.live_table(&key).unwrap().1, [2]);
    }
}
