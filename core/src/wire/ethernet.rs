//! Ethernet II frames: a zero-copy [`EthernetFrame`] view and an owned [`EthernetRepr`].
//!
//! Only the 14-byte untagged header is interpreted; an 802.1Q tag shows up as
//! [`EtherType::Vlan`] and is left to the caller.

use core::fmt;
use core::ops::{Range, RangeFrom};

use super::{read_u16, write_u16, Error, Result};

pub use lb_config::MacAddr;

/// A 48-bit MAC address; the workspace-wide [`MacAddr`] from `lb_config`.
pub type EthernetAddress = MacAddr;

/// The address in `data`, which must be exactly six bytes long (callers pass fixed
/// in-bounds ranges).
#[inline]
pub(crate) fn mac_from_bytes(data: &[u8]) -> MacAddr {
    let mut bytes = [0u8; 6];
    bytes.copy_from_slice(data);
    MacAddr(bytes)
}

/// The EtherType of an Ethernet II frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EtherType {
    /// 0x0800.
    Ipv4,
    /// 0x0806.
    Arp,
    /// 0x86dd.
    Ipv6,
    /// 0x8100, an IEEE 802.1Q tag.
    Vlan,
    /// Anything else.
    Unknown(u16),
}

impl From<u16> for EtherType {
    fn from(value: u16) -> Self {
        match value {
            0x0800 => EtherType::Ipv4,
            0x0806 => EtherType::Arp,
            0x86dd => EtherType::Ipv6,
            0x8100 => EtherType::Vlan,
            other => EtherType::Unknown(other),
        }
    }
}

impl From<EtherType> for u16 {
    fn from(value: EtherType) -> Self {
        match value {
            EtherType::Ipv4 => 0x0800,
            EtherType::Arp => 0x0806,
            EtherType::Ipv6 => 0x86dd,
            EtherType::Vlan => 0x8100,
            EtherType::Unknown(other) => other,
        }
    }
}

impl fmt::Display for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EtherType::Ipv4 => f.write_str("IPv4"),
            EtherType::Arp => f.write_str("ARP"),
            EtherType::Ipv6 => f.write_str("IPv6"),
            EtherType::Vlan => f.write_str("802.1Q"),
            EtherType::Unknown(v) => write!(f, "0x{v:04x}"),
        }
    }
}

mod field {
    use super::{Range, RangeFrom};

    pub const DESTINATION: Range<usize> = 0..6;
    pub const SOURCE: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const PAYLOAD: RangeFrom<usize> = 14..;
}

/// Length of the Ethernet II header.
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// A read/write view of an Ethernet II frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buffer` without checking its length; accessors may panic.
    pub const fn new_unchecked(buffer: T) -> EthernetFrame<T> {
        EthernetFrame { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<EthernetFrame<T>> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// `Err(Truncated)` if the buffer is shorter than the header.
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

    /// Header length (always 14).
    pub const fn header_len() -> usize {
        HEADER_LEN
    }

    /// Frame length for a payload of `payload_len` bytes.
    pub const fn buffer_len(payload_len: usize) -> usize {
        HEADER_LEN + payload_len
    }

    /// Destination MAC address.
    #[inline]
    pub fn dst_addr(&self) -> MacAddr {
        mac_from_bytes(&self.buffer.as_ref()[field::DESTINATION])
    }

    /// Source MAC address.
    #[inline]
    pub fn src_addr(&self) -> MacAddr {
        mac_from_bytes(&self.buffer.as_ref()[field::SOURCE])
    }

    /// EtherType.
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        EtherType::from(read_u16(self.buffer.as_ref(), field::ETHERTYPE.start))
    }

    /// Everything after the header (including any trailing padding).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

/// The destination and source MAC addresses as a frame's first 12 bytes
/// ([`EthernetFrame::set_addrs`]).
#[inline]
pub fn addrs(dst: MacAddr, src: MacAddr) -> [u8; 12] {
    let mut b = [0; 12];
    b[field::DESTINATION].copy_from_slice(&dst.0);
    b[field::SOURCE].copy_from_slice(&src.0);
    b
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets both MAC addresses from [`addrs`]: one 12-byte copy.
    #[inline]
    pub fn set_addrs(&mut self, both: &[u8; 12]) {
        self.buffer.as_mut()[field::DESTINATION.start..field::SOURCE.end].copy_from_slice(both);
    }

    /// Sets the destination MAC address.
    #[inline]
    pub fn set_dst_addr(&mut self, value: MacAddr) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&value.0);
    }

    /// Sets the source MAC address.
    #[inline]
    pub fn set_src_addr(&mut self, value: MacAddr) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&value.0);
    }

    /// Sets the EtherType.
    #[inline]
    pub fn set_ethertype(&mut self, value: EtherType) {
        write_u16(self.buffer.as_mut(), field::ETHERTYPE.start, value.into());
    }

    /// Mutable payload.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

