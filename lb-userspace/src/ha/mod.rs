//! How this node shares its VIPs with its peers: as one of an active-active
//! set announcing them over BGP (`[bgp]`, [`bgp`]), or as below.
//!
//! The active-passive pair on this node: the VRRP instance of `[vrrp]` and
//! its tracking, on a thread with a runtime of their own, so that the VRRP
//! timers never wait behind health checks, API requests or map writes.
//!
//! Tracking ([`tracking`]) polls what the kernel says about the XDP program
//! ([`probe`]: every [`XDP_POLL_WHILE_MASTER`] while master, every advert
//! interval otherwise) and follows the snapshot the controller publishes of
//! the services, and lowers the advertised priority while this node cannot
//! serve, so its peer takes over. A master that loses its program resigns
//! at once (priority 0, VIPs released): without the program its kernel
//! would answer for the VIPs and reset every connection sent to it.
//!
//! [`HaNode::shutdown`] sends the priority-0 advert and removes the VIPs,
//! then (if this node was master) waits [`HaNode::handover_grace`] so the
//! peer can announce itself while this node still forwards: call it before
//! tearing down the data path.

pub mod bgp;
pub mod probe;
pub mod tracking;

use std::net::Ipv4Addr;
use std::thread;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::time::{interval, Instant, MissedTickBehavior};

use crate::config::{Config, VrrpPair};
use crate::dataplane::{Dataplane, DataplaneError};
use crate::domain::SnapshotReceiver;
use crate::hooks::HookFailures;
use crate::vrrp::{self, State, VrrpError, VrrpHandle, VrrpStatus};
use probe::{Probe, ProbeError};
use tracking::Tracker;

/// How often tracking samples the controller's snapshot.
pub const SERVICE_POLL: Duration = Duration::from_millis(500);

/// How often a master checks that its XDP program is still attached: the
/// kernel sends no notification when a program or its link is detached, and
/// every packet that reaches the kernel meanwhile is answered with a reset.
pub const XDP_POLL_WHILE_MASTER: Duration = Duration::from_millis(10);

#[derive(Debug, thiserror::Error)]
pub enum HaError {
    #[error("starting the VRRP thread")]
    Thread(#[source] std::io::Error),
    #[error("building the VRRP thread's runtime")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error("VRRP instance on {interface}")]
    Vrrp {
        interface: String,
        #[source]
        source: Box<VrrpError>,
    },
    #[error("identifying the XDP program to track")]
    ProgramId(#[source] DataplaneError),
    #[error("the VRRP thread panicked")]
    Panicked,
}

/// Starts the pair member of `config` if it has a `[vrrp]` section;
/// tracking expects `dataplane`'s program on interface `xdp_ifindex` and
/// follows the controller's `services` snapshot; failed notify hooks are
/// counted in `hook_failures`.
pub async fn start(
    config: &Config,
    xdp_ifindex: u32,
    dataplane: &Dataplane,
    services: SnapshotReceiver,
    hook_failures: HookFailures,
) -> Result<Option<HaNode>, HaError> {
    let Some(settings) = &config.vrrp else {
        return Ok(None);
    };
    let xdp = XdpAttachment {
        ifindex: xdp_ifindex,
        program_id: dataplane.program_id().map_err(HaError::ProgramId)?,
    };
    HaNode::start(settings, xdp, services, hook_failures)
        .await
        .map(Some)
}

/// The XDP program that tracking (and the BGP announcer) look for on the
/// interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XdpAttachment {
    pub ifindex: u32,
    pub program_id: u32,
}

/// The running pair member. Dropping it without [`HaNode::shutdown`] still
/// stops the instance (priority 0, VIPs removed), without waiting for it.
#[derive(Debug)]
pub struct HaNode {
    status: watch::Receiver<VrrpStatus>,
    stop: oneshot::Sender<()>,
    thread: thread::JoinHandle<Result<(), HaError>>,
    advert_interval: Duration,
}

impl HaNode {
    /// Starts the instance of `settings` with the priority tracking allows
    /// right now; returns once it runs. Services count as not serving until
    /// the first snapshot published after this call.
    ///
    /// Tracking follows the services only once every backend of the tracked
    /// services is settled (has had the checks of its first verdict): until
    /// then a backend about to come up still shows the initial "down", and
    /// preempting on one backend of three would give it the others' flows.
    pub async fn start(
        settings: &VrrpPair,
        xdp: XdpAttachment,
        services: SnapshotReceiver,
        hook_failures: HookFailures,
    ) -> Result<HaNode, HaError> {
        let (started, started_receiver) = oneshot::channel();
        let (stop, stop_receiver) = oneshot::channel();
        let task_settings = settings.clone();
        let thread = thread::Builder::new()
            .name("vrrp".to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(HaError::Runtime)?;
                runtime.block_on(serve(
                    task_settings,
                    xdp,
                    services,
                    hook_failures,
                    started,
                    stop_receiver,
                ))
            })
            .map_err(HaError::Thread)?;
        match started_receiver.await {
            Ok(status) => Ok(HaNode {
                status,
                stop,
                thread,
                advert_interval: settings.instance.advert_interval.duration(),
            }),
            // The thread ended before the instance ran: its result says why.
            Err(_) => Err(join(thread).await.err().unwrap_or(HaError::Panicked)),
        }
    }

