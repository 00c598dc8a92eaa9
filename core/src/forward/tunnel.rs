//! VS/TUN: the client's packet, unchanged, goes inside an outer IPv4 header
//! (protocol 4, IPIP, RFC 2003) from the port's address to the real's. The
//! outer header copies the inner DSCP/ECN, DF bit and identification.

use std::net::Ipv4Addr;

use super::IP;
use crate::buffer::PacketBuf;
use crate::wire::{ethernet, ipv4, IpProtocol, Ipv4Packet, Ipv4Repr};

/// The size of the outer header.
pub const OVERHEAD: usize = ipv4::HEADER_LEN;

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
    b.copy_within(OVERHEAD..OVERHEAD + ethernet::HEADER_LEN, 0);
    let (outer, inner) = b[IP..].split_at_mut(OVERHEAD);
    let inner = Ipv4Packet::new_unchecked(&*inner);
    Ipv4Repr {
        src,
        dst,
        protocol: IpProtocol::IpIp,
        payload_len: inner_len,
        ttl: ipv4::DEFAULT_TTL,
        dont_fragment: inner.dont_fragment(),
        ident: inner.ident(),
        dscp_ecn: inner.dscp_ecn(),
    }
    .emit(&mut Ipv4Packet::new_unchecked(outer));
    true
}
