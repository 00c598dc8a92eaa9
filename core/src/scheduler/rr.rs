//! `rr`: the backends in order, one new flow each, per worker.

use super::Backend;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundRobin {
    n: usize,
}

impl RoundRobin {
    pub(super) fn build(backends: &[Backend]) -> RoundRobin {
        RoundRobin { n: backends.len() }
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    #[inline]
    pub(super) fn pick(&self, cursor: &mut usize) -> Option<usize> {
        if self.n == 0 {
            return None;
        }
        let i = *cursor % self.n;
        *cursor = i + 1;
        Some(i)
    }
}
