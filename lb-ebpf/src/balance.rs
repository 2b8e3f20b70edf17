//! The per-packet decision of `lb_xdp`: parse the headers, match a service,
//! keep or pick the flow's backend (watching its handshake, see
//! [`passive`]), rewrite the MACs (and for `nat` the destination, see
//! [`nat`]) and forward. Packets to no VIP may be `nat` replies.

use aya_ebpf::{bindings::xdp_action, helpers::bpf_redirect, programs::XdpContext};
use lb_common::{
    hash::{flow_hash, source_hash},
    maps::{
        backend_state, service_flags, tcp_flags, Backend, Flow, FlowKey, Reason, Scheduler,
        Service, ServiceKey, IPPROTO_TCP, IPPROTO_UDP,
    },
};
use network_types::{
    eth::{EthHdr, EtherType},
    ip::Ipv4Hdr,
    tcp::TcpHdr,
    udp::UdpHdr,
};

use crate::{
    edge::{self, Side},
    flood,
    maps::{
        BACKENDS, BACKEND_STATS, FLOWS, FLOW_CLOCK, RR_CURSOR, SCHED_TABLE, SERVICES,
        SERVICE_STATS, VIPS,
    },
    nat, packet, passive, stats,
};

/// IPv4 "more fragments" flag in the flags/offset field (host order).
const IPV4_MORE_FRAGMENTS: u16 = 0x2000;
/// IPv4 fragment offset mask in the flags/offset field (host order).
const IPV4_FRAGMENT_OFFSET: u16 = 0x1fff;
/// Smallest valid TCP data offset, in 32-bit words.
const TCP_MIN_DATA_OFFSET: u16 = 5;

/// What `lb_xdp` does with a packet.
pub enum Verdict {
    /// Sent on to a backend; the XDP action (`XDP_TX`, or what
    /// `bpf_redirect` returned).
    Forward(u32),
    /// Handed to the kernel untouched.
    Pass(Reason),
    /// Dropped.
    Drop(Reason),
}

impl Verdict {
    /// The XDP action the program returns.
    #[inline(always)]
    pub fn action(&self) -> u32 {
        match self {
            Verdict::Forward(action) => *action,
            Verdict::Pass(_) => xdp_action::XDP_PASS,
            Verdict::Drop(_) => xdp_action::XDP_DROP,
        }
    }

    /// Why the packet was passed or dropped, if it was.
    #[inline(always)]
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Verdict::Forward(_) => None,
            Verdict::Pass(reason) | Verdict::Drop(reason) => Some(*reason),
        }
    }
}

/// A TCP or UDP packet addressed to a VIP, headers validated.
struct Packet {
    /// The frame's Ethernet header.
    eth: packet::Ethernet,
    /// Which of the node's interfaces it is addressed to.
    side: Side,
    /// Where the TCP or UDP header starts in the frame.
    l4_offset: usize,
    /// The 5-tuple, fields in network byte order.
    flow: FlowKey,
    /// Frame length in bytes.
    frame_len: usize,
    /// The TCP flags (0 for UDP). A SYN may open a new connection on a
    /// reused 5-tuple, so it never stays on a draining backend; a FIN or RST
    /// marks the flow closed.
    tcp_flags: u8,
}

