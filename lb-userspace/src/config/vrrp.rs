//! The `[vrrp]` section: how this node shares the VIPs with its peer as an
//! active-passive pair (the VRRP instance) and when it hands over on its own
//! (tracking). Absent: a single node, the VIPs are managed by someone else.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigError, ErrorSite};
use super::validate::{integer_in, unicast_address};
use super::{Global, Service};
use crate::vrrp::config::advert_interval_centis;
use crate::vrrp::{GarpConfig, NotifyCommands, VrrpConfig};

/// Weight subtracted while this node's XDP program is not attached to its
/// interface, unless configured: the priority drops to 1, so any peer that
/// can serve takes over.
pub const DEFAULT_TRACK_XDP_WEIGHT: u8 = 254;
/// Weight subtracted for each tracked service that has no serving backend,
/// unless configured (the priority drops to 1, as for the XDP program).
pub const DEFAULT_TRACK_SERVICE_WEIGHT: u8 = 254;
/// Advertisement interval unless configured (RFC 9568's default).
pub const DEFAULT_ADVERT_INTERVAL: Duration = Duration::from_secs(1);
/// Longest Linux interface name (IFNAMSIZ - 1).
const MAX_INTERFACE_NAME_LEN: usize = 15;
/// Most VIPs one advert carries (its address count is one byte).
const MAX_VIRTUAL_ADDRESSES: usize = 255;

/// The settings of the pair on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vrrp {
    /// Interface the adverts use and the VIPs are added to (default: the XDP interface).
    pub interface: String,
    pub vrid: u8,
    /// The configured priority, before tracking lowers it.
    pub priority: u8,
    pub advert_interval: Duration,
    /// The VIPs moved with the master role (default: every service VIP).
    pub virtual_addresses: Vec<Ipv4Addr>,
    /// Peers adverts are sent to by unicast; empty: multicast to 224.0.0.18.
    pub unicast_peers: Vec<Ipv4Addr>,
    /// Source of the adverts and tie-breaker; `None`: the interface's first
    /// IPv4 address that is not a VIP, looked up at startup.
    pub primary_address: Option<Ipv4Addr>,
    pub preempt: bool,
    pub preempt_delay: Duration,
    pub garp: GarpConfig,
    pub notify: NotifyCommands,
    pub track: Tracking,
}

/// When this node lowers its priority so that its peer takes over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracking {
    /// Subtracted while the XDP program is not attached to the interface (0: not tracked).
    pub xdp_weight: u8,
    /// Subtracted for each tracked service without a serving backend (0: not tracked).
    pub service_weight: u8,
    /// The tracked services, by name (default: every service).
    pub services: Vec<String>,
}

impl Vrrp {
    /// The VRRP instance's settings once the primary address is known.
    pub fn instance(&self, primary_address: Ipv4Addr) -> VrrpConfig {
        VrrpConfig {
            interface: self.interface.clone(),
            vrid: self.vrid,
            priority: self.priority,
            advert_interval: self.advert_interval,
            virtual_addresses: self.virtual_addresses.clone(),
            unicast_peers: self.unicast_peers.clone(),
            primary_address,
            preempt: self.preempt,
            preempt_delay: self.preempt_delay,
            garp: self.garp,
            notify: self.notify.clone(),
        }
    }
}

/// `[vrrp]` as serde reads it.
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

