//! Edge filtering: frames that are not for this interface, and packets to a
//! VIP that no service takes. Each check sits on the cold side of its branch:
//! the hot path pays one 6-byte compare for the destination MAC.

use lb_common::maps::{Reason, IPPROTO_ICMP};

use crate::{balance::Verdict, maps::LOCAL_INTERFACE, packet};

/// `Ok` when the frame is addressed to the ingress interface's MAC;
/// otherwise the frame is passed untouched, never forwarded (a switch floods
/// frames for unlearned MACs to every port).
#[inline(always)]
pub fn check_destination_mac(eth: &packet::Ethernet) -> Result<(), Verdict> {
    let (dst, _) = eth.macs();
    let local = match LOCAL_INTERFACE.get(0) {
        Some(interface) => interface.mac,
        None => [0; 6],
    };
    if same_mac(&dst, &local) {
        return Ok(());
    }
    Err(other_destination(&dst))
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
fn same_mac(a: &[u8; 6], b: &[u8; 6]) -> bool {
    let head = |m: &[u8; 6]| u32::from_ne_bytes([m[0], m[1], m[2], m[3]]);
    let tail = |m: &[u8; 6]| u16::from_ne_bytes([m[4], m[5]]);
    head(a) == head(b) && tail(a) == tail(b)
}

/// A well-formed, unfragmented packet to a VIP with a protocol other than TCP
/// or UDP: ICMP goes to the kernel (it answers echo requests), the rest is
/// dropped.
#[inline(always)]
pub fn vip_other_protocol(proto: u8) -> Verdict {
    if proto == IPPROTO_ICMP {
        Verdict::Pass(Reason::VipIcmp)
    } else {
        Verdict::Drop(Reason::VipOtherProtocol)
    }
}

/// TCP or UDP to a VIP on a port with no service: dropped (edge firewall).
#[inline(always)]
pub fn vip_other_port() -> Verdict {
    Verdict::Drop(Reason::VipOtherPort)
}
