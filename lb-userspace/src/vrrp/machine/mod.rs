//! The VRRP state machine of one virtual router, without IO (the quinn-proto /
//! smoltcp way): events and timer expiries go in with the current time, actions
//! come out through [`Instance::poll_action`], the next deadline through
//! [`Instance::poll_timeout`]. It never reads a clock.
//!
//! It follows RFC 9568 §6.4 (RFC 5798 §6.4 plus its clarifications), with
//! these additions, each marked where it happens:
//! - keepalived's `preempt_delay`;
//! - a master that stays master after a lower-priority advert sends an advert
//!   at once (RFC 9568) and re-announces the VIPs by gratuitous ARP, because
//!   the contender may have claimed them meanwhile (keepalived did not);
//! - repeated and periodically refreshed gratuitous ARPs;
//! - a Fault state (keepalived's) for a dead interface: no adverts, no VIPs;
//! - a priority that tracking can change at run time;
//! - a master can resign (it lost its data path): priority 0 and the VIPs
//!   released as on shutdown, but it stays in the protocol as a backup;
//! - adverts from our own primary address are refused, so a looped-back copy
//!   can never start an election against ourselves.
//!
//! Timers are kept as `Instant`s with nanosecond arithmetic (like keepalived's
//! microseconds) rather than the RFC's whole centiseconds; Skew_Time is then
//! exactly `(256 - Priority) * Master_Adver_Interval / 256`.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::config::{GarpConfig, VrrpConfig, OWNER_PRIORITY};
use super::packet::Advert;

#[cfg(test)]
mod tests;

/// Protocol state of the virtual router on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Initialize,
    Backup,
    Master,
    /// The interface cannot carry the protocol; nothing is sent, no VIP held.
    Fault,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Initialize => "initialize",
            State::Backup => "backup",
            State::Master => "master",
            State::Fault => "fault",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the IO layer must do, in the order given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send an advert for the configured VIPs with this priority (0: "I quit").
    SendAdvert { priority: u8 },
    /// Add the VIPs to the interface (and the gateway address to its own).
    AddVirtualAddresses,
    /// Remove the VIPs from the interface (and the gateway address from its own).
    RemoveVirtualAddresses,
    /// Broadcast one gratuitous ARP per VIP (and for the gateway address).
    SendGratuitousArp,
    /// For notify hooks, logs and metrics.
    StateChanged { from: State, to: State },
}

/// Why [`Instance::handle_advert`] refused an advert that parsed correctly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AdvertRejected {
    #[error("advert for VRID {received}, this instance is VRID {expected}")]
    VridMismatch { received: u8, expected: u8 },
    #[error("advert from our own primary address (looped back, or an address conflict)")]
    FromOwnAddress,
}

/// One virtual router's protocol state and timers.
#[derive(Debug)]
pub struct Instance {
    vrid: u8,
    /// Current priority: the configured one, lowered by tracking.
    priority: u8,
    /// Advertisement_Interval: what this node sends while master.
    advert_interval: Duration,
    preempt: bool,
    preempt_delay: Duration,
    primary_address: Ipv4Addr,
    garp: GarpConfig,

    state: State,
    /// Master_Adver_Interval: learned from the master's adverts while backup.
    master_adver_interval: Duration,
    /// The node believed to be master (ourselves while master).
    master_address: Option<Ipv4Addr>,
    adver_timer: Option<Instant>,
    master_down_timer: Option<Instant>,
    garp_rounds_left: u32,
    garp_timer: Option<Instant>,
    garp_refresh_timer: Option<Instant>,
    /// While set and in the future, lower-priority masters are not preempted.
    preempt_hold_until: Option<Instant>,
    actions: VecDeque<Action>,
}

