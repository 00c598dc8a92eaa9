//! ICMPv6 around forwarding: "packet too big" for packets that do not fit
//! the way on (IPv6 routers never fragment), and the rewrite of ICMPv6
//! errors that concern a NAT66 flow (the quoted packet is translated like
//! the flow, and the message checksum, which covers the pseudo header, is
//! computed again).

use std::net::Ipv6Addr;

use super::{Rewrite6, TcpAdjust, IP};
use crate::buffer::PacketBuf;
use crate::stats::DropReason;
use crate::wire::icmpv6::{self, Icmpv6Packet, Icmpv6Type};
use crate::wire::ipv6::{self, Ipv6Packet, Ipv6Repr};
use crate::wire::{EtherType, EthernetFrame, IpProtocol, TransportHeader};

/// Where the ICMPv6 message starts in a frame we build (no extension
/// headers).
const MESSAGE: usize = IP + ipv6::HEADER_LEN;
/// Where the quoted packet starts in such a frame.
const QUOTED: usize = MESSAGE + icmpv6::HEADER_LEN;

/// Turns the frame in place into an ICMPv6 "packet too big" (type 2) from
/// `from` back to the sender of its IPv6 packet (`packet_len` bytes long),
/// announcing `mtu` and quoting as much of the packet as keeps the error
/// within the IPv6 minimum MTU (RFC 4443 §2.4(c)). The caller sets the
/// MACs. False if the buffer cannot take it.
pub fn packet_too_big<B: PacketBuf>(
    pkt: &mut B,
    packet_len: usize,
    from: Ipv6Addr,
    mtu: u32,
) -> bool {
    if pkt.len() < IP + ipv6::HEADER_LEN || packet_len < ipv6::HEADER_LEN {
        return false;
    }
    let quote = packet_len.min(icmpv6::MAX_QUOTE_LEN).min(pkt.len() - IP);
    let out = QUOTED + quote;
    if pkt.len() < out && !pkt.set_len(out) {
        return false;
    }
    let b = pkt.data_mut();
    let sender = Ipv6Packet::new_unchecked(&b[IP..]).src_addr();
    b.copy_within(IP..IP + quote, QUOTED);
    EthernetFrame::new_unchecked(&mut b[..]).set_ethertype(EtherType::Ipv6);
    {
        let mut icmp = Icmpv6Packet::new_unchecked(&mut b[MESSAGE..out]);
        icmp.set_msg_type(Icmpv6Type::PacketTooBig);
        icmp.set_code(0);
        icmp.set_mtu(mtu);
        icmp.fill_checksum(from, sender);
    }
    Ipv6Repr {
        src: from,
        dst: sender,
        next_header: IpProtocol::Icmpv6,
        payload_len: icmpv6::HEADER_LEN + quote,
        hop_limit: ipv6::DEFAULT_HOP_LIMIT,
        traffic_class: 0,
        flow_label: 0,
    }
    .emit(&mut Ipv6Packet::new_unchecked(&mut b[IP..MESSAGE]));
    pkt.set_len(out)
}

/// Whether an ICMPv6 message of this type quotes a packet of a flow we
/// forward: destination unreachable, packet too big, time exceeded.
#[inline]
pub fn is_forwarded_error(kind: Icmpv6Type) -> bool {
    matches!(
        kind,
        Icmpv6Type::DstUnreachable | Icmpv6Type::PacketTooBig | Icmpv6Type::TimeExceeded
    )
}

/// The flow a quoted IPv6 packet belongs to, as read from an ICMPv6 error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quoted6 {
    pub protocol: IpProtocol,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub src_port: u16,
    pub dst_port: u16,
    /// A quoted TCP segment's sequence number (its first 8 bytes are
    /// always quoted); 0 for UDP.
    pub seq: u32,
    /// Where the quoted transport header starts, from the quoted IPv6
    /// header: 40, or past the extension headers the packet carried.
    pub l4_offset: usize,
}

/// [`super::icmp::checked_quote`] for an ICMPv6 error from `src` to `dst`
/// (its checksum covers them).
pub fn checked_quote(message: &[u8], src: Ipv6Addr, dst: Ipv6Addr) -> Result<Quoted6, DropReason> {
    let Ok(m) = Icmpv6Packet::new_checked(message) else {
        return Err(DropReason::BadL4Checksum);
    };
    if !m.verify_checksum(src, dst) {
        return Err(DropReason::BadL4Checksum);
    }
    // A Packet Too Big below the IPv6 minimum link MTU is discarded (RFC
    // 8201 4): passed on, it would have an older host send atomic
    // fragments, which a stranger could then forge into its stream.
    if m.msg_type() == Icmpv6Type::PacketTooBig && m.mtu() < ipv6::MIN_MTU as u32 {
        return Err(DropReason::IcmpNotHandled);
    }
    quoted(message).ok_or(DropReason::IcmpNotHandled)
}

