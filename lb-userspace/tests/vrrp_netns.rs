//! VRRP on real sockets: two instances in two network namespaces joined by a
//! veth pair elect a master, move the VIP (netlink) and announce it (gratuitous
//! ARP), hand over on graceful shutdown within Skew_Time, recover from a crash,
//! preempt back, and count and ignore malformed adverts; on two-armed nodes
//! the gateway address moves with the master on the servers' side.
//!
//! Needs root (fails, never skips, without it). Every packet stays inside the
//! namespaces created here, which are deleted by name at the end, on panic too.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use lb::vrrp::packet::{IP_PROTOCOL, MULTICAST_GROUP};
use lb::vrrp::{
    self, Advert, AdvertInterval, Gateway, NotifyCommands, State, VrrpConfig, VrrpStatus,
};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::sync::{oneshot, watch};

const VRID: u8 = 51;
const VIP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 100);
const ADDRESS_A: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const ADDRESS_B: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
const ADVERT_INTERVAL: Duration = Duration::from_millis(100);
/// The servers' default gateway, on the nodes' server-side interfaces.
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 99, 1, 1);
/// A server's address on the server-side segment.
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 99, 1, 11);

// ---- namespaces ------------------------------------------------------------

/// Two node namespaces, each with one veth into a bridge in a third
/// ("switch") namespace, so that one node's link can go down while the
/// other's stays up. Deleted on drop.
struct Lab {
    /// Node a, node b, switch.
    namespaces: [String; 3],
    /// The nodes' interfaces.
    interfaces: [String; 2],
    /// The switch's ports towards node a and node b.
    switch_ports: [String; 2],
    dir: std::path::PathBuf,
}

impl Lab {
    /// Namespaces `{name}-a`, `{name}-b`, `{name}-s`; interfaces `{tag}-a`,
    /// `{tag}-b` in the nodes, `{tag}-sa`, `{tag}-sb` and bridge `{tag}-br` in
    /// the switch (`tag` short enough for 15-byte interface names).
    fn new(name: &str, tag: &str) -> Lab {
        assert_eq!(
            std::fs::metadata("/proc/self").expect("procfs").uid(),
            0,
            "the VRRP namespace test needs root (it creates network namespaces)"
        );
        let namespaces = ["a", "b", "s"].map(|suffix| format!("{name}-{suffix}"));
        for namespace in &namespaces {
            // Left over by an earlier run that was killed.
            delete_namespace(namespace);
        }
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let lab = Lab {
            namespaces,
            interfaces: ["a", "b"].map(|suffix| format!("{tag}-{suffix}")),
            switch_ports: ["sa", "sb"].map(|suffix| format!("{tag}-{suffix}")),
            dir,
        };
        let switch = lab.namespaces[2].as_str();
        let bridge = format!("{tag}-br");
        for namespace in &lab.namespaces {
            ip(&["netns", "add", namespace]);
            ip(&["-n", namespace, "link", "set", "lo", "up"]);
        }
        ip(&["-n", switch, "link", "add", &bridge, "type", "bridge"]);
        ip(&["-n", switch, "link", "set", &bridge, "up"]);
        for node in 0..2 {
            let (namespace, interface) = (&lab.namespaces[node], &lab.interfaces[node]);
            let port = &lab.switch_ports[node];
            let address = [ADDRESS_A, ADDRESS_B][node];
            ip(&[
                "-n", switch, "link", "add", port, "type", "veth", "peer", "name", interface,
                "netns", namespace,
            ]);
            ip(&["-n", switch, "link", "set", port, "master", &bridge]);
            ip(&["-n", switch, "link", "set", port, "up"]);
            ip(&[
                "-n",
                namespace,
                "addr",
                "add",
                &format!("{address}/24"),
                "dev",
                interface,
            ]);
            ip(&["-n", namespace, "link", "set", interface, "up"]);
            // Learn new neighbours from gratuitous ARP, to observe ours.
            sysctl(
                namespace,
                &format!("net.ipv4.conf.{interface}.arp_accept"),
                "1",
            );
        }
        lab
    }

    fn namespace(&self, node: usize) -> String {
        self.namespaces[node].clone()
    }

    fn interface(&self, node: usize) -> String {
        self.interfaces[node].clone()
    }

