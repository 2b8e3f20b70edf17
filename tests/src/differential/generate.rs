//! The packets the differential test sends, deterministic from a seed: a
//! systematic sweep of the edge cases (every truncation, every IHL and total
//! length, every TCP flag combination, ...) and an endless stream of random
//! packets drawn from the same kinds.
//!
//! Clients come from a small pool, so random packets both open new flows and
//! hit established ones; `nat` backends' replies go to clients of that pool
//! (learnt once they open a flow), to clients learnt beforehand and to
//! clients never seen.

use lb_common::maps::{Endpoint, FlowKey, ServiceKey, SourcePrefix, IPPROTO_TCP, IPPROTO_UDP};

use super::frames::{
    FrameSpec, L4Spec, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_QINQ,
    ETHERTYPE_VLAN,
};
use super::rng::Rng;
use super::setup::{
    backend_mac, endpoint, flow_key, keys, service_key, Setup, CLIENT_MAC, LB_MAC, NOT_A_VIP,
    REMOTE_LB_MAC, UNKNOWN_CLIENT, VIP_A, VIP_B, VIP_C,
};

/// The source MAC of the servers' replies (not looked at).
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x20, 0x01];
/// The router that reports a too-big packet (TEST-NET-3).
const ROUTER: [u8; 4] = [203, 0, 113, 1];
/// An embedded IPv4 header and the 8 bytes of TCP/UDP an ICMP error quotes.
const QUOTE_LEN: usize = 28;
/// Clients of random flows: 198.51.100.1 ..= 198.51.100.24 (TEST-NET-2).
const CLIENTS: u8 = 24;
/// Client ports of random flows: 20000 ..= 20039.
const CLIENT_PORTS: u16 = 40;

const TCP_FIN: u16 = 0x001;
const TCP_SYN: u16 = 0x002;
const TCP_RST: u16 = 0x004;
const TCP_PSH: u16 = 0x008;
const TCP_ACK: u16 = 0x010;
/// The flags of ordinary segments.
const COMMON_TCP_FLAGS: [u16; 5] = [
    TCP_SYN,
    TCP_ACK,
    TCP_PSH | TCP_ACK,
    TCP_FIN | TCP_ACK,
    TCP_RST,
];

/// What a generated packet was made to exercise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A well-formed packet to a service.
    Valid,
    /// A packet of a flow whose entry the setup wrote (stale or live).
    StaleFlow,
    /// A valid frame cut short.
    Truncated,
    /// Random bytes of random length.
    RandomBytes,
    /// Ethernet and IPv4 to a VIP, then random bytes.
    RandomAfterIpv4,
    /// A valid frame with a few bytes changed at random.
    ByteFlips,
    /// Every IHL value (the header bytes unchanged).
    Ihl,
    /// Every total-length value.
    TotalLength,
    /// An IP version other than 4.
    Version,
    /// More-fragments, a fragment offset, DF or the reserved flag.
    Fragment,
    /// IPv4 options (IHL 6 to 15).
    IpOptions,
    /// TCP flag combinations.
    TcpFlags,
    /// Every TCP data offset.
    TcpDataOffset,
    /// UDP length fields of 0, short, exact and overlong.
    UdpLength,
    /// 802.1Q, 802.1ad and double tags.
    Vlan,
    /// A destination MAC that is not the LB's.
    OtherMac,
    /// ARP, IPv6 and other EtherTypes.
    NotIpv4,
    /// ICMP to VIPs and other addresses.
    Icmp,
    /// ICMP "fragmentation needed" to a VIP quoting a packet of a flow
    /// (established, stale or unknown), the quote whole or cut.
    FragNeeded,
    /// A VIP on a port with no service.
    OtherPort,
    /// A VIP with a protocol other than the service's.
    OtherProtocol,
    /// An address that is no VIP.
    NotAVip,
    /// A service that was removed.
    RemovedService,
    /// Bytes after the IPv4 packet.
    Trailer,
    /// A source at the edge of a prefix of a service's allow-list: its first
    /// and last address, and the addresses just outside.
    AllowEdge,
    /// A packet from a backend's address and port to a client (mostly a
    /// `nat` backend's reply to the servers' interface's MAC: to learnt and
    /// unknown clients, TCP and UDP with and without a checksum, cut short,
    /// fragmented, with any IHL, to other MACs).
    NatReply,
    /// A packet to a service on the servers' interface's MAC (a hairpin for
    /// a `nat` service).
    ServersSide,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 27] = [
        Kind::Valid,
        Kind::StaleFlow,
        Kind::Truncated,
        Kind::RandomBytes,
        Kind::RandomAfterIpv4,
        Kind::ByteFlips,
        Kind::Ihl,
        Kind::TotalLength,
        Kind::Version,
        Kind::Fragment,
        Kind::IpOptions,
        Kind::TcpFlags,
        Kind::TcpDataOffset,
        Kind::UdpLength,
        Kind::Vlan,
        Kind::OtherMac,
        Kind::NotIpv4,
        Kind::Icmp,
        Kind::FragNeeded,
        Kind::OtherPort,
        Kind::OtherProtocol,
        Kind::NotAVip,
        Kind::RemovedService,
        Kind::Trailer,
        Kind::AllowEdge,
        Kind::NatReply,
        Kind::ServersSide,
    ];

    /// How often random packets are of this kind, relative to the others.
    fn weight(self) -> usize {
        match self {
            Kind::Valid => 30,
            Kind::Truncated | Kind::ByteFlips => 8,
            Kind::NatReply => 6,
            Kind::TcpFlags => 5,
            Kind::StaleFlow
            | Kind::RandomBytes
            | Kind::RandomAfterIpv4
            | Kind::TotalLength
            | Kind::IpOptions
            | Kind::UdpLength => 4,
            Kind::Ihl | Kind::Fragment | Kind::TcpDataOffset | Kind::OtherMac => 3,
            Kind::Version
            | Kind::Vlan
            | Kind::Icmp
            | Kind::FragNeeded
            | Kind::OtherPort
            | Kind::Trailer
            | Kind::AllowEdge
            | Kind::ServersSide => 2,
            Kind::NotIpv4 | Kind::OtherProtocol | Kind::NotAVip | Kind::RemovedService => 1,
        }
    }

    /// A kebab-case name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Valid => "valid",
            Kind::StaleFlow => "stale-flow",
            Kind::Truncated => "truncated",
            Kind::RandomBytes => "random-bytes",
            Kind::RandomAfterIpv4 => "random-after-ipv4",
            Kind::ByteFlips => "byte-flips",
            Kind::Ihl => "ihl",
            Kind::TotalLength => "total-length",
            Kind::Version => "version",
            Kind::Fragment => "fragment",
            Kind::IpOptions => "ip-options",
            Kind::TcpFlags => "tcp-flags",
            Kind::TcpDataOffset => "tcp-data-offset",
            Kind::UdpLength => "udp-length",
            Kind::Vlan => "vlan",
            Kind::OtherMac => "other-mac",
            Kind::NotIpv4 => "not-ipv4",
            Kind::Icmp => "icmp",
            Kind::FragNeeded => "frag-needed",
            Kind::OtherPort => "other-port",
            Kind::OtherProtocol => "other-protocol",
            Kind::NotAVip => "not-a-vip",
            Kind::RemovedService => "removed-service",
            Kind::Trailer => "trailer",
            Kind::AllowEdge => "allow-edge",
            Kind::NatReply => "nat-reply",
            Kind::ServersSide => "servers-side",
        }
    }
}

