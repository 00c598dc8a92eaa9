//! What comes back, by kind, for IPv4 and IPv6 alike.

use std::net::IpAddr;

use lb_core::wire::{
    EtherType, EthernetFrame, IpProtocol, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket,
};
use serde_json::{json, Value};

/// How many destination addresses are counted one by one; packets to
/// further addresses are counted together.
pub const MAX_DESTINATIONS: usize = 64;

/// Counters of received packets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RxCounts {
    pub packets: u64,
    pub bytes: u64,
    /// TCP or UDP to an address other than the VIP (VS/NAT or NAT66
    /// rewrote the destination to a real).
    pub to_real: u64,
    /// IPv4 or IPv6 to the VIP, unchanged (VS/DR, or a plain loopback such
    /// as testpmd's io or macswap forwarding).
    pub to_vip: u64,
    /// A tunnel (VS/TUN): IPv4 in IPv4, or an outer IPv6 header with next
    /// header 41 (6in6) or 4 (4in6). (An outer IPv4 header with protocol 41,
    /// 6in4, which the appliance never sends, is `other`, as it always was.)
    pub ipip: u64,
    pub arp: u64,
    pub other: u64,
    /// Packets whose IPv4 header checksum or TCP/UDP checksum is wrong, or
    /// IPv6 UDP with checksum 0 (invalid in IPv6, RFC 8200) (only with
    /// `--verify-checksums`).
    pub bad_checksum: u64,
    /// Packets per destination address (the outer one for a tunnel), in
    /// order of first appearance.
    pub destinations: Vec<(IpAddr, u64)>,
    pub other_destinations: u64,
}

impl RxCounts {
    /// Counts one frame. `vip` is what the generator sends to.
    #[inline]
    pub fn count(&mut self, frame: &[u8], vip: IpAddr, verify: bool) {
        self.packets += 1;
        self.bytes += frame.len() as u64;
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            self.other += 1;
            return;
        };
        match eth.ethertype() {
            EtherType::Ipv4 => self.count_v4(eth.payload(), vip, verify),
            EtherType::Ipv6 => self.count_v6(eth.payload(), vip, verify),
            EtherType::Arp => self.arp += 1,
            _ => self.other += 1,
        }
    }

    #[inline]
    fn count_v4(&mut self, packet: &[u8], vip: IpAddr, verify: bool) {
        let Ok(ip) = Ipv4Packet::new_checked(packet) else {
            self.other += 1;
            return;
        };
        let dst = ip.dst_addr();
        let protocol = ip.protocol();
        if protocol == IpProtocol::IpIp {
            self.ipip += 1;
        } else if IpAddr::V4(dst) == vip {
            self.to_vip += 1;
        } else if matches!(protocol, IpProtocol::Tcp | IpProtocol::Udp) {
            self.to_real += 1;
        } else {
            self.other += 1;
        }
        self.destination(dst.into(), 1);
        if verify && !checksums_ok(&ip) {
            self.bad_checksum += 1;
        }
    }

    /// IPv6 as the appliance sends it: no extension headers (the next
    /// header of the fixed header is the transport or the tunnelled packet).
    #[inline]
    fn count_v6(&mut self, packet: &[u8], vip: IpAddr, verify: bool) {
        let Ok(ip) = Ipv6Packet::new_checked(packet) else {
            self.other += 1;
            return;
        };
        let dst = ip.dst_addr();
        let next = ip.next_header();
        if matches!(next, IpProtocol::Ipv6 | IpProtocol::IpIp) {
            self.ipip += 1;
        } else if IpAddr::V6(dst) == vip {
            self.to_vip += 1;
        } else if matches!(next, IpProtocol::Tcp | IpProtocol::Udp) {
            self.to_real += 1;
        } else {
            self.other += 1;
        }
        self.destination(dst.into(), 1);
        if verify && !checksums_ok_v6(&ip) {
            self.bad_checksum += 1;
        }
    }

    fn destination(&mut self, dst: IpAddr, n: u64) {
        if let Some(d) = self.destinations.iter_mut().find(|(a, _)| *a == dst) {
            d.1 += n;
        } else if self.destinations.len() < MAX_DESTINATIONS {
            self.destinations.push((dst, n));
        } else {
            self.other_destinations += n;
        }
    }

    pub fn to_json(&self) -> Value {
        let dests: serde_json::Map<String, Value> = self
            .destinations
            .iter()
            .map(|(a, n)| (a.to_string(), json!(n)))
            .collect();
        json!({
            "packets": self.packets,
            "bytes": self.bytes,
            "to_real": self.to_real,
            "to_vip": self.to_vip,
            "ipip": self.ipip,
            "arp": self.arp,
            "other": self.other,
            "bad_checksum": self.bad_checksum,
            "destinations": dests,
            "other_destinations": self.other_destinations,
        })
    }
}

