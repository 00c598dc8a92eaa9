//! The hand-over between the workers and the sync thread (`[sync]`,
//! `lb_core::sync`): how records cross from a worker's core to the control
//! side and back without a lock on either.
//!
//! Primary: each worker and the sender share two `SyncEvents` buffers
//! that circulate through two bounded channels. Between bursts, a worker
//! that has records and gets an empty buffer back swaps it for its full
//! one and passes that on; the sender drains it every interval and sends
//! it back. A worker never waits: without an empty buffer it keeps
//! filling its own (full: dropped and counted). Backup: one bounded
//! channel of records per worker, which the worker drains between bursts
//! and installs; the receiver drops and counts what a full one has no
//! room for.
#![deny(unsafe_code)]

use crossbeam::channel::{bounded, Receiver, Sender};
use lb_config::{SyncConfig, SyncRole};
use lb_core::pipeline::Pipeline;
use lb_core::snapshot::Snapshot;
use lb_core::sync::{FlowRecord, SyncEvents, EVENT_QUEUE_CAPACITY};

/// Records a backup worker installs per poll at most: the rest wait for
/// the next poll, so a burst of sync input delays forwarding by little.
pub const INSTALL_BUDGET: usize = 256;

/// A worker's end of the hand-over.
pub enum WorkerLink {
    Primary {
        /// The buffer the worker fills.
        current: SyncEvents,
        full: Sender<SyncEvents>,
        empty: Receiver<SyncEvents>,
    },
    Backup {
        install: Receiver<FlowRecord>,
    },
}

/// The sync thread's ends, one per worker, in worker order.
pub enum ControlLinks {
    Primary(Vec<(Receiver<SyncEvents>, Sender<SyncEvents>)>),
    Backup(Vec<Sender<FlowRecord>>),
}

/// The links for `workers` workers with `sync`'s role.
pub fn links(sync: &SyncConfig, workers: usize) -> (Vec<WorkerLink>, ControlLinks) {
    match sync.role {
        SyncRole::Primary => {
            let mut w = Vec::new();
            let mut c = Vec::new();
            for _ in 0..workers {
                let (full_tx, full_rx) = bounded(2);
                let (empty_tx, empty_rx) = bounded(2);
                let _ = empty_tx.try_send(SyncEvents::with_capacity(EVENT_QUEUE_CAPACITY));
                w.push(WorkerLink::Primary {
                    current: SyncEvents::with_capacity(EVENT_QUEUE_CAPACITY),
                    full: full_tx,
                    empty: empty_rx,
                });
                c.push((full_rx, empty_tx));
            }
            (w, ControlLinks::Primary(c))
        }
        SyncRole::Backup => {
            let (w, c) = (0..workers)
                .map(|_| {
                    let (tx, rx) = bounded(EVENT_QUEUE_CAPACITY);
                    (WorkerLink::Backup { install: rx }, tx)
                })
                .unzip();
            (w, ControlLinks::Backup(c))
        }
    }
}

impl WorkerLink {
    /// The worker's sync step between bursts: a primary takes what its
    /// tables collected and hands it over; a backup installs up to
    /// [`INSTALL_BUDGET`] records (each counted by outcome or refusal in
    /// the worker's sync counters).
    pub fn between_bursts(&mut self, pipeline: &mut Pipeline, snap: &Snapshot, now: u32) {
        match self {
            WorkerLink::Primary { current, .. } => {
                pipeline.take_sync_events(current);
                self.hand_over();
            }
            WorkerLink::Backup { install } => {
                for rec in install.try_iter().take(INSTALL_BUDGET) {
                    let _ = pipeline.sync_install(snap, &rec, now);
                }
            }
        }
    }

    /// A primary's buffer hand-over, between bursts: passes the filled
    /// buffer on when an empty one is back. Never waits.
    pub fn hand_over(&mut self) {
        if let WorkerLink::Primary {
            current,
            full,
            empty,
        } = self
        {
            if current.is_empty() {
                return;
            }
            if let Ok(mut next) = empty.try_recv() {
                std::mem::swap(current, &mut next);
                // The channel holds both buffers: never full.
                let _ = full.try_send(next);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_core::sync::{FlowChange, SyncCounters};
    use std::net::Ipv4Addr;
    use std::time::Duration;

    fn config(role: SyncRole) -> SyncConfig {
        SyncConfig {
            role,
            peer: "198.18.0.2:8848".parse().unwrap(),
            listen: "0.0.0.0:8848".parse().unwrap(),
            interval: Duration::from_millis(200),
        }
    }

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
        let (mut w, ctl) = links(&config(SyncRole::Primary), 1);
        let ControlLinks::Primary(ctl) = ctl else {
            panic!("primary links")
        };
        let (full, empty) = &ctl[0];
        let WorkerLink::Primary { current, .. } = &mut w[0] else {
            panic!()
        };
        current.push(record(1), &c);
        w[0].hand_over();
        let mut got = full.try_recv().expect("handed over");
        assert_eq!(got.drain().count(), 1);
        // The sender holds it: the worker keeps filling its own.
        let WorkerLink::Primary { current, .. } = &mut w[0] else {
            panic!()
        };
        current.push(record(2), &c);
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
    fn a_backup_queue_is_bounded() {
        let (_w, ctl) = links(&config(SyncRole::Backup), 2);
        let ControlLinks::Backup(tx) = ctl else {
            panic!("backup links")
        };
        assert_eq!(tx.len(), 2);
        let sent = (0..EVENT_QUEUE_CAPACITY + 10)
            .filter(|&i| tx[0].try_send(record(i as u16)).is_ok())
            .count();
        assert_eq!(sent, EVENT_QUEUE_CAPACITY);
    }
}