/// A generated frame and what it exercises.
#[derive(Clone, Debug)]
pub struct Packet {
    pub kind: Kind,
    pub frame: Vec<u8>,
}

/// Packets for one setup.
pub struct Generator {
    rng: Rng,
    services: Vec<ServiceKey>,
    removed: Vec<ServiceKey>,
    setup_flows: Vec<FlowKey>,
    allow_listed: Vec<(ServiceKey, SourcePrefix)>,
    /// The `nat` backends' endpoints (the keys of `NAT_REVERSE`).
    nat_backends: Vec<Endpoint>,
    /// The clients the setup learns beforehand.
    learnt_clients: Vec<[u8; 4]>,
}

impl Generator {
    /// A generator of packets for `setup`'s services, drawn from `seed`.
    pub fn new(setup: &Setup, seed: u64) -> Self {
        Self {
            rng: Rng::new(seed),
            services: setup.published(),
            removed: setup.removed_services(),
            setup_flows: setup.flows().iter().map(|(key, _)| *key).collect(),
            allow_listed: setup.allow_listed(),
            nat_backends: setup
                .nat_reverse()
                .iter()
                .map(|(backend, _)| *backend)
                .collect(),
            learnt_clients: setup
                .nat_clients()
                .iter()
                .map(|addr| addr.to_ne_bytes())
                .collect(),
        }
    }

    /// The systematic sweep: every case of each edge the kinds name.
    pub fn sweep(&mut self) -> Vec<Packet> {
        let mut packets = Vec::new();
        let mut add = |kind: Kind, frames: Vec<Vec<u8>>| {
            packets.extend(frames.into_iter().map(|frame| Packet { kind, frame }));
        };
        add(Kind::Truncated, self.every_truncation());
        add(Kind::TotalLength, self.every_ihl_and_total_length());
        add(Kind::Version, self.every_version());
        add(Kind::TcpFlags, self.every_tcp_flag_byte());
        add(Kind::TcpDataOffset, self.every_tcp_data_offset());
        add(Kind::UdpLength, self.every_udp_length());
        add(Kind::Fragment, self.every_fragment_field());
        add(Kind::IpOptions, self.every_options_length());
        add(Kind::Vlan, self.every_vlan_tagging());
        add(Kind::OtherMac, self.every_kind_of_mac());
        add(Kind::NotIpv4, self.every_other_ether_type());
        add(Kind::Icmp, self.every_icmp_case());
        add(Kind::FragNeeded, self.every_frag_needed_case());
        add(Kind::OtherProtocol, self.every_other_protocol());
        add(Kind::OtherPort, self.every_other_port());
        add(Kind::NotAVip, self.every_not_a_vip_case());
        add(Kind::RemovedService, self.every_removed_service());
        add(Kind::StaleFlow, self.every_setup_flow());
        add(Kind::Trailer, self.every_trailer_length());
        add(Kind::AllowEdge, self.every_allow_edge());
        add(Kind::NatReply, self.every_nat_reply_case());
        add(Kind::ServersSide, self.every_servers_side_case());
        packets
    }

