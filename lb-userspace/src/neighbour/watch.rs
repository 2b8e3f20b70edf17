//! The task that keeps the backends' MACs current while `lb` runs: a
//! replaced server, or an address moved to another machine, is followed
//! without a restart.
//!
//! It listens to the kernel's neighbour notifications (`RTM_NEWNEIGH`,
//! `RTM_DELNEIGH`) for the backends' addresses, and every
//! [`REFRESH_PERIOD`] reads the neighbour table and sends each backend one
//! probe datagram, so that the kernel rechecks an entry nothing else uses
//! (a backend of an unchecked service) and a notification missed (a full
//! socket buffer) is made up for. [`MacTracker`] decides; an entry without
//! a usable MAC starts one resolution attempt ([`Resolver::resolve`], up to
//! [`RESOLVE_TIMEOUT`](super::RESOLVE_TIMEOUT)). Changes go to the
//! controller as [`MacUpdate`]s; the backends to follow come from its
//! published snapshot, so a reload's are followed too.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{interval, MissedTickBehavior};

use super::tracker::{Decision, MacTracker, Observation};
use super::{format_mac, Interface, Neighbour, NeighbourError, ProbeSocket, Resolver};
use crate::domain::SnapshotReceiver;
use crate::error_chain::error_chain;
use crate::netlink::{NeighbourEntry, NeighbourEvents};

/// How often the table is read and every backend probed. The kernel
/// confirms a neighbour within `base_reachable_time` (30 s by default) of
/// using it, and notifications carry every change at once, so a shorter
/// period would add ARP traffic and find nothing more; a longer one would
/// leave a silent backend's replaced server unnoticed for longer.
pub const REFRESH_PERIOD: Duration = Duration::from_secs(30);

/// A backend address's MAC changed, or it became unresolved or resolved
/// again; sent to the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacUpdate {
    pub address: Ipv4Addr,
    /// Where its frames go now (the last MAC known while unresolved).
    pub neighbour: Neighbour,
    /// Why it cannot be resolved (`no MAC: neighbour unresolved (...)`);
    /// `None`: resolved.
    pub unresolved: Option<String>,
}

/// One backend address being followed.
#[derive(Debug)]
struct Watched {
    interface: Interface,
    tracker: MacTracker,
}

/// The running watch: its trackers and the attempts in flight.
struct Watch {
    resolver: Arc<Resolver>,
    watched: HashMap<Ipv4Addr, Watched>,
    /// Addresses to follow that are not resolved yet (a reload's whose
    /// attempt failed): attempted again at every refresh.
    pending: HashSet<Ipv4Addr>,
    /// Addresses with a resolution attempt running.
    attempting: HashSet<Ipv4Addr>,
    attempts: JoinSet<(Ipv4Addr, Result<Neighbour, NeighbourError>)>,
    updates: mpsc::Sender<MacUpdate>,
}

/// Follows the MACs of the backends of `backends` (the controller's
/// snapshot), starting from `initial`, and sends their changes on
/// `updates`; returns once the controller is gone.
pub async fn run(
    resolver: Resolver,
    initial: HashMap<Ipv4Addr, Neighbour>,
    mut backends: SnapshotReceiver,
    updates: mpsc::Sender<MacUpdate>,
) {
    // Subscribed first, so no change after the start is missed.
    let mut events = match NeighbourEvents::subscribe() {
        Ok(events) => Some(events),
        Err(error) => {
            tracing::error!(%error, "cannot follow neighbour changes; reading the table every {REFRESH_PERIOD:?} only");
            None
        }
    };
    let mut watch = Watch {
        resolver: Arc::new(resolver),
        watched: initial
            .into_iter()
            .map(|(address, neighbour)| {
                let watched = Watched {
                    tracker: MacTracker::new(neighbour.mac),
                    interface: neighbour.interface,
                };
                (address, watched)
            })
            .collect(),
        pending: HashSet::new(),
        attempting: HashSet::new(),
        attempts: JoinSet::new(),
        updates,
    };
    let mut refresh = interval(REFRESH_PERIOD);
    refresh.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The first tick is at once; the start resolved every backend already.
    refresh.tick().await;
    watch.follow(&backend_addresses(&backends));
    loop {
        let next_event = async {
            match &mut events {
                Some(events) => events.next().await,
                None => std::future::pending().await,
            }
        };
        let open = tokio::select! {
            entry = next_event => match entry {
                Some(entry) => watch.notified(entry).await,
                None => {
                    tracing::error!("neighbour notifications ended; reading the table every {REFRESH_PERIOD:?} only");
                    events = None;
                    true
                }
            },
            _ = refresh.tick() => watch.refresh().await,
            changed = backends.changed() => match changed {
                Ok(()) => {
                    watch.follow(&backend_addresses(&backends));
                    true
                }
                Err(_) => false,
            },
            Some(ended) = watch.attempts.join_next() => match ended {
                Ok((address, result)) => watch.attempt_ended(address, result).await,
                Err(error) => {
                    tracing::error!(%error, "a neighbour resolution attempt failed");
                    true
                }
            },
        };
        if !open {
            return;
        }
    }
}

/// Every backend address of the snapshot.
fn backend_addresses(backends: &SnapshotReceiver) -> HashSet<Ipv4Addr> {
    backends
        .borrow()
        .services
        .iter()
        .flat_map(|service| service.backends.iter().map(|backend| backend.address))
        .collect()
}

