//! `global.pin_dir` and `lb run --pin-dir`: the bpffs directory where the
//! data path (the XDP link and the flow table) is pinned so that it outlives
//! `lb`. One rule for both: an absolute path with no `.` or `..` component.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use toml::Spanned;

use crate::config::error::{quote, ConfigError, ErrorSite};

/// Where the data path of `interface` is pinned unless configured. The
/// validated interface name is one plain path component.
pub fn default_pin_dir(interface: &str) -> PathBuf {
    Path::new("/sys/fs/bpf/lb").join(interface)
}

/// `lb run --pin-dir DIR`: `DIR` if it is a pin directory the file would
/// accept (an absolute path without `.` or `..` components or NUL bytes).
pub fn validate_pin_dir(path: &Path) -> Result<PathBuf, ConfigError> {
    check(path).map_err(|problem| ConfigError::Argument {
        argument: "--pin-dir",
        problem,
    })
}

/// The pin directory: `value` if set (an empty string turns pinning off),
/// else the default for `interface`.
pub(super) fn validate(
    value: Option<&Spanned<String>>,
    interface: &str,
    site: &ErrorSite<'_>,
) -> Result<Option<PathBuf>, ConfigError> {
    let Some(value) = value else {
        return Ok(Some(default_pin_dir(interface)));
    };
    if value.get_ref().is_empty() {
        return Ok(None);
    }
    check(Path::new(value.get_ref()))
        .map(Some)
        .map_err(|problem| {
            site.invalid(
                value.span(),
                "global.pin_dir",
                format!("{problem}, or \"\" for no pinning"),
            )
        })
}

/// `path` if it is absolute and every component is a plain name, else what
/// is wrong with it.
fn check(path: &Path) -> Result<PathBuf, String> {
    let bytes = path.as_os_str().as_bytes();
    let plain = bytes
        .split(|&b| b == b'/')
        .all(|component| component != b"." && component != b"..");
    if path.is_absolute() && plain && !bytes.contains(&0) {
        Ok(path.to_owned())
    } else {
        Err(format!(
            "{} must be an absolute path without '.' or '..' on a bpffs (e.g. \"/sys/fs/bpf/lb/eth0\")",
            quote(&path.to_string_lossy())
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_pin_dir_follows_the_file_rule() {
        assert_eq!(
            validate_pin_dir(Path::new("/run/lb/bpf/node1")).unwrap(),
            PathBuf::from("/run/lb/bpf/node1")
        );
        for bad in [
            "bpf/lb",
            "/sys/fs/bpf/../lb",
            "/sys/fs/bpf/./lb",
            "",
            "/sys/fs/bpf/a\0b",
        ] {
            let error = validate_pin_dir(Path::new(bad)).expect_err(bad);
            assert!(
                matches!(
                    error,
                    ConfigError::Argument {
                        argument: "--pin-dir",
                        ..
                    }
                ),
                "{error}"
            );
        }
        assert_eq!(
            validate_pin_dir(Path::new("lb")).unwrap_err().to_string(),
            "--pin-dir: \"lb\" must be an absolute path without '.' or '..' on a bpffs (e.g. \"/sys/fs/bpf/lb/eth0\")"
        );
    }
}
