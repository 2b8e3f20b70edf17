//! Edge filtering: frames that are not for this interface, packets to a VIP
//! that no service takes, and sources a service's allow-list leaves out.
//! Each check sits on the cold side of its branch: a packet to a VIP pays
//! one 6-byte compare for the destination MAC and, for a service without an
//! allow-list, one bit test; any other packet nothing.

use aya_ebpf::{maps::lpm_trie::Key, programs::XdpContext};
use lb_common::maps::{
    service_flags, vip_icmp_echo, AllowedSource, FlowKey, LocalInterface, Reason, Service,
    ServiceKey, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP,
};
use network_types::{ip::Ipv4Hdr, udp::UdpHdr};

use crate::{
    balance::{self, Verdict},
    maps::{ALLOW_LISTS, LOCAL_INTERFACE, SERVICES, SETTINGS},
    packet::{self, IcmpHeader},
};

/// ICMP "echo request" (ping).
const ICMP_ECHO_REQUEST: u8 = 8;
/// ICMP "destination unreachable".
const ICMP_DEST_UNREACHABLE: u8 = 3;
/// Its code "fragmentation needed and DF set" (path MTU discovery).
const ICMP_FRAG_NEEDED: u8 = 4;

/// Which of the node's interfaces a frame is addressed to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `global.interface`'s MAC: where the clients are.
    Main,
    /// `global.server_interface`'s MAC: from the servers' own network.
    Servers,
}

/// Which interface the frame is addressed to (by its destination MAC);
/// for another MAC the frame is passed untouched, never forwarded nor
/// dropped (a switch floods frames for unlearned MACs to every port).
/// Asked only of packets to a VIP.
#[inline(always)]
pub fn check_destination_mac(eth: &packet::Ethernet) -> Result<Side, Verdict> {
    let local = match LOCAL_INTERFACE.get(LocalInterface::MAIN) {
        Some(interface) => interface.mac,
        None => [0; 6],
    };
    // Read after the lookup, so that the frame's bytes go straight into the
    // compare instead of into registers saved across it.
    let dst = eth.destination();
    if same_mac(&dst, &local) {
        return Ok(Side::Main);
    }
    match LOCAL_INTERFACE.get(LocalInterface::SERVERS) {
        Some(servers) if servers.is_used() && same_mac(&dst, &servers.mac) => Ok(Side::Servers),
        _ => Err(other_destination(&dst)),
    }
}

/// Why a frame for another destination is passed.
#[inline(always)]
fn other_destination(dst: &[u8; 6]) -> Verdict {
    // The I/G bit: broadcast and multicast frames are never service traffic.
    if dst[0] & 1 != 0 {
        Verdict::Pass(Reason::LinkMulticast)
    } else {
        Verdict::Pass(Reason::NotForUs)
    }
}

/// Two MACs compared as a 4- and a 2-byte word (no `memcmp` call, which BPF
/// has not).
#[inline(always)]
pub fn same_mac(a: &[u8; 6], b: &[u8; 6]) -> bool {
    let head = |m: &[u8; 6]| u32::from_ne_bytes([m[0], m[1], m[2], m[3]]);
    let tail = |m: &[u8; 6]| u16::from_ne_bytes([m[4], m[5]]);
    head(a) == head(b) && tail(a) == tail(b)
}

