//! `[bgp]`: the active-active node it describes; rejections are in
//! `bad_configs`.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::config::{parse, BgpNode};

/// Services `web` on 10.0.0.100 and `dns` on 10.0.0.53; `[bgp]` appended.
const BASE: &str = r#"[global]
interface = "eth0"

[[service]]
name = "web"
vip = "10.0.0.100"
port = 80
protocol = "tcp"
backend = [{ name = "web1", address = "10.0.0.1" }]

[[service]]
name = "dns"
vip = "10.0.0.53"
port = 53
protocol = "udp"
backend = [{ name = "dns1", address = "10.0.0.2" }]

[bgp]
"#;

#[test]
fn an_empty_section_announces_every_vip_from_table_200() {
    let config = parse(BASE, "lb.toml").unwrap();
    assert_eq!(
        config.bgp,
        Some(BgpNode {
            table: 200,
            announce: None,
            withdraw_grace: Duration::from_secs(2),
        })
    );
    assert_eq!(config.vrrp, None);
}

#[test]
fn every_key_is_read() {
    let text =
        format!("{BASE}table = 4000\nannounce = [\"10.0.0.53\"]\nwithdraw_grace = \"500ms\"\n");
    let config = parse(&text, "lb.toml").unwrap();
    assert_eq!(
        config.bgp,
        Some(BgpNode {
            table: 4000,
            announce: Some(BTreeSet::from([Ipv4Addr::new(10, 0, 0, 53)])),
            withdraw_grace: Duration::from_millis(500),
        })
    );
}

#[test]
fn without_the_section_nothing_is_announced() {
    let text = BASE.replace("[bgp]\n", "");
    assert_eq!(parse(&text, "lb.toml").unwrap().bgp, None);
}
