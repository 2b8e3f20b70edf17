//! The lab: network namespaces (client, switch, lb1, lb2, web1..3 running
//! nginx over HTTP and HTTPS, with a CA the lab makes) that `cargo xtask
//! run`, the end-to-end tests and the benchmarks use.
//! The active-active variant adds a router with BIRD in front of the client
//! ([`Router`]) and BIRD on each LB node ([`Bird`]).
//!
//! Every lab has a name prefix for its namespaces, run directory and pins, so
//! tests and benchmarks run their own copies beside a manual lab. [`Lab::up`]
//! builds one; dropping the [`Lab`] (also on error or panic) or [`teardown`]
//! removes it, stopping its processes by PID first. Only the lab's namespaces
//! send packets.

mod active_active;
mod bird;
mod bpffs;
mod http;
mod lb;
mod netns;
mod nginx;
mod pair;
mod process;
mod router;
mod stream;
mod teardown;
mod tls;
mod topology;
mod xdp_pass;

use std::ffi::OsStr;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::thread::sleep;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::cmd::{self, CommandError};
use crate::paths;

pub use active_active::active_active_config_toml;
pub use bird::{session_name, Bird, ANNOUNCE_TABLE, LB_AS, ROUTER_AS, UPSTREAM_SESSION};
pub use http::{tally, HttpReply, Target, REQUEST_TIMEOUT_SECS};
pub use lb::{
    config_toml as lb_config_toml, vip_url, Scheduler, HEALTH_SECTION, HTTPS_SERVICE_NAME,
    SERVICE_NAME,
};
pub use netns::exec as netns_exec;
pub use nginx::{index_body, HEALTH_BODY};
pub use pair::{pair_config_toml, priority, PairOptions, VRID};
pub use process::{NsProcess, STOP_GRACE};
pub use router::{
    Router, CLIENT_BEHIND_ROUTER, CLIENT_SUBNET, CLIENT_SUBNET_PREFIX_LEN, ROUTER_CLIENT_SIDE,
};
pub use stream::{
    Failure, KeepAliveClient, KeepAliveReply, RequestStream, StreamReply,
    STEADY_CONNECT_TIMEOUT_SECS, STEADY_REQUEST_TIMEOUT_SECS, STREAM_REQUEST_TIMEOUT_SECS,
};
pub use teardown::{exists, teardown, TeardownReport};
pub use tls::TLS_NAME;
pub use topology::{
    Node, BRIDGE, HOST_INTERFACE, HTTPS_PORT, HTTP_PORT, SUBNET_PREFIX_LEN, VIP, WEB_COUNT,
};
pub use xdp_pass::XdpPassError;

/// The prefix of the manual lab (`cargo xtask lab up`) and the demo.
pub const DEFAULT_PREFIX: &str = "lbl-";

