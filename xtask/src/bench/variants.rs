//! The load balancers compared, each a variant of the same lab: its
//! addresses, its configuration files, and how it is started before a run
//! and stopped after it, so that only one of them is in the path at a time.
//!
//! - `direct`: no load balancer; wrk's threads take the three web servers in turn.
//! - `haproxy`: HAProxy in TCP mode on lb1, round-robin, its own process.
//! - `nftables`: DNAT on lb1 (`numgen inc mod 3`), with SNAT to an address
//!   of its own on lb1 so that the replies return through lb1 to be
//!   un-NATed; lb1 forwards.
//! - `ours-maglev`, `ours-round-robin`: `lb` on lb1 (XDP, dsr-l2): the web
//!   servers answer the client directly from the VIP.

use std::fmt;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use super::cpu::{self, ProgramStats};
use super::wrk;
use crate::cmd;
use crate::lab::{Lab, Node, NsProcess, HOST_INTERFACE, HTTP_PORT, VIP};

/// The round-robin service's VIP (the lab's own VIP carries the Maglev one).
pub const VIP_ROUND_ROBIN: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 101);
/// Where HAProxy listens on lb1.
pub const HAPROXY_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 102);
/// The address nftables DNATs on lb1.
pub const NFTABLES_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 103);
/// The source address nftables SNATs to on lb1. Not lb1's own address,
/// which HAProxy's connections to the web servers use: their TIME_WAIT state
/// on the web servers, with lb1's TCP timestamps, would turn away the
/// client's SYNs that SNAT maps onto the same ports (PAWS), each costing a
/// 1 s retransmission.
pub const NFTABLES_SNAT_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 13);

/// The nftables table the `nftables` variant creates and deletes in lb1.
const NFT_TABLE: &str = "lbbench";

/// How long a variant gets to start serving.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

/// One load balancer (or none) under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    Direct,
    Haproxy,
    Nftables,
    OursMaglev,
    OursRoundRobin,
}

impl Variant {
    /// Every variant, in the order each round runs them.
    pub const ALL: [Variant; 5] = [
        Variant::Direct,
        Variant::Haproxy,
        Variant::Nftables,
        Variant::OursMaglev,
        Variant::OursRoundRobin,
    ];

