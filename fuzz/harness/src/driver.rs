//! The `pipeline` target: several workers' [`Pipeline`]s run as the
//! dataplane's worker loop runs them (`dataplane/src/worker.rs`): a burst
//! through `process_burst`, Drop verdicts counted with `drop_packet`,
//! hand-offs delivered to the owner (through `process`, and never handed
//! on again), frames held for ARP until their next hop resolves or 3 s
//! pass, frames the SYN proxy defers kept in the worker's `DeferList` (the
//! dataplane's own code) and run again after each op, SYNs to reals the
//! SYN proxy sends again made (`resend_syns`) after each op, learned
//! neighbors shared, ARP requests built.
//!
//! Checked after every frame's verdict:
//! - `verdict.*`: ports and workers named exist; Consumed only for ARP; a
//!   hand-off goes to another worker, and the owner never hands off again
//!   (`handoff.twice`).
//! - `out.*` ([`crate::packet::check_sent`]): what is sent or held is
//!   Ethernet from the port's MAC (destination zero exactly when held),
//!   and an ARP reply to the request, or IPv4 with no options, a valid
//!   header checksum, a length that fits the frame (padding only as much
//!   as came in; none after headers we built), TCP/UDP checksums valid
//!   exactly when they were valid on the way in (UDP 0 only if it was 0),
//!   ICMP checksums valid (generated, or valid in), only addresses, ports,
//!   TTL and checksums changed by NAT, and for TUN the received packet
//!   unchanged inside an outer header from the port's address. The real or
//!   VIP a packet goes to belongs to the service (`out.wrong-real`,
//!   `out.wrong-vip`). For a flow the SYN proxy answered, sequence and
//!   acknowledgment numbers, window and options may change too (same
//!   length). A handshake segment the proxy makes (the cookie SYN-ACK, the
//!   SYN and the ACK to the real, a RST to a real that acknowledged
//!   another connection than the SYN's, at that number) is whole: valid checksums (its input's
//!   were: the proxy verifies what it terminates), no payload, no padding,
//!   addressed as it must be (`out.syn-proxy`); over IPv6 (NAT66) the
//!   same, with a plain 40-byte header.
//!
//! - `verdict.gateway`: a frame addressed to the floating gateway (ARP
//!   target, IP destination, solicitation target) is answered or sent on
//!   only by a snapshot that floats it on the in-port (the active
//!   appliance of a pair; `configs::FLOAT4`, `FLOAT6`).
//! - `verdict.to_kernel`: only a port with a kernel interface gives a
//!   frame to the kernel (counted with the consumed ones), and never one
//!   addressed to the floating gateway, which the kernel does not hold,
//!   nor an IP frame (neighbor discovery aside) whose source belongs to
//!   another port (`Snapshot::source_elsewhere`); and a frame is dropped
//!   as `reverse_path` only for such a source (for the kernel, or a
//!   request that would have made a flow), for a request that would have
//!   made a flow from a client routed out of another port (off every
//!   connected network, not on the gateway's port), or for a NAT real's packet
//!   that came in on another port than the one the real is routed by.
//!   Of what is sent to an IPv6 group, only neighbor discovery and an MLD
//!   query as routers send it (type 130 in a group's frame, from a
//!   link-local address, hop limit 1, right after the fixed header or one
//!   8-byte hop-by-hop header) reach the kernel.
//! - `verdict.defer`: a deferred frame is untouched, a TCP segment from
//!   the client the verdict names (`Defer6`: its IPv6 source) to a VIP,
//!   deferred by the owner of its flow; a frame run again is never handed
//!   off (`handoff.twice`).
//! - `syn.resend`: a SYN the SYN proxy sends a real again is, from the IP
//!   header on (IPv4, or IPv6 for a NAT66 flow), the SYN that flow sent it first (same client, real, ISN),
//!   out of the same port, from the port's MAC (the destination zero
//!   exactly when held), sent, held or dropped; `syn.resend-rate`: at most
//!   `SYN_RETRIES` per first SYN, each at least `SYN_RTO_MS << n` after the
//!   one before (whatever the input sends, nobody makes the appliance send
//!   SYNs faster).
//!
//! Checked after every op:
//! - `count.outcomes`: frames in + frames made (SYNs sent again, those
//!   that found no buffer counted dropped `no_mbuf`) = sent + consumed +
//!   dropped + held + deferred (still in a `DeferList`).
//! - `count.syn-retransmits`: `syn_proxy_syn_retransmits` = the SYNs sent
//!   again that were sent or held.
//! - `count.deferred`: `syn_proxy_deferred` = the frames the lists took.
//! - `defer.list`: each worker's list holds what the driver gave it and
//!   did not get back, at most `DEFER_SLOTS`, each frame untouched and,
//!   after the pass, none older than `DEFER_MS`.
//! - `count.drops`: the workers' drop counters = the Drop verdicts (and
//!   the loop's own drops), per reason.
//! - `count.*`: handoffs_out, arp_replies, icmp_echo_replies,
//!   syn_proxy_cookies_sent,
//!   icmp_frag_needed, icmp_errors_forwarded and the reals' packet
//!   counters agree with what was sent (each frame counted once, under
//!   what it was).
//! - `stats.active-flows`: the gauge = `flows().len()` ≤ capacity.
//! - `stats.real-active`: each real's active gauge = its non-template
//!   flows in the table (so they sum to the non-template flows).
//! - `table.owner`: every flow in a worker's table is owned by it.
//! - `table.duplicate`: no key twice in a table.
//! - `table.template-children`: a template counts no more children than
//!   it has live flows (on any real: a moved template still counts the
//!   flows it placed before).
//! - `table.trust`: every entry sits in the eviction queue of the trust
//!   class its flow has earned, and the queues are sound
//!   (`FlowTable::audit`).
//! - `arp.request`: ARP requests asked for are for a connected address of
//!   an existing port.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use lb_config::{ForwardingMethod, MacAddr};
use lb_core::buffer::{PacketBuf, RxChecksum, VecBuf};
use lb_core::flow::synproxy::{SYN_RETRIES, SYN_RTO_MS};
use lb_core::flow::{owner_of, FlowAddr, FlowKey, FlowTable, ReplyKey, FLOW_TEMPLATE};
use lb_core::forward;
use lb_core::pipeline::{
    build_arp_request, build_neighbor_solicit, DeferList, Pipeline, Verdict, ARP_REQUEST_LEN,
    DEFER_MS, DEFER_SLOTS, NEIGHBOR_SOLICIT_LEN,
};
use lb_core::snapshot::Snapshot;
use lb_core::stats::{DropReason, WorkerStats};

use crate::configs::{self, Family, VARIANTS};
use crate::gen6;
use crate::packet::{self, addr, addr6, flag, get16, Sent};
use crate::Violations;

/// As in the worker loop: packets that may wait for ARP, per worker.
pub const HOLD_SLOTS: usize = 64;
/// As in the worker loop: how long a packet waits for its next hop.
pub const HOLD_MS: u32 = 3_000;
/// How many recent input frames and sent flow packets ops can refer to.
const RECENT: usize = 16;
/// The most frames one input may send in, to bound a run's time.
const MAX_FRAMES: u64 = 4096;
/// The largest frame read (a jumbo frame's size).
const MAX_FRAME: usize = 9018;
/// The payload a REPLY with data carries.
const REPLY_DATA: usize = 32;

const IP: usize = 14;

/// The floating gateway a frame is addressed to, if it is: an ARP
/// request's target, an IP destination, a Neighbor Solicitation's target.
/// Only the active appliance (a snapshot that floats it on the in-port)
/// may answer or forward such a frame (`verdict.gateway`).
fn to_floating_gateway(b: &[u8]) -> Option<IpAddr> {
    let ethertype = b.get(12..14)?;
    let hit = |a: IpAddr| {
        (a == IpAddr::V4(configs::FLOAT4) || a == IpAddr::V6(configs::FLOAT6)).then_some(a)
    };
    match ethertype {
        [0x08, 0x06] if b.len() >= IP + 28 => hit(IpAddr::V4(addr(b, IP + 24))),
        [0x08, 0x00] if b.len() >= IP + 20 => hit(IpAddr::V4(addr(b, IP + 16))),
        [0x86, 0xdd] if b.len() >= IP + 40 => {
            let dst = hit(IpAddr::V6(addr6(b, IP + 24)));
            // A solicitation (ICMPv6 135, no extension headers) names its
            // target after the ICMPv6 header.
            let ns = (b[IP + 6] == 58 && b.get(IP + 40) == Some(&135) && b.len() >= IP + 64)
                .then(|| hit(IpAddr::V6(addr6(b, IP + 48))))
                .flatten();
            dst.or(ns)
        }
        _ => None,
    }
}

/// The IP source of an IPv4 frame, or of an IPv6 one other than a
/// neighbor solicitation or advertisement (which the pipeline gives the
/// kernel without the reverse-path check: its sender is held to the link
/// by its own rules), found as the pipeline finds it, past any extension
/// headers. Router solicitations and advertisements and redirects are
/// checked as any IP frame is (found in review: an exemption of ICMPv6
/// 133 to 137 right after the fixed header disagreed with the pipeline).
fn ip_source_checked(b: &[u8]) -> Option<IpAddr> {
    match b.get(12..14)? {
        [0x08, 0x00] if b.len() >= IP + 20 => Some(IpAddr::V4(addr(b, IP + 12))),
        [0x86, 0xdd] if b.len() >= IP + 40 => {
            let ndp = packet::layout6(b)
                .and_then(|l| l.upper)
                .is_some_and(|(proto, at)| proto == 58 && matches!(b.get(at), Some(135 | 136)));
            (!ndp).then(|| IpAddr::V6(addr6(b, IP + 8)))
        }
        _ => None,
    }
}

/// Runs one `pipeline` input.
pub fn run(data: &[u8]) -> Violations {
    run_with_summary(data).0
}

