//! The controller on the in-memory maps: health and admin changes reach the
//! maps and the snapshot, and failed writes are repaired.

use std::time::Duration;

use lb_common::maps::names;

use super::apply::tests::assert_maps_hold;
use super::*;
use crate::config;
use crate::dataplane::fake::FakeMaps;
use crate::dataplane::LoadOptions;
use crate::domain::{AdminError, BackendState, Health};
use crate::neighbour::Interface;

const CONFIG: &str = r#"
    [global]
    interface = "eth0"
    maglev_table_size = 13

    [[service]]
    name = "web"
    vip = "10.0.0.100"
    port = 80
    protocol = "tcp"
    [service.health]
    type = "http"
    path = "/health"

    [[service.backend]]
    name = "web1"
    address = "10.0.0.1"
    initial = "up"

    [[service.backend]]
    name = "web2"
    address = "10.0.0.2"
    initial = "up"
"#;

fn at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
}

fn neighbours() -> HashMap<Ipv4Addr, Neighbour> {
    (1..=2)
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

/// A controller of [`CONFIG`] on fake maps, with no checks running: the
/// tests report health themselves.
fn controller() -> (Config, Controller<FakeMaps>) {
    let config = config::parse(CONFIG, "test.toml").unwrap();
    let maps = FakeMaps::new(&LoadOptions {
        table_size: 13,
        max_services: 4,
        max_backends: 8,
        ..LoadOptions::default()
    });
    let controller =
        Controller::with_checker(&config, neighbours(), maps, HealthChecker::new(), at(0)).unwrap();
    (config, controller)
}

fn health(config: &Config, backend: usize, health: Health, seconds: u64) -> HealthEvent {
    let service = &config.services[0];
    HealthEvent {
        target: service.check_target(&service.backends[backend]).unwrap(),
        health,
        reason: format!("test says {health}"),
        at: at(seconds),
        settled: true,
        unknown: None,
        by: crate::domain::HealthSource::Checks,
    }
}

/// What the controller wants the maps to hold now.
fn desired_image(controller: &Controller<FakeMaps>) -> MapsImage {
    controller.image().unwrap()
}

#[test]
fn the_initial_state_is_in_the_maps_and_the_snapshot() {
    let (_, controller) = controller();
    assert_maps_hold(controller.maps(), &desired_image(&controller));
    let snapshot = controller.subscribe().borrow().clone();
    let states: Vec<BackendState> = snapshot.services[0]
        .backends
        .iter()
        .map(|b| b.state)
        .collect();
    assert_eq!(states, [BackendState::Up, BackendState::Up]);
}

#[test]
fn a_failed_write_then_a_flap_back_is_repaired_by_the_retry() {
    let (config, mut controller) = controller();
    let initial = desired_image(&controller);
    // web2 fails its checks: its table without web2 is published, but
    // writing its BACKENDS entry fails.
    controller.maps_mut().fail_map(names::BACKENDS);
    controller.record_health(&[health(&config, 1, Health::Down, 1)]);
    assert!(controller.retry_at.is_some());
    assert_ne!(
        controller
            .maps()
            .live_table(&initial.services[&0].key)
            .unwrap()
            .1,
        initial.services[&0].slots
    );
    // Its health flaps back: the desired state is the initial one again,
    // which the maps no longer hold.
    controller.record_health(&[health(&config, 1, Health::Up, 2)]);
    assert_eq!(desired_image(&controller), initial);
    // The retry timer's publication, once the maps accept writes again.
    controller.maps_mut().heal();
    controller.publish().unwrap();
    assert_maps_hold(controller.maps(), &initial);
    assert!(controller.retry_at.is_none());
}

#[test]
fn every_health_change_publishes_a_snapshot() {
    let (config, mut controller) = controller();
    let mut snapshot = controller.subscribe();
    controller.record_health(&[health(&config, 0, Health::Down, 5)]);
    assert!(snapshot.has_changed().unwrap());
    let web1 = snapshot.borrow_and_update().services[0].backends[0].clone();
    assert_eq!(
        (web1.state, web1.health, web1.since),
        (BackendState::Down, Some(Health::Down), at(5))
    );
    assert_eq!(web1.reason, "health down: test says down");
    assert_maps_hold(controller.maps(), &desired_image(&controller));
    assert!(controller.maps().log().iter().any(|write| matches!(
        write,
        crate::dataplane::fake::FakeWrite::Backend { id: 0, backend } if backend.state == BackendState::Down.map_value()
    )));
}

#[tokio::test(start_paused = true)]
async fn admin_commands_are_answered_and_a_failed_write_is_retried() {
    let (_, mut controller) = controller();
    let commands = controller.admin_commands();
    let mut snapshot = controller.subscribe();
    // The drain's publication fails once, at its first write.
    controller.maps_mut().fail_write(0);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(controller.run(async {
        let _ = stopped.await;
    }));

    let reply = commands.send("web", "web1", AdminAction::Drain).await;
    assert!(
        matches!(reply, Err(AdminCommandError::NotApplied(_))),
        "{reply:?}"
    );
    let web1 = snapshot.borrow_and_update().services[0].backends[0].clone();
    assert_eq!(web1.state, BackendState::Draining);
    let refused = commands.send("web", "web9", AdminAction::Drain).await;
    assert_eq!(
        refused,
        Err(AdminCommandError::Refused(AdminError::UnknownBackend {
            service: "web".into(),
            backend: "web9".into()
        }))
    );
    // The retry timer runs out (paused time advances when all are idle).
    tokio::time::sleep(RETRY_DELAY * 2).await;
    stop.send(()).unwrap();
    let (controller, ()) = task.await.unwrap();
    assert!(controller.retry_at.is_none());
    assert_maps_hold(controller.maps(), &desired_image(&controller));
    let web1_entry = controller.maps().backend(0).unwrap();
    assert_eq!(web1_entry.state, BackendState::Draining.map_value());
}

#[test]
fn a_weight_change_republishes_the_table_and_answers_the_backend() {
    let (_, mut controller) = controller();
    let before = desired_image(&controller);
    let web2 = controller
        .admin("web", "web2", AdminAction::Weight(3))
        .unwrap();
    assert_eq!((web2.weight, web2.configured_weight), (3, 1));
    let after = desired_image(&controller);
    assert_ne!(before.services[&0].slots, after.services[&0].slots);
    assert_maps_hold(controller.maps(), &after);
    assert_eq!(
        controller.admin("web", "web2", AdminAction::Weight(0)),
        Err(AdminCommandError::Refused(AdminError::Weight {
            weight: 0,
            low: 1,
            high: 100
        }))
    );
}

/// [`CONFIG`] with service "web" on `scheduler`.
fn controller_with(scheduler: &str) -> Controller<FakeMaps> {
    let text = CONFIG.replace(
        "protocol = \"tcp\"",
        &format!("protocol = \"tcp\"\n    scheduler = \"{scheduler}\""),
    );
    let config = config::parse(&text, "test.toml").unwrap();
    let maps = FakeMaps::new(&LoadOptions {
        table_size: 13,
        max_services: 4,
        max_backends: 8,
        ..LoadOptions::default()
    });
    Controller::with_checker(&config, neighbours(), maps, HealthChecker::new(), at(0)).unwrap()
}

/// A weight that would leave a backend without a Maglev slot, or make the
/// round-robin ring longer than the table, is refused like the same weight
/// in the configuration file: nothing is written, nothing changes.
#[test]
fn a_weight_that_does_not_fit_the_table_is_refused_and_changes_nothing() {
    for (scheduler, too_heavy, largest_fitting, limit) in [
        // web1 (1) beside web2 (w) in 13 slots: web1 claims its first slot
        // in round w, when web2 may hold w of them: fits while 1 + w <= 13.
        ("maglev", 13, 12, "under Maglev"),
        // A ring of 1 + w slots in a table of 13.
        ("round-robin", 13, 12, "under round-robin"),
    ] {
        let mut controller = controller_with(scheduler);
        let before = desired_image(&controller);
        let writes = controller.maps().attempts();
        let snapshot = controller.subscribe().borrow().clone();

        let refused = controller.admin("web", "web2", AdminAction::Weight(too_heavy));
        let Err(AdminCommandError::Refused(AdminError::WeightsDoNotFit { service, reason })) =
            refused
        else {
            panic!("{scheduler}: {refused:?}");
        };
        assert_eq!(service, "web");
        assert!(
            reason.starts_with("global.maglev_table_size = 13 is too small")
                && reason.contains(limit),
            "{reason}"
        );
        assert_eq!(controller.maps().attempts(), writes, "{scheduler}: a write");
        assert_eq!(desired_image(&controller), before);
        assert_maps_hold(controller.maps(), &before);
        assert_eq!(*controller.subscribe().borrow().clone(), *snapshot);
        assert_eq!(controller.desired.backend_snapshot(1).weight, 1);

        // The largest weight that fits is taken.
        let web2 = controller
            .admin("web", "web2", AdminAction::Weight(largest_fitting))
            .unwrap();
        assert_eq!(web2.weight, largest_fitting, "{scheduler}");
        assert_maps_hold(controller.maps(), &desired_image(&controller));
    }
}

/// Drain, disable and enable run the same check: with weights that fit,
/// every subset of serving backends fits too, so they pass.
#[test]
fn drain_disable_and_enable_pass_the_table_check() {
    let mut controller = controller_with("maglev");
    controller
        .admin("web", "web2", AdminAction::Weight(12))
        .unwrap();
    for action in [
        AdminAction::Drain,
        AdminAction::Enable,
        AdminAction::Disable,
    ] {
        let web1 = controller.admin("web", "web1", action).unwrap();
        assert_eq!(web1.weight, 1, "{action:?}");
    }
    assert_maps_hold(controller.maps(), &desired_image(&controller));
}

/// Each service's fingerprint by name, for `text` with every backend up.
fn fingerprints_of(text: &str) -> BTreeMap<String, u64> {
    let config = config::parse(text, "test.toml").unwrap();
    let layout = Layout::new(&config);
    let up = image::BackendPlan {
        state: BackendState::Up,
        weight: 1,
        standby: false,
        keeps_flows: false,
    };
    let plans = layout.backends().map(|backend| (backend.id, up)).collect();
    let mut neighbours = neighbours();
    let template = neighbours[&Ipv4Addr::new(10, 0, 0, 1)].clone();
    for last in 3..=4 {
        neighbours.insert(Ipv4Addr::new(10, 0, 0, last), template.clone());
    }
    let image = MapsImage::build(&layout, &plans, &neighbours, 13).unwrap();
    let by_id = fingerprints(&layout, &image);
    layout
        .services
        .iter()
        .map(|service| (service.name.clone(), by_id[&service.id]))
        .collect()
}

/// A service `web` with backends at 10.0.0.`lasts`, in that order, after
/// `before` (other services, shifting every id).
fn web_with(before: &str, lasts: &[u8]) -> String {
    let mut text = format!("[global]\ninterface = \"eth0\"\nmaglev_table_size = 13\n{before}");
    text.push_str(
        "[[service]]\nname = \"web\"\nvip = \"10.0.0.100\"\nport = 80\nprotocol = \"tcp\"\n",
    );
    for last in lasts {
        text.push_str(&format!(
            "[[service.backend]]\nname = \"web{last}\"\naddress = \"10.0.0.{last}\"\n"
        ));
    }
    text
}

#[test]
fn the_table_fingerprint_depends_on_the_backends_not_on_the_file_order() {
    let dns = "[[service]]\nname = \"dns\"\nvip = \"10.0.0.53\"\nport = 53\nprotocol = \"udp\"\n\
               backend = [{ name = \"dns1\", address = \"10.0.0.4\" }]\n";
    let reference = fingerprints_of(&web_with("", &[1, 2, 3]))["web"];
    // Other backend order, and other ids (a service before it).
    for (before, lasts) in [("", [3, 1, 2]), (dns, [2, 3, 1]), (dns, [1, 2, 3])] {
        assert_eq!(
            fingerprints_of(&web_with(before, &lasts))["web"],
            reference,
            "backends {lasts:?} after {before:?}"
        );
    }
    // Another backend set: another table.
    assert_ne!(fingerprints_of(&web_with("", &[1, 2]))["web"], reference);
    assert_ne!(fingerprints_of(&web_with("", &[1, 2, 4]))["web"], reference);
}

#[test]
fn the_snapshot_carries_the_fingerprint_of_the_table_written() {
    let (_, controller) = controller();
    let published = controller.subscribe().borrow().services[0].table_fingerprint;
    assert_eq!(
        published,
        fingerprints(&controller.layout, &controller.image().unwrap())[&0]
    );
}

/// Every change of a backend's state, by its checks, an admin action or a
/// reload, runs the backend hook with the change in its environment, in
/// order; a change with no state change (a weight) runs none.
#[tokio::test]
async fn each_state_change_runs_the_backend_hook_in_order() {
    let dir = std::env::temp_dir().join(format!("lb-controller-hook-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("log");
    let command = format!(
        "echo \"$LB_BACKEND $LB_BACKEND_PREVIOUS_STATE $LB_BACKEND_STATE\" >> {}",
        log.display()
    );
    let (config, mut controller) = controller();
    let failures = crate::hooks::HookFailures::default();
    controller.notify_backends(BackendNotifier::spawn(Some(command), failures.clone()));
    controller.record_health(&[health(&config, 1, Health::Down, 1)]);
    controller.admin("web", "web1", AdminAction::Drain).unwrap();
    controller
        .admin("web", "web1", AdminAction::Weight(3))
        .unwrap();
    controller
        .admin("web", "web1", AdminAction::Disable)
        .unwrap();
    controller
        .admin("web", "web1", AdminAction::Enable)
        .unwrap();
    // A reload that removes web2 changes no remaining backend's state.
    let mut reloaded = config.clone();
    reloaded.services[0].backends.pop();
    controller
        .reconfigure(&reloaded, HashMap::new(), at(2))
        .unwrap();
    controller.finish_hooks().await;
    let written = std::fs::read_to_string(&log).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        written,
        "web2 up down\nweb1 up draining\nweb1 draining disabled\nweb1 disabled up\n"
    );
    assert_eq!(failures.get(crate::hooks::HookKind::Backend), 0);
}

/// A backend's new MAC reaches its `BACKENDS` entry and the snapshot; an
/// unresolved one takes it out of the table (down, flows move) until it is
/// resolved again.
#[test]
fn mac_updates_reach_the_maps_and_an_unresolved_backend_leaves_the_table() {
    let (_, mut controller) = controller();
    let web2 = Ipv4Addr::new(10, 0, 0, 2);
    let moved = |mac: [u8; 6], unresolved: Option<&str>| MacUpdate {
        address: web2,
        neighbour: Neighbour {
            mac,
            ..neighbours()[&web2].clone()
        },
        unresolved: unresolved.map(str::to_owned),
    };
    let new_mac = [0x02, 0, 0, 0, 0, 0x42];
    controller.record_mac(moved(new_mac, None));
    assert_eq!(controller.maps().backend(1).unwrap().mac, new_mac);
    assert_maps_hold(controller.maps(), &desired_image(&controller));
    let published = controller.subscribe().borrow().services[0].backends[1].clone();
    assert_eq!(
        (published.mac, published.state),
        (Some(new_mac), BackendState::Up)
    );

    let reason = "no MAC: neighbour unresolved (no ARP answer)";
    controller.record_mac(moved(new_mac, Some(reason)));
    let published = controller.subscribe().borrow().services[0].backends[1].clone();
    assert_eq!(published.state, BackendState::Down);
    assert_eq!(published.reason, reason);
    assert!(published.mac_unresolved);
    let image = desired_image(&controller);
    assert!(
        !image.services[&0].slots.contains(&1),
        "web2 is out of the table"
    );
    assert_maps_hold(controller.maps(), &image);
    assert_eq!(
        controller.maps().backend(1).unwrap().state,
        lb_common::maps::backend_state::DOWN
    );

    controller.record_mac(moved(new_mac, None));
    let published = controller.subscribe().borrow().services[0].backends[1].clone();
    assert_eq!(
        (published.state, published.mac_unresolved),
        (BackendState::Up, false)
    );
    assert_eq!(
        published.reason,
        "MAC resolved: 02:00:00:00:00:42; health up: initial state: up"
    );
}

#[test]
fn a_passive_mark_down_keeps_established_flows_and_a_return_clears_the_handshake_record() {
    use crate::dataplane::fake::FakeWrite;
    use crate::domain::HealthSource;

    let (config, mut controller) = controller();
    let passive = HealthEvent {
        reason: "passive: 3 handshakes not completed".into(),
        by: HealthSource::Passive,
        ..health(&config, 1, Health::Down, 5)
    };
    controller.record_health(&[passive]);
    let web2 = controller.subscribe().borrow().services[0].backends[1].clone();
    assert_eq!(
        (web2.state, web2.health_by, web2.reason.as_str()),
        (
            BackendState::Down,
            HealthSource::Passive,
            "passive: 3 handshakes not completed"
        )
    );
    assert_eq!(
        controller.maps().backend(1).unwrap().state,
        lb_common::maps::backend_state::DRAINING,
        "out of the table, its established flows stay"
    );

    // Its checks bring it back: the record is cleared before it serves.
    let before = controller.maps().log().len();
    controller.record_health(&[health(&config, 1, Health::Up, 9)]);
    let writes = &controller.maps().log()[before..];
    let cleared = writes
        .iter()
        .position(|write| matches!(write, FakeWrite::Handshakes { id: 1, watch } if *watch == Default::default()));
    let serving = writes.iter().position(|write| {
        matches!(write, FakeWrite::Backend { id: 1, backend } if backend.state == BackendState::Up.map_value())
    });
    assert!(
        cleared.is_some() && cleared < serving,
        "cleared, then up: {writes:?}"
    );
    let web2 = controller.subscribe().borrow().services[0].backends[1].clone();
    assert_eq!(
        (web2.state, web2.health_by),
        (BackendState::Up, HealthSource::Checks)
    );
}

#[test]
fn passive_health_marks_ejected_backends_down_but_keeps_half_of_a_service_up() {
    use lb_common::handshake::HandshakeWatch;

    let (_, controller) = controller();
    let layout = controller.layout();
    let ejected = HandshakeWatch {
        failed_in_row: 4,
        failed_clients: 0b110,
        ..HandshakeWatch::default()
    };
    let one_client = HandshakeWatch {
        failed_clients: 0b100,
        ..ejected
    };
    let up = |_| Some(BackendState::Up);
    // web1 ejected, web2 not (one client's failures): web1 only.
    let watches = |id| Some(if id == 0 { ejected } else { one_client });
    assert_eq!(
        passive_verdicts(layout, up, watches),
        PassiveVerdicts {
            down: vec![(0, "passive: 4 handshakes not completed".to_owned())],
            kept_up: Vec::new(),
        }
    );
    // Both ejected: one of two goes, the other is kept up.
    let both = passive_verdicts(layout, up, |_| Some(ejected));
    assert_eq!((both.down.len(), both.kept_up), (1, vec![1]));
    // web2 down already: web1 is the last half and is kept up; a backend
    // not up is never judged.
    let web2_down = |id| {
        Some(if id == 0 {
            BackendState::Up
        } else {
            BackendState::Down
        })
    };
    assert_eq!(
        passive_verdicts(layout, web2_down, |_| Some(ejected)),
        PassiveVerdicts {
            down: Vec::new(),
            kept_up: vec![0],
        }
    );
    // An unreadable record judges nothing.
    assert_eq!(
        passive_verdicts(layout, up, |_| None),
        PassiveVerdicts::default()
    );
}

#[tokio::test(start_paused = true)]
async fn an_ejected_backend_kept_up_for_half_of_its_service_has_its_record_cleared() {
    use crate::dataplane::fake::FakeWrite;
    use lb_common::handshake::HandshakeWatch;

    let (config, mut controller) = controller();
    // web2 is down by its checks: web1 is the last half of "web".
    controller.record_health(&[health(&config, 1, Health::Down, 1)]);
    let ejected = HandshakeWatch {
        failed_in_row: 3,
        failed_clients: 0b11,
        ..HandshakeWatch::default()
    };
    controller.maps_mut().record_handshakes(0, ejected);
    let before = controller.maps().log().len();
    controller.check_handshakes();
    assert_eq!(
        controller.maps().log()[before..],
        [FakeWrite::Handshakes {
            id: 0,
            watch: HandshakeWatch::default()
        }]
    );
    assert_eq!(
        controller.subscribe().borrow().services[0].backends[0].state,
        BackendState::Up
    );
}
