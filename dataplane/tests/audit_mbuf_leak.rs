//! Audit: NAT, TUN and DR (one-arm), packets held for ARP and handed between workers. See `audit_common`.

mod audit_common;

#[test]
fn every_mbuf_is_back_in_the_pool_after_one_arm() {
    let audit_common::Counts { handoffs, held, .. } = audit_common::run("one-arm");
    let _ = (handoffs, held);
    assert!(held > 0, "packets were held for ARP");
    assert!(handoffs > 0, "packets were handed between the workers");
}
