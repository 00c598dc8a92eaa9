//! What the generator sends: the client population (flow index -> client
//! address and port) and frame templates that are patched per packet.
//!
//! A template is a whole frame built once with the dataplane's `wire`
//! module, with the client address, client port and sequence number left at
//! zero and their checksums' partial sums kept aside. Sending a packet is a
//! copy of the template, three field writes and two checksum folds (RFC 1071
//! sums are additive), so that the generator is not slower than what it
//! measures.
//!
//! IPv6 frames (Ethernet + fixed IPv6 header, no extension headers, +
//! TCP/UDP) are made the same way: no header checksum, the 128-bit source
//! address summed into the transport checksum as the IPv4 one is.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use lb_core::wire::checksum;
use lb_core::wire::ethernet::HEADER_LEN as ETH_LEN;
use lb_core::wire::ipv4::HEADER_LEN as IP_LEN;
use lb_core::wire::ipv6::HEADER_LEN as IP6_LEN;
use lb_core::wire::{
    EtherType, EthernetFrame, EthernetRepr, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr,
    MacAddr, TcpFlags, TcpPacket, UdpPacket,
};

const TCP_LEN: usize = lb_core::wire::tcp::HEADER_LEN;
const UDP_LEN: usize = lb_core::wire::udp::HEADER_LEN;
const IP_CHECKSUM: usize = ETH_LEN + 10;
const IP_SRC: usize = ETH_LEN + 12;
const L4: usize = ETH_LEN + IP_LEN;
const IP6_SRC: usize = ETH_LEN + 8;
const L4_V6: usize = ETH_LEN + IP6_LEN;
const FILLER: &[u8] = b"lb-trafficgen ";

/// The clients: a CIDR block whose host addresses, then source ports, are
/// handed out in order, one (address, port) pair per flow. IPv4 or IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clients {
    V4 {
        first: u32,
        hosts: u32,
    },
    /// `hosts` is capped at `u64::MAX` (flow indices are `u64`; a /64 has
    /// more interface identifiers than any run can use).
    V6 {
        first: u128,
        hosts: u64,
    },
}

/// The lowest source port used (ports below are left to the well-known and
/// registered services a capture filter may look for).
pub const FIRST_PORT: u16 = 1024;
const PORTS: u32 = 65536 - FIRST_PORT as u32;

impl std::str::FromStr for Clients {
    type Err = String;

    /// `198.19.0.0/16`; the network and broadcast addresses are skipped for
    /// prefixes up to /30. `2001:2:100::/64`; the subnet-router anycast
    /// address (interface identifier zero, RFC 4291) is skipped for prefixes
    /// up to /126 (IPv6 has no broadcast address).
    fn from_str(s: &str) -> Result<Clients, String> {
        if s.split_once('/').map_or(s, |(a, _)| a).contains(':') {
            return parse_v6(s);
        }
        let (addr, len) = s.split_once('/').unwrap_or((s, "32"));
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|e| format!("{s:?}: bad address: {e}"))?;
        let len: u32 = len
            .parse()
            .ok()
            .filter(|l| *l <= 32)
            .ok_or_else(|| format!("{s:?}: the prefix length must be 0..=32"))?;
        let size = 1u64 << (32 - len);
        let base = u32::from(addr) & (u64::from(u32::MAX) << (32 - len)) as u32;
        let (first, hosts) = if len <= 30 {
            (base + 1, size - 2)
        } else {
            (base, size)
        };
        Ok(Clients::V4 {
            first,
            hosts: hosts as u32,
        })
    }
}

fn parse_v6(s: &str) -> Result<Clients, String> {
    let (addr, len) = s.split_once('/').unwrap_or((s, "128"));
    let addr: Ipv6Addr = addr
        .parse()
        .map_err(|e| format!("{s:?}: bad address: {e}"))?;
    let len: u32 = len
        .parse()
        .ok()
        .filter(|l| *l <= 128)
        .ok_or_else(|| format!("{s:?}: the prefix length must be 0..=128"))?;
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    let base = u128::from(addr) & mask;
    // 2^(128 - len) addresses; a /0 has one more than u128 holds.
    let size = 1u128.checked_shl(128 - len).unwrap_or(u128::MAX);
    let (first, hosts) = if len <= 126 {
        (base + 1, size - 1)
    } else {
        (base, size)
    };
    Ok(Clients::V6 {
        first,
        hosts: u64::try_from(hosts).unwrap_or(u64::MAX),
    })
}

