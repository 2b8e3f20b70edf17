//! Passive health end to end through the lab (issue 16): `lb` on lb1 checks
//! web1..3 over HTTP (`GET /health`, interval 500 ms, timeout 300 ms, rise
//! 2, fall 3) and watches the handshake of every new flow (`observe =
//! "layer4"`, `error_limit = 3`, `handshake_timeout = "20ms"`: the lab is a
//! LAN, handshakes complete within a few milliseconds; and below the 33 ms
//! between two new connections, so that each failed one is known by the
//! next SYN), while the client
//! opens new connections at a steady 30 a second from 12 addresses of its
//! own in turn, each allowed 3 s to connect and doing one GET.
//!
//! - (a) nginx on web2 is killed: of the connections not yet connected at
//!   the kill, at most 3 fail; web2 is out of service (not `up` in lb1's
//!   `/status`, polled every 50 ms) within 1.5 s, marked down by passive
//!   health (`health_by` `passive`, reason `passive: ...`) with at least 3
//!   failed handshakes; the connections started after that are all
//!   answered by web1 and web3;
//! - (b) web2's host dies (all its IPv4 input dropped, ARP still answered):
//!   no connection not yet connected then fails, since the retransmitted
//!   SYN of a handshake web2 swallowed goes to a live backend; web2 is out
//!   of service within 2 s, marked down by passive health (before its
//!   checks), with at least one retransmitted handshake counted;
//! - (c) 40 % random loss on the path of one client address, both ways, for
//!   8 s of traffic from every address, that one included: at no poll of
//!   lb1's `/status` has a backend left `up` or been marked by passive
//!   health, and every other client's connection succeeds, though the
//!   lossy client's connections suffered and lb1 counted some of its
//!   handshakes failed or retransmitted (a client-side problem takes no
//!   healthy backend down).
//!
//! Each test prints its figures (failed connections and why, time to out of
//! service, handshake times, the handshake counters) before it asserts, so
//! the same scenario run on an `lb` without passive health measures what
//! that costs. Needs root (namespaces, XDP) and the built `lb` (`cargo
//! xtask test` builds it and sets `LB_BINARY`); without them the tests fail,
//! never skip. Each test runs its own lab (prefix `lbp-<x>-`); they run one
//! at a time, since they measure times on a two-core machine.

use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

use lb_tests::e2e::steady::{summarize, SYN_RETRANSMITTED_AFTER};
use lb_tests::e2e::traffic::{answered_by, describe, elapsed};
use lb_tests::e2e::{
    one_at_a_time, BackendReport, BackendState, ClientAddresses, Handshakes, Health, HealthBy,
    NftFault, Pair, Setup, StreamLog, Streams,
};
use xtask::lab::{self, Node, StreamReply};

const SERVICE: &str = lab::SERVICE_NAME;
const INTERVAL: Duration = Duration::from_millis(500);
const TIMEOUT: Duration = Duration::from_millis(300);
const RISE: u32 = 2;
const FALL: u32 = 3;
const ERROR_LIMIT: u32 = 3;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(20);

/// New connections a second, and how many client addresses take turns.
const RATE: u32 = 30;
const CLIENTS: usize = 12;

/// How long the stream runs before the fault: every backend serves.
const WARM_UP: Duration = Duration::from_secs(2);
/// How long it runs on after the fault.
const AFTER_FAULT: Duration = Duration::from_secs(7);

/// How often lb1's `/status` is read to time a change.
const POLL: Duration = Duration::from_millis(50);
/// How long a test looks for the backend to go out of service, well past
/// its bound, so that an `lb` that takes longer is still measured.
const OUT_OF_SERVICE_TIMEOUT: Duration = Duration::from_secs(6);

/// The bounds of issue 16.
const KILLED_OUT_OF_SERVICE_BOUND: Duration = Duration::from_millis(1500);
const KILLED_MAX_FAILED: usize = 3;
const DEAD_OUT_OF_SERVICE_BOUND: Duration = Duration::from_secs(2);

/// (c): the loss on the one client's path, and how long traffic runs
/// through it.
const LOSS_PERCENT: u8 = 40;
const LOSSY_TRAFFIC: Duration = Duration::from_secs(8);

