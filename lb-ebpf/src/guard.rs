//! `lb_guard`, the kernel-side guard of `lb_xdp` (tc ingress on the same
//! interface): a TCP or UDP packet to a VIP that reaches the kernel was not
//! handled by `lb_xdp`, which forwards or drops every such packet, except
//! one to a service with no serving backend (passed on purpose, so that the
//! kernel refuses it at once). So its program is gone — detached under a
//! running `lb`, for the instant before this node resigns or withdraws —
//! and this node's kernel, which may still hold the VIP, would answer the
//! packet with a reset. The guard drops it instead (counted
//! `bypassed_xdp`): the client retransmits, and the retransmission reaches
//! the node that takes over, so no connection is refused or reset.
//!
//! It costs `lb_xdp`'s traffic nothing (forwarded packets never reach tc)
//! and every other packet the kernel receives one lookup in `VIPS`. Headers
//! are read with `bpf_skb_load_bytes`, so a non-linear packet is read too.

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    programs::TcContext,
};
use lb_common::maps::{Reason, ServiceKey, IPPROTO_TCP, IPPROTO_UDP};
use network_types::{eth::EthHdr, ip::Ipv4Hdr};

use crate::{
    maps::{SERVICES, VIPS},
    stats,
};

/// `skb->pkt_type` of a frame addressed to this host's MAC: the only one
/// the kernel's TCP and UDP answer (others go no further than IP).
const PACKET_HOST: u32 = 0;
/// EtherType of IPv4, as it appears on the wire.
const ETHER_TYPE_IPV4: [u8; 2] = [0x08, 0x00];
/// Offset of the EtherType in the Ethernet header.
const ETHER_TYPE_OFFSET: usize = 12;
/// The IPv4 "more fragments" flag and fragment offset (host order).
const IPV4_FRAGMENT_BITS: u16 = 0x3fff;

/// The tc action for the packet in `ctx`: dropped and counted when it must
/// not reach the kernel's TCP or UDP, else passed on.
#[inline(always)]
pub fn guard(ctx: &TcContext) -> i32 {
    if bypassed_xdp(ctx) {
        stats::count_reason(Reason::BypassedXdp);
        TC_ACT_SHOT
    } else {
        TC_ACT_OK
    }
}

/// Whether the packet is one `lb_xdp` would have forwarded or dropped: TCP
/// or UDP addressed to a VIP and to this host, other than to a service with
/// no serving backend. Fragments and truncated headers to a VIP count too
/// (`lb_xdp` drops them).
#[inline(always)]
fn bypassed_xdp(ctx: &TcContext) -> bool {
    // SAFETY: `skb` points at the `__sk_buff` the kernel passed to this run,
    // valid and readable for its whole duration.
    let pkt_type = unsafe { (*ctx.skb.skb).pkt_type };
    if pkt_type != PACKET_HOST {
        return false;
    }
    if ctx.load::<[u8; 2]>(ETHER_TYPE_OFFSET) != Ok(ETHER_TYPE_IPV4) {
        return false;
    }
    let Ok(ip) = ctx.load::<Ipv4Hdr>(EthHdr::LEN) else {
        return false;
    };
    let vip = u32::from_ne_bytes(ip.dst_addr);
    if (ip.proto != IPPROTO_TCP && ip.proto != IPPROTO_UDP) || VIPS.get_ptr(vip).is_none() {
        return false;
    }
    let header_len = usize::from(ip.vihl & 0x0f) * 4;
    if u16::from_be_bytes(ip.frags) & IPV4_FRAGMENT_BITS != 0 || header_len < Ipv4Hdr::LEN {
        return true;
    }
    // Source and destination port: the first 4 bytes of TCP and UDP alike.
    let Ok(ports) = ctx.load::<[u8; 4]>(EthHdr::LEN + header_len) else {
        return true;
    };
    let key = ServiceKey {
        vip,
        port: u16::from_ne_bytes([ports[2], ports[3]]),
        proto: ip.proto,
        _pad: 0,
    };
    match SERVICES.get_ptr(key) {
        // SAFETY: a pointer returned by a map lookup is valid for the value's
        // size during this run.
        Some(service) => unsafe { (*service).table_len != 0 },
        None => true,
    }
}
