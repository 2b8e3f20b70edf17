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
    maps.set_local_interface(LocalInterface {
        mac: LB_MAC,
        _pad: [0; 2],
        ifindex: INGRESS.ifindex,
    });
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
    unset.set_local_interface(LocalInterface::default());
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
    maps.set_local_interface(LocalInterface {
        mac: LB_MAC,
        _pad: [0; 2],
        ifindex: INGRESS.ifindex,
    });
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
        assert_eq!(forwarded, decision.backend_id.is_some());
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
