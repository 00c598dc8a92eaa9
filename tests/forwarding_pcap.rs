//! NAT, TUN and DR through the real `lb-appliance` binary on a DPDK
//! `net_pcap` device (one-arm: clients, router and reals on one port). The
//! golden steps of `tests/fixtures/one-arm` (built by scapy, see
//! `scripts/gen-forwarding-fixtures.py`) are replayed in order; what the appliance transmits must equal scapy's
//! expected frames byte for byte, every drop must be counted under its
//! reason, and tshark must find every checksum right. The IPv6 golden steps
//! (`tests/fixtures/ipv6`) go through the binary the same way, and the SYN
//! proxy's answers to the SYNs of `tests/fixtures/syn-proxy` and
//! `syn-proxy6` as far as a random cookie key and a running clock allow.
//! Needs no root.

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

/// The SYN proxy's answers through the binary, over IPv4 and IPv6: the
/// client SYNs of `tests/fixtures/syn-proxy` and `syn-proxy6` (those the
/// scenario answers with a SYN-ACK), alone, in order. The rest of those
/// scenarios cannot go through the binary: their ACKs carry cookies made
/// with the golden key, and the binary's key is random. So its SYN-ACKs
/// equal scapy's except where the key and the running clock go: the
/// cookie's MAC (its top 24 bits) and time bit (bit 0), the timestamp
/// value, and the TCP checksum over them, which tshark checks instead.
/// What is left pins, on the DPDK worker and its mbufs, every header and
/// option byte, the options the cookie carries (its bits 7..1), and the
/// length of a frame that grows (a SYN without options) or shrinks (one
/// behind an extension header) into its SYN-ACK.
#[test]
fn syn_proxy_syn_acks_through_the_binary_match_but_for_key_and_clock() {
    for name in ["syn-proxy", "syn-proxy6"] {
        let scenario = golden::scenario(name);
        let syns: Vec<&golden::Step> = scenario
            .steps
            .iter()
            .filter(|s| {
                let answers = s.output.as_ref().is_ok_and(|(_, out)| {
                    tcp_flags(out) == Some(SYNACK) && tcp_flags(&s.input) == Some(SYN)
                });
                s.in_port == 0 && answers
            })
            .collect();
        assert!(syns.len() >= 2, "{name}: SYNs answered: {}", syns.len());
        if name == "syn-proxy6" {
            // The SYN behind a destination-options header, whose SYN-ACK
            // is shorter than it, goes through too.
            assert!(
                syns.iter().any(|s| s.input.get(20) == Some(&60)),
                "syn-proxy6: the extension-header SYN is among those sent"
            );
        }
        let frames: Vec<&[u8]> = syns.iter().map(|s| s.input.as_slice()).collect();
        let run = common::run_on_pcap(&format!("pcap-{name}"), &scenario.config, &frames);
        assert_eq!(
            run.sent.len(),
            syns.len(),
            "{name}: frames sent:\n{}",
            run.log
        );
        for (s, got) in syns.iter().zip(&run.sent) {
            let (port, want) = s.output.as_ref().expect("answered");
            assert_eq!(*port, 0);
            assert_eq!(
                mask_key_and_clock(got),
                mask_key_and_clock(want),
                "{name}: {}\n  expected {want:02x?}\n  got      {got:02x?}",
                s.description
            );
        }
        assert!(
            run.log
                .contains(&format!("syn cookies sent {} accepted 0", syns.len())),
            "{name}: cookies counted:\n{}",
            run.log
        );
        if let Some(bad) = common::tshark_bad_checksums(&run.out_path) {
            assert!(bad.is_empty(), "{name}: tshark flags: {bad}");
        }
    }
}

const SYN: u8 = 0x02;
const SYNACK: u8 = 0x12;

