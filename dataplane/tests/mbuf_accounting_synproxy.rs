//! Mbuf accounting (audit): the SYN proxy (IPv4): cookie SYN-ACKs answered in the same mbuf. (The
//! golden ACKs carry cookies of another key, so no handshake completes
//! here: deferral is left to the fuzz driver.) See `accounting`.

mod accounting;

#[test]
fn every_mbuf_is_back_in_the_pool_after_syn_proxy() {
    let accounting::Counts { handoffs, held, .. } = accounting::run("syn-proxy");
    let _ = (handoffs, held);
}
