//! dataplane (being written)
