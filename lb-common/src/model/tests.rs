//! Behaviour of the model on hand-built frames, one rule per test, and a
//! bounded no-panic property over random frames and random map contents.

use alloc::vec;
use alloc::vec::Vec;

use super::*;
use crate::hash::flow_hash;
use crate::maps::{
    backend_state, service_flags, Backend, Counters, Flow, FlowKey, LocalInterface, Reason,
    Scheduler, Service, ServiceKey, SourcePrefix, IPPROTO_TCP, IPPROTO_UDP,
};

const INGRESS: Ingress = Ingress {
    now_ns: 0,
    ifindex: 1,
    mac: LB_MAC,
};
const LB_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
const CLIENT: [u8; 4] = [10, 0, 1, 1];
const VIP: [u8; 4] = [10, 0, 0, 100];
const TABLE_SIZE: u32 = 7;
const SIZES: MapSizes = MapSizes {
    max_services: 4,
    max_backends: 8,
    sched_table_entries: 4 * 2 * TABLE_SIZE,
};
const TCP_SYN: u8 = 0x02;

/// The main interface's entry: the LB's MAC, on the ingress interface.
fn main_interface() -> LocalInterface {
    LocalInterface {
        mac: LB_MAC,
        _pad: [0; 2],
        ifindex: INGRESS.ifindex,
    }
}

fn backend_mac(id: u32) -> [u8; 6] {
    [2, 0, 0, 0, 0x10, id as u8]
}

fn backend(id: u32, state: u8) -> Backend {
    Backend {
        ip: u32::from_ne_bytes([10, 0, 0, 11 + id as u8]),
        ifindex: INGRESS.ifindex,
        mac: backend_mac(id),
        src_mac: LB_MAC,
        state,
        _pad: 0,
        port: 80u16.to_be(),
    }
}

fn key(port: u16, proto: u8) -> ServiceKey {
    ServiceKey {
        vip: u32::from_ne_bytes(VIP),
        port: port.to_be(),
        proto,
        _pad: 0,
    }
}

/// Maps with backends 0..4 up and `slots` published as service `id` at
/// `key`, in half 0 of its region.
fn maps_with(key: ServiceKey, id: u32, scheduler: Scheduler, slots: &[u32]) -> MapContents {
    let mut maps = MapContents::new(SIZES);
    maps.set_local_interface(LocalInterface::MAIN, main_interface())
        .unwrap();
    for backend_id in 0..4 {
        maps.set_backend(backend_id, backend(backend_id, backend_state::UP))
            .unwrap();
    }
    publish(&mut maps, key, id, scheduler, slots);
    maps
}

fn publish(maps: &mut MapContents, key: ServiceKey, id: u32, scheduler: Scheduler, slots: &[u32]) {
    let base = id * 2 * TABLE_SIZE;
    for (index, &slot) in (0..).zip(slots) {
        maps.set_table_slot(base + index, slot).unwrap();
    }
    maps.set_service(
        key,
        Service {
            id,
            table_base: base,
            table_len: slots.len() as u32,
            scheduler: scheduler as u8,
            table_half: 0,
            ..Service::default()
        },
    );
    maps.set_vip(key.vip, 1);
}

fn web_maps() -> MapContents {
    maps_with(
        key(80, IPPROTO_TCP),
        0,
        Scheduler::Maglev,
        &[0, 1, 2, 0, 1, 2, 0],
    )
}

fn ipv4(proto: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
    let header_len = 20 + options.len();
    let total_len = (header_len + payload.len()) as u16;
    let mut packet = vec![0x40 | (header_len / 4) as u8, 0];
    packet.extend_from_slice(&total_len.to_be_bytes());
    packet.extend_from_slice(&[0, 1, 0, 0, 64, proto, 0, 0]);
    packet.extend_from_slice(&CLIENT);
    packet.extend_from_slice(&VIP);
    packet.extend_from_slice(options);
    packet.extend_from_slice(payload);
    packet
}

fn tcp(src_port: u16, dst_port: u16, flags: u8) -> Vec<u8> {
    let mut segment = vec![0; 20];
    segment[..2].copy_from_slice(&src_port.to_be_bytes());
    segment[2..4].copy_from_slice(&dst_port.to_be_bytes());
    segment[12] = 5 << 4;
    segment[13] = flags;
    segment
}

