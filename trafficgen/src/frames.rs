//! What the generator sends: the client population (flow index -> client
//! address and port) and frame templates that are patched per packet.
//!
//! A template is a whole frame built once with the dataplane's `wire`
//! module, with the client address, client port and sequence number left at
//! zero and their checksums' partial sums kept aside. Sending a packet is a
//! copy of the template, three field writes and two checksum folds (RFC 1071
//! sums are additive), so that the generator is not slower than what it
//! measures.

use std::net::Ipv4Addr;

use lb_core::wire::checksum;
use lb_core::wire::ethernet::HEADER_LEN as ETH_LEN;
use lb_core::wire::ipv4::HEADER_LEN as IP_LEN;
use lb_core::wire::{
    EtherType, EthernetFrame, EthernetRepr, IpProtocol, Ipv4Packet, Ipv4Repr, MacAddr, TcpFlags,
    TcpPacket, UdpPacket,
};

const TCP_LEN: usize = lb_core::wire::tcp::HEADER_LEN;
const UDP_LEN: usize = lb_core::wire::udp::HEADER_LEN;
const IP_CHECKSUM: usize = ETH_LEN + 10;
const IP_SRC: usize = ETH_LEN + 12;
const L4: usize = ETH_LEN + IP_LEN;
const FILLER: &[u8] = b"lb-trafficgen ";

/// The clients: a CIDR block whose host addresses, then source ports, are
/// handed out in order, one (address, port) pair per flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clients {
    first: u32,
    hosts: u32,
}

/// The lowest source port used (ports below are left to the well-known and
/// registered services a capture filter may look for).
pub const FIRST_PORT: u16 = 1024;
const PORTS: u32 = 65536 - FIRST_PORT as u32;

impl std::str::FromStr for Clients {
    type Err = String;

    /// `198.19.0.0/16`; the network and broadcast addresses are skipped for
    /// prefixes up to /30.
    fn from_str(s: &str) -> Result<Clients, String> {
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
        Ok(Clients {
            first,
            hosts: hosts as u32,
        })
    }
}

impl std::fmt::Display for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let last = self.first.wrapping_add(self.hosts - 1);
        write!(f, "{}-{}", Ipv4Addr::from(self.first), Ipv4Addr::from(last))
    }
}

impl Clients {
    /// The client address and port of flow `i`: distinct addresses first,
    /// then, once every address is used, the next source port.
    pub fn flow(&self, i: u64) -> (Ipv4Addr, u16) {
        let host = (i % u64::from(self.hosts)) as u32;
        let round = (i / u64::from(self.hosts)) % u64::from(PORTS);
        (
            Ipv4Addr::from(self.first.wrapping_add(host)),
            FIRST_PORT + round as u16,
        )
    }

    /// How many distinct (address, port) pairs there are.
    pub fn capacity(&self) -> u64 {
        u64::from(self.hosts) * u64::from(PORTS)
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
    /// Ones-complement sum of the IPv4 header with a zero source and checksum.
    ip_sum: u32,
    /// Sum of the pseudo header and segment with zero source, port, sequence
    /// number and checksum.
    l4_sum: u32,
    udp: bool,
}

/// Addresses shared by every template.
#[derive(Debug, Clone, Copy)]
pub struct Endpoints {
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub vip: Ipv4Addr,
    pub port: u16,
}

impl Template {
    /// A TCP segment to the VIP with `flags` and `payload` bytes of data
    /// (ACK number 1 when ACK is set: the generator does not track the
    /// server's sequence numbers, and a balancer does not look at them).
    pub fn tcp(ep: &Endpoints, flags: TcpFlags, payload: usize) -> Template {
        let l4_len = TCP_LEN + payload;
        let mut frame = Self::headers(ep, IpProtocol::Tcp, l4_len);
        let mut tcp = TcpPacket::new_unchecked(&mut frame[L4..]);
        tcp.set_dst_port(ep.port);
        tcp.set_header_len(TCP_LEN);
        tcp.set_flags(flags);
        tcp.set_window(65535);
        tcp.set_ack_number(u32::from(flags.contains(TcpFlags::ACK)));
        fill(tcp.payload_mut());
        Self::finish(frame, ep, IpProtocol::Tcp, false)
    }

    /// A UDP datagram to the VIP with `payload` bytes.
    pub fn udp(ep: &Endpoints, payload: usize) -> Template {
        let l4_len = UDP_LEN + payload;
        let mut frame = Self::headers(ep, IpProtocol::Udp, l4_len);
        let mut udp = UdpPacket::new_unchecked(&mut frame[L4..]);
        udp.set_dst_port(ep.port);
        udp.set_len(l4_len as u16);
        fill(udp.payload_mut());
        Self::finish(frame, ep, IpProtocol::Udp, true)
    }

    fn headers(ep: &Endpoints, protocol: IpProtocol, l4_len: usize) -> Vec<u8> {
        let mut frame = vec![0u8; L4 + l4_len];
        EthernetRepr {
            src: ep.src_mac,
            dst: ep.dst_mac,
            ethertype: EtherType::Ipv4,
        }
        .emit(&mut EthernetFrame::new_unchecked(&mut frame[..]));
        Ipv4Repr {
            src: Ipv4Addr::UNSPECIFIED,
            dst: ep.vip,
            protocol,
            payload_len: l4_len,
            ttl: 64,
            dont_fragment: true,
            ident: 0,
            dscp_ecn: 0,
        }
        .emit(&mut Ipv4Packet::new_unchecked(&mut frame[ETH_LEN..]));
        frame
    }

