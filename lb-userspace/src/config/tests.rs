//! Tests of the configuration parser: the model it builds and every rejection,
//! each checked for the field it names and the line it points at.

use std::net::Ipv4Addr;

use super::*;

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
            flow_table_size: lb_common::maps::defaults::FLOW_TABLE_SIZE,
            maglev_table_size: lb_common::maps::defaults::MAGLEV_TABLE_SIZE,
            max_services: lb_common::maps::defaults::MAX_SERVICES,
            max_backends: lb_common::maps::defaults::MAX_BACKENDS,
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
            backends: vec![
                Backend {
                    name: "web1".into(),
                    address: Ipv4Addr::new(10, 0, 0, 1),
                    weight: 2,
                },
                Backend {
                    name: "web2".into(),
                    address: Ipv4Addr::new(10, 0, 0, 2),
                    weight: 1,
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
    ]);
    let config = parse(&text, "lb.toml").unwrap();
    assert_eq!(
        config.global,
        Global {
            interface: "veth-lb".into(),
            flow_table_size: 1000,
            maglev_table_size: 13,
            max_services: 4,
            max_backends: 8,
        }
    );
    assert!(config.services.is_empty());
}

#[test]
fn the_shipped_example_is_valid() {
    let text = include_str!("../../examples/lb.toml");
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
        &valid_with(15, "port = 8080"),
        15,
        &["unknown field `port`"],
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
    for forced in ["driver", "generic"] {
        assert_rejected(
            &valid_with(3, &format!("xdp_mode = \"{forced}\"")),
            3,
            &["global.xdp_mode", "not supported yet", "auto"],
        );
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
    for mode in ["ipip", "nat"] {
        assert_rejected(
            &valid_with(10, &format!("forwarding = \"{mode}\"")),
            10,
            &["service[web].forwarding", "not supported yet", "dsr-l2"],
        );
    }
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
            "maglev_table_size (2) is too small",
            "at least 3 slots",
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
        &["service[web]", "round-robin ring needs 3 slots"],
    );
    lines[2] = "maglev_table_size = 3";
    lines[13] = "weight = 40";
    lines.push("weight = 20");
    let config = parse(&file(&lines), "lb.toml").unwrap();
    assert_eq!(config.services[0].scheduler, Scheduler::RoundRobin);
}

#[test]
fn the_sched_table_must_fit_one_bpf_array() {
    assert_rejected(
        &valid_with(3, "maglev_table_size = 2147483647"),
        3,
        &["global.maglev_table_size", "do not fit"],
    );
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
