//! The programs of the load balancer: `lb_xdp` (the data path), `lb_guard`
//! (its kernel-side guard at tc ingress) and two benchmark floors,
//! `xdp_pass` and `xdp_mac_swap`.
//!
//! Program and map names are the contract in `lb_common::maps`; the per-packet
//! logic lives in [`balance`], edge filtering (MACs, VIP ports and protocols,
//! source allow-lists, ICMP) in [`edge`], flood protection in [`flood`],
//! passive health in [`passive`], NAT forwarding in [`nat`], the guard in [`guard`],
//! header access in [`packet`], counters in [`stats`], the MAC-swap floor in
//! [`mac_swap`].
//!
//! Built by `cargo xtask build`, which runs (from `lb-ebpf/`):
//! `RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 RUSTFLAGS="-C debuginfo=2 -C link-arg=--btf"
//! cargo build --release --target bpfel-unknown-none --target-dir ../target`
//! (or `-Z build-std=core` on a nightly toolchain with `rust-src`).
#![no_std]
#![no_main]

mod balance;
mod edge;
mod flood;
mod guard;
mod mac_swap;
mod maps;
mod nat;
mod packet;
mod passive;
mod stats;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};

/// The load balancer: forwards packets addressed to a virtual service to a
/// backend, passes everything else to the kernel, drops malformed packets and
/// fragments addressed to a VIP. Counts every packet by action and reason.
#[xdp]
pub fn lb_xdp(ctx: XdpContext) -> u32 {
    let verdict = balance::balance(&ctx);
    stats::count_verdict(&verdict);
    verdict.action()
}

/// At tc ingress beside `lb_xdp`: drops the service traffic that reaches the
/// kernel because `lb_xdp` no longer runs, so this node's kernel never
/// resets its connections (see [`guard`]).
#[classifier]
pub fn lb_guard(ctx: TcContext) -> i32 {
    guard::guard(&ctx)
}

/// Returns `XDP_PASS`: the benchmark's "do nothing" floor, and the program the
/// lab attaches to the peer of an LB veth so that `XDP_TX` frames are accepted.
#[xdp]
pub fn xdp_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Parses Ethernet/IPv4/TCP with bounds checks, swaps the MACs and bounces the
/// frame with `XDP_TX`: the benchmark's "minimal useful work" floor.
#[xdp]
pub fn xdp_mac_swap(ctx: XdpContext) -> u32 {
    mac_swap::bounce(&ctx)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program with a reachable panic path, so this is
    // never executed; it only satisfies `no_std`.
    loop {}
}

/// The kernel requires a GPL-compatible license for the helpers we call
/// (`bpf_redirect`).
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