    /// One random packet: a kind drawn by weight, then a random case of it.
    pub fn random(&mut self) -> Packet {
        let total: usize = Kind::ALL.iter().map(|kind| kind.weight()).sum();
        let mut draw = self.rng.below(total);
        let mut kind = Kind::Valid;
        for candidate in Kind::ALL {
            if draw < candidate.weight() {
                kind = candidate;
                break;
            }
            draw -= candidate.weight();
        }
        let frame = self.random_case(kind);
        Packet { kind, frame }
    }

    fn random_case(&mut self, kind: Kind) -> Vec<u8> {
        match kind {
            Kind::Valid => self.valid_to_any_service().build(),
            Kind::StaleFlow if !self.setup_flows.is_empty() => {
                let key = self.setup_flows[self.rng.below(self.setup_flows.len())];
                self.of_flow(&key).build()
            }
            Kind::Truncated => {
                let mut frame = self.valid_to_any_service().build();
                frame.truncate(self.rng.below(frame.len() + 1));
                frame
            }
            Kind::RandomBytes => {
                let len = self.rng.in_range(0..=160);
                self.rng.bytes(len)
            }
            Kind::RandomAfterIpv4 => {
                let mut frame = self.valid_to_any_service().build();
                let keep = self.rng.in_range(14..=34);
                frame.truncate(keep);
                let tail = self.rng.in_range(0..=80);
                frame.extend(self.rng.bytes(tail));
                frame
            }
            Kind::ByteFlips => {
                let mut frame = self.valid_to_any_service().build();
                for _ in 0..self.rng.in_range(1..=4) {
                    let at = self.rng.in_range(12..=frame.len() - 1);
                    frame[at] = self.rng.byte();
                }
                frame
            }
            Kind::Ihl => {
                let mut spec = self.valid_to_any_service();
                spec.ip.ihl = Some(self.rng.below(16) as u8);
                spec.build()
            }
            Kind::TotalLength => {
                let mut spec = self.valid_to_any_service();
                let natural = spec.build().len() - 14;
                spec.ip.total_len = Some(if self.rng.percent(80) {
                    self.rng.in_range(0..=natural + 8) as u16
                } else {
                    self.rng.u16()
                });
                spec.build()
            }
            Kind::Version => {
                let mut spec = self.valid_to_any_service();
                spec.ip.version = self.rng.below(16) as u8;
                spec.build()
            }
            Kind::Fragment => {
                let mut spec = self.valid_to_any_service();
                spec.ip.flags_fragment = self.rng.u16();
                spec.build()
            }
            Kind::IpOptions => {
                let mut spec = self.valid_to_any_service();
                let words = self.rng.in_range(1..=10);
                spec.ip.options = self.options(words);
                spec.build()
            }
            Kind::TcpFlags => {
                let service = self.service_with(IPPROTO_TCP);
                let flags = self.rng.u16() & 0x0fff;
                self.tcp_to(&service, flags).build()
            }
            Kind::TcpDataOffset => {
                let service = self.service_with(IPPROTO_TCP);
                let offset = self.rng.below(16) as u8;
                let payload = self.rng.in_range(0..=60);
                self.tcp_with_data_offset(&service, offset, payload).build()
            }
            Kind::UdpLength => {
                let service = self.service_with(IPPROTO_UDP);
                let len = match self.rng.below(4) {
                    0 => 0,
                    1 => self.rng.in_range(1..=7) as u16,
                    2 => self.rng.in_range(8..=80) as u16,
                    _ => self.rng.u16(),
                };
                self.udp_with_length(&service, len).build()
            }
            Kind::Vlan => {
                let mut spec = self.valid_to_any_service();
                let tpid = *self.rng.pick(&[ETHERTYPE_VLAN, ETHERTYPE_QINQ, 0x9100]);
                spec.vlan_tags.push((tpid, self.rng.u16()));
                if self.rng.percent(30) {
                    spec.vlan_tags.push((ETHERTYPE_VLAN, self.rng.u16()));
                }
                spec.build()
            }
            Kind::OtherMac => {
                let mut spec = self.valid_to_any_service();
                spec.dst_mac = self.other_mac();
                spec.build()
            }
            Kind::NotIpv4 => {
                let mut spec = self.valid_to_any_service();
                spec.ether_type = self.rng.u16();
                if spec.ether_type == ETHERTYPE_IPV4 {
                    spec.ether_type = ETHERTYPE_IPV6;
                }
                spec.build()
            }
            Kind::Icmp => {
                let dst = *self.rng.pick(&[VIP_A, VIP_B, VIP_C, NOT_A_VIP]);
                let icmp_type = self.rng.byte();
                let code = self.rng.byte();
                self.icmp_to(dst, icmp_type, code).build()
            }
            Kind::FragNeeded => {
                let flow = if !self.setup_flows.is_empty() && self.rng.percent(30) {
                    self.setup_flows[self.rng.below(self.setup_flows.len())]
                } else {
                    let service = *self.rng.pick(&self.services);
                    let (client, client_port) = self.client();
                    flow_key(&service, client, client_port)
                };
                let quoted = if self.rng.percent(80) {
                    QUOTE_LEN
                } else {
                    self.rng.below(QUOTE_LEN + 40)
                };
                self.frag_needed_about(&flow, quoted).build()
            }
            Kind::OtherPort => {
                let service = *self.rng.pick(&self.services);
                let port = self.rng.u16().to_be();
                let key = ServiceKey { port, ..service };
                self.valid_to(&key).build()
            }
            Kind::OtherProtocol => {
                let mut spec = self.valid_to_any_service();
                spec.ip.protocol = self.rng.byte();
                spec.build()
            }
            Kind::NotAVip => {
                let mut spec = self.valid_to_any_service();
                spec.ip.dst = NOT_A_VIP;
                if self.rng.percent(50) {
                    spec.ip.ihl = Some(self.rng.below(16) as u8);
                    spec.ip.flags_fragment = self.rng.u16();
                }
                spec.build()
            }
            Kind::RemovedService if !self.removed.is_empty() => {
                let key = self.removed[self.rng.below(self.removed.len())];
                self.valid_to(&key).build()
            }
            Kind::AllowEdge if !self.allow_listed.is_empty() => {
                let (key, prefix) = *self.rng.pick(&self.allow_listed);
                let sources = edges(prefix);
                let source = *self.rng.pick(&sources);
                let (_, client_port) = self.client();
                self.valid_from(&key, source, client_port).build()
            }
            // A setup with no stale flow, no removed service or no allow-list:
            // a valid packet.
            Kind::StaleFlow | Kind::RemovedService | Kind::AllowEdge => {
                self.valid_to_any_service().build()
            }
            Kind::Trailer => {
                let mut spec = self.valid_to_any_service();
                let len = self.rng.in_range(1..=46);
                spec.trailer = self.rng.bytes(len);
                spec.build()
            }
            Kind::NatReply => self.random_nat_reply(),
            Kind::ServersSide => {
                let mut spec = self.valid_to_any_service();
                spec.dst_mac = REMOTE_LB_MAC;
                spec.build()
            }
        }
    }

