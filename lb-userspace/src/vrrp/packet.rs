//! The VRRPv3 advertisement on the wire (RFC 9568 §5, IPv4 only): a typed view
//! over bytes ([`Packet`]), its representation ([`Advert`]) with `parse` and
//! `emit`, the checksum, and the receive-side checks on a raw IPv4 datagram.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
//! |(rsvd) |     Max Adver Int     |          Checksum             |
//! |                       IPv4 Address(es)                        |
//! ```
//!
//! Checksum: RFC 5798 §5.2.8 sums the message with the IPv4 pseudo-header
//! (source, destination, zero, protocol 112, VRRP length); RFC 9568 §5.2.8
//! sums the message alone for IPv4. Deployed implementations (keepalived,
//! FRR) send the RFC 5798 form, so that is what [`Advert::emit`] writes. On
//! receive all forms seen in the field are accepted ([`ChecksumForm`]),
//! including old keepalived's unicast adverts that put the multicast group in
//! the pseudo-header instead of the real destination.

use std::net::Ipv4Addr;
use std::time::Duration;

use lb_common::checksum;

use super::config::{CENTISECOND, MAX_ADVERT_INTERVAL_CENTIS};

/// IP protocol number of VRRP.
pub const IP_PROTOCOL: u8 = 112;
/// The IPv4 multicast group adverts are sent to (RFC 9568 §5.1.1.2).
pub const MULTICAST_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The only TTL a valid advert arrives with (RFC 9568 §5.1.1.3).
pub const REQUIRED_TTL: u8 = 255;
/// The protocol version this module speaks.
pub const VERSION: u8 = 3;
/// Type 1, ADVERTISEMENT: the only type defined.
pub const TYPE_ADVERTISEMENT: u8 = 1;

const HEADER_LEN: usize = 8;
const ADDRESS_LEN: usize = 4;
const IPV4_MIN_HEADER_LEN: usize = 20;

mod field {
    use std::ops::Range;

    pub const VERSION_TYPE: usize = 0;
    pub const VRID: usize = 1;
    pub const PRIORITY: usize = 2;
    pub const COUNT: usize = 3;
    pub const MAX_ADVER_INT: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

/// Why a received datagram is not a usable advert. Each variant is counted
/// on its own by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("not a well-formed IPv4 datagram carrying VRRP")]
    IpHeader,
    #[error("IP TTL is {0}, not 255: the advert crossed a router or was forged")]
    Ttl(u8),
    #[error("shorter than its header and address count say")]
    Truncated,
    #[error("VRRP version {0}, only version 3 is spoken")]
    Version(u8),
    #[error("VRRP type {0}, only 1 (advertisement) is defined")]
    Type(u8),
    #[error("advert carries no address")]
    NoAddresses,
    #[error("VRRP length {actual} does not match the address count ({expected} expected)")]
    LengthMismatch { expected: usize, actual: usize },
    #[error("checksum verifies in no accepted form")]
    Checksum,
    #[error("max advertisement interval is 0")]
    ZeroInterval,
}

/// Why an [`Advert`] cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    #[error("at most 255 addresses fit in an advert")]
    TooManyAddresses,
    #[error("the interval does not fit in 12 bits of centiseconds")]
    IntervalOutOfRange,
    #[error("the buffer is shorter than the advert")]
    BufferTooSmall,
}

/// Which checksum computation a received advert verified under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumForm {
    /// RFC 5798 §5.2.8: pseudo-header with the datagram's own addresses.
    PseudoHeader,
    /// RFC 9568 §5.2.8: the VRRP message alone.
    MessageOnly,
    /// Old keepalived unicast: pseudo-header with 224.0.0.18 as destination.
    PseudoHeaderWithGroup,
}

