//! bindgen's layout of `struct rte_mbuf` against the C compiler's, for the
//! fields `lb_dataplane::dpdk::mbuf` reads straight from the struct (the
//! generated layout tests are off: they fail to build for two packed DPDK
//! types we never touch). A mismatch, from headers or flags that differ
//! between bindgen's clang and the build's C compiler, would have the
//! dataplane read the wrong bytes of every packet's buffer.

use std::mem::{offset_of, size_of};

use dpdk_sys::rte_mbuf;

#[test]
fn the_mbuf_fields_read_directly_lie_where_c_puts_them() {
    let mut c = [0usize; 16];
    // SAFETY: writes at most `c.len()` values into `c`, and reads nothing
    // else; no EAL is needed.
    let n = unsafe { dpdk_sys::lb_rte_mbuf_layout(c.as_mut_ptr(), c.len()) };
    let rust = [
        size_of::<rte_mbuf>(),
        offset_of!(rte_mbuf, buf_addr),
        offset_of!(rte_mbuf, data_off),
        offset_of!(rte_mbuf, refcnt),
        offset_of!(rte_mbuf, nb_segs),
        offset_of!(rte_mbuf, port),
        offset_of!(rte_mbuf, ol_flags),
        offset_of!(rte_mbuf, pkt_len),
        offset_of!(rte_mbuf, data_len),
        offset_of!(rte_mbuf, __bindgen_anon_2.hash.rss),
    ];
    assert_eq!(n, rust.len(), "the shim and this test list the same fields");
    let names = [
        "size", "buf_addr", "data_off", "refcnt", "nb_segs", "port", "ol_flags", "pkt_len",
        "data_len", "hash.rss",
    ];
    for ((name, c), rust) in names.iter().zip(&c[..n]).zip(rust) {
        assert_eq!(*c, rust, "{name}: C puts it at {c}, bindgen at {rust}");
    }
    assert_eq!(c[0], 128, "an mbuf is two cache lines");
}
