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

#[cfg(test)]
mod recompute_tests;

use std::net::{Ipv4Addr, Ipv6Addr};

use lb_config::MacAddr;

use crate::wire::checksum::{self, Delta};
use crate::wire::ipv6::Ipv6Packet;
use crate::wire::{
    ethernet, ipv4, tcp, tcp_options, udp, EthernetFrame, IpProtocol, Ipv4Packet, TcpFlags,
    TcpPacket, TransportHeader,
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

/// [`set_macs`] from the two addresses joined beforehand
/// (`wire::ethernet::addrs`): one 12-byte copy.
#[inline]
pub fn set_addrs(frame: &mut [u8], both: &[u8; 12]) {
    EthernetFrame::new_unchecked(frame).set_addrs(both);
}

/// The changes a forwarding method makes to an IPv4 packet's addresses,
/// ports and TTL. Applied by [`Rewrite::apply`] (or, to a whole frame,
/// [`Rewrite::apply_frame`]), whose one body updates the checksums of
/// every rewrite.
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
    /// The checksum changes of exactly this rewrite, worked out beforehand
    /// ([`NatSums`]): the fixed-size path then neither reads the old
    /// fields nor sums their changes. The caller vouches that the packet
    /// holds the address and port the sums were made from (debug builds
    /// sum again and compare).
    pub sums: Option<NatSums>,
}

/// The checksum changes of a NAT rewrite of one address and port with the
/// TTL decremented: `from` (address, port) becomes `to`, in the header's
/// checksum (address and TTL) and the transport's (address and port,
/// through the pseudo header). A real's are fixed for a snapshot's life
/// (its service's VIP and port, its own address and port:
/// `Snapshot::real_route`), so they are worked out once, not per packet.
/// Each is the same [`Delta`] the per-packet sums make, to the bit: the
/// TTL's change `!old + new` is the same number whatever the TTL (debug
/// builds check each against the per-packet sums). Default: no change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NatSums {
    header: Delta,
    transport: Delta,
}

