//! Link and neighbour notifications: the kernel's messages when an
//! interface changes or goes away (`ip monitor link`), and when a neighbour
//! (ARP) entry changes or goes away (`ip monitor neigh`).

use futures::channel::mpsc::UnboundedReceiver;
use futures::StreamExt as _;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::MulticastGroup;
use tokio::task::JoinHandle;

use super::error::NetlinkError;
use super::link::Link;
use super::neighbour::NeighbourEntry;

/// One change the kernel announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// The interface as it is after the change (flags, carrier, address, ...).
    Changed(Link),
    /// The interface `index` was deleted.
    Removed { index: u32 },
}

/// A netlink connection subscribed to the link notifications of every
/// interface; its task runs on the current tokio runtime.
#[derive(Debug)]
pub struct LinkEvents {
    messages: UnboundedReceiver<(
        NetlinkMessage<RouteNetlinkMessage>,
        rtnetlink::sys::SocketAddr,
    )>,
    connection: JoinHandle<()>,
}

impl LinkEvents {
    /// Subscribes; a change that happens after this returns is reported.
    /// Must be called inside a tokio runtime.
    pub fn subscribe() -> Result<Self, NetlinkError> {
        let (connection, _, messages) =
            rtnetlink::new_multicast_connection(&[MulticastGroup::Link])
                .map_err(NetlinkError::Open)?;
        Ok(LinkEvents {
            messages,
            connection: tokio::spawn(connection),
        })
    }

    /// The next change, or `None` once the connection closed. Cancel-safe.
    pub async fn next(&mut self) -> Option<LinkEvent> {
        while let Some((message, _)) = self.messages.next().await {
            match message.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
                    return Some(LinkEvent::Changed(Link::from_message(&link)));
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) => {
                    return Some(LinkEvent::Removed {
                        index: link.header.index,
                    });
                }
                _ => {}
            }
        }
        None
    }
}

impl Drop for LinkEvents {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

/// A netlink connection subscribed to the neighbour notifications
/// (`RTM_NEWNEIGH`, `RTM_DELNEIGH`) of every interface; its task runs on
/// the current tokio runtime.
#[derive(Debug)]
pub struct NeighbourEvents {
    messages: UnboundedReceiver<(
        NetlinkMessage<RouteNetlinkMessage>,
        rtnetlink::sys::SocketAddr,
    )>,
    connection: JoinHandle<()>,
}

impl NeighbourEvents {
    /// Subscribes; a change that happens after this returns is reported.
    /// Must be called inside a tokio runtime.
    pub fn subscribe() -> Result<Self, NetlinkError> {
        let (connection, _, messages) =
            rtnetlink::new_multicast_connection(&[MulticastGroup::Neigh])
                .map_err(NetlinkError::Open)?;
        Ok(NeighbourEvents {
            messages,
            connection: tokio::spawn(connection),
        })
    }

    /// The next IPv4 neighbour entry changed or deleted, or `None` once the
    /// connection closed. Cancel-safe.
    pub async fn next(&mut self) -> Option<NeighbourEntry> {
        while let Some((message, _)) = self.messages.next().await {
            let entry = match message.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(entry)) => {
                    NeighbourEntry::from_message(&entry, false)
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelNeighbour(entry)) => {
                    NeighbourEntry::from_message(&entry, true)
                }
                _ => None,
            };
            if entry.is_some() {
                return entry;
            }
        }
        None
    }
}

impl Drop for NeighbourEvents {
    fn drop(&mut self) {
        self.connection.abort();
    }
}
