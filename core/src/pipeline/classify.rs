//! Classify: where a frame is parsed, once, through the `wire` views, into
//! a [`Parsed`] that every later stage reads (the burst prefetch included).
//! It needs no configuration; what the frame means to us (a VIP, a NAT
//! reply, ours) is decided by the stages that follow.
//!
//! A header that cannot be used is not an early return here: it is recorded
//! (`L3::Invalid`, `L4::Invalid`) so that the stages report the same drop
//! reason whatever order they look at a frame in: a frame to another MAC is
//! `not_our_mac` even when its IPv4 header is also broken.

use std::net::{Ipv4Addr, Ipv6Addr};

use lb_config::MacAddr;

use crate::buffer::RxChecksum;
use crate::flow::Segment;
use crate::stats::DropReason;
use crate::wire::icmpv6::{Icmpv6Packet, Icmpv6Type};
use crate::wire::ipv6::{ExtHeaderError, Ipv6Packet};
use crate::wire::{
    self, ipv4, ipv6, EtherType, EthernetFrame, Icmpv4Packet, Icmpv4Type, IpProtocol, Ipv4Packet,
    TcpFlags, TcpPacket, UdpPacket,
};

/// What a frame is, as far as the pipeline cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    pub dst_mac: MacAddr,
    pub l3: L3,
}

/// The network layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L3 {
    Arp,
    Ipv4(Ipv4Meta),
    Ipv6(Ipv6Meta),
    /// An IP frame to drop for this reason (bad header or checksum, a
    /// fragment, IPv4 options, an IPv6 extension header we do not pass).
    Invalid(DropReason),
    /// Another ethertype.
    Unsupported(EtherType),
}

/// An IPv4 packet with a sound 20-byte header, not a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Meta {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: IpProtocol,
    pub ttl: u8,
    pub dont_fragment: bool,
    /// The IPv4 total length (Ethernet padding after it is not part of the
    /// packet).
    pub total_len: u16,
    pub l4: L4,
}

impl Ipv4Meta {
    /// Where the IPv4 packet ends in the frame.
    #[inline]
    pub fn end(&self) -> usize {
        wire::ethernet::HEADER_LEN + usize::from(self.total_len)
    }
}

/// An IPv6 packet with a sound fixed header, whose extension headers (if
/// any) were skipped to its upper layer; not a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Meta {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// The upper-layer protocol (after any extension headers).
    pub protocol: IpProtocol,
    pub hop_limit: u8,
    /// The IPv6 payload length (Ethernet padding after it is not part of
    /// the packet).
    pub payload_len: u16,
    /// Where the upper-layer header starts, from the IPv6 header (40 with
    /// no extension headers).
    pub l4_offset: u16,
    pub l4: L4,
}

impl Ipv6Meta {
    /// Where the IPv6 packet ends in the frame.
    #[inline]
    pub fn end(&self) -> usize {
        wire::ethernet::HEADER_LEN + ipv6::HEADER_LEN + usize::from(self.payload_len)
    }

    /// The packet's length, header included.
    #[inline]
    pub fn packet_len(&self) -> usize {
        ipv6::HEADER_LEN + usize::from(self.payload_len)
    }

    /// Where the upper-layer header starts in the frame.
    #[inline]
    pub fn l4_start(&self) -> usize {
        wire::ethernet::HEADER_LEN + usize::from(self.l4_offset)
    }
}

/// The transport layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    Tcp {
        ports: Ports,
        segment: Segment,
    },
    Udp {
        ports: Ports,
    },
    Icmp {
        kind: Icmpv4Type,
        code: u8,
    },
    Icmpv6 {
        kind: Icmpv6Type,
        code: u8,
    },
    /// Another protocol: not looked into.
    Other,
    /// A TCP, UDP or ICMP header to drop for this reason.
    Invalid(DropReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub src: u16,
    pub dst: u16,
}

