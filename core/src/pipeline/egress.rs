//! Egress: where a rewritten packet leaves. The route (connected network,
//! else a gateway) picks the port and next hop, the port's MTU is checked,
//! and the MACs are set from the neighbor cache, or the packet is held
//! while its next hop is being resolved (ARP requests are queued for the
//! worker to send). A packet too big to tunnel is answered with ICMP
//! "fragmentation needed" instead.

use std::net::Ipv4Addr;

use lb_config::MacAddr;

use super::Verdict;
use crate::buffer::PacketBuf;
use crate::forward::{self, icmp, tunnel, IP};
use crate::neighbor::{Lookup, NeighborCache};
use crate::route;
use crate::snapshot::Snapshot;
use crate::stats::{DropReason, WorkerStats};

/// An ARP request the worker is to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRequest {
    pub port: usize,
    pub target: Ipv4Addr,
}

/// How many learned neighbors and ARP requests wait for the worker.
const OUTBOX: usize = 64;

/// A worker's neighbor cache and what it has for the worker to do.
#[derive(Debug)]
pub struct Egress {
    neighbors: NeighborCache,
    /// Neighbors learned since the worker last drained them (to tell the
    /// other workers).
    learned: Vec<(Ipv4Addr, MacAddr)>,
    /// ARP requests to send.
    arp_out: Vec<ArpRequest>,
}

impl Default for Egress {
    fn default() -> Self {
        Egress {
            neighbors: NeighborCache::new(),
            learned: Vec::with_capacity(OUTBOX),
            arp_out: Vec::with_capacity(OUTBOX),
        }
    }
}

impl Egress {
    pub fn take_learned(&mut self) -> impl Iterator<Item = (Ipv4Addr, MacAddr)> + '_ {
        self.learned.drain(..)
    }

    pub fn take_arp_requests(&mut self) -> impl Iterator<Item = ArpRequest> + '_ {
        self.arp_out.drain(..)
    }

    /// Records a neighbor another worker learned.
    pub fn learn_from_peer(&mut self, ip: Ipv4Addr, mac: MacAddr, now: u32) {
        self.neighbors.learn(ip, mac, now);
    }

    /// Learns `ip` at `mac` from ARP seen on `port` (a neighbor on its
    /// segment, not a static entry's address: those win) and queues it for
    /// the other workers.
    pub fn learn(&mut self, snap: &Snapshot, port: usize, ip: Ipv4Addr, mac: MacAddr, now: u32) {
        if snap.ports[port].connected(ip)
            && snap.static_neighbor(ip).is_none()
            && self.neighbors.learn(ip, mac, now)
            && self.learned.len() < OUTBOX
        {
            self.learned.push((ip, mac));
        }
    }

    /// The MAC address to send to `next_hop`, if known now (static entries
    /// first).
    pub fn resolved(&self, snap: &Snapshot, next_hop: Ipv4Addr) -> Option<MacAddr> {
        snap.static_neighbor(next_hop)
            .or_else(|| self.neighbors.get(next_hop))
    }

    /// Routes an (already rewritten) IPv4 packet, ending at `ip_end`, to
    /// `dst`: picks the port and next hop, checks the MTU, sets the MACs.
    #[inline(always)]
    pub fn route<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        pkt: &mut B,
        dst: Ipv4Addr,
        ip_end: usize,
        now: u32,
    ) -> Verdict {
        let Some(r) = route::lookup(snap, dst) else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        if ip_end - IP > usize::from(snap.ports[r.port].mtu) {
            return Verdict::Drop(DropReason::TooBig);
        }
        self.link(snap, pkt, r.port, r.next_hop, now)
    }

    /// DR: the real must be on a connected segment, and the packet (ending
    /// at `ip_end`, sent unchanged) must fit that port's MTU.
    #[inline(always)]
    pub fn direct<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        pkt: &mut B,
        real: Ipv4Addr,
        ip_end: usize,
        now: u32,
    ) -> Verdict {
        match route::lookup(snap, real) {
            Some(r) if r.connected => {
                if ip_end - IP > usize::from(snap.ports[r.port].mtu) {
                    return Verdict::Drop(DropReason::TooBig);
                }
                self.link(snap, pkt, r.port, real, now)
            }
            _ => Verdict::Drop(DropReason::NoRoute),
        }
    }

    /// TUN: wraps the packet (from `client` to `vip`, ending at `ip_end`,
    /// DF set or not) for `real`, or answers "fragmentation needed" when
    /// the wrapped packet would not fit the out-port's MTU. The flag says
    /// whether the packet went on towards the real (false: answered or
    /// dropped), so that only those count as the real's traffic.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn tunnel<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        stats: &WorkerStats,
        pkt: &mut B,
        real: Ipv4Addr,
        client: Ipv4Addr,
        vip: Ipv4Addr,
        dont_fragment: bool,
        ip_end: usize,
        now: u32,
    ) -> (Verdict, bool) {
        let Some(r) = route::lookup(snap, real) else {
            return (Verdict::Drop(DropReason::NoRoute), false);
        };
        let mtu = usize::from(snap.ports[r.port].mtu);
        let inner = ip_end - IP;
        if inner + tunnel::OVERHEAD > mtu {
            if !dont_fragment {
                return (Verdict::Drop(DropReason::TooBig), false);
            }
            let announced = u16::try_from(mtu - tunnel::OVERHEAD).unwrap_or(u16::MAX);
            if !icmp::frag_needed(pkt, vip, announced) {
                return (Verdict::Drop(DropReason::Truncated), false);
            }
            stats.icmp_frag_needed.incr();
            let Some(back) = route::lookup(snap, client) else {
                return (Verdict::Drop(DropReason::NoRoute), false);
            };
            return (self.link(snap, pkt, back.port, back.next_hop, now), false);
        }
        let src = snap.ports[r.port].address.address;
        if !tunnel::encapsulate(pkt, inner, src, real) {
            return (Verdict::Drop(DropReason::NoHeadroom), false);
        }
        (self.link(snap, pkt, r.port, r.next_hop, now), true)
    }

    /// Sets the MACs for `next_hop` on `port`, or holds the packet and asks
    /// for them.
    #[inline(always)]
    pub fn link<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        pkt: &mut B,
        port: usize,
        next_hop: Ipv4Addr,
        now: u32,
    ) -> Verdict {
        let src = snap.ports[port].mac;
        let mac = match snap.static_neighbor(next_hop) {
            Some(m) => m,
            None => match self.neighbors.lookup(next_hop, now) {
                Lookup::Found(m) => m,
                Lookup::Refresh(m) => {
                    self.ask(port, next_hop);
                    m
                }
                Lookup::Missing { ask } => {
                    if ask {
                        self.ask(port, next_hop);
                    }
                    forward::set_macs(pkt.data_mut(), MacAddr::ZERO, src);
                    return Verdict::Hold { port, next_hop };
                }
            },
        };
        forward::set_macs(pkt.data_mut(), mac, src);
        Verdict::Transmit(port)
    }

    fn ask(&mut self, port: usize, target: Ipv4Addr) {
        if self.arp_out.len() < OUTBOX {
            self.arp_out.push(ArpRequest { port, target });
        }
    }
}
