//! ICMP around forwarding: the "fragmentation needed" answer for packets
//! too big to tunnel, and the rewrite of ICMP errors that concern a NAT
//! flow (the packet quoted inside must be translated like the flow).

use std::net::Ipv4Addr;

use super::{Rewrite, TcpAdjust, IP, L4};
use crate::buffer::PacketBuf;
use crate::stats::DropReason;
use crate::wire::TransportHeader;
use crate::wire::{
    icmpv4, ipv4, EtherType, EthernetFrame, Icmpv4Packet, Icmpv4Type, IpProtocol, Ipv4Packet,
    Ipv4Repr,
};

/// What an ICMP error quotes of the offending packet: its header (no
/// options here) and the first 8 bytes of its payload.
pub const QUOTE: usize = ipv4::HEADER_LEN + 8;
/// The ICMP message of a "fragmentation needed": header and quote.
const MESSAGE: usize = icmpv4::HEADER_LEN + QUOTE;
/// Where the quoted packet starts in a frame carrying an ICMP error.
const QUOTED_IP: usize = L4 + icmpv4::HEADER_LEN;

/// Turns the frame in place into an ICMP "fragmentation needed" (type 3,
/// code 4) from `from` (the VIP) back to the sender, quoting the offending
/// packet and announcing `mtu`. The caller sets the MACs. False if the
/// frame is too short to quote (it cannot be: the packet was too big).
pub fn frag_needed<B: PacketBuf>(pkt: &mut B, from: Ipv4Addr, mtu: u16) -> bool {
    const OUT: usize = IP + ipv4::HEADER_LEN + MESSAGE;
    if pkt.len() < IP + QUOTE {
        return false;
    }
    if pkt.len() < OUT && !pkt.set_len(OUT) {
        return false;
    }
    let b = pkt.data_mut();
    let sender = Ipv4Packet::new_unchecked(&b[IP..]).src_addr();
    b.copy_within(IP..IP + QUOTE, QUOTED_IP);
    // An IPv4 frame, whatever it came in as (found in review: a 4in6
    // tunnel's error, relayed from an IPv6 frame, left labelled IPv6).
    EthernetFrame::new_unchecked(&mut b[..]).set_ethertype(EtherType::Ipv4);
    let (header, message) = b[IP..OUT].split_at_mut(ipv4::HEADER_LEN);
    let mut icmp = Icmpv4Packet::new_unchecked(message);
    icmp.set_msg_type(Icmpv4Type::DestinationUnreachable);
    icmp.set_code(icmpv4::CODE_FRAG_NEEDED);
    icmp.clear_rest_of_header();
    icmp.set_next_hop_mtu(mtu);
    icmp.fill_checksum();
    Ipv4Repr {
        src: from,
        dst: sender,
        protocol: IpProtocol::Icmp,
        payload_len: MESSAGE,
        ttl: ipv4::DEFAULT_TTL,
        dont_fragment: false,
        ident: 0,
        dscp_ecn: 0,
    }
    .emit(&mut Ipv4Packet::new_unchecked(header));
    pkt.set_len(OUT)
}

/// Whether an ICMP message of this type quotes a packet of a flow we
/// translate (destination unreachable, time exceeded).
#[inline]
pub fn is_forwarded_error(kind: Icmpv4Type) -> bool {
    matches!(
        kind,
        Icmpv4Type::DestinationUnreachable | Icmpv4Type::TimeExceeded
    )
}

/// The flow a quoted packet belongs to, as read from an ICMP error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quoted {
    pub protocol: IpProtocol,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
    /// A quoted TCP segment's sequence number (its first 8 bytes are
    /// always quoted); 0 for UDP.
    pub seq: u32,
}

/// The quote of an ICMP error that is to be passed on: its checksum
/// checked first (`bad_l4_checksum`), since it is computed again after the
/// rewrite, which would otherwise make a damaged or forged message good;
/// then [`quoted`] (`icmp_not_handled` when it names no flow, or when it
/// is a "fragmentation needed" announcing an MTU below the 68 bytes every
/// IPv4 link carries, RFC 791: no router sends one, and a host that
/// believed it would cut its packets to nothing; 0 stays, an old router's
/// "unknown", RFC 1191 5).
pub fn checked_quote(message: &[u8]) -> Result<Quoted, DropReason> {
    let Ok(m) = Icmpv4Packet::new_checked(message) else {
        return Err(DropReason::BadL4Checksum);
    };
    if !m.verify_checksum() {
        return Err(DropReason::BadL4Checksum);
    }
    if m.msg_type() == Icmpv4Type::DestinationUnreachable
        && m.code() == icmpv4::CODE_FRAG_NEEDED
        && (1..MIN_IPV4_MTU).contains(&m.next_hop_mtu())
    {
        return Err(DropReason::IcmpNotHandled);
    }
    quoted(message).ok_or(DropReason::IcmpNotHandled)
}

