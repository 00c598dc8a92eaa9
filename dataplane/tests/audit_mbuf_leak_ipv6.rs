//! Audit: IPv6 (NAT66, 6in6, DR, NDP), packets held for neighbor discovery. See `audit_common`.

mod audit_common;

#[test]
fn every_mbuf_is_back_in_the_pool_after_ipv6() {
    let audit_common::Counts { handoffs, held, .. } = audit_common::run("ipv6");
    let _ = (handoffs, held);
}
