//! The named map setups the differential test runs packets against: several
//! services (Maglev and round-robin, TCP and UDP), backends in every state and
//! behind two interfaces, an empty table, tables naming backends that do not
//! serve, stale flow-table entries and round-robin cursors beyond their ring,
//! source allow-lists and per-source rate limits, passive health (its
//! settings changed midway), the flow-table insert guard, held full
//! halfway through one setup, and `nat` services (backends on other ports
//! than their service's, the servers' side interface, the reverse map,
//! clients learnt beforehand).
//!
//! A setup is programmed through the [`Dataplane`] API as the controller
//! would (backends, services, policies, a republication, a removal), plus
//! direct writes for the state no controller would leave ([`KernelMaps`]).
//!
//! The flood guards read the kernel's clock, which the test cannot set, so
//! the setups only use the states in which no clock decides: a bucket of
//! burst 0 (no new flow ever), a bucket too large to empty within a round,
//! an insert limit a round never reaches (the clock is read only once a
//! window is full), and a window held full from the end of time. Passive
//! health likewise: a handshake timeout of 0 (every watched handshake is
//! overdue at the next SYN) or of the clock's whole range (never).

use anyhow::{ensure, Context as _, Result};
use lb::dataplane::{
    Dataplane, LoadOptions, MapWriter as _, VipIcmpEcho, TEST_RUN_INGRESS_IFINDEX,
};
use lb_common::handshake::Observe;
use lb_common::maglev::{build_table, MaglevBackend};
use lb_common::maps::{
    backend_state, service_flags, Backend, Endpoint, Flow, FlowKey, LocalInterface, NatClient,
    RateLimit, Scheduler, ServiceKey, SourcePrefix, IPPROTO_TCP, IPPROTO_UDP,
};
use lb_common::model::{Ingress, MapContents, MapSizes};
use lb_common::ring::round_robin_ring;

use super::kernel::KernelMaps;

/// The LB's MAC: source of forwarded frames, destination of client frames.
pub const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
/// MAC of the other interface, the source of redirected frames: the
/// servers' side ([`LocalInterface::SERVERS`]), where `nat` replies come in.
pub const REMOTE_LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 7, 0xfe];
/// The ifindex of backends reached by redirect (nothing is sent in a test run).
pub const REMOTE_IFINDEX: u32 = 7;
/// An ifindex of the main interface that is not the test run's ingress:
/// `nat` replies are then redirected to it, as when they come in on the
/// servers' interface.
pub const MAIN_ELSEWHERE_IFINDEX: u32 = 9;
/// The interface a test run's packet arrives on.
pub const INGRESS: Ingress = Ingress {
    now_ns: 0,
    ifindex: TEST_RUN_INGRESS_IFINDEX,
    mac: LB_MAC,
};

/// Slots per table half: a small prime keeps publication fast.
pub const TABLE_SIZE: u32 = 251;
pub const MAX_SERVICES: u32 = 12;
pub const MAX_BACKENDS: u32 = 32;
/// A backend id beyond `BACKENDS`, named by stale flows and tables.
pub const BEYOND_BACKENDS: u32 = MAX_BACKENDS + 8;
/// A backend state value that is none of [`backend_state`]'s.
pub const UNKNOWN_STATE: u8 = 3;

pub const VIP_A: [u8; 4] = [10, 0, 0, 100];
pub const VIP_B: [u8; 4] = [10, 0, 0, 101];
pub const VIP_C: [u8; 4] = [10, 0, 0, 102];
/// An address that is no VIP.
pub const NOT_A_VIP: [u8; 4] = [10, 0, 0, 200];
/// The insert guard's limit: more inserts per second than a round makes, so
/// the window never fills and the clock is never read (see the module doc).
pub const INSERT_LIMIT: u32 = 1_000_000;
/// A client of `nat` services learnt before the round (no flow of its own
/// in the table): replies to it are translated from the first packet.
pub const LEARNT_CLIENT: [u8; 4] = [198, 51, 100, 230];
/// A client no node ever saw: replies to it are `nat_no_client`.
pub const UNKNOWN_CLIENT: [u8; 4] = [198, 51, 100, 240];

/// A service as published: its key, id, scheduler and table.
#[derive(Clone, Debug)]
pub struct ServiceSpec {
    pub key: ServiceKey,
    pub id: u32,
    pub scheduler: Scheduler,
    pub slots: Vec<u32>,
}

