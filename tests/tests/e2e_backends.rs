//! A backend's MAC and state changes end to end through the lab: `lb` on
//! lb1 checks web1..3 over HTTP (interval 500 ms, rise 2, fall 2) with
//! `global.notify_backend` writing each change to a file.
//!
//! - (m) web1's server is "replaced": its interface gets a new MAC and it
//!   announces it with a gratuitous ARP. `lb` follows without a restart:
//!   `/status` shows the new MAC, web1 stays up, and requests through the
//!   VIP keep being served, by web1 too (its frames go to the new MAC).
//! - (h) nginx on web2 stops and starts again, web3 is drained and enabled:
//!   the hook wrote each change, in order, with its previous state, and no
//!   hook failed (`lb_notify_hook_failures_total{hook="backend"}`). The
//!   last check's duration is in `/status` and `/metrics`.
//!
//! Needs root (namespaces, XDP) and the built `lb` (`cargo xtask test` builds
//! it and sets `LB_BINARY`); without them the tests fail, never skip. Each
//! test runs its own lab (prefix `lbn-<x>-`), one at a time.

use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use lb::vrrp::garp::GarpSender;
use lb_tests::e2e::{in_namespace, one_at_a_time, BackendState, LongLived, Pair, Setup};
use xtask::lab::{self, Node};

const SERVICE: &str = lab::SERVICE_NAME;

/// How long a change may take to show before the test fails (not a goal).
const PATIENCE: Duration = Duration::from_secs(20);

/// The lab's service with HTTP checks and, with `hook_log`, a backend hook
/// appending `BACKEND PREVIOUS STATE` lines to it.
fn config_toml(hook_log: Option<&Path>) -> String {
    let hook = hook_log.map_or_else(String::new, |log| {
        format!(
            "notify_backend = 'echo \"$LB_SERVICE $LB_BACKEND $LB_BACKEND_ADDRESS:$LB_BACKEND_PORT \
             $LB_BACKEND_PREVIOUS_STATE $LB_BACKEND_STATE\" >> {}'\n",
            log.display()
        )
    });
    let mut text = format!(
        "[global]
interface = \"{interface}\"
{hook}
[[service]]
name = \"{SERVICE}\"
vip = \"{vip}\"
port = {port}
protocol = \"tcp\"

[service.health]
type = \"http\"
path = \"/health\"
interval = \"500ms\"
timeout = \"300ms\"
rise = 2
fall = 2
",
        interface = lab::HOST_INTERFACE,
        vip = lab::VIP,
        port = lab::HTTP_PORT,
    );
    for web in Node::WEBS {
        let address = web.address().expect("web servers have addresses");
        text.push_str(&format!(
            "\n[[service.backend]]\nname = \"{web}\"\naddress = \"{address}\"\n"
        ));
    }
    text
}

/// Polls `check` until it holds, panicking with `what` after [`PATIENCE`].
fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(100));
    }
}

