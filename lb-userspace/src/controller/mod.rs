//! The controller: the one path from desired state to maps, run by one task
//! that owns the desired state (configuration, health, admin overrides), the
//! health checker and the maps. Health events, admin commands and reloaded
//! configurations reach it through channels; every change rebuilds the image
//! of the maps, applies it, and publishes a [`Snapshot`] for the API and HA
//! tracking.
//!
//! A reloaded configuration ([`ConfigUpdate`]) is applied as a difference:
//! services and backends that remain keep their ids (so the flows recorded
//! for them), their health, their checks' schedules and their admin state;
//! only the tables that differ are written, each by the usual flip. What
//! could refuse it (weights set through the API that no longer fit, a table
//! that cannot be built) is checked before anything changes; a failed map
//! write leaves it recorded and retried like any other change.
//!
//! By step:
//! - [`desired`]: configuration + health + admin overrides → each backend's
//!   state and weight;
//! - [`layout`]: which id, and which table slot, holds which backend;
//! - [`image`]: the bytes of every map entry for that desired state;
//! - [`apply`]: writing the difference through a [`MapWriter`] (inactive
//!   half, then the flip) and recording what was really written;
//! - [`error`]: why publishing failed;
//! - [`notify`]: the backend hook run on every change of a backend's state.
//!
//! Passive health: every [`PASSIVE_POLL`] the controller reads the
//! handshake records of the backends of services with `observe =
//! "layer4"`; a backend the data path ejected (failed handshakes in a row,
//! from two clients at least) is marked down through its checks' task,
//! whose checks bring it back (see `lb_common::handshake`), unless that
//! would leave fewer than half of its service's backends up: failed
//! handshakes from many clients at once on many backends are more likely
//! a flood of spoofed SYNs than that many dead servers. The record is
//! cleared when the backend takes new flows again ([`apply`]).
//!
//! Nothing time-critical waits for it: the checks run in their own tasks,
//! the VRRP instance on its own thread, and the API reads the published
//! snapshot. Map writes run under [`tokio::task::block_in_place`], so the
//! worker thread's other tasks move to another thread while a large table
//! is written. A failed write is retried after [`RETRY_DELAY`].

pub mod apply;
pub mod desired;
pub mod error;
pub mod image;
pub mod layout;
pub mod notify;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::FutureExt as _;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{self, Instant};

use crate::config::Config;
use crate::dataplane::MapWriter;
use crate::domain::{
    AdminAction, AdminCommand, AdminCommandError, AdminCommands, AdminError, AdminReply,
    BackendSnapshot, BackendState, ReloadError, ServiceSnapshot, Snapshot, SnapshotReceiver,
};
use crate::error_chain::error_chain;
use crate::flows::FlowCensusReceiver;
use crate::health::{DesiredTarget, HealthChecker, HealthEvent, UnknownResults};
use crate::neighbour::watch::MacUpdate;
use crate::neighbour::{format_mac, Neighbour};
use apply::{Applied, Applier};
use desired::{DesiredState, StateChange};
pub use error::PublishError;
use image::MapsImage;
use layout::Layout;
use notify::BackendNotifier;

/// Admin commands that may wait for the controller before senders wait.
const COMMAND_QUEUE: usize = 64;
/// Reloaded configurations that may wait (the reloader sends one at a time).
const UPDATE_QUEUE: usize = 1;
/// MAC changes that may wait before the neighbour watch waits.
const MAC_QUEUE: usize = 64;
/// Delay before a failed publication is tried again.
pub const RETRY_DELAY: Duration = Duration::from_secs(1);
/// How often the handshake records are read: the data path already keeps
/// new flows off an ejected backend, so this only bounds how long it stays
/// in the table (and in `/status`) as up.
pub const PASSIVE_POLL: Duration = Duration::from_millis(100);

/// A reloaded configuration for the controller, with the neighbours of the
/// backend addresses it adds; answered once applied, or refused with
/// nothing changed.
#[derive(Debug)]
pub struct ConfigUpdate {
    pub config: Config,
    pub neighbours: HashMap<Ipv4Addr, Neighbour>,
    pub reply: oneshot::Sender<Result<(), ReloadError>>,
}