/// One write of a setup.
#[derive(Clone, Debug)]
pub enum Step {
    /// `Dataplane::set_backend`.
    Backend(u32, Backend),
    /// `Dataplane::set_service`; a key published again flips to its other half.
    Publish(ServiceSpec),
    /// `Dataplane::remove_service`.
    Remove(ServiceKey),
    /// A flow-table entry written directly (stale ones included).
    Flow(FlowKey, Flow),
    /// A round-robin cursor written directly on every CPU: (service id, next).
    Cursor(u32, u32),
    /// `MapWriter::set_rate_limit`: (service id, limit).
    RateLimit(u32, RateLimit),
    /// `MapWriter::set_allow_list`: (service id, prefixes; `None`: every source).
    AllowList(u32, Option<Vec<SourcePrefix>>),
    /// Every CPU's insert window held full: each new flow is forwarded
    /// without an entry.
    HoldInsertWindowsFull,
    /// `MapWriter::set_observe`: (service id, passive health; `None`: off).
    Observe(u32, Option<Observe>),
    /// `Dataplane::set_local_interface`: (slot, MAC, ifindex).
    LocalInterface(u32, [u8; 6], u32),
    /// The `NAT` flag set in the live `SERVICES` entry of a key, directly
    /// (the `Dataplane` API has no `nat` yet): after every publication and
    /// policy change of the service, which drop it.
    Nat(ServiceKey),
    /// A `NAT_REVERSE` entry written directly: (backend endpoint, service
    /// endpoint).
    NatReverse(Endpoint, Endpoint),
    /// A `NAT_CLIENTS` entry written directly, as if learnt: (client
    /// address, network order, its MAC).
    NatClient(u32, [u8; 6]),
}

/// A named state of the maps: the writes that produce it, in order, and
/// the changes made halfway through a round (as the controller would on a
/// health change), so that established flows meet them.
#[derive(Clone, Debug)]
pub struct Setup {
    pub name: &'static str,
    /// `global.vip_icmp_echo`, fixed at load.
    pub vip_icmp_echo: VipIcmpEcho,
    pub steps: Vec<Step>,
    pub midway: Vec<Step>,
}

/// Every setup, by name.
pub fn setups() -> Vec<Setup> {
    vec![mixed(), republished()]
}

/// The setup called `name`.
pub fn named(name: &str) -> Option<Setup> {
    setups().into_iter().find(|setup| setup.name == name)
}

impl Setup {
    /// What the setup is loaded with: the map sizes of every setup (flows:
    /// `flow_table_size`) and its settings.
    pub fn load_options(&self, flow_table_size: u32) -> LoadOptions {
        LoadOptions {
            flow_table_size,
            max_services: MAX_SERVICES,
            max_backends: MAX_BACKENDS,
            table_size: TABLE_SIZE,
            flow_insert_limit_per_cpu: INSERT_LIMIT,
            vip_icmp_echo: self.vip_icmp_echo,
            ..LoadOptions::default()
        }
    }
}

/// The sizes the model mirrors for [`Setup::load_options`].
pub fn map_sizes() -> MapSizes {
    MapSizes {
        max_services: MAX_SERVICES,
        max_backends: MAX_BACKENDS,
        sched_table_entries: MAX_SERVICES * 2 * TABLE_SIZE,
    }
}

pub fn service_key(vip: [u8; 4], port: u16, proto: u8) -> ServiceKey {
    ServiceKey {
        vip: u32::from_ne_bytes(vip),
        port: port.to_be(),
        proto,
        _pad: 0,
    }
}

/// The flow key of a packet from `client:client_port` to `service`.
pub fn flow_key(service: &ServiceKey, client: [u8; 4], client_port: u16) -> FlowKey {
    FlowKey {
        src_ip: u32::from_ne_bytes(client),
        dst_ip: service.vip,
        src_port: client_port.to_be(),
        dst_port: service.port,
        proto: service.proto,
        _pad: [0; 3],
    }
}

/// MAC of backend `id`: unique, so an output frame names its backend.
pub fn backend_mac(id: u32) -> [u8; 6] {
    [0x02, 0, 0, 0, 0x10, id as u8]
}

/// Backend `id` serving on port 80 (`dsr-l2` ignores the port).
fn backend(id: u32, state: u8, remote: bool) -> (u32, Backend) {
    nat_backend(id, state, remote, 80)
}

/// Backend `id` serving on `port`, as a `nat` service sends to it.
fn nat_backend(id: u32, state: u8, remote: bool, port: u16) -> (u32, Backend) {
    let (ifindex, src_mac) = if remote {
        (REMOTE_IFINDEX, REMOTE_LB_MAC)
    } else {
        (TEST_RUN_INGRESS_IFINDEX, LB_MAC)
    };
    let backend = Backend {
        ip: u32::from_ne_bytes([10, 0, 1, id as u8 + 1]),
        ifindex,
        mac: backend_mac(id),
        src_mac,
        state,
        _pad: 0,
        port: port.to_be(),
    };
    (id, backend)
}

/// An (address, port, protocol) endpoint, address and port in network order.
pub fn endpoint(addr: u32, port: u16, proto: u8) -> Endpoint {
    Endpoint {
        addr,
        port,
        proto,
        _pad: 0,
    }
}

/// A Maglev table over `(id, weight)`.
fn maglev(backends: &[(u32, u32)]) -> Vec<u32> {
    let backends: Vec<MaglevBackend> = backends
        .iter()
        .map(|&(id, weight)| MaglevBackend {
            id,
            key: u64::from(id) + 1,
            weight,
        })
        .collect();
    build_table(&backends, TABLE_SIZE).expect("TABLE_SIZE is prime")
}

