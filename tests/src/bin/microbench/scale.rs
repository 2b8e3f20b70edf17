//! Scale figures: Maglev table build time by backend count, the flow table's
//! memory as the kernel accounts it, and the controller's publish path from a
//! backend state change to the flipped table.

use std::fs;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use lb::config::{Protocol, Scheduler};
use lb::controller::image::BackendPlan;
use lb::dataplane::Dataplane;
use lb::domain::BackendState;
use lb_common::maglev::{build_table, MaglevBackend};
use lb_common::maps::defaults;

use crate::report::{median, FlowTableMemory, MaglevBuildTiming, PublishRun, PublishTiming};
use crate::setup::{self, ServiceSpec, HTTP_PORT};

/// Backend counts of the Maglev and publish measurements.
pub const BACKEND_COUNTS: [u32; 3] = [10, 100, 1000];

/// `BPF_MAP_TYPE_LRU_HASH` in `/proc/*/fdinfo`.
const BPF_MAP_TYPE_LRU_HASH: u32 = 9;

/// Builds a table of [`defaults::MAGLEV_TABLE_SIZE`] slots for each backend
/// count, `runs` times, the counts taking turns.
pub fn maglev_build(runs: usize) -> Result<Vec<MaglevBuildTiming>> {
    let table_size = defaults::MAGLEV_TABLE_SIZE;
    let mut timings: Vec<MaglevBuildTiming> = BACKEND_COUNTS
        .iter()
        .map(|&backends| MaglevBuildTiming {
            backends,
            table_size,
            median_ms: f64::NAN,
            runs_ms: Vec::new(),
        })
        .collect();
    for _ in 0..runs {
        for timing in &mut timings {
            let backends: Vec<MaglevBackend> = (0..timing.backends).map(maglev_backend).collect();
            let started = Instant::now();
            let table = build_table(&backends, table_size).context("building a Maglev table")?;
            timing.runs_ms.push(millis(started));
            if table.len() != table_size as usize {
                bail!(
                    "the Maglev table has {} slots, not {table_size}",
                    table.len()
                );
            }
        }
    }
    for timing in &mut timings {
        timing.median_ms = median(&timing.runs_ms);
    }
    Ok(timings)
}

/// The flow table of `dataplane` (the only LRU hash of this process with its
/// size and key) as the
/// kernel accounts it in `/proc/self/fdinfo`.
pub fn flow_table_memory(dataplane: &Dataplane) -> Result<FlowTableMemory> {
    let entries = dataplane.options().flow_table_size;
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc/self/fdinfo").context("listing /proc/self/fdinfo")? {
        let path = entry.context("reading /proc/self/fdinfo")?.path();
        // An fd closed since the listing has no fdinfo any more: skip it.
        let Ok(info) = fs::read_to_string(&path) else {
            continue;
        };
        if let Some(map) = parse_fdinfo(&info) {
            // The key size tells it from the other LRU hash of that size,
            // the per-source token buckets.
            let flow_key_bytes = std::mem::size_of::<lb_common::maps::FlowKey>() as u64;
            if map.map_type == BPF_MAP_TYPE_LRU_HASH
                && map.entries == entries
                && u64::from(map.key_bytes) == flow_key_bytes
            {
                found.push(map);
            }
        }
    }
    match found.as_slice() {
        [map] => Ok(FlowTableMemory {
            entries: map.entries,
            key_bytes: map.key_bytes,
            value_bytes: map.value_bytes,
            memlock_bytes: map.memlock_bytes,
            map_id: map.map_id,
        }),
        _ => bail!(
            "expected one LRU hash map of {entries} entries among this process's file \
             descriptors, found {}",
            found.len()
        ),
    }
}

/// The fields of a BPF map's fdinfo that we use.
#[derive(Debug, PartialEq, Eq)]
struct MapInfo {
    map_type: u32,
    key_bytes: u32,
    value_bytes: u32,
    entries: u32,
    memlock_bytes: u64,
    map_id: u32,
}

