//! `differential`: the differential test of the data path at any size, run
//! by `cargo xtask fuzz --packets N --seed S` (needs root).
//!
//! Prints the run's summary and every disagreement as a fixture ready to
//! paste into `tests/tests/fixtures.rs`; exits non-zero if there was any.

use anyhow::{bail, Result};
use clap::Parser;
use lb_tests::differential::{self, RunOptions};

/// Runs generated packets through the loaded XDP program and the reference
/// model and reports where they disagree.
#[derive(Debug, Parser)]
struct Args {
    /// Packets to run.
    #[arg(long, default_value_t = differential::CI_PACKETS)]
    packets: usize,
    /// Seed of the generators.
    #[arg(long, default_value_t = differential::CI_SEED)]
    seed: u64,
    /// Disagreements printed in full (the rest are counted).
    #[arg(long, default_value_t = 20)]
    max_reported: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let report = differential::run(&RunOptions {
        max_reported: args.max_reported,
        ..RunOptions::new(args.packets, args.seed)
    })?;
    for disagreement in &report.disagreements {
        println!("{}", disagreement.source(report.seed));
    }
    println!("{report}");
    if report.disagreement_count > 0 {
        bail!(
            "{} disagreements between the program and the model (first {} printed above)",
            report.disagreement_count,
            report.disagreements.len()
        );
    }
    Ok(())
}