impl NatSums {
    /// The sums of rewriting `from` (address, port) into `to`, with the
    /// TTL decremented.
    pub fn new(from: (Ipv4Addr, u16), to: (Ipv4Addr, u16)) -> NatSums {
        // Addresses and ports as the machine reads their bytes
        // (`Rewrite::write_raw`'s order).
        let raw = |a: Ipv4Addr| u32::from_ne_bytes(a.octets());
        let raw16 = |p: u16| u16::from_ne_bytes([(p >> 8) as u8, p as u8]);
        let addr = Delta::default().change32(raw(from.0), raw(to.0));
        // The TTL and protocol word, any TTL above 0, decremented.
        let ttl = |t: u8| u16::from_ne_bytes([t, 0]);
        NatSums {
            header: addr.change16(ttl(2), ttl(1)),
            transport: addr.change16(raw16(from.1), raw16(to.1)),
        }
    }
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
        let ip = Ipv4Packet::new_unchecked(&*packet);
        let (protocol, header_len) = (ip.protocol(), ip.header_len());
        self.write(packet, protocol, header_len);
    }

    /// [`Rewrite::apply`] to a whole frame (Ethernet at 0) the pipeline
    /// classified (the established path's NAT rewrite, both directions).
    /// Without a translation (`tcp`), a 20-byte IPv4 header and a
    /// whole TCP or UDP header, as the pipeline's frames have, are
    /// rewritten through a view of fixed size, whose fields need no bounds
    /// check and whose checksum no length test; anything else takes
    /// `apply`, with the same result (the `apply_frame_agrees_with_apply`
    /// test); a frame shorter than an Ethernet header (never the
    /// pipeline's) is left alone.
    #[inline(always)]
    pub fn apply_frame(&self, frame: &mut [u8]) {
        const TCP_END: usize = L4 + tcp::HEADER_LEN;
        const UDP_END: usize = L4 + udp::HEADER_LEN;
        let protocol = match frame.get(IP..L4) {
            // A translation reads the options past the fixed header.
            Some(_) if self.tcp.is_some() => None,
            Some(h) => {
                let ip = Ipv4Packet::new_unchecked(h);
                (ip.version() == 4 && ip.header_len() == ipv4::HEADER_LEN).then(|| ip.protocol())
            }
            None => None,
        };
        match protocol {
            Some(IpProtocol::Tcp) => {
                if let Some(f) = frame.first_chunk_mut::<TCP_END>() {
                    return self.write_raw(&mut f[IP..], IpProtocol::Tcp);
                }
            }
            Some(IpProtocol::Udp) => {
                if let Some(f) = frame.first_chunk_mut::<UDP_END>() {
                    return self.write_raw(&mut f[IP..], IpProtocol::Udp);
                }
            }
            _ => {}
        }
        if let Some(packet) = frame.get_mut(IP..) {
            self.apply(packet);
        }
    }

    /// [`Rewrite::write`] without a translation, on a 20-byte header and a
    /// whole TCP or UDP header (`apply_frame`'s fixed-size path), its
    /// checksum arithmetic on words in the machine's byte order: the same
    /// bytes, without a byte swap per field read or written
    /// ([`Delta`]; the `apply_frame_agrees_with_apply` test).
    #[inline(always)]
    fn write_raw(&self, packet: &mut [u8], protocol: IpProtocol) {
        debug_assert!(self.tcp.is_none());
        // Sums stand for one address, one port and the TTL ([`NatSums`]).
        debug_assert!(
            self.sums.is_none()
                || (self.decrement_ttl
                    && self.src.is_some() != self.dst.is_some()
                    && self.src_port.is_some() != self.dst_port.is_some())
        );
        // An address as the machine reads its four bytes.
        let raw = |a: Ipv4Addr| u32::from_ne_bytes(a.octets());
        let mut ip = Ipv4Packet::new_unchecked(&mut *packet);
        let mut header = Delta::default();
        let mut pseudo = Delta::default();
        if let Some(a) = self.src {
            let old = ip.src_addr_raw();
            ip.set_src_addr(a);
            header = header.change32(old, raw(a));
            pseudo = pseudo.change32(old, raw(a));
        }
        if let Some(a) = self.dst {
            let old = ip.dst_addr_raw();
            ip.set_dst_addr(a);
            header = header.change32(old, raw(a));
            pseudo = pseudo.change32(old, raw(a));
        }
        if self.decrement_ttl {
            let (old, new) = ip.decrement_ttl_raw();
            header = header.change16(old, new);
        }
        if let Some(s) = self.sums {
            // The old fields unread: the sums stand for all of the above
            // (the compiler drops what is unused), to the bit.
            debug_assert_eq!(header, s.header, "sums made for another rewrite");
            header = s.header;
        }
        let c = ip.checksum_raw();
        ip.set_checksum_raw(header.apply(c));
        let Some(l4) = packet.get_mut(ipv4::HEADER_LEN..) else {
            return;
        };
        let mut transport = pseudo;
        let Ok(mut t) = TransportHeader::new_checked(protocol, l4) else {
            return;
        };
        // A port as the machine reads its two bytes.
        let raw16 = |p: u16| u16::from_ne_bytes([(p >> 8) as u8, p as u8]);
        if let Some(p) = self.src_port {
            transport = transport.change16(t.src_port_raw(), raw16(p));
            t.set_src_port(p);
        }
        if let Some(p) = self.dst_port {
            transport = transport.change16(t.dst_port_raw(), raw16(p));
            t.set_dst_port(p);
        }
        if let Some(s) = self.sums {
            debug_assert_eq!(transport, s.transport, "sums made for another rewrite");
            transport = s.transport;
        }
        t.update_checksum_raw(transport);
    }

    /// [`Rewrite::apply`]'s work on `packet`, whose header says `protocol`
    /// and `header_len`.
    #[inline(always)]
    fn write(&self, packet: &mut [u8], protocol: IpProtocol, header_len: usize) {
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

    /// [`Rewrite6::apply`] without a translation, on a fixed header and a
    /// whole TCP or UDP header right after it (`apply_frame`'s fixed-size
    /// path), its checksum arithmetic on words in the machine's byte order,
    /// as [`Rewrite::write_raw`]: the same bytes.
    #[inline(always)]
    fn write_raw(&self, packet: &mut [u8], protocol: IpProtocol) {
        const HEADER_LEN: usize = crate::wire::ipv6::HEADER_LEN;
        debug_assert!(self.tcp.is_none());
        if packet.len() < HEADER_LEN {
            return;
        }
        let raw = |a: Ipv6Addr| u128::from_ne_bytes(a.octets());
        let mut ip = Ipv6Packet::new_unchecked(&mut *packet);
        let mut pseudo = Delta::default();
        if let Some(a) = self.src {
            pseudo = pseudo.change128_raw(ip.src_addr_raw(), raw(a));
            ip.set_src_addr(a);
        }
        if let Some(a) = self.dst {
            pseudo = pseudo.change128_raw(ip.dst_addr_raw(), raw(a));
            ip.set_dst_addr(a);
        }
        if self.decrement_hop_limit {
            let h = ip.hop_limit();
            ip.set_hop_limit(h.saturating_sub(1));
        }
        let Some(l4) = packet.get_mut(HEADER_LEN..) else {
            return;
        };
        let Ok(mut t) = TransportHeader::new_checked(protocol, l4) else {
            return;
        };
        let mut transport = pseudo;
        let raw16 = |p: u16| u16::from_ne_bytes([(p >> 8) as u8, p as u8]);
        if let Some(p) = self.src_port {
            transport = transport.change16(t.src_port_raw(), raw16(p));
            t.set_src_port(p);
        }
        if let Some(p) = self.dst_port {
            transport = transport.change16(t.dst_port_raw(), raw16(p));
            t.set_dst_port(p);
        }
        t.update_checksum_raw(transport);
    }

    /// [`Rewrite6::apply`] to a whole frame (Ethernet at 0) the pipeline
    /// classified, as [`Rewrite::apply_frame`]: a TCP or UDP header right
    /// after the fixed IPv6 header, whole, is rewritten through a view of
    /// fixed size; anything else (extension headers) takes `apply`, with
    /// the same result (the `apply6_frame_agrees_with_apply` test); a
    /// frame shorter than an Ethernet header is left alone.
    #[inline(always)]
    pub fn apply_frame(&self, frame: &mut [u8], protocol: IpProtocol, l4_offset: usize) {
        const HEADER_LEN: usize = crate::wire::ipv6::HEADER_LEN;
        const TCP_END: usize = IP + HEADER_LEN + tcp::HEADER_LEN;
        const UDP_END: usize = IP + HEADER_LEN + udp::HEADER_LEN;
        // A translation reads the options past the fixed header.
        if l4_offset == HEADER_LEN && self.tcp.is_none() {
            if protocol == IpProtocol::Tcp {
                if let Some(f) = frame.first_chunk_mut::<TCP_END>() {
                    return self.write_raw(&mut f[IP..], IpProtocol::Tcp);
                }
            } else if protocol == IpProtocol::Udp {
                if let Some(f) = frame.first_chunk_mut::<UDP_END>() {
                    return self.write_raw(&mut f[IP..], IpProtocol::Udp);
                }
            }
        }
        if let Some(packet) = frame.get_mut(IP..) {
            self.apply(packet, protocol, l4_offset);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rewrite() -> impl Strategy<Value = Rewrite> {
        (
            any::<Option<[u8; 4]>>(),
            any::<Option<[u8; 4]>>(),
            any::<Option<u16>>(),
            any::<Option<u16>>(),
            any::<bool>(),
            tcp_adjust(),
        )
            .prop_map(
                |(src, dst, src_port, dst_port, decrement_ttl, tcp)| Rewrite {
                    src: src.map(Ipv4Addr::from),
                    dst: dst.map(Ipv4Addr::from),
                    src_port,
                    dst_port,
                    decrement_ttl,
                    tcp,
                    sums: None,
                },
            )
    }

    /// None most of the time (the established path's case), else a
    /// translation with options to rewrite (which takes `apply`).
    fn tcp_adjust() -> impl Strategy<Value = Option<TcpAdjust>> {
        prop_oneof![
            3 => Just(None),
            1 => any::<(u32, u32, u32, u32)>().prop_map(|(seq_add, ack_add, sack_add, tsval_add)| {
                Some(TcpAdjust {
                    seq_add,
                    ack_add,
                    sack_add,
                    tsval_add,
                    ..TcpAdjust::default()
                })
            }),
        ]
    }

    /// Makes `l4`, where it is long enough, a TCP header with a
    /// timestamps option (what a translation rewrites past the fixed
    /// header: random bytes almost never hold a valid one).
    fn plant_timestamps(l4: &mut [u8]) {
        const OPTIONS: [u8; 12] = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
        if l4.len() >= 32 {
            l4[12] = 8 << 4;
            l4[13] |= 0x10;
            l4[20..32].copy_from_slice(&OPTIONS);
        }
    }

    proptest! {
        /// The fixed-size path of `apply_frame` writes what `apply` does,
        /// for any bytes: TCP and UDP (UDP's checksum 0 included), with and
        /// without a translation (of a timestamps option: a translation
        /// on the fixed-size path would miss it), other
        /// protocols, IP options and other versions (which take `apply`),
        /// and frames that end inside the transport header.
        #[test]
        fn apply_frame_agrees_with_apply(
            r in rewrite(),
            mut frame in proptest::collection::vec(any::<u8>(), L4..L4 + 40),
            first in prop_oneof![Just(0x45u8), any::<u8>()],
            protocol in prop_oneof![Just(6u8), Just(17u8), any::<u8>()],
            zero_udp_checksum in any::<bool>(),
            timestamps in any::<bool>(),
        ) {
            frame[IP] = first;
            frame[IP + 9] = protocol;
            if zero_udp_checksum && frame.len() >= L4 + 8 {
                frame[L4 + 6] = 0;
                frame[L4 + 7] = 0;
            }
            if timestamps {
                plant_timestamps(&mut frame[L4..]);
            }
            let mut general = frame.clone();
            r.apply(&mut general[IP..]);
            r.apply_frame(&mut frame);
            prop_assert_eq!(frame, general);
        }

        /// A NAT rewrite with its checksum changes made beforehand
        /// ([`NatSums`], the established path's) writes what the
        /// per-packet sums do, to the bit: requests (destination) and
        /// replies (source), TCP and UDP, any TTL a forwarded packet has,
        /// checksums 0 and 0xffff included (a UDP checksum of 0 stays 0).
        #[test]
        fn summed_rewrite_agrees_with_per_packet_sums(
            vip in any::<[u8; 4]>(),
            real in any::<[u8; 4]>(),
            vip_port in any::<u16>(),
            real_port in any::<u16>(),
            mut frame in proptest::collection::vec(any::<u8>(), L4 + 20..L4 + 60),
            ttl in 2u8..,
            udp in any::<bool>(),
            ip_check in prop_oneof![Just(0u16), Just(0xffff), any::<u16>()],
            l4_check in prop_oneof![Just(0u16), Just(0xffff), any::<u16>()],
            reply in any::<bool>(),
        ) {
            let (vip, real) = (Ipv4Addr::from(vip), Ipv4Addr::from(real));
            let (from, to) = if reply {
                ((real, real_port), (vip, vip_port))
            } else {
                ((vip, vip_port), (real, real_port))
            };
            let protocol = if udp { IpProtocol::Udp } else { IpProtocol::Tcp };
            frame[IP] = 0x45;
            let (head, l4) = frame.split_at_mut(L4);
            let mut ip = Ipv4Packet::new_unchecked(&mut head[IP..]);
            ip.set_ttl(ttl);
            ip.set_protocol(protocol);
            ip.set_checksum(ip_check);
            let mut t = TransportHeader::new_checked(protocol, l4).unwrap();
            if reply {
                ip.set_src_addr(from.0);
                t.set_src_port(from.1);
            } else {
                ip.set_dst_addr(from.0);
                t.set_dst_port(from.1);
            }
            let at = L4 + if udp { 6 } else { 16 };
            frame[at..at + 2].copy_from_slice(&[(l4_check >> 8) as u8, l4_check as u8]);
            let plain = if reply {
                Rewrite {
                    src: Some(to.0),
                    src_port: Some(to.1),
                    decrement_ttl: true,
                    ..Rewrite::default()
                }
            } else {
                Rewrite {
                    dst: Some(to.0),
                    dst_port: Some(to.1),
                    decrement_ttl: true,
                    ..Rewrite::default()
                }
            };
            let summed = Rewrite {
                sums: Some(NatSums::new(from, to)),
                ..plain
            };
            let mut want = frame.clone();
            plain.apply_frame(&mut want);
            summed.apply_frame(&mut frame);
            prop_assert_eq!(frame, want);
        }

        /// `Rewrite6::apply_frame` writes what `apply` does, with the
        /// transport header right after the fixed header or further in.
        #[test]
        fn apply6_frame_agrees_with_apply(
            src in any::<Option<[u8; 16]>>(),
            dst in any::<Option<[u8; 16]>>(),
            src_port in any::<Option<u16>>(),
            dst_port in any::<Option<u16>>(),
            decrement_hop_limit in any::<bool>(),
            mut frame in proptest::collection::vec(any::<u8>(), IP + 40..IP + 100),
            protocol in prop_oneof![Just(6u8), Just(17u8), any::<u8>()],
            l4_offset in prop_oneof![Just(40usize), 40usize..90],
            zero_udp_checksum in any::<bool>(),
            tcp in tcp_adjust(),
            timestamps in any::<bool>(),
        ) {
            let r = Rewrite6 {
                src: src.map(Ipv6Addr::from),
                dst: dst.map(Ipv6Addr::from),
                src_port,
                dst_port,
                decrement_hop_limit,
                tcp,
            };
            let at = IP + l4_offset + 6;
            if zero_udp_checksum && frame.len() >= at + 2 {
                frame[at] = 0;
                frame[at + 1] = 0;
            }
            if timestamps {
                if let Some(l4) = frame.get_mut(IP + l4_offset..) {
                    plant_timestamps(l4);
                }
            }
            let protocol = IpProtocol::from(protocol);
            let mut general = frame.clone();
            r.apply(&mut general[IP..], protocol, l4_offset);
            r.apply_frame(&mut frame, protocol, l4_offset);
            prop_assert_eq!(frame, general);
        }
    }
}
