//! Mbuf accounting (audit): NAT, TUN and DR (one-arm), packets held for ARP and handed between workers. See `accounting`.

mod accounting;

#[test]
fn every_mbuf_is_back_in_the_pool_after_one_arm() {
    let accounting::Counts { handoffs, held, .. } = accounting::run("one-arm");
    let _ = (handoffs, held);
    assert!(held > 0, "packets were held for ARP");
    assert!(handoffs > 0, "packets were handed between the workers");
}
