//! The active-active lab's routing, without `lb` running: the router
//! namespace with BIRD in front of the client, BIRD on lb1 and lb2, and each
//! node's announcement made by `lb`'s own netlink code (`add_route` /
//! `remove_route` in table 200, from inside the node's namespace). Asserted
//! on the router's kernel table:
//!
//! - both nodes announce: one route to the VIP with both nodes as next hops;
//! - lb1 removes its route: lb2 alone; lb1 adds it again: both;
//! - lb2's link goes down: BFD takes it out in under a second;
//! - the nodes' own route to the VIP is the same before and after.
//!
//! Also: the shipped BIRD and FRR example configs parse with the real
//! daemons.
//!
//! Needs root (namespaces) and BIRD 2 and FRR (`cargo xtask bootstrap`
//! installs them); without them the tests fail, never skip. The lab's prefix
//! is `lbbgp-`.

use std::collections::BTreeSet;
use std::fs::File;
use std::future::Future;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::Duration;

use lb::netlink::{Netlink, TableRoute};
use xtask::bootstrap;
use xtask::lab::{
    self, session_name, Bird, Lab, LabOptions, Node, Router, ANNOUNCE_TABLE, UPSTREAM_SESSION, VIP,
};
use xtask::paths;

const PREFIX: &str = "lbbgp-";
/// BGP sessions come up within seconds (1 s connect delay, 1 s keepalive).
const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(20);
/// A route change reaches the router in tens of milliseconds (BIRD learns
/// table 200 from netlink events); generous, to catch hangs only.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(5);
/// A node whose link is down must be gone from the router within this (BFD
/// at 100 ms x 3).
const BFD_BOUND: Duration = Duration::from_secs(1);
/// A node whose link is back: BGP reconnects after BIRD's error wait (1 s).
const REJOIN_TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn examples_parse_with_the_real_daemons() {
    let examples = paths::workspace_root().join("lb-userspace/examples/bgp");
    for name in ["bird-node.conf", "bird-router.conf"] {
        check(
            Command::new("bird")
                .arg("-p")
                .arg("-c")
                .arg(examples.join(name)),
        );
    }
    for name in ["frr-node.conf", "frr-router.conf"] {
        check(
            Command::new("vtysh")
                .arg("--dryrun")
                .arg("-f")
                .arg(examples.join(name)),
        );
    }
}

