use std::ffi::{c_void, CString};
use std::ptr::NonNull;
use std::sync::Arc;

use super::eal::Eal;
use super::error::DpdkError;
use super::mbuf::{MbufBurst, MAX_BURST};

/// A single-producer, single-consumer ring of mbufs (`rte_ring` with
/// `RING_F_SP_ENQ | RING_F_SC_DEQ`), for handing packets from one worker
/// to another. The two ends are non-`Clone` tokens, so each has exactly one
/// user; the ring is freed (with any mbufs still in it) when both are gone.
#[derive(Debug)]
struct RingInner(NonNull<dpdk_sys::rte_ring>);

// SAFETY: an rte_ring is designed for use from two threads at once (one
// producer, one consumer here, enforced by the tokens).
unsafe impl Send for RingInner {}
// SAFETY: as above; shared access only reaches the thread-safe ring ops.
unsafe impl Sync for RingInner {}

/// The enqueueing end.
#[derive(Debug)]
pub struct RingProducer(Arc<RingInner>);

/// The dequeueing end.
#[derive(Debug)]
pub struct RingConsumer(Arc<RingInner>);

/// Creates a ring holding up to `size - 1` mbufs (`size` a power of two).
pub fn spsc_ring(
    _eal: &Eal,
    name: &str,
    size: u32,
) -> Result<(RingProducer, RingConsumer), DpdkError> {
    let cname = CString::new(name).map_err(|_| DpdkError {
        op: format!("ring name {name:?}"),
        errno: 22,
        hint: "no NUL bytes in names",
    })?;
    let flags = dpdk_sys::RING_F_SP_ENQ | dpdk_sys::RING_F_SC_DEQ;
    // SAFETY: EAL initialised (&Eal); valid C string copied by DPDK.
    let r = unsafe {
        dpdk_sys::rte_ring_create(cname.as_ptr(), size, -1 /* SOCKET_ID_ANY */, flags)
    };
    let inner = NonNull::new(r)
        .map(RingInner)
        .ok_or_else(|| DpdkError::from_errno(format!("creating ring {name} of {size}")))?;
    let inner = Arc::new(inner);
    Ok((RingProducer(Arc::clone(&inner)), RingConsumer(inner)))
}

impl RingProducer {
    /// Moves as many mbufs as fit from the front of `burst` into the ring;
    /// the rest stay in the burst. Returns how many moved.
    #[inline]
    pub fn enqueue(&mut self, burst: &mut MbufBurst) -> usize {
        let (ptr, len) = burst.raw_mut();
        if len == 0 {
            return 0;
        }
        // SAFETY: the only producer (&mut self, not Clone); ptr holds len
        // owned mbufs, the first n of which the ring now owns.
        let n = unsafe {
            dpdk_sys::lb_rte_ring_enqueue_burst(
                (self.0).0.as_ptr(),
                ptr.cast::<*mut c_void>(),
                len as u32,
            )
        };
        burst.consume_front(n as usize);
        n as usize
    }
}

impl RingConsumer {
    /// Moves up to `max` mbufs from the ring to the end of `burst`.
    #[inline]
    pub fn dequeue(&mut self, burst: &mut MbufBurst, max: usize) -> usize {
        let (ptr, spare) = burst.spare_raw();
        let want = spare.min(max).min(MAX_BURST);
        if want == 0 {
            return 0;
        }
        // SAFETY: the only consumer (&mut self); ptr has room for `want`
        // pointers; the ring hands ownership of n mbufs to the burst.
        let n = unsafe {
            dpdk_sys::lb_rte_ring_dequeue_burst(
                (self.0).0.as_ptr(),
                ptr.cast::<*mut c_void>(),
                want as u32,
            )
        };
        // SAFETY: the ring wrote n owned mbufs after the burst's current ones.
        unsafe { burst.commit(n as usize) };
        n as usize
    }
}

impl Drop for RingInner {
    fn drop(&mut self) {
        // Both ends are gone: free what is still queued, then the ring.
        let mut burst = MbufBurst::new();
        loop {
            let (ptr, spare) = burst.spare_raw();
            // SAFETY: no producer or consumer is left; we own the ring.
            let n = unsafe {
                dpdk_sys::lb_rte_ring_dequeue_burst(
                    self.0.as_ptr(),
                    ptr.cast::<*mut c_void>(),
                    spare as u32,
                )
            };
            if n == 0 {
                break;
            }
            // SAFETY: n owned mbufs were written after the (empty) burst.
            unsafe { burst.commit(n as usize) };
            burst.free_all();
        }
        // SAFETY: empty ring, no users left, freed once.
        unsafe { dpdk_sys::rte_ring_free(self.0.as_ptr()) }
    }
}
