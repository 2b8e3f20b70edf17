//! The running checks: one tokio task per distinct [`CheckTarget`], each driving
//! its [`HealthState`] with real time and reporting changes of health as
//! [`HealthEvent`]s.
//!
//! A result of this node's own fault (link down, no route, source address
//! gone) makes every target's view stale, not only the one that saw it:
//! the others' last results may predate the fault too. Each is checked
//! again at once, and none is settled until a fresh result is in.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time;

use super::probe;
use super::result::CheckResult;
use super::spec::CheckTarget;
use super::state::HealthState;
use crate::domain::{Health, HealthSource, LastCheckDuration};

/// Events that may wait for the controller before the checks themselves wait.
const EVENT_QUEUE: usize = 256;
/// Passive verdicts that may wait for a target's task: one is enough, the
/// task marks the target down once.
const PASSIVE_QUEUE: usize = 1;

/// A target the configuration wants checked, and its health before any check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredTarget {
    pub target: CheckTarget,
    /// [`Health::Down`] unless the backend is configured `initial = "up"`.
    pub initial: Health,
}

/// A change of a target's health, or its health becoming settled (then
/// `health` is the one it had).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthEvent {
    pub target: CheckTarget,
    pub health: Health,
    /// The result of the check that completed the change.
    pub reason: String,
    /// Wall-clock time of the change.
    pub at: SystemTime,
    /// Who made the change: the checks, or passive health.
    pub by: HealthSource,
    /// Whether the health is settled: a verdict of the checks, not the
    /// initial guess nor results from before a fault of this node
    /// ([`HealthState`]).
    pub settled: bool,
    /// Why this node cannot check the target, while it cannot; the health
    /// is the last one it knew.
    pub unknown: Option<String>,
}

/// A target's current health as of the events handed out so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetStatus {
    pub health: Health,
    /// Why it has this health: the initial state, or the check that changed it.
    pub reason: String,
    pub since: SystemTime,
    /// See [`HealthEvent::by`].
    pub by: HealthSource,
    /// See [`HealthEvent::settled`].
    pub settled: bool,
    /// See [`HealthEvent::unknown`].
    pub unknown: Option<String>,
    /// How long its last completed check took, written by its task.
    pub last_check: LastCheckDuration,
}

/// What [`HealthChecker::update`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UpdateSummary {
    pub started: usize,
    pub kept: usize,
    pub stopped: usize,
}

/// The checks of every configured target.
///
/// The controller owns it: it calls [`HealthChecker::update`] with the
/// targets of each new configuration and awaits [`HealthChecker::next_event`]
/// for changes. A target's status starts at its initial state (no event is
/// sent for it) and follows the events `next_event` returns, so the loop's
/// view and [`HealthChecker::status`] always agree.
#[derive(Debug)]
pub struct HealthChecker {
    running: HashMap<CheckTarget, RunningCheck>,
    events_tx: mpsc::Sender<TaggedEvent>,
    events_rx: mpsc::Receiver<TaggedEvent>,
    /// Tells each started task apart from earlier ones of the same target.
    next_generation: u64,
    /// Bumped by a task whose results turn unknown: every task marks its
    /// view stale.
    local_faults: Arc<watch::Sender<u64>>,
    unknown_results: UnknownResults,
    /// Whether [`HealthChecker::update`] starts a task that probes each new
    /// target; off only in tests that report health themselves.
    probing: bool,
}

/// How many check results were set aside as unknown since start, shared
/// with the checks (read it for metrics).
#[derive(Debug, Clone, Default)]
pub struct UnknownResults(Arc<AtomicU64>);

