//! Tests of the configuration parser: the model it builds and every rejection,
//! each checked for the field it names and the line it points at.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::health::{
    CheckSpec, Health, HealthParams, HttpProbe, ProbeKind, ProbeSource, ProbeSpec,
};

mod bad_configs;
mod bgp;
mod file;
mod reloadable;
mod vrrp;

/// Joins `lines` so that `lines[i]` is line `i + 1` of the file.
fn file(lines: &[&str]) -> String {
    lines.join("\n") + "\n"
}

/// The lines of a valid one-service configuration; tests edit copies of it.
/// Line numbers: 1 [global], 2 interface, 4 [[service]], 5 name, 6 vip, 7 port,
/// 8 protocol, 9 scheduler, 11 [[service.backend]], 12 name, 13 address,
/// 14 weight, 16 [[service.backend]], 17 name, 18 address.
const VALID: &[&str] = &[
    "[global]",
    "interface = \"eth0\"",
    "",
    "[[service]]",
    "name = \"web\"",
    "vip = \"10.0.0.100\"",
    "port = 80",
    "protocol = \"tcp\"",
    "scheduler = \"maglev\"",
    "",
    "[[service.backend]]",
    "name = \"web1\"",
    "address = \"10.0.0.1\"",
    "weight = 2",
    "",
    "[[service.backend]]",
    "name = \"web2\"",
    "address = \"10.0.0.2\"",
];

/// `VALID` with line `line` (1-based) replaced by `text`.
fn valid_with(line: usize, text: &str) -> String {
    let mut lines = VALID.to_vec();
    lines[line - 1] = text;
    file(&lines)
}

/// Parses `text`, expects a rejection, and returns (line, rendered message).
fn rejection(text: &str) -> (usize, String) {
    let error = parse(text, "lb.toml").expect_err("the configuration should be rejected");
    let line = error
        .location()
        .expect("errors about content have a location")
        .line;
    (line, error.to_string())
}

fn assert_rejected(text: &str, line: usize, fragments: &[&str]) {
    let (at, message) = rejection(text);
    assert_eq!(at, line, "wrong line in {message:?}");
    assert!(
        message.starts_with(&format!("lb.toml:{line}:")),
        "no file:line prefix in {message:?}"
    );
    for fragment in fragments {
        assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
    }
}

#[test]
fn a_valid_file_becomes_the_model_with_defaults_filled_in() {
    let config = parse(&file(VALID), "lb.toml").unwrap();
    assert_eq!(
        config.global,
        Global {
            interface: "eth0".into(),
            server_interface: None,
            flow_table_size: lb_common::maps::defaults::FLOW_TABLE_SIZE,
            maglev_table_size: lb_common::maps::defaults::MAGLEV_TABLE_SIZE,
            max_services: lb_common::maps::defaults::MAX_SERVICES,
            max_backends: lb_common::maps::defaults::MAX_BACKENDS,
            health_source: ProbeSource::default().with_interface("eth0").unwrap(),
            xdp_mode: XdpModePreference::Auto,
            api: DEFAULT_API,
            pin_dir: Some("/sys/fs/bpf/lb/eth0".into()),
            rate_limit_table_size: lb_common::maps::defaults::RATE_LIMIT_TABLE_SIZE,
            flow_insert_limit_per_cpu: DEFAULT_FLOW_INSERT_LIMIT_PER_CPU,
            allow_table_size: lb_common::maps::defaults::ALLOW_TABLE_SIZE,
            vip_icmp_echo: VipIcmpEcho::Pass,
            notify_backend: None,
        }
    );
    assert_eq!(
        config.services,
        vec![Service {
            name: "web".into(),
            vip: Ipv4Addr::new(10, 0, 0, 100),
            port: 80,
            protocol: Protocol::Tcp,
            scheduler: Scheduler::Maglev,
            forwarding: Forwarding::DsrL2,
            on_down: crate::config::OnDown::Reset,
            allow: None,
            rate_limit: None,
            health: Some(HealthCheck {
                spec: Arc::new(CheckSpec {
                    probe: ProbeSpec::default()
                        .with_source(ProbeSource::default().with_interface("eth0").unwrap()),
                    params: HealthParams::default(),
                }),
                port: None,
                observe: Some(crate::config::PassiveHealth {
                    error_limit: 3,
                    handshake_timeout: Duration::from_secs(1),
                }),
            }),
            backends: vec![
                Backend {
                    name: "web1".into(),
                    address: Ipv4Addr::new(10, 0, 0, 1),
                    port: 80,
                    weight: 2,
                    initial: Health::Down,
                    backup: false,
                    expect_role: None,
                },
                Backend {
                    name: "web2".into(),
                    address: Ipv4Addr::new(10, 0, 0, 2),
                    port: 80,
                    weight: 1,
                    initial: Health::Down,
                    backup: false,
                    expect_role: None,
                },
            ],
        }]
    );
    assert_eq!(config.backend_count(), 2);
}

