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
//! they measure times on a two-core machine.

use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

use lb::api::model::{BackendStatus, StatusReport};
use lb::domain::BackendState;
use xtask::bootstrap;
use xtask::lab::{
    self, KeepAliveClient, Lab, LabOptions, Node, NsProcess, RequestStream, StreamReply,
};
use xtask::paths;

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

/// How long `lb` gets to attach, program its maps and see every backend up.
const LB_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a state change may take to show in `lb status` before the test fails.
const STATE_CHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// One test at a time: they measure detection times.
static SERIAL: Mutex<()> = Mutex::new(());

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

/// A lab with `lb` running on lb1 and every backend up. Dropping it stops
/// `lb`, then removes the lab.
struct HealthLab {
    // Declared first: dropped (stopped) before the lab is torn down.
    lb: Option<NsProcess>,
    lab: Lab,
    prefix: String,
}

impl HealthLab {
    fn up(prefix: &str) -> HealthLab {
        assert!(
            bootstrap::is_root(),
            "this test needs root (network namespaces, XDP): run `cargo xtask test` as root"
        );
        // The leftovers of a crashed earlier run of this very test, if any.
        lab::teardown(prefix).expect("removing a stale lab");
        let lab = Lab::up(&LabOptions::new(prefix)).expect("bringing the lab up");
        let config = lab.run_dir().join("lb-health.toml");
        std::fs::write(&config, config_toml()).expect("writing the lb config");
        let mut lb = lab
            .start_lb(Node::Lb1, &paths::lb_binary(), &config)
            .expect("starting lb");
        lab.wait_until_vip_serves(&mut lb, LB_READY_TIMEOUT)
            .expect("lb serving the VIP");
        let health_lab = HealthLab {
            lb: Some(lb),
            lab,
            prefix: prefix.to_owned(),
        };
        for web in Node::WEBS {
            health_lab.wait_for(web, BackendState::Up, LB_READY_TIMEOUT);
        }
        health_lab
    }

    /// Runs `lb ARGS` inside lb1 (where its API listens) and returns stdout.
    fn lb(&self, args: &[&str]) -> String {
        let binary = paths::lb_binary();
        let binary = binary.to_str().expect("a UTF-8 path");
        self.lab
            .run(Node::Lb1, binary, args)
            .unwrap_or_else(|error| panic!("lb {}: {error}", args.join(" ")))
    }

    fn status(&self) -> StatusReport {
        serde_json::from_str(&self.lb(&["status", "--json"])).expect("lb status --json")
    }

    fn backend(&self, web: Node) -> BackendStatus {
        self.status()
            .backend(SERVICE, &web.name())
            .cloned()
            .unwrap_or_else(|| panic!("{web} missing from lb status"))
    }

    /// Waits until `lb status` shows `web` in `state`; returns its status.
    fn wait_for(&self, web: Node, state: BackendState, timeout: Duration) -> BackendStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.backend(web);
            if status.state == state {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{web} not {state} after {timeout:?}: {status:?}\n{}",
                self.lb(&["status"])
            );
            sleep(Duration::from_millis(50));
        }
    }

    /// Stops `lb` (it must exit cleanly) and removes the lab.
    fn finish(mut self) {
        let lb = self.lb.take().expect("lb runs until finish");
        let status = lb.stop().expect("stopping lb");
        assert!(status.success(), "lb exited with {status} on SIGTERM");
        let HealthLab { lab, prefix, .. } = self;
        lab.down().expect("tearing the lab down");
        assert!(
            !lab::exists(&prefix).expect("listing namespaces"),
            "namespaces left behind"
        );
    }
}

/// `later - earlier`, or zero if `later` is not later.
fn elapsed(earlier: SystemTime, later: SystemTime) -> Duration {
    later.duration_since(earlier).unwrap_or(Duration::ZERO)
}

fn from(web: Node) -> impl Fn(&&StreamReply) -> bool {
    move |reply| reply.body == web.name()
}

fn failed(reply: &&StreamReply) -> bool {
    !reply.is_ok()
}

