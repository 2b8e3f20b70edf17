//! Health checks end to end through the lab: `lb` on lb1 checks web1..3 over
//! HTTP (`GET /health`, interval 500 ms, timeout 300 ms, rise 2, fall 2)
//! while the client sends a steady stream of requests, one new connection
//! each (about 15 per second), logging every reply with its time.
//!
//! - (a) nginx on web2 stops: it is marked down, and from fall × interval +
//!   timeout + 1 s after the stop no request fails and web2 gets no new flow;
//!   the detection time and the failed requests are printed;
//! - (b) it starts again: it rejoins after `rise` checks and gets new flows;
//! - (c) web3 is drained while a keep-alive connection is open to it: that
//!   connection keeps working, new connections avoid web3;
//! - (d) web1 is replaced by a listener that accepts and never answers: it is
//!   marked down by the check's timeout;
//! - (e) every backend down: requests are refused at once (the VIP holder's
//!   kernel answers RST), and served again when one backend returns.
//!
//! Needs root (namespaces, XDP) and the built `lb` (`cargo xtask test` builds
//! it and sets `LB_BINARY`); without them the tests fail, never skip. Each
//! test runs its own lab (prefix `lbh-<x>-`); they run one at a time, since
//! they measure times on a two-core machine. Backend states and times are
//! read from lb1's `/status`.

use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

use lb_tests::e2e::traffic::{answered_by, describe, elapsed};
use lb_tests::e2e::{one_at_a_time, BackendState, LongLived, Pair, Setup, Streams};
use xtask::lab::{self, Node, StreamReply};

const SERVICE: &str = lab::SERVICE_NAME;
const INTERVAL: Duration = Duration::from_millis(500);
const TIMEOUT: Duration = Duration::from_millis(300);
const RISE: u32 = 2;
const FALL: u32 = 2;

/// From a failure on, requests may fail for at most this long (the issue's
/// bound): `fall` checks, the last one possibly timing out, plus 1 s.
const FAILURE_BOUND: Duration = Duration::from_millis(
    FALL as u64 * INTERVAL.as_millis() as u64 + TIMEOUT.as_millis() as u64 + 1000,
);

/// How long a state change may take to show in `/status` before the test fails.
const STATE_CHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// The lab's service with HTTP checks, every backend starting down.
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
",
        interface = lab::HOST_INTERFACE,
        vip = lab::VIP,
        port = lab::HTTP_PORT,
        interval = INTERVAL.as_millis(),
        timeout = TIMEOUT.as_millis(),
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

/// One request stream for `duration`.
fn stream(pair: &Pair, duration: Duration) -> Streams {
    Streams::start(pair.lab(), 1, duration)
}

/// (a) and (b).
#[test]
fn a_stopped_backend_leaves_within_the_bound_and_rejoins_after_rise() {
    let _serial = one_at_a_time();
    let pair = start("lbh-a-");
    let web2 = Node::Web(2);
    let stream = stream(&pair, Duration::from_secs(12));
    sleep(Duration::from_millis(1500));

    let stopped_at = SystemTime::now();
    pair.lab().stop_web(web2).expect("stopping nginx on web2");
    let down = pair.wait_for_backend(Node::Lb1, web2, BackendState::Down, STATE_CHANGE_TIMEOUT);
    let detection = elapsed(stopped_at, down.since);
    // Let the stream run past the bound before bringing web2 back.
    sleep(elapsed(SystemTime::now(), stopped_at + FAILURE_BOUND) + Duration::from_secs(2));

    let restarted_at = SystemTime::now();
    pair.lab().start_web(web2).expect("starting nginx on web2");
    let up = pair.wait_for_backend(Node::Lb1, web2, BackendState::Up, STATE_CHANGE_TIMEOUT);
    let rejoin = elapsed(restarted_at, up.since);
    // The stream runs on for a few seconds: web2 must take new flows again.
    let log = stream.finish();

    let before = log.ended_before(stopped_at);
    let after_stop = log.not_ended_before(stopped_at);
    let failures: Vec<&StreamReply> = after_stop.iter().copied().filter(failed).collect();
    let bound_end = stopped_at + FAILURE_BOUND;
    println!(
        "(a) web2 stopped: marked down {:.3} s after the stop ({}); {} of {} requests failed \
         after the stop, the last {:.3} s after it (bound {:.1} s)",
        detection.as_secs_f64(),
        down.reason,
        failures.len(),
        after_stop.len(),
        failures
            .last()
            .map_or(0.0, |r| elapsed(stopped_at, r.at).as_secs_f64()),
        FAILURE_BOUND.as_secs_f64(),
    );
    println!(
        "(b) web2 restarted: up again {:.3} s after the restart ({})",
        rejoin.as_secs_f64(),
        up.reason
    );

    assert!(
        before.len() >= 10 && before.iter().all(|r| r.is_ok()),
        "before the stop every request succeeds: {}",
        describe(&before, stopped_at)
    );
    for web in Node::WEBS {
        assert!(
            before.iter().any(answered_by(web)),
            "{web} served before the stop"
        );
    }
    assert_eq!(down.health_reason, "connection refused");
    assert!(
        detection <= FAILURE_BOUND,
        "detection took {detection:?}, more than {FAILURE_BOUND:?}"
    );
    let late_failures: Vec<&StreamReply> = failures
        .iter()
        .copied()
        .filter(|r| r.at >= bound_end)
        .collect();
    assert!(
        late_failures.is_empty(),
        "requests failed more than {FAILURE_BOUND:?} after the stop: {}",
        describe(&late_failures, stopped_at)
    );
    let web2_while_out: Vec<&StreamReply> = log
        .between(bound_end, up.since)
        .into_iter()
        .filter(answered_by(web2))
        .collect();
    assert!(
        web2_while_out.is_empty(),
        "web2 got new flows while down: {}",
        describe(&web2_while_out, stopped_at)
    );
    assert!(
        rejoin <= Duration::from_millis(RISE as u64 * INTERVAL.as_millis() as u64 + 1000),
        "web2 took {rejoin:?} to rejoin"
    );
    let after_rejoin = log.since(up.since);
    assert!(
        after_rejoin.iter().any(answered_by(web2)),
        "web2 got no new flow after rejoining: {}",
        describe(&after_rejoin, up.since)
    );
    pair.down();
}

