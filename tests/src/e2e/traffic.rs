//! Traffic from the client while a test changes the lab: request streams (a
//! new connection per request, one after the other or at a steady rate from
//! several client addresses, every reply logged with its start time) and
//! long-lived keep-alive connections, over HTTP or (the `_to` variants, with
//! a [`Target`]) HTTPS, and what they saw once finished.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

use xtask::lab::{
    self, Failure, KeepAliveClient, KeepAliveReply, Lab, Node, RequestStream, StreamReply, Target,
};

use super::gap::{gap_around, GapError};

/// How long after an event its gap and failures are looked for.
const EVENT_WINDOW: Duration = Duration::from_secs(3);

/// How long a new long-lived connection may take to get its first reply.
const FIRST_REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// The bound on the gap a failover makes in the request streams
/// ([`Outcome::assert_gaps_bounded`]), the same for every service the
/// failover tests watch: generous, it only catches hangs.
pub const FAILOVER_GAP_BOUND: Duration = Duration::from_secs(5);

/// How many connections [`LongLived::open_on`] opens, at most, to land one
/// on the wanted backend.
const OPEN_ON_TRIES: usize = 30;

/// Numbers the logs of this process's streams and connections, so that two
/// of them never share a file in the lab's run directory.
static LOG_SEQUENCE: AtomicUsize = AtomicUsize::new(0);

fn log_name(what: &str) -> String {
    format!(
        "{what}-{}.log",
        LOG_SEQUENCE.fetch_add(1, Ordering::Relaxed)
    )
}

/// Request streams from the client to the VIP, running in the background.
#[derive(Debug)]
pub struct Streams {
    streams: Vec<RequestStream>,
}

impl Streams {
    /// Starts `count` streams (about 15 requests per second each) to the
    /// VIP's HTTP service for `duration`, staggered so their requests
    /// interleave.
    pub fn start(lab: &Lab, count: usize, duration: Duration) -> Streams {
        Self::start_to(lab, &Target::vip_http(), count, duration)
    }

    /// [`Streams::start`] to `target` (e.g. [`Target::vip_https`]).
    pub fn start_to(lab: &Lab, target: &Target, count: usize, duration: Duration) -> Streams {
        let streams = (0..count)
            .map(|_| {
                sleep(Duration::from_millis(20));
                RequestStream::start(lab, target, duration, &log_name("stream"))
                    .expect("starting a request stream")
            })
            .collect();
        Streams { streams }
    }

    /// One steady stream (see [`RequestStream::start_steady`]):
    /// `per_second` new connections a second for `duration`, each from the
    /// next of `sources` (addresses the client holds, e.g. a
    /// [`super::ClientAddresses`]) in turn, each allowed
    /// [`lab::STEADY_CONNECT_TIMEOUT_SECS`] to connect.
    pub fn steady(lab: &Lab, sources: &[Ipv4Addr], per_second: u32, duration: Duration) -> Streams {
        let url = lab::vip_url();
        let stream = RequestStream::start_steady(
            lab,
            &url,
            per_second,
            duration,
            sources,
            &log_name("steady"),
        )
        .expect("starting a steady request stream");
        Streams {
            streams: vec![stream],
        }
    }

    /// Waits for every stream to end by itself and collects the replies.
    pub fn finish(self) -> StreamLog {
        let mut replies: Vec<StreamReply> = self
            .streams
            .into_iter()
            .flat_map(RequestStream::finish)
            .collect();
        replies.sort_by_key(|reply| reply.at);
        StreamLog { replies }
    }
}

/// Every reply of finished request streams, in order of start.
#[derive(Clone, Debug)]
pub struct StreamLog {
    replies: Vec<StreamReply>,
}

impl StreamLog {
    /// Every reply.
    pub fn replies(&self) -> &[StreamReply] {
        &self.replies
    }

    /// The requests started before `at`.
    pub fn before(&self, at: SystemTime) -> Vec<&StreamReply> {
        self.replies.iter().filter(|reply| reply.at < at).collect()
    }

    /// The requests that had ended before `at`: the ones an event at `at`
    /// cannot have touched (a request started just before it may still be
    /// in flight).
    pub fn ended_before(&self, at: SystemTime) -> Vec<&StreamReply> {
        self.replies
            .iter()
            .filter(|reply| reply.at + reply.took < at)
            .collect()
    }

