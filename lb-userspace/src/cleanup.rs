//! `lb cleanup`: removes the data path a stopped `lb` left pinned in its
//! pin directory (see [`crate::dataplane::PinDir`]): the XDP link, whose
//! removal detaches the program, and the flow and backends tables. It holds
//! the pin lock ([`crate::pin_lock`]) meanwhile, so it never removes the
//! pins of a running `lb`, nor races one starting.
//!
//! What is not pinned stays: the VIP a crashed VRRP master left on its
//! interface, the routes a crashed BGP node left in its table.

use std::ffi::OsString;
use std::path::Path;

use crate::dataplane::{PinDir, PinningError};
use crate::pin_lock::{self, PinLockError};

/// Why the pins could not be removed.
#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error(transparent)]
    Locked(#[from] PinLockError),
    #[error(transparent)]
    Pins(#[from] PinningError),
}

/// What [`clean_up`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cleanup {
    /// No pin directory: nothing to remove.
    NoDirectory,
    /// The directory and these pins in it were removed (none: it was empty).
    Removed(Vec<OsString>),
}

/// Removes the pins in `path` and the directory, unless an `lb` holds its
/// lock.
pub fn clean_up(path: &Path) -> Result<Cleanup, CleanupError> {
    if !path.exists() {
        return Ok(Cleanup::NoDirectory);
    }
    let _lock = pin_lock::acquire(path)?;
    Ok(Cleanup::Removed(PinDir::open(path)?.remove()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absent_directory_is_nothing_to_remove() {
        let path = std::env::temp_dir().join(format!("lb-cleanup-absent-{}", std::process::id()));
        assert_eq!(clean_up(&path).unwrap(), Cleanup::NoDirectory);
        assert!(!path.exists(), "not created");
    }

    #[test]
    fn a_held_lock_is_refused_with_the_holder() {
        let path = std::env::temp_dir().join(format!("lb-cleanup-held-{}", std::process::id()));
        let lock = pin_lock::acquire(&path).unwrap();
        let error = clean_up(&path).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with(&format!("another lb (PID {}) drives", std::process::id())),
            "{error}"
        );
        drop(lock);
        assert!(!path.exists(), "the lock removed the directory it made");
    }

    #[test]
    fn a_directory_off_bpffs_is_left_alone() {
        let path = std::env::temp_dir().join(format!("lb-cleanup-plain-{}", std::process::id()));
        std::fs::create_dir_all(path.join("kept")).unwrap();
        let error = clean_up(&path).unwrap_err();
        assert!(
            matches!(error, CleanupError::Pins(PinningError::NotBpffs(_))),
            "{error}"
        );
        assert!(path.join("kept").is_dir());
        std::fs::remove_dir_all(&path).unwrap();
    }
}