/// A well-formed, unfragmented packet to a VIP with a protocol other than TCP
/// or UDP, whose IP payload is `l4_len` bytes at `l4_offset`: ICMP goes to
/// the kernel (it answers echo requests), except an echo request with
/// `vip_icmp_echo = "drop"`, dropped, and "fragmentation needed" for an
/// established flow of a `dsr-l2` service, which goes to that flow's
/// backend (a `nat` backend would need the embedded header translated as
/// well: passed); the rest is dropped.
#[inline(always)]
pub fn vip_other_protocol(
    ctx: &XdpContext,
    eth: packet::Ethernet,
    proto: u8,
    l4_offset: usize,
    l4_len: usize,
) -> Verdict {
    if proto != IPPROTO_ICMP {
        return Verdict::Drop(Reason::VipOtherProtocol);
    }
    // The ICMP header, whole within the IP payload.
    let icmp = if l4_len >= IcmpHeader::LEN {
        packet::header::<IcmpHeader>(ctx, l4_offset)
    } else {
        None
    };
    let Some(icmp) = icmp else {
        return Verdict::Pass(Reason::VipIcmp);
    };
    if icmp.icmp_type == ICMP_ECHO_REQUEST && echo_dropped() {
        return Verdict::Drop(Reason::VipIcmpEcho);
    }
    if icmp.icmp_type != ICMP_DEST_UNREACHABLE || icmp.code != ICMP_FRAG_NEEDED {
        return Verdict::Pass(Reason::VipIcmp);
    }
    let Some(flow) = frag_needed_flow(ctx, l4_offset, l4_len) else {
        return Verdict::Pass(Reason::VipIcmp);
    };
    if is_nat(&flow) {
        return Verdict::Pass(Reason::VipIcmp);
    }
    match balance::established_backend(&flow, false) {
        Some((_, backend, _)) => balance::forward(ctx, eth, &backend),
        None => Verdict::Pass(Reason::VipIcmp),
    }
}

/// Whether `flow`'s service forwards by NAT.
#[inline(always)]
fn is_nat(flow: &FlowKey) -> bool {
    let key = ServiceKey {
        vip: flow.dst_ip,
        port: flow.dst_port,
        proto: flow.proto,
        _pad: 0,
    };
    // SAFETY: a pointer returned by a map lookup is valid for the value's size during this run.
    SERVICES
        .get_ptr(key)
        .is_some_and(|service| unsafe { (*service).flags } & service_flags::NAT != 0)
}

/// Whether echo requests to a VIP are dropped (`global.vip_icmp_echo`).
#[inline(always)]
fn echo_dropped() -> bool {
    SETTINGS
        .get(0)
        .is_some_and(|settings| settings.vip_icmp_echo == vip_icmp_echo::DROP)
}

/// The flow an ICMP "fragmentation needed" at `offset` is about: its embedded
/// header is a packet the backend sent (VIP:port to client), so the flow is
/// that header's tuple reversed. `None` when the embedded IPv4 header and 8
/// bytes of TCP/UDP are not all there.
#[inline(always)]
fn frag_needed_flow(ctx: &XdpContext, offset: usize, l4_len: usize) -> Option<FlowKey> {
    let inner_offset = offset + IcmpHeader::LEN;
    let inner = packet::header::<Ipv4Hdr>(ctx, inner_offset)?;
    let inner_len = usize::from(inner.vihl & 0x0f) * 4;
    if inner_len < Ipv4Hdr::LEN
        || IcmpHeader::LEN + inner_len + UdpHdr::LEN > l4_len
        || (inner.proto != IPPROTO_TCP && inner.proto != IPPROTO_UDP)
    {
        return None;
    }
    let ports = packet::header::<UdpHdr>(ctx, inner_offset + inner_len)?;
    Some(FlowKey {
        src_ip: u32::from_ne_bytes(inner.dst_addr),
        dst_ip: u32::from_ne_bytes(inner.src_addr),
        src_port: u16::from_ne_bytes(ports.dst),
        dst_port: u16::from_ne_bytes(ports.src),
        proto: inner.proto,
        ..Default::default()
    })
}

/// Whether `service` takes packets from `src_ip` (network order): always
/// without an allow-list (its flag clear: no lookup), otherwise when the
/// source lies in one of the list's prefixes.
#[inline(always)]
pub fn source_allowed(service: &Service, src_ip: u32) -> bool {
    if service.flags & service_flags::ALLOW_LIST == 0 {
        return true;
    }
    let key = Key::new(
        AllowedSource::LOOKUP_PREFIX_LEN,
        AllowedSource {
            service_id: service.id,
            src_ip,
        },
    );
    ALLOW_LISTS.get(&key).is_some()
}

/// TCP or UDP to a VIP on a port with no service: dropped (edge firewall).
#[inline(always)]
pub fn vip_other_port() -> Verdict {
    Verdict::Drop(Reason::VipOtherPort)
}
