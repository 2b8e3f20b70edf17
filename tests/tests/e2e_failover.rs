//! The active-passive pair end to end through the lab: `lb` on lb1
//! (priority 150) and lb2 (priority 100) with the same service, VRRP adverts
//! every 100 ms, and no static VIP. While three steady request streams run
//! from the client (a new connection per request, 1 s limit, each logged
//! with its start time and curl's exit code) and ten long-lived keep-alive
//! connections, opened through lb1, each send a request every 200 ms:
//!
//! - (a) lb1's link goes down: lb2 becomes master; lb1's link comes back: it
//!   preempts again;
//! - (a2) lb1's `lb` is SIGKILLed: its pinned data path keeps forwarding
//!   and its kernel never answers for the VIP (no RST); lb2 takes over; `lb`
//!   restarted on lb1 takes the pinned link and flow table over, starts with
//!   the backends up, and preempts back;
//! - (b) lb1's `lb` gets SIGTERM: its priority-0 advert hands over at once;
//!   restarted, it preempts back;
//! - (c) in each of these, every long-lived connection survives, answered by
//!   the same backend over the same connection throughout;
//! - (d) with preemption off, a returning lb1 stays backup;
//! - (e) malformed adverts (TTL 64, bad checksum, wrong VRID, truncated,
//!   version 2) claiming priority 254 change nothing on either node;
//! - (f) lb1's XDP link is detached: lb1 resigns at once (priority 0, VIP
//!   released) and stays backup at its tracked priority; lb2 takes over,
//!   and no request is refused or reset (lb1's guard drops what reaches its
//!   kernel meanwhile).
//!
//! Every move of the VIP is asserted three ways: the new master alone holds
//! the VIP on its `eth0`, its `/status` says master (the other's does not),
//! and its counters show it forwarded the service's traffic while master.
//! Each test prints the time the VIP took to move and the gap in the
//! request streams (the longest time between two successful request
//! starts); timing bounds are generous and only catch hangs.
//!
//! Needs root (namespaces, XDP) and the built `lb` (`cargo xtask test` builds
//! it and sets `LB_BINARY`); without them the tests fail, never skip. Each
//! test runs its own lab (prefix `lbf-<x>-`), one at a time, since they
//! measure times on a two-core machine.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

use lb::vrrp::packet::{IP_PROTOCOL, MULTICAST_GROUP};
use lb::vrrp::Advert;
use lb_tests::e2e::pins::{detach_xdp_link, missing_pins, pinned_data_path};
use lb_tests::e2e::{
    in_namespace, one_at_a_time, BackendState, Event, Pair, Setup, Traffic, VrrpReport, VrrpState,
    FAILOVER_GAP_BOUND,
};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use xtask::lab::{self, Lab, Node, PairOptions, Scheduler};

/// Generous bound on any failover: only catches hangs.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(10);
/// Generous bound on a returning lb1 becoming master (its backends are
/// checked before it may preempt).
const PREEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// The pair with the lab's defaults: 100 ms adverts, preemption on.
fn start_pair(prefix: &str) -> Pair {
    Pair::start(prefix, Setup::Vrrp(PairOptions::default()))
}

/// (a), (c), (d): lb1's link fails and returns.
#[test]
fn link_down_fails_over_to_lb2_and_lb1_preempts_back() {
    let _serial = one_at_a_time();
    let mut pair = start_pair("lbf-a-");
    let traffic = Traffic::start(pair.lab(), Duration::from_secs(14));
    sleep(Duration::from_secs(3));

    let down_at = SystemTime::now();
    pair.lab().set_link(Node::Lb1, false).expect("link down");
    let failover = pair.wait_for_master(Node::Lb2, FAILOVER_TIMEOUT);
    let lb2_at_failover = pair.counters(Node::Lb2);
    sleep(Duration::from_secs(4));
    pair.assert_forwarded_since(Node::Lb2, lb2_at_failover, "while lb1's link was down");

    let up_at = SystemTime::now();
    pair.lab().set_link(Node::Lb1, true).expect("link up");
    let preempt = pair.wait_for_master(Node::Lb1, PREEMPT_TIMEOUT);
    let lb1_at_preempt = pair.counters(Node::Lb1);
    let outcome = traffic.finish();
    pair.assert_forwarded_since(Node::Lb1, lb1_at_preempt, "after preempting");

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
    outcome.report("(a) node failure (100 ms adverts)", &events);
    outcome.connections.assert_all_survived();
    outcome.assert_no_resets();
    outcome.assert_gaps_bounded(&events, FAILOVER_GAP_BOUND);
    pair.down();
}

