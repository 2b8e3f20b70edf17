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
    /// `Array<LocalInterface>` of one entry: the interface `lb_xdp` is
    /// attached to; frames for another MAC are passed untouched.
    pub const LOCAL_INTERFACE: &str = "LOCAL_INTERFACE";
}

/// Program names inside the eBPF object.
pub mod programs {
    /// The load balancer.
    pub const LB: &str = "lb_xdp";
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
    pub _pad: [u8; 2],
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
    pub _pad: [u8; 3],
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
}

/// Value of [`names::LOCAL_INTERFACE`]: the interface the program serves.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LocalInterface {
    /// Its Ethernet address: service traffic is addressed to it.
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
    /// Pass: ICMP to a VIP; the kernel answers echo requests if it holds the VIP.
    VipIcmp = 14,
}

impl Reason {
    pub const COUNT: u32 = 15;
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
        }
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
    // SAFETY: `#[repr(C)]` three u32, two u8 and an explicit `_pad: [u8; 2]`.
    unsafe impl aya::Pod for super::Service {}
    // SAFETY: `#[repr(C)]` two u32, two `[u8; 6]`, a u8 and `_pad: [u8; 3]`.
    unsafe impl aya::Pod for super::Backend {}
    // SAFETY: `#[repr(C)]` two u32, two u16, a u8 and `_pad: [u8; 3]`.
    unsafe impl aya::Pod for super::FlowKey {}
    // SAFETY: `#[repr(C)]` one u32.
    unsafe impl aya::Pod for super::Flow {}
    // SAFETY: `#[repr(C)]` a `[u8; 6]` and `_pad: [u8; 2]`.
    unsafe impl aya::Pod for super::LocalInterface {}
    // SAFETY: `#[repr(C)]` three u64.
    unsafe impl aya::Pod for super::Counters {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<ServiceKey>(), 8);
        assert_eq!(size_of::<Service>(), 16);
        assert_eq!(size_of::<Backend>(), 24);
        assert_eq!(size_of::<FlowKey>(), 16);
        assert_eq!(size_of::<Flow>(), 4);
        assert_eq!(size_of::<Counters>(), 24);
        assert_eq!(size_of::<LocalInterface>(), 8);
    }

    #[test]
    fn reasons_are_indexed_in_order() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }
}
