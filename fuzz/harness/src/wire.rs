//! The `wire` target: arbitrary bytes through every `lb_core::wire` view.
//! `new_checked` must make every accessor safe (a panic is the finding);
//! where a `Repr` exists, parse → emit → parse gives the same `Repr` and
//! re-emits the same header bytes; `fill_checksum` makes
//! `verify_checksum` true; incremental checksum updates agree with a
//! recomputation.
//!
//! Input: byte 0 picks where the views start (`b0 % 4`: the whole input
//! as a frame, from offset 14 as IPv4 or IPv6, from 34 as TCP/UDP/ICMP, or
//! all of them on the input as is, and from 54 as ICMPv6/NDP), the rest is
//! the data.
//!
//! The kernel budget's `exception::is_control` reads the input as a frame:
//! claiming an on-link source only ever adds to what counts, and without
//! that claim only ARP, frames with TTL (hop limit) 255 and multicast
//! listener queries count (ICMPv6 type 130 from a link-local address with
//! hop limit 1 to a group, behind at most one hop-by-hop header: no router
//! forwards a link-local source). A real's frames (every address a
//! real's) are never routing traffic but ARP naming no sender; a routing
//! peer that is also a real keeps the link's budget. BFD (UDP to 3784,
//! 3785, 4784 as read here) is never in the other routing budgets, and
//! only UDP is in BFD's.
//!
//! IPv6: the fixed header re-emits byte for byte; the extension-header walk
//! ends inside the payload; ICMPv6 and NDP reprs round-trip and emit valid
//! checksums; TCP and UDP checksums fill and verify over the v6 pseudo
//! header; the NDP option walk ends within `len / 8 + 1` steps.

use std::net::{Ipv4Addr, Ipv6Addr};

use lb_core::forward::icmp;
use lb_core::wire::checksum::{self, Delta};
use lb_core::wire::icmpv6::{MAX_ERROR_LEN, MAX_QUOTE_LEN};
use lb_core::wire::ndp::{validate_advert, validate_solicit};
use lb_core::wire::{
    ArpPacket, ArpRepr, EtherType, EthernetFrame, EthernetRepr, Icmpv4Packet, Icmpv6Packet,
    Icmpv6Repr, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, NdpRepr, NeighborPacket,
    TcpPacket, UdpPacket,
};

use crate::Violations;

