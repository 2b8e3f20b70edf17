//! The only writer of the data path's maps: turns the desired state (the
//! configured services, the resolved neighbours and each backend's state and
//! weight) into map writes, and applies the difference from what is already
//! there.
//!
//! [`MapsImage::build`] and [`writes`] are pure, so the ordering and content
//! of every write are unit-tested without a kernel; [`Reconciler`] feeds them
//! to the [`Dataplane`].

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use lb_common::maglev::{build_table, MaglevBackend, MaglevError};
use lb_common::maps::{self, backend_state, ServiceKey};
use lb_common::ring::{round_robin_ring, RingError};

use crate::config::{Config, Protocol, Scheduler};
use crate::dataplane::{Dataplane, DataplaneError};
use crate::neighbour::Neighbour;

/// The ids the data path knows services and backends by: services in
/// configuration order from 0, and one backend id per (service, backend)
/// membership, from 0 across all services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub services: Vec<ServiceSlot>,
}

/// A service and the ids of its backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSlot {
    pub id: u32,
    pub name: String,
    pub vip: Ipv4Addr,
    pub port: u16,
    pub protocol: Protocol,
    pub scheduler: Scheduler,
    pub backends: Vec<BackendSlot>,
}

impl ServiceSlot {
    /// The service's key in the `SERVICES` map (network byte order).
    pub fn key(&self) -> ServiceKey {
        ServiceKey {
            vip: network_order(self.vip),
            port: self.port.to_be(),
            proto: self.protocol.ip_protocol(),
            _pad: 0,
        }
    }
}

/// One backend membership of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSlot {
    pub id: u32,
    pub name: String,
    pub address: Ipv4Addr,
    pub weight: u32,
}

impl Layout {
    /// Assigns the ids of `config`'s services and backends.
    pub fn new(config: &Config) -> Self {
        let mut backend_ids = 0..;
        let services = (0..)
            .zip(&config.services)
            .map(|(id, service)| ServiceSlot {
                id,
                name: service.name.clone(),
                vip: service.vip,
                port: service.port,
                protocol: service.protocol,
                scheduler: service.scheduler,
                backends: backend_ids
                    .by_ref()
                    .zip(&service.backends)
                    .map(|(id, backend)| BackendSlot {
                        id,
                        name: backend.name.clone(),
                        address: backend.address,
                        weight: backend.weight,
                    })
                    .collect(),
            })
            .collect();
        Layout { services }
    }

    /// Number of backend ids in use.
    pub fn backend_count(&self) -> usize {
        self.services.iter().map(|s| s.backends.len()).sum()
    }

    /// Every backend membership, in id order.
    pub fn backends(&self) -> impl Iterator<Item = &BackendSlot> {
        self.services.iter().flat_map(|service| &service.backends)
    }
}

/// How the data path treats one backend membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendState {
    /// In the service's table: takes new flows.
    Up,
    /// Out of the table; its established flows stay on it.
    Draining,
    /// Out of the table; its established flows move to a serving backend.
    Down,
}

/// What the controller wants for one backend membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendPlan {
    pub state: BackendState,
    /// Share of the service's new flows while up.
    pub weight: u32,
}

impl BackendState {
    fn map_value(self) -> u8 {
        match self {
            BackendState::Up => backend_state::UP,
            BackendState::Draining => backend_state::DRAINING,
            BackendState::Down => backend_state::DOWN,
        }
    }
}

/// Why the desired state could not be turned into map writes or applied.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("backend {backend} of service {service}: no resolved neighbour for {address}")]
    MissingNeighbour {
        service: String,
        backend: String,
        address: Ipv4Addr,
    },
    #[error("backend id {id} has no desired state")]
    MissingState { id: u32 },
    #[error("backend id {id} has weight 0: only backends with a weight take new flows")]
    ZeroWeight { id: u32 },
    #[error("service {service}: building the Maglev table")]
    Maglev {
        service: String,
        #[source]
        source: MaglevError,
    },
    #[error("service {service}: building the round-robin ring")]
    Ring {
        service: String,
        #[source]
        source: RingError,
    },
    #[error("writing the data path's maps")]
    Dataplane(#[from] DataplaneError),
}

