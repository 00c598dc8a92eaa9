//! VS/NAT: requests get the real's address and port as destination, replies
//! get the VIP and service port back as source. Checksums are updated
//! incrementally (RFC 1624), each with one fold for all its changes, and
//! the TTL is decremented, as a router does.

use std::net::Ipv4Addr;

use super::{get16, get32, l4_checksum_offset, put16, put32, IP, L4};
use crate::wire::checksum::Delta;

/// Client -> VIP:port becomes client -> real:port.
#[inline]
pub fn rewrite_request(frame: &mut [u8], proto: u8, real: Ipv4Addr, real_port: u16) {
    rewrite(frame, proto, false, real.into(), real_port);
}

/// Real:port -> client becomes VIP:port -> client.
#[inline]
pub fn rewrite_reply(frame: &mut [u8], proto: u8, vip: Ipv4Addr, vip_port: u16) {
    rewrite(frame, proto, true, vip.into(), vip_port);
}

/// Replaces the source (or destination) address and port, decrements the
/// TTL, and fixes both checksums.
#[inline]
fn rewrite(b: &mut [u8], proto: u8, src: bool, addr: u32, port: u16) {
    let (addr_at, port_at) = if src {
        (IP + 12, L4)
    } else {
        (IP + 16, L4 + 2)
    };
    let old_addr = get32(b, addr_at);
    let old_port = get16(b, port_at);
    let old_ttl = get16(b, IP + 8);
    let new_ttl = old_ttl.wrapping_sub(0x0100);
    let ip = Delta::default()
        .change32(old_addr, addr)
        .change16(old_ttl, new_ttl);
    let c = get16(b, IP + 10);
    put16(b, IP + 10, ip.apply(c));
    put16(b, IP + 8, new_ttl);
    put32(b, addr_at, addr);
    if let Some(off) = l4_checksum_offset(proto) {
        let at = L4 + off;
        if at + 2 <= b.len() {
            let c = get16(b, at);
            let udp = proto == 17;
            // A UDP checksum of 0 means "none" and stays 0; a computed 0 is
            // sent as 0xffff.
            if !(udp && c == 0) {
                let mut n = Delta::default()
                    .change32(old_addr, addr)
                    .change16(old_port, port)
                    .apply(c);
                if udp && n == 0 {
                    n = 0xffff;
                }
                put16(b, at, n);
            }
        }
    }
    put16(b, port_at, port);
}
