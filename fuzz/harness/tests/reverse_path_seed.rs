//! The reverse-path seed of the `pipeline` corpus
//! (`fuzz/corpus/pipeline/seed-reverse-path`): on the three-arm topology,
//! UDP datagrams arrive on wan for wan's own address, one from the LAN's
//! network (a source that belongs to another port: forged) and one from
//! a host far away, then an ICMPv6 echo reply and a neighbor advertisement
//! behind a hop-by-hop header, both from the LAN's IPv6 network, while wan
//! has a kernel interface (an odd variant) and again without one (even).
//! With the interface, the forged datagram and the echo reply are dropped as
//! `reverse_path`, the other datagram and the advertisement (neighbor
//! discovery: held to the link by its own rules) go to the kernel; without
//! it they are dropped as before. `verdict.to_kernel` checks every mutation of it: nothing
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

/// An IPv6 frame on wan from `src` (2001:2:0:2::99, on the LAN's network)
/// to wan's address 2001:2::2, hop limit 255, next header `next`, with
/// `rest` after the fixed header (lengths and checksums fixed up).
fn ipv6_to_wan(next: u8, rest: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x86, 0xdd];
    f.extend_from_slice(&[0x60, 0, 0, 0, 0, 0, next, 255]);
    f.extend_from_slice(&[0x20, 0x01, 0, 2, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0x99]);
    f.extend_from_slice(&[0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    f.extend_from_slice(rest);
    f
}

/// An echo reply (ICMPv6 129) from the LAN's network: not neighbor
/// discovery, which the kernel gets unchecked, so a source of another
/// port's is refused (found in review: the oracle exempted ICMPv6 other
/// than neighbor discovery; the seed had a redirect, which no longer goes
/// to the kernel from anywhere).
fn echo_reply_from_lan() -> Vec<u8> {
    ipv6_to_wan(
        58,
        &[129, 0, 0, 0, 0x12, 0x34, 0, 1, b'p', b'i', b'n', b'g'],
    )
}

/// A neighbor advertisement behind a hop-by-hop header, for a target that
/// is not ours: the kernel's, whatever its source (found in review: the
/// oracle looked for it right after the fixed header only).
fn advert_behind_hop_by_hop() -> Vec<u8> {
    let mut rest = vec![58, 0, 1, 4, 0, 0, 0, 0];
    rest.extend_from_slice(&[136, 0, 0, 0, 0, 0, 0, 0]);
    rest.extend_from_slice(&[0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x77]);
    ipv6_to_wan(0, &rest)
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
        burst(&mut d, &echo_reply_from_lan());
        burst(&mut d, &advert_behind_hop_by_hop());
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
    // With the interface: the far host's datagram and the advertisement
    // to the kernel, the forged datagram and the redirect refused.
    assert!(summary.contains(", 2 consumed,"), "{summary}");
    assert!(summary.contains("2 reverse_path"), "{summary}");
    // Without it, as before the exception path.
    assert!(summary.contains("2 not_for_us"), "{summary}");
    assert!(summary.contains("1 icmp_not_handled"), "{summary}");
    assert!(summary.contains("1 ndp_ignored"), "{summary}");
    assert_eq!(
        std::fs::read(&path).ok().as_deref(),
        Some(input.as_slice()),
        "the seed in the corpus is not this input (LB_WRITE_SEEDS=1 writes it)"
    );
}