/// How long [`Lab::up`] waits for every web server to answer the client.
const BACKEND_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Something went wrong building, using or removing a lab.
#[derive(Debug, Error)]
pub enum LabError {
    /// The prefix could produce unsafe or colliding names.
    #[error(
        "invalid lab prefix {0:?}: use 1-16 characters of a-z, 0-9 and '-', starting with a letter"
    )]
    InvalidPrefix(String),
    /// Namespaces of this lab already exist.
    #[error("a lab with prefix {prefix:?} already exists ({}); remove it with `cargo xtask lab down --prefix {prefix}`", .namespaces.join(", "))]
    AlreadyUp {
        /// The prefix.
        prefix: String,
        /// The namespaces found.
        namespaces: Vec<String>,
    },
    /// The eBPF object (for `xdp_pass`) has not been built.
    #[error("the eBPF object {} does not exist: run `cargo xtask build` first", .0.display())]
    MissingEbpfObject(PathBuf),
    /// The `lb` binary has not been built.
    #[error("the lb binary {} does not exist: run `cargo xtask build` first", .0.display())]
    MissingLbBinary(PathBuf),
    /// A command failed.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// A file operation failed.
    #[error("{context}: {error}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        error: std::io::Error,
    },
    /// Attaching `xdp_pass` to the LB switch ports failed.
    #[error(transparent)]
    XdpPass(#[from] XdpPassError),
    /// A web server does not answer the client directly.
    #[error("{web} does not answer the client directly at {url}: last reply {reply}")]
    BackendNotServing {
        /// The web server.
        web: Node,
        /// The URL tried.
        url: String,
        /// What came back last.
        reply: String,
    },
    /// curl's output did not hold one reply per request.
    #[error("expected {expected} replies from the client's curl loop, parsed {parsed}")]
    ClientOutput {
        /// Requests sent.
        expected: usize,
        /// Replies parsed.
        parsed: usize,
    },
    /// `lb` exited while the lab waited for it.
    #[error("lb exited ({status}); end of {}:\n{log_tail}", .log.display())]
    LbExited {
        /// How it exited.
        status: ExitStatus,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        log_tail: String,
    },
    /// The VIP did not start serving in time.
    #[error("the VIP did not answer within {timeout:?} after lb started; end of {}:\n{log_tail}", .log.display())]
    LbNotServing {
        /// How long we waited.
        timeout: Duration,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        log_tail: String,
    },
    /// The VRRP pair did not settle with the expected master.
    #[error("{node} did not become the only holder of the VIP within {timeout:?} (holders: {holders:?})")]
    NotMaster {
        /// The expected master.
        node: Node,
        /// How long we waited.
        timeout: Duration,
        /// The LB nodes holding the VIP at the end.
        holders: Vec<Node>,
    },
    /// A routing daemon exited while the lab used it.
    #[error("{daemon} in {node} exited ({status}); end of {}:\n{log_tail}", .log.display())]
    DaemonExited {
        /// Which daemon.
        daemon: &'static str,
        /// Where it ran.
        node: Node,
        /// How it exited.
        status: ExitStatus,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        log_tail: String,
    },
    /// BGP sessions did not come up in time.
    #[error("{node}: BGP sessions {expected:?} not established within {timeout:?} (established: {established:?})")]
    BgpNotEstablished {
        /// Whose sessions.
        node: Node,
        /// The sessions waited for.
        expected: Vec<String>,
        /// How long we waited.
        timeout: Duration,
        /// The ones up at the end.
        established: Vec<String>,
    },
    /// The router's route did not get the expected next hops in time.
    #[error("the router's route to {destination} did not have next hops {expected:?} within {timeout:?} (last seen: {last:?})")]
    NextHops {
        /// The route's destination.
        destination: Ipv4Addr,
        /// The next hops waited for.
        expected: Vec<Ipv4Addr>,
        /// How long we waited.
        timeout: Duration,
        /// The next hops at the end.
        last: Vec<Ipv4Addr>,
    },
    /// `ip -j route` printed something that is not its JSON.
    #[error("cannot read `ip -j route` output")]
    RouteJson(#[source] serde_json::Error),
    /// Parts of the lab could not be removed.
    #[error("teardown incomplete: {}", .0.join("; "))]
    Teardown(Vec<String>),
}

/// How to build a lab.
#[derive(Clone, Debug)]
pub struct LabOptions {
    /// Prefix of every name the lab creates.
    pub prefix: String,
    /// The eBPF object holding `xdp_pass`.
    pub ebpf_object: PathBuf,
    /// Put the VIP on lb1's `eth0`, so the client's ARP for the VIP reaches
    /// lb1. Turn off when VRRP manages the VIP.
    pub static_vip_on_lb1: bool,
}

impl LabOptions {
    /// Options for a lab named `prefix`, with the built eBPF object and the
    /// static VIP on lb1.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            ebpf_object: paths::ebpf_object(),
            static_vip_on_lb1: true,
        }
    }
}

/// A running lab. Dropping it tears it down, unless [`Lab::keep`] was called.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    torn_down: bool,
}