/// A service's entry and scheduling table as the data path should see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceTable {
    pub key: ServiceKey,
    pub scheduler: maps::Scheduler,
    /// Backend ids: the Maglev table or the round-robin ring; empty when no
    /// backend is up.
    pub slots: Vec<u32>,
}

/// The content of the maps that the controller owns, keyed by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapsImage {
    pub backends: BTreeMap<u32, maps::Backend>,
    pub services: BTreeMap<u32, ServiceTable>,
}

impl MapsImage {
    /// The maps for `layout`, given each backend id's state and weight
    /// (`plans[id]`), the neighbours of the backend addresses, and the table
    /// size M (also the longest round-robin ring).
    pub fn build(
        layout: &Layout,
        plans: &[BackendPlan],
        neighbours: &HashMap<Ipv4Addr, Neighbour>,
        table_size: u32,
    ) -> Result<Self, ReconcileError> {
        let mut image = MapsImage::default();
        for service in &layout.services {
            let mut serving = Vec::new();
            for backend in &service.backends {
                let plan = *plans
                    .get(backend.id as usize)
                    .ok_or(ReconcileError::MissingState { id: backend.id })?;
                if plan.weight == 0 {
                    return Err(ReconcileError::ZeroWeight { id: backend.id });
                }
                let neighbour = neighbours.get(&backend.address).ok_or_else(|| {
                    ReconcileError::MissingNeighbour {
                        service: service.name.clone(),
                        backend: backend.name.clone(),
                        address: backend.address,
                    }
                })?;
                image.backends.insert(
                    backend.id,
                    maps::Backend {
                        ip: network_order(backend.address),
                        ifindex: neighbour.interface.index,
                        mac: neighbour.mac,
                        src_mac: neighbour.interface.mac,
                        state: plan.state.map_value(),
                        _pad: [0; 3],
                    },
                );
                if plan.state == BackendState::Up {
                    serving.push(Serving {
                        slot: backend,
                        weight: plan.weight,
                    });
                }
            }
            let (scheduler, slots) = match service.scheduler {
                Scheduler::Maglev => (
                    maps::Scheduler::Maglev,
                    maglev_slots(service, &serving, table_size)?,
                ),
                Scheduler::RoundRobin => (
                    maps::Scheduler::RoundRobin,
                    ring_slots(service, &serving, table_size)?,
                ),
            };
            image.services.insert(
                service.id,
                ServiceTable {
                    key: service.key(),
                    scheduler,
                    slots,
                },
            );
        }
        Ok(image)
    }
}

/// A backend that takes new flows, with its current weight.
struct Serving<'a> {
    slot: &'a BackendSlot,
    weight: u32,
}

