//! The `lb` controller as a library, so the integration tests drive the same code
//! the binary runs.

pub mod config;
pub mod dataplane;
pub mod health;
pub mod neighbour;
pub mod reconcile;
pub mod run;
pub mod vrrp;