/// Parses the fdinfo of a BPF map fd; `None` for any other kind of fd.
fn parse_fdinfo(info: &str) -> Option<MapInfo> {
    let field = |name: &str| {
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    let number = |name: &str| field(name)?.parse::<u64>().ok();
    let small = |name: &str| u32::try_from(number(name)?).ok();
    Some(MapInfo {
        map_type: small("map_type")?,
        key_bytes: small("key_size")?,
        value_bytes: small("value_size")?,
        entries: small("max_entries")?,
        memlock_bytes: number("memlock")?,
        map_id: small("map_id")?,
    })
}

/// The publish path for each backend count: one Maglev service of that many
/// backends, whose backends fail and recover in turn. Each transition is
/// timed through the controller's publication path: it builds the tables, writes
/// the slots of the inactive half that differ from what that half held, and
/// flips the service to it. One untimed fail-and-recover first, so both
/// halves have been written once. The Maglev build for the same serving
/// backends is timed on its own too.
pub fn publish(runs: usize) -> Result<Vec<PublishTiming>> {
    let mut timings = Vec::new();
    for backends in [3].into_iter().chain(BACKEND_COUNTS) {
        let config = setup::config(&[ServiceSpec {
            name: "web",
            port: HTTP_PORT,
            protocol: Protocol::Tcp,
            scheduler: Scheduler::Maglev,
            backends,
        }])?;
        let table_size = config.global.maglev_table_size;
        let (mut dataplane, mut publisher) = setup::programmed(&config)?;
        let mut transition = |failed: Option<u32>| -> Result<PublishRun> {
            let plans: Vec<BackendPlan> = (0..backends)
                .map(|id| BackendPlan {
                    state: if Some(id) == failed {
                        BackendState::Down
                    } else {
                        BackendState::Up
                    },
                    weight: 1,
                    standby: false,
                    keeps_flows: false,
                })
                .collect();
            let serving: Vec<MaglevBackend> = (0..backends)
                .filter(|id| Some(*id) != failed)
                .map(maglev_backend)
                .collect();
            let started = Instant::now();
            build_table(&serving, table_size).context("building a Maglev table")?;
            let build_ms = millis(started);
            let started = Instant::now();
            let applied = publisher
                .apply(&mut dataplane, &plans)
                .context("publishing the new table")?;
            let total_ms = millis(started);
            if applied.map_writes == 0 {
                bail!("the state change caused no map write: nothing was published");
            }
            Ok(PublishRun {
                transition: if failed.is_some() { "down" } else { "up" },
                build_ms,
                total_ms,
                slots_written: applied.table_slots,
            })
        };
        transition(Some(backends - 1))?;
        transition(None)?;
        let mut runs_done = Vec::with_capacity(runs * 2);
        for run in 0..runs {
            let failed = u32::try_from(run).context("run count")? % backends;
            runs_done.push(transition(Some(failed))?);
            runs_done.push(transition(None)?);
        }
        timings.push(PublishTiming::new(backends, table_size, runs_done));
        eprintln!("microbench: publish path with {backends} backends done");
    }
    Ok(timings)
}

/// Backend `id` as Maglev sees it (the key the controller uses).
fn maglev_backend(id: u32) -> MaglevBackend {
    MaglevBackend {
        id,
        key: MaglevBackend::endpoint_key(setup::backend_address(id).octets(), HTTP_PORT),
        weight: 1,
    }
}

fn millis(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const LRU_FDINFO: &str = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\n\
        map_type:\t9\nkey_size:\t16\nvalue_size:\t4\nmax_entries:\t65536\n\
        map_flags:\t0x0\nmap_extra:\t0x0\nmemlock:\t6819840\nmap_id:\t42\nfrozen:\t0\n";

    #[test]
    fn parses_a_map_fdinfo() {
        assert_eq!(
            parse_fdinfo(LRU_FDINFO),
            Some(MapInfo {
                map_type: 9,
                key_bytes: 16,
                value_bytes: 4,
                entries: 65536,
                memlock_bytes: 6_819_840,
                map_id: 42,
            })
        );
    }

    #[test]
    fn other_fds_are_not_maps() {
        assert_eq!(parse_fdinfo("pos:\t0\nflags:\t02\nmnt_id:\t15\n"), None);
    }

    #[test]
    fn maglev_build_fills_the_table_for_every_count() {
        let timings = maglev_build(1).unwrap();
        assert_eq!(
            timings.iter().map(|t| t.backends).collect::<Vec<_>>(),
            BACKEND_COUNTS
        );
        assert!(timings.iter().all(|t| t.runs_ms.len() == 1));
    }
}
