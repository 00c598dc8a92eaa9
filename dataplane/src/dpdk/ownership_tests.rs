//! Audit of the mbuf ownership rules against a real EAL (the unit tests'
//! own, `test_eal`) and a `net_ring` loop made at run time: what the
//! receive path does with what an odd driver could hand out (a chained
//! packet, a buffer referenced twice, an indirect mbuf, an empty frame),
//! what a partial transmit leaves, and what a ring frees when its ends
//! go. Each checks that every mbuf goes back to the pool exactly once (a
//! pool of their own, whose count no other test moves).

use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::{Mutex, MutexGuard, OnceLock};

use lb_core::buffer::PacketBuf;
use lb_core::stats::DropReason;

use super::{spsc_ring, test_eal, Mbuf, MbufBurst, Mempool, Port, PortSetup, RxQueue, TxQueue};

struct Loop {
    _port: Port,
    rx: RxQueue,
    tx: TxQueue,
}

struct Audit {
    pool: Mempool,
    /// The tests here one at a time: they count the pool.
    ring_port: Mutex<Loop>,
}

fn audit() -> (Mempool, MutexGuard<'static, Loop>) {
    static AUDIT: OnceLock<Audit> = OnceLock::new();
    let a = AUDIT.get_or_init(|| {
        let t = test_eal::get();
        let pool = Mempool::create(&t.eal, "audit_pool", 2047, 2176).expect("mempool");
        let name = CString::new("net_ring_audit0").unwrap();
        // SAFETY: the EAL is initialised (test_eal); a valid C string that
        // DPDK copies; a vdev probed once (OnceLock).
        let ret = unsafe { dpdk_sys::rte_dev_probe(name.as_ptr()) };
        assert_eq!(ret, 0, "net_ring_audit0 probed");
        let (port, mut rx, mut tx) = Port::start(
            &t.eal,
            &PortSetup {
                device_name: "net_ring_audit0",
                queues: 1,
                mtu: 1500,
                mempool: pool,
                rx_descriptors: 256,
                tx_descriptors: 256,
                mac: None,
            },
        )
        .expect("net_ring_audit0 starts");
        Audit {
            pool,
            ring_port: Mutex::new(Loop {
                _port: port,
                rx: rx.remove(0),
                tx: tx.remove(0),
            }),
        }
    });
    let l = a.ring_port.lock().unwrap_or_else(|e| e.into_inner());
    (a.pool, l)
}

/// An mbuf of `pool` holding `len` bytes of `b`.
fn frame(pool: Mempool, b: u8, len: usize) -> Mbuf {
    let mut m = pool.alloc().expect("an mbuf");
    assert!(m.append(len));
    m.data_mut().fill(b);
    m
}

/// Receives until the loop is empty and frees what came.
fn empty_the_loop(l: &mut Loop) {
    let mut back = MbufBurst::new();
    while l.rx.rx_burst(&mut back, 128, |_| {}) > 0 {
        back.free_all();
    }
}

/// A driver may hand out a chained packet (scatter, a jumbo frame larger
/// than the data room), a buffer referenced twice or an indirect mbuf
/// (zero-copy receive): none reaches the pipeline, each is freed once
/// (the references the test holds stay valid), and the fit ones keep
/// their order. An empty frame is fit (a slice of length 0).
#[test]
fn odd_mbufs_from_a_driver_are_freed_once_and_never_reach_the_pipeline() {
    let (pool, mut l) = audit();
    empty_the_loop(&mut l);
    let before = pool.in_use();

    let a = frame(pool, 0xa, 64);
    let (b1, b2) = (
        frame(pool, 0xb, 32).into_raw(),
        frame(pool, 0xb, 32).into_raw(),
    );
    // SAFETY: both mbufs are ours alone (just allocated); chained as
    // rte_pktmbuf_chain does, then owned as one packet.
    let b = unsafe {
        (*b1).next = b2;
        (*b1).nb_segs = 2;
        (*b1).pkt_len = 64;
        Mbuf::from_raw(NonNull::new(b1).unwrap())
    };
    let c_raw = frame(pool, 0xc, 64).into_raw();
    // SAFETY: ours alone; a second reference, which the test keeps (and
    // frees at the end), as another holder of the buffer would.
    let c = unsafe {
        (*c_raw).refcnt = 2;
        Mbuf::from_raw(NonNull::new(c_raw).unwrap())
    };
    let d_direct = frame(pool, 0xd, 64).into_raw();
    // SAFETY: a valid mbuf and pool; the clone is indirect, attached to
    // d_direct (whose refcnt it raises to 2), and ours alone.
    let d = unsafe {
        let d = dpdk_sys::rte_pktmbuf_clone(d_direct, pool.as_ptr());
        Mbuf::from_raw(NonNull::new(d).expect("a clone"))
    };
    let e = pool.alloc().expect("an mbuf");
    assert!(e.is_empty());

    let mut out = MbufBurst::new();
    for m in [a, b, c, d, e] {
        out.push(m).unwrap();
    }
    assert_eq!(l.tx.tx_burst(&mut out), 5);
    let mut back = MbufBurst::new();
    let mut why = Vec::new();
    let n = l.rx.rx_burst(&mut back, 32, |r| why.push(r));
    assert_eq!(n, 5, "all arrived");
    assert_eq!(
        why,
        [
            DropReason::MultiSegment,
            DropReason::SharedBuffer,
            DropReason::SharedBuffer
        ]
    );
    let kept: Vec<(usize, Option<u8>)> = back
        .as_mut_slice()
        .iter()
        .map(|m| (m.len(), m.data().first().copied()))
        .collect();
    assert_eq!(kept, [(64, Some(0xa)), (0, None)]);
    drop(back);
    // The test's own references: still valid, each the last one now.
    // SAFETY: c_raw holds the reference the test kept (refcnt 1 now);
    // d_direct's clone was freed, which gave its reference back.
    unsafe {
        assert_eq!((*c_raw).refcnt, 1);
        assert_eq!((*d_direct).refcnt, 1);
        dpdk_sys::lb_rte_pktmbuf_free(c_raw);
        dpdk_sys::lb_rte_pktmbuf_free(d_direct);
    }
    assert_eq!(pool.in_use(), before, "every mbuf back, none twice");
}

