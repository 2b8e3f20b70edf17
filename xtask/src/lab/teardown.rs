//! Removing a lab by name, idempotently: pins, then processes (by PID, only
//! those inside the lab's namespaces), then the lab's bpffs, namespaces,
//! files. Works on the leftovers of a crashed run as well as on a running
//! lab.

use std::fs;
use std::time::Duration;

use super::topology::Node;
use super::{bpffs, namespace, netns, nginx, pin_dir, process, run_dir, validate_prefix, xdp_pass};
use super::{LabError, STOP_GRACE};

/// How long nginx gets for its graceful shutdown.
const NGINX_GRACE: Duration = Duration::from_secs(5);

/// What [`teardown`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TeardownReport {
    /// Pinned `xdp_pass` links removed.
    pub pins_removed: usize,
    /// Processes stopped inside the lab's namespaces.
    pub processes_stopped: usize,
    /// Namespaces deleted.
    pub namespaces_removed: Vec<String>,
}

/// The lab's namespaces that currently exist.
pub(super) fn namespaces_present(prefix: &str) -> Result<Vec<String>, LabError> {
    let all = netns::list()?;
    Ok(Node::ALL
        .iter()
        .chain(&Node::OPTIONAL)
        .map(|&node| namespace(prefix, node))
        .filter(|name| all.contains(name))
        .collect())
}

/// Whether any namespace of the lab named `prefix` exists.
pub fn exists(prefix: &str) -> Result<bool, LabError> {
    validate_prefix(prefix)?;
    Ok(!namespaces_present(prefix)?.is_empty())
}

/// Removes the lab named `prefix`; does nothing for parts already gone.
/// A namespace that still holds processes after SIGKILL is kept (and
/// reported): deleting it would leave those processes running unseen.
pub fn teardown(prefix: &str) -> Result<TeardownReport, LabError> {
    validate_prefix(prefix)?;
    let mut report = TeardownReport::default();
    let mut problems = Vec::new();

    match xdp_pass::remove_pins(&pin_dir(prefix)) {
        Ok(removed) => report.pins_removed = removed,
        Err(error) => problems.push(error.to_string()),
    }

    let present = namespaces_present(prefix)?;
    for ns in &present {
        report.processes_stopped += netns::pids(ns)?.len();
    }
    // nginx first, by the master PID in its pid file, so it shuts down its
    // workers itself; the PID must be inside the web namespace, which guards
    // against a stale pid file naming some other process.
    for web in Node::WEBS {
        let ns = namespace(prefix, web);
        if !present.contains(&ns) {
            continue;
        }
        if let Some(master) = nginx::master_pid(&run_dir(prefix), web) {
            if netns::pids(&ns)?.contains(&master) {
                process::terminate(&[master], NGINX_GRACE);
            }
        }
    }
    for ns in &present {
        let pids = netns::pids(ns)?;
        let left = process::terminate(&pids, STOP_GRACE);
        if !left.is_empty() {
            problems.push(format!("{ns} still holds PIDs {left:?}; namespace kept"));
            continue;
        }
        match netns::delete(ns) {
            Ok(()) => report.namespaces_removed.push(ns.clone()),
            Err(error) => problems.push(error.to_string()),
        }
    }

    // After the processes: an `lb` stopped cleanly has removed its pins.
    if let Err(error) = bpffs::unmount(&run_dir(prefix)) {
        problems.push(error.to_string());
    }

    let dir = run_dir(prefix);
    if problems.is_empty() && dir.exists() {
        if let Err(error) = fs::remove_dir_all(&dir) {
            problems.push(format!("removing {}: {error}", dir.display()));
        }
    }
    if problems.is_empty() {
        Ok(report)
    } else {
        Err(LabError::Teardown(problems))
    }
}
