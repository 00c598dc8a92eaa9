//! The only caller of `dpdk-sys`: safe, owning wrappers over the EAL,
//! mempools, mbufs, ports and lcores.
//!
//! Soundness rests on three choices, each stated where it is made: EAL
//! memory and mempools live until the process exits (so an `Mbuf` can never
//! outlive its pool); every rx or tx queue is a non-`Clone` token owned by
//! exactly one worker (so no queue is polled from two threads); and a port
//! is stopped and closed only when its last queue token is gone.
#![allow(unsafe_code)]

mod eal;
mod error;
mod lcore;
mod mbuf;
mod mempool;
#[cfg(test)]
mod ownership_tests;
mod port;
mod ring;
#[cfg(test)]
pub(crate) mod test_eal;

pub use eal::{Eal, EalInfo};
pub use error::DpdkError;
pub use lcore::{LaunchedLcore, LcoreId, JOB_PANICKED};
pub use mbuf::{Drain, Mbuf, MbufBurst, MAX_BURST};
pub use mempool::{cache_size as mempool_cache_size, Mempool};
pub use port::{Port, PortId, PortSetup, PortStats, QueueId, RxQueue, TxQueue};
pub use ring::{spsc_ring, RingConsumer, RingProducer};

/// Marks every file descriptor from 3 up close-on-exec. DPDK opens its own
/// (its memory file, event and timer descriptors, the EAL's pipes and
/// sockets, drivers' sockets) without `O_CLOEXEC`, so a program the
/// appliance starts (a health check script, `ip`) inherited them: all of
/// DPDK's memory, and anything it keeps running held them past the
/// appliance's exit (found in review). Called before such a program is
/// started. Descriptors opened by another thread in between are not
/// covered; the standard library opens its own close-on-exec anyway.
pub fn close_on_exec_from_3() {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC closes nothing: it only
    // sets the close-on-exec flag on open descriptors in the range (Linux
    // 5.11 and later; an error on older kernels).
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r == 0 {
        return;
    }
    // Older kernels: one at a time, from the descriptors listed in /proc.
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in dir.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if fd >= 3 {
            // SAFETY: F_SETFD on a descriptor number only sets its flags
            // (FD_CLOEXEC is the only one); a number closed meanwhile (the
            // listing's own) gives EBADF and nothing else.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
}

/// The CPU's time-stamp counter: cheap, monotonic per core, in `tsc_hz` ticks.
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: reads the TSC register; no memory is touched and no EAL state
    // is needed.
    unsafe { dpdk_sys::lb_rte_rdtsc() }
}

/// Hints the CPU to load the cache line at `p`. Any address is allowed: a
/// prefetch never faults. Inlined on x86-64 (it is on the per-packet path);
/// elsewhere DPDK's `rte_prefetch0` through the shim.
#[inline(always)]
pub fn prefetch<T>(p: &T) {
    prefetch_line((p as *const T).cast());
}

/// [`prefetch`] of a raw address: the flow-table lines lb-core names for a
/// burst ([`lb_core::PacketBuf::prefetch`]). Any address, even a dangling
/// one, is allowed: nothing is read.
#[inline(always)]
pub fn prefetch_line(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: SSE is part of the x86-64 baseline; a prefetch reads
        // nothing architecturally and cannot fault, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>()) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: a prefetch instruction reads nothing architecturally and cannot
    // fault, whatever the address.
    unsafe {
        dpdk_sys::lb_rte_prefetch0(p.cast())
    }
}

/// Asks the kernel to back `[start, start + len)` with transparent huge
/// pages when it is first touched (lb-core's flow tables, read at random:
/// far fewer TLB misses). Best effort: a kernel without THP, or in `never`
/// mode, ignores it, and so does this for a range that is not mapped.
/// Installed into lb-core with `lb_core::hint::set_huge_page_advice`.
pub fn advise_huge_pages(start: *mut u8, len: usize) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: madvise(MADV_HUGEPAGE) only changes how the kernel may
        // back a range, never its contents or validity, so any pointer and
        // length are sound: a start that is not page-aligned fails with
        // EINVAL, and of a range that is partly unmapped only the mapped
        // part takes the advice (ENOMEM). The result is ignored on purpose:
        // the advice is optional.
        let _ = unsafe { libc::madvise(start.cast::<libc::c_void>(), len, libc::MADV_HUGEPAGE) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (start, len);
}

/// The DPDK version string, such as `DPDK 22.11.11`.
pub fn version() -> String {
    // SAFETY: rte_version returns a pointer to a static NUL-terminated string
    // and needs no EAL initialisation.
    let s = unsafe { std::ffi::CStr::from_ptr(dpdk_sys::lb_rte_version()) };
    s.to_string_lossy().into_owned()
}
