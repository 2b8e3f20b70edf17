//! The configuration file's shape as serde reads it, before validation.
//!
//! Values that need checking keep their byte span (`Spanned`) so validation
//! errors can point at the line; numbers are read as `i64` so that an
//! out-of-range value gets our message rather than a bare type error.

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub global: RawGlobal,
    #[serde(default, rename = "service")]
    pub services: Vec<RawService>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGlobal {
    pub interface: Spanned<String>,
    pub flow_table_size: Option<Spanned<i64>>,
    pub maglev_table_size: Option<Spanned<i64>>,
    pub max_services: Option<Spanned<i64>>,
    pub max_backends: Option<Spanned<i64>>,
    pub xdp_mode: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    pub name: Spanned<String>,
    pub vip: Spanned<String>,
    pub port: Spanned<i64>,
    pub protocol: Spanned<String>,
    pub scheduler: Option<Spanned<String>>,
    pub forwarding: Option<Spanned<String>>,
    #[serde(default, rename = "backend")]
    pub backends: Vec<RawBackend>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackend {
    pub name: Spanned<String>,
    pub address: Spanned<String>,
    pub weight: Option<Spanned<i64>>,
}