    /// A random reply: mostly from a `nat` backend to the servers' MAC,
    /// often with one thing wrong with it.
    fn random_nat_reply(&mut self) -> Vec<u8> {
        let backend = self.reply_source();
        let (client, client_port) = match self.rng.below(4) {
            0 | 1 => self.client(),
            2 if !self.learnt_clients.is_empty() => (*self.rng.pick(&self.learnt_clients), 443),
            _ => (UNKNOWN_CLIENT, 443),
        };
        let mut spec = self.reply_from(&backend, client, client_port);
        match self.rng.below(16) {
            0 => spec.dst_mac = LB_MAC,
            1 => spec.dst_mac = self.other_mac(),
            2 => spec.ip.flags_fragment = self.rng.u16(),
            3 => spec.ip.ihl = Some(self.rng.below(16) as u8),
            4 => {
                let words = self.rng.in_range(1..=10);
                spec.ip.options = self.options(words);
            }
            5 => spec.ip.total_len = Some(self.rng.u16()),
            6 => {
                let mut frame = spec.build();
                frame.truncate(self.rng.below(frame.len() + 1));
                return frame;
            }
            7 => {
                let other = self.rng.byte();
                spec.ip.protocol = *self.rng.pick(&[1, IPPROTO_TCP, IPPROTO_UDP, other]);
            }
            8 => {
                let len = self.rng.in_range(1..=46);
                spec.trailer = self.rng.bytes(len);
            }
            _ => {}
        }
        spec.build()
    }

    /// The source of a reply: a `nat` backend's endpoint, or now and then
    /// another port, protocol or address.
    fn reply_source(&mut self) -> Endpoint {
        let known = if self.nat_backends.is_empty() {
            endpoint(
                u32::from_ne_bytes([10, 0, 1, 17]),
                8080u16.to_be(),
                IPPROTO_TCP,
            )
        } else {
            *self.rng.pick(&self.nat_backends)
        };
        match self.rng.below(10) {
            0 => Endpoint {
                port: self.rng.u16().to_be(),
                ..known
            },
            1 => Endpoint {
                proto: if known.proto == IPPROTO_TCP {
                    IPPROTO_UDP
                } else {
                    IPPROTO_TCP
                },
                ..known
            },
            // Backend 0's web port: a dsr-l2 backend, whose replies never
            // come this way.
            2 => endpoint(
                u32::from_ne_bytes([10, 0, 1, 1]),
                80u16.to_be(),
                IPPROTO_TCP,
            ),
            _ => known,
        }
    }

