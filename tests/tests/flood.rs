//! Flood protection through `BPF_PROG_TEST_RUN`: one million distinct
//! 5-tuples against a 64k flow table with the insert guard on, then what
//! the flows established before it and the flood's own flows do under
//! Maglev and round-robin; the per-source new-flow rate limit; a SYN on a
//! draining backend's entry; the rate limit and the allow-list of a
//! configuration reaching the data path through the controller's image. The
//! time-dependent behaviour (the kernel's `bpf_ktime_get_ns`) is tested
//! here; the differential test uses the guards only in states no clock
//! decides.
//!
//! Needs root (loading BPF programs); without it every test fails, never skips.

use std::time::{Duration, Instant};

use aya::maps::{HashMap, Map, MapData, PerCpuArray, PerCpuValues};
use aya::programs::loaded_programs;
use lb::dataplane::{
    CounterReader as _, Dataplane, LoadOptions, MapWriter as _, TEST_RUN_INGRESS_IFINDEX,
};
use lb_common::hash::flow_hash;
use lb_common::maglev::{build_table, MaglevBackend};
use lb_common::maps::{
    backend_state, names, programs, Backend, Counters, Flow, FlowKey, InsertWindow, LocalInterface,
    RateLimit, Reason, Scheduler, ServiceKey, SourceKey, TokenBucket, IPPROTO_TCP,
    XDP_ACTION_COUNT,
};

const XDP_DROP: u32 = 1;
const XDP_TX: u32 = 3;

const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 1, 0x01];
const VIP: [u8; 4] = [10, 0, 0, 100];
const MAGLEV_PORT: u16 = 80;
const RR_PORT: u16 = 8080;
const MAGLEV_SERVICE: u32 = 0;
const RR_SERVICE: u32 = 1;
const TABLE_SIZE: u32 = 251;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

/// The flow table of the flood test.
const FLOW_TABLE_SIZE: u32 = 65_536;
/// Distinct 5-tuples of the flood.
const FLOOD_FLOWS: u32 = 1_000_000;
/// Flows per service established before the flood and checked after it.
const ESTABLISHED: u32 = 1_000;
/// The insert guard of the flood test: inserts per CPU per second.
const INSERT_LIMIT: u32 = 3_000;
/// The flood must end within this, or the bound on inserts below (and the
/// runtime budget) does not hold.
const FLOOD_BUDGET: Duration = Duration::from_secs(12);

fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the flood test loads BPF programs and needs root: run it as root \
         (`sudo -E cargo test -p lb-tests --release --test flood`, or `cargo xtask test`)"
    );
}

fn backend_mac(id: u32) -> [u8; 6] {
    [0x02, 0, 0, 0, 0x10, id as u8 + 1]
}

fn backend(id: u32, state: u8) -> Backend {
    Backend {
        ip: u32::from_ne_bytes([10, 0, 0, 11 + id as u8]),
        ifindex: TEST_RUN_INGRESS_IFINDEX,
        mac: backend_mac(id),
        src_mac: LB_MAC,
        state,
        _pad: 0,
        port: 80u16.to_be(),
    }
}

fn key(port: u16) -> ServiceKey {
    ServiceKey {
        vip: u32::from_ne_bytes(VIP),
        port: port.to_be(),
        proto: IPPROTO_TCP,
        _pad: 0,
    }
}

fn maglev_table(ids: &[u32]) -> Vec<u32> {
    let backends: Vec<MaglevBackend> = ids
        .iter()
        .map(|&id| MaglevBackend {
            id,
            key: MaglevBackend::endpoint_key([10, 0, 0, 11 + id as u8], MAGLEV_PORT),
            weight: 1,
        })
        .collect();
    build_table(&backends, TABLE_SIZE).expect("building a Maglev table")
}