    /// Takes node `node`'s link down or up at the switch (its carrier goes).
    fn set_link(&self, node: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&[
            "-n",
            &self.namespaces[2],
            "link",
            "set",
            &self.switch_ports[node],
            state,
        ]);
    }

    fn has_vip(&self, node: usize) -> bool {
        let output = ip(&[
            "-n",
            &self.namespaces[node],
            "-4",
            "-o",
            "addr",
            "show",
            "dev",
            &self.interfaces[node],
        ]);
        output.contains(&format!("inet {VIP}/32"))
    }

    fn mac(&self, node: usize) -> String {
        let output = ip(&[
            "-n",
            &self.namespaces[node],
            "-br",
            "link",
            "show",
            &self.interfaces[node],
        ]);
        output
            .split_whitespace()
            .nth(2)
            .expect("MAC column")
            .to_owned()
    }

    /// The MAC `node`'s neighbour table has for the VIP, if any.
    fn vip_neighbour(&self, node: usize) -> Option<String> {
        let output = ip(&[
            "-n",
            &self.namespaces[node],
            "neigh",
            "show",
            &VIP.to_string(),
        ]);
        let mut words = output.split_whitespace();
        words.find(|&word| word == "lladdr")?;
        words.next().map(str::to_owned)
    }

    fn hook_log(&self, node: usize) -> std::path::PathBuf {
        self.dir.join(format!("hooks-{node}.log"))
    }

    /// A second arm on each node, `{tag}-ga` and `{tag}-gb`, into a bridge
    /// `{tag}-sv` in the switch namespace that stands for the server
    /// segment: the bridge holds [`SERVER`] and learns neighbours from
    /// gratuitous ARP.
    fn add_server_side(&self, tag: &str) -> ServerSide {
        let switch = self.namespaces[2].as_str();
        let bridge = format!("{tag}-sv");
        ip(&["-n", switch, "link", "add", &bridge, "type", "bridge"]);
        ip(&[
            "-n",
            switch,
            "addr",
            "add",
            &format!("{SERVER}/24"),
            "dev",
            &bridge,
        ]);
        ip(&["-n", switch, "link", "set", &bridge, "up"]);
        sysctl(switch, &format!("net.ipv4.conf.{bridge}.arp_accept"), "1");
        let interfaces = ["a", "b"].map(|suffix| format!("{tag}-g{suffix}"));
        for (node, interface) in interfaces.iter().enumerate() {
            let port = format!("{tag}-p{}", ["a", "b"][node]);
            ip(&[
                "-n",
                switch,
                "link",
                "add",
                &port,
                "type",
                "veth",
                "peer",
                "name",
                interface,
                "netns",
                &self.namespaces[node],
            ]);
            ip(&["-n", switch, "link", "set", &port, "master", &bridge]);
            ip(&["-n", switch, "link", "set", &port, "up"]);
            ip(&["-n", &self.namespaces[node], "link", "set", interface, "up"]);
        }
        ServerSide { interfaces, bridge }
    }

    /// Whether `node` holds `address` as a /32 on `interface`.
    fn holds(&self, node: usize, interface: &str, address: Ipv4Addr) -> bool {
        let output = ip(&[
            "-n",
            &self.namespaces[node],
            "-4",
            "-o",
            "addr",
            "show",
            "dev",
            interface,
        ]);
        output.contains(&format!("inet {address}/32"))
    }

    /// The MAC of `node`'s `interface`.
    fn interface_mac(&self, node: usize, interface: &str) -> String {
        let output = ip(&[
            "-n",
            &self.namespaces[node],
            "-br",
            "link",
            "show",
            interface,
        ]);
        output
            .split_whitespace()
            .nth(2)
            .expect("MAC column")
            .to_owned()
    }
}

/// The servers' side of two-armed nodes (see [`Lab::add_server_side`]).
struct ServerSide {
    /// The nodes' server-side interfaces.
    interfaces: [String; 2],
    /// The server segment, in the switch namespace.
    bridge: String,
}

impl ServerSide {
    /// Whether `node` holds the gateway address, and on its server-side
    /// interface only.
    fn has_gateway(&self, lab: &Lab, node: usize) -> bool {
        let on_server_side = lab.holds(node, &self.interfaces[node], GATEWAY);
        assert!(
            !lab.holds(node, &lab.interfaces[node], GATEWAY),
            "the gateway address is never on the VRRP interface"
        );
        assert!(
            !lab.holds(node, &self.interfaces[node], VIP),
            "the VIP is never on the server side"
        );
        on_server_side
    }

