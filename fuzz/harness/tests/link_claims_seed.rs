//! The link-claims seed of the `pipeline` corpus (`fuzz/corpus/pipeline/
//! seed-link-claims`): on the three-arm topology, what any host on wan's
//! segment can send about the segment itself, while wan has a kernel
//! interface (an odd variant) and again without one (even): a real that
//! ARP teaches (198.18.0.12, at its own MAC), then a gratuitous ARP and an
//! unsolicited ARP reply from a stranger moving it to the stranger's MAC,
//! an ICMPv6 router advertisement and redirect, and an ICMP redirect. The
//! claims move nothing but have the real asked about again (the oracle's
//! `hold.mac` and neighbor checks see every mutation), and nothing reaches
//! the kernel (`verdict.to_kernel`): the appliance's routes are its
//! config's.
//! `LB_WRITE_SEEDS=1 cargo test -p lb-fuzz-harness --test link_claims_seed`
//! writes it.

use std::path::Path;

/// A BURST of one frame on wan (port 0, worker 0) with every fix-up
/// (lengths, checksums).
fn burst(d: &mut Vec<u8>, frame: &[u8]) {
    d.extend_from_slice(&[0x00, 0x00, 0x0f]);
    d.extend_from_slice(&(frame.len() as u16).to_be_bytes());
    d.extend_from_slice(frame);
}

/// The MAC a stranger on the segment claims the router's address at.
const STRANGER: [u8; 6] = [0x02, 0, 0, 0, 0x66, 0x66];

/// The real ARP resolves: 198.18.0.12, at this MAC.
const REAL: [u8; 4] = [198, 18, 0, 12];
const REAL_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x12];

/// An ARP frame of operation `op` from `mac`, to `dst_mac`, saying that
/// the real is at `mac`, about `target`.
fn arp(dst_mac: [u8; 6], mac: [u8; 6], op: u8, target: [u8; 4]) -> Vec<u8> {
    let mut f = dst_mac.to_vec();
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, op]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&REAL);
    f.extend_from_slice(&if op == 1 {
        [0; 6]
    } else {
        [0x02, 0, 0, 0, 0, 0x02]
    });
    f.extend_from_slice(&target);
    f
}

/// An IPv6 frame from the stranger at fe80::1 (the router's link-local
/// address) to `dst`, hop limit 255, ICMPv6 `message`.
fn icmpv6(dst_mac: [u8; 6], dst: [u8; 16], message: &[u8]) -> Vec<u8> {
    let mut f = dst_mac.to_vec();
    f.extend_from_slice(&STRANGER);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 0, 58, 255]);
    f.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&dst);
    f.extend_from_slice(message);
    f
}

const WAN6: [u8; 16] = [0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const ALL_NODES: [u8; 16] = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const WAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

fn seed() -> Vec<u8> {
    // Topology 0 (three-arm), one worker, capacity 60, clock from 0.
    let mut d = vec![0, 0, 56, 0];
    for reload in [0xc1u8, 0xc0] {
        d.push(reload);
        // The real's own reply teaches it; a gratuitous ARP (sender and
        // target the real's), broadcast, and a reply to us nobody asked
        // for, both from the stranger, claim it.
        burst(&mut d, &arp(WAN_MAC, REAL_MAC, 2, [198, 18, 0, 2]));
        burst(&mut d, &arp([0xff; 6], STRANGER, 1, REAL));
        burst(&mut d, &arp(WAN_MAC, STRANGER, 2, [198, 18, 0, 2]));
        // A router advertisement to all nodes: router lifetime 1800 s, a
        // prefix information option for 2001:2:0:99::/64 (autonomous).
        let mut ra = vec![134, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0];
        ra.extend_from_slice(&[
            3, 4, 64, 0xc0, 0, 0, 0x0e, 0x10, 0, 0, 0x0e, 0x10, 0, 0, 0, 0,
        ]);
        ra.extend_from_slice(&[0x20, 0x01, 0, 2, 0, 0, 0, 0x99, 0, 0, 0, 0, 0, 0, 0, 0]);
        burst(&mut d, &icmpv6([0x33, 0x33, 0, 0, 0, 1], ALL_NODES, &ra));
        // A redirect to wan's address: 2001:2:0:10::10 is better reached
        // through fe80::66.
        let mut redirect = vec![137, 0, 0, 0, 0, 0, 0, 0];
        redirect.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x66]);
        redirect.extend_from_slice(&[0x20, 0x01, 0, 2, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x10]);
        burst(&mut d, &icmpv6(WAN_MAC, WAN6, &redirect));
        // An ICMP redirect (type 5, code 1: host) to wan's address, quoting
        // a packet of wan's to 198.19.0.10: use 198.18.0.66.
        let mut f = WAN_MAC.to_vec();
        f.extend_from_slice(&STRANGER);
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 0, 0, 1, 0, 0, 64, 1, 0, 0]);
        f.extend_from_slice(&[198, 18, 0, 1, 198, 18, 0, 2]);
        f.extend_from_slice(&[5, 1, 0, 0, 198, 18, 0, 66]);
        f.extend_from_slice(&[0x45, 0, 0, 28, 0, 2, 0, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&[198, 18, 0, 2, 198, 19, 0, 10]);
        f.extend_from_slice(&[0x22, 0x90, 0x22, 0x90, 0, 8, 0, 0]);
        burst(&mut d, &f);
    }
    d
}

#[test]
fn the_link_claims_seed_moves_nothing_and_gives_the_kernel_nothing() {
    let input = seed();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/pipeline/seed-link-claims");
    if std::env::var_os("LB_WRITE_SEEDS").is_some() {
        std::fs::write(&path, &input).expect("the corpus is writable");
    }
    let (v, summary) = lb_fuzz_harness::driver::run_with_summary(&input);
    assert!(v.is_empty(), "{v:?}\n{summary}");
    eprintln!("{summary}");
    assert!(!summary.contains("to_kernel"), "{summary}");
    // Each variant's first claim has the real asked about again, once.
    assert!(summary.contains(", 2 arp requests,"), "{summary}");
    assert!(
        summary.contains("2 icmp_not_handled, 4 ndp_ignored"),
        "{summary}"
    );
    assert_eq!(
        std::fs::read(&path).ok().as_deref(),
        Some(input.as_slice()),
        "the seed in the corpus is not this input (LB_WRITE_SEEDS=1 writes it)"
    );
}
