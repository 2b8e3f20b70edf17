//! The lab's topology: its nodes, their addresses, the VIP.
//!
//! ```text
//!   client 10.0.0.200 ─┐
//!   lb1    10.0.0.11  ─┤
//!   lb2    10.0.0.12  ─┼─ br0 in the switch namespace
//!   web1   10.0.0.1   ─┤   (one veth per host; `eth0` inside the host,
//!   web2   10.0.0.2   ─┤    named after the host on the switch side)
//!   web3   10.0.0.3   ─┘
//! ```
//! Every web server holds the VIP 10.0.0.100 on `lo` (direct server return).
//! The active-active lab adds a router (10.0.0.254) and moves the client
//! behind it (see `router`).

use std::fmt;
use std::net::Ipv4Addr;

/// The virtual IP the load balancer serves.
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);

/// The port the web servers and the lab's service listen on.
pub const HTTP_PORT: u16 = 80;

/// The port the web servers serve HTTPS on, with the lab's certificate,
/// and the lab's HTTPS service.
pub const HTTPS_PORT: u16 = 443;

/// Prefix length of the lab subnet 10.0.0.0/24.
pub const SUBNET_PREFIX_LEN: u8 = 24;

/// Name of every host's interface towards the switch, inside its namespace.
pub const HOST_INTERFACE: &str = "eth0";

/// Name of the bridge in the switch namespace.
pub const BRIDGE: &str = "br0";

/// Number of web servers.
pub const WEB_COUNT: u8 = 3;

/// A node of the lab; each one is a network namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Node {
    /// Sends the traffic.
    Client,
    /// Holds the bridge joining everything.
    Switch,
    /// The active load balancer.
    Lb1,
    /// The standby load balancer.
    Lb2,
    /// Web server `n` (1-based), running nginx.
    Web(u8),
    /// The ECMP router of the active-active lab, between the client and the
    /// switch; not in [`Node::ALL`]: only `router::Router::up` creates it.
    Router,
}

impl Node {
    /// Every node, the switch first.
    pub const ALL: [Node; 7] = [
        Node::Switch,
        Node::Client,
        Node::Lb1,
        Node::Lb2,
        Node::Web(1),
        Node::Web(2),
        Node::Web(3),
    ];

    /// The web servers.
    pub const WEBS: [Node; WEB_COUNT as usize] = [Node::Web(1), Node::Web(2), Node::Web(3)];

    /// The load balancers.
    pub const LBS: [Node; 2] = [Node::Lb1, Node::Lb2];

    /// Nodes only some labs have, which teardown removes as well.
    pub const OPTIONAL: [Node; 1] = [Node::Router];

    /// Every node except the switch: the hosts plugged into it.
    pub fn hosts() -> impl Iterator<Item = Node> {
        Self::ALL.into_iter().filter(|node| *node != Node::Switch)
    }

    /// The node's short name: its namespace name without the lab prefix, and
    /// the name of its port on the switch.
    pub fn name(self) -> String {
        match self {
            Node::Client => "client".into(),
            Node::Switch => "switch".into(),
            Node::Lb1 => "lb1".into(),
            Node::Lb2 => "lb2".into(),
            Node::Web(n) => format!("web{n}"),
            Node::Router => "router".into(),
        }
    }

    /// The node's address on the lab subnet; the switch has none.
    pub fn address(self) -> Option<Ipv4Addr> {
        match self {
            Node::Client => Some(Ipv4Addr::new(10, 0, 0, 200)),
            Node::Switch => None,
            Node::Lb1 => Some(Ipv4Addr::new(10, 0, 0, 11)),
            Node::Lb2 => Some(Ipv4Addr::new(10, 0, 0, 12)),
            Node::Web(n) => Some(Ipv4Addr::new(10, 0, 0, n)),
            Node::Router => Some(Ipv4Addr::new(10, 0, 0, 254)),
        }
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_and_addresses_are_unique() {
        let every = || Node::ALL.iter().chain(&Node::OPTIONAL).copied();
        let names: HashSet<String> = every().map(|n| n.name()).collect();
        assert_eq!(names.len(), Node::ALL.len() + Node::OPTIONAL.len());
        let addresses: HashSet<Ipv4Addr> = every().filter_map(Node::address).collect();
        assert_eq!(addresses.len(), names.len() - 1);
        assert!(!addresses.contains(&VIP));
    }

    #[test]
    fn switch_port_names_fit_an_interface_name() {
        assert!(Node::hosts().all(|node| node.name().len() < 16));
    }
}
