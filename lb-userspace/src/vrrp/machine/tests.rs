//! Every row of RFC 9568 §6.4.1-6.4.3, the additions, and whole-pair runs,
//! stepped with a fake clock.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::*;
use crate::vrrp::config::{AdvertInterval, VrrpConfig};

const SECOND: Duration = Duration::from_secs(1);
const LOW_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const OWN_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const HIGH_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
const VRID: u8 = 51;

fn config(priority: u8) -> VrrpConfig {
    VrrpConfig::new("eth0", VRID, priority, vec![VIP])
}

/// An instance of `config` on the node whose address is `OWN_ADDRESS`.
fn instance(config: &VrrpConfig) -> Instance {
    Instance::new(config, OWN_ADDRESS)
}

fn interval(interval: Duration) -> AdvertInterval {
    AdvertInterval::from_duration(interval).expect("whole centiseconds")
}

fn drain(instance: &mut Instance) -> Vec<Action> {
    std::iter::from_fn(|| instance.poll_action()).collect()
}

fn advert(priority: u8, interval: Duration) -> Advert {
    Advert {
        vrid: VRID,
        priority,
        max_advert_interval: u16::try_from(interval.as_millis() / 10).unwrap(),
        addresses: vec![VIP],
    }
}

/// A backup at priority 100 (1 s adverts) started at the returned instant.
fn started_backup(config: &VrrpConfig) -> (Instance, Instant) {
    let mut instance = instance(config);
    let t0 = Instant::now();
    instance.handle_startup(t0);
    drain(&mut instance);
    (instance, t0)
}

/// An instance driven to Master through its Master_Down_Timer; returns the
/// instant it became master.
fn started_master(config: &VrrpConfig) -> (Instance, Instant) {
    let (mut instance, _) = started_backup(config);
    let t = instance.poll_timeout().unwrap();
    instance.handle_timeout(t);
    drain(&mut instance);
    assert_eq!(instance.state(), State::Master);
    (instance, t)
}

fn became_master(from: State, priority: u8) -> Vec<Action> {
    vec![
        Action::AddVirtualAddresses,
        Action::SendAdvert { priority },
        Action::SendGratuitousArp,
        Action::StateChanged {
            from,
            to: State::Master,
        },
    ]
}

// ---- timers -------------------------------------------------------------

#[test]
fn skew_time_and_master_down_interval_follow_the_rfc_formulas() {
    let (instance, _) = started_backup(&config(100));
    // (256 - 100) * 1 s / 256 = 0.609375 s
    assert_eq!(instance.skew_time(), Duration::from_micros(609_375));
    assert_eq!(
        instance.master_down_interval(),
        Duration::from_micros(3_609_375)
    );
    let mut fast = config(150);
    fast.advert_interval = interval(Duration::from_millis(100));
    let (instance, _) = started_backup(&fast);
    // (256 - 150) * 100 ms / 256 = 41.40625 ms
    assert_eq!(instance.skew_time(), Duration::from_nanos(41_406_250));
    assert_eq!(
        instance.master_down_interval(),
        Duration::from_nanos(341_406_250)
    );
}

// ---- §6.4.1 Initialize --------------------------------------------------

#[test]
fn initialize_startup_of_a_non_owner_enters_backup() {
    let mut instance = instance(&config(100));
    let t0 = Instant::now();
    instance.handle_startup(t0);
    assert_eq!(instance.state(), State::Backup);
    assert_eq!(
        drain(&mut instance),
        [
            // Left over by a killed predecessor, they must go (§6.4.2).
            Action::RemoveVirtualAddresses,
            Action::StateChanged {
                from: State::Initialize,
                to: State::Backup
            }
        ]
    );
    assert_eq!(instance.master_adver_interval(), SECOND);
    assert_eq!(
        instance.poll_timeout(),
        Some(t0 + Duration::from_micros(3_609_375))
    );
}

