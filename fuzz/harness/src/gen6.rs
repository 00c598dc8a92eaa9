//! IPv6 frames the fuzzer steers (the `IPV6` ops, `0xc8..=0xcf`): a few
//! bytes pick the kind of frame, its addresses from the snapshot (VIPs,
//! reals, our port addresses, clients near and far, group and unspecified
//! addresses), its extension headers and how it is broken. Mutating raw
//! bytes rarely gets an ICMPv6 checksum or a Neighbor Discovery message
//! right; these do, or break exactly one thing.
//!
//! Every frame is built here byte by byte (not with `lb_core::wire`'s
//! emitters, which are what is under test), its checksum over the IPv6
//! pseudo header filled unless the mutation says otherwise.
//!
//! | kind (`op & 7`) | frame |
//! |---|---|
//! | 0 | TCP to an IPv6 service (or a port address, or a VIP's other port) |
//! | 1 | UDP to an IPv6 service (the same) |
//! | 2 | Neighbor Solicitation (for ours, a VIP, a real, another port's address; DAD) |
//! | 3 | Neighbor Advertisement (for a real, a solicited target, the gateway, ours) |
//! | 4 | ICMPv6 echo request (to ours, another port's, a VIP, a group) |
//! | 5 | the advertisement answering a solicitation the appliance sent |
//! | 6 | TCP or UDP from a NAT66 real (a reply, with or without a flow) |
//! | 7 | an ICMPv6 error about a made-up packet (to a VIP, from a real) |
//!
//! The bytes after the op: `b` (in-port `b & 3`, worker `(b >> 2)`), `a`
//! (addresses: source `a & 7`, destination `a >> 4`), `m` (mutations,
//! `assemble`), `x` (the kind's own: TCP flags, NDP options and flags,
//! ICMPv6 type), `s` (upper-layer payload: `s * 8` bytes; 1440 bytes and
//! more for the top values, so that "packet too big" runs), `p` (source
//! port low byte).

use std::net::Ipv6Addr;

use lb_config::{ForwardingMethod, Protocol};
use lb_core::snapshot::Snapshot;

use crate::packet::{fill_sum6, sum_at};

const IP: usize = 14;
const L4: usize = IP + 40;

/// The clients a frame may come from: routed (through the wan gateway),
/// on a segment (no neighbor entry: the reply waits for neighbor
/// discovery), link-local, and what no host may use as a source.
pub const CLIENTS: [Ipv6Addr; 8] = [
    Ipv6Addr::new(0x2001, 0x2, 0xff, 0, 0, 0, 0, 0x10),
    Ipv6Addr::new(0x2001, 0x2, 0xff, 0, 0, 0, 0, 0x11),
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
    Ipv6Addr::new(0x2001, 0x2, 0, 0, 0, 0, 0, 0x99),
    Ipv6Addr::new(0x2001, 0x2, 0, 2, 0, 0, 0, 0x99),
    Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x99),
    Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
    Ipv6Addr::UNSPECIFIED,
];

const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// Neighbors that may solicit us or answer our solicitations: the
/// gateway, reals without a static entry, a host on each segment,
/// link-local, and `::` (DAD).
const NEIGHBORS: [Ipv6Addr; 8] = [
    Ipv6Addr::new(0x2001, 0x2, 0, 0, 0, 0, 0, 1),
    Ipv6Addr::new(0x2001, 0x2, 0, 0, 0, 0, 0, 0x12),
    Ipv6Addr::new(0x2001, 0x2, 0, 0, 0, 0, 0, 0x22),
    Ipv6Addr::new(0x2001, 0x2, 0, 3, 0, 0, 0, 0x11),
    Ipv6Addr::new(0x2001, 0x2, 0, 3, 0, 0, 0, 0x21),
    Ipv6Addr::new(0x2001, 0x2, 0, 2, 0, 0, 0, 0x99),
    Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1),
    Ipv6Addr::UNSPECIFIED,
];

/// The MAC a host at `a` answers with (unicast, locally administered).
pub fn mac_of(a: Ipv6Addr) -> [u8; 6] {
    let o = a.octets();
    [0x02, 0x66, o[12], o[13], o[14], o[15].max(1)]
}

/// The Ethernet address of an IPv6 group (RFC 2464).
fn group_mac(a: Ipv6Addr) -> [u8; 6] {
    let o = a.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

fn solicited_node(a: Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, o[13], o[14], o[15],
    ])
}

/// The inputs of one frame, read from the op's bytes.
#[derive(Debug, Clone, Copy)]
pub struct Knobs {
    pub a: u8,
    pub m: u8,
    pub x: u8,
    pub s: u8,
    pub p: u8,
}

