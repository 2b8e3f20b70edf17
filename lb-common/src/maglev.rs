//! Maglev consistent-hashing table builder (placeholder, being written).
