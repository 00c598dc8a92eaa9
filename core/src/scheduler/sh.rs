//! `sh`: source hashing. A table of [`SH_TABLE_SIZE`] buckets (a prime;
//! larger ones for more than 255 backends, at least 16 buckets each)
//! maps `source_hash % size` to a backend, so a client address
//! always lands on the same backend while the backend set is unchanged (any
//! change may move every client, as in IPVS `sh`; use `mh` for minimal
//! disruption).
//!
//! Filling: backend `i` gets `q_i` buckets, `size * w_i / W`
//! rounded by largest remainder (so `|q_i - size * w_i / W| < 1`),
//! and the buckets are interleaved rather than in runs: backend `i`'s `k`-th
//! bucket sits at virtual time `(k + 1/2) / q_i`, and the table lists all
//! buckets by virtual time. Ties (both in remainders and in virtual times)
//! go to the smaller key, then the smaller index, so the same set of
//! `(key, weight)` gives the same key in every bucket whatever the order of
//! the list.

use std::cmp::Reverse;

use super::Backend;

/// Number of buckets in an `sh` table (prime) of up to
/// [`SH_TABLE_SIZE`] / 16 backends, which is what every `sh` table had.
pub const SH_TABLE_SIZE: usize = 4093;

/// The table sizes (primes), the smallest of at least 16 buckets per
/// backend taken: with more backends than buckets some got none, and were
/// never picked (found in audit: 907 of 5,000). A ladder rather than a size
/// per backend count, so that one more or one less backend of a large pool
/// changes the size (and so moves every client) only at a step. Up to 255
/// backends the size is what it always was: no client moves on upgrade.
const SIZES: [usize; 5] = [SH_TABLE_SIZE, 16_381, 65_521, 262_139, 1_048_573];

/// The table size for `n` backends (at most 65,535: 16 buckets each fit
/// the largest size).
fn table_size(n: usize) -> usize {
    SIZES
        .iter()
        .copied()
        .find(|&s| s >= 16 * n)
        .unwrap_or(SIZES[SIZES.len() - 1])
}

#[derive(Clone, PartialEq, Eq)]
pub struct SourceHash {
    /// Backend index per bucket; empty when there are no backends.
    table: Box<[u16]>,
    n: usize,
}

impl std::fmt::Debug for SourceHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceHash")
            .field("backends", &self.n)
            .field("table_len", &self.table.len())
            .finish()
    }
}

impl SourceHash {
    /// `backends` has at most `MAX_BACKENDS` entries.
    pub(super) fn build(backends: &[Backend]) -> SourceHash {
        SourceHash {
            table: interleaved(backends),
            n: backends.len(),
        }
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Backend index per bucket (empty when there are no backends).
    pub fn table(&self) -> &[u16] {
        &self.table
    }

    #[inline]
    pub(super) fn pick(&self, source_hash: u64) -> Option<usize> {
        if self.table.is_empty() {
            return None;
        }
        let bucket = (source_hash % self.table.len() as u64) as usize;
        Some(usize::from(self.table[bucket]))
    }
}

/// The backends' buckets, each backend's share of the table by weight and
/// spread over it (see the module's comment); empty for no backends. Also
/// what `wrr` steps through for a large pool.
pub(super) fn interleaved(backends: &[Backend]) -> Box<[u16]> {
    let n = backends.len();
    if n == 0 {
        return Box::new([]);
    }
    let buckets_len = table_size(n);
    let size = buckets_len as u64;
    let total: u64 = backends
        .iter()
        .map(|b| u64::from(b.effective_weight()))
        .sum();
    // size * w < 2^21 * 2^32: no overflow.
    let mut quota: Vec<u64> = Vec::with_capacity(n);
    let mut remainder: Vec<u64> = Vec::with_capacity(n);
    for b in backends {
        let share = size * u64::from(b.effective_weight());
        quota.push(share / total);
        remainder.push(share % total);
    }
    // Fewer than `n` buckets are left over; they go to the largest
    // remainders.
    let leftover = (size - quota.iter().sum::<u64>()) as usize;
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_unstable_by_key(|&i| (Reverse(remainder[i]), backends[i].key, i));
    for &i in &order[..leftover] {
        quota[i] += 1;
    }

    // (numerator, denominator, index): bucket at virtual time num / den.
    let mut buckets: Vec<(u64, u64, usize)> = Vec::with_capacity(buckets_len);
    for (i, &q) in quota.iter().enumerate() {
        for k in 0..q {
            buckets.push((2 * k + 1, 2 * q, i));
        }
    }
    // Numerators and denominators are below 2^22: products fit.
    buckets.sort_unstable_by(|a, b| {
        (a.0 * b.1)
            .cmp(&(b.0 * a.1))
            .then_with(|| backends[a.2].key.cmp(&backends[b.2].key))
            .then_with(|| a.2.cmp(&b.2))
    });
    debug_assert_eq!(buckets.len(), buckets_len);
    buckets.iter().map(|&(_, _, i)| i as u16).collect()
}
