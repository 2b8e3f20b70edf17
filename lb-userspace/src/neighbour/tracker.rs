//! The decision, per backend address, of which MAC the data path uses and
//! whether the address counts as unresolved: pure, fed with what the kernel's
//! neighbour table says (notifications, periodic reads) and with the end of
//! each resolution attempt the IO side made (`super::watch`).
//!
//! It must not flap: a transient state that keeps the link-layer address
//! (`STALE`, `DELAY`, `PROBE`) keeps the known MAC; an entry without one
//! (`INCOMPLETE`, `FAILED`, deleted) only asks for a resolution attempt,
//! and only an attempt that fails makes the address unresolved. A changed
//! MAC is taken at once.

/// What the kernel's table says of the address now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// An entry whose MAC can be used.
    Usable([u8; 6]),
    /// No entry, or one without a usable MAC.
    Unusable,
}

/// What the IO side should do after an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing changes.
    Keep,
    /// Start a resolution attempt (probe and wait), unless one runs.
    Resolve,
    /// The MAC in use, or whether it is unresolved, changed: tell the
    /// controller.
    Publish(MacState),
}

/// The MAC the data path uses for an address, and whether it is unresolved
/// (then the last MAC known, and the backend takes no new flows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacState {
    pub mac: [u8; 6],
    pub unresolved: bool,
}

/// One backend address's MAC state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacTracker {
    state: MacState,
}

impl MacTracker {
    /// An address resolved to `mac` (at start or by a reload).
    pub fn new(mac: [u8; 6]) -> Self {
        MacTracker {
            state: MacState {
                mac,
                unresolved: false,
            },
        }
    }

    /// The state now.
    pub fn state(&self) -> MacState {
        self.state
    }

    /// The neighbour table said `observation` (a notification or a read).
    pub fn observe(&mut self, observation: Observation) -> Decision {
        match observation {
            Observation::Usable(mac) => self.resolved(mac),
            Observation::Unusable => Decision::Resolve,
        }
    }

    /// A resolution attempt ended: with the MAC it found, or `None` if the
    /// address could not be resolved within it.
    pub fn attempt_ended(&mut self, found: Option<[u8; 6]>) -> Decision {
        match found {
            Some(mac) => self.resolved(mac),
            None if self.state.unresolved => Decision::Keep,
            None => {
                self.state.unresolved = true;
                Decision::Publish(self.state)
            }
        }
    }

    fn resolved(&mut self, mac: [u8; 6]) -> Decision {
        let resolved = MacState {
            mac,
            unresolved: false,
        };
        if resolved == self.state {
            return Decision::Keep;
        }
        self.state = resolved;
        Decision::Publish(resolved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
    const NEW: [u8; 6] = [0x02, 0, 0, 0, 0, 0x42];

    fn published(mac: [u8; 6], unresolved: bool) -> Decision {
        Decision::Publish(MacState { mac, unresolved })
    }

    #[test]
    fn the_same_mac_in_any_usable_state_changes_nothing() {
        let mut tracker = MacTracker::new(OLD);
        // REACHABLE, STALE, DELAY, PROBE all read as usable with their MAC.
        for _ in 0..4 {
            assert_eq!(tracker.observe(Observation::Usable(OLD)), Decision::Keep);
        }
        assert_eq!(
            tracker.state(),
            MacState {
                mac: OLD,
                unresolved: false
            }
        );
    }

    #[test]
    fn a_changed_mac_is_taken_at_once() {
        let mut tracker = MacTracker::new(OLD);
        assert_eq!(
            tracker.observe(Observation::Usable(NEW)),
            published(NEW, false)
        );
        assert_eq!(tracker.observe(Observation::Usable(NEW)), Decision::Keep);
    }

    #[test]
    fn an_unusable_entry_only_asks_for_an_attempt() {
        let mut tracker = MacTracker::new(OLD);
        // INCOMPLETE, FAILED or deleted, as often as the kernel says so.
        for _ in 0..3 {
            assert_eq!(tracker.observe(Observation::Unusable), Decision::Resolve);
        }
        assert_eq!(
            tracker.state(),
            MacState {
                mac: OLD,
                unresolved: false
            }
        );
        // The attempt finds the same MAC: no change ever published.
        assert_eq!(tracker.attempt_ended(Some(OLD)), Decision::Keep);
    }

    #[test]
    fn a_failed_attempt_makes_it_unresolved_once_with_the_last_mac_kept() {
        let mut tracker = MacTracker::new(OLD);
        assert_eq!(tracker.observe(Observation::Unusable), Decision::Resolve);
        assert_eq!(tracker.attempt_ended(None), published(OLD, true));
        // Further failures change nothing; the kernel keeps asking for attempts.
        assert_eq!(tracker.attempt_ended(None), Decision::Keep);
        assert_eq!(tracker.observe(Observation::Unusable), Decision::Resolve);
        // Resolved again, to its old MAC or a new one.
        assert_eq!(
            tracker.observe(Observation::Usable(NEW)),
            published(NEW, false)
        );
    }

    #[test]
    fn a_resolved_attempt_after_unresolved_publishes_even_the_same_mac() {
        let mut tracker = MacTracker::new(OLD);
        tracker.attempt_ended(None);
        assert_eq!(tracker.attempt_ended(Some(OLD)), published(OLD, false));
    }
}