#[test]
fn global_settings_are_read() {
    let text = file(&[
        "[global]",
        "interface = \"veth-lb\"",
        "flow_table_size = 1000",
        "maglev_table_size = 13",
        "max_services = 4",
        "max_backends = 8",
        "xdp_mode = \"auto\"",
        "health_source = \"10.0.0.10\"",
        "health_interface = \"eth1\"",
        "api = \"127.0.0.2:8000\"",
        "rate_limit_table_size = 4096",
        "flow_insert_limit_per_cpu = 0",
        "allow_table_size = 10",
        "vip_icmp_echo = \"drop\"",
        r#"notify_backend = 'logger -t lb "$LB_BACKEND_STATE"'"#,
    ]);
    let config = parse(&text, "lb.toml").unwrap();
    assert_eq!(
        config.global,
        Global {
            interface: "veth-lb".into(),
            server_interface: None,
            flow_table_size: 1000,
            maglev_table_size: 13,
            max_services: 4,
            max_backends: 8,
            health_source: ProbeSource::default()
                .with_interface("eth1")
                .unwrap()
                .with_address(Ipv4Addr::new(10, 0, 0, 10)),
            xdp_mode: XdpModePreference::Auto,
            api: "127.0.0.2:8000".parse().unwrap(),
            pin_dir: Some("/sys/fs/bpf/lb/veth-lb".into()),
            rate_limit_table_size: 4096,
            flow_insert_limit_per_cpu: 0,
            allow_table_size: 10,
            vip_icmp_echo: VipIcmpEcho::Drop,
            notify_backend: Some("logger -t lb \"$LB_BACKEND_STATE\"".into()),
        }
    );
    assert!(config.services.is_empty());
}

#[test]
fn a_server_interface_is_where_probes_leave_by_default() {
    let config = parse(&valid_with(3, "server_interface = \"eth1\""), "lb.toml").unwrap();
    assert_eq!(config.global.server_interface.as_deref(), Some("eth1"));
    assert_eq!(
        config.global.health_source,
        ProbeSource::default().with_interface("eth1").unwrap()
    );
}

#[test]
fn a_large_allow_list_is_read_and_checked_for_duplicates() {
    // 40,000 distinct /32s: about the most a 1 MiB file holds.
    let prefixes: Vec<String> = (0..40_000u32)
        .map(|n| format!("\"{}/32\"", Ipv4Addr::from(0x0a00_0000 + n)))
        .collect();
    let text = valid_with(9, &format!("allow = [{}]", prefixes.join(", ")));
    let service = parse(&text, "lb.toml").unwrap().services.remove(0);
    assert_eq!(service.allow.unwrap().len(), 40_000);
}

#[test]
fn source_policies_are_read() {
    let text = valid_with(
        9,
        "allow = [\"203.0.113.0/24\", \"198.51.100.7/32\", \"0.0.0.0/0\"]\n\
         new_flows_per_second_per_source = 20\n\
         new_flows_burst_per_source = 50",
    );
    let service = parse(&text, "lb.toml").unwrap().services.remove(0);
    let prefixes: Vec<String> = service
        .allow
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(prefixes, ["203.0.113.0/24", "198.51.100.7/32", "0.0.0.0/0"]);
    let limit = service.rate_limit.unwrap();
    assert_eq!(
        limit,
        SourceRateLimit {
            per_second: 20,
            burst: 50
        }
    );
    assert_eq!(limit.map_value(), lb_common::maps::RateLimit::new(20, 50));
    // The burst defaults to one second's worth.
    let text = valid_with(9, "new_flows_per_second_per_source = 7");
    let service = parse(&text, "lb.toml").unwrap().services.remove(0);
    assert_eq!(
        service.rate_limit,
        Some(SourceRateLimit {
            per_second: 7,
            burst: 7
        })
    );
}