/// Decides what to do with the frame in `ctx`, rewriting it when it is forwarded.
#[inline(always)]
pub fn balance(ctx: &XdpContext) -> Verdict {
    let packet = match parse(ctx) {
        Ok(packet) => packet,
        Err(verdict) => return verdict,
    };
    let service_key = ServiceKey {
        vip: packet.flow.dst_ip,
        port: packet.flow.dst_port,
        proto: packet.flow.proto,
        _pad: 0,
    };
    let Some(service) = SERVICES.get_ptr(service_key) else {
        return edge::vip_other_port();
    };
    // SAFETY: a pointer returned by a map lookup is valid for the value's size during this run.
    let service = unsafe { service.read() };
    if !edge::source_allowed(&service, packet.flow.src_ip) {
        return Verdict::Drop(Reason::NotAllowed);
    }
    let nat = service.flags & service_flags::NAT != 0;
    if nat && packet.side == Side::Servers {
        return Verdict::Drop(Reason::NatHairpin);
    }

    let syn = packet.tcp_flags & tcp_flags::SYN != 0;
    let mut clock = flood::Clock::new();
    let flow = &packet.flow;
    let entry = FLOWS.get_ptr_mut(flow);
    let serving = entry.and_then(|entry| Some((serving_backend(entry, syn)?, entry)));
    let (backend_id, backend, new_flow) = match serving {
        Some(((backend_id, backend), entry)) => {
            // SAFETY: `entry` came from a lookup in this run and is valid for its size.
            let pending = unsafe { (*entry).handshake_pending() };
            let moved = if pending && passive::observes(&service) {
                passive::on_pending(
                    &service,
                    &packet.flow,
                    packet.tcp_flags,
                    backend_id,
                    entry,
                    &mut clock,
                )
            } else {
                None
            };
            match moved {
                Some((next_id, next)) => (next_id, next, true),
                None => {
                    mark_seen(entry, packet.tcp_flags);
                    (backend_id, backend, false)
                }
            }
        }
        None => {
            if flood::over_rate_limit(&service, &packet.flow, &mut clock) {
                return Verdict::Drop(Reason::RateLimited);
            }
            match schedule(&service, &packet.flow) {
                Ok(scheduled) => {
                    let watched =
                        passive::observes(&service) && passive::is_opening_syn(packet.tcp_flags);
                    let ((backend_id, backend), last_seen) = if watched {
                        if let Some(stale) = entry {
                            passive::on_stale_syn(&packet.flow, stale);
                        }
                        let chosen =
                            passive::choose_for_syn(&service, &packet.flow, scheduled, &mut clock);
                        (chosen, Flow::opened(flow_clock()))
                    } else {
                        (scheduled, Flow::seen(None, flow_clock(), packet.tcp_flags))
                    };
                    let entry = Flow {
                        backend_id,
                        last_seen,
                    };
                    flood::record_flow(&packet.flow, entry, &mut clock);
                    if nat {
                        nat::learn_client(packet.flow.src_ip, packet.eth.source());
                    }
                    (backend_id, backend, true)
                }
                Err(verdict) => return verdict,
            }
        }
    };

    let bytes = packet.frame_len as u64;
    stats::count_traffic(&SERVICE_STATS, service.id, bytes, new_flow);
    stats::count_traffic(&BACKEND_STATS, backend_id, bytes, new_flow);
    if nat && !nat::to_backend(ctx, packet.l4_offset, packet.flow.proto, &backend) {
        return Verdict::Drop(Reason::ShortL4);
    }
    forward(ctx, packet.eth, &backend)
}

