//! Traffic for the appliance itself: ARP requests (IPv6: neighbor
//! solicitations) for a port address or a VIP, ICMP and ICMPv6 echo
//! requests to them, and the ARP requests and solicitations we send to
//! resolve next hops. Replies are built in place in the received buffer and sent
//! back out of the port they came in on.

use std::net::{Ipv4Addr, Ipv6Addr};

use lb_config::MacAddr;

use super::Verdict;
use crate::buffer::PacketBuf;
use crate::snapshot::Snapshot;
use crate::stats::{DropReason, WorkerStats};
use crate::wire::icmpv6::{Icmpv6Packet, Icmpv6Type};
use crate::wire::ipv4::DEFAULT_TTL;
use crate::wire::ipv6::{self, Ipv6Packet, Ipv6Repr};
use crate::wire::ndp::{self, NdpOption, NdpRepr, NeighborFlags, NeighborPacket};
use crate::wire::{arp, ethernet, IpProtocol};
use crate::wire::{
    ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetFrame, Icmpv4Packet, Icmpv4Type,
    Ipv4Packet,
};

/// What the sender of a well-formed Ethernet/IPv4 ARP packet says of
/// itself, where a neighbor cache may hear it (unicast MAC, non-zero
/// address, not one of ours).
pub(super) enum ArpSender {
    /// Addressed to one of our addresses: learned from; `answer` for a
    /// reply (which answers a request of ours if one is out).
    ToUs {
        ip: Ipv4Addr,
        mac: MacAddr,
        answer: bool,
    },
    /// A gratuitous ARP (the sender's own address as the target): a host
    /// announcing where it is, never learned from (only asked about again
    /// when it contradicts what is known).
    Announcing { ip: Ipv4Addr, mac: MacAddr },
}

/// The sender of a well-formed Ethernet/IPv4 ARP packet addressed to one of
/// our addresses or announcing its sender, if it is one a neighbor cache
/// may hear.
pub(super) fn arp_sender(
    snap: &Snapshot,
    port: usize,
    frame: &EthernetFrame<&mut [u8]>,
) -> Option<ArpSender> {
    let arp = ArpPacket::new_checked(frame.payload()).ok()?;
    if !arp.is_ethernet_ipv4() {
        return None;
    }
    let (ip, mac) = (arp.source_protocol_addr(), arp.source_hardware_addr());
    // Not a sender claiming one of our own addresses, or a network's
    // broadcast (found in review: learned; NDP already refused ours).
    if ip.is_unspecified() || !is_station(mac) || snap.is_martian_client(ip.into()) {
        return None;
    }
    let operation = arp.operation();
    // Only ARP addressed to one of our addresses teaches us anything: a
    // request or reply between two other hosts is not for us to believe;
    // nor is an operation that is neither (found in audit: learned).
    let target = arp.target_protocol_addr();
    if snap.is_local(port, target) {
        return match operation {
            ArpOperation::Request => Some(ArpSender::ToUs {
                ip,
                mac,
                answer: false,
            }),
            ArpOperation::Reply => Some(ArpSender::ToUs {
                ip,
                mac,
                answer: true,
            }),
            _ => None,
        };
    }
    (target == ip && matches!(operation, ArpOperation::Request | ArpOperation::Reply))
        .then_some(ArpSender::Announcing { ip, mac })
}

/// The address an Ethernet/IPv4 ARP frame is for.
pub(super) fn arp_target(frame: &EthernetFrame<&mut [u8]>) -> Option<Ipv4Addr> {
    let arp = ArpPacket::new_checked(frame.payload()).ok()?;
    arp.is_ethernet_ipv4().then(|| arp.target_protocol_addr())
}

/// Whether `mac` can be answered: one station's address, not zero and not
/// a group address.
fn is_station(mac: MacAddr) -> bool {
    mac.is_unicast() && !mac.is_zero()
}

