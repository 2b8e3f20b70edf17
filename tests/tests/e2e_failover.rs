//! The active-passive pair end to end through the lab: `lb` on lb1
//! (priority 150) and lb2 (priority 100) with the same service, VRRP adverts
//! every 100 ms, and no static VIP. While three steady request streams run
//! from the client (a new connection per request, 1 s limit, each logged
//! with its start time and curl's exit code) and ten long-lived keep-alive
//! connections, opened through lb1, each send a request every 200 ms:
//!
//! - (a) lb1's link goes down: lb2 becomes master; lb1's link comes back: it
//!   preempts again;
//! - (a2) lb1's `lb` is SIGKILLed: its pinned data path keeps forwarding
//!   and its kernel never answers for the VIP (no RST); lb2 takes over; `lb`
//!   restarted on lb1 takes the pinned data path and flow table over and
//!   preempts back;
//! - (b) lb1's `lb` gets SIGTERM: its priority-0 advert hands over at once;
//!   restarted, it preempts back;
//! - (c) in each of these, every long-lived connection survives, answered by
//!   the same backend over the same connection throughout;
//! - (d) with preemption off, a returning lb1 stays backup;
//! - (e) malformed adverts (TTL 64, bad checksum, wrong VRID, truncated,
//!   version 2) claiming priority 254 are rejected by both running nodes,
//!   each once, and change nothing;
//! - (f) lb1's XDP link is detached: tracking lowers its priority and lb2
//!   takes over.
//!
//! Each test prints the time the VIP took to move and the gap in the
//! request streams (the longest time between two successful request
//! starts); timing bounds are generous and only catch hangs.
//!
//! Needs root (namespaces, XDP) and the built `lb` (`cargo xtask test` builds
//! it and sets `LB_BINARY`); without them the tests fail, never skip. Each
//! test runs its own lab (prefix `lbf-<x>-`), one at a time, since they
//! measure times on a two-core machine.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::thread::{self, sleep};
use std::time::{Duration, Instant, SystemTime};

use lb::api::model::StatusReport;
use lb::domain::BackendState;
use lb::vrrp::packet::{IP_PROTOCOL, MULTICAST_GROUP};
use lb::vrrp::Advert;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use xtask::bootstrap;
use xtask::lab::{
    self, KeepAliveClient, KeepAliveReply, Lab, LabOptions, Node, NsProcess, PairOptions,
    RequestStream, Scheduler, StreamReply,
};
use xtask::paths;

/// How long the pair gets to start, see every backend up and elect lb1.
const READY_TIMEOUT: Duration = Duration::from_secs(40);
/// Generous bound on any failover: only catches hangs.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(10);
/// Generous bound on a returning lb1 becoming master (its backends are
/// checked before it may preempt).
const PREEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// Generous bound on the gap in the request streams around one failover.
const GAP_BOUND: Duration = Duration::from_secs(5);
/// How long after an event its gap and failures are looked for.
const EVENT_WINDOW: Duration = Duration::from_secs(3);
/// Parallel request streams (finer gap resolution than one).
const STREAMS: usize = 3;
/// Long-lived keep-alive connections.
const LONG_LIVED: usize = 10;
/// Requests per second on each long-lived connection (one per 200 ms).
const LONG_LIVED_RATE: u32 = 5;
/// curl exit codes that mean the connection was refused or reset (an RST):
/// 7 failed to connect, 52 empty reply, 56 receive failure.
const RESET_EXIT_CODES: [u32; 3] = [7, 52, 56];
/// `lb`'s log filter in these tests: VRRP's rejections are debug lines.
const LOG_FILTER: &str = "info,lb::vrrp::driver=debug";

/// One test at a time: they measure failover times.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    // A failed test poisons the lock; the next ones still run.
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---- the pair -----------------------------------------------------------

/// The lab with `lb` running on lb1 (master) and lb2 (backup), both with
/// every backend up. Dropping it stops both `lb`s, then removes the lab.
struct Pair {
    // Declared first: dropped (stopped) before the lab is torn down.
    lbs: [Option<NsProcess>; 2],
    lab: Lab,
    configs: [PathBuf; 2],
    binary: PathBuf,
    prefix: String,
}