fn check(command: &mut Command) {
    let output = command.output().unwrap_or_else(|error| {
        panic!("running {command:?} (installed by `cargo xtask bootstrap`): {error}")
    });
    assert!(
        output.status.success(),
        "{command:?}: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_router_spreads_over_the_nodes_that_announce_and_bfd_drops_a_dead_one() {
    assert!(
        bootstrap::is_root(),
        "this test needs root (network namespaces): run `cargo xtask test` as root"
    );
    // The leftovers of a crashed earlier run of this very test, if any.
    lab::teardown(PREFIX).expect("removing a stale lab");
    let lab = Lab::up(&LabOptions {
        static_vip_on_lb1: false,
        ..LabOptions::new(PREFIX)
    })
    .expect("bringing the lab up");
    // Declared after the lab: stopped before it is torn down.
    let mut router = Router::up(&lab).expect("inserting the router");
    let mut speakers = Node::LBS.map(|node| Bird::start_lb(&lab, node).expect("starting bird"));

    // The client reaches a web server through the router, and back.
    let web = Node::Web(1);
    let reply = lab
        .http_get(&format!(
            "http://{}:{}/",
            web.address().unwrap(),
            lab::HTTP_PORT
        ))
        .expect("GET through the router");
    assert!(reply.is_ok(), "client to {web} through the router: {reply}");
    assert_eq!(reply.body, lab::index_body(web).trim());

    let sessions: Vec<String> = Node::LBS.into_iter().map(session_name).collect();
    router
        .bird()
        .wait_established(&sessions, ESTABLISH_TIMEOUT)
        .expect("the router's sessions");
    for speaker in &mut speakers {
        speaker
            .wait_established(&[UPSTREAM_SESSION.to_owned()], ESTABLISH_TIMEOUT)
            .expect("a node's session");
    }
    assert!(
        router.next_hops(VIP).unwrap().is_empty(),
        "nothing is announced yet"
    );
    let own_routes_before = Node::LBS.map(|node| route_get(&lab, node));

    let both = next_hops(&Node::LBS);
    for node in Node::LBS {
        assert_eq!(
            announce(&lab, node),
            [VIP],
            "{node}'s table {ANNOUNCE_TABLE}"
        );
    }
    let took = router
        .wait_for_next_hops(VIP, &both, CONVERGE_TIMEOUT)
        .expect("both nodes as next hops");
    println!("both announced: the router has both next hops after {took:?}");
    assert_eq!(
        Node::LBS.map(|node| route_get(&lab, node)),
        own_routes_before,
        "the table route changed how a node routes to the VIP"
    );

    assert!(
        withdraw(&lab, Node::Lb1).is_empty(),
        "lb1's table after withdrawing"
    );
    let took = router
        .wait_for_next_hops(VIP, &next_hops(&[Node::Lb2]), CONVERGE_TIMEOUT)
        .expect("lb2 alone after lb1 withdrew");
    println!("lb1 withdrew: gone from the router after {took:?}");
    announce(&lab, Node::Lb1);
    let took = router
        .wait_for_next_hops(VIP, &both, CONVERGE_TIMEOUT)
        .expect("both again after lb1 announced");
    println!("lb1 announced again: back after {took:?}");

    let lb2 = lab.namespace(Node::Lb2);
    lab::netns_exec(&lb2, "ip")
        .args(["link", "set", lab::HOST_INTERFACE, "down"])
        .status()
        .expect("lb2's link down");
    let took = router
        .wait_for_next_hops(VIP, &next_hops(&[Node::Lb1]), BFD_BOUND)
        .expect("BFD takes lb2 out within a second");
    println!("lb2's link down: gone from the router after {took:?}");
    lab::netns_exec(&lb2, "ip")
        .args(["link", "set", lab::HOST_INTERFACE, "up"])
        .status()
        .expect("lb2's link up");
    let took = router
        .wait_for_next_hops(VIP, &both, REJOIN_TIMEOUT)
        .expect("lb2 back after its link came up");
    println!("lb2's link up: back after {took:?}");
}

fn next_hops(nodes: &[Node]) -> BTreeSet<Ipv4Addr> {
    nodes.iter().filter_map(|node| node.address()).collect()
}

/// `ip route get VIP` on `node`: how the node itself sends to the VIP.
fn route_get(lab: &Lab, node: Node) -> String {
    lab.run(node, "ip", &["route", "get", &VIP.to_string()])
        .expect("ip route get")
}

fn vip_route() -> TableRoute {
    TableRoute {
        table: ANNOUNCE_TABLE,
        destination: VIP,
    }
}

/// Adds the VIP's route on `node` (twice: the second is a no-op); returns
/// the node's table routes afterwards.
fn announce(lab: &Lab, node: Node) -> Vec<Ipv4Addr> {
    in_namespace(lab.namespace(node), |netlink| async move {
        netlink.add_route(vip_route()).await.expect("add_route");
        netlink
            .add_route(vip_route())
            .await
            .expect("add_route again");
        netlink
            .routes_in_table(ANNOUNCE_TABLE)
            .await
            .expect("routes_in_table")
    })
}

/// Removes the VIP's route on `node` (twice: the second is a no-op);
/// returns the node's table routes afterwards.
fn withdraw(lab: &Lab, node: Node) -> Vec<Ipv4Addr> {
    in_namespace(lab.namespace(node), |netlink| async move {
        netlink
            .remove_route(vip_route())
            .await
            .expect("remove_route");
        netlink
            .remove_route(vip_route())
            .await
            .expect("remove_route again");
        netlink
            .routes_in_table(ANNOUNCE_TABLE)
            .await
            .expect("routes_in_table")
    })
}

/// Runs `work` on a netlink connection opened inside `namespace`, on a
/// thread of its own (setns moves only the calling thread).
fn in_namespace<T, Work, Done>(namespace: String, work: Work) -> T
where
    T: Send + 'static,
    Work: FnOnce(Netlink) -> Done + Send + 'static,
    Done: Future<Output = T>,
{
    thread::spawn(move || {
        let path = PathBuf::from("/run/netns").join(&namespace);
        let file = File::open(&path).expect("opening the namespace");
        // SAFETY: setns only reads the descriptor, which `file` keeps open
        // for the call, and moves only this thread into the namespace.
        let result = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(
            result,
            0,
            "setns {namespace}: {}",
            std::io::Error::last_os_error()
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        // The netlink socket is opened here, so it is the namespace's.
        runtime.block_on(async move { work(Netlink::connect().expect("netlink")).await })
    })
    .join()
    .expect("the netlink thread panicked")
}