impl UnknownResults {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn count(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// A target's task; dropping it stops the task.
#[derive(Debug)]
struct RunningCheck {
    generation: u64,
    status: TargetStatus,
    /// Passive verdicts for the task ([`HealthChecker::mark_down`]).
    passive: mpsc::Sender<String>,
    /// `None` without probing.
    task: Option<JoinHandle<()>>,
}

impl Drop for RunningCheck {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// An event and the task generation that sent it.
#[derive(Debug)]
struct TaggedEvent {
    generation: u64,
    event: HealthEvent,
}

impl HealthChecker {
    pub fn new() -> Self {
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        HealthChecker {
            running: HashMap::new(),
            events_tx,
            events_rx,
            next_generation: 0,
            local_faults: Arc::new(watch::Sender::new(0)),
            unknown_results: UnknownResults::default(),
            probing: true,
        }
    }

    /// A checker that tracks its targets' statuses but probes nothing (no
    /// packet leaves a test): the test reports health itself.
    #[cfg(test)]
    pub fn without_probes() -> Self {
        HealthChecker {
            probing: false,
            ..HealthChecker::new()
        }
    }

    /// The count of results set aside as unknown, live.
    pub fn unknown_results(&self) -> UnknownResults {
        self.unknown_results.clone()
    }

    /// Checks exactly the `desired` targets from now on: starts the new ones,
    /// keeps the state and schedule of those already running, stops the others.
    ///
    /// A target listed several times (one backend in several services with the
    /// same check) is checked once; if its entries disagree on the initial
    /// state, it starts down.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (it spawns the checks' tasks).
    pub fn update(&mut self, desired: impl IntoIterator<Item = DesiredTarget>) -> UpdateSummary {
        let mut wanted: HashMap<CheckTarget, Health> = HashMap::new();
        for DesiredTarget { target, initial } in desired {
            wanted
                .entry(target)
                .and_modify(|health| {
                    if initial == Health::Down {
                        *health = Health::Down;
                    }
                })
                .or_insert(initial);
        }

        let before = self.running.len();
        self.running.retain(|target, _| wanted.contains_key(target));
        let mut summary = UpdateSummary {
            stopped: before - self.running.len(),
            ..UpdateSummary::default()
        };
        for (target, initial) in wanted {
            match self.running.entry(target) {
                Entry::Occupied(_) => summary.kept += 1,
                Entry::Vacant(slot) => {
                    let generation = self.next_generation;
                    self.next_generation += 1;
                    let target = slot.key().clone();
                    let state = HealthState::new(target.spec().params, initial, now());
                    let status = TargetStatus {
                        health: initial,
                        reason: state.last_change().reason.clone(),
                        since: SystemTime::now(),
                        by: HealthSource::Checks,
                        settled: state.is_settled(),
                        unknown: None,
                        last_check: LastCheckDuration::default(),
                    };
                    let (passive, verdicts) = mpsc::channel(PASSIVE_QUEUE);
                    let task = self.probing.then(|| {
                        tokio::spawn(run_checks(
                            target,
                            state,
                            verdicts,
                            Reporting {
                                generation,
                                events: self.events_tx.clone(),
                                local_faults: self.local_faults.clone(),
                                unknown_results: self.unknown_results.clone(),
                                last_check: status.last_check.clone(),
                            },
                        ))
                    });
                    slot.insert(RunningCheck {
                        generation,
                        status,
                        passive,
                        task,
                    });
                    summary.started += 1;
                }
            }
        }
        tracing::info!(
            started = summary.started,
            kept = summary.kept,
            stopped = summary.stopped,
            "health checks updated"
        );
        summary
    }

    /// The next change of health of a target still checked. Events of targets
    /// stopped by [`HealthChecker::update`] are dropped, including those of a
    /// target re-added since, whose new checks start afresh.
    ///
    /// Cancel safe, for `tokio::select!`. Never returns while no target is checked.
    pub async fn next_event(&mut self) -> HealthEvent {
        loop {
            let tagged = self
                .events_rx
                .recv()
                .await
                .expect("the checker holds a sender, so the channel stays open");
            match self.running.get_mut(&tagged.event.target) {
                Some(running) if running.generation == tagged.generation => {
                    let event = tagged.event;
                    running.status = TargetStatus {
                        health: event.health,
                        reason: event.reason.clone(),
                        since: event.at,
                        by: event.by,
                        settled: event.settled,
                        unknown: event.unknown.clone(),
                        last_check: running.status.last_check.clone(),
                    };
                    return event;
                }
                _ => {
                    tracing::debug!(check = %tagged.event.target, "dropped an event of stopped checks")
                }
            }
        }
    }

    /// Passive health's verdict on `target`: down for `reason` at once, if
    /// it is up; its checks then bring it back after `rise` passes. The
    /// change comes back as an event like any other. Returns whether the
    /// verdict was handed to the target's checks (not when it is not
    /// checked, or a verdict is already on its way).
    pub fn mark_down(&self, target: &CheckTarget, reason: String) -> bool {
        self.running
            .get(target)
            .is_some_and(|running| running.passive.try_send(reason).is_ok())
    }

    /// The status of `target`, if it is checked.
    pub fn status(&self, target: &CheckTarget) -> Option<&TargetStatus> {
        self.running.get(target).map(|running| &running.status)
    }

    /// Every checked target and its status.
    pub fn statuses(&self) -> impl Iterator<Item = (&CheckTarget, &TargetStatus)> {
        self.running
            .iter()
            .map(|(target, running)| (target, &running.status))
    }
}

impl Default for HealthChecker {
    fn default() -> Self {
        HealthChecker::new()
    }
}

/// The clock of the state machines: tokio's, so tests can pause it.
fn now() -> std::time::Instant {
    time::Instant::now().into_std()
}

/// Where a check task reports, besides its own state.
struct Reporting {
    generation: u64,
    events: mpsc::Sender<TaggedEvent>,
    local_faults: Arc<watch::Sender<u64>>,
    unknown_results: UnknownResults,
    last_check: LastCheckDuration,
}

/// What the controller sees of a [`HealthState`]: an event is sent when it changes.
fn view(state: &HealthState) -> (Health, bool, bool) {
    (
        state.health(),
        state.is_settled(),
        state.unknown().is_some(),
    )
}

/// Checks `target` forever on `state`'s schedule, sending each change of
/// health, of its settling and of its being unknown; marks it down on each
/// passive verdict received on `verdicts`.
async fn run_checks(
    target: CheckTarget,
    mut state: HealthState,
    mut verdicts: mpsc::Receiver<String>,
    reporting: Reporting,
) {
    let mut local_faults = reporting.local_faults.subscribe();
    loop {
        let before = view(&state);
        let change = tokio::select! {
            () = time::sleep_until(time::Instant::from_std(state.next_check_at())) => {
                let started = time::Instant::now();
                let result = probe::check(&target).await;
                reporting.last_check.record(started.elapsed());
                tracing::trace!(check = %target, %result, "health check");
                let turned_unknown =
                    matches!(result, CheckResult::Unknown(_)) && state.unknown().is_none();
                if matches!(result, CheckResult::Unknown(_)) {
                    reporting.unknown_results.count();
                }
                let change = state.record(now(), result);
                if turned_unknown {
                    tracing::warn!(
                        check = %target,
                        reason = state.unknown().unwrap_or_default(),
                        "health check result set aside as unknown: this node cannot check; every backend is checked again once it can"
                    );
                    reporting.local_faults.send_modify(|faults| *faults += 1);
                    local_faults.borrow_and_update();
                } else if before.2 && state.unknown().is_none() {
                    tracing::info!(check = %target, health = %state.health(), "health check possible again");
                }
                change
            }
            // Another target saw a fault of this node: results from before
            // it no longer count. (An error means no sender is left, which
            // cannot be while this task holds one.)
            _ = local_faults.changed() => {
                state.mark_stale(now());
                None
            }
            // The checker holds the sender as long as this task runs.
            Some(reason) = verdicts.recv() => state.mark_down(now(), reason),
        };
        if let Some(change) = &change {
            tracing::info!(check = %target, health = %change.health, reason = %change.reason, "backend health changed");
        } else if view(&state) == before {
            continue;
        }
        let last_change = state.last_change();
        let age = now().saturating_duration_since(last_change.at);
        let wall_now = SystemTime::now();
        let event = HealthEvent {
            target: target.clone(),
            health: last_change.health,
            reason: last_change.reason.clone(),
            at: wall_now.checked_sub(age).unwrap_or(wall_now),
            by: last_change.by,
            settled: state.is_settled(),
            unknown: state.unknown().map(str::to_owned),
        };
        let tagged = TaggedEvent {
            generation: reporting.generation,
            event,
        };
        if reporting.events.send(tagged).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;
    use std::time::Duration;

    use super::super::spec::{
        CheckSpec, HealthParams, HttpProbe, ProbeKind, ProbeSource, ProbeSpec,
    };
    use super::super::test_server::{Reply, StubServer};
    use super::*;

    const INTERVAL: Duration = Duration::from_millis(40);
    /// Far beyond the few intervals any expected event needs.
    const PATIENCE: Duration = Duration::from_secs(5);

    fn http_target(port: u16, rise: u32, fall: u32) -> CheckTarget {
        let kind = ProbeKind::Http(HttpProbe::new("/health").unwrap());
        let spec = CheckSpec {
            probe: ProbeSpec::new(kind, Duration::from_millis(500)).unwrap(),
            params: HealthParams::new(INTERVAL, rise, fall).unwrap(),
        };
        CheckTarget::new(Ipv4Addr::LOCALHOST, port, Arc::new(spec)).unwrap()
    }

    fn desired(target: &CheckTarget, initial: Health) -> DesiredTarget {
        DesiredTarget {
            target: target.clone(),
            initial,
        }
    }

    async fn next_event(checker: &mut HealthChecker) -> HealthEvent {
        time::timeout(PATIENCE, checker.next_event())
            .await
            .expect("an event within the patience")
    }

    /// Whether `checker` sends no event for `wait`.
    async fn stays_quiet(checker: &mut HealthChecker, wait: Duration) -> bool {
        time::timeout(wait, checker.next_event()).await.is_err()
    }

    #[tokio::test]
    async fn a_passive_verdict_marks_a_healthy_target_down_until_its_checks_bring_it_back() {
        let server = StubServer::start(Reply::http(200, "ok")).await;
        let target = http_target(server.port(), 2, 2);
        let mut checker = HealthChecker::new();
        checker.update([desired(&target, Health::Up)]);
        let reason = "passive: 3 handshakes not completed".to_owned();
        assert!(checker.mark_down(&target, reason.clone()));

        let down = next_event(&mut checker).await;
        assert_eq!(
            (down.health, down.by, &down.reason),
            (Health::Down, HealthSource::Passive, &reason)
        );
        assert_eq!(checker.status(&target).unwrap().by, HealthSource::Passive);
        let up = next_event(&mut checker).await;
        assert_eq!((up.health, up.by), (Health::Up, HealthSource::Checks));
        assert_eq!(up.reason, "HTTP status 200");
        let unchecked = http_target(server.port() ^ 1, 2, 2);
        assert!(!checker.mark_down(&unchecked, reason), "not checked here");
    }

    #[tokio::test]
    async fn a_backend_comes_up_goes_down_and_rejoins() {
        let server = StubServer::start(Reply::http(200, "ok")).await;
        let target = http_target(server.port(), 2, 2);
        let mut checker = HealthChecker::new();
        checker.update([desired(&target, Health::Down)]);
        assert_eq!(checker.status(&target).unwrap().health, Health::Down);

        let up = next_event(&mut checker).await;
        assert_eq!((&up.target, up.health), (&target, Health::Up));
        assert_eq!(up.reason, "HTTP status 200");
        assert!(server.requests().len() >= 2, "rise = 2 checks");
        assert_eq!(checker.status(&target).unwrap().health, Health::Up);

        server.set_reply(Reply::http(503, "maintenance"));
        let down = next_event(&mut checker).await;
        assert_eq!(down.health, Health::Down);
        assert_eq!(down.reason, "HTTP status 503 (expected 200-399)");
        let status = checker.status(&target).unwrap();
        assert_eq!(
            (status.health, &status.reason, status.since),
            (Health::Down, &down.reason, down.at)
        );

        server.set_reply(Reply::http(200, "ok"));
        assert_eq!(next_event(&mut checker).await.health, Health::Up);
    }

    #[tokio::test]
    async fn a_fault_of_this_node_is_unknown_and_makes_every_view_stale() {
        let server = StubServer::start(Reply::http(200, "ok")).await;
        let healthy = http_target(server.port(), 1, 1);
        // A probe this node cannot make: its source interface does not exist.
        let kind = ProbeKind::Http(HttpProbe::new("/health").unwrap());
        let source = ProbeSource::default()
            .with_interface("no-such-if0")
            .unwrap();
        let spec = CheckSpec {
            probe: ProbeSpec::new(kind, Duration::from_millis(500))
                .unwrap()
                .with_source(source),
            params: HealthParams::new(INTERVAL * 50, 1, 1).unwrap(),
        };
        let unreachable =
            CheckTarget::new(Ipv4Addr::LOCALHOST, server.port(), Arc::new(spec)).unwrap();
        let mut checker = HealthChecker::new();
        checker.update([desired(&healthy, Health::Up)]);
        assert!(
            stays_quiet(&mut checker, INTERVAL * 2).await,
            "up and settled from the start"
        );
        let checks_before = server.requests().len();

        checker.update([
            desired(&healthy, Health::Up),
            desired(&unreachable, Health::Up),
        ]);
        let mut saw_stale = false;
        let mut unknown = None;
        while unknown.is_none() || !saw_stale || !checker.status(&healthy).unwrap().settled {
            let event = next_event(&mut checker).await;
            if event.target == unreachable {
                assert_eq!(event.health, Health::Up, "the last health stands");
                assert!(!event.settled);
                unknown = event.unknown;
            } else {
                saw_stale |= !event.settled;
            }
        }
        assert!(unknown
            .unwrap()
            .starts_with("cannot prepare the probe socket: bind to interface no-such-if0"),);
        assert!(
            server.requests().len() > checks_before,
            "the healthy target was checked again at once, long before its interval"
        );
        assert_eq!(checker.unknown_results().get(), 1);
        let status = checker.status(&unreachable).unwrap();
        assert_eq!((status.health, status.settled), (Health::Up, false));
    }

    #[tokio::test]
    async fn a_dead_backend_that_starts_down_settles_after_rise_checks() {
        let server = StubServer::start(Reply::http(503, "no")).await;
        let target = http_target(server.port(), 2, 2);
        let mut checker = HealthChecker::new();
        checker.update([desired(&target, Health::Down)]);
        assert!(!checker.status(&target).unwrap().settled);
        let settled = next_event(&mut checker).await;
        assert_eq!((settled.health, settled.settled), (Health::Down, true));
        assert!(server.requests().len() >= 2, "rise = 2 checks");
        let status = checker.status(&target).unwrap();
        assert_eq!((status.health, status.settled), (Health::Down, true));
        // Nothing more while nothing changes.
        assert!(stays_quiet(&mut checker, INTERVAL * 2).await);
    }

    #[tokio::test]
    async fn a_stopped_server_is_reported_down_with_the_reason() {
        let server = StubServer::start(Reply::http(200, "ok")).await;
        let target = http_target(server.port(), 1, 2);
        let mut checker = HealthChecker::new();
        checker.update([desired(&target, Health::Up)]);
        drop(server);
        let down = next_event(&mut checker).await;
        assert_eq!(down.health, Health::Down);
        assert_eq!(down.reason, "connection refused");
        // Each completed check records how long it took.
        let last_check = &checker.status(&target).unwrap().last_check;
        assert!(last_check.get().is_some());
    }

    #[tokio::test]
    async fn a_target_listed_by_several_services_is_checked_once() {
        let server = StubServer::start(Reply::http(200, "ok")).await;
        // Two services build the same check separately.
        let first = http_target(server.port(), 1, 1);
        let second = http_target(server.port(), 1, 1);
        let mut checker = HealthChecker::new();
        let summary = checker.update([
            desired(&first, Health::Down),
            desired(&second, Health::Down),
        ]);
        assert_eq!(summary.started, 1);
        assert_eq!(checker.statuses().count(), 1);
        assert_eq!(next_event(&mut checker).await.health, Health::Up);
        assert!(
            stays_quiet(&mut checker, INTERVAL * 3).await,
            "one task, one event"
        );
    }

    #[tokio::test]
    async fn disagreeing_initial_states_of_one_target_start_it_down() {
        let server = StubServer::start(Reply::Silent).await;
        let target = http_target(server.port(), 2, 2);
        let mut checker = HealthChecker::new();
        checker.update([desired(&target, Health::Up), desired(&target, Health::Down)]);
        assert_eq!(checker.status(&target).unwrap().health, Health::Down);
    }

    #[tokio::test]
    async fn update_keeps_unchanged_targets_and_stops_removed_ones() {
        let kept_server = StubServer::start(Reply::http(200, "ok")).await;
        let removed_server = StubServer::start(Reply::http(200, "ok")).await;
        let kept = http_target(kept_server.port(), 1, 1);
        let removed = http_target(removed_server.port(), 1, 1);
        let mut checker = HealthChecker::new();
        checker.update([
            desired(&kept, Health::Down),
            desired(&removed, Health::Down),
        ]);
        for _ in 0..2 {
            assert_eq!(next_event(&mut checker).await.health, Health::Up);
        }

        let added_server = StubServer::start(Reply::http(200, "ok")).await;
        let added = http_target(added_server.port(), 1, 1);
        let summary = checker.update([desired(&kept, Health::Down), desired(&added, Health::Down)]);
        assert_eq!(
            summary,
            UpdateSummary {
                started: 1,
                kept: 1,
                stopped: 1
            }
        );
        assert_eq!(
            checker.status(&kept).unwrap().health,
            Health::Up,
            "state kept, not reset to the initial down"
        );
        assert_eq!(checker.status(&removed), None);
        let event = next_event(&mut checker).await;
        assert_eq!((event.target, event.health), (added, Health::Up));

        // The removed target's task is gone: its server sees no more checks.
        time::sleep(INTERVAL).await;
        let checks = removed_server.requests().len();
        time::sleep(INTERVAL * 4).await;
        assert_eq!(removed_server.requests().len(), checks);
    }

    #[tokio::test]
    async fn events_of_a_removed_target_are_not_handed_out() {
        let server = StubServer::start(Reply::Silent).await;
        let target = http_target(server.port(), 2, 2);
        let mut checker = HealthChecker::new();
        checker.update([desired(&target, Health::Down)]);
        let stale_generation = checker.running[&target].generation;
        checker.update([]);
        checker.update([desired(&target, Health::Down)]);

        // An event the first task had queued before it was stopped.
        let stale = HealthEvent {
            target: target.clone(),
            health: Health::Up,
            reason: "HTTP status 200".to_owned(),
            at: SystemTime::now(),
            settled: true,
            unknown: None,
            by: crate::domain::HealthSource::Checks,
        };
        checker
            .events_tx
            .send(TaggedEvent {
                generation: stale_generation,
                event: stale,
            })
            .await
            .unwrap();
        assert!(stays_quiet(&mut checker, INTERVAL * 3).await);
        assert_eq!(checker.status(&target).unwrap().health, Health::Down);
    }

    /// Targets that hang, reset, trickle, or send an endless body or head
    /// are each reported down within their timeout, with their reason,
    /// while a healthy target beside them keeps its cadence.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn misbehaving_targets_go_down_and_the_others_keep_their_cadence() {
        const CADENCE: Duration = Duration::from_millis(100);
        const TIMEOUT: Duration = Duration::from_millis(300);
        let spec = Arc::new(CheckSpec {
            probe: ProbeSpec::new(
                ProbeKind::Http(
                    HttpProbe::new("/health")
                        .unwrap()
                        .with_expect_body("ok")
                        .unwrap(),
                ),
                TIMEOUT,
            )
            .unwrap(),
            params: HealthParams::new(CADENCE, 1, 1).unwrap(),
        });
        let target = |server: &StubServer| {
            CheckTarget::new(Ipv4Addr::LOCALHOST, server.port(), Arc::clone(&spec)).unwrap()
        };
        let healthy = StubServer::start(Reply::http(200, "ok")).await;
        let timeout = &["HTTP response timeout after 300ms"][..];
        let faulty = [
            (Reply::Silent, timeout),
            // The RST may beat the end of the handshake on the client side.
            (
                Reply::Reset,
                &["connect failed: ", "HTTP exchange failed: "][..],
            ),
            (Reply::Trickle, timeout),
            (
                Reply::EndlessBody,
                &["response body does not contain \"ok\""][..],
            ),
            (Reply::EndlessHeader, &["HTTP exchange failed: "][..]),
        ];
        let mut servers = Vec::new();
        for (reply, reason) in faulty {
            servers.push((StubServer::start(reply).await, reason));
        }
        let mut checker = HealthChecker::new();
        let started = time::Instant::now();
        checker.update(
            std::iter::once(desired(&target(&healthy), Health::Up)).chain(
                servers
                    .iter()
                    .map(|(server, _)| desired(&target(server), Health::Up)),
            ),
        );

        let mut down = Vec::new();
        while down.len() < servers.len() {
            let event = next_event(&mut checker).await;
            assert_eq!(event.health, Health::Down, "{event:?}");
            assert!(
                started.elapsed() < TIMEOUT * 2,
                "{} went down after {:?}",
                event.target,
                started.elapsed()
            );
            down.push(event);
        }
        for (server, reasons) in &servers {
            let event = down
                .iter()
                .find(|event| event.target == target(server))
                .expect("every faulty target went down");
            assert!(
                reasons
                    .iter()
                    .any(|reason| event.reason.starts_with(reason)),
                "{}",
                event.reason
            );
        }

        // Watch the healthy target for a while longer.
        time::sleep(CADENCE * 12).await;
        assert_eq!(
            checker.status(&target(&healthy)).unwrap().health,
            Health::Up
        );
        let times = healthy.request_times();
        assert!(times.len() >= 10, "{} checks", times.len());
        for gap in times.windows(2).map(|pair| pair[1] - pair[0]) {
            assert!(gap < CADENCE * 2, "a gap of {gap:?} between checks");
        }
    }

    #[tokio::test]
    async fn dropping_the_checker_stops_every_check() {
        let server = StubServer::start(Reply::http(200, "ok")).await;
        let target = http_target(server.port(), 1, 1);
        let mut checker = HealthChecker::new();
        checker.update([desired(&target, Health::Down)]);
        next_event(&mut checker).await;
        drop(checker);
        time::sleep(INTERVAL).await;
        let checks = server.requests().len();
        time::sleep(INTERVAL * 4).await;
        assert_eq!(server.requests().len(), checks);
    }
}
