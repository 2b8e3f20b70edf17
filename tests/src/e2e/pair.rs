//! The lab with `lb` running on its LB nodes: lb1 alone, lb1 and lb2 as
//! a VRRP pair, or both active-active behind the router, announcing over
//! BGP. A [`Pair`] starts them, stops, kills and restarts them, and
//! reads each node's state from its API's `GET /status` (curl inside the
//! node's namespace, where the API listens on loopback), which is what tests
//! wait for and assert on.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::thread::{self, sleep};
use std::time::{Duration, Instant};

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use thiserror::Error;

use xtask::lab::{
    self, session_name, Bird, Lab, LabError, LabOptions, Node, NsProcess, PairOptions, Router,
    Scheduler,
};
use xtask::paths;

use super::status::{BackendReport, BackendState, Counters, StatusReport, VrrpReport, VrrpState};

/// How long the LBs get to start, see every backend up and (a pair) elect
/// lb1.
const READY_TIMEOUT: Duration = Duration::from_secs(40);

/// How long a node's `/status` gets to agree with the VIP once it moved.
const STATUS_AGREES_TIMEOUT: Duration = Duration::from_secs(3);

/// How often the VIP and `/status` are polled.
const POLL: Duration = Duration::from_millis(20);

/// Seconds one `GET /status` may take.
const STATUS_CALL_TIMEOUT_SECS: &str = "5";

/// How many log lines of each `lb` a failure message shows.
const LOG_LINES: usize = 25;

/// Which LBs run, and how.
#[derive(Clone, Debug)]
pub enum Setup {
    /// `lb` on lb1 alone with this configuration; the lab puts the VIP on
    /// lb1's `eth0`.
    Single(String),
    /// lb1 (priority 150) and lb2 (priority 100) as a VRRP pair, with the
    /// lab's pair configuration (Maglev) and no static VIP.
    Vrrp(PairOptions),
    /// lb1 and lb2 active-active with the lab's `[bgp]` configuration, the
    /// client behind the router, BIRD on the router and on both nodes.
    Bgp,
}

/// How long BGP sessions get to come up (1 s connect delay, 1 s keepalive).
const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(20);

/// The routing of [`Setup::Bgp`]: the router and each node's BIRD.
struct Routing {
    router: Router,
    // Dropped (stopped) with the Pair, after the lbs.
    _speakers: [Bird; 2],
}

/// Reading a node's `/status` failed.
#[derive(Debug, Error)]
pub enum StatusError {
    /// `GET /status` got no answer, or an error.
    #[error("GET /status on {node}: {source}")]
    Unreachable {
        node: Node,
        #[source]
        source: LabError,
    },
    /// The answer is not the JSON the harness reads.
    #[error("GET /status on {node}: {source}: {json}")]
    Json {
        node: Node,
        #[source]
        source: serde_json::Error,
        json: String,
    },
}

/// The lab and its running `lb`s. Dropping it stops them, then removes the
/// lab; [`Pair::down`] does the same and asserts both went cleanly.
pub struct Pair {
    // Declared first: dropped (stopped) before the lab is torn down.
    lbs: [Option<NsProcess>; 2],
    /// Whether the last `lb` on each node was SIGKILLed: it left the VIP on
    /// its interface, which then does not count against another master.
    killed: [bool; 2],
    /// [`Setup::Bgp`]'s router and daemons; stopped after the lbs.
    routing: Option<Routing>,
    lab: Lab,
    configs: [Option<PathBuf>; 2],
    vrrp: bool,
    binary: PathBuf,
    prefix: String,
}

