//! `forwarding = "nat"`: a service's packets leave with the backend's
//! address and port as their destination, and the backends' replies are
//! translated back to the VIP and the service's port. The reverse
//! translation is stateless, keyed by the reply's source ([`NAT_REVERSE`]):
//! any node translates any reply, so a failover keeps the connections. The
//! one thing learnt per client is where its packets came from
//! ([`NAT_CLIENTS`]), the next hop its replies go back to. Checksums are
//! updated incrementally (RFC 1624), never recomputed.

use lb_common::{
    checksum,
    maps::{Backend, Endpoint, LocalInterface, NatClient, Reason, IPPROTO_TCP, IPPROTO_UDP},
};
use network_types::{eth::EthHdr, ip::Ipv4Hdr, tcp::TcpHdr, udp::UdpHdr};

use crate::{
    balance::{self, Verdict},
    edge,
    maps::{LOCAL_INTERFACE, NAT_CLIENTS, NAT_REVERSE},
    packet,
};

/// IPv4 "more fragments" flag and fragment offset in the flags/offset field
/// (host order).
const IPV4_FRAGMENT_BITS: u16 = 0x3fff;
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

/// Rewrites the destination of a `nat` service's packet, whose TCP or UDP
/// header is at `l4_offset`, to `backend`'s address and port. `false` when
/// the headers are not all in the frame (never after `balance::parse`).
#[inline(always)]
pub fn to_backend(
    ctx: &aya_ebpf::programs::XdpContext,
    l4_offset: usize,
    proto: u8,
    backend: &Backend,
) -> bool {
    translate(
        ctx,
        l4_offset,
        proto,
        End::Destination,
        backend.ip,
        backend.port,
    )
}

/// Remembers the MAC the client `client` (network order) opened a new flow
/// of a `nat` service from: its translated replies go back there. Written
/// only when it changed.
#[inline(always)]
pub fn learn_client(client: u32, mac: [u8; 6]) {
    if let Some(known) = NAT_CLIENTS.get_ptr(client) {
        // SAFETY: a pointer returned by a map lookup is valid for the value's size during this run.
        if edge::same_mac(unsafe { &(*known).mac }, &mac) {
            return;
        }
    }
    let learnt = NatClient { mac, _pad: [0; 2] };
    // A full table evicts its least recently used client; a failed insert
    // leaves the replies to `nat_no_client` until the next new flow.
    let _ = NAT_CLIENTS.insert(client, learnt, 0);
}

/// A packet to no VIP: when it is a `nat` backend's reply that came in on
/// the servers' side for a client this node knows, it is translated back to
/// its service and sent to the client out of the main interface; anything
/// else goes to the kernel untouched.
#[inline(always)]
pub fn reply(ctx: &aya_ebpf::programs::XdpContext, eth: packet::Ethernet, ip: &Ipv4Hdr) -> Verdict {
    let not_service = Verdict::Pass(Reason::NotService);
    let Some(servers) = LOCAL_INTERFACE.get(LocalInterface::SERVERS) else {
        return not_service;
    };
    if !servers.is_used() || !edge::same_mac(&eth.destination(), &servers.mac) {
        return not_service;
    }
    let header_len = usize::from(ip.vihl & 0x0f) * 4;
    if header_len < Ipv4Hdr::LEN || u16::from_be_bytes(ip.frags) & IPV4_FRAGMENT_BITS != 0 {
        return not_service;
    }
    let (proto, client) = (ip.proto, u32::from_ne_bytes(ip.dst_addr));
    let backend_addr = u32::from_ne_bytes(ip.src_addr);
    let l4_offset = EthHdr::LEN + header_len;
    // The whole TCP or UDP header must be in the frame; both start with the
    // ports, read through the UDP view.
    let whole = match proto {
        IPPROTO_TCP => packet::header::<TcpHdr>(ctx, l4_offset).is_some(),
        IPPROTO_UDP => true,
        _ => false,
    };
    let ports = match packet::header::<UdpHdr>(ctx, l4_offset) {
        Some(ports) if whole => ports,
        _ => return not_service,
    };
    let backend = Endpoint {
        addr: backend_addr,
        port: u16::from_ne_bytes(ports.src),
        proto,
        _pad: 0,
    };
    let Some(service) = NAT_REVERSE.get_ptr(backend) else {
        return not_service;
    };
    // SAFETY: a pointer returned by a map lookup is valid for the value's size during this run.
    let service = unsafe { service.read() };
    let Some(client) = NAT_CLIENTS.get_ptr(client) else {
        return Verdict::Pass(Reason::NatNoClient);
    };
    // SAFETY: as above.
    let client = unsafe { client.read() };
    let Some(main) = LOCAL_INTERFACE.get(LocalInterface::MAIN) else {
        return not_service;
    };
    if !translate(
        ctx,
        l4_offset,
        proto,
        End::Source,
        service.addr,
        service.port,
    ) {
        return not_service;
    }
    eth.set_macs(client.mac, main.mac);
    balance::send(ctx, main.ifindex)
}