/// Parses Ethernet → IPv4 → TCP/UDP. Everything that is not a well-formed,
/// unfragmented TCP/UDP packet to a VIP comes back as the verdict to return.
#[inline(always)]
fn parse(ctx: &XdpContext) -> Result<Packet, Verdict> {
    let eth = packet::ethernet(ctx).ok_or(Verdict::Pass(Reason::ShortEthernet))?;
    if eth.ether_type() != EtherType::Ipv4 as u16 {
        return Err(Verdict::Pass(Reason::NotIpv4));
    }
    let ip = packet::header::<Ipv4Hdr>(ctx, EthHdr::LEN).ok_or(Verdict::Pass(Reason::ShortIpv4))?;
    let dst_ip = u32::from_ne_bytes(ip.dst_addr);
    if VIPS.get_ptr(dst_ip).is_none() {
        return Err(nat::reply(ctx, eth, ip));
    }
    // Only packets to a VIP are forwarded or dropped here, so only they pay
    // for the MAC check; everything else is passed untouched anyway.
    let side = edge::check_destination_mac(&eth)?;

    // Addressed to a VIP: from here on, malformed means dropped.
    let header_len = usize::from(ip.vihl & 0x0f) * 4;
    if header_len < Ipv4Hdr::LEN {
        return Err(Verdict::Drop(Reason::BadIhl));
    }
    let total_len = usize::from(u16::from_be_bytes(ip.tot_len));
    let frame_len = packet::frame_len(ctx);
    if total_len < header_len || EthHdr::LEN + total_len > frame_len {
        return Err(Verdict::Drop(Reason::BadTotalLength));
    }
    if u16::from_be_bytes(ip.frags) & (IPV4_MORE_FRAGMENTS | IPV4_FRAGMENT_OFFSET) != 0 {
        return Err(Verdict::Drop(Reason::Fragment));
    }

    let l4_offset = EthHdr::LEN + header_len;
    let l4_len = total_len - header_len;
    let (src_port, dst_port, tcp_flags) = match ip.proto {
        IPPROTO_TCP => tcp_ports(ctx, l4_offset, l4_len)?,
        IPPROTO_UDP => {
            let (src_port, dst_port) = udp_ports(ctx, l4_offset, l4_len)?;
            (src_port, dst_port, 0)
        }
        proto => return Err(edge::vip_other_protocol(ctx, eth, proto, l4_offset, l4_len)),
    };
    // `..Default::default()` zeroes the padding without the out-of-line
    // `memset` call that a `[0; 3]` literal compiles to.
    let flow = FlowKey {
        src_ip: u32::from_ne_bytes(ip.src_addr),
        dst_ip,
        src_port,
        dst_port,
        proto: ip.proto,
        ..Default::default()
    };
    Ok(Packet {
        eth,
        side,
        l4_offset,
        flow,
        frame_len,
        tcp_flags,
    })
}

/// Source and destination ports (network order) of the TCP header at
/// `offset`, whose IP payload is `l4_len` bytes, and its flags.
#[inline(always)]
fn tcp_ports(ctx: &XdpContext, offset: usize, l4_len: usize) -> Result<(u16, u16, u8), Verdict> {
    let truncated = Verdict::Drop(Reason::ShortL4);
    if l4_len < TcpHdr::LEN {
        return Err(truncated);
    }
    let tcp = packet::header::<TcpHdr>(ctx, offset).ok_or(truncated)?;
    let data_offset = tcp.doff();
    if data_offset < TCP_MIN_DATA_OFFSET || usize::from(data_offset) * 4 > l4_len {
        return Err(Verdict::Drop(Reason::ShortL4));
    }
    Ok((
        u16::from_ne_bytes(tcp.source),
        u16::from_ne_bytes(tcp.dest),
        packet::tcp_flags(tcp),
    ))
}

/// Source and destination ports (network order) of the UDP header at
/// `offset`, whose IP payload is `l4_len` bytes.
#[inline(always)]
fn udp_ports(ctx: &XdpContext, offset: usize, l4_len: usize) -> Result<(u16, u16), Verdict> {
    let truncated = Verdict::Drop(Reason::ShortL4);
    if l4_len < UdpHdr::LEN {
        return Err(truncated);
    }
    let udp = packet::header::<UdpHdr>(ctx, offset).ok_or(truncated)?;
    Ok((u16::from_ne_bytes(udp.src), u16::from_ne_bytes(udp.dst)))
}

/// The backend of an established flow, if it still serves it: up, or
/// draining for any packet but a SYN (a SYN on a draining backend's entry is
/// a new connection on a reused 5-tuple, scheduled afresh); and the flow's
/// entry.
#[inline(always)]
pub fn established_backend(flow: &FlowKey, syn: bool) -> Option<(u32, Backend, *mut Flow)> {
    let entry = FLOWS.get_ptr_mut(flow)?;
    let (backend_id, backend) = serving_backend(entry, syn)?;
    Some((backend_id, backend, entry))
}

