//! The load balancer pair in the lab: lb1 (priority 150) and lb2 (priority
//! 100) run `lb` with the same services, so both compute the same Maglev
//! tables, plus a `[vrrp]` section; VRRP moves the VIP between their `eth0`s.
//! Build the lab without the static VIP ([`super::LabOptions`]) for the pair.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::lb::{config_toml, https_service_toml, Scheduler, HEALTH_SECTION};
use super::process::NsProcess;
use super::topology::{Node, HOST_INTERFACE, VIP};
use super::{netns, Lab, LabError};

/// The pair's virtual router id.
pub const VRID: u8 = 51;

/// How often [`Lab::wait_for_master`] looks.
const POLL: Duration = Duration::from_millis(20);

/// How the pair runs VRRP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PairOptions {
    /// The advertisement interval: whole centiseconds.
    pub advert_interval: Duration,
    /// Whether a higher-priority node takes the master role back.
    pub preempt: bool,
    /// Whether the service's backends are health-checked
    /// ([`super::lb::HEALTH_SECTION`]); without, they are always up.
    pub checks: bool,
    /// Whether the pair also serves the lab's HTTPS service (443/tcp on the
    /// VIP, [`super::lb::HTTPS_SERVICE_NAME`]) beside port 80.
    pub https: bool,
}

impl Default for PairOptions {
    /// 100 ms adverts (a failover in well under a second), preemption on,
    /// port 80 only.
    fn default() -> Self {
        PairOptions {
            advert_interval: Duration::from_millis(100),
            preempt: true,
            checks: false,
            https: false,
        }
    }
}

/// The VRRP priority of an LB node: lb1 150, lb2 100.
pub fn priority(node: Node) -> u8 {
    match node {
        Node::Lb1 => 150,
        _ => 100,
    }
}

/// `node`'s configuration: the lab's service (and with `options.https` its
/// HTTPS service) and the pair's `[vrrp]`. The
/// VIPs default to the service's, tracking to its defaults (a node without
/// its XDP program or a serving backend drops to priority 1).
pub fn pair_config_toml(node: Node, scheduler: Scheduler, options: &PairOptions) -> String {
    let mut text = config_toml(scheduler);
    if options.checks {
        text.push_str(HEALTH_SECTION);
    }
    if options.https {
        text.push_str(&https_service_toml(scheduler));
    }
    text.push_str(&format!(
        "
[vrrp]
vrid = {VRID}
priority = {priority}
advert_interval = \"{interval}ms\"
preempt = {preempt}
",
        priority = priority(node),
        interval = options.advert_interval.as_millis(),
        preempt = options.preempt,
    ));
    text
}

impl Lab {
    /// Writes `node`'s pair configuration into the run directory and returns
    /// its path.
    pub fn write_pair_config(
        &self,
        node: Node,
        scheduler: Scheduler,
        options: &PairOptions,
    ) -> Result<PathBuf, LabError> {
        let path = self.run_dir().join(format!("lb-{scheduler}-{node}.toml"));
        fs::write(&path, pair_config_toml(node, scheduler, options)).map_err(|error| {
            LabError::Io {
                context: format!("writing {}", path.display()),
                error,
            }
        })?;
        Ok(path)
    }

    /// Starts `lb` (`binary`) with its pair configuration on lb1, then lb2.
    pub fn start_pair(
        &self,
        binary: &Path,
        scheduler: Scheduler,
        options: &PairOptions,
    ) -> Result<[NsProcess; 2], LabError> {
        let start = |node| {
            let config = self.write_pair_config(node, scheduler, options)?;
            self.start_lb(node, binary, &config)
        };
        Ok([start(Node::Lb1)?, start(Node::Lb2)?])
    }

    /// Whether `node` has the VIP on its `eth0`.
    pub fn holds_vip(&self, node: Node) -> Result<bool, LabError> {
        let listing = self.run(
            node,
            "ip",
            &["-4", "-o", "addr", "show", "dev", HOST_INTERFACE],
        )?;
        Ok(lists_address(&listing, &format!("{VIP}/32")))
    }

