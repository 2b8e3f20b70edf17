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
    pub vrrp: Option<Spanned<RawVrrp>>,
    pub bgp: Option<Spanned<RawBgp>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGlobal {
    pub interface: Spanned<String>,
    pub server_interface: Option<Spanned<String>>,
    pub flow_table_size: Option<Spanned<i64>>,
    pub maglev_table_size: Option<Spanned<i64>>,
    pub max_services: Option<Spanned<i64>>,
    pub max_backends: Option<Spanned<i64>>,
    pub xdp_mode: Option<Spanned<String>>,
    pub health_source: Option<Spanned<String>>,
    pub health_interface: Option<Spanned<String>>,
    pub api: Option<Spanned<String>>,
    pub pin_dir: Option<Spanned<String>>,
    // flood protection
    pub rate_limit_table_size: Option<Spanned<i64>>,
    pub flow_insert_limit_per_cpu: Option<Spanned<i64>>,
    // source policies
    pub allow_table_size: Option<Spanned<i64>>,
    pub vip_icmp_echo: Option<Spanned<String>>,
    // hooks
    pub notify_backend: Option<Spanned<String>>,
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
    pub on_down: Option<Spanned<String>>,
    // source policies
    pub allow: Option<Spanned<Vec<Spanned<String>>>>,
    pub new_flows_per_second_per_source: Option<Spanned<i64>>,
    pub new_flows_burst_per_source: Option<Spanned<i64>>,
    pub health: Option<Spanned<RawHealth>>,
    #[serde(default, rename = "backend")]
    pub backends: Vec<RawBackend>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackend {
    pub name: Spanned<String>,
    pub address: Spanned<String>,
    /// `forwarding = "nat"` only: the port the backend listens on.
    pub port: Option<Spanned<i64>>,
    pub weight: Option<Spanned<i64>>,
    pub initial: Option<Spanned<String>>,
    pub backup: Option<Spanned<bool>>,
    /// Overrides the service's `mysql` check's `expect_role` for this backend.
    pub expect_role: Option<Spanned<String>>,
}

/// `[service.health]`: durations are strings like `"2s"` or `"500ms"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
    pub port: Option<Spanned<i64>>,
    pub path: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    pub expect_status: Option<Spanned<String>>,
    pub expect_body: Option<Spanned<String>>,
    pub interval: Option<Spanned<String>>,
    pub fastinter: Option<Spanned<String>>,
    pub downinter: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub rise: Option<Spanned<i64>>,
    pub fall: Option<Spanned<i64>>,
    // type = "exec"
    pub command: Option<Spanned<String>>,
    // type = "mysql"
    pub user: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    pub database: Option<Spanned<String>>,
    pub expect_role: Option<Spanned<String>>,
    pub max_lag: Option<Spanned<String>>,
    // passive health
    pub observe: Option<Spanned<String>>,
    pub error_limit: Option<Spanned<i64>>,
    pub handshake_timeout: Option<Spanned<String>>,
}

/// `[vrrp]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVrrp {
    pub interface: Option<Spanned<String>>,
    pub vrid: Spanned<i64>,
    pub priority: Spanned<i64>,
    pub advert_interval: Option<Spanned<String>>,
    pub virtual_addresses: Option<Spanned<Vec<Spanned<String>>>>,
    pub unicast_peers: Option<Spanned<Vec<Spanned<String>>>>,
    pub primary_address: Option<Spanned<String>>,
    pub gateway_address: Option<Spanned<String>>,
    pub preempt: Option<Spanned<bool>>,
    pub preempt_delay: Option<Spanned<String>>,
    pub garp_count: Option<Spanned<i64>>,
    pub garp_interval: Option<Spanned<String>>,
    pub garp_refresh: Option<Spanned<String>>,
    pub notify_master: Option<Spanned<String>>,
    pub notify_backup: Option<Spanned<String>>,
    pub notify_fault: Option<Spanned<String>>,
    pub track_xdp_weight: Option<Spanned<i64>>,
    pub track_service_weight: Option<Spanned<i64>>,
    pub track_services: Option<Spanned<Vec<Spanned<String>>>>,
}

/// `[bgp]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBgp {
    pub table: Option<Spanned<i64>>,
    pub announce: Option<Spanned<Vec<Spanned<String>>>>,
    pub withdraw_grace: Option<Spanned<String>>,
}
