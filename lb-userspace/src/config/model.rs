//! The validated configuration: what the rest of the program reads. Every
//! value here passed the validators of `config::validate`.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lb_common::handshake::{self, Observe};
use lb_common::maps::RateLimit;
pub use lb_common::maps::SourcePrefix;

use crate::dataplane::{VipIcmpEcho, XdpModePreference};
use crate::health::{CheckSpec, CheckTarget, ExpectRole, Health, ProbeKind, ProbeSource};
use crate::vrrp::VrrpConfig;

/// Backend weights accepted in the file.
pub const WEIGHT_RANGE: std::ops::RangeInclusive<u32> = 1..=100;

/// `new_flows_per_second_per_source` accepted in the file: from one new flow
/// per second to a million (a token every microsecond).
pub const NEW_FLOWS_PER_SECOND_RANGE: std::ops::RangeInclusive<u32> = 1..=1_000_000;
/// `new_flows_burst_per_source` accepted in the file.
pub const NEW_FLOWS_BURST_RANGE: std::ops::RangeInclusive<u32> = 1..=1_000_000;

/// Where the control API listens unless `global.api` says otherwise.
pub const DEFAULT_API: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9180);

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub global: Global,
    pub services: Vec<Service>,
    /// `[vrrp]`: the active-passive pair; `None`: a single node.
    pub vrrp: Option<VrrpPair>,
    /// `[bgp]`: an active-active node whose routing daemon announces the
    /// VIPs; `None`: not announced by `lb`. Never both with `vrrp`.
    pub bgp: Option<BgpNode>,
}

impl Config {
    /// Number of (service, backend) memberships: one dataplane backend entry each.
    pub fn backend_count(&self) -> usize {
        self.services.iter().map(|s| s.backends.len()).sum()
    }

    /// Every distinct backend address, in order.
    pub fn backend_addresses(&self) -> Vec<Ipv4Addr> {
        let addresses: BTreeSet<Ipv4Addr> = self
            .services
            .iter()
            .flat_map(|s| s.backends.iter().map(|b| b.address))
            .collect();
        addresses.into_iter().collect()
    }
}

/// Default `global.flow_insert_limit_per_cpu`: 100,000 flow-table inserts
/// per CPU per second.
pub const DEFAULT_FLOW_INSERT_LIMIT_PER_CPU: u32 = 100_000;

/// Settings of the node as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Global {
    /// Interface the XDP program attaches to: where the VIPs are.
    pub interface: String,
    /// `global.server_interface`: the servers' side of a two-armed node, where
    /// `lb_xdp` attaches as well (the replies of `nat` services, and service
    /// traffic from the servers' own network); `None`: one-armed.
    pub server_interface: Option<String>,
    /// Entries of the LRU flow table.
    pub flow_table_size: u32,
    /// Maglev table size M (prime); also the longest round-robin ring.
    pub maglev_table_size: u32,
    pub max_services: u32,
    pub max_backends: u32,
    /// Where health probes leave from: `global.health_source` and
    /// `global.health_interface` (default: `interface`).
    pub health_source: ProbeSource,
    /// How the XDP program is attached (`global.xdp_mode`).
    pub xdp_mode: XdpModePreference,
    /// The control API's address; always a loopback address.
    pub api: SocketAddr,
    /// The bpffs directory where the XDP link and the flow table are pinned,
    /// so the data path outlives `lb`; `None` (`pin_dir = ""`): not pinned.
    pub pin_dir: Option<PathBuf>,
    // flood protection
    /// Entries of the LRU map of per-source token buckets.
    pub rate_limit_table_size: u32,
    /// Flow-table inserts per CPU per second beyond which new flows are
    /// forwarded without an entry; 0: no limit.
    pub flow_insert_limit_per_cpu: u32,
    // source policies
    /// Entries of the source allow-lists' map: the prefixes of every
    /// service's `allow` together.
    pub allow_table_size: u32,
    /// What the data path does with ICMP echo requests to a VIP.
    pub vip_icmp_echo: VipIcmpEcho,
    /// `global.notify_backend`: run with `sh -c` when a backend's state
    /// changes (see [`crate::controller::notify`]); `None`: no hook.
    pub notify_backend: Option<String>,
}

/// A virtual service: VIP, port and protocol, and the backends behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub vip: Ipv4Addr,
    pub port: u16,
    pub protocol: Protocol,
    pub scheduler: Scheduler,
    pub forwarding: Forwarding,
    /// What a backend's established flows do when its checks mark it down.
    pub on_down: OnDown,
    /// `allow`: the only sources the service takes packets from, distinct
    /// prefixes in file order (never empty); `None`: every source.
    pub allow: Option<Vec<SourcePrefix>>,
    /// The per-source new-flow limit; `None`: none.
    pub rate_limit: Option<SourceRateLimit>,
    /// The check of every backend; `None`: not checked, the backends are always up.
    pub health: Option<HealthCheck>,
    pub backends: Vec<Backend>,
}

/// `new_flows_per_second_per_source` and `new_flows_burst_per_source`: each
/// source address may open `per_second` new flows per second to the
/// service, and `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceRateLimit {
    pub per_second: u32,
    pub burst: u32,
}

impl SourceRateLimit {
    /// The limit as the data path holds it (`RATE_LIMITS`).
    pub fn map_value(self) -> RateLimit {
        RateLimit::new(self.per_second, self.burst)
    }
}

