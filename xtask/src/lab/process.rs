//! Processes the lab starts inside its namespaces, stopped by PID.

use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cmd;

/// How long a process gets to exit after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

const POLL: Duration = Duration::from_millis(50);

/// A background process started by the lab, with stdout and stderr going to
/// a log file. Dropping it stops it (SIGTERM, then SIGKILL after
/// [`STOP_GRACE`]).
#[derive(Debug)]
pub struct NsProcess {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl NsProcess {
    /// Starts `command` in its own process group (so a Ctrl-C in the terminal
    /// reaches only xtask, which then stops it in order), logging to `log`.
    pub fn spawn(name: &str, command: &mut Command, log: &Path) -> io::Result<Self> {
        let log_file = File::create(log)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .process_group(0)
            .spawn()
            .map_err(|error| {
                io::Error::new(
                    error.kind(),
                    format!("starting `{}`: {error}", cmd::describe(command)),
                )
            })?;
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
        })
    }

    /// The process's name, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process ID.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Where its output goes.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Its exit status if it has exited, without waiting.
    pub fn try_exit_status(&mut self) -> io::Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(child) => child.try_wait(),
            None => Ok(None),
        }
    }

    /// Stops it: SIGTERM, wait up to [`STOP_GRACE`], then SIGKILL. Returns how
    /// it exited.
    pub fn stop(mut self) -> io::Result<ExitStatus> {
        self.stop_child()
    }

    fn stop_child(&mut self) -> io::Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            return Err(io::Error::other("already stopped"));
        };
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        let pid = Pid::from_raw(i32::try_from(child.id()).map_err(io::Error::other)?);
        // ESRCH means it exited between try_wait and here; wait() reaps it below.
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            sleep(POLL);
        }
        let _ = kill(pid, Signal::SIGKILL);
        child.wait()
    }
}

impl Drop for NsProcess {
    fn drop(&mut self) {
        if self.child.is_some() {
            if let Err(error) = self.stop_child() {
                eprintln!("lab: could not stop {}: {error}", self.name);
            }
        }
    }
}

/// Whether `pid` is a live process (zombies count as gone).
pub(super) fn is_running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

/// Stops processes we did not start as children (nginx masters, leftovers of
/// a crashed run): SIGTERM to all, wait up to `grace`, SIGKILL what is left
/// and wait briefly again. Returns the PIDs still running afterwards.
pub(super) fn terminate(pids: &[i32], grace: Duration) -> Vec<i32> {
    signal_all(pids, Signal::SIGTERM);
    let left = wait_gone(pids, grace);
    if left.is_empty() {
        return left;
    }
    kill_all(&left)
}

/// SIGKILL to every one of `pids` at once, then waits briefly until they
/// are gone. Returns the PIDs still running afterwards.
pub(super) fn kill_all(pids: &[i32]) -> Vec<i32> {
    signal_all(pids, Signal::SIGKILL);
    wait_gone(pids, Duration::from_secs(2))
}

/// The parent PID of `pid`, if it is running.
pub(super) fn parent(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the parenthesised command name: the state, then the parent PID.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn signal_all(pids: &[i32], signal: Signal) {
    for &pid in pids {
        // ESRCH: already gone, which is what we want.
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

fn wait_gone(pids: &[i32], timeout: Duration) -> Vec<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        let left: Vec<i32> = pids
            .iter()
            .copied()
            .filter(|&pid| is_running(pid))
            .collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_ends_a_running_process_and_reports_the_signal() {
        use std::os::unix::process::ExitStatusExt as _;
        let dir = std::env::temp_dir().join(format!("xtask-process-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut process =
            NsProcess::spawn("sleeper", Command::new("sleep").arg("30"), &dir.join("log")).unwrap();
        let pid = i32::try_from(process.pid().unwrap()).unwrap();
        assert!(is_running(pid));
        assert_eq!(process.try_exit_status().unwrap(), None);
        let status = process.stop().unwrap();
        assert_eq!(status.signal(), Some(Signal::SIGTERM as i32));
        assert!(!is_running(pid));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn our_own_process_is_running() {
        assert!(is_running(i32::try_from(std::process::id()).unwrap()));
    }

    #[test]
    fn the_parent_of_our_own_process_is_our_parent() {
        let own = i32::try_from(std::process::id()).unwrap();
        let ours = i32::try_from(std::os::unix::process::parent_id()).unwrap();
        assert_eq!(parent(own), Some(ours));
    }
}
