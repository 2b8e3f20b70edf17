//! A bounded fuzz of the receive path (datagram checks, advert decoder,
//! state machine): no generated datagram panics, and every one ends as
//! exactly one counter, `accepted` or one `rejected_*`, so that at the end
//! `accepted + rejected() == datagrams`.
//!
//! - Sweeps over valid adverts (each checksum form, unicast and multicast,
//!   with and without IP options): every bit flipped, cut at every length,
//!   every value of the version/type, count, TTL, IHL, IP version, protocol,
//!   total length, interval, VRID and priority fields, each with the reason
//!   it must be counted under.
//! - proptest with a fixed seed, [`RANDOM_CASES`] cases (more with
//!   `LB_VRRP_FUZZ_CASES`, another seed with `LB_VRRP_FUZZ_SEED`): random
//!   bytes, random bytes behind a valid IPv4 header, and valid adverts of
//!   random shape under random mutations, while the instances' clock moves
//!   so that they are sometimes backup and sometimes master.

use std::cell::RefCell;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use lb_common::checksum;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};

use super::*;
use crate::vrrp::machine::State;
use crate::vrrp::packet::{Advert, IP_PROTOCOL, MULTICAST_GROUP, REQUIRED_TTL};
use crate::vrrp::status::ReceiveCounters;

/// Random cases per run of [`random_datagrams_are_each_counted_once`].
const RANDOM_CASES: u32 = 100_000;
const SEED: u64 = 0x5652_5250_7633;

const VRID: u8 = 51;
/// This node: the instances' primary address.
const OWN: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// The other member of the pair.
const PEER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const VIPS: [Ipv4Addr; 2] = [Ipv4Addr::new(192, 0, 2, 100), Ipv4Addr::new(192, 0, 2, 101)];
const IPV4_HEADER_LEN: usize = 20;
const VRRP_HEADER_LEN: usize = 8;

/// One instance and everything it was fed: the counters of the driver, and
/// how many datagrams they must add up to.
struct Receiver {
    machine: Instance,
    config: VrrpConfig,
    now: Instant,
    counters: ReceiveCounters,
    datagrams: u64,
    /// Whether the machine was seen in Backup, and in Master.
    was_backup: bool,
    was_master: bool,
}

impl Receiver {
    /// A backup for [`VIPS`] on [`OWN`]; with `unicast_peers`, unicast mode.
    fn new(unicast_peers: &[Ipv4Addr]) -> Receiver {
        let mut config = VrrpConfig::new("eth0", VRID, 100, VIPS.to_vec());
        config.unicast_peers = unicast_peers.to_vec();
        let mut machine = Instance::new(&config, OWN);
        let now = Instant::now();
        machine.handle_startup(now);
        let mut receiver = Receiver {
            machine,
            config,
            now,
            counters: ReceiveCounters::default(),
            datagrams: 0,
            was_backup: false,
            was_master: false,
        };
        receiver.drain_actions();
        receiver
    }

    /// Feeds `datagram` through the receive path and counts it; checks that
    /// exactly one outcome counter moved, by one.
    fn deliver(&mut self, datagram: &[u8]) -> Reception {
        let before = outcome_counters(&self.counters);
        let reception = receive(&mut self.machine, &self.config, self.now, datagram);
        self.counters.count(&reception);
        self.datagrams += 1;
        let after = outcome_counters(&self.counters);
        let moved: Vec<(u64, u64)> = before
            .into_iter()
            .zip(after)
            .filter(|(before, after)| before != after)
            .collect();
        assert!(
            matches!(moved[..], [(before, after)] if after == before + 1),
            "{reception:?} moved the outcome counters {moved:?}"
        );
        self.drain_actions();
        reception
    }

    /// Delivers a copy of `valid` changed by `change`.
    fn deliver_changed(&mut self, valid: &[u8], change: impl FnOnce(&mut Vec<u8>)) -> Reception {
        let mut datagram = valid.to_vec();
        change(&mut datagram);
        self.deliver(&datagram)
    }

