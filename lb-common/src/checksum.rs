//! The Internet checksum (RFC 1071) of IPv4, TCP, UDP and VRRP, and its
//! incremental update when one field changes (RFC 1624).
//!
//! Words are big-endian 16-bit values as they appear on the wire, so the
//! results are the bytes to store in a checksum field (`to_be_bytes`).
//! [`sum`] and [`fold`] are the building blocks for checksums that cover more
//! than one buffer (a pseudo-header, then the segment).

/// Adds `bytes` to the running one's-complement sum `sum`, as big-endian
/// 16-bit words; an odd last byte is padded with a zero byte. To sum several
/// buffers, chain the calls: every buffer but the last must have an even
/// length. Any `u32` is a valid `sum`; the result fits in 17 bits.
pub fn sum(sum: u32, bytes: &[u8]) -> u32 {
    // Folding on every word keeps the accumulator within 17 bits.
    let mut total = (sum & 0xffff) + (sum >> 16);
    let mut words = bytes.chunks_exact(2);
    for word in &mut words {
        total += u32::from(u16::from_be_bytes([word[0], word[1]]));
        total = (total & 0xffff) + (total >> 16);
    }
    if let [last] = words.remainder() {
        total += u32::from(*last) << 8;
        total = (total & 0xffff) + (total >> 16);
    }
    total
}

/// The one's-complement sum `sum` folded to 16 bits (carries added back in).
pub fn fold(sum: u32) -> u16 {
    let once = (sum & 0xffff) + (sum >> 16);
    let twice = (once & 0xffff) + (once >> 16);
    // Two folds leave at most 16 bits: `once` is at most 0x1_fffe.
    twice as u16
}

/// The Internet checksum of `bytes`: the complement of their one's-complement
/// sum. Over a header whose checksum field is correct, it is 0.
pub fn checksum(bytes: &[u8]) -> u16 {
    !fold(sum(0, bytes))
}

/// The checksum `checksum` after a 16-bit field it covers changes from `old`
/// to `new` (RFC 1624, eqn. 3: `~(~HC + ~m + m')`), without reading the rest
/// of the data again.
pub fn update_u16(checksum: u16, old: u16, new: u16) -> u16 {
    !fold(u32::from(!checksum) + u32::from(!old) + u32::from(new))
}

/// The checksum `checksum` after a 32-bit field it covers (an IPv4 address)
/// changes from `old` to `new`: [`update_u16`] for each of its two words.
pub fn update_u32(checksum: u16, old: u32, new: u32) -> u16 {
    let [old_high, old_low] = words(old);
    let [new_high, new_low] = words(new);
    update_u16(update_u16(checksum, old_high, new_high), old_low, new_low)
}

/// An address and a port of a packet rewritten by NAT (both as on the
/// wire): the IPv4 header checksum covers the address, the TCP or UDP
/// checksum both (the address through the pseudo-header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    pub old_addr: [u8; 4],
    pub new_addr: [u8; 4],
    pub old_port: [u8; 2],
    pub new_port: [u8; 2],
}

impl Translation {
    /// The IPv4 header checksum `current` after the translation.
    #[inline(always)]
    pub fn ipv4_checksum(&self, current: u16) -> u16 {
        update_u32(
            current,
            u32::from_be_bytes(self.old_addr),
            u32::from_be_bytes(self.new_addr),
        )
    }

    /// The TCP or UDP checksum `current` after the translation; `None` for
    /// a UDP datagram sent without a checksum (0), which stays without one.
    /// A UDP checksum that comes out 0 is sent as 0xffff, its other form
    /// (RFC 768: 0 means "none").
    #[inline(always)]
    pub fn l4_checksum(&self, current: u16, udp: bool) -> Option<u16> {
        if udp && current == 0 {
            return None;
        }
        let updated = update_u16(
            self.ipv4_checksum(current),
            u16::from_be_bytes(self.old_port),
            u16::from_be_bytes(self.new_port),
        );
        Some(if udp && updated == 0 { 0xffff } else { updated })
    }
}