    /// The MAC the server segment has for the gateway address, if any.
    fn gateway_neighbour(&self, lab: &Lab) -> Option<String> {
        let output = ip(&[
            "-n",
            &lab.namespaces[2],
            "neigh",
            "show",
            &GATEWAY.to_string(),
            "dev",
            &self.bridge,
        ]);
        let mut words = output.split_whitespace();
        words.find(|&word| word == "lladdr")?;
        words.next().map(str::to_owned)
    }

    /// Waits until the server segment has the gateway address at `node`'s
    /// server-side MAC (learned from its gratuitous ARP).
    fn assert_gateway_announced_by(&self, lab: &Lab, node: usize, what: &str) {
        let mac = lab.interface_mac(node, &self.interfaces[node]);
        assert_ne!(mac, lab.mac(node), "the two arms have different MACs");
        assert!(
            wait_until(Duration::from_secs(2), || self.gateway_neighbour(lab).as_deref()
                == Some(mac.as_str()))
            .is_some(),
            "{what}: the servers learned the gateway address at node {node}'s server-side MAC {mac}, have {:?}",
            self.gateway_neighbour(lab)
        );
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for namespace in &self.namespaces {
            delete_namespace(namespace);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Deletes `namespace` if it exists.
fn delete_namespace(namespace: &str) {
    let _ = Command::new("ip")
        .args(["netns", "del", namespace])
        .stderr(Stdio::null())
        .status();
}

fn ip(args: &[&str]) -> String {
    let output = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

fn sysctl(namespace: &str, key: &str, value: &str) {
    let status = Command::new("ip")
        .args([
            "netns",
            "exec",
            namespace,
            "sysctl",
            "-qw",
            &format!("{key}={value}"),
        ])
        .status()
        .expect("run sysctl");
    assert!(status.success(), "sysctl {key} in {namespace}");
}

/// Runs `work` on a thread that has entered network namespace `namespace`.
fn in_namespace<T: Send + 'static>(
    namespace: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    let path = format!("/run/netns/{namespace}");
    thread::spawn(move || {
        let file = File::open(&path).expect("open the namespace");
        // SAFETY: setns only reads the descriptor, which `file` keeps open for
        // the call, and moves only this thread into the namespace.
        let result = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(
            result,
            0,
            "setns {path}: {}",
            std::io::Error::last_os_error()
        );
        work()
    })
}

// ---- VRRP nodes ------------------------------------------------------------

enum Stop {
    /// Graceful: priority 0, VIPs removed.
    Shutdown,
    /// As if killed: the task is dropped mid-flight, nothing is cleaned up.
    Crash,
}

/// One VRRP instance running in its namespace on a thread of its own.
struct Node {
    status: watch::Receiver<VrrpStatus>,
    stop: Option<oneshot::Sender<Stop>>,
    thread: Option<JoinHandle<()>>,
}

impl Node {
    /// Runs `config` in `namespace`, advertising from `address`.
    fn start(namespace: &str, config: VrrpConfig, address: Ipv4Addr) -> Node {
        let (status_sender, status_receiver) = std_mpsc::channel();
        let (stop, stop_receiver) = oneshot::channel();
        let thread = in_namespace(namespace, move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let leftover = runtime.block_on(async move {
                let handle = vrrp::spawn(config, address, lb::hooks::HookFailures::default())
                    .await
                    .expect("start VRRP");
                status_sender.send(handle.status()).expect("send status");
                match stop_receiver.await {
                    Ok(Stop::Crash) => Some(handle),
                    Ok(Stop::Shutdown) | Err(_) => {
                        handle.shutdown().await.expect("graceful shutdown");
                        None
                    }
                }
            });
            // A crash: the runtime goes first, dropping the VRRP task mid-flight.
            drop(runtime);
            drop(leftover);
        });
        let status = status_receiver.recv().expect("node started");
        Node {
            status,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn status(&self) -> VrrpStatus {
        self.status.borrow().clone()
    }

    fn state(&self) -> State {
        self.status.borrow().state
    }

    fn stop(&mut self, how: Stop) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(how);
        }
        if let Some(thread) = self.thread.take() {
            thread.join().expect("node thread");
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop(Stop::Shutdown);
    }
}

fn config(interface: &str, priority: u8, hook_log: &std::path::Path) -> VrrpConfig {
    let mut config = VrrpConfig::new(interface, VRID, priority, vec![VIP]);
    config.advert_interval =
        AdvertInterval::from_duration(ADVERT_INTERVAL).expect("10 centiseconds");
    config.garp.count = 3;
    config.garp.interval = Duration::from_millis(200);
    let hook = |state: &str| Some(format!("echo {state} >> {}", hook_log.display()));
    config.notify = NotifyCommands {
        master: hook("master"),
        backup: hook("backup"),
        fault: hook("fault"),
    };
    config
}

/// Polls `condition` every 2 ms; returns how long it took to hold.
fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if condition() {
            return Some(start.elapsed());
        }
        thread::sleep(Duration::from_millis(2));
    }
    condition().then(|| start.elapsed())
}

fn settle(nodes: [&Node; 2], states: [State; 2], what: &str) {
    let settled = wait_until(Duration::from_secs(5), || {
        nodes[0].state() == states[0] && nodes[1].state() == states[1]
    });
    assert!(
        settled.is_some(),
        "{what}: expected {states:?}, got {:?}",
        [nodes[0].state(), nodes[1].state()]
    );
}

// ---- malformed adverts -----------------------------------------------------

/// An IPv4 datagram (header filled by hand, for IP_HDRINCL) carrying `payload`.
fn datagram(source: Ipv4Addr, destination: Ipv4Addr, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0x45, 0xc0, 0, 0, 0, 0, 0, 0, ttl, IP_PROTOCOL, 0, 0];
    bytes.extend_from_slice(&source.octets());
    bytes.extend_from_slice(&destination.octets());
    bytes.extend_from_slice(payload);
    let total = u16::try_from(bytes.len()).expect("short").to_be_bytes();
    bytes[2..4].copy_from_slice(&total);
    bytes
}