/// Runs one `pipeline` input; also says what became of its frames.
pub fn run_with_summary(data: &[u8]) -> (Violations, String) {
    crate::fix_owners();
    let mut r = Reader { data, pos: 0 };
    let topology = usize::from(r.byte());
    let h1 = r.byte();
    let workers = 1 + usize::from(h1) % 3;
    // Its top bit runs bursts in three stages, as a worker does with a
    // large table (`Pipeline::set_deep_pipeline_from`).
    let deep = h1 & 0x80 != 0;
    let h2 = r.byte();
    let capacity = 4 + usize::from(h2) % 61;
    // The capacity byte's top values also set a per-source limit the
    // small tables reach (2 to 5 confirmed flows a source; the default,
    // at least 64, never is), so that flows held one-way for their
    // source's share are fuzzed too (found in review).
    let source_limit = (h2 >= 183).then(|| 2 + u32::from(h2 % 4));
    let h3 = r.byte();
    let start = if h3 == 0 {
        0
    } else {
        u32::MAX - u32::from(h3) * 4096
    };
    let scarce = topology & 0x80 != 0;
    let mut d = Driver::new(configs::family(topology), workers, capacity, start, scarce);
    if let Some(limit) = source_limit {
        for w in &mut d.workers {
            w.pipeline.set_source_limit(limit);
        }
    }
    if deep {
        for w in &mut d.workers {
            w.pipeline.set_deep_pipeline_from(0);
        }
    }
    while let Some(op) = r.u8() {
        if d.t.frames_in >= MAX_FRAMES {
            break;
        }
        if trace() {
            eprintln!("op {op:02x} at t={}", d.now);
        }
        d.op(op, &mut r);
        d.after();
    }
    d.finish();
    let t = &d.t;
    let mut summary = format!(
        "{} frames in: {} sent ({} flow, {} arp, {} na, {} echo, {} frag-needed, {} icmp errors, {} SYNs sent again, {} clients reset), {} consumed, {} handed off, {} held, {} deferred ({} sent on); {} solicitations, {} arp requests",
        t.frames_in, t.sent, t.flow_packets, t.arp_replies, t.ndp_adverts, t.echo_replies,
        t.frag_needed, t.icmp_errors, t.syn_resent, t.syn_resets, t.consumed, t.handoffs, t.held_total,
        t.deferred_total, t.deferred_sent, t.ndp_solicits, t.arp_requests
    );
    for r in DropReason::ALL {
        if t.dropped[r as usize] > 0 {
            summary.push_str(&format!(", {} {}", t.dropped[r as usize], r.as_str()));
        }
    }
    let flows: usize = d.workers.iter().map(|w| w.pipeline.flows().len()).sum();
    let flows6: usize = d
        .workers
        .iter()
        .map(|w| w.pipeline.flows6().map_or(0, |t| t.len()))
        .sum();
    // Both families' tables.
    let proxied: usize = d
        .workers
        .iter()
        .map(|w| {
            let t = w.pipeline.flows();
            let v4 = t
                .entries()
                .into_iter()
                .filter(|&e| t.get(e).is_proxied() && !t.get(e).is_proxy_waiting())
                .count();
            let v6 = w.pipeline.flows6().map_or(0, |t| {
                t.entries()
                    .into_iter()
                    .filter(|&e| t.get(e).is_proxied() && !t.get(e).is_proxy_waiting())
                    .count()
            });
            v4 + v6
        })
        .sum();
    summary.push_str(&format!(
        "; {} syn cookies sent; {flows} flows and {flows6} IPv6 flows at the end, {proxied} proxied and answered by their real",
        t.syn_cookies
    ));
    // Flows held one-way for their source's share (IPv4 table: enough to
    // show a seed reaches it).
    let held: usize = d
        .workers
        .iter()
        .map(|w| {
            let t = w.pipeline.flows();
            t.entries()
                .into_iter()
                .filter(|&e| {
                    t.trust(e) == lb_core::flow::Trust::OneWay
                        && t.get(e).trust() == lb_core::flow::Trust::Confirmed
                })
                .count()
        })
        .sum();
    if held > 0 {
        summary.push_str(&format!(", {held} held one-way for their source"));
    }
    (d.v, summary)
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Option<u8> {
        let b = self.data.get(self.pos).copied();
        self.pos += 1;
        b
    }

    fn byte(&mut self) -> u8 {
        self.u8().unwrap_or(0)
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        let end = (start + n).min(self.data.len());
        self.pos = end;
        &self.data[start..end]
    }
}

/// A frame on its way through the workers.
struct Frame {
    buf: VecBuf,
    /// The frame as received (after the fix-ups).
    input: Vec<u8>,
    in_port: usize,
}

/// As the worker keeps mbufs in its `DeferList`, the driver keeps frames.
impl PacketBuf for Frame {
    fn data(&self) -> &[u8] {
        self.buf.data()
    }
    fn data_mut(&mut self) -> &mut [u8] {
        self.buf.data_mut()
    }
    fn headroom(&self) -> usize {
        self.buf.headroom()
    }
    fn prepend(&mut self, n: usize) -> bool {
        self.buf.prepend(n)
    }
    fn adj(&mut self, n: usize) -> bool {
        self.buf.adj(n)
    }
    fn trim(&mut self, n: usize) -> bool {
        self.buf.trim(n)
    }
    fn append(&mut self, n: usize) -> bool {
        self.buf.append(n)
    }
    fn rx_ip_checksum(&self) -> RxChecksum {
        self.buf.rx_ip_checksum()
    }
}

/// Where a frame that is settled comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum From {
    /// A burst the worker received.
    Rx,
    /// Handed to the worker by another: never handed on again.
    HandedIn,
    /// Its `DeferList`, run again: never handed on either.
    Deferred,
}

struct Held {
    frame: Frame,
    port: usize,
    next_hop: IpAddr,
    since: u32,
}

struct Worker {
    pipeline: Pipeline,
    stats: Arc<WorkerStats>,
    held: Vec<Held>,
    deferred: DeferList<Frame>,
    /// A scarce mbuf pool (the header's `h0 & 0x80`): every other buffer
    /// asked for a SYN sent again is not there (the first, the third...).
    scarce: bool,
    asked: u64,
}

/// What the driver saw happen, to compare with the counters.
#[derive(Default)]
struct Tally {
    frames_in: u64,
    sent: u64,
    consumed: u64,
    dropped: PerReason,
    held_now: u64,
    held_total: u64,
    handoffs: u64,
    arp_replies: u64,
    ndp_adverts: u64,
    ndp_solicits: u64,
    /// ARP requests the workers sent.
    arp_requests: u64,
    echo_replies: u64,
    frag_needed: u64,
    icmp_errors: u64,
    flow_packets: u64,
    syn_cookies: u64,
    /// In the workers' `DeferList`s now; ever taken; sent on after a re-run.
    deferred_now: u64,
    deferred_total: u64,
    deferred_sent: u64,
    /// Frames the workers made between polls (SYNs to reals sent again),
    /// and of those the ones on their way (sent or held).
    made: u64,
    syn_resent: u64,
    /// RSTs to clients of proxied connections given up on.
    syn_resets: u64,
}

/// A count per drop reason (an array: `Default` stops at 32 elements).
struct PerReason([u64; DropReason::COUNT]);

impl Default for PerReason {
    fn default() -> Self {
        PerReason([0; DropReason::COUNT])
    }
}

