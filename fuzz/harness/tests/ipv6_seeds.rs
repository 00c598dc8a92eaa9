//! The IPv6 seeds of the `pipeline` corpus (`fuzz/corpus/pipeline/
//! seed-ipv6-*`), made here so that they stay what they say:
//! - `seed-ipv6-golden-*`: the IPv6 golden scenario (`tests/fixtures/ipv6`,
//!   scapy's frames), one frame per burst, on wan of both topologies (one
//!   worker, and three workers with a small table);
//! - `seed-ipv6-ops-*`: the IPV6 ops (`lb_fuzz_harness::gen6`) and the
//!   REPLY and ICMP ERROR ops on IPv6 flows: NAT66 both ways, 6in6, 4in6,
//!   DR, neighbor discovery both ways (a held packet released by the
//!   answer to our solicitation), echo, Packet Too Big, ICMPv6 errors both
//!   ways, extension headers.
//!
//! Every seed must run clean and reach what it is for. `LB_WRITE_SEEDS=1
//! cargo test -p lb-fuzz-harness --test ipv6_seeds` writes them.

use std::path::{Path, PathBuf};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/pipeline")
}

/// A BURST of one frame (`process_burst`) on `port`, worker `w`.
fn burst(d: &mut Vec<u8>, port: u8, w: u8, flags: u8, frame: &[u8]) {
    d.extend_from_slice(&[0x00, port | (w << 2), flags]);
    d.extend_from_slice(&(frame.len() as u16).to_be_bytes());
    d.extend_from_slice(frame);
}

fn golden(header: [u8; 4], flags: u8) -> Vec<u8> {
    let s = lb_core::golden::scenario("ipv6");
    let mut d = header.to_vec();
    for (i, step) in s.steps.iter().enumerate() {
        burst(
            &mut d,
            step.in_port as u8,
            (i % 3) as u8,
            flags,
            &step.input,
        );
    }
    d
}

/// An IPV6 op: kind, in-port and worker, then the knobs.
#[allow(clippy::too_many_arguments)]
fn op6(d: &mut Vec<u8>, kind: u8, port: u8, w: u8, a: u8, m: u8, x: u8, s: u8, p: u8) {
    d.extend_from_slice(&[0xc8 | kind, port | (w << 2), a, m, x, s, p]);
}

/// A TCP SYN from 198.19.0.10:40001 to the 4in6 service 198.18.1.104:80
/// (lengths and checksums fixed by the frame flags).
fn syn_4in6() -> Vec<u8> {
    vec![
        0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00, // Ethernet
        0x45, 0, 0, 0, 0x10, 0x01, 0x40, 0, 0x40, 0x06, 0, 0, // IPv4 ..
        198, 19, 0, 10, 198, 18, 1, 104, // addresses
        0x9c, 0x41, 0x00, 0x50, 0, 0, 0x03, 0xe8, 0, 0, 0, 0, // ports, seq, ack
        0x50, 0x02, 0xfa, 0xf0, 0, 0, 0, 0, // offset 5 words, SYN, window
    ]
}

