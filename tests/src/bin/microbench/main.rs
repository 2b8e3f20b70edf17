//! `microbench`: the micro benchmark of the XDP data path that `cargo xtask
//! bench` runs (needs root: it loads BPF programs).
//!
//! Measures, on one pinned CPU: the kernel-reported `BPF_PROG_TEST_RUN` time
//! per packet of each path through `lb_xdp` beside the `xdp_pass` and
//! `xdp_mac_swap` floors; Maglev table build times; the flow table's memory;
//! and the controller's publish path. Writes every raw figure as JSON to
//! `--output`.

mod affinity;
mod frames;
mod packet_paths;
mod report;
mod scale;
mod setup;

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::PathBuf;

use anyhow::{ensure, Context as _, Result};
use clap::Parser;

use packet_paths::Plan;
use report::MicroReport;

/// Micro benchmark of the XDP data path; writes JSON.
#[derive(Debug, Parser)]
struct Args {
    /// A short run: fewer rounds, calls and repetitions.
    #[arg(long)]
    quick: bool,
    /// Where to write the JSON report.
    #[arg(long)]
    output: PathBuf,
}

/// Sizes of a run.
struct Sizes {
    packets: Plan,
    maglev_runs: usize,
    publish_runs: usize,
}

impl Sizes {
    fn new(quick: bool) -> Self {
        if quick {
            Sizes {
                packets: Plan {
                    rounds: 3,
                    calls_per_block: 400,
                    warmup_calls: 100,
                },
                maglev_runs: 3,
                publish_runs: 2,
            }
        } else {
            Sizes {
                packets: Plan {
                    rounds: 15,
                    calls_per_block: 2000,
                    warmup_calls: 500,
                },
                maglev_runs: 11,
                publish_runs: 8,
            }
        }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    ensure!(euid == 0, "microbench loads BPF programs and needs root");
    let sizes = Sizes::new(args.quick);
    let cpu = affinity::pin_to_last_allowed_cpu().context("pinning to one CPU")?;
    let bpf_stats_enabled = fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
        .context("reading kernel.bpf_stats_enabled")?
        .trim()
        == "1";
    eprintln!(
        "microbench: pinned to CPU {cpu}; {} rounds of {} calls per path",
        sizes.packets.rounds, sizes.packets.calls_per_block
    );

    let (packet_paths, dataplane) = packet_paths::measure(&sizes.packets)?;
    let flow_table = scale::flow_table_memory(&dataplane)?;
    drop(dataplane);
    let maglev_build = scale::maglev_build(sizes.maglev_runs)?;
    eprintln!("microbench: Maglev builds done");
    let publish = scale::publish(sizes.publish_runs)?;

    let report = MicroReport {
        cpu,
        bpf_stats_enabled,
        rounds: sizes.packets.rounds,
        calls_per_block: sizes.packets.calls_per_block,
        packet_paths,
        maglev_build,
        flow_table,
        publish,
    };
    let file = File::create(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    serde_json::to_writer_pretty(BufWriter::new(file), &report)
        .with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!("microbench: wrote {}", args.output.display());
    Ok(())
}