/// The lab's service with HTTP checks and passive health, every backend
/// starting down.
fn config_toml() -> String {
    let mut text = format!(
        "[global]
interface = \"{interface}\"

[[service]]
name = \"{SERVICE}\"
vip = \"{vip}\"
port = {port}
protocol = \"tcp\"
scheduler = \"maglev\"

[service.health]
type = \"http\"
path = \"/health\"
expect_body = \"ok\"
interval = \"{interval}ms\"
timeout = \"{timeout}ms\"
rise = {RISE}
fall = {FALL}
observe = \"layer4\"
error_limit = {ERROR_LIMIT}
handshake_timeout = \"{handshake_timeout}ms\"
",
        interface = lab::HOST_INTERFACE,
        vip = lab::VIP,
        port = lab::HTTP_PORT,
        interval = INTERVAL.as_millis(),
        timeout = TIMEOUT.as_millis(),
        handshake_timeout = HANDSHAKE_TIMEOUT.as_millis(),
    );
    for web in Node::WEBS {
        let address = web.address().expect("web servers have addresses");
        text.push_str(&format!(
            "\n[[service.backend]]\nname = \"{web}\"\naddress = \"{address}\"\n"
        ));
    }
    text
}

/// lb1 running `lb` with [`config_toml`], every backend up.
fn start(prefix: &str) -> Pair {
    Pair::start(prefix, Setup::Single(config_toml()))
}

/// The first reading of lb1's `/status`, polled every [`POLL`] for at most
/// `timeout`, that shows `web` not `up`: when it was read, and `web` then.
fn first_out_of_service(
    pair: &Pair,
    web: Node,
    timeout: Duration,
) -> Option<(SystemTime, BackendReport)> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let polled = Instant::now();
        if let Ok(status) = pair.try_status(Node::Lb1) {
            let backend = status.service(SERVICE).backend(&web.name());
            if backend.state != BackendState::Up {
                return Some((SystemTime::now(), backend.clone()));
            }
        }
        sleep(POLL.saturating_sub(polled.elapsed()));
    }
    None
}

/// `found` (see [`first_out_of_service`]) for a report: how long after
/// `fault` it was seen and lb1 says it changed, and why.
fn describe_out_of_service(
    found: &Option<(SystemTime, BackendReport)>,
    fault: SystemTime,
) -> String {
    match found {
        Some((seen, backend)) => format!(
            "out of service {:.3} s after it (seen by the poll; lb1's `since` +{:.3} s): \
             state {}, health {:?} by {:?}, reason {:?}",
            elapsed(fault, *seen).as_secs_f64(),
            elapsed(fault, backend.since).as_secs_f64(),
            backend.state,
            backend.health,
            backend.health_by,
            backend.reason,
        ),
        None => format!(
            "still up {:.1} s after it",
            OUT_OF_SERVICE_TIMEOUT.as_secs_f64()
        ),
    }
}

/// A backend's handshake counters for a report.
fn describe_handshakes(handshakes: Option<Handshakes>) -> String {
    handshakes.map_or("not reported".to_owned(), |h| {
        format!(
            "{} completed, {} retransmitted, {} failed",
            h.completed, h.retransmitted, h.failed
        )
    })
}

/// How many of the requests connected before `at` and still running then
/// failed: those a fault at `at` breaks whatever the health checks do.
fn in_flight_failures(log: &StreamLog, at: SystemTime) -> usize {
    let new = log.not_connected_before(at);
    log.not_ended_before(at)
        .into_iter()
        .filter(|&r| !r.is_ok() && !new.iter().any(|&n| std::ptr::eq(n, r)))
        .count()
}

/// The requests ended before `at` all succeeded, and every backend served
/// some: the stream and the client's addresses work.
fn assert_all_served_before(log: &[&StreamReply], at: SystemTime) {
    assert!(
        log.len() >= 20 && log.iter().all(|r| r.is_ok()),
        "before the fault every connection succeeds: {}",
        describe(log, at)
    );
    for web in Node::WEBS {
        assert!(
            log.iter().any(answered_by(web)),
            "{web} served before the fault"
        );
    }
}

fn failed(reply: &&StreamReply) -> bool {
    !reply.is_ok()
}

