//! `lb run`: validates the configuration, resolves the backends, loads and
//! programs the data path, attaches it, starts the health checks, the
//! controller, VRRP or the BGP announcer, the reloader, the neighbour watch
//! (the backends' MACs) and the control API,
//! serves (reloading on SIGHUP and `lb reload`) until SIGINT or SIGTERM,
//! then withdraws, detaches and logs the final counters.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use lb_common::maps::{Reason, XDP_ACTION_NAMES};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::oneshot;

use crate::api::server::{self as api_server, ApiLimits, ApiState, VrrpFeed};
use crate::config::{self, Config};
use crate::controller::layout::Layout;
use crate::controller::notify::BackendNotifier;
use crate::controller::Controller;
use crate::dataplane::{CounterMaps, CounterReader, Dataplane, PinDir};
use crate::ha::{self, HaNode};
use crate::hooks::HookFailures;
use crate::neighbour::{self, Interface, Neighbour, Resolver};
use crate::reload::Reloader;
use crate::{flows, pin_lock, pinned_restart};

/// How long the API gets to finish the requests in flight at shutdown.
const API_SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Runs the load balancer described by the file at `config_path` until a
/// shutdown signal; `pin_dir` overrides `global.pin_dir`. A configuration
/// error returns before anything in the kernel is touched.
pub async fn run(config_path: &Path, pin_dir: Option<&Path>) -> anyhow::Result<()> {
    let mut loaded = config::load(config_path)?;
    if let Some(dir) = pin_dir {
        loaded.config.global.pin_dir = Some(config::validate_pin_dir(dir)?);
    }
    // The reloader compares reloads with the file as loaded; this copy
    // starts the backends a pinned restart finds up as up.
    let mut config = loaded.config.clone();
    // Installed first, so that a signal received while starting up is not
    // fatal: it is handled as soon as the data path serves (a SIGHUP then
    // reloads the file, which changes nothing unless it changed).
    let shutdown = ShutdownSignals::install()?;
    let hangups = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    tracing::info!(
        file = %config_path.display(),
        services = config.services.len(),
        backends = config.backend_count(),
        "configuration valid"
    );
    for service in &config.services {
        let check = match &service.health {
            Some(check) => match check.port {
                Some(port) => format!("{} on port {port}", check.spec.probe.kind()),
                None => format!("{} on each backend's port", check.spec.probe.kind()),
            },
            None => "none (backends always up)".to_owned(),
        };
        tracing::info!(
            service = %service.name,
            endpoint = %format_args!("{}:{}/{}", service.vip, service.port, service.protocol),
            scheduler = %service.scheduler,
            forwarding = %service.forwarding,
            backends = service.backends.len(),
            %check,
            "service"
        );
    }
    let resolver = Resolver::new()?;
    let interface = resolver.interface(&config.global.interface).await?;
    let server_interface = match &config.global.server_interface {
        Some(name) => Some(
            resolver
                .interface(name)
                .await
                .context("global.server_interface")?,
        ),
        None => None,
    };
    let neighbours = resolver
        .resolve_all(&config.backend_addresses())
        .await
        .context("resolving the backends' MAC addresses (dsr-l2)")?;
    // Kept by the neighbour watch, which starts with these MACs.
    let watched = neighbours.clone();

    // Held until we return: one lb per pinned data path.
    let _pin_lock = config
        .global
        .pin_dir
        .as_deref()
        .map(pin_lock::acquire)
        .transpose()?;
    // Bound before the data path is touched: a port in use stops us early.
    let api_limits = ApiLimits::default();
    let api_listener = api_server::listen(config.global.api, &api_limits).with_context(|| {
        format!(
            "listening for the control API on {} (global.api)",
            config.global.api
        )
    })?;

    // Before the controller reads the backends' initial health.
    let pins = pinned_restart::prepare(&mut config).context("taking over the pinned data path")?;
    let hook_failures = HookFailures::default();
    let Started {
        mut controller,
        pair,
        announcer,
        mode,
    } = match start_data_path(
        &config,
        &interface,
        server_interface.as_ref(),
        neighbours,
        pins.as_ref(),
        &hook_failures,
    )
    .await
    {
        Ok(started) => started,
        Err(error) => {
            if let Some(pins) = &pins {
                pinned_restart::undo(pins);
            }
            return Err(error);
        }
    };
    let counters = controller.maps().counters().clone();
    let (census, flows) = flows::census_channel();
    let flow_census = tokio::spawn(flows::run(controller.maps().flow_table().clone(), census));
    controller.follow_flows(flows.clone());
    let reloader = Reloader::new(
        config_path,
        pin_dir.map(Path::to_owned),
        loaded,
        controller.config_updates(),
        SystemTime::now(),
    );

    let api_state = ApiState {
        snapshot: controller.subscribe(),
        admin: controller.admin_commands(),
        reload: reloader.commands(),
        config: reloader.status(),
        unknown_results: controller.unknown_results(),
        hook_failures: hook_failures.clone(),
        bgp: announcer.as_ref().map(ha::bgp::BgpNode::status),
        counters: counters.clone(),
        flows,
        vrrp: config
            .vrrp
            .as_ref()
            .zip(pair.as_ref())
            .map(|(settings, pair)| VrrpFeed {
                vrid: settings.instance.vrid,
                interface: settings.instance.interface.clone(),
                gateway_address: settings
                    .instance
                    .gateway
                    .as_ref()
                    .map(|gateway| gateway.address),
                configured_priority: settings.instance.priority,
                status: pair.status(),
            }),
    };
    let (stop_api, api_stopped) = oneshot::channel::<()>();
    let api_server = tokio::spawn(api_server::serve(
        api_listener,
        api_state,
        api_limits,
        async {
            // Either a stop or the sender dropped: stop both ways.
            let _ = api_stopped.await;
        },
    ));
    // Attached, sockets open: from here on only what running needs.
    crate::privilege::drop_to_runtime_set().context("dropping to the runtime capabilities")?;
    tracing::info!(
        "lb ready: serving {} service(s) with {} backend(s) on {} ({mode}); API on http://{}",
        config.services.len(),
        config.backend_count(),
        interface.name,
        config.global.api,
    );
    // systemd Type=notify (examples/systemd/lb.service); nothing without systemd.
    if let Err(error) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!(%error, "telling systemd we are ready");
    }

    let reloads = tokio::spawn(reloader.serve(hangups));
    let neighbour_watch = tokio::spawn(neighbour::watch::run(
        resolver,
        watched,
        controller.subscribe(),
        controller.mac_updates(),
    ));
    let (mut controller, signal) = controller.run(shutdown.recv()).await;
    tracing::info!(signal, "shutting down");
    // A reload in progress is dropped: the controller no longer applies one.
    reloads.abort();
    neighbour_watch.abort();
    flow_census.abort();
    // Withdrawn (or priority 0) first, while the data path still forwards.
    if let Some(announcer) = announcer {
        if let Err(error) = announcer.shutdown().await {
            tracing::error!(error = %format!("{error:#}"), "stopping the BGP announcer");
        }
    }
    if let Some(pair) = pair {
        if let Err(error) = pair.shutdown().await {
            tracing::error!(error = %format!("{error:#}"), "stopping VRRP");
        }
    }
    let _ = stop_api.send(());
    match tokio::time::timeout(API_SHUTDOWN_GRACE, api_server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(error))) => tracing::warn!(%error, "control API server failed"),
        Ok(Err(error)) => tracing::warn!(%error, "control API task failed"),
        Err(_) => tracing::warn!("control API still busy after {API_SHUTDOWN_GRACE:?}; leaving it"),
    }
    // No more changes: the hooks of those made run to their end, after the
    // handover, which never waits for them.
    controller.finish_hooks().await;
    pinned_restart::release(controller.maps_mut(), pins.as_ref());
    log_counters(&counters, controller.layout());
    tracing::info!("lb stopped");
    Ok(())
}

