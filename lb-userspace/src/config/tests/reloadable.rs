//! Which changes a reload may make: services and the probes' source at
//! runtime; map sizes, the interface, the API, `[vrrp]` and `[bgp]` only
//! with a restart, each named.

use crate::config::{check_reloadable, parse, Config, RestartRequired, ServiceChanges};

/// `[global]` lines, service `web` on 10.0.0.100:80 and service `dns` on
/// 10.0.0.100:53, then `rest`.
fn config(global: &[&str], rest: &str) -> Config {
    let text = format!(
        "[global]\ninterface = \"eth0\"\n{}\n\
         [[service]]\nname = \"web\"\nvip = \"10.0.0.100\"\nport = 80\nprotocol = \"tcp\"\n\
         backend = [{{ name = \"web1\", address = \"10.0.0.1\" }}]\n\
         [[service]]\nname = \"dns\"\nvip = \"10.0.0.100\"\nport = 53\nprotocol = \"udp\"\n\
         backend = [{{ name = \"dns1\", address = \"10.0.0.2\" }}]\n{rest}",
        global.join("\n")
    );
    parse(&text, "lb.toml").unwrap_or_else(|error| panic!("{error}"))
}

fn refused(running: &Config, proposed: &Config) -> &'static str {
    match check_reloadable(running, proposed) {
        Err(RestartRequired { field }) => field,
        Ok(()) => panic!("a restart-only change was accepted"),
    }
}

const VRRP: &str = "[vrrp]\nvrid = 51\npriority = 150\n";

#[test]
fn services_and_the_probes_source_change_at_runtime() {
    let running = config(&[], "");
    let mut proposed = config(
        &[
            r#"health_source = "10.0.0.10""#,
            r#"notify_backend = "logger backend""#,
        ],
        "",
    );
    proposed.services[0].backends[0].weight = 5;
    proposed.services.pop();
    assert_eq!(check_reloadable(&running, &proposed), Ok(()));
    // With [vrrp], services on its VIPs may come and go too.
    let pair = config(&[], VRRP);
    let mut fewer = pair.clone();
    fewer.services.pop();
    assert_eq!(check_reloadable(&pair, &fewer), Ok(()));
}

#[test]
fn each_setting_fixed_while_lb_runs_is_named() {
    let running = config(&[], VRRP);
    for (global, rest, field) in [
        (r#"interface = "eth1""#, VRRP, "global.interface"),
        ("flow_table_size = 1024", VRRP, "global.flow_table_size"),
        ("maglev_table_size = 13", VRRP, "global.maglev_table_size"),
        ("max_services = 8", VRRP, "global.max_services"),
        ("max_backends = 8", VRRP, "global.max_backends"),
        (r#"xdp_mode = "generic""#, VRRP, "global.xdp_mode"),
        (r#"api = "127.0.0.1:9999""#, VRRP, "global.api"),
        (r#"pin_dir = "/sys/fs/bpf/other""#, VRRP, "global.pin_dir"),
        (
            "rate_limit_table_size = 16",
            VRRP,
            "global.rate_limit_table_size",
        ),
        (
            "flow_insert_limit_per_cpu = 0",
            VRRP,
            "global.flow_insert_limit_per_cpu",
        ),
        ("", "", "[vrrp]"),
        ("", "[vrrp]\nvrid = 52\npriority = 150\n", "vrrp.vrid"),
        ("", "[vrrp]\nvrid = 51\npriority = 100\n", "vrrp.priority"),
        (
            "",
            "[vrrp]\nvrid = 51\npriority = 150\nadvert_interval = \"100ms\"\n",
            "vrrp.advert_interval",
        ),
        (
            "",
            "[vrrp]\nvrid = 51\npriority = 150\nnotify_master = \"true\"\n",
            "vrrp.notify_master",
        ),
        (
            "",
            "[vrrp]\nvrid = 51\npriority = 150\ntrack_services = [\"web\"]\n",
            "vrrp.track_services",
        ),
    ] {
        let proposed = if global.starts_with("interface") {
            let mut proposed = config(&[], rest);
            // Its defaults follow: pin_dir, vrrp.interface; the interface is named.
            proposed.global.interface = "eth1".into();
            proposed
        } else {
            config(&[global], rest)
        };
        assert_eq!(refused(&running, &proposed), field, "{global} {rest}");
        assert_eq!(
            RestartRequired { field }.to_string(),
            format!(
                "{field} cannot change while lb runs: restart lb to apply it (nothing was changed)"
            )
        );
    }
}

#[test]
fn the_gateway_address_needs_a_restart() {
    let two_armed = [r#"server_interface = "eth1""#];
    let with_gateway = |address: &str| {
        config(
            &two_armed,
            &format!("{VRRP}gateway_address = \"{address}\"\n"),
        )
    };
    let running = with_gateway("10.1.0.1");
    for proposed in [with_gateway("10.1.0.2"), config(&two_armed, VRRP)] {
        assert_eq!(refused(&running, &proposed), "vrrp.gateway_address");
    }
    assert_eq!(
        refused(&config(&two_armed, VRRP), &running),
        "vrrp.gateway_address"
    );
    assert_eq!(
        check_reloadable(&running, &with_gateway("10.1.0.1")),
        Ok(())
    );
}

#[test]
fn a_service_on_a_new_vip_changes_the_default_virtual_addresses() {
    let running = config(&[], VRRP);
    let proposed = parse(
        &format!(
            "[global]\ninterface = \"eth0\"\n\
             [[service]]\nname = \"web\"\nvip = \"10.0.0.100\"\nport = 80\nprotocol = \"tcp\"\n\
             backend = [{{ name = \"web1\", address = \"10.0.0.1\" }}]\n\
             [[service]]\nname = \"dns\"\nvip = \"10.0.0.101\"\nport = 53\nprotocol = \"udp\"\n\
             backend = [{{ name = \"dns1\", address = \"10.0.0.2\" }}]\n{VRRP}"
        ),
        "lb.toml",
    )
    .unwrap();
    assert_eq!(
        refused(&running, &proposed),
        "vrrp.virtual_addresses (by default every service VIP)"
    );
}

#[test]
fn bgp_settings_need_a_restart() {
    let bgp = "[bgp]\ntable = 200\n";
    let running = config(&[], bgp);
    assert_eq!(
        refused(&running, &config(&[], "[bgp]\ntable = 201\n")),
        "bgp.table"
    );
    assert_eq!(refused(&running, &config(&[], "")), "[bgp]");
    let mut fewer = running.clone();
    fewer.services.pop();
    assert_eq!(check_reloadable(&running, &fewer), Ok(()));
}

#[test]
fn service_changes_are_named_by_kind() {
    let running = config(&[], "");
    let mut proposed = running.clone();
    proposed.services[0].backends[0].weight = 3;
    proposed.services.remove(1);
    let mut api = running.services[1].clone();
    api.name = "api".into();
    api.port = 443;
    proposed.services.push(api);
    let changes = ServiceChanges::between(&running, &proposed);
    assert_eq!(
        changes,
        ServiceChanges {
            added: vec!["api".into()],
            removed: vec!["dns".into()],
            changed: vec!["web".into()],
            unchanged: 0,
        }
    );
    assert_eq!(
        changes.to_string(),
        "services: 1 added (api), 1 removed (dns), 1 changed (web), 0 unchanged"
    );
    assert_eq!(
        ServiceChanges::between(&running, &running).to_string(),
        "services: 2 unchanged"
    );
}
