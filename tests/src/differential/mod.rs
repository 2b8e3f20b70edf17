//! The differential test of the data path: generated packets go through the
//! loaded XDP program (`BPF_PROG_TEST_RUN`) and through the reference model
//! ([`lb_common::model`]) over the same map contents, and the two must agree
//! byte for byte on every packet.
//!
//! A run is a series of rounds; each loads a fresh data path, programs the
//! next named setup into it ([`setup`]), mirrors the maps into the model and
//! steps the two together ([`mirror`]) over the round's packets
//! ([`generate`]): first, once per setup, a sweep of the edge cases, then
//! random packets. The test thread is pinned to one CPU, so the model reads
//! the round-robin cursors the program uses. Any disagreement is reported
//! with a [`Fixture`] ready to paste into `tests/tests/fixtures.rs`.
//!
//! `tests/tests/differential.rs` runs a fixed-seed batch in CI; the
//! `differential` binary (`cargo xtask fuzz --packets N --seed S`) runs more.
//! Needs root.

mod affinity;
mod fixture;
mod frames;
mod generate;
mod kernel;
mod mirror;
mod rng;
mod setup;

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use lb::dataplane::Dataplane;
use lb_common::handshake::HandshakeCounters;
use lb_common::model::{FlowChange, NatRewrite};

pub use fixture::{from_hex, to_hex, Fixture};
pub use generate::Kind;
pub use kernel::KernelMaps;

use generate::{Generator, Packet};
use mirror::{Mirror, Stepped};
use rng::Rng;
use setup::Setup;

/// The seed of the batch CI runs.
pub const CI_SEED: u64 = 0x0010_2025;
/// The number of packets CI runs.
pub const CI_PACKETS: usize = 48_000;

/// Spare flow-table entries beyond one per packet, so that the LRU never
/// evicts during a round (its per-CPU free lists take up to 128 entries per
/// CPU before the table is full).
const FLOW_TABLE_SLACK: usize = 8192;
/// Packets between two checks of every counter and cursor.
const FULL_CHECK_EVERY: usize = 1000;

/// What to run.
#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    /// Packets in all.
    pub packets: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Packets per round (per load of the data path).
    pub packets_per_round: usize,
    /// Disagreements kept in full; later ones are only counted.
    pub max_reported: usize,
}

impl RunOptions {
    /// `packets` packets from `seed`, in rounds of 12,000.
    pub fn new(packets: usize, seed: u64) -> Self {
        Self {
            packets,
            seed,
            packets_per_round: 12_000,
            max_reported: 20,
        }
    }
}

/// One way the program and the model differed.
#[derive(Clone, Debug)]
pub struct Disagreement {
    /// The setup of the round.
    pub setup: &'static str,
    /// The packet's number in the run, or the number of packets run before
    /// a periodic check found the difference.
    pub packet: usize,
    /// The packet's kind; `None` for a periodic check.
    pub kind: Option<Kind>,
    /// What differed.
    pub mismatches: Vec<String>,
    /// The packet as a fixture; `None` for a periodic check.
    pub fixture: Option<Fixture>,
}