/// A round-robin ring over `(id, weight)`.
fn ring(backends: &[(u32, u32)]) -> Vec<u32> {
    round_robin_ring(backends, TABLE_SIZE as usize).expect("the ring fits a table half")
}

/// The clients of stale flows (TEST-NET-2, apart from the generators' pool).
fn stale_client(index: u8) -> [u8; 4] {
    [198, 51, 100, 200 + index]
}

fn prefix(octets: [u8; 4], len: u8) -> SourcePrefix {
    SourcePrefix::new(octets, len).expect("a prefix without host bits")
}

/// The source policies of [`mixed`], on the generators' clients
/// 198.51.100.1 ..= 24 and the stale ones from 198.51.100.200.
fn mixed_policies() -> Vec<Step> {
    vec![
        // TLS: clients 1..=7 and the stale clients of its flows.
        Step::AllowList(
            1,
            Some(vec![
                prefix([198, 51, 100, 0], 29),
                prefix([198, 51, 100, 200], 29),
            ]),
        ),
        // mDNS: clients 16..=24.
        Step::AllowList(3, Some(vec![prefix([198, 51, 100, 16], 28)])),
        // The ring with a down backend: every source, through a /0.
        Step::AllowList(6, Some(vec![prefix([0; 4], 0)])),
        // DNS: a bucket no round empties (the clock never decides).
        Step::RateLimit(2, RateLimit::new(1_000_000, u32::MAX)),
        // syslog: burst 0, no new flow at all, whatever the clock.
        Step::RateLimit(8, RateLimit::new(1, 0)),
        // web: every watched handshake overdue at the next SYN, two
        // failures in a row eject; TLS: only retransmitted SYNs fail.
        Step::Observe(0, Some(OBSERVE_EJECTING)),
        Step::Observe(1, Some(OBSERVE_RETRANSMITS)),
    ]
}

/// Passive health whose watched handshakes are all overdue at the next SYN
/// (timeout 0), ejecting after two failures.
const OBSERVE_EJECTING: Observe = Observe {
    error_limit: 2,
    handshake_timeout: 0,
};
/// Passive health whose watched handshakes never time out: only a
/// retransmitted SYN fails one.
const OBSERVE_RETRANSMITS: Observe = Observe {
    error_limit: 3,
    handshake_timeout: u32::MAX,
};

/// Service keys of the setups.
pub mod keys {
    use super::*;

    /// Maglev over four backends, one behind another interface.
    pub fn web() -> ServiceKey {
        service_key(VIP_A, 80, IPPROTO_TCP)
    }
    /// Weighted round-robin, one backend behind another interface.
    pub fn web_tls() -> ServiceKey {
        service_key(VIP_A, 443, IPPROTO_TCP)
    }
    /// UDP, Maglev.
    pub fn dns() -> ServiceKey {
        service_key(VIP_A, 53, IPPROTO_UDP)
    }
    /// UDP, round-robin.
    pub fn mdns() -> ServiceKey {
        service_key(VIP_B, 5353, IPPROTO_UDP)
    }
    /// No serving backend: an empty table.
    pub fn empty() -> ServiceKey {
        service_key(VIP_B, 8080, IPPROTO_TCP)
    }
    /// A Maglev table naming backends that do not serve or do not exist.
    pub fn inconsistent() -> ServiceKey {
        service_key(VIP_B, 9000, IPPROTO_TCP)
    }
    /// A round-robin ring naming a down backend.
    pub fn ring_with_down() -> ServiceKey {
        service_key(VIP_C, 80, IPPROTO_TCP)
    }
    /// UDP on the third VIP, one backend.
    pub fn syslog() -> ServiceKey {
        service_key(VIP_C, 514, IPPROTO_UDP)
    }
    /// Published, then removed.
    pub fn removed() -> ServiceKey {
        service_key(VIP_C, 8443, IPPROTO_TCP)
    }
    /// `nat`, Maglev, its backends on ports 8080, 8000 (the service's) and
    /// 9000, one behind the servers' interface.
    pub fn nat_web() -> ServiceKey {
        service_key(VIP_A, 8000, IPPROTO_TCP)
    }
    /// `nat` over UDP, round-robin, its backends on ports 5353 and 5000
    /// (the service's), one behind the servers' interface.
    pub fn nat_dns() -> ServiceKey {
        service_key(VIP_B, 5000, IPPROTO_UDP)
    }
}

/// A `nat` backend of [`mixed`].
#[derive(Clone, Copy)]
struct NatBackend {
    service: fn() -> ServiceKey,
    id: u32,
    /// Behind the servers' interface ([`REMOTE_IFINDEX`]).
    remote: bool,
    port: u16,
}

