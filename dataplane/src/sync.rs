//! The hand-over between the workers and the sync thread (`[sync]`,
//! `lb_core::sync`): how records cross from a worker's core to the control
//! side and back without a lock on either. Both roles have both
//! directions: whichever appliance forwards a flow tells the other.
//!
//! Outbound: each worker and the sender share two `SyncEvents` buffers
//! that circulate through two bounded channels. Between bursts, a worker
//! that has records and gets an empty buffer back swaps it for its full
//! one and passes that on; the sender drains it every interval and sends
//! it back. A worker never waits: without an empty buffer it keeps
//! filling its own (full: dropped and counted). Inbound: one bounded
//! channel of records per worker, which the worker drains between bursts
//! and installs; the receiver drops and counts what a full one has no
//! room for.
//!
//! Bulk passes: the sync thread asks every worker for one by raising
//! [`SyncShared::bulk_request`]; each worker starts a pass over its
//! tables and, once the pass is done and every record of it is handed
//! over, stores the request's number in its [`SyncShared::bulk_done`]
//! slot. The sync thread knows then that the next collection holds the
//! last of them.
#![deny(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam::channel::{bounded, Receiver, Sender};
use lb_core::pipeline::Pipeline;
use lb_core::snapshot::Snapshot;
use lb_core::sync::{FlowRecord, SyncEvents, EVENT_QUEUE_CAPACITY};

/// Records a worker installs per poll at most: the rest wait for the next
/// poll, so a burst of sync input delays forwarding by little.
pub const INSTALL_BUDGET: usize = 256;

/// What the sync thread and the workers share besides the channels.
#[derive(Debug)]
pub struct SyncShared {
    /// The number of the last bulk pass asked for (0: none yet).
    pub bulk_request: AtomicU64,
    /// Per worker: the last bulk pass it finished and handed over.
    pub bulk_done: Vec<AtomicU64>,
    /// Raised when this appliance stood down: every worker hands its own
    /// flows to the peer (`Pipeline::sync_demote_start`).
    pub demote_request: AtomicU64,
}

