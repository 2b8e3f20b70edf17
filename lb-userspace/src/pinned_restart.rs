//! Restarting over a pinned data path: loading, attaching and releasing the
//! data path so that a new `lb` takes over the one the previous `lb` on this
//! node left pinned in `global.pin_dir` (see [`crate::dataplane::PinDir`]),
//! and leaves its own pinned for the next one.
//!
//! Before loading ([`prepare`]): the pinned flow table is kept only if it
//! fits and every backend id still names the server it named, so
//! established flows stay on their backend; and each backend starts in the
//! health the previous run left it in (up stays up until `fall` checks
//! fail), so the new program serves from its first packet what the old one
//! served instead of waiting `rise` checks with every backend down.
//! Once programmed ([`attach`]): the new program replaces the old one on the
//! pinned link in one step. At a clean shutdown ([`release`]): the pins are
//! removed, then the program detached. After a failed start ([`undo`]):
//! the pins this run added are removed, those it found stay.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use lb_common::maps::{backend_state, programs, Backend, LocalInterface};

use crate::config::Config;
use crate::controller::layout::Layout;
use crate::dataplane::{
    AttachMode, Dataplane, DataplaneError, LoadOptions, PinDir, PinnedFlows, PinningError,
};
use crate::domain::Health;
use crate::neighbour::Interface;

/// Opens the pin directory of `config` (`None` when pinning is off),
/// decides whether the previous run's flow table is kept, and starts the
/// backends the previous run had up as up.
pub fn prepare(config: &mut Config) -> Result<Option<PinDir>, PinningError> {
    let Some(path) = &config.global.pin_dir else {
        tracing::warn!("global.pin_dir is empty: the data path stops with lb");
        return Ok(None);
    };
    let pins = PinDir::open(path)?;
    match take_over(config, &pins) {
        Ok(()) => Ok(Some(pins)),
        Err(error) => {
            undo(&pins);
            Err(error)
        }
    }
}

/// [`prepare`] in the opened `pins`: keeps or discards the pinned flow
/// table, and seeds the backends' initial health.
fn take_over(config: &mut Config, pins: &PinDir) -> Result<(), PinningError> {
    let path = pins.path();
    let previous = pins.previous_backends()?;
    let layout = Layout::new(config);
    let options = load_options(config);
    match pins.pinned_flows(&options)? {
        PinnedFlows::Absent => {}
        PinnedFlows::Incompatible => {
            tracing::warn!(pin_dir = %path.display(), "the pinned flow table has another size or layout; starting an empty one");
            pins.discard_flows()?;
        }
        PinnedFlows::Compatible => match renumbered_backend(&previous, &layout) {
            None => {
                tracing::info!(pin_dir = %path.display(), "keeping the flow table of the previous run")
            }
            Some((id, before, now)) => {
                tracing::warn!(id, %before, %now, "backend ids name other servers than in the previous run; starting an empty flow table");
                pins.discard_flows()?;
            }
        },
    }
    let seeded = seed_initial_health(config, &layout, &previous);
    if seeded > 0 {
        tracing::info!(
            backends = seeded,
            "backends the previous run had up start up"
        );
    }
    Ok(())
}

/// The map sizes `config` asks for.
pub fn load_options(config: &Config) -> LoadOptions {
    LoadOptions {
        flow_table_size: config.global.flow_table_size,
        max_services: config.global.max_services,
        max_backends: config.global.max_backends,
        table_size: config.global.maglev_table_size,
        xdp_mode: config.global.xdp_mode,
        rate_limit_table_size: config.global.rate_limit_table_size,
        flow_insert_limit_per_cpu: config.global.flow_insert_limit_per_cpu,
        allow_table_size: config.global.allow_table_size,
        vip_icmp_echo: config.global.vip_icmp_echo,
    }
}

/// Loads the data path, sharing the flow table through `pins` if given.
pub fn load(options: &LoadOptions, pins: Option<&PinDir>) -> Result<Dataplane, DataplaneError> {
    match pins {
        Some(pins) => Dataplane::load_pinned(options, pins),
        None => Dataplane::load(options),
    }
}

/// Attaches the programmed data path to `interface` (and to
/// `server_interface`, the servers' side, if given), through pinned links
/// if `pins` is given; returns how, for the log. The program learns the
/// interfaces' MACs first: frames for any other destination are passed.
pub fn attach(
    dataplane: &mut Dataplane,
    interface: &Interface,
    server_interface: Option<&Interface>,
    pins: Option<&PinDir>,
) -> Result<String, DataplaneError> {
    dataplane.set_local_interface(LocalInterface::MAIN, interface.mac, interface.index)?;
    if let Some(servers) = server_interface {
        dataplane.set_local_interface(LocalInterface::SERVERS, servers.mac, servers.index)?;
    }
    let servers = server_interface.map(|servers| servers.name.as_str());
    let interface = interface.name.as_str();
    Ok(match pins {
        Some(pins) => dataplane
            .attach_pinned(interface, servers, pins)?
            .to_string(),
        None => {
            let mode: AttachMode = dataplane.attach(interface)?;
            if let Some(servers) = servers {
                dataplane.attach_program(programs::LB, servers)?;
            }
            format!("{mode} mode, not pinned")
        }
    })
}

