//! The poll-mode worker: one per worker lcore, pinned by the EAL. It owns
//! one rx and one tx queue on every port, receives bursts, runs each packet
//! through its [`Pipeline`] and transmits the results in bursts per port.
//!
//! Flows are owned by worker `flow::owner_of(client address)`: a packet
//! that arrives at another worker (a NAT reply hashed by the NIC to another
//! queue, say) is handed, untouched, to the owner through a single-producer
//! single-consumer ring, so each flow's state lives on exactly one core and
//! needs no lock. ARP answers reach one queue only, so what a worker learns
//! is passed to the others the same way (a small channel, per ARP event).
//! Between bursts (never per packet) the worker picks up a new config
//! snapshot, sends the ARP requests its pipeline asked for, runs again the
//! SYN proxy's deferred segments whose flow's real answered (a
//! [`DeferList`]), releases packets whose next hop resolved, sweeps a slice
//! of its flow table, and checks the stop flag. With `[workers] poll =
//! "adaptive"` an idle worker then pauses or sleeps before its next poll
//! ([`Backoff`]), and all of this still runs once per (shorter) poll.
#![deny(unsafe_code)]

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam::channel::{Receiver, Sender};
use lb_config::{MacAddr, PollMode};

use crate::backoff::{Backoff, Doorbell};
use crate::dpdk::{
    self, Mbuf, MbufBurst, Mempool, RingConsumer, RingProducer, RxQueue, TxQueue, MAX_BURST,
};
use crate::kernel::KernelPath;
use crate::sync::WorkerLink;
use lb_core::buffer::PacketBuf;
use lb_core::flow::listing::{self, FlowInfo, PAGE_ENTRIES};
use lb_core::forward;
use lb_core::pipeline::{
    build_arp_request, build_gratuitous_arp, build_neighbor_solicit, build_unsolicited_advert,
    DeferList, Pipeline, Verdict, DEFER_MS, DEFER_SLOTS, SWEEP_BUDGET,
};
use lb_core::snapshot::Snapshot;
use lb_core::stats::{DropReason, WorkerStats};

/// How long a stopping worker waits for the others to leave their loops
/// before it stops counting what they hand it (they look at the stop flag
/// between bursts, well under a millisecond apart; within the engine's
/// `WORKER_STOP_DEADLINE`).
const HANDOFF_DRAIN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(1);

/// How many packets may wait for ARP at once, per worker.
pub const HOLD_SLOTS: usize = 64;
/// How long a packet waits for its next hop to resolve.
pub const HOLD_MS: u32 = 3_000;

/// A neighbor learned by one worker, for the others.
pub type NeighborUpdate = (IpAddr, MacAddr);

/// What a worker is handed when it is launched.
pub struct Worker {
    pub index: usize,
    pub rx: Vec<RxQueue>,
    pub tx: Vec<TxQueue>,
    pub burst: usize,
    pub snapshot: Arc<Snapshot>,
    pub updates: Receiver<Arc<Snapshot>>,
    pub stats: Arc<WorkerStats>,
    pub stop: Arc<AtomicBool>,
    /// How many workers have left their poll loop (each adds itself once,
    /// after its last hand-off): what a stopping worker drains its
    /// hand-off rings until.
    pub left: Arc<AtomicUsize>,
    pub pipeline: Pipeline,
    pub mempool: Mempool,
    /// Rings to each other worker (None at our own index).
    pub handoff_out: Vec<Option<RingProducer>>,
    /// Rings from the other workers.
    pub handoff_in: Vec<RingConsumer>,
    pub neighbors_out: Vec<Sender<NeighborUpdate>>,
    pub neighbors_in: Receiver<NeighborUpdate>,
    /// Ticks of `dpdk::rdtsc` per millisecond.
    pub tsc_per_ms: u64,
    /// The exception path: this worker's queues on the ports' kernel
    /// interfaces.
    pub kernel: KernelPath,
    /// `[workers] poll`: whether an idle worker backs off.
    pub poll: PollMode,
    /// Every worker's doorbell, ours at `index`: rung after handing a
    /// worker packets, in case it sleeps.
    pub doorbells: Vec<Arc<Doorbell>>,
    /// `[sync]`: this worker's end of the hand-over with the sync thread
    /// (None without the section).
    pub sync: Option<WorkerLink>,
    /// Requests for a page of this worker's flows (`ctl connections`).
    pub queries: Receiver<FlowQuery>,
}

/// A request for one page of a worker's flows, answered between bursts:
/// up to [`PAGE_ENTRIES`] entries of the IPv4 (`family` 4) or IPv6 (6)
/// table from entry `from` on, appended to `flows` (allocated by the
/// asker, so the worker does not allocate), sent back on `reply` with
/// where the next page starts (None: the end).
pub struct FlowQuery {
    pub family: u8,
    pub from: usize,
    pub flows: Vec<FlowInfo>,
    pub reply: Sender<(Vec<FlowInfo>, Option<usize>)>,
}

struct Held<M = Mbuf> {
    mbuf: M,
    port: usize,
    next_hop: IpAddr,
    since: u32,
    /// Its place in the order packets were held: released in that order.
    seq: u64,
    /// Its next hop is one the config names (a real, a gateway, a static
    /// neighbor), not one a stranger chose (a client on a connected
    /// network).
    configured: bool,
}

/// Packets waiting for their next hop's MAC address.
struct Holds<M = Mbuf> {
    slots: Vec<Option<Held<M>>>,
    n: usize,
    /// The next packet's [`Held::seq`].
    next_seq: u64,
}

/// The most packets held for one next hop: one that never answers does not
/// take every slot.
const HOLD_PER_NEXT_HOP: usize = 16;