fn udp(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut datagram = vec![0; 8];
    datagram[..2].copy_from_slice(&src_port.to_be_bytes());
    datagram[2..4].copy_from_slice(&dst_port.to_be_bytes());
    datagram[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    datagram.extend_from_slice(payload);
    datagram
}

fn ethernet(ether_type: u16, payload: &[u8]) -> Vec<u8> {
    [&LB_MAC[..], &CLIENT_MAC, &ether_type.to_be_bytes(), payload].concat()
}

fn web_frame(src_port: u16, flags: u8) -> Vec<u8> {
    ethernet(0x0800, &ipv4(IPPROTO_TCP, &[], &tcp(src_port, 80, flags)))
}

fn web_flow(src_port: u16) -> FlowKey {
    FlowKey {
        src_ip: u32::from_ne_bytes(CLIENT),
        dst_ip: u32::from_ne_bytes(VIP),
        src_port: src_port.to_be(),
        dst_port: 80u16.to_be(),
        proto: IPPROTO_TCP,
        _pad: [0; 3],
    }
}

fn forwarded_to(frame: &[u8], id: u32) -> Vec<u8> {
    [&backend_mac(id)[..], &LB_MAC, &frame[12..]].concat()
}

/// Asserts `frame` is passed or dropped unchanged with `reason`, no map touched.
fn assert_rejected(maps: &MapContents, frame: &[u8], action: XdpAction, reason: Reason) {
    let decision = decide(frame, &INGRESS, maps);
    assert_eq!(
        (decision.action, decision.reason),
        (action, Some(reason)),
        "{frame:02x?}"
    );
    assert_eq!(decision.output, frame);
    assert_eq!(decision.flow_change, FlowChange::Unchanged);
    assert_eq!(decision.backend_id, None);
    assert_eq!(decision.service_traffic, None);
    assert_eq!(decision.backend_traffic, None);
}

#[test]
fn new_maglev_flow_is_recorded_counted_and_bounced() {
    let maps = web_maps();
    let frame = web_frame(40_000, TCP_SYN);
    let decision = decide(&frame, &INGRESS, &maps);

    let slot = flow_hash(&web_flow(40_000)) % TABLE_SIZE;
    let expected = maps.table_slot(slot).unwrap();
    let delta = Counters {
        packets: 1,
        bytes: frame.len() as u64,
        new_flows: 1,
    };
    assert_eq!(
        decision,
        Decision {
            action: XdpAction::Tx,
            output: forwarded_to(&frame, expected),
            reason: None,
            flow_key: Some(web_flow(40_000)),
            backend_id: Some(expected),
            flow_change: FlowChange::Inserted {
                key: web_flow(40_000),
                flow: Flow {
                    backend_id: expected,
                    last_seen: 0,
                },
            },
            cursor_advance: None,
            service_traffic: Some(Traffic { index: 0, delta }),
            backend_traffic: Some(Traffic {
                index: expected,
                delta
            }),
            source_bucket: None,
            insert_window: None,
            handshakes: Default::default(),
            nat: None,
            nat_client: None,
        }
    );
}

#[test]
fn established_flow_keeps_its_backend_while_it_serves() {
    let mut maps = web_maps();
    let frame = web_frame(40_000, 0x10);
    let first = decide(&frame, &INGRESS, &maps);
    maps.apply(&first);
    let first_backend = first.backend_id.unwrap();
    let other = (first_backend + 1) % 3;
    publish(
        &mut maps,
        key(80, IPPROTO_TCP),
        0,
        Scheduler::Maglev,
        &[other; 7],
    );

    let again = decide(&frame, &INGRESS, &maps);
    assert_eq!(again.backend_id, Some(first_backend));
    assert_eq!(again.flow_change, FlowChange::Unchanged);
    assert_eq!(again.backend_traffic.unwrap().delta.new_flows, 0);

    let mut draining = backend(first_backend, backend_state::DRAINING);
    maps.set_backend(first_backend, draining).unwrap();
    assert_eq!(
        decide(&frame, &INGRESS, &maps).backend_id,
        Some(first_backend)
    );

    // A SYN on the draining backend's entry is a new connection: scheduled
    // afresh, the entry replaced.
    let syn = decide(&web_frame(40_000, TCP_SYN), &INGRESS, &maps);
    assert_eq!(syn.backend_id, Some(other));
    assert!(matches!(syn.flow_change, FlowChange::Replaced { .. }));

    draining.state = backend_state::DOWN;
    maps.set_backend(first_backend, draining).unwrap();
    let moved = decide(&frame, &INGRESS, &maps);
    assert_eq!(moved.backend_id, Some(other));
    assert_eq!(
        moved.flow_change,
        FlowChange::Replaced {
            key: web_flow(40_000),
            flow: Flow {
                backend_id: other,
                last_seen: 0
            },
            previous: Flow {
                backend_id: first_backend,
                last_seen: 0,
            },
        }
    );
}

#[test]
fn flow_naming_a_backend_beyond_the_array_is_rescheduled() {
    let mut maps = web_maps();
    maps.insert_flow(
        web_flow(1),
        Flow {
            backend_id: 999,
            last_seen: 0,
        },
    );
    let decision = decide(&web_frame(1, 0x10), &INGRESS, &maps);
    assert!(matches!(
        decision.flow_change,
        FlowChange::Replaced {
            previous: Flow {
                backend_id: 999,
                last_seen: 0
            },
            ..
        }
    ));
}

#[test]
fn round_robin_walks_the_ring_and_wraps_a_stale_cursor() {
    let mut maps = maps_with(key(80, IPPROTO_TCP), 1, Scheduler::RoundRobin, &[2, 0, 1]);
    let mut chosen = Vec::new();
    for port in 0..4 {
        let decision = decide(&web_frame(port, TCP_SYN), &INGRESS, &maps);
        maps.apply(&decision);
        chosen.push(decision.backend_id.unwrap());
    }
    assert_eq!(chosen, [2, 0, 1, 2]);
    assert_eq!(maps.rr_cursor(1), Some(1));

    maps.set_rr_cursor(1, 50).unwrap();
    let decision = decide(&web_frame(9, TCP_SYN), &INGRESS, &maps);
    assert_eq!(decision.backend_id, Some(2));
    assert_eq!(
        decision.cursor_advance,
        Some(CursorAdvance {
            service_id: 1,
            next: 1
        })
    );
}

#[test]
fn round_robin_cursor_moves_past_an_unusable_slot() {
    let mut maps = maps_with(key(80, IPPROTO_TCP), 1, Scheduler::RoundRobin, &[5, 0]);
    let decision = decide(&web_frame(1, TCP_SYN), &INGRESS, &maps);
    assert_eq!(decision.action, XdpAction::Drop);
    assert_eq!(decision.reason, Some(Reason::BadBackend));
    assert_eq!(
        decision.cursor_advance,
        Some(CursorAdvance {
            service_id: 1,
            next: 1
        })
    );
    maps.apply(&decision);
    assert_eq!(
        decide(&web_frame(1, TCP_SYN), &INGRESS, &maps).backend_id,
        Some(0)
    );
}

#[test]
fn backend_behind_another_interface_is_redirected() {
    let mut maps = maps_with(key(53, IPPROTO_UDP), 0, Scheduler::Maglev, &[3; 7]);
    let mut remote = backend(3, backend_state::UP);
    remote.ifindex = 7;
    remote.src_mac = [2, 0, 0, 0, 7, 7];
    maps.set_backend(3, remote).unwrap();
    let frame = ethernet(0x0800, &ipv4(IPPROTO_UDP, &[], &udp(5000, 53, b"q")));
    let decision = decide(&frame, &INGRESS, &maps);
    assert_eq!(decision.action, XdpAction::Redirect);
    assert_eq!(
        decision.output,
        [&backend_mac(3)[..], &remote.src_mac, &frame[12..]].concat()
    );
}

#[test]
fn counters_beyond_the_stats_maps_are_not_counted() {
    let mut maps = web_maps();
    let mut service = maps.service(&key(80, IPPROTO_TCP)).unwrap();
    service.id = SIZES.max_services;
    maps.set_service(key(80, IPPROTO_TCP), service);
    let decision = decide(&web_frame(1, TCP_SYN), &INGRESS, &maps);
    assert_eq!(decision.action, XdpAction::Tx);
    assert_eq!(decision.service_traffic, None);
    assert!(decision.backend_traffic.is_some());

    service.scheduler = Scheduler::RoundRobin as u8;
    maps.set_service(key(80, IPPROTO_TCP), service);
    assert_rejected(
        &maps,
        &web_frame(1, TCP_SYN),
        XdpAction::Drop,
        Reason::BadBackend,
    );
}

#[test]
fn frames_for_other_macs_are_passed_untouched() {
    let maps = web_maps();
    let pass = XdpAction::Pass;
    let with_dst = |mac: [u8; 6]| {
        let mut frame = web_frame(1, TCP_SYN);
        frame[..6].copy_from_slice(&mac);
        frame
    };
    assert_rejected(
        &maps,
        &with_dst([2, 0, 0, 0, 0, 0xfd]),
        pass,
        Reason::NotForUs,
    );
    assert_rejected(&maps, &with_dst([0xff; 6]), pass, Reason::LinkMulticast);
    let vrrp_group = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x12];
    assert_rejected(&maps, &with_dst(vrrp_group), pass, Reason::LinkMulticast);
    // Until the local interface is written, no frame is for us.
    let mut unset = web_maps();
    unset
        .set_local_interface(LocalInterface::MAIN, LocalInterface::default())
        .unwrap();
    assert_rejected(&unset, &web_frame(1, TCP_SYN), pass, Reason::NotForUs);
    // Only packets to a VIP are checked: the rest pass for what they are.
    let mut other_ip = with_dst([0xff; 6]);
    other_ip[14 + 19] = 200;
    assert_rejected(&maps, &other_ip, pass, Reason::NotService);
    let mut arp = with_dst([0xff; 6]);
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_rejected(&maps, &arp, pass, Reason::NotIpv4);
}

#[test]
fn traffic_that_is_not_ours_passes() {
    let maps = web_maps();
    let pass = XdpAction::Pass;
    assert_rejected(&maps, &[0; 13], pass, Reason::ShortEthernet);
    let vlan = [&[0x08, 0x00][..], &ipv4(IPPROTO_TCP, &[], &tcp(1, 80, 0))].concat();
    assert_rejected(&maps, &ethernet(0x8100, &vlan), pass, Reason::NotIpv4);
    assert_rejected(
        &maps,
        &ethernet(0x0800, &[0x45; 19]),
        pass,
        Reason::ShortIpv4,
    );

    let mut other_ip = web_frame(1, TCP_SYN);
    other_ip[14 + 19] = 200;
    assert_rejected(&maps, &other_ip, pass, Reason::NotService);
    let icmp = ethernet(0x0800, &ipv4(1, &[], &[8, 0, 0, 0, 0, 0, 0, 0]));
    assert_rejected(&maps, &icmp, pass, Reason::VipIcmp);
}

#[test]
fn vip_traffic_no_service_takes_is_dropped() {
    let maps = web_maps();
    let drop = XdpAction::Drop;
    let other_port = ethernet(0x0800, &ipv4(IPPROTO_TCP, &[], &tcp(1, 443, 0)));
    assert_rejected(&maps, &other_port, drop, Reason::VipOtherPort);
    assert!(decide(&other_port, &INGRESS, &maps).flow_key.is_some());
    let udp_to_tcp_port = ethernet(0x0800, &ipv4(IPPROTO_UDP, &[], &udp(1, 80, &[])));
    assert_rejected(&maps, &udp_to_tcp_port, drop, Reason::VipOtherPort);
    let gre = ethernet(0x0800, &ipv4(47, &[], &[0; 8]));
    assert_rejected(&maps, &gre, drop, Reason::VipOtherProtocol);
}

#[test]
fn malformed_packets_to_a_vip_are_dropped() {
    let maps = web_maps();
    let drop = XdpAction::Drop;
    let frame = web_frame(1, TCP_SYN);
    let with = |offset: usize, byte: u8| {
        let mut frame = frame.clone();
        frame[offset] = byte;
        frame
    };
    assert_rejected(&maps, &with(14, 0x44), drop, Reason::BadIhl);
    assert_rejected(&maps, &with(17, 41), drop, Reason::BadTotalLength);
    assert_rejected(&maps, &with(17, 19), drop, Reason::BadTotalLength);
    assert_rejected(&maps, &with(20, 0x20), drop, Reason::Fragment);
    assert_rejected(&maps, &with(21, 1), drop, Reason::Fragment);
    assert_rejected(&maps, &with(14 + 20 + 12, 4 << 4), drop, Reason::ShortL4);
    assert_rejected(&maps, &with(14 + 20 + 12, 6 << 4), drop, Reason::ShortL4);
    let short_tcp = ethernet(0x0800, &ipv4(IPPROTO_TCP, &[], &[0; 19]));
    assert_rejected(&maps, &short_tcp, drop, Reason::ShortL4);
    let short_udp = ethernet(0x0800, &ipv4(IPPROTO_UDP, &[], &[0; 7]));
    assert_rejected(&maps, &short_udp, drop, Reason::ShortL4);
}