impl Pair {
    fn up(prefix: &str, options: PairOptions) -> Pair {
        assert!(
            bootstrap::is_root(),
            "this test needs root (network namespaces, XDP): run `cargo xtask test` as root"
        );
        // The leftovers of a crashed earlier run of this very test, if any.
        lab::teardown(prefix).expect("removing a stale lab");
        let lab = Lab::up(&LabOptions {
            static_vip_on_lb1: false,
            ..LabOptions::new(prefix)
        })
        .expect("bringing the lab up");
        let configs = Node::LBS.map(|node| {
            lab.write_pair_config(node, Scheduler::Maglev, &options)
                .expect("writing the pair config")
        });
        let mut pair = Pair {
            lbs: [None, None],
            lab,
            configs,
            binary: paths::lb_binary(),
            prefix: prefix.to_owned(),
        };
        // lb1 first, so it is master whether preemption is on or not.
        pair.start(Node::Lb1);
        pair.wait_for_master(Node::Lb1, READY_TIMEOUT);
        pair.wait_until_healthy(Node::Lb1);
        pair.start(Node::Lb2);
        pair.wait_until_healthy(Node::Lb2);
        pair.wait_for_master(Node::Lb1, READY_TIMEOUT);
        pair
    }

    fn index(node: Node) -> usize {
        match node {
            Node::Lb1 => 0,
            Node::Lb2 => 1,
            other => panic!("{other} is not a load balancer"),
        }
    }

    fn start(&mut self, node: Node) {
        let index = Self::index(node);
        assert!(self.lbs[index].is_none(), "lb on {node} already runs");
        let lb = self
            .lab
            .start_lb_logging(node, &self.binary, &self.configs[index], LOG_FILTER)
            .expect("starting lb");
        self.lbs[index] = Some(lb);
    }

    /// SIGTERM, and the exit status (0 expected).
    fn terminate(&mut self, node: Node) -> std::process::ExitStatus {
        let lb = self.lbs[Self::index(node)].take().expect("lb runs");
        lb.stop().expect("stopping lb")
    }

    /// SIGTERM to `node`'s `lb` while watching the VIP: returns its exit
    /// status and how long `new_master` took to hold the VIP alone.
    fn terminate_until_master(
        &mut self,
        node: Node,
        new_master: Node,
    ) -> (std::process::ExitStatus, Duration) {
        let lb = self.lbs[Self::index(node)].take().expect("lb runs");
        let lab = &self.lab;
        let started = Instant::now();
        let (status, moved) = thread::scope(|scope| {
            let stopper = scope.spawn(|| lb.stop());
            let moved = loop {
                if lab.vip_holders().expect("reading addresses") == [new_master] {
                    break Some(started.elapsed());
                }
                if started.elapsed() > FAILOVER_TIMEOUT {
                    break None;
                }
                sleep(Duration::from_millis(10));
            };
            (stopper.join().expect("stopping lb"), moved)
        });
        let status = status.expect("stopping lb");
        let moved = moved.unwrap_or_else(|| {
            panic!(
                "{new_master} did not hold the VIP alone within {FAILOVER_TIMEOUT:?}\n{}",
                self.logs()
            )
        });
        (status, moved)
    }

    /// SIGKILL: nothing is cleaned up.
    fn kill(&mut self, node: Node) {
        let lb = self.lbs[Self::index(node)].take().expect("lb runs");
        let pid = lb.pid().expect("a running lb has a pid");
        let status = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -KILL {pid}");
        // Reaps it: it is gone already.
        let _ = lb.stop();
    }

    /// Waits until `node` alone holds the VIP; returns how long it took.
    fn wait_for_master(&mut self, node: Node, timeout: Duration) -> Duration {
        let mut running: Vec<&mut NsProcess> = self.lbs.iter_mut().flatten().collect();
        let result = self.lab.wait_for_master(node, &mut running, timeout);
        result.unwrap_or_else(|error| panic!("{error}\n{}", self.logs()))
    }

    /// Waits until `node` holds the VIP (whoever else does); returns how
    /// long it took.
    fn wait_until_holds_vip(&self, node: Node, timeout: Duration) -> Duration {
        let started = Instant::now();
        while !self.lab.holds_vip(node).expect("reading addresses") {
            assert!(
                started.elapsed() < timeout,
                "{node} did not take the VIP within {timeout:?}\n{}",
                self.logs()
            );
            sleep(Duration::from_millis(20));
        }
        started.elapsed()
    }

