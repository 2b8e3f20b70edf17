//! `cargo xtask run`: the demo in the lab (no `--config`), or `lb` on the
//! host's real interfaces (`--config FILE`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::lab::{self, Bird, Lab, LabOptions, Node, NsProcess, PairOptions, Router, Scheduler};
use crate::{bootstrap, build, cmd, interrupt};

/// How long `lb` gets to attach and program its maps.
const LB_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What the lab demo does.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Lab name prefix.
    pub prefix: String,
    /// The service's scheduler.
    pub scheduler: Scheduler,
    /// Requests sent through the VIP, one connection each.
    pub requests: usize,
    /// How long to keep running after the requests; until Ctrl-C if `None`.
    pub duration: Option<Duration>,
    /// How the two LB nodes share the VIP.
    pub ha: HaMode,
}

/// How the demo's two LB nodes share the VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HaMode {
    /// Active-passive: VRRP moves the VIP between lb1 and lb2.
    Vrrp,
    /// Active-active: both announce it over BGP (BIRD on each node) to a
    /// router that spreads the client's flows by ECMP.
    Bgp,
}

/// How often the running demo prints both nodes' `lb status`.
const LIVE_STATUS_EVERY: Duration = Duration::from_secs(5);

/// How long the router's BGP sessions get to come up.
const BGP_ESTABLISH_TIMEOUT: Duration = Duration::from_secs(30);

/// Bootstrap, build, bring the lab up, run the `lb` pair on lb1 and lb2
/// (VRRP moves the VIP between them), send requests through the VIP and
/// show who answered and which node is master; then wait for Ctrl-C or the
/// duration, reporting every change of master. Both `lb`s are stopped and
/// the lab removed on every way out.
pub fn in_lab(options: &DemoOptions) -> Result<()> {
    if options.ha == HaMode::Bgp {
        return in_bgp_lab(options);
    }
    require_root()?;
    let toolchain = bootstrap::run()?;
    let artifacts = build::all(toolchain)?;
    stop_if_interrupted()?;

    println!("lab: bringing up {}* ...", options.prefix);
    let lab = Lab::up(&LabOptions {
        ebpf_object: artifacts.ebpf_object.clone(),
        static_vip_on_lb1: false,
        ..LabOptions::new(&options.prefix)
    })?;
    println!(
        "lab: up; web1..3 answer the client directly; VIP {} moves between lb1 and lb2 by VRRP",
        lab::VIP
    );
    // Port 443 too, so HTTPS through the VIP can be tried by hand meanwhile.
    let pair = PairOptions {
        https: true,
        ..PairOptions::default()
    };
    let [mut lb1, mut lb2] = lab.start_pair(&artifacts.lb_binary, options.scheduler, &pair)?;
    for (node, lb) in [(Node::Lb1, &lb1), (Node::Lb2, &lb2)] {
        println!(
            "lb: started in {} (pid {}, VRRP priority {}, adverts every {:?}), log {}",
            lab.namespace(node),
            lb.pid().unwrap_or_default(),
            lab::priority(node),
            pair.advert_interval,
            lb.log_path().display()
        );
    }
    let took = lab.wait_for_master(Node::Lb1, &mut [&mut lb1, &mut lb2], LB_READY_TIMEOUT)?;
    lab.wait_until_vip_serves(&mut lb1, LB_READY_TIMEOUT)?;
    println!("vrrp: lb1 is master after {took:?} (its backends up), lb2 is backup");
    stop_if_interrupted()?;

    send_requests_and_show_status(&lab, options, &artifacts.lb_binary)?;
    println!(
        "HTTPS through the VIP (TLS passed through to nginx): {}",
        lab.client_curl_line(&lab::Target::vip_https(&lab.ca_certificate()))
    );

    match options.duration {
        Some(duration) => println!("running for {duration:?} (Ctrl-C stops earlier)"),
        None => println!(
            "running; Ctrl-C stops both lbs and removes the lab (try `ip netns exec {} ip link set eth0 down` to see lb2 take over)",
            lab.namespace(Node::Lb1)
        ),
    }
    let mut master = vec![Node::Lb1];
    // The backup first, so the master's shutdown is not a failover.
    run_until_done(&lab, options, &artifacts.lb_binary, [lb2, lb1], || {
        if let Ok(holders) = lab.vip_holders() {
            if holders != master {
                println!("vrrp: the VIP is now on {holders:?}");
                master = holders;
            }
        }
    })?;
    remove_lab(lab)
}

