//! Packet fixtures for the XDP data path, Katran style: each test feeds packets
//! to the loaded programs through `BPF_PROG_TEST_RUN` and checks the XDP
//! action, the output bytes and the counter that must move.
//!
//! Needs root (loading BPF programs); without it every test fails, never skips.
//! Each test loads its own [`Dataplane`], so they share the kernel but no maps
//! and may run in parallel.
//!
//! A test run sees the packet arriving on `lo` ([`TEST_RUN_INGRESS_IFINDEX`]);
//! backends on that ifindex are reached with `XDP_TX`, others with
//! `XDP_REDIRECT`.

use lb::dataplane::{
    CounterReader as _, Dataplane, LoadOptions, MapWriter as _, TestRunOutput,
    TEST_RUN_INGRESS_IFINDEX,
};
use lb_common::{
    handshake::Observe,
    hash::{flow_hash, source_hash},
    maglev::{build_table, MaglevBackend},
    maps::{
        backend_state, programs, service_flags, Backend, Counters, Endpoint, FlowKey,
        LocalInterface, NatClient, Reason, Scheduler, ServiceKey, IPPROTO_TCP, IPPROTO_UDP,
    },
    ring::round_robin_ring,
};
use lb_tests::differential::KernelMaps;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const XDP_REDIRECT: u32 = 4;

/// Maglev table size of most fixtures: a small prime keeps publication fast.
const TABLE_SIZE: u32 = 251;

const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 1, 0x01];
const CLIENT_IP: [u8; 4] = [10, 0, 1, 1];
const VIP: [u8; 4] = [10, 0, 0, 100];
const OTHER_IP: [u8; 4] = [10, 0, 0, 200];
const HTTP_PORT: u16 = 80;
const DNS_PORT: u16 = 53;
const CLIENT_PORT: u16 = 40_000;

/// Service ids of the fixtures.
const WEB_SERVICE: u32 = 0;
const DNS_SERVICE: u32 = 1;

/// The backends of the fixtures: ids 0, 1, 2, all on the test-run ingress.
const BACKENDS: [u32; 3] = [0, 1, 2];

/// Ethernet/IPv4/TCP/UDP frame construction with correct checksums.
mod wire {
    use lb_common::checksum::{self, checksum};

    pub const ETHERTYPE_IPV4: u16 = 0x0800;
    pub const ETHERTYPE_ARP: u16 = 0x0806;
    pub const ETHERTYPE_IPV6: u16 = 0x86dd;
    pub const ETH_LEN: usize = 14;
    pub const IPV4_LEN: usize = 20;
    pub const TCP_SYN: u8 = 0x02;
    pub const TCP_ACK: u8 = 0x10;
    pub const TCP_PSH_ACK: u8 = 0x18;
    /// Offsets in a frame with a 20-byte IPv4 header.
    pub const IPV4_VIHL: usize = ETH_LEN;
    pub const IPV4_TOTAL_LEN: usize = ETH_LEN + 2;
    pub const IPV4_FRAGMENT: usize = ETH_LEN + 6;

    pub fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
        [&dst[..], &src[..], &ethertype.to_be_bytes(), payload].concat()
    }

    /// An IPv4 header (plus `options`, a multiple of 4 bytes) and its payload.
    pub struct Ipv4 {
        pub src: [u8; 4],
        pub dst: [u8; 4],
        pub proto: u8,
        pub options: Vec<u8>,
        /// Flags and fragment offset, host order (0x2000 = more fragments).
        pub fragment: u16,
    }

    impl Ipv4 {
        pub fn new(src: [u8; 4], dst: [u8; 4], proto: u8) -> Self {
            Self {
                src,
                dst,
                proto,
                options: Vec::new(),
                fragment: 0,
            }
        }

        pub fn packet(&self, payload: &[u8]) -> Vec<u8> {
            assert_eq!(self.options.len() % 4, 0, "IPv4 options are 32-bit words");
            let header_len = IPV4_LEN + self.options.len();
            let total_len = (header_len + payload.len()) as u16;
            let mut header = Vec::with_capacity(header_len);
            header.push(0x40 | (header_len / 4) as u8);
            header.push(0);
            header.extend_from_slice(&total_len.to_be_bytes());
            header.extend_from_slice(&0x1234u16.to_be_bytes());
            header.extend_from_slice(&self.fragment.to_be_bytes());
            header.extend_from_slice(&[64, self.proto, 0, 0]);
            header.extend_from_slice(&self.src);
            header.extend_from_slice(&self.dst);
            header.extend_from_slice(&self.options);
            let sum = checksum(&header);
            header[10..12].copy_from_slice(&sum.to_be_bytes());
            [header, payload.to_vec()].concat()
        }
    }

    /// The TCP or UDP checksum of `segment` (checksum field zero) sent from
    /// `src` to `dst`: it covers the IPv4 pseudo-header too.
    fn transport_checksum(src: [u8; 4], dst: [u8; 4], proto: u8, segment: &[u8]) -> u16 {
        let pseudo_header = [
            &src[..],
            &dst[..],
            &[0, proto],
            &(segment.len() as u16).to_be_bytes(),
        ]
        .concat();
        !checksum::fold(checksum::sum(checksum::sum(0, &pseudo_header), segment))
    }

    pub fn tcp(
        src: [u8; 4],
        dst: [u8; 4],
        ports: (u16, u16),
        flags: u8,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut segment = Vec::with_capacity(20 + payload.len());
        segment.extend_from_slice(&ports.0.to_be_bytes());
        segment.extend_from_slice(&ports.1.to_be_bytes());
        segment.extend_from_slice(&1000u32.to_be_bytes());
        segment.extend_from_slice(&(if flags & TCP_ACK != 0 { 2000u32 } else { 0 }).to_be_bytes());
        segment.extend_from_slice(&[5 << 4, flags]);
        segment.extend_from_slice(&64_240u16.to_be_bytes());
        segment.extend_from_slice(&[0, 0, 0, 0]);
        segment.extend_from_slice(payload);
        let sum = transport_checksum(src, dst, 6, &segment);
        segment[16..18].copy_from_slice(&sum.to_be_bytes());
        segment
    }

    pub fn udp(src: [u8; 4], dst: [u8; 4], ports: (u16, u16), payload: &[u8]) -> Vec<u8> {
        let len = (8 + payload.len()) as u16;
        let mut datagram = Vec::with_capacity(len as usize);
        datagram.extend_from_slice(&ports.0.to_be_bytes());
        datagram.extend_from_slice(&ports.1.to_be_bytes());
        datagram.extend_from_slice(&len.to_be_bytes());
        datagram.extend_from_slice(&[0, 0]);
        datagram.extend_from_slice(payload);
        let sum = transport_checksum(src, dst, 17, &datagram);
        datagram[6..8].copy_from_slice(&sum.to_be_bytes());
        datagram
    }

    /// Recomputes from scratch the IPv4 header checksum and the TCP or UDP
    /// checksum of the 20-byte-header packet in `frame`, and asserts they
    /// are the ones it holds (a UDP checksum of 0 means none, and one that
    /// computes to 0 is sent as 0xffff).
    pub fn assert_checksums_valid(frame: &[u8]) {
        let mut header = frame[ETH_LEN..ETH_LEN + IPV4_LEN].to_vec();
        let held = [header[10], header[11]];
        header[10..12].fill(0);
        assert_eq!(
            held,
            checksum(&header).to_be_bytes(),
            "IPv4 header checksum"
        );
        let (src, dst, proto) = (
            header[12..16].try_into().unwrap(),
            header[16..20].try_into().unwrap(),
            header[9],
        );
        let mut segment = frame[ETH_LEN + IPV4_LEN..].to_vec();
        let at = if proto == 6 { 16 } else { 6 };
        let held = [segment[at], segment[at + 1]];
        if proto == 17 && held == [0, 0] {
            return;
        }
        segment[at..at + 2].fill(0);
        let mut fresh = transport_checksum(src, dst, proto, &segment);
        if proto == 17 && fresh == 0 {
            fresh = 0xffff;
        }
        assert_eq!(
            held,
            fresh.to_be_bytes(),
            "TCP/UDP checksum (protocol {proto})"
        );
    }

    #[test]
    fn checksums_verify_to_zero() {
        let packet = Ipv4::new([10, 0, 1, 1], [10, 0, 0, 100], 6).packet(&[]);
        assert_eq!(checksum(&packet), 0);
        let segment = tcp([1, 2, 3, 4], [5, 6, 7, 8], (1, 2), TCP_SYN, b"odd");
        assert_eq!(
            transport_checksum([1, 2, 3, 4], [5, 6, 7, 8], 6, &segment),
            0
        );
    }
}

use wire::{Ipv4, ETHERTYPE_IPV4, ETH_LEN};

// ---------------------------------------------------------------------------
// Setup
// ---------------------------------------------------------------------------

