//! Links: an interface's index, name, Ethernet address, carrier and the XDP
//! programs attached to it.

use std::fmt;

use futures::TryStreamExt as _;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage, LinkXdp};

use super::error::{is_errno, NetlinkError, RequestError};
use super::Netlink;

/// Which interface to look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkQuery<'a> {
    Name(&'a str),
    Index(u32),
}

impl fmt::Display for LinkQuery<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkQuery::Name(name) => f.write_str(name),
            LinkQuery::Index(index) => write!(f, "index {index}"),
        }
    }
}

/// What the kernel says about one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// Its Ethernet address; `None` when its link-layer address is not 6 bytes
    /// long (or it has none, as a tunnel).
    pub mac: Option<[u8; 6]>,
    /// Administratively up with a carrier.
    pub is_up: bool,
    /// The XDP programs attached to it, in any mode (generic, driver,
    /// offloaded).
    pub xdp_program_ids: Vec<u32>,
}

impl Link {
    pub(super) fn from_message(message: &LinkMessage) -> Self {
        let mut link = Link {
            index: message.header.index,
            name: String::new(),
            mac: None,
            is_up: message
                .header
                .flags
                .contains(LinkFlags::Up | LinkFlags::Running),
            xdp_program_ids: Vec::new(),
        };
        for attribute in &message.attributes {
            match attribute {
                LinkAttribute::IfName(name) => link.name.clone_from(name),
                LinkAttribute::Address(bytes) => link.mac = <[u8; 6]>::try_from(&bytes[..]).ok(),
                LinkAttribute::Xdp(xdp) => {
                    link.xdp_program_ids
                        .extend(xdp.iter().filter_map(|item| match item {
                            LinkXdp::ProgId(id)
                            | LinkXdp::DrvProgId(id)
                            | LinkXdp::SkbProgId(id)
                            | LinkXdp::HwProgId(id) => Some(*id),
                            _ => None,
                        }));
                }
                _ => {}
            }
        }
        link
    }
}

impl Netlink {
    /// The link `query` names, or `None` when the kernel has no such link (it
    /// answers ENODEV to a lookup by name, and nothing to one by index).
    pub async fn link(&self, query: LinkQuery<'_>) -> Result<Option<Link>, NetlinkError> {
        let request = match query {
            LinkQuery::Name(name) => self.handle.link().get().match_name(name),
            LinkQuery::Index(index) => self.handle.link().get().match_index(index),
        };
        match request.execute().try_next().await {
            Ok(message) => Ok(message.as_ref().map(Link::from_message)),
            Err(error) if is_errno(&error, libc::ENODEV) => Ok(None),
            Err(error) => Err(NetlinkError::Link {
                interface: query.to_string(),
                source: RequestError(error),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(flags: LinkFlags, attributes: Vec<LinkAttribute>) -> LinkMessage {
        let mut message = LinkMessage::default();
        message.header.index = 7;
        message.header.flags = flags;
        message.attributes = attributes;
        message
    }

    #[test]
    fn a_link_reads_its_name_address_and_programs_in_every_xdp_mode() {
        let link = Link::from_message(&message(
            LinkFlags::Up | LinkFlags::Running,
            vec![
                LinkAttribute::IfName("eth0".to_owned()),
                LinkAttribute::Address(vec![0x02, 0, 0, 0, 0, 0x01]),
                LinkAttribute::Xdp(vec![
                    LinkXdp::Attached(rtnetlink::packet_route::link::XdpAttached::Multiple),
                    LinkXdp::SkbProgId(11),
                    LinkXdp::DrvProgId(12),
                    LinkXdp::HwProgId(13),
                    LinkXdp::ProgId(14),
                ]),
            ],
        ));
        assert_eq!(
            link,
            Link {
                index: 7,
                name: "eth0".to_owned(),
                mac: Some([0x02, 0, 0, 0, 0, 0x01]),
                is_up: true,
                xdp_program_ids: vec![11, 12, 13, 14],
            }
        );
    }

    #[test]
    fn a_link_is_up_only_when_up_and_running() {
        for flags in [LinkFlags::Up, LinkFlags::Running, LinkFlags::empty()] {
            assert!(
                !Link::from_message(&message(flags, Vec::new())).is_up,
                "{flags:?}"
            );
        }
    }

    #[test]
    fn a_link_layer_address_that_is_not_ethernet_is_no_mac() {
        let tunnel = message(
            LinkFlags::Up,
            vec![LinkAttribute::Address(vec![10, 0, 0, 1])],
        );
        assert_eq!(Link::from_message(&tunnel).mac, None);
    }
}
