//! Reading the file: only a regular file of at most 1 MiB is read, and
//! nothing waits on a device or a FIFO.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::config::{load, ConfigError};

/// A directory of this test process, removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("lb-config-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        ScratchDir(path)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rendered(path: &Path) -> String {
    load(path).expect_err("should be rejected").to_string()
}

#[test]
fn devices_and_directories_are_not_read() {
    assert_eq!(
        rendered(Path::new("/dev/zero")),
        "/dev/zero: not a regular file (a configuration is a regular file of at most 1 MiB)"
    );
    let dir = ScratchDir::new("dir");
    assert!(matches!(load(&dir.0), Err(ConfigError::NotAFile { .. })));
}

#[test]
fn a_fifo_is_rejected_without_waiting_for_a_writer() {
    let dir = ScratchDir::new("fifo");
    let fifo = dir.0.join("lb.toml");
    let name = CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: `name` is a NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
    // Without O_NONBLOCK the open would block this test forever.
    assert!(matches!(load(&fifo), Err(ConfigError::NotAFile { .. })));
}

#[test]
fn a_file_over_1_mib_is_rejected_and_one_of_1_mib_is_read() {
    let dir = ScratchDir::new("size");
    let path = dir.0.join("lb.toml");
    // A comment line fills the file up to exactly 1 MiB.
    let config = "[global]\ninterface = \"eth0\"\n#";
    let mut text = config.to_owned() + &"x".repeat((1 << 20) - config.len() - 1) + "\n";
    std::fs::write(&path, &text).unwrap();
    assert!(load(&path).is_ok());
    text.push('\n');
    std::fs::write(&path, &text).unwrap();
    assert_eq!(
        rendered(&path),
        format!(
            "{}: larger than 1 MiB (1048576 bytes), the most a configuration file may hold",
            path.display()
        )
    );
}

#[test]
fn a_file_that_is_not_utf8_cannot_be_read() {
    let dir = ScratchDir::new("utf8");
    let path = dir.0.join("lb.toml");
    std::fs::write(&path, b"[global]\ninterface = \"\xff\"\n").unwrap();
    assert!(matches!(load(&path), Err(ConfigError::Read { .. })));
}
