//! What a running VRRP instance shows the rest of the program: its state and
//! counters for everything received, rejected and sent (published through a
//! `tokio::sync::watch` channel by the driver).

use std::net::Ipv4Addr;
use std::time::SystemTime;

use super::machine::{AdvertRejected, State};
use super::packet::{ChecksumForm, PacketError};
use super::receive::Reception;

/// A snapshot of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpStatus {
    pub state: State,
    /// When it entered `state`.
    pub since: SystemTime,
    /// The priority currently advertised (tracking may have lowered it).
    pub priority: u8,
    /// Ourselves while master, the current master's address while backup.
    pub master_address: Option<Ipv4Addr>,
    /// State changes since start.
    pub transitions: u64,
    /// While master without every VIP (and the gateway address) in place:
    /// why the kernel refused one (the instance retries with every advert).
    /// `None` otherwise.
    pub address_error: Option<String>,
    /// Times this node resigned as master (it lost its data path).
    pub resignations: u64,
    /// Times tracking held the priority at the lowest until this node's
    /// health view was fresh (after start, or after it could not check).
    pub preemption_holds: u64,
    pub received: ReceiveCounters,
    pub sent: SendCounters,
}

impl VrrpStatus {
    pub(crate) fn new(priority: u8) -> Self {
        VrrpStatus {
            state: State::Initialize,
            since: SystemTime::now(),
            priority,
            master_address: None,
            transitions: 0,
            address_error: None,
            resignations: 0,
            preemption_holds: 0,
            received: ReceiveCounters::default(),
            sent: SendCounters::default(),
        }
    }
}

/// Adverts received: accepted ones, and one counter per rejection reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiveCounters {
    pub accepted: u64,
    /// Accepted with the RFC 9568 checksum (no pseudo-header).
    pub accepted_message_only_checksum: u64,
    /// Accepted with old keepalived's unicast checksum (group in the pseudo-header).
    pub accepted_group_pseudo_header_checksum: u64,
    /// Accepted, but listing other VIPs than ours (RFC 9568 §7.1 says log it).
    pub accepted_address_list_mismatch: u64,
    pub rejected_ip_header: u64,
    pub rejected_ttl: u64,
    pub rejected_truncated: u64,
    pub rejected_version: u64,
    pub rejected_type: u64,
    pub rejected_no_addresses: u64,
    pub rejected_length_mismatch: u64,
    pub rejected_checksum: u64,
    pub rejected_zero_interval: u64,
    pub rejected_vrid_mismatch: u64,
    pub rejected_from_own_address: u64,
    /// In unicast mode, from an address that is not a configured peer.
    pub rejected_unknown_peer: u64,
    /// The socket reported an error instead of a datagram.
    pub receive_errors: u64,
}

