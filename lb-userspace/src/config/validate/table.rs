//! Whether a service's backends can be laid out in its table of M slots,
//! whichever of them are up: the one rule for the file and for weight
//! changes at run time.

use lb_common::maglev::min_table_size;
use lb_common::ring::{round_robin_ring, RingError};

use crate::config::model::Scheduler;

/// Why a service's weights do not fit its table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableTooSmall {
    #[error("Maglev needs at least {needed} slots for these weights (ceil(sum / smallest weight) + backends - 2) so that every backend keeps one whichever backends are up")]
    Maglev { needed: u64 },
    #[error(transparent)]
    RoundRobin(RingError),
}

/// Checks that a service of `scheduler` whose backends have `weights` gets a
/// table in `table_size` slots in which every backend has a slot, for the
/// whole set and for every subset of it (the backends that are up).
///
/// Maglev: `table_size` is at least [`min_table_size`], which is proven and
/// property-tested in `lb_common::maglev`. Round-robin: the ring of the whole
/// set fits; a subset's ring is never longer (its weights' gcd is a multiple
/// of the whole set's).
pub fn table_fits(
    scheduler: Scheduler,
    weights: &[u32],
    table_size: u32,
) -> Result<(), TableTooSmall> {
    match scheduler {
        Scheduler::Maglev => {
            let needed = min_table_size(weights);
            if needed > u64::from(table_size) {
                return Err(TableTooSmall::Maglev { needed });
            }
        }
        Scheduler::RoundRobin => {
            let weighted: Vec<(u32, u32)> = (0..).zip(weights.iter().copied()).collect();
            round_robin_ring(&weighted, table_size as usize).map_err(TableTooSmall::RoundRobin)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maglev_needs_the_proven_bound() {
        assert_eq!(
            table_fits(Scheduler::Maglev, &[51, 68, 31], 5),
            Err(TableTooSmall::Maglev { needed: 6 })
        );
        assert_eq!(table_fits(Scheduler::Maglev, &[51, 68, 31], 7), Ok(()));
        assert_eq!(
            table_fits(Scheduler::Maglev, &[1; 13], 13),
            Err(TableTooSmall::Maglev { needed: 24 })
        );
    }

    #[test]
    fn round_robin_needs_room_for_the_reduced_ring() {
        assert_eq!(table_fits(Scheduler::RoundRobin, &[40, 20], 3), Ok(()));
        assert!(matches!(
            table_fits(Scheduler::RoundRobin, &[2, 1], 2),
            Err(TableTooSmall::RoundRobin(RingError::TooLong { len: 3, .. }))
        ));
    }
}
