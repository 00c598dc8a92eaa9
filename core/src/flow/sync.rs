//! Where a synced flow enters a worker's table, and what a flow tells the
//! peer (connection sync, `crate::sync`).
//!
//! Install policy, in the owning worker between bursts:
//! - The record names its service by (protocol, VIP, port) and its real by
//!   (address, port, method); neither found here: refused
//!   (`unknown_service`, `unknown_real`). The local ids are used from
//!   then on.
//! - A synced entry is `SYNCED` until a packet of it is seen here; only
//!   then may sync update or remove it. A tuple the worker forwarded
//!   packets of is its own: refused (`local_flow`). An expired entry
//!   counts as none.
//! - It takes a free entry or nothing: a synced flow never evicts (full:
//!   `table_full`). A local flow may evict a synced one like any other of
//!   its class, so sync can never make the worker refuse its own traffic.
//! - Its class: `OneWay` when the peer held it at least one-way and it is
//!   established (or a datagram flow), else `Unconfirmed`; packets here
//!   confirm it as any flow (a NAT flow by the real's data and the
//!   client's ACK of it).
//! - Sequence tracking starts unknown (the peer does not send every
//!   segment). The real's first segment sets the real's side and, by what
//!   it acknowledges, the client's; until then no RST, FIN or SYN of
//!   the client's is believed (`UNSURE_CLIENT`): anybody could send the
//!   first segment that claims to be the client's, or set where it was
//!   followed to. A TUN or DR flow, whose real's side is never seen, is
//!   placed, once past its handshake, where the record says the peer had
//!   its client
//!   (`FlowUpdate::client_seq`: its next sequence number and its last
//!   acknowledgment believed, which a stranger does not know); its
//!   segments are then held to that as on the peer, and its FIN and RST
//!   believed. Without it (a peer before it, or one that had the client
//!   unplaced) it stays unsure and ends by its timeout, as does one whose
//!   client moved beyond the windows since the peer's last record. The SYN
//!   proxy's offsets, fixed once the real answered, come with the record,
//!   so the translation is the same.
//! - It counts in its real's active flows and its client's source bucket,
//!   like a flow created here; it is not `flows_created` (nothing was
//!   scheduled).
//!
//! What an appliance records (`Conntrack::enable_sync`; both roles, so
//! that whichever is active tells the other): the packet path only notes
//! the entry of a flow that was created or changed state, class or
//! translation (a bounded list of entry numbers, one predictable branch
//! when sync is off); the sweep, between bursts, turns those into
//! records, adds a removal record for every flow of its own that ended,
//! and re-sends each live flow of its own at least every half of its
//! state's timeout (the flow's `template_timeout` holds when it was last
//! sent: a non-template uses it for nothing else, except a proxied flow
//! waiting for its real, which is not sent and keeps its SYN's time
//! there), so that the peer's entries do not expire while the flow lives
//! here; and a TUN or DR flow whose client moved more than a quarter of
//! the windows its segments are held to since its last record
//! (`Flow::client_drifted`: 256 KiB of its data, 4 MiB of its
//! acknowledgments), so that the peer can still follow it after a
//! takeover. That refresh goes at the sweep's pace (a 1M-entry table in
//! under half a second at full load), so a faster client (an upload of
//! some 2 MB/s; or one that sends data and acknowledges some 30 MB/s: a
//! client that only downloads sends in order, and is followed however
//! far its acknowledgments went) may be beyond the peer's windows when
//! it takes over: it is then not followed there, as before. Those
//! numbers are what a stranger needs to reset the connection, and go in
//! the clear (a key authenticates, it does not hide). A full list or queue drops and counts (`events_dropped`); the
//! refresh repairs what a drop lost. A flow the peer gave us is not sent
//! back (no echo) until a packet of it is seen here: then it is ours. A
//! bulk pass (`Conntrack::sync_bulk_start`) sends every flow, the peer's
//! included, to a peer that came back without them.
//!
//! Not synced: persistence templates (a client's next connection after a
//! takeover is scheduled afresh), and proxied flows still waiting for
//! their real's SYN-ACK (no translation exists yet).

