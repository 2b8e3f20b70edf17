//! A disagreement as a packet fixture: the setup, the one piece of state the
//! packet depends on (its flow-table entry and round-robin cursor), the frame
//! and what the model expects. [`Fixture::source`] prints it as Rust to paste
//! into `tests/tests/fixtures.rs`; [`Fixture::assert_program_agrees`] replays
//! it against a freshly loaded program.

use std::fmt::Write as _;

use anyhow::{anyhow, bail, ensure, Context as _, Result};
use lb::dataplane::{CounterReader as _, Dataplane};
use lb_common::maps::{programs, Flow, Reason};
use lb_common::model::{self, XdpAction};

use super::kernel::KernelMaps;
use super::setup::{self, INGRESS};

/// One packet and what the model says the program must do with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fixture {
    /// The setup's name (see [`setup::setups`]).
    pub setup: String,
    /// Whether the setup's midway changes are made before the packet.
    pub after_midway: bool,
    /// The frame, in hex.
    pub frame: String,
    /// The backend id in the flow-table entry of the frame's 5-tuple before
    /// the packet (none: no entry).
    pub flow_before: Option<u32>,
    /// The round-robin cursor before the packet, written on every CPU:
    /// (service id, value).
    pub rr_cursor_before: Option<(u32, u32)>,
    /// The action the program must return.
    pub action: XdpAction,
    /// The frame the program must leave, in hex.
    pub output: String,
    /// The reason counter that must move, if passed or dropped.
    pub reason: Option<Reason>,
    /// The backend id in the 5-tuple's flow-table entry after the packet.
    pub flow_after: Option<u32>,
}

impl Fixture {
    /// The fixture as a `#[test]` function named `name`, with `comment`
    /// lines above it.
    pub fn source(&self, name: &str, comment: &[String]) -> String {
        let mut text = String::new();
        for line in comment {
            let _ = writeln!(text, "/// {line}");
        }
        let reason = self.reason.map_or_else(
            || "None".to_owned(),
            |reason| format!("Some(lb_common::maps::Reason::{reason:?})"),
        );
        let _ = write!(
            text,
            "#[test]\n\
             fn {name}() {{\n\
             \x20   lb_tests::differential::Fixture {{\n\
             \x20       setup: \"{setup}\".into(),\n\
             \x20       after_midway: {after_midway},\n\
             \x20       frame: \"{frame}\".into(),\n\
             \x20       flow_before: {flow_before:?},\n\
             \x20       rr_cursor_before: {rr_cursor_before:?},\n\
             \x20       action: lb_common::model::XdpAction::{action:?},\n\
             \x20       output: \"{output}\".into(),\n\
             \x20       reason: {reason},\n\
             \x20       flow_after: {flow_after:?},\n\
             \x20   }}\n\
             \x20   .assert_program_agrees();\n\
             }}\n",
            setup = self.setup,
            after_midway = self.after_midway,
            frame = self.frame,
            flow_before = self.flow_before,
            rr_cursor_before = self.rr_cursor_before,
            action = self.action,
            output = self.output,
            flow_after = self.flow_after,
        );
        text
    }

    /// Loads the program with the fixture's setup and state, runs the frame
    /// and panics with every difference from the expectation. Needs root.
    pub fn assert_program_agrees(&self) {
        super::ensure_root().unwrap_or_else(|error| panic!("{error:#}"));
        if let Err(error) = self.replay() {
            panic!("fixture on setup {}: {error:#}", self.setup);
        }
    }

