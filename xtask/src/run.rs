//! `cargo xtask run`: the demo in the lab (no `--config`), or `lb` on the
//! host's real interfaces (`--config FILE`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::lab::{self, Lab, LabOptions, Node, Scheduler};
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
}

/// Bootstrap, build, bring the lab up, run `lb` on lb1, send requests through
/// the VIP and show who answered; then wait for Ctrl-C or the duration. `lb`
/// is stopped and the lab removed on every way out.
pub fn in_lab(options: &DemoOptions) -> Result<()> {
    require_root()?;
    let toolchain = bootstrap::run()?;
    let artifacts = build::all(toolchain)?;
    stop_if_interrupted()?;

    println!("lab: bringing up {}* ...", options.prefix);
    let lab = Lab::up(&LabOptions {
        ebpf_object: artifacts.ebpf_object.clone(),
        ..LabOptions::new(&options.prefix)
    })?;
    println!(
        "lab: up; web1..3 answer the client directly; VIP {} on {}",
        lab::VIP,
        lab.namespace(Node::Lb1)
    );
    let config = lab.write_lb_config(options.scheduler)?;
    let mut lb = lab.start_lb(Node::Lb1, &artifacts.lb_binary, &config)?;
    println!(
        "lb: started in {} (pid {}), config {}, log {}",
        lab.namespace(Node::Lb1),
        lb.pid().unwrap_or_default(),
        config.display(),
        lb.log_path().display()
    );
    lab.wait_until_vip_serves(&mut lb, LB_READY_TIMEOUT)?;
    stop_if_interrupted()?;

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
    print_lb_status(&lab, &artifacts.lb_binary);

    match options.duration {
        Some(duration) => println!("running for {duration:?} (Ctrl-C stops earlier)"),
        None => println!("running; Ctrl-C stops lb and removes the lab"),
    }
    let mut lb_exit = None;
    interrupt::sleep_while(options.duration, || {
        lb_exit = lb.try_exit_status().ok().flatten();
        lb_exit.is_none()
    });
    if let Some(status) = lb_exit {
        bail!(
            "lb exited on its own ({status}); end of its log:\n{}",
            lb.log_tail(30)
        );
    }
    let status = lb.stop().context("stopping lb")?;
    println!("lb: stopped ({status})");
    let report = lab.down()?;
    println!(
        "lab: removed {} namespaces, {} pins",
        report.namespaces_removed.len(),
        report.pins_removed
    );
    Ok(())
}

/// Shows `lb status` from inside the LB namespace (its API listens on that
/// namespace's loopback), bounded in time.
fn print_lb_status(lab: &Lab, lb_binary: &Path) {
    let mut command = lab.command(Node::Lb1, "timeout");
    command.arg("5").arg(lb_binary).arg("status");
    match cmd::output(&mut command) {
        Ok(status) => println!("lb status:\n{status}"),
        Err(error) => println!("lb status: not available ({error})"),
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
