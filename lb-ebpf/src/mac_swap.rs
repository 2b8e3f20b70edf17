//! `xdp_mac_swap`: the benchmark's "minimal useful work" floor. Parses
//! Ethernet/IPv4/TCP with the same bounds checks as the load balancer, swaps
//! the MAC addresses and bounces the frame.

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use lb_common::maps::IPPROTO_TCP;
use network_types::{
    eth::{EthHdr, EtherType},
    ip::Ipv4Hdr,
    tcp::TcpHdr,
};

use crate::packet;

/// `XDP_TX` with the MACs swapped for an IPv4/TCP frame, `XDP_PASS` otherwise.
#[inline(always)]
pub fn bounce(ctx: &XdpContext) -> u32 {
    let Some(eth) = packet::ethernet(ctx) else {
        return xdp_action::XDP_PASS;
    };
    if eth.ether_type() != EtherType::Ipv4 as u16 {
        return xdp_action::XDP_PASS;
    }
    let Some(ip) = packet::header::<Ipv4Hdr>(ctx, EthHdr::LEN) else {
        return xdp_action::XDP_PASS;
    };
    let ip_header_len = usize::from(ip.vihl & 0x0f) * 4;
    if ip.proto != IPPROTO_TCP || ip_header_len < Ipv4Hdr::LEN {
        return xdp_action::XDP_PASS;
    }
    if packet::header::<TcpHdr>(ctx, EthHdr::LEN + ip_header_len).is_none() {
        return xdp_action::XDP_PASS;
    }
    let (dst, src) = eth.macs();
    eth.set_macs(src, dst);
    xdp_action::XDP_TX
}