impl NatBackend {
    const fn new(service: fn() -> ServiceKey, id: u32, remote: bool, port: u16) -> Self {
        Self {
            service,
            id,
            remote,
            port,
        }
    }

    /// Its `BACKENDS` entry, up.
    fn up(self) -> (u32, Backend) {
        nat_backend(self.id, backend_state::UP, self.remote, self.port)
    }
}

/// The `nat` backends of [`mixed`].
const NAT_BACKENDS: [NatBackend; 5] = [
    NatBackend::new(keys::nat_web, 16, false, 8080),
    NatBackend::new(keys::nat_web, 17, false, 8000),
    NatBackend::new(keys::nat_web, 18, true, 9000),
    NatBackend::new(keys::nat_dns, 19, false, 5353),
    NatBackend::new(keys::nat_dns, 20, true, 5000),
];

/// The `nat` state of [`mixed`]: the servers' interface, the backends'
/// reverse entries, the clients learnt beforehand (one with the MAC its
/// new flows come from, one with an old MAC, one with no flow at all) and
/// the services' flag.
fn mixed_nat() -> Vec<Step> {
    let mut steps = vec![Step::LocalInterface(
        LocalInterface::SERVERS,
        REMOTE_LB_MAC,
        REMOTE_IFINDEX,
    )];
    for nat in NAT_BACKENDS {
        let (_, backend) = nat.up();
        let service = (nat.service)();
        steps.push(Step::NatReverse(
            endpoint(backend.ip, backend.port, service.proto),
            endpoint(service.vip, service.port, service.proto),
        ));
    }
    steps.extend([
        Step::NatClient(u32::from_ne_bytes([198, 51, 100, 5]), CLIENT_MAC),
        Step::NatClient(
            u32::from_ne_bytes([198, 51, 100, 3]),
            [0x02, 0, 0, 0, 1, 0x03],
        ),
        Step::NatClient(u32::from_ne_bytes(LEARNT_CLIENT), [0x02, 0, 0, 0, 1, 0x30]),
        Step::Nat(keys::nat_web()),
        Step::Nat(keys::nat_dns()),
    ]);
    steps
}

/// The source MAC of the generators' client frames.
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 1, 0x01];

/// Backends 0..=15: up, draining, down, of an unknown state, local or behind
/// [`REMOTE_IFINDEX`]; and the `nat` backends 16..=20, up.
fn mixed_backends() -> Vec<(u32, Backend)> {
    use backend_state::{DOWN, DRAINING, UP};
    let nat = NAT_BACKENDS.into_iter().map(NatBackend::up);
    let mut backends = vec![
        backend(0, UP, false),
        backend(1, UP, false),
        backend(2, UP, false),
        backend(3, UP, true),
        backend(4, UP, false),
        backend(5, UP, false),
        backend(6, UP, true),
        backend(7, UP, false),
        backend(8, UP, true),
        backend(9, UP, false),
        backend(10, UP, false),
        backend(11, DRAINING, false),
        backend(12, DOWN, false),
        backend(13, UNKNOWN_STATE, false),
        backend(14, UP, false),
        backend(15, UP, true),
    ];
    backends.extend(nat);
    backends
}

fn mixed_publications() -> Vec<ServiceSpec> {
    let inconsistent: Vec<u32> = (0..TABLE_SIZE)
        .map(|slot| [0, 11, 12, 13, BEYOND_BACKENDS][slot as usize % 5])
        .collect();
    vec![
        ServiceSpec {
            key: keys::web(),
            id: 0,
            scheduler: Scheduler::Maglev,
            slots: maglev(&[(0, 1), (1, 2), (2, 1), (3, 1)]),
        },
        ServiceSpec {
            key: keys::web_tls(),
            id: 1,
            scheduler: Scheduler::RoundRobin,
            slots: ring(&[(4, 3), (5, 1), (6, 2)]),
        },
        ServiceSpec {
            key: keys::dns(),
            id: 2,
            scheduler: Scheduler::Maglev,
            slots: maglev(&[(7, 1), (8, 1)]),
        },
        ServiceSpec {
            key: keys::mdns(),
            id: 3,
            scheduler: Scheduler::RoundRobin,
            slots: ring(&[(9, 1), (10, 1)]),
        },
        ServiceSpec {
            key: keys::empty(),
            id: 4,
            scheduler: Scheduler::Maglev,
            slots: Vec::new(),
        },
        ServiceSpec {
            key: keys::inconsistent(),
            id: 5,
            scheduler: Scheduler::Maglev,
            slots: inconsistent,
        },
        ServiceSpec {
            key: keys::ring_with_down(),
            id: 6,
            scheduler: Scheduler::RoundRobin,
            slots: vec![14, 12, 14, 15],
        },
        ServiceSpec {
            key: keys::removed(),
            id: 7,
            scheduler: Scheduler::Maglev,
            slots: maglev(&[(14, 1)]),
        },
        ServiceSpec {
            key: keys::syslog(),
            id: 8,
            scheduler: Scheduler::Maglev,
            slots: maglev(&[(15, 1)]),
        },
        nat_web(&[(16, 1), (17, 1), (18, 1)]),
        ServiceSpec {
            key: keys::nat_dns(),
            id: 10,
            scheduler: Scheduler::RoundRobin,
            slots: ring(&[(19, 1), (20, 2)]),
        },
    ]
}