fn ops(topology: u8, workers: u8) -> Vec<u8> {
    let mut d = vec![topology, workers - 1, 60, 0];
    // NAT66: a SYN to web-nat6 from each of four clients (rr: one real
    // without a static neighbor: held, solicited), the real's SYN-ACK,
    // the client's ACK, an ICMPv6 error each way.
    for c in 0..4u8 {
        op6(&mut d, 0, 0, c % workers, c, 0, 0x02, 0, c);
        d.extend_from_slice(&[0xd0, 0x12, c % workers]);
        d.extend_from_slice(&[0xd0, 0x10, c % workers]);
    }
    // Our solicitations answered: what was held goes.
    for i in 0..4u8 {
        op6(&mut d, 5, 0, i % workers, i, 0, 0, 0, 0);
    }
    d.extend_from_slice(&[0xe0, 0x00, 0, 0xe1, 0x81, 0, 0xe0, 0x26, 1]);
    // UDP to dns-nat6, with extension headers (hop-by-hop, destination
    // options, routing with segments left 0), and the real's reply.
    op6(&mut d, 1, 0, 0, 0x00, 0x06, 0, 4, 7);
    d.extend_from_slice(&[0xd0, 0, 0]);
    // 6in6 (web-tun6), DR (web-dr6, hop limit 1: dropped), mixed6
    // (every method).
    op6(&mut d, 0, 0, 0, 0x11, 0, 0x02, 2, 9);
    op6(&mut d, 0, 0, 0, 0x22, 0x80, 0x02, 2, 10);
    for c in 0..5u8 {
        op6(&mut d, 0, 0, 0, 0x30 | c, 0, 0x02, 1, 20 + c);
    }
    // Packet Too Big: a 1500-byte NAT66 packet and a TUN one that no
    // longer fits with its outer header.
    op6(&mut d, 0, 0, 0, 0x00, 0, 0x02, 0xff, 11);
    op6(&mut d, 0, 0, 0, 0x10, 0, 0x02, 0xff, 12);
    // Neighbor discovery: solicitations for ours, a VIP, DAD; an
    // advertisement for a real; an invalid solicitation (hop limit 1).
    op6(&mut d, 2, 0, 0, 0x00, 0, 0x00, 0, 0);
    op6(&mut d, 2, 0, 0, 0x11, 0, 0x01, 0, 0);
    op6(&mut d, 2, 0, 0, 0x07, 0, 0x04, 0, 0);
    op6(&mut d, 3, 0, 0, 0x01, 0, 0x03, 0, 0);
    op6(&mut d, 2, 0, 0, 0x00, 0x80, 0x00, 2, 0);
    // Echo to our address, to a VIP, behind a hop-by-hop header.
    op6(&mut d, 4, 0, 0, 0x00, 0, 0, 2, 1);
    op6(&mut d, 4, 0, 0, 0x31, 0, 0, 2, 2);
    op6(&mut d, 4, 0, 0, 0x00, 0x01, 0, 2, 3);
    // 4in6: an IPv4 SYN to 198.18.1.104:80, the reply it may get.
    burst(&mut d, 0, 0, 0x0f, &syn_4in6());
    // Made-up ICMPv6 errors to a VIP and from a real; a real's reply
    // without a flow; a fragment; a UDP checksum of 0.
    op6(&mut d, 7, 0, 0, 0x10, 0, 0, 2, 1);
    op6(&mut d, 7, 0, 0, 0x90, 0, 0, 2, 1);
    op6(&mut d, 6, 0, 0, 0x10, 0, 0x02, 0, 3);
    op6(&mut d, 1, 0, 0, 0x00, 0x05, 0, 1, 4);
    op6(&mut d, 1, 0, 0, 0x00, 0x40, 0, 1, 5);
    // Time passes: flows expire, the table is swept.
    d.extend_from_slice(&[0xb1, 0xaf]);
    d
}

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("seed-ipv6-golden-one-arm", golden([1, 0, 60, 0], 0)),
        ("seed-ipv6-golden-three-arm", golden([0, 2, 4, 0], 0)),
        ("seed-ipv6-ops-one-arm", ops(1, 1)),
        ("seed-ipv6-ops-three-arm", ops(0, 3)),
    ]
}

#[test]
fn the_ipv6_seeds_run_clean_and_reach_the_ipv6_stage() {
    let write = std::env::var_os("LB_WRITE_SEEDS").is_some();
    for (name, input) in seeds() {
        let path = corpus().join(name);
        if write {
            std::fs::write(&path, &input).expect("the corpus is writable");
        }
        let (v, summary) = lb_fuzz_harness::driver::run_with_summary(&input);
        assert!(v.is_empty(), "{name}: {v:?}\n{summary}");
        eprintln!("{name}: {summary}");
        assert!(!summary.contains(" 0 na,"), "{name}: {summary}");
        if name.contains("ops") {
            for want in [
                " 0 echo",
                " 0 frag-needed",
                " 0 icmp errors",
                " 0 solicitations",
            ] {
                assert!(!summary.contains(want), "{name}: {want}: {summary}");
            }
        }
        let on_disk = std::fs::read(&path).unwrap_or_default();
        assert!(
            on_disk == input,
            "{name}: the seed in the corpus is not this input (LB_WRITE_SEEDS=1 writes it)"
        );
    }
}
