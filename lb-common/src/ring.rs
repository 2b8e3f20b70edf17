//! Weighted round-robin ring builder: the sequence of backend ids that the
//! data path's per-CPU cursor walks for a round-robin service.
//!
//! Weights are first divided by their greatest common divisor, so the ring is
//! as short as the weights allow (weights 20, 10 give the ring `a a b`). The
//! ids are interleaved with nginx's *smooth weighted round-robin*: at each
//! step every backend adds its weight to a running score, the highest score
//! wins the step and pays back the total weight. Weights 5, 1, 1 give
//! `a a b a c a a` rather than `a a a a a b c`, so a short run of new flows is
//! spread as evenly as the weights allow.
//!
//! The result is deterministic and depends on the order of the input: ties
//! between equal scores go to the backend listed first. Zero-weight backends
//! are left out.

use alloc::vec::Vec;
use core::fmt;

/// Why a round-robin ring could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// The ring, after dividing the weights by their gcd, would be longer than
    /// the `max_len` slots available for it.
    TooLong {
        /// Length the weights require (sum of the reduced weights).
        len: u64,
        /// The limit the caller passed as `max_len`.
        max_len: usize,
    },
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingError::TooLong { len, max_len } => write!(
                f,
                "round-robin ring needs {len} slots (sum of the weights divided by their gcd), \
                 more than the limit max_len = {max_len}"
            ),
        }
    }
}

impl core::error::Error for RingError {}

/// Builds the weighted round-robin ring of `(backend id, weight)` pairs.
///
/// Returns one entry per unit of reduced weight, interleaved smoothly (see
/// the module documentation); an empty `Vec` when no backend has a non-zero
/// weight; [`RingError::TooLong`] when the ring would exceed `max_len`.
///
/// Cost: O(ring length × number of backends).
pub fn round_robin_ring(backends: &[(u32, u32)], max_len: usize) -> Result<Vec<u32>, RingError> {
    let weights: Vec<u32> = backends.iter().map(|&(_, weight)| weight).collect();
    check_weights(&weights, max_len)?;
    let divisor = weights.iter().copied().fold(0, gcd);
    if divisor == 0 {
        return Ok(Vec::new());
    }
    let serving: Vec<(u32, i64)> = backends
        .iter()
        .filter(|&&(_, weight)| weight > 0)
        .map(|&(id, weight)| (id, i64::from(weight / divisor)))
        .collect();
    // Reduced weights are below 2^32, so the sum of fewer than 2^31 of them
    // fits in i64; it is positive since some weight is.
    let total: i64 = serving.iter().map(|&(_, weight)| weight).sum();
    let len = total as u64;

    // Scores stay within (-total, total): each step adds `total` in all and
    // takes it back from the winner, whose score is at least the average.
    let mut scores: Vec<i64> = alloc::vec![0; serving.len()];
    let mut ring = Vec::with_capacity(len as usize);
    for _ in 0..len {
        for (score, &(_, weight)) in scores.iter_mut().zip(&serving) {
            *score += weight;
        }
        // The highest score wins; on a tie, the backend listed first.
        let mut winner = 0;
        for (index, &score) in scores.iter().enumerate().skip(1) {
            if score > scores[winner] {
                winner = index;
            }
        }
        scores[winner] -= total;
        ring.push(serving[winner].0);
    }
    Ok(ring)
}

/// The length of the ring of `weights`: the sum of the weights divided by
/// their greatest common divisor (0 when no weight is positive).
pub fn ring_len(weights: &[u32]) -> u64 {
    let divisor = weights.iter().copied().fold(0, gcd);
    if divisor == 0 {
        return 0;
    }
    weights
        .iter()
        .map(|&weight| u64::from(weight / divisor))
        .sum()
}

/// Whether the ring of `weights` fits in `max_len` slots: the one check
/// [`round_robin_ring`] makes, for callers that validate weights (the
/// configuration, the API) before any ring is built.
///
/// It holds for every subset of the backends too (the ones that are up at
/// a given time): a subset's gcd is a multiple of the whole set's and its
/// sum is smaller, so its ring is never longer.
pub fn check_weights(weights: &[u32], max_len: usize) -> Result<(), RingError> {
    let len = ring_len(weights);
    if len > max_len as u64 {
        return Err(RingError::TooLong { len, max_len });
    }
    Ok(())
}