    /// Waits until `lb status` on `node` shows every backend up and its
    /// tracking has raised the priority to the configured one.
    fn wait_until_healthy(&mut self, node: Node) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let up = self.status(node).is_some_and(|report| {
                report
                    .services
                    .iter()
                    .flat_map(|service| &service.backends)
                    .all(|backend| backend.state == BackendState::Up)
            });
            let raised = self
                .log(node)
                .lines()
                .any(|line| line.contains("vrrp priority raised") && line.contains("reasons=none"));
            if up && raised {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{node} not healthy within {READY_TIMEOUT:?}\n{}",
                self.logs()
            );
            sleep(Duration::from_millis(200));
        }
    }

    /// `lb status --json` on `node`, if it answers.
    fn status(&self, node: Node) -> Option<StatusReport> {
        let json = self
            .lab
            .run(
                node,
                "timeout",
                &["5", &self.binary.to_string_lossy(), "status", "--json"],
            )
            .ok()?;
        serde_json::from_str(&json).ok()
    }

    /// Every log of `lb` on `node` (one per start), ANSI colours removed.
    fn log(&self, node: Node) -> String {
        let dir = self.lab.run_dir().join(node.name());
        let mut logs: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|entry| entry.path())
                    .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
                    .collect()
            })
            .unwrap_or_default();
        logs.sort_by_key(|path| path.metadata().and_then(|m| m.modified()).ok());
        logs.iter()
            .map(|path| without_ansi(&std::fs::read_to_string(path).unwrap_or_default()))
            .collect()
    }

    /// The end of both nodes' logs, for failure messages.
    fn logs(&self) -> String {
        Node::LBS
            .iter()
            .map(|&node| {
                let log = self.log(node);
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(25)..].join("\n");
                format!("--- lb on {node}:\n{tail}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Stops both `lb`s (SIGTERM: each must exit cleanly) and removes the lab.
    fn down(mut self) {
        for node in [Node::Lb2, Node::Lb1] {
            if self.lbs[Self::index(node)].is_some() {
                let status = self.terminate(node);
                assert!(status.success(), "lb on {node} exited with {status}");
            }
        }
        let Pair { lab, prefix, .. } = self;
        lab.down().expect("tearing the lab down");
        assert!(
            !lab::exists(&prefix).expect("listing namespaces"),
            "namespaces left behind"
        );
    }
}

/// `text` without ANSI escape sequences (`ESC [ ... letter`).
fn without_ansi(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

// ---- traffic ------------------------------------------------------------

/// The request streams and the long-lived connections.
struct Traffic {
    streams: Vec<RequestStream>,
    clients: Vec<KeepAliveClient>,
    requests_per_client: usize,
    ends_at: Instant,
}

impl Traffic {
    /// Starts the streams for `duration` and the long-lived connections for
    /// about as long, and waits until each connection has its first reply
    /// (so it was opened through the current master).
    fn start(lab: &Lab, duration: Duration) -> Traffic {
        let url = lab::vip_url();
        let streams = (0..STREAMS)
            .map(|i| {
                // Staggered, so their requests interleave.
                sleep(Duration::from_millis(20));
                RequestStream::start(lab, &url, duration, &format!("stream-{i}.log"))
                    .expect("starting a request stream")
            })
            .collect();
        let requests_per_client = duration.as_secs() as usize * LONG_LIVED_RATE as usize;
        let clients: Vec<KeepAliveClient> = (0..LONG_LIVED)
            .map(|i| {
                KeepAliveClient::start(
                    lab,
                    &url,
                    requests_per_client,
                    LONG_LIVED_RATE,
                    &format!("keepalive-{i}.log"),
                )
                .expect("starting a keep-alive client")
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(5);
        while clients.iter().any(|client| client.replies().is_empty()) {
            assert!(
                Instant::now() < deadline,
                "a long-lived connection got no first reply"
            );
            sleep(Duration::from_millis(20));
        }
        Traffic {
            streams,
            clients,
            requests_per_client,
            ends_at: Instant::now() + duration,
        }
    }

    /// Waits for everything to end by itself and collects the replies.
    fn finish(self) -> Outcome {
        let mut stream: Vec<StreamReply> = self
            .streams
            .into_iter()
            .flat_map(RequestStream::finish)
            .collect();
        stream.sort_by_key(|reply| reply.at);
        // A connection delayed by a failover sends its last requests late.
        let deadline = self.ends_at + Duration::from_secs(15);
        let mut clients = self.clients;
        while clients.iter_mut().any(KeepAliveClient::is_running) && Instant::now() < deadline {
            sleep(Duration::from_millis(100));
        }
        Outcome {
            stream,
            connections: clients.into_iter().map(KeepAliveClient::finish).collect(),
            requests_per_connection: self.requests_per_client,
        }
    }
}

/// What the traffic saw.
struct Outcome {
    stream: Vec<StreamReply>,
    connections: Vec<Vec<KeepAliveReply>>,
    requests_per_connection: usize,
}

impl Outcome {
    fn failures(&self) -> Vec<&StreamReply> {
        self.stream.iter().filter(|reply| !reply.is_ok()).collect()
    }

    /// Requests refused or reset (an RST from somewhere).
    fn resets(&self) -> usize {
        self.stream
            .iter()
            .filter(|reply| RESET_EXIT_CODES.contains(&reply.curl_exit))
            .count()
    }

    /// The gap `event` made: the longest time between the starts of two
    /// successive successful requests, the later one after the event and
    /// the earlier one at most [`EVENT_WINDOW`] after it.
    fn gap(&self, event: &Event) -> Duration {
        let ok: Vec<SystemTime> = self
            .stream
            .iter()
            .filter(|reply| reply.is_ok())
            .map(|reply| reply.at)
            .collect();
        ok.windows(2)
            .filter(|pair| pair[1] >= event.at && pair[0] <= event.at + EVENT_WINDOW)
            .map(|pair| pair[1].duration_since(pair[0]).unwrap_or_default())
            .max()
            .unwrap_or_default()
    }

    /// The requests that failed from just before `event` to
    /// [`EVENT_WINDOW`] after it.
    fn failures_around(&self, event: &Event) -> Vec<&StreamReply> {
        let from = event.at - Duration::from_secs(1);
        self.failures()
            .into_iter()
            .filter(|reply| reply.at >= from && reply.at <= event.at + EVENT_WINDOW)
            .collect()
    }

    /// Whether connection `replies` answered every request, all `200` from
    /// one backend over one TCP connection.
    fn survived(&self, replies: &[KeepAliveReply]) -> bool {
        replies.len() == self.requests_per_connection
            && replies.iter().all(|reply| reply.status == 200)
            && replies.iter().skip(1).all(|reply| !reply.new_connection)
            && replies
                .iter()
                .all(|reply| reply.local_port == replies[0].local_port)
            && replies.iter().all(|reply| reply.body == replies[0].body)
    }

    fn surviving_connections(&self) -> usize {
        self.connections
            .iter()
            .filter(|replies| self.survived(replies))
            .count()
    }

    /// Prints the numbers of `scenario` and its `events`.
    fn report(&self, scenario: &str, events: &[Event]) {
        println!("{scenario}:");
        for event in events {
            let failures = self.failures_around(event);
            println!(
                "  {}: VIP moved in {} ms; stream gap {} ms, {} failed requests (curl exit codes {:?})",
                event.what,
                event.vip_moved.as_millis(),
                self.gap(event).as_millis(),
                failures.len(),
                exit_codes(&failures)
            );
        }
        let failures = self.failures();
        println!(
            "  request streams: {} requests, {} failed (curl exit codes {:?}), {} refused/reset",
            self.stream.len(),
            failures.len(),
            exit_codes(&failures),
            self.resets(),
        );
        println!(
            "  long-lived connections: {} of {} survived ({} requests each)",
            self.surviving_connections(),
            self.connections.len(),
            self.requests_per_connection
        );
        for (index, replies) in self.connections.iter().enumerate() {
            if !self.survived(replies) {
                let failed = replies.iter().filter(|reply| reply.status != 200).count();
                let ports: std::collections::BTreeSet<u16> =
                    replies.iter().map(|reply| reply.local_port).collect();
                println!(
                    "    connection {index}: {} replies, {failed} failed, ports {ports:?}",
                    replies.len()
                );
            }
        }
    }

    /// (c): every long-lived connection survived.
    fn assert_every_connection_survived(&self) {
        assert_eq!(
            self.surviving_connections(),
            LONG_LIVED,
            "long-lived connections broke"
        );
    }

    fn assert_no_resets(&self) {
        assert_eq!(self.resets(), 0, "requests were refused or reset");
    }

    fn assert_gaps_bounded(&self, events: &[Event]) {
        for event in events {
            let gap = self.gap(event);
            assert!(
                gap < GAP_BOUND,
                "{}: the request streams stalled for {gap:?}",
                event.what
            );
        }
        // Traffic flows again at the end.
        let tail: Vec<&StreamReply> = self.stream.iter().rev().take(STREAMS * 5).collect();
        assert!(
            tail.iter().all(|reply| reply.is_ok()),
            "the last requests failed: {tail:?}"
        );
    }
}

/// Something the test did to the pair, and how long the VIP took to follow.
struct Event {
    what: &'static str,
    at: SystemTime,
    vip_moved: Duration,
}

/// The distinct curl exit codes of `failures`.
fn exit_codes(failures: &[&StreamReply]) -> Vec<u32> {
    let mut codes: Vec<u32> = failures.iter().map(|reply| reply.curl_exit).collect();
    codes.sort_unstable();
    codes.dedup();
    codes
}

// ---- the tests ------------------------------------------------------------

/// (a), (c), (d): lb1's link fails and returns.
#[test]
fn link_down_fails_over_to_lb2_and_lb1_preempts_back() {
    let _serial = serial();
    let mut pair = Pair::up("lbf-a-", PairOptions::default());
    let traffic = Traffic::start(&pair.lab, Duration::from_secs(14));
    sleep(Duration::from_secs(3));

    let down_at = SystemTime::now();
    pair.lab.set_link(Node::Lb1, false).expect("link down");
    let failover = pair.wait_for_master(Node::Lb2, FAILOVER_TIMEOUT);
    sleep(Duration::from_secs(4));
    let up_at = SystemTime::now();
    pair.lab.set_link(Node::Lb1, true).expect("link up");
    let preempt = pair.wait_for_master(Node::Lb1, PREEMPT_TIMEOUT);

    let outcome = traffic.finish();
    let events = [
        Event {
            what: "lb1's link down, lb2 takes over",
            at: down_at,
            vip_moved: failover,
        },
        Event {
            what: "lb1's link up, lb1 preempts once its checks pass",
            at: up_at,
            vip_moved: preempt,
        },
    ];
    outcome.report("(a) node failure (100 ms adverts)", &events);
    outcome.assert_every_connection_survived();
    outcome.assert_no_resets();
    outcome.assert_gaps_bounded(&events);
    pair.down();
}

/// (a2), (c), (d): lb1's `lb` crashes, its data path keeps forwarding, and
/// a restarted `lb` takes it over.
#[test]
fn sigkill_leaves_a_forwarding_data_path_and_a_restart_takes_it_over() {
    let _serial = serial();
    let mut pair = Pair::up("lbf-k-", PairOptions::default());
    let program_before = pair.lab.xdp_program_ids(Node::Lb1).expect("ip link");
    assert_eq!(program_before.len(), 1, "lb_xdp on lb1");
    let traffic = Traffic::start(&pair.lab, Duration::from_secs(16));
    sleep(Duration::from_secs(3));

    let kill_at = SystemTime::now();
    pair.kill(Node::Lb1);
    let failover = pair.wait_until_holds_vip(Node::Lb2, FAILOVER_TIMEOUT);
    // The crashed node's data path stays: same program, still pinned.
    assert_eq!(
        pair.lab.xdp_program_ids(Node::Lb1).expect("ip link"),
        program_before,
        "the program outlives lb"
    );
    let pins = pair.lab.lb_pin_dir(Node::Lb1);
    for pin in ["link_eth0", "flows", "backends"] {
        assert!(
            pins.join(pin).exists(),
            "{pin} pinned in {}",
            pins.display()
        );
    }
    sleep(Duration::from_secs(3));

    let restart_at = SystemTime::now();
    pair.start(Node::Lb1);
    let preempt = pair.wait_for_master(Node::Lb1, PREEMPT_TIMEOUT);
    let program_after = pair.lab.xdp_program_ids(Node::Lb1).expect("ip link");
    assert_eq!(program_after.len(), 1, "one program on lb1's eth0");
    assert_ne!(
        program_after, program_before,
        "the new program replaced the old"
    );
    let log = pair.log(Node::Lb1);
    for line in [
        "took over the pinned link",
        "keeping the flow table of the previous run",
        "backends the previous run had up start up",
    ] {
        assert!(log.contains(line), "the restarted lb logs {line:?}");
    }

    let outcome = traffic.finish();
    let events = [
        Event {
            what: "lb1's lb SIGKILLed, lb2 takes the VIP",
            at: kill_at,
            vip_moved: failover,
        },
        Event {
            what: "lb1's lb restarted, takes the data path over and preempts",
            at: restart_at,
            vip_moved: preempt,
        },
    ];
    outcome.report("(a2) process crash (100 ms adverts)", &events);
    outcome.assert_every_connection_survived();
    outcome.assert_no_resets();
    outcome.assert_gaps_bounded(&events);
    pair.down();
}

/// (b), (c), (d): lb1's `lb` stops cleanly, and starts again.
#[test]
fn sigterm_hands_over_with_priority_zero_and_lb1_returns() {
    let _serial = serial();
    let mut pair = Pair::up("lbf-t-", PairOptions::default());
    let traffic = Traffic::start(&pair.lab, Duration::from_secs(20));
    sleep(Duration::from_secs(3));

    let stop_at = SystemTime::now();
    let (status, failover) = pair.terminate_until_master(Node::Lb1, Node::Lb2);
    assert!(status.success(), "lb on lb1 exited with {status}");
    // A clean stop removes the data path and its pins.
    assert!(
        pair.lab
            .xdp_program_ids(Node::Lb1)
            .expect("ip link")
            .is_empty(),
        "lb_xdp detached from lb1"
    );
    assert!(
        !pair.lab.lb_pin_dir(Node::Lb1).exists(),
        "lb1's pins removed"
    );
    sleep(Duration::from_secs(2));

    let restart_at = SystemTime::now();
    pair.start(Node::Lb1);
    let preempt = pair.wait_for_master(Node::Lb1, PREEMPT_TIMEOUT);

    let outcome = traffic.finish();
    let events = [
        Event {
            what: "lb1's lb SIGTERMed, priority 0, lb2 takes over",
            at: stop_at,
            vip_moved: failover,
        },
        Event {
            what: "lb1's lb restarted, preempts once its checks pass",
            at: restart_at,
            vip_moved: preempt,
        },
    ];
    outcome.report("(b) graceful shutdown (100 ms adverts)", &events);
    outcome.assert_every_connection_survived();
    outcome.assert_no_resets();
    outcome.assert_gaps_bounded(&events);
    pair.down();
}

/// (d) without preemption, (c): lb1 returns as backup and stays backup.
#[test]
fn without_preemption_a_returning_lb1_stays_backup() {
    let _serial = serial();
    let options = PairOptions {
        preempt: false,
        ..PairOptions::default()
    };
    let mut pair = Pair::up("lbf-n-", options);
    let traffic = Traffic::start(&pair.lab, Duration::from_secs(16));
    sleep(Duration::from_secs(2));

    let stop_at = SystemTime::now();
    let (status, failover) = pair.terminate_until_master(Node::Lb1, Node::Lb2);
    assert!(status.success(), "lb on lb1 exited with {status}");
    pair.start(Node::Lb1);
    pair.wait_until_healthy(Node::Lb1);
    // Many Master_Down_Intervals at full priority: it would have preempted.
    sleep(Duration::from_secs(3));
    assert_eq!(
        pair.lab.vip_holders().expect("reading addresses"),
        [Node::Lb2],
        "lb2 stays master\n{}",
        pair.logs()
    );

    let outcome = traffic.finish();
    let events = [Event {
        what: "lb1's lb SIGTERMed, lb2 takes over (lb1 then returns)",
        at: stop_at,
        vip_moved: failover,
    }];
    outcome.report("(d) preemption off", &events);
    outcome.assert_every_connection_survived();
    outcome.assert_no_resets();
    outcome.assert_gaps_bounded(&events);
    pair.down();
}

/// (e): malformed adverts claiming priority 254 (each would make lb1 step
/// down if believed) are rejected by both nodes, once each, and nothing
/// changes. The VRRP-level test `vrrp_netns.rs` checks the per-reason
/// counters; here the running nodes' debug log lines are counted.
#[test]
fn malformed_adverts_are_rejected_by_the_running_pair() {
    let _serial = serial();
    let pair = Pair::up("lbf-e-", PairOptions::default());
    let before: Vec<String> = Node::LBS.iter().map(|&node| pair.log(node)).collect();

    let client = Node::Client.address().expect("the client has an address");
    let adverts = malformed_adverts(client);
    inject_from_client(
        &pair.lab,
        adverts.iter().map(|(_, bytes)| bytes.clone()).collect(),
    );
    // Skew_Time is under 100 ms: a believed advert would have acted.
    sleep(Duration::from_millis(1500));

    assert_eq!(
        pair.lab.vip_holders().expect("reading addresses"),
        [Node::Lb1],
        "lb1 stays the only master"
    );
    for (index, node) in Node::LBS.into_iter().enumerate() {
        let log = pair.log(node);
        let new = &log[before[index].len()..];
        let rejected: Vec<&str> = new
            .lines()
            .filter(|line| line.contains("vrrp advert rejected"))
            .collect();
        println!("(e) {node} rejected:");
        for line in &rejected {
            println!(
                "  {}",
                line.split("vrrp advert rejected")
                    .nth(1)
                    .unwrap_or(line)
                    .trim()
            );
        }
        assert_eq!(
            rejected.len(),
            adverts.len(),
            "{node}: one rejection each: {rejected:#?}"
        );
        for (what, fragment) in [
            ("ttl 64", "TTL is 64"),
            ("bad checksum", "checksum"),
            ("wrong vrid", "VRID 52"),
            ("truncated", "shorter than"),
            ("version 2", "version 2"),
        ] {
            assert!(
                rejected.iter().any(|line| line.contains(fragment)),
                "{node}: no rejection for {what}"
            );
        }
        assert!(
            !new.contains("vrrp state changed"),
            "{node} changed state:\n{new}"
        );
    }
    pair.down();
}

/// (f): lb1's XDP link is detached under it; tracking hands over to lb2.
#[test]
fn a_detached_xdp_program_hands_over_through_tracking() {
    let _serial = serial();
    let mut pair = Pair::up("lbf-x-", PairOptions::default());
    let traffic = Traffic::start(&pair.lab, Duration::from_secs(8));
    sleep(Duration::from_secs(2));

    let detach_at = SystemTime::now();
    detach_link(&pair.lab.lb_pin_dir(Node::Lb1).join("link_eth0"));
    let failover = pair.wait_for_master(Node::Lb2, FAILOVER_TIMEOUT);
    assert!(
        pair.lab
            .xdp_program_ids(Node::Lb1)
            .expect("ip link")
            .is_empty(),
        "lb_xdp detached from lb1"
    );
    let log = pair.log(Node::Lb1);
    assert!(
        log.lines()
            .any(|line| line.contains("vrrp priority lowered")
                && line.contains("XDP program not attached")),
        "lb1's tracking noticed\n{}",
        pair.logs()
    );

    let outcome = traffic.finish();
    let events = [Event {
        what: "lb1's XDP link detached, tracking hands over to lb2",
        at: detach_at,
        vip_moved: failover,
    }];
    outcome.report("(f) XDP program detached (100 ms adverts)", &events);
    // Until lb2 takes over, lb1's kernel holds the VIP without the program
    // and refuses connections: reported above, not asserted.
    outcome.assert_gaps_bounded(&events);
    pair.down();
}

/// The pair's configurations are ones `lb` accepts, with the pair's VRRP.
#[test]
fn pair_configs_are_accepted_by_lb() {
    for node in Node::LBS {
        for preempt in [true, false] {
            let options = PairOptions {
                preempt,
                ..PairOptions::default()
            };
            let text = lab::pair_config_toml(node, Scheduler::Maglev, &options);
            let config = lb::config::parse(&text, "pair.toml")
                .unwrap_or_else(|error| panic!("{node}: {error}"));
            let vrrp = config.vrrp.expect("a [vrrp] section").instance;
            assert_eq!(vrrp.priority, lab::priority(node));
            assert_eq!(vrrp.vrid, lab::VRID);
            assert_eq!(vrrp.advert_interval.duration(), Duration::from_millis(100));
            assert_eq!(vrrp.preempt, preempt);
            assert_eq!(vrrp.virtual_addresses, [lab::VIP]);
        }
    }
}

// ---- helpers ----------------------------------------------------------------

/// `bpftool link detach pinned PIN`: the program leaves the interface while
/// `lb` keeps running (what a careless operator or a driver reset does).
fn detach_link(pin: &Path) {
    let status = Command::new("bpftool")
        .args(["link", "detach", "pinned"])
        .arg(pin)
        .status()
        .expect("running bpftool");
    assert!(
        status.success(),
        "bpftool link detach pinned {}",
        pin.display()
    );
}

/// An IPv4 datagram (header filled by hand, for IP_HDRINCL) carrying `payload`.
fn datagram(source: Ipv4Addr, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0x45, 0xc0, 0, 0, 0, 0, 0, 0, ttl, IP_PROTOCOL, 0, 0];
    bytes.extend_from_slice(&source.octets());
    bytes.extend_from_slice(&MULTICAST_GROUP.octets());
    bytes.extend_from_slice(payload);
    let total = u16::try_from(bytes.len()).expect("short").to_be_bytes();
    bytes[2..4].copy_from_slice(&total);
    bytes
}

fn advert(source: Ipv4Addr, vrid: u8, addresses: Vec<Ipv4Addr>) -> Vec<u8> {
    let advert = Advert {
        vrid,
        priority: 254,
        max_advert_interval: 10,
        addresses,
    };
    let mut buffer = vec![0u8; advert.buffer_len()];
    advert
        .emit(&mut buffer, source, MULTICAST_GROUP)
        .expect("emit");
    buffer
}

/// The five malformed adverts of the issue, from `source`, priority 254.
fn malformed_adverts(source: Ipv4Addr) -> Vec<(&'static str, Vec<u8>)> {
    let valid = advert(source, lab::VRID, vec![lab::VIP]);
    let mut bad_checksum = valid.clone();
    bad_checksum[7] ^= 0x5a;
    let wrong_vrid = advert(source, lab::VRID + 1, vec![lab::VIP]);
    // The count says two addresses, only one is there.
    let mut truncated = advert(source, lab::VRID, vec![lab::VIP, lab::VIP]);
    truncated.truncate(truncated.len() - 4);
    // VRRPv2: version 2, auth type 0, interval in seconds, 8 bytes of auth data.
    let mut version2 = vec![0x21, lab::VRID, 254, 1, 0, 1, 0, 0];
    version2.extend_from_slice(&lab::VIP.octets());
    version2.extend_from_slice(&[0; 8]);
    vec![
        ("ttl 64", datagram(source, 64, &valid)),
        ("bad checksum", datagram(source, 255, &bad_checksum)),
        ("wrong vrid", datagram(source, 255, &wrong_vrid)),
        ("truncated", datagram(source, 255, &truncated)),
        ("version 2", datagram(source, 255, &version2)),
    ]
}

/// Sends `datagrams` out of the client's `eth0`, from inside its namespace.
fn inject_from_client(lab: &Lab, datagrams: Vec<Vec<u8>>) {
    let namespace = PathBuf::from("/run/netns").join(lab.namespace(Node::Client));
    thread::spawn(move || {
        let file = File::open(&namespace).expect("open the client's namespace");
        // SAFETY: setns only reads the descriptor, which `file` keeps open
        // for the call, and moves only this thread into the namespace.
        let result = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(result, 0, "setns: {}", std::io::Error::last_os_error());
        let socket = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(i32::from(IP_PROTOCOL))),
        )
        .expect("raw socket");
        socket.set_header_included_v4(true).expect("IP_HDRINCL");
        socket
            .bind_device(Some(lab::HOST_INTERFACE.as_bytes()))
            .expect("bind to eth0");
        for datagram in datagrams {
            socket
                .send_to(
                    &datagram,
                    &SockAddr::from(SocketAddrV4::new(MULTICAST_GROUP, 0)),
                )
                .expect("send");
        }
    })
    .join()
    .expect("injecting adverts");
}
