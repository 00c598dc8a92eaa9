//! Egress: where a rewritten packet leaves. The route (connected network,
//! else a gateway) picks the port and next hop, the port's MTU is checked,
//! and the MACs are set from the neighbor cache, or the packet is held
//! while its next hop is being resolved (ARP requests are queued for the
//! worker to send). A packet too big to tunnel is answered with ICMP
//! "fragmentation needed" instead.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use lb_config::{MacAddr, IPV6_MIN_MTU};

use super::{Ipv4Meta, Verdict};
use crate::buffer::PacketBuf;
use crate::forward::{self, icmp, icmpv6, tunnel, IP};
use crate::neighbor::{Lookup, NeighborCache};
use crate::route;
use crate::snapshot::{RealRoute, Snapshot};
use crate::stats::{Counter, DropReason, WorkerStats};

/// An ARP request the worker is to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRequest {
    pub port: usize,
    pub target: Ipv4Addr,
}

/// A neighbor solicitation the worker is to send (IPv6's ARP request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NdpRequest {
    pub port: usize,
    pub target: Ipv6Addr,
}

/// How many learned neighbors and ARP requests wait for the worker.
const OUTBOX: usize = 64;

/// ICMP errors a worker makes itself ("fragmentation needed", "packet
/// too big") to one destination (an IPv4 address, or an IPv6 address's
/// /64, the least a network gives one host): at most this many per
/// second, in bursts of up to [`ICMP_BURST`], so that a flood of large DF
/// packets with a victim's source address cannot turn the appliance into
/// a reflector (each answer is smaller than what it answers: no
/// amplification). There is no budget shared by all destinations: one
/// sender of large DF packets, or a handful, kept every other sender of
/// the worker from hearing theirs, a path-MTU black hole (found in audit,
/// then in review of a per-destination share in front of a shared budget;
/// Linux does not limit these two messages at all). Destinations share
/// [`ICMP_SOURCES`] buckets by a keyed hash, so which share one cannot be
/// worked out from outside.
pub const ICMP_RATE: u32 = 100;
pub const ICMP_BURST: u32 = 10;
const ICMP_SOURCES: usize = 1024;

/// A token bucket (worker clock, ms).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u32,
    filled: u32,
}

impl Bucket {
    const fn full(burst: u32) -> Bucket {
        Bucket {
            tokens: burst,
            filled: 0,
        }
    }

    /// Fills the bucket for the time passed since it was last filled,
    /// keeping the time a part of a token took (at 100 a second, a token
    /// every 10 ms: moving the stamp to `now` lost up to 9 ms a token).
    fn fill(&mut self, now: u32, rate: u32, burst: u32) {
        let passed = now.wrapping_sub(self.filled);
        let earned = u64::from(passed) * u64::from(rate) / 1000;
        if earned > 0 {
            let total = u64::from(self.tokens) + earned;
            self.tokens = total.min(u64::from(burst)) as u32;
            self.filled = if total >= u64::from(burst) {
                now
            } else {
                self.filled
                    .wrapping_add((earned * 1000 / u64::from(rate)) as u32)
            };
        }
    }
}

/// A worker's neighbor cache and what it has for the worker to do.
#[derive(Debug)]
pub struct Egress {
    neighbors: NeighborCache,
    /// Neighbors learned since the worker last drained them (to tell the
    /// other workers).
    learned: Vec<(Ipv4Addr, MacAddr)>,
    /// ARP requests to send.
    arp_out: Vec<ArpRequest>,
    /// The same three for IPv6 (neighbor discovery).
    neighbors6: NeighborCache<Ipv6Addr>,
    learned6: Vec<(Ipv6Addr, MacAddr)>,
    ndp_out: Vec<NdpRequest>,
    /// The next hops of the IPv6 packets held since the pipeline call
    /// began (`Verdict::Hold6` holds an index here: an IPv6 address does
    /// not fit an eight-byte verdict).
    held6: Vec<Ipv6Addr>,
    /// The ICMP token buckets of destinations, and the key of their hash.
    icmp_sources: Box<[Bucket]>,
    icmp_key: u64,
}

impl Default for Egress {
    fn default() -> Self {
        Egress {
            neighbors: NeighborCache::new(),
            learned: Vec::with_capacity(OUTBOX),
            arp_out: Vec::with_capacity(OUTBOX),
            neighbors6: NeighborCache::new(),
            learned6: Vec::with_capacity(OUTBOX),
            ndp_out: Vec::with_capacity(OUTBOX),
            held6: Vec::with_capacity(HELD6),
            icmp_sources: vec![Bucket::full(ICMP_BURST); ICMP_SOURCES].into_boxed_slice(),
            icmp_key: crate::random::secret_u64(),
        }
    }
}

/// The most IPv6 packets one pipeline call may hold (a burst's worth).
pub const HELD6: usize = 1024;

