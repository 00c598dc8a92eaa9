//! How a packet is sent to its real: the three Linux Virtual Server
//! methods, each a rewrite of the frame in place (`nat`, `tunnel`,
//! `direct_route`), and the ICMP messages that go with them (`icmp`).
//! They work on plain bytes of a frame whose headers the pipeline has
//! already checked: Ethernet at 0, a 20-byte IPv4 header at 14.

pub mod direct_route;
pub mod icmp;
pub mod nat;
pub mod tunnel;

use lb_config::MacAddr;

use crate::wire::checksum;

/// Offset of the IPv4 header in a frame.
pub const IP: usize = 14;
/// Offset of the transport header (the pipeline drops IP options).
pub const L4: usize = IP + 20;

/// Sets the Ethernet destination and source.
#[inline]
pub fn set_macs(frame: &mut [u8], dst: MacAddr, src: MacAddr) {
    frame[0..6].copy_from_slice(&dst.0);
    frame[6..12].copy_from_slice(&src.0);
}

#[inline]
pub(crate) fn get16(b: &[u8], at: usize) -> u16 {
    let a: [u8; 2] = b[at..at + 2].try_into().expect("a 2-byte slice");
    u16::from_be_bytes(a)
}

#[inline]
pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub(crate) fn get32(b: &[u8], at: usize) -> u32 {
    let a: [u8; 4] = b[at..at + 4].try_into().expect("a 4-byte slice");
    u32::from_be_bytes(a)
}

#[inline]
pub(crate) fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// Decrements the TTL of the IPv4 header at `ip` (RFC 1624 update).
#[inline]
pub fn decrement_ttl(b: &mut [u8], ip: usize) {
    let old = get16(b, ip + 8);
    let new = old - 0x0100;
    put16(b, ip + 8, new);
    let c = get16(b, ip + 10);
    put16(b, ip + 10, checksum::update16(c, old, new));
}

/// Where a transport checksum sits, if the protocol has one we update.
#[inline]
pub(crate) fn l4_checksum_offset(proto: u8) -> Option<usize> {
    match proto {
        6 => Some(16),
        17 => Some(6),
        _ => None,
    }
}

/// Updates a transport checksum at `at` for a 32-bit change of a pseudo
/// header or header field. A UDP checksum of 0 means "none" and stays 0; a
/// computed 0 is sent as 0xffff.
#[inline]
pub(crate) fn update_l4_32(b: &mut [u8], at: usize, udp: bool, old: u32, new: u32) {
    let c = get16(b, at);
    if udp && c == 0 {
        return;
    }
    let mut n = checksum::update32(c, old, new);
    if udp && n == 0 {
        n = 0xffff;
    }
    put16(b, at, n);
}

#[inline]
pub(crate) fn update_l4_16(b: &mut [u8], at: usize, udp: bool, old: u16, new: u16) {
    let c = get16(b, at);
    if udp && c == 0 {
        return;
    }
    let mut n = checksum::update16(c, old, new);
    if udp && n == 0 {
        n = 0xffff;
    }
    put16(b, at, n);
}

/// Rewrites one address (source when `src`, else destination) of the IPv4
/// header at `ip`, fixing the header checksum and, when the transport
/// header at `l4` is complete enough, its checksum too.
#[inline]
pub(crate) fn rewrite_addr(b: &mut [u8], ip: usize, src: bool, new: u32, l4: Option<(usize, u8)>) {
    let at = if src { ip + 12 } else { ip + 16 };
    let old = get32(b, at);
    put32(b, at, new);
    let c = get16(b, ip + 10);
    put16(b, ip + 10, checksum::update32(c, old, new));
    if let Some((l4, proto)) = l4 {
        if let Some(off) = l4_checksum_offset(proto) {
            if l4 + off + 2 <= b.len() {
                update_l4_32(b, l4 + off, proto == 17, old, new);
            }
        }
    }
}

/// Rewrites a transport port (source when `src`) of the header at `l4`,
/// fixing its checksum when present in the buffer.
#[inline]
pub(crate) fn rewrite_port(b: &mut [u8], l4: usize, proto: u8, src: bool, new: u16) {
    let at = if src { l4 } else { l4 + 2 };
    let old = get16(b, at);
    put16(b, at, new);
    if let Some(off) = l4_checksum_offset(proto) {
        if l4 + off + 2 <= b.len() {
            update_l4_16(b, l4 + off, proto == 17, old, new);
        }
    }
}
