//! The `wire` target: arbitrary bytes through every `lb_core::wire` view.
//! `new_checked` must make every accessor safe (a panic is the finding);
//! where a `Repr` exists, parse → emit → parse gives the same `Repr` and
//! re-emits the same header bytes; `fill_checksum` makes
//! `verify_checksum` true; incremental checksum updates agree with a
//! recomputation.
//!
//! Input: byte 0 picks where the views start (`b0 % 4`: the whole input
//! as a frame, from offset 14 as IPv4, from 34 as TCP/UDP/ICMP, or all of
//! them on the input as is), the rest is the data.

use std::net::Ipv4Addr;

use lb_core::forward::icmp;
use lb_core::wire::checksum::{self, Delta};
use lb_core::wire::{
    ArpPacket, ArpRepr, EthernetFrame, EthernetRepr, Icmpv4Packet, Ipv4Packet, Ipv4Repr, TcpPacket,
    UdpPacket,
};

use crate::Violations;

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
    ethernet(&mut v, rest);
    arp(&mut v, body);
    ipv4(&mut v, body);
    transport(&mut v, body);
    if mode % 4 == 3 {
        for at in [14, 34] {
            let b = rest.get(at..).unwrap_or(&[]);
            arp(&mut v, b);
            ipv4(&mut v, b);
            transport(&mut v, b);
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
    // A plain header (no options, DF at most, checksum right) re-emits as is.
    let flags = u16::from_be_bytes([b[6], b[7]]);
    if p.header_len() == 20 && flags & !0x4000 == 0 && p.verify_checksum() && out[..20] != b[..20] {
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
}
