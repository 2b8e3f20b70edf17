//! The active-passive pair with health checks (`/health` every 200 ms, rise
//! 2, fall 2), through outages that are a node's own, not the backends':
//!
//! - lb1's link goes down for 4 s and comes back. Its checks fail with
//!   "Network is unreachable" meanwhile: they are set aside as unknown, so
//!   lb1 keeps every backend up, and once back it holds its priority down
//!   until every backend has a fresh result, then preempts. Every
//!   long-lived connection survives and no request is reset.
//! - the same outage while web2 really dies: lb1's fresh checks find it
//!   down, and lb1 takes the VIP back only with web2 out of its table.
//! - lb2 (the backup) flaps its link: lb1 stays master, traffic sees
//!   nothing, and lb2 comes back as backup with a fresh view.
//! - only lb1 (the master) loses web2, by a filter on web2 that drops
//!   lb1's checks: lb1 trusts its own view and stays master without web2
//!   (the pair does not vote), while lb2 still has it; the nodes' table
//!   fingerprints differ, which is how an operator sees the split.
//!
//! Asserted on `/status` (backend states and since when, the VRRP role,
//! `preemption_holds`) and on the traffic itself. Needs root (namespaces,
//! XDP) and the built `lb`; without them the tests fail, never skip.
//! Prefix `lbv-<x>-`.

use std::thread::sleep;
use std::time::{Duration, SystemTime};

use lb_tests::e2e::{one_at_a_time, BackendState, Event, Pair, Setup, Traffic, VrrpState};
use xtask::lab::{self, Node, PairOptions};

/// Generous bound on any failover: only catches hangs.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(10);
/// Generous bound on a returning lb1 becoming master again.
const PREEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node's link stays down: many check intervals.
const OUTAGE: Duration = Duration::from_secs(4);
/// The backend that really fails in the second test.
const WEB2: Node = Node::Web(2);
/// Generous bound on the gap in the request streams around one failover.
const GAP_BOUND: Duration = Duration::from_secs(5);

fn start_pair(prefix: &str) -> Pair {
    let options = PairOptions {
        checks: true,
        ..PairOptions::default()
    };
    Pair::start(prefix, Setup::Vrrp(options))
}

#[test]
fn a_node_back_from_its_own_outage_keeps_its_view_and_every_connection() {
    let _serial = one_at_a_time();
    let mut pair = start_pair("lbv-a-");
    let holds_before = pair.vrrp(Node::Lb1).preemption_holds;
    let traffic = Traffic::start(pair.lab(), Duration::from_secs(16));
    sleep(Duration::from_secs(2));

    let down_at = SystemTime::now();
    pair.lab().set_link(Node::Lb1, false).expect("link down");
    let failover = pair.wait_for_master(Node::Lb2, FAILOVER_TIMEOUT);
    sleep(OUTAGE);
    // The link is down: lb1 cannot check, and says so, keeping the health
    // it last knew.
    let during = pair.status(Node::Lb1);
    for backend in during.backends() {
        assert_eq!(backend.state, BackendState::Up, "{backend:?}");
        assert!(backend.health_unknown.is_some(), "{backend:?}");
        assert!(!backend.settled, "{backend:?}");
    }

    let up_at = SystemTime::now();
    pair.lab().set_link(Node::Lb1, true).expect("link up");
    let preempt = pair.wait_for_master(Node::Lb1, PREEMPT_TIMEOUT);
    let outcome = traffic.finish();

    let events = [
        Event {
            what: "lb1's link down, lb2 takes over",
            at: down_at,
            vip_moved: failover,
        },
        Event {
            what: "lb1's link up, lb1 preempts once its view is fresh",
            at: up_at,
            vip_moved: preempt,
        },
    ];
    outcome.report("lb1's own outage", &events);
    outcome.connections.assert_all_survived();
    outcome.assert_no_resets();
    outcome.assert_gaps_bounded(&events, GAP_BOUND);

    let after = pair.status(Node::Lb1);
    for backend in after.backends() {
        assert_eq!(backend.state, BackendState::Up, "{backend:?}");
        assert!(
            backend.since < down_at,
            "lb1 never changed {}'s state: {backend:?}",
            backend.name
        );
        assert!(
            backend.settled && backend.health_unknown.is_none(),
            "{backend:?}"
        );
    }
    assert!(
        after.vrrp().preemption_holds > holds_before,
        "lb1 held its priority down while its view was stale: {:?}",
        after.vrrp()
    );
    pair.down();
}