#[test]
fn initialize_startup_of_the_owner_goes_straight_to_master() {
    let mut instance = instance(&config(255));
    let t0 = Instant::now();
    instance.handle_startup(t0);
    assert_eq!(instance.state(), State::Master);
    assert_eq!(drain(&mut instance), became_master(State::Initialize, 255));
    assert_eq!(instance.master_address(), Some(OWN_ADDRESS));
    assert_eq!(instance.poll_timeout(), Some(t0 + SECOND));
}

#[test]
fn initialize_ignores_everything_but_startup() {
    let mut instance = instance(&config(100));
    let t0 = Instant::now();
    instance.handle_timeout(t0 + SECOND * 100);
    instance.handle_shutdown(t0);
    instance.handle_fault_cleared(t0);
    instance.set_priority(t0, 50);
    assert_eq!(
        instance.handle_advert(t0, HIGH_ADDRESS, &advert(200, SECOND)),
        Ok(())
    );
    assert_eq!(instance.state(), State::Initialize);
    assert_eq!(instance.poll_timeout(), None);
    assert_eq!(drain(&mut instance), []);
}

// ---- §6.4.2 Backup -------------------------------------------------------

#[test]
fn backup_shutdown_cancels_the_timer_and_returns_to_initialize() {
    let (mut instance, t0) = started_backup(&config(100));
    instance.handle_shutdown(t0 + SECOND);
    assert_eq!(instance.state(), State::Initialize);
    assert_eq!(
        drain(&mut instance),
        [Action::StateChanged {
            from: State::Backup,
            to: State::Initialize
        }]
    );
    assert_eq!(instance.poll_timeout(), None);
    instance.handle_timeout(t0 + SECOND * 10);
    assert_eq!(drain(&mut instance), []);
}

#[test]
fn backup_master_down_timer_expiry_makes_it_master() {
    let (mut instance, _) = started_backup(&config(100));
    let deadline = instance.poll_timeout().unwrap();
    instance.handle_timeout(deadline - Duration::from_nanos(1));
    assert_eq!(instance.state(), State::Backup);
    assert_eq!(drain(&mut instance), []);
    instance.handle_timeout(deadline);
    assert_eq!(drain(&mut instance), became_master(State::Backup, 100));
    assert_eq!(instance.poll_timeout(), Some(deadline + SECOND));
}

#[test]
fn backup_priority_zero_advert_sets_the_timer_to_skew_time() {
    let (mut instance, t0) = started_backup(&config(100));
    let t = t0 + SECOND;
    instance
        .handle_advert(t, HIGH_ADDRESS, &advert(0, SECOND))
        .unwrap();
    assert_eq!(instance.poll_timeout(), Some(t + instance.skew_time()));
    assert_eq!(instance.state(), State::Backup);
    instance.handle_timeout(t + instance.skew_time());
    assert_eq!(instance.state(), State::Master);
}

#[test]
fn backup_accepts_higher_and_equal_priority_and_learns_the_interval() {
    for priority in [100, 200] {
        let (mut instance, t0) = started_backup(&config(100));
        let t = t0 + SECOND;
        instance
            .handle_advert(t, LOW_ADDRESS, &advert(priority, SECOND * 2))
            .unwrap();
        assert_eq!(instance.master_adver_interval(), SECOND * 2);
        // 3 * 2 s + 156 * 2 s / 256
        assert_eq!(
            instance.poll_timeout(),
            Some(t + Duration::from_micros(7_218_750))
        );
        assert_eq!(instance.master_address(), Some(LOW_ADDRESS));
        assert_eq!(drain(&mut instance), []);
    }
}

#[test]
fn backup_without_preempt_follows_a_lower_priority_master() {
    let mut config = config(100);
    config.preempt = false;
    let (mut instance, t0) = started_backup(&config);
    for second in 1..=20 {
        let t = t0 + SECOND * second;
        instance.handle_timeout(t);
        instance
            .handle_advert(t, HIGH_ADDRESS, &advert(50, SECOND))
            .unwrap();
    }
    assert_eq!(instance.state(), State::Backup);
    assert_eq!(instance.master_address(), Some(HIGH_ADDRESS));
}