/// The model of `[vrrp]` (`raw`), given the validated rest of the file.
pub(super) fn validate(
    raw: &Spanned<RawVrrp>,
    global: &Global,
    services: &[Service],
    site: &ErrorSite<'_>,
) -> Result<Vrrp, ConfigError> {
    let section = raw.span();
    let raw = raw.get_ref();
    if global.pin_dir.is_none() {
        return Err(site.invalid(
            section,
            "vrrp",
            "needs the data path to outlive lb (global.pin_dir must not be empty): otherwise a crashed master keeps the VIP with no XDP program and its kernel resets every connection",
        ));
    }
    let interface = match &raw.interface {
        Some(name) => interface_name(name, site)?,
        None => global.interface.clone(),
    };
    let vrid = integer_in(&raw.vrid, 1..=255, "vrrp.vrid", site)? as u8;
    let priority = integer_in(&raw.priority, 1..=255, "vrrp.priority", site)? as u8;
    let advert_interval = match &raw.advert_interval {
        Some(value) => {
            let interval = duration(value, "vrrp.advert_interval", site)?;
            advert_interval_centis(interval).map_err(|_| {
                site.invalid(
                    value.span(),
                    "vrrp.advert_interval",
                    format!("{:?} must be a whole number of centiseconds between 10ms and 40.95s (e.g. \"100ms\", \"1s\")", value.get_ref()),
                )
            })?;
            interval
        }
        None => DEFAULT_ADVERT_INTERVAL,
    };
    let primary_address = raw
        .primary_address
        .as_ref()
        .map(|value| unicast_address(value, "vrrp.primary_address", site))
        .transpose()?;
    let virtual_addresses = match &raw.virtual_addresses {
        Some(list) => address_list(list, "vrrp.virtual_addresses", site)?,
        None => service_vips(services),
    };
    if virtual_addresses.is_empty() {
        let span = raw
            .virtual_addresses
            .as_ref()
            .map_or(section.clone(), Spanned::span);
        return Err(site.invalid(
            span,
            "vrrp.virtual_addresses",
            "no virtual address: list them, or define services (their VIPs are the default)",
        ));
    }
    if virtual_addresses.len() > MAX_VIRTUAL_ADDRESSES {
        let span = raw
            .virtual_addresses
            .as_ref()
            .map_or(section.clone(), Spanned::span);
        return Err(site.invalid(
            span,
            "vrrp.virtual_addresses",
            format!("at most {MAX_VIRTUAL_ADDRESSES} addresses fit in an advert"),
        ));
    }
    let unicast_peers = match &raw.unicast_peers {
        Some(list) => address_list(list, "vrrp.unicast_peers", site)?,
        None => Vec::new(),
    };
    if let Some(primary) = &raw.primary_address {
        let address = primary_address.expect("parsed above");
        if virtual_addresses.contains(&address) || unicast_peers.contains(&address) {
            return Err(site.invalid(
                primary.span(),
                "vrrp.primary_address",
                format!("{address} is also a virtual address or a unicast peer"),
            ));
        }
    }
    if let Some(list) = &raw.unicast_peers {
        // `unicast_peers` holds the parsed `list`, element by element.
        let conflict = list
            .get_ref()
            .iter()
            .zip(&unicast_peers)
            .find(|(_, peer)| virtual_addresses.contains(peer));
        if let Some((value, peer)) = conflict {
            return Err(site.invalid(
                value.span(),
                "vrrp.unicast_peers",
                format!("{peer} is a virtual address"),
            ));
        }
    }
    let preempt_delay = optional_duration(&raw.preempt_delay, "vrrp.preempt_delay", site)?
        .unwrap_or(Duration::ZERO);
    Ok(Vrrp {
        interface,
        vrid,
        priority,
        advert_interval,
        virtual_addresses,
        unicast_peers,
        primary_address,
        preempt: raw.preempt.as_ref().is_none_or(|p| *p.get_ref()),
        preempt_delay,
        garp: garp(raw, site)?,
        notify: NotifyCommands {
            master: command(&raw.notify_master, "vrrp.notify_master", site)?,
            backup: command(&raw.notify_backup, "vrrp.notify_backup", site)?,
            fault: command(&raw.notify_fault, "vrrp.notify_fault", site)?,
        },
        track: tracking(raw, services, site)?,
    })
}

fn interface_name(name: &Spanned<String>, site: &ErrorSite<'_>) -> Result<String, ConfigError> {
    let text = name.get_ref();
    if text.is_empty()
        || text.len() > MAX_INTERFACE_NAME_LEN
        || text.contains(|c: char| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(site.invalid(
            name.span(),
            "vrrp.interface",
            format!("{text:?} is not an interface name (1 to {MAX_INTERFACE_NAME_LEN} characters, no '/', ':' or spaces)"),
        ));
    }
    Ok(text.clone())
}

/// Every distinct service VIP, in file order.
fn service_vips(services: &[Service]) -> Vec<Ipv4Addr> {
    let mut seen = HashSet::new();
    services
        .iter()
        .map(|service| service.vip)
        .filter(|vip| seen.insert(*vip))
        .collect()
}

fn address_list(
    list: &Spanned<Vec<Spanned<String>>>,
    field: &str,
    site: &ErrorSite<'_>,
) -> Result<Vec<Ipv4Addr>, ConfigError> {
    let mut addresses = Vec::with_capacity(list.get_ref().len());
    for value in list.get_ref() {
        let address = unicast_address(value, field, site)?;
        if addresses.contains(&address) {
            return Err(site.invalid(value.span(), field, format!("{address} is listed twice")));
        }
        addresses.push(address);
    }
    Ok(addresses)
}

