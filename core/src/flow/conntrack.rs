//! The flow lifecycle, in one place: looking a packet's flow up, creating
//! it (the real comes from the scheduler or a persistence template), TCP
//! state transitions, the per-real active counts, persistence templates,
//! what a full table does, and how flows end (expiry, reset, removal of
//! their real). The pipeline calls [`Conntrack::lookup_or_create`] for a
//! client's packet and [`Conntrack::reply`] for a NAT real's; each returns
//! where the packet goes or the reason to drop it.
//!
//! # Trust before state
//!
//! Anyone on the internet can send a packet with any source address, so
//! no packet that a stranger can send blindly may create state that stays.
//! Every entry has a [`Trust`] class, kept equal to [`Flow::trust`] after
//! every packet, and a full table evicts from the least trusted class
//! first (`FlowTable::victim`):
//! - **NAT** sees both directions, so a TCP flow is `Confirmed` only by a
//!   real handshake: the real's SYN-ACK and the client's ACK of it, and
//!   stays so while half-closed. A SYN, a spoofed ACK, a Maglev pick-up
//!   mid-stream and a closed flow are `Unconfirmed`; UDP becomes `OneWay`
//!   when the real answers.
//! - **TUN and DR** see only the client, so nothing proves a flow there:
//!   a flow established from a SYN is `OneWay` (bounded trust): it
//!   outranks half-open and spoofed-once entries (it is evicted first only
//!   when it has waited 4 times as long), but a full table evicts it (in
//!   queue order, with a second chance when used: CLOCK) before it refuses
//!   a flow. A flood of spoofed
//!   ACKs or SYN+ACKs to a TUN, DR or `mh` service therefore never makes
//!   another service refuse a new flow; the cost falls on the flooded
//!   one-way flows themselves (for `mh` and `sh` services the next packet
//!   finds the same real again by hashing).
//! - **Persistence templates** are `Confirmed` while flows depend on them
//!   and `Unconfirmed` once they have none.
//! - **Maglev pick-ups** mid-stream (a packet other than a SYN with no
//!   flow, to an `mh` service) are unconfirmed; with TUN or DR they get no
//!   entry at all once the table is at least half full (the next packet
//!   hashes to the same real), so a flood of lone ACKs costs no room.
//! - **Per source:** when the table is at least half full, a source (an
//!   IPv4 client address, an IPv6 client's /64: [`FlowAddr::source`]) that
//!   already holds [`Conntrack::source_limit`] confirmed flows gets no
//!   more (`source_limit`), and a flow of it that completes its handshake
//!   then stays evictable (`OneWay`), so one source cannot own the table
//!   with handshakes it really completes. Only confirmed flows count: anyone
//!   can send in a source's name what makes the others (found in audit:
//!   spoofed SYN-then-ACK pairs to a DR service in a victim's name spent
//!   its limit, and the victim was then refused by every service, NAT
//!   included), and the others are evictable anyway. Counted in hashed
//!   buckets (seeded), so sources that share a bucket share a limit.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use lb_config::{ForwardingMethod, SchedulerKind};

use super::hash::FlowAddr;
use super::state::{seq_within, RST_WINDOW};
use super::sync::SyncLog;
use super::synproxy::{
    Cover, Deferrals, Pressure, ProxyStep, ProxySyn, ReplyStep, SynRetries, SynWatch, Waiting,
    PROXY_CLIENT_WS, PROXY_ON, PROXY_REAL_WS, PROXY_TS, PROXY_WAITING,
};
use super::{
    Flow, FlowKey, FlowState, FlowTable, IndexSeed, NewFlow, ReplyKey, Segment, Trust,
    FLOW_TEMPLATE,
};
use crate::buffer::{PacketBuf, VecBuf};
use crate::forward::TcpAdjust;
use crate::scheduler::Schedulers;
use crate::snapshot::{Snapshot, MAX_REALS};
use crate::stats::{DropReason, WorkerStats};
use crate::synproxy::CookieOptions;
use crate::wire::tcp_options::Timestamps;
use crate::wire::TcpFlags;
use lb_config::SynProxyMode;

/// The default share of a worker's table one client address may hold when
/// the table is at least half full: 1/16 ...
pub const SOURCE_SHARE: usize = 16;
/// ... but never fewer than this many flows (small tables).
pub const MIN_SOURCE_LIMIT: usize = 64;

/// Where a client's packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<A: FlowAddr = Ipv4Addr> {
    /// `UNSPECIFIED` when the real is of the other family (4in6): see
    /// [`Flow::real`].
    pub real: A,
    pub real_port: u16,
    pub method: ForwardingMethod,
    /// Stable id of the real (counters).
    pub real_id: u32,
    /// What the SYN proxy does with the packet (`ProxyStep::None` for
    /// every flow it does not cover).
    pub proxy: ProxyStep,
}

/// Where a NAT reply goes back from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyTarget<A: FlowAddr = Ipv4Addr> {
    pub vip: A,
    pub vip_port: u16,
    pub real_id: u32,
    /// What the SYN proxy does with the packet.
    pub proxy: ReplyStep,
}

/// One worker's flows and their bookkeeping. Owned by the worker.
pub struct Conntrack<A: FlowAddr = Ipv4Addr> {
    pub(super) table: FlowTable<A>,
    /// Active (non-template) flows per real id.
    active: Vec<u32>,
    /// Per real: of `active`, the flows not established
    /// (`FlowState::is_inactive`), kept in step at every state change.
    inactive: Vec<u32>,
    /// Persistence templates per real id (what they send clients to).
    templates: Vec<u32>,
    pub(super) stats: Arc<WorkerStats>,
    /// Flows the last sweep removed (reused, so sweeping does not allocate).
    ended: Vec<(Flow<A>, Trust)>,
    /// Entries the last sweep found held at `OneWay` for their source's
    /// share (reused, as `ended`).
    held: Vec<u32>,
    /// Confirmed flows per source (an IPv4 client address, an IPv6 /64),
    /// in seeded hashed buckets: what the per-source limit counts.
    pub(super) sources: Vec<u32>,
    source_limit: u32,
    /// The box's connected networks of this family ([`Self::set_links`]).
    links: Vec<(u128, u128)>,
    /// SYN proxy: the SYN-pressure hysteresis (`syn_pressure`).
    pressure: Pressure,
    /// SYN proxy: the translation of the packet just looked up, when its
    /// step is `Translate`, and the state of a waiting flow whose real
    /// answered (`AckToReal`).
    adjust: TcpAdjust,
    waiting: Waiting,
    /// SYN proxy: client segments deferred while their flow waited
    /// (`flow/synproxy.rs`).
    pub(super) defer: Deferrals,
    /// SYN proxy: waiting flows whose SYN is to go to the real again
    /// (`flow/synproxy.rs`). Boxed: a few hundred bytes read only on the
    /// SYN proxy's cold paths stay out of the hot fields' cache lines.
    pub(super) retries: Box<SynRetries<A>>,
    /// SYN proxy: the flows waiting for their real, for the timer that
    /// sends their SYN again when their client sends nothing.
    pub(super) syn_watch: SynWatch<A>,
    /// SYN proxy: connections given up on, whose clients get a RST
    /// (`flow::synproxy::ProxyReset`).
    pub(super) resets: Vec<super::synproxy::ProxyReset<A>>,
    /// Connection sync on a primary: what changed for the peer
    /// (`flow/sync.rs`); None otherwise, and then every hook is one
    /// predictable branch.
    pub(super) sync: Option<Box<SyncLog>>,
}

impl<A: FlowAddr> std::fmt::Debug for Conntrack<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Conntrack({:?})", self.table)
    }
}

