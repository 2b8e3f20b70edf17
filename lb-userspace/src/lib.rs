//! The `lb` controller as a library, so the integration tests drive the same code
//! the binary runs.

pub mod api;
pub mod cleanup;
pub mod config;
pub mod controller;
pub mod dataplane;
pub mod domain;
pub mod error_chain;
pub mod flows;
pub mod ha;
pub mod health;
pub mod hooks;
pub mod neighbour;
pub mod netlink;
pub mod pin_lock;
pub mod pinned_restart;
pub mod privilege;
pub mod reload;
pub mod run;
pub mod status_table;
pub mod vrrp;
