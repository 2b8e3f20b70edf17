//! What `microbench` writes: one JSON document with every raw figure, read by
//! `cargo xtask bench` (xtask's `bench::micro` mirrors these field names).

use serde::Serialize;

/// The whole run.
#[derive(Debug, Serialize)]
pub struct MicroReport {
    /// The CPU the benchmark thread was pinned to.
    pub cpu: usize,
    /// `kernel.bpf_stats_enabled` during the run (stats add to every run time).
    pub bpf_stats_enabled: bool,
    /// Measured rounds; each round runs one block per path.
    pub rounds: usize,
    /// `BPF_PROG_TEST_RUN` calls (repeat = 1) per block.
    pub calls_per_block: usize,
    /// Per-packet cost of each path, floors included.
    pub packet_paths: Vec<PathTiming>,
    /// Maglev table build times.
    pub maglev_build: Vec<MaglevBuildTiming>,
    /// Kernel-reported memory of the flow table.
    pub flow_table: FlowTableMemory,
    /// The controller's publish path: desired state change to flipped table.
    pub publish: Vec<PublishTiming>,
}

/// One packet path: its program, its frames and what the kernel measured.
#[derive(Debug, Serialize)]
pub struct PathTiming {
    /// Stable identifier (`established_tcp`, `floor_pass`, ...).
    pub key: &'static str,
    /// Human-readable name.
    pub name: &'static str,
    /// The XDP program run.
    pub program: &'static str,
    /// Whether this is a floor program rather than the load balancer.
    pub floor: bool,
    /// The XDP action every call returned (checked on every call).
    pub action: &'static str,
    /// Frame length in bytes.
    pub frame_bytes: usize,
    /// Median over rounds of the per-block mean, in ns per packet.
    pub ns_per_packet: f64,
    /// Per-round mean of the kernel-reported durations, in ns per packet.
    pub rounds_ns: Vec<f64>,
}

/// Build time of one Maglev table size / backend count.
#[derive(Debug, Serialize)]
pub struct MaglevBuildTiming {
    pub backends: u32,
    pub table_size: u32,
    /// Median build time, ms.
    pub median_ms: f64,
    /// Every build, ms.
    pub runs_ms: Vec<f64>,
}

/// The flow table's memory as the kernel accounts it.
#[derive(Debug, Serialize)]
pub struct FlowTableMemory {
    /// Configured capacity (entries).
    pub entries: u32,
    pub key_bytes: u32,
    pub value_bytes: u32,
    /// `memlock` from `/proc/self/fdinfo` of the map's file descriptor.
    pub memlock_bytes: u64,
    /// The kernel's id of the map measured.
    pub map_id: u32,
}

/// The publish path for one backend count.
#[derive(Debug, Serialize)]
pub struct PublishTiming {
    pub backends: u32,
    pub table_size: u32,
    /// Median time of building the Maglev table of the serving backends
    /// (the computation part of a publication), ms.
    pub build_ms: f64,
    /// Median time from "one backend is down" to the flipped table, ms.
    pub down_ms: f64,
    /// Median table slots written for it.
    pub down_slots: f64,
    /// Median time from "it is up again" to the flipped table, ms.
    pub up_ms: f64,
    /// Median table slots written for it.
    pub up_slots: f64,
    /// Every transition timed.
    pub runs: Vec<PublishRun>,
}

impl PublishTiming {
    /// The medians of `runs`.
    pub fn new(backends: u32, table_size: u32, runs: Vec<PublishRun>) -> Self {
        let of = |transition: &str, figure: fn(&PublishRun) -> f64| {
            let values: Vec<f64> = runs
                .iter()
                .filter(|run| run.transition == transition)
                .map(figure)
                .collect();
            median(&values)
        };
        PublishTiming {
            backends,
            table_size,
            build_ms: median(&runs.iter().map(|run| run.build_ms).collect::<Vec<_>>()),
            down_ms: of("down", |run| run.total_ms),
            down_slots: of("down", |run| run.slots_written as f64),
            up_ms: of("up", |run| run.total_ms),
            up_slots: of("up", |run| run.slots_written as f64),
            runs,
        }
    }
}

/// One timed publication.
#[derive(Debug, Serialize)]
pub struct PublishRun {
    /// `down`: a backend failed; `up`: it recovered.
    pub transition: &'static str,
    /// The Maglev build alone, ms.
    pub build_ms: f64,
    /// The whole publication: build, slot writes, flip, backend write, ms.
    pub total_ms: f64,
    /// Scheduling table slots written.
    pub slots_written: usize,
}

/// The median of `values` (the mean of the middle two for an even count);
/// `NaN` for none.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::{median, PublishRun};

    #[test]
    fn publish_medians_are_per_transition() {
        let run = |transition, total_ms, slots_written| PublishRun {
            transition,
            build_ms: 1.0,
            total_ms,
            slots_written,
        };
        let timing = super::PublishTiming::new(
            3,
            13,
            vec![
                run("down", 10.0, 8),
                run("up", 1.0, 0),
                run("down", 12.0, 9),
            ],
        );
        assert_eq!(timing.down_ms, 11.0);
        assert_eq!(timing.down_slots, 8.5);
        assert_eq!(timing.up_ms, 1.0);
        assert_eq!(timing.up_slots, 0.0);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
