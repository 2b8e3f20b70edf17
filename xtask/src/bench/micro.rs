//! The micro benchmark: runs the `microbench` binary of the tests crate
//! (which owns the only aya user, the dataplane) and reads its JSON, whose
//! fields these types mirror; and the figures derived from it.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::{cmd, paths};

/// `microbench`'s report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MicroReport {
    pub cpu: usize,
    pub bpf_stats_enabled: bool,
    pub rounds: usize,
    pub calls_per_block: usize,
    pub packet_paths: Vec<PathTiming>,
    pub maglev_build: Vec<MaglevBuildTiming>,
    pub flow_table: FlowTableMemory,
    pub publish: Vec<PublishTiming>,
}

/// One packet path's per-packet cost.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PathTiming {
    pub key: String,
    pub name: String,
    pub program: String,
    pub floor: bool,
    pub action: String,
    pub frame_bytes: usize,
    /// Median over rounds, ns per packet.
    pub ns_per_packet: f64,
    pub rounds_ns: Vec<f64>,
}

/// Maglev build time for one backend count.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MaglevBuildTiming {
    pub backends: u32,
    pub table_size: u32,
    pub median_ms: f64,
    pub runs_ms: Vec<f64>,
}

/// The flow table's kernel-accounted memory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlowTableMemory {
    pub entries: u32,
    pub key_bytes: u32,
    pub value_bytes: u32,
    pub memlock_bytes: u64,
    pub map_id: u32,
}

/// The controller's publish path for one backend count: a backend fails
/// (`down`) or recovers (`up`), to the flipped table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublishTiming {
    pub backends: u32,
    pub table_size: u32,
    /// Median Maglev build of the serving backends, ms.
    pub build_ms: f64,
    pub down_ms: f64,
    pub down_slots: f64,
    pub up_ms: f64,
    pub up_slots: f64,
    pub runs: Vec<PublishRun>,
}

/// One timed publication.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublishRun {
    pub transition: String,
    pub build_ms: f64,
    pub total_ms: f64,
    pub slots_written: usize,
}

/// Keys of the floor paths.
pub const FLOOR_PASS: &str = "floor_pass";
pub const FLOOR_MAC_SWAP: &str = "floor_mac_swap";

/// Keys of every path the report must hold, floors last.
pub const PATH_KEYS: [&str; 8] = [
    "established_tcp",
    "new_tcp",
    "syn_repeat",
    "syn_retransmit",
    "non_vip",
    "udp_service",
    FLOOR_PASS,
    FLOOR_MAC_SWAP,
];

/// A packet path beside the floors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PathRow {
    pub key: String,
    pub name: String,
    pub program: String,
    pub ns_per_packet: f64,
    /// ns per packet minus `xdp_pass`'s.
    pub above_pass_ns: f64,
    /// ns per packet / `xdp_pass`'s.
    pub ratio_to_pass: f64,
    /// ns per packet / `xdp_mac_swap`'s.
    pub ratio_to_mac_swap: f64,
}

impl MicroReport {
    /// The path with `key`.
    pub fn path(&self, key: &str) -> Option<&PathTiming> {
        self.packet_paths.iter().find(|path| path.key == key)
    }

    /// Every path with its distance to the floors.
    pub fn rows(&self) -> Result<Vec<PathRow>> {
        let floor = |key: &str| {
            self.path(key)
                .map(|path| path.ns_per_packet)
                .with_context(|| format!("the micro benchmark has no {key} path"))
        };
        let pass = floor(FLOOR_PASS)?;
        let mac_swap = floor(FLOOR_MAC_SWAP)?;
        Ok(self
            .packet_paths
            .iter()
            .map(|path| PathRow {
                key: path.key.clone(),
                name: path.name.clone(),
                program: path.program.clone(),
                ns_per_packet: path.ns_per_packet,
                above_pass_ns: path.ns_per_packet - pass,
                ratio_to_pass: path.ns_per_packet / pass,
                ratio_to_mac_swap: path.ns_per_packet / mac_swap,
            })
            .collect())
    }

    /// The slowest path of `lb_xdp` (not a floor).
    pub fn slowest_path(&self) -> Option<&PathTiming> {
        self.packet_paths
            .iter()
            .filter(|path| !path.floor)
            .max_by(|a, b| a.ns_per_packet.total_cmp(&b.ns_per_packet))
    }
}

