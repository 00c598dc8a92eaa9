//! How much of the exception path (frames for a port's kernel interface,
//! `pipeline::Verdict::ToKernel`) a worker carries: a token bucket per
//! worker, so that a flood to a port's address costs the worker a bounded
//! number of writes to the tap (each a system call) and forwarding goes on.
//! What the kernel runs over it (BGP, BFD, SSH, health checks) is a few
//! packets per second to a few thousand; the budget is well above that.

/// Frames a worker may give the kernel per millisecond, on average
/// (32 000 per second).
pub const KERNEL_RATE_PER_MS: u32 = 32;

/// Frames it may give at once after a quiet spell: the bucket's size, and
/// the most that wait for the tap per port between two polls.
pub const KERNEL_BURST: u32 = 64;

/// A token bucket refilled by the millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelBudget {
    tokens: u32,
    /// The millisecond of the last refill.
    at: u32,
    per_ms: u32,
    burst: u32,
}

impl Default for KernelBudget {
    fn default() -> Self {
        KernelBudget::new(KERNEL_RATE_PER_MS, KERNEL_BURST)
    }
}

impl KernelBudget {
    /// A full bucket of `burst` that refills `per_ms` a millisecond.
    pub fn new(per_ms: u32, burst: u32) -> KernelBudget {
        KernelBudget {
            tokens: burst,
            at: 0,
            per_ms,
            burst,
        }
    }

    /// Whether one more frame may go to the kernel at `now` (ms, a
    /// wrapping clock); takes its token if so.
    #[inline]
    pub fn take(&mut self, now: u32) -> bool {
        let elapsed = now.wrapping_sub(self.at);
        if elapsed > 0 {
            // Above 2^31 ms the clock went backwards (it does not): treat
            // it as no time.
            let elapsed = if elapsed > u32::MAX / 2 { 0 } else { elapsed };
            let refill = elapsed.saturating_mul(self.per_ms);
            self.tokens = self.tokens.saturating_add(refill).min(self.burst);
            self.at = now;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_gets_the_burst_then_the_rate() {
        let mut b = KernelBudget::new(4, 10);
        let taken = (0..100).filter(|_| b.take(0)).count();
        assert_eq!(taken, 10, "a full bucket, then nothing in the same ms");
        let taken = (0..100).filter(|_| b.take(1)).count();
        assert_eq!(taken, 4, "one millisecond's refill");
        let taken = (0..100).filter(|_| b.take(3)).count();
        assert_eq!(taken, 8, "two milliseconds'");
        // A quiet second refills to the bucket's size, no more.
        let taken = (0..100).filter(|_| b.take(1003)).count();
        assert_eq!(taken, 10);
    }

    #[test]
    fn the_clock_wraps() {
        let mut b = KernelBudget::new(1, 2);
        assert!(b.take(u32::MAX));
        assert!(b.take(u32::MAX));
        assert!(!b.take(u32::MAX));
        assert!(b.take(0), "one ms later, across the wrap");
        assert!(!b.take(0));
    }

    #[test]
    fn the_default_is_the_documented_budget() {
        let mut b = KernelBudget::default();
        let taken = (0..1000).filter(|_| b.take(0)).count();
        assert_eq!(taken, KERNEL_BURST as usize);
        let per_second: usize = (1..=1000)
            .map(|ms| (0..1000).filter(|_| b.take(ms)).count())
            .sum();
        assert_eq!(per_second, 32_000);
    }
}