    /// Short name (as in the JSON).
    pub fn key(self) -> &'static str {
        match self {
            Variant::Direct => "direct",
            Variant::Haproxy => "haproxy",
            Variant::Nftables => "nftables",
            Variant::OursMaglev => "ours-maglev",
            Variant::OursRoundRobin => "ours-round-robin",
        }
    }

    /// What it is, for the report.
    pub fn label(self) -> &'static str {
        match self {
            Variant::Direct => "direct (no LB)",
            Variant::Haproxy => "HAProxy, TCP mode, round-robin",
            Variant::Nftables => "nftables DNAT + SNAT, numgen round-robin",
            Variant::OursMaglev => "ours: XDP dsr-l2, Maglev",
            Variant::OursRoundRobin => "ours: XDP dsr-l2, round-robin",
        }
    }

    /// The client's source address for this variant: each has its own, so
    /// that TIME_WAIT state of one variant's connections never meets the next.
    pub fn client_source(self) -> Ipv4Addr {
        let last = match self {
            Variant::Direct => 201,
            Variant::Haproxy => 202,
            Variant::Nftables => 203,
            Variant::OursMaglev => 204,
            Variant::OursRoundRobin => 205,
        };
        Ipv4Addr::new(10, 0, 0, last)
    }

    /// The addresses wrk connects to; its threads take them in turn.
    pub fn targets(self) -> Vec<Ipv4Addr> {
        match self {
            Variant::Direct => Node::WEBS.iter().filter_map(|web| web.address()).collect(),
            Variant::Haproxy => vec![HAPROXY_ADDRESS],
            Variant::Nftables => vec![NFTABLES_ADDRESS],
            Variant::OursMaglev => vec![VIP],
            Variant::OursRoundRobin => vec![VIP_ROUND_ROBIN],
        }
    }

    /// Whether this variant is our XDP load balancer.
    pub fn is_ours(self) -> bool {
        matches!(self, Variant::OursMaglev | Variant::OursRoundRobin)
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// The configuration files of the variants, in the lab's run directory.
#[derive(Debug, Clone)]
pub struct Files {
    haproxy: PathBuf,
    nftables: PathBuf,
    lb: PathBuf,
    lb_binary: PathBuf,
    dir: PathBuf,
}

impl Files {
    /// Writes every variant's files under `lab`'s run directory.
    pub fn write(lab: &Lab, lb_binary: &Path) -> Result<Self> {
        let dir = lab.run_dir().join("bench");
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let files = Files {
            haproxy: dir.join("haproxy.cfg"),
            nftables: dir.join("nftables.nft"),
            lb: dir.join("lb.toml"),
            lb_binary: lb_binary.to_owned(),
            dir,
        };
        write(&files.haproxy, &haproxy_config())?;
        write(&files.nftables, &nftables_ruleset())?;
        write(&files.lb, &lb_config())?;
        for variant in Variant::ALL {
            write(&files.wrk_script(variant), &wrk::script(&variant.targets()))?;
        }
        Ok(files)
    }

    /// The wrk script of `variant`.
    pub fn wrk_script(&self, variant: Variant) -> PathBuf {
        self.dir.join(format!("wrk-{}.lua", variant.key()))
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn web_addresses() -> impl Iterator<Item = (Node, Ipv4Addr)> {
    Node::WEBS
        .into_iter()
        .filter_map(|web| Some((web, web.address()?)))
}

/// HAProxy in TCP mode, round-robin over the web servers, no health checks
/// (none of the others has any either), threads at HAProxy's default (one
/// per CPU).
fn haproxy_config() -> String {
    let mut servers = String::new();
    for (web, address) in web_addresses() {
        servers.push_str(&format!("    server {web} {address}:{HTTP_PORT}\n"));
    }
    format!(
        "# Written by `cargo xtask bench`; removed with the lab.
global
    maxconn 4096

defaults
    mode tcp
    timeout connect 2s
    timeout client 30s
    timeout server 30s

frontend bench
    bind {HAPROXY_ADDRESS}:{HTTP_PORT}
    default_backend webs

backend webs
    balance roundrobin
{servers}"
    )
}

/// DNAT of the nftables address to the web servers in turn, and SNAT of
/// the DNATed connections so the replies come back through lb1.
fn nftables_ruleset() -> String {
    let webs: Vec<Ipv4Addr> = web_addresses().map(|(_, address)| address).collect();
    let map: Vec<String> = webs
        .iter()
        .enumerate()
        .map(|(index, address)| format!("{index} : {address}"))
        .collect();
    let set: Vec<String> = webs.iter().map(Ipv4Addr::to_string).collect();
    format!(
        "# Written by `cargo xtask bench`; removed with the lab.
table ip {NFT_TABLE} {{
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        ip daddr {NFTABLES_ADDRESS} tcp dport {HTTP_PORT} dnat to numgen inc mod {count} map {{ {map} }}
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        ct status dnat ip daddr {{ {set} }} tcp dport {HTTP_PORT} snat to {NFTABLES_SNAT_ADDRESS}
    }}
}}
",
        count = webs.len(),
        map = map.join(", "),
        set = set.join(", "),
    )
}

/// `lb` with two services on lb1's `eth0`: the lab's VIP with Maglev and
/// [`VIP_ROUND_ROBIN`] with round-robin, the three web servers behind each.
fn lb_config() -> String {
    let mut text = format!(
        "# Written by `cargo xtask bench`; removed with the lab.
[global]
interface = \"{HOST_INTERFACE}\"
# No pinning: the data path goes away with `lb`, so no XDP program stays on
# lb1 in the other variants' runs.
pin_dir = \"\"
"
    );
    for (name, vip, scheduler) in [
        ("web-maglev", VIP, "maglev"),
        ("web-round-robin", VIP_ROUND_ROBIN, "round-robin"),
    ] {
        text.push_str(&format!(
            "
[[service]]
name = \"{name}\"
vip = \"{vip}\"
port = {HTTP_PORT}
protocol = \"tcp\"
scheduler = \"{scheduler}\"
"
        ));
        for (web, address) in web_addresses() {
            text.push_str(&format!(
                "\n[[service.backend]]\nname = \"{web}\"\naddress = \"{address}\"\n"
            ));
        }
    }
    text
}

/// A variant set up in the lab, serving.
#[derive(Debug)]
pub enum Deployed {
    /// Nothing runs: the client talks to the web servers.
    Direct,
    /// HAProxy, its process.
    Haproxy(NsProcess),
    /// The nftables table exists in lb1.
    Nftables,
    /// `lb`, and the id of the XDP program it attached.
    Ours { lb: NsProcess, program_id: u32 },
}

/// A reading of the load balancer's own CPU counter.
#[derive(Debug, Clone, Copy)]
pub enum LbCpuReading {
    /// User + system time of the load balancer's process, ms.
    Process(f64),
    /// The kernel's statistics of the XDP program.
    Xdp(ProgramStats),
}

/// Sets `variant` up in `lab` and waits until it serves a request.
pub fn deploy(lab: &Lab, files: &Files, variant: Variant) -> Result<Deployed> {
    let deployed = match variant {
        Variant::Direct => Deployed::Direct,
        Variant::Haproxy => {
            let mut command = lab.command(Node::Lb1, "haproxy");
            command.arg("-db").arg("-f").arg(&files.haproxy);
            let mut haproxy = lab.spawn("haproxy on lb1", &mut command, "bench/haproxy.log")?;
            wait_until_serving(lab, variant, Some(&mut haproxy))?;
            Deployed::Haproxy(haproxy)
        }
        Variant::Nftables => {
            let mut command = lab.command(Node::Lb1, "nft");
            command.arg("--file").arg(&files.nftables);
            cmd::run_quiet(&mut command)?;
            // From here on the table exists: remove it if it does not serve.
            if let Err(error) = wait_until_serving(lab, variant, None) {
                delete_nft_table(lab)?;
                return Err(error);
            }
            Deployed::Nftables
        }
        Variant::OursMaglev | Variant::OursRoundRobin => {
            let mut lb = lab.start_lb(Node::Lb1, &files.lb_binary, &files.lb)?;
            wait_for_log_line(&mut lb, "lb ready")?;
            wait_until_serving(lab, variant, Some(&mut lb))?;
            let program_id = cpu::xdp_program_id(lab, Node::Lb1)?;
            Deployed::Ours { lb, program_id }
        }
    };
    Ok(deployed)
}

impl Deployed {
    /// The load balancer's own CPU counter now; `None` for `direct` and
    /// `nftables` (whose cost shows as softirq time only).
    pub fn lb_cpu(&self) -> Result<Option<LbCpuReading>> {
        Ok(match self {
            Deployed::Direct | Deployed::Nftables => None,
            Deployed::Haproxy(haproxy) => {
                let pid = haproxy.pid().context("HAProxy has no PID")?;
                Some(LbCpuReading::Process(cpu::process_cpu_ms(pid)?))
            }
            Deployed::Ours { program_id, .. } => {
                Some(LbCpuReading::Xdp(cpu::program_stats(*program_id)?))
            }
        })
    }

    /// Stops the variant: the process ends, the table is deleted.
    pub fn stop(self, lab: &Lab) -> Result<()> {
        match self {
            Deployed::Direct => Ok(()),
            Deployed::Haproxy(process) => stop_process(process),
            Deployed::Ours { lb, .. } => {
                stop_process(lb)?;
                match cpu::xdp_program_id(lab, Node::Lb1) {
                    Err(cpu::CpuError::NoXdpProgram { .. }) => Ok(()),
                    Ok(id) => bail!(
                        "XDP program {id} is still attached to lb1 after lb stopped: it would \
                         sit in the next variant's path"
                    ),
                    Err(error) => Err(error.into()),
                }
            }
            Deployed::Nftables => delete_nft_table(lab),
        }
    }
}

/// Stops `process` with SIGTERM; fails if it had exited on its own or
/// exits with an error.
fn stop_process(mut process: NsProcess) -> Result<()> {
    check_running(&mut process)?;
    let name = process.name().to_owned();
    let log_tail = process.log_tail(20);
    let status = process.stop().with_context(|| format!("stopping {name}"))?;
    // SIGTERM is how we stop them: dying of it is an expected exit too.
    if !status.success() && !terminated_by_sigterm(status) {
        bail!("{name} exited with {status} when stopped; end of its log:\n{log_tail}");
    }
    Ok(())
}

fn terminated_by_sigterm(status: std::process::ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt as _;
    status.signal() == Some(nix::sys::signal::Signal::SIGTERM as i32)
}

/// Deletes the table, then lb1's connection tracking entries: the
/// TIME_WAIT entries of one run (120 s) would otherwise still hold NAT ports
/// in the next round's run.
fn delete_nft_table(lab: &Lab) -> Result<()> {
    let mut command = lab.command(Node::Lb1, "nft");
    command.args(["delete", "table", "ip", NFT_TABLE]);
    cmd::run_quiet(&mut command)?;
    let mut command = lab.command(Node::Lb1, "conntrack");
    command.arg("--flush");
    Ok(cmd::run_quiet(&mut command)?)
}

/// Waits until `process`'s log holds `needle`; fails if it exits first.
fn wait_for_log_line(process: &mut NsProcess, needle: &str) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if fs::read_to_string(process.log_path())
            .unwrap_or_default()
            .contains(needle)
        {
            return Ok(());
        }
        check_running(process)?;
        if Instant::now() >= deadline {
            bail!(
                "{} did not log {needle:?} within {READY_TIMEOUT:?}; end of its log:\n{}",
                process.name(),
                process.log_tail(30)
            );
        }
        sleep(POLL);
    }
}