/// Where the TCP header of an Ethernet frame starts: after IPv4's header,
/// or after IPv6's and its hop-by-hop, routing and destination-options
/// headers (None for anything else).
fn tcp_start(frame: &[u8]) -> Option<usize> {
    let l3 = 14;
    match (frame.get(12..14)?, frame.get(l3)?) {
        ([0x08, 0x00], v) if v >> 4 == 4 && frame.get(l3 + 9) == Some(&6) => {
            Some(l3 + usize::from(v & 0x0f) * 4)
        }
        ([0x86, 0xdd], v) if v >> 4 == 6 => {
            let (mut next, mut at) = (*frame.get(l3 + 6)?, l3 + 40);
            for _ in 0..8 {
                match next {
                    6 => return Some(at),
                    0 | 43 | 60 => {
                        next = *frame.get(at)?;
                        at += (usize::from(*frame.get(at + 1)?) + 1) * 8;
                    }
                    _ => return None,
                }
            }
            None
        }
        _ => None,
    }
}

fn tcp_flags(frame: &[u8]) -> Option<u8> {
    frame.get(tcp_start(frame)? + 13).copied()
}

/// `frame` with what the cookie key and the clock decide zeroed: the
/// cookie's MAC and time bit (sequence number), the TCP checksum and the
/// timestamp value (the option's first four bytes after kind and length).
fn mask_key_and_clock(frame: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    let Some(t) = tcp_start(frame) else {
        return f;
    };
    let Some(&offset) = frame.get(t + 12) else {
        return f;
    };
    let end = (t + usize::from(offset >> 4) * 4).min(f.len());
    if end < t + 20 {
        return f;
    }
    f[t + 4..t + 7].fill(0);
    f[t + 7] &= 0xfe;
    f[t + 16..t + 18].fill(0);
    let mut at = t + 20;
    while at < end {
        match f[at] {
            0 => break,
            1 => at += 1,
            kind => {
                let len = f.get(at + 1).map_or(0, |&l| usize::from(l));
                if len < 2 || at + len > end {
                    break;
                }
                if kind == 8 && len == 10 {
                    f[at + 2..at + 6].fill(0);
                }
                at += len;
            }
        }
    }
    f
}

/// A packet held while its real's MAC address is unknown leaves before the
/// packets that came after it, when the answer that makes the address
/// known comes in between (found in audit: the held one was released at
/// the end of the poll, behind the later packets of its flow). The real's
/// static neighbor is left out of the one-arm config, so the appliance
/// learns it from the real's ARP request for our address, the second of
/// the three frames.
#[test]
fn a_packet_held_for_its_real_leaves_before_later_ones() {
    let scenario = golden::scenario("one-arm");
    let static_real = "[[neighbors]]\naddress = \"198.18.0.11\"\nmac = \"02:00:00:00:02:11\"\n";
    assert!(
        scenario.config.contains(static_real),
        "one-arm names the real's MAC"
    );
    let config = scenario.config.replace(static_real, "");
    let step = |description: &str| {
        scenario
            .steps
            .iter()
            .find(|s| s.description == description)
            .unwrap_or_else(|| panic!("one-arm has no step {description:?}"))
    };
    let syn = step("nat: tcp syn to the vip goes to the real, dst and port rewritten");
    let arp = step("arp request from a real for the address of the reals' port");
    let data = step("nat: later data packet (psh-ack) of the flow gets the same rewrite");
    let frames = [
        syn.input.as_slice(),
        arp.input.as_slice(),
        data.input.as_slice(),
    ];
    let run = common::run_on_pcap("pcap-held", &config, &frames);
    let at = |s: &golden::Step| {
        let (_, out) = s.output.as_ref().expect("a frame out");
        run.sent
            .iter()
            .position(|f| f == out)
            .unwrap_or_else(|| panic!("{}: not sent:\n{}", s.description, run.log))
    };
    assert!(
        at(syn) < at(data),
        "the held SYN went after the later data packet:\n{}",
        run.log
    );
    at(arp);
}
