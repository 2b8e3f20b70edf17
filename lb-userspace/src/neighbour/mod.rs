//! Neighbour resolution: through which interface, and to which MAC, frames for
//! a dsr-l2 backend are sent.
//!
//! Asks the kernel (through [`crate::netlink`]) for the route to the backend,
//! which must be on-link, for that interface's MAC, and for the backend's MAC
//! in the neighbour table; when the table has no usable entry yet, a UDP
//! datagram to the backend's discard port makes the kernel ARP for it.
//!
//! While `lb` runs, [`watch`] follows the backends' MACs (neighbour
//! notifications, and a read of the table every [`watch::REFRESH_PERIOD`])
//! and tells the controller when one changes or cannot be resolved; what
//! counts as a change is decided in [`tracker`].

pub mod tracker;
pub mod watch;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::num::NonZeroU32;
use std::time::Duration;

use futures::future::try_join_all;
use tokio::time::{sleep, Instant};

use crate::netlink::{LinkQuery, Netlink, NetlinkError, RouteKind};

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

/// A local Ethernet interface frames are forwarded through.
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
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("interface {interface} not found")]
    NoSuchInterface { interface: String },
    #[error("interface {interface} has no Ethernet address")]
    NoInterfaceMac { interface: String },
    #[error("backend {backend}: the kernel has no route to it")]
    NoRoute { backend: Ipv4Addr },
    #[error("backend {backend} is an address of this host, not a backend")]
    Local { backend: Ipv4Addr },
    #[error(
        "backend {backend} is not on-link (via gateway {gateway}): dsr-l2 needs backends on the LB's L2 segment"
    )]
    NotOnLink { backend: Ipv4Addr, gateway: IpAddr },
    #[error("backend {backend}: its route has no single output interface")]
    NoOutputInterface { backend: Ipv4Addr },
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

impl NeighbourError {
    /// Whether resolving failed because of this node's own state (its link
    /// or interface down, no route, its netlink socket), not the backend's:
    /// the backend then keeps its last MAC and state, as a check failing for
    /// such a reason is "unknown", not a failure against the backend.
    pub fn is_local_fault(&self) -> bool {
        match self {
            NeighbourError::Netlink(_)
            | NeighbourError::NoSuchInterface { .. }
            | NeighbourError::NoInterfaceMac { .. }
            | NeighbourError::NoRoute { .. }
            | NeighbourError::NoOutputInterface { .. } => true,
            NeighbourError::Probe { source, .. } => crate::health::is_local_fault(source),
            NeighbourError::Local { .. }
            | NeighbourError::NotOnLink { .. }
            | NeighbourError::Unresolved { .. } => false,
        }
    }
}

/// `mac` as `02:00:00:00:00:01`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    let octets: Vec<String> = mac.iter().map(|octet| format!("{octet:02x}")).collect();
    octets.join(":")
}

/// Resolves interfaces and backends over one netlink connection.
pub struct Resolver {
    netlink: Netlink,
}

impl Resolver {
    /// Opens the netlink connection; must be called inside a tokio runtime.
    pub fn new() -> Result<Self, NeighbourError> {
        Ok(Resolver {
            netlink: Netlink::connect()?,
        })
    }

    /// The interface called `name`.
    pub async fn interface(&self, name: &str) -> Result<Interface, NeighbourError> {
        self.interface_of(LinkQuery::Name(name)).await
    }

    /// Resolves every address of `backends` at once (see
    /// [`Resolver::resolve`]), logging each; fails with the first that
    /// cannot be.
    pub async fn resolve_all(
        &self,
        backends: &[Ipv4Addr],
    ) -> Result<HashMap<Ipv4Addr, Neighbour>, NeighbourError> {
        let resolved = try_join_all(backends.iter().map(|&address| self.resolve(address))).await?;
        for (address, neighbour) in backends.iter().zip(&resolved) {
            tracing::info!(
                backend = %address,
                mac = %format_mac(&neighbour.mac),
                interface = %neighbour.interface.name,
                "backend resolved"
            );
        }
        Ok(backends.iter().copied().zip(resolved).collect())
    }