/// Runs `microbench` (built by cargo, with `ebpf_object` embedded through
/// the dataplane) and returns its report, also left in `output`.
pub fn run(ebpf_object: &Path, quick: bool, output: &Path) -> Result<MicroReport> {
    let mut command = Command::new("cargo");
    command
        .args([
            "run",
            "--release",
            "--quiet",
            "--package",
            "lb-tests",
            "--bin",
            "microbench",
            "--",
            "--output",
        ])
        .arg(output)
        .current_dir(paths::workspace_root())
        .env(paths::EBPF_OBJECT_ENV, ebpf_object);
    if quick {
        command.arg("--quick");
    }
    cmd::run(&mut command)?;
    let text =
        fs::read_to_string(output).with_context(|| format!("reading {}", output.display()))?;
    let report: MicroReport = serde_json::from_str(&text)
        .with_context(|| format!("parsing the micro benchmark's {}", output.display()))?;
    if report.bpf_stats_enabled {
        bail!(
            "kernel.bpf_stats_enabled was 1 during the micro benchmark: it adds to every \
             program's run time; set it to 0 (something else enabled it) and run again"
        );
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(key: &str, floor: bool, ns: f64) -> PathTiming {
        PathTiming {
            key: key.to_owned(),
            name: key.to_owned(),
            program: if floor { "xdp_pass" } else { "lb_xdp" }.to_owned(),
            floor,
            action: "tx".to_owned(),
            frame_bytes: 54,
            ns_per_packet: ns,
            rounds_ns: vec![ns],
        }
    }

    fn report(paths: Vec<PathTiming>) -> MicroReport {
        MicroReport {
            cpu: 1,
            bpf_stats_enabled: false,
            rounds: 1,
            calls_per_block: 1,
            packet_paths: paths,
            maglev_build: Vec::new(),
            flow_table: FlowTableMemory {
                entries: 1,
                key_bytes: 16,
                value_bytes: 4,
                memlock_bytes: 100,
                map_id: 1,
            },
            publish: Vec::new(),
        }
    }

    #[test]
    fn rows_are_measured_against_both_floors() {
        let report = report(vec![
            path("new_tcp", false, 300.0),
            path("established_tcp", false, 150.0),
            path(FLOOR_PASS, true, 50.0),
            path(FLOOR_MAC_SWAP, true, 60.0),
        ]);
        let rows = report.rows().unwrap();
        assert_eq!(rows[0].above_pass_ns, 250.0);
        assert_eq!(rows[0].ratio_to_pass, 6.0);
        assert_eq!(rows[0].ratio_to_mac_swap, 5.0);
        assert_eq!(report.slowest_path().unwrap().key, "new_tcp");
    }

    #[test]
    fn rows_need_the_floors() {
        assert!(report(vec![path("new_tcp", false, 300.0)]).rows().is_err());
    }

    #[test]
    fn reads_what_microbench_writes() {
        let json = r#"{"cpu":1,"bpf_stats_enabled":false,"rounds":3,"calls_per_block":400,
            "packet_paths":[{"key":"floor_pass","name":"floor: xdp_pass","program":"xdp_pass",
              "floor":true,"action":"pass","frame_bytes":54,"ns_per_packet":79.3,"rounds_ns":[79.3]}],
            "maglev_build":[{"backends":10,"table_size":65537,"median_ms":0.9,"runs_ms":[0.9]}],
            "flow_table":{"entries":65536,"key_bytes":16,"value_bytes":4,"memlock_bytes":5768064,"map_id":7},
            "publish":[{"backends":3,"table_size":65537,"build_ms":0.4,"down_ms":22.0,
              "down_slots":21845.0,"up_ms":0.5,"up_slots":0.0,"runs":[{"transition":"down",
              "build_ms":0.4,"total_ms":22.0,"slots_written":21845}]}]}"#;
        let report: MicroReport = serde_json::from_str(json).unwrap();
        assert_eq!(report.flow_table.memlock_bytes, 5_768_064);
        assert_eq!(report.publish[0].runs[0].slots_written, 21_845);
    }
}
