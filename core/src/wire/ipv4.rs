//! IPv4 (RFC 791): a zero-copy [`Ipv4Packet`] view and an owned [`Ipv4Repr`].
//!
//! `new_checked` validates version, IHL and total length against the buffer once; after
//! that no accessor panics. Bytes past `total_len` (Ethernet padding) are ignored.

use core::fmt;
use core::ops::Range;
use std::net::Ipv4Addr;

use super::checksum;
use super::{
    read_raw_u16, read_raw_u32, read_u16, read_u32, write_raw_u16, write_u16, write_u32, Error,
    Result,
};

/// The IP protocol number: the IPv4 `protocol` field and the IPv6 `next header`
/// field, which share one IANA registry (so IPv6 extension headers are named here
/// too). The number itself, so that reading it from a header and using it in a
/// flow key cost nothing (as an enum with an `Unknown(u8)` variant, each
/// conversion was a match over every name, several per packet); the names are
/// constants, which patterns match as they matched the enum's variants.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpProtocol(pub u8);

#[allow(non_upper_case_globals)]
impl IpProtocol {
    /// 0, the IPv6 Hop-by-Hop Options header.
    pub const HopByHop: IpProtocol = IpProtocol(0);
    /// 1.
    pub const Icmp: IpProtocol = IpProtocol(1);
    /// 4, IPv4-in-IPv4 encapsulation (VS/TUN), also IPv4-in-IPv6.
    pub const IpIp: IpProtocol = IpProtocol(4);
    /// 6.
    pub const Tcp: IpProtocol = IpProtocol(6);
    /// 17.
    pub const Udp: IpProtocol = IpProtocol(17);
    /// 41, IPv6 encapsulation (6in4, 6in6).
    pub const Ipv6: IpProtocol = IpProtocol(41);
    /// 43, the IPv6 Routing header.
    pub const Ipv6Route: IpProtocol = IpProtocol(43);
    /// 44, the IPv6 Fragment header.
    pub const Ipv6Frag: IpProtocol = IpProtocol(44);
    /// 58, ICMP for IPv6.
    pub const Icmpv6: IpProtocol = IpProtocol(58);
    /// 59, IPv6 "no next header".
    pub const Ipv6NoNxt: IpProtocol = IpProtocol(59);
    /// 60, the IPv6 Destination Options header.
    pub const Ipv6Opts: IpProtocol = IpProtocol(60);

    /// The name of a protocol this module names, for Debug and Display.
    fn name(self) -> Option<(&'static str, &'static str)> {
        Some(match self {
            IpProtocol::HopByHop => ("HopByHop", "IPv6 hop-by-hop"),
            IpProtocol::Icmp => ("Icmp", "ICMP"),
            IpProtocol::IpIp => ("IpIp", "IPIP"),
            IpProtocol::Tcp => ("Tcp", "TCP"),
            IpProtocol::Udp => ("Udp", "UDP"),
            IpProtocol::Ipv6 => ("Ipv6", "IPv6"),
            IpProtocol::Ipv6Route => ("Ipv6Route", "IPv6 routing"),
            IpProtocol::Ipv6Frag => ("Ipv6Frag", "IPv6 fragment"),
            IpProtocol::Icmpv6 => ("Icmpv6", "ICMPv6"),
            IpProtocol::Ipv6NoNxt => ("Ipv6NoNxt", "IPv6 no next header"),
            IpProtocol::Ipv6Opts => ("Ipv6Opts", "IPv6 destination options"),
            _ => return None,
        })
    }
}

impl From<u8> for IpProtocol {
    #[inline(always)]
    fn from(value: u8) -> Self {
        IpProtocol(value)
    }
}

impl From<IpProtocol> for u8 {
    #[inline(always)]
    fn from(value: IpProtocol) -> Self {
        value.0
    }
}

/// As the enum this was printed: `Tcp`, `Unknown(47)`.
impl fmt::Debug for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some((name, _)) => f.write_str(name),
            None => write!(f, "Unknown({})", self.0),
        }
    }
}

impl fmt::Display for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some((_, text)) => f.write_str(text),
            None => write!(f, "proto {}", self.0),
        }
    }
}