/// (c).
#[test]
fn a_drained_backend_keeps_its_established_connection() {
    let _serial = one_at_a_time();
    let pair = start("lbh-c-");
    let web3 = Node::Web(3);

    const KEEP_ALIVE_REQUESTS: usize = 40;
    let keep_alive = LongLived::open_on(pair.lab(), web3, KEEP_ALIVE_REQUESTS, 5);
    let stream = stream(&pair, Duration::from_secs(5));
    sleep(Duration::from_millis(1500));

    let drained_at = SystemTime::now();
    pair.lb(Node::Lb1, &["backend", "drain", SERVICE, "web3"]);
    let answered_at = SystemTime::now();
    let replies_at_drain = keep_alive.replies_so_far();
    let status = pair.backend(Node::Lb1, web3);
    assert_eq!(status.state, BackendState::Draining);
    assert_eq!(status.reason, "drained by admin");

    let connections = keep_alive.finish_within(Duration::from_secs(15));
    let log = stream.finish();
    let kept = &connections.replies()[0];

    let after_drain = log.since(answered_at);
    println!(
        "(c) web3 drained with a keep-alive connection on it: {} of {} requests on that \
         connection came after the drain, all answered by web3 on port {}; {} new \
         connections after the drain, {} on web3, {} failed",
        kept.len().saturating_sub(replies_at_drain),
        kept.len(),
        kept[0].local_port,
        after_drain.len(),
        after_drain.iter().filter(|r| r.body == web3.name()).count(),
        after_drain.iter().filter(|r| !r.is_ok()).count(),
    );

    // Every request answered by web3, over the one connection opened first.
    connections.assert_all_survived();
    assert_eq!(kept[0].body, web3.name());
    assert!(
        kept.len() - replies_at_drain >= 10,
        "the drain came too late to test the connection"
    );
    assert!(
        log.before(drained_at).iter().any(answered_by(web3)),
        "web3 served new flows before the drain"
    );
    assert!(after_drain.len() >= 20, "too few requests after the drain");
    assert!(
        after_drain
            .iter()
            .all(|r| r.is_ok() && r.body != web3.name()),
        "after the drain, new connections must succeed and avoid web3: {}",
        describe(&after_drain, drained_at)
    );

    // Enabled again, it takes new flows again.
    pair.lb(Node::Lb1, &["backend", "enable", SERVICE, "web3"]);
    assert_eq!(pair.backend(Node::Lb1, web3).state, BackendState::Up);
    let replies = pair
        .lab()
        .http_get_many(&lab::vip_url(), 30)
        .expect("requests after enable");
    assert!(
        replies.iter().all(|r| r.is_ok()) && replies.iter().any(|r| r.body == web3.name()),
        "after enable: {:?}",
        lab::tally(&replies)
    );
    pair.down();
}

/// Listens on the address and port given as the first argument and never
/// accepts: the kernel completes connections, nobody answers.
const SILENT_LISTENER: &str = "use IO::Socket::INET; \
     my $s = IO::Socket::INET->new(LocalAddr => $ARGV[0], Listen => 128, ReuseAddr => 1) \
     or die \"listen: $!\"; sleep 120;";