impl std::fmt::Display for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Clients::V4 { first, hosts } => {
                let last = first.wrapping_add(hosts - 1);
                write!(f, "{}-{}", Ipv4Addr::from(first), Ipv4Addr::from(last))
            }
            Clients::V6 { first, hosts } => {
                let last = first.wrapping_add(u128::from(hosts - 1));
                write!(f, "{}-{}", Ipv6Addr::from(first), Ipv6Addr::from(last))
            }
        }
    }
}

impl Clients {
    /// The client address and port of flow `i`: distinct addresses first,
    /// then, once every address is used, the next source port.
    #[inline]
    pub fn flow(&self, i: u64) -> (IpAddr, u16) {
        let hosts = self.hosts();
        let host = i % hosts;
        let round = (i / hosts) % u64::from(PORTS);
        let addr = match *self {
            Clients::V4 { first, .. } => {
                IpAddr::V4(Ipv4Addr::from(first.wrapping_add(host as u32)))
            }
            Clients::V6 { first, .. } => {
                IpAddr::V6(Ipv6Addr::from(first.wrapping_add(u128::from(host))))
            }
        };
        (addr, FIRST_PORT + round as u16)
    }

    fn hosts(&self) -> u64 {
        match *self {
            Clients::V4 { hosts, .. } => u64::from(hosts),
            Clients::V6 { hosts, .. } => hosts,
        }
    }

    /// Whether the block is IPv6.
    pub fn is_ipv6(&self) -> bool {
        matches!(self, Clients::V6 { .. })
    }

    /// How many distinct (address, port) pairs there are (at most `u64::MAX`).
    pub fn capacity(&self) -> u64 {
        self.hosts().saturating_mul(u64::from(PORTS))
    }
}

/// The initial sequence number of flow `i` (a fixed scramble of the index).
pub fn isn(i: u64) -> u32 {
    (i as u32).wrapping_mul(2_654_435_761).rotate_left(7)
}

/// A frame to copy and patch.
#[derive(Debug, Clone)]
pub struct Template {
    frame: Vec<u8>,
    /// Ones-complement sum of the IPv4 header with a zero source and checksum
    /// (0 for IPv6, which has no header checksum).
    ip_sum: u32,
    /// Sum of the pseudo header and segment with zero source, port, sequence
    /// number and checksum.
    l4_sum: u32,
    udp: bool,
    /// Where the TCP/UDP header starts (after the IPv4 or the IPv6 header).
    l4: usize,
}

/// Addresses shared by every template.
#[derive(Debug, Clone, Copy)]
pub struct Endpoints {
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    /// IPv4 or IPv6: the templates, and the sources given to
    /// [`Template::write`], are of its family.
    pub vip: IpAddr,
    pub port: u16,
}

impl Template {
    /// A TCP segment to the VIP with `flags` and `payload` bytes of data
    /// (ACK number 1 when ACK is set: the generator does not track the
    /// server's sequence numbers, and a balancer does not look at them).
    pub fn tcp(ep: &Endpoints, flags: TcpFlags, payload: usize) -> Template {
        let l4_len = TCP_LEN + payload;
        let (mut frame, l4) = Self::headers(ep, IpProtocol::Tcp, l4_len);
        let mut tcp = TcpPacket::new_unchecked(&mut frame[l4..]);
        tcp.set_dst_port(ep.port);
        tcp.set_header_len(TCP_LEN);
        tcp.set_flags(flags);
        tcp.set_window(65535);
        tcp.set_ack_number(u32::from(flags.contains(TcpFlags::ACK)));
        fill(tcp.payload_mut());
        Self::finish(frame, ep, IpProtocol::Tcp, false, l4)
    }

    /// A UDP datagram to the VIP with `payload` bytes.
    pub fn udp(ep: &Endpoints, payload: usize) -> Template {
        let l4_len = UDP_LEN + payload;
        let (mut frame, l4) = Self::headers(ep, IpProtocol::Udp, l4_len);
        let mut udp = UdpPacket::new_unchecked(&mut frame[l4..]);
        udp.set_dst_port(ep.port);
        udp.set_len(l4_len as u16);
        fill(udp.payload_mut());
        Self::finish(frame, ep, IpProtocol::Udp, true, l4)
    }

