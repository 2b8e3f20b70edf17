//! End to end through the active-active lab: lb1 and lb2 run `lb` with
//! `[bgp]`, each node's BIRD exports `lb`'s table route for the VIP, and the
//! router spreads the client's connections over both by ECMP. Asserted on
//! the router's next hops and each node's `/status`:
//!
//! - both nodes announce, both forward, and every request gets `200 OK`;
//! - a node with no serving backend (every backend disabled on lb1)
//!   withdraws, and announces again once one serves;
//! - a graceful stop withdraws before the node stops forwarding.
//!
//! Needs root (namespaces, XDP), BIRD 2 (`cargo xtask bootstrap`) and the
//! built `lb`; without them the test fails, never skips. Lab prefix `lbb1-`.

use std::time::Duration;

use lb_tests::e2e::{one_at_a_time, Pair, Setup};
use xtask::lab::{self, Node};

/// New connections per round: enough that both nodes get some by the
/// router's hash of their source ports.
const REQUESTS: usize = 60;

/// How long a change of a node's announcement gets to reach the router:
/// the API call, the announcer's next observation, BIRD's netlink scan and
/// the BGP update.
const CONVERGE: Duration = Duration::from_secs(3);

/// The lab configuration's `bgp.withdraw_grace`.
const WITHDRAW_GRACE: Duration = Duration::from_secs(1);

#[test]
fn both_nodes_forward_and_a_node_that_cannot_serve_withdraws() {
    let _serial = one_at_a_time();
    let mut pair = Pair::start("lbb1-", Setup::Bgp);

    let before = Node::LBS.map(|node| pair.counters(node));
    assert_all_ok(&pair, "with both nodes announcing");
    for (node, earlier) in Node::LBS.into_iter().zip(before) {
        pair.assert_forwarded_since(node, earlier, "while both announce");
    }

    // lb1 loses every backend (disabled by the operator): it withdraws.
    for web in Node::WEBS {
        pair.lb(
            Node::Lb1,
            &["backend", "disable", lab::SERVICE_NAME, &web.name()],
        );
    }
    let took = pair.wait_for_next_hops(&[Node::Lb2], CONVERGE);
    println!("lb1 without a serving backend: withdrawn after {took:?}");
    let lb1_before = pair.counters(Node::Lb1);
    assert_all_ok(&pair, "with lb1 withdrawn");
    assert_eq!(
        pair.counters(Node::Lb1).since(lb1_before).packets,
        0,
        "lb1 got traffic after withdrawing"
    );

    // One backend back: lb1 announces again.
    pair.lb(Node::Lb1, &["backend", "enable", lab::SERVICE_NAME, "web1"]);
    let took = pair.wait_for_next_hops(&Node::LBS, CONVERGE);
    println!("lb1 serving again: announced after {took:?}");
    for web in ["web2", "web3"] {
        pair.lb(Node::Lb1, &["backend", "enable", lab::SERVICE_NAME, web]);
    }

    // A graceful stop withdraws first: lb2 is gone from the router while
    // its lb still runs (withdraw_grace = 1 s).
    let (status, withdrawn) = pair.terminate_until_next_hops(Node::Lb2, &[Node::Lb1], CONVERGE);
    assert!(status.success(), "lb on lb2 exited with {status}");
    println!("lb2 stopping: withdrawn after {withdrawn:?}");
    assert!(
        withdrawn < WITHDRAW_GRACE,
        "lb2's withdrawal took {withdrawn:?}, longer than it keeps forwarding"
    );
    assert_all_ok(&pair, "after lb2 stopped");
    pair.down();
}

/// Every one of [`REQUESTS`] new connections from the client gets `200 OK`.
fn assert_all_ok(pair: &Pair, while_: &str) {
    let replies = pair
        .lab()
        .http_get_many(&lab::vip_url(), REQUESTS)
        .expect("requests from the client");
    let failed: Vec<String> = replies
        .iter()
        .filter(|reply| !reply.is_ok())
        .map(ToString::to_string)
        .collect();
    assert!(failed.is_empty(), "{while_}: {failed:?}");
}