#[test]
fn the_shipped_example_is_valid() {
    let text = include_str!("../../../examples/lb.toml");
    let config = parse(text, "examples/lb.toml").unwrap();
    assert!(!config.services.is_empty());
}

#[test]
fn unknown_fields_are_rejected_where_they_are() {
    assert_rejected(
        &valid_with(3, "colour = \"blue\""),
        3,
        &["unknown field `colour`"],
    );
    assert_rejected(
        &valid_with(10, "timeout = 5"),
        10,
        &["unknown field `timeout`"],
    );
    assert_rejected(
        &valid_with(15, "colour = 8080"),
        15,
        &["unknown field `colour`"],
    );
}

#[test]
fn a_missing_required_field_is_named() {
    let (_, message) = rejection(&valid_with(2, ""));
    assert!(message.contains("missing field `interface`"), "{message}");
    let (_, message) = rejection(&valid_with(8, ""));
    assert!(message.contains("missing field `protocol`"), "{message}");
}

#[test]
fn a_value_of_the_wrong_type_quotes_its_line() {
    assert_rejected(&valid_with(7, "port = \"80\""), 7, &["port = \"80\""]);
}

#[test]
fn toml_syntax_errors_carry_the_line() {
    assert_rejected(&valid_with(7, "port = = 80"), 7, &[]);
}

#[test]
fn malformed_addresses_are_rejected() {
    assert_rejected(
        &valid_with(6, "vip = \"10.0.0\""),
        6,
        &["service[web].vip", "\"10.0.0\" is not an IPv4 address"],
    );
    assert_rejected(
        &valid_with(13, "address = \"10.0.0.256\""),
        13,
        &["service[web].backend[web1].address", "not an IPv4 address"],
    );
    assert_rejected(
        &valid_with(18, "address = \"224.0.0.1\""),
        18,
        &[
            "service[web].backend[web2].address",
            "not a unicast address",
        ],
    );
}

#[test]
fn a_backend_cannot_be_the_vip() {
    assert_rejected(
        &valid_with(13, "address = \"10.0.0.100\""),
        13,
        &["service[web].backend[web1].address", "own VIP"],
    );
}

#[test]
fn a_service_without_backends_is_rejected() {
    let text = file(&VALID[..10]);
    assert_rejected(&text, 5, &["service[web].backend", "at least one"]);
}

#[test]
fn weights_out_of_range_are_rejected() {
    for weight in ["weight = 0", "weight = 101", "weight = -1"] {
        assert_rejected(
            &valid_with(14, weight),
            14,
            &[
                "service[web].backend[web1].weight",
                "out of range (1..=100)",
            ],
        );
    }
}

#[test]
fn ports_out_of_range_are_rejected() {
    for port in ["port = 0", "port = 65536"] {
        assert_rejected(
            &valid_with(7, port),
            7,
            &["service[web].port", "out of range (1..=65535)"],
        );
    }
}

#[test]
fn unknown_protocol_scheduler_and_modes_are_rejected() {
    assert_rejected(
        &valid_with(8, "protocol = \"sctp\""),
        8,
        &["service[web].protocol", "unknown protocol \"sctp\""],
    );
    assert_rejected(
        &valid_with(9, "scheduler = \"random\""),
        9,
        &["service[web].scheduler", "unknown scheduler \"random\""],
    );
    assert_rejected(
        &valid_with(3, "xdp_mode = \"offload\""),
        3,
        &["global.xdp_mode", "unknown XDP mode \"offload\""],
    );
    for (text, mode) in [
        ("auto", XdpModePreference::Auto),
        ("driver", XdpModePreference::Driver),
        ("generic", XdpModePreference::Generic),
    ] {
        let config = parse(&valid_with(3, &format!("xdp_mode = \"{text}\"")), "lb.toml").unwrap();
        assert_eq!(config.global.xdp_mode, mode, "xdp_mode = {text:?}");
    }
    assert_rejected(
        &valid_with(10, "forwarding = \"tunnel\""),
        10,
        &[
            "service[web].forwarding",
            "unknown forwarding mode \"tunnel\"",
        ],
    );
}