#[test]
fn backup_with_preempt_discards_a_lower_priority_master_and_takes_over() {
    let (mut instance, t0) = started_backup(&config(100));
    let deadline = instance.poll_timeout().unwrap();
    let mut became_master_at = None;
    for tenth in 1..=50 {
        let t = t0 + SECOND / 10 * tenth;
        instance.handle_timeout(t);
        if instance.state() == State::Master {
            became_master_at.get_or_insert(t);
        } else {
            instance
                .handle_advert(t, HIGH_ADDRESS, &advert(50, SECOND))
                .unwrap();
            // A discarded advert leaves the timer untouched.
            assert_eq!(instance.poll_timeout(), Some(deadline));
        }
    }
    let became_master_at = became_master_at.expect("preempted");
    assert!(became_master_at >= deadline && became_master_at < deadline + SECOND / 10);
}

#[test]
fn backup_preempt_delay_tolerates_a_lower_master_until_it_has_run() {
    let mut config = config(100);
    config.preempt_delay = SECOND * 10;
    let (mut instance, t0) = started_backup(&config);
    let mut became_master_at = None;
    for tenth in 1..=200 {
        let t = t0 + SECOND / 10 * tenth;
        instance.handle_timeout(t);
        if instance.state() == State::Master {
            became_master_at.get_or_insert(t);
        } else if tenth % 10 == 0 {
            instance
                .handle_advert(t, HIGH_ADDRESS, &advert(50, SECOND))
                .unwrap();
        }
    }
    let became_master_at = became_master_at.expect("preempted after the delay");
    // The delay runs from startup; the last advert accepted before it ran out
    // (t0 + 9 s) keeps the master for one more Master_Down_Interval.
    let earliest = t0 + SECOND * 9 + instance.master_down_interval();
    assert!(
        became_master_at >= earliest && became_master_at <= earliest + SECOND / 10,
        "became master {:?} after startup",
        became_master_at - t0
    );
}

#[test]
fn backup_preempt_delay_restarts_when_a_lower_master_appears_later() {
    let mut config = config(100);
    config.preempt_delay = SECOND * 5;
    let (mut instance, t0) = started_backup(&config);
    // A higher master for 20 s, then it drops to priority 50 (tracking).
    for second in 1..=20 {
        let t = t0 + SECOND * second;
        instance
            .handle_advert(t, HIGH_ADDRESS, &advert(200, SECOND))
            .unwrap();
    }
    for second in 21..=24 {
        let t = t0 + SECOND * second;
        instance.handle_timeout(t);
        instance
            .handle_advert(t, HIGH_ADDRESS, &advert(50, SECOND))
            .unwrap();
        assert_eq!(instance.state(), State::Backup, "held at {second} s");
    }
    // Held until 21 s + 5 s; takes over one Master_Down_Interval after the
    // last advert it accepted (25 s).
    for tenth in 241..=300 {
        let t = t0 + SECOND / 10 * tenth;
        instance.handle_timeout(t);
        if tenth % 10 == 0 && instance.state() == State::Backup {
            instance
                .handle_advert(t, HIGH_ADDRESS, &advert(50, SECOND))
                .unwrap();
        }
    }
    assert_eq!(instance.state(), State::Master);
}

#[test]
fn backup_refuses_a_wrong_vrid_and_its_own_address_without_effect() {
    let (mut instance, t0) = started_backup(&config(100));
    let deadline = instance.poll_timeout();
    let mut foreign = advert(0, SECOND);
    foreign.vrid = VRID + 1;
    assert_eq!(
        instance.handle_advert(t0, HIGH_ADDRESS, &foreign),
        Err(AdvertRejected::VridMismatch {
            received: VRID + 1,
            expected: VRID
        })
    );
    assert_eq!(
        instance.handle_advert(t0, OWN_ADDRESS, &advert(0, SECOND)),
        Err(AdvertRejected::FromOwnAddress)
    );
    assert_eq!(instance.poll_timeout(), deadline);
    assert_eq!(drain(&mut instance), []);
}