/// Backends 0..4 up, the Maglev service on 0, 1, 2 and the round-robin one
/// on the ring `0 1 2`.
fn load(options: LoadOptions) -> Dataplane {
    require_root();
    let mut dataplane = Dataplane::load(&options).expect("loading the eBPF programs");
    // Frames are addressed to this MAC: the program forwards only those.
    dataplane
        .set_local_interface(LocalInterface::MAIN, LB_MAC, TEST_RUN_INGRESS_IFINDEX)
        .expect("writing the local interface");
    for id in 0..4 {
        dataplane
            .set_backend(id, &backend(id, backend_state::UP))
            .expect("writing a backend");
    }
    dataplane
        .set_service(
            key(MAGLEV_PORT),
            MAGLEV_SERVICE,
            Scheduler::Maglev,
            &maglev_table(&[0, 1, 2]),
        )
        .expect("publishing the Maglev service");
    dataplane
        .set_service(key(RR_PORT), RR_SERVICE, Scheduler::RoundRobin, &[0, 1, 2])
        .expect("publishing the round-robin service");
    dataplane
}

fn options() -> LoadOptions {
    LoadOptions {
        flow_table_size: FLOW_TABLE_SIZE,
        max_services: 2,
        max_backends: 8,
        table_size: TABLE_SIZE,
        ..LoadOptions::default()
    }
}

/// A client's source: a distinct (address, port) per `n`.
fn source(n: u32) -> ([u8; 4], u16) {
    let address = 0x0a80_0000 | (n >> 8);
    (address.to_be_bytes(), 1024 + (n & 0xff) as u16)
}

/// An Ethernet/IPv4/TCP frame from `src` to VIP:`port` (checksums are not
/// looked at by the data path).
fn frame(src: ([u8; 4], u16), port: u16, flags: u8) -> Vec<u8> {
    let mut frame = Vec::with_capacity(54);
    frame.extend_from_slice(&LB_MAC);
    frame.extend_from_slice(&CLIENT_MAC);
    frame.extend_from_slice(&0x0800u16.to_be_bytes());
    frame.extend_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, IPPROTO_TCP, 0, 0]);
    frame.extend_from_slice(&src.0);
    frame.extend_from_slice(&VIP);
    frame.extend_from_slice(&src.1.to_be_bytes());
    frame.extend_from_slice(&port.to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    frame
}

fn flow_key(src: ([u8; 4], u16), port: u16) -> FlowKey {
    FlowKey {
        src_ip: u32::from_ne_bytes(src.0),
        dst_ip: u32::from_ne_bytes(VIP),
        src_port: src.1.to_be(),
        dst_port: port.to_be(),
        proto: IPPROTO_TCP,
        _pad: [0; 3],
    }
}

/// Runs `frame`; the action and the backend it was sent to (by its MAC).
fn run(dataplane: &Dataplane, frame: &[u8]) -> (u32, Option<u32>) {
    let output = dataplane
        .test_run(programs::LB, frame)
        .expect("BPF_PROG_TEST_RUN");
    let backend = (output.action == XDP_TX).then(|| {
        (0..8)
            .find(|&id| output.data[..6] == backend_mac(id))
            .expect("forwarded to a known backend MAC")
    });
    (output.action, backend)
}

/// A map of the loaded `lb_xdp`, by name.
fn program_map(dataplane: &Dataplane, name: &str) -> MapData {
    let id = dataplane.program_id().expect("program id");
    let program = loaded_programs()
        .filter_map(Result::ok)
        .find(|info| info.id() == id)
        .expect("the program is loaded");
    program
        .map_ids()
        .expect("map ids")
        .expect("the kernel reports map ids")
        .into_iter()
        .map(|id| MapData::from_id(id).expect("opening a map"))
        .find(|map| map.info().expect("map info").name_as_str() == Some(name))
        .unwrap_or_else(|| panic!("no map {name}"))
}

fn max_entries(dataplane: &Dataplane, name: &str) -> u32 {
    program_map(dataplane, name)
        .info()
        .expect("map info")
        .max_entries()
}

fn sum(counters: &[Counters]) -> Counters {
    counters.iter().fold(Counters::default(), |a, b| Counters {
        packets: a.packets + b.packets,
        bytes: a.bytes + b.bytes,
        new_flows: a.new_flows + b.new_flows,
    })
}

