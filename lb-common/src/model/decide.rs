//! The decision itself, step for step in the order `lb-ebpf/src/balance.rs`
//! takes them: parse, match a service, keep or pick the flow's backend,
//! rewrite the MACs (and for `nat` the destination) and forward. Packets
//! to no VIP may be `nat` replies ([`nat::reply`]).

use alloc::vec::Vec;

use super::contents::MapContents;
use super::decision::{
    CursorAdvance, Decision, FlowChange, HandshakeEffect, Ingress, NatRewrite, Traffic, XdpAction,
};
use super::edge::{self, drop, pass, Rejection, Side};
use super::flood::{self, BucketWrite};
use super::nat::{self, ClientWrite};
use super::passive;
use super::wire::{EthernetFrame, Ipv4Header, TcpHeader, UdpHeader};
use crate::hash::{flow_hash, source_hash};
use crate::maps::{
    backend_state, service_flags, tcp_flags, Backend, Counters, Flow, FlowKey, InsertWindow,
    Reason, Scheduler, Service, ServiceKey, IPPROTO_TCP, IPPROTO_UDP,
};

/// Smallest valid TCP data offset, in 32-bit words.
const TCP_MIN_DATA_OFFSET: u8 = 5;

/// What `lb_xdp` does with `frame`, arriving on `ingress`, given `maps`.
///
/// Pure: `maps` is not changed; [`MapContents::apply`] applies the decision.
/// Never panics, whatever the bytes and the maps hold.
///
/// Today's program, as modelled:
/// - the IPv4 version field is not checked (the EtherType decides);
/// - VLAN-tagged frames are not IPv4 (`not_ipv4`);
/// - the UDP length field is not checked;
/// - a SYN keeps an entry to an up backend, but never one to a draining
///   backend (it is scheduled afresh and replaces the entry);
/// - a round-robin cursor advances even when the slot it yields is unusable;
/// - bytes are counted as the whole frame, trailing bytes beyond the IPv4
///   total length included;
/// - passive health watches only the handshakes of flows opened by a SYN
///   without ACK; a SYN that reopens a closed or completed entry on an up
///   backend keeps it and is not watched;
/// - a frame to the main interface's MAC is on the main side even when the
///   servers' entry has the same MAC, and even when the main entry is
///   unused (all zeros: a frame to `00:00:00:00:00:00`);
/// - a `nat` client's MAC is learnt only when its flow is scheduled (also
///   when the flow-table insert is skipped), never when passive health
///   moves a pending flow, nor by an established flow's packets;
/// - an ICMP "fragmentation needed" about a `nat` service's flow is passed,
///   established or not;
/// - a `nat` reply is translated whatever its IPv4 total length says, from
///   the headers in the frame (see [`nat::reply`]).
pub fn decide(frame: &[u8], ingress: &Ingress, maps: &MapContents) -> Decision {
    let packet = match parse(frame, maps) {
        Ok(Parsed::Service(packet)) => packet,
        Ok(Parsed::FragNeeded(eth, flow)) => return frag_needed(frame, eth, flow, ingress, maps),
        Ok(Parsed::NotVip(eth, ip)) => return nat::reply(frame, eth, ip, ingress, maps),
        Err(rejection) => {
            return Decision::unforwarded(rejection.action, rejection.reason, frame, None, None)
        }
    };
    let Packet {
        eth,
        side,
        l4_offset,
        flow,
        tcp_flags: flags,
    } = packet;
    let service_key = ServiceKey {
        vip: flow.dst_ip,
        port: flow.dst_port,
        proto: flow.proto,
        _pad: 0,
    };
    let Some(service) = maps.service(&service_key) else {
        return Decision::unforwarded(
            XdpAction::Drop,
            Reason::VipOtherPort,
            frame,
            Some(flow),
            None,
        );
    };
    if !edge::source_allowed(&service, &flow, maps) {
        return Decision::unforwarded(XdpAction::Drop, Reason::NotAllowed, frame, Some(flow), None);
    }
    let nat = service.flags & service_flags::NAT != 0;
    if nat && side == Side::Servers {
        return Decision::unforwarded(XdpAction::Drop, Reason::NatHairpin, frame, Some(flow), None);
    }

    let syn = flags & tcp_flags::SYN != 0;
    let new_flow = match established_backend(&flow, syn, maps) {
        Some((backend_id, backend, entry)) => {
            let (moved, handshakes) = if entry.handshake_pending() && passive::observes(&service) {
                passive::on_pending(&service, &flow, flags, (backend_id, entry), ingress, maps)
            } else {
                (None, HandshakeEffect::default())
            };
            let (backend_id, backend, flow_change) = match moved {
                Some(moved) => moved,
                None => (backend_id, backend, mark_seen(&flow, entry, flags, maps)),
            };
            NewFlow {
                backend_id,
                backend,
                flow_change,
                cursor_advance: None,
                source_bucket: None,
                insert_window: None,
                handshakes,
                nat_client: None,
            }
        }
        None => {
            let Ok(source_bucket) = flood::rate_limit(&service, &flow, ingress, maps) else {
                return Decision::unforwarded(
                    XdpAction::Drop,
                    Reason::RateLimited,
                    frame,
                    Some(flow),
                    None,
                );
            };
            match schedule(&service, &flow, maps) {
                (Ok(scheduled), cursor_advance) => {
                    let watched = passive::observes(&service) && passive::is_opening_syn(flags);
                    let ((backend_id, backend), last_seen, handshakes) = if watched {
                        // Not serving, or `established_backend` would have kept it.
                        let stale = maps.flow(&flow);
                        let (chosen, handshakes) = passive::choose_for_syn(
                            &service, &flow, scheduled, stale, ingress, maps,
                        );
                        (chosen, Flow::opened(maps.flow_clock()), handshakes)
                    } else {
                        let last_seen = Flow::seen(None, maps.flow_clock(), flags);
                        (scheduled, last_seen, HandshakeEffect::default())
                    };
                    let entry = Flow {
                        backend_id,
                        last_seen,
                    };
                    let (flow_change, insert_window) = flood::record(&flow, entry, ingress, maps);
                    let nat_client = if nat {
                        nat::learn_client(&flow, eth.src_addr(), maps)
                    } else {
                        None
                    };
                    NewFlow {
                        backend_id,
                        backend,
                        flow_change,
                        cursor_advance,
                        source_bucket,
                        insert_window,
                        handshakes,
                        nat_client,
                    }
                }
                (Err(rejection), cursor_advance) => {
                    return Decision {
                        source_bucket,
                        ..Decision::unforwarded(
                            rejection.action,
                            rejection.reason,
                            frame,
                            Some(flow),
                            cursor_advance,
                        )
                    }
                }
            }
        }
    };
    forward(
        frame,
        eth,
        ingress,
        maps,
        Forwarded {
            service,
            flow,
            l4_offset,
            new_flow,
        },
    )
}

