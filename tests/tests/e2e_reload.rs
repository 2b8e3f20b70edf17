//! Reloading the configuration end to end through the lab: `lb` on lb1
//! serves `web` (web1, web2; HTTP checks) and `alt` (web3, on another VIP)
//! while long-lived keep-alive connections run through the VIP, and its
//! file is rewritten and reloaded four times:
//!
//! 1. `lb reload`: web3 joins `web` (it is checked, comes up, takes new flows);
//! 2. SIGHUP: web1's weight changes (web2 keeps the weight set through the API);
//! 3. `lb reload`: `alt` is removed;
//! 4. a file that changes `flow_table_size` (restart-only) and then an
//!    invalid one: both refused with the reason, counted, and the running
//!    configuration stays.
//!
//! Every long-lived connection keeps working on its backend throughout, and
//! `/status` follows each step: the services, weights, the hash (the one
//! `lb check-config` prints for the file) and the reload counts.
//!
//! A VRRP pair's master reloads a file without web3, then with it again
//! (and another check interval): while web3's checks run, its priority stays
//! the configured one, and neither node changes state.
//!
//! Needs root (namespaces, XDP) and the built `lb` (`LB_BINARY`); without
//! them it fails, never skips. The labs' prefixes start with `lbr-`; the
//! tests run one at a time.

use std::cell::Cell;
use std::time::Duration;

use lb_tests::e2e::{
    one_at_a_time, BackendState, LongLived, Pair, ReloadCounts, Setup, StatusReport, VrrpState,
};
use xtask::lab::{self, Node, PairOptions};

const SERVICE: &str = lab::SERVICE_NAME;

/// How long a reload may take to show in `/status`.
const RELOAD_SHOWS: Duration = Duration::from_secs(5);

/// `web` over `webs` (name and weight), HTTP checks every 300 ms (rise 2),
/// then `alt` on 10.0.0.101 over web3 (unchecked) if `with_alt`; `global`
/// lines first.
fn config(global: &str, webs: &[(Node, u32)], with_alt: bool) -> String {
    let mut text = format!(
        "[global]\ninterface = \"{interface}\"\n{global}\n\n\
         [[service]]\nname = \"{SERVICE}\"\nvip = \"{vip}\"\nport = {port}\nprotocol = \"tcp\"\n\
         [service.health]\ntype = \"http\"\npath = \"/health\"\nexpect_body = \"ok\"\n\
         interval = \"300ms\"\ntimeout = \"300ms\"\nrise = 2\nfall = 2\n",
        interface = lab::HOST_INTERFACE,
        vip = lab::VIP,
        port = lab::HTTP_PORT,
    );
    for (web, weight) in webs {
        let address = web.address().expect("web servers have addresses");
        text.push_str(&format!(
            "\n[[service.backend]]\nname = \"{web}\"\naddress = \"{address}\"\nweight = {weight}\n"
        ));
    }
    if with_alt {
        let web3 = Node::Web(3).address().expect("web servers have addresses");
        text.push_str(&format!(
            "\n[[service]]\nname = \"alt\"\nvip = \"10.0.0.101\"\nport = {port}\nprotocol = \"tcp\"\n\
             [service.health]\ntype = \"none\"\n\
             [[service.backend]]\nname = \"web3\"\naddress = \"{web3}\"\n",
            port = lab::HTTP_PORT,
        ));
    }
    text
}

/// Writes `text` as lb1's configuration.
fn rewrite(pair: &Pair, text: &str) {
    std::fs::write(pair.config_path(Node::Lb1), text).expect("rewriting the configuration");
}

/// The hash `lb check-config` prints for lb1's configuration file now.
fn checked_hash(pair: &Pair) -> String {
    let path = pair.config_path(Node::Lb1).to_string_lossy().into_owned();
    let summary = pair.lb(Node::Lb1, &["check-config", &path]);
    summary
        .trim_end()
        .rsplit(' ')
        .next()
        .expect("check-config ends with the hash")
        .to_owned()
}

fn reloads(status: &StatusReport) -> ReloadCounts {
    status.config().reloads
}