impl Instance {
    /// A virtual router in the Initialize state that advertises from
    /// `primary_address` (the interface's own address, also the tie-breaker).
    pub fn new(config: &VrrpConfig, primary_address: Ipv4Addr) -> Self {
        Instance {
            vrid: config.vrid,
            priority: config.priority,
            advert_interval: config.advert_interval.duration(),
            preempt: config.preempt,
            preempt_delay: config.preempt_delay,
            primary_address,
            garp: config.garp,
            state: State::Initialize,
            master_adver_interval: config.advert_interval.duration(),
            master_address: None,
            adver_timer: None,
            master_down_timer: None,
            garp_rounds_left: 0,
            garp_timer: None,
            garp_refresh_timer: None,
            preempt_hold_until: None,
            actions: VecDeque::new(),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The priority this node advertises (configured, or as set by tracking).
    pub fn priority(&self) -> u8 {
        self.priority
    }

    /// The node believed to be master: ourselves while master, the source of
    /// the last accepted advert while backup.
    pub fn master_address(&self) -> Option<Ipv4Addr> {
        self.master_address
    }

    pub fn master_adver_interval(&self) -> Duration {
        self.master_adver_interval
    }

    /// Skew_Time = ((256 - Priority) * Master_Adver_Interval) / 256.
    pub fn skew_time(&self) -> Duration {
        self.master_adver_interval * (256 - u32::from(self.priority)) / 256
    }

    /// Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time.
    pub fn master_down_interval(&self) -> Duration {
        self.master_adver_interval * 3 + self.skew_time()
    }

    /// Startup event (RFC 9568 §6.4.1). Ignored unless in Initialize.
    pub fn handle_startup(&mut self, now: Instant) {
        if self.state == State::Initialize {
            self.start(now);
        }
    }

    /// Shutdown event: a master sends priority 0 so a backup takes over after
    /// Skew_Time instead of Master_Down_Interval, and gives up its VIPs.
    pub fn handle_shutdown(&mut self, _now: Instant) {
        match self.state {
            State::Initialize => return,
            State::Backup => self.master_down_timer = None,
            State::Master => {
                self.stop_master_timers();
                self.actions.push_back(Action::SendAdvert { priority: 0 });
                self.actions.push_back(Action::RemoveVirtualAddresses);
            }
            State::Fault => {}
        }
        self.master_address = None;
        self.transition(State::Initialize);
    }

    /// Resign event (our addition): a master that can no longer forward
    /// sends priority 0, so a backup takes over after Skew_Time, releases its
    /// VIPs at once and goes on as a backup. Returns whether it resigned
    /// (only a master does).
    pub fn handle_resign(&mut self, now: Instant) -> bool {
        if self.state != State::Master {
            return false;
        }
        self.stop_master_timers();
        self.actions.push_back(Action::SendAdvert { priority: 0 });
        self.actions.push_back(Action::RemoveVirtualAddresses);
        self.master_adver_interval = self.advert_interval;
        self.master_down_timer = Some(now + self.master_down_interval());
        self.master_address = None;
        self.transition(State::Backup);
        true
    }

    /// The interface went down (keepalived's FAULT): leave any role. A master
    /// still tries a priority-0 advert, useful when the fault is not the link.
    pub fn handle_fault(&mut self, _now: Instant) {
        match self.state {
            State::Fault => return,
            State::Initialize => {}
            State::Backup => self.master_down_timer = None,
            State::Master => {
                self.stop_master_timers();
                self.actions.push_back(Action::SendAdvert { priority: 0 });
                self.actions.push_back(Action::RemoveVirtualAddresses);
            }
        }
        self.master_address = None;
        self.transition(State::Fault);
    }

    /// The interface is usable again: start over as after Startup.
    pub fn handle_fault_cleared(&mut self, now: Instant) {
        if self.state == State::Fault {
            self.start(now);
        }
    }

    /// Changes the advertised priority (tracking). 0 is reserved for the
    /// shutdown advert and is raised to 1. A master advertises the change at
    /// once so a higher backup can preempt without waiting an interval.
    pub fn set_priority(&mut self, now: Instant, priority: u8) {
        let priority = priority.max(1);
        if priority == self.priority {
            return;
        }
        self.priority = priority;
        if self.state == State::Master {
            self.actions.push_back(Action::SendAdvert { priority });
            self.adver_timer = Some(now + self.advert_interval);
        }
    }

    /// An advert that passed the packet checks arrived from `source`.
    pub fn handle_advert(
        &mut self,
        now: Instant,
        source: Ipv4Addr,
        advert: &Advert,
    ) -> Result<(), AdvertRejected> {
        if advert.vrid != self.vrid {
            return Err(AdvertRejected::VridMismatch {
                received: advert.vrid,
                expected: self.vrid,
            });
        }
        if source == self.primary_address {
            return Err(AdvertRejected::FromOwnAddress);
        }
        match self.state {
            State::Initialize | State::Fault => {}
            State::Backup => self.backup_receives(now, source, advert),
            State::Master => self.master_receives(now, source, advert),
        }
        Ok(())
    }

    /// Fires every timer whose deadline is at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Initialize | State::Fault => {}
            State::Backup => {
                if is_due(self.master_down_timer, now) {
                    self.become_master(now);
                }
            }
            State::Master => {
                if let Some(deadline) = self.adver_timer.filter(|&d| d <= now) {
                    self.actions.push_back(Action::SendAdvert {
                        priority: self.priority,
                    });
                    self.adver_timer = Some(next_deadline(deadline, now, self.advert_interval));
                }
                if let Some(deadline) = self.garp_timer.filter(|&d| d <= now) {
                    self.actions.push_back(Action::SendGratuitousArp);
                    self.garp_rounds_left = self.garp_rounds_left.saturating_sub(1);
                    self.garp_timer = (self.garp_rounds_left > 0)
                        .then(|| next_deadline(deadline, now, self.garp.interval));
                }
                if let Some(deadline) = self.garp_refresh_timer.filter(|&d| d <= now) {
                    self.actions.push_back(Action::SendGratuitousArp);
                    self.garp_refresh_timer = self
                        .garp
                        .refresh
                        .map(|refresh| next_deadline(deadline, now, refresh));
                }
            }
        }
    }

