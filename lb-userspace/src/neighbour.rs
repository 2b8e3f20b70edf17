//! Neighbour resolution: through which interface, and to which MAC, frames for
//! a dsr-l2 backend are sent.
//!
//! Asks the kernel (rtnetlink) for the route to the backend, which must be
//! on-link, for that interface's MAC, and for the backend's MAC in the
//! neighbour table; when the table has no usable entry yet, a UDP datagram to
//! the backend's discard port makes the kernel ARP for it.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::num::NonZeroU32;
use std::time::Duration;

use futures::TryStreamExt;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteType};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::RouteMessageBuilder;

use crate::netlink::{get_link, LinkQuery};
use tokio::time::{sleep, Instant};

/// How long to wait for the kernel to resolve a backend's MAC.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);
/// Discard port: the probe datagram is meant to be ignored.
const PROBE_PORT: u16 = 9;
/// Interval between two reads of the neighbour table while waiting.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Interval between two probe datagrams while waiting.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// How to reach one backend on the local L2 segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    /// Interface the backend is reached through.
    pub interface: Interface,
    /// The backend's MAC: destination of forwarded frames.
    pub mac: [u8; 6],
}

/// A local network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub index: u32,
    pub name: String,
    /// Its Ethernet address: source of forwarded frames.
    pub mac: [u8; 6],
}

/// Why an interface or a backend could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum NeighbourError {
    #[error("cannot open a netlink socket")]
    Connection(#[source] std::io::Error),
    #[error("interface {interface} not found")]
    NoSuchInterface { interface: String },
    #[error("reading interface {interface}")]
    Link {
        interface: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("interface {interface} has no Ethernet address")]
    NoInterfaceMac { interface: String },
    #[error("backend {backend}: route lookup failed")]
    Route {
        backend: Ipv4Addr,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("backend {backend}: the kernel has no route to it")]
    NoRoute { backend: Ipv4Addr },
    #[error("backend {backend} is an address of this host, not a backend")]
    Local { backend: Ipv4Addr },
    #[error(
        "backend {backend} is not on-link (via gateway {gateway}): dsr-l2 needs backends on the LB's L2 segment"
    )]
    NotOnLink { backend: Ipv4Addr, gateway: String },
    #[error("backend {backend}: its route has no single output interface")]
    NoOutputInterface { backend: Ipv4Addr },
    #[error("backend {backend}: reading the neighbour table failed")]
    Neighbours {
        backend: Ipv4Addr,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("backend {backend}: cannot send the ARP-triggering probe")]
    Probe {
        backend: Ipv4Addr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "backend {backend}: no ARP answer within {}s on interface {interface}; is it up and on this L2 segment?",
        RESOLVE_TIMEOUT.as_secs()
    )]
    Unresolved {
        backend: Ipv4Addr,
        interface: String,
    },
}

/// `mac` as `02:00:00:00:00:01`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    let octets: Vec<String> = mac.iter().map(|octet| format!("{octet:02x}")).collect();
    octets.join(":")
}

/// Resolves interfaces and backends over one rtnetlink connection.
pub struct Resolver {
    handle: rtnetlink::Handle,
    connection: tokio::task::JoinHandle<()>,
}

impl Drop for Resolver {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl Resolver {
    /// Opens the netlink connection; must be called inside a tokio runtime.
    pub fn new() -> Result<Self, NeighbourError> {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(NeighbourError::Connection)?;
        Ok(Resolver {
            handle,
            connection: tokio::spawn(connection),
        })
    }

    /// The interface called `name`.
    pub async fn interface(&self, name: &str) -> Result<Interface, NeighbourError> {
        self.link(LinkQuery::Name(name)).await
    }

    /// Finds the interface and MAC of `backend`, probing for up to
    /// [`RESOLVE_TIMEOUT`] when the neighbour table does not know it yet.
    pub async fn resolve(&self, backend: Ipv4Addr) -> Result<Neighbour, NeighbourError> {
        let ifindex = self.on_link_interface(backend).await?;
        let interface = self.link(LinkQuery::Index(ifindex)).await?;
        if let Some(mac) = self.neighbour_mac(backend, ifindex).await? {
            return Ok(Neighbour { interface, mac });
        }
        tracing::debug!(%backend, interface = %interface.name, "no usable neighbour entry; probing");
        let probe = ProbeSocket::new(backend, ifindex)?;
        let deadline = Instant::now() + RESOLVE_TIMEOUT;
        let mut next_probe = Instant::now();
        while Instant::now() < deadline {
            if Instant::now() >= next_probe {
                probe.send()?;
                next_probe += PROBE_INTERVAL;
            }
            sleep(POLL_INTERVAL).await;
            if let Some(mac) = self.neighbour_mac(backend, ifindex).await? {
                return Ok(Neighbour { interface, mac });
            }
        }
        Err(NeighbourError::Unresolved {
            backend,
            interface: interface.name,
        })
    }

