//! The lab's own bpffs, where each `lb` pins its data path (`lb run
//! --pin-dir`). `ip netns exec` remounts `/sys`, so `/sys/fs/bpf` is not a
//! bpffs inside the lab's namespaces; a bpffs mounted under the lab's run
//! directory in the root mount namespace, before `lb` starts, is seen by
//! every `lb` of the lab, and each one gets its own directory on it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::LabError;
use crate::cmd;

/// Where the lab's bpffs is mounted: `bpf` in its run directory.
pub(super) fn mount_point(run_dir: &Path) -> PathBuf {
    run_dir.join("bpf")
}

/// Mounts a fresh bpffs at [`mount_point`].
pub(super) fn mount(run_dir: &Path) -> Result<(), LabError> {
    let point = mount_point(run_dir);
    fs::create_dir_all(&point).map_err(|error| LabError::Io {
        context: format!("creating {}", point.display()),
        error,
    })?;
    cmd::run_quiet(Command::new("mount").args(["-t", "bpf", "bpf"]).arg(&point))?;
    Ok(())
}

/// Unmounts the bpffs at [`mount_point`] if it is mounted, releasing every
/// pin on it (a program pinned there leaves its interface once no process
/// holds it any more). Returns whether it was mounted.
pub(super) fn unmount(run_dir: &Path) -> Result<bool, LabError> {
    let point = mount_point(run_dir);
    if !is_mount_point(&point)? {
        return Ok(false);
    }
    cmd::run_quiet(Command::new("umount").arg(&point))?;
    Ok(true)
}

/// Whether `path` is a mount point in this mount namespace.
fn is_mount_point(path: &Path) -> Result<bool, LabError> {
    let mounts = fs::read_to_string("/proc/self/mountinfo").map_err(|error| LabError::Io {
        context: "reading /proc/self/mountinfo".to_owned(),
        error,
    })?;
    Ok(mounts_contain(&mounts, path))
}

/// Whether `mountinfo` (the text of `/proc/self/mountinfo`) lists `path` as
/// a mount point (its fifth field).
fn mounts_contain(mountinfo: &str, path: &Path) -> bool {
    let wanted = path.to_string_lossy();
    mountinfo
        .lines()
        .filter_map(|line| line.split_whitespace().nth(4))
        .any(|point| point == wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_the_fifth_field() {
        let mountinfo = "22 1 0:21 / /sys rw - sysfs sysfs rw\n\
                         95 25 0:45 / /run/lbt-lab/bpf rw - bpf bpf rw\n";
        assert!(mounts_contain(mountinfo, Path::new("/run/lbt-lab/bpf")));
        assert!(!mounts_contain(mountinfo, Path::new("/run/lbt-lab")));
        assert!(!mounts_contain(mountinfo, Path::new("/run/other-lab/bpf")));
        assert_eq!(
            mount_point(Path::new("/run/lbt-lab")),
            Path::new("/run/lbt-lab/bpf")
        );
    }
}