impl Lab {
    /// Builds the lab described by `options` and checks that the client
    /// reaches every web server directly. On failure, what was built is
    /// removed again.
    pub fn up(options: &LabOptions) -> Result<Lab, LabError> {
        validate_prefix(&options.prefix)?;
        let existing = teardown::namespaces_present(&options.prefix)?;
        if !existing.is_empty() {
            return Err(LabError::AlreadyUp {
                prefix: options.prefix.clone(),
                namespaces: existing,
            });
        }
        if !options.ebpf_object.is_file() {
            return Err(LabError::MissingEbpfObject(options.ebpf_object.clone()));
        }
        // From here on, dropping `lab` on an error removes what was built.
        let lab = Lab {
            prefix: options.prefix.clone(),
            torn_down: false,
        };
        lab.create_run_dir()?;
        tls::generate(&lab.run_dir())?;
        bpffs::mount(&lab.run_dir())?;
        lab.create_namespaces()?;
        lab.wire_hosts_to_switch()?;
        lab.configure_client()?;
        lab.configure_webs()?;
        lab.attach_xdp_pass_to_lb_ports(&options.ebpf_object)?;
        if options.static_vip_on_lb1 {
            lab.add_vip(Node::Lb1)?;
        }
        lab.check_backends_answer()?;
        Ok(lab)
    }

    /// The prefix of the lab's names.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The namespace of `node`.
    pub fn namespace(&self, node: Node) -> String {
        namespace(&self.prefix, node)
    }

    /// The lab's scratch directory (nginx sites, logs, configs).
    pub fn run_dir(&self) -> PathBuf {
        run_dir(&self.prefix)
    }

    /// The lab CA's certificate, which the web servers' certificate (for
    /// [`TLS_NAME`] and the VIP) chains to: `curl --cacert` it.
    pub fn ca_certificate(&self) -> PathBuf {
        tls::ca_certificate(&self.run_dir())
    }

    /// Writes a CA of its own with common name `name` (no certificate the
    /// lab serves chains to it) into the run directory; returns its
    /// certificate, which must fail verification of the web servers.
    pub fn write_unrelated_ca(&self, name: &str) -> Result<PathBuf, LabError> {
        tls::write_ca(&self.run_dir().join("unrelated-ca"), name)
    }

    /// Where `lb` on `node` pins its data path: its own directory on the
    /// lab's bpffs.
    pub fn lb_pin_dir(&self, node: Node) -> PathBuf {
        bpffs::mount_point(&self.run_dir()).join(node.name())
    }

    /// The command line a person runs to fetch `target` from the client, as
    /// the lab's usage and the demo print it.
    pub fn client_curl_line(&self, target: &Target) -> String {
        let mut words = vec!["ip", "netns", "exec"];
        let namespace = self.namespace(Node::Client);
        words.push(&namespace);
        words.push("curl");
        words.extend(target.curl_options.iter().map(String::as_str));
        words.push(&target.url);
        words.join(" ")
    }

    /// A command running `program` inside `node`.
    pub fn command(&self, node: Node, program: impl AsRef<OsStr>) -> Command {
        netns::exec(&self.namespace(node), program)
    }

    /// Runs `program ARGS` inside `node` and returns its stdout.
    pub fn run(&self, node: Node, program: &str, args: &[&str]) -> Result<String, LabError> {
        Ok(cmd::output(self.command(node, program).args(args))?)
    }

    /// Starts `command` (see [`Lab::command`]) in the background, logging to
    /// `log_name` in the lab's run directory; dropping the result stops it.
    pub fn spawn(
        &self,
        name: &str,
        command: &mut Command,
        log_name: &str,
    ) -> Result<NsProcess, LabError> {
        NsProcess::spawn(name, command, &self.run_dir().join(log_name)).map_err(|error| {
            LabError::Io {
                context: format!("starting {name}"),
                error,
            }
        })
    }

    /// One GET of `url` from the client, on a new connection.
    pub fn http_get(&self, url: &str) -> Result<HttpReply, LabError> {
        Ok(self
            .http_get_many(url, 1)?
            .pop()
            .expect("http_get_many returns one reply per request"))
    }

    /// `count` sequential GETs of `url` from the client, each on a new TCP
    /// connection (so from a new source port), in one process.
    pub fn http_get_many(&self, url: &str, count: usize) -> Result<Vec<HttpReply>, LabError> {
        self.get_many(&Target::plain(url.to_owned()), count)
    }