impl std::ops::Deref for PerReason {
    type Target = [u64; DropReason::COUNT];
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for PerReason {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// A first SYN the SYN proxy sent a real, by (client, client port, real,
/// real port, ISN): the port it left by, its bytes from the IPv4 header
/// on, and when it and each re-send went (`syn.resend*`).
struct FirstSyn {
    port: Option<usize>,
    ip: Vec<u8>,
    times: Vec<u32>,
}

type SynKey = (IpAddr, u16, IpAddr, u16, u32);

/// The key of a TCP/IPv4 SYN frame (20-byte IPv4 header), or a TCP/IPv6
/// one (a plain 40-byte header: the SYN proxy makes no other).
fn syn_key(f: &[u8]) -> Option<SynKey> {
    if let Some(l) = packet::layout6(f) {
        let (6, l4) = l.upper? else {
            return None;
        };
        return (l4 == IP + 40 && l.end >= l4 + 20).then(|| {
            (
                IpAddr::V6(addr6(f, IP + 8)),
                get16(f, l4),
                IpAddr::V6(addr6(f, IP + 24)),
                get16(f, l4 + 2),
                u32::from_be_bytes([f[l4 + 4], f[l4 + 5], f[l4 + 6], f[l4 + 7]]),
            )
        });
    }
    let l = packet::layout(f)?;
    let l4 = IP + l.ihl;
    (l.proto == 6 && l.ihl == 20 && f.len() >= l4 + 20).then(|| {
        (
            IpAddr::V4(addr(f, IP + 12)),
            get16(f, l4),
            IpAddr::V4(addr(f, IP + 16)),
            get16(f, l4 + 2),
            u32::from_be_bytes([f[l4 + 4], f[l4 + 5], f[l4 + 6], f[l4 + 7]]),
        )
    })
}

/// The TCP flags of a frame of either family (no IPv4 options, no IPv6
/// extension headers), if it is TCP.
fn tcp_flags(f: &[u8]) -> Option<u8> {
    let l4 = match packet::layout6(f) {
        Some(l) => match l.upper {
            Some((6, l4)) if l4 == IP + 40 => l4,
            _ => return None,
        },
        None => {
            let l = packet::layout(f)?;
            if l.proto != 6 || l.ihl != 20 {
                return None;
            }
            IP + l.ihl
        }
    };
    f.get(l4 + 13).copied()
}

struct Driver {
    fam: &'static Family,
    snap: usize,
    workers: Vec<Worker>,
    capacity: usize,
    now: u32,
    t: Tally,
    /// Recent input frames (after fix-ups) and their ports.
    recent_in: VecDeque<(usize, Vec<u8>)>,
    /// Recent flow packets sent (for TUN, the inner packet) and the port
    /// they left by.
    recent_out: VecDeque<(usize, Vec<u8>)>,
    /// Recent tunnel packets sent (IPIP, 6in6, 4in6), whole, and the port
    /// they left by: what a router inside a tunnel quotes.
    recent_tunnels: VecDeque<(usize, Vec<u8>)>,
    /// The targets of the latest solicitations the workers sent, and the
    /// port (answered by the IPV6 op's kind 5).
    solicited: VecDeque<(usize, Ipv6Addr)>,
    /// The SYNs the SYN proxy sent reals first (from a client's ACK).
    first_syns: HashMap<SynKey, FirstSyn>,
    v: Violations,
}

impl Driver {
    fn new(
        fam: &'static Family,
        workers: usize,
        capacity: usize,
        now: u32,
        scarce: bool,
    ) -> Driver {
        let snap = &fam.snapshots[0];
        let workers = (0..workers)
            .map(|i| {
                let stats = Arc::new(WorkerStats::default());
                let mut pipeline = Pipeline::new(i, workers, capacity, Arc::clone(&stats));
                pipeline.adopt(snap);
                Worker {
                    pipeline,
                    stats,
                    held: Vec::new(),
                    deferred: DeferList::new(DEFER_SLOTS, DEFER_MS),
                    scarce,
                    asked: 0,
                }
            })
            .collect();
        Driver {
            fam,
            snap: 0,
            workers,
            capacity,
            now,
            t: Tally::default(),
            recent_in: VecDeque::new(),
            recent_out: VecDeque::new(),
            recent_tunnels: VecDeque::new(),
            solicited: VecDeque::new(),
            first_syns: HashMap::new(),
            v: Violations::default(),
        }
    }

    fn snapshot(&self) -> &'static Snapshot {
        &self.fam.snapshots[self.snap]
    }

    fn op(&mut self, op: u8, r: &mut Reader<'_>) {
        match op {
            0x00..=0x7f => {
                let n = 1 + usize::from(op & 0x3f);
                let b = r.byte();
                let in_port = usize::from(b & 3);
                let w = usize::from(b >> 2) % self.workers.len();
                let mut frames = Vec::with_capacity(n);
                for _ in 0..n {
                    let Some(flags) = r.u8() else { break };
                    let len = usize::from(u16::from_be_bytes([r.byte(), r.byte()]));
                    let bytes = r.bytes(len.min(MAX_FRAME)).to_vec();
                    frames.push((flags, bytes));
                }
                self.burst(w, in_port, frames, op & 0x40 != 0);
            }
            0x80..=0x9f => self.advance(u32::from(op & 0x1f) * 125 + 1),
            0xa0..=0xaf => {
                let budget = (usize::from(op & 0xf) + 1) * 8;
                let snap = self.snapshot();
                let now = self.now;
                for w in &mut self.workers {
                    w.pipeline.sweep(snap, now, budget);
                }
            }
            0xb0..=0xbf => self.advance((u32::from(op & 0xf) + 1) * 60_000),
            0xc8..=0xcf => {
                let b = r.byte();
                let k = gen6::Knobs {
                    a: r.byte(),
                    m: r.byte(),
                    x: r.byte(),
                    s: r.byte(),
                    p: r.byte(),
                };
                let port = usize::from(b & 3);
                let solicited: Vec<_> = self.solicited.iter().copied().collect();
                let cx = gen6::Context {
                    snap: self.snapshot(),
                    port,
                    solicited: &solicited,
                };
                let frame = gen6::build(op, k, &cx);
                // An answer goes in by the port it was asked on.
                let port = match (op & 7, solicited.len()) {
                    (5, n) if n > 0 => solicited[n - 1 - usize::from(k.a) % n].0,
                    _ => port,
                };
                let w = usize::from(b >> 2) % self.workers.len();
                // Built whole (or broken on purpose): no fix-ups.
                self.burst(w, port, vec![(0, frame)], false);
            }
            0xc0..=0xc7 => {
                self.snap = usize::from(op & 3) % VARIANTS;
                let snap = self.snapshot();
                for w in &mut self.workers {
                    w.pipeline.adopt(snap);
                    w.deferred.recheck();
                }
            }
            0xd0..=0xdf => {
                let flags = r.byte();
                let b = r.byte();
                if let Some((port, f)) = recent(&self.recent_out, op) {
                    let reply = if packet::layout6(&f).is_some() {
                        reply_to6(&f, flags, self.snapshot(), port)
                    } else {
                        reply_to(&f, flags, self.snapshot(), port)
                    };
                    if let Some(mut reply) = reply {
                        if b & 0x80 != 0 {
                            // With data (a client's request, say).
                            reply.extend_from_slice(&[b'd'; REPLY_DATA]);
                        }
                        self.synthesized(usize::from(b & 0x7f), port, reply);
                    }
                }
            }
            0xe0..=0xef => {
                let kind = r.byte();
                let w = usize::from(r.byte());
                let about = if kind & 0x40 != 0 {
                    &self.recent_tunnels
                } else {
                    &self.recent_out
                };
                if let Some((port, f)) = recent(about, op) {
                    let err = if packet::layout6(&f).is_some() {
                        icmp6_error_about(&f, kind, self.snapshot(), port)
                    } else {
                        icmp_error_about(&f, kind, self.snapshot(), port)
                    };
                    if let Some(err) = err {
                        self.synthesized(w, port, err);
                    }
                }
            }
            0xf0..=0xff => {
                let flags = r.byte();
                let w = usize::from(r.byte());
                if let Some((port, mut f)) = recent(&self.recent_in, op) {
                    if flags != 0 {
                        set_tcp_flags(&mut f, flags);
                    }
                    self.synthesized(w, port, f);
                }
            }
        }
    }

    fn advance(&mut self, ms: u32) {
        self.now = self.now.wrapping_add(ms);
    }

    /// A frame the driver made: a burst of one, checksums right.
    fn synthesized(&mut self, w: usize, port: usize, frame: Vec<u8>) {
        let w = w % self.workers.len();
        self.burst(w, port, vec![(flag::ALL_FIXES, frame)], false);
    }

    fn burst(&mut self, w: usize, in_port: usize, raw: Vec<(u8, Vec<u8>)>, one_by_one: bool) {
        if raw.is_empty() {
            return;
        }
        let snap = self.snapshot();
        let our_mac = snap.ports.get(in_port).map(|p| p.mac.0);
        let mut frames: Vec<Frame> = raw
            .into_iter()
            .map(|(flags, mut bytes)| {
                packet::fix_up(&mut bytes, flags, our_mac);
                let buf = if flags & flag::NO_HEADROOM != 0 {
                    VecBuf::with_room(&bytes, 0, VecBuf::DEFAULT_ROOM)
                } else {
                    VecBuf::from_bytes(&bytes)
                };
                push_recent(&mut self.recent_in, (in_port, bytes.clone()));
                Frame {
                    buf,
                    input: bytes,
                    in_port,
                }
            })
            .collect();
        self.t.frames_in += frames.len() as u64;
        let mut handoffs = Vec::new();
        if one_by_one {
            // Each verdict acted on before the next call, as the worker
            // loop does with what it runs one at a time: a call forgets
            // the next hops of the last one's held IPv6 packets (found by
            // fuzzing: the driver read them after the whole op).
            for mut f in frames {
                let v = self.workers[w]
                    .pipeline
                    .process(snap, in_port, &mut f.buf, self.now);
                self.settle(w, f, v, From::Rx, &mut handoffs);
            }
        } else {
            let mut verdicts = vec![Verdict::Consumed; frames.len()];
            let mut bufs: Vec<VecBuf> = frames
                .iter_mut()
                .map(|f| std::mem::replace(&mut f.buf, VecBuf::from_bytes(&[])))
                .collect();
            let p = &mut self.workers[w].pipeline;
            p.process_burst(snap, in_port, &mut bufs, &mut verdicts, self.now);
            for (f, b) in frames.iter_mut().zip(bufs) {
                f.buf = b;
            }
            for (f, v) in frames.into_iter().zip(verdicts) {
                self.settle(w, f, v, From::Rx, &mut handoffs);
            }
        }
        // The owners take them (the worker loop does, at its next poll).
        let mut again = Vec::new();
        for (to, mut f) in handoffs {
            self.workers[to].stats.handoffs_in.incr();
            let p = &mut self.workers[to].pipeline;
            let v = p.process(snap, f.in_port, &mut f.buf, self.now);
            self.settle(to, f, v, From::HandedIn, &mut again);
        }
        debug_assert!(again.is_empty());
    }

    /// Acts on a verdict as the worker loop does, and checks it.
    fn settle(
        &mut self,
        w: usize,
        f: Frame,
        v: Verdict,
        from: From,
        handoffs: &mut Vec<(usize, Frame)>,
    ) {
        let snap = self.snapshot();
        let handed_in = from != From::Rx;
        self.note_first_syn(&f, v);
        if trace() {
            eprintln!(
                "t={} worker {w}{} port {}: {v:?} for {:02x?}",
                self.now,
                match from {
                    From::Rx => "",
                    From::HandedIn => " (handed in)",
                    From::Deferred => " (deferred, run again)",
                },
                f.in_port,
                &f.input[..f.input.len().min(54)]
            );
        }
        match v {
            Verdict::Transmit(port) => {
                self.check_sent(snap, usize::from(port), false, &f);
                if let Some(g) = to_floating_gateway(&f.input) {
                    let floated = snap.ports.get(f.in_port).is_some_and(|p| match g {
                        IpAddr::V4(a) => p.floating == Some(a),
                        IpAddr::V6(a) => p.floating6 == Some(a),
                    });
                    if !floated {
                        self.v.add(
                            "verdict.gateway",
                            format!("a frame for the floating gateway {g} answered or sent on by a snapshot that does not float it on port {}", f.in_port),
                        );
                    }
                }
                self.t.sent += 1;
            }
            Verdict::Hold6 { port, index } => {
                match self.workers[w].pipeline.held_next_hop6(index) {
                    Some(next_hop) => self.hold(w, f, usize::from(port), next_hop.into()),
                    None => {
                        self.v.add(
                            "verdict.hold6",
                            format!("Hold6 index {index} names no next hop"),
                        );
                        self.drop(w, DropReason::NeighborUnresolved);
                    }
                }
            }
            Verdict::Hold { port, next_hop } => self.hold(w, f, usize::from(port), next_hop.into()),
            Verdict::Drop(reason) => {
                if reason == DropReason::ReversePath {
                    let src = ip_source_checked(&f.input);
                    if !src.is_some_and(|s| {
                        snap.source_elsewhere(f.in_port, s)
                            || real_elsewhere(snap, f.in_port, s)
                            || routed_elsewhere(snap, f.in_port, s)
                    }) {
                        self.v.add(
                            "verdict.to_kernel",
                            format!(
                                "a frame from {src:?} on port {} was dropped as reverse_path: {:02x?}",
                                f.in_port, f.input
                            ),
                        );
                    }
                }
                self.drop(w, reason)
            }
            Verdict::Defer { .. } | Verdict::Defer6 { .. } => {
                self.check_defer(snap, w, &f, v, from);
                let worker = &mut self.workers[w];
                let in_port = f.in_port;
                match worker.deferred.push(f, in_port, v, self.now, &worker.stats) {
                    Ok(()) => {
                        self.t.deferred_now += 1;
                        self.t.deferred_total += 1;
                    }
                    // Every slot taken: dropped, as the worker does.
                    Err(_) => self.drop(w, DropReason::SynProxyPending),
                }
            }
            Verdict::ToKernel => {
                // Leaves the dataplane, as a consumed frame does: counted
                // with those. Only a port with a kernel interface has one.
                self.t.consumed += 1;
                if !snap.ports.get(f.in_port).is_some_and(|p| p.kernel) {
                    self.v.add(
                        "verdict.to_kernel",
                        format!(
                            "a frame went to the kernel from port {}, which has no kernel interface: {:02x?}",
                            f.in_port, f.input
                        ),
                    );
                }
                if let Some(g) = to_floating_gateway(&f.input) {
                    self.v.add(
                        "verdict.to_kernel",
                        format!(
                            "a frame for the floating gateway {g} went to the kernel from port {}: {:02x?}",
                            f.in_port, f.input
                        ),
                    );
                }
                if to_group6(&f.input) && !ndp_or_mld_query(&f.input) {
                    self.v.add(
                        "verdict.to_kernel",
                        format!(
                            "a frame to an IPv6 group, neither neighbor discovery nor an MLD query, went to the kernel from port {}: {:02x?}",
                            f.in_port, f.input
                        ),
                    );
                }
                if let Some(s) = ip_source_checked(&f.input) {
                    if snap.source_elsewhere(f.in_port, s) {
                        self.v.add(
                            "verdict.to_kernel",
                            format!(
                                "a frame from {s}, another port's, went to the kernel from port {}: {:02x?}",
                                f.in_port, f.input
                            ),
                        );
                    }
                }
            }
            Verdict::Consumed => {
                self.t.consumed += 1;
                if f.input.get(12..14) != Some(&[0x08, 0x06]) && !is_advert(&f.input) {
                    self.v.add(
                        "verdict.consumed",
                        format!(
                            "a frame neither ARP nor an advertisement was consumed: {:02x?}",
                            f.input
                        ),
                    );
                }
            }
            Verdict::HandOff(to) => {
                let to = usize::from(to);
                self.t.handoffs += 1;
                if handed_in {
                    self.v.add(
                        "handoff.twice",
                        format!(
                            "worker {w}, the owner, handed to {to} a frame handed to it: {:02x?}",
                            f.input
                        ),
                    );
                    self.drop(w, DropReason::HandoffFull);
                } else if to >= self.workers.len() || to == w {
                    self.v.add(
                        "verdict.handoff",
                        format!("worker {w} of {} handed off to {to}", self.workers.len()),
                    );
                    self.drop(w, DropReason::HandoffFull);
                } else {
                    handoffs.push((to, f));
                }
            }
        }
    }

    fn drop(&mut self, w: usize, reason: DropReason) {
        self.workers[w].stats.drop_packet(reason);
        self.t.dropped[reason as usize] += 1;
    }

    /// Whether `input` (TCP) belongs to a flow the SYN proxy answered the
    /// handshake of, in its owner's table (after the frame was run).
    fn proxied(&self, snap: &Snapshot, input: &[u8]) -> bool {
        if packet::layout6(input).is_some() {
            return self.proxied6(snap, input);
        }
        let Some(l) = packet::layout(input) else {
            return false;
        };
        let l4 = IP + l.ihl;
        if l.proto != 6 || input.len() < l4 + 4 {
            return false;
        }
        let (src, dst) = (addr(input, IP + 12), addr(input, IP + 16));
        let (sport, dport) = (get16(input, l4), get16(input, l4 + 2));
        let n = self.workers.len();
        if snap.is_vip(dst) {
            let key = FlowKey {
                proto: 6,
                client: src,
                client_port: sport,
                vip: dst,
                vip_port: dport,
            };
            let t = self.workers[owner_of(src, n)].pipeline.flows();
            t.lookup(&key, t.key_hash(&key))
                .is_some_and(|e| t.get(e).is_proxied())
        } else {
            let key = ReplyKey {
                proto: 6,
                real: src,
                real_port: sport,
                client: dst,
                client_port: dport,
            };
            let t = self.workers[owner_of(dst, n)].pipeline.flows();
            t.lookup_reply(&key, t.reply_key_hash(&key))
                .is_some_and(|e| t.get(e).is_proxied())
        }
    }

    /// [`Self::proxied`] for an IPv6 `input`, in the IPv6 tables.
    fn proxied6(&self, snap: &Snapshot, input: &[u8]) -> bool {
        let Some(l) = packet::layout6(input) else {
            return false;
        };
        let Some((6, l4)) = l.upper else {
            return false;
        };
        if l.end < l4 + 4 {
            return false;
        }
        let (src, dst) = (addr6(input, IP + 8), addr6(input, IP + 24));
        let (sport, dport) = (get16(input, l4), get16(input, l4 + 2));
        let n = self.workers.len();
        if snap.is_vip6(dst) {
            let key = FlowKey {
                proto: 6,
                client: src,
                client_port: sport,
                vip: dst,
                vip_port: dport,
            };
            self.workers[owner_of(src, n)]
                .pipeline
                .flows6()
                .is_some_and(|t| {
                    t.lookup(&key, t.key_hash(&key))
                        .is_some_and(|e| t.get(e).is_proxied())
                })
        } else {
            let key = ReplyKey {
                proto: 6,
                real: src,
                real_port: sport,
                client: dst,
                client_port: dport,
            };
            self.workers[owner_of(dst, n)]
                .pipeline
                .flows6()
                .is_some_and(|t| {
                    t.lookup_reply(&key, t.reply_key_hash(&key))
                        .is_some_and(|e| t.get(e).is_proxied())
                })
        }
    }

    /// A frame held for its next hop, as the worker holds it.
    fn hold(&mut self, w: usize, f: Frame, port: usize, next_hop: IpAddr) {
        let snap = self.snapshot();
        self.check_sent(snap, port, true, &f);
        self.keep_held(w, f, port, next_hop);
    }

    fn keep_held(&mut self, w: usize, f: Frame, port: usize, next_hop: IpAddr) {
        let worker = &mut self.workers[w];
        if worker.held.len() < HOLD_SLOTS {
            worker.held.push(Held {
                frame: f,
                port,
                next_hop,
                since: self.now,
            });
            worker.stats.held.incr();
            self.t.held_now += 1;
            self.t.held_total += 1;
        } else {
            self.drop(w, DropReason::NeighborUnresolved);
        }
    }

    fn check_sent(&mut self, snap: &Snapshot, port: usize, hold: bool, f: &Frame) -> Sent {
        let out = f.buf.data();
        let proxied = self.proxied(snap, &f.input);
        let sent = packet::check_sent(
            &mut self.v,
            snap,
            port,
            hold,
            out,
            &f.input,
            f.in_port,
            proxied,
        );
        match sent {
            Sent::SynCookie => {
                self.t.syn_cookies += 1;
                // The client's answer to it can be made from it.
                push_recent(&mut self.recent_out, (port, out.to_vec()));
            }
            Sent::ArpReply => self.t.arp_replies += 1,
            Sent::NdpAdvert => self.t.ndp_adverts += 1,
            Sent::EchoReply => self.t.echo_replies += 1,
            Sent::FragNeeded => self.t.frag_needed += 1,
            Sent::IcmpError => self.t.icmp_errors += 1,
            Sent::Flow => {
                self.t.flow_packets += 1;
                let inner = if out[12..14] == [0x86, 0xdd] {
                    check_service6(&mut self.v, snap, out, &f.input);
                    if matches!(out[IP + 6], 4 | 41) {
                        push_recent(&mut self.recent_tunnels, (port, out.to_vec()));
                        // The client's packet, inside the tunnel (6in6,
                        // 4in6).
                        let mut e = out[..IP].to_vec();
                        if out[IP + 6] == 4 {
                            e[12..14].copy_from_slice(&[0x08, 0x00]);
                        }
                        e.extend_from_slice(&out[IP + 40..]);
                        e
                    } else {
                        out.to_vec()
                    }
                } else if f.input.get(12..14) == Some(&[0x86, 0xdd]) {
                    self.v.add(
                        "out.family",
                        format!("an IPv6 flow packet left as IPv4: {out:02x?}"),
                    );
                    out.to_vec()
                } else {
                    check_service(&mut self.v, snap, out, &f.input);
                    if out[IP + 9] == 4 {
                        push_recent(&mut self.recent_tunnels, (port, out.to_vec()));
                        // The client's packet, inside the tunnel.
                        let mut e = out[..IP].to_vec();
                        e.extend_from_slice(&out[IP + 20..]);
                        e
                    } else {
                        out.to_vec()
                    }
                };
                push_recent(&mut self.recent_out, (port, inner));
            }
            Sent::Other => {}
        }
        sent
    }

    /// Between ops, as the worker loop does between polls: neighbors
    /// learned are shared, ARP requests built, held frames released or
    /// given up on; then the tables and counters are checked.
    fn after(&mut self) {
        let snap = self.snapshot();
        let now = self.now;
        let n = self.workers.len();
        for w in 0..n {
            let learned: Vec<(IpAddr, MacAddr)> = self.workers[w].pipeline.take_learned().collect();
            for (i, other) in self.workers.iter_mut().enumerate() {
                if i != w {
                    for &(ip, mac) in &learned {
                        other.pipeline.learn_neighbor(snap, ip, mac, now);
                    }
                }
            }
            // Before the ARP requests, as the worker loop: a SYN held for
            // its next hop asks.
            self.resend_syns(w);
            let asks: Vec<_> = self.workers[w].pipeline.take_arp_requests().collect();
            for req in asks {
                check_arp_request(&mut self.v, snap, req.port, req.target);
                self.t.arp_requests += 1;
            }
            // Solicitations, sent as the worker sends them.
            let asks6: Vec<_> = self.workers[w].pipeline.take_ndp_requests().collect();
            for req in asks6 {
                if check_ndp_request(&mut self.v, snap, req.port, req.target) {
                    self.workers[w].stats.ndp_solicitations.incr();
                    self.t.ndp_solicits += 1;
                    if self.solicited.len() == RECENT {
                        self.solicited.pop_front();
                    }
                    self.solicited.push_back((req.port, req.target));
                }
            }
            self.release_deferred(w);
            self.release(w);
        }
        self.check_deferred();
        self.check_tables();
        self.check_counts();
    }

    /// The SYNs to reals the SYN proxy sends again, as after each poll
    /// (into buffers that come dirty, as mbufs do; from a scarce pool,
    /// none every other time).
    fn resend_syns(&mut self, w: usize) {
        let snap = self.snapshot();
        let now = self.now;
        let mut out = Vec::new();
        let mut no_buffer = 0;
        let worker = &mut self.workers[w];
        worker.pipeline.syn_timers(snap, now);
        let (scarce, asked) = (worker.scarce, &mut worker.asked);
        // A Hold6's next hop is named by the pipeline until its next run:
        // read right after the SYN's routing, as the worker does.
        worker.pipeline.resend_syns_with(
            snap,
            now,
            || {
                *asked += 1;
                if scarce && *asked % 2 == 1 {
                    no_buffer += 1;
                    return None;
                }
                let mut b = VecBuf::from_bytes(&[0xa5; 128]);
                b.trim(128).then_some(b)
            },
            |p, b, v| {
                let hop6 = match v {
                    Verdict::Hold6 { index, .. } => p.held_next_hop6(index),
                    _ => None,
                };
                out.push((b, v, hop6))
            },
        );
        // A SYN that found no buffer: made and dropped (`no_mbuf`, which
        // the pipeline counts itself: no frame comes back); not an attempt
        // for `syn.resend-rate` (nothing went), and its flow must still
        // get no more than its three after it.
        self.t.made += no_buffer;
        self.t.dropped[DropReason::NoMbuf as usize] += no_buffer;
        for (buf, v, hop6) in out {
            self.t.made += 1;
            let (port, hold) = match v {
                Verdict::Transmit(port) => (usize::from(port), false),
                Verdict::Hold { port, .. } => (usize::from(port), true),
                Verdict::Hold6 { port, .. } if hop6.is_some() => (usize::from(port), true),
                Verdict::Drop(r) => {
                    // An attempt all the same (no route, too big): the
                    // back-off counts it.
                    self.check_resent(snap, None, buf.data());
                    self.drop(w, r);
                    continue;
                }
                v => {
                    self.v.add(
                        "syn.resend",
                        format!("a SYN sent again got {v:?}: {:02x?}", buf.data()),
                    );
                    self.t.consumed += 1;
                    continue;
                }
            };
            self.check_resent(snap, Some((port, hold)), buf.data());
            // A RST to a client given up on is not a SYN sent again.
            if tcp_flags(buf.data()).is_none_or(|f| f & 0x04 == 0) {
                self.t.syn_resent += 1;
            } else {
                self.t.syn_resets += 1;
            }
            let f = Frame {
                input: buf.data().to_vec(),
                buf,
                in_port: port,
            };
            // A REPLY op can answer it, as any packet to a real.
            push_recent(&mut self.recent_out, (port, f.input.clone()));
            match (v, hop6) {
                (Verdict::Hold { next_hop, .. }, _) => self.keep_held(w, f, port, next_hop.into()),
                (Verdict::Hold6 { .. }, Some(h)) => self.keep_held(w, f, port, h.into()),
                _ => self.t.sent += 1,
            }
        }
    }

    /// Records the SYN the SYN proxy made of a client's ACK (`f`, its
    /// verdict `v`): its first to the real, sent, held or dropped.
    fn note_first_syn(&mut self, f: &Frame, v: Verdict) {
        let out = f.buf.data();
        // TCP right after a plain IPv4 or IPv6 header (what the proxy
        // makes; a client's ACK with extension headers is not recorded, and
        // its SYN's re-sends then report no first).
        let flags = |b: &[u8]| {
            if b.get(12..14) == Some(&[0x86, 0xdd]) {
                (b.len() > IP + 53 && b[IP + 6] == 6).then(|| b[IP + 53] & 0x17)
            } else {
                (b.len() > IP + 33 && b[IP] == 0x45 && b[IP + 9] == 6).then(|| b[IP + 33] & 0x17)
            }
        };
        // A client's ACK (with data, PSH or FIN too: no SYN or RST) that
        // carried a good cookie: the flow's first SYN.
        let acked = flags(&f.input).is_some_and(|x| x & 0x16 == 0x10);
        if !acked || flags(out) != Some(0x02) {
            return;
        }
        let port = match v {
            Verdict::Transmit(p)
            | Verdict::Hold { port: p, .. }
            | Verdict::Hold6 { port: p, .. } => Some(usize::from(p)),
            _ => None,
        };
        if let Some(key) = syn_key(out) {
            self.first_syns.insert(
                key,
                FirstSyn {
                    port,
                    ip: out[IP..].to_vec(),
                    times: vec![self.now],
                },
            );
        }
    }

    /// `syn.resend`, `syn.resend-rate`: a SYN sent again, out of `port`
    /// (held or not), or dropped (None).
    fn check_resent(&mut self, snap: &Snapshot, to: Option<(usize, bool)>, out: &[u8]) {
        if tcp_flags(out).is_some_and(|f| f & 0x04 != 0) {
            self.check_reset(out);
            return;
        }
        let now = self.now;
        let Some(first) = syn_key(out).and_then(|k| self.first_syns.get_mut(&k)) else {
            if to.is_some() {
                self.v.add(
                    "syn.resend",
                    format!("a SYN sent again that no client's ACK sent first: {out:02x?}"),
                );
            }
            return;
        };
        if let Some((port, hold)) = to {
            // Only to a real the running config has (not one a reload
            // removed: found in review). Of either family: the SYN's key
            // names its real.
            let (dst, dport) = match syn_key(out) {
                Some((_, _, real, port, _)) => (Some(real), Some(port)),
                None => (None, None),
            };
            let configured = snap.services.iter().any(|s| {
                s.reals
                    .iter()
                    .any(|r| Some(r.address) == dst && Some(r.port) == dport)
            });
            if !configured {
                self.v.add(
                    "syn.resend",
                    format!("a SYN sent again to a real the snapshot does not have: {out:02x?}"),
                );
            }
            let mac_ok = snap.ports.get(port).is_some_and(|p| {
                out.len() > IP && out[6..12] == p.mac.0 && (out[..6] == [0; 6]) == hold
            });
            // Sent by the way the first went (a first that was dropped
            // went none: a reload may have given it one since).
            let port_ok = first.port.is_none_or(|p| p == port);
            if !mac_ok || !port_ok || out[IP..] != first.ip[..] {
                self.v.add(
                    "syn.resend",
                    format!(
                        "a SYN sent again out of port {port} (held: {hold}) is not the first (port {:?}): {out:02x?}, first {:02x?}",
                        first.port, first.ip
                    ),
                );
            }
        }
        let n = first.times.len() - 1;
        let last = first.times[n];
        if n >= usize::from(SYN_RETRIES) || now.wrapping_sub(last) < SYN_RTO_MS << n {
            self.v.add(
                "syn.resend-rate",
                format!(
                    "a SYN sent again at {now}: the first and {n} again at {:?}",
                    first.times
                ),
            );
        }
        first.times.push(now);
    }

    /// `syn.reset`: a RST out of the resend pass (a proxied connection
    /// given up on) is RST and ACK, goes to a client whose first SYN went
    /// to a real, and not before the three re-sends and 8 s more could
    /// have passed (15 s after that first SYN).
    fn check_reset(&mut self, out: &[u8]) {
        let Some((_, _, client, client_port, _)) = syn_key(out) else {
            self.v
                .add("syn.reset", format!("a RST that is not TCP: {out:02x?}"));
            return;
        };
        let give_up = (1 + 2 + 4 + 8) * SYN_RTO_MS;
        let known = self.first_syns.iter().any(|(k, first)| {
            k.0 == client && k.1 == client_port && self.now.wrapping_sub(first.times[0]) >= give_up
        });
        if tcp_flags(out) != Some(0x14) || !known {
            self.v.add(
                "syn.reset",
                format!(
                    "a RST from the resend pass at {} to no client given up on: {out:02x?}",
                    self.now
                ),
            );
        }
    }

    /// The worker's pass over its deferred frames, as after each poll.
    fn release_deferred(&mut self, w: usize) {
        let snap = self.snapshot();
        let now = self.now;
        let mut out = Vec::new();
        let worker = &mut self.workers[w];
        // A Hold6's next hop is named by the pipeline until its next run:
        // read right after the frame's, as the worker does.
        worker
            .deferred
            .release_with(&mut worker.pipeline, snap, now, |p, f, v| {
                let hop6 = match v {
                    Verdict::Hold6 { index, .. } => p.held_next_hop6(index),
                    _ => None,
                };
                out.push((f, v, hop6))
            });
        for (f, v, hop6) in out {
            self.t.deferred_now -= 1;
            if matches!(
                v,
                Verdict::Transmit(_) | Verdict::Hold { .. } | Verdict::Hold6 { .. }
            ) {
                self.t.deferred_sent += 1;
            }
            if let Verdict::Hold6 { port, index } = v {
                match hop6 {
                    Some(h) => self.hold(w, f, usize::from(port), h.into()),
                    None => {
                        self.v.add(
                            "verdict.hold6",
                            format!("Hold6 index {index} of a deferred frame names no next hop"),
                        );
                        self.drop(w, DropReason::NeighborUnresolved);
                    }
                }
                continue;
            }
            let mut handoffs = Vec::new();
            self.settle(w, f, v, From::Deferred, &mut handoffs);
            debug_assert!(handoffs.is_empty());
        }
    }

    /// A `Defer` (or `Defer6`) verdict: for an untouched TCP segment from
    /// the client it names (`Defer6`: the frame's IPv6 source) to a VIP,
    /// from the owner of its flow.
    fn check_defer(&mut self, snap: &Snapshot, w: usize, f: &Frame, v: Verdict, from: From) {
        let n = self.workers.len();
        let (client, client_port, from_client) = match v {
            Verdict::Defer {
                client,
                client_port,
            } => (
                IpAddr::V4(client),
                client_port,
                packet::layout(&f.input).is_some_and(|l| {
                    let l4 = IP + l.ihl;
                    l.proto == 6
                        && f.input.len() >= l4 + 20
                        && addr(&f.input, IP + 12) == client
                        && get16(&f.input, l4) == client_port
                        && snap.is_vip(addr(&f.input, IP + 16))
                }),
            ),
            Verdict::Defer6 { client_port } => {
                // The pipeline defers only TCP right after a plain IPv6
                // header or behind extension headers: the classifier says
                // where its TCP header starts.
                let parsed = lb_core::pipeline::classify(&f.input);
                match parsed.map(|p| p.l3) {
                    Ok(lb_core::pipeline::L3::Ipv6(ip)) => (
                        IpAddr::V6(ip.src),
                        client_port,
                        ip.protocol == lb_core::wire::IpProtocol::Tcp
                            && ip.l4.ports().is_some_and(|(p, _)| p.src == client_port)
                            && snap.is_vip6(ip.dst),
                    ),
                    _ => (IpAddr::V6(Ipv6Addr::UNSPECIFIED), client_port, false),
                }
            }
            _ => return,
        };
        let owner = match client {
            IpAddr::V4(a) => owner_of(a, n),
            IpAddr::V6(a) => owner_of(a, n),
        };
        if f.buf.data() != &f.input[..] || !from_client || owner != w || from == From::Deferred {
            self.v.add(
                "verdict.defer",
                format!(
                    "worker {w} of {n} ({from:?}) deferred {client}:{client_port}: {:02x?}, now {:02x?}",
                    f.input,
                    f.buf.data()
                ),
            );
        }
    }

    /// The deferred frames: what the driver gave each list and did not get
    /// back, untouched, within the bounds, none past its age after a pass.
    fn check_deferred(&mut self) {
        let now = self.now;
        let mut held = 0;
        for (w, worker) in self.workers.iter().enumerate() {
            let list = &worker.deferred;
            held += list.len() as u64;
            if list.len() > DEFER_SLOTS {
                self.v.add(
                    "defer.list",
                    format!("worker {w} keeps {} deferred frames", list.len()),
                );
            }
            for (f, since) in list.iter() {
                if now.wrapping_sub(since) > DEFER_MS || f.buf.data() != &f.input[..] {
                    self.v.add(
                        "defer.list",
                        format!(
                            "worker {w} keeps a frame deferred at {since} (now {now}): {:02x?}",
                            f.buf.data()
                        ),
                    );
                }
            }
        }
        if held != self.t.deferred_now {
            self.v.add(
                "defer.list",
                format!(
                    "the lists keep {held} frames, {} were deferred and not released",
                    self.t.deferred_now
                ),
            );
        }
    }

    fn release(&mut self, w: usize) {
        let snap = self.snapshot();
        let now = self.now;
        let held = std::mem::take(&mut self.workers[w].held);
        for mut h in held {
            if let Some(mac) = self.workers[w].pipeline.resolved(snap, h.next_hop) {
                if mac.is_zero() || !mac.is_unicast() {
                    self.v
                        .add("hold.mac", format!("{} resolved to {mac:?}", h.next_hop));
                }
                // Never learned at one of our own ports' MACs (a static
                // neighbor is the config's to name).
                let configured = match h.next_hop {
                    IpAddr::V4(a) => snap.static_neighbor(a).is_some(),
                    IpAddr::V6(a) => snap.static_neighbor6(a).is_some(),
                };
                if !configured && snap.is_own_mac(mac) {
                    self.v.add(
                        "hold.mac",
                        format!("{} learned at our own MAC {mac:?}", h.next_hop),
                    );
                }
                let src = snap.ports[h.port].mac;
                forward::set_macs(h.frame.buf.data_mut(), mac, src);
                // What a REPLY or ERROR op makes from it comes from where
                // it went (recorded when it was held, without a MAC: an
                // error from a real at 00:00:00:00:00:00 is refused).
                let sent = h.frame.buf.data();
                for (_, f) in self
                    .recent_out
                    .iter_mut()
                    .chain(self.recent_tunnels.iter_mut())
                {
                    if f.len() == sent.len() && f[..6] == [0; 6] && f[12..] == sent[12..] {
                        f[..12].copy_from_slice(&sent[..12]);
                    }
                }
                self.t.held_now -= 1;
                self.t.sent += 1;
            } else if now.wrapping_sub(h.since) > HOLD_MS {
                self.t.held_now -= 1;
                self.drop(w, DropReason::NeighborUnresolved);
            } else {
                self.workers[w].held.push(h);
            }
        }
    }

    /// At the end of the input: what is still held is given up on, and
    /// what is deferred freed as a worker that stops frees it.
    fn finish(&mut self) {
        for w in 0..self.workers.len() {
            for _ in std::mem::take(&mut self.workers[w].held) {
                self.t.held_now -= 1;
                self.drop(w, DropReason::NeighborUnresolved);
            }
            let left = self.workers[w].deferred.drain().count() as u64;
            self.t.deferred_now -= left;
            self.workers[w]
                .stats
                .drop_packets(DropReason::SynProxyPending, left);
            self.t.dropped[DropReason::SynProxyPending as usize] += left;
        }
        self.check_counts();
    }

    fn check_tables(&mut self) {
        let n = self.workers.len();
        for (w, worker) in self.workers.iter().enumerate() {
            let mut per_real: HashMap<u32, u64> = HashMap::new();
            let gauge = worker.stats.active_flows.get();
            audit_table(
                &mut self.v,
                (w, n, self.capacity),
                "",
                worker.pipeline.flows(),
                gauge,
                &mut per_real,
            );
            match worker.pipeline.flows6() {
                Some(flows6) => {
                    let gauge = worker.stats.ipv6_flows.active.get();
                    audit_table(
                        &mut self.v,
                        (w, n, self.capacity),
                        " (IPv6)",
                        flows6,
                        gauge,
                        &mut per_real,
                    );
                }
                None if self.snapshot().has_ipv6() => self.v.add(
                    "table.ipv6",
                    format!("worker {w} runs an IPv6 snapshot without an IPv6 flow table"),
                ),
                None => {}
            }
            let ids: HashSet<u32> = self
                .fam
                .real_ids
                .iter()
                .copied()
                .chain(per_real.keys().copied())
                .collect();
            for id in ids {
                let gauge = worker.stats.real(id).active.get();
                let live = per_real.get(&id).copied().unwrap_or(0);
                if gauge != live {
                    self.v.add(
                        "stats.real-active",
                        format!(
                            "worker {w}: real {id} active gauge {gauge}, {live} flows in the tables"
                        ),
                    );
                }
            }
        }
    }

    fn check_counts(&mut self) {
        let t = &self.t;
        let dropped: u64 = t.dropped.iter().sum();
        if t.frames_in + t.made != t.sent + t.consumed + dropped + t.held_now + t.deferred_now {
            self.v.add(
                "count.outcomes",
                format!(
                    "{} frames in, {} made; {} sent, {} consumed, {dropped} dropped, {} held, {} deferred",
                    t.frames_in, t.made, t.sent, t.consumed, t.held_now, t.deferred_now
                ),
            );
        }
        let sum = |f: &dyn Fn(&WorkerStats) -> u64| -> u64 {
            self.workers.iter().map(|w| f(&w.stats)).sum()
        };
        for r in DropReason::ALL {
            let counted = sum(&|s| s.dropped(r));
            if counted != t.dropped[r as usize] {
                self.v.add(
                    "count.drops",
                    format!(
                        "{}: counted {counted}, dropped {}",
                        r.as_str(),
                        t.dropped[r as usize]
                    ),
                );
            }
        }
        let ids = &self.fam.real_ids;
        let checks: [(&'static str, u64, u64); 11] = [
            (
                "count.syn-retransmits",
                sum(&|s| s.syn_proxy_syn_retransmits.get()),
                t.syn_resent,
            ),
            (
                "count.deferred",
                sum(&|s| s.syn_proxy_deferred.get()),
                t.deferred_total,
            ),
            (
                "count.syn-cookies",
                sum(&|s| s.syn_proxy_cookies_sent.get()),
                t.syn_cookies,
            ),
            ("count.handoffs", sum(&|s| s.handoffs_out.get()), t.handoffs),
            ("count.held", sum(&|s| s.held.get()), t.held_total),
            (
                "count.arp-replies",
                sum(&|s| s.arp_replies.get()),
                t.arp_replies,
            ),
            (
                "count.ndp-adverts",
                sum(&|s| s.ndp_advertisements.get()),
                t.ndp_adverts,
            ),
            (
                "count.echo-replies",
                sum(&|s| s.icmp_echo_replies.get()),
                t.echo_replies,
            ),
            (
                "count.frag-needed",
                sum(&|s| s.icmp_frag_needed.get()),
                t.frag_needed,
            ),
            (
                "count.icmp-errors",
                sum(&|s| s.icmp_errors_forwarded.get()),
                t.icmp_errors,
            ),
            (
                "count.real-packets",
                sum(&|s| ids.iter().map(|&id| s.real(id).packets.get()).sum()),
                t.flow_packets,
            ),
        ];
        for (id, counted, seen) in checks {
            if counted != seen {
                self.v.add(id, format!("counted {counted}, sent {seen}"));
            }
        }
    }
}

/// Checks one flow table (IPv4 or IPv6) of worker `w` of `n` (`dims`: w,
/// n, capacity): its gauge, length, audit, owners, duplicate keys and
/// template children; adds its non-template flows per real to `per_real`.
fn audit_table<A: FlowAddr>(
    v: &mut Violations,
    (w, n, capacity): (usize, usize, usize),
    family: &str,
    flows: &FlowTable<A>,
    gauge: u64,
    per_real: &mut HashMap<u32, u64>,
) {
    let len = flows.len();
    if gauge != len as u64 || len > capacity || flows.capacity() != capacity {
        v.add(
            "stats.active-flows",
            format!(
                "worker {w}{family}: active_flows {gauge}, table {len} of {} (capacity {capacity})",
                flows.capacity(),
            ),
        );
    }
    let mut keys: HashSet<FlowKey<A>> = HashSet::new();
    let mut templates = Vec::new();
    let mut children: HashMap<FlowKey<A>, u32> = HashMap::new();
    if let Err(e) = flows.audit() {
        v.add("table.trust", format!("worker {w}{family}: {e}"));
    }
    let entries = flows.entries();
    if entries.len() != len {
        v.add(
            "table.len",
            format!(
                "worker {w}{family}: {} live entries, len {len}",
                entries.len()
            ),
        );
    }
    for e in entries {
        let f = flows.get(e);
        let key = f.key();
        if !keys.insert(key) {
            v.add(
                "table.duplicate",
                format!("worker {w}{family}: {key:?} twice"),
            );
        }
        // The index finds every entry by its key, and a NAT flow by its
        // reply key too (another flow may share that one: a client port
        // to two VIPs on one real), whether or not the reply key is still
        // to be written (`FlowTable::insert_deferred`).
        if flows.lookup(&key, flows.key_hash(&key)) != Some(e) {
            v.add(
                "table.index",
                format!("worker {w}{family}: {key:?} not found by its key"),
            );
        }
        if f.is_template() {
            templates.push(*f);
            continue;
        }
        if f.method == ForwardingMethod::Nat {
            let rk = f.reply_key();
            let found = flows.lookup_reply(&rk, flows.reply_key_hash(&rk));
            if found.map(|x| flows.get(x).reply_key()) != Some(rk) {
                v.add(
                    "table.index",
                    format!("worker {w}{family}: NAT flow {key:?} not found by its reply key"),
                );
            }
        }
        *per_real.entry(f.real_id).or_default() += 1;
        if owner_of(f.client(), n) != w {
            v.add(
                "table.owner",
                format!("worker {w} of {n} has a flow of {}", f.client()),
            );
        }
        if f.templated {
            let tk = FlowKey {
                proto: key.proto | FLOW_TEMPLATE,
                client_port: 0,
                ..key
            };
            *children.entry(tk).or_default() += 1;
        }
    }
    for t in templates {
        let live = children.get(&t.key()).copied().unwrap_or(0);
        if t.children > live {
            v.add(
                "table.template-children",
                format!(
                    "worker {w}{family}: template {:?} counts {} children, {live} live",
                    t.key(),
                    t.children,
                ),
            );
        }
    }
}

/// Whether a frame is a Neighbor Advertisement (which the pipeline may
/// consume: it learned from it).
/// Whether `f` is IPv6 to a multicast destination.
fn to_group6(f: &[u8]) -> bool {
    f.get(12..14) == Some(&[0x86, 0xdd]) && f.get(IP + 24) == Some(&0xff)
}

/// Whether `f` (IPv6 to a group) is neighbor discovery (past any extension
/// headers), or an MLD query as routers send it (in its group's own
/// frame: `33:33` and the group's last four bytes), read here on its own.
fn ndp_or_mld_query(f: &[u8]) -> bool {
    let Some((proto, at)) = packet::layout6(f).and_then(|l| l.upper) else {
        return false;
    };
    let kind = f.get(at).copied();
    if proto != 58 {
        return false;
    }
    if matches!(kind, Some(135 | 136)) {
        return true;
    }
    let src = addr6(f, IP + 8);
    kind == Some(130)
        && f.get(..2) == Some(&[0x33, 0x33])
        && f.get(2..6) == f.get(IP + 36..IP + 40)
        && f.get(IP + 7) == Some(&1)
        && src.is_unicast_link_local()
        && (at == IP + 40 || (at == IP + 48 && f.get(IP + 6) == Some(&0)))
}

fn is_advert(f: &[u8]) -> bool {
    packet::layout6(f).is_some_and(|l| matches!(l.upper, Some((58, at)) if f.get(at) == Some(&136)))
}

/// Whether `LB_FUZZ_TRACE` is set: every verdict is printed (triage).
fn trace() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("LB_FUZZ_TRACE").is_some())
}

