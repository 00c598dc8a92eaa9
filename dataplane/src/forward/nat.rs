//! VS/NAT: requests get the real's address and port as destination, replies
//! get the VIP and service port back as source. Checksums are updated
//! incrementally (RFC 1624) and the TTL is decremented, as a router does.

use std::net::Ipv4Addr;

use super::{decrement_ttl, rewrite_addr, rewrite_port, IP, L4};

/// Client -> VIP:port becomes client -> real:port.
#[inline]
pub fn rewrite_request(frame: &mut [u8], proto: u8, real: Ipv4Addr, real_port: u16) {
    rewrite_addr(frame, IP, false, real.into(), Some((L4, proto)));
    rewrite_port(frame, L4, proto, false, real_port);
    decrement_ttl(frame, IP);
}

/// Real:port -> client becomes VIP:port -> client.
#[inline]
pub fn rewrite_reply(frame: &mut [u8], proto: u8, vip: Ipv4Addr, vip_port: u16) {
    rewrite_addr(frame, IP, true, vip.into(), Some((L4, proto)));
    rewrite_port(frame, L4, proto, true, vip_port);
    decrement_ttl(frame, IP);
}
