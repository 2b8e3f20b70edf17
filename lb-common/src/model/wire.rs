//! Read-only typed views over the headers the data path reads, in smoltcp's
//! `wire` style: `new_checked` checks the length once, then every accessor
//! reads a fixed-size array at constant offsets and cannot panic.
//!
//! Multi-byte fields come in two flavours, as in the program: `*_be` values
//! are host integers (for lengths and flags that are compared), and
//! addresses and ports are the packet's bytes read in native order, the way
//! [`crate::maps`] keeps them (network byte order, never converted).

/// The buffer is shorter than the header it should hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Truncated;

/// An Ethernet II header and what follows it.
#[derive(Clone, Copy, Debug)]
pub struct EthernetFrame<'a> {
    header: &'a [u8; EthernetFrame::HEADER_LEN],
    payload: &'a [u8],
}

impl<'a> EthernetFrame<'a> {
    /// Destination MAC, source MAC, EtherType.
    pub const HEADER_LEN: usize = 14;
    /// EtherType of IPv4.
    pub const ETHERTYPE_IPV4: u16 = 0x0800;

    /// A view of `buffer`, or [`Truncated`] when it cannot hold the header.
    pub fn new_checked(buffer: &'a [u8]) -> Result<Self, Truncated> {
        let (header, payload) = buffer.split_first_chunk().ok_or(Truncated)?;
        Ok(Self { header, payload })
    }

    /// The destination MAC.
    pub fn dst_addr(&self) -> [u8; 6] {
        let [d0, d1, d2, d3, d4, d5, ..] = *self.header;
        [d0, d1, d2, d3, d4, d5]
    }

    /// The source MAC.
    pub fn src_addr(&self) -> [u8; 6] {
        let [.., s0, s1, s2, s3, s4, s5, _, _] = *self.header;
        [s0, s1, s2, s3, s4, s5]
    }

    /// The EtherType, host order (VLAN tags are not looked into).
    pub fn ether_type(&self) -> u16 {
        u16::from_be_bytes([self.header[12], self.header[13]])
    }

    /// Everything after the Ethernet header.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }
}

/// The fixed 20-byte part of an IPv4 header; options, if any, are in the
/// bytes that follow, which this view does not cover.
#[derive(Clone, Copy, Debug)]
pub struct Ipv4Header<'a> {
    header: &'a [u8; Ipv4Header::FIXED_LEN],
}

impl<'a> Ipv4Header<'a> {
    /// Length of the header without options.
    pub const FIXED_LEN: usize = 20;
    /// "More fragments" in the flags/fragment-offset field.
    pub const MORE_FRAGMENTS: u16 = 0x2000;
    /// Fragment offset mask of the flags/fragment-offset field.
    pub const FRAGMENT_OFFSET: u16 = 0x1fff;

    /// A view of the start of `buffer`, or [`Truncated`] when it is shorter
    /// than the fixed header.
    pub fn new_checked(buffer: &'a [u8]) -> Result<Self, Truncated> {
        let header = buffer.first_chunk().ok_or(Truncated)?;
        Ok(Self { header })
    }

    /// Header length in bytes as the IHL field says (IHL × 4, 0..=60),
    /// whatever the version field holds.
    pub fn header_len(&self) -> usize {
        usize::from(self.header[0] & 0x0f) * 4
    }

    /// The total-length field, host order.
    pub fn total_len(&self) -> usize {
        usize::from(u16::from_be_bytes([self.header[2], self.header[3]]))
    }

    /// The flags and fragment-offset field, host order.
    pub fn flags_and_fragment_offset(&self) -> u16 {
        u16::from_be_bytes([self.header[6], self.header[7]])
    }

    /// The protocol field.
    pub fn protocol(&self) -> u8 {
        self.header[9]
    }

    /// Source address, network byte order (the packet's bytes).
    pub fn src_addr(&self) -> u32 {
        u32::from_ne_bytes([
            self.header[12],
            self.header[13],
            self.header[14],
            self.header[15],
        ])
    }

    /// Destination address, network byte order (the packet's bytes).
    pub fn dst_addr(&self) -> u32 {
        u32::from_ne_bytes([
            self.header[16],
            self.header[17],
            self.header[18],
            self.header[19],
        ])
    }
}

/// The fixed 20-byte part of a TCP header.
#[derive(Clone, Copy, Debug)]
pub struct TcpHeader<'a> {
    header: &'a [u8; TcpHeader::FIXED_LEN],
}

impl<'a> TcpHeader<'a> {
    /// Length of the header without options.
    pub const FIXED_LEN: usize = 20;