    // -- building blocks ----------------------------------------------------

    /// A client of the random pool.
    fn client(&mut self) -> ([u8; 4], u16) {
        let host = self.rng.in_range(1..=usize::from(CLIENTS)) as u8;
        let port = 20_000 + self.rng.below(usize::from(CLIENT_PORTS)) as u16;
        ([198, 51, 100, host], port)
    }

    fn service_with(&mut self, proto: u8) -> ServiceKey {
        let candidates: Vec<ServiceKey> = self
            .services
            .iter()
            .copied()
            .filter(|key| key.proto == proto)
            .collect();
        *self.rng.pick(&candidates)
    }

    fn valid_to_any_service(&mut self) -> FrameSpec {
        let service = *self.rng.pick(&self.services);
        self.valid_to(&service)
    }

    /// A well-formed packet from a random client to `key` (its protocol decides
    /// between TCP and UDP).
    fn valid_to(&mut self, key: &ServiceKey) -> FrameSpec {
        let (client, client_port) = self.client();
        self.valid_from(key, client, client_port)
    }

    /// A reply from `backend` to `client:client_port` as it comes in on the
    /// servers' side: to the servers' interface's MAC, with its TCP or UDP
    /// checksum mostly computed (a UDP datagram without one otherwise).
    fn reply_from(&mut self, backend: &Endpoint, client: [u8; 4], client_port: u16) -> FrameSpec {
        let (backend_port, payload_len) = (u16::from_be(backend.port), self.rng.in_range(0..=48));
        let payload = self.rng.bytes(payload_len);
        let l4 = if backend.proto == IPPROTO_UDP {
            L4Spec::Udp {
                src_port: backend_port,
                dst_port: client_port,
                len: None,
                payload,
            }
        } else {
            L4Spec::Tcp {
                src_port: backend_port,
                dst_port: client_port,
                data_offset: None,
                flags: *self
                    .rng
                    .pick(&[TCP_SYN | TCP_ACK, TCP_ACK, TCP_PSH | TCP_ACK, TCP_RST]),
                options: Vec::new(),
                payload,
            }
        };
        let source = backend.addr.to_ne_bytes();
        let mut spec = FrameSpec::new(REMOTE_LB_MAC, SERVER_MAC, source, client, l4);
        spec.l4_checksum = self.rng.percent(75);
        spec
    }

    fn valid_from(&mut self, key: &ServiceKey, client: [u8; 4], client_port: u16) -> FrameSpec {
        let dst = key.vip.to_ne_bytes();
        let dst_port = u16::from_be(key.port);
        // Mostly small, sometimes up to a full Ethernet frame.
        let payload_len = if self.rng.percent(5) {
            self.rng.in_range(49..=1400)
        } else {
            self.rng.in_range(0..=48)
        };
        let payload = self.rng.bytes(payload_len);
        let l4 = if key.proto == IPPROTO_UDP {
            L4Spec::Udp {
                src_port: client_port,
                dst_port,
                len: None,
                payload,
            }
        } else {
            L4Spec::Tcp {
                src_port: client_port,
                dst_port,
                data_offset: None,
                flags: *self.rng.pick(&COMMON_TCP_FLAGS),
                options: Vec::new(),
                payload,
            }
        };
        let mut spec = FrameSpec::new(LB_MAC, CLIENT_MAC, client, dst, l4);
        spec.l4_checksum = self.rng.percent(50);
        spec
    }

    /// A packet of the flow `key` (a setup's flow-table entry).
    fn of_flow(&mut self, key: &FlowKey) -> FrameSpec {
        let service = ServiceKey {
            vip: key.dst_ip,
            port: key.dst_port,
            proto: key.proto,
            _pad: 0,
        };
        self.valid_from(
            &service,
            key.src_ip.to_ne_bytes(),
            u16::from_be(key.src_port),
        )
    }

    fn tcp_to(&mut self, key: &ServiceKey, flags: u16) -> FrameSpec {
        let mut spec = self.valid_to(key);
        if let L4Spec::Tcp { flags: field, .. } = &mut spec.l4 {
            *field = flags;
        }
        spec
    }

    fn tcp_with_data_offset(&mut self, key: &ServiceKey, offset: u8, payload: usize) -> FrameSpec {
        let mut spec = self.valid_to(key);
        let bytes = self.rng.bytes(payload);
        if let L4Spec::Tcp {
            data_offset,
            payload,
            ..
        } = &mut spec.l4
        {
            *data_offset = Some(offset);
            *payload = bytes;
        }
        spec
    }

