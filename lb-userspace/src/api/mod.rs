//! The local control channel: a loopback-only HTTP API served by `lb run`
//! ([`server`]) and called by `lb status` / `lb backend ...` ([`client`]),
//! exchanging the JSON documents of [`model`], and scraped by Prometheus
//! (`GET /metrics`, [`metrics`]).
//!
//! It knows the controller only through [`crate::domain`]: it reads the
//! snapshot the controller publishes and sends admin commands on a channel.
//!
//! It listens on `global.api` (default `127.0.0.1:9180`) inside the LB
//! node's network namespace, so the CLI must run in that namespace too
//! (`ip netns exec NS lb status` in the lab). It has no authentication:
//! loopback only, enforced by the configuration.

pub mod client;
pub mod metrics;
pub mod model;
pub mod server;

pub use client::{ApiClient, ClientError};

#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod tests;
