//! What happens to one received frame, as a short sequence of stages:
//!
//! 1. **classify** (`classify`): the frame is parsed once, through the
//!    `wire` views, into a [`Parsed`].
//! 2. **local** (`local`): ARP and ICMP echo for our addresses are answered
//!    here; ICMP errors about a flow go on with that flow.
//! 3. **conntrack** (`crate::flow::Conntrack`): the packet's flow is looked
//!    up, or created;
//! 4. **schedule** (`crate::scheduler::Schedulers`): a new flow's real is
//!    chosen (or its persistence template's is kept, in conntrack);
//! 5. **rewrite** (`crate::forward`): NAT rewrites the frame; TUN wraps it
//!    (or answers "fragmentation needed") and DR only changes MACs, both as
//!    they leave;
//! 6. **egress** (`egress`): route, MTU, neighbor.
//!
//! A frame whose flow another worker owns is handed to it untouched; any
//! other frame that is not sent ends as a counted drop reason. Works on any
//! [`PacketBuf`], so the same code runs on mbufs, on pcap replays, in unit
//! tests and under the fuzzer.

pub mod classify;
mod deferred;
mod egress;
mod ipv6;
mod local;
mod synproxy;
mod synproxy6;
mod tunnel_errors;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use lb_config::{ForwardingMethod, MacAddr};

pub use classify::{
    classify, classify_offloaded, classify_then, Ipv4Meta, Ipv6Meta, Parsed, Ports, L3, L4,
};
pub use deferred::{DeferList, DEFER_MS, DEFER_SLOTS};
pub use egress::{ArpRequest, NdpRequest, HELD6, ICMP_BURST, ICMP_RATE};
pub use local::{
    build_arp_request, build_gratuitous_arp, build_neighbor_solicit, build_unsolicited_advert,
    ARP_REQUEST_LEN, NEIGHBOR_SOLICIT_LEN, UNSOLICITED_ADVERT_LEN,
};

use crate::buffer::PacketBuf;
use crate::flow::{
    self, Conntrack, FlowAddr, FlowKey, FlowTable, IndexSeed, ProxyStep, ReplyKey, ReplyStep,
    Segment,
};
use crate::forward::{icmp, nat, L4 as L4_OFFSET};
use crate::scheduler::Schedulers;
use crate::snapshot::{RealRoute, Snapshot};
use crate::stats::{DropReason, WorkerStats};
use crate::synproxy::CookieKey;
use crate::wire::{EthernetFrame, Icmpv4Type, IpProtocol};
use egress::{Egress, FrameRewrite};

/// The fate of a frame. Eight bytes, so that it travels in a register:
/// port and worker indices are small (`stats::MAX_PORTS`, the lcores), and
/// a wider verdict, built on the stack with a narrow store and copied out
/// with a wide load, stalled store forwarding on every dropped packet.
/// The verdicts of a frame on its way (`Transmit`, `Hold`, `Hold6`) come
/// first, so that testing for them (`count_forwarded`, every forwarded
/// packet) is one compare of the tag, not a bit test of a mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send the (rewritten) frame out of this port index.
    Transmit(u16),
    /// Rewritten except for the destination MAC, which is being resolved:
    /// hold it, then send it out of `port` to `next_hop`'s MAC.
    Hold { port: u16, next_hop: Ipv4Addr },
    /// [`Verdict::Hold`] for an IPv6 next hop, which does not fit here:
    /// [`Pipeline::held_next_hop6`] of `index` names it, until the next
    /// call into the pipeline.
    Hold6 { port: u16, index: u16 },
    /// Drop it, counting the reason.
    Drop(DropReason),
    /// Give it, untouched, to this worker: it owns the flow.
    HandOff(u16),
    /// Used up here (an ARP reply we learned from).
    Consumed,
    /// Untouched, to be kept and run again with
    /// [`Pipeline::process_deferred`] (a [`DeferList`] does both): a SYN
    /// proxy client's early data, whose flow (`client`:`client_port`, the
    /// frame's source) waits for its real.
    Defer { client_port: u16, client: Ipv4Addr },
    /// [`Verdict::Defer`] for a client of an IPv6 (NAT66) service, whose
    /// address does not fit here: it is the frame's IPv6 source (the
    /// frame is untouched), which [`DeferList::push`] reads. Unlike
    /// [`Verdict::Hold6`]'s next hop, nothing the frame lacks needs
    /// naming, so no index into the pipeline.
    Defer6 { client_port: u16 },
    /// Untouched, to the kernel interface of the port it came in on: for
    /// the port's own address and not handled here (TCP and UDP to it,
    /// ICMP other than echo requests, ARP replies and neighbor
    /// advertisements once learned from). Only on a port with a
    /// `kernel_interface`; elsewhere these frames are dropped as before.
    ToKernel,
}

const _: () = assert!(std::mem::size_of::<Verdict>() == 8);

/// How many entries the sweep looks at per call.
pub const SWEEP_BUDGET: usize = 256;

/// One worker's packet state: its flows, scheduler states and neighbor
/// cache. Owned by the worker; nothing shared.
pub struct Pipeline {
    index: usize,
    workers: usize,
    conntrack: Conntrack,
    /// The IPv6 flow table: made when a snapshot first has a port with an
    /// IPv6 address (ports change only with a restart).
    conntrack6: Option<Conntrack<Ipv6Addr>>,
    flow_capacity: usize,
    schedulers: Schedulers,
    egress: Egress,
    stats: Arc<WorkerStats>,
    /// The current chunk of a burst, classified (reused: no allocation;
    /// `None` only while a burst has it).
    chunk: Option<Box<[Classified; 3 * SUB]>>,
    /// Flows from which bursts run in three stages ([`DEEP_FLOWS`]; a
    /// test sets it to run them so with few).
    deep_from: usize,
    /// The SYN proxy's cookie key (the process's, unless a test sets one).
    cookies: CookieKey,
    /// Connection sync on a primary: the events each table may hold
    /// between two collections (None: not a primary).
    sync_capacity: Option<usize>,
    /// The port the frames of the current call came in on (for the
    /// reverse-path check of a flow to be; kept here rather than passed
    /// down the established path, where one more argument cost 4 to 8
    /// instructions a packet).
    in_port: usize,
    /// How many times the worker's clock has wrapped (2^32 ms, 49.7 days)
    /// as the pipeline saw it, and its last reading: the SYN proxy's
    /// cookies are made and checked on a clock that does not wrap
    /// ([`Pipeline::cookie_clock`]).
    wraps: u32,
    last_now: u32,
}

/// A burst's chunk, its frames written in place by the first pass.
fn new_chunk() -> Box<[Classified; 3 * SUB]> {
    Box::new(
        [Classified {
            parsed: Err(DropReason::Truncated),
            ahead: None,
        }; 3 * SUB],
    )
}

/// A frame of a burst after the first pass.
#[derive(Debug, Clone, Copy)]
struct Classified {
    parsed: Result<Parsed, DropReason>,
    ahead: Option<Lookahead>,
}

/// Frames prefetched together: half a typical rx burst. Each frame of a
/// chunk has one miss in flight per pass (its index slot, then its entry),
/// and a core tracks only so many (an x86 core's L1 some 10 to 24): with
/// 32, the prefetches past that waited or were dropped, and at 1M flows
/// the entries were still missing when the chunk used them. Pipeline
/// bench, alternated: NAT, TUN and DR established at 1M flows 22 to 28 %
/// faster with 16 than with 32 (12 and 24 both slower than 16), at 1k
/// flows the same within 1 to 3 %; new flows 2 to 5 % slower (their slots
/// have no entry to prefetch, and the first pass runs half as far ahead of
/// them), which the deferred reply keys (`FlowTable::insert_deferred`)
/// more than paid back. BENCHMARKS.md, "Three stalls that instructions do
/// not show".
const CHUNK: usize = 16;

/// Frames per stage of the three-stage burst pipeline (a large table):
/// sub-chunk t is classified while the entries of t - 1 are prefetched
/// and t - 2 runs, so that a slot's line has a whole stage to arrive
/// before its entry is asked for, and the entry one before it is used.
/// With chunks of 16 one after the other, the entry prefetches of a
/// chunk waited for the slots its first pass had just asked for.
const SUB: usize = 8;