    /// The LB nodes that have the VIP on their `eth0` now.
    pub fn vip_holders(&self) -> Result<Vec<Node>, LabError> {
        let mut holders = Vec::new();
        for node in Node::LBS {
            if self.holds_vip(node)? {
                holders.push(node);
            }
        }
        Ok(holders)
    }

    /// Waits until `node` is the only LB holding the VIP; returns how long
    /// that took. Fails after `timeout`, or as soon as one of `lbs` exits.
    pub fn wait_for_master(
        &self,
        node: Node,
        lbs: &mut [&mut NsProcess],
        timeout: Duration,
    ) -> Result<Duration, LabError> {
        let started = Instant::now();
        loop {
            for lb in lbs.iter_mut() {
                let exited = lb.try_exit_status().map_err(|error| LabError::Io {
                    context: format!("checking on {}", lb.name()),
                    error,
                })?;
                if let Some(status) = exited {
                    return Err(LabError::LbExited {
                        status,
                        log: lb.log_path().to_owned(),
                        log_tail: lb.log_tail(30),
                    });
                }
            }
            let holders = self.vip_holders()?;
            if holders == [node] {
                return Ok(started.elapsed());
            }
            if started.elapsed() >= timeout {
                return Err(LabError::NotMaster {
                    node,
                    timeout,
                    holders,
                });
            }
            sleep(POLL);
        }
    }

    /// The XDP program ids attached to `node`'s `eth0` (`ip -d link`).
    pub fn xdp_program_ids(&self, node: Node) -> Result<Vec<u32>, LabError> {
        let listing = self.run(
            node,
            "ip",
            &["-d", "-o", "link", "show", "dev", HOST_INTERFACE],
        )?;
        Ok(xdp_ids(&listing))
    }

    /// Sets `node`'s `eth0` up or down (as a node whose link fails).
    pub fn set_link(&self, node: Node, up: bool) -> Result<(), LabError> {
        let state = if up { "up" } else { "down" };
        Ok(netns::ip(
            &self.namespace(node),
            &["link", "set", HOST_INTERFACE, state],
        )?)
    }
}

/// Whether `ip -o addr` output lists `address` (with its prefix length).
fn lists_address(listing: &str, address: &str) -> bool {
    listing
        .lines()
        .any(|line| line.split_whitespace().any(|word| word == address))
}

/// The program ids in `ip -d link` output (`prog/xdp id N`).
fn xdp_ids(listing: &str) -> Vec<u32> {
    let words: Vec<&str> = listing.split_whitespace().collect();
    words
        .windows(3)
        .filter(|w| w[0].starts_with("prog/xdp") && w[1] == "id")
        .filter_map(|w| w[2].parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_node_gets_its_priority_and_the_same_service() {
        let options = PairOptions::default();
        let lb1 = pair_config_toml(Node::Lb1, Scheduler::Maglev, &options);
        let lb2 = pair_config_toml(Node::Lb2, Scheduler::Maglev, &options);
        assert!(lb1.contains("priority = 150"));
        assert!(lb2.contains("priority = 100"));
        assert!(lb1.contains("advert_interval = \"100ms\""));
        assert!(lb1.contains("preempt = true"));
        let service = |text: &str| text.split("[vrrp]").next().unwrap().to_owned();
        assert_eq!(service(&lb1), service(&lb2));
    }

    #[test]
    fn addresses_and_xdp_programs_are_read_from_ip_output() {
        let addresses = "2: eth0    inet 10.0.0.11/24 scope global eth0\\       valid_lft forever\n\
                         2: eth0    inet 10.0.0.100/32 scope global eth0\\       valid_lft forever\n";
        assert!(lists_address(addresses, "10.0.0.100/32"));
        assert!(!lists_address(addresses, "10.0.0.1/32"));
        let link = "2: eth0@if3: <BROADCAST,UP> mtu 1500 xdp qdisc noqueue \\    link/ether 02:00:00:00:00:0b \
                    veth prog/xdp id 42 name lb_xdp tag 0123 jited";
        assert_eq!(xdp_ids(link), [42]);
        assert!(xdp_ids("2: eth0: <UP> mtu 1500").is_empty());
    }
}
