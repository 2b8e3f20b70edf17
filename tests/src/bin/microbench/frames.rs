//! The test frames of the micro benchmark: Ethernet/IPv4/TCP and
//! Ethernet/IPv4/UDP built byte by byte, and fresh 5-tuples for the new-flow
//! paths.
//!
//! The IPv4 header checksum is correct; the TCP and UDP checksums are left
//! zero (UDP: "no checksum"), as nothing on the XDP path verifies them.

use std::net::Ipv4Addr;

use lb_common::checksum::checksum;
use lb_common::maps::{IPPROTO_TCP, IPPROTO_UDP};

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETH_LEN: usize = 14;
const IPV4_LEN: usize = 20;
const TCP_LEN: usize = 20;
const UDP_LEN: usize = 8;
/// Offset of the IPv4 source address in a frame.
const IPV4_SRC: usize = ETH_LEN + 12;
/// Offset of the IPv4 header checksum in a frame.
const IPV4_CHECKSUM: usize = ETH_LEN + 10;
/// Offset of the L4 source port in a frame (IPv4 without options).
const L4_SRC_PORT: usize = ETH_LEN + IPV4_LEN;

/// TCP flags.
pub const TCP_SYN: u8 = 0x02;
pub const TCP_ACK: u8 = 0x10;

/// The MAC the frames are addressed to (the load balancer's).
pub const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 1, 0x01];

/// Source and destination of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoints {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
}

/// A TCP segment without payload, with `flags`.
pub fn tcp(endpoints: Endpoints, flags: u8) -> Vec<u8> {
    let mut segment = [0u8; TCP_LEN];
    segment[0..2].copy_from_slice(&endpoints.src_port.to_be_bytes());
    segment[2..4].copy_from_slice(&endpoints.dst_port.to_be_bytes());
    segment[4..8].copy_from_slice(&1000u32.to_be_bytes());
    if flags & TCP_ACK != 0 {
        segment[8..12].copy_from_slice(&2000u32.to_be_bytes());
    }
    segment[12] = 5 << 4;
    segment[13] = flags;
    segment[14..16].copy_from_slice(&64_240u16.to_be_bytes());
    frame(endpoints, IPPROTO_TCP, &segment)
}

/// A UDP datagram carrying `payload`.
pub fn udp(endpoints: Endpoints, payload: &[u8]) -> Vec<u8> {
    let mut datagram = Vec::with_capacity(UDP_LEN + payload.len());
    datagram.extend_from_slice(&endpoints.src_port.to_be_bytes());
    datagram.extend_from_slice(&endpoints.dst_port.to_be_bytes());
    let len = u16::try_from(UDP_LEN + payload.len()).expect("test datagrams are small");
    datagram.extend_from_slice(&len.to_be_bytes());
    datagram.extend_from_slice(&[0, 0]);
    datagram.extend_from_slice(payload);
    frame(endpoints, IPPROTO_UDP, &datagram)
}

fn frame(endpoints: Endpoints, proto: u8, l4: &[u8]) -> Vec<u8> {
    let total_len = u16::try_from(IPV4_LEN + l4.len()).expect("test packets are small");
    let mut frame = Vec::with_capacity(ETH_LEN + IPV4_LEN + l4.len());
    frame.extend_from_slice(&LB_MAC);
    frame.extend_from_slice(&CLIENT_MAC);
    frame.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    frame.extend_from_slice(&[0x45, 0]);
    frame.extend_from_slice(&total_len.to_be_bytes());
    frame.extend_from_slice(&[0x12, 0x34, 0, 0, 64, proto, 0, 0]);
    frame.extend_from_slice(&endpoints.src.octets());
    frame.extend_from_slice(&endpoints.dst.octets());
    frame.extend_from_slice(l4);
    write_ipv4_checksum(&mut frame);
    frame
}

/// Rewrites the source address and port of `frame` (built by this module)
/// and its IPv4 checksum: the next packet of a fresh flow.
pub fn set_source(frame: &mut [u8], src: Ipv4Addr, src_port: u16) {
    frame[IPV4_SRC..IPV4_SRC + 4].copy_from_slice(&src.octets());
    frame[L4_SRC_PORT..L4_SRC_PORT + 2].copy_from_slice(&src_port.to_be_bytes());
    write_ipv4_checksum(frame);
}

fn write_ipv4_checksum(frame: &mut [u8]) {
    frame[IPV4_CHECKSUM..IPV4_CHECKSUM + 2].fill(0);
    let sum = checksum(&frame[ETH_LEN..ETH_LEN + IPV4_LEN]);
    frame[IPV4_CHECKSUM..IPV4_CHECKSUM + 2].copy_from_slice(&sum.to_be_bytes());
}

/// The source of the `index`-th fresh flow: distinct for every index below
/// 2^24, from 10.64.0.0/10, with a port that varies too.
pub fn fresh_source(index: u32) -> (Ipv4Addr, u16) {
    let [_, a, b, c] = index.to_be_bytes();
    let port = 1024 + u16::try_from(index % 60_000).expect("below 60000");
    (Ipv4Addr::new(10, 64 + (a & 0x3f), b, c), port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints() -> Endpoints {
        Endpoints {
            src: Ipv4Addr::new(10, 0, 1, 1),
            dst: Ipv4Addr::new(10, 0, 0, 100),
            src_port: 40_000,
            dst_port: 80,
        }
    }

    #[test]
    fn tcp_frame_has_a_valid_ipv4_header() {
        let frame = tcp(endpoints(), TCP_SYN);
        assert_eq!(frame.len(), ETH_LEN + IPV4_LEN + TCP_LEN);
        assert_eq!(checksum(&frame[ETH_LEN..ETH_LEN + IPV4_LEN]), 0);
        assert_eq!(frame[ETH_LEN + 9], IPPROTO_TCP);
        assert_eq!(frame[ETH_LEN + IPV4_LEN + 13], TCP_SYN);
    }

    #[test]
    fn udp_length_covers_header_and_payload() {
        let frame = udp(endpoints(), b"query");
        let udp_len = u16::from_be_bytes([frame[L4_SRC_PORT + 4], frame[L4_SRC_PORT + 5]]);
        assert_eq!(usize::from(udp_len), UDP_LEN + 5);
        assert_eq!(frame.len(), ETH_LEN + IPV4_LEN + UDP_LEN + 5);
    }

    #[test]
    fn set_source_rewrites_address_port_and_checksum() {
        let mut frame = tcp(endpoints(), TCP_SYN);
        set_source(&mut frame, Ipv4Addr::new(10, 64, 2, 3), 5555);
        assert_eq!(frame[IPV4_SRC..IPV4_SRC + 4], [10, 64, 2, 3]);
        assert_eq!(frame[L4_SRC_PORT..L4_SRC_PORT + 2], 5555u16.to_be_bytes());
        assert_eq!(checksum(&frame[ETH_LEN..ETH_LEN + IPV4_LEN]), 0);
    }

    #[test]
    fn fresh_sources_do_not_repeat() {
        let sources: std::collections::HashSet<_> = (0..200_000).map(fresh_source).collect();
        assert_eq!(sources.len(), 200_000);
    }
}