/// An owned Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    /// Source MAC address.
    pub src: MacAddr,
    /// Destination MAC address.
    pub dst: MacAddr,
    /// EtherType.
    pub ethertype: EtherType,
}

impl EthernetRepr {
    /// Reads the header of a frame.
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<EthernetRepr> {
        frame.check_len()?;
        Ok(EthernetRepr {
            src: frame.src_addr(),
            dst: frame.dst_addr(),
            ethertype: frame.ethertype(),
        })
    }

    /// Header length (always 14).
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header; the payload is left alone.
    ///
    /// # Panics
    /// If the frame's buffer is shorter than 14 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut EthernetFrame<T>) {
        frame.set_src_addr(self.src);
        frame.set_dst_addr(self.dst);
        frame.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Broadcast ARP request who-has 198.18.0.2 tell 198.18.0.1 (02:00:00:00:00:01).
    static FRAME: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // src
        0x08, 0x06, // ARP
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // htype ptype hlen plen oper
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0xc6, 0x12, 0x00, 0x01, // sha spa
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc6, 0x12, 0x00, 0x02, // tha tpa
    ];

    const SRC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);

    #[test]
    fn deconstruct() {
        let frame = EthernetFrame::new_checked(&FRAME[..]).unwrap();
        assert_eq!(frame.dst_addr(), MacAddr::BROADCAST);
        assert_eq!(frame.src_addr(), SRC);
        assert_eq!(frame.ethertype(), EtherType::Arp);
        assert_eq!(frame.payload(), &FRAME[14..]);
        let repr = EthernetRepr::parse(&frame).unwrap();
        assert_eq!(
            repr,
            EthernetRepr {
                src: SRC,
                dst: MacAddr::BROADCAST,
                ethertype: EtherType::Arp
            }
        );
        assert_eq!(repr.buffer_len(), 14);
    }

    #[test]
    fn construct() {
        let mut bytes = [0xa5u8; 42];
        let mut frame = EthernetFrame::new_unchecked(&mut bytes[..]);
        frame.set_dst_addr(MacAddr::BROADCAST);
        frame.set_src_addr(SRC);
        frame.set_ethertype(EtherType::Arp);
        frame.payload_mut().copy_from_slice(&FRAME[14..]);
        assert_eq!(frame.into_inner(), &FRAME[..]);
    }

    #[test]
    fn emit_repr() {
        let mut bytes = [0xa5u8; 42];
        bytes[14..].copy_from_slice(&FRAME[14..]);
        let repr = EthernetRepr {
            src: SRC,
            dst: MacAddr::BROADCAST,
            ethertype: EtherType::Arp,
        };
        repr.emit(&mut EthernetFrame::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, FRAME);
        assert_eq!(EthernetFrame::<&[u8]>::buffer_len(28), 42);
    }

    #[test]
    fn truncated() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                EthernetFrame::new_checked(&FRAME[..len]),
                Err(Error::Truncated)
            );
        }
        let bare = EthernetFrame::new_checked(&FRAME[..HEADER_LEN]).unwrap();
        assert!(bare.payload().is_empty());
    }

    #[test]
    fn ethertype_round_trip() {
        for v in [0x0800u16, 0x0806, 0x86dd, 0x8100, 0x88cc, 0] {
            assert_eq!(u16::from(EtherType::from(v)), v);
        }
        assert_eq!(EtherType::from(0x88cc), EtherType::Unknown(0x88cc));
        assert_eq!(EtherType::from(0x0800), EtherType::Ipv4);
        assert_eq!(EtherType::Unknown(0x88cc).to_string(), "0x88cc");
    }

    #[test]
    fn address_properties() {
        assert_eq!(SRC.to_string(), "02:00:00:00:00:01");
        assert!(SRC.is_unicast() && !SRC.is_broadcast());
        assert!(MacAddr::BROADCAST.is_multicast());
        assert!(MacAddr::BROADCAST.is_broadcast());
        assert!(MacAddr([0x01, 0, 0x5e, 0, 0, 1]).is_multicast());
    }
}