/// Greatest common divisor; `gcd(0, x) == x`, so it folds from 0.
const fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Where CPU `cpu` of `cpus` starts its round-robin cursor on a ring of
/// `ring_len` slots: the CPUs' starts spread evenly over the ring, so the
/// first new flows of every CPU do not all go to slot 0.
pub fn cursor_start(cpu: usize, cpus: usize, ring_len: u32) -> u32 {
    if cpus == 0 {
        return 0;
    }
    // cpu < cpus, so the quotient is below ring_len: it fits a u32.
    (cpu as u64 * u64::from(ring_len) / cpus as u64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// Backend ids by letter, to write expected rings readably.
    const A: u32 = 10;
    const B: u32 = 20;
    const C: u32 = 30;

    fn count(ring: &[u32], id: u32) -> usize {
        ring.iter().filter(|&&x| x == id).count()
    }

    #[test]
    fn weights_5_1_1_are_interleaved_smoothly() {
        let ring = round_robin_ring(&[(A, 5), (B, 1), (C, 1)], 100).unwrap();
        assert_eq!(ring, vec![A, A, B, A, C, A, A]);
    }

    fn assert_ring(backends: &[(u32, u32)], expected: &[u32]) {
        let ring = round_robin_ring(backends, 100).unwrap();
        assert_eq!(ring, expected, "{backends:?}");
    }

    #[test]
    fn exact_sequences_of_small_cases() {
        assert_ring(&[(A, 1)], &[A]);
        assert_ring(&[(A, 1), (B, 1), (C, 1)], &[A, B, C]);
        assert_ring(&[(A, 2), (B, 1)], &[A, B, A]);
        assert_ring(&[(A, 1), (B, 2)], &[B, A, B]);
        assert_ring(&[(A, 3), (B, 2)], &[A, B, A, B, A]);
        assert_ring(&[(A, 4), (B, 2), (C, 1)], &[A, B, A, C, A, B, A]);
    }

    #[test]
    fn ties_go_to_the_backend_listed_first() {
        assert_eq!(round_robin_ring(&[(B, 1), (A, 1)], 10).unwrap(), [B, A]);
        assert_eq!(round_robin_ring(&[(A, 1), (B, 1)], 10).unwrap(), [A, B]);
    }

    #[test]
    fn counts_equal_the_reduced_weights() {
        let backends: Vec<(u32, u32)> = (1..=20).map(|id| (id, id % 7 + 1)).collect();
        let ring = round_robin_ring(&backends, 10_000).unwrap();
        let total: u32 = backends.iter().map(|&(_, w)| w).sum();
        assert_eq!(ring.len(), total as usize);
        for &(id, weight) in &backends {
            assert_eq!(count(&ring, id), weight as usize, "id {id}");
        }
    }

    #[test]
    fn weights_are_divided_by_their_gcd() {
        let ring = round_robin_ring(&[(A, 500), (B, 100), (C, 100)], 100).unwrap();
        assert_eq!(ring, vec![A, A, B, A, C, A, A]);
        let ring = round_robin_ring(&[(A, 6), (B, 4), (C, 0)], 100).unwrap();
        assert_eq!(ring, vec![A, B, A, B, A]);
        let ring = round_robin_ring(&[(A, 7), (B, 7)], 100).unwrap();
        assert_eq!(ring, vec![A, B]);
    }

    #[test]
    fn zero_weight_backends_are_left_out() {
        let ring = round_robin_ring(&[(A, 0), (B, 2), (C, 1)], 100).unwrap();
        assert_eq!(ring, vec![B, C, B]);
    }

    #[test]
    fn no_serving_backend_gives_an_empty_ring() {
        assert_eq!(round_robin_ring(&[], 100), Ok(vec![]));
        assert_eq!(round_robin_ring(&[(A, 0), (B, 0)], 100), Ok(vec![]));
        assert_eq!(round_robin_ring(&[(A, 0)], 0), Ok(vec![]));
    }

    /// Smoothness: going round the ring, the distance from one entry of a
    /// backend of weight w to its next is at most ceil(L / w) + 1 for a ring
    /// of length L (a blocked ring `a a a a a a a b b b c` fails this).
    #[test]
    fn entries_of_each_backend_are_spread_out() {
        let backends = [(A, 7), (B, 3), (C, 1)];
        let ring = round_robin_ring(&backends, 100).unwrap();
        let len = ring.len();
        for &(id, weight) in &backends {
            let positions: Vec<usize> = (0..len).filter(|&i| ring[i] == id).collect();
            let gaps = positions
                .windows(2)
                .map(|w| w[1] - w[0])
                .chain([positions[0] + len - positions[positions.len() - 1]]);
            let fair = len.div_ceil(weight as usize);
            for gap in gaps {
                assert!(
                    gap <= fair + 1,
                    "id {id}: gap {gap} > {fair} + 1 in {ring:?}"
                );
            }
        }
    }

    #[test]
    fn a_ring_longer_than_max_len_is_an_error() {
        let backends = [(A, 6), (B, 3), (C, 2)];
        // gcd 1: the ring needs 11 slots.
        assert_eq!(round_robin_ring(&backends, 11).map(|r| r.len()), Ok(11));
        let err = round_robin_ring(&backends, 10).unwrap_err();
        assert_eq!(
            err,
            RingError::TooLong {
                len: 11,
                max_len: 10
            }
        );
        let message = alloc::format!("{err}");
        assert!(message.contains("11 slots"), "{message}");
        assert!(message.contains("max_len = 10"), "{message}");
    }

    #[test]
    fn huge_weights_report_their_length_without_overflow() {
        let err = round_robin_ring(&[(A, u32::MAX), (B, u32::MAX - 1)], 65_537).unwrap_err();
        let len = u64::from(u32::MAX) * 2 - 1;
        assert_eq!(
            err,
            RingError::TooLong {
                len,
                max_len: 65_537
            }
        );
    }

    #[test]
    fn check_weights_is_the_length_check_of_the_builder() {
        assert_eq!(ring_len(&[6, 3, 2]), 11);
        assert_eq!(ring_len(&[500, 100, 100]), 7);
        assert_eq!(ring_len(&[0, 0]), 0);
        assert_eq!(check_weights(&[6, 3, 2], 11), Ok(()));
        assert_eq!(
            check_weights(&[6, 3, 2], 10),
            Err(RingError::TooLong {
                len: 11,
                max_len: 10
            })
        );
        assert_eq!(check_weights(&[], 0), Ok(()));
    }

    /// Every subset of weights that fit also fits: the API and the config
    /// check the configured set once, whatever is up later.
    #[test]
    fn a_subset_of_fitting_weights_fits() {
        let weights = [12, 8, 6, 5, 1, 30];
        let max_len = ring_len(&weights) as usize;
        for mask in 1u32..(1 << weights.len()) {
            let subset: Vec<u32> = (0..weights.len())
                .filter(|&i| mask & (1 << i) != 0)
                .map(|i| weights[i])
                .collect();
            assert!(ring_len(&subset) <= max_len as u64, "{subset:?}");
            let ids: Vec<(u32, u32)> = (0..).zip(subset.iter().copied()).collect();
            assert!(round_robin_ring(&ids, max_len).is_ok(), "{subset:?}");
        }
    }

    #[test]
    fn gcd_of_small_values() {
        assert_eq!(gcd(0, 0), 0);
        assert_eq!(gcd(0, 9), 9);
        assert_eq!(gcd(12, 18), 6);
        assert_eq!(gcd(17, 5), 1);
    }

    #[test]
    fn cursors_start_spread_over_the_ring() {
        let starts: Vec<u32> = (0..4).map(|cpu| cursor_start(cpu, 4, 12)).collect();
        assert_eq!(starts, [0, 3, 6, 9]);
        let starts: Vec<u32> = (0..2).map(|cpu| cursor_start(cpu, 2, 3)).collect();
        assert_eq!(starts, [0, 1]);
        // More CPUs than slots: every start is still on the ring.
        assert!((0..64).all(|cpu| cursor_start(cpu, 64, 3) < 3));
        assert_eq!(cursor_start(0, 0, 5), 0);
    }
}
