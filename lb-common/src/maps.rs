//! The BPF map contract: map names, key and value layouts, counter indexes.
//!
//! Every struct is `#[repr(C)]` with explicit padding so the kernel, the eBPF
//! program and userspace agree byte for byte. Addresses and ports are kept in
//! **network byte order** exactly as they appear in the packet, so the data path
//! never converts; userspace converts when it writes keys.

/// Map names, as declared in `lb-ebpf` and looked up by the controller.
pub mod names {
    /// `HashMap<ServiceKey, Service>`: the virtual services.
    pub const SERVICES: &str = "SERVICES";
    /// `HashMap<u32 /* VIP, network order */, u32 /* number of services */>`:
    /// lets the data path recognise malformed packets and fragments sent to a VIP.
    pub const VIPS: &str = "VIPS";
    /// `Array<Backend>` indexed by backend id.
    pub const BACKENDS: &str = "BACKENDS";
    /// `Array<u32>` of backend ids: each service's Maglev table or round-robin
    /// ring, two halves per service (see [`super::Service::table_base`]).
    pub const SCHED_TABLE: &str = "SCHED_TABLE";
    /// `PerCpuArray<u32>` indexed by service id: the round-robin cursor.
    pub const RR_CURSOR: &str = "RR_CURSOR";
    /// `LruHashMap<FlowKey, Flow>`: established flows and their backend.
    pub const FLOWS: &str = "FLOWS";
    /// `PerCpuArray<Counters>` indexed by service id.
    pub const SERVICE_STATS: &str = "SERVICE_STATS";
    /// `PerCpuArray<Counters>` indexed by backend id.
    pub const BACKEND_STATS: &str = "BACKEND_STATS";
    /// `PerCpuArray<u64>` indexed by XDP action (`XDP_ABORTED`=0 .. `XDP_REDIRECT`=4).
    pub const ACTION_STATS: &str = "ACTION_STATS";
    /// `PerCpuArray<u64>` indexed by [`super::Reason`].
    pub const REASON_STATS: &str = "REASON_STATS";
    /// `Array<LocalInterface>` of two entries: the interfaces `lb_xdp` is
    /// attached to ([`super::LocalInterface::MAIN`] and
    /// [`super::LocalInterface::SERVERS`]); frames for another MAC are
    /// passed untouched.
    pub const LOCAL_INTERFACE: &str = "LOCAL_INTERFACE";
    // flood protection
    /// `Array<RateLimit>` indexed by service id: each service's per-source
    /// new-flow rate limit (all zero: none).
    pub const RATE_LIMITS: &str = "RATE_LIMITS";
    /// `LruHashMap<SourceKey, TokenBucket>`: the token bucket of each
    /// (service, source address) that opened a flow recently.
    pub const SOURCE_BUCKETS: &str = "SOURCE_BUCKETS";
    /// `LpmTrie<AllowedSource, u8>`: the source allow-lists of the services
    /// that have one (see [`super::SourcePrefix::allow_key`]).
    pub const ALLOW_LISTS: &str = "ALLOW_LISTS";
    /// `Array<Settings>` of one entry: the data path's global settings.
    pub const SETTINGS: &str = "SETTINGS";
    /// `PerCpuArray<InsertWindow>` of one entry: this CPU's flow-table
    /// inserts in the current one-second window.
    pub const INSERT_WINDOW: &str = "INSERT_WINDOW";
    /// `Array<u32>` of one entry: the controller's coarse clock, in seconds,
    /// that a flow's entry takes as its last-seen mark ([`super::Flow`]).
    pub const FLOW_CLOCK: &str = "FLOW_CLOCK";
    // passive health
    /// `Array<HandshakeWatch>` indexed by backend id, shared by every CPU:
    /// the handshakes watched and the failures in a row
    /// ([`crate::handshake`]).
    pub const HANDSHAKES: &str = "HANDSHAKES";
    /// `PerCpuArray<HandshakeCounters>` indexed by backend id.
    pub const HANDSHAKE_STATS: &str = "HANDSHAKE_STATS";
    // NAT
    /// `HashMap<Endpoint, Endpoint>`: each `nat` backend's address, port and
    /// protocol → its service's VIP, port and protocol, which its replies
    /// leave with. Stateless: any node of the pair translates any reply.
    pub const NAT_REVERSE: &str = "NAT_REVERSE";
    /// `LruHashMap<u32 /* client address, network order */, NatClient>`:
    /// the MAC each client of a `nat` service sent its new flows from, the
    /// next hop its translated replies go to.
    pub const NAT_CLIENTS: &str = "NAT_CLIENTS";
}

