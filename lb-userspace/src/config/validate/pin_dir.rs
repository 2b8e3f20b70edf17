//! `global.pin_dir`: the bpffs directory where the data path (the XDP link
//! and the flow table) is pinned so that it outlives `lb`.

use std::path::{Component, Path, PathBuf};

use toml::Spanned;

use crate::config::error::{ConfigError, ErrorSite};

/// Where the data path of `interface` is pinned unless configured.
pub fn default_pin_dir(interface: &str) -> PathBuf {
    Path::new("/sys/fs/bpf/lb").join(interface)
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
    check(Path::new(value.get_ref()))
        .map_err(|problem| site.invalid(value.span(), "global.pin_dir", problem))
}

/// `--pin-dir` of `lb run` that breaks the rule of `global.pin_dir`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--pin-dir: {problem}")]
pub struct PinDirOptionError {
    problem: String,
}

/// `--pin-dir` on the command line, which replaces `global.pin_dir`: the
/// same rule, the same meaning of "" (no pinning).
pub fn pin_dir_option(value: &Path) -> Result<Option<PathBuf>, PinDirOptionError> {
    check(value).map_err(|problem| PinDirOptionError { problem })
}

/// The rule of a pin directory: "" (pinning off), or an absolute path
/// without `.` or `..`; the problem otherwise.
fn check(path: &Path) -> Result<Option<PathBuf>, String> {
    if path.as_os_str().is_empty() {
        return Ok(None);
    }
    let plain = path
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if !path.is_absolute() || !plain {
        return Err(format!("{:?} must be an absolute path without '.' or '..' on a bpffs (e.g. \"/sys/fs/bpf/lb/eth0\"), or \"\" for no pinning", path.as_os_str()));
    }
    Ok(Some(path.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_option_follows_the_rule_of_the_file() {
        assert_eq!(
            pin_dir_option(Path::new("/sys/fs/bpf/lb/eth0")),
            Ok(Some(PathBuf::from("/sys/fs/bpf/lb/eth0")))
        );
        assert_eq!(pin_dir_option(Path::new("")), Ok(None));
        for bad in ["relative/dir", "/sys/fs/bpf/lb/../../../etc", "./lb"] {
            let error = pin_dir_option(Path::new(bad)).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("--pin-dir: {bad:?} must be an absolute path without '.' or '..' on a bpffs (e.g. \"/sys/fs/bpf/lb/eth0\"), or \"\" for no pinning")
            );
        }
    }
}
