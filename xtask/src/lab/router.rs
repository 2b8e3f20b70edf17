//! The router of the active-active lab: a namespace between the client and
//! the switch, running BIRD ([`Bird::start_router`]) with one ECMP route to
//! the VIP over every LB node that announces it.
//!
//! ```text
//!   client eth0 10.1.0.2 ── client 10.1.0.1 [router] eth0 10.0.0.254 ── br0
//! ```
//! [`Router::up`] turns a running lab into this one: the client leaves the
//! switch for a subnet of its own behind the router, the web servers and
//! LB nodes get a route back to that subnet through the router (direct
//! server return replies go straight to it), and the router hashes flows
//! over its next hops by their ports as well as their addresses
//! (`fib_multipath_hash_policy=1`), so one client's connections spread.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::topology::{BRIDGE, HOST_INTERFACE, SUBNET_PREFIX_LEN};
use super::{netns, Bird, Lab, LabError, Node};
use crate::cmd;

/// The client's subnet behind the router.
pub const CLIENT_SUBNET: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 0);

/// Prefix length of [`CLIENT_SUBNET`].
pub const CLIENT_SUBNET_PREFIX_LEN: u8 = 24;

/// The router's address on the client's subnet: the client's gateway.
pub const ROUTER_CLIENT_SIDE: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);

/// The client's address once it is behind the router.
pub const CLIENT_BEHIND_ROUTER: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);

/// The router's interface towards the client, named after its peer.
const CLIENT_PORT: &str = "client";

const POLL: Duration = Duration::from_millis(10);

/// The running router and its BIRD; dropping it stops BIRD (the namespace
/// goes with the lab's teardown).
#[derive(Debug)]
pub struct Router {
    namespace: String,
    bird: Bird,
}

impl Router {
    /// Inserts the router between the client and the switch of `lab` and
    /// starts its BIRD, peering with every LB node.
    pub fn up(lab: &Lab) -> Result<Router, LabError> {
        insert(lab)?;
        Ok(Router {
            namespace: lab.namespace(Node::Router),
            bird: Bird::start_router(lab)?,
        })
    }

    /// The router's BIRD.
    pub fn bird(&mut self) -> &mut Bird {
        &mut self.bird
    }

    /// The next hops of the router's kernel route to `destination`/32 (main
    /// table); empty when there is none.
    pub fn next_hops(&self, destination: Ipv4Addr) -> Result<BTreeSet<Ipv4Addr>, LabError> {
        let output = cmd::output(
            netns::exec(&self.namespace, "ip")
                .args(["-j", "route", "show", "exact"])
                .arg(format!("{destination}/32")),
        )?;
        parse_next_hops(&output)
    }

    /// Waits until the route to `destination` has exactly `expected` next
    /// hops; returns how long that took.
    pub fn wait_for_next_hops(
        &self,
        destination: Ipv4Addr,
        expected: &BTreeSet<Ipv4Addr>,
        timeout: Duration,
    ) -> Result<Duration, LabError> {
        let started = Instant::now();
        loop {
            let next_hops = self.next_hops(destination)?;
            if &next_hops == expected {
                return Ok(started.elapsed());
            }
            if started.elapsed() >= timeout {
                return Err(LabError::NextHops {
                    destination,
                    expected: expected.iter().copied().collect(),
                    timeout,
                    last: next_hops.into_iter().collect(),
                });
            }
            sleep(POLL);
        }
    }
}