#[test]
fn forwarding_modes_not_implemented_yet_say_so() {
    assert_rejected(
        &valid_with(10, "forwarding = \"ipip\""),
        10,
        &[
            "service[web].forwarding",
            "not supported yet",
            "dsr-l2",
            "nat",
        ],
    );
}

#[test]
fn a_nat_service_reads_its_backends_ports_and_needs_the_servers_side() {
    let mut lines = VALID.to_vec();
    lines[2] = "server_interface = \"eth1\"";
    lines[9] = "forwarding = \"nat\"";
    lines[13] = "port = 8080";
    let config = parse(&file(&lines), "lb.toml").unwrap();
    let web = &config.services[0];
    assert_eq!(web.forwarding, Forwarding::Nat);
    let ports: Vec<u16> = web.backends.iter().map(|backend| backend.port).collect();
    assert_eq!(
        ports,
        [8080, 80],
        "a backend's own port, else the service's"
    );
    assert_rejected(
        &valid_with(10, "forwarding = \"nat\""),
        10,
        &[
            "service[web].forwarding",
            "needs global.server_interface",
            "own subnet",
        ],
    );
    assert_rejected(
        &valid_with(14, "port = 8080"),
        14,
        &[
            "service[web].backend[web1].port",
            "only applies to forwarding = \"nat\"",
        ],
    );
}

/// `VALID` followed by a second service with the given name, VIP and protocol.
fn with_second_service(name: &str, vip: &str, protocol: &str) -> String {
    let mut lines = VALID.to_vec();
    let second = [
        String::new(),
        "[[service]]".into(),
        format!("name = \"{name}\""),
        format!("vip = \"{vip}\""),
        "port = 80".into(),
        format!("protocol = \"{protocol}\""),
        "[[service.backend]]".into(),
        "name = \"web1\"".into(),
        "address = \"10.0.0.1\"".into(),
    ];
    lines.extend(second.iter().map(String::as_str));
    file(&lines)
}

#[test]
fn duplicate_services_are_rejected() {
    // Lines 19.. hold the second service: 21 name, 22 vip.
    assert_rejected(
        &with_second_service("web", "10.0.0.101", "tcp"),
        21,
        &["service[web].name", "duplicate service name", "line 5"],
    );
    assert_rejected(
        &with_second_service("web-again", "10.0.0.100", "tcp"),
        22,
        &[
            "service[web-again].vip",
            "10.0.0.100:80/tcp",
            "\"web\" (line 5)",
        ],
    );
    // Same VIP and port over UDP is a different service.
    let config = parse(&with_second_service("dns", "10.0.0.100", "udp"), "lb.toml").unwrap();
    assert_eq!(config.services.len(), 2);
}

#[test]
fn invalid_names_are_rejected() {
    assert_rejected(
        &valid_with(5, "name = \"Web Server\""),
        5,
        &["service.name", "not a valid name"],
    );
    assert_rejected(
        &valid_with(17, "name = \"\""),
        17,
        &["service[web].backend.name", "not a valid name"],
    );
}

#[test]
fn duplicate_backends_within_a_service_are_rejected() {
    assert_rejected(
        &valid_with(18, "address = \"10.0.0.1\""),
        18,
        &[
            "service[web].backend[web2].address",
            "duplicate backend address 10.0.0.1",
            "\"web1\", line 12",
        ],
    );
    assert_rejected(
        &valid_with(17, "name = \"web1\""),
        17,
        &[
            "service[web].backend[web1].name",
            "duplicate backend name",
            "line 12",
        ],
    );
}

#[test]
fn the_same_server_may_back_two_services() {
    let config = parse(&with_second_service("api", "10.0.0.101", "tcp"), "lb.toml").unwrap();
    assert_eq!(config.backend_count(), 3);
}

