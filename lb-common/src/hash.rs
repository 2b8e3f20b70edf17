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
    let k = k
        .wrapping_mul(0xcc9e_2d51)
        .rotate_left(15)
        .wrapping_mul(0x1b87_3593);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
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

/// Seed of [`source_hash`]: another than the flow hash's, so the two
/// spread independently.
pub const SOURCE_HASH_SEED: u32 = 0x85eb_ca77;

/// Hash of a flow's client address alone (the `source` scheduler): every
/// connection of a client lands on the same slot, whatever its ports, on
/// every LB node.
#[inline(always)]
pub const fn source_hash(key: &FlowKey) -> u32 {
    fmix32(mix(SOURCE_HASH_SEED, key.src_ip) ^ 4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::IPPROTO_TCP;

    /// A TCP flow from `src_ip:src_port` to 10.0.0.100:80, fields in network
    /// byte order as the data path stores them.
    fn flow(src_ip: [u8; 4], src_port: u16) -> FlowKey {
        FlowKey {
            src_ip: u32::from_ne_bytes(src_ip),
            dst_ip: u32::from_ne_bytes([10, 0, 0, 100]),
            src_port: src_port.to_be(),
            dst_port: 80u16.to_be(),
            proto: IPPROTO_TCP,
            _pad: [0; 3],
        }
    }

    /// Bucket counts of `flows` under `hash % buckets`, each checked to be
    /// within `tolerance` (relative) of an even split.
    fn assert_spreads_evenly(flows: impl Iterator<Item = FlowKey>, buckets: usize, tolerance: f64) {
        let mut counts = [0u32; 16];
        let mut total = 0u32;
        for key in flows {
            counts[flow_hash(&key) as usize % buckets] += 1;
            total += 1;
        }
        let even = f64::from(total) / buckets as f64;
        for (bucket, &count) in counts[..buckets].iter().enumerate() {
            let deviation = (f64::from(count) - even).abs() / even;
            assert!(
                deviation <= tolerance,
                "bucket {bucket}: {count} flows, even split {even:.0}"
            );
        }
    }

    #[test]
    fn fmix32_golden_values() {
        assert_eq!(fmix32(0), 0);
        assert_eq!(fmix32(1), GOLDEN_FMIX32_OF_1);
    }
    const GOLDEN_FMIX32_OF_1: u32 = 0x514e_28b7;

    /// A change to the hash would make LB nodes of different versions pick
    /// different backends for the same flow: pin it. The value is for
    /// little-endian machines (x86, arm64, bpfel), where the network-order
    /// fields read as these integers; cross-checked with a Python model.
    #[test]
    fn flow_hash_golden_value() {
        assert_eq!(flow_hash(&flow([10, 0, 0, 1], 40000)), GOLDEN_FLOW_HASH);
    }
    const GOLDEN_FLOW_HASH: u32 = 0x6f82_e9a5;

    #[test]
    fn flow_hash_depends_on_every_field() {
        let base = flow([10, 0, 0, 1], 40000);
        let variants = [
            FlowKey {
                src_ip: base.src_ip ^ 1,
                ..base
            },
            FlowKey {
                dst_ip: base.dst_ip ^ 1,
                ..base
            },
            FlowKey {
                src_port: base.src_port ^ 1,
                ..base
            },
            FlowKey {
                dst_port: base.dst_port ^ 1,
                ..base
            },
            FlowKey {
                proto: crate::maps::IPPROTO_UDP,
                ..base
            },
        ];
        for variant in variants {
            assert_ne!(flow_hash(&variant), flow_hash(&base), "{variant:?}");
        }
    }

    #[test]
    fn distinct_source_ports_spread_over_three_buckets() {
        let flows = (0..30_000u16).map(|i| flow([10, 0, 0, 1], 20_000 + i));
        assert_spreads_evenly(flows, 3, 0.03);
    }

    #[test]
    fn distinct_source_addresses_spread_over_seven_buckets() {
        let flows = (0..30_000u32).map(|i| {
            let [_, _, hi, lo] = i.to_be_bytes();
            flow([172, 16, hi, lo], 40000)
        });
        assert_spreads_evenly(flows, 7, 0.05);
    }

    #[test]
    fn the_source_hash_follows_the_client_address_only_and_spreads_clients() {
        let a = flow([203, 0, 113, 7], 40_000);
        let mut same_client = flow([203, 0, 113, 7], 51_234);
        same_client.dst_port = 443u16.to_be();
        assert_eq!(source_hash(&a), source_hash(&same_client));
        assert_ne!(
            source_hash(&a),
            source_hash(&flow([203, 0, 113, 8], 40_000))
        );
        let mut counts = [0u32; 3];
        for client in 0..3_000u32 {
            let key = flow((0x0a00_0000 + client).to_be_bytes(), 40_000);
            counts[source_hash(&key) as usize % 3] += 1;
        }
        for count in counts {
            assert!((900..=1100).contains(&count), "{counts:?}");
        }
    }
}