fn advert_bytes(
    vrid: u8,
    priority: u8,
    addresses: Vec<Ipv4Addr>,
    source: Ipv4Addr,
    destination: Ipv4Addr,
) -> Vec<u8> {
    let advert = Advert {
        vrid,
        priority,
        max_advert_interval: 10,
        addresses,
    };
    let mut buffer = vec![0u8; advert.buffer_len()];
    advert.emit(&mut buffer, source, destination).expect("emit");
    buffer
}

/// The five malformed adverts of the issue, each of which would make a node
/// change state if it were believed (priority 255 or 0).
fn malformed_adverts(
    source: Ipv4Addr,
    destination: Ipv4Addr,
    priority: u8,
) -> Vec<(&'static str, Vec<u8>)> {
    let valid = advert_bytes(VRID, priority, vec![VIP], source, destination);

    let mut bad_checksum = valid.clone();
    bad_checksum[7] ^= 0x5a;

    let wrong_vrid = advert_bytes(VRID + 1, priority, vec![VIP], source, destination);

    // The count says two addresses, only one is there.
    let mut truncated = advert_bytes(VRID, priority, vec![VIP, VIP], source, destination);
    truncated.truncate(truncated.len() - 4);

    // VRRPv2: version 2, auth type 0, interval in seconds, 8 bytes of auth data.
    let mut version2 = vec![0x21, VRID, priority, 1, 0, 1, 0, 0];
    version2.extend_from_slice(&VIP.octets());
    version2.extend_from_slice(&[0; 8]);

    vec![
        ("ttl 64", datagram(source, destination, 64, &valid)),
        (
            "bad checksum",
            datagram(source, destination, 255, &bad_checksum),
        ),
        (
            "wrong vrid",
            datagram(source, destination, 255, &wrong_vrid),
        ),
        ("truncated", datagram(source, destination, 255, &truncated)),
        ("version 2", datagram(source, destination, 255, &version2)),
    ]
}

/// Sends `datagrams` from inside `namespace` out of `interface`.
fn inject(namespace: &str, interface: String, datagrams: Vec<Vec<u8>>) {
    in_namespace(namespace, move || {
        let socket = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(i32::from(IP_PROTOCOL))),
        )
        .expect("raw socket");
        socket.set_header_included_v4(true).expect("IP_HDRINCL");
        socket
            .bind_device(Some(interface.as_bytes()))
            .expect("bind to device");
        socket.set_multicast_loop_v4(false).expect("no loop");
        for datagram in datagrams {
            let destination = Ipv4Addr::new(datagram[16], datagram[17], datagram[18], datagram[19]);
            socket
                .send_to(
                    &datagram,
                    &SockAddr::from(SocketAddrV4::new(destination, 0)),
                )
                .expect("send");
        }
    })
    .join()
    .expect("inject");
}

