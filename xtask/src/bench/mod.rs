//! `cargo xtask bench`: measures our data path against the floor (micro) and
//! against what users run today (end to end, through the lab), side by side
//! in one run, and writes the report to `target/bench/`.
//!
//! Order: the micro benchmark first, on a quiet machine; then the lab is
//! built (its own prefix), every variant runs round by round, and the lab is
//! removed (on every way out: the [`Lab`] guard); last, the active-active
//! row in a lab of its own ([`active_active`]).

mod active_active;
mod chart;
mod cpu;
mod e2e;
mod machine;
mod micro;
mod network;
mod report;
mod stats;
mod variants;
mod wrk;

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::build::Artifacts;
use crate::lab::{self, Lab, LabOptions};
use crate::{bootstrap, build, cmd, interrupt, paths};

use active_active::{ActiveActiveRow, ActiveActiveRun};
use e2e::{E2eSettings, RunRecord, SummaryRow};
use machine::Machine;
use micro::{MicroReport, PathRow};
use report::ReportFiles;

/// Lab prefix of `cargo xtask bench`.
pub const DEFAULT_PREFIX: &str = "lbb-";
/// Lab prefix of the smoke test in `cargo xtask test`, so it never meets a
/// running `cargo xtask bench`.
const SMOKE_PREFIX: &str = "lbbt-";

/// How to run the benchmark.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The short smoke run.
    pub quick: bool,
    /// The lab's name prefix.
    pub prefix: String,
    /// Where the report goes.
    pub output_dir: PathBuf,
}

impl BenchOptions {
    /// The full benchmark (or the quick one) into `target/bench/`.
    pub fn new(quick: bool) -> Self {
        BenchOptions {
            quick,
            prefix: DEFAULT_PREFIX.to_owned(),
            output_dir: paths::target_dir().join("bench"),
        }
    }
}

/// Everything a benchmark run produced: `results.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    /// The command that produced it.
    pub command: String,
    pub quick: bool,
    /// When it started (UTC).
    pub started_at: String,
    /// Wall time of the measurements (micro, lab, end to end), seconds.
    pub wall_secs: f64,
    pub machine: Machine,
    /// The micro benchmark's raw report (packet paths, Maglev, flow table, publish).
    pub micro: MicroReport,
    /// The packet paths beside the floors.
    pub micro_rows: Vec<PathRow>,
    pub e2e_settings: E2eSettings,
    /// Every wrk run.
    pub e2e_runs: Vec<RunRecord>,
    /// Medians per mode and variant.
    pub e2e_summary: Vec<SummaryRow>,
    /// Every wrk run through the two active-active nodes.
    #[serde(default)]
    pub active_active_runs: Vec<ActiveActiveRun>,
    /// Their medians per mode.
    #[serde(default)]
    pub active_active_summary: Vec<ActiveActiveRow>,
}

/// `cargo xtask bench`: bootstrap, build, measure, report. Prints the
/// Markdown report and where the files are.
pub fn run(options: &BenchOptions) -> Result<Results> {
    if !bootstrap::is_root() {
        bail!("cargo xtask bench needs root: it loads XDP programs and creates network namespaces");
    }
    let artifacts = build::all(bootstrap::run()?)?;
    let results = run_with(&artifacts, options)?;
    let problems = report::problems(&results);
    if !problems.is_empty() {
        eprintln!("bench: WARNING, the results are incomplete:");
        for problem in &problems {
            eprintln!("  - {problem}");
        }
    }
    Ok(results)
}

/// The smoke test of `cargo xtask test`: the quick benchmark in its own lab
/// and directory, failing unless every row is present and every variant
/// served requests without errors. No timing thresholds.
pub fn smoke_test(artifacts: &Artifacts) -> Result<()> {
    let options = BenchOptions {
        quick: true,
        prefix: SMOKE_PREFIX.to_owned(),
        output_dir: paths::target_dir().join("bench-smoke"),
    };
    let results = run_with(artifacts, &options)?;
    let problems = report::problems(&results);
    if !problems.is_empty() {
        bail!(
            "the quick benchmark is incomplete:\n  - {}",
            problems.join("\n  - ")
        );
    }
    println!(
        "bench smoke: every row present, every variant served requests without errors ({})",
        options.output_dir.display()
    );
    Ok(())
}

