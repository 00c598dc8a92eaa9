//! Real-server schedulers. A [`Scheduler`] is pure code, built between bursts
//! from the eligible backends and their weights, then immutable and shared by
//! all workers; `pick` (per new flow) never allocates, locks or logs.

mod choose;
mod hash;
mod least;
mod maglev;
mod rr;
mod sh;
mod wrr;

#[cfg(test)]
mod tests;

use lb_config::SchedulerKind;

pub use choose::Schedulers;
pub use least::{LeastConnection, WeightedLeastConnection};
pub use maglev::{Maglev, MAGLEV_TABLE_SIZE};
pub use rr::RoundRobin;
pub use sh::{SourceHash, SH_TABLE_SIZE};
pub use wrr::WeightedRoundRobin;

/// The most backends a scheduler takes (table entries are `u16` indices).
/// [`Scheduler::build`] ignores every backend past the first
/// `MAX_BACKENDS`, for every kind: they are never picked and do not count
/// in [`Scheduler::len`].
pub const MAX_BACKENDS: usize = u16::MAX as usize;

// Validation refuses a service with more reals than a scheduler takes.
const _: () = assert!(lb_config::MAX_SERVICE_REALS <= MAX_BACKENDS);

/// One eligible real as the scheduler sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Backend {
    /// A stable identity (the caller hashes the real's address and port);
    /// `sh` and `mh` use it to place the backend, so that the same set of
    /// reals gives the same choices in every process and on every machine.
    pub key: u64,
    /// Relative share of new flows. The caller never passes 0; should it,
    /// the backend counts as weight 1.
    pub weight: u32,
}

impl Backend {
    /// The weight as the schedulers use it: never 0.
    fn effective_weight(&self) -> u32 {
        self.weight.max(1)
    }
}

/// What the caller knows about the new flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PickInput {
    /// Hash of the 5-tuple.
    pub flow_hash: u64,
    /// Hash of the client address only.
    pub source_hash: u64,
}

/// The most steps (picks times reals) a wrr state is advanced by to start
/// a worker's sequence where it should ([`Scheduler::new_state_at`]), per
/// service: a worker adopting 1,000 new wrr services spends at most about
/// a million steps (a few milliseconds) on it.
pub const PHASE_STEPS: usize = 1 << 10;

/// A built scheduler: immutable, `Send + Sync`, shared by all workers
/// through an `Arc`'d snapshot. Every variant is built by
/// [`Scheduler::build`] only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheduler {
    RoundRobin(RoundRobin),
    WeightedRoundRobin(WeightedRoundRobin),
    LeastConnection(LeastConnection),
    WeightedLeastConnection(WeightedLeastConnection),
    SourceHash(SourceHash),
    Maglev(Maglev),
}

/// Per-worker mutable state of a scheduler (see [`Scheduler::new_state`]).
/// A state that does not belong to the scheduler it is given to is never
/// an error: `pick` then still returns a valid index (see `pick`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchedulerState {
    /// rr: the next index to try; lc/wlc: where the scan for the minimum
    /// starts. Taken modulo the number of backends, so any value is valid.
    cursor: usize,
    /// wrr: the current weight of each backend (nginx's smooth weighted
    /// round robin). Empty for the other kinds.
    current: Box<[i64]>,
}

impl Scheduler {
    /// Builds the scheduler `kind` over `backends`; the indices `pick`
    /// returns are indices into `backends`. Never panics; an empty list
    /// gives a scheduler whose `pick` always returns `None`.
    pub fn build(kind: SchedulerKind, backends: &[Backend]) -> Scheduler {
        let backends = &backends[..backends.len().min(MAX_BACKENDS)];
        match kind {
            SchedulerKind::RoundRobin => Scheduler::RoundRobin(RoundRobin::build(backends)),
            SchedulerKind::WeightedRoundRobin => {
                Scheduler::WeightedRoundRobin(WeightedRoundRobin::build(backends))
            }
            SchedulerKind::LeastConnection => {
                Scheduler::LeastConnection(LeastConnection::build(backends))
            }
            SchedulerKind::WeightedLeastConnection => {
                Scheduler::WeightedLeastConnection(WeightedLeastConnection::build(backends))
            }
            SchedulerKind::SourceHash => Scheduler::SourceHash(SourceHash::build(backends)),
            SchedulerKind::Maglev => Scheduler::Maglev(Maglev::build(backends)),
        }
    }