    /// Moves the clock on by `by` and fires what is due.
    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.machine.handle_timeout(self.now);
        self.drain_actions();
    }

    fn drain_actions(&mut self) {
        while self.machine.poll_action().is_some() {}
        match self.machine.state() {
            State::Backup => self.was_backup = true,
            State::Master => self.was_master = true,
            State::Initialize | State::Fault => {}
        }
    }

    fn assert_counters_add_up(&self) {
        let counters = &self.counters;
        assert_eq!(counters.accepted + counters.rejected(), self.datagrams);
        assert_eq!(counters.receive_errors, 0);
        for detail in [
            counters.accepted_message_only_checksum,
            counters.accepted_group_pseudo_header_checksum,
            counters.accepted_address_list_mismatch,
        ] {
            assert!(detail <= counters.accepted, "{counters:?}");
        }
    }
}

/// `accepted` and every `rejected_*` counter, in declaration order.
fn outcome_counters(counters: &ReceiveCounters) -> [u64; 13] {
    [
        counters.accepted,
        counters.rejected_ip_header,
        counters.rejected_ttl,
        counters.rejected_truncated,
        counters.rejected_version,
        counters.rejected_type,
        counters.rejected_no_addresses,
        counters.rejected_length_mismatch,
        counters.rejected_checksum,
        counters.rejected_zero_interval,
        counters.rejected_vrid_mismatch,
        counters.rejected_from_own_address,
        counters.rejected_unknown_peer,
    ]
}

/// An advert and the datagram around it, as a sender would build it.
#[derive(Debug, Clone)]
struct Sent {
    advert: Advert,
    source: Ipv4Addr,
    destination: Ipv4Addr,
    checksum: ChecksumForm,
    ttl: u8,
    /// IPv4 options, in 4-byte words (IHL - 5).
    option_words: u8,
    /// Bytes after the datagram that the IP total length does not cover.
    padding: usize,
}

impl Sent {
    /// Offset of the VRRP message in [`Sent::datagram`].
    fn message_start(&self) -> usize {
        IPV4_HEADER_LEN + 4 * usize::from(self.option_words)
    }

    fn message_end(&self) -> usize {
        self.message_start() + self.advert.buffer_len()
    }

    /// The IPv4 datagram, as a raw socket delivers it, then the padding.
    fn datagram(&self) -> Vec<u8> {
        let mut message = vec![0; self.advert.buffer_len()];
        self.advert
            .emit(&mut message, self.source, self.destination)
            .expect("a sendable advert");
        let mut datagram = self.ip_header();
        datagram.extend_from_slice(&message);
        self.fill_checksum(&mut datagram);
        datagram.resize(datagram.len() + self.padding, 0xa5);
        datagram
    }

    fn ip_header(&self) -> Vec<u8> {
        let header_len = self.message_start();
        let total_len = u16::try_from(header_len + self.advert.buffer_len()).expect("fits");
        let mut header = vec![0; header_len];
        header[0] = 0x40 | (5 + self.option_words);
        header[1] = 0xc0;
        header[2..4].copy_from_slice(&total_len.to_be_bytes());
        header[8] = self.ttl;
        header[9] = IP_PROTOCOL;
        header[12..16].copy_from_slice(&self.source.octets());
        header[16..20].copy_from_slice(&self.destination.octets());
        // No-operation options.
        header[IPV4_HEADER_LEN..].fill(1);
        header
    }

    /// Rewrites the VRRP checksum of `datagram` in this advert's form, after
    /// a test changed a field it covers.
    fn fill_checksum(&self, datagram: &mut [u8]) {
        let message = &mut datagram[self.message_start()..self.message_end()];
        message[6..8].fill(0);
        let pseudo_destination = match self.checksum {
            ChecksumForm::PseudoHeader => Some(self.destination),
            ChecksumForm::PseudoHeaderWithGroup => Some(MULTICAST_GROUP),
            ChecksumForm::MessageOnly => None,
        };
        let mut sum = 0;
        if let Some(destination) = pseudo_destination {
            let length = u16::try_from(message.len()).expect("fits");
            sum = checksum::sum(sum, &self.source.octets());
            sum = checksum::sum(sum, &destination.octets());
            sum = checksum::sum(sum, &[0, IP_PROTOCOL]);
            sum = checksum::sum(sum, &length.to_be_bytes());
        }
        let value = !checksum::fold(checksum::sum(sum, message));
        message[6..8].copy_from_slice(&value.to_be_bytes());
    }
}