/// Program names inside the eBPF object.
pub mod programs {
    /// The load balancer.
    pub const LB: &str = "lb_xdp";
    /// `lb_xdp`'s guard at tc ingress of the same interface: drops service
    /// traffic that reaches the kernel without `lb_xdp` (reason
    /// `bypassed_xdp`).
    pub const GUARD: &str = "lb_guard";
    /// Returns `XDP_PASS`: the benchmark floor, and what the lab attaches to the
    /// switch-side peer of an LB veth so that `XDP_TX` frames are accepted.
    pub const PASS: &str = "xdp_pass";
    /// Parses Ethernet/IPv4/TCP with bounds checks, swaps MACs, `XDP_TX`: the
    /// benchmark's "minimal useful work" floor.
    pub const MAC_SWAP: &str = "xdp_mac_swap";
}

/// Default sizes; all can be changed at load time.
pub mod defaults {
    /// Maglev table size M (prime).
    pub const MAGLEV_TABLE_SIZE: u32 = 65537;
    pub const MAX_SERVICES: u32 = 64;
    pub const MAX_BACKENDS: u32 = 1024;
    pub const FLOW_TABLE_SIZE: u32 = 65536;
    /// Entries of [`super::names::SOURCE_BUCKETS`].
    pub const RATE_LIMIT_TABLE_SIZE: u32 = 65536;
    /// Entries of [`super::names::ALLOW_LISTS`]: the prefixes of every
    /// service's allow-list together.
    pub const ALLOW_TABLE_SIZE: u32 = 65536;
}

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// Key of [`names::SERVICES`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ServiceKey {
    /// Virtual IP, network byte order.
    pub vip: u32,
    /// Port, network byte order.
    pub port: u16,
    /// `IPPROTO_TCP` or `IPPROTO_UDP`.
    pub proto: u8,
    pub _pad: u8,
}

/// How a service picks a backend for a new flow.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheduler {
    /// `table[hash(5-tuple) % table_len]`.
    Maglev = 0,
    /// Per-CPU cursor over a weight-expanded ring.
    RoundRobin = 1,
    /// `table[source_hash(client address) % table_len]`: the Maglev table,
    /// by client (HAProxy's `balance source`, IPVS's `sh`).
    Source = 2,
}

/// Value of [`names::SERVICES`].
///
/// The controller publishes a new table by writing the *inactive* half of
/// [`names::SCHED_TABLE`] and then replacing this whole value (new
/// `table_base`/`table_len`) in one map update, so the data path never reads a
/// half-written table.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Service {
    /// Index into the per-service stats and the round-robin cursor.
    pub id: u32,
    /// Index in [`names::SCHED_TABLE`] of slot 0 of the active half.
    pub table_base: u32,
    /// Number of valid slots in the active half; 0 means "no serving backend".
    pub table_len: u32,
    /// [`Scheduler`] as `u8`.
    pub scheduler: u8,
    /// Which half (0 or 1) is active; informative, `table_base` already encodes it.
    pub table_half: u8,
    /// [`service_flags`]: the source policies and passive health the data
    /// path applies.
    pub flags: u8,
    /// With [`service_flags::OBSERVE`]: failed handshakes in a row (from two
    /// clients at least) that eject a backend ([`crate::handshake`]).
    pub error_limit: u8,
    /// With [`service_flags::OBSERVE`]: how long a handshake may take to
    /// complete, in ticks of [`crate::handshake::clock`].
    pub handshake_timeout: u32,
}

/// Bits of [`Service::flags`]: which per-service source policies apply. A
/// service without them pays one bit test per packet, never a lookup of the
/// policy maps.
pub mod service_flags {
    /// Sources are limited in new flows per second: [`super::names::RATE_LIMITS`]
    /// holds the service's limit.
    pub const RATE_LIMIT: u8 = 1 << 0;
    /// Only sources in the service's allow-list get through (the others are
    /// dropped, `not_allowed`): [`super::names::ALLOW_LISTS`] holds it.
    pub const ALLOW_LIST: u8 = 1 << 1;
    /// Passive health (`observe = "layer4"`): TCP handshakes are watched
    /// per backend, a retransmitted SYN of an incomplete handshake goes to
    /// the next backend, and an ejected backend gets no new flows
    /// ([`crate::handshake`]).
    pub const OBSERVE: u8 = 1 << 2;
    /// `forwarding = "nat"`: the destination address and port are rewritten
    /// to the backend's (and its replies back, [`super::names::NAT_REVERSE`]);
    /// packets from the servers' side are dropped (`nat_hairpin`).
    pub const NAT: u8 = 1 << 3;
}

/// Backend states as seen by the data path.
pub mod backend_state {
    /// Not in use or down: established flows are moved to a serving backend.
    pub const DOWN: u8 = 0;
    /// Serving: in the table, takes new flows.
    pub const UP: u8 = 1;
    /// Admin drain: not in the table, but established flows stay on it.
    pub const DRAINING: u8 = 2;
}