impl Disagreement {
    /// The disagreement as Rust to paste into `tests/tests/fixtures.rs` (a
    /// comment alone for a periodic check).
    pub fn source(&self, seed: u64) -> String {
        let mut comment = vec![match self.kind {
            Some(kind) => format!(
                "Differential disagreement: seed {seed}, packet {} ({}), setup {}. The program:",
                self.packet,
                kind.name(),
                self.setup
            ),
            None => format!(
                "Differential disagreement found by the check after packet {} (seed {seed}, \
                 setup {}); no single packet to replay:",
                self.packet, self.setup
            ),
        }];
        comment.extend(
            self.mismatches
                .iter()
                .map(|mismatch| format!("- {mismatch}")),
        );
        match &self.fixture {
            Some(fixture) => fixture.source(
                &format!("differential_seed_{seed}_packet_{}", self.packet),
                &comment,
            ),
            None => comment.iter().map(|line| format!("// {line}\n")).collect(),
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub seed: u64,
    /// Packets run through both.
    pub packets: usize,
    /// Of those, frames shorter than Ethernet, refused by the kernel as the
    /// model predicts.
    pub refused: usize,
    pub rounds: usize,
    pub by_kind: BTreeMap<&'static str, usize>,
    /// By the model's action.
    pub by_action: BTreeMap<&'static str, usize>,
    /// By the model's reason.
    pub by_reason: BTreeMap<&'static str, usize>,
    /// Forwarded packets that inserted a flow-table entry.
    pub flows_inserted: usize,
    /// Forwarded packets that replaced an entry (its backend no longer served).
    pub flows_replaced: usize,
    /// Forwarded new flows left out of the flow table (`insert_skipped`).
    pub flows_skipped: usize,
    /// Forwarded packets of an established flow.
    pub established: usize,
    /// Of those, packets that rewrote the flow's last-seen mark (a new clock
    /// tick, a FIN or RST, a SYN reopening a closed flow).
    pub flows_marked: usize,
    /// Packets that moved a round-robin cursor.
    pub cursor_advances: usize,
    /// ICMP "fragmentation needed" sent on to the backend of its flow.
    pub frag_needed_forwarded: usize,
    /// What the model counted of passive health, over all backends.
    pub handshakes: HandshakeCounters,
    /// SYNs given to another backend than their own by passive health: a
    /// retransmission, or a backend ejected (their packet wrote the
    /// records of two backends).
    pub second_chances: usize,
    /// Packets forwarded by a `nat` service, their destination rewritten.
    pub nat_forwards: usize,
    /// `nat` backends' replies translated back to their service.
    pub nat_replies: usize,
    /// `NAT_CLIENTS` writes: a client's MAC learnt by a new flow.
    pub nat_clients_learnt: usize,
    /// The first disagreements, in full.
    pub disagreements: Vec<Disagreement>,
    /// All disagreements.
    pub disagreement_count: usize,
    /// How often each kind of difference was seen ("action", "counters of
    /// backend", ...), over all disagreements.
    pub by_mismatch: BTreeMap<String, usize>,
    pub elapsed: Duration,
}

impl Report {
    fn record(&mut self, kind: Kind, stepped: &Stepped) {
        self.packets += 1;
        *self.by_kind.entry(kind.name()).or_default() += 1;
        if stepped.refused {
            self.refused += 1;
            return;
        }
        let decision = &stepped.expectation.decision;
        *self.by_action.entry(decision.action.name()).or_default() += 1;
        if let Some(reason) = decision.reason {
            *self.by_reason.entry(reason.name()).or_default() += 1;
        }
        match decision.flow_change {
            FlowChange::Inserted { .. } => self.flows_inserted += 1,
            FlowChange::Replaced { .. } => self.flows_replaced += 1,
            FlowChange::Skipped { .. } => self.flows_skipped += 1,
            FlowChange::Unchanged | FlowChange::Marked { .. } if decision.backend_id.is_some() => {
                self.established += 1;
                self.flows_marked += usize::from(decision.flow_change != FlowChange::Unchanged);
            }
            FlowChange::Unchanged | FlowChange::Marked { .. } => {}
        }
        self.cursor_advances += usize::from(decision.cursor_advance.is_some());
        self.frag_needed_forwarded +=
            usize::from(kind == Kind::FragNeeded && decision.backend_id.is_some());
        for &(_, delta) in &decision.handshakes.counted {
            self.handshakes = self.handshakes.plus(delta);
        }
        let watches = &decision.handshakes.watches;
        self.second_chances += usize::from(watches.iter().any(|(id, _)| *id != watches[0].0));
        match decision.nat {
            Some(NatRewrite::ToBackend) => self.nat_forwards += 1,
            Some(NatRewrite::Reply(_)) => self.nat_replies += 1,
            None => {}
        }
        self.nat_clients_learnt += usize::from(decision.nat_client.is_some());
    }

    fn disagree(&mut self, disagreement: Disagreement, max_reported: usize) {
        self.disagreement_count += 1;
        for mismatch in &disagreement.mismatches {
            *self
                .by_mismatch
                .entry(mismatch_topic(mismatch))
                .or_default() += 1;
        }
        if self.disagreements.len() < max_reported {
            self.disagreements.push(disagreement);
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per_packet = self.elapsed.as_secs_f64() * 1e6 / self.packets.max(1) as f64;
        writeln!(
            f,
            "differential: seed {}, {} packets in {} rounds, {:.1} s ({per_packet:.0} us/packet), \
             {} disagreements",
            self.seed,
            self.packets,
            self.rounds,
            self.elapsed.as_secs_f64(),
            self.disagreement_count
        )?;
        writeln!(
            f,
            "  refused by the kernel (shorter than Ethernet): {}",
            self.refused
        )?;
        for (title, counts) in [
            ("kinds", &self.by_kind),
            ("actions", &self.by_action),
            ("reasons", &self.by_reason),
        ] {
            let list: Vec<String> = counts
                .iter()
                .map(|(name, n)| format!("{name} {n}"))
                .collect();
            writeln!(f, "  {title}: {}", list.join(", "))?;
        }
        write!(
            f,
            "  flows: {} inserted, {} replaced, {} not inserted, {} established ({} marked seen); \
             {} round-robin cursor advances",
            self.flows_inserted,
            self.flows_replaced,
            self.flows_skipped,
            self.established,
            self.flows_marked,
            self.cursor_advances
        )?;
        write!(
            f,
            "\n  handshakes: {} completed, {} retransmitted, {} failed; {} second chances",
            self.handshakes.completed,
            self.handshakes.retransmitted,
            self.handshakes.failed,
            self.second_chances
        )?;
        write!(
            f,
            "\n  nat: {} forwarded, {} replies translated, {} clients learnt",
            self.nat_forwards, self.nat_replies, self.nat_clients_learnt
        )?;
        if !self.by_mismatch.is_empty() {
            let list: Vec<String> = self
                .by_mismatch
                .iter()
                .map(|(topic, n)| format!("{topic} {n}"))
                .collect();
            write!(f, "\n  differences: {}", list.join(", "))?;
        }
        Ok(())
    }
}

/// What a mismatch is about: its text before the first colon, numbers left
/// out ("counters of backend 3: ..." is about "counters of backend").
fn mismatch_topic(mismatch: &str) -> String {
    let topic = mismatch.split(':').next().unwrap_or(mismatch);
    let words: Vec<&str> = topic
        .split_whitespace()
        .filter(|word| !word.chars().all(|c| c.is_ascii_digit()))
        .collect();
    words.join(" ")
}

/// Fails unless the process runs as root (loading BPF programs needs it).
pub fn ensure_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "the differential test loads BPF programs and needs root: run it as root \
             (`sudo -E cargo test -p lb-tests --release --test differential`, or `cargo xtask test`)"
        );
    }
    Ok(())
}

