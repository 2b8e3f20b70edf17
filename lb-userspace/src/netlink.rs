//! The rtnetlink link lookup shared by the modules that ask the kernel about
//! interfaces (`neighbour`, `ha`, `vrrp`).

use futures::TryStreamExt as _;
use rtnetlink::packet_route::link::LinkMessage;
use rtnetlink::Handle;

/// Which interface to look up.
#[derive(Debug, Clone, Copy)]
pub enum LinkQuery<'a> {
    Name(&'a str),
    Index(u32),
}

/// The link `query` names, or `None` when the kernel has no such link (it
/// answers ENODEV to a lookup by name, and nothing to one by index).
pub async fn get_link(
    handle: &Handle,
    query: LinkQuery<'_>,
) -> Result<Option<LinkMessage>, rtnetlink::Error> {
    let request = match query {
        LinkQuery::Name(name) => handle.link().get().match_name(name),
        LinkQuery::Index(index) => handle.link().get().match_index(index),
    };
    match request.execute().try_next().await {
        Err(rtnetlink::Error::NetlinkError(error)) if error.raw_code() == -libc::ENODEV => Ok(None),
        result => result,
    }
}