impl L4 {
    /// The ports of a TCP or UDP header, and the TCP segment (None for UDP).
    #[inline]
    pub fn ports(&self) -> Option<(Ports, Option<Segment>)> {
        match *self {
            L4::Tcp { ports, segment } => Some((ports, Some(segment))),
            L4::Udp { ports } => Some((ports, None)),
            _ => None,
        }
    }

    /// [`Self::ports`], the segment where it is (the burst's chunk): not
    /// copied out on its way to the flow table.
    #[inline]
    pub fn ports_ref(&self) -> Option<(Ports, Option<&Segment>)> {
        match self {
            L4::Tcp { ports, segment } => Some((*ports, Some(segment))),
            L4::Udp { ports } => Some((*ports, None)),
            _ => None,
        }
    }
}

/// Reads a frame. Err only when it is too short for an Ethernet header.
#[inline(always)]
pub fn classify(frame: &[u8]) -> Result<Parsed, DropReason> {
    classify_offloaded(frame, RxChecksum::Unknown)
}

/// [`classify`] for a frame whose IPv4 header checksum the NIC may have
/// checked already (`rx`): a good one is not checked again, a bad one is
/// dropped, an unknown one is checked in software.
#[inline(always)]
pub fn classify_offloaded(frame: &[u8], rx: RxChecksum) -> Result<Parsed, DropReason> {
    classify_then(
        frame,
        rx,
        (),
        |(), dst_mac, ip| {
            Ok(Parsed {
                dst_mac,
                l3: L3::Ipv4(ip),
            })
        },
        |(), parsed| parsed,
    )
}

/// [`classify_offloaded`], handing a sound IPv4 packet without options
/// (the common frame) to `ipv4` as its parts, before they are joined
/// into a [`Parsed`], and anything else to `other`: the burst's first
/// pass looks at the parts where they are (in registers) and builds the
/// [`Parsed`] only for a frame it keeps.
#[inline(always)]
pub fn classify_then<C, R>(
    frame: &[u8],
    rx: RxChecksum,
    ctx: C,
    ipv4: impl FnOnce(C, MacAddr, Ipv4Meta) -> R,
    other: impl FnOnce(C, Result<Parsed, DropReason>) -> R,
) -> R {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return other(ctx, Err(DropReason::Truncated));
    };
    let dst_mac = eth.dst_addr();
    match eth.ethertype() {
        EtherType::Ipv4 => {
            let payload = eth.payload();
            match payload.first_chunk::<{ ipv4::HEADER_LEN }>() {
                Some(h) if h[0] == 0x45 => match ipv4_plain(h, payload, rx) {
                    Ok(ip) => ipv4(ctx, dst_mac, ip),
                    Err(r) => other(
                        ctx,
                        Ok(Parsed {
                            dst_mac,
                            l3: L3::Invalid(r),
                        }),
                    ),
                },
                _ => other(ctx, ipv4_frame_viewed(dst_mac, payload, rx)),
            }
        }
        EtherType::Ipv6 => other(ctx, ipv6_frame(dst_mac, eth.payload())),
        EtherType::Arp => other(
            ctx,
            Ok(Parsed {
                dst_mac,
                l3: L3::Arp,
            }),
        ),
        kind => other(
            ctx,
            Ok(Parsed {
                dst_mac,
                l3: L3::Unsupported(kind),
            }),
        ),
    }
}

