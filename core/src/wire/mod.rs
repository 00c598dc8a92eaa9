//! Wire formats: zero-copy views over packet bytes, in the style of smoltcp's `wire`.
//!
//! Each protocol has a `Packet<T: AsRef<[u8]>>` view whose `new_checked` validates the
//! lengths once, after which no accessor panics; getters read network byte order at fixed
//! offsets (never by casting to packed structs) and setters need `AsMut<[u8]>`. Owned
//! `Repr` types parse and emit the headers this appliance originates. No allocation.

use core::fmt;

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod ndp;
pub mod sync;
pub mod tcp;
pub mod tcp_options;
pub mod transport;
pub mod udp;

pub use arp::{ArpOperation, ArpPacket, ArpRepr};
pub use ethernet::{EtherType, EthernetAddress, EthernetFrame, EthernetRepr, MacAddr};
pub use icmpv4::{Icmpv4Packet, Icmpv4Type};
pub use icmpv6::{Icmpv6Packet, Icmpv6Repr, Icmpv6Type};
pub use ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
pub use ipv6::{walk_ext_headers, ExtHeaderError, Ipv6Packet, Ipv6Repr, UpperLayer};
pub use ndp::{NdpInvalid, NdpOption, NdpOptions, NdpRepr, NeighborFlags, NeighborPacket};
pub use tcp::{TcpFlags, TcpPacket};
pub use transport::TransportHeader;
pub use udp::UdpPacket;

/// Why a buffer could not be viewed or parsed as a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer is shorter than the header or a length field says it should be.
    Truncated,
    /// A field holds a value that makes the packet invalid (bad version, header length, ...).
    Malformed,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => f.write_str("truncated packet"),
            Error::Malformed => f.write_str("malformed packet"),
        }
    }
}

impl std::error::Error for Error {}

/// Result of parsing a wire format.
pub type Result<T> = core::result::Result<T, Error>;

/// Reads a big-endian `u16` at `at`. Callers guarantee the range is in bounds.
#[inline]
pub(crate) fn read_u16(data: &[u8], at: usize) -> u16 {
    let b: [u8; 2] = data[at..at + 2].try_into().expect("a 2-byte slice");
    u16::from_be_bytes(b)
}

/// Reads a big-endian `u32` at `at`. Callers guarantee the range is in bounds.
#[inline]
pub(crate) fn read_u32(data: &[u8], at: usize) -> u32 {
    let b: [u8; 4] = data[at..at + 4].try_into().expect("a 4-byte slice");
    u32::from_be_bytes(b)
}

/// Writes a big-endian `u16` at `at`.
#[inline]
pub(crate) fn write_u16(data: &mut [u8], at: usize, value: u16) {
    data[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

/// Writes a big-endian `u32` at `at`.
#[inline]
pub(crate) fn write_u32(data: &mut [u8], at: usize, value: u32) {
    data[at..at + 4].copy_from_slice(&value.to_be_bytes());
}

/// Reads the `u16` at `at` in the machine's byte order ("raw"): for
/// checksum arithmetic, which gives the same result byte-swapped whichever
/// order its words are read in ([`checksum::Delta`]), so that a rewrite
/// needs no byte swaps. Callers guarantee the range is in bounds.
#[inline]
pub(crate) fn read_raw_u16(data: &[u8], at: usize) -> u16 {
    let b: [u8; 2] = data[at..at + 2].try_into().expect("a 2-byte slice");
    u16::from_ne_bytes(b)
}

/// Reads the `u32` at `at` in the machine's byte order ([`read_raw_u16`]).
#[inline]
pub(crate) fn read_raw_u32(data: &[u8], at: usize) -> u32 {
    let b: [u8; 4] = data[at..at + 4].try_into().expect("a 4-byte slice");
    u32::from_ne_bytes(b)
}

/// Writes `value`, in the machine's byte order, at `at` ([`read_raw_u16`]).
#[inline]
pub(crate) fn write_raw_u16(data: &mut [u8], at: usize, value: u16) {
    data[at..at + 2].copy_from_slice(&value.to_ne_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_display() {
        assert_eq!(Error::Truncated.to_string(), "truncated packet");
        assert_eq!(Error::Malformed.to_string(), "malformed packet");
    }

    #[test]
    fn byte_order_helpers() {
        let mut buf = [0u8; 6];
        write_u16(&mut buf, 0, 0x1234);
        write_u32(&mut buf, 2, 0xdead_beef);
        assert_eq!(buf, [0x12, 0x34, 0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(read_u16(&buf, 0), 0x1234);
        assert_eq!(read_u32(&buf, 2), 0xdead_beef);
    }
}