/// Flows (both tables together) from which a burst runs in three stages.
/// Pipeline bench on a 2-vCPU AMD EPYC (session 44, best runs of 4
/// rounds, alternated): three stages against one chunk after another
/// 8 to 15 % faster at 64k and 1M flows, within noise at 16k, 0 to 19 %
/// slower at 1k and 4k flows (whose lines are in cache: the stages only
/// add work). The count is read once per burst.
const DEEP_FLOWS: usize = 32 * 1024;

// A small table's chunk uses the start of the three stages' ring.
const _: () = assert!(CHUNK <= 3 * SUB);

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Pipeline(worker {}/{}, {:?})",
            self.index, self.workers, self.conntrack
        )
    }
}

/// What the burst's first pass found out about a TCP or UDP frame to a VIP
/// or from a NAT real, so that the stages neither look it up again nor
/// wait for the flow table: the service a request is for and the hash of
/// the flow-table key it will be looked up by (in the IPv4 table, or for
/// the `*6` variants in the IPv6 one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookahead {
    /// A request to service index `service`.
    Request { hash: u64, service: u32 },
    /// A NAT real's reply.
    Reply { hash: u64 },
    /// To a VIP, on a protocol and port no service listens on.
    NoService,
    /// [`Lookahead::Request`] to an IPv6 VIP.
    Request6 { hash: u64, service: u32 },
    /// [`Lookahead::Reply`] from a NAT66 real.
    Reply6 { hash: u64 },
    /// An IPv6 frame, for the burst's IPv6 pass to look at (until then;
    /// the stages take it for no lookahead).
    Ipv6,
}

impl Lookahead {
    /// The hash of an IPv4 flow-table key.
    #[inline(always)]
    fn hash(self) -> Option<u64> {
        match self {
            Lookahead::Request { hash, .. } | Lookahead::Reply { hash } => Some(hash),
            _ => None,
        }
    }

    /// The hash of an IPv6 flow-table key.
    #[inline(always)]
    fn hash6(self) -> Option<u64> {
        match self {
            Lookahead::Request6 { hash, .. } | Lookahead::Reply6 { hash } => Some(hash),
            _ => None,
        }
    }
}

impl Pipeline {
    pub fn new(
        index: usize,
        workers: usize,
        flow_capacity: usize,
        stats: Arc<WorkerStats>,
    ) -> Pipeline {
        // Worker `index` of `workers`: another index would hand every flow
        // to the workers that own it and own none itself (noticed in
        // review; every caller numbers its workers from 0).
        debug_assert!(index < workers.max(1), "worker {index} of {workers}");
        Pipeline {
            index,
            workers: workers.max(1),
            conntrack: Conntrack::new(flow_capacity, SWEEP_BUDGET, stats.clone()),
            conntrack6: None,
            flow_capacity,
            schedulers: Schedulers::for_worker(index),
            egress: Egress::default(),
            stats,
            chunk: Some(new_chunk()),
            deep_from: DEEP_FLOWS,
            cookies: CookieKey::process(),
            sync_capacity: None,
            in_port: 0,
            wraps: 0,
            last_now: 0,
        }
    }

    /// Counts a wrap of the worker's clock, which never goes back: a
    /// reading more than 2^31 ms behind the last one is the clock gone
    /// past 2^32 (a test's clock may step back a little; that is no
    /// wrap). Called at every burst and sweep, so no wrap goes unseen.
    #[inline]
    fn tick(&mut self, now: u32) {
        if now < self.last_now && self.last_now - now > 1 << 31 {
            self.wraps = self.wraps.wrapping_add(1);
        }
        self.last_now = now;
    }

    /// `now` on a clock that does not wrap: the worker's with its wraps.
    #[inline]
    fn cookie_clock(&self, now: u32) -> u64 {
        (u64::from(self.wraps) << 32) | u64::from(now)
    }

    /// Makes this worker record its flows' changes for a sync peer
    /// (`[sync]`, either role), up to `capacity` events per table between two
    /// collections. Allocates: call before the worker runs.
    pub fn enable_sync(&mut self, capacity: usize) {
        self.sync_capacity = Some(capacity);
        self.conntrack.enable_sync(capacity);
        if let Some(ct) = self.conntrack6.as_mut() {
            ct.enable_sync(capacity);
        }
    }

    /// Moves what the tables recorded for the sync peer into `out` (the
    /// sweep collects it; between bursts).
    pub fn take_sync_events(&mut self, out: &mut crate::sync::SyncEvents) {
        self.conntrack.take_sync_events(out);
        if let Some(ct) = self.conntrack6.as_mut() {
            ct.take_sync_events(out);
        }
    }

    /// Starts a pass that sends every flow of both tables to the sync
    /// peer (see `Conntrack::sync_bulk_start`).
    pub fn sync_bulk_start(&mut self) {
        self.conntrack.sync_bulk_start();
        if let Some(ct) = self.conntrack6.as_mut() {
            ct.sync_bulk_start();
        }
    }

    /// Makes every flow of both tables the sync peer's (see
    /// `Conntrack::sync_demote_start`).
    pub fn sync_demote_start(&mut self) {
        self.conntrack.sync_demote_start();
        if let Some(ct) = self.conntrack6.as_mut() {
            ct.sync_demote_start();
        }
    }

    /// Whether that pass is under way in a table, or its records wait
    /// for [`Self::take_sync_events`].
    pub fn sync_bulk_pending(&self) -> bool {
        self.conntrack.sync_bulk_pending()
            || self
                .conntrack6
                .as_ref()
                .is_some_and(|ct| ct.sync_bulk_pending())
    }

    /// Installs a record from the sync peer in the table of its family
    /// (between bursts). Counted in the worker's sync counters.
    pub fn sync_install(
        &mut self,
        snap: &Snapshot,
        rec: &crate::sync::FlowRecord,
        now: u32,
    ) -> Result<flow::Installed, crate::sync::Refused> {
        match (rec.client, self.conntrack6.as_mut()) {
            (IpAddr::V4(_), _) => self.conntrack.sync_install(snap, rec, now),
            (IpAddr::V6(_), Some(ct)) => ct.sync_install(snap, rec, now),
            (IpAddr::V6(_), None) => {
                // No port has an IPv6 address: no IPv6 service either.
                self.stats.sync.refuse(crate::sync::Refused::UnknownService);
                Err(crate::sync::Refused::UnknownService)
            }
        }
    }

    /// Makes and checks SYN cookies with `key` instead of the process's
    /// random one (tests and golden packets, which must repeat).
    pub fn set_cookie_key(&mut self, key: CookieKey) {
        self.cookies = key;
    }

    /// Runs bursts in three stages once the tables hold `flows` flows
    /// (by default [`DEEP_FLOWS`]): for the fuzzer and tests, whose
    /// tables are too small to reach it, and which must cover both ways.
    pub fn set_deep_pipeline_from(&mut self, flows: usize) {
        self.deep_from = flows;
    }

    /// Whether this worker is under SYN pressure (see
    /// [`Conntrack::syn_pressure`]).
    pub fn syn_pressure(&self) -> bool {
        self.conntrack.syn_pressure()
    }

    /// The same for the IPv6 table (NAT66 services' `auto`); false while
    /// there is none.
    pub fn syn_pressure6(&self) -> bool {
        self.conntrack6.as_ref().is_some_and(|ct| ct.syn_pressure())
    }

    /// Sets the per-source limit of both families' tables (at least 1;
    /// by default a sixteenth of the capacity, at least 64): for the
    /// fuzzer and tests, whose tables are too small to reach the default.
    pub fn set_source_limit(&mut self, limit: u32) {
        self.conntrack.set_source_limit(limit);
        if let Some(ct) = self.conntrack6.as_mut() {
            ct.set_source_limit(limit);
        }
    }

    pub fn stats(&self) -> &Arc<WorkerStats> {
        &self.stats
    }

    pub fn flows(&self) -> &FlowTable {
        self.conntrack.table()
    }

    /// The IPv6 flow table, once a port has an IPv6 address.
    pub fn flows6(&self) -> Option<&FlowTable<Ipv6Addr>> {
        self.conntrack6.as_ref().map(Conntrack::table)
    }

