//! The reference model of `lb_xdp`'s per-packet decision: given the frame,
//! the ingress interface and the map contents, what the program returns,
//! what it leaves in the frame, and what it writes to the maps and counters.
//!
//! It models the program as it is today, quirks included (listed on
//! [`decide`]); when the program changes, the model changes with it,
//! and the differential test in `tests/` (`differential.rs`, `cargo xtask
//! fuzz`) holds the two against each other byte for byte.
//!
//! Pure Rust with no IO: [`decide`] reads a [`MapContents`] and returns a
//! [`Decision`]; [`MapContents::apply`] steps the maps. Needs `alloc` (the
//! output frame, the maps).
//!
//! - [`wire`]: typed views over the headers, lengths checked once.
//! - [`contents`]: the maps the decision reads, in memory.
//! - [`decision`]: the result and the types it is made of.
//! - `decide`: the decision, step for step like `lb-ebpf/src/balance.rs`.
//! - `edge`: edge filtering (MACs, VIP ports and protocols, source
//!   allow-lists, ICMP), like `lb-ebpf/src/edge.rs`.
//! - `flood`: the new-flow rate limit and insert guard, like
//!   `lb-ebpf/src/flood.rs`.
//! - `passive`: passive health's handshake watch and second chance, like
//!   `lb-ebpf/src/passive.rs`.
//! - `nat`: `forwarding = "nat"`'s rewrites, its replies and the clients it
//!   learns, like `lb-ebpf/src/nat.rs`.

pub mod contents;
mod decide;
pub mod decision;
mod edge;
mod flood;
mod nat;
mod passive;
pub mod wire;

pub use contents::{IndexOutOfRange, MapContents, MapSizes};
pub use decide::decide;
pub use decision::{
    CursorAdvance, Decision, FlowChange, HandshakeEffect, Ingress, NatRewrite, Traffic, XdpAction,
};
pub use flood::BucketWrite;
pub use nat::ClientWrite;

#[cfg(test)]
mod tests;
