//! IPv6 (RFC 8200): a zero-copy [`Ipv6Packet`] view, an owned [`Ipv6Repr`] and
//! [`walk_ext_headers`], which finds the upper-layer header behind the extension headers.
//!
//! `new_checked` validates the version and the payload length against the buffer once;
//! after that no accessor panics. Bytes past `40 + payload length` (Ethernet padding) are
//! ignored. Jumbograms (RFC 2675: payload length 0 and a Hop-by-Hop jumbo option) are not
//! supported: a payload length of 0 is an empty payload.
//!
//! The extension-header walk is bounded ([`MAX_EXT_HEADERS`]) and refuses what a load
//! balancer must not forward by its upper-layer ports: fragments (the ports are only in
//! the first one) and routing headers that still have segments to visit (the destination
//! address is not the final one, so the pseudo header and the VIP are not what they seem).

use core::fmt;
use core::ops::Range;
use std::net::Ipv6Addr;

use super::{read_u16, read_u32, write_u16, write_u32, Error, IpProtocol, Result};

mod field {
    use super::Range;

    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Range<usize> = 8..24;
    pub const DST_ADDR: Range<usize> = 24..40;
}

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

/// The IPv6 minimum link MTU (RFC 8200 §5): every link carries a packet this long, so
/// ICMPv6 errors are cut to fit it.
pub const MIN_MTU: usize = 1280;

/// The hop limit of every packet this appliance originates (echo replies, ICMPv6
/// errors, tunnel outer headers), as Linux uses. NDP messages use 255 instead.
pub const DEFAULT_HOP_LIMIT: u8 = 64;

const FLOW_LABEL_MASK: u32 = 0x000f_ffff;

/// An address's 16 bytes as the machine reads them ([`Ipv6Packet::src_addr_raw`]).
#[inline]
fn raw_from_bytes(b: &[u8]) -> u128 {
    let b: [u8; 16] = b.try_into().expect("a 16-byte slice");
    u128::from_ne_bytes(b)
}

/// The IPv6 address in `data`, which must be exactly 16 bytes long (callers pass fixed
/// in-bounds ranges).
#[inline]
pub(crate) fn addr_from_bytes(data: &[u8]) -> Ipv6Addr {
    let b: [u8; 16] = data.try_into().expect("a 16-byte slice");
    Ipv6Addr::from(b)
}