    /// [`Lab::http_get_many`] of `target` (e.g. HTTPS, verified against the
    /// lab's CA).
    pub fn get_many(&self, target: &Target, count: usize) -> Result<Vec<HttpReply>, LabError> {
        let output = cmd::output(
            self.command(Node::Client, "sh")
                .args(["-c", &http::client_script(), "sh", &target.url])
                .arg(count.to_string())
                .args(&target.curl_options),
        )?;
        Self::replies(&output, count)
    }

    /// [`Lab::http_get_many`] with the client pinned to CPU `cpu`
    /// (`taskset`), so that every new flow meets the LB's data path on that
    /// CPU, with that CPU's round-robin cursor.
    pub fn http_get_many_on_cpu(
        &self,
        url: &str,
        count: usize,
        cpu: usize,
    ) -> Result<Vec<HttpReply>, LabError> {
        let output = self.run(
            Node::Client,
            "taskset",
            &[
                "-c",
                &cpu.to_string(),
                "sh",
                "-c",
                &http::client_script(),
                "sh",
                url,
                &count.to_string(),
            ],
        )?;
        Self::replies(&output, count)
    }

    /// The `count` replies in the client script's `output`.
    fn replies(output: &str, count: usize) -> Result<Vec<HttpReply>, LabError> {
        let replies = http::parse_replies(output);
        if replies.len() != count {
            return Err(LabError::ClientOutput {
                expected: count,
                parsed: replies.len(),
            });
        }
        Ok(replies)
    }

    /// Adds the VIP to `node`'s `eth0`, so it answers ARP for the VIP.
    pub fn add_vip(&self, node: Node) -> Result<(), LabError> {
        Ok(netns::ip(
            &self.namespace(node),
            &["addr", "add", &format!("{VIP}/32"), "dev", HOST_INTERFACE],
        )?)
    }

    /// Removes the VIP from `node`'s `eth0`.
    pub fn remove_vip(&self, node: Node) -> Result<(), LabError> {
        Ok(netns::ip(
            &self.namespace(node),
            &["addr", "del", &format!("{VIP}/32"), "dev", HOST_INTERFACE],
        )?)
    }

    /// Leaves the lab running after this value is dropped (`cargo xtask lab
    /// up`); [`teardown`] removes it later.
    pub fn keep(mut self) {
        self.torn_down = true;
    }

    /// Tears the lab down now, reporting errors (dropping it does the same but
    /// can only print them).
    pub fn down(mut self) -> Result<TeardownReport, LabError> {
        self.torn_down = true;
        teardown(&self.prefix)
    }

