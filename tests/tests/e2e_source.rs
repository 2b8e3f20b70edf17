//! `scheduler = "source"` end to end through the lab: `lb` on lb1 with the
//! lab's service scheduled by client address. The client namespace takes
//! 24 more addresses on its interface and sends each one's requests from it,
//! every request on a new connection (so from a new port).
//!
//! - every connection of one client address reaches the same backend;
//! - the clients spread over all three backends;
//! - a backend that fails moves only its own clients: every other client
//!   keeps its backend.
//!
//! Needs root (namespaces, XDP) and the built `lb` (`cargo xtask test` builds
//! it and sets `LB_BINARY`); without them the test fails, never skips. Its
//! lab's prefix is `lbs-`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use lb_tests::e2e::{one_at_a_time, BackendState, Pair, Setup};
use xtask::lab::{self, Node, Scheduler};

/// Clients: 10.0.0.160 to 10.0.0.183, beside the lab's own client address.
const CLIENTS: std::ops::Range<u8> = 160..184;
/// Connections per client.
const CONNECTIONS_EACH: usize = 4;
/// Generous bound on a backend's failure being seen (not a goal).
const PATIENCE: Duration = Duration::from_secs(20);

fn client(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, last)
}

/// The backend that answered each of `CONNECTIONS_EACH` requests of each
/// client, each request on a new connection from that client's address.
fn answers(pair: &Pair) -> BTreeMap<Ipv4Addr, Vec<String>> {
    CLIENTS
        .map(|last| {
            let source = client(last).to_string();
            let replies = (0..CONNECTIONS_EACH)
                .map(|_| {
                    pair.lab()
                        .run(
                            Node::Client,
                            "curl",
                            &[
                                "-sS",
                                "--fail",
                                "-m",
                                "2",
                                "--interface",
                                &source,
                                &lab::vip_url(),
                            ],
                        )
                        .unwrap_or_else(|error| panic!("a request from {source}: {error}"))
                        .trim()
                        .to_owned()
                })
                .collect();
            (client(last), replies)
        })
        .collect()
}

/// Each client's one backend, asserting it answered all its connections.
fn backend_of_each(answers: &BTreeMap<Ipv4Addr, Vec<String>>) -> BTreeMap<Ipv4Addr, String> {
    answers
        .iter()
        .map(|(client, replies)| {
            let distinct: BTreeSet<&String> = replies.iter().collect();
            assert_eq!(
                distinct.len(),
                1,
                "client {client}: every connection on one backend, got {replies:?}"
            );
            (*client, replies[0].clone())
        })
        .collect()
}

#[test]
fn a_client_sticks_to_one_backend_and_clients_spread_over_all() {
    let _serial = one_at_a_time();
    let config = lab::lb_config_toml(Scheduler::Source) + lab::HEALTH_SECTION;
    let pair = Pair::start("lbs-", Setup::Single(config));
    for last in CLIENTS {
        pair.lab()
            .run(
                Node::Client,
                "ip",
                &[
                    "addr",
                    "add",
                    &format!("{}/24", client(last)),
                    "dev",
                    lab::HOST_INTERFACE,
                ],
            )
            .expect("adding a client address");
    }

    let before = backend_of_each(&answers(&pair));
    let spread: BTreeSet<&String> = before.values().collect();
    let expected: BTreeSet<String> = Node::WEBS.iter().map(|web| web.name()).collect();
    assert_eq!(
        spread,
        expected.iter().collect(),
        "{} clients over every backend: {before:?}",
        before.len()
    );

    // web2 fails: only its clients move.
    let web2 = Node::Web(2);
    pair.lab().stop_web(web2).expect("stopping nginx on web2");
    pair.wait_for_backend(Node::Lb1, web2, BackendState::Down, PATIENCE);
    let after = backend_of_each(&answers(&pair));
    for (client, backend) in &before {
        if *backend == web2.name() {
            assert_ne!(after[client], web2.name(), "client {client} left web2");
        } else {
            assert_eq!(&after[client], backend, "client {client} kept its backend");
        }
    }
    println!(
        "(s) {} clients: {:?} before; web2's {} clients moved, the others stayed",
        before.len(),
        count_by_backend(&before),
        before.values().filter(|b| **b == web2.name()).count()
    );
    pair.down();
}

fn count_by_backend(backends: &BTreeMap<Ipv4Addr, String>) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for backend in backends.values() {
        *counts.entry(backend.as_str()).or_insert(0) += 1;
    }
    counts
}
