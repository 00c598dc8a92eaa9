//! The real `lb-appliance` binary on a DPDK `net_pcap` device: frames are
//! replayed from a pcap file, and what it transmits is compared byte for
//! byte with replies built by scapy (`tests/fixtures/local`, see
//! `scripts/gen-local-fixtures.py`), then checked again by tshark, an
//! independent dissector. Needs no root.

mod common;

use lb_core::golden;

#[test]
fn arp_and_echo_replies_through_the_binary_are_byte_exact() {
    let scenario = golden::scenario("local");
    assert!(
        scenario
            .steps
            .iter()
            .all(|s| s.in_port == 0 && s.output.as_ref().map_or(true, |(p, _)| *p == 0)),
        "local: everything on port 0"
    );
    let frames: Vec<&[u8]> = scenario.steps.iter().map(|s| s.input.as_slice()).collect();
    let run = common::run_on_pcap("pcap-local", &scenario.config, &frames);
    let expected: Vec<&[u8]> = scenario
        .steps
        .iter()
        .filter_map(|s| s.output.as_ref().ok().map(|(_, f)| f.as_slice()))
        .collect();
    assert_eq!(run.sent.len(), expected.len(), "replies sent:\n{}", run.log);
    for (i, (g, e)) in run.sent.iter().zip(&expected).enumerate() {
        assert_eq!(g.as_slice(), *e, "reply {i} differs");
    }
    common::assert_drops_logged(
        &run.log,
        scenario
            .steps
            .iter()
            .filter_map(|s| s.output.as_ref().err().map(String::as_str))
            .filter(|l| *l != "consumed"),
    );
    if let Some(bad) = common::tshark_bad_checksums(&run.out_path) {
        assert!(bad.is_empty(), "tshark flags: {bad}");
    }
}
