//! ICMPv4 (RFC 792): a zero-copy [`Icmpv4Packet`] view of echo and error messages.
//!
//! The view covers the whole ICMP message (the IPv4 payload); for error messages the
//! payload is the embedded original IP header plus at least 8 bytes of its payload.

use core::fmt;
use core::ops::{Range, RangeFrom};

use super::checksum;
use super::{read_u16, write_u16, Error, Result};

/// The ICMPv4 message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv4Type {
    /// 0.
    EchoReply,
    /// 3.
    DestinationUnreachable,
    /// 8.
    EchoRequest,
    /// 11.
    TimeExceeded,
    /// Anything else.
    Unknown(u8),
}

impl Icmpv4Type {
    /// Whether this is an error message that embeds the offending packet's header:
    /// destination unreachable, source quench (4), redirect (5), time exceeded, or
    /// parameter problem (12).
    pub fn is_error(self) -> bool {
        matches!(
            self,
            Icmpv4Type::DestinationUnreachable
                | Icmpv4Type::TimeExceeded
                | Icmpv4Type::Unknown(4 | 5 | 12)
        )
    }
}

impl From<u8> for Icmpv4Type {
    fn from(value: u8) -> Self {
        match value {
            0 => Icmpv4Type::EchoReply,
            3 => Icmpv4Type::DestinationUnreachable,
            8 => Icmpv4Type::EchoRequest,
            11 => Icmpv4Type::TimeExceeded,
            other => Icmpv4Type::Unknown(other),
        }
    }
}

impl From<Icmpv4Type> for u8 {
    fn from(value: Icmpv4Type) -> Self {
        match value {
            Icmpv4Type::EchoReply => 0,
            Icmpv4Type::DestinationUnreachable => 3,
            Icmpv4Type::EchoRequest => 8,
            Icmpv4Type::TimeExceeded => 11,
            Icmpv4Type::Unknown(other) => other,
        }
    }
}

impl fmt::Display for Icmpv4Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Icmpv4Type::EchoReply => f.write_str("echo reply"),
            Icmpv4Type::DestinationUnreachable => f.write_str("destination unreachable"),
            Icmpv4Type::EchoRequest => f.write_str("echo request"),
            Icmpv4Type::TimeExceeded => f.write_str("time exceeded"),
            Icmpv4Type::Unknown(v) => write!(f, "type {v}"),
        }
    }
}

/// Destination-unreachable code: port unreachable.
pub const CODE_PORT_UNREACHABLE: u8 = 3;
/// Destination-unreachable code: fragmentation needed and DF set (carries the next-hop MTU).
pub const CODE_FRAG_NEEDED: u8 = 4;
/// Time-exceeded code: TTL exceeded in transit.
pub const CODE_TTL_EXCEEDED: u8 = 0;

mod field {
    use super::{Range, RangeFrom};

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQ: Range<usize> = 6..8;
    pub const NEXT_HOP_MTU: Range<usize> = 6..8;
    pub const PAYLOAD: RangeFrom<usize> = 8..;
}