fn rejections(status: &VrrpStatus) -> [u64; 5] {
    let received = &status.received;
    [
        received.rejected_ttl,
        received.rejected_checksum,
        received.rejected_vrid_mismatch,
        received.rejected_truncated,
        received.rejected_version,
    ]
}

/// Sends the malformed adverts to `target` and checks that each is counted
/// once under its own reason and that nothing else happens.
fn assert_malformed_adverts_are_counted_and_ignored(
    lab: &Lab,
    target: &Node,
    target_index: usize,
    priority: u8,
) {
    let sender_index = 1 - target_index;
    let source = [ADDRESS_A, ADDRESS_B][sender_index];
    let before = target.status();
    let adverts = malformed_adverts(source, MULTICAST_GROUP, priority);
    inject(
        &lab.namespace(sender_index),
        lab.interface(sender_index),
        adverts.into_iter().map(|(_, bytes)| bytes).collect(),
    );
    let expected = rejections(&before).map(|count| count + 1);
    let counted = wait_until(Duration::from_secs(2), || {
        rejections(&target.status()) == expected
    });
    let after = target.status();
    assert!(
        counted.is_some(),
        "rejections (ttl, checksum, vrid, truncated, version): before {:?}, after {:?}",
        rejections(&before),
        rejections(&after)
    );
    // Give a wrongly believed advert time to act (Skew_Time is under 100 ms).
    thread::sleep(ADVERT_INTERVAL * 5);
    let after = target.status();
    assert_eq!(after.state, before.state);
    assert_eq!(after.transitions, before.transitions, "no state change");
    assert_eq!(
        after.received.rejected(),
        before.received.rejected() + 5,
        "nothing else rejected"
    );
}

// ---- the tests -------------------------------------------------------------

