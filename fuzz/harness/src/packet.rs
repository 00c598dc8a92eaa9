//! Frame helpers: the fix-ups an input frame may ask for (so that mutated
//! frames still reach the deep paths), and the checks of what the pipeline
//! sends. All on plain bytes, with `lb_core::wire` views where they apply.
//! IPv4 and IPv6 (the IPv6 half: `check_ipv6` and what it uses).

use std::net::{Ipv4Addr, Ipv6Addr};

use lb_config::MacAddr;
use lb_core::snapshot::Snapshot;
use lb_core::wire::checksum;
use lb_core::wire::{walk_ext_headers, IpProtocol, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket};

use crate::Violations;

const IP: usize = 14;

/// Frame flag bits (see the input format in the crate docs).
pub mod flag {
    /// Sets the IPv4 total length (IPv6: payload length) from the frame's
    /// length.
    pub const FIX_IP_LEN: u8 = 0x01;
    /// Sets the UDP length from the IP payload's (IPv6: the upper layer's,
    /// past the extension headers).
    pub const FIX_UDP_LEN: u8 = 0x02;
    /// Recomputes the TCP, UDP (unless 0) or ICMP checksum (IPv6: ICMPv6,
    /// over the pseudo header).
    pub const FIX_L4_SUM: u8 = 0x04;
    /// Recomputes the IPv4 header checksum (IPv6 has none).
    pub const FIX_IP_SUM: u8 = 0x08;
    /// Pads the frame with zeros to 60 bytes (Ethernet's minimum).
    pub const PAD: u8 = 0x10;
    /// Puts the frame in a buffer with no headroom.
    pub const NO_HEADROOM: u8 = 0x20;
    /// Sets the Ethernet destination to the receiving port's MAC.
    pub const OUR_MAC: u8 = 0x40;
    /// Sets a UDP checksum to 0 ("none") before the other fixes.
    pub const UDP_NO_SUM: u8 = 0x80;
    /// What the seeds use: lengths and checksums made right.
    pub const ALL_FIXES: u8 = FIX_IP_LEN | FIX_UDP_LEN | FIX_L4_SUM | FIX_IP_SUM;
}

pub(crate) fn get16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

pub(crate) fn addr(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

/// Where the parts of an IPv4 frame are, as far as they are in the buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    pub ihl: usize,
    /// End of the IP packet in the frame (total length, clamped).
    pub end: usize,
    pub proto: u8,
}

/// The layout of an Ethernet/IPv4 frame (lenient: for fix-ups).
pub(crate) fn layout(b: &[u8]) -> Option<Layout> {
    if b.len() < IP + 20 || b[12] != 0x08 || b[13] != 0x00 || b[IP] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(b[IP] & 0x0f) * 4;
    if ihl < 20 || IP + ihl > b.len() {
        return None;
    }
    let total = usize::from(get16(b, IP + 2));
    let end = (IP + total).min(b.len()).max(IP + ihl);
    Some(Layout {
        ihl,
        end,
        proto: b[IP + 9],
    })
}

/// The TCP or UDP checksum of the segment `seg` from `src` to `dst`.
fn l4_sum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, seg: &[u8]) -> u16 {
    let s = checksum::pseudo_header_sum(src, dst, proto, seg.len() as u16) + checksum::sum(seg);
    !checksum::fold(s)
}

/// Applies the fix-ups `flags` asks for, as far as the frame allows.
pub fn fix_up(b: &mut Vec<u8>, flags: u8, our_mac: Option<[u8; 6]>) {
    if flags & flag::OUR_MAC != 0 && b.len() >= 6 {
        if let Some(mac) = our_mac {
            b[..6].copy_from_slice(&mac);
        }
    }
    fix_up6(b, flags);
    if let Some(l) = layout(b) {
        if flags & flag::FIX_IP_LEN != 0 {
            let total = (b.len() - IP).min(usize::from(u16::MAX)) as u16;
            put16(b, IP + 2, total);
        }
        // Re-read: the total length may have changed.
        let l = layout(b).unwrap_or(l);
        let l4 = IP + l.ihl;
        let src = addr(b, IP + 12);
        let dst = addr(b, IP + 16);
        let seg_len = l.end.saturating_sub(l4);
        if l.proto == 17 && seg_len >= 8 {
            if flags & flag::FIX_UDP_LEN != 0 {
                put16(b, l4 + 4, seg_len as u16);
            }
            if flags & flag::UDP_NO_SUM != 0 {
                put16(b, l4 + 6, 0);
            }
            if flags & flag::FIX_L4_SUM != 0 && get16(b, l4 + 6) != 0 {
                let ulen = usize::from(get16(b, l4 + 4)).clamp(8, seg_len);
                put16(b, l4 + 6, 0);
                let mut c = l4_sum(src, dst, 17, &b[l4..l4 + ulen]);
                if c == 0 {
                    c = 0xffff;
                }
                put16(b, l4 + 6, c);
            }
        }
        if flags & flag::FIX_L4_SUM != 0 {
            if l.proto == 6 && seg_len >= 20 {
                put16(b, l4 + 16, 0);
                let c = l4_sum(src, dst, 6, &b[l4..l.end]);
                put16(b, l4 + 16, c);
            }
            if l.proto == 1 && seg_len >= 8 {
                put16(b, l4 + 2, 0);
                let c = checksum::checksum(&b[l4..l.end]);
                put16(b, l4 + 2, c);
            }
        }
        if flags & flag::FIX_IP_SUM != 0 {
            put16(b, IP + 10, 0);
            let c = checksum::checksum(&b[IP..IP + l.ihl]);
            put16(b, IP + 10, c);
        }
    }
    if flags & flag::PAD != 0 && b.len() < 60 {
        b.resize(60, 0);
    }
}

/// What is known of an IPv4 packet's checksums and size, to compare the
/// packet that leaves with the one that came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sums {
    pub proto: u8,
    pub ttl: u8,
    /// Bytes after the IP packet in the frame (Ethernet padding).
    pub padding: usize,
    /// Whether the TCP/UDP/ICMP checksum verifies (None: not checkable).
    pub l4_valid: Option<bool>,
    /// The UDP checksum field is 0 ("none").
    pub udp_zero: bool,
    /// For an ICMP error: whether the quoted IPv4 header's checksum
    /// verifies (None: not quoted whole).
    pub quoted_valid: Option<bool>,
    /// ICMP type.
    pub icmp_type: Option<u8>,
}

/// The shortest Ethernet frame (without its FCS).
const MIN_FRAME: usize = 60;

/// How long a frame of `len` bytes whose IP packet ends at `ip_end` leaves
/// when forwarded as it is: bytes after the packet are cut, but for the
/// padding of a minimal frame.
fn cut_len(len: usize, ip_end: usize) -> usize {
    if len > ip_end.max(MIN_FRAME) {
        ip_end
    } else {
        len
    }
}