impl<M> Holds<M> {
    fn new() -> Holds<M> {
        Holds {
            slots: (0..HOLD_SLOTS).map(|_| None).collect(),
            n: 0,
            next_seq: 0,
        }
    }

    /// Holds `m` for `next_hop` on `port`. Beside the bound per next hop:
    /// with every slot taken, a packet for a next hop the config names
    /// takes the slot of the oldest one held for a next hop it does not.
    /// Strangers choose the sources of flows, and so the next hops of
    /// replies to a connected network: spoofed sources there that never
    /// answer ARP kept every slot taken, and the first packets to a newly
    /// resolving real were dropped (found in review).
    fn hold(
        &mut self,
        m: M,
        port: usize,
        next_hop: IpAddr,
        configured: bool,
        now: u32,
    ) -> Holding<M> {
        let same = self
            .slots
            .iter()
            .flatten()
            .filter(|h| h.next_hop == next_hop)
            .count();
        if same >= HOLD_PER_NEXT_HOP {
            return Holding::Refused(m);
        }
        let held = Held {
            mbuf: m,
            port,
            next_hop,
            since: now,
            seq: self.next_seq,
            configured,
        };
        if let Some(free) = self.slots.iter().position(Option::is_none) {
            self.slots[free] = Some(held);
            self.next_seq += 1;
            self.n += 1;
            return Holding::Taken;
        }
        let stranger = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.as_ref().filter(|h| !h.configured).map(|h| (h.seq, i)))
            .min();
        match stranger {
            Some((_, i)) if configured => {
                self.next_seq += 1;
                match self.slots[i].replace(held) {
                    Some(old) => Holding::Replaced(old.mbuf),
                    None => Holding::Taken,
                }
            }
            _ => Holding::Refused(held.mbuf),
        }
    }
}

impl<M> Holds<M> {
    /// Gives `send` every held packet whose next hop `resolve` knows now,
    /// with that MAC address, in the order they were held (slots are
    /// reused out of order, so two packets for one next hop could leave
    /// the wrong way round: found in review), and `expired` every other
    /// one held longer than [`HOLD_MS`].
    /// Drops (through `dropped`) the packets held for a next hop `gone`
    /// says is gone.
    fn forget(&mut self, gone: impl Fn(IpAddr) -> bool, mut dropped: impl FnMut(M)) {
        for slot in &mut self.slots {
            if slot.as_ref().is_some_and(|h| gone(h.next_hop)) {
                if let Some(h) = slot.take() {
                    self.n -= 1;
                    dropped(h.mbuf);
                }
            }
        }
    }

    fn release(
        &mut self,
        now: u32,
        resolve: impl Fn(IpAddr) -> Option<MacAddr>,
        mut expired: impl FnMut(M),
        mut send: impl FnMut(Held<M>, MacAddr),
    ) {
        let mut ready = [(0u64, 0usize, MacAddr::ZERO); HOLD_SLOTS];
        let mut n = 0;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some(h) = slot.as_ref() else { continue };
            if let Some(mac) = resolve(h.next_hop) {
                if let Some(r) = ready.get_mut(n) {
                    *r = (h.seq, i, mac);
                    n += 1;
                }
            } else if now.wrapping_sub(h.since) > HOLD_MS {
                if let Some(h) = slot.take() {
                    self.n -= 1;
                    expired(h.mbuf);
                }
            }
        }
        let ready = &mut ready[..n];
        ready.sort_unstable_by_key(|r| r.0);
        for &(_, i, mac) in ready.iter() {
            // Not an expect: no panic on the per-packet path, even one
            // that cannot happen.
            let Some(h) = self.slots.get_mut(i).and_then(Option::take) else {
                continue;
            };
            self.n -= 1;
            send(h, mac);
        }
    }
}

/// What became of a packet given to [`Holds::hold`].
enum Holding<M> {
    Taken,
    /// Not held: given back.
    Refused(M),
    /// Held, in the place of this one, given back.
    Replaced(M),
}

/// What the loop keeps besides the worker's own parts.
struct Loop {
    /// A burst's frames that wait while what was held for a neighbor the
    /// burst taught us goes first.
    later: MbufBurst,
    out: Vec<MbufBurst>,
    handoff: Vec<MbufBurst>,
    held: Holds,
    /// The SYN proxy's early client data, until its flow's real answered.
    deferred: DeferList<Mbuf>,
    kernel: KernelPath,
}