#[test]
fn lenient_fields_are_not_checked_today() {
    let maps = web_maps();
    let mut frame = web_frame(1, TCP_SYN);
    frame[14] = 0x65; // version 6, IHL 5
    frame[20] = 0xc0; // reserved and DF flags
    frame.extend_from_slice(&[0xee; 5]); // bytes beyond the total length
    let decision = decide(&frame, &INGRESS, &maps);
    assert_eq!(decision.action, XdpAction::Tx);
    assert_eq!(
        decision.backend_traffic.unwrap().delta.bytes,
        frame.len() as u64
    );

    let mut maps = maps_with(key(53, IPPROTO_UDP), 0, Scheduler::Maglev, &[1; 7]);
    maps.set_vip(u32::from_ne_bytes(VIP), 1);
    let mut zero_length = udp(5000, 53, b"abc");
    zero_length[4..6].copy_from_slice(&[0, 0]);
    let frame = ethernet(0x0800, &ipv4(IPPROTO_UDP, &[], &zero_length));
    assert_eq!(decide(&frame, &INGRESS, &maps).action, XdpAction::Tx);
}

#[test]
fn ip_options_are_skipped() {
    let maps = web_maps();
    let frame = ethernet(
        0x0800,
        &ipv4(IPPROTO_TCP, &[1, 1, 1, 0], &tcp(1, 80, TCP_SYN)),
    );
    let decision = decide(&frame, &INGRESS, &maps);
    assert_eq!(decision.flow_key, Some(web_flow(1)));
    assert_eq!(decision.action, XdpAction::Tx);
}

#[test]
fn empty_table_passes_and_inconsistent_tables_drop() {
    let maps = maps_with(key(80, IPPROTO_TCP), 0, Scheduler::Maglev, &[]);
    assert_rejected(
        &maps,
        &web_frame(1, TCP_SYN),
        XdpAction::Pass,
        Reason::NoBackend,
    );

    for table in [[7u32; 7], [100; 7]] {
        let maps = maps_with(key(80, IPPROTO_TCP), 0, Scheduler::Maglev, &table);
        assert_rejected(
            &maps,
            &web_frame(1, TCP_SYN),
            XdpAction::Drop,
            Reason::BadBackend,
        );
    }
    let mut maps = web_maps();
    let mut service = maps.service(&key(80, IPPROTO_TCP)).unwrap();
    service.table_base = SIZES.sched_table_entries;
    maps.set_service(key(80, IPPROTO_TCP), service);
    assert_rejected(
        &maps,
        &web_frame(1, TCP_SYN),
        XdpAction::Drop,
        Reason::BadBackend,
    );
}

/// xorshift64*: a small deterministic generator for the property below.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

/// Maps with random services (any table placement, length and scheduler),
/// random backends and random flows, all on the one VIP.
fn random_maps(rng: &mut Rng) -> MapContents {
    let mut maps = MapContents::new(SIZES);
    maps.set_local_interface(LocalInterface::MAIN, main_interface())
        .unwrap();
    for id in 0..SIZES.max_backends {
        let mut backend = backend(id, rng.byte() % 4);
        backend.ifindex = (rng.below(3)) as u32;
        maps.set_backend(id, backend).unwrap();
        let mut watch = crate::handshake::HandshakeWatch {
            failed_in_row: rng.below(5) as u32,
            failed_clients: rng.next() as u32,
            ..Default::default()
        };
        for pending in watch.pending.iter_mut().take(rng.below(5) as usize) {
            pending.client = rng.below(3) as u32;
            pending.port = rng.below(3) as u16;
            pending.opened_at = rng.next() as u32;
        }
        maps.set_handshakes(id, watch).unwrap();
    }
    for index in 0..SIZES.sched_table_entries {
        maps.set_table_slot(index, rng.below(10) as u32).unwrap();
    }
    for (port, proto) in [(80, IPPROTO_TCP), (53, IPPROTO_UDP)] {
        let service = Service {
            id: rng.below(6) as u32,
            table_base: [0, rng.next() as u32, rng.below(60) as u32][rng.below(3) as usize],
            table_len: [0, 1, 7, rng.next() as u32][rng.below(4) as usize],
            scheduler: rng.byte() % 3,
            table_half: 0,
            flags: rng.byte(),
            error_limit: rng.byte() % 4,
            handshake_timeout: [0, 1, u32::MAX][rng.below(3) as usize],
        };
        maps.set_service(key(port, proto), service);
    }
    for _ in 0..rng.below(4) {
        let data = crate::maps::AllowedSource {
            service_id: rng.below(6) as u32,
            src_ip: rng.next() as u32,
        };
        maps.set_allowed(rng.below(65) as u32, data);
    }
    for id in 0..SIZES.max_services {
        let limit = crate::maps::RateLimit {
            refill_interval_ns: [0, 1, rng.next() as u32][rng.below(3) as usize],
            burst: [0, 1, rng.next() as u32][rng.below(3) as usize],
        };
        maps.set_rate_limit(id, limit).unwrap();
    }
    maps.set_vip(u32::from_ne_bytes(VIP), 2);
    for id in 0..SIZES.max_services {
        maps.set_rr_cursor(id, [0, 3, u32::MAX][rng.below(3) as usize])
            .unwrap();
    }
    // NAT: the servers' side in use or not, on its own MAC or the main
    // one's; some backends' replies known, on either protocol; some
    // clients learnt.
    let servers_mac = [SERVERS_MAC, LB_MAC][rng.below(2) as usize];
    let servers = LocalInterface {
        mac: servers_mac,
        _pad: [0; 2],
        ifindex: rng.below(3) as u32,
    };
    maps.set_local_interface(LocalInterface::SERVERS, servers)
        .unwrap();
    for id in 0..4 {
        if rng.below(2) == 0 {
            let proto = [IPPROTO_TCP, IPPROTO_UDP][rng.below(2) as usize];
            let backend = nat_endpoint(backend(id, backend_state::UP).ip, NAT_PORT, proto);
            maps.set_nat_reverse(backend, nat_endpoint(u32::from_ne_bytes(VIP), 80, proto));
        }
    }
    if rng.below(2) == 0 {
        maps.set_nat_client(u32::from_ne_bytes(CLIENT), nat_client(CLIENT_MAC));
    }
    maps
}

#[test]
fn never_panics_and_keeps_its_invariants_on_random_input() {
    let mut rng = Rng(0x5eed);
    let templates = [
        web_frame(1, TCP_SYN),
        ethernet(
            0x0800,
            &ipv4(IPPROTO_UDP, &[1, 1, 1, 0], &udp(9, 53, b"hello")),
        ),
        reply_frame(0, IPPROTO_TCP, b"hello"),
        reply_frame(1, IPPROTO_UDP, b"hello"),
    ];
    for round in 0..20_000 {
        let mut maps = random_maps(&mut rng);
        let frame: Vec<u8> = if round % 2 == 0 {
            let len = rng.below(80) as usize;
            (0..len).map(|_| rng.byte()).collect()
        } else {
            let mut frame = templates[round % templates.len()].clone();
            for _ in 0..rng.below(4) {
                let at = rng.below(frame.len() as u64) as usize;
                frame[at] = rng.byte();
            }
            frame.truncate(rng.below(frame.len() as u64 + 1) as usize);
            frame
        };
        if rng.below(2) == 0 {
            if let Ok(eth) = wire::EthernetFrame::new_checked(&frame) {
                if let Ok(ip) = wire::Ipv4Header::new_checked(eth.payload()) {
                    maps.set_vip(ip.dst_addr(), 1);
                }
            }
        }
        let decision = decide(&frame, &INGRESS, &maps);
        assert_eq!(decision.output.len(), frame.len());
        let forwarded = matches!(decision.action, XdpAction::Tx | XdpAction::Redirect);
        assert_eq!(forwarded, decision.reason.is_none(), "{decision:?}");
        let reply = matches!(decision.nat, Some(NatRewrite::Reply(_)));
        assert_eq!(forwarded, decision.backend_id.is_some() != reply);
        if decision.nat_client.is_some() {
            assert!(decision.flow_change.is_new_flow(), "{decision:?}");
        }
        if !forwarded {
            assert_eq!(decision.output, frame);
            assert_eq!(decision.flow_change, FlowChange::Unchanged);
        }
        maps.apply(&decision);
    }
}

/// ICMP "fragmentation needed" to the VIP quoting `quoted` bytes of a segment
/// the backend sent on the web flow of client port `client_port`.
fn frag_needed(client_port: u16, quoted: usize) -> Vec<u8> {
    let mut reply = ipv4(IPPROTO_TCP, &[], &tcp(80, client_port, 0x10));
    // The reply goes from the VIP to the client.
    reply[12..16].copy_from_slice(&VIP);
    reply[16..20].copy_from_slice(&CLIENT);
    let mut message = vec![3, 4, 0, 0, 0, 0, 0x05, 0xdc];
    message.extend_from_slice(&reply[..quoted]);
    ethernet(0x0800, &ipv4(1, &[], &message))
}

