//! Egress: where a rewritten packet leaves. The route (connected network,
//! else a gateway) picks the port and next hop, the port's MTU is checked,
//! and the MACs are set from the neighbor cache, or the packet is held
//! while its next hop is being resolved (ARP requests are queued for the
//! worker to send). A packet too big to tunnel is answered with ICMP
//! "fragmentation needed" instead.

use std::net::Ipv4Addr;

use lb_config::MacAddr;

use super::{Ipv4Meta, Verdict};
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

/// ICMP errors a worker makes itself ("fragmentation needed"): at most
/// this many per second, in bursts of up to [`ICMP_BURST`] (as Linux's
/// `icmp_msgs_per_sec`), so that a flood of large DF packets cannot turn
/// the appliance into a reflector.
pub const ICMP_RATE: u32 = 1000;
pub const ICMP_BURST: u32 = 50;

/// A worker's neighbor cache and what it has for the worker to do.
#[derive(Debug)]
pub struct Egress {
    neighbors: NeighborCache,
    /// Neighbors learned since the worker last drained them (to tell the
    /// other workers).
    learned: Vec<(Ipv4Addr, MacAddr)>,
    /// ARP requests to send.
    arp_out: Vec<ArpRequest>,
    /// The ICMP token bucket: tokens left, and when it was last filled
    /// (worker clock, ms).
    icmp_tokens: u32,
    icmp_filled: u32,
}

impl Default for Egress {
    fn default() -> Self {
        Egress {
            neighbors: NeighborCache::new(),
            learned: Vec::with_capacity(OUTBOX),
            arp_out: Vec::with_capacity(OUTBOX),
            icmp_tokens: ICMP_BURST,
            icmp_filled: 0,
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

    /// NAT, before the rewrite: None when the packet (ending at `ip_end`)
    /// fits the MTU of the port towards `to`; else the verdict for it:
    /// "fragmentation needed" from `from` back to its sender when it has DF
    /// set (quoting it as it arrived, which is what its sender can match),
    /// else a `too_big` drop.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub fn nat_too_big<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        stats: &WorkerStats,
        pkt: &mut B,
        ip: &Ipv4Meta,
        to: Ipv4Addr,
        from: Ipv4Addr,
        now: u32,
    ) -> Option<Verdict> {
        if ip.total_len <= snap.min_mtu {
            return None;
        }
        let r = route::lookup(snap, to)?;
        let mtu = snap.ports[r.port].mtu;
        if ip.total_len <= mtu {
            return None;
        }
        if !ip.dont_fragment {
            return Some(Verdict::Drop(DropReason::TooBig));
        }
        Some(self.frag_needed(snap, stats, pkt, ip.src, from, mtu, now))
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
            let v = self.frag_needed(snap, stats, pkt, client, vip, announced, now);
            return (v, false);
        }
        // A route only leaves by a port with an IPv4 address.
        let Some(src) = snap.ports[r.port].ipv4() else {
            return (Verdict::Drop(DropReason::NoRoute), false);
        };
        if !tunnel::encapsulate(pkt, inner, src, real) {
            return (Verdict::Drop(DropReason::NoHeadroom), false);
        }
        (self.link(snap, pkt, r.port, r.next_hop, now), true)
    }

    /// Turns the packet into "fragmentation needed" from `from` to its
    /// `sender`, announcing `mtu`, and routes it back; within the ICMP rate
    /// limit (beyond it the packet is dropped as `too_big` and counted in
    /// `icmp_rate_limited`).
    #[allow(clippy::too_many_arguments)]
    #[cold]
    fn frag_needed<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        stats: &WorkerStats,
        pkt: &mut B,
        sender: Ipv4Addr,
        from: Ipv4Addr,
        mtu: u16,
        now: u32,
    ) -> Verdict {
        if !self.icmp_token(now) {
            stats.icmp_rate_limited.incr();
            return Verdict::Drop(DropReason::TooBig);
        }
        if !icmp::frag_needed(pkt, from, mtu) {
            return Verdict::Drop(DropReason::Truncated);
        }
        stats.icmp_frag_needed.incr();
        let Some(back) = route::lookup(snap, sender) else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        self.link(snap, pkt, back.port, back.next_hop, now)
    }

    /// Takes a token from the ICMP bucket, filling it first for the time
    /// passed.
    fn icmp_token(&mut self, now: u32) -> bool {
        let passed = now.wrapping_sub(self.icmp_filled);
        let earned = u64::from(passed) * u64::from(ICMP_RATE) / 1000;
        if earned > 0 {
            self.icmp_tokens =
                (u64::from(self.icmp_tokens) + earned).min(u64::from(ICMP_BURST)) as u32;
            self.icmp_filled = now;
        }
        if self.icmp_tokens == 0 {
            return false;
        }
        self.icmp_tokens -= 1;
        true
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
                    return Verdict::Hold {
                        port: port as u16,
                        next_hop,
                    };
                }
            },
        };
        forward::set_macs(pkt.data_mut(), mac, src);
        // Port indices are below stats::MAX_PORTS.
        Verdict::Transmit(port as u16)
    }

    fn ask(&mut self, port: usize, target: Ipv4Addr) {
        if self.arp_out.len() < OUTBOX {
            self.arp_out.push(ArpRequest { port, target });
        }
    }
}