    /// The interface of the kernel's route to `backend`, which must be direct.
    async fn on_link_interface(&self, backend: Ipv4Addr) -> Result<u32, NeighbourError> {
        let query = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(backend, 32)
            .build();
        let route = match self.handle.route().get(query).execute().try_next().await {
            Ok(Some(route)) => route,
            Ok(None) => return Err(NeighbourError::NoRoute { backend }),
            Err(rtnetlink::Error::NetlinkError(error))
                if [libc::ENETUNREACH, libc::EHOSTUNREACH].contains(&-error.raw_code()) =>
            {
                return Err(NeighbourError::NoRoute { backend })
            }
            Err(source) => return Err(NeighbourError::Route { backend, source }),
        };
        match route.header.kind {
            RouteType::Unicast => {}
            RouteType::Local => return Err(NeighbourError::Local { backend }),
            _ => return Err(NeighbourError::NoRoute { backend }),
        }
        let mut output = None;
        for attribute in &route.attributes {
            match attribute {
                RouteAttribute::Gateway(gateway) => {
                    let gateway = match gateway {
                        RouteAddress::Inet(address) => address.to_string(),
                        other => format!("{other:?}"),
                    };
                    return Err(NeighbourError::NotOnLink { backend, gateway });
                }
                RouteAttribute::Oif(ifindex) => output = Some(*ifindex),
                _ => {}
            }
        }
        output.ok_or(NeighbourError::NoOutputInterface { backend })
    }

    async fn link(&self, query: LinkQuery<'_>) -> Result<Interface, NeighbourError> {
        let described = match query {
            LinkQuery::Name(name) => name.to_owned(),
            LinkQuery::Index(index) => format!("#{index}"),
        };
        let link = match get_link(&self.handle, query).await {
            Ok(Some(link)) => link,
            Ok(None) => {
                return Err(NeighbourError::NoSuchInterface {
                    interface: described,
                })
            }
            Err(source) => {
                return Err(NeighbourError::Link {
                    interface: described,
                    source,
                })
            }
        };
        let mut name = described;
        let mut mac = None;
        for attribute in link.attributes {
            match attribute {
                LinkAttribute::IfName(ifname) => name = ifname,
                LinkAttribute::Address(bytes) => mac = <[u8; 6]>::try_from(bytes).ok(),
                _ => {}
            }
        }
        let mac = mac.ok_or_else(|| NeighbourError::NoInterfaceMac {
            interface: name.clone(),
        })?;
        Ok(Interface {
            index: link.header.index,
            name,
            mac,
        })
    }

    /// The backend's MAC, if the neighbour table holds a usable entry for it.
    async fn neighbour_mac(
        &self,
        backend: Ipv4Addr,
        ifindex: u32,
    ) -> Result<Option<[u8; 6]>, NeighbourError> {
        let mut entries = self
            .handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Inet)
            .execute();
        while let Some(entry) = entries
            .try_next()
            .await
            .map_err(|source| NeighbourError::Neighbours { backend, source })?
        {
            if let Some(mac) = usable_mac(&entry, backend, ifindex) {
                return Ok(Some(mac));
            }
        }
        Ok(None)
    }
}

/// The MAC of `entry` if it is `backend` on `ifindex` and in a state whose
/// link-layer address can be used (confirmed, or known and being rechecked).
fn usable_mac(entry: &NeighbourMessage, backend: Ipv4Addr, ifindex: u32) -> Option<[u8; 6]> {
    let usable_state = matches!(
        entry.header.state,
        NeighbourState::Reachable
            | NeighbourState::Stale
            | NeighbourState::Delay
            | NeighbourState::Probe
            | NeighbourState::Permanent
    );
    if entry.header.ifindex != ifindex || !usable_state {
        return None;
    }
    let is_backend = entry.attributes.iter().any(|attribute| {
        matches!(attribute, NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) if *a == backend)
    });
    if !is_backend {
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

/// A UDP socket bound to the backend's interface whose datagrams to the
/// discard port make the kernel resolve the backend's MAC.
struct ProbeSocket {
    socket: socket2::Socket,
    backend: Ipv4Addr,
}

impl ProbeSocket {
    fn new(backend: Ipv4Addr, ifindex: u32) -> Result<Self, NeighbourError> {
        let probe_error = |source| NeighbourError::Probe { backend, source };
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)
            .map_err(probe_error)?;
        socket
            .bind_device_by_index_v4(NonZeroU32::new(ifindex))
            .map_err(probe_error)?;
        socket.set_nonblocking(true).map_err(probe_error)?;
        Ok(ProbeSocket { socket, backend })
    }

    /// Sends one empty datagram. A failed resolution makes later sends fail
    /// with "host unreachable" until the kernel retries: that is what the
    /// caller waits out, so it is not an error here.
    fn send(&self) -> Result<(), NeighbourError> {
        let target = SocketAddrV4::new(self.backend, PROBE_PORT);
        match self.socket.send_to(&[], &target.into()) {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EHOSTUNREACH) => {
                tracing::debug!(backend = %self.backend, "probe: host unreachable, retrying");
                Ok(())
            }
            Err(source) => Err(NeighbourError::Probe {
                backend: self.backend,
                source,
            }),
        }
    }
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
    fn macs_are_formatted_as_colon_separated_hex() {
        assert_eq!(
            format_mac(&[0x02, 0, 0xab, 0, 0x10, 0xff]),
            "02:00:ab:00:10:ff"
        );
    }

    #[test]
    fn known_entries_of_the_backend_on_its_interface_are_used() {
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
