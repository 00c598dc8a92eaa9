//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Sums are carried in a `u32` that is kept folded to 16 bits, so partial sums (pseudo
//! header + header + payload) can be added freely. This is the NAT hot path: no allocation.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Ones-complement sum of `data` as big-endian 16-bit words; an odd trailing byte is
/// padded with a zero byte. The result is folded to at most `0xffff`, so a handful of
/// sums can be added together and passed to [`fold`] without overflow.
#[inline]
pub fn sum(data: &[u8]) -> u32 {
    // 32-bit words summed into a u64 are congruent, modulo 0xffff, to the sum of their
    // 16-bit halves (2^16 = 1 mod 0xffff), and need far fewer additions.
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut pairs = rest.chunks_exact(2);
    for p in &mut pairs {
        acc += u64::from(u16::from_be_bytes([p[0], p[1]]));
    }
    if let [last] = pairs.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    u32::from(fold(acc as u32))
}

/// Folds a 32-bit ones-complement accumulator into 16 bits (end-around carry).
#[inline]
pub fn fold(sum: u32) -> u16 {
    let s = (sum & 0xffff) + (sum >> 16);
    let s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// The folded ones-complement sum of `data` read in the machine's own byte
/// order (no byte swap per word): the same sum as [`sum`]'s, byte-swapped
/// on a little-endian machine, since a ones-complement sum is the same
/// whichever byte order its words are read in. A 20-byte block (an IPv4
/// header without options) takes a fixed, unrolled path.
#[inline(always)]
fn sum_ne(data: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    if let Ok(h) = <&[u8; 20]>::try_from(data) {
        for i in 0..5 {
            acc += u64::from(u32::from_ne_bytes([
                h[4 * i],
                h[4 * i + 1],
                h[4 * i + 2],
                h[4 * i + 3],
            ]));
        }
    } else {
        let mut words = data.chunks_exact(4);
        for w in &mut words {
            acc += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
        }
        let rest = words.remainder();
        let mut pairs = rest.chunks_exact(2);
        for p in &mut pairs {
            acc += u64::from(u16::from_ne_bytes([p[0], p[1]]));
        }
        if let [last] = pairs.remainder() {
            // The odd byte is the high half of a big-endian word padded
            // with zero: in the machine's order it sits where its first
            // byte would.
            acc += u64::from(u16::from_ne_bytes([*last, 0]));
        }
    }
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    fold(acc as u32)
}

/// Whether `data`, which holds its own checksum field, sums to a correct
/// Internet checksum (what [`checksum`] == 0 says, but cheaper): a correct
/// block sums to `0xffff`, which reads the same in both byte orders, so
/// the words are summed in the machine's own ([`sum_ne`]).
#[inline]
pub fn is_valid(data: &[u8]) -> bool {
    sum_ne(data) == 0xffff
}

/// [`checksum`] in the machine's byte order ("raw", see [`Delta`]): what
/// `u16::from_ne_bytes` of the two checksum bytes [`checksum`] gives would
/// read, summed without byte swaps ([`sum_ne`]).
#[inline]
pub fn checksum_raw(data: &[u8]) -> u16 {
    !sum_ne(data)
}

/// The Internet checksum of `data`: the complement of its folded ones-complement sum.
/// Computing it over data that already contains a correct checksum yields 0.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data))
}

/// Ones-complement sum of the TCP/UDP IPv4 pseudo header: source and destination
/// address, zero byte + protocol, and the transport `length` (header + payload).
#[inline]
pub fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u32 {
    let s = u32::from(src);
    let d = u32::from(dst);
    (s >> 16) + (s & 0xffff) + (d >> 16) + (d & 0xffff) + u32::from(protocol) + u32::from(length)
}

/// Ones-complement sum of the sixteen 16-bit words of an IPv6 address.
#[inline]
fn sum128(addr: Ipv6Addr) -> u32 {
    // Two 64-bit halves summed as 32-bit words into a u64 (as in [`sum`]):
    // four additions instead of eight, the same value modulo 0xffff.
    let v = u128::from(addr);
    let mut acc: u64 = 0;
    for i in 0..4 {
        acc += (v >> (32 * i)) as u32 as u64;
    }
    // Two rounds: after one, a carry of up to 3 may still sit above bit 31.
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    u32::from(fold(acc as u32))
}