    /// The instance's state and counters.
    pub fn status(&self) -> watch::Receiver<VrrpStatus> {
        self.status.clone()
    }

    /// How long the data path keeps forwarding after the priority-0 advert:
    /// the peer takes over within Skew_Time (under one advert interval) and
    /// announces itself at once; until then clients still send here.
    pub fn handover_grace(&self) -> Duration {
        self.advert_interval * 2
    }

    /// Sends the priority-0 advert, removes the VIPs, stops the instance,
    /// then, if it was master, waits [`HaNode::handover_grace`].
    pub async fn shutdown(self) -> Result<(), HaError> {
        let was_master = self.status.borrow().state == State::Master;
        let grace = self.handover_grace();
        // An error means the thread already ended; its result says why.
        let _ = self.stop.send(());
        let result = join(self.thread).await;
        if was_master {
            tracing::info!(
                ?grace,
                "vrrp stopped; the data path serves while the peer takes over"
            );
            tokio::time::sleep(grace).await;
        }
        result
    }
}

/// Waits for the VRRP thread without blocking the caller's runtime.
async fn join(thread: thread::JoinHandle<Result<(), HaError>>) -> Result<(), HaError> {
    match tokio::task::spawn_blocking(move || thread.join()).await {
        Ok(Ok(result)) => result,
        _ => Err(HaError::Panicked),
    }
}

