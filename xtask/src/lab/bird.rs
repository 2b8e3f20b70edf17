//! BIRD 2 in the active-active lab: one daemon per namespace (`bird -f -c
//! CONF -s SOCK -P PID`, files in the lab's run directory), the router's and
//! each LB node's, talking eBGP across the switch with BFD so that a node
//! that goes silent is withdrawn in well under a second.
//!
//! - An LB node's daemon learns the /32 routes that `lb` keeps in
//!   [`ANNOUNCE_TABLE`] (`protocol kernel { kernel table 200; learn; }`) and
//!   exports them, with itself as next hop, to the router; it imports
//!   nothing.
//! - The router's daemon takes them from every node and installs one route
//!   with a next hop per node (`merge paths on`).
//!
//! The same settings as `lb-userspace/examples/bgp/bird-*.conf`, with the
//! lab's addresses.

use std::collections::BTreeSet;
use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::{Lab, LabError, Node, NsProcess};
use crate::cmd;

/// The routing table the LB nodes' `lb` keeps its announcements in.
pub const ANNOUNCE_TABLE: u32 = 200;

/// The router's autonomous system.
pub const ROUTER_AS: u32 = 65000;

/// The LB nodes' autonomous system: one for all of them, so that the
/// router sees equal paths (and never hands one node's route to another).
pub const LB_AS: u32 = 65001;

/// BFD's transmit and receive interval; three missed packets declare a
/// peer down.
const BFD_INTERVAL_MS: u32 = 100;

const POLL: Duration = Duration::from_millis(100);

/// A BIRD daemon running in one of the lab's namespaces; dropping it stops
/// it.
#[derive(Debug)]
pub struct Bird {
    node: Node,
    socket: PathBuf,
    process: NsProcess,
}

impl Bird {
    /// Starts the router's daemon, peering with every LB node.
    pub fn start_router(lab: &Lab) -> Result<Bird, LabError> {
        Bird::start(lab, Node::Router, &router_config())
    }

    /// Starts `node`'s daemon, exporting [`ANNOUNCE_TABLE`] to the router.
    pub fn start_lb(lab: &Lab, node: Node) -> Result<Bird, LabError> {
        Bird::start(lab, node, &lb_config(node))
    }

    fn start(lab: &Lab, node: Node, config: &str) -> Result<Bird, LabError> {
        let dir = lab.run_dir();
        let file = |suffix: &str| dir.join(format!("bird-{node}.{suffix}"));
        let (config_path, socket, pid) = (file("conf"), file("ctl"), file("pid"));
        fs::write(&config_path, config).map_err(|error| LabError::Io {
            context: format!("writing {}", config_path.display()),
            error,
        })?;
        let mut command = lab.command(node, "bird");
        command
            .arg("-f")
            .arg("-c")
            .arg(&config_path)
            .arg("-s")
            .arg(&socket)
            .arg("-P")
            .arg(&pid);
        let process = lab.spawn(
            &format!("bird on {node}"),
            &mut command,
            &format!("bird-{node}.log"),
        )?;
        Ok(Bird {
            node,
            socket,
            process,
        })
    }

    /// The names of its BGP sessions that are established.
    pub fn established(&mut self) -> Result<BTreeSet<String>, LabError> {
        let exited = self
            .process
            .try_exit_status()
            .map_err(|error| LabError::Io {
                context: format!("checking on bird in {}", self.node),
                error,
            })?;
        if let Some(status) = exited {
            return Err(LabError::DaemonExited {
                daemon: "bird",
                node: self.node,
                status,
                log: self.process.log_path().to_owned(),
                log_tail: self.process.log_tail(10),
            });
        }
        // The control socket appears once bird has read its config.
        if !self.socket.exists() {
            return Ok(BTreeSet::new());
        }
        let output = cmd::output(
            Command::new("birdc")
                .arg("-s")
                .arg(&self.socket)
                .args(["show", "protocols"]),
        )?;
        Ok(established_sessions(&output))
    }

    /// Waits until every session in `sessions` is established.
    pub fn wait_established(
        &mut self,
        sessions: &[String],
        timeout: Duration,
    ) -> Result<(), LabError> {
        let deadline = Instant::now() + timeout;
        loop {
            let established = self.established()?;
            if sessions.iter().all(|session| established.contains(session)) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(LabError::BgpNotEstablished {
                    node: self.node,
                    expected: sessions.to_vec(),
                    timeout,
                    established: established.into_iter().collect(),
                });
            }
            sleep(POLL);
        }
    }
}

/// The name of the router's session with `node` (`protocol bgp lb1`).
pub fn session_name(node: Node) -> String {
    node.name()
}

