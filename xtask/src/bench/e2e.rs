//! The end-to-end benchmark: wrk from the lab's client through each variant
//! to the same three nginx, variants interleaved round by round in both
//! connection modes, with the CPU each load balancer used; and the medians
//! over the rounds.

use std::thread::sleep;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use super::cpu::{self, BpfStats};
use super::stats::{median, per_thousand};
use super::variants::{self, Deployed, Files, LbCpuReading, Variant};
use super::wrk::{self, WrkPlan, WrkSummary};
use crate::interrupt;
use crate::lab::Lab;

/// How the client uses its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Many requests per connection.
    KeepAlive,
    /// `Connection: close`: one request per TCP connection.
    Close,
}

impl Mode {
    /// Both modes, in the order each round runs them.
    pub const ALL: [Mode; 2] = [Mode::KeepAlive, Mode::Close];

    /// Short name (as in the JSON).
    pub fn key(self) -> &'static str {
        match self {
            Mode::KeepAlive => "keep-alive",
            Mode::Close => "close",
        }
    }
}

/// The shape of the end-to-end benchmark.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct E2eSettings {
    /// Rounds; each runs every variant in both modes.
    pub rounds: usize,
    /// wrk's duration per run, seconds.
    pub duration_secs: u64,
    /// wrk's connections (a multiple of the threads).
    pub connections: u32,
    /// wrk's threads: three, so that `direct` gives each web server one.
    pub threads: u32,
    /// Pause after each run, ms.
    pub settle_ms: u64,
}

impl E2eSettings {
    /// The full benchmark.
    pub fn full() -> Self {
        E2eSettings {
            rounds: 5,
            duration_secs: 8,
            connections: 24,
            threads: 3,
            settle_ms: 1000,
        }
    }

    /// The smoke run: one short round.
    pub fn quick() -> Self {
        E2eSettings {
            rounds: 1,
            duration_secs: 2,
            settle_ms: 300,
            ..Self::full()
        }
    }
}

/// One wrk run and what it cost.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// 1-based.
    pub round: usize,
    pub mode: Mode,
    pub variant: Variant,
    pub wrk: WrkSummary,
    /// Softirq time of the whole machine during the run, ms.
    pub softirq_ms: f64,
    /// The load balancer's own CPU during the run (HAProxy: process time;
    /// ours: XDP program run time), ms.
    pub lb_cpu_ms: Option<f64>,
    /// Packets the XDP program ran on during the run (ours only).
    pub xdp_packets: Option<u64>,
}

/// Runs every round and returns every run's record. Each variant is
/// deployed before its run and stopped after it. BPF statistics are on for
/// the whole loop (for every variant alike) and restored after.
pub fn run(lab: &Lab, files: &Files, settings: &E2eSettings) -> Result<Vec<RunRecord>> {
    let _bpf_stats = BpfStats::enable()?;
    let mut records = Vec::new();
    for round in 1..=settings.rounds {
        for mode in Mode::ALL {
            for variant in Variant::ALL {
                if interrupt::requested() {
                    bail!("interrupted");
                }
                let record = run_one(lab, files, settings, round, mode, variant)
                    .with_context(|| format!("round {round}, {}, {variant}", mode.key()))?;
                println!(
                    "bench: round {round}/{} {:<10} {:<16} {:>9.0} req/s  p99 {:>7.2} ms  errors {}",
                    settings.rounds,
                    mode.key(),
                    variant.key(),
                    record.wrk.requests_per_sec(),
                    record.wrk.latency_us.p99 as f64 / 1000.0,
                    record.wrk.errors.total()
                );
                records.push(record);
                sleep(Duration::from_millis(settings.settle_ms));
            }
        }
    }
    Ok(records)
}