/// Reads the checksums of the IPv4 packet of a frame (strict: None if the
/// IPv4 header does not check out as `wire` sees it).
pub(crate) fn sums(frame: &[u8]) -> Option<Sums> {
    if frame.len() < IP || frame[12] != 0x08 || frame[13] != 0x00 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(&frame[IP..]).ok()?;
    let total = usize::from(ip.total_len());
    let proto = u8::from(ip.protocol());
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let seg = ip.payload();
    let mut s = Sums {
        proto,
        ttl: ip.ttl(),
        padding: frame.len() - IP - total,
        l4_valid: None,
        udp_zero: false,
        quoted_valid: None,
        icmp_type: None,
    };
    match proto {
        6 if TcpPacket::new_checked(seg).is_ok() => {
            s.l4_valid = Some(TcpPacket::new_unchecked(seg).verify_checksum(src, dst));
        }
        17 => {
            if let Ok(u) = UdpPacket::new_checked(seg) {
                s.udp_zero = u.checksum() == 0;
                s.l4_valid = Some(s.udp_zero || u.verify_checksum(src, dst));
            }
        }
        1 if seg.len() >= 8 => {
            s.l4_valid = Some(checksum::checksum(seg) == 0);
            s.icmp_type = Some(seg[0]);
            let q = &seg[8..];
            if q.len() >= 20 && q[0] >> 4 == 4 {
                let qihl = usize::from(q[0] & 0x0f) * 4;
                if qihl >= 20 && q.len() >= qihl {
                    s.quoted_valid = Some(checksum::checksum(&q[..qihl]) == 0);
                }
            }
        }
        _ => {}
    }
    Some(s)
}

/// What a frame the pipeline sent was, judged from it and its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// An ARP reply for one of our addresses.
    ArpReply,
    /// A Neighbor Advertisement answering a solicitation for one of ours.
    NdpAdvert,
    /// An ICMP echo reply from one of our addresses.
    EchoReply,
    /// An ICMP "fragmentation needed" we made for a packet too big to
    /// tunnel, or to forward with NAT.
    FragNeeded,
    /// An ICMP error about a flow, passed on to its real or client.
    IcmpError,
    /// A TCP or UDP packet of a flow (NAT, DR, or TUN around it), or a
    /// handshake segment the SYN proxy made for a real (the SYN from the
    /// client's ACK, the ACK from the real's SYN-ACK).
    Flow,
    /// A SYN-ACK with a cookie the SYN proxy answered a client's SYN with.
    SynCookie,
    /// Anything else (already reported as a violation).
    Other,
}

/// Checks a frame the pipeline sends (`hold`: before its destination MAC
/// is known) out of `port`, against the frame that came in. `proxied`:
/// the input belongs to a flow whose handshake the SYN proxy answered (its
/// sequence numbers, timestamps, SACK blocks and window are translated).
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_sent(
    v: &mut Violations,
    snap: &Snapshot,
    port: usize,
    hold: bool,
    out: &[u8],
    input: &[u8],
    in_port: usize,
    proxied: bool,
) -> Sent {
    let Some(view) = snap.ports.get(port) else {
        v.add(
            "verdict.port",
            format!("sent out of port {port}, which does not exist"),
        );
        return Sent::Other;
    };
    if out.len() < IP {
        v.add("out.ethernet", format!("{} bytes sent", out.len()));
        return Sent::Other;
    }
    if out[6..12] != view.mac.0 {
        v.add(
            "out.src-mac",
            format!("source MAC {:02x?} is not port {port}'s", &out[6..12]),
        );
    }
    let sent = match (out[12], out[13]) {
        _ if tunnel_quote(snap, input).is_some() => check_tunnel_relay(v, snap, out, input),
        (0x08, 0x06) => check_arp_reply(v, snap, port, out, input, in_port),
        (0x08, 0x00) => check_ipv4(v, snap, port, out, input, proxied),
        (0x86, 0xdd) => check_ipv6(v, snap, port, out, input, in_port, proxied),
        _ => {
            v.add(
                "out.ethertype",
                format!("ethertype {:02x}{:02x} sent", out[12], out[13]),
            );
            Sent::Other
        }
    };
    // Nothing that came in a link-layer group frame is forwarded or
    // answered, ARP and neighbor discovery aside (RFC 1812 5.3.4); nothing
    // from an IPv4 source no host has (RFC 1812 5.3.7).
    if input.len() > IP && input[0] & 1 == 1 && !matches!(sent, Sent::ArpReply | Sent::NdpAdvert) {
        v.add(
            "in.to-group",
            format!("{sent:?} sent for a frame to {:02x?}", &input[..6]),
        );
    }
    if (input.get(12..14) == Some(&[0x08, 0x00][..])) && input.len() >= IP + 20 {
        let first = input[IP + 12];
        if first == 0 || first == 127 || first >= 224 {
            v.add(
                "in.martian-source",
                format!("{sent:?} sent for a packet from {}", addr(input, IP + 12)),
            );
        }
    }
    let dst = MacAddr([out[0], out[1], out[2], out[3], out[4], out[5]]);
    if matches!(sent, Sent::ArpReply | Sent::EchoReply) {
        // An answer goes back to the asker, which must be a unicast host.
        if hold || !dst.is_unicast() || dst.is_zero() {
            v.add(
                "out.answer-dst-mac",
                format!(
                    "{sent:?} sent to {dst:?}: in {:02x?}",
                    &input[..input.len().min(42)]
                ),
            );
        }
    } else if sent == Sent::NdpAdvert {
        // Its destination MAC is checked with it (a DAD answer goes to
        // the all-nodes group).
        if hold {
            v.add("out.answer-dst-mac", "a held advertisement".to_string());
        }
    } else if hold != dst.is_zero() {
        v.add(
            "out.dst-mac",
            format!(
                "destination MAC {dst:?} on a {} frame",
                if hold { "held" } else { "sent" }
            ),
        );
    }
    sent
}

fn check_arp_reply(
    v: &mut Violations,
    snap: &Snapshot,
    port: usize,
    out: &[u8],
    input: &[u8],
    in_port: usize,
) -> Sent {
    let ok = out.len() == input.len()
        && out.len() >= 42
        && port == in_port
        && input[12..14] == [0x08, 0x06]
        && out[14..22] == [0, 1, 8, 0, 6, 4, 0, 2]
        && out[22..28] == snap.ports[port].mac.0
        && snap.is_local(port, addr(out, 28))
        && out[28..32] == input[38..42]
        && out[32..38] == input[22..28]
        && out[38..42] == input[28..32]
        && out[0..6] == input[6..12];
    if !ok {
        v.add(
            "out.arp-reply",
            format!("ARP sent out of port {port} (in {in_port}) is not the reply to the request: in {input:02x?} out {out:02x?}"),
        );
    }
    Sent::ArpReply
}

/// TCP flags of a TCP/IPv4 frame with a 20-byte IPv4 header.
fn tcp_flags(f: &[u8]) -> Option<u8> {
    (f.len() > IP + 33 && f[IP + 9] == 6 && f[IP] == 0x45).then(|| f[IP + 33])
}

const F_SYN: u8 = 0x02;
const F_ACK: u8 = 0x10;
const F_RST: u8 = 0x04;

/// Which handshake segment of the SYN proxy `out` is, made from `input`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Made {
    /// The SYN-ACK with a cookie, back to the client.
    SynAck,
    /// The SYN to the real, from the client's ACK.
    SynToReal,
    /// The ACK to the real, from its SYN-ACK.
    AckToReal,
    /// The RST to the real, from its ACK of another connection than the
    /// waiting flow's SYN: at the number it acknowledged, without ACK.
    RstToReal,
}

