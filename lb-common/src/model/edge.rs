//! Edge filtering, as `lb-ebpf/src/edge.rs` does it: frames that are not for
//! the interface, and packets to a VIP that no service takes.

use super::decision::XdpAction;
use super::wire::EthernetFrame;
use crate::maps::{Reason, IPPROTO_ICMP};

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

/// `Ok` when the frame's destination MAC is `local_mac`; a frame for another
/// unicast MAC is passed as `not_for_us`, a broadcast or multicast frame
/// (I/G bit set) as `link_multicast`.
pub(super) fn check_destination_mac(
    eth: &EthernetFrame<'_>,
    local_mac: [u8; 6],
) -> Result<(), Rejection> {
    let dst = eth.dst_addr();
    if dst == local_mac {
        Ok(())
    } else if dst[0] & 1 != 0 {
        Err(pass(Reason::LinkMulticast))
    } else {
        Err(pass(Reason::NotForUs))
    }
}

/// A well-formed, unfragmented packet to a VIP, neither TCP nor UDP: ICMP is
/// passed to the kernel, anything else dropped.
pub(super) fn vip_other_protocol(proto: u8) -> Rejection {
    if proto == IPPROTO_ICMP {
        pass(Reason::VipIcmp)
    } else {
        drop(Reason::VipOtherProtocol)
    }
}
