//! Addresses: an interface's IPv4 addresses, and adding or removing one.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt as _;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::AddressMessageBuilder;

use super::error::{is_errno, Change, NetlinkError, RequestError};
use super::Netlink;

impl Netlink {
    /// The local IPv4 addresses of interface `index`, in the kernel's order.
    pub async fn ipv4_addresses(&self, index: u32) -> Result<Vec<Ipv4Addr>, NetlinkError> {
        let failed = |error| NetlinkError::Addresses {
            index,
            source: RequestError(error),
        };
        let mut messages = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        let mut addresses = Vec::new();
        while let Some(message) = messages.try_next().await.map_err(failed)? {
            let local = message
                .attributes
                .iter()
                .find_map(|attribute| match attribute {
                    AddressAttribute::Local(IpAddr::V4(address)) => Some(*address),
                    _ => None,
                });
            addresses.extend(local);
        }
        Ok(addresses)
    }

    /// Adds `address`/`prefix_len` to interface `index` (`ip addr add`);
    /// already present is fine.
    pub async fn add_address(
        &self,
        index: u32,
        address: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<(), NetlinkError> {
        let result = self
            .handle
            .address()
            .add(index, IpAddr::V4(address), prefix_len)
            .execute()
            .await;
        match result {
            Err(error) if !is_errno(&error, libc::EEXIST) => Err(NetlinkError::Address {
                change: Change::Add,
                address,
                prefix_len,
                index,
                source: RequestError(error),
            }),
            _ => Ok(()),
        }
    }

    /// Removes `address`/`prefix_len` from interface `index` (`ip addr del`);
    /// already absent is fine.
    pub async fn remove_address(
        &self,
        index: u32,
        address: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<(), NetlinkError> {
        let message = AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(address, prefix_len)
            .build();
        match self.handle.address().del(message).execute().await {
            Err(error) if !is_errno(&error, libc::EADDRNOTAVAIL) => Err(NetlinkError::Address {
                change: Change::Remove,
                address,
                prefix_len,
                index,
                source: RequestError(error),
            }),
            _ => Ok(()),
        }
    }
}