/// A typed view over the bytes of a VRRP message. Constructed only through
/// [`Packet::new_checked`], so the fixed header and the counted addresses are
/// in bounds and no accessor can panic.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` after checking it holds the header and every address
    /// the count field announces.
    pub fn new_checked(buffer: T) -> Result<Self, PacketError> {
        let packet = Packet { buffer };
        packet.check_len()?;
        Ok(packet)
    }

    fn check_len(&self) -> Result<(), PacketError> {
        let bytes = self.buffer.as_ref();
        match bytes.get(field::COUNT) {
            Some(&count) if bytes.len() >= message_len(count) => Ok(()),
            _ => Err(PacketError::Truncated),
        }
    }

    fn byte(&self, index: usize) -> u8 {
        self.buffer.as_ref().get(index).copied().unwrap_or_default()
    }

    fn u16_at(&self, index: usize) -> u16 {
        u16::from_be_bytes([self.byte(index), self.byte(index + 1)])
    }

    pub fn version(&self) -> u8 {
        self.byte(field::VERSION_TYPE) >> 4
    }

    pub fn msg_type(&self) -> u8 {
        self.byte(field::VERSION_TYPE) & 0x0f
    }

    pub fn vrid(&self) -> u8 {
        self.byte(field::VRID)
    }

    pub fn priority(&self) -> u8 {
        self.byte(field::PRIORITY)
    }

    pub fn address_count(&self) -> u8 {
        self.byte(field::COUNT)
    }

    /// Max Adver Int in centiseconds (the low 12 bits; the 4 reserved bits are ignored).
    pub fn max_advert_interval(&self) -> u16 {
        self.u16_at(field::MAX_ADVER_INT.start) & MAX_ADVERT_INTERVAL_CENTIS
    }

    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM.start)
    }

    /// Length of the VRRP message the count field describes (header plus addresses).
    pub fn message_len(&self) -> usize {
        message_len(self.address_count())
    }

    /// Length of the underlying buffer.
    pub fn buffer_len(&self) -> usize {
        self.buffer.as_ref().len()
    }

    /// The counted addresses.
    pub fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.message()
            .get(HEADER_LEN..)
            .unwrap_or_default()
            .chunks_exact(ADDRESS_LEN)
            .map(|chunk| Ipv4Addr::new(chunk[0], chunk[1], chunk[2], chunk[3]))
    }

    /// The message bytes the count field describes.
    fn message(&self) -> &[u8] {
        let bytes = self.buffer.as_ref();
        bytes.get(..self.message_len()).unwrap_or(bytes)
    }

    /// The form the stored checksum verifies under, if any, for a datagram
    /// from `source` to `destination`.
    pub fn verify_checksum(&self, source: Ipv4Addr, destination: Ipv4Addr) -> Option<ChecksumForm> {
        let message = self.message();
        if checksum(message, Some((source, destination))) == 0 {
            Some(ChecksumForm::PseudoHeader)
        } else if checksum(message, None) == 0 {
            Some(ChecksumForm::MessageOnly)
        } else if destination != MULTICAST_GROUP
            && checksum(message, Some((source, MULTICAST_GROUP))) == 0
        {
            Some(ChecksumForm::PseudoHeaderWithGroup)
        } else {
            None
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_byte(&mut self, index: usize, value: u8) {
        if let Some(byte) = self.buffer.as_mut().get_mut(index) {
            *byte = value;
        }
    }

    fn set_u16_at(&mut self, index: usize, value: u16) {
        let [high, low] = value.to_be_bytes();
        self.set_byte(index, high);
        self.set_byte(index + 1, low);
    }

    pub fn set_version_and_type(&mut self, version: u8, msg_type: u8) {
        self.set_byte(field::VERSION_TYPE, (version << 4) | (msg_type & 0x0f));
    }

    pub fn set_vrid(&mut self, vrid: u8) {
        self.set_byte(field::VRID, vrid);
    }

    pub fn set_priority(&mut self, priority: u8) {
        self.set_byte(field::PRIORITY, priority);
    }

    /// Writes the interval (centiseconds) with the reserved bits zero.
    pub fn set_max_advert_interval(&mut self, centis: u16) -> Result<(), EmitError> {
        if centis > MAX_ADVERT_INTERVAL_CENTIS {
            return Err(EmitError::IntervalOutOfRange);
        }
        self.set_u16_at(field::MAX_ADVER_INT.start, centis);
        Ok(())
    }

    pub fn set_checksum(&mut self, value: u16) {
        self.set_u16_at(field::CHECKSUM.start, value);
    }

    /// Writes the address list and the count, if the buffer has room.
    pub fn set_addresses(&mut self, addresses: &[Ipv4Addr]) -> Result<(), EmitError> {
        let count = u8::try_from(addresses.len()).map_err(|_| EmitError::TooManyAddresses)?;
        let slots = self
            .buffer
            .as_mut()
            .get_mut(HEADER_LEN..message_len(count))
            .ok_or(EmitError::BufferTooSmall)?;
        for (slot, address) in slots.chunks_exact_mut(ADDRESS_LEN).zip(addresses) {
            slot.copy_from_slice(&address.octets());
        }
        self.set_byte(field::COUNT, count);
        Ok(())
    }

    /// Computes and stores the RFC 5798 checksum (with the IPv4 pseudo-header).
    pub fn fill_checksum(&mut self, source: Ipv4Addr, destination: Ipv4Addr) {
        self.set_checksum(0);
        let value = checksum(self.message(), Some((source, destination)));
        self.set_checksum(value);
    }
}

/// A VRRPv3 advertisement, independent of its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    pub vrid: u8,
    pub priority: u8,
    /// Max Adver Int in centiseconds.
    pub max_advert_interval: u16,
    pub addresses: Vec<Ipv4Addr>,
}

