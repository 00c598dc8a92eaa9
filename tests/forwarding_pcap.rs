//! NAT, TUN and DR through the real `lb-appliance` binary on a DPDK
//! `net_pcap` device (one-arm: clients, router and reals on one port). The
//! golden steps of `tests/fixtures/one-arm` (built by scapy, see
//! `scripts/gen-forwarding-fixtures.py`) are replayed in order; what the appliance transmits must equal scapy's
//! expected frames byte for byte, every drop must be counted under its
//! reason, and tshark must find every checksum right. The IPv6 golden steps
//! (`tests/fixtures/ipv6`) go through the binary the same way. Needs no
//! root.

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

/// IPv6 through the binary: the golden steps of `tests/fixtures/ipv6`
/// (`scripts/gen-ipv6-fixtures.py`: neighbor discovery, ICMPv6 echo,
/// NAT66, 6in6 and 4in6, DR, Packet Too Big, extension headers, ICMPv6
/// errors, malformed input), in order, on one port: byte for byte what
/// scapy built, every drop counted under its reason, every checksum right
/// by tshark. The unit tests replay them through the pipeline alone; this
/// is the same on the DPDK worker, as the appliance runs.
#[test]
fn ipv6_golden_steps_through_the_binary_are_byte_exact() {
    let scenario = golden::scenario("ipv6");
    assert!(
        scenario
            .steps
            .iter()
            .all(|s| s.in_port == 0 && s.output.as_ref().map_or(true, |(p, _)| *p == 0)),
        "ipv6: everything on port 0"
    );
    let frames: Vec<&[u8]> = scenario.steps.iter().map(|s| s.input.as_slice()).collect();
    let run = common::run_on_pcap("pcap-ipv6", &scenario.config, &frames);
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
            .filter_map(|s| s.output.as_ref().err().map(String::as_str))
            // A Neighbor Advertisement learned is used, not dropped.
            .filter(|l| *l != "consumed"),
    );
    if let Some(bad) = common::tshark_bad_checksums(&run.out_path) {
        assert!(bad.is_empty(), "tshark flags: {bad}");
    }
}
