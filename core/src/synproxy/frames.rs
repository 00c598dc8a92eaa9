//! The frames the SYN proxy makes, each in place from the frame it
//! answers or replaces: the SYN-ACK to a client (from its SYN), the SYN to
//! a real (from the client's ACK), the ACK to a real (from its SYN-ACK).
//! The IPv4 and TCP headers are written afresh through the `wire` views,
//! with full checksums (these are new packets, not translations); the
//! Ethernet addresses are left to egress, like any packet's.

use std::net::Ipv4Addr;

use crate::buffer::PacketBuf;
use crate::forward::{IP, L4};
use crate::stats::DropReason;
use crate::wire::tcp_options::{TcpOptions, MAX_EMIT_LEN};
use crate::wire::{ipv4, tcp, IpProtocol, Ipv4Packet, Ipv4Repr, TcpFlags, TcpPacket};

/// What the proxy reads of a TCP segment it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub seq: u32,
    pub ack: u32,
    pub window: u16,
    pub options: TcpOptions,
}

/// Reads the TCP segment from `src` to `dst` of a frame whose IPv4 packet
/// (20-byte header, checked by classify) ends at `ip_end`. The proxy
/// terminates these segments (answers or replaces them), so, as for any
/// packet the appliance terminates, a checksum that does not verify is a
/// drop (`bad_l4_checksum`), as is a header that does not fit.
pub fn read(frame: &[u8], ip_end: usize, src: Ipv4Addr, dst: Ipv4Addr) -> Result<Seen, DropReason> {
    let segment = frame.get(L4..ip_end).ok_or(DropReason::BadL4Header)?;
    let t = TcpPacket::new_checked(segment).map_err(|_| DropReason::BadL4Header)?;
    if !t.verify_checksum(src, dst) {
        return Err(DropReason::BadL4Checksum);
    }
    Ok(Seen {
        seq: t.seq_number(),
        ack: t.ack_number(),
        window: t.window(),
        options: TcpOptions::parse(t.options()),
    })
}

/// A TCP segment to write over a frame (IPv4, or IPv6 for `frames6`,
/// where `ttl` is the hop limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment<A = Ipv4Addr> {
    pub src: A,
    pub dst: A,
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    pub window: u16,
    pub ttl: u8,
    pub options: TcpOptions,
}

/// Makes the frame `seg`, with no payload (Ethernet header kept, IPv4
/// with DF, identification 0). Returns where the IPv4 packet ends, None
/// when the buffer cannot take the length (it always can: at most 78
/// bytes).
pub fn write<B: PacketBuf>(pkt: &mut B, seg: &Segment) -> Option<usize> {
    let mut opts = [0u8; MAX_EMIT_LEN];
    let n = seg.options.emit(&mut opts);
    let tcp_len = tcp::HEADER_LEN + n;
    let end = IP + ipv4::HEADER_LEN + tcp_len;
    if !pkt.set_len(end) {
        return None;
    }
    let (header, segment) = pkt.data_mut()[IP..end].split_at_mut(ipv4::HEADER_LEN);
    Ipv4Repr {
        src: seg.src,
        dst: seg.dst,
        protocol: IpProtocol::Tcp,
        payload_len: tcp_len,
        ttl: seg.ttl,
        dont_fragment: true,
        ident: 0,
        dscp_ecn: 0,
    }
    .emit(&mut Ipv4Packet::new_unchecked(header));
    emit_tcp(segment, seg, &opts[..n]).fill_checksum(seg.src, seg.dst);
    Some(end)
}

/// The TCP header of `seg` with the emitted options `opts` over `segment`
/// (exactly the header's length), for either family; the caller fills
/// the checksum over its own pseudo header.
pub(super) fn emit_tcp<'a, A>(
    segment: &'a mut [u8],
    seg: &Segment<A>,
    opts: &[u8],
) -> TcpPacket<&'a mut [u8]> {
    let mut t = TcpPacket::new_unchecked(segment);
    t.set_src_port(seg.src_port);
    t.set_dst_port(seg.dst_port);
    t.set_seq_number(seg.seq);
    t.set_ack_number(seg.ack);
    t.set_header_len(tcp::HEADER_LEN + opts.len());
    t.set_flags(seg.flags);
    t.set_window(seg.window);
    t.set_urgent(0);
    t.options_mut().copy_from_slice(opts);
    t
}