/// `wire.kernel-budget`: the routing budget's classification of `frame`.
fn kernel_budget(v: &mut Violations, frame: &[u8]) {
    use lb_core::exception::{is_control, kernel_class, KernelClass, Source};
    let far = is_control(frame, |_| Source::Far);
    // The class agrees with the routing test, and nothing is the reals'
    // unless it comes from one.
    let class = kernel_class(frame, |_| Source::Far, |_| false);
    let link = |c: KernelClass| matches!(c, KernelClass::Control | KernelClass::Bfd);
    if link(class) != far || class == KernelClass::Reals {
        v.add("wire.kernel-budget", format!("classed {class:?}"));
    }
    if !far && kernel_class(frame, |_| Source::Far, |_| true) == KernelClass::Other {
        // From a real, it must be an IP frame that has no source (cut
        // short) to stay in the rest's budget.
        if lb_core::wire::Ipv4Packet::new_checked(frame.get(14..).unwrap_or(&[])).is_ok()
            && frame.get(12..14) == Some(&[0x08, 0x00])
        {
            v.add(
                "wire.kernel-budget",
                "a real's IPv4 frame in the rest's budget".to_string(),
            );
        }
    }
    // A real's frames never take the routing budgets (found in audit:
    // its TTL-255 frames starved the routers' BFD): with every address a
    // real's and none a routing peer's, only ARP that names no sender is
    // routing traffic, and a frame with a sender has it in the budgets'
    // view; nor does a real that is also a routing peer lose its place.
    let real = lb_core::exception::kernel_frame(frame, |_| Source::OnLink, |_| true, None);
    if matches!(real.class, KernelClass::Claimed | KernelClass::ClaimedBfd)
        || (link(real.class) && real.sender.is_some())
    {
        v.add("wire.kernel-budget", format!("a real's frame {real:?}"));
    }
    if far && kernel_class(frame, |_| Source::Peer, |_| true) != class {
        v.add(
            "wire.kernel-budget",
            "a routing peer that is also a real lost its link's budget".to_string(),
        );
    }
    // BFD has budgets of its own (found in review: a router's BGP spent
    // its BFD's share): BFD as read here is never in the other routing
    // budgets, and nothing but UDP is in BFD's.
    let bfd = bfd_port(frame);
    for s in [Source::Far, Source::Own, Source::Peer, Source::OnLink] {
        let c = kernel_class(frame, |_| s, |_| false);
        let in_bfd = matches!(c, KernelClass::Bfd | KernelClass::ClaimedBfd);
        let in_routing = matches!(c, KernelClass::Control | KernelClass::Claimed);
        if (bfd == Some(true) && in_routing) || (in_bfd && bfd.is_none()) {
            v.add(
                "wire.kernel-budget",
                format!("BFD {bfd:?} classed {c:?} from {s:?}"),
            );
        }
    }
    // A source that is ours, a peer's or on the link only ever adds.
    for s in [Source::Own, Source::Peer, Source::OnLink] {
        if far && !is_control(frame, |_| s) {
            v.add("wire.kernel-budget", format!("a source {s:?} took it out"));
        }
    }
    // Nor is a query from the link left to the rest's budget (found in
    // review: the check went one way only).
    if !far && mld_query_from_link(frame) {
        v.add(
            "wire.kernel-budget",
            "an MLD query from the link in the rest's budget".to_string(),
        );
    }
    if far {
        let ttl = match frame.get(12..14) {
            Some([0x08, 0x06]) => Some(255),
            Some([0x08, 0x00]) => frame.get(14 + 8).copied(),
            Some([0x86, 0xdd]) => frame.get(14 + 7).copied(),
            _ => None,
        };
        // Nor from a link-local source, which no router forwards (BGP
        // over link-local addresses counts whatever its hop limit).
        let link_local = frame.get(12..14) == Some(&[0x86, 0xdd])
            && frame
                .get(14..)
                .and_then(|b| Ipv6Packet::new_checked(b).ok())
                .is_some_and(|ip| ip.src_addr().is_unicast_link_local());
        if ttl != Some(255) && !mld_query_from_link(frame) && !link_local {
            v.add(
                "wire.kernel-budget",
                format!("counted from afar with TTL {ttl:?}"),
            );
        }
    }
}

