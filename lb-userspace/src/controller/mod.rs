//! The reconcile loop: one task that owns the desired state (configuration,
//! health, admin overrides), the health checker and the data path, and is the
//! only writer of the maps. Health events and API requests reach it through
//! channels; every change rebuilds the Maglev tables / round-robin rings from
//! the serving backends and publishes them with the double-buffer flip.
//!
//! Nothing time-critical waits for it: the checks run in their own tasks, and
//! the VRRP instance has its own task. Map writes run under
//! [`tokio::task::block_in_place`], so the worker thread's other tasks move
//! to another thread while a large table is written.

pub mod desired;

use std::collections::HashMap;
use std::future::Future;
use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime};

use futures::FutureExt as _;
use lb_common::maps::Counters;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{self, Instant};

use crate::api::model::{BackendStatus, ServiceStatus, StatusReport, Traffic};
use crate::config::Config;
use crate::dataplane::Dataplane;
use crate::health::{DesiredTarget, HealthChecker};
use crate::neighbour::Neighbour;
use crate::reconcile::{Applied, Layout, ReconcileError, Reconciler};

pub use desired::{AdminAction, AdminError, DesiredState, StateChange};

/// Requests that may wait for the loop before senders wait.
const REQUEST_QUEUE: usize = 64;
/// Delay before a failed publication is tried again.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// Why an admin request did not complete.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Refused(#[from] AdminError),
    /// The change is recorded, but the maps could not be written; the loop
    /// keeps retrying.
    #[error(
        "the change is recorded but could not be applied to the data path yet (retrying): {0}"
    )]
    NotApplied(String),
    #[error("the controller has stopped")]
    Stopped,
}

/// What the API asks of the loop.
#[derive(Debug)]
enum Request {
    Status {
        reply: oneshot::Sender<StatusReport>,
    },
    Admin {
        service: String,
        backend: String,
        action: AdminAction,
        reply: oneshot::Sender<Result<BackendStatus, RequestError>>,
    },
}

/// Talks to the reconcile loop; cheap to clone.
#[derive(Debug, Clone)]
pub struct ControllerHandle {
    requests: mpsc::Sender<Request>,
}

impl ControllerHandle {
    /// The status of every service and backend, with the data path's counters.
    pub async fn status(&self) -> Result<StatusReport, RequestError> {
        let (reply, response) = oneshot::channel();
        self.send(Request::Status { reply }).await?;
        response.await.map_err(|_| RequestError::Stopped)
    }

    /// Applies `action` to backend `backend` of service `service`; returns the
    /// backend's status once the data path follows it.
    pub async fn admin(
        &self,
        service: &str,
        backend: &str,
        action: AdminAction,
    ) -> Result<BackendStatus, RequestError> {
        let (reply, response) = oneshot::channel();
        self.send(Request::Admin {
            service: service.to_owned(),
            backend: backend.to_owned(),
            action,
            reply,
        })
        .await?;
        response.await.map_err(|_| RequestError::Stopped)?
    }

    async fn send(&self, request: Request) -> Result<(), RequestError> {
        self.requests
            .send(request)
            .await
            .map_err(|_| RequestError::Stopped)
    }
}

/// The reconcile loop's state. Built by [`Controller::start`], driven by
/// [`Controller::run`].
#[derive(Debug)]
pub struct Controller {
    desired: DesiredState,
    checker: HealthChecker,
    reconciler: Reconciler,
    dataplane: Dataplane,
    requests: mpsc::Receiver<Request>,
    /// Set while the maps lag behind the desired state after a failed write.
    retry_at: Option<Instant>,
}

