//! The one error type of the netlink layer: which request failed, and why.

use std::io;
use std::net::Ipv4Addr;

/// A request to the kernel over rtnetlink that failed.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("cannot open a netlink socket")]
    Open(#[source] io::Error),
    #[error("reading interface {interface}")]
    Link {
        interface: String,
        #[source]
        source: RequestError,
    },
    #[error("reading the addresses of interface index {index}")]
    Addresses {
        index: u32,
        #[source]
        source: RequestError,
    },
    #[error("cannot {change} {address}/{prefix_len} on interface index {index}")]
    Address {
        change: Change,
        address: Ipv4Addr,
        prefix_len: u8,
        index: u32,
        #[source]
        source: RequestError,
    },
    #[error("route lookup for {destination} failed")]
    Route {
        destination: Ipv4Addr,
        #[source]
        source: RequestError,
    },
    #[error("the route to {destination} has a gateway that is not an IP address")]
    UndecodedGateway { destination: Ipv4Addr },
    #[error("reading the neighbour table for {address} failed")]
    Neighbours {
        address: Ipv4Addr,
        #[source]
        source: RequestError,
    },
    #[error("reading the neighbour table failed")]
    NeighbourTable {
        #[source]
        source: RequestError,
    },
    #[error("cannot {change} the route {destination}/32 in table {table}")]
    TableRoute {
        change: Change,
        table: u32,
        destination: Ipv4Addr,
        #[source]
        source: RequestError,
    },
    #[error("reading routing table {table}")]
    TableRoutes {
        table: u32,
        #[source]
        source: RequestError,
    },
}

/// Which change to the kernel's addresses or routes failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Add,
    Remove,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Change::Add => "add",
            Change::Remove => "remove",
        })
    }
}

/// What rtnetlink reported for a failed request: the kernel's error code or
/// an answer it could not decode. Opaque, so no rtnetlink type leaves the layer.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct RequestError(pub(super) rtnetlink::Error);

/// Whether `error` is the kernel answering `-errno`.
pub(super) fn is_errno(error: &rtnetlink::Error, errno: i32) -> bool {
    matches!(error, rtnetlink::Error::NetlinkError(message) if message.raw_code() == -errno)
}
