//! Maglev consistent-hashing table builder (Eisenbud et al., NSDI'16), with
//! weights honoured the way Katran's "maglev v2" does.
//!
//! The table maps a flow hash to a backend id: the data path reads
//! `table[flow_hash % m]`. Every backend walks its own permutation of the
//! slots, `(offset + j * skip) % m`, and the backends take turns claiming the
//! next free slot of their permutation until the table is full. Because the
//! permutations depend only on each backend's stable [`MaglevBackend::key`],
//! removing or adding one backend moves few slots, and every LB node given the
//! same backends builds the same table.
//!
//! # Weights
//!
//! Each round every backend adds its weight to an accumulator; when the
//! accumulator reaches the largest weight, the backend claims one slot and
//! the largest weight is subtracted. A backend of weight `w` thus claims
//! `w / max_weight` slots per round and its share of the table is
//! `w / sum(weights)` to within a slot or two. Zero-weight backends take no
//! slots.
//!
//! # Determinism
//!
//! The result does not depend on the order of the input: backends are sorted
//! by `(key, id)` before the build, so two nodes whose configs list the same
//! backends in a different order publish identical tables. The permutation
//! hashes are fixed integer arithmetic (murmur3's 64-bit finaliser with fixed
//! seeds), identical on every platform.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// Seed of the hash that gives a backend's first slot (`offset`).
const OFFSET_SEED: u64 = 0x2545_f491_4f6c_dd1d;
/// Seed of the hash that gives a backend's stride (`skip`).
const SKIP_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// One backend as Maglev sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaglevBackend {
    /// The value written into the table slots this backend owns (its backend id).
    pub id: u32,
    /// Stable identity that seeds the permutation; must be the same on every
    /// LB node for the same backend, e.g. [`MaglevBackend::endpoint_key`].
    pub key: u64,
    /// Relative share of the table; 0 leaves the backend out.
    pub weight: u32,
}

impl MaglevBackend {
    /// The conventional key of a backend at `ip:port`: the IPv4 address as a
    /// big-endian integer shifted left by 16, or'ed with the port.
    /// `endpoint_key([10, 0, 0, 1], 80) == 0x0a00_0001_0050`.
    pub const fn endpoint_key(ip: [u8; 4], port: u16) -> u64 {
        (u32::from_be_bytes(ip) as u64) << 16 | port as u64
    }
}

/// Why a Maglev table could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaglevError {
    /// The table size must be prime so that every `skip` generates a full
    /// permutation of the slots.
    TableSizeNotPrime(u32),
}

impl fmt::Display for MaglevError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaglevError::TableSizeNotPrime(m) => {
                write!(f, "Maglev table size {m} is not a prime number")
            }
        }
    }
}

impl core::error::Error for MaglevError {}

/// Whether `n` is prime (trial division; at most 2^16 steps for a `u32`).
pub fn is_prime(n: u32) -> bool {
    if n < 4 {
        return n >= 2;
    }
    if n.is_multiple_of(2) || n.is_multiple_of(3) {
        return false;
    }
    // Every prime above 3 is 6k ± 1. `d * d` is computed in u64 so it cannot
    // overflow for n close to u32::MAX.
    let n = u64::from(n);
    let mut d: u64 = 5;
    while d * d <= n {
        if n.is_multiple_of(d) || n.is_multiple_of(d + 2) {
            return false;
        }
        d += 6;
    }
    true
}

