//! `cargo xtask fuzz`: the differential test of the data path at any size.
//! Runs the `differential` binary of the tests crate (which owns the
//! harness), which holds the loaded XDP program against the reference model
//! in `lb-common` on `packets` generated packets and prints every
//! disagreement as a fixture ready to paste into `tests/tests/fixtures.rs`.

use std::process::Command;

use anyhow::{bail, Result};

use crate::{bootstrap, build, cmd, paths};

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct FuzzOptions {
    /// Packets in all.
    pub packets: usize,
    /// Seed of the generators: the same seed gives the same packets.
    pub seed: u64,
}

/// Builds the eBPF object and runs the differential harness on it.
pub fn run(options: &FuzzOptions) -> Result<()> {
    if !bootstrap::is_root() {
        bail!("cargo xtask fuzz needs root: it loads the XDP program");
    }
    let ebpf_object = build::ebpf(bootstrap::run()?)?;
    let mut command = Command::new("cargo");
    command
        .args([
            "run",
            "--release",
            "--quiet",
            "--package",
            "lb-tests",
            "--bin",
            "differential",
            "--",
        ])
        .arg("--packets")
        .arg(options.packets.to_string())
        .arg("--seed")
        .arg(options.seed.to_string())
        .current_dir(paths::workspace_root())
        .env(paths::EBPF_OBJECT_ENV, &ebpf_object);
    cmd::run(&mut command)?;
    Ok(())
}
