//! The active-active row: wrk from the client, behind the ECMP router of
//! `cargo xtask run --ha bgp`, to the VIP that both LB nodes announce, in
//! both connection modes; with the share of the requests each node carried
//! (its data path's packet counter for the service, read through `lb status
//! --json` before and after each run). A lab of its own (prefix + `aa-`),
//! built after the main end-to-end lab is removed and removed before
//! returning.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::thread::sleep;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use super::e2e::{E2eSettings, Mode};
use super::stats::median;
use super::wrk::{self, WrkPlan, WrkSummary};
use crate::build::Artifacts;
use crate::lab::{self, Bird, Lab, LabOptions, Node, Router, SERVICE_NAME, VIP};
use crate::{cmd, interrupt};

/// How long the router's BGP sessions and next hops get to come up.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Ephemeral ports of the client, as in the main lab.
const CLIENT_PORT_RANGE: &str = "1024 65535";

/// One wrk run through both nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActiveActiveRun {
    /// 1-based.
    pub round: usize,
    pub mode: Mode,
    pub wrk: WrkSummary,
    /// Packets each node's data path forwarded for the service (lb1, lb2).
    pub packets: [u64; 2],
}

impl ActiveActiveRun {
    /// lb1's share of the forwarded packets, 0..=1; `None` if none were.
    fn lb1_share(&self) -> Option<f64> {
        let total = self.packets[0] + self.packets[1];
        (total > 0).then(|| self.packets[0] as f64 / total as f64)
    }
}

/// The medians of one mode.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActiveActiveRow {
    pub mode: Mode,
    pub requests_per_sec: f64,
    pub p99_ms: f64,
    /// Summed over the rounds.
    pub errors: u64,
    /// lb1's share of the forwarded packets (lb2 has the rest).
    pub lb1_share: f64,
}

/// Builds the active-active lab, runs `settings.rounds` rounds of both
/// modes, and removes the lab (on every way out).
pub fn run(
    artifacts: &Artifacts,
    prefix: &str,
    settings: &E2eSettings,
) -> Result<Vec<ActiveActiveRun>> {
    if lab::exists(prefix)? {
        lab::teardown(prefix)?;
    }
    println!("bench: active-active lab {prefix}* (ECMP router, BIRD, lb with [bgp] on both nodes)");
    let lab = Lab::up(&LabOptions {
        ebpf_object: artifacts.ebpf_object.clone(),
        static_vip_on_lb1: false,
        ..LabOptions::new(prefix)
    })?;
    let mut router = Router::up(&lab)?;
    let [lb1_bird, lb2_bird] = Node::LBS.map(|node| Bird::start_lb(&lab, node));
    let _speakers = [lb1_bird?, lb2_bird?];
    let lbs = lab.start_active_active(&artifacts.lb_binary)?;
    let sessions: Vec<String> = Node::LBS.into_iter().map(lab::session_name).collect();
    router
        .bird()
        .wait_established(&sessions, CONVERGE_TIMEOUT)?;
    let both: BTreeSet<Ipv4Addr> = Node::LBS.iter().filter_map(|node| node.address()).collect();
    router.wait_for_next_hops(VIP, &both, CONVERGE_TIMEOUT)?;
    lab.run(
        Node::Client,
        "sysctl",
        &[
            "-qw",
            &format!("net.ipv4.ip_local_port_range={CLIENT_PORT_RANGE}"),
        ],
    )?;
    let script = lab.run_dir().join("wrk-active-active.lua");
    std::fs::write(&script, wrk::script(&[VIP]))
        .with_context(|| format!("writing {}", script.display()))?;

    let mut runs = Vec::new();
    for round in 1..=settings.rounds {
        for mode in Mode::ALL {
            if interrupt::requested() {
                bail!("interrupted");
            }
            let plan = WrkPlan {
                threads: settings.threads,
                connections: settings.connections,
                duration: Duration::from_secs(settings.duration_secs),
                close: mode == Mode::Close,
            };
            let before = Node::LBS.map(|node| service_packets(&lab, node, &artifacts.lb_binary));
            let wrk = wrk::run(&lab, &plan, &script, VIP)?;
            let after = Node::LBS.map(|node| service_packets(&lab, node, &artifacts.lb_binary));
            let mut packets = [0; 2];
            for (index, (before, after)) in before.into_iter().zip(after).enumerate() {
                packets[index] = after?.saturating_sub(before?);
            }
            let run = ActiveActiveRun {
                round,
                mode,
                wrk,
                packets,
            };
            println!(
                "bench: round {round}/{} {:<10} {:<16} {:>9.0} req/s  lb1 {:.0} %  errors {}",
                settings.rounds,
                mode.key(),
                "active-active",
                run.wrk.requests_per_sec(),
                run.lb1_share().unwrap_or(0.0) * 100.0,
                run.wrk.errors.total()
            );
            runs.push(run);
            sleep(Duration::from_millis(settings.settle_ms));
        }
    }
    drop(lbs);
    drop(router);
    lab.down()?;
    Ok(runs)
}

/// The packets `node`'s data path forwarded for the lab's service so far.
fn service_packets(lab: &Lab, node: Node, lb_binary: &Path) -> Result<u64> {
    let mut command = lab.command(node, "timeout");
    command.arg("5").arg(lb_binary).args(["status", "--json"]);
    let json = cmd::output(&mut command)?;
    let status: serde_json::Value =
        serde_json::from_str(&json).with_context(|| format!("{node}'s lb status --json"))?;
    status["services"]
        .as_array()
        .and_then(|services| {
            services
                .iter()
                .find(|service| service["name"] == SERVICE_NAME)
        })
        .and_then(|service| service["counters"]["packets"].as_u64())
        .with_context(|| format!("{node}'s status has no packet counter for {SERVICE_NAME}"))
}

/// The medians of `runs` per mode.
pub fn summarize(runs: &[ActiveActiveRun]) -> Vec<ActiveActiveRow> {
    Mode::ALL
        .into_iter()
        .filter_map(|mode| {
            let of_mode: Vec<&ActiveActiveRun> =
                runs.iter().filter(|run| run.mode == mode).collect();
            Some(ActiveActiveRow {
                mode,
                requests_per_sec: median(of_mode.iter().map(|run| run.wrk.requests_per_sec()))?,
                p99_ms: median(
                    of_mode
                        .iter()
                        .map(|run| run.wrk.latency_us.p99 as f64 / 1000.0),
                )?,
                errors: of_mode.iter().map(|run| run.wrk.errors.total()).sum(),
                lb1_share: median(of_mode.iter().filter_map(|run| run.lb1_share()))?,
            })
        })
        .collect()
}
