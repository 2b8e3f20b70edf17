//! The `lb` command line: `lb run`, `lb check-config`, `lb cleanup`, and `lb
//! status` / `lb backend ...` / `lb reload`, which talk to a running `lb run`
//! through its control API.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use lb::api::ApiClient;
use lb::cleanup::Cleanup;
use lb::domain::AdminAction;
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
    /// Load, program and attach the data path, then serve until SIGINT or
    /// SIGTERM; SIGHUP reloads the configuration file (like `lb reload`).
    ///
    /// Logs go to stderr, filtered by RUST_LOG (default: info). A line
    /// containing "lb ready" is logged once the data path serves.
    Run {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Pin the data path here instead of global.pin_dir (a directory
        /// on a bpffs; one per lb instance). Same rules as global.pin_dir:
        /// an absolute path without '.' or '..', or "" for no pinning.
        #[arg(long)]
        pin_dir: Option<PathBuf>,
    },
    /// Validate a configuration file without touching the system; prints
    /// its hash, as `lb status` shows the running file's.
    CheckConfig {
        /// The TOML configuration file.
        file: PathBuf,
    },
    /// Have the running `lb` re-read its configuration file and apply what
    /// changed; refused, with nothing changed, if the file is invalid or
    /// changes a setting that needs a restart.
    Reload {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Remove the data path a stopped `lb` left pinned (XDP link, flow and
    /// backends tables); refused while an `lb` runs on it.
    Cleanup {
        #[command(flatten)]
        pins: PinsArgs,
    },
    /// Show the running `lb`'s VRRP state (with [vrrp]) and every service
    /// and backend: state, health, since when and why, weight and traffic.
    Status {
        #[command(flatten)]
        api: ApiArgs,
        /// Print the API's JSON document instead of the table.
        #[arg(long, conflicts_with = "watch")]
        json: bool,
        /// Refresh the table in place every SECS seconds (default 2), with
        /// the rates since the previous refresh, until Ctrl-C.
        #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "2",
              value_parser = clap::value_parser!(u64).range(1..=3600))]
        watch: Option<u64>,
    },
    /// Change a backend of the running `lb` (until it restarts).
    Backend {
        #[command(subcommand)]
        action: BackendCommand,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Debug, Args)]
struct ApiArgs {
    /// Address of the control API (global.api of the running lb).
    #[arg(long, global = true, default_value_t = lb::config::DEFAULT_API)]
    api: SocketAddr,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct PinsArgs {
    /// The pin directory (as `lb run --pin-dir`).
    #[arg(long)]
    pin_dir: Option<PathBuf>,
    /// The configuration whose global.pin_dir to clean up.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum BackendCommand {
    /// No new flows; established flows stay on it until they end. Returns
    /// at once, or with --wait once its last active flow has ended.
    Drain {
        #[command(flatten)]
        name: BackendName,
        /// Wait until it has no active flow left (flows seen within the
        /// idle timeout whose client sent no FIN or RST), printing the count
        /// as it falls.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this long (`30s`, `10m`) and exit
        /// non-zero; default: wait as long as it takes.
        #[arg(long, requires = "wait", value_parser = humantime::parse_duration)]
        timeout: Option<Duration>,
    },
    /// No new flows; established flows move to a serving backend.
    Disable(BackendName),
    /// Undo drain or disable: its health checks decide again.
    Enable(BackendName),
    /// Set its share of new flows (1..=100).
    Weight {
        #[command(flatten)]
        name: BackendName,
        weight: u32,
    },
}

#[derive(Debug, Args)]
struct BackendName {
    /// The service's name in the configuration.
    service: String,
    /// The backend's name within the service.
    backend: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config, pin_dir } => run(&config, pin_dir.as_deref()),
        Command::CheckConfig { file } => check_config(&file),
        Command::Reload { api } => reload(api.api),
        Command::Cleanup { pins } => cleanup(pins),
        Command::Status { api, json, watch } => match watch {
            Some(seconds) => watch_status(api.api, Duration::from_secs(seconds)),
            None => status(api.api, json),
        },
        Command::Backend { action, api } => backend(api.api, action),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: &Path, pin_dir: Option<&Path>) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour only on a terminal, so log files stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(lb::run::run(config, pin_dir))
}

fn check_config(file: &Path) -> anyhow::Result<()> {
    let loaded = lb::config::load(file)?;
    let config = &loaded.config;
    println!(
        "{}: ok: {} service(s), {} backend(s), interface {}, hash {}",
        file.display(),
        config.services.len(),
        config.backend_count(),
        config.global.interface,
        loaded.hash,
    );
    Ok(())
}