impl Advert {
    /// The advertised interval as a duration.
    pub fn interval(&self) -> Duration {
        CENTISECOND * u32::from(self.max_advert_interval)
    }

    /// Bytes [`Advert::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + ADDRESS_LEN * self.addresses.len()
    }

    /// Checks version, type, length and checksum of a message carried from
    /// `source` to `destination`, and returns the advert and the checksum form
    /// it verified under. The VRID is the instance's to check.
    pub fn parse<T: AsRef<[u8]>>(
        packet: &Packet<T>,
        source: Ipv4Addr,
        destination: Ipv4Addr,
    ) -> Result<(Advert, ChecksumForm), PacketError> {
        if packet.version() != VERSION {
            return Err(PacketError::Version(packet.version()));
        }
        if packet.msg_type() != TYPE_ADVERTISEMENT {
            return Err(PacketError::Type(packet.msg_type()));
        }
        if packet.address_count() == 0 {
            return Err(PacketError::NoAddresses);
        }
        if packet.buffer_len() != packet.message_len() {
            return Err(PacketError::LengthMismatch {
                expected: packet.message_len(),
                actual: packet.buffer_len(),
            });
        }
        let form = packet
            .verify_checksum(source, destination)
            .ok_or(PacketError::Checksum)?;
        if packet.max_advert_interval() == 0 {
            return Err(PacketError::ZeroInterval);
        }
        let advert = Advert {
            vrid: packet.vrid(),
            priority: packet.priority(),
            max_advert_interval: packet.max_advert_interval(),
            addresses: packet.addresses().collect(),
        };
        Ok((advert, form))
    }

    /// Writes the advert into the first [`Advert::buffer_len`] bytes of
    /// `buffer` with the RFC 5798 checksum for `source` → `destination`;
    /// returns the length written.
    pub fn emit(
        &self,
        buffer: &mut [u8],
        source: Ipv4Addr,
        destination: Ipv4Addr,
    ) -> Result<usize, EmitError> {
        let len = self.buffer_len();
        let bytes = buffer.get_mut(..len).ok_or(EmitError::BufferTooSmall)?;
        bytes.fill(0);
        let mut packet = Packet::new_checked(bytes).map_err(|_| EmitError::BufferTooSmall)?;
        packet.set_version_and_type(VERSION, TYPE_ADVERTISEMENT);
        packet.set_vrid(self.vrid);
        packet.set_priority(self.priority);
        packet.set_max_advert_interval(self.max_advert_interval)?;
        packet.set_addresses(&self.addresses)?;
        packet.fill_checksum(source, destination);
        Ok(len)
    }
}

/// An advert as received on a raw IPv4 socket, with the addresses of its datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedAdvert {
    pub source: Ipv4Addr,
    pub destination: Ipv4Addr,
    pub advert: Advert,
    pub checksum_form: ChecksumForm,
}

/// Runs the RFC 9568 §7.1 receive checks that need no instance state on a
/// whole IPv4 datagram (what a raw IPv4 socket delivers, header included).
pub fn parse_datagram(datagram: &[u8]) -> Result<ReceivedAdvert, PacketError> {
    let ip = Ipv4View::new_checked(datagram)?;
    if ip.ttl() != REQUIRED_TTL {
        return Err(PacketError::Ttl(ip.ttl()));
    }
    let packet = Packet::new_checked(ip.payload())?;
    let (advert, checksum_form) = Advert::parse(&packet, ip.source(), ip.destination())?;
    Ok(ReceivedAdvert {
        source: ip.source(),
        destination: ip.destination(),
        advert,
        checksum_form,
    })
}

