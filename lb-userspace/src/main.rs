//! The `lb` command line: `lb run --config FILE`, `lb check-config FILE`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// An XDP layer-4 (TCP/UDP) load balancer and its controller.
#[derive(Debug, Parser)]
#[command(name = "lb", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load, program and attach the data path, then serve until SIGINT or SIGTERM.
    ///
    /// Logs go to stderr, filtered by RUST_LOG (default: info). A line
    /// containing "lb ready" is logged once the data path serves.
    Run {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration file without touching the system.
    CheckConfig {
        /// The TOML configuration file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => run(&config),
        Command::CheckConfig { file } => check_config(&file),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: &std::path::Path) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(lb::run::run(config))
}

fn check_config(file: &std::path::Path) -> anyhow::Result<()> {
    let config = lb::config::load(file)?;
    println!(
        "{}: ok: {} service(s), {} backend(s), interface {}",
        file.display(),
        config.services.len(),
        config.backend_count(),
        config.global.interface,
    );
    Ok(())
}
