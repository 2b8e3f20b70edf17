//! Running a loaded XDP program on one packet with `BPF_PROG_TEST_RUN`: the
//! packet fixtures and the micro benchmark use it.
//!
//! The program sees the packet as if it arrived on the loopback device of the
//! caller's network namespace ([`TEST_RUN_INGRESS_IFINDEX`]): a backend whose
//! `ifindex` is that value is reached with `XDP_TX`, any other with
//! `XDP_REDIRECT` (a test run reports the action; nothing is transmitted).
//!
//! The kernel refuses (`EINVAL`) test packets shorter than an Ethernet header
//! (14 bytes), also when they follow XDP metadata; it never hands XDP a
//! shorter frame either (`bpf_xdp_adjust_head`/`_tail` keep 14 bytes too).

use aya::programs::{SchedClassifier, TestRun, TestRunOptions, Xdp};

use super::DataplaneError;

/// Ingress interface of a test run: `lo`, ifindex 1 in every namespace.
pub const TEST_RUN_INGRESS_IFINDEX: u32 = 1;

/// Room for programs that grow the packet.
const OUTPUT_SLACK: usize = 256;

/// What a program did with a test packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRunOutput {
    /// The XDP action returned (`XDP_PASS` = 2, `XDP_TX` = 3, ...).
    pub action: u32,
    /// The packet after the program ran.
    pub data: Vec<u8>,
    /// Average run time per repetition, in nanoseconds.
    pub duration_ns: u32,
}

/// `struct xdp_md` as the kernel reads it from `ctx_in`.
#[repr(C)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

impl XdpMd {
    fn to_bytes(&self) -> Vec<u8> {
        [
            self.data,
            self.data_end,
            self.data_meta,
            self.ingress_ifindex,
            self.rx_queue_index,
            self.egress_ifindex,
        ]
        .iter()
        .flat_map(|field| field.to_ne_bytes())
        .collect()
    }
}

/// Runs `program` (named `name` for errors) `repeat` times on `packet`.
pub(super) fn run(
    program: &Xdp,
    name: &str,
    packet: &[u8],
    repeat: u32,
) -> Result<TestRunOutput, DataplaneError> {
    // Test packets are at most a page, so their length fits a u32.
    let context = XdpMd {
        data: 0,
        data_end: packet.len() as u32,
        data_meta: 0,
        ingress_ifindex: TEST_RUN_INGRESS_IFINDEX,
        rx_queue_index: 0,
        egress_ifindex: 0,
    }
    .to_bytes();
    let mut data_out = vec![0u8; packet.len() + OUTPUT_SLACK];

    let result = program
        .test_run(TestRunOptions {
            data_in: Some(packet),
            data_out: Some(&mut data_out),
            ctx_in: Some(&context),
            repeat: repeat.max(1),
            ..TestRunOptions::new()
        })
        .map_err(|source| DataplaneError::TestRun {
            program: name.to_owned(),
            source: Box::new(source),
        })?;

    data_out.truncate(result.data_size_out as usize);
    Ok(TestRunOutput {
        action: result.return_value,
        data: data_out,
        duration_ns: u32::try_from(result.duration.as_nanos()).unwrap_or(u32::MAX),
    })
}

/// Runs the tc program `program` (named `name` for errors) once on
/// `packet` and returns its action.
pub(super) fn run_classifier(
    program: &SchedClassifier,
    name: &str,
    packet: &[u8],
) -> Result<i32, DataplaneError> {
    let mut data_out = vec![0u8; packet.len() + OUTPUT_SLACK];
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(packet),
            data_out: Some(&mut data_out),
            repeat: 1,
            ..TestRunOptions::new()
        })
        .map_err(|source| DataplaneError::TestRun {
            program: name.to_owned(),
            source: Box::new(source),
        })?;
    // tc actions are small signed numbers (`TC_ACT_UNSPEC` is -1).
    Ok(result.return_value as i32)
}