/// A read/write view of an IPv6 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps `buffer` without checking it; accessors may panic.
    pub const fn new_unchecked(buffer: T) -> Ipv6Packet<T> {
        Ipv6Packet { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Ipv6Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that no accessor will panic: `Truncated` if the buffer is shorter than
    /// 40 bytes or than 40 + the payload length; `Malformed` if the version is not 6.
    /// Bytes past the payload length are allowed.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        self.check_header_len()?;
        if HEADER_LEN + usize::from(self.payload_len()) > self.buffer.as_ref().len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Wraps the header of a packet quoted inside an ICMPv6 error after
    /// [`check_header_len`](Self::check_header_len): the quote is cut short, so its
    /// payload length may exceed the buffer, and [`payload`](Self::payload) then ends at
    /// the end of the buffer.
    pub fn new_checked_header(buffer: T) -> Result<Ipv6Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_header_len()?;
        Ok(packet)
    }

    /// Checks the fixed header alone: `Truncated` if the buffer is shorter than 40
    /// bytes, `Malformed` if the version is not 6. The payload length is not looked at.
    #[inline]
    pub fn check_header_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 6 {
            return Err(Error::Malformed);
        }
        Ok(())
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Where the payload ends: 40 + the payload length, or the end of the buffer when
    /// the packet is a cut-short quote.
    #[inline]
    fn payload_end(&self) -> usize {
        (HEADER_LEN + usize::from(self.payload_len())).min(self.buffer.as_ref().len())
    }

    #[inline]
    fn ver_tc_flow(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::VER_TC_FLOW.start)
    }

    /// Version (6).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TC_FLOW.start] >> 4
    }

    /// Traffic class (DSCP and ECN).
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (self.ver_tc_flow() >> 20) as u8
    }

    /// Flow label (20 bits).
    #[inline]
    pub fn flow_label(&self) -> u32 {
        self.ver_tc_flow() & FLOW_LABEL_MASK
    }

    /// Payload length: everything after the fixed header, extension headers included.
    #[inline]
    pub fn payload_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// Next header: the first extension header or the upper-layer protocol.
    #[inline]
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::NXT_HDR])
    }

    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        addr_from_bytes(&self.buffer.as_ref()[field::SRC_ADDR])
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        addr_from_bytes(&self.buffer.as_ref()[field::DST_ADDR])
    }

    /// The source address in the machine's byte order, for checksum
    /// arithmetic (`checksum::Delta`: "raw" words).
    #[inline]
    pub fn src_addr_raw(&self) -> u128 {
        raw_from_bytes(&self.buffer.as_ref()[field::SRC_ADDR])
    }

    /// The destination address in the machine's byte order, as
    /// [`Self::src_addr_raw`].
    #[inline]
    pub fn dst_addr_raw(&self) -> u128 {
        raw_from_bytes(&self.buffer.as_ref()[field::DST_ADDR])
    }

    /// Payload: bytes 40..40 + payload length (excludes link-layer padding; a quote ends
    /// at the end of the buffer). Extension headers are part of it.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.payload_end()]
    }

    /// The upper-layer header behind the extension headers: see [`walk_ext_headers`].
    /// Its offset counts from the start of this packet.
    #[inline]
    pub fn upper_layer(&self) -> core::result::Result<UpperLayer, ExtHeaderError> {
        walk_ext_headers(self.next_header(), self.payload())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    #[inline]
    fn set_ver_tc_flow(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::VER_TC_FLOW.start, value);
    }

    /// Sets the version.
    #[inline]
    pub fn set_version(&mut self, value: u8) {
        let v = (self.ver_tc_flow() & 0x0fff_ffff) | (u32::from(value & 0x0f) << 28);
        self.set_ver_tc_flow(v);
    }

    /// Sets the traffic class.
    #[inline]
    pub fn set_traffic_class(&mut self, value: u8) {
        let v = (self.ver_tc_flow() & 0xf00f_ffff) | (u32::from(value) << 20);
        self.set_ver_tc_flow(v);
    }

    /// Sets the flow label (the low 20 bits of `value`).
    #[inline]
    pub fn set_flow_label(&mut self, value: u32) {
        debug_assert!(value <= FLOW_LABEL_MASK);
        let v = (self.ver_tc_flow() & !FLOW_LABEL_MASK) | (value & FLOW_LABEL_MASK);
        self.set_ver_tc_flow(v);
    }

    /// Sets the payload length.
    #[inline]
    pub fn set_payload_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH.start, value);
    }

    /// Sets the next header.
    #[inline]
    pub fn set_next_header(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[field::NXT_HDR] = value.into();
    }

    /// Sets the hop limit.
    #[inline]
    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = value;
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, value: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&value.octets());
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, value: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&value.octets());
    }

    /// Mutable payload (as [`payload`](Self::payload)).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = HEADER_LEN..self.payload_end();
        &mut self.buffer.as_mut()[range]
    }
}

/// An owned fixed IPv6 header, for packets this appliance originates (ICMPv6 messages,
/// tunnel outer headers). `next_header` is whatever the fixed header says (an extension
/// header's number if one follows); parsing reads the fixed header only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Repr {
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// Next header.
    pub next_header: IpProtocol,
    /// Payload length in bytes (everything after the 40-byte header).
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label (20 bits).
    pub flow_label: u32,
}

impl Ipv6Repr {
    /// Reads the fixed header of a packet.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv6Packet<T>) -> Result<Ipv6Repr> {
        packet.check_len()?;
        Ok(Ipv6Repr {
            src: packet.src_addr(),
            dst: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.payload_len()),
            hop_limit: packet.hop_limit(),
            traffic_class: packet.traffic_class(),
            flow_label: packet.flow_label(),
        })
    }

    /// Length of the emitted header (40).
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Length of the whole packet: header plus payload.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes the 40-byte fixed header; the payload is left alone.
    ///
    /// # Panics
    /// If the buffer is shorter than 40 bytes. `payload_len` must be at most 65535 and
    /// `flow_label` at most 20 bits (checked in debug builds).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv6Packet<T>) {
        debug_assert!(self.payload_len <= usize::from(u16::MAX));
        debug_assert!(self.flow_label <= FLOW_LABEL_MASK);
        packet.set_ver_tc_flow(
            (6 << 28) | (u32::from(self.traffic_class) << 20) | (self.flow_label & FLOW_LABEL_MASK),
        );
        packet.set_payload_len(self.payload_len as u16);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src);
        packet.set_dst_addr(self.dst);
    }
}