/// Rewrites one end (`end`) of the TCP or UDP packet whose L4 header is at
/// `l4_offset` to `addr` and `port` (network order), with the IPv4 and
/// L4 checksums updated to match. A UDP checksum of 0 (none) stays 0.
#[inline(always)]
fn translate(
    ctx: &aya_ebpf::programs::XdpContext,
    l4_offset: usize,
    proto: u8,
    end: End,
    addr: u32,
    port: u16,
) -> bool {
    let Some(ip) = packet::bytes_mut::<{ Ipv4Hdr::LEN }>(ctx, EthHdr::LEN) else {
        return false;
    };
    let endpoint = (addr.to_ne_bytes(), port.to_ne_bytes());
    // Each protocol on its own path, with its own bounds check, so that the
    // verifier sees every access within the range checked on that path.
    if proto == IPPROTO_TCP {
        let Some(tcp) = packet::bytes_mut::<{ TcpHdr::LEN }>(ctx, l4_offset) else {
            return false;
        };
        // SAFETY: both headers were bounds-checked just above.
        unsafe { rewrite(ip.cast(), tcp.cast(), TCP_CHECKSUM, end, endpoint, false) };
    } else {
        let Some(udp) = packet::bytes_mut::<{ UdpHdr::LEN }>(ctx, l4_offset) else {
            return false;
        };
        // SAFETY: as above.
        unsafe { rewrite(ip.cast(), udp.cast(), UDP_CHECKSUM, end, endpoint, true) };
    }
    true
}

/// Writes `endpoint` (address and port bytes) over one end of the packet
/// and updates both checksums.
///
/// # Safety
///
/// `ip` must point at a whole IPv4 header and `l4` at a TCP header (20
/// bytes) or a UDP header (8 bytes), inside a frame XDP may write; the
/// checksum at `checksum_at` must lie within that L4 header.
#[inline(always)]
unsafe fn rewrite(
    ip: *mut u8,
    l4: *mut u8,
    checksum_at: usize,
    end: End,
    endpoint: ([u8; 4], [u8; 2]),
    udp: bool,
) {
    let (addr_at, port_at) = match end {
        End::Source => (IPV4_SOURCE, 0),
        End::Destination => (IPV4_DESTINATION, 2),
    };
    // SAFETY: every offset is a constant within the header it indexes (the
    // addresses at 12 and 16 of 20 bytes, the ports at 0 and 2, the
    // checksums at 10 and `checksum_at`), which the caller vouches for.
    unsafe {
        let addr = ip.add(addr_at).cast::<[u8; 4]>();
        let port = l4.add(port_at).cast::<[u8; 2]>();
        let translation = checksum::Translation {
            old_addr: addr.read_unaligned(),
            new_addr: endpoint.0,
            old_port: port.read_unaligned(),
            new_port: endpoint.1,
        };
        addr.write_unaligned(translation.new_addr);
        port.write_unaligned(translation.new_port);
        let ip_checksum = ip.add(IPV4_CHECKSUM).cast::<[u8; 2]>();
        let current = u16::from_be_bytes(ip_checksum.read_unaligned());
        ip_checksum.write_unaligned(translation.ipv4_checksum(current).to_be_bytes());
        let l4_checksum = l4.add(checksum_at).cast::<[u8; 2]>();
        let current = u16::from_be_bytes(l4_checksum.read_unaligned());
        if let Some(updated) = translation.l4_checksum(current, udp) {
            l4_checksum.write_unaligned(updated.to_be_bytes());
        }
    }
}