/// What the generator needs to know besides the snapshot: the port the
/// frame comes in on and the targets the appliance solicited.
pub struct Context<'a> {
    pub snap: &'a Snapshot,
    pub port: usize,
    /// (port, target) of the solicitations the appliance sent, latest last.
    pub solicited: &'a [(usize, Ipv6Addr)],
}

impl Context<'_> {
    fn our_mac(&self) -> [u8; 6] {
        self.snap
            .ports
            .get(self.port)
            .map_or([0x02, 0, 0, 0, 0, 0x02], |p| p.mac.0)
    }

    /// The port's own IPv6 address (or wan's, or a made-up one).
    fn our_address(&self) -> Ipv6Addr {
        self.snap
            .ports
            .get(self.port)
            .and_then(|p| p.ipv6())
            .or_else(|| self.snap.ports.iter().find_map(|p| p.ipv6()))
            .unwrap_or(Ipv6Addr::new(0x2001, 0x2, 0, 0, 0, 0, 0, 2))
    }

    /// Another port's IPv6 address than the in-port's, if any.
    fn other_address(&self) -> Ipv6Addr {
        let ours = self.our_address();
        self.snap
            .ports
            .iter()
            .filter_map(|p| p.ipv6())
            .find(|&a| a != ours)
            .unwrap_or(Ipv6Addr::new(0x2001, 0x2, 0, 2, 0, 0, 0, 1))
    }

    fn vip(&self, i: usize) -> Ipv6Addr {
        let v = &self.snap.vips6;
        if v.is_empty() {
            Ipv6Addr::new(0x2001, 0x2, 0, 1, 0, 0, 0, 0x100)
        } else {
            v[i % v.len()]
        }
    }

    /// The (VIP, port) of the IPv6 services of `proto`, in order.
    fn services(&self, proto: Protocol) -> Vec<(Ipv6Addr, u16)> {
        self.snap
            .services
            .iter()
            .filter(|s| s.protocol == proto)
            .filter_map(|s| match s.vip {
                std::net::IpAddr::V6(v) => Some((v, s.port)),
                _ => None,
            })
            .collect()
    }

    /// The (address, port) of the NAT66 reals of `proto`, in order.
    fn nat_reals(&self, proto: Protocol) -> Vec<(Ipv6Addr, u16)> {
        self.snap
            .services
            .iter()
            .filter(|s| s.protocol == proto)
            .flat_map(|s| s.reals.iter())
            .filter(|r| r.method == ForwardingMethod::Nat)
            .filter_map(|r| match r.address {
                std::net::IpAddr::V6(a) => Some((a, r.port)),
                _ => None,
            })
            .collect()
    }
}

/// An IPv6 packet's parts before it is put together.
struct Packet {
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop: u8,
    proto: u8,
    /// The upper-layer header and payload.
    upper: Vec<u8>,
}

/// The extension headers `m & 7` asks for (`x`: which comes first of the
/// upper-layer protocol's chain), as bytes, each naming the next.
fn ext_headers(kind: u8, proto: u8) -> (u8, Vec<u8>) {
    // (next header values of the chain, in order; routing's segments left)
    let (chain, segments_left): (&[u8], u8) = match kind & 7 {
        0 => (&[], 0),
        1 => (&[0], 0),
        2 => (&[60], 0),
        3 => (&[43], 0),
        4 => (&[43], 1),
        5 => (&[44], 0),
        6 => (&[0, 60, 43], 0),
        _ => (&[60, 0], 0),
    };
    let mut bytes = Vec::new();
    for (i, &h) in chain.iter().enumerate() {
        let next = chain.get(i + 1).copied().unwrap_or(proto);
        match h {
            // Hop-by-hop and destination options: PadN over six bytes.
            0 | 60 => bytes.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]),
            // Routing type 4 (segment routing), no segments listed.
            43 => bytes.extend_from_slice(&[next, 0, 4, segments_left, 0, 0, 0, 0]),
            // Fragment: offset 0, more fragments, an identification.
            _ => bytes.extend_from_slice(&[next, 0, 0, 1, 0x12, 0x34, 0x56, 0x78]),
        }
    }
    (chain.first().copied().unwrap_or(proto), bytes)
}