/// An IPv4 packet with version 4 and no options, the common one, read at
/// fixed offsets (`h`: the first 20 bytes of `bytes`): the checks of
/// `Ipv4Packet::new_checked` that are left, in its order, then the fields.
/// Anything else goes through the `wire` view ([`ipv4_frame_viewed`]); both
/// give the same verdict for the same bytes (the
/// `ipv4_fast_agrees_with_the_view` test).
#[inline(always)]
fn ipv4_plain(
    h: &[u8; ipv4::HEADER_LEN],
    bytes: &[u8],
    rx: RxChecksum,
) -> Result<Ipv4Meta, DropReason> {
    // The view over a fixed-size array: every accessor's bounds are known.
    let ip = Ipv4Packet::new_unchecked(h);
    let total_len = ip.total_len();
    if usize::from(total_len) < ipv4::HEADER_LEN {
        return Err(DropReason::BadIpHeader);
    }
    let Some(packet) = bytes.get(..usize::from(total_len)) else {
        return Err(DropReason::Truncated);
    };
    let good = match rx {
        RxChecksum::Good => true,
        RxChecksum::Bad => false,
        RxChecksum::Unknown => ip.verify_checksum(),
    };
    if !good {
        return Err(DropReason::BadIpChecksum);
    }
    if ip.is_fragment() {
        return Err(DropReason::Fragment);
    }
    let protocol = ip.protocol();
    Ok(Ipv4Meta {
        src: ip.src_addr(),
        dst: ip.dst_addr(),
        protocol,
        ttl: ip.ttl(),
        dont_fragment: ip.dont_fragment(),
        total_len,
        l4: transport(protocol, &packet[ipv4::HEADER_LEN..]),
    })
}

/// An IPv4 frame that [`ipv4_plain`] does not read (options, a bad version
/// or header length, a short buffer), through the `wire` view. Out of line,
/// and returning the whole [`Parsed`], for the reason [`ipv6_frame`] does:
/// joining its result with `ipv4_plain`'s through a stack temporary cost a
/// store-forwarding stall on every IPv4 frame (parse and drop 37 % slower
/// in the pipeline bench).
#[inline(never)]
fn ipv4_frame_viewed(dst_mac: MacAddr, bytes: &[u8], rx: RxChecksum) -> Result<Parsed, DropReason> {
    Ok(Parsed {
        dst_mac,
        l3: ipv4_viewed(bytes, rx),
    })
}

/// [`ipv4_frame_viewed`]'s layer.
#[inline(always)]
fn ipv4_viewed(bytes: &[u8], rx: RxChecksum) -> L3 {
    let ip = match Ipv4Packet::new_checked(bytes) {
        Ok(ip) => ip,
        Err(wire::Error::Truncated) => return L3::Invalid(DropReason::Truncated),
        Err(wire::Error::Malformed) => return L3::Invalid(DropReason::BadIpHeader),
    };
    let good = match rx {
        RxChecksum::Good => true,
        RxChecksum::Bad => false,
        RxChecksum::Unknown => ip.verify_checksum(),
    };
    if !good {
        return L3::Invalid(DropReason::BadIpChecksum);
    }
    if ip.is_fragment() {
        return L3::Invalid(DropReason::Fragment);
    }
    if ip.header_len() != ipv4::HEADER_LEN {
        return L3::Invalid(DropReason::IpOptions);
    }
    let protocol = ip.protocol();
    L3::Ipv4(Ipv4Meta {
        src: ip.src_addr(),
        dst: ip.dst_addr(),
        protocol,
        ttl: ip.ttl(),
        dont_fragment: ip.dont_fragment(),
        total_len: ip.total_len(),
        l4: transport(protocol, ip.payload()),
    })
}

/// An IPv6 frame, whole: out of line, and returning the whole [`Parsed`]
/// rather than its `L3`, so that the IPv4 path's result is not joined with
/// it through a stack temporary (written field by field, read back wide: a
/// store-forwarding stall on every IPv4 frame).
#[inline(never)]
fn ipv6_frame(dst_mac: MacAddr, payload: &[u8]) -> Result<Parsed, DropReason> {
    let l3 = match payload.first_chunk::<{ ipv6::HEADER_LEN }>() {
        Some(h) if ipv6_plain_header(h) => ipv6_plain(h, payload),
        _ => ipv6_packet(payload),
    };
    Ok(Parsed { dst_mac, l3 })
}