/// The smallest MTU of an IPv4 link (RFC 791).
pub const MIN_IPV4_MTU: u16 = 68;

/// Reads the packet quoted by the ICMP error `message` (the whole ICMP
/// message). None when it is too short to name a TCP or UDP flow.
pub fn quoted(message: &[u8]) -> Option<Quoted> {
    let icmp = Icmpv4Packet::new_checked(message).ok()?;
    quoted_packet(icmp.payload())
}

/// [`quoted`] of the quote alone (an IPv4 packet's first bytes): also
/// what an IPIP packet's quote wraps.
pub fn quoted_packet(quote: &[u8]) -> Option<Quoted> {
    let ip = Ipv4Packet::new_checked_header(quote).ok()?;
    // A fragment after the first holds no transport header: what sits
    // where the ports would is payload (the appliance forwards no
    // fragments, so no flow of its own is quoted so).
    if ip.frag_offset() != 0 {
        return None;
    }
    let protocol = ip.protocol();
    // The RFC 792 minimum: the header and 8 bytes of the transport (the
    // quoted total length is not trusted to say where they end).
    let l4 = &quote[ip.header_len()..];
    if l4.len() < 8 {
        return None;
    }
    let ports = TransportHeader::new_checked(protocol, l4).ok()?;
    Some(Quoted {
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
    })
}

/// Rewrites an ICMP error about a NAT flow, in the frame whose IPv4 packet
/// ends at `ip_end` (its quote checked by [`quoted`]). `outer_src` true
/// changes the outer source (an error from the real going to the client),
/// else the outer destination (an error to the VIP going to the real); the
/// quoted packet's opposite address and port change to `addr`/`port`. The
/// outer TTL is decremented and the ICMP checksum recomputed (the message
/// is small). `quoted_tcp`: the SYN proxy's translation of the quoted
/// segment (its sequence number), for a flow it answered the handshake of.
/// The most of the original datagram an error passed on to a client
/// keeps (RFC 4884's original-datagram field when extensions follow):
/// the rest, where a router's RFC 4884 extensions sit (RFC 5837
/// interface addresses and names, RFC 4950 MPLS labels), is cut.
pub const KEPT_QUOTE: usize = 128;

/// Cuts the ICMP error in `frame` (its IPv4 packet ending at `ip_end`)
/// after [`KEPT_QUOTE`] bytes of its quote, and clears its RFC 4884
/// length: a router inside says nothing of itself beyond the quote to a
/// client outside (found in audit: a Time Exceeded from inside carried
/// the router's inside address and name to the client). Returns where
/// the packet ends now; the outer header's length and checksum follow.
/// The caller shortens the frame and recomputes the ICMP checksum
/// ([`rewrite_nat_error`] does).
pub fn cut_extensions(frame: &mut [u8], ip_end: usize) -> usize {
    let end = ip_end.min(QUOTED_IP + KEPT_QUOTE);
    if frame.len() < end || end < QUOTED_IP {
        return ip_end;
    }
    // The length (32-bit words of the original datagram), byte 5.
    frame[L4 + 5] = 0;
    if end < ip_end {
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[IP..end]);
        ip.set_total_len((end - IP) as u16);
        ip.fill_checksum();
    }
    end
}

pub fn rewrite_nat_error(
    frame: &mut [u8],
    ip_end: usize,
    outer_src: bool,
    addr: Ipv4Addr,
    port: u16,
    quoted_tcp: Option<TcpAdjust>,
) {
    // A frame too short to carry a quote is left alone (the caller checked
    // it with `quoted`, so this never happens; it must not panic either).
    if ip_end < QUOTED_IP + QUOTE || frame.len() < ip_end {
        return;
    }
    let outer = if outer_src {
        Rewrite {
            src: Some(addr),
            ..Rewrite::default()
        }
    } else {
        Rewrite {
            dst: Some(addr),
            ..Rewrite::default()
        }
    };
    Rewrite {
        decrement_ttl: true,
        ..outer
    }
    .apply(&mut frame[IP..ip_end]);
    // The quoted packet travelled the other way: its destination is our
    // outer source and vice versa.
    let inner = if outer_src {
        Rewrite {
            dst: Some(addr),
            dst_port: Some(port),
            ..Rewrite::default()
        }
    } else {
        Rewrite {
            src: Some(addr),
            src_port: Some(port),
            ..Rewrite::default()
        }
    };
    Rewrite {
        tcp: quoted_tcp,
        ..inner
    }
    .apply(&mut frame[QUOTED_IP..ip_end]);
    Icmpv4Packet::new_unchecked(&mut frame[L4..ip_end]).fill_checksum();
}