/// A well-formed, unfragmented TCP/UDP packet to a VIP, like the program's
/// `Packet`.
struct Packet<'a> {
    eth: EthernetFrame<'a>,
    /// Which of the node's interfaces it is addressed to.
    side: Side,
    /// Where the TCP or UDP header starts in the frame.
    l4_offset: usize,
    /// The 5-tuple.
    flow: FlowKey,
    /// The TCP flags (0 for UDP).
    tcp_flags: u8,
}

/// What a frame parsed into.
enum Parsed<'a> {
    /// A well-formed, unfragmented TCP/UDP packet to a VIP.
    Service(Packet<'a>),
    /// An ICMP "fragmentation needed" to a VIP, and the flow it is about.
    FragNeeded(EthernetFrame<'a>, FlowKey),
    /// IPv4 to an address that is no VIP: perhaps a `nat` reply.
    NotVip(EthernetFrame<'a>, Ipv4Header<'a>),
}

/// Parses Ethernet → IPv4 → TCP/UDP (or ICMP): a well-formed, unfragmented
/// TCP/UDP packet to a VIP, the flow an ICMP "fragmentation needed" to a
/// VIP is about, the headers of IPv4 to no VIP, or why not.
fn parse<'a>(frame: &'a [u8], maps: &MapContents) -> Result<Parsed<'a>, Rejection> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| pass(Reason::ShortEthernet))?;
    if eth.ether_type() != EthernetFrame::ETHERTYPE_IPV4 {
        return Err(pass(Reason::NotIpv4));
    }
    // The version field is not looked at: any frame with the IPv4 EtherType is
    // read as IPv4.
    let ip = Ipv4Header::new_checked(eth.payload()).map_err(|_| pass(Reason::ShortIpv4))?;
    let dst_ip = ip.dst_addr();
    if !maps.is_vip(dst_ip) {
        return Ok(Parsed::NotVip(eth, ip));
    }
    // Only packets to a VIP are checked for the destination MAC.
    let side = edge::check_destination_mac(&eth, maps)?;

    // Addressed to a VIP: from here on, malformed means dropped.
    let header_len = ip.header_len();
    if header_len < Ipv4Header::FIXED_LEN {
        return Err(drop(Reason::BadIhl));
    }
    // The IP payload: `total_len` bytes after the Ethernet header (trailing
    // bytes beyond it are allowed), minus the header and its options. Either
    // slice is missing exactly when the program's length check fails.
    let l4 = eth
        .payload()
        .get(..ip.total_len())
        .and_then(|packet| packet.get(header_len..))
        .ok_or(drop(Reason::BadTotalLength))?;
    let fragment_bits = Ipv4Header::MORE_FRAGMENTS | Ipv4Header::FRAGMENT_OFFSET;
    if ip.flags_and_fragment_offset() & fragment_bits != 0 {
        return Err(drop(Reason::Fragment));
    }

    let (src_port, dst_port, flags) = match ip.protocol() {
        IPPROTO_TCP => tcp_ports(l4)?,
        IPPROTO_UDP => {
            let (src_port, dst_port) = udp_ports(l4)?;
            (src_port, dst_port, 0)
        }
        proto => {
            let flow = edge::vip_other_protocol(proto, l4, maps)?;
            return Ok(Parsed::FragNeeded(eth, flow));
        }
    };
    let flow = FlowKey {
        src_ip: ip.src_addr(),
        dst_ip,
        src_port,
        dst_port,
        proto: ip.protocol(),
        _pad: [0; 3],
    };
    Ok(Parsed::Service(Packet {
        eth,
        side,
        l4_offset: EthernetFrame::HEADER_LEN + header_len,
        flow,
        tcp_flags: flags,
    }))
}