impl SyncShared {
    /// Asks every worker for a bulk pass; returns its number.
    pub fn request_bulk(&self) -> u64 {
        self.bulk_request.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Asks every worker to make its flows the peer's.
    pub fn request_demote(&self) {
        self.demote_request.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether every worker finished bulk pass `n` (or a later one) and
    /// handed its records over.
    pub fn bulk_finished(&self, n: u64) -> bool {
        self.bulk_done
            .iter()
            .all(|d| d.load(Ordering::Acquire) >= n)
    }
}

/// A worker's end of the hand-over.
pub struct WorkerLink {
    index: usize,
    /// The buffer the worker fills.
    current: SyncEvents,
    full: Sender<SyncEvents>,
    empty: Receiver<SyncEvents>,
    install: Receiver<FlowRecord>,
    shared: Arc<SyncShared>,
    /// The bulk pass this worker is making or made last.
    bulk: u64,
    /// The last demotion asked of this worker.
    demote: u64,
}

/// The sync thread's ends, one per worker, in worker order.
pub struct ControlLinks {
    /// Full buffers in, empty ones back.
    pub outbound: Vec<(Receiver<SyncEvents>, Sender<SyncEvents>)>,
    /// Records for each worker to install.
    pub inbound: Vec<Sender<FlowRecord>>,
    pub shared: Arc<SyncShared>,
}

/// The links for `workers` workers.
pub fn links(workers: usize) -> (Vec<WorkerLink>, ControlLinks) {
    let shared = Arc::new(SyncShared {
        bulk_request: AtomicU64::new(0),
        demote_request: AtomicU64::new(0),
        bulk_done: (0..workers).map(|_| AtomicU64::new(0)).collect(),
    });
    let mut w = Vec::new();
    let mut outbound = Vec::new();
    let mut inbound = Vec::new();
    for index in 0..workers {
        let (full_tx, full_rx) = bounded(2);
        let (empty_tx, empty_rx) = bounded(2);
        let _ = empty_tx.try_send(SyncEvents::with_capacity(EVENT_QUEUE_CAPACITY));
        let (install_tx, install_rx) = bounded(EVENT_QUEUE_CAPACITY);
        w.push(WorkerLink {
            index,
            current: SyncEvents::with_capacity(EVENT_QUEUE_CAPACITY),
            full: full_tx,
            empty: empty_rx,
            install: install_rx,
            shared: Arc::clone(&shared),
            bulk: 0,
            demote: 0,
        });
        outbound.push((full_rx, empty_tx));
        inbound.push(install_tx);
    }
    (
        w,
        ControlLinks {
            outbound,
            inbound,
            shared,
        },
    )
}

impl WorkerLink {
    /// The worker's sync step between bursts: starts a bulk pass when one
    /// was asked for, hands over what its tables collected, installs up
    /// to [`INSTALL_BUDGET`] records from the peer (each counted by
    /// outcome or refusal in the worker's sync counters), and reports a
    /// bulk pass whose records are all handed over.
    pub fn between_bursts(&mut self, pipeline: &mut Pipeline, snap: &Snapshot, now: u32) {
        let demote = self.shared.demote_request.load(Ordering::Acquire);
        if demote != self.demote {
            self.demote = demote;
            pipeline.sync_demote_start();
        }
        let asked = self.shared.bulk_request.load(Ordering::Acquire);
        if asked != self.bulk {
            self.bulk = asked;
            pipeline.sync_bulk_start();
        }
        pipeline.take_sync_events(&mut self.current);
        self.hand_over();
        for rec in self.install.try_iter().take(INSTALL_BUDGET) {
            let _ = pipeline.sync_install(snap, &rec, now);
        }
        let done = &self.shared.bulk_done[self.index];
        if done.load(Ordering::Relaxed) != self.bulk
            && self.current.is_empty()
            && !pipeline.sync_bulk_pending()
        {
            done.store(self.bulk, Ordering::Release);
        }
    }

    /// The buffer hand-over, between bursts: passes the filled buffer on
    /// when an empty one is back. Never waits.
    pub fn hand_over(&mut self) {
        if self.current.is_empty() {
            return;
        }
        if let Ok(mut next) = self.empty.try_recv() {
            std::mem::swap(&mut self.current, &mut next);
            // The channel holds both buffers: never full.
            let _ = self.full.try_send(next);
        }
    }

    /// The buffer the worker fills (tests).
    pub fn current(&mut self) -> &mut SyncEvents {
        &mut self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_core::sync::{FlowChange, SyncCounters};
    use std::net::Ipv4Addr;

    fn record(port: u16) -> FlowRecord {
        FlowRecord {
            proto: 6,
            client: Ipv4Addr::new(198, 51, 100, 7).into(),
            client_port: port,
            vip: Ipv4Addr::new(198, 18, 1, 100).into(),
            vip_port: 80,
            change: FlowChange::Removed,
        }
    }

    #[test]
    fn buffers_circulate_and_the_worker_never_waits() {
        let c = SyncCounters::default();
        let (mut w, ctl) = links(1);
        let (full, empty) = &ctl.outbound[0];
        w[0].current().push(record(1), &c);
        w[0].hand_over();
        let mut got = full.try_recv().expect("handed over");
        assert_eq!(got.drain().count(), 1);
        // The sender holds it: the worker keeps filling its own.
        w[0].current().push(record(2), &c);
        w[0].hand_over();
        w[0].hand_over();
        assert!(full.try_recv().is_err(), "no empty buffer was back");
        empty.try_send(got).unwrap();
        w[0].hand_over();
        let mut got = full.try_recv().expect("handed over");
        let ports: Vec<u16> = got.drain().map(|r| r.client_port).collect();
        assert_eq!(ports, vec![2]);
    }

    #[test]
    fn an_install_queue_is_bounded() {
        let (_w, ctl) = links(2);
        assert_eq!(ctl.inbound.len(), 2);
        let sent = (0..EVENT_QUEUE_CAPACITY + 10)
            .filter(|&i| ctl.inbound[0].try_send(record(i as u16)).is_ok())
            .count();
        assert_eq!(sent, EVENT_QUEUE_CAPACITY);
    }

    #[test]
    fn a_bulk_pass_is_finished_when_every_worker_says_so() {
        let (_w, ctl) = links(3);
        assert!(ctl.shared.bulk_finished(0), "none asked for");
        let n = ctl.shared.request_bulk();
        assert_eq!(n, 1);
        assert!(!ctl.shared.bulk_finished(n));
        for d in &ctl.shared.bulk_done[..2] {
            d.store(n, Ordering::Release);
        }
        assert!(!ctl.shared.bulk_finished(n), "one worker is still at it");
        ctl.shared.bulk_done[2].store(n, Ordering::Release);
        assert!(ctl.shared.bulk_finished(n));
        assert!(!ctl.shared.bulk_finished(ctl.shared.request_bulk()));
    }
}