/// (m).
#[test]
fn a_backend_whose_mac_changes_is_followed_without_a_restart() {
    let _serial = one_at_a_time();
    let pair = Pair::start("lbn-m-", Setup::Single(config_toml(None)));
    let web1 = Node::Web(1);
    let address = web1.address().expect("web1 has an address");
    let before = pair.backend(Node::Lb1, web1);
    let old_mac = before
        .mac
        .clone()
        .expect("a resolved backend shows its MAC");
    let new_mac = [0x02, 0x00, 0x5e, 0x10, 0x00, 0x01];
    let new_mac_text = "02:00:5e:10:00:01";
    assert_ne!(old_mac, new_mac_text);

    // The replaced server: same address, another MAC, announced.
    pair.lab()
        .run(
            web1,
            "ip",
            &[
                "link",
                "set",
                "dev",
                lab::HOST_INTERFACE,
                "address",
                new_mac_text,
            ],
        )
        .expect("changing web1's MAC");
    let ifindex: u32 = pair
        .lab()
        .run(
            web1,
            "cat",
            &[&format!("/sys/class/net/{}/ifindex", lab::HOST_INTERFACE)],
        )
        .expect("web1's interface index")
        .trim()
        .parse()
        .expect("an interface index");
    in_namespace(pair.lab(), web1, || {
        GarpSender::open(ifindex, new_mac)
            .and_then(|garp| garp.send(&[address]))
            .expect("gratuitous ARP from web1");
    });

    let after = eventually("lb1 showing web1's new MAC", || {
        let backend = pair.backend(Node::Lb1, web1);
        (backend.mac.as_deref() == Some(new_mac_text)).then_some(backend)
    });
    println!(
        "(m) web1's MAC {old_mac} -> {new_mac_text}: lb1 shows {:?}, state {:?} ({})",
        after.mac, after.state, after.reason
    );
    assert!(!after.mac_unresolved);
    // Served through the VIP, web1 included, by the same lb.
    let replies = eventually("web1 serving through the VIP again", || {
        let replies = pair
            .lab()
            .http_get_many(&lab::vip_url(), 30)
            .expect("requests through the VIP");
        (pair.backend(Node::Lb1, web1).state == BackendState::Up
            && replies.iter().any(|reply| reply.body == web1.name()))
        .then_some(replies)
    });
    assert!(
        replies.iter().all(|reply| reply.is_ok()),
        "every request through the VIP served: {replies:?}"
    );
    let status = pair.backend(Node::Lb1, web1);
    assert_eq!(status.mac.as_deref(), Some(new_mac_text));
    assert_eq!(status.state, BackendState::Up);
    pair.down();
}