/// Length of the ICMPv4 header (type, code, checksum and the 4-byte rest of header).
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// A read/write view of an ICMPv4 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Wraps `buffer` without checking its length; accessors may panic.
    pub const fn new_unchecked(buffer: T) -> Icmpv4Packet<T> {
        Icmpv4Packet { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Icmpv4Packet<T>> {
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
    pub fn msg_type(&self) -> Icmpv4Type {
        Icmpv4Type::from(self.buffer.as_ref()[field::TYPE])
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

    /// Next-hop MTU (bytes 6..8; meaningful for type 3 code 4, "fragmentation needed").
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::NEXT_HOP_MTU.start)
    }

    /// Data after the 8-byte header: echo data, or for errors the embedded original IP
    /// header plus leading payload bytes.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }

    /// Whether the checksum over the whole message is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.buffer.as_ref()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    /// Sets the message type.
    #[inline]
    pub fn set_msg_type(&mut self, value: Icmpv4Type) {
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

    /// Sets the next-hop MTU and clears the unused bytes 4..6 before it.
    #[inline]
    pub fn set_next_hop_mtu(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::ECHO_IDENT.start, 0);
        write_u16(self.buffer.as_mut(), field::NEXT_HOP_MTU.start, value);
    }

    /// Clears the 4-byte rest-of-header (the unused field of most error messages).
    #[inline]
    pub fn clear_rest_of_header(&mut self) {
        self.buffer.as_mut()[field::ECHO_IDENT.start..field::NEXT_HOP_MTU.end].fill(0);
    }

    /// Mutable payload.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }

    /// Computes and writes the checksum over the whole message.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{IpProtocol, Ipv4Packet};
    use std::net::Ipv4Addr;

    /// IPv4 ICMP echo request 198.18.0.1 -> 198.18.0.2 (ICMP message starts at 20).
    static IP_ECHO: [u8; 44] = [
        0x45, 0x00, 0x00, 0x2c, 0xbe, 0xef, 0x40, 0x00, 0x40, 0x01, 0xef, 0xb9, 0xc6, 0x12, 0x00,
        0x01, 0xc6, 0x12, 0x00, 0x02, // IPv4 header
        0x08, 0x00, 0xa2, 0x7f, // echo request, code 0, checksum
        0x12, 0x34, 0x00, 0x01, // ident 0x1234, seq 1
        0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f,
        0x70, // "abcdefghijklmnop"
    ];

    #[test]
    fn deconstruct() {
        let ip = Ipv4Packet::new_checked(&IP_ECHO[..]).unwrap();
        assert_eq!(ip.protocol(), IpProtocol::Icmp);
        assert!(ip.verify_checksum());
        let p = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(p.msg_type(), Icmpv4Type::EchoRequest);
        assert_eq!(p.code(), 0);
        assert_eq!(p.checksum(), 0xa27f);
        assert_eq!(p.echo_ident(), 0x1234);
        assert_eq!(p.echo_seq(), 1);
        assert_eq!(p.payload(), b"abcdefghijklmnop");
        assert!(p.verify_checksum());
        assert!(!p.msg_type().is_error());
    }

    #[test]
    fn construct() {
        let mut bytes = [0xa5u8; 24];
        let mut p = Icmpv4Packet::new_unchecked(&mut bytes[..]);
        p.set_msg_type(Icmpv4Type::EchoRequest);
        p.set_code(0);
        p.set_echo_ident(0x1234);
        p.set_echo_seq(1);
        p.payload_mut().copy_from_slice(b"abcdefghijklmnop");
        p.fill_checksum();
        assert_eq!(p.into_inner(), &IP_ECHO[20..]);
    }

    #[test]
    fn echo_reply_in_place() {
        // Turning a request into a reply: type 8 -> 0 changes one 16-bit word.
        let mut bytes = IP_ECHO;
        let mut p = Icmpv4Packet::new_checked(&mut bytes[20..]).unwrap();
        p.set_msg_type(Icmpv4Type::EchoReply);
        let c = checksum::update16(p.checksum(), 0x0800, 0x0000);
        p.set_checksum(c);
        assert!(p.verify_checksum());
        assert_eq!(p.checksum(), 0xaa7f);
    }

    #[test]
    fn frag_needed() {
        // Type 3 code 4 quoting the first 28 bytes of the echo request, MTU 1480.
        let mut bytes = [0xa5u8; 36];
        let mut p = Icmpv4Packet::new_unchecked(&mut bytes[..]);
        p.set_msg_type(Icmpv4Type::DestinationUnreachable);
        p.set_code(CODE_FRAG_NEEDED);
        p.set_next_hop_mtu(1480);
        p.payload_mut().copy_from_slice(&IP_ECHO[..28]);
        p.fill_checksum();
        let p = Icmpv4Packet::new_checked(&bytes[..]).unwrap();
        assert!(p.msg_type().is_error());
        assert_eq!(p.code(), 4);
        assert_eq!(p.next_hop_mtu(), 1480);
        assert_eq!(&bytes[4..8], &[0, 0, 0x05, 0xc8]);
        assert!(p.verify_checksum());
        let inner = Ipv4Packet::new_unchecked(p.payload());
        assert_eq!(inner.src_addr(), Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(inner.dst_addr(), Ipv4Addr::new(198, 18, 0, 2));
        // The quoted header is truncated at 28 bytes, so a checked view refuses it.
        assert!(Ipv4Packet::new_checked(p.payload()).is_err());
    }

    #[test]
    fn clear_rest() {
        let mut bytes = [0xa5u8; 8];
        let mut p = Icmpv4Packet::new_checked(&mut bytes[..]).unwrap();
        p.clear_rest_of_header();
        assert_eq!(&bytes[4..], &[0, 0, 0, 0]);
    }

    #[test]
    fn bad_checksum_detected() {
        let mut bytes = IP_ECHO;
        bytes[30] ^= 1;
        assert!(!Icmpv4Packet::new_checked(&bytes[20..])
            .unwrap()
            .verify_checksum());
    }

    #[test]
    fn truncated() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Icmpv4Packet::new_checked(&IP_ECHO[20..20 + len]),
                Err(Error::Truncated)
            );
        }
        let bare = Icmpv4Packet::new_checked(&IP_ECHO[20..28]).unwrap();
        assert!(bare.payload().is_empty());
    }

    #[test]
    fn type_round_trip() {
        for v in 0..=255u8 {
            assert_eq!(u8::from(Icmpv4Type::from(v)), v);
        }
        assert_eq!(Icmpv4Type::from(11), Icmpv4Type::TimeExceeded);
        assert_eq!(Icmpv4Type::from(13), Icmpv4Type::Unknown(13));
        assert!(Icmpv4Type::TimeExceeded.is_error());
        assert!(Icmpv4Type::from(12).is_error());
        assert_eq!(Icmpv4Type::EchoRequest.to_string(), "echo request");
    }
}