/// Where reloaded configurations go; served by [`Controller::run`].
#[derive(Debug, Clone)]
pub struct ConfigUpdates {
    sender: mpsc::Sender<ConfigUpdate>,
}

impl ConfigUpdates {
    /// Sends `config` and waits for the controller's answer.
    pub async fn send(
        &self,
        config: Config,
        neighbours: HashMap<Ipv4Addr, Neighbour>,
    ) -> Result<(), ReloadError> {
        let (reply, answer) = oneshot::channel();
        let update = ConfigUpdate {
            config,
            neighbours,
            reply,
        };
        self.sender
            .send(update)
            .await
            .map_err(|_| ReloadError::Stopped)?;
        answer.await.map_err(|_| ReloadError::Stopped)?
    }
}

/// The controller's state. Built by [`Controller::start`], driven by
/// [`Controller::run`]; `M` is the data path's maps.
#[derive(Debug)]
pub struct Controller<M> {
    desired: DesiredState,
    checker: HealthChecker,
    layout: Layout,
    neighbours: HashMap<Ipv4Addr, Neighbour>,
    table_size: u32,
    applier: Applier,
    maps: M,
    snapshot: watch::Sender<Arc<Snapshot>>,
    commands: mpsc::Receiver<AdminCommand>,
    /// Handed out by [`Controller::admin_commands`].
    command_sender: mpsc::Sender<AdminCommand>,
    updates: mpsc::Receiver<ConfigUpdate>,
    /// Handed out by [`Controller::config_updates`].
    update_sender: mpsc::Sender<ConfigUpdate>,
    macs: mpsc::Receiver<MacUpdate>,
    /// Handed out by [`Controller::mac_updates`].
    mac_sender: mpsc::Sender<MacUpdate>,
    /// Set while the maps lag behind the desired state after a failed write.
    retry_at: Option<Instant>,
    /// Per service id, the fingerprint of the table last written.
    fingerprints: BTreeMap<u32, u64>,
    /// Runs `global.notify_backend`; `None`: no hooks (set by
    /// [`Controller::notify_backends`]).
    notifier: Option<BackendNotifier>,
    /// The census of active flows, for the `drained` hook; `None`: not
    /// followed (set by [`Controller::follow_flows`]).
    flows: Option<FlowCensusReceiver>,
    /// The draining backends whose `drained` hook ran, by id, with the time
    /// they entered `draining`: once per drain.
    drained: BTreeMap<u32, SystemTime>,
}