/// At most this many extension headers are skipped before the upper layer: a bound on
/// the work a crafted chain can cost (Linux forwards longer chains; real traffic rarely
/// has more than two).
pub const MAX_EXT_HEADERS: usize = 8;

/// Where the upper-layer header is: what [`walk_ext_headers`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UpperLayer {
    /// The upper-layer protocol (TCP, UDP, ICMPv6, an inner IP packet, ... or any
    /// number that is not an extension header this walk skips, e.g. ESP or AH).
    pub protocol: IpProtocol,
    /// Offset of the upper-layer header from the start of the IPv6 header (at least 40).
    /// It may equal the packet's end (an upper layer with no bytes): the upper layer's
    /// own `new_checked` decides.
    pub offset: usize,
}

/// Why [`walk_ext_headers`] found no upper-layer header to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExtHeaderError {
    /// A Fragment header (44): the upper-layer header may not be in this packet.
    Fragment,
    /// A Routing header with segments left > 0: the destination is not the final one.
    RoutingSegmentsLeft,
    /// An extension header runs past the end of the payload.
    Truncated,
    /// A Hop-by-Hop header anywhere but first (RFC 8200 §4.1).
    Malformed,
    /// More than [`MAX_EXT_HEADERS`] extension headers.
    TooManyHeaders,
    /// No Next Header (59): nothing follows.
    NoNextHeader,
}

impl fmt::Display for ExtHeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExtHeaderError::Fragment => "IPv6 fragment",
            ExtHeaderError::RoutingSegmentsLeft => "IPv6 routing header with segments left",
            ExtHeaderError::Truncated => "truncated IPv6 extension header",
            ExtHeaderError::Malformed => "malformed IPv6 extension header chain",
            ExtHeaderError::TooManyHeaders => "too many IPv6 extension headers",
            ExtHeaderError::NoNextHeader => "IPv6 no next header",
        })
    }
}

impl std::error::Error for ExtHeaderError {}

impl From<ExtHeaderError> for Error {
    /// `Truncated` stays `Truncated`; every other reason is `Malformed`.
    fn from(value: ExtHeaderError) -> Self {
        match value {
            ExtHeaderError::Truncated => Error::Truncated,
            _ => Error::Malformed,
        }
    }
}

/// Length of the smallest extension header (and the unit of their length field).
const EXT_UNIT: usize = 8;

/// Finds the upper-layer header of an IPv6 packet. `next_header` is the fixed header's,
/// `payload` the bytes after the fixed header ([`Ipv6Packet::payload`], trimmed to the
/// payload length).
///
/// Skips Hop-by-Hop Options (0, first only), Destination Options (60) and Routing (43)
/// headers whose segments left is 0, without looking at their options (the options are
/// for the destination or are ones a router may ignore), and the Fragment header (44)
/// of an atomic fragment (offset 0, M clear: the whole packet); stops at the first
/// other next header, a real fragment being [`ExtHeaderError::Fragment`]. At most [`MAX_EXT_HEADERS`] headers are skipped, each in constant time, and
/// nothing is allocated.
#[inline]
pub fn walk_ext_headers(
    next_header: IpProtocol,
    payload: &[u8],
) -> core::result::Result<UpperLayer, ExtHeaderError> {
    let mut next = next_header;
    let mut at = 0usize;
    for skipped in 0..=MAX_EXT_HEADERS {
        match next {
            IpProtocol::HopByHop if skipped > 0 => return Err(ExtHeaderError::Malformed),
            IpProtocol::HopByHop | IpProtocol::Ipv6Opts | IpProtocol::Ipv6Route => {
                if skipped == MAX_EXT_HEADERS {
                    return Err(ExtHeaderError::TooManyHeaders);
                }
                let Some(header) = payload.get(at..at + EXT_UNIT) else {
                    return Err(ExtHeaderError::Truncated);
                };
                // Routing header: byte 3 is segments left.
                if next == IpProtocol::Ipv6Route && header[3] != 0 {
                    return Err(ExtHeaderError::RoutingSegmentsLeft);
                }
                let len = (usize::from(header[1]) + 1) * EXT_UNIT;
                if payload.len() - at < len {
                    return Err(ExtHeaderError::Truncated);
                }
                next = IpProtocol::from(header[0]);
                at += len;
            }
            IpProtocol::Ipv6Frag => {
                if skipped == MAX_EXT_HEADERS {
                    return Err(ExtHeaderError::TooManyHeaders);
                }
                let Some(header) = payload.get(at..at + EXT_UNIT) else {
                    return Err(ExtHeaderError::Truncated);
                };
                // An atomic fragment (offset 0, no more fragments) is the
                // whole packet, to be processed as such (RFC 8200 4.5,
                // RFC 6946): an older host adds the header to every packet
                // after a Packet Too Big below 1280, which a stranger can
                // forge (found in review: dropped). Any other is a part.
                let offset_and_more = read_u16(header, 2);
                if offset_and_more & 0xfff9 != 0 {
                    return Err(ExtHeaderError::Fragment);
                }
                next = IpProtocol::from(header[0]);
                at += EXT_UNIT;
            }
            IpProtocol::Ipv6NoNxt => return Err(ExtHeaderError::NoNextHeader),
            protocol => {
                return Ok(UpperLayer {
                    protocol,
                    offset: HEADER_LEN + at,
                })
            }
        }
    }
    // The loop returns on every path: its last round either finds an upper layer or
    // refuses the header as one too many.
    Err(ExtHeaderError::TooManyHeaders)
}

