//! `cargo xtask`: the command line over the xtask library.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand, ValueEnum};

use xtask::bench::{self, BenchOptions};
use xtask::fuzz::{self, FuzzOptions};
use xtask::lab::{self, Lab, LabOptions};
use xtask::run::DemoOptions;
use xtask::{bootstrap, build, interrupt, paths, run, suite};

/// Bootstrap, build, run and test the XDP load balancer.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install what is missing (Debian packages, bpf-linker, bpffs).
    Bootstrap,
    /// Build the eBPF object and the `lb` binary.
    Build,
    /// Without --config: the demo in the lab (the lb pair on lb1 and lb2,
    /// VRRP between them, requests through the VIP, until Ctrl-C). With
    /// --config: `lb run` on this host's interfaces.
    Run {
        /// Run `lb` with this configuration on the host's real interfaces.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Stop the demo after this many seconds instead of waiting for Ctrl-C.
        #[arg(long, value_name = "SECS")]
        duration: Option<u64>,
        /// Requests the demo sends through the VIP.
        #[arg(long, default_value_t = 30)]
        requests: usize,
        /// The demo service's scheduler.
        #[arg(long, value_enum, default_value_t = SchedulerArg::Maglev)]
        scheduler: SchedulerArg,
        /// Name prefix of the demo's lab.
        #[arg(long, default_value = lab::DEFAULT_PREFIX)]
        prefix: String,
        /// How the demo's two LB nodes share the VIP: `vrrp` (active-passive)
        /// or `bgp` (active-active behind an ECMP router, BIRD on each node).
        #[arg(long, value_enum, default_value_t = HaArg::Vrrp)]
        ha: HaArg,
    },
    /// Every check: rustfmt, clippy (with `lb-ebpf`), unit and root-only end-to-end tests.
    Test,
    /// Benchmarks: micro (ns per packet against the floors) and end to end
    /// (wrk through the lab: direct, HAProxy, nftables, ours); report in
    /// target/bench/.
    Bench {
        /// A short smoke run (one round, short runs; about a minute).
        #[arg(long)]
        quick: bool,
        /// Name prefix of the benchmark's lab.
        #[arg(long, default_value = bench::DEFAULT_PREFIX)]
        prefix: String,
    },
    /// The differential test at any size: generated packets through the
    /// loaded XDP program and the reference model; prints every disagreement
    /// as a fixture ready to paste.
    Fuzz {
        /// Packets to run.
        #[arg(long, default_value_t = 200_000)]
        packets: usize,
        /// Seed of the generators (the same seed gives the same packets).
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Bring the lab up or down by hand.
    Lab {
        #[command(subcommand)]
        action: LabAction,
    },
}