    /// Adopts a new snapshot: fresh scheduler states for its services, and
    /// the IPv6 flow table (as large as the IPv4 one) the first time a
    /// port has an IPv6 address. Called between bursts (it allocates).
    pub fn adopt(&mut self, snap: &Snapshot) {
        self.schedulers.adopt(snap);
        if self.conntrack6.is_none() && snap.has_ipv6() {
            let mut ct = Conntrack::new(self.flow_capacity, SWEEP_BUDGET, self.stats.clone());
            if let Some(c) = self.sync_capacity {
                ct.enable_sync(c);
            }
            ct.set_source_limit(self.conntrack.source_limit());
            self.conntrack6 = Some(ct);
        }
        // The connected networks that hold a NAT real, each one source
        // for the per-source limit (`Conntrack::set_links`); other
        // networks count their on-link clients one by one (found in
        // review: a LAN of genuine clients sharing one source's share).
        self.conntrack.set_links(&snap.nat_links[0]);
        if let Some(ct) = self.conntrack6.as_mut() {
            ct.set_links(&snap.nat_links[1]);
        }
    }

    /// Lookups that found an ARP request (index 0) or a neighbor
    /// solicitation (1) due and a budget refused it, so far: what the
    /// worker shows as `WorkerStats::neighbor_requests_refused`.
    pub fn neighbor_requests_refused(&self) -> [u64; 2] {
        self.egress.neighbor_requests_refused()
    }