impl<M: MapWriter> Controller<M> {
    /// Starts the health checks of `config` and programs `maps` (freshly
    /// loaded, empty) with the initial state: checked backends start down
    /// unless configured up.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn start(
        config: &Config,
        neighbours: HashMap<Ipv4Addr, Neighbour>,
        maps: M,
    ) -> Result<Self, PublishError> {
        let mut checker = HealthChecker::new();
        checker.update(check_targets(config));
        Self::with_checker(config, neighbours, maps, checker, SystemTime::now())
    }

    /// [`Controller::start`] with the checks of `checker` (the tests give
    /// one that checks nothing, and report health themselves).
    fn with_checker(
        config: &Config,
        neighbours: HashMap<Ipv4Addr, Neighbour>,
        maps: M,
        checker: HealthChecker,
        now: SystemTime,
    ) -> Result<Self, PublishError> {
        let layout = Layout::new(config);
        let desired = DesiredState::new(
            config,
            &layout,
            |target| checker.status(target).cloned(),
            now,
        );
        let (snapshot, _) = watch::channel(Arc::new(snapshot(
            &layout,
            &desired,
            &neighbours,
            &BTreeMap::new(),
        )));
        let (command_sender, commands) = mpsc::channel(COMMAND_QUEUE);
        let (update_sender, updates) = mpsc::channel(UPDATE_QUEUE);
        let (mac_sender, macs) = mpsc::channel(MAC_QUEUE);
        let mut controller = Controller {
            desired,
            checker,
            layout,
            neighbours,
            table_size: config.global.maglev_table_size,
            applier: Applier::new(),
            maps,
            snapshot,
            commands,
            command_sender,
            updates,
            update_sender,
            macs,
            mac_sender,
            retry_at: None,
            fingerprints: BTreeMap::new(),
            notifier: None,
            flows: None,
            drained: BTreeMap::new(),
        };
        controller.publish()?;
        // With the fingerprints of the tables just written.
        controller.publish_snapshot();
        Ok(controller)
    }

    /// Runs the backend hook of `notifier` on every change of a backend's
    /// state from now on.
    pub fn notify_backends(&mut self, notifier: BackendNotifier) {
        self.notifier = Some(notifier);
    }

    /// Follows the census of active flows from now on: a draining backend
    /// with no active flow left at a census taken after its drain gets the
    /// `drained` hook, once.
    pub fn follow_flows(&mut self, flows: FlowCensusReceiver) {
        self.flows = Some(flows);
    }

    /// Stops queueing backend hooks and waits for those queued to finish.
    pub async fn finish_hooks(&mut self) {
        if let Some(notifier) = self.notifier.take() {
            notifier.finish().await;
        }
    }

    /// Follows the published snapshot. It is published again when
    /// [`Controller::run`] starts (the data path is attached by then): HA
    /// tracking counts services as serving from that publication on.
    pub fn subscribe(&self) -> SnapshotReceiver {
        self.snapshot.subscribe()
    }

    /// The live count of health check results set aside as unknown.
    pub fn unknown_results(&self) -> UnknownResults {
        self.checker.unknown_results()
    }

    /// Where the API sends admin commands; they are served by [`Controller::run`].
    pub fn admin_commands(&self) -> AdminCommands {
        AdminCommands::new(self.command_sender.clone())
    }

    /// Where the reloader sends configurations; they are served by
    /// [`Controller::run`].
    pub fn config_updates(&self) -> ConfigUpdates {
        ConfigUpdates {
            sender: self.update_sender.clone(),
        }
    }

    /// Where the neighbour watch sends the backends' MAC changes; they are
    /// served by [`Controller::run`].
    pub fn mac_updates(&self) -> mpsc::Sender<MacUpdate> {
        self.mac_sender.clone()
    }

    /// The ids of the services and backends.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The maps, e.g. the data path to read its counters.
    pub fn maps(&self) -> &M {
        &self.maps
    }

    /// The maps, e.g. the data path to attach it once programmed.
    pub fn maps_mut(&mut self) -> &mut M {
        &mut self.maps
    }

    /// Serves health events, admin commands and reloaded configurations
    /// until `shutdown` completes;
    /// returns the controller (checks still running until it is dropped) and
    /// `shutdown`'s output.
    pub async fn run<T>(mut self, shutdown: impl Future<Output = T>) -> (Self, T) {
        tokio::pin!(shutdown);
        self.publish_snapshot();
        let mut passive_poll = time::interval(PASSIVE_POLL);
        passive_poll.set_missed_tick_behavior(time::MissedTickBehavior::Delay);
        let stopped_by = loop {
            let observing = self.layout.services.iter().any(|s| s.observe.is_some());
            let retry_at = self.retry_at;
            let retry = async move {
                match retry_at {
                    Some(at) => time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                stopped_by = &mut shutdown => break stopped_by,
                event = self.checker.next_event() => {
                    let mut events = vec![event];
                    // Events that arrived together make one publication.
                    while let Some(event) = self.checker.next_event().now_or_never() {
                        events.push(event);
                    }
                    self.record_health(&events);
                }
                Some(command) = self.commands.recv() => {
                    let reply = self.admin(&command.service, &command.backend, command.action);
                    // The requester may have given up: nothing to do then.
                    let _ = command.reply.send(reply);
                }
                Some(update) = self.macs.recv() => self.record_mac(update),
                counted = census_changed(&mut self.flows) => match counted {
                    Ok(()) => self.record_census(),
                    // The census task is gone (shutting down): stop following.
                    Err(_) => self.flows = None,
                },
                Some(update) = self.updates.recv() => {
                    let reply = self.reconfigure(&update.config, update.neighbours, SystemTime::now());
                    let _ = update.reply.send(reply);
                }
                _ = passive_poll.tick(), if observing => self.check_handshakes(),
                () = retry => {
                    // A failure is logged and retried again.
                    if self.publish().is_ok() {
                        self.publish_snapshot();
                    }
                }
            }
        };
        (self, stopped_by)
    }

    /// Records changes of health, publishes the result to the maps (a
    /// failure is logged and retried) and the snapshot.
    fn record_health(&mut self, events: &[HealthEvent]) {
        let changes: Vec<StateChange> = events
            .iter()
            .flat_map(|event| self.desired.record_health(event))
            .collect();
        self.report_changes(&changes);
        if !changes.is_empty() {
            let _ = self.publish();
        }
        self.publish_snapshot();
    }

    /// Marks down, through its checks, the backends that the data path
    /// ejected for failed handshakes (see [`passive_verdicts`]); the
    /// resulting health events publish the change. The record of an
    /// ejected backend kept up (half of its service) is cleared, so the data
    /// path gives it new flows again rather than keep it out unseen: no
    /// handshake could ever complete on it to end the ejection.
    fn check_handshakes(&mut self) {
        let verdicts = passive_verdicts(
            &self.layout,
            |id| self.desired.state(id),
            |id| {
                self.maps
                    .handshakes(id)
                    .map_err(|error| {
                        tracing::debug!(backend = id, error = %error_chain(&error), "cannot read a handshake record");
                    })
                    .ok()
            },
        );
        for (id, reason) in verdicts.down {
            let Some(target) = self.desired.up_target(id) else {
                continue;
            };
            if self.checker.mark_down(target, reason.clone()) {
                tracing::warn!(backend = id, %reason, "backend marked down by passive health");
            }
        }
        for id in verdicts.kept_up {
            match self.maps.clear_handshakes(id) {
                // Every poll while the failures go on: not worth a warning each.
                Ok(()) => tracing::debug!(
                    backend = id,
                    "failed handshakes would mark this backend down, but half of its service must stay up: kept up, its handshake record cleared"
                ),
                Err(error) => {
                    tracing::warn!(backend = id, error = %error_chain(&error), "cannot clear a handshake record");
                }
            }
        }
    }

    /// Records a backend address's new MAC, or its being unresolved (no new
    /// flows) or resolved again; writes the maps if anything changed.
    fn record_mac(&mut self, update: MacUpdate) {
        let MacUpdate {
            address,
            neighbour,
            unresolved,
        } = update;
        // A reload may have removed it meanwhile.
        if !self.layout.backends().any(|b| b.address == address) {
            return;
        }
        let moved = self.neighbours.get(&address) != Some(&neighbour);
        if moved {
            tracing::info!(backend = %address, mac = %format_mac(&neighbour.mac), interface = %neighbour.interface.name, "backend MAC changed");
        }
        let reason = unresolved
            .clone()
            .unwrap_or_else(|| format!("MAC resolved: {}", format_mac(&neighbour.mac)));
        self.neighbours.insert(address, neighbour);
        let changes =
            self.desired
                .record_mac(address, unresolved.is_some(), &reason, SystemTime::now());
        self.report_changes(&changes);
        if moved || !changes.is_empty() {
            let _ = self.publish();
        }
        self.publish_snapshot();
    }

    /// Applies an operator's `action` to backend `backend` of service
    /// `service`, unless the service's weights would then no longer fit its
    /// table: then nothing changes.
    fn admin(&mut self, service: &str, backend: &str, action: AdminAction) -> AdminReply {
        let mut proposed = self.desired.clone();
        let change = proposed.admin(service, backend, action, SystemTime::now())?;
        check_weights_fit(&self.layout, service, &proposed, self.table_size)?;
        self.desired = proposed;
        tracing::info!(service, backend, ?action, "admin action");
        self.report_changes(change.as_slice());
        let published = self.publish();
        self.publish_snapshot();
        published.map_err(|error| AdminCommandError::NotApplied(error_chain(&error)))?;
        let id = self.desired.find(service, backend)?;
        Ok(backend_snapshot(&self.desired, &self.neighbours, id))
    }

    /// Applies a reloaded `config` (see the module documentation), with
    /// `resolved` the neighbours of the backend addresses it adds. Refused,
    /// with nothing changed, if the weights set through the API would no
    /// longer fit a table or the maps cannot be built; a failed write is
    /// retried.
    fn reconfigure(
        &mut self,
        config: &Config,
        resolved: HashMap<Ipv4Addr, Neighbour>,
        now: SystemTime,
    ) -> Result<(), ReloadError> {
        let layout = self.layout.reassigned(config);
        let mut neighbours = self.neighbours.clone();
        neighbours.extend(resolved);
        neighbours.retain(|address, _| layout.backends().any(|b| b.address == *address));
        // What can refuse it, before anything changes. New checks have no
        // status yet: their backends count at their initial health.
        let preview = self.desired.reloaded(
            config,
            &layout,
            |target| self.checker.status(target).cloned(),
            now,
        );
        for service in &layout.services {
            check_weights_fit(&layout, &service.name, &preview, self.table_size).map_err(
                |error| {
                    ReloadError::Refused(format!(
                        "with the weights set through the API kept, {error}"
                    ))
                },
            )?;
        }
        MapsImage::build(&layout, &preview.plans(), &neighbours, self.table_size)
            .map_err(|error| ReloadError::Refused(error_chain(&error)))?;

        self.checker
            .update(self.desired.reloaded_targets(config, &layout));
        let reloaded = self.desired.reloaded(
            config,
            &layout,
            |target| self.checker.status(target).cloned(),
            now,
        );
        let changes = reloaded.changes_from(&self.desired);
        self.desired = reloaded;
        if let Some(notifier) = &mut self.notifier {
            notifier.set_command(config.global.notify_backend.clone());
        }
        self.report_changes(&changes);
        self.layout = layout;
        self.neighbours = neighbours;
        let published = self.publish();
        self.publish_snapshot();
        published.map(drop).map_err(|error| {
            ReloadError::NotApplied(format!(
                "the new configuration is recorded but could not be applied to the data path yet (retrying every {RETRY_DELAY:?}): {}",
                error_chain(&error)
            ))
        })
    }

    /// Writes the desired state to the maps. On failure, logs it and
    /// schedules a retry.
    fn publish(&mut self) -> Result<Applied, PublishError> {
        let started = Instant::now();
        let result = self.image().and_then(|image| {
            let (applier, maps) = (&mut self.applier, &mut self.maps);
            without_stalling_other_tasks(|| applier.apply(maps, &image))
                .map_err(PublishError::from)
                .map(|applied| (applied, image))
        });
        match result {
            Ok((applied, image)) => {
                self.retry_at = None;
                self.fingerprints = fingerprints(&self.layout, &image);
                if applied.map_writes > 0 {
                    tracing::info!(
                        map_writes = applied.map_writes,
                        table_slots = applied.table_slots,
                        took_ms = started.elapsed().as_millis() as u64,
                        "data path updated"
                    );
                }
                Ok(applied)
            }
            Err(error) => {
                tracing::error!(
                    error = %error_chain(&error),
                    "updating the data path failed; retrying in {RETRY_DELAY:?}"
                );
                self.retry_at = Some(Instant::now() + RETRY_DELAY);
                Err(error)
            }
        }
    }

    /// The maps the desired state asks for.
    fn image(&self) -> Result<MapsImage, PublishError> {
        MapsImage::build(
            &self.layout,
            &self.desired.plans(),
            &self.neighbours,
            self.table_size,
        )
    }

    fn publish_snapshot(&self) {
        self.snapshot.send_replace(Arc::new(snapshot(
            &self.layout,
            &self.desired,
            &self.neighbours,
            &self.fingerprints,
        )));
    }
}