/// Fails the test unless it runs as root.
fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the packet fixtures load BPF programs and need root: run them as root \
         (`sudo -E cargo test -p lb-tests --test fixtures`, or `cargo xtask test`)"
    );
}

/// Pins the calling thread to the CPU it runs on, so that every test run
/// uses the same per-CPU round-robin cursor.
fn pin_to_current_cpu() {
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    assert!(
        cpu >= 0,
        "sched_getcpu: {}",
        std::io::Error::last_os_error()
    );
    pin_to(cpu as usize);
}

/// Pins the calling thread to `cpu`.
fn pin_to(cpu: usize) {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is a valid CPU number, below CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the calling thread.
    let result = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    assert_eq!(
        result,
        0,
        "sched_setaffinity: {}",
        std::io::Error::last_os_error()
    );
}

fn test_options(table_size: u32) -> LoadOptions {
    LoadOptions {
        flow_table_size: 4096,
        max_services: 4,
        max_backends: 16,
        table_size,
        ..LoadOptions::default()
    }
}

/// A freshly loaded data path with backends 0, 1, 2 up, on the test-run ingress.
fn load() -> Dataplane {
    load_with(test_options(TABLE_SIZE))
}

fn load_with(options: LoadOptions) -> Dataplane {
    require_root();
    let mut dataplane = Dataplane::load(&options).expect("loading the eBPF programs");
    dataplane
        .set_local_interface(LocalInterface::MAIN, LB_MAC, TEST_RUN_INGRESS_IFINDEX)
        .expect("writing the local interface");
    for id in BACKENDS {
        dataplane
            .set_backend(id, &backend(id, backend_state::UP))
            .expect("writing a backend");
    }
    dataplane
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

fn set_state(dataplane: &mut Dataplane, id: u32, state: u8) {
    dataplane
        .set_backend(id, &backend(id, state))
        .expect("writing a backend");
}

fn service_key(vip: [u8; 4], port: u16, proto: u8) -> ServiceKey {
    ServiceKey {
        vip: u32::from_ne_bytes(vip),
        port: port.to_be(),
        proto,
        _pad: 0,
    }
}

fn web_key() -> ServiceKey {
    service_key(VIP, HTTP_PORT, IPPROTO_TCP)
}

/// The Maglev table lb-common builds for `ids` (equal weights).
fn maglev_table(ids: &[u32], table_size: u32) -> Vec<u32> {
    let backends: Vec<MaglevBackend> = ids
        .iter()
        .map(|&id| MaglevBackend {
            id,
            key: MaglevBackend::endpoint_key([10, 0, 0, 11 + id as u8], HTTP_PORT),
            weight: 1,
        })
        .collect();
    build_table(&backends, table_size).expect("building a Maglev table")
}

fn publish_maglev(dataplane: &mut Dataplane, ids: &[u32]) -> Vec<u32> {
    let table = maglev_table(ids, dataplane.options().table_size);
    dataplane
        .set_service(web_key(), WEB_SERVICE, Scheduler::Maglev, &table)
        .expect("publishing the web service");
    table
}

// ---------------------------------------------------------------------------
// Packets
// ---------------------------------------------------------------------------

fn tcp_frame_to(dst: [u8; 4], ports: (u16, u16), flags: u8, payload: &[u8]) -> Vec<u8> {
    let segment = wire::tcp(CLIENT_IP, dst, ports, flags, payload);
    let packet = Ipv4::new(CLIENT_IP, dst, IPPROTO_TCP).packet(&segment);
    wire::ethernet(LB_MAC, CLIENT_MAC, ETHERTYPE_IPV4, &packet)
}

fn udp_frame_to(dst: [u8; 4], ports: (u16, u16), payload: &[u8]) -> Vec<u8> {
    let datagram = wire::udp(CLIENT_IP, dst, ports, payload);
    let packet = Ipv4::new(CLIENT_IP, dst, IPPROTO_UDP).packet(&datagram);
    wire::ethernet(LB_MAC, CLIENT_MAC, ETHERTYPE_IPV4, &packet)
}

/// A TCP segment from the client's `client_port` to VIP:80.
fn web_frame(client_port: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    tcp_frame_to(VIP, (client_port, HTTP_PORT), flags, payload)
}

fn web_syn(client_port: u16) -> Vec<u8> {
    web_frame(client_port, wire::TCP_SYN, &[])
}

fn web_flow(client_port: u16) -> FlowKey {
    FlowKey {
        src_ip: u32::from_ne_bytes(CLIENT_IP),
        dst_ip: u32::from_ne_bytes(VIP),
        src_port: client_port.to_be(),
        dst_port: HTTP_PORT.to_be(),
        proto: IPPROTO_TCP,
        _pad: [0; 3],
    }
}

/// `frame` as forwarded to backend `id`: MACs rewritten, the rest unchanged.
fn forwarded(frame: &[u8], id: u32) -> Vec<u8> {
    [&backend_mac(id)[..], &LB_MAC[..], &frame[12..]].concat()
}

// ---------------------------------------------------------------------------
// Assertions
// ---------------------------------------------------------------------------

fn run(dataplane: &Dataplane, frame: &[u8]) -> TestRunOutput {
    dataplane
        .test_run(programs::LB, frame)
        .expect("BPF_PROG_TEST_RUN of lb_xdp")
}

fn reasons(dataplane: &Dataplane) -> [u64; Reason::COUNT as usize] {
    dataplane
        .counters()
        .reason_counters()
        .expect("reading REASON_STATS")
}

/// Runs `frame` and asserts it is passed (or dropped) unchanged with `reason`
/// counted once and no other reason moving.
fn assert_verdict(dataplane: &Dataplane, frame: &[u8], action: u32, reason: Reason) {
    let before = reasons(dataplane);
    let output = run(dataplane, frame);
    assert_eq!(output.action, action, "XDP action for {reason:?}");
    assert_eq!(
        output.data, frame,
        "{reason:?}: the frame must be left unchanged"
    );
    let mut expected = before;
    expected[reason as usize] += 1;
    assert_eq!(
        reasons(dataplane),
        expected,
        "reason counters after {reason:?}"
    );
}

fn assert_passed(dataplane: &Dataplane, frame: &[u8], reason: Reason) {
    assert_verdict(dataplane, frame, XDP_PASS, reason);
}

fn assert_dropped(dataplane: &Dataplane, frame: &[u8], reason: Reason) {
    assert_verdict(dataplane, frame, XDP_DROP, reason);
}

/// Runs `frame`, asserts it is bounced (`XDP_TX`) with its MACs rewritten,
/// and returns the backend it went to.
fn forward(dataplane: &Dataplane, frame: &[u8]) -> u32 {
    let before = reasons(dataplane);
    let output = run(dataplane, frame);
    assert_eq!(output.action, XDP_TX, "a packet to a served VIP is bounced");
    assert_eq!(output.data[6..12], LB_MAC, "source MAC is the LB's");
    let id = BACKENDS
        .into_iter()
        .find(|&id| output.data[..6] == backend_mac(id))
        .unwrap_or_else(|| panic!("unknown destination MAC {:02x?}", &output.data[..6]));
    assert_eq!(output.data, forwarded(frame, id), "only the MACs change");
    assert_eq!(
        reasons(dataplane),
        before,
        "a forwarded packet has no reason"
    );
    id
}

/// The errno at the root of `error`, if any.
fn os_error(error: &(dyn std::error::Error + 'static)) -> Option<i32> {
    std::iter::successors(Some(error), |error| error.source())
        .find_map(|error| error.downcast_ref::<std::io::Error>())
        .and_then(std::io::Error::raw_os_error)
}

fn backend_counters(dataplane: &Dataplane, id: u32) -> Counters {
    dataplane
        .counters()
        .backend_counters(id)
        .expect("reading BACKEND_STATS")
}

fn service_counters(dataplane: &Dataplane, id: u32) -> Counters {
    dataplane
        .counters()
        .service_counters(id)
        .expect("reading SERVICE_STATS")
}

// ---------------------------------------------------------------------------
// Forwarding
// ---------------------------------------------------------------------------

#[test]
fn syn_to_vip_goes_to_the_maglev_backend_with_macs_rewritten() {
    let mut dataplane = load();
    let table = publish_maglev(&mut dataplane, &BACKENDS);
    let syn = web_syn(CLIENT_PORT);

    let output = run(&dataplane, &syn);

    let expected = table[(flow_hash(&web_flow(CLIENT_PORT)) % TABLE_SIZE) as usize];
    assert_eq!(output.action, XDP_TX);
    assert_eq!(output.data, forwarded(&syn, expected));
    let traffic = Counters {
        packets: 1,
        bytes: syn.len() as u64,
        new_flows: 1,
    };
    assert_eq!(service_counters(&dataplane, WEB_SERVICE), traffic);
    assert_eq!(backend_counters(&dataplane, expected), traffic);
    for other in BACKENDS.into_iter().filter(|&id| id != expected) {
        assert_eq!(backend_counters(&dataplane, other), Counters::default());
    }
    let actions = dataplane
        .counters()
        .action_counters()
        .expect("reading ACTION_STATS");
    assert_eq!(actions, [0, 0, 0, 1, 0]);
    assert_eq!(dataplane.flow_count(), 1);
}

#[test]
fn established_flow_keeps_its_backend_when_the_table_changes() {
    let mut dataplane = load();
    publish_maglev(&mut dataplane, &BACKENDS);
    let first = forward(&dataplane, &web_syn(CLIENT_PORT));

    // Republish twice (both halves) with tables that no longer name `first`:
    // new flows avoid it, the established flow stays.
    let others: Vec<u32> = BACKENDS.into_iter().filter(|&id| id != first).collect();
    for _ in 0..2 {
        publish_maglev(&mut dataplane, &others);
        assert_eq!(
            forward(&dataplane, &web_frame(CLIENT_PORT, wire::TCP_ACK, &[])),
            first
        );
        assert_eq!(
            forward(
                &dataplane,
                &web_frame(CLIENT_PORT, wire::TCP_PSH_ACK, b"GET / HTTP/1.1\r\n\r\n")
            ),
            first
        );
    }
    for port in 1..=20 {
        assert_ne!(
            forward(&dataplane, &web_syn(port)),
            first,
            "new flow {port}"
        );
    }
    let counters = backend_counters(&dataplane, first);
    assert_eq!((counters.packets, counters.new_flows), (5, 1));
}

/// Passive health on the web service: two failures in a row eject, and a
/// watched handshake is overdue at once (a timeout of 0 ticks).
const EJECT_AT_ONCE: Observe = Observe {
    error_limit: 2,
    handshake_timeout: 0,
};

#[test]
fn a_retransmitted_syn_gets_a_second_chance_and_an_established_flow_never_moves() {
    let mut dataplane = load();
    publish_maglev(&mut dataplane, &BACKENDS);
    dataplane
        .set_observe(
            WEB_SERVICE,
            Some(Observe {
                error_limit: 3,
                handshake_timeout: u32::MAX,
            }),
        )
        .unwrap();
    let silent = forward(&dataplane, &web_syn(CLIENT_PORT));
    // No ACK came: the client's retransmission goes to another backend,
    // counted against the one that did not answer.
    let second = forward(&dataplane, &web_syn(CLIENT_PORT));
    assert_ne!(second, silent);
    let counted = dataplane.counters().handshake_counters(silent).unwrap();
    assert_eq!((counted.retransmitted, counted.failed), (1, 1));
    assert_eq!(dataplane.handshakes(silent).unwrap().failed_in_row, 1);
    // The second one answers: completed, and from now on it stays there,
    // SYN or not.
    assert_eq!(
        forward(&dataplane, &web_frame(CLIENT_PORT, wire::TCP_ACK, &[])),
        second
    );
    assert_eq!(
        dataplane
            .counters()
            .handshake_counters(second)
            .unwrap()
            .completed,
        1
    );
    assert_eq!(forward(&dataplane, &web_syn(CLIENT_PORT)), second);
}

#[test]
fn a_backend_whose_handshakes_fail_for_two_clients_gets_no_new_flows() {
    let mut dataplane = load();
    let table = publish_maglev(&mut dataplane, &BACKENDS);
    dataplane
        .set_observe(WEB_SERVICE, Some(EJECT_AT_ONCE))
        .unwrap();
    let slot_of = |client: [u8; 4], port: u16| {
        let flow = FlowKey {
            src_ip: u32::from_ne_bytes(client),
            ..web_flow(port)
        };
        table[(flow_hash(&flow) % TABLE_SIZE) as usize]
    };
    let syn_from = |client: [u8; 4], port: u16| {
        let segment = wire::tcp(client, VIP, (port, HTTP_PORT), wire::TCP_SYN, &[]);
        let packet = Ipv4::new(client, VIP, IPPROTO_TCP).packet(&segment);
        wire::ethernet(LB_MAC, CLIENT_MAC, ETHERTYPE_IPV4, &packet)
    };
    let target = slot_of(CLIENT_IP, 1);
    let ports_to_target = |client: [u8; 4]| {
        (1u16..)
            .filter(move |&port| slot_of(client, port) == target)
            .take(3)
            .collect::<Vec<_>>()
    };
    // One client's SYNs that are never completed: many failures, one client.
    for port in ports_to_target(CLIENT_IP) {
        assert_eq!(forward(&dataplane, &syn_from(CLIENT_IP, port)), target);
    }
    // A second client's: the row now holds two clients, and the next SYN
    // for `target` goes elsewhere.
    let other = [10, 0, 1, 2];
    let ports = ports_to_target(other);
    assert_eq!(forward(&dataplane, &syn_from(other, ports[0])), target);
    assert_ne!(forward(&dataplane, &syn_from(other, ports[1])), target);
    let watch = dataplane.handshakes(target).unwrap();
    assert!(watch.is_ejected(EJECT_AT_ONCE.error_limit), "{watch:?}");
    // Clearing the record (as the controller does once its checks bring it
    // back) lets it take new flows again.
    dataplane.clear_handshakes(target).unwrap();
    assert_eq!(forward(&dataplane, &syn_from(other, ports[2])), target);
}

#[test]
fn round_robin_spreads_300_new_flows_exactly_evenly() {
    pin_to_current_cpu();
    let mut dataplane = load();
    let ring = round_robin_ring(&[(0, 1), (1, 1), (2, 1)], TABLE_SIZE as usize)
        .expect("building the ring");
    dataplane
        .set_service(web_key(), WEB_SERVICE, Scheduler::RoundRobin, &ring)
        .expect("publishing the web service");

    let mut per_backend = [0u32; 3];
    for port in 0..300 {
        per_backend[forward(&dataplane, &web_syn(10_000 + port)) as usize] += 1;
    }

    assert_eq!(per_backend, [100, 100, 100]);
    for id in BACKENDS {
        assert_eq!(
            backend_counters(&dataplane, id).new_flows,
            100,
            "backend {id}"
        );
    }
    assert_eq!(service_counters(&dataplane, WEB_SERVICE).new_flows, 300);
}

/// Each CPU's cursor starts at its own part of the ring (published with
/// it), so the first new flows of every CPU do not all go to slot 0: the
/// first pick on CPU `c` is `ring[cursor_start(c)]`.
#[test]
fn each_cpu_starts_round_robin_at_its_own_part_of_the_ring() {
    let cpus = aya::util::nr_cpus().expect("the number of CPUs");
    let allowed = allowed_cpus();
    // Four slots each, in runs: a start other than 0 picks another backend.
    let ring: Vec<u32> = (0..12).map(|slot| slot / 4).collect();
    for cpu in allowed {
        pin_to(cpu);
        let mut dataplane = load();
        dataplane
            .set_service(web_key(), WEB_SERVICE, Scheduler::RoundRobin, &ring)
            .expect("publishing the web service");
        let start = lb_common::ring::cursor_start(cpu, cpus, ring.len() as u32);
        assert_eq!(
            forward(&dataplane, &web_syn(10_000)),
            ring[start as usize],
            "the first new flow on CPU {cpu} of {cpus}"
        );
    }
}

/// The CPUs this thread may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the calling thread.
    let result = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
    assert_eq!(
        result,
        0,
        "sched_getaffinity: {}",
        std::io::Error::last_os_error()
    );
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

#[test]
fn maglev_choice_is_the_same_across_loads_and_matches_lb_common() {
    let options = LoadOptions {
        max_services: 2,
        ..LoadOptions::default()
    };
    let ports: Vec<u16> = (0..64).map(|i| 20_000 + i * 7).collect();
    let choices = |dataplane: &Dataplane| -> Vec<u32> {
        ports
            .iter()
            .map(|&port| forward(dataplane, &web_syn(port)))
            .collect()
    };

    let mut first_load = load_with(options);
    let table = publish_maglev(&mut first_load, &BACKENDS);
    let first = choices(&first_load);
    drop(first_load);
    let mut second_load = load_with(options);
    publish_maglev(&mut second_load, &BACKENDS);
    let second = choices(&second_load);

    let expected: Vec<u32> = ports
        .iter()
        .map(|&port| table[(flow_hash(&web_flow(port)) % options.table_size) as usize])
        .collect();
    assert_eq!(first, expected);
    assert_eq!(second, expected);
    let used: std::collections::BTreeSet<u32> = expected.into_iter().collect();
    assert_eq!(used.len(), 3, "64 flows reach all 3 backends");
}

#[test]
fn udp_to_a_udp_service_is_forwarded() {
    let mut dataplane = load();
    let dns = service_key(VIP, DNS_PORT, IPPROTO_UDP);
    dataplane
        .set_service(
            dns,
            DNS_SERVICE,
            Scheduler::Maglev,
            &[2; TABLE_SIZE as usize],
        )
        .expect("publishing the DNS service");
    let frame = udp_frame_to(VIP, (CLIENT_PORT, DNS_PORT), b"query");

    assert_eq!(forward(&dataplane, &frame), 2);
    assert_eq!(service_counters(&dataplane, DNS_SERVICE).packets, 1);
}

#[test]
fn ip_options_are_skipped_to_find_the_ports() {
    let mut dataplane = load();
    publish_maglev(&mut dataplane, &BACKENDS);
    // IHL = 6: one word of options (NOP NOP NOP EOL). Read at a fixed 20-byte
    // offset, the ports would come from the options and match no service.
    let segment = wire::tcp(CLIENT_IP, VIP, (CLIENT_PORT, HTTP_PORT), wire::TCP_SYN, &[]);
    let mut ip = Ipv4::new(CLIENT_IP, VIP, IPPROTO_TCP);
    ip.options = vec![1, 1, 1, 0];
    let frame = wire::ethernet(LB_MAC, CLIENT_MAC, ETHERTYPE_IPV4, &ip.packet(&segment));
    assert_eq!(frame[wire::IPV4_VIHL], 0x46);

    forward(&dataplane, &frame);
    assert_eq!(service_counters(&dataplane, WEB_SERVICE).new_flows, 1);
}

#[test]
fn backend_behind_another_interface_is_reached_by_redirect() {
    let mut dataplane = load();
    let mut remote = backend(0, backend_state::UP);
    remote.ifindex = TEST_RUN_INGRESS_IFINDEX + 1000;
    dataplane
        .set_backend(0, &remote)
        .expect("writing a backend");
    dataplane
        .set_service(
            web_key(),
            WEB_SERVICE,
            Scheduler::Maglev,
            &[0; TABLE_SIZE as usize],
        )
        .expect("publishing the web service");
    let syn = web_syn(CLIENT_PORT);

    let output = run(&dataplane, &syn);

    assert_eq!(output.action, XDP_REDIRECT);
    assert_eq!(output.data, forwarded(&syn, 0));
    let actions = dataplane
        .counters()
        .action_counters()
        .expect("reading ACTION_STATS");
    assert_eq!(actions, [0, 0, 0, 0, 1]);
}

// ---------------------------------------------------------------------------
// Backend states
// ---------------------------------------------------------------------------

#[test]
fn flow_of_a_down_backend_moves_to_a_serving_one() {
    let mut dataplane = load();
    publish_maglev(&mut dataplane, &BACKENDS);
    let first = forward(&dataplane, &web_syn(CLIENT_PORT));

    set_state(&mut dataplane, first, backend_state::DOWN);
    let others: Vec<u32> = BACKENDS.into_iter().filter(|&id| id != first).collect();
    publish_maglev(&mut dataplane, &others);
    let moved = forward(&dataplane, &web_frame(CLIENT_PORT, wire::TCP_ACK, &[]));
    assert_ne!(moved, first);
    assert_eq!(
        backend_counters(&dataplane, moved).new_flows,
        1,
        "rescheduled"
    );

    // The flow entry now names the new backend: it stays there when the old
    // one comes back.
    set_state(&mut dataplane, first, backend_state::UP);
    publish_maglev(&mut dataplane, &BACKENDS);
    assert_eq!(
        forward(&dataplane, &web_frame(CLIENT_PORT, wire::TCP_ACK, &[])),
        moved
    );
}

#[test]
fn draining_backend_keeps_its_flows_but_gets_no_new_ones() {
    let mut dataplane = load();
    publish_maglev(&mut dataplane, &BACKENDS);
    let draining = forward(&dataplane, &web_syn(CLIENT_PORT));

    set_state(&mut dataplane, draining, backend_state::DRAINING);
    let others: Vec<u32> = BACKENDS.into_iter().filter(|&id| id != draining).collect();
    publish_maglev(&mut dataplane, &others);

    assert_eq!(
        forward(&dataplane, &web_frame(CLIENT_PORT, wire::TCP_ACK, &[])),
        draining
    );
    for port in 1..=50 {
        assert_ne!(
            forward(&dataplane, &web_syn(port)),
            draining,
            "new flow {port}"
        );
    }
    assert_eq!(backend_counters(&dataplane, draining).new_flows, 1);
}

#[test]
fn service_without_serving_backend_passes_new_flows_to_the_kernel() {
    let mut dataplane = load();
    dataplane
        .set_service(web_key(), WEB_SERVICE, Scheduler::Maglev, &[])
        .expect("publishing the web service");
    assert_passed(&dataplane, &web_syn(CLIENT_PORT), Reason::NoBackend);
}

#[test]
fn table_naming_a_backend_that_is_not_up_is_dropped() {
    let mut dataplane = load();
    set_state(&mut dataplane, 1, backend_state::DRAINING);
    dataplane
        .set_service(
            web_key(),
            WEB_SERVICE,
            Scheduler::Maglev,
            &[1; TABLE_SIZE as usize],
        )
        .expect("publishing the web service");
    assert_dropped(&dataplane, &web_syn(CLIENT_PORT), Reason::BadBackend);
}

#[test]
fn removed_service_no_longer_matches_and_its_vip_is_released() {
    let mut dataplane = load();
    publish_maglev(&mut dataplane, &BACKENDS);
    forward(&dataplane, &web_syn(CLIENT_PORT));

    dataplane
        .remove_service(&web_key())
        .expect("removing the web service");

    let ack = web_frame(CLIENT_PORT, wire::TCP_ACK, &[]);
    assert_passed(&dataplane, &ack, Reason::NotService);
    // With no service left on it, the VIP is not ours: even a fragment to it
    // goes to the kernel instead of being dropped.
    let mut ip = Ipv4::new(CLIENT_IP, VIP, IPPROTO_TCP);
    ip.fragment = 0x2000;
    let fragment = wire::ethernet(LB_MAC, CLIENT_MAC, ETHERTYPE_IPV4, &ip.packet(&[0; 24]));
    assert_passed(&dataplane, &fragment, Reason::NotService);
}

// ---------------------------------------------------------------------------
// Traffic that is not ours
// ---------------------------------------------------------------------------

#[test]
fn ipv4_to_another_address_passes_unchanged() {
    let mut dataplane = load();
    publish_maglev(&mut dataplane, &BACKENDS);
    let frame = tcp_frame_to(OTHER_IP, (CLIENT_PORT, HTTP_PORT), wire::TCP_SYN, &[]);
    assert_passed(&dataplane, &frame, Reason::NotService);
}

#[test]
fn vip_on_a_port_without_service_is_dropped() {
    let mut dataplane = load();
    publish_maglev(&mut dataplane, &BACKENDS);
    let frame = tcp_frame_to(VIP, (CLIENT_PORT, 443), wire::TCP_SYN, &[]);
    assert_dropped(&dataplane, &frame, Reason::VipOtherPort);
    // UDP to the port of a TCP service has no service either.
    let datagram = udp_frame_to(VIP, (CLIENT_PORT, HTTP_PORT), b"x");
    assert_dropped(&dataplane, &datagram, Reason::VipOtherPort);
    assert_eq!(dataplane.flow_count(), 0);
}

#[test]
fn vip_with_a_protocol_other_than_tcp_udp_icmp_is_dropped() {
    let mut dataplane = load();
    publish_maglev(&mut dataplane, &BACKENDS);
    let gre = Ipv4::new(CLIENT_IP, VIP, 47).packet(&[0; 8]);
    let frame = wire::ethernet(LB_MAC, CLIENT_MAC, ETHERTYPE_IPV4, &gre);
    assert_dropped(&dataplane, &frame, Reason::VipOtherProtocol);
}

#[test]
fn icmp_to_the_vip_passes() {
    let mut dataplane = load();
    publish_maglev(&mut dataplane, &BACKENDS);
    let echo = [8, 0, 0xf7, 0xff, 0, 0, 0, 0];
    let packet = Ipv4::new(CLIENT_IP, VIP, 1).packet(&echo);
    let frame = wire::ethernet(LB_MAC, CLIENT_MAC, ETHERTYPE_IPV4, &packet);
    assert_passed(&dataplane, &frame, Reason::VipIcmp);
}

#[test]
fn icmp_echo_to_the_vip_is_dropped_when_configured_other_icmp_still_passes() {
    let mut dataplane = load_with(LoadOptions {
        vip_icmp_echo: lb::dataplane::VipIcmpEcho::Drop,
        ..test_options(TABLE_SIZE)
    });
    publish_maglev(&mut dataplane, &BACKENDS);
    let icmp = |message: &[u8], dst: [u8; 4]| {
        let packet = Ipv4::new(CLIENT_IP, dst, 1).packet(message);
        wire::ethernet(LB_MAC, CLIENT_MAC, ETHERTYPE_IPV4, &packet)
    };
    let echo = [8, 0, 0xf7, 0xff, 0, 0, 0, 0];
    assert_dropped(&dataplane, &icmp(&echo, VIP), Reason::VipIcmpEcho);
    // An echo reply, and an echo request to an address that is no VIP.
    let reply = [0, 0, 0xff, 0xff, 0, 0, 0, 0];
    assert_passed(&dataplane, &icmp(&reply, VIP), Reason::VipIcmp);
    assert_passed(&dataplane, &icmp(&echo, OTHER_IP), Reason::NotService);
    // Path MTU discovery is not affected.
    let backend = forward(&dataplane, &web_syn(CLIENT_PORT));
    let output = run(&dataplane, &frag_needed_for(CLIENT_PORT));
    assert_eq!(output.action, XDP_TX);
    assert_eq!(output.data[..6], backend_mac(backend));
}

/// An ICMP "fragmentation needed" from a router to the VIP, quoting the
/// start of a segment the backend sent on the web flow of `client_port`.
fn frag_needed_for(client_port: u16) -> Vec<u8> {
    let reply = wire::tcp(VIP, CLIENT_IP, (HTTP_PORT, client_port), wire::TCP_ACK, &[]);
    let quoted = Ipv4::new(VIP, CLIENT_IP, IPPROTO_TCP).packet(&reply);
    let mut message = vec![3, 4, 0, 0, 0, 0, 0x05, 0xdc];
    message.extend_from_slice(&quoted[..wire::IPV4_LEN + 8]);
    let packet = Ipv4::new([203, 0, 113, 1], VIP, 1).packet(&message);
    wire::ethernet(LB_MAC, CLIENT_MAC, ETHERTYPE_IPV4, &packet)
}

#[test]
fn frag_needed_for_a_flow_goes_to_its_backend() {
    let mut dataplane = load();
    publish_maglev(&mut dataplane, &BACKENDS);
    let backend = forward(&dataplane, &web_syn(CLIENT_PORT));
    assert_eq!(forward(&dataplane, &frag_needed_for(CLIENT_PORT)), backend);
    assert_eq!(dataplane.flow_count(), 1, "no flow is made for the ICMP");
    // No flow for that client port: the kernel gets it.
    assert_passed(
        &dataplane,
        &frag_needed_for(CLIENT_PORT + 1),
        Reason::VipIcmp,
    );
}

/// `frame` with its IPv4 source replaced by `src` (the checksum is not
/// looked at by the data path).
fn from_source(mut frame: Vec<u8>, src: [u8; 4]) -> Vec<u8> {
    frame[ETH_LEN + 12..ETH_LEN + 16].copy_from_slice(&src);
    frame
}

fn source_prefix(octets: [u8; 4], len: u8) -> lb_common::maps::SourcePrefix {
    lb_common::maps::SourcePrefix::new(octets, len).expect("no host bits")
}

#[test]
fn sources_outside_a_services_allow_list_are_dropped() {
    let mut dataplane = load();
    publish_maglev(&mut dataplane, &BACKENDS);
    dataplane
        .set_service(
            service_key(VIP, DNS_PORT, IPPROTO_UDP),
            DNS_SERVICE,
            Scheduler::Maglev,
            &maglev_table(&BACKENDS, TABLE_SIZE),
        )
        .expect("publishing the DNS service");
    // CLIENT_IP is 10.0.1.1: inside 10.0.0.0/16.
    let list = [
        source_prefix([10, 0, 0, 0], 16),
        source_prefix([192, 0, 2, 7], 32),
    ];
    dataplane
        .set_allow_list(WEB_SERVICE, Some(&list))
        .expect("writing the allow-list");
    forward(&dataplane, &web_syn(CLIENT_PORT));
    forward(
        &dataplane,
        &from_source(web_syn(CLIENT_PORT), [192, 0, 2, 7]),
    );
    for outside in [[10, 1, 0, 1], [192, 0, 2, 8], [0, 0, 0, 0]] {
        let frame = from_source(web_syn(CLIENT_PORT), outside);
        assert_dropped(&dataplane, &frame, Reason::NotAllowed);
    }
    // The other service of the VIP has no list: every source.
    let dns = from_source(
        udp_frame_to(VIP, (CLIENT_PORT, DNS_PORT), b"query"),
        [10, 1, 0, 1],
    );
    assert_eq!(run(&dataplane, &dns).action, XDP_TX);

    // Narrowed to the /32: the client's established flow is dropped too.
    dataplane
        .set_allow_list(WEB_SERVICE, Some(&list[1..]))
        .expect("narrowing the allow-list");
    assert_dropped(
        &dataplane,
        &web_frame(CLIENT_PORT, wire::TCP_ACK, &[]),
        Reason::NotAllowed,
    );
    // No list: every source again, the flow still on its backend.
    dataplane
        .set_allow_list(WEB_SERVICE, None)
        .expect("removing the allow-list");
    forward(&dataplane, &web_frame(CLIENT_PORT, wire::TCP_ACK, &[]));
    assert_eq!(dataplane.flow_count(), 3, "two SYNs and DNS, nothing else");
}

#[test]
fn service_frame_for_another_mac_is_passed_never_forwarded() {
    let mut dataplane = load();
    publish_maglev(&mut dataplane, &BACKENDS);
    let mut frame = web_syn(CLIENT_PORT);
    // Flooded by a switch that has not learned this (unicast) MAC.
    frame[..6].copy_from_slice(&[0x02, 0, 0, 0, 0x99, 0x01]);
    assert_passed(&dataplane, &frame, Reason::NotForUs);
    assert_eq!(dataplane.flow_count(), 0);
    // To another address, the frame passes as not ours whatever its MAC.
    let mut other = tcp_frame_to(OTHER_IP, (CLIENT_PORT, HTTP_PORT), wire::TCP_SYN, &[]);
    other[..6].copy_from_slice(&[0x02, 0, 0, 0, 0x99, 0x01]);
    assert_passed(&dataplane, &other, Reason::NotService);
}

#[test]
fn broadcast_and_multicast_frames_pass_untouched() {
    let mut dataplane = load();
    publish_maglev(&mut dataplane, &BACKENDS);
    for group in [[0xff; 6], [0x01, 0x00, 0x5e, 0x00, 0x00, 0x12]] {
        let mut frame = web_syn(CLIENT_PORT);
        frame[..6].copy_from_slice(&group);
        assert_passed(&dataplane, &frame, Reason::LinkMulticast);
    }
    assert_eq!(dataplane.flow_count(), 0);
}

#[test]
fn until_the_local_interface_is_written_no_frame_is_forwarded() {
    require_root();
    let mut dataplane = Dataplane::load(&test_options(TABLE_SIZE)).expect("loading");
    for id in BACKENDS {
        dataplane
            .set_backend(id, &backend(id, backend_state::UP))
            .expect("writing a backend");
    }
    publish_maglev(&mut dataplane, &BACKENDS);
    assert_passed(&dataplane, &web_syn(CLIENT_PORT), Reason::NotForUs);
    dataplane
        .set_local_interface(LocalInterface::MAIN, LB_MAC, TEST_RUN_INGRESS_IFINDEX)
        .expect("writing the local interface");
    forward(&dataplane, &web_syn(CLIENT_PORT));
}

#[test]
fn arp_passes() {
    let mut dataplane = load();
    publish_maglev(&mut dataplane, &BACKENDS);
    let request = [
        &[0, 1, 8, 0, 6, 4, 0, 1][..],
        &CLIENT_MAC,
        &CLIENT_IP,
        &[0; 6],
        &VIP,
    ]
    .concat();
    // Broadcast, but no IPv4 packet to a VIP: the MAC is not looked at.
    let frame = wire::ethernet([0xff; 6], CLIENT_MAC, wire::ETHERTYPE_ARP, &request);
    assert_passed(&dataplane, &frame, Reason::NotIpv4);
    let reply = wire::ethernet(LB_MAC, CLIENT_MAC, wire::ETHERTYPE_ARP, &request);
    assert_passed(&dataplane, &reply, Reason::NotIpv4);
}

#[test]
fn ipv6_passes() {
    let mut dataplane = load();
    publish_maglev(&mut dataplane, &BACKENDS);
    let mut header = vec![0x60, 0, 0, 0, 0, 20, IPPROTO_TCP, 64];
    header.extend_from_slice(&[0xfd; 16]);
    header.extend_from_slice(&[0xfe; 16]);
    let segment = [&header[..], &[0; 20]].concat();
    let frame = wire::ethernet(LB_MAC, CLIENT_MAC, wire::ETHERTYPE_IPV6, &segment);
    assert_passed(&dataplane, &frame, Reason::NotIpv4);
}

// ---------------------------------------------------------------------------
// Malformed frames
// ---------------------------------------------------------------------------

/// `Reason::ShortEthernet` cannot be driven from here: the kernel refuses
/// test-run data shorter than an Ethernet header (also after XDP metadata,
/// checked on 6.18) and never gives XDP a shorter frame. This fixture pins
/// that down, so that the day the kernel accepts such a frame it fails and
/// gets turned into a ShortEthernet fixture; the shortest frame accepted
/// reaches the next check.
#[test]
fn frames_shorter_than_ethernet_never_reach_the_program() {
    let dataplane = load();
    let before = dataplane
        .counters()
        .action_counters()
        .expect("reading ACTION_STATS");
    let error = dataplane
        .test_run(programs::LB, &[0xff; 10])
        .expect_err("the kernel runs XDP only on frames of at least 14 bytes");
    assert_eq!(os_error(&error), Some(libc::EINVAL), "{error:?}");
    let after = dataplane
        .counters()
        .action_counters()
        .expect("reading ACTION_STATS");
    assert_eq!(before, after, "the program did not run");

    let header_only = wire::ethernet(LB_MAC, CLIENT_MAC, ETHERTYPE_IPV4, &[]);
    assert_eq!(header_only.len(), ETH_LEN);
    assert_passed(&dataplane, &header_only, Reason::ShortIpv4);
}

#[test]
fn frame_too_short_for_ipv4_passes() {
    let dataplane = load();
    let frame = wire::ethernet(LB_MAC, CLIENT_MAC, ETHERTYPE_IPV4, &[0x45; 12]);
    assert_passed(&dataplane, &frame, Reason::ShortIpv4);
}

#[test]
fn ihl_below_5_to_vip_is_dropped() {
    let mut dataplane = load();
    publish_maglev(&mut dataplane, &BACKENDS);
    let mut frame = web_syn(CLIENT_PORT);
    frame[wire::IPV4_VIHL] = 0x44;
    assert_dropped(&dataplane, &frame, Reason::BadIhl);
}

#[test]
fn total_length_beyond_the_frame_is_dropped() {
    let mut dataplane = load();
    publish_maglev(&mut dataplane, &BACKENDS);
    let mut frame = web_syn(CLIENT_PORT);
    let claimed = (frame.len() - ETH_LEN + 1) as u16;
    frame[wire::IPV4_TOTAL_LEN..][..2].copy_from_slice(&claimed.to_be_bytes());
    assert_dropped(&dataplane, &frame, Reason::BadTotalLength);
}

#[test]
fn total_length_below_the_header_is_dropped() {
    let mut dataplane = load();
    publish_maglev(&mut dataplane, &BACKENDS);
    let mut frame = web_syn(CLIENT_PORT);
    frame[wire::IPV4_TOTAL_LEN..][..2].copy_from_slice(&16u16.to_be_bytes());
    assert_dropped(&dataplane, &frame, Reason::BadTotalLength);
}

#[test]
fn fragments_to_vip_are_dropped() {
    let mut dataplane = load();
    publish_maglev(&mut dataplane, &BACKENDS);
    let segment = wire::tcp(
        CLIENT_IP,
        VIP,
        (CLIENT_PORT, HTTP_PORT),
        wire::TCP_SYN,
        &[0; 16],
    );
    for (fragment, which) in [(0x2000, "first fragment"), (0x00b9, "later fragment")] {
        let mut ip = Ipv4::new(CLIENT_IP, VIP, IPPROTO_TCP);
        ip.fragment = fragment;
        let frame = wire::ethernet(LB_MAC, CLIENT_MAC, ETHERTYPE_IPV4, &ip.packet(&segment));
        assert_eq!(
            frame[wire::IPV4_FRAGMENT..][..2],
            fragment.to_be_bytes(),
            "{which}"
        );
        assert_dropped(&dataplane, &frame, Reason::Fragment);
    }
}

#[test]
fn truncated_tcp_header_to_vip_is_dropped() {
    let mut dataplane = load();
    publish_maglev(&mut dataplane, &BACKENDS);
    let segment = wire::tcp(CLIENT_IP, VIP, (CLIENT_PORT, HTTP_PORT), wire::TCP_SYN, &[]);
    let packet = Ipv4::new(CLIENT_IP, VIP, IPPROTO_TCP).packet(&segment[..10]);
    let frame = wire::ethernet(LB_MAC, CLIENT_MAC, ETHERTYPE_IPV4, &packet);
    assert_dropped(&dataplane, &frame, Reason::ShortL4);
}

#[test]
fn tcp_data_offset_below_5_to_vip_is_dropped() {
    let mut dataplane = load();
    publish_maglev(&mut dataplane, &BACKENDS);
    let mut frame = web_syn(CLIENT_PORT);
    frame[ETH_LEN + wire::IPV4_LEN + 12] = 4 << 4;
    assert_dropped(&dataplane, &frame, Reason::ShortL4);
}

// ---------------------------------------------------------------------------
// Benchmark floors
// ---------------------------------------------------------------------------

#[test]
fn floor_programs_pass_and_swap_macs() {
    let dataplane = load();
    let syn = web_syn(CLIENT_PORT);

    let passed = dataplane.test_run(programs::PASS, &syn).expect("xdp_pass");
    assert_eq!((passed.action, passed.data), (XDP_PASS, syn.clone()));

    let swapped = dataplane
        .test_run(programs::MAC_SWAP, &syn)
        .expect("xdp_mac_swap");
    assert_eq!(swapped.action, XDP_TX);
    assert_eq!(
        swapped.data,
        [&CLIENT_MAC[..], &LB_MAC[..], &syn[12..]].concat()
    );
}

// ---------------------------------------------------------------------------
// The guard (`lb_guard`, tc ingress): what reaches the kernel without lb_xdp
// ---------------------------------------------------------------------------

const TC_ACT_OK: i32 = 0;
const TC_ACT_SHOT: i32 = 2;

/// `frame` as the kernel's TCP and UDP would take it in a test run: to the
/// MAC of `lo` (all zeros), so "to this host".
fn to_this_host(mut frame: Vec<u8>) -> Vec<u8> {
    frame[..6].fill(0);
    frame
}

/// Runs `lb_guard` on `frame` and asserts its action, with `bypassed_xdp`
/// counted once when dropped and no reason moving when passed.
fn assert_guard(dataplane: &Dataplane, frame: &[u8], action: i32, what: &str) {
    let before = reasons(dataplane);
    let got = dataplane
        .test_run_guard(frame)
        .expect("BPF_PROG_TEST_RUN of lb_guard");
    assert_eq!(got, action, "lb_guard's action for {what}");
    let mut expected = before;
    if action == TC_ACT_SHOT {
        expected[Reason::BypassedXdp as usize] += 1;
    }
    assert_eq!(reasons(dataplane), expected, "reason counters after {what}");
}

#[test]
fn the_guard_drops_service_traffic_that_reaches_the_kernel() {
    let mut dataplane = load();
    publish_maglev(&mut dataplane, &BACKENDS);
    let ring = round_robin_ring(&[(0, 1)], TABLE_SIZE as usize).expect("a ring");
    dataplane
        .set_service(
            service_key(VIP, DNS_PORT, IPPROTO_UDP),
            DNS_SERVICE,
            Scheduler::RoundRobin,
            &ring,
        )
        .expect("publishing the DNS service");
    for (frame, what) in [
        (web_syn(CLIENT_PORT), "a SYN to a service"),
        (
            web_frame(CLIENT_PORT, wire::TCP_PSH_ACK, b"GET /"),
            "an established segment",
        ),
        (
            udp_frame_to(VIP, (CLIENT_PORT, DNS_PORT), b"q"),
            "UDP to a service",
        ),
        (
            tcp_frame_to(VIP, (CLIENT_PORT, 443), wire::TCP_SYN, &[]),
            "TCP to a VIP port with no service (lb_xdp drops it)",
        ),
    ] {
        assert_guard(&dataplane, &to_this_host(frame), TC_ACT_SHOT, what);
    }
    let mut ip = Ipv4::new(CLIENT_IP, VIP, IPPROTO_TCP);
    ip.fragment = 0x0004;
    let later_fragment = wire::ethernet([0; 6], CLIENT_MAC, ETHERTYPE_IPV4, &ip.packet(&[0; 24]));
    assert_guard(
        &dataplane,
        &later_fragment,
        TC_ACT_SHOT,
        "a later fragment to a VIP",
    );
}

#[test]
fn the_guard_passes_everything_lb_xdp_hands_to_the_kernel() {
    let mut dataplane = load();
    publish_maglev(&mut dataplane, &BACKENDS);
    let echo = [8, 0, 0xf7, 0xff, 0, 0, 0, 0];
    let icmp = wire::ethernet(
        [0; 6],
        CLIENT_MAC,
        ETHERTYPE_IPV4,
        &Ipv4::new(CLIENT_IP, VIP, 1).packet(&echo),
    );
    assert_guard(&dataplane, &icmp, TC_ACT_OK, "ICMP to a VIP");
    let other = tcp_frame_to(OTHER_IP, (CLIENT_PORT, HTTP_PORT), wire::TCP_SYN, &[]);
    assert_guard(
        &dataplane,
        &to_this_host(other),
        TC_ACT_OK,
        "TCP to another address",
    );
    // Flooded by a switch to every port: the kernel drops it before TCP.
    let mut flooded = web_syn(CLIENT_PORT);
    flooded[..6].copy_from_slice(&[0x02, 0, 0, 0, 0x99, 0x01]);
    assert_guard(
        &dataplane,
        &flooded,
        TC_ACT_OK,
        "a service frame for another MAC",
    );
    let arp = wire::ethernet([0xff; 6], CLIENT_MAC, wire::ETHERTYPE_ARP, &[0; 28]);
    assert_guard(&dataplane, &arp, TC_ACT_OK, "ARP");

    // lb_xdp passes a service with no serving backend on purpose, so that
    // the kernel refuses new connections at once: the guard lets it.
    dataplane
        .set_service(web_key(), WEB_SERVICE, Scheduler::Maglev, &[])
        .expect("publishing the web service without backends");
    assert_guard(
        &dataplane,
        &to_this_host(web_syn(CLIENT_PORT)),
        TC_ACT_OK,
        "a SYN to a service with no serving backend",
    );
}

// ---------------------------------------------------------------------------
// The source scheduler
// ---------------------------------------------------------------------------

/// `scheduler = "source"`: the Maglev table, indexed by the client address
/// alone. Every connection of one client, whatever its port, lands on the
/// same backend (the one lb-common's source hash picks); many clients spread
/// over every backend.
#[test]
fn the_source_scheduler_keeps_a_client_on_one_backend_and_spreads_clients() {
    let mut dataplane = load();
    let table = maglev_table(&BACKENDS, TABLE_SIZE);
    dataplane
        .set_service(web_key(), WEB_SERVICE, Scheduler::Source, &table)
        .expect("publishing the web service");
    let expected = table[(source_hash(&web_flow(0)) % TABLE_SIZE) as usize];
    for port in 0..50u16 {
        assert_eq!(
            forward(&dataplane, &web_syn(40_000 + port)),
            expected,
            "client port {port}"
        );
    }
    let mut by_backend = [0u32; 3];
    for client in 0..300u16 {
        let [high, low] = client.to_be_bytes();
        let source = [10, 1, high, low];
        let frame = from_source(web_syn(40_000), source);
        let backend = forward(&dataplane, &frame);
        let mut flow = web_flow(40_000);
        flow.src_ip = u32::from_ne_bytes(source);
        assert_eq!(
            backend,
            table[(source_hash(&flow) % TABLE_SIZE) as usize],
            "client {source:?}"
        );
        by_backend[backend as usize] += 1;
    }
    assert!(
        by_backend.iter().all(|&count| count > 60),
        "300 clients over three backends: {by_backend:?}"
    );
}

// ---------------------------------------------------------------------------
// NAT (`forwarding = "nat"`)
// ---------------------------------------------------------------------------

/// The servers' side interface: where the `nat` backends' replies come in.
const SERVERS_MAC: [u8; 6] = [0x02, 0, 0, 0, 7, 0xfe];
const SERVERS_IFINDEX: u32 = 7;
/// The port each backend serves the `nat` services on: two other than the
/// services' own, backend 2 on the web service's.
const NAT_PORTS: [u16; 3] = [8080, 8081, HTTP_PORT];

/// Backend `id` up, serving `nat` services on `NAT_PORTS[id]`.
fn nat_backend(id: u32) -> Backend {
    Backend {
        port: NAT_PORTS[id as usize].to_be(),
        ..backend(id, backend_state::UP)
    }
}

fn endpoint(addr: [u8; 4], port: u16, proto: u8) -> Endpoint {
    Endpoint {
        addr: u32::from_ne_bytes(addr),
        port: port.to_be(),
        proto,
        _pad: 0,
    }
}

/// [`load`] with the servers' interface written, the backends serving on
/// [`NAT_PORTS`] and their replies known for the web service (TCP) and the
/// DNS service (UDP), and the maps the `Dataplane` API does not write yet.
fn load_nat() -> (Dataplane, KernelMaps) {
    let mut dataplane = load();
    dataplane
        .set_local_interface(LocalInterface::SERVERS, SERVERS_MAC, SERVERS_IFINDEX)
        .expect("writing the servers' interface");
    let mut kernel = KernelMaps::open(&dataplane).expect("opening the maps by id");
    for id in BACKENDS {
        let backend = nat_backend(id);
        dataplane
            .set_backend(id, &backend)
            .expect("writing a backend");
        let address = backend.ip.to_ne_bytes();
        for (port, proto) in [(HTTP_PORT, IPPROTO_TCP), (DNS_PORT, IPPROTO_UDP)] {
            kernel
                .set_nat_reverse(
                    endpoint(address, NAT_PORTS[id as usize], proto),
                    endpoint(VIP, port, proto),
                )
                .expect("writing NAT_REVERSE");
        }
    }
    (dataplane, kernel)
}

/// Publishes the web service over `ids` and sets its `NAT` flag (which
/// every publication drops: the `Dataplane` API has no `nat` yet).
fn publish_nat_web(dataplane: &mut Dataplane, kernel: &mut KernelMaps, ids: &[u32]) -> Vec<u32> {
    let table = publish_maglev(dataplane, ids);
    kernel
        .set_service_flag(&web_key(), service_flags::NAT)
        .expect("setting the nat flag");
    table
}

/// The client's `NAT_CLIENTS` entry.
fn learnt_client(kernel: &KernelMaps) -> Option<NatClient> {
    kernel
        .nat_client(u32::from_ne_bytes(CLIENT_IP))
        .expect("reading NAT_CLIENTS")
}

/// Runs the client's `frame` to a `nat` service and asserts it is bounced
/// to a backend with the MACs and the destination address and port
/// rewritten to the backend's, both checksums valid (when `frame`'s were)
/// and nothing else changed; returns the backend.
fn nat_forward(dataplane: &Dataplane, frame: &[u8]) -> u32 {
    let before = reasons(dataplane);
    let output = run(dataplane, frame);
    assert_eq!(
        output.action, XDP_TX,
        "a packet to a nat service is bounced"
    );
    let out = &output.data;
    let id = BACKENDS
        .into_iter()
        .find(|&id| out[..6] == backend_mac(id))
        .unwrap_or_else(|| panic!("unknown destination MAC {:02x?}", &out[..6]));
    let backend = nat_backend(id);
    assert_eq!(out[6..12], LB_MAC);
    let (ip, l4) = (ETH_LEN, ETH_LEN + wire::IPV4_LEN);
    assert_eq!(
        out[ip + 16..ip + 20],
        backend.ip.to_ne_bytes(),
        "destination"
    );
    assert_eq!(
        out[l4 + 2..l4 + 4],
        NAT_PORTS[id as usize].to_be_bytes(),
        "port"
    );
    assert_eq!(out[ip + 12..ip + 16], CLIENT_IP, "the source stays");
    wire::assert_checksums_valid(out);
    assert_eq!(
        without_nat_fields(out),
        without_nat_fields(frame),
        "only the MACs, the destination and the checksums change"
    );
    assert_eq!(
        reasons(dataplane),
        before,
        "a forwarded packet has no reason"
    );
    id
}

/// `frame` with the MACs, both addresses, both ports and both checksums
/// zeroed: what NAT leaves as it was.
fn without_nat_fields(frame: &[u8]) -> Vec<u8> {
    let mut frame = frame.to_vec();
    let (ip, l4) = (ETH_LEN, ETH_LEN + wire::IPV4_LEN);
    frame[..12].fill(0);
    frame[ip + 10..ip + 12].fill(0);
    frame[ip + 12..ip + 20].fill(0);
    frame[l4..l4 + 4].fill(0);
    let checksum = if frame[ip + 9] == IPPROTO_TCP { 16 } else { 6 };
    frame[l4 + checksum..l4 + checksum + 2].fill(0);
    frame
}

/// Backend `id`'s reply from its `nat` port to the client's port, as it
/// comes in on the servers' side (to their interface's MAC), checksums
/// valid: TCP with `payload` (PSH ACK), or UDP when `udp`.
fn nat_reply(id: u32, udp: bool, payload: &[u8]) -> Vec<u8> {
    let source = nat_backend(id).ip.to_ne_bytes();
    let ports = (NAT_PORTS[id as usize], CLIENT_PORT);
    let (proto, segment) = if udp {
        (IPPROTO_UDP, wire::udp(source, CLIENT_IP, ports, payload))
    } else {
        let segment = wire::tcp(source, CLIENT_IP, ports, wire::TCP_PSH_ACK, payload);
        (IPPROTO_TCP, segment)
    };
    let packet = Ipv4::new(source, CLIENT_IP, proto).packet(&segment);
    wire::ethernet(SERVERS_MAC, backend_mac(id), ETHERTYPE_IPV4, &packet)
}

/// Runs `reply` and asserts it leaves with `action` as the service's
/// (VIP:`service_port`), to the learnt client MAC from the main interface's,
/// both checksums valid and nothing else changed.
fn assert_translated(dataplane: &Dataplane, reply: &[u8], action: u32, service_port: u16) {
    let before = reasons(dataplane);
    let output = run(dataplane, reply);
    assert_eq!(output.action, action, "a translated reply");
    let out = &output.data;
    let (ip, l4) = (ETH_LEN, ETH_LEN + wire::IPV4_LEN);
    assert_eq!(out[..12], [&CLIENT_MAC[..], &LB_MAC[..]].concat(), "MACs");
    assert_eq!(out[ip + 12..ip + 16], VIP, "the source is the VIP");
    assert_eq!(
        out[l4..l4 + 2],
        service_port.to_be_bytes(),
        "and the service's port"
    );
    assert_eq!(out[ip + 16..ip + 20], CLIENT_IP, "the destination stays");
    assert_eq!(out[l4 + 2..l4 + 4], CLIENT_PORT.to_be_bytes());
    wire::assert_checksums_valid(out);
    assert_eq!(without_nat_fields(out), without_nat_fields(reply));
    assert_eq!(
        reasons(dataplane),
        before,
        "a translated reply has no reason"
    );
}

#[test]
fn a_nat_service_rewrites_the_destination_to_the_backends_address_and_port() {
    let (mut dataplane, mut kernel) = load_nat();
    let table = publish_nat_web(&mut dataplane, &mut kernel, &BACKENDS);
    let expected = table[(flow_hash(&web_flow(CLIENT_PORT)) % TABLE_SIZE) as usize];
    let syn = web_syn(CLIENT_PORT);
    assert_eq!(nat_forward(&dataplane, &syn), expected);
    let traffic = Counters {
        packets: 1,
        bytes: syn.len() as u64,
        new_flows: 1,
    };
    assert_eq!(backend_counters(&dataplane, expected), traffic);
    assert_eq!(service_counters(&dataplane, WEB_SERVICE), traffic);
    assert_eq!(
        learnt_client(&kernel),
        Some(NatClient {
            mac: CLIENT_MAC,
            _pad: [0; 2]
        }),
        "the new flow's client is learnt"
    );
    // Every backend, on its own port or the service's.
    let mut seen = [false; 3];
    for port in 1..=60 {
        let data = web_frame(port, wire::TCP_PSH_ACK, b"GET / HTTP/1.1\r\n\r\n");
        seen[nat_forward(&dataplane, &data) as usize] = true;
    }
    assert_eq!(seen, [true; 3]);
}

#[test]
fn a_backends_reply_is_translated_back_to_the_vip_and_sent_to_the_client() {
    let (mut dataplane, mut kernel) = load_nat();
    publish_nat_web(&mut dataplane, &mut kernel, &BACKENDS);
    let backend = nat_forward(&dataplane, &web_syn(CLIENT_PORT));
    let reply = nat_reply(backend, false, b"HTTP/1.1 200 OK\r\n\r\n");
    // The main interface is the one it came in on: bounced.
    assert_translated(&dataplane, &reply, XDP_TX, HTTP_PORT);
    // It is another one (the reply came in on the servers' interface):
    // redirected there.
    dataplane
        .set_local_interface(LocalInterface::MAIN, LB_MAC, SERVERS_IFINDEX + 1)
        .expect("writing the main interface");
    assert_translated(&dataplane, &reply, XDP_REDIRECT, HTTP_PORT);
    // Stateless: any backend's reply from its nat port is translated, for
    // a client this node knows.
    for id in BACKENDS {
        assert_translated(
            &dataplane,
            &nat_reply(id, false, b""),
            XDP_REDIRECT,
            HTTP_PORT,
        );
    }
}

#[test]
fn a_nat_service_drops_client_packets_from_the_servers_side() {
    let (mut dataplane, mut kernel) = load_nat();
    publish_nat_web(&mut dataplane, &mut kernel, &BACKENDS);
    let mut hairpin = web_syn(CLIENT_PORT);
    hairpin[..6].copy_from_slice(&SERVERS_MAC);
    assert_dropped(&dataplane, &hairpin, Reason::NatHairpin);
    assert_eq!(dataplane.flow_count(), 0, "no flow is made");
    assert_eq!(learnt_client(&kernel), None, "nor a client learnt");
    // A dsr-l2 service takes them: the frame is for this node.
    publish_maglev(&mut dataplane, &BACKENDS);
    let output = run(&dataplane, &hairpin);
    assert_eq!(output.action, XDP_TX);
    assert_eq!(output.data[12..], hairpin[12..], "only the MACs change");
}

#[test]
fn a_reply_to_a_client_this_node_never_saw_is_passed_untouched() {
    let (mut dataplane, mut kernel) = load_nat();
    publish_nat_web(&mut dataplane, &mut kernel, &BACKENDS);
    assert_passed(&dataplane, &nat_reply(0, false, b"hi"), Reason::NatNoClient);
    assert_passed(&dataplane, &nat_reply(1, true, b"hi"), Reason::NatNoClient);
    // Known client, but not a nat reply: to the main MAC, or from a port
    // NAT_REVERSE does not hold.
    nat_forward(&dataplane, &web_syn(CLIENT_PORT));
    let mut to_main = nat_reply(0, false, b"hi");
    to_main[..6].copy_from_slice(&LB_MAC);
    assert_passed(&dataplane, &to_main, Reason::NotService);
    let mut other_port = nat_reply(0, false, b"hi");
    other_port[ETH_LEN + wire::IPV4_LEN..][..2].copy_from_slice(&9999u16.to_be_bytes());
    assert_passed(&dataplane, &other_port, Reason::NotService);
}

#[test]
fn udp_of_a_nat_service_keeps_a_valid_checksum_or_none() {
    let (mut dataplane, mut kernel) = load_nat();
    let dns = service_key(VIP, DNS_PORT, IPPROTO_UDP);
    dataplane
        .set_service(
            dns,
            DNS_SERVICE,
            Scheduler::Maglev,
            &[1; TABLE_SIZE as usize],
        )
        .expect("publishing the DNS service");
    kernel
        .set_service_flag(&dns, service_flags::NAT)
        .expect("setting the nat flag");
    let checksum_at = ETH_LEN + wire::IPV4_LEN + 6;
    let query = udp_frame_to(VIP, (CLIENT_PORT, DNS_PORT), b"query");
    assert_ne!(query[checksum_at..checksum_at + 2], [0, 0]);
    assert_eq!(nat_forward(&dataplane, &query), 1);
    let mut unchecked = query.clone();
    unchecked[checksum_at..checksum_at + 2].fill(0);
    assert_eq!(nat_forward(&dataplane, &unchecked), 1);
    assert_eq!(
        run(&dataplane, &unchecked).data[checksum_at..checksum_at + 2],
        [0, 0],
        "no checksum stays none"
    );

    let answer = nat_reply(1, true, b"answer");
    assert_translated(&dataplane, &answer, XDP_TX, DNS_PORT);
    let mut unchecked = answer.clone();
    unchecked[checksum_at..checksum_at + 2].fill(0);
    assert_translated(&dataplane, &unchecked, XDP_TX, DNS_PORT);
    assert_eq!(
        run(&dataplane, &unchecked).data[checksum_at..checksum_at + 2],
        [0, 0]
    );
}

#[test]
fn an_established_nat_flow_stays_on_its_backend_when_the_backend_set_changes() {
    let (mut dataplane, mut kernel) = load_nat();
    publish_nat_web(&mut dataplane, &mut kernel, &BACKENDS);
    let first = nat_forward(&dataplane, &web_syn(CLIENT_PORT));
    // Republish twice (both halves) with tables that no longer name
    // `first`: new flows avoid it, the established flow stays, still sent
    // to its address and port, and its replies still translated.
    let others: Vec<u32> = BACKENDS.into_iter().filter(|&id| id != first).collect();
    for _ in 0..2 {
        publish_nat_web(&mut dataplane, &mut kernel, &others);
        assert_eq!(
            nat_forward(&dataplane, &web_frame(CLIENT_PORT, wire::TCP_ACK, &[])),
            first
        );
        let request = web_frame(CLIENT_PORT, wire::TCP_PSH_ACK, b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(nat_forward(&dataplane, &request), first);
        assert_translated(
            &dataplane,
            &nat_reply(first, false, b"OK"),
            XDP_TX,
            HTTP_PORT,
        );
    }
    for port in 1..=20 {
        assert_ne!(
            nat_forward(&dataplane, &web_syn(port)),
            first,
            "new flow {port}"
        );
    }
    let counters = backend_counters(&dataplane, first);
    assert_eq!((counters.packets, counters.new_flows), (5, 1));
}

#[test]
fn frag_needed_for_a_nat_flow_is_passed() {
    let (mut dataplane, mut kernel) = load_nat();
    publish_nat_web(&mut dataplane, &mut kernel, &BACKENDS);
    nat_forward(&dataplane, &web_syn(CLIENT_PORT));
    // Its backend would need the quoted header translated too.
    assert_passed(&dataplane, &frag_needed_for(CLIENT_PORT), Reason::VipIcmp);
}