#[test]
fn maglev_table_size_must_be_prime() {
    for size in ["maglev_table_size = 65536", "maglev_table_size = 1"] {
        assert_rejected(
            &valid_with(3, size),
            3,
            &["global.maglev_table_size", "not prime"],
        );
    }
    assert_rejected(
        &valid_with(3, "maglev_table_size = 0"),
        3,
        &["global.maglev_table_size", "out of range"],
    );
}

#[test]
fn maglev_table_size_must_leave_a_slot_for_every_backend() {
    // Weights 2 and 1: 3 slots needed.
    let text = valid_with(3, "maglev_table_size = 2");
    assert_rejected(
        &text,
        5,
        &[
            "service[web]",
            "maglev_table_size = 2 is too small for these weights under Maglev",
            "(3 slots needed)",
        ],
    );
    assert!(parse(&valid_with(3, "maglev_table_size = 3"), "lb.toml").is_ok());
}

#[test]
fn a_round_robin_ring_longer_than_the_table_is_rejected() {
    // Weights 2 and 1 make a ring of 3; 40 and 20 reduce to the same ring.
    let mut lines = VALID.to_vec();
    lines[2] = "maglev_table_size = 2";
    lines[8] = "scheduler = \"round-robin\"";
    assert_rejected(
        &file(&lines),
        5,
        &["service[web]", "the ring needs 3 slots"],
    );
    lines[2] = "maglev_table_size = 3";
    lines[13] = "weight = 40";
    lines.push("weight = 20");
    let config = parse(&file(&lines), "lb.toml").unwrap();
    assert_eq!(config.services[0].scheduler, Scheduler::RoundRobin);
}

#[test]
fn the_sched_table_must_fit_its_memory_bound() {
    assert_rejected(
        &valid_with(3, "max_services = 4096\nmaglev_table_size = 65537"),
        4,
        &[
            "global.maglev_table_size",
            "= 536879104 slots, more than the 270000000 (about 2 GiB)",
        ],
    );
    let config = parse(
        &valid_with(3, "max_services = 2048\nmaglev_table_size = 65537"),
        "lb.toml",
    )
    .unwrap();
    assert_eq!(config.global.max_services, 2048);
}

#[test]
fn more_services_than_max_services_are_rejected() {
    let mut text = with_second_service("api", "10.0.0.101", "tcp");
    text = text.replacen(
        "interface = \"eth0\"",
        "interface = \"eth0\"\nmax_services = 1",
        1,
    );
    // The inserted line shifts the second service's name from 21 to 22.
    assert_rejected(&text, 22, &["service[api]", "max_services (1)"]);
}

#[test]
fn more_backends_than_max_backends_are_rejected() {
    let text = valid_with(3, "max_backends = 1");
    assert_rejected(
        &text,
        17,
        &["service[web].backend[web2]", "max_backends (1)"],
    );
}

#[test]
fn bad_interface_names_are_rejected() {
    assert_rejected(
        &valid_with(2, "interface = \"a-very-long-interface-name\""),
        2,
        &["global.interface", "not an interface name"],
    );
}

#[test]
fn a_missing_file_is_reported_by_name() {
    let error = load(std::path::Path::new("/nonexistent/lb.toml")).unwrap_err();
    assert_eq!(error.to_string(), "/nonexistent/lb.toml: cannot read");
    assert!(matches!(error, ConfigError::Read { .. }));
    assert_eq!(error.location(), None);
}

/// `VALID` with a `[service.health]` table of `lines` after the service's
/// settings: the table header is line 10, its keys from line 11 on, and the
/// backends follow.
fn with_health(lines: &[&str]) -> String {
    let mut all: Vec<&str> = VALID[..9].to_vec();
    all.push("[service.health]");
    all.extend_from_slice(lines);
    all.extend_from_slice(&VALID[9..]);
    file(&all)
}

fn only_check(text: &str) -> HealthCheck {
    let config = parse(text, "lb.toml").unwrap_or_else(|e| panic!("{e}"));
    config.services[0].health.clone().expect("a check")
}