/// Value of [`names::BACKENDS`]. One entry per (service, backend) membership, so
/// the same server in two services has two ids, two states and two counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Backend {
    /// Backend address, network byte order.
    pub ip: u32,
    /// Interface the backend is reached through; `XDP_TX` when it is the
    /// ingress interface, `bpf_redirect` otherwise.
    pub ifindex: u32,
    /// Backend MAC (destination of forwarded frames).
    pub mac: [u8; 6],
    /// MAC of `ifindex` (source of forwarded frames).
    pub src_mac: [u8; 6],
    /// One of [`backend_state`].
    pub state: u8,
    pub _pad: u8,
    /// The port the backend serves the service on, network byte order:
    /// where a `nat` service sends its packets (the service's port unless
    /// the backend sets its own); unused by `dsr-l2`.
    pub port: u16,
}

/// Key of [`names::FLOWS`]: the 5-tuple as it appears in the packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    pub src_ip: u32,
    pub dst_ip: u32,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
    pub _pad: [u8; 3],
}

/// Value of [`names::FLOWS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Flow {
    pub backend_id: u32,
    /// When a packet of the flow was last seen, in [`names::FLOW_CLOCK`]
    /// seconds, or [`Flow::CLOSED`] once the client sent a FIN or RST: what
    /// tells an active flow (`lb status`, `drain --wait`) from an idle or
    /// finished one. Written at most once per clock tick per flow. Its top
    /// bit is [`Flow::HANDSHAKE_PENDING`].
    pub last_seen: u32,
}

impl Flow {
    /// `last_seen` of a flow whose client sent a FIN or a RST: it stays so
    /// until a SYN opens the 5-tuple again. The flow clock never reads 0.
    pub const CLOSED: u32 = 0;
    /// Bit of `last_seen` of a flow opened by a SYN to a service with
    /// passive health whose completing ACK has not arrived yet (the flow
    /// clock, in seconds since boot, never reaches it).
    pub const HANDSHAKE_PENDING: u32 = 1 << 31;

    /// The `last_seen` mark of a new entry opened by a SYN at flow clock
    /// `now`, its handshake watched.
    #[inline(always)]
    pub const fn opened(now: u32) -> u32 {
        now | Self::HANDSHAKE_PENDING
    }

    /// Whether the flow's handshake is pending (see [`Flow::HANDSHAKE_PENDING`]).
    #[inline(always)]
    pub const fn handshake_pending(&self) -> bool {
        self.last_seen & Self::HANDSHAKE_PENDING != 0
    }

    /// The `last_seen` mark after a packet with TCP flags `tcp_flags` (0 for
    /// UDP) at flow clock `now`, on an entry marked `previous` (`None`: a
    /// new entry).
    ///
    /// A pending handshake stays pending until a packet with ACK and
    /// without SYN completes it (or a FIN or RST closes the flow).
    #[inline(always)]
    pub const fn seen(previous: Option<u32>, now: u32, tcp_flags: u8) -> u32 {
        if tcp_flags & (tcp_flags::FIN | tcp_flags::RST) != 0 {
            return Self::CLOSED;
        }
        match previous {
            Some(Self::CLOSED) if tcp_flags & tcp_flags::SYN == 0 => Self::CLOSED,
            Some(previous) if tcp_flags & (tcp_flags::ACK | tcp_flags::SYN) != tcp_flags::ACK => {
                now | (previous & Self::HANDSHAKE_PENDING)
            }
            _ => now,
        }
    }

    /// Whether the flow counts as active at flow clock `now`: not closed,
    /// and seen within `idle_timeout` seconds.
    pub const fn is_active(&self, now: u32, idle_timeout: u32) -> bool {
        let last_seen = self.last_seen & !Self::HANDSHAKE_PENDING;
        last_seen != Self::CLOSED && now.wrapping_sub(last_seen) < idle_timeout
    }
}

/// TCP header flags, as in the header's 14th byte.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}

/// Value of [`names::LOCAL_INTERFACE`]: an interface the program serves.
/// Aligned to 4 (as every map value is, at least), so the data path reads
/// the MAC as two words rather than six bytes. An entry whose `ifindex` is 0
/// is unused.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LocalInterface {
    /// Its Ethernet address: service traffic is addressed to it.
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
    pub ifindex: u32,
}

impl LocalInterface {
    /// The entry of `global.interface`, where the VIPs are.
    pub const MAIN: u32 = 0;
    /// The entry of `global.server_interface`, the servers' side: the
    /// replies of `nat` backends come in there.
    pub const SERVERS: u32 = 1;
    /// Entries of [`names::LOCAL_INTERFACE`].
    pub const COUNT: u32 = 2;

    /// Whether the entry names an interface.
    pub const fn is_used(&self) -> bool {
        self.ifindex != 0
    }
}

/// Key and value of [`names::NAT_REVERSE`]: an address, a port (both
/// network byte order) and a protocol.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Endpoint {
    pub addr: u32,
    pub port: u16,
    /// `IPPROTO_TCP` or `IPPROTO_UDP`.
    pub proto: u8,
    pub _pad: u8,
}

/// Value of [`names::NAT_CLIENTS`].
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NatClient {
    /// The source MAC of the client's last new flow: the client itself, or
    /// the router it is behind.
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// Per-service and per-backend counters (per CPU; userspace sums them).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
}