use std::net::IpAddr;

use lb_config::ForwardingMethod;

use super::conntrack::{real_addr, Conntrack};
use super::hash::FlowAddr;
use super::synproxy::{PROXY_CLIENT_WS, PROXY_ON, PROXY_REAL_WS, PROXY_TS};
use super::table::{FlowTable, FIRST_FIN_REAL, SYNCED, UNSURE_CLIENT, VOUCHED};
use super::{Flow, FlowKey, FlowState, NewFlow, ReplyKey, Trust};
use crate::snapshot::Snapshot;
use crate::sync::{
    FlowChange, FlowRecord, FlowUpdate, ProxyState, Refused, SyncCounters, SyncEvents,
};

/// What installing a record did (each counted in `WorkerStats::sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    /// A new entry (`flows_installed`).
    Created,
    /// A synced entry brought up to date (`flows_updated`).
    Updated,
    /// A synced entry removed (`flows_removed`).
    Removed,
    /// A removal of a flow this table does not hold: nothing to do
    /// (not counted; its creation may have been refused or lost).
    Absent,
}

/// A primary's record of what changed since the last collection.
#[derive(Debug)]
pub(super) struct SyncLog {
    /// Entries whose flow was created or changed (may repeat; bounded).
    dirty: Vec<u32>,
    /// A pass sending every flow the table holds, under way
    /// ([`Conntrack::sync_bulk_start`]).
    bulk: Option<BulkPass>,
    /// A pass handing every flow of our own to the peer, under way: the
    /// next entry ([`Conntrack::sync_demote_start`]).
    demote: Option<usize>,
    /// The records for the peer, until the worker hands them over.
    events: SyncEvents,
}

/// Where a bulk pass stands: it goes round the table once from where it
/// began, wrapping at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BulkPass {
    /// The next entry to look at.
    next: usize,
    /// Entries still to look at.
    left: usize,
}

impl BulkPass {
    /// Looks at up to `budget` entries of the pass with `f` (which returns
    /// false to stop at an entry and look at it again next time); the pass
    /// if it is not over.
    fn step<A: FlowAddr>(
        mut self,
        table: &mut FlowTable<A>,
        budget: usize,
        mut f: impl FnMut(&mut Flow<A>) -> bool,
    ) -> Option<BulkPass> {
        let n = table.capacity();
        let mut budget = budget.min(self.left);
        while budget > 0 && self.next < n {
            let from = self.next;
            let span = budget.min(n - from);
            // `visit_from` gives where it stopped early, or where the span
            // ended (None at the table's end).
            let stop = table
                .visit_from(from, span, |_, flow| f(flow))
                .unwrap_or(n)
                .min(from + span);
            let done = stop - from;
            self.left -= done;
            budget -= done;
            self.next = if stop == n { 0 } else { stop };
            if done < span {
                break;
            }
        }
        (self.left > 0 && n > 0).then_some(self)
    }
}

impl SyncLog {
    #[inline]
    fn mark(&mut self, e: u32, counters: &SyncCounters) {
        if self.dirty.len() == self.dirty.capacity() {
            counters.events_dropped.incr();
        } else {
            self.dirty.push(e);
        }
    }

    /// A flow of this table ended. One the peer gave us and no packet of
    /// which was seen here is the peer's to report, not ours (and sending
    /// it back would echo every removal).
    pub(super) fn ended<A: FlowAddr>(&mut self, f: &Flow<A>, counters: &SyncCounters) {
        if f.is_synced() {
            return;
        }
        if let Some(r) = f.sync_removed() {
            self.events.push(r, counters);
        }
    }
}

impl<A: FlowAddr> Conntrack<A> {
    /// Makes this table record its flows' changes for a sync peer (a
    /// primary), `capacity` events between two collections. Allocates.
    pub fn enable_sync(&mut self, capacity: usize) {
        self.sync = Some(Box::new(SyncLog {
            dirty: Vec::with_capacity(capacity.max(1)),
            bulk: None,
            demote: None,
            events: SyncEvents::with_capacity(capacity),
        }));
    }