fn proxy_made(out: &[u8], input: &[u8]) -> Option<Made> {
    let (i, o) = (tcp_flags(input)?, tcp_flags(out)?);
    let syn = |f: u8| f & (F_SYN | F_ACK | F_RST) == F_SYN;
    let ack = |f: u8| f & (F_SYN | F_ACK | F_RST) == F_ACK;
    let synack = |f: u8| f & (F_SYN | F_ACK | F_RST) == F_SYN | F_ACK;
    if syn(i) && o == F_SYN | F_ACK {
        Some(Made::SynAck)
    } else if ack(i) && o == F_SYN {
        Some(Made::SynToReal)
    } else if synack(i) && o == F_ACK && out[IP + 16..IP + 20] == input[IP + 12..IP + 16] {
        Some(Made::AckToReal)
    } else if ack(i) && o == F_RST && out[IP + 16..IP + 20] == input[IP + 12..IP + 16] {
        Some(Made::RstToReal)
    } else {
        None
    }
}

/// A segment the SYN proxy made: whole (valid checksums, as its input
/// had: the proxy drops what does not verify), no payload, no padding,
/// addressed as its kind says. A SYN-ACK answers a SYN to a service the
/// proxy covers, or one on a flow it proxies (`proxied`: answered again
/// while the flow waits for its real, whatever the service's mode is
/// since a reload; found by fuzzing, run 79).
fn check_proxy_made(
    v: &mut Violations,
    snap: &Snapshot,
    made: Made,
    out: &[u8],
    input: &[u8],
    proxied: bool,
) {
    let ip = Ipv4Packet::new_unchecked(&out[IP..]);
    let seg = ip.payload();
    let ok_tcp = TcpPacket::new_checked(seg).is_ok_and(|t| {
        t.payload().is_empty()
            && t.verify_checksum(ip.src_addr(), ip.dst_addr())
            && t.header_len() <= 20 + 24
    });
    let whole = usize::from(ip.total_len()) + IP == out.len();
    let (isrc, idst) = (addr(input, IP + 12), addr(input, IP + 16));
    let (sport, dport) = (get16(input, IP + 20), get16(input, IP + 22));
    let (osrc, odst) = (ip.src_addr(), ip.dst_addr());
    let (osport, odport) = (get16(out, IP + 20), get16(out, IP + 22));
    let shaped = match made {
        Made::SynAck => {
            let svc = snap.service_for(6, idst, dport);
            (proxied
                || svc.is_some_and(|s| snap.services[s].syn_proxy != lb_config::SynProxyMode::Off))
                && (osrc, odst, osport, odport) == (idst, isrc, dport, sport)
                && ip.ttl() == 64
                && TcpPacket::new_unchecked(seg).ack_number()
                    == u32::from_be_bytes([
                        input[IP + 24],
                        input[IP + 25],
                        input[IP + 26],
                        input[IP + 27],
                    ])
                    .wrapping_add(1)
        }
        Made::SynToReal => {
            osrc == isrc && osport == sport && snap.service_for(6, idst, dport).is_some()
        }
        Made::AckToReal => {
            (osrc, odst, osport, odport) == (idst, isrc, dport, sport)
                && snap.is_nat_endpoint(6, isrc, sport)
        }
        Made::RstToReal => {
            (osrc, odst, osport, odport) == (idst, isrc, dport, sport)
                && snap.is_nat_endpoint(6, isrc, sport)
                && ip.ttl() == 64
                && out[IP + 24..IP + 28] == input[IP + 28..IP + 32]
                && out[IP + 28..IP + 32] == [0; 4]
        }
    };
    if !(ok_tcp && whole && shaped) {
        v.add(
            "out.syn-proxy",
            format!(
                "{made:?} made by the SYN proxy is not well formed (tcp {ok_tcp}, length {whole}, \
                 addresses {shaped}): in {input:02x?} out {out:02x?}"
            ),
        );
    }
}

/// [`proxy_made`] over IPv6: which handshake segment of the SYN proxy
/// `out` is, made from `input` (TCP both).
fn proxy_made6(out: &[u8], input: &[u8], o: &V6, i: &V6) -> Option<Made> {
    let flags = |b: &[u8], l4: usize| b.get(l4 + 13).copied();
    let (fi, fo) = (flags(input, i.l4)?, flags(out, o.l4)?);
    let syn = |f: u8| f & (F_SYN | F_ACK | F_RST) == F_SYN;
    let ack = |f: u8| f & (F_SYN | F_ACK | F_RST) == F_ACK;
    let synack = |f: u8| f & (F_SYN | F_ACK | F_RST) == F_SYN | F_ACK;
    if syn(fi) && fo == F_SYN | F_ACK {
        Some(Made::SynAck)
    } else if ack(fi) && fo == F_SYN {
        Some(Made::SynToReal)
    } else if synack(fi) && fo == F_ACK && o.dst == i.src {
        Some(Made::AckToReal)
    } else if ack(fi) && fo == F_RST && o.dst == i.src {
        Some(Made::RstToReal)
    } else {
        None
    }
}

/// [`check_proxy_made`] over IPv6: whole (a plain 40-byte header, valid
/// checksum, no payload, no padding), addressed as its kind says.
#[allow(clippy::too_many_arguments)]
fn check_proxy_made6(
    v: &mut Violations,
    snap: &Snapshot,
    made: Made,
    out: &[u8],
    input: &[u8],
    o: &V6,
    i: &V6,
    proxied: bool,
) {
    let seg = &out[o.l4.min(o.end)..o.end];
    let ok_tcp = TcpPacket::new_checked(seg).is_ok_and(|t| {
        t.payload().is_empty() && t.verify_checksum_v6(o.src, o.dst) && t.header_len() <= 20 + 24
    });
    let whole = o.l4 == L4_6 && o.end == out.len();
    let (sport, dport) = (get16(input, i.l4), get16(input, i.l4 + 2));
    let (osport, odport) = (get16(out, o.l4), get16(out, o.l4 + 2));
    let shaped = match made {
        Made::SynAck => {
            let svc = snap.service_for6(6, i.dst, dport);
            (proxied
                || svc.is_some_and(|s| snap.services[s].syn_proxy != lb_config::SynProxyMode::Off))
                && (o.src, o.dst, osport, odport) == (i.dst, i.src, dport, sport)
                && o.hop == 64
                && TcpPacket::new_checked(seg).is_ok_and(|t| {
                    t.ack_number()
                        == u32::from_be_bytes([
                            input[i.l4 + 4],
                            input[i.l4 + 5],
                            input[i.l4 + 6],
                            input[i.l4 + 7],
                        ])
                        .wrapping_add(1)
                })
        }
        Made::SynToReal => {
            o.src == i.src
                && osport == sport
                && o.hop == i.hop.wrapping_sub(1)
                && snap.service_for6(6, i.dst, dport).is_some()
        }
        Made::AckToReal => {
            (o.src, o.dst, osport, odport) == (i.dst, i.src, dport, sport)
                && snap.is_nat_endpoint6(6, i.src, sport)
        }
        Made::RstToReal => {
            (o.src, o.dst, osport, odport) == (i.dst, i.src, dport, sport)
                && snap.is_nat_endpoint6(6, i.src, sport)
                && o.hop == 64
                && out.get(o.l4 + 4..o.l4 + 8) == input.get(i.l4 + 8..i.l4 + 12)
                && out.get(o.l4 + 8..o.l4 + 12) == Some(&[0u8; 4][..])
        }
    };
    if !(ok_tcp && whole && shaped) {
        v.add(
            "out.syn-proxy",
            format!(
                "{made:?} over IPv6 made by the SYN proxy is not well formed (tcp {ok_tcp}, \
                 length {whole}, addresses {shaped}): in {input:02x?} out {out:02x?}"
            ),
        );
    }
}