/// Answers ARP requests for our addresses; an ARP reply to us has been
/// learned from already and is consumed; anything else is ignored.
pub(super) fn arp(
    snap: &Snapshot,
    port: usize,
    mut frame: EthernetFrame<&mut [u8]>,
    stats: &WorkerStats,
) -> Verdict {
    let our_mac = snap.ports[port].mac;
    let peer = frame.src_addr();
    let Ok(mut arp) = ArpPacket::new_checked(frame.payload_mut()) else {
        return Verdict::Drop(DropReason::Truncated);
    };
    if !arp.is_ethernet_ipv4() {
        return Verdict::Drop(DropReason::ArpIgnored);
    }
    let target = arp.target_protocol_addr();
    if !snap.is_local(port, target) {
        return Verdict::Drop(DropReason::ArpIgnored);
    }
    match arp.operation() {
        ArpOperation::Request => {}
        ArpOperation::Reply => return Verdict::Consumed,
        _ => return Verdict::Drop(DropReason::ArpIgnored),
    }
    let asker_mac = arp.source_hardware_addr();
    // Only a unicast asker is answered (found by fuzzing: a request from
    // 00:00:00:00:00:00 or a group address got a reply sent there).
    if !is_station(peer) || !is_station(asker_mac) {
        return Verdict::Drop(DropReason::ArpIgnored);
    }
    let asker_ip = arp.source_protocol_addr();
    arp.set_operation(ArpOperation::Reply);
    arp.set_target_hardware_addr(asker_mac);
    arp.set_target_protocol_addr(asker_ip);
    arp.set_source_hardware_addr(our_mac);
    arp.set_source_protocol_addr(target);
    frame.set_dst_addr(peer);
    frame.set_src_addr(our_mac);
    stats.arp_replies.incr();
    Verdict::Transmit(port as u16)
}

/// The length of the ARP request [`build_arp_request`] writes.
pub const ARP_REQUEST_LEN: usize = ethernet::HEADER_LEN + arp::PACKET_LEN;

/// Writes a broadcast ARP request "who has `target`, tell `ip`" into an
/// empty buffer. False if the buffer has no room.
pub fn build_arp_request<B: PacketBuf>(
    buf: &mut B,
    mac: MacAddr,
    ip: Ipv4Addr,
    target: Ipv4Addr,
) -> bool {
    if !buf.set_len(ARP_REQUEST_LEN) {
        return false;
    }
    let data = buf.data_mut();
    let mut frame = EthernetFrame::new_unchecked(&mut data[..]);
    frame.set_dst_addr(MacAddr::BROADCAST);
    frame.set_src_addr(mac);
    frame.set_ethertype(EtherType::Arp);
    ArpRepr {
        operation: ArpOperation::Request,
        source_hardware_addr: mac,
        source_protocol_addr: ip,
        target_hardware_addr: MacAddr::ZERO,
        target_protocol_addr: target,
    }
    .emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    true
}

pub(super) fn icmp(
    snap: &Snapshot,
    port: usize,
    mut frame: EthernetFrame<&mut [u8]>,
    stats: &WorkerStats,
) -> Verdict {
    let our_mac = snap.ports[port].mac;
    let peer = frame.src_addr();
    if !is_station(peer) {
        return Verdict::Drop(DropReason::IcmpNotHandled);
    }
    // The caller checked the IPv4 header (no options, not a fragment).
    let mut ip = Ipv4Packet::new_unchecked(frame.payload_mut());
    // No answer to an address no host has (our own, a connected network's
    // own or broadcast address), as no flow is made for one (found in
    // audit: an echo from a port network's broadcast address was
    // answered).
    if snap.is_martian_client(ip.src_addr().into()) {
        return Verdict::Drop(DropReason::BadIpHeader);
    }
    let Ok(mut icmp) = Icmpv4Packet::new_checked(ip.payload_mut()) else {
        return Verdict::Drop(DropReason::Truncated);
    };
    if icmp.msg_type() != Icmpv4Type::EchoRequest || icmp.code() != 0 {
        return Verdict::Drop(DropReason::IcmpNotHandled);
    }
    if !icmp.verify_checksum() {
        return Verdict::Drop(DropReason::BadL4Checksum);
    }
    // Recomputed, not updated: an incremental update of an all-zero echo
    // gives 0x0000, which a receiver rejects (the verify above read the
    // whole message anyway).
    icmp.set_msg_type(Icmpv4Type::EchoReply);
    icmp.fill_checksum();

    let src = ip.src_addr();
    let dst = ip.dst_addr();
    ip.set_src_addr(dst);
    ip.set_dst_addr(src);
    ip.set_ttl(DEFAULT_TTL);
    ip.fill_checksum();

    frame.set_dst_addr(peer);
    frame.set_src_addr(our_mac);
    stats.icmp_echo_replies.incr();
    Verdict::Transmit(port as u16)
}

