//! What happens to one received frame. Headers are checked once; then the
//! frame is answered here (ARP and ICMP echo for our addresses, in
//! `local`), forwarded to a real (a new flow is scheduled, a known one
//! looked up in the worker's `flow` table, and the `forward` method
//! rewrites it), handed to the worker that owns its flow, or dropped with a
//! counted reason. Works on any [`PacketBuf`], so the same code runs on
//! mbufs, on pcap replays and in unit tests.

mod local;

use std::net::Ipv4Addr;
use std::sync::Arc;

use lb_config::{ForwardingMethod, MacAddr, SchedulerKind};

pub use local::{build_arp_request, ARP_REQUEST_LEN, DEFAULT_TTL};

use crate::buffer::PacketBuf;
use crate::flow::{self, Flow, FlowKey, FlowState, FlowTable, NewFlow, ReplyKey, FLOW_TEMPLATE};
use crate::forward::{self, icmp, nat, tunnel, IP, L4};
use crate::neighbor::{Lookup, NeighborCache};
use crate::route;
use crate::scheduler::{PickInput, SchedulerState};
use crate::snapshot::{method_code, method_from_code, Snapshot, MAX_REALS};
use crate::stats::{DropReason, WorkerStats};
use crate::wire::{self, EtherType, EthernetFrame, IpProtocol, Ipv4Packet, TcpFlags};

/// The fate of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send the (rewritten) frame out of this port index.
    Transmit(usize),
    /// Drop it, counting the reason.
    Drop(DropReason),
    /// Give it, untouched, to this worker: it owns the flow.
    HandOff(usize),
    /// Rewritten except for the destination MAC, which is being resolved:
    /// hold it, then send it out of `port` to `next_hop`'s MAC.
    Hold { port: usize, next_hop: Ipv4Addr },
    /// Used up here (an ARP reply we learned from).
    Consumed,
}

/// An ARP request the worker is to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRequest {
    pub port: usize,
    pub target: Ipv4Addr,
}

/// How many entries the sweep looks at per call.
pub const SWEEP_BUDGET: usize = 256;
/// How many entries a full table looks at for one to evict.
pub const EVICTION_SCAN: usize = 64;

/// One worker's packet state: its flow table, neighbor cache, scheduler
/// states and per-real flow counts. Owned by the worker; nothing shared.
pub struct Pipeline {
    index: usize,
    workers: usize,
    flows: FlowTable,
    neighbors: NeighborCache,
    sched: Vec<SchedulerState>,
    sched_generation: u64,
    /// Active flows per real id (least-connection schedulers).
    active: Vec<u32>,
    stats: Arc<WorkerStats>,
    /// Neighbors learned since the worker last drained them (to tell the
    /// other workers).
    learned: Vec<(Ipv4Addr, MacAddr)>,
    /// ARP requests to send.
    arp_out: Vec<ArpRequest>,
    /// Flows the last sweep removed (reused, so sweeping does not allocate).
    ended: Vec<Flow>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Pipeline(worker {}/{}, {:?})",
            self.index, self.workers, self.flows
        )
    }
}

const OUTBOX: usize = 64;

impl Pipeline {
    pub fn new(
        index: usize,
        workers: usize,
        flow_capacity: usize,
        stats: Arc<WorkerStats>,
    ) -> Pipeline {
        stats.flow_capacity.set(flow_capacity as u64);
        Pipeline {
            index,
            workers: workers.max(1),
            flows: FlowTable::with_capacity(flow_capacity),
            neighbors: NeighborCache::new(),
            sched: Vec::new(),
            sched_generation: u64::MAX,
            active: vec![0; MAX_REALS],
            stats,
            learned: Vec::with_capacity(OUTBOX),
            arp_out: Vec::with_capacity(OUTBOX),
            ended: Vec::with_capacity(SWEEP_BUDGET),
        }
    }

    pub fn stats(&self) -> &Arc<WorkerStats> {
        &self.stats
    }

    pub fn flows(&self) -> &FlowTable {
        &self.flows
    }

