//! The bytes of every map entry the controller owns, for a desired state:
//! [`MapsImage::build`] turns each backend id's state and weight into the
//! `BACKENDS` entries, each service's `SERVICES` key and table, and each
//! service's source policies (`RATE_LIMITS`, `ALLOW_LISTS`). Pure, so the
//! content of every entry is unit-tested without a kernel.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use lb_common::handshake::Observe;
use lb_common::maps::{self, Endpoint, RateLimit, ServiceKey, SourcePrefix};

use super::error::PublishError;
use super::layout::{network_order, Layout, Serving};
use crate::config::{Forwarding, PassiveHealth};
use crate::dataplane::NatReverse;
use crate::domain::BackendState;
use crate::neighbour::Neighbour;

/// What the controller wants for one backend membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendPlan {
    pub state: BackendState,
    /// Share of the service's new flows while up.
    pub weight: u32,
    /// An up backup while a primary of its service is up: out of the
    /// table, written draining so its established flows stay
    /// ([`crate::controller::desired`]).
    pub standby: bool,
    /// Down by its checks with `on_down = "keep"`: written draining, so its
    /// established flows stay.
    pub keeps_flows: bool,
}

impl BackendPlan {
    /// The `state` byte of the backend's `BACKENDS` entry: a standby
    /// backup's, and a down backend's that keeps its flows, is draining.
    fn map_state(self) -> u8 {
        if self.standby || self.keeps_flows {
            BackendState::Draining.map_value()
        } else {
            self.state.map_value()
        }
    }

    /// Whether the backend is in its service's table.
    fn takes_new_flows(self) -> bool {
        self.state == BackendState::Up && !self.standby
    }
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

impl ServiceTable {
    /// A 64-bit FNV-1a hash of the table read as backend addresses
    /// (`address_of` each slot's backend id), so that nodes whose ids differ
    /// (their files list services or backends in another order) compare
    /// equal exactly when every slot picks the same backend. An empty table
    /// (no backend up) hashes to FNV's offset basis.
    pub fn fingerprint(&self, address_of: impl Fn(u32) -> Option<Ipv4Addr>) -> u64 {
        const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        self.slots
            .iter()
            .flat_map(|&id| address_of(id).unwrap_or(Ipv4Addr::UNSPECIFIED).octets())
            .fold(OFFSET_BASIS, |hash, byte| {
                (hash ^ u64::from(byte)).wrapping_mul(PRIME)
            })
    }
}

/// A service's policies as the data path should hold them: its source
/// policies, its passive health and its NAT.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServicePolicy {
    /// The per-source new-flow limit (`RateLimit::default()`: none).
    pub rate_limit: RateLimit,
    /// The allow-list; `None`: every source.
    pub allow: Option<Vec<SourcePrefix>>,
    /// Passive health; `None`: off.
    pub observe: Option<Observe>,
    /// `forwarding = "nat"`: its backends' reverse translation (every
    /// backend, whatever its state: a draining one's replies still
    /// translate); `None`: `dsr-l2`.
    pub nat: Option<NatReverse>,
}

/// The content of the maps that the controller owns, keyed by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapsImage {
    pub backends: BTreeMap<u32, maps::Backend>,
    pub services: BTreeMap<u32, ServiceTable>,
    /// Every service's policies, by service id.
    pub policies: BTreeMap<u32, ServicePolicy>,
}

