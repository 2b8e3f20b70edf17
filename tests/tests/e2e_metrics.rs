//! `GET /metrics` scraped by a real Prometheus (Debian's package): the VRRP
//! pair runs in the lab, and one Prometheus runs inside each LB node's
//! namespace (the API listens on that namespace's loopback only), scraping
//! its node every second. The test reads the series back through
//! Prometheus's HTTP API (`/api/v1/query`, curl inside the namespace) and
//! checks them against what it did: N requests through the VIP add exactly
//! N to the master's backends' `lb_backend_new_flows_total` and nothing to
//! the backup's; lb1 shows `master`, lb2 `backup`, and every backend `up`.
//!
//! Needs root (namespaces, XDP), the built `lb` (`LB_BINARY`, set by
//! `cargo xtask test`) and `prometheus` (installed by `cargo xtask
//! bootstrap`); without them it fails, never skips. Each Prometheus is
//! stopped by PID before the lab is removed, also when the test fails.

use std::thread::sleep;
use std::time::{Duration, Instant};

use lb_tests::e2e::{Pair, Setup};
use xtask::lab::{self, Lab, Node, NsProcess, PairOptions};

/// Requests sent through the VIP.
const REQUESTS: usize = 60;

/// Where each Prometheus listens, inside its node's namespace.
const PROMETHEUS: &str = "127.0.0.1:9090";

/// How long Prometheus gets to start and to scrape what the test expects.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(30);

const POLL: Duration = Duration::from_millis(250);

#[test]
fn prometheus_scrapes_both_nodes_and_counts_every_new_flow() {
    let pair = Pair::start("lbm-", Setup::Vrrp(PairOptions::default()));
    // Declared after the pair: stopped before the lab is torn down.
    let prometheus: Vec<NsProcess> = Node::LBS
        .iter()
        .map(|&node| start_prometheus(pair.lab(), node))
        .collect();
    let service = lab::SERVICE_NAME;
    let new_flows = format!("sum(lb_backend_new_flows_total{{service=\"{service}\"}})");

    for node in Node::LBS {
        wait_for(pair.lab(), node, "up{job=\"lb\"}", 1.0);
        wait_for(pair.lab(), node, "lb_build_info", 1.0);
        for backend in Node::WEBS {
            let state = format!(
                "lb_backend_state{{service=\"{service}\",backend=\"{}\",state=\"up\"}}",
                backend.name()
            );
            wait_for(pair.lab(), node, &state, 1.0);
        }
    }
    wait_for(
        pair.lab(),
        Node::Lb1,
        "lb_vrrp_state{state=\"master\"}",
        1.0,
    );
    wait_for(
        pair.lab(),
        Node::Lb2,
        "lb_vrrp_state{state=\"backup\"}",
        1.0,
    );
    wait_for(
        pair.lab(),
        Node::Lb1,
        "lb_vrrp_configured_priority",
        f64::from(lab::priority(Node::Lb1)),
    );

    // What Prometheus shows before, once it agrees with the node's /status.
    let before = Node::LBS.map(|node| {
        let status = pair.status(node);
        let flows: u64 = status
            .service(service)
            .backends
            .iter()
            .map(|b| b.counters.new_flows)
            .sum();
        wait_for(pair.lab(), node, &new_flows, flows as f64);
        flows as f64
    });

    let replies = pair
        .lab()
        .http_get_many(&lab::vip_url(), REQUESTS)
        .expect("requests from the client");
    let failed = replies.iter().filter(|reply| !reply.is_ok()).count();
    assert_eq!(failed, 0, "{failed} of {REQUESTS} requests failed");

    wait_for(
        pair.lab(),
        Node::Lb1,
        &new_flows,
        before[0] + REQUESTS as f64,
    );
    // The backup forwarded nothing; its next scrapes still say so.
    sleep(Duration::from_secs(2));
    assert_eq!(query(pair.lab(), Node::Lb2, &new_flows), Some(before[1]));
    let packets = format!("sum(lb_backend_packets_total{{service=\"{service}\"}})");
    let forwarded = query(pair.lab(), Node::Lb1, &packets).expect("packets on lb1");
    assert!(
        forwarded >= (REQUESTS * 3) as f64,
        "{forwarded} packets for {REQUESTS} connections"
    );

    drop(prometheus);
    pair.down();
}

/// Starts Prometheus inside `node`, scraping `lb`'s API there every second.
fn start_prometheus(lab: &Lab, node: Node) -> NsProcess {
    let dir = lab.run_dir().join(format!("prometheus-{}", node.name()));
    std::fs::create_dir_all(&dir).expect("creating Prometheus's directory");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: lb\n    static_configs:\n      \
             - targets: ['127.0.0.1:9180']\n        labels: {{node: {}}}\n",
            node.name()
        ),
    )
    .expect("writing prometheus.yml");
    let mut command = lab.command(node, "prometheus");
    command
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={PROMETHEUS}"));
    lab.spawn(
        &format!("prometheus on {node}"),
        &mut command,
        &format!("prometheus-{}.log", node.name()),
    )
    .expect("starting prometheus (cargo xtask bootstrap installs it)")
}

/// The value of the one-series result of `promql` on `node`'s Prometheus;
/// `None` while it has no such series (or does not answer yet).
fn query(lab: &Lab, node: Node, promql: &str) -> Option<f64> {
    let url = format!("http://{PROMETHEUS}/api/v1/query");
    let body = lab
        .run(
            node,
            "curl",
            &[
                "-sf",
                "--max-time",
                "5",
                "-G",
                &url,
                "--data-urlencode",
                &format!("query={promql}"),
            ],
        )
        .ok()?;
    let answer: serde_json::Value = serde_json::from_str(&body).expect("Prometheus's JSON");
    let result = answer["data"]["result"].as_array()?;
    match result.as_slice() {
        [] => None,
        [series] => series["value"][1].as_str()?.parse().ok(),
        more => panic!("{promql} on {node}: {} series: {body}", more.len()),
    }
}

/// Waits until `promql` on `node`'s Prometheus gives `expected`.
fn wait_for(lab: &Lab, node: Node, promql: &str, expected: f64) {
    let deadline = Instant::now() + SCRAPE_TIMEOUT;
    loop {
        let value = query(lab, node, promql);
        if value == Some(expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{promql} on {node}: {value:?} after {SCRAPE_TIMEOUT:?}, expected {expected}"
        );
        sleep(POLL);
    }
}