/// Whether `frame` is UDP to one of BFD's ports, read here on its own:
/// None if it is no UDP (IPv4 protocol 17, IPv6 next header 17 or a
/// hop-by-hop header, which the budgets look past and this does not).
fn bfd_port(frame: &[u8]) -> Option<bool> {
    let bfd = |l4: &[u8]| {
        UdpPacket::new_checked(l4).is_ok_and(|u| matches!(u.dst_port(), 3784 | 3785 | 4784))
    };
    match frame.get(12..14)? {
        [0x08, 0x00] => {
            let ip = Ipv4Packet::new_checked(frame.get(14..)?).ok()?;
            (ip.protocol() == IpProtocol::Udp).then(|| bfd(ip.payload()))
        }
        [0x86, 0xdd] => {
            let ip = Ipv6Packet::new_checked(frame.get(14..)?).ok()?;
            match ip.next_header() {
                IpProtocol::Udp => Some(bfd(ip.payload())),
                IpProtocol::HopByHop => Some(false),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Whether `frame` is an MLD query from the link, read here on its own:
/// IPv6, hop limit 1, from a link-local address to a group, ICMPv6 type
/// 130 right after the fixed header or one hop-by-hop header.
fn mld_query_from_link(frame: &[u8]) -> bool {
    let Some(ip) = frame
        .get(14..)
        .and_then(|b| Ipv6Packet::new_checked(b).ok())
    else {
        return false;
    };
    if frame.get(12..14) != Some(&[0x86, 0xdd])
        || ip.hop_limit() != 1
        || !ip.src_addr().is_unicast_link_local()
        || !ip.dst_addr().is_multicast()
    {
        return false;
    }
    let payload = ip.payload();
    let (next, message) = if ip.next_header() == IpProtocol::HopByHop {
        let Some(&units) = payload.get(1) else {
            return false;
        };
        (payload[0], payload.get((usize::from(units) + 1) * 8..))
    } else {
        (u8::from(ip.next_header()), Some(payload))
    };
    next == 58 && message.and_then(|m| m.first()) == Some(&130)
}

/// Runs one `wire` input.
pub fn run(data: &[u8]) -> Violations {
    let mut v = Violations::default();
    let Some((&mode, rest)) = data.split_first() else {
        return v;
    };
    let start = match mode % 4 {
        0 => 0,
        1 => 14,
        2 => 34,
        _ => 0,
    };
    let body = rest.get(start..).unwrap_or(&[]);
    // The kernel budget's classification reads whole frames (a panic is
    // the finding); a frame that claims no on-link source counts only as
    // ARP or with TTL (hop limit) 255.
    kernel_budget(&mut v, rest);
    ethernet(&mut v, rest);
    arp(&mut v, body);
    ipv4(&mut v, body);
    ipv6(&mut v, body);
    transport(&mut v, body);
    icmpv6(&mut v, body, A6, B6);
    if mode % 4 == 3 {
        for at in [14, 34, 54] {
            let b = rest.get(at..).unwrap_or(&[]);
            arp(&mut v, b);
            ipv4(&mut v, b);
            ipv6(&mut v, b);
            transport(&mut v, b);
            icmpv6(&mut v, b, A6, B6);
        }
    }
    stacked(&mut v, rest);
    sums(&mut v, rest);
    for at in [0, 14, 34] {
        let _ = icmp::quoted(rest.get(at..).unwrap_or(&[]));
    }
    v
}

fn ethernet(v: &mut Violations, b: &[u8]) {
    let Ok(f) = EthernetFrame::new_checked(b) else {
        if b.len() >= 14 {
            v.add("wire.ethernet", format!("{} bytes refused", b.len()));
        }
        return;
    };
    let _ = (f.dst_addr(), f.src_addr(), f.ethertype(), f.payload());
    let repr = EthernetRepr::parse(&f).expect("checked");
    let mut out = vec![0u8; 14];
    repr.emit(&mut EthernetFrame::new_unchecked(&mut out[..]));
    if out[..] != b[..14] {
        v.add(
            "wire.ethernet-roundtrip",
            format!("{:02x?} re-emitted as {out:02x?}", &b[..14]),
        );
    }
    let again = EthernetRepr::parse(&EthernetFrame::new_unchecked(&out[..]));
    if again != Ok(repr) {
        v.add(
            "wire.ethernet-roundtrip",
            format!("{repr:?} parsed back as {again:?}"),
        );
    }
}

fn arp(v: &mut Violations, b: &[u8]) {
    let Ok(p) = ArpPacket::new_checked(b) else {
        return;
    };
    let _ = (
        p.hardware_type(),
        p.protocol_type(),
        p.hardware_len(),
        p.protocol_len(),
        p.is_ethernet_ipv4(),
        p.operation(),
        p.source_hardware_addr(),
        p.source_protocol_addr(),
        p.target_hardware_addr(),
        p.target_protocol_addr(),
    );
    if let Ok(repr) = ArpRepr::parse(&p) {
        let mut out = vec![0u8; repr.buffer_len()];
        repr.emit(&mut ArpPacket::new_unchecked(&mut out[..]));
        if out[..] != b[..28] {
            v.add(
                "wire.arp-roundtrip",
                format!("{:02x?} re-emitted as {out:02x?}", &b[..28]),
            );
        }
        if ArpRepr::parse(&ArpPacket::new_unchecked(&out[..])) != Ok(repr) {
            v.add(
                "wire.arp-roundtrip",
                format!("{repr:?} does not parse back"),
            );
        }
    }
}

fn ipv4(v: &mut Violations, b: &[u8]) {
    let Ok(p) = Ipv4Packet::new_checked(b) else {
        return;
    };
    let _ = (
        p.version(),
        p.dscp_ecn(),
        p.ident(),
        p.dont_fragment(),
        p.more_fragments(),
        p.frag_offset(),
        p.is_fragment(),
        p.ttl(),
        p.protocol(),
        p.checksum(),
        p.src_addr(),
        p.dst_addr(),
        p.options(),
        p.payload(),
        p.verify_checksum(),
    );
    if p.payload().len() != usize::from(p.total_len()) - p.header_len() {
        v.add(
            "wire.ipv4-payload",
            "payload length is not total - header".to_string(),
        );
    }
    let Ok(repr) = Ipv4Repr::parse(&p) else {
        v.add(
            "wire.ipv4-parse",
            "a checked packet does not parse".to_string(),
        );
        return;
    };
    let mut out = vec![0u8; repr.buffer_len()];
    let mut q = Ipv4Packet::new_unchecked(&mut out[..]);
    repr.emit(&mut q);
    let q = Ipv4Packet::new_unchecked(&out[..]);
    if !q.verify_checksum() {
        v.add(
            "wire.ipv4-emit",
            format!("{repr:?} emitted with a bad checksum"),
        );
    }
    match Ipv4Repr::parse(&q) {
        Ok(r) if r == repr => {}
        other => v.add(
            "wire.ipv4-roundtrip",
            format!("{repr:?} parsed back as {other:?}"),
        ),
    }
    // A plain header (no options, DF at most, checksum right) re-emits as
    // is, but for one thing: a checksum field of 0xffff verifies as well
    // as the 0x0000 we compute (both are zero in one's complement; found
    // by fuzzing, run 22), so the two count as the same.
    let flags = u16::from_be_bytes([b[6], b[7]]);
    let same = |x: &[u8], y: &[u8]| {
        let zero = |c: &[u8]| c == [0, 0] || c == [0xff, 0xff];
        x[..10] == y[..10]
            && x[12..20] == y[12..20]
            && (x[10..12] == y[10..12] || (zero(&x[10..12]) && zero(&y[10..12])))
    };
    if p.header_len() == 20
        && flags & !0x4000 == 0
        && p.verify_checksum()
        && !same(&out[..20], &b[..20])
    {
        v.add(
            "wire.ipv4-roundtrip",
            format!("{:02x?} re-emitted as {:02x?}", &b[..20], &out[..20]),
        );
    }
    let mut filled = b[..p.header_len()].to_vec();
    let mut f = Ipv4Packet::new_unchecked(&mut filled[..]);
    f.fill_checksum();
    if !f.verify_checksum() {
        v.add(
            "wire.ipv4-fill",
            "fill_checksum does not verify".to_string(),
        );
    }
}

fn ipv6(v: &mut Violations, b: &[u8]) {
    let Ok(p) = Ipv6Packet::new_checked(b) else {
        return;
    };
    let _ = (
        p.version(),
        p.traffic_class(),
        p.flow_label(),
        p.next_header(),
        p.hop_limit(),
        p.src_addr(),
        p.dst_addr(),
    );
    let payload_len = usize::from(p.payload_len());
    if p.payload().len() != payload_len {
        v.add(
            "wire.ipv6-payload",
            "payload length is not the length field".to_string(),
        );
    }
    let Ok(repr) = Ipv6Repr::parse(&p) else {
        v.add(
            "wire.ipv6-parse",
            "a checked packet does not parse".to_string(),
        );
        return;
    };
    // Every field of the fixed header is kept, so it re-emits as is.
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut Ipv6Packet::new_unchecked(&mut out[..]));
    if out[..40] != b[..40] || Ipv6Repr::parse(&Ipv6Packet::new_unchecked(&out[..])) != Ok(repr) {
        v.add(
            "wire.ipv6-roundtrip",
            format!("{:02x?} re-emitted as {:02x?}", &b[..40], &out[..40]),
        );
    }
    match p.upper_layer() {
        Ok(u) if u.offset < 40 || u.offset > 40 + payload_len => v.add(
            "wire.ipv6-walk",
            format!("upper layer at {} of {}", u.offset, 40 + payload_len),
        ),
        Ok(u) if u.protocol == IpProtocol::Icmpv6 => {
            icmpv6(
                v,
                &b[u.offset..40 + payload_len],
                p.src_addr(),
                p.dst_addr(),
            );
        }
        Ok(u) => transport_v6(
            v,
            &b[u.offset..40 + payload_len],
            p.src_addr(),
            p.dst_addr(),
        ),
        _ => {}
    }
    if let Ok(q) = Ipv6Packet::new_checked_header(b) {
        let _ = (q.payload(), q.upper_layer());
    }
}

/// TCP and UDP over IPv6: fill over the v6 pseudo header makes verify true
/// (and a UDP checksum is never left 0, which IPv6 forbids).
fn transport_v6(v: &mut Violations, b: &[u8], src: Ipv6Addr, dst: Ipv6Addr) {
    if TcpPacket::new_checked(b).is_ok() {
        let mut owned = b.to_vec();
        let mut q = TcpPacket::new_unchecked(&mut owned[..]);
        q.fill_checksum_v6(src, dst);
        if !q.verify_checksum_v6(src, dst) {
            v.add(
                "wire.tcp6-fill",
                "fill_checksum_v6 does not verify".to_string(),
            );
        }
    }
    if let Ok(p) = UdpPacket::new_checked(b) {
        let _ = p.verify_checksum_v6(src, dst);
        let mut owned = b.to_vec();
        let mut q = UdpPacket::new_unchecked(&mut owned[..]);
        q.fill_checksum_v6(src, dst);
        if q.checksum() == 0 || !q.verify_checksum_v6(src, dst) {
            v.add(
                "wire.udp6-fill",
                format!("fill_checksum_v6 gives {:04x}, not verified", q.checksum()),
            );
        }
    }
}

const A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 10);
const B6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

/// An ICMPv6 message from `src` to `dst`: the plain view and repr, and the
/// NDP view and repr over the same bytes.
fn icmpv6(v: &mut Violations, b: &[u8], src: Ipv6Addr, dst: Ipv6Addr) {
    let Ok(p) = Icmpv6Packet::new_checked(b) else {
        return;
    };
    let _ = (
        p.msg_type(),
        p.msg_type().is_error(),
        p.code(),
        p.checksum(),
        p.echo_ident(),
        p.echo_seq(),
        p.mtu(),
        p.pointer(),
        p.payload(),
        p.invoking_packet(),
        p.verify_checksum(src, dst),
    );
    let mut owned = b.to_vec();
    let mut q = Icmpv6Packet::new_unchecked(&mut owned[..]);
    q.fill_checksum(src, dst);
    if !q.verify_checksum(src, dst) {
        v.add(
            "wire.icmpv6-fill",
            "fill_checksum does not verify".to_string(),
        );
    }
    if let Ok(repr) = Icmpv6Repr::parse(&p) {
        let mut out = vec![0u8; repr.buffer_len()];
        repr.emit(src, dst, &mut Icmpv6Packet::new_unchecked(&mut out[..]));
        let q = Icmpv6Packet::new_unchecked(&out[..]);
        if !q.verify_checksum(src, dst) || (repr.msg_type().is_error() && out.len() > MAX_ERROR_LEN)
        {
            v.add(
                "wire.icmpv6-emit",
                format!(
                    "{} emitted as {} bytes, checksum wrong or too long",
                    repr.msg_type(),
                    out.len()
                ),
            );
        }
        let again = Icmpv6Repr::parse(&q);
        if again != Ok(cut_quote(repr)) {
            v.add(
                "wire.icmpv6-roundtrip",
                format!("{repr:?} parsed back as {again:?}"),
            );
        }
    }
    let Ok(n) = NeighborPacket::new_checked(b) else {
        return;
    };
    let _ = (
        n.msg_type(),
        n.code(),
        n.checksum(),
        n.flags(),
        n.target_addr(),
    );
    let steps = n.option_iter().count();
    if steps > n.options().len() / 8 + 1 {
        v.add(
            "wire.ndp-options",
            format!("{steps} options in {} bytes", n.options().len()),
        );
    }
    let _ = validate_solicit(src, dst, 255, &n);
    let _ = validate_advert(src, dst, 255, &n);
    if let Ok(repr) = NdpRepr::parse(&n) {
        let mut out = vec![0u8; repr.buffer_len()];
        repr.emit(src, dst, &mut NeighborPacket::new_unchecked(&mut out[..]));
        let q = NeighborPacket::new_unchecked(&out[..]);
        let again = NdpRepr::parse(&q);
        if again != Ok(repr) || !q.verify_checksum(src, dst) {
            v.add(
                "wire.ndp-roundtrip",
                format!("{repr:?} parsed back as {again:?}"),
            );
        }
    }
}

/// An ICMPv6 repr as it parses back after emit: an error's quote cut so the
/// whole packet fits 1280 bytes.
fn cut_quote(repr: Icmpv6Repr<'_>) -> Icmpv6Repr<'_> {
    fn cut(q: &[u8]) -> &[u8] {
        &q[..q.len().min(MAX_QUOTE_LEN)]
    }
    match repr {
        Icmpv6Repr::DstUnreachable { code, quoted } => Icmpv6Repr::DstUnreachable {
            code,
            quoted: cut(quoted),
        },
        Icmpv6Repr::PacketTooBig { mtu, quoted } => Icmpv6Repr::PacketTooBig {
            mtu,
            quoted: cut(quoted),
        },
        Icmpv6Repr::TimeExceeded { code, quoted } => Icmpv6Repr::TimeExceeded {
            code,
            quoted: cut(quoted),
        },
        Icmpv6Repr::ParamProblem {
            code,
            pointer,
            quoted,
        } => Icmpv6Repr::ParamProblem {
            code,
            pointer,
            quoted: cut(quoted),
        },
        echo => echo,
    }
}

const A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const B: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 100);

fn transport(v: &mut Violations, b: &[u8]) {
    if let Ok(p) = TcpPacket::new_checked(b) {
        let _ = (
            p.src_port(),
            p.dst_port(),
            p.seq_number(),
            p.ack_number(),
            p.flags(),
            p.window(),
            p.checksum(),
            p.urgent(),
            p.options(),
            p.payload(),
            p.verify_checksum(A, B),
            format!("{}", p.flags()),
        );
        if b.len() <= usize::from(u16::MAX) {
            let mut owned = b.to_vec();
            let mut q = TcpPacket::new_unchecked(&mut owned[..]);
            q.fill_checksum(A, B);
            if !q.verify_checksum(A, B) {
                v.add("wire.tcp-fill", "fill_checksum does not verify".to_string());
            }
        }
    }
    if let Ok(p) = UdpPacket::new_checked(b) {
        let _ = (
            p.src_port(),
            p.dst_port(),
            p.len(),
            p.checksum(),
            p.payload(),
        );
        let _ = p.verify_checksum(A, B);
        let mut owned = b.to_vec();
        let mut q = UdpPacket::new_unchecked(&mut owned[..]);
        q.fill_checksum(A, B);
        if q.checksum() == 0 || !q.verify_checksum(A, B) {
            v.add(
                "wire.udp-fill",
                format!("fill_checksum gives {:04x}, not verified", q.checksum()),
            );
        }
    }
    if let Ok(p) = Icmpv4Packet::new_checked(b) {
        let _ = (
            p.msg_type(),
            p.msg_type().is_error(),
            p.code(),
            p.checksum(),
            p.echo_ident(),
            p.echo_seq(),
            p.next_hop_mtu(),
            p.payload(),
            p.verify_checksum(),
        );
        let mut owned = b.to_vec();
        let mut q = Icmpv4Packet::new_unchecked(&mut owned[..]);
        q.fill_checksum();
        if !q.verify_checksum() {
            v.add(
                "wire.icmp-fill",
                "fill_checksum does not verify".to_string(),
            );
        }
    }
}

/// Frame → IPv4 → transport, each view on the previous one's payload, as
/// the pipeline reads a frame.
fn stacked(v: &mut Violations, b: &[u8]) {
    let Ok(f) = EthernetFrame::new_checked(b) else {
        return;
    };
    if let Ok(ip) = Ipv4Packet::new_checked(f.payload()) {
        let seg = ip.payload();
        transport(v, seg);
        if let Ok(t) = TcpPacket::new_checked(seg) {
            let _ = t.verify_checksum(ip.src_addr(), ip.dst_addr());
        }
        if let Ok(u) = UdpPacket::new_checked(seg) {
            let _ = u.verify_checksum(ip.src_addr(), ip.dst_addr());
        }
    }
    if f.ethertype() == EtherType::Ipv6 {
        ipv6(v, f.payload());
    }
    let _ = ArpPacket::new_checked(f.payload()).map(|a| ArpRepr::parse(&a));
}

/// Ones-complement zero has two forms; a checksum is right in either.
fn norm(c: u16) -> u16 {
    if c == 0xffff {
        0
    } else {
        c
    }
}

/// An incremental update of a checksum over `b` for a changed 16- or
/// 32-bit field agrees with recomputing it.
fn sums(v: &mut Violations, b: &[u8]) {
    if b.len() < 10 {
        return;
    }
    let (head, data) = b.split_at(6);
    let at = (usize::from(head[0]) % (data.len() - 3)) & !1;
    let new16 = u16::from_be_bytes([head[1], head[2]]);
    let new32 = u32::from_be_bytes([head[2], head[3], head[4], head[5]]);
    let old_sum = checksum::checksum(data);
    let mut d = data.to_vec();
    let old16 = u16::from_be_bytes([d[at], d[at + 1]]);
    d[at..at + 2].copy_from_slice(&new16.to_be_bytes());
    let full = checksum::checksum(&d);
    let inc = checksum::update16(old_sum, old16, new16);
    let delta = Delta::default().change16(old16, new16).apply(old_sum);
    if norm(full) != norm(inc) || norm(full) != norm(delta) {
        v.add(
            "wire.checksum-update",
            format!(
                "16-bit change at {at}: full {full:04x}, update16 {inc:04x}, Delta {delta:04x}"
            ),
        );
    }
    let mut d = data.to_vec();
    let old32 = u32::from_be_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]]);
    d[at..at + 4].copy_from_slice(&new32.to_be_bytes());
    let full = checksum::checksum(&d);
    let inc = checksum::update32(old_sum, old32, new32);
    let delta = Delta::default().change32(old32, new32).apply(old_sum);
    if norm(full) != norm(inc) || norm(full) != norm(delta) {
        v.add(
            "wire.checksum-update",
            format!(
                "32-bit change at {at}: full {full:04x}, update32 {inc:04x}, Delta {delta:04x}"
            ),
        );
    }
    if data.len() < 16 {
        return;
    }
    // An IPv6 address at an even offset, changed to the input's last 16
    // bytes turned by the first header byte.
    let at = (usize::from(head[0]) % (data.len() - 15)) & !1;
    let tail: [u8; 16] = data[data.len() - 16..].try_into().expect("16 bytes");
    let new128 = Ipv6Addr::from(u128::from_be_bytes(tail).rotate_left(u32::from(head[1])));
    let mut d = data.to_vec();
    let old128 = Ipv6Addr::from(<[u8; 16]>::try_from(&d[at..at + 16]).expect("16 bytes"));
    d[at..at + 16].copy_from_slice(&new128.octets());
    let full = checksum::checksum(&d);
    let inc = checksum::update128(old_sum, old128, new128);
    let delta = Delta::default().change128(old128, new128).apply(old_sum);
    if norm(full) != norm(inc) || norm(full) != norm(delta) {
        v.add(
            "wire.checksum-update",
            format!(
                "128-bit change at {at}: full {full:04x}, update128 {inc:04x}, Delta {delta:04x}"
            ),
        );
    }
}