fn maglev_slots(
    service: &ServiceSlot,
    serving: &[Serving<'_>],
    table_size: u32,
) -> Result<Vec<u32>, ReconcileError> {
    let backends: Vec<MaglevBackend> = serving
        .iter()
        .map(|backend| MaglevBackend {
            id: backend.slot.id,
            key: MaglevBackend::endpoint_key(backend.slot.address.octets(), service.port),
            weight: backend.weight,
        })
        .collect();
    build_table(&backends, table_size).map_err(|source| ReconcileError::Maglev {
        service: service.name.clone(),
        source,
    })
}

fn ring_slots(
    service: &ServiceSlot,
    serving: &[Serving<'_>],
    table_size: u32,
) -> Result<Vec<u32>, ReconcileError> {
    let weighted: Vec<(u32, u32)> = serving.iter().map(|b| (b.slot.id, b.weight)).collect();
    round_robin_ring(&weighted, table_size as usize).map_err(|source| ReconcileError::Ring {
        service: service.name.clone(),
        source,
    })
}

/// One write to the data path's maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapWrite {
    Backend { id: u32, backend: maps::Backend },
    Service { id: u32, table: ServiceTable },
    RemoveService { key: ServiceKey },
}

/// The writes that turn `current` into `desired`, in an order that never
/// lets a table name a backend that is not (yet, or any more) up:
/// backends becoming up first, then the services, then the other backends.
pub fn writes(current: &MapsImage, desired: &MapsImage) -> Vec<MapWrite> {
    let changed_backends = desired
        .backends
        .iter()
        .filter(|(id, backend)| current.backends.get(id) != Some(backend));
    let (up, not_up): (Vec<_>, Vec<_>) =
        changed_backends.partition(|(_, backend)| backend.state == backend_state::UP);
    let backend_write = |(id, backend): (&u32, &maps::Backend)| MapWrite::Backend {
        id: *id,
        backend: *backend,
    };

    let mut writes: Vec<MapWrite> = up.into_iter().map(backend_write).collect();
    for (id, table) in &current.services {
        let key_gone = desired
            .services
            .get(id)
            .is_none_or(|new| new.key != table.key);
        if key_gone {
            writes.push(MapWrite::RemoveService { key: table.key });
        }
    }
    for (id, table) in &desired.services {
        if current.services.get(id) != Some(table) {
            writes.push(MapWrite::Service {
                id: *id,
                table: table.clone(),
            });
        }
    }
    writes.extend(not_up.into_iter().map(backend_write));
    writes
}

/// What [`Reconciler::apply`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    /// Backend entries written, services published or removed.
    pub map_writes: usize,
    /// Scheduling table slots written by the publications.
    pub table_slots: usize,
}

/// Keeps the image of what the maps hold and applies desired states to them.
#[derive(Debug)]
pub struct Reconciler {
    layout: Layout,
    neighbours: HashMap<Ipv4Addr, Neighbour>,
    table_size: u32,
    applied: MapsImage,
}