/// Loads and programs the data path, starts VRRP and attaches the data
/// path to `interface`. On failure nothing it started is left running: VRRP
/// is stopped (its VIPs removed) and the data path dropped, which detaches
/// it; the pins are for the caller ([`pinned_restart::undo`]).
/// What [`start_data_path`] started.
struct Started {
    controller: Controller<Dataplane>,
    pair: Option<HaNode>,
    announcer: Option<ha::bgp::BgpNode>,
    /// How the program ended up attached.
    mode: String,
}

async fn start_data_path(
    config: &Config,
    interface: &Interface,
    server_interface: Option<&Interface>,
    neighbours: HashMap<Ipv4Addr, Neighbour>,
    pins: Option<&PinDir>,
    hook_failures: &HookFailures,
) -> anyhow::Result<Started> {
    let dataplane = pinned_restart::load(&pinned_restart::load_options(config), pins)
        .context("loading the XDP data path")?;
    let mut controller =
        Controller::start(config, neighbours, dataplane).context("programming the data path")?;
    controller.notify_backends(BackendNotifier::spawn(
        config.global.notify_backend.clone(),
        hook_failures.clone(),
    ));
    // Before attaching, so a VRRP problem stops us with nothing attached;
    // it starts as backup and tracking sees the program once attached.
    let pair = ha::start(
        config,
        interface.index,
        controller.maps(),
        controller.subscribe(),
        hook_failures.clone(),
    )
    .await
    .context("starting VRRP ([vrrp])")?;
    // Likewise; it announces nothing before the program is seen attached.
    let announcer = ha::bgp::start(
        config,
        interface.index,
        controller.maps(),
        controller.subscribe(),
    )
    .await
    .context("starting the BGP announcer ([bgp])")?;
    match pinned_restart::attach(controller.maps_mut(), interface, server_interface, pins) {
        Ok(mode) => Ok(Started {
            controller,
            pair,
            announcer,
            mode,
        }),
        Err(error) => {
            // A master (priority 255 owns the VIPs from the start) hands
            // them back before the process ends.
            if let Some(pair) = pair {
                if let Err(error) = pair.shutdown().await {
                    tracing::error!(error = %format!("{error:#}"), "stopping VRRP");
                }
            }
            Err(error.into())
        }
    }
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
fn log_counters(counters: &CounterMaps, layout: &Layout) {
    for service in &layout.services {
        match counters.service_counters(service.id) {
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
            match counters.backend_counters(backend.id) {
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
    match counters.action_counters() {
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
    match counters.reason_counters() {
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