    /// The Ethernet and IP headers, and where the transport header starts.
    fn headers(ep: &Endpoints, protocol: IpProtocol, l4_len: usize) -> (Vec<u8>, usize) {
        let (ethertype, l4) = match ep.vip {
            IpAddr::V4(_) => (EtherType::Ipv4, L4),
            IpAddr::V6(_) => (EtherType::Ipv6, L4_V6),
        };
        let mut frame = vec![0u8; l4 + l4_len];
        EthernetRepr {
            src: ep.src_mac,
            dst: ep.dst_mac,
            ethertype,
        }
        .emit(&mut EthernetFrame::new_unchecked(&mut frame[..]));
        match ep.vip {
            IpAddr::V4(vip) => Ipv4Repr {
                src: Ipv4Addr::UNSPECIFIED,
                dst: vip,
                protocol,
                payload_len: l4_len,
                ttl: 64,
                dont_fragment: true,
                ident: 0,
                dscp_ecn: 0,
            }
            .emit(&mut Ipv4Packet::new_unchecked(&mut frame[ETH_LEN..])),
            IpAddr::V6(vip) => Ipv6Repr {
                src: Ipv6Addr::UNSPECIFIED,
                dst: vip,
                next_header: protocol,
                payload_len: l4_len,
                hop_limit: 64,
                traffic_class: 0,
                flow_label: 0,
            }
            .emit(&mut Ipv6Packet::new_unchecked(&mut frame[ETH_LEN..])),
        }
        (frame, l4)
    }

    fn finish(
        mut frame: Vec<u8>,
        ep: &Endpoints,
        protocol: IpProtocol,
        udp: bool,
        l4: usize,
    ) -> Template {
        let l4_len = frame.len() - l4;
        let (ip_sum, pseudo) = match ep.vip {
            IpAddr::V4(vip) => {
                frame[IP_CHECKSUM..IP_CHECKSUM + 2].fill(0);
                (
                    checksum::sum(&frame[ETH_LEN..L4]),
                    checksum::pseudo_header_sum(
                        Ipv4Addr::UNSPECIFIED,
                        vip,
                        protocol.into(),
                        l4_len as u16,
                    ),
                )
            }
            IpAddr::V6(vip) => (
                0,
                checksum::pseudo_header_sum_v6(
                    Ipv6Addr::UNSPECIFIED,
                    vip,
                    protocol.into(),
                    l4_len as u32,
                ),
            ),
        };
        let l4_sum = checksum::sum(&frame[l4..]) + pseudo;
        Template {
            frame,
            ip_sum,
            l4_sum,
            udp,
            l4,
        }
    }

    /// Length of the frames this template makes.
    pub fn frame_len(&self) -> usize {
        self.frame.len()
    }

    /// Writes the frame from `src:sport` with sequence number `seq` (TCP
    /// only) into `out`, which must be exactly [`frame_len`](Self::frame_len)
    /// long; `src` is of the VIP's family.
    #[inline]
    pub fn write(&self, out: &mut [u8], src: IpAddr, sport: u16, seq: u32) {
        out.copy_from_slice(&self.frame);
        let addr_sum = match src {
            IpAddr::V4(src) => {
                debug_assert_eq!(self.l4, L4, "an IPv4 source in an IPv6 template");
                let s = u32::from(src);
                let addr_sum = (s >> 16) + (s & 0xffff);
                out[IP_SRC..IP_SRC + 4].copy_from_slice(&src.octets());
                let ip = !checksum::fold(self.ip_sum + addr_sum);
                out[IP_CHECKSUM..IP_CHECKSUM + 2].copy_from_slice(&ip.to_be_bytes());
                addr_sum
            }
            IpAddr::V6(src) => {
                debug_assert_eq!(self.l4, L4_V6, "an IPv6 source in an IPv4 template");
                let octets = src.octets();
                out[IP6_SRC..IP6_SRC + 16].copy_from_slice(&octets);
                checksum::sum(&octets)
            }
        };
        let l4 = self.l4;
        out[l4..l4 + 2].copy_from_slice(&sport.to_be_bytes());
        let mut sum = self.l4_sum + addr_sum + u32::from(sport);
        let at = if self.udp {
            l4 + 6
        } else {
            out[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
            sum += (seq >> 16) + (seq & 0xffff);
            l4 + 16
        };
        let mut c = !checksum::fold(sum);
        if self.udp && c == 0 {
            c = 0xffff;
        }
        out[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
}

fn fill(payload: &mut [u8]) {
    for (b, f) in payload.iter_mut().zip(FILLER.iter().cycle()) {
        *b = *f;
    }
}

/// What kind of packet the schedule asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Syn,
    Data,
    Udp,
}

/// The order of packets: round 0 opens every flow (a SYN each, in flow
/// order), every later round sends one data segment (ACK|PSH) per flow, so
/// that a flow's SYN always precedes its data. UDP has no opening round.
/// Within a data round (every UDP round) the flows come in flow order, or,
/// [`Order::Scrambled`], in an order unrelated to the one they were opened
/// in.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub clients: Clients,
    pub flows: u64,
    /// Packets per flow, the SYN included; 0 = no end.
    pub per_flow: u64,
    pub udp: bool,
    pub payload: u32,
    next: u64,
    /// Added to `pos` (modulo `flows`) per packet of a data round: 1 in
    /// flow order, else a stride coprime with `flows` near its golden
    /// section, so that a round still visits every flow once.
    stride: u64,
    /// The flow of the next data packet.
    pos: u64,
}

/// In which order a data round visits the flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Order {
    /// Flow 0, 1, 2, ...: the order they were opened in, which is the
    /// order a load balancer allocated their entries in (a cache's
    /// hardware prefetcher follows that).
    #[default]
    Sequential,
    /// Each round visits every flow once, striding far through the flow
    /// numbers, as independent clients' packets arrive: no entry follows
    /// its neighbor in memory.
    Scrambled,
}