impl Worker {
    /// Polls until the stop flag is set; finishes the burst in hand first.
    pub fn run(mut self) -> i32 {
        let ports = self.tx.len();
        let workers = self.handoff_out.len();
        let mut rx_burst = MbufBurst::new();
        let mut verdicts = [Verdict::Consumed; MAX_BURST];
        let mut later_verdicts = [Verdict::Consumed; MAX_BURST];
        let mut l = Loop {
            later: MbufBurst::new(),
            out: (0..ports).map(|_| MbufBurst::new()).collect(),
            handoff: (0..workers).map(|_| MbufBurst::new()).collect(),
            held: Holds::new(),
            deferred: DeferList::new(DEFER_SLOTS, DEFER_MS),
            kernel: std::mem::take(&mut self.kernel),
        };
        // DPDK port id -> our port index.
        let port_index = {
            let max = self.rx.iter().map(|q| q.port().id().0).max().unwrap_or(0) as usize;
            let mut v = vec![usize::MAX; max + 1];
            for (i, q) in self.rx.iter().enumerate() {
                v[q.port().id().0 as usize] = i;
            }
            v
        };
        let stats = Arc::clone(&self.stats);
        stats.generation.set_release(self.snapshot.generation);
        self.pipeline.adopt(&self.snapshot);
        let start = dpdk::rdtsc();
        let tsc_per_ms = self.tsc_per_ms;
        let mut backoff = Backoff::new(self.poll);
        let mut announce = Announce::default();
        log::info!(
            "worker {} polling {} port(s), burst {}, poll {}",
            self.index,
            ports,
            self.burst,
            self.poll
        );
        let mut clock = Clock::new(start, tsc_per_ms);
        while !self.stop.load(Ordering::Relaxed) {
            let now = clock.now(dpdk::rdtsc());
            if let Ok(next) = self.updates.try_recv() {
                let next = self.updates.try_iter().last().unwrap_or(next);
                if self.index == 0 {
                    announce.adopt(&self.snapshot, &next, now);
                }
                // What waits for a next hop the config named and names
                // no more (a real or gateway a reload removed) is not sent
                // there once it answers (found in audit: for up to 3 s it
                // was), as deferred frames are run again below.
                if l.held.n > 0 {
                    let (old, new) = (&self.snapshot, &next);
                    l.held.forget(
                        |hop| old.is_configured_next_hop(hop) && !new.is_configured_next_hop(hop),
                        |_| stats.drop_packet(DropReason::RealRemoved),
                    );
                }
                // The old snapshot is kept until the pipeline has adopted
                // the new one (its schedulers let go of the old one's),
                // so that the control thread, which reaps replaced
                // snapshots nobody else holds, makes the last drop of
                // every Maglev table (found in review: reaped between the
                // two, the worker's adopt freed them in its loop).
                let old = std::mem::replace(&mut self.snapshot, next);
                self.pipeline.adopt(&self.snapshot);
                drop(old);
                l.deferred.recheck();
                stats.generation.set_release(self.snapshot.generation);
            }
            let mut told = false;
            for (ip, mac) in self.neighbors_in.try_iter() {
                self.pipeline.learn_neighbor(&self.snapshot, ip, mac, now);
                told = true;
            }
            // What waited for those neighbors goes now, ahead of this
            // poll's packets to them (found in audit: released at the end
            // of the poll, held packets left after newer ones of their
            // flow, the reordering `Holds::release` keeps them from).
            if told {
                release_held(
                    &self.pipeline,
                    &self.snapshot,
                    &mut l,
                    now,
                    &mut self.tx,
                    &stats,
                );
            }
            // Packets other workers handed to us: we own their flows.
            let mut handed = 0;
            for ring in 0..self.handoff_in.len() {
                let n = self.handoff_in[ring].dequeue(&mut rx_burst, self.burst);
                if n == 0 {
                    continue;
                }
                handed += n;
                stats.handoffs_in.add(n as u64);
                for mut m in rx_burst.drain() {
                    let port = port_index
                        .get(usize::from(m.port_id()))
                        .copied()
                        .unwrap_or(usize::MAX);
                    let v = self.pipeline.process(&self.snapshot, port, &mut m, now);
                    if let Some((m, v)) = route(v, m, &mut l.out, &mut self.tx, &stats) {
                        // Never handed on again: only held, deferred, or
                        // counted.
                        keep(
                            &mut l,
                            &self.pipeline,
                            &self.snapshot,
                            m,
                            port,
                            v,
                            now,
                            &stats,
                        );
                    }
                }
            }
            // Our own queues, a burst at a time.
            let mut received = 0;
            for port in 0..ports {
                // A chained mbuf never reaches the pipeline, which sees one
                // segment, nor one whose buffer is shared, which it writes
                // in place: the queue frees them, counted here.
                let n = self.rx[port].rx_burst(&mut rx_burst, self.burst, |r| stats.drop_packet(r));
                if n == 0 {
                    continue;
                }
                received += n;
                let n = rx_burst.len();
                let v = &mut verdicts[..n];
                self.pipeline
                    .process_burst(&self.snapshot, port, rx_burst.as_mut_slice(), v, now);
                // A neighbor this burst taught us (its ARP reply or
                // advertisement among the frames): what waits for it is
                // older than the burst's packets to it, so it goes first
                // (found in audit: released at the end of the poll, it went
                // after them, as `told` above keeps from for neighbors other
                // workers learn). The burst's own packets held for it came
                // before the answer, so they are held first, then all
                // released, then the rest of the burst follows.
                let learned = self.pipeline.has_learned();
                let mut later = 0;
                for (m, v) in rx_burst.drain().zip(v.iter()) {
                    // The common verdict, a frame to send, goes into its
                    // port's tx burst here: through `dispose` (ten
                    // arguments, not inlined) it cost about 60
                    // instructions a packet, a third of the worker's own
                    // outside the pipeline (callgrind, NAT at 10k flows).
                    // Not when the burst taught us a neighbor: then its
                    // frames keep their order behind what was held (below).
                    if let Verdict::Transmit(to) = *v {
                        let to = usize::from(to);
                        if !learned && to < l.out.len() {
                            enqueue(&mut l.out, &mut self.tx, to, m, &stats);
                            continue;
                        }
                    }
                    if learned && !matches!(v, Verdict::Hold { .. } | Verdict::Hold6 { .. }) {
                        if let Err(m) = l.later.push(m) {
                            // (The same capacity as the burst: cannot be.)
                            drop(m);
                            stats.drop_packet(DropReason::HandoffFull);
                        } else {
                            later_verdicts[later] = *v;
                            later += 1;
                        }
                        continue;
                    }
                    dispose(
                        &mut l,
                        &mut self.tx,
                        &mut self.handoff_out,
                        &self.pipeline,
                        &self.snapshot,
                        m,
                        *v,
                        port,
                        now,
                        &stats,
                    );
                }
                if learned {
                    release_held(
                        &self.pipeline,
                        &self.snapshot,
                        &mut l,
                        now,
                        &mut self.tx,
                        &stats,
                    );
                    let mut rest = std::mem::take(&mut l.later);
                    for (m, v) in rest.drain().zip(&later_verdicts[..later]) {
                        dispose(
                            &mut l,
                            &mut self.tx,
                            &mut self.handoff_out,
                            &self.pipeline,
                            &self.snapshot,
                            m,
                            *v,
                            port,
                            now,
                            &stats,
                        );
                    }
                    l.later = rest;
                }
            }
            for (w, burst) in l.handoff.iter_mut().enumerate() {
                if let Some(ring) = self.handoff_out[w].as_mut() {
                    if !burst.is_empty() {
                        ring.enqueue(burst);
                        if let Some(bell) = self.doorbells.get(w) {
                            bell.ring();
                        }
                        let failed = burst.free_all();
                        if failed > 0 {
                            stats.drop_packets(DropReason::HandoffFull, failed as u64);
                        }
                    }
                }
            }
            // SYNs to reals the SYN proxy sends again (a proxied flow's
            // real silent while its client is still at it, or for a
            // second or more), each in a buffer of its own; before the ARP
            // requests, which a SYN held for its next hop may have added.
            // One that finds the pool empty is counted (`no_mbuf`) by the
            // pipeline and stays due for a later poll: at most one buffer
            // asked for per flow named, the queue's 16 per family a poll.
            self.pipeline.syn_timers(&self.snapshot, now);
            if self.pipeline.syn_resends_due() {
                let (out, tx, held, pool) = (&mut l.out, &mut self.tx, &mut l.held, &self.mempool);
                let snap = &self.snapshot;
                self.pipeline.resend_syns_with(
                    snap,
                    now,
                    || pool.alloc(),
                    |p, m, v| {
                        if let Some((m, v)) = route(v, m, out, tx, &stats) {
                            hold_made(p, snap, held, m, v, now, &stats);
                        }
                    },
                );
            }
            // Tell the other workers what we learned; ask for what we miss.
            for (ip, mac) in self.pipeline.take_learned() {
                for tx in &self.neighbors_out {
                    let _ = tx.try_send((ip, mac));
                }
            }
            for req in self.pipeline.take_arp_requests() {
                let Some(view) = self.snapshot.ports.get(req.port) else {
                    continue;
                };
                // Only a port with an IPv4 address is routed by, so asked from.
                let Some(ip) = view.ipv4() else {
                    continue;
                };
                // Without a buffer: asked again by a later packet for that
                // next hop, once the neighbor cache's request interval allows.
                if let Some(m) = make_frame(&self.mempool, &stats, |m| {
                    build_arp_request(m, view.mac, ip, req.target)
                }) {
                    stats.arp_requests.incr();
                    enqueue(&mut l.out, &mut self.tx, req.port, m, &stats);
                }
            }
            for req in self.pipeline.take_ndp_requests() {
                let Some(view) = self.snapshot.ports.get(req.port) else {
                    continue;
                };
                let Some(ip) = view.ipv6() else {
                    continue;
                };
                if let Some(m) = make_frame(&self.mempool, &stats, |m| {
                    build_neighbor_solicit(m, view.mac, ip, req.target)
                }) {
                    stats.ndp_solicitations.incr();
                    enqueue(&mut l.out, &mut self.tx, req.port, m, &stats);
                }
            }
            // A floating gateway this appliance just took: tell the segment.
            if announce.is_due(now) {
                let (out, tx) = (&mut l.out, &mut self.tx);
                announce.send(&self.snapshot, now, &self.mempool, &stats, |port, m| {
                    enqueue(out, tx, port, m, &stats)
                });
            }
            // Early data whose flow's real answered: on its way now, before
            // what waits for ARP (it may join it) and before the flush.
            if l.deferred.due(&self.pipeline, now) {
                let (out, tx, held) = (&mut l.out, &mut self.tx, &mut l.held);
                let snap = &self.snapshot;
                l.deferred
                    .release_with(&mut self.pipeline, snap, now, |p, m, v| {
                        if let Some((m, v)) = route(v, m, out, tx, &stats) {
                            hold_made(p, snap, held, m, v, now, &stats);
                        }
                    });
            }
            release_held(
                &self.pipeline,
                &self.snapshot,
                &mut l,
                now,
                &mut self.tx,
                &stats,
            );
            // The kernel interfaces: what is for them, and what they sent.
            let (out, tx) = (&mut l.out, &mut self.tx);
            let from_kernel = l.kernel.exchange(self.burst, &stats, |port, m| {
                enqueue(out, tx, port, m, &stats)
            });
            for (to, burst) in l.out.iter_mut().enumerate() {
                flush(&mut self.tx[to], to, burst, &stats);
            }
            // A busy worker sweeps 16 entries per poll: at a few hundred
            // thousand polls a second that still passes over a 1M-entry
            // table several times a second (timeouts are seconds to
            // hours), without reading a cache line per packet for it. A
            // sleeping one polls at most a few thousand times a second
            // and looks at 16 times as many per poll: a 1M-entry table
            // in well under a second still (the look at a free entry is a
            // byte read).
            let budget = if received > 0 {
                SWEEP_BUDGET / 16
            } else if backoff.sleeping() {
                SWEEP_BUDGET * 16
            } else {
                SWEEP_BUDGET
            };
            self.pipeline.sweep(&self.snapshot, now, budget);
            // A page of flows for `ctl connections`, rarely.
            if let Ok(mut q) = self.queries.try_recv() {
                let next = match q.family {
                    6 => self.pipeline.flows6().and_then(|t| {
                        listing::page(t, &self.snapshot, now, q.from, PAGE_ENTRIES, &mut q.flows)
                    }),
                    _ => listing::page(
                        self.pipeline.flows(),
                        &self.snapshot,
                        now,
                        q.from,
                        PAGE_ENTRIES,
                        &mut q.flows,
                    ),
                };
                let _ = q.reply.try_send((q.flows, next));
            }
            // Connection sync: hand over what the sweep collected for the
            // peer (primary), or install what the peer sent (backup).
            if let Some(link) = self.sync.as_mut() {
                link.between_bursts(&mut self.pipeline, &self.snapshot, now);
            }
            stats.polls.incr();
            for (c, n) in stats
                .neighbor_requests_refused
                .iter()
                .zip(self.pipeline.neighbor_requests_refused())
            {
                c.set(n);
            }
            if received > 0 {
                stats.rx_packets.add(received as u64);
                stats.busy_polls.incr();
            }
            // Everything of this poll is sent or queued: nothing waits in
            // our bursts while we pause or sleep.
            backoff
                .after_poll(received + handed + from_kernel > 0)
                .wait(&self.doorbells[self.index]);
        }
        // What is still deferred or held goes back to the pool, counted
        // (found in review: held packets went uncounted).
        let left = l.deferred.drain().count();
        stats.drop_packets(DropReason::SynProxyPending, left as u64);
        let held = l.held.slots.iter_mut().filter_map(Option::take).count();
        l.held.n = 0;
        stats.drop_packets(DropReason::NeighborUnresolved, held as u64);
        // And what other workers handed us and we will not run, counted as
        // if our rings were full: until every worker has left its loop (a
        // peer still in its last poll hands us more after our first look;
        // found in audit: those were freed uncounted with the rings), then
        // once more. Bounded: a peer that never leaves is stuck, which the
        // engine's stop deadline reports.
        let workers = self.handoff_out.len();
        self.left.fetch_add(1, Ordering::Release);
        let deadline = std::time::Instant::now() + HANDOFF_DRAIN_DEADLINE;
        let mut scratch = MbufBurst::new();
        loop {
            let all_left = self.left.load(Ordering::Acquire) >= workers;
            for ring in &mut self.handoff_in {
                for _ in 0..64 {
                    if ring.dequeue(&mut scratch, MAX_BURST) == 0 {
                        break;
                    }
                    stats.drop_packets(DropReason::HandoffFull, scratch.free_all() as u64);
                }
            }
            if all_left || std::time::Instant::now() >= deadline {
                break;
            }
            std::thread::yield_now();
        }
        log::info!("worker {} stopped", self.index);
        0
    }
}

