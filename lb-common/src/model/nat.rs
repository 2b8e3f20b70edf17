//! `forwarding = "nat"`, like `lb-ebpf/src/nat.rs`: a service's packet
//! leaves with its backend's address and port as its destination; a
//! backend's reply that comes in on the servers' side for a client this
//! node learnt is translated back to its service (`NAT_REVERSE`, by the
//! reply's source) and sent to the client's MAC (`NAT_CLIENTS`). The
//! checksums are updated with [`checksum::Translation`], the program's own
//! arithmetic.

use alloc::vec::Vec;

use super::contents::MapContents;
use super::decision::{Decision, FlowChange, HandshakeEffect, Ingress, NatRewrite, XdpAction};
use super::wire::{EthernetFrame, Ipv4Header, TcpHeader, UdpHeader};
use crate::checksum;
use crate::maps::{
    Backend, Endpoint, FlowKey, LocalInterface, NatClient, Reason, IPPROTO_TCP, IPPROTO_UDP,
};

/// A client's MAC learnt on a new flow: the `NAT_CLIENTS` write (the
/// client's address, network order, and its entry).
pub type ClientWrite = (u32, NatClient);

/// Offsets in the IPv4 header: the header checksum, the source and the
/// destination address.
const IPV4_CHECKSUM: usize = 10;
const IPV4_SOURCE: usize = 12;
const IPV4_DESTINATION: usize = 16;
/// Offset of the checksum in a TCP and in a UDP header.
const TCP_CHECKSUM: usize = 16;
const UDP_CHECKSUM: usize = 6;

/// Which end of a packet a translation rewrites.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    /// The source: a reply leaving as its service.
    Source,
    /// The destination: a packet on its way to the backend.
    Destination,
}

/// The `NAT_CLIENTS` write of a new flow of a `nat` service from `flow`'s
/// client, whose frame came from `mac`: none when the client's entry
/// already holds that MAC (only the MAC is compared, not the padding).
pub(super) fn learn_client(
    flow: &FlowKey,
    mac: [u8; 6],
    maps: &MapContents,
) -> Option<ClientWrite> {
    if maps
        .nat_client(flow.src_ip)
        .is_some_and(|known| known.mac == mac)
    {
        return None;
    }
    Some((flow.src_ip, NatClient { mac, _pad: [0; 2] }))
}

/// Rewrites the destination of the `nat` packet in `frame`, whose TCP or
/// UDP header (`proto`) is at `l4_offset`, to `backend`'s address and port.
/// `decide` found both headers whole, so this never fails (the program's
/// `short_l4` drop after a failed rewrite is unreachable).
pub(super) fn to_backend(frame: &mut [u8], l4_offset: usize, proto: u8, backend: &Backend) {
    translate(
        frame,
        l4_offset,
        proto,
        End::Destination,
        backend.ip,
        backend.port,
    );
}