/// The two big-endian 16-bit words of `value`, high first.
fn words(value: u32) -> [u16; 2] {
    let [a, b, c, d] = value.to_be_bytes();
    [u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d])]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 header as captured (UDP, 192.168.0.1 → 192.168.0.199, TTL 64,
    /// DF), with its checksum 0xb861 in bytes 10..12.
    const CAPTURED_IPV4_HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    fn without_checksum(header: [u8; 20]) -> [u8; 20] {
        let mut header = header;
        header[10..12].fill(0);
        header
    }

    #[test]
    fn rfc1071_numerical_example() {
        // RFC 1071 section 3: 0001 + f203 + f4f5 + f6f7 = 2_ddf0, folded ddf2.
        let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(0, &bytes)), 0xddf2);
        assert_eq!(checksum(&bytes), !0xddf2);
    }

    #[test]
    fn captured_ipv4_header_checksum() {
        assert_eq!(checksum(&without_checksum(CAPTURED_IPV4_HEADER)), 0xb861);
        assert_eq!(checksum(&CAPTURED_IPV4_HEADER), 0);
    }

    #[test]
    fn odd_last_byte_is_padded_with_zero() {
        // 0x0102 + 0x0300.
        assert_eq!(checksum(&[1, 2, 3]), !0x0402);
        assert_eq!(checksum(&[0xab]), !0xab00);
    }

    #[test]
    fn all_zero_and_empty_data_checksum_to_ffff() {
        assert_eq!(checksum(&[]), 0xffff);
        assert_eq!(checksum(&[0; 20]), 0xffff);
        assert_eq!(checksum(&[0; 3]), 0xffff);
    }

    #[test]
    fn carries_fold_back_into_sixteen_bits() {
        // 0xffff + 0xffff = 0x1_fffe, folded 0xffff (-0): the checksum is 0.
        assert_eq!(fold(sum(0, &[0xff; 4])), 0xffff);
        assert_eq!(checksum(&[0xff; 4]), 0);
        assert_eq!(fold(u32::MAX), 0xffff);
        assert_eq!(fold(0x1_fffe), 0xffff);
        assert_eq!(fold(0x2_0001), 0x0003);
        // A large running sum is folded before more words are added.
        assert_eq!(fold(sum(u32::MAX, &[0x00, 0x01])), 0x0001);
        // Many words: the accumulator never overflows.
        assert_eq!(fold(sum(0, &[0xff; 200_000])), 0xffff);
    }

    #[test]
    fn chained_sums_equal_the_sum_of_the_concatenation() {
        let (first, rest) = CAPTURED_IPV4_HEADER.split_at(12);
        assert_eq!(
            fold(sum(sum(0, first), rest)),
            fold(sum(0, &CAPTURED_IPV4_HEADER))
        );
    }

    #[test]
    fn rfc1624_example_update() {
        // RFC 1624 section 4: the other fields sum to 0xcd7a, so with
        // m = 0x5555 HC = ~(0xcd7a + 0x5555) = 0xdd2f; after m' = 0x3285 a
        // recomputation gives ~(0xcd7a + 0x3285) = ~0xffff = 0x0000, and so
        // must the update (the RFC 1141 update gave 0xffff).
        assert_eq!(update_u16(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    #[test]
    fn an_unchanged_field_keeps_the_checksum() {
        for checksum in [0x0000, 0x0001, 0xb861, 0xfffe] {
            assert_eq!(update_u16(checksum, 0x5555, 0x5555), checksum);
            assert_eq!(update_u32(checksum, 0xc0a8_0001, 0xc0a8_0001), checksum);
        }
    }

    /// `header` with `value` written at `offset`, and its checksum
    /// recomputed from scratch.
    fn recomputed(header: [u8; 20], offset: usize, value: &[u8]) -> [u8; 20] {
        let mut header = without_checksum(header);
        header[offset..offset + value.len()].copy_from_slice(value);
        let fresh = checksum(&header);
        header[10..12].copy_from_slice(&fresh.to_be_bytes());
        header
    }

    fn stored_checksum(header: &[u8; 20]) -> u16 {
        u16::from_be_bytes([header[10], header[11]])
    }

    #[test]
    fn updates_match_a_recomputation_from_scratch() {
        let base = CAPTURED_IPV4_HEADER;
        let old_ttl_proto = u16::from_be_bytes([base[8], base[9]]);
        let old_destination = u32::from_be_bytes([base[16], base[17], base[18], base[19]]);
        // Edge values: zero, all ones, the old value's complement, and a spread.
        let mut values: [u32; 64] = [0; 64];
        values[1] = u32::MAX;
        values[2] = !old_destination;
        values[3] = 0x0000_ffff;
        values[4] = 0xffff_0000;
        for (i, value) in values.iter_mut().enumerate().skip(5) {
            *value = (i as u32).wrapping_mul(0x9e37_79b9);
        }
        for &value in &values {
            // A 16-bit field: TTL and protocol.
            let word = value as u16;
            let expected = recomputed(base, 8, &word.to_be_bytes());
            assert_eq!(
                update_u16(stored_checksum(&base), old_ttl_proto, word),
                stored_checksum(&expected),
                "ttl/protocol {word:#06x}"
            );
            // A 32-bit field: the destination address (what NAT rewrites).
            let expected = recomputed(base, 16, &value.to_be_bytes());
            assert_eq!(
                update_u32(stored_checksum(&base), old_destination, value),
                stored_checksum(&expected),
                "destination {value:#010x}"
            );
        }
    }
}