/// Builds a Maglev table of `m` slots (`m` prime) over `backends`.
///
/// Returns a `Vec` of length `m` whose slots hold backend ids, or an empty
/// `Vec` when no backend has a non-zero weight (the data path's "no serving
/// backend"). The result is independent of the order of `backends`; see the
/// module documentation for the weighting and determinism guarantees.
/// Backends with equal keys get the same permutation and share its slots.
///
/// Cost: about `m * ln(m)` slot probes plus one pass over the backends per
/// round. With `m = 65537` and 1000 backends a build takes about 2 ms in
/// release; the worst case, one weight dwarfing all others, needs up to `m`
/// rounds (about 50 ms for 1000 backends).
pub fn build_table(backends: &[MaglevBackend], m: u32) -> Result<Vec<u32>, MaglevError> {
    if !is_prime(m) {
        return Err(MaglevError::TableSizeNotPrime(m));
    }
    let mut serving: Vec<MaglevBackend> =
        backends.iter().copied().filter(|b| b.weight > 0).collect();
    let Some(max_weight) = serving.iter().map(|b| u64::from(b.weight)).max() else {
        return Ok(Vec::new());
    };
    serving.sort_unstable_by_key(|b| (b.key, b.id));

    let mut walkers: Vec<PermutationWalker> = serving
        .iter()
        .map(|b| PermutationWalker::new(b.key, m))
        .collect();
    let mut accumulated: Vec<u64> = vec![0; serving.len()];
    let mut table: Vec<u32> = vec![0; m as usize];
    let mut taken: Vec<bool> = vec![false; m as usize];
    let mut filled: u32 = 0;

    // The backend with the largest weight claims a slot every round, so each
    // round fills at least one slot and the loop ends after at most m rounds.
    loop {
        for ((backend, walker), acc) in serving
            .iter()
            .zip(walkers.iter_mut())
            .zip(accumulated.iter_mut())
        {
            *acc += u64::from(backend.weight);
            if *acc < max_weight {
                continue;
            }
            *acc -= max_weight;
            // The table is not full here, and the walk visits every slot
            // (m prime, skip in 1..m), so a free slot is always found.
            let slot = walker.next_free(&taken);
            taken[slot] = true;
            table[slot] = backend.id;
            filled += 1;
            if filled == m {
                return Ok(table);
            }
        }
    }
}

/// A Maglev table too small for a set of weights: some backend could get no
/// slot at all (see [`check_weights`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableTooSmall {
    /// The table size M that was checked.
    pub table_size: u32,
    /// The weight of the backend that can be starved (the lightest).
    pub lightest: u32,
    /// The heaviest weight serving beside it when it is starved.
    pub heaviest: u32,
    /// Slots the build may fill before the lightest backend claims its
    /// first one, that one included: more than `table_size`.
    pub slots_needed: u64,
}

impl fmt::Display for TableTooSmall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a Maglev table of {} slots is too small for these weights: a backend of weight {} \
             serving beside backends of weight up to {} can get no slot ({} slots needed)",
            self.table_size, self.lightest, self.heaviest, self.slots_needed
        )
    }
}

impl core::error::Error for TableTooSmall {}

/// Whether [`build_table`] gives every backend of `weights` at least one of
/// `m` slots, whatever subset of them serves and whatever their keys: the
/// check the configuration and the API run before a table is built.
///
/// The rule, exact for the build above: a backend of weight `w` among
/// serving backends whose heaviest weight is `v` claims its first slot in
/// round `k = ceil(v / w)`; by its turn in that round, a backend of weight
/// `x` has claimed at most `floor(k * x / v)` slots (exactly that many if it
/// sorts before it), one slot each. So the backend is starved for some
/// order of keys iff `sum over the serving backends of floor(k * x / v)`
/// (its own claim included) exceeds `m`. The worst case over subsets is the
/// lightest backend with every backend no heavier than some `v`, checked for
/// every weight `v` present. Zero weights take no slots and are ignored.
///
/// Cost: O(n * distinct weights) after a sort.
pub fn check_weights(weights: &[u32], m: u32) -> Result<(), TableTooSmall> {
    let mut serving: Vec<u32> = weights.iter().copied().filter(|&w| w > 0).collect();
    serving.sort_unstable();
    let Some(&lightest) = serving.first() else {
        return Ok(());
    };
    let mut end = 0;
    while end < serving.len() {
        let heaviest = serving[end];
        while end < serving.len() && serving[end] == heaviest {
            end += 1;
        }
        // u128: k < 2^32 and x < 2^32, summed over fewer than 2^32 backends.
        let rounds = u128::from(heaviest).div_ceil(u128::from(lightest));
        let needed: u128 = serving[..end]
            .iter()
            .map(|&x| rounds * u128::from(x) / u128::from(heaviest))
            .sum();
        if needed > u128::from(m) {
            return Err(TableTooSmall {
                table_size: m,
                lightest,
                heaviest,
                slots_needed: u64::try_from(needed).unwrap_or(u64::MAX),
            });
        }
    }
    Ok(())
}