/// The valid adverts the sweeps start from, each with the instance that
/// accepts it.
fn sweep_bases() -> Vec<(Sent, Receiver)> {
    let advert = Advert {
        vrid: VRID,
        priority: 200,
        max_advert_interval: 100,
        addresses: VIPS.to_vec(),
    };
    let multicast = Sent {
        advert,
        source: PEER,
        destination: MULTICAST_GROUP,
        checksum: ChecksumForm::PseudoHeader,
        ttl: REQUIRED_TTL,
        option_words: 0,
        padding: 0,
    };
    vec![
        (multicast.clone(), Receiver::new(&[])),
        (
            Sent {
                checksum: ChecksumForm::MessageOnly,
                ..multicast.clone()
            },
            Receiver::new(&[]),
        ),
        (
            Sent {
                destination: OWN,
                checksum: ChecksumForm::PseudoHeaderWithGroup,
                ..multicast.clone()
            },
            Receiver::new(&[PEER]),
        ),
        (
            Sent {
                option_words: 2,
                padding: 4,
                ..multicast
            },
            Receiver::new(&[]),
        ),
    ]
}

fn assert_accepted(reception: &Reception, sent: &Sent, what: &str) {
    match reception {
        Reception::Accepted { checksum_form, .. } => {
            assert_eq!(*checksum_form, sent.checksum, "{what}: {sent:?}")
        }
        other => panic!("{what}: {other:?} for a valid advert {sent:?}"),
    }
}

fn assert_malformed(reception: &Reception, expected: PacketError, what: &str) {
    assert_eq!(*reception, Reception::Malformed(expected), "{what}");
}

