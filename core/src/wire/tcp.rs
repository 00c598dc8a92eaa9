//! TCP (RFC 9293) segments: a zero-copy [`TcpPacket`] view and the [`TcpFlags`] set.
//!
//! The view covers the whole segment (the IP payload); checksums include the IPv4 or
//! IPv6 pseudo header, so verify/fill take the source and destination addresses
//! (`_v6` for IPv6).

use core::fmt;
use core::ops::{BitAnd, BitOr, BitOrAssign, Range};
use std::net::{Ipv4Addr, Ipv6Addr};

use super::checksum;
use super::{read_u16, read_u32, write_u16, write_u32, Error, IpProtocol, Result};

/// The eight TCP flag bits of byte 13.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No more data from sender.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// Synchronize sequence numbers.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// Reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// Push.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// Acknowledgment field is significant.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// Urgent pointer is significant.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECN echo.
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// Congestion window reduced.
    pub const CWR: TcpFlags = TcpFlags(0x80);

    const NAMES: [(TcpFlags, &'static str); 8] = [
        (Self::FIN, "FIN"),
        (Self::SYN, "SYN"),
        (Self::RST, "RST"),
        (Self::PSH, "PSH"),
        (Self::ACK, "ACK"),
        (Self::URG, "URG"),
        (Self::ECE, "ECE"),
        (Self::CWR, "CWR"),
    ];

    /// No flags.
    pub const fn empty() -> TcpFlags {
        TcpFlags(0)
    }

    /// The raw bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every flag in `other` is set.
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any flag in `other` is set.
    pub const fn intersects(self, other: TcpFlags) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether no flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl BitOrAssign for TcpFlags {
    fn bitor_assign(&mut self, rhs: TcpFlags) {
        self.0 |= rhs.0;
    }
}

impl BitAnd for TcpFlags {
    type Output = TcpFlags;
    fn bitand(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 & rhs.0)
    }
}

impl fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (flag, name) in Self::NAMES {
            if self.contains(flag) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("-")?;
        }
        Ok(())
    }
}

impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TcpFlags({self})")
    }
}

mod field {
    use super::Range;

    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ_NUM: Range<usize> = 4..8;
    pub const ACK_NUM: Range<usize> = 8..12;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WIN_SIZE: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;
}

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = field::URGENT.end;