    /// Adopts a new snapshot: fresh scheduler states for its services.
    /// Called between bursts (it allocates).
    pub fn adopt(&mut self, snap: &Snapshot) {
        if self.sched_generation == snap.generation {
            return;
        }
        self.sched = snap
            .services
            .iter()
            .map(|s| s.scheduler.new_state())
            .collect();
        self.sched_generation = snap.generation;
    }

    /// Neighbors learned since the last call (for the other workers).
    pub fn take_learned(&mut self) -> impl Iterator<Item = (Ipv4Addr, MacAddr)> + '_ {
        self.learned.drain(..)
    }

    /// ARP requests to send since the last call.
    pub fn take_arp_requests(&mut self) -> impl Iterator<Item = ArpRequest> + '_ {
        self.arp_out.drain(..)
    }

    /// Records a neighbor another worker learned.
    pub fn learn_neighbor(&mut self, ip: Ipv4Addr, mac: MacAddr, now: u32) {
        self.neighbors.learn(ip, mac, now);
    }

    /// The MAC address to send to `next_hop`, if known now (static entries
    /// first).
    pub fn resolved(&self, snap: &Snapshot, next_hop: Ipv4Addr) -> Option<MacAddr> {
        snap.static_neighbor(next_hop)
            .or_else(|| self.neighbors.get(next_hop))
    }

    /// Reclaims expired flows, looking at up to `budget` entries.
    pub fn sweep(&mut self, snap: &Snapshot, now: u32, budget: usize) -> usize {
        let timeouts = snap.timeouts;
        let mut ended = std::mem::take(&mut self.ended);
        ended.clear();
        let stats = &self.stats;
        let removed = self.flows.sweep(
            budget,
            |f| f.expired(now, &timeouts),
            |f| {
                stats.flows_expired.incr();
                if !f.is_template() {
                    ended.push(*f);
                }
            },
        );
        for f in &ended {
            self.flow_ended(f, now);
        }
        self.ended = ended;
        self.stats.active_flows.set(self.flows.len() as u64);
        removed
    }

    /// Bookkeeping for a flow that is gone, whatever ended it: its real's
    /// active count, and its persistence template, which lives on for the
    /// service's persistence after its last flow.
    fn flow_ended(&mut self, f: &Flow, now: u32) {
        let a = &mut self.active[f.real_id as usize % MAX_REALS];
        *a = a.saturating_sub(1);
        self.stats.real(f.real_id).active.set(u64::from(*a));
        if f.templated {
            self.template_child(&f.key(), f.real_id, now, false);
        }
    }

    /// Counts a flow in (`add`) or out of its persistence template. A flow
    /// counts only for a template that still points at its real: one that
    /// was moved to another real no longer waits for it.
    fn template_child(&mut self, key: &FlowKey, real_id: u32, now: u32, add: bool) {
        let tk = template_key(key);
        if let Some(t) = self.flows.lookup(&tk, tk.hash()) {
            let t = self.flows.get_mut(t);
            if t.real_id == real_id {
                t.children = if add {
                    t.children + 1
                } else {
                    t.children.saturating_sub(1)
                };
                t.last_seen = now;
            }
        }
    }

    /// Runs a burst of frames received on `in_port`: first every frame's
    /// flow-table slot is prefetched, then the entries those slots point
    /// to, then the frames are processed, so that the cache misses of a
    /// burst overlap instead of queueing. `verdicts[i]` is frame i's fate.
    pub fn process_burst<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        in_port: usize,
        pkts: &mut [B],
        verdicts: &mut [Verdict],
        now: u32,
    ) {
        /// Frames prefetched together (a typical rx burst).
        const CHUNK: usize = 32;
        let n = pkts.len().min(verdicts.len());
        let mut base = 0;
        while base < n {
            let m = CHUNK.min(n - base);
            let mut hints: [Option<Hint>; CHUNK] = [None; CHUNK];
            for (i, h) in hints[..m].iter_mut().enumerate() {
                *h = flow_hint(snap, pkts[base + i].data());
                if let Some(h) = h {
                    self.flows.prefetch(h.hash);
                }
            }
            for h in hints[..m].iter().flatten() {
                self.flows.prefetch_entry(h.hash);
            }
            for (i, h) in hints[..m].iter().enumerate() {
                verdicts[base + i] = self.run(snap, in_port, &mut pkts[base + i], now, *h);
            }
            base += m;
        }
    }

    /// Runs one frame received on port index `in_port` at time `now` (ms),
    /// rewriting it in place when it is to be sent.
    #[inline]
    pub fn process<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        in_port: usize,
        pkt: &mut B,
        now: u32,
    ) -> Verdict {
        self.run(snap, in_port, pkt, now, None)
    }

    /// `process`, with the flow-table hash of the frame when the burst
    /// already computed it (see `flow_hint`).
    #[inline]
    fn run<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        in_port: usize,
        pkt: &mut B,
        now: u32,
        hint: Option<Hint>,
    ) -> Verdict {
        let Some(me) = snap.ports.get(in_port) else {
            return Verdict::Drop(DropReason::NotForUs);
        };
        let our_mac = me.mac;
        let data = pkt.data_mut();
        let Ok(frame) = EthernetFrame::new_checked(&mut data[..]) else {
            return Verdict::Drop(DropReason::Truncated);
        };
        let dst = frame.dst_addr();
        if dst != our_mac && !dst.is_broadcast() && !dst.is_multicast() {
            return Verdict::Drop(DropReason::NotOurMac);
        }
        match frame.ethertype() {
            EtherType::Arp => self.arp(snap, in_port, frame, now),
            EtherType::Ipv4 => self.ipv4(snap, in_port, pkt, now, hint),
            _ => Verdict::Drop(DropReason::UnsupportedEthertype),
        }
    }

    fn arp(
        &mut self,
        snap: &Snapshot,
        in_port: usize,
        frame: EthernetFrame<&mut [u8]>,
        now: u32,
    ) -> Verdict {
        if let Some((ip, mac)) = local::arp_sender(&frame) {
            // Learn who asks or answers on our segments (not from a static
            // entry's address: those win).
            if snap.ports[in_port].connected(ip)
                && snap.static_neighbor(ip).is_none()
                && self.neighbors.learn(ip, mac, now)
                && self.learned.len() < OUTBOX
            {
                self.learned.push((ip, mac));
            }
        }
        local::arp(snap, in_port, frame, &self.stats)
    }

    fn ipv4<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        in_port: usize,
        pkt: &mut B,
        now: u32,
        hint: Option<Hint>,
    ) -> Verdict {
        let data = pkt.data_mut();
        let ip = match Ipv4Packet::new_checked(&data[IP..]) {
            Ok(ip) => ip,
            Err(wire::Error::Truncated) => return Verdict::Drop(DropReason::Truncated),
            Err(wire::Error::Malformed) => return Verdict::Drop(DropReason::BadIpHeader),
        };
        if !ip.verify_checksum() {
            return Verdict::Drop(DropReason::BadIpChecksum);
        }
        let dst = ip.dst_addr();
        let src = ip.src_addr();
        let proto: u8 = ip.protocol().into();
        let total = usize::from(ip.total_len());
        let header_len = ip.header_len();
        let fragment = ip.is_fragment();
        let ttl = ip.ttl();
        // A burst hint already looked: a request's destination is a VIP, a
        // NAT reply's is not ours.
        let for_us = match hint {
            Some(h) => h.request,
            None => snap.is_local(in_port, dst),
        };
        if fragment {
            return Verdict::Drop(DropReason::Fragment);
        }
        if header_len != 20 {
            return Verdict::Drop(DropReason::IpOptions);
        }
        let ip_end = IP + total;
        if for_us {
            if proto == u8::from(IpProtocol::Icmp) {
                return self.icmp_to_us(snap, in_port, pkt, ip_end, dst, now);
            }
            if !snap.is_vip(dst) {
                return Verdict::Drop(DropReason::NotForUs);
            }
            if proto != u8::from(IpProtocol::Tcp) && proto != u8::from(IpProtocol::Udp) {
                return Verdict::Drop(DropReason::NoService);
            }
            let l4 = match transport(&pkt.data()[L4..ip_end], proto) {
                Ok(l4) => l4,
                Err(r) => return Verdict::Drop(r),
            };
            let Some(service) = snap.service_for(proto, dst, l4.dst_port) else {
                return Verdict::Drop(DropReason::NoService);
            };
            if ttl <= 1 {
                return Verdict::Drop(DropReason::TtlExceeded);
            }
            return self.request(snap, service, pkt, proto, src, l4, ip_end, now, hint);
        }
        // Transit: only NAT replies and ICMP errors from NAT reals.
        if proto == u8::from(IpProtocol::Icmp) && snap.is_nat_real(src) {
            return self.icmp_from_real(snap, pkt, ip_end, ttl, now);
        }
        if proto != u8::from(IpProtocol::Tcp) && proto != u8::from(IpProtocol::Udp) {
            return Verdict::Drop(DropReason::NotForUs);
        }
        let l4 = match transport(&pkt.data()[L4..ip_end], proto) {
            Ok(l4) => l4,
            Err(r) => return Verdict::Drop(r),
        };
        if !snap.is_nat_endpoint(proto, src, l4.src_port) {
            return Verdict::Drop(DropReason::NotForUs);
        }
        if ttl <= 1 {
            return Verdict::Drop(DropReason::TtlExceeded);
        }
        self.reply(snap, pkt, proto, src, dst, l4, ip_end, now, hint)
    }

    /// A packet from a client to a service's VIP.
    #[allow(clippy::too_many_arguments)]
    fn request<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        service: usize,
        pkt: &mut B,
        proto: u8,
        client: Ipv4Addr,
        l4: Transport,
        ip_end: usize,
        now: u32,
        hint: Option<Hint>,
    ) -> Verdict {
        if let Some(v) = self.hand_off(client) {
            return v;
        }
        let svc = &snap.services[service];
        let key = FlowKey {
            proto,
            client,
            client_port: l4.src_port,
            vip: svc.vip,
            vip_port: svc.port,
        };
        let hash = hint.map_or_else(|| key.hash(), |h| h.hash);
        debug_assert_eq!(hash, key.hash(), "the burst's hint is this key's hash");
        let tcp = proto == u8::from(IpProtocol::Tcp);
        let syn = tcp && l4.flags.contains(TcpFlags::SYN) && !l4.flags.contains(TcpFlags::ACK);
        let mut entry = self.flows.lookup(&key, hash);
        if let Some(e) = entry {
            let f = self.flows.get(e);
            let stale = f.expired(now, &snap.timeouts)
                || (syn && matches!(f.state(), FlowState::FinWait | FlowState::Closed));
            if stale {
                self.end_flow(e, now);
                entry = None;
            } else if !snap.real_present(f.real_id) {
                self.end_flow(e, now);
                return Verdict::Drop(DropReason::RealRemoved);
            }
        }
        let (real, real_port, method, real_id) = match entry {
            Some(e) => {
                let f = self.flows.get_mut(e);
                f.last_seen = now;
                if tcp {
                    let s = f.state().on_tcp(l4.flags, true);
                    f.set_state(s);
                }
                (
                    f.real(),
                    f.real_port(),
                    method_from_code(f.method),
                    f.real_id,
                )
            }
            None => {
                if tcp && !syn && svc.kind != SchedulerKind::Maglev {
                    return Verdict::Drop(DropReason::NoFlow);
                }
                let Some((ri, templated)) = self.schedule(snap, service, &key, hash, now) else {
                    return Verdict::Drop(DropReason::NoReal);
                };
                let r = &svc.reals[ri];
                let state = if !tcp {
                    FlowState::Datagram
                } else if syn {
                    FlowState::SynSent
                } else {
                    // A Maglev flow picked up mid-stream (after a restart).
                    FlowState::Established.on_tcp(l4.flags, true)
                };
                let spec = NewFlow {
                    key,
                    real: r.address,
                    real_port: r.port,
                    real_id: r.id,
                    service_id: svc.id,
                    method: method_code(r.method),
                    state,
                    index_reply: r.method == ForwardingMethod::Nat,
                    now,
                };
                let mut inserted = self.flows.insert(&spec);
                if inserted.is_err() {
                    // Make room: the flow idle longest among a few that
                    // never got established (those are never disturbed).
                    let victim = self.flows.stalest(now, EVICTION_SCAN, |f| {
                        !f.is_template() && f.state() != FlowState::Established
                    });
                    if let Some(v) = victim {
                        self.end_flow(v, now);
                        self.stats.flows_evicted.incr();
                        inserted = self.flows.insert(&spec);
                    }
                }
                match inserted {
                    Ok(e) => {
                        self.flows.get_mut(e).templated = templated;
                        if templated {
                            self.template_child(&key, r.id, now, true);
                        }
                        self.active[r.id as usize % MAX_REALS] += 1;
                        self.stats
                            .real(r.id)
                            .active
                            .set(u64::from(self.active[r.id as usize % MAX_REALS]));
                        self.stats.active_flows.set(self.flows.len() as u64);
                    }
                    Err(_) => {
                        self.stats.flow_table_full.incr();
                        // Without an entry, later packets find the same real
                        // only by hashing, and NAT replies not at all.
                        let stable =
                            matches!(svc.kind, SchedulerKind::Maglev | SchedulerKind::SourceHash);
                        if !stable || r.method == ForwardingMethod::Nat {
                            return Verdict::Drop(DropReason::FlowTableFull);
                        }
                    }
                }
                self.stats.real(r.id).flows_created.incr();
                self.stats.flows_created.incr();
                (r.address, r.port, r.method, r.id)
            }
        };
        let len = pkt.len() as u64;
        let verdict = match method {
            ForwardingMethod::Nat => {
                nat::rewrite_request(pkt.data_mut(), proto, real, real_port);
                self.send(snap, pkt, real, ip_end, now)
            }
            ForwardingMethod::DirectRoute => self.send_direct(snap, pkt, real, now),
            ForwardingMethod::Tunnel => self.send_tunnel(
                snap,
                pkt,
                real,
                client,
                snap.services[service].vip,
                ip_end,
                now,
            ),
        };
        self.count_forwarded(verdict, real_id, len);
        verdict
    }

    /// Picks a real for a new flow: the persistence template's if the
    /// service has one and its real can still take flows, else the
    /// scheduler's. Returns the index into the service's reals and whether
    /// a template placed it.
    fn schedule(
        &mut self,
        snap: &Snapshot,
        service: usize,
        key: &FlowKey,
        hash: u64,
        now: u32,
    ) -> Option<(usize, bool)> {
        let svc = &snap.services[service];
        if svc.persistence_ms > 0 {
            let tk = template_key(key);
            let th = tk.hash();
            if let Some(t) = self.flows.lookup(&tk, th) {
                let f = self.flows.get(t);
                if f.expired(now, &snap.timeouts) {
                    self.flows.remove(t);
                } else {
                    let old = f.real_id;
                    if let Some(ri) = svc.reals.iter().position(|r| r.id == old && r.eligible()) {
                        return Some((ri, true));
                    }
                    // Its real can take no new flows: the client moves, and
                    // the template with it (flows on the old real no longer
                    // count for it).
                    let ri = self.pick(snap, service, key, hash)?;
                    let r = &svc.reals[ri];
                    let t = self.flows.get_mut(t);
                    t.retarget(r.address, r.port, r.id, method_code(r.method));
                    t.children = 0;
                    t.last_seen = now;
                    return Some((ri, true));
                }
            }
            let ri = self.pick(snap, service, key, hash)?;
            let r = &svc.reals[ri];
            let spec = NewFlow {
                key: tk,
                real: r.address,
                real_port: r.port,
                real_id: r.id,
                service_id: svc.id,
                method: method_code(r.method),
                state: FlowState::Template,
                index_reply: false,
                now,
            };
            // Its children are counted as they get entries; without one it
            // still remembers the client for the persistence time.
            let placed = match self.flows.insert(&spec) {
                Ok(t) => {
                    self.flows.get_mut(t).template_timeout = svc.persistence_ms;
                    true
                }
                Err(_) => false,
            };
            return Some((ri, placed));
        }
        self.pick(snap, service, key, hash).map(|ri| (ri, false))
    }

    fn pick(&mut self, snap: &Snapshot, service: usize, key: &FlowKey, hash: u64) -> Option<usize> {
        let svc = &snap.services[service];
        let state = self.sched.get_mut(service)?;
        let input = PickInput {
            flow_hash: hash,
            source_hash: flow::source_hash(key.client),
        };
        let active = &self.active;
        let eligible = &svc.eligible;
        let reals = &svc.reals;
        let i = svc.scheduler.pick(state, &input, |b| {
            active[reals[eligible[b]].id as usize % MAX_REALS]
        })?;
        eligible.get(i).copied()
    }

    /// The hand-off verdict when another worker owns `client`'s flows.
    #[inline]
    fn hand_off(&self, client: Ipv4Addr) -> Option<Verdict> {
        let owner = flow::owner_of(client, self.workers);
        (owner != self.index).then(|| {
            self.stats.handoffs_out.incr();
            Verdict::HandOff(owner)
        })
    }

    /// Counts a packet of a real's flow that is on its way (sent now, or
    /// held for its next hop).
    #[inline]
    fn count_forwarded(&self, v: Verdict, real_id: u32, len: u64) {
        if matches!(v, Verdict::Transmit(_) | Verdict::Hold { .. }) {
            let c = self.stats.real(real_id);
            c.packets.incr();
            c.bytes.add(len);
        }
    }

    fn end_flow(&mut self, e: u32, now: u32) {
        let f = self.flows.remove(e);
        if !f.is_template() {
            self.flow_ended(&f, now);
        }
        self.stats.active_flows.set(self.flows.len() as u64);
    }

    /// A packet from a NAT real back to a client.
    #[allow(clippy::too_many_arguments)]
    fn reply<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        pkt: &mut B,
        proto: u8,
        real: Ipv4Addr,
        client: Ipv4Addr,
        l4: Transport,
        ip_end: usize,
        now: u32,
        hint: Option<Hint>,
    ) -> Verdict {
        if let Some(v) = self.hand_off(client) {
            return v;
        }
        let key = ReplyKey {
            proto,
            real,
            real_port: l4.src_port,
            client,
            client_port: l4.dst_port,
        };
        let hash = hint.map_or_else(|| key.hash(), |h| h.hash);
        debug_assert_eq!(hash, key.hash(), "the burst's hint is this key's hash");
        let Some(e) = self.flows.lookup_reply(&key, hash) else {
            return Verdict::Drop(DropReason::NoFlow);
        };
        let f = self.flows.get(e);
        if f.expired(now, &snap.timeouts) {
            self.end_flow(e, now);
            return Verdict::Drop(DropReason::NoFlow);
        }
        if !snap.real_present(f.real_id) {
            self.end_flow(e, now);
            return Verdict::Drop(DropReason::RealRemoved);
        }
        let f = self.flows.get_mut(e);
        f.last_seen = now;
        if proto == u8::from(IpProtocol::Tcp) {
            let s = f.state().on_tcp(l4.flags, false);
            f.set_state(s);
        }
        let (vip, vip_port, real_id) = (f.vip(), f.vip_port(), f.real_id);
        let len = pkt.len() as u64;
        nat::rewrite_reply(pkt.data_mut(), proto, vip, vip_port);
        let v = self.send(snap, pkt, client, ip_end, now);
        self.count_forwarded(v, real_id, len);
        v
    }

    /// ICMP to one of our addresses: echo is answered; an error about a
    /// flow of a VIP goes to that flow's real.
    fn icmp_to_us<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        in_port: usize,
        pkt: &mut B,
        ip_end: usize,
        dst: Ipv4Addr,
        now: u32,
    ) -> Verdict {
        let b = pkt.data();
        if b.len() < L4 + icmp::HEADER || ip_end < L4 + icmp::HEADER {
            return Verdict::Drop(DropReason::Truncated);
        }
        let icmp_type = b[L4];
        if icmp_type != 3 && icmp_type != 11 {
            let data = pkt.data_mut();
            let frame = EthernetFrame::new_unchecked(&mut data[..]);
            return local::icmp(snap, in_port, frame, &self.stats);
        }
        if !snap.is_vip(dst) {
            return Verdict::Drop(DropReason::IcmpNotHandled);
        }
        let Some(q) = icmp::quoted(&b[..ip_end], L4) else {
            return Verdict::Drop(DropReason::IcmpNotHandled);
        };
        // The quoted packet went from the VIP to the client.
        let key = FlowKey {
            proto: q.proto,
            client: q.dst,
            client_port: q.dst_port,
            vip: q.src,
            vip_port: q.src_port,
        };
        if let Some(v) = self.hand_off(key.client) {
            return v;
        }
        let Some(e) = self.flows.lookup(&key, key.hash()) else {
            return Verdict::Drop(DropReason::NoFlow);
        };
        let f = *self.flows.get(e);
        if !snap.real_present(f.real_id) {
            return Verdict::Drop(DropReason::RealRemoved);
        }
        self.stats.icmp_errors_forwarded.incr();
        let ttl = pkt.data()[IP + 8];
        match method_from_code(f.method) {
            ForwardingMethod::Nat => {
                if ttl <= 1 {
                    return Verdict::Drop(DropReason::TtlExceeded);
                }
                icmp::rewrite_nat_error(pkt.data_mut(), ip_end, &q, false, f.real(), f.real_port());
                self.send(snap, pkt, f.real(), ip_end, now)
            }
            ForwardingMethod::DirectRoute => self.send_direct(snap, pkt, f.real(), now),
            ForwardingMethod::Tunnel => {
                let src = pkt.data();
                let sender = Ipv4Addr::from(forward::get32(src, IP + 12));
                self.send_tunnel(snap, pkt, f.real(), sender, dst, ip_end, now)
            }
        }
    }

    /// An ICMP error from a NAT real to a client about the client's packet.
    fn icmp_from_real<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        pkt: &mut B,
        ip_end: usize,
        ttl: u8,
        now: u32,
    ) -> Verdict {
        let b = pkt.data();
        if ip_end < L4 + icmp::HEADER || b.len() < ip_end {
            return Verdict::Drop(DropReason::Truncated);
        }
        if b[L4] != 3 && b[L4] != 11 {
            return Verdict::Drop(DropReason::NotForUs);
        }
        let Some(q) = icmp::quoted(&b[..ip_end], L4) else {
            return Verdict::Drop(DropReason::IcmpNotHandled);
        };
        // The quoted packet went from the client to the real.
        let key = ReplyKey {
            proto: q.proto,
            real: q.dst,
            real_port: q.dst_port,
            client: q.src,
            client_port: q.src_port,
        };
        if let Some(v) = self.hand_off(key.client) {
            return v;
        }
        let Some(e) = self.flows.lookup_reply(&key, key.hash()) else {
            return Verdict::Drop(DropReason::NoFlow);
        };
        if ttl <= 1 {
            return Verdict::Drop(DropReason::TtlExceeded);
        }
        let f = *self.flows.get(e);
        self.stats.icmp_errors_forwarded.incr();
        icmp::rewrite_nat_error(pkt.data_mut(), ip_end, &q, true, f.vip(), f.vip_port());
        self.send(snap, pkt, f.client(), ip_end, now)
    }

    /// Routes an (already rewritten) IPv4 packet to `dst`: picks the port
    /// and next hop, checks the MTU, and sets the MACs.
    fn send<B: PacketBuf>(
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
        self.finish(snap, pkt, r.port, r.next_hop, now)
    }

    /// DR: the real must be on a connected segment.
    fn send_direct<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        pkt: &mut B,
        real: Ipv4Addr,
        now: u32,
    ) -> Verdict {
        match route::lookup(snap, real) {
            Some(r) if r.connected => self.finish(snap, pkt, r.port, real, now),
            _ => Verdict::Drop(DropReason::NoRoute),
        }
    }

    /// TUN: wrap and send to the real, or answer "fragmentation needed".
    #[allow(clippy::too_many_arguments)]
    fn send_tunnel<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        pkt: &mut B,
        real: Ipv4Addr,
        client: Ipv4Addr,
        vip: Ipv4Addr,
        ip_end: usize,
        now: u32,
    ) -> Verdict {
        let Some(r) = route::lookup(snap, real) else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        let mtu = usize::from(snap.ports[r.port].mtu);
        let inner = ip_end - IP;
        if inner + tunnel::OVERHEAD > mtu {
            let df = pkt.data()[IP + 6] & 0x40 != 0;
            if !df {
                return Verdict::Drop(DropReason::TooBig);
            }
            let announced = (mtu - tunnel::OVERHEAD) as u16;
            if !icmp::frag_needed(pkt, vip, announced) {
                return Verdict::Drop(DropReason::Truncated);
            }
            self.stats.icmp_frag_needed.incr();
            let Some(back) = route::lookup(snap, client) else {
                return Verdict::Drop(DropReason::NoRoute);
            };
            return self.finish(snap, pkt, back.port, back.next_hop, now);
        }
        let src = snap.ports[r.port].address.address;
        if !tunnel::encapsulate(pkt, inner, src, real) {
            return Verdict::Drop(DropReason::NoHeadroom);
        }
        self.finish(snap, pkt, r.port, r.next_hop, now)
    }

    /// Sets the MACs for `next_hop` on `port`, or asks for them.
    #[inline]
    fn finish<B: PacketBuf>(
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

/// What a quick look at a frame found out, before it is processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hint {
    /// The hash of the flow-table key it will be looked up by.
    hash: u64,
    /// A request to a VIP (else a NAT reply).
    request: bool,
}