fn check_ipv4(
    v: &mut Violations,
    snap: &Snapshot,
    port: usize,
    out: &[u8],
    input: &[u8],
    proxied: bool,
) -> Sent {
    let ip = match Ipv4Packet::new_checked(&out[IP..]) {
        Ok(ip) => ip,
        Err(e) => {
            v.add("out.ip-header", format!("{e} IPv4 header sent: {out:02x?}"));
            return Sent::Other;
        }
    };
    if ip.header_len() != 20 {
        v.add("out.ip-header", format!("IHL {} sent", ip.header_len() / 4));
    }
    if !ip.verify_checksum() {
        v.add(
            "out.ip-checksum",
            format!("IPv4 header checksum does not verify: {out:02x?}"),
        );
    }
    if ip.is_fragment() {
        v.add("out.ip-header", "a fragment sent".to_string());
    }
    let Some(o) = sums(out) else {
        return Sent::Other;
    };
    let Some(i) = sums(input) else {
        v.add(
            "out.from-nothing",
            "an IPv4 packet sent for an input that is not one".to_string(),
        );
        return Sent::Other;
    };
    if o.ttl == 0 && i.ttl != 0 {
        v.add("out.ttl", format!("TTL {} in, 0 out", i.ttl));
    }
    let generated = o.proto == 1 && i.proto != 1;
    let total = usize::from(ip.total_len());
    if (o.proto == 4 || generated) && o.padding != 0 {
        v.add(
            "out.length",
            format!(
                "{} bytes after a {total}-byte packet that we built",
                o.padding
            ),
        );
    } else if o.padding > i.padding {
        v.add(
            "out.length",
            format!("{} bytes of padding out, {} in", o.padding, i.padding),
        );
    } else if out.len() > (IP + total).max(MIN_FRAME) {
        v.add(
            "out.length",
            format!(
                "{} bytes after a {total}-byte packet sent: more than a minimal frame's padding",
                o.padding
            ),
        );
    }
    if let (6, Some(made)) = (o.proto, proxy_made(out, input)) {
        check_proxy_made(v, snap, made, out, input, proxied);
        return if made == Made::SynAck {
            Sent::SynCookie
        } else {
            Sent::Flow
        };
    }
    match o.proto {
        6 | 17 => {
            if i.proto != o.proto {
                v.add(
                    "out.protocol",
                    format!("protocol {} in, {} out", i.proto, o.proto),
                );
                return Sent::Other;
            }
            match (i.l4_valid, o.l4_valid) {
                (Some(a), Some(b)) if a == b => {}
                (a, b) => v.add(
                    "out.l4-checksum",
                    format!(
                        "protocol {}: checksum valid in {a:?}, out {b:?}: in {input:02x?} out {out:02x?}",
                        o.proto
                    ),
                ),
            }
            if o.udp_zero && !i.udp_zero {
                v.add("out.udp-zero", "UDP checksum 0 out, not 0 in".to_string());
            }
            if out.len() != cut_len(input.len(), input.len() - i.padding) {
                v.add(
                    "out.length",
                    format!("{} bytes in, {} out", input.len(), out.len()),
                );
            } else {
                // What was cut after the packet is no more.
                let input = &input[..out.len()];
                // Only addresses, ports, TTL and checksums change; for a
                // flow the SYN proxy answered, sequence and acknowledgment
                // numbers, the window and the options too (their length
                // stays).
                let hdr = if o.proto == 6 && proxied {
                    usize::from(input[IP + 32] >> 4) * 4
                } else if o.proto == 6 {
                    20
                } else {
                    8
                };
                let body = IP + 20 + hdr;
                let same = out[IP..IP + 8] == input[IP..IP + 8]
                    && out[IP + 9] == input[IP + 9]
                    && (o.proto != 6
                        || proxied
                        || (out[IP + 24..IP + 36] == input[IP + 24..IP + 36]
                            && out[IP + 38..IP + 40] == input[IP + 38..IP + 40]))
                    && (o.proto != 6
                        || !proxied
                        || (out[IP + 32..IP + 34] == input[IP + 32..IP + 34]
                            && out[IP + 38..IP + 40] == input[IP + 38..IP + 40]))
                    && (o.proto != 17 || out[IP + 24..IP + 26] == input[IP + 24..IP + 26])
                    && out.get(body..) == input.get(body..);
                if !same {
                    v.add(
                        "out.payload",
                        format!("more than addresses, ports, TTL and checksums changed: in {input:02x?} out {out:02x?}"),
                    );
                }
            }
            Sent::Flow
        }
        1 => {
            if generated {
                let ok = o.icmp_type == Some(3)
                    && out.len() == IP + 20 + 8 + 28
                    && o.l4_valid == Some(true)
                    && (snap.is_vip(ip.src_addr())
                        || snap.ports.iter().any(|p| p.ipv4() == Some(ip.src_addr())))
                    && ip.dst_addr() == addr(input, IP + 12)
                    && out[IP + 28..IP + 56] == input[IP..IP + 28];
                if !ok {
                    v.add(
                        "out.frag-needed",
                        format!("ICMP made for a protocol {} packet is not a well-formed frag-needed: {out:02x?}", i.proto),
                    );
                }
                // Never about an ICMP error (RFC 1122 3.2.2).
                if i.proto == 1 && matches!(i.icmp_type, Some(3 | 4 | 5 | 11 | 12)) {
                    v.add(
                        "out.frag-needed",
                        format!("frag-needed about an ICMP error: in {input:02x?}"),
                    );
                }
                return Sent::FragNeeded;
            }
            if i.icmp_type == Some(8) && o.icmp_type == Some(0) {
                if o.l4_valid != Some(true) || !snap.is_local(port, ip.src_addr()) {
                    v.add("out.echo-reply", format!("echo reply {out:02x?}"));
                }
                return Sent::EchoReply;
            }
            // Passed on only when it came with a good checksum (it is made
            // good again after a rewrite), and only to the end of the flow
            // that sent the packet it quotes.
            if i.l4_valid != Some(true) || o.l4_valid != Some(true) {
                v.add(
                    "out.icmp-checksum",
                    format!("ICMP error passed on with a checksum valid in {:?}, out {:?}: in {input:02x?} out {out:02x?}", i.l4_valid, o.l4_valid),
                );
            }
            if out.len() >= IP + 44 && ip.dst_addr() != addr(out, IP + 28 + 12) {
                v.add(
                    "out.icmp-error-ends",
                    format!(
                        "ICMP error to {} about a packet from {}: {out:02x?}",
                        ip.dst_addr(),
                        addr(out, IP + 28 + 12)
                    ),
                );
            }
            // A "fragmentation needed" passed on announces 0 ("unknown",
            // RFC 1191) or at least 68, the smallest IPv4 link (RFC 791).
            // (No IPv4 options: the pipeline passes on none.)
            let l4 = IP + 20;
            if o.icmp_type == Some(3) && out.get(l4 + 1) == Some(&4) && out.len() >= l4 + 8 {
                let mtu = get16(out, l4 + 6);
                if (1..68).contains(&mtu) {
                    v.add(
                        "out.icmp-mtu",
                        format!("frag-needed passed on announcing MTU {mtu}: {out:02x?}"),
                    );
                }
            }
            if i.quoted_valid == Some(true) && o.quoted_valid != Some(true) {
                v.add(
                    "out.quoted-checksum",
                    format!("quoted IPv4 header checksum valid in, not out: in {input:02x?} out {out:02x?}"),
                );
            }
            Sent::IcmpError
        }
        4 => {
            check_tunnel(v, snap, port, out, input);
            match i.proto {
                6 | 17 => Sent::Flow,
                1 => Sent::IcmpError,
                _ => Sent::Other,
            }
        }
        p => {
            v.add("out.protocol", format!("protocol {p} sent"));
            Sent::Other
        }
    }
}