/// (a2), (c), (d): lb1's `lb` crashes, its data path keeps forwarding, and
/// a restarted `lb` takes it over.
#[test]
fn sigkill_leaves_a_forwarding_data_path_and_a_restart_takes_it_over() {
    let _serial = one_at_a_time();
    let mut pair = start_pair("lbf-k-");
    let pinned_before = pinned_data_path(pair.lab(), Node::Lb1);
    assert_eq!(
        pair.lab().xdp_program_ids(Node::Lb1).expect("ip link"),
        [pinned_before.program],
        "lb1's eth0 runs the pinned link's program"
    );
    let traffic = Traffic::start(pair.lab(), Duration::from_secs(16));
    sleep(Duration::from_secs(3));

    let kill_at = SystemTime::now();
    pair.kill(Node::Lb1);
    let failover = pair.wait_for_master(Node::Lb2, FAILOVER_TIMEOUT);
    let lb2_at_failover = pair.counters(Node::Lb2);
    // The crashed node's data path stays: same link, program and flow
    // table, still attached and pinned.
    assert_eq!(
        pair.lab().xdp_program_ids(Node::Lb1).expect("ip link"),
        [pinned_before.program],
        "the program outlives lb"
    );
    let missing = missing_pins(pair.lab(), Node::Lb1);
    assert!(missing.is_empty(), "pins removed: {missing:?}");
    assert_eq!(pinned_data_path(pair.lab(), Node::Lb1), pinned_before);
    sleep(Duration::from_secs(3));
    pair.assert_forwarded_since(Node::Lb2, lb2_at_failover, "while lb1's lb was dead");

    let restart_at = SystemTime::now();
    let restarted = Instant::now();
    pair.start_lb(Node::Lb1);
    // The backends the previous run had up start up, not after `rise`
    // checks (2 s apart): the first status already shows them up.
    let first = pair.wait_until(Node::Lb1, "answering", FAILOVER_TIMEOUT, |_| true);
    let first_status_after = restarted.elapsed();
    println!(
        "(a2) the restarted lb answered its first status {} ms after the restart",
        first_status_after.as_millis()
    );
    for backend in first.backends() {
        assert_eq!(
            backend.state,
            BackendState::Up,
            "the restarted lb starts {} up: {backend:?}",
            backend.name
        );
    }
    // Measured from the restart, like the other events.
    let waited_from = restarted.elapsed();
    let preempt = waited_from + pair.wait_for_master(Node::Lb1, PREEMPT_TIMEOUT);
    let lb1_at_preempt = pair.counters(Node::Lb1);
    let pinned_after = pinned_data_path(pair.lab(), Node::Lb1);
    assert_eq!(
        pinned_after.link, pinned_before.link,
        "the restarted lb took the pinned link over"
    );
    assert_ne!(
        pinned_after.program, pinned_before.program,
        "its new program replaced the old one on the link"
    );
    assert_eq!(
        pinned_after.flows, pinned_before.flows,
        "it kept the flow table of the previous run"
    );
    assert_eq!(
        pair.lab().xdp_program_ids(Node::Lb1).expect("ip link"),
        [pinned_after.program],
        "one program on lb1's eth0: the new one"
    );

    let outcome = traffic.finish();
    pair.assert_forwarded_since(Node::Lb1, lb1_at_preempt, "after preempting");
    let events = [
        Event {
            what: "lb1's lb SIGKILLed, lb2 takes the VIP",
            at: kill_at,
            vip_moved: failover,
        },
        Event {
            what: "lb1's lb restarted, takes the data path over and preempts",
            at: restart_at,
            vip_moved: preempt,
        },
    ];
    outcome.report("(a2) process crash (100 ms adverts)", &events);
    outcome.connections.assert_all_survived();
    outcome.assert_no_resets();
    outcome.assert_gaps_bounded(&events, FAILOVER_GAP_BOUND);
    pair.down();
}