// ---- §6.4.3 Master -------------------------------------------------------

#[test]
fn master_shutdown_sends_priority_zero_and_releases_the_vips() {
    let (mut instance, t) = started_master(&config(100));
    instance.handle_shutdown(t + SECOND / 2);
    assert_eq!(
        drain(&mut instance),
        [
            Action::SendAdvert { priority: 0 },
            Action::RemoveVirtualAddresses,
            Action::StateChanged {
                from: State::Master,
                to: State::Initialize
            },
        ]
    );
    assert_eq!(instance.poll_timeout(), None);
    assert_eq!(instance.master_address(), None);
}

#[test]
fn master_resign_sends_priority_zero_releases_the_vips_and_stays_backup() {
    let (mut instance, t) = started_master(&config(100));
    let resign_at = t + SECOND / 2;
    assert!(instance.handle_resign(resign_at));
    assert_eq!(
        drain(&mut instance),
        [
            Action::SendAdvert { priority: 0 },
            Action::RemoveVirtualAddresses,
            Action::StateChanged {
                from: State::Master,
                to: State::Backup
            },
        ]
    );
    assert_eq!(instance.master_address(), None);
    assert_eq!(
        instance.poll_timeout(),
        Some(resign_at + instance.master_down_interval()),
        "no advert timer: only Master_Down_Timer runs"
    );
    // The peer that took over is followed like any master.
    instance
        .handle_advert(resign_at + SECOND / 10, HIGH_ADDRESS, &advert(150, SECOND))
        .unwrap();
    assert_eq!(instance.master_address(), Some(HIGH_ADDRESS));
    assert_eq!(instance.state(), State::Backup);
}

#[test]
fn only_a_master_resigns() {
    let (mut backup, t0) = started_backup(&config(100));
    assert!(!backup.handle_resign(t0));
    assert_eq!(drain(&mut backup), []);
    assert_eq!(
        backup.poll_timeout(),
        Some(t0 + backup.master_down_interval())
    );
    backup.handle_fault(t0);
    drain(&mut backup);
    assert!(!backup.handle_resign(t0));
    assert_eq!(drain(&mut backup), []);
    assert_eq!(backup.state(), State::Fault);
}

#[test]
fn master_adver_timer_sends_an_advert_every_interval() {
    let mut config = config(100);
    config.garp.count = 1;
    let (mut instance, t) = started_master(&config);
    for n in 1..=5 {
        let deadline = instance.poll_timeout().unwrap();
        assert_eq!(deadline, t + SECOND * n);
        // Handled 3 ms late: the cadence does not drift.
        instance.handle_timeout(deadline + Duration::from_millis(3));
        assert_eq!(drain(&mut instance), [Action::SendAdvert { priority: 100 }]);
    }
}

#[test]
fn master_answers_a_priority_zero_advert_at_once() {
    let mut config = config(100);
    config.garp.count = 1;
    let (mut instance, t) = started_master(&config);
    let now = t + SECOND / 2;
    instance
        .handle_advert(now, HIGH_ADDRESS, &advert(0, SECOND))
        .unwrap();
    assert_eq!(drain(&mut instance), [Action::SendAdvert { priority: 100 }]);
    assert_eq!(instance.poll_timeout(), Some(now + SECOND));
    assert_eq!(instance.state(), State::Master);
}