#[test]
fn frag_needed_for_a_flow_goes_to_its_backend_unrecorded_and_uncounted() {
    let mut maps = web_maps();
    maps.insert_flow(
        web_flow(1),
        Flow {
            backend_id: 2,
            last_seen: 0,
        },
    );
    let frame = frag_needed(1, 28);
    let decision = decide(&frame, &INGRESS, &maps);
    assert_eq!(decision.action, XdpAction::Tx);
    assert_eq!(decision.backend_id, Some(2));
    assert_eq!(decision.output[..6], backend_mac(2));
    assert_eq!(decision.output[12..], frame[12..]);
    assert_eq!(decision.flow_change, FlowChange::Unchanged);
    assert_eq!(decision.backend_traffic, None);

    let pass = XdpAction::Pass;
    // A flow with no entry, or a quote too short for the ports: the kernel's.
    assert_rejected(&maps, &frag_needed(2, 28), pass, Reason::VipIcmp);
    assert_rejected(&maps, &frag_needed(1, 27), pass, Reason::VipIcmp);
    // Its backend no longer serves: the kernel's too.
    maps.set_backend(2, backend(2, backend_state::DOWN))
        .unwrap();
    assert_rejected(&maps, &frame, pass, Reason::VipIcmp);
}

// flood protection

/// `maps` with service `key`'s flags set to `flags`.
fn with_flags(mut maps: MapContents, key: ServiceKey, flags: u8) -> MapContents {
    let service = maps.service(&key).unwrap();
    maps.set_service(key, Service { flags, ..service });
    maps
}

/// `web_maps` with a per-source limit on the web service.
fn rate_limited_maps(per_second: u32, burst: u32) -> MapContents {
    let mut maps = web_maps();
    maps.set_rate_limit(0, crate::maps::RateLimit::new(per_second, burst))
        .unwrap();
    with_flags(maps, key(80, IPPROTO_TCP), service_flags::RATE_LIMIT)
}

#[test]
fn a_rate_limit_applies_only_while_the_services_flag_is_set() {
    // Burst 0: no new flow gets through, whatever the clock.
    let limited = rate_limited_maps(1, 0);
    let syn = web_frame(1, TCP_SYN);
    assert_rejected(&limited, &syn, XdpAction::Drop, Reason::RateLimited);
    let unflagged = with_flags(limited, key(80, IPPROTO_TCP), 0);
    let decision = decide(&syn, &INGRESS, &unflagged);
    assert_eq!(
        (decision.action, decision.source_bucket),
        (XdpAction::Tx, None)
    );
}

/// `web_maps` with the web service's allow-list holding `prefixes`.
fn allow_listed_maps(prefixes: &[([u8; 4], u8)]) -> MapContents {
    let mut maps = with_flags(web_maps(), key(80, IPPROTO_TCP), service_flags::ALLOW_LIST);
    for &(octets, len) in prefixes {
        let (prefix_len, data) = SourcePrefix::new(octets, len).unwrap().allow_key(0);
        maps.set_allowed(prefix_len, data);
    }
    maps
}

fn web_frame_from(client: [u8; 4], flags: u8) -> Vec<u8> {
    let mut frame = web_frame(1, flags);
    frame[26..30].copy_from_slice(&client);
    frame
}

#[test]
fn sources_outside_an_allow_list_are_dropped_established_flows_included() {
    let maps = allow_listed_maps(&[([10, 0, 0, 0], 16), ([192, 0, 2, 7], 32)]);
    // CLIENT is 10.0.1.1: inside 10.0.0.0/16.
    let allowed = decide(&web_frame(1, TCP_SYN), &INGRESS, &maps);
    assert_eq!(allowed.action, XdpAction::Tx);
    assert_eq!(
        decide(&web_frame_from([192, 0, 2, 7], TCP_SYN), &INGRESS, &maps).action,
        XdpAction::Tx
    );
    for outside in [[192, 0, 2, 8], [10, 1, 0, 1], [0, 0, 0, 0]] {
        let frame = web_frame_from(outside, TCP_SYN);
        assert_rejected(&maps, &frame, XdpAction::Drop, Reason::NotAllowed);
    }
    // A flow already in the table is dropped too once its source is out.
    let mut maps = maps;
    maps.apply(&allowed);
    let mut narrowed = allow_listed_maps(&[([192, 0, 2, 7], 32)]);
    narrowed.insert_flow(web_flow(1), maps.flow(&web_flow(1)).unwrap());
    assert_rejected(
        &narrowed,
        &web_frame(1, 0x10),
        XdpAction::Drop,
        Reason::NotAllowed,
    );
    // An empty list (flag set, no entry) takes no source; entries of another
    // service do not count, nor entries without the flag.
    let empty = allow_listed_maps(&[]);
    assert_rejected(
        &empty,
        &web_frame(1, TCP_SYN),
        XdpAction::Drop,
        Reason::NotAllowed,
    );
    let mut others = empty.clone();
    let (len, data) = SourcePrefix::new([0; 4], 0).unwrap().allow_key(1);
    others.set_allowed(len, data);
    assert_rejected(
        &others,
        &web_frame(1, TCP_SYN),
        XdpAction::Drop,
        Reason::NotAllowed,
    );
    let unflagged = with_flags(narrowed, key(80, IPPROTO_TCP), 0);
    assert_eq!(
        decide(&web_frame(1, TCP_SYN), &INGRESS, &unflagged).action,
        XdpAction::Tx
    );
}

fn at(now_ns: u64) -> Ingress {
    Ingress { now_ns, ..INGRESS }
}

#[test]
fn new_flows_beyond_a_sources_bucket_are_dropped_established_ones_are_not() {
    // 10 per second, burst 2: from one source, the third new flow within
    // 100 ms is dropped; a flow already in the table always passes.
    let mut maps = rate_limited_maps(10, 2);
    for port in [1, 2] {
        let decision = decide(&web_frame(port, TCP_SYN), &at(1_000), &maps);
        assert_eq!(decision.action, XdpAction::Tx);
        assert!(decision.source_bucket.is_some());
        maps.apply(&decision);
    }
    let third = decide(&web_frame(3, TCP_SYN), &at(2_000), &maps);
    assert_eq!(
        (third.action, third.reason),
        (XdpAction::Drop, Some(Reason::RateLimited))
    );
    assert_eq!(third.flow_change, FlowChange::Unchanged);
    assert_eq!(third.source_bucket, None);
    let established = decide(&web_frame(1, 0x10), &at(2_000), &maps);
    assert_eq!(established.action, XdpAction::Tx);
    assert_eq!(established.source_bucket, None);

    // Another source has its own bucket; 100 ms later the first has a token.
    let mut other = web_frame(3, TCP_SYN);
    other[26..30].copy_from_slice(&[10, 0, 1, 2]);
    assert_eq!(decide(&other, &at(2_000), &maps).action, XdpAction::Tx);
    assert_eq!(
        decide(&web_frame(3, TCP_SYN), &at(100_001_000), &maps).action,
        XdpAction::Tx
    );
}

#[test]
fn above_the_insert_limit_new_flows_are_forwarded_without_an_entry() {
    let mut maps = web_maps();
    maps.set_settings(crate::maps::Settings {
        flow_insert_limit_per_cpu: 2,
        ..crate::maps::Settings::default()
    });
    for port in [1, 2] {
        let decision = decide(&web_frame(port, TCP_SYN), &at(10), &maps);
        assert!(matches!(decision.flow_change, FlowChange::Inserted { .. }));
        maps.apply(&decision);
    }
    let skipped = decide(&web_frame(3, TCP_SYN), &at(20), &maps);
    let expected_backend = maps
        .table_slot(flow_hash(&web_flow(3)) % TABLE_SIZE)
        .unwrap();
    assert_eq!(skipped.action, XdpAction::Tx);
    assert_eq!(skipped.backend_id, Some(expected_backend));
    assert_eq!(skipped.reason, Some(Reason::InsertSkipped));
    assert_eq!(
        skipped.flow_change,
        FlowChange::Skipped {
            key: web_flow(3),
            flow: Flow {
                backend_id: expected_backend,
                last_seen: 0,
            }
        }
    );
    assert_eq!(skipped.backend_traffic.unwrap().delta.new_flows, 1);
    maps.apply(&skipped);
    assert_eq!(maps.flow(&web_flow(3)), None);
    assert_eq!(maps.flow_count(), 2);
    // A second after the window began (at 0, when the maps were made), a
    // new one starts.
    let next_second = decide(&web_frame(3, TCP_SYN), &at(1_000_000_010), &maps);
    assert!(matches!(
        next_second.flow_change,
        FlowChange::Inserted { .. }
    ));
}