    fn replay(&self) -> Result<()> {
        let setup = setup::named(&self.setup)
            .ok_or_else(|| anyhow!("no setup is named {:?}", self.setup))?;
        let frame = from_hex(&self.frame)?;
        let expected_output = from_hex(&self.output)?;

        let mut dataplane = Dataplane::load(&setup.load_options(4096))?;
        let mut kernel = KernelMaps::open(&dataplane)?;
        setup.program(&mut dataplane, &mut kernel)?;
        if self.after_midway {
            setup.change_midway(&mut dataplane, &mut kernel)?;
        }
        let contents = kernel.snapshot(setup::map_sizes(), 0)?;
        // The 5-tuple as the data path reads it, if the frame has one.
        let flow_key = model::decide(&frame, &INGRESS, &contents).flow_key;
        if let Some(key) = flow_key {
            match self.flow_before {
                Some(backend_id) => kernel.insert_flow(
                    key,
                    Flow {
                        backend_id,
                        last_seen: setup::FLOW_CLOCK_NOW,
                    },
                )?,
                None => kernel.remove_flow(&key)?,
            }
        } else if self.flow_before.is_some() {
            bail!("the frame has no 5-tuple to hold flow_before");
        }
        if let Some((service_id, next)) = self.rr_cursor_before {
            kernel.set_rr_cursor(service_id, next)?;
        }

        let reasons_before = dataplane.counters().reason_counters()?;
        let output = dataplane
            .test_run(programs::LB, &frame)
            .context("BPF_PROG_TEST_RUN of lb_xdp")?;
        let reasons_after = dataplane.counters().reason_counters()?;

        let mut differences = Vec::new();
        if output.action != self.action as u32 {
            differences.push(format!(
                "action: expected {}, program returned {}",
                self.action.name(),
                output.action
            ));
        }
        if output.data != expected_output {
            differences.push(format!(
                "output: expected {}, program left {}",
                self.output,
                to_hex(&output.data)
            ));
        }
        let mut expected_reasons = reasons_before;
        if let Some(reason) = self.reason {
            expected_reasons[reason as usize] += 1;
        }
        if reasons_after != expected_reasons {
            differences.push(format!(
                "reason counters (in Reason order): expected {expected_reasons:?}, program {reasons_after:?}"
            ));
        }
        if let Some(key) = flow_key {
            let flow_after = kernel.flow(&key)?.map(|flow| flow.backend_id);
            if flow_after != self.flow_after {
                differences.push(format!(
                    "flow-table entry after: expected {:?}, program {flow_after:?}",
                    self.flow_after
                ));
            }
        }
        ensure!(differences.is_empty(), "{}", differences.join("; "));
        Ok(())
    }
}

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut text, byte| {
            let _ = write!(text, "{byte:02x}");
            text
        })
}

/// The bytes of hex `text` (an even number of hex digits).
pub fn from_hex(text: &str) -> Result<Vec<u8>> {
    ensure!(
        text.len().is_multiple_of(2),
        "odd number of hex digits in {text:?}"
    );
    text.as_bytes()
        .chunks(2)
        .enumerate()
        .map(|(index, pair)| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|digits| u8::from_str_radix(digits, 16).ok())
                .with_context(|| format!("not hex at offset {} of {text:?}", index * 2))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let bytes = [0x00, 0x0a, 0xff, 0x42];
        assert_eq!(to_hex(&bytes), "000aff42");
        assert_eq!(from_hex("000aff42").unwrap(), bytes);
        assert!(from_hex("abc").is_err());
        assert!(from_hex("zz").is_err());
        assert!(from_hex("é0").is_err());
    }

    #[test]
    fn source_is_a_test_that_builds_the_fixture() {
        let fixture = Fixture {
            setup: "mixed".into(),
            after_midway: false,
            frame: "00".into(),
            flow_before: Some(3),
            rr_cursor_before: None,
            action: XdpAction::Drop,
            output: "00".into(),
            reason: Some(Reason::ShortL4),
            flow_after: None,
        };
        let source = fixture.source("example", &["found by seed 7".to_owned()]);
        assert!(source.starts_with("/// found by seed 7\n#[test]\nfn example() {\n"));
        assert!(source.contains("    lb_tests::differential::Fixture {\n"));
        assert!(source.contains("        flow_before: Some(3),\n"));
        assert!(source.contains("        action: lb_common::model::XdpAction::Drop,\n"));
        assert!(source.contains("        reason: Some(lb_common::maps::Reason::ShortL4),\n"));
        assert!(source.ends_with("    .assert_program_agrees();\n}\n"));
    }
}
