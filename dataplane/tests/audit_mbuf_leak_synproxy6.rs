//! Audit: the SYN proxy over IPv6 (NAT66). See `audit_common`.

mod audit_common;

#[test]
fn every_mbuf_is_back_in_the_pool_after_syn_proxy6() {
    let audit_common::Counts { handoffs, held, .. } = audit_common::run("syn-proxy6");
    let _ = (handoffs, held);
}