/// IPIP: an outer header from the port's address, and inside, the packet
/// that came in, byte for byte (Ethernet padding trimmed).
fn check_tunnel(v: &mut Violations, snap: &Snapshot, port: usize, out: &[u8], input: &[u8]) {
    let outer = Ipv4Packet::new_unchecked(&out[IP..]);
    if usize::from(outer.total_len()) != out.len() - IP
        || Some(outer.src_addr()) != snap.ports[port].ipv4()
        || outer.ttl() == 0
    {
        v.add(
            "out.tunnel",
            format!("outer header {:02x?}", &out[IP..IP + 20]),
        );
    }
    let inner = &out[IP + 20..];
    let in_total = usize::from(get16(input, IP + 2));
    if inner.len() != in_total || input.get(IP..IP + in_total) != Some(inner) {
        v.add(
            "out.tunnel",
            format!("the inner packet is not the packet received: in {input:02x?} out {out:02x?}"),
        );
        return;
    }
    if Ipv4Packet::new_checked(inner).map_or(true, |p| !p.verify_checksum()) {
        v.add(
            "out.tunnel",
            "inner IPv4 header does not verify".to_string(),
        );
    }
    if outer.dont_fragment() != Ipv4Packet::new_unchecked(inner).dont_fragment() {
        v.add("out.tunnel", "outer DF differs from the inner".to_string());
    }
}

// ---------------------------------------------------------------- IPv6 --

/// Where the IPv6 header starts in a frame, and its fixed length.
const IP6_LEN: usize = 40;
/// Where the upper layer starts in a frame with no extension headers.
const L4_6: usize = IP + IP6_LEN;
/// The IPv6 minimum MTU: no ICMPv6 error we make is larger.
const MIN_MTU6: usize = 1280;

pub(crate) fn addr6(b: &[u8], at: usize) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[at..at + 16]);
    Ipv6Addr::from(o)
}

/// Where the parts of an Ethernet/IPv6 frame are (lenient: for fix-ups and
/// for building replies).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout6 {
    /// End of the IPv6 packet in the frame (payload length, clamped).
    pub end: usize,
    /// The upper layer and where it starts in the frame, past the
    /// extension headers (None: the walk found none).
    pub upper: Option<(u8, usize)>,
}

pub(crate) fn layout6(b: &[u8]) -> Option<Layout6> {
    if b.len() < L4_6 || b[12..14] != [0x86, 0xdd] || b[IP] >> 4 != 6 {
        return None;
    }
    let end = (L4_6 + usize::from(get16(b, IP + 4))).min(b.len());
    let upper = walk_ext_headers(IpProtocol::from(b[IP + 6]), &b[L4_6..end])
        .ok()
        .map(|u| (u8::from(u.protocol), IP + u.offset));
    Some(Layout6 { end, upper })
}

/// The TCP, UDP or ICMPv6 checksum of the upper-layer `seg` from `src` to
/// `dst` (the field itself zeroed or not: the sum of a valid one is 0).
pub(crate) fn l4_sum6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, seg: &[u8]) -> u16 {
    let s = checksum::pseudo_header_sum_v6(src, dst, proto, seg.len() as u32) + checksum::sum(seg);
    !checksum::fold(s)
}

/// The offset of the checksum field in an upper-layer header.
pub(crate) fn sum_at(proto: u8) -> Option<usize> {
    match proto {
        6 => Some(16),
        17 => Some(6),
        58 => Some(2),
        _ => None,
    }
}

/// Fills the TCP, UDP or ICMPv6 checksum of `b[l4..end]` (UDP: over its
/// length field's bytes, never 0).
pub(crate) fn fill_sum6(b: &mut [u8], l4: usize, end: usize, proto: u8) {
    let Some(at) = sum_at(proto) else { return };
    let min = if proto == 6 { 20 } else { 8.min(at + 2).max(4) };
    if end < l4 + min || end > b.len() {
        return;
    }
    let (src, dst) = (addr6(b, IP + 8), addr6(b, IP + 24));
    let seg_end = if proto == 17 {
        (l4 + usize::from(get16(b, l4 + 4))).clamp(l4 + 8, end)
    } else {
        end
    };
    put16(b, l4 + at, 0);
    let mut c = l4_sum6(src, dst, proto, &b[l4..seg_end]);
    if proto == 17 && c == 0 {
        c = 0xffff;
    }
    put16(b, l4 + at, c);
}

/// The IPv6 half of [`fix_up`].
fn fix_up6(b: &mut [u8], flags: u8) {
    if layout6(b).is_none() {
        return;
    }
    if flags & flag::FIX_IP_LEN != 0 {
        let len = (b.len() - L4_6).min(usize::from(u16::MAX)) as u16;
        put16(b, IP + 4, len);
    }
    let Some(Layout6 {
        end,
        upper: Some((proto, l4)),
    }) = layout6(b)
    else {
        return;
    };
    if proto == 17 && end >= l4 + 8 {
        if flags & flag::FIX_UDP_LEN != 0 {
            put16(b, l4 + 4, (end - l4).min(usize::from(u16::MAX)) as u16);
        }
        if flags & flag::UDP_NO_SUM != 0 {
            put16(b, l4 + 6, 0);
        }
        if flags & flag::FIX_L4_SUM != 0 && get16(b, l4 + 6) != 0 {
            fill_sum6(b, l4, end, 17);
        }
    } else if flags & flag::FIX_L4_SUM != 0 {
        fill_sum6(b, l4, end, proto);
    }
}

/// An IPv6 packet of a frame as the checks see it (strict: None unless the
/// fixed header is sound and its payload length fits the frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct V6 {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// The fixed header's next header.
    pub next_header: u8,
    pub hop: u8,
    pub traffic_class: u8,
    /// End of the packet in the frame.
    pub end: usize,
    /// The upper layer and where it starts in the frame (None: the
    /// extension-header walk stopped before one).
    pub proto: Option<u8>,
    pub l4: usize,
    /// Whether the TCP/UDP/ICMPv6 checksum verifies (None: not checkable).
    pub l4_valid: Option<bool>,
    /// The UDP checksum field is 0 (invalid over IPv6).
    pub udp_zero: bool,
    pub icmp_type: Option<u8>,
}

pub(crate) fn v6(frame: &[u8]) -> Option<V6> {
    if frame.len() < IP || frame[12..14] != [0x86, 0xdd] {
        return None;
    }
    let ip = Ipv6Packet::new_checked(&frame[IP..]).ok()?;
    let end = L4_6 + usize::from(ip.payload_len());
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let upper = walk_ext_headers(ip.next_header(), &frame[L4_6..end]).ok();
    let mut o = V6 {
        src,
        dst,
        next_header: u8::from(ip.next_header()),
        hop: ip.hop_limit(),
        traffic_class: ip.traffic_class(),
        end,
        proto: upper.map(|u| u8::from(u.protocol)),
        l4: upper.map_or(end, |u| IP + u.offset),
        l4_valid: None,
        udp_zero: false,
        icmp_type: None,
    };
    let seg = &frame[o.l4..end];
    match o.proto {
        Some(6) if TcpPacket::new_checked(seg).is_ok() => {
            o.l4_valid = Some(TcpPacket::new_unchecked(seg).verify_checksum_v6(src, dst));
        }
        Some(17) => {
            if let Ok(u) = UdpPacket::new_checked(seg) {
                o.udp_zero = u.checksum() == 0;
                o.l4_valid = Some(u.verify_checksum_v6(src, dst));
            }
        }
        Some(58) if seg.len() >= 4 => {
            o.l4_valid = Some(l4_sum6(src, dst, 58, seg) == 0);
            o.icmp_type = Some(seg[0]);
        }
        _ => {}
    }
    Some(o)
}