/// (b), (c), (d): lb1's `lb` stops cleanly, and starts again.
#[test]
fn sigterm_hands_over_with_priority_zero_and_lb1_returns() {
    let _serial = one_at_a_time();
    let mut pair = start_pair("lbf-t-");
    let traffic = Traffic::start(pair.lab(), Duration::from_secs(20));
    sleep(Duration::from_secs(3));

    let stop_at = SystemTime::now();
    let (status, failover) = pair.terminate_until_master(Node::Lb1, Node::Lb2, FAILOVER_TIMEOUT);
    assert!(status.success(), "lb on lb1 exited with {status}");
    let lb2_at_failover = pair.counters(Node::Lb2);
    // A clean stop removes the data path and its pins.
    assert!(
        pair.lab()
            .xdp_program_ids(Node::Lb1)
            .expect("ip link")
            .is_empty(),
        "lb_xdp detached from lb1"
    );
    assert!(
        !pair.lab().lb_pin_dir(Node::Lb1).exists(),
        "lb1's pins removed"
    );
    sleep(Duration::from_secs(2));
    pair.assert_forwarded_since(Node::Lb2, lb2_at_failover, "while lb1's lb was stopped");

    let restart_at = SystemTime::now();
    pair.start_lb(Node::Lb1);
    let preempt = pair.wait_for_master(Node::Lb1, PREEMPT_TIMEOUT);
    let lb1_at_preempt = pair.counters(Node::Lb1);

    let outcome = traffic.finish();
    pair.assert_forwarded_since(Node::Lb1, lb1_at_preempt, "after preempting");
    let events = [
        Event {
            what: "lb1's lb SIGTERMed, priority 0, lb2 takes over",
            at: stop_at,
            vip_moved: failover,
        },
        Event {
            what: "lb1's lb restarted, preempts once its checks pass",
            at: restart_at,
            vip_moved: preempt,
        },
    ];
    outcome.report("(b) graceful shutdown (100 ms adverts)", &events);
    outcome.connections.assert_all_survived();
    outcome.assert_no_resets();
    outcome.assert_gaps_bounded(&events, FAILOVER_GAP_BOUND);
    pair.down();
}

/// (d) without preemption, (c): lb1 returns as backup and stays backup.
#[test]
fn without_preemption_a_returning_lb1_stays_backup() {
    let _serial = one_at_a_time();
    let options = PairOptions {
        preempt: false,
        ..PairOptions::default()
    };
    let mut pair = Pair::start("lbf-n-", Setup::Vrrp(options));
    let traffic = Traffic::start(pair.lab(), Duration::from_secs(16));
    sleep(Duration::from_secs(2));

    let stop_at = SystemTime::now();
    let (status, failover) = pair.terminate_until_master(Node::Lb1, Node::Lb2, FAILOVER_TIMEOUT);
    assert!(status.success(), "lb on lb1 exited with {status}");
    let lb2_at_failover = pair.counters(Node::Lb2);
    pair.start_lb(Node::Lb1);
    // Back at its full priority 150, above lb2's 100...
    pair.wait_until_ready(Node::Lb1);
    // ... for many Master_Down_Intervals: it would have preempted.
    sleep(Duration::from_secs(3));
    assert_eq!(pair.vip_holders(), [Node::Lb2], "lb2 keeps the VIP");
    let lb1 = pair.vrrp(Node::Lb1);
    assert_eq!(
        (lb1.state, lb1.master),
        (VrrpState::Backup, Node::Lb2.address()),
        "lb1 returns as backup of lb2: {lb1:?}"
    );
    assert_eq!(pair.vrrp(Node::Lb2).state, VrrpState::Master);

    let outcome = traffic.finish();
    pair.assert_forwarded_since(Node::Lb2, lb2_at_failover, "while master");
    let events = [Event {
        what: "lb1's lb SIGTERMed, lb2 takes over (lb1 then returns)",
        at: stop_at,
        vip_moved: failover,
    }];
    outcome.report("(d) preemption off", &events);
    outcome.connections.assert_all_survived();
    outcome.assert_no_resets();
    outcome.assert_gaps_bounded(&events, FAILOVER_GAP_BOUND);
    pair.down();
}

