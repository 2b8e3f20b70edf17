//! Reloads applied by the controller on the in-memory maps: only the
//! difference is written, what remains keeps its ids (so its flows), health
//! and admin state, what is removed stops being served, and a reload that
//! cannot be applied changes nothing. No check probes anything: the checker
//! only tracks its targets, and the tests report health themselves.

use std::time::Duration;

use lb_common::maps::{backend_state, names, Backend};

use super::apply::tests::assert_maps_hold;
use super::*;
use crate::config;
use crate::dataplane::fake::{FakeMaps, FakeWrite};
use crate::dataplane::LoadOptions;
use crate::domain::{AdminState, BackendState, Health};
use crate::neighbour::Interface;

/// Service `web` (HTTP checks) over `web` backends, each `(name, last
/// octet, weight)`, then, if `with_dns`, the unchecked UDP service `dns`
/// over 10.0.0.9, then `extra` verbatim.
fn config_text(web: &[(&str, u8, u32)], with_dns: bool, extra: &str) -> String {
    let mut text = String::from(
        "[global]\ninterface = \"eth0\"\nmaglev_table_size = 13\nmax_services = 4\nmax_backends = 8\n\n\
         [[service]]\nname = \"web\"\nvip = \"10.0.0.100\"\nport = 80\nprotocol = \"tcp\"\n\
         [service.health]\ntype = \"http\"\npath = \"/health\"\n",
    );
    for (name, last, weight) in web {
        text.push_str(&format!(
            "[[service.backend]]\nname = \"{name}\"\naddress = \"10.0.0.{last}\"\nweight = {weight}\ninitial = \"up\"\n"
        ));
    }
    if with_dns {
        text.push_str(
            "\n[[service]]\nname = \"dns\"\nvip = \"10.0.0.100\"\nport = 53\nprotocol = \"udp\"\n\
             [service.health]\ntype = \"none\"\n\
             [[service.backend]]\nname = \"dns1\"\naddress = \"10.0.0.9\"\n",
        );
    }
    text.push_str(extra);
    text
}

fn parse(text: &str) -> Config {
    config::parse(text, "test.toml").unwrap_or_else(|error| panic!("{error}"))
}

/// web1 and web2 in `web`, and `dns`.
fn initial() -> Config {
    parse(&config_text(&[("web1", 1, 1), ("web2", 2, 1)], true, ""))
}

fn neighbour(last: u8) -> (Ipv4Addr, Neighbour) {
    let neighbour = Neighbour {
        interface: Interface {
            index: 7,
            name: "eth1".into(),
            mac: [0x02, 0, 0, 0, 0, 0xff],
        },
        mac: [0x02, 0, 0, 0, 0, last],
    };
    (Ipv4Addr::new(10, 0, 0, last), neighbour)
}

/// The neighbours of the addresses ending in `lasts`.
fn neighbours(lasts: &[u8]) -> HashMap<Ipv4Addr, Neighbour> {
    lasts.iter().map(|&last| neighbour(last)).collect()
}

fn at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
}

/// A controller of `config` on fake maps, its checks tracked, not probed.
fn controller_of(config: &Config) -> Controller<FakeMaps> {
    let maps = FakeMaps::new(&LoadOptions {
        table_size: 13,
        max_services: 4,
        max_backends: 8,
        ..LoadOptions::default()
    });
    let mut checker = HealthChecker::without_probes();
    checker.update(check_targets(config));
    Controller::with_checker(config, neighbours(&[1, 2, 9]), maps, checker, at(0)).unwrap()
}

/// Backend `backend` of service `service` as published.
fn published(
    controller: &Controller<FakeMaps>,
    service: &str,
    backend: &str,
) -> crate::domain::BackendSnapshot {
    let snapshot = controller.subscribe().borrow().clone();
    let service = snapshot
        .services
        .iter()
        .find(|s| s.name == service)
        .unwrap_or_else(|| panic!("no service {service}"));
    service
        .backends
        .iter()
        .find(|b| b.name == backend)
        .unwrap_or_else(|| panic!("no backend {backend}"))
        .clone()
}

/// A health event for `backend` of `config`'s service `web`.
fn web_health(config: &Config, backend: &str, health: Health, seconds: u64) -> HealthEvent {
    let service = &config.services[0];
    let backend = service.backends.iter().find(|b| b.name == backend).unwrap();
    HealthEvent {
        target: service.check_target(backend).unwrap(),
        health,
        reason: format!("test says {health}"),
        at: at(seconds),
        settled: true,
        unknown: None,
        by: crate::domain::HealthSource::Checks,
    }
}