/// Whether the IPv4 header checksum and, for TCP, UDP and the inner packet
/// of IPIP, the transport checksum are right.
fn checksums_ok<T: AsRef<[u8]>>(ip: &Ipv4Packet<T>) -> bool {
    if !ip.verify_checksum() {
        return false;
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    match ip.protocol() {
        IpProtocol::Tcp => TcpPacket::new_checked(ip.payload())
            .map(|t| t.verify_checksum(src, dst))
            .unwrap_or(false),
        IpProtocol::Udp => UdpPacket::new_checked(ip.payload())
            .map(|u| u.checksum() == 0 || u.verify_checksum(src, dst))
            .unwrap_or(false),
        IpProtocol::IpIp => Ipv4Packet::new_checked(ip.payload())
            .map(|inner| checksums_ok(&inner))
            .unwrap_or(false),
        _ => true,
    }
}

/// Whether the TCP/UDP checksum of an IPv6 packet, or of the inner packet of
/// 6in6 or 4in6, is right (IPv6 has no header checksum; a UDP checksum of 0
/// is invalid in IPv6).
fn checksums_ok_v6<T: AsRef<[u8]>>(ip: &Ipv6Packet<T>) -> bool {
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    match ip.next_header() {
        IpProtocol::Tcp => TcpPacket::new_checked(ip.payload())
            .map(|t| t.verify_checksum_v6(src, dst))
            .unwrap_or(false),
        IpProtocol::Udp => UdpPacket::new_checked(ip.payload())
            .map(|u| u.checksum() != 0 && u.verify_checksum_v6(src, dst))
            .unwrap_or(false),
        IpProtocol::Ipv6 => Ipv6Packet::new_checked(ip.payload())
            .map(|inner| checksums_ok_v6(&inner))
            .unwrap_or(false),
        IpProtocol::IpIp => Ipv4Packet::new_checked(ip.payload())
            .map(|inner| checksums_ok(&inner))
            .unwrap_or(false),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::tests::v6_l4_checksum_ok;
    use crate::frames::{Endpoints, Template};
    use lb_core::wire::{Ipv6Repr, MacAddr, TcpFlags};
    use std::net::{Ipv4Addr, Ipv6Addr};

    const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 100);

    fn frame() -> Vec<u8> {
        let t = Template::tcp(
            &Endpoints {
                src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
                dst_mac: MacAddr([2, 0, 0, 0, 0, 2]),
                vip: VIP.into(),
                port: 80,
            },
            TcpFlags::SYN,
            0,
        );
        let mut buf = vec![0u8; t.frame_len()];
        t.write(&mut buf, Ipv4Addr::new(198, 19, 0, 1).into(), 1024, 7);
        buf
    }

    /// What VS/NAT does to the destination, with a full checksum refill.
    fn natted(real: Ipv4Addr) -> Vec<u8> {
        let mut f = frame();
        let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
        ip.set_dst_addr(real);
        ip.fill_checksum();
        let src = ip.src_addr();
        let mut tcp = TcpPacket::new_unchecked(ip.payload_mut());
        tcp.fill_checksum(src, real);
        f
    }

    /// What VS/TUN sends: the client's packet, unchanged, inside an outer
    /// IPv4 header from the appliance to the real (protocol 4).
    fn tunnelled(real: Ipv4Addr) -> Vec<u8> {
        use lb_core::wire::Ipv4Repr;
        let inner = frame();
        let mut f = vec![0u8; inner.len() + 20];
        f[..14].copy_from_slice(&inner[..14]);
        f[34..].copy_from_slice(&inner[14..]);
        Ipv4Repr {
            src: Ipv4Addr::new(198, 18, 0, 2),
            dst: real,
            protocol: IpProtocol::IpIp,
            payload_len: inner.len() - 14,
            ttl: 64,
            dont_fragment: true,
            ident: 0,
            dscp_ecn: 0,
        }
        .emit(&mut Ipv4Packet::new_unchecked(&mut f[14..]));
        f
    }

    #[test]
    fn counts_ipip_by_outer_destination() {
        let mut c = RxCounts::default();
        let real = Ipv4Addr::new(198, 18, 0, 12);
        let t = tunnelled(real);
        assert_eq!(t.len(), frame().len() + 20);
        c.count(&t, VIP.into(), true);
        c.count(&t, VIP.into(), true);
        let mut bad = t.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1; // the inner TCP checksum
        c.count(&bad, VIP.into(), true);
        assert_eq!(
            (
                c.packets,
                c.ipip,
                c.to_vip,
                c.to_real,
                c.other,
                c.bad_checksum
            ),
            (3, 3, 0, 0, 0, 1)
        );
        assert_eq!(c.destinations, vec![(real.into(), 3)]);
    }

    #[test]
    fn classifies_what_comes_back() {
        let mut c = RxCounts::default();
        c.count(&frame(), VIP.into(), true);
        let real = Ipv4Addr::new(198, 18, 0, 11);
        c.count(&natted(real), VIP.into(), true);
        c.count(&natted(real), VIP.into(), true);
        let mut arp = frame();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        c.count(&arp, VIP.into(), true);
        c.count(&[0u8; 10], VIP.into(), true);
        let mut bad = natted(real);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        c.count(&bad, VIP.into(), true);
        assert_eq!(
            (
                c.packets,
                c.to_vip,
                c.to_real,
                c.arp,
                c.other,
                c.bad_checksum
            ),
            (6, 1, 3, 1, 1, 1)
        );
        assert_eq!(c.destinations, vec![(VIP.into(), 1), (real.into(), 3)]);
        assert_eq!(c.to_json()["destinations"]["198.18.0.11"], 3);
    }

    const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 1, 0, 0, 0, 0, 0x100);
    const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0x100, 0, 0, 0, 0, 1);
    const REAL6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x11);

    /// What the generator sends over IPv6: a data segment with 4 bytes.
    fn frame6(udp: bool) -> Vec<u8> {
        let ep = Endpoints {
            src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            dst_mac: MacAddr([2, 0, 0, 0, 0, 2]),
            vip: VIP6.into(),
            port: 80,
        };
        let t = if udp {
            Template::udp(&ep, 4)
        } else {
            Template::tcp(&ep, TcpFlags::ACK | TcpFlags::PSH, 4)
        };
        let mut buf = vec![0u8; t.frame_len()];
        t.write(&mut buf, CLIENT6.into(), 1024, 7);
        buf
    }

    /// What NAT66 does: destination address and port to the real's, the
    /// transport checksum filled again; checked here by the test's own sum.
    fn natted6(real: Ipv6Addr) -> Vec<u8> {
        let mut f = frame6(false);
        let mut ip = Ipv6Packet::new_unchecked(&mut f[14..]);
        ip.set_dst_addr(real);
        let mut tcp = TcpPacket::new_unchecked(ip.payload_mut());
        tcp.set_dst_port(8080);
        tcp.fill_checksum_v6(CLIENT6, real);
        assert!(v6_l4_checksum_ok(CLIENT6, real, 6, &f[54..]));
        f
    }

    /// What VS/TUN sends for an IPv6 VIP (6in6): the client's packet,
    /// unchanged, behind an outer IPv6 header to the real, next header 41.
    fn tunnelled6(real: Ipv6Addr) -> Vec<u8> {
        let inner = frame6(false);
        let mut f = vec![0u8; inner.len() + 40];
        f[..14].copy_from_slice(&inner[..14]);
        f[54..].copy_from_slice(&inner[14..]);
        Ipv6Repr {
            src: "2001:2::2".parse().unwrap(),
            dst: real,
            next_header: IpProtocol::Ipv6,
            payload_len: inner.len() - 14,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
        }
        .emit(&mut Ipv6Packet::new_unchecked(&mut f[14..]));
        assert_eq!(f[14 + 6], 41);
        f
    }

    #[test]
    fn classifies_ipv6_by_kind() {
        let vip: IpAddr = VIP6.into();
        let mut c = RxCounts::default();
        // DR (and testpmd macswap): the destination is still the VIP.
        let unchanged = frame6(false);
        assert!(v6_l4_checksum_ok(CLIENT6, VIP6, 6, &unchanged[54..]));
        c.count(&unchanged, vip, true);
        let udp = frame6(true);
        assert!(v6_l4_checksum_ok(CLIENT6, VIP6, 17, &udp[54..]));
        c.count(&udp, vip, true);
        assert_eq!((c.to_vip, c.bad_checksum), (2, 0));
        // NAT66: to a real.
        c.count(&natted6(REAL6), vip, true);
        // TUN 6in6: counted as ipip, by the outer destination.
        let t = tunnelled6(REAL6);
        c.count(&t, vip, true);
        assert_eq!(
            (
                c.packets,
                c.to_vip,
                c.to_real,
                c.ipip,
                c.other,
                c.bad_checksum
            ),
            (4, 2, 1, 1, 0, 0)
        );
        assert_eq!(c.destinations, vec![(vip, 2), (REAL6.into(), 2)]);
        assert_eq!(c.to_json()["destinations"]["2001:2::11"], 2);
        assert_eq!(c.to_json()["ipip"], 1);
    }

    #[test]
    fn ipv6_checksums_are_verified() {
        let vip: IpAddr = VIP6.into();
        let mut c = RxCounts::default();
        let mut bad_nat = natted6(REAL6);
        let last = bad_nat.len() - 1;
        bad_nat[last] ^= 1;
        assert!(!v6_l4_checksum_ok(CLIENT6, REAL6, 6, &bad_nat[54..]));
        c.count(&bad_nat, vip, true);
        let mut bad_tun = tunnelled6(REAL6);
        let last = bad_tun.len() - 1;
        bad_tun[last] ^= 1; // the inner TCP payload
        c.count(&bad_tun, vip, true);
        // UDP checksum 0 means "none" in IPv4 but is invalid in IPv6.
        let mut zero = frame6(true);
        zero[54 + 6..54 + 8].fill(0);
        c.count(&zero, vip, true);
        assert_eq!((c.packets, c.bad_checksum), (3, 3));
        assert_eq!((c.to_real, c.ipip, c.to_vip), (1, 1, 1));
        // Without --verify-checksums nothing is checked.
        let mut quiet = RxCounts::default();
        quiet.count(&bad_nat, vip, false);
        assert_eq!((quiet.to_real, quiet.bad_checksum), (1, 0));
    }

    #[test]
    fn other_ipv6_is_other() {
        let vip: IpAddr = VIP6.into();
        let mut c = RxCounts::default();
        // ICMPv6 (a neighbor solicitation, say) to another address.
        let mut icmp = natted6(REAL6);
        icmp[14 + 6] = 58;
        c.count(&icmp, vip, false);
        // Truncated: the payload length says more than the frame holds.
        let short = frame6(false);
        c.count(&short[..60], vip, true);
        // Not version 6.
        let mut v5 = frame6(false);
        v5[14] = 0x50;
        c.count(&v5, vip, true);
        assert_eq!(
            (c.packets, c.other, c.to_real, c.bad_checksum),
            (3, 3, 0, 0)
        );
        assert_eq!(c.destinations, vec![(REAL6.into(), 1)]);
    }
}