impl Service {
    /// The check of `backend`, `None` if the service is not checked.
    pub fn check_target(&self, backend: &Backend) -> Option<CheckTarget> {
        let health = self.health.as_ref()?;
        let spec = match (backend.expect_role, health.spec.probe.kind()) {
            (Some(role), ProbeKind::Mysql(mysql)) => Arc::new(CheckSpec {
                probe: health
                    .spec
                    .probe
                    .clone()
                    .with_kind(ProbeKind::Mysql(mysql.clone().with_expect_role(role))),
                params: health.spec.params,
            }),
            _ => Arc::clone(&health.spec),
        };
        // Both ports were validated as 1..=65535.
        Some(
            CheckTarget::new(backend.address, health.port.unwrap_or(backend.port), spec)
                .expect("a validated check port is not 0"),
        )
    }
}

/// How a service's backends are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub spec: Arc<CheckSpec>,
    /// `port`: the port probed on every backend; `None`: each backend's
    /// own ([`Backend::port`]).
    pub port: Option<u16>,
    /// Passive health (`observe = "layer4"`); `None`: `observe = "none"`.
    pub observe: Option<PassiveHealth>,
}

/// `observe = "layer4"`: the data path watches each backend's TCP
/// handshakes (HAProxy's `observe layer4` with `on-error mark-down`); see
/// `lb_common::handshake`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassiveHealth {
    /// Failed handshakes in a row, from two clients at least, that mark a
    /// backend down.
    pub error_limit: u8,
    /// How long the client's completing ACK may take after the SYN.
    pub handshake_timeout: Duration,
}

impl PassiveHealth {
    /// The settings as the data path holds them (in the service's entry).
    pub fn map_value(self) -> Observe {
        let nanos = u64::try_from(self.handshake_timeout.as_nanos()).unwrap_or(u64::MAX);
        Observe {
            error_limit: self.error_limit,
            handshake_timeout: handshake::ticks(nanos),
        }
    }
}

/// Transport protocol of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The IP protocol number.
    pub fn ip_protocol(self) -> u8 {
        match self {
            Protocol::Tcp => lb_common::maps::IPPROTO_TCP,
            Protocol::Udp => lb_common::maps::IPPROTO_UDP,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// How a service picks the backend of a new flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduler {
    Maglev,
    RoundRobin,
    /// Maglev over the client address alone: a client's connections stick
    /// to one backend.
    Source,
}

impl fmt::Display for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scheduler::Maglev => "maglev",
            Scheduler::RoundRobin => "round-robin",
            Scheduler::Source => "source",
        })
    }
}

/// What a backend's established flows do when its checks mark it down
/// (`on_down`). Admin `disable` and an unresolved MAC always move them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnDown {
    /// Moved to a serving backend on their next packet, which resets them
    /// (no socket there): clients fail fast and reconnect.
    #[default]
    Reset,
    /// They stay on the backend; only new flows avoid it (HAProxy's
    /// default): right when a check can fail while the server still
    /// serves its open connections.
    Keep,
}

impl fmt::Display for OnDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OnDown::Reset => "reset",
            OnDown::Keep => "keep",
        })
    }
}

/// How packets reach the chosen backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarding {
    /// Direct server return on the same L2 segment: only the MACs are rewritten.
    DsrL2,
    /// Destination NAT: the destination address and port are rewritten to
    /// the backend's, its replies back to the VIP (`global.server_interface`
    /// is the servers' side, the LB pair their gateway).
    Nat,
}

impl fmt::Display for Forwarding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Forwarding::DsrL2 => "dsr-l2",
            Forwarding::Nat => "nat",
        })
    }
}

/// A server behind a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub name: String,
    pub address: Ipv4Addr,
    /// The port it serves the service on: the service's, unless a `nat`
    /// service's backend sets its own `port`.
    pub port: u16,
    /// Share of new flows relative to the service's other backends, in [`WEIGHT_RANGE`].
    pub weight: u32,
    /// Health before the first checks: [`Health::Down`] (the default) until
    /// `rise` checks pass, or [`Health::Up`] if configured `initial = "up"`.
    /// Backends of a service that is not checked are always up.
    pub initial: Health,
    /// `backup = true`: takes new flows only while no other (non-backup)
    /// backend of the service is up (HAProxy's `backup`, with `option
    /// allbackups`: every backup in use then, by weight).
    pub backup: bool,
    /// The role this backend's `mysql` check expects instead of the
    /// service's (e.g. the primary as the backup of a read service of
    /// replicas); `None`: the service's. Only with a `mysql` check.
    pub expect_role: Option<ExpectRole>,
}

/// `[vrrp]`: this node's part in the active-passive pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpPair {
    /// The VRRP instance, run by [`crate::vrrp::spawn`].
    pub instance: VrrpConfig,
    /// Source of the adverts and tie-breaker; `None`: the interface's first
    /// IPv4 address that is not a VIP, looked up at startup.
    pub primary_address: Option<Ipv4Addr>,
    pub track: Tracking,
}

/// When this node lowers its priority so that its peer takes over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracking {
    /// Subtracted while the XDP program is not attached to the interface (0: not tracked).
    pub xdp_weight: u8,
    /// Subtracted for each tracked service without a serving backend (0: not tracked).
    pub service_weight: u8,
    /// The tracked services, by name; `None` (the default): every service,
    /// those a reload adds included.
    pub services: Option<Vec<String>>,
}

/// `[bgp]`: what this node asks its routing daemon to announce, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpNode {
    /// The kernel routing table `lb` keeps a /32 route in per announced VIP;
    /// the daemon exports it.
    pub table: u32,
    /// The VIPs this node may announce; `None`: every service's.
    pub announce: Option<BTreeSet<Ipv4Addr>>,
    /// How long the data path keeps forwarding after the withdrawal on a
    /// graceful stop, while the routers move the flows away.
    pub withdraw_grace: Duration,
}