#[test]
fn an_http_check_is_read_with_every_setting() {
    let check = only_check(&with_health(&[
        "type = \"http\"",
        "port = 8080",
        "path = \"/health\"",
        "host = \"www.example.com\"",
        "expect_status = \"200-299\"",
        "expect_body = \"ok\"",
        "interval = \"2s\"",
        "fastinter = \"500ms\"",
        "downinter = \"1m 30s\"",
        "timeout = \"1500ms\"",
        "rise = 3",
        "fall = 4",
        "observe = \"layer4\"",
        "error_limit = 5",
        "handshake_timeout = \"250ms\"",
    ]));
    let http = HttpProbe::new("/health")
        .unwrap()
        .with_host("www.example.com")
        .unwrap()
        .with_expect_status("200-299".parse().unwrap())
        .with_expect_body("ok")
        .unwrap();
    let probe = ProbeSpec::new(ProbeKind::Http(http), Duration::from_millis(1500))
        .unwrap()
        .with_source(ProbeSource::default().with_interface("eth0").unwrap());
    let params = HealthParams::new(Duration::from_secs(2), 3, 4)
        .unwrap()
        .with_fastinter(Duration::from_millis(500))
        .unwrap()
        .with_downinter(Duration::from_secs(90))
        .unwrap();
    assert_eq!(
        check,
        HealthCheck {
            spec: Arc::new(CheckSpec { probe, params }),
            port: Some(8080),
            observe: Some(PassiveHealth {
                error_limit: 5,
                handshake_timeout: Duration::from_millis(250),
            }),
        }
    );
}

#[test]
fn an_http_check_defaults_to_the_root_path_and_the_service_port() {
    let check = only_check(&with_health(&["type = \"http\""]));
    assert_eq!(check.port, None);
    let ProbeKind::Http(http) = check.spec.probe.kind() else {
        panic!("an http check")
    };
    assert_eq!(http.path().as_str(), "/");
    assert_eq!(check.spec.params, HealthParams::default());
}

#[test]
fn an_exec_check_runs_its_command_for_its_service() {
    let check = only_check(&with_health(&[
        "type = \"exec\"",
        "command = \"/usr/local/bin/check-web $LB_BACKEND_ADDRESS\"",
        "port = 8080",
    ]));
    assert_eq!(check.port, Some(8080));
    let ProbeKind::Exec(exec) = check.spec.probe.kind() else {
        panic!("an exec check")
    };
    assert_eq!(
        exec.command(),
        "/usr/local/bin/check-web $LB_BACKEND_ADDRESS"
    );
    assert_eq!(exec.service(), "web");
}

#[test]
fn a_mysql_check_reads_its_password_file_without_the_line_break() {
    let file = std::env::temp_dir().join(format!("lb-config-mysql-{}", std::process::id()));
    std::fs::write(&file, "s3cret-pw\n").unwrap();
    let path = format!("password_file = \"{}\"", file.display());
    let replica = only_check(&with_health(&[
        "type = \"mysql\"",
        "user = \"lbcheck\"",
        &path,
        "database = \"app\"",
        "expect_role = \"replica\"",
        "max_lag = \"5s\"",
    ]));
    let any = only_check(&with_health(&[
        "type = \"mysql\"",
        "user = \"lbcheck\"",
        &path,
    ]));
    std::fs::remove_file(&file).unwrap();
    let ProbeKind::Mysql(mysql) = replica.spec.probe.kind() else {
        panic!("a mysql check")
    };
    assert_eq!(mysql.password().expose(), "s3cret-pw");
    assert_eq!((mysql.user(), mysql.database()), ("lbcheck", Some("app")));
    assert_eq!(mysql.expect_role(), crate::health::ExpectRole::Replica);
    assert_eq!(mysql.max_lag(), Some(Duration::from_secs(5)));
    assert_eq!(replica.port, None, "each backend's port unless configured");
    let ProbeKind::Mysql(mysql) = any.spec.probe.kind() else {
        panic!("a mysql check")
    };
    assert_eq!(
        (mysql.expect_role(), mysql.max_lag()),
        (crate::health::ExpectRole::Any, None)
    );
    // The whole configuration prints no password.
    assert!(!format!("{replica:?}").contains("s3cret-pw"));
}