/// Puts a packet together and breaks what the mutation byte `m` asks:
/// - `m & 7`: extension headers (none, hop-by-hop, destination options,
///   routing with segments left 0 or 1, fragment, all three, hop-by-hop
///   not first; see [`ext_headers`]);
/// - `(m >> 3) & 3`: lengths (right; payload length 8 past the frame;
///   4 short of it, the rest trailing; the frame cut 6 bytes short);
/// - `m & 0x20`: the checksum wrong;
/// - `m & 0x40`: a UDP checksum of 0;
/// - `m & 0x80`: hop limit 1 (0 when the packet's own is 1), and the
///   traffic class 0xb8 (EF) so that tunnels show they copy it.
fn assemble(p: Packet, m: u8) -> Vec<u8> {
    let (first, ext) = ext_headers(m, p.proto);
    let mut f = Vec::with_capacity(L4 + ext.len() + p.upper.len());
    f.extend_from_slice(&p.dst_mac);
    f.extend_from_slice(&p.src_mac);
    f.extend_from_slice(&[0x86, 0xdd]);
    let tc: u8 = if m & 0x80 != 0 { 0xb8 } else { 0 };
    f.extend_from_slice(&[0x60 | (tc >> 4), (tc << 4) | 0x0a, 0xbc, 0xde]);
    let len = (ext.len() + p.upper.len()).min(usize::from(u16::MAX)) as u16;
    f.extend_from_slice(&len.to_be_bytes());
    let hop = match (m & 0x80 != 0, p.hop) {
        (false, h) => h,
        (true, 1) => 0,
        (true, _) => 1,
    };
    f.extend_from_slice(&[first, hop]);
    f.extend_from_slice(&p.src.octets());
    f.extend_from_slice(&p.dst.octets());
    f.extend_from_slice(&ext);
    let l4 = f.len();
    f.extend_from_slice(&p.upper);
    let end = f.len();
    if p.proto == 17 && m & 0x40 != 0 {
        if end >= l4 + 8 {
            f[l4 + 6..l4 + 8].fill(0);
        }
    } else {
        fill_sum6(&mut f, l4, end, p.proto);
    }
    if m & 0x20 != 0 {
        if let Some(at) = sum_at(p.proto) {
            if end >= l4 + at + 2 {
                f[l4 + at] ^= 0x5a;
            }
        }
    }
    match (m >> 3) & 3 {
        1 => f[IP + 4..IP + 6].copy_from_slice(&(len.saturating_add(8)).to_be_bytes()),
        2 => f[IP + 4..IP + 6].copy_from_slice(&(len.saturating_sub(4)).to_be_bytes()),
        3 => f.truncate(f.len().saturating_sub(6)),
        _ => {}
    }
    f
}

/// A TCP header (no options) and `data` bytes of payload.
pub fn tcp(sport: u16, dport: u16, seq: u32, ack: u32, flags: u8, data: usize) -> Vec<u8> {
    let mut t = Vec::with_capacity(20 + data);
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.extend_from_slice(&[0x50, flags, 0xfa, 0xf0, 0, 0, 0, 0]);
    t.resize(20 + data, b'd');
    t
}

fn udp(sport: u16, dport: u16, data: usize) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + data);
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + data).min(usize::from(u16::MAX)) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.resize(8 + data, b'q');
    u
}

/// The payload size `s` asks for: `s * 8` bytes, and for the top values
/// the sizes around the MTUs (1280 and 1500 bytes of IPv6, with and
/// without a tunnel's 40).
fn payload(s: u8, header: usize) -> usize {
    let packet: usize = match s {
        0xfa => 1240,
        0xfb => 1241,
        0xfc => 1280,
        0xfd => 1281,
        0xfe => 1460,
        0xff => 1500,
        _ => return usize::from(s) * 8,
    };
    packet.saturating_sub(40 + header)
}