    /// The earliest pending deadline; call [`Instance::handle_timeout`] then.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Initialize | State::Fault => None,
            State::Backup => self.master_down_timer,
            State::Master => [self.adver_timer, self.garp_timer, self.garp_refresh_timer]
                .into_iter()
                .flatten()
                .min(),
        }
    }

    /// The next action to carry out, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Initialize (or Fault) → Backup, or → Master for the address owner (§6.4.1).
    fn start(&mut self, now: Instant) {
        self.preempt_hold_until = (!self.preempt_delay.is_zero()).then(|| now + self.preempt_delay);
        if self.priority == OWNER_PRIORITY {
            self.become_master(now);
        } else {
            self.master_adver_interval = self.advert_interval;
            self.master_down_timer = Some(now + self.master_down_interval());
            self.master_address = None;
            // A backup must not answer for the VIPs (§6.4.2); a previous run
            // that was killed may have left them on the interface.
            self.actions.push_back(Action::RemoveVirtualAddresses);
            self.transition(State::Backup);
        }
    }

    /// §6.4.2 "If an ADVERTISEMENT is received" in Backup.
    fn backup_receives(&mut self, now: Instant, source: Ipv4Addr, advert: &Advert) {
        if advert.priority == 0 {
            self.master_down_timer = Some(now + self.skew_time());
            return;
        }
        let accept = if advert.priority >= self.priority {
            // Once a delay has run out, the next lower-priority master starts a new one.
            if self.preempt_hold_until.is_some_and(|until| until <= now) {
                self.preempt_hold_until = None;
            }
            true
        } else {
            !self.preempt || self.preempt_is_held(now)
        };
        if accept {
            self.master_adver_interval = advert.interval();
            self.master_down_timer = Some(now + self.master_down_interval());
            self.master_address = Some(source);
        }
        // Otherwise discard: Master_Down_Timer runs out and this node preempts.
    }

    /// keepalived's preempt_delay: a lower-priority master is tolerated until
    /// the delay, counted from startup or from the first such advert, is over.
    fn preempt_is_held(&mut self, now: Instant) -> bool {
        if self.preempt_delay.is_zero() {
            return false;
        }
        let until = *self
            .preempt_hold_until
            .get_or_insert(now + self.preempt_delay);
        now < until
    }

    /// §6.4.3 "If an ADVERTISEMENT is received" in Master.
    fn master_receives(&mut self, now: Instant, source: Ipv4Addr, advert: &Advert) {
        if advert.priority == 0 {
            self.actions.push_back(Action::SendAdvert {
                priority: self.priority,
            });
            self.adver_timer = Some(now + self.advert_interval);
            return;
        }
        let sender_wins = advert.priority > self.priority
            || (advert.priority == self.priority && source > self.primary_address);
        if sender_wins {
            self.stop_master_timers();
            self.master_adver_interval = advert.interval();
            self.master_down_timer = Some(now + self.master_down_interval());
            self.master_address = Some(source);
            self.actions.push_back(Action::RemoveVirtualAddresses);
            self.transition(State::Backup);
        } else {
            // RFC 9568 sends an advert at once so the loser backs off and
            // bridges relearn; re-announcing the VIPs is our addition.
            self.actions.push_back(Action::SendAdvert {
                priority: self.priority,
            });
            self.adver_timer = Some(now + self.advert_interval);
            self.announce_addresses(now);
        }
    }

    /// Backup (or Initialize, for the owner) → Master.
    fn become_master(&mut self, now: Instant) {
        self.master_down_timer = None;
        self.master_address = Some(self.primary_address);
        self.actions.push_back(Action::AddVirtualAddresses);
        self.actions.push_back(Action::SendAdvert {
            priority: self.priority,
        });
        self.announce_addresses(now);
        self.adver_timer = Some(now + self.advert_interval);
        self.garp_refresh_timer = self.garp.refresh.map(|refresh| now + refresh);
        self.transition(State::Master);
    }

    /// One gratuitous ARP round now, the remaining rounds of the burst later.
    fn announce_addresses(&mut self, now: Instant) {
        self.actions.push_back(Action::SendGratuitousArp);
        self.garp_rounds_left = self.garp.count.saturating_sub(1);
        self.garp_timer = (self.garp_rounds_left > 0).then(|| now + self.garp.interval);
    }

    fn stop_master_timers(&mut self) {
        self.adver_timer = None;
        self.garp_timer = None;
        self.garp_rounds_left = 0;
        self.garp_refresh_timer = None;
    }

    fn transition(&mut self, to: State) {
        let from = self.state;
        self.state = to;
        self.actions.push_back(Action::StateChanged { from, to });
    }
}

fn is_due(deadline: Option<Instant>, now: Instant) -> bool {
    deadline.is_some_and(|deadline| deadline <= now)
}

/// `deadline + period`, keeping a steady cadence, unless that is already
/// past (the caller was late by more than a period): then `now + period`.
fn next_deadline(deadline: Instant, now: Instant, period: Duration) -> Instant {
    let next = deadline + period;
    if next > now {
        next
    } else {
        now + period
    }
}
