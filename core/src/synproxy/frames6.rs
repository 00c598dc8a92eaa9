//! The SYN proxy's frames over IPv6 (NAT66 services): what `frames` does
//! for IPv4, with an IPv6 header. The frame a proxy frame replaces may
//! have had extension headers; the new one has none (it is a new packet,
//! as the IPv4 ones are, not a translation), and a flow label of 0.

use std::net::Ipv6Addr;

use super::frames::{emit_tcp, Seen, Segment};
use crate::buffer::PacketBuf;
use crate::forward::IP;
use crate::stats::DropReason;
use crate::wire::ipv6::{self, Ipv6Packet, Ipv6Repr};
use crate::wire::tcp_options::{TcpOptions, MAX_EMIT_LEN};
use crate::wire::{tcp, IpProtocol, TcpPacket};

/// [`super::frames::read`] for IPv6: the TCP segment from `src` to `dst`
/// of a frame whose upper-layer header starts at `l4_start` and whose
/// IPv6 packet ends at `ip_end` (both from classify). A checksum that
/// does not verify is `bad_l4_checksum`, a header that does not fit
/// `bad_l4_header`.
pub fn read6(
    frame: &[u8],
    l4_start: usize,
    ip_end: usize,
    src: Ipv6Addr,
    dst: Ipv6Addr,
) -> Result<Seen, DropReason> {
    let segment = frame.get(l4_start..ip_end).ok_or(DropReason::BadL4Header)?;
    let t = TcpPacket::new_checked(segment).map_err(|_| DropReason::BadL4Header)?;
    if !t.verify_checksum_v6(src, dst) {
        return Err(DropReason::BadL4Checksum);
    }
    Ok(Seen {
        seq: t.seq_number(),
        ack: t.ack_number(),
        window: t.window(),
        options: TcpOptions::parse(t.options()),
    })
}

/// Makes the frame `seg` over IPv6, with no payload (Ethernet header
/// kept). Returns where the IPv6 packet ends, None when the buffer cannot
/// take the length (it always can: at most 114 bytes).
pub fn write6<B: PacketBuf>(pkt: &mut B, seg: &Segment<Ipv6Addr>) -> Option<usize> {
    let mut opts = [0u8; MAX_EMIT_LEN];
    let n = seg.options.emit(&mut opts);
    let tcp_len = tcp::HEADER_LEN + n;
    let end = IP + ipv6::HEADER_LEN + tcp_len;
    if !pkt.set_len(end) {
        return None;
    }
    let (header, segment) = pkt.data_mut()[IP..end].split_at_mut(ipv6::HEADER_LEN);
    Ipv6Repr {
        src: seg.src,
        dst: seg.dst,
        next_header: IpProtocol::Tcp,
        payload_len: tcp_len,
        hop_limit: seg.ttl,
        traffic_class: 0,
        flow_label: 0,
    }
    .emit(&mut Ipv6Packet::new_unchecked(header));
    emit_tcp(segment, seg, &opts[..n]).fill_checksum_v6(seg.src, seg.dst);
    Some(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::VecBuf;
    use crate::wire::tcp_options::Timestamps;
    use crate::wire::TcpFlags;

    fn seg() -> Segment<Ipv6Addr> {
        Segment {
            src: "2001:2:0:1::100".parse().unwrap(),
            dst: "2001:2:0:10::a".parse().unwrap(),
            src_port: 80,
            dst_port: 40000,
            seq: 0xdead_beef,
            ack: 1001,
            flags: TcpFlags::SYN | TcpFlags::ACK,
            window: 64240,
            ttl: 64,
            options: TcpOptions {
                mss: Some(1440),
                wscale: Some(7),
                sack_permitted: true,
                timestamps: Some(Timestamps { val: 5, ecr: 9 }),
            },
        }
    }

    #[test]
    fn a_written_segment_reads_back_with_good_checksums() {
        // A longer frame (with an extension header's worth of bytes) is
        // cut to the new packet.
        let mut b = VecBuf::from_bytes(&[0xa5; 200]);
        let s = seg();
        let end = write6(&mut b, &s).unwrap();
        assert_eq!(end, b.data().len());
        // 20 bytes of header, 4 MSS, 4 SACK permitted and padding, 10
        // timestamps, 3 window scale: 40 bytes of TCP at most here.
        let ip = Ipv6Packet::new_checked(&b.data()[IP..]).unwrap();
        assert_eq!(ip.version(), 6);
        assert_eq!(ip.next_header(), IpProtocol::Tcp);
        assert_eq!(ip.hop_limit(), 64);
        assert_eq!(ip.flow_label(), 0);
        assert_eq!(IP + 40 + usize::from(ip.payload_len()), end);
        let seen = read6(b.data(), IP + 40, end, s.src, s.dst).unwrap();
        assert_eq!(seen.seq, s.seq);
        assert_eq!(seen.ack, s.ack);
        assert_eq!(seen.window, s.window);
        assert_eq!(seen.options, s.options);
        // The pseudo header covers both addresses: read as from anyone
        // else, the checksum fails.
        let other: Ipv6Addr = "2001:2:0:10::b".parse().unwrap();
        assert_eq!(
            read6(b.data(), IP + 40, end, s.src, other),
            Err(DropReason::BadL4Checksum)
        );
        // Truncated: a header that does not fit.
        assert_eq!(
            read6(b.data(), IP + 40, IP + 50, s.src, s.dst),
            Err(DropReason::BadL4Header)
        );
        assert_eq!(
            read6(b.data(), IP + 40, end + 1, s.src, s.dst),
            Err(DropReason::BadL4Header)
        );
    }
}
