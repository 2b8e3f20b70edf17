//! Per-packet cost of each path through `lb_xdp` and of the two floor
//! programs, as the kernel reports it from `BPF_PROG_TEST_RUN`.
//!
//! Every call runs one packet (repeat = 1: the programs rewrite the packet,
//! and the new-flow paths need a fresh 5-tuple each time). Calls are grouped
//! in blocks, one block per path per round, the paths taking turns within a
//! round so that machine noise hits them alike. A block's figure is the mean
//! of its calls' durations; a path's figure is the median over rounds.

use std::net::Ipv4Addr;

use anyhow::{bail, ensure, Context as _, Result};
use lb::config::{Config, Protocol, Scheduler};
use lb::dataplane::{Dataplane, MapWriter as _};
use lb_common::maps::programs;

use crate::frames::{self, Endpoints, TCP_ACK, TCP_SYN};
use crate::report::{median, PathTiming};
use crate::setup::{self, ServiceSpec, DNS_PORT, HTTP_PORT, VIP};

const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;

/// How many calls to make.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Measured rounds.
    pub rounds: usize,
    /// Calls per block.
    pub calls_per_block: usize,
    /// Calls per path before the first round, not measured.
    pub warmup_calls: usize,
}

impl Plan {
    /// Fresh flows one new-flow path inserts into the flow table.
    fn fresh_flows(&self) -> usize {
        self.warmup_calls + self.rounds * self.calls_per_block
    }
}

/// Where a path's frames come from.
enum Frames {
    /// The same frame every call.
    Fixed(Vec<u8>),
    /// A template whose source changes every call: a new flow each time.
    Fresh { frame: Vec<u8>, next: u32 },
}

impl Frames {
    fn next(&mut self) -> &[u8] {
        match self {
            Frames::Fixed(frame) => frame,
            Frames::Fresh { frame, next } => {
                let (source, port) = frames::fresh_source(*next);
                frames::set_source(frame, source, port);
                *next += 1;
                frame
            }
        }
    }

    fn is_fresh(&self) -> bool {
        matches!(self, Frames::Fresh { .. })
    }
}

/// One measured path.
struct Path {
    key: &'static str,
    name: &'static str,
    program: &'static str,
    floor: bool,
    action: u32,
    frames: Frames,
    rounds_ns: Vec<f64>,
}

impl Path {
    fn new(
        key: &'static str,
        name: &'static str,
        program: &'static str,
        action: u32,
        frames: Frames,
    ) -> Self {
        Path {
            key,
            name,
            program,
            floor: program != programs::LB,
            action,
            frames,
            rounds_ns: Vec::new(),
        }
    }

    /// Runs `calls` packets and returns their mean kernel-reported duration;
    /// fails if any call returns another action than the path's.
    fn run_block(&mut self, dataplane: &Dataplane, calls: usize) -> Result<f64> {
        let mut total_ns = 0u64;
        for _ in 0..calls {
            let output = dataplane
                .test_run(self.program, self.frames.next())
                .with_context(|| format!("test run of {} ({})", self.program, self.name))?;
            if output.action != self.action {
                bail!(
                    "{} ({}) returned XDP action {} instead of {}: the path is not the one measured",
                    self.program,
                    self.name,
                    output.action,
                    self.action
                );
            }
            total_ns += u64::from(output.duration_ns);
        }
        Ok(total_ns as f64 / calls as f64)
    }

    fn timing(self) -> PathTiming {
        let frame_bytes = match &self.frames {
            Frames::Fixed(frame) | Frames::Fresh { frame, .. } => frame.len(),
        };
        PathTiming {
            key: self.key,
            name: self.name,
            program: self.program,
            floor: self.floor,
            action: if self.action == XDP_TX { "tx" } else { "pass" },
            frame_bytes,
            ns_per_packet: median(&self.rounds_ns),
            rounds_ns: self.rounds_ns,
        }
    }
}

/// The configuration measured: the lab's web service (TCP, Maglev, passive
/// health on by default) and a UDP service (round-robin) on the same VIP,
/// three backends each.
fn services() -> [ServiceSpec; 2] {
    [
        ServiceSpec {
            name: "web",
            port: HTTP_PORT,
            protocol: Protocol::Tcp,
            scheduler: Scheduler::Maglev,
            backends: 3,
        },
        ServiceSpec {
            name: "dns",
            port: DNS_PORT,
            protocol: Protocol::Udp,
            scheduler: Scheduler::RoundRobin,
            backends: 3,
        },
    ]
}

/// The flow of the "SYN repeated" row, its handshake completed.
const SYN_REPEAT_CLIENT: Endpoints = client(3, 40_000, VIP, HTTP_PORT);

