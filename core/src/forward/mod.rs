//! How a packet is sent to its real: the three Linux Virtual Server
//! methods, each a rewrite of the frame in place (`nat`, `tunnel`,
//! `direct_route`), and the ICMP messages that go with them (`icmp`).
//! They work on frames the pipeline has classified: Ethernet at 0, a
//! 20-byte IPv4 header at [`IP`], the transport header at [`L4`]; or an
//! IPv6 header at [`IP`] and the transport header where the pipeline found
//! it past any extension headers. Every header field is read and written
//! through the `wire` views.
//!
//! Checksums: a rewrite is described as a [`Rewrite`] (which fields get
//! which values); [`Rewrite::apply`] writes them and updates the IPv4 and
//! transport checksums incrementally (RFC 1624) in one step, so no rewrite
//! can forget a checksum.

pub mod direct_route;
pub mod icmp;
pub mod icmpv6;
pub mod nat;
pub mod tunnel;

use std::net::{Ipv4Addr, Ipv6Addr};

use lb_config::MacAddr;

use crate::wire::checksum::{self, Delta};
use crate::wire::ipv6::Ipv6Packet;
use crate::wire::{
    ethernet, ipv4, tcp_options, EthernetFrame, IpProtocol, Ipv4Packet, TcpFlags, TcpPacket,
    TransportHeader,
};

/// Offset of the IPv4 header in a frame.
pub const IP: usize = ethernet::HEADER_LEN;
/// Offset of the transport header (the pipeline drops IP options).
pub const L4: usize = IP + ipv4::HEADER_LEN;

/// Sets the Ethernet destination and source of `frame` (at least an
/// Ethernet header long: every frame the pipeline sends is).
#[inline]
pub fn set_macs(frame: &mut [u8], dst: MacAddr, src: MacAddr) {
    let mut eth = EthernetFrame::new_unchecked(frame);
    eth.set_dst_addr(dst);
    eth.set_src_addr(src);
}

/// The changes a forwarding method makes to an IPv4 packet's addresses,
/// ports and TTL. Applied by [`Rewrite::apply`], the one place where the
/// checksums of a rewrite are updated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rewrite {
    pub src: Option<Ipv4Addr>,
    pub dst: Option<Ipv4Addr>,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    /// Decrement the TTL, as a router does.
    pub decrement_ttl: bool,
    /// TCP only: the sequence-space translation of a flow whose handshake
    /// the SYN proxy answered (None for every other flow).
    pub tcp: Option<TcpAdjust>,
}

/// How the SYN proxy translates a segment of a flow it answered the
/// handshake of: numbers are added modulo 2^32 (a subtraction is the
/// addition of the negated value). Applied by [`Rewrite::apply`] in the
/// same checksum step as the addresses and ports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpAdjust {
    /// Added to the sequence number.
    pub seq_add: u32,
    /// Added to the acknowledgment number (when ACK is set).
    pub ack_add: u32,
    /// Added to both edges of every SACK block.
    pub sack_add: u32,
    /// Added to the timestamps option's TSval and TSecr.
    pub tsval_add: u32,
    pub tsecr_add: u32,
    /// The window becomes `(window << win_shl) >> win_shr`, at most 65535
    /// and never 0 unless it was 0 (a window in one side's scale rewritten
    /// into the other's).
    pub win_shl: u8,
    pub win_shr: u8,
}

impl TcpAdjust {
    /// Rescales a window (see [`TcpAdjust::win_shl`]).
    #[inline]
    pub fn rescale(&self, window: u16) -> u16 {
        if window == 0 {
            return 0;
        }
        let w = (u64::from(window) << self.win_shl) >> self.win_shr;
        w.clamp(1, 0xffff) as u16
    }

    /// Translates the TCP header at the start of `l4`, which may be a
    /// quote cut short (in an ICMP error): only the fields it holds
    /// change. Returns `delta` with the changes added.
    #[inline]
    fn apply(&self, l4: &mut [u8], mut delta: Delta) -> Delta {
        const SEQ_END: usize = 8;
        const FLAGS_END: usize = 14;
        const WINDOW_END: usize = 16;
        let len = l4.len();
        let mut t = TcpPacket::new_unchecked(&mut *l4);
        if len >= SEQ_END && self.seq_add != 0 {
            let old = t.seq_number();
            let new = old.wrapping_add(self.seq_add);
            t.set_seq_number(new);
            delta = delta.change32(old, new);
        }
        if len < FLAGS_END {
            return delta;
        }
        let flags = t.flags();
        if self.ack_add != 0 && flags.contains(TcpFlags::ACK) {
            let old = t.ack_number();
            let new = old.wrapping_add(self.ack_add);
            t.set_ack_number(new);
            delta = delta.change32(old, new);
        }
        // A SYN's window is never scaled.
        if len >= WINDOW_END && (self.win_shl | self.win_shr) != 0 && !flags.contains(TcpFlags::SYN)
        {
            let old = t.window();
            let new = self.rescale(old);
            t.set_window(new);
            delta = delta.change16(old, new);
        }
        if (self.sack_add | self.tsval_add | self.tsecr_add) == 0 {
            return delta;
        }
        let Ok(mut t) = TcpPacket::new_checked(l4) else {
            return delta;
        };
        let opts = t.options_mut();
        if opts.is_empty() {
            return delta;
        }
        let before = checksum::fold(checksum::sum(opts));
        if tcp_options::translate(opts, self.tsval_add, self.tsecr_add, self.sack_add) {
            delta = delta.change16(before, checksum::fold(checksum::sum(opts)));
        }
        delta
    }
}

