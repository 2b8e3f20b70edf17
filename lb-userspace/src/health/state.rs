//! The health state machine of one check target: rise/fall counting and the
//! check schedule, with HAProxy's semantics. Pure: no IO, the clock is passed in.

use std::time::{Duration, Instant};

use super::result::CheckResult;
use super::spec::HealthParams;
use crate::domain::{Health, HealthSource};

/// A change of health (or the initial state), when and why it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub health: Health,
    pub at: Instant,
    /// The result of the check that completed the change, e.g.
    /// "HTTP status 503 (expected 200-399)" or "connection refused", or
    /// the passive verdict.
    pub reason: String,
    /// Who made the change: the checks, or passive health.
    pub by: HealthSource,
}

/// The health of one target and when to check it next.
///
/// - A backend goes down after `fall` consecutive failures while up, and up
///   after `rise` consecutive passes while down; a result that agrees with the
///   current state resets the count.
/// - The next check is due `interval` after the previous one was due while up
///   and stable, `fastinter` while a transition is in progress (at least one
///   result disagrees with the current state), `downinter` while down and
///   stable. When a check overruns its slot the next one is due that long
///   after the check completed, so checks never run back to back.
/// - The first check is due at creation.
/// - The health is settled (a verdict of the checks, the same on every node
///   that checks the same backend) once `rise` checks have completed, or at
///   once if it starts up: a healthy backend that starts down is up by then.
/// - A result of this node's own fault ([`CheckResult::Unknown`]) counts
///   neither way: the health stays, but the view is stale. So is every
///   target's when any of them sees such a fault ([`HealthState::mark_stale`]),
///   since results from before it may no longer hold. A stale target is
///   checked at `fastinter` and is not settled again until a fresh result
///   agrees with its health or the fresh results change it.
/// - Passive health can mark an up target down at once
///   ([`HealthState::mark_down`]); from there the checks bring it back up
///   after `rise` passes, as after any other fall (HAProxy's `observe
///   layer4` with `on-error mark-down`).
#[derive(Debug, Clone)]
pub struct HealthState {
    params: HealthParams,
    health: Health,
    /// Consecutive results that contradict `health`: failures while up, passes while down.
    contradicting: u32,
    last_change: Transition,
    next_check_at: Instant,
    /// Checks still to complete before the health is settled.
    checks_to_settle: u32,
    /// Whether the results so far predate a fault of this node, so the
    /// health waits for a fresh verdict.
    stale: bool,
    /// Why the last result was unknown, while the results are unknown.
    unknown: Option<String>,
}

impl HealthState {
    /// A target in its `initial` state at `now`, to be checked at once.
    pub fn new(params: HealthParams, initial: Health, now: Instant) -> Self {
        let checks_to_settle = match initial {
            Health::Down => params.rise(),
            Health::Up => 0,
        };
        let reason = match initial {
            Health::Down => format!(
                "initial state: down until {} consecutive checks pass",
                params.rise()
            ),
            Health::Up => "initial state: up as configured".to_owned(),
        };
        HealthState {
            params,
            health: initial,
            contradicting: 0,
            last_change: Transition {
                health: initial,
                at: now,
                reason,
                by: HealthSource::Checks,
            },
            next_check_at: now,
            checks_to_settle,
            stale: false,
            unknown: None,
        }
    }