/// Why the data path passed or dropped a packet (index of [`names::REASON_STATS`]).
///
/// Packets we cannot attribute to a service go to the kernel untouched
/// (`XDP_PASS`); malformed packets and fragments addressed to a VIP are dropped.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Pass: not IPv4 (ARP, IPv6, ...).
    NotIpv4 = 0,
    /// Pass: IPv4 to an address that is no VIP.
    NotService = 1,
    /// Pass: frame shorter than an Ethernet header.
    ShortEthernet = 2,
    /// Pass: frame too short to hold an IPv4 header, so no destination to match.
    ShortIpv4 = 3,
    /// Drop: IPv4 to a VIP with IHL < 5.
    BadIhl = 4,
    /// Drop: IPv4 to a VIP whose total length is below its header length or
    /// beyond the frame.
    BadTotalLength = 5,
    /// Drop: a fragment (first or later) addressed to a VIP.
    Fragment = 6,
    /// Drop: TCP/UDP header truncated, addressed to a VIP.
    ShortL4 = 7,
    /// Pass: the service has no serving backend; the kernel answers (RST for
    /// TCP on the VIP holder, ICMP unreachable for UDP), so clients fail fast.
    NoBackend = 8,
    /// Drop: the chosen backend id has no usable entry (controller bug guard).
    BadBackend = 9,
    // Edge filtering (lb-ebpf/src/edge.rs).
    /// Pass: a unicast frame for another MAC than the ingress interface's
    /// (flooded by a switch): never forwarded.
    NotForUs = 10,
    /// Pass: a broadcast or multicast frame (ARP, VRRP, ...): never service
    /// traffic.
    LinkMulticast = 11,
    /// Drop: TCP or UDP to a VIP on a port with no service (edge firewall).
    VipOtherPort = 12,
    /// Drop: IPv4 to a VIP with a protocol other than TCP, UDP or ICMP.
    VipOtherProtocol = 13,
    /// Pass: ICMP to a VIP; the kernel answers echo requests if it holds the
    /// VIP (unless `vip_icmp_echo = "drop"`: then [`Reason::VipIcmpEcho`]).
    VipIcmp = 14,
    // flood protection
    /// Drop: a new flow beyond its source's token bucket
    /// (`new_flows_per_second_per_source`).
    RateLimited = 15,
    /// Forwarded, not dropped: a new flow sent to its backend without a
    /// flow-table entry, because this CPU's inserts this second reached
    /// `flow_insert_limit_per_cpu`.
    InsertSkipped = 16,
    /// Drop: a packet to a service with an allow-list (`allow`) from a
    /// source outside it.
    NotAllowed = 17,
    /// Drop: an ICMP echo request to a VIP, with `vip_icmp_echo = "drop"`.
    VipIcmpEcho = 18,
    /// Drop, by `lb_guard` at tc ingress: TCP or UDP to a VIP (other than to
    /// a service with no serving backend) that reached the kernel, so
    /// `lb_xdp` did not run: dropped rather than answered with a reset by
    /// this node's kernel; the client's retransmission reaches the node that
    /// takes over.
    BypassedXdp = 19,
    // NAT
    /// Drop: a packet to a `nat` service that came in from the servers'
    /// side (`server_interface`): its backend's reply would go straight
    /// back to the sender, not through the LB (the hairpin case).
    NatHairpin = 20,
    /// Pass: from a `nat` backend's service port to an address that opened
    /// no flow through this node (this node's own health probes, or a
    /// client not seen since a failover): handed to the kernel untranslated.
    NatNoClient = 21,
}

impl Reason {
    pub const COUNT: u32 = 22;
    /// All reasons, in index order.
    pub const ALL: [Reason; Self::COUNT as usize] = [
        Reason::NotIpv4,
        Reason::NotService,
        Reason::ShortEthernet,
        Reason::ShortIpv4,
        Reason::BadIhl,
        Reason::BadTotalLength,
        Reason::Fragment,
        Reason::ShortL4,
        Reason::NoBackend,
        Reason::BadBackend,
        Reason::NotForUs,
        Reason::LinkMulticast,
        Reason::VipOtherPort,
        Reason::VipOtherProtocol,
        Reason::VipIcmp,
        // flood protection
        Reason::RateLimited,
        Reason::InsertSkipped,
        Reason::NotAllowed,
        Reason::VipIcmpEcho,
        Reason::BypassedXdp,
        // NAT
        Reason::NatHairpin,
        Reason::NatNoClient,
    ];