/// A read/write view of a TCP segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps `buffer` without checking it; accessors may panic.
    pub const fn new_unchecked(buffer: T) -> TcpPacket<T> {
        TcpPacket { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<TcpPacket<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Truncated` if the buffer is shorter than 20 bytes or than the data offset says;
    /// `Malformed` if the data offset is below 5 words.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
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

    /// Sequence number.
    #[inline]
    pub fn seq_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::SEQ_NUM.start)
    }

    /// Acknowledgment number.
    #[inline]
    pub fn ack_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::ACK_NUM.start)
    }

    /// Header length in bytes (data offset * 4), including options.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// Flags.
    #[inline]
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[field::FLAGS])
    }

    /// Window size (unscaled).
    #[inline]
    pub fn window(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::WIN_SIZE.start)
    }

    /// Checksum.
    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// Urgent pointer.
    #[inline]
    pub fn urgent(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::URGENT.start)
    }

    /// Options: bytes 20..header_len.
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// Segment data after the header (to the end of the buffer).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// Whether the checksum over pseudo header + whole buffer is correct. The buffer must
    /// be exactly the segment (the IPv4 payload).
    #[inline]
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let data = self.buffer.as_ref();
        let Ok(len) = u16::try_from(data.len()) else {
            return false;
        };
        let s = checksum::pseudo_header_sum(src, dst, IpProtocol::Tcp.into(), len)
            + checksum::sum(data);
        checksum::fold(s) == 0xffff
    }

    /// Whether the checksum over the IPv6 pseudo header (RFC 8200 §8.1) + whole buffer
    /// is correct. The buffer must be exactly the segment (the upper-layer payload).
    #[inline]
    pub fn verify_checksum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        let data = self.buffer.as_ref();
        let Ok(len) = u32::try_from(data.len()) else {
            return false;
        };
        let s = checksum::pseudo_header_sum_v6(src, dst, IpProtocol::Tcp.into(), len)
            + checksum::sum(data);
        checksum::fold(s) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
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

    /// Sets the sequence number.
    #[inline]
    pub fn set_seq_number(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::SEQ_NUM.start, value);
    }

    /// Sets the acknowledgment number.
    #[inline]
    pub fn set_ack_number(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::ACK_NUM.start, value);
    }

    /// Sets the header length in bytes (a multiple of 4, 20..=60); the low nibble of
    /// byte 12 (reserved bits and the historic NS flag) is cleared.
    #[inline]
    pub fn set_header_len(&mut self, value: usize) {
        debug_assert!(value & 3 == 0 && (HEADER_LEN..=60).contains(&value));
        self.buffer.as_mut()[field::DATA_OFF] = ((value / 4) as u8) << 4;
    }

    /// Sets the flags.
    #[inline]
    pub fn set_flags(&mut self, value: TcpFlags) {
        self.buffer.as_mut()[field::FLAGS] = value.0;
    }

    /// Sets the window size.
    #[inline]
    pub fn set_window(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::WIN_SIZE.start, value);
    }

    /// Sets the checksum.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM.start, value);
    }

    /// Sets the urgent pointer.
    #[inline]
    pub fn set_urgent(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::URGENT.start, value);
    }

    /// Mutable options.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let range = HEADER_LEN..self.header_len();
        &mut self.buffer.as_mut()[range]
    }

    /// Mutable payload.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }

    /// Computes and writes the checksum over pseudo header + whole buffer. The buffer must
    /// be exactly the segment, at most 65535 bytes.
    #[inline]
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        debug_assert!(data.len() <= usize::from(u16::MAX));
        let s = checksum::pseudo_header_sum(src, dst, IpProtocol::Tcp.into(), data.len() as u16)
            + checksum::sum(data);
        self.set_checksum(!checksum::fold(s));
    }

    /// Computes and writes the checksum over the IPv6 pseudo header + whole buffer. The
    /// buffer must be exactly the segment.
    #[inline]
    pub fn fill_checksum_v6(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        debug_assert!(u32::try_from(data.len()).is_ok());
        let s = checksum::pseudo_header_sum_v6(src, dst, IpProtocol::Tcp.into(), data.len() as u32)
            + checksum::sum(data);
        self.set_checksum(!checksum::fold(s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

    /// SYN 198.18.0.1:40000 -> 198.18.0.2:80, seq 0x01020304, window 64240, with options
    /// MSS 1460, SACK permitted, timestamps (1, 0), NOP, window scale 7.
    static SYN: [u8; 40] = [
        0x9c, 0x40, 0x00, 0x50, // ports
        0x01, 0x02, 0x03, 0x04, // seq
        0x00, 0x00, 0x00, 0x00, // ack
        0xa0, 0x02, 0xfa, 0xf0, // offset 10, SYN, window
        0x20, 0x50, 0x00, 0x00, // checksum, urgent
        0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
        0x00, 0x01, 0x03, 0x03, 0x07,
    ];

    #[test]
    fn deconstruct() {
        let p = TcpPacket::new_checked(&SYN[..]).unwrap();
        assert_eq!(p.src_port(), 40000);
        assert_eq!(p.dst_port(), 80);
        assert_eq!(p.seq_number(), 0x0102_0304);
        assert_eq!(p.ack_number(), 0);
        assert_eq!(p.header_len(), 40);
        assert_eq!(p.flags(), TcpFlags::SYN);
        assert!(p.flags().contains(TcpFlags::SYN));
        assert!(!p.flags().contains(TcpFlags::SYN | TcpFlags::ACK));
        assert_eq!(p.window(), 64240);
        assert_eq!(p.checksum(), 0x2050);
        assert_eq!(p.urgent(), 0);
        assert_eq!(p.options(), &SYN[20..]);
        assert!(p.payload().is_empty());
        assert!(p.verify_checksum(SRC, DST));
        assert!(!p.verify_checksum(DST, Ipv4Addr::new(198, 18, 0, 3)));
    }

    #[test]
    fn construct() {
        let mut bytes = [0xa5u8; 40];
        let mut p = TcpPacket::new_unchecked(&mut bytes[..]);
        p.set_src_port(40000);
        p.set_dst_port(80);
        p.set_seq_number(0x0102_0304);
        p.set_ack_number(0);
        p.set_header_len(40);
        p.set_flags(TcpFlags::SYN);
        p.set_window(64240);
        p.set_urgent(0);
        p.options_mut().copy_from_slice(&SYN[20..]);
        p.fill_checksum(SRC, DST);
        assert_eq!(p.into_inner(), &SYN[..]);
    }

    #[test]
    fn nat_port_and_address_rewrite() {
        // DNAT to 10.0.0.7:8080 patched incrementally, compared with a full fill.
        let new_dst = Ipv4Addr::new(10, 0, 0, 7);
        let mut bytes = SYN;
        let mut p = TcpPacket::new_checked(&mut bytes[..]).unwrap();
        let mut c = p.checksum();
        c = checksum::update32(c, DST.into(), new_dst.into());
        c = checksum::update16(c, p.dst_port(), 8080);
        p.set_dst_port(8080);
        p.set_checksum(c);
        assert!(p.verify_checksum(SRC, new_dst));
        p.fill_checksum(SRC, new_dst);
        assert_eq!(p.checksum(), c);
    }

    #[test]
    fn payload_and_odd_length() {
        let mut bytes = [0u8; 23];
        let mut p = TcpPacket::new_unchecked(&mut bytes[..]);
        p.set_header_len(20);
        p.set_flags(TcpFlags::PSH | TcpFlags::ACK);
        p.payload_mut().copy_from_slice(b"abc");
        p.fill_checksum(SRC, DST);
        let p = TcpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.payload(), b"abc");
        assert!(p.options().is_empty());
        assert!(p.verify_checksum(SRC, DST));
        assert!(p.flags().contains(TcpFlags::ACK));
        assert!(p.flags().intersects(TcpFlags::FIN | TcpFlags::PSH));
        assert!(!p.flags().intersects(TcpFlags::SYN | TcpFlags::RST));
    }

    #[test]
    fn ipv6_checksum() {
        // scapy 2.5: TCP(sport=40000, dport=80, flags="S", seq=0x01020304, window=64240,
        // options=[]) under IPv6(src="2001:db8::1", dst="2001:db8::2").
        let a: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let seg = [
            0x9c, 0x40, 0x00, 0x50, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x00, 0x50, 0x02,
            0xfa, 0xf0, 0xb8, 0xe6, 0x00, 0x00,
        ];
        let p = TcpPacket::new_checked(&seg[..]).unwrap();
        assert!(p.verify_checksum_v6(a, b));
        assert!(!p.verify_checksum_v6(b, "2001:db8::3".parse().unwrap()));
        let mut bytes = [0xa5u8; 20];
        bytes[..16].copy_from_slice(&seg[..16]);
        bytes[18..].copy_from_slice(&seg[18..]);
        let mut q = TcpPacket::new_unchecked(&mut bytes[..]);
        q.fill_checksum_v6(a, b);
        assert_eq!(bytes, seg);
    }

    #[test]
    fn truncated() {
        for len in 0..SYN.len() {
            assert_eq!(
                TcpPacket::new_checked(&SYN[..len]),
                Err(Error::Truncated),
                "len {len}"
            );
        }
    }

    #[test]
    fn malformed() {
        for offset in 0..5u8 {
            let mut bytes = SYN;
            bytes[12] = offset << 4;
            assert_eq!(
                TcpPacket::new_checked(&bytes[..]),
                Err(Error::Malformed),
                "data offset {offset}"
            );
        }
        // Data offset 15 (60 bytes) beyond a 40-byte buffer.
        let mut bytes = SYN;
        bytes[12] = 0xf0;
        assert_eq!(TcpPacket::new_checked(&bytes[..]), Err(Error::Truncated));
    }

    #[test]
    fn flags_display() {
        assert_eq!((TcpFlags::SYN | TcpFlags::ACK).to_string(), "SYN|ACK");
        assert_eq!(TcpFlags::empty().to_string(), "-");
        assert_eq!(format!("{:?}", TcpFlags::RST), "TcpFlags(RST)");
        let mut f = TcpFlags::FIN;
        f |= TcpFlags::ACK;
        assert_eq!(f.bits(), 0x11);
        assert_eq!(f & TcpFlags::ACK, TcpFlags::ACK);
        assert!(TcpFlags::default().is_empty());
    }
}
