//! The real `lb-appliance` binary on a DPDK `net_pcap` device: frames are
//! replayed from a pcap file, and what it transmits is compared byte for
//! byte with replies built by scapy (see `scripts/gen-local-fixtures.py`),
//! then checked again by tshark, an independent dissector. Needs no root.

mod common;

#[path = "../core/src/pipeline/fixtures.rs"]
mod fixtures;

const CONFIG: &str = r#"
[dpdk]
eal_args = []
mbufs = 2047
[workers]
lcores = [1]
[[ports]]
name = "wan"
device = "net_pcap0"
address = "198.18.0.2/24"
mac = "02:00:00:00:00:02"
[[services]]
name = "web"
vip = "198.18.1.100"
port = 80
[[services.reals]]
address = "198.18.0.11"
"#;

#[test]
fn arp_and_echo_replies_through_the_binary_are_byte_exact() {
    let frames: Vec<&[u8]> = fixtures::CASES.iter().map(|c| c.input).collect();
    let run = common::run_on_pcap("pcap-local", CONFIG, &frames);
    let expected: Vec<&[u8]> = fixtures::CASES
        .iter()
        .filter_map(|c| c.output.ok())
        .collect();
    assert_eq!(run.sent.len(), expected.len(), "replies sent:\n{}", run.log);
    for (i, (g, e)) in run.sent.iter().zip(&expected).enumerate() {
        assert_eq!(g.as_slice(), *e, "reply {i} differs");
    }
    common::assert_drops_logged(
        &run.log,
        fixtures::CASES
            .iter()
            .filter_map(|c| c.output.err())
            .filter(|l| *l != "consumed"),
    );
    if let Some(bad) = common::tshark_bad_checksums(&run.out_path) {
        assert!(bad.is_empty(), "tshark flags: {bad}");
    }
}
