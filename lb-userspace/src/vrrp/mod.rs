//! VRRPv3 for IPv4 (RFC 9568): two load balancer nodes share the VIPs as an
//! active-passive pair.
//!
//! - [`config`]: the settings of one instance (the one type; `crate::config`
//!   fills it from `[vrrp]`);
//! - [`packet`]: the advert on the wire and the receive checks;
//! - [`machine`]: the state machine, without IO, driven by the caller's clock;
//! - [`receive`]: a received datagram → accepted or rejected for one reason;
//! - [`driver`]: the task that runs one instance on a real interface, built on
//!   [`socket`] (adverts), [`crate::netlink`] (interface, carrier, VIPs),
//!   [`garp`] (gratuitous ARP) and [`notify`] (hooks), and publishing
//!   [`status`].
//!
//! ```no_run
//! # async fn example() -> Result<(), lb::vrrp::VrrpError> {
//! use std::net::Ipv4Addr;
//! use lb::hooks::HookFailures;
//! use lb::vrrp::{self, VrrpConfig};
//!
//! let config = VrrpConfig::new("eth0", 51, 150, vec![Ipv4Addr::new(10, 0, 0, 100)]);
//! // This node's address on eth0: the adverts' source.
//! let hook_failures = HookFailures::default();
//! let instance = vrrp::spawn(config, Ipv4Addr::new(10, 0, 0, 2), hook_failures).await?;
//! let status = instance.status();
//! println!("{}", status.borrow().state);
//! instance.set_priority(50); // tracking: hand over
//! instance.shutdown().await?; // priority 0, VIPs removed
//! # Ok(()) }
//! ```

pub mod config;
pub mod driver;
pub mod garp;
pub mod machine;
pub mod notify;
pub mod packet;
pub mod receive;
pub mod socket;
pub mod status;

pub use config::{AdvertInterval, GarpConfig, Gateway, NotifyCommands, VrrpConfig};
pub use driver::{spawn, spawn_with_vips, VipError, VipTable, VrrpError, VrrpHandle};
pub use machine::{Action, AdvertRejected, Instance, State};
pub use packet::{Advert, ChecksumForm, PacketError, ReceivedAdvert};
pub use receive::Reception;
pub use status::{ReceiveCounters, SendCounters, VrrpStatus};
