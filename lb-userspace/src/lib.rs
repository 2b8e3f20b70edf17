//! The `lb` controller as a library, so the integration tests drive the same code
//! the binary runs.

pub mod config;
pub mod dataplane;