    /// Neighbors learned since the last call (for the other workers), of
    /// both families.
    pub fn take_learned(&mut self) -> impl Iterator<Item = (IpAddr, MacAddr)> + '_ {
        let v4: Vec<(IpAddr, MacAddr)> = self
            .egress
            .take_learned()
            .map(|(ip, mac)| (IpAddr::V4(ip), mac))
            .collect();
        v4.into_iter().chain(
            self.egress
                .take_learned6()
                .map(|(ip, mac)| (IpAddr::V6(ip), mac)),
        )
    }

    /// Whether this worker learned a neighbor since the last
    /// [`Self::take_learned`]: packets held for it may go now.
    #[inline]
    pub fn has_learned(&self) -> bool {
        self.egress.has_learned()
    }

    /// Neighbor solicitations to send since the last call.
    pub fn take_ndp_requests(&mut self) -> impl Iterator<Item = NdpRequest> + '_ {
        self.egress.take_ndp_requests()
    }

    /// ARP requests to send since the last call.
    pub fn take_arp_requests(&mut self) -> impl Iterator<Item = ArpRequest> + '_ {
        self.egress.take_arp_requests()
    }

    /// Records a neighbor another worker learned (under `snap`, whose
    /// next hops it never pushes out of the cache).
    pub fn learn_neighbor(
        &mut self,
        snap: &Snapshot,
        ip: impl Into<IpAddr>,
        mac: MacAddr,
        now: u32,
    ) {
        match ip.into() {
            IpAddr::V4(ip) => self.egress.learn_from_peer(snap, ip, mac, now),
            IpAddr::V6(ip) => self.egress.learn_from_peer6(snap, ip, mac, now),
        }
    }

    /// The MAC address to send to `next_hop`, if known now (static entries
    /// first).
    pub fn resolved(&self, snap: &Snapshot, next_hop: impl Into<IpAddr>) -> Option<MacAddr> {
        match next_hop.into() {
            IpAddr::V4(ip) => self.egress.resolved(snap, ip),
            IpAddr::V6(ip) => self.egress.resolved6(snap, ip),
        }
    }

    /// Reclaims expired flows, looking at up to `budget` entries of each
    /// family's table.
    pub fn sweep(&mut self, snap: &Snapshot, now: u32, budget: usize) -> usize {
        self.tick(now);
        let v6 = match self.conntrack6.as_mut() {
            Some(ct) => ct.sweep(snap, now, budget),
            None => 0,
        };
        self.conntrack.sweep(snap, now, budget) + v6
    }

    /// Runs a burst of frames received on `in_port`: every frame is
    /// classified and its flow-table slot prefetched, then the entries those
    /// slots point to, then the frames are processed, so that the cache
    /// misses of a burst overlap instead of queueing: with a large table
    /// in three stages a sub-chunk apart ([`SUB`]), else chunk by chunk
    /// ([`CHUNK`]). `verdicts[i]` is frame i's fate.
    pub fn process_burst<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        in_port: usize,
        pkts: &mut [B],
        verdicts: &mut [Verdict],
        now: u32,
    ) {
        let n = pkts.len().min(verdicts.len());
        self.egress.begin();
        self.in_port = in_port;
        self.tick(now);
        // Taken for the burst (so that the passes can borrow `self`), put
        // back at its end: never missing at the start of one.
        let mut ring = self.chunk.take().unwrap_or_else(new_chunk);
        let my_mac = snap.ports.get(in_port).map(|p| p.mac);
        // Three stages a sub-chunk apart: at step t sub-chunk t is
        // classified (its slots prefetched), the entries of t - 1 are
        // prefetched (their slots asked for a step ago), and t - 2 is run
        // (its entries asked for a step ago). A small table, in cache,
        // has nothing to wait for: there the three run one after the
        // other on chunks of CHUNK.
        let deep = self.deep_pipeline();
        let (sub, lag) = if deep { (SUB, 2) } else { (CHUNK, 0) };
        let place = |s: usize| if deep { (s % 3) * SUB } else { 0 };
        let subs = n.div_ceil(sub);
        let mut any6 = [false; 3];
        for t in 0..subs + lag {
            if t < subs {
                let base = t * sub;
                let m = sub.min(n - base);
                let at = place(t);
                let chunk = &mut ring[at..at + m];
                any6[t % 3] =
                    self.classify_sub::<B>(snap, in_port, my_mac, &pkts[base..base + m], chunk);
            }
            let s = t.wrapping_sub(lag / 2);
            if s < subs {
                let m = sub.min(n - s * sub);
                let at = place(s);
                let chunk = &ring[at..at + m];
                for h in chunk
                    .iter()
                    .filter_map(|c| c.ahead.and_then(Lookahead::hash))
                {
                    self.conntrack.prefetch_entry::<B>(h);
                }
                if any6[s % 3] {
                    self.prefetch_entries6::<B>(chunk);
                }
            }
            if t >= lag {
                let s = t - lag;
                let base = s * sub;
                let m = sub.min(n - base);
                let at = place(s);
                let frames = pkts[base..base + m]
                    .iter_mut()
                    .zip(&mut verdicts[base..base + m]);
                for ((pkt, verdict), c) in frames.zip(ring[at..at + m].iter()) {
                    *verdict = self.run(snap, in_port, pkt, now, &c.parsed, &c.ahead);
                }
            }
        }
        self.chunk = Some(ring);
        self.settle();
    }

    /// Whether the flow tables hold enough flows that their lines are
    /// mostly not in cache (see [`DEEP_FLOWS`]).
    #[inline]
    fn deep_pipeline(&self) -> bool {
        let v6 = self.conntrack6.as_ref().map_or(0, |ct| ct.table().len());
        self.conntrack.table().len() + v6 >= self.deep_from
    }

    /// The first stage of a burst for one sub-chunk: each frame
    /// classified into its place in `chunk` and its flow-table slot
    /// prefetched; whether any IPv6 frame has a slot.
    #[inline(always)]
    fn classify_sub<B: PacketBuf>(
        &self,
        snap: &Snapshot,
        in_port: usize,
        my_mac: Option<MacAddr>,
        pkts: &[B],
        chunk: &mut [Classified],
    ) -> bool {
        let mut any6 = false;
        for (pkt, slot) in pkts.iter().zip(chunk.iter_mut()) {
            // The common IPv4 frame is looked at in its parts, before
            // they are joined into a `Parsed` (which a settled drop
            // then never builds): `classify_offloaded` and `lookahead`
            // one after the other read it back from the stack. Each
            // frame is written straight into its slot: built on the
            // stack and pushed, it cost a 88-byte copy whose wide loads
            // read the narrow stores just made (store forwarding).
            let ct = &self.conntrack;
            let seed = ct.seed();
            // Each branch prefetches its frame's slot itself: an
            // `ahead` handed out of both went through the stack.
            any6 |= classify_then(
                pkt.data(),
                pkt.rx_ip_checksum(),
                slot,
                |slot, dst_mac, ip| {
                    let ahead = lookahead4(snap, seed, &ip);
                    if ahead == Some(Lookahead::NoService)
                        && settled_no_service(dst_mac, &ip, my_mac)
                    {
                        *slot = Classified {
                            parsed: Err(DropReason::NoService),
                            ahead: None,
                        };
                        return false;
                    }
                    if let Some(h) = ahead.and_then(Lookahead::hash) {
                        ct.prefetch_slot::<B>(h);
                    }
                    *slot = Classified {
                        parsed: Ok(Parsed {
                            dst_mac,
                            l3: L3::Ipv4(ip),
                        }),
                        ahead,
                    };
                    false
                },
                |slot, parsed| {
                    let ahead = lookahead(snap, seed, &parsed);
                    if let Some(h) = ahead.and_then(Lookahead::hash) {
                        ct.prefetch_slot::<B>(h);
                    }
                    *slot = Classified { ahead, parsed };
                    ahead == Some(Lookahead::Ipv6)
                },
            );
        }
        // IPv6 frames get their own pass, out of line: the loop above
        // stays what it was for IPv4 (reading `parsed` back in it
        // cost store-forwarding stalls).
        any6 && self.lookahead6::<B>(snap, in_port, chunk)
    }

    /// Writes the reply keys of the NAT flows the burst created into the
    /// index ([`FlowTable::insert_deferred`]): no flow-table state stays
    /// half-written past a call into the pipeline.
    #[inline]
    fn settle(&mut self) {
        self.conntrack.settle();
        if let Some(ct) = self.conntrack6.as_mut() {
            ct.settle();
        }
    }

    /// The burst's lookahead for its IPv6 frames (`Lookahead::Ipv6`),
    /// their flow-table slots prefetched; whether any has a slot. A frame
    /// to a VIP on no service's port is settled here, as over IPv4 (see
    /// [`settled_no_service6`]).
    #[inline(never)]
    fn lookahead6<B: PacketBuf>(
        &self,
        snap: &Snapshot,
        in_port: usize,
        chunk: &mut [Classified],
    ) -> bool {
        let Some(ct6) = self.conntrack6.as_ref() else {
            return false;
        };
        let me = snap.ports.get(in_port).filter(|p| p.address6.is_some());
        let mut any = false;
        for c in chunk.iter_mut() {
            let Ok(Parsed {
                dst_mac,
                l3: L3::Ipv6(ip),
            }) = &c.parsed
            else {
                continue;
            };
            c.ahead = lookahead6(snap, ct6.seed(), ip);
            if c.ahead == Some(Lookahead::NoService)
                && me.is_some_and(|p| p.mac == *dst_mac)
                && settled_no_service6(ip)
            {
                c.parsed = Err(DropReason::NoService);
                c.ahead = None;
                continue;
            }
            if let Some(h) = c.ahead.and_then(Lookahead::hash6) {
                ct6.prefetch_slot::<B>(h);
                any = true;
            }
        }
        any
    }

    /// The second prefetch pass of a burst for its IPv6 frames (out of
    /// line: an IPv4 burst only tests a flag for it).
    #[inline(never)]
    fn prefetch_entries6<B: PacketBuf>(&self, chunk: &[Classified]) {
        if let Some(ct6) = self.conntrack6.as_ref() {
            for h in chunk
                .iter()
                .filter_map(|c| c.ahead.and_then(Lookahead::hash6))
            {
                ct6.prefetch_entry::<B>(h);
            }
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
        self.egress.begin();
        self.in_port = in_port;
        self.tick(now);
        let parsed = classify_offloaded(pkt.data(), pkt.rx_ip_checksum());
        let v = self.run(snap, in_port, pkt, now, &parsed, &None);
        self.settle();
        v
    }

    /// Inlined into both callers: the verdict and the parsed frame then stay
    /// in registers instead of a stack copy that stalls store forwarding.
    #[inline(always)]
    fn run<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        in_port: usize,
        pkt: &mut B,
        now: u32,
        parsed: &Result<Parsed, DropReason>,
        ahead: &Option<Lookahead>,
    ) -> Verdict {
        let Some(me) = snap.ports.get(in_port) else {
            return Verdict::Drop(DropReason::NotForUs);
        };
        let parsed = match parsed {
            Ok(p) => p,
            Err(r) => return Verdict::Drop(*r),
        };
        let dst = parsed.dst_mac;
        // Broadcast is multicast too.
        let to_group = !same_mac(&dst, &me.mac);
        if to_group && !dst.is_multicast() {
            return Verdict::Drop(DropReason::NotOurMac);
        }
        match parsed.l3 {
            L3::Arp => self.arp(snap, in_port, pkt, now),
            // Nothing that came in a link-layer broadcast or multicast is
            // forwarded or answered (RFC 1812 5.3.4; found in review: a SYN
            // to a VIP in a broadcast frame was forwarded).
            L3::Ipv4(ref ip) if to_group => ipv4_to_group(ip),
            L3::Ipv4(ref ip) => {
                cut_trailer(pkt, ip.end());
                self.ipv4(snap, in_port, pkt, ip, now, ahead)
            }
            L3::Ipv6(ref ip) => {
                cut_trailer(pkt, ip.end());
                self.ipv6(snap, in_port, pkt, ip, now, *ahead, to_group)
            }
            L3::Invalid(r) => Verdict::Drop(r),
            L3::Unsupported(_) => Verdict::Drop(DropReason::UnsupportedEthertype),
        }
    }

    /// Local: ARP for our addresses, learning neighbors on the way.
    fn arp<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        in_port: usize,
        pkt: &mut B,
        now: u32,
    ) -> Verdict {
        let frame = EthernetFrame::new_unchecked(pkt.data_mut());
        // A claim not believed here is not the kernel's to hear either
        // (found in audit: its neighbor cache took what ours doubted).
        let believed = match local::arp_sender(snap, in_port, &frame) {
            Some(local::ArpSender::ToUs { ip, mac, answer }) => {
                self.egress.learn(snap, in_port, ip, mac, answer, now)
            }
            Some(local::ArpSender::Announcing { ip, mac }) => {
                self.egress.announced(snap, in_port, ip, mac, now);
                true
            }
            None => true,
        };
        // The kernel holds the port's own address only (not the floating
        // gateway's, not a VIP: found in review).
        let to_own = local::arp_target(&frame) == snap.ports[in_port].ipv4();
        match local::arp(snap, in_port, frame, &self.stats) {
            // A reply to us may answer the kernel's own request: it gets
            // the frame once we have learned from it (requests for our
            // addresses stay ours to answer, so it never answers them).
            Verdict::Consumed if snap.ports[in_port].kernel && to_own && believed => {
                Verdict::ToKernel
            }
            v => v,
        }
    }

    /// An IPv4 packet: to us (a VIP's service, or ICMP), or in transit (a
    /// NAT real's reply or ICMP error).
    #[inline(always)]
    fn ipv4<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        in_port: usize,
        pkt: &mut B,
        ip: &Ipv4Meta,
        now: u32,
        ahead: &Option<Lookahead>,
    ) -> Verdict {
        // No host sends from 0/8, 127/8, a group or 240/4 and the limited
        // broadcast (RFC 1812 5.3.7): such a packet makes no flow and gets
        // no answer, which would go to nobody or to everybody. As over
        // IPv6, a host without an address yet (DHCP: 0.0.0.0 to a
        // broadcast or group) is only not for us.
        if crate::route::no_host_has(ip.src) {
            return martian_source(ip);
        }
        // The burst's lookahead already sorted TCP and UDP to VIPs and from
        // NAT reals (the checks below, in the same order, give the same
        // verdicts): `process` and `process_burst` agree.
        match ahead {
            Some(Lookahead::Request { service, hash }) => {
                if ip.ttl <= 1 {
                    return Verdict::Drop(DropReason::TtlExceeded);
                }
                if let Some((ports, tcp)) = ip.l4.ports_ref() {
                    return self.request(
                        snap,
                        *service as usize,
                        pkt,
                        ip,
                        ports,
                        tcp,
                        now,
                        Some(*hash),
                    );
                }
            }
            Some(Lookahead::NoService) => return Verdict::Drop(DropReason::NoService),
            Some(Lookahead::Reply { hash }) => {
                let me = &snap.ports[in_port];
                if me.ipv4() == Some(ip.dst) {
                    // To our own address, not a client's: nothing we
                    // forward (the kernel's, health checks say, if it has
                    // an interface).
                    return to_kernel_or(snap, in_port, ip.src.into(), DropReason::NotForUs);
                }
                if me.floating == Some(ip.dst) {
                    // To the floating gateway: ours, nothing for it here,
                    // as below (found in audit: this went to `reply`).
                    return Verdict::Drop(DropReason::NotForUs);
                }
                if ip.ttl <= 1 {
                    return Verdict::Drop(DropReason::TtlExceeded);
                }
                if let Some((ports, tcp)) = ip.l4.ports_ref() {
                    return self.reply(snap, in_port, pkt, ip, ports, tcp, now, Some(*hash));
                }
            }
            Some(Lookahead::Request6 { .. } | Lookahead::Reply6 { .. } | Lookahead::Ipv6)
            | None => {}
        }
        let for_us = snap.is_local(in_port, ip.dst);
        if for_us {
            if ip.protocol == IpProtocol::Icmp {
                return self.icmp_to_us(snap, in_port, pkt, ip, now);
            }
            if !snap.is_vip(ip.dst) {
                // The port's own address: nothing but ICMP echo is
                // answered here; the rest is the kernel's, if the port has
                // an interface. Not the floating gateway's, which the
                // kernel does not hold (found in audit: a host that
                // forwards routed them back out, ARPing for it).
                if snap.ports[in_port].ipv4() == Some(ip.dst) {
                    return to_kernel_or(snap, in_port, ip.src.into(), DropReason::NotForUs);
                }
                return Verdict::Drop(DropReason::NotForUs);
            }
            if !matches!(ip.protocol, IpProtocol::Tcp | IpProtocol::Udp) {
                return Verdict::Drop(DropReason::NoService);
            }
            let (ports, tcp) = match ip.l4 {
                L4::Tcp { ports, ref segment } => (ports, Some(segment)),
                L4::Udp { ports } => (ports, None),
                L4::Invalid(r) => return Verdict::Drop(r),
                _ => return Verdict::Drop(DropReason::NoService),
            };
            let proto = u8::from(ip.protocol);
            let Some(service) = snap.service_for(proto, ip.dst, ports.dst) else {
                return Verdict::Drop(DropReason::NoService);
            };
            if ip.ttl <= 1 {
                return Verdict::Drop(DropReason::TtlExceeded);
            }
            return self.request(
                snap,
                service,
                pkt,
                ip,
                ports,
                tcp,
                now,
                ahead.and_then(Lookahead::hash),
            );
        }
        // Transit: only NAT replies, and ICMP errors about NAT flows from
        // their reals or from a router on the way to them.
        if ip.protocol == IpProtocol::Icmp {
            return self.icmp_from_real(snap, in_port, pkt, ip, now);
        }
        if !matches!(ip.protocol, IpProtocol::Tcp | IpProtocol::Udp) {
            return Verdict::Drop(DropReason::NotForUs);
        }
        let (ports, tcp) = match ip.l4 {
            L4::Tcp { ports, segment } => (ports, Some(segment)),
            L4::Udp { ports } => (ports, None),
            L4::Invalid(r) => return Verdict::Drop(r),
            _ => return Verdict::Drop(DropReason::NotForUs),
        };
        if !snap.is_nat_endpoint(u8::from(ip.protocol), ip.src, ports.src) {
            return Verdict::Drop(DropReason::NotForUs);
        }
        if ip.ttl <= 1 {
            return Verdict::Drop(DropReason::TtlExceeded);
        }
        self.reply(
            snap,
            in_port,
            pkt,
            ip,
            ports,
            tcp.as_ref(),
            now,
            ahead.and_then(Lookahead::hash),
        )
    }

    /// A packet from a client to a service's VIP: conntrack (and schedule),
    /// rewrite, egress.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn request<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        service: usize,
        pkt: &mut B,
        ip: &Ipv4Meta,
        ports: Ports,
        tcp: Option<&Segment>,
        now: u32,
        hash: Option<u64>,
    ) -> Verdict {
        if let Some(v) = self.hand_off(ip.src) {
            return v;
        }
        // The service was found by (protocol, VIP, port) of this packet,
        // so its port is the packet's: not read from the snapshot (a
        // bounds check and two loads a packet).
        debug_assert_eq!(snap.services[service].port, ports.dst);
        let key = FlowKey {
            proto: u8::from(ip.protocol),
            client: ip.src,
            client_port: ports.src,
            vip: ip.dst,
            vip_port: ports.dst,
        };
        let table = self.conntrack.table();
        let hash = hash.unwrap_or_else(|| table.key_hash(&key));
        debug_assert_eq!(hash, table.key_hash(&key), "the lookahead hashed this key");
        // The key and what the closure reads by value: a reference to
        // them would hold the key in memory on every packet.
        let (in_port, client) = (self.in_port, key.client);
        let target = match self.conntrack.lookup_or_create_key::<B>(
            snap,
            service,
            key,
            hash,
            tcp,
            now,
            &mut self.schedulers,
            move || snap.client_elsewhere(in_port, IpAddr::V4(client)),
        ) {
            Ok(t) => t,
            Err(r) => return Verdict::Drop(r),
        };
        let (target, adjust) = match target.proxy {
            ProxyStep::None => (target, None),
            ProxyStep::Translate => (target, Some(self.conntrack.proxy_adjust())),
            step => {
                let Some(&seg) = tcp else {
                    return Verdict::Drop(DropReason::NoFlow);
                };
                // A copy of its own, so that `key` stays in registers.
                let own_key = key;
                match self.syn_proxy_client(snap, service, pkt, ip, ports, seg, &own_key, step, now)
                {
                    synproxy::Next::Done(v) => return v,
                    synproxy::Next::Forward(t) => (t, None),
                }
            }
        };
        let len = pkt.len() as u64;
        // Too big for the way to the real: "fragmentation needed" from the
        // VIP when DF is set, for DR as for NAT (found in review: DR only
        // dropped it, so its sender never learned the path MTU).
        if matches!(
            target.method,
            ForwardingMethod::Nat | ForwardingMethod::DirectRoute
        ) {
            if let Some(v) =
                self.egress
                    .nat_too_big(snap, &self.stats, pkt, ip, target.real, ip.dst, now)
            {
                return v;
            }
        }
        let (real, real_id) = (target.real, target.real_id);
        // NAT and DR each give a verdict of their own (in a register): the
        // tuple `towards_real` returns went through the stack.
        let verdict = match target.method {
            ForwardingMethod::Nat => self.egress.route_to_real(
                snap,
                pkt,
                (real_id, real),
                ip.end(),
                now,
                NatRequest {
                    real,
                    real_port: target.real_port,
                    adjust,
                },
            ),
            ForwardingMethod::DirectRoute => {
                self.egress
                    .direct_to_real(snap, pkt, real_id, real, ip.end(), now)
            }
            ForwardingMethod::Tunnel => {
                let (v, to_real) = self.towards_real(
                    snap,
                    pkt,
                    ip,
                    ForwardingMethod::Tunnel,
                    real,
                    (real_id, key),
                    now,
                    NoRewrite,
                );
                if !to_real {
                    return v;
                }
                v
            }
        };
        self.count_forwarded(verdict, real_id, len);
        verdict
    }

    /// Egress towards a flow's real: for NAT rewritten by `nat_rewrite`
    /// (called with the frame, for NAT only) and routed, sent on the
    /// connected segment for DR, wrapped (or answered with "fragmentation
    /// needed") for TUN. The flag says whether the packet went on to the
    /// real. `flow`: the real's id and the flow's key, for a TUN real that
    /// is IPv6 (4in6; `real` is then unspecified).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn towards_real<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        pkt: &mut B,
        ip: &Ipv4Meta,
        method: ForwardingMethod,
        real: Ipv4Addr,
        flow: (u32, FlowKey),
        now: u32,
        nat_rewrite: impl FrameRewrite,
    ) -> (Verdict, bool) {
        match method {
            ForwardingMethod::Tunnel if real.is_unspecified() => {
                self.tunnel_4in6(snap, pkt, ip, flow.0, flow.1, now)
            }
            ForwardingMethod::Nat => (
                self.egress
                    .route_to_real(snap, pkt, (flow.0, real), ip.end(), now, nat_rewrite),
                true,
            ),
            ForwardingMethod::DirectRoute => (
                self.egress
                    .direct_to_real(snap, pkt, flow.0, real, ip.end(), now),
                true,
            ),
            ForwardingMethod::Tunnel => self.egress.tunnel(
                snap,
                &self.stats,
                pkt,
                (flow.0, real),
                ip.src,
                ip.dst,
                ip.dont_fragment,
                ip.end(),
                now,
            ),
        }
    }

    /// TUN to an IPv6 real of an IPv4 service (4in6): "fragmentation
    /// needed" when the IPv4 packet does not fit with an IPv6 header added,
    /// else wrapped, the flow label from the flow's fixed hash.
    #[cold]
    fn tunnel_4in6<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        pkt: &mut B,
        ip: &Ipv4Meta,
        real_id: u32,
        key: FlowKey,
        now: u32,
    ) -> (Verdict, bool) {
        let Some(real) = snap.tunnel6_real(real_id) else {
            return (Verdict::Drop(DropReason::RealRemoved), false);
        };
        if let Some(v) = self
            .egress
            .too_big_4in6(snap, &self.stats, pkt, real, ip, now)
        {
            return (v, false);
        }
        let label = crate::forward::tunnel::flow_label(key.hash());
        self.egress.tunnel6(
            snap,
            pkt,
            (real_id, real),
            usize::from(ip.total_len),
            false,
            label,
            now,
        )
    }

    /// A packet from a NAT real back to a client.
    #[allow(clippy::too_many_arguments)]
    fn reply<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        in_port: usize,
        pkt: &mut B,
        ip: &Ipv4Meta,
        ports: Ports,
        tcp: Option<&Segment>,
        now: u32,
        hash: Option<u64>,
    ) -> Verdict {
        let client = ip.dst;
        if let Some(v) = self.hand_off(client) {
            return v;
        }
        let key = ReplyKey {
            proto: u8::from(ip.protocol),
            real: ip.src,
            real_port: ports.src,
            client,
            client_port: ports.dst,
        };
        let table = self.conntrack.table();
        let hash = hash.unwrap_or_else(|| table.reply_key_hash(&key));
        debug_assert_eq!(
            hash,
            table.reply_key_hash(&key),
            "the lookahead hashed this key"
        );
        let egress = &mut self.egress;
        // What the flow believes of a real (asked only of what opens or
        // ends it): nothing said to a client there is no way back to,
        // whose handshake proves nothing (`Snapshot::no_way_back`).
        // Both capture by value (`move`, the frame as a shared borrow):
        // captured by reference, `now` and `in_port` were stored on the
        // stack and the closures' references built there on every packet,
        // for calls only a SYN proxy's flow or an opening or closing
        // segment makes.
        let frame_of: &B = pkt;
        let from_real = move || {
            if snap.no_way_back(IpAddr::V4(ip.dst)) {
                return false;
            }
            let mac = EthernetFrame::new_unchecked(frame_of.data()).src_addr();
            egress.came_from_next_hop(snap, in_port, ip.src, mac, now)
        };
        let sender = move || {
            let mac = EthernetFrame::new_unchecked(frame_of.data()).src_addr();
            crate::flow::sender_mark(in_port, mac.0)
        };
        let back = match self.conntrack.reply_on_key(
            snap,
            key,
            hash,
            tcp,
            now,
            Some(in_port),
            from_real,
            sender,
        ) {
            Ok(b) => b,
            Err(r) => return Verdict::Drop(r),
        };
        let adjust = match back.proxy {
            ReplyStep::None => None,
            ReplyStep::Translate => Some(self.conntrack.proxy_adjust()),
            ReplyStep::AckToReal => {
                let Some(&seg) = tcp else {
                    return Verdict::Drop(DropReason::SynProxyPending);
                };
                let w = self.conntrack.proxy_waiting();
                return self.syn_proxy_ack_to_real(
                    snap,
                    pkt,
                    ip,
                    ports,
                    seg,
                    &w,
                    back.real_id,
                    now,
                );
            }
            ReplyStep::ResetReal => {
                return self.syn_proxy_reset_real(snap, pkt, ip, ports, back.real_id, now);
            }
        };
        let len = pkt.len() as u64;
        // Too big for the way to the client: the real hears it from the
        // port it sent through, as from any router (from the VIP where that
        // port has no IPv4 address).
        let here = snap.ports[in_port].ipv4().unwrap_or(back.vip);
        if let Some(v) = self
            .egress
            .nat_too_big(snap, &self.stats, pkt, ip, client, here, now)
        {
            return v;
        }
        let (vip, vip_port) = (back.vip, back.vip_port);
        let v = self.egress.route_rewritten(
            snap,
            pkt,
            client,
            ip.end(),
            now,
            NatReply {
                vip,
                vip_port,
                adjust,
            },
        );
        self.count_forwarded(v, back.real_id, len);
        v
    }

    /// ICMP to one of our addresses: echo is answered; an error about a
    /// flow of a VIP goes to that flow's real.
    fn icmp_to_us<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        in_port: usize,
        pkt: &mut B,
        ip: &Ipv4Meta,
        now: u32,
    ) -> Verdict {
        let kind = match ip.l4 {
            L4::Icmp { kind, .. } => kind,
            L4::Invalid(r) => return Verdict::Drop(r),
            _ => return Verdict::Drop(DropReason::IcmpNotHandled),
        };
        // To the port's own address: echo requests are answered here, the
        // rest (echo replies, errors about the kernel's own traffic) is the
        // kernel's, if the port has an interface for it (not to the
        // floating gateway, which the kernel does not hold).
        let me = &snap.ports[in_port];
        // A redirect would change how the kernel interface routes, on the
        // word of a packet that claims the gateway's address from anywhere
        // (found in audit: handed to the kernel, which takes one from its
        // gateway): the appliance's routes are its config's.
        if kind == Icmpv4Type::Unknown(ICMP_REDIRECT) {
            return Verdict::Drop(DropReason::IcmpNotHandled);
        }
        // "Fragmentation needed" about a tunnel's packet is the client's to
        // learn (`tunnel_errors.rs`), not the kernel's, which sent none.
        if kind == Icmpv4Type::DestinationUnreachable && me.ipv4() == Some(ip.dst) {
            if let Some(v) = self.tunnel_frag_needed(snap, in_port, pkt, ip, now) {
                return v;
            }
        }
        if kind != Icmpv4Type::EchoRequest && me.kernel && me.ipv4() == Some(ip.dst) {
            return to_kernel_or(snap, in_port, ip.src.into(), DropReason::IcmpNotHandled);
        }
        if !icmp::is_forwarded_error(kind) {
            let frame = EthernetFrame::new_unchecked(pkt.data_mut());
            return local::icmp(snap, in_port, frame, &self.stats);
        }
        if !snap.is_vip(ip.dst) {
            return Verdict::Drop(DropReason::IcmpNotHandled);
        }
        let q = match icmp::checked_quote(&pkt.data()[L4_OFFSET..ip.end()]) {
            Ok(q) => q,
            Err(r) => return Verdict::Drop(r),
        };
        // The quoted packet went from the VIP to the client, and the error
        // back to that VIP (from wherever on the way it was made).
        if q.src != ip.dst {
            return Verdict::Drop(DropReason::IcmpNotHandled);
        }
        let key = FlowKey {
            proto: u8::from(q.protocol),
            client: q.dst,
            client_port: q.dst_port,
            vip: q.src,
            vip_port: q.src_port,
        };
        if let Some(v) = self.hand_off(key.client) {
            return v;
        }
        // Without an entry: where an `mh` TUN or DR flow's packets go by
        // hash alone (`Conntrack::stateless_target`: found in audit, a
        // router's error about one was `no_flow`, a path MTU black hole
        // while the table was pressed).
        let (method, real, real_port, real_id, quote) = match self.conntrack.find(&key) {
            Some(f) => (
                f.method,
                f.real(),
                f.real_port(),
                f.real_id,
                f.proxy_quote_to_real(),
            ),
            None => {
                let target = snap
                    .service_for(key.proto, key.vip, key.vip_port)
                    .and_then(|s| {
                        self.conntrack
                            .stateless_target(snap, s, &key, now, &mut self.schedulers)
                    });
                match target {
                    Some(t) => (t.method, t.real, t.real_port, t.real_id, None),
                    None => return Verdict::Drop(DropReason::NoFlow),
                }
            }
        };
        if !snap.real_present(real_id) {
            return Verdict::Drop(DropReason::RealRemoved);
        }
        // Forwarded like any packet: not with its TTL spent, whatever the
        // method (DR and TUN leave it unchanged, but a router would not pass
        // it on either).
        if ip.ttl <= 1 {
            return Verdict::Drop(DropReason::TtlExceeded);
        }
        // Never "fragmentation needed" about an ICMP error (RFC 1122
        // 3.2.2): one that does not fit the tunnel is dropped, as over
        // IPv6. (Found in review: one was answered, and counted both as
        // made and as passed on.)
        let no_answer = Ipv4Meta {
            dont_fragment: false,
            ..*ip
        };
        // A NAT real's error is rewritten on its way (`towards_real`).
        let end = ip.end();
        let (verdict, to_real) = self.towards_real(
            snap,
            pkt,
            &no_answer,
            method,
            real,
            (real_id, key),
            now,
            NatErrorToReal {
                end,
                real,
                real_port,
                quote,
            },
        );
        if to_real {
            self.count_icmp_error(verdict);
        }
        verdict
    }

    /// An ICMP error to a client about the client's packet to a NAT real,
    /// from that real or from a router on the way to it (a NAT real
    /// reached through a gateway: found in audit, a router's "fragmentation
    /// needed" never reached the client, so path MTU discovery failed).
    /// Anything else in transit is not for us, as before.
    fn icmp_from_real<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        in_port: usize,
        pkt: &mut B,
        ip: &Ipv4Meta,
        now: u32,
    ) -> Verdict {
        // What a stranger (no NAT real) sends that is not such an error is
        // `not_for_us`, whatever is wrong with it.
        let real = snap.is_nat_real(ip.src);
        let why = |r: DropReason| Verdict::Drop(if real { r } else { DropReason::NotForUs });
        let kind = match ip.l4 {
            L4::Icmp { kind, .. } => kind,
            L4::Invalid(r) => return why(r),
            _ => return Verdict::Drop(DropReason::NotForUs),
        };
        if !icmp::is_forwarded_error(kind) {
            return Verdict::Drop(DropReason::NotForUs);
        }
        let q = match icmp::checked_quote(&pkt.data()[L4_OFFSET..ip.end()]) {
            Ok(q) => q,
            Err(r) => return why(r),
        };
        // The quoted packet went from the client to the real, and the
        // error goes to that client: it leaves from the VIP to where the
        // flow's packets go, never to an address its sender chose (found
        // in review: any destination, from the VIP, with the sender's
        // payload, was passed on). It comes from the real, or from where
        // the real is reached (its port, its next hop's MAC): a router on
        // the way, never a stranger elsewhere.
        if q.src != ip.dst {
            return why(DropReason::IcmpNotHandled);
        }
        // Checked as well when the error names the real as its source
        // (found in audit: any host with a frame to the appliance, a
        // neighbor on any port, skipped both checks by writing the real's
        // address, which no check of its own covered).
        let mac = EthernetFrame::new_unchecked(pkt.data()).src_addr();
        if !snap.is_nat_real(q.dst)
            || !self
                .egress
                .came_from_next_hop(snap, in_port, q.dst, mac, now)
        {
            return why(DropReason::IcmpNotHandled);
        }
        let key = ReplyKey {
            proto: u8::from(q.protocol),
            real: q.dst,
            real_port: q.dst_port,
            client: q.src,
            client_port: q.src_port,
        };
        if let Some(v) = self.hand_off(key.client) {
            return v;
        }
        let Some(f) = self.conntrack.find_reply(&key) else {
            return Verdict::Drop(DropReason::NoFlow);
        };
        // From the real or a router on the way: only about a segment the
        // client sent (RFC 5927; found in review: behind one gateway,
        // anyone who knew a flow's four addresses and ports could have it
        // passed on).
        if q.protocol == IpProtocol::Tcp && !f.quotes_client_seq(q.seq) {
            return Verdict::Drop(DropReason::IcmpNotHandled);
        }
        if ip.ttl <= 1 {
            return Verdict::Drop(DropReason::TtlExceeded);
        }
        // Only the quote goes out, not what a router inside appended.
        let end = icmp::cut_extensions(pkt.data_mut(), ip.end());
        if !pkt.set_len(end) {
            return Verdict::Drop(DropReason::Truncated);
        }
        // The quoted segment is the client's: its sequence number is the
        // client's own, proxied flow or not.
        icmp::rewrite_nat_error(pkt.data_mut(), end, true, f.vip(), f.vip_port(), None);
        let verdict = self.egress.route(snap, pkt, f.client(), end, now);
        self.count_icmp_error(verdict);
        verdict
    }

    /// Counts an ICMP error about a flow that is on its way (found by
    /// fuzzing: one dropped by egress, too big say, was counted too).
    #[inline]
    fn count_icmp_error(&self, v: Verdict) {
        if matches!(
            v,
            Verdict::Transmit(_) | Verdict::Hold { .. } | Verdict::Hold6 { .. }
        ) {
            self.stats.icmp_errors_forwarded.incr();
        }
    }

    /// The hand-off verdict when another worker owns `client`'s flows.
    #[inline]
    fn hand_off<A: FlowAddr>(&self, client: A) -> Option<Verdict> {
        let owner = flow::owner_of(client, self.workers);
        (owner != self.index).then(|| {
            self.stats.handoffs_out.incr();
            // Worker indices are below the lcore count (at most 128).
            Verdict::HandOff(owner as u16)
        })
    }

    /// Counts a packet of a real's flow that is on its way (sent now, or
    /// held for its next hop).
    #[inline]
    fn count_forwarded(&self, v: Verdict, real_id: u32, len: u64) {
        if matches!(
            v,
            Verdict::Transmit(_) | Verdict::Hold { .. } | Verdict::Hold6 { .. }
        ) {
            let c = self.stats.real(real_id);
            c.packets.incr();
            c.bytes.add(len);
        }
    }
}

