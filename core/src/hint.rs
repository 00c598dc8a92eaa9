//! Memory hints for the flow table: where its cache lines are (for the
//! burst's prefetch, which the packet buffer's platform issues:
//! [`crate::PacketBuf::prefetch`]) and the request for transparent huge
//! pages for its arrays. Neither changes what the program computes, only
//! how fast memory answers. lb-core has no `unsafe`: the DPDK wrapper
//! (`dataplane/src/dpdk`) supplies both the prefetch and the huge-page
//! advice ([`set_huge_page_advice`]); without them (tests, fuzzing) the
//! table is the same, only slower at scale.

use std::mem::MaybeUninit;
use std::sync::OnceLock;

/// The cache line size [`lines`] steps by.
pub const CACHE_LINE: usize = 64;

/// The start of every cache line `*p` spans from its start: one for a
/// 64-byte IPv4 flow entry, two for a 128-byte IPv6 one (the count is a
/// constant, so a loop over it unrolls away).
#[inline(always)]
pub fn lines<T>(p: &T) -> impl Iterator<Item = *const u8> {
    let base = (p as *const T).cast::<u8>();
    (0..std::mem::size_of::<T>().div_ceil(CACHE_LINE))
        .map(move |i| base.wrapping_add(i * CACHE_LINE))
}

/// The size of a transparent huge page on the targets we run on.
const HUGE_PAGE: usize = 2 << 20;

/// How the platform asks the kernel to back a range with transparent huge
/// pages: `(start, len)`, both 2 MB-aligned, memory not yet written.
pub type HugePageAdvice = fn(*mut u8, usize);

static ADVICE: OnceLock<HugePageAdvice> = OnceLock::new();

/// Installs the process's huge-page advice (the DPDK wrapper's madvise),
/// for the flow tables allocated from then on. The first call wins; false
/// if one was installed already.
pub fn set_huge_page_advice(advice: HugePageAdvice) -> bool {
    ADVICE.set(advice).is_ok()
}

/// Asks, through the installed advice if any, for the 2 MB-aligned part of
/// `mem` to be backed by transparent huge pages when it is first touched
/// (a big random-access table then costs far fewer TLB misses). Call it on
/// memory not yet written, such as a Vec's spare capacity.
pub fn advise_huge_pages<T>(mem: &mut [MaybeUninit<T>]) {
    let Some(advice) = ADVICE.get() else {
        return;
    };
    let addr = mem.as_mut_ptr() as usize;
    let len = std::mem::size_of_val(mem);
    let start = addr.div_ceil(HUGE_PAGE) * HUGE_PAGE;
    let end = (addr + len) / HUGE_PAGE * HUGE_PAGE;
    if end > start {
        let offset = start - addr;
        advice(
            mem.as_mut_ptr().cast::<u8>().wrapping_add(offset),
            end - start,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_cover_a_value_from_its_start() {
        let one = [0u8; 64];
        let two = [0u64; 16];
        let odd = [0u8; 65];
        assert_eq!(lines(&one).count(), 1);
        assert_eq!(
            lines(&two).collect::<Vec<_>>()[1],
            two.as_ptr().cast::<u8>().wrapping_add(64)
        );
        assert_eq!(lines(&odd).count(), 2);
    }

    #[test]
    fn the_advice_gets_the_aligned_inside_of_a_range() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static ADVISED: AtomicUsize = AtomicUsize::new(0);
        fn record(start: *mut u8, len: usize) {
            assert_eq!(start as usize % HUGE_PAGE, 0);
            assert_eq!(len % HUGE_PAGE, 0);
            assert!(len >= HUGE_PAGE);
            ADVISED.fetch_add(len, Ordering::Relaxed);
        }
        assert!(set_huge_page_advice(record));
        assert!(!set_huge_page_advice(record), "the first one stays");
        // 24 MB: at least 20 MB of it 2 MB-aligned, whatever the start.
        let mut v: Vec<u64> = Vec::with_capacity(3 << 20);
        advise_huge_pages(v.spare_capacity_mut());
        assert!(ADVISED.load(Ordering::Relaxed) >= 20 << 20);
        v.resize(3 << 20, 7);
        assert!(v.iter().all(|&x| x == 7));
        let before = ADVISED.load(Ordering::Relaxed);
        let mut small: Vec<u8> = Vec::with_capacity(10);
        advise_huge_pages(small.spare_capacity_mut());
        assert_eq!(
            ADVISED.load(Ordering::Relaxed),
            before,
            "nothing aligned inside"
        );
    }
}
