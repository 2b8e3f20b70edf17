//! HTTPS passed through at L4 by the VRRP pair: `lb` on lb1 (priority 150)
//! and lb2 (priority 100), 100 ms adverts, with the lab's HTTPS service
//! (443/tcp on the VIP) beside the port-80 one. `lb` holds no certificate:
//! it forwards the TCP segments (dsr-l2), and nginx on each web server
//! terminates TLS with the certificate the lab made (for `www.lab.test` and
//! the VIP, signed by the lab's own CA). Every request verifies it with
//! `curl --cacert <lab CA>`, never `-k`.
//!
//! - (a) HTTPS through the VIP works: 36 requests to `https://VIP/`, each
//!   on a new connection, all succeed (curl exit 0, `200 OK`), each body
//!   names a web server and all three answer; by name too
//!   (`--resolve www.lab.test:443:VIP`), and with TLS 1.2 only and TLS 1.3
//!   only; lb1, the master, counted them as new flows of the HTTPS service.
//! - (b) across a VRRP failover (lb1's link cut: lb2 takes over; restored:
//!   lb1 preempts back), three HTTPS request streams (a new connection per
//!   request, 1 s limit) are answered again: no request refused or reset,
//!   the gap under e2e_failover's bound ([`FAILOVER_GAP_BOUND`]), the last
//!   requests all succeed; each of ten long-lived TLS keep-alive
//!   connections opened before it is answered throughout, by one backend
//!   over one connection; lb2 forwarded the HTTPS service while master,
//!   lb1 after preempting. It prints the VIP's moves, the gap and the
//!   failed requests.
//! - (c) the check is real: a CA that signed nothing the lab serves fails
//!   verification (curl exit 60, no body) on every request, and so does a
//!   name the certificate does not hold, while the lab's CA, on the same
//!   path, succeeds.
//!
//! Needs root (namespaces, XDP) and the built `lb` (`cargo xtask test`
//! builds it and sets `LB_BINARY`); without them the tests fail, never
//! skip. Each test runs its own lab (prefix `lbtls-<x>-`), one at a time,
//! since (b) measures times on a two-core machine.

use std::collections::BTreeMap;
use std::thread::sleep;
use std::time::{Duration, SystemTime};

use lb_tests::e2e::traffic::describe;
use lb_tests::e2e::{one_at_a_time, Event, Pair, Setup, Traffic, FAILOVER_GAP_BOUND};
use xtask::lab::{self, HttpReply, Node, PairOptions, Target, VIP};

/// Generous bound on the failover (as e2e_failover's): only catches hangs.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(10);
/// Generous bound on a returning lb1 becoming master (as e2e_failover's).
const PREEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// New connections (a) sends through the VIP: a backend missing from them
/// all by chance is about one in a million.
const SPREAD_REQUESTS: usize = 36;
/// Requests of each other kind in (a) and (c).
const FEW: usize = 4;
/// curl's exit code when the server's certificate is not verified.
const CURL_PEER_FAILED_VERIFICATION: u32 = 60;

/// The pair with the lab's defaults (100 ms adverts, preemption on) and
/// the HTTPS service beside port 80.
fn start_pair(prefix: &str) -> Pair {
    Pair::start(
        prefix,
        Setup::Vrrp(PairOptions {
            https: true,
            ..PairOptions::default()
        }),
    )
}

/// `count` requests of `target` from the client, each on a new connection.
fn get(pair: &Pair, target: &Target, count: usize) -> Vec<HttpReply> {
    pair.lab()
        .get_many(target, count)
        .unwrap_or_else(|error| panic!("requests to {target:?}: {error}"))
}

/// Every reply is a verified `200 OK` whose body names a web server;
/// returns how many each one answered.
fn assert_all_answered(what: &str, replies: &[HttpReply]) -> BTreeMap<String, usize> {
    let webs: Vec<String> = Node::WEBS.iter().map(|web| web.name()).collect();
    for reply in replies {
        assert!(
            reply.is_ok() && reply.curl_exit == 0 && webs.contains(&reply.body),
            "{what}: not answered by a web server: {reply:?}"
        );
    }
    lab::tally(replies)
}

/// (a): verified HTTPS through the VIP, spread over every web server, by
/// address and by name, TLS 1.2 and 1.3.
#[test]
fn https_through_the_vip_is_verified_and_spread_over_every_web_server() {
    let _serial = one_at_a_time();
    let pair = start_pair("lbtls-a-");
    let ca = pair.lab().ca_certificate();
    let before = pair.service_counters(Node::Lb1, lab::HTTPS_SERVICE_NAME);

    let by_address = Target::vip_https(&ca);
    let spread = assert_all_answered("https://VIP/", &get(&pair, &by_address, SPREAD_REQUESTS));
    println!(
        "(a) {SPREAD_REQUESTS} new connections to {} (--cacert {}): {spread:?}",
        by_address.url,
        ca.display()
    );
    assert_eq!(
        spread.len(),
        Node::WEBS.len(),
        "every web server answers over HTTPS: {spread:?}"
    );

    let by_name = Target::vip_https_by_name(&ca);
    let tls12 = by_address.clone().with(&["--tlsv1.2", "--tls-max", "1.2"]);
    let tls13 = by_address.clone().with(&["--tlsv1.3"]);
    for (what, target) in [
        ("by name", &by_name),
        ("TLS 1.2 only", &tls12),
        ("TLS 1.3 only", &tls13),
    ] {
        let answered = assert_all_answered(what, &get(&pair, target, FEW));
        println!(
            "(a) {what} ({} {}): {answered:?}",
            target.curl_options.join(" "),
            target.url
        );
    }

    let total = SPREAD_REQUESTS + 3 * FEW;
    let forwarded = pair.assert_service_forwarded_since(
        Node::Lb1,
        lab::HTTPS_SERVICE_NAME,
        before,
        "for the requests",
    );
    assert!(
        forwarded.new_flows >= total as u64,
        "lb1 counted {} new HTTPS flows for {total} connections",
        forwarded.new_flows
    );
    pair.down();
}