    fn create_run_dir(&self) -> Result<(), LabError> {
        let dir = self.run_dir();
        // Left over from a run whose namespaces are gone: nothing uses it.
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(|error| LabError::Io {
                context: format!("removing the stale {}", dir.display()),
                error,
            })?;
        }
        fs::create_dir_all(&dir).map_err(|error| LabError::Io {
            context: format!("creating {}", dir.display()),
            error,
        })
    }

    fn create_namespaces(&self) -> Result<(), LabError> {
        for node in Node::ALL {
            netns::add(&self.namespace(node))?;
        }
        let switch = self.namespace(Node::Switch);
        netns::ip(&switch, &["link", "add", BRIDGE, "type", "bridge"])?;
        netns::ip(&switch, &["link", "set", BRIDGE, "up"])?;
        Ok(())
    }

    /// One veth per host, created directly in the two namespaces so nothing
    /// ever appears in the root namespace: `eth0` in the host, the host's name
    /// on the switch, enslaved to the bridge.
    fn wire_hosts_to_switch(&self) -> Result<(), LabError> {
        let switch = self.namespace(Node::Switch);
        for host in Node::hosts() {
            let namespace = self.namespace(host);
            let port = host.name();
            netns::ip(
                &namespace,
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
            let address = host.address().expect("hosts have addresses");
            netns::ip(
                &namespace,
                &[
                    "addr",
                    "add",
                    &format!("{address}/{SUBNET_PREFIX_LEN}"),
                    "dev",
                    HOST_INTERFACE,
                ],
            )?;
            netns::ip(&namespace, &["link", "set", HOST_INTERFACE, "up"])?;
        }
        Ok(())
    }

    /// The client originates traffic that XDP_TX forwards: its packets must
    /// carry complete checksums, so TX checksum offload goes off.
    fn configure_client(&self) -> Result<(), LabError> {
        self.run(
            Node::Client,
            "ethtool",
            &["-K", HOST_INTERFACE, "tx", "off"],
        )?;
        Ok(())
    }

    /// Each web server holds the VIP on `lo` and must neither answer ARP for
    /// it nor use it as an ARP source (direct server return), then runs nginx.
    fn configure_webs(&self) -> Result<(), LabError> {
        for web in Node::WEBS {
            let namespace = self.namespace(web);
            netns::ip(
                &namespace,
                &["addr", "add", &format!("{VIP}/32"), "dev", "lo"],
            )?;
            for interface in ["all", HOST_INTERFACE] {
                netns::set_sysctl(
                    &namespace,
                    &format!("net.ipv4.conf.{interface}.arp_ignore"),
                    "1",
                )?;
                netns::set_sysctl(
                    &namespace,
                    &format!("net.ipv4.conf.{interface}.arp_announce"),
                    "2",
                )?;
            }
            nginx::start(&self.run_dir(), web, &namespace)?;
        }
        Ok(())
    }

    fn attach_xdp_pass_to_lb_ports(&self, ebpf_object: &Path) -> Result<(), LabError> {
        let ports: Vec<String> = Node::LBS.iter().map(|lb| lb.name()).collect();
        xdp_pass::attach_pinned(
            ebpf_object,
            &self.namespace(Node::Switch),
            &ports,
            &pin_dir(&self.prefix),
        )?;
        Ok(())
    }

    /// Every web server answers the client on its own address with its
    /// name, over HTTP and over HTTPS (its certificate verified against the
    /// lab's CA).
    fn check_backends_answer(&self) -> Result<(), LabError> {
        let ca = self.ca_certificate();
        for web in Node::WEBS {
            let address = web.address().expect("web servers have addresses");
            let targets = [
                Target::plain(format!("http://{address}:{HTTP_PORT}/")),
                Target::https_by_name(TLS_NAME, address, &ca),
            ];
            let expected = index_body(web);
            for target in targets {
                let deadline = Instant::now() + BACKEND_CHECK_TIMEOUT;
                loop {
                    let reply = self.get_many(&target, 1)?.remove(0);
                    if reply.is_ok() && reply.body == expected.trim() {
                        break;
                    }
                    if Instant::now() >= deadline {
                        return Err(LabError::BackendNotServing {
                            web,
                            url: format!("{} ({})", target.url, target.curl_options.join(" ")),
                            reply: reply.to_string(),
                        });
                    }
                    sleep(Duration::from_millis(200));
                }
            }
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.torn_down {
            return;
        }
        if let Err(error) = teardown(&self.prefix) {
            eprintln!("lab {}: teardown failed: {error}", self.prefix);
        }
    }
}

/// Rejects prefixes that could produce unsafe paths or over-long names.
fn validate_prefix(prefix: &str) -> Result<(), LabError> {
    let valid = (1..=16).contains(&prefix.len())
        && prefix.starts_with(|c: char| c.is_ascii_lowercase())
        && prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(LabError::InvalidPrefix(prefix.to_owned()))
    }
}

fn namespace(prefix: &str, node: Node) -> String {
    format!("{prefix}{node}")
}

fn run_dir(prefix: &str) -> PathBuf {
    Path::new("/run").join(format!("{prefix}lab"))
}

fn pin_dir(prefix: &str) -> PathBuf {
    Path::new("/sys/fs/bpf").join(format!("{prefix}lab"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_checked() {
        for good in ["lbl-", "lbt-rr-", "a", "bench1-"] {
            assert!(validate_prefix(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-x",
            "../",
            "lbl/",
            "Lbl-",
            "x y",
            "a-very-long-prefix-",
        ] {
            assert!(validate_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_carry_the_prefix() {
        assert_eq!(namespace("lbt-", Node::Web(2)), "lbt-web2");
        assert_eq!(run_dir("lbt-"), Path::new("/run/lbt-lab"));
        assert_eq!(pin_dir("lbt-"), Path::new("/sys/fs/bpf/lbt-lab"));
    }
}
