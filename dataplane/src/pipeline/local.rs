//! Traffic for the appliance itself: ARP requests for a port address or a
//! VIP, and ICMP echo requests to them. Replies are built in place in the
//! received buffer and sent back out of the port they came in on.
#![deny(unsafe_code)]

use super::Verdict;
use crate::snapshot::Snapshot;
use crate::stats::{DropReason, WorkerStats};
use crate::wire::checksum;
use crate::wire::{ArpOperation, ArpPacket, EthernetFrame, Icmpv4Packet, Icmpv4Type, Ipv4Packet};

/// The TTL of packets we originate, as Linux uses.
pub const DEFAULT_TTL: u8 = 64;

pub(super) fn arp(
    snap: &Snapshot,
    port: usize,
    mut frame: EthernetFrame<&mut [u8]>,
    stats: &WorkerStats,
) -> Verdict {
    let our_mac = snap.ports[port].mac;
    let Ok(mut arp) = ArpPacket::new_checked(frame.payload_mut()) else {
        return Verdict::Drop(DropReason::Truncated);
    };
    if !arp.is_ethernet_ipv4() {
        return Verdict::Drop(DropReason::ArpIgnored);
    }
    let target = arp.target_protocol_addr();
    if arp.operation() != ArpOperation::Request || !snap.is_local(port, target) {
        return Verdict::Drop(DropReason::ArpIgnored);
    }
    let asker_mac = arp.source_hardware_addr();
    let asker_ip = arp.source_protocol_addr();
    arp.set_operation(ArpOperation::Reply);
    arp.set_target_hardware_addr(asker_mac);
    arp.set_target_protocol_addr(asker_ip);
    arp.set_source_hardware_addr(our_mac);
    arp.set_source_protocol_addr(target);
    let dst = frame.src_addr();
    frame.set_dst_addr(dst);
    frame.set_src_addr(our_mac);
    stats.arp_replies.incr();
    Verdict::Transmit(port)
}

pub(super) fn icmp(
    snap: &Snapshot,
    port: usize,
    mut frame: EthernetFrame<&mut [u8]>,
    stats: &WorkerStats,
) -> Verdict {
    let our_mac = snap.ports[port].mac;
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
    // Type 8 -> 0 in the first 16-bit word (type, code): RFC 1624 update.
    let old_word = u16::from(u8::from(Icmpv4Type::EchoRequest)) << 8;
    let new_word = u16::from(u8::from(Icmpv4Type::EchoReply)) << 8;
    icmp.set_msg_type(Icmpv4Type::EchoReply);
    let c = icmp.checksum();
    icmp.set_checksum(checksum::update16(c, old_word, new_word));

    let src = ip.src_addr();
    let dst = ip.dst_addr();
    ip.set_src_addr(dst);
    ip.set_dst_addr(src);
    let old_ttl_word = u16::from(ip.ttl()) << 8 | u16::from(u8::from(ip.protocol()));
    ip.set_ttl(DEFAULT_TTL);
    let new_ttl_word = u16::from(DEFAULT_TTL) << 8 | u16::from(u8::from(ip.protocol()));
    let c = ip.checksum();
    ip.set_checksum(checksum::update16(c, old_ttl_word, new_ttl_word));

    let peer = frame.src_addr();
    frame.set_dst_addr(peer);
    frame.set_src_addr(our_mac);
    stats.icmp_echo_replies.incr();
    Verdict::Transmit(port)
}