#[test]
fn master_yields_to_a_higher_priority_and_learns_its_interval() {
    let (mut instance, t) = started_master(&config(100));
    let now = t + SECOND / 2;
    instance
        .handle_advert(now, LOW_ADDRESS, &advert(101, SECOND / 2))
        .unwrap();
    assert_eq!(
        drain(&mut instance),
        [
            Action::RemoveVirtualAddresses,
            Action::StateChanged {
                from: State::Master,
                to: State::Backup
            },
        ]
    );
    assert_eq!(instance.master_adver_interval(), SECOND / 2);
    // 3 * 0.5 s + 156 * 0.5 s / 256; no advert or GARP timer left.
    assert_eq!(
        instance.poll_timeout(),
        Some(now + Duration::from_nanos(1_804_687_500))
    );
    assert_eq!(instance.master_address(), Some(LOW_ADDRESS));
}

#[test]
fn master_ties_are_broken_by_the_higher_primary_address() {
    let (mut instance, t) = started_master(&config(100));
    instance
        .handle_advert(t, LOW_ADDRESS, &advert(100, SECOND))
        .unwrap();
    assert_eq!(instance.state(), State::Master);
    instance
        .handle_advert(t, HIGH_ADDRESS, &advert(100, SECOND))
        .unwrap();
    assert_eq!(instance.state(), State::Backup);
}

#[test]
fn master_without_preempt_still_yields_to_a_higher_priority() {
    let mut config = config(100);
    config.preempt = false;
    let (mut instance, t) = started_master(&config);
    instance
        .handle_advert(t, LOW_ADDRESS, &advert(200, SECOND))
        .unwrap();
    assert_eq!(instance.state(), State::Backup);
}

#[test]
fn master_contested_by_a_lower_priority_re_advertises_and_re_announces() {
    let mut config = config(100);
    config.garp.count = 2;
    let (mut instance, t) = started_master(&config);
    // After the first burst is over, a lower-priority node claims mastership.
    let garp_over = t + SECOND * 3;
    instance.handle_timeout(garp_over);
    drain(&mut instance);
    let now = garp_over + SECOND / 4;
    instance
        .handle_advert(now, HIGH_ADDRESS, &advert(50, SECOND))
        .unwrap();
    assert_eq!(instance.state(), State::Master);
    assert_eq!(
        drain(&mut instance),
        [
            Action::SendAdvert { priority: 100 },
            Action::SendGratuitousArp
        ]
    );
    // The gratuitous ARP burst starts over: its second round follows.
    assert_eq!(instance.poll_timeout(), Some(now + SECOND));
    instance.handle_timeout(now + SECOND);
    assert_eq!(
        drain(&mut instance),
        [
            Action::SendAdvert { priority: 100 },
            Action::SendGratuitousArp
        ]
    );
}

// ---- gratuitous ARP --------------------------------------------------------

fn garp_times(instance: &mut Instance, from: Instant, until: Instant) -> Vec<Duration> {
    let mut times = Vec::new();
    while let Some(deadline) = instance.poll_timeout().filter(|&d| d <= until) {
        instance.handle_timeout(deadline);
        for action in drain(instance) {
            if action == Action::SendGratuitousArp {
                times.push(deadline - from);
            }
        }
    }
    times
}

#[test]
fn garp_burst_repeats_count_times_at_the_interval_then_stops() {
    let mut config = config(100);
    config.advert_interval = interval(Duration::from_millis(300));
    config.garp.count = 3;
    config.garp.interval = SECOND;
    let (mut instance, t) = started_master(&config);
    assert_eq!(
        garp_times(&mut instance, t, t + SECOND * 20),
        [SECOND, SECOND * 2]
    );
}