/// Ones-complement sum of the upper-layer IPv6 pseudo header (RFC 8200
/// §8.1): source and destination address, the 32-bit upper-layer packet
/// length, three zero bytes and the next-header value of the upper layer
/// (not of an extension header before it). The addresses are the final
/// destination's: with a Routing header that is the last segment, but the
/// extension-header walker refuses Routing headers with segments left, so
/// here it is always the IPv6 destination address. Folded to at most
/// `0xffff`, as [`sum`] is.
#[inline]
pub fn pseudo_header_sum_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, upper_len: u32) -> u32 {
    let s = sum128(src)
        + sum128(dst)
        + (upper_len >> 16)
        + (upper_len & 0xffff)
        + u32::from(next_header);
    u32::from(fold(s))
}

/// RFC 1624 eqn. 3 incremental update, `HC' = ~(~HC + ~m + m')`, for a 16-bit field of the
/// checksummed data changing from `old` to `new`. Returns the new checksum.
///
/// The result equals a full recomputation, except that where a full recomputation gives
/// `0xffff` (only when all checksummed data is zero) this gives the equivalent `0x0000`.
/// A UDP checksum of 0 means "no checksum": callers must not update it, and must write
/// `0xffff` if the update yields 0.
#[inline]
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    let s = u32::from(!check) + u32::from(!old) + u32::from(new);
    !fold(s)
}

/// RFC 1624 incremental update for a 32-bit field (an IPv4 address, as
/// `u32::from(addr)`) changing from `old` to `new`; same caveats as [`update16`].
/// The field must start at an even offset of the checksummed data, which holds for the
/// addresses in both the IPv4 header and the TCP/UDP pseudo header.
#[inline]
pub fn update32(check: u16, old: u32, new: u32) -> u16 {
    let s = u32::from(!check)
        + u32::from(!(old >> 16) as u16)
        + u32::from(!(old as u16))
        + (new >> 16)
        + (new & 0xffff);
    !fold(s)
}

/// RFC 1624 incremental update for a 128-bit field (an IPv6 address, in the
/// IPv6 pseudo header of TCP, UDP or ICMPv6) changing from `old` to `new`;
/// same caveats as [`update16`]. The field must start at an even offset of
/// the checksummed data, which holds for every address in IPv6 headers and
/// pseudo headers.
#[inline]
pub fn update128(check: u16, old: Ipv6Addr, new: Ipv6Addr) -> u16 {
    Delta::default().change128(old, new).apply(check)
}

/// Several RFC 1624 changes to one checksummed block, applied with a single
/// fold: `HC' = ~(~HC + sum of (~m + m'))`. Cheaper than one update per
/// field when a rewrite changes an address, a port and a TTL together.
///
/// The arithmetic does not care which byte order the words are read in
/// (RFC 1071, 2(B)), as long as the old and new values and the checksum
/// are all read in the same one: with every word byte-swapped, the result
/// is the byte-swapped result, to the bit (a swap is a multiplication by
/// 256 modulo 0xffff, and the sums are zero only when every term is, in
/// both orders). So a rewrite may work on words in the machine's own
/// order ("raw": `Ipv4Packet::dst_addr_raw` and the like) and save the
/// swaps (the `raw_order_gives_the_swapped_result` test).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delta(u32);

impl Delta {
    /// A 16-bit field changes from `old` to `new`.
    #[inline]
    pub fn change16(mut self, old: u16, new: u16) -> Delta {
        self.0 += u32::from(!old) + u32::from(new);
        self
    }

    /// A 32-bit field (at an even offset) changes from `old` to `new`.
    #[inline]
    pub fn change32(self, old: u32, new: u32) -> Delta {
        self.change16((old >> 16) as u16, (new >> 16) as u16)
            .change16(old as u16, new as u16)
    }

    /// A 128-bit field (an IPv6 address, at an even offset) changes from
    /// `old` to `new`: `~m` over the whole field is `0xffff * 8 - sum(m)`
    /// word by word, so the change is the difference of the two sums,
    /// computed as two additions and one fold.
    #[inline]
    pub fn change128(self, old: Ipv6Addr, new: Ipv6Addr) -> Delta {
        // The same word sums whichever order the 128 bits are in.
        self.change128_raw(u128::from(old), u128::from(new))
    }