/// Whether persistence template `t`, without flows, has outlived its
/// service's persistence as it is now (a reload may have shortened it,
/// turned it off, or removed the service): what it was made with, kept in
/// the entry, is only an upper bound (found in audit: a client stayed
/// pinned, and the template kept its entry, up to the old time).
fn template_over<A: FlowAddr>(snap: &Snapshot, t: &Flow<A>, now: u32) -> bool {
    let persistence = snap
        .service_by_id(t.service_id)
        .map_or(0, |s| s.persistence_ms);
    t.children == 0 && now.wrapping_sub(t.last_seen) > persistence
}

/// The persistence template's key for a flow key.
fn template_key<A: FlowAddr>(k: &FlowKey<A>) -> FlowKey<A> {
    FlowKey {
        proto: k.proto | FLOW_TEMPLATE,
        client_port: 0,
        ..*k
    }
}

impl<A: FlowAddr> Conntrack<A> {
    /// A table of `capacity` flows, allocated now.
    pub fn new(capacity: usize, sweep_budget: usize, stats: Arc<WorkerStats>) -> Conntrack<A> {
        stats.flow_gauges(A::FAMILY).2.set(capacity as u64);
        let table = FlowTable::with_capacity(capacity);
        // About one bucket per 16 flows: a source's count is rarely shared.
        // At least 4,096: at most 16 sources can reach the limit (1/16 of
        // the table each), and another source that shares a bucket with
        // one of them is refused too; with 64 buckets, a small table's
        // minimum before, that was a quarter of all sources (found in
        // audit).
        let buckets = (table.capacity() / 16).next_power_of_two().max(4096);
        let source_limit = (table.capacity() / SOURCE_SHARE).max(MIN_SOURCE_LIMIT) as u32;
        Conntrack {
            table,
            active: vec![0; MAX_REALS],
            inactive: vec![0; MAX_REALS],
            templates: vec![0; MAX_REALS],
            stats,
            ended: Vec::with_capacity(sweep_budget),
            held: Vec::with_capacity(sweep_budget),
            sources: vec![0; buckets],
            source_limit,
            pressure: Pressure::default(),
            adjust: TcpAdjust::default(),
            waiting: Waiting::default(),
            defer: Deferrals::default(),
            retries: Box::default(),
            syn_watch: SynWatch::default(),
            resets: Vec::new(),
            sync: None,
            links: Vec::new(),
        }
    }

    /// The connected networks of this table's family, as (network, mask)
    /// bits ([`Self::source_of`]): the pipeline sets them from each
    /// snapshot it adopts (ports change only with a restart).
    pub fn set_links(&mut self, links: &[(u128, u128)]) {
        if self.links != links {
            self.links = links.to_vec();
        }
    }