/// The key of service `name` in `controller`'s layout.
fn key_of(controller: &Controller<FakeMaps>, name: &str) -> lb_common::maps::ServiceKey {
    controller
        .layout()
        .services
        .iter()
        .find(|s| s.name == name)
        .unwrap()
        .key()
}

/// The writes `work` made to the maps.
fn writes_of(
    controller: &mut Controller<FakeMaps>,
    work: impl FnOnce(&mut Controller<FakeMaps>),
) -> Vec<FakeWrite> {
    let before = controller.maps().log().len();
    work(controller);
    controller.maps().log()[before..].to_vec()
}

fn reload(
    controller: &mut Controller<FakeMaps>,
    config: &Config,
    resolved: &[u8],
) -> Result<(), ReloadError> {
    controller.reconfigure(config, neighbours(resolved), at(100))
}

#[test]
fn an_unchanged_service_keeps_its_table_ids_and_health_and_nothing_of_it_is_written() {
    let config = initial();
    let mut controller = controller_of(&config);
    controller.record_health(&[web_health(&config, "web2", Health::Down, 5)]);
    let web2 = published(&controller, "web", "web2");
    let web_table = controller.maps().live_table(&key_of(&controller, "web"));
    // dns gets a second backend; web is untouched (its backends listed in
    // another order: the same service).
    let changed = parse(&config_text(&[("web2", 2, 1), ("web1", 1, 1)], true, "")
        .replace(
            "name = \"dns1\"\naddress = \"10.0.0.9\"\n",
            "name = \"dns1\"\naddress = \"10.0.0.9\"\n[[service.backend]]\nname = \"dns2\"\naddress = \"10.0.0.8\"\n",
        ));
    let writes = writes_of(&mut controller, |controller| {
        reload(controller, &changed, &[8]).unwrap();
    });
    let dns = key_of(&controller, "dns");
    assert!(
        writes.iter().all(|write| match write {
            FakeWrite::Backend { id, .. } | FakeWrite::Handshakes { id, .. } => *id == 3,
            FakeWrite::Service { key, .. } => *key == dns,
            FakeWrite::Slot { index, .. } => (*index as usize) >= 2 * 13,
            FakeWrite::Vip { .. } => true,
            other => panic!("unexpected {other:?}"),
        }),
        "only dns and its new backend: {writes:?}"
    );
    assert_eq!(
        controller.maps().live_table(&key_of(&controller, "web")),
        web_table
    );
    assert_eq!(
        published(&controller, "web", "web2"),
        web2,
        "id, health, reason"
    );
    assert_maps_hold(controller.maps(), &controller.image().unwrap());
}

#[test]
fn a_changed_weight_rebuilds_that_table_only_and_keeps_the_backend_entries() {
    let config = initial();
    let mut controller = controller_of(&config);
    let before = controller.image().unwrap();
    let heavier = parse(&config_text(&[("web1", 1, 3), ("web2", 2, 1)], true, ""));
    let writes = writes_of(&mut controller, |controller| {
        reload(controller, &heavier, &[]).unwrap();
    });
    let after = controller.image().unwrap();
    assert_ne!(before.services[&0].slots, after.services[&0].slots);
    assert_eq!(before.services[&1], after.services[&1], "dns untouched");
    assert_eq!(before.backends, after.backends, "same ids, same entries");
    assert!(
        !writes
            .iter()
            .any(|write| matches!(write, FakeWrite::Backend { .. })),
        "{writes:?}"
    );
    assert_eq!(published(&controller, "web", "web1").configured_weight, 3);
    assert_maps_hold(controller.maps(), &after);
}

