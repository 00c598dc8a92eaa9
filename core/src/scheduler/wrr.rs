//! `wrr`: nginx's smooth weighted round robin. Every pick adds each
//! backend's weight to its current weight, chooses the largest current
//! weight (the lowest index on a tie) and subtracts the total weight from
//! it. After `total` picks every current weight is back to 0, so the choices
//! repeat with period `total`, and any `total` consecutive picks choose each
//! backend exactly `weight` times, spread out rather than in runs.
//!
//! That is a pass over every backend per pick. For a pool of more than
//! [`SMOOTH_MAX`] backends (validation allows 65,535) the pass is what a
//! flood of new flows buys per packet (found in audit: 51 µs a new flow at
//! 65,535 reals), so such a pool is given a table instead, built once per
//! snapshot: each backend's share of it by weight, spread out (the `sh`
//! table's, at least 16 slots per backend), which a worker steps through
//! one slot per new flow. The shares are then exact to within a slot of
//! the table, no longer to the flow.

use super::sh::interleaved;
use super::Backend;

/// The most backends `wrr` passes over per pick; a larger pool steps
/// through a table.
pub const SMOOTH_MAX: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightedRoundRobin {
    /// Effective weights (never 0), scaled down if need be (see `build`).
    pub(super) weights: Box<[u32]>,
    /// Sum of `weights`.
    pub(super) total: u64,
    /// For more than [`SMOOTH_MAX`] backends: the backends in the order
    /// picks take them (else empty).
    table: Box<[u16]>,
}

impl WeightedRoundRobin {
    /// The current weights stay within `[-total, n * total]`: after a pick
    /// none is below `-total` (the chosen one was the largest of values
    /// summing to `total`, so positive, and the others only grow), and they
    /// sum to 0. For them to fit in `i64`, weights so large that
    /// `(n + 1) * total` would not are all shifted right by the same few
    /// bits (at least 1 each); with realistic weights nothing changes.
    pub(super) fn build(backends: &[Backend]) -> WeightedRoundRobin {
        let n = backends.len() as u64;
        let mut shift = 0;
        loop {
            let weights: Box<[u32]> = backends
                .iter()
                .map(|b| (b.effective_weight() >> shift).max(1))
                .collect();
            let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
            // Terminates: at shift 32 every weight is 1 and n < 2^16.
            if (n + 1).saturating_mul(total) <= i64::MAX as u64 {
                let table = if backends.len() > SMOOTH_MAX {
                    interleaved(backends)
                } else {
                    Box::default()
                };
                return WeightedRoundRobin {
                    weights,
                    total,
                    table,
                };
            }
            shift += 1;
        }
    }

    pub fn len(&self) -> usize {
        self.weights.len()
    }

    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// Whether picks step through the table (a pool of more than
    /// [`SMOOTH_MAX`] backends).
    pub(super) fn stepped(&self) -> bool {
        !self.table.is_empty()
    }

    pub(super) fn new_current(&self) -> Box<[i64]> {
        if self.stepped() {
            return Box::default();
        }
        vec![0; self.weights.len()].into_boxed_slice()
    }

    /// The next backend: from the table at `cursor` for a large pool, else
    /// by the smooth weights in `current`.
    #[inline]
    pub(super) fn pick(
        &self,
        cursor: &mut usize,
        current: &mut [i64],
        flow_hash: u64,
    ) -> Option<usize> {
        if self.weights.is_empty() {
            return None;
        }
        if self.stepped() {
            let i = self.table[*cursor % self.table.len()];
            *cursor = cursor.wrapping_add(1);
            return Some(usize::from(i));
        }
        if current.len() != self.weights.len() {
            return Some(self.stateless(flow_hash));
        }
        let mut best = 0;
        let mut best_current = i64::MIN;
        for (i, (c, &w)) in current.iter_mut().zip(self.weights.iter()).enumerate() {
            *c += i64::from(w);
            if *c > best_current {
                best = i;
                best_current = *c;
            }
        }
        // `total` <= i64::MAX (see `build`): the cast is exact.
        current[best] -= self.total as i64;
        Some(best)
    }

    /// A weighted choice without state, for a state that is not ours:
    /// backend `i` owns the `weights[i]` values of `flow_hash % total`
    /// after those of the backends before it.
    fn stateless(&self, flow_hash: u64) -> usize {
        let mut r = flow_hash % self.total;
        for (i, &w) in self.weights.iter().enumerate() {
            let w = u64::from(w);
            if r < w {
                return i;
            }
            r -= w;
        }
        // Unreachable: r < total = sum of the weights.
        self.weights.len() - 1
    }
}
