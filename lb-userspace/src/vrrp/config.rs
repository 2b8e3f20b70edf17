//! The validated settings of one VRRP instance: RFC 9568 §6.1 parameters plus
//! keepalived's knobs (preempt delay, gratuitous ARP repeats, notify hooks).
//!
//! This is a model struct, not a file format: the configuration module fills it
//! from TOML and calls [`VrrpConfig::validate`], which names the offending field.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::Duration;

/// One centisecond, the unit of the advertisement interval on the wire.
pub const CENTISECOND: Duration = Duration::from_millis(10);

/// The largest advertisement interval the 12-bit wire field carries: 40.95 s.
pub const MAX_ADVERT_INTERVAL_CENTIS: u16 = 0x0fff;

/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
const MAX_INTERFACE_NAME_LEN: usize = 15;

/// Settings of one virtual router (one VRID on one interface).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpConfig {
    /// Interface the adverts are sent and received on and the VIPs are added to.
    pub interface: String,
    /// Virtual Router Identifier, 1-255.
    pub vrid: u8,
    /// Priority, 1-255. 255 marks the address owner: it becomes master at once
    /// on startup instead of waiting Master_Down_Interval (RFC 9568 §6.4.1).
    pub priority: u8,
    /// Advertisement_Interval: a whole number of centiseconds, 10 ms to 40.95 s.
    pub advert_interval: Duration,
    /// The virtual IPv4 addresses, added as /32 on `interface` while master.
    pub virtual_addresses: Vec<Ipv4Addr>,
    /// Peers to send adverts to by unicast; empty means the multicast group
    /// 224.0.0.18. When set, adverts from other sources are rejected.
    pub unicast_peers: Vec<Ipv4Addr>,
    /// The interface's own address: the adverts' source and the tie-breaker
    /// between equal priorities (higher address wins).
    pub primary_address: Ipv4Addr,
    /// Preempt_Mode: take over from a lower-priority master.
    pub preempt: bool,
    /// keepalived's `preempt_delay`: after startup, or after first seeing a
    /// lower-priority master, wait this long before preempting it.
    pub preempt_delay: Duration,
    pub garp: GarpConfig,
    pub notify: NotifyCommands,
}

/// When gratuitous ARPs for the VIPs are sent while master (keepalived's
/// `garp_master_repeat`, `garp_master_delay`, `garp_master_refresh`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GarpConfig {
    /// How many rounds are sent on becoming master (the first one at once).
    pub count: u32,
    /// Time between those rounds.
    pub interval: Duration,
    /// If set, one more round every this long for as long as the node is master.
    pub refresh: Option<Duration>,
}

impl Default for GarpConfig {
    fn default() -> Self {
        GarpConfig {
            count: 5,
            interval: Duration::from_secs(1),
            refresh: None,
        }
    }
}

/// Shell commands run (`sh -c`, not awaited) when the instance enters a state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifyCommands {
    pub master: Option<String>,
    pub backup: Option<String>,
    pub fault: Option<String>,
}