/// What passive health does now ([`passive_verdicts`]).
#[derive(Debug, Default, PartialEq, Eq)]
struct PassiveVerdicts {
    /// Backends marked down, with the reason.
    down: Vec<(u32, String)>,
    /// Ejected backends kept up, so that half of their service stays up.
    kept_up: Vec<u32>,
}

/// The backends of observed services that the data path ejected (their
/// handshake record, from `watch_of`: `None` if unreadable) while up
/// (`state_of`): marked down, as long as at least half of each service's
/// backends stay up, and kept up beyond that. Failed handshakes on many of
/// a service's backends at once are more likely a flood of spoofed SYNs
/// than that many dead servers, and the checks still judge those.
fn passive_verdicts(
    layout: &Layout,
    state_of: impl Fn(u32) -> Option<BackendState>,
    watch_of: impl Fn(u32) -> Option<lb_common::handshake::HandshakeWatch>,
) -> PassiveVerdicts {
    let mut verdicts = PassiveVerdicts::default();
    for service in &layout.services {
        let Some(observe) = service.observe else {
            continue;
        };
        let is_up = |id: u32| state_of(id) == Some(BackendState::Up);
        let mut up = service.backends.iter().filter(|b| is_up(b.id)).count();
        for backend in service.backends.iter().filter(|b| is_up(b.id)) {
            let Some(watch) = watch_of(backend.id) else {
                continue;
            };
            if !watch.is_ejected(observe.error_limit) {
                continue;
            }
            if (up - 1) * 2 < service.backends.len() {
                verdicts.kept_up.push(backend.id);
            } else {
                let reason = format!("passive: {} handshakes not completed", watch.failed_in_row);
                verdicts.down.push((backend.id, reason));
                up -= 1;
            }
        }
    }
    verdicts
}