/// Reads the packet quoted by the ICMPv6 error `message` (the whole
/// message). None when it does not name a TCP or UDP flow. The quote's
/// extension headers are walked as the classifier walks a packet's (found
/// in audit: a quote with any was not followed, while the packet it
/// quotes, an atomic fragment or one with hop-by-hop options, had been
/// forwarded with them; Packet Too Big for such a flow never reached its
/// sender): a quote of a fragment that is not atomic, or of a chain cut
/// short, names no flow.
pub fn quoted(message: &[u8]) -> Option<Quoted6> {
    let icmp = Icmpv6Packet::new_checked(message).ok()?;
    quoted_packet(icmp.invoking_packet()?)
}

/// [`quoted`] of the quote alone (an IPv6 packet's first bytes): also
/// what a 6in6 packet's quote wraps.
pub fn quoted_packet(quote: &[u8]) -> Option<Quoted6> {
    let ip = Ipv6Packet::new_checked_header(quote).ok()?;
    let upper = ipv6::walk_ext_headers(ip.next_header(), quote.get(ipv6::HEADER_LEN..)?).ok()?;
    let protocol = upper.protocol;
    let l4 = quote.get(upper.offset..)?;
    if l4.len() < 8 {
        return None;
    }
    let ports = TransportHeader::new_checked(protocol, l4).ok()?;
    Some(Quoted6 {
        protocol,
        src: ip.src_addr(),
        dst: ip.dst_addr(),
        src_port: ports.src_port(),
        dst_port: ports.dst_port(),
        seq: if protocol == IpProtocol::Tcp {
            // The quote holds at least 8 bytes: the sequence number's 4
            // end there.
            crate::wire::TcpPacket::new_unchecked(l4).seq_number()
        } else {
            0
        },
        l4_offset: upper.offset,
    })
}

/// [`super::icmp::cut_extensions`] for an ICMPv6 error whose message
/// starts at `message` in `frame` (its IPv6 packet ending at `ip_end`)
/// and quotes a packet read as `quote`: cut after
/// [`KEPT_QUOTE`](super::icmp::KEPT_QUOTE) bytes of the quote, or after
/// the quoted transport header's first 8 bytes where extension headers
/// take more, its RFC 4884 length (byte 4) cleared, the outer payload
/// length following. Returns where the packet ends now.
pub fn cut_extensions(frame: &mut [u8], message: usize, ip_end: usize, quote: &Quoted6) -> usize {
    let quoted = message + icmpv6::HEADER_LEN;
    let end = ip_end.min((quoted + super::icmp::KEPT_QUOTE).max(quoted + quote.l4_offset + 8));
    if frame.len() < end || end < quoted {
        return ip_end;
    }
    frame[message + 4] = 0;
    if end < ip_end {
        Ipv6Packet::new_unchecked(&mut frame[IP..end])
            .set_payload_len((end - IP - ipv6::HEADER_LEN) as u16);
    }
    end
}

/// Rewrites an ICMPv6 error about a NAT66 flow in place, in the frame whose
/// IPv6 packet ends at `ip_end` and whose ICMPv6 message starts at
/// `message` (its quote checked by [`quoted`]). `outer_src` true changes
/// the outer source (an error from the real going to the client), else the
/// outer destination (an error to the VIP going to the real); the quoted
/// packet's opposite address and port change to `addr`/`port`. The outer
/// hop limit is decremented and the message checksum computed again.
/// `quote`: what [`quoted`] read of it (its transport protocol and
/// header's place). `quoted_tcp`: a translation for the quoted TCP header
/// (a flow the SYN proxy answered, as for IPv4 in
/// `icmp::rewrite_nat_error`).
#[allow(clippy::too_many_arguments)]
pub fn rewrite_nat_error(
    frame: &mut [u8],
    message: usize,
    ip_end: usize,
    quote: &Quoted6,
    outer_src: bool,
    addr: Ipv6Addr,
    port: u16,
    quoted_tcp: Option<TcpAdjust>,
) {
    let quoted_at = message + icmpv6::HEADER_LEN;
    if ip_end < quoted_at + quote.l4_offset + 8 || frame.len() < ip_end || message < IP {
        return;
    }
    let outer = if outer_src {
        Rewrite6 {
            src: Some(addr),
            ..Rewrite6::default()
        }
    } else {
        Rewrite6 {
            dst: Some(addr),
            ..Rewrite6::default()
        }
    };
    // The outer rewrite touches no transport header (ICMPv6 is summed
    // again below).
    Rewrite6 {
        decrement_hop_limit: true,
        ..outer
    }
    .apply(&mut frame[IP..ip_end], IpProtocol::Icmpv6, ip_end);
    let inner = if outer_src {
        Rewrite6 {
            dst: Some(addr),
            dst_port: Some(port),
            ..Rewrite6::default()
        }
    } else {
        Rewrite6 {
            src: Some(addr),
            src_port: Some(port),
            ..Rewrite6::default()
        }
    };
    let inner = Rewrite6 {
        tcp: quoted_tcp,
        ..inner
    };
    inner.apply(
        &mut frame[quoted_at..ip_end],
        quote.protocol,
        quote.l4_offset,
    );
    let ip = Ipv6Packet::new_unchecked(&frame[IP..ip_end]);
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    Icmpv6Packet::new_unchecked(&mut frame[message..ip_end]).fill_checksum(src, dst);
}