/// The demo's requests through the VIP, who answered them, and both
/// nodes' `lb status`.
fn send_requests_and_show_status(lab: &Lab, options: &DemoOptions, lb_binary: &Path) -> Result<()> {
    println!(
        "client: {} requests to {}, each on a new connection",
        options.requests,
        lab::vip_url()
    );
    let replies = lab.http_get_many(&lab::vip_url(), options.requests)?;
    for (number, reply) in replies.iter().enumerate() {
        println!("  request {:>3}: {reply}", number + 1);
    }
    println!("tally ({} scheduler):", options.scheduler);
    for (backend, count) in lab::tally(&replies) {
        println!("  {backend:<28} {count:>4}");
    }
    for node in Node::LBS {
        print_lb_status(lab, node, lb_binary);
    }
    Ok(())
}

/// The active-active demo: the lab with an ECMP router between the client
/// and the switch, BIRD on the router and on both LB nodes, `lb` with
/// `[bgp]` on both; requests through the VIP, each node's share, and the
/// router's next hops; then until Ctrl-C or the duration, reporting every
/// change of the next hops. Everything is stopped and removed on every way
/// out.
fn in_bgp_lab(options: &DemoOptions) -> Result<()> {
    require_root()?;
    if options.scheduler != Scheduler::Maglev {
        bail!(
            "--ha bgp needs --scheduler maglev: both nodes must pick the same backend for a flow, and only Maglev does that without shared state"
        );
    }
    let toolchain = bootstrap::run()?;
    let artifacts = build::all(toolchain)?;
    stop_if_interrupted()?;

    println!(
        "lab: bringing up {}* with an ECMP router ...",
        options.prefix
    );
    let lab = Lab::up(&LabOptions {
        ebpf_object: artifacts.ebpf_object.clone(),
        static_vip_on_lb1: false,
        ..LabOptions::new(&options.prefix)
    })?;
    let mut router = Router::up(&lab)?;
    let [lb1_bird, lb2_bird] = Node::LBS.map(|node| Bird::start_lb(&lab, node));
    let _speakers = [lb1_bird?, lb2_bird?];
    let [lb1, lb2] = lab.start_active_active(&artifacts.lb_binary)?;
    for (node, lb) in [(Node::Lb1, &lb1), (Node::Lb2, &lb2)] {
        println!(
            "lb: started in {} (pid {}, [bgp] table {}), log {}",
            lab.namespace(node),
            lb.pid().unwrap_or_default(),
            lab::ANNOUNCE_TABLE,
            lb.log_path().display()
        );
    }
    let sessions: Vec<String> = Node::LBS.into_iter().map(lab::session_name).collect();
    router
        .bird()
        .wait_established(&sessions, BGP_ESTABLISH_TIMEOUT)?;
    let both: std::collections::BTreeSet<_> =
        Node::LBS.iter().filter_map(|node| node.address()).collect();
    let took = router.wait_for_next_hops(lab::VIP, &both, BGP_ESTABLISH_TIMEOUT)?;
    println!(
        "bgp: the router reaches {} through lb1 and lb2 (ECMP) after {took:?}",
        lab::VIP
    );
    stop_if_interrupted()?;

    send_requests_and_show_status(&lab, options, &artifacts.lb_binary)?;
    match options.duration {
        Some(duration) => println!("running for {duration:?} (Ctrl-C stops earlier)"),
        None => println!(
            "running; Ctrl-C stops everything and removes the lab (try `ip netns exec {} ip link set eth0 down`: BFD withdraws lb1 and lb2 serves alone)",
            lab.namespace(Node::Lb1)
        ),
    }
    let mut next_hops = both;
    run_until_done(&lab, options, &artifacts.lb_binary, [lb2, lb1], || {
        if let Ok(now) = router.next_hops(lab::VIP) {
            if now != next_hops {
                println!(
                    "bgp: the router's next hops to {} are now {now:?}",
                    lab::VIP
                );
                next_hops = now;
            }
        }
    })?;
    drop(router);
    remove_lab(lab)
}