/// Gratuitous ARPs (IPv4) and unsolicited Neighbor Advertisements (IPv6)
/// sent for a floating gateway this appliance took (`[sync] gateway`):
/// [`ANNOUNCEMENTS`] of each, [`ANNOUNCE_SPACING_MS`] apart, as keepalived
/// does, so that a host that missed one (or whose neighbor entry was
/// locked for a second after its last change, Linux's `locktime`) takes
/// the next. Worker 0 sends them for the appliance.
#[derive(Default)]
struct Announce {
    /// (port, announcements left, when the next is due).
    due: Vec<(usize, u8, u32)>,
}

/// How many of each announcement go out.
pub const ANNOUNCEMENTS: u8 = 3;
/// Milliseconds between two.
pub const ANNOUNCE_SPACING_MS: u32 = 1_000;

impl Announce {
    /// A new snapshot: a port that floats a gateway it did not before (or
    /// any that floats one, when the control thread asks again) is
    /// announced from now on; one that no longer floats it, no longer.
    fn adopt(&mut self, old: &Snapshot, new: &Snapshot, now: u32) {
        self.due.retain(|&(port, _, _)| {
            new.ports
                .get(port)
                .is_some_and(|p| p.floating.is_some() || p.floating6.is_some())
        });
        let again = new.announce_epoch != old.announce_epoch;
        for (i, p) in new.ports.iter().enumerate() {
            let before = old.ports.get(i);
            let took = (p.floating.is_some()
                && (again || before.and_then(|b| b.floating) != p.floating))
                || (p.floating6.is_some()
                    && (again || before.and_then(|b| b.floating6) != p.floating6));
            if took {
                self.due.retain(|&(port, _, _)| port != i);
                self.due.push((i, ANNOUNCEMENTS, now));
            }
        }
    }