#[test]
fn an_added_backend_takes_a_fresh_id_and_joins_once_its_checks_settle() {
    let config = initial();
    let mut controller = controller_of(&config);
    let ids = |controller: &Controller<FakeMaps>| -> Vec<(String, u32)> {
        controller
            .layout()
            .backends()
            .map(|b| (b.name.clone(), b.id))
            .collect()
    };
    // web3 listed between web1 and web2: their ids stay.
    let added = parse(
        &config_text(&[("web1", 1, 1), ("web3", 3, 1), ("web2", 2, 1)], true, "").replace(
            "address = \"10.0.0.3\"\nweight = 1\ninitial = \"up\"",
            "address = \"10.0.0.3\"\nweight = 1",
        ),
    );
    reload(&mut controller, &added, &[3]).unwrap();
    assert_eq!(
        ids(&controller),
        [
            ("web1".to_owned(), 0),
            ("web3".to_owned(), 3),
            ("web2".to_owned(), 1),
            ("dns1".to_owned(), 2)
        ]
    );
    let web3 = published(&controller, "web", "web3");
    assert_eq!(
        (web3.state, web3.settled, web3.joining),
        (BackendState::Down, false, true),
        "starts down (initial), joining until settled"
    );
    assert!(!controller.image().unwrap().services[&0].slots.contains(&3));
    controller.record_health(&[web_health(&added, "web3", Health::Up, 101)]);
    let web3 = published(&controller, "web", "web3");
    assert_eq!(
        (web3.state, web3.settled, web3.joining),
        (BackendState::Up, true, false)
    );
    assert!(controller.image().unwrap().services[&0].slots.contains(&3));
    assert_maps_hold(controller.maps(), &controller.image().unwrap());
}

#[test]
fn a_removed_backend_leaves_the_table_then_its_entry_is_written_down_and_its_id_rests() {
    let config = initial();
    let mut controller = controller_of(&config);
    let web = key_of(&controller, "web");
    let without_web2 = parse(&config_text(&[("web1", 1, 1)], true, ""));
    let writes = writes_of(&mut controller, |controller| {
        reload(controller, &without_web2, &[]).unwrap();
    });
    let flip = writes
        .iter()
        .position(|w| matches!(w, FakeWrite::Service { key, .. } if *key == web))
        .expect("web republished");
    let down = writes
        .iter()
        .position(|w| matches!(w, FakeWrite::Backend { id: 1, .. }))
        .expect("web2's entry written");
    assert!(
        flip < down,
        "the table drops web2 before its entry: {writes:?}"
    );
    // Down and naming no server: its flows move like a down backend's.
    assert_eq!(controller.maps().backend(1), Some(Backend::default()));
    assert_eq!(
        controller.maps().backend(1).unwrap().state,
        backend_state::DOWN
    );
    assert!(controller
        .maps()
        .live_table(&web)
        .unwrap()
        .1
        .iter()
        .all(|&id| id == 0));
    assert_eq!(
        controller.admin("web", "web2", AdminAction::Drain),
        Err(AdminCommandError::Refused(AdminError::UnknownBackend {
            service: "web".into(),
            backend: "web2".into()
        }))
    );
    // A backend added later gets an id never used, not web2's.
    let web4 = parse(&config_text(&[("web1", 1, 1), ("web4", 4, 1)], true, ""));
    reload(&mut controller, &web4, &[4]).unwrap();
    assert_eq!(published(&controller, "web", "web4").id, 3);
    assert_maps_hold(controller.maps(), &controller.image().unwrap());
}

#[test]
fn an_added_service_starts_and_a_removed_one_stops_matching_its_vip() {
    let config = initial();
    let mut controller = controller_of(&config);
    let dns = key_of(&controller, "dns");
    let api =
        "\n[[service]]\nname = \"api\"\nvip = \"10.0.0.101\"\nport = 443\nprotocol = \"tcp\"\n\
               [service.health]\ntype = \"none\"\n\
               [[service.backend]]\nname = \"api1\"\naddress = \"10.0.0.1\"\n";
    let reloaded = parse(&config_text(&[("web1", 1, 1), ("web2", 2, 1)], false, api));
    reload(&mut controller, &reloaded, &[]).unwrap();
    let vip = |last: u8| layout::network_order(Ipv4Addr::new(10, 0, 0, last));
    assert!(
        controller.maps().live_table(&dns).is_none(),
        "dns no longer matches"
    );
    assert_eq!(
        controller.maps().vip(vip(100)),
        Some(1),
        "web still on 10.0.0.100"
    );
    let api_key = key_of(&controller, "api");
    let (service, slots) = controller
        .maps()
        .live_table(&api_key)
        .expect("api published");
    assert_eq!(service.id, 2, "a service id never used");
    assert_eq!(controller.maps().vip(vip(101)), Some(1));
    let api1 = published(&controller, "api", "api1");
    assert!(slots.iter().all(|&id| id == api1.id));
    assert_eq!(api1.state, BackendState::Up, "unchecked: up at once");
    // dns1's id (2) is retired: its entry is down.
    assert_eq!(controller.maps().backend(2), Some(Backend::default()));
    assert_maps_hold(controller.maps(), &controller.image().unwrap());
}

