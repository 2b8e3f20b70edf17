//! The gap an event makes in the request streams: the longest time between
//! the starts of two successive successful requests around it. With no
//! request to measure from, there is no gap to report: that is an error,
//! never a zero.

use std::time::{Duration, SystemTime};

use thiserror::Error;

/// Why no gap could be measured around an event.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum GapError {
    /// No successful request started at or before the event.
    #[error("no successful request started before the event: nothing to measure the gap from")]
    NoneBefore,
    /// The last successful request started less than `window` after the
    /// event: the streams stopped being answered, or ended too early.
    #[error("no successful request started {window:?} or more after the event: the streams were not answered again, or ended too soon")]
    NoneAfter {
        /// How long after the event the gap is looked for.
        window: Duration,
    },
}

/// The longest interval between two successive starts in `ok_starts`
/// (sorted: the start times of successful requests) that ends after `at`
/// and begins at most `window` after it. Needs a start at or before `at`
/// and one at or after `at + window`, so that every interval overlapping
/// the window is closed.
pub fn gap_around(
    ok_starts: &[SystemTime],
    at: SystemTime,
    window: Duration,
) -> Result<Duration, GapError> {
    let window_end = at + window;
    if ok_starts.first().is_none_or(|&first| first > at) {
        return Err(GapError::NoneBefore);
    }
    if ok_starts.last().is_none_or(|&last| last < window_end) {
        return Err(GapError::NoneAfter { window });
    }
    Ok(ok_starts
        .windows(2)
        .filter(|pair| pair[1] >= at && pair[0] <= window_end)
        .map(|pair| pair[1].duration_since(pair[0]).unwrap_or_default())
        .max()
        .expect("a start before and one after the window make one interval at least"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(3);

    fn at(millis: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(millis)
    }

    #[test]
    fn the_longest_interval_overlapping_the_window_is_the_gap() {
        // A 2 s stall right after the event at 1000; a longer one after
        // the window (ends at 4000) does not count.
        let starts = [
            at(0),
            at(500),
            at(900),
            at(2900),
            at(3000),
            at(4200),
            at(9000),
        ];
        assert_eq!(
            gap_around(&starts, at(1000), WINDOW),
            Ok(Duration::from_millis(2000))
        );
    }

    #[test]
    fn an_interval_spanning_the_whole_window_counts() {
        let starts = [at(0), at(5000)];
        assert_eq!(
            gap_around(&starts, at(1000), WINDOW),
            Ok(Duration::from_millis(5000))
        );
    }

    #[test]
    fn no_samples_is_an_error_not_zero() {
        assert_eq!(gap_around(&[], at(1000), WINDOW), Err(GapError::NoneBefore));
        assert_eq!(
            gap_around(&[at(2000), at(5000)], at(1000), WINDOW),
            Err(GapError::NoneBefore)
        );
        assert_eq!(
            gap_around(&[at(0), at(900), at(1500)], at(1000), WINDOW),
            Err(GapError::NoneAfter { window: WINDOW })
        );
    }
}