#[test]
fn garp_refresh_repeats_while_master_and_stops_on_leaving() {
    let mut config = config(100);
    config.garp.count = 2;
    config.garp.interval = Duration::from_millis(500);
    config.garp.refresh = Some(SECOND * 5);
    let (mut instance, t) = started_master(&config);
    assert_eq!(
        garp_times(&mut instance, t, t + SECOND * 12),
        [SECOND / 2, SECOND * 5, SECOND * 10]
    );
    instance
        .handle_advert(t + SECOND * 12, HIGH_ADDRESS, &advert(200, SECOND))
        .unwrap();
    drain(&mut instance);
    assert_eq!(instance.state(), State::Backup);
    // Only the Master_Down_Timer is left.
    assert!(instance.poll_timeout().unwrap() > t + SECOND * 15);
}

// ---- priority (tracking) and fault ----------------------------------------

#[test]
fn set_priority_is_advertised_at_once_by_a_master() {
    let mut config = config(150);
    config.garp.count = 1;
    let (mut instance, t) = started_master(&config);
    let now = t + SECOND / 3;
    instance.set_priority(now, 90);
    assert_eq!(instance.priority(), 90);
    assert_eq!(drain(&mut instance), [Action::SendAdvert { priority: 90 }]);
    assert_eq!(instance.poll_timeout(), Some(now + SECOND));
    instance.set_priority(now, 90);
    assert_eq!(drain(&mut instance), []);
    instance.set_priority(now, 0);
    assert_eq!(instance.priority(), 1, "0 is reserved for shutdown");
}

#[test]
fn set_priority_changes_the_skew_of_a_backup() {
    let (mut instance, _) = started_backup(&config(100));
    instance.set_priority(Instant::now(), 228);
    assert_eq!(instance.skew_time(), SECOND * 28 / 256);
    assert_eq!(drain(&mut instance), []);
}

#[test]
fn fault_releases_the_master_role_and_clearing_starts_over_as_backup() {
    let (mut instance, t) = started_master(&config(100));
    instance.handle_fault(t);
    assert_eq!(
        drain(&mut instance),
        [
            Action::SendAdvert { priority: 0 },
            Action::RemoveVirtualAddresses,
            Action::StateChanged {
                from: State::Master,
                to: State::Fault
            },
        ]
    );
    assert_eq!(instance.poll_timeout(), None);
    instance
        .handle_advert(t, HIGH_ADDRESS, &advert(200, SECOND))
        .unwrap();
    instance.handle_fault(t);
    assert_eq!(drain(&mut instance), []);
    instance.handle_fault_cleared(t + SECOND);
    assert_eq!(
        drain(&mut instance),
        [
            // Left over by a killed predecessor, they must go (§6.4.2).
            Action::RemoveVirtualAddresses,
            Action::StateChanged {
                from: State::Fault,
                to: State::Backup
            }
        ]
    );
    assert_eq!(
        instance.poll_timeout(),
        Some(t + SECOND + instance.master_down_interval())
    );
}

#[test]
fn fault_from_backup_and_shutdown_from_fault() {
    let (mut instance, t0) = started_backup(&config(100));
    instance.handle_fault(t0);
    assert_eq!(
        drain(&mut instance),
        [Action::StateChanged {
            from: State::Backup,
            to: State::Fault
        }]
    );
    instance.handle_shutdown(t0);
    assert_eq!(
        drain(&mut instance),
        [Action::StateChanged {
            from: State::Fault,
            to: State::Initialize
        }]
    );
}

// ---- whole pairs over a fake network ---------------------------------------

/// Nodes joined by a lossless, zero-delay multicast segment.
struct Segment {
    nodes: Vec<Node>,
    now: Instant,
}

struct Node {
    address: Ipv4Addr,
    instance: Instance,
    up: bool,
    transitions: Vec<(Instant, State)>,
}

impl Segment {
    /// One node per (settings, primary address).
    fn new(nodes: &[(VrrpConfig, Ipv4Addr)]) -> Self {
        let now = Instant::now();
        let nodes = nodes
            .iter()
            .map(|(config, address)| Node {
                address: *address,
                instance: Instance::new(config, *address),
                up: false,
                transitions: Vec::new(),
            })
            .collect();
        Segment { nodes, now }
    }