/// Ports (network order) of the TCP segment `l4` and its flags: a data
/// offset below 5 or beyond the segment is a truncated header.
fn tcp_ports(l4: &[u8]) -> Result<(u16, u16, u8), Rejection> {
    let tcp = TcpHeader::new_checked(l4).map_err(|_| drop(Reason::ShortL4))?;
    let data_offset = tcp.data_offset();
    if data_offset < TCP_MIN_DATA_OFFSET || usize::from(data_offset) * 4 > l4.len() {
        return Err(drop(Reason::ShortL4));
    }
    Ok((tcp.src_port(), tcp.dst_port(), tcp.flags()))
}

/// Ports (network order) of the UDP datagram `l4`. The UDP length field is
/// not looked at.
fn udp_ports(l4: &[u8]) -> Result<(u16, u16), Rejection> {
    let udp = UdpHeader::new_checked(l4).map_err(|_| drop(Reason::ShortL4))?;
    Ok((udp.src_port(), udp.dst_port()))
}

/// The backend of an established flow, if its entry names a backend that
/// exists and serves: up, or draining for any packet but a SYN; and the
/// entry.
fn established_backend(
    flow: &FlowKey,
    syn: bool,
    maps: &MapContents,
) -> Option<(u32, Backend, Flow)> {
    let entry = maps.flow(flow)?;
    let backend = maps.backend(entry.backend_id)?;
    let serving =
        backend.state == backend_state::UP || (backend.state == backend_state::DRAINING && !syn);
    serving.then_some((entry.backend_id, backend, entry))
}

/// The write that marks an established flow seen by a packet with `flags`:
/// none when its mark stays the same.
fn mark_seen(key: &FlowKey, entry: Flow, flags: u8, maps: &MapContents) -> FlowChange {
    let last_seen = Flow::seen(Some(entry.last_seen), maps.flow_clock(), flags);
    if last_seen == entry.last_seen {
        FlowChange::Unchanged
    } else {
        FlowChange::Marked {
            key: *key,
            last_seen,
        }
    }
}

/// Picks the backend of a new flow with the service's scheduler, and says
/// which round-robin cursor moved (also when the pick is then refused).
fn schedule(
    service: &Service,
    flow: &FlowKey,
    maps: &MapContents,
) -> (Result<(u32, Backend), Rejection>, Option<CursorAdvance>) {
    if service.table_len == 0 {
        return (Err(pass(Reason::NoBackend)), None);
    }
    // Any scheduler value other than round-robin and source is Maglev.
    let (slot, cursor_advance) = if service.scheduler == Scheduler::RoundRobin as u8 {
        match next_round_robin_slot(service, maps) {
            Some((slot, advance)) => (slot, Some(advance)),
            None => return (Err(drop(Reason::BadBackend)), None),
        }
    } else if service.scheduler == Scheduler::Source as u8 {
        (source_hash(flow) % service.table_len, None)
    } else {
        (flow_hash(flow) % service.table_len, None)
    };
    let chosen = maps
        .table_slot(service.table_base.wrapping_add(slot))
        .and_then(|backend_id| Some((backend_id, maps.backend(backend_id)?)))
        // A table naming a backend that is missing or not up is inconsistent:
        // never forward on it.
        .filter(|(_, backend)| backend.state == backend_state::UP)
        .ok_or(drop(Reason::BadBackend));
    (chosen, cursor_advance)
}

