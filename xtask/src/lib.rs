//! `cargo xtask`: bootstrap, build, the network-namespace lab, and the
//! commands that use them (`run`, `test`, `lab`, `bench`, `fuzz`). The integration tests in
//! `tests/` use the [`lab`] module directly.

pub mod bench;
pub mod bootstrap;
pub mod build;
pub mod cmd;
pub mod fuzz;
pub mod interrupt;
pub mod lab;
pub mod paths;
pub mod run;
pub mod suite;