mod field {
    use super::Range;

    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
}

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

/// The TTL of every packet this appliance originates (echo replies, ICMP
/// errors, IPIP outer headers), as Linux uses.
pub const DEFAULT_TTL: u8 = 64;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A read/write view of an IPv4 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps `buffer` without checking it; accessors may panic.
    pub const fn new_unchecked(buffer: T) -> Ipv4Packet<T> {
        Ipv4Packet { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Ipv4Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that no accessor will panic:
    /// `Truncated` if the buffer is shorter than 20 bytes, than the header length or than
    /// the total length; `Malformed` if the version is not 4, the IHL is below 5, or the
    /// total length is below the header length. Bytes past the total length are allowed.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        self.check_header_len()?;
        let total_len = usize::from(self.total_len());
        if total_len < self.header_len() {
            return Err(Error::Malformed);
        }
        if total_len > self.buffer.as_ref().len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Wraps the header of a packet quoted inside an ICMP error after
    /// [`check_header_len`](Self::check_header_len): the quote is cut short,
    /// so its total length may exceed the buffer, and [`payload`](Self::payload)
    /// then ends at the end of the buffer.
    pub fn new_checked_header(buffer: T) -> Result<Ipv4Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_header_len()?;
        Ok(packet)
    }

    /// Checks the header alone: `Truncated` if the buffer is shorter than 20
    /// bytes or than the header length; `Malformed` if the version is not 4
    /// or the IHL is below 5. The total length is not looked at.
    #[inline]
    pub fn check_header_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 4 {
            return Err(Error::Malformed);
        }
        let header_len = self.header_len();
        if header_len < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if header_len > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Where the payload ends: the total length, or the end of the buffer
    /// when the packet is a cut-short quote.
    #[inline]
    fn payload_end(&self) -> usize {
        usize::from(self.total_len())
            .min(self.buffer.as_ref().len())
            .max(self.header_len())
    }

    /// Version (4).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4), including options.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The DSCP/ECN byte (formerly TOS).
    #[inline]
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// Total length: header plus payload.
    #[inline]
    pub fn total_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::IDENT.start)
    }

    #[inline]
    fn flags_offset(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::FLG_OFF.start)
    }

    /// The Don't Fragment flag.
    #[inline]
    pub fn dont_fragment(&self) -> bool {
        self.flags_offset() & FLAG_DF != 0
    }

    /// The More Fragments flag.
    #[inline]
    pub fn more_fragments(&self) -> bool {
        self.flags_offset() & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field times 8).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.flags_offset() & OFFSET_MASK) << 3
    }

    /// Whether this is a fragment (MF set or a non-zero offset).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.flags_offset() & (FLAG_MF | OFFSET_MASK) != 0
    }

    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Protocol of the payload.
    #[inline]
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::PROTOCOL])
    }

    /// Header checksum.
    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(read_u32(self.buffer.as_ref(), field::SRC_ADDR.start))
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(read_u32(self.buffer.as_ref(), field::DST_ADDR.start))
    }

    /// The source address in the machine's byte order, for checksum
    /// arithmetic ([`checksum::Delta`]: "raw" words).
    #[inline]
    pub fn src_addr_raw(&self) -> u32 {
        read_raw_u32(self.buffer.as_ref(), field::SRC_ADDR.start)
    }

    /// The destination address in the machine's byte order, as
    /// [`Self::src_addr_raw`].
    #[inline]
    pub fn dst_addr_raw(&self) -> u32 {
        read_raw_u32(self.buffer.as_ref(), field::DST_ADDR.start)
    }

    /// The header checksum in the machine's byte order, as
    /// [`Self::src_addr_raw`].
    #[inline]
    pub fn checksum_raw(&self) -> u16 {
        read_raw_u16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// Options: bytes 20..header_len.
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// Payload: bytes header_len..total_len (excludes link-layer padding; a
    /// quote ends at the end of the buffer).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let range = self.header_len()..self.payload_end();
        &self.buffer.as_ref()[range]
    }

    /// Whether the header checksum is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::is_valid(&self.buffer.as_ref()[..self.header_len()])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets the version.
    #[inline]
    pub fn set_version(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (value << 4);
    }

    /// Sets the header length in bytes (a multiple of 4, 20..=60).
    #[inline]
    pub fn set_header_len(&mut self, value: usize) {
        debug_assert!(value & 3 == 0 && (HEADER_LEN..=60).contains(&value));
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((value / 4) as u8 & 0x0f);
    }

    /// Sets the DSCP/ECN byte.
    #[inline]
    pub fn set_dscp_ecn(&mut self, value: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = value;
    }

    /// Sets the total length.
    #[inline]
    pub fn set_total_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH.start, value);
    }

    /// Sets the identification.
    #[inline]
    pub fn set_ident(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::IDENT.start, value);
    }

    /// The flags and fragment offset word whole (reserved bit included).
    #[inline]
    pub fn set_flags_offset(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::FLG_OFF.start, value);
    }

    /// Clears all three flag bits (including the reserved one), keeping the offset.
    #[inline]
    pub fn clear_flags(&mut self) {
        let v = self.flags_offset() & OFFSET_MASK;
        self.set_flags_offset(v);
    }

    /// Sets or clears the Don't Fragment flag.
    #[inline]
    pub fn set_dont_fragment(&mut self, value: bool) {
        let v = self.flags_offset() & !FLAG_DF;
        self.set_flags_offset(if value { v | FLAG_DF } else { v });
    }

    /// Sets or clears the More Fragments flag.
    #[inline]
    pub fn set_more_fragments(&mut self, value: bool) {
        let v = self.flags_offset() & !FLAG_MF;
        self.set_flags_offset(if value { v | FLAG_MF } else { v });
    }

    /// Sets the fragment offset, given in bytes (a multiple of 8).
    #[inline]
    pub fn set_frag_offset(&mut self, value: u16) {
        debug_assert!(value & 7 == 0);
        let v = (self.flags_offset() & !OFFSET_MASK) | (value >> 3);
        self.set_flags_offset(v);
    }

    /// Sets the time to live.
    #[inline]
    pub fn set_ttl(&mut self, value: u8) {
        self.buffer.as_mut()[field::TTL] = value;
    }

    /// Sets the protocol.
    #[inline]
    pub fn set_protocol(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = value.into();
    }

    /// Sets the header checksum.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM.start, value);
    }

    /// Sets the header checksum from a value in the machine's byte order
    /// ([`Self::checksum_raw`]).
    #[inline]
    pub fn set_checksum_raw(&mut self, value: u16) {
        write_raw_u16(self.buffer.as_mut(), field::CHECKSUM.start, value);
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, value: Ipv4Addr) {
        write_u32(self.buffer.as_mut(), field::SRC_ADDR.start, value.into());
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, value: Ipv4Addr) {
        write_u32(self.buffer.as_mut(), field::DST_ADDR.start, value.into());
    }

    /// Mutable options.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let range = HEADER_LEN..self.header_len();
        &mut self.buffer.as_mut()[range]
    }

    /// Mutable payload (as [`payload`](Self::payload)).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..self.payload_end();
        &mut self.buffer.as_mut()[range]
    }

    /// Decrements the TTL (wrapping) and returns the TTL/protocol word
    /// before and after, for an incremental checksum update; the word is
    /// read and written once, so no load waits on the byte store.
    #[inline(always)]
    pub fn decrement_ttl(&mut self) -> (u16, u16) {
        let old = read_u16(self.buffer.as_ref(), field::TTL);
        let new = old.wrapping_sub(0x0100);
        write_u16(self.buffer.as_mut(), field::TTL, new);
        (old, new)
    }

    /// [`Self::decrement_ttl`], the TTL-and-protocol word before and after
    /// in the machine's byte order ([`Self::checksum_raw`]).
    #[inline]
    pub fn decrement_ttl_raw(&mut self) -> (u16, u16) {
        let b = self.buffer.as_ref();
        let (ttl, protocol) = (b[field::TTL], b[field::PROTOCOL]);
        let old = u16::from_ne_bytes([ttl, protocol]);
        let new = u16::from_ne_bytes([ttl.wrapping_sub(1), protocol]);
        write_raw_u16(self.buffer.as_mut(), field::TTL, new);
        (old, new)
    }

    /// Computes and writes the header checksum.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        // Summed and written in the machine's byte order: the same bytes,
        // without a swap per word (`checksum::checksum_raw`).
        let c = checksum::checksum_raw(&self.buffer.as_ref()[..self.header_len()]);
        self.set_checksum_raw(c);
    }
}

