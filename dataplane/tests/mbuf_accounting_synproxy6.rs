//! Mbuf accounting (audit): the SYN proxy over IPv6 (NAT66). See `accounting`.

mod accounting;

#[test]
fn every_mbuf_is_back_in_the_pool_after_syn_proxy6() {
    let accounting::Counts { handoffs, held, .. } = accounting::run("syn-proxy6");
    let _ = (handoffs, held);
}