/// The fields of an IPv4 header the receive checks need.
struct Ipv4View<'a> {
    header: &'a [u8; IPV4_MIN_HEADER_LEN],
    payload: &'a [u8],
}

impl<'a> Ipv4View<'a> {
    /// Accepts version 4, a header length within the datagram, a total length
    /// within the buffer and protocol 112.
    fn new_checked(datagram: &'a [u8]) -> Result<Self, PacketError> {
        let header: &[u8; IPV4_MIN_HEADER_LEN] = datagram
            .get(..IPV4_MIN_HEADER_LEN)
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(PacketError::IpHeader)?;
        let version = header[0] >> 4;
        let header_len = usize::from(header[0] & 0x0f) * 4;
        let total_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if version != 4 || header[9] != IP_PROTOCOL {
            return Err(PacketError::IpHeader);
        }
        let payload = datagram
            .get(..total_len)
            .and_then(|datagram| datagram.get(header_len..))
            .filter(|_| header_len >= IPV4_MIN_HEADER_LEN)
            .ok_or(PacketError::IpHeader)?;
        Ok(Ipv4View { header, payload })
    }

    fn ttl(&self) -> u8 {
        self.header[8]
    }

    fn source(&self) -> Ipv4Addr {
        Ipv4Addr::new(
            self.header[12],
            self.header[13],
            self.header[14],
            self.header[15],
        )
    }

    fn destination(&self) -> Ipv4Addr {
        Ipv4Addr::new(
            self.header[16],
            self.header[17],
            self.header[18],
            self.header[19],
        )
    }

    fn payload(&self) -> &'a [u8] {
        self.payload
    }
}

fn message_len(count: u8) -> usize {
    HEADER_LEN + ADDRESS_LEN * usize::from(count)
}