    fn finish(mut frame: Vec<u8>, ep: &Endpoints, protocol: IpProtocol, udp: bool) -> Template {
        frame[IP_CHECKSUM..IP_CHECKSUM + 2].fill(0);
        let ip_sum = checksum::sum(&frame[ETH_LEN..L4]);
        let l4_len = (frame.len() - L4) as u16;
        let l4_sum = checksum::sum(&frame[L4..])
            + checksum::pseudo_header_sum(Ipv4Addr::UNSPECIFIED, ep.vip, protocol.into(), l4_len);
        Template {
            frame,
            ip_sum,
            l4_sum,
            udp,
        }
    }

    /// Length of the frames this template makes.
    pub fn frame_len(&self) -> usize {
        self.frame.len()
    }

    /// Writes the frame from `src:sport` with sequence number `seq` (TCP
    /// only) into `out`, which must be exactly [`frame_len`](Self::frame_len) long.
    #[inline]
    pub fn write(&self, out: &mut [u8], src: Ipv4Addr, sport: u16, seq: u32) {
        out.copy_from_slice(&self.frame);
        let s = u32::from(src);
        let addr_sum = (s >> 16) + (s & 0xffff);
        out[IP_SRC..IP_SRC + 4].copy_from_slice(&src.octets());
        let ip = !checksum::fold(self.ip_sum + addr_sum);
        out[IP_CHECKSUM..IP_CHECKSUM + 2].copy_from_slice(&ip.to_be_bytes());
        out[L4..L4 + 2].copy_from_slice(&sport.to_be_bytes());
        let mut l4 = self.l4_sum + addr_sum + u32::from(sport);
        let at = if self.udp {
            L4 + 6
        } else {
            out[L4 + 4..L4 + 8].copy_from_slice(&seq.to_be_bytes());
            l4 += (seq >> 16) + (seq & 0xffff);
            L4 + 16
        };
        let mut c = !checksum::fold(l4);
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
#[derive(Debug, Clone)]
pub struct Schedule {
    pub clients: Clients,
    pub flows: u64,
    /// Packets per flow, the SYN included; 0 = no end.
    pub per_flow: u64,
    pub udp: bool,
    pub payload: u32,
    next: u64,
}

/// One packet to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Next {
    pub kind: Kind,
    pub src: Ipv4Addr,
    pub sport: u16,
    pub seq: u32,
}

impl Schedule {
    pub fn new(clients: Clients, flows: u64, per_flow: u64, udp: bool, payload: u32) -> Self {
        Schedule {
            clients,
            flows: flows.max(1),
            per_flow,
            udp,
            payload,
            next: 0,
        }
    }

    /// The next packet, or `None` once every flow has had `per_flow`.
    #[inline]
    pub fn next_packet(&mut self) -> Option<Next> {
        let round = self.next / self.flows;
        if self.per_flow != 0 && round >= self.per_flow {
            return None;
        }
        let flow = self.next % self.flows;
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
mod tests {
    use super::*;

    fn ep() -> Endpoints {
        Endpoints {
            src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            dst_mac: MacAddr([2, 0, 0, 0, 0, 2]),
            vip: Ipv4Addr::new(198, 18, 1, 100),
            port: 80,
        }
    }

    #[test]
    fn clients_cover_the_block_then_the_ports() {
        let c: Clients = "198.19.0.0/16".parse().unwrap();
        assert_eq!(c.flow(0), (Ipv4Addr::new(198, 19, 0, 1), 1024));
        assert_eq!(c.flow(65533), (Ipv4Addr::new(198, 19, 255, 254), 1024));
        assert_eq!(c.flow(65534), (Ipv4Addr::new(198, 19, 0, 1), 1025));
        assert_eq!(c.capacity(), 65534 * 64512);
        let one: Clients = "10.0.0.7/32".parse().unwrap();
        assert_eq!(one.flow(3), (Ipv4Addr::new(10, 0, 0, 7), 1027));
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
                t.write(&mut buf, src, sport, seq);
                let eth = EthernetFrame::new_checked(&buf[..]).unwrap();
                assert_eq!(eth.dst_addr(), e.dst_mac);
                assert_eq!(eth.ethertype(), EtherType::Ipv4);
                let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
                assert!(ip.verify_checksum());
                assert_eq!(ip.src_addr(), src);
                assert_eq!(ip.dst_addr(), e.vip);
                let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
                assert!(tcp.verify_checksum(src, e.vip), "{src} {sport} {seq}");
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
            let ip = Ipv4Packet::new_checked(&buf[ETH_LEN..]).unwrap();
            assert!(ip.verify_checksum());
            let udp = UdpPacket::new_checked(ip.payload()).unwrap();
            assert_ne!(udp.checksum(), 0);
            assert!(udp.verify_checksum(src, e.vip));
            assert_eq!(udp.dst_port(), 9000);
        }
    }

    #[test]
    fn every_flow_opens_with_a_syn_before_its_data() {
        let clients: Clients = "198.19.0.0/16".parse().unwrap();
        let mut s = Schedule::new(clients, 3, 3, false, 10);
        let all: Vec<Next> = std::iter::from_fn(|| s.next_packet()).collect();
        assert_eq!(all.len(), 9);
        assert!(all[..3].iter().all(|n| n.kind == Kind::Syn));
        assert!(all[3..].iter().all(|n| n.kind == Kind::Data));
        assert_eq!(all[0].src, all[3].src);
        assert_eq!(all[3].seq, isn(0).wrapping_add(1));
        assert_eq!(all[6].seq, isn(0).wrapping_add(11));
        assert_eq!(s.next_packet(), None);
        let mut u = Schedule::new(clients, 2, 0, true, 10);
        assert!((0..100).all(|_| u.next_packet().unwrap().kind == Kind::Udp));
    }
}