    /// Whether this table records changes for a sync peer.
    pub fn syncs(&self) -> bool {
        self.sync.is_some()
    }

    /// Notes that entry `e`'s flow changed (a primary; else nothing).
    #[inline(always)]
    pub(super) fn sync_mark(&mut self, e: u32) {
        if let Some(log) = self.sync.as_mut() {
            log.mark(e, &self.stats.sync);
        }
    }

    /// [`Self::sync_mark`] for a SYN-proxied flow's packet: when its state
    /// (or what was seen of it) changed from `inputs`, and it still is.
    #[inline]
    pub(super) fn sync_mark_if_changed(&mut self, e: u32, inputs: u16) {
        if self.sync.is_some()
            && self.table.is_live(e)
            && self.table.get(e).trust_inputs() != inputs
        {
            self.sync_mark(e);
        }
    }

    /// Between bursts: turns the noted entries into records and re-sends
    /// up to `budget` entries' flows whose last sending is older than half
    /// their state's timeout.
    pub(super) fn sync_collect(&mut self, snap: &Snapshot, now: u32, budget: usize) {
        let Some(log) = self.sync.as_mut() else {
            return;
        };
        let counters = &self.stats.sync;
        let table = &mut self.table;
        for e in log.dirty.drain(..) {
            // A noted entry may have ended since (and may hold another
            // flow now: then that one is sent, which does no harm).
            // An entry the peer gave us is noted when installed (its
            // class changes): not sent back.
            if !table.is_live(e) || table.get(e).is_synced() {
                continue;
            }
            let f = table.get_mut(e);
            if let Some(r) = f.sync_update(snap) {
                if log.events.push(r, counters) {
                    f.sent(now);
                }
            }
        }
        // A pass over every flow (a peer that came back): as many as the
        // queue has room for, the rest next time, none skipped.
        // Standing down: our flows become the peer's (it holds them all,
        // the hand-over made sure), so its changes to them apply here and
        // our refresh no longer echoes them. A packet seen here makes one
        // ours again.
        if let Some(from) = log.demote {
            log.demote = table.visit_from(from, budget, |_, f| {
                if !f.is_template() {
                    f.seq_known |= SYNCED;
                }
                true
            });
        }
        let timeouts = snap.timeouts;
        if let Some(pass) = log.bulk {
            log.bulk = pass.step(table, budget, |f| {
                if log.events.is_full() {
                    return false;
                }
                // An expired flow the sweep has not reached yet is over:
                // sent, it would live on at the peer, which takes it for
                // ours and so neither refreshes nor ends it (found in
                // review: a whole `tcp_timeout` there, taking new
                // connections on the tuple to the old real).
                if f.expired(now, &timeouts) {
                    return true;
                }
                if let Some(r) = f.sync_update(snap) {
                    if log.events.push(r, counters) && !f.is_synced() {
                        f.sent(now);
                    }
                }
                true
            });
        }
        table.visit(budget, |_, f| {
            // Only our own flows are refreshed: one the peer gave us and
            // that no packet here touched is the peer's to keep alive. An
            // expired one is over (its removal goes when the sweep ends it).
            if f.is_template() || f.is_synced() || log.events.is_full() || f.expired(now, &timeouts)
            {
                return;
            }
            // Also a TUN or DR flow whose client moved on far enough that
            // the peer, after a takeover, would no longer follow it.
            let half = timeouts.of(f.state()) / 2;
            if now.wrapping_sub(f.template_timeout) < half && !f.client_drifted() {
                return;
            }
            if let Some(r) = f.sync_update(snap) {
                if log.events.push(r, counters) {
                    f.sent(now);
                }
            }
        });
    }