/// A NAT request's rewrite, made by egress ([`FrameRewrite`]).
struct NatRequest {
    real: Ipv4Addr,
    real_port: u16,
    adjust: Option<crate::forward::TcpAdjust>,
}

impl FrameRewrite for NatRequest {
    #[inline(always)]
    fn apply(self, frame: &mut [u8]) {
        match self.adjust {
            None => nat::rewrite_request(frame, self.real, self.real_port),
            Some(a) => nat::rewrite_request_translated(frame, self.real, self.real_port, a),
        }
    }

    /// The real's route found (so `real` is its address, and the flow's
    /// VIP, port and real port those its sums were made with: one id,
    /// one service and real): the checksum changes come with the route.
    #[inline(always)]
    fn apply_routed(self, frame: &mut [u8], route: &RealRoute) {
        match self.adjust {
            None => nat::rewrite_request_summed(frame, self.real, self.real_port, route.nat_sums()),
            Some(a) => nat::rewrite_request_translated(frame, self.real, self.real_port, a),
        }
    }
}

/// A NAT reply's rewrite, made by egress ([`FrameRewrite`]).
struct NatReply {
    vip: Ipv4Addr,
    vip_port: u16,
    adjust: Option<crate::forward::TcpAdjust>,
}

impl FrameRewrite for NatReply {
    #[inline(always)]
    fn apply(self, frame: &mut [u8]) {
        match self.adjust {
            None => nat::rewrite_reply(frame, self.vip, self.vip_port),
            Some(a) => nat::rewrite_reply_translated(frame, self.vip, self.vip_port, a),
        }
    }
}

