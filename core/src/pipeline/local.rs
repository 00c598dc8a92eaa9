//! Traffic for the appliance itself: ARP requests for a port address or a
//! VIP, ICMP echo requests to them, and the ARP requests we send to resolve
//! next hops. Replies are built in place in the received buffer and sent
//! back out of the port they came in on.

use std::net::Ipv4Addr;

use lb_config::MacAddr;

use super::Verdict;
use crate::buffer::PacketBuf;
use crate::snapshot::Snapshot;
use crate::stats::{DropReason, WorkerStats};
use crate::wire::ipv4::DEFAULT_TTL;
use crate::wire::{arp, ethernet};
use crate::wire::{
    ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetFrame, Icmpv4Packet, Icmpv4Type,
    Ipv4Packet,
};

/// The sender of a well-formed Ethernet/IPv4 ARP packet addressed to one of
/// our addresses, if it is one a neighbor cache may learn (unicast MAC,
/// non-zero address).
pub(super) fn arp_sender(
    snap: &Snapshot,
    port: usize,
    frame: &EthernetFrame<&mut [u8]>,
) -> Option<(Ipv4Addr, MacAddr)> {
    let arp = ArpPacket::new_checked(frame.payload()).ok()?;
    if !arp.is_ethernet_ipv4() {
        return None;
    }
    // Only ARP addressed to one of our addresses teaches us anything: a
    // request or reply between two other hosts is not for us to believe.
    if !snap.is_local(port, arp.target_protocol_addr()) {
        return None;
    }
    let (ip, mac) = (arp.source_protocol_addr(), arp.source_hardware_addr());
    (!ip.is_unspecified() && is_station(mac)).then_some((ip, mac))
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
