//! Whether a service's weights fit its scheduling table: the one check the
//! configuration file and every admin action run (the rules themselves are
//! in `lb_common`, next to the builders they describe).

use std::fmt;

use lb_common::maglev::{self, TableTooSmall};
use lb_common::ring::{self, RingError};

use super::model::Scheduler;

/// Weights that do not fit `global.maglev_table_size`; the message names
/// the limit and what to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFitError {
    Maglev(TableTooSmall),
    Ring(RingError),
}

impl fmt::Display for TableFitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableFitError::Maglev(error) => write!(
                f,
                "global.maglev_table_size = {} is too small for these weights under Maglev: \
                 a backend of weight {} serving beside backends of weight up to {} can get \
                 no slot ({} slots needed); raise it or bring the weights closer together",
                error.table_size, error.lightest, error.heaviest, error.slots_needed
            ),
            TableFitError::Ring(RingError::TooLong { len, max_len }) => write!(
                f,
                "global.maglev_table_size = {max_len} is too small for these weights under \
                 round-robin: the ring needs {len} slots (the sum of the weights divided by \
                 their greatest common divisor); raise it or use weights with a larger \
                 common divisor"
            ),
        }
    }
}

impl std::error::Error for TableFitError {}

impl Scheduler {
    /// Whether the backends of a service of this scheduler, with `weights`,
    /// fit a table of `table_size` slots whichever of them serve: under
    /// Maglev no backend can be left without a slot
    /// ([`maglev::check_weights`]), under round-robin the ring is at most
    /// `table_size` long ([`ring::check_weights`]).
    pub fn check_weights(self, weights: &[u32], table_size: u32) -> Result<(), TableFitError> {
        match self {
            Scheduler::Maglev | Scheduler::Source => {
                maglev::check_weights(weights, table_size).map_err(TableFitError::Maglev)
            }
            Scheduler::RoundRobin => {
                ring::check_weights(weights, table_size as usize).map_err(TableFitError::Ring)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_scheduler_names_the_limit() {
        let error = Scheduler::Maglev
            .check_weights(&[51, 68, 31], 5)
            .unwrap_err();
        assert!(matches!(error, TableFitError::Maglev(_)));
        assert!(
            error.to_string().starts_with(
                "global.maglev_table_size = 5 is too small for these weights under Maglev: "
            ),
            "{error}"
        );
        assert_eq!(
            Scheduler::RoundRobin.check_weights(&[51, 68, 31], 150),
            Ok(())
        );
        let error = Scheduler::RoundRobin
            .check_weights(&[51, 68, 31], 149)
            .unwrap_err();
        assert_eq!(
            error,
            TableFitError::Ring(RingError::TooLong {
                len: 150,
                max_len: 149
            })
        );
        assert!(
            error.to_string().starts_with(
                "global.maglev_table_size = 149 is too small for these weights under round-robin: "
            ),
            "{error}"
        );
    }
}
