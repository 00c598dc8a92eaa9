//! The tunnel-errors seed of the `pipeline` corpus (`fuzz/corpus/pipeline/
//! seed-tunnel-errors`): on the one-arm topology, a client's SYN to the
//! TUN service (198.18.1.101:80) goes into its tunnel; a router inside the
//! tunnel answers "fragmentation needed" (MTU 1400) about that IPIP packet
//! to the appliance, which tells the client from the VIP, announcing 1380
//! (`pipeline/tunnel_errors.rs`); twice, then the same over 6in6 (Packet
//! Too Big, 1400, announced as 1360). Every invariant holds.
//! `LB_WRITE_SEEDS=1 cargo test -p lb-fuzz-harness --test
//! tunnel_errors_seed` writes it.

use std::path::Path;

/// A TCP SYN from 198.19.0.`host`:`port` to 198.18.1.101:80 on the
/// one-arm wan port, DF set.
fn syn(host: u8, port: u16) -> Vec<u8> {
    let mut f = vec![
        0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00, // Ethernet
        0x45, 0, 0, 40, 0x10, 0x01, 0x40, 0, 0x40, 0x06, 0, 0, // IPv4 ..
        198, 19, 0, host, 198, 18, 1, 101, // addresses
    ];
    f.extend_from_slice(&port.to_be_bytes());
    f.extend_from_slice(&[0x00, 0x50, 0, 0, 0x03, 0xe8, 0, 0, 0, 0]);
    f.extend_from_slice(&[0x50, 0x02, 0xfa, 0xf0, 0, 0, 0, 0]);
    f
}

/// A TCP SYN from [2001:2:0:10::10]:`port` to web-tun6
/// ([2001:2:0:1::101]:80) on the one-arm wan port, through the gateway.
fn syn6(port: u16) -> Vec<u8> {
    let mut f = vec![
        0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x86, 0xdd, // Ethernet
        0x60, 0, 0, 0, 0, 20, 6, 64, // IPv6 ..
        0x20, 0x01, 0, 2, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x10, // source
        0x20, 0x01, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0x01, // VIP
    ];
    f.extend_from_slice(&port.to_be_bytes());
    f.extend_from_slice(&[0x00, 0x50, 0, 0, 0x03, 0xe8, 0, 0, 0, 0]);
    f.extend_from_slice(&[0x50, 0x02, 0xfa, 0xf0, 0, 0, 0, 0]);
    f
}

fn seed() -> Vec<u8> {
    // One-arm, one worker, a table of 4 + 60 = 64 flows, the clock from 0.
    let mut d = vec![1, 0, 60, 0];
    for port in [40000u16, 40001] {
        let f = syn(10, port);
        d.extend_from_slice(&[0x40, 0x00, 0x0f]);
        d.extend_from_slice(&(f.len() as u16).to_be_bytes());
        d.extend_from_slice(&f);
        // "Fragmentation needed" (type 3, code 4: kind 0x09) about the
        // IPIP packet just sent (0x40), from inside the tunnel; worker 0.
        d.extend_from_slice(&[0xe0, 0x49, 0]);
    }
    // 6in6: a SYN to web-tun6, then Packet Too Big (kind 0x02) announcing
    // 1280 + 40 * 3 = 1400 (0x0c) about the tunnel packet (0x40).
    let f = syn6(40002);
    d.extend_from_slice(&[0x40, 0x00, 0x0f]);
    d.extend_from_slice(&(f.len() as u16).to_be_bytes());
    d.extend_from_slice(&f);
    d.extend_from_slice(&[0xe0, 0x4e, 0]);
    d
}

#[test]
fn the_tunnel_errors_seed_relays_fragmentation_needed_and_every_invariant() {
    let input = seed();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/pipeline/seed-tunnel-errors");
    if std::env::var_os("LB_WRITE_SEEDS").is_some() {
        std::fs::write(&path, &input).expect("the corpus is writable");
    }
    let (v, summary) = lb_fuzz_harness::driver::run_with_summary(&input);
    eprintln!("{summary}");
    assert!(v.is_empty(), "{v:?}\n{summary}");
    assert!(summary.contains(" 3 icmp errors,"), "{summary}");
    assert_eq!(
        std::fs::read(&path).ok().as_deref(),
        Some(input.as_slice()),
        "the seed in the corpus is not this input (LB_WRITE_SEEDS=1 writes it)"
    );
}