/// Why a [`VrrpConfig`] was rejected; each names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("vrrp.interface: {0}")]
    Interface(&'static str),
    #[error("vrrp.vrid: must be 1-255")]
    Vrid,
    #[error("vrrp.priority: must be 1-255 (0 is reserved for the shutdown advert)")]
    Priority,
    #[error(
        "vrrp.advert_interval: must be a whole number of centiseconds between 10 ms and 40.95 s, got {0:?}"
    )]
    AdvertInterval(Duration),
    #[error("vrrp.virtual_addresses: {0}")]
    VirtualAddresses(String),
    #[error("vrrp.unicast_peers: {0}")]
    UnicastPeers(String),
    #[error("vrrp.primary_address: {0} is not a usable unicast address")]
    PrimaryAddress(Ipv4Addr),
    #[error("vrrp.garp: {0}")]
    Garp(&'static str),
    #[error("vrrp.notify.{0}: the command is empty")]
    EmptyNotifyCommand(&'static str),
}

impl VrrpConfig {
    /// A configuration with the defaults: 1 s adverts, multicast, preemption on
    /// without delay, 5 gratuitous ARP rounds 1 s apart, no refresh, no hooks.
    pub fn new(
        interface: impl Into<String>,
        vrid: u8,
        priority: u8,
        primary_address: Ipv4Addr,
        virtual_addresses: Vec<Ipv4Addr>,
    ) -> Self {
        VrrpConfig {
            interface: interface.into(),
            vrid,
            priority,
            advert_interval: Duration::from_secs(1),
            virtual_addresses,
            unicast_peers: Vec::new(),
            primary_address,
            preempt: true,
            preempt_delay: Duration::ZERO,
            garp: GarpConfig::default(),
            notify: NotifyCommands::default(),
        }
    }

    /// Checks every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_interface(&self.interface)?;
        if self.vrid == 0 {
            return Err(ConfigError::Vrid);
        }
        if self.priority == 0 {
            return Err(ConfigError::Priority);
        }
        advert_interval_centis(self.advert_interval)?;
        if !is_unicast(self.primary_address) {
            return Err(ConfigError::PrimaryAddress(self.primary_address));
        }
        self.validate_virtual_addresses()?;
        self.validate_unicast_peers()?;
        validate_garp(&self.garp)?;
        for (name, command) in [
            ("master", &self.notify.master),
            ("backup", &self.notify.backup),
            ("fault", &self.notify.fault),
        ] {
            if command.as_deref().is_some_and(|c| c.trim().is_empty()) {
                return Err(ConfigError::EmptyNotifyCommand(name));
            }
        }
        Ok(())
    }

    /// The advertisement interval as carried on the wire, in centiseconds.
    pub fn advert_interval_centis(&self) -> Result<u16, ConfigError> {
        advert_interval_centis(self.advert_interval)
    }

    fn validate_virtual_addresses(&self) -> Result<(), ConfigError> {
        let addresses = &self.virtual_addresses;
        if addresses.is_empty() {
            return Err(ConfigError::VirtualAddresses(
                "at least one address is required".into(),
            ));
        }
        if addresses.len() > usize::from(u8::MAX) {
            return Err(ConfigError::VirtualAddresses(
                "at most 255 addresses fit in an advert".into(),
            ));
        }
        let mut seen = HashSet::new();
        for &address in addresses {
            if !is_unicast(address) {
                return Err(ConfigError::VirtualAddresses(format!(
                    "{address} is not a usable unicast address"
                )));
            }
            if address == self.primary_address {
                return Err(ConfigError::VirtualAddresses(format!(
                    "{address} is the primary address; virtual addresses are added and removed with the master role"
                )));
            }
            if !seen.insert(address) {
                return Err(ConfigError::VirtualAddresses(format!(
                    "{address} is listed twice"
                )));
            }
        }
        Ok(())
    }

    fn validate_unicast_peers(&self) -> Result<(), ConfigError> {
        let mut seen = HashSet::new();
        for &peer in &self.unicast_peers {
            if !is_unicast(peer) {
                return Err(ConfigError::UnicastPeers(format!(
                    "{peer} is not a usable unicast address"
                )));
            }
            if peer == self.primary_address {
                return Err(ConfigError::UnicastPeers(format!(
                    "{peer} is this node's own primary address"
                )));
            }
            if !seen.insert(peer) {
                return Err(ConfigError::UnicastPeers(format!("{peer} is listed twice")));
            }
        }
        Ok(())
    }
}

/// `interval` in centiseconds if it is a whole number of them within 1..=4095.
pub fn advert_interval_centis(interval: Duration) -> Result<u16, ConfigError> {
    let centis = interval.as_nanos() / CENTISECOND.as_nanos();
    let whole = interval.as_nanos().is_multiple_of(CENTISECOND.as_nanos());
    match u16::try_from(centis) {
        Ok(centis) if whole && (1..=MAX_ADVERT_INTERVAL_CENTIS).contains(&centis) => Ok(centis),
        _ => Err(ConfigError::AdvertInterval(interval)),
    }
}

fn validate_interface(name: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(ConfigError::Interface("the name is empty"));
    }
    if name.len() > MAX_INTERFACE_NAME_LEN {
        return Err(ConfigError::Interface("the name is longer than 15 bytes"));
    }
    if name.contains(['/', ':'])
        || name.chars().any(char::is_whitespace)
        || name == "."
        || name == ".."
    {
        return Err(ConfigError::Interface(
            "the name is not a valid interface name",
        ));
    }
    Ok(())
}