/// Whether an ICMPv6 type is an error message (types below 128).
fn is_icmp6_error(t: Option<u8>) -> bool {
    t.is_some_and(|t| t < 128)
}

/// A unicast host's address: what an answer or an error we make may go
/// to (never a group, `::` or loopback).
fn unicast6(a: Ipv6Addr) -> bool {
    !a.is_multicast() && !a.is_unspecified() && !a.is_loopback()
}

/// Checks an IPv6 frame the pipeline sends out of `port`, made from
/// `input` (IPv6, or IPv4 for 4in6) that came in on `in_port`.
pub(crate) fn check_ipv6(
    v: &mut Violations,
    snap: &Snapshot,
    port: usize,
    out: &[u8],
    input: &[u8],
    in_port: usize,
    proxied: bool,
) -> Sent {
    let Some(o) = v6(out) else {
        v.add(
            "out.ip6-header",
            format!("an IPv6 header that is not sound (version, payload length): {out:02x?}"),
        );
        return Sent::Other;
    };
    if snap.ports[port].address6.is_none() {
        v.add(
            "out.ip6-port",
            format!("IPv6 sent out of port {port}, which has no address6"),
        );
    }
    if o.hop == 0 {
        v.add("out.hop-limit", format!("hop limit 0 sent: {out:02x?}"));
    }
    if matches!(o.next_header, 4 | 41) {
        return check_tunnel6(v, snap, port, out, input, &o);
    }
    let Some(i) = v6(input) else {
        v.add(
            "out.from-nothing",
            format!("an IPv6 packet sent for an input that is not one: {input:02x?}"),
        );
        return Sent::Other;
    };
    let (padding, in_padding) = (out.len() - o.end, input.len() - i.end);
    if out.len() > o.end.max(MIN_FRAME) {
        v.add(
            "out.length",
            format!(
                "{padding} bytes after the IPv6 packet sent: more than a minimal frame's padding"
            ),
        );
    }
    match o.proto {
        Some(58) if o.icmp_type == Some(136) => {
            check_na(v, snap, port, out, input, in_port, &o, &i)
        }
        Some(58) if o.icmp_type == Some(129) && i.icmp_type == Some(128) => {
            let ok = o.l4_valid == Some(true)
                && port == in_port
                && o.l4 == L4_6
                && (o.src, o.dst) == (i.dst, i.src)
                && snap.is_local6(port, o.src)
                && o.hop == 64
                && o.end - o.l4 == i.end - i.l4
                && out[o.l4 + 1] == 0
                && out[o.l4 + 4..o.end] == input[i.l4 + 4..i.end]
                && padding <= in_padding;
            if !ok {
                v.add(
                    "out.echo-reply",
                    format!("IPv6 echo reply is not the answer: in {input:02x?} out {out:02x?}"),
                );
            }
            if !unicast6(o.dst) {
                v.add(
                    "out.answer-dst-ip",
                    format!("an echo reply to {}: in {input:02x?}", o.dst),
                );
            }
            Sent::EchoReply
        }
        Some(58) if o.icmp_type == Some(2) && i.proto != Some(58) => {
            check_too_big(v, snap, out, input, &o, &i);
            Sent::FragNeeded
        }
        Some(58) => {
            // An ICMPv6 error about a flow, passed on.
            if i.proto != Some(58)
                || !is_icmp6_error(o.icmp_type)
                || o.icmp_type != i.icmp_type
                || out[o.l4 + 1] != input[i.l4 + 1]
            {
                v.add(
                    "out.icmp6",
                    format!("ICMPv6 sent that is neither made nor passed on: in {input:02x?} out {out:02x?}"),
                );
                return Sent::Other;
            }
            if i.l4_valid != Some(true) || o.l4_valid != Some(true) {
                v.add(
                    "out.icmp-checksum",
                    format!("ICMPv6 error passed on with a checksum valid in {:?}, out {:?}: in {input:02x?} out {out:02x?}", i.l4_valid, o.l4_valid),
                );
            }
            // A Packet Too Big passed on announces at least 1280 (RFC 8201).
            if o.icmp_type == Some(2) && out.len() >= o.l4 + 8 {
                let mtu = u32::from_be_bytes([
                    out[o.l4 + 4],
                    out[o.l4 + 5],
                    out[o.l4 + 6],
                    out[o.l4 + 7],
                ]);
                if mtu < 1280 {
                    v.add(
                        "out.icmp-mtu",
                        format!("Packet Too Big passed on announcing MTU {mtu}: {out:02x?}"),
                    );
                }
            }
            // The quoted header's source, after the message's 8 bytes.
            let quoted_src = o.l4 + 8 + 8;
            if out.len() >= quoted_src + 16 && addr6(out, IP + 24) != addr6(out, quoted_src) {
                v.add(
                    "out.icmp-error-ends",
                    format!(
                        "ICMPv6 error to {} about a packet from {}: {out:02x?}",
                        addr6(out, IP + 24),
                        addr6(out, quoted_src)
                    ),
                );
            }
            check_forwarded6(v, out, input, &o, &i, padding, in_padding, false);
            Sent::IcmpError
        }
        Some(p @ (6 | 17)) => {
            if i.proto != Some(p) {
                v.add(
                    "out.protocol",
                    format!("protocol {:?} in, {p} out", i.proto),
                );
                return Sent::Other;
            }
            if let (6, Some(made)) = (p, proxy_made6(out, input, &o, &i)) {
                check_proxy_made6(v, snap, made, out, input, &o, &i, proxied);
                return if made == Made::SynAck {
                    Sent::SynCookie
                } else {
                    Sent::Flow
                };
            }
            match (i.l4_valid, o.l4_valid) {
                (Some(a), Some(b)) if a == b => {}
                (a, b) => v.add(
                    "out.l4-checksum",
                    format!(
                        "IPv6 protocol {p}: checksum valid in {a:?}, out {b:?}: in {input:02x?} out {out:02x?}"
                    ),
                ),
            }
            if o.udp_zero {
                v.add(
                    "out.udp-zero",
                    format!("UDP checksum 0 sent over IPv6: in {input:02x?} out {out:02x?}"),
                );
            }
            check_forwarded6(v, out, input, &o, &i, padding, in_padding, proxied);
            Sent::Flow
        }
        p => {
            v.add("out.protocol", format!("IPv6 upper layer {p:?} sent"));
            Sent::Other
        }
    }
}