/// (h).
#[test]
fn the_backend_hook_sees_every_state_change_in_order() {
    let _serial = one_at_a_time();
    let log = std::env::temp_dir().join(format!("lbn-h-backend-hook-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let pair = Pair::start("lbn-h-", Setup::Single(config_toml(Some(&log))));
    let (web2, web3) = (Node::Web(2), Node::Web(3));
    let lines = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    // Every backend started down and came up: one line each.
    let started = eventually("the start's hooks", || {
        let lines = lines();
        (lines.len() == Node::WEBS.len()).then_some(lines)
    });
    for web in Node::WEBS {
        let address = web.address().expect("web servers have addresses");
        let line = format!("{SERVICE} {web} {address}:{} down up", lab::HTTP_PORT);
        assert!(started.contains(&line), "{line:?} in {started:?}");
    }

    pair.lab().stop_web(web2).expect("stopping nginx on web2");
    pair.wait_for_backend(Node::Lb1, web2, BackendState::Down, PATIENCE);
    pair.lab().start_web(web2).expect("starting nginx on web2");
    pair.wait_for_backend(Node::Lb1, web2, BackendState::Up, PATIENCE);
    pair.lb(Node::Lb1, &["backend", "drain", SERVICE, "web3"]);
    pair.lb(Node::Lb1, &["backend", "enable", SERVICE, "web3"]);

    let line = |web: Node, change: &str| {
        let address = web.address().expect("web servers have addresses");
        format!("{SERVICE} {web} {address}:{} {change}", lab::HTTP_PORT)
    };
    let expected = [
        line(web2, "up down"),
        line(web2, "down up"),
        line(web3, "up draining"),
        line(web3, "draining up"),
    ];
    // web3 has no flow: a census between its drain and its enable may find
    // it drained (its own hook, checked in (d)); the four changes stay in order.
    let web3_drained = line(web3, "draining drained");
    let changes = eventually("the hooks of the four changes", || {
        let lines: Vec<String> = lines()
            .into_iter()
            .skip(started.len())
            .filter(|line| *line != web3_drained)
            .collect();
        (lines.len() >= expected.len()).then_some(lines)
    });
    println!("(h) the backend hook wrote: {changes:?}");
    assert_eq!(changes, expected);

    let metrics = pair
        .lab()
        .run(
            Node::Lb1,
            "curl",
            &[
                "-sS",
                "--fail",
                &format!("http://{}/metrics", lb::config::DEFAULT_API),
            ],
        )
        .expect("GET /metrics");
    assert!(
        metrics.contains("lb_notify_hook_failures_total{hook=\"backend\"} 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "lb_backend_health_check_duration_seconds{{service=\"{SERVICE}\",backend=\"web1\"}} "
        )),
        "{metrics}"
    );
    let status = pair.backend(Node::Lb1, Node::Web(1));
    assert!(status.health_check_duration_seconds.is_some(), "{status:?}");
    pair.down();
    let _ = std::fs::remove_file(&log);
}

/// (d): `lb backend drain --wait` returns only once the last long-lived
/// connection on the backend has closed, and `--timeout` gives up while one
/// is open. Meanwhile the draining backend keeps serving them. The backend
/// hook then runs `draining -> drained`, once.
#[test]
fn drain_wait_returns_once_the_last_connection_on_the_backend_has_closed() {
    let _serial = one_at_a_time();
    let log = std::env::temp_dir().join(format!("lbn-d-backend-hook-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let pair = Pair::start("lbn-d-", Setup::Single(config_toml(Some(&log))));
    let web2 = Node::Web(2);
    // Two keep-alive connections on web2, 5 requests a second: one for
    // about 15 s, opened first, then one for about 5 s (opening one on web2
    // may take a few tries, so the short one must start last).
    let long = LongLived::open_on(pair.lab(), web2, 75, 5);
    let short = LongLived::open_on(pair.lab(), web2, 25, 5);
    let active = eventually("lb1 counting web2's two connections", || {
        let backend = pair.backend(Node::Lb1, web2);
        (backend.active_flows >= 2).then_some(backend.active_flows)
    });

    let gave_up = pair.try_lb(
        Node::Lb1,
        &[
            "backend",
            "drain",
            SERVICE,
            "web2",
            "--wait",
            "--timeout",
            "1s",
        ],
    );
    assert!(
        gave_up.is_err(),
        "drain --wait --timeout 1s returned while connections were open: {gave_up:?}"
    );
    let mut waiting = pair.spawn_lb(
        Node::Lb1,
        &["backend", "drain", SERVICE, "web2", "--wait"],
        "drain-wait.log",
    );
    let short = short.finish_within(PATIENCE);
    // The short one has closed, the long one still runs: still waiting.
    sleep(Duration::from_secs(2));
    assert_eq!(
        waiting.try_exit_status().expect("polling lb"),
        None,
        "drain --wait returned while a connection was open: {}",
        waiting.log_tail(5)
    );
    assert!(pair.backend(Node::Lb1, web2).active_flows >= 1);
    let long = long.finish_within(PATIENCE);
    let closed_at = Instant::now();
    let exit = eventually("drain --wait returning", || {
        waiting.try_exit_status().expect("polling lb")
    });
    println!(
        "(d) web2 had {active} active flows; drain --wait returned {:?} after the last closed",
        closed_at.elapsed()
    );
    assert!(
        exit.success(),
        "drain --wait failed: {}",
        waiting.log_tail(5)
    );
    // Draining kept both connections on web2 to their end.
    short.assert_all_survived();
    long.assert_all_survived();
    let backend = pair.backend(Node::Lb1, web2);
    assert_eq!(
        (backend.state, backend.active_flows),
        (BackendState::Draining, 0)
    );
    let address = web2.address().expect("web servers have addresses");
    let drained = format!(
        "{SERVICE} {web2} {address}:{} draining drained",
        lab::HTTP_PORT
    );
    let hooks = eventually("the drained hook", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains(&drained).then_some(text)
    });
    // Later censuses find it still drained: no second hook.
    sleep(Duration::from_secs(3));
    let hooks_later = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        hooks_later.matches(&drained).count(),
        1,
        "one drained hook per drain: {hooks_later}"
    );
    assert!(hooks.contains(&format!(
        "{SERVICE} {web2} {address}:{} up draining",
        lab::HTTP_PORT
    )));
    pair.down();
    let _ = std::fs::remove_file(&log);
}