    /// What the per-source limit counts `client` as: its connected
    /// network's address when it is on one of the box's links (found in
    /// review: a compromised real forged clients of its own segment, one
    /// source per address, and sixteen of them pinned the whole table
    /// with flows it confirmed itself; an on-link network counts as one
    /// source, as an IPv6 /64 does), else [`FlowAddr::source`].
    #[inline]
    fn source_of(&self, client: A) -> A {
        if !self.links.is_empty() {
            let bits = match client.to_ip() {
                IpAddr::V4(a) => u128::from(u32::from(a)),
                IpAddr::V6(a) => u128::from(a),
            };
            for &(net, mask) in &self.links {
                if bits & mask == net {
                    let ip = match client.to_ip() {
                        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(net as u32)),
                        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::from(net)),
                    };
                    return A::from_ip(ip).unwrap_or(client).source();
                }
            }
        }
        client.source()
    }

    /// How many flows one source (an IPv4 client address, an IPv6 client's
    /// /64) may hold while the table is at least half full.
    pub fn source_limit(&self) -> u32 {
        self.source_limit
    }

    /// Sets [`Self::source_limit`] (at least 1).
    pub fn set_source_limit(&mut self, limit: u32) {
        self.source_limit = limit.max(1);
    }

    /// Whether the table is at least half full: per-source limits apply,
    /// and Maglev pick-ups mid-stream get no entry.
    #[inline]
    fn pressed(&self) -> bool {
        self.table.len() * 2 >= self.table.capacity()
    }

    #[inline]
    pub(super) fn source_bucket(&self, client: A) -> usize {
        let h = self
            .table
            .seed()
            .flow(0, self.source_of(client), 0, A::UNSPECIFIED, 0);
        (h as usize) & (self.sources.len() - 1)
    }

    /// Keeps entry `e`'s class equal to what its flow has earned, after
    /// its flow changed from class `before`.
    #[inline]
    pub(super) fn reclass(&mut self, e: u32, before: Trust, now: u32) {
        let after = self.table.get(e).trust();
        if after != before {
            self.set_class(e, after, now);
            self.sync_mark(e);
        }
    }

    /// Moves live entry `e` to class `after`: the one place a class
    /// changes, so that its source's count of confirmed flows (what the
    /// per-source limit counts) follows it. A flow that earns
    /// `Confirmed` while its source holds its share of a pressed table
    /// is held at `OneWay` instead: it works on, but stays evictable
    /// (found in review: the limit was checked only when flows were
    /// made, so a source that sent all its SYNs first and then completed
    /// every handshake owned the table).
    #[inline]
    fn set_class(&mut self, e: u32, after: Trust, now: u32) {
        let before = self.table.trust(e);
        if before == after {
            return;
        }
        let f = self.table.get(e);
        let mut after = after;
        if !f.is_template()
            && (before == Trust::Confirmed) != (after == Trust::Confirmed)
            && !self.count_confirmed(f.client(), after == Trust::Confirmed)
        {
            after = Trust::OneWay;
            if before == after {
                return;
            }
        }
        self.table.set_trust(e, after, now);
    }

    /// One confirmed flow more (or less) for `client`'s source: false,
    /// and nothing counted, when one more would take the source past its
    /// limit in a table at least half full.
    #[cold]
    fn count_confirmed(&mut self, client: A, more: bool) -> bool {
        let b = self.source_bucket(client);
        if !more {
            self.sources[b] = self.sources[b].saturating_sub(1);
        } else if self.pressed() && self.sources[b] >= self.source_limit {
            return false;
        } else {
            self.sources[b] = self.sources[b].saturating_add(1);
        }
        true
    }

    /// [`Self::reclass`] for the packet path: `inputs` is what
    /// [`Flow::trust_inputs`] was before the packet; only when that changed
    /// (rarely: a handshake, a close) is the class worked out and compared.
    /// `after` is what [`Flow::trust_inputs`] is now, read by the caller
    /// from the entry it holds (looking the entry up again here cost a
    /// bounds check and two loads a packet).
    #[inline(always)]
    fn reclass_if_changed(&mut self, e: u32, inputs: u16, after: u16, now: u32) {
        if after != inputs {
            self.restate(e, inputs);
            // A new state (or what was seen of it): the peer hears of it.
            self.sync_mark(e);
            let after = self.table.get(e).trust();
            self.set_class(e, after, now);
        }
    }

    pub fn table(&self) -> &FlowTable<A> {
        &self.table
    }

    /// The index's key, for hashing ahead of a lookup.
    #[inline]
    pub fn seed(&self) -> &IndexSeed {
        self.table.seed()
    }

    /// Hints the CPU to load what looking up `hash` will read: first call
    /// [`prefetch_slot`](Self::prefetch_slot) for a burst, then this.
    /// `B`: the packet buffer, whose platform issues the prefetch.
    #[inline(always)]
    pub fn prefetch_slot<B: PacketBuf>(&self, hash: u64) {
        self.table.prefetch::<B>(hash);
    }

    #[inline(always)]
    pub fn prefetch_entry<B: PacketBuf>(&self, hash: u64) {
        self.table.prefetch_entry::<B>(hash);
    }

    /// Writes the reply keys of new NAT flows that still wait for their
    /// index slots ([`FlowTable::settle`]).
    #[inline]
    pub fn settle(&mut self) {
        self.table.settle();
    }

    /// The flow of a client's packet to a service (`hash`: the key's index
    /// hash, [`FlowTable::key_hash`]): the existing one (its
    /// TCP state advanced by `tcp`, the packet's flags; None for UDP) or a
    /// new one on a real the scheduler or the client's persistence
    /// template picks. Err is the reason to drop the packet.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub fn lookup_or_create<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        service: usize,
        key: &FlowKey<A>,
        hash: u64,
        tcp: Option<Segment>,
        now: u32,
        schedulers: &mut Schedulers,
        from_elsewhere: impl FnOnce() -> bool,
    ) -> Result<Target<A>, DropReason> {
        self.lookup_or_create_key::<B>(
            snap,
            service,
            *key,
            hash,
            tcp.as_ref(),
            now,
            schedulers,
            from_elsewhere,
        )
    }

    /// [`Self::lookup_or_create`] with the key by value: the pipeline's
    /// call. Only a new flow's (out-of-line) path takes the key's address,
    /// from a copy of its own, so that an established packet's key stays
    /// in registers (held in memory for that path, it cost four stores and
    /// reloads a packet).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub fn lookup_or_create_key<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        service: usize,
        key: FlowKey<A>,
        hash: u64,
        tcp: Option<&Segment>,
        now: u32,
        schedulers: &mut Schedulers,
        from_elsewhere: impl FnOnce() -> bool,
    ) -> Result<Target<A>, DropReason> {
        if let Some(e) = self.table.lookup(&key, hash) {
            let f = self.table.get(e);
            // A client's SYN (`Segment::opens`) starts a new connection on
            // a closed tuple (a RST, or a FIN each way). On a half-closed
            // one it does for TUN and DR, which never see the real's FIN:
            // a client that reuses its port after the real closed first is
            // the common case there, as IPVS has it. For NAT, which sees
            // both FINs, a SYN on a half-closed flow changes nothing, as
            // in Linux conntrack: the other side still sends, and a
            // stranger's SYN must not end it (found in audit: one blind
            // SYN ended a half-closed proxied flow and its translation).
            let stale = f.expired(now, &snap.timeouts)
                || (tcp.is_some_and(|s| s.opens())
                    && match f.state() {
                        FlowState::Closed => true,
                        FlowState::FinWait => f.method != ForwardingMethod::Nat,
                        _ => false,
                    });
            if !stale {
                if !snap.real_present(f.real_id) {
                    self.end(e, now);
                    return Err(DropReason::RealRemoved);
                }
                let f = self.table.get_mut(e);
                // SYN proxy hook: a flow whose handshake it answered.
                if f.proxy != 0 {
                    let (before, inputs) = (f.trust(), f.trust_inputs());
                    let r = self.syn_proxy_client(e, tcp.copied(), now);
                    self.reclass(e, before, now);
                    self.restate(e, inputs);
                    self.sync_mark_if_changed(e, inputs);
                    return r;
                }
                let inputs = f.trust_inputs();
                f.last_seen = now;
                match tcp {
                    Some(&seg) => f.on_segment(seg, true),
                    None => f.repeated(),
                }
                let target = Target {
                    real: f.real(),
                    real_port: f.real_port(),
                    method: f.method,
                    real_id: f.real_id,
                    proxy: ProxyStep::None,
                };
                let after = f.trust_inputs();
                self.reclass_if_changed(e, inputs, after, now);
                return Ok(target);
            }
            self.end(e, now);
        }
        // (Worked out here, not before the lookup: held across it, it was a
        // spill and a reload on every established packet.)
        let syn = tcp.is_some_and(|s| s.opens());
        // No flow, and none for a client that cannot be one (our own
        // addresses, a connected network's broadcast): nor a SYN-ACK from
        // the SYN proxy to it (found in review: flows were created, and
        // answers sent, to such sources).
        if snap.is_martian_client(key.client.to_ip()) {
            return Err(DropReason::BadIpHeader);
        }
        // Nor for a client whose address belongs to another port than the
        // one the packet came in on (`from_elsewhere`: the caller's
        // reverse-path check, made only here, for a flow to be): found in
        // audit, a SYN on the internet side from a host on a back-end
        // network reached a real, whose answer (or the SYN proxy's, or a
        // UDP service's) then went to that host.
        if from_elsewhere() {
            return Err(DropReason::ReversePath);
        }
        // SYN proxy hook: a SYN or ACK for no flow, to a service it covers.
        if let Some(&seg) = tcp {
            if let Some(outcome) = self.syn_proxy_no_flow(snap, service, seg) {
                return outcome;
            }
        }
        let key_copy = key;
        self.create::<B>(snap, service, &key_copy, tcp.copied(), syn, now, schedulers)
    }

    /// A new flow: a real for it, and an entry when the table has (or can
    /// make) room. `B` is the platform a new NAT flow's reply-key slot is
    /// prefetched with ([`FlowTable::insert_deferred`]).
    #[allow(clippy::too_many_arguments)]
    fn create<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        service: usize,
        key: &FlowKey<A>,
        tcp: Option<Segment>,
        syn: bool,
        now: u32,
        schedulers: &mut Schedulers,
    ) -> Result<Target<A>, DropReason> {
        let svc = &snap.services[service];
        // Mid-stream TCP finds its real again only by hashing (Maglev).
        if tcp.is_some() && !syn && svc.kind != SchedulerKind::Maglev {
            return Err(DropReason::NoFlow);
        }
        // Pressure first: the count is a random place in a table of up to
        // a megabyte, and a branch on it stalled every new flow (about 5 %
        // of a new flow's time, pipeline bench).
        let over = self.pressed() && {
            let bucket = self.source_bucket(key.client);
            self.sources[bucket] >= self.source_limit
        };
        // A pick-up mid-stream into a table at least half full makes no
        // persistence template: lone ACKs from spoofed sources would each
        // take an entry for the persistence time (found in audit, for an
        // `mh` DR service with persistence).
        let pick_up_pressed = tcp.is_some() && !syn && self.pressed();
        // One that takes no entry (TUN, DR, below) is not refused for its
        // source (found in audit: it was, before it was seen to cost no
        // room).
        if over && !pick_up_pressed {
            return Err(DropReason::SourceLimit);
        }
        let (ri, templated) = self
            .schedule(snap, service, key, now, schedulers, !pick_up_pressed)
            .ok_or(DropReason::NoReal)?;
        let r = &svc.reals[ri];
        if pick_up_pressed && r.method != ForwardingMethod::Nat {
            // A Maglev pick-up mid-stream (TUN, DR) into a table at least
            // half full: its next packet hashes to the same real anyway, so
            // it gets no entry, and a flood of lone ACKs costs no room.
            self.stats.stateless_forwards.incr();
            return Ok(Target {
                real: real_addr(r.address),
                real_port: r.port,
                method: r.method,
                real_id: r.id,
                proxy: ProxyStep::None,
            });
        }
        if over {
            return Err(DropReason::SourceLimit);
        }
        let state = match tcp {
            None => FlowState::Datagram,
            Some(_) if syn => FlowState::SynSent,
            // A Maglev flow picked up mid-stream (after a restart).
            Some(seg) => FlowState::Established.on_tcp(seg.flags, true),
        };
        let spec = NewFlow {
            key: *key,
            real: real_addr(r.address),
            real_port: r.port,
            real_id: r.id,
            service_id: svc.id,
            method: r.method,
            state,
            trust: Trust::Unconfirmed,
            index_reply: r.method == ForwardingMethod::Nat,
            now,
        };
        if r.shared_endpoint {
            self.claim_reply_key(key, spec.real, r.port, now, &snap.timeouts)?;
        }
        // The client's template counts this flow before room is made for
        // it: with a child it is confirmed, so it is not the victim (found
        // in audit: a returning client's flow evicted its own childless
        // template, and then counted itself out of the client's next one).
        let held = templated && self.template_child(key, now, true);
        let mut inserted = self.table.insert_deferred(&spec);
        if inserted.is_err() {
            // Make room: the least trusted entry (never a confirmed one).
            if let Some(v) = self.table.victim(now) {
                self.end(v, now);
                self.stats.flows_evicted.incr();
                inserted = self.table.insert_deferred(&spec);
            }
        }
        match inserted {
            Ok(e) => {
                // A NAT flow's reply key: its index slot is loaded while
                // the rest of the burst is handled, and written after.
                if spec.index_reply {
                    self.table.prefetch_pending::<B>();
                }
                let f = self.table.get_mut(e);
                f.templated = held;
                if let Some(seg) = tcp {
                    f.on_segment(seg, true);
                }
                self.reclass(e, Trust::Unconfirmed, now);
                self.sync_mark(e);
                let state = self.table.get(e).state();
                self.count_active(r.id, state, true);
                self.stats
                    .flow_gauges(A::FAMILY)
                    .0
                    .set(self.table.len() as u64);
            }
            Err(_) => {
                if held {
                    self.template_child(key, now, false);
                }
                // A persistence template may have been placed even so.
                self.stats
                    .flow_gauges(A::FAMILY)
                    .0
                    .set(self.table.len() as u64);
                self.stats.flow_table_full.incr();
                // Without an entry, later packets find the same real only
                // by hashing, and NAT replies not at all; a TCP segment
                // after the SYN only by Maglev (the gate above: found in
                // audit, an `sh` TUN or DR SYN went out and the rest of
                // its connection was dropped as `no_flow`).
                let stable = svc.kind == SchedulerKind::Maglev
                    || (svc.kind == SchedulerKind::SourceHash && tcp.is_none());
                if !stable || r.method == ForwardingMethod::Nat {
                    return Err(DropReason::FlowTableFull);
                }
            }
        }
        self.stats.real(r.id).flows_created.incr();
        self.stats.flows_created.incr();
        Ok(Target {
            real: real_addr(r.address),
            real_port: r.port,
            method: r.method,
            real_id: r.id,
            proxy: ProxyStep::None,
        })
    }

    /// Picks a real for a new flow: the persistence template's if the
    /// service has one and its real can still take flows, else the
    /// scheduler's (which makes a template when `make_template`). Returns
    /// the index into the service's reals and whether a template placed it.
    fn schedule(
        &mut self,
        snap: &Snapshot,
        service: usize,
        key: &FlowKey<A>,
        now: u32,
        schedulers: &mut Schedulers,
        make_template: bool,
    ) -> Option<(usize, bool)> {
        let svc = &snap.services[service];
        if svc.persistence_ms == 0 {
            return schedulers
                .choose(snap, service, key, &self.active, &self.inactive)
                .map(|ri| (ri, false));
        }
        let tk = template_key(key);
        if let Some(t) = self.table.lookup(&tk, self.table.key_hash(&tk)) {
            let f = self.table.get(t);
            // Under the service's persistence now: a reload that shortened
            // it shortens the templates made before (found in audit: a
            // client stayed pinned for the old time, up to an hour).
            let over = f.expired(now, &snap.timeouts) || template_over(snap, f, now);
            if over {
                self.end(t, now);
            } else {
                if f.template_timeout != svc.persistence_ms || f.service_id != svc.id {
                    let f = self.table.get_mut(t);
                    f.template_timeout = svc.persistence_ms;
                    // The service's id now: one removed and added again
                    // has another (b8a536d), and a template that kept the
                    // old one found no service once its flows ended and
                    // was over at once (found in review).
                    f.service_id = svc.id;
                }
                let f = self.table.get(t);
                let old = f.real_id;
                if let Some(ri) = svc.reals.iter().position(|r| r.id == old && r.eligible()) {
                    return Some((ri, true));
                }
                // Its real can take no new flows: the client moves, and the
                // template with it. Its flows on the old real still count:
                // the template lives until the client's last flow ends.
                let ri = schedulers.choose(snap, service, key, &self.active, &self.inactive)?;
                let r = &svc.reals[ri];
                let t = self.table.get_mut(t);
                t.retarget(real_addr(r.address), r.port, r.id, r.method);
                t.last_seen = now;
                self.count_template(old, false);
                self.count_template(r.id, true);
                return Some((ri, true));
            }
        }
        let ri = schedulers.choose(snap, service, key, &self.active, &self.inactive)?;
        if !make_template {
            return Some((ri, false));
        }
        let r = &svc.reals[ri];
        let spec = NewFlow {
            key: tk,
            real: real_addr(r.address),
            real_port: r.port,
            real_id: r.id,
            service_id: svc.id,
            method: r.method,
            state: FlowState::Template,
            trust: Trust::Unconfirmed,
            index_reply: false,
            now,
        };
        // Its children are counted as they get entries; without one it
        // still remembers the client for the persistence time.
        let placed = match self.table.insert(&spec) {
            Ok(t) => {
                self.table.get_mut(t).template_timeout = svc.persistence_ms;
                self.count_template(r.id, true);
                true
            }
            Err(_) => false,
        };
        Some((ri, placed))
    }

    /// The NAT flow a real's packet to a client belongs to (`hash`: the
    /// key's [`FlowTable::reply_key_hash`]), its TCP state
    /// advanced by the packet's flags (`tcp`; None for UDP).
    ///
    /// `from_real` says whether the packet came from where the real is
    /// reached (the port the appliance sends to it through, and on a
    /// connected network the real's MAC); it is asked only while the packet
    /// could raise the flow's trust ([`Flow::awaits_real`]), and of every
    /// segment that could end the flow or start it again (RST, FIN, SYN:
    /// rare, so the check costs the established path nothing; found in
    /// review: a stranger who knew a confirmed flow's tuple and its real's
    /// address forged the real's RST from the internet, and once its
    /// sequence number fell in the window the flow closed under the
    /// client). A packet that did not is passed on and refreshes the flow,
    /// but is believed in nothing else: no tracking, no confirmation;
    /// counted in
    /// `nat_replies_unvouched` (found in audit: a stranger who knew a
    /// real's address forged its SYN-ACK from the internet, acknowledged
    /// it from a spoofed client, and so pinned a confirmed entry per
    /// spoofed source, none of them evictable).
    ///
    /// `sender` gives the packet's [`sender_mark`](super::sender_mark): a
    /// flow the SYN proxy answered believes its real's RST, FIN and SYN
    /// from where its SYN-ACK came, or where `from_real` says.
    ///
    /// The pipeline calls [`Self::reply_on`], which also checks the port
    /// the packet came in on; this takes it as checked (tests of the flow
    /// table alone).
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn reply(
        &mut self,
        snap: &Snapshot,
        key: &ReplyKey<A>,
        hash: u64,
        tcp: Option<Segment>,
        now: u32,
        from_real: impl FnOnce() -> bool,
        sender: impl FnOnce() -> u32,
    ) -> Result<ReplyTarget<A>, DropReason> {
        self.reply_on(snap, key, hash, tcp, now, None, from_real, sender)
    }

    /// [`Self::reply`] for a packet received on port index `in_port`
    /// (None: not checked): one from another port than the one its
    /// flow's real is reached through is forged, and is dropped
    /// (`reverse_path`) before it touches the flow (found in audit:
    /// passed on, replies forged from the internet from guessed
    /// addresses and ports came back to the attacker from the VIP for
    /// the real's own pair alone, which told the reals' private
    /// addresses, and let anyone who knew a flow's tuple send into it).
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn reply_on(
        &mut self,
        snap: &Snapshot,
        key: &ReplyKey<A>,
        hash: u64,
        tcp: Option<Segment>,
        now: u32,
        in_port: Option<usize>,
        from_real: impl FnOnce() -> bool,
        sender: impl FnOnce() -> u32,
    ) -> Result<ReplyTarget<A>, DropReason> {
        self.reply_on_key(
            snap,
            *key,
            hash,
            tcp.as_ref(),
            now,
            in_port,
            from_real,
            sender,
        )
    }

    /// [`Self::reply_on`] with the key by value (the pipeline's call), as
    /// [`Self::lookup_or_create_key`]: the key stays in registers.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn reply_on_key(
        &mut self,
        snap: &Snapshot,
        key: ReplyKey<A>,
        hash: u64,
        tcp: Option<&Segment>,
        now: u32,
        in_port: Option<usize>,
        from_real: impl FnOnce() -> bool,
        sender: impl FnOnce() -> u32,
    ) -> Result<ReplyTarget<A>, DropReason> {
        let e = self
            .table
            .lookup_reply(&key, hash)
            .ok_or(DropReason::NoFlow)?;
        let f = self.table.get(e);
        if f.expired(now, &snap.timeouts) {
            self.end(e, now);
            return Err(DropReason::NoFlow);
        }
        if !snap.real_present(f.real_id) {
            self.end(e, now);
            return Err(DropReason::RealRemoved);
        }
        if in_port.is_some_and(|p| !snap.real_reached_on(f.real_id, key.real, p)) {
            return Err(DropReason::ReversePath);
        }
        let f = self.table.get_mut(e);
        // SYN proxy hook: a flow whose handshake it answered.
        if f.proxy != 0 {
            let (before, inputs) = (f.trust(), f.trust_inputs());
            let r = self.syn_proxy_reply(e, tcp.copied(), now, from_real, sender);
            self.reclass(e, before, now);
            self.restate(e, inputs);
            self.sync_mark_if_changed(e, inputs);
            return r;
        }
        // A packet not from where the real is reached is still one of the flow,
        // which keeps the flow alive and makes a synced one ours, as any
        // packet does (found in review: a real streaming to a silent
        // client, seen from another MAC or before its neighbor entry was
        // back after a failover, let its flow expire under it); an
        // unconfirmed entry stays evictable, so this pins nothing. Nothing
        // else of it is believed.
        let ends = tcp.is_some_and(|s| s.ends_or_opens());
        let believed = (!ends && !f.awaits_real(tcp.is_some())) || from_real();
        let inputs = f.trust_inputs();
        f.last_seen = now;
        if believed {
            match tcp {
                Some(&seg) => f.on_segment(seg, false),
                None => f.heard_from_real(),
            }
        } else {
            self.stats.nat_replies_unvouched.incr();
            f.seq_known &= !super::table::SYNCED;
        }
        let back = ReplyTarget {
            vip: f.vip(),
            vip_port: f.vip_port(),
            real_id: f.real_id,
            proxy: ReplyStep::None,
        };
        let after = f.trust_inputs();
        self.reclass_if_changed(e, inputs, after, now);
        Ok(back)
    }

    /// The flow with client-side `key`, untouched (ICMP errors about it).
    pub fn find(&self, key: &FlowKey<A>) -> Option<Flow<A>> {
        self.table
            .lookup(key, self.table.key_hash(key))
            .map(|e| *self.table.get(e))
    }

    /// Where a packet of client-side `key` to service `service` goes
    /// without an entry, as a Maglev pick-up into a pressed table sends it
    /// ([`Self::lookup_or_create`]): the real an ICMP error about such a
    /// TUN or DR flow is for (found in audit: with no entry to be found
    /// by, those errors were dropped as `no_flow`, and path MTU discovery
    /// failed for the flows while the table was pressed). A client's live
    /// persistence template still names its real; nothing is made or
    /// changed. None for another scheduler, a NAT real, or no eligible one.
    pub fn stateless_target(
        &self,
        snap: &Snapshot,
        service: usize,
        key: &FlowKey<A>,
        now: u32,
        schedulers: &mut Schedulers,
    ) -> Option<Target<A>> {
        let svc = snap.services.get(service)?;
        if svc.kind != SchedulerKind::Maglev {
            return None;
        }
        let templated = (svc.persistence_ms != 0)
            .then(|| template_key(key))
            .and_then(|tk| self.table.lookup(&tk, self.table.key_hash(&tk)))
            .map(|t| self.table.get(t))
            .filter(|t| !t.expired(now, &snap.timeouts))
            .and_then(|t| {
                svc.reals
                    .iter()
                    .position(|r| r.id == t.real_id && r.eligible())
            });
        let ri = match templated {
            Some(ri) => ri,
            None => schedulers.choose(snap, service, key, &self.active, &self.inactive)?,
        };
        let r = &svc.reals[ri];
        (r.method != ForwardingMethod::Nat).then(|| Target {
            real: real_addr(r.address),
            real_port: r.port,
            method: r.method,
            real_id: r.id,
            proxy: ProxyStep::None,
        })
    }

    /// The NAT flow with reply `key`, untouched.
    pub fn find_reply(&self, key: &ReplyKey<A>) -> Option<Flow<A>> {
        self.table
            .lookup_reply(key, self.table.reply_key_hash(key))
            .map(|e| *self.table.get(e))
    }

    /// Reclaims expired flows, looking at up to `budget` entries and
    /// removing at most an eighth as many (at least 8): the time a call
    /// takes stays bounded even when a whole region expires at once.
    pub fn sweep(&mut self, snap: &Snapshot, now: u32, budget: usize) -> usize {
        let timeouts = snap.timeouts;
        let mut ended = std::mem::take(&mut self.ended);
        ended.clear();
        let mut held = std::mem::take(&mut self.held);
        held.clear();
        let stats = &self.stats;
        let removed = self.table.sweep(
            now,
            budget,
            (budget / 8).max(8),
            // A flow of a real a reload removed is as good as closed: its
            // next packet ends it (`real_removed`), and silent it lives no
            // longer than a closed flow (found in audit: it held its entry,
            // confirmed and unevictable, for up to the established
            // timeout, and counted against its source; ended at once, a
            // connection's next packet was `no_flow`, found by the reload
            // end-to-end test).
            // A template with flows lives on whatever its real (found in
            // review: one moved to a real a reload then removed, while a
            // flow of it on an older real went on, was ended, and the
            // client's next template counted one flow too few); using it
            // moves it to a real that exists (`schedule`).
            |f| {
                f.expired(now, &timeouts)
                    || if f.is_template() {
                        f.children == 0
                            && (!snap.real_present(f.real_id) || template_over(snap, f, now))
                    } else {
                        !snap.real_present(f.real_id)
                            && now.wrapping_sub(f.last_seen) > timeouts.of(FlowState::Closed)
                    }
            },
            |f, trust| {
                stats.flows_expired.incr();
                ended.push((*f, trust));
            },
            // At most what was made room for: the rest are found again
            // on the next pass.
            |e| {
                if held.len() < held.capacity() {
                    held.push(e);
                }
            },
        );
        for (f, trust) in &ended {
            if f.is_template() {
                self.count_template(f.real_id, false);
            } else {
                self.flow_ended(f, *trust, now);
            }
        }
        self.ended = ended;
        // A flow held at `OneWay` because its source held its share of a
        // pressed table is confirmed as soon as the share has room again
        // (the table less than half full, or fewer of the source's flows
        // confirmed), not only at its next change of state (noticed in
        // review: after a flood, a heavy source's held flows stayed
        // evictable for their whole life, and a SYN-then-ACK flood to TUN
        // or DR, whose entries are `OneWay` too, evicted them first, being
        // older).
        for &e in &held {
            self.set_class(e, Trust::Confirmed, now);
        }
        self.held = held;
        if self.sync.is_some() {
            self.sync_collect(snap, now, budget);
        }
        self.stats
            .flow_gauges(A::FAMILY)
            .0
            .set(self.table.len() as u64);
        for t in Trust::ALL {
            self.stats.flow_gauges(A::FAMILY).1[t as usize].set(self.table.count(t) as u64);
        }
        removed
    }

    /// Makes sure no live flow holds the reply key a new NAT flow to
    /// `real`:`real_port` for `key`'s client will take. A NAT flow's
    /// replies are found by (real, client) alone, which flows to two VIPs
    /// sharing a real can have alike, and the one first in the index took
    /// both's replies. Only for a real the snapshot marks
    /// [`shared_endpoint`](crate::snapshot::RealView::shared_endpoint):
    /// the read of the key's index slot is a cache miss that doubled the
    /// cost of every new flow (found in audit: a stranger's SYN to the other VIP,
    /// on the client's next source port, made the client's handshake
    /// fail for as long as it lived; connection sync refuses such a flow
    /// already). An unconfirmed holder (a SYN, a closed or picked-up
    /// flow: what anyone can make) gives way to the new flow; one with
    /// more trust (confirmed, or one-way: held for its source's share,
    /// vouched for by the peer), or one the SYN proxy answered, keeps the
    /// key, and the new flow is refused (`tuple_in_use`): the real could
    /// not tell the two connections apart either.
    #[inline]
    fn claim_reply_key(
        &mut self,
        key: &FlowKey<A>,
        real: A,
        real_port: u16,
        now: u32,
        timeouts: &crate::flow::Timeouts,
    ) -> Result<(), DropReason> {
        let reply = ReplyKey {
            proto: key.proto,
            real,
            real_port,
            client: key.client,
            client_port: key.client_port,
        };
        let Some(holder) = self
            .table
            .lookup_reply(&reply, self.table.reply_key_hash(&reply))
        else {
            return Ok(());
        };
        let f = self.table.get(holder);
        // A flow the SYN proxy answered keeps it while it waits for its
        // real, unconfirmed as it is: its client proved its address with
        // the cookie and, its handshake done, never sends its SYN again
        // (found in review: a stranger's SYN to the other VIP ended it,
        // and the real's SYN-ACK then left from the wrong VIP).
        let gives_way = self.table.trust(holder) == Trust::Unconfirmed && f.proxy == 0;
        if !gives_way && !f.expired(now, timeouts) {
            return Err(DropReason::TupleInUse);
        }
        self.end(holder, now);
        Ok(())
    }

    /// Removes entry `e`, whatever ends it.
    pub(super) fn end(&mut self, e: u32, now: u32) {
        let trust = self.table.trust(e);
        let f = self.table.remove(e);
        if f.is_template() {
            self.count_template(f.real_id, false);
        } else {
            self.flow_ended(&f, trust, now);
        }
        self.stats
            .flow_gauges(A::FAMILY)
            .0
            .set(self.table.len() as u64);
    }

    /// Bookkeeping for a flow that is gone: its real's active count, and
    /// its persistence template, which lives on for the service's
    /// persistence after its last flow.
    fn flow_ended(&mut self, f: &Flow<A>, trust: Trust, now: u32) {
        if let Some(log) = self.sync.as_mut() {
            log.ended(f, &self.stats.sync);
        }
        self.count_active(f.real_id, f.state(), false);
        if trust == Trust::Confirmed {
            self.count_confirmed(f.client(), false);
        }
        if f.templated {
            self.template_child(&f.key(), now, false);
        }
    }

    /// Counts a flow of `real_id` in (`add`) or out, in `state`.
    pub(super) fn count_active(&mut self, real_id: u32, state: FlowState, add: bool) {
        let a = &mut self.active[real_id as usize % MAX_REALS];
        *a = if add { *a + 1 } else { a.saturating_sub(1) };
        self.stats.real(real_id).active.set(u64::from(*a));
        if state.is_inactive() {
            self.count_inactive(real_id, add);
        }
    }

    /// Counts a persistence template that sends clients to `real_id` in
    /// (`add`) or out.
    fn count_template(&mut self, real_id: u32, add: bool) {
        let n = &mut self.templates[real_id as usize % MAX_REALS];
        *n = if add { *n + 1 } else { n.saturating_sub(1) };
        self.stats.real(real_id).templates.set(u64::from(*n));
    }

    fn count_inactive(&mut self, real_id: u32, add: bool) {
        let n = &mut self.inactive[real_id as usize % MAX_REALS];
        *n = if add { *n + 1 } else { n.saturating_sub(1) };
        self.stats.real(real_id).inactive.set(u64::from(*n));
    }

    /// After entry `e`'s state may have changed from the one in `inputs`
    /// (its `trust_inputs` before): moves the flow between its real's
    /// inactive count and the rest when it crossed. Not for a flow that
    /// ended meanwhile (its end counted it out).
    #[inline]
    pub(super) fn restate(&mut self, e: u32, inputs: u16) {
        if !self.table.is_live(e) {
            return;
        }
        let f = self.table.get(e);
        let (was, is) = (
            FlowState::is_inactive_code(inputs as u8),
            f.state().is_inactive(),
        );
        if was != is && !f.is_template() {
            let id = f.real_id;
            self.count_inactive(id, is);
        }
    }

    /// Counts a flow in (`add`) or out of its persistence template, on
    /// whatever real: a template lives while any flow it placed does, even
    /// after it was moved to another real.
    /// Whether the template was there.
    fn template_child(&mut self, key: &FlowKey<A>, now: u32, add: bool) -> bool {
        let tk = template_key(key);
        let Some(e) = self.table.lookup(&tk, self.table.key_hash(&tk)) else {
            return false;
        };
        let t = self.table.get_mut(e);
        let before = t.trust();
        t.children = if add {
            t.children + 1
        } else {
            t.children.saturating_sub(1)
        };
        t.last_seen = now;
        self.reclass(e, before, now);
        true
    }
}

