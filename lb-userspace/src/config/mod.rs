//! The configuration: a TOML file read with serde, validated into a model.
//!
//! Data flows one way: `raw` (the file's shape) → `validate` (one
//! validator per section, sharing the field checks of `validate::fields`) →
//! `model` (what the rest of the program sees). Every rejection names the
//! field and its line ([`ConfigError`]).

mod error;
mod model;
mod raw;
mod table_fit;
mod validate;

use std::path::Path;

pub use error::{ConfigError, Location};
pub use model::{
    Backend, Config, Forwarding, Global, HealthCheck, Protocol, Scheduler, Service, Tracking,
    VrrpPair, DEFAULT_API, WEIGHT_RANGE,
};
pub use table_fit::TableFitError;
pub use validate::{default_pin_dir, pin_dir_option, PinDirOptionError};

pub use crate::dataplane::XdpModePreference;

/// Reads and validates the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: file.clone(),
        source,
    })?;
    parse(&text, &file)
}

/// Validates configuration `text`; `file` is the name used in error messages.
pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
    let raw: raw::RawConfig =
        toml::from_str(text).map_err(|e| ConfigError::from_toml(file, text, &e))?;
    validate::validate(raw, &error::ErrorSite { file, text })
}

#[cfg(test)]
mod tests;
