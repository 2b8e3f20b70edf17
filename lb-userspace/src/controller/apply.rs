//! Applying a [`MapsImage`] to the maps through a [`MapWriter`], and the
//! record of what the maps really hold.
//!
//! [`Applier::apply`] writes only what differs from the record, in an order
//! that never lets a table name a backend that is not (yet, or any more) up:
//! backends becoming up first, then the services (each publication writes
//! the inactive half of its table and flips to it, see
//! [`MapWriter::set_service`]), then the other backends. It stops at the
//! first failed write, so that order holds after a failure too.
//!
//! The record is updated write by write: an entry whose write failed is
//! marked unknown and rewritten by the next apply, whatever the desired
//! image is by then. So a failed write followed by a change back to the
//! earlier state (a health flap) still converges on the next attempt.

use std::collections::BTreeSet;

use lb_common::maps::{self, backend_state, ServiceKey};

use super::image::{MapsImage, ServiceTable};
use crate::dataplane::{DataplaneError, MapWriter};

/// One write to the data path's maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapWrite {
    Backend { id: u32, backend: maps::Backend },
    Service { id: u32, table: ServiceTable },
    RemoveService { id: u32, key: ServiceKey },
}

/// An entry of the record: a backend id's entry or a service id's publication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Entry {
    Backend(u32),
    Service(u32),
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
                self.written.backends.insert(id, backend);
                self.unknown.insert(entry);
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

#[cfg(test)]
pub(super) mod tests {
    use lb_common::maps::names;

    use super::super::image::tests::{config, image, TABLE_SIZE};
    use super::*;
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
        }
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
        // 4 backends and 2 services; Maglev fills 13 slots, the ring has 4.
        assert_eq!(
            applied,
            Applied {
                map_writes: 6,
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
