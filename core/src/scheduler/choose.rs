//! Where a real is chosen for a new flow: a worker's mutable scheduler
//! states for the services of its snapshot, and the one call that turns a
//! service's built [`Scheduler`](super::Scheduler) pick into a real.

use std::collections::HashMap;
use std::sync::Arc;

use crate::flow::{source_hash, FlowAddr, FlowKey};
use crate::snapshot::{Snapshot, MAX_REALS};

use super::{PickInput, Scheduler, SchedulerKind, SchedulerState};

/// One worker's scheduler states, one per service of the snapshot it runs,
/// each with its service's id and the scheduler it belongs to.
#[derive(Debug)]
pub struct Schedulers {
    states: Vec<SchedulerState>,
    owners: Vec<(u32, Arc<Scheduler>)>,
    generation: u64,
    /// Where this worker's sequences start ([`Scheduler::new_state_at`]):
    /// its index.
    phase: usize,
}

impl Default for Schedulers {
    fn default() -> Self {
        Schedulers::for_worker(0)
    }
}

impl Schedulers {
    /// The states of worker `index`, whose sequences start `index` picks
    /// in ([`Scheduler::new_state_at`]).
    pub fn for_worker(index: usize) -> Self {
        Schedulers {
            states: Vec::new(),
            owners: Vec::new(),
            generation: u64::MAX,
            phase: index,
        }
    }

    /// The states for a new snapshot's services (allocates: call it
    /// between bursts): a service whose scheduler the snapshot kept (same
    /// kind, same reals and weights: [`Ids`](crate::snapshot::Ids) reuses
    /// it) keeps its state, any other starts afresh. A snapshot already
    /// adopted is left alone. (Found in audit: every publish, a health
    /// change of any real of any service among them, restarted every
    /// service's rr, wrr and lc sequence at its first real, so with
    /// publishes between its new flows a quiet service sent them all
    /// there.)
    pub fn adopt(&mut self, snap: &Snapshot) {
        if self.generation == snap.generation {
            return;
        }
        let mut old: HashMap<u32, (Arc<Scheduler>, SchedulerState)> = self
            .owners
            .drain(..)
            .zip(self.states.drain(..))
            .map(|((id, sched), state)| (id, (sched, state)))
            .collect();
        for s in &snap.services {
            let state = match old.remove(&s.id) {
                Some((sched, state)) if Arc::ptr_eq(&sched, &s.scheduler) => state,
                _ => s.scheduler.new_state_at(self.phase),
            };
            self.states.push(state);
            self.owners.push((s.id, Arc::clone(&s.scheduler)));
        }
        self.generation = snap.generation;
    }

    /// The index into `snap.services[service].reals` of the real a new flow
    /// with `key` goes to, or None when no real is eligible. The schedulers
    /// see the fixed hashes of the key ([`FlowKey::hash`], [`source_hash`]),
    /// never the flow table's seeded one, so `mh` and `sh` choose the same
    /// real on every box and after a restart.
    /// `active[real id]` is this worker's count of flows per real, and
    /// `inactive[real id]` how many of them are not established (for the
    /// least-connection schedulers, which weigh an established flow as
    /// 256 of the others, as IPVS does: found in audit, a host that never
    /// answered its SYN-ACKs, its SYNs all sent to one real by its
    /// persistence template, made that real look the busiest and pushed
    /// every other client's new flows off it).
    ///
    /// A persistent `mh` service picks by the client's address alone
    /// ([`source_hash`]): every flow of a client then goes where its
    /// template sends it on every box and after a restart, and one forged
    /// packet no longer chooses a client's real for it by its port (found
    /// in audit: by their own ports, a client's later connections picked
    /// up elsewhere went to another real than their template's).
    #[inline]
    pub fn choose<A: FlowAddr>(
        &mut self,
        snap: &Snapshot,
        service: usize,
        key: &FlowKey<A>,
        active: &[u32],
        inactive: &[u32],
    ) -> Option<usize> {
        let svc = snap.services.get(service)?;
        let state = self.states.get_mut(service)?;
        let source_hash = source_hash(key.client);
        let input = PickInput {
            flow_hash: if svc.persistence_ms != 0 && svc.kind == SchedulerKind::Maglev {
                source_hash
            } else {
                key.hash()
            },
            source_hash,
        };
        let (eligible, reals) = (&svc.eligible, &svc.reals);
        let i = svc.scheduler.pick(state, &input, |b| {
            let id = reals[eligible[b]].id as usize % MAX_REALS;
            let all = active.get(id).copied().unwrap_or(0);
            let opening = inactive.get(id).copied().unwrap_or(0).min(all);
            (all - opening).saturating_mul(256).saturating_add(opening)
        })?;
        eligible.get(i).copied()
    }
}