impl Pair {
    /// Builds the lab named `prefix` (removing a crashed earlier run's
    /// leftovers first) and starts `setup`; returns once the VIP serves and
    /// every node shows every backend up (a pair: with tracking at the
    /// configured priority, and lb1 the master).
    pub fn start(prefix: &str, setup: Setup) -> Pair {
        super::require_root();
        lab::teardown(prefix).expect("removing a stale lab");
        let vrrp = matches!(setup, Setup::Vrrp(_));
        let bgp = matches!(setup, Setup::Bgp);
        let lab = Lab::up(&LabOptions {
            static_vip_on_lb1: matches!(setup, Setup::Single(_)),
            ..LabOptions::new(prefix)
        })
        .expect("bringing the lab up");
        let routing = bgp.then(|| Routing {
            router: Router::up(&lab).expect("inserting the router"),
            _speakers: Node::LBS.map(|node| Bird::start_lb(&lab, node).expect("starting bird")),
        });
        let configs = match &setup {
            Setup::Single(text) => {
                let path = lab.run_dir().join("lb-lb1.toml");
                std::fs::write(&path, text).expect("writing the lb config");
                [Some(path), None]
            }
            Setup::Vrrp(options) => Node::LBS.map(|node| {
                Some(
                    lab.write_pair_config(node, Scheduler::Maglev, options)
                        .expect("writing the pair config"),
                )
            }),
            Setup::Bgp => {
                let path = lab
                    .write_active_active_config()
                    .expect("writing the active-active config");
                [Some(path.clone()), Some(path)]
            }
        };
        let mut pair = Pair {
            lbs: [None, None],
            killed: [false; 2],
            routing,
            lab,
            configs,
            vrrp,
            binary: paths::lb_binary(),
            prefix: prefix.to_owned(),
        };
        pair.start_lb(Node::Lb1);
        if bgp {
            pair.start_lb(Node::Lb2);
            for node in Node::LBS {
                pair.wait_until_ready(node);
            }
            let sessions: Vec<String> = Node::LBS.into_iter().map(session_name).collect();
            let routing = pair.routing.as_mut().expect("a bgp setup");
            routing
                .router
                .bird()
                .wait_established(&sessions, ESTABLISH_TIMEOUT)
                .expect("the router's sessions");
            pair.wait_for_next_hops(&Node::LBS, ESTABLISH_TIMEOUT);
        } else if vrrp {
            // lb1 first, so it is master whether preemption is on or not.
            pair.wait_for_master(Node::Lb1, READY_TIMEOUT);
            pair.wait_until_ready(Node::Lb1);
            pair.start_lb(Node::Lb2);
            pair.wait_until_ready(Node::Lb2);
            pair.wait_for_master(Node::Lb1, READY_TIMEOUT);
            pair.wait_until(
                Node::Lb2,
                "backup of lb1",
                STATUS_AGREES_TIMEOUT,
                |status| {
                    let vrrp = status.vrrp();
                    vrrp.state == VrrpState::Backup && vrrp.master == Node::Lb1.address()
                },
            );
        } else {
            let lb = pair.lbs[0].as_mut().expect("just started");
            pair.lab
                .wait_until_vip_serves(lb, READY_TIMEOUT)
                .expect("lb serving the VIP");
            pair.wait_until_ready(Node::Lb1);
        }
        pair
    }

    /// The lab, for traffic and for breaking things.
    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    /// Starts `lb` on `node` (again) with its configuration.
    pub fn start_lb(&mut self, node: Node) {
        let index = index(node);
        assert!(self.lbs[index].is_none(), "lb on {node} already runs");
        let config = self.configs[index]
            .as_ref()
            .unwrap_or_else(|| panic!("{node} has no lb configuration in this setup"));
        let lb = self
            .lab
            .start_lb(node, &self.binary, config)
            .expect("starting lb");
        self.lbs[index] = Some(lb);
        self.killed[index] = false;
    }

    /// SIGTERM to `node`'s `lb`; returns how it exited.
    pub fn terminate(&mut self, node: Node) -> ExitStatus {
        self.take_lb(node).stop().expect("stopping lb")
    }

