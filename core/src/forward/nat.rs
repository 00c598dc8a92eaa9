//! VS/NAT: requests get the real's address and port as destination, replies
//! get the VIP and service port back as source, and the TTL is decremented,
//! as a router does. Checksums are updated by [`Rewrite::apply`].

use std::net::Ipv4Addr;

use super::{Rewrite, TcpAdjust, IP};

/// Client -> VIP:port becomes client -> real:port. `frame` holds a checked
/// TCP or UDP over IPv4 packet whose TTL is above 1.
#[inline]
pub fn rewrite_request(frame: &mut [u8], real: Ipv4Addr, real_port: u16) {
    Rewrite {
        dst: Some(real),
        dst_port: Some(real_port),
        decrement_ttl: true,
        ..Rewrite::default()
    }
    .apply(&mut frame[IP..]);
}

/// Real:port -> client becomes VIP:port -> client.
#[inline]
pub fn rewrite_reply(frame: &mut [u8], vip: Ipv4Addr, vip_port: u16) {
    Rewrite {
        src: Some(vip),
        src_port: Some(vip_port),
        decrement_ttl: true,
        ..Rewrite::default()
    }
    .apply(&mut frame[IP..]);
}

/// [`rewrite_request`] for a flow the SYN proxy answered the handshake of:
/// its TCP translation too, in the same checksum step. Out of line: the
/// plain rewrite stays free of it.
#[inline(never)]
pub fn rewrite_request_translated(
    frame: &mut [u8],
    real: Ipv4Addr,
    real_port: u16,
    tcp: TcpAdjust,
) {
    Rewrite {
        dst: Some(real),
        dst_port: Some(real_port),
        decrement_ttl: true,
        tcp: Some(tcp),
        ..Rewrite::default()
    }
    .apply(&mut frame[IP..]);
}

/// [`rewrite_reply`] for a flow the SYN proxy answered the handshake of.
#[inline(never)]
pub fn rewrite_reply_translated(frame: &mut [u8], vip: Ipv4Addr, vip_port: u16, tcp: TcpAdjust) {
    Rewrite {
        src: Some(vip),
        src_port: Some(vip_port),
        decrement_ttl: true,
        tcp: Some(tcp),
        ..Rewrite::default()
    }
    .apply(&mut frame[IP..]);
}
