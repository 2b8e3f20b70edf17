//! Frames described field by field, so a generator can set any field to any
//! value (an IHL that lies, a UDP length of 0, a VLAN tag) and still get the
//! rest of the frame right.

use lb_common::maps::{IPPROTO_TCP, IPPROTO_UDP};

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const ETHERTYPE_VLAN: u16 = 0x8100;
pub const ETHERTYPE_QINQ: u16 = 0x88a8;
pub const IPPROTO_ICMP: u8 = 1;

/// An Ethernet frame carrying an IPv4 packet, every field settable.
#[derive(Clone, Debug)]
pub struct FrameSpec {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    /// VLAN tags (TPID, TCI) before the EtherType, outermost first.
    pub vlan_tags: Vec<(u16, u16)>,
    pub ether_type: u16,
    pub ip: Ipv4Spec,
    pub l4: L4Spec,
    /// Bytes after the IPv4 packet (Ethernet padding).
    pub trailer: Vec<u8>,
    /// Whether the TCP or UDP checksum is computed (over the IPv4
    /// pseudo-header, from the fields as they are); otherwise it is 0.
    pub l4_checksum: bool,
}

/// An IPv4 header; `None` fields are computed from the rest.
#[derive(Clone, Debug)]
pub struct Ipv4Spec {
    pub version: u8,
    /// IHL in 32-bit words; default: 5 plus the options.
    pub ihl: Option<u8>,
    /// Options, padded with zeros to a multiple of 4 bytes.
    pub options: Vec<u8>,
    /// Total length; default: header, options and L4 bytes.
    pub total_len: Option<u16>,
    /// Flags and fragment offset (0x2000: more fragments, 0x4000: DF).
    pub flags_fragment: u16,
    pub protocol: u8,
    pub src: [u8; 4],
    pub dst: [u8; 4],
}

/// What the IPv4 packet carries.
#[derive(Clone, Debug)]
pub enum L4Spec {
    Tcp {
        src_port: u16,
        dst_port: u16,
        /// Data offset in words; default: 5 plus the options.
        data_offset: Option<u8>,
        /// The 12 flag bits (NS, CWR, ECE, URG, ACK, PSH, RST, SYN, FIN).
        flags: u16,
        options: Vec<u8>,
        payload: Vec<u8>,
    },
    Udp {
        src_port: u16,
        dst_port: u16,
        /// The length field; default: header and payload.
        len: Option<u16>,
        payload: Vec<u8>,
    },
    Icmp {
        icmp_type: u8,
        code: u8,
        payload: Vec<u8>,
    },
}

impl L4Spec {
    /// The IP protocol number this payload normally travels under.
    pub fn protocol(&self) -> u8 {
        match self {
            L4Spec::Tcp { .. } => IPPROTO_TCP,
            L4Spec::Udp { .. } => IPPROTO_UDP,
            L4Spec::Icmp { .. } => IPPROTO_ICMP,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        match self {
            L4Spec::Tcp {
                src_port,
                dst_port,
                data_offset,
                flags,
                options,
                payload,
            } => {
                let options = padded(options);
                let offset = data_offset.unwrap_or((5 + options.len() / 4) as u8);
                let [flags_high, flags_low] = flags.to_be_bytes();
                let mut segment = Vec::with_capacity(20 + options.len() + payload.len());
                segment.extend_from_slice(&src_port.to_be_bytes());
                segment.extend_from_slice(&dst_port.to_be_bytes());
                segment.extend_from_slice(&1000u32.to_be_bytes());
                segment.extend_from_slice(&2000u32.to_be_bytes());
                segment.push(offset << 4 | (flags_high & 0x0f));
                segment.push(flags_low);
                segment.extend_from_slice(&64_240u16.to_be_bytes());
                segment.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
                segment.extend_from_slice(&options);
                segment.extend_from_slice(payload);
                segment
            }
            L4Spec::Udp {
                src_port,
                dst_port,
                len,
                payload,
            } => {
                let len = len.unwrap_or((8 + payload.len()) as u16);
                let mut datagram = Vec::with_capacity(8 + payload.len());
                datagram.extend_from_slice(&src_port.to_be_bytes());
                datagram.extend_from_slice(&dst_port.to_be_bytes());
                datagram.extend_from_slice(&len.to_be_bytes());
                datagram.extend_from_slice(&[0, 0]); // no checksum
                datagram.extend_from_slice(payload);
                datagram
            }
            L4Spec::Icmp {
                icmp_type,
                code,
                payload,
            } => {
                let mut message = vec![*icmp_type, *code, 0, 0, 0, 0, 0, 1];
                message.extend_from_slice(payload);
                let sum = checksum(&message);
                message[2..4].copy_from_slice(&sum.to_be_bytes());
                message
            }
        }
    }
}

impl FrameSpec {
    /// A well-formed frame from `src_mac` to `dst_mac` carrying `l4` from
    /// `src` to `dst`.
    pub fn new(dst_mac: [u8; 6], src_mac: [u8; 6], src: [u8; 4], dst: [u8; 4], l4: L4Spec) -> Self {
        Self {
            dst_mac,
            src_mac,
            vlan_tags: Vec::new(),
            ether_type: ETHERTYPE_IPV4,
            ip: Ipv4Spec {
                version: 4,
                ihl: None,
                options: Vec::new(),
                total_len: None,
                flags_fragment: 0,
                protocol: l4.protocol(),
                src,
                dst,
            },
            l4,
            trailer: Vec::new(),
            l4_checksum: false,
        }
    }

