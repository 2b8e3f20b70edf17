//! One table of bad configurations, each with the exact message `lb
//! check-config` prints: file, line, column, field, what is wrong and what is
//! allowed.

use crate::config::parse;

/// A valid one-service file; the cases edit copies of it. Lines: 1 [global],
/// 2 interface, 3 (free), 4 [[service]], 5 name, 6 vip, 7 port, 8 protocol,
/// 9 (free), 10 [[service.backend]], 11 name, 12 address, 13 weight,
/// 14 (free), 15 [[service.backend]], 16 name, 17 address.
const BASE: [&str; 17] = [
    "[global]",
    "interface = \"eth0\"",
    "",
    "[[service]]",
    "name = \"web\"",
    "vip = \"10.0.0.100\"",
    "port = 80",
    "protocol = \"tcp\"",
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

/// `BASE` with each (line, text) replaced; a text may span several lines.
fn edited(edits: &[(usize, &str)]) -> String {
    let mut lines: Vec<String> = BASE.iter().map(|line| (*line).to_owned()).collect();
    for (line, text) in edits {
        lines[line - 1] = (*text).to_owned();
    }
    lines.join("\n") + "\n"
}

/// `BASE` followed by `extra` from line 18 on.
fn appended(extra: &[&str]) -> String {
    edited(&[]) + &extra.join("\n") + "\n"
}

/// `BASE` with `[vrrp]` on line 19 and `keys` from line 20 on.
fn with_vrrp(keys: &[&str]) -> String {
    let mut extra = vec!["", "[vrrp]"];
    extra.extend_from_slice(keys);
    appended(&extra)
}

/// `with_vrrp` on a two-armed node: line 3 is `server_interface = "eth1"`.
fn with_two_armed_vrrp(keys: &[&str]) -> String {
    let mut extra = vec!["", "[vrrp]"];
    extra.extend_from_slice(keys);
    edited(&[(3, "server_interface = \"eth1\"")]) + &extra.join("\n") + "\n"
}

/// `BASE` with `[bgp]` on line 19 and `keys` from line 20 on.
fn with_bgp(keys: &[&str]) -> String {
    let mut extra = vec!["", "[bgp]"];
    extra.extend_from_slice(keys);
    appended(&extra)
}

/// `BASE` with a `[service.health]` table on line 9 and `key` on line 10.
fn with_health(key: &str) -> String {
    edited(&[(9, &format!("[service.health]\n{key}"))])
}

/// A second service `api` from line 19: 20 name, 21 vip, 24 [[service.backend]],
/// 25 backend name, 26 its address.
fn with_api(vip: &str, backend_address: &str) -> String {
    appended(&[
        "",
        "[[service]]",
        "name = \"api\"",
        &format!("vip = \"{vip}\""),
        "port = 8080",
        "protocol = \"tcp\"",
        "[[service.backend]]",
        "name = \"api1\"",
        &format!("address = \"{backend_address}\""),
    ])
}

#[test]
fn every_bad_config_gets_its_exact_message() {
    let long_name = "x".repeat(200_000);
    let x = |n: usize| "x".repeat(n);
    let long_vip = format!(
        "lb.toml:6:7: service[web].vip: \"{}\"… is not an IPv4 address (dotted quad, e.g. \"10.0.0.1\")",
        x(100)
    );
    // toml's message keeps its first 100 and last 60 characters, the quoted
    // line its first 100.
    let long_port = format!(
        "lb.toml:7:8: invalid type: string \"{}…{}\", expected an integer (in `port = \"{}…`)",
        x(78),
        x(38),
        x(92)
    );
    let long_track = format!(
        "lb.toml:22:19: vrrp.track_services: \"{}\"… is not a configured service",
        x(100)
    );
    let cases: Vec<(String, &str)> = vec![
        // Maglev table too small for the weights (it would starve web3).
        (
            edited(&[
                (3, "maglev_table_size = 5"),
                (13, "weight = 51"),
                (17, "address = \"10.0.0.2\"\nweight = 68\n[[service.backend]]\nname = \"web3\"\naddress = \"10.0.0.3\"\nweight = 31"),
            ]),
            "lb.toml:5:8: service[web]: global.maglev_table_size = 5 is too small for these weights under Maglev: a backend of weight 31 serving beside backends of weight up to 68 can get no slot (6 slots needed); raise it or bring the weights closer together",
        ),
        (
            edited(&[(3, "maglev_table_size = 2"), (8, "protocol = \"tcp\"\nscheduler = \"round-robin\"")]),
            "lb.toml:5:8: service[web]: global.maglev_table_size = 2 is too small for these weights under round-robin: the ring needs 3 slots (the sum of the weights divided by their greatest common divisor); raise it or use weights with a larger common divisor",
        ),
        // Upper bounds.
        (edited(&[(3, "flow_table_size = 4294967295")]), "lb.toml:3:19: global.flow_table_size: 4294967295 is out of range (1..=16777216)"),
        (edited(&[(3, "maglev_table_size = 2147483647")]), "lb.toml:3:21: global.maglev_table_size: 2147483647 is out of range (1..=1000003)"),
        (edited(&[(3, "max_services = 100000")]), "lb.toml:3:16: global.max_services: 100000 is out of range (1..=4096)"),
        (edited(&[(3, "max_backends = 1000000")]), "lb.toml:3:16: global.max_backends: 1000000 is out of range (1..=65536)"),
        // flood protection
        (edited(&[(3, "rate_limit_table_size = 0")]), "lb.toml:3:25: global.rate_limit_table_size: 0 is out of range (1..=16777216)"),
        (edited(&[(3, "flow_insert_limit_per_cpu = 100000001")]), "lb.toml:3:29: global.flow_insert_limit_per_cpu: 100000001 is out of range (0..=100000000)"),
        (edited(&[(3, "flow_insert_limit_per_cpu = -1")]), "lb.toml:3:29: global.flow_insert_limit_per_cpu: -1 is out of range (0..=100000000)"),
        (edited(&[(3, "vip_icmp_echo = \"reply\"")]), "lb.toml:3:17: global.vip_icmp_echo: \"reply\" is not supported yet (expected \"pass\" or \"drop\")"),
        (edited(&[(3, "vip_icmp_echo = \"ignore\"")]), "lb.toml:3:17: global.vip_icmp_echo: unknown value \"ignore\" (expected \"pass\" or \"drop\")"),
        (edited(&[(3, "notify_backend = \" \"")]), "lb.toml:3:18: global.notify_backend: the command is empty (leave the key out for no hook)"),
        // Source policies.
        (edited(&[(3, "allow_table_size = 0")]), "lb.toml:3:20: global.allow_table_size: 0 is out of range (1..=16777216)"),
        (edited(&[(9, "on_down = \"drop\"")]), "lb.toml:9:11: service[web].on_down: unknown value \"drop\" (expected \"reset\" or \"keep\")"),
        (edited(&[(9, "allow = []")]), "lb.toml:9:9: service[web].allow: an empty list would drop every source; leave allow out to take every source"),
        (
            edited(&[(9, "allow = [\"203.0.113.7/24\"]")]),
            "lb.toml:9:10: service[web].allow: \"203.0.113.7/24\" has bits set beyond its first 24: write \"203.0.113.0/24\" for the network, or \"203.0.113.7/32\" for the one address",
        ),
        (edited(&[(9, "allow = [\"10.0.0.0/33\"]")]), "lb.toml:9:10: service[web].allow: \"10.0.0.0/33\": prefix length 33 is out of range (0..=32)"),
        (
            edited(&[(9, "allow = [\"10.0.0.0\"]")]),
            "lb.toml:9:10: service[web].allow: \"10.0.0.0\" is not an IPv4 prefix (address/length, e.g. \"203.0.113.0/24\", or \"198.51.100.7/32\" for one address)",
        ),
        (
            edited(&[(9, "allow = [\"10.0.0.0/+8\"]")]),
            "lb.toml:9:10: service[web].allow: \"10.0.0.0/+8\" is not an IPv4 prefix (address/length, e.g. \"203.0.113.0/24\", or \"198.51.100.7/32\" for one address)",
        ),
        (edited(&[(9, "allow = [\"10.0.0.0/8\", \"10.0.0.0/8\"]")]), "lb.toml:9:24: service[web].allow: 10.0.0.0/8 is listed twice"),
        (
            edited(&[(3, "allow_table_size = 2"), (9, "allow = [\"10.0.0.0/8\", \"192.0.2.0/24\", \"198.51.100.7/32\"]")]),
            "lb.toml:9:9: service[web].allow: the allow lists hold 3 prefixes in all so far, more than global.allow_table_size (2); raise it or shorten the lists",
        ),
        (edited(&[(9, "new_flows_per_second_per_source = 0")]), "lb.toml:9:35: service[web].new_flows_per_second_per_source: 0 is out of range (1..=1000000)"),
        (
            edited(&[(9, "new_flows_per_second_per_source = 10\nnew_flows_burst_per_source = 1000001")]),
            "lb.toml:10:30: service[web].new_flows_burst_per_source: 1000001 is out of range (1..=1000000)",
        ),
        (edited(&[(9, "new_flows_burst_per_source = 5")]), "lb.toml:9:30: service[web].new_flows_burst_per_source: a burst needs a rate: set new_flows_per_second_per_source too"),
        (
            edited(&[(3, "max_services = 4096\nmaglev_table_size = 65537")]),
            "lb.toml:4:21: global.maglev_table_size: max_services (4096) x 2 x maglev_table_size (65537) = 536879104 slots, more than the 270000000 (about 2 GiB) the scheduling table may hold; lower either",
        ),
        (edited(&[(3, "maglev_table_size = 65536")]), "lb.toml:3:21: global.maglev_table_size: 65536 is not prime (Maglev needs a prime table size, e.g. 65537)"),
        // Durations.
        (with_health("interval = \"300000000000years\""), "lb.toml:10:12: service[web].health.interval: \"300000000000years\" is out of range (100ms..=1h)"),
        (with_health("interval = \"1ns\""), "lb.toml:10:12: service[web].health.interval: \"1ns\" is out of range (100ms..=1h)"),
        (with_health("fastinter = \"2h\""), "lb.toml:10:13: service[web].health.fastinter: \"2h\" is out of range (100ms..=1h)"),
        (with_health("downinter = \"50ms\""), "lb.toml:10:13: service[web].health.downinter: \"50ms\" is out of range (100ms..=1h)"),
        (with_health("timeout = \"5m\""), "lb.toml:10:11: service[web].health.timeout: \"5m\" is out of range (10ms..=1m)"),
        (with_health("observe = \"layer7\""), "lb.toml:10:11: service[web].health.observe: unknown value \"layer7\" (expected \"layer4\" or \"none\")"),
        (with_health("error_limit = 0"), "lb.toml:10:15: service[web].health.error_limit: 0 is out of range (1..=255)"),
        (with_health("handshake_timeout = \"5ms\""), "lb.toml:10:21: service[web].health.handshake_timeout: \"5ms\" is out of range (10ms..=10s)"),
        (with_health("observe = \"none\"\nerror_limit = 2"), "lb.toml:11:15: service[web].health.error_limit: only applies with observe = \"layer4\" (passive health of a tcp service)"),
        (with_health("type = \"none\"\nhandshake_timeout = \"1s\""), "lb.toml:11:21: service[web].health.handshake_timeout: type = \"none\" (not checked, always up) takes no other settings"),
        (edited(&[(8, "protocol = \"udp\""), (9, "[service.health]\ntype = \"tcp\"\nobserve = \"layer4\"")]), "lb.toml:11:11: service[web].health.observe: observe = \"layer4\" watches TCP handshakes, and a udp service has none (expected \"none\")"),
        (with_health("interval = \"soon\""), "lb.toml:10:12: service[web].health.interval: \"soon\" is not a duration (expected number at 0); write e.g. \"500ms\", \"2s\" or \"1m 30s\", within 100ms..=1h"),
        (
            with_vrrp(&["vrid = 51", "priority = 150", "advert_interval = \"300000000000years\""]),
            "lb.toml:22:19: vrrp.advert_interval: \"300000000000years\" is out of range (10ms..=40.95s)",
        ),
        (
            with_vrrp(&["vrid = 51", "priority = 150", "advert_interval = \"105ms\""]),
            "lb.toml:22:19: vrrp.advert_interval: \"105ms\" is not a whole number of centiseconds (e.g. \"100ms\", \"1s\"; the advert carries centiseconds)",
        ),
        (
            with_vrrp(&["vrid = 51", "priority = 150", "preempt_delay = \"2h\""]),
            "lb.toml:22:17: vrrp.preempt_delay: \"2h\" is out of range (0s..=1h)",
        ),
        (
            with_vrrp(&["vrid = 51", "priority = 150", "garp_interval = \"1ns\""]),
            "lb.toml:22:17: vrrp.garp_interval: \"1ns\" is out of range (10ms..=1m)",
        ),
        (
            with_vrrp(&["vrid = 51", "priority = 150", "garp_refresh = \"300000000000years\""]),
            "lb.toml:22:16: vrrp.garp_refresh: \"300000000000years\" is out of range (1s..=24h)",
        ),
        // VRRP address owner.
        (with_vrrp(&["vrid = 51", "priority = 255"]), "lb.toml:21:12: vrrp.priority: 255 is the address owner's priority (RFC 5798: a router whose own addresses are the virtual addresses); lb adds and removes the VIPs with the master role and tracking lowers its priority, so use 1..=254"),
        // Cross-checks.
        (with_api("10.0.0.1", "10.0.0.5"), "lb.toml:21:7: service[api].vip: 10.0.0.1 is the address of backend \"web1\" of service \"web\" (line 12); a VIP cannot also be a backend"),
        (with_api("10.0.0.101", "10.0.0.100"), "lb.toml:26:11: service[api].backend[api1].address: 10.0.0.100 is the VIP of service \"web\" (line 5); a backend cannot also be a VIP"),
        (
            with_vrrp(&["vrid = 51", "priority = 150", "virtual_addresses = [\"10.0.0.100\", \"10.0.0.2\"]"]),
            "lb.toml:22:36: vrrp.virtual_addresses: 10.0.0.2 is the address of backend \"web2\" of service \"web\"; a backend cannot also be a virtual address",
        ),
        (edited(&[(3, "health_source = \"10.0.0.100\"")]), "lb.toml:3:17: global.health_source: 10.0.0.100 is the VIP of service \"web\"; probes must leave from an address of this node that is not a VIP (the backends hold the VIPs and would answer themselves)"),
        (
            with_vrrp(&["vrid = 51", "priority = 150", "virtual_addresses = [\"10.0.0.100\", \"10.0.0.10\"]"])
                .replacen("interface = \"eth0\"", "interface = \"eth0\"\nhealth_source = \"10.0.0.10\"", 1),
            "lb.toml:23:36: vrrp.virtual_addresses: 10.0.0.10 is global.health_source; probes must leave from an address this node always holds",
        ),
        // The gateway address: on the servers' side, an address of its own.
        (
            with_vrrp(&["vrid = 51", "priority = 150", "gateway_address = \"10.1.0.1\""]),
            "lb.toml:22:19: vrrp.gateway_address: needs global.server_interface (the servers' side of a two-armed node, where the gateway address is added while master); set it, or leave gateway_address out",
        ),
        (
            with_two_armed_vrrp(&["vrid = 51", "priority = 150", "gateway_address = \"10.0.0.100\""]),
            "lb.toml:22:19: vrrp.gateway_address: 10.0.0.100 is the VIP of service \"web\"; the gateway address must be an address of its own, the servers' default gateway on eth1",
        ),
        (
            with_two_armed_vrrp(&["vrid = 51", "priority = 150", "virtual_addresses = [\"10.0.0.100\", \"10.1.0.1\"]", "gateway_address = \"10.1.0.1\""]),
            "lb.toml:23:19: vrrp.gateway_address: 10.1.0.1 is also a virtual address; the gateway address must be an address of its own, the servers' default gateway on eth1",
        ),
        (
            with_two_armed_vrrp(&["vrid = 51", "priority = 150", "gateway_address = \"10.1.0.1\"", "primary_address = \"10.1.0.1\""]),
            "lb.toml:22:19: vrrp.gateway_address: 10.1.0.1 is vrrp.primary_address; the gateway address must be an address of its own, the servers' default gateway on eth1",
        ),
        (
            with_two_armed_vrrp(&["vrid = 51", "priority = 150", "gateway_address = \"10.0.0.1\""]),
            "lb.toml:22:19: vrrp.gateway_address: 10.0.0.1 is the address of backend \"web1\" of service \"web\"; the gateway address must be an address of its own, the servers' default gateway on eth1",
        ),
        (
            with_two_armed_vrrp(&["vrid = 51", "priority = 150", "gateway_address = \"10.1.0.2\""])
                .replacen("server_interface = \"eth1\"", "server_interface = \"eth1\"\nhealth_source = \"10.1.0.2\"", 1),
            "lb.toml:23:19: vrrp.gateway_address: 10.1.0.2 is global.health_source; the gateway address must be an address of its own, the servers' default gateway on eth1",
        ),
        (
            with_two_armed_vrrp(&["vrid = 51", "priority = 150", "gateway_address = \"10.0.0.12\"", "unicast_peers = [\"10.0.0.12\"]"]),
            "lb.toml:22:19: vrrp.gateway_address: 10.0.0.12 is a unicast peer; the gateway address must be an address of its own, the servers' default gateway on eth1",
        ),
        (
            with_two_armed_vrrp(&["vrid = 51", "priority = 150", "gateway_address = \"224.0.0.18\""]),
            "lb.toml:22:19: vrrp.gateway_address: 224.0.0.18 is not a unicast address: 224.0.0.0/4 is multicast; use one outside 0.0.0.0/8, 127.0.0.0/8, 224.0.0.0/4 and 240.0.0.0/4",
        ),
        // Addresses that are not a host's.
        (edited(&[(6, "vip = \"0.1.2.3\"")]), "lb.toml:6:7: service[web].vip: 0.1.2.3 is not a unicast address: 0.0.0.0/8 is \"this network\"; use one outside 0.0.0.0/8, 127.0.0.0/8, 224.0.0.0/4 and 240.0.0.0/4"),
        (edited(&[(6, "vip = \"255.255.255.255\"")]), "lb.toml:6:7: service[web].vip: 255.255.255.255 is not a unicast address: 240.0.0.0/4 is reserved (and holds the broadcast address); use one outside 0.0.0.0/8, 127.0.0.0/8, 224.0.0.0/4 and 240.0.0.0/4"),
        (edited(&[(6, "vip = \"239.1.1.1\"")]), "lb.toml:6:7: service[web].vip: 239.1.1.1 is not a unicast address: 224.0.0.0/4 is multicast; use one outside 0.0.0.0/8, 127.0.0.0/8, 224.0.0.0/4 and 240.0.0.0/4"),
        (edited(&[(12, "address = \"240.0.0.1\"")]), "lb.toml:12:11: service[web].backend[web1].address: 240.0.0.1 is not a unicast address: 240.0.0.0/4 is reserved (and holds the broadcast address); use one outside 0.0.0.0/8, 127.0.0.0/8, 224.0.0.0/4 and 240.0.0.0/4"),
        (edited(&[(12, "address = \"127.0.0.1\"")]), "lb.toml:12:11: service[web].backend[web1].address: 127.0.0.1 is not a unicast address: 127.0.0.0/8 is loopback; use one outside 0.0.0.0/8, 127.0.0.0/8, 224.0.0.0/4 and 240.0.0.0/4"),
        (
            with_vrrp(&["vrid = 51", "priority = 150", "primary_address = \"0.0.0.1\""]),
            "lb.toml:22:19: vrrp.primary_address: 0.0.0.1 is not a unicast address: 0.0.0.0/8 is \"this network\"; use one outside 0.0.0.0/8, 127.0.0.0/8, 224.0.0.0/4 and 240.0.0.0/4",
        ),
        // Interface names and the pin directory.
        (edited(&[(2, "interface = \"..\"")]), "lb.toml:2:13: global.interface: \"..\" is not an interface name (1 to 15 bytes, not \".\" or \"..\", no '/', ':', whitespace or control characters)"),
        (edited(&[(2, "interface = \".\"")]), "lb.toml:2:13: global.interface: \".\" is not an interface name (1 to 15 bytes, not \".\" or \"..\", no '/', ':', whitespace or control characters)"),
        (edited(&[(2, "interface = \"eth0:1\"")]), "lb.toml:2:13: global.interface: \"eth0:1\" is not an interface name (1 to 15 bytes, not \".\" or \"..\", no '/', ':', whitespace or control characters)"),
        (edited(&[(2, "interface = \"eth 0\"")]), "lb.toml:2:13: global.interface: \"eth 0\" is not an interface name (1 to 15 bytes, not \".\" or \"..\", no '/', ':', whitespace or control characters)"),
        (edited(&[(2, "interface = \"sixteen-bytes-xx\"")]), "lb.toml:2:13: global.interface: \"sixteen-bytes-xx\" is not an interface name (1 to 15 bytes, not \".\" or \"..\", no '/', ':', whitespace or control characters)"),
        (edited(&[(3, "server_interface = \"eth0\"")]), "lb.toml:3:20: global.server_interface: eth0 is global.interface itself; server_interface is the other side of a two-armed node (leave it out on a one-armed node)"),
        (edited(&[(3, "server_interface = \"a:b\"")]), "lb.toml:3:20: global.server_interface: \"a:b\" is not an interface name (1 to 15 bytes, not \".\" or \"..\", no '/', ':', whitespace or control characters)"),
        (edited(&[(3, "health_interface = \"a/b\"")]), "lb.toml:3:20: global.health_interface: \"a/b\" is not an interface name (1 to 15 bytes, not \".\" or \"..\", no '/', ':', whitespace or control characters)"),
        (
            with_vrrp(&["vrid = 51", "priority = 150", "interface = \"..\""]),
            "lb.toml:22:13: vrrp.interface: \"..\" is not an interface name (1 to 15 bytes, not \".\" or \"..\", no '/', ':', whitespace or control characters)",
        ),
        (edited(&[(3, "pin_dir = \"/sys/fs/bpf/../../etc\"")]), "lb.toml:3:11: global.pin_dir: \"/sys/fs/bpf/../../etc\" must be an absolute path without '.' or '..' on a bpffs (e.g. \"/sys/fs/bpf/lb/eth0\"), or \"\" for no pinning"),
        (edited(&[(3, "pin_dir = \"bpf/lb\"")]), "lb.toml:3:11: global.pin_dir: \"bpf/lb\" must be an absolute path without '.' or '..' on a bpffs (e.g. \"/sys/fs/bpf/lb/eth0\"), or \"\" for no pinning"),
        // Long values are quoted by their start only.
        (edited(&[(6, &format!("vip = \"{long_name}\""))]), &long_vip),
        (edited(&[(7, &format!("port = \"{long_name}\""))]), &long_port),
        (
            with_vrrp(&["vrid = 51", "priority = 150", &format!("track_services = [\"{long_name}\"]")]),
            &long_track,
        ),
        // [bgp].
        (with_bgp(&["table = 254"]), "lb.toml:20:9: bgp.table: 254 is one of the kernel's own tables (253 default, 254 main, 255 local); use a table of lb's own, e.g. 200"),
        (with_bgp(&["table = 0"]), "lb.toml:20:9: bgp.table: 0 is out of range (1..=4294967295)"),
        (with_bgp(&["announce = [\"10.0.0.100\", \"10.0.0.7\"]"]), "lb.toml:20:27: bgp.announce: 10.0.0.7 is not the VIP of a configured service"),
        (with_bgp(&["withdraw_grace = \"2m\""]), "lb.toml:20:18: bgp.withdraw_grace: \"2m\" is out of range (0s..=1m)"),
        (
            appended(&["", "[vrrp]", "vrid = 51", "priority = 150", "", "[bgp]", "table = 200"]),
            "lb.toml:23:1: bgp: cannot be combined with [vrrp]: a node is either one of an active-passive pair (VRRP) or an active-active node announcing over BGP",
        ),
        (
            edited(&[(3, "pin_dir = \"\""), (17, "address = \"10.0.0.2\"\n\n[bgp]")]),
            "lb.toml:19:1: bgp: needs the data path to outlive lb (global.pin_dir must not be empty): otherwise a crashed lb leaves its announcements in place with no XDP program behind them",
        ),
        (
            edited(&[(8, "protocol = \"tcp\"\nscheduler = \"round-robin\""), (17, "address = \"10.0.0.2\"\n\n[bgp]")]),
            "lb.toml:9:13: service[web].scheduler: \"round-robin\" cannot be used with [bgp]: each node's ring turns on its own, so a flow the routers move to another node would reach another backend; use \"maglev\", which picks the same backend on every node",
        ),
        // Other values out of range.
        (edited(&[(13, "weight = 101")]), "lb.toml:13:10: service[web].backend[web1].weight: 101 is out of range (1..=100)"),
        (with_vrrp(&["vrid = 0", "priority = 150"]), "lb.toml:20:8: vrrp.vrid: 0 is out of range (1..=255)"),
    ];
    assert!(cases.len() >= 30);
    let mismatches: Vec<String> = cases
        .iter()
        .enumerate()
        .filter_map(|(index, (text, expected))| {
            let actual = match parse(text, "lb.toml") {
                Ok(_) => "accepted".to_owned(),
                Err(error) => error.to_string(),
            };
            (actual != *expected)
                .then(|| format!("case {index}:\n  expected {expected:?}\n  actual   {actual:?}"))
        })
        .collect();
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// A directory of password files for the `mysql` cases, removed on drop.
struct PasswordFiles {
    dir: std::path::PathBuf,
}

impl PasswordFiles {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("lb-bad-configs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("good"), "s3cret-pw\n").unwrap();
        std::fs::write(dir.join("empty"), "\n").unwrap();
        PasswordFiles { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

impl Drop for PasswordFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `type = "mysql"` as user `lbcheck` with the password in `file`, then
/// `keys` from line 13 on (line 10 type, 11 user, 12 password_file).
fn with_mysql(file: &str, keys: &[&str]) -> String {
    let mut health = vec![
        "type = \"mysql\"".to_owned(),
        "user = \"lbcheck\"".to_owned(),
        format!("password_file = \"{file}\""),
    ];
    health.extend(keys.iter().map(|key| (*key).to_owned()));
    with_health(&health.join("\n"))
}

#[test]
fn bad_backup_exec_and_mysql_settings_name_the_field_and_what_is_allowed() {
    let files = PasswordFiles::new();
    let good = files.path("good");
    let missing = files.path("missing");
    let missing_error = format!(
        "lb.toml:12:17: service[web].health.password_file: cannot read \"{missing}\": No such file or directory (os error 2)"
    );
    let empty_error = "lb.toml:12:17: service[web].health.password_file: `password_file` holds an empty password (a check user needs a password)".to_owned();
    let cases: Vec<(String, String)> = vec![
        (edited(&[(13, "backup = \"yes\"")]), "lb.toml:13:10: invalid type: string \"yes\", expected a boolean (in `backup = \"yes\"`)".to_owned()),
        (with_health("type = \"exec\""), "lb.toml:9:1: service[web].health.command: type = \"exec\" needs a command (run with sh -c; exit status 0 passes)".to_owned()),
        (with_health("type = \"exec\"\ncommand = \"\""), "lb.toml:11:11: service[web].health.command: `command` must be a non-empty shell command of at most 4096 bytes without NUL".to_owned()),
        (with_health("type = \"tcp\"\ncommand = \"true\""), "lb.toml:11:11: service[web].health.command: only applies to checks of type = \"exec\"".to_owned()),
        (with_health("type = \"exec\"\ncommand = \"true\"\npath = \"/\""), "lb.toml:12:8: service[web].health.path: only applies to checks of type = \"http\"".to_owned()),
        (with_health("type = \"ping\""), "lb.toml:10:8: service[web].health.type: unknown check type \"ping\" (expected \"tcp\", \"http\", \"exec\", \"mysql\" or \"none\")".to_owned()),
        (with_health("type = \"mysql\"\nuser = \"lbcheck\""), "lb.toml:9:1: service[web].health.password_file: type = \"mysql\" needs user and password_file (a file holding the check user's password)".to_owned()),
        (with_health(&format!("type = \"mysql\"\npassword_file = \"{good}\"")), "lb.toml:9:1: service[web].health.user: type = \"mysql\" needs user and password_file (a file holding the check user's password)".to_owned()),
        (with_mysql(&missing, &[]), missing_error),
        (with_mysql(&files.path("empty"), &[]), empty_error),
        (with_mysql(&files.dir.display().to_string(), &[]), format!("lb.toml:12:17: service[web].health.password_file: cannot read \"{}\": not a regular file", files.dir.display())),
        (with_mysql("db.pass", &[]), "lb.toml:12:17: service[web].health.password_file: \"db.pass\" must be an absolute path".to_owned()),
        (with_mysql(&good, &["expect_role = \"leader\""]), "lb.toml:13:15: service[web].health.expect_role: `expect_role` must be \"primary\", \"replica\" or \"any\", got \"leader\"".to_owned()),
        (with_mysql(&good, &["expect_role = \"primary\"", "max_lag = \"5s\""]), "lb.toml:14:11: service[web].health.max_lag: `max_lag` only applies to expect_role = \"replica\" (a primary has no replication lag)".to_owned()),
        (with_mysql(&good, &["max_lag = \"5s\""]), "lb.toml:13:11: service[web].health.max_lag: `max_lag` only applies to expect_role = \"replica\" (a primary has no replication lag)".to_owned()),
        (with_mysql(&good, &["expect_role = \"replica\"", "max_lag = \"1500ms\""]), "lb.toml:14:11: service[web].health.max_lag: \"1500ms\" is not whole seconds (the server reports the lag in seconds)".to_owned()),
        (with_mysql(&good, &["expect_role = \"replica\"", "max_lag = \"2d\""]), "lb.toml:14:11: service[web].health.max_lag: \"2d\" is out of range (0s..=24h)".to_owned()),
        (with_mysql(&good, &["database = \"a/b\""]), "lb.toml:13:12: service[web].health.database: `database` must be a MySQL database name of 1 to 64 characters without NUL or '/'".to_owned()),
        (with_health("type = \"http\"\nexpect_role = \"primary\""), "lb.toml:11:15: service[web].health.expect_role: only applies to checks of type = \"mysql\"".to_owned()),
        (edited(&[(13, "expect_role = \"primary\"")]), "lb.toml:13:15: service[web].backend[web1].expect_role: only applies to a service whose check is type = \"mysql\"".to_owned()),
        (
            with_mysql(&good, &[]).replace("weight = 2", "expect_role = \"leader\""),
            "lb.toml:16:15: service[web].backend[web1].expect_role: unknown role \"leader\" (expected \"primary\", \"replica\" or \"any\")".to_owned(),
        ),
        (with_health("type = \"none\"\nuser = \"lbcheck\""), "lb.toml:11:8: service[web].health.user: only applies to checks of type = \"mysql\"".to_owned()),
    ];
    let mismatches: Vec<String> = cases
        .iter()
        .enumerate()
        .filter_map(|(index, (text, expected))| {
            let actual = match parse(text, "lb.toml") {
                Ok(_) => "accepted".to_owned(),
                Err(error) => error.to_string(),
            };
            (actual != *expected)
                .then(|| format!("case {index}:\n  expected {expected:?}\n  actual   {actual:?}"))
        })
        .collect();
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    // The password itself is in no message.
    for (text, _) in &cases {
        if let Err(error) = parse(text, "lb.toml") {
            assert!(!error.to_string().contains("s3cret-pw"), "{error}");
        }
    }
}