/// The Internet checksum (RFC 1071) of `message`, preceded by the IPv4
/// pseudo-header for `addresses` when given. A message whose checksum field
/// is correct sums to 0.
fn checksum(message: &[u8], addresses: Option<(Ipv4Addr, Ipv4Addr)>) -> u16 {
    let mut sum: u32 = 0;
    if let Some((source, destination)) = addresses {
        // The length is at most 8 + 4 * 255 bytes, well within 16 bits.
        let length = u16::try_from(message.len()).unwrap_or(u16::MAX);
        let mut pseudo = [0u8; 12];
        pseudo[..4].copy_from_slice(&source.octets());
        pseudo[4..8].copy_from_slice(&destination.octets());
        pseudo[9] = IP_PROTOCOL;
        pseudo[10..].copy_from_slice(&length.to_be_bytes());
        sum = checksum::sum(sum, &pseudo);
    }
    !checksum::fold(checksum::sum(sum, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// VRID 10, priority 200, two addresses (192.0.2.1, 192.0.2.2), interval
    /// 100 cs, checksum field left to each test.
    fn two_address_advert(checksum: [u8; 2]) -> Vec<u8> {
        let mut bytes = vec![
            0x31, 0x0a, 0xc8, 0x02, 0x00, 0x64, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2,
        ];
        bytes[6..8].copy_from_slice(&checksum);
        bytes
    }

    const SOURCE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 251);

    // Derived by hand (RFC 1071), checksum field zero:
    //   message words  310a c802 0064 0000 c000 0201 c000 0202  sum 0x2_7d73
    //   message only:  fold 0x7d73 + 0x2 = 0x7d75, complement 0x828a
    //   pseudo-header  c000 02fb e000 0012 0070 0010            sum 0x1_a38d
    //     (SOURCE, 224.0.0.18, zero, protocol 112, length 16)
    //   with it:       0x2_7d73 + 0x1_a38d = 0x4_2100, fold 0x2104, complement 0xdefb
    // A public VRRP implementation's golden tests carry the same two values.
    const PSEUDO_HEADER_CHECKSUM: [u8; 2] = [0xde, 0xfb];
    const MESSAGE_ONLY_CHECKSUM: [u8; 2] = [0x82, 0x8a];

    #[test]
    fn checksum_matches_the_hand_computed_values() {
        let message = two_address_advert([0, 0]);
        assert_eq!(
            checksum(&message, None).to_be_bytes(),
            MESSAGE_ONLY_CHECKSUM
        );
        assert_eq!(
            checksum(&message, Some((SOURCE, MULTICAST_GROUP))).to_be_bytes(),
            PSEUDO_HEADER_CHECKSUM
        );
    }

    #[test]
    fn emit_writes_the_rfc5798_pseudo_header_form() {
        let advert = Advert {
            vrid: 10,
            priority: 200,
            max_advert_interval: 100,
            addresses: vec![Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2)],
        };
        let mut buffer = [0xffu8; 64];
        let len = advert.emit(&mut buffer, SOURCE, MULTICAST_GROUP).unwrap();
        assert_eq!(len, 16);
        assert_eq!(
            &buffer[..len],
            two_address_advert(PSEUDO_HEADER_CHECKSUM).as_slice()
        );
    }

    #[test]
    fn parse_accepts_every_checksum_form_and_reports_it() {
        let peer = Ipv4Addr::new(192, 0, 2, 9);
        let cases = [
            (
                PSEUDO_HEADER_CHECKSUM,
                MULTICAST_GROUP,
                ChecksumForm::PseudoHeader,
            ),
            (
                MESSAGE_ONLY_CHECKSUM,
                MULTICAST_GROUP,
                ChecksumForm::MessageOnly,
            ),
            // An old keepalived unicast advert to `peer`, summed as if to the group.
            (
                PSEUDO_HEADER_CHECKSUM,
                peer,
                ChecksumForm::PseudoHeaderWithGroup,
            ),
        ];
        for (checksum, destination, expected) in cases {
            let bytes = two_address_advert(checksum);
            let packet = Packet::new_checked(&bytes[..]).unwrap();
            let (advert, form) = Advert::parse(&packet, SOURCE, destination).unwrap();
            assert_eq!(form, expected);
            assert_eq!(advert.vrid, 10);
            assert_eq!(advert.priority, 200);
            assert_eq!(advert.interval(), Duration::from_secs(1));
            assert_eq!(
                advert.addresses,
                [Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2)]
            );
        }
    }

    #[test]
    fn parse_rejects_each_defect_with_its_own_error() {
        let good = two_address_advert(PSEUDO_HEADER_CHECKSUM);
        let parse = |bytes: &[u8]| {
            Packet::new_checked(bytes).and_then(|p| Advert::parse(&p, SOURCE, MULTICAST_GROUP))
        };
        assert!(parse(&good).is_ok());

        let mut version2 = good.clone();
        version2[0] = 0x21;
        assert_eq!(parse(&version2), Err(PacketError::Version(2)));

        let mut bad_type = good.clone();
        bad_type[0] = 0x32;
        assert_eq!(parse(&bad_type), Err(PacketError::Type(2)));

        assert_eq!(parse(&good[..6]), Err(PacketError::Truncated));
        assert_eq!(parse(&good[..12]), Err(PacketError::Truncated));

        let mut longer = good.clone();
        longer.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(
            parse(&longer),
            Err(PacketError::LengthMismatch {
                expected: 16,
                actual: 20
            })
        );

        let mut no_addresses = good[..8].to_vec();
        no_addresses[3] = 0;
        assert_eq!(parse(&no_addresses), Err(PacketError::NoAddresses));

        let mut bad_checksum = good.clone();
        bad_checksum[7] ^= 0x01;
        assert_eq!(parse(&bad_checksum), Err(PacketError::Checksum));

        let zero_interval = Advert {
            vrid: 10,
            priority: 200,
            max_advert_interval: 0,
            addresses: vec![Ipv4Addr::new(192, 0, 2, 1)],
        };
        let mut buffer = [0u8; 12];
        zero_interval
            .emit(&mut buffer, SOURCE, MULTICAST_GROUP)
            .unwrap();
        assert_eq!(parse(&buffer), Err(PacketError::ZeroInterval));
    }

    #[test]
    fn reserved_bits_are_ignored_on_receive() {
        let mut bytes = two_address_advert([0, 0]);
        bytes[4] |= 0xf0;
        let mut packet = Packet::new_checked(&mut bytes[..]).unwrap();
        packet.fill_checksum(SOURCE, MULTICAST_GROUP);
        let (advert, _) = Advert::parse(&packet, SOURCE, MULTICAST_GROUP).unwrap();
        assert_eq!(advert.max_advert_interval, 100);
    }

    #[test]
    fn emit_refuses_what_the_wire_cannot_carry() {
        let mut advert = Advert {
            vrid: 1,
            priority: 100,
            max_advert_interval: 0x1000,
            addresses: vec![Ipv4Addr::new(10, 0, 0, 1)],
        };
        let mut buffer = [0u8; 2048];
        assert_eq!(
            advert.emit(&mut buffer, SOURCE, MULTICAST_GROUP),
            Err(EmitError::IntervalOutOfRange)
        );
        advert.max_advert_interval = 10;
        assert_eq!(
            advert.emit(&mut buffer[..11], SOURCE, MULTICAST_GROUP),
            Err(EmitError::BufferTooSmall)
        );
        advert.addresses = vec![Ipv4Addr::new(10, 0, 0, 1); 256];
        assert_eq!(
            advert.emit(&mut buffer, SOURCE, MULTICAST_GROUP),
            Err(EmitError::TooManyAddresses)
        );
    }

    #[test]
    fn emit_then_parse_round_trips_for_unicast() {
        let peer = Ipv4Addr::new(10, 99, 0, 2);
        let advert = Advert {
            vrid: 51,
            priority: 0,
            max_advert_interval: 10,
            addresses: vec![Ipv4Addr::new(10, 99, 0, 100)],
        };
        let mut buffer = [0u8; 64];
        let len = advert.emit(&mut buffer, SOURCE, peer).unwrap();
        let packet = Packet::new_checked(&buffer[..len]).unwrap();
        assert_eq!(
            Advert::parse(&packet, SOURCE, peer),
            Ok((advert, ChecksumForm::PseudoHeader))
        );
    }

    /// A 20-byte IPv4 header (protocol 112) in front of `payload`.
    fn datagram(ttl: u8, payload: &[u8]) -> Vec<u8> {
        let total = u16::try_from(20 + payload.len()).unwrap().to_be_bytes();
        let mut bytes = vec![
            0x45,
            0,
            total[0],
            total[1],
            0,
            0,
            0,
            0,
            ttl,
            IP_PROTOCOL,
            0,
            0,
        ];
        bytes.extend_from_slice(&SOURCE.octets());
        bytes.extend_from_slice(&MULTICAST_GROUP.octets());
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn datagram_checks_ttl_and_ip_header_before_the_advert() {
        let advert = two_address_advert(PSEUDO_HEADER_CHECKSUM);
        let received = parse_datagram(&datagram(255, &advert)).unwrap();
        assert_eq!(received.source, SOURCE);
        assert_eq!(received.destination, MULTICAST_GROUP);
        assert_eq!(received.checksum_form, ChecksumForm::PseudoHeader);
        assert_eq!(received.advert.vrid, 10);

        assert_eq!(
            parse_datagram(&datagram(64, &advert)),
            Err(PacketError::Ttl(64))
        );
        assert_eq!(
            parse_datagram(&datagram(255, &advert)[..19]),
            Err(PacketError::IpHeader)
        );

        let mut udp = datagram(255, &advert);
        udp[9] = 17;
        assert_eq!(parse_datagram(&udp), Err(PacketError::IpHeader));

        let mut total_beyond_buffer = datagram(255, &advert);
        total_beyond_buffer[3] += 1;
        assert_eq!(
            parse_datagram(&total_beyond_buffer),
            Err(PacketError::IpHeader)
        );

        let mut short_ihl = datagram(255, &advert);
        short_ihl[0] = 0x44;
        assert_eq!(parse_datagram(&short_ihl), Err(PacketError::IpHeader));

        // Options (IHL 6) are skipped.
        let mut with_options = datagram(255, &advert);
        with_options[0] = 0x46;
        with_options.splice(20..20, [1, 1, 1, 0]);
        with_options[3] += 4;
        assert!(parse_datagram(&with_options).is_ok());
    }
}
