//! What happens to one received frame: check the headers once, then either
//! answer it ourselves (ARP and ICMP echo for our addresses, in `local`) or
//! drop it with a counted reason. Works on any [`PacketBuf`], so the same
//! code runs on mbufs, on pcap replays and in unit tests.
#![deny(unsafe_code)]

mod local;

#[cfg(test)]
mod fixtures;

use crate::buffer::PacketBuf;
use crate::snapshot::Snapshot;
use crate::stats::{DropReason, WorkerStats};
use crate::wire::{self, EtherType, EthernetFrame, IpProtocol, Ipv4Packet};

/// The fate of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send the (rewritten) frame out of this port index.
    Transmit(usize),
    /// Drop it, counting the reason.
    Drop(DropReason),
}

/// Runs one frame received on port index `port` through the pipeline,
/// rewriting it in place when it is to be sent.
#[inline]
pub fn process<B: PacketBuf>(
    snap: &Snapshot,
    port: usize,
    pkt: &mut B,
    stats: &WorkerStats,
) -> Verdict {
    let Some(me) = snap.ports.get(port) else {
        return Verdict::Drop(DropReason::NotForUs);
    };
    let data = pkt.data_mut();
    let Ok(frame) = EthernetFrame::new_checked(&mut data[..]) else {
        return Verdict::Drop(DropReason::Truncated);
    };
    let dst = frame.dst_addr();
    if dst != me.mac && !dst.is_broadcast() && !dst.is_multicast() {
        return Verdict::Drop(DropReason::NotOurMac);
    }
    match frame.ethertype() {
        EtherType::Arp => local::arp(snap, port, frame, stats),
        EtherType::Ipv4 => ipv4(snap, port, frame, stats),
        _ => Verdict::Drop(DropReason::UnsupportedEthertype),
    }
}

fn ipv4(
    snap: &Snapshot,
    port: usize,
    mut frame: EthernetFrame<&mut [u8]>,
    stats: &WorkerStats,
) -> Verdict {
    let ip = match Ipv4Packet::new_checked(frame.payload_mut()) {
        Ok(ip) => ip,
        Err(wire::Error::Truncated) => return Verdict::Drop(DropReason::Truncated),
        Err(wire::Error::Malformed) => return Verdict::Drop(DropReason::BadIpHeader),
    };
    if !ip.verify_checksum() {
        return Verdict::Drop(DropReason::BadIpChecksum);
    }
    if ip.is_fragment() {
        return Verdict::Drop(DropReason::Fragment);
    }
    if ip.header_len() != 20 {
        return Verdict::Drop(DropReason::IpOptions);
    }
    let dst = ip.dst_addr();
    if !snap.is_local(port, dst) {
        return Verdict::Drop(DropReason::NotForUs);
    }
    match ip.protocol() {
        IpProtocol::Icmp => local::icmp(snap, port, frame, stats),
        IpProtocol::Tcp | IpProtocol::Udp => Verdict::Drop(DropReason::NoService),
        _ => Verdict::Drop(DropReason::NotForUs),
    }
}

#[cfg(test)]
mod tests;
