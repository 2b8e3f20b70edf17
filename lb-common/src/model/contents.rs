//! The contents of the BPF maps the decision reads, held in memory: the
//! local interfaces, the services, the VIPs, the backends, the scheduling
//! tables, the flow table, this CPU's round-robin cursors, the source
//! allow-lists, the flood-protection state, the backends' handshake
//! records (passive health) and the NAT maps.
//!
//! Arrays behave like BPF arrays: sized once, zero-filled, and an index
//! beyond the end finds nothing. Hash keys are compared as the kernel
//! compares them, byte for byte, padding included.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use super::decision::{Decision, FlowChange};
use crate::handshake::HandshakeWatch;
use crate::maps::{
    AllowedSource, Backend, Endpoint, Flow, FlowKey, InsertWindow, LocalInterface, NatClient,
    RateLimit, Service, ServiceKey, Settings, SourceKey, TokenBucket,
};

/// Sizes of the maps, as the loader created them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSizes {
    /// Entries of `RR_CURSOR` and `SERVICE_STATS` (and of `SERVICES`/`VIPS`).
    pub max_services: u32,
    /// Entries of `BACKENDS` and `BACKEND_STATS`.
    pub max_backends: u32,
    /// Entries of `SCHED_TABLE`.
    pub sched_table_entries: u32,
}

/// A write to an array beyond its end (the kernel answers `E2BIG`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexOutOfRange {
    /// The map's name (see [`crate::maps::names`]).
    pub map: &'static str,
    pub index: u32,
    pub len: u32,
}

impl fmt::Display for IndexOutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "index {} is beyond map {} of {} entries",
            self.index, self.map, self.len
        )
    }
}

impl core::error::Error for IndexOutOfRange {}

/// The maps as the program on one CPU sees them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapContents {
    sizes: MapSizes,
    local_interfaces: [LocalInterface; LocalInterface::COUNT as usize],
    services: BTreeMap<[u8; 8], Service>,
    vips: BTreeMap<u32, u32>,
    backends: Vec<Backend>,
    sched_table: Vec<u32>,
    flows: BTreeMap<[u8; 16], Flow>,
    rr_cursors: Vec<u32>,
    /// `ALLOW_LISTS` entries: prefix length and key data bytes.
    allow_lists: BTreeSet<(u32, [u8; 8])>,
    // flood protection
    rate_limits: Vec<RateLimit>,
    source_buckets: BTreeMap<[u8; 8], TokenBucket>,
    settings: Settings,
    insert_window: InsertWindow,
    flow_clock: u32,
    // passive health
    handshakes: Vec<HandshakeWatch>,
    // NAT
    nat_reverse: BTreeMap<[u8; 8], Endpoint>,
    /// `NAT_CLIENTS`, an LRU map: the entries it holds, never evicted here.
    nat_clients: BTreeMap<u32, NatClient>,
}

impl MapContents {
    /// Empty maps of `sizes`: no service, no VIP, no flow, no NAT entry;
    /// the local interfaces, every backend, slot and cursor zero (a zero
    /// backend is down, a zero interface unused).
    pub fn new(sizes: MapSizes) -> Self {
        Self {
            sizes,
            local_interfaces: [LocalInterface::default(); LocalInterface::COUNT as usize],
            services: BTreeMap::new(),
            vips: BTreeMap::new(),
            backends: vec![Backend::default(); sizes.max_backends as usize],
            sched_table: vec![0; sizes.sched_table_entries as usize],
            flows: BTreeMap::new(),
            rr_cursors: vec![0; sizes.max_services as usize],
            allow_lists: BTreeSet::new(),
            rate_limits: vec![RateLimit::default(); sizes.max_services as usize],
            source_buckets: BTreeMap::new(),
            settings: Settings::default(),
            insert_window: InsertWindow::default(),
            flow_clock: 0,
            handshakes: vec![HandshakeWatch::default(); sizes.max_backends as usize],
            nat_reverse: BTreeMap::new(),
            nat_clients: BTreeMap::new(),
        }
    }