/// A packet passed on, not made: the same length; DR (addresses kept)
/// byte for byte; NAT66 only addresses, ports, hop limit (one less) and
/// the checksum changed (an ICMPv6 error's whole message may change: its
/// quote is translated and its checksum computed again). For a flow the
/// SYN proxy answered (`proxied`), sequence and acknowledgment numbers,
/// the window and the options too (their length stays).
#[allow(clippy::too_many_arguments)]
fn check_forwarded6(
    v: &mut Violations,
    out: &[u8],
    input: &[u8],
    o: &V6,
    i: &V6,
    padding: usize,
    in_padding: usize,
    proxied: bool,
) {
    // An ICMPv6 error from inside passed on to a client is cut after 128
    // bytes of its quote, its RFC 4884 length cleared: what a router
    // inside appended goes no further (`icmpv6::cut_extensions`).
    let cut = o.proto == Some(58)
        && i.proto == Some(58)
        && o.icmp_type.is_some_and(|t| t < 128)
        && o.l4 == i.l4
        && o.end < i.end
        && o.end >= o.l4 + 8 + 128
        && out.get(o.l4 + 4) == Some(&0)
        && padding == 0;
    if !cut
        && (padding > in_padding
            || out.len() != cut_len(input.len(), i.end)
            || o.l4 != i.l4
            || o.end != i.end)
    {
        v.add(
            "out.length",
            format!(
                "IPv6 passed on: {} bytes in ({in_padding} padding), {} out ({padding} padding)",
                input.len(),
                out.len()
            ),
        );
        return;
    }
    // What was cut after the packet is no more.
    let input = &input[..out.len()];
    if (o.src, o.dst) == (i.src, i.dst) {
        if out[IP..] != input[IP..] {
            v.add(
                "out.payload",
                format!("a packet sent with its addresses unchanged (DR) was changed: in {input:02x?} out {out:02x?}"),
            );
        }
        return;
    }
    if o.hop != i.hop.wrapping_sub(1) {
        v.add(
            "out.hop-limit",
            format!("hop limit {} in, {} out (NAT66)", i.hop, o.hop),
        );
    }
    let mask = |b: &[u8]| -> Vec<u8> {
        let mut m = b[IP..o.end].to_vec();
        if cut {
            // The payload length follows the cut.
            m[4..6].fill(0);
        }
        m[7] = 0;
        m[8..40].fill(0);
        let l4 = o.l4 - IP;
        match o.proto {
            Some(58) => m[l4 + 2..].fill(0),
            Some(p) => {
                m[l4..l4 + 4].fill(0);
                if let Some(at) = sum_at(p) {
                    m[l4 + at..l4 + at + 2].fill(0);
                }
                if p == 6 && proxied && m.len() >= l4 + 20 {
                    let hdr = (usize::from(m[l4 + 12] >> 4) * 4).clamp(20, m.len() - l4);
                    m[l4 + 4..l4 + 12].fill(0);
                    m[l4 + 14..l4 + 16].fill(0);
                    m[l4 + 20..l4 + hdr].fill(0);
                }
            }
            None => {}
        }
        m
    };
    if mask(out) != mask(input) || (!cut && out[o.end..] != input[i.end..]) {
        v.add(
            "out.payload",
            format!("more than addresses, ports, hop limit and checksum changed: in {input:02x?} out {out:02x?}"),
        );
    }
}

/// A Neighbor Advertisement we answer a solicitation with.
#[allow(clippy::too_many_arguments)]
fn check_na(
    v: &mut Violations,
    snap: &Snapshot,
    port: usize,
    out: &[u8],
    input: &[u8],
    in_port: usize,
    o: &V6,
    i: &V6,
) -> Sent {
    if i.icmp_type != Some(135) || i.end < i.l4 + 24 {
        v.add(
            "out.ndp-advert",
            format!("an advertisement sent for what is not a solicitation: in {input:02x?}"),
        );
        return Sent::NdpAdvert;
    }
    let ns_target = addr6(input, i.l4 + 8);
    let mac = snap.ports[port].mac.0;
    let whole = out.len() == L4_6 + 32 && o.end == out.len() && o.l4 == L4_6;
    let target = if whole { addr6(out, L4_6 + 8) } else { o.src };
    let flags = out.get(L4_6 + 4).copied().unwrap_or(0);
    let dad = i.src.is_unspecified();
    let asker_mac = ns_source_mac(input, i).unwrap_or_else(|| {
        let mut m = [0u8; 6];
        m.copy_from_slice(&input[6..12]);
        m
    });
    let addressed = if dad {
        o.dst == Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1)
            && out[..6] == [0x33, 0x33, 0, 0, 0, 1]
            && flags & 0x40 == 0
    } else {
        o.dst == i.src && out[..6] == asker_mac && flags & 0x40 != 0
    };
    let ok = whole
        && port == in_port
        && o.hop == 255
        && o.l4_valid == Some(true)
        && out[L4_6 + 1] == 0
        && target == ns_target
        && o.src == target
        // Router and Override set (the appliance forwards: Router, as
        // Linux sets it when forwarding).
        && flags & 0xa0 == 0xa0
        && out[L4_6 + 24..] == [2, 1, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]]
        && addressed;
    if !ok {
        v.add(
            "out.ndp-advert",
            format!("the advertisement is not the answer to the solicitation: in {input:02x?} out {out:02x?}"),
        );
    }
    if !snap.is_local6(port, target) {
        v.add(
            "out.ndp-advert",
            format!("an advertisement for {target}, not one of port {port}'s addresses"),
        );
    }
    Sent::NdpAdvert
}

/// The source link-layer address option of a solicitation, if it has one.
fn ns_source_mac(input: &[u8], i: &V6) -> Option<[u8; 6]> {
    let mut at = i.l4 + 24;
    while at + 8 <= i.end {
        let (kind, len) = (input[at], usize::from(input[at + 1]) * 8);
        if len == 0 {
            return None;
        }
        if kind == 1 && len == 8 {
            let mut m = [0u8; 6];
            m.copy_from_slice(&input[at + 2..at + 8]);
            return Some(m);
        }
        at += len;
    }
    None
}

/// "Packet too big" we made about `input`: at most 1280 bytes, quoting
/// the packet as it came, to its unicast sender, from a VIP or a port
/// address, never about an ICMPv6 error or a packet to a group; the MTU it
/// announces is below the packet's size and not below IPv6's minimum.
fn check_too_big(v: &mut Violations, snap: &Snapshot, out: &[u8], input: &[u8], o: &V6, i: &V6) {
    let packet = &input[IP..i.end];
    let quote = out.get(L4_6 + 8..).unwrap_or(&[]);
    let mtu = out
        .get(L4_6 + 4..L4_6 + 8)
        .map_or(0, |m| u32::from_be_bytes([m[0], m[1], m[2], m[3]]));
    let ok = out.len() == o.end
        && o.end - IP <= MIN_MTU6
        && o.l4 == L4_6
        && out[L4_6 + 1] == 0
        && o.l4_valid == Some(true)
        && o.hop == 64
        && (snap.is_vip6(o.src) || snap.ports.iter().any(|p| p.ipv6() == Some(o.src)))
        && o.dst == i.src
        && quote.len() == packet.len().min(MIN_MTU6 - L4_6 - 8 + IP)
        && packet.starts_with(quote)
        && (mtu as usize) < packet.len();
    if !ok {
        v.add(
            "out.too-big",
            format!("Packet Too Big is not well formed: in {input:02x?} out {out:02x?}"),
        );
    }
    if is_icmp6_error(i.icmp_type) || i.dst.is_multicast() || !unicast6(o.dst) {
        v.add(
            "out.too-big-about",
            format!(
                "Packet Too Big to {} about a packet to {} (ICMPv6 type {:?})",
                o.dst, i.dst, i.icmp_type
            ),
        );
    }
    if (mtu as usize) < MIN_MTU6 {
        v.add(
            "out.too-big-mtu",
            format!(
                "Packet Too Big announces MTU {mtu}, below IPv6's 1280: a sender ignores it, so a {}-byte packet never gets through",
                packet.len()
            ),
        );
    }
}