/// After a start that failed: puts the pin directory back as [`prepare`]
/// found it ([`PinDir::undo`]). Errors are logged.
pub fn undo(pins: &PinDir) {
    match pins.undo() {
        Ok(()) => {
            tracing::info!(pin_dir = %pins.path().display(), "pins of the failed start removed")
        }
        Err(error) => tracing::error!(%error, "removing the pins of the failed start"),
    }
}

/// Clean shutdown: removes the pins, then detaches (the program only
/// leaves the interface once both are done). Errors are logged.
pub fn release(dataplane: &mut Dataplane, pins: Option<&PinDir>) {
    if let Some(pins) = pins {
        match pins.remove() {
            Ok(_) => tracing::info!(pin_dir = %pins.path().display(), "pins removed"),
            Err(error) => {
                tracing::error!(%error, "removing the pins; the data path stays attached")
            }
        }
    }
    dataplane.detach();
}

/// The first backend id that named another server in the previous run:
/// (id, its address then, its address now). Ids the previous run did not
/// use, or this one does not, cannot mislead a flow.
fn renumbered_backend(
    previous: &BTreeMap<u32, Backend>,
    layout: &Layout,
) -> Option<(u32, Ipv4Addr, Ipv4Addr)> {
    layout.backends().find_map(|slot| {
        let before = previous.get(&slot.id)?;
        let before = Ipv4Addr::from(before.ip.to_ne_bytes());
        (before != slot.address).then_some((slot.id, before, slot.address))
    })
}

/// Sets `initial` to up for every backend the previous run had up (or
/// draining, i.e. healthy) under the same id and address; returns how many
/// were changed.
fn seed_initial_health(
    config: &mut Config,
    layout: &Layout,
    previous: &BTreeMap<u32, Backend>,
) -> usize {
    let mut seeded = 0;
    let slots = layout.services.iter().zip(config.services.iter_mut());
    for (service_slot, service) in slots {
        for (slot, backend) in service_slot
            .backends
            .iter()
            .zip(service.backends.iter_mut())
        {
            let was_serving = previous.get(&slot.id).is_some_and(|before| {
                Ipv4Addr::from(before.ip.to_ne_bytes()) == slot.address
                    && matches!(before.state, backend_state::UP | backend_state::DRAINING)
            });
            if was_serving && backend.initial != Health::Up {
                backend.initial = Health::Up;
                seeded += 1;
            }
        }
    }
    seeded
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        crate::config::parse(
            r#"
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

            [[service.backend]]
            name = "web2"
            address = "10.0.0.2"

            [[service.backend]]
            name = "web3"
            address = "10.0.0.3"
            "#,
            "test.toml",
        )
        .unwrap()
    }

    fn backend(address: [u8; 4], state: u8) -> Backend {
        Backend {
            ip: u32::from_ne_bytes(address),
            state,
            ..Backend::default()
        }
    }

    #[test]
    fn flows_are_kept_while_every_id_names_the_same_server() {
        let config = config();
        let layout = Layout::new(&config);
        let mut previous = BTreeMap::from([
            (0, backend([10, 0, 0, 1], backend_state::UP)),
            (1, backend([10, 0, 0, 2], backend_state::DOWN)),
            // An id this run does not use.
            (7, backend([10, 0, 0, 9], backend_state::UP)),
        ]);
        assert_eq!(renumbered_backend(&previous, &layout), None);
        assert_eq!(renumbered_backend(&BTreeMap::new(), &layout), None);

        previous.insert(2, backend([10, 0, 0, 4], backend_state::UP));
        assert_eq!(
            renumbered_backend(&previous, &layout),
            Some((2, Ipv4Addr::new(10, 0, 0, 4), Ipv4Addr::new(10, 0, 0, 3)))
        );
    }

    #[test]
    fn backends_the_previous_run_had_serving_start_up() {
        let mut config = config();
        let layout = Layout::new(&config);
        assert!(config.services[0]
            .backends
            .iter()
            .all(|b| b.initial == Health::Down));
        let previous = BTreeMap::from([
            (0, backend([10, 0, 0, 1], backend_state::UP)),
            (1, backend([10, 0, 0, 2], backend_state::DOWN)),
            // Draining is an admin state of a healthy backend.
            (2, backend([10, 0, 0, 3], backend_state::DRAINING)),
        ]);
        assert_eq!(seed_initial_health(&mut config, &layout, &previous), 2);
        let initial: Vec<Health> = config.services[0]
            .backends
            .iter()
            .map(|b| b.initial)
            .collect();
        assert_eq!(initial, [Health::Up, Health::Down, Health::Up]);

        // Another server under the same id is not seeded.
        let mut config = self::config();
        let moved = BTreeMap::from([(0, backend([10, 0, 0, 2], backend_state::UP))]);
        assert_eq!(seed_initial_health(&mut config, &layout, &moved), 0);
    }
}