/// The `nat` web service over `backends` (its `NAT` flag is a step of its own).
fn nat_web(backends: &[(u32, u32)]) -> ServiceSpec {
    ServiceSpec {
        key: keys::nat_web(),
        id: 9,
        scheduler: Scheduler::Maglev,
        slots: maglev(backends),
    }
}

/// The flow clock while a setup's packets run.
pub const FLOW_CLOCK_NOW: u32 = 1_000;

/// A stale flow's last-seen mark, by its client: closed (FIN or RST seen),
/// seen a while ago, or seen at this very tick (no write).
fn last_seen_of(client: u8) -> u32 {
    match client % 3 {
        0 => Flow::CLOSED,
        1 => FLOW_CLOCK_NOW - 5,
        _ => FLOW_CLOCK_NOW,
    }
}

/// Stale and live flow-table entries: on a draining, a down, an unknown-state
/// and a nonexistent backend, on the empty service, on a removed service,
/// and `nat` flows of clients never learnt (established, and on a down
/// backend).
fn mixed_flows() -> Vec<(FlowKey, Flow)> {
    let on = |service: ServiceKey, client: u8, backend_id: u32| {
        (
            flow_key(&service, stale_client(client), 40_000 + u16::from(client)),
            Flow {
                backend_id,
                last_seen: last_seen_of(client),
            },
        )
    };
    vec![
        on(keys::web(), 0, 11),
        on(keys::web(), 1, 12),
        on(keys::web(), 2, 13),
        on(keys::web(), 3, BEYOND_BACKENDS),
        on(keys::web(), 4, 2),
        on(keys::web_tls(), 5, 5),
        on(keys::web_tls(), 6, 12),
        on(keys::dns(), 7, 11),
        on(keys::empty(), 8, 11),
        on(keys::empty(), 9, 12),
        on(keys::inconsistent(), 10, 0),
        on(keys::removed(), 11, 14),
        on(keys::ring_with_down(), 12, 13),
        on(keys::nat_web(), 13, 16),
        on(keys::nat_web(), 14, 12),
        on(keys::nat_dns(), 15, 19),
    ]
}

/// Eleven services on three VIPs (one removed again, two of them `nat`),
/// stale flows, fresh cursors.
fn mixed() -> Setup {
    let mut steps: Vec<Step> = mixed_backends()
        .into_iter()
        .map(|(id, backend)| Step::Backend(id, backend))
        .collect();
    steps.extend(mixed_publications().into_iter().map(Step::Publish));
    steps.push(Step::Remove(keys::removed()));
    steps.extend(
        mixed_flows()
            .into_iter()
            .map(|(key, flow)| Step::Flow(key, flow)),
    );
    steps.extend(mixed_policies());
    steps.extend(mixed_nat());
    let midway = vec![
        // Backend 0 fails and leaves the web table; backend 4 is drained out
        // of the TLS ring; backend 9 fails before its ring is rebuilt.
        Step::Backend(0, backend(0, backend_state::DOWN, false).1),
        Step::Publish(ServiceSpec {
            key: keys::web(),
            id: 0,
            scheduler: Scheduler::Maglev,
            slots: maglev(&[(1, 2), (2, 1), (3, 1)]),
        }),
        Step::Backend(4, backend(4, backend_state::DRAINING, false).1),
        Step::Publish(ServiceSpec {
            key: keys::web_tls(),
            id: 1,
            scheduler: Scheduler::RoundRobin,
            slots: ring(&[(5, 1), (6, 2)]),
        }),
        Step::Backend(9, backend(9, backend_state::DOWN, false).1),
        // mDNS's list moves to clients 1..=15; TLS takes every source again.
        Step::AllowList(3, Some(vec![prefix([198, 51, 100, 0], 28)])),
        Step::AllowList(1, None),
        // TLS stops watching handshakes (its pending ones stay pending).
        Step::Observe(1, None),
    ];
    Setup {
        name: "mixed",
        vip_icmp_echo: VipIcmpEcho::Pass,
        steps,
        midway,
    }
}

