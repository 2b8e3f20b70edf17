//! Routes: the kernel's route to one IPv4 destination (`ip route get`).

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt as _;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteType};
use rtnetlink::RouteMessageBuilder;

use super::error::{is_errno, NetlinkError, RequestError};
use super::Netlink;

/// The route the kernel would send a packet to one destination by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub kind: RouteKind,
    /// The router it goes through; `None` when the destination is on-link.
    pub gateway: Option<IpAddr>,
    /// The interface it leaves by; `None` for a multipath route.
    pub output_interface: Option<u32>,
}

/// What a route does with the packets it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// Sent out (directly or through a gateway).
    Unicast,
    /// Delivered to this host: the destination is one of its addresses.
    Local,
    /// Anything else (broadcast, blackhole, unreachable, ...).
    Other,
}

impl Netlink {
    /// The route to `destination`, or `None` when the kernel has none (it
    /// answers ENETUNREACH or EHOSTUNREACH).
    pub async fn route_to(&self, destination: Ipv4Addr) -> Result<Option<Route>, NetlinkError> {
        let query = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(destination, 32)
            .build();
        let message = match self.handle.route().get(query).execute().try_next().await {
            Ok(Some(message)) => message,
            Ok(None) => return Ok(None),
            Err(error)
                if is_errno(&error, libc::ENETUNREACH) || is_errno(&error, libc::EHOSTUNREACH) =>
            {
                return Ok(None)
            }
            Err(error) => {
                return Err(NetlinkError::Route {
                    destination,
                    source: RequestError(error),
                })
            }
        };
        Route::from_message(&message)
            .map(Some)
            .ok_or(NetlinkError::UndecodedGateway { destination })
    }
}

impl Route {
    /// `None` when its gateway is not an IP address (an MPLS label or bytes
    /// rtnetlink did not decode).
    fn from_message(message: &RouteMessage) -> Option<Self> {
        let kind = match message.header.kind {
            RouteType::Unicast => RouteKind::Unicast,
            RouteType::Local => RouteKind::Local,
            _ => RouteKind::Other,
        };
        let mut route = Route {
            kind,
            gateway: None,
            output_interface: None,
        };
        for attribute in &message.attributes {
            match attribute {
                RouteAttribute::Gateway(RouteAddress::Inet(address)) => {
                    route.gateway = Some(IpAddr::V4(*address));
                }
                RouteAttribute::Gateway(RouteAddress::Inet6(address)) => {
                    route.gateway = Some(IpAddr::V6(*address));
                }
                RouteAttribute::Gateway(_) => return None,
                RouteAttribute::Oif(index) => route.output_interface = Some(*index),
                _ => {}
            }
        }
        Some(route)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: RouteType, attributes: Vec<RouteAttribute>) -> RouteMessage {
        let mut message = RouteMessage::default();
        message.header.kind = kind;
        message.attributes = attributes;
        message
    }

    #[test]
    fn a_route_reads_its_kind_gateway_and_output_interface() {
        let gateway = Ipv4Addr::new(192, 0, 2, 1);
        let via = message(
            RouteType::Unicast,
            vec![
                RouteAttribute::Gateway(RouteAddress::Inet(gateway)),
                RouteAttribute::Oif(3),
            ],
        );
        assert_eq!(
            Route::from_message(&via),
            Some(Route {
                kind: RouteKind::Unicast,
                gateway: Some(IpAddr::V4(gateway)),
                output_interface: Some(3),
            })
        );
        let local = message(RouteType::Local, vec![RouteAttribute::Oif(1)]);
        assert_eq!(
            Route::from_message(&local),
            Some(Route {
                kind: RouteKind::Local,
                gateway: None,
                output_interface: Some(1),
            })
        );
        let blackhole = message(RouteType::BlackHole, Vec::new());
        assert_eq!(
            Route::from_message(&blackhole).unwrap().kind,
            RouteKind::Other
        );
    }

    #[test]
    fn a_gateway_that_is_not_an_ip_address_is_not_decoded() {
        let other = message(
            RouteType::Unicast,
            vec![RouteAttribute::Gateway(RouteAddress::Other(vec![1, 2]))],
        );
        assert_eq!(Route::from_message(&other), None);
    }
}
