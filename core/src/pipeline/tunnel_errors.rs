//! "Fragmentation needed" from inside a TUN tunnel, relayed to the client
//! (RFC 2003 4.1, as Linux IPVS does for its IPIP tunnels): a router
//! between the appliance and a TUN real whose next link is narrower than
//! the tunnel's packets answers the appliance, the tunnel's entry, not the
//! client. Unrelayed, the client never learns that its packets do not fit
//! (they carry DF, so nobody fragments them), and its large segments are
//! lost for the life of the connection: a path MTU black hole. The
//! client is told the router's MTU less the outer header, from the VIP,
//! about its own packet, which the router's quote holds inside the
//! appliance's.
//!
//! What a stranger can forge here is what a router on the way to a NAT
//! real can (`Pipeline::icmp_from_real`): the quote must be of an IPIP
//! packet from the port's address to the real of a TUN flow the
//! appliance holds (not one an `mh` service forwards by hash alone, which
//! ties no client to a connection: the error would go wherever a quote
//! said), from where that real is reached, and a TCP quote must hold a
//! sequence number near the client's; the announced MTU is at least
//! IPv4's minimum, and what the appliance sends back is within its ICMP
//! rate limit per client.

use lb_config::ForwardingMethod;

use super::egress::Egress;
use super::{Ipv4Meta, Ipv6Meta, Pipeline, Verdict};
use crate::buffer::PacketBuf;
use crate::flow::{Flow, FlowKey};
use crate::forward::icmpv6 as forward_icmpv6;
use crate::forward::{icmp, tunnel, IP, L4 as L4_OFFSET};
use crate::snapshot::Snapshot;
use crate::stats::DropReason;
use crate::wire::icmpv6::{self, Icmpv6Packet};
use crate::wire::{
    icmpv4, ipv6, EthernetFrame, Icmpv4Packet, Icmpv4Type, Icmpv6Type, IpProtocol, Ipv4Packet,
    Ipv6Packet,
};

impl Pipeline {
    /// An ICMP error to port `in_port`'s own address (`ip.dst`): if it is a
    /// "fragmentation needed" about an IPIP packet this appliance sent
    /// from that address, its fate (relayed to the client, or dropped
    /// and counted); None when it is about anything else, which goes on
    /// as before (the kernel's, if the port has an interface).
    #[cold]
    #[inline(never)]
    pub(super) fn tunnel_frag_needed<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        in_port: usize,
        pkt: &mut B,
        ip: &Ipv4Meta,
        now: u32,
    ) -> Option<Verdict> {
        let message = pkt.data().get(L4_OFFSET..ip.end())?;
        let icmp = Icmpv4Packet::new_checked(message).ok()?;
        if icmp.msg_type() != Icmpv4Type::DestinationUnreachable
            || icmp.code() != icmpv4::CODE_FRAG_NEEDED
        {
            return None;
        }
        let outer = Ipv4Packet::new_checked_header(icmp.payload()).ok()?;
        if outer.protocol() != IpProtocol::IpIp
            || snap.ports.get(in_port)?.ipv4() != Some(outer.src_addr())
            || outer.frag_offset() != 0
        {
            return None;
        }
        // About one of our tunnels' packets from here on: relayed, or
        // dropped and counted as an ICMP error not handled.
        let not_handled = Some(Verdict::Drop(DropReason::IcmpNotHandled));
        if !icmp.verify_checksum() {
            return Some(Verdict::Drop(DropReason::BadL4Checksum));
        }
        // What fits the tunnel is the router's MTU less the outer header;
        // a router that names none (0, before RFC 1191) or one below IPv4's
        // minimum says nothing to pass on.
        let Some(mtu) = icmp
            .next_hop_mtu()
            .checked_sub(tunnel::OVERHEAD as u16)
            .filter(|&m| m >= icmp::MIN_IPV4_MTU)
        else {
            return not_handled;
        };
        let real = outer.dst_addr();
        let inner_at = L4_OFFSET + icmpv4::HEADER_LEN + outer.header_len();
        // From where the real is reached (the router is on the way to it).
        let mac = EthernetFrame::new_unchecked(pkt.data()).src_addr();
        Some(
            self.relay_frag_needed(snap, pkt, (inner_at, ip.end()), mtu, now, |egress, f| {
                f.real() == real
                    && !real.is_unspecified()
                    && egress.came_from_next_hop(snap, in_port, real, mac, now)
            }),
        )
    }
}

