//! `[vrrp]`: the pair member it becomes, and every rejection at its line.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::config::{parse, Tracking, VrrpPair};
use crate::vrrp::{AdvertInterval, GarpConfig, Gateway, NotifyCommands, VrrpConfig};

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

fn vrrp(lines: &[&str]) -> VrrpPair {
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
        VrrpPair {
            instance: VrrpConfig {
                interface: "eth0".into(),
                vrid: 51,
                priority: 150,
                advert_interval: AdvertInterval::DEFAULT,
                // Every distinct service VIP.
                virtual_addresses: vec![Ipv4Addr::new(10, 0, 0, 100)],
                unicast_peers: vec![],
                preempt: true,
                preempt_delay: Duration::ZERO,
                gateway: None,
                garp: GarpConfig::default(),
                notify: NotifyCommands::default(),
            },
            primary_address: None,
            // The documented defaults: the priority drops to 1; every
            // service, those a reload adds included.
            track: Tracking {
                xdp_weight: 254,
                service_weight: 254,
                services: None,
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
    assert_eq!(vrrp.primary_address, Some(Ipv4Addr::new(10, 0, 0, 11)));
    let instance = &vrrp.instance;
    assert_eq!(instance.interface, "bond0");
    assert_eq!((instance.vrid, instance.priority), (7, 100));
    assert_eq!(instance.advert_interval.centis(), 10);
    assert_eq!(
        instance.virtual_addresses,
        [Ipv4Addr::new(10, 0, 0, 100), Ipv4Addr::new(10, 0, 0, 101)]
    );
    assert_eq!(instance.unicast_peers, [Ipv4Addr::new(10, 0, 0, 12)]);
    assert!(!instance.preempt);
    assert_eq!(instance.preempt_delay, Duration::from_secs(30));
    assert_eq!(
        instance.garp,
        GarpConfig {
            count: 3,
            interval: Duration::from_millis(200),
            refresh: Some(Duration::from_secs(60)),
        }
    );
    assert_eq!(instance.notify.master.as_deref(), Some("logger master"));
    assert_eq!(instance.notify.backup.as_deref(), Some("logger backup"));
    assert_eq!(instance.notify.fault.as_deref(), Some("logger fault"));
    assert_eq!(
        vrrp.track,
        Tracking {
            xdp_weight: 100,
            service_weight: 0,
            services: Some(vec!["web".into()]),
        }
    );
}

#[test]
fn a_two_armed_node_holds_the_gateway_address_on_its_server_interface() {
    let text = with_vrrp(&[
        "vrid = 51",
        "priority = 150",
        r#"gateway_address = "10.1.0.1""#,
    ])
    .replacen(
        "interface = \"eth0\"",
        "interface = \"eth0\"\nserver_interface = \"eth1\"",
        1,
    );
    let instance = parse(&text, "lb.toml")
        .unwrap_or_else(|error| panic!("{error}"))
        .vrrp
        .expect("a [vrrp] section")
        .instance;
    assert_eq!(
        instance.gateway,
        Some(Gateway {
            interface: "eth1".into(),
            address: Ipv4Addr::new(10, 1, 0, 1),
        })
    );
    // Not a virtual address: the adverts carry the VIPs only.
    assert_eq!(instance.virtual_addresses, [Ipv4Addr::new(10, 0, 0, 100)]);
    assert_eq!(instance.interface, "eth0");
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
            &["vrrp.garp_interval", "out of range (10ms..=1m)"],
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
