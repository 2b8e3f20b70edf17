//! The VRRP interface over rtnetlink: its index, MAC and carrier, notifications
//! when the carrier changes, and the VIPs added to and removed from it
//! (`ip addr add|del VIP/32 dev IF`, both idempotent).

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use futures::channel::mpsc::UnboundedReceiver;
use futures::StreamExt;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::{AddressMessageBuilder, MulticastGroup};
use tokio::task::JoinHandle;

use crate::netlink::{get_link, LinkQuery};

/// Prefix length of a VIP: a host address that adds no connected route.
const VIP_PREFIX_LEN: u8 = 32;

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("cannot open a netlink socket")]
    Open(#[source] io::Error),
    #[error("interface {0} does not exist")]
    NoSuchInterface(String),
    #[error("interface {0} has no Ethernet address")]
    NoEthernetAddress(String),
    #[error("netlink request for interface {interface} failed")]
    Request {
        interface: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("cannot {verb} {address}/32 on interface index {index}")]
    Address {
        verb: &'static str,
        address: Ipv4Addr,
        index: u32,
        #[source]
        source: rtnetlink::Error,
    },
}

/// What the driver needs to know about its interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub mac: [u8; 6],
    /// Administratively up with a carrier.
    pub is_up: bool,
}

/// One rtnetlink connection, subscribed to link notifications.
#[derive(Debug)]
pub struct Netlink {
    handle: rtnetlink::Handle,
    notifications: UnboundedReceiver<(
        NetlinkMessage<RouteNetlinkMessage>,
        rtnetlink::sys::SocketAddr,
    )>,
    connection: JoinHandle<()>,
}

impl Netlink {
    /// Opens the connection and spawns its task on the current tokio runtime.
    pub fn connect() -> Result<Self, NetlinkError> {
        let (connection, handle, notifications) =
            rtnetlink::new_multicast_connection(&[MulticastGroup::Link])
                .map_err(NetlinkError::Open)?;
        Ok(Netlink {
            handle,
            notifications,
            connection: tokio::spawn(connection),
        })
    }

    /// Looks `name` up.
    pub async fn link(&self, name: &str) -> Result<Link, NetlinkError> {
        let request_failed = |source| NetlinkError::Request {
            interface: name.to_owned(),
            source,
        };
        let message = get_link(&self.handle, LinkQuery::Name(name))
            .await
            .map_err(request_failed)?
            .ok_or_else(|| NetlinkError::NoSuchInterface(name.to_owned()))?;
        let mac = ethernet_address(&message)
            .ok_or_else(|| NetlinkError::NoEthernetAddress(name.to_owned()))?;
        Ok(Link {
            index: message.header.index,
            mac,
            is_up: is_up(&message),
        })
    }

    /// Waits for the next change notification of interface `index`; returns
    /// whether it is up, or `None` if the connection closed.
    pub async fn next_link_change(&mut self, index: u32) -> Option<bool> {
        while let Some((message, _)) = self.notifications.next().await {
            match message.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link))
                    if link.header.index == index =>
                {
                    return Some(is_up(&link));
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link))
                    if link.header.index == index =>
                {
                    return Some(false);
                }
                _ => {}
            }
        }
        None
    }

    /// Adds `address`/32 to interface `index`; already present is fine.
    pub async fn add_address(&self, index: u32, address: Ipv4Addr) -> Result<(), NetlinkError> {
        let result = self
            .handle
            .address()
            .add(index, IpAddr::V4(address), VIP_PREFIX_LEN)
            .execute()
            .await;
        tolerate(result, libc::EEXIST).map_err(|source| NetlinkError::Address {
            verb: "add",
            address,
            index,
            source,
        })
    }

    /// Removes `address`/32 from interface `index`; already absent is fine.
    pub async fn remove_address(&self, index: u32, address: Ipv4Addr) -> Result<(), NetlinkError> {
        let message = AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(address, VIP_PREFIX_LEN)
            .build();
        let result = self.handle.address().del(message).execute().await;
        tolerate(result, libc::EADDRNOTAVAIL).map_err(|source| NetlinkError::Address {
            verb: "remove",
            address,
            index,
            source,
        })
    }
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

/// `result`, with the kernel's `errno` turned into success.
fn tolerate(result: Result<(), rtnetlink::Error>, errno: i32) -> Result<(), rtnetlink::Error> {
    match result {
        Err(rtnetlink::Error::NetlinkError(message)) if message.raw_code() == -errno => Ok(()),
        other => other,
    }
}

fn is_up(link: &LinkMessage) -> bool {
    link.header
        .flags
        .contains(LinkFlags::Up | LinkFlags::Running)
}

fn ethernet_address(link: &LinkMessage) -> Option<[u8; 6]> {
    link.attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::Address(bytes) => <[u8; 6]>::try_from(bytes.as_slice()).ok(),
            _ => None,
        })
}