#[derive(Debug, Subcommand)]
enum LabAction {
    /// Build the lab and leave it running.
    Up {
        /// Name prefix of the lab.
        #[arg(long, default_value = lab::DEFAULT_PREFIX)]
        prefix: String,
        /// eBPF object holding `xdp_pass` (default: build lb-ebpf).
        #[arg(long)]
        ebpf_object: Option<PathBuf>,
        /// Do not put the VIP on lb1 (when VRRP manages it).
        #[arg(long)]
        no_static_vip: bool,
    },
    /// Remove the lab (also the leftovers of a crashed run).
    Down {
        /// Name prefix of the lab.
        #[arg(long, default_value = lab::DEFAULT_PREFIX)]
        prefix: String,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum SchedulerArg {
    Maglev,
    RoundRobin,
    Source,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum HaArg {
    Vrrp,
    Bgp,
}

impl From<HaArg> for run::HaMode {
    fn from(arg: HaArg) -> Self {
        match arg {
            HaArg::Vrrp => run::HaMode::Vrrp,
            HaArg::Bgp => run::HaMode::Bgp,
        }
    }
}

impl From<SchedulerArg> for lab::Scheduler {
    fn from(arg: SchedulerArg) -> Self {
        match arg {
            SchedulerArg::Maglev => lab::Scheduler::Maglev,
            SchedulerArg::RoundRobin => lab::Scheduler::RoundRobin,
            SchedulerArg::Source => lab::Scheduler::Source,
        }
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse_from(without_separator_after_run(std::env::args_os().collect()));
    interrupt::install()?;
    match cli.command {
        Task::Bootstrap => {
            bootstrap::run()?;
        }
        Task::Build => {
            let artifacts = build::all(bootstrap::run()?)?;
            println!("built {}", artifacts.ebpf_object.display());
            println!("built {}", artifacts.lb_binary.display());
        }
        Task::Run {
            config: Some(config),
            ..
        } => run::on_host(&config)?,
        Task::Run {
            config: None,
            duration,
            requests,
            scheduler,
            prefix,
            ha,
        } => run::in_lab(&DemoOptions {
            prefix,
            scheduler: scheduler.into(),
            requests,
            duration: duration.map(Duration::from_secs),
            ha: ha.into(),
        })?,
        Task::Test => suite::run()?,
        Task::Bench { quick, prefix } => {
            bench::run(&BenchOptions {
                prefix,
                ..BenchOptions::new(quick)
            })?;
        }
        Task::Fuzz { packets, seed } => fuzz::run(&FuzzOptions { packets, seed })?,
        Task::Lab { action } => lab_command(action)?,
    }
    Ok(())
}

fn lab_command(action: LabAction) -> Result<()> {
    if !bootstrap::is_root() {
        bail!("the lab needs root: it creates network namespaces and attaches XDP programs");
    }
    match action {
        LabAction::Up {
            prefix,
            ebpf_object,
            no_static_vip,
        } => {
            let toolchain = bootstrap::run()?;
            let ebpf_object = match ebpf_object {
                Some(object) => object,
                None => build::ebpf(toolchain)?,
            };
            let lab = Lab::up(&LabOptions {
                prefix: prefix.clone(),
                ebpf_object,
                static_vip_on_lb1: !no_static_vip,
            })?;
            let config = lab.write_lb_config(lab::Scheduler::Maglev)?;
            lab.write_lb_config(lab::Scheduler::RoundRobin)?;
            print_lab_usage(&lab, &config);
            if no_static_vip {
                // VRRP manages the VIP: the pair's commands.
                for node in lab::Node::LBS {
                    let config = lab.write_pair_config(
                        node,
                        lab::Scheduler::Maglev,
                        &lab::PairOptions {
                            https: true,
                            ..lab::PairOptions::default()
                        },
                    )?;
                    println!(
                        "  pair:       ip netns exec {} {} run --config {} --pin-dir {}",
                        lab.namespace(node),
                        paths::lb_binary().display(),
                        config.display(),
                        lab.lb_pin_dir(node).display()
                    );
                }
                println!(
                    "  pair HTTPS: {}",
                    lab.client_curl_line(&lab::Target::vip_https(&lab.ca_certificate()))
                );
            }
            lab.keep();
        }
        LabAction::Down { prefix } => {
            let report = lab::teardown(&prefix)?;
            println!(
                "lab {prefix}: removed {} namespaces, stopped {} processes, removed {} pins",
                report.namespaces_removed.len(),
                report.processes_stopped,
                report.pins_removed
            );
        }
    }
    Ok(())
}

fn print_lab_usage(lab: &Lab, lb_config: &std::path::Path) {
    let client = lab.namespace(lab::Node::Client);
    let lb1 = lab.namespace(lab::Node::Lb1);
    println!("lab {}: up", lab.prefix());
    println!(
        "  namespaces: {}{{client,switch,lb1,lb2,web1,web2,web3}}",
        lab.prefix()
    );
    println!("  files:      {}", lab.run_dir().display());
    println!("  backends:   ip netns exec {client} curl -s http://10.0.0.1/");
    // The certificate is for the VIP and TLS_NAME: a backend by that name.
    let web1 = lab::Node::Web(1)
        .address()
        .expect("web servers have addresses");
    println!(
        "  HTTPS:      {}",
        lab.client_curl_line(&lab::Target::https_by_name(
            lab::TLS_NAME,
            web1,
            &lab.ca_certificate()
        ))
    );
    println!(
        "  lb:         ip netns exec {lb1} {} run --config {} --pin-dir {}",
        paths::lb_binary().display(),
        lb_config.display(),
        lab.lb_pin_dir(lab::Node::Lb1).display()
    );
    println!(
        "  via VIP:    ip netns exec {client} curl -s {}",
        lab::vip_url()
    );
    println!(
        "  remove:     cargo xtask lab down --prefix {}",
        lab.prefix()
    );
}

/// `cargo xtask run -- --config F` reaches us as `run -- --config F`; drop
/// that `--` so it means the same as `cargo xtask run --config F`.
fn without_separator_after_run(mut args: Vec<OsString>) -> Vec<OsString> {
    if args.get(1).is_some_and(|arg| arg == "run") && args.get(2).is_some_and(|arg| arg == "--") {
        args.remove(2);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_runs_vrrp_unless_asked_for_bgp() {
        let ha = |list: &[&str]| match Cli::try_parse_from(args(list)).unwrap().command {
            Task::Run { ha, .. } => ha,
            other => panic!("parsed {other:?}"),
        };
        assert_eq!(ha(&["xtask", "run"]), HaArg::Vrrp);
        assert_eq!(ha(&["xtask", "run", "--ha", "bgp"]), HaArg::Bgp);
        assert!(Cli::try_parse_from(args(&["xtask", "run", "--ha", "ipvs"])).is_err());
    }

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn both_spellings_of_run_with_config_parse_alike() {
        for spelling in [
            &["xtask", "run", "--config", "lb.toml"][..],
            &["xtask", "run", "--", "--config", "lb.toml"][..],
        ] {
            let cli = Cli::parse_from(without_separator_after_run(args(spelling)));
            match cli.command {
                Task::Run { config, .. } => assert_eq!(config, Some(PathBuf::from("lb.toml"))),
                other => panic!("parsed {other:?}"),
            }
        }
    }

    #[test]
    fn fuzz_takes_packets_and_seed() {
        let cli = Cli::parse_from(args(&["xtask", "fuzz", "--packets", "500", "--seed", "7"]));
        match cli.command {
            Task::Fuzz { packets, seed } => assert_eq!((packets, seed), (500, 7)),
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
