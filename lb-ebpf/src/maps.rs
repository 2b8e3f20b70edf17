//! The BPF maps, named and laid out as in `lb_common::maps`.
//!
//! Sizes are compile-time defaults; the controller overrides every one of them
//! at load time (`EbpfLoader::set_max_entries`).

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray},
};
use lb_common::handshake::{HandshakeCounters, HandshakeWatch};
use lb_common::maps::{
    defaults, AllowedSource, Backend, Counters, Endpoint, Flow, FlowKey, InsertWindow,
    LocalInterface, NatClient, RateLimit, Reason, Service, ServiceKey, Settings, SourceKey,
    TokenBucket, XDP_ACTION_COUNT,
};

/// The virtual services, by (VIP, port, protocol).
#[map]
pub static SERVICES: HashMap<ServiceKey, Service> =
    HashMap::with_max_entries(defaults::MAX_SERVICES, 0);

/// Number of services per VIP: tells "addressed to us" from "not ours".
#[map]
pub static VIPS: HashMap<u32, u32> = HashMap::with_max_entries(defaults::MAX_SERVICES, 0);

/// Backends by id.
#[map]
pub static BACKENDS: Array<Backend> = Array::with_max_entries(defaults::MAX_BACKENDS, 0);

/// Backend ids: each service's Maglev table or round-robin ring, two halves per
/// service.
#[map]
pub static SCHED_TABLE: Array<u32> =
    Array::with_max_entries(defaults::MAX_SERVICES * 2 * defaults::MAGLEV_TABLE_SIZE, 0);

/// Per-CPU round-robin position of each service: the next slot to use.
#[map]
pub static RR_CURSOR: PerCpuArray<u32> = PerCpuArray::with_max_entries(defaults::MAX_SERVICES, 0);

/// Established flows and their backend.
#[map]
pub static FLOWS: LruHashMap<FlowKey, Flow> =
    LruHashMap::with_max_entries(defaults::FLOW_TABLE_SIZE, 0);

/// Traffic counters per service id.
#[map]
pub static SERVICE_STATS: PerCpuArray<Counters> =
    PerCpuArray::with_max_entries(defaults::MAX_SERVICES, 0);

/// Traffic counters per backend id.
#[map]
pub static BACKEND_STATS: PerCpuArray<Counters> =
    PerCpuArray::with_max_entries(defaults::MAX_BACKENDS, 0);

/// Packets per XDP action.
#[map]
pub static ACTION_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(XDP_ACTION_COUNT, 0);

/// Passed or dropped packets per [`Reason`].
#[map]
pub static REASON_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Reason::COUNT, 0);

/// The interfaces the program is attached to (`LocalInterface::MAIN` and
/// `SERVERS`, written at attach).
#[map]
pub static LOCAL_INTERFACE: Array<LocalInterface> =
    Array::with_max_entries(LocalInterface::COUNT, 0);

/// The source allow-lists, by (service id, source prefix): read only for
/// services whose `ALLOW_LIST` flag is set.
#[map]
pub static ALLOW_LISTS: LpmTrie<AllowedSource, u8> =
    LpmTrie::with_max_entries(defaults::ALLOW_TABLE_SIZE, 0);

// flood protection

/// Each service's per-source new-flow rate limit, by service id; read only
/// for services whose `RATE_LIMIT` flag is set.
#[map]
pub static RATE_LIMITS: Array<RateLimit> = Array::with_max_entries(defaults::MAX_SERVICES, 0);

/// Token buckets of the (service, source) pairs that opened flows recently.
#[map]
pub static SOURCE_BUCKETS: LruHashMap<SourceKey, TokenBucket> =
    LruHashMap::with_max_entries(defaults::RATE_LIMIT_TABLE_SIZE, 0);

/// The data path's global settings (one entry, written at load).
#[map]
pub static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

/// The controller's coarse clock in seconds (one entry), copied into a
/// flow's entry as its last-seen mark.
#[map]
pub static FLOW_CLOCK: Array<u32> = Array::with_max_entries(1, 0);

/// This CPU's flow-table inserts in the current second (one entry).
#[map]
pub static INSERT_WINDOW: PerCpuArray<InsertWindow> = PerCpuArray::with_max_entries(1, 0);

// passive health

/// Each backend's watched handshakes and failures in a row, by backend id,
/// shared by every CPU (`lb_common::handshake`).
#[map]
pub static HANDSHAKES: Array<HandshakeWatch> = Array::with_max_entries(defaults::MAX_BACKENDS, 0);

/// Handshake counters per backend id.
#[map]
pub static HANDSHAKE_STATS: PerCpuArray<HandshakeCounters> =
    PerCpuArray::with_max_entries(defaults::MAX_BACKENDS, 0);

// NAT

/// Each `nat` backend's (address, port, protocol) → its service's: the
/// source its replies leave with.
#[map]
pub static NAT_REVERSE: HashMap<Endpoint, Endpoint> =
    HashMap::with_max_entries(defaults::MAX_BACKENDS, 0);

/// The MAC each client of a `nat` service opened its last flow from.
#[map]
pub static NAT_CLIENTS: LruHashMap<u32, NatClient> =
    LruHashMap::with_max_entries(defaults::FLOW_TABLE_SIZE, 0);