    #[inline]
    fn is_due(&self, now: u32) -> bool {
        self.due
            .iter()
            .any(|&(_, _, at)| now.wrapping_sub(at) < u32::MAX / 2)
    }

    /// Sends what is due through `out` (port, frame).
    fn send(
        &mut self,
        snap: &Snapshot,
        now: u32,
        mempool: &Mempool,
        stats: &WorkerStats,
        mut out: impl FnMut(usize, Mbuf),
    ) {
        for (port, left, at) in self.due.iter_mut() {
            if now.wrapping_sub(*at) >= u32::MAX / 2 {
                continue; // not yet
            }
            let Some(view) = snap.ports.get(*port) else {
                *left = 0;
                continue;
            };
            // A frame that finds no buffer is counted; the next of the
            // announcement's repeats goes as planned.
            if let Some(gw) = view.floating {
                if let Some(m) =
                    make_frame(mempool, stats, |m| build_gratuitous_arp(m, view.mac, gw))
                {
                    out(*port, m);
                }
            }
            if let Some(gw6) = view.floating6 {
                if let Some(m) = make_frame(mempool, stats, |m| {
                    build_unsolicited_advert(m, view.mac, gw6)
                }) {
                    out(*port, m);
                }
            }
            *left -= 1;
            *at = now.wrapping_add(ANNOUNCE_SPACING_MS);
        }
        self.due.retain(|&(_, left, _)| left > 0);
    }
}