/// A transmit queue that takes part of a burst (net_ring's ring holds
/// 1023): the rest stays in the burst for the caller, which frees it;
/// nothing leaks and nothing is freed twice.
#[test]
fn a_partial_transmit_leaves_the_rest_to_the_caller() {
    let (pool, mut l) = audit();
    empty_the_loop(&mut l);
    let before = pool.in_use();
    let mut sent = 0;
    let mut left = 0;
    for round in 0..16 {
        let mut out = MbufBurst::new();
        for _ in 0..128 {
            out.push(frame(pool, round, 60)).unwrap();
        }
        sent += l.tx.tx_burst(&mut out);
        if !out.is_empty() {
            left = out.len();
            assert_eq!(out.free_all(), left);
            break;
        }
    }
    assert!(left > 0, "the ring filled up");
    assert_eq!(pool.in_use(), before + sent as u32);
    let mut back = MbufBurst::new();
    let mut received = 0;
    loop {
        let n = l.rx.rx_burst(&mut back, 128, |r| panic!("{r:?}"));
        if n == 0 {
            break;
        }
        received += n;
        back.free_all();
    }
    assert_eq!(received, sent);
    assert_eq!(pool.in_use(), before);
}

/// What is still in a hand-off ring when both its ends are gone goes
/// back to the pool, once; what did not fit stays with the producer.
#[test]
fn a_ring_frees_what_it_holds_when_both_ends_are_gone() {
    let (pool, _l) = audit();
    let before = pool.in_use();
    let (mut p, mut c) = spsc_ring(&test_eal::get().eal, "audit_ring", 8).expect("ring");
    let mut out = MbufBurst::new();
    for i in 0..10 {
        out.push(frame(pool, i, 60)).unwrap();
    }
    assert_eq!(p.enqueue(&mut out), 7, "a ring of 8 holds 7");
    assert_eq!(out.len(), 3);
    let mut got = MbufBurst::new();
    assert_eq!(c.dequeue(&mut got, 2), 2);
    let firsts: Vec<u8> = got.as_mut_slice().iter().map(|m| m.data()[0]).collect();
    assert_eq!(firsts, [0, 1]);
    drop(got);
    drop(out);
    assert_eq!(pool.in_use(), before + 5, "five still in the ring");
    drop(p);
    assert_eq!(
        pool.in_use(),
        before + 5,
        "the consumer still holds the ring"
    );
    drop(c);
    assert_eq!(pool.in_use(), before);
}

/// Found in audit: `data` trusts the driver to keep the first segment's
/// lengths within its buffer, and a one-segment packet's `pkt_len` equal
/// to its `data_len`. A driver that broke either would have the packet
/// read out of bounds or sent on with lengths that disagree: such an
/// mbuf is unfit (`bad_mbuf`).
#[test]
fn an_mbuf_whose_lengths_disagree_is_unfit() {
    let (pool, _l) = audit();
    let good = frame(pool, 0x1, 64);
    assert_eq!(good.unfit(), None);
    let long = frame(pool, 0x2, 64).into_raw();
    // SAFETY: ours alone (just allocated); a length a driver could leave.
    let long = unsafe {
        (*long).pkt_len = 65;
        Mbuf::from_raw(NonNull::new(long).unwrap())
    };
    assert_eq!(long.unfit(), Some(DropReason::BadMbuf));
    let past = frame(pool, 0x3, 64).into_raw();
    // SAFETY: ours alone; only the offset is moved, past the buffer's
    // end, and nothing reads the data (the mbuf is freed as unfit is).
    let past = unsafe {
        (*past).data_off = (*past).buf_len - 32;
        Mbuf::from_raw(NonNull::new(past).unwrap())
    };
    assert_eq!(past.unfit(), Some(DropReason::BadMbuf));
}