#[test]
fn admin_states_and_weights_of_remaining_backends_are_kept() {
    let config = initial();
    let mut controller = controller_of(&config);
    controller.admin("web", "web1", AdminAction::Drain).unwrap();
    controller
        .admin("web", "web2", AdminAction::Weight(3))
        .unwrap();
    let drained = published(&controller, "web", "web1");
    let reweighted = parse(&config_text(&[("web1", 1, 2), ("web2", 2, 2)], true, ""));
    reload(&mut controller, &reweighted, &[]).unwrap();
    let web1 = published(&controller, "web", "web1");
    assert_eq!(
        (web1.admin, web1.state, web1.since, web1.reason),
        (
            AdminState::Draining,
            BackendState::Draining,
            drained.since,
            drained.reason
        )
    );
    assert_eq!((web1.weight, web1.configured_weight), (2, 2));
    let web2 = published(&controller, "web", "web2");
    assert_eq!(
        (web2.weight, web2.configured_weight),
        (3, 2),
        "the API's weight stays"
    );
}

#[test]
fn a_reload_the_kept_api_weights_do_not_fit_is_refused_and_changes_nothing() {
    let config = initial();
    let mut controller = controller_of(&config);
    // web1 1 and web2 12 fit 13 Maglev slots; with web3 (1) they would not.
    controller
        .admin("web", "web2", AdminAction::Weight(12))
        .unwrap();
    let snapshot = controller.subscribe().borrow().clone();
    let layout = controller.layout().clone();
    let attempts = controller.maps().attempts();
    let added = parse(&config_text(
        &[("web1", 1, 1), ("web2", 2, 1), ("web3", 3, 1)],
        true,
        "",
    ));
    let refused = reload(&mut controller, &added, &[3]).unwrap_err();
    let ReloadError::Refused(reason) = refused else {
        panic!("{refused:?}");
    };
    assert!(
        reason.starts_with("with the weights set through the API kept, service \"web\": global.maglev_table_size = 13 is too small"),
        "{reason}"
    );
    assert_eq!(controller.maps().attempts(), attempts, "nothing written");
    assert_eq!(*controller.layout(), layout);
    assert_eq!(*controller.subscribe().borrow().clone(), *snapshot);
    assert!(
        controller
            .checker
            .status(
                &added.services[0]
                    .check_target(&added.services[0].backends[2])
                    .unwrap()
            )
            .is_none(),
        "web3 is not checked"
    );
}

#[test]
fn a_failed_write_leaves_the_new_configuration_recorded_and_retried() {
    let config = initial();
    let mut controller = controller_of(&config);
    let heavier = parse(&config_text(&[("web1", 1, 3), ("web2", 2, 1)], true, ""));
    controller.maps_mut().fail_map(names::SCHED_TABLE);
    let error = reload(&mut controller, &heavier, &[]).unwrap_err();
    assert!(
        matches!(&error, ReloadError::NotApplied(reason) if reason.starts_with("the new configuration is recorded")),
        "{error:?}"
    );
    assert!(controller.retry_at.is_some());
    assert_eq!(published(&controller, "web", "web1").configured_weight, 3);
    // The old table stays live until the retry writes the new one.
    let web = key_of(&controller, "web");
    let old_slots = controller.maps().live_table(&web).unwrap().1;
    assert_ne!(old_slots, controller.image().unwrap().services[&0].slots);
    controller.maps_mut().heal();
    controller.publish().unwrap();
    assert_maps_hold(controller.maps(), &controller.image().unwrap());
}

#[test]
fn a_changed_check_starts_from_the_current_health() {
    let config = initial();
    let mut controller = controller_of(&config);
    controller.record_health(&[web_health(&config, "web2", Health::Down, 5)]);
    let other_path = parse(
        &config_text(&[("web1", 1, 1), ("web2", 2, 1)], true, "").replace("/health", "/ready"),
    );
    reload(&mut controller, &other_path, &[]).unwrap();
    let (web1, web2) = (
        published(&controller, "web", "web1"),
        published(&controller, "web", "web2"),
    );
    // Up, the new check starts up and settled (as `initial = "up"` does);
    // down, it starts down and joins once its checks have run.
    assert_eq!(
        (web1.state, web1.settled, web1.joining),
        (BackendState::Up, true, false)
    );
    assert_eq!(
        (web2.state, web2.settled, web2.joining),
        (BackendState::Down, false, true)
    );
    let target = other_path.services[0]
        .check_target(&other_path.services[0].backends[1])
        .unwrap();
    assert_eq!(
        controller
            .checker
            .status(&target)
            .map(|status| status.health),
        Some(Health::Down),
        "the new check of web2 starts down"
    );
}