/// A frame the worker makes itself (an ARP request, a neighbor
/// solicitation, an announcement): a buffer from `pool` that `build` fills
/// (false: nothing to send, and the buffer goes back). When the pool is
/// empty, counted as dropped `no_mbuf`.
fn make_frame(
    pool: &Mempool,
    stats: &WorkerStats,
    build: impl FnOnce(&mut Mbuf) -> bool,
) -> Option<Mbuf> {
    let Some(mut m) = pool.alloc() else {
        stats.drop_packet(DropReason::NoMbuf);
        return None;
    };
    build(&mut m).then_some(m)
}

/// Acts on a verdict: transmits and drops are done here; a packet to hold
/// or hand off is given back.
#[inline]
fn route(
    v: Verdict,
    m: Mbuf,
    out: &mut [MbufBurst],
    tx: &mut [TxQueue],
    stats: &WorkerStats,
) -> Option<(Mbuf, Verdict)> {
    match v {
        Verdict::Transmit(to) if usize::from(to) < out.len() => {
            enqueue(out, tx, usize::from(to), m, stats);
            None
        }
        Verdict::Transmit(_) => {
            stats.drop_packet(DropReason::NoRoute);
            None
        }
        Verdict::Drop(reason) => {
            stats.drop_packet(reason);
            None
        }
        Verdict::Consumed => {
            stats.consumed.incr();
            None
        }
        v @ (Verdict::HandOff(_)
        | Verdict::Hold { .. }
        | Verdict::Hold6 { .. }
        | Verdict::Defer { .. }
        | Verdict::Defer6 { .. }
        | Verdict::ToKernel) => Some((m, v)),
    }
}

/// Where a frame of one of our rx bursts goes after the pipeline's
/// verdict `v`: sent, dropped, handed to the worker that owns its flow, or
/// kept here (held, deferred, to the kernel).
#[allow(clippy::too_many_arguments)]
#[inline]
fn dispose(
    l: &mut Loop,
    tx: &mut [TxQueue],
    handoff_out: &mut [Option<RingProducer>],
    pipeline: &Pipeline,
    snap: &Snapshot,
    m: Mbuf,
    v: Verdict,
    port: usize,
    now: u32,
    stats: &WorkerStats,
) {
    let Some((m, v)) = route(v, m, &mut l.out, tx, stats) else {
        return;
    };
    match v {
        Verdict::HandOff(w) if handoff_out.get(usize::from(w)).is_some_and(Option::is_some) => {
            let w = usize::from(w);
            if let Err(m) = l.handoff[w].push(m) {
                // The burst is full: pass it on now and start another.
                if let Some(ring) = handoff_out[w].as_mut() {
                    ring.enqueue(&mut l.handoff[w]);
                }
                if l.handoff[w].is_full() {
                    stats.drop_packet(DropReason::HandoffFull);
                } else {
                    let _ = l.handoff[w].push(m);
                }
            }
        }
        v => keep(l, pipeline, snap, m, port, v, now, stats),
    }
}

/// A packet received on port index `in_port` that waits here: held for
/// ARP, queued for the port's kernel interface, or deferred by the SYN proxy (the owner of its flow defers it:
/// never the worker that handed it on).
#[allow(clippy::too_many_arguments)]
fn keep(
    l: &mut Loop,
    pipeline: &Pipeline,
    snap: &Snapshot,
    m: Mbuf,
    in_port: usize,
    v: Verdict,
    now: u32,
    stats: &WorkerStats,
) {
    match v {
        // Its next hop is named by the pipeline until its next call.
        Verdict::Hold6 { port, index } => match pipeline.held_next_hop6(index) {
            Some(next_hop) => hold_for(
                &mut l.held,
                snap,
                m,
                usize::from(port),
                next_hop.into(),
                now,
                stats,
            ),
            None => stats.drop_packet(DropReason::NeighborUnresolved),
        },
        Verdict::Defer { .. } | Verdict::Defer6 { .. } => {
            if let Err(m) = l.deferred.push(m, in_port, v, now, stats) {
                // Every slot is taken: dropped, as before deferring.
                stats.drop_packet(DropReason::SynProxyPending);
                drop(m);
            }
        }
        Verdict::ToKernel => l.kernel.push(snap, in_port, m, now, stats),
        v => hold(&mut l.held, snap, m, v, now, stats),
    }
}

/// [`hold`] for a frame the pipeline made or ran again between bursts (a
/// SYN sent again, a deferred segment), given the pipeline right after
/// that frame's run: a NAT66 flow's frame held for its next hop
/// ([`Verdict::Hold6`]) has it named there.
#[allow(clippy::too_many_arguments)]
fn hold_made(
    p: &Pipeline,
    snap: &Snapshot,
    held: &mut Holds,
    m: Mbuf,
    v: Verdict,
    now: u32,
    stats: &WorkerStats,
) {
    match v {
        Verdict::Hold6 { port, index } => match p.held_next_hop6(index) {
            Some(h) => hold_for(held, snap, m, usize::from(port), h.into(), now, stats),
            None => stats.drop_packet(DropReason::NeighborUnresolved),
        },
        v => hold(held, snap, m, v, now, stats),
    }
}