/// Builds the frame of kind `kind` (see the module docs).
pub fn build(kind: u8, k: Knobs, cx: &Context<'_>) -> Vec<u8> {
    let our_mac = cx.our_mac();
    let client = CLIENTS[usize::from(k.a & 7)];
    let sport = 40000 + u16::from(k.p);
    let from = |src: Ipv6Addr| mac_of(src);
    match kind & 7 {
        0 | 1 => {
            let proto = if kind & 7 == 0 {
                Protocol::Tcp
            } else {
                Protocol::Udp
            };
            let services = cx.services(proto);
            let pick = usize::from(k.a >> 4);
            let (dst, dport) = match services.get(pick % 12) {
                Some(&s) if pick < 12 => s,
                _ if pick == 12 => (cx.our_address(), 80),
                _ if pick == 13 => (cx.vip(0), 8080),
                _ if pick == 14 => (cx.other_address(), 53),
                _ => services.first().copied().unwrap_or((cx.vip(0), 80)),
            };
            let upper = if proto == Protocol::Tcp {
                tcp(sport, dport, 1000, 0, k.x, payload(k.s, 20))
            } else {
                udp(sport, dport, payload(k.s, 8))
            };
            assemble(
                Packet {
                    dst_mac: our_mac,
                    src_mac: from(client),
                    src: client,
                    dst,
                    hop: 64,
                    proto: if proto == Protocol::Tcp { 6 } else { 17 },
                    upper,
                },
                k.m,
            )
        }
        2 => {
            let src = NEIGHBORS[usize::from(k.a & 7)];
            let target = match k.a >> 4 & 7 {
                0 => cx.our_address(),
                1 => cx.vip(0),
                2 => cx.vip(1),
                3 => cx.other_address(),
                4 => Ipv6Addr::new(0x2001, 0x2, 0, 0, 0, 0, 0, 0x11),
                5 => Ipv6Addr::new(0x2001, 0x2, 0, 0, 0, 0, 0, 1),
                6 => Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2),
                _ => Ipv6Addr::new(0x2001, 0x2, 0, 1, 0, 0, 0, 0x199),
            };
            let dst = match k.x & 3 {
                0 => solicited_node(target),
                1 => target,
                2 => ALL_NODES,
                _ => solicited_node(Ipv6Addr::new(0x2001, 0x2, 0, 0, 0, 0, 0, 0x77)),
            };
            let mut upper = vec![135, (k.x >> 4) & 1, 0, 0, 0, 0, 0, 0];
            upper.extend_from_slice(&target.octets());
            match (k.x >> 2) & 3 {
                0 => {
                    upper.extend_from_slice(&[1, 1]);
                    upper.extend_from_slice(&from(src));
                }
                1 => {}
                2 => upper.extend_from_slice(&[1, 1, 0x33, 0x33, 0, 0, 0, 1]),
                _ => upper.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]),
            }
            let dst_mac = if dst.is_multicast() {
                group_mac(dst)
            } else {
                our_mac
            };
            ndp_frame(dst_mac, from(src), src, dst, upper, k)
        }
        3 => {
            let target = match k.a & 7 {
                0 => cx
                    .solicited
                    .last()
                    .map_or(NEIGHBORS[1], |&(_, target)| target),
                1..=5 => NEIGHBORS[usize::from(k.a & 7)],
                6 => cx.our_address(),
                _ => cx.vip(0),
            };
            let src = if k.x & 0x80 != 0 {
                Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x66)
            } else {
                target
            };
            let dst = match k.a >> 4 & 3 {
                0 => cx.our_address(),
                1 => ALL_NODES,
                2 => solicited_node(cx.our_address()),
                _ => cx.other_address(),
            };
            // Router, Solicited, Override.
            let flags = (k.x & 7) << 5;
            let mut upper = vec![136, (k.x >> 6) & 1, 0, 0, flags, 0, 0, 0];
            upper.extend_from_slice(&target.octets());
            match (k.x >> 3) & 3 {
                0 => {
                    upper.extend_from_slice(&[2, 1]);
                    upper.extend_from_slice(&mac_of(target));
                }
                1 => {}
                2 => upper.extend_from_slice(&[2, 1, 0x33, 0x33, 0, 0, 0, 1]),
                _ => upper.extend_from_slice(&[2, 1, 0, 0, 0, 0, 0, 0]),
            }
            let dst_mac = if dst.is_multicast() {
                group_mac(dst)
            } else {
                our_mac
            };
            ndp_frame(dst_mac, mac_of(target), src, dst, upper, k)
        }
        4 => {
            let dst = match k.a >> 4 & 7 {
                0 | 1 => cx.our_address(),
                2 => cx.other_address(),
                3 => cx.vip(0),
                4 => cx.vip(3),
                5 => Ipv6Addr::new(0x2001, 0x2, 0, 0, 0, 0, 0, 0x11),
                6 => ALL_NODES,
                _ => Ipv6Addr::new(0x2001, 0x2, 0, 1, 0, 0, 0, 0x199),
            };
            let mut upper = vec![128, k.x & 1, 0, 0, 0, k.x, 0, k.p];
            upper.resize(8 + payload(k.s, 8), 0);
            assemble(
                Packet {
                    dst_mac: our_mac,
                    src_mac: from(client),
                    src: client,
                    dst,
                    hop: 64,
                    proto: 58,
                    upper,
                },
                k.m,
            )
        }
        5 => {
            // The advertisement a solicited neighbor answers with: from
            // the target, to our address, Solicited and Override, its MAC.
            let (port, target) = match cx.solicited.len() {
                0 => (cx.port, NEIGHBORS[1]),
                n => cx.solicited[n - 1 - usize::from(k.a) % n],
            };
            let ours = cx
                .snap
                .ports
                .get(port)
                .and_then(|p| p.ipv6())
                .unwrap_or_else(|| cx.our_address());
            let mut upper = vec![136, 0, 0, 0, 0x60, 0, 0, 0];
            upper.extend_from_slice(&target.octets());
            upper.extend_from_slice(&[2, 1]);
            upper.extend_from_slice(&mac_of(target));
            let mac = cx.snap.ports.get(port).map_or(our_mac, |p| p.mac.0);
            assemble(
                Packet {
                    dst_mac: mac,
                    src_mac: mac_of(target),
                    src: target,
                    dst: ours,
                    hop: 255,
                    proto: 58,
                    upper,
                },
                0,
            )
        }
        6 => {
            let tcp_reply = k.x & 0x80 == 0;
            let reals = cx.nat_reals(if tcp_reply {
                Protocol::Tcp
            } else {
                Protocol::Udp
            });
            let (real, rport) = reals
                .get(usize::from(k.a >> 4) % reals.len().max(1))
                .copied()
                .unwrap_or((Ipv6Addr::new(0x2001, 0x2, 0, 0, 0, 0, 0, 0x11), 8080));
            let (upper, proto) = if tcp_reply {
                (
                    tcp(rport, sport, 5000, 1001, k.x | 0x10, payload(k.s, 20)),
                    6,
                )
            } else {
                (udp(rport, sport, payload(k.s, 8)), 17)
            };
            assemble(
                Packet {
                    dst_mac: our_mac,
                    src_mac: mac_of(real),
                    src: real,
                    dst: client,
                    hop: 64,
                    proto,
                    upper,
                },
                k.m,
            )
        }
        _ => {
            // An error about a packet from a VIP to the client (sent to the
            // VIP), or from the client to a NAT66 real (from the real).
            let from_real = k.a & 0x80 != 0;
            let services = cx.services(Protocol::Tcp);
            let (vip, vport) = services
                .get(usize::from(k.a >> 4 & 7) % services.len().max(1))
                .copied()
                .unwrap_or((cx.vip(0), 80));
            let reals = cx.nat_reals(Protocol::Tcp);
            let (real, rport) = reals
                .get(usize::from(k.a >> 4 & 7) % reals.len().max(1))
                .copied()
                .unwrap_or((Ipv6Addr::new(0x2001, 0x2, 0, 0, 0, 0, 0, 0x11), 8080));
            let (qsrc, qdst, qs, qd, outer_src, outer_dst) = if from_real {
                (client, real, sport, rport, real, client)
            } else {
                (vip, client, vport, sport, client, vip)
            };
            let seg = tcp(qs, qd, 7, 9, 0x18, payload(k.s, 20));
            let mut quoted = Vec::with_capacity(40 + seg.len());
            quoted.extend_from_slice(&[0x60, 0, 0, 0]);
            quoted.extend_from_slice(&(seg.len() as u16).to_be_bytes());
            quoted.extend_from_slice(&[6, 63]);
            quoted.extend_from_slice(&qsrc.octets());
            quoted.extend_from_slice(&qdst.octets());
            quoted.extend_from_slice(&seg);
            quoted.truncate(1232);
            let t = match k.x & 3 {
                0 => 1,
                1 => 2,
                2 => 3,
                _ => 4,
            };
            let mut upper = vec![t, (k.x >> 2) & 7, 0, 0, 0, 0, 0x05, 0x00];
            upper.extend_from_slice(&quoted);
            assemble(
                Packet {
                    dst_mac: our_mac,
                    src_mac: mac_of(outer_src),
                    src: outer_src,
                    dst: outer_dst,
                    hop: 64,
                    proto: 58,
                    upper,
                },
                k.m,
            )
        }
    }
}

/// A Neighbor Discovery frame: hop limit 255 unless the mutation breaks
/// it, no extension headers unless it asks for them.
fn ndp_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    upper: Vec<u8>,
    k: Knobs,
) -> Vec<u8> {
    // Most solicitations and advertisements are whole: the low bits of
    // `m` only break one when `s` says so.
    let m = if k.s & 1 == 0 { k.m & 0x80 } else { k.m };
    let m = if k.s & 2 == 0 { m & !0x80 } else { m };
    assemble(
        Packet {
            dst_mac,
            src_mac,
            src,
            dst,
            hop: 255,
            proto: 58,
            upper,
        },
        m,
    )
}
