//! ICMP around forwarding: the "fragmentation needed" answer for packets
//! too big to tunnel, and the rewrite of ICMP errors that concern a NAT
//! flow (the packet quoted inside must be translated like the flow).

use std::net::Ipv4Addr;

use super::{decrement_ttl, get16, put16, put32, rewrite_addr, rewrite_port, IP};
use crate::buffer::PacketBuf;
use crate::wire::checksum;

/// ICMP header length.
pub const HEADER: usize = 8;
/// What an ICMP error quotes of the offending packet: its header (no
/// options here) and the first 8 bytes of its payload.
pub const QUOTE: usize = 28;

/// Turns the frame in place into an ICMP "fragmentation needed" (type 3,
/// code 4) from `from` (the VIP) back to the sender, quoting the offending
/// packet and announcing `mtu`. The caller sets the MACs. False if the
/// frame is too short to quote (it cannot be: the packet was too big).
pub fn frag_needed<B: PacketBuf>(pkt: &mut B, from: Ipv4Addr, mtu: u16) -> bool {
    const OUT: usize = IP + 20 + HEADER + QUOTE;
    if pkt.len() < IP + QUOTE {
        return false;
    }
    if pkt.len() < OUT && !pkt.set_len(OUT) {
        return false;
    }
    let b = pkt.data_mut();
    let sender = super::get32(b, IP + 12);
    b.copy_within(IP..IP + QUOTE, IP + 20 + HEADER);
    let icmp = IP + 20;
    b[icmp] = 3;
    b[icmp + 1] = 4;
    put16(b, icmp + 2, 0);
    put16(b, icmp + 4, 0);
    put16(b, icmp + 6, mtu);
    let c = checksum::checksum(&b[icmp..icmp + HEADER + QUOTE]);
    put16(b, icmp + 2, c);
    let o = IP;
    b[o] = 0x45;
    b[o + 1] = 0;
    put16(b, o + 2, (20 + HEADER + QUOTE) as u16);
    put16(b, o + 4, 0);
    put16(b, o + 6, 0);
    b[o + 8] = 64;
    b[o + 9] = 1;
    put16(b, o + 10, 0);
    put32(b, o + 12, from.into());
    put32(b, o + 16, sender);
    let c = checksum::checksum(&b[o..o + 20]);
    put16(b, o + 10, c);
    pkt.set_len(OUT)
}

/// The flow a quoted packet belongs to, as read from an ICMP error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quoted {
    pub proto: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
    /// Offset of the quoted IP header in the frame.
    pub ip: usize,
    /// Offset of the quoted transport header.
    pub l4: usize,
}

/// Reads the packet quoted by the ICMP error that starts at `icmp`. None
/// when it is too short to name a TCP or UDP flow.
pub fn quoted(b: &[u8], icmp: usize) -> Option<Quoted> {
    let ip = icmp + HEADER;
    let first = *b.get(ip)?;
    if first >> 4 != 4 || first & 0x0f < 5 {
        return None;
    }
    let l4 = ip + usize::from(first & 0x0f) * 4;
    if b.len() < l4 + 8 {
        return None;
    }
    let proto = b[ip + 9];
    if proto != 6 && proto != 17 {
        return None;
    }
    Some(Quoted {
        proto,
        src: Ipv4Addr::from(super::get32(b, ip + 12)),
        dst: Ipv4Addr::from(super::get32(b, ip + 16)),
        src_port: get16(b, l4),
        dst_port: get16(b, l4 + 2),
        ip,
        l4,
    })
}

/// Rewrites an ICMP error about a NAT flow. `outer_src` true changes the
/// outer source (an error from the real going to the client), else the
/// outer destination (an error to the VIP going to the real); the quoted
/// packet's opposite address and port change to `addr`/`port`. The ICMP
/// checksum is recomputed (the message is small); the TTL is decremented.
pub fn rewrite_nat_error(
    b: &mut [u8],
    icmp_end: usize,
    q: &Quoted,
    outer_src: bool,
    addr: Ipv4Addr,
    port: u16,
) {
    rewrite_addr(b, IP, outer_src, addr.into(), None);
    decrement_ttl(b, IP);
    // The quoted packet travelled the other way: its destination is our
    // outer source and vice versa.
    let quoted_src = !outer_src;
    let quoted_bytes = &mut b[..icmp_end];
    rewrite_addr(
        quoted_bytes,
        q.ip,
        quoted_src,
        addr.into(),
        Some((q.l4, q.proto)),
    );
    rewrite_port(quoted_bytes, q.l4, q.proto, quoted_src, port);
    let icmp = q.ip - HEADER;
    put16(b, icmp + 2, 0);
    let c = checksum::checksum(&b[icmp..icmp_end]);
    put16(b, icmp + 2, c);
}