#[test]
fn reloads_change_the_services_while_every_connection_keeps_its_backend() {
    let _serial = one_at_a_time();
    let (web1, web2, web3) = (Node::Web(1), Node::Web(2), Node::Web(3));
    let pair = Pair::start(
        "lbr-s-",
        Setup::Single(config("", &[(web1, 1), (web2, 1)], true)),
    );
    let started = pair.status(Node::Lb1).config();
    assert_eq!(started.reloads, ReloadCounts { ok: 0, failed: 0 });
    assert_eq!(started.hash, checked_hash(&pair));
    pair.lb(Node::Lb1, &["backend", "weight", SERVICE, "web2", "2"]);
    // 8 connections, 5 requests a second for 16 s: they outlast the reloads.
    let long_lived = LongLived::open(pair.lab(), 8, 80, 5);

    // 1. web3 joins web.
    rewrite(&pair, &config("", &[(web1, 1), (web2, 1), (web3, 1)], true));
    let answer = pair.lb(Node::Lb1, &["reload"]);
    assert!(
        answer.contains("services: 1 changed (web), 1 unchanged"),
        "{answer}"
    );
    assert!(answer.contains(&checked_hash(&pair)), "{answer}");
    pair.wait_for_backend(Node::Lb1, web3, BackendState::Up, RELOAD_SHOWS);

    // 2. web1 weighs 3, by SIGHUP; web2 keeps the API's weight.
    rewrite(&pair, &config("", &[(web1, 3), (web2, 1), (web3, 1)], true));
    pair.hangup(Node::Lb1);
    let status = pair.wait_until(Node::Lb1, "reloaded by SIGHUP", RELOAD_SHOWS, |status| {
        reloads(status).ok == 2
    });
    let web = status.service(SERVICE);
    let weights = |name: &str| {
        let backend = web.backend(name);
        (backend.weight, backend.configured_weight)
    };
    assert_eq!(weights("web1"), (3, 3));
    assert_eq!(weights("web2"), (2, 1), "set through the API: kept");
    assert_eq!(status.config().hash, checked_hash(&pair));

    // 3. alt goes.
    let applied = config("", &[(web1, 3), (web2, 1), (web3, 1)], false);
    rewrite(&pair, &applied);
    let answer = pair.lb(Node::Lb1, &["reload"]);
    assert!(
        answer.contains("services: 1 removed (alt), 1 unchanged"),
        "{answer}"
    );
    let applied_hash = checked_hash(&pair);
    let status = pair.status(Node::Lb1);
    assert_eq!(
        status
            .services
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        [SERVICE]
    );
    assert_eq!(status.config().hash, applied_hash);
    // New connections reach web3 too (1 in 6 of them by weight).
    let replies = pair
        .lab()
        .http_get_many(&lab::vip_url(), 30)
        .expect("requests through the VIP");
    assert!(replies.iter().all(|reply| reply.is_ok()), "{replies:?}");
    assert!(
        replies.iter().any(|reply| reply.body == web3.name()),
        "{replies:?}"
    );

    // 4. A setting that needs a restart, then an invalid file: refused.
    rewrite(
        &pair,
        &config("flow_table_size = 1024", &[(web1, 1), (web2, 1)], false),
    );
    let refused = pair
        .try_lb(Node::Lb1, &["reload"])
        .expect_err("a restart-only change is refused");
    assert!(
        refused.to_string().contains(
            "reload failed: global.flow_table_size cannot change while lb runs: restart lb to apply it (nothing was changed)"
        ),
        "{refused}"
    );
    rewrite(&pair, &applied.replace("port = 80", "port = 0"));
    let refused = pair
        .try_lb(Node::Lb1, &["reload"])
        .expect_err("an invalid file is refused");
    let file = pair.config_path(Node::Lb1).display().to_string();
    assert!(
        refused.to_string().contains(&format!(
            "reload failed: {file}:8:8: service[{SERVICE}].port"
        )),
        "{refused}"
    );
    let status = pair.status(Node::Lb1);
    let config = status.config();
    assert_eq!(config.reloads, ReloadCounts { ok: 3, failed: 2 });
    assert_eq!(config.hash, applied_hash, "the running configuration stays");
    assert!(
        config
            .last_reload_error
            .as_deref()
            .is_some_and(|error| error.contains("service[web].port")),
        "{config:?}"
    );
    let web = status.service(SERVICE);
    assert_eq!(web.backend("web1").weight, 3);
    assert!(web
        .backends
        .iter()
        .all(|backend| backend.state == BackendState::Up));

    let connections = long_lived.finish_within(Duration::from_secs(20));
    let on = |web: Node| {
        connections
            .replies()
            .iter()
            .filter(|replies| {
                replies
                    .first()
                    .is_some_and(|reply| reply.body == web.name())
            })
            .count()
    };
    println!(
        "long-lived connections through the reloads: {} on web1, {} on web2, of {}",
        on(web1),
        on(web2),
        connections.replies().len()
    );
    connections.assert_all_survived();
    pair.down();
}

#[test]
fn a_master_that_reloads_keeps_its_priority_and_the_vip() {
    let _serial = one_at_a_time();
    let pair = Pair::start(
        "lbr-v-",
        Setup::Vrrp(PairOptions {
            checks: true,
            ..PairOptions::default()
        }),
    );
    let web3 = Node::Web(3);
    let priority = lab::priority(Node::Lb1);
    let before = Node::LBS.map(|node| pair.vrrp(node));
    let original =
        std::fs::read_to_string(pair.config_path(Node::Lb1)).expect("reading the configuration");
    let web3_block = format!(
        "\n[[service.backend]]\nname = \"{web3}\"\naddress = \"{}\"\n",
        web3.address().expect("web servers have addresses")
    );
    assert!(original.contains(&web3_block), "{original}");
    rewrite(&pair, &original.replace(&web3_block, ""));
    pair.lb(Node::Lb1, &["reload"]);
    // Back, with checks 1 s apart: web3 joins for longer than tracking's
    // 500 ms poll of the services. web1 and web2 get the new check too, from
    // their health now (up).
    let slower = original.replace("interval = \"200ms\"", "interval = \"1s\"");
    assert_ne!(slower, original);
    rewrite(&pair, &slower);
    pair.lb(Node::Lb1, &["reload"]);
    // Until web3's checks have settled, sampled as fast as /status answers.
    let lowest = Cell::new(u8::MAX);
    let joined = pair.wait_until(
        Node::Lb1,
        "showing web3 up and settled",
        RELOAD_SHOWS,
        |status| {
            let vrrp = status.vrrp();
            lowest.set(lowest.get().min(vrrp.priority));
            assert_eq!(vrrp.state, VrrpState::Master, "lb1 left master: {vrrp:?}");
            let web3 = status.service(SERVICE).backend("web3");
            web3.state == BackendState::Up && web3.settled
        },
    );
    assert_eq!(joined.config().reloads, ReloadCounts { ok: 2, failed: 0 });
    assert_eq!(
        lowest.get(),
        priority,
        "the priority dipped during the reload"
    );
    for (node, before) in Node::LBS.into_iter().zip(before) {
        let after = pair.vrrp(node);
        assert_eq!(
            (after.state, after.transitions, after.preemption_holds),
            (before.state, before.transitions, before.preemption_holds),
            "{node} changed state or held"
        );
    }
    assert_eq!(pair.vip_holders(), [Node::Lb1]);
    pair.down();
}