impl Reconciler {
    /// A reconciler for freshly loaded (empty) maps.
    pub fn new(layout: Layout, neighbours: HashMap<Ipv4Addr, Neighbour>, table_size: u32) -> Self {
        Reconciler {
            layout,
            neighbours,
            table_size,
            applied: MapsImage::default(),
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Brings the maps to the state where backend id `i` is in `states[i]`
    /// with its configured weight; returns the number of map writes (a
    /// service's publication counts as one).
    pub fn reconcile(
        &mut self,
        dataplane: &mut Dataplane,
        states: &[BackendState],
    ) -> Result<usize, ReconcileError> {
        let plans: Vec<BackendPlan> = self
            .layout
            .backends()
            .zip(states)
            .map(|(backend, &state)| BackendPlan {
                state,
                weight: backend.weight,
            })
            .collect();
        Ok(self.apply(dataplane, &plans)?.map_writes)
    }

    /// Brings the maps to the state where backend id `i` follows `plans[i]`.
    /// After an error the maps may hold part of the change; the next call
    /// rewrites whatever still differs.
    pub fn apply(
        &mut self,
        dataplane: &mut Dataplane,
        plans: &[BackendPlan],
    ) -> Result<Applied, ReconcileError> {
        let desired = MapsImage::build(&self.layout, plans, &self.neighbours, self.table_size)?;
        let writes = writes(&self.applied, &desired);
        let mut applied = Applied {
            map_writes: writes.len(),
            table_slots: 0,
        };
        for write in &writes {
            match write {
                MapWrite::Backend { id, backend } => dataplane.set_backend(*id, backend)?,
                MapWrite::Service { id, table } => {
                    applied.table_slots +=
                        dataplane.set_service(table.key, *id, table.scheduler, &table.slots)?
                }
                MapWrite::RemoveService { key } => dataplane.remove_service(key)?,
            }
        }
        self.applied = desired;
        Ok(applied)
    }
}

/// `address` as a `u32` whose bytes in memory are in network order.
fn network_order(address: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(address.octets())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::neighbour::Interface;

    const TABLE_SIZE: u32 = 13;

    fn config() -> Config {
        let text = r#"
            [global]
            interface = "eth0"
            maglev_table_size = 13

            [[service]]
            name = "web"
            vip = "10.0.0.100"
            port = 80
            protocol = "tcp"

            [[service.backend]]
            name = "web1"
            address = "10.0.0.1"
            weight = 2

            [[service.backend]]
            name = "web2"
            address = "10.0.0.2"

            [[service]]
            name = "dns"
            vip = "10.0.0.100"
            port = 53
            protocol = "udp"
            scheduler = "round-robin"

            [[service.backend]]
            name = "web2"
            address = "10.0.0.2"

            [[service.backend]]
            name = "web3"
            address = "10.0.0.3"
            weight = 3
        "#;
        config::parse(text, "test.toml").unwrap()
    }

    fn neighbour(last: u8) -> Neighbour {
        Neighbour {
            interface: Interface {
                index: 7,
                name: "eth1".into(),
                mac: [0x02, 0, 0, 0, 0, 0xff],
            },
            mac: [0x02, 0, 0, 0, 0, last],
        }
    }

    fn neighbours() -> HashMap<Ipv4Addr, Neighbour> {
        (1..=3)
            .map(|last| (Ipv4Addr::new(10, 0, 0, last), neighbour(last)))
            .collect()
    }

    /// The image with backend id `i` in `states[i]` at its configured weight.
    fn image(states: &[BackendState]) -> MapsImage {
        let layout = Layout::new(&config());
        let plans: Vec<BackendPlan> = layout
            .backends()
            .zip(states)
            .map(|(backend, &state)| BackendPlan {
                state,
                weight: backend.weight,
            })
            .collect();
        image_of(&plans)
    }

    fn image_of(plans: &[BackendPlan]) -> MapsImage {
        MapsImage::build(&Layout::new(&config()), plans, &neighbours(), TABLE_SIZE).unwrap()
    }

    use BackendState::{Down, Draining, Up};

    #[test]
    fn ids_are_assigned_per_service_and_per_membership() {
        let layout = Layout::new(&config());
        let ids: Vec<(u32, Vec<(u32, &str)>)> = layout
            .services
            .iter()
            .map(|s| {
                (
                    s.id,
                    s.backends.iter().map(|b| (b.id, b.name.as_str())).collect(),
                )
            })
            .collect();
        assert_eq!(
            ids,
            vec![
                (0, vec![(0, "web1"), (1, "web2")]),
                (1, vec![(2, "web2"), (3, "web3")]),
            ]
        );
        assert_eq!(layout.backend_count(), 4);
    }

    #[test]
    fn keys_and_addresses_are_in_network_byte_order() {
        let layout = Layout::new(&config());
        let key = layout.services[1].key();
        assert_eq!(key.vip.to_ne_bytes(), [10, 0, 0, 100]);
        assert_eq!(key.port.to_ne_bytes(), [0, 53]);
        assert_eq!(key.proto, lb_common::maps::IPPROTO_UDP);
        let image = image(&[Up; 4]);
        assert_eq!(image.backends[&3].ip.to_ne_bytes(), [10, 0, 0, 3]);
    }

    #[test]
    fn backends_carry_their_neighbour_and_state() {
        let image = image(&[Up, Draining, Down, Up]);
        let web1 = image.backends[&0];
        assert_eq!(web1.ifindex, 7);
        assert_eq!(web1.mac, [0x02, 0, 0, 0, 0, 1]);
        assert_eq!(web1.src_mac, [0x02, 0, 0, 0, 0, 0xff]);
        let states: Vec<u8> = image.backends.values().map(|b| b.state).collect();
        assert_eq!(
            states,
            [
                backend_state::UP,
                backend_state::DRAINING,
                backend_state::DOWN,
                backend_state::UP
            ]
        );
    }

    #[test]
    fn maglev_tables_hold_every_up_backend_by_weight() {
        let image = image(&[Up; 4]);
        let web = &image.services[&0];
        assert_eq!(web.scheduler, maps::Scheduler::Maglev);
        assert_eq!(web.slots.len(), TABLE_SIZE as usize);
        let count = |id| web.slots.iter().filter(|&&slot| slot == id).count();
        // Weights 2 and 1 over 13 slots.
        assert!(count(0) > count(1) && count(1) >= 1, "{:?}", web.slots);
        assert_eq!(count(0) + count(1), TABLE_SIZE as usize);
    }

    #[test]
    fn round_robin_rings_are_weight_expanded() {
        let image = image(&[Up; 4]);
        let dns = &image.services[&1];
        assert_eq!(dns.scheduler, maps::Scheduler::RoundRobin);
        let mut sorted = dns.slots.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [2, 3, 3, 3]);
    }

    #[test]
    fn only_up_backends_are_in_tables() {
        let image = image(&[Up, Draining, Down, Up]);
        assert!(image.services[&0].slots.iter().all(|&id| id == 0));
        assert_eq!(image.services[&1].slots, [3]);
        let image = self::image(&[Down, Down, Draining, Draining]);
        assert!(image.services.values().all(|s| s.slots.is_empty()));
    }

    #[test]
    fn missing_neighbours_and_states_are_errors() {
        let layout = Layout::new(&config());
        let mut partial = neighbours();
        partial.remove(&Ipv4Addr::new(10, 0, 0, 3));
        let up = BackendPlan {
            state: Up,
            weight: 1,
        };
        let error = MapsImage::build(&layout, &[up; 4], &partial, TABLE_SIZE).unwrap_err();
        assert_eq!(
            error.to_string(),
            "backend web3 of service dns: no resolved neighbour for 10.0.0.3"
        );
        let error = MapsImage::build(&layout, &[up; 3], &neighbours(), TABLE_SIZE).unwrap_err();
        assert!(matches!(error, ReconcileError::MissingState { id: 3 }));
        let mut plans = [up; 4];
        plans[2].weight = 0;
        let error = MapsImage::build(&layout, &plans, &neighbours(), TABLE_SIZE).unwrap_err();
        assert!(matches!(error, ReconcileError::ZeroWeight { id: 2 }));
    }

    fn kinds(writes: &[MapWrite]) -> Vec<String> {
        writes
            .iter()
            .map(|write| match write {
                MapWrite::Backend { id, .. } => format!("backend {id}"),
                MapWrite::Service { id, .. } => format!("service {id}"),
                MapWrite::RemoveService { .. } => "remove".to_owned(),
            })
            .collect()
    }

    #[test]
    fn the_first_reconcile_writes_backends_before_services() {
        let writes = writes(&MapsImage::default(), &image(&[Up; 4]));
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
        assert!(writes(&image(&[Up; 4]), &image(&[Up; 4])).is_empty());
    }

    #[test]
    fn a_backend_going_down_leaves_the_table_before_its_state_changes() {
        let writes = writes(&image(&[Up; 4]), &image(&[Up, Up, Up, Down]));
        assert_eq!(kinds(&writes), ["service 1", "backend 3"]);
        let MapWrite::Service { table, .. } = &writes[0] else {
            unreachable!()
        };
        assert_eq!(table.slots, [2]);
    }

    #[test]
    fn a_backend_coming_up_is_written_before_the_table_names_it() {
        let writes = writes(&image(&[Up, Up, Up, Draining]), &image(&[Up; 4]));
        assert_eq!(kinds(&writes), ["backend 3", "service 1"]);
    }

    #[test]
    fn draining_takes_a_backend_out_of_the_table_and_keeps_its_entry_serving_flows() {
        let writes = writes(&image(&[Up; 4]), &image(&[Up, Up, Up, Draining]));
        assert_eq!(kinds(&writes), ["service 1", "backend 3"]);
        let MapWrite::Backend { backend, .. } = &writes[1] else {
            unreachable!()
        };
        assert_eq!(backend.state, backend_state::DRAINING);
    }

    #[test]
    fn a_weight_change_republishes_only_that_service() {
        let layout = Layout::new(&config());
        let mut plans: Vec<BackendPlan> = layout
            .backends()
            .map(|backend| BackendPlan {
                state: Up,
                weight: backend.weight,
            })
            .collect();
        let before = image_of(&plans);
        plans[3].weight = 1;
        let after = image_of(&plans);
        let writes = writes(&before, &after);
        assert_eq!(kinds(&writes), ["service 1"]);
        let mut ring = after.services[&1].slots.clone();
        ring.sort_unstable();
        assert_eq!(ring, [2, 3], "web2 and web3 now weigh the same");
    }

    #[test]
    fn with_every_backend_out_the_service_is_published_with_an_empty_table() {
        let writes = writes(&image(&[Up; 4]), &image(&[Down, Down, Up, Up]));
        assert_eq!(kinds(&writes), ["service 0", "backend 0", "backend 1"]);
        let MapWrite::Service { table, .. } = &writes[0] else {
            unreachable!()
        };
        assert!(table.slots.is_empty());
    }

    /// A Maglev service of `count` equal backends over a 251-slot table.
    fn maglev_image(count: u8, states: &[BackendState]) -> MapsImage {
        let mut text = String::from(
            "[global]\ninterface = \"eth0\"\nmaglev_table_size = 251\n\
             [[service]]\nname = \"web\"\nvip = \"10.0.0.100\"\nport = 80\nprotocol = \"tcp\"\n",
        );
        for n in 1..=count {
            text.push_str(&format!(
                "[[service.backend]]\nname = \"web{n}\"\naddress = \"10.0.0.{n}\"\n"
            ));
        }
        let layout = Layout::new(&config::parse(&text, "test.toml").unwrap());
        let plans: Vec<BackendPlan> = states
            .iter()
            .map(|&state| BackendPlan { state, weight: 1 })
            .collect();
        MapsImage::build(&layout, &plans, &neighbours_of(count), 251).unwrap()
    }

    fn neighbours_of(count: u8) -> HashMap<Ipv4Addr, Neighbour> {
        (1..=count)
            .map(|last| (Ipv4Addr::new(10, 0, 0, last), neighbour(last)))
            .collect()
    }

    /// Indexes of the slots that differ between two tables of equal length.
    fn changed_slots(before: &[u32], after: &[u32]) -> Vec<usize> {
        assert_eq!(before.len(), after.len());
        (0..before.len())
            .filter(|&i| before[i] != after[i])
            .collect()
    }

    #[test]
    fn a_maglev_backend_going_down_changes_its_own_slots_and_few_others() {
        let all_up = maglev_image(3, &[Up; 3]);
        let web2_down = maglev_image(3, &[Up, Down, Up]);
        let (before, after) = (&all_up.services[&0].slots, &web2_down.services[&0].slots);
        let changed = changed_slots(before, after);
        let web2_slots: Vec<usize> = (0..before.len()).filter(|&i| before[i] == 1).collect();
        assert!(after.iter().all(|&id| id != 1));
        assert!(web2_slots.iter().all(|slot| changed.contains(slot)));
        // Maglev's disruption is near minimal: few slots of the backends
        // that stay up move. What a republish writes is about a third.
        let others_moved = changed.len() - web2_slots.len();
        assert!(others_moved <= before.len() / 20, "{others_moved} moved");
        assert!((60..=120).contains(&changed.len()), "{}", changed.len());

        // Coming back restores most of the original table.
        let back = maglev_image(3, &[Up; 3]);
        assert_eq!(back.services[&0].slots, *before);
    }

    #[test]
    fn services_no_longer_desired_are_removed() {
        let mut desired = image(&[Up; 4]);
        desired.services.remove(&1);
        let writes = writes(&image(&[Up; 4]), &desired);
        assert_eq!(
            writes,
            [MapWrite::RemoveService {
                key: Layout::new(&config()).services[1].key()
            }]
        );
    }
}