#[test]
fn every_field_value_of_a_valid_advert_is_counted_under_its_reason() {
    for (sent, mut receiver) in sweep_bases() {
        let valid = sent.datagram();
        let start = sent.message_start();
        let message_len = sent.advert.buffer_len();
        let total_len = start + message_len;
        let reception = receiver.deliver(&valid);
        assert_accepted(&reception, &sent, "unchanged");

        for ttl in 0..=u8::MAX {
            let reception = receiver.deliver_changed(&valid, |d| d[8] = ttl);
            if ttl == REQUIRED_TTL {
                assert_accepted(&reception, &sent, "TTL 255");
            } else {
                assert_malformed(&reception, PacketError::Ttl(ttl), "TTL");
            }
        }
        for version in 0..=0x0f {
            let reception =
                receiver.deliver_changed(&valid, |d| d[0] = (version << 4) | (d[0] & 0x0f));
            if version != 4 {
                assert_malformed(&reception, PacketError::IpHeader, "IP version");
            }
        }
        for words in 0..=0x0f {
            let reception = receiver.deliver_changed(&valid, |d| d[0] = 0x40 | words);
            let header_len = 4 * usize::from(words);
            if header_len < IPV4_HEADER_LEN || header_len > total_len {
                assert_malformed(&reception, PacketError::IpHeader, "IHL");
            } else if header_len == start {
                assert_accepted(&reception, &sent, "IHL unchanged");
            } else {
                // The message is read from the wrong offset.
                assert!(
                    !matches!(reception, Reception::Accepted { .. }),
                    "IHL {words}: {reception:?}"
                );
            }
        }
        for protocol in 0..=u8::MAX {
            let reception = receiver.deliver_changed(&valid, |d| d[9] = protocol);
            if protocol != IP_PROTOCOL {
                assert_malformed(&reception, PacketError::IpHeader, "protocol");
            }
        }
        for total in 0..=u16::MAX {
            let reception =
                receiver.deliver_changed(&valid, |d| d[2..4].copy_from_slice(&total.to_be_bytes()));
            let total = usize::from(total);
            if total > valid.len() || total < start {
                assert_malformed(&reception, PacketError::IpHeader, "total length");
            } else if total < total_len {
                assert_malformed(&reception, PacketError::Truncated, "total length");
            } else if total == total_len {
                assert_accepted(&reception, &sent, "total length unchanged");
            } else {
                let expected = PacketError::LengthMismatch {
                    expected: message_len,
                    actual: total - start,
                };
                assert_malformed(&reception, expected, "total length into the padding");
            }
        }
        for len in 0..valid.len() {
            let reception = receiver.deliver(&valid[..len]);
            if len < total_len {
                assert_malformed(&reception, PacketError::IpHeader, "cut");
            } else {
                assert_accepted(&reception, &sent, "padding cut");
            }
        }

        for version_type in 0..=u8::MAX {
            let reception = receiver.deliver_changed(&valid, |d| d[start] = version_type);
            let (version, msg_type) = (version_type >> 4, version_type & 0x0f);
            if version != 3 {
                assert_malformed(&reception, PacketError::Version(version), "version");
            } else if msg_type != 1 {
                assert_malformed(&reception, PacketError::Type(msg_type), "type");
            } else {
                assert_accepted(&reception, &sent, "version 3, type 1");
            }
        }
        let sent_count = sent.advert.addresses.len();
        for count in 0..=u8::MAX {
            let reception = receiver.deliver_changed(&valid, |d| d[start + 3] = count);
            let count = usize::from(count);
            if VRRP_HEADER_LEN + 4 * count > message_len {
                assert_malformed(&reception, PacketError::Truncated, "count");
            } else if count == 0 {
                assert_malformed(&reception, PacketError::NoAddresses, "count");
            } else if count != sent_count {
                let expected = PacketError::LengthMismatch {
                    expected: VRRP_HEADER_LEN + 4 * count,
                    actual: message_len,
                };
                assert_malformed(&reception, expected, "count");
            } else {
                assert_accepted(&reception, &sent, "count unchanged");
            }
        }
        for interval_field in 0..=u16::MAX {
            let reception = receiver.deliver_changed(&valid, |d| {
                d[start + 4..start + 6].copy_from_slice(&interval_field.to_be_bytes());
                sent.fill_checksum(d);
            });
            if interval_field & 0x0fff == 0 {
                assert_malformed(&reception, PacketError::ZeroInterval, "interval");
            } else {
                assert_accepted(&reception, &sent, "interval");
            }
        }
        for vrid in 0..=u8::MAX {
            let reception = receiver.deliver_changed(&valid, |d| {
                d[start + 1] = vrid;
                sent.fill_checksum(d);
            });
            if vrid == VRID {
                assert_accepted(&reception, &sent, "our VRID");
            } else {
                let reason = AdvertRejected::VridMismatch {
                    received: vrid,
                    expected: VRID,
                };
                let expected = Reception::Refused {
                    source: PEER,
                    reason,
                };
                assert_eq!(reception, expected);
            }
        }
        for priority in 0..=u8::MAX {
            let reception = receiver.deliver_changed(&valid, |d| {
                d[start + 2] = priority;
                sent.fill_checksum(d);
            });
            assert_accepted(&reception, &sent, "any priority");
        }
        for source in [OWN, Ipv4Addr::new(198, 51, 100, 7)] {
            let from = Sent {
                source,
                ..sent.clone()
            };
            let reception = receiver.deliver(&from.datagram());
            let expected = if !receiver.config.unicast_peers.is_empty() {
                Reception::UnknownPeer(source)
            } else if source == OWN {
                Reception::Refused {
                    source,
                    reason: AdvertRejected::FromOwnAddress,
                }
            } else {
                assert_accepted(&reception, &from, "from another node");
                continue;
            };
            assert_eq!(reception, expected, "from {source}");
        }
        for flipped in 0..8 * valid.len() {
            let reception =
                receiver.deliver_changed(&valid, |d| d[flipped / 8] ^= 0x80 >> (flipped % 8));
            let byte = flipped / 8;
            if (start..total_len).contains(&byte) {
                // One flipped bit changes the Internet checksum; it can only
                // verify in another of the accepted forms by coincidence.
                if let Reception::Accepted { checksum_form, .. } = reception {
                    assert_ne!(checksum_form, sent.checksum, "bit {flipped} flipped");
                }
            } else if byte >= total_len {
                assert_accepted(&reception, &sent, "padding changed");
            }
        }
        receiver.assert_counters_add_up();
    }
}