/// No rewrite (a method other than NAT, whose rewrite is never asked for).
struct NoRewrite;

impl FrameRewrite for NoRewrite {
    #[inline(always)]
    fn apply(self, _: &mut [u8]) {}
}

/// An ICMP error's rewrite on its way to a NAT real
/// ([`icmp::rewrite_nat_error`]), made by egress ([`FrameRewrite`]).
struct NatErrorToReal {
    end: usize,
    real: Ipv4Addr,
    real_port: u16,
    quote: Option<crate::forward::TcpAdjust>,
}

impl FrameRewrite for NatErrorToReal {
    fn apply(self, frame: &mut [u8]) {
        icmp::rewrite_nat_error(
            frame,
            self.end,
            false,
            self.real,
            self.real_port,
            self.quote,
        );
    }
}

/// Whether two MAC addresses are the same, compared as a word and a half
/// word: the derived comparison of the six bytes joined each side into a
/// 48-bit value first, some 8 instructions more on every frame.
#[inline(always)]
fn same_mac(a: &MacAddr, b: &MacAddr) -> bool {
    let word = |m: &MacAddr| m.0.first_chunk::<4>().map(|w| u32::from_ne_bytes(*w));
    let half = |m: &MacAddr| m.0.last_chunk::<2>().map(|h| u16::from_ne_bytes(*h));
    word(a) == word(b) && half(a) == half(b)
}

