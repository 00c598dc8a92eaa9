//! The NAT rewrites' incremental checksums (RFC 1624, in the machine's
//! byte order on the established path) held to a full recomputation of
//! the rewritten packet, for well-formed TCP and UDP packets over IPv4 and
//! IPv6 with random contents and odd lengths: requests and replies, UDP's
//! "no checksum" (IPv4), and checksums that come out 0x0000 (written
//! 0xffff for UDP, RFC 768) or are sent as 0xffff (TCP's other zero). And
//! the IPIP outer header's checksum, filled in the machine's byte order.

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::{nat, tunnel, IP};
use crate::buffer::{PacketBuf, VecBuf};
use crate::wire::checksum::{checksum, fold, pseudo_header_sum, pseudo_header_sum_v6, sum};
use crate::wire::{IpProtocol, Ipv4Packet, Ipv4Repr};

/// `v` in network byte order (this file builds whole packets by hand, to
/// check the rewrites against: `wire/`'s accessors are what it tests).
fn be16(v: u16) -> [u8; 2] {
    [(v >> 8) as u8, v as u8]
}

const ETH_V4: [u8; 2] = [0x08, 0x00];
const ETH_V6: [u8; 2] = [0x86, 0xdd];

/// What the sender put in the transport checksum field.
#[derive(Debug, Clone, Copy)]
enum Sent {
    /// The checksum computed (UDP: 0xffff for a computed 0).
    Computed,
    /// The payload made so that the computed checksum is 0 (UDP sends
    /// 0xffff); TCP may send it as 0xffff, the other zero.
    ZeroSum { as_ffff: bool },
    /// UDP over IPv4: no checksum (0).
    None,
}

fn sent() -> impl Strategy<Value = Sent> {
    prop_oneof![
        Just(Sent::Computed),
        any::<bool>().prop_map(|as_ffff| Sent::ZeroSum { as_ffff }),
        Just(Sent::None),
    ]
}

/// The offset of the transport checksum in a `protocol` header.
fn check_at(protocol: u8) -> usize {
    if protocol == 6 {
        16
    } else {
        6
    }
}

/// Fills the transport checksum of `l4` (pseudo header sum `pseudo`) as
/// `how` says; UDP over IPv6 never goes without one.
fn fill_transport(l4: &mut [u8], protocol: u8, pseudo: u32, how: Sent, v6: bool) {
    let at = check_at(protocol);
    l4[at..at + 2].copy_from_slice(&[0, 0]);
    let udp = protocol == 17;
    match how {
        Sent::None if udp && !v6 => return,
        Sent::ZeroSum { .. } if l4.len() >= at + 4 => {
            // The two payload bytes right after the header's first 8 (an
            // even offset): set so that the whole sums to 0xffff.
            let w = if udp { 8 } else { 20 };
            if l4.len() >= w + 2 {
                l4[w..w + 2].copy_from_slice(&[0, 0]);
                let s = fold(pseudo + sum(l4));
                l4[w..w + 2].copy_from_slice(&be16(!s));
            }
        }
        _ => {}
    }
    let mut c = !fold(pseudo + sum(l4));
    if c == 0 && (udp || matches!(how, Sent::ZeroSum { as_ffff: true })) {
        c = 0xffff;
    }
    l4[at..at + 2].copy_from_slice(&be16(c));
}

/// What a full recomputation writes in the transport checksum of `l4`,
/// which had `before` there on the way in.
fn recomputed(l4: &[u8], protocol: u8, pseudo: u32, before: u16, v6: bool) -> u16 {
    if protocol == 17 && before == 0 && !v6 {
        return 0;
    }
    let at = check_at(protocol);
    let mut l4 = l4.to_vec();
    l4[at..at + 2].copy_from_slice(&[0, 0]);
    let c = !fold(pseudo + sum(&l4));
    if c == 0 && protocol == 17 {
        0xffff
    } else {
        c
    }
}

fn read16(b: &[u8], at: usize) -> u16 {
    (u16::from(b[at]) << 8) | u16::from(b[at + 1])
}

/// A TCP header (ACK, sequence number 0x01020304, window 65535) or a
/// UDP one (its length) with `ports`, then `payload`, into `l4`, which
/// holds exactly that; the checksum left for [`fill_transport`].
fn write_l4(l4: &mut [u8], protocol: u8, ports: (u16, u16), payload: &[u8]) {
    l4[0..2].copy_from_slice(&be16(ports.0));
    l4[2..4].copy_from_slice(&be16(ports.1));
    if protocol == 6 {
        l4[4..8].copy_from_slice(&[1, 2, 3, 4]);
        l4[12] = 5 << 4;
        l4[13] = 0x10;
        l4[14..16].copy_from_slice(&[0xff, 0xff]);
        l4[20..].copy_from_slice(payload);
    } else {
        let len = l4.len() as u16;
        l4[4..6].copy_from_slice(&be16(len));
        l4[8..].copy_from_slice(payload);
    }
}