/// Runs `options.packets` packets through the program and the model.
pub fn run(options: &RunOptions) -> Result<Report> {
    ensure_root()?;
    let cpu = affinity::pin_to_current_cpu().context("pinning the test thread to its CPU")?;
    let started = Instant::now();
    let setups = setup::setups();
    let mut seeds = Rng::new(options.seed);
    let mut report = Report {
        seed: options.seed,
        ..Report::default()
    };
    while report.packets < options.packets {
        let setup = &setups[report.rounds % setups.len()];
        let mut generator = Generator::new(setup, seeds.next_u64());
        let budget = (options.packets - report.packets).min(options.packets_per_round);
        let mut packets = if report.rounds < setups.len() {
            generator.sweep()
        } else {
            Vec::new()
        };
        packets.truncate(budget);
        while packets.len() < budget {
            packets.push(generator.random());
        }
        run_round(setup, &packets, cpu, options, &mut report)
            .with_context(|| format!("round {} (setup {})", report.rounds, setup.name))?;
        report.rounds += 1;
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Loads a data path with `setup`, mirrors it and steps both over
/// `packets`, with the setup's midway changes between the two halves.
fn run_round(
    setup: &Setup,
    packets: &[Packet],
    cpu: usize,
    options: &RunOptions,
    report: &mut Report,
) -> Result<()> {
    let flow_table_size = options.packets_per_round + setup.flows().len() + FLOW_TABLE_SLACK;
    let flow_table_size = u32::try_from(flow_table_size).context("packets_per_round")?;
    let mut dataplane = Dataplane::load(&setup.load_options(flow_table_size))?;
    let mut kernel = KernelMaps::open(&dataplane)?;
    setup.program(&mut dataplane, &mut kernel)?;
    let (first_half, second_half) = packets.split_at(packets.len() / 2);

    let mut mirror = Mirror::new(&dataplane, &kernel, setup::map_sizes(), cpu)?;
    setup.check_programmed(mirror.contents())?;
    step_all(setup, false, &mut mirror, first_half, options, report)?;

    setup.change_midway(&mut dataplane, &mut kernel)?;
    let mut mirror = Mirror::new(&dataplane, &kernel, setup::map_sizes(), cpu)?;
    step_all(setup, true, &mut mirror, second_half, options, report)
}

/// Steps `mirror` over `packets` (sent `after_midway` changes or before),
/// checking everything periodically and the whole flow table at the end.
fn step_all(
    setup: &Setup,
    after_midway: bool,
    mirror: &mut Mirror<'_>,
    packets: &[Packet],
    options: &RunOptions,
    report: &mut Report,
) -> Result<()> {
    for (index, packet) in packets.iter().enumerate() {
        let stepped = mirror.step(&packet.frame)?;
        report.record(packet.kind, &stepped);
        if !stepped.mismatches.is_empty() {
            let disagreement = Disagreement {
                setup: setup.name,
                packet: report.packets - 1,
                kind: Some(packet.kind),
                fixture: Some(fixture_of(setup, after_midway, &packet.frame, &stepped)),
                mismatches: stepped.mismatches,
            };
            report.disagree(disagreement, options.max_reported);
        }
        let last = index + 1 == packets.len();
        if last || (index + 1) % FULL_CHECK_EVERY == 0 {
            let mismatches = mirror.check_everything(last)?;
            if !mismatches.is_empty() {
                let disagreement = Disagreement {
                    setup: setup.name,
                    packet: report.packets,
                    kind: None,
                    mismatches,
                    fixture: None,
                };
                report.disagree(disagreement, options.max_reported);
            }
        }
    }
    Ok(())
}

/// The fixture that replays one stepped packet with the model's expectation.
fn fixture_of(setup: &Setup, after_midway: bool, frame: &[u8], stepped: &Stepped) -> Fixture {
    let expectation = &stepped.expectation;
    let decision = &expectation.decision;
    let flow_before = expectation.flow_before.map(|flow| flow.backend_id);
    Fixture {
        setup: setup.name.to_owned(),
        after_midway,
        frame: to_hex(frame),
        flow_before,
        rr_cursor_before: expectation.rr_cursor_before,
        action: decision.action,
        output: to_hex(&decision.output),
        reason: decision.reason,
        flow_after: match decision.flow_change {
            FlowChange::Inserted { flow, .. } | FlowChange::Replaced { flow, .. } => {
                Some(flow.backend_id)
            }
            FlowChange::Unchanged | FlowChange::Skipped { .. } | FlowChange::Marked { .. } => {
                flow_before
            }
        },
    }
}