    /// Stable snake_case name used in logs and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Reason::NotIpv4 => "not_ipv4",
            Reason::NotService => "not_service",
            Reason::ShortEthernet => "short_ethernet",
            Reason::ShortIpv4 => "short_ipv4",
            Reason::BadIhl => "bad_ihl",
            Reason::BadTotalLength => "bad_total_length",
            Reason::Fragment => "fragment",
            Reason::ShortL4 => "short_l4",
            Reason::NoBackend => "no_backend",
            Reason::BadBackend => "bad_backend",
            Reason::NotForUs => "not_for_us",
            Reason::LinkMulticast => "link_multicast",
            Reason::VipOtherPort => "vip_other_port",
            Reason::VipOtherProtocol => "vip_other_protocol",
            Reason::VipIcmp => "vip_icmp",
            // flood protection
            Reason::RateLimited => "rate_limited",
            Reason::InsertSkipped => "insert_skipped",
            Reason::NotAllowed => "not_allowed",
            Reason::VipIcmpEcho => "vip_icmp_echo",
            Reason::BypassedXdp => "bypassed_xdp",
            // NAT
            Reason::NatHairpin => "nat_hairpin",
            Reason::NatNoClient => "nat_no_client",
        }
    }
}

/// Data of a key of [`names::ALLOW_LISTS`] (an LPM trie, whose keys are a
/// prefix length and these 8 bytes): the service id, which an entry always
/// matches whole, then the source address.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct AllowedSource {
    pub service_id: u32,
    /// Network byte order.
    pub src_ip: u32,
}

impl AllowedSource {
    /// Bits of the key before the address: the service id.
    pub const SERVICE_ID_BITS: u32 = 32;
    /// The prefix length of the data path's lookup: every bit.
    pub const LOOKUP_PREFIX_LEN: u32 = 64;
}

/// The value of every [`names::ALLOW_LISTS`] entry (only its presence counts).
pub const ALLOWED: u8 = 1;

/// An IPv4 prefix of source addresses, e.g. `203.0.113.0/24`: its first
/// `len` bits, the others zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourcePrefix {
    octets: [u8; 4],
    len: u8,
}

impl SourcePrefix {
    /// The prefix `octets/len`, or `None` when `len` is above 32 or a bit
    /// beyond the first `len` is set.
    pub const fn new(octets: [u8; 4], len: u8) -> Option<Self> {
        if len > 32 || u32::from_be_bytes(octets) & !Self::mask(len) != 0 {
            return None;
        }
        Some(Self { octets, len })
    }

    /// The first `len` bits set, host order.
    const fn mask(len: u8) -> u32 {
        match len {
            0 => 0,
            // 1..=32: a shift below 32.
            len => u32::MAX << (32 - len as u32),
        }
    }

    /// The network address.
    pub const fn octets(self) -> [u8; 4] {
        self.octets
    }

    /// The prefix length, 0..=32.
    pub const fn length(self) -> u8 {
        self.len
    }

    /// Whether `address` lies in the prefix.
    pub const fn contains(self, address: [u8; 4]) -> bool {
        u32::from_be_bytes(address) & Self::mask(self.len) == u32::from_be_bytes(self.octets)
    }

    /// The [`names::ALLOW_LISTS`] key of this prefix in service
    /// `service_id`'s list: its prefix length and data.
    pub const fn allow_key(self, service_id: u32) -> (u32, AllowedSource) {
        (
            AllowedSource::SERVICE_ID_BITS + self.len as u32,
            AllowedSource {
                service_id,
                src_ip: u32::from_ne_bytes(self.octets),
            },
        )
    }
}

impl core::fmt::Display for SourcePrefix {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let [a, b, c, d] = self.octets;
        write!(f, "{a}.{b}.{c}.{d}/{}", self.len)
    }
}

// flood protection

/// Nanoseconds per second: the refill clock of a [`TokenBucket`] and the
/// length of an [`InsertWindow`].
pub const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// Value of [`names::RATE_LIMITS`]: a service's per-source new-flow limit.
/// `refill_interval_ns == 0` means no limit.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RateLimit {
    /// Nanoseconds per token: `NANOS_PER_SECOND / new_flows_per_second`.
    pub refill_interval_ns: u32,
    /// Tokens a full bucket holds (the burst of new flows allowed at once).
    pub burst: u32,
}

impl RateLimit {
    /// The limit of `per_second` new flows per source with a bucket of
    /// `burst` (`per_second` at least 1).
    pub const fn new(per_second: u32, burst: u32) -> Self {
        let per_second = if per_second == 0 { 1 } else { per_second };
        Self {
            refill_interval_ns: (NANOS_PER_SECOND / per_second as u64) as u32,
            burst,
        }
    }
}

/// Key of [`names::SOURCE_BUCKETS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SourceKey {
    pub service_id: u32,
    /// Client address, network byte order.
    pub src_ip: u32,
}

/// Value of [`names::SOURCE_BUCKETS`]: a token bucket refilled one token per
/// [`RateLimit::refill_interval_ns`], up to [`RateLimit::burst`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TokenBucket {
    /// When the bucket was last refilled (`bpf_ktime_get_ns`), minus the
    /// part of an interval not yet turned into a token.
    pub refilled_ns: u64,
    pub tokens: u32,
    pub _pad: u32,
}

