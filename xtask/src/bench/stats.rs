//! Summary statistics of the benchmark's repeated measurements.

/// The median of `values` (the mean of the middle two for an even count);
/// `None` when there are none.
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut sorted: Vec<f64> = values.into_iter().collect();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// `amount` per 1000 `requests`; `None` without requests.
pub fn per_thousand(amount: f64, requests: u64) -> Option<f64> {
    (requests > 0).then(|| amount * 1000.0 / requests as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median([3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median([4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median([]), None);
    }

    #[test]
    fn per_thousand_scales_and_refuses_zero() {
        assert_eq!(per_thousand(50.0, 10_000), Some(5.0));
        assert_eq!(per_thousand(1.0, 0), None);
    }
}