    /// Starts a pass that sends every flow this table holds, its own and
    /// those the peer gave it (a peer that came back after a restart or
    /// before it takes the gateway back: it must hold them all). The
    /// sweep makes it between bursts, as many entries a poll as its budget,
    /// never more records than the queue has room for: it waits for room,
    /// it never drops. A pass asked for while one is under way goes on
    /// from where that one is and ends a whole round of the table later,
    /// so every flow held now is sent, and a peer asking again and again
    /// (one that flaps, or a stranger spoofing its restarts) cannot keep a
    /// pass from ending: it only makes it up to one round longer. Nothing
    /// without sync.
    pub fn sync_bulk_start(&mut self) {
        let n = self.table.capacity();
        if let Some(log) = self.sync.as_mut() {
            log.bulk = Some(BulkPass {
                next: log.bulk.map_or(0, |p| p.next),
                left: n,
            });
        }
    }

    /// Starts a pass that makes every flow of this table the peer's, as if
    /// sync had installed it and no packet of it had been seen here: an
    /// appliance that stood down after handing its flows over. The sweep
    /// makes it between bursts, a budget of entries a poll.
    pub fn sync_demote_start(&mut self) {
        if let Some(log) = self.sync.as_mut() {
            log.demote = Some(0);
        }
    }

    /// Whether a pass [`Self::sync_bulk_start`] began is still under way,
    /// or its records still wait for [`Self::take_sync_events`].
    pub fn sync_bulk_pending(&self) -> bool {
        self.sync
            .as_ref()
            .is_some_and(|log| log.bulk.is_some() || !log.events.is_empty())
    }

    /// Moves the records collected so far into `out`, oldest first, as
    /// many as it has room for; the rest wait here (and a bulk pass or a
    /// refresh waits for room with them, so nothing of theirs is lost
    /// while the sync thread is slow to take a buffer).
    pub fn take_sync_events(&mut self, out: &mut SyncEvents) {
        if let Some(log) = self.sync.as_mut() {
            log.events.move_into(out);
        }
    }

    /// Installs, updates or removes the flow `rec` describes, resolving its
    /// service and real in `snap`; counts the outcome in the worker's
    /// sync counters. See the module docs for the policy.
    pub fn sync_install(
        &mut self,
        snap: &Snapshot,
        rec: &FlowRecord,
        now: u32,
    ) -> Result<Installed, Refused> {
        let r = self.sync_apply(snap, rec, now);
        let c = &self.stats.sync;
        match r {
            Ok(Installed::Created) => c.flows_installed.incr(),
            Ok(Installed::Updated) => c.flows_updated.incr(),
            Ok(Installed::Removed) => c.flows_removed.incr(),
            Ok(Installed::Absent) => {}
            Err(why) => c.refuse(why),
        }
        r
    }

