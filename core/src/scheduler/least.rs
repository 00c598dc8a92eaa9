//! `lc` and `wlc`: the backend with the fewest active flows on this worker,
//! absolute (`lc`) or per unit of weight (`wlc`).
//!
//! Ties: the scan for the minimum starts at the worker's cursor and wraps
//! around; the first minimum found wins and the cursor moves just past it.
//! Equally loaded backends therefore take new flows in turn (round robin)
//! instead of all going to the lowest index. A backend with no active flows
//! ends the scan early (nothing can beat it).
//!
//! The scan looks at [`SCAN_MAX`] backends at most: a pool larger than
//! that (validation allows 65,535) cost a pass over all of them for every
//! new flow, what a flood buys per packet (found in audit: 54 µs a new
//! flow at 65,535 reals). Its picks are then the least loaded of the next
//! `SCAN_MAX` from the cursor, which moves past each pick, so the window
//! goes round the pool.

use super::Backend;

/// The most backends one pick compares.
pub const SCAN_MAX: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeastConnection {
    n: usize,
}

impl LeastConnection {
    pub(super) fn build(backends: &[Backend]) -> LeastConnection {
        LeastConnection { n: backends.len() }
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    #[inline]
    pub(super) fn pick(&self, cursor: &mut usize, active: impl Fn(usize) -> u32) -> Option<usize> {
        let n = self.n;
        if n == 0 {
            return None;
        }
        let start = *cursor % n;
        let mut best = start;
        let mut best_active = active(start);
        let mut i = start;
        for _ in 1..n.min(SCAN_MAX) {
            if best_active == 0 {
                break;
            }
            i += 1;
            if i == n {
                i = 0;
            }
            let a = active(i);
            if a < best_active {
                best = i;
                best_active = a;
            }
        }
        *cursor = best + 1;
        Some(best)
    }
}

/// Minimises `active_i / weight_i`, compared without division as
/// `active_i * weight_j < active_j * weight_i` in `u64` (exact: both
/// factors are `u32`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightedLeastConnection {
    /// Effective weights (never 0).
    weights: Box<[u32]>,
}

impl WeightedLeastConnection {
    pub(super) fn build(backends: &[Backend]) -> WeightedLeastConnection {
        WeightedLeastConnection {
            weights: backends.iter().map(Backend::effective_weight).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.weights.len()
    }

    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    #[inline]
    pub(super) fn pick(&self, cursor: &mut usize, active: impl Fn(usize) -> u32) -> Option<usize> {
        let n = self.weights.len();
        if n == 0 {
            return None;
        }
        let start = *cursor % n;
        let mut best = start;
        let mut best_active = u64::from(active(start));
        let mut best_weight = u64::from(self.weights[start]);
        let mut i = start;
        for _ in 1..n.min(SCAN_MAX) {
            if best_active == 0 {
                break;
            }
            i += 1;
            if i == n {
                i = 0;
            }
            let a = u64::from(active(i));
            let w = u64::from(self.weights[i]);
            if a * best_weight < best_active * w {
                best = i;
                best_active = a;
                best_weight = w;
            }
        }
        *cursor = best + 1;
        Some(best)
    }
}