/// The write and read services of the README's `mysql` example.
#[test]
fn a_read_service_of_replicas_checks_its_backup_primary_as_a_primary() {
    let file = std::env::temp_dir().join(format!("lb-config-rw-{}", std::process::id()));
    std::fs::write(&file, "s3cret-pw\n").unwrap();
    let text = format!(
        r#"
        [global]
        interface = "eth0"

        [[service]]
        name = "db-write"
        vip = "10.0.0.110"
        port = 3306
        protocol = "tcp"
        [service.health]
        type = "mysql"
        user = "lbcheck"
        password_file = "{file}"
        expect_role = "primary"
        [[service.backend]]
        name = "db1"
        address = "10.0.0.21"
        [[service.backend]]
        name = "db2"
        address = "10.0.0.22"

        [[service]]
        name = "db-read"
        vip = "10.0.0.111"
        port = 3306
        protocol = "tcp"
        [service.health]
        type = "mysql"
        user = "lbcheck"
        password_file = "{file}"
        expect_role = "replica"
        max_lag = "5s"
        [[service.backend]]
        name = "db2"
        address = "10.0.0.22"
        [[service.backend]]
        name = "db1"
        address = "10.0.0.21"
        backup = true
        expect_role = "primary"
        "#,
        file = file.display()
    );
    let config = parse(&text, "lb.toml").unwrap_or_else(|e| panic!("{e}"));
    std::fs::remove_file(&file).unwrap();
    let role_of = |service: usize, backend: usize| {
        let service = &config.services[service];
        let target = service.check_target(&service.backends[backend]).unwrap();
        let ProbeKind::Mysql(mysql) = target.spec().probe.kind() else {
            panic!("a mysql check")
        };
        (mysql.expect_role(), mysql.max_lag())
    };
    use crate::health::ExpectRole::{Primary, Replica};
    assert_eq!(role_of(1, 0), (Replica, Some(Duration::from_secs(5))));
    assert_eq!(role_of(1, 1), (Primary, None), "the backup primary");
    assert!(config.services[1].backends[1].backup);
    // db1 is checked as a primary by both services: one check.
    let write = &config.services[0];
    let read = &config.services[1];
    assert_eq!(
        write.check_target(&write.backends[0]),
        read.check_target(&read.backends[1])
    );
}

#[test]
fn backup_defaults_to_false() {
    let config = parse(&valid_with(15, "backup = true"), "lb.toml").unwrap();
    let backups: Vec<bool> = config.services[0]
        .backends
        .iter()
        .map(|b| b.backup)
        .collect();
    assert_eq!(backups, [true, false]);
}

#[test]
fn a_table_without_type_is_a_tcp_check_for_a_tcp_service() {
    let check = only_check(&with_health(&["interval = \"1s\"", "rise = 1"]));
    assert_eq!(check.spec.probe.kind(), &ProbeKind::Tcp);
    assert_eq!(check.spec.params.interval(), Duration::from_secs(1));
    assert_eq!(check.spec.params.rise(), 1);
}

#[test]
fn type_none_means_not_checked_and_always_up() {
    let config = parse(&with_health(&["type = \"none\""]), "lb.toml").unwrap();
    assert_eq!(config.services[0].health, None);
    assert!(config.services[0]
        .backends
        .iter()
        .all(|b| b.initial == Health::Up));
}

#[test]
fn udp_services_are_not_checked_unless_configured() {
    let config = parse(&valid_with(8, "protocol = \"udp\""), "lb.toml").unwrap();
    assert_eq!(config.services[0].health, None);
    assert_eq!(config.services[0].backends[0].initial, Health::Up);
    // A check of a UDP service says how to probe: over TCP.
    let mut lines = VALID[..9].to_vec();
    lines[7] = "protocol = \"udp\"";
    lines.extend(["[service.health]", "rise = 1"]);
    lines.extend_from_slice(&VALID[9..]);
    assert_rejected(
        &file(&lines),
        10,
        &["service[web].health.type", "explicit type"],
    );
    lines[10] = "type = \"tcp\"";
    let config = parse(&file(&lines), "lb.toml").unwrap();
    assert_eq!(config.services[0].backends[0].initial, Health::Down);
}