/// Whether the extension headers before `upper` (an offset into
/// `payload`, as [`walk_ext_headers`] found it) hold a Fragment header:
/// the atomic fragment it skips. Neighbor Discovery in one is refused
/// (RFC 6980), as Linux refuses it.
pub fn has_fragment_header(next_header: IpProtocol, payload: &[u8], upper: usize) -> bool {
    let (mut next, mut at) = (next_header, 0);
    while at < upper {
        let Some(header) = payload.get(at..at + EXT_UNIT) else {
            return false;
        };
        let len = match next {
            IpProtocol::Ipv6Frag => return true,
            _ => (usize::from(header[1]) + 1) * EXT_UNIT,
        };
        next = IpProtocol::from(header[0]);
        at += len;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum;

    const A: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    const B: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

    /// scapy 2.5: `IPv6(src="2001:db8::1", dst="2001:db8::2", hlim=64, tc=0, fl=0x12345)
    /// / TCP(sport=40000, dport=80, flags="S", seq=0x01020304, window=64240, options=[])`.
    static SYN: [u8; 60] = [
        0x60, 0x01, 0x23, 0x45, 0x00, 0x14, 0x06,
        0x40, // ver/tc/flow, length 20, TCP, hlim 64
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x01, // src
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x02, // dst
        0x9c, 0x40, 0x00, 0x50, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x00, 0x50, 0x02, 0xfa,
        0xf0, 0xb8, 0xe6, 0x00, 0x00, // TCP
    ];

    /// scapy 2.5: `IPv6(src="2001:db8::1", dst="2001:db8::2", hlim=64)
    /// / IPv6ExtHdrHopByHop(options=[PadN(optdata=b"\0"*4)])
    /// / IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\0"*4)])
    /// / IPv6ExtHdrRouting(type=0, segleft=0, addresses=[])
    /// / UDP(sport=12345, dport=53) / Raw(b"hello, lb!")`.
    static EXT: [u8; 82] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x2a, 0x00, 0x40, // length 42, next header HBH
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x01, // src
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x02, // dst
        0x3c, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00, // HBH -> dest opts, PadN
        0x2b, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00, // dest opts -> routing, PadN
        0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // routing -> UDP, type 0, segleft 0
        0x30, 0x39, 0x00, 0x35, 0x00, 0x12, 0xad, 0x5b, // UDP
        0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x2c, 0x20, 0x6c, 0x62, 0x21,
    ];

    /// scapy 2.5: `IPv6(src="2001:db8::1", dst="2001:db8::2", hlim=64)
    /// / IPv6ExtHdrFragment(id=0xabcd, m=1, offset=0, nh=17)
    /// / UDP(sport=12345, dport=53) / Raw(b"hello, lb!")`.
    static FRAG: [u8; 66] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x1a, 0x2c, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, // fixed header
        0x11, 0x00, 0x00, 0x01, 0x00, 0x00, 0xab, 0xcd, // fragment header, M set
        0x30, 0x39, 0x00, 0x35, 0x00, 0x12, 0xad, 0x5b, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x2c, 0x20,
        0x6c, 0x62, 0x21,
    ];

    fn repr() -> Ipv6Repr {
        Ipv6Repr {
            src: A,
            dst: B,
            next_header: IpProtocol::Tcp,
            payload_len: 20,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0x12345,
        }
    }

    #[test]
    fn deconstruct() {
        let p = Ipv6Packet::new_checked(&SYN[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.payload_len(), 20);
        assert_eq!(p.next_header(), IpProtocol::Tcp);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), A);
        assert_eq!(p.dst_addr(), B);
        assert_eq!(p.payload(), &SYN[40..]);
        assert_eq!(
            p.upper_layer(),
            Ok(UpperLayer {
                protocol: IpProtocol::Tcp,
                offset: 40
            })
        );
        assert_eq!(Ipv6Repr::parse(&p).unwrap(), repr());
        // The TCP checksum scapy computed verifies with the v6 pseudo header.
        let s = checksum::pseudo_header_sum_v6(A, B, 6, 20) + checksum::sum(p.payload());
        assert_eq!(checksum::fold(s), 0xffff);
    }

    #[test]
    fn construct() {
        let mut bytes = [0xa5u8; 60];
        let mut p = Ipv6Packet::new_unchecked(&mut bytes[..]);
        p.set_version(6);
        p.set_traffic_class(0);
        p.set_flow_label(0x12345);
        p.set_payload_len(20);
        p.set_next_header(IpProtocol::Tcp);
        p.set_hop_limit(64);
        p.set_src_addr(A);
        p.set_dst_addr(B);
        p.payload_mut().copy_from_slice(&SYN[40..]);
        assert_eq!(p.into_inner(), &SYN[..]);
    }

    #[test]
    fn traffic_class_and_flow_label_do_not_overlap() {
        let mut bytes = SYN;
        let mut p = Ipv6Packet::new_unchecked(&mut bytes[..]);
        p.set_traffic_class(0xff);
        assert_eq!(
            (p.version(), p.traffic_class(), p.flow_label()),
            (6, 0xff, 0x12345)
        );
        p.set_flow_label(0xfffff);
        assert_eq!(
            (p.version(), p.traffic_class(), p.flow_label()),
            (6, 0xff, 0xfffff)
        );
        p.set_traffic_class(0xb8);
        p.set_flow_label(0);
        assert_eq!(
            (p.version(), p.traffic_class(), p.flow_label()),
            (6, 0xb8, 0)
        );
        assert_eq!(&bytes[..4], &[0x6b, 0x80, 0x00, 0x00]);
    }

    #[test]
    fn emit_repr() {
        let mut bytes = [0xa5u8; 60];
        bytes[40..].copy_from_slice(&SYN[40..]);
        let r = repr();
        assert_eq!(r.buffer_len(), 60);
        assert_eq!(r.header_len(), 40);
        r.emit(&mut Ipv6Packet::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, SYN);
    }

    #[test]
    fn ethernet_padding_is_ignored() {
        let mut bytes = [0u8; 70];
        bytes[..60].copy_from_slice(&SYN);
        let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.payload(), &SYN[40..]);
        assert_eq!(Ipv6Repr::parse(&p).unwrap().payload_len, 20);
    }

    #[test]
    fn truncated() {
        for len in 0..SYN.len() {
            assert_eq!(
                Ipv6Packet::new_checked(&SYN[..len]),
                Err(Error::Truncated),
                "len {len}"
            );
        }
        // A cut-short quote: the header alone is checked, the payload ends with the buffer.
        let q = Ipv6Packet::new_checked_header(&SYN[..48]).unwrap();
        assert_eq!(q.payload(), &SYN[40..48]);
        assert_eq!(q.payload_len(), 20);
        assert_eq!(
            Ipv6Packet::new_checked_header(&SYN[..39]),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn malformed() {
        for version in [0u8, 4, 7, 15] {
            let mut bytes = SYN;
            bytes[0] = (version << 4) | (bytes[0] & 0x0f);
            assert_eq!(Ipv6Packet::new_checked(&bytes[..]), Err(Error::Malformed));
            assert_eq!(
                Ipv6Packet::new_checked_header(&bytes[..]),
                Err(Error::Malformed)
            );
            assert!(Ipv6Repr::parse(&Ipv6Packet::new_unchecked(&bytes[..])).is_err());
        }
        // Payload length one past the buffer.
        let mut bytes = SYN;
        bytes[5] = 21;
        assert_eq!(Ipv6Packet::new_checked(&bytes[..]), Err(Error::Truncated));
    }

    #[test]
    fn ext_headers_are_skipped() {
        let p = Ipv6Packet::new_checked(&EXT[..]).unwrap();
        assert_eq!(p.next_header(), IpProtocol::HopByHop);
        let upper = p.upper_layer().unwrap();
        assert_eq!(upper.protocol, IpProtocol::Udp);
        assert_eq!(upper.offset, 64);
        // The UDP checksum scapy computed uses the upper-layer length and protocol.
        let udp = &EXT[upper.offset..];
        let s = checksum::pseudo_header_sum_v6(A, B, 17, udp.len() as u32) + checksum::sum(udp);
        assert_eq!(checksum::fold(s), 0xffff);
    }

    #[test]
    fn fragment_is_refused() {
        let p = Ipv6Packet::new_checked(&FRAG[..]).unwrap();
        assert_eq!(p.upper_layer(), Err(ExtHeaderError::Fragment));
        // Behind another extension header too.
        let mut chain = [0u8; 16];
        chain[0] = 44;
        chain[11] = 1; // M
        assert_eq!(
            walk_ext_headers(IpProtocol::Ipv6Opts, &chain),
            Err(ExtHeaderError::Fragment)
        );
        // The last fragment (an offset, M clear) is a part too.
        let mut last = FRAG;
        last[42..44].copy_from_slice(&[0x00, 0xb8]); // offset 23, M clear
        let p = Ipv6Packet::new_checked(&last[..]).unwrap();
        assert_eq!(p.upper_layer(), Err(ExtHeaderError::Fragment));
    }

    /// Found in review: an atomic fragment (offset 0, M clear) was refused;
    /// it is the whole packet, to be processed as one (RFC 6946), whatever
    /// the reserved bits say.
    #[test]
    fn an_atomic_fragment_is_the_whole_packet() {
        for second in [0x00, 0x06] {
            let mut atomic = FRAG;
            atomic[42..44].copy_from_slice(&[0x00, second]);
            let p = Ipv6Packet::new_checked(&atomic[..]).unwrap();
            assert_eq!(
                p.upper_layer(),
                Ok(UpperLayer {
                    protocol: IpProtocol::Udp,
                    offset: HEADER_LEN + 8
                })
            );
        }
        // It counts in the bound on headers, and must be whole.
        let mut chain = [0u8; 8 * (MAX_EXT_HEADERS + 1)];
        for h in chain.chunks_mut(8) {
            h[0] = 44;
        }
        assert_eq!(
            walk_ext_headers(IpProtocol::Ipv6Frag, &chain),
            Err(ExtHeaderError::TooManyHeaders)
        );
        assert_eq!(
            walk_ext_headers(IpProtocol::Ipv6Frag, &chain[..7]),
            Err(ExtHeaderError::Truncated)
        );
    }

    #[test]
    fn routing_with_segments_left_is_refused() {
        let mut bytes = EXT;
        bytes[59] = 1; // routing header: segments left 1
        let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.upper_layer(), Err(ExtHeaderError::RoutingSegmentsLeft));
    }

    #[test]
    fn hop_by_hop_only_first() {
        let mut bytes = EXT;
        bytes[48] = 0; // dest opts -> hop-by-hop
        let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.upper_layer(), Err(ExtHeaderError::Malformed));
        assert_eq!(Error::from(ExtHeaderError::Malformed), Error::Malformed);
    }

    #[test]
    fn no_next_header() {
        assert_eq!(
            walk_ext_headers(IpProtocol::Ipv6NoNxt, &[]),
            Err(ExtHeaderError::NoNextHeader)
        );
        let mut bytes = EXT;
        bytes[56] = 59; // routing -> no next header
        let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.upper_layer(), Err(ExtHeaderError::NoNextHeader));
    }

    #[test]
    fn ext_header_past_the_payload() {
        // Each cut of the chain before the UDP header is truncated.
        for end in 0..24 {
            assert_eq!(
                walk_ext_headers(IpProtocol::HopByHop, &EXT[40..40 + end]),
                Err(ExtHeaderError::Truncated),
                "end {end}"
            );
        }
        // Cut right after the routing header: the (empty) upper layer is found.
        assert_eq!(
            walk_ext_headers(IpProtocol::HopByHop, &EXT[40..64]),
            Ok(UpperLayer {
                protocol: IpProtocol::Udp,
                offset: 64
            })
        );
        // A length field that runs past the payload.
        let mut bytes = EXT;
        bytes[41] = 9; // hop-by-hop: 80 bytes
        let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.upper_layer(), Err(ExtHeaderError::Truncated));
        assert_eq!(Error::from(ExtHeaderError::Truncated), Error::Truncated);
    }

    /// A chain of `n` 8-byte destination-options headers, then UDP.
    fn chain(n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n * 8];
        for i in 0..n {
            v[i * 8] = if i + 1 == n { 17 } else { 60 };
        }
        v
    }

    #[test]
    fn too_many_headers() {
        for n in 1..=MAX_EXT_HEADERS {
            assert_eq!(
                walk_ext_headers(IpProtocol::Ipv6Opts, &chain(n)),
                Ok(UpperLayer {
                    protocol: IpProtocol::Udp,
                    offset: 40 + n * 8
                }),
                "{n} headers"
            );
        }
        for n in MAX_EXT_HEADERS + 1..MAX_EXT_HEADERS + 4 {
            assert_eq!(
                walk_ext_headers(IpProtocol::Ipv6Opts, &chain(n)),
                Err(ExtHeaderError::TooManyHeaders),
                "{n} headers"
            );
        }
        // A 64 KiB chain costs no more than nine headers' worth of work.
        let long = chain(8000);
        assert_eq!(
            walk_ext_headers(IpProtocol::Ipv6Opts, &long),
            Err(ExtHeaderError::TooManyHeaders)
        );
    }

    #[test]
    fn upper_layer_is_anything_else() {
        for (nh, p) in [
            (IpProtocol::Icmpv6, IpProtocol::Icmpv6),
            (IpProtocol::Ipv6, IpProtocol::Ipv6),
            (IpProtocol::IpIp, IpProtocol::IpIp),
            (IpProtocol(50), IpProtocol(50)),
        ] {
            assert_eq!(
                walk_ext_headers(nh, &[]),
                Ok(UpperLayer {
                    protocol: p,
                    offset: 40
                })
            );
        }
    }

    #[test]
    fn error_display() {
        assert_eq!(ExtHeaderError::Fragment.to_string(), "IPv6 fragment");
        assert_eq!(
            ExtHeaderError::TooManyHeaders.to_string(),
            "too many IPv6 extension headers"
        );
    }

    proptest::proptest! {
        /// No accessor of a checked view panics, and the walk stays inside the payload.
        #[test]
        fn never_panics(
            mut data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            nh in 0..=255u8,
            fix in proptest::prelude::any::<bool>(),
            pad in 0..8usize,
        ) {
            // Half the inputs get a version 6 and a payload length that fits, so the
            // checked view (and the walk over random extension headers) is reached.
            if fix && data.len() >= HEADER_LEN + pad {
                data[0] = 0x60 | (data[0] & 0x0f);
                let len = (data.len() - HEADER_LEN - pad) as u16;
                data[4..6].copy_from_slice(&len.to_be_bytes());
            }
            if let Ok(p) = Ipv6Packet::new_checked(&data[..]) {
                let _ = (p.version(), p.traffic_class(), p.flow_label(), p.hop_limit());
                let _ = (p.next_header(), p.src_addr(), p.dst_addr());
                proptest::prop_assert_eq!(p.payload().len(), usize::from(p.payload_len()));
                let r = Ipv6Repr::parse(&p).unwrap();
                let mut out = vec![0u8; r.buffer_len()];
                r.emit(&mut Ipv6Packet::new_unchecked(&mut out[..]));
                proptest::prop_assert_eq!(&out[..40], &data[..40]);
                if let Ok(u) = p.upper_layer() {
                    proptest::prop_assert!(u.offset >= 40 && u.offset <= 40 + p.payload().len());
                }
            }
            if let Ok(p) = Ipv6Packet::new_checked_header(&data[..]) {
                let _ = (p.payload(), p.upper_layer());
            }
            if let Ok(u) = walk_ext_headers(IpProtocol::from(nh), &data) {
                proptest::prop_assert!(u.offset >= 40 && u.offset <= 40 + data.len());
            }
        }
    }
}
