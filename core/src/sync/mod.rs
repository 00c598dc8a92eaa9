//! Connection sync (`[sync]`, in the manner of the IPVS sync daemon): how
//! a primary's flows reach its backup, so that after a takeover the
//! backup carries established connections on with the same real and the
//! same translation. This module answers "what is recorded, what is
//! refused and how it is counted"; the socket-free parts live here and
//! in `wire::sync` (the message format) and `flow::Conntrack::sync_install`
//! (putting a record into a worker's table).
//!
//! Design: a worker never sends. It records a compact [`FlowRecord`] per
//! flow change in its own bounded [`SyncEvents`] (full: the event is
//! dropped and counted, so a flood of new flows costs at most the
//! queue), the control thread collects them every `interval` and sends
//! them in batches; the backup's control thread parses a datagram, hands
//! each record to the worker that owns its client (`flow::owner_of`), and
//! that worker installs it between bursts, like any table change. The
//! rate is bounded by the queues: at most `workers x capacity` records an
//! interval.

use crate::stats::Counter;

pub mod auth;
pub mod election;
pub mod segments;

pub use crate::wire::sync::{ClientSeq, FlowChange, FlowRecord, FlowUpdate, ProxyState};

/// Events a worker's queue holds between two collections: 4,096 (about
/// 400 kB a worker). The sync thread collects every 10 ms (every
/// `interval` if that is shorter), so about 400,000 changes a second per
/// worker; more are dropped (`events_dropped`).
pub const EVENT_QUEUE_CAPACITY: usize = 4096;

/// Why sync input was refused (the `reason` label of
/// `lb_sync_refused_total`). Every refusal is counted under exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Refused {
    /// Shorter than its header, a length it states, or its record count.
    Truncated,
    /// Not a sync message (magic).
    BadMagic,
    /// A version of the format this appliance does not read.
    BadVersion,
    /// A message type this appliance does not know.
    UnknownType,
    /// A length field below the header, a record length that is not its
    /// kind's, or bytes left after the records counted.
    BadLength,
    /// A record field out of range, or a flow no appliance could have
    /// (UDP with a TCP state, 6in4, the SYN proxy under TUN or DR, ...).
    BadRecord,
    /// A datagram from an address other than `sync.peer`.
    NotFromPeer,
    /// No service here has the record's (protocol, VIP, port).
    UnknownService,
    /// The service has no real with the record's (address, port,
    /// method).
    UnknownReal,
    /// The owning worker's table has no free entry (a synced flow never
    /// evicts one).
    TableFull,
    /// The tuple is this appliance's own flow (it forwarded a packet of
    /// it): sync never overwrites or removes it.
    LocalFlow,
    /// With `[sync] key_file`: a message without a tag (the peer has no
    /// key, or someone else sends as the peer).
    Unauthenticated,
    /// With `[sync] key_file`: a tag that does not match (the peer has
    /// another key, or the message was changed or forged).
    BadTag,
    /// With `[sync] key_file`: a message whose time is further from this
    /// appliance's clock than `max_clock_skew` (clocks apart, or a
    /// recorded message sent again later).
    Stale,
    /// With `[sync] key_file`: a message whose counter was taken before
    /// (sent again), or is older than every one remembered.
    Replayed,
}

impl Refused {
    pub const ALL: [Refused; 15] = [
        Refused::Truncated,
        Refused::BadMagic,
        Refused::BadVersion,
        Refused::UnknownType,
        Refused::BadLength,
        Refused::BadRecord,
        Refused::NotFromPeer,
        Refused::UnknownService,
        Refused::UnknownReal,
        Refused::TableFull,
        Refused::LocalFlow,
        Refused::Unauthenticated,
        Refused::BadTag,
        Refused::Stale,
        Refused::Replayed,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Truncated => "truncated",
            Refused::BadMagic => "bad_magic",
            Refused::BadVersion => "bad_version",
            Refused::UnknownType => "unknown_type",
            Refused::BadLength => "bad_length",
            Refused::BadRecord => "bad_record",
            Refused::NotFromPeer => "not_from_peer",
            Refused::UnknownService => "unknown_service",
            Refused::UnknownReal => "unknown_real",
            Refused::TableFull => "table_full",
            Refused::LocalFlow => "local_flow",
            Refused::Unauthenticated => "unauthenticated",
            Refused::BadTag => "bad_tag",
            Refused::Stale => "stale",
            Refused::Replayed => "replayed",
        }
    }
}