/// Whether the weights `desired` gives the backends of `service` (ids from
/// `layout`) fit its table of `table_size`: the check the configuration file
/// gets ([`Scheduler::check_weights`](crate::config::Scheduler::check_weights)).
fn check_weights_fit(
    layout: &Layout,
    service: &str,
    desired: &DesiredState,
    table_size: u32,
) -> Result<(), AdminError> {
    let plans = desired.plans();
    let Some(slot) = layout.services.iter().find(|s| s.name == service) else {
        return Err(AdminError::UnknownService(service.to_owned()));
    };
    let weights: Vec<u32> = slot
        .backends
        .iter()
        .map(|backend| plans[&backend.id].weight)
        .collect();
    slot.scheduler
        .check_weights(&weights, table_size)
        .map_err(|error| AdminError::WeightsDoNotFit {
            service: service.to_owned(),
            reason: error.to_string(),
        })
}

/// Each service's table fingerprint in `image`, by backend address.
fn fingerprints(layout: &Layout, image: &MapsImage) -> BTreeMap<u32, u64> {
    let addresses: HashMap<u32, Ipv4Addr> = layout
        .services
        .iter()
        .flat_map(|service| service.backends.iter())
        .map(|backend| (backend.id, backend.address))
        .collect();
    image
        .services
        .iter()
        .map(|(&id, table)| {
            (
                id,
                table.fingerprint(|backend| addresses.get(&backend).copied()),
            )
        })
        .collect()
}

