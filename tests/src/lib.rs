//! The integration tests' library: the end-to-end harness ([`e2e`]) that
//! every netns test in `tests/tests/e2e_*.rs` runs on, and the differential
//! test of the data path against the reference model ([`differential`]).
//! The tests themselves live in `tests/tests/`.

pub mod differential;
pub mod e2e;