#[test]
fn echo_requests_to_a_vip_are_dropped_only_when_configured() {
    let echo = ethernet(0x0800, &ipv4(1, &[], &[8, 0, 0xf7, 0xff, 0, 0, 0, 0]));
    let reply = ethernet(0x0800, &ipv4(1, &[], &[0, 0, 0xff, 0xff, 0, 0, 0, 0]));
    // A 7-byte ICMP message is no echo request: its header is cut short.
    let cut = ethernet(0x0800, &ipv4(1, &[], &[8, 0, 0, 0, 0, 0, 0]));
    let pass = XdpAction::Pass;
    let maps = web_maps();
    assert_rejected(&maps, &echo, pass, Reason::VipIcmp);
    let mut dropping = web_maps();
    dropping.set_settings(crate::maps::Settings {
        vip_icmp_echo: crate::maps::vip_icmp_echo::DROP,
        ..crate::maps::Settings::default()
    });
    assert_rejected(&dropping, &echo, XdpAction::Drop, Reason::VipIcmpEcho);
    assert_rejected(&dropping, &reply, pass, Reason::VipIcmp);
    assert_rejected(&dropping, &cut, pass, Reason::VipIcmp);
    // To another address, ICMP is not ours at all.
    let mut other = echo.clone();
    other[14 + 19] = 200;
    assert_rejected(&dropping, &other, pass, Reason::NotService);
    // Fragmentation needed still reaches its flow's backend.
    let first = decide(&web_frame(7, TCP_SYN), &INGRESS, &dropping);
    dropping.apply(&first);
    let decision = decide(&frag_needed(7, 28), &INGRESS, &dropping);
    assert_eq!(decision.backend_id, first.backend_id);
}

#[test]
fn established_flows_are_marked_seen_once_per_tick_and_closed_by_fin_or_rst() {
    const ACK: u8 = 0x10;
    const FIN_ACK: u8 = 0x11;
    let mut maps = web_maps();
    maps.set_flow_clock(100);
    let opened = decide(&web_frame(40_000, TCP_SYN), &INGRESS, &maps);
    let FlowChange::Inserted { flow, .. } = opened.flow_change else {
        panic!("a new flow is inserted: {:?}", opened.flow_change);
    };
    assert_eq!(flow.last_seen, 100);
    maps.apply(&opened);

    // The same tick: read, not written.
    let same_tick = decide(&web_frame(40_000, ACK), &INGRESS, &maps);
    assert_eq!(same_tick.flow_change, FlowChange::Unchanged);
    maps.set_flow_clock(101);
    let next_tick = decide(&web_frame(40_000, ACK), &INGRESS, &maps);
    assert_eq!(
        next_tick.flow_change,
        FlowChange::Marked {
            key: web_flow(40_000),
            last_seen: 101
        }
    );
    assert_eq!(next_tick.backend_id, opened.backend_id);
    assert_eq!(next_tick.backend_traffic.unwrap().delta.new_flows, 0);
    maps.apply(&next_tick);
    assert_eq!(maps.flow(&web_flow(40_000)).unwrap().last_seen, 101);

    // The client's FIN closes it; the last ACK leaves it closed.
    let fin = decide(&web_frame(40_000, FIN_ACK), &INGRESS, &maps);
    maps.apply(&fin);
    assert_eq!(
        maps.flow(&web_flow(40_000)).unwrap().last_seen,
        Flow::CLOSED
    );
    maps.set_flow_clock(102);
    let last_ack = decide(&web_frame(40_000, ACK), &INGRESS, &maps);
    assert_eq!(last_ack.flow_change, FlowChange::Unchanged);
    assert_eq!(last_ack.backend_id, opened.backend_id);
}

const TCP_ACK: u8 = 0x10;

/// [`web_maps`] with passive health on: `error_limit` and a handshake
/// timeout of `timeout` ticks.
fn observed_maps(error_limit: u8, timeout: u32) -> MapContents {
    let mut maps = web_maps();
    let key = key(80, IPPROTO_TCP);
    let service = maps.service(&key).unwrap();
    maps.set_service(
        key,
        Service {
            flags: service_flags::OBSERVE,
            error_limit,
            handshake_timeout: timeout,
            ..service
        },
    );
    maps
}

#[test]
fn a_watched_handshake_completes_with_the_clients_ack() {
    let mut maps = observed_maps(3, u32::MAX);
    maps.set_flow_clock(50);
    let syn = decide(&web_frame(40_000, TCP_SYN), &INGRESS, &maps);
    let backend_id = syn.backend_id.unwrap();
    let FlowChange::Inserted { flow, .. } = syn.flow_change else {
        panic!("{:?}", syn.flow_change)
    };
    assert_eq!(flow.last_seen, Flow::opened(50));
    let (watched_id, watch) = *syn.handshakes.watches.last().unwrap();
    assert_eq!(watched_id, backend_id);
    assert_eq!(watch.pending[0].port, 40_000u16.to_be());
    maps.apply(&syn);

    let ack = decide(&web_frame(40_000, TCP_ACK), &INGRESS, &maps);
    assert_eq!(ack.backend_id, Some(backend_id));
    assert_eq!(
        ack.flow_change,
        FlowChange::Marked {
            key: web_flow(40_000),
            last_seen: 50
        },
        "the pending bit cleared"
    );
    let completed = crate::handshake::HandshakeDelta {
        completed: 1,
        ..Default::default()
    };
    assert_eq!(ack.handshakes.counted, [(backend_id, completed)]);
    assert_eq!(ack.handshakes.watches, [(backend_id, Default::default())]);
    maps.apply(&ack);
    // The next ACK is an established packet: nothing counted.
    let data = decide(&web_frame(40_000, TCP_ACK), &INGRESS, &maps);
    assert_eq!(data.handshakes, HandshakeEffect::default());
}

#[test]
fn a_retransmitted_syn_goes_to_the_next_backend_and_an_established_flow_never_moves() {
    let mut maps = observed_maps(3, u32::MAX);
    let first = decide(&web_frame(40_000, TCP_SYN), &INGRESS, &maps);
    let dead = first.backend_id.unwrap();
    maps.apply(&first);
    let again = decide(&web_frame(40_000, TCP_SYN), &INGRESS, &maps);
    let moved_to = again.backend_id.unwrap();
    assert_ne!(moved_to, dead);
    assert!(matches!(
        again.flow_change,
        FlowChange::Replaced { flow, .. } if flow.backend_id == moved_to && flow.handshake_pending()
    ));
    let failed = crate::handshake::HandshakeDelta {
        retransmitted: 1,
        failed: 1,
        completed: 0,
    };
    assert_eq!(again.handshakes.counted, [(dead, failed)]);
    assert_eq!(again.backend_traffic.unwrap().delta.new_flows, 1);
    maps.apply(&again);
    assert_eq!(maps.handshakes(dead).unwrap().failed_in_row, 1);

    // Completed on the second backend, a later SYN on the tuple stays.
    maps.apply(&decide(&web_frame(40_000, TCP_ACK), &INGRESS, &maps));
    let reused = decide(&web_frame(40_000, TCP_SYN), &INGRESS, &maps);
    assert_eq!(reused.backend_id, Some(moved_to));
    assert_eq!(reused.handshakes, HandshakeEffect::default());
}

#[test]
fn overdue_handshakes_from_two_clients_eject_a_backend_and_one_clients_never_do() {
    // Timeout 0: every watched handshake is overdue at the next SYN.
    let mut maps = observed_maps(2, 0);
    let flow_from = |client: [u8; 4], port: u16| FlowKey {
        src_ip: u32::from_ne_bytes(client),
        ..web_flow(port)
    };
    let frame_from = |client: [u8; 4], port: u16| {
        let mut frame = web_frame_from(client, TCP_SYN);
        frame[34..36].copy_from_slice(&port.to_be_bytes());
        frame
    };
    // SYNs that Maglev gives the same backend, from one client.
    let target = maps
        .table_slot(flow_hash(&flow_from(CLIENT, 1)) % TABLE_SIZE)
        .unwrap();
    let same_backend = |client: [u8; 4], maps: &MapContents| {
        (1u16..)
            .filter(|&port| {
                maps.table_slot(flow_hash(&flow_from(client, port)) % TABLE_SIZE) == Some(target)
            })
            .take(4)
            .collect::<Vec<_>>()
    };
    for port in same_backend(CLIENT, &maps) {
        let decision = decide(&frame_from(CLIENT, port), &INGRESS, &maps);
        assert_eq!(decision.backend_id, Some(target), "one client never ejects");
        maps.apply(&decision);
    }
    assert!(maps.handshakes(target).unwrap().failed_in_row >= 2);
    let other = [10, 0, 1, 2];
    let ports = same_backend(other, &maps);
    maps.apply(&decide(&frame_from(other, ports[0]), &INGRESS, &maps));
    let ejected = decide(&frame_from(other, ports[1]), &INGRESS, &maps);
    assert_ne!(
        ejected.backend_id,
        Some(target),
        "failures from two clients eject: {:?}",
        maps.handshakes(target)
    );
}