/// Whether [`ipv6_plain`] reads the packet with this fixed header: version
/// 6, TCP or UDP straight after it (no extension header: the common one).
#[inline(always)]
fn ipv6_plain_header(h: &[u8; ipv6::HEADER_LEN]) -> bool {
    let ip = Ipv6Packet::new_unchecked(h);
    ip.version() == 6 && matches!(ip.next_header(), IpProtocol::Tcp | IpProtocol::Udp)
}

/// An IPv6 packet of version 6 with TCP or UDP straight after its fixed
/// header ([`ipv6_plain_header`]), read at fixed offsets (`h`: its first
/// 40 bytes of `bytes`): [`ipv6_packet`]'s checks that are left, in its
/// order, then the fields; both give the same for the same bytes (the
/// `ipv6_fast_agrees_with_the_view` test).
#[inline(always)]
fn ipv6_plain(h: &[u8; ipv6::HEADER_LEN], bytes: &[u8]) -> L3 {
    // The view over a fixed-size array: every accessor's bounds are known.
    let ip = Ipv6Packet::new_unchecked(h);
    let payload_len = ip.payload_len();
    let Some(upper) = bytes.get(ipv6::HEADER_LEN..ipv6::HEADER_LEN + usize::from(payload_len))
    else {
        return L3::Invalid(DropReason::Truncated);
    };
    let protocol = ip.next_header();
    let l4 = match protocol {
        // As in `ipv6_packet`: a zero UDP checksum is invalid over IPv6.
        IpProtocol::Udp if udp_zero_checksum(upper) => L4::Invalid(DropReason::BadL4Header),
        p => transport(p, upper),
    };
    L3::Ipv6(Ipv6Meta {
        src: ip.src_addr(),
        dst: ip.dst_addr(),
        protocol,
        hop_limit: ip.hop_limit(),
        payload_len,
        l4_offset: ipv6::HEADER_LEN as u16,
        l4,
    })
}

/// Whether `upper`, a UDP datagram over IPv6, is long enough to hold a
/// header and has a zero checksum (RFC 8200 §8.1: discarded).
#[inline(always)]
fn udp_zero_checksum(upper: &[u8]) -> bool {
    upper.len() >= wire::udp::HEADER_LEN && UdpPacket::new_unchecked(upper).checksum() == 0
}

/// An IPv6 packet: the fixed header, then the extension headers walked to
/// the upper layer (a bounded walk: at most `ipv6::MAX_EXT_HEADERS`).
#[inline(always)]
fn ipv6_packet(bytes: &[u8]) -> L3 {
    let ip = match Ipv6Packet::new_checked(bytes) {
        Ok(ip) => ip,
        Err(wire::Error::Truncated) => return L3::Invalid(DropReason::Truncated),
        Err(wire::Error::Malformed) => return L3::Invalid(DropReason::BadIpHeader),
    };
    let (protocol, offset) = match ip.upper_layer() {
        Ok(u) => (u.protocol, u.offset),
        Err(ExtHeaderError::Fragment) => return L3::Invalid(DropReason::Fragment),
        Err(ExtHeaderError::NoNextHeader) => (IpProtocol::Ipv6NoNxt, bytes.len()),
        Err(_) => return L3::Invalid(DropReason::Ipv6Extension),
    };
    let payload_len = ip.payload_len();
    let end = ipv6::HEADER_LEN + usize::from(payload_len);
    let upper = bytes.get(offset..end).unwrap_or(&[]);
    let l4 = match protocol {
        IpProtocol::Icmpv6 => match Icmpv6Packet::new_checked(upper) {
            Ok(i) => L4::Icmpv6 {
                kind: i.msg_type(),
                code: i.code(),
            },
            Err(_) => L4::Invalid(DropReason::Truncated),
        },
        // A zero UDP checksum is invalid over IPv6 (RFC 8200 §8.1): such a
        // datagram is discarded, and a NAT rewrite must never make one.
        IpProtocol::Udp if udp_zero_checksum(upper) => L4::Invalid(DropReason::BadL4Header),
        IpProtocol::Ipv6NoNxt => L4::Other,
        p => transport(p, upper),
    };
    L3::Ipv6(Ipv6Meta {
        src: ip.src_addr(),
        dst: ip.dst_addr(),
        protocol,
        hop_limit: ip.hop_limit(),
        payload_len,
        l4_offset: u16::try_from(offset).unwrap_or(u16::MAX),
        l4,
    })
}