/// Backend id `id` of `desired`, with its MAC from `neighbours`.
fn backend_snapshot(
    desired: &DesiredState,
    neighbours: &HashMap<Ipv4Addr, Neighbour>,
    id: u32,
) -> BackendSnapshot {
    let mut backend = desired.backend_snapshot(id);
    backend.mac = neighbours
        .get(&backend.address)
        .map(|neighbour| neighbour.mac);
    backend
}

/// The snapshot of `desired`, with the ids of `layout`, the MACs of
/// `neighbours` and the tables' `fingerprints`.
fn snapshot(
    layout: &Layout,
    desired: &DesiredState,
    neighbours: &HashMap<Ipv4Addr, Neighbour>,
    fingerprints: &BTreeMap<u32, u64>,
) -> Snapshot {
    let services = layout
        .services
        .iter()
        .map(|service| ServiceSnapshot {
            id: service.id,
            name: service.name.clone(),
            vip: service.vip,
            port: service.port,
            protocol: service.protocol.to_string(),
            scheduler: service.scheduler.to_string(),
            forwarding: service.forwarding.to_string(),
            table_fingerprint: fingerprints.get(&service.id).copied().unwrap_or_default(),
            backends: service
                .backends
                .iter()
                .map(|backend| backend_snapshot(desired, neighbours, backend.id))
                .collect(),
        })
        .collect();
    Snapshot { services }
}

