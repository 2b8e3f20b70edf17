//! What the pair asks the kernel over rtnetlink: which XDP programs an
//! interface runs (tracking) and the interface's own address (the adverts'
//! source when `vrrp.primary_address` is not set).

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt as _;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{LinkAttribute, LinkXdp};
use tokio::task::JoinHandle;

use crate::netlink::{get_link, LinkQuery};

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot open a netlink socket")]
    Open(#[source] std::io::Error),
    #[error("netlink request about interface {interface} failed")]
    Request {
        interface: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("interface {0} does not exist")]
    NoSuchInterface(String),
    #[error("interface {0} has no IPv4 address other than the virtual addresses: set vrrp.primary_address or add one")]
    NoPrimaryAddress(String),
}

/// One rtnetlink connection, its task on the current tokio runtime.
#[derive(Debug)]
pub struct Probe {
    handle: rtnetlink::Handle,
    connection: JoinHandle<()>,
}

impl Probe {
    /// Opens the connection; must be called inside a tokio runtime.
    pub fn connect() -> Result<Self, ProbeError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(ProbeError::Open)?;
        Ok(Probe {
            handle,
            connection: tokio::spawn(connection),
        })
    }

    /// Whether program `program_id` is attached (in any XDP mode) to the
    /// interface with index `ifindex`.
    pub async fn runs_xdp_program(
        &self,
        ifindex: u32,
        program_id: u32,
    ) -> Result<bool, ProbeError> {
        let interface = format!("index {ifindex}");
        let message = get_link(&self.handle, LinkQuery::Index(ifindex))
            .await
            .map_err(|source| ProbeError::Request {
                interface: interface.clone(),
                source,
            })?
            .ok_or(ProbeError::NoSuchInterface(interface))?;
        Ok(message.attributes.iter().any(|attribute| match attribute {
            LinkAttribute::Xdp(xdp) => xdp.iter().any(|item| {
                matches!(item,
                    LinkXdp::ProgId(id) | LinkXdp::DrvProgId(id) | LinkXdp::SkbProgId(id) | LinkXdp::HwProgId(id)
                    if *id == program_id)
            }),
            _ => false,
        }))
    }

    /// The first IPv4 address of `interface` that is not one of `excluded`
    /// (the VIPs, which a crashed run may have left on it).
    pub async fn primary_address(
        &self,
        interface: &str,
        excluded: &[Ipv4Addr],
    ) -> Result<Ipv4Addr, ProbeError> {
        let request_failed = |source| ProbeError::Request {
            interface: interface.to_owned(),
            source,
        };
        let link = get_link(&self.handle, LinkQuery::Name(interface))
            .await
            .map_err(request_failed)?
            .ok_or_else(|| ProbeError::NoSuchInterface(interface.to_owned()))?;
        let mut addresses = self
            .handle
            .address()
            .get()
            .set_link_index_filter(link.header.index)
            .execute();
        while let Some(message) = addresses.try_next().await.map_err(request_failed)? {
            let local = message
                .attributes
                .iter()
                .find_map(|attribute| match attribute {
                    AddressAttribute::Local(IpAddr::V4(address)) => Some(*address),
                    _ => None,
                });
            if let Some(address) = local.filter(|address| !excluded.contains(address)) {
                return Ok(address);
            }
        }
        Err(ProbeError::NoPrimaryAddress(interface.to_owned()))
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.connection.abort();
    }
}
