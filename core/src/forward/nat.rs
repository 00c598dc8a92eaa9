//! VS/NAT: requests get the real's address and port as destination, replies
//! get the VIP and service port back as source, and the TTL (IPv6: hop
//! limit) is decremented, as a router does. Checksums are updated by
//! [`Rewrite`] and [`Rewrite6`] (`apply_frame` on the established path;
//! NAT66: IPv6 to IPv6 only, never a translation between the families).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{NatSums, Rewrite, Rewrite6, TcpAdjust, IP};
use crate::wire::IpProtocol;

/// Client -> VIP:port becomes client -> real:port. `frame` holds a checked
/// TCP or UDP over IPv4 packet whose TTL is above 1.
#[inline(always)]
pub fn rewrite_request(frame: &mut [u8], real: Ipv4Addr, real_port: u16) {
    Rewrite {
        dst: Some(real),
        dst_port: Some(real_port),
        decrement_ttl: true,
        ..Rewrite::default()
    }
    .apply_frame(frame);
}

/// [`rewrite_request`] with its checksum changes worked out beforehand
/// (`sums`, made from the VIP and port the frame is to, and `real` and
/// `real_port`): the established path's, with the real's route at hand.
#[inline(always)]
pub fn rewrite_request_summed(frame: &mut [u8], real: Ipv4Addr, real_port: u16, sums: NatSums) {
    Rewrite {
        dst: Some(real),
        dst_port: Some(real_port),
        decrement_ttl: true,
        sums: Some(sums),
        ..Rewrite::default()
    }
    .apply_frame(frame);
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
    .apply_frame(frame);
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

/// NAT66: client -> VIP:port becomes client -> real:port. `frame` holds a
/// checked TCP or UDP over IPv6 packet (`protocol`, its header at
/// `l4_offset` from the IPv6 header) whose hop limit is above 1.
#[inline]
pub fn rewrite_request6(
    frame: &mut [u8],
    protocol: IpProtocol,
    l4_offset: usize,
    real: Ipv6Addr,
    real_port: u16,
) {
    Rewrite6 {
        dst: Some(real),
        dst_port: Some(real_port),
        decrement_hop_limit: true,
        ..Rewrite6::default()
    }
    .apply_frame(frame, protocol, l4_offset);
}

/// NAT66: real:port -> client becomes VIP:port -> client.
#[inline]
pub fn rewrite_reply6(
    frame: &mut [u8],
    protocol: IpProtocol,
    l4_offset: usize,
    vip: Ipv6Addr,
    vip_port: u16,
) {
    Rewrite6 {
        src: Some(vip),
        src_port: Some(vip_port),
        decrement_hop_limit: true,
        ..Rewrite6::default()
    }
    .apply_frame(frame, protocol, l4_offset);
}

/// [`rewrite_request6`] for a flow the SYN proxy answered the handshake
/// of: its TCP translation too, in the same checksum step. Out of line:
/// the plain rewrite stays free of it.
#[inline(never)]
pub fn rewrite_request6_translated(
    frame: &mut [u8],
    l4_offset: usize,
    real: Ipv6Addr,
    real_port: u16,
    tcp: TcpAdjust,
) {
    Rewrite6 {
        dst: Some(real),
        dst_port: Some(real_port),
        decrement_hop_limit: true,
        tcp: Some(tcp),
        ..Rewrite6::default()
    }
    .apply(&mut frame[IP..], IpProtocol::Tcp, l4_offset);
}

/// [`rewrite_reply6`] for a flow the SYN proxy answered the handshake of.
#[inline(never)]
pub fn rewrite_reply6_translated(
    frame: &mut [u8],
    l4_offset: usize,
    vip: Ipv6Addr,
    vip_port: u16,
    tcp: TcpAdjust,
) {
    Rewrite6 {
        src: Some(vip),
        src_port: Some(vip_port),
        decrement_hop_limit: true,
        tcp: Some(tcp),
        ..Rewrite6::default()
    }
    .apply(&mut frame[IP..], IpProtocol::Tcp, l4_offset);
}
