//! The integration tests' library: the end-to-end harness ([`e2e`]) that
//! every netns test in `tests/tests/e2e_*.rs` runs on. The tests themselves
//! live in `tests/tests/`.

pub mod e2e;