/// (e): malformed adverts claiming priority 254 (each would make lb1 step
/// down if believed) change nothing: both nodes keep their role, master and
/// priority, with no state transition, and each node counts every advert
/// once under its own rejection reason.
#[test]
fn malformed_adverts_are_rejected_by_the_running_pair() {
    let _serial = one_at_a_time();
    let pair = start_pair("lbf-e-");
    let before = Node::LBS.map(|node| pair.vrrp(node));

    let client = Node::Client.address().expect("the client has an address");
    let adverts = malformed_adverts(client);
    inject_from_client(
        pair.lab(),
        adverts.iter().map(|(_, _, bytes)| bytes.clone()).collect(),
    );
    // Skew_Time is under 100 ms: a believed advert would have acted.
    sleep(Duration::from_millis(1500));

    let after = Node::LBS.map(|node| pair.vrrp(node));
    println!(
        "(e) {} malformed adverts ({}) sent; lb1 {} at priority {} ({} transitions), \
         lb2 {} of {:?} ({} transitions)",
        adverts.len(),
        adverts
            .iter()
            .map(|(what, _, _)| *what)
            .collect::<Vec<_>>()
            .join(", "),
        after[0].state,
        after[0].priority,
        after[0].transitions,
        after[1].state,
        after[1].master,
        after[1].transitions,
    );
    assert_eq!(pair.vip_holders(), [Node::Lb1], "lb1 stays the only master");
    for (node, (before, after)) in Node::LBS.iter().zip(before.iter().zip(&after)) {
        let rejected: BTreeMap<&str, u64> = after
            .adverts_rejected
            .iter()
            .map(|(reason, count)| (reason.as_str(), count - before.adverts_rejected[reason]))
            .filter(|(_, added)| *added > 0)
            .collect();
        let expected: BTreeMap<&str, u64> =
            adverts.iter().map(|&(_, reason, _)| (reason, 1)).collect();
        assert_eq!(
            rejected, expected,
            "{node}: each malformed advert counted once under its reason"
        );
    }
    let unchanged = |report: &VrrpReport| {
        (
            report.state,
            report.priority,
            report.master,
            report.transitions,
        )
    };
    assert_eq!(
        after.each_ref().map(unchanged),
        before.each_ref().map(unchanged),
        "no node changed its VRRP state"
    );
    assert_eq!(after[0].state, VrrpState::Master);
    assert_eq!(
        (after[1].state, after[1].master),
        (VrrpState::Backup, Node::Lb1.address()),
        "lb2 stays backup of lb1"
    );
    pair.down();
}

/// (f): lb1's XDP link is detached under it; lb1 resigns as soon as the
/// kernel reports it (priority 0, VIP released) instead of waiting for an
/// election, stays backup, and lb2 takes over.
#[test]
fn a_detached_xdp_program_makes_the_master_resign_at_once() {
    let _serial = one_at_a_time();
    let mut pair = start_pair("lbf-x-");
    let traffic = Traffic::start(pair.lab(), Duration::from_secs(8));
    sleep(Duration::from_secs(2));
    let lb1_before = pair.vrrp(Node::Lb1);

    let detach_at = SystemTime::now();
    detach_xdp_link(pair.lab(), Node::Lb1);
    let failover = pair.wait_for_master(Node::Lb2, FAILOVER_TIMEOUT);
    let lb2_at_failover = pair.counters(Node::Lb2);
    assert!(
        pair.lab()
            .xdp_program_ids(Node::Lb1)
            .expect("ip link")
            .is_empty(),
        "lb_xdp detached from lb1"
    );
    // Several Master_Down_Intervals: lb1 stays backup while detached.
    sleep(Duration::from_secs(2));
    assert_eq!(pair.vip_holders(), [Node::Lb2], "lb2 alone holds the VIP");
    let lb1 = pair.vrrp(Node::Lb1);
    assert_eq!(
        lb1.resignations,
        lb1_before.resignations + 1,
        "lb1 resigned once: {lb1:?}"
    );
    assert!(
        lb1.state == VrrpState::Backup
            && lb1.master == Node::Lb2.address()
            && lb1.priority < lab::priority(Node::Lb2),
        "lb1 stays backup of lb2 at its tracked priority: {lb1:?}"
    );

    let outcome = traffic.finish();
    pair.assert_forwarded_since(Node::Lb2, lb2_at_failover, "after lb1 lost its program");
    let events = [Event {
        what: "lb1's XDP link detached, lb1 resigns, lb2 takes over",
        at: detach_at,
        vip_moved: failover,
    }];
    outcome.report("(f) XDP program detached (100 ms adverts)", &events);
    println!(
        "  lb1's guard dropped {} packets that reached its kernel without lb_xdp",
        pair.status(Node::Lb1).data_path_reason("bypassed_xdp")
    );
    // Between the program ceasing to run and lb1 releasing the VIP, lb1's
    // guard drops what reaches its kernel instead of letting it reset the
    // connections: clients retransmit to lb2.
    outcome.connections.assert_all_survived();
    outcome.assert_no_resets();
    outcome.assert_gaps_bounded(&events, FAILOVER_GAP_BOUND);
    pair.down();
}