impl Egress {
    pub fn take_learned6(&mut self) -> impl Iterator<Item = (Ipv6Addr, MacAddr)> + '_ {
        self.learned6.drain(..)
    }

    pub fn take_ndp_requests(&mut self) -> impl Iterator<Item = NdpRequest> + '_ {
        self.ndp_out.drain(..)
    }

    /// Forgets the next hops of held IPv6 packets (a pipeline call begins:
    /// the worker has read those of the last one).
    #[inline(always)]
    pub fn begin(&mut self) {
        if !self.held6.is_empty() {
            self.held6.clear();
        }
    }

    /// ARP requests and neighbor solicitations the budgets did not let go,
    /// so far (see [`NeighborCache::requests_refused`]).
    pub fn neighbor_requests_refused(&self) -> [u64; 2] {
        [
            self.neighbors.requests_refused(),
            self.neighbors6.requests_refused(),
        ]
    }

    /// The next hop of the IPv6 packet held as `index` in this call.
    pub fn held_next_hop6(&self, index: u16) -> Option<Ipv6Addr> {
        self.held6.get(usize::from(index)).copied()
    }

    /// Records a neighbor another worker learned (IPv6), as
    /// [`Self::learn_from_peer`].
    pub fn learn_from_peer6(&mut self, snap: &Snapshot, ip: Ipv6Addr, mac: MacAddr, now: u32) {
        if let Some(ask) = self.neighbors6.unbelieved(ip, mac, true, now) {
            let port = snap
                .ports
                .iter()
                .position(|p| p.connected6(ip) || p.gateway6 == Some(ip));
            if let (true, Some(port)) = (ask, port) {
                self.solicit(port, ip);
            }
            return;
        }
        self.neighbors6
            .learn_keeping(ip, mac, now, |a| snap.is_configured_next_hop(a.into()));
    }

    /// Learns `ip` at `mac` from neighbor discovery on `port`: a neighbor
    /// on its segment (or its link-local gateway), not a static entry,
    /// never at one of our own ports' MACs. A resolved neighbor moves to
    /// another MAC only by an `answer` (a solicited advertisement) to a
    /// request of ours, and then, unless `replaces` (Override set), only
    /// when it was not confirmed within the last refresh interval (RFC
    /// 4861 7.2.5: a proxy or anycast neighbor that moved answers without
    /// Override). A solicitation or an unsolicited advertisement that says
    /// it moved has it asked about again instead, as for ARP
    /// ([`Self::learn`]; RFC 4861 would take either, and so would any
    /// host on the segment that sends one). What is learned without
    /// `replaces` is told to the other workers only when it answers a
    /// request of ours (found in audit: a neighbor whose answers lack
    /// Override was known only to the worker its answers reach, and every
    /// other worker held its packets to it until they were dropped); the
    /// others move a MAC they know on it only if they asked lately
    /// ([`Self::learn_from_peer6`]).
    ///
    /// False when the claim contradicts what is known here (a static
    /// neighbor, our own MAC, a resolved neighbor it does not move): then
    /// nobody else is to hear it either, the port's kernel interface
    /// included (found in audit: an advertisement the dataplane doubted
    /// still went to the kernel, whose neighbor cache took it).
    #[allow(clippy::too_many_arguments)]
    pub fn learn6(
        &mut self,
        snap: &Snapshot,
        port: usize,
        ip: Ipv6Addr,
        mac: MacAddr,
        replaces: bool,
        answer: bool,
        now: u32,
    ) -> bool {
        let p = &snap.ports[port];
        let fixed = snap.static_neighbor6(ip);
        if overruled(snap, fixed, mac) {
            return false;
        }
        if !(p.connected6(ip) || p.gateway6 == Some(ip)) || fixed.is_some() {
            return true;
        }
        // Asked before it is learned: learning resets the request's time.
        let tell = replaces || (answer && self.neighbors6.asked_lately(ip, now));
        let answer = answer && (replaces || self.neighbors6.is_stale(ip, now));
        if let Some(ask) = self.neighbors6.unbelieved(ip, mac, answer, now) {
            if ask {
                self.solicit(port, ip);
            }
            return false;
        }
        let keep = |a: Ipv6Addr| snap.is_configured_next_hop(a.into());
        if self.neighbors6.learn_keeping(ip, mac, now, keep) && tell && self.learned6.len() < OUTBOX
        {
            self.learned6.push((ip, mac));
            self.neighbors6.told(ip, now);
        }
        true
    }

    /// Whether a frame that says `ip` is at `mac` (a solicitation's source
    /// link-layer address, which we do not learn from when it asks for
    /// another's address) contradicts what is known here; a resolved
    /// neighbor it contradicts is asked about again. Such a frame is not
    /// given to the port's kernel interface either, whose cache would take
    /// it (found in audit).
    pub fn contradicted6(
        &mut self,
        snap: &Snapshot,
        port: usize,
        ip: Ipv6Addr,
        mac: MacAddr,
        now: u32,
    ) -> bool {
        if overruled(snap, snap.static_neighbor6(ip), mac) {
            return true;
        }
        match self.neighbors6.unbelieved(ip, mac, false, now) {
            Some(ask) => {
                if ask {
                    self.solicit(port, ip);
                }
                true
            }
            None => false,
        }
    }

    /// Whether a frame from `src`, sent by `mac` and received on
    /// `in_port`, came from where the appliance sends to `src`: that
    /// route's port, and on a connected network its own MAC as known now.
    /// What a stranger elsewhere cannot forge, whatever addresses it
    /// writes. A next hop not known (yet, or any more) is asked for, as a
    /// packet to it would ask (found in review: after a failover the new
    /// active's cache was empty, and a real streaming to a silent client
    /// was never believed).
    pub fn came_from_next_hop6(
        &mut self,
        snap: &Snapshot,
        in_port: usize,
        src: Ipv6Addr,
        mac: MacAddr,
        now: u32,
    ) -> bool {
        let Some(r) = route::lookup6(snap, src).filter(|r| r.port == in_port) else {
            return false;
        };
        // Behind a gateway only the port can be checked: a router's
        // frames may come from another MAC than its neighbor answer gives
        // (HSRP forwards from its own), and where the internet comes
        // through the same router nothing tells the two apart anyway.
        if !r.connected {
            return true;
        }
        self.neighbor6(snap, r.port, r.next_hop, now) == Some(mac)
    }

    /// The MAC of the IPv6 `next_hop` on `port` (static entries first),
    /// soliciting it when it is unknown or due a refresh, as sending to it
    /// does.
    #[inline(always)]
    fn neighbor6(
        &mut self,
        snap: &Snapshot,
        port: usize,
        next_hop: Ipv6Addr,
        now: u32,
    ) -> Option<MacAddr> {
        if let Some(m) = snap.static_neighbor6(next_hop) {
            return Some(m);
        }
        self.learned6(port, next_hop, now, || {
            snap.is_configured_next_hop(IpAddr::V6(next_hop))
        })
    }

    /// [`Self::learned`] for IPv6 (solicited when missing or due a
    /// refresh).
    #[inline(always)]
    fn learned6(
        &mut self,
        port: usize,
        next_hop: Ipv6Addr,
        now: u32,
        configured: impl Fn() -> bool,
    ) -> Option<MacAddr> {
        match self.neighbors6.lookup_for(next_hop, now, configured) {
            Lookup::Found(m) => Some(m),
            Lookup::Refresh(m) => {
                self.solicit(port, next_hop);
                Some(m)
            }
            Lookup::Missing { ask } => {
                if ask {
                    self.solicit(port, next_hop);
                }
                None
            }
        }
    }

    /// [`Self::resolved`] for IPv6.
    pub fn resolved6(&self, snap: &Snapshot, next_hop: Ipv6Addr) -> Option<MacAddr> {
        snap.static_neighbor6(next_hop)
            .or_else(|| self.neighbors6.get(next_hop))
    }

    /// Routes an (already rewritten) IPv6 packet, ending at `ip_end`, to
    /// `dst`: picks the port and next hop, checks the MTU, sets the MACs.
    #[inline]
    pub fn route6<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        pkt: &mut B,
        dst: Ipv6Addr,
        ip_end: usize,
        now: u32,
    ) -> Verdict {
        if let Some(port) = route::connected6_in(&snap.ports, dst) {
            if over_mtu(snap, port, ip_end) {
                return Verdict::Drop(DropReason::TooBig);
            }
            return self.link6(snap, pkt, port, dst, now);
        }
        // Through the gateway, whose route and static neighbor the
        // snapshot worked out (replies to clients, mostly).
        let Some(r) = snap.default_route6() else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        self.send_by6(snap, pkt, r, ip_end, now)
    }

    /// [`Self::route6`] to the real `id` at `real`, as
    /// [`Self::route_to_real`].
    #[inline(always)]
    pub fn route6_to_real<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        pkt: &mut B,
        id: u32,
        real: Ipv6Addr,
        ip_end: usize,
        now: u32,
    ) -> Verdict {
        let Some(r) = snap.real_route6(id, real) else {
            return self.route6(snap, pkt, real, ip_end, now);
        };
        self.send_by6(snap, pkt, r, ip_end, now)
    }

    /// [`Self::direct6`] to the real `id` at `real`, as
    /// [`Self::route_to_real`].
    #[inline(always)]
    pub fn direct6_to_real<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        pkt: &mut B,
        id: u32,
        real: Ipv6Addr,
        ip_end: usize,
        now: u32,
    ) -> Verdict {
        match snap.real_route6(id, real) {
            None => self.direct6(snap, pkt, real, ip_end, now),
            Some(r) if !r.connected => Verdict::Drop(DropReason::NoRoute),
            Some(r) => self.send_by6(snap, pkt, r, ip_end, now),
        }
    }

    /// [`Self::send_by`] for IPv6.
    #[inline(always)]
    fn send_by6<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        pkt: &mut B,
        r: &RealRoute<Ipv6Addr>,
        ip_end: usize,
        now: u32,
    ) -> Verdict {
        if over_mtu(snap, usize::from(r.port), ip_end) {
            return Verdict::Drop(DropReason::TooBig);
        }
        self.real_link6(pkt, r, now)
    }

    /// [`Self::link6`] by a real's [`RealRoute`].
    #[inline(always)]
    fn real_link6<B: PacketBuf>(
        &mut self,
        pkt: &mut B,
        r: &RealRoute<Ipv6Addr>,
        now: u32,
    ) -> Verdict {
        // A static neighbor: both MACs in one copy.
        if let Some(both) = r.link() {
            forward::set_addrs(pkt.data_mut(), both);
            return Verdict::Transmit(r.port);
        }
        let port = usize::from(r.port);
        // A real's next hop: the config's.
        let mac = self.learned6(port, r.next_hop, now, || true);
        self.set_link6(pkt, port, r.src_mac, r.next_hop, mac)
    }

    /// DR for IPv6: the real must be on a connected segment.
    #[inline]
    pub fn direct6<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        pkt: &mut B,
        real: Ipv6Addr,
        ip_end: usize,
        now: u32,
    ) -> Verdict {
        match route::lookup6(snap, real) {
            Some(r) if r.connected => {
                if over_mtu(snap, r.port, ip_end) {
                    return Verdict::Drop(DropReason::TooBig);
                }
                self.link6(snap, pkt, r.port, real, now)
            }
            _ => Verdict::Drop(DropReason::NoRoute),
        }
    }

    /// Before an IPv6 packet (`packet_len` bytes, from `sender`) goes on
    /// towards `to` with `overhead` bytes added: None when it fits the
    /// out-port's MTU; else "packet too big" from `from` back to the
    /// sender, announcing the MTU less the overhead (rate-limited), which
    /// is the verdict. IPv6 is never fragmented on the way.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn too_big6<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        stats: &WorkerStats,
        pkt: &mut B,
        packet_len: usize,
        to: Ipv6Addr,
        from: Ipv6Addr,
        overhead: usize,
        now: u32,
    ) -> Option<Verdict> {
        if packet_len + overhead <= usize::from(snap.min_mtu) {
            return None;
        }
        let r = route::lookup6(snap, to)?;
        let mtu = usize::from(snap.ports[r.port].mtu);
        if packet_len + overhead <= mtu {
            return None;
        }
        let announced = u32::try_from(mtu.saturating_sub(overhead)).unwrap_or(u32::MAX);
        if announced < u32::from(IPV6_MIN_MTU) {
            // No host takes a "packet too big" below the IPv6 minimum (RFC
            // 8201 §4); only a device that kept an MTU smaller than the
            // config's (which validation holds to 1,280, or 1,320 before
            // 6in6) gets here. Found in review.
            return Some(Verdict::Drop(DropReason::TooBig));
        }
        Some(self.packet_too_big(snap, stats, pkt, packet_len, from, announced, now))
    }

    /// Turns the packet into "packet too big" from `from`, announcing
    /// `mtu`, and routes it back to the packet's sender; within the ICMP
    /// rate limit (beyond it the packet is dropped as `too_big`, counted in
    /// `icmp_rate_limited`).
    #[allow(clippy::too_many_arguments)]
    #[cold]
    fn packet_too_big<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        stats: &WorkerStats,
        pkt: &mut B,
        packet_len: usize,
        from: Ipv6Addr,
        mtu: u32,
        now: u32,
    ) -> Verdict {
        let made = &stats.icmp_frag_needed;
        self.packet_too_big_as(snap, stats, pkt, (packet_len, from), mtu, now, made)
    }

    /// [`Self::packet_too_big`], counted in `counter` (as
    /// [`Self::frag_needed_as`]).
    #[allow(clippy::too_many_arguments)]
    #[cold]
    pub(super) fn packet_too_big_as<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        stats: &WorkerStats,
        pkt: &mut B,
        (packet_len, from): (usize, Ipv6Addr),
        mtu: u32,
        now: u32,
        counter: &Counter,
    ) -> Verdict {
        let Some(source) = pkt
            .data()
            .get(IP..)
            .and_then(|h| crate::wire::ipv6::Ipv6Packet::new_checked_header(h).ok())
            .map(|ip| ip.src_addr())
        else {
            return Verdict::Drop(DropReason::Truncated);
        };
        // Per /64.
        let source = ((u128::from(source) >> 64) as u64) ^ (1 << 63);
        if !self.icmp_token(source, now) {
            stats.icmp_rate_limited.incr();
            return Verdict::Drop(DropReason::TooBig);
        }
        if !icmpv6::packet_too_big(pkt, packet_len, from, mtu) {
            return Verdict::Drop(DropReason::Truncated);
        }
        let sender = crate::wire::ipv6::Ipv6Packet::new_unchecked(&pkt.data()[IP..]).dst_addr();
        let Some(back) = route::lookup6(snap, sender) else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        let v = self.link6(snap, pkt, back.port, back.next_hop, now);
        if matches!(v, Verdict::Transmit(_) | Verdict::Hold6 { .. }) {
            counter.incr();
        }
        v
    }

    /// TUN over IPv6: wraps the packet (IPv6 when `inner_v6`, else IPv4;
    /// `inner_len` bytes) for the IPv6 `real`, from the out-port's IPv6
    /// address. The caller checked the size (`too_big6`, or for 4in6 the
    /// IPv4 "fragmentation needed").
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn tunnel6<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        pkt: &mut B,
        (id, real): (u32, Ipv6Addr),
        inner_len: usize,
        inner_v6: bool,
        flow_label: u32,
        now: u32,
    ) -> (Verdict, bool) {
        let known = snap.real_route6(id, real);
        let Some(r) = known
            .map(|r| route::Route6 {
                port: usize::from(r.port),
                next_hop: r.next_hop,
                connected: r.connected,
            })
            .or_else(|| route::lookup6(snap, real))
        else {
            return (Verdict::Drop(DropReason::NoRoute), false);
        };
        let Some(src) = snap.ports[r.port].ipv6() else {
            return (Verdict::Drop(DropReason::NoRoute), false);
        };
        if inner_len + tunnel::OVERHEAD6 > usize::from(snap.ports[r.port].mtu) {
            return (Verdict::Drop(DropReason::TooBig), false);
        }
        if !tunnel::encapsulate6(pkt, inner_len, inner_v6, src, real, flow_label) {
            return (Verdict::Drop(DropReason::NoHeadroom), false);
        }
        match known {
            Some(k) => (self.real_link6(pkt, k, now), true),
            None => (self.link6(snap, pkt, r.port, r.next_hop, now), true),
        }
    }

    /// 4in6, before wrapping an IPv4 packet (ending at `ip_end`, from
    /// `client` to `vip`, DF or not) for the IPv6 `real`: None when it fits;
    /// else "fragmentation needed" announcing the out-port's MTU less the
    /// IPv6 header (DF), or a `too_big` drop.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn too_big_4in6<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        stats: &WorkerStats,
        pkt: &mut B,
        real: Ipv6Addr,
        ip: &Ipv4Meta,
        now: u32,
    ) -> Option<Verdict> {
        let r = route::lookup6(snap, real)?;
        let mtu = usize::from(snap.ports[r.port].mtu);
        if usize::from(ip.total_len) + tunnel::OVERHEAD6 <= mtu {
            return None;
        }
        if !ip.dont_fragment {
            return Some(Verdict::Drop(DropReason::TooBig));
        }
        let announced = u16::try_from(mtu - tunnel::OVERHEAD6).unwrap_or(u16::MAX);
        Some(self.frag_needed(snap, stats, pkt, ip.src, ip.dst, announced, now))
    }

    /// Sets the MACs for the IPv6 `next_hop` on `port`, or holds the packet
    /// and solicits the neighbor.
    #[inline]
    pub fn link6<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        pkt: &mut B,
        port: usize,
        next_hop: Ipv6Addr,
        now: u32,
    ) -> Verdict {
        let src = snap.ports[port].mac;
        let mac = self.neighbor6(snap, port, next_hop, now);
        self.set_link6(pkt, port, src, next_hop, mac)
    }

    /// Sets the frame's MACs for `next_hop` on `port` (from `src`), or
    /// holds it while `mac` is unknown.
    #[inline(always)]
    fn set_link6<B: PacketBuf>(
        &mut self,
        pkt: &mut B,
        port: usize,
        src: MacAddr,
        next_hop: Ipv6Addr,
        mac: Option<MacAddr>,
    ) -> Verdict {
        let Some(mac) = mac else {
            forward::set_macs(pkt.data_mut(), MacAddr::ZERO, src);
            if self.held6.len() >= HELD6 {
                return Verdict::Drop(DropReason::NeighborUnresolved);
            }
            self.held6.push(next_hop);
            return Verdict::Hold6 {
                port: port as u16,
                index: (self.held6.len() - 1) as u16,
            };
        };
        forward::set_macs(pkt.data_mut(), mac, src);
        Verdict::Transmit(port as u16)
    }

    fn solicit(&mut self, port: usize, target: Ipv6Addr) {
        if self.ndp_out.len() < OUTBOX {
            self.ndp_out.push(NdpRequest { port, target });
        }
    }

    pub fn take_learned(&mut self) -> impl Iterator<Item = (Ipv4Addr, MacAddr)> + '_ {
        self.learned.drain(..)
    }

    /// Whether a neighbor of either family was learned since the last
    /// `take_learned`.
    #[inline]
    pub fn has_learned(&self) -> bool {
        !self.learned.is_empty() || !self.learned6.is_empty()
    }

    pub fn take_arp_requests(&mut self) -> impl Iterator<Item = ArpRequest> + '_ {
        self.arp_out.drain(..)
    }

    /// Records a neighbor another worker learned. What it heard may be a
    /// frame nobody asked for (the worker that takes a port's ARP tells
    /// what it learns into a free slot, or could not keep, found in
    /// review: one ARP request to it moved a resolved real in every other
    /// worker): a resolved neighbor here moves only when this worker asked
    /// lately (the news is then the answer, taken by the worker its queue
    /// is on); otherwise it is asked about, as a claim to this worker would
    /// be ([`Self::learn`]).
    pub fn learn_from_peer(&mut self, snap: &Snapshot, ip: Ipv4Addr, mac: MacAddr, now: u32) {
        if let Some(ask) = self.neighbors.unbelieved(ip, mac, true, now) {
            if let (true, Some(port)) = (ask, route::connected_in(&snap.ports, ip)) {
                self.ask(port, ip);
            }
            return;
        }
        self.neighbors
            .learn_keeping(ip, mac, now, |a| snap.is_configured_next_hop(a.into()));
    }

    /// Learns `ip` at `mac` from ARP seen on `port` (a neighbor on its
    /// segment, not a static entry's address: those win) and queues it for
    /// the other workers. A resolved neighbor moves to another MAC only
    /// by an `answer` (an ARP reply) to a request of ours; anything else
    /// that says it moved (a request, a reply nobody asked for) has it
    /// asked about again instead ([`NeighborCache::unbelieved`]: found in
    /// audit, any host on the segment moved the gateway with one ARP
    /// request to us). Never at one of our own ports' MACs (found in
    /// audit: a real learned at ours looped DR frames). False, as
    /// [`Self::learn6`], when the claim contradicts what is known here.
    pub fn learn(
        &mut self,
        snap: &Snapshot,
        port: usize,
        ip: Ipv4Addr,
        mac: MacAddr,
        answer: bool,
        now: u32,
    ) -> bool {
        let fixed = snap.static_neighbor(ip);
        if overruled(snap, fixed, mac) {
            return false;
        }
        if !snap.ports[port].connected(ip) || fixed.is_some() {
            return true;
        }
        if let Some(ask) = self.neighbors.unbelieved(ip, mac, answer, now) {
            if ask {
                self.ask(port, ip);
            }
            return false;
        }
        if self
            .neighbors
            .learn_keeping(ip, mac, now, |a| snap.is_configured_next_hop(a.into()))
            && self.learned.len() < OUTBOX
        {
            self.learned.push((ip, mac));
            self.neighbors.told(ip, now);
        }
        true
    }

    /// A frame on `port` says that `ip` is at `mac` without being addressed
    /// to us (a gratuitous ARP: a host announcing a new MAC, as a VRRP
    /// gateway without a virtual MAC does when it takes over). Nothing is
    /// learned from it; a resolved neighbor it contradicts is asked about
    /// again at once ([`NeighborCache::unbelieved`]), so that a real move is
    /// followed within a round trip, not at the next refresh.
    pub fn announced(
        &mut self,
        snap: &Snapshot,
        port: usize,
        ip: Ipv4Addr,
        mac: MacAddr,
        now: u32,
    ) {
        if snap.ports[port].connected(ip)
            && snap.static_neighbor(ip).is_none()
            && self.neighbors.unbelieved(ip, mac, false, now) == Some(true)
        {
            self.ask(port, ip);
        }
    }

    /// [`Self::came_from_next_hop6`] for IPv4.
    pub fn came_from_next_hop(
        &mut self,
        snap: &Snapshot,
        in_port: usize,
        src: Ipv4Addr,
        mac: MacAddr,
        now: u32,
    ) -> bool {
        let Some(r) = route::lookup(snap, src).filter(|r| r.port == in_port) else {
            return false;
        };
        if !r.connected {
            return true;
        }
        self.neighbor(snap, r.port, r.next_hop, now) == Some(mac)
    }

    /// [`Self::neighbor6`] for IPv4 (ARP).
    #[inline(always)]
    fn neighbor(
        &mut self,
        snap: &Snapshot,
        port: usize,
        next_hop: Ipv4Addr,
        now: u32,
    ) -> Option<MacAddr> {
        if let Some(m) = snap.static_neighbor(next_hop) {
            return Some(m);
        }
        self.learned(port, next_hop, now, || {
            snap.is_configured_next_hop(IpAddr::V4(next_hop))
        })
    }

    /// The learned neighbor `next_hop` on `port` (asked for when missing or
    /// due a refresh): for a next hop with no static entry.
    #[inline(always)]
    fn learned(
        &mut self,
        port: usize,
        next_hop: Ipv4Addr,
        now: u32,
        configured: impl Fn() -> bool,
    ) -> Option<MacAddr> {
        match self.neighbors.lookup_for(next_hop, now, configured) {
            Lookup::Found(m) => Some(m),
            Lookup::Refresh(m) => {
                self.ask(port, next_hop);
                Some(m)
            }
            Lookup::Missing { ask } => {
                if ask {
                    self.ask(port, next_hop);
                }
                None
            }
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
        if let Some(port) = route::connected_in(&snap.ports, dst) {
            if over_mtu(snap, port, ip_end) {
                return Verdict::Drop(DropReason::TooBig);
            }
            return self.link(snap, pkt, port, dst, now);
        }
        // Through the gateway, whose route and static neighbor the
        // snapshot worked out (replies to clients, mostly).
        let Some(r) = snap.default_route() else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        self.send_by(snap, pkt, r, ip_end, now)
    }

    /// [`Self::route`] to the real `id` at `real` (NAT): `rewrite` first
    /// rewrites the frame, then it goes by the route the snapshot worked out
    /// for the real, else by address. The frame is taken from `pkt` once
    /// for both the rewrite and the MACs (in the pipeline bench each
    /// `data_mut` was a call of 11 instructions).
    #[inline(always)]
    pub fn route_to_real<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        pkt: &mut B,
        (id, real): (u32, Ipv4Addr),
        ip_end: usize,
        now: u32,
        rewrite: impl FrameRewrite,
    ) -> Verdict {
        let frame = pkt.data_mut();
        let Some(r) = snap.real_route(id, real) else {
            rewrite.apply(frame);
            return self.route_cold(snap, pkt, real, ip_end, now);
        };
        rewrite.apply_routed(frame, r);
        if over_mtu(snap, usize::from(r.port), ip_end) {
            return Verdict::Drop(DropReason::TooBig);
        }
        self.real_link_frame(frame, r, now)
    }

    /// [`Self::route`] of a NAT reply to `dst`: `rewrite` first rewrites the
    /// frame, taken from `pkt` once for both the rewrite and the MACs, as
    /// in [`Self::route_to_real`].
    #[inline(always)]
    pub fn route_rewritten<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        pkt: &mut B,
        dst: Ipv4Addr,
        ip_end: usize,
        now: u32,
        rewrite: impl FrameRewrite,
    ) -> Verdict {
        let frame = pkt.data_mut();
        rewrite.apply(frame);
        if let Some(port) = route::connected_in(&snap.ports, dst) {
            if over_mtu(snap, port, ip_end) {
                return Verdict::Drop(DropReason::TooBig);
            }
            return self.link_frame(snap, frame, port, dst, now);
        }
        let Some(r) = snap.default_route() else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        if over_mtu(snap, usize::from(r.port), ip_end) {
            return Verdict::Drop(DropReason::TooBig);
        }
        self.real_link_frame(frame, r, now)
    }

    /// [`Self::route`] out of line: for a real the snapshot has no route
    /// for (rare), so that the fast path's code stays small.
    #[cold]
    #[inline(never)]
    fn route_cold<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        pkt: &mut B,
        dst: Ipv4Addr,
        ip_end: usize,
        now: u32,
    ) -> Verdict {
        self.route(snap, pkt, dst, ip_end, now)
    }

    /// [`Self::direct`] to the real `id` at `real`, as [`Self::route_to_real`].
    #[inline(always)]
    pub fn direct_to_real<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        pkt: &mut B,
        id: u32,
        real: Ipv4Addr,
        ip_end: usize,
        now: u32,
    ) -> Verdict {
        match snap.real_route(id, real) {
            None => self.direct_cold(snap, pkt, real, ip_end, now),
            Some(r) if !r.connected => Verdict::Drop(DropReason::NoRoute),
            Some(r) => self.send_by(snap, pkt, r, ip_end, now),
        }
    }

    /// Sends a packet ending at `ip_end` by route `r` (a real's or the
    /// gateway's): dropped when longer than the port's MTU.
    #[inline(always)]
    fn send_by<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        pkt: &mut B,
        r: &RealRoute,
        ip_end: usize,
        now: u32,
    ) -> Verdict {
        if over_mtu(snap, usize::from(r.port), ip_end) {
            return Verdict::Drop(DropReason::TooBig);
        }
        self.real_link(pkt, r, now)
    }

    /// [`Self::link`] by a real's [`RealRoute`]: its static neighbor when
    /// it has one, else the learned one.
    #[inline(always)]
    fn real_link<B: PacketBuf>(&mut self, pkt: &mut B, r: &RealRoute, now: u32) -> Verdict {
        self.real_link_frame(pkt.data_mut(), r, now)
    }

    /// [`Self::real_link`] on the frame itself.
    #[inline(always)]
    fn real_link_frame(&mut self, frame: &mut [u8], r: &RealRoute, now: u32) -> Verdict {
        // A static neighbor: both MACs in one copy.
        if let Some(both) = r.link() {
            forward::set_addrs(frame, both);
            return Verdict::Transmit(r.port);
        }
        // A real's next hop: the config's.
        let mac = self.learned(usize::from(r.port), r.next_hop, now, || true);
        let Some(mac) = mac else {
            forward::set_macs(frame, MacAddr::ZERO, r.src_mac);
            return Verdict::Hold {
                port: r.port,
                next_hop: r.next_hop,
            };
        };
        forward::set_macs(frame, mac, r.src_mac);
        Verdict::Transmit(r.port)
    }

    /// [`Self::direct`] out of line, as [`Self::route_cold`].
    #[cold]
    #[inline(never)]
    fn direct_cold<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        pkt: &mut B,
        real: Ipv4Addr,
        ip_end: usize,
        now: u32,
    ) -> Verdict {
        self.direct(snap, pkt, real, ip_end, now)
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
                if over_mtu(snap, r.port, ip_end) {
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
        (id, real): (u32, Ipv4Addr),
        client: Ipv4Addr,
        vip: Ipv4Addr,
        dont_fragment: bool,
        ip_end: usize,
        now: u32,
    ) -> (Verdict, bool) {
        let known = snap.real_route(id, real);
        let Some(r) = known
            .map(|r| route::Route {
                port: usize::from(r.port),
                next_hop: r.next_hop,
                connected: r.connected,
            })
            .or_else(|| route::lookup(snap, real))
        else {
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
        match known {
            Some(k) => (self.real_link(pkt, k, now), true),
            None => (self.link(snap, pkt, r.port, r.next_hop, now), true),
        }
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
        let made = &stats.icmp_frag_needed;
        self.frag_needed_as(snap, stats, pkt, (sender, from), mtu, now, made)
    }

    /// [`Self::frag_needed`], counted in `counter` once on its way: a
    /// router's error relayed from inside a tunnel is one passed on
    /// (`icmp_errors_forwarded`), not one the appliance made.
    #[allow(clippy::too_many_arguments)]
    #[cold]
    pub(super) fn frag_needed_as<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        stats: &WorkerStats,
        pkt: &mut B,
        (sender, from): (Ipv4Addr, Ipv4Addr),
        mtu: u16,
        now: u32,
        counter: &Counter,
    ) -> Verdict {
        if !self.icmp_token(u64::from(u32::from(sender)), now) {
            stats.icmp_rate_limited.incr();
            return Verdict::Drop(DropReason::TooBig);
        }
        if !icmp::frag_needed(pkt, from, mtu) {
            return Verdict::Drop(DropReason::Truncated);
        }
        let Some(back) = route::lookup(snap, sender) else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        // Counted once on its way (sent, or held for its next hop), not
        // when it found no route (found in review).
        let v = self.link(snap, pkt, back.port, back.next_hop, now);
        if matches!(v, Verdict::Transmit(_) | Verdict::Hold { .. }) {
            counter.incr();
        }
        v
    }

    /// Takes a token from the ICMP bucket of `destination` (an IPv4
    /// address, or an IPv6 /64 with the top bit flipped), filled first for
    /// the time passed; false when it is empty.
    fn icmp_token(&mut self, destination: u64, now: u32) -> bool {
        let b = &mut self.icmp_sources[self.icmp_slot(destination)];
        b.fill(now, ICMP_RATE, ICMP_BURST);
        if b.tokens == 0 {
            return false;
        }
        b.tokens -= 1;
        true
    }

    /// The bucket of `destination`.
    pub(super) fn icmp_slot(&self, destination: u64) -> usize {
        (crate::flow::mix64(destination ^ self.icmp_key) % ICMP_SOURCES as u64) as usize
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
        self.link_frame(snap, pkt.data_mut(), port, next_hop, now)
    }

    /// [`Self::link`] on the frame itself.
    #[inline(always)]
    fn link_frame(
        &mut self,
        snap: &Snapshot,
        frame: &mut [u8],
        port: usize,
        next_hop: Ipv4Addr,
        now: u32,
    ) -> Verdict {
        let src = snap.ports[port].mac;
        let Some(mac) = self.neighbor(snap, port, next_hop, now) else {
            forward::set_macs(frame, MacAddr::ZERO, src);
            return Verdict::Hold {
                port: port as u16,
                next_hop,
            };
        };
        forward::set_macs(frame, mac, src);
        // Port indices are below stats::MAX_PORTS.
        Verdict::Transmit(port as u16)
    }

    fn ask(&mut self, port: usize, target: Ipv4Addr) {
        if self.arp_out.len() < OUTBOX {
            self.arp_out.push(ArpRequest { port, target });
        }
    }
}