/// The targets to check: one per checked backend membership (the checker
/// probes a target shared by several services once).
pub fn check_targets(config: &Config) -> Vec<DesiredTarget> {
    config
        .services
        .iter()
        .flat_map(|service| {
            service.backends.iter().filter_map(|backend| {
                Some(DesiredTarget {
                    target: service.check_target(backend)?,
                    initial: backend.initial,
                })
            })
        })
        .collect()
}

impl<M> Controller<M> {
    /// Logs `changes` and queues their backend hooks: the one place every
    /// change of a backend's state goes through, with [`Self::record_census`]
    /// for `drained`.
    fn report_changes(&self, changes: &[StateChange]) {
        log_changes(changes);
        if let Some(notifier) = &self.notifier {
            for change in changes {
                notifier.state_changed(change);
            }
        }
    }

    /// Queues the `drained` hook of each draining backend that the latest
    /// census, taken after its drain began, finds without an active flow.
    fn record_census(&mut self) {
        let Some(census) = self
            .flows
            .as_mut()
            .map(|flows| flows.borrow_and_update().clone())
        else {
            return;
        };
        let Some(counted_at) = census.taken_at else {
            return;
        };
        let snapshot = self.snapshot.borrow().clone();
        let draining: BTreeMap<u32, (&ServiceSnapshot, &BackendSnapshot)> = snapshot
            .services
            .iter()
            .flat_map(|service| service.backends.iter().map(move |b| (b.id, (service, b))))
            .filter(|(_, (_, backend))| backend.state == BackendState::Draining)
            .collect();
        // A drain that ended (or began again) may report again.
        self.drained
            .retain(|id, since| draining.get(id).is_some_and(|(_, b)| b.since == *since));
        for (id, (service, backend)) in draining {
            if self.drained.contains_key(&id)
                || counted_at < backend.since
                || census.active_flows(id) > 0
            {
                continue;
            }
            tracing::info!(service = %service.name, backend = %backend.name, "drained: no active flow left");
            if let Some(notifier) = &self.notifier {
                notifier.drained(service, backend);
            }
            self.drained.insert(id, backend.since);
        }
    }
}

/// Resolves when `flows` has a new census (`Err` once its task is gone);
/// never while it is not followed.
async fn census_changed(
    flows: &mut Option<FlowCensusReceiver>,
) -> Result<(), watch::error::RecvError> {
    match flows {
        Some(flows) => flows.changed().await,
        None => std::future::pending().await,
    }
}

fn log_changes(changes: &[StateChange]) {
    for change in changes {
        tracing::info!(
            service = %change.service,
            backend = %change.backend,
            from = %change.from,
            to = %change.to,
            reason = %change.reason,
            "backend state changed"
        );
    }
}

/// Runs the blocking `work` (map writes) so that the tasks queued on this
/// worker thread move to another one meanwhile; runs it inline on a
/// current-thread runtime, which has no other thread.
fn without_stalling_other_tasks<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

#[cfg(test)]
mod backup_tests;
#[cfg(test)]
mod reload_tests;
#[cfg(test)]
mod tests;
