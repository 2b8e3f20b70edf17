//! Neighbours: the MAC the kernel's neighbour (ARP) table holds for an IPv4
//! address on one interface.

use std::net::Ipv4Addr;

use futures::TryStreamExt as _;
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::AddressFamily;

use super::error::{NetlinkError, RequestError};
use super::Netlink;

impl Netlink {
    /// The MAC of `address` on interface `index`, if the neighbour table
    /// holds a usable entry for it (confirmed, or known and being rechecked).
    pub async fn neighbour_mac(
        &self,
        address: Ipv4Addr,
        index: u32,
    ) -> Result<Option<[u8; 6]>, NetlinkError> {
        let mut entries = self
            .handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Inet)
            .execute();
        while let Some(entry) =
            entries
                .try_next()
                .await
                .map_err(|error| NetlinkError::Neighbours {
                    address,
                    source: RequestError(error),
                })?
        {
            if let Some(mac) = usable_mac(&entry, address, index) {
                return Ok(Some(mac));
            }
        }
        Ok(None)
    }
}

impl Netlink {
    /// Every IPv4 entry of the neighbour table, in one dump.
    pub async fn neighbour_entries(&self) -> Result<Vec<NeighbourEntry>, NetlinkError> {
        let mut entries = self
            .handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Inet)
            .execute();
        let mut found = Vec::new();
        while let Some(entry) =
            entries
                .try_next()
                .await
                .map_err(|error| NetlinkError::NeighbourTable {
                    source: RequestError(error),
                })?
        {
            found.extend(NeighbourEntry::from_message(&entry, false));
        }
        Ok(found)
    }
}

/// What the neighbour table (or a notification) says about one IPv4
/// neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighbourEntry {
    pub address: Ipv4Addr,
    /// The interface of the entry.
    pub index: u32,
    /// Its MAC, if the entry is in a state whose MAC can be used (confirmed,
    /// or known and being rechecked: `STALE`, `DELAY`, `PROBE`); `None`
    /// while unresolved (`INCOMPLETE`, `FAILED`) or once deleted.
    pub mac: Option<[u8; 6]>,
}

impl NeighbourEntry {
    /// The entry `message` announces (`deleted`: by `RTM_DELNEIGH`), if it
    /// is an IPv4 neighbour.
    pub(super) fn from_message(message: &NeighbourMessage, deleted: bool) -> Option<Self> {
        let address = message
            .attributes
            .iter()
            .find_map(|attribute| match attribute {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(address)) => Some(*address),
                _ => None,
            })?;
        let index = message.header.ifindex;
        let mac = if deleted {
            None
        } else {
            usable_mac(message, address, index)
        };
        Some(NeighbourEntry {
            address,
            index,
            mac,
        })
    }
}

/// The MAC of `entry` if it is `address` on `index` and in a state whose
/// link-layer address can be used.
fn usable_mac(entry: &NeighbourMessage, address: Ipv4Addr, index: u32) -> Option<[u8; 6]> {
    let usable_state = matches!(
        entry.header.state,
        NeighbourState::Reachable
            | NeighbourState::Stale
            | NeighbourState::Delay
            | NeighbourState::Probe
            | NeighbourState::Permanent
    );
    if entry.header.ifindex != index || !usable_state {
        return None;
    }
    let is_address = entry.attributes.iter().any(|attribute| {
        matches!(attribute, NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) if *a == address)
    });
    if !is_address {
        return None;
    }
    entry
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            NeighbourAttribute::LinkLayerAddress(bytes) => {
                <[u8; 6]>::try_from(bytes.as_slice()).ok()
            }
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_route::neighbour::NeighbourHeader;

    const BACKEND: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

    fn entry(
        ifindex: u32,
        state: NeighbourState,
        address: Ipv4Addr,
        mac: &[u8],
    ) -> NeighbourMessage {
        let mut message = NeighbourMessage::default();
        message.header = NeighbourHeader {
            family: AddressFamily::Inet,
            ifindex,
            state,
            ..NeighbourHeader::default()
        };
        message.attributes = vec![
            NeighbourAttribute::Destination(NeighbourAddress::Inet(address)),
            NeighbourAttribute::LinkLayerAddress(mac.to_vec()),
        ];
        message
    }

    #[test]
    fn known_entries_of_the_address_on_its_interface_are_used() {
        for state in [
            NeighbourState::Reachable,
            NeighbourState::Stale,
            NeighbourState::Delay,
            NeighbourState::Probe,
            NeighbourState::Permanent,
        ] {
            assert_eq!(
                usable_mac(&entry(3, state, BACKEND, &MAC), BACKEND, 3),
                Some(MAC),
                "{state:?}"
            );
        }
    }

    #[test]
    fn notifications_give_the_entry_and_its_usable_mac() {
        let stale = entry(3, NeighbourState::Stale, BACKEND, &MAC);
        assert_eq!(
            NeighbourEntry::from_message(&stale, false),
            Some(NeighbourEntry {
                address: BACKEND,
                index: 3,
                mac: Some(MAC)
            })
        );
        assert_eq!(
            NeighbourEntry::from_message(&stale, true).map(|e| e.mac),
            Some(None),
            "deleted"
        );
        let failed = entry(3, NeighbourState::Failed, BACKEND, &MAC);
        assert_eq!(
            NeighbourEntry::from_message(&failed, false).map(|e| e.mac),
            Some(None)
        );
        let mut no_address = stale.clone();
        no_address.attributes.remove(0);
        assert_eq!(NeighbourEntry::from_message(&no_address, false), None);
    }

    #[test]
    fn unresolved_foreign_or_malformed_entries_are_not_used() {
        for state in [
            NeighbourState::Incomplete,
            NeighbourState::Failed,
            NeighbourState::None,
        ] {
            assert_eq!(
                usable_mac(&entry(3, state, BACKEND, &MAC), BACKEND, 3),
                None,
                "{state:?}"
            );
        }
        let reachable = NeighbourState::Reachable;
        assert_eq!(
            usable_mac(&entry(4, reachable, BACKEND, &MAC), BACKEND, 3),
            None
        );
        let other = Ipv4Addr::new(10, 0, 0, 2);
        assert_eq!(
            usable_mac(&entry(3, reachable, other, &MAC), BACKEND, 3),
            None
        );
        assert_eq!(
            usable_mac(&entry(3, reachable, BACKEND, &MAC[..4]), BACKEND, 3),
            None
        );
    }
}
