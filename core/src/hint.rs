//! CPU and kernel hints for the flow table: prefetching a cache line and
//! asking for transparent huge pages. Neither changes what the program
//! computes, only how fast memory answers; this is the one module of the
//! core that may use `unsafe`, and each use says why it is sound.
#![allow(unsafe_code)]

/// Hints the CPU to load the cache line at `p` into every cache level. Any
/// address would do (a prefetch never faults); `p` is a valid reference
/// anyway. A no-op on targets without a stable prefetch intrinsic.
#[inline(always)]
pub fn prefetch<T>(p: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: SSE is part of the x86-64 baseline; a prefetch reads
        // nothing architecturally and cannot fault; `p` is a valid reference.
        unsafe { _mm_prefetch::<_MM_HINT_T0>((p as *const T).cast::<i8>()) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The cache line size [`prefetch_lines`] steps by.
const CACHE_LINE: usize = 64;

/// [`prefetch`] of every cache line `*p` spans from its start (a 64-byte
/// IPv4 flow entry: one, as `prefetch`; a 128-byte IPv6 one: two). The
/// count is a constant, so the loop unrolls away.
#[inline(always)]
pub fn prefetch_lines<T>(p: &T) {
    let base = (p as *const T).cast::<u8>();
    let mut at = 0;
    while at < std::mem::size_of::<T>() {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            // SAFETY: as in `prefetch`; `base + at` is inside `*p`, and a
            // prefetch of any address is sound anyway.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(at).cast::<i8>()) }
        }
        at += CACHE_LINE;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = base;
}

/// The size of a transparent huge page on the targets we run on.
const HUGE_PAGE: usize = 2 << 20;

/// Asks the kernel to back the 2 MB-aligned part of `mem` with transparent
/// huge pages when it is first touched (a big random-access table then
/// costs far fewer TLB misses). Best effort: a kernel without THP, or in
/// `never` mode, ignores it. Call it on memory not yet written, such as a
/// Vec's spare capacity. Linux only; elsewhere it does nothing.
#[cfg(target_os = "linux")]
pub fn advise_huge_pages<T>(mem: &mut [std::mem::MaybeUninit<T>]) {
    let addr = mem.as_mut_ptr() as usize;
    let len = std::mem::size_of_val(mem);
    let start = addr.div_ceil(HUGE_PAGE) * HUGE_PAGE;
    let end = (addr + len) / HUGE_PAGE * HUGE_PAGE;
    if end <= start {
        return;
    }
    // SAFETY: madvise(MADV_HUGEPAGE) only changes how the kernel backs the
    // range, never its contents or validity. [start, end) lies inside `mem`,
    // owned memory we hold a unique reference to, and start is page-aligned.
    // The result is ignored on purpose: the advice is optional.
    let _ = unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
}

/// Transparent huge pages are a Linux feature: nothing to advise here.
#[cfg(not(target_os = "linux"))]
pub fn advise_huge_pages<T>(_mem: &mut [std::mem::MaybeUninit<T>]) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_accept_any_memory() {
        let x = [0u64; 8];
        prefetch(&x[3]);
        let mut v: Vec<u64> = Vec::with_capacity(3 << 20);
        advise_huge_pages(v.spare_capacity_mut());
        v.resize(3 << 20, 7);
        assert!(v.iter().all(|&x| x == 7));
        let mut small: Vec<u8> = Vec::with_capacity(10);
        advise_huge_pages(small.spare_capacity_mut());
    }
}