impl Watch {
    /// Follows exactly `addresses` from now on: a new one (a reload added
    /// it, and resolved it) is resolved again to learn its interface.
    fn follow(&mut self, addresses: &HashSet<Ipv4Addr>) {
        self.watched
            .retain(|address, _| addresses.contains(address));
        self.pending.retain(|address| addresses.contains(address));
        for &address in addresses {
            if !self.watched.contains_key(&address) && self.pending.insert(address) {
                self.attempt(address);
            }
        }
    }

    /// Starts a resolution attempt for `address` unless one runs.
    fn attempt(&mut self, address: Ipv4Addr) {
        if self.attempting.insert(address) {
            let resolver = Arc::clone(&self.resolver);
            self.attempts
                .spawn(async move { (address, resolver.resolve(address).await) });
        }
    }

    /// A notification about `entry`; false once the controller is gone.
    async fn notified(&mut self, entry: NeighbourEntry) -> bool {
        let Some(watched) = self.watched.get_mut(&entry.address) else {
            return true;
        };
        if watched.interface.index != entry.index {
            return true;
        }
        let observation = entry.mac.map_or(Observation::Unusable, Observation::Usable);
        let decision = watched.tracker.observe(observation);
        self.decided(entry.address, decision, None).await
    }

    /// Reads the table and probes every backend; false once the
    /// controller is gone.
    async fn refresh(&mut self) -> bool {
        for address in self.pending.clone() {
            self.attempt(address);
        }
        let entries = match self.resolver.entries().await {
            Ok(entries) => entries,
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), "reading the neighbour table");
                return true;
            }
        };
        let addresses: Vec<Ipv4Addr> = self.watched.keys().copied().collect();
        for address in addresses {
            let Some(watched) = self.watched.get_mut(&address) else {
                continue;
            };
            // Makes the kernel recheck a STALE entry (and find a new MAC).
            if let Err(error) =
                ProbeSocket::new(address, watched.interface.index).and_then(|probe| probe.send())
            {
                tracing::debug!(error = %error_chain(&error), "neighbour refresh probe");
            }
            let observation = entries
                .iter()
                .find(|entry| entry.address == address && entry.index == watched.interface.index)
                .and_then(|entry| entry.mac)
                .map_or(Observation::Unusable, Observation::Usable);
            let decision = watched.tracker.observe(observation);
            if !self.decided(address, decision, None).await {
                return false;
            }
        }
        true
    }

    /// An attempt for `address` ended; false once the controller is gone.
    async fn attempt_ended(
        &mut self,
        address: Ipv4Addr,
        result: Result<Neighbour, NeighbourError>,
    ) -> bool {
        self.attempting.remove(&address);
        let Some(watched) = self.watched.get_mut(&address) else {
            // A new address: followed from now on, as the reload resolved it.
            match result {
                Ok(neighbour) if self.pending.remove(&address) => {
                    let watched = Watched {
                        tracker: MacTracker::new(neighbour.mac),
                        interface: neighbour.interface,
                    };
                    self.watched.insert(address, watched);
                }
                // No longer followed.
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(backend = %address, error = %error_chain(&error), "cannot resolve a backend to follow; retrying at the next refresh");
                }
            }
            return true;
        };
        let (decision, failure) = match result {
            Ok(neighbour) => {
                let moved = neighbour.interface != watched.interface;
                watched.interface = neighbour.interface;
                match watched.tracker.attempt_ended(Some(neighbour.mac)) {
                    Decision::Keep if moved => (Decision::Publish(watched.tracker.state()), None),
                    decision => (decision, None),
                }
            }
            // Not a verdict on the backend: its MAC and state stay, and
            // the next notification or refresh tries again.
            Err(error) if error.is_local_fault() => {
                tracing::info!(backend = %address, error = %error_chain(&error), "cannot resolve the backend now (this node's own state); keeping its MAC");
                (Decision::Keep, None)
            }
            Err(error) => (watched.tracker.attempt_ended(None), Some(error)),
        };
        self.decided(address, decision, failure).await
    }

    /// Carries out `decision` for `address` (`failure`: why its attempt
    /// failed); false once the controller is gone.
    async fn decided(
        &mut self,
        address: Ipv4Addr,
        decision: Decision,
        failure: Option<NeighbourError>,
    ) -> bool {
        let state = match decision {
            Decision::Keep => return true,
            Decision::Resolve => {
                self.attempt(address);
                return true;
            }
            Decision::Publish(state) => state,
        };
        let Some(watched) = self.watched.get(&address) else {
            return true;
        };
        let unresolved = state.unresolved.then(|| {
            let why = failure.map_or_else(|| "no answer".to_owned(), |error| error_chain(&error));
            format!("no MAC: neighbour unresolved ({why})")
        });
        match &unresolved {
            Some(reason) => {
                tracing::warn!(backend = %address, mac = %format_mac(&state.mac), %reason, "backend MAC unresolved: no new flows to it")
            }
            None => {
                tracing::info!(backend = %address, mac = %format_mac(&state.mac), interface = %watched.interface.name, "backend MAC resolved")
            }
        }
        let update = MacUpdate {
            address,
            neighbour: Neighbour {
                interface: watched.interface.clone(),
                mac: state.mac,
            },
            unresolved,
        };
        self.updates.send(update).await.is_ok()
    }
}
