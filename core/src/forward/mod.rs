//! How a packet is sent to its real: the three Linux Virtual Server
//! methods, each a rewrite of the frame in place (`nat`, `tunnel`,
//! `direct_route`), and the ICMP messages that go with them (`icmp`).
//! They work on frames the pipeline has classified: Ethernet at 0, a
//! 20-byte IPv4 header at [`IP`], the transport header at [`L4`]. Every
//! header field is read and written through the `wire` views.
//!
//! Checksums: a rewrite is described as a [`Rewrite`] (which fields get
//! which values); [`Rewrite::apply`] writes them and updates the IPv4 and
//! transport checksums incrementally (RFC 1624) in one step, so no rewrite
//! can forget a checksum.

pub mod direct_route;
pub mod icmp;
pub mod nat;
pub mod tunnel;

use std::net::Ipv4Addr;

use lb_config::MacAddr;

use crate::wire::checksum::Delta;
use crate::wire::{ethernet, ipv4, EthernetFrame, Ipv4Packet, TransportHeader};

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
        let Ok(mut t) = TransportHeader::new_checked(protocol, l4) else {
            return;
        };
        let mut transport = pseudo;
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
