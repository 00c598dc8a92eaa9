//! ICMPv6 (RFC 4443): a zero-copy [`Icmpv6Packet`] view and an owned [`Icmpv6Repr`] for
//! the echo and error messages this appliance answers or originates. Neighbor Discovery
//! messages have their own view in [`ndp`](super::ndp).
//!
//! The view covers the whole ICMPv6 message (the IPv6 upper-layer payload). Unlike
//! ICMPv4, the checksum covers the IPv6 pseudo header, so verify/fill take the source and
//! destination addresses. Errors this appliance emits are cut so that the whole IPv6
//! packet fits the minimum MTU of 1280 bytes (RFC 4443 §2.4 (c)).

use core::fmt;
use core::ops::{Range, RangeFrom};
use std::net::Ipv6Addr;

use super::checksum;
use super::ipv6;
use super::{read_u16, read_u32, write_u16, write_u32, Error, IpProtocol, Result};

/// The ICMPv6 message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv6Type {
    /// 1.
    DstUnreachable,
    /// 2.
    PacketTooBig,
    /// 3.
    TimeExceeded,
    /// 4.
    ParamProblem,
    /// 128.
    EchoRequest,
    /// 129.
    EchoReply,
    /// 133.
    RouterSolicit,
    /// 134.
    RouterAdvert,
    /// 135.
    NeighborSolicit,
    /// 136.
    NeighborAdvert,
    /// 137.
    Redirect,
    /// Anything else.
    Unknown(u8),
}

impl Icmpv6Type {
    /// Whether this is an error message (types 0..=127, RFC 4443 §2.1), which quotes the
    /// invoking packet after its 8-byte header.
    pub fn is_error(self) -> bool {
        u8::from(self) < 128
    }
}

impl From<u8> for Icmpv6Type {
    fn from(value: u8) -> Self {
        match value {
            1 => Icmpv6Type::DstUnreachable,
            2 => Icmpv6Type::PacketTooBig,
            3 => Icmpv6Type::TimeExceeded,
            4 => Icmpv6Type::ParamProblem,
            128 => Icmpv6Type::EchoRequest,
            129 => Icmpv6Type::EchoReply,
            133 => Icmpv6Type::RouterSolicit,
            134 => Icmpv6Type::RouterAdvert,
            135 => Icmpv6Type::NeighborSolicit,
            136 => Icmpv6Type::NeighborAdvert,
            137 => Icmpv6Type::Redirect,
            other => Icmpv6Type::Unknown(other),
        }
    }
}

impl From<Icmpv6Type> for u8 {
    fn from(value: Icmpv6Type) -> Self {
        match value {
            Icmpv6Type::DstUnreachable => 1,
            Icmpv6Type::PacketTooBig => 2,
            Icmpv6Type::TimeExceeded => 3,
            Icmpv6Type::ParamProblem => 4,
            Icmpv6Type::EchoRequest => 128,
            Icmpv6Type::EchoReply => 129,
            Icmpv6Type::RouterSolicit => 133,
            Icmpv6Type::RouterAdvert => 134,
            Icmpv6Type::NeighborSolicit => 135,
            Icmpv6Type::NeighborAdvert => 136,
            Icmpv6Type::Redirect => 137,
            Icmpv6Type::Unknown(other) => other,
        }
    }
}

impl fmt::Display for Icmpv6Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Icmpv6Type::DstUnreachable => f.write_str("destination unreachable"),
            Icmpv6Type::PacketTooBig => f.write_str("packet too big"),
            Icmpv6Type::TimeExceeded => f.write_str("time exceeded"),
            Icmpv6Type::ParamProblem => f.write_str("parameter problem"),
            Icmpv6Type::EchoRequest => f.write_str("echo request"),
            Icmpv6Type::EchoReply => f.write_str("echo reply"),
            Icmpv6Type::RouterSolicit => f.write_str("router solicitation"),
            Icmpv6Type::RouterAdvert => f.write_str("router advertisement"),
            Icmpv6Type::NeighborSolicit => f.write_str("neighbor solicitation"),
            Icmpv6Type::NeighborAdvert => f.write_str("neighbor advertisement"),
            Icmpv6Type::Redirect => f.write_str("redirect"),
            Icmpv6Type::Unknown(v) => write!(f, "type {v}"),
        }
    }
}