/// Whether the config overrules a claim that a neighbor whose static
/// entry is `fixed` (if any) is at `mac`: another MAC than that entry's,
/// or one of our own ports' (what [`Egress::learn`], [`Egress::learn6`]
/// and [`Egress::contradicted6`] refuse before asking the cache).
#[inline]
fn overruled(snap: &Snapshot, fixed: Option<MacAddr>, mac: MacAddr) -> bool {
    fixed.is_some_and(|m| m != mac) || snap.is_own_mac(mac)
}

/// A rewrite of a frame that egress makes before it sets the MACs
/// ([`Egress::route_to_real`], [`Egress::route_rewritten`]), so that the
/// frame is taken from its buffer once. Its `apply` is inlined (a closure
/// there was not: process_burst is too large for the inliner's budget).
pub(super) trait FrameRewrite {
    fn apply(self, frame: &mut [u8]);

    /// [`Self::apply`] for a frame to a real whose route the snapshot
    /// has (`route`), which may carry work done beforehand
    /// ([`RealRoute::nat_sums`]).
    #[inline(always)]
    fn apply_routed(self, frame: &mut [u8], _route: &RealRoute)
    where
        Self: Sized,
    {
        self.apply(frame);
    }
}

/// Whether a packet ending at `ip_end` in its frame is longer than the
/// MTU of port `port`. A packet within the smallest port's MTU
/// (`Snapshot::min_mtu`, the minimum over `ports`) fits every port: the
/// established NAT and DR packet, whose `nat_too_big` made the same test
/// just before, so that the compiler folds the two and the port's MTU is
/// not read (its bounds check and multiply).
#[inline(always)]
fn over_mtu(snap: &Snapshot, port: usize, ip_end: usize) -> bool {
    let len = ip_end - IP;
    len > usize::from(snap.min_mtu) && len > usize::from(snap.ports[port].mtu)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found in reread: filling moved the stamp to the
    /// time of the call, so a bucket of 100 a second looked at every 15 ms
    /// earned a token each time, 67 a second, not 100.
    #[test]
    fn a_bucket_earns_its_rate_however_often_it_is_looked_at() {
        for every in [1u32, 7, 15, 33, 60] {
            let mut b = Bucket {
                tokens: 0,
                filled: 0,
            };
            let mut taken = 0;
            let mut now = 0;
            while now <= 10_000 {
                b.fill(now, ICMP_RATE, ICMP_BURST);
                taken += b.tokens;
                b.tokens = 0;
                now += every;
            }
            // 100 a second up to the last look, whole tokens.
            let last = 10_000 / every * every;
            assert_eq!(taken, last * ICMP_RATE / 1000, "every {every} ms");
        }
    }

    /// `over_mtu` tests the smallest MTU first (ce39cdd): the same verdict
    /// as the port's own MTU alone, for every port and length, with ports
    /// of different MTUs (the smaller first or last, lowered by the device
    /// after compiling or not).
    #[test]
    fn over_mtu_is_the_ports_own_mtu_test() {
        const TWO_PORTS: &str = r#"
[workers]
lcores = [1]
[[ports]]
name = "wan"
device = "net_null0"
address = "198.18.0.2/24"
mtu = MTU0
[[ports]]
name = "lan"
device = "net_null1"
address = "198.19.5.2/24"
mtu = MTU1
[[services]]
name = "web"
vip = "198.18.1.100"
port = 80
[[services.reals]]
address = "198.19.5.11"
"#;
        let macs = [MacAddr([2, 0, 0, 0, 0, 2]), MacAddr([2, 0, 0, 0, 0, 3])];
        for (m0, m1) in [(1500, 9000), (9000, 1500), (1400, 1500), (1500, 1500)] {
            for lowered in [None, Some([1300u16, 9000]), Some([9000, 1280])] {
                let text = TWO_PORTS
                    .replace("MTU0", &m0.to_string())
                    .replace("MTU1", &m1.to_string());
                let mut snap =
                    super::super::tests::compile(&lb_config::Config::parse(&text).unwrap(), &macs);
                if let Some(mtus) = lowered {
                    snap.set_port_mtus(&mtus);
                }
                for port in 0..2 {
                    let mtu = usize::from(snap.ports[port].mtu);
                    for len in [0, 576, 1280, 1300, 1400, 1500, 1501, 8999, 9000, 9001] {
                        for l in [len, mtu.saturating_sub(1), mtu, mtu + 1] {
                            assert_eq!(
                                over_mtu(&snap, port, IP + l),
                                l > mtu,
                                "ports {m0}/{m1}, lowered {lowered:?}, port {port}, length {l}"
                            );
                        }
                    }
                }
            }
        }
    }
}