#[test]
fn a_backend_that_really_fails_during_the_outage_is_down_once_the_node_is_back() {
    let _serial = one_at_a_time();
    let mut pair = start_pair("lbv-b-");

    pair.lab().set_link(Node::Lb1, false).expect("link down");
    pair.wait_for_master(Node::Lb2, FAILOVER_TIMEOUT);
    pair.lab().stop_web(WEB2).expect("stopping web2");
    pair.wait_for_backend(Node::Lb2, WEB2, BackendState::Down, FAILOVER_TIMEOUT);
    sleep(OUTAGE);
    let web2_before = pair.backend(Node::Lb1, WEB2);
    assert_eq!(
        web2_before.state,
        BackendState::Up,
        "lb1 could not check: web2 keeps its last state there"
    );

    pair.lab().set_link(Node::Lb1, true).expect("link up");
    pair.wait_for_master(Node::Lb1, PREEMPT_TIMEOUT);
    let status = pair.status(Node::Lb1);
    let web2 = status.service(lab::SERVICE_NAME).backend(&WEB2.name());
    assert_eq!(web2.state, BackendState::Down, "{web2:?}");
    assert!(web2.settled, "{web2:?}");
    let vrrp = status.vrrp();
    assert!(
        vrrp.since >= web2.since,
        "lb1 became master ({:?}) before its fresh checks took web2 out ({:?})",
        vrrp.since,
        web2.since
    );
    let replies = pair
        .lab()
        .http_get_many(&lab::vip_url(), 30)
        .expect("requests from the client");
    let failed: Vec<String> = replies
        .iter()
        .filter(|reply| !reply.is_ok())
        .map(ToString::to_string)
        .collect();
    assert!(failed.is_empty(), "through lb1 without web2: {failed:?}");
    pair.down();
}

#[test]
fn a_link_flap_of_the_backup_changes_nothing_for_traffic() {
    let _serial = one_at_a_time();
    let pair = start_pair("lbv-c-");
    let lb1_before = pair.vrrp(Node::Lb1);
    let lb2_holds_before = pair.vrrp(Node::Lb2).preemption_holds;
    let traffic = Traffic::start(pair.lab(), Duration::from_secs(10));
    sleep(Duration::from_secs(2));

    pair.lab().set_link(Node::Lb2, false).expect("link down");
    pair.wait_until(Node::Lb2, "in fault", FAILOVER_TIMEOUT, |status| {
        status.vrrp().state == VrrpState::Fault
    });
    sleep(Duration::from_secs(2));
    pair.lab().set_link(Node::Lb2, true).expect("link up");
    let back = pair.wait_until(
        Node::Lb2,
        "backup with a fresh view",
        PREEMPT_TIMEOUT,
        |status| {
            status.vrrp().state == VrrpState::Backup
                && status
                    .backends()
                    .all(|backend| backend.settled && backend.state == BackendState::Up)
        },
    );
    let outcome = traffic.finish();
    outcome.report("lb2's link flap", &[]);
    outcome.connections.assert_all_survived();
    outcome.assert_no_resets();
    assert!(
        outcome.streams.failures().is_empty(),
        "requests failed while only the backup flapped: {:?}",
        outcome.streams.failures()
    );

    let lb1_after = pair.vrrp(Node::Lb1);
    assert_eq!(lb1_after.state, VrrpState::Master);
    assert_eq!(
        lb1_after.transitions, lb1_before.transitions,
        "lb1 stayed master throughout"
    );
    assert!(back.vrrp().preemption_holds > lb2_holds_before);
    pair.down();
}

#[test]
fn a_backend_lost_only_in_the_master_s_view_leaves_the_master_s_table_only() {
    let _serial = one_at_a_time();
    let pair = start_pair("lbv-d-");
    let lb1_before = pair.vrrp(Node::Lb1);
    let lb1_address = Node::Lb1.address().expect("lb1 has an address").to_string();
    let nft = |args: &[&str]| {
        pair.lab()
            .run(WEB2, "nft", args)
            .expect("nft in web2's namespace");
    };
    nft(&["add", "table", "ip", "lbtest"]);
    nft(&[
        "add",
        "chain",
        "ip",
        "lbtest",
        "input",
        "{ type filter hook input priority 0; policy accept; }",
    ]);
    nft(&[
        "add",
        "rule",
        "ip",
        "lbtest",
        "input",
        "ip",
        "saddr",
        &lb1_address,
        "tcp",
        "dport",
        "80",
        "drop",
    ]);
    pair.wait_for_backend(Node::Lb1, WEB2, BackendState::Down, FAILOVER_TIMEOUT);

    let lb2 = pair.status(Node::Lb2);
    assert_eq!(
        lb2.service(lab::SERVICE_NAME).backend(&WEB2.name()).state,
        BackendState::Up,
        "lb2 still reaches web2"
    );
    let lb1 = pair.status(Node::Lb1);
    assert_ne!(
        lb1.service(lab::SERVICE_NAME).table_fingerprint,
        lb2.service(lab::SERVICE_NAME).table_fingerprint,
        "the split shows in the fingerprints"
    );
    let vrrp = lb1.vrrp();
    assert_eq!(vrrp.state, VrrpState::Master);
    assert_eq!(
        vrrp.transitions, lb1_before.transitions,
        "lb1 stayed master"
    );
    let web2_before = lb1
        .service(lab::SERVICE_NAME)
        .backend(&WEB2.name())
        .counters;
    let replies = pair
        .lab()
        .http_get_many(&lab::vip_url(), 30)
        .expect("requests from the client");
    assert!(replies.iter().all(|reply| reply.is_ok()), "{replies:?}");
    let web2_after = pair.backend(Node::Lb1, WEB2).counters;
    assert_eq!(
        web2_after.new_flows, web2_before.new_flows,
        "lb1 gave web2 no new flow"
    );
    pair.down();
}