/// The flow-table key hash of a plain TCP or UDP over IPv4 frame to a VIP
/// or from a NAT real (anything else: None, and the pipeline proper sorts
/// it out).
#[inline]
fn flow_hint(snap: &Snapshot, d: &[u8]) -> Option<Hint> {
    if d.len() < L4 + 4 || d[12] != 0x08 || d[13] != 0x00 || d[IP] != 0x45 {
        return None;
    }
    let proto = d[IP + 9];
    if proto != 6 && proto != 17 {
        return None;
    }
    let src = Ipv4Addr::from(forward::get32(d, IP + 12));
    let dst = Ipv4Addr::from(forward::get32(d, IP + 16));
    let (sport, dport) = (forward::get16(d, L4), forward::get16(d, L4 + 2));
    if snap.is_vip(dst) {
        Some(Hint {
            hash: flow::flow_hash(proto, src, sport, dst, dport),
            request: true,
        })
    } else if snap.is_nat_endpoint(proto, src, sport) {
        Some(Hint {
            hash: flow::reply_hash(proto, src, sport, dst, dport),
            request: false,
        })
    } else {
        None
    }
}

/// The persistence template's key for a flow key.
fn template_key(k: &FlowKey) -> FlowKey {
    FlowKey {
        proto: k.proto | FLOW_TEMPLATE,
        client_port: 0,
        ..*k
    }
}

