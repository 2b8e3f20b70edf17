//! Which id and which table slot holds which backend: the ids the data path
//! knows services and backends by, and the construction of each service's
//! scheduling table (Maglev) or ring (round-robin) from its serving backends.
//!
//! The flow table records each flow's backend by id, so an id must keep
//! naming the same server while flows may name it: a reload keeps the ids
//! of what remains, and gives what it adds ids never used before while
//! there are any, so a flow of a removed backend (its id written down, see
//! [`Layout::retired_backends`]) does not land on a new one.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use lb_common::maglev::{build_table, MaglevBackend};
use lb_common::maps::{self, ServiceKey};
use lb_common::ring::round_robin_ring;

use super::error::PublishError;
use crate::config::{
    Backend, Config, Forwarding, PassiveHealth, Protocol, Scheduler, Service, SourcePrefix,
    SourceRateLimit,
};

/// The ids the data path knows services and backends by: at start,
/// services in configuration order from 0, and one backend id per (service,
/// backend) membership, from 0 across all services; after a reload, see
/// [`Layout::reassigned`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub services: Vec<ServiceSlot>,
    service_ids: IdPool,
    backend_ids: IdPool,
}

/// Ids below a capacity: those never handed out first, then the lowest one
/// given back.
#[derive(Debug, Clone, PartialEq, Eq)]
struct IdPool {
    capacity: u32,
    /// Every id below it has been handed out.
    next_fresh: u32,
    /// Handed out and given back since.
    freed: BTreeSet<u32>,
}

impl IdPool {
    /// A pool whose ids below `taken` are in use.
    fn with_taken(taken: u32, capacity: u32) -> Self {
        IdPool {
            capacity,
            next_fresh: taken,
            freed: BTreeSet::new(),
        }
    }

    fn take(&mut self) -> Option<u32> {
        if self.next_fresh < self.capacity {
            self.next_fresh += 1;
            Some(self.next_fresh - 1)
        } else {
            self.freed.pop_first()
        }
    }

    fn give_back(&mut self, id: u32) {
        self.freed.insert(id);
    }
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
    pub forwarding: Forwarding,
    /// The sources the service takes (`allow`); `None`: every source.
    pub allow: Option<Vec<SourcePrefix>>,
    /// The per-source new-flow limit; `None`: none.
    pub rate_limit: Option<SourceRateLimit>,
    /// Passive health; `None`: off.
    pub observe: Option<PassiveHealth>,
    pub backends: Vec<BackendSlot>,
}

impl ServiceSlot {
    /// `service` under data path id `id`, with its `backends`' slots.
    fn of(id: u32, service: &Service, backends: Vec<BackendSlot>) -> Self {
        ServiceSlot {
            id,
            name: service.name.clone(),
            vip: service.vip,
            port: service.port,
            protocol: service.protocol,
            scheduler: service.scheduler,
            forwarding: service.forwarding,
            allow: service.allow.clone(),
            rate_limit: service.rate_limit,
            observe: service.health.as_ref().and_then(|health| health.observe),
            backends,
        }
    }
}

/// One backend membership of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSlot {
    pub id: u32,
    pub name: String,
    pub address: Ipv4Addr,
    /// The port it serves the service on (see [`Backend::port`]).
    pub port: u16,
    pub weight: u32,
}

impl BackendSlot {
    /// `backend` under data path id `id`.
    fn of(id: u32, backend: &Backend) -> Self {
        BackendSlot {
            id,
            name: backend.name.clone(),
            address: backend.address,
            port: backend.port,
            weight: backend.weight,
        }
    }
}

/// A backend that takes new flows, with its current weight.
#[derive(Debug, Clone, Copy)]
pub struct Serving<'a> {
    pub slot: &'a BackendSlot,
    pub weight: u32,
}

impl Layout {
    /// Assigns the ids of `config`'s services and backends.
    pub fn new(config: &Config) -> Self {
        let mut backend_ids = 0..;
        let services: Vec<ServiceSlot> = (0..)
            .zip(&config.services)
            .map(|(id, service)| {
                let backends = backend_ids
                    .by_ref()
                    .zip(&service.backends)
                    .map(|(id, backend)| BackendSlot::of(id, backend))
                    .collect();
                ServiceSlot::of(id, service, backends)
            })
            .collect();
        let taken_backends = services.iter().map(|s| s.backends.len()).sum::<usize>();
        Layout {
            // Fit: validation keeps them within max_services and max_backends.
            service_ids: IdPool::with_taken(services.len() as u32, config.global.max_services),
            backend_ids: IdPool::with_taken(taken_backends as u32, config.global.max_backends),
            services,
        }
    }