fn recent(q: &VecDeque<(usize, Vec<u8>)>, op: u8) -> Option<(usize, Vec<u8>)> {
    if q.is_empty() {
        return None;
    }
    let k = usize::from(op & 0xf) % q.len();
    q.get(q.len() - 1 - k).cloned()
}

fn push_recent(q: &mut VecDeque<(usize, Vec<u8>)>, item: (usize, Vec<u8>)) {
    if q.len() == RECENT {
        q.pop_front();
    }
    q.push_back(item);
}

/// A flow packet sent goes to a real of the service it came in for
/// (requests), or comes from the VIP of a service of the real (replies).
fn check_service(v: &mut Violations, snap: &Snapshot, out: &[u8], input: &[u8]) {
    let proto = input[IP + 9];
    if proto != 6 && proto != 17 {
        return;
    }
    let ihl = usize::from(input[IP] & 0xf) * 4;
    let l4 = IP + ihl;
    let (src, dst) = (addr(input, IP + 12), addr(input, IP + 16));
    let (sport, dport) = (get16(input, l4), get16(input, l4 + 2));
    if let Some(s) = snap.service_for(proto, dst, dport) {
        let svc = &snap.services[s];
        let ok = if out[IP + 9] == 4 {
            let to = addr(out, IP + 16);
            svc.reals
                .iter()
                .any(|r| r.method == ForwardingMethod::Tunnel && r.address == to)
        } else if addr(out, IP + 16) == dst {
            // DR: only the MACs changed; the real is the one it went to.
            get16(out, l4 + 2) == dport
                && svc
                    .reals
                    .iter()
                    .any(|r| r.method == ForwardingMethod::DirectRoute)
        } else {
            let (to, port) = (addr(out, IP + 16), get16(out, l4 + 2));
            svc.reals
                .iter()
                .any(|r| r.method == ForwardingMethod::Nat && r.address == to && r.port == port)
        };
        if !ok {
            v.add(
                "out.wrong-real",
                format!(
                    "a packet for {}:{dport} went to a real not of service {}: {out:02x?}",
                    dst, svc.name
                ),
            );
        }
    } else if snap.is_nat_endpoint(proto, src, sport)
        && addr(out, IP + 16) == src
        && get16(out, l4 + 2) == sport
    {
        // The SYN proxy's ACK back to a real that answered its SYN.
        if !snap.is_vip(addr(input, IP + 16))
            && !snap.services.iter().any(|s| {
                s.reals.iter().any(|r| {
                    r.method == ForwardingMethod::Nat && r.address == src && r.port == sport
                })
            })
        {
            v.add(
                "out.wrong-real",
                format!("an ACK back to {src}:{sport}, not a NAT real"),
            );
        }
    } else if snap.is_nat_endpoint(proto, src, sport) {
        let (from, port) = (addr(out, IP + 12), get16(out, l4));
        let ok = snap.services.iter().any(|s| {
            s.vip == from
                && s.port == port
                && s.ip_protocol() == proto
                && s.reals.iter().any(|r| {
                    r.method == ForwardingMethod::Nat && r.address == src && r.port == sport
                })
        });
        if !ok {
            v.add(
                "out.wrong-vip",
                format!("a reply from {src}:{sport} left as from {from}:{port}, not a service of that real"),
            );
        }
    } else {
        v.add(
            "out.unrequested",
            format!("a flow packet sent for neither a service nor a NAT real: {input:02x?}"),
        );
    }
}