/// Measures with the built `artifacts` and writes the report.
fn run_with(artifacts: &Artifacts, options: &BenchOptions) -> Result<Results> {
    let started = Instant::now();
    let started_at = utc_now();
    fs::create_dir_all(&options.output_dir)
        .with_context(|| format!("creating {}", options.output_dir.display()))?;
    let files = ReportFiles::in_dir(&options.output_dir);
    let machine = Machine::describe();

    println!("bench: micro benchmark (BPF_PROG_TEST_RUN, Maglev, flow table, publish path)");
    let micro = micro::run(
        &artifacts.ebpf_object,
        options.quick,
        &options.output_dir.join("microbench.json"),
    )?;
    stop_if_interrupted()?;

    let settings = if options.quick {
        E2eSettings::quick()
    } else {
        E2eSettings::full()
    };
    let e2e_runs = end_to_end(artifacts, options, &settings)?;
    stop_if_interrupted()?;
    let active_active_prefix = format!("{}a-", options.prefix.trim_end_matches('-'));
    let active_active_runs = active_active::run(artifacts, &active_active_prefix, &settings)?;

    let results = Results {
        command: if options.quick {
            "cargo xtask bench --quick".to_owned()
        } else {
            "cargo xtask bench".to_owned()
        },
        quick: options.quick,
        started_at,
        wall_secs: started.elapsed().as_secs_f64(),
        machine,
        micro_rows: micro.rows()?,
        micro,
        e2e_settings: settings,
        e2e_summary: e2e::summarize(&e2e_runs),
        e2e_runs,
        active_active_summary: active_active::summarize(&active_active_runs),
        active_active_runs,
    };
    let markdown = report::write(&files, &results)?;
    println!("\n{markdown}");
    println!(
        "bench: wrote {}, {}, {}, {}",
        files.markdown.display(),
        files.json.display(),
        files.e2e_chart.display(),
        files.micro_chart.display()
    );
    Ok(results)
}

/// Builds the lab, runs every round, and removes the lab (also on error).
fn end_to_end(
    artifacts: &Artifacts,
    options: &BenchOptions,
    settings: &E2eSettings,
) -> Result<Vec<RunRecord>> {
    if lab::exists(&options.prefix)? {
        println!(
            "bench: removing the leftover lab {}* of an earlier run",
            options.prefix
        );
        lab::teardown(&options.prefix)?;
    }
    println!("bench: bringing up the lab {}*", options.prefix);
    let lab = Lab::up(&LabOptions {
        ebpf_object: artifacts.ebpf_object.clone(),
        ..LabOptions::new(&options.prefix)
    })?;
    network::prepare(&lab)?;
    let files = variants::Files::write(&lab, &artifacts.lb_binary)?;
    println!(
        "bench: {} round(s) x {} variants x 2 modes, {} s each",
        settings.rounds,
        variants::Variant::ALL.len(),
        settings.duration_secs
    );
    let records = e2e::run(&lab, &files, settings)?;
    let removed = lab.down()?;
    println!(
        "bench: lab removed ({} namespaces)",
        removed.namespaces_removed.len()
    );
    Ok(records)
}

fn stop_if_interrupted() -> Result<()> {
    if interrupt::requested() {
        bail!("interrupted");
    }
    Ok(())
}

/// The current time in UTC, e.g. `2025-11-25 10:42 UTC` (from `date`).
fn utc_now() -> String {
    cmd::output(Command::new("date").args(["--utc", "+%Y-%m-%d %H:%M UTC"]))
        .map(|date| date.trim().to_owned())
        .unwrap_or_else(|_| "unknown date".to_owned())
}