/// The VRRP thread: starts the instance, tracks, stops it on `stop`.
async fn serve(
    settings: VrrpPair,
    xdp: XdpAttachment,
    mut services: SnapshotReceiver,
    hook_failures: HookFailures,
    started: oneshot::Sender<watch::Receiver<VrrpStatus>>,
    mut stop: oneshot::Receiver<()>,
) -> Result<(), HaError> {
    let probe = Probe::connect()?;
    let primary_address = match settings.primary_address {
        Some(address) => address,
        None => {
            // Not one the master holds: a killed master may have left them.
            let held: Vec<Ipv4Addr> = settings.instance.master_addresses().collect();
            probe
                .primary_address(&settings.instance.interface, &held)
                .await?
        }
    };
    // Observed from the next publication on: the controller publishes when
    // its loop starts, after the data path is attached. Until then the
    // services count as not serving, so the instance starts at a priority
    // that loses.
    services.mark_unchanged();
    let configured_services: Vec<String> = services
        .borrow()
        .services
        .iter()
        .map(|service| service.name.clone())
        .collect();
    let mut tracker = Tracker::new(
        settings.instance.priority,
        settings.track.clone(),
        configured_services,
    );
    let mut config = settings.instance.clone();
    config.priority = tracker.priority();
    log_start(&settings, primary_address, &tracker);
    let instance = vrrp::spawn(config, primary_address, hook_failures)
        .await
        .map_err(|source| HaError::Vrrp {
            interface: settings.instance.interface.clone(),
            source: Box::new(source),
        })?;
    // The starter waits for this; if it is gone, `stop` ends the loop below.
    let _ = started.send(instance.status());

    let mut service_poll = interval(SERVICE_POLL);
    service_poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Set by the controller's first publication after the loop started.
    let mut published = false;
    let status = instance.status();
    let mut next_xdp_poll = Instant::now();
    // False once the controller is gone: its last snapshot stands.
    let mut following = true;
    let mut advertised = tracker.priority();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            () = tokio::time::sleep_until(next_xdp_poll) => {
                if observe_xdp(&mut tracker, &probe, xdp).await {
                    resign(&instance, &status);
                }
                let period = if status.borrow().state == State::Master {
                    XDP_POLL_WHILE_MASTER
                } else {
                    settings.instance.advert_interval.duration()
                };
                next_xdp_poll = Instant::now() + period;
            }
            changed = services.changed(), if following => match changed {
                Ok(()) => published = true,
                Err(_) => following = false,
            },
            _ = service_poll.tick(), if published => {
                let was_holding = tracker.is_holding();
                tracker.observe_services(&services.borrow_and_update());
                if tracker.is_holding() && !was_holding {
                    tracing::warn!(
                        reasons = %tracker.reasons(),
                        "vrrp preemption held back until this node's health view is fresh"
                    );
                    instance.count_hold();
                }
            }
        }
        let priority = tracker.priority();
        if priority != advertised {
            if priority < advertised {
                tracing::warn!(
                    from = advertised,
                    to = priority,
                    reasons = %tracker.reasons(),
                    "vrrp priority lowered by tracking"
                );
            } else {
                tracing::info!(
                    from = advertised,
                    to = priority,
                    reasons = %tracker.reasons(),
                    "vrrp priority raised by tracking"
                );
            }
            instance.set_priority(priority);
            advertised = priority;
        }
    }
    stop_instance(instance, &settings.instance.interface).await
}

async fn stop_instance(instance: VrrpHandle, interface: &str) -> Result<(), HaError> {
    instance.shutdown().await.map_err(|source| HaError::Vrrp {
        interface: interface.to_owned(),
        source: Box::new(source),
    })
}

fn log_start(settings: &VrrpPair, primary_address: Ipv4Addr, tracker: &Tracker) {
    let instance = &settings.instance;
    tracing::info!(
        interface = %instance.interface,
        vrid = instance.vrid,
        priority = tracker.priority(),
        configured_priority = instance.priority,
        lowered_by = %tracker.reasons(),
        primary = %primary_address,
        advert_interval = ?instance.advert_interval.duration(),
        virtual_addresses = ?instance.virtual_addresses,
        gateway_address = ?instance.gateway.as_ref().map(|gateway| gateway.address),
        preempt = instance.preempt,
        "vrrp starting"
    );
}

/// Asks the kernel whether our program is on the interface; on a netlink
/// error the previous observation stands. True when the program was just
/// lost (see [`Tracker::observe_xdp`]).
async fn observe_xdp(tracker: &mut Tracker, probe: &Probe, xdp: XdpAttachment) -> bool {
    match probe.runs_xdp_program(xdp.ifindex, xdp.program_id).await {
        Ok(attached) => tracker.observe_xdp(attached),
        Err(error) => {
            tracing::warn!(%error, "tracking: cannot read the interface's XDP programs");
            false
        }
    }
}

/// The data path is gone: a master hands over now instead of waiting for
/// its lowered priority to lose an election. Sent before the priority
/// change, so the priority-0 advert goes out first.
fn resign(instance: &VrrpHandle, status: &watch::Receiver<VrrpStatus>) {
    if status.borrow().state == State::Master {
        tracing::warn!("vrrp: the XDP program is no longer attached, resigning as master");
        instance.resign();
    }
}