/// (d).
#[test]
fn a_backend_that_accepts_but_never_answers_is_marked_down_by_timeout() {
    let _serial = one_at_a_time();
    let pair = start("lbh-d-");
    let lab = pair.lab();
    let web1 = Node::Web(1);
    let address = format!(
        "{}:{}",
        web1.address().expect("web servers have addresses"),
        lab::HTTP_PORT
    );
    let stream = stream(&pair, Duration::from_secs(8));
    sleep(Duration::from_secs(1));

    lab.stop_web(web1).expect("stopping nginx on web1");
    let mut command = lab.command(web1, "perl");
    command.args(["-e", SILENT_LISTENER, &address]);
    let listener = lab
        .spawn(
            "silent listener on web1",
            &mut command,
            "silent-listener.log",
        )
        .expect("starting the silent listener");
    let deadline = Instant::now() + Duration::from_secs(5);
    while lab
        .run(web1, "ss", &["-Hltn", "sport = :80"])
        .expect("ss in web1")
        .trim()
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the silent listener does not listen"
        );
        sleep(Duration::from_millis(20));
    }
    let silent_at = SystemTime::now();

    let down = pair.wait_for_backend(Node::Lb1, web1, BackendState::Down, STATE_CHANGE_TIMEOUT);
    let detection = elapsed(silent_at, down.since);
    let settled = silent_at + FAILURE_BOUND;
    // The stream runs on for a few seconds past the bound.
    let log = stream.finish();
    drop(listener);

    let after = log.since(settled);
    let failures = log.since(silent_at).into_iter().filter(failed).count();
    println!(
        "(d) web1 accepts but never answers: marked down {:.3} s after it went silent ({}); \
         {failures} requests failed meanwhile (curl gives up after {} s)",
        detection.as_secs_f64(),
        down.reason,
        lab::STREAM_REQUEST_TIMEOUT_SECS,
    );
    assert_eq!(
        down.health_reason,
        format!("HTTP response timeout after {TIMEOUT:?}")
    );
    assert!(
        detection <= FAILURE_BOUND,
        "detection took {detection:?}, more than {FAILURE_BOUND:?}"
    );
    assert!(after.len() >= 10, "too few requests after the bound");
    assert!(
        after.iter().all(|r| r.is_ok() && r.body != web1.name()),
        "after the bound, requests succeed on web2/web3: {}",
        describe(&after, silent_at)
    );
    pair.down();
}

/// (e).
#[test]
fn with_every_backend_down_requests_are_refused_at_once_and_recover() {
    let _serial = one_at_a_time();
    let pair = start("lbh-e-");
    for web in Node::WEBS {
        pair.lab().stop_web(web).expect("stopping nginx");
    }
    for web in Node::WEBS {
        pair.wait_for_backend(Node::Lb1, web, BackendState::Down, STATE_CHANGE_TIMEOUT);
    }
    let refused = stream(&pair, Duration::from_secs(2)).finish();

    let returned_at = SystemTime::now();
    pair.lab()
        .start_web(Node::Web(1))
        .expect("starting nginx on web1");
    let up = pair.wait_for_backend(
        Node::Lb1,
        Node::Web(1),
        BackendState::Up,
        STATE_CHANGE_TIMEOUT,
    );
    let served = stream(&pair, Duration::from_secs(2)).finish();

    let refused = refused.replies();
    let slowest = refused.iter().map(|r| r.took).max().unwrap_or_default();
    println!(
        "(e) every backend down: {} requests, all refused (curl exit 7) within {:.1} ms at \
         most; web1 back: up {:.3} s after its restart, then {} of {} requests served",
        refused.len(),
        slowest.as_secs_f64() * 1000.0,
        elapsed(returned_at, up.since).as_secs_f64(),
        served.replies().iter().filter(|r| r.is_ok()).count(),
        served.replies().len(),
    );
    assert!(refused.len() >= 10, "too few requests while down");
    for reply in refused {
        assert!(
            reply.curl_exit == 7 && reply.took < Duration::from_millis(200),
            "expected a fast 'connection refused', got {reply:?}"
        );
    }
    let served = served.since(returned_at);
    assert!(served.len() >= 10, "too few requests after the recovery");
    assert!(
        served.iter().all(answered_by(Node::Web(1))),
        "after web1 returned: {}",
        describe(&served, returned_at)
    );
    pair.down();
}

fn failed(reply: &&StreamReply) -> bool {
    !reply.is_ok()
}

/// The configuration the test writes is one `lb` accepts.
#[test]
fn health_config_is_accepted_by_lb() {
    let config = lb::config::parse(&config_toml(), "lab-health.toml").expect("valid config");
    let check = config.services[0].health.as_ref().expect("a check");
    assert_eq!(check.spec.params.interval(), INTERVAL);
    assert_eq!(check.spec.params.fall(), FALL);
    assert_eq!(check.spec.probe.timeout(), TIMEOUT);
}