/// The stride of a scrambled order over `flows` flows: coprime with it
/// (so that `flows` steps visit every flow once), near `flows` × 0.618.
fn scramble_stride(flows: u64) -> u64 {
    if flows <= 2 {
        return 1;
    }
    // Not 1, which is flow order.
    let mut s = ((flows as f64 * 0.618_033_988_75) as u64).clamp(2, flows - 1);
    while gcd(s, flows) != 1 {
        s += 1;
    }
    s
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// One packet to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Next {
    pub kind: Kind,
    pub src: IpAddr,
    pub sport: u16,
    pub seq: u32,
}

impl Schedule {
    pub fn new(
        clients: Clients,
        flows: u64,
        per_flow: u64,
        udp: bool,
        payload: u32,
        order: Order,
    ) -> Self {
        let flows = flows.max(1);
        Schedule {
            clients,
            flows,
            per_flow,
            udp,
            payload,
            next: 0,
            stride: match order {
                Order::Sequential => 1,
                Order::Scrambled => scramble_stride(flows),
            },
            pos: 0,
        }
    }

    /// The next packet, or `None` once every flow has had `per_flow`.
    #[inline]
    pub fn next_packet(&mut self) -> Option<Next> {
        let round = self.next / self.flows;
        if self.per_flow != 0 && round >= self.per_flow {
            return None;
        }
        let flow = if round == 0 && !self.udp {
            // The SYNs, in flow order.
            self.next
        } else {
            let f = self.pos;
            // pos + stride modulo flows, without a division per packet
            // (stride < flows).
            self.pos += self.stride;
            if self.pos >= self.flows {
                self.pos -= self.flows;
            }
            f
        };
        self.next += 1;
        let (src, sport) = self.clients.flow(flow);
        let (kind, seq) = if self.udp {
            (Kind::Udp, 0)
        } else if round == 0 {
            (Kind::Syn, isn(flow))
        } else {
            // The SYN takes one sequence number; each data segment `payload`.
            let off = 1u64.wrapping_add((round - 1).wrapping_mul(u64::from(self.payload)));
            (Kind::Data, isn(flow).wrapping_add(off as u32))
        };
        Some(Next {
            kind,
            src,
            sport,
            seq,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const VIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 100);

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    fn ep() -> Endpoints {
        Endpoints {
            src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            dst_mac: MacAddr([2, 0, 0, 0, 0, 2]),
            vip: IpAddr::V4(VIP4),
            port: 80,
        }
    }

    #[test]
    fn clients_cover_the_block_then_the_ports() {
        let c: Clients = "198.19.0.0/16".parse().unwrap();
        assert_eq!(c.flow(0), (v4(198, 19, 0, 1), 1024));
        assert_eq!(c.flow(65533), (v4(198, 19, 255, 254), 1024));
        assert_eq!(c.flow(65534), (v4(198, 19, 0, 1), 1025));
        assert_eq!(c.capacity(), 65534 * 64512);
        let one: Clients = "10.0.0.7/32".parse().unwrap();
        assert_eq!(one.flow(3), (v4(10, 0, 0, 7), 1027));
        assert!("10.0.0.0/33".parse::<Clients>().is_err());
        assert!("10.0.0/8".parse::<Clients>().is_err());
    }

    #[test]
    fn tcp_frames_have_correct_checksums() {
        let e = ep();
        for (flags, payload) in [(TcpFlags::SYN, 0), (TcpFlags::ACK | TcpFlags::PSH, 64)] {
            let t = Template::tcp(&e, flags, payload);
            assert_eq!(t.frame_len(), 54 + payload);
            let mut buf = vec![0u8; t.frame_len()];
            for (src, sport, seq) in [
                (Ipv4Addr::new(198, 19, 0, 1), 1024, 0),
                (Ipv4Addr::new(198, 19, 255, 254), 65535, u32::MAX),
                (Ipv4Addr::new(255, 255, 255, 255), 0xffff, 0xffff_ffff),
            ] {
                t.write(&mut buf, src.into(), sport, seq);
                let eth = EthernetFrame::new_checked(&buf[..]).unwrap();
                assert_eq!(eth.dst_addr(), e.dst_mac);
                assert_eq!(eth.ethertype(), EtherType::Ipv4);
                let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
                assert!(ip.verify_checksum());
                assert_eq!(ip.src_addr(), src);
                assert_eq!(ip.dst_addr(), VIP4);
                let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
                assert!(tcp.verify_checksum(src, VIP4), "{src} {sport} {seq}");
                assert_eq!(tcp.src_port(), sport);
                assert_eq!(tcp.dst_port(), 80);
                assert_eq!(tcp.seq_number(), seq);
                assert_eq!(tcp.flags(), flags);
                assert_eq!(tcp.payload().len(), payload);
            }
        }
    }

    #[test]
    fn udp_frames_have_correct_checksums() {
        let mut e = ep();
        e.port = 9000;
        let t = Template::udp(&e, 18);
        let mut buf = vec![0u8; t.frame_len()];
        for i in 0..5000u64 {
            let (src, sport) = "198.19.0.0/16".parse::<Clients>().unwrap().flow(i * 977);
            t.write(&mut buf, src, sport, 0);
            let IpAddr::V4(src) = src else {
                panic!("an IPv6 client from an IPv4 block")
            };
            let ip = Ipv4Packet::new_checked(&buf[ETH_LEN..]).unwrap();
            assert!(ip.verify_checksum());
            let udp = UdpPacket::new_checked(ip.payload()).unwrap();
            assert_ne!(udp.checksum(), 0);
            assert!(udp.verify_checksum(src, VIP4));
            assert_eq!(udp.dst_port(), 9000);
        }
    }

    #[test]
    fn every_flow_opens_with_a_syn_before_its_data() {
        let clients: Clients = "198.19.0.0/16".parse().unwrap();
        let mut s = Schedule::new(clients, 3, 3, false, 10, Order::Sequential);
        let all: Vec<Next> = std::iter::from_fn(|| s.next_packet()).collect();
        assert_eq!(all.len(), 9);
        assert!(all[..3].iter().all(|n| n.kind == Kind::Syn));
        assert!(all[3..].iter().all(|n| n.kind == Kind::Data));
        assert_eq!(all[0].src, all[3].src);
        assert_eq!(all[3].seq, isn(0).wrapping_add(1));
        assert_eq!(all[6].seq, isn(0).wrapping_add(11));
        assert_eq!(s.next_packet(), None);
        let mut u = Schedule::new(clients, 2, 0, true, 10, Order::Sequential);
        assert!((0..100).all(|_| u.next_packet().unwrap().kind == Kind::Udp));
    }

    /// A scrambled data round visits every flow exactly once, each with
    /// the sequence number of its round, and not in flow order: no flow
    /// is followed by the next one. The SYNs stay in flow order.
    #[test]
    fn a_scrambled_round_visits_every_flow_once_out_of_order() {
        let clients: Clients = "198.19.0.0/16".parse().unwrap();
        for flows in [1u64, 2, 3, 10, 1000, 10_000, 65_536] {
            let mut s = Schedule::new(clients, flows, 4, false, 10, Order::Scrambled);
            let syns: Vec<Next> = (0..flows).map(|_| s.next_packet().unwrap()).collect();
            for (i, n) in syns.iter().enumerate() {
                assert_eq!((n.kind, n.seq), (Kind::Syn, isn(i as u64)));
            }
            let index: std::collections::HashMap<(IpAddr, u16), u64> =
                (0..flows).map(|f| (clients.flow(f), f)).collect();
            for round in 1..4u64 {
                let mut seen = vec![false; flows as usize];
                let mut last: Option<u64> = None;
                for _ in 0..flows {
                    let n = s.next_packet().unwrap();
                    let f = index[&(n.src, n.sport)];
                    assert_eq!(n.kind, Kind::Data);
                    assert_eq!(n.seq, isn(f).wrapping_add(1 + (round as u32 - 1) * 10));
                    assert!(
                        !seen[f as usize],
                        "{flows} flows: flow {f} twice in round {round}"
                    );
                    seen[f as usize] = true;
                    if flows > 2 {
                        assert_ne!(
                            last.map(|l| l + 1),
                            Some(f),
                            "{flows} flows: {f} after {}",
                            f - 1
                        );
                    }
                    last = Some(f);
                }
                assert!(seen.iter().all(|&v| v));
            }
            assert_eq!(s.next_packet(), None);
        }
        assert_eq!(scramble_stride(10), 7);
        assert_eq!(gcd(scramble_stride(65_536), 65_536), 1);
        // UDP: no SYN round, every round scrambled.
        let mut u = Schedule::new(clients, 10, 0, true, 10, Order::Scrambled);
        let mut ports: Vec<IpAddr> = (0..10).map(|_| u.next_packet().unwrap().src).collect();
        assert_ne!(ports[1], clients.flow(1).0);
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 10);
    }

    const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 1, 0, 0, 0, 0, 0x100);

