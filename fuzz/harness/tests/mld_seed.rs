//! The MLD seed of the `pipeline` corpus (`fuzz/corpus/pipeline/
//! seed-mld-query`): on the three-arm topology, a router's multicast
//! listener query arrives on wan as routers send it (a group's frame, from
//! fe80::1 with hop limit 1, Router Alert in a hop-by-hop header), then the
//! same query in a frame to wan's own MAC, while wan has a kernel interface
//! (an odd variant) and again without one (even). With the interface the
//! first goes to the kernel, which answers it for a switch that snoops MLD;
//! the second does not; without it both are dropped as before.
//! `verdict.to_kernel` checks every mutation of it: of what is sent to an
//! IPv6 group, only neighbor discovery and such a query reach the kernel.
//! `LB_WRITE_SEEDS=1 cargo test -p lb-fuzz-harness --test mld_seed` writes
//! it.

use std::path::Path;

/// A BURST of one frame on wan (port 0, worker 0) with every fix-up
/// (lengths, checksums).
fn burst(d: &mut Vec<u8>, frame: &[u8]) {
    d.extend_from_slice(&[0x00, 0x00, 0x0f]);
    d.extend_from_slice(&(frame.len() as u16).to_be_bytes());
    d.extend_from_slice(frame);
}

/// An MLDv1 general query from fe80::1 to ff02::1, in a frame to
/// `dst_mac`, from the wan router's MAC.
fn mld_query(dst_mac: [u8; 6]) -> Vec<u8> {
    let mut f = dst_mac.to_vec();
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01, 0x86, 0xdd]);
    f.extend_from_slice(&[0x60, 0, 0, 0, 0, 32, 0, 1]);
    f.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&[0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    // Next header ICMPv6; Router Alert (MLD); PadN.
    f.extend_from_slice(&[58, 0, 5, 2, 0, 0, 1, 0]);
    f.extend_from_slice(&[130, 0, 0, 0, 0x27, 0x10, 0, 0]);
    f.extend_from_slice(&[0; 16]);
    f
}

fn seed() -> Vec<u8> {
    // Topology 0 (three-arm), one worker, capacity 60, clock from 0.
    let mut d = vec![0, 0, 56, 0];
    for reload in [0xc1u8, 0xc0] {
        d.push(reload);
        burst(&mut d, &mld_query([0x33, 0x33, 0, 0, 0, 1]));
        burst(&mut d, &mld_query([0x02, 0, 0, 0, 0, 0x02]));
    }
    d
}

#[test]
fn the_mld_seed_gives_the_kernel_a_query_as_routers_send_it() {
    let input = seed();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/pipeline/seed-mld-query");
    if std::env::var_os("LB_WRITE_SEEDS").is_some() {
        std::fs::write(&path, &input).expect("the corpus is writable");
    }
    let (v, summary) = lb_fuzz_harness::driver::run_with_summary(&input);
    assert!(v.is_empty(), "{v:?}\n{summary}");
    eprintln!("{summary}");
    // With the interface, the group's frame to the kernel; the rest dropped.
    assert!(summary.contains(", 1 consumed,"), "{summary}");
    assert!(summary.contains("3 not_for_us"), "{summary}");
    assert_eq!(
        std::fs::read(&path).ok().as_deref(),
        Some(input.as_slice()),
        "the seed in the corpus is not this input (LB_WRITE_SEEDS=1 writes it)"
    );
}