/// Destination-unreachable code: no route to destination.
pub const CODE_NO_ROUTE: u8 = 0;
/// Destination-unreachable code: communication administratively prohibited.
pub const CODE_ADMIN_PROHIBITED: u8 = 1;
/// Destination-unreachable code: address unreachable.
pub const CODE_ADDR_UNREACHABLE: u8 = 3;
/// Destination-unreachable code: port unreachable.
pub const CODE_PORT_UNREACHABLE: u8 = 4;
/// Time-exceeded code: hop limit exceeded in transit.
pub const CODE_HOP_LIMIT_EXCEEDED: u8 = 0;
/// Time-exceeded code: fragment reassembly time exceeded.
pub const CODE_REASSEMBLY_EXCEEDED: u8 = 1;
/// Parameter-problem code: erroneous header field.
pub const CODE_ERRONEOUS_HEADER: u8 = 0;
/// Parameter-problem code: unrecognized next header.
pub const CODE_UNRECOGNIZED_NEXT_HEADER: u8 = 1;
/// Parameter-problem code: unrecognized IPv6 option.
pub const CODE_UNRECOGNIZED_OPTION: u8 = 2;

mod field {
    use super::{Range, RangeFrom};

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQ: Range<usize> = 6..8;
    pub const MTU: Range<usize> = 4..8;
    pub const POINTER: Range<usize> = 4..8;
    pub const UNUSED: Range<usize> = 4..8;
    pub const PAYLOAD: RangeFrom<usize> = 8..;
}

/// Length of the ICMPv6 header (type, code, checksum and the 4-byte message-specific
/// word).
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// The longest ICMPv6 error this appliance emits: an IPv6 packet of the minimum MTU
/// (1280) less its 40-byte header (RFC 4443 §2.4 (c)).
pub const MAX_ERROR_LEN: usize = ipv6::MIN_MTU - ipv6::HEADER_LEN;

/// The most of an invoking packet that an emitted error quotes.
pub const MAX_QUOTE_LEN: usize = MAX_ERROR_LEN - HEADER_LEN;

/// The checksum of `data` (a whole ICMPv6 message) with the IPv6 pseudo header; `None`
/// if it is too long for the pseudo header's 32-bit length.
#[inline]
fn sum_with_pseudo_header(src: Ipv6Addr, dst: Ipv6Addr, data: &[u8]) -> Option<u32> {
    let len = u32::try_from(data.len()).ok()?;
    Some(
        checksum::pseudo_header_sum_v6(src, dst, IpProtocol::Icmpv6.into(), len)
            + checksum::sum(data),
    )
}