    /// The frame's bytes (IPv4 header checksum computed; L4 checksums 0
    /// unless [`FrameSpec::l4_checksum`]: only `nat` updates them, and
    /// never looks at them).
    pub fn build(&self) -> Vec<u8> {
        let mut l4 = self.l4.bytes();
        if self.l4_checksum {
            self.fill_l4_checksum(&mut l4);
        }
        let options = padded(&self.ip.options);
        let header_len = 20 + options.len();
        let ihl = self.ip.ihl.unwrap_or((header_len / 4) as u8);
        let total_len = self.ip.total_len.unwrap_or((header_len + l4.len()) as u16);
        let mut header = Vec::with_capacity(header_len);
        header.push(self.ip.version << 4 | (ihl & 0x0f));
        header.push(0);
        header.extend_from_slice(&total_len.to_be_bytes());
        header.extend_from_slice(&0x1234u16.to_be_bytes());
        header.extend_from_slice(&self.ip.flags_fragment.to_be_bytes());
        header.extend_from_slice(&[64, self.ip.protocol, 0, 0]);
        header.extend_from_slice(&self.ip.src);
        header.extend_from_slice(&self.ip.dst);
        header.extend_from_slice(&options);
        let sum = checksum(&header);
        header[10..12].copy_from_slice(&sum.to_be_bytes());

        let mut frame = Vec::with_capacity(18 + header.len() + l4.len() + self.trailer.len());
        frame.extend_from_slice(&self.dst_mac);
        frame.extend_from_slice(&self.src_mac);
        for (tpid, tci) in &self.vlan_tags {
            frame.extend_from_slice(&tpid.to_be_bytes());
            frame.extend_from_slice(&tci.to_be_bytes());
        }
        frame.extend_from_slice(&self.ether_type.to_be_bytes());
        frame.extend_from_slice(&header);
        frame.extend_from_slice(&l4);
        frame.extend_from_slice(&self.trailer);
        frame
    }
}

impl FrameSpec {
    /// Writes the TCP or UDP checksum of `l4` (its field zero) from the
    /// spec's addresses and protocol, when the header holds the field; a
    /// UDP checksum that comes out 0 is sent as 0xffff.
    fn fill_l4_checksum(&self, l4: &mut [u8]) {
        let (at, udp) = match self.l4 {
            L4Spec::Tcp { .. } => (16, false),
            L4Spec::Udp { .. } => (6, true),
            L4Spec::Icmp { .. } => return,
        };
        if l4.len() < at + 2 {
            return;
        }
        let pseudo_header = [
            &self.ip.src[..],
            &self.ip.dst[..],
            &[0, self.ip.protocol],
            &(l4.len() as u16).to_be_bytes(),
        ]
        .concat();
        let sum = lb_common::checksum::sum(lb_common::checksum::sum(0, &pseudo_header), l4);
        let checksum = match !lb_common::checksum::fold(sum) {
            0 if udp => 0xffff,
            checksum => checksum,
        };
        l4[at..at + 2].copy_from_slice(&checksum.to_be_bytes());
    }
}

/// `options` padded with zeros (end of options) to a multiple of 4 bytes.
fn padded(options: &[u8]) -> Vec<u8> {
    let mut padded = options.to_vec();
    padded.resize(options.len().div_ceil(4) * 4, 0);
    padded
}

/// The Internet checksum (RFC 1071).
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp_frame() -> FrameSpec {
        FrameSpec::new(
            [2, 0, 0, 0, 0, 1],
            [2, 0, 0, 0, 0, 2],
            [192, 0, 2, 1],
            [10, 0, 0, 100],
            L4Spec::Udp {
                src_port: 5000,
                dst_port: 53,
                len: None,
                payload: b"abc".to_vec(),
            },
        )
    }