    /// The sizes the maps were created with.
    pub fn sizes(&self) -> MapSizes {
        self.sizes
    }

    /// Entry `slot` of `LOCAL_INTERFACE` ([`LocalInterface::MAIN`] or
    /// [`LocalInterface::SERVERS`]), if the array has that index.
    pub fn local_interface(&self, slot: u32) -> Option<LocalInterface> {
        self.local_interfaces.get(slot as usize).copied()
    }

    pub fn set_local_interface(
        &mut self,
        slot: u32,
        interface: LocalInterface,
    ) -> Result<(), IndexOutOfRange> {
        let entry = self
            .local_interfaces
            .get_mut(slot as usize)
            .ok_or(IndexOutOfRange {
                map: crate::maps::names::LOCAL_INTERFACE,
                index: slot,
                len: LocalInterface::COUNT,
            })?;
        *entry = interface;
        Ok(())
    }

    /// The service at `key` (`SERVICES`).
    pub fn service(&self, key: &ServiceKey) -> Option<Service> {
        self.services.get(&service_key_bytes(key)).copied()
    }

    /// Every service, in key byte order.
    pub fn services(&self) -> impl Iterator<Item = (ServiceKey, Service)> + '_ {
        self.services
            .iter()
            .map(|(bytes, service)| (service_key_from_bytes(*bytes), *service))
    }

    pub fn set_service(&mut self, key: ServiceKey, service: Service) {
        self.services.insert(service_key_bytes(&key), service);
    }

    /// Whether `vip` (network order) has an entry in `VIPS`.
    pub fn is_vip(&self, vip: u32) -> bool {
        self.vips.contains_key(&vip)
    }

    /// Sets the `VIPS` entry of `vip`: the number of services on it.
    pub fn set_vip(&mut self, vip: u32, services: u32) {
        self.vips.insert(vip, services);
    }

    /// Backend `id` (`BACKENDS`), if the array has that index.
    pub fn backend(&self, id: u32) -> Option<Backend> {
        self.backends.get(id as usize).copied()
    }

    pub fn set_backend(&mut self, id: u32, backend: Backend) -> Result<(), IndexOutOfRange> {
        let len = self.sizes.max_backends;
        let entry = self.backends.get_mut(id as usize).ok_or(IndexOutOfRange {
            map: crate::maps::names::BACKENDS,
            index: id,
            len,
        })?;
        *entry = backend;
        Ok(())
    }

    /// Backend `id`'s handshake record (`HANDSHAKES`), if the array has that index.
    pub fn handshakes(&self, id: u32) -> Option<HandshakeWatch> {
        self.handshakes.get(id as usize).copied()
    }

    pub fn set_handshakes(
        &mut self,
        id: u32,
        watch: HandshakeWatch,
    ) -> Result<(), IndexOutOfRange> {
        let len = self.sizes.max_backends;
        let entry = self
            .handshakes
            .get_mut(id as usize)
            .ok_or(IndexOutOfRange {
                map: crate::maps::names::HANDSHAKES,
                index: id,
                len,
            })?;
        *entry = watch;
        Ok(())
    }

    /// Slot `index` of `SCHED_TABLE`, if the array has that index.
    pub fn table_slot(&self, index: u32) -> Option<u32> {
        self.sched_table.get(index as usize).copied()
    }

    pub fn set_table_slot(&mut self, index: u32, backend_id: u32) -> Result<(), IndexOutOfRange> {
        let len = self.sizes.sched_table_entries;
        let entry = self
            .sched_table
            .get_mut(index as usize)
            .ok_or(IndexOutOfRange {
                map: crate::maps::names::SCHED_TABLE,
                index,
                len,
            })?;
        *entry = backend_id;
        Ok(())
    }

    /// The flow-table entry of `key` (`FLOWS`).
    pub fn flow(&self, key: &FlowKey) -> Option<Flow> {
        self.flows.get(&flow_key_bytes(key)).copied()
    }

    /// Every flow, in key byte order.
    pub fn flows(&self) -> impl Iterator<Item = (FlowKey, Flow)> + '_ {
        self.flows
            .iter()
            .map(|(bytes, flow)| (flow_key_from_bytes(*bytes), *flow))
    }

    /// Number of entries in the flow table.
    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// Inserts or replaces the flow-table entry of `key`; returns the old one.
    pub fn insert_flow(&mut self, key: FlowKey, flow: Flow) -> Option<Flow> {
        self.flows.insert(flow_key_bytes(&key), flow)
    }

    /// Removes the flow-table entry of `key`; returns it.
    pub fn remove_flow(&mut self, key: &FlowKey) -> Option<Flow> {
        self.flows.remove(&flow_key_bytes(key))
    }

    /// This CPU's round-robin cursor of service `id` (`RR_CURSOR`), if the
    /// array has that index.
    pub fn rr_cursor(&self, service_id: u32) -> Option<u32> {
        self.rr_cursors.get(service_id as usize).copied()
    }

    pub fn set_rr_cursor(&mut self, service_id: u32, next: u32) -> Result<(), IndexOutOfRange> {
        let len = self.sizes.max_services;
        let entry = self
            .rr_cursors
            .get_mut(service_id as usize)
            .ok_or(IndexOutOfRange {
                map: crate::maps::names::RR_CURSOR,
                index: service_id,
                len,
            })?;
        *entry = next;
        Ok(())
    }

    /// Whether `SERVICE_STATS` has an entry for service `id`.
    pub fn has_service_stats(&self, service_id: u32) -> bool {
        service_id < self.sizes.max_services
    }

    /// Whether `BACKEND_STATS` has an entry for backend `id`.
    pub fn has_backend_stats(&self, backend_id: u32) -> bool {
        backend_id < self.sizes.max_backends
    }

    /// Adds the `ALLOW_LISTS` entry of the first `prefix_len` bits (at most
    /// 64, as the kernel requires) of `data`.
    pub fn set_allowed(&mut self, prefix_len: u32, data: AllowedSource) {
        self.allow_lists
            .insert((prefix_len, allowed_source_bytes(&data)));
    }

    /// Removes an `ALLOW_LISTS` entry; whether there was one.
    pub fn remove_allowed(&mut self, prefix_len: u32, data: &AllowedSource) -> bool {
        self.allow_lists
            .remove(&(prefix_len, allowed_source_bytes(data)))
    }

    /// Every `ALLOW_LISTS` entry, in key order.
    pub fn allowed(&self) -> impl Iterator<Item = (u32, AllowedSource)> + '_ {
        self.allow_lists
            .iter()
            .map(|&(prefix_len, bytes)| (prefix_len, allowed_source_from_bytes(bytes)))
    }

    /// Whether the data path's lookup of `data` (all 64 bits) in the LPM
    /// trie `ALLOW_LISTS` finds an entry: one whose first `prefix_len` bits
    /// are those of `data`, in the key's byte order, most significant bit
    /// first.
    pub fn allow_list_matches(&self, data: &AllowedSource) -> bool {
        let wanted = u64::from_be_bytes(allowed_source_bytes(data));
        self.allow_lists.iter().any(|&(prefix_len, bytes)| {
            let mask = u64::MAX.checked_shl(64 - prefix_len.min(64)).unwrap_or(0);
            (u64::from_be_bytes(bytes) ^ wanted) & mask == 0
        })
    }

    // flood protection

    /// Service `id`'s per-source rate limit (`RATE_LIMITS`), if the array
    /// has that index.
    pub fn rate_limit(&self, service_id: u32) -> Option<RateLimit> {
        self.rate_limits.get(service_id as usize).copied()
    }

    pub fn set_rate_limit(
        &mut self,
        service_id: u32,
        limit: RateLimit,
    ) -> Result<(), IndexOutOfRange> {
        let len = self.sizes.max_services;
        let entry = self
            .rate_limits
            .get_mut(service_id as usize)
            .ok_or(IndexOutOfRange {
                map: crate::maps::names::RATE_LIMITS,
                index: service_id,
                len,
            })?;
        *entry = limit;
        Ok(())
    }

    /// The token bucket of `key` (`SOURCE_BUCKETS`).
    pub fn source_bucket(&self, key: &SourceKey) -> Option<TokenBucket> {
        self.source_buckets.get(&source_key_bytes(key)).copied()
    }

    pub fn set_source_bucket(&mut self, key: SourceKey, bucket: TokenBucket) {
        self.source_buckets.insert(source_key_bytes(&key), bucket);
    }

    /// The data path's global settings (`SETTINGS`).
    pub fn settings(&self) -> Settings {
        self.settings
    }

    pub fn set_settings(&mut self, settings: Settings) {
        self.settings = settings;
    }

    /// This CPU's insert window (`INSERT_WINDOW`).
    pub fn insert_window(&self) -> InsertWindow {
        self.insert_window
    }

    pub fn set_insert_window(&mut self, window: InsertWindow) {
        self.insert_window = window;
    }

    /// The controller's flow clock (`FLOW_CLOCK`).
    pub fn flow_clock(&self) -> u32 {
        self.flow_clock
    }

    pub fn set_flow_clock(&mut self, now: u32) {
        self.flow_clock = now;
    }

    // NAT

    /// The service endpoint whose replies leave from the `nat` backend
    /// endpoint `backend` (`NAT_REVERSE`).
    pub fn nat_reverse(&self, backend: &Endpoint) -> Option<Endpoint> {
        self.nat_reverse.get(&endpoint_bytes(backend)).copied()
    }

    pub fn set_nat_reverse(&mut self, backend: Endpoint, service: Endpoint) {
        self.nat_reverse.insert(endpoint_bytes(&backend), service);
    }

    /// The entry of client `addr` (network order) in `NAT_CLIENTS`.
    pub fn nat_client(&self, addr: u32) -> Option<NatClient> {
        self.nat_clients.get(&addr).copied()
    }

    /// Every `NAT_CLIENTS` entry, by client address (network order).
    pub fn nat_clients(&self) -> impl Iterator<Item = (u32, NatClient)> + '_ {
        self.nat_clients
            .iter()
            .map(|(&addr, &client)| (addr, client))
    }

    pub fn set_nat_client(&mut self, addr: u32, client: NatClient) {
        self.nat_clients.insert(addr, client);
    }

    /// Removes the `NAT_CLIENTS` entry of `addr`; returns it.
    pub fn remove_nat_client(&mut self, addr: u32) -> Option<NatClient> {
        self.nat_clients.remove(&addr)
    }

    /// Applies what `decision` wrote: its flow-table change, its cursor
    /// advance, its flood-guard state, its handshake records and the
    /// client it learnt. (Counters are not map contents the decision
    /// reads; callers that track them add the decision's traffic
    /// themselves.)
    pub fn apply(&mut self, decision: &Decision) {
        match decision.flow_change {
            FlowChange::Unchanged | FlowChange::Skipped { .. } => {}
            FlowChange::Inserted { key, flow } | FlowChange::Replaced { key, flow, .. } => {
                self.insert_flow(key, flow);
            }
            FlowChange::Marked { key, last_seen } => {
                if let Some(flow) = self.flows.get_mut(&flow_key_bytes(&key)) {
                    flow.last_seen = last_seen;
                }
            }
        }
        if let Some(advance) = decision.cursor_advance {
            // The decision only advances cursors that exist.
            let _ = self.set_rr_cursor(advance.service_id, advance.next);
        }
        if let Some((key, bucket)) = decision.source_bucket {
            self.set_source_bucket(key, bucket);
        }
        if let Some(window) = decision.insert_window {
            self.insert_window = window;
        }
        for &(id, watch) in &decision.handshakes.watches {
            // The decision only writes records that exist.
            let _ = self.set_handshakes(id, watch);
        }
        if let Some((addr, client)) = decision.nat_client {
            self.set_nat_client(addr, client);
        }
    }
}