    fn sync_apply(
        &mut self,
        snap: &Snapshot,
        rec: &FlowRecord,
        now: u32,
    ) -> Result<Installed, Refused> {
        let (Some(client), Some(vip)) = (A::from_ip(rec.client), A::from_ip(rec.vip)) else {
            return Err(Refused::BadRecord);
        };
        // A client no host can be (see `Snapshot::is_martian_client` and
        // the sources the pipeline drops) is not taken from a peer either
        // (found in review: an older or broken peer could install flows
        // whose replies go to a broadcast or to us).
        if !rec.is_consistent()
            || match rec.client {
                IpAddr::V4(a) => crate::route::no_host_has(a),
                IpAddr::V6(a) => crate::route::no_host_has6(a),
            }
            || snap.is_martian_client(rec.client)
        {
            return Err(Refused::BadRecord);
        }
        let key = FlowKey {
            proto: rec.proto,
            client,
            client_port: rec.client_port,
            vip,
            vip_port: rec.vip_port,
        };
        let mut existing = self.table.lookup(&key, self.table.key_hash(&key));
        if let Some(e) = existing {
            if self.table.get(e).expired(now, &snap.timeouts) {
                self.end(e, now);
                existing = None;
            } else if self.table.get(e).seq_known & SYNCED == 0 {
                return Err(Refused::LocalFlow);
            }
        }
        let u = match rec.change {
            FlowChange::Removed => {
                return Ok(match existing {
                    Some(e) => {
                        self.end(e, now);
                        Installed::Removed
                    }
                    None => Installed::Absent,
                });
            }
            FlowChange::Update(u) => u,
        };
        let service = match rec.vip {
            IpAddr::V4(v) => snap.service_for(rec.proto, v, rec.vip_port),
            IpAddr::V6(v) => snap.service_for6(rec.proto, v, rec.vip_port),
        }
        .ok_or(Refused::UnknownService)?;
        let svc = &snap.services[service];
        let real = svc
            .reals
            .iter()
            .find(|r| r.address == u.real && r.port == u.real_port && r.method == u.method)
            .ok_or(Refused::UnknownReal)?;
        let (real_id, service_id) = (real.id, svc.id);
        if let Some(e) = existing {
            if self.table.get(e).real_id == real_id {
                let before = self.table.trust(e);
                let f = self.table.get_mut(e);
                let inputs = f.trust_inputs();
                set_synced(f, &u, now);
                self.reclass(e, before, now);
                self.restate(e, inputs);
                return Ok(Installed::Updated);
            }
            // The tuple went to another real on the peer: a new connection
            // on it. The old entry goes.
            self.end(e, now);
        }
        // A NAT flow's replies are matched by (real, client) alone, which
        // flows to two VIPs sharing a real can have alike: one whose reply
        // key another live flow holds would take that flow's replies (the
        // first in the index wins) and send them from its VIP (found in
        // audit: one record moved a local connection's replies). Refused,
        // as a local flow's tuple is.
        if u.method == ForwardingMethod::Nat {
            let reply = ReplyKey {
                proto: rec.proto,
                real: real_addr(u.real),
                real_port: u.real_port,
                client,
                client_port: rec.client_port,
            };
            let hash = self.table.reply_key_hash(&reply);
            if let Some(holder) = self.table.lookup_reply(&reply, hash) {
                if !self.table.get(holder).expired(now, &snap.timeouts) {
                    return Err(Refused::LocalFlow);
                }
                self.end(holder, now);
            }
        }
        if self.table.is_full() {
            return Err(Refused::TableFull);
        }
        let spec = NewFlow {
            key,
            real: real_addr(u.real),
            real_port: u.real_port,
            real_id,
            service_id,
            method: u.method,
            state: u.state,
            trust: Trust::Unconfirmed,
            index_reply: u.method == ForwardingMethod::Nat,
            now,
        };
        let e = self.table.insert(&spec).map_err(|_| Refused::TableFull)?;
        set_synced(self.table.get_mut(e), &u, now);
        self.reclass(e, Trust::Unconfirmed, now);
        self.count_active(real_id, u.state, true);
        self.stats
            .flow_gauges(A::FAMILY)
            .0
            .set(self.table.len() as u64);
        Ok(Installed::Created)
    }
}