fn run_one(
    lab: &Lab,
    files: &Files,
    settings: &E2eSettings,
    round: usize,
    mode: Mode,
    variant: Variant,
) -> Result<RunRecord> {
    let plan = WrkPlan {
        threads: settings.threads,
        connections: settings.connections,
        duration: Duration::from_secs(settings.duration_secs),
        close: mode == Mode::Close,
    };
    let deployed = variants::deploy(lab, files, variant)?;
    let measured = measure(lab, files, &plan, variant, &deployed);
    // Stopped whether the run worked or not.
    let stopped = deployed.stop(lab);
    let measurement = measured?;
    stopped?;
    let (lb_cpu_ms, xdp_packets) = match measurement.lb_cpu {
        Some((LbCpuReading::Process(before), LbCpuReading::Process(after))) => {
            (Some(after - before), None)
        }
        Some((LbCpuReading::Xdp(before), LbCpuReading::Xdp(after))) => (
            Some(after.run_time_ns.saturating_sub(before.run_time_ns) as f64 / 1e6),
            Some(after.run_cnt.saturating_sub(before.run_cnt)),
        ),
        _ => (None, None),
    };
    Ok(RunRecord {
        round,
        mode,
        variant,
        wrk: measurement.wrk,
        softirq_ms: measurement.softirq_ms,
        lb_cpu_ms,
        xdp_packets,
    })
}

/// What one wrk run measured.
struct Measurement {
    wrk: WrkSummary,
    /// Machine softirq time during the run, ms.
    softirq_ms: f64,
    /// The load balancer's CPU counter before and after, if it has one.
    lb_cpu: Option<(LbCpuReading, LbCpuReading)>,
}

/// Runs wrk against `variant`, reading the CPU counters just before and after.
fn measure(
    lab: &Lab,
    files: &Files,
    plan: &WrkPlan,
    variant: Variant,
    deployed: &Deployed,
) -> Result<Measurement> {
    let targets = variant.targets();
    let lb_before = deployed.lb_cpu()?;
    let softirq_before = cpu::softirq_ms()?;
    let wrk = wrk::run(lab, plan, &files.wrk_script(variant), targets[0])?;
    let softirq_after = cpu::softirq_ms()?;
    let lb_after = deployed.lb_cpu()?;
    Ok(Measurement {
        wrk,
        softirq_ms: softirq_after - softirq_before,
        lb_cpu: lb_before.zip(lb_after),
    })
}

/// One variant in one mode, over all rounds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SummaryRow {
    pub mode: Mode,
    pub variant: Variant,
    pub rounds: usize,
    /// Median requests per second.
    pub requests_per_sec: f64,
    /// Median over rounds of (this variant's req/s / direct's, same round and mode).
    pub ratio_to_direct: Option<f64>,
    /// Median p50 and p99 latency, ms.
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Requests completed, all rounds.
    pub requests: u64,
    /// Socket errors, timeouts and error statuses, all rounds.
    pub errors: u64,
    /// Median of the load balancer's own CPU per 1000 requests, ms: HAProxy's
    /// process time, ours' XDP run time, nftables' softirq time above direct's.
    pub lb_cpu_ms_per_1k: Option<f64>,
    /// Median machine softirq time per 1000 requests, ms.
    pub softirq_ms_per_1k: Option<f64>,
    /// Median of (softirq per 1000 requests − direct's, same round and mode), ms.
    pub softirq_over_direct_ms_per_1k: Option<f64>,
}

