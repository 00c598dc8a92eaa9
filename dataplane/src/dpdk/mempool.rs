use std::ffi::CString;
use std::ptr::NonNull;

use super::eal::Eal;
use super::error::DpdkError;
use super::mbuf::Mbuf;

/// A packet-buffer pool (`rte_pktmbuf_pool_create_by_ops`, on the
/// `ring_mp_mc` ring). Pools are never freed:
/// an mbuf keeps a raw pointer to its pool, so the pool must outlive every
/// mbuf, and the simplest proof of that is to keep it until the process ends.
#[derive(Debug, Clone, Copy)]
pub struct Mempool(NonNull<dpdk_sys::rte_mempool>);

// SAFETY: `create` refuses any mempool ops but thread-safe ones
// (`thread_safe_ops`: the platform's best, never a single-producer or
// single-consumer ring), so get and put are safe from several threads at
// once (per-lcore caches, none for a thread that is not an lcore, over
// thread-safe ops); the pointer is never freed.
unsafe impl Send for Mempool {}
// SAFETY: as above; all shared-reference operations are thread-safe in DPDK.
unsafe impl Sync for Mempool {}

/// The per-lcore cache of a pool of `count` mbufs: it makes get and put
/// cheap; DPDK wants it at most count / 1.5 and at most
/// RTE_MEMPOOL_CACHE_MAX_SIZE (512). Each lcore's cache can hold up to 1.5
/// times this many mbufs that no other lcore can take.
pub fn cache_size(count: u32) -> u32 {
    (count / 2).min(256)
}

impl Mempool {
    /// Creates a pool of `count` mbufs with `data_room` bytes each (headroom
    /// included) on the EAL's socket.
    pub fn create(eal: &Eal, name: &str, count: u32, data_room: u16) -> Result<Mempool, DpdkError> {
        let cname = CString::new(name).map_err(|_| DpdkError {
            op: format!("mempool name {name:?}"),
            errno: 22,
            hint: "no NUL bytes in names",
        })?;
        let cache = cache_size(count);
        // The platform's choice of pool (a NIC's hardware pool where it has
        // one), but only one that any number of threads may fill and empty
        // at once: the workers and the control thread all take and return
        // mbufs. `--mbuf-pool-ops-name` in `[dpdk] eal_args` could make it a
        // single-producer or single-consumer ring, which concurrent use
        // corrupts: one mbuf handed out twice (found in review).
        // SAFETY: the EAL is initialised; the function returns NULL or a
        // NUL-terminated name that the EAL keeps for the process's life.
        let best = unsafe { dpdk_sys::rte_mbuf_best_mempool_ops() };
        let ops = if best.is_null() {
            c"ring_mp_mc"
        } else {
            // SAFETY: non-NULL, NUL-terminated and never freed (above).
            unsafe { std::ffi::CStr::from_ptr(best) }
        };
        thread_safe_ops(&ops.to_string_lossy())?;
        // SAFETY: the EAL is initialised (we hold &Eal), the name and the
        // ops name are valid C strings that DPDK copies.
        let p = unsafe {
            dpdk_sys::rte_pktmbuf_pool_create_by_ops(
                cname.as_ptr(),
                count,
                cache,
                0,
                data_room,
                eal.info().socket_id as i32,
                ops.as_ptr(),
            )
        };
        NonNull::new(p).map(Mempool).ok_or_else(|| {
            DpdkError::from_errno(format!("creating mempool {name} of {count} mbufs")).with_hint(
                "lower [dpdk] mbufs, or give the EAL more memory (-m, or more hugepages)",
            )
        })
    }

    /// The name of the pool's ops (`rte_mbuf_best_mempool_ops`).
    pub fn ops_name() -> String {
        // SAFETY: as in `create`.
        let best = unsafe { dpdk_sys::rte_mbuf_best_mempool_ops() };
        if best.is_null() {
            return "ring_mp_mc".into();
        }
        // SAFETY: as in `create`.
        unsafe { std::ffi::CStr::from_ptr(best) }
            .to_string_lossy()
            .into_owned()
    }

    /// Takes one mbuf, empty, with the default headroom.
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool is valid for the process's life; alloc is
        // thread-safe and returns NULL when the pool is empty.
        let m = unsafe { dpdk_sys::lb_rte_pktmbuf_alloc(self.0.as_ptr()) };
        // SAFETY: a fresh mbuf from the pool is owned by nobody else.
        NonNull::new(m).map(|m| unsafe { Mbuf::from_raw(m) })
    }

    /// Mbufs currently in the pool (not in use).
    pub fn available(&self) -> u32 {
        // SAFETY: a read-only counter query on a valid pool.
        unsafe { dpdk_sys::rte_mempool_avail_count(self.0.as_ptr()) }
    }

    /// Mbufs currently out of the pool.
    pub fn in_use(&self) -> u32 {
        // SAFETY: a read-only counter query on a valid pool.
        unsafe { dpdk_sys::rte_mempool_in_use_count(self.0.as_ptr()) }
    }

    pub(crate) fn as_ptr(&self) -> *mut dpdk_sys::rte_mempool {
        self.0.as_ptr()
    }
}

/// Refuses mempool ops that only one thread may fill or only one may empty
/// (DPDK's single-producer or single-consumer rings): the pool is shared.
fn thread_safe_ops(name: &str) -> Result<(), DpdkError> {
    if matches!(name, "ring_sp_sc" | "ring_sp_mc" | "ring_mp_sc") {
        return Err(DpdkError {
            op: format!("mempool ops {name}"),
            errno: 22,
            hint:
                "the mbuf pool is shared by every worker and the control thread, so its ops must \
                   take and return from many threads at once: remove --mbuf-pool-ops-name from \
                   [dpdk] eal_args, or name ring_mp_mc (the default) or stack",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_producer_or_consumer_pools_are_refused() {
        for bad in ["ring_sp_sc", "ring_sp_mc", "ring_mp_sc"] {
            let e = thread_safe_ops(bad).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("eal_args"), "{e}");
        }
        for good in [
            "ring_mp_mc",
            "ring_mt_rts",
            "ring_mt_hts",
            "stack",
            "lf_stack",
            "cn10k_mempool_ops",
        ] {
            thread_safe_ops(good).unwrap();
        }
    }
}