/// A header too short to hold its fixed part is truncated; one whose length
/// fields contradict the packet is malformed.
#[inline(always)]
fn l4_error(e: wire::Error, len: usize, fixed: usize) -> L4 {
    L4::Invalid(if e == wire::Error::Truncated && len < fixed {
        DropReason::Truncated
    } else {
        DropReason::BadL4Header
    })
}

#[inline(always)]
fn transport(protocol: IpProtocol, payload: &[u8]) -> L4 {
    match protocol {
        IpProtocol::Tcp => match payload.first_chunk::<{ wire::tcp::HEADER_LEN }>() {
            Some(h) => tcp_fixed(h, payload.len()),
            None => l4_error(wire::Error::Truncated, payload.len(), wire::tcp::HEADER_LEN),
        },
        IpProtocol::Udp => match payload.first_chunk::<{ wire::udp::HEADER_LEN }>() {
            Some(h) => udp_fixed(h, payload.len()),
            None => l4_error(wire::Error::Truncated, payload.len(), wire::udp::HEADER_LEN),
        },
        _ => transport_viewed(protocol, payload),
    }
}

/// A TCP header read at fixed offsets (`h`: the first 20 bytes of a
/// segment of `len` bytes), with `TcpPacket::new_checked`'s checks.
#[inline(always)]
fn tcp_fixed(h: &[u8; wire::tcp::HEADER_LEN], len: usize) -> L4 {
    let t = TcpPacket::new_unchecked(h);
    let header_len = t.header_len();
    if header_len < wire::tcp::HEADER_LEN {
        return l4_error(wire::Error::Malformed, len, wire::tcp::HEADER_LEN);
    }
    if header_len > len {
        return l4_error(wire::Error::Truncated, len, wire::tcp::HEADER_LEN);
    }
    let flags = t.flags();
    // Sequence space: the payload, and one each for SYN and FIN.
    let space = (len - header_len)
        + usize::from(flags.contains(TcpFlags::SYN))
        + usize::from(flags.contains(TcpFlags::FIN));
    L4::Tcp {
        ports: Ports {
            src: t.src_port(),
            dst: t.dst_port(),
        },
        segment: Segment {
            flags,
            seq: t.seq_number(),
            ack: t.ack_number(),
            len: u32::try_from(space).unwrap_or(u32::MAX),
        },
    }
}

/// A UDP header read at fixed offsets (`h`: the first 8 bytes of a
/// datagram of `len` bytes), with `UdpPacket::new_checked`'s checks.
#[inline(always)]
fn udp_fixed(h: &[u8; wire::udp::HEADER_LEN], len: usize) -> L4 {
    let u = UdpPacket::new_unchecked(h);
    let udp_len = usize::from(u.len());
    if udp_len < wire::udp::HEADER_LEN {
        return l4_error(wire::Error::Malformed, len, wire::udp::HEADER_LEN);
    }
    if udp_len > len {
        return l4_error(wire::Error::Truncated, len, wire::udp::HEADER_LEN);
    }
    L4::Udp {
        ports: Ports {
            src: u.src_port(),
            dst: u.dst_port(),
        },
    }
}