/// An owned IPv4 header without options, for packets this appliance originates (ICMP
/// errors, IPIP outer headers). Parsing drops options and fragmentation state and does
/// not verify the checksum (use [`Ipv4Packet::verify_checksum`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Payload protocol.
    pub protocol: IpProtocol,
    /// Payload length in bytes (total length minus header length).
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// The Don't Fragment flag.
    pub dont_fragment: bool,
    /// Identification.
    pub ident: u16,
    /// DSCP/ECN byte.
    pub dscp_ecn: u8,
}

impl Ipv4Repr {
    /// Reads the header of a packet.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Ipv4Repr> {
        packet.check_len()?;
        Ok(Ipv4Repr {
            src: packet.src_addr(),
            dst: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: usize::from(packet.total_len()) - packet.header_len(),
            ttl: packet.ttl(),
            dont_fragment: packet.dont_fragment(),
            ident: packet.ident(),
            dscp_ecn: packet.dscp_ecn(),
        })
    }

    /// Length of the emitted header (20).
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Length of the whole packet: header plus payload.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes a 20-byte header with a correct checksum; the payload is left alone.
    ///
    /// # Panics
    /// If the buffer is shorter than 20 bytes. `payload_len` must be at most
    /// 65535 - 20 (checked in debug builds).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv4Packet<T>) {
        debug_assert!(self.payload_len <= usize::from(u16::MAX) - HEADER_LEN);
        packet.set_version(4);
        packet.set_header_len(HEADER_LEN);
        packet.set_dscp_ecn(self.dscp_ecn);
        packet.set_total_len(self.buffer_len() as u16);
        packet.set_ident(self.ident);
        packet.set_flags_offset(if self.dont_fragment { FLAG_DF } else { 0 });
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src);
        packet.set_dst_addr(self.dst);
        packet.fill_checksum();
    }
}