/// The bytes of a `NAT_REVERSE` key, as the kernel hashes them.
fn endpoint_bytes(endpoint: &Endpoint) -> [u8; 8] {
    let [a0, a1, a2, a3] = endpoint.addr.to_ne_bytes();
    let [p0, p1] = endpoint.port.to_ne_bytes();
    [a0, a1, a2, a3, p0, p1, endpoint.proto, endpoint._pad]
}

/// The bytes of a `SERVICES` key, as the kernel hashes them.
fn service_key_bytes(key: &ServiceKey) -> [u8; 8] {
    let [v0, v1, v2, v3] = key.vip.to_ne_bytes();
    let [p0, p1] = key.port.to_ne_bytes();
    [v0, v1, v2, v3, p0, p1, key.proto, key._pad]
}

fn service_key_from_bytes(bytes: [u8; 8]) -> ServiceKey {
    let [v0, v1, v2, v3, p0, p1, proto, pad] = bytes;
    ServiceKey {
        vip: u32::from_ne_bytes([v0, v1, v2, v3]),
        port: u16::from_ne_bytes([p0, p1]),
        proto,
        _pad: pad,
    }
}

/// The bytes of a `SOURCE_BUCKETS` key, as the kernel hashes them.
fn source_key_bytes(key: &SourceKey) -> [u8; 8] {
    let [i0, i1, i2, i3] = key.service_id.to_ne_bytes();
    let [s0, s1, s2, s3] = key.src_ip.to_ne_bytes();
    [i0, i1, i2, i3, s0, s1, s2, s3]
}