#[test]
fn vrrp_pair_in_namespaces_elects_fails_over_recovers_and_ignores_malformed_adverts() {
    let lab = Lab::new("vrtest", "vrt");
    let (ns_a, ns_b) = (lab.namespace(0), lab.namespace(1));
    let config_a = config(&lab.interface(0), 150, &lab.hook_log(0));
    let config_b = config(&lab.interface(1), 100, &lab.hook_log(1));

    // Election: the higher priority becomes master and holds the VIP.
    let mut a = Node::start(&ns_a, config_a.clone(), ADDRESS_A);
    let b = Node::start(&ns_b, config_b, ADDRESS_B);
    settle([&a, &b], [State::Master, State::Backup], "election");
    assert!(lab.has_vip(0), "the master holds the VIP");
    assert!(!lab.has_vip(1), "the backup does not");
    let mac_a = lab.mac(0);
    assert!(
        wait_until(Duration::from_secs(2), || lab.vip_neighbour(1).as_deref()
            == Some(mac_a.as_str()))
        .is_some(),
        "the backup learned the VIP at the master's MAC from its gratuitous ARP"
    );
    assert!(a.status().sent.gratuitous_arps >= 1);

    // The backup hears the master's adverts, RFC 5798 checksum, TTL 255.
    thread::sleep(ADVERT_INTERVAL * 5);
    let heard = b.status().received;
    assert!(heard.accepted >= 5, "{heard:?}");
    assert_eq!(
        heard.accepted_message_only_checksum + heard.accepted_group_pseudo_header_checksum,
        0
    );
    assert_eq!(heard.rejected(), 0, "{heard:?}");
    assert_eq!(b.status().master_address, Some(ADDRESS_A));

    // Malformed adverts are counted and ignored by the master (priority 255
    // would make it yield) and by the backup (priority 0 would make it take over).
    assert_malformed_adverts_are_counted_and_ignored(&lab, &a, 0, 255);
    assert_malformed_adverts_are_counted_and_ignored(&lab, &b, 1, 0);

    // Graceful shutdown: priority 0 hands over after Skew_Time (61 ms), well
    // before Master_Down_Interval (361 ms).
    let stopped = Instant::now();
    a.stop(Stop::Shutdown);
    let handover = wait_until(Duration::from_secs(2), || b.state() == State::Master)
        .map(|_| stopped.elapsed())
        .expect("backup took over");
    println!("graceful handover took {handover:?}");
    assert!(
        handover < Duration::from_millis(300),
        "handover took {handover:?}"
    );
    assert!(!lab.has_vip(0), "the old master removed the VIP");
    assert!(lab.has_vip(1), "the new master holds the VIP");
    let mac_b = lab.mac(1);
    assert!(
        wait_until(Duration::from_secs(2), || lab.vip_neighbour(0).as_deref()
            == Some(mac_b.as_str()))
        .is_some(),
        "the VIP moved to the new master's MAC"
    );

    // The higher-priority node returns and preempts.
    let mut a = Node::start(&ns_a, config_a.clone(), ADDRESS_A);
    settle([&a, &b], [State::Master, State::Backup], "preemption");
    assert!(lab.has_vip(0) && !lab.has_vip(1));

    // Crash (no priority 0): the backup takes over after Master_Down_Interval;
    // the dead node's VIP stays behind until it restarts.
    let crashed = Instant::now();
    a.stop(Stop::Crash);
    wait_until(Duration::from_secs(2), || b.state() == State::Master)
        .expect("backup took over after the crash");
    let takeover = crashed.elapsed();
    println!("takeover after a crash took {takeover:?}");
    // The last advert heard came up to one interval before the crash.
    assert!(
        takeover >= Duration::from_millis(250),
        "waited Master_Down_Interval, took {takeover:?}"
    );
    assert!(lab.has_vip(0), "a crashed node leaves its VIP");
    assert!(lab.has_vip(1));

    // Restarted, it first removes the stale VIP (a backup must not hold it),
    // then preempts.
    let a = Node::start(&ns_a, config_a, ADDRESS_A);
    assert!(
        wait_until(Duration::from_millis(300), || !lab.has_vip(0)).is_some(),
        "the restarted node removed its stale VIP while backup"
    );
    settle(
        [&a, &b],
        [State::Master, State::Backup],
        "preemption after the crash",
    );
    assert!(lab.has_vip(0) && !lab.has_vip(1));

    // The master's link goes down: it enters Fault and drops the VIP, the
    // backup takes over; the link returns: it comes back as backup, preempts.
    lab.set_link(0, false);
    settle([&a, &b], [State::Fault, State::Master], "link down");
    assert!(!lab.has_vip(0) && lab.has_vip(1));
    lab.set_link(0, true);
    settle([&a, &b], [State::Master, State::Backup], "link up again");
    assert!(lab.has_vip(0) && !lab.has_vip(1));

    drop(a);
    drop(b);
    // The hooks ran, in order, for each state entered.
    let hooks_a = std::fs::read_to_string(lab.hook_log(0)).expect("hooks of a");
    assert_eq!(
        hooks_a,
        "backup\nmaster\n".repeat(3) + "fault\nbackup\nmaster\n"
    );
    let hooks_b = std::fs::read_to_string(lab.hook_log(1)).expect("hooks of b");
    assert_eq!(hooks_b, "backup\nmaster\n".repeat(3) + "backup\n");
}

#[test]
fn vrrp_unicast_pair_in_namespaces_rejects_strangers_and_fails_over() {
    let lab = Lab::new("vrtest-u", "vrtu");
    let (ns_a, ns_b) = (lab.namespace(0), lab.namespace(1));
    let mut config_a = config(&lab.interface(0), 150, &lab.hook_log(0));
    config_a.unicast_peers = vec![ADDRESS_B];
    let mut config_b = config(&lab.interface(1), 100, &lab.hook_log(1));
    config_b.unicast_peers = vec![ADDRESS_A];

    let mut a = Node::start(&ns_a, config_a, ADDRESS_A);
    let b = Node::start(&ns_b, config_b, ADDRESS_B);
    settle([&a, &b], [State::Master, State::Backup], "unicast election");
    assert!(lab.has_vip(0) && !lab.has_vip(1));

    // A valid advert from an address that is not a peer is refused.
    let stranger = Ipv4Addr::new(10, 99, 0, 3);
    let forged = advert_bytes(VRID, 255, vec![VIP], stranger, ADDRESS_A);
    let before = a.status();
    inject(
        &ns_b,
        lab.interface(1),
        vec![datagram(stranger, ADDRESS_A, 255, &forged)],
    );
    assert!(
        wait_until(Duration::from_secs(2), || a
            .status()
            .received
            .rejected_unknown_peer
            == 1)
        .is_some(),
        "{:?}",
        a.status().received
    );
    assert_eq!(a.status().transitions, before.transitions);
    assert_eq!(b.status().received.rejected(), 0);
    assert!(b.status().received.accepted > 0);

    let stopped = Instant::now();
    a.stop(Stop::Shutdown);
    wait_until(Duration::from_secs(2), || b.state() == State::Master).expect("unicast handover");
    let handover = stopped.elapsed();
    println!("unicast graceful handover took {handover:?}");
    assert!(
        handover < Duration::from_millis(300),
        "handover took {handover:?}"
    );
    assert!(lab.has_vip(1) && !lab.has_vip(0));
}