fn garp(raw: &RawVrrp, site: &ErrorSite<'_>) -> Result<GarpConfig, ConfigError> {
    let defaults = GarpConfig::default();
    let count = match &raw.garp_count {
        Some(count) => integer_in(count, 1..=1000, "vrrp.garp_count", site)? as u32,
        None => defaults.count,
    };
    let interval = match &raw.garp_interval {
        Some(value) => {
            let interval = duration(value, "vrrp.garp_interval", site)?;
            if interval.is_zero() && count > 1 {
                return Err(site.invalid(
                    value.span(),
                    "vrrp.garp_interval",
                    "must be positive when garp_count > 1",
                ));
            }
            interval
        }
        None => defaults.interval,
    };
    let refresh = match &raw.garp_refresh {
        Some(value) => {
            let refresh = duration(value, "vrrp.garp_refresh", site)?;
            if refresh.is_zero() {
                return Err(site.invalid(
                    value.span(),
                    "vrrp.garp_refresh",
                    "must be positive (leave it out for no refresh)",
                ));
            }
            Some(refresh)
        }
        None => defaults.refresh,
    };
    Ok(GarpConfig {
        count,
        interval,
        refresh,
    })
}

fn tracking(
    raw: &RawVrrp,
    services: &[Service],
    site: &ErrorSite<'_>,
) -> Result<Tracking, ConfigError> {
    let weight = |value: &Option<Spanned<i64>>, field: &str, default: u8| match value {
        Some(value) => integer_in(value, 0..=254, field, site).map(|w| w as u8),
        None => Ok(default),
    };
    let xdp_weight = weight(
        &raw.track_xdp_weight,
        "vrrp.track_xdp_weight",
        DEFAULT_TRACK_XDP_WEIGHT,
    )?;
    let service_weight = weight(
        &raw.track_service_weight,
        "vrrp.track_service_weight",
        DEFAULT_TRACK_SERVICE_WEIGHT,
    )?;
    let services = match &raw.track_services {
        None => services.iter().map(|s| s.name.clone()).collect(),
        Some(list) => {
            let mut names: Vec<String> = Vec::with_capacity(list.get_ref().len());
            for name in list.get_ref() {
                let text = name.get_ref();
                let problem = if !services.iter().any(|s| &s.name == text) {
                    Some(format!("{text:?} is not a configured service"))
                } else if names.contains(text) {
                    Some(format!("{text:?} is listed twice"))
                } else {
                    None
                };
                if let Some(problem) = problem {
                    return Err(site.invalid(name.span(), "vrrp.track_services", problem));
                }
                names.push(text.clone());
            }
            names
        }
    };
    Ok(Tracking {
        xdp_weight,
        service_weight,
        services,
    })
}

fn command(
    value: &Option<Spanned<String>>,
    field: &str,
    site: &ErrorSite<'_>,
) -> Result<Option<String>, ConfigError> {
    match value {
        Some(command) if command.get_ref().trim().is_empty() => Err(site.invalid(
            command.span(),
            field,
            "the command is empty (leave the key out for no hook)",
        )),
        Some(command) => Ok(Some(command.get_ref().clone())),
        None => Ok(None),
    }
}

fn optional_duration(
    value: &Option<Spanned<String>>,
    field: &str,
    site: &ErrorSite<'_>,
) -> Result<Option<Duration>, ConfigError> {
    value
        .as_ref()
        .map(|value| duration(value, field, site))
        .transpose()
}