fn check_arp_request(v: &mut Violations, snap: &Snapshot, port: usize, target: Ipv4Addr) {
    let Some(view) = snap.ports.get(port) else {
        v.add("arp.request", format!("ARP request out of port {port}"));
        return;
    };
    if !view.connected(target) {
        v.add(
            "arp.request",
            format!("ARP request for {target}, not on port {port}'s network"),
        );
    }
    let Some(own) = view.ipv4() else {
        v.add(
            "arp.request",
            format!("ARP request for {target} on port {port}, which has no IPv4 address"),
        );
        return;
    };
    let mut buf = VecBuf::with_room(&[], VecBuf::DEFAULT_HEADROOM, VecBuf::DEFAULT_ROOM);
    if !build_arp_request(&mut buf, view.mac, own, target) {
        v.add("arp.request", "could not build an ARP request".to_string());
        return;
    }
    let b = buf.data();
    let ok = b.len() == ARP_REQUEST_LEN
        && b[..6] == [0xff; 6]
        && b[6..12] == view.mac.0
        && b[12..22] == [8, 6, 0, 1, 8, 0, 6, 4, 0, 1]
        && addr(b, 28) == own
        && addr(b, 38) == target;
    if !ok {
        v.add("arp.request", format!("ARP request built: {b:02x?}"));
    }
}