/// Writes over `outer` the IPIP header (protocol 4, TTL 64, from `src` to
/// `dst`, `total_len` long) that wraps the IPv4 packet whose header is
/// `inner`: its DSCP/ECN, identification and DF copied, as RFC 2003 has it.
/// The same bytes as [`Ipv4Repr::emit`] with those fields, made in
/// registers from two words of `inner`, summed there in the machine's byte
/// order (see [`checksum::Delta`]) and stored once each: built as bytes
/// and summed back from memory, it cost twice the instructions and a
/// store-forwarding stall on every TUN packet.
#[inline(always)]
pub fn emit_ipip_outer(
    outer: &mut [u8; HEADER_LEN],
    inner: &[u8; HEADER_LEN],
    total_len: u16,
    src: Ipv4Addr,
    dst: Ipv4Addr,
) {
    // The machine's reading of four bytes.
    let word = |b: [u8; 4]| u32::from_ne_bytes(b);
    let inner0 = word([inner[0], inner[1], inner[2], inner[3]]);
    let inner1 = word([inner[4], inner[5], inner[6], inner[7]]);
    let [l0, l1] = total_len.to_be_bytes();
    let df = (FLAG_DF >> 8) as u8;
    // Version and header length, the inner DSCP/ECN, the total length;
    // the inner identification and DF; TTL and protocol.
    let w0 = (inner0 & word([0, 0xff, 0, 0])) | word([0x45, 0, l0, l1]);
    let w1 = inner1 & word([0xff, 0xff, df, 0]);
    let w2 = word([DEFAULT_TTL, u8::from(IpProtocol::IpIp), 0, 0]);
    let (w3, w4) = (word(src.octets()), word(dst.octets()));
    let sum = u64::from(w0) + u64::from(w1) + u64::from(w2) + u64::from(w3) + u64::from(w4);
    let sum = (sum & 0xffff_ffff) + (sum >> 32);
    let sum = (sum & 0xffff_ffff) + (sum >> 32);
    let [c0, c1] = (!checksum::fold(sum as u32)).to_ne_bytes();
    let w2 = w2 | word([0, 0, c0, c1]);
    for (at, w) in [w0, w1, w2, w3, w4].into_iter().enumerate() {
        outer[4 * at..4 * at + 4].copy_from_slice(&w.to_ne_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ICMP echo request 198.18.0.1 -> 198.18.0.2, ident 0xbeef, DF, TTL 64, with a 24-byte
    /// ICMP message (ident 0x1234, seq 1, "abcdefghijklmnop").
    static PACKET: [u8; 44] = [
        0x45, 0x00, 0x00, 0x2c, 0xbe, 0xef, 0x40, 0x00, 0x40, 0x01, 0xef, 0xb9, 0xc6, 0x12, 0x00,
        0x01, 0xc6, 0x12, 0x00, 0x02, // header
        0x08, 0x00, 0xa2, 0x7f, 0x12, 0x34, 0x00, 0x01, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67,
        0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70,
    ];

    fn repr() -> Ipv4Repr {
        Ipv4Repr {
            src: Ipv4Addr::new(198, 18, 0, 1),
            dst: Ipv4Addr::new(198, 18, 0, 2),
            protocol: IpProtocol::Icmp,
            payload_len: 24,
            ttl: 64,
            dont_fragment: true,
            ident: 0xbeef,
            dscp_ecn: 0,
        }
    }

    #[test]
    fn deconstruct() {
        let p = Ipv4Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.dscp_ecn(), 0);
        assert_eq!(p.total_len(), 44);
        assert_eq!(p.ident(), 0xbeef);
        assert!(p.dont_fragment());
        assert!(!p.more_fragments());
        assert_eq!(p.frag_offset(), 0);
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), IpProtocol::Icmp);
        assert_eq!(p.checksum(), 0xefb9);
        assert_eq!(p.src_addr(), Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(198, 18, 0, 2));
        assert!(p.options().is_empty());
        assert_eq!(p.payload(), &PACKET[20..]);
        assert!(p.verify_checksum());
        assert_eq!(Ipv4Repr::parse(&p).unwrap(), repr());
    }

    #[test]
    fn construct() {
        let mut bytes = [0xa5u8; 44];
        let mut p = Ipv4Packet::new_unchecked(&mut bytes[..]);
        p.set_version(4);
        p.set_header_len(20);
        p.set_dscp_ecn(0);
        p.set_total_len(44);
        p.set_ident(0xbeef);
        p.clear_flags();
        p.set_dont_fragment(true);
        p.set_more_fragments(false);
        p.set_frag_offset(0);
        p.set_ttl(64);
        p.set_protocol(IpProtocol::Icmp);
        p.set_src_addr(Ipv4Addr::new(198, 18, 0, 1));
        p.set_dst_addr(Ipv4Addr::new(198, 18, 0, 2));
        p.fill_checksum();
        p.payload_mut().copy_from_slice(&PACKET[20..]);
        assert_eq!(p.into_inner(), &PACKET[..]);
    }

    #[test]
    fn emit_repr() {
        let mut bytes = [0xa5u8; 44];
        bytes[20..].copy_from_slice(&PACKET[20..]);
        let r = repr();
        assert_eq!(r.buffer_len(), 44);
        assert_eq!(r.header_len(), 20);
        r.emit(&mut Ipv4Packet::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, PACKET);
    }

    #[test]
    fn ethernet_padding_is_ignored() {
        let mut bytes = [0u8; 50];
        bytes[..44].copy_from_slice(&PACKET);
        let p = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.payload(), &PACKET[20..]);
    }

    #[test]
    fn options_and_fragments() {
        // Header with one 4-byte option (NOP NOP NOP EOL), MF set, offset 1480 bytes.
        let mut bytes = [0u8; 28];
        bytes[..20].copy_from_slice(&PACKET[..20]);
        let mut p = Ipv4Packet::new_unchecked(&mut bytes[..]);
        p.set_header_len(24);
        p.set_total_len(28);
        p.set_dont_fragment(false);
        p.set_more_fragments(true);
        p.set_frag_offset(1480);
        p.options_mut().copy_from_slice(&[1, 1, 1, 0]);
        p.payload_mut().copy_from_slice(&[9, 8, 7, 6]);
        p.fill_checksum();
        let p = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[1, 1, 1, 0]);
        assert_eq!(p.payload(), &[9, 8, 7, 6]);
        assert!(!p.dont_fragment() && p.more_fragments() && p.is_fragment());
        assert_eq!(p.frag_offset(), 1480);
        assert!(p.verify_checksum());
        let r = Ipv4Repr::parse(&p).unwrap();
        assert_eq!(r.payload_len, 4);
        // Last fragment: MF clear but offset non-zero is still a fragment.
        let mut bytes2 = bytes;
        let mut q = Ipv4Packet::new_unchecked(&mut bytes2[..]);
        q.set_more_fragments(false);
        assert!(q.is_fragment());
        q.set_frag_offset(0);
        assert!(!q.is_fragment());
    }

    #[test]
    fn bad_checksum_detected() {
        let mut bytes = PACKET;
        bytes[8] = 63; // ttl changed without fixing the checksum
        assert!(!Ipv4Packet::new_checked(&bytes[..])
            .unwrap()
            .verify_checksum());
    }

    #[test]
    fn incremental_nat_rewrite() {
        // Rewrite the destination as a NAT would and patch the checksum incrementally.
        let mut bytes = PACKET;
        let mut p = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        let old = p.dst_addr();
        let new = Ipv4Addr::new(10, 1, 2, 3);
        p.set_dst_addr(new);
        let c = checksum::update32(p.checksum(), old.into(), new.into());
        p.set_checksum(c);
        assert!(p.verify_checksum());
        let after = p.checksum();
        p.fill_checksum();
        assert_eq!(p.checksum(), after);
    }

    #[test]
    fn truncated() {
        for len in 0..PACKET.len() {
            assert_eq!(
                Ipv4Packet::new_checked(&PACKET[..len]),
                Err(Error::Truncated),
                "len {len}"
            );
        }
        // Header claims 24 bytes but only 20 are present.
        let mut bytes = PACKET;
        bytes[0] = 0x46;
        assert_eq!(Ipv4Packet::new_checked(&bytes[..20]), Err(Error::Truncated));
    }

    #[test]
    fn malformed() {
        let check = |f: &dyn Fn(&mut [u8; 44])| {
            let mut bytes = PACKET;
            f(&mut bytes);
            Ipv4Packet::new_checked(&bytes[..]).map(|_| ())
        };
        // IHL below 5.
        assert_eq!(check(&|b| b[0] = 0x44), Err(Error::Malformed));
        assert_eq!(check(&|b| b[0] = 0x40), Err(Error::Malformed));
        // Version 6.
        assert_eq!(check(&|b| b[0] = 0x65), Err(Error::Malformed));
        // Total length below header length.
        assert_eq!(check(&|b| b[3] = 19), Err(Error::Malformed));
        // Total length beyond the buffer.
        assert_eq!(check(&|b| b[3] = 45), Err(Error::Truncated));
        assert!(Ipv4Repr::parse(&Ipv4Packet::new_unchecked(&[0x65u8; 20][..])).is_err());
    }

    #[test]
    fn protocol_round_trip() {
        for v in 0..=255u8 {
            assert_eq!(u8::from(IpProtocol::from(v)), v);
        }
        assert_eq!(IpProtocol::from(4), IpProtocol::IpIp);
        assert_eq!(IpProtocol::from(47), IpProtocol(47));
        assert_eq!(IpProtocol::Udp.to_string(), "UDP");
        // Printed as the enum it was.
        assert_eq!(IpProtocol(47).to_string(), "proto 47");
        assert_eq!(format!("{:?}", IpProtocol::Tcp), "Tcp");
        assert_eq!(format!("{:?}", IpProtocol(47)), "Unknown(47)");
        assert_eq!(IpProtocol::from(58), IpProtocol::Icmpv6);
        assert_eq!(IpProtocol::from(41), IpProtocol::Ipv6);
        assert_eq!(IpProtocol::from(0), IpProtocol::HopByHop);
        assert_eq!(IpProtocol::Icmpv6.to_string(), "ICMPv6");
    }
}