    /// Counts the `result` of the check that completed at `now` and schedules
    /// the next one; returns the transition this result completed, if any.
    pub fn record(&mut self, now: Instant, result: CheckResult) -> Option<Transition> {
        let passed = match &result {
            CheckResult::Pass(_) => true,
            CheckResult::Fail(_) => false,
            CheckResult::Unknown(fault) => {
                self.unknown = Some(fault.to_string());
                self.make_stale();
                self.schedule(now);
                return None;
            }
        };
        self.unknown = None;
        self.checks_to_settle = self.checks_to_settle.saturating_sub(1);
        let agrees = passed == (self.health == Health::Up);
        self.contradicting = if agrees { 0 } else { self.contradicting + 1 };
        let needed = match self.health {
            Health::Up => self.params.fall(),
            Health::Down => self.params.rise(),
        };
        let transition = (self.contradicting >= needed).then(|| {
            self.health = self.health.opposite();
            self.contradicting = 0;
            self.last_change = Transition {
                health: self.health,
                at: now,
                reason: result.to_string(),
                by: HealthSource::Checks,
            };
            self.last_change.clone()
        });
        if agrees || transition.is_some() {
            self.stale = false;
        }
        self.schedule(now);
        transition
    }

    /// Marks an up target down at `now` for passive health's `reason`, and
    /// brings its next check forward to `fastinter` from now so that a
    /// false verdict is undone soon; returns the transition, or `None` if
    /// it was down already.
    pub fn mark_down(&mut self, now: Instant, reason: String) -> Option<Transition> {
        if self.health == Health::Down {
            return None;
        }
        self.health = Health::Down;
        self.contradicting = 0;
        self.last_change = Transition {
            health: Health::Down,
            at: now,
            reason,
            by: HealthSource::Passive,
        };
        self.next_check_at = self.next_check_at.min(now + self.params.fastinter());
        Some(self.last_change.clone())
    }

    /// Marks the results so far as stale (see [`HealthState`]) and brings
    /// the next check forward to `now`; returns false if they already were.
    pub fn mark_stale(&mut self, now: Instant) -> bool {
        if self.stale {
            return false;
        }
        self.make_stale();
        self.next_check_at = self.next_check_at.min(now);
        true
    }

    fn make_stale(&mut self) {
        self.stale = true;
        // Results from before the fault do not add up with fresh ones.
        self.contradicting = 0;
    }

    /// Schedules the next check after the one that completed at `now`.
    fn schedule(&mut self, now: Instant) {
        let slot = self.current_interval();
        let due = self.next_check_at + slot;
        self.next_check_at = if due > now { due } else { now + slot };
    }

    /// Why the last result was unknown, while the results are unknown.
    pub fn unknown(&self) -> Option<&str> {
        self.unknown.as_deref()
    }

    pub fn health(&self) -> Health {
        self.health
    }

    /// The last change of health, or the initial state if none happened yet.
    pub fn last_change(&self) -> &Transition {
        &self.last_change
    }

    /// Whether the health is settled (see [`HealthState`]).
    pub fn is_settled(&self) -> bool {
        self.checks_to_settle == 0 && !self.stale
    }

    pub fn next_check_at(&self) -> Instant {
        self.next_check_at
    }

    /// Whether some results contradict the current health without having changed it yet.
    pub fn is_transitioning(&self) -> bool {
        self.contradicting > 0
    }