impl Rewrite {
    /// Rewrites the IPv4 packet at the start of `packet` (a header the
    /// pipeline checked; its TTL above 1 when `decrement_ttl`): the fields,
    /// then the header checksum, then, for TCP and UDP, the ports and the
    /// transport checksum (pseudo header included) where the buffer holds
    /// them. `packet` may be a quote in an ICMP error, cut short.
    #[inline(always)]
    pub fn apply(&self, packet: &mut [u8]) {
        let mut ip = Ipv4Packet::new_unchecked(&mut *packet);
        let mut header = Delta::default();
        let mut pseudo = Delta::default();
        if let Some(a) = self.src {
            let old = ip.src_addr();
            ip.set_src_addr(a);
            header = header.change32(old.into(), a.into());
            pseudo = pseudo.change32(old.into(), a.into());
        }
        if let Some(a) = self.dst {
            let old = ip.dst_addr();
            ip.set_dst_addr(a);
            header = header.change32(old.into(), a.into());
            pseudo = pseudo.change32(old.into(), a.into());
        }
        if self.decrement_ttl {
            let (old, new) = ip.decrement_ttl();
            header = header.change16(old, new);
        }
        let c = ip.checksum();
        ip.set_checksum(header.apply(c));
        let (protocol, header_len) = (ip.protocol(), ip.header_len());
        let Some(l4) = packet.get_mut(header_len..) else {
            return;
        };
        let mut transport = pseudo;
        if let Some(adj) = self.tcp {
            if protocol == IpProtocol::Tcp {
                transport = adj.apply(&mut *l4, transport);
            }
        }
        let Ok(mut t) = TransportHeader::new_checked(protocol, l4) else {
            return;
        };
        if let Some(p) = self.src_port {
            transport = transport.change16(t.src_port(), p);
            t.set_src_port(p);
        }
        if let Some(p) = self.dst_port {
            transport = transport.change16(t.dst_port(), p);
            t.set_dst_port(p);
        }
        t.update_checksum(transport);
    }
}

/// The changes a forwarding method makes to an IPv6 packet's addresses,
/// ports and hop limit: [`Rewrite`] for IPv6, which has no header checksum
/// (the transport checksum covers the addresses through the pseudo header,
/// so it is updated for them as for the ports).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rewrite6 {
    pub src: Option<Ipv6Addr>,
    pub dst: Option<Ipv6Addr>,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    /// Decrement the hop limit, as a router does.
    pub decrement_hop_limit: bool,
    /// A TCP translation (a flow the SYN proxy answered), in the same
    /// checksum step, as [`Rewrite::tcp`].
    pub tcp: Option<TcpAdjust>,
}

impl Rewrite6 {
    /// Rewrites the IPv6 packet at the start of `packet` (a header the
    /// pipeline checked; its hop limit above 1 when `decrement_hop_limit`)
    /// whose `protocol` header starts `l4_offset` bytes in: the addresses
    /// and hop limit, then, for TCP and UDP, the ports and the checksum
    /// where the buffer holds them. `packet` may be a quote in an ICMPv6
    /// error, cut short.
    #[inline(always)]
    pub fn apply(&self, packet: &mut [u8], protocol: IpProtocol, l4_offset: usize) {
        if packet.len() < crate::wire::ipv6::HEADER_LEN {
            return;
        }
        let mut ip = Ipv6Packet::new_unchecked(&mut *packet);
        let mut pseudo = Delta::default();
        if let Some(a) = self.src {
            pseudo = pseudo.change128(ip.src_addr(), a);
            ip.set_src_addr(a);
        }
        if let Some(a) = self.dst {
            pseudo = pseudo.change128(ip.dst_addr(), a);
            ip.set_dst_addr(a);
        }
        if self.decrement_hop_limit {
            let h = ip.hop_limit();
            ip.set_hop_limit(h.saturating_sub(1));
        }
        let Some(l4) = packet.get_mut(l4_offset..) else {
            return;
        };
        let mut transport = pseudo;
        if let Some(adj) = self.tcp {
            if protocol == IpProtocol::Tcp {
                transport = adj.apply(&mut *l4, transport);
            }
        }
        let Ok(mut t) = TransportHeader::new_checked(protocol, l4) else {
            return;
        };
        if let Some(p) = self.src_port {
            transport = transport.change16(t.src_port(), p);
            t.set_src_port(p);
        }
        if let Some(p) = self.dst_port {
            transport = transport.change16(t.dst_port(), p);
            t.set_dst_port(p);
        }
        t.update_checksum(transport);
    }
}