/// 6in6 or 4in6: an outer header from the out-port's IPv6 address, as long
/// as the inner packet (no padding), its traffic class the inner's, and
/// inside the packet received, byte for byte (Ethernet padding trimmed).
fn check_tunnel6(
    v: &mut Violations,
    snap: &Snapshot,
    port: usize,
    out: &[u8],
    input: &[u8],
    o: &V6,
) -> Sent {
    let inner = &out[L4_6.min(out.len())..];
    let (in_packet, tc, v6_inner, upper) = if o.next_header == 41 {
        let Some(i) = v6(input) else {
            v.add(
                "out.tunnel",
                format!("6in6 of what is not IPv6: {input:02x?}"),
            );
            return Sent::Other;
        };
        (&input[IP..i.end], i.traffic_class, true, i.proto)
    } else {
        let Some(l) = layout(input).filter(|_| sums(input).is_some()) else {
            v.add(
                "out.tunnel",
                format!("4in6 of what is not IPv4: {input:02x?}"),
            );
            return Sent::Other;
        };
        (&input[IP..l.end], input[IP + 1], false, Some(l.proto))
    };
    let ok = out.len() == o.end
        && Some(o.src) == snap.ports[port].ipv6()
        && o.traffic_class == tc
        && o.hop == 64
        && unicast6(o.dst);
    if !ok {
        v.add(
            "out.tunnel",
            format!("outer IPv6 header {:02x?}", &out[IP..L4_6.min(out.len())]),
        );
    }
    if inner != in_packet {
        v.add(
            "out.tunnel",
            format!("the inner packet is not the packet received: in {input:02x?} out {out:02x?}"),
        );
    }
    match (v6_inner, upper) {
        (_, Some(6 | 17)) => Sent::Flow,
        (true, Some(58)) | (false, Some(1)) => Sent::IcmpError,
        _ => {
            v.add("out.tunnel", format!("a tunnel around protocol {upper:?}"));
            Sent::Other
        }
    }
}

/// What an ICMP error to one of our port addresses quotes when it is about
/// a tunnel packet we sent from that address (IPIP; 6in6 or 4in6): the
/// router's MTU, the outer header's length and the client's packet as
/// quoted (`inner`: its offset in the input frame).
struct TunnelQuote {
    mtu: u32,
    outer: usize,
    inner: usize,
    inner_v6: bool,
}

fn tunnel_quote(snap: &Snapshot, input: &[u8]) -> Option<TunnelQuote> {
    match (input.get(12)?, input.get(13)?) {
        (0x08, 0x00) => {
            let ihl = usize::from(input.get(IP)? & 0x0f) * 4;
            let m = IP + ihl;
            // Type 3, code 4, to a port's address, quoting an IPIP packet
            // from that address.
            if ihl < 20 || input.get(IP + 9) != Some(&1) || input.get(m..m + 2) != Some(&[3, 4]) {
                return None;
            }
            let q = m + 8;
            let outer = usize::from(input.get(q)? & 0x0f) * 4;
            let to = addr(input, IP + 16);
            let ours = snap.ports.iter().any(|p| p.ipv4() == Some(to));
            (input.len() >= q + 20
                && input[q] >> 4 == 4
                && input[q + 9] == 4
                && ours
                && addr(input, q + 12) == to)
                .then(|| TunnelQuote {
                    mtu: u32::from(get16(input, m + 6)),
                    outer,
                    inner: q + outer,
                    inner_v6: false,
                })
        }
        (0x86, 0xdd) => {
            // A Packet Too Big right after the fixed header (the relay
            // needs no other), to a port's address, quoting a 6in6 or
            // 4in6 packet from that address.
            let m = IP + IP6_LEN;
            if input.get(IP + 6) != Some(&58) || input.get(m) != Some(&2) {
                return None;
            }
            let q = m + 8;
            let to = addr6(input, IP + 24);
            let ours = snap.ports.iter().any(|p| p.ipv6() == Some(to));
            (input.len() >= q + IP6_LEN
                && matches!(input[q + 6], 4 | 41)
                && ours
                && addr6(input, q + 8) == to)
                .then(|| TunnelQuote {
                    mtu: u32::from_be_bytes([
                        input[m + 4],
                        input[m + 5],
                        input[m + 6],
                        input[m + 7],
                    ]),
                    outer: IP6_LEN,
                    inner: q + IP6_LEN,
                    inner_v6: input[q + 6] == 41,
                })
        }
        _ => None,
    }
}

/// A router's "fragmentation needed" or Packet Too Big from inside a
/// tunnel, relayed to the client (`pipeline/tunnel_errors.rs`): an error
/// of the client's family, from the VIP its packet went to, to the
/// client, announcing the router's MTU less the outer header (at least
/// the family's minimum), quoting the client's packet as the router did,
/// with valid checksums.
fn check_tunnel_relay(v: &mut Violations, snap: &Snapshot, out: &[u8], input: &[u8]) -> Sent {
    let Some(t) = tunnel_quote(snap, input) else {
        return Sent::Other;
    };
    let quote = &input[t.inner..];
    let mut bad = |what: &str| {
        v.add(
            "out.tunnel-relay",
            format!("{what}: in {input:02x?} out {out:02x?}"),
        );
        Sent::Other
    };
    let announced = t.mtu.checked_sub(t.outer as u32);
    if t.inner_v6 {
        let m = IP + IP6_LEN;
        if out.get(12..14) != Some(&[0x86, 0xdd])
            || out.len() < m + 8 + IP6_LEN
            || quote.len() < IP6_LEN
        {
            return bad("not an IPv6 error about the client's IPv6 packet");
        }
        let (src, dst) = (addr6(out, IP + 8), addr6(out, IP + 24));
        if out[IP + 6] != 58 || out[m] != 2 || (src, dst) != (addr6(quote, 24), addr6(quote, 8)) {
            return bad("not a Packet Too Big from the VIP to the client");
        }
        let mtu = u32::from_be_bytes([out[m + 4], out[m + 5], out[m + 6], out[m + 7]]);
        if Some(mtu) != announced || mtu < 1280 {
            return bad("not the router's MTU less the outer header, or below 1280");
        }
        let msg = &out[m..];
        let sum = checksum::fold(
            checksum::pseudo_header_sum_v6(src, dst, 58, msg.len() as u32) + checksum::sum(msg),
        );
        if sum != 0xffff || out[m + 8..] != quote[..out.len() - m - 8] {
            return bad("a bad checksum, or not the client's packet quoted");
        }
    } else {
        let Some(o) = sums(out).filter(|_| out.get(12..14) == Some(&[0x08, 0x00])) else {
            return bad("not an IPv4 error about the client's IPv4 packet");
        };
        let m = IP + 20;
        if quote.len() < 28 || o.proto != 1 || out.len() < m + 8 + 28 {
            return bad("not an IPv4 error about the client's IPv4 packet");
        }
        if out[m..m + 2] != [3, 4]
            || (addr(out, IP + 12), addr(out, IP + 16)) != (addr(quote, 16), addr(quote, 12))
            || !snap.is_vip(addr(out, IP + 12))
        {
            return bad("not a frag-needed from the VIP to the client");
        }
        let mtu = u32::from(get16(out, m + 6));
        if Some(mtu) != announced || mtu < 68 {
            return bad("not the router's MTU less the outer header, or below 68");
        }
        if o.l4_valid != Some(true) || out[m + 8..m + 36] != quote[..28] {
            return bad("a bad checksum, or not the client's packet quoted");
        }
    }
    Sent::IcmpError
}
