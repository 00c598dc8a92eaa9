//! Mbuf accounting (audit): IPv6 (NAT66, 6in6, DR, NDP), packets held for neighbor discovery. See `accounting`.

mod accounting;

#[test]
fn every_mbuf_is_back_in_the_pool_after_ipv6() {
    let accounting::Counts { handoffs, held, .. } = accounting::run("ipv6");
    let _ = (handoffs, held);
}