    fn current_interval(&self) -> Duration {
        if self.is_transitioning() || self.stale {
            self.params.fastinter()
        } else {
            match self.health {
                Health::Up => self.params.interval(),
                Health::Down => self.params.downinter(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::result::{CheckFailure, CheckPass, LocalFault};
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(2);
    const FASTINTER: Duration = Duration::from_millis(500);
    const DOWNINTER: Duration = Duration::from_secs(5);
    /// How long each simulated check takes.
    const CHECK_TIME: Duration = Duration::from_millis(10);

    fn params(rise: u32, fall: u32) -> HealthParams {
        HealthParams::new(INTERVAL, rise, fall)
            .unwrap()
            .with_fastinter(FASTINTER)
            .unwrap()
            .with_downinter(DOWNINTER)
            .unwrap()
    }

    fn pass() -> CheckResult {
        CheckResult::Pass(CheckPass::HttpStatus(200))
    }

    fn fail() -> CheckResult {
        CheckResult::Fail(CheckFailure::ConnectionRefused)
    }

    /// A state machine and a fake clock that runs each check when it is due.
    struct Driver {
        state: HealthState,
        start: Instant,
    }

    impl Driver {
        fn new(rise: u32, fall: u32, initial: Health) -> Self {
            let start = Instant::now();
            Driver {
                state: HealthState::new(params(rise, fall), initial, start),
                start,
            }
        }

        /// Runs the due check with `result`; returns the transition it caused.
        fn check(&mut self, result: CheckResult) -> Option<Transition> {
            let finished = self.state.next_check_at() + CHECK_TIME;
            self.state.record(finished, result)
        }

        /// Runs one check per result; returns the interval scheduled after each.
        fn run(&mut self, results: Vec<CheckResult>) -> Vec<Duration> {
            results
                .into_iter()
                .map(|result| {
                    let due = self.state.next_check_at();
                    self.check(result);
                    self.state.next_check_at() - due
                })
                .collect()
        }
    }

    #[test]
    fn settles_after_rise_checks_whatever_they_say_or_at_once_if_it_starts_up() {
        let mut healthy = Driver::new(3, 2, Health::Down);
        let mut dead = Driver::new(3, 2, Health::Down);
        for _ in 0..2 {
            assert!(!healthy.state.is_settled() && !dead.state.is_settled());
            healthy.check(pass());
            dead.check(fail());
        }
        assert!(!healthy.state.is_settled() && !dead.state.is_settled());
        healthy.check(pass());
        dead.check(fail());
        assert!(healthy.state.is_settled() && dead.state.is_settled());
        assert_eq!(healthy.state.health(), Health::Up);
        assert_eq!(dead.state.health(), Health::Down);
        // Settled stays settled.
        healthy.check(fail());
        assert!(healthy.state.is_settled());
        assert!(Driver::new(3, 2, Health::Up).state.is_settled());
    }

    #[test]
    fn starts_down_and_needs_rise_consecutive_passes() {
        let mut driver = Driver::new(3, 2, Health::Down);
        assert_eq!(driver.state.health(), Health::Down);
        assert_eq!(driver.state.next_check_at(), driver.start);
        assert_eq!(driver.check(pass()), None);
        assert_eq!(driver.check(pass()), None);
        let up = driver.check(pass()).expect("third pass brings it up");
        assert_eq!(up.health, Health::Up);
        assert_eq!(up.reason, "HTTP status 200");
        assert_eq!(driver.state.health(), Health::Up);
    }

    #[test]
    fn configured_initial_up_starts_up_and_is_checked_at_once() {
        let mut driver = Driver::new(2, 3, Health::Up);
        assert_eq!(driver.state.health(), Health::Up);
        assert_eq!(driver.state.last_change().at, driver.start);
        assert_eq!(
            driver.state.last_change().reason,
            "initial state: up as configured"
        );
        assert_eq!(driver.state.next_check_at(), driver.start);
        assert_eq!(
            driver.check(pass()),
            None,
            "an agreeing result changes nothing"
        );
    }

    #[test]
    fn initial_down_reason_says_how_many_passes_are_needed() {
        let driver = Driver::new(2, 3, Health::Down);
        let initial = driver.state.last_change();
        assert_eq!(initial.health, Health::Down);
        assert_eq!(initial.at, driver.start);
        assert_eq!(
            initial.reason,
            "initial state: down until 2 consecutive checks pass"
        );
    }

    #[test]
    fn goes_down_after_fall_consecutive_failures() {
        let mut driver = Driver::new(2, 3, Health::Up);
        assert_eq!(driver.check(fail()), None);
        assert_eq!(driver.check(fail()), None);
        let down = driver.check(fail()).expect("third failure brings it down");
        assert_eq!(down.health, Health::Down);
        assert_eq!(down.reason, "connection refused");
    }

    #[test]
    fn a_passive_verdict_marks_an_up_target_down_and_rise_passes_bring_it_back() {
        let mut driver = Driver::new(2, 3, Health::Up);
        assert_eq!(driver.check(fail()), None, "one failure under way");
        let now = driver.state.next_check_at();
        let down = driver
            .state
            .mark_down(now, "passive: 3 handshakes not completed".into())
            .expect("up, so marked down");
        assert_eq!(
            (down.health, down.by, down.reason.as_str()),
            (
                Health::Down,
                HealthSource::Passive,
                "passive: 3 handshakes not completed"
            )
        );
        assert!(driver.state.next_check_at() <= now + FASTINTER);
        assert_eq!(driver.state.mark_down(now, "again".into()), None);
        // The checks still pass: `rise` of them bring it back, by the checks.
        assert_eq!(driver.check(pass()), None);
        let up = driver.check(pass()).expect("rise = 2 passes");
        assert_eq!((up.health, up.by), (Health::Up, HealthSource::Checks));
    }

    #[test]
    fn a_pass_between_failures_restarts_the_fall_count() {
        let mut driver = Driver::new(2, 3, Health::Up);
        for result in [fail(), fail(), pass(), fail(), fail()] {
            assert_eq!(driver.check(result), None);
        }
        assert_eq!(driver.state.health(), Health::Up);
        assert!(driver.check(fail()).is_some(), "3 failures since the pass");
    }

    #[test]
    fn a_failure_between_passes_restarts_the_rise_count() {
        let mut driver = Driver::new(3, 2, Health::Down);
        for result in [pass(), pass(), fail(), pass(), pass()] {
            assert_eq!(driver.check(result), None);
        }
        assert_eq!(driver.state.health(), Health::Down);
        assert!(driver.check(pass()).is_some(), "3 passes since the failure");
    }

    #[test]
    fn rise_and_fall_of_one_change_state_on_the_first_contradicting_result() {
        let mut driver = Driver::new(1, 1, Health::Down);
        assert_eq!(driver.check(pass()).unwrap().health, Health::Up);
        assert_eq!(driver.check(fail()).unwrap().health, Health::Down);
        assert_eq!(driver.check(fail()), None);
    }

    #[test]
    fn fastinter_is_used_exactly_while_a_transition_is_in_progress() {
        let mut driver = Driver::new(2, 3, Health::Up);
        let intervals = driver.run(vec![
            pass(), // stable up
            fail(), // going down: 1/3
            fail(), // 2/3
            pass(), // back to stable up
            fail(), // 1/3
            fail(), // 2/3
            fail(), // down: stable down
            fail(), // stable down
            pass(), // going up: 1/2
            pass(), // up: stable up
        ]);
        assert_eq!(
            intervals,
            [
                INTERVAL, FASTINTER, FASTINTER, INTERVAL, FASTINTER, FASTINTER, DOWNINTER,
                DOWNINTER, FASTINTER, INTERVAL
            ]
        );
    }

    #[test]
    fn initial_down_uses_downinter_until_a_check_passes() {
        let mut driver = Driver::new(2, 3, Health::Down);
        let intervals = driver.run(vec![fail(), fail(), pass(), fail(), pass(), pass()]);
        assert_eq!(
            intervals,
            [DOWNINTER, DOWNINTER, FASTINTER, DOWNINTER, FASTINTER, INTERVAL]
        );
    }

    #[test]
    fn next_check_is_due_one_interval_after_the_previous_was_due() {
        let mut driver = Driver::new(2, 3, Health::Up);
        // A check that took 800 ms does not push the schedule back.
        driver
            .state
            .record(driver.start + Duration::from_millis(800), pass());
        assert_eq!(driver.state.next_check_at(), driver.start + INTERVAL);
    }

    #[test]
    fn a_check_that_overruns_its_slot_reschedules_from_its_completion() {
        let mut driver = Driver::new(2, 3, Health::Up);
        driver.check(fail()); // now transitioning: fastinter of 500 ms
        let due = driver.state.next_check_at();
        let finished = due + Duration::from_millis(700);
        driver.state.record(finished, fail());
        assert_eq!(driver.state.next_check_at(), finished + FASTINTER);
    }

    #[test]
    fn last_change_keeps_the_time_and_reason_of_the_latest_transition() {
        let mut driver = Driver::new(1, 2, Health::Down);
        let up_at = driver.state.next_check_at() + CHECK_TIME;
        driver.check(pass());
        assert_eq!(driver.state.last_change().at, up_at);
        assert_eq!(driver.state.last_change().reason, "HTTP status 200");

        let timeout = CheckResult::Fail(CheckFailure::ConnectTimeout(Duration::from_secs(1)));
        driver.check(fail());
        assert_eq!(driver.state.last_change().health, Health::Up, "1/2 only");
        let down_at = driver.state.next_check_at() + CHECK_TIME;
        let down = driver.check(timeout).unwrap();
        assert_eq!(down.at, down_at);
        assert_eq!(down.reason, "connect timeout after 1s");
        assert_eq!(driver.state.last_change(), &down);

        driver.check(fail());
        assert_eq!(driver.state.last_change(), &down, "no change, same record");
    }

    fn unknown() -> CheckResult {
        CheckResult::Unknown(LocalFault::Unreachable(
            "Network is unreachable (os error 101)".into(),
        ))
    }

    #[test]
    fn unknown_results_count_neither_way_and_leave_the_view_stale() {
        let mut driver = Driver::new(2, 3, Health::Up);
        // Two real failures, then the node's own link goes down: the
        // unknown results must not complete the fall.
        driver.check(fail());
        driver.check(fail());
        for _ in 0..5 {
            assert_eq!(driver.check(unknown()), None);
        }
        assert_eq!(driver.state.health(), Health::Up);
        assert!(!driver.state.is_settled());
        assert_eq!(
            driver.state.unknown(),
            Some("this node cannot reach the backend: Network is unreachable (os error 101)")
        );
        // Back: one fresh pass agrees with the health and settles it.
        driver.check(pass());
        assert_eq!(driver.state.unknown(), None);
        assert!(driver.state.is_settled());
        assert_eq!(driver.state.health(), Health::Up);
    }

    #[test]
    fn a_stale_view_needs_fresh_results_and_old_failures_do_not_add_up() {
        let mut driver = Driver::new(2, 3, Health::Up);
        driver.check(fail());
        driver.check(fail());
        driver.check(unknown());
        // Fresh failures start their own count: the two from before the
        // fault are forgotten.
        driver.check(fail());
        driver.check(fail());
        assert_eq!(driver.state.health(), Health::Up);
        assert!(!driver.state.is_settled(), "contradicted, not yet changed");
        let down = driver.check(fail()).expect("third fresh failure");
        assert_eq!(down.health, Health::Down);
        assert!(driver.state.is_settled(), "a fresh verdict");
    }

    #[test]
    fn a_stale_target_is_checked_at_once_and_then_at_fastinter() {
        let mut driver = Driver::new(2, 3, Health::Up);
        driver.check(pass());
        assert_eq!(driver.state.next_check_at() - driver.start, INTERVAL);
        let now = driver.start + Duration::from_millis(100);
        assert!(driver.state.mark_stale(now));
        assert!(!driver.state.mark_stale(now), "already stale");
        assert_eq!(driver.state.next_check_at(), now);
        assert!(!driver.state.is_settled());
        let intervals = driver.run(vec![unknown(), unknown(), fail(), pass()]);
        assert_eq!(intervals, [FASTINTER, FASTINTER, FASTINTER, INTERVAL]);
        assert!(driver.state.is_settled());
    }

    #[test]
    fn unknown_results_do_not_settle_a_backend_that_starts_down() {
        let mut driver = Driver::new(2, 3, Health::Down);
        driver.check(unknown());
        driver.check(unknown());
        assert!(!driver.state.is_settled());
        driver.check(pass());
        driver.check(pass());
        assert_eq!(driver.state.health(), Health::Up);
        assert!(driver.state.is_settled());
    }
}