fn hold(held: &mut Holds, snap: &Snapshot, m: Mbuf, v: Verdict, now: u32, stats: &WorkerStats) {
    match v {
        Verdict::Hold { port, next_hop } => hold_for(
            held,
            snap,
            m,
            usize::from(port),
            next_hop.into(),
            now,
            stats,
        ),
        // Only `keep` and `hold_made` can ask the pipeline for an IPv6
        // next hop; none comes here.
        Verdict::Hold6 { .. } => stats.drop_packet(DropReason::NeighborUnresolved),
        // A packet handed off twice would be a bug in ownership, and one
        // deferred again on its re-run stays in its list: count it.
        _ => stats.drop_packet(DropReason::HandoffFull),
    }
}

#[allow(clippy::too_many_arguments)]
fn hold_for(
    held: &mut Holds,
    snap: &Snapshot,
    m: Mbuf,
    port: usize,
    next_hop: IpAddr,
    now: u32,
    stats: &WorkerStats,
) {
    let configured = snap.is_configured_next_hop(next_hop);
    match held.hold(m, port, next_hop, configured, now) {
        Holding::Taken => stats.held.incr(),
        Holding::Refused(m) => {
            stats.drop_packet(DropReason::NeighborUnresolved);
            drop(m);
        }
        Holding::Replaced(old) => {
            stats.held.incr();
            stats.drop_packet(DropReason::NeighborUnresolved);
            drop(old);
        }
    }
}

/// Sends held packets whose next hop resolved, in the order they were
/// held; drops those that waited too long. Nothing when nothing is held.
#[inline]
fn release_held(
    pipeline: &Pipeline,
    snap: &Snapshot,
    l: &mut Loop,
    now: u32,
    tx: &mut [TxQueue],
    stats: &WorkerStats,
) {
    let Loop { held, out, .. } = l;
    if held.n == 0 {
        return;
    }
    held.release(
        now,
        |next_hop| pipeline.resolved(snap, next_hop),
        |_expired| stats.drop_packet(DropReason::NeighborUnresolved),
        |mut h, mac| match snap.ports.get(h.port) {
            Some(p) if h.port < out.len() => {
                forward::set_macs(h.mbuf.data_mut(), mac, p.mac);
                enqueue(out, tx, h.port, h.mbuf, stats);
            }
            // A port that is no more (it cannot be: ports change only with
            // a restart): counted, not freed silently.
            _ => stats.drop_packet(DropReason::NoRoute),
        },
    );
}

#[inline]
fn enqueue(out: &mut [MbufBurst], tx: &mut [TxQueue], to: usize, m: Mbuf, stats: &WorkerStats) {
    if let Err(m) = out[to].push(m) {
        flush(&mut tx[to], to, &mut out[to], stats);
        let _ = out[to].push(m);
    }
}

/// Sends `burst` on `txq`, the queue of port index `to` (config order).
fn flush(txq: &mut TxQueue, to: usize, burst: &mut MbufBurst, stats: &WorkerStats) {
    if burst.is_empty() {
        return;
    }
    let mut sent = txq.tx_burst(burst);
    // One retry: a ring that was momentarily full often has room again.
    if !burst.is_empty() {
        sent += txq.tx_burst(burst);
    }
    stats.tx_packets.add(sent as u64);
    let failed = burst.free_all();
    if failed > 0 {
        stats.drop_packets(DropReason::TxFull, failed as u64);
        // By port index, as the exporter reads it: a DPDK port id can
        // be past `MAX_PORTS` (vdevs, representors), a port index cannot
        // (found in audit: such a port's count was lost).
        if let Some(c) = stats.tx_failed.get(to) {
            c.add(failed as u64);
        }
    }
}

/// A worker's clock: milliseconds since its start, from the TSC, handed
/// to the pipeline as a `u32` that wraps every 49.7 days (every stamp the
/// pipeline compares is compared wrapping).
#[derive(Debug)]
struct Clock {
    start: u64,
    tsc_per_ms: u64,
    /// The last reading, in ms: the clock never goes back.
    ms: u64,
}

impl Clock {
    fn new(start: u64, tsc_per_ms: u64) -> Clock {
        Clock {
            start,
            tsc_per_ms: tsc_per_ms.max(1),
            ms: 0,
        }
    }