/// [`mixed`] after a round of changes: backends 1 down and 2 draining with
/// the web table rebuilt without them (in its other half), the TLS ring
/// reweighted, the ring with a down backend removed, DNS scheduled by
/// client address (`source`), flows left on the
/// backends that changed, and cursors beyond the end of their rings; `nat`
/// backend 17 draining out of its table, and the main interface elsewhere
/// (the replies redirected to it); its data path drops ICMP echo requests
/// to the VIPs.
fn republished() -> Setup {
    let mut setup = mixed();
    setup.name = "republished";
    setup.vip_icmp_echo = VipIcmpEcho::Drop;
    setup.steps.extend([
        Step::Backend(1, backend(1, backend_state::DOWN, false).1),
        Step::Backend(2, backend(2, backend_state::DRAINING, false).1),
        Step::Publish(ServiceSpec {
            key: keys::web(),
            id: 0,
            scheduler: Scheduler::Maglev,
            slots: maglev(&[(0, 1), (3, 2)]),
        }),
        Step::Publish(ServiceSpec {
            key: keys::web_tls(),
            id: 1,
            scheduler: Scheduler::RoundRobin,
            slots: ring(&[(4, 1), (6, 1)]),
        }),
        Step::Remove(keys::ring_with_down()),
        // DNS keeps its backends, scheduled by client address instead.
        Step::Publish(ServiceSpec {
            key: keys::dns(),
            id: 2,
            scheduler: Scheduler::Source,
            slots: maglev(&[(7, 1), (8, 1)]),
        }),
        Step::Flow(
            flow_key(&keys::web(), stale_client(20), 41_000),
            Flow {
                backend_id: 1,
                last_seen: last_seen_of(20),
            },
        ),
        Step::Flow(
            flow_key(&keys::web(), stale_client(21), 41_001),
            Flow {
                backend_id: 2,
                last_seen: last_seen_of(21),
            },
        ),
        Step::Cursor(1, 5),
        Step::Cursor(3, 1000),
        Step::Backend(17, nat_backend(17, backend_state::DRAINING, false, 8000).1),
        Step::Publish(nat_web(&[(16, 1), (18, 1)])),
        Step::Nat(keys::nat_web()),
        Step::LocalInterface(LocalInterface::MAIN, LB_MAC, MAIN_ELSEWHERE_IFINDEX),
    ]);
    setup.midway = vec![
        // Backend 1 recovers and rejoins; draining backend 2 fails, so its
        // flows move; the DNS service is removed while its flows remain.
        Step::Backend(1, backend(1, backend_state::UP, false).1),
        Step::Backend(2, backend(2, backend_state::DOWN, false).1),
        Step::Publish(ServiceSpec {
            key: keys::web(),
            id: 0,
            scheduler: Scheduler::Maglev,
            slots: maglev(&[(0, 1), (1, 1), (3, 2)]),
        }),
        Step::Remove(keys::dns()),
        // A flood: this CPU's insert window is full for good, so new flows
        // are forwarded without an entry. syslog lets client 1 in, whose new
        // flows its empty bucket still drops.
        Step::HoldInsertWindowsFull,
        Step::AllowList(8, Some(vec![prefix([198, 51, 100, 1], 32)])),
        // `nat` backend 16 fails, so its flows move (and their clients are
        // learnt again); the servers' interface goes out of use, so nothing
        // is a reply any more, nor from the servers' side.
        Step::Backend(16, nat_backend(16, backend_state::DOWN, false, 8080).1),
        Step::Publish(nat_web(&[(18, 1)])),
        Step::Nat(keys::nat_web()),
        Step::LocalInterface(LocalInterface::SERVERS, REMOTE_LB_MAC, 0),
    ];
    setup
}

impl Setup {
    /// The services live after the initial steps.
    pub fn services(&self) -> Vec<ServiceSpec> {
        let mut live: Vec<ServiceSpec> = Vec::new();
        for step in &self.steps {
            match step {
                Step::Publish(spec) => {
                    live.retain(|other| other.key != spec.key);
                    live.push(spec.clone());
                }
                Step::Remove(key) => live.retain(|other| other.key != *key),
                _ => {}
            }
        }
        live
    }

    /// Every step, the midway changes last.
    fn all_steps(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().chain(&self.midway)
    }

    /// Every service key published at some step (midway included).
    pub fn published(&self) -> Vec<ServiceKey> {
        let mut keys: Vec<ServiceKey> = Vec::new();
        for step in self.all_steps() {
            if let Step::Publish(spec) = step {
                if !keys.contains(&spec.key) {
                    keys.push(spec.key);
                }
            }
        }
        keys
    }

    /// Every service key removed at some step (midway included).
    pub fn removed_services(&self) -> Vec<ServiceKey> {
        let mut keys: Vec<ServiceKey> = Vec::new();
        for step in self.all_steps() {
            if let Step::Remove(key) = step {
                if !keys.contains(key) {
                    keys.push(*key);
                }
            }
        }
        keys
    }

    /// Every (service key, prefix) of the allow-lists the setup sets
    /// (midway included), the key being the one published under the id.
    pub fn allow_listed(&self) -> Vec<(ServiceKey, SourcePrefix)> {
        let keys: Vec<(u32, ServiceKey)> = self
            .all_steps()
            .filter_map(|step| match step {
                Step::Publish(spec) => Some((spec.id, spec.key)),
                _ => None,
            })
            .collect();
        let mut listed = Vec::new();
        for step in self.all_steps() {
            if let Step::AllowList(id, Some(prefixes)) = step {
                for (_, key) in keys.iter().filter(|(owner, _)| owner == id) {
                    listed.extend(prefixes.iter().map(|prefix| (*key, *prefix)));
                }
            }
        }
        listed
    }