/// ICMP's redirect (RFC 792).
const ICMP_REDIRECT: u8 = 5;

/// The shortest Ethernet frame (without its FCS): shorter packets come
/// padded to it.
const MIN_FRAME: usize = 60;

/// Cuts what follows the IP packet ending at `end` off the frame, unless it
/// is only the padding of a minimal frame: it is no part of the packet, so
/// nothing may forward or reflect it, and MTU checks judge the frame that
/// goes out (found in review: 4,000 bytes after a 28-byte datagram went
/// out whole on a port of MTU 1500, over both families, NAT and DR).
#[inline(always)]
fn cut_trailer<B: PacketBuf>(pkt: &mut B, end: usize) {
    if pkt.len() > end.max(MIN_FRAME) {
        cut_trailer_cold(pkt, end);
    }
}

#[cold]
#[inline(never)]
fn cut_trailer_cold<B: PacketBuf>(pkt: &mut B, end: usize) {
    // Shrinking a frame of one segment cannot fail.
    let _ = pkt.set_len(end);
}

/// The verdict on an IPv4 packet in a link-layer broadcast or multicast
/// frame: never forwarded nor answered; not for us when it is to a group
/// or a broadcast address (as before), else a frame that should not have
/// been sent to a group.
#[cold]
fn ipv4_to_group(ip: &Ipv4Meta) -> Verdict {
    if ip.dst.is_broadcast() || ip.dst.is_multicast() {
        Verdict::Drop(DropReason::NotForUs)
    } else {
        Verdict::Drop(DropReason::NotOurMac)
    }
}