/// The data bytes of an `ALLOW_LISTS` key, in the order the trie matches them.
fn allowed_source_bytes(data: &AllowedSource) -> [u8; 8] {
    let [i0, i1, i2, i3] = data.service_id.to_ne_bytes();
    let [s0, s1, s2, s3] = data.src_ip.to_ne_bytes();
    [i0, i1, i2, i3, s0, s1, s2, s3]
}

fn allowed_source_from_bytes(bytes: [u8; 8]) -> AllowedSource {
    let [i0, i1, i2, i3, s0, s1, s2, s3] = bytes;
    AllowedSource {
        service_id: u32::from_ne_bytes([i0, i1, i2, i3]),
        src_ip: u32::from_ne_bytes([s0, s1, s2, s3]),
    }
}

/// The bytes of a `FLOWS` key, as the kernel hashes them.
fn flow_key_bytes(key: &FlowKey) -> [u8; 16] {
    let [s0, s1, s2, s3] = key.src_ip.to_ne_bytes();
    let [d0, d1, d2, d3] = key.dst_ip.to_ne_bytes();
    let [sp0, sp1] = key.src_port.to_ne_bytes();
    let [dp0, dp1] = key.dst_port.to_ne_bytes();
    let [x0, x1, x2] = key._pad;
    [
        s0, s1, s2, s3, d0, d1, d2, d3, sp0, sp1, dp0, dp1, key.proto, x0, x1, x2,
    ]
}