const fn client(last: u8, port: u16, dst: Ipv4Addr, dst_port: u16) -> Endpoints {
    Endpoints {
        src: Ipv4Addr::new(10, 0, 1, last),
        dst,
        src_port: port,
        dst_port,
    }
}

fn paths() -> Vec<Path> {
    let established = frames::tcp(client(1, 40_000, VIP, HTTP_PORT), TCP_ACK);
    vec![
        Path::new(
            "established_tcp",
            "established TCP flow",
            programs::LB,
            XDP_TX,
            Frames::Fixed(established.clone()),
        ),
        Path::new(
            "new_tcp",
            "new TCP flow (fresh 5-tuple, Maglev)",
            programs::LB,
            XDP_TX,
            Frames::Fresh {
                frame: frames::tcp(client(2, 40_000, VIP, HTTP_PORT), TCP_SYN),
                next: 0,
            },
        ),
        Path::new(
            "syn_repeat",
            "SYN repeated on one flow",
            programs::LB,
            XDP_TX,
            Frames::Fixed(frames::tcp(SYN_REPEAT_CLIENT, TCP_SYN)),
        ),
        Path::new(
            "syn_retransmit",
            "SYN retransmitted, handshake incomplete (second chance)",
            programs::LB,
            XDP_TX,
            Frames::Fixed(frames::tcp(client(5, 40_000, VIP, HTTP_PORT), TCP_SYN)),
        ),
        Path::new(
            "non_vip",
            "non-VIP packet (passed)",
            programs::LB,
            XDP_PASS,
            Frames::Fixed(frames::tcp(
                client(1, 40_000, Ipv4Addr::new(10, 0, 0, 200), HTTP_PORT),
                TCP_ACK,
            )),
        ),
        Path::new(
            "udp_service",
            "UDP to a service (new flow, round-robin)",
            programs::LB,
            XDP_TX,
            Frames::Fresh {
                frame: frames::udp(client(4, 40_000, VIP, DNS_PORT), b"benchmark query"),
                next: 0,
            },
        ),
        Path::new(
            "floor_pass",
            "floor: xdp_pass",
            programs::PASS,
            XDP_PASS,
            Frames::Fixed(established.clone()),
        ),
        Path::new(
            "floor_mac_swap",
            "floor: xdp_mac_swap",
            programs::MAC_SWAP,
            XDP_TX,
            Frames::Fixed(established),
        ),
    ]
}

/// Clears the handshake record of every backend of `config`.
fn clear_handshake_records(dataplane: &mut Dataplane, config: &Config) -> Result<()> {
    let backends: usize = config.services.iter().map(|s| s.backends.len()).sum();
    for id in 0..backends as u32 {
        dataplane.clear_handshakes(id)?;
    }
    Ok(())
}

/// Loads and programs the data path, then measures every path by `plan`.
/// Returns the timings and the data path (whose flow table the caller
/// measures next).
pub fn measure(plan: &Plan) -> Result<(Vec<PathTiming>, Dataplane)> {
    let config = setup::config(&services())?;
    let (mut dataplane, _publisher) = setup::programmed(&config)?;
    let mut paths = paths();
    let fresh_paths = paths.iter().filter(|path| path.frames.is_fresh()).count();
    // Keep every new flow a real insert: no LRU eviction inside the run.
    ensure!(
        plan.fresh_flows() * fresh_paths <= config.global.flow_table_size as usize,
        "{} new flows per path would overflow the {}-entry flow table",
        plan.fresh_flows(),
        config.global.flow_table_size
    );

    // The repeated SYN's flow completes its handshake first: the row
    // measures a SYN on a known flow, not a retransmission.
    for flags in [TCP_SYN, TCP_ACK] {
        dataplane.test_run(programs::LB, &frames::tcp(SYN_REPEAT_CLIENT, flags))?;
    }
    for path in &mut paths {
        path.run_block(&dataplane, plan.warmup_calls)?;
    }
    for round in 0..plan.rounds {
        for path in &mut paths {
            // A healthy service's handshakes complete, which keeps its
            // records clear; the benchmark's never do, so it clears them
            // (as the controller would) before each block, well within
            // `handshake_timeout`: the rows measure the watch, not an
            // ejection.
            clear_handshake_records(&mut dataplane, &config)?;
            let ns = path.run_block(&dataplane, plan.calls_per_block)?;
            path.rounds_ns.push(ns);
        }
        eprintln!(
            "microbench: packet paths, round {}/{} done",
            round + 1,
            plan.rounds
        );
    }
    Ok((paths.into_iter().map(Path::timing).collect(), dataplane))
}