    /// The time at TSC reading `tsc`. A reading behind the start's or
    /// the last one's (an lcore on a CPU set whose TSCs are not in sync)
    /// is the last time again: behind the start, a wrapped difference
    /// jumped the clock by ages (found in audit); behind the last poll,
    /// every stamp of the last few milliseconds was 2^32 ms old to the
    /// pipeline, and the sweep ended the live flows it had just touched
    /// (found in audit).
    #[inline]
    fn now(&mut self, tsc: u64) -> u32 {
        self.ms = self
            .ms
            .max(tsc.saturating_sub(self.start) / self.tsc_per_ms);
        self.ms as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found in audit: the clock was read afresh at every poll, and a
    /// reading behind the last one's (another CPU's TSC) went back in
    /// time; the pipeline then took every stamp of the last milliseconds
    /// for 49.7 days old and its sweep ended live flows.
    #[test]
    fn the_clock_never_goes_back() {
        let mut c = Clock::new(1_000_000, 1_000);
        assert_eq!(c.now(999_000), 0, "behind the start");
        assert_eq!(c.now(1_005_000), 5);
        assert_eq!(c.now(1_004_000), 5, "behind the last reading");
        assert_eq!(c.now(1_007_999), 7);
        // Wraps as the pipeline's clock does, after 2^32 ms.
        let wrap = 1_000_000 + (1u64 << 32) * 1_000;
        assert_eq!(c.now(wrap + 3_000), 3);
        assert_eq!(Clock::new(0, 0).now(42), 42, "no division by zero");
    }

    fn ip(i: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0xc612_0000 + i))
    }

    /// Found in review: slots are reused out of order, and packets left in
    /// slot order. They leave in the order they were held.
    #[test]
    fn held_packets_leave_in_the_order_they_were_held() {
        let mut h: Holds<u32> = Holds::new();
        let mac = MacAddr([2, 0, 0, 0, 0, 9]);
        // Fill slots 0..4, free 1 and 3 (their next hop, ip(9), resolves
        // first), then hold more: they take slots 1 and 3, before older
        // packets in slots 2 and 4.
        for (k, hop) in [(0, 1), (1, 9), (2, 1), (3, 9), (4, 1)] {
            assert!(matches!(h.hold(k, 0, ip(hop), false, 0), Holding::Taken));
        }
        let mut sent = Vec::new();
        h.release(
            1,
            |hop| (hop == ip(9)).then_some(mac),
            |_| panic!("nothing expired"),
            |p, m| sent.push((p.mbuf, m)),
        );
        assert_eq!(sent, [(1, mac), (3, mac)]);
        for k in [5, 6] {
            assert!(matches!(h.hold(k, 0, ip(1), false, 2), Holding::Taken));
        }
        assert_eq!(h.n, 5);
        let mut sent = Vec::new();
        h.release(
            3,
            |hop| (hop == ip(1)).then_some(mac),
            |_| panic!("nothing expired"),
            |p, _| sent.push(p.mbuf),
        );
        assert_eq!(sent, [0, 2, 4, 5, 6]);
        assert_eq!(h.n, 0);
    }

    #[test]
    fn held_packets_of_an_unresolved_next_hop_expire() {
        let nothing = |_: IpAddr| None;
        // Held at 0, and just before the worker's clock wraps.
        for since in [0, u32::MAX - 5] {
            let mut h: Holds<u32> = Holds::new();
            assert!(matches!(h.hold(1, 0, ip(1), false, since), Holding::Taken));
            let mut gone = Vec::new();
            let at = |ms: u32| since.wrapping_add(ms);
            h.release(at(HOLD_MS), nothing, |p| gone.push(p), |_, _| panic!());
            assert!(gone.is_empty(), "not yet, held at {since}");
            h.release(at(HOLD_MS + 1), nothing, |p| gone.push(p), |_, _| panic!());
            assert_eq!(gone, [1], "held at {since}");
            assert_eq!(h.n, 0);
        }
    }

    #[test]
    fn one_next_hop_takes_a_bounded_share_of_the_slots() {
        let mut h: Holds<u32> = Holds::new();
        for k in 0..HOLD_PER_NEXT_HOP as u32 {
            assert!(matches!(h.hold(k, 0, ip(1), false, 0), Holding::Taken));
        }
        assert!(matches!(
            h.hold(99, 0, ip(1), true, 0),
            Holding::Refused(99)
        ));
        assert!(matches!(h.hold(7, 0, ip(2), false, 0), Holding::Taken));
        assert_eq!(h.n, HOLD_PER_NEXT_HOP + 1);
    }

    /// Found in review: replies to spoofed clients on a connected network
    /// that never answer ARP kept every slot, and first packets to a real
    /// being resolved were dropped. Now those take a stranger's slot, the
    /// oldest; a stranger's packet does not.
    /// Found in audit: packets held for a real or gateway a reload
    /// removed were sent there once it answered ARP.
    #[test]
    fn forgetting_a_next_hop_drops_only_its_held_packets() {
        let mut h: Holds<u32> = Holds::new();
        let (gone, kept): (IpAddr, IpAddr) = (
            "198.18.0.11".parse().unwrap(),
            "198.18.0.12".parse().unwrap(),
        );
        for (i, hop) in [gone, kept, gone].into_iter().enumerate() {
            assert!(matches!(h.hold(i as u32, 0, hop, true, 0), Holding::Taken));
        }
        let mut dropped = Vec::new();
        h.forget(|hop| hop == gone, |m| dropped.push(m));
        assert_eq!(dropped, [0, 2]);
        assert_eq!(h.n, 1);
        let mut sent = Vec::new();
        h.release(
            1,
            |_| Some(MacAddr::ZERO),
            |_| {},
            |held, _| sent.push(held.mbuf),
        );
        assert_eq!(sent, [1]);
    }

    #[test]
    fn a_configured_next_hop_takes_the_oldest_strangers_slot() {
        let mut h: Holds<u32> = Holds::new();
        for k in 0..HOLD_SLOTS as u32 {
            assert!(matches!(
                h.hold(k, 0, ip(100 + k), false, k),
                Holding::Taken
            ));
        }
        assert!(
            matches!(h.hold(1000, 0, ip(999), false, 100), Holding::Refused(1000)),
            "full: another stranger is refused"
        );
        assert!(
            matches!(h.hold(2000, 0, ip(1), true, 100), Holding::Replaced(0)),
            "the oldest stranger's packet goes"
        );
        assert!(matches!(
            h.hold(2001, 0, ip(1), true, 100),
            Holding::Replaced(1)
        ));
        assert_eq!(h.n, HOLD_SLOTS);
        // Every slot a configured next hop's: nothing to give up.
        let mut all: Holds<u32> = Holds::new();
        for k in 0..HOLD_SLOTS as u32 {
            assert!(matches!(all.hold(k, 0, ip(k), true, 0), Holding::Taken));
        }
        assert!(matches!(
            all.hold(9, 0, ip(500), true, 0),
            Holding::Refused(9)
        ));
    }
}