impl<A: FlowAddr> Target<A> {
    /// A target that only carries a SYN proxy step (no real is chosen).
    fn proxy_only(step: ProxyStep) -> Target<A> {
        Target {
            real: A::UNSPECIFIED,
            real_port: 0,
            method: ForwardingMethod::Nat,
            real_id: 0,
            proxy: step,
        }
    }
}

// SYN proxy (design in `crate::synproxy`, flow state in `flow/synproxy.rs`):
// what the marked hooks above call, and what the pipeline calls to finish a
// handshake.
impl<A: FlowAddr> Conntrack<A> {
    /// Whether this worker is under SYN pressure, which switches the SYN
    /// proxy on for services set to `auto`: engaged while the flow table
    /// is at least half full, released once it is below three eighths (the
    /// gap keeps it from flapping). Evaluated when asked, which is when a
    /// connection for no flow arrives at an `auto` service.
    pub fn syn_pressure(&self) -> bool {
        let t = self.table();
        self.pressure.update(t.len(), t.capacity())
    }

    /// How the proxy applies to a new connection to `service` now.
    pub fn syn_proxy_cover(&self, snap: &Snapshot, service: usize) -> Cover {
        match snap.services[service].syn_proxy {
            SynProxyMode::Off => Cover::Off,
            SynProxyMode::On => Cover::Engaged,
            SynProxyMode::Auto if self.syn_pressure() => Cover::Engaged,
            SynProxyMode::Auto => Cover::Standby,
        }
    }