/// Makes `f` what `u` says, as a synced entry no packet has been seen of.
fn set_synced<A: FlowAddr>(f: &mut Flow<A>, u: &FlowUpdate, now: u32) {
    f.set_state(u.state);
    f.last_seen = now;
    // Half-closed too (found in review: a flow the primary held confirmed
    // through its close came over unconfirmed, evicted first after a
    // takeover).
    let vouched = u.trust >= Trust::OneWay
        && matches!(
            u.state,
            FlowState::Established | FlowState::FinWait | FlowState::Datagram
        );
    f.seq_known = SYNCED | UNSURE_CLIENT | if vouched { VOUCHED } else { 0 };
    // Which side's FIN began the close: when the record does not say the
    // client's (an older sender's, or a flow itself synced so), taken for
    // the real's, so that only the client's FIN (believed once the real's
    // ACK placed it) closes the flow, never a real's retransmitted one
    // (found in review: a half-closed flow synced so closed on the backup
    // at the real's FIN again, and a stranger's SYN then replaced it).
    // Begun by the client, the real's FIN closes it (before the record
    // said, such a NAT flow stayed half-closed on the backup until
    // `tcp_fin_timeout` and a client reusing its port rode it unfollowed).
    if u.state == FlowState::FinWait && !u.fin_by_client {
        f.seq_known |= FIRST_FIN_REAL;
    }
    match u.proxy {
        None => {
            f.proxy = 0;
            f.proxy_wscale = 0;
            f.proxy_seq = 0;
            f.proxy_ts = 0;
            // TUN, DR: where the peer had the client, when it says; not
            // while half-open (`Flow::client_seq`: the client would be
            // held to its handshake, should the record of its end be
            // lost).
            if let Some(c) = u
                .client_seq
                .filter(|_| u.method != ForwardingMethod::Nat && u.state != FlowState::SynSent)
            {
                f.place_synced_client(c);
            }
        }
        Some(p) => {
            let mut flags = PROXY_ON;
            if p.ts_offset.is_some() {
                flags |= PROXY_TS;
            }
            if p.client_wscale.is_some() {
                flags |= PROXY_CLIENT_WS;
            }
            if p.real_wscale.is_some() {
                flags |= PROXY_REAL_WS;
            }
            f.proxy = flags;
            f.proxy_wscale = (p.client_wscale.unwrap_or(0) << 4) | p.real_wscale.unwrap_or(0);
            f.proxy_seq = p.seq_offset;
            f.proxy_ts = p.ts_offset.unwrap_or(0);
        }
    }
    f.proxy_window = 0;
}

impl<A: FlowAddr> Flow<A> {
    /// The record that tells the peer how this flow stands, or None for
    /// what is not synced: a persistence template, a proxied flow still
    /// waiting for its real, a flow whose real `snap` no longer has.
    /// `snap` gives the address of a 4in6 real, which the flow does not
    /// hold.
    pub fn sync_update(&self, snap: &Snapshot) -> Option<FlowRecord> {
        if self.is_template() || self.is_proxy_waiting() || !snap.real_present(self.real_id) {
            return None;
        }
        let real = if self.real() == A::UNSPECIFIED {
            IpAddr::V6(snap.tunnel6_real(self.real_id)?)
        } else {
            self.real().to_ip()
        };
        let proxy = self.is_proxied().then(|| ProxyState {
            seq_offset: self.proxy_seq,
            ts_offset: (self.proxy & PROXY_TS != 0).then_some(self.proxy_ts),
            client_wscale: (self.proxy & PROXY_CLIENT_WS != 0).then_some(self.proxy_wscale >> 4),
            real_wscale: (self.proxy & PROXY_REAL_WS != 0).then_some(self.proxy_wscale & 0xf),
        });
        Some(self.record(FlowChange::Update(FlowUpdate {
            real,
            real_port: self.real_port(),
            method: self.method,
            state: self.state(),
            fin_by_client: self.state() == FlowState::FinWait
                && self.seq_known & FIRST_FIN_REAL == 0,
            trust: self.trust(),
            proxy,
            client_seq: self.client_seq(),
        })))
    }

    /// Notes that a record of [`Self::sync_update`] went into the queue
    /// for the peer: when (the refresh goes by it), and where the client
    /// stood.
    fn sent(&mut self, now: u32) {
        self.template_timeout = now;
        self.client_seq_sent();
    }

    /// The record that tells the peer this flow ended (None for a
    /// template).
    pub fn sync_removed(&self) -> Option<FlowRecord> {
        (!self.is_template()).then(|| self.record(FlowChange::Removed))
    }

    /// Whether sync installed this entry and no packet of it was seen
    /// here since.
    pub fn is_synced(&self) -> bool {
        self.seq_known & SYNCED != 0
    }

    fn record(&self, change: FlowChange) -> FlowRecord {
        FlowRecord {
            proto: self.key().proto,
            client: self.client().to_ip(),
            client_port: self.client_port(),
            vip: self.vip().to_ip(),
            vip_port: self.vip_port(),
            change,
        }
    }
}

#[cfg(test)]
mod tests;
