//! Test support shared by the integration tests in `tests/tests/` and the
//! binaries: the differential test of the data path against the reference
//! model ([`differential`]).

pub mod differential;