    fn udp_with_length(&mut self, key: &ServiceKey, length: u16) -> FrameSpec {
        let mut spec = self.valid_to(key);
        if let L4Spec::Udp { len, .. } = &mut spec.l4 {
            *len = Some(length);
        }
        spec
    }

    /// An ICMP "fragmentation needed" from a router to the VIP of `flow`,
    /// quoting the first `quoted` bytes of a packet the backend sent on it
    /// (VIP:port to the client).
    fn frag_needed_about(&mut self, flow: &FlowKey, quoted: usize) -> FrameSpec {
        let (vip, client) = (flow.dst_ip.to_ne_bytes(), flow.src_ip.to_ne_bytes());
        let (vip_port, client_port) = (u16::from_be(flow.dst_port), u16::from_be(flow.src_port));
        let payload_len = self.rng.in_range(0..=16);
        let payload = self.rng.bytes(payload_len);
        let reply = if flow.proto == IPPROTO_UDP {
            L4Spec::Udp {
                src_port: vip_port,
                dst_port: client_port,
                len: None,
                payload,
            }
        } else {
            L4Spec::Tcp {
                src_port: vip_port,
                dst_port: client_port,
                data_offset: None,
                flags: *self.rng.pick(&COMMON_TCP_FLAGS),
                options: Vec::new(),
                payload,
            }
        };
        let packet = FrameSpec::new(CLIENT_MAC, LB_MAC, vip, client, reply).build();
        let quote = packet[14..].iter().copied().take(quoted).collect();
        FrameSpec::new(
            LB_MAC,
            CLIENT_MAC,
            ROUTER,
            vip,
            L4Spec::Icmp {
                icmp_type: 3,
                code: 4,
                payload: quote,
            },
        )
    }

    /// Frag-needed about every setup flow and a flow of each service that
    /// no packet has made yet, quoted whole and cut at every length.
    fn every_frag_needed_case(&mut self) -> Vec<Vec<u8>> {
        let mut flows = self.setup_flows.clone();
        for service in self.services.clone() {
            flows.push(flow_key(&service, [198, 51, 100, 250], 65_000));
        }
        let mut frames = Vec::new();
        for flow in &flows {
            frames.push(self.frag_needed_about(flow, QUOTE_LEN).build());
        }
        if let Some(flow) = flows.first() {
            for quoted in 0..QUOTE_LEN {
                frames.push(self.frag_needed_about(flow, quoted).build());
            }
        }
        frames
    }

    fn icmp_to(&mut self, dst: [u8; 4], icmp_type: u8, code: u8) -> FrameSpec {
        let (client, _) = self.client();
        // An error quotes the start of a packet of a web flow.
        let quoted = self.valid_to(&keys::web()).build();
        let payload = quoted[14..42].to_vec();
        FrameSpec::new(
            LB_MAC,
            CLIENT_MAC,
            client,
            dst,
            L4Spec::Icmp {
                icmp_type,
                code,
                payload,
            },
        )
    }

    /// `words` 32-bit words of IPv4 options: NOPs, an end of list, or noise.
    fn options(&mut self, words: usize) -> Vec<u8> {
        let len = words * 4;
        match self.rng.below(3) {
            0 => vec![1; len],
            1 => {
                let mut options = vec![1; len];
                options[len - 1] = 0;
                options
            }
            _ => self.rng.bytes(len),
        }
    }

    fn other_mac(&mut self) -> [u8; 6] {
        let mut random = [0u8; 6];
        random.copy_from_slice(&self.rng.bytes(6));
        *self.rng.pick(&[
            [0xff; 6],
            [0x01, 0x00, 0x5e, 0x00, 0x00, 0x12],
            [0x33, 0x33, 0, 0, 0, 1],
            [0; 6],
            backend_mac(0),
            [0x02, 0, 0, 0, 0, 0xfd],
            random,
        ])
    }

    // -- sweeps ---------------------------------------------------------------