    /// The requests still running at `at` or started after it: the ones
    /// an event at `at` may have touched.
    pub fn not_ended_before(&self, at: SystemTime) -> Vec<&StreamReply> {
        self.replies
            .iter()
            .filter(|reply| reply.at + reply.took >= at)
            .collect()
    }

    /// The requests whose connection was not established yet at `at`:
    /// started from `at` on, or started before it and neither connected
    /// nor ended by then. These are the new connections an event at `at`
    /// may meet; a request started just before it may send its SYN just
    /// after it.
    pub fn not_connected_before(&self, at: SystemTime) -> Vec<&StreamReply> {
        self.replies
            .iter()
            .filter(|reply| {
                reply.at + reply.took >= at
                    && (reply.connect.is_zero() || reply.at + reply.connect >= at)
            })
            .collect()
    }

    /// The requests started at or after `at`.
    pub fn since(&self, at: SystemTime) -> Vec<&StreamReply> {
        self.replies.iter().filter(|reply| reply.at >= at).collect()
    }

    /// The requests started in `from..to`.
    pub fn between(&self, from: SystemTime, to: SystemTime) -> Vec<&StreamReply> {
        self.replies
            .iter()
            .filter(|reply| reply.at >= from && reply.at < to)
            .collect()
    }

    /// The requests that got no `200 OK`.
    pub fn failures(&self) -> Vec<&StreamReply> {
        self.replies.iter().filter(|reply| !reply.is_ok()).collect()
    }

    /// How many requests were refused or reset (an RST from somewhere).
    pub fn resets(&self) -> usize {
        self.replies
            .iter()
            .filter(|reply| matches!(reply.failure(), Some(Failure::Refused | Failure::Reset)))
            .count()
    }

    /// The gap in the streams around `at` (see [`gap_around`]).
    pub fn gap_around(&self, at: SystemTime, window: Duration) -> Result<Duration, GapError> {
        let ok: Vec<SystemTime> = self
            .replies
            .iter()
            .filter(|reply| reply.is_ok())
            .map(|reply| reply.at)
            .collect();
        gap_around(&ok, at, window)
    }

    /// The requests that failed from 1 s before `at` to `window` after it.
    pub fn failures_around(&self, at: SystemTime, window: Duration) -> Vec<&StreamReply> {
        let from = at - Duration::from_secs(1);
        self.failures()
            .into_iter()
            .filter(|reply| reply.at >= from && reply.at <= at + window)
            .collect()
    }
}

/// Whether `reply` was answered by `web`.
pub fn answered_by(web: Node) -> impl Fn(&&StreamReply) -> bool {
    move |reply| reply.is_ok() && reply.body == web.name()
}