/// What neighbor discovery asks of the worker besides the verdict: a
/// neighbor to learn (IPv6 address, MAC), whether that may replace a
/// different MAC already learned for it (a solicitation's source, or an
/// advertisement with the Override flag: RFC 4861 7.2.3 and 7.2.5), and
/// whether it is an answer (a solicited advertisement; see
/// `Egress::learn6` for what only an answer may do).
pub(super) type Learn6 = Option<(Ipv6Addr, MacAddr, bool, bool)>;

/// A Neighbor Solicitation or Advertisement to us (to one of our addresses
/// or a solicited-node group), the ICMPv6 message at `message..end` of the
/// frame, checked by RFC 4861's rules (`ndp_invalid` otherwise):
/// - a solicitation for a port address or a VIP is answered with an
///   advertisement from that address (Solicited and Override, our MAC);
///   a duplicate address detection probe (from `::`) gets its answer on
///   the all-nodes group, not Solicited, so that the prober sees the
///   conflict and nothing is learned from it;
/// - an advertisement teaches its target's MAC (the caller learns it only
///   for a neighbor on the port's segment, and without the Override flag
///   only when no other MAC is known for it), and is consumed;
/// - anything else about addresses not ours: `ndp_ignored`.
#[allow(clippy::too_many_arguments)]
pub(super) fn ndp<B: PacketBuf>(
    snap: &Snapshot,
    port: usize,
    pkt: &mut B,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    message: usize,
    end: usize,
    stats: &WorkerStats,
) -> (Verdict, Learn6) {
    let our_mac = snap.ports[port].mac;
    let data = pkt.data();
    let peer = EthernetFrame::new_unchecked(data).src_addr();
    let Some(bytes) = data.get(message..end) else {
        return (Verdict::Drop(DropReason::Truncated), None);
    };
    let Ok(msg) = NeighborPacket::new_checked(bytes) else {
        return (Verdict::Drop(DropReason::NdpInvalid), None);
    };
    let target = msg.target_addr();
    // No host sends from a group, `::1` or an IPv4-mapped address (RFC
    // 4291 2.7; Linux drops such packets before NDP sees them); `::` is
    // duplicate address detection. Found in audit: a solicitation from
    // ff02::1 was answered with a Solicited advertisement to ff02::1.
    if !src.is_unspecified() && crate::route::no_host_has6(src) {
        return (Verdict::Drop(DropReason::NdpInvalid), None);
    }
    if msg.msg_type() == Icmpv6Type::NeighborAdvert {
        if ndp::validate_advert(src, dst, hop_limit, &msg).is_err() {
            return (Verdict::Drop(DropReason::NdpInvalid), None);
        }
        // Someone claiming one of our addresses is not believed.
        if snap.is_local6(port, target) {
            return (Verdict::Drop(DropReason::NdpIgnored), None);
        }
        let mac = msg.option_iter().find_map(|o| match o {
            Ok(NdpOption::TargetLinkAddr(m)) if is_station(m) => Some(m),
            _ => None,
        });
        // Without Override (an anycast address's answer, or a forgery
        // that would move a neighbor) it only teaches a MAC not yet known.
        let replaces = msg.flags().contains(NeighborFlags::OVERRIDE);
        // Solicited: an answer (to a request of ours, if one is out).
        let answer = msg.flags().contains(NeighborFlags::SOLICITED);
        return match mac {
            Some(m) => (Verdict::Consumed, Some((target, m, replaces, answer))),
            None => (Verdict::Drop(DropReason::NdpIgnored), None),
        };
    }
    if ndp::validate_solicit(src, dst, hop_limit, &msg).is_err() {
        return (Verdict::Drop(DropReason::NdpInvalid), None);
    }
    if !snap.is_local6(port, target) {
        return (Verdict::Drop(DropReason::NdpIgnored), None);
    }
    let dad = src.is_unspecified();
    let asker_mac = msg.option_iter().find_map(|o| match o {
        Ok(NdpOption::SourceLinkAddr(m)) => Some(m),
        _ => None,
    });
    // Only a station is answered or learned (a group or zero MAC is not).
    if !is_station(peer) || asker_mac.is_some_and(|m| !is_station(m)) {
        return (Verdict::Drop(DropReason::NdpInvalid), None);
    }
    // Not from a sender claiming one of our addresses (as for ARP).
    let learn = match (dad, asker_mac) {
        (false, Some(m)) if !snap.is_martian_client(src.into()) => Some((src, m, true, false)),
        _ => None,
    };
    // Router set in every answer, as Linux sets it when it forwards (RFC
    // 4861 7.2.4): the appliance is the reals' gateway, and its floating
    // gateway6 is announced with it (`build_unsolicited_advert`). Found in
    // audit: answered without it, a real's IsRouter flag for its gateway
    // flipped to false at every solicitation (RFC 4861 7.2.5).
    let (to, to_mac, flags) = if dad {
        (
            ALL_NODES,
            ndp::multicast_mac(ALL_NODES),
            NeighborFlags::ROUTER | NeighborFlags::OVERRIDE,
        )
    } else {
        (
            src,
            asker_mac.unwrap_or(peer),
            NeighborFlags::ROUTER | NeighborFlags::SOLICITED | NeighborFlags::OVERRIDE,
        )
    };
    let na = NdpRepr::NeighborAdvert {
        flags,
        target,
        target_lladdr: Some(our_mac),
    };
    let len = ethernet::HEADER_LEN + ipv6::HEADER_LEN + na.buffer_len();
    if !pkt.set_len(len) {
        return (Verdict::Drop(DropReason::Truncated), learn);
    }
    let b = pkt.data_mut();
    let mut frame = EthernetFrame::new_unchecked(&mut b[..]);
    frame.set_dst_addr(to_mac);
    frame.set_src_addr(our_mac);
    frame.set_ethertype(EtherType::Ipv6);
    let (header, body) = b[ethernet::HEADER_LEN..].split_at_mut(ipv6::HEADER_LEN);
    Ipv6Repr {
        src: target,
        dst: to,
        next_header: IpProtocol::Icmpv6,
        payload_len: na.buffer_len(),
        hop_limit: ndp::HOP_LIMIT,
        traffic_class: 0,
        flow_label: 0,
    }
    .emit(&mut Ipv6Packet::new_unchecked(header));
    na.emit(target, to, &mut NeighborPacket::new_unchecked(body));
    stats.ndp_advertisements.incr();
    (Verdict::Transmit(port as u16), learn)
}