/// Sync counters with one writer each: every worker has a block in its
/// `WorkerStats` (what it recorded and installed), and the control
/// thread's sync sender/receiver one of its own (messages); the exporter
/// sums them. A message or record refused before it reached a worker is
/// counted by the control thread, one refused by a worker by that worker.
#[derive(Debug, Default)]
pub struct SyncCounters {
    /// Datagrams sent to the peer, and the flow records in them.
    pub messages_sent: Counter,
    pub flows_sent: Counter,
    /// Datagrams received from the peer (whatever became of them), and
    /// the records parsed out of them.
    pub messages_received: Counter,
    pub flows_received: Counter,
    /// Records a worker put into its table: a new entry, a synced entry
    /// brought up to date, a synced entry removed.
    pub flows_installed: Counter,
    pub flows_updated: Counter,
    pub flows_removed: Counter,
    /// Events a worker's [`SyncEvents`] had no room for.
    pub events_dropped: Counter,
    refused: [Counter; Refused::COUNT],
}

impl SyncCounters {
    #[inline]
    pub fn refuse(&self, why: Refused) {
        self.refused[why as usize].incr()
    }

    pub fn refused(&self, why: Refused) -> u64 {
        self.refused[why as usize].get()
    }

    pub fn refused_total(&self) -> u64 {
        self.refused.iter().map(Counter::get).sum()
    }
}

/// A worker's flow changes since the control thread last collected them:
/// bounded, allocated once, never grown. The worker pushes; the control
/// thread's hand-off (a ring of these, or two swapped) drains.
#[derive(Debug)]
pub struct SyncEvents {
    records: Vec<FlowRecord>,
}

impl SyncEvents {
    /// A queue of `capacity` events (at least 1), allocated now.
    pub fn with_capacity(capacity: usize) -> SyncEvents {
        SyncEvents {
            records: Vec::with_capacity(capacity.max(1)),
        }
    }

    /// Records `r`; when full, drops it and counts `events_dropped`
    /// instead (returns false).
    #[inline]
    pub fn push(&mut self, r: FlowRecord, counters: &SyncCounters) -> bool {
        if self.is_full() {
            counters.events_dropped.incr();
            return false;
        }
        self.records.push(r);
        true
    }

    pub fn capacity(&self) -> usize {
        self.records.capacity()
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.records.len() == self.records.capacity()
    }

    /// Moves as many events as `out` has room for, oldest first, into
    /// `out`; the rest stay, in order, for the next time. Returns how many
    /// moved.
    pub fn move_into(&mut self, out: &mut SyncEvents) -> usize {
        let room = out.records.capacity() - out.records.len();
        let n = room.min(self.records.len());
        out.records.extend(self.records.drain(..n));
        n
    }

    /// The events, oldest first, removed as they are read (the capacity
    /// stays).
    pub fn drain(&mut self) -> std::vec::Drain<'_, FlowRecord> {
        self.records.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{FlowState, Trust};
    use lb_config::ForwardingMethod;
    use std::net::Ipv4Addr;

    fn record(i: u16) -> FlowRecord {
        FlowRecord {
            proto: 6,
            client: Ipv4Addr::new(198, 51, 100, 7).into(),
            client_port: i,
            vip: Ipv4Addr::new(198, 18, 1, 100).into(),
            vip_port: 80,
            change: FlowChange::Update(FlowUpdate {
                real: Ipv4Addr::new(198, 18, 2, 11).into(),
                real_port: 80,
                method: ForwardingMethod::Nat,
                state: FlowState::Established,
                fin_by_client: false,
                trust: Trust::Confirmed,
                proxy: None,
                client_seq: None,
            }),
        }
    }

    #[test]
    fn reasons_are_distinct_and_indexed_in_order() {
        let mut labels: Vec<_> = Refused::ALL.iter().map(|r| r.as_str()).collect();
        for (i, r) in Refused::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), Refused::COUNT);
    }

    #[test]
    fn a_full_queue_drops_and_counts_and_never_grows() {
        let c = SyncCounters::default();
        let mut q = SyncEvents::with_capacity(4);
        let cap = q.capacity();
        assert!(cap >= 4);
        for i in 0..cap as u16 {
            assert!(q.push(record(i), &c));
        }
        assert!(q.is_full());
        for i in 0..1000 {
            assert!(!q.push(record(i), &c));
        }
        assert_eq!(c.events_dropped.get(), 1000);
        assert_eq!(q.capacity(), cap, "never grown");
        let got: Vec<u16> = q.drain().map(|r| r.client_port).collect();
        assert_eq!(got, (0..cap as u16).collect::<Vec<_>>(), "oldest first");
        assert!(q.is_empty());
        assert_eq!(q.capacity(), cap, "the room stays");
        assert!(q.push(record(1), &c));
    }

    #[test]
    fn refusals_count_by_reason() {
        let c = SyncCounters::default();
        c.refuse(Refused::BadMagic);
        c.refuse(Refused::TableFull);
        c.refuse(Refused::TableFull);
        assert_eq!(c.refused(Refused::TableFull), 2);
        assert_eq!(c.refused(Refused::BadMagic), 1);
        assert_eq!(c.refused_total(), 3);
    }
}