    /// The flow-table entries the setup writes (midway included).
    pub fn flows(&self) -> Vec<(FlowKey, Flow)> {
        self.all_steps()
            .filter_map(|step| match step {
                Step::Flow(key, flow) => Some((*key, *flow)),
                _ => None,
            })
            .collect()
    }

    /// Every `NAT_REVERSE` entry the setup writes: (backend endpoint,
    /// service endpoint).
    pub fn nat_reverse(&self) -> Vec<(Endpoint, Endpoint)> {
        self.all_steps()
            .filter_map(|step| match step {
                Step::NatReverse(backend, service) => Some((*backend, *service)),
                _ => None,
            })
            .collect()
    }

    /// The addresses of the clients the setup writes into `NAT_CLIENTS`.
    pub fn nat_clients(&self) -> Vec<u32> {
        self.all_steps()
            .filter_map(|step| match step {
                Step::NatClient(addr, _) => Some(*addr),
                _ => None,
            })
            .collect()
    }

    /// Runs the initial steps against a freshly loaded `dataplane`.
    pub fn program(&self, dataplane: &mut Dataplane, kernel: &mut KernelMaps) -> Result<()> {
        dataplane.set_local_interface(LocalInterface::MAIN, LB_MAC, TEST_RUN_INGRESS_IFINDEX)?;
        kernel.set_flow_clock(FLOW_CLOCK_NOW)?;
        run_steps(&self.steps, dataplane, kernel)
    }

    /// Runs the midway changes.
    pub fn change_midway(&self, dataplane: &mut Dataplane, kernel: &mut KernelMaps) -> Result<()> {
        run_steps(&self.midway, dataplane, kernel)
    }

    /// Checks that `contents` (read back from the kernel) holds what the
    /// steps meant: every live service with its id, scheduler and table, no
    /// removed one, and the flows written.
    pub fn check_programmed(&self, contents: &MapContents) -> Result<()> {
        for spec in self.services() {
            let service = contents.service(&spec.key).with_context(|| {
                format!("{}: service {:?} is not in SERVICES", self.name, spec.key)
            })?;
            ensure!(
                service.id == spec.id && service.scheduler == spec.scheduler as u8,
                "{}: service {:?} is {service:?}",
                self.name,
                spec.key
            );
            let table: Vec<Option<u32>> = (0..service.table_len)
                .map(|slot| contents.table_slot(service.table_base + slot))
                .collect();
            let expected: Vec<Option<u32>> = spec.slots.iter().copied().map(Some).collect();
            ensure!(
                table == expected,
                "{}: the live table of service {} differs from the one published",
                self.name,
                spec.id
            );
        }
        let live = self.services();
        let removed = self
            .removed_services()
            .into_iter()
            .filter(|key| !live.iter().any(|spec| spec.key == *key));
        for key in removed {
            ensure!(
                contents.service(&key).is_none(),
                "{}: removed service {key:?} is still in SERVICES",
                self.name
            );
        }
        let initial_flows = self.steps.iter().filter_map(|step| match step {
            Step::Flow(key, flow) => Some((*key, *flow)),
            _ => None,
        });
        for (key, flow) in initial_flows {
            ensure!(
                contents.flow(&key) == Some(flow),
                "{}: flow {key:?} was not written",
                self.name
            );
        }
        self.check_nat(contents)?;
        self.check_policies(contents)
    }

    /// Checks the local interfaces and the NAT maps of the initial steps
    /// in `contents`.
    fn check_nat(&self, contents: &MapContents) -> Result<()> {
        let mut interfaces = [(LB_MAC, TEST_RUN_INGRESS_IFINDEX), ([0; 6], 0)];
        for step in &self.steps {
            match *step {
                Step::LocalInterface(slot, mac, ifindex) => {
                    interfaces[slot as usize] = (mac, ifindex);
                }
                Step::NatReverse(backend, service) => ensure!(
                    contents.nat_reverse(&backend) == Some(service),
                    "{}: NAT_REVERSE has no {backend:?}",
                    self.name
                ),
                Step::NatClient(addr, mac) => ensure!(
                    contents.nat_client(addr) == Some(NatClient { mac, _pad: [0; 2] }),
                    "{}: NAT_CLIENTS has no {addr:08x}",
                    self.name
                ),
                _ => {}
            }
        }
        for (slot, (mac, ifindex)) in (0..).zip(interfaces) {
            let held = contents.local_interface(slot);
            ensure!(
                held.map(|interface| (interface.mac, interface.ifindex)) == Some((mac, ifindex)),
                "{}: LOCAL_INTERFACE[{slot}] is {held:?}",
                self.name
            );
        }
        Ok(())
    }