/// The medians of `records`, one row per mode and variant, in run order.
pub fn summarize(records: &[RunRecord]) -> Vec<SummaryRow> {
    let direct_in = |round: usize, mode: Mode| {
        records
            .iter()
            .find(|r| r.round == round && r.mode == mode && r.variant == Variant::Direct)
    };
    let softirq_per_1k = |r: &RunRecord| per_thousand(r.softirq_ms, r.wrk.requests);
    let mut rows = Vec::new();
    for mode in Mode::ALL {
        for variant in Variant::ALL {
            let runs: Vec<&RunRecord> = records
                .iter()
                .filter(|r| r.mode == mode && r.variant == variant)
                .collect();
            if runs.is_empty() {
                continue;
            }
            let ratios = runs.iter().filter_map(|r| {
                let direct = direct_in(r.round, mode)?.wrk.requests_per_sec();
                (direct > 0.0).then(|| r.wrk.requests_per_sec() / direct)
            });
            let softirq_over_direct: Vec<f64> = runs
                .iter()
                .filter_map(|r| {
                    Some(softirq_per_1k(r)? - softirq_per_1k(direct_in(r.round, mode)?)?)
                })
                .collect();
            let lb_cpu_ms_per_1k = match variant {
                Variant::Direct => None,
                Variant::Nftables => median(softirq_over_direct.iter().copied()),
                _ => median(
                    runs.iter()
                        .filter_map(|r| per_thousand(r.lb_cpu_ms?, r.wrk.requests)),
                ),
            };
            rows.push(SummaryRow {
                mode,
                variant,
                rounds: runs.len(),
                requests_per_sec: median(runs.iter().map(|r| r.wrk.requests_per_sec()))
                    .unwrap_or(0.0),
                ratio_to_direct: median(ratios),
                p50_ms: median(runs.iter().map(|r| r.wrk.latency_us.p50 as f64 / 1000.0))
                    .unwrap_or(0.0),
                p99_ms: median(runs.iter().map(|r| r.wrk.latency_us.p99 as f64 / 1000.0))
                    .unwrap_or(0.0),
                requests: runs.iter().map(|r| r.wrk.requests).sum(),
                errors: runs.iter().map(|r| r.wrk.errors.total()).sum(),
                lb_cpu_ms_per_1k,
                softirq_ms_per_1k: median(runs.iter().filter_map(|r| softirq_per_1k(r))),
                softirq_over_direct_ms_per_1k: match variant {
                    Variant::Direct => None,
                    _ => median(softirq_over_direct),
                },
            });
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::wrk::{Latency, WrkErrors};

    fn record(round: usize, variant: Variant, requests: u64, softirq_ms: f64) -> RunRecord {
        RunRecord {
            round,
            mode: Mode::KeepAlive,
            variant,
            wrk: WrkSummary {
                requests,
                duration_us: 1_000_000,
                bytes: 0,
                errors: WrkErrors {
                    connect: 0,
                    read: 0,
                    write: 0,
                    status: 0,
                    timeout: 0,
                },
                latency_us: Latency {
                    p50: 1000,
                    p90: 2000,
                    p99: 3000,
                    max: 4000,
                    mean: 1100.0,
                },
            },
            softirq_ms,
            lb_cpu_ms: (variant == Variant::Haproxy).then_some(requests as f64 / 100.0),
            xdp_packets: None,
        }
    }

    #[test]
    fn ratios_and_cpu_are_paired_with_direct_of_the_same_round() {
        let records = [
            record(1, Variant::Direct, 10_000, 100.0),
            record(1, Variant::Haproxy, 5_000, 100.0),
            record(1, Variant::Nftables, 8_000, 120.0),
            record(2, Variant::Direct, 20_000, 100.0),
            record(2, Variant::Haproxy, 10_000, 100.0),
            record(2, Variant::Nftables, 16_000, 120.0),
        ];
        let rows = summarize(&records);
        assert_eq!(rows.len(), 3);
        let direct = &rows[0];
        assert_eq!(direct.ratio_to_direct, Some(1.0));
        assert_eq!(direct.lb_cpu_ms_per_1k, None);
        let haproxy = &rows[1];
        assert_eq!(haproxy.ratio_to_direct, Some(0.5));
        assert_eq!(haproxy.lb_cpu_ms_per_1k, Some(10.0));
        assert_eq!(haproxy.requests, 15_000);
        let nftables = &rows[2];
        assert_eq!(nftables.ratio_to_direct, Some(0.8));
        // Round 1: 15 - 10 = 5 ms per 1k; round 2: 7.5 - 5 = 2.5; median 3.75.
        assert_eq!(nftables.lb_cpu_ms_per_1k, Some(3.75));
        assert_eq!(nftables.softirq_over_direct_ms_per_1k, Some(3.75));
    }
}