fn duration(
    value: &Spanned<String>,
    field: &str,
    site: &ErrorSite<'_>,
) -> Result<Duration, ConfigError> {
    humantime::parse_duration(value.get_ref()).map_err(|error| {
        site.invalid(
            value.span(),
            field,
            format!(
                "{:?} is not a duration ({error}); write e.g. \"100ms\" or \"1s\"",
                value.get_ref()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use super::*;
    use crate::config::parse;

    /// Lines 1-2 `[global]`, 4-8 service `web` on 10.0.0.100:80, 10-12 its
    /// backend, 14-18 service `dns` on the same VIP; `[vrrp]` from line 20.
    const BASE: &str = r#"[global]
interface = "eth0"

[[service]]
name = "web"
vip = "10.0.0.100"
port = 80
protocol = "tcp"

[[service.backend]]
name = "web1"
address = "10.0.0.1"

[[service]]
name = "dns"
vip = "10.0.0.100"
port = 53
protocol = "udp"
backend = [{ name = "dns1", address = "10.0.0.2" }]
"#;

    /// `BASE` with `[vrrp]` on line 20 followed by `lines` from line 21.
    fn with_vrrp(lines: &[&str]) -> String {
        format!("{BASE}[vrrp]\n{}\n", lines.join("\n"))
    }

    fn vrrp(lines: &[&str]) -> Vrrp {
        parse(&with_vrrp(lines), "lb.toml")
            .unwrap_or_else(|error| panic!("{error}"))
            .vrrp
            .expect("a [vrrp] section")
    }

    /// Expects a rejection at `line` whose message contains every fragment.
    fn assert_rejected(text: &str, line: usize, fragments: &[&str]) {
        let error = parse(text, "lb.toml").expect_err("should be rejected");
        let message = error.to_string();
        assert_eq!(
            error.location().map(|at| at.line),
            Some(line),
            "wrong line in {message:?}"
        );
        for fragment in fragments {
            assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
        }
    }

    #[test]
    fn without_a_vrrp_section_the_node_runs_alone() {
        assert_eq!(parse(BASE, "lb.toml").unwrap().vrrp, None);
    }

    #[test]
    fn a_minimal_section_gets_the_defaults() {
        let vrrp = vrrp(&["vrid = 51", "priority = 150"]);
        assert_eq!(
            vrrp,
            Vrrp {
                interface: "eth0".into(),
                vrid: 51,
                priority: 150,
                advert_interval: Duration::from_secs(1),
                // Every distinct service VIP.
                virtual_addresses: vec![Ipv4Addr::new(10, 0, 0, 100)],
                unicast_peers: vec![],
                primary_address: None,
                preempt: true,
                preempt_delay: Duration::ZERO,
                garp: GarpConfig::default(),
                notify: NotifyCommands::default(),
                track: Tracking {
                    xdp_weight: DEFAULT_TRACK_XDP_WEIGHT,
                    service_weight: DEFAULT_TRACK_SERVICE_WEIGHT,
                    services: vec!["web".into(), "dns".into()],
                },
            }
        );
    }

    #[test]
    fn every_setting_is_read() {
        let vrrp = vrrp(&[
            r#"interface = "bond0""#,
            "vrid = 7",
            "priority = 100",
            r#"advert_interval = "100ms""#,
            r#"virtual_addresses = ["10.0.0.100", "10.0.0.101"]"#,
            r#"unicast_peers = ["10.0.0.12"]"#,
            r#"primary_address = "10.0.0.11""#,
            "preempt = false",
            r#"preempt_delay = "30s""#,
            "garp_count = 3",
            r#"garp_interval = "200ms""#,
            r#"garp_refresh = "1m""#,
            r#"notify_master = "logger master""#,
            r#"notify_backup = "logger backup""#,
            r#"notify_fault = "logger fault""#,
            "track_xdp_weight = 100",
            "track_service_weight = 0",
            r#"track_services = ["web"]"#,
        ]);
        assert_eq!(vrrp.interface, "bond0");
        assert_eq!((vrrp.vrid, vrrp.priority), (7, 100));
        assert_eq!(vrrp.advert_interval, Duration::from_millis(100));
        assert_eq!(
            vrrp.virtual_addresses,
            [Ipv4Addr::new(10, 0, 0, 100), Ipv4Addr::new(10, 0, 0, 101)]
        );
        assert_eq!(vrrp.unicast_peers, [Ipv4Addr::new(10, 0, 0, 12)]);
        assert_eq!(vrrp.primary_address, Some(Ipv4Addr::new(10, 0, 0, 11)));
        assert!(!vrrp.preempt);
        assert_eq!(vrrp.preempt_delay, Duration::from_secs(30));
        assert_eq!(
            vrrp.garp,
            GarpConfig {
                count: 3,
                interval: Duration::from_millis(200),
                refresh: Some(Duration::from_secs(60)),
            }
        );
        assert_eq!(vrrp.notify.master.as_deref(), Some("logger master"));
        assert_eq!(vrrp.notify.backup.as_deref(), Some("logger backup"));
        assert_eq!(vrrp.notify.fault.as_deref(), Some("logger fault"));
        assert_eq!(
            vrrp.track,
            Tracking {
                xdp_weight: 100,
                service_weight: 0,
                services: vec!["web".into()],
            }
        );
        // The instance gets all of it, with the primary address found at startup.
        let instance = vrrp.instance(Ipv4Addr::new(10, 0, 0, 11));
        assert_eq!(instance.validate(), Ok(()));
        assert_eq!(instance.advert_interval_centis(), Ok(10));
    }

    #[test]
    fn each_bad_value_is_rejected_at_its_line() {
        let base = ["vrid = 51", "priority = 150"];
        let cases: &[(&str, &[&str])] = &[
            ("vrid = 0", &["vrrp.vrid", "out of range"]),
            ("vrid = 256", &["vrrp.vrid"]),
            ("priority = 0", &["vrrp.priority"]),
            (r#"interface = "a-very-long-name0""#, &["vrrp.interface"]),
            (
                r#"advert_interval = "105ms""#,
                &["vrrp.advert_interval", "centiseconds"],
            ),
            (r#"advert_interval = "41s""#, &["vrrp.advert_interval"]),
            (
                r#"advert_interval = "fast""#,
                &["vrrp.advert_interval", "not a duration"],
            ),
            (
                r#"virtual_addresses = ["10.0.0.100", "10.0.0.100"]"#,
                &["listed twice"],
            ),
            (
                r#"virtual_addresses = ["224.0.0.18"]"#,
                &["vrrp.virtual_addresses", "unicast"],
            ),
            (
                r#"virtual_addresses = []"#,
                &["vrrp.virtual_addresses", "no virtual address"],
            ),
            (
                r#"unicast_peers = ["10.0.0.100"]"#,
                &["vrrp.unicast_peers", "virtual address"],
            ),
            (
                r#"unicast_peers = ["ten"]"#,
                &["vrrp.unicast_peers", "not an IPv4 address"],
            ),
            (
                r#"primary_address = "10.0.0.100""#,
                &["vrrp.primary_address"],
            ),
            (r#"preempt_delay = "soon""#, &["vrrp.preempt_delay"]),
            ("garp_count = 0", &["vrrp.garp_count"]),
            (
                r#"garp_interval = "0s""#,
                &["vrrp.garp_interval", "positive"],
            ),
            (r#"garp_refresh = "0s""#, &["vrrp.garp_refresh"]),
            (r#"notify_master = "  ""#, &["vrrp.notify_master", "empty"]),
            ("track_xdp_weight = 255", &["vrrp.track_xdp_weight"]),
            ("track_service_weight = -1", &["vrrp.track_service_weight"]),
            (
                r#"track_services = ["mail"]"#,
                &["vrrp.track_services", "not a configured service"],
            ),
            (
                r#"track_services = ["web", "web"]"#,
                &["vrrp.track_services", "listed twice"],
            ),
            ("unknown_knob = 1", &["unknown field"]),
        ];
        for (line, fragments) in cases {
            // The case on line 21, then the required keys it does not set.
            let key = line.split('=').next().unwrap_or_default().trim();
            let mut lines = vec![*line];
            lines.extend(base.iter().filter(|b| !b.starts_with(key)));
            assert_rejected(&with_vrrp(&lines), 21, fragments);
        }
        // A missing required key is reported at the section.
        assert_rejected(&with_vrrp(&["vrid = 51"]), 20, &["priority"]);
    }

    #[test]
    fn vrrp_needs_the_data_path_pinned() {
        let text = BASE.replace(
            "interface = \"eth0\"",
            "interface = \"eth0\"\npin_dir = \"\"",
        ) + "[vrrp]\nvrid = 51\npriority = 150\n";
        assert_rejected(&text, 21, &["vrrp:", "pin_dir"]);
    }

    #[test]
    fn the_pin_dir_defaults_per_interface_and_can_be_turned_off() {
        let global = |extra: &str| {
            parse(
                &BASE.replace(
                    "interface = \"eth0\"",
                    &format!("interface = \"eth0\"\n{extra}"),
                ),
                "lb.toml",
            )
            .map(|config| config.global.pin_dir)
        };
        assert_eq!(global("").unwrap(), Some("/sys/fs/bpf/lb/eth0".into()));
        assert_eq!(
            global(r#"pin_dir = "/run/lb/bpf/node1""#).unwrap(),
            Some("/run/lb/bpf/node1".into())
        );
        assert_eq!(global(r#"pin_dir = """#).unwrap(), None);
        for bad in [r#"pin_dir = "bpf/lb""#, r#"pin_dir = "/sys/fs/bpf/../lb""#] {
            let error = global(bad).expect_err(bad).to_string();
            assert!(
                error.contains("lb.toml:3:") && error.contains("global.pin_dir"),
                "{error}"
            );
        }
    }
}
