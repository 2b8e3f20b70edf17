//! The differential test in CI: a fixed-seed batch of generated packets
//! through the loaded XDP program (`BPF_PROG_TEST_RUN`) and through the
//! reference model (`lb_common::model`), which must agree byte for byte on
//! every one. `cargo xtask fuzz --packets N --seed S` runs more.
//!
//! Needs root (loading BPF programs); without it the tests fail, never skip.

use lb_common::maps::Reason;
use lb_tests::differential::{self, Kind, RunOptions, CI_PACKETS, CI_SEED};

#[test]
fn program_and_model_agree_on_the_ci_batch() {
    let report = differential::run(&RunOptions::new(CI_PACKETS, CI_SEED))
        .unwrap_or_else(|error| panic!("{error:#}"));
    println!("{report}");
    let fixtures: String = report
        .disagreements
        .iter()
        .map(|disagreement| disagreement.source(report.seed) + "\n")
        .collect();
    assert_eq!(
        report.disagreement_count, 0,
        "the program and the model disagree; the first disagreements as fixtures:\n\n{fixtures}"
    );
    assert_eq!(report.packets, CI_PACKETS);

    // The batch reaches every path, so that agreement means something.
    for reason in Reason::ALL {
        // The kernel never runs XDP on a frame shorter than Ethernet (the
        // refusals below); `bypassed_xdp` is lb_guard's, not lb_xdp's
        // (fixtures::the_guard_*).
        if matches!(reason, Reason::ShortEthernet | Reason::BypassedXdp) {
            continue;
        }
        assert!(
            report.by_reason.get(reason.name()) > Some(&0),
            "no packet of the batch was {}",
            reason.name()
        );
    }
    assert!(report.refused > 0, "no frame shorter than Ethernet");
    for action in ["drop", "pass", "tx", "redirect"] {
        assert!(
            report.by_action.get(action) > Some(&0),
            "no packet of the batch ended in {action}"
        );
    }
    assert!(report.flows_inserted > 0, "no new flow");
    assert!(
        report.flows_skipped > 0,
        "no new flow left out of the table"
    );
    assert!(report.flows_replaced > 0, "no flow moved off a backend");
    assert!(report.established > 0, "no packet of an established flow");
    assert!(
        report.flows_marked > 0,
        "no packet rewrote an established flow's last-seen mark"
    );
    assert!(report.cursor_advances > 0, "no round-robin pick");
    let handshakes = report.handshakes;
    assert!(handshakes.completed > 0, "no handshake completed");
    assert!(handshakes.retransmitted > 0, "no SYN retransmitted");
    assert!(
        handshakes.failed > handshakes.retransmitted,
        "no watched handshake overdue: {handshakes:?}"
    );
    assert!(report.second_chances > 0, "no SYN given a second chance");
    assert!(
        report.frag_needed_forwarded > 0,
        "no ICMP fragmentation-needed reached a flow's backend"
    );
    assert!(
        report.nat_forwards > 0,
        "no packet forwarded by a nat service"
    );
    assert!(report.nat_replies > 0, "no nat reply translated back");
    assert!(report.nat_clients_learnt > 0, "no nat client learnt");
    assert!(report.rounds >= 2, "every setup runs");
    assert_eq!(
        report.by_kind.len(),
        Kind::ALL.len(),
        "every kind of packet is generated: {:?}",
        report.by_kind
    );
}

/// Fixtures in the form `cargo xtask fuzz` prints them replay against the
/// program: an ACK of a flow the setup left on draining backend 11 stays
/// there; a SYN to the round-robin service with its cursor at slot 3 of the
/// ring `4 6 4 5 6 4` goes to backend 5.
#[test]
fn printed_fixtures_replay_against_the_program() {
    lb_tests::differential::Fixture {
        setup: "mixed".into(),
        after_midway: false,
        frame: "0200000000fe020000000101080045000028123400004006333dc63364c80a0000649c400050000003e8000007d05010faf000000000".into(),
        flow_before: Some(11),
        rr_cursor_before: None,
        action: lb_common::model::XdpAction::Tx,
        output: "02000000100b0200000000fe080045000028123400004006333dc63364c80a0000649c400050000003e8000007d05010faf000000000".into(),
        reason: None,
        flow_after: Some(11),
    }
    .assert_program_agrees();

    lb_tests::differential::Fixture {
        setup: "mixed".into(),
        after_midway: false,
        frame: "0200000000fe0200000001010800450000281234000040063404c63364010a0000644e2101bb000003e8000007d05002faf000000000".into(),
        flow_before: None,
        rr_cursor_before: Some((1, 3)),
        action: lb_common::model::XdpAction::Tx,
        output: "0200000010050200000000fe0800450000281234000040063404c63364010a0000644e2101bb000003e8000007d05002faf000000000".into(),
        reason: None,
        flow_after: Some(5),
    }
    .assert_program_agrees();
}

/// A fixture whose expectation the program does not meet fails, naming the
/// difference (so that a pasted disagreement fails until it is fixed).
#[test]
#[should_panic(expected = "action: expected drop, program returned 3")]
fn a_fixture_the_program_does_not_meet_fails() {
    lb_tests::differential::Fixture {
        setup: "mixed".into(),
        after_midway: false,
        frame: "0200000000fe020000000101080045000028123400004006333dc63364c80a0000649c400050000003e8000007d05010faf000000000".into(),
        flow_before: Some(11),
        rr_cursor_before: None,
        action: lb_common::model::XdpAction::Drop,
        output: "0200000000fe020000000101080045000028123400004006333dc63364c80a0000649c400050000003e8000007d05010faf000000000".into(),
        reason: Some(lb_common::maps::Reason::ShortL4),
        flow_after: Some(11),
    }
    .assert_program_agrees();
}
