use std::ptr::NonNull;

use lb_core::buffer::{PacketBuf, RxChecksum};

/// The most packets one burst holds.
pub const MAX_BURST: usize = 128;

/// One owned packet buffer. Only its first segment is exposed: the
/// dataplane drops multi-segment packets before it looks at them.
///
/// The mbuf is owned exclusively (refcount 1, never cloned or attached), so
/// `&mut Mbuf` is the only way to write its bytes: a pool's mbufs are, and
/// [`RxQueue::rx_burst`](super::RxQueue::rx_burst) frees and reports what
/// a driver hands out otherwise before any `Mbuf` of it is seen (found in
/// audit: that check was the worker's, so safe code that skipped it could
/// write into a buffer another packet shows).
#[derive(Debug)]
#[repr(transparent)]
pub struct Mbuf(NonNull<dpdk_sys::rte_mbuf>);

// SAFETY: an Mbuf is the sole owner of its buffer; moving it to another
// thread moves that ownership. The pool it returns to is thread-safe.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// # Safety
    /// `m` must be a valid mbuf that nobody else owns or will free.
    pub(crate) unsafe fn from_raw(m: NonNull<dpdk_sys::rte_mbuf>) -> Mbuf {
        Mbuf(m)
    }

    pub(crate) fn into_raw(self) -> *mut dpdk_sys::rte_mbuf {
        let p = self.0.as_ptr();
        std::mem::forget(self);
        p
    }

    fn raw(&self) -> &dpdk_sys::rte_mbuf {
        // SAFETY: we own a valid mbuf; shared access to its header. Only
        // for mbufs whose buffer is known to be theirs alone (what
        // `unfit` lets through at receive, and mbufs made here): the
        // header of a shared one holds a reference count another holder
        // may change, so `unfit` reads its fields one at a time instead.
        unsafe { self.0.as_ref() }
    }

    /// Number of segments; anything but 1 is a chained packet.
    pub fn segments(&self) -> u16 {
        // SAFETY: the mbuf is valid; a plain read of one field through the
        // pointer, not a reference to the whole header (which holds the
        // reference count another holder of a shared buffer may change
        // meanwhile: found in audit).
        unsafe { std::ptr::addr_of!((*self.0.as_ptr()).nb_segs).read() }
    }

    /// Whether the first segment holds the packet whole and within its
    /// buffer: `data_off + data_len <= buf_len` and `pkt_len == data_len`.
    /// DPDK's invariants, which [`PacketBuf::data`] relies on; a driver
    /// that broke them would have its packet read out of bounds, or sent
    /// on with the lengths disagreeing (found in audit: cheap, the header
    /// line is loaded already).
    fn lengths_agree(&self) -> bool {
        let p = self.0.as_ptr();
        // SAFETY: the mbuf is valid; plain reads of single fields through
        // the pointer, as in `segments`.
        let (off, data, buf, pkt) = unsafe {
            (
                std::ptr::addr_of!((*p).data_off).read(),
                std::ptr::addr_of!((*p).data_len).read(),
                std::ptr::addr_of!((*p).buf_len).read(),
                std::ptr::addr_of!((*p).pkt_len).read(),
            )
        };
        u32::from(off) + u32::from(data) <= u32::from(buf) && pkt == u32::from(data)
    }

    /// Whether the packet's buffer is this mbuf's alone: not attached to
    /// another mbuf's (indirect) or to external memory, and referenced
    /// once. What [`Mbuf::data_mut`] and [`Mbuf::prepend`] assume; a
    /// driver that hands out shared buffers (zero-copy receive into one
    /// big buffer, as some NICs offer) would otherwise let a rewrite or a
    /// prepended header land in bytes another packet shows. Checked on
    /// receive, beside [`Mbuf::segments`].
    #[inline]
    pub fn is_exclusive(&self) -> bool {
        let shared = dpdk_sys::RTE_MBUF_F_INDIRECT | dpdk_sys::RTE_MBUF_F_EXTERNAL;
        // SAFETY: as in `segments`: one field, read through the pointer.
        let flags = unsafe { std::ptr::addr_of!((*self.0.as_ptr()).ol_flags).read() };
        if flags & shared != 0 {
            return false;
        }
        // SAFETY: the mbuf is valid; its reference count is a naturally
        // aligned u16 that DPDK only ever changes atomically (a buffer
        // referenced twice may be changed by another thread meanwhile),
        // so reading it as an atomic is sound.
        let refcnt = unsafe {
            std::sync::atomic::AtomicU16::from_ptr(std::ptr::addr_of_mut!(
                (*self.0.as_ptr()).refcnt
            ))
        };
        refcnt.load(std::sync::atomic::Ordering::Relaxed) == 1
    }

    /// One segment that holds the packet, the buffer its own
    /// ([`Mbuf::segments`], [`Mbuf::lengths_agree`],
    /// [`Mbuf::is_exclusive`]): what the pipeline may be given. Else the
    /// reason it is dropped.
    #[inline]
    pub fn unfit(&self) -> Option<lb_core::stats::DropReason> {
        if self.segments() != 1 {
            Some(lb_core::stats::DropReason::MultiSegment)
        } else if !self.lengths_agree() {
            Some(lb_core::stats::DropReason::BadMbuf)
        } else if !self.is_exclusive() {
            Some(lb_core::stats::DropReason::SharedBuffer)
        } else {
            None
        }
    }

    /// Length of the whole packet (all segments).
    pub fn packet_len(&self) -> u32 {
        self.raw().pkt_len
    }

    /// The DPDK port id the packet was received on.
    #[inline]
    pub fn port_id(&self) -> u16 {
        self.raw().port
    }

    /// The RSS hash the NIC computed, when it did (0 otherwise).
    pub fn rss_hash(&self) -> u32 {
        // SAFETY: `hash` is a union of plain integers; reading `rss` is
        // reading initialised memory of the right size.
        unsafe { self.raw().__bindgen_anon_2.hash.rss }
    }

    /// Hints the CPU to fetch the first cache line of the packet data.
    #[inline]
    pub fn prefetch_data(&self) {
        if let Some(first) = self.data().first() {
            super::prefetch(first);
        }
    }
}

