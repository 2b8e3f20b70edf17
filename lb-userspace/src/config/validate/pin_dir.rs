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
    let text = value.get_ref();
    if text.is_empty() {
        return Ok(None);
    }
    let path = Path::new(text);
    let plain = path
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if !path.is_absolute() || !plain {
        return Err(site.invalid(
            value.span(),
            "global.pin_dir",
            format!("{text:?} must be an absolute path without '.' or '..' on a bpffs (e.g. \"/sys/fs/bpf/lb/eth0\"), or \"\" for no pinning"),
        ));
    }
    Ok(Some(path.to_owned()))
}
