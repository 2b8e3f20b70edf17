//! Shared between the XDP program (`lb-ebpf`) and the controller (`lb-userspace`):
//! the BPF map layouts, the flow hash, passive health's handshake record, the Internet checksum, the Maglev
//! table and round-robin ring builders, and the reference model of the data
//! path's decision.
//!
//! `no_std` so the eBPF side can use it; everything here is unit-tested on the host.
#![no_std]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod checksum;
pub mod handshake;
pub mod hash;
#[cfg(feature = "alloc")]
pub mod maglev;
pub mod maps;
#[cfg(feature = "alloc")]
pub mod model;
#[cfg(feature = "alloc")]
pub mod ring;