/// The pair's configurations are ones `lb` accepts, with the pair's VRRP.
#[test]
fn pair_configs_are_accepted_by_lb() {
    for node in Node::LBS {
        for (preempt, checks) in [(true, false), (false, false), (true, true)] {
            let options = PairOptions {
                preempt,
                checks,
                ..PairOptions::default()
            };
            let text = lab::pair_config_toml(node, Scheduler::Maglev, &options);
            let config = lb::config::parse(&text, "pair.toml")
                .unwrap_or_else(|error| panic!("{node}: {error}"));
            let vrrp = config.vrrp.expect("a [vrrp] section").instance;
            assert_eq!(vrrp.priority, lab::priority(node));
            assert_eq!(vrrp.vrid, lab::VRID);
            assert_eq!(vrrp.advert_interval.duration(), Duration::from_millis(100));
            assert_eq!(vrrp.preempt, preempt);
            assert_eq!(vrrp.virtual_addresses, [lab::VIP]);
        }
    }
}

// ---- malformed adverts ----------------------------------------------------

/// An IPv4 datagram (header filled by hand, for IP_HDRINCL) carrying `payload`.
fn datagram(source: Ipv4Addr, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0x45, 0xc0, 0, 0, 0, 0, 0, 0, ttl, IP_PROTOCOL, 0, 0];
    bytes.extend_from_slice(&source.octets());
    bytes.extend_from_slice(&MULTICAST_GROUP.octets());
    bytes.extend_from_slice(payload);
    let total = u16::try_from(bytes.len()).expect("short").to_be_bytes();
    bytes[2..4].copy_from_slice(&total);
    bytes
}

fn advert(source: Ipv4Addr, vrid: u8, addresses: Vec<Ipv4Addr>) -> Vec<u8> {
    let advert = Advert {
        vrid,
        priority: 254,
        max_advert_interval: 10,
        addresses,
    };
    let mut buffer = vec![0u8; advert.buffer_len()];
    advert
        .emit(&mut buffer, source, MULTICAST_GROUP)
        .expect("emit");
    buffer
}

/// The five malformed adverts of the issue, from `source`, priority 254:
/// what each is, the rejection reason it must be counted under, its bytes.
fn malformed_adverts(source: Ipv4Addr) -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let valid = advert(source, lab::VRID, vec![lab::VIP]);
    let mut bad_checksum = valid.clone();
    bad_checksum[7] ^= 0x5a;
    let wrong_vrid = advert(source, lab::VRID + 1, vec![lab::VIP]);
    // The count says two addresses, only one is there.
    let mut truncated = advert(source, lab::VRID, vec![lab::VIP, lab::VIP]);
    truncated.truncate(truncated.len() - 4);
    // VRRPv2: version 2, auth type 0, interval in seconds, 8 bytes of auth data.
    let mut version2 = vec![0x21, lab::VRID, 254, 1, 0, 1, 0, 0];
    version2.extend_from_slice(&lab::VIP.octets());
    version2.extend_from_slice(&[0; 8]);
    vec![
        ("ttl 64", "ttl", datagram(source, 64, &valid)),
        (
            "bad checksum",
            "checksum",
            datagram(source, 255, &bad_checksum),
        ),
        (
            "wrong vrid",
            "vrid_mismatch",
            datagram(source, 255, &wrong_vrid),
        ),
        ("truncated", "truncated", datagram(source, 255, &truncated)),
        ("version 2", "version", datagram(source, 255, &version2)),
    ]
}

/// Sends `datagrams` out of the client's `eth0`, from inside its namespace.
fn inject_from_client(lab: &Lab, datagrams: Vec<Vec<u8>>) {
    in_namespace(lab, Node::Client, move || {
        let socket = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(i32::from(IP_PROTOCOL))),
        )
        .expect("raw socket");
        socket.set_header_included_v4(true).expect("IP_HDRINCL");
        socket
            .bind_device(Some(lab::HOST_INTERFACE.as_bytes()))
            .expect("bind to eth0");
        for datagram in datagrams {
            socket
                .send_to(
                    &datagram,
                    &SockAddr::from(SocketAddrV4::new(MULTICAST_GROUP, 0)),
                )
                .expect("send");
        }
    });
}