/// Waits until every target of `variant` answers `200 OK` to the client.
fn wait_until_serving(
    lab: &Lab,
    variant: Variant,
    mut process: Option<&mut NsProcess>,
) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    for target in variant.targets() {
        let url = format!("http://{target}:{HTTP_PORT}/");
        loop {
            let reply = lab.http_get(&url)?;
            if reply.is_ok() {
                break;
            }
            if let Some(process) = process.as_deref_mut() {
                check_running(process)?;
            }
            if Instant::now() >= deadline {
                bail!("{variant}: {url} did not answer within {READY_TIMEOUT:?}: {reply}");
            }
            sleep(POLL);
        }
    }
    Ok(())
}

fn check_running(process: &mut NsProcess) -> Result<()> {
    if let Some(status) = process.try_exit_status()? {
        bail!(
            "{} exited ({status}); end of its log:\n{}",
            process.name(),
            process.log_tail(30)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::WEB_COUNT;
    use std::collections::HashSet;

    fn web_count() -> usize {
        usize::from(WEB_COUNT)
    }

    #[test]
    fn every_variant_has_its_own_client_source_and_targets() {
        let sources: HashSet<Ipv4Addr> = Variant::ALL.iter().map(|v| v.client_source()).collect();
        assert_eq!(sources.len(), Variant::ALL.len());
        let targets: Vec<Ipv4Addr> = Variant::ALL.iter().flat_map(|v| v.targets()).collect();
        let distinct: HashSet<&Ipv4Addr> = targets.iter().collect();
        assert_eq!(distinct.len(), targets.len(), "no target is shared");
        assert_eq!(Variant::Direct.targets().len(), web_count());
    }

    #[test]
    fn nftables_maps_every_web_server_and_snats() {
        let rules = nftables_ruleset();
        assert!(rules
            .contains("dnat to numgen inc mod 3 map { 0 : 10.0.0.1, 1 : 10.0.0.2, 2 : 10.0.0.3 }"));
        assert!(rules.contains("ip daddr 10.0.0.103 tcp dport 80"));
        assert!(rules.contains("tcp dport 80 snat to 10.0.0.13"));
        assert!(rules.contains(&format!("table ip {NFT_TABLE}")));
    }

    #[test]
    fn haproxy_listens_on_its_address_with_every_server() {
        let config = haproxy_config();
        assert!(config.contains("bind 10.0.0.102:80"));
        assert!(config.contains("mode tcp"));
        assert!(config.contains("balance roundrobin"));
        assert_eq!(config.matches("    server web").count(), web_count());
    }

    #[test]
    fn lb_config_has_a_maglev_and_a_round_robin_service() {
        let config = lb_config();
        assert!(config.contains(
            "vip = \"10.0.0.100\"\nport = 80\nprotocol = \"tcp\"\nscheduler = \"maglev\""
        ));
        assert!(config.contains(
            "vip = \"10.0.0.101\"\nport = 80\nprotocol = \"tcp\"\nscheduler = \"round-robin\""
        ));
        assert_eq!(
            config.matches("[[service.backend]]").count(),
            2 * web_count()
        );
    }
}