impl PacketBuf for Mbuf {
    #[inline(always)]
    fn prefetch(line: *const u8) {
        super::prefetch_line(line);
    }

    /// From the mbuf's offload flags: set by drivers that check IPv4 header
    /// checksums (the port asks for it when the device offers it); the
    /// virtual devices here leave them unknown.
    #[inline]
    fn rx_ip_checksum(&self) -> RxChecksum {
        let f = self.raw().ol_flags & u64::from(dpdk_sys::RTE_MBUF_F_RX_IP_CKSUM_MASK);
        if f == u64::from(dpdk_sys::RTE_MBUF_F_RX_IP_CKSUM_GOOD) {
            RxChecksum::Good
        } else if f == u64::from(dpdk_sys::RTE_MBUF_F_RX_IP_CKSUM_BAD) {
            RxChecksum::Bad
        } else {
            RxChecksum::Unknown
        }
    }

    #[inline]
    fn data(&self) -> &[u8] {
        let r = self.raw();
        // SAFETY: buf_addr + data_off .. + data_len lies inside the mbuf's
        // data room (DPDK's invariant for the first segment), and we own it.
        unsafe {
            std::slice::from_raw_parts(
                (r.buf_addr as *const u8).add(r.data_off as usize),
                r.data_len as usize,
            )
        }
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `data`; `&mut self` gives exclusive access and the
        // buffer is this mbuf's alone (see [`Mbuf`]: every `Mbuf` is).
        unsafe {
            let r = self.0.as_mut();
            std::slice::from_raw_parts_mut(
                (r.buf_addr as *mut u8).add(r.data_off as usize),
                r.data_len as usize,
            )
        }
    }