/// ff02::1, the all-nodes group.
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// An ICMPv6 echo request to one of our addresses (the caller checked
/// that), with no extension headers: answered in place from the address
/// asked, back to the Ethernet sender.
pub(super) fn echo6<B: PacketBuf>(
    snap: &Snapshot,
    port: usize,
    pkt: &mut B,
    end: usize,
    stats: &WorkerStats,
) -> Verdict {
    let our_mac = snap.ports[port].mac;
    let Some(b) = pkt.data_mut().get_mut(..end) else {
        return Verdict::Drop(DropReason::Truncated);
    };
    let mut frame = EthernetFrame::new_unchecked(&mut b[..]);
    let peer = frame.src_addr();
    if !is_station(peer) {
        return Verdict::Drop(DropReason::IcmpNotHandled);
    }
    frame.set_dst_addr(peer);
    frame.set_src_addr(our_mac);
    let mut ip = Ipv6Packet::new_unchecked(&mut b[ethernet::HEADER_LEN..]);
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    // As over IPv4: no answer to an address no host has.
    if snap.is_martian_client(src.into()) {
        return Verdict::Drop(DropReason::BadIpHeader);
    }
    let Ok(mut icmp) = Icmpv6Packet::new_checked(ip.payload_mut()) else {
        return Verdict::Drop(DropReason::Truncated);
    };
    if icmp.code() != 0 {
        return Verdict::Drop(DropReason::IcmpNotHandled);
    }
    if !icmp.verify_checksum(src, dst) {
        return Verdict::Drop(DropReason::BadL4Checksum);
    }
    icmp.set_msg_type(Icmpv6Type::EchoReply);
    icmp.fill_checksum(dst, src);
    ip.set_src_addr(dst);
    ip.set_dst_addr(src);
    ip.set_hop_limit(ipv6::DEFAULT_HOP_LIMIT);
    stats.icmp_echo_replies.incr();
    Verdict::Transmit(port as u16)
}

