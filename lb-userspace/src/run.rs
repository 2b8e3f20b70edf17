//! `lb run`: validates the configuration, resolves the backends, loads and
//! programs the data path, attaches it, serves until SIGINT or SIGTERM, then
//! detaches and logs the final counters.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::Context as _;
use futures::future::try_join_all;
use lb_common::maps::{Reason, XDP_ACTION_NAMES};
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::config::{self, Config};
use crate::dataplane::{Dataplane, LoadOptions};
use crate::neighbour::{self, Neighbour, Resolver};
use crate::reconcile::{BackendState, Layout, Reconciler};

/// Runs the load balancer described by the file at `config_path` until a
/// shutdown signal. A configuration error returns before anything in the
/// kernel is touched.
pub async fn run(config_path: &Path) -> anyhow::Result<()> {
    let config = config::load(config_path)?;
    // Installed first, so that a signal received while starting up is not
    // fatal: it is handled as soon as the data path serves.
    let shutdown = ShutdownSignals::install()?;
    tracing::info!(
        file = %config_path.display(),
        services = config.services.len(),
        backends = config.backend_count(),
        "configuration valid"
    );
    for service in &config.services {
        tracing::info!(
            service = %service.name,
            endpoint = %format_args!("{}:{}/{}", service.vip, service.port, service.protocol),
            scheduler = %service.scheduler,
            forwarding = %service.forwarding,
            backends = service.backends.len(),
            "service"
        );
    }
    let resolver = Resolver::new()?;
    let interface = resolver.interface(&config.global.interface).await?;
    let neighbours = resolve_backends(&resolver, &config).await?;
    drop(resolver);

    let mut dataplane = Dataplane::load(&LoadOptions {
        flow_table_size: config.global.flow_table_size,
        max_services: config.global.max_services,
        max_backends: config.global.max_backends,
        table_size: config.global.maglev_table_size,
    })
    .context("loading the XDP data path")?;
    let layout = Layout::new(&config);
    // Health checks are not there yet: every backend starts (and stays) up.
    let states = vec![BackendState::Up; layout.backend_count()];
    let mut reconciler = Reconciler::new(layout, neighbours, config.global.maglev_table_size);
    let writes = reconciler
        .reconcile(&mut dataplane, &states)
        .context("programming the data path")?;
    tracing::debug!(writes, "maps programmed");

    let mode = dataplane.attach(&interface.name)?;
    tracing::info!(
        "lb ready: serving {} service(s) with {} backend(s) on {} ({mode} mode)",
        config.services.len(),
        config.backend_count(),
        interface.name,
    );

    let signal = shutdown.recv().await;
    tracing::info!(signal, "shutting down");
    dataplane.detach();
    log_counters(&dataplane, reconciler.layout());
    tracing::info!("lb stopped");
    Ok(())
}

/// Resolves every distinct backend address at once.
async fn resolve_backends(
    resolver: &Resolver,
    config: &Config,
) -> anyhow::Result<HashMap<Ipv4Addr, Neighbour>> {
    let mut addresses: Vec<Ipv4Addr> = config
        .services
        .iter()
        .flat_map(|s| s.backends.iter().map(|b| b.address))
        .collect();
    addresses.sort_unstable();
    addresses.dedup();
    let resolved = try_join_all(addresses.iter().map(|&address| resolver.resolve(address)))
        .await
        .context("resolving the backends' MAC addresses (dsr-l2)")?;
    for (address, neighbour) in addresses.iter().zip(&resolved) {
        tracing::info!(
            backend = %address,
            mac = %neighbour::format_mac(&neighbour.mac),
            interface = %neighbour.interface.name,
            "backend resolved"
        );
    }
    Ok(addresses.into_iter().zip(resolved).collect())
}

/// SIGINT and SIGTERM, caught instead of ending the process.
struct ShutdownSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl ShutdownSignals {
    fn install() -> anyhow::Result<Self> {
        Ok(ShutdownSignals {
            interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            terminate: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
        })
    }

    /// Waits for the first of them and returns its name.
    async fn recv(mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

/// Logs the counters of every service and backend, the packets per XDP
/// action and the non-zero pass/drop reasons.
fn log_counters(dataplane: &Dataplane, layout: &Layout) {
    for service in &layout.services {
        match dataplane.service_counters(service.id) {
            Ok(c) => tracing::info!(
                service = %service.name,
                packets = c.packets,
                bytes = c.bytes,
                new_flows = c.new_flows,
                "service counters"
            ),
            Err(error) => {
                tracing::warn!(service = %service.name, %error, "reading service counters")
            }
        }
        for backend in &service.backends {
            match dataplane.backend_counters(backend.id) {
                Ok(c) => tracing::info!(
                    service = %service.name,
                    backend = %backend.name,
                    packets = c.packets,
                    bytes = c.bytes,
                    new_flows = c.new_flows,
                    "backend counters"
                ),
                Err(error) => tracing::warn!(
                    service = %service.name,
                    backend = %backend.name,
                    %error,
                    "reading backend counters"
                ),
            }
        }
    }
    match dataplane.action_counters() {
        Ok(actions) => {
            let actions: Vec<String> = XDP_ACTION_NAMES
                .iter()
                .zip(actions)
                .map(|(name, packets)| format!("{name}={packets}"))
                .collect();
            tracing::info!(actions = %actions.join(" "), "XDP action counters");
        }
        Err(error) => tracing::warn!(%error, "reading XDP action counters"),
    }
    match dataplane.reason_counters() {
        Ok(reasons) => {
            let reasons: Vec<String> = Reason::ALL
                .iter()
                .zip(reasons)
                .filter(|(_, packets)| *packets > 0)
                .map(|(reason, packets)| format!("{}={packets}", reason.name()))
                .collect();
            let reasons = if reasons.is_empty() {
                "none".to_owned()
            } else {
                reasons.join(" ")
            };
            tracing::info!(%reasons, "pass/drop reason counters");
        }
        Err(error) => tracing::warn!(%error, "reading reason counters"),
    }
}