/// [`transport`] for protocols other than TCP and UDP.
#[inline(always)]
fn transport_viewed(protocol: IpProtocol, payload: &[u8]) -> L4 {
    match protocol {
        IpProtocol::Icmp => match Icmpv4Packet::new_checked(payload) {
            Ok(i) => L4::Icmp {
                kind: i.msg_type(),
                code: i.code(),
            },
            Err(_) => L4::Invalid(DropReason::Truncated),
        },
        _ => L4::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ethertype: [u8; 2], ip: &[u8]) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
        f.extend_from_slice(&ethertype);
        f.extend_from_slice(ip);
        f
    }

    fn ipv4(protocol: u8, l4: &[u8]) -> Vec<u8> {
        let mut ip = vec![0u8; 20];
        let mut p = Ipv4Packet::new_unchecked(&mut ip[..]);
        Ipv4Repr {
            src: Ipv4Addr::new(198, 19, 0, 10),
            dst: Ipv4Addr::new(198, 18, 1, 100),
            protocol: IpProtocol::from(protocol),
            payload_len: l4.len(),
            ttl: 64,
            dont_fragment: true,
            ident: 1,
            dscp_ecn: 0,
        }
        .emit(&mut p);
        ip.extend_from_slice(l4);
        ip
    }

    use crate::wire::Ipv4Repr;

    #[test]
    fn a_tcp_syn_is_read_once_into_every_field() {
        let mut tcp = [0u8; 20];
        tcp[..4].copy_from_slice(&[0x9c, 0x40, 0x00, 0x50]);
        tcp[12] = 0x50;
        tcp[13] = 0x02;
        let f = frame([0x08, 0x00], &ipv4(6, &tcp));
        let p = classify(&f).unwrap();
        assert_eq!(p.dst_mac, MacAddr([2, 0, 0, 0, 0, 2]));
        let L3::Ipv4(ip) = p.l3 else { panic!("{p:?}") };
        assert_eq!(ip.protocol, IpProtocol::Tcp);
        assert_eq!(ip.end(), f.len());
        assert!(ip.dont_fragment);
        assert_eq!(
            ip.l4,
            L4::Tcp {
                ports: Ports {
                    src: 40000,
                    dst: 80
                },
                segment: Segment {
                    flags: TcpFlags::SYN,
                    seq: 0,
                    ack: 0,
                    len: 1
                }
            }
        );
    }

    #[test]
    fn broken_layers_are_recorded_with_their_reason() {
        assert_eq!(classify(&[0u8; 13]), Err(DropReason::Truncated));
        let arp = classify(&frame([0x08, 0x06], &[])).unwrap();
        assert_eq!(arp.l3, L3::Arp);
        let v6 = classify(&frame([0x86, 0xdd], &[])).unwrap();
        assert_eq!(v6.l3, L3::Invalid(DropReason::Truncated));
        let vlan = classify(&frame([0x81, 0x00], &[])).unwrap();
        assert_eq!(vlan.l3, L3::Unsupported(EtherType::Vlan));
        let short = classify(&frame([0x08, 0x00], &[0x45, 0])).unwrap();
        assert_eq!(short.l3, L3::Invalid(DropReason::Truncated));
        let mut bad = ipv4(17, &[0u8; 8]);
        bad[10] ^= 0xff;
        let bad = classify(&frame([0x08, 0x00], &bad)).unwrap();
        assert_eq!(bad.l3, L3::Invalid(DropReason::BadIpChecksum));
        // UDP length 4: below the header.
        let udp = classify(&frame([0x08, 0x00], &ipv4(17, &[0, 1, 0, 2, 0, 4, 0, 0]))).unwrap();
        let L3::Ipv4(ip) = udp.l3 else { panic!() };
        assert_eq!(ip.l4, L4::Invalid(DropReason::BadL4Header));
        let tcp = classify(&frame([0x08, 0x00], &ipv4(6, &[0u8; 12]))).unwrap();
        let L3::Ipv4(ip) = tcp.l3 else { panic!() };
        assert_eq!(ip.l4, L4::Invalid(DropReason::Truncated));
        let icmp = classify(&frame([0x08, 0x00], &ipv4(1, &[8, 0, 0]))).unwrap();
        let L3::Ipv4(ip) = icmp.l3 else { panic!() };
        assert_eq!(ip.l4, L4::Invalid(DropReason::Truncated));
        let gre = classify(&frame([0x08, 0x00], &ipv4(47, &[0u8; 4]))).unwrap();
        let L3::Ipv4(ip) = gre.l3 else { panic!() };
        assert_eq!(ip.l4, L4::Other);
    }

    /// What the `wire` views make of a TCP or UDP header: the reference
    /// the fixed-offset readers are held to.
    fn transport_by_view(protocol: IpProtocol, payload: &[u8]) -> L4 {
        match protocol {
            IpProtocol::Tcp => match TcpPacket::new_checked(payload) {
                Ok(t) => {
                    let flags = t.flags();
                    let len = t.payload().len()
                        + usize::from(flags.contains(TcpFlags::SYN))
                        + usize::from(flags.contains(TcpFlags::FIN));
                    L4::Tcp {
                        ports: Ports {
                            src: t.src_port(),
                            dst: t.dst_port(),
                        },
                        segment: Segment {
                            flags,
                            seq: t.seq_number(),
                            ack: t.ack_number(),
                            len: len as u32,
                        },
                    }
                }
                Err(e) => l4_error(e, payload.len(), wire::tcp::HEADER_LEN),
            },
            IpProtocol::Udp => match UdpPacket::new_checked(payload) {
                Ok(u) => L4::Udp {
                    ports: Ports {
                        src: u.src_port(),
                        dst: u.dst_port(),
                    },
                },
                Err(e) => l4_error(e, payload.len(), wire::udp::HEADER_LEN),
            },
            p => transport_viewed(p, payload),
        }
    }

    /// An IPv4 packet of up to 80 bytes, mostly well formed: a version and
    /// header length of 0x45 (the fast reader's case) most of the time, a
    /// total length near the buffer's, a right checksum, TCP or UDP, a TCP
    /// data offset or UDP length near the segment's; the rest random.
    fn near_ipv4() -> impl Strategy<Value = (Vec<u8>, u8)> {
        (
            proptest::collection::vec(any::<u8>(), 0..80),
            prop_oneof![Just(0x45u8), any::<u8>()],
            prop_oneof![Just(6u8), Just(17u8), any::<u8>()],
            -4i32..4,
            any::<bool>(),
            prop_oneof![Just(0u16), Just(0x4000), Just(0x2000), any::<u16>()],
            -8i32..8,
            0u8..3,
        )
            .prop_map(|(mut b, vihl, proto, slack, fix, frag, l4_slack, rx)| {
                if b.len() >= 20 {
                    let total = (b.len() as i32 + slack).clamp(0, 0xffff) as u16;
                    let l4 = b.len() - 20;
                    let want = (l4 as i32 + l4_slack).max(0) as usize;
                    if proto == 6 && b.len() >= 40 && want >= 20 {
                        // (Below 20, the random data offset stays.)
                        TcpPacket::new_unchecked(&mut b[20..]).set_header_len(want.min(60) & !3);
                    } else if proto == 17 && b.len() >= 28 {
                        UdpPacket::new_unchecked(&mut b[20..]).set_len(want as u16);
                    }
                    b[0] = 0x45;
                    let mut ip = Ipv4Packet::new_unchecked(&mut b[..]);
                    ip.set_total_len(total);
                    ip.set_protocol(IpProtocol::from(proto));
                    ip.set_dont_fragment(frag & 0x4000 != 0);
                    ip.set_more_fragments(frag & 0x2000 != 0);
                    ip.set_frag_offset((frag & 0x1fff) << 3);
                    if fix {
                        ip.fill_checksum();
                    }
                    // Last: the version and header length as drawn.
                    b[0] = vihl;
                }
                (b, rx)
            })
    }

    /// IPv6 packets near the fixed-offset reader's edges: version 6 or
    /// not, TCP, UDP (a zero checksum or not) or another next header,
    /// payload lengths a little off the buffer's, TCP data offsets and UDP
    /// lengths a little off the segment's.
    fn near_ipv6() -> impl Strategy<Value = Vec<u8>> {
        (
            proptest::collection::vec(any::<u8>(), 0..110),
            prop_oneof![Just(0x60u8), any::<u8>()],
            prop_oneof![Just(6u8), Just(17u8), Just(0u8), Just(44u8), any::<u8>()],
            -4i32..4,
            -8i32..8,
            any::<bool>(),
        )
            .prop_map(|(mut b, ver, next, slack, l4_slack, zero)| {
                if b.len() >= 40 {
                    let l4 = b.len() - 40;
                    let want = (l4 as i32 + l4_slack).max(0) as usize;
                    if next == 6 && b.len() >= 60 && want >= 20 {
                        TcpPacket::new_unchecked(&mut b[40..]).set_header_len(want.min(60) & !3);
                    } else if next == 17 && b.len() >= 48 {
                        let mut u = UdpPacket::new_unchecked(&mut b[40..]);
                        u.set_len(want as u16);
                        if zero {
                            u.set_checksum(0);
                        }
                    }
                    b[0] = ver;
                    let mut ip = Ipv6Packet::new_unchecked(&mut b[..]);
                    ip.set_payload_len((l4 as i32 + slack).clamp(0, 0xffff) as u16);
                    ip.set_next_header(IpProtocol::from(next));
                }
                b
            })
    }

    fn rx_of(n: u8) -> RxChecksum {
        match n {
            0 => RxChecksum::Unknown,
            1 => RxChecksum::Good,
            _ => RxChecksum::Bad,
        }
    }

    use proptest::prelude::*;

    proptest! {
        /// The fixed-offset IPv4 reader gives what the `wire` view gives,
        /// for every 20-byte header (valid, truncated, fragments, bad
        /// checksums and lengths): the same verdict, the same fields.
        #[test]
        fn ipv4_fast_agrees_with_the_view((bytes, rx) in near_ipv4()) {
            let rx = rx_of(rx);
            let viewed = ipv4_viewed(&bytes, rx);
            let fast = match bytes.first_chunk::<{ ipv4::HEADER_LEN }>() {
                Some(h) if h[0] == 0x45 => ipv4_plain(h, &bytes, rx).map_or_else(L3::Invalid, L3::Ipv4),
                _ => viewed,
            };
            prop_assert_eq!(fast, viewed);
        }

        /// The fixed-offset IPv6 reader gives what the extension-header
        /// walk gives, for every packet it takes.
        #[test]
        fn ipv6_fast_agrees_with_the_view(bytes in near_ipv6()) {
            let viewed = ipv6_packet(&bytes);
            let fast = match bytes.first_chunk::<{ ipv6::HEADER_LEN }>() {
                Some(h) if ipv6_plain_header(h) => ipv6_plain(h, &bytes),
                _ => viewed,
            };
            prop_assert_eq!(fast, viewed);
        }

        /// The fixed-offset TCP and UDP readers give what the `wire` views
        /// give, for any segment.
        #[test]
        fn transport_fast_agrees_with_the_views(
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            proto in prop_oneof![Just(6u8), Just(17u8)],
            len_field in prop_oneof![Just(None), any::<u16>().prop_map(Some)],
        ) {
            let mut payload = payload;
            let protocol = IpProtocol::from(proto);
            if let Some(v) = len_field {
                if proto == 17 && payload.len() >= 8 {
                    let v = v % (payload.len() as u16 + 8);
                    UdpPacket::new_unchecked(&mut payload[..]).set_len(v);
                }
            }
            prop_assert_eq!(transport(protocol, &payload), transport_by_view(protocol, &payload));
        }
    }
}