/// `replies` for a failure message, with times relative to `since`.
pub fn describe(replies: &[&StreamReply], since: SystemTime) -> String {
    replies
        .iter()
        .map(|reply| {
            let source = reply
                .source
                .map(|source| format!(" from {source}"))
                .unwrap_or_default();
            format!(
                "+{:.3}s{source} {} status {} curl exit {} (connect {:.3}s, total {:.3}s)",
                elapsed(since, reply.at).as_secs_f64(),
                reply.body,
                reply.status,
                reply.curl_exit,
                reply.connect.as_secs_f64(),
                reply.took.as_secs_f64(),
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The distinct curl exit codes of `failures`.
fn exit_codes(failures: &[&StreamReply]) -> Vec<u32> {
    let codes: BTreeSet<u32> = failures.iter().map(|reply| reply.curl_exit).collect();
    codes.into_iter().collect()
}

/// `later - earlier`, or zero if `later` is not later.
pub fn elapsed(earlier: SystemTime, later: SystemTime) -> Duration {
    later.duration_since(earlier).unwrap_or(Duration::ZERO)
}

/// Keep-alive connections from the client to the VIP, each one curl
/// sending its requests at a fixed rate over one TCP connection.
#[derive(Debug)]
pub struct LongLived {
    clients: Vec<KeepAliveClient>,
    requests_each: usize,
}

impl LongLived {
    /// Opens `count` connections to the VIP's HTTP service, each sending
    /// `requests_each` requests, `per_second` a second, and waits until
    /// each has its first reply (so each was opened through the LB that
    /// serves the VIP now).
    pub fn open(lab: &Lab, count: usize, requests_each: usize, per_second: u32) -> LongLived {
        Self::open_to(lab, &Target::vip_http(), count, requests_each, per_second)
    }

    /// [`LongLived::open`] to `target` (e.g. [`Target::vip_https`]: one TLS
    /// session per connection).
    pub fn open_to(
        lab: &Lab,
        target: &Target,
        count: usize,
        requests_each: usize,
        per_second: u32,
    ) -> LongLived {
        let clients: Vec<KeepAliveClient> = (0..count)
            .map(|_| start_client(lab, target, requests_each, per_second))
            .collect();
        let deadline = Instant::now() + FIRST_REPLY_TIMEOUT;
        while clients.iter().any(|client| client.replies().is_empty()) {
            assert!(
                Instant::now() < deadline,
                "a long-lived connection got no first reply within {FIRST_REPLY_TIMEOUT:?}"
            );
            sleep(Duration::from_millis(20));
        }
        LongLived {
            clients,
            requests_each,
        }
    }

    /// One connection answered by `web`: new connections land on a backend
    /// by their hash, so connections are opened (and closed) until one is.
    pub fn open_on(lab: &Lab, web: Node, requests: usize, per_second: u32) -> LongLived {
        for _ in 0..OPEN_ON_TRIES {
            let client = start_client(lab, &Target::vip_http(), requests, per_second);
            let deadline = Instant::now() + FIRST_REPLY_TIMEOUT;
            let first = loop {
                if let Some(first) = client.replies().into_iter().next() {
                    break first;
                }
                assert!(
                    Instant::now() < deadline,
                    "a long-lived connection got no first reply within {FIRST_REPLY_TIMEOUT:?}"
                );
                sleep(Duration::from_millis(20));
            };
            if first.body == web.name() {
                return LongLived {
                    clients: vec![client],
                    requests_each: requests,
                };
            }
            client.finish();
        }
        panic!("no long-lived connection landed on {web} in {OPEN_ON_TRIES} tries");
    }

    /// How many replies the connections have had so far.
    pub fn replies_so_far(&self) -> usize {
        self.clients
            .iter()
            .map(|client| client.replies().len())
            .sum()
    }

    /// Waits until every connection has sent all its requests, at most
    /// `timeout` (a connection delayed by a failover sends its last ones
    /// late), then stops what still runs and collects the replies.
    pub fn finish_within(self, timeout: Duration) -> Connections {
        let deadline = Instant::now() + timeout;
        let mut clients = self.clients;
        while clients.iter_mut().any(KeepAliveClient::is_running) && Instant::now() < deadline {
            sleep(Duration::from_millis(100));
        }
        Connections {
            replies: clients.into_iter().map(KeepAliveClient::finish).collect(),
            requests_each: self.requests_each,
        }
    }
}

fn start_client(lab: &Lab, target: &Target, requests: usize, per_second: u32) -> KeepAliveClient {
    KeepAliveClient::start(lab, target, requests, per_second, &log_name("long-lived"))
        .expect("starting a keep-alive client")
}

/// What finished long-lived connections were answered.
#[derive(Clone, Debug)]
pub struct Connections {
    replies: Vec<Vec<KeepAliveReply>>,
    requests_each: usize,
}

impl Connections {
    /// The replies of each connection.
    pub fn replies(&self) -> &[Vec<KeepAliveReply>] {
        &self.replies
    }

    /// How many requests each connection sent.
    pub fn requests_each(&self) -> usize {
        self.requests_each
    }

    /// The connections whose first reply came from `web`, and the others.
    pub fn split_by_first_backend(&self, web: Node) -> (Connections, Connections) {
        let (on, off): (Vec<_>, Vec<_>) = self.replies.iter().cloned().partition(|replies| {
            replies
                .first()
                .is_some_and(|first| first.body == web.name())
        });
        let with = |replies| Connections {
            replies,
            requests_each: self.requests_each,
        };
        (with(on), with(off))
    }

    /// How many connections answered every request with `200 OK`, from one
    /// backend, over one TCP connection throughout.
    pub fn surviving(&self) -> usize {
        self.replies
            .iter()
            .filter(|replies| self.survived(replies))
            .count()
    }

    /// Every connection survived (see [`Connections::surviving`]).
    pub fn assert_all_survived(&self) {
        assert_eq!(
            self.surviving(),
            self.replies.len(),
            "long-lived connections broke:\n{}",
            self.describe_broken()
        );
    }

    /// One line per connection that did not survive.
    pub fn describe_broken(&self) -> String {
        self.replies
            .iter()
            .enumerate()
            .filter(|(_, replies)| !self.survived(replies))
            .map(|(index, replies)| {
                let failed = replies.iter().filter(|reply| reply.status != 200).count();
                let ports: BTreeSet<u16> = replies.iter().map(|reply| reply.local_port).collect();
                let backends: BTreeSet<&str> =
                    replies.iter().map(|reply| reply.body.as_str()).collect();
                format!(
                    "connection {index}: {} of {} replies, {failed} failed, ports {ports:?}, bodies {backends:?}",
                    replies.len(),
                    self.requests_each
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn survived(&self, replies: &[KeepAliveReply]) -> bool {
        replies.len() == self.requests_each
            && replies.iter().all(|reply| reply.status == 200)
            && replies
                .iter()
                .enumerate()
                .all(|(index, reply)| reply.new_connection == (index == 0))
            && replies
                .iter()
                .all(|reply| reply.local_port == replies[0].local_port)
            && replies.iter().all(|reply| reply.body == replies[0].body)
    }
}

/// The background traffic of a failover test: [`Traffic::STREAMS`] request
/// streams and [`Traffic::LONG_LIVED`] long-lived connections.
#[derive(Debug)]
pub struct Traffic {
    streams: Streams,
    long_lived: LongLived,
}

impl Traffic {
    /// Parallel request streams (finer gap resolution than one).
    pub const STREAMS: usize = 3;
    /// Long-lived keep-alive connections.
    pub const LONG_LIVED: usize = 10;
    /// Requests per second on each long-lived connection.
    pub const LONG_LIVED_RATE: u32 = 5;
    /// How long past its end a connection delayed by a failover may run.
    const LATE_SLACK: Duration = Duration::from_secs(15);

    /// Starts the streams to the VIP's HTTP service for `duration` and the
    /// long-lived connections for about as long; returns once each
    /// connection has its first reply.
    pub fn start(lab: &Lab, duration: Duration) -> Traffic {
        Self::start_to(lab, &Target::vip_http(), duration)
    }

    /// [`Traffic::start`] to `target` (e.g. [`Target::vip_https`]).
    pub fn start_to(lab: &Lab, target: &Target, duration: Duration) -> Traffic {
        let streams = Streams::start_to(lab, target, Self::STREAMS, duration);
        let requests_each = duration.as_secs() as usize * Self::LONG_LIVED_RATE as usize;
        let long_lived = LongLived::open_to(
            lab,
            target,
            Self::LONG_LIVED,
            requests_each,
            Self::LONG_LIVED_RATE,
        );
        Traffic {
            streams,
            long_lived,
        }
    }

    /// Waits for everything to end by itself and collects what it saw.
    pub fn finish(self) -> Outcome {
        let streams = self.streams.finish();
        let connections = self.long_lived.finish_within(Self::LATE_SLACK);
        Outcome {
            streams,
            connections,
        }
    }
}

/// Something a test did, when, and how long the VIP took to follow.
#[derive(Clone, Copy, Debug)]
pub struct Event {
    pub what: &'static str,
    pub at: SystemTime,
    pub vip_moved: Duration,
}

/// What the traffic of a failover test saw.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub streams: StreamLog,
    pub connections: Connections,
}

impl Outcome {
    /// Prints the figures of `scenario` and its `events`.
    pub fn report(&self, scenario: &str, events: &[Event]) {
        println!("{scenario}:");
        for event in events {
            let failures = self.streams.failures_around(event.at, EVENT_WINDOW);
            let gap = match self.streams.gap_around(event.at, EVENT_WINDOW) {
                Ok(gap) => format!("{} ms", gap.as_millis()),
                Err(error) => format!("not measured ({error})"),
            };
            println!(
                "  {}: VIP moved in {} ms; stream gap {gap}, {} failed requests (curl exit codes {:?})",
                event.what,
                event.vip_moved.as_millis(),
                failures.len(),
                exit_codes(&failures)
            );
        }
        let failures = self.streams.failures();
        println!(
            "  request streams: {} requests, {} failed (curl exit codes {:?}), {} refused/reset",
            self.streams.replies().len(),
            failures.len(),
            exit_codes(&failures),
            self.streams.resets(),
        );
        println!(
            "  long-lived connections: {} of {} survived ({} requests each)",
            self.connections.surviving(),
            self.connections.replies().len(),
            self.connections.requests_each()
        );
        let broken = self.connections.describe_broken();
        if !broken.is_empty() {
            println!("    {}", broken.replace('\n', "\n    "));
        }
    }

    /// No request was refused or reset.
    pub fn assert_no_resets(&self) {
        assert_eq!(
            self.streams.resets(),
            0,
            "requests were refused or reset: {}",
            describe(
                &self.streams.failures(),
                self.streams
                    .replies()
                    .first()
                    .map_or(SystemTime::UNIX_EPOCH, |reply| reply.at)
            )
        );
    }

    /// Around each event the streams stalled for less than `bound` (a gap
    /// that cannot be measured fails), and the last requests succeeded.
    pub fn assert_gaps_bounded(&self, events: &[Event], bound: Duration) {
        for event in events {
            let gap = self
                .streams
                .gap_around(event.at, EVENT_WINDOW)
                .unwrap_or_else(|error| panic!("{}: {error}", event.what));
            assert!(
                gap < bound,
                "{}: the request streams stalled for {gap:?}",
                event.what
            );
        }
        let tail: Vec<&StreamReply> = self
            .streams
            .replies()
            .iter()
            .rev()
            .take(Traffic::STREAMS * 5)
            .collect();
        assert!(
            tail.iter().all(|reply| reply.is_ok()),
            "the last requests failed: {tail:?}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_new_to_an_event_until_its_handshake_completed() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        // Started `ms_before` the event.
        let request = |ms_before: u64, connect_ms: u64, took_ms: u64| StreamReply {
            at: at - Duration::from_millis(ms_before),
            body: String::new(),
            status: 0,
            curl_exit: 7,
            took: Duration::from_millis(took_ms),
            connect: Duration::from_millis(connect_ms),
            source: None,
        };
        let started_after = StreamReply {
            at: at + Duration::from_millis(5),
            ..request(0, 1, 2)
        };
        let log = StreamLog {
            replies: vec![
                request(50, 1, 2),  // ended before
                request(10, 2, 20), // connected before, still running
                request(3, 0, 5),   // refused: its SYN met the event
                request(3, 5, 8),   // connected after the event
                started_after,
            ],
        };
        let new: Vec<Duration> = log
            .not_connected_before(at)
            .iter()
            .map(|reply| reply.connect)
            .collect();
        assert_eq!(
            new,
            [0, 5, 1].map(Duration::from_millis),
            "the last three, not the first two"
        );
        assert_eq!(log.not_ended_before(at).len(), 4);
    }

    fn reply(body: &str, status: u16, local_port: u16, new_connection: bool) -> KeepAliveReply {
        KeepAliveReply {
            body: body.into(),
            status,
            local_port,
            new_connection,
        }
    }

    #[test]
    fn a_connection_survives_only_whole_on_one_port_and_one_backend() {
        let whole = vec![
            reply("web1", 200, 4000, true),
            reply("web1", 200, 4000, false),
        ];
        let failed = vec![reply("web1", 200, 4001, true), reply("", 0, 4001, false)];
        let reconnected = vec![
            reply("web2", 200, 4002, true),
            reply("web2", 200, 4003, true),
        ];
        let moved = vec![
            reply("web1", 200, 4004, true),
            reply("web3", 200, 4004, false),
        ];
        let short = vec![reply("web1", 200, 4005, true)];
        let connections = Connections {
            replies: vec![whole, failed, reconnected, moved, short],
            requests_each: 2,
        };
        assert_eq!(connections.surviving(), 1);
        assert_eq!(connections.describe_broken().lines().count(), 4);
    }
}