/// The backend the flow-table entry `entry` names, if it still serves the
/// flow (see [`established_backend`]).
#[inline(always)]
fn serving_backend(entry: *mut Flow, syn: bool) -> Option<(u32, Backend)> {
    // SAFETY: `entry` came from a map lookup in this run and is valid for its size.
    let backend_id = unsafe { (*entry).backend_id };
    let backend = *BACKENDS.get(backend_id)?;
    let serving =
        backend.state == backend_state::UP || (backend.state == backend_state::DRAINING && !syn);
    serving.then_some((backend_id, backend))
}

/// The controller's flow clock ([`Flow::last_seen`]'s unit).
#[inline(always)]
pub fn flow_clock() -> u32 {
    FLOW_CLOCK.get(0).copied().unwrap_or(Flow::CLOSED)
}

/// Marks the flow of `entry` as seen by a packet with `tcp_flags`: written
/// only when the mark changes (once per clock tick, or on FIN or RST), so a
/// busy flow's packets only read it.
#[inline(always)]
fn mark_seen(entry: *mut Flow, tcp_flags: u8) {
    // SAFETY: `entry` came from a lookup in this run and is valid for its size.
    let previous = unsafe { (*entry).last_seen };
    let seen = Flow::seen(Some(previous), flow_clock(), tcp_flags);
    if seen != previous {
        // SAFETY: as above; another CPU may write the same word, and either mark will do.
        unsafe { (*entry).last_seen = seen };
    }
}

/// Picks the backend of a new flow with the service's scheduler.
#[inline(always)]
fn schedule(service: &Service, flow: &FlowKey) -> Result<(u32, Backend), Verdict> {
    if service.table_len == 0 {
        return Err(Verdict::Pass(Reason::NoBackend));
    }
    let bad_backend = Verdict::Drop(Reason::BadBackend);
    let slot = if service.scheduler == Scheduler::RoundRobin as u8 {
        next_round_robin_slot(service).ok_or(bad_backend)?
    } else if service.scheduler == Scheduler::Source as u8 {
        source_hash(flow) % service.table_len
    } else {
        flow_hash(flow) % service.table_len
    };
    let backend_id = *SCHED_TABLE
        .get(service.table_base.wrapping_add(slot))
        .ok_or(Verdict::Drop(Reason::BadBackend))?;
    match BACKENDS.get(backend_id) {
        Some(backend) if backend.state == backend_state::UP => Ok((backend_id, *backend)),
        // The controller published a table naming a backend that does not
        // serve: an inconsistent table, never forward on it.
        _ => Err(Verdict::Drop(Reason::BadBackend)),
    }
}

/// This CPU's next round-robin slot for `service`, advancing its cursor.
#[inline(always)]
fn next_round_robin_slot(service: &Service) -> Option<u32> {
    let cursor = RR_CURSOR.get_ptr_mut(service.id)?;
    // SAFETY: a per-CPU map value, valid during this run and used by this CPU only.
    let next = unsafe { *cursor };
    // The ring may have shrunk since the cursor was last advanced.
    let slot = if next < service.table_len { next } else { 0 };
    // SAFETY: as above.
    unsafe { *cursor = slot + 1 };
    Some(slot)
}

/// Rewrites the MACs for `backend` and sends the frame out: back through the
/// ingress interface, or redirected to the backend's interface.
#[inline(always)]
pub fn forward(ctx: &XdpContext, eth: packet::Ethernet, backend: &Backend) -> Verdict {
    eth.set_macs(backend.mac, backend.src_mac);
    send(ctx, backend.ifindex)
}

/// Sends the frame out of interface `ifindex`: `XDP_TX` when it is the
/// ingress interface, a redirect otherwise.
#[inline(always)]
pub fn send(ctx: &XdpContext, ifindex: u32) -> Verdict {
    if ifindex as usize == ctx.ingress_ifindex() {
        Verdict::Forward(xdp_action::XDP_TX)
    } else {
        // SAFETY: a helper call with plain integer arguments; flags 0 is valid.
        let action = unsafe { bpf_redirect(ifindex, 0) };
        Verdict::Forward(action as u32)
    }
}