impl Controller {
    /// Starts the health checks of `config` and programs the maps with the
    /// initial state (checked backends start down unless configured up).
    /// Returns the controller and the handle the API talks to it through.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn start(
        config: &Config,
        neighbours: HashMap<Ipv4Addr, Neighbour>,
        dataplane: Dataplane,
    ) -> Result<(Controller, ControllerHandle), ReconcileError> {
        let layout = Layout::new(config);
        let mut checker = HealthChecker::new();
        checker.update(check_targets(config));
        let desired = DesiredState::new(
            config,
            &layout,
            |target| checker.status(target).cloned(),
            SystemTime::now(),
        );
        let reconciler = Reconciler::new(layout, neighbours, config.global.maglev_table_size);
        let (requests_tx, requests) = mpsc::channel(REQUEST_QUEUE);
        let mut controller = Controller {
            desired,
            checker,
            reconciler,
            dataplane,
            requests,
            retry_at: None,
        };
        controller.publish()?;
        let handle = ControllerHandle {
            requests: requests_tx,
        };
        Ok((controller, handle))
    }

    /// The data path, e.g. to attach it once programmed.
    pub fn dataplane_mut(&mut self) -> &mut Dataplane {
        &mut self.dataplane
    }

    /// The ids of the services and backends.
    pub fn layout(&self) -> &Layout {
        self.reconciler.layout()
    }

    /// The data path, e.g. to read its counters.
    pub fn dataplane(&self) -> &Dataplane {
        &self.dataplane
    }

    /// Serves health events and API requests until `shutdown` completes;
    /// returns the controller (checks still running until it is dropped) and
    /// `shutdown`'s output.
    pub async fn run<T>(mut self, shutdown: impl Future<Output = T>) -> (Self, T) {
        tokio::pin!(shutdown);
        let stopped_by = loop {
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
                    let mut changes = self.desired.record_health(&event);
                    // Events that arrived together make one publication.
                    while let Some(event) = self.checker.next_event().now_or_never() {
                        changes.extend(self.desired.record_health(&event));
                    }
                    log_changes(&changes);
                    if !changes.is_empty() {
                        // A failure is logged and retried.
                        let _ = self.publish();
                    }
                }
                Some(request) = self.requests.recv() => self.serve(request),
                () = retry => {
                    let _ = self.publish();
                }
            }
        };
        (self, stopped_by)
    }

    fn serve(&mut self, request: Request) {
        match request {
            Request::Status { reply } => {
                // The requester may have given up: nothing to do then.
                let _ = reply.send(self.status());
            }
            Request::Admin {
                service,
                backend,
                action,
                reply,
            } => {
                let _ = reply.send(self.admin(&service, &backend, action));
            }
        }
    }

    fn admin(
        &mut self,
        service: &str,
        backend: &str,
        action: AdminAction,
    ) -> Result<BackendStatus, RequestError> {
        let change = self
            .desired
            .admin(service, backend, action, SystemTime::now())?;
        tracing::info!(service, backend, ?action, "admin action");
        log_changes(change.as_slice());
        self.publish()
            .map_err(|error| RequestError::NotApplied(error_chain(&error)))?;
        let id = self.desired.find(service, backend)?;
        Ok(self.backend_status(id))
    }

    /// Writes the desired state to the maps. On failure, logs it and
    /// schedules a retry.
    fn publish(&mut self) -> Result<Applied, ReconcileError> {
        let plans = self.desired.plans();
        let (reconciler, dataplane) = (&mut self.reconciler, &mut self.dataplane);
        let started = Instant::now();
        match without_stalling_other_tasks(|| reconciler.apply(dataplane, &plans)) {
            Ok(applied) => {
                self.retry_at = None;
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

    fn status(&self) -> StatusReport {
        status_report(
            self.reconciler.layout(),
            &self.desired,
            |id| traffic(self.dataplane.service_counters(id)),
            |id| traffic(self.dataplane.backend_counters(id)),
        )
    }

    fn backend_status(&self, id: usize) -> BackendStatus {
        let counters = traffic(self.dataplane.backend_counters(id as u32));
        self.desired.backend_status(id, counters)
    }
}

/// The report of `desired`, with the counters of each service and backend id.
fn status_report(
    layout: &Layout,
    desired: &DesiredState,
    service_counters: impl Fn(u32) -> Traffic,
    backend_counters: impl Fn(u32) -> Traffic,
) -> StatusReport {
    let services = layout
        .services
        .iter()
        .map(|service| ServiceStatus {
            name: service.name.clone(),
            vip: service.vip,
            port: service.port,
            protocol: service.protocol.to_string(),
            scheduler: service.scheduler.to_string(),
            counters: service_counters(service.id),
            backends: service
                .backends
                .iter()
                .map(|backend| {
                    desired.backend_status(backend.id as usize, backend_counters(backend.id))
                })
                .collect(),
        })
        .collect();
    StatusReport { services }
}

/// A handle to a loop that serves requests from `config`'s desired state
/// alone (no checks, no data path, zero counters): for tests of the API.
#[cfg(test)]
pub(crate) fn spawn_without_dataplane(config: &Config) -> ControllerHandle {
    let layout = Layout::new(config);
    let mut desired = DesiredState::new(config, &layout, |_| None, SystemTime::now());
    let (requests, mut received) = mpsc::channel(REQUEST_QUEUE);
    tokio::spawn(async move {
        while let Some(request) = received.recv().await {
            match request {
                Request::Status { reply } => {
                    let report = status_report(
                        &layout,
                        &desired,
                        |_| Traffic::default(),
                        |_| Traffic::default(),
                    );
                    let _ = reply.send(report);
                }
                Request::Admin {
                    service,
                    backend,
                    action,
                    reply,
                } => {
                    let result = desired
                        .admin(&service, &backend, action, SystemTime::now())
                        .and_then(|_| desired.find(&service, &backend))
                        .map(|id| desired.backend_status(id, Traffic::default()))
                        .map_err(RequestError::from);
                    let _ = reply.send(result);
                }
            }
        }
    });
    ControllerHandle { requests }
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

/// Counters as the API shows them; a read error is logged and shown as zeros.
fn traffic<E: std::fmt::Display>(counters: Result<Counters, E>) -> Traffic {
    match counters {
        Ok(c) => Traffic {
            packets: c.packets,
            bytes: c.bytes,
            new_flows: c.new_flows,
        },
        Err(error) => {
            tracing::warn!(%error, "reading counters");
            Traffic::default()
        }
    }
}

/// `error` and its causes, outermost first.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
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