fn validate_garp(garp: &GarpConfig) -> Result<(), ConfigError> {
    if garp.count == 0 {
        return Err(ConfigError::Garp(
            "count must be at least 1: a new master must announce the VIPs",
        ));
    }
    if garp.count > 1 && garp.interval.is_zero() {
        return Err(ConfigError::Garp(
            "interval must be positive when count > 1",
        ));
    }
    if garp.refresh.is_some_and(|refresh| refresh.is_zero()) {
        return Err(ConfigError::Garp("refresh must be positive when set"));
    }
    Ok(())
}

fn is_unicast(address: Ipv4Addr) -> bool {
    !(address.is_unspecified()
        || address.is_multicast()
        || address.is_broadcast()
        || address.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> VrrpConfig {
        VrrpConfig::new(
            "eth0",
            51,
            150,
            Ipv4Addr::new(10, 0, 0, 2),
            vec![Ipv4Addr::new(10, 0, 0, 100)],
        )
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(valid().validate(), Ok(()));
        assert_eq!(valid().advert_interval_centis(), Ok(100));
    }

    #[test]
    fn advert_interval_must_be_whole_centiseconds_in_twelve_bits() {
        assert_eq!(advert_interval_centis(Duration::from_millis(100)), Ok(10));
        assert_eq!(
            advert_interval_centis(Duration::from_millis(40_950)),
            Ok(4095)
        );
        for bad in [
            Duration::ZERO,
            Duration::from_millis(5),
            Duration::from_millis(105),
            Duration::from_millis(40_960),
        ] {
            assert_eq!(
                advert_interval_centis(bad),
                Err(ConfigError::AdvertInterval(bad)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn each_bad_field_is_named() {
        type Breakage = fn(&mut VrrpConfig);
        let cases: Vec<(Breakage, &str)> = vec![
            (|c| c.interface = String::new(), "vrrp.interface"),
            (
                |c| c.interface = "a-very-long-interface".into(),
                "vrrp.interface",
            ),
            (|c| c.interface = "eth 0".into(), "vrrp.interface"),
            (|c| c.vrid = 0, "vrrp.vrid"),
            (|c| c.priority = 0, "vrrp.priority"),
            (
                |c| c.advert_interval = Duration::from_millis(15),
                "vrrp.advert_interval",
            ),
            (
                |c| c.primary_address = Ipv4Addr::UNSPECIFIED,
                "vrrp.primary_address",
            ),
            (|c| c.virtual_addresses.clear(), "vrrp.virtual_addresses"),
            (
                |c| c.virtual_addresses.push(Ipv4Addr::new(224, 0, 0, 18)),
                "vrrp.virtual_addresses",
            ),
            (
                |c| c.virtual_addresses.push(Ipv4Addr::new(10, 0, 0, 100)),
                "vrrp.virtual_addresses",
            ),
            (
                |c| c.virtual_addresses.push(Ipv4Addr::new(10, 0, 0, 2)),
                "vrrp.virtual_addresses",
            ),
            (
                |c| c.virtual_addresses = (0..=255).map(|i| Ipv4Addr::new(10, 1, 0, i)).collect(),
                "vrrp.virtual_addresses",
            ),
            (
                |c| c.unicast_peers = vec![Ipv4Addr::new(10, 0, 0, 2)],
                "vrrp.unicast_peers",
            ),
            (
                |c| c.unicast_peers = vec![Ipv4Addr::new(10, 0, 0, 3); 2],
                "vrrp.unicast_peers",
            ),
            (|c| c.garp.count = 0, "vrrp.garp"),
            (|c| c.garp.interval = Duration::ZERO, "vrrp.garp"),
            (|c| c.garp.refresh = Some(Duration::ZERO), "vrrp.garp"),
            (|c| c.notify.fault = Some("  ".into()), "vrrp.notify.fault"),
        ];
        for (break_it, field) in cases {
            let mut config = valid();
            break_it(&mut config);
            let error = config.validate().expect_err(field).to_string();
            assert!(error.starts_with(field), "{error:?} should name {field}");
        }
    }
}