    /// Finds the interface and MAC of `backend`, probing for up to
    /// [`RESOLVE_TIMEOUT`] when the neighbour table does not know it yet.
    pub async fn resolve(&self, backend: Ipv4Addr) -> Result<Neighbour, NeighbourError> {
        let ifindex = self.on_link_interface(backend).await?;
        let interface = self.interface_of(LinkQuery::Index(ifindex)).await?;
        if let Some(mac) = self.netlink.neighbour_mac(backend, ifindex).await? {
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
            if let Some(mac) = self.netlink.neighbour_mac(backend, ifindex).await? {
                return Ok(Neighbour { interface, mac });
            }
        }
        Err(NeighbourError::Unresolved {
            backend,
            interface: interface.name,
        })
    }

    /// Every IPv4 entry of the kernel's neighbour table.
    pub async fn entries(&self) -> Result<Vec<crate::netlink::NeighbourEntry>, NeighbourError> {
        Ok(self.netlink.neighbour_entries().await?)
    }

    /// The interface of the kernel's route to `backend`, which must be direct.
    async fn on_link_interface(&self, backend: Ipv4Addr) -> Result<u32, NeighbourError> {
        let route = self
            .netlink
            .route_to(backend)
            .await?
            .ok_or(NeighbourError::NoRoute { backend })?;
        match route.kind {
            RouteKind::Unicast => {}
            RouteKind::Local => return Err(NeighbourError::Local { backend }),
            RouteKind::Other => return Err(NeighbourError::NoRoute { backend }),
        }
        if let Some(gateway) = route.gateway {
            return Err(NeighbourError::NotOnLink { backend, gateway });
        }
        route
            .output_interface
            .ok_or(NeighbourError::NoOutputInterface { backend })
    }

    /// The interface `query` names, which must have an Ethernet address.
    async fn interface_of(&self, query: LinkQuery<'_>) -> Result<Interface, NeighbourError> {
        let link =
            self.netlink
                .link(query)
                .await?
                .ok_or_else(|| NeighbourError::NoSuchInterface {
                    interface: query.to_string(),
                })?;
        let mac = link.mac.ok_or_else(|| NeighbourError::NoInterfaceMac {
            interface: link.name.clone(),
        })?;
        Ok(Interface {
            index: link.index,
            name: link.name,
            mac,
        })
    }
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

    #[test]
    fn macs_are_formatted_as_colon_separated_hex() {
        assert_eq!(
            format_mac(&[0x02, 0, 0xab, 0, 0x10, 0xff]),
            "02:00:ab:00:10:ff"
        );
    }

    #[test]
    fn only_failures_of_this_nodes_own_state_are_local_faults() {
        let backend = Ipv4Addr::new(10, 0, 0, 2);
        let probe = |errno: rustix::io::Errno| NeighbourError::Probe {
            backend,
            source: std::io::Error::from_raw_os_error(errno.raw_os_error()),
        };
        for local in [
            NeighbourError::NoRoute { backend },
            NeighbourError::NoSuchInterface {
                interface: "eth0".into(),
            },
            probe(rustix::io::Errno::NETUNREACH),
            probe(rustix::io::Errno::NETDOWN),
        ] {
            assert!(local.is_local_fault(), "{local}");
        }
        for backends in [
            NeighbourError::Unresolved {
                backend,
                interface: "eth0".into(),
            },
            NeighbourError::NotOnLink {
                backend,
                gateway: Ipv4Addr::new(10, 0, 0, 254).into(),
            },
            probe(rustix::io::Errno::HOSTUNREACH),
        ] {
            assert!(!backends.is_local_fault(), "{backends}");
        }
    }
}