/// The transport fields the pipeline needs.
#[derive(Debug, Clone, Copy)]
struct Transport {
    src_port: u16,
    dst_port: u16,
    flags: TcpFlags,
}

/// Checks the TCP or UDP header at the start of `l4` (the IP payload).
#[inline]
fn transport(l4: &[u8], proto: u8) -> Result<Transport, DropReason> {
    if proto == u8::from(IpProtocol::Tcp) {
        if l4.len() < 20 {
            return Err(DropReason::Truncated);
        }
        // Data offset: at least the 20-byte header, at most the segment.
        let header = usize::from(l4[12] >> 4) * 4;
        if header < 20 || header > l4.len() {
            return Err(DropReason::BadL4Header);
        }
        Ok(Transport {
            src_port: forward::get16(l4, 0),
            dst_port: forward::get16(l4, 2),
            flags: TcpFlags(l4[13]),
        })
    } else {
        if l4.len() < 8 {
            return Err(DropReason::Truncated);
        }
        let len = usize::from(forward::get16(l4, 4));
        if len < 8 || len > l4.len() {
            return Err(DropReason::BadL4Header);
        }
        Ok(Transport {
            src_port: forward::get16(l4, 0),
            dst_port: forward::get16(l4, 2),
            flags: TcpFlags::default(),
        })
    }
}

#[cfg(test)]
mod tests;
