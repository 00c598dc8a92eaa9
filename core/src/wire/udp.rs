//! UDP (RFC 768) datagrams: a zero-copy [`UdpPacket`] view.
//!
//! The length field bounds the datagram (bytes beyond it are ignored). A transmitted
//! checksum of 0 means "none"; a computed 0 is therefore sent as `0xffff`. Over IPv6
//! the checksum is mandatory (RFC 8200 §8.1): the `_v6` verify refuses 0.

use core::ops::Range;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::checksum;
use super::{read_u16, write_u16, Error, IpProtocol, Result};

mod field {
    use super::Range;

    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = field::CHECKSUM.end;

/// A read/write view of a UDP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps `buffer` without checking it; accessors may panic.
    pub const fn new_unchecked(buffer: T) -> UdpPacket<T> {
        UdpPacket { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<UdpPacket<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Truncated` if the buffer is shorter than 8 bytes or than the length field;
    /// `Malformed` if the length field is below 8.
    pub fn check_len(&self) -> Result<()> {
        let buffer_len = self.buffer.as_ref().len();
        if buffer_len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let len = usize::from(self.len());
        if len < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if len > buffer_len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::SRC_PORT.start)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::DST_PORT.start)
    }

    /// Length field: header plus payload.
    #[inline]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// Checksum (0 means none was computed).
    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// Payload: bytes 8..len.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }

    /// Whether the checksum over pseudo header + datagram (up to the length field) is
    /// correct; true if the datagram carries no checksum (0).
    #[inline]
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let len = self.len();
        let s = checksum::pseudo_header_sum(src, dst, IpProtocol::Udp.into(), len)
            + checksum::sum(&self.buffer.as_ref()[..usize::from(len)]);
        checksum::fold(s) == 0xffff
    }

    /// Whether the checksum over the IPv6 pseudo header + datagram (up to the length
    /// field) is correct; false for a checksum of 0, which IPv6 forbids (RFC 8200 §8.1;
    /// the tunnel exception of RFC 6935 is the caller's to make).
    #[inline]
    pub fn verify_checksum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        if self.checksum() == 0 {
            return false;
        }
        let len = self.len();
        let s = checksum::pseudo_header_sum_v6(src, dst, IpProtocol::Udp.into(), u32::from(len))
            + checksum::sum(&self.buffer.as_ref()[..usize::from(len)]);
        checksum::fold(s) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Sets the source port.
    #[inline]
    pub fn set_src_port(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT.start, value);
    }

    /// Sets the destination port.
    #[inline]
    pub fn set_dst_port(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT.start, value);
    }

    /// Sets the length field.
    #[inline]
    pub fn set_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH.start, value);
    }

    /// Sets the checksum (0 for none).
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM.start, value);
    }

    /// Mutable payload (8..len).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    /// Computes and writes the checksum over pseudo header + datagram (up to the length
    /// field); a computed 0 is written as `0xffff`.
    #[inline]
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let len = self.len();
        let s = checksum::pseudo_header_sum(src, dst, IpProtocol::Udp.into(), len)
            + checksum::sum(&self.buffer.as_ref()[..usize::from(len)]);
        let c = !checksum::fold(s);
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }

    /// Computes and writes the checksum over the IPv6 pseudo header + datagram (up to
    /// the length field); a computed 0 is written as `0xffff`.
    #[inline]
    pub fn fill_checksum_v6(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let len = self.len();
        let s = checksum::pseudo_header_sum_v6(src, dst, IpProtocol::Udp.into(), u32::from(len))
            + checksum::sum(&self.buffer.as_ref()[..usize::from(len)]);
        let c = !checksum::fold(s);
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

    /// 198.18.0.1:12345 -> 198.18.0.2:53, "hello, lb!".
    static DATAGRAM: [u8; 18] = [
        0x30, 0x39, 0x00, 0x35, // ports
        0x00, 0x12, 0x7c, 0xa8, // length 18, checksum
        0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x2c, 0x20, 0x6c, 0x62, 0x21,
    ];

    #[test]
    fn deconstruct() {
        let p = UdpPacket::new_checked(&DATAGRAM[..]).unwrap();
        assert_eq!(p.src_port(), 12345);
        assert_eq!(p.dst_port(), 53);
        assert_eq!(p.len(), 18);
        assert_eq!(p.checksum(), 0x7ca8);
        assert_eq!(p.payload(), b"hello, lb!");
        assert!(p.verify_checksum(SRC, DST));
        assert!(!p.verify_checksum(SRC, Ipv4Addr::new(198, 18, 0, 3)));
    }

    #[test]
    fn construct() {
        let mut bytes = [0xa5u8; 18];
        let mut p = UdpPacket::new_unchecked(&mut bytes[..]);
        p.set_src_port(12345);
        p.set_dst_port(53);
        p.set_len(18);
        p.payload_mut().copy_from_slice(b"hello, lb!");
        p.fill_checksum(SRC, DST);
        assert_eq!(p.into_inner(), &DATAGRAM[..]);
    }

    #[test]
    fn trailing_bytes_ignored() {
        let mut bytes = [0xeeu8; 26];
        bytes[..18].copy_from_slice(&DATAGRAM);
        let p = UdpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.payload(), b"hello, lb!");
        assert!(p.verify_checksum(SRC, DST));
    }

    #[test]
    fn zero_checksum_means_none() {
        let mut bytes = DATAGRAM;
        bytes[6] = 0;
        bytes[7] = 0;
        let p = UdpPacket::new_checked(&bytes[..]).unwrap();
        assert!(p.verify_checksum(SRC, DST));
        assert!(p.verify_checksum(DST, SRC));
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        // Pick the payload word that makes the one's-complement sum 0xffff, so the
        // computed checksum is 0.
        let mut bytes = [0u8; 10];
        let mut p = UdpPacket::new_unchecked(&mut bytes[..]);
        p.set_src_port(1);
        p.set_dst_port(2);
        p.set_len(10);
        let partial = checksum::fold(
            checksum::pseudo_header_sum(SRC, DST, 17, 10) + checksum::sum(&p.buffer[..]),
        );
        let word = !partial;
        p.payload_mut().copy_from_slice(&word.to_be_bytes());
        p.fill_checksum(SRC, DST);
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum(SRC, DST));
    }

    #[test]
    fn nat_rewrite_incremental() {
        let new_src = Ipv4Addr::new(10, 9, 8, 7);
        let mut bytes = DATAGRAM;
        let mut p = UdpPacket::new_checked(&mut bytes[..]).unwrap();
        let mut c = checksum::update32(p.checksum(), SRC.into(), new_src.into());
        c = checksum::update16(c, p.src_port(), 40001);
        p.set_src_port(40001);
        p.set_checksum(if c == 0 { 0xffff } else { c });
        assert!(p.verify_checksum(new_src, DST));
    }

    #[test]
    fn ipv6_checksum() {
        // scapy 2.5: UDP(sport=12345, dport=53) / Raw(b"hello, lb!") under
        // IPv6(src="2001:db8::1", dst="2001:db8::2") (the checksum does not depend on
        // the extension headers before it in the ipv6.rs fixture).
        let a: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let dgram = [
            0x30, 0x39, 0x00, 0x35, 0x00, 0x12, 0xad, 0x5b, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x2c,
            0x20, 0x6c, 0x62, 0x21,
        ];
        let p = UdpPacket::new_checked(&dgram[..]).unwrap();
        assert!(p.verify_checksum_v6(a, b));
        assert!(!p.verify_checksum_v6(b, b));
        let mut bytes = dgram;
        bytes[6] = 0xa5;
        bytes[7] = 0xa5;
        UdpPacket::new_unchecked(&mut bytes[..]).fill_checksum_v6(a, b);
        assert_eq!(bytes, dgram);
        // No checksum is not allowed over IPv6.
        bytes[6] = 0;
        bytes[7] = 0;
        assert!(!UdpPacket::new_checked(&bytes[..])
            .unwrap()
            .verify_checksum_v6(a, b));
    }

    #[test]
    fn truncated() {
        for len in 0..DATAGRAM.len() {
            assert_eq!(
                UdpPacket::new_checked(&DATAGRAM[..len]),
                Err(Error::Truncated),
                "len {len}"
            );
        }
    }

    #[test]
    fn malformed() {
        for len in 0..8u8 {
            let mut bytes = DATAGRAM;
            bytes[4] = 0;
            bytes[5] = len;
            assert_eq!(UdpPacket::new_checked(&bytes[..]), Err(Error::Malformed));
        }
        let mut bytes = DATAGRAM;
        bytes[5] = 19;
        assert_eq!(UdpPacket::new_checked(&bytes[..]), Err(Error::Truncated));
    }
}