    fn start(&mut self, index: usize, start: Instant) {
        self.nodes[index].up = true;
        self.nodes[index].instance.handle_startup(start);
        self.deliver(index, start);
    }

    fn shutdown(&mut self, index: usize) {
        let now = self.now;
        self.nodes[index].instance.handle_shutdown(now);
        self.deliver(index, now);
        self.nodes[index].up = false;
    }

    fn state(&self, index: usize) -> State {
        self.nodes[index].instance.state()
    }

    /// Runs every timer up to `until`, delivering adverts as they are sent.
    fn run_until(&mut self, until: Instant) {
        loop {
            let next = self
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, node)| node.up)
                .filter_map(|(index, node)| node.instance.poll_timeout().map(|t| (t, index)))
                .min();
            match next {
                Some((deadline, index)) if deadline <= until => {
                    self.now = deadline;
                    self.nodes[index].instance.handle_timeout(deadline);
                    self.deliver(index, deadline);
                }
                _ => break,
            }
        }
        self.now = until;
    }

    /// Carries out `sender`'s actions; adverts reach every other live node,
    /// whose own answers are delivered in turn.
    fn deliver(&mut self, sender: usize, now: Instant) {
        let mut pending = vec![sender];
        while let Some(from) = pending.pop() {
            let source = self.nodes[from].address;
            let actions = drain(&mut self.nodes[from].instance);
            for action in actions {
                match action {
                    Action::SendAdvert { priority } => {
                        let interval = self.nodes[from].instance.advert_interval;
                        for (to, node) in self.nodes.iter_mut().enumerate() {
                            if to != from && node.up {
                                let advert = advert(priority, interval);
                                node.instance.handle_advert(now, source, &advert).unwrap();
                                pending.push(to);
                            }
                        }
                    }
                    Action::StateChanged { to, .. } => {
                        self.nodes[from].transitions.push((now, to));
                    }
                    _ => {}
                }
            }
        }
    }
}

/// lb1 (priority 150, the lower address) and lb2 (priority 100).
fn pair_configs(advert_interval: Duration) -> [(VrrpConfig, Ipv4Addr); 2] {
    let mut lb1 = VrrpConfig::new("eth0", VRID, 150, vec![VIP]);
    lb1.advert_interval = interval(advert_interval);
    let mut lb2 = VrrpConfig::new("eth0", VRID, 100, vec![VIP]);
    lb2.advert_interval = interval(advert_interval);
    [(lb1, LOW_ADDRESS), (lb2, HIGH_ADDRESS)]
}

#[test]
fn pair_elects_the_higher_priority_and_fails_over_on_shutdown_within_skew_time() {
    let interval = Duration::from_millis(100);
    let mut segment = Segment::new(&pair_configs(interval));
    let t0 = segment.now;
    segment.start(0, t0);
    segment.start(1, t0);
    segment.run_until(t0 + SECOND * 5);
    assert_eq!(segment.state(0), State::Master);
    assert_eq!(segment.state(1), State::Backup);

    let stop = segment.now;
    segment.shutdown(0);
    let skew = segment.nodes[1].instance.skew_time();
    segment.run_until(stop + skew);
    assert_eq!(
        segment.state(1),
        State::Master,
        "taken over after Skew_Time"
    );
    assert_eq!(skew, Duration::from_nanos(60_937_500));
}

#[test]
fn pair_preempts_back_when_the_higher_node_returns_and_not_without_preempt() {
    for preempt in [true, false] {
        let interval = Duration::from_millis(100);
        let mut configs = pair_configs(interval);
        configs[0].0.preempt = preempt;
        let mut segment = Segment::new(&configs);
        let t0 = segment.now;
        segment.start(1, t0);
        segment.run_until(t0 + SECOND);
        assert_eq!(segment.state(1), State::Master);

        segment.start(0, segment.now);
        segment.run_until(t0 + SECOND * 3);
        let expected = if preempt {
            [State::Master, State::Backup]
        } else {
            [State::Backup, State::Master]
        };
        assert_eq!(
            [segment.state(0), segment.state(1)],
            expected,
            "preempt {preempt}"
        );
    }
}