#[test]
fn a_retransmitted_syn_on_a_backend_no_longer_serving_counts_against_it() {
    let mut maps = observed_maps(3, u32::MAX);
    let first = decide(&web_frame(40_000, TCP_SYN), &INGRESS, &maps);
    let dead = first.backend_id.unwrap();
    maps.apply(&first);
    // Marked down (passive health writes it draining) before the client
    // retransmits: the SYN is scheduled afresh, and still counted.
    maps.set_backend(dead, backend(dead, backend_state::DRAINING))
        .unwrap();
    let live = (0..3).find(|&id| id != dead).unwrap();
    let slots = [0, 1, 2, 0, 1, 2, 0].map(|id| if id == dead { live } else { id });
    let key = key(80, IPPROTO_TCP);
    let service = maps.service(&key).unwrap();
    publish(&mut maps, key, 0, Scheduler::Maglev, &slots);
    maps.set_service(
        key,
        Service {
            flags: service.flags,
            error_limit: 3,
            handshake_timeout: u32::MAX,
            ..maps.service(&key).unwrap()
        },
    );
    let again = decide(&web_frame(40_000, TCP_SYN), &INGRESS, &maps);
    assert!(
        matches!(again.flow_change, FlowChange::Replaced { flow, .. } if flow.backend_id != dead),
        "{:?}",
        again.flow_change
    );
    let failed = crate::handshake::HandshakeDelta {
        retransmitted: 1,
        failed: 1,
        completed: 0,
    };
    assert_eq!(again.handshakes.counted, [(dead, failed)]);
}

// NAT

/// The servers' side interface: its own MAC, behind another ifindex.
const SERVERS_MAC: [u8; 6] = [2, 0, 0, 0, 8, 0xfe];
const SERVERS_IFINDEX: u32 = 2;
/// The port the `nat` backends serve the web service on.
const NAT_PORT: u16 = 8080;

fn nat_endpoint(addr: u32, port: u16, proto: u8) -> crate::maps::Endpoint {
    crate::maps::Endpoint {
        addr,
        port: port.to_be(),
        proto,
        _pad: 0,
    }
}

fn nat_client(mac: [u8; 6]) -> crate::maps::NatClient {
    crate::maps::NatClient { mac, _pad: [0; 2] }
}

/// [`web_maps`] with the web service on `nat` and a DNS service on `nat`
/// too, the backends serving both on [`NAT_PORT`], their replies known,
/// and the servers' side in use.
fn nat_maps() -> MapContents {
    nat_maps_replying(&[IPPROTO_TCP, IPPROTO_UDP])
}

/// [`nat_maps`] with the backends' replies known for `protos` only.
fn nat_maps_replying(protos: &[u8]) -> MapContents {
    let mut maps = with_flags(web_maps(), key(80, IPPROTO_TCP), service_flags::NAT);
    publish(
        &mut maps,
        key(53, IPPROTO_UDP),
        1,
        Scheduler::Maglev,
        &[3; 7],
    );
    maps = with_flags(maps, key(53, IPPROTO_UDP), service_flags::NAT);
    maps.set_local_interface(
        LocalInterface::SERVERS,
        LocalInterface {
            mac: SERVERS_MAC,
            _pad: [0; 2],
            ifindex: SERVERS_IFINDEX,
        },
    )
    .unwrap();
    for id in 0..4 {
        let mut nat_backend = backend(id, backend_state::UP);
        nat_backend.port = NAT_PORT.to_be();
        maps.set_backend(id, nat_backend).unwrap();
        let services = [(80, IPPROTO_TCP), (53, IPPROTO_UDP)];
        for (port, proto) in services.into_iter().filter(|(_, p)| protos.contains(p)) {
            maps.set_nat_reverse(
                nat_endpoint(nat_backend.ip, NAT_PORT, proto),
                nat_endpoint(u32::from_ne_bytes(VIP), port, proto),
            );
        }
    }
    maps
}

/// The TCP or UDP checksum of `segment` from `src` to `dst`, over the
/// pseudo-header: 0 when the checksum in it is right.
fn l4_checksum(src: [u8; 4], dst: [u8; 4], proto: u8, segment: &[u8]) -> u16 {
    use crate::checksum::{fold, sum};
    let pseudo_header = [
        &src[..],
        &dst[..],
        &[0, proto],
        &(segment.len() as u16).to_be_bytes(),
    ]
    .concat();
    !fold(sum(sum(0, &pseudo_header), segment))
}