    /// [`Delta::change128`] of a field read in the machine's byte order
    /// (see [`Delta`]): `old` and `new` as `u128::from_ne_bytes` of its 16
    /// bytes (or, for [`Delta::change128`], as numbers: the arithmetic is
    /// the same).
    #[inline(always)]
    pub fn change128_raw(mut self, old: u128, new: u128) -> Delta {
        // One sum of the eight 32-bit words of `new` and of `!old`: a
        // 32-bit word's complement is its negation modulo 0xffff (as
        // 0xffff_ffff = 0xffff * 0x1_0001 is 0 there), so the sum is
        // sum(new) - sum(old), folded once (two separate sums of the
        // addresses, each folded, cost twice the instructions).
        let (o, n) = (!old, new);
        let mut acc: u64 = 0;
        for i in 0..4 {
            acc += u64::from((o >> (32 * i)) as u32) + u64::from((n >> (32 * i)) as u32);
        }
        // Eight words: a carry of up to 7 above bit 31, then at most 1.
        acc = (acc & 0xffff_ffff) + (acc >> 32);
        acc = (acc & 0xffff_ffff) + (acc >> 32);
        self.0 += u32::from(fold(acc as u32));
        self
    }

    /// The checksum after the changes.
    #[inline]
    pub fn apply(self, check: u16) -> u16 {
        // A handful of terms of at most 20 bits each: the sum stays far
        // below 2^32, and one fold of a 32-bit sum absorbs every carry. It
        // gives exactly what folding the changes first did: both results
        // are in 1..=0xffff (or both 0) and agree modulo 0xffff.
        !fold(u32::from(!check) + self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A [`Delta`] of byte-swapped words applied to a byte-swapped
        /// checksum gives the byte-swapped result, to the bit (0 and
        /// 0xffff included): what lets a rewrite work in the machine's own
        /// byte order.
        #[test]
        fn raw_order_gives_the_swapped_result(
            check in prop_oneof![Just(0u16), Just(0xffff), any::<u16>()],
            words in proptest::collection::vec(
                (prop_oneof![Just(0u16), Just(0xffff), any::<u16>()],
                 prop_oneof![Just(0u16), Just(0xffff), any::<u16>()]),
                0..6,
            ),
            longs in proptest::collection::vec(any::<(u32, u32)>(), 0..3),
            addrs in proptest::collection::vec(any::<([u8; 16], [u8; 16])>(), 0..3),
        ) {
            let (mut be, mut raw) = (Delta::default(), Delta::default());
            // A 16-bit field read raw: as the machine reads its two bytes
            // (swapped on a little-endian machine, as is on a big-endian
            // one, like the checksum below).
            let raw16 = |v: u16| u16::from_ne_bytes(v.to_be_bytes());
            for &(old, new) in &words {
                be = be.change16(old, new);
                raw = raw.change16(raw16(old), raw16(new));
            }
            for &(old, new) in &longs {
                be = be.change32(old, new);
                // A 32-bit field read raw: its two words, each swapped, in
                // the order the machine puts them.
                let swap = |v: u32| u32::from_ne_bytes(v.to_be_bytes());
                raw = raw.change32(swap(old), swap(new));
            }
            for &(old, new) in &addrs {
                be = be.change128(Ipv6Addr::from(old), Ipv6Addr::from(new));
                raw = raw.change128_raw(u128::from_ne_bytes(old), u128::from_ne_bytes(new));
            }
            let want = be.apply(check);
            let got = raw.apply(raw16(check));
            prop_assert_eq!(got, raw16(want));
        }

        /// `checksum_raw` is `checksum` read in the machine's byte order,
        /// for blocks of any length.
        #[test]
        fn checksum_raw_is_checksum_read_raw(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(
                checksum_raw(&data),
                u16::from_ne_bytes(checksum(&data).to_be_bytes())
            );
        }

        /// `is_valid` agrees with the checksum computed the long way, for
        /// blocks of any length, whether or not their checksum is right.
        #[test]
        fn is_valid_agrees_with_checksum(mut data in proptest::collection::vec(any::<u8>(), 2..64), fix in any::<bool>()) {
            if fix {
                data[0] = 0;
                data[1] = 0;
                let c = checksum(&data);
                data[0..2].copy_from_slice(&c.to_be_bytes());
            }
            prop_assert_eq!(is_valid(&data), checksum(&data) == 0);
            let header = &mut data.clone();
            header.resize(20, 7);
            header[10] = 0;
            header[11] = 0;
            let c = checksum(header);
            header[10..12].copy_from_slice(&c.to_be_bytes());
            prop_assert!(is_valid(header));
            header[3] ^= 1;
            prop_assert_eq!(is_valid(header), checksum(header) == 0);
        }
    }

    /// `0x0000` and `0xffff` are the two ones-complement zeros; an incremental update may
    /// give the one a full recomputation does not (see [`update16`]).
    fn norm(c: u16) -> u16 {
        if c == 0xffff {
            0
        } else {
            c
        }
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3 example: sum of these words is 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn odd_length_is_zero_padded() {
        assert_eq!(sum(&[0x12]), 0x1200);
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        assert_eq!(checksum(&[]), 0xffff);
    }

    #[test]
    fn ipv4_header_checksum() {
        // IPv4 header 198.18.0.1 -> 198.18.0.2, ICMP, checksum 0xefb9 at 10..12.
        let mut hdr = [
            0x45, 0x00, 0x00, 0x2c, 0xbe, 0xef, 0x40, 0x00, 0x40, 0x01, 0xef, 0xb9, 0xc6, 0x12,
            0x00, 0x01, 0xc6, 0x12, 0x00, 0x02,
        ];
        assert_eq!(checksum(&hdr), 0);
        hdr[10] = 0;
        hdr[11] = 0;
        assert_eq!(checksum(&hdr), 0xefb9);
    }

    #[test]
    fn pseudo_header() {
        let s = pseudo_header_sum(
            Ipv4Addr::new(198, 18, 0, 1),
            Ipv4Addr::new(198, 18, 0, 2),
            17,
            18,
        );
        assert_eq!(s, 0xc612 + 0x0001 + 0xc612 + 0x0002 + 17 + 18);
    }

    #[test]
    fn incremental_ttl_decrement() {
        let mut hdr = [
            0x45, 0x00, 0x00, 0x2c, 0xbe, 0xef, 0x40, 0x00, 0x40, 0x01, 0xef, 0xb9, 0xc6, 0x12,
            0x00, 0x01, 0xc6, 0x12, 0x00, 0x02,
        ];
        let old = u16::from_be_bytes([hdr[8], hdr[9]]);
        hdr[8] -= 1;
        let new = u16::from_be_bytes([hdr[8], hdr[9]]);
        let c = update16(0xefb9, old, new);
        hdr[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(checksum(&hdr), 0);
        assert_eq!(c, 0xf0b9);
    }

    /// Even-length data, an even offset with room for a `width`-byte field.
    fn data_and_offset(width: usize) -> impl Strategy<Value = (Vec<u8>, usize)> {
        (width / 2..400usize)
            .prop_flat_map(move |words| {
                (
                    proptest::collection::vec(any::<u8>(), words * 2),
                    0..=(words - width / 2),
                )
            })
            .prop_map(|(data, word)| (data, word * 2))
    }

    proptest! {
        /// One fold in `Delta::apply` gives exactly what folding the
        /// changes first and the sum again did, zeros included.
        #[test]
        fn delta_apply_is_the_two_fold_formula(
            check in any::<u16>(),
            words in proptest::collection::vec(any::<(u16, u16)>(), 0..6),
            addrs in proptest::collection::vec(any::<(u128, u128)>(), 0..3),
        ) {
            let mut d = Delta::default();
            for (old, new) in words {
                d = d.change16(old, new);
            }
            for (old, new) in addrs {
                d = d.change128(Ipv6Addr::from(old), Ipv6Addr::from(new));
            }
            prop_assert_eq!(d.apply(check), !fold(u32::from(!check) + fold(d.0) as u32));
        }
    }

    proptest! {
        #[test]
        fn update16_matches_full_recompute((mut data, off) in data_and_offset(2), new in any::<u16>()) {
            let before = checksum(&data);
            let old = u16::from_be_bytes([data[off], data[off + 1]]);
            data[off..off + 2].copy_from_slice(&new.to_be_bytes());
            let after = checksum(&data);
            prop_assert_eq!(norm(update16(before, old, new)), norm(after));
            // The incremental result is never 0xffff unless the data is all zero.
            if data.iter().any(|&b| b != 0) {
                prop_assert_eq!(update16(before, old, new), after);
            }
        }

        #[test]
        fn update32_matches_full_recompute((mut data, off) in data_and_offset(4), new in any::<u32>()) {
            let before = checksum(&data);
            let old = u32::from_be_bytes([data[off], data[off + 1], data[off + 2], data[off + 3]]);
            data[off..off + 4].copy_from_slice(&new.to_be_bytes());
            let after = checksum(&data);
            prop_assert_eq!(norm(update32(before, old, new)), norm(after));
            if data.iter().any(|&b| b != 0) {
                prop_assert_eq!(update32(before, old, new), after);
            }
        }

        /// The field holding the checksum is itself part of the data (as in a real header):
        /// after an incremental update the data must still verify.
        #[test]
        fn update_keeps_embedded_checksum_valid(
            (mut data, off) in data_and_offset(4),
            check_word in any::<prop::sample::Index>(),
            new in any::<u32>(),
        ) {
            prop_assume!(data.len() >= 6);
            let words = data.len() / 2;
            // Pick a checksum word that does not overlap the changed field.
            let cw = (0..words).filter(|w| w * 2 + 1 < off || w * 2 >= off + 4).collect::<Vec<_>>();
            prop_assume!(!cw.is_empty());
            let c_at = cw[check_word.index(cw.len())] * 2;
            data[c_at] = 0;
            data[c_at + 1] = 0;
            let c = checksum(&data);
            data[c_at..c_at + 2].copy_from_slice(&c.to_be_bytes());
            prop_assert_eq!(checksum(&data), 0);
            let old = u32::from_be_bytes([data[off], data[off + 1], data[off + 2], data[off + 3]]);
            data[off..off + 4].copy_from_slice(&new.to_be_bytes());
            let c2 = update32(c, old, new);
            data[c_at..c_at + 2].copy_from_slice(&c2.to_be_bytes());
            prop_assert_eq!(norm(checksum(&data)), 0);
        }

        #[test]
        fn sum_of_parts_equals_sum_of_whole(data in proptest::collection::vec(any::<u8>(), 0..300), split in any::<prop::sample::Index>()) {
            // Splitting at an even offset must not change the checksum.
            let at = split.index(data.len() / 2 + 1) * 2;
            let (a, b) = data.split_at(at);
            prop_assert_eq!(norm(!fold(sum(a) + sum(b))), norm(checksum(&data)));
        }

        /// `new_checked` never panics on arbitrary bytes, and neither does any accessor of
        /// a view it accepted.
        #[test]
        fn new_checked_never_panics(data in proptest::collection::vec(any::<u8>(), 0..128)) {
            use crate::wire::*;
            let a = Ipv4Addr::new(10, 0, 0, 1);
            let b = Ipv4Addr::new(10, 0, 0, 2);
            if let Ok(p) = EthernetFrame::new_checked(&data[..]) {
                let _ = (p.dst_addr(), p.src_addr(), p.ethertype(), p.payload().len());
                let _ = EthernetRepr::parse(&p);
            }
            if let Ok(p) = ArpPacket::new_checked(&data[..]) {
                let _ = (p.hardware_type(), p.protocol_type(), p.hardware_len(), p.protocol_len());
                let _ = (p.operation(), p.source_hardware_addr(), p.source_protocol_addr());
                let _ = (p.target_hardware_addr(), p.target_protocol_addr());
                let _ = ArpRepr::parse(&p);
            }
            if let Ok(p) = Ipv4Packet::new_checked(&data[..]) {
                let _ = (p.version(), p.header_len(), p.dscp_ecn(), p.total_len(), p.ident());
                let _ = (p.dont_fragment(), p.more_fragments(), p.frag_offset(), p.is_fragment());
                let _ = (p.ttl(), p.protocol(), p.checksum(), p.src_addr(), p.dst_addr());
                let _ = (p.options().len(), p.payload().len(), p.verify_checksum());
                if let Ok(r) = Ipv4Repr::parse(&p) {
                    prop_assert_eq!(r.payload_len, p.payload().len());
                }
            }
            if let Ok(p) = Icmpv4Packet::new_checked(&data[..]) {
                let _ = (p.msg_type(), p.code(), p.checksum(), p.echo_ident(), p.echo_seq());
                let _ = (p.next_hop_mtu(), p.payload().len(), p.verify_checksum());
            }
            if let Ok(p) = TcpPacket::new_checked(&data[..]) {
                let _ = (p.src_port(), p.dst_port(), p.seq_number(), p.ack_number());
                let _ = (p.header_len(), p.flags(), p.window(), p.checksum(), p.urgent());
                let _ = (p.options().len(), p.payload().len(), p.verify_checksum(a, b));
            }
            if let Ok(p) = UdpPacket::new_checked(&data[..]) {
                let _ = (p.src_port(), p.dst_port(), p.len(), p.checksum());
                let _ = (p.payload().len(), p.verify_checksum(a, b));
            }
        }
    }

    /// The RFC 8200 §8.1 pseudo header written out as bytes.
    fn pseudo_v6_bytes(src: Ipv6Addr, dst: Ipv6Addr, nh: u8, len: u32) -> [u8; 40] {
        let mut b = [0u8; 40];
        b[..16].copy_from_slice(&src.octets());
        b[16..32].copy_from_slice(&dst.octets());
        b[32..36].copy_from_slice(&len.to_be_bytes());
        b[39] = nh;
        b
    }

    #[test]
    fn pseudo_header_v6() {
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let s = pseudo_header_sum_v6(src, dst, 6, 20);
        assert_eq!(s, 0x2001 + 0x0db8 + 1 + 0x2001 + 0x0db8 + 2 + 20 + 6);
        assert_eq!(s, sum(&pseudo_v6_bytes(src, dst, 6, 20)));
        // A length above 65535 (a jumbogram) counts both halves.
        let big = pseudo_header_sum_v6(src, dst, 17, 0x0001_0002);
        assert_eq!(big, sum(&pseudo_v6_bytes(src, dst, 17, 0x0001_0002)));
        // All-ones addresses still fold to 16 bits.
        let ones = Ipv6Addr::from(u128::MAX);
        assert!(pseudo_header_sum_v6(ones, ones, 255, u32::MAX) <= 0xffff);
    }

    /// A TCP segment over IPv6 (from the scapy fixture in `ipv6.rs`): its
    /// checksum verifies with the v6 pseudo header, and a NAT66 rewrite of
    /// both addresses patched with `update128` equals a recomputation.
    #[test]
    fn nat66_rewrite_of_a_real_segment() {
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
        // scapy: TCP(sport=40000, dport=80, flags="S", seq=0x01020304,
        // window=64240, options=[]) under IPv6(src=src, dst=dst).
        let mut seg = [
            0x9c, 0x40, 0x00, 0x50, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x00, 0x50, 0x02,
            0xfa, 0xf0, 0xb8, 0xe6, 0x00, 0x00,
        ];
        let full = |s: Ipv6Addr, d: Ipv6Addr, seg: &[u8]| {
            !fold(pseudo_header_sum_v6(s, d, 6, seg.len() as u32) + sum(seg))
        };
        assert_eq!(full(src, dst, &seg), 0);
        let new_dst: Ipv6Addr = "fd00:10::7".parse().unwrap();
        let new_src: Ipv6Addr = "fd00:20::1:2".parse().unwrap();
        let c = u16::from_be_bytes([seg[16], seg[17]]);
        let c = update128(update128(c, dst, new_dst), src, new_src);
        seg[16..18].copy_from_slice(&c.to_be_bytes());
        assert_eq!(full(new_src, new_dst, &seg), 0);
        seg[16..18].copy_from_slice(&[0, 0]);
        assert_eq!(c, full(new_src, new_dst, &seg));
    }

    /// Found by the `wire` fuzz target: an address whose 32-bit words sum to
    /// `0x1_ffff_ffff` carries out of the first fold; one round of folding
    /// lost that carry and `update128` came out one short.
    #[test]
    fn update128_carry_out_of_the_first_fold() {
        let old: Ipv6Addr = "ffff:ffff:ffff:ffff:0:1::".parse().unwrap();
        let new: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let mut data = [0x5au8; 40];
        data[8..24].copy_from_slice(&old.octets());
        assert_eq!(sum128(old), sum(&old.octets()));
        let before = checksum(&data);
        data[8..24].copy_from_slice(&new.octets());
        assert_eq!(update128(before, old, new), checksum(&data));
        assert_eq!(update128(checksum(&data), new, old), before);
    }

    proptest! {
        /// The word sum of an address equals the byte sum of its octets.
        #[test]
        fn sum128_matches_sum(a in any::<u128>(), words in any::<[bool; 8]>()) {
            // Push some words to 0xffff, where carries pile up.
            let mut a = a;
            for (i, full) in words.iter().enumerate() {
                if *full {
                    a |= 0xffff << (16 * i);
                }
            }
            let addr = Ipv6Addr::from(a);
            prop_assert_eq!(sum128(addr), sum(&addr.octets()));
        }

        #[test]
        fn update128_matches_full_recompute((mut data, off) in data_and_offset(16), new in any::<u128>()) {
            let new = Ipv6Addr::from(new);
            let before = checksum(&data);
            let old = Ipv6Addr::from(<[u8; 16]>::try_from(&data[off..off + 16]).unwrap());
            data[off..off + 16].copy_from_slice(&new.octets());
            let after = checksum(&data);
            prop_assert_eq!(norm(update128(before, old, new)), norm(after));
            if data.iter().any(|&b| b != 0) {
                prop_assert_eq!(update128(before, old, new), after);
            }
            prop_assert_eq!(Delta::default().change128(old, new).apply(before), update128(before, old, new));
        }

        /// Addresses chosen to hit the folding corners: all zeros, all
        /// ones, and words that sum to a multiple of 0xffff.
        #[test]
        fn update128_corner_addresses(
            (mut data, off) in data_and_offset(16),
            pick_old in 0..4usize,
            pick_new in 0..4usize,
            any_addr in any::<u128>(),
        ) {
            let corners = [0u128, u128::MAX, 0xffff_0000_ffff_0000_ffff_0000_ffff_0000, any_addr];
            let old = Ipv6Addr::from(corners[pick_old]);
            let new = Ipv6Addr::from(corners[pick_new]);
            data[off..off + 16].copy_from_slice(&old.octets());
            let before = checksum(&data);
            data[off..off + 16].copy_from_slice(&new.octets());
            let after = checksum(&data);
            prop_assert_eq!(norm(update128(before, old, new)), norm(after));
        }

        /// The pseudo-header sum equals the sum of its bytes.
        #[test]
        fn pseudo_header_v6_matches_bytes(src in any::<u128>(), dst in any::<u128>(), nh in any::<u8>(), len in any::<u32>()) {
            let (src, dst) = (Ipv6Addr::from(src), Ipv6Addr::from(dst));
            prop_assert_eq!(
                norm(!fold(pseudo_header_sum_v6(src, dst, nh, len))),
                norm(checksum(&pseudo_v6_bytes(src, dst, nh, len)))
            );
        }

        /// An IPv6 address changed in the pseudo header of a checksummed
        /// segment: the patched checksum verifies against the new pseudo
        /// header, as a NAT66 rewrite needs.
        #[test]
        fn update128_in_pseudo_header(seg in proptest::collection::vec(any::<u8>(), 8..200), a in any::<u128>(), b in any::<u128>(), c in any::<u128>()) {
            let (a, b, c) = (Ipv6Addr::from(a), Ipv6Addr::from(b), Ipv6Addr::from(c));
            let len = seg.len() as u32;
            let mut seg = seg;
            seg[6] = 0;
            seg[7] = 0;
            let check = !fold(pseudo_header_sum_v6(a, b, 17, len) + sum(&seg));
            let patched = update128(check, b, c);
            seg[6..8].copy_from_slice(&patched.to_be_bytes());
            prop_assert_eq!(norm(!fold(pseudo_header_sum_v6(a, c, 17, len) + sum(&seg))), 0);
        }
    }

    proptest! {
        /// A fused delta equals the field-by-field updates.
        #[test]
        fn delta_equals_successive_updates(check: u16, a: u32, b: u32, p: u16, q: u16, t: u16, u: u16, x: u128, y: u128) {
            let (x, y) = (Ipv6Addr::from(x), Ipv6Addr::from(y));
            let fused = Delta::default().change32(a, b).change16(p, q).change16(t, u).change128(x, y).apply(check);
            let one_by_one = update128(update16(update16(update32(check, a, b), p, q), t, u), x, y);
            // 0x0000 and 0xffff are the same ones-complement number.
            let norm = |c: u16| if c == 0xffff { 0 } else { c };
            prop_assert_eq!(norm(fused), norm(one_by_one));
        }
    }
}