/// Runs the demo for its duration (or until Ctrl-C), printing the live
/// status and calling `watch` on every tick, then stops `lbs` in that order
/// (each `lb` withdraws or hands over first). Fails if an `lb` exits on its
/// own, with the end of its log.
fn run_until_done(
    lab: &Lab,
    options: &DemoOptions,
    lb_binary: &Path,
    mut lbs: [NsProcess; 2],
    mut watch: impl FnMut(),
) -> Result<()> {
    let mut exited = None;
    let mut live = LiveStatus::new();
    interrupt::sleep_while(options.duration, || {
        live.print_when_due(lab, lb_binary);
        for lb in &mut lbs {
            if let Ok(Some(status)) = lb.try_exit_status() {
                exited = Some((lb.name().to_owned(), status, lb.log_tail(30)));
                return false;
            }
        }
        watch();
        true
    });
    if let Some((name, status, log_tail)) = exited {
        bail!("{name} exited on its own ({status}); end of its log:\n{log_tail}");
    }
    for lb in lbs {
        let name = lb.name().to_owned();
        let status = lb.stop().with_context(|| format!("stopping {name}"))?;
        println!("{name}: stopped ({status})");
    }
    Ok(())
}

/// Removes the demo's lab and says what went.
fn remove_lab(lab: Lab) -> Result<()> {
    let report = lab.down()?;
    println!(
        "lab: removed {} namespaces, {} pins",
        report.namespaces_removed.len(),
        report.pins_removed
    );
    Ok(())
}

/// Both nodes' `lb status`, printed every [`LIVE_STATUS_EVERY`] while the
/// demo runs.
struct LiveStatus {
    next: Instant,
}

impl LiveStatus {
    /// The first print is one period from now (the status was just shown).
    fn new() -> Self {
        LiveStatus {
            next: Instant::now() + LIVE_STATUS_EVERY,
        }
    }

    fn print_when_due(&mut self, lab: &Lab, lb_binary: &Path) {
        if Instant::now() < self.next {
            return;
        }
        println!(
            "--- live status (every {}s) ---",
            LIVE_STATUS_EVERY.as_secs()
        );
        for node in Node::LBS {
            print_lb_status(lab, node, lb_binary);
        }
        self.next = Instant::now() + LIVE_STATUS_EVERY;
    }
}

/// Shows `lb status` from inside `node` (its API listens on that
/// namespace's loopback), bounded in time.
fn print_lb_status(lab: &Lab, node: Node, lb_binary: &Path) {
    let mut command = lab.command(node, "timeout");
    command.arg("5").arg(lb_binary).arg("status");
    match cmd::output(&mut command) {
        Ok(status) => println!("lb status on {node}:\n{status}"),
        Err(error) => println!("lb status on {node}: not available ({error})"),
    }
}

/// Bootstrap, build, then `lb run --config CONFIG` on this host's interfaces
/// in the foreground until it exits or Ctrl-C.
pub fn on_host(config: &Path) -> Result<()> {
    require_root()?;
    let toolchain = bootstrap::run()?;
    let artifacts = build::all(toolchain)?;
    stop_if_interrupted()?;
    println!(
        "lb: running on this host's interfaces with {}; Ctrl-C stops it",
        config.display()
    );
    let mut command = Command::new(&artifacts.lb_binary);
    command.arg("run").arg("--config").arg(config);
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {}", cmd::describe(&command)))?;
    let pid = Pid::from_raw(i32::try_from(child.id()).context("pid out of range")?);
    let mut signalled = false;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for lb")? {
            break status;
        }
        // A terminal Ctrl-C reaches lb directly; a SIGTERM sent to xtask alone
        // is passed on.
        if interrupt::requested() && !signalled {
            let _ = kill(pid, Signal::SIGTERM);
            signalled = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if status.success() || signalled {
        println!("lb: exited ({status})");
        Ok(())
    } else {
        bail!("lb exited with {status}")
    }
}

fn require_root() -> Result<()> {
    if !bootstrap::is_root() {
        bail!("cargo xtask run needs root: it loads XDP programs (and creates network namespaces)");
    }
    Ok(())
}

fn stop_if_interrupted() -> Result<()> {
    if interrupt::requested() {
        bail!("interrupted");
    }
    Ok(())
}