    /// Hook for a client's TCP segment for no flow: what the proxy makes
    /// of it, None to carry on as without it. While engaged, nothing the
    /// client sends for no flow other than a SYN or an ACK with a good
    /// cookie makes state: a SYN with RST (or FIN) set, a RST, or a
    /// segment without ACK is dropped (`no_flow`; found in review: a
    /// Maglev service picked such segments up mid-stream, so spoofed
    /// flagless segments made flows, evicted clients waiting for their
    /// real, and reached the real). Nor does a deferred segment whose flow
    /// is gone (`syn_proxy_pending`).
    #[inline(never)]
    fn syn_proxy_no_flow(
        &self,
        snap: &Snapshot,
        service: usize,
        seg: Segment,
    ) -> Option<Result<Target<A>, DropReason>> {
        if snap.services[service].syn_proxy == SynProxyMode::Off {
            return None;
        }
        let f = seg.flags;
        let step = if f.contains(TcpFlags::SYN) && !f.contains(TcpFlags::ACK) {
            match self.syn_proxy_cover(snap, service) {
                Cover::Engaged if f.intersects(TcpFlags::RST | TcpFlags::FIN) => {
                    return Some(Err(DropReason::NoFlow))
                }
                Cover::Engaged => ProxyStep::AnswerSyn,
                _ => return None,
            }
        } else if f.contains(TcpFlags::ACK) && !f.intersects(TcpFlags::SYN | TcpFlags::RST) {
            let engaged = self.syn_proxy_cover(snap, service) == Cover::Engaged;
            ProxyStep::CheckCookie { engaged }
        } else if self.defer_rerun() {
            return Some(Err(DropReason::SynProxyPending));
        } else if self.syn_proxy_cover(snap, service) == Cover::Engaged {
            return Some(Err(DropReason::NoFlow));
        } else {
            return None;
        };
        Some(Ok(Target::proxy_only(step)))
    }

