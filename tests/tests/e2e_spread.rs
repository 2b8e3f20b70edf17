//! End to end through the lab: `lb` on lb1, 300 HTTP requests from the client
//! to the VIP, each on a new connection (new source port). Every request must
//! get `200 OK`, every backend must answer, and the spread must be close to
//! even: within 5% for round-robin, within 30% for Maglev. lb1's `/status`
//! counts one new flow per request on the backend that answered it. The
//! client runs on one CPU, so that every new flow meets lb1's data path on
//! that CPU, with its round-robin cursor: the bound is about the scheduler,
//! not about which CPU each connection landed on.
//!
//! Needs root (namespaces, XDP) and the built `lb` (`cargo xtask test` builds
//! it and sets `LB_BINARY`); without them the tests fail, never skip. Each test
//! runs its own lab (its own prefix), so they may run in parallel.

use std::ops::RangeInclusive;

use lb_tests::e2e::{Pair, Setup};
use xtask::lab::{self, Node, Scheduler};

/// Requests per test.
const REQUESTS: usize = 300;

/// Even share of each backend.
const EVEN: usize = REQUESTS / lab::WEB_COUNT as usize;

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
    let pair = Pair::start(prefix, Setup::Single(lab::lb_config_toml(scheduler)));
    let before = pair.status(Node::Lb1);

    let replies = pair
        .lab()
        .http_get_many_on_cpu(&lab::vip_url(), REQUESTS, 0)
        .expect("requests from the client");
    let after = pair.status(Node::Lb1);
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
        let service = lab::SERVICE_NAME;
        let new_flows = after
            .service(service)
            .backend(&web.name())
            .counters
            .new_flows
            - before
                .service(service)
                .backend(&web.name())
                .counters
                .new_flows;
        assert_eq!(
            new_flows, answered as u64,
            "{scheduler}: lb1 counted {new_flows} new flows to {web}, which answered {answered}"
        );
    }
    assert_eq!(
        counts.len(),
        Node::WEBS.len(),
        "unexpected answers: {counts:?}"
    );
    pair.down();
}
