//! One loaded data path and the model's mirror of it, stepped together: each
//! packet goes through `BPF_PROG_TEST_RUN` and through
//! [`lb_common::model::decide`], and everything the packet can change is
//! compared (action, output bytes, reason and action counters, the flow-table
//! entry, the round-robin cursor, the service and backend counters, the
//! handshake records and counters, the `NAT_CLIENTS` entry of its source).

use anyhow::{Context as _, Result};
use lb::dataplane::{CounterReader as _, Dataplane};
use lb_common::handshake::{HandshakeCounters, HandshakeWatch};
use lb_common::maps::{programs, Counters, Flow, Reason, XDP_ACTION_COUNT};
use lb_common::model::{self, Decision, MapContents, MapSizes, XdpAction};

use super::kernel::KernelMaps;
use super::setup::INGRESS;

/// The smallest frame the kernel runs XDP on; shorter ones are refused (`EINVAL`).
const MIN_TEST_RUN_FRAME: usize = 14;

/// The counters the program should hold by now.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Ledger {
    reasons: [u64; Reason::COUNT as usize],
    actions: [u64; XDP_ACTION_COUNT as usize],
    services: Vec<Counters>,
    backends: Vec<Counters>,
    handshakes: Vec<HandshakeCounters>,
}

impl Ledger {
    /// The kernel's counters, summed over CPUs.
    fn read(dataplane: &Dataplane, sizes: MapSizes) -> Result<Self> {
        Ok(Self {
            reasons: dataplane.counters().reason_counters()?,
            actions: dataplane.counters().action_counters()?,
            services: (0..sizes.max_services)
                .map(|id| dataplane.counters().service_counters(id))
                .collect::<Result<_, _>>()?,
            backends: (0..sizes.max_backends)
                .map(|id| dataplane.counters().backend_counters(id))
                .collect::<Result<_, _>>()?,
            handshakes: (0..sizes.max_backends)
                .map(|id| dataplane.counters().handshake_counters(id))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Adds what `decision` counts.
    fn add(&mut self, decision: &Decision) {
        self.actions[decision.action as usize] += 1;
        if let Some(reason) = decision.reason {
            self.reasons[reason as usize] += 1;
        }
        for (counters, traffic) in [
            (&mut self.services, decision.service_traffic),
            (&mut self.backends, decision.backend_traffic),
        ] {
            if let Some(traffic) = traffic {
                if let Some(entry) = counters.get_mut(traffic.index as usize) {
                    *entry = sum(*entry, traffic.delta);
                }
            }
        }
        for &(id, delta) in &decision.handshakes.counted {
            if let Some(entry) = self.handshakes.get_mut(id as usize) {
                *entry = entry.plus(delta);
            }
        }
    }
}

/// `watch` without the times its handshakes were opened: the program reads
/// the kernel's clock, the model the packet's (see `lb_common::model`), so
/// only the rest is compared.
fn timeless(mut watch: HandshakeWatch) -> HandshakeWatch {
    for pending in &mut watch.pending {
        pending.opened_at = 0;
    }
    watch
}

fn sum(a: Counters, b: Counters) -> Counters {
    Counters {
        packets: a.packets + b.packets,
        bytes: a.bytes + b.bytes,
        new_flows: a.new_flows + b.new_flows,
    }
}

/// What the model expected of one packet, and the state it started from
/// (enough to replay it as a fixture).
#[derive(Clone, Debug)]
pub struct Expectation {
    pub decision: Decision,
    /// The flow-table entry of the packet's 5-tuple before it.
    pub flow_before: Option<Flow>,
    /// The round-robin cursor it moved, before it: (service id, value).
    pub rr_cursor_before: Option<(u32, u32)>,
}

/// The outcome of one packet through both.
pub struct Stepped {
    pub expectation: Expectation,
    /// The kernel refused the frame (shorter than Ethernet), as expected.
    pub refused: bool,
    /// Every way the program differed from the model; empty when they agree.
    pub mismatches: Vec<String>,
}

/// A loaded data path and its mirror in the model.
pub struct Mirror<'a> {
    dataplane: &'a Dataplane,
    kernel: &'a KernelMaps,
    cpu: usize,
    contents: MapContents,
    ledger: Ledger,
}

impl<'a> Mirror<'a> {
    /// Mirrors `dataplane` as the program on `cpu` (the caller's pinned CPU)
    /// sees it now.
    pub fn new(
        dataplane: &'a Dataplane,
        kernel: &'a KernelMaps,
        sizes: MapSizes,
        cpu: usize,
    ) -> Result<Self> {
        Ok(Self {
            dataplane,
            kernel,
            cpu,
            contents: kernel.snapshot(sizes, cpu)?,
            ledger: Ledger::read(dataplane, sizes)?,
        })
    }

    /// The model's maps.
    pub fn contents(&self) -> &MapContents {
        &self.contents
    }

    /// Runs `frame` through the program and the model and compares them.
    /// After a disagreement the mirror is read again from the kernel, so
    /// later packets are judged on their own.
    pub fn step(&mut self, frame: &[u8]) -> Result<Stepped> {
        let decision = model::decide(frame, &INGRESS, &self.contents);
        let expectation = Expectation {
            flow_before: decision.flow_key.and_then(|key| self.contents.flow(&key)),
            rr_cursor_before: decision.cursor_advance.and_then(|advance| {
                let before = self.contents.rr_cursor(advance.service_id)?;
                Some((advance.service_id, before))
            }),
            decision,
        };
        let result = self.dataplane.test_run(programs::LB, frame);
        if frame.len() < MIN_TEST_RUN_FRAME {
            let mismatches = match result {
                Err(error) if os_error(&error) == Some(libc::EINVAL) => Vec::new(),
                Err(error) => return Err(error).context("BPF_PROG_TEST_RUN of a short frame"),
                Ok(output) => vec![format!(
                    "the kernel ran a {}-byte frame (action {}); it used to refuse frames \
                     shorter than Ethernet",
                    frame.len(),
                    output.action
                )],
            };
            if !mismatches.is_empty() {
                self.resynchronise()?;
            }
            return Ok(Stepped {
                expectation,
                refused: mismatches.is_empty(),
                mismatches,
            });
        }
        let output = result.context("BPF_PROG_TEST_RUN of lb_xdp")?;

        let expected = &expectation.decision;
        let mut mismatches = Vec::new();
        let action = XdpAction::from_u32(output.action);
        if action != Some(expected.action) {
            mismatches.push(format!(
                "action: model {}, program {}",
                expected.action.name(),
                action.map_or_else(|| output.action.to_string(), |a| a.name().to_owned())
            ));
        }
        if output.data != expected.output {
            mismatches.push(describe_output_difference(&expected.output, &output.data));
        }

        let mut after = self.contents.clone();
        after.apply(expected);
        let mut ledger = self.ledger.clone();
        ledger.add(expected);
        self.compare_counters(&ledger, expected, &mut mismatches)?;
        if let Some(key) = expected.flow_key {
            let (model, program) = (after.flow(&key), self.kernel.flow(&key)?);
            if model != program {
                mismatches.push(format!(
                    "flow-table entry after the packet: model {model:?}, program {program:?}"
                ));
            }
            // The program learns a `nat` client under the flow's source.
            let (model, program) = (
                after.nat_client(key.src_ip),
                self.kernel.nat_client(key.src_ip)?,
            );
            if model != program {
                mismatches.push(format!(
                    "NAT_CLIENTS entry of the source after the packet: model {model:?}, \
                     program {program:?}"
                ));
            }
        }
        for &(id, _) in &expected.handshakes.watches {
            let model = after.handshakes(id).map(timeless);
            let program = timeless(self.kernel.handshakes(id)?);
            if model != Some(program) {
                mismatches.push(format!(
                    "handshake record of backend {id}: model {model:?}, program {program:?}"
                ));
            }
        }
        if let Some(advance) = expected.cursor_advance {
            let program = self.kernel.rr_cursor(advance.service_id, self.cpu)?;
            if program != advance.next {
                mismatches.push(format!(
                    "round-robin cursor of service {}: model {}, program {program}",
                    advance.service_id, advance.next
                ));
            }
        }

        if mismatches.is_empty() {
            self.contents = after;
            self.ledger = ledger;
        } else {
            self.resynchronise_after(expected)?;
        }
        Ok(Stepped {
            expectation,
            refused: false,
            mismatches,
        })
    }

    /// The per-packet counter checks: reasons and actions whole, and the
    /// service and backend entries the model says moved.
    fn compare_counters(
        &self,
        ledger: &Ledger,
        decision: &Decision,
        mismatches: &mut Vec<String>,
    ) -> Result<()> {
        let reasons = self.dataplane.counters().reason_counters()?;
        for reason in Reason::ALL {
            let (model, program) = (ledger.reasons[reason as usize], reasons[reason as usize]);
            if model != program {
                mismatches.push(format!(
                    "reason counter {}: model {model}, program {program}",
                    reason.name()
                ));
            }
        }
        let actions = self.dataplane.counters().action_counters()?;
        if actions != ledger.actions {
            mismatches.push(format!(
                "action counters (aborted, drop, pass, tx, redirect): model {:?}, program {actions:?}",
                ledger.actions
            ));
        }
        if let Some(traffic) = decision.service_traffic {
            let program = self.dataplane.counters().service_counters(traffic.index)?;
            let model = ledger.services[traffic.index as usize];
            if model != program {
                mismatches.push(format!(
                    "counters of service {}: model {model:?}, program {program:?}",
                    traffic.index
                ));
            }
        }
        if let Some(traffic) = decision.backend_traffic {
            let program = self.dataplane.counters().backend_counters(traffic.index)?;
            let model = ledger.backends[traffic.index as usize];
            if model != program {
                mismatches.push(format!(
                    "counters of backend {}: model {model:?}, program {program:?}",
                    traffic.index
                ));
            }
        }
        for &(id, _) in &decision.handshakes.counted {
            if let Some(&model) = ledger.handshakes.get(id as usize) {
                let program = self.dataplane.counters().handshake_counters(id)?;
                if model != program {
                    mismatches.push(format!(
                        "handshake counters of backend {id}: model {model:?}, program {program:?}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Compares everything the per-packet checks do not: every service and
    /// backend counter, every cursor, every `NAT_CLIENTS` entry and, when
    /// `flows` is set, the whole flow table. Returns the differences (the
    /// mirror is then read again).
    pub fn check_everything(&mut self, flows: bool) -> Result<Vec<String>> {
        let sizes = self.contents.sizes();
        let mut mismatches = Vec::new();
        let kernel_ledger = Ledger::read(self.dataplane, sizes)?;
        for (what, model, program) in [
            ("service", &self.ledger.services, &kernel_ledger.services),
            ("backend", &self.ledger.backends, &kernel_ledger.backends),
        ] {
            for (id, (model, program)) in model.iter().zip(program).enumerate() {
                if model != program {
                    mismatches.push(format!(
                        "counters of {what} {id}: model {model:?}, program {program:?}"
                    ));
                }
            }
        }
        for (id, (model, program)) in self
            .ledger
            .handshakes
            .iter()
            .zip(&kernel_ledger.handshakes)
            .enumerate()
        {
            if model != program {
                mismatches.push(format!(
                    "handshake counters of backend {id}: model {model:?}, program {program:?}"
                ));
            }
        }
        for id in 0..sizes.max_backends {
            let model = self.contents.handshakes(id).map(timeless);
            let program = timeless(self.kernel.handshakes(id)?);
            if model != Some(program) {
                mismatches.push(format!(
                    "handshake record of backend {id}: model {model:?}, program {program:?}"
                ));
            }
        }
        for service_id in 0..sizes.max_services {
            let program = self.kernel.rr_cursor(service_id, self.cpu)?;
            let model = self.contents.rr_cursor(service_id);
            if model != Some(program) {
                mismatches.push(format!(
                    "round-robin cursor of service {service_id}: model {model:?}, program {program}"
                ));
            }
        }
        let mut program: Vec<_> = self.kernel.nat_clients()?;
        program.sort_by_key(|(addr, _)| *addr);
        let model: Vec<_> = self.contents.nat_clients().collect();
        if model != program {
            mismatches.push(format!(
                "NAT_CLIENTS: model {model:02x?}, program {program:02x?}"
            ));
        }
        if flows {
            let mut program = MapContents::new(sizes);
            for (key, flow) in self.kernel.flows()? {
                program.insert_flow(key, flow);
            }
            let differing = |a: &MapContents, b: &MapContents| {
                a.flows()
                    .filter(|(key, flow)| b.flow(key) != Some(*flow))
                    .count()
            };
            let missing = differing(&self.contents, &program);
            let extra = differing(&program, &self.contents);
            if missing + extra > 0 {
                mismatches.push(format!(
                    "flow table: model {} entries, program {}; {missing} of the model's missing \
                     or different in the program, {extra} of the program's not in the model",
                    self.contents.flow_count(),
                    program.flow_count()
                ));
            }
        }
        if !mismatches.is_empty() {
            self.resynchronise()?;
        }
        Ok(mismatches)
    }

    /// Reads back from the kernel what a packet that disagreed may have
    /// changed: the counters, the cursors, its flow-table entry and its
    /// source's `NAT_CLIENTS` entry. (An entry the program wrote under a key
    /// the model did not parse is found by the whole-table checks.)
    fn resynchronise_after(&mut self, decision: &Decision) -> Result<()> {
        let sizes = self.contents.sizes();
        self.ledger = Ledger::read(self.dataplane, sizes)?;
        for service_id in 0..sizes.max_services {
            let next = self.kernel.rr_cursor(service_id, self.cpu)?;
            self.contents.set_rr_cursor(service_id, next)?;
        }
        if let Some(key) = decision.flow_key {
            match self.kernel.flow(&key)? {
                Some(flow) => self.contents.insert_flow(key, flow),
                None => self.contents.remove_flow(&key),
            };
            match self.kernel.nat_client(key.src_ip)? {
                Some(client) => self.contents.set_nat_client(key.src_ip, client),
                None => {
                    self.contents.remove_nat_client(key.src_ip);
                }
            }
        }
        for id in 0..sizes.max_backends {
            self.contents
                .set_handshakes(id, self.kernel.handshakes(id)?)?;
        }
        Ok(())
    }

    /// Reads the mirror and the ledger back from the kernel.
    fn resynchronise(&mut self) -> Result<()> {
        let sizes = self.contents.sizes();
        self.contents = self.kernel.snapshot(sizes, self.cpu)?;
        self.ledger = Ledger::read(self.dataplane, sizes)?;
        Ok(())
    }
}

/// Where two frames first differ, and their lengths.
fn describe_output_difference(model: &[u8], program: &[u8]) -> String {
    let first = model
        .iter()
        .zip(program)
        .position(|(a, b)| a != b)
        .unwrap_or(model.len().min(program.len()));
    format!(
        "output bytes: first difference at offset {first} (model {} bytes, program {} bytes): \
         model {:02x?}, program {:02x?}",
        model.len(),
        program.len(),
        &model[first.min(model.len())..(first + 8).min(model.len())],
        &program[first.min(program.len())..(first + 8).min(program.len())],
    )
}

/// The errno at the root of `error`, if any.
fn os_error(error: &(dyn std::error::Error + 'static)) -> Option<i32> {
    std::iter::successors(Some(error), |error| error.source())
        .find_map(|error| error.downcast_ref::<std::io::Error>())
        .and_then(std::io::Error::raw_os_error)
}