    /// The translation of the packet just looked up (step `Translate`).
    #[inline]
    pub fn proxy_adjust(&self) -> TcpAdjust {
        self.adjust
    }

    /// The waiting flow whose real's SYN-ACK was just looked up (step
    /// `AckToReal`).
    #[inline]
    pub fn proxy_waiting(&self) -> Waiting {
        self.waiting
    }

    /// Hook for a client's segment of a proxied flow (entry `e`).
    #[cold]
    #[inline(never)]
    pub(super) fn syn_proxy_client(
        &mut self,
        e: u32,
        tcp: Option<Segment>,
        now: u32,
    ) -> Result<Target<A>, DropReason> {
        let f = self.table.get_mut(e);
        let target = Target {
            real: f.real(),
            real_port: f.real_port(),
            method: f.method,
            real_id: f.real_id,
            proxy: ProxyStep::None,
        };
        let Some(seg) = tcp else {
            return Err(DropReason::SynProxyPending);
        };
        if f.is_proxy_waiting() {
            let flags = seg.flags;
            if flags.contains(TcpFlags::SYN)
                && !flags.intersects(TcpFlags::ACK | TcpFlags::RST | TcpFlags::FIN)
            {
                // The client did not get our SYN-ACK: answer again.
                return Ok(Target {
                    proxy: ProxyStep::AnswerSyn,
                    ..target
                });
            }
            if flags.contains(TcpFlags::RST) {
                // Only a RST near where the client stands (its ISN + 1,
                // from the cookie ACK: it has sent nothing since) is the
                // client's: a blind one must neither close the flow nor
                // keep it alive, and the real never sees it.
                if !seq_within(seg.seq, f.client_next, RST_WINDOW) {
                    return Err(DropReason::SynProxyPending);
                }
                // The client gives up: the real gets the RST (its sequence
                // number is the client's own) and the flow closes; its SYN
                // is done with (`Flow::proxy_syn`).
                f.last_seen = now;
                f.on_segment(seg, true);
                if f.state() != FlowState::SynSent {
                    f.children = 0;
                }
                self.defer.changed(f);
                self.adjust = TcpAdjust::default();
                return Ok(Target {
                    proxy: ProxyStep::Translate,
                    ..target
                });
            }
            // An ACK of another cookie than the flow's: perhaps of the
            // one its client got for a new SYN (see `ProxyStep::Restart`;
            // the pipeline checks it). Not a deferred segment running
            // again: its client did not send it now. Nothing of the flow
            // moves here: a blind ACK neither ends nor refreshes it.
            if !self.defer.rerun
                && f.state() == FlowState::SynSent
                && flags.contains(TcpFlags::ACK)
                && !flags.intersects(TcpFlags::SYN | TcpFlags::RST)
                && seg.ack != f.proxy_seq.wrapping_add(1)
            {
                return Ok(Target {
                    proxy: ProxyStep::Restart,
                    ..target
                });
            }
            // Data (or the ACK again) before the real answered: kept for
            // later, or dropped; and the SYN to the real again if due.
            let step = self.proxy_early(e, seg, now)?;
            return Ok(Target {
                proxy: step,
                ..target
            });
        }
        if let Some(step) = self.defer.after_answer(f, seg) {
            return step.map(|proxy| Target { proxy, ..target });
        }
        f.last_seen = now;
        // Its acknowledgment number is in the client's view of the real's
        // sequence space: tracked in the real's, as the real will see it.
        let seg = Segment {
            ack: seg.ack.wrapping_add(f.proxy_seq),
            ..seg
        };
        f.on_segment(seg, true);
        self.adjust = f.proxy_to_real();
        Ok(Target {
            proxy: ProxyStep::Translate,
            ..target
        })
    }

