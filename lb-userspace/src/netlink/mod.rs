//! The kernel's routing netlink, and the only user of rtnetlink: links,
//! addresses, routes, neighbours and link notifications, behind a narrow
//! typed interface with one error type ([`NetlinkError`]).
//!
//! - `link`: an interface's index, name, MAC, carrier and XDP programs
//!   ([`Netlink::link`]);
//! - `address`: an interface's IPv4 addresses, adding and removing one
//!   ([`Netlink::ipv4_addresses`], [`Netlink::add_address`],
//!   [`Netlink::remove_address`]);
//! - `route`: the route to a destination ([`Netlink::route_to`]);
//! - `table_route`: the /32 routes this program keeps in a table of its own
//!   for a routing daemon to announce ([`Netlink::add_route`],
//!   [`Netlink::remove_route`], [`Netlink::routes_in_table`]);
//! - `neighbour`: a neighbour table entry's MAC ([`Netlink::neighbour_mac`],
//!   [`NeighbourEntry`]);
//! - `monitor`: link and neighbour change notifications ([`LinkEvents`],
//!   [`NeighbourEvents`]);
//! - `error`: [`NetlinkError`].
//!
//! What the answers mean for the program (a backend must be on-link, the
//! VIPs are /32, ...) is for the callers: `crate::neighbour`, `ha::probe`,
//! `ha::bgp` and `vrrp::driver`.

mod address;
mod error;
mod link;
mod monitor;
mod neighbour;
mod route;
mod table_route;

pub use error::{Change, NetlinkError, RequestError};
pub use link::{Link, LinkQuery};
pub use monitor::{LinkEvent, LinkEvents, NeighbourEvents};
pub use neighbour::NeighbourEntry;
pub use route::{Route, RouteKind};
pub use table_route::{TableRoute, TABLE_ROUTE_PROTOCOL};

use tokio::task::JoinHandle;

/// One netlink connection for requests; its task runs on the current tokio
/// runtime and stops when this is dropped.
#[derive(Debug)]
pub struct Netlink {
    handle: rtnetlink::Handle,
    connection: JoinHandle<()>,
}

impl Netlink {
    /// Opens the connection; must be called inside a tokio runtime.
    pub fn connect() -> Result<Self, NetlinkError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Open)?;
        Ok(Netlink {
            handle,
            connection: tokio::spawn(connection),
        })
    }
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.connection.abort();
    }
}