impl Pipeline {
    /// [`Self::tunnel_frag_needed`] over IPv6: a Packet Too Big to port
    /// `in_port`'s own IPv6 address about a 6in6 or 4in6 packet this
    /// appliance sent from it (RFC 2473 8.2, as Linux's `ip6_tnl_err`):
    /// relayed to the client as Packet Too Big (6in6) or "fragmentation
    /// needed" (4in6), announcing the router's MTU less the outer header;
    /// None when it is about anything else. A 6in6 tunnel narrower than
    /// IPv6's minimum would have to fragment its packets (RFC 2473 7.1),
    /// which the appliance does not: such an error is dropped.
    #[cold]
    #[inline(never)]
    pub(super) fn tunnel_too_big6<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        in_port: usize,
        pkt: &mut B,
        ip: &Ipv6Meta,
        now: u32,
    ) -> Option<Verdict> {
        let message_at = ip.l4_start();
        let message = pkt.data().get(message_at..ip.end())?;
        let icmp = Icmpv6Packet::new_checked(message).ok()?;
        if icmp.msg_type() != Icmpv6Type::PacketTooBig {
            return None;
        }
        let outer = Ipv6Packet::new_checked_header(icmp.payload()).ok()?;
        let inner_v6 = match outer.next_header() {
            IpProtocol::Ipv6 => true,
            IpProtocol::IpIp => false,
            _ => return None,
        };
        if snap.ports.get(in_port)?.ipv6() != Some(outer.src_addr()) {
            return None;
        }
        let not_handled = Some(Verdict::Drop(DropReason::IcmpNotHandled));
        if !icmp.verify_checksum(ip.src, ip.dst) {
            return Some(Verdict::Drop(DropReason::BadL4Checksum));
        }
        let real = outer.dst_addr();
        // The tunnel runs over IPv6, whose links carry at least 1280 bytes
        // (RFC 8200 §5): a smaller MTU is no router's, whichever family
        // is inside (found in audit: about a 4in6 packet, 108 went to the
        // client as "fragmentation needed" announcing 68).
        if icmp.mtu() < ipv6::MIN_MTU as u32 {
            return not_handled;
        }
        let Some(mtu) = icmp.mtu().checked_sub(tunnel::OVERHEAD6 as u32) else {
            return not_handled;
        };
        let inner_at = message_at + icmpv6::HEADER_LEN + ipv6::HEADER_LEN;
        let mac = EthernetFrame::new_unchecked(pkt.data()).src_addr();
        let quote_len = ip.end() - inner_at;
        if inner_v6 {
            if mtu < ipv6::MIN_MTU as u32 {
                return not_handled;
            }
            let Some(q) = pkt
                .data()
                .get(inner_at..ip.end())
                .and_then(forward_icmpv6::quoted_packet)
            else {
                return not_handled;
            };
            if !matches!(q.protocol, IpProtocol::Tcp | IpProtocol::Udp) || !snap.is_vip6(q.dst) {
                return not_handled;
            }
            let key = FlowKey {
                proto: u8::from(q.protocol),
                client: q.src,
                client_port: q.src_port,
                vip: q.dst,
                vip_port: q.dst_port,
            };
            if let Some(v) = self.hand_off(key.client) {
                return Some(v);
            }
            let Some(f) = self.conntrack6.as_ref().and_then(|ct6| ct6.find(&key)) else {
                return Some(Verdict::Drop(DropReason::NoFlow));
            };
            if q.protocol == IpProtocol::Tcp && !f.quotes_client_seq(q.seq) {
                return not_handled;
            }
            if f.method != ForwardingMethod::Tunnel
                || f.real() != real
                || !snap.real_present(f.real_id)
                || !self
                    .egress
                    .came_from_next_hop6(snap, in_port, real, mac, now)
            {
                return not_handled;
            }
            pkt.data_mut().copy_within(inner_at..ip.end(), IP);
            if !pkt.set_len(IP + quote_len) {
                return Some(Verdict::Drop(DropReason::Truncated));
            }
            let relayed = &self.stats.icmp_errors_forwarded;
            return Some(self.egress.packet_too_big_as(
                snap,
                &self.stats,
                pkt,
                (quote_len, key.vip),
                mtu,
                now,
                relayed,
            ));
        }
        // 4in6: the client's packet is IPv4, its flow in the IPv4 table,
        // its real named by id.
        let Some(mtu) = u16::try_from(mtu).ok().filter(|&m| m >= icmp::MIN_IPV4_MTU) else {
            return not_handled;
        };
        Some(
            self.relay_frag_needed(snap, pkt, (inner_at, ip.end()), mtu, now, |egress, f| {
                snap.tunnel6_real(f.real_id) == Some(real)
                    && egress.came_from_next_hop6(snap, in_port, real, mac, now)
            }),
        )
    }

    /// The relay of an error about an IPv4 client's packet, quoted from
    /// `inner_at` to `end` in the frame, as "fragmentation needed"
    /// announcing `mtu`: for a flow the appliance holds (found in review:
    /// one an `mh` service forwards by hash alone ties no client to a
    /// connection, so the error went to any address the quote named: a
    /// reflector), TUN to a real still configured that `tunnel` says is
    /// the far end of the tunnel the error came back through (and from
    /// where it is reached), a TCP quote the client's own segment (as for
    /// a router's error about a NAT flow). Counted as an error passed on.
    fn relay_frag_needed<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        pkt: &mut B,
        (inner_at, end): (usize, usize),
        mtu: u16,
        now: u32,
        tunnel: impl FnOnce(&mut Egress, &Flow) -> bool,
    ) -> Verdict {
        let not_handled = Verdict::Drop(DropReason::IcmpNotHandled);
        let Some(q) = pkt
            .data()
            .get(inner_at..end)
            .filter(|inner| sound_ipv4_header(inner))
            .and_then(icmp::quoted_packet)
        else {
            return not_handled;
        };
        if !matches!(q.protocol, IpProtocol::Tcp | IpProtocol::Udp) || !snap.is_vip(q.dst) {
            return not_handled;
        }
        let key = FlowKey {
            proto: u8::from(q.protocol),
            client: q.src,
            client_port: q.src_port,
            vip: q.dst,
            vip_port: q.dst_port,
        };
        if let Some(v) = self.hand_off(key.client) {
            return v;
        }
        let Some(f) = self.conntrack.find(&key) else {
            return Verdict::Drop(DropReason::NoFlow);
        };
        if (q.protocol == IpProtocol::Tcp && !f.quotes_client_seq(q.seq))
            || f.method != ForwardingMethod::Tunnel
            || !snap.real_present(f.real_id)
            || !tunnel(&mut self.egress, &f)
        {
            return not_handled;
        }
        // The client's packet, as much of it as the router quoted, becomes
        // the packet "fragmentation needed" is made of.
        pkt.data_mut().copy_within(inner_at..end, IP);
        if !pkt.set_len(IP + (end - inner_at)) {
            return Verdict::Drop(DropReason::Truncated);
        }
        let relayed = &self.stats.icmp_errors_forwarded;
        let ends = (key.client, key.vip);
        self.egress
            .frag_needed_as(snap, &self.stats, pkt, ends, mtu, now, relayed)
    }
}

/// Whether `quote` starts with a whole IPv4 header whose checksum holds:
/// the client's packet as the appliance sent it into the tunnel (the
/// classifier checked it), which the client is then shown again.
fn sound_ipv4_header(quote: &[u8]) -> bool {
    Ipv4Packet::new_checked_header(quote).is_ok_and(|h| h.verify_checksum())
}
