//! The data path under measurement: a configuration of the lab's shape,
//! programmed into a freshly loaded [`Dataplane`] through the controller's own
//! publication path ([`Publisher`]), with every backend reached through the
//! test-run ingress interface (so forwarded packets end in `XDP_TX`).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use anyhow::{Context as _, Result};
use lb::config::{self, Config, Protocol, Scheduler};
use lb::controller::apply::{Applied, Applier};
use lb::controller::image::{BackendPlan, MapsImage};
use lb::controller::layout::Layout;
use lb::dataplane::{Dataplane, TEST_RUN_INGRESS_IFINDEX};
use lb::domain::BackendState;
use lb::neighbour::{Interface, Neighbour};
use lb_common::maps::LocalInterface;

use crate::frames::LB_MAC;

/// The VIP of the benchmark's services.
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
/// The TCP service's port (Maglev).
pub const HTTP_PORT: u16 = 80;
/// The UDP service's port (round-robin).
pub const DNS_PORT: u16 = 53;

/// A service of the benchmark's configuration.
pub struct ServiceSpec {
    pub name: &'static str,
    pub port: u16,
    pub protocol: Protocol,
    pub scheduler: Scheduler,
    pub backends: u32,
}

/// The address of backend `index` (0-based): 10.1.0.1, 10.1.0.2, ... then
/// on through 10.1.1.x for large backend counts (clear of the VIP).
pub fn backend_address(index: u32) -> Ipv4Addr {
    let host = index + 1;
    let [_, _, high, low] = host.to_be_bytes();
    Ipv4Addr::new(10, 1, high, low)
}

/// The configuration for `services` on [`VIP`], with the default map sizes,
/// through the controller's own parser (so it is a configuration users
/// could write).
pub fn config(services: &[ServiceSpec]) -> Result<Config> {
    // The insert guard on, with a limit the benchmark never reaches: its
    // check is measured, and every new flow is inserted as before.
    let mut text = String::from(
        "[global]\ninterface = \"lo\"\npin_dir = \"\"\nflow_insert_limit_per_cpu = 100000000\n",
    );
    for spec in services {
        let protocol = match spec.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        let scheduler = match spec.scheduler {
            Scheduler::Maglev => "maglev",
            Scheduler::RoundRobin => "round-robin",
            Scheduler::Source => "source",
        };
        let _ = write!(
            text,
            "\n[[service]]\nname = \"{}\"\nvip = \"{VIP}\"\nport = {}\nprotocol = \"{protocol}\"\nscheduler = \"{scheduler}\"\n",
            spec.name, spec.port
        );
        for index in 0..spec.backends {
            let _ = write!(
                text,
                "\n[[service.backend]]\nname = \"web{}\"\naddress = \"{}\"\n",
                index + 1,
                backend_address(index)
            );
        }
    }
    config::parse(&text, "microbench.toml").context("the benchmark's configuration")
}

/// Every backend of `config` as a neighbour on the test-run ingress interface.
pub fn neighbours(config: &Config) -> HashMap<Ipv4Addr, Neighbour> {
    let interface = Interface {
        index: TEST_RUN_INGRESS_IFINDEX,
        name: "lo".to_owned(),
        mac: LB_MAC,
    };
    config
        .services
        .iter()
        .flat_map(|service| &service.backends)
        .map(|backend| {
            let [_, _, high, low] = backend.address.octets();
            let neighbour = Neighbour {
                interface: interface.clone(),
                mac: [0x02, 0, 0, 0x10, high, low],
            };
            (backend.address, neighbour)
        })
        .collect()
}

/// The controller's path from backend plans to maps: the image, then its
/// application to the data path.
pub struct Publisher {
    layout: Layout,
    neighbours: HashMap<Ipv4Addr, Neighbour>,
    table_size: u32,
    applier: Applier,
}

impl Publisher {
    /// Brings `dataplane` to the state where backend id `i` follows `plans[i]`.
    pub fn apply(&mut self, dataplane: &mut Dataplane, plans: &[BackendPlan]) -> Result<Applied> {
        let plans: BTreeMap<u32, BackendPlan> = (0..).zip(plans.iter().copied()).collect();
        let image = MapsImage::build(&self.layout, &plans, &self.neighbours, self.table_size)?;
        Ok(self.applier.apply(dataplane, &image)?)
    }
}

/// A loaded data path programmed with `config`, every backend up, and the
/// publisher that programmed it.
pub fn programmed(config: &Config) -> Result<(Dataplane, Publisher)> {
    let options = lb::pinned_restart::load_options(config);
    let mut dataplane = Dataplane::load(&options).context("loading the eBPF programs")?;
    dataplane
        .set_local_interface(LocalInterface::MAIN, LB_MAC, TEST_RUN_INGRESS_IFINDEX)
        .context("writing the local interface")?;
    let layout = Layout::new(config);
    let plans: Vec<BackendPlan> = layout
        .backends()
        .map(|backend| BackendPlan {
            state: BackendState::Up,
            weight: backend.weight,
            standby: false,
            keeps_flows: false,
        })
        .collect();
    let mut publisher = Publisher {
        layout,
        neighbours: neighbours(config),
        table_size: options.table_size,
        applier: Applier::new(),
    };
    publisher
        .apply(&mut dataplane, &plans)
        .context("programming the services")?;
    Ok((dataplane, publisher))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_addresses_are_distinct() {
        assert_eq!(backend_address(0), Ipv4Addr::new(10, 1, 0, 1));
        assert_eq!(backend_address(2), Ipv4Addr::new(10, 1, 0, 3));
        let addresses: std::collections::HashSet<_> = (0..1000).map(backend_address).collect();
        assert_eq!(addresses.len(), 1000);
    }

    #[test]
    fn config_and_neighbours_cover_every_backend() {
        let config = config(&[ServiceSpec {
            name: "web",
            port: HTTP_PORT,
            protocol: Protocol::Tcp,
            scheduler: Scheduler::Maglev,
            backends: 1000,
        }])
        .unwrap();
        assert_eq!(config.backend_count(), 1000);
        assert_eq!(neighbours(&config).len(), 1000);
    }
}