    /// SIGTERM to `node`'s `lb` while waiting for `new_master` to take over
    /// (see [`Pair::wait_for_master`]); returns how `lb` exited and how long
    /// the VIP took to move.
    pub fn terminate_until_master(
        &mut self,
        node: Node,
        new_master: Node,
        timeout: Duration,
    ) -> (ExitStatus, Duration) {
        let lb = self.take_lb(node);
        let (status, moved) = thread::scope(|scope| {
            let stopper = scope.spawn(move || lb.stop());
            let moved = self.wait_for_master(new_master, timeout);
            (stopper.join().expect("the stopping thread"), moved)
        });
        (status.expect("stopping lb"), moved)
    }

    /// SIGHUP to `node`'s `lb`: it reloads its configuration file.
    pub fn hangup(&self, node: Node) {
        let lb = self.lbs[index(node)]
            .as_ref()
            .unwrap_or_else(|| panic!("lb on {node} is not running"));
        let pid = lb.pid().expect("a running lb has a pid");
        let status = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -HUP {pid}");
    }

    /// The configuration file `node`'s `lb` runs with (rewrite it, then
    /// reload, to change it).
    pub fn config_path(&self, node: Node) -> &Path {
        self.configs[index(node)]
            .as_deref()
            .unwrap_or_else(|| panic!("{node} has no lb configuration in this setup"))
    }

    /// SIGKILL to `node`'s `lb`: nothing is cleaned up.
    pub fn kill(&mut self, node: Node) {
        let lb = self.take_lb(node);
        let pid = lb.pid().expect("a running lb has a pid");
        let status = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -KILL {pid}");
        // Reaps it: it is gone already.
        let _ = lb.stop();
        self.killed[index(node)] = true;
    }

    /// `node`'s `/status`, from the API of the lab's configurations
    /// (`global.api` left at its default).
    pub fn try_status(&self, node: Node) -> Result<StatusReport, StatusError> {
        let url = format!("http://{}/status", lb::config::DEFAULT_API);
        let json = self
            .lab
            .run(
                node,
                "curl",
                &[
                    "-sS",
                    "--fail",
                    "--max-time",
                    STATUS_CALL_TIMEOUT_SECS,
                    &url,
                ],
            )
            .map_err(|source| StatusError::Unreachable { node, source })?;
        StatusReport::from_json(&json).map_err(|source| StatusError::Json { node, source, json })
    }

    /// `node`'s `/status`.
    ///
    /// # Panics
    /// If it cannot be read.
    pub fn status(&self, node: Node) -> StatusReport {
        self.try_status(node)
            .unwrap_or_else(|error| panic!("{error}\n{}", self.diagnostics()))
    }

    /// Backend `web` of the lab's service, as `node` sees it.
    pub fn backend(&self, node: Node, web: Node) -> BackendReport {
        self.status(node)
            .service(lab::SERVICE_NAME)
            .backend(&web.name())
            .clone()
    }

    /// `node`'s VRRP instance.
    ///
    /// # Panics
    /// If its `/status` cannot be read or carries no VRRP state.
    pub fn vrrp(&self, node: Node) -> VrrpReport {
        self.status(node).vrrp()
    }

    /// What `node` has forwarded for the lab's service.
    pub fn counters(&self, node: Node) -> Counters {
        self.service_counters(node, lab::SERVICE_NAME)
    }

    /// What `node` has forwarded for `service` (e.g.
    /// [`lab::HTTPS_SERVICE_NAME`]).
    pub fn service_counters(&self, node: Node, service: &str) -> Counters {
        self.status(node).service(service).counters
    }

    /// Waits until `node`'s `/status` satisfies `done` (`what` names it for
    /// the failure message); returns that status.
    pub fn wait_until(
        &self,
        node: Node,
        what: &str,
        timeout: Duration,
        done: impl Fn(&StatusReport) -> bool,
    ) -> StatusReport {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.try_status(node);
            if let Ok(status) = &status {
                if done(status) {
                    return status.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "{node}: not {what} within {timeout:?}; last status: {status:#?}\n{}",
                self.diagnostics()
            );
            sleep(POLL);
        }
    }