#[test]
fn every_address_count_that_fits_is_accepted() {
    let mut receiver = Receiver::new(&[]);
    for count in 1..=u8::MAX {
        let addresses: Vec<Ipv4Addr> = (0..u32::from(count))
            .map(|index| Ipv4Addr::from(0xc633_6400 + index))
            .collect();
        let sent = Sent {
            advert: Advert {
                vrid: VRID,
                priority: 100,
                max_advert_interval: 100,
                addresses,
            },
            source: PEER,
            destination: MULTICAST_GROUP,
            checksum: ChecksumForm::PseudoHeader,
            ttl: REQUIRED_TTL,
            option_words: 0,
            padding: 0,
        };
        let reception = receiver.deliver(&sent.datagram());
        assert_eq!(
            reception,
            Reception::Accepted {
                source: PEER,
                checksum_form: ChecksumForm::PseudoHeader,
                same_addresses: false,
            },
            "{count} addresses"
        );
    }
    receiver.assert_counters_add_up();
}

/// A change to a valid datagram.
#[derive(Debug, Clone)]
enum Mutation {
    /// Flips bit `index % bits`.
    FlipBit(usize),
    /// Sets byte `index % len`.
    SetByte(usize, u8),
    /// Cuts the buffer (the IP total length still says more).
    Cut(usize),
    /// Appends bytes beyond the IP total length.
    Append(Vec<u8>),
    /// Cuts or extends the VRRP message and makes the IP total length agree.
    ResizeMessage(usize),
}

impl Mutation {
    fn apply(&self, datagram: &mut Vec<u8>, sent: &Sent) {
        let len = datagram.len();
        match self {
            Mutation::FlipBit(index) if len > 0 => {
                let bit = index % (8 * len);
                datagram[bit / 8] ^= 0x80 >> (bit % 8);
            }
            Mutation::SetByte(index, value) if len > 0 => datagram[index % len] = *value,
            Mutation::FlipBit(_) | Mutation::SetByte(..) => {}
            Mutation::Cut(at) => datagram.truncate(at % (len + 1)),
            Mutation::Append(bytes) => datagram.extend_from_slice(bytes),
            Mutation::ResizeMessage(message_len) => {
                let total = sent.message_start() + message_len;
                datagram.resize(total, 0);
                if let Some(field) = datagram.get_mut(2..4) {
                    let total = u16::try_from(total).unwrap_or(u16::MAX);
                    field.copy_from_slice(&total.to_be_bytes());
                }
            }
        }
    }
}

/// One generated datagram.
#[derive(Debug, Clone)]
enum Input {
    Bytes(Vec<u8>),
    /// A valid IPv4 header (protocol 112, TTL 255) before random bytes.
    BehindIpHeader(Vec<u8>),
    Mutated(Sent, Vec<Mutation>),
}

impl Input {
    fn datagram(&self) -> Vec<u8> {
        match self {
            Input::Bytes(bytes) => bytes.clone(),
            Input::BehindIpHeader(payload) => {
                let total = u16::try_from(IPV4_HEADER_LEN + payload.len()).expect("fits");
                let mut datagram = vec![0x45, 0, 0, 0, 0, 0, 0, 0, REQUIRED_TTL, IP_PROTOCOL];
                datagram[2..4].copy_from_slice(&total.to_be_bytes());
                datagram.resize(IPV4_HEADER_LEN, 0);
                datagram[12..16].copy_from_slice(&PEER.octets());
                datagram[16..20].copy_from_slice(&MULTICAST_GROUP.octets());
                datagram.extend_from_slice(payload);
                datagram
            }
            Input::Mutated(sent, mutations) => {
                let mut datagram = sent.datagram();
                for mutation in mutations {
                    mutation.apply(&mut datagram, sent);
                }
                datagram
            }
        }
    }
}

fn address() -> impl Strategy<Value = Ipv4Addr> {
    prop_oneof![
        3 => Just(PEER),
        1 => Just(OWN),
        1 => any::<u32>().prop_map(Ipv4Addr::from),
    ]
}

fn advert() -> impl Strategy<Value = Advert> {
    let addresses = prop_oneof![
        4 => Just(VIPS.to_vec()),
        2 => vec(any::<u32>().prop_map(Ipv4Addr::from), 0..=4),
        1 => vec(any::<u32>().prop_map(Ipv4Addr::from), 0..=255),
    ];
    let interval = prop_oneof![4 => 1..=0x0fffu16, 1 => Just(0u16)];
    let vrid = prop_oneof![4 => Just(VRID), 1 => any::<u8>()];
    (vrid, any::<u8>(), interval, addresses).prop_map(
        |(vrid, priority, max_advert_interval, addresses)| Advert {
            vrid,
            priority,
            max_advert_interval,
            addresses,
        },
    )
}