/// Sets the TCP flags of a TCP/IPv4 frame (the checksum is fixed later).
fn set_tcp_flags(f: &mut [u8], flags: u8) {
    if let Some(packet::Layout6 {
        upper: Some((6, l4)),
        end,
    }) = packet::layout6(f)
    {
        if l4 + 13 < end {
            f[l4 + 13] = flags;
        }
        return;
    }
    if let Some(l) = packet::layout(f) {
        let at = IP + l.ihl + 13;
        if l.proto == 6 && at < f.len() {
            f[at] = flags;
        }
    }
}

/// The packet the destination of `f` (a flow packet that left by `port`)
/// sends back: addresses and ports swapped, from its MAC to ours.
fn reply_to(f: &[u8], flags: u8, snap: &Snapshot, port: usize) -> Option<Vec<u8>> {
    let l = packet::layout(f)?;
    let l4 = IP + l.ihl;
    if (l.proto != 6 && l.proto != 17) || f.len() < l4 + 8 {
        return None;
    }
    let mut r = f.to_vec();
    // From the destination's MAC (the one it was sent to) to ours.
    r[6..12].copy_from_slice(&f[..6]);
    r[..6].copy_from_slice(&snap.ports.get(port)?.mac.0);
    r[IP + 8] = 64;
    r[IP + 12..IP + 16].copy_from_slice(&f[IP + 16..IP + 20]);
    r[IP + 16..IP + 20].copy_from_slice(&f[IP + 12..IP + 16]);
    let (sp, dp) = (get16(f, l4), get16(f, l4 + 2));
    r[l4..l4 + 2].copy_from_slice(&dp.to_be_bytes());
    r[l4 + 2..l4 + 4].copy_from_slice(&sp.to_be_bytes());
    if l.proto == 6 && r.len() >= l4 + 20 && l.end >= l4 + 20 {
        r[l4 + 13] = flags;
        // As the other end numbers its answer: its sequence number is what
        // `f` acknowledged, and it acknowledges all of `f` (so that the
        // client's ACK to a SYN proxy's SYN-ACK carries the cookie + 1).
        let seq = u32::from_be_bytes([f[l4 + 4], f[l4 + 5], f[l4 + 6], f[l4 + 7]]);
        let ack = u32::from_be_bytes([f[l4 + 8], f[l4 + 9], f[l4 + 10], f[l4 + 11]]);
        let hl = usize::from(f[l4 + 12] >> 4) * 4;
        let len = l.end.saturating_sub(l4 + hl.max(20)) as u32
            + u32::from(f[l4 + 13] & 0x02 != 0)
            + u32::from(f[l4 + 13] & 0x01 != 0);
        r[l4 + 4..l4 + 8].copy_from_slice(&ack.to_be_bytes());
        r[l4 + 8..l4 + 12].copy_from_slice(&seq.wrapping_add(len).to_be_bytes());
    } else if l.proto == 6 && r.len() > l4 + 13 {
        r[l4 + 13] = flags;
    }
    Some(r)
}