#[test]
fn pair_of_simultaneous_equal_priority_masters_settles_on_the_higher_address() {
    let mut configs = pair_configs(SECOND);
    configs[0].0.priority = 100;
    let mut segment = Segment::new(&configs);
    let t0 = segment.now;
    segment.start(0, t0);
    segment.start(1, t0);
    // Equal priorities give equal timers: both expire before either advert lands.
    let deadline = segment.nodes[0].instance.poll_timeout().unwrap();
    assert_eq!(segment.nodes[1].instance.poll_timeout(), Some(deadline));
    for node in &mut segment.nodes {
        node.instance.handle_timeout(deadline);
    }
    segment.deliver(0, deadline);
    segment.deliver(1, deadline);
    segment.run_until(t0 + SECOND * 20);
    assert_eq!(segment.state(0), State::Backup);
    assert_eq!(segment.state(1), State::Master);
}

#[test]
fn pair_with_equal_priorities_keeps_whichever_became_master_first() {
    let mut configs = pair_configs(SECOND);
    configs[0].0.priority = 100;
    let mut segment = Segment::new(&configs);
    let t0 = segment.now;
    segment.start(0, t0);
    segment.run_until(t0 + SECOND * 5);
    segment.start(1, segment.now);
    segment.run_until(t0 + SECOND * 20);
    // A backup accepts an equal-priority master whatever its address.
    assert_eq!(segment.state(0), State::Master);
    assert_eq!(segment.state(1), State::Backup);
}

#[test]
fn pair_hands_over_when_tracking_lowers_the_master() {
    let mut segment = Segment::new(&pair_configs(Duration::from_millis(100)));
    let t0 = segment.now;
    segment.start(0, t0);
    segment.start(1, t0);
    segment.run_until(t0 + SECOND);
    assert_eq!(segment.state(0), State::Master);
    let now = segment.now;
    segment.nodes[0].instance.set_priority(now, 50);
    segment.deliver(0, now);
    segment.run_until(now + SECOND);
    assert_eq!(segment.state(0), State::Backup);
    assert_eq!(segment.state(1), State::Master);
}

#[test]
fn no_flapping_a_backup_hearing_adverts_on_time_never_becomes_master() {
    let (mut instance, t0) = started_backup(&config(254));
    // The master's adverts arrive every second, some up to 2.5 s late
    // (Master_Down_Interval is 3.0078 s at priority 254).
    let mut t = t0;
    for n in 0u32..1000 {
        let lateness = SECOND * (n % 7) / 4 + Duration::from_millis(u64::from(n % 13));
        let arrival = t + lateness.min(SECOND * 5 / 2);
        instance.handle_timeout(arrival);
        instance
            .handle_advert(arrival, LOW_ADDRESS, &advert(255, SECOND))
            .unwrap();
        t += SECOND;
        assert_eq!(instance.state(), State::Backup, "advert {n}");
    }
    assert_eq!(drain(&mut instance), []);
}

#[test]
fn no_flapping_a_steady_pair_makes_no_transition_after_the_election() {
    let mut segment = Segment::new(&pair_configs(Duration::from_millis(100)));
    let t0 = segment.now;
    segment.start(0, t0);
    segment.start(1, t0);
    segment.run_until(t0 + SECOND);
    let settled = segment
        .nodes
        .iter()
        .map(|n| n.transitions.len())
        .collect::<Vec<_>>();
    segment.run_until(t0 + SECOND * 600);
    let later = segment
        .nodes
        .iter()
        .map(|n| n.transitions.len())
        .collect::<Vec<_>>();
    assert_eq!(settled, later);
    assert_eq!(segment.state(0), State::Master);
}
