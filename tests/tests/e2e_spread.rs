//! End to end through the lab: `lb` on lb1, 300 HTTP requests from the client
//! to the VIP, each on a new connection (new source port). Every request must
//! get `200 OK`, every backend must answer, and the spread must be close to
//! even: within 5% for round-robin, within 30% for Maglev.
//!
//! Needs root (namespaces, XDP) and the built `lb` (`cargo xtask test` builds
//! it and sets `LB_BINARY`); without them the tests fail, never skip. Each test
//! runs its own lab (its own prefix), so they may run in parallel.

use std::ops::RangeInclusive;
use std::time::Duration;

use xtask::bootstrap;
use xtask::lab::{self, Lab, LabOptions, Node, Scheduler};
use xtask::paths;

/// Requests per test.
const REQUESTS: usize = 300;

/// Even share of each backend.
const EVEN: usize = REQUESTS / lab::WEB_COUNT as usize;

/// How long `lb` gets to attach and program its maps.
const LB_READY_TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn round_robin_spreads_within_5_percent_of_even() {
    spread(
        "lbt-rr-",
        Scheduler::RoundRobin,
        EVEN * 95 / 100..=EVEN * 105 / 100,
    );
}

#[test]
fn maglev_spreads_within_30_percent_of_even() {
    spread(
        "lbt-mg-",
        Scheduler::Maglev,
        EVEN * 70 / 100..=EVEN * 130 / 100,
    );
}

/// The configuration the lab writes is one `lb` accepts, for both schedulers.
#[test]
fn lab_config_is_accepted_by_lb() {
    for scheduler in [Scheduler::RoundRobin, Scheduler::Maglev] {
        let config = lb::config::parse(&lab::lb_config_toml(scheduler), "lab.toml")
            .unwrap_or_else(|error| panic!("{scheduler}: {error}"));
        assert_eq!(config.services.len(), 1);
        assert_eq!(config.services[0].vip, lab::VIP);
        assert_eq!(config.backend_count(), lab::WEB_COUNT as usize);
    }
}

fn spread(prefix: &str, scheduler: Scheduler, allowed: RangeInclusive<usize>) {
    assert!(
        bootstrap::is_root(),
        "this test needs root (network namespaces, XDP): run `cargo xtask test` as root"
    );
    // The leftovers of a crashed earlier run of this very test, if any.
    lab::teardown(prefix).expect("removing a stale lab");

    let lab = Lab::up(&LabOptions::new(prefix)).expect("bringing the lab up");
    let config = lab
        .write_lb_config(scheduler)
        .expect("writing the lb config");
    let mut lb = lab
        .start_lb(Node::Lb1, &paths::lb_binary(), &config)
        .expect("starting lb");
    lab.wait_until_vip_serves(&mut lb, LB_READY_TIMEOUT)
        .expect("lb serving the VIP");

    let replies = lab
        .http_get_many(&lab::vip_url(), REQUESTS)
        .expect("requests from the client");
    let counts = lab::tally(&replies);
    println!("{scheduler}: {counts:?}");
    let failed = replies.iter().filter(|reply| !reply.is_ok()).count();
    assert_eq!(
        failed, 0,
        "{failed} of {REQUESTS} requests failed: {counts:?}"
    );
    for web in Node::WEBS {
        let answered = counts.get(&web.name()).copied().unwrap_or(0);
        assert!(
            allowed.contains(&answered),
            "{scheduler}: {web} answered {answered} of {REQUESTS}, expected {allowed:?}; all: {counts:?}"
        );
    }
    assert_eq!(
        counts.len(),
        Node::WEBS.len(),
        "unexpected answers: {counts:?}"
    );

    let status = lb.stop().expect("stopping lb");
    assert!(status.success(), "lb exited with {status} on SIGTERM");
    lab.down().expect("tearing the lab down");
    assert!(
        !lab::exists(prefix).expect("listing namespaces"),
        "namespaces left behind"
    );
}