    /// Hook for a real's segment of a proxied flow (entry `e`).
    #[cold]
    #[inline(never)]
    pub(super) fn syn_proxy_reply(
        &mut self,
        e: u32,
        tcp: Option<Segment>,
        now: u32,
        from_real: impl FnOnce() -> bool,
        sender: impl FnOnce() -> u32,
    ) -> Result<ReplyTarget<A>, DropReason> {
        let f = self.table.get_mut(e);
        let target = ReplyTarget {
            vip: f.vip(),
            vip_port: f.vip_port(),
            real_id: f.real_id,
            proxy: ReplyStep::None,
        };
        let Some(seg) = tcp else {
            return Err(DropReason::SynProxyPending);
        };
        if f.is_proxy_waiting() {
            let flags = seg.flags;
            // Only a plain SYN-ACK, to a flow still opening (not one the
            // client reset meanwhile), completes the handshake.
            if flags.contains(TcpFlags::SYN | TcpFlags::ACK)
                && !flags.intersects(TcpFlags::RST | TcpFlags::FIN)
                && f.state() == FlowState::SynSent
            {
                self.waiting = Waiting {
                    entry: e,
                    client_next: f.client_next,
                    window: f.proxy_window,
                    timestamps: f.proxy & PROXY_TS != 0,
                    sender: sender(),
                };
                return Ok(ReplyTarget {
                    proxy: ReplyStep::AckToReal,
                    ..target
                });
            }
            // Only what a real sends in answer to our SYN (RST and ACK of
            // the SYN, RFC 9293 3.10.7.2): a blind RST from the real's
            // address, any sequence number, closed the flow and reached
            // the client at the number it accepts (found in review).
            if flags.contains(TcpFlags::RST | TcpFlags::ACK) && seg.ack == f.client_next {
                // The real refuses (nothing listens): the client, which
                // thinks it is connected, gets the RST at the sequence
                // number it expects (cookie + 1).
                let cookie = f.proxy_seq;
                f.proxy_seq = seg.seq.wrapping_sub(cookie.wrapping_add(1));
                f.proxy &= !PROXY_WAITING;
                // Its SYN is done with (`Flow::proxy_syn`).
                f.children = 0;
                f.last_seen = now;
                f.on_segment(seg, false);
                self.defer.changed(f);
                self.adjust = f.proxy_to_client();
                return Ok(ReplyTarget {
                    proxy: ReplyStep::Translate,
                    ..target
                });
            }
            // An ACK of something else than our SYN, from where the real
            // is reached: the real holds another connection on the tuple
            // (the client's last one in TIME_WAIT, which answers a SYN
            // below its sequence so; or one half open after its SYN-ACK
            // was lost and the client started again) and will never
            // answer our SYN otherwise: the flow waited for the give-up,
            // 15 s (found in review). As the client's own TCP in SYN-SENT
            // would (RFC 9293 3.10.7.3), the real gets a RST at the
            // number it acknowledged, which ends that connection, and the
            // SYN sent again opens ours. Nothing of the flow moves.
            if flags.contains(TcpFlags::ACK)
                && !flags.intersects(TcpFlags::SYN | TcpFlags::RST)
                && f.state() == FlowState::SynSent
                && seg.ack != f.client_next
                && from_real()
            {
                return Ok(ReplyTarget {
                    proxy: ReplyStep::ResetReal,
                    ..target
                });
            }
            return Err(DropReason::SynProxyPending);
        }
        f.last_seen = now;
        // A segment that could end the flow or start it again is believed
        // only from where the real's SYN-ACK came, or from where the real
        // is reached (found in review: a stranger who knew the tuple forged
        // the real's RST from the internet, and once its sequence number
        // fell in the window the flow closed under the client); so is
        // every segment of a flow synced from a peer until the real's ACK
        // placed the client, as for plain NAT flows (found in review: a
        // forged real ACK placed the client where a RST then closed the
        // flow). One from elsewhere still goes to the client, as for any
        // NAT flow, which judges it by its own window.
        if (seg.ends_or_opens() || f.awaits_real(true)) && f.children != sender() && !from_real() {
            self.stats.nat_replies_unvouched.incr();
            f.seq_known &= !super::table::SYNCED;
        } else {
            f.on_segment(seg, false);
        }
        self.adjust = f.proxy_to_client();
        Ok(ReplyTarget {
            proxy: ReplyStep::Translate,
            ..target
        })
    }

