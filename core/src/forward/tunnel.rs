//! VS/TUN: the client's packet, unchanged, goes inside an outer IPv4 header
//! (protocol 4, IPIP, RFC 2003) from the port's address to the real's. The
//! outer header copies the inner DSCP/ECN, DF bit and identification.

use std::net::Ipv4Addr;

use super::{get16, put16, put32, IP};
use crate::buffer::PacketBuf;
use crate::wire::checksum;

/// The size of the outer header.
pub const OVERHEAD: usize = 20;
/// The TTL of the outer header.
pub const OUTER_TTL: u8 = 64;

/// Wraps the IPv4 packet of `pkt` (whose total length is `inner_len`) in an
/// outer header. Ethernet padding after the inner packet is trimmed. False
/// when the buffer has no headroom for it.
#[inline]
pub fn encapsulate<B: PacketBuf>(
    pkt: &mut B,
    inner_len: usize,
    src: Ipv4Addr,
    dst: Ipv4Addr,
) -> bool {
    if pkt.len() > IP + inner_len && !pkt.set_len(IP + inner_len) {
        return false;
    }
    if !pkt.prepend(OVERHEAD) {
        return false;
    }
    let b = pkt.data_mut();
    // The Ethernet header moves to the new front; the caller sets its MACs.
    b.copy_within(OVERHEAD..OVERHEAD + IP, 0);
    let inner = IP + OVERHEAD;
    let tos = b[inner + 1];
    let ident = get16(b, inner + 4);
    let df = b[inner + 6] & 0x40;
    let o = IP;
    b[o] = 0x45;
    b[o + 1] = tos;
    put16(b, o + 2, (inner_len + OVERHEAD) as u16);
    put16(b, o + 4, ident);
    b[o + 6] = df;
    b[o + 7] = 0;
    b[o + 8] = OUTER_TTL;
    b[o + 9] = 4;
    put16(b, o + 10, 0);
    put32(b, o + 12, src.into());
    put32(b, o + 16, dst.into());
    let c = checksum::checksum(&b[o..o + 20]);
    put16(b, o + 10, c);
    true
}
