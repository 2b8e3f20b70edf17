//! The configuration: a TOML file read with serde, validated into a model.
//!
//! Data flows one way: `raw` (the file's shape) → `validate` (one
//! validator per section, sharing the field checks of `validate::fields`) →
//! `model` (what the rest of the program sees). Every rejection names the
//! field and its line ([`ConfigError`]). `reloadable` says which changes a
//! running `lb` can take from a reloaded file.

mod error;
mod model;
mod raw;
mod reloadable;
mod table_fit;
mod validate;

use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use error::MAX_FILE_BYTES;
pub use error::{ConfigError, Location};
pub use model::{
    Backend, BgpNode, Config, Forwarding, Global, HealthCheck, OnDown, PassiveHealth, Protocol,
    Scheduler, Service, SourcePrefix, SourceRateLimit, Tracking, VrrpPair, DEFAULT_API,
    DEFAULT_FLOW_INSERT_LIMIT_PER_CPU, NEW_FLOWS_BURST_RANGE, NEW_FLOWS_PER_SECOND_RANGE,
    WEIGHT_RANGE,
};
pub use reloadable::{check_reloadable, RestartRequired, ServiceChanges};
pub use table_fit::TableFitError;
pub use validate::{default_pin_dir, validate_pin_dir};

pub use crate::dataplane::{VipIcmpEcho, XdpModePreference};

/// A validated configuration and the hash of the file it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    pub config: Config,
    pub hash: ContentHash,
}

/// FNV-1a (64 bits) of a configuration file's bytes, shown as 16 hex
/// digits: `lb check-config` prints a file's, `lb status` the running one's,
/// so an operator sees which file a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentHash(pub u64);

impl ContentHash {
    pub fn of(bytes: &[u8]) -> Self {
        const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        ContentHash(bytes.iter().fold(OFFSET_BASIS, |hash, &byte| {
            (hash ^ u64::from(byte)).wrapping_mul(PRIME)
        }))
    }
}

impl std::fmt::Display for ContentHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Reads and validates the configuration file at `path`: a regular file of
/// at most 1 MiB of UTF-8. The one validator of `lb check-config`, `lb run`
/// and every reload.
pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
    let file = path.display().to_string();
    let text = read_bounded(path, &file)?;
    Ok(ConfigFile {
        config: parse(&text, &file)?,
        hash: ContentHash::of(text.as_bytes()),
    })
}

/// The text of the regular file at `path`, read without waiting on a FIFO
/// and without reading more than [`MAX_FILE_BYTES`] + 1 bytes.
fn read_bounded(path: &Path, file: &str) -> Result<String, ConfigError> {
    let read_error = |source| ConfigError::Read {
        file: file.to_owned(),
        source,
    };
    // O_NONBLOCK: opening a FIFO would otherwise wait for a writer. It does
    // nothing to the reads of a regular file, the only kind read below.
    let handle = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(read_error)?;
    let metadata = handle.metadata().map_err(read_error)?;
    if !metadata.is_file() {
        return Err(ConfigError::NotAFile {
            file: file.to_owned(),
        });
    }
    let too_large = || ConfigError::TooLarge {
        file: file.to_owned(),
    };
    if metadata.len() > MAX_FILE_BYTES {
        return Err(too_large());
    }
    // The file may grow after the size was read: read one byte past the limit.
    let mut bytes = Vec::new();
    handle
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large());
    }
    String::from_utf8(bytes)
        .map_err(|error| read_error(io::Error::new(io::ErrorKind::InvalidData, error)))
}

/// Validates configuration `text`; `file` is the name used in error messages.
pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
    let raw: raw::RawConfig =
        toml::from_str(text).map_err(|e| ConfigError::from_toml(file, text, &e))?;
    validate::validate(raw, &error::ErrorSite { file, text })
}

#[cfg(test)]
mod tests;
