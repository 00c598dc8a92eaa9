//! VS/TUN: the client's packet, unchanged, goes inside an outer IP header
//! from the port's address to the real's:
//! - IPv4 in IPv4 (protocol 4, IPIP, RFC 2003): the outer header copies
//!   the inner DSCP/ECN, DF bit and identification;
//! - IPv6 in IPv6 (next header 41, RFC 2473) and IPv4 in IPv6 (next header
//!   4, "4in6", for an IPv4 VIP with IPv6 reals): the outer traffic class
//!   copies the inner one (IPv4: the DSCP/ECN byte), and the flow label is
//!   taken from the fixed hash of the inner flow (RFC 6438), so that
//!   equal-cost paths towards the reals spread tunnels by flow, the same
//!   on every appliance. IPv6 never fragments: what does not fit is
//!   answered with "packet too big" (or, 4in6, "fragmentation needed").

use std::net::{Ipv4Addr, Ipv6Addr};

use super::IP;
use crate::buffer::PacketBuf;
use crate::wire::ipv6::{self, Ipv6Packet, Ipv6Repr};
use crate::wire::{ethernet, ipv4, EtherType, EthernetFrame, IpProtocol, Ipv4Packet, Ipv4Repr};

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
    if let (Some(f), Ok(total)) = (
        b.first_chunk_mut::<WRAPPED>(),
        u16::try_from(inner_len + OVERHEAD),
    ) {
        write_outer(f, total, src, dst);
        return true;
    }
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

/// The front of a wrapped frame that [`write_outer`] writes and reads:
/// the Ethernet header, the outer header and the inner fixed header.
const WRAPPED: usize = IP + OVERHEAD + ipv4::HEADER_LEN;

/// [`encapsulate`]'s work on a frame whose front is all there (the
/// pipeline's always is: its inner packet has a whole header), through
/// views of fixed size: no bounds check per field, the outer header made
/// in registers ([`ipv4::emit_ipip_outer`]). The same bytes as the
/// general path (`tunnel_outer_header_checksum_is_right`).
#[inline(always)]
fn write_outer(f: &mut [u8; WRAPPED], total_len: u16, src: Ipv4Addr, dst: Ipv4Addr) {
    let (front, inner) = f.split_at_mut(IP + OVERHEAD);
    // The Ethernet header moves to the new front; the caller sets its MACs.
    front.copy_within(OVERHEAD..OVERHEAD + IP, 0);
    if let (Ok(outer), Ok(inner)) = (
        <&mut [u8; OVERHEAD]>::try_from(&mut front[IP..]),
        <&[u8; ipv4::HEADER_LEN]>::try_from(&*inner),
    ) {
        ipv4::emit_ipip_outer(outer, inner, total_len, src, dst);
    }
}

/// The size of an outer IPv6 header.
pub const OVERHEAD6: usize = ipv6::HEADER_LEN;

/// The outer IPv6 flow label for an inner flow with fixed hash `flow_hash`.
#[inline]
pub fn flow_label(flow_hash: u64) -> u32 {
    (flow_hash as u32) & 0xf_ffff
}

/// Wraps the IPv6 (`inner_v6`) or IPv4 packet of `pkt`, `inner_len` bytes
/// long, in an outer IPv6 header from `src` to `dst` with flow label
/// `label`. Ethernet padding after the inner packet is trimmed. False when
/// the buffer has no headroom for it.
#[inline]
pub fn encapsulate6<B: PacketBuf>(
    pkt: &mut B,
    inner_len: usize,
    inner_v6: bool,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    label: u32,
) -> bool {
    if pkt.len() > IP + inner_len && !pkt.set_len(IP + inner_len) {
        return false;
    }
    if !pkt.prepend(OVERHEAD6) {
        return false;
    }
    let b = pkt.data_mut();
    b.copy_within(OVERHEAD6..OVERHEAD6 + ethernet::HEADER_LEN, 0);
    let (eth, rest) = b.split_at_mut(IP);
    let (outer, inner) = rest.split_at_mut(OVERHEAD6);
    let (traffic_class, next_header) = if inner_v6 {
        (
            Ipv6Packet::new_unchecked(&*inner).traffic_class(),
            IpProtocol::Ipv6,
        )
    } else {
        (
            Ipv4Packet::new_unchecked(&*inner).dscp_ecn(),
            IpProtocol::IpIp,
        )
    };
    EthernetFrame::new_unchecked(eth).set_ethertype(EtherType::Ipv6);
    Ipv6Repr {
        src,
        dst,
        next_header,
        payload_len: inner_len,
        hop_limit: ipv6::DEFAULT_HOP_LIMIT,
        traffic_class,
        flow_label: label,
    }
    .emit(&mut Ipv6Packet::new_unchecked(outer));
    true
}