    /// The layout of `config` after a reload from this one: a service of
    /// the same name keeps its id, and so does a backend of the same name
    /// and address in it; the others get ids never used while there are
    /// any (see the module documentation). `config` must have the same
    /// `max_services` and `max_backends` (they need a restart).
    pub fn reassigned(&self, config: &Config) -> Layout {
        let mut service_ids = self.service_ids.clone();
        let mut backend_ids = self.backend_ids.clone();
        let remaining = |name: &str| config.services.iter().find(|s| s.name == name);
        // Given back first: with no fresh id left, a new membership takes one.
        for old in &self.services {
            let service = remaining(&old.name);
            if service.is_none() {
                service_ids.give_back(old.id);
            }
            for backend in &old.backends {
                let kept = service.is_some_and(|service| {
                    service
                        .backends
                        .iter()
                        .any(|b| b.name == backend.name && b.address == backend.address)
                });
                if !kept {
                    backend_ids.give_back(backend.id);
                }
            }
        }
        let exhausted =
            "validation keeps the services and memberships within max_services and max_backends";
        let services = config
            .services
            .iter()
            .map(|service| {
                let old = self.services.iter().find(|s| s.name == service.name);
                let id = old.map_or_else(|| service_ids.take().expect(exhausted), |old| old.id);
                let backends = service
                    .backends
                    .iter()
                    .map(|backend| {
                        let kept = old.and_then(|old| {
                            old.backends
                                .iter()
                                .find(|b| b.name == backend.name && b.address == backend.address)
                        });
                        let id = kept
                            .map_or_else(|| backend_ids.take().expect(exhausted), |kept| kept.id);
                        BackendSlot::of(id, backend)
                    })
                    .collect();
                ServiceSlot::of(id, service, backends)
            })
            .collect();
        Layout {
            services,
            service_ids,
            backend_ids,
        }
    }

    /// Backend ids that a reload freed and no membership uses now: their
    /// entries are written empty (down), so the flows still recorded for
    /// them move to a serving backend like those of a `down` one.
    pub fn retired_backends(&self) -> impl Iterator<Item = u32> + '_ {
        self.backend_ids.freed.iter().copied()
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

    /// The service's scheduler as the data path encodes it, and its table of
    /// backend ids over `serving`: the Maglev table of `table_size` slots, or
    /// the weight-expanded round-robin ring of at most `table_size` slots.
    /// Empty when no backend serves.
    pub fn table(
        &self,
        serving: &[Serving<'_>],
        table_size: u32,
    ) -> Result<(maps::Scheduler, Vec<u32>), PublishError> {
        match self.scheduler {
            Scheduler::Maglev => Ok((
                maps::Scheduler::Maglev,
                self.maglev_table(serving, table_size)?,
            )),
            Scheduler::Source => Ok((
                maps::Scheduler::Source,
                self.maglev_table(serving, table_size)?,
            )),
            Scheduler::RoundRobin => {
                Ok((maps::Scheduler::RoundRobin, self.ring(serving, table_size)?))
            }
        }
    }

    fn maglev_table(
        &self,
        serving: &[Serving<'_>],
        table_size: u32,
    ) -> Result<Vec<u32>, PublishError> {
        let backends: Vec<MaglevBackend> = serving
            .iter()
            .map(|backend| MaglevBackend {
                id: backend.slot.id,
                key: MaglevBackend::endpoint_key(backend.slot.address.octets(), self.port),
                weight: backend.weight,
            })
            .collect();
        build_table(&backends, table_size).map_err(|source| PublishError::Maglev {
            service: self.name.clone(),
            source,
        })
    }

    fn ring(&self, serving: &[Serving<'_>], table_size: u32) -> Result<Vec<u32>, PublishError> {
        let weighted: Vec<(u32, u32)> = serving.iter().map(|b| (b.slot.id, b.weight)).collect();
        round_robin_ring(&weighted, table_size as usize).map_err(|source| PublishError::Ring {
            service: self.name.clone(),
            source,
        })
    }
}

/// `address` as a `u32` whose bytes in memory are in network order.
pub fn network_order(address: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(address.octets())
}

#[cfg(test)]
mod tests {
    use super::super::image::tests::config;
    use super::*;

    fn all_serving(service: &ServiceSlot) -> Vec<Serving<'_>> {
        service
            .backends
            .iter()
            .map(|slot| Serving {
                slot,
                weight: slot.weight,
            })
            .collect()
    }

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
    fn keys_are_in_network_byte_order() {
        let layout = Layout::new(&config());
        let key = layout.services[1].key();
        assert_eq!(key.vip.to_ne_bytes(), [10, 0, 0, 100]);
        assert_eq!(key.port.to_ne_bytes(), [0, 53]);
        assert_eq!(key.proto, lb_common::maps::IPPROTO_UDP);
    }

    #[test]
    fn maglev_tables_hold_every_serving_backend_by_weight() {
        let layout = Layout::new(&config());
        let web = &layout.services[0];
        let (scheduler, slots) = web.table(&all_serving(web), 13).unwrap();
        assert_eq!(scheduler, maps::Scheduler::Maglev);
        assert_eq!(slots.len(), 13);
        let count = |id| slots.iter().filter(|&&slot| slot == id).count();
        // Weights 2 and 1 over 13 slots.
        assert!(count(0) > count(1) && count(1) >= 1, "{slots:?}");
        assert_eq!(count(0) + count(1), 13);
    }

    #[test]
    fn round_robin_rings_are_weight_expanded() {
        let layout = Layout::new(&config());
        let dns = &layout.services[1];
        let (scheduler, mut ring) = dns.table(&all_serving(dns), 13).unwrap();
        assert_eq!(scheduler, maps::Scheduler::RoundRobin);
        ring.sort_unstable();
        assert_eq!(ring, [2, 3, 3, 3]);
    }

    #[test]
    fn with_no_serving_backend_the_table_is_empty() {
        let layout = Layout::new(&config());
        for service in &layout.services {
            assert!(service.table(&[], 13).unwrap().1.is_empty());
        }
    }
}