/// (b): HTTPS request streams and long-lived TLS connections across lb1's
/// link going down (lb2 takes over) and coming back (lb1 preempts).
#[test]
fn https_keeps_being_answered_across_a_failover_and_back() {
    let _serial = one_at_a_time();
    let mut pair = start_pair("lbtls-b-");
    let https = Target::vip_https(&pair.lab().ca_certificate());
    let traffic = Traffic::start_to(pair.lab(), &https, Duration::from_secs(14));
    sleep(Duration::from_secs(3));

    let down_at = SystemTime::now();
    pair.lab().set_link(Node::Lb1, false).expect("link down");
    let failover = pair.wait_for_master(Node::Lb2, FAILOVER_TIMEOUT);
    let lb2_at_failover = pair.service_counters(Node::Lb2, lab::HTTPS_SERVICE_NAME);
    sleep(Duration::from_secs(4));
    pair.assert_service_forwarded_since(
        Node::Lb2,
        lab::HTTPS_SERVICE_NAME,
        lb2_at_failover,
        "while lb1's link was down",
    );

    let up_at = SystemTime::now();
    pair.lab().set_link(Node::Lb1, true).expect("link up");
    let preempt = pair.wait_for_master(Node::Lb1, PREEMPT_TIMEOUT);
    let lb1_at_preempt = pair.service_counters(Node::Lb1, lab::HTTPS_SERVICE_NAME);
    let outcome = traffic.finish();
    pair.assert_service_forwarded_since(
        Node::Lb1,
        lab::HTTPS_SERVICE_NAME,
        lb1_at_preempt,
        "after preempting",
    );

    let events = [
        Event {
            what: "lb1's link down, lb2 takes over",
            at: down_at,
            vip_moved: failover,
        },
        Event {
            what: "lb1's link up, lb1 preempts once its checks pass",
            at: up_at,
            vip_moved: preempt,
        },
    ];
    outcome.report("(b) HTTPS across a node failure (100 ms adverts)", &events);
    let failures = outcome.streams.failures();
    if !failures.is_empty() {
        println!("  failed requests: {}", describe(&failures, down_at));
    }
    let webs: Vec<String> = Node::WEBS.iter().map(|web| web.name()).collect();
    let answered: Vec<_> = outcome
        .streams
        .replies()
        .iter()
        .filter(|reply| reply.is_ok())
        .collect();
    assert!(
        answered.iter().all(|reply| webs.contains(&reply.body)),
        "every answer names a web server: {}",
        describe(&answered, down_at)
    );
    outcome.connections.assert_all_survived();
    outcome.assert_no_resets();
    outcome.assert_gaps_bounded(&events, FAILOVER_GAP_BOUND);
    pair.down();
}

/// (c): verification fails with a CA that did not sign the certificate, and
/// for a name the certificate does not hold; the lab's CA succeeds.
#[test]
fn a_wrong_ca_or_name_fails_verification() {
    let _serial = one_at_a_time();
    let pair = start_pair("lbtls-c-");
    let ca = pair.lab().ca_certificate();
    let unrelated = pair
        .lab()
        .write_unrelated_ca("not the lab CA")
        .expect("writing an unrelated CA");

    let wrong_ca = Target::vip_https(&unrelated);
    let wrong_name = Target::https_by_name("other.lab.test", VIP, &ca);
    for (what, target) in [
        ("an unrelated CA", &wrong_ca),
        ("a name not in the certificate", &wrong_name),
    ] {
        let replies = get(&pair, target, FEW);
        let exits: Vec<u32> = replies.iter().map(|reply| reply.curl_exit).collect();
        println!(
            "(c) {what} ({} {}): curl exit codes {exits:?}",
            target.curl_options.join(" "),
            target.url
        );
        for reply in &replies {
            assert!(
                reply.curl_exit == CURL_PEER_FAILED_VERIFICATION
                    && reply.status == 0
                    && reply.body.is_empty(),
                "{what}: verification must fail (curl exit 60, no body): {reply:?}"
            );
        }
    }
    // The same path with the lab's CA: the failures were the checks' doing.
    assert_all_answered("the lab's CA", &get(&pair, &Target::vip_https(&ca), FEW));
    pair.down();
}