/// (a).
#[test]
fn a_killed_backend_is_out_of_service_after_at_most_three_failed_connections() {
    let _serial = one_at_a_time();
    let pair = start("lbp-a-");
    let web2 = Node::Web(2);
    let clients = ClientAddresses::add(pair.lab(), CLIENTS);
    let stream = Streams::steady(pair.lab(), clients.addresses(), RATE, WARM_UP + AFTER_FAULT);
    sleep(WARM_UP);

    let killed_at = SystemTime::now();
    pair.lab().kill_web(web2).expect("killing nginx on web2");
    let out = first_out_of_service(&pair, web2, OUT_OF_SERVICE_TIMEOUT);
    let log = stream.finish();
    let last = pair.backend(Node::Lb1, web2);

    let before = log.ended_before(killed_at);
    let since_kill = log.not_connected_before(killed_at);
    let failures: Vec<&StreamReply> = since_kill.iter().copied().filter(failed).collect();
    let in_flight = in_flight_failures(&log, killed_at);
    println!(
        "(a) web2's nginx killed: {}; {} of {} connections new to the kill failed, the last \
         started {:.3} s after it ({} more, connected before it, failed); handshakes of web2: {}",
        describe_out_of_service(&out, killed_at),
        failures.len(),
        since_kill.len(),
        failures
            .last()
            .map_or(0.0, |r| elapsed(killed_at, r.at).as_secs_f64()),
        in_flight,
        describe_handshakes(last.handshakes),
    );
    println!("    before the kill: {}", summarize(&before));
    println!("    new to the kill: {}", summarize(&since_kill));
    if !failures.is_empty() {
        println!("    failed: {}", describe(&failures, killed_at));
    }

    assert_all_served_before(&before, killed_at);
    assert!(
        failures.len() <= KILLED_MAX_FAILED,
        "{} connections new to the kill failed, more than {KILLED_MAX_FAILED}: {}",
        failures.len(),
        describe(&failures, killed_at)
    );
    let (seen, down) =
        out.unwrap_or_else(|| panic!("web2 still up {OUT_OF_SERVICE_TIMEOUT:?} after the kill"));
    let taken = elapsed(killed_at, seen);
    assert!(
        taken <= KILLED_OUT_OF_SERVICE_BOUND,
        "web2 went out of service {taken:?} after the kill, more than \
         {KILLED_OUT_OF_SERVICE_BOUND:?}"
    );
    assert_eq!(
        (down.state, down.health, down.health_by),
        (BackendState::Down, Health::Down, Some(HealthBy::Passive)),
        "web2 is marked down by passive health: {down:?}"
    );
    assert!(
        down.reason.starts_with("passive: "),
        "reason {:?}",
        down.reason
    );
    let handshakes = last.handshakes.expect("web2's handshakes are reported");
    assert!(
        handshakes.failed >= u64::from(ERROR_LIMIT),
        "web2's failed handshakes: {handshakes:?}"
    );
    let after = log.since(seen);
    assert!(after.len() >= 20, "too few connections after web2 left");
    assert!(
        after
            .iter()
            .all(|r| answered_by(Node::Web(1))(r) || answered_by(Node::Web(3))(r)),
        "after web2 left, web1 and web3 answer every connection: {}",
        describe(&after, killed_at)
    );
    drop(clients);
    pair.down();
}

/// (b).
#[test]
fn a_dead_host_costs_no_connection_and_is_out_of_service_within_two_seconds() {
    let _serial = one_at_a_time();
    let pair = start("lbp-b-");
    let web2 = Node::Web(2);
    let clients = ClientAddresses::add(pair.lab(), CLIENTS);
    let stream = Streams::steady(pair.lab(), clients.addresses(), RATE, WARM_UP + AFTER_FAULT);
    sleep(WARM_UP);

    let dead_at = SystemTime::now();
    let dead = NftFault::dead_host(pair.lab(), web2);
    let out = first_out_of_service(&pair, web2, OUT_OF_SERVICE_TIMEOUT);
    let log = stream.finish();
    let last = pair.backend(Node::Lb1, web2);
    drop(dead);

    let before = log.ended_before(dead_at);
    let since_dead = log.not_connected_before(dead_at);
    let failures: Vec<&StreamReply> = since_dead.iter().copied().filter(failed).collect();
    let in_flight = in_flight_failures(&log, dead_at);
    let slow: Vec<&StreamReply> = since_dead
        .iter()
        .copied()
        .filter(|r| r.connect > SYN_RETRANSMITTED_AFTER)
        .collect();
    println!(
        "(b) web2's host dead: {}; {} of {} connections new to the drop failed ({} more, \
         connected before it, failed), {} took over {} ms to connect; handshakes of web2: {}",
        describe_out_of_service(&out, dead_at),
        failures.len(),
        since_dead.len(),
        in_flight,
        slow.len(),
        SYN_RETRANSMITTED_AFTER.as_millis(),
        describe_handshakes(last.handshakes),
    );
    println!("    before the drop: {}", summarize(&before));
    println!("    new to the drop: {}", summarize(&since_dead));
    if !failures.is_empty() {
        println!("    failed: {}", describe(&failures, dead_at));
    }

    assert_all_served_before(&before, dead_at);
    assert!(
        failures.is_empty(),
        "connections failed after web2's host died: {}",
        describe(&failures, dead_at)
    );
    let (seen, down) = out
        .unwrap_or_else(|| panic!("web2 still up {OUT_OF_SERVICE_TIMEOUT:?} after its host died"));
    let taken = elapsed(dead_at, seen);
    assert!(
        taken <= DEAD_OUT_OF_SERVICE_BOUND,
        "web2 went out of service {taken:?} after its host died, more than \
         {DEAD_OUT_OF_SERVICE_BOUND:?}"
    );
    assert_eq!(
        down.health_by,
        Some(HealthBy::Passive),
        "web2 is marked down by passive health, before its checks: {down:?}"
    );
    let handshakes = last.handshakes.expect("web2's handshakes are reported");
    assert!(
        handshakes.retransmitted >= 1,
        "no retransmitted handshake counted on web2: {handshakes:?}"
    );
    drop(clients);
    pair.down();
}