    fn every_truncation(&mut self) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        for service in self.services.clone() {
            let mut spec = self.valid_to(&service);
            spec.ip.options = vec![1, 1, 1, 0];
            let frame = spec.build();
            frames.extend((0..=frame.len()).map(|len| frame[..len].to_vec()));
        }
        frames
    }

    fn every_ihl_and_total_length(&mut self) -> Vec<Vec<u8>> {
        let mut spec = self.tcp_to(&keys::web(), TCP_SYN);
        spec.ip.options = vec![1; 8];
        if let L4Spec::Tcp { payload, .. } = &mut spec.l4 {
            *payload = vec![0xab; 12];
        }
        let natural = spec.build().len() - 14;
        let mut frames = Vec::new();
        for ihl in 0..16 {
            for total_len in (0..=natural + 4).chain([0xffff]) {
                let mut case = spec.clone();
                case.ip.ihl = Some(ihl);
                case.ip.total_len = Some(total_len as u16);
                frames.push(case.build());
            }
        }
        frames
    }

    fn every_version(&mut self) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        for key in [keys::web(), keys::dns()] {
            for version in 0..16 {
                let mut spec = self.valid_to(&key);
                spec.ip.version = version;
                frames.push(spec.build());
            }
        }
        frames
    }

    fn every_tcp_flag_byte(&mut self) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        // Maglev: all 512 combinations of the nine flags (NS included).
        for flags in 0..0x200 {
            frames.push(self.tcp_to(&keys::web(), flags).build());
        }
        // Round-robin: the eight flags of byte 13.
        for flags in 0..0x100 {
            frames.push(self.tcp_to(&keys::web_tls(), flags).build());
        }
        frames
    }

    fn every_tcp_data_offset(&mut self) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        for offset in 0..16 {
            for payload in [0, 8, 40] {
                let key = keys::web();
                frames.push(self.tcp_with_data_offset(&key, offset, payload).build());
            }
        }
        frames
    }

    fn every_udp_length(&mut self) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        for key in [keys::dns(), keys::mdns()] {
            for len in (0..=40).chain([0xffff]) {
                frames.push(self.udp_with_length(&key, len).build());
            }
        }
        frames
    }

    fn every_fragment_field(&mut self) -> Vec<Vec<u8>> {
        const FIELDS: [u16; 12] = [
            0x2000, 0x0001, 0x1fff, 0x2001, 0x3fff, 0x4000, 0x8000, 0xc000, 0x6000, 0xa000, 0xe000,
            0x4001,
        ];
        let mut frames = Vec::new();
        for key in [keys::web(), keys::dns()] {
            for field in FIELDS {
                let mut spec = self.valid_to(&key);
                spec.ip.flags_fragment = field;
                frames.push(spec.build());
            }
        }
        frames
    }

    fn every_options_length(&mut self) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        for words in 1..=10 {
            for key in [keys::web(), keys::mdns()] {
                let mut spec = self.valid_to(&key);
                spec.ip.options = self.options(words);
                frames.push(spec.build());
            }
        }
        frames
    }

    fn every_vlan_tagging(&mut self) -> Vec<Vec<u8>> {
        let taggings: [&[(u16, u16)]; 5] = [
            &[(ETHERTYPE_VLAN, 10)],
            &[(ETHERTYPE_QINQ, 20)],
            &[(0x9100, 30)],
            &[(ETHERTYPE_QINQ, 20), (ETHERTYPE_VLAN, 10)],
            &[(ETHERTYPE_VLAN, 0)],
        ];
        taggings
            .into_iter()
            .map(|tags| {
                let mut spec = self.valid_to(&keys::web());
                spec.vlan_tags = tags.to_vec();
                spec.build()
            })
            .collect()
    }

    fn every_kind_of_mac(&mut self) -> Vec<Vec<u8>> {
        (0..8)
            .map(|_| {
                let mut spec = self.valid_to_any_service();
                spec.dst_mac = self.other_mac();
                spec.build()
            })
            .collect()
    }

    fn every_other_ether_type(&mut self) -> Vec<Vec<u8>> {
        [
            ETHERTYPE_ARP,
            ETHERTYPE_IPV6,
            0x0000,
            0xffff,
            0x88cc,
            0x0008,
        ]
        .into_iter()
        .map(|ether_type| {
            let mut spec = self.valid_to(&keys::web());
            spec.ether_type = ether_type;
            spec.build()
        })
        .collect()
    }

    fn every_icmp_case(&mut self) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        for dst in [VIP_A, VIP_B, NOT_A_VIP] {
            for (icmp_type, code) in [(8, 0), (0, 0), (3, 4), (3, 3), (11, 0)] {
                frames.push(self.icmp_to(dst, icmp_type, code).build());
            }
        }
        frames
    }

    fn every_other_protocol(&mut self) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        for protocol in (0..=255u8).filter(|&p| p != IPPROTO_TCP && p != IPPROTO_UDP) {
            let mut spec = self.valid_to(&keys::web());
            spec.ip.protocol = protocol;
            frames.push(spec.build());
        }
        // TCP to the UDP service's port, and UDP to the TCP one.
        let tcp_to_dns = ServiceKey {
            proto: IPPROTO_TCP,
            ..keys::dns()
        };
        let udp_to_web = ServiceKey {
            proto: IPPROTO_UDP,
            ..keys::web()
        };
        frames.push(self.valid_to(&tcp_to_dns).build());
        frames.push(self.valid_to(&udp_to_web).build());
        frames
    }

    fn every_other_port(&mut self) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        for (vip, proto) in [
            (VIP_A, IPPROTO_TCP),
            (VIP_A, IPPROTO_UDP),
            (VIP_B, IPPROTO_TCP),
        ] {
            for port in [0, 1, 52, 54, 79, 81, 442, 444, 8081, 65535] {
                let key = service_key(vip, port, proto);
                frames.push(self.valid_to(&key).build());
            }
        }
        frames
    }

    fn every_not_a_vip_case(&mut self) -> Vec<Vec<u8>> {
        let web = keys::web();
        let to_other = ServiceKey {
            vip: u32::from_ne_bytes(NOT_A_VIP),
            ..web
        };
        let mut frames = vec![self.valid_to(&to_other).build()];
        for (ihl, fragment) in [(0, 0), (4, 0), (5, 0x2000), (15, 0)] {
            let mut spec = self.valid_to(&to_other);
            spec.ip.ihl = Some(ihl);
            spec.ip.flags_fragment = fragment;
            frames.push(spec.build());
        }
        frames
    }

    fn every_removed_service(&mut self) -> Vec<Vec<u8>> {
        self.removed
            .clone()
            .iter()
            .flat_map(|key| [self.valid_to(key).build(), self.valid_to(key).build()])
            .collect()
    }

    /// Each setup flow twice: the first packet finds the setup's entry, the
    /// second whatever the first left.
    fn every_setup_flow(&mut self) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        for key in self.setup_flows.clone() {
            frames.push(self.of_flow(&key).build());
            frames.push(self.of_flow(&key).build());
        }
        frames
    }

    /// From every edge of every allow-listed prefix, to its service.
    fn every_allow_edge(&mut self) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        for (key, prefix) in self.allow_listed.clone() {
            for source in edges(prefix) {
                let (_, client_port) = self.client();
                frames.push(self.valid_from(&key, source, client_port).build());
            }
        }
        frames
    }

    /// Every `nat` backend's reply to a client learnt by a new flow, to one
    /// learnt beforehand and to an unknown one, to the servers' MAC and to
    /// the main one, with and without a checksum; then one TCP and one UDP
    /// reply cut at every length, with every IHL, total length, fragment
    /// field, options length and protocol.
    fn every_nat_reply_case(&mut self) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        let mut clients = vec![[198, 51, 100, 5], UNKNOWN_CLIENT];
        clients.extend(self.learnt_clients.first());
        for backend in self.nat_backends.clone() {
            for &client in &clients {
                for dst_mac in [REMOTE_LB_MAC, LB_MAC] {
                    for l4_checksum in [true, false] {
                        let mut spec = self.reply_from(&backend, client, 443);
                        spec.dst_mac = dst_mac;
                        spec.l4_checksum = l4_checksum;
                        frames.push(spec.build());
                    }
                }
            }
        }
        for proto in [IPPROTO_TCP, IPPROTO_UDP] {
            let Some(backend) = self.nat_backends.iter().find(|b| b.proto == proto).copied() else {
                continue;
            };
            let client = clients.last().copied().unwrap_or(UNKNOWN_CLIENT);
            let spec = self.reply_from(&backend, client, 443);
            let frame = spec.build();
            frames.extend((0..=frame.len()).map(|len| frame[..len].to_vec()));
            let natural = frame.len() - 14;
            for ihl in 0..16 {
                let mut case = spec.clone();
                case.ip.ihl = Some(ihl);
                frames.push(case.build());
            }
            for total_len in [0, 19, 20, 27, natural - 1, natural, natural + 1, 0xffff] {
                let mut case = spec.clone();
                case.ip.total_len = Some(total_len as u16);
                frames.push(case.build());
            }
            for field in [0x2000, 0x0001, 0x1fff, 0x3fff, 0x4000, 0x8000, 0x6000] {
                let mut case = spec.clone();
                case.ip.flags_fragment = field;
                frames.push(case.build());
            }
            for words in 1..=10 {
                let mut case = spec.clone();
                case.ip.options = self.options(words);
                frames.push(case.build());
            }
            for protocol in [0, 1, IPPROTO_TCP, IPPROTO_UDP, 47, 255] {
                let mut case = spec.clone();
                case.ip.protocol = protocol;
                frames.push(case.build());
            }
        }
        frames
    }

    /// Every service from the servers' side, twice.
    fn every_servers_side_case(&mut self) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        for key in self.services.clone() {
            for _ in 0..2 {
                let mut spec = self.valid_to(&key);
                spec.dst_mac = REMOTE_LB_MAC;
                frames.push(spec.build());
            }
        }
        frames
    }

    fn every_trailer_length(&mut self) -> Vec<Vec<u8>> {
        [1, 2, 3, 4, 5, 8, 16, 26, 46]
            .into_iter()
            .map(|len| {
                let mut spec = self.valid_to_any_service();
                spec.trailer = vec![0; len];
                spec.build()
            })
            .collect()
    }
}

/// The first and last address of `prefix` and the two just outside it
/// (wrapping around the address space).
fn edges(prefix: SourcePrefix) -> [[u8; 4]; 4] {
    let first = u32::from_be_bytes(prefix.octets());
    let size = 1u64 << (32 - u32::from(prefix.length()));
    let last = (u64::from(first) + size - 1) as u32;
    [first, last, first.wrapping_sub(1), last.wrapping_add(1)].map(u32::to_be_bytes)
}