    /// Waits until `node` shows backend `web` in `state`; returns it.
    pub fn wait_for_backend(
        &self,
        node: Node,
        web: Node,
        state: BackendState,
        timeout: Duration,
    ) -> BackendReport {
        let what = format!("showing {web} {state}");
        self.wait_until(node, &what, timeout, |status| {
            status.service(lab::SERVICE_NAME).backend(&web.name()).state == state
        })
        .service(lab::SERVICE_NAME)
        .backend(&web.name())
        .clone()
    }

    /// Waits until `node` shows every backend up and, in a pair, tracking
    /// advertising its configured priority again.
    pub fn wait_until_ready(&self, node: Node) {
        let priority = lab::priority(node);
        let what = if self.vrrp {
            format!("showing every backend up at priority {priority}")
        } else {
            "showing every backend up".to_owned()
        };
        self.wait_until(node, &what, READY_TIMEOUT, |status| {
            status
                .backends()
                .all(|backend| backend.state == BackendState::Up)
                && (!self.vrrp || status.vrrp().priority == priority)
        });
    }

    /// Waits until `node` holds the VIP and no other node does (one whose
    /// `lb` was SIGKILLed may still have it), then until `node`'s `/status`
    /// says master and every other running `lb`'s says it is not; returns
    /// how long the VIP took to move. Fails at once if an `lb` exits.
    pub fn wait_for_master(&mut self, node: Node, timeout: Duration) -> Duration {
        let started = Instant::now();
        let moved = loop {
            self.assert_running();
            let holders = self.lab.vip_holders().expect("reading addresses");
            let others_gone = holders
                .iter()
                .all(|&holder| holder == node || self.killed[index(holder)]);
            if holders.contains(&node) && others_gone {
                break started.elapsed();
            }
            assert!(
                started.elapsed() < timeout,
                "{node} did not hold the VIP alone within {timeout:?} (holders: {holders:?})\n{}",
                self.diagnostics()
            );
            sleep(POLL);
        };
        self.wait_until(node, "master", STATUS_AGREES_TIMEOUT, |status| {
            status.vrrp().state == VrrpState::Master
        });
        for other in self.running().filter(|&other| other != node) {
            self.wait_until(other, "out of master", STATUS_AGREES_TIMEOUT, |status| {
                status.vrrp().state != VrrpState::Master
            });
        }
        moved
    }

    /// `node` forwarded the lab's service's traffic since `earlier` was
    /// read: it was really the node answering (`while` says when).
    pub fn assert_forwarded_since(&self, node: Node, earlier: Counters, while_: &str) {
        self.assert_service_forwarded_since(node, lab::SERVICE_NAME, earlier, while_);
    }

    /// [`Pair::assert_forwarded_since`] for `service`; returns what `node`
    /// forwarded.
    pub fn assert_service_forwarded_since(
        &self,
        node: Node,
        service: &str,
        earlier: Counters,
        while_: &str,
    ) -> Counters {
        let forwarded = self.service_counters(node, service).since(earlier);
        println!(
            "{node} forwarded {} packets ({} bytes, {} new flows) of {service} {while_}",
            forwarded.packets, forwarded.bytes, forwarded.new_flows
        );
        assert!(
            forwarded.packets > 0,
            "{node} forwarded nothing of {service} {while_}\n{}",
            self.diagnostics()
        );
        forwarded
    }

    /// The router's next hops to the VIP now ([`Setup::Bgp`]).
    pub fn next_hops(&self) -> BTreeSet<Ipv4Addr> {
        self.router()
            .next_hops(lab::VIP)
            .expect("reading the router's routes")
    }

    /// Waits until the router's next hops to the VIP are exactly `nodes`;
    /// returns how long that took. Fails at once if an `lb` exits.
    pub fn wait_for_next_hops(&mut self, nodes: &[Node], timeout: Duration) -> Duration {
        self.assert_running();
        let wanted: BTreeSet<Ipv4Addr> = nodes
            .iter()
            .map(|node| node.address().expect("LB nodes have addresses"))
            .collect();
        self.router()
            .wait_for_next_hops(lab::VIP, &wanted, timeout)
            .unwrap_or_else(|error| {
                panic!(
                    "{error}
{}",
                    self.diagnostics()
                )
            })
    }

