//! NAT, TUN and DR through the real `lb-appliance` binary on a DPDK
//! `net_pcap` device (one-arm: clients, router and reals on one port). The
//! golden steps of `tests/fixtures/one-arm` (built by scapy, see
//! `scripts/gen-forwarding-fixtures.py`) are replayed in order; what the appliance transmits must equal scapy's
//! expected frames byte for byte, every drop must be counted under its
//! reason, and tshark must find every checksum right. Needs no root.

mod common;

use lb_core::golden;

#[test]
fn one_arm_nat_tun_dr_through_the_binary_are_byte_exact() {
    let scenario = golden::scenario("one-arm");
    assert!(
        scenario.steps.iter().all(|s| s.in_port == 0),
        "one-arm: everything on port 0"
    );
    let frames: Vec<&[u8]> = scenario.steps.iter().map(|s| s.input.as_slice()).collect();
    let run = common::run_on_pcap("pcap-fwd", &scenario.config, &frames);
    let expected: Vec<(&str, &[u8])> = scenario
        .steps
        .iter()
        .filter_map(|s| {
            let (_, f) = s.output.as_ref().ok()?;
            Some((s.description.as_str(), f.as_slice()))
        })
        .collect();
    assert_eq!(run.sent.len(), expected.len(), "frames sent:\n{}", run.log);
    for ((desc, e), g) in expected.iter().zip(&run.sent) {
        assert_eq!(
            g.as_slice(),
            *e,
            "{desc}: differs\n  expected {e:02x?}\n  got      {g:02x?}"
        );
    }
    common::assert_drops_logged(
        &run.log,
        scenario
            .steps
            .iter()
            .filter_map(|s| s.output.as_ref().err().map(String::as_str)),
    );
    if let Some(bad) = common::tshark_bad_checksums(&run.out_path) {
        assert!(bad.is_empty(), "tshark flags: {bad}");
    }
}
