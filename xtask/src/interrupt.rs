//! Ctrl-C and SIGTERM: a flag that long-running commands poll, so that they
//! stop their processes and remove the lab before exiting.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Installs the handler. Child processes in xtask's process group receive the
/// terminal's Ctrl-C themselves; those in their own group are stopped by
/// their owners.
pub fn install() -> Result<(), ctrlc::Error> {
    ctrlc::set_handler(|| {
        if !REQUESTED.swap(true, Ordering::SeqCst) {
            eprintln!("\nxtask: interrupted, cleaning up (this takes a few seconds)");
        }
    })
}

/// Whether an interrupt arrived.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Sleeps for `duration` (forever if `None`) or until an interrupt, in short
/// steps, while `keep_going` returns true. Returns whether the full duration
/// passed.
pub fn sleep_while(duration: Option<Duration>, mut keep_going: impl FnMut() -> bool) -> bool {
    let deadline = duration.map(|duration| Instant::now() + duration);
    loop {
        if requested() || !keep_going() {
            return false;
        }
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return true;
        }
        sleep(Duration::from_millis(100));
    }
}
