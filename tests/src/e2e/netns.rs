//! Running code of the test process inside a lab namespace: a thread that
//! enters it with `setns`, for what no command does (raw packets).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::thread;

use xtask::lab::{Lab, Node};

/// Runs `work` on a thread inside `node`'s network namespace and returns
/// its result; the rest of the process stays where it is.
///
/// # Panics
/// If the namespace cannot be entered, or `work` panics.
pub fn in_namespace<T: Send>(lab: &Lab, node: Node, work: impl FnOnce() -> T + Send) -> T {
    let namespace = PathBuf::from("/run/netns").join(lab.namespace(node));
    thread::scope(|scope| {
        scope
            .spawn(|| {
                let file = File::open(&namespace)
                    .unwrap_or_else(|error| panic!("opening {}: {error}", namespace.display()));
                // SAFETY: setns only reads the descriptor, which `file` keeps
                // open for the call, and moves only this thread (which ends
                // with `work`) into the namespace.
                let result = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(result, 0, "setns: {}", std::io::Error::last_os_error());
                work()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
