//! Backup backends on the in-memory maps: which backends a service's table
//! holds while its primaries serve, when none does, and when one is back;
//! what the data path's entries say about a standby backup's flows; and a
//! reload that changes `backup`. No check probes anything: the tests report
//! health themselves.

use std::time::Duration;

use lb_common::maps::backend_state;

use super::apply::tests::assert_maps_hold;
use super::*;
use crate::config;
use crate::dataplane::fake::FakeMaps;
use crate::dataplane::LoadOptions;
use crate::domain::{BackendState, Health};
use crate::neighbour::Interface;

/// Service `db` (checked, Maglev over 13 slots): primaries `db1` and `db2`,
/// backups `bk3` (weight 2) and `bk4`, all starting up; `backup_of(name)`
/// says which are backups.
fn config_text(backup_of: impl Fn(&str) -> bool) -> String {
    let mut text = String::from(
        "[global]\ninterface = \"eth0\"\nmaglev_table_size = 13\n\n\
         [[service]]\nname = \"db\"\nvip = \"10.0.0.100\"\nport = 3306\nprotocol = \"tcp\"\n",
    );
    for (name, last, weight) in [("db1", 1, 1), ("db2", 2, 1), ("bk3", 3, 2), ("bk4", 4, 1)] {
        text.push_str(&format!(
            "[[service.backend]]\nname = \"{name}\"\naddress = \"10.0.0.{last}\"\nweight = {weight}\ninitial = \"up\"\nbackup = {}\n",
            backup_of(name)
        ));
    }
    text
}

fn standard() -> Config {
    parse(&config_text(|name| name.starts_with("bk")))
}

fn parse(text: &str) -> Config {
    config::parse(text, "test.toml").unwrap_or_else(|error| panic!("{error}"))
}

fn at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
}

fn neighbours() -> HashMap<Ipv4Addr, Neighbour> {
    (1..=4)
        .map(|last| {
            let neighbour = Neighbour {
                interface: Interface {
                    index: 7,
                    name: "eth1".into(),
                    mac: [0x02, 0, 0, 0, 0, 0xff],
                },
                mac: [0x02, 0, 0, 0, 0, last],
            };
            (Ipv4Addr::new(10, 0, 0, last), neighbour)
        })
        .collect()
}

fn controller_of(config: &Config) -> Controller<FakeMaps> {
    let maps = FakeMaps::new(&LoadOptions {
        table_size: 13,
        max_services: 4,
        max_backends: 8,
        ..LoadOptions::default()
    });
    let mut checker = HealthChecker::without_probes();
    checker.update(check_targets(config));
    Controller::with_checker(config, neighbours(), maps, checker, at(0)).unwrap()
}