    fn headroom(&self) -> usize {
        self.raw().data_off as usize
    }

    /// `rte_pktmbuf_prepend`'s three field updates, written here rather
    /// than called through the C shim: TUN prepends on every packet, and
    /// the call and its frame cost about a dozen instructions of the
    /// established path (`scripts/bench-instructions.sh --worker`). The
    /// `prepend_is_dpdks` test holds it to DPDK's own.
    #[inline]
    fn prepend(&mut self, n: usize) -> bool {
        let Ok(n) = u16::try_from(n) else {
            return false;
        };
        // SAFETY: `&mut self` gives exclusive access to this valid, owned
        // mbuf's header (see [`Mbuf`]).
        let r = unsafe { self.0.as_mut() };
        // As DPDK: no change when the headroom is too small.
        if n > r.data_off {
            return false;
        }
        // The lengths cannot overflow while data_off + data_len <= buf_len
        // and pkt_len == data_len (DPDK's invariants, which `unfit` checks
        // on receive). Were they broken, they wrap as DPDK's do: no panic
        // (a checked add here cost 6 instructions a TUN packet).
        r.data_off -= n;
        r.data_len = r.data_len.wrapping_add(n);
        r.pkt_len = r.pkt_len.wrapping_add(u32::from(n));
        true
    }

    fn adj(&mut self, n: usize) -> bool {
        let Ok(n) = u16::try_from(n) else {
            return false;
        };
        // SAFETY: valid owned mbuf; returns NULL (no change) if n > data_len.
        !unsafe { dpdk_sys::lb_rte_pktmbuf_adj(self.0.as_ptr(), n) }.is_null()
    }

    fn trim(&mut self, n: usize) -> bool {
        let Ok(n) = u16::try_from(n) else {
            return false;
        };
        // SAFETY: valid owned mbuf; returns -1 (no change) if n > data_len.
        unsafe { dpdk_sys::lb_rte_pktmbuf_trim(self.0.as_ptr(), n) == 0 }
    }

    fn append(&mut self, n: usize) -> bool {
        let Ok(n) = u16::try_from(n) else {
            return false;
        };
        // SAFETY: valid owned mbuf; returns NULL (no change) if the tailroom
        // is too small.
        !unsafe { dpdk_sys::lb_rte_pktmbuf_append(self.0.as_ptr(), n) }.is_null()
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf; it goes back to its pool exactly once.
        unsafe { dpdk_sys::lb_rte_pktmbuf_free(self.0.as_ptr()) }
    }
}

/// A fixed-capacity array of owned mbufs: what one rx or tx burst carries.
/// No allocation: it lives on the worker's stack or in its state.
pub struct MbufBurst {
    ptrs: [*mut dpdk_sys::rte_mbuf; MAX_BURST],
    len: usize,
}

// SAFETY: it owns the mbufs it holds, exactly like a Vec<Mbuf>.
unsafe impl Send for MbufBurst {}

impl Default for MbufBurst {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MbufBurst {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MbufBurst({} mbufs)", self.len)
    }
}

impl MbufBurst {
    pub const fn new() -> Self {
        MbufBurst {
            ptrs: [std::ptr::null_mut(); MAX_BURST],
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len == MAX_BURST
    }

    /// Adds an mbuf; gives it back when the burst is full.
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.len == MAX_BURST {
            return Err(m);
        }
        self.ptrs[self.len] = m.into_raw();
        self.len += 1;
        Ok(())
    }