    #[test]
    fn defaults_give_a_well_formed_frame() {
        let frame = udp_frame().build();
        assert_eq!(frame.len(), 14 + 20 + 8 + 3);
        assert_eq!(frame[12..14], [0x08, 0x00]);
        assert_eq!(frame[14], 0x45);
        assert_eq!(frame[16..18], 31u16.to_be_bytes());
        assert_eq!(frame[23], IPPROTO_UDP);
        assert_eq!(checksum(&frame[14..34]), 0, "the header checksum verifies");
        assert_eq!(frame[38..40], 11u16.to_be_bytes(), "UDP length");
        assert_eq!(frame[40..42], [0, 0], "no UDP checksum");
    }

    #[test]
    fn transport_checksums_verify_when_computed() {
        let mut spec = udp_frame();
        spec.l4_checksum = true;
        let verifies = |frame: &[u8]| {
            let ip = &frame[14..34];
            let pseudo_header = [
                &ip[12..20],
                &[0, ip[9]],
                &((frame.len() - 34) as u16).to_be_bytes(),
            ]
            .concat();
            lb_common::checksum::fold(lb_common::checksum::sum(
                lb_common::checksum::sum(0, &pseudo_header),
                &frame[34..],
            )) == 0xffff
        };
        let frame = spec.build();
        assert_ne!(frame[40..42], [0, 0]);
        assert!(verifies(&frame));
        spec.l4 = L4Spec::Tcp {
            src_port: 1,
            dst_port: 2,
            data_offset: None,
            flags: 0x12,
            options: vec![],
            payload: b"odd".to_vec(),
        };
        spec.ip.protocol = IPPROTO_TCP;
        assert!(verifies(&spec.build()));
    }

    #[test]
    fn every_field_can_be_forced() {
        let mut spec = udp_frame();
        spec.vlan_tags = vec![(ETHERTYPE_QINQ, 7), (ETHERTYPE_VLAN, 9)];
        spec.ip.options = vec![1, 1];
        spec.ip.ihl = Some(3);
        spec.ip.total_len = Some(0xffff);
        spec.ip.version = 6;
        spec.l4 = L4Spec::Tcp {
            src_port: 1,
            dst_port: 2,
            data_offset: Some(15),
            flags: 0xfff,
            options: vec![],
            payload: vec![],
        };
        spec.trailer = vec![0xee; 2];
        let frame = spec.build();
        assert_eq!(frame[12..20], [0x88, 0xa8, 0, 7, 0x81, 0x00, 0, 9]);
        assert_eq!(frame[20..22], [0x08, 0x00]);
        assert_eq!(frame[22], 0x63);
        assert_eq!(frame[24..26], [0xff, 0xff]);
        let tcp = 22 + 24;
        assert_eq!(frame[tcp + 12..tcp + 14], [0xff, 0xff]);
        assert_eq!(frame.len(), tcp + 20 + 2);
    }
}
