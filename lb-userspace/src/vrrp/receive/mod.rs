//! The receive path of one instance, without IO: every datagram the advert
//! socket delivers ends as exactly one [`Reception`] (accepted by the state
//! machine, or rejected for one reason), which
//! [`ReceiveCounters::count`](super::status::ReceiveCounters::count) turns
//! into exactly one counter.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::Instant;

use super::config::VrrpConfig;
use super::machine::{AdvertRejected, Instance};
use super::packet::{self, ChecksumForm, PacketError};

/// What became of one received datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reception {
    /// The machine took the advert.
    Accepted {
        source: Ipv4Addr,
        checksum_form: ChecksumForm,
        /// Whether it lists exactly our VIPs (RFC 9568 §7.1 says to log it
        /// when not, and to accept it all the same).
        same_addresses: bool,
    },
    /// Not a valid advert: a check that needs no instance state failed.
    Malformed(PacketError),
    /// Unicast mode: from an address that is not a configured peer.
    UnknownPeer(Ipv4Addr),
    /// A valid advert the instance refused.
    Refused {
        source: Ipv4Addr,
        reason: AdvertRejected,
    },
}

/// Runs the receive checks on `datagram` (a whole IPv4 datagram, as a raw
/// socket delivers it) and hands a valid advert from an acceptable source to
/// `machine`, which runs `config`.
pub fn receive(
    machine: &mut Instance,
    config: &VrrpConfig,
    now: Instant,
    datagram: &[u8],
) -> Reception {
    let received = match packet::parse_datagram(datagram) {
        Ok(received) => received,
        Err(error) => return Reception::Malformed(error),
    };
    let peers = &config.unicast_peers;
    if !peers.is_empty() && !peers.contains(&received.source) {
        return Reception::UnknownPeer(received.source);
    }
    match machine.handle_advert(now, received.source, &received.advert) {
        Ok(()) => Reception::Accepted {
            source: received.source,
            checksum_form: received.checksum_form,
            same_addresses: same_addresses(&received.advert.addresses, &config.virtual_addresses),
        },
        Err(reason) => Reception::Refused {
            source: received.source,
            reason,
        },
    }
}

/// Whether both lists hold the same addresses, in any order.
fn same_addresses(advertised: &[Ipv4Addr], configured: &[Ipv4Addr]) -> bool {
    advertised.iter().collect::<HashSet<_>>() == configured.iter().collect::<HashSet<_>>()
}

#[cfg(test)]
mod tests;