/// A read/write view of an ICMPv6 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Wraps `buffer` without checking its length; accessors may panic.
    pub const fn new_unchecked(buffer: T) -> Icmpv6Packet<T> {
        Icmpv6Packet { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Icmpv6Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Err(Truncated)` if the buffer is shorter than the 8-byte header.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Message type.
    #[inline]
    pub fn msg_type(&self) -> Icmpv6Type {
        Icmpv6Type::from(self.buffer.as_ref()[field::TYPE])
    }

    /// Message code.
    #[inline]
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum.
    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// Echo identifier (bytes 4..6; meaningful for echo request/reply).
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ECHO_IDENT.start)
    }

    /// Echo sequence number (bytes 6..8; meaningful for echo request/reply).
    #[inline]
    pub fn echo_seq(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ECHO_SEQ.start)
    }

    /// MTU of the next hop (bytes 4..8; meaningful for Packet Too Big).
    #[inline]
    pub fn mtu(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::MTU.start)
    }

    /// Offset of the offending byte in the invoking packet (bytes 4..8; meaningful for
    /// Parameter Problem).
    #[inline]
    pub fn pointer(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::POINTER.start)
    }

    /// The message body after the 8-byte header: echo data, the invoking packet of an
    /// error, or the target address and options of an NDP message.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }

    /// The invoking packet that an error message quotes (as much of it as fitted), or
    /// `None` for an informational message. View it with
    /// [`Ipv6Packet::new_checked_header`](super::Ipv6Packet::new_checked_header): it is
    /// usually cut short.
    #[inline]
    pub fn invoking_packet(&self) -> Option<&[u8]> {
        self.msg_type().is_error().then(|| self.payload())
    }

    /// Whether the checksum over the IPv6 pseudo header and the whole buffer is correct.
    /// The buffer must be exactly the message (the IPv6 upper-layer payload).
    #[inline]
    pub fn verify_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        sum_with_pseudo_header(src, dst, self.buffer.as_ref())
            .is_some_and(|s| checksum::fold(s) == 0xffff)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    /// Sets the message type.
    #[inline]
    pub fn set_msg_type(&mut self, value: Icmpv6Type) {
        self.buffer.as_mut()[field::TYPE] = value.into();
    }

    /// Sets the message code.
    #[inline]
    pub fn set_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    /// Sets the checksum.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM.start, value);
    }

    /// Sets the echo identifier.
    #[inline]
    pub fn set_echo_ident(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::ECHO_IDENT.start, value);
    }

    /// Sets the echo sequence number.
    #[inline]
    pub fn set_echo_seq(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::ECHO_SEQ.start, value);
    }

    /// Sets the MTU of a Packet Too Big message.
    #[inline]
    pub fn set_mtu(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::MTU.start, value);
    }

    /// Sets the pointer of a Parameter Problem message.
    #[inline]
    pub fn set_pointer(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::POINTER.start, value);
    }

    /// Clears the 4-byte message-specific word (the unused field of Destination
    /// Unreachable and Time Exceeded).
    #[inline]
    pub fn clear_rest_of_header(&mut self) {
        self.buffer.as_mut()[field::UNUSED].fill(0);
    }

    /// Mutable message body.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }

    /// Computes and writes the checksum over the IPv6 pseudo header and the whole
    /// buffer, which must be exactly the message.
    #[inline]
    pub fn fill_checksum(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let s = sum_with_pseudo_header(src, dst, self.buffer.as_ref());
        debug_assert!(s.is_some(), "an ICMPv6 message longer than 4 GiB");
        self.set_checksum(!checksum::fold(s.unwrap_or(0)));
    }

    /// Turns an echo request into its reply in place: the type becomes 129 and the
    /// checksum is patched for it (RFC 1624). The caller swaps the IPv6 addresses, which
    /// leaves the pseudo-header sum as it was; a reply from another source address (to
    /// a request sent to a multicast or anycast address) also needs
    /// [`checksum::update128`] for that address.
    #[inline]
    pub fn make_echo_reply(&mut self) {
        let old = read_u16(self.buffer.as_ref(), field::TYPE);
        self.set_msg_type(Icmpv6Type::EchoReply);
        let new = read_u16(self.buffer.as_ref(), field::TYPE);
        let c = checksum::update16(self.checksum(), old, new);
        self.set_checksum(c);
    }
}

/// An owned ICMPv6 echo or error message, borrowing its data or quoted packet. Parsing
/// does not verify the checksum (use [`Icmpv6Packet::verify_checksum`]); the code of
/// echo and Packet Too Big messages is not kept (it is 0, and ignored by receivers);
/// emitting fills the checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv6Repr<'a> {
    /// Echo request (128).
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq: u16,
        /// Data.
        data: &'a [u8],
    },
    /// Echo reply (129).
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq: u16,
        /// Data.
        data: &'a [u8],
    },
    /// Destination unreachable (1).
    DstUnreachable {
        /// Code, e.g. [`CODE_PORT_UNREACHABLE`].
        code: u8,
        /// The invoking packet; cut to [`MAX_QUOTE_LEN`] when emitted.
        quoted: &'a [u8],
    },
    /// Packet too big (2).
    PacketTooBig {
        /// MTU of the next hop.
        mtu: u32,
        /// The invoking packet; cut to [`MAX_QUOTE_LEN`] when emitted.
        quoted: &'a [u8],
    },
    /// Time exceeded (3).
    TimeExceeded {
        /// Code, e.g. [`CODE_HOP_LIMIT_EXCEEDED`].
        code: u8,
        /// The invoking packet; cut to [`MAX_QUOTE_LEN`] when emitted.
        quoted: &'a [u8],
    },
    /// Parameter problem (4).
    ParamProblem {
        /// Code, e.g. [`CODE_UNRECOGNIZED_NEXT_HEADER`].
        code: u8,
        /// Offset of the offending byte in the invoking packet.
        pointer: u32,
        /// The invoking packet; cut to [`MAX_QUOTE_LEN`] when emitted.
        quoted: &'a [u8],
    },
}

impl<'a> Icmpv6Repr<'a> {
    /// Reads an echo or error message. `Malformed` for any other type (NDP messages
    /// have [`NdpRepr`](super::ndp::NdpRepr)).
    pub fn parse(packet: &Icmpv6Packet<&'a [u8]>) -> Result<Icmpv6Repr<'a>> {
        packet.check_len()?;
        let buffer: &'a [u8] = packet.buffer;
        let body = &buffer[field::PAYLOAD];
        Ok(match packet.msg_type() {
            Icmpv6Type::EchoRequest => Icmpv6Repr::EchoRequest {
                ident: packet.echo_ident(),
                seq: packet.echo_seq(),
                data: body,
            },
            Icmpv6Type::EchoReply => Icmpv6Repr::EchoReply {
                ident: packet.echo_ident(),
                seq: packet.echo_seq(),
                data: body,
            },
            Icmpv6Type::DstUnreachable => Icmpv6Repr::DstUnreachable {
                code: packet.code(),
                quoted: body,
            },
            Icmpv6Type::PacketTooBig => Icmpv6Repr::PacketTooBig {
                mtu: packet.mtu(),
                quoted: body,
            },
            Icmpv6Type::TimeExceeded => Icmpv6Repr::TimeExceeded {
                code: packet.code(),
                quoted: body,
            },
            Icmpv6Type::ParamProblem => Icmpv6Repr::ParamProblem {
                code: packet.code(),
                pointer: packet.pointer(),
                quoted: body,
            },
            _ => return Err(Error::Malformed),
        })
    }

    /// The message type.
    pub fn msg_type(&self) -> Icmpv6Type {
        match self {
            Icmpv6Repr::EchoRequest { .. } => Icmpv6Type::EchoRequest,
            Icmpv6Repr::EchoReply { .. } => Icmpv6Type::EchoReply,
            Icmpv6Repr::DstUnreachable { .. } => Icmpv6Type::DstUnreachable,
            Icmpv6Repr::PacketTooBig { .. } => Icmpv6Type::PacketTooBig,
            Icmpv6Repr::TimeExceeded { .. } => Icmpv6Type::TimeExceeded,
            Icmpv6Repr::ParamProblem { .. } => Icmpv6Type::ParamProblem,
        }
    }

    /// The body as emitted: the echo data, or the quoted packet cut to
    /// [`MAX_QUOTE_LEN`].
    fn body(&self) -> &'a [u8] {
        match *self {
            Icmpv6Repr::EchoRequest { data, .. } | Icmpv6Repr::EchoReply { data, .. } => data,
            Icmpv6Repr::DstUnreachable { quoted, .. }
            | Icmpv6Repr::PacketTooBig { quoted, .. }
            | Icmpv6Repr::TimeExceeded { quoted, .. }
            | Icmpv6Repr::ParamProblem { quoted, .. } => &quoted[..quoted.len().min(MAX_QUOTE_LEN)],
        }
    }

    /// Length of the emitted message: 8 + the data, or for an error 8 + the quote, at
    /// most [`MAX_ERROR_LEN`].
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.body().len()
    }

    /// Writes the message into the first [`buffer_len`](Self::buffer_len) bytes of the
    /// packet's buffer, checksummed for `src` -> `dst`; bytes after those are left alone
    /// and not checksummed.
    ///
    /// # Panics
    /// If the buffer is shorter than `buffer_len()`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        packet: &mut Icmpv6Packet<T>,
    ) {
        let len = self.buffer_len();
        let mut p = Icmpv6Packet::new_unchecked(&mut packet.buffer.as_mut()[..len]);
        p.set_msg_type(self.msg_type());
        match *self {
            Icmpv6Repr::EchoRequest { ident, seq, .. }
            | Icmpv6Repr::EchoReply { ident, seq, .. } => {
                p.set_code(0);
                p.set_echo_ident(ident);
                p.set_echo_seq(seq);
            }
            Icmpv6Repr::DstUnreachable { code, .. } | Icmpv6Repr::TimeExceeded { code, .. } => {
                p.set_code(code);
                p.clear_rest_of_header();
            }
            Icmpv6Repr::PacketTooBig { mtu, .. } => {
                p.set_code(0);
                p.set_mtu(mtu);
            }
            Icmpv6Repr::ParamProblem { code, pointer, .. } => {
                p.set_code(code);
                p.set_pointer(pointer);
            }
        }
        p.payload_mut().copy_from_slice(self.body());
        p.fill_checksum(src, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Ipv6Packet;

    const A: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    const B: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
    const ROUTER: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xfe);

    /// scapy 2.5: `IPv6(src="2001:db8::1", dst="2001:db8::2", hlim=64)
    /// / ICMPv6EchoRequest(id=0x1234, seq=1, data=b"abcdefghijklmnop")`.
    static IP_ECHO: [u8; 64] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x18, 0x3a, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, // IPv6 header
        0x80, 0x00, 0xce, 0xb7, // echo request, code 0, checksum
        0x12, 0x34, 0x00, 0x01, // ident 0x1234, seq 1
        0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f,
        0x70, // "abcdefghijklmnop"
    ];

    /// scapy 2.5: `IPv6(src="2001:db8::2", dst="2001:db8::1", hlim=64)
    /// / ICMPv6EchoReply(id=0x1234, seq=1, data=b"abcdefghijklmnop")`.
    static IP_REPLY: [u8; 64] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x18, 0x3a, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, // IPv6 header
        0x81, 0x00, 0xcd, 0xb7, 0x12, 0x34, 0x00, 0x01, // echo reply
        0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f,
        0x70,
    ];

    /// The invoking packet of the error fixtures: the TCP SYN of `ipv6.rs`, 60 bytes.
    static SYN: [u8; 60] = [
        0x60, 0x01, 0x23, 0x45, 0x00, 0x14, 0x06, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x9c, 0x40, 0x00, 0x50, 0x01,
        0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x00, 0x50, 0x02, 0xfa, 0xf0, 0xb8, 0xe6, 0x00, 0x00,
    ];

    /// The ICMPv6 headers scapy 2.5 built for errors from 2001:db8::fe to 2001:db8::1
    /// quoting `SYN` (`IPv6(src=..., dst=..., hlim=64) / <layer> / Raw(bytes(syn))`),
    /// each followed by those 60 bytes.
    /// `ICMPv6PacketTooBig(mtu=1280)`:
    static PTB_HEADER: [u8; 8] = [0x02, 0x00, 0x12, 0x90, 0x00, 0x00, 0x05, 0x00];
    /// `ICMPv6TimeExceeded(code=0)`:
    static TE_HEADER: [u8; 8] = [0x03, 0x00, 0x16, 0x90, 0x00, 0x00, 0x00, 0x00];
    /// `ICMPv6DestUnreach(code=4)`:
    static DU_HEADER: [u8; 8] = [0x01, 0x04, 0x18, 0x8c, 0x00, 0x00, 0x00, 0x00];

    fn error_message(header: &[u8; 8]) -> [u8; 68] {
        let mut m = [0u8; 68];
        m[..8].copy_from_slice(header);
        m[8..].copy_from_slice(&SYN);
        m
    }

    #[test]
    fn deconstruct() {
        let ip = Ipv6Packet::new_checked(&IP_ECHO[..]).unwrap();
        assert_eq!(ip.next_header(), IpProtocol::Icmpv6);
        let p = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(p.msg_type(), Icmpv6Type::EchoRequest);
        assert_eq!(p.code(), 0);
        assert_eq!(p.checksum(), 0xceb7);
        assert_eq!(p.echo_ident(), 0x1234);
        assert_eq!(p.echo_seq(), 1);
        assert_eq!(p.payload(), b"abcdefghijklmnop");
        assert_eq!(p.invoking_packet(), None);
        assert!(p.verify_checksum(A, B));
        assert!(!p.verify_checksum(A, ROUTER));
        assert!(!p.msg_type().is_error());
        assert_eq!(
            Icmpv6Repr::parse(&p),
            Ok(Icmpv6Repr::EchoRequest {
                ident: 0x1234,
                seq: 1,
                data: b"abcdefghijklmnop"
            })
        );
    }

    #[test]
    fn construct() {
        let mut bytes = [0xa5u8; 24];
        let mut p = Icmpv6Packet::new_unchecked(&mut bytes[..]);
        p.set_msg_type(Icmpv6Type::EchoRequest);
        p.set_code(0);
        p.set_echo_ident(0x1234);
        p.set_echo_seq(1);
        p.payload_mut().copy_from_slice(b"abcdefghijklmnop");
        p.fill_checksum(A, B);
        assert_eq!(p.into_inner(), &IP_ECHO[40..]);
    }

    #[test]
    fn emit_echo_reply() {
        let ip = Ipv6Packet::new_checked(&IP_ECHO[..]).unwrap();
        let request = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        let Ok(Icmpv6Repr::EchoRequest { ident, seq, data }) = Icmpv6Repr::parse(&request) else {
            panic!("an echo request");
        };
        let reply = Icmpv6Repr::EchoReply { ident, seq, data };
        assert_eq!(reply.buffer_len(), 24);
        let mut bytes = [0xa5u8; 24];
        reply.emit(B, A, &mut Icmpv6Packet::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, IP_REPLY[40..]);
    }

    #[test]
    fn echo_reply_in_place() {
        let mut bytes = IP_ECHO;
        let mut ip = Ipv6Packet::new_checked(&mut bytes[..]).unwrap();
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        ip.set_src_addr(dst);
        ip.set_dst_addr(src);
        Icmpv6Packet::new_checked(ip.payload_mut())
            .unwrap()
            .make_echo_reply();
        assert_eq!(bytes, IP_REPLY);
    }

    #[test]
    fn errors_match_scapy() {
        let cases = [
            (
                Icmpv6Repr::PacketTooBig {
                    mtu: 1280,
                    quoted: &SYN,
                },
                PTB_HEADER,
            ),
            (
                Icmpv6Repr::TimeExceeded {
                    code: CODE_HOP_LIMIT_EXCEEDED,
                    quoted: &SYN,
                },
                TE_HEADER,
            ),
            (
                Icmpv6Repr::DstUnreachable {
                    code: CODE_PORT_UNREACHABLE,
                    quoted: &SYN,
                },
                DU_HEADER,
            ),
        ];
        for (repr, header) in cases {
            let expected = error_message(&header);
            assert_eq!(repr.buffer_len(), 68);
            let mut bytes = [0xa5u8; 68];
            repr.emit(ROUTER, A, &mut Icmpv6Packet::new_unchecked(&mut bytes[..]));
            assert_eq!(bytes, expected, "{repr:?}");
            let p = Icmpv6Packet::new_checked(&expected[..]).unwrap();
            assert!(p.verify_checksum(ROUTER, A));
            assert!(p.msg_type().is_error());
            assert_eq!(p.invoking_packet(), Some(&SYN[..]));
            assert_eq!(Icmpv6Repr::parse(&p), Ok(repr));
        }
        let p = Icmpv6Packet::new_checked(&error_message(&PTB_HEADER)[..])
            .unwrap()
            .mtu();
        assert_eq!(p, 1280);
    }

    #[test]
    fn quoted_packet_views_as_ipv6() {
        let m = error_message(&TE_HEADER);
        let p = Icmpv6Packet::new_checked(&m[..]).unwrap();
        let quote = p.invoking_packet().unwrap();
        let inner = Ipv6Packet::new_checked_header(&quote[..48]).unwrap();
        assert_eq!((inner.src_addr(), inner.dst_addr()), (A, B));
        assert_eq!(inner.upper_layer().unwrap().protocol, IpProtocol::Tcp);
    }

    #[test]
    fn error_fits_the_minimum_mtu() {
        // A 1500-byte invoking packet: the emitted IPv6 packet is exactly 1280 bytes.
        let mut big = [0u8; 1500];
        big[..40].copy_from_slice(&SYN[..40]);
        for (i, b) in big[40..].iter_mut().enumerate() {
            *b = i as u8;
        }
        let repr = Icmpv6Repr::PacketTooBig {
            mtu: 1400,
            quoted: &big,
        };
        assert_eq!(repr.buffer_len(), MAX_ERROR_LEN);
        assert_eq!(ipv6::HEADER_LEN + repr.buffer_len(), 1280);
        let mut bytes = vec![0xa5u8; 1300];
        repr.emit(ROUTER, A, &mut Icmpv6Packet::new_unchecked(&mut bytes[..]));
        // Bytes past the message are neither written nor checksummed.
        assert!(bytes[MAX_ERROR_LEN..].iter().all(|&b| b == 0xa5));
        let p = Icmpv6Packet::new_checked(&bytes[..MAX_ERROR_LEN]).unwrap();
        assert!(p.verify_checksum(ROUTER, A));
        assert_eq!(p.mtu(), 1400);
        assert_eq!(p.payload(), &big[..MAX_QUOTE_LEN]);
        // A quote of exactly the limit is kept whole.
        let exact = Icmpv6Repr::TimeExceeded {
            code: 0,
            quoted: &big[..MAX_QUOTE_LEN],
        };
        assert_eq!(exact.buffer_len(), MAX_ERROR_LEN);
    }

    #[test]
    fn param_problem() {
        let repr = Icmpv6Repr::ParamProblem {
            code: CODE_UNRECOGNIZED_NEXT_HEADER,
            pointer: 6,
            quoted: &SYN,
        };
        let mut bytes = [0xa5u8; 68];
        repr.emit(ROUTER, A, &mut Icmpv6Packet::new_unchecked(&mut bytes[..]));
        assert_eq!(&bytes[..2], &[4, 1]);
        assert_eq!(&bytes[4..8], &[0, 0, 0, 6]);
        let p = Icmpv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.pointer(), 6);
        assert!(p.verify_checksum(ROUTER, A));
        assert_eq!(Icmpv6Repr::parse(&p), Ok(repr));
    }

    #[test]
    fn other_types_do_not_parse() {
        for t in [133u8, 135, 136, 137, 200] {
            let mut bytes = [0u8; 24];
            bytes[0] = t;
            let p = Icmpv6Packet::new_checked(&bytes[..]).unwrap();
            assert_eq!(Icmpv6Repr::parse(&p), Err(Error::Malformed));
        }
        // An unknown error type still has an invoking packet.
        let bytes = [100u8, 0, 0, 0, 0, 0, 0, 0, 0x60];
        let p = Icmpv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.invoking_packet(), Some(&[0x60u8][..]));
    }

    #[test]
    fn clear_rest() {
        let mut bytes = [0xa5u8; 8];
        let mut p = Icmpv6Packet::new_checked(&mut bytes[..]).unwrap();
        p.clear_rest_of_header();
        assert_eq!(&bytes[4..], &[0, 0, 0, 0]);
    }

    #[test]
    fn bad_checksum_detected() {
        let mut bytes = IP_ECHO;
        bytes[50] ^= 1;
        assert!(!Icmpv6Packet::new_checked(&bytes[40..])
            .unwrap()
            .verify_checksum(A, B));
    }

    #[test]
    fn truncated() {
        for len in 0..HEADER_LEN {
            let p = Icmpv6Packet::new_checked(&IP_ECHO[40..40 + len]);
            assert_eq!(p, Err(Error::Truncated));
            assert_eq!(
                Icmpv6Repr::parse(&Icmpv6Packet::new_unchecked(&IP_ECHO[40..40 + len])),
                Err(Error::Truncated)
            );
        }
        let bare = Icmpv6Packet::new_checked(&IP_ECHO[40..48]).unwrap();
        assert!(bare.payload().is_empty());
    }

    #[test]
    fn type_round_trip() {
        for v in 0..=255u8 {
            assert_eq!(u8::from(Icmpv6Type::from(v)), v);
            assert_eq!(Icmpv6Type::from(v).is_error(), v < 128);
        }
        assert_eq!(Icmpv6Type::from(2), Icmpv6Type::PacketTooBig);
        assert_eq!(Icmpv6Type::from(136), Icmpv6Type::NeighborAdvert);
        assert_eq!(Icmpv6Type::from(130), Icmpv6Type::Unknown(130));
        assert_eq!(Icmpv6Type::PacketTooBig.to_string(), "packet too big");
    }

    proptest::proptest! {
        /// No accessor of a checked view panics; fill makes verify true; a parsed repr
        /// emits back into a message that parses to the same repr.
        #[test]
        fn never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            if let Ok(p) = Icmpv6Packet::new_checked(&data[..]) {
                let _ = (p.msg_type(), p.code(), p.checksum(), p.echo_ident(), p.echo_seq());
                let _ = (p.mtu(), p.pointer(), p.payload(), p.invoking_packet());
                let _ = p.verify_checksum(A, B);
                let mut owned = data.clone();
                let mut q = Icmpv6Packet::new_unchecked(&mut owned[..]);
                q.fill_checksum(A, B);
                proptest::prop_assert!(q.verify_checksum(A, B));
                if let Ok(r) = Icmpv6Repr::parse(&p) {
                    let mut out = vec![0u8; r.buffer_len()];
                    r.emit(A, B, &mut Icmpv6Packet::new_unchecked(&mut out[..]));
                    let q = Icmpv6Packet::new_checked(&out[..]).unwrap();
                    proptest::prop_assert!(q.verify_checksum(A, B));
                    proptest::prop_assert_eq!(Icmpv6Repr::parse(&q), Ok(r));
                }
            }
        }
    }
}