/// An ICMP error about the flow packet `f` that left by `port`. `kind`:
/// bit 0 type 3 (else 11), bits 1–4 the code, bit 7: about the packet's
/// reply instead (from its source to its destination, as a client
/// complains about a DR or TUN real's direct reply).
fn icmp_error_about(f: &[u8], kind: u8, snap: &Snapshot, port: usize) -> Option<Vec<u8>> {
    let l = packet::layout(f)?;
    // An IPIP packet (TUN) too: a router inside the tunnel quotes the
    // outer header, the client's and its first 8 bytes (as Linux does,
    // more than RFC 792's minimum, which names no flow).
    let tunnel = l.proto == 4;
    if l.proto != 6 && l.proto != 17 && !tunnel {
        return None;
    }
    let about = if kind & 0x80 != 0 && !tunnel {
        reply_to(f, 0x10, snap, port)?
    } else {
        f.to_vec()
    };
    let quote_len = (l.ihl + if tunnel { 28 } else { 8 }).min(about.len() - IP);
    let quote = &about[IP..IP + quote_len];
    // From the quoted packet's destination to its source.
    let (qsrc, qdst) = (&about[IP + 12..IP + 16], &about[IP + 16..IP + 20]);
    let mut e = vec![0u8; IP + 20 + 8 + quote_len];
    e[..6].copy_from_slice(&snap.ports.get(port)?.mac.0);
    e[6..12].copy_from_slice(&f[..6]);
    e[12..14].copy_from_slice(&[0x08, 0x00]);
    e[IP] = 0x45;
    e[IP + 8] = 64;
    e[IP + 9] = 1;
    e[IP + 12..IP + 16].copy_from_slice(qdst);
    e[IP + 16..IP + 20].copy_from_slice(qsrc);
    e[IP + 20] = if kind & 1 != 0 { 3 } else { 11 };
    e[IP + 21] = (kind >> 1) & 0xf;
    if e[IP + 20] == 3 && e[IP + 21] == 4 {
        e[IP + 26..IP + 28].copy_from_slice(&1400u16.to_be_bytes());
    }
    e[IP + 28..].copy_from_slice(quote);
    Some(e)
}