fn health(config: &Config, backend: &str, health: Health, seconds: u64) -> HealthEvent {
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

/// The backend ids of `db`'s live table, distinct and sorted, and how many
/// slots each holds.
fn live_table(controller: &Controller<FakeMaps>) -> BTreeMap<u32, usize> {
    let key = controller.layout().services[0].key();
    let (_, slots) = controller.maps().live_table(&key).expect("db is published");
    let mut counts = BTreeMap::new();
    for id in slots {
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}

fn ids(table: &BTreeMap<u32, usize>) -> Vec<u32> {
    table.keys().copied().collect()
}

/// The `state` byte of backend id `id`'s entry in the maps.
fn entry_state(controller: &Controller<FakeMaps>, id: u32) -> u8 {
    controller.maps().backend(id).expect("an entry").state
}

/// `(backup, standby, state)` of backend `name` as published.
fn published(controller: &Controller<FakeMaps>, name: &str) -> (bool, bool, BackendState) {
    let snapshot = controller.subscribe().borrow().clone();
    let backend = snapshot.services[0]
        .backends
        .iter()
        .find(|b| b.name == name)
        .unwrap()
        .clone();
    (backend.backup, backend.standby, backend.state)
}

const DB1: u32 = 0;
const DB2: u32 = 1;
const BK3: u32 = 2;
const BK4: u32 = 3;

#[test]
fn while_a_primary_serves_the_backups_are_on_standby_out_of_the_table() {
    let config = standard();
    let controller = controller_of(&config);
    assert_eq!(ids(&live_table(&controller)), [DB1, DB2]);
    // Up, but draining to the data path: no new flow, and a flow it holds
    // stays.
    for id in [BK3, BK4] {
        assert_eq!(entry_state(&controller, id), backend_state::DRAINING);
    }
    for id in [DB1, DB2] {
        assert_eq!(entry_state(&controller, id), backend_state::UP);
    }
    assert_eq!(
        published(&controller, "db1"),
        (false, false, BackendState::Up)
    );
    assert_eq!(
        published(&controller, "bk3"),
        (true, true, BackendState::Up)
    );
    // The service serves (HA tracking): by its primaries.
    assert!(controller.subscribe().borrow().services[0].is_serving());
    assert_maps_hold(controller.maps(), &controller.image().unwrap());
}

#[test]
fn with_every_primary_out_all_backups_serve_by_weight() {
    let config = standard();
    let mut controller = controller_of(&config);
    // One primary down, the other disabled: neither serves.
    controller.record_health(&[health(&config, "db1", Health::Down, 1)]);
    assert_eq!(ids(&live_table(&controller)), [DB2], "db2 still serves");
    controller.admin("db", "db2", AdminAction::Disable).unwrap();
    let table = live_table(&controller);
    assert_eq!(ids(&table), [BK3, BK4], "option allbackups: both backups");
    assert!(table[&BK3] > table[&BK4], "bk3 weighs 2, bk4 1: {table:?}");
    for id in [BK3, BK4] {
        assert_eq!(entry_state(&controller, id), backend_state::UP);
    }
    assert_eq!(
        published(&controller, "bk4"),
        (true, false, BackendState::Up)
    );
    assert!(controller.subscribe().borrow().services[0].is_serving());
    assert_maps_hold(controller.maps(), &controller.image().unwrap());
}

#[test]
fn a_draining_primary_does_not_keep_the_backups_out() {
    let config = standard();
    let mut controller = controller_of(&config);
    controller.record_health(&[health(&config, "db2", Health::Down, 1)]);
    controller.admin("db", "db1", AdminAction::Drain).unwrap();
    assert_eq!(ids(&live_table(&controller)), [BK3, BK4]);
    // db1 keeps its own flows (draining); the backups take the new ones.
    assert_eq!(entry_state(&controller, DB1), backend_state::DRAINING);
    assert_eq!(entry_state(&controller, BK3), backend_state::UP);
}

#[test]
fn a_primary_back_takes_new_flows_and_the_backups_keep_theirs_until_they_fail() {
    let config = standard();
    let mut controller = controller_of(&config);
    controller.record_health(&[
        health(&config, "db1", Health::Down, 1),
        health(&config, "db2", Health::Down, 1),
    ]);
    assert_eq!(ids(&live_table(&controller)), [BK3, BK4]);

    controller.record_health(&[health(&config, "db1", Health::Up, 2)]);
    assert_eq!(ids(&live_table(&controller)), [DB1], "new flows: db1 only");
    // Established flows on the backups stay (draining); a SYN on one of
    // their entries is a new flow, which db1 takes.
    assert_eq!(entry_state(&controller, BK3), backend_state::DRAINING);
    assert_eq!(entry_state(&controller, BK4), backend_state::DRAINING);
    assert_eq!(
        published(&controller, "bk3"),
        (true, true, BackendState::Up)
    );

    // A standby backup that fails moves its flows like any down backend.
    controller.record_health(&[health(&config, "bk3", Health::Down, 3)]);
    assert_eq!(entry_state(&controller, BK3), backend_state::DOWN);
    assert_eq!(
        published(&controller, "bk3"),
        (true, false, BackendState::Down)
    );
    assert_eq!(ids(&live_table(&controller)), [DB1]);
    assert_maps_hold(controller.maps(), &controller.image().unwrap());
}

#[test]
fn a_service_of_backups_only_uses_them_all() {
    let config = parse(&config_text(|_| true));
    let controller = controller_of(&config);
    assert_eq!(ids(&live_table(&controller)), [DB1, DB2, BK3, BK4]);
    assert_eq!(
        published(&controller, "db1"),
        (true, false, BackendState::Up)
    );
}

#[test]
fn a_reload_that_changes_backup_rebuilds_the_table_and_keeps_the_ids() {
    let config = standard();
    let mut controller = controller_of(&config);
    assert_eq!(ids(&live_table(&controller)), [DB1, DB2]);
    // db2 becomes a backup, bk4 a primary.
    let changed = parse(&config_text(|name| matches!(name, "db2" | "bk3")));
    crate::config::check_reloadable(&config, &changed).expect("backup is reloadable");
    controller
        .reconfigure(&changed, neighbours(), at(10))
        .unwrap();
    assert_eq!(ids(&live_table(&controller)), [DB1, BK4]);
    assert_eq!(entry_state(&controller, DB2), backend_state::DRAINING);
    assert_eq!(
        published(&controller, "db2"),
        (true, true, BackendState::Up)
    );
    assert_eq!(
        published(&controller, "bk4"),
        (false, false, BackendState::Up)
    );
    assert_maps_hold(controller.maps(), &controller.image().unwrap());
}

/// `on_down` (not about backups, but on the same maps): "keep" writes a
/// backend its checks failed as draining, so its established flows stay
/// and only new ones avoid it; "reset" (the default) writes it down, so its
/// flows move. Disabling it moves them either way.
#[test]
fn on_down_keep_leaves_a_failed_backends_flows_on_it_and_reset_moves_them() {
    for (on_down, state) in [
        ("keep", backend_state::DRAINING),
        ("reset", backend_state::DOWN),
    ] {
        let text = config_text(|_| false).replace(
            "protocol = \"tcp\"\n",
            &format!("protocol = \"tcp\"\non_down = \"{on_down}\"\n"),
        );
        let config = parse(&text);
        let mut controller = controller_of(&config);
        controller.record_health(&[health(&config, "db1", Health::Down, 1)]);
        assert_eq!(entry_state(&controller, DB1), state, "on_down = {on_down}");
        assert!(
            !live_table(&controller).contains_key(&DB1),
            "no new flows for db1 (on_down = {on_down})"
        );
        assert_eq!(published(&controller, "db1").2, BackendState::Down);
        controller.admin("db", "db1", AdminAction::Disable).unwrap();
        assert_eq!(entry_state(&controller, DB1), backend_state::DOWN);
        assert_maps_hold(controller.maps(), &controller.image().unwrap());
    }
}