/// The name of an LB node's session with the router.
pub const UPSTREAM_SESSION: &str = "upstream";

/// The BGP and BFD timers both sides share: keepalive 1 s, hold 3 s, quick
/// (re)connects, BFD at [`BFD_INTERVAL_MS`] x 3.
fn common_config(router_id: Ipv4Addr) -> String {
    format!(
        "router id {router_id};\n\
         protocol device {{}}\n\
         protocol bfd {{\n\
         \x20 interface \"*\" {{ min rx interval {BFD_INTERVAL_MS} ms; min tx interval {BFD_INTERVAL_MS} ms; multiplier 3; }};\n\
         }}\n\
         template bgp fast {{\n\
         \x20 bfd on;\n\
         \x20 hold time 3;\n\
         \x20 keepalive time 1;\n\
         \x20 connect delay time 1;\n\
         \x20 connect retry time 1;\n\
         \x20 error wait time 1, 5;\n\
         }}\n"
    )
}

fn address(node: Node) -> Ipv4Addr {
    node.address()
        .expect("the router and the LB nodes have addresses")
}

/// The router: every LB node a peer, their /32s merged into one multipath
/// route in the kernel.
fn router_config() -> String {
    let router = address(Node::Router);
    let mut config = common_config(router);
    config.push_str(
        "protocol kernel {\n\
         \x20 ipv4 { import none; export all; };\n\
         \x20 merge paths on;\n\
         }\n",
    );
    for node in Node::LBS {
        config.push_str(&format!(
            "protocol bgp {name} from fast {{\n\
             \x20 local {router} as {ROUTER_AS};\n\
             \x20 neighbor {peer} as {LB_AS};\n\
             \x20 ipv4 {{ import where net.len = 32; export none; }};\n\
             }}\n",
            name = session_name(node),
            peer = address(node),
        ));
    }
    config
}

/// An LB node: the announce table learned from the kernel, exported to the
/// router with this node as next hop.
fn lb_config(node: Node) -> String {
    let local = address(node);
    let router = address(Node::Router);
    let mut config = common_config(local);
    config.push_str(&format!(
        "ipv4 table announced;\n\
         protocol kernel {{\n\
         \x20 kernel table {ANNOUNCE_TABLE};\n\
         \x20 learn;\n\
         \x20 scan time 10;\n\
         \x20 ipv4 {{ table announced; import where net.len = 32; export none; }};\n\
         }}\n\
         protocol bgp {UPSTREAM_SESSION} from fast {{\n\
         \x20 local {local} as {LB_AS};\n\
         \x20 neighbor {router} as {ROUTER_AS};\n\
         \x20 ipv4 {{ table announced; import none; export all; next hop self; }};\n\
         }}\n"
    ));
    config
}

/// The BGP protocols `birdc show protocols` lists as established.
fn established_sessions(output: &str) -> BTreeSet<String> {
    output
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [name, "BGP", _table, "up", .., "Established"] => Some((*name).to_owned()),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn established_sessions_are_read_from_birdc() {
        let output = "BIRD 2.0.12 ready.\n\
            Name       Proto      Table      State  Since         Info\n\
            device1    Device     ---        up     08:53:30.793\n\
            kernel1    Kernel     master4    up     08:53:30.793\n\
            bfd1       BFD        ---        up     08:53:30.793\n\
            lb1        BGP        ---        up     08:55:01.991  Established\n\
            lb2        BGP        ---        start  08:55:41.731  Idle          Error: BFD session down\n\
            lb3        BGP        ---        start  08:55:41.731  Connect\n";
        assert_eq!(
            established_sessions(output),
            ["lb1".to_owned()].into_iter().collect()
        );
    }

    #[test]
    fn the_router_peers_with_every_lb_node_and_merges_their_paths() {
        let config = router_config();
        assert!(config.contains("merge paths on;"));
        for node in Node::LBS {
            assert!(config.contains(&format!(
                "protocol bgp {node} from fast {{\n  local 10.0.0.254 as 65000;\n  neighbor {} as 65001;",
                address(node)
            )));
        }
        assert!(config.contains("bfd on;"));
    }

    #[test]
    fn an_lb_node_exports_its_announce_table_to_the_router() {
        let config = lb_config(Node::Lb2);
        assert!(config.starts_with("router id 10.0.0.12;"));
        assert!(config.contains("kernel table 200;\n  learn;"));
        assert!(config.contains("neighbor 10.0.0.254 as 65000;"));
        assert!(config.contains("import none; export all; next hop self;"));
    }
}