#[allow(clippy::too_many_arguments)]
fn frame4(
    protocol: u8,
    ttl: u8,
    df: bool,
    src: [u8; 4],
    dst: [u8; 4],
    ports: (u16, u16),
    payload: &[u8],
    how: Sent,
) -> Vec<u8> {
    let l4_len = if protocol == 6 { 20 } else { 8 } + payload.len();
    let mut f = vec![0u8; IP + 20 + l4_len];
    f[12..14].copy_from_slice(&ETH_V4);
    let total = (20 + l4_len) as u16;
    let ip = &mut f[IP..IP + 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&be16(total));
    ip[4..6].copy_from_slice(&[0x12, 0x34]);
    ip[6] = if df { 0x40 } else { 0 };
    ip[8] = ttl;
    ip[9] = protocol;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    let c = checksum(ip);
    ip[10..12].copy_from_slice(&be16(c));
    write_l4(&mut f[IP + 20..], protocol, ports, payload);
    let pseudo = pseudo_header_sum(src.into(), dst.into(), protocol, l4_len as u16);
    fill_transport(&mut f[IP + 20..], protocol, pseudo, how, false);
    f
}

/// Checks the rewritten IPv4 frame `f` against a full recomputation.
fn check4(f: &[u8], before: u16) -> Result<(), TestCaseError> {
    let ip = &f[IP..IP + 20];
    let mut zeroed = ip.to_vec();
    zeroed[10..12].copy_from_slice(&[0, 0]);
    prop_assert_eq!(read16(ip, 10), checksum(&zeroed), "IPv4 header checksum");
    let protocol = ip[9];
    let l4 = &f[IP + 20..];
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let pseudo = pseudo_header_sum(src, dst, protocol, l4.len() as u16);
    let got = read16(l4, check_at(protocol));
    prop_assert_eq!(
        got,
        recomputed(l4, protocol, pseudo, before, false),
        "transport checksum (was {:#06x})",
        before
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn frame6(
    protocol: u8,
    hop: u8,
    src: [u8; 16],
    dst: [u8; 16],
    ports: (u16, u16),
    payload: &[u8],
    how: Sent,
) -> Vec<u8> {
    let l4_len = if protocol == 6 { 20 } else { 8 } + payload.len();
    let mut f = vec![0u8; IP + 40 + l4_len];
    f[12..14].copy_from_slice(&ETH_V6);
    let ip = &mut f[IP..IP + 40];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&be16(l4_len as u16));
    ip[6] = protocol;
    ip[7] = hop;
    ip[8..24].copy_from_slice(&src);
    ip[24..40].copy_from_slice(&dst);
    write_l4(&mut f[IP + 40..], protocol, ports, payload);
    let pseudo = pseudo_header_sum_v6(src.into(), dst.into(), protocol, l4_len as u32);
    fill_transport(&mut f[IP + 40..], protocol, pseudo, how, true);
    f
}

fn check6(f: &[u8], before: u16) -> Result<(), TestCaseError> {
    let ip = &f[IP..IP + 40];
    let protocol = ip[6];
    let l4 = &f[IP + 40..];
    let src: [u8; 16] = ip[8..24].try_into().unwrap();
    let dst: [u8; 16] = ip[24..40].try_into().unwrap();
    let pseudo = pseudo_header_sum_v6(src.into(), dst.into(), protocol, l4.len() as u32);
    let got = read16(l4, check_at(protocol));
    prop_assert_eq!(
        got,
        recomputed(l4, protocol, pseudo, before, true),
        "transport checksum (was {:#06x})",
        before
    );
    Ok(())
}

fn protocol() -> impl Strategy<Value = u8> {
    prop_oneof![Just(6u8), Just(17u8)]
}

proptest! {
    /// NAT request and reply over IPv4, on the established path
    /// (`apply_frame`'s fixed-size, machine-order path), against a full
    /// recomputation of both checksums.
    #[test]
    fn nat4_rewrite_agrees_with_full_recompute(
        protocol in protocol(),
        ttl in 2u8..=255,
        df in any::<bool>(),
        src in any::<[u8; 4]>(),
        dst in any::<[u8; 4]>(),
        ports in any::<(u16, u16)>(),
        payload in proptest::collection::vec(any::<u8>(), 0..41),
        how in sent(),
        to in any::<[u8; 4]>(),
        to_port in prop_oneof![Just(0u16), Just(0xffff), any::<u16>()],
        reply in any::<bool>(),
        zero_after in any::<bool>(),
    ) {
        let mut payload = payload;
        if zero_after && !matches!(how, Sent::None) {
            // The payload made so that the rewritten packet's checksum
            // comes out 0 (UDP: written 0xffff, never 0).
            let (s, d, p) = if reply {
                (to, dst, (to_port, ports.1))
            } else {
                (src, to, (ports.0, to_port))
            };
            let after = frame4(protocol, ttl - 1, df, s, d, p, &payload, Sent::ZeroSum { as_ffff: false });
            payload = after[IP + 20 + if protocol == 6 { 20 } else { 8 }..].to_vec();
        }
        let mut f = frame4(protocol, ttl, df, src, dst, ports, &payload, how);
        let before = read16(&f[IP + 20..], check_at(protocol));
        if reply {
            nat::rewrite_reply(&mut f, to.into(), to_port);
        } else {
            nat::rewrite_request(&mut f, to.into(), to_port);
        }
        prop_assert_eq!(f[IP + 8], ttl - 1);
        if protocol == 17 && before == 0 {
            prop_assert_eq!(read16(&f[IP + 20..], 6), 0, "UDP's no checksum stays 0");
        }
        check4(&f, before)?;
    }

    /// NAT66 request and reply, against a full recomputation.
    #[test]
    fn nat6_rewrite_agrees_with_full_recompute(
        protocol in protocol(),
        hop in 2u8..=255,
        src in any::<[u8; 16]>(),
        dst in any::<[u8; 16]>(),
        ports in any::<(u16, u16)>(),
        payload in proptest::collection::vec(any::<u8>(), 0..41),
        how in sent(),
        to in any::<[u8; 16]>(),
        to_port in prop_oneof![Just(0u16), Just(0xffff), any::<u16>()],
        reply in any::<bool>(),
        zero_after in any::<bool>(),
    ) {
        let mut payload = payload;
        if zero_after {
            let (s, d, p) = if reply {
                (to, dst, (to_port, ports.1))
            } else {
                (src, to, (ports.0, to_port))
            };
            let after = frame6(protocol, hop - 1, s, d, p, &payload, Sent::ZeroSum { as_ffff: false });
            payload = after[IP + 40 + if protocol == 6 { 20 } else { 8 }..].to_vec();
        }
        let mut f = frame6(protocol, hop, src, dst, ports, &payload, how);
        let before = read16(&f[IP + 40..], check_at(protocol));
        let p = IpProtocol::from(protocol);
        if reply {
            nat::rewrite_reply6(&mut f, p, 40, Ipv6Addr::from(to), to_port);
        } else {
            nat::rewrite_request6(&mut f, p, 40, Ipv6Addr::from(to), to_port);
        }
        prop_assert_eq!(f[IP + 7], hop - 1);
        check6(&f, before)?;
    }

    /// The IPIP outer header's checksum (filled in the machine's byte
    /// order) against the checksum computed the long way.
    #[test]
    fn tunnel_outer_header_checksum_is_right(
        protocol in protocol(),
        ttl in 2u8..=255,
        df in any::<bool>(),
        src in any::<[u8; 4]>(),
        dst in any::<[u8; 4]>(),
        ports in any::<(u16, u16)>(),
        payload in proptest::collection::vec(any::<u8>(), 0..41),
        outer in any::<([u8; 4], [u8; 4])>(),
        dscp_ecn in any::<u8>(),
        ident in any::<u16>(),
        flags in any::<u8>(),
    ) {
        let mut f = frame4(protocol, ttl, df, src, dst, ports, &payload, Sent::Computed);
        // Fields the outer header copies (the inner checksum is not read);
        // of the flags and the offset's high bits, only DF.
        let mut inner = Ipv4Packet::new_unchecked(&mut f[IP..]);
        inner.set_dscp_ecn(dscp_ecn);
        inner.set_ident(ident);
        inner.set_flags_offset(u16::from(flags) << 8);
        let df = inner.dont_fragment();
        let inner_len = f.len() - IP;
        let mut pkt = VecBuf::with_room(&f, 64, f.len());
        prop_assert!(tunnel::encapsulate(&mut pkt, inner_len, outer.0.into(), outer.1.into()));
        let b = pkt.data();
        let h = &b[IP..IP + 20];
        // Every byte as the general header writer has it.
        let mut emitted = [0u8; 20];
        Ipv4Repr {
            src: outer.0.into(),
            dst: outer.1.into(),
            protocol: IpProtocol::IpIp,
            payload_len: inner_len,
            ttl: 64,
            dont_fragment: df,
            ident,
            dscp_ecn,
        }
        .emit(&mut Ipv4Packet::new_unchecked(&mut emitted[..]));
        prop_assert_eq!(h, &emitted[..]);
        let mut zeroed = h.to_vec();
        zeroed[10..12].copy_from_slice(&[0, 0]);
        prop_assert_eq!(read16(h, 10), checksum(&zeroed));
        prop_assert_eq!(&b[IP + 20..], &f[IP..]);
        // The Ethernet header moved to the new front as it was.
        prop_assert_eq!(&b[..IP], &f[..IP]);
    }
}