/// The verdict on an IPv4 packet from a source no host has (see
/// `Pipeline::ipv4`).
#[cold]
fn martian_source(ip: &Ipv4Meta) -> Verdict {
    let to_group = ip.dst.is_broadcast() || ip.dst.is_multicast();
    if ip.src.is_unspecified() && to_group {
        Verdict::Drop(DropReason::NotForUs)
    } else {
        Verdict::Drop(DropReason::BadIpHeader)
    }
}

/// Whether an IPv4 frame the lookahead found to a VIP on no service's port
/// is dropped for that in `run` whatever else: to our MAC, from a source a
/// host can have. Its verdict is then settled in the burst's first pass.
#[inline(always)]
fn settled_no_service(dst_mac: MacAddr, ip: &Ipv4Meta, my_mac: Option<MacAddr>) -> bool {
    Some(dst_mac) == my_mac && !crate::route::no_host_has(ip.src)
}

/// Whether an IPv6 packet to our MAC on a port with an IPv6 address,
/// which the lookahead found to a VIP on no service's port, is dropped
/// for that in `run` whatever else: TCP or UDP (not neighbor discovery),
/// from a source a host can have, neither end link-local (a VIP is never
/// multicast, link-local nor a port's address).
#[inline(always)]
fn settled_no_service6(ip: &Ipv6Meta) -> bool {
    matches!(ip.l4, L4::Tcp { .. } | L4::Udp { .. })
        && !crate::route::no_host_has6(ip.src)
        && !ipv6::is_link_local(ip.src)
        && !ipv6::is_link_local(ip.dst)
}

/// [`Verdict::ToKernel`] on a port with a kernel interface, else a drop
/// for `reason` (what the frame got before the exception path existed);
/// a drop for [`DropReason::ReversePath`] when its source `src` belongs to
/// another port (reverse-path check: found in audit, a frame on the WAN
/// claiming the sync peer's or a real's address on the LAN reached the
/// WAN's kernel interface, which Linux's loose reverse-path filter lets
/// through to a socket that trusts that address, such as an unkeyed
/// `[sync]` listening on every address). Its own reason, so that forged
/// sources show apart from other frames for nobody.
#[cold]
fn to_kernel_or(snap: &Snapshot, in_port: usize, src: IpAddr, reason: DropReason) -> Verdict {
    match snap.ports.get(in_port) {
        Some(p) if p.kernel => {
            if snap.source_elsewhere(in_port, src) {
                Verdict::Drop(DropReason::ReversePath)
            } else {
                Verdict::ToKernel
            }
        }
        _ => Verdict::Drop(reason),
    }
}

/// [`lookahead`] for an IPv6 packet, with the IPv6 table's `seed`: the
/// same sorting, in the same order.
#[inline(always)]
fn lookahead6(snap: &Snapshot, seed: &IndexSeed, ip: &Ipv6Meta) -> Option<Lookahead> {
    let (ports, _) = ip.l4.ports()?;
    let proto = u8::from(ip.protocol);
    if let Some(service) = snap.service_for6(proto, ip.dst, ports.dst) {
        Some(Lookahead::Request6 {
            hash: seed.flow(proto, ip.src, ports.src, ip.dst, ports.dst),
            service: service as u32,
        })
    } else if snap.is_vip6(ip.dst) {
        Some(Lookahead::NoService)
    } else if snap.is_nat_endpoint6(proto, ip.src, ports.src) {
        Some(Lookahead::Reply6 {
            hash: seed.reply(proto, ip.src, ports.src, ip.dst, ports.dst),
        })
    } else {
        None
    }
}

/// The flow-table key hash of a classified TCP or UDP frame to a VIP or from
/// a NAT real (anything else: None, and the stages sort it out).
#[inline(always)]
fn lookahead(
    snap: &Snapshot,
    seed: &IndexSeed,
    parsed: &Result<Parsed, DropReason>,
) -> Option<Lookahead> {
    match parsed {
        Ok(Parsed {
            l3: L3::Ipv4(ip), ..
        }) => lookahead4(snap, seed, ip),
        Ok(Parsed {
            l3: L3::Ipv6(_), ..
        }) => Some(Lookahead::Ipv6),
        _ => None,
    }
}

/// [`lookahead`] for an IPv4 packet.
#[inline(always)]
fn lookahead4(snap: &Snapshot, seed: &IndexSeed, ip: &Ipv4Meta) -> Option<Lookahead> {
    let (ports, _) = ip.l4.ports()?;
    let proto = u8::from(ip.protocol);
    if let Some(service) = snap.service_for(proto, ip.dst, ports.dst) {
        Some(Lookahead::Request {
            hash: seed.flow(proto, ip.src, ports.src, ip.dst, ports.dst),
            service: service as u32,
        })
    } else if snap.is_vip(ip.dst) {
        Some(Lookahead::NoService)
    } else if snap.is_nat_endpoint(proto, ip.src, ports.src) {
        Some(Lookahead::Reply {
            hash: seed.reply(proto, ip.src, ports.src, ip.dst, ports.dst),
        })
    } else {
        None
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod synproxy_tests;

#[cfg(test)]
mod ipv6_tests;

#[cfg(test)]
mod synproxy6_tests;
