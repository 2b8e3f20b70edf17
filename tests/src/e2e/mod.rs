//! The end-to-end tests' harness over the lab (`xtask::lab`): start `lb` on
//! one node or as a VRRP pair and read each node's `/status`
//! ([`Pair`]), run request streams and long-lived connections through the
//! VIP and judge what they saw ([`traffic`]), give the client several
//! addresses for a steady stream of new connections and break a backend's
//! host or a client's path ([`steady`]), measure the gap an event makes
//! ([`gap`]), read the pinned data path ([`pins`]) and act inside a
//! namespace ([`in_namespace`]). Tests assert on state and counters read
//! this way, never on `lb`'s log.

pub mod gap;
mod netns;
pub mod pair;
pub mod pins;
pub mod status;
pub mod steady;
pub mod traffic;

use std::sync::{Mutex, MutexGuard};

pub use netns::in_namespace;
pub use pair::{Pair, Setup, StatusError};
pub use status::{
    BackendReport, BackendState, BgpReport, ConfigReport, Counters, Handshakes, Health, HealthBy,
    ReloadCounts, StatusReport, VipAnnouncement, VrrpReport, VrrpState,
};
pub use steady::{ClientAddresses, NftFault};
pub use traffic::{
    Connections, Event, LongLived, Outcome, StreamLog, Streams, Traffic, FAILOVER_GAP_BOUND,
};

/// Serialises the tests of one test binary that measure times on a small
/// machine: hold the guard for the whole test.
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    // A failed test poisons the lock; the next ones still run.
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Fails (never skips) unless the test runs as root.
pub fn require_root() {
    assert!(
        xtask::bootstrap::is_root(),
        "this test needs root (network namespaces, XDP): run `cargo xtask test` as root"
    );
}
