//! The benchmark's output: the Markdown report (printed and written to
//! `report.md`), `results.json` with every raw figure, and the two charts.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use super::e2e::{Mode, SummaryRow};
use super::micro::PathRow;
use super::variants::Variant;
use super::{chart, Results};

/// The files a report consists of.
#[derive(Debug, Clone)]
pub struct ReportFiles {
    pub markdown: PathBuf,
    pub json: PathBuf,
    pub e2e_chart: PathBuf,
    pub micro_chart: PathBuf,
}

impl ReportFiles {
    /// The report's files in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        ReportFiles {
            markdown: dir.join("report.md"),
            json: dir.join("results.json"),
            e2e_chart: dir.join("e2e.png"),
            micro_chart: dir.join("micro.png"),
        }
    }
}

/// Writes every file of the report and returns the Markdown.
pub fn write(files: &ReportFiles, results: &Results) -> Result<String> {
    let markdown = markdown(results)?;
    fs::write(&files.markdown, &markdown)
        .with_context(|| format!("writing {}", files.markdown.display()))?;
    let json = serde_json::to_string_pretty(results).context("serialising the results")?;
    fs::write(&files.json, json).with_context(|| format!("writing {}", files.json.display()))?;
    chart::e2e(&files.e2e_chart, &results.e2e_summary)?;
    chart::micro(&files.micro_chart, &results.micro.rows()?)?;
    Ok(markdown)
}

/// The Markdown report.
pub fn markdown(results: &Results) -> Result<String> {
    let mut out = String::new();
    let kind = if results.quick {
        "quick smoke run (`--quick`: figures are indicative only)"
    } else {
        "full run"
    };
    let machine = &results.machine;
    let _ = writeln!(out, "# Benchmark results\n");
    let _ = writeln!(
        out,
        "`{}`, {kind}, {}; {:.0} s of benchmarking. Machine: {}, {} cores{}, {:.1} GiB, Linux {}.\n",
        results.command,
        results.started_at,
        results.wall_secs,
        machine.cpu_model,
        machine.cores,
        if machine.virtual_machine {
            " (virtual machine)"
        } else {
            ""
        },
        machine.memory_gib,
        machine.kernel,
    );

    micro_section(&mut out, results)?;
    e2e_section(&mut out, results);
    active_active_section(&mut out, results);
    scale_section(&mut out, results);
    method_section(&mut out, results);
    Ok(out)
}

fn micro_section(out: &mut String, results: &Results) -> Result<()> {
    let micro = &results.micro;
    let _ = writeln!(out, "## Micro: XDP per packet (BPF_PROG_TEST_RUN)\n");
    let _ = writeln!(
        out,
        "| Path | Program | ns/packet | above xdp_pass (ns) | × xdp_pass | × xdp_mac_swap |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|");
    for row in micro.rows()? {
        let PathRow {
            name,
            program,
            ns_per_packet,
            above_pass_ns,
            ratio_to_pass,
            ratio_to_mac_swap,
            ..
        } = row;
        let _ = writeln!(
            out,
            "| {name} | `{program}` | {ns_per_packet:.1} | {above_pass_ns:+.1} | {ratio_to_pass:.2} | {ratio_to_mac_swap:.2} |"
        );
    }
    if let Some(slowest) = micro.slowest_path() {
        let _ = writeln!(
            out,
            "\nSlowest path of ours: **{}**, {:.0} ns per packet.",
            slowest.name, slowest.ns_per_packet
        );
    }
    let _ = writeln!(
        out,
        "\nMedian over {} rounds of the mean of {} calls (repeat = 1) per path; the paths take \
         turns within each round; one pinned CPU (CPU {}).\n",
        micro.rounds, micro.calls_per_block, micro.cpu
    );
    Ok(())
}

