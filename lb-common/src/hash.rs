//! The flow hash used by Maglev to map a 5-tuple to a table slot.
//!
//! Both the data path and userspace tests compute it, so it is plain integer
//! arithmetic with no tables and no loops the verifier would have to bound.

use crate::maps::FlowKey;

/// Seed mixed into every flow hash; fixed so that every LB node (and every
/// test) maps a 5-tuple to the same slot.
pub const FLOW_HASH_SEED: u32 = 0x9e37_79b9;

/// murmur3's 32-bit finaliser: full avalanche of one word.
#[inline(always)]
pub const fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// murmur3 block mix of one 32-bit word into the running hash.
#[inline(always)]
const fn mix(h: u32, k: u32) -> u32 {
    let k = k.wrapping_mul(0xcc9e_2d51).rotate_left(15).wrapping_mul(0x1b87_3593);
    (h ^ k).rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64)
}

/// Hash of a flow's 5-tuple (fields as stored in [`FlowKey`], network order).
#[inline(always)]
pub const fn flow_hash(key: &FlowKey) -> u32 {
    let mut h = FLOW_HASH_SEED;
    h = mix(h, key.src_ip);
    h = mix(h, key.dst_ip);
    h = mix(h, (key.src_port as u32) << 16 | key.dst_port as u32);
    h = mix(h, key.proto as u32);
    fmix32(h ^ 16)
}