/// The length of the solicitation [`build_neighbor_solicit`] writes.
pub const NEIGHBOR_SOLICIT_LEN: usize = ethernet::HEADER_LEN + ipv6::HEADER_LEN + 32;

/// Writes a Neighbor Solicitation for `target` from `ip` (our address on
/// the port, with MAC `mac`) to the target's solicited-node group into an
/// empty buffer (IPv6's ARP request). False if the buffer has no room.
pub fn build_neighbor_solicit<B: PacketBuf>(
    buf: &mut B,
    mac: MacAddr,
    ip: Ipv6Addr,
    target: Ipv6Addr,
) -> bool {
    let group = ndp::solicited_node(target);
    let ns = NdpRepr::NeighborSolicit {
        target,
        source_lladdr: Some(mac),
    };
    build_ndp(buf, NEIGHBOR_SOLICIT_LEN, mac, ip, group, &ns)
}

/// Writes `msg` from `src` (on a port with MAC `mac`) to the multicast
/// group `dst` into an empty buffer of `len` bytes, hop limit 255 as NDP
/// needs. False if the buffer has no room.
fn build_ndp<B: PacketBuf>(
    buf: &mut B,
    len: usize,
    mac: MacAddr,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    msg: &NdpRepr,
) -> bool {
    if !buf.set_len(len) {
        return false;
    }
    let b = buf.data_mut();
    let mut frame = EthernetFrame::new_unchecked(&mut b[..]);
    frame.set_dst_addr(ndp::multicast_mac(dst));
    frame.set_src_addr(mac);
    frame.set_ethertype(EtherType::Ipv6);
    let (header, body) = b[ethernet::HEADER_LEN..].split_at_mut(ipv6::HEADER_LEN);
    Ipv6Repr {
        src,
        dst,
        next_header: IpProtocol::Icmpv6,
        payload_len: msg.buffer_len(),
        hop_limit: ndp::HOP_LIMIT,
        traffic_class: 0,
        flow_label: 0,
    }
    .emit(&mut Ipv6Packet::new_unchecked(header));
    msg.emit(src, dst, &mut NeighborPacket::new_unchecked(body));
    true
}

/// Writes a gratuitous ARP for `ip` on a port with MAC `mac` (an ARP
/// announcement, RFC 5227: a broadcast request whose sender and target
/// address are both `ip`), which makes the hosts of the segment that
/// already know `ip` point it at `mac`. The active appliance of a pair
/// sends it for the floating gateway when it takes the address.
pub fn build_gratuitous_arp<B: PacketBuf>(buf: &mut B, mac: MacAddr, ip: Ipv4Addr) -> bool {
    build_arp_request(buf, mac, ip, ip)
}

/// The length of the advertisement [`build_unsolicited_advert`] writes.
pub const UNSOLICITED_ADVERT_LEN: usize = ethernet::HEADER_LEN + ipv6::HEADER_LEN + 32;

/// Writes an unsolicited Neighbor Advertisement of `ip` at `mac` to all
/// nodes (RFC 4861 7.2.6: Override set, Solicited clear; Router set: the
/// address is the reals' gateway), IPv6's gratuitous ARP.
pub fn build_unsolicited_advert<B: PacketBuf>(buf: &mut B, mac: MacAddr, ip: Ipv6Addr) -> bool {
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let na = NdpRepr::NeighborAdvert {
        flags: NeighborFlags::ROUTER | NeighborFlags::OVERRIDE,
        target: ip,
        target_lladdr: Some(mac),
    };
    build_ndp(buf, UNSOLICITED_ADVERT_LEN, mac, ip, all_nodes, &na)
}