impl ReceiveCounters {
    /// Rejected adverts by reason, with the reason's stable snake_case name
    /// (as `/status` and the metrics show it).
    pub fn rejections(&self) -> [(&'static str, u64); 12] {
        [
            ("ip_header", self.rejected_ip_header),
            ("ttl", self.rejected_ttl),
            ("truncated", self.rejected_truncated),
            ("version", self.rejected_version),
            ("type", self.rejected_type),
            ("no_addresses", self.rejected_no_addresses),
            ("length_mismatch", self.rejected_length_mismatch),
            ("checksum", self.rejected_checksum),
            ("zero_interval", self.rejected_zero_interval),
            ("vrid_mismatch", self.rejected_vrid_mismatch),
            ("from_own_address", self.rejected_from_own_address),
            ("unknown_peer", self.rejected_unknown_peer),
        ]
    }

    /// Total rejected adverts, whatever the reason.
    pub fn rejected(&self) -> u64 {
        self.rejections().iter().map(|(_, count)| count).sum()
    }

    /// Counts one received datagram: `accepted` or exactly one `rejected_*`
    /// counter goes up by one.
    pub fn count(&mut self, reception: &Reception) {
        let counter = match *reception {
            Reception::Accepted {
                checksum_form,
                same_addresses,
                ..
            } => {
                match checksum_form {
                    ChecksumForm::PseudoHeader => {}
                    ChecksumForm::MessageOnly => self.accepted_message_only_checksum += 1,
                    ChecksumForm::PseudoHeaderWithGroup => {
                        self.accepted_group_pseudo_header_checksum += 1
                    }
                }
                if !same_addresses {
                    self.accepted_address_list_mismatch += 1;
                }
                &mut self.accepted
            }
            Reception::Malformed(error) => match error {
                PacketError::IpHeader => &mut self.rejected_ip_header,
                PacketError::Ttl(_) => &mut self.rejected_ttl,
                PacketError::Truncated => &mut self.rejected_truncated,
                PacketError::Version(_) => &mut self.rejected_version,
                PacketError::Type(_) => &mut self.rejected_type,
                PacketError::NoAddresses => &mut self.rejected_no_addresses,
                PacketError::LengthMismatch { .. } => &mut self.rejected_length_mismatch,
                PacketError::Checksum => &mut self.rejected_checksum,
                PacketError::ZeroInterval => &mut self.rejected_zero_interval,
            },
            Reception::UnknownPeer(_) => &mut self.rejected_unknown_peer,
            Reception::Refused { reason, .. } => match reason {
                AdvertRejected::VridMismatch { .. } => &mut self.rejected_vrid_mismatch,
                AdvertRejected::FromOwnAddress => &mut self.rejected_from_own_address,
            },
        };
        *counter += 1;
    }
}

/// What the instance sent, and what failed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendCounters {
    pub adverts: u64,
    pub advert_errors: u64,
    /// Gratuitous ARP rounds (one frame per VIP each).
    pub gratuitous_arps: u64,
    pub gratuitous_arp_errors: u64,
    /// Rounds of VIP additions with a refusal, and refused removals.
    pub address_errors: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rejection_reason_has_its_own_counter() {
        let mut counters = ReceiveCounters::default();
        let errors = [
            PacketError::IpHeader,
            PacketError::Ttl(64),
            PacketError::Truncated,
            PacketError::Version(2),
            PacketError::Type(2),
            PacketError::NoAddresses,
            PacketError::LengthMismatch {
                expected: 12,
                actual: 16,
            },
            PacketError::Checksum,
            PacketError::ZeroInterval,
        ];
        for error in errors {
            counters.count(&Reception::Malformed(error));
        }
        let source = Ipv4Addr::new(192, 0, 2, 7);
        let refused = |reason| Reception::Refused { source, reason };
        counters.count(&refused(AdvertRejected::VridMismatch {
            received: 1,
            expected: 2,
        }));
        counters.count(&refused(AdvertRejected::FromOwnAddress));
        counters.count(&Reception::UnknownPeer(source));
        assert_eq!(counters.rejected(), 12);
        let each = counters.rejections().map(|(_, count)| count);
        assert_eq!(each, [1; 12]);
        let mut names = counters.rejections().map(|(name, _)| name).to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 12, "one name per reason");
        assert_eq!(counters.accepted, 0);
    }

    #[test]
    fn accepted_adverts_note_their_checksum_form_and_address_list() {
        let mut counters = ReceiveCounters::default();
        let accepted = |checksum_form, same_addresses| Reception::Accepted {
            source: Ipv4Addr::new(192, 0, 2, 7),
            checksum_form,
            same_addresses,
        };
        counters.count(&accepted(ChecksumForm::PseudoHeader, true));
        counters.count(&accepted(ChecksumForm::MessageOnly, true));
        counters.count(&accepted(ChecksumForm::PseudoHeaderWithGroup, false));
        assert_eq!(counters.accepted, 3);
        assert_eq!(counters.accepted_message_only_checksum, 1);
        assert_eq!(counters.accepted_group_pseudo_header_checksum, 1);
        assert_eq!(counters.accepted_address_list_mismatch, 1);
        assert_eq!(counters.rejected(), 0);
    }
}
