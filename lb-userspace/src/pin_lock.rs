//! The lock that lets one `lb` at a time drive a pinned data path: an
//! exclusive `flock` on the pin directory itself, held for the daemon's
//! life and released by the kernel when it exits, crashes included.
//!
//! The lock is on the directory because bpffs holds no regular files
//! (creating one fails with `EACCES`), while any directory can be flocked.
//! A second daemon is told which PID holds it, read from `/proc/locks`.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

/// Why the pin directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum PinLockError {
    #[error("another lb (PID {}) drives the data path pinned in {}; stop it first", .pid.map_or("unknown".to_owned(), |p| p.to_string()), .path.display())]
    Held { path: PathBuf, pid: Option<u32> },
    #[error("locking the pin directory {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The held lock; dropping it releases it, and removes the directories
/// [`acquire`] created if they are empty by then (a failed start, or a
/// clean stop, leaves nothing behind).
#[derive(Debug)]
pub struct PinLock {
    _directory: File,
    /// Created by [`acquire`], deepest first.
    created: Vec<PathBuf>,
}

impl Drop for PinLock {
    fn drop(&mut self) {
        for directory in &self.created {
            // Fails, and so keeps it, while something is still pinned there.
            let _ = std::fs::remove_dir(directory);
        }
    }
}

/// Creates `path` if missing and locks it, or says who holds it.
pub fn acquire(path: &Path) -> Result<PinLock, PinLockError> {
    let io_error = |source| PinLockError::Io {
        path: path.to_owned(),
        source,
    };
    let created: Vec<PathBuf> = path
        .ancestors()
        .take_while(|ancestor| !ancestor.exists())
        .map(Path::to_path_buf)
        .collect();
    std::fs::create_dir_all(path).map_err(io_error)?;
    let directory = File::open(path).map_err(io_error)?;
    // SAFETY: flock only reads the descriptor, which `directory` keeps open.
    let locked = unsafe { libc::flock(directory.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if locked == 0 {
        return Ok(PinLock {
            _directory: directory,
            created,
        });
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() != Some(libc::EWOULDBLOCK) {
        return Err(io_error(error));
    }
    let pid = directory
        .metadata()
        .ok()
        .and_then(|metadata| flock_holder(metadata.dev(), metadata.ino()));
    Err(PinLockError::Held {
        path: path.to_owned(),
        pid,
    })
}

/// The PID `/proc/locks` names for the flock on the file `inode` of device
/// `dev` (lines like `1: FLOCK  ADVISORY  WRITE 1234 00:1f:5678 0 EOF`).
fn flock_holder(dev: u64, inode: u64) -> Option<u32> {
    let file = format!("{:02x}:{:02x}:{inode}", libc::major(dev), libc::minor(dev));
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [_, "FLOCK", _, _, pid, id, ..] if *id == file => pid.parse().ok(),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_until_the_first_is_dropped() {
        let path = std::env::temp_dir().join(format!("lb-pin-lock-test-{}", std::process::id()));
        let first = acquire(&path).unwrap();
        match acquire(&path) {
            Err(PinLockError::Held { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        // Dropping the lock removed the directory it created.
        assert!(!path.exists());
        let again = acquire(&path);
        assert!(again.is_ok(), "{again:?}");
        drop(again);
        assert!(!path.exists());
    }

    #[test]
    fn a_directory_that_was_there_or_is_not_empty_stays() {
        let path = std::env::temp_dir().join(format!("lb-pin-lock-kept-{}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        drop(acquire(&path).unwrap());
        assert!(path.is_dir(), "it existed before");
        std::fs::remove_dir(&path).unwrap();
        let lock = acquire(&path).unwrap();
        std::fs::create_dir(path.join("pinned")).unwrap();
        drop(lock);
        assert!(path.join("pinned").is_dir(), "not empty: kept");
        std::fs::remove_dir_all(&path).unwrap();
    }
}
