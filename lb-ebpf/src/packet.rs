//! Bounds-checked access to the frame: every header read and write of the
//! programs goes through here, after one comparison against `data_end` per
//! header (the check the verifier needs before any access).

use core::{
    mem::{align_of, size_of},
    ptr::{addr_of, addr_of_mut},
};

use aya_ebpf::programs::XdpContext;
use network_types::{eth::EthHdr, ip::Ipv4Hdr, tcp::TcpHdr, udp::UdpHdr};

/// Headers that [`header`] views in place as `&Self` at any offset into the
/// frame.
///
/// # Safety
///
/// Implementors must be plain old data, so that any `size_of::<Self>()` bytes
/// of a frame, at any address, are a valid `Self`:
/// - `#[repr(C)]` (or `#[repr(transparent)]`), so the layout is the wire layout;
/// - alignment 1 (fields are `u8` or arrays of `u8`), so any address is aligned
///   and a `#[repr(C)]` layout has no padding;
/// - every bit pattern valid (no `bool`, `char`, enums or references);
/// - no interior mutability (no `UnsafeCell`).
///
/// [`header`] also checks the alignment at compile time.
pub unsafe trait ByteHeader {}
// SAFETY: network-types' `Ipv4Hdr` is `#[repr(C)]` and made of `u8` and `[u8; N]`
// fields only (its accessors decode the bit fields): alignment 1, no padding,
// any bit pattern valid.
unsafe impl ByteHeader for Ipv4Hdr {}
// SAFETY: `TcpHdr` is `#[repr(C)]` with `[u8; N]` fields and a `BitfieldU16`
// (`#[repr(C)]` over `[u8; 2]`) for the offset and flags: alignment 1, no
// padding, any bit pattern valid.
unsafe impl ByteHeader for TcpHdr {}
// SAFETY: `UdpHdr` is `#[repr(C)]` with four `[u8; 2]` fields: alignment 1, no
// padding, any bit pattern valid.
unsafe impl ByteHeader for UdpHdr {}
// SAFETY: `IcmpHeader` is `#[repr(C)]` with `u8` and `[u8; N]` fields only.
unsafe impl ByteHeader for IcmpHeader {}

/// The fixed 8 bytes of an ICMP message.
#[repr(C)]
pub struct IcmpHeader {
    pub icmp_type: u8,
    pub code: u8,
    pub checksum: [u8; 2],
    /// Unused, or the next-hop MTU of "fragmentation needed".
    pub rest: [u8; 4],
}

impl IcmpHeader {
    pub const LEN: usize = 8;
}

/// Address of a `T` at `offset` bytes into the frame, or `None` when the frame
/// is too short to hold it entirely.
#[inline(always)]
fn checked_ptr<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

/// The header `T` at `offset` bytes into the frame, read in place, or `None`
/// when the frame is too short to hold it.
#[inline(always)]
pub fn header<T: ByteHeader>(ctx: &XdpContext, offset: usize) -> Option<&T> {
    const { assert!(align_of::<T>() == 1, "a ByteHeader must be byte-aligned") };
    let ptr = checked_ptr::<T>(ctx, offset)?;
    // SAFETY: the bytes are inside the frame, which outlives `ctx`; `T` is byte-aligned
    // and valid for any bit pattern (`ByteHeader`); the programs never write these bytes.
    Some(unsafe { &*ptr })
}

/// The `N` bytes at `offset` into the frame, to be rewritten in place, or
/// `None` when the frame is too short to hold them all.
#[inline(always)]
pub fn bytes_mut<const N: usize>(ctx: &XdpContext, offset: usize) -> Option<*mut [u8; N]> {
    checked_ptr::<[u8; N]>(ctx, offset)
}

/// Length of the frame in bytes.
#[inline(always)]
pub fn frame_len(ctx: &XdpContext) -> usize {
    ctx.data_end() - ctx.data()
}

/// The frame's Ethernet header, bounds-checked; created by [`ethernet`] only.
/// Stays valid for the whole run: the programs never resize the frame.
#[derive(Clone, Copy)]
pub struct Ethernet {
    header: *mut EthHdr,
}

/// The Ethernet header of the frame, or `None` when the frame is shorter.
#[inline(always)]
pub fn ethernet(ctx: &XdpContext) -> Option<Ethernet> {
    checked_ptr::<EthHdr>(ctx, 0).map(|header| Ethernet { header })
}

impl Ethernet {
    /// The EtherType as it appears in the frame (network byte order).
    #[inline(always)]
    pub fn ether_type(&self) -> u16 {
        // SAFETY: `ethernet` checked that the header lies inside the frame.
        unsafe { addr_of!((*self.header).ether_type).read_unaligned() }
    }

    /// Destination and source MAC addresses.
    #[inline(always)]
    pub fn macs(&self) -> ([u8; 6], [u8; 6]) {
        // SAFETY: `ethernet` checked that the header lies inside the frame.
        unsafe {
            (
                addr_of!((*self.header).dst_addr).read_unaligned(),
                addr_of!((*self.header).src_addr).read_unaligned(),
            )
        }
    }

    /// The source MAC address.
    #[inline(always)]
    pub fn source(&self) -> [u8; 6] {
        // SAFETY: `ethernet` checked that the header lies inside the frame.
        unsafe { addr_of!((*self.header).src_addr).read_unaligned() }
    }

    /// The destination MAC address.
    #[inline(always)]
    pub fn destination(&self) -> [u8; 6] {
        // SAFETY: `ethernet` checked that the header lies inside the frame.
        unsafe { addr_of!((*self.header).dst_addr).read_unaligned() }
    }

    /// Rewrites the destination and source MAC addresses.
    #[inline(always)]
    pub fn set_macs(&self, dst: [u8; 6], src: [u8; 6]) {
        // SAFETY: `ethernet` checked that the header lies inside the frame, and the
        // frame is writable in XDP.
        unsafe {
            addr_of_mut!((*self.header).dst_addr).write_unaligned(dst);
            addr_of_mut!((*self.header).src_addr).write_unaligned(src);
        }
    }
}

/// Offset of the flags byte (FIN, SYN, RST, PSH, ACK, ...) in a TCP header.
const TCP_FLAGS_OFFSET: usize = 13;
const _: () = assert!(size_of::<TcpHdr>() == 20);

/// The flags byte of a TCP header.
#[inline(always)]
pub fn tcp_flags(tcp: &TcpHdr) -> u8 {
    // SAFETY: `TcpHdr` is 20 plain bytes (see its `ByteHeader` impl and the
    // assertion above), so byte 13 lies inside the referenced header.
    unsafe {
        (tcp as *const TcpHdr)
            .cast::<u8>()
            .add(TCP_FLAGS_OFFSET)
            .read()
    }
}