/// One backend's walk through its permutation `(offset + j * skip) % m`.
struct PermutationWalker {
    /// The slot the walk visits next.
    position: u64,
    /// Stride, in `1..m`.
    skip: u64,
    /// Table size.
    m: u64,
}

impl PermutationWalker {
    fn new(key: u64, m: u32) -> Self {
        let m = u64::from(m);
        PermutationWalker {
            position: fmix64(key ^ OFFSET_SEED) % m,
            // m is prime, hence >= 2, so m - 1 >= 1.
            skip: fmix64(key ^ SKIP_SEED) % (m - 1) + 1,
            m,
        }
    }

    /// Advances to the first slot not yet taken, returns it and moves past it.
    fn next_free(&mut self, taken: &[bool]) -> usize {
        loop {
            // position < m <= u32::MAX, so it indexes `taken` exactly.
            let slot = self.position as usize;
            self.position += self.skip;
            if self.position >= self.m {
                self.position -= self.m;
            }
            if !taken[slot] {
                return slot;
            }
        }
    }
}

/// murmur3's 64-bit finaliser: a bijection with full avalanche.
const fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u32 = 65537;

    fn backend(index: u32, weight: u32) -> MaglevBackend {
        // 10.0.x.y:80, with index = x * 256 + y.
        let [_, _, hi, lo] = index.to_be_bytes();
        MaglevBackend {
            id: index,
            key: MaglevBackend::endpoint_key([10, 0, hi, lo], 80),
            weight,
        }
    }

    /// `n` backends with ids 1..=n and the given weight per index.
    fn backends(n: u32, weight: impl Fn(u32) -> u32) -> Vec<MaglevBackend> {
        (1..=n).map(|i| backend(i, weight(i))).collect()
    }

    /// Number of slots per backend id (ids are small, so a dense vector).
    fn slot_counts(table: &[u32], max_id: u32) -> Vec<u64> {
        let mut counts = vec![0u64; max_id as usize + 1];
        for &id in table {
            counts[id as usize] += 1;
        }
        counts
    }

    /// Each backend's share of the slots is within 1% (absolute) of its
    /// share of the total weight.
    fn assert_shares_follow_weights(backends: &[MaglevBackend], m: u32) {
        let table = build_table(backends, m).unwrap();
        assert_eq!(table.len(), m as usize);
        let max_id = backends.iter().map(|b| b.id).max().unwrap();
        let counts = slot_counts(&table, max_id);
        let total_weight: u64 = backends.iter().map(|b| u64::from(b.weight)).sum();
        for b in backends {
            let share = counts[b.id as usize] as f64 / f64::from(m);
            let expected = f64::from(b.weight) / total_weight as f64;
            assert!(
                (share - expected).abs() <= 0.01,
                "n={} backend {} weight {}: share {share:.5}, expected {expected:.5}",
                backends.len(),
                b.id,
                b.weight
            );
        }
    }

    /// Fraction of slots whose value differs between two tables of one size.
    fn changed_fraction(before: &[u32], after: &[u32]) -> f64 {
        assert_eq!(before.len(), after.len());
        let changed = before.iter().zip(after).filter(|(a, b)| a != b).count();
        changed as f64 / before.len() as f64
    }

    /// FNV-1a (64-bit) over the table's slots as little-endian bytes.
    fn fnv1a(table: &[u32]) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in table.iter().flat_map(|id| id.to_le_bytes()) {
            h ^= u64::from(byte);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    }

    #[test]
    fn is_prime_matches_known_values() {
        let primes_below_50 = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47];
        for n in 0..50 {
            assert_eq!(is_prime(n), primes_below_50.contains(&n), "n={n}");
        }
        assert!(is_prime(251));
        assert!(is_prime(65537));
        assert!(!is_prime(65535));
        assert!(is_prime(65539));
        assert!(!is_prime(65521 * 65519)); // product of two primes near 2^16
        assert!(is_prime(4_294_967_291)); // largest prime below 2^32
        assert!(!is_prime(u32::MAX));
    }

    #[test]
    fn rejects_a_table_size_that_is_not_prime() {
        let b = backends(3, |_| 1);
        assert_eq!(
            build_table(&b, 65536),
            Err(MaglevError::TableSizeNotPrime(65536))
        );
        assert_eq!(build_table(&b, 1), Err(MaglevError::TableSizeNotPrime(1)));
        assert_eq!(build_table(&[], 0), Err(MaglevError::TableSizeNotPrime(0)));
        let message = alloc::format!("{}", MaglevError::TableSizeNotPrime(100));
        assert_eq!(message, "Maglev table size 100 is not a prime number");
    }

    #[test]
    fn no_serving_backend_gives_an_empty_table() {
        assert_eq!(build_table(&[], M), Ok(Vec::new()));
        assert_eq!(build_table(&backends(4, |_| 0), M), Ok(Vec::new()));
    }

    #[test]
    fn a_single_backend_owns_every_slot() {
        let table = build_table(&[backend(7, 3)], 13).unwrap();
        assert_eq!(table, vec![7; 13]);
    }

    #[test]
    fn zero_weight_backends_get_no_slot() {
        let b = backends(5, |i| if i == 3 { 0 } else { 1 });
        let table = build_table(&b, M).unwrap();
        assert!(!table.contains(&3));
        for id in [1, 2, 4, 5] {
            assert!(table.contains(&id));
        }
        // Same table as if backend 3 had not been listed at all.
        let without: Vec<_> = b.iter().copied().filter(|b| b.id != 3).collect();
        assert_eq!(table, build_table(&without, M).unwrap());
    }

    /// Acceptance: every N in 3..=100, equal weights, M = 65537.
    #[test]
    fn equal_weights_share_the_table_evenly_for_3_to_100_backends() {
        for n in 3..=100 {
            assert_shares_follow_weights(&backends(n, |_| 1), M);
        }
    }

    /// Acceptance: every N in 3..=100, weights 1,2,3,4,5,1,2,... M = 65537.
    #[test]
    fn mixed_weights_share_the_table_by_weight_for_3_to_100_backends() {
        for n in 3..=100 {
            assert_shares_follow_weights(&backends(n, |i| (i - 1) % 5 + 1), M);
        }
    }

    #[test]
    fn large_weight_ratios_are_honoured() {
        let b = [
            backend(1, 1),
            backend(2, 10),
            backend(3, 100),
            backend(4, 1000),
        ];
        assert_shares_follow_weights(&b, M);
        let b = [backend(1, 1), backend(2, u32::MAX)];
        assert_shares_follow_weights(&b, M);
    }

    /// Equal weights: the classic Maglev guarantee of floor or ceil of m / n.
    #[test]
    fn equal_weights_differ_by_at_most_one_slot() {
        for n in [3, 7, 10, 64, 100] {
            let table = build_table(&backends(n, |_| 1), M).unwrap();
            let counts = slot_counts(&table, n);
            let (lo, hi) = (M / n, M.div_ceil(n));
            for id in 1..=n {
                let c = counts[id as usize];
                assert!(
                    c == u64::from(lo) || c == u64::from(hi),
                    "n={n} id={id} c={c}"
                );
            }
        }
    }

    /// Acceptance: removing one of N backends changes at most 1/N + 1% of the
    /// slots, where "changed" means the slot's backend id differs between the
    /// two tables (this counts the removed backend's slots, which must move,
    /// plus any slot of a surviving backend that moved as a side effect).
    #[test]
    fn removing_one_backend_moves_few_slots() {
        for n in [3, 4, 5, 8, 10, 16, 25, 33, 50, 64, 77, 100] {
            let before = backends(n, |_| 1);
            let table_before = build_table(&before, M).unwrap();
            for removed in [1, n / 2 + 1, n] {
                let after: Vec<_> = before.iter().copied().filter(|b| b.id != removed).collect();
                let table_after = build_table(&after, M).unwrap();
                let changed = changed_fraction(&table_before, &table_after);
                let bound = 1.0 / f64::from(n) + 0.01;
                assert!(
                    changed <= bound,
                    "n={n} removed={removed}: {changed:.4} > {bound:.4}"
                );
                assert!(!table_after.contains(&removed));
            }
        }
    }

    #[test]
    fn removing_one_weighted_backend_moves_few_slots() {
        for n in [5, 10, 30, 100] {
            let before = backends(n, |i| (i - 1) % 5 + 1);
            let total: u32 = before.iter().map(|b| b.weight).sum();
            let table_before = build_table(&before, M).unwrap();
            let removed = before[before.len() / 2];
            let after: Vec<_> = before.iter().copied().filter(|b| *b != removed).collect();
            let changed = changed_fraction(&table_before, &build_table(&after, M).unwrap());
            let bound = f64::from(removed.weight) / f64::from(total) + 0.01;
            assert!(changed <= bound, "n={n}: {changed:.4} > {bound:.4}");
        }
    }

    #[test]
    fn input_order_does_not_matter() {
        let b = backends(40, |i| (i - 1) % 5 + 1);
        let expected = build_table(&b, M).unwrap();
        let mut reversed = b.clone();
        reversed.reverse();
        assert_eq!(build_table(&reversed, M).unwrap(), expected);
        // A deterministic shuffle: stride 17 is coprime with 40.
        let shuffled: Vec<_> = (0..40).map(|i| b[(i * 17) % 40]).collect();
        assert_eq!(build_table(&shuffled, M).unwrap(), expected);
    }

    /// Acceptance: a change to the algorithm, the hashes or the platform
    /// behaviour shows up as a different checksum. The constants were
    /// cross-checked with an independent Python model of the algorithm.
    #[test]
    fn golden_checksum_of_a_fixed_table() {
        let b: Vec<_> = [1, 1, 2, 1, 3]
            .iter()
            .zip(1u8..)
            .map(|(&weight, host)| MaglevBackend {
                id: u32::from(host),
                key: MaglevBackend::endpoint_key([10, 0, 0, host], 80),
                weight,
            })
            .collect();
        let table = build_table(&b, M).unwrap();
        assert_eq!(&table[..16], &GOLDEN_PREFIX);
        assert_eq!(fnv1a(&table), GOLDEN_FNV1A);
    }
    const GOLDEN_PREFIX: [u32; 16] = [1, 5, 3, 1, 3, 5, 1, 4, 5, 1, 2, 5, 3, 2, 5, 5];
    const GOLDEN_FNV1A: u64 = 0x50c5_4fbb_cd1b_a6b0;

    /// Acceptance: small prime tables are full and hold every backend.
    #[test]
    fn small_tables_are_full_and_hold_every_backend() {
        for (m, sizes) in [(13, 1..=13), (251, 1..=251)] {
            for n in sizes {
                let table = build_table(&backends(n, |_| 1), m).unwrap();
                assert_eq!(table.len(), m as usize);
                let counts = slot_counts(&table, n);
                assert_eq!(counts[0], 0, "m={m} n={n}: slot with no backend");
                assert!(
                    (1..=n).all(|id| counts[id as usize] > 0),
                    "m={m} n={n}: a backend is missing"
                );
            }
        }
    }

    #[test]
    fn more_backends_than_slots_still_fills_the_table() {
        let table = build_table(&backends(20, |_| 1), 13).unwrap();
        assert_eq!(table.len(), 13);
        let counts = slot_counts(&table, 20);
        assert_eq!(counts[0], 0);
        assert!(counts.iter().all(|&c| c <= 1));
    }

    /// The case: M = 5 with weights 51/68/31 starves the 31.
    #[test]
    fn check_weights_refuses_the_weights_that_starve_a_backend() {
        assert_eq!(
            check_weights(&[51, 68, 31], 5),
            Err(TableTooSmall {
                table_size: 5,
                lightest: 31,
                heaviest: 68,
                slots_needed: 6
            })
        );
        assert_eq!(check_weights(&[51, 68, 31], 7), Ok(()));
        // Equal weights: at most one backend per slot.
        assert_eq!(check_weights(&[1; 13], 13), Ok(()));
        assert!(check_weights(&[1; 14], 13).is_err());
        assert_eq!(check_weights(&[], 5), Ok(()));
        assert_eq!(check_weights(&[0, 0, 7], 2), Ok(()));
        let message = alloc::format!("{}", check_weights(&[1, 100], 13).unwrap_err());
        assert_eq!(
            message,
            "a Maglev table of 13 slots is too small for these weights: a backend of weight 1 \
             serving beside backends of weight up to 100 can get no slot (101 slots needed)"
        );
    }

    /// xorshift64*: a fixed-seed generator for the property tests.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Backends of `weights` whose keys sort them in the order given.
    fn in_order(weights: &[u32]) -> Vec<MaglevBackend> {
        (1..)
            .zip(weights)
            .map(|(id, &weight)| MaglevBackend {
                id,
                key: u64::from(id),
                weight,
            })
            .collect()
    }

    /// By construction: for weights the check accepts, the table of every
    /// subset, with the backends in random orders, gives each backend a
    /// slot; for weights it refuses, the subset and order it names starve
    /// the lightest backend. So the rule is neither too lax nor too strict.
    #[test]
    fn check_weights_agrees_with_the_tables_built() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut accepted, mut refused) = (0, 0);
        for _ in 0..3000 {
            let m = [5, 7, 11, 13, 17, 31][rng.below(6) as usize];
            let n = 1 + rng.below(6) as usize;
            let weights: Vec<u32> = (0..n).map(|_| 1 + rng.below(100) as u32).collect();
            match check_weights(&weights, m) {
                Ok(()) => {
                    accepted += 1;
                    for mask in 1u32..(1 << n) {
                        let mut subset: Vec<u32> = (0..n)
                            .filter(|&i| mask & (1 << i) != 0)
                            .map(|i| weights[i])
                            .collect();
                        for _ in 0..3 {
                            for i in (1..subset.len()).rev() {
                                subset.swap(i, rng.below(i as u64 + 1) as usize);
                            }
                            let backends = in_order(&subset);
                            let table = build_table(&backends, m).unwrap();
                            for b in &backends {
                                assert!(
                                    table.contains(&b.id),
                                    "m={m} weights={weights:?} subset={subset:?}: id {} starved",
                                    b.id
                                );
                            }
                        }
                    }
                }
                Err(error) => {
                    refused += 1;
                    // Every backend no heavier than `heaviest`, the lightest last.
                    let mut subset: Vec<u32> = weights
                        .iter()
                        .copied()
                        .filter(|&w| w <= error.heaviest)
                        .collect();
                    subset.sort_unstable_by(|a, b| b.cmp(a));
                    let backends = in_order(&subset);
                    let table = build_table(&backends, m).unwrap();
                    let last = backends.last().unwrap();
                    assert_eq!(last.weight, error.lightest);
                    assert!(
                        !table.contains(&last.id),
                        "m={m} weights={weights:?}: refused, yet {subset:?} starves nobody"
                    );
                }
            }
        }
        assert!(accepted > 300 && refused > 300, "{accepted} / {refused}");
    }

    #[test]
    fn endpoint_key_packs_address_and_port() {
        assert_eq!(
            MaglevBackend::endpoint_key([10, 0, 0, 1], 80),
            0x0a00_0001_0050
        );
        assert_eq!(
            MaglevBackend::endpoint_key([255, 255, 255, 255], 65535),
            0xffff_ffff_ffff
        );
    }
}