fn describe(replies: &[&StreamReply], since: SystemTime) -> String {
    replies
        .iter()
        .map(|r| {
            format!(
                "+{:.3}s {} status {} curl exit {}",
                elapsed(since, r.at).as_secs_f64(),
                r.body,
                r.status,
                r.curl_exit
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// (a) and (b).
#[test]
fn a_stopped_backend_leaves_within_the_bound_and_rejoins_after_rise() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let health = HealthLab::up("lbh-a-");
    let lab = &health.lab;
    let web2 = Node::Web(2);
    let stream = RequestStream::start(lab, &lab::vip_url(), Duration::from_secs(12), "stream.log")
        .expect("starting the request stream");
    sleep(Duration::from_millis(1500));

    let stopped_at = SystemTime::now();
    lab.stop_web(web2).expect("stopping nginx on web2");
    let down = health.wait_for(web2, BackendState::Down, STATE_CHANGE_TIMEOUT);
    let detection = elapsed(stopped_at, down.since);
    // Let the stream run past the bound before bringing web2 back.
    sleep(elapsed(SystemTime::now(), stopped_at + FAILURE_BOUND) + Duration::from_secs(2));

    let restarted_at = SystemTime::now();
    lab.start_web(web2).expect("starting nginx on web2");
    let up = health.wait_for(web2, BackendState::Up, STATE_CHANGE_TIMEOUT);
    let rejoin = elapsed(restarted_at, up.since);
    // The stream runs on for a few seconds: web2 must take new flows again.
    let replies = stream.finish();

    let before: Vec<&StreamReply> = replies.iter().filter(|r| r.at < stopped_at).collect();
    let after_stop: Vec<&StreamReply> = replies.iter().filter(|r| r.at >= stopped_at).collect();
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
        assert!(before.iter().any(from(web)), "{web} served before the stop");
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
    let web2_while_out: Vec<&StreamReply> = replies
        .iter()
        .filter(|r| r.at >= bound_end && r.at < up.since)
        .filter(from(web2))
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
    let after_rejoin: Vec<&StreamReply> = replies.iter().filter(|r| r.at > up.since).collect();
    assert!(
        after_rejoin.iter().any(from(web2)),
        "web2 got no new flow after rejoining: {}",
        describe(&after_rejoin, up.since)
    );
    health.finish();
}

/// (c).
#[test]
fn a_drained_backend_keeps_its_established_connection() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let health = HealthLab::up("lbh-c-");
    let lab = &health.lab;
    let web3 = Node::Web(3);
    let url = lab::vip_url();

    // New connections land on web1..3 by their hash: open them until one is on web3.
    const KEEP_ALIVE_REQUESTS: usize = 40;
    let mut keep_alive = None;
    for attempt in 0..30 {
        let client = KeepAliveClient::start(
            lab,
            &url,
            KEEP_ALIVE_REQUESTS,
            5,
            &format!("keep-alive-{attempt}.log"),
        )
        .expect("starting the keep-alive client");
        let deadline = Instant::now() + Duration::from_secs(3);
        let first = loop {
            if let Some(first) = client.replies().into_iter().next() {
                break first;
            }
            assert!(
                Instant::now() < deadline,
                "no reply on the keep-alive connection"
            );
            sleep(Duration::from_millis(20));
        };
        if first.body == web3.name() {
            keep_alive = Some(client);
            break;
        }
        client.finish();
    }
    let mut keep_alive = keep_alive.expect("a keep-alive connection on web3 within 30 tries");

    let stream = RequestStream::start(lab, &url, Duration::from_secs(5), "stream.log")
        .expect("starting the request stream");
    sleep(Duration::from_millis(1500));
    let drained_at = SystemTime::now();
    let output = health.lb(&["backend", "drain", SERVICE, "web3"]);
    let answered_at = SystemTime::now();
    assert!(
        output.contains("draining"),
        "lb backend drain said: {output}"
    );
    let replies_at_drain = keep_alive.replies().len();
    let status = health.backend(web3);
    assert_eq!(status.state, BackendState::Draining);
    assert_eq!(status.reason, "drained by admin");

    let deadline = Instant::now() + Duration::from_secs(15);
    while keep_alive.is_running() {
        assert!(
            Instant::now() < deadline,
            "the keep-alive client did not finish"
        );
        sleep(Duration::from_millis(100));
    }
    let kept = keep_alive.finish();
    let replies = stream.finish();

    let after_drain: Vec<&StreamReply> = replies.iter().filter(|r| r.at > answered_at).collect();
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

    assert_eq!(
        kept.len(),
        KEEP_ALIVE_REQUESTS,
        "every keep-alive request answered"
    );
    assert!(
        kept.len() - replies_at_drain >= 10,
        "the drain came too late to test the connection"
    );
    for (index, reply) in kept.iter().enumerate() {
        assert!(
            reply.status == 200 && reply.body == web3.name(),
            "keep-alive request {index}: {reply:?}"
        );
        assert_eq!(
            reply.local_port, kept[0].local_port,
            "one connection throughout"
        );
        assert_eq!(
            reply.new_connection,
            index == 0,
            "request {index}: {reply:?}"
        );
    }
    let before_drain: Vec<&StreamReply> = replies.iter().filter(|r| r.at < drained_at).collect();
    assert!(
        before_drain.iter().any(from(web3)),
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
    let output = health.lb(&["backend", "enable", SERVICE, "web3"]);
    assert!(output.contains(": up"), "lb backend enable said: {output}");
    let replies = lab.http_get_many(&url, 30).expect("requests after enable");
    assert!(
        replies.iter().all(|r| r.is_ok()) && replies.iter().any(|r| r.body == web3.name()),
        "after enable: {:?}",
        lab::tally(&replies)
    );
    health.finish();
}

/// Listens on the address and port given as the first argument and never
/// accepts: the kernel completes connections, nobody answers.
const SILENT_LISTENER: &str = "use IO::Socket::INET; \
     my $s = IO::Socket::INET->new(LocalAddr => $ARGV[0], Listen => 128, ReuseAddr => 1) \
     or die \"listen: $!\"; sleep 120;";

/// (d).
#[test]
fn a_backend_that_accepts_but_never_answers_is_marked_down_by_timeout() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let health = HealthLab::up("lbh-d-");
    let lab = &health.lab;
    let web1 = Node::Web(1);
    let address = format!(
        "{}:{}",
        web1.address().expect("web servers have addresses"),
        lab::HTTP_PORT
    );
    let stream = RequestStream::start(lab, &lab::vip_url(), Duration::from_secs(8), "stream.log")
        .expect("starting the request stream");
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

    let down = health.wait_for(web1, BackendState::Down, STATE_CHANGE_TIMEOUT);
    let detection = elapsed(silent_at, down.since);
    let settled = silent_at + FAILURE_BOUND;
    // The stream runs on for a few seconds past the bound.
    let replies = stream.finish();
    drop(listener);

    let after: Vec<&StreamReply> = replies.iter().filter(|r| r.at >= settled).collect();
    let failures = replies
        .iter()
        .filter(|r| r.at >= silent_at)
        .filter(failed)
        .count();
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
    health.finish();
}

/// (e).
#[test]
fn with_every_backend_down_requests_are_refused_at_once_and_recover() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let health = HealthLab::up("lbh-e-");
    let lab = &health.lab;
    for web in Node::WEBS {
        lab.stop_web(web).expect("stopping nginx");
    }
    for web in Node::WEBS {
        health.wait_for(web, BackendState::Down, STATE_CHANGE_TIMEOUT);
    }
    let refused = RequestStream::start(lab, &lab::vip_url(), Duration::from_secs(2), "refused.log")
        .expect("starting the request stream")
        .finish();

    let returned_at = SystemTime::now();
    lab.start_web(Node::Web(1)).expect("starting nginx on web1");
    let up = health.wait_for(Node::Web(1), BackendState::Up, STATE_CHANGE_TIMEOUT);
    let served = RequestStream::start(lab, &lab::vip_url(), Duration::from_secs(2), "served.log")
        .expect("starting the request stream")
        .finish();

    let slowest = refused.iter().map(|r| r.took).max().unwrap_or_default();
    println!(
        "(e) every backend down: {} requests, all refused (curl exit 7) within {:.1} ms at \
         most; web1 back: up {:.3} s after its restart, then {} of {} requests served",
        refused.len(),
        slowest.as_secs_f64() * 1000.0,
        elapsed(returned_at, up.since).as_secs_f64(),
        served.iter().filter(|r| r.is_ok()).count(),
        served.len(),
    );
    assert!(refused.len() >= 10, "too few requests while down");
    for reply in &refused {
        assert!(
            reply.curl_exit == 7 && reply.took < Duration::from_millis(200),
            "expected a fast 'connection refused', got {reply:?}"
        );
    }
    assert!(served.len() >= 10, "too few requests after the recovery");
    assert!(
        served
            .iter()
            .all(|r| r.is_ok() && r.body == Node::Web(1).name()),
        "after web1 returned: {}",
        describe(&served.iter().collect::<Vec<_>>(), returned_at)
    );
    health.finish();
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