/// An Ethernet frame from `src_mac` to `dst_mac` of the `proto` `segment`
/// (its checksum field zero) from `src` to `dst`, both checksums computed;
/// a UDP checksum that comes out 0 is sent as 0xffff.
fn checksummed(
    macs: ([u8; 6], [u8; 6]),
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    mut segment: Vec<u8>,
) -> Vec<u8> {
    let at = if proto == IPPROTO_TCP { 16 } else { 6 };
    let mut sum = l4_checksum(src, dst, proto, &segment);
    if proto == IPPROTO_UDP && sum == 0 {
        sum = 0xffff;
    }
    segment[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    let mut packet = ipv4(proto, &[], &segment);
    packet[12..16].copy_from_slice(&src);
    packet[16..20].copy_from_slice(&dst);
    let header = crate::checksum::checksum(&packet[..20]);
    packet[10..12].copy_from_slice(&header.to_be_bytes());
    [&macs.0[..], &macs.1, &[0x08, 0x00], &packet].concat()
}

/// Whether the IPv4 header and the TCP or UDP checksum of the 20-byte-header
/// packet in `frame` verify (a UDP checksum of 0 is none, and verifies).
fn checksums_verify(frame: &[u8]) -> bool {
    let ip = &frame[14..34];
    let (src, dst) = (
        ip[12..16].try_into().unwrap(),
        ip[16..20].try_into().unwrap(),
    );
    let segment = &frame[34..];
    let no_udp_checksum = ip[9] == IPPROTO_UDP && segment[6..8] == [0, 0];
    crate::checksum::checksum(ip) == 0
        && (no_udp_checksum || l4_checksum(src, dst, ip[9], segment) == 0)
}

/// A client's packet to the web service (TCP) or the DNS service (UDP), with
/// valid checksums.
fn nat_client_frame(proto: u8, src_port: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let segment = if proto == IPPROTO_TCP {
        [&tcp(src_port, 80, flags)[..], payload].concat()
    } else {
        udp(src_port, 53, payload)
    };
    checksummed((LB_MAC, CLIENT_MAC), CLIENT, VIP, proto, segment)
}

/// Backend `id`'s reply from [`NAT_PORT`] to the client's port 40000, to the
/// servers' MAC, with valid checksums.
fn reply_frame(id: u32, proto: u8, payload: &[u8]) -> Vec<u8> {
    let segment = if proto == IPPROTO_TCP {
        [&tcp(NAT_PORT, 40_000, TCP_ACK)[..], payload].concat()
    } else {
        udp(NAT_PORT, 40_000, payload)
    };
    let backend_ip = backend(id, backend_state::UP).ip.to_ne_bytes();
    checksummed(
        (SERVERS_MAC, backend_mac(id)),
        backend_ip,
        CLIENT,
        proto,
        segment,
    )
}

#[test]
fn a_nat_service_rewrites_the_destination_with_checksums_that_verify() {
    let maps = nat_maps();
    for (proto, payload) in [
        (IPPROTO_TCP, &b""[..]),
        (IPPROTO_TCP, b"GET / HTTP/1.1\r\n\r\n"),
        (IPPROTO_UDP, b"odd"),
    ] {
        let frame = nat_client_frame(proto, 40_000, TCP_SYN, payload);
        assert!(checksums_verify(&frame));
        let decision = decide(&frame, &INGRESS, &maps);
        let id = decision.backend_id.expect("forwarded");
        let backend = maps.backend(id).unwrap();
        assert_eq!(decision.action, XdpAction::Tx);
        assert_eq!(decision.nat, Some(NatRewrite::ToBackend));
        let output = &decision.output;
        assert_eq!(output[..12], [&backend_mac(id)[..], &LB_MAC].concat());
        assert_eq!(output[30..34], backend.ip.to_ne_bytes(), "the destination");
        assert_eq!(
            output[36..38],
            NAT_PORT.to_be_bytes(),
            "the destination port"
        );
        assert_eq!(output[26..30], CLIENT, "the source stays");
        assert_eq!(output[34..36], 40_000u16.to_be_bytes());
        assert!(checksums_verify(output), "{proto}: {output:02x?}");
        // Nothing else changes.
        let unchanged = |frame: &[u8]| {
            let mut frame = frame.to_vec();
            frame[..12].fill(0);
            frame[24..26].fill(0);
            frame[30..38].fill(0);
            let at = if proto == IPPROTO_TCP { 50 } else { 40 };
            frame[at..at + 2].fill(0);
            frame
        };
        assert_eq!(unchanged(output), unchanged(&frame));
    }
}

#[test]
fn a_nat_forward_with_ip_options_rewrites_past_them() {
    let maps = nat_maps();
    let frame = ethernet(
        0x0800,
        &ipv4(IPPROTO_TCP, &[1, 1, 1, 0], &tcp(40_000, 80, TCP_SYN)),
    );
    let decision = decide(&frame, &INGRESS, &maps);
    let backend = maps.backend(decision.backend_id.unwrap()).unwrap();
    assert_eq!(decision.output[30..34], backend.ip.to_ne_bytes());
    assert_eq!(decision.output[34..38], frame[34..38], "the options stay");
    assert_eq!(decision.output[40..42], NAT_PORT.to_be_bytes());
}

#[test]
fn a_backends_reply_is_translated_back_to_its_service_and_sent_to_the_client() {
    let mut maps = nat_maps();
    maps.set_nat_client(u32::from_ne_bytes(CLIENT), nat_client(CLIENT_MAC));
    for (proto, service_port) in [(IPPROTO_TCP, 80u16), (IPPROTO_UDP, 53)] {
        let frame = reply_frame(2, proto, b"HTTP/1.1 200 OK\r\n");
        let decision = decide(&frame, &INGRESS, &maps);
        let backend_ip = backend(2, backend_state::UP).ip;
        assert_eq!(
            decision,
            Decision {
                action: XdpAction::Tx,
                output: decision.output.clone(),
                reason: None,
                flow_key: None,
                backend_id: None,
                flow_change: FlowChange::Unchanged,
                cursor_advance: None,
                service_traffic: None,
                backend_traffic: None,
                source_bucket: None,
                insert_window: None,
                handshakes: HandshakeEffect::default(),
                nat: Some(NatRewrite::Reply(nat_endpoint(backend_ip, NAT_PORT, proto))),
                nat_client: None,
            }
        );
        let output = &decision.output;
        assert_eq!(output[..12], [&CLIENT_MAC[..], &LB_MAC].concat());
        assert_eq!(output[26..30], VIP, "the source");
        assert_eq!(
            output[34..36],
            service_port.to_be_bytes(),
            "the source port"
        );
        assert_eq!(output[30..34], CLIENT, "the destination stays");
        assert!(checksums_verify(output), "{proto}: {output:02x?}");
    }
    // The main interface is not the one it came in on: redirected there.
    let mut main = main_interface();
    main.ifindex = 9;
    maps.set_local_interface(LocalInterface::MAIN, main)
        .unwrap();
    let decision = decide(&reply_frame(0, IPPROTO_TCP, b""), &INGRESS, &maps);
    assert_eq!(decision.action, XdpAction::Redirect);
}

#[test]
fn only_a_known_backends_whole_unfragmented_reply_to_the_servers_mac_is_translated() {
    let mut maps = nat_maps();
    maps.set_nat_client(u32::from_ne_bytes(CLIENT), nat_client(CLIENT_MAC));
    let pass = XdpAction::Pass;
    let reply = reply_frame(1, IPPROTO_TCP, b"");
    let with = |offset: usize, bytes: &[u8]| {
        let mut frame = reply.clone();
        frame[offset..offset + bytes.len()].copy_from_slice(bytes);
        frame
    };
    for (frame, what) in [
        (with(0, &LB_MAC), "to the main MAC"),
        (with(0, &[0xff; 6]), "broadcast"),
        (with(14, &[0x44]), "IHL 4"),
        (with(20, &[0x20, 0]), "more fragments"),
        (with(20, &[0, 1]), "a fragment offset"),
        (with(23, &[1]), "ICMP"),
        (with(34, &8081u16.to_be_bytes()), "another source port"),
        (with(26, &[10, 0, 0, 99]), "another source"),
        (reply[..14 + 20 + 19].to_vec(), "19 bytes of TCP"),
        (with(14, &[0x46]), "IHL 6: the TCP header is cut short"),
    ] {
        let decision = decide(&frame, &INGRESS, &maps);
        assert_eq!(
            (decision.action, decision.reason),
            (pass, Some(Reason::NotService)),
            "{what}"
        );
        assert_eq!(decision.output, frame, "{what}");
    }
    // UDP needs its 8 bytes in the frame.
    let udp_reply = reply_frame(1, IPPROTO_UDP, b"");
    assert_rejected(&maps, &udp_reply[..14 + 20 + 7], pass, Reason::NotService);
    assert!(decide(&udp_reply[..14 + 20 + 8], &INGRESS, &maps)
        .nat
        .is_some());
    // The protocol is part of the backend's endpoint.
    let mut udp_only = nat_maps_replying(&[IPPROTO_UDP]);
    udp_only.set_nat_client(u32::from_ne_bytes(CLIENT), nat_client(CLIENT_MAC));
    assert_rejected(&udp_only, &reply, pass, Reason::NotService);
    assert!(decide(&udp_reply, &INGRESS, &udp_only).nat.is_some());
    // The servers' entry unused: nothing is a reply.
    let mut unused = maps.clone();
    unused
        .set_local_interface(
            LocalInterface::SERVERS,
            LocalInterface {
                ifindex: 0,
                ..unused.local_interface(LocalInterface::SERVERS).unwrap()
            },
        )
        .unwrap();
    assert_rejected(&unused, &reply, pass, Reason::NotService);
    // The total length is not looked at, nor bytes beyond it.
    let lying = with(16, &[0, 0]);
    assert!(matches!(
        decide(&lying, &INGRESS, &maps).nat,
        Some(NatRewrite::Reply(_))
    ));
}

#[test]
fn a_reply_to_a_client_this_node_never_saw_is_passed_untouched() {
    let maps = nat_maps();
    for proto in [IPPROTO_TCP, IPPROTO_UDP] {
        let reply = reply_frame(0, proto, b"");
        assert_rejected(&maps, &reply, XdpAction::Pass, Reason::NatNoClient);
    }
    // Learnt for another client only: still unknown.
    let mut other = maps;
    other.set_nat_client(u32::from_ne_bytes([10, 0, 1, 2]), nat_client(CLIENT_MAC));
    let reply = reply_frame(0, IPPROTO_TCP, b"");
    assert_rejected(&other, &reply, XdpAction::Pass, Reason::NatNoClient);
}

#[test]
fn a_nat_service_drops_packets_from_the_servers_side() {
    let maps = nat_maps();
    let mut hairpin = nat_client_frame(IPPROTO_TCP, 40_000, TCP_SYN, b"");
    hairpin[..6].copy_from_slice(&SERVERS_MAC);
    assert_rejected(&maps, &hairpin, XdpAction::Drop, Reason::NatHairpin);
    let decision = decide(&hairpin, &INGRESS, &maps);
    assert_eq!(decision.nat_client, None, "nothing learnt");
    assert!(decision.flow_key.is_some());
    // An established flow's packets too.
    let mut established = maps.clone();
    established.apply(&decide(
        &nat_client_frame(IPPROTO_TCP, 40_000, TCP_SYN, b""),
        &INGRESS,
        &established,
    ));
    assert_eq!(established.flow_count(), 1);
    assert_rejected(&established, &hairpin, XdpAction::Drop, Reason::NatHairpin);
    // A dsr-l2 service takes them from either side.
    let dsr = with_flags(maps.clone(), key(80, IPPROTO_TCP), 0);
    let decision = decide(&hairpin, &INGRESS, &dsr);
    assert_eq!(decision.action, XdpAction::Tx);
    assert_eq!(decision.nat, None);
    assert_eq!(decision.output[26..], hairpin[26..], "no address rewritten");
    // The servers' entry unused, its MAC is no one's.
    let mut unused = maps.clone();
    unused
        .set_local_interface(LocalInterface::SERVERS, LocalInterface::default())
        .unwrap();
    assert_rejected(&unused, &hairpin, XdpAction::Pass, Reason::NotForUs);
    // The main MAC wins over a servers' entry with the same MAC.
    let mut same = maps;
    same.set_local_interface(LocalInterface::SERVERS, main_interface())
        .unwrap();
    let decision = decide(&hairpin, &INGRESS, &same);
    assert_eq!(decision.reason, Some(Reason::NotForUs));
    let to_main = nat_client_frame(IPPROTO_TCP, 40_000, TCP_SYN, b"");
    assert_eq!(decide(&to_main, &INGRESS, &same).action, XdpAction::Tx);
}

#[test]
fn udp_without_a_checksum_stays_without_one() {
    let mut maps = nat_maps();
    maps.set_nat_client(u32::from_ne_bytes(CLIENT), nat_client(CLIENT_MAC));
    let without = |mut frame: Vec<u8>| {
        frame[40..42].fill(0);
        frame
    };
    let forward = without(nat_client_frame(IPPROTO_UDP, 40_000, 0, b"query"));
    let decision = decide(&forward, &INGRESS, &maps);
    assert_eq!(decision.nat, Some(NatRewrite::ToBackend));
    assert_eq!(decision.output[36..38], NAT_PORT.to_be_bytes());
    assert_eq!(decision.output[40..42], [0, 0]);
    assert!(checksums_verify(&decision.output));
    let reply = without(reply_frame(3, IPPROTO_UDP, b"answer"));
    let decision = decide(&reply, &INGRESS, &maps);
    assert!(matches!(decision.nat, Some(NatRewrite::Reply(_))));
    assert_eq!(decision.output[34..36], 53u16.to_be_bytes());
    assert_eq!(decision.output[40..42], [0, 0]);
    assert!(checksums_verify(&decision.output));
}

#[test]
fn a_udp_checksum_that_comes_out_zero_is_sent_as_ffff() {
    let mut maps = nat_maps();
    maps.set_nat_client(u32::from_ne_bytes(CLIENT), nat_client(CLIENT_MAC));
    // The reply as it leaves, with a last payload word that makes its sum
    // 0xffff (its checksum 0): `w` added to a sum `s` whose complement is
    // `w` gives 0xffff.
    let service_ip = VIP;
    let leaving = |word: u16| {
        [
            &udp(53, 40_000, &[0, 0, 0, 0])[..6],
            &[0, 0],
            &[0, 0],
            &word.to_be_bytes()[..],
        ]
        .concat()
    };
    let word = l4_checksum(service_ip, CLIENT, IPPROTO_UDP, &leaving(0));
    assert_eq!(
        l4_checksum(service_ip, CLIENT, IPPROTO_UDP, &leaving(word)),
        0
    );
    let reply = reply_frame(
        0,
        IPPROTO_UDP,
        &[0, 0, word.to_be_bytes()[0], word.to_be_bytes()[1]],
    );
    assert_ne!(reply[40..42], [0, 0]);
    let decision = decide(&reply, &INGRESS, &maps);
    assert!(matches!(decision.nat, Some(NatRewrite::Reply(_))));
    assert_eq!(decision.output[40..42], [0xff, 0xff]);
    assert!(checksums_verify(&decision.output));
}

#[test]
fn a_nat_client_is_learnt_on_new_flows_only() {
    let mut maps = nat_maps();
    let client = u32::from_ne_bytes(CLIENT);
    let syn = nat_client_frame(IPPROTO_TCP, 40_000, TCP_SYN, b"");
    let first = decide(&syn, &INGRESS, &maps);
    assert_eq!(first.nat_client, Some((client, nat_client(CLIENT_MAC))));
    maps.apply(&first);
    assert_eq!(maps.nat_client(client), Some(nat_client(CLIENT_MAC)));

    // The flow's next packets, from another MAC: not learnt.
    let router = [2, 0, 0, 0, 9, 9];
    let mut from_router = nat_client_frame(IPPROTO_TCP, 40_000, TCP_ACK, b"");
    from_router[6..12].copy_from_slice(&router);
    let established = decide(&from_router, &INGRESS, &maps);
    assert_eq!(established.backend_id, first.backend_id);
    assert_eq!(established.nat, Some(NatRewrite::ToBackend));
    assert_eq!(established.nat_client, None);
    // A new flow from the same MAC writes nothing; from another, the MAC.
    let second = decide(
        &nat_client_frame(IPPROTO_UDP, 40_001, 0, b""),
        &INGRESS,
        &maps,
    );
    assert!(second.flow_change.is_new_flow());
    assert_eq!(second.nat_client, None);
    let mut new_from_router = nat_client_frame(IPPROTO_TCP, 40_002, TCP_SYN, b"");
    new_from_router[6..12].copy_from_slice(&router);
    let moved = decide(&new_from_router, &INGRESS, &maps);
    assert_eq!(moved.nat_client, Some((client, nat_client(router))));
    // Only the MAC counts: an entry with other padding is left alone.
    let mut padded = maps.clone();
    padded.set_nat_client(
        client,
        crate::maps::NatClient {
            mac: CLIENT_MAC,
            _pad: [1, 2],
        },
    );
    let second = decide(
        &nat_client_frame(IPPROTO_TCP, 40_003, TCP_SYN, b""),
        &INGRESS,
        &padded,
    );
    assert_eq!(second.nat_client, None);

    // Not without a new flow: dropped, rate limited or with no backend.
    let mut hairpin = new_from_router.clone();
    hairpin[..6].copy_from_slice(&SERVERS_MAC);
    assert_eq!(decide(&hairpin, &INGRESS, &maps).nat_client, None);
    let mut limited = maps.clone();
    limited
        .set_rate_limit(0, crate::maps::RateLimit::new(1, 0))
        .unwrap();
    let limited = with_flags(
        limited,
        key(80, IPPROTO_TCP),
        service_flags::NAT | service_flags::RATE_LIMIT,
    );
    let decision = decide(&new_from_router, &INGRESS, &limited);
    assert_eq!(
        (decision.reason, decision.nat_client),
        (Some(Reason::RateLimited), None)
    );
    // A dsr-l2 service learns nothing.
    let dsr = with_flags(maps.clone(), key(80, IPPROTO_TCP), 0);
    assert_eq!(decide(&new_from_router, &INGRESS, &dsr).nat_client, None);

    // A new flow forwarded without a flow-table entry is learnt all the same.
    let mut skipping = maps.clone();
    skipping.set_settings(crate::maps::Settings {
        flow_insert_limit_per_cpu: 1,
        ..crate::maps::Settings::default()
    });
    skipping.set_insert_window(crate::maps::InsertWindow {
        started_ns: u64::MAX,
        inserts: u64::MAX,
    });
    let skipped = decide(&new_from_router, &INGRESS, &skipping);
    assert!(matches!(skipped.flow_change, FlowChange::Skipped { .. }));
    assert_eq!(skipped.nat_client, Some((client, nat_client(router))));
}

#[test]
fn a_retransmitted_syn_moved_by_passive_health_learns_nothing() {
    let mut maps = nat_maps();
    let service = maps.service(&key(80, IPPROTO_TCP)).unwrap();
    maps.set_service(
        key(80, IPPROTO_TCP),
        Service {
            flags: service_flags::NAT | service_flags::OBSERVE,
            error_limit: 3,
            handshake_timeout: u32::MAX,
            ..service
        },
    );
    let syn = nat_client_frame(IPPROTO_TCP, 40_000, TCP_SYN, b"");
    let first = decide(&syn, &INGRESS, &maps);
    assert!(first.nat_client.is_some());
    maps.apply(&first);
    let mut again = syn.clone();
    again[6..12].copy_from_slice(&[2, 0, 0, 0, 9, 9]);
    let moved = decide(&again, &INGRESS, &maps);
    assert!(matches!(moved.flow_change, FlowChange::Replaced { .. }));
    assert_ne!(moved.backend_id, first.backend_id);
    assert_eq!(moved.nat, Some(NatRewrite::ToBackend));
    assert_eq!(moved.nat_client, None);
}

#[test]
fn frag_needed_for_a_nat_flow_is_passed_even_when_established() {
    let mut maps = nat_maps();
    let syn = nat_client_frame(IPPROTO_TCP, 7, TCP_SYN, b"");
    maps.apply(&decide(&syn, &INGRESS, &maps));
    assert!(maps.flow(&web_flow(7)).is_some());
    let decision = decide(&frag_needed(7, 28), &INGRESS, &maps);
    assert_eq!(
        (decision.action, decision.reason),
        (XdpAction::Pass, Some(Reason::VipIcmp))
    );
    assert_eq!(decision.flow_key, Some(web_flow(7)));
    assert_eq!(decision.output, frag_needed(7, 28));
    // The same flow of a dsr-l2 service reaches its backend.
    let dsr = with_flags(maps, key(80, IPPROTO_TCP), 0);
    assert_eq!(
        decide(&frag_needed(7, 28), &INGRESS, &dsr).action,
        XdpAction::Tx
    );
}
