//! Where a real is chosen for a new flow: a worker's mutable scheduler
//! states for the services of its snapshot, and the one call that turns a
//! service's built [`Scheduler`](super::Scheduler) pick into a real.

use crate::flow::{source_hash, FlowAddr, FlowKey};
use crate::snapshot::{Snapshot, MAX_REALS};

use super::{PickInput, SchedulerState};

/// One worker's scheduler states, one per service of the snapshot it runs.
#[derive(Debug)]
pub struct Schedulers {
    states: Vec<SchedulerState>,
    generation: u64,
}

impl Default for Schedulers {
    fn default() -> Self {
        Schedulers {
            states: Vec::new(),
            generation: u64::MAX,
        }
    }
}

impl Schedulers {
    /// Fresh states for a new snapshot's services (allocates: call it
    /// between bursts). A snapshot already adopted is left alone.
    pub fn adopt(&mut self, snap: &Snapshot) {
        if self.generation == snap.generation {
            return;
        }
        self.states = snap
            .services
            .iter()
            .map(|s| s.scheduler.new_state())
            .collect();
        self.generation = snap.generation;
    }

    /// The index into `snap.services[service].reals` of the real a new flow
    /// with `key` goes to, or None when no real is eligible. The schedulers
    /// see the fixed hashes of the key ([`FlowKey::hash`], [`source_hash`]),
    /// never the flow table's seeded one, so `mh` and `sh` choose the same
    /// real on every box and after a restart.
    /// `active[real id]` is this worker's count of flows per real (for the
    /// least-connection schedulers).
    #[inline]
    pub fn choose<A: FlowAddr>(
        &mut self,
        snap: &Snapshot,
        service: usize,
        key: &FlowKey<A>,
        active: &[u32],
    ) -> Option<usize> {
        let svc = snap.services.get(service)?;
        let state = self.states.get_mut(service)?;
        let input = PickInput {
            flow_hash: key.hash(),
            source_hash: source_hash(key.client),
        };
        let (eligible, reals) = (&svc.eligible, &svc.reals);
        let i = svc.scheduler.pick(state, &input, |b| {
            active
                .get(reals[eligible[b]].id as usize % MAX_REALS)
                .copied()
                .unwrap_or(0)
        })?;
        eligible.get(i).copied()
    }
}