/// A frame addressed to no VIP (`eth`, its IPv4 header `ip`): a `nat`
/// backend's reply when it is addressed to the servers' interface's MAC
/// (an entry in use), unfragmented, with its whole TCP (20 bytes) or UDP
/// (8 bytes) header in the frame, from an endpoint in `NAT_REVERSE`, to a
/// client in `NAT_CLIENTS`: translated back to its service and sent to the
/// client out of the main interface. A reply to an unknown client is
/// passed as `nat_no_client`; anything else as `not_service`, untouched.
/// The IPv4 total length is not looked at (the headers need only be in the
/// frame), nor the TCP data offset, nor the service's protocol in
/// `NAT_REVERSE`.
pub(super) fn reply(
    frame: &[u8],
    eth: EthernetFrame<'_>,
    ip: Ipv4Header<'_>,
    ingress: &Ingress,
    maps: &MapContents,
) -> Decision {
    let not_service =
        || Decision::unforwarded(XdpAction::Pass, Reason::NotService, frame, None, None);
    let Some(servers) = maps.local_interface(LocalInterface::SERVERS) else {
        return not_service();
    };
    if !servers.is_used() || eth.dst_addr() != servers.mac {
        return not_service();
    }
    let header_len = ip.header_len();
    let fragment_bits = Ipv4Header::MORE_FRAGMENTS | Ipv4Header::FRAGMENT_OFFSET;
    if header_len < Ipv4Header::FIXED_LEN || ip.flags_and_fragment_offset() & fragment_bits != 0 {
        return not_service();
    }
    let proto = ip.protocol();
    let l4 = eth.payload().get(header_len..).unwrap_or_default();
    let whole = match proto {
        IPPROTO_TCP => TcpHeader::new_checked(l4).is_ok(),
        IPPROTO_UDP => true,
        _ => false,
    };
    // Both headers start with the ports, read through the UDP view.
    let ports = match UdpHeader::new_checked(l4) {
        Ok(ports) if whole => ports,
        _ => return not_service(),
    };
    let backend = Endpoint {
        addr: ip.src_addr(),
        port: ports.src_port(),
        proto,
        _pad: 0,
    };
    let Some(service) = maps.nat_reverse(&backend) else {
        return not_service();
    };
    let Some(client) = maps.nat_client(ip.dst_addr()) else {
        return Decision::unforwarded(XdpAction::Pass, Reason::NatNoClient, frame, None, None);
    };
    let Some(main) = maps.local_interface(LocalInterface::MAIN) else {
        return not_service();
    };
    let mut output: Vec<u8> = frame.to_vec();
    translate(
        &mut output,
        EthernetFrame::HEADER_LEN + header_len,
        proto,
        End::Source,
        service.addr,
        service.port,
    );
    output[..6].copy_from_slice(&client.mac);
    output[6..12].copy_from_slice(&main.mac);
    let action = if main.ifindex == ingress.ifindex {
        XdpAction::Tx
    } else {
        XdpAction::Redirect
    };
    Decision {
        action,
        output,
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
        nat: Some(NatRewrite::Reply(backend)),
        nat_client: None,
    }
}

/// Rewrites one end (`end`) of the TCP or UDP (`proto`, anything but TCP
/// read as UDP) packet in `frame`, whose L4 header is at `l4_offset`, to
/// `addr` and `port` (network order), with the IPv4 and L4 checksums
/// updated to match; a UDP checksum of 0 (none) stays 0. Leaves `frame` as
/// it is when the headers are not all in it, which its callers rule out.
fn translate(frame: &mut [u8], l4_offset: usize, proto: u8, end: End, addr: u32, port: u16) {
    let (checksum_at, l4_len, udp) = if proto == IPPROTO_TCP {
        (TCP_CHECKSUM, TcpHeader::FIXED_LEN, false)
    } else {
        (UDP_CHECKSUM, UdpHeader::LEN, true)
    };
    let Some((head, l4)) = frame.split_at_mut_checked(l4_offset) else {
        return;
    };
    let ip = head
        .get_mut(EthernetFrame::HEADER_LEN..)
        .and_then(|ip| ip.get_mut(..Ipv4Header::FIXED_LEN));
    let (Some(ip), Some(l4)) = (ip, l4.get_mut(..l4_len)) else {
        return;
    };
    let (addr_at, port_at) = match end {
        End::Source => (IPV4_SOURCE, 0),
        End::Destination => (IPV4_DESTINATION, 2),
    };
    let translation = checksum::Translation {
        old_addr: read(ip, addr_at),
        new_addr: addr.to_ne_bytes(),
        old_port: read(l4, port_at),
        new_port: port.to_ne_bytes(),
    };
    ip[addr_at..addr_at + 4].copy_from_slice(&translation.new_addr);
    l4[port_at..port_at + 2].copy_from_slice(&translation.new_port);
    let current = u16::from_be_bytes(read(ip, IPV4_CHECKSUM));
    let updated = translation.ipv4_checksum(current);
    ip[IPV4_CHECKSUM..IPV4_CHECKSUM + 2].copy_from_slice(&updated.to_be_bytes());
    let current = u16::from_be_bytes(read(l4, checksum_at));
    if let Some(updated) = translation.l4_checksum(current, udp) {
        l4[checksum_at..checksum_at + 2].copy_from_slice(&updated.to_be_bytes());
    }
}

/// The `N` bytes of `header` at `offset`, a constant within every header
/// [`translate`] reads.
fn read<const N: usize>(header: &[u8], offset: usize) -> [u8; N] {
    let mut bytes = [0; N];
    bytes.copy_from_slice(&header[offset..offset + N]);
    bytes
}
