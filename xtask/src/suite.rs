//! `cargo xtask test`: every check the project has, the root-only ones
//! included, with a summary; fails if any fails.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::bootstrap::EbpfToolchain;
use crate::build::Artifacts;
use crate::{bench, bootstrap, build, cmd, interrupt, paths};

/// One check: a named cargo command.
struct Check {
    name: &'static str,
    command: Command,
}

/// Runs the suite: bootstrap, build, then rustfmt, clippy (the workspace and
/// `lb-ebpf`), the tests and the benchmark's smoke run.
pub fn run() -> Result<()> {
    if !bootstrap::is_root() {
        bail!("cargo xtask test needs root: it loads XDP programs and creates network namespaces");
    }
    let toolchain = bootstrap::run()?;
    let artifacts = build::all(toolchain)?;

    let mut results = Vec::new();
    for mut check in checks(&artifacts, toolchain) {
        if interrupt::requested() {
            bail!("interrupted");
        }
        println!("test: {} ({})", check.name, cmd::describe(&check.command));
        let started = Instant::now();
        let outcome = cmd::run(&mut check.command);
        if let Err(error) = &outcome {
            eprintln!("test: {} FAILED: {error}", check.name);
        }
        results.push((check.name, outcome.is_ok(), started.elapsed()));
    }
    if !interrupt::requested() {
        // Last, on a machine no other check is loading.
        let name = "bench --quick (smoke)";
        println!("test: {name}");
        let started = Instant::now();
        let outcome = bench::smoke_test(&artifacts);
        if let Err(error) = &outcome {
            eprintln!("test: {name} FAILED: {error:#}");
        }
        results.push((name, outcome.is_ok(), started.elapsed()));
    }

    println!("\nsummary:");
    for (name, passed, took) in &results {
        let verdict = if *passed { "ok" } else { "FAILED" };
        println!("  {verdict:<7} {name:<22} {}", seconds(*took));
    }
    let failed = results.iter().filter(|(_, passed, _)| !passed).count();
    if failed > 0 {
        bail!("{failed} of {} checks failed", results.len());
    }
    println!("all {} checks passed", results.len());
    Ok(())
}

fn checks(artifacts: &Artifacts, toolchain: EbpfToolchain) -> Vec<Check> {
    let root = paths::workspace_root();
    let cargo = |args: &[&str]| {
        let mut command = Command::new("cargo");
        command
            .args(args)
            .current_dir(&root)
            .env(paths::EBPF_OBJECT_ENV, &artifacts.ebpf_object)
            .env(paths::LB_BINARY_ENV, &artifacts.lb_binary);
        command
    };
    vec![
        Check {
            name: "rustfmt",
            command: cargo(&["fmt", "--all", "--", "--check"]),
        },
        Check {
            name: "rustfmt (lb-ebpf)",
            // Its own workspace; lb-common is checked with the main one.
            command: cargo(&[
                "fmt",
                "--manifest-path",
                "lb-ebpf/Cargo.toml",
                "--",
                "--check",
            ]),
        },
        Check {
            name: "clippy",
            command: cargo(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]),
        },
        Check {
            name: "clippy (lb-ebpf)",
            // Its own workspace and target, with the eBPF compiler route.
            command: build::ebpf_clippy(toolchain),
        },
        // Release, like the `lb` binary the end-to-end tests run, so the
        // dependencies built for it are reused.
        Check {
            name: "tests",
            command: cargo(&["test", "--workspace", "--release", "--no-fail-fast"]),
        },
    ]
}

fn seconds(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}
