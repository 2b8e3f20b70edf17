//! What the pair asks the kernel (through [`crate::netlink`]): whether our XDP
//! program is on the interface (tracking) and the interface's own address
//! (the adverts' source when `vrrp.primary_address` is not set).

use std::net::Ipv4Addr;

use crate::netlink::{LinkQuery, Netlink, NetlinkError};

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("interface {0} does not exist")]
    NoSuchInterface(String),
    #[error("interface {0} has no IPv4 address other than the virtual addresses: set vrrp.primary_address or add one")]
    NoPrimaryAddress(String),
}

/// One netlink connection, its task on the current tokio runtime.
#[derive(Debug)]
pub struct Probe {
    netlink: Netlink,
}

impl Probe {
    /// Opens the connection; must be called inside a tokio runtime.
    pub fn connect() -> Result<Self, ProbeError> {
        Ok(Probe {
            netlink: Netlink::connect()?,
        })
    }

    /// Whether program `program_id` is attached (in any XDP mode) to the
    /// interface with index `ifindex`.
    pub async fn runs_xdp_program(
        &self,
        ifindex: u32,
        program_id: u32,
    ) -> Result<bool, ProbeError> {
        let query = LinkQuery::Index(ifindex);
        let link = self
            .netlink
            .link(query)
            .await?
            .ok_or_else(|| ProbeError::NoSuchInterface(query.to_string()))?;
        Ok(link.xdp_program_ids.contains(&program_id))
    }

    /// The first IPv4 address of `interface` that is not one of `excluded`
    /// (the VIPs, which a crashed run may have left on it).
    pub async fn primary_address(
        &self,
        interface: &str,
        excluded: &[Ipv4Addr],
    ) -> Result<Ipv4Addr, ProbeError> {
        let link = self
            .netlink
            .link(LinkQuery::Name(interface))
            .await?
            .ok_or_else(|| ProbeError::NoSuchInterface(interface.to_owned()))?;
        self.netlink
            .ipv4_addresses(link.index)
            .await?
            .into_iter()
            .find(|address| !excluded.contains(address))
            .ok_or_else(|| ProbeError::NoPrimaryAddress(interface.to_owned()))
    }
}