    /// A view of the start of `buffer`, or [`Truncated`] when it is shorter
    /// than the fixed header.
    pub fn new_checked(buffer: &'a [u8]) -> Result<Self, Truncated> {
        let header = buffer.first_chunk().ok_or(Truncated)?;
        Ok(Self { header })
    }

    /// Source port, network byte order (the packet's bytes).
    pub fn src_port(&self) -> u16 {
        u16::from_ne_bytes([self.header[0], self.header[1]])
    }

    /// Destination port, network byte order (the packet's bytes).
    pub fn dst_port(&self) -> u16 {
        u16::from_ne_bytes([self.header[2], self.header[3]])
    }

    /// The data-offset field: header length in 32-bit words (0..=15).
    pub fn data_offset(&self) -> u8 {
        self.header[12] >> 4
    }

    /// The flags byte (CWR ECE URG ACK PSH RST SYN FIN).
    pub fn flags(&self) -> u8 {
        self.header[13]
    }
}

/// A UDP header.
#[derive(Clone, Copy, Debug)]
pub struct UdpHeader<'a> {
    header: &'a [u8; UdpHeader::LEN],
}

impl<'a> UdpHeader<'a> {
    /// Length of the header.
    pub const LEN: usize = 8;

    /// A view of the start of `buffer`, or [`Truncated`] when it is shorter
    /// than the header.
    pub fn new_checked(buffer: &'a [u8]) -> Result<Self, Truncated> {
        let header = buffer.first_chunk().ok_or(Truncated)?;
        Ok(Self { header })
    }

    /// Source port, network byte order (the packet's bytes).
    pub fn src_port(&self) -> u16 {
        u16::from_ne_bytes([self.header[0], self.header[1]])
    }

    /// Destination port, network byte order (the packet's bytes).
    pub fn dst_port(&self) -> u16 {
        u16::from_ne_bytes([self.header[2], self.header[3]])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ethernet_needs_14_bytes() {
        assert_eq!(EthernetFrame::new_checked(&[0; 13]).err(), Some(Truncated));
        let mut frame = [0u8; 16];
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        frame[14..].copy_from_slice(&[0xaa, 0xbb]);
        frame[..12].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        let eth = EthernetFrame::new_checked(&frame).unwrap();
        assert_eq!(eth.dst_addr(), [1, 2, 3, 4, 5, 6]);
        assert_eq!(eth.src_addr(), [7, 8, 9, 10, 11, 12]);
        assert_eq!(eth.ether_type(), EthernetFrame::ETHERTYPE_IPV4);
        assert_eq!(eth.payload(), [0xaa, 0xbb]);
    }

    #[test]
    fn ipv4_fields() {
        let header = [
            0x46, 0, 0x01, 0x02, 0, 0, 0x20, 0x05, 64, 17, 0, 0, 10, 0, 1, 1, 10, 0, 0, 100,
        ];
        assert_eq!(
            Ipv4Header::new_checked(&header[..19]).err(),
            Some(Truncated)
        );
        let ip = Ipv4Header::new_checked(&header).unwrap();
        assert_eq!(ip.header_len(), 24);
        assert_eq!(ip.total_len(), 0x0102);
        assert_eq!(ip.flags_and_fragment_offset(), 0x2005);
        assert_eq!(ip.protocol(), 17);
        assert_eq!(ip.src_addr(), u32::from_ne_bytes([10, 0, 1, 1]));
        assert_eq!(ip.dst_addr(), u32::from_ne_bytes([10, 0, 0, 100]));
    }

    #[test]
    fn tcp_and_udp_ports_keep_network_order() {
        let mut segment = [0u8; 20];
        segment[..4].copy_from_slice(&[0x9c, 0x40, 0, 80]);
        segment[12] = 0xf0;
        assert_eq!(
            TcpHeader::new_checked(&segment[..19]).err(),
            Some(Truncated)
        );
        let tcp = TcpHeader::new_checked(&segment).unwrap();
        assert_eq!(tcp.src_port(), 40_000u16.to_be());
        assert_eq!(tcp.dst_port(), 80u16.to_be());
        assert_eq!(tcp.data_offset(), 15);

        assert_eq!(UdpHeader::new_checked(&segment[..7]).err(), Some(Truncated));
        let udp = UdpHeader::new_checked(&segment[..8]).unwrap();
        assert_eq!(
            (udp.src_port(), udp.dst_port()),
            (tcp.src_port(), tcp.dst_port())
        );
    }
}