    /// An RFC 1071 checksum check written out from RFC 8200 §8.1, not with
    /// the `wire` module: the 40-byte pseudo header (source, destination,
    /// 32-bit upper-layer length, three zero bytes, next header) and the
    /// segment, its checksum field included, summed 16 bits at a time, must
    /// come to 0xffff.
    pub(crate) fn v6_l4_checksum_ok(src: Ipv6Addr, dst: Ipv6Addr, nh: u8, seg: &[u8]) -> bool {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&src.octets());
        bytes.extend_from_slice(&dst.octets());
        bytes.extend_from_slice(&(seg.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, nh]);
        bytes.extend_from_slice(seg);
        if bytes.len() % 2 == 1 {
            bytes.push(0);
        }
        let mut sum: u64 = bytes
            .chunks(2)
            .map(|w| u64::from(w[0]) << 8 | u64::from(w[1]))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum == 0xffff
    }

    fn ep6() -> Endpoints {
        Endpoints {
            vip: IpAddr::V6(VIP6),
            ..ep()
        }
    }

    #[test]
    fn ipv6_clients_cover_the_block_then_the_ports() {
        let c: Clients = "2001:2:100::/64".parse().unwrap();
        assert!(c.is_ipv6());
        let a = |s: &str| IpAddr::V6(s.parse().unwrap());
        assert_eq!(c.flow(0), (a("2001:2:100::1"), 1024));
        assert_eq!(c.flow(0xffff), (a("2001:2:100::1:0"), 1024));
        assert_eq!(c.capacity(), u64::MAX);
        assert_eq!(
            c.to_string(),
            "2001:2:100::1-2001:2:100:0:ffff:ffff:ffff:ffff"
        );
        let small: Clients = "2001:2:100::5/126".parse().unwrap();
        assert_eq!(small.flow(0), (a("2001:2:100::5"), 1024));
        assert_eq!(small.flow(2), (a("2001:2:100::7"), 1024));
        assert_eq!(small.flow(3), (a("2001:2:100::5"), 1025));
        let pair: Clients = "2001:2:100::/127".parse().unwrap();
        assert_eq!(pair.flow(0), (a("2001:2:100::"), 1024));
        assert_eq!(pair.flow(3), (a("2001:2:100::1"), 1025));
        let one: Clients = "2001:2:100::7".parse().unwrap();
        assert_eq!(one.flow(3), (a("2001:2:100::7"), 1027));
        let all: Clients = "::/0".parse().unwrap();
        assert_eq!(all.flow(0), (a("::1"), 1024));
        assert!("2001:2::/129".parse::<Clients>().is_err());
        assert!("2001:2:::/64".parse::<Clients>().is_err());
        assert!("2001:2::/x".parse::<Clients>().is_err());
        assert!(!"198.19.0.0/16".parse::<Clients>().unwrap().is_ipv6());
    }

    #[test]
    fn ipv6_tcp_frames_have_correct_checksums() {
        let e = ep6();
        for (flags, payload) in [(TcpFlags::SYN, 0), (TcpFlags::ACK | TcpFlags::PSH, 4)] {
            let t = Template::tcp(&e, flags, payload);
            // Ethernet 14 + IPv6 40 + TCP 20: 78 bytes with 4 of payload.
            assert_eq!(t.frame_len(), 74 + payload);
            let mut buf = vec![0u8; t.frame_len()];
            for (src, sport, seq) in [
                ("2001:2:100::1", 1024, 0),
                ("2001:2:100::ffff:ffff:ffff:fffe", 65535, u32::MAX),
                (
                    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                    0xffff,
                    0xffff_ffff,
                ),
                ("::", 0, 0),
            ] {
                let src: Ipv6Addr = src.parse().unwrap();
                t.write(&mut buf, IpAddr::V6(src), sport, seq);
                let eth = EthernetFrame::new_checked(&buf[..]).unwrap();
                assert_eq!(eth.dst_addr(), e.dst_mac);
                assert_eq!(eth.ethertype(), EtherType::Ipv6);
                assert_eq!(&buf[12..14], &[0x86, 0xdd]);
                let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
                assert_eq!(ip.version(), 6);
                assert_eq!(usize::from(ip.payload_len()), 20 + payload);
                assert_eq!(ip.next_header(), IpProtocol::Tcp);
                assert_eq!(ip.hop_limit(), 64);
                assert_eq!(ip.src_addr(), src);
                assert_eq!(ip.dst_addr(), VIP6);
                assert!(
                    v6_l4_checksum_ok(src, VIP6, 6, ip.payload()),
                    "{src} {sport} {seq}"
                );
                let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
                assert!(tcp.verify_checksum_v6(src, VIP6));
                assert_eq!(tcp.src_port(), sport);
                assert_eq!(tcp.dst_port(), 80);
                assert_eq!(tcp.seq_number(), seq);
                assert_eq!(tcp.flags(), flags);
                assert_eq!(tcp.payload().len(), payload);
            }
        }
    }

    #[test]
    fn ipv6_udp_frames_have_correct_checksums() {
        let mut e = ep6();
        e.port = 9000;
        let t = Template::udp(&e, 18);
        assert_eq!(t.frame_len(), 14 + 40 + 8 + 18);
        let clients: Clients = "2001:2:100::/64".parse().unwrap();
        let mut buf = vec![0u8; t.frame_len()];
        for i in 0..5000u64 {
            let (src, sport) = clients.flow(i * 977);
            t.write(&mut buf, src, sport, 0);
            let IpAddr::V6(src) = src else {
                panic!("an IPv4 client from an IPv6 block")
            };
            let ip = Ipv6Packet::new_checked(&buf[ETH_LEN..]).unwrap();
            assert_eq!(ip.next_header(), IpProtocol::Udp);
            assert!(v6_l4_checksum_ok(src, VIP6, 17, ip.payload()));
            let udp = UdpPacket::new_checked(ip.payload()).unwrap();
            assert_ne!(udp.checksum(), 0);
            assert!(udp.verify_checksum_v6(src, VIP6));
            assert_eq!(udp.dst_port(), 9000);
            assert_eq!(udp.src_port(), sport);
        }
    }

    #[test]
    fn an_ipv6_schedule_sends_from_ipv6_clients() {
        let clients: Clients = "2001:2:100::/64".parse().unwrap();
        let mut s = Schedule::new(clients, 2, 2, false, 4, Order::Sequential);
        let all: Vec<Next> = std::iter::from_fn(|| s.next_packet()).collect();
        let kinds: Vec<Kind> = all.iter().map(|n| n.kind).collect();
        assert_eq!(kinds, [Kind::Syn, Kind::Syn, Kind::Data, Kind::Data]);
        assert_eq!(all[0].src, IpAddr::V6("2001:2:100::1".parse().unwrap()));
        assert_eq!(all[1].src, IpAddr::V6("2001:2:100::2".parse().unwrap()));
        assert_eq!(all[2].src, all[0].src);
        assert_eq!(all[2].seq, isn(0).wrapping_add(1));
    }
}