/// This CPU's next round-robin slot of `service` and the cursor's new value;
/// `None` when the cursor array has no entry for the service id.
fn next_round_robin_slot(service: &Service, maps: &MapContents) -> Option<(u32, CursorAdvance)> {
    let next = maps.rr_cursor(service.id)?;
    // The ring may have shrunk since the cursor was last advanced.
    let slot = if next < service.table_len { next } else { 0 };
    let advance = CursorAdvance {
        service_id: service.id,
        // `slot < table_len <= u32::MAX`: cannot overflow.
        next: slot + 1,
    };
    Some((slot, advance))
}

/// The backend a packet goes to and what choosing it wrote.
struct NewFlow {
    backend_id: u32,
    backend: Backend,
    flow_change: FlowChange,
    cursor_advance: Option<CursorAdvance>,
    source_bucket: Option<BucketWrite>,
    insert_window: Option<InsertWindow>,
    handshakes: HandshakeEffect,
    nat_client: Option<ClientWrite>,
}

/// A packet on its way to a backend.
struct Forwarded {
    service: Service,
    flow: FlowKey,
    /// Where its TCP or UDP header starts in the frame.
    l4_offset: usize,
    new_flow: NewFlow,
}

/// Counts the packet, rewrites the MACs for the backend (and for a `nat`
/// service the destination) and sends it out: back through the ingress
/// interface, or redirected.
fn forward(
    frame: &[u8],
    eth: EthernetFrame<'_>,
    ingress: &Ingress,
    maps: &MapContents,
    forwarded: Forwarded,
) -> Decision {
    let Forwarded {
        service,
        flow,
        l4_offset,
        new_flow:
            NewFlow {
                backend_id,
                backend,
                flow_change,
                cursor_advance,
                source_bucket,
                insert_window,
                handshakes,
                nat_client,
            },
    } = forwarded;
    let delta = Counters {
        packets: 1,
        bytes: frame.len() as u64,
        new_flows: u64::from(flow_change.is_new_flow()),
    };
    let reason = matches!(flow_change, FlowChange::Skipped { .. }).then_some(Reason::InsertSkipped);
    let mut output = rewritten(frame, eth, &backend);
    let nat = service.flags & service_flags::NAT != 0;
    if nat {
        nat::to_backend(&mut output, l4_offset, flow.proto, &backend);
    }
    Decision {
        action: send_action(&backend, ingress),
        output,
        reason,
        flow_key: Some(flow),
        backend_id: Some(backend_id),
        flow_change,
        cursor_advance,
        service_traffic: maps.has_service_stats(service.id).then_some(Traffic {
            index: service.id,
            delta,
        }),
        backend_traffic: maps.has_backend_stats(backend_id).then_some(Traffic {
            index: backend_id,
            delta,
        }),
        source_bucket,
        insert_window,
        handshakes,
        nat: nat.then_some(NatRewrite::ToBackend),
        nat_client,
    }
}

/// `XDP_TX` back through the ingress interface, or a redirect.
fn send_action(backend: &Backend, ingress: &Ingress) -> XdpAction {
    if backend.ifindex == ingress.ifindex {
        XdpAction::Tx
    } else {
        XdpAction::Redirect
    }
}

/// `frame` with its MACs rewritten for `backend`.
fn rewritten(frame: &[u8], eth: EthernetFrame<'_>, backend: &Backend) -> Vec<u8> {
    let mut output = Vec::with_capacity(frame.len());
    output.extend_from_slice(&backend.mac);
    output.extend_from_slice(&backend.src_mac);
    output.extend_from_slice(&eth.ether_type().to_be_bytes());
    output.extend_from_slice(eth.payload());
    output
}

/// An ICMP "fragmentation needed" about `flow`: sent on to the flow's
/// backend if it still serves it (uncounted in the traffic counters, no
/// flow-table write), so that path MTU discovery reaches the server that
/// sent the too-big packet; passed to the kernel otherwise, and always for
/// a `nat` service (its backend would need the quoted header translated).
fn frag_needed(
    frame: &[u8],
    eth: EthernetFrame<'_>,
    flow: FlowKey,
    ingress: &Ingress,
    maps: &MapContents,
) -> Decision {
    let established = if edge::is_nat(&flow, maps) {
        None
    } else {
        established_backend(&flow, false, maps)
    };
    let Some((backend_id, backend, _)) = established else {
        return Decision::unforwarded(XdpAction::Pass, Reason::VipIcmp, frame, Some(flow), None);
    };
    Decision {
        action: send_action(&backend, ingress),
        output: rewritten(frame, eth, &backend),
        reason: None,
        flow_key: Some(flow),
        backend_id: Some(backend_id),
        flow_change: FlowChange::Unchanged,
        cursor_advance: None,
        service_traffic: None,
        backend_traffic: None,
        source_bucket: None,
        insert_window: None,
        handshakes: HandshakeEffect::default(),
        nat: None,
        nat_client: None,
    }
}