impl TokenBucket {
    /// The bucket after refilling at `now_ns` and taking one token, or
    /// `None` when it is empty (the new flow is over the limit). A source
    /// seen for the first time (`bucket` is `None`) starts with a full
    /// bucket. Integer math only: the refill divides the elapsed time by the
    /// interval, so nothing can overflow; a clock earlier than `refilled_ns`
    /// counts as no time elapsed.
    pub fn take(bucket: Option<TokenBucket>, limit: RateLimit, now_ns: u64) -> Option<Self> {
        let mut bucket = match bucket {
            Some(bucket) => bucket,
            None => TokenBucket {
                refilled_ns: now_ns,
                tokens: limit.burst,
                _pad: 0,
            },
        };
        let interval = u64::from(limit.refill_interval_ns);
        let elapsed = now_ns.saturating_sub(bucket.refilled_ns);
        // No interval: no refill (the data path never asks for one).
        if let Some(earned) = elapsed.checked_div(interval) {
            let room = u64::from(limit.burst.saturating_sub(bucket.tokens));
            if earned >= room {
                bucket.tokens = limit.burst;
                bucket.refilled_ns = now_ns;
            } else {
                // `earned < room <= u32::MAX`, and `earned * interval <= elapsed`.
                bucket.tokens += earned as u32;
                bucket.refilled_ns += earned * interval;
            }
        }
        if bucket.tokens == 0 {
            return None;
        }
        bucket.tokens -= 1;
        Some(bucket)
    }
}

/// Value of [`names::SETTINGS`]: the data path's global settings, written
/// once at load.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Settings {
    /// Flow-table inserts per CPU per second beyond which new flows are
    /// forwarded without an entry; 0: no limit.
    pub flow_insert_limit_per_cpu: u32,
    /// What to do with an ICMP echo request to a VIP: [`vip_icmp_echo`].
    pub vip_icmp_echo: u8,
    pub _pad: [u8; 3],
}

/// Values of [`Settings::vip_icmp_echo`].
pub mod vip_icmp_echo {
    /// Passed to the kernel, which answers it on the node holding the VIP.
    pub const PASS: u8 = 0;
    /// Dropped (`vip_icmp_echo`).
    pub const DROP: u8 = 1;
}

/// Value of [`names::INSERT_WINDOW`]: one CPU's flow-table inserts in its
/// current window, which started at `started_ns`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct InsertWindow {
    pub started_ns: u64,
    pub inserts: u64,
}

impl InsertWindow {
    /// Whether one more new flow may be inserted under `limit` (0: no
    /// limit), and the window after it.
    ///
    /// `clock` (`bpf_ktime_get_ns`) is read only when the window is full:
    /// below the limit an insert is admitted at once, so a new flow pays
    /// for no clock read unless a flood filled the window (a clock read is
    /// a helper call, about as costly as the rest of the guard). A full
    /// window that started a second or more before `clock()` gives way to a
    /// new one starting then; a clock earlier than `started_ns` counts as no
    /// time elapsed.
    ///
    /// Windows follow each other, each lasts at least a second and admits
    /// at most `limit` inserts: over any T seconds a CPU inserts at most
    /// `limit × (T + 2)` flows, `limit` per second in the long run.
    pub fn admit(self, limit: u32, clock: impl FnOnce() -> u64) -> (bool, Self) {
        if limit == 0 {
            return (true, self);
        }
        let mut window = self;
        if window.inserts >= u64::from(limit) {
            let now_ns = clock();
            if now_ns.saturating_sub(window.started_ns) < NANOS_PER_SECOND {
                return (false, window);
            }
            window.started_ns = now_ns;
            window.inserts = 0;
        }
        window.inserts += 1;
        (true, window)
    }
}

/// Number of XDP actions counted in [`names::ACTION_STATS`].
pub const XDP_ACTION_COUNT: u32 = 5;
/// Names of XDP actions by value.
pub const XDP_ACTION_NAMES: [&str; XDP_ACTION_COUNT as usize] =
    ["aborted", "drop", "pass", "tx", "redirect"];

#[cfg(feature = "user")]
mod pod {
    //! `aya::Pod` for the map types: each is `#[repr(C)]`, `Copy`, made of
    //! integers and byte arrays only (every bit pattern valid), and spells out
    //! its padding as `_pad` fields (no uninitialised bytes; the sizes are
    //! checked by `layouts_have_no_implicit_padding`).

