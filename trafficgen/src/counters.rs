//! What comes back, by kind.

use std::net::Ipv4Addr;

use lb_core::wire::{EtherType, EthernetFrame, IpProtocol, Ipv4Packet, TcpPacket, UdpPacket};
use serde_json::{json, Value};

/// How many destination addresses are counted one by one; packets to
/// further addresses are counted together.
pub const MAX_DESTINATIONS: usize = 64;

/// Counters of received packets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RxCounts {
    pub packets: u64,
    pub bytes: u64,
    /// TCP or UDP to an address other than the VIP (VS/NAT rewrote the
    /// destination to a real).
    pub to_real: u64,
    /// IPv4 to the VIP, unchanged (VS/DR, or a plain loopback such as
    /// testpmd's io forwarding).
    pub to_vip: u64,
    /// IPv4 in IPv4 (VS/TUN).
    pub ipip: u64,
    pub arp: u64,
    pub other: u64,
    /// Packets whose IPv4 or TCP/UDP checksum is wrong (only with
    /// `--verify-checksums`).
    pub bad_checksum: u64,
    /// Packets per destination address (the outer one for IPIP), in order of
    /// first appearance.
    pub destinations: Vec<(Ipv4Addr, u64)>,
    pub other_destinations: u64,
}

impl RxCounts {
    /// Counts one frame. `vip` is what the generator sends to.
    #[inline]
    pub fn count(&mut self, frame: &[u8], vip: Ipv4Addr, verify: bool) {
        self.packets += 1;
        self.bytes += frame.len() as u64;
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            self.other += 1;
            return;
        };
        match eth.ethertype() {
            EtherType::Ipv4 => {}
            EtherType::Arp => {
                self.arp += 1;
                return;
            }
            _ => {
                self.other += 1;
                return;
            }
        }
        let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
            self.other += 1;
            return;
        };
        let dst = ip.dst_addr();
        let protocol = ip.protocol();
        if protocol == IpProtocol::IpIp {
            self.ipip += 1;
        } else if dst == vip {
            self.to_vip += 1;
        } else if matches!(protocol, IpProtocol::Tcp | IpProtocol::Udp) {
            self.to_real += 1;
        } else {
            self.other += 1;
        }
        self.destination(dst, 1);
        if verify && !checksums_ok(&ip) {
            self.bad_checksum += 1;
        }
    }

    fn destination(&mut self, dst: Ipv4Addr, n: u64) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::{Endpoints, Template};
    use lb_core::wire::{MacAddr, TcpFlags};

    const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 100);

    fn frame() -> Vec<u8> {
        let t = Template::tcp(
            &Endpoints {
                src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
                dst_mac: MacAddr([2, 0, 0, 0, 0, 2]),
                vip: VIP,
                port: 80,
            },
            TcpFlags::SYN,
            0,
        );
        let mut buf = vec![0u8; t.frame_len()];
        t.write(&mut buf, Ipv4Addr::new(198, 19, 0, 1), 1024, 7);
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
        c.count(&t, VIP, true);
        c.count(&t, VIP, true);
        let mut bad = t.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1; // the inner TCP checksum
        c.count(&bad, VIP, true);
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
        assert_eq!(c.destinations, vec![(real, 3)]);
    }

    #[test]
    fn classifies_what_comes_back() {
        let mut c = RxCounts::default();
        c.count(&frame(), VIP, true);
        let real = Ipv4Addr::new(198, 18, 0, 11);
        c.count(&natted(real), VIP, true);
        c.count(&natted(real), VIP, true);
        let mut arp = frame();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        c.count(&arp, VIP, true);
        c.count(&[0u8; 10], VIP, true);
        let mut bad = natted(real);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        c.count(&bad, VIP, true);
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
        assert_eq!(c.destinations, vec![(VIP, 1), (real, 3)]);
        assert_eq!(c.to_json()["destinations"]["198.18.0.11"], 3);
    }
}