fn flow_key_from_bytes(bytes: [u8; 16]) -> FlowKey {
    let [s0, s1, s2, s3, d0, d1, d2, d3, sp0, sp1, dp0, dp1, proto, x0, x1, x2] = bytes;
    FlowKey {
        src_ip: u32::from_ne_bytes([s0, s1, s2, s3]),
        dst_ip: u32::from_ne_bytes([d0, d1, d2, d3]),
        src_port: u16::from_ne_bytes([sp0, sp1]),
        dst_port: u16::from_ne_bytes([dp0, dp1]),
        proto,
        _pad: [x0, x1, x2],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::backend_state;

    const SIZES: MapSizes = MapSizes {
        max_services: 2,
        max_backends: 3,
        sched_table_entries: 4,
    };

    fn flow_key(pad: u8) -> FlowKey {
        FlowKey {
            src_ip: 1,
            dst_ip: 2,
            src_port: 3,
            dst_port: 4,
            proto: 6,
            _pad: [0, pad, 0],
        }
    }

    #[test]
    fn arrays_are_zero_filled_and_bounded() {
        let mut maps = MapContents::new(SIZES);
        assert_eq!(maps.backend(2), Some(Backend::default()));
        assert_eq!(maps.backend(3), None);
        assert_eq!(maps.table_slot(3), Some(0));
        assert_eq!(maps.table_slot(4), None);
        assert_eq!(maps.rr_cursor(1), Some(0));
        assert_eq!(maps.rr_cursor(2), None);

        let up = Backend {
            state: backend_state::UP,
            ..Backend::default()
        };
        assert_eq!(maps.set_backend(2, up), Ok(()));
        assert_eq!(maps.backend(2), Some(up));
        let error = maps.set_backend(3, up).unwrap_err();
        assert_eq!(
            error,
            IndexOutOfRange {
                map: "BACKENDS",
                index: 3,
                len: 3
            }
        );
        assert_eq!(
            alloc::format!("{error}"),
            "index 3 is beyond map BACKENDS of 3 entries"
        );
        assert!(maps.set_table_slot(4, 0).is_err());
        assert!(maps.set_rr_cursor(2, 0).is_err());
        assert!(maps.has_service_stats(1) && !maps.has_service_stats(2));
        assert!(maps.has_backend_stats(2) && !maps.has_backend_stats(3));
    }

    #[test]
    fn keys_differing_only_in_padding_are_different_keys() {
        let mut maps = MapContents::new(SIZES);
        maps.insert_flow(
            flow_key(0),
            Flow {
                backend_id: 1,
                last_seen: 0,
            },
        );
        assert_eq!(maps.flow(&flow_key(1)), None);
        assert_eq!(
            maps.flow(&flow_key(0)),
            Some(Flow {
                backend_id: 1,
                last_seen: 0
            })
        );
        assert_eq!(
            maps.insert_flow(
                flow_key(0),
                Flow {
                    backend_id: 2,
                    last_seen: 0
                }
            ),
            Some(Flow {
                backend_id: 1,
                last_seen: 0
            })
        );
        assert_eq!(
            maps.flows().collect::<Vec<_>>(),
            [(
                flow_key(0),
                Flow {
                    backend_id: 2,
                    last_seen: 0
                }
            )]
        );
        assert_eq!(maps.remove_flow(&flow_key(1)), None);
        assert_eq!(
            maps.remove_flow(&flow_key(0)),
            Some(Flow {
                backend_id: 2,
                last_seen: 0
            })
        );
        assert_eq!(maps.flow_count(), 0);

        let key = ServiceKey {
            vip: 7,
            port: 8,
            proto: 17,
            _pad: 0,
        };
        maps.set_service(key, Service::default());
        assert_eq!(maps.service(&ServiceKey { _pad: 1, ..key }), None);
        assert_eq!(
            maps.services().collect::<Vec<_>>(),
            [(key, Service::default())]
        );
    }

    #[test]
    fn allow_list_entries_match_their_leading_bits() {
        use crate::maps::SourcePrefix;
        let mut maps = MapContents::new(SIZES);
        let source = |service_id, octets: [u8; 4]| AllowedSource {
            service_id,
            src_ip: u32::from_ne_bytes(octets),
        };
        let (len, data) = SourcePrefix::new([10, 1, 0, 0], 16).unwrap().allow_key(1);
        maps.set_allowed(len, data);
        assert!(maps.allow_list_matches(&source(1, [10, 1, 200, 3])));
        assert!(!maps.allow_list_matches(&source(1, [10, 2, 0, 0])));
        // The service id always matches whole.
        assert!(!maps.allow_list_matches(&source(0, [10, 1, 200, 3])));
        assert!(!maps.allow_list_matches(&source(257, [10, 1, 200, 3])));
        // An entry of prefix length 32 allows every source of its service.
        maps.set_allowed(32, source(0, [0; 4]));
        assert!(maps.allow_list_matches(&source(0, [192, 0, 2, 1])));
        assert_eq!(maps.allowed().count(), 2);
        assert!(maps.remove_allowed(len, &data));
        assert!(!maps.remove_allowed(len, &data));
        assert!(!maps.allow_list_matches(&source(1, [10, 1, 200, 3])));
    }
}