fn e2e_section(out: &mut String, results: &Results) {
    let settings = &results.e2e_settings;
    let _ = writeln!(out, "## End to end: wrk through the lab\n");
    for mode in Mode::ALL {
        let title = match mode {
            Mode::KeepAlive => "Keep-alive",
            Mode::Close => "New connection per request (`Connection: close`)",
        };
        let _ = writeln!(out, "### {title}\n");
        let _ = writeln!(
            out,
            "| Variant | req/s | × direct | p50 ms | p99 ms | errors | LB CPU ms / 1k req | softirq over direct, ms / 1k req |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
        for row in results.e2e_summary.iter().filter(|row| row.mode == mode) {
            e2e_row(out, row);
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "Medians over {} round(s); each round runs every variant in both modes, in the order \
         above (wrk: {} threads, {} connections, {} s per run). Errors are summed over the rounds.\n",
        settings.rounds, settings.threads, settings.connections, settings.duration_secs
    );
}

fn active_active_section(out: &mut String, results: &Results) {
    let _ = writeln!(
        out,
        "## Active-active: two nodes behind an ECMP router
"
    );
    let _ = writeln!(
        out,
        "wrk from the client behind the router (`cargo xtask run --ha bgp`'s lab) to the VIP both \
         nodes announce over BGP; the share is each node's forwarded packets for the service.\n"
    );
    let _ = writeln!(
        out,
        "| Mode | req/s | p99 ms | errors | lb1 share | lb2 share |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    for row in &results.active_active_summary {
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.2} | {} | {:.0} % | {:.0} % |",
            row.mode.key(),
            row.requests_per_sec,
            row.p99_ms,
            row.errors,
            row.lb1_share * 100.0,
            (1.0 - row.lb1_share) * 100.0
        );
    }
    let _ = writeln!(out);
}

fn e2e_row(out: &mut String, row: &SummaryRow) {
    let optional = |value: Option<f64>, digits: usize| {
        value.map_or_else(|| "–".to_owned(), |value| format!("{value:.digits$}"))
    };
    let _ = writeln!(
        out,
        "| {} | {:.0} | {} | {:.2} | {:.2} | {} | {} | {} |",
        row.variant.label(),
        row.requests_per_sec,
        optional(row.ratio_to_direct, 2),
        row.p50_ms,
        row.p99_ms,
        row.errors,
        optional(row.lb_cpu_ms_per_1k, 2),
        optional(row.softirq_over_direct_ms_per_1k, 2),
    );
}

fn scale_section(out: &mut String, results: &Results) {
    let micro = &results.micro;
    let _ = writeln!(out, "## Scale\n");
    let _ = writeln!(out, "| Backends | Maglev build, M = 65537 (ms) |");
    let _ = writeln!(out, "|---:|---:|");
    for build in &micro.maglev_build {
        let _ = writeln!(out, "| {} | {:.2} |", build.backends, build.median_ms);
    }
    let flows = &micro.flow_table;
    let _ = writeln!(
        out,
        "\nFlow table: {} entries (key {} B, value {} B) take {:.2} MiB as the kernel accounts \
         it (`memlock` of the map), {:.0} B per entry.\n",
        flows.entries,
        flows.key_bytes,
        flows.value_bytes,
        flows.memlock_bytes as f64 / (1024.0 * 1024.0),
        flows.memlock_bytes as f64 / f64::from(flows.entries.max(1)),
    );
    let _ = writeln!(
        out,
        "| Backends | Maglev build (ms) | backend down → flipped table (ms) | slots written | backend up again → flipped table (ms) | slots written |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|");
    for publish in &micro.publish {
        let _ = writeln!(
            out,
            "| {} | {:.2} | {:.2} | {:.0} | {:.2} | {:.0} |",
            publish.backends,
            publish.build_ms,
            publish.down_ms,
            publish.down_slots,
            publish.up_ms,
            publish.up_slots
        );
    }
    let _ = writeln!(
        out,
        "\nHealth decision to table flip, measured as the controller's publish path (the \
         image and apply steps that the health events drive, called directly, so without the \
         checks' own detection time): the tables are rebuilt, the slots of the inactive half that \
         differ from what it held are written (one map update each), the service is flipped \
         to that half, and the backend's state is written. Backends fail and recover in \
         turn; medians over {} of each.\n",
        micro
            .publish
            .first()
            .map_or(0, |publish| publish.runs.len() / 2)
    );
}

