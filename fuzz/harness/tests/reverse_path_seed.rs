//! The reverse-path seed of the `pipeline` corpus
//! (`fuzz/corpus/pipeline/seed-reverse-path`): on the three-arm topology,
//! UDP datagrams arrive on wan for wan's own address, one from the LAN's
//! network (a source that belongs to another port: forged) and one from
//! a host far away, while wan has a kernel interface (an odd variant) and
//! again without one (even). With the interface, the forged one is dropped
//! as `reverse_path` and the other goes to the kernel; without it both are
//! `not_for_us`. `verdict.to_kernel` checks every mutation of it: nothing
//! from another port's source reaches the kernel, and `reverse_path` is
//! given to nothing else.
//! `LB_WRITE_SEEDS=1 cargo test -p lb-fuzz-harness --test reverse_path_seed`
//! writes it.

use std::path::Path;

/// A BURST of one frame on wan (port 0, worker 0) with every fix-up
/// (lengths, checksums).
fn burst(d: &mut Vec<u8>, frame: &[u8]) {
    d.extend_from_slice(&[0x00, 0x00, 0x0f]);
    d.extend_from_slice(&(frame.len() as u16).to_be_bytes());
    d.extend_from_slice(frame);
}

/// A UDP datagram from `src` to wan's address 198.18.0.2, port 8848, from
/// the wan router's MAC to wan's.
fn udp_to_wan(src: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00];
    f.extend_from_slice(&[0x45, 0, 0, 0, 0x12, 0x36, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[198, 18, 0, 2]);
    f.extend_from_slice(&[0x22, 0x90, 0x22, 0x90, 0, 0, 0, 0, b's', b'y', b'n', b'c']);
    f
}

fn seed() -> Vec<u8> {
    // Topology 0 (three-arm), one worker, capacity 60, clock from 0.
    let mut d = vec![0, 0, 56, 0];
    for reload in [0xc1u8, 0xc0] {
        d.push(reload);
        // A real's address on the LAN, forged on the WAN.
        burst(&mut d, &udp_to_wan([198, 18, 2, 11]));
        // A host on no port's network.
        burst(&mut d, &udp_to_wan([198, 19, 99, 9]));
    }
    d
}

#[test]
fn the_reverse_path_seed_keeps_forged_sources_from_the_kernel() {
    let input = seed();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/pipeline/seed-reverse-path");
    if std::env::var_os("LB_WRITE_SEEDS").is_some() {
        std::fs::write(&path, &input).expect("the corpus is writable");
    }
    let (v, summary) = lb_fuzz_harness::driver::run_with_summary(&input);
    assert!(v.is_empty(), "{v:?}\n{summary}");
    eprintln!("{summary}");
    assert!(
        summary.contains(", 1 consumed,"),
        "the far host's datagram went to the kernel, once: {summary}"
    );
    assert!(summary.contains("1 reverse_path"), "{summary}");
    assert!(summary.contains("2 not_for_us"), "{summary}");
    assert_eq!(
        std::fs::read(&path).ok().as_deref(),
        Some(input.as_slice()),
        "the seed in the corpus is not this input (LB_WRITE_SEEDS=1 writes it)"
    );
}