/// A flow packet sent for an IPv6 input, or an IPv6 packet for a 4in6
/// one: a request goes to a real of its service by that real's method; a
/// NAT66 reply leaves from a VIP and port of a service of that real.
fn check_service6(v: &mut Violations, snap: &Snapshot, out: &[u8], input: &[u8]) {
    let tunneled = matches!(out[IP + 6], 4 | 41);
    let to = addr6(out, IP + 24);
    if input.get(12..14) == Some(&[0x08, 0x00]) {
        // 4in6: the IPv4 packet of an IPv4 service to an IPv6 TUN real.
        let ok = tunneled
            && packet::layout(input).is_some_and(|l| {
                let l4 = IP + l.ihl;
                input.len() >= l4 + 4
                    && snap
                        .service_for(l.proto, addr(input, IP + 16), get16(input, l4 + 2))
                        .is_some_and(|s| {
                            snap.services[s].reals.iter().any(|r| {
                                r.method == ForwardingMethod::Tunnel && r.address == IpAddr::V6(to)
                            })
                        })
            });
        if !ok {
            v.add(
                "out.wrong-real",
                format!("an IPv4 packet went out in IPv6 to {to}, not a TUN real of its service: {out:02x?}"),
            );
        }
        return;
    }
    let Some(l) = packet::layout6(input) else {
        return;
    };
    let Some((proto, l4)) = l
        .upper
        .filter(|&(p, at)| matches!(p, 6 | 17) && l.end >= at + 4)
    else {
        return;
    };
    let (src, dst) = (addr6(input, IP + 8), addr6(input, IP + 24));
    let (sport, dport) = (get16(input, l4), get16(input, l4 + 2));
    if let Some(s) = snap.service_for6(proto, dst, dport) {
        let svc = &snap.services[s];
        let method = if tunneled {
            ForwardingMethod::Tunnel
        } else if to == dst {
            ForwardingMethod::DirectRoute
        } else {
            ForwardingMethod::Nat
        };
        let out_l4 = l4 + if tunneled { 40 } else { 0 };
        let port = get16(out, out_l4 + 2);
        let ok = svc.reals.iter().any(|r| {
            r.method == method
                && match method {
                    ForwardingMethod::Tunnel => r.address == IpAddr::V6(to),
                    ForwardingMethod::DirectRoute => port == dport,
                    ForwardingMethod::Nat => r.address == IpAddr::V6(to) && r.port == port,
                }
        });
        if !ok {
            v.add(
                "out.wrong-real",
                format!(
                    "a packet for [{dst}]:{dport} went to a real not of service {} ({method:?}): {out:02x?}",
                    svc.name
                ),
            );
        }
    } else if snap.is_nat_endpoint6(proto, src, sport) && to == src && get16(out, l4 + 2) == sport {
        // The SYN proxy's ACK back to a NAT66 real that answered its SYN.
        if !snap.services.iter().any(|s| {
            s.reals.iter().any(|r| {
                r.method == ForwardingMethod::Nat && r.address == IpAddr::V6(src) && r.port == sport
            })
        }) {
            v.add(
                "out.wrong-real",
                format!("an ACK back to [{src}]:{sport}, not a NAT66 real"),
            );
        }
    } else if snap.is_nat_endpoint6(proto, src, sport) {
        let (from, port) = (addr6(out, IP + 8), get16(out, l4));
        let ok = snap.services.iter().any(|s| {
            s.vip == IpAddr::V6(from)
                && s.port == port
                && s.ip_protocol() == proto
                && s.reals.iter().any(|r| {
                    r.method == ForwardingMethod::Nat
                        && r.address == IpAddr::V6(src)
                        && r.port == sport
                })
        });
        if !ok {
            v.add(
                "out.wrong-vip",
                format!("a reply from [{src}]:{sport} left as from [{from}]:{port}, not a service of that real"),
            );
        }
    } else {
        v.add(
            "out.unrequested",
            format!(
                "an IPv6 flow packet sent for neither a service nor a NAT66 real: {input:02x?}"
            ),
        );
    }
}

/// A solicitation a worker asks for: for an on-link address or the
/// gateway6 of a port with an IPv6 address, and what
/// `build_neighbor_solicit` makes of it is one. False if it cannot be sent.
fn check_ndp_request(v: &mut Violations, snap: &Snapshot, port: usize, target: Ipv6Addr) -> bool {
    let Some(view) = snap.ports.get(port) else {
        v.add("ndp.request", format!("solicitation out of port {port}"));
        return false;
    };
    let Some(own) = view.ipv6() else {
        v.add(
            "ndp.request",
            format!("solicitation for {target} on port {port}, which has no address6"),
        );
        return false;
    };
    if !view.connected6(target) && view.gateway6 != Some(target) {
        v.add(
            "ndp.request",
            format!("solicitation for {target}, neither on port {port}'s network nor its gateway6"),
        );
    }
    let mut buf = VecBuf::with_room(&[], VecBuf::DEFAULT_HEADROOM, VecBuf::DEFAULT_ROOM);
    if !build_neighbor_solicit(&mut buf, view.mac, own, target) {
        v.add("ndp.request", "could not build a solicitation".to_string());
        return false;
    }
    let b = buf.data();
    let t = target.octets();
    let group = Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, t[13], t[14], t[15],
    ]);
    let mac = view.mac.0;
    let ok = b.len() == NEIGHBOR_SOLICIT_LEN
        && b[..6] == [0x33, 0x33, 0xff, t[13], t[14], t[15]]
        && b[6..12] == mac
        && packet::v6(b).is_some_and(|s| {
            s.src == own
                && s.dst == group
                && s.hop == 255
                && s.next_header == 58
                && s.end == b.len()
                && s.l4_valid == Some(true)
        })
        && b[IP + 40..IP + 48] == [135, 0, b[IP + 42], b[IP + 43], 0, 0, 0, 0]
        && addr6(b, IP + 48) == target
        && b[IP + 64..] == [1, 1, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]];
    if !ok {
        v.add("ndp.request", format!("solicitation built: {b:02x?}"));
    }
    true
}

/// The IPv6 packet the destination of `f` (an IPv6 flow packet that left
/// by `port`) sends back: addresses and ports swapped, hop limit 64, from
/// its MAC to ours; TCP numbered as in [`reply_to`].
fn reply_to6(f: &[u8], flags: u8, snap: &Snapshot, port: usize) -> Option<Vec<u8>> {
    let l = packet::layout6(f)?;
    let (proto, l4) = l.upper?;
    if (proto != 6 && proto != 17) || l.end < l4 + 8 {
        return None;
    }
    let mut r = f[..l.end].to_vec();
    r[6..12].copy_from_slice(&f[..6]);
    r[..6].copy_from_slice(&snap.ports.get(port)?.mac.0);
    r[IP + 7] = 64;
    r[IP + 8..IP + 24].copy_from_slice(&f[IP + 24..IP + 40]);
    r[IP + 24..IP + 40].copy_from_slice(&f[IP + 8..IP + 24]);
    let (sp, dp) = (get16(f, l4), get16(f, l4 + 2));
    r[l4..l4 + 2].copy_from_slice(&dp.to_be_bytes());
    r[l4 + 2..l4 + 4].copy_from_slice(&sp.to_be_bytes());
    if proto == 6 && l.end >= l4 + 20 {
        r[l4 + 13] = flags;
        let seq = u32::from_be_bytes([f[l4 + 4], f[l4 + 5], f[l4 + 6], f[l4 + 7]]);
        let ack = u32::from_be_bytes([f[l4 + 8], f[l4 + 9], f[l4 + 10], f[l4 + 11]]);
        let hl = usize::from(f[l4 + 12] >> 4) * 4;
        let len = l.end.saturating_sub(l4 + hl.max(20)) as u32
            + u32::from(f[l4 + 13] & 0x02 != 0)
            + u32::from(f[l4 + 13] & 0x01 != 0);
        r[l4 + 4..l4 + 8].copy_from_slice(&ack.to_be_bytes());
        r[l4 + 8..l4 + 12].copy_from_slice(&seq.wrapping_add(len).to_be_bytes());
    }
    Some(r)
}

/// An ICMPv6 error about the IPv6 flow packet `f` that left by `port`,
/// from the packet's destination to its source. `kind`: bits 0–1 the type
/// (destination unreachable, time exceeded, packet too big with MTU 1280,
/// parameter problem), bits 2–4 the code, bit 5: the quote cut to the
/// headers (else as much as fits 1280 bytes), bit 7: about the packet's
/// reply instead (from its source to its destination).
fn icmp6_error_about(f: &[u8], kind: u8, snap: &Snapshot, port: usize) -> Option<Vec<u8>> {
    let about = if kind & 0x80 != 0 {
        reply_to6(f, 0x10, snap, port)?
    } else {
        f.to_vec()
    };
    let l = packet::layout6(&about)?;
    let (_, l4) = l.upper?;
    let keep = if kind & 0x20 != 0 { l4 + 8 } else { l.end };
    let quote = &about[IP..keep.min(l.end).min(IP + 1232)];
    let (qsrc, qdst) = (&about[IP + 8..IP + 24], &about[IP + 24..IP + 40]);
    let mut e = Vec::with_capacity(IP + 48 + quote.len());
    e.extend_from_slice(&snap.ports.get(port)?.mac.0);
    e.extend_from_slice(&f[..6]);
    e.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    e.extend_from_slice(&((8 + quote.len()) as u16).to_be_bytes());
    e.extend_from_slice(&[58, 64]);
    e.extend_from_slice(qdst);
    e.extend_from_slice(qsrc);
    // A Packet Too Big announces 1280 and up, by 40 (`(kind >> 2) & 7`,
    // its code bits): a tunnel's is passed on from 1320.
    let (t, mtu) = match kind & 3 {
        0 => (1u8, 0u32),
        1 => (3, 0),
        2 => (2, 1280 + 40 * u32::from((kind >> 2) & 7)),
        _ => (4, 40),
    };
    let code = if t == 2 { 0 } else { (kind >> 2) & 7 };
    e.extend_from_slice(&[t, code, 0, 0]);
    e.extend_from_slice(&mtu.to_be_bytes());
    e.extend_from_slice(quote);
    Some(e)
}

/// Whether the way back to `src` leaves by another port than `in_port`:
/// a request from it there that would make a flow is dropped as
/// `reverse_path` (`Snapshot::client_elsewhere`: a client off every
/// connected network comes in on the gateway's port).
fn routed_elsewhere(snap: &Snapshot, in_port: usize, src: std::net::IpAddr) -> bool {
    match src {
        std::net::IpAddr::V4(a) => {
            lb_core::route::lookup(snap, a).is_some_and(|r| r.port != in_port)
        }
        std::net::IpAddr::V6(a) => {
            lb_core::route::lookup6(snap, a).is_some_and(|r| r.port != in_port)
        }
    }
}

/// Whether `src` is a NAT real's address routed out of another port than
/// `in_port`: its packets that come in there are dropped as
/// `reverse_path` (`Conntrack::reply_on`).
fn real_elsewhere(snap: &Snapshot, in_port: usize, src: std::net::IpAddr) -> bool {
    match src {
        std::net::IpAddr::V4(a) => {
            snap.is_nat_real(a)
                && lb_core::route::lookup(snap, a).is_some_and(|r| r.port != in_port)
        }
        std::net::IpAddr::V6(a) => {
            snap.is_nat_real6(a)
                && lb_core::route::lookup6(snap, a).is_some_and(|r| r.port != in_port)
        }
    }
}