    /// A new flow for an ACK whose cookie checked out: scheduled like any
    /// new flow (persistence templates included), its client side tracked
    /// from the client's ISN as if its SYN had come through, and marked as
    /// proxied and waiting for the real's SYN-ACK. `timestamps`: the
    /// ACK's, when timestamps are in use (its TSecr is the TSval the
    /// proxy's SYN-ACK carried, its TSval goes to the real in the SYN);
    /// `window`: the ACK's window field; `ttl`: the SYN's. Returns where
    /// the flow goes and its SYN to the real (which it keeps what it
    /// takes to send again: [`Flow::proxy_syn`]).
    #[allow(clippy::too_many_arguments)]
    pub fn syn_proxy_create(
        &mut self,
        snap: &Snapshot,
        service: usize,
        key: &FlowKey<A>,
        client_isn: u32,
        cookie: u32,
        opts: &CookieOptions,
        timestamps: Option<Timestamps>,
        window: u16,
        ttl: u8,
        now: u32,
        schedulers: &mut Schedulers,
    ) -> Result<(Target<A>, ProxySyn<A>), DropReason> {
        let syn = Segment {
            flags: TcpFlags::SYN,
            seq: client_isn,
            ack: 0,
            len: 1,
        };
        let target = self.create::<VecBuf>(snap, service, key, Some(syn), true, now, schedulers)?;
        let hash = self.table().key_hash(key);
        let Some(e) = self.table().lookup(key, hash) else {
            // Forwarded without an entry cannot happen for NAT (create
            // refuses then); be safe all the same.
            return Err(DropReason::FlowTableFull);
        };
        let f = self.table.get_mut(e);
        f.proxy = PROXY_ON | PROXY_WAITING;
        f.proxy_seq = cookie;
        f.proxy_window = window;
        f.proxy_wscale = 0;
        f.children = u32::from(ttl);
        // Its first SYN goes now: the back-off counts from it
        // (`Flow::syn_sent_at`).
        f.template_timeout = now;
        if let Some(ts) = timestamps {
            f.proxy |= PROXY_TS;
            f.proxy_ts = ts.ecr;
            f.real_next = ts.val;
        }
        if let Some(ws) = opts.wscale {
            f.proxy |= PROXY_CLIENT_WS;
            f.proxy_wscale = ws << 4;
            // The SYN to the real is not scaled; the ACK after it is, in
            // the client's scale, unless the real turns scaling down.
        }
        debug_assert_eq!(CookieOptions::carried(A::FAMILY, cookie), *opts);
        match f.proxy_syn() {
            Some(syn) => {
                self.syn_watch.add(e, *key);
                Ok((target, syn))
            }
            // It was made waiting and opening just now.
            None => Err(DropReason::SynProxyPending),
        }
    }

    /// The client of the proxied flow on `key`, which still waits for its
    /// real, started again: the ACK of a newer cookie for the same tuple
    /// checked out (`ProxyStep::Restart`). The waiting flow is ended, as
    /// its client's RST would end it, so that the ACK opens a new one
    /// ([`Self::syn_proxy_create`], scheduled as any new flow). Its
    /// deferred segments run at the next pass and, acknowledging the old
    /// cookie, are dropped (not sent into the new connection); its SYN's
    /// re-sends and its watch find the entry gone, or another flow's (a
    /// re-send count of its own). False, ending nothing, when no such flow
    /// waits there.
    pub fn syn_proxy_replace(&mut self, key: &FlowKey<A>, now: u32) -> bool {
        let hash = self.table().key_hash(key);
        let Some(e) = self.table().lookup(key, hash) else {
            return false;
        };
        let f = self.table.get(e);
        if !f.is_proxy_waiting() || f.state() != FlowState::SynSent {
            return false;
        }
        self.defer.changed(f);
        self.end(e, now);
        true
    }

    /// A non-proxied new flow for a mid-stream ACK whose cookie did not
    /// check out while the proxy was on standby: what would have happened
    /// without the proxy (a Maglev pick-up, else `no_flow`).
    #[allow(clippy::too_many_arguments)]
    pub fn syn_proxy_fallback(
        &mut self,
        snap: &Snapshot,
        service: usize,
        key: &FlowKey<A>,
        seg: Segment,
        now: u32,
        schedulers: &mut Schedulers,
    ) -> Result<Target<A>, DropReason> {
        self.create::<VecBuf>(snap, service, key, Some(seg), false, now, schedulers)
    }

    /// The real answered the proxied flow `w.entry` with its SYN-ACK
    /// (`seg`, ISN `seg.seq`): records the sequence offset, the timestamp
    /// offset (`real_tsval`: the SYN-ACK's TSval, None if it had none) and
    /// the real's window scale, and moves the flow to established through
    /// the state machine, as the ACK to the real that the pipeline sends
    /// completes the real's handshake.
    pub fn syn_proxy_answered(
        &mut self,
        w: &Waiting,
        seg: Segment,
        real_wscale: Option<u8>,
        real_tsval: Option<u32>,
        now: u32,
    ) -> Flow<A> {
        let f = self.table.get_mut(w.entry);
        let before = f.trust();
        let inputs = f.trust_inputs();
        let cookie = f.proxy_seq;
        f.proxy_seq = seg.seq.wrapping_sub(cookie);
        match real_tsval {
            Some(v) if f.proxy & PROXY_TS != 0 => f.proxy_ts = f.proxy_ts.wrapping_sub(v),
            _ => {
                f.proxy &= !PROXY_TS;
                f.proxy_ts = 0;
            }
        }
        if let (Some(ws), true) = (real_wscale, f.proxy & PROXY_CLIENT_WS != 0) {
            f.proxy |= PROXY_REAL_WS;
            f.proxy_wscale = (f.proxy_wscale & 0xf0) | ws.min(14);
        }
        f.proxy &= !PROXY_WAITING;
        f.proxy_window = 0;
        // Its SYN is done with (`Flow::proxy_syn`); `real_next` is the
        // real's from here on, and `children` where it sends from.
        f.children = w.sender;
        f.last_seen = now;
        f.on_segment(seg, false);
        // The ACK the pipeline sends the real for the client: it
        // acknowledges the real's SYN, so the flow is established and
        // confirmed (the client proved its address with the cookie).
        let ack = Segment {
            flags: TcpFlags::ACK,
            seq: w.client_next,
            ack: seg.seq.wrapping_add(1),
            len: 0,
        };
        f.on_segment(ack, true);
        self.defer.changed(f);
        let flow = *f;
        self.reclass(w.entry, before, now);
        self.restate(w.entry, inputs);
        // Its translation exists now: the peer can carry it on.
        self.sync_mark(w.entry);
        flow
    }
}

/// A real's address as a flow of family `A` keeps it: `UNSPECIFIED` for a
/// real of the other family (an IPv4 service's IPv6 real, 4in6), which the
/// pipeline finds in the snapshot by the real's id.
#[inline(always)]
pub(super) fn real_addr<A: FlowAddr>(address: impl Into<IpAddr>) -> A {
    A::from_ip(address.into()).unwrap_or(A::UNSPECIFIED)
}

#[cfg(test)]
#[path = "conntrack_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "steer_tests.rs"]
mod steer_tests;