#[test]
fn vrrp_pair_moves_the_gateway_address_with_the_master_on_the_server_side() {
    let lab = Lab::new("vrtest-g", "vrtg");
    let servers = lab.add_server_side("vrtg");
    let (ns_a, ns_b) = (lab.namespace(0), lab.namespace(1));
    let two_armed = |node: usize, priority: u8| {
        let mut config = config(&lab.interface(node), priority, &lab.hook_log(node));
        config.gateway = Some(Gateway {
            interface: servers.interfaces[node].clone(),
            address: GATEWAY,
        });
        config
    };
    let (config_a, config_b) = (two_armed(0, 150), two_armed(1, 100));

    // A server side that does not exist stops the start, naming it.
    let mut missing = two_armed(0, 150);
    missing.gateway = Some(Gateway {
        interface: "vrtg-nope".into(),
        address: GATEWAY,
    });
    let error = in_namespace(&ns_a, move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let started = vrrp::spawn(missing, ADDRESS_A, lb::hooks::HookFailures::default());
            match started.await {
                Ok(_) => panic!("started without its server side"),
                Err(error) => lb::error_chain::error_chain(&error),
            }
        })
    })
    .join()
    .expect("start attempt");
    assert_eq!(
        error,
        "the gateway address 10.99.1.1 on vrtg-nope: interface vrtg-nope does not exist"
    );
    assert!(!lab.has_vip(0), "nothing was added");

    // The master holds the gateway address on its server side and announces
    // it there, from that interface's MAC.
    let mut a = Node::start(&ns_a, config_a.clone(), ADDRESS_A);
    let b = Node::start(&ns_b, config_b, ADDRESS_B);
    settle([&a, &b], [State::Master, State::Backup], "election");
    assert!(lab.has_vip(0) && servers.has_gateway(&lab, 0));
    assert!(!lab.has_vip(1) && !servers.has_gateway(&lab, 1));
    servers.assert_gateway_announced_by(&lab, 0, "election");

    // The adverts list the VIP only: the backup, configured with the same
    // VIP, finds nothing else in them.
    thread::sleep(ADVERT_INTERVAL * 5);
    let heard = b.status().received;
    assert!(heard.accepted >= 5, "{heard:?}");
    assert_eq!(heard.accepted_address_list_mismatch, 0, "{heard:?}");

    // Graceful shutdown: the old master removes it, the new one takes it.
    a.stop(Stop::Shutdown);
    settle_one(&b, State::Master, "handover");
    assert!(!servers.has_gateway(&lab, 0), "shutdown removed it");
    assert!(servers.has_gateway(&lab, 1));
    servers.assert_gateway_announced_by(&lab, 1, "handover");

    // Preempted, the master that becomes backup removes it.
    let a = Node::start(&ns_a, config_a, ADDRESS_A);
    settle([&a, &b], [State::Master, State::Backup], "preemption");
    assert!(servers.has_gateway(&lab, 0));
    assert!(
        wait_until(Duration::from_millis(500), || !servers.has_gateway(&lab, 1)).is_some(),
        "the new backup removed it"
    );
    servers.assert_gateway_announced_by(&lab, 0, "preemption");

    // Fault (the VRRP link goes down): removed with the VIP.
    lab.set_link(0, false);
    settle([&a, &b], [State::Fault, State::Master], "link down");
    assert!(!lab.has_vip(0) && !servers.has_gateway(&lab, 0));
    assert!(lab.has_vip(1) && servers.has_gateway(&lab, 1));
}

/// Waits until `node` is in `state`.
fn settle_one(node: &Node, state: State, what: &str) {
    assert!(
        wait_until(Duration::from_secs(5), || node.state() == state).is_some(),
        "{what}: expected {state:?}, got {:?}",
        node.state()
    );
}