fn cleanup(pins: PinsArgs) -> anyhow::Result<()> {
    let pin_dir = match (pins.pin_dir, pins.config) {
        (Some(dir), _) => Some(lb::config::validate_pin_dir(&dir)?),
        (None, Some(file)) => lb::config::load(&file)?.config.global.pin_dir,
        (None, None) => unreachable!("clap requires --pin-dir or --config"),
    };
    let Some(dir) = pin_dir else {
        println!("global.pin_dir is \"\" (pinning off): nothing is pinned, nothing to remove");
        return Ok(());
    };
    let shown = dir.display();
    match lb::cleanup::clean_up(&dir).with_context(|| format!("cleaning up {shown}"))? {
        Cleanup::NoDirectory => println!("nothing pinned in {shown}: nothing to remove"),
        Cleanup::Removed(pins) if pins.is_empty() => {
            println!("nothing pinned in {shown}; removed the empty directory")
        }
        Cleanup::Removed(pins) => {
            for pin in pins {
                println!("removed {}", dir.join(pin).display());
            }
            println!("removed {shown}: the data path pinned there is gone (a pinned XDP link detaches its program)");
        }
    }
    Ok(())
}

/// Runs one API call on a small runtime of its own.
fn call<T>(work: impl std::future::Future<Output = T>) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(work))
}

fn status(api: SocketAddr, json: bool) -> anyhow::Result<()> {
    let report = call(ApiClient::new(api).status())??;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", lb::status_table::render(&report, SystemTime::now()));
    }
    Ok(())
}

/// `lb status --watch`: the table with rates, redrawn every `every` until
/// Ctrl-C; fails (non-zero) as soon as the daemon cannot be reached.
fn watch_status(api: SocketAddr, every: Duration) -> anyhow::Result<()> {
    let client = ApiClient::new(api);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut previous: Option<(lb::api::model::StatusReport, std::time::Instant)> = None;
        loop {
            let report = client.status().await?;
            let taken = std::time::Instant::now();
            let rates = previous
                .as_ref()
                .map_or_else(Default::default, |(earlier, at)| {
                    lb::status_table::Rates::between(earlier, &report, taken - *at)
                });
            // Home and clear, then the frame: refreshed in place.
            print!(
                "\x1b[H\x1b[2J{}\n(every {}s; Ctrl-C stops)\n",
                lb::status_table::render_with_rates(&report, &rates, SystemTime::now()),
                every.as_secs()
            );
            previous = Some((report, taken));
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
        }
    })
}

fn reload(api: SocketAddr) -> anyhow::Result<()> {
    let outcome = call(ApiClient::new(api).reload())?.context("reload failed")?;
    println!(
        "reloaded: config hash {}; {}",
        outcome.hash, outcome.changes
    );
    Ok(())
}

fn backend(api: SocketAddr, command: BackendCommand) -> anyhow::Result<()> {
    let mut wait = None;
    let (name, action) = match command {
        BackendCommand::Drain {
            name,
            wait: true,
            timeout,
        } => {
            wait = Some(timeout);
            (name, AdminAction::Drain)
        }
        BackendCommand::Drain { name, .. } => (name, AdminAction::Drain),
        BackendCommand::Disable(name) => (name, AdminAction::Disable),
        BackendCommand::Enable(name) => (name, AdminAction::Enable),
        BackendCommand::Weight { name, weight } => (name, AdminAction::Weight(weight)),
    };
    let status = call(ApiClient::new(api).backend(&name.service, &name.backend, action))??;
    println!(
        "{}/{}: {} (health {}, weight {}): {}",
        name.service,
        name.backend,
        status.state,
        lb::status_table::health(status.health),
        status.weight,
        status.reason
    );
    match wait {
        Some(timeout) => call(wait_until_drained(api, &name, timeout))?,
        None => Ok(()),
    }
}

/// How often `drain --wait` reads the status.
const DRAIN_POLL: Duration = Duration::from_secs(1);

/// Polls the status until `name` has no active flow at a census taken after
/// the drain, printing each new count; fails once `timeout` has passed, or
/// if the backend stops draining.
async fn wait_until_drained(
    api: SocketAddr,
    name: &BackendName,
    timeout: Option<Duration>,
) -> anyhow::Result<()> {
    let client = ApiClient::new(api);
    let drained_at = SystemTime::now();
    let started = tokio::time::Instant::now();
    let mut shown = None;
    loop {
        let report = client.status().await?;
        let backend = report
            .services
            .iter()
            .filter(|service| service.name == name.service)
            .flat_map(|service| &service.backends)
            .find(|backend| backend.name == name.backend)
            .with_context(|| format!("{}/{} is gone", name.service, name.backend))?;
        anyhow::ensure!(
            backend.state == lb::domain::BackendState::Draining,
            "{}/{} is no longer draining: {} ({})",
            name.service,
            name.backend,
            backend.state,
            backend.reason
        );
        let counted_after_drain = report
            .flows
            .counted_at
            .is_some_and(|counted| counted >= drained_at);
        if counted_after_drain {
            if backend.active_flows == 0 {
                println!(
                    "{}/{}: drained, no active flow left",
                    name.service, name.backend
                );
                return Ok(());
            }
            if shown != Some(backend.active_flows) {
                println!(
                    "{}/{}: {} active flows",
                    name.service, name.backend, backend.active_flows
                );
                shown = Some(backend.active_flows);
            }
        }
        if let Some(timeout) = timeout {
            anyhow::ensure!(
                started.elapsed() < timeout,
                "{}/{}: still {} active flows after {}",
                name.service,
                name.backend,
                backend.active_flows,
                humantime::format_duration(timeout)
            );
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
}