fn sent() -> impl Strategy<Value = Sent> {
    let destination = prop_oneof![
        3 => Just(MULTICAST_GROUP),
        1 => Just(OWN),
        1 => any::<u32>().prop_map(Ipv4Addr::from),
    ];
    let checksum = prop_oneof![
        Just(ChecksumForm::PseudoHeader),
        Just(ChecksumForm::MessageOnly),
        Just(ChecksumForm::PseudoHeaderWithGroup),
    ];
    let ttl = prop_oneof![9 => Just(REQUIRED_TTL), 1 => any::<u8>()];
    (
        advert(),
        address(),
        destination,
        checksum,
        ttl,
        0..=10u8,
        prop_oneof![3 => Just(0usize), 1 => 1..=8usize],
    )
        .prop_map(
            |(advert, source, destination, checksum, ttl, option_words, padding)| Sent {
                advert,
                source,
                destination,
                checksum,
                ttl,
                option_words,
                padding,
            },
        )
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => any::<usize>().prop_map(Mutation::FlipBit),
        3 => (any::<usize>(), any::<u8>()).prop_map(|(index, value)| Mutation::SetByte(index, value)),
        1 => any::<usize>().prop_map(Mutation::Cut),
        1 => vec(any::<u8>(), 1..=8).prop_map(Mutation::Append),
        1 => (0..=64usize).prop_map(Mutation::ResizeMessage),
    ]
}

fn input() -> impl Strategy<Value = Input> {
    let bytes = prop_oneof![
        3 => vec(any::<u8>(), 0..=64),
        1 => vec(any::<u8>(), 0..=1100),
    ];
    prop_oneof![
        1 => bytes.prop_map(Input::Bytes),
        1 => vec(any::<u8>(), 0..=64).prop_map(Input::BehindIpHeader),
        // No mutation at all a quarter of the time: valid adverts reach the machine.
        4 => (sent(), vec(mutation(), 0..=3)).prop_map(|(sent, mutations)| Input::Mutated(sent, mutations)),
    ]
}

/// The value of environment variable `name`, if it is set and parses.
fn from_env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok()?.parse().ok()
}

/// Cases and seed: [`RANDOM_CASES`] and [`SEED`] unless the environment says otherwise.
fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: from_env("LB_VRRP_FUZZ_CASES").unwrap_or(RANDOM_CASES),
        rng_seed: RngSeed::Fixed(from_env("LB_VRRP_FUZZ_SEED").unwrap_or(SEED)),
        failure_persistence: None,
        ..Config::default()
    })
}

#[test]
fn random_datagrams_are_each_counted_once() {
    // A multicast instance and a unicast one with PEER as its peer, fed
    // alternately; both live across the cases, so their state wanders.
    let receivers = RefCell::new([Receiver::new(&[]), Receiver::new(&[PEER])]);
    let strategy = (input(), any::<bool>(), 0..=1500u64);
    let mut runner = runner();
    let cases = runner.config().cases;
    let result = runner.run(&strategy, |(input, unicast, advance_ms)| {
        let mut receivers = receivers.borrow_mut();
        let receiver = &mut receivers[usize::from(unicast)];
        receiver.deliver(&input.datagram());
        receiver.advance(Duration::from_millis(advance_ms));
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }

    let receivers = receivers.into_inner();
    for receiver in &receivers {
        receiver.assert_counters_add_up();
        assert!(receiver.was_backup && receiver.was_master, "states visited");
    }
    let datagrams: u64 = receivers.iter().map(|receiver| receiver.datagrams).sum();
    assert!(datagrams >= u64::from(cases), "{datagrams} datagrams");
    // Every outcome was reached by some input: the generators miss none.
    let reached: Vec<[u64; 13]> = receivers
        .iter()
        .map(|receiver| outcome_counters(&receiver.counters))
        .collect();
    for outcome in 0..reached[0].len() {
        assert!(
            reached.iter().any(|counters| counters[outcome] > 0),
            "outcome {outcome} never reached: {reached:?}"
        );
    }
}