fn method_section(out: &mut String, results: &Results) {
    let machine = &results.machine;
    let _ = writeln!(out, "## How it is measured\n");
    for line in [
        "- **Micro**: `BPF_PROG_TEST_RUN` on the loaded programs with live maps (the lab's \
         services: TCP/80 Maglev and UDP/53 round-robin on one VIP, three backends). The \
         duration is the kernel's; it includes the test-run harness (timer reads, BH \
         disable), which is what `xdp_pass` measures, hence the column above it. New-flow \
         paths use a fresh 5-tuple per call and stay below the flow table's capacity (no \
         LRU eviction).",
        "- **End to end**: the lab's client runs wrk against the same three nginx \
         (1 worker each). `direct`: wrk's three threads take one web server each. Each \
         variant is started before its run and stopped after it, so only one is in the \
         path at a time; lab settings are the same for all (lb1 forwards IPv4 and sends no \
         redirects; the XDP_PASS program sits on lb1's switch port throughout; BPF \
         statistics are on for every run). Each variant has its own client source address \
         (per-destination routes with `src`), so TIME_WAIT state never carries over.",
        "- **Shared CPUs**: the client, the load balancer and the web servers share this \
         machine's cores, so a throughput ratio shows the whole CPU a variant adds per \
         request (on the LB node and in the kernel's forwarding), not a load balancer's \
         capacity on its own hardware.",
        "- **HAProxy**: TCP mode, round-robin, default threads (one per core), no health \
         checks; LB CPU = its process's utime + stime (`/proc/PID/stat`) over the run.",
        "- **nftables**: `dnat to numgen inc mod 3 map {…}` in lb1's prerouting, and `snat` \
         of the DNATed connections in postrouting so that the replies return through lb1 to \
         be un-NATed. It SNATs to an address of its own on lb1 (10.0.0.13): with lb1's main \
         address, which HAProxy's connections use, the web servers' TIME_WAIT state from the \
         HAProxy run (with lb1's TCP timestamps) turned away the SNATed SYNs (PAWS) and close \
         mode collapsed to a few hundred requests per second. Its work happens in \
         softirq, which this kernel samples per tick (no `CONFIG_IRQ_TIME_ACCOUNTING`), \
         machine-wide; LB CPU = softirq time per 1000 requests minus direct's in the same \
         round and mode. That difference also holds the extra hop through lb1's veth and \
         the bridge that every LB variant adds, so it is an upper bound of the NAT work. \
         lb1's connection tracking table is flushed after each nftables run.",
        "- **Ours**: `lb run` on lb1 (both services in one config, default sizes, no \
         pinning, so the program leaves with `lb`; the web servers hold both VIPs on `lo`, \
         dsr-l2: replies go straight to the client). LB CPU = the XDP program's \
         `run_time_ns` from the kernel's BPF statistics (`kernel.bpf_stats_enabled=1` during \
         the runs, restored after; read with `bpftool prog show id N`). It counts the program \
         only, not the veth/bridge delivery of the frames it sends with XDP_TX; the softirq \
         column shows that whole cost for every variant.",
    ] {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(
        out,
        "\nVersions: nginx {}, HAProxy {}, wrk {}, nftables {}, bpftool {}; commit {}.\n",
        machine.nginx, machine.haproxy, machine.wrk, machine.nft, machine.bpftool, machine.commit
    );
    let _ = writeln!(
        out,
        "Reproduce: `cargo xtask bench` (root; about 10 minutes), or `cargo xtask bench --quick`."
    );
}

/// Checks that `results` hold every row and that every variant served
/// requests without errors: the smoke test's assertions (no timing thresholds).
pub fn problems(results: &Results) -> Vec<String> {
    let mut problems = Vec::new();
    let micro = &results.micro;
    for key in super::micro::PATH_KEYS {
        match micro.path(key) {
            Some(path) if path.ns_per_packet.is_finite() && path.ns_per_packet > 0.0 => {}
            Some(path) => problems.push(format!(
                "micro path {key}: {} ns per packet",
                path.ns_per_packet
            )),
            None => problems.push(format!("micro path {key} is missing")),
        }
    }
    if micro.maglev_build.len() < 3 {
        problems.push("Maglev build times are missing".to_owned());
    }
    if micro.publish.is_empty() {
        problems.push("publish path timings are missing".to_owned());
    }
    if micro.flow_table.memlock_bytes == 0 {
        problems.push("the flow table's memory is missing".to_owned());
    }
    for mode in Mode::ALL {
        for variant in Variant::ALL {
            let row = results
                .e2e_summary
                .iter()
                .find(|row| row.mode == mode && row.variant == variant);
            let label = format!("{} / {variant}", mode.key());
            match row {
                None => problems.push(format!("{label}: no end-to-end row")),
                Some(row) => {
                    if row.requests == 0 {
                        problems.push(format!("{label}: served no requests"));
                    }
                    if row.errors > 0 {
                        problems.push(format!("{label}: {} errors", row.errors));
                    }
                }
            }
            let unmeasured_xdp = results.e2e_runs.iter().any(|run| {
                run.mode == mode
                    && run.variant == variant
                    && variant.is_ours()
                    && run.xdp_packets.unwrap_or(0) == 0
            });
            if unmeasured_xdp {
                problems.push(format!("{label}: the XDP program saw no packets"));
            }
        }
    }
    for mode in Mode::ALL {
        match results
            .active_active_summary
            .iter()
            .find(|row| row.mode == mode)
        {
            None => problems.push(format!("{} / active-active: no row", mode.key())),
            Some(row) => {
                if row.errors > 0 {
                    problems.push(format!(
                        "{} / active-active: {} errors",
                        mode.key(),
                        row.errors
                    ));
                }
                if !(row.lb1_share > 0.0 && row.lb1_share < 1.0) {
                    problems.push(format!(
                        "{} / active-active: one node carried everything (lb1 share {:.2})",
                        mode.key(),
                        row.lb1_share
                    ));
                }
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::super::active_active::ActiveActiveRow;
    use super::super::e2e::E2eSettings;
    use super::super::machine::Machine;
    use super::super::micro::{FlowTableMemory, MicroReport};
    use super::*;

    fn machine() -> Machine {
        Machine {
            kernel: "6.18".into(),
            cpu_model: "CPU".into(),
            cores: 2,
            memory_gib: 1.0,
            virtual_machine: false,
            nginx: "1".into(),
            haproxy: "2".into(),
            wrk: "3".into(),
            nft: "4".into(),
            bpftool: "5".into(),
            commit: "abc".into(),
        }
    }

    fn empty_results() -> Results {
        Results {
            command: "cargo xtask bench --quick".into(),
            quick: true,
            started_at: "now".into(),
            wall_secs: 1.0,
            machine: machine(),
            micro: MicroReport {
                cpu: 1,
                bpf_stats_enabled: false,
                rounds: 1,
                calls_per_block: 1,
                packet_paths: Vec::new(),
                maglev_build: Vec::new(),
                flow_table: FlowTableMemory {
                    entries: 1,
                    key_bytes: 16,
                    value_bytes: 4,
                    memlock_bytes: 0,
                    map_id: 1,
                },
                publish: Vec::new(),
            },
            micro_rows: Vec::new(),
            e2e_settings: E2eSettings::quick(),
            e2e_runs: Vec::new(),
            e2e_summary: Vec::new(),
            active_active_runs: Vec::new(),
            active_active_summary: Vec::new(),
        }
    }

    #[test]
    fn every_missing_row_is_a_problem() {
        let problems = problems(&empty_results());
        let expected = super::super::micro::PATH_KEYS.len()
            + 3 // Maglev, publish, flow table
            + Mode::ALL.len() * Variant::ALL.len()
            + Mode::ALL.len(); // active-active
        assert_eq!(problems.len(), expected, "{problems:#?}");
        assert!(problems.contains(&"close / ours-maglev: no end-to-end row".to_owned()));
        assert!(problems.contains(&"close / active-active: no row".to_owned()));
    }

    #[test]
    fn an_active_active_row_carried_by_one_node_is_a_problem() {
        let mut results = empty_results();
        results.active_active_summary.push(ActiveActiveRow {
            mode: Mode::KeepAlive,
            requests_per_sec: 1000.0,
            p99_ms: 1.0,
            errors: 0,
            lb1_share: 1.0,
        });
        let problems = problems(&results);
        assert!(problems.contains(
            &"keep-alive / active-active: one node carried everything (lb1 share 1.00)".to_owned()
        ));
    }

    #[test]
    fn errors_and_idle_variants_are_problems() {
        let mut results = empty_results();
        results.e2e_summary.push(SummaryRow {
            mode: Mode::KeepAlive,
            variant: Variant::Haproxy,
            rounds: 1,
            requests_per_sec: 0.0,
            ratio_to_direct: None,
            p50_ms: 0.0,
            p99_ms: 0.0,
            requests: 0,
            errors: 2,
            lb_cpu_ms_per_1k: None,
            softirq_ms_per_1k: None,
            softirq_over_direct_ms_per_1k: None,
        });
        let problems = problems(&results);
        assert!(problems.contains(&"keep-alive / haproxy: served no requests".to_owned()));
        assert!(problems.contains(&"keep-alive / haproxy: 2 errors".to_owned()));
    }
}