    /// Takes every mbuf out, in order, leaving the burst empty. Mbufs the
    /// iterator is dropped before yielding are freed.
    pub fn drain(&mut self) -> Drain<'_> {
        let end = std::mem::replace(&mut self.len, 0);
        Drain {
            ptrs: &self.ptrs[..end],
            next: 0,
        }
    }

    /// The mbufs held, as a slice (to run a burst through the pipeline).
    pub fn as_mut_slice(&mut self) -> &mut [Mbuf] {
        let held = &mut self.ptrs[..self.len];
        // SAFETY: Mbuf is repr(transparent) over NonNull<rte_mbuf>, which has
        // the layout of *mut rte_mbuf; every slot below len holds a valid,
        // non-null, owned mbuf. The slice borrows the burst mutably, so the
        // mbufs can be neither freed nor moved out while it lives, and Mbuf
        // values in it are never dropped through it (a slice drops nothing).
        unsafe { std::slice::from_raw_parts_mut(held.as_mut_ptr().cast::<Mbuf>(), held.len()) }
    }

    /// The mbuf pointers for an rx burst to fill, after the current ones.
    pub(crate) fn spare_raw(&mut self) -> (*mut *mut dpdk_sys::rte_mbuf, usize) {
        (self.ptrs[self.len..].as_mut_ptr(), MAX_BURST - self.len)
    }

    /// Records that the rx burst put `n` mbufs after the current ones.
    ///
    /// # Safety
    /// The `n` slots after `len` must now hold valid owned mbufs.
    pub(crate) unsafe fn commit(&mut self, n: usize) {
        debug_assert!(self.len + n <= MAX_BURST);
        self.len += n;
    }

    /// Keeps, in order, the mbufs from index `start` on that `keep` takes,
    /// and frees the others.
    pub(crate) fn retain_from(&mut self, start: usize, mut keep: impl FnMut(&Mbuf) -> bool) {
        let end = self.len;
        // Counted back in as each is kept: should `keep` panic, what is
        // not yet looked at leaks rather than being freed twice.
        self.len = start.min(end);
        for r in self.len..end {
            // SAFETY: slot r (r >= len) holds an owned, valid mbuf that no
            // other slot below len names; it is moved to slot len (<= r) or
            // freed, once.
            let m = unsafe { Mbuf::from_raw(NonNull::new_unchecked(self.ptrs[r])) };
            if keep(&m) {
                self.ptrs[self.len] = m.into_raw();
                self.len += 1;
            }
        }
    }

    /// The owned pointers, for a tx burst.
    pub(crate) fn raw_mut(&mut self) -> (*mut *mut dpdk_sys::rte_mbuf, usize) {
        (self.ptrs.as_mut_ptr(), self.len)
    }

    /// Forgets the first `n` mbufs, which the NIC now owns, and moves the
    /// rest to the front.
    pub(crate) fn consume_front(&mut self, n: usize) {
        let n = n.min(self.len);
        self.ptrs.copy_within(n..self.len, 0);
        self.len -= n;
    }

    /// Frees every mbuf still held. Returns how many.
    pub fn free_all(&mut self) -> usize {
        let n = std::mem::replace(&mut self.len, 0);
        if n > 0 {
            // SAFETY: the first n slots hold owned valid mbufs, and len is
            // already 0 so none is freed twice.
            unsafe { dpdk_sys::rte_pktmbuf_free_bulk(self.ptrs.as_mut_ptr(), n as u32) }
        }
        n
    }
}

impl Drop for MbufBurst {
    fn drop(&mut self) {
        self.free_all();
    }
}

/// The iterator of [`MbufBurst::drain`]: owns the mbufs not yet yielded.
pub struct Drain<'a> {
    ptrs: &'a [*mut dpdk_sys::rte_mbuf],
    next: usize,
}