    // SAFETY: `#[repr(C)]` u32, u16, u8 and an explicit `_pad: u8`; see above.
    unsafe impl aya::Pod for super::ServiceKey {}
    // SAFETY: `#[repr(C)]` three u32, four u8 and a u32, 4-aligned: no padding.
    unsafe impl aya::Pod for super::Service {}
    // SAFETY: `#[repr(C)]` two u32, two `[u8; 6]`, a u8, `_pad: u8` and a u16.
    unsafe impl aya::Pod for super::Backend {}
    // SAFETY: `#[repr(C)]` two u32, two u16, a u8 and `_pad: [u8; 3]`.
    unsafe impl aya::Pod for super::FlowKey {}
    // SAFETY: `#[repr(C)]` one u32.
    unsafe impl aya::Pod for super::Flow {}
    // SAFETY: `#[repr(C)]` a `[u8; 6]`, `_pad: [u8; 2]` and a u32.
    unsafe impl aya::Pod for super::LocalInterface {}
    // NAT
    // SAFETY: `#[repr(C)]` a u32, a u16, a u8 and an explicit `_pad: u8`.
    unsafe impl aya::Pod for super::Endpoint {}
    // SAFETY: `#[repr(C)]` a `[u8; 6]` and `_pad: [u8; 2]`.
    unsafe impl aya::Pod for super::NatClient {}
    // SAFETY: `#[repr(C)]` three u64.
    unsafe impl aya::Pod for super::Counters {}
    // flood protection
    // SAFETY: `#[repr(C)]` two u32.
    unsafe impl aya::Pod for super::RateLimit {}
    // SAFETY: `#[repr(C)]` two u32.
    unsafe impl aya::Pod for super::SourceKey {}
    // SAFETY: `#[repr(C)]` two u32.
    unsafe impl aya::Pod for super::AllowedSource {}
    // SAFETY: `#[repr(C)]` a u64, a u32 and an explicit `_pad: u32`.
    unsafe impl aya::Pod for super::TokenBucket {}
    // SAFETY: `#[repr(C)]` a u32, a u8 and an explicit `_pad: [u8; 3]`.
    unsafe impl aya::Pod for super::Settings {}
    // SAFETY: `#[repr(C)]` two u64.
    unsafe impl aya::Pod for super::InsertWindow {}
    // passive health
    // SAFETY: `#[repr(C)]` two u32 and four `PendingHandshake` (u32, u16,
    // an explicit `_pad: u16`, u32).
    unsafe impl aya::Pod for crate::handshake::HandshakeWatch {}
    // SAFETY: `#[repr(C)]` three u64.
    unsafe impl aya::Pod for crate::handshake::HandshakeCounters {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<ServiceKey>(), 8);
        assert_eq!(size_of::<Service>(), 20);
        assert_eq!(size_of::<Backend>(), 24);
        assert_eq!(size_of::<FlowKey>(), 16);
        assert_eq!(size_of::<Flow>(), 8);
        assert_eq!(size_of::<Counters>(), 24);
        assert_eq!(size_of::<LocalInterface>(), 12);
        assert_eq!(size_of::<Endpoint>(), 8);
        assert_eq!(size_of::<NatClient>(), 8);
        assert_eq!(size_of::<RateLimit>(), 8);
        assert_eq!(size_of::<SourceKey>(), 8);
        assert_eq!(size_of::<AllowedSource>(), 8);
        assert_eq!(size_of::<TokenBucket>(), 16);
        assert_eq!(size_of::<Settings>(), 8);
        assert_eq!(size_of::<InsertWindow>(), 16);
        assert_eq!(size_of::<crate::handshake::HandshakeWatch>(), 56);
        assert_eq!(size_of::<crate::handshake::HandshakeCounters>(), 24);
    }

    #[test]
    fn a_flow_is_active_until_idle_or_closed_and_a_syn_reopens_it() {
        use tcp_flags::{FIN, RST, SYN};
        const ACK: u8 = 0x10;
        assert_eq!(Flow::seen(None, 7, SYN), 7);
        assert_eq!(Flow::seen(Some(5), 7, ACK), 7);
        assert_eq!(Flow::seen(Some(5), 7, FIN | ACK), Flow::CLOSED);
        assert_eq!(Flow::seen(Some(5), 7, RST), Flow::CLOSED);
        // Closed stays closed (the last ACK of the close), until a SYN.
        assert_eq!(Flow::seen(Some(Flow::CLOSED), 8, ACK), Flow::CLOSED);
        assert_eq!(Flow::seen(Some(Flow::CLOSED), 8, SYN), 8);
        // UDP has no flags: always seen.
        assert_eq!(Flow::seen(Some(Flow::CLOSED), 8, 0), Flow::CLOSED);
        assert_eq!(Flow::seen(None, 8, 0), 8);

        let seen_at = |last_seen| Flow {
            backend_id: 1,
            last_seen,
        };
        assert!(seen_at(100).is_active(100, 60));
        assert!(seen_at(100).is_active(159, 60));
        assert!(!seen_at(100).is_active(160, 60));
        assert!(!seen_at(Flow::CLOSED).is_active(1, 60));
        // A pending handshake is seen like any other packet, and stays
        // pending until the ACK that completes it (or a FIN or RST).
        let pending = Flow::opened(100);
        assert!(seen_at(pending).handshake_pending() && seen_at(pending).is_active(159, 60));
        assert!(!seen_at(pending).is_active(160, 60));
        assert_eq!(Flow::seen(Some(pending), 101, SYN), Flow::opened(101));
        assert_eq!(Flow::seen(Some(pending), 101, 0), Flow::opened(101));
        assert_eq!(Flow::seen(Some(pending), 101, SYN | ACK), Flow::opened(101));
        assert_eq!(Flow::seen(Some(pending), 101, ACK), 101);
        assert_eq!(Flow::seen(Some(pending), 101, RST), Flow::CLOSED);
        assert!(!seen_at(100).handshake_pending());
    }

    #[test]
    fn a_token_bucket_allows_its_burst_then_one_flow_per_interval() {
        // 10 per second, burst 3: one token per 100 ms.
        let limit = RateLimit::new(10, 3);
        assert_eq!(limit.refill_interval_ns, 100_000_000);
        let mut bucket = None;
        for _ in 0..3 {
            bucket = Some(TokenBucket::take(bucket, limit, 1_000).unwrap());
        }
        assert_eq!(TokenBucket::take(bucket, limit, 1_000), None);
        // 99.999 ms later: still nothing; at 100 ms: one token.
        assert_eq!(TokenBucket::take(bucket, limit, 100_000_999), None);
        let after = TokenBucket::take(bucket, limit, 100_001_000).unwrap();
        assert_eq!((after.tokens, after.refilled_ns), (0, 100_001_000));
        // 250 ms more: two tokens, the 50 ms remainder kept.
        let later = TokenBucket::take(Some(after), limit, 350_001_000).unwrap();
        assert_eq!((later.tokens, later.refilled_ns), (1, 300_001_000));
        // A very long idle time (or u64::MAX) refills to the burst, no overflow.
        let full = TokenBucket::take(Some(later), limit, u64::MAX).unwrap();
        assert_eq!((full.tokens, full.refilled_ns), (2, u64::MAX));
        // A clock before the last refill earns nothing.
        let stuck = TokenBucket {
            refilled_ns: u64::MAX,
            tokens: 0,
            _pad: 0,
        };
        assert_eq!(TokenBucket::take(Some(stuck), limit, 5), None);
        // The slowest and fastest rates.
        assert_eq!(RateLimit::new(1, 1).refill_interval_ns, 1_000_000_000);
        assert_eq!(RateLimit::new(1_000_000, 1).refill_interval_ns, 1_000);
    }

    #[test]
    fn an_insert_window_admits_its_limit_per_second() {
        let no_clock = || -> u64 { panic!("the clock is read below the limit") };
        let mut window = InsertWindow::default();
        for _ in 0..2 {
            let (admitted, next) = window.admit(2, no_clock);
            assert!(admitted);
            window = next;
        }
        assert_eq!(window.inserts, 2);
        // Full: the clock decides. The window started at 0.
        let (admitted, full) = window.admit(2, || NANOS_PER_SECOND - 1);
        assert!(!admitted);
        assert_eq!(full, window);
        let (admitted, renewed) = full.admit(2, || NANOS_PER_SECOND);
        assert!(admitted);
        assert_eq!(
            renewed,
            InsertWindow {
                started_ns: NANOS_PER_SECOND,
                inserts: 1
            }
        );
        // The renewed window admits its second insert without the clock, then
        // waits a second from its own start.
        let (admitted, full) = renewed.admit(2, no_clock);
        assert!(admitted);
        assert!(!full.admit(2, || 2 * NANOS_PER_SECOND - 1).0);
        assert!(full.admit(2, || 2 * NANOS_PER_SECOND).0);
        // A window that starts in the future never renews (saturating).
        let held = InsertWindow {
            started_ns: u64::MAX,
            inserts: u64::MAX,
        };
        assert_eq!(held.admit(1, || 5), (false, held));
        // No limit: always admitted, the window untouched, no clock read.
        assert_eq!(full.admit(0, no_clock), (true, full));
    }

    #[test]
    fn source_prefixes_have_no_host_bits_and_key_after_the_service_id() {
        let net = SourcePrefix::new([203, 0, 113, 0], 24).unwrap();
        assert!(net.contains([203, 0, 113, 255]));
        assert!(!net.contains([203, 0, 114, 0]));
        assert_eq!(SourcePrefix::new([203, 0, 113, 7], 24), None);
        assert_eq!(SourcePrefix::new([10, 0, 0, 0], 33), None);
        let everyone = SourcePrefix::new([0; 4], 0).unwrap();
        assert!(everyone.contains([255; 4]));
        assert_eq!(SourcePrefix::new([0, 0, 0, 1], 0), None);
        let host = SourcePrefix::new([198, 51, 100, 7], 32).unwrap();
        assert!(host.contains([198, 51, 100, 7]) && !host.contains([198, 51, 100, 6]));
        let (prefix_len, data) = net.allow_key(5);
        assert_eq!(prefix_len, 56);
        assert_eq!(data.service_id, 5);
        assert_eq!(data.src_ip.to_ne_bytes(), [203, 0, 113, 0]);
    }

    #[test]
    fn reasons_are_indexed_in_order() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }
}