/// One million distinct 5-tuples (alternating between the Maglev and the
/// round-robin service) after 1000 established flows per service, with the
/// Maglev table changed so that only the flow table keeps those flows where
/// they are. The insert guard bounds the inserts to `INSERT_LIMIT` per
/// second, so the table never fills and no established entry is evicted.
#[test]
fn a_million_new_flows_do_not_move_established_ones() {
    pin_to_current_cpu();
    let mut dataplane = load(LoadOptions {
        flow_insert_limit_per_cpu: INSERT_LIMIT,
        ..options()
    });
    let started = Instant::now();

    // Established before the flood: the first packet of each flow is
    // inserted (well below the limit: the window of the first second).
    let established: Vec<(u16, u32, ([u8; 4], u16))> = [MAGLEV_PORT, RR_PORT]
        .into_iter()
        .flat_map(|port| (0..ESTABLISHED).map(move |n| (port, n)))
        .map(|(port, n)| {
            let src = ([192, 0, 2, (n >> 8) as u8], 2000 + (n & 0xff) as u16);
            let (action, backend) = run(&dataplane, &frame(src, port, TCP_SYN));
            assert_eq!(action, XDP_TX);
            (port, backend.unwrap(), src)
        })
        .collect();
    assert_eq!(dataplane.flow_count(), 2 * ESTABLISHED as usize);
    let reasons_before = dataplane.counters().reason_counters().unwrap();
    assert_eq!(reasons_before[Reason::InsertSkipped as usize], 0);

    // Backend 3 joins the Maglev service: about a quarter of the hash
    // space moves, so a flow that lost its entry would move with it.
    let new_table = maglev_table(&[0, 1, 2, 3]);
    dataplane
        .set_service(
            key(MAGLEV_PORT),
            MAGLEV_SERVICE,
            Scheduler::Maglev,
            &new_table,
        )
        .unwrap();
    let would_move = established
        .iter()
        .filter(|(port, backend, src)| {
            *port == MAGLEV_PORT
                && new_table[(flow_hash(&flow_key(*src, *port)) % TABLE_SIZE) as usize] != *backend
        })
        .count();
    assert!(
        would_move > 100,
        "the table change moves {would_move} flows"
    );

    // The flood. Every new flow is forwarded, inserted or not.
    let flood_started = Instant::now();
    let mut rr_backends = [0u64; 3];
    for n in 0..FLOOD_FLOWS {
        let port = if n % 2 == 0 { MAGLEV_PORT } else { RR_PORT };
        let (action, backend) = run(&dataplane, &frame(source(n), port, TCP_SYN));
        assert_eq!(action, XDP_TX, "flood packet {n}");
        if port == RR_PORT {
            rr_backends[backend.unwrap() as usize] += 1;
        }
    }
    let flood_time = flood_started.elapsed();
    assert!(
        flood_time < FLOOD_BUDGET,
        "the flood took {flood_time:?}; the insert bound assumes less than {FLOOD_BUDGET:?}"
    );

    // Memory stays bounded: the maps are the size they were created with,
    // and the table holds at most INSERT_LIMIT inserts per started second
    // (one CPU: the thread is pinned), the established flows included.
    assert_eq!(max_entries(&dataplane, names::FLOWS), FLOW_TABLE_SIZE);
    let flows = dataplane.flow_count();
    let seconds = started.elapsed().as_secs() + 2;
    let bound = u64::from(INSERT_LIMIT) * seconds;
    assert!(flows as u64 <= bound.min(u64::from(FLOW_TABLE_SIZE)));

    // Counters add up: every packet forwarded (tx), each a new flow; those
    // not inserted are counted insert_skipped, and the others are in the
    // table (nothing was evicted).
    let total = u64::from(FLOOD_FLOWS + 2 * ESTABLISHED);
    let actions = dataplane.counters().action_counters().unwrap();
    assert_eq!(actions.iter().sum::<u64>(), total);
    assert_eq!(actions[XDP_TX as usize], total);
    let services: Vec<Counters> = (0..2)
        .map(|id| dataplane.counters().service_counters(id).unwrap())
        .collect();
    let backends: Vec<Counters> = (0..8)
        .map(|id| dataplane.counters().backend_counters(id).unwrap())
        .collect();
    assert_eq!(sum(&services).packets, total);
    assert_eq!(sum(&services).new_flows, total);
    assert_eq!(sum(&backends), sum(&services));
    let reasons = dataplane.counters().reason_counters().unwrap();
    let skipped = reasons[Reason::InsertSkipped as usize];
    for reason in Reason::ALL {
        if reason != Reason::InsertSkipped {
            assert_eq!(reasons[reason as usize], 0, "{}", reason.name());
        }
    }
    assert_eq!(
        flows as u64 + skipped,
        total,
        "inserted + skipped = new flows"
    );
    assert!(
        skipped >= u64::from(FLOOD_FLOWS) - bound,
        "only {skipped} inserts skipped"
    );

    // Every flow established beforehand is still on its backend: Maglev
    // ones although the table moved under them, round-robin ones although
    // the cursor went round a million times. They are ACKs of established
    // flows: never rate limited, never scheduled.
    for (port, backend, src) in &established {
        assert_eq!(
            run(&dataplane, &frame(*src, *port, TCP_ACK)),
            (XDP_TX, Some(*backend)),
            "established flow {src:?} to port {port}"
        );
    }

    // Round-robin spread the flood evenly over its ring, inserted or not.
    let per_backend = u64::from(FLOOD_FLOWS) / 2 / 3;
    for count in rr_backends {
        assert!(count.abs_diff(per_backend) <= 1, "{rr_backends:?}");
    }
    // A new flow the guard does not insert is a new flow again on its next
    // packet. With this CPU's window held full (a start in the future never
    // renews), deterministically: under Maglev it hashes to the same slot,
    // the same backend each time; under round-robin each packet takes the
    // next slot of the ring, so the flow's packets go 0, 1, 2, 0, ...
    hold_insert_window_full(&dataplane);
    let fresh = ([203, 0, 113, 9], 7000);
    let expected = new_table[(flow_hash(&flow_key(fresh, MAGLEV_PORT)) % TABLE_SIZE) as usize];
    for _ in 0..3 {
        assert_eq!(
            run(&dataplane, &frame(fresh, MAGLEV_PORT, TCP_ACK)),
            (XDP_TX, Some(expected))
        );
    }
    let rr: Vec<u32> = (0..4)
        .map(|_| run(&dataplane, &frame(fresh, RR_PORT, TCP_ACK)).1.unwrap())
        .collect();
    for pair in rr.windows(2) {
        assert_eq!(
            pair[1],
            (pair[0] + 1) % 3,
            "the next slot of the ring: {rr:?}"
        );
    }
    let flows = flows_map(&dataplane);
    assert!(flows.get(&flow_key(fresh, MAGLEV_PORT), 0).is_err());
    assert!(flows.get(&flow_key(fresh, RR_PORT), 0).is_err());
    let reasons = dataplane.counters().reason_counters().unwrap();
    assert_eq!(reasons[Reason::InsertSkipped as usize], skipped + 7);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

fn flows_map(dataplane: &Dataplane) -> HashMap<MapData, FlowKey, Flow> {
    Map::from_map_data(program_map(dataplane, names::FLOWS))
        .unwrap()
        .try_into()
        .unwrap()
}

fn program_flow(dataplane: &Dataplane, key: &FlowKey) -> Option<u32> {
    let flow = flows_map(dataplane).get(key, 0).ok();
    flow.map(|flow| flow.backend_id)
}

/// Puts every CPU's insert window at its limit, starting at the end of
/// time: the clock never reaches a new window, so every new flow is
/// forwarded without an insert.
fn hold_insert_window_full(dataplane: &Dataplane) {
    let mut windows: PerCpuArray<MapData, InsertWindow> =
        Map::from_map_data(program_map(dataplane, names::INSERT_WINDOW))
            .unwrap()
            .try_into()
            .unwrap();
    let cpus = aya::util::nr_cpus().unwrap();
    let full = InsertWindow {
        started_ns: u64::MAX,
        inserts: u64::MAX,
    };
    windows
        .set(0, PerCpuValues::try_from(vec![full; cpus]).unwrap(), 0)
        .unwrap();
}

/// Pins the calling thread to the CPU it runs on, so that one per-CPU
/// insert window sees the whole flood.
fn pin_to_current_cpu() {
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    assert!(cpu >= 0, "sched_getcpu");
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes inside it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE (it is a CPU of this machine).
    unsafe { libc::CPU_SET(cpu as usize, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; 0 is this thread.
    let result = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    assert_eq!(result, 0, "sched_setaffinity");
}

/// 1 new flow per second per source, burst 3: a source opening 10 flows at
/// once gets 3 through and 7 dropped as `rate_limited`; its established
/// flows and other sources are not limited; the bucket map stays bounded.
#[test]
fn new_flows_beyond_a_sources_burst_are_dropped() {
    let mut dataplane = load(LoadOptions {
        rate_limit_table_size: 1024,
        ..options()
    });
    dataplane
        .set_rate_limit(MAGLEV_SERVICE, RateLimit::new(1, 3))
        .unwrap();
    let started = Instant::now();
    let attacker = |port: u16| ([198, 51, 100, 7], port);
    let actions: Vec<u32> = (0..10)
        .map(|n| run(&dataplane, &frame(attacker(3000 + n), MAGLEV_PORT, TCP_SYN)).0)
        .collect();
    let established = run(&dataplane, &frame(attacker(3000), MAGLEV_PORT, TCP_ACK)).0;
    let other_source = run(&dataplane, &frame(source(1), MAGLEV_PORT, TCP_SYN)).0;
    let other_service = run(&dataplane, &frame(attacker(3001), RR_PORT, TCP_SYN)).0;
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "the packets must fit in one refill interval (1 s)"
    );
    assert_eq!(actions[..3], [XDP_TX; 3]);
    assert_eq!(actions[3..], [XDP_DROP; 7]);
    assert_eq!(
        (established, other_source, other_service),
        (XDP_TX, XDP_TX, XDP_TX)
    );
    let reasons = dataplane.counters().reason_counters().unwrap();
    assert_eq!(reasons[Reason::RateLimited as usize], 7);
    let actions = dataplane.counters().action_counters().unwrap();
    assert_eq!(actions.iter().sum::<u64>(), 13);
    assert_eq!(actions[XDP_DROP as usize], 7);
    assert_eq!(XDP_ACTION_COUNT, 5);

    // The attacker's bucket is empty; after a refill interval it has one
    // token again.
    let buckets: HashMap<MapData, SourceKey, TokenBucket> =
        Map::from_map_data(program_map(&dataplane, names::SOURCE_BUCKETS))
            .unwrap()
            .try_into()
            .unwrap();
    let attacker_key = SourceKey {
        service_id: MAGLEV_SERVICE,
        src_ip: u32::from_ne_bytes(attacker(0).0),
    };
    assert_eq!(buckets.get(&attacker_key, 0).unwrap().tokens, 0);
    std::thread::sleep(Duration::from_millis(1_050));
    let refilled: Vec<u32> = (0..2)
        .map(|n| run(&dataplane, &frame(attacker(4000 + n), MAGLEV_PORT, TCP_SYN)).0)
        .collect();
    assert_eq!(refilled, [XDP_TX, XDP_DROP]);

    // Bounded: 5000 sources in a 1024-entry LRU.
    for n in 0..5000 {
        run(&dataplane, &frame(source(n * 256), MAGLEV_PORT, TCP_SYN));
    }
    assert_eq!(max_entries(&dataplane, names::SOURCE_BUCKETS), 1024);
    assert!(buckets.keys().count() <= 1024);
}

/// A SYN on the 5-tuple of a flow whose backend is draining is a new
/// connection: it is scheduled to an up backend and replaces the entry;
/// other packets of the flow stay on the draining backend.
#[test]
fn a_syn_never_stays_on_a_draining_backend() {
    let mut dataplane = load(options());
    let src = ([192, 0, 2, 1], 5000);
    let (_, first) = run(&dataplane, &frame(src, MAGLEV_PORT, TCP_SYN));
    let first = first.unwrap();
    dataplane
        .set_backend(first, &backend(first, backend_state::DRAINING))
        .unwrap();
    let others: Vec<u32> = [0, 1, 2].into_iter().filter(|&id| id != first).collect();
    dataplane
        .set_service(
            key(MAGLEV_PORT),
            MAGLEV_SERVICE,
            Scheduler::Maglev,
            &maglev_table(&others),
        )
        .unwrap();
    assert_eq!(
        run(&dataplane, &frame(src, MAGLEV_PORT, TCP_ACK)),
        (XDP_TX, Some(first))
    );
    let (_, moved) = run(&dataplane, &frame(src, MAGLEV_PORT, TCP_SYN));
    let moved = moved.unwrap();
    assert!(others.contains(&moved));
    assert_eq!(
        program_flow(&dataplane, &flow_key(src, MAGLEV_PORT)),
        Some(moved)
    );
}

/// The configuration of [`configured`]: the Maglev service of `load` on
/// backends 0..3, with `policy` (TOML lines) added to it.
fn config_with(policy: &str) -> lb::config::Config {
    let mut text = format!(
        "[global]\ninterface = \"lo\"\npin_dir = \"\"\nmaglev_table_size = {TABLE_SIZE}\n\
         max_services = 2\nmax_backends = 8\n\n\
         [[service]]\nname = \"web\"\nvip = \"10.0.0.100\"\nport = {MAGLEV_PORT}\nprotocol = \"tcp\"\n\
         {policy}\n[service.health]\ntype = \"none\"\n"
    );
    for id in 0..3u8 {
        text.push_str(&format!(
            "\n[[service.backend]]\nname = \"web{id}\"\naddress = \"10.0.0.{}\"\n",
            11 + id
        ));
    }
    lb::config::parse(&text, "flood-test.toml").expect("a valid configuration")
}

/// The controller's own path from a configuration to the maps: the load
/// options it asks for, its layout and image (every backend up), applied
/// through `applier` to `dataplane`.
fn apply_config(
    dataplane: &mut Dataplane,
    applier: &mut lb::controller::apply::Applier,
    config: &lb::config::Config,
) {
    use lb::controller::image::{BackendPlan, MapsImage};
    use lb::controller::layout::Layout;
    use lb::neighbour::{Interface, Neighbour};

    let layout = Layout::new(config);
    let plans: std::collections::BTreeMap<u32, BackendPlan> = layout
        .backends()
        .map(|backend| {
            let plan = BackendPlan {
                state: lb::domain::BackendState::Up,
                weight: backend.weight,
                standby: false,
                keeps_flows: false,
            };
            (backend.id, plan)
        })
        .collect();
    let interface = Interface {
        index: TEST_RUN_INGRESS_IFINDEX,
        name: "lo".to_owned(),
        mac: LB_MAC,
    };
    let neighbours = layout
        .backends()
        .map(|backend| {
            let id = u32::from(backend.address.octets()[3]) - 11;
            let neighbour = Neighbour {
                interface: interface.clone(),
                mac: backend_mac(id),
            };
            (backend.address, neighbour)
        })
        .collect();
    let image = MapsImage::build(
        &layout,
        &plans,
        &neighbours,
        config.global.maglev_table_size,
    )
    .expect("the image of the configuration");
    applier
        .apply(dataplane, &image)
        .expect("applying the image");
}

/// A data path loaded and programmed from `config` as `lb run` does it.
fn configured(config: &lb::config::Config) -> (Dataplane, lb::controller::apply::Applier) {
    require_root();
    let mut dataplane = Dataplane::load(&lb::pinned_restart::load_options(config))
        .expect("loading the eBPF programs");
    dataplane
        .set_local_interface(LocalInterface::MAIN, LB_MAC, TEST_RUN_INGRESS_IFINDEX)
        .expect("writing the local interface");
    let mut applier = lb::controller::apply::Applier::new();
    apply_config(&mut dataplane, &mut applier, config);
    (dataplane, applier)
}

/// SYNs from one source to ports 6000.. of the web service; their actions.
fn syns_from(dataplane: &Dataplane, client: [u8; 4], count: u16) -> Vec<u32> {
    (0..count)
        .map(|n| run(dataplane, &frame((client, 6000 + n), MAGLEV_PORT, TCP_SYN)).0)
        .collect()
}

/// `new_flows_per_second_per_source` and `new_flows_burst_per_source` in a
/// configuration reach the data path through the controller's image and
/// applier: a source gets its burst of new flows, then is dropped
/// (`rate_limited`), while its established flows and other sources pass. A
/// restart without the keys has no limit, and so has the same data path
/// once the next configuration's image (a reload) is applied to it.
#[test]
fn the_configured_rate_limit_reaches_the_data_path() {
    let limited =
        config_with("new_flows_per_second_per_source = 1\nnew_flows_burst_per_source = 3");
    let (mut dataplane, mut applier) = configured(&limited);
    let started = Instant::now();
    let attacker = [198, 51, 100, 7];
    assert_eq!(
        syns_from(&dataplane, attacker, 5),
        [XDP_TX, XDP_TX, XDP_TX, XDP_DROP, XDP_DROP]
    );
    let established = run(&dataplane, &frame((attacker, 6000), MAGLEV_PORT, TCP_ACK)).0;
    assert_eq!(established, XDP_TX);
    assert_eq!(syns_from(&dataplane, [198, 51, 100, 8], 3), [XDP_TX; 3]);
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "the packets must fit in one refill interval (1 s)"
    );
    let reasons = dataplane.counters().reason_counters().unwrap();
    assert_eq!(reasons[Reason::RateLimited as usize], 2);

    // Restarted with a configuration without the keys: no limit.
    let unlimited = config_with("");
    let (restarted, _) = configured(&unlimited);
    assert_eq!(syns_from(&restarted, attacker, 5), [XDP_TX; 5]);

    // The same data path, brought to the unlimited configuration by the
    // record that programmed it: the limit is lifted at once.
    apply_config(&mut dataplane, &mut applier, &unlimited);
    let more: Vec<u32> = (0..5)
        .map(|n| {
            run(
                &dataplane,
                &frame((attacker, 7000 + n), MAGLEV_PORT, TCP_SYN),
            )
            .0
        })
        .collect();
    assert_eq!(more, [XDP_TX; 5]);
}

/// `allow` in a configuration reaches the data path the same way: sources
/// outside the list are dropped (`not_allowed`), established flows
/// included once the list no longer covers them.
#[test]
fn the_configured_allow_list_reaches_the_data_path() {
    let config = config_with("allow = [\"192.0.2.0/24\", \"198.51.100.7/32\"]");
    let (mut dataplane, mut applier) = configured(&config);
    assert_eq!(syns_from(&dataplane, [192, 0, 2, 200], 2), [XDP_TX; 2]);
    assert_eq!(syns_from(&dataplane, [198, 51, 100, 7], 1), [XDP_TX]);
    assert_eq!(syns_from(&dataplane, [198, 51, 100, 8], 2), [XDP_DROP; 2]);
    let reasons = dataplane.counters().reason_counters().unwrap();
    assert_eq!(reasons[Reason::NotAllowed as usize], 2);

    // A narrower list applied to the running data path: the /24's flows
    // are dropped from the next packet on, the /32's still pass.
    let narrower = config_with("allow = [\"198.51.100.7/32\"]");
    apply_config(&mut dataplane, &mut applier, &narrower);
    let ack = |dataplane: &Dataplane, client: [u8; 4]| {
        run(dataplane, &frame((client, 6000), MAGLEV_PORT, TCP_ACK)).0
    };
    assert_eq!(ack(&dataplane, [192, 0, 2, 200]), XDP_DROP);
    assert_eq!(ack(&dataplane, [198, 51, 100, 7]), XDP_TX);
    // No list at all: every source again.
    apply_config(&mut dataplane, &mut applier, &config_with(""));
    assert_eq!(ack(&dataplane, [192, 0, 2, 200]), XDP_TX);
    assert_eq!(syns_from(&dataplane, [203, 0, 113, 1], 1), [XDP_TX]);
}