    /// SIGTERM to `node`'s `lb` while waiting for the router's next hops to
    /// become `remaining` (see [`Pair::wait_for_next_hops`]); returns how
    /// `lb` exited and how long the withdrawal took to reach the router.
    pub fn terminate_until_next_hops(
        &mut self,
        node: Node,
        remaining: &[Node],
        timeout: Duration,
    ) -> (ExitStatus, Duration) {
        let lb = self.take_lb(node);
        let (status, withdrawn) = thread::scope(|scope| {
            let stopper = scope.spawn(move || lb.stop());
            let withdrawn = self.wait_for_next_hops(remaining, timeout);
            (stopper.join().expect("the stopping thread"), withdrawn)
        });
        (status.expect("stopping lb"), withdrawn)
    }

    fn router(&self) -> &Router {
        &self
            .routing
            .as_ref()
            .expect("the router runs in a bgp setup only")
            .router
    }

    /// The LB nodes holding the VIP on `eth0` now.
    pub fn vip_holders(&self) -> Vec<Node> {
        self.lab.vip_holders().expect("reading addresses")
    }

    /// Runs `lb ARGS` inside `node` (where its API listens) and returns
    /// its stdout.
    pub fn lb(&self, node: Node, args: &[&str]) -> String {
        self.try_lb(node, args)
            .unwrap_or_else(|error| panic!("lb {}: {error}", args.join(" ")))
    }

    /// Starts `lb ARGS` inside `node` in the background (its output in the
    /// lab's `log_name`); dropping the result stops it.
    pub fn spawn_lb(&self, node: Node, args: &[&str], log_name: &str) -> NsProcess {
        let mut command = self.lab.command(node, &self.binary);
        command.args(args);
        self.lab
            .spawn(&format!("lb {}", args.join(" ")), &mut command, log_name)
            .unwrap_or_else(|error| panic!("starting lb {}: {error}", args.join(" ")))
    }

    /// [`Pair::lb`], or the error with what `lb` printed when it fails.
    pub fn try_lb(&self, node: Node, args: &[&str]) -> Result<String, LabError> {
        let binary = self.binary.to_string_lossy();
        self.lab.run(node, &binary, args)
    }

    /// Stops every `lb` (SIGTERM: each must exit cleanly, lb2 first) and
    /// removes the lab, leaving no namespace behind.
    pub fn down(mut self) {
        for node in [Node::Lb2, Node::Lb1] {
            if self.lbs[index(node)].is_some() {
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

    fn take_lb(&mut self, node: Node) -> NsProcess {
        self.lbs[index(node)]
            .take()
            .unwrap_or_else(|| panic!("lb on {node} is not running"))
    }

    /// The LB nodes whose `lb` runs.
    fn running(&self) -> impl Iterator<Item = Node> + '_ {
        Node::LBS
            .into_iter()
            .filter(|&node| self.lbs[index(node)].is_some())
    }

    /// Fails if a running `lb` has exited.
    fn assert_running(&mut self) {
        for lb in self.lbs.iter_mut().flatten() {
            let exited = lb.try_exit_status().expect("checking on lb");
            if let Some(status) = exited {
                panic!(
                    "{} exited ({status}); end of its log:\n{}",
                    lb.name(),
                    lb.log_tail(LOG_LINES)
                );
            }
        }
    }

    /// The end of every running `lb`'s log, for failure messages.
    fn diagnostics(&self) -> String {
        self.lbs
            .iter()
            .flatten()
            .map(|lb| format!("--- {}:\n{}", lb.name(), lb.log_tail(LOG_LINES)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `node`'s slot in a [`Pair`].
fn index(node: Node) -> usize {
    match node {
        Node::Lb1 => 0,
        Node::Lb2 => 1,
        other => panic!("{other} is not a load balancer"),
    }
}
