//! Table routes: the /32 routes this program keeps in a routing table of its
//! own for a routing daemon to read and announce (`blackhole VIP table N
//! proto 201`).
//!
//! A blackhole needs no next hop and names nothing but the prefix. No rule
//! points at the table (`ip rule` is left alone), so the kernel never
//! forwards by these routes: adding or removing one does not change how this
//! node routes anything. Each carries [`TABLE_ROUTE_PROTOCOL`], so that only
//! this program's routes are listed and removed, whatever else an operator
//! keeps in the table.

use std::net::Ipv4Addr;

use futures::TryStreamExt as _;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::RouteMessageBuilder;

use super::error::{is_errno, Change, NetlinkError, RequestError};
use super::Netlink;

/// The routing protocol number this program's table routes carry (`ip route
/// show table N proto 201`; name it in `/etc/iproute2/rt_protos.d/` to see
/// `proto lb`). Unassigned in iproute2's list, and not a number a routing
/// daemon takes for its own routes (which it skips when it learns a table):
/// BIRD 2 (`learn`) and FRR (`ip import-table`) both pick these up.
pub const TABLE_ROUTE_PROTOCOL: u8 = 201;

/// A /32 blackhole route in table `table`, marked as this program's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableRoute {
    pub table: u32,
    pub destination: Ipv4Addr,
}

impl Netlink {
    /// Adds `route` (`ip route add blackhole DESTINATION/32 table TABLE proto
    /// 201`); already present is fine.
    pub async fn add_route(&self, route: TableRoute) -> Result<(), NetlinkError> {
        match self.handle.route().add(route.message()).execute().await {
            Err(error) if !is_errno(&error, libc::EEXIST) => Err(route.failed(Change::Add, error)),
            _ => Ok(()),
        }
    }

    /// Removes `route`; already absent is fine. A route to the same
    /// destination that is not this program's (another protocol) stays.
    pub async fn remove_route(&self, route: TableRoute) -> Result<(), NetlinkError> {
        match self.handle.route().del(route.message()).execute().await {
            Err(error) if !is_errno(&error, libc::ESRCH) => {
                Err(route.failed(Change::Remove, error))
            }
            _ => Ok(()),
        }
    }

    /// The destinations of this program's /32 routes in `table`, in the
    /// kernel's order.
    pub async fn routes_in_table(&self, table: u32) -> Result<Vec<Ipv4Addr>, NetlinkError> {
        let failed = |error| NetlinkError::TableRoutes {
            table,
            source: RequestError(error),
        };
        // Without NETLINK_GET_STRICT_CHK the kernel dumps every table: the
        // filter is ours.
        let query = RouteMessageBuilder::<Ipv4Addr>::new()
            .table_id(table)
            .build();
        let mut messages = self.handle.route().get(query).execute();
        let mut destinations = Vec::new();
        while let Some(message) = messages.try_next().await.map_err(failed)? {
            destinations.extend(our_destination(&message, table));
        }
        Ok(destinations)
    }
}

impl TableRoute {
    /// The request that adds or removes it.
    fn message(self) -> RouteMessage {
        RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(self.destination, 32)
            .table_id(self.table)
            .protocol(RouteProtocol::from(TABLE_ROUTE_PROTOCOL))
            .scope(RouteScope::Universe)
            .kind(RouteType::BlackHole)
            .build()
    }

    fn failed(self, change: Change, error: rtnetlink::Error) -> NetlinkError {
        NetlinkError::TableRoute {
            change,
            table: self.table,
            destination: self.destination,
            source: RequestError(error),
        }
    }
}

/// The destination of `message` if it is one of this program's /32 routes in
/// `table`.
fn our_destination(message: &RouteMessage, table: u32) -> Option<Ipv4Addr> {
    let header = &message.header;
    if u8::from(header.protocol) != TABLE_ROUTE_PROTOCOL || header.destination_prefix_length != 32 {
        return None;
    }
    // A table above 255 is only in the attribute; the header then says 252.
    let message_table = message
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            RouteAttribute::Table(table) => Some(*table),
            _ => None,
        })
        .unwrap_or(u32::from(header.table));
    if message_table != table {
        return None;
    }
    message
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            RouteAttribute::Destination(RouteAddress::Inet(address)) => Some(*address),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

    fn destination_of(message: &RouteMessage) -> Option<IpAddr> {
        message
            .attributes
            .iter()
            .find_map(|attribute| match attribute {
                RouteAttribute::Destination(RouteAddress::Inet(address)) => {
                    Some(IpAddr::V4(*address))
                }
                _ => None,
            })
    }

    fn table_of(message: &RouteMessage) -> u32 {
        message
            .attributes
            .iter()
            .find_map(|attribute| match attribute {
                RouteAttribute::Table(table) => Some(*table),
                _ => None,
            })
            .unwrap_or(u32::from(message.header.table))
    }

    #[test]
    fn a_table_route_is_a_blackhole_host_route_marked_as_ours() {
        let message = TableRoute {
            table: 200,
            destination: VIP,
        }
        .message();
        let header = &message.header;
        assert_eq!(header.kind, RouteType::BlackHole);
        assert_eq!(u8::from(header.protocol), TABLE_ROUTE_PROTOCOL);
        assert_eq!(header.scope, RouteScope::Universe);
        assert_eq!(header.destination_prefix_length, 32);
        assert_eq!(header.table, 200);
        assert_eq!(destination_of(&message), Some(IpAddr::V4(VIP)));
        // No next hop of any kind.
        assert!(!message.attributes.iter().any(|attribute| matches!(
            attribute,
            RouteAttribute::Gateway(_) | RouteAttribute::Oif(_) | RouteAttribute::MultiPath(_)
        )));
    }

    #[test]
    fn a_table_above_255_goes_in_the_attribute() {
        let message = TableRoute {
            table: 1000,
            destination: VIP,
        }
        .message();
        assert_eq!(table_of(&message), 1000);
    }

    #[test]
    fn only_our_host_routes_in_the_table_are_listed() {
        let ours = |table| {
            TableRoute {
                table,
                destination: VIP,
            }
            .message()
        };
        assert_eq!(our_destination(&ours(200), 200), Some(VIP));
        assert_eq!(our_destination(&ours(1000), 1000), Some(VIP));
        // The kernel's dump covers every table.
        assert_eq!(our_destination(&ours(201), 200), None);
        let mut other_protocol = ours(200);
        other_protocol.header.protocol = RouteProtocol::Static;
        assert_eq!(our_destination(&other_protocol, 200), None);
        let mut prefix = ours(200);
        prefix.header.destination_prefix_length = 24;
        assert_eq!(our_destination(&prefix, 200), None);
    }
}
