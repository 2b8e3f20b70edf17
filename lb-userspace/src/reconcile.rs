//! The only writer of the data path's maps: turns the desired state (the
//! configured services, the resolved neighbours and each backend's state)
//! into map writes, and applies the difference from what is already there.
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
}

/// What the controller wants for one backend membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendState {
    /// In the service's table: takes new flows.
    Up,
    /// Out of the table; its established flows stay on it.
    Draining,
    /// Out of the table; its established flows move to a serving backend.
    Down,
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
    /// The maps for `layout`, given each backend id's state (`states[id]`),
    /// the neighbours of the backend addresses, and the table size M (also
    /// the longest round-robin ring).
    pub fn build(
        layout: &Layout,
        states: &[BackendState],
        neighbours: &HashMap<Ipv4Addr, Neighbour>,
        table_size: u32,
    ) -> Result<Self, ReconcileError> {
        let mut image = MapsImage::default();
        for service in &layout.services {
            let mut serving = Vec::new();
            for backend in &service.backends {
                let state = *states
                    .get(backend.id as usize)
                    .ok_or(ReconcileError::MissingState { id: backend.id })?;
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
                        state: state.map_value(),
                        _pad: [0; 3],
                    },
                );
                if state == BackendState::Up {
                    serving.push(backend);
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

fn maglev_slots(
    service: &ServiceSlot,
    serving: &[&BackendSlot],
    table_size: u32,
) -> Result<Vec<u32>, ReconcileError> {
    let backends: Vec<MaglevBackend> = serving
        .iter()
        .map(|backend| MaglevBackend {
            id: backend.id,
            key: MaglevBackend::endpoint_key(backend.address.octets(), service.port),
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
    serving: &[&BackendSlot],
    table_size: u32,
) -> Result<Vec<u32>, ReconcileError> {
    let weighted: Vec<(u32, u32)> = serving.iter().map(|b| (b.id, b.weight)).collect();
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

    /// Brings the maps to the state where backend id `i` is in `states[i]`;
    /// returns the number of writes. After an error the maps may hold part
    /// of the change; the next call rewrites whatever still differs.
    pub fn reconcile(
        &mut self,
        dataplane: &mut Dataplane,
        states: &[BackendState],
    ) -> Result<usize, ReconcileError> {
        let desired = MapsImage::build(&self.layout, states, &self.neighbours, self.table_size)?;
        let writes = writes(&self.applied, &desired);
        for write in &writes {
            match write {
                MapWrite::Backend { id, backend } => dataplane.set_backend(*id, backend)?,
                MapWrite::Service { id, table } => {
                    dataplane.set_service(table.key, *id, table.scheduler, &table.slots)?
                }
                MapWrite::RemoveService { key } => dataplane.remove_service(key)?,
            }
        }
        self.applied = desired;
        Ok(writes.len())
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

    fn image(states: &[BackendState]) -> MapsImage {
        MapsImage::build(&Layout::new(&config()), states, &neighbours(), TABLE_SIZE).unwrap()
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
        let error = MapsImage::build(&layout, &[Up; 4], &partial, TABLE_SIZE).unwrap_err();
        assert_eq!(
            error.to_string(),
            "backend web3 of service dns: no resolved neighbour for 10.0.0.3"
        );
        let error = MapsImage::build(&layout, &[Up; 3], &neighbours(), TABLE_SIZE).unwrap_err();
        assert!(matches!(error, ReconcileError::MissingState { id: 3 }));
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