#[test]
fn backends_start_down_unless_configured_up() {
    let mut lines = VALID.to_vec();
    lines.insert(14, "initial = \"up\"");
    let config = parse(&file(&lines), "lb.toml").unwrap();
    let initial: Vec<Health> = config.services[0]
        .backends
        .iter()
        .map(|b| b.initial)
        .collect();
    assert_eq!(initial, [Health::Up, Health::Down]);
    lines[14] = "initial = \"maybe\"";
    assert_rejected(
        &file(&lines),
        15,
        &[
            "service[web].backend[web1].initial",
            "unknown initial state \"maybe\"",
        ],
    );
}

#[test]
fn initial_is_rejected_where_nothing_is_checked() {
    let mut lines = VALID.to_vec();
    lines[7] = "protocol = \"udp\"";
    lines.insert(14, "initial = \"up\"");
    assert_rejected(
        &file(&lines),
        15,
        &["service[web].backend[web1].initial", "always up"],
    );
}

#[test]
fn health_errors_name_the_key_and_its_line() {
    let cases: &[(&[&str], usize, &[&str])] = &[
        (
            &["type = \"icmp\""],
            11,
            &["service[web].health.type", "unknown check type \"icmp\""],
        ),
        (
            &["interval = \"2\""],
            11,
            &["service[web].health.interval", "not a duration"],
        ),
        (
            &["rise = 1", "timeout = \"fast\""],
            12,
            &["service[web].health.timeout", "not a duration"],
        ),
        (
            &["interval = \"0s\""],
            11,
            &["service[web].health.interval", "out of range (100ms..=1h)"],
        ),
        (
            &["fall = 0"],
            11,
            &["service[web].health.fall", "out of range (1..=1000)"],
        ),
        (
            &["port = 70000"],
            11,
            &["service[web].health.port", "out of range"],
        ),
        (
            &["type = \"http\"", "path = \"health\""],
            12,
            &["service[web].health.path", "absolute request path"],
        ),
        (
            &["type = \"http\"", "expect_status = \"2xx\""],
            12,
            &["service[web].health.expect_status", "200-399"],
        ),
        (
            &["type = \"http\"", "host = \"a b\""],
            12,
            &["service[web].health.host"],
        ),
        (
            &["type = \"http\"", "expect_body = \"\""],
            12,
            &["service[web].health.expect_body", "must not be empty"],
        ),
        (
            &["path = \"/health\""],
            11,
            &[
                "service[web].health.path",
                "only applies to checks of type = \"http\"",
            ],
        ),
        (
            &["type = \"none\"", "rise = 2"],
            12,
            &["service[web].health.rise", "takes no other settings"],
        ),
        (&["colour = \"red\""], 11, &["unknown field `colour`"]),
    ];
    for (lines, line, fragments) in cases {
        assert_rejected(&with_health(lines), *line, fragments);
    }
}

#[test]
fn global_health_and_api_settings_are_checked() {
    assert_rejected(
        &valid_with(3, "health_source = \"10.0.0\""),
        3,
        &["global.health_source", "not an IPv4 address"],
    );
    assert_rejected(
        &valid_with(3, "health_interface = \"a/b\""),
        3,
        &["global.health_interface", "interface name"],
    );
    assert_rejected(
        &valid_with(3, "api = \"0.0.0.0:9180\""),
        3,
        &["global.api", "not a loopback address"],
    );
    assert_rejected(
        &valid_with(3, "api = \"localhost\""),
        3,
        &["global.api", "not an address and port"],
    );
    let config = parse(&valid_with(3, "api = \"[::1]:9180\""), "lb.toml").unwrap();
    assert_eq!(config.global.api, "[::1]:9180".parse().unwrap());
}

#[test]
fn one_check_definition_shared_by_two_services_is_one_target_per_backend() {
    let config = parse(&with_second_service("api", "10.0.0.101", "tcp"), "lb.toml").unwrap();
    let web = &config.services[0];
    let api = &config.services[1];
    // Both services probe web1 with the default TCP check on port 80.
    assert_eq!(
        web.check_target(&web.backends[0]),
        api.check_target(&api.backends[0])
    );
    assert_ne!(
        web.check_target(&web.backends[0]),
        web.check_target(&web.backends[1])
    );
}
