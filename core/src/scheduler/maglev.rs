//! `mh`: weighted Maglev hashing (Eisenbud et al., "Maglev: A Fast and
//! Reliable Software Network Load Balancer", NSDI 2016). A lookup table of
//! [`MAGLEV_TABLE_SIZE`] entries (a prime, `M`) maps `flow_hash % M` to a
//! backend; when a backend leaves or joins, few flows other than its own
//! change backend.
//!
//! Permutation: backend `i` prefers the entries `(offset + j * skip) % M`
//! for `j = 0, 1, ...`, with `offset = h1(key) % M` and
//! `skip = h2(key) % (M - 1) + 1`; since `M` is prime this visits every
//! entry. `h1`/`h2` are two different fixed 64-bit mixers, so the table
//! depends on nothing but the backends.
//!
//! Population, in rounds `r = 1, 2, ...` until the table is full: in each
//! round every backend, in the order of (key, index), adds its weight to its
//! credit and, if its credit is now at least `max_weight` (the largest
//! weight), claims one entry (the next empty entry of its permutation) and
//! subtracts `max_weight`. So the heaviest backends claim an entry every
//! round and backend `i` claims about `weight_i / max_weight` per round:
//! shares follow the weights. With equal weights this is exactly the
//! paper's algorithm, and the entry counts differ by at most one.
//!
//! Backend `i` makes its `k`-th claim in round `ceil(k * max_weight / w_i)`,
//! so the build visits only the claims, through a heap ordered by
//! (round, key, index): `O(M log n)` whatever the weights, rather than a
//! pass over all `n` backends per round. Ordering by key inside a round makes
//! the table a function of the set of `(key, weight)`, not of the list's
//! order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::hash::{h1, h2};
use super::Backend;

/// Number of entries in a Maglev table (prime).
pub const MAGLEV_TABLE_SIZE: usize = 65537;

/// An entry not yet claimed (no backend index reaches it: at most
/// `MAX_BACKENDS` = 65535 backends, indices up to 65534).
const EMPTY: u16 = u16::MAX;

#[derive(Clone, PartialEq, Eq)]
pub struct Maglev {
    /// Backend index per entry; empty when there are no backends.
    table: Box<[u16]>,
    n: usize,
}

impl std::fmt::Debug for Maglev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Maglev")
            .field("backends", &self.n)
            .field("table_len", &self.table.len())
            .finish()
    }
}

/// First entry and stride of `key`'s permutation.
pub(super) fn permutation(key: u64) -> (u64, u64) {
    let m = MAGLEV_TABLE_SIZE as u64;
    (h1(key) % m, h2(key) % (m - 1) + 1)
}

/// Backend `i` claims the next empty entry of its permutation, which it
/// goes on from at `position` with stride `skip`. The permutation visits
/// every entry and the table is not full: an empty entry comes within M
/// steps.
#[inline]
fn claim(table: &mut [u16], position: &mut u64, skip: u64, i: usize) {
    let m = MAGLEV_TABLE_SIZE as u64;
    loop {
        let entry = *position as usize;
        // position and skip are below M, so one subtraction wraps it (a
        // division per probe was most of a build's time).
        let next = *position + skip;
        *position = if next >= m { next - m } else { next };
        if table[entry] == EMPTY {
            table[entry] = i as u16;
            return;
        }
    }
}

impl Maglev {
    /// `backends` has at most `MAX_BACKENDS` entries.
    pub(super) fn build(backends: &[Backend]) -> Maglev {
        let n = backends.len();
        if n == 0 {
            return Maglev {
                table: Box::new([]),
                n,
            };
        }
        let first = backends[0].effective_weight();
        if backends.iter().all(|b| b.effective_weight() == first) {
            return Self::build_equal(backends);
        }
        Self::build_weighted(backends)
    }

    /// [`Self::build`] when every weight is the same: each round is every
    /// backend once in (key, index) order, which is the order the heap of
    /// [`Self::build_weighted`] gives then, without a heap or a division
    /// per claim (the paper's algorithm; a reload rebuilding many services
    /// spends its time here).
    fn build_equal(backends: &[Backend]) -> Maglev {
        let n = backends.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_unstable_by_key(|&i| (backends[i].key, i));
        let (mut position, skip): (Vec<u64>, Vec<u64>) =
            backends.iter().map(|b| permutation(b.key)).unzip();
        let mut table = vec![EMPTY; MAGLEV_TABLE_SIZE].into_boxed_slice();
        let mut filled = 0;
        'rounds: loop {
            for &i in &order {
                claim(&mut table, &mut position[i], skip[i], i);
                filled += 1;
                if filled == MAGLEV_TABLE_SIZE {
                    break 'rounds;
                }
            }
        }
        Maglev { table, n }
    }

    /// [`Self::build`] for weights that differ: claims in (round, key,
    /// index) order through a heap.
    fn build_weighted(backends: &[Backend]) -> Maglev {
        let n = backends.len();
        let max_weight = backends
            .iter()
            .map(|b| u64::from(b.effective_weight()))
            .max()
            .unwrap_or(1);
        // Round of the `k`-th claim (k >= 1) of a backend of weight `w`;
        // k <= M < 2^17 and max_weight < 2^32: no overflow.
        let round = |k: u64, w: u64| (k * max_weight).div_ceil(w);

        // Per backend: the next entry of its permutation and its stride.
        let mut position: Vec<u64> = Vec::with_capacity(n);
        let mut skip: Vec<u64> = Vec::with_capacity(n);
        let mut claims: Vec<u64> = vec![0; n];
        let mut heap = BinaryHeap::with_capacity(n);
        for (i, b) in backends.iter().enumerate() {
            let (offset, stride) = permutation(b.key);
            position.push(offset);
            skip.push(stride);
            let w = u64::from(b.effective_weight());
            heap.push(Reverse((round(1, w), b.key, i)));
        }

        let mut table = vec![EMPTY; MAGLEV_TABLE_SIZE].into_boxed_slice();
        let mut filled = 0;
        while filled < MAGLEV_TABLE_SIZE {
            let Some(Reverse((_, key, i))) = heap.pop() else {
                break; // unreachable: every backend is always back in the heap
            };
            claim(&mut table, &mut position[i], skip[i], i);
            filled += 1;
            claims[i] += 1;
            let w = u64::from(backends[i].effective_weight());
            heap.push(Reverse((round(claims[i] + 1, w), key, i)));
        }
        Maglev { table, n }
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Backend index per entry (empty when there are no backends).
    pub fn table(&self) -> &[u16] {
        &self.table
    }

    #[inline]
    pub(super) fn pick(&self, flow_hash: u64) -> Option<usize> {
        if self.table.is_empty() {
            return None;
        }
        let entry = (flow_hash % MAGLEV_TABLE_SIZE as u64) as usize;
        Some(usize::from(self.table[entry]))
    }
}