impl Iterator for Drain<'_> {
    type Item = Mbuf;

    #[inline]
    fn next(&mut self) -> Option<Mbuf> {
        let p = *self.ptrs.get(self.next)?;
        self.next += 1;
        // SAFETY: slots of a drained burst hold owned, valid, non-null mbufs,
        // and each slot is yielded at most once (next only grows).
        Some(unsafe { Mbuf::from_raw(NonNull::new_unchecked(p)) })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.ptrs.len() - self.next;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Drain<'_> {}

impl Drop for Drain<'_> {
    fn drop(&mut self) {
        for _ in self.by_ref() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dpdk::Mempool;
    use lb_core::stats::DropReason;

    /// This test binary's own EAL (the integration tests run theirs in
    /// another process): virtual memory only, no devices.
    fn pool() -> Mempool {
        pools().0
    }

    /// A pool of its own, for a test that counts what is in use (found
    /// when a fresh clone's test run failed: the test threads share
    /// `pool`, and another test's allocations moved the count).
    fn counted_pool() -> Mempool {
        pools().1
    }

    fn pools() -> (Mempool, Mempool) {
        let t = crate::dpdk::test_eal::get();
        (t.pool, t.counted)
    }

    /// Sets what a driver could hand out, for the length of `f`, and puts
    /// the mbuf back as it was.
    fn with_header(m: &mut Mbuf, refcnt: u16, flags: u64, f: impl FnOnce(&Mbuf)) {
        let p = m.0.as_ptr();
        // SAFETY: the mbuf is ours alone (just allocated, never shared), so
        // writing its header fields and restoring them is race-free; it is
        // never freed while they differ.
        let (old_refcnt, old_flags) = unsafe {
            let old = ((*p).refcnt, (*p).ol_flags);
            (*p).refcnt = refcnt;
            (*p).ol_flags |= flags;
            old
        };
        f(m);
        // SAFETY: as above.
        unsafe {
            (*p).refcnt = old_refcnt;
            (*p).ol_flags = old_flags;
        }
    }

    /// The prepend written in Rust moves an mbuf's fields as DPDK's
    /// `rte_pktmbuf_prepend` (through the shim) does, refusals included.
    #[test]
    fn prepend_is_dpdks() {
        let fields = |m: &Mbuf| {
            let r = m.raw();
            (r.data_off, r.data_len, r.pkt_len)
        };
        for skip in [0usize, 1, 14, 60] {
            let mut n = 0;
            while n <= 200 {
                let mut ours = pool().alloc().expect("an mbuf");
                let mut theirs = pool().alloc().expect("an mbuf");
                for m in [&mut ours, &mut theirs] {
                    assert!(m.append(100) && m.adj(skip));
                }
                assert_eq!(fields(&ours), fields(&theirs));
                let done = ours.prepend(n);
                // SAFETY: a valid mbuf of this test's alone.
                let front =
                    unsafe { dpdk_sys::lb_rte_pktmbuf_prepend(theirs.0.as_ptr(), n as u16) };
                assert_eq!(done, !front.is_null(), "{n} bytes after {skip}");
                assert_eq!(fields(&ours), fields(&theirs), "{n} bytes after {skip}");
                if done {
                    assert_eq!(theirs.data().as_ptr(), front as *const u8);
                }
                n += 1;
            }
            let mut m = pool().alloc().expect("an mbuf");
            let before = fields(&m);
            assert!(!m.prepend(usize::from(u16::MAX) + 1));
            assert_eq!(fields(&m), before);
        }
        // Lengths that break DPDK's invariants (what `unfit` refuses on
        // receive): no panic, even in a debug build, and as DPDK's.
        let mut ours = pool().alloc().expect("an mbuf");
        let mut theirs = pool().alloc().expect("an mbuf");
        let mut old = Vec::new();
        for m in [&ours, &theirs] {
            let p = m.0.as_ptr();
            // SAFETY: the mbuf is this test's alone; its header is put
            // back as it was before it is freed.
            unsafe {
                old.push(((*p).data_off, (*p).data_len, (*p).pkt_len));
                (*p).data_len = u16::MAX - 4;
                (*p).pkt_len = u32::MAX - 4;
            }
        }
        let done = ours.prepend(8);
        // SAFETY: a valid mbuf of this test's alone.
        let front = unsafe { dpdk_sys::lb_rte_pktmbuf_prepend(theirs.0.as_ptr(), 8) };
        assert_eq!(done, !front.is_null());
        assert_eq!(fields(&ours), fields(&theirs));
        for (m, was) in [&mut ours, &mut theirs].into_iter().zip(old) {
            let p = m.0.as_ptr();
            // SAFETY: as above.
            unsafe { ((*p).data_off, (*p).data_len, (*p).pkt_len) = was };
        }
    }

    /// Found in review: nothing checked that a received buffer was the
    /// mbuf's own, which in-place rewriting assumes.
    #[test]
    fn only_a_buffer_of_its_own_is_fit_for_the_pipeline() {
        let mut m = pool().alloc().expect("an mbuf");
        assert_eq!(m.unfit(), None, "a fresh mbuf");
        with_header(&mut m, 2, 0, |m| {
            assert_eq!(
                m.unfit(),
                Some(DropReason::SharedBuffer),
                "referenced twice"
            )
        });
        for flag in [dpdk_sys::RTE_MBUF_F_INDIRECT, dpdk_sys::RTE_MBUF_F_EXTERNAL] {
            with_header(&mut m, 1, flag, |m| {
                assert_eq!(m.unfit(), Some(DropReason::SharedBuffer), "flag {flag:#x}")
            });
        }
        assert_eq!(m.unfit(), None, "as it was");
    }

    /// Found in review: the pool took the EAL's default ring, which
    /// `--mbuf-pool-ops-name` in `[dpdk] eal_args` could make
    /// single-producer, single-consumer; threads taking and returning
    /// mbufs at once then got the same mbuf twice (such ops are refused
    /// now: `mempool::tests`). Two threads (not EAL lcores, so without a
    /// cache: straight to the ring) take mbufs, mark them as theirs, look
    /// again, and return them: no mark may change while held. (With
    /// `--mbuf-pool-ops-name=ring_sp_sc` and the check taken out, this
    /// failed at once.)
    #[test]
    fn the_pool_is_safe_from_several_threads_whatever_the_eal_default() {
        let pool = pool();
        let threads: Vec<_> = (0..2u8)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut twice = 0;
                    for i in 0..50_000u32 {
                        let mut got = Vec::new();
                        for k in 0..4u8 {
                            let Some(mut m) = pool.alloc() else { continue };
                            if !m.append(8) {
                                continue;
                            }
                            let mark = [t, k, 0, 0, i as u8, (i >> 8) as u8, (i >> 16) as u8, 0];
                            match m.data_mut().get_mut(..8) {
                                Some(d) => d.copy_from_slice(&mark),
                                // Emptied by the other thread meanwhile.
                                None => twice += 1,
                            }
                            got.push((mark, m));
                        }
                        for (mark, m) in &got {
                            if m.data().get(..8) != Some(&mark[..]) {
                                twice += 1;
                            }
                        }
                    }
                    twice
                })
            })
            .collect();
        let twice: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(twice, 0, "mbufs handed out twice");
    }

    /// What a receive queue keeps of a burst ([`MbufBurst::retain_from`],
    /// with [`Mbuf::unfit`] as the test): the kept in their order, from
    /// where the burst's new part starts, the rest back in the pool, none
    /// freed twice.
    #[test]
    fn a_burst_keeps_what_it_is_told_in_order_and_frees_the_rest_once() {
        let pool = counted_pool();
        let before = pool.in_use();
        let mut burst = MbufBurst::new();
        for i in 0..10u8 {
            let mut m = pool.alloc().expect("an mbuf");
            assert!(m.append(1));
            m.data_mut()[0] = i;
            burst.push(m).unwrap();
        }
        burst.retain_from(3, |m| m.data()[0] % 3 != 0);
        let kept: Vec<u8> = burst.as_mut_slice().iter().map(|m| m.data()[0]).collect();
        assert_eq!(
            kept,
            [0, 1, 2, 4, 5, 7, 8],
            "before 3 untouched, 3, 6 and 9 gone"
        );
        assert_eq!(pool.in_use(), before + 7);
        burst.retain_from(0, |_| false);
        assert!(burst.is_empty());
        assert_eq!(pool.in_use(), before);
    }
}