    pub fn kind(&self) -> SchedulerKind {
        match self {
            Scheduler::RoundRobin(_) => SchedulerKind::RoundRobin,
            Scheduler::WeightedRoundRobin(_) => SchedulerKind::WeightedRoundRobin,
            Scheduler::LeastConnection(_) => SchedulerKind::LeastConnection,
            Scheduler::WeightedLeastConnection(_) => SchedulerKind::WeightedLeastConnection,
            Scheduler::SourceHash(_) => SchedulerKind::SourceHash,
            Scheduler::Maglev(_) => SchedulerKind::Maglev,
        }
    }

    /// Number of backends (at most [`MAX_BACKENDS`]).
    pub fn len(&self) -> usize {
        match self {
            Scheduler::RoundRobin(s) => s.len(),
            Scheduler::WeightedRoundRobin(s) => s.len(),
            Scheduler::LeastConnection(s) => s.len(),
            Scheduler::WeightedLeastConnection(s) => s.len(),
            Scheduler::SourceHash(s) => s.len(),
            Scheduler::Maglev(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A fresh per-worker mutable state for this scheduler (rr cursor, wrr
    /// current weights). Allocates; call it between bursts.
    pub fn new_state(&self) -> SchedulerState {
        self.new_state_at(0)
    }

    /// [`Self::new_state`] for worker `phase` of several: its sequence
    /// starts `phase` picks into worker 0's (rr, wrr; lc and wlc start their
    /// scan for the minimum there), so that the workers do not all send
    /// their first new flows to the same first real (found in audit: every
    /// worker's rr, wrr and lc began at the first real, so the first flow
    /// of each worker, after any rebuild, went there). A wrr state is
    /// advanced pick by pick, each as long as the list of reals, at most
    /// [`PHASE_STEPS`] steps per service: a worker adopts a snapshot
    /// between bursts, and large services must not stall it (past that, a
    /// worker starts where an earlier one did; with so many reals the
    /// difference is one flow among many).
    pub fn new_state_at(&self, phase: usize) -> SchedulerState {
        match self {
            // A large pool's table: `phase` slots in, at no cost.
            Scheduler::WeightedRoundRobin(s) if s.stepped() => SchedulerState {
                cursor: phase,
                current: Box::default(),
            },
            Scheduler::WeightedRoundRobin(s) => {
                let mut current = s.new_current();
                let mut cursor = 0;
                let picks = phase.min(PHASE_STEPS / s.len().max(1));
                for _ in 0..picks {
                    s.pick(&mut cursor, &mut current, 0);
                }
                SchedulerState { cursor: 0, current }
            }
            _ => SchedulerState {
                cursor: phase,
                current: Box::default(),
            },
        }
    }

    /// Index into `backends` (as given to `build`) for a new flow, or `None`
    /// when there are no backends. `active(i)` is the number of active flows
    /// this worker has on backend `i` (used by lc/wlc only).
    ///
    /// Hot path: no allocation, no locking, no logging. A `state` from
    /// another scheduler does not panic: rr/lc/wlc take its cursor modulo
    /// the length, and wrr, whose current weights then do not fit, falls
    /// back to a stateless weighted choice by `flow_hash`.
    #[inline]
    pub fn pick(
        &self,
        state: &mut SchedulerState,
        input: &PickInput,
        active: impl Fn(usize) -> u32,
    ) -> Option<usize> {
        match self {
            Scheduler::RoundRobin(s) => s.pick(&mut state.cursor),
            Scheduler::WeightedRoundRobin(s) => {
                s.pick(&mut state.cursor, &mut state.current, input.flow_hash)
            }
            Scheduler::LeastConnection(s) => s.pick(&mut state.cursor, active),
            Scheduler::WeightedLeastConnection(s) => s.pick(&mut state.cursor, active),
            Scheduler::SourceHash(s) => s.pick(input.source_hash),
            Scheduler::Maglev(s) => s.pick(input.flow_hash),
        }
    }
}