/// The router's namespace, wired to the switch and to the client, which
/// leaves the switch.
fn insert(lab: &Lab) -> Result<(), LabError> {
    let router = lab.namespace(Node::Router);
    let switch = lab.namespace(Node::Switch);
    let client = lab.namespace(Node::Client);
    let router_address = Node::Router.address().expect("the router has an address");
    netns::add(&router)?;
    let port = Node::Router.name();
    netns::ip(
        &router,
        &[
            "link",
            "add",
            HOST_INTERFACE,
            "type",
            "veth",
            "peer",
            "name",
            &port,
            "netns",
            &switch,
        ],
    )?;
    netns::ip(&switch, &["link", "set", &port, "master", BRIDGE, "up"])?;
    add_address(&router, HOST_INTERFACE, router_address, SUBNET_PREFIX_LEN)?;

    // Deleting the client's veth removes its end on the switch as well.
    netns::ip(&client, &["link", "del", HOST_INTERFACE])?;
    netns::ip(
        &router,
        &[
            "link",
            "add",
            CLIENT_PORT,
            "type",
            "veth",
            "peer",
            "name",
            HOST_INTERFACE,
            "netns",
            &client,
        ],
    )?;
    add_address(
        &router,
        CLIENT_PORT,
        ROUTER_CLIENT_SIDE,
        CLIENT_SUBNET_PREFIX_LEN,
    )?;
    add_address(
        &client,
        HOST_INTERFACE,
        CLIENT_BEHIND_ROUTER,
        CLIENT_SUBNET_PREFIX_LEN,
    )?;
    netns::ip(
        &client,
        &[
            "route",
            "add",
            "default",
            "via",
            &ROUTER_CLIENT_SIDE.to_string(),
        ],
    )?;
    // As on the switch: the client's packets reach XDP_TX, so they must carry
    // complete checksums.
    lab.run(
        Node::Client,
        "ethtool",
        &["-K", HOST_INTERFACE, "tx", "off"],
    )?;

    netns::set_sysctl(&router, "net.ipv4.ip_forward", "1")?;
    netns::set_sysctl(&router, "net.ipv4.fib_multipath_hash_policy", "1")?;

    let client_subnet = format!("{CLIENT_SUBNET}/{CLIENT_SUBNET_PREFIX_LEN}");
    let via = router_address.to_string();
    for host in Node::LBS.into_iter().chain(Node::WEBS) {
        netns::ip(
            &lab.namespace(host),
            &["route", "add", &client_subnet, "via", &via],
        )?;
    }
    Ok(())
}

/// Adds `address/prefix_len` to `interface` in `namespace` and brings it up.
fn add_address(
    namespace: &str,
    interface: &str,
    address: Ipv4Addr,
    prefix_len: u8,
) -> Result<(), LabError> {
    netns::ip(
        namespace,
        &[
            "addr",
            "add",
            &format!("{address}/{prefix_len}"),
            "dev",
            interface,
        ],
    )?;
    netns::ip(namespace, &["link", "set", interface, "up"])?;
    Ok(())
}

/// The gateways of the routes in `ip -j route show` output: one route with a
/// `gateway`, or a multipath route with `nexthops`, each with its own.
fn parse_next_hops(output: &str) -> Result<BTreeSet<Ipv4Addr>, LabError> {
    let routes: Vec<Value> = serde_json::from_str(output).map_err(LabError::RouteJson)?;
    let gateway = |hop: &Value| {
        hop.get("gateway")
            .and_then(Value::as_str)
            .and_then(|gateway| gateway.parse::<Ipv4Addr>().ok())
    };
    Ok(routes
        .iter()
        .flat_map(|route| {
            let hops = route.get("nexthops").and_then(Value::as_array);
            match hops {
                Some(hops) => hops.iter().filter_map(gateway).collect::<Vec<_>>(),
                None => gateway(route).into_iter().collect(),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hops(addresses: &[[u8; 4]]) -> BTreeSet<Ipv4Addr> {
        addresses.iter().copied().map(Ipv4Addr::from).collect()
    }

    #[test]
    fn next_hops_are_read_from_single_and_multipath_routes() {
        // As iproute2 prints them for BIRD's routes.
        let multipath = r#"[{"dst":"10.0.0.100","protocol":"bird","metric":32,"flags":[],
            "nexthops":[{"gateway":"10.0.0.11","dev":"eth0","weight":1,"flags":[]},
                        {"gateway":"10.0.0.12","dev":"eth0","weight":1,"flags":[]}]}]"#;
        assert_eq!(
            parse_next_hops(multipath).unwrap(),
            hops(&[[10, 0, 0, 11], [10, 0, 0, 12]])
        );
        let single = r#"[{"dst":"10.0.0.100","gateway":"10.0.0.12","dev":"eth0",
            "protocol":"bird","metric":32,"flags":[]}]"#;
        assert_eq!(parse_next_hops(single).unwrap(), hops(&[[10, 0, 0, 12]]));
        assert!(parse_next_hops("[]").unwrap().is_empty());
        assert!(parse_next_hops("not json").is_err());
    }
}