impl MapsImage {
    /// The maps for `layout`, given each backend id's state and weight
    /// (`plans[&id]`), the neighbours of the backend addresses, and the table
    /// size M (also the longest round-robin ring). A retired id's entry is
    /// empty: down, naming no server.
    pub fn build(
        layout: &Layout,
        plans: &BTreeMap<u32, BackendPlan>,
        neighbours: &HashMap<Ipv4Addr, Neighbour>,
        table_size: u32,
    ) -> Result<Self, PublishError> {
        let mut image = MapsImage::default();
        for id in layout.retired_backends() {
            image.backends.insert(id, maps::Backend::default());
        }
        for service in &layout.services {
            let mut serving = Vec::new();
            for backend in &service.backends {
                let plan = *plans
                    .get(&backend.id)
                    .ok_or(PublishError::MissingState { id: backend.id })?;
                if plan.weight == 0 {
                    return Err(PublishError::ZeroWeight { id: backend.id });
                }
                let neighbour = neighbours.get(&backend.address).ok_or_else(|| {
                    PublishError::MissingNeighbour {
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
                        state: plan.map_state(),
                        _pad: 0,
                        port: backend.port.to_be(),
                    },
                );
                if plan.takes_new_flows() {
                    serving.push(Serving {
                        slot: backend,
                        weight: plan.weight,
                    });
                }
            }
            image.policies.insert(
                service.id,
                ServicePolicy {
                    rate_limit: service
                        .rate_limit
                        .map_or_else(RateLimit::default, |limit| limit.map_value()),
                    allow: service.allow.clone(),
                    observe: service.observe.map(PassiveHealth::map_value),
                    nat: (service.forwarding == Forwarding::Nat).then(|| NatReverse {
                        service: Endpoint {
                            addr: network_order(service.vip),
                            port: service.port.to_be(),
                            proto: service.protocol.ip_protocol(),
                            _pad: 0,
                        },
                        backends: service
                            .backends
                            .iter()
                            .map(|backend| Endpoint {
                                addr: network_order(backend.address),
                                port: backend.port.to_be(),
                                proto: service.protocol.ip_protocol(),
                                _pad: 0,
                            })
                            .collect(),
                    }),
                },
            );
            let (scheduler, slots) = service.table(&serving, table_size)?;
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

#[cfg(test)]
pub(super) mod tests {
    use lb_common::maps::backend_state;

    use super::*;
    use crate::config::{self, Config};
    use crate::neighbour::Interface;

    pub const TABLE_SIZE: u32 = 13;

    /// Two services over three backends; web2 is in both.
    pub fn config() -> Config {
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

    /// The neighbours of 10.0.0.1 ..= 10.0.0.`count`.
    pub fn neighbours_of(count: u8) -> HashMap<Ipv4Addr, Neighbour> {
        (1..=count)
            .map(|last| (Ipv4Addr::new(10, 0, 0, last), neighbour(last)))
            .collect()
    }

    /// The image of [`config`] with backend id `i` in `states[i]` at its
    /// configured weight.
    pub fn image(states: &[BackendState]) -> MapsImage {
        let layout = Layout::new(&config());
        let plans: BTreeMap<u32, BackendPlan> = layout
            .backends()
            .zip(states)
            .map(|(backend, &state)| {
                let plan = BackendPlan {
                    state,
                    weight: backend.weight,
                    standby: false,
                    keeps_flows: false,
                };
                (backend.id, plan)
            })
            .collect();
        image_of(&plans)
    }

    /// `plans` in id order from 0, keyed by id.
    pub fn by_id(plans: impl IntoIterator<Item = BackendPlan>) -> BTreeMap<u32, BackendPlan> {
        (0..).zip(plans).collect()
    }

    pub fn image_of(plans: &BTreeMap<u32, BackendPlan>) -> MapsImage {
        MapsImage::build(
            &Layout::new(&config()),
            plans,
            &neighbours_of(3),
            TABLE_SIZE,
        )
        .unwrap()
    }

    use BackendState::{Disabled, Down, Draining, Up};

    #[test]
    fn addresses_are_in_network_byte_order() {
        let image = image(&[Up; 4]);
        assert_eq!(image.backends[&3].ip.to_ne_bytes(), [10, 0, 0, 3]);
        assert_eq!(image.services[&1].key.vip.to_ne_bytes(), [10, 0, 0, 100]);
    }

    #[test]
    fn backends_carry_their_neighbour_and_state() {
        let image = image(&[Up, Draining, Down, Disabled]);
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
                backend_state::DOWN
            ]
        );
    }

    #[test]
    fn only_up_backends_are_in_tables() {
        let image = image(&[Up, Draining, Down, Up]);
        assert!(image.services[&0].slots.iter().all(|&id| id == 0));
        assert_eq!(image.services[&1].slots, [3]);
        let image = self::image(&[Down, Disabled, Draining, Draining]);
        assert!(image.services.values().all(|s| s.slots.is_empty()));
    }

    #[test]
    fn a_weight_change_changes_only_that_service() {
        let layout = Layout::new(&config());
        let mut plans = by_id(layout.backends().map(|backend| BackendPlan {
            state: Up,
            weight: backend.weight,
            standby: false,
            keeps_flows: false,
        }));
        let before = image_of(&plans);
        plans.get_mut(&3).unwrap().weight = 1;
        let after = image_of(&plans);
        assert_eq!(before.services[&0], after.services[&0]);
        assert_eq!(before.backends, after.backends);
        let mut ring = after.services[&1].slots.clone();
        ring.sort_unstable();
        assert_eq!(ring, [2, 3], "web2 and web3 now weigh the same");
    }

    #[test]
    fn missing_neighbours_and_states_are_errors() {
        let layout = Layout::new(&config());
        let partial = neighbours_of(2);
        let up = BackendPlan {
            state: Up,
            weight: 1,
            standby: false,
            keeps_flows: false,
        };
        let error = MapsImage::build(&layout, &by_id([up; 4]), &partial, TABLE_SIZE).unwrap_err();
        assert_eq!(
            error.to_string(),
            "backend web3 of service dns: no resolved neighbour for 10.0.0.3"
        );
        let error =
            MapsImage::build(&layout, &by_id([up; 3]), &neighbours_of(3), TABLE_SIZE).unwrap_err();
        assert!(matches!(error, PublishError::MissingState { id: 3 }));
        let mut plans = by_id([up; 4]);
        plans.get_mut(&2).unwrap().weight = 0;
        let error = MapsImage::build(&layout, &plans, &neighbours_of(3), TABLE_SIZE).unwrap_err();
        assert!(matches!(error, PublishError::ZeroWeight { id: 2 }));
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
        let plans = by_id(states.iter().map(|&state| BackendPlan {
            state,
            weight: 1,
            standby: false,
            keeps_flows: false,
        }));
        MapsImage::build(&layout, &plans, &neighbours_of(count), 251).unwrap()
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
}