/// (c).
#[test]
fn heavy_loss_on_one_client_s_path_takes_no_backend_down() {
    let _serial = one_at_a_time();
    let pair = start("lbp-c-");
    let clients = ClientAddresses::add(pair.lab(), CLIENTS);
    let lossy = clients.addresses()[0];
    let loss = NftFault::lossy_path(pair.lab(), lossy, LOSS_PERCENT);
    let started = SystemTime::now();
    let stream = Streams::steady(pair.lab(), clients.addresses(), RATE, LOSSY_TRAFFIC);

    // Every poll until the stream's last connection has started.
    let mut polls = 0;
    let mut left: Vec<String> = Vec::new();
    let deadline = Instant::now() + LOSSY_TRAFFIC;
    while Instant::now() < deadline {
        let polled = Instant::now();
        if let Ok(status) = pair.try_status(Node::Lb1) {
            polls += 1;
            for backend in &status.service(SERVICE).backends {
                if backend.state != BackendState::Up || backend.health_by == Some(HealthBy::Passive)
                {
                    left.push(format!(
                        "+{:.3} s {}: state {}, health {:?} by {:?}, reason {:?}",
                        elapsed(started, SystemTime::now()).as_secs_f64(),
                        backend.name,
                        backend.state,
                        backend.health,
                        backend.health_by,
                        backend.reason
                    ));
                }
            }
        }
        sleep(POLL.saturating_sub(polled.elapsed()));
    }
    let log = stream.finish();
    let last = pair.status(Node::Lb1);
    drop(loss);

    let (from_lossy, from_others): (Vec<&StreamReply>, Vec<&StreamReply>) =
        log.replies().iter().partition(|r| r.source == Some(lossy));
    println!(
        "(c) {LOSS_PERCENT} % loss on {lossy}'s path for {} s: {polls} polls of lb1's /status, \
         {} saw a backend out of `up` or marked by passive health",
        LOSSY_TRAFFIC.as_secs(),
        left.len()
    );
    println!("    from {lossy}: {}", summarize(&from_lossy));
    println!("    from the other addresses: {}", summarize(&from_others));
    let backends = &last.service(SERVICE).backends;
    for backend in backends {
        println!(
            "    {}: state {}, health {:?} by {:?}; handshakes: {}",
            backend.name,
            backend.state,
            backend.health,
            backend.health_by,
            describe_handshakes(backend.handshakes)
        );
    }
    for line in &left {
        println!("    {line}");
    }

    let too_few = LOSSY_TRAFFIC.as_millis() / 200;
    assert!(polls >= too_few, "only {polls} polls of lb1's /status");
    assert!(
        left.is_empty(),
        "a client-side problem took backends out of service:\n{}",
        left.join("\n")
    );
    assert!(
        from_lossy
            .iter()
            .any(|r| !r.is_ok() || r.connect > SYN_RETRANSMITTED_AFTER),
        "the loss did not show on {lossy}'s connections: {}",
        describe(&from_lossy, started)
    );
    let not_completed: u64 = backends
        .iter()
        .map(|backend| {
            let handshakes = backend
                .handshakes
                .unwrap_or_else(|| panic!("{}'s handshakes are reported", backend.name));
            handshakes.failed + handshakes.retransmitted
        })
        .sum();
    assert!(
        not_completed >= 1,
        "lb1 saw no handshake of the lossy client fail: the test tested nothing"
    );
    assert!(
        from_others.iter().all(|r| r.is_ok()),
        "the other clients' connections succeed: {}",
        describe(&from_others, started)
    );
    drop(clients);
    pair.down();
}

/// The configuration the test writes is one `lb` accepts.
#[test]
fn passive_config_is_accepted_by_lb() {
    lb::config::parse(&config_toml(), "lab-passive.toml").expect("valid config");
}
