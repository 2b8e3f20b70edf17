//! Edge filtering, as `lb-ebpf/src/edge.rs` does it: frames that are not for
//! the interface, packets to a VIP that no service takes, and sources a
//! service's allow-list leaves out.

use super::contents::MapContents;
use super::decision::XdpAction;
use super::wire::{EthernetFrame, Ipv4Header, UdpHeader};
use crate::maps::{
    service_flags, vip_icmp_echo, AllowedSource, FlowKey, LocalInterface, Reason, Service,
    ServiceKey, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP,
};

/// ICMP "echo request" (ping).
const ICMP_ECHO_REQUEST: u8 = 8;
/// ICMP "destination unreachable".
const ICMP_DEST_UNREACHABLE: u8 = 3;
/// Its code "fragmentation needed and DF set".
const ICMP_FRAG_NEEDED: u8 = 4;
/// Type, code, checksum and 4 more bytes.
const ICMP_HEADER_LEN: usize = 8;

/// Why a frame or packet is refused before any map is written.
pub(super) struct Rejection {
    pub action: XdpAction,
    pub reason: Reason,
}

pub(super) const fn pass(reason: Reason) -> Rejection {
    Rejection {
        action: XdpAction::Pass,
        reason,
    }
}

pub(super) const fn drop(reason: Reason) -> Rejection {
    Rejection {
        action: XdpAction::Drop,
        reason,
    }
}

/// Which of the node's interfaces a frame is addressed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Side {
    /// The main entry's MAC: where the clients are.
    Main,
    /// The servers' entry's MAC: from the servers' own network.
    Servers,
}

/// Which interface of `LOCAL_INTERFACE` the frame is addressed to: the
/// main entry's MAC (whether or not the entry is in use) before the
/// servers' entry's, which counts only when in use. A frame for another
/// unicast MAC is passed as `not_for_us`, a broadcast or multicast frame
/// (I/G bit set) as `link_multicast`. Asked only of packets to a VIP.
pub(super) fn check_destination_mac(
    eth: &EthernetFrame<'_>,
    maps: &MapContents,
) -> Result<Side, Rejection> {
    let dst = eth.dst_addr();
    let main = maps
        .local_interface(LocalInterface::MAIN)
        .unwrap_or_default();
    let servers = maps.local_interface(LocalInterface::SERVERS);
    if dst == main.mac {
        Ok(Side::Main)
    } else if servers.is_some_and(|servers| servers.is_used() && dst == servers.mac) {
        Ok(Side::Servers)
    } else if dst[0] & 1 != 0 {
        Err(pass(Reason::LinkMulticast))
    } else {
        Err(pass(Reason::NotForUs))
    }
}

/// Whether `service` takes packets from `flow`'s source: always without an
/// allow-list (the flag clear, the map not looked at), otherwise when the
/// source's lookup in `ALLOW_LISTS` finds an entry.
pub(super) fn source_allowed(service: &Service, flow: &FlowKey, maps: &MapContents) -> bool {
    service.flags & service_flags::ALLOW_LIST == 0
        || maps.allow_list_matches(&AllowedSource {
            service_id: service.id,
            src_ip: flow.src_ip,
        })
}

/// Whether `flow`'s service forwards by NAT (its flag in `SERVICES`).
pub(super) fn is_nat(flow: &FlowKey, maps: &MapContents) -> bool {
    let key = ServiceKey {
        vip: flow.dst_ip,
        port: flow.dst_port,
        proto: flow.proto,
        _pad: 0,
    };
    maps.service(&key)
        .is_some_and(|service| service.flags & service_flags::NAT != 0)
}

/// A well-formed, unfragmented packet to a VIP, neither TCP nor UDP, with IP
/// payload `l4`: for an ICMP "fragmentation needed", the flow it is about;
/// an echo request is dropped with `vip_icmp_echo = "drop"`; other ICMP is
/// passed to the kernel, anything else dropped.
pub(super) fn vip_other_protocol(
    proto: u8,
    l4: &[u8],
    maps: &MapContents,
) -> Result<FlowKey, Rejection> {
    if proto != IPPROTO_ICMP {
        return Err(drop(Reason::VipOtherProtocol));
    }
    // The ICMP header, whole within the IP payload.
    let Some(&[icmp_type, code, ..]) = l4.first_chunk::<ICMP_HEADER_LEN>() else {
        return Err(pass(Reason::VipIcmp));
    };
    if icmp_type == ICMP_ECHO_REQUEST && maps.settings().vip_icmp_echo == vip_icmp_echo::DROP {
        return Err(drop(Reason::VipIcmpEcho));
    }
    if icmp_type != ICMP_DEST_UNREACHABLE || code != ICMP_FRAG_NEEDED {
        return Err(pass(Reason::VipIcmp));
    }
    frag_needed_flow(l4).ok_or(pass(Reason::VipIcmp))
}

/// The flow of the packet embedded in an ICMP "fragmentation needed"
/// (`icmp`, whose 8-byte header is there): the embedded IPv4 header (IHL
/// honoured) and 8 bytes of TCP/UDP, all within the IP payload, read as the
/// backend sent them (VIP to client) and reversed.
fn frag_needed_flow(icmp: &[u8]) -> Option<FlowKey> {
    let embedded = icmp.get(ICMP_HEADER_LEN..)?;
    let inner = Ipv4Header::new_checked(embedded).ok()?;
    let inner_len = inner.header_len();
    let proto = inner.protocol();
    if inner_len < Ipv4Header::FIXED_LEN || (proto != IPPROTO_TCP && proto != IPPROTO_UDP) {
        return None;
    }
    let ports = UdpHeader::new_checked(embedded.get(inner_len..)?).ok()?;
    Some(FlowKey {
        src_ip: inner.dst_addr(),
        dst_ip: inner.src_addr(),
        src_port: ports.dst_port(),
        dst_port: ports.src_port(),
        proto,
        _pad: [0; 3],
    })
}