    /// Checks the source policies of the initial steps in `contents`: each
    /// live service's flags, every rate limit and allow-list entry.
    fn check_policies(&self, contents: &MapContents) -> Result<()> {
        let mut limits: Vec<(u32, RateLimit)> = Vec::new();
        let mut lists: Vec<(u32, Option<Vec<SourcePrefix>>)> = Vec::new();
        for step in &self.steps {
            match step {
                Step::RateLimit(id, limit) => {
                    limits.retain(|(other, _)| other != id);
                    limits.push((*id, *limit));
                }
                Step::AllowList(id, list) => {
                    lists.retain(|(other, _)| other != id);
                    lists.push((*id, list.clone()));
                }
                _ => {}
            }
        }
        let mut observed: Vec<(u32, Option<Observe>)> = Vec::new();
        for step in &self.steps {
            if let Step::Observe(id, observe) = step {
                observed.retain(|(other, _)| other != id);
                observed.push((*id, *observe));
            }
        }
        // A publication drops the `NAT` flag, a `Nat` step after it sets it.
        let mut nat: Vec<ServiceKey> = Vec::new();
        for step in &self.steps {
            match step {
                Step::Publish(spec) => nat.retain(|key| *key != spec.key),
                Step::Nat(key) => nat.push(*key),
                _ => {}
            }
        }
        for spec in self.services() {
            let observe = observed
                .iter()
                .find(|(id, _)| *id == spec.id)
                .and_then(|(_, observe)| *observe);
            let service = contents.service(&spec.key);
            ensure!(
                service.map(|s| (s.error_limit, s.handshake_timeout))
                    == Some(observe.map_or((0, 0), |o| (o.error_limit, o.handshake_timeout))),
                "{}: service {} has passive health {service:?}, not {observe:?}",
                self.name,
                spec.id
            );
            let limited = limits
                .iter()
                .any(|(id, limit)| *id == spec.id && limit.refill_interval_ns != 0);
            let listed = lists
                .iter()
                .any(|(id, list)| *id == spec.id && list.is_some());
            let mut expected = 0;
            if limited {
                expected |= service_flags::RATE_LIMIT;
            }
            if listed {
                expected |= service_flags::ALLOW_LIST;
            }
            if observe.is_some() {
                expected |= service_flags::OBSERVE;
            }
            if nat.contains(&spec.key) {
                expected |= service_flags::NAT;
            }
            let flags = contents.service(&spec.key).map(|service| service.flags);
            ensure!(
                flags == Some(expected),
                "{}: service {} has flags {flags:?}, not {expected}",
                self.name,
                spec.id
            );
        }
        for (id, limit) in limits {
            ensure!(
                contents.rate_limit(id) == Some(limit),
                "{}: the rate limit of service {id} was not written",
                self.name
            );
        }
        let mut expected: Vec<(u32, lb_common::maps::AllowedSource)> = lists
            .iter()
            .flat_map(|(id, list)| {
                list.iter()
                    .flatten()
                    .map(move |prefix| prefix.allow_key(*id))
            })
            .collect();
        let mut held: Vec<_> = contents.allowed().collect();
        let order = |(len, data): &(u32, lb_common::maps::AllowedSource)| {
            (*len, data.service_id, data.src_ip)
        };
        expected.sort_by_key(order);
        held.sort_by_key(order);
        ensure!(
            held == expected,
            "{}: ALLOW_LISTS holds {held:?}, not {expected:?}",
            self.name
        );
        Ok(())
    }
}

fn run_steps(steps: &[Step], dataplane: &mut Dataplane, kernel: &mut KernelMaps) -> Result<()> {
    for step in steps {
        match step {
            Step::Backend(id, backend) => dataplane.set_backend(*id, backend)?,
            Step::Publish(spec) => {
                dataplane.set_service(spec.key, spec.id, spec.scheduler, &spec.slots)?;
            }
            Step::Remove(key) => dataplane.remove_service(key)?,
            Step::Flow(key, flow) => kernel.insert_flow(*key, *flow)?,
            Step::Cursor(service_id, next) => kernel.set_rr_cursor(*service_id, *next)?,
            Step::RateLimit(id, limit) => dataplane.set_rate_limit(*id, *limit)?,
            Step::AllowList(id, list) => dataplane.set_allow_list(*id, list.as_deref())?,
            Step::HoldInsertWindowsFull => kernel.hold_insert_windows_full()?,
            Step::Observe(id, observe) => dataplane.set_observe(*id, *observe)?,
            Step::LocalInterface(slot, mac, ifindex) => {
                dataplane.set_local_interface(*slot, *mac, *ifindex)?;
            }
            Step::Nat(key) => kernel.set_service_flag(key, service_flags::NAT)?,
            Step::NatReverse(backend, service) => kernel.set_nat_reverse(*backend, *service)?,
            Step::NatClient(addr, mac) => kernel.set_nat_client(
                *addr,
                NatClient {
                    mac: *mac,
                    _pad: [0; 2],
                },
            )?,
        }
    }
    Ok(())
}
