//! The floating-gateway seed of the `pipeline` corpus
//! (`fuzz/corpus/pipeline/seed-gateway-roles`): on the one-arm topology,
//! a real asks ARP for the floating gateway, pings it and sends it a UDP
//! datagram while the snapshot is the active appliance's (an odd variant)
//! and again on a standby's (even): the first two answered once each,
//! refused the other time, which `verdict.gateway` checks for every
//! mutation of it, and the datagram never answered nor the kernel's
//! (`verdict.to_kernel`).
//! `LB_WRITE_SEEDS=1 cargo test -p lb-fuzz-harness --test gateway_seed`
//! writes it.

use std::path::Path;

/// A BURST of one frame with every fix-up (lengths, checksums).
fn burst(d: &mut Vec<u8>, frame: &[u8]) {
    d.extend_from_slice(&[0x00, 0x00, 0x0f]);
    d.extend_from_slice(&(frame.len() as u16).to_be_bytes());
    d.extend_from_slice(frame);
}

/// Real 198.18.0.11 (02:00:00:00:02:11) asks who has 198.18.0.5.
fn arp_for_gateway() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0x02, 0x11, 0x08, 0x06]);
    f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0x02, 0x11, 198, 18, 0, 11]);
    f.extend_from_slice(&[0, 0, 0, 0, 0, 0, 198, 18, 0, 5]);
    f
}

/// Real 198.18.0.11 pings 198.18.0.5 (lengths and checksums fixed by the
/// frame flags).
fn echo_to_gateway() -> Vec<u8> {
    let mut f = vec![
        0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0x02, 0x11, 0x08, 0x00,
    ];
    f.extend_from_slice(&[0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 1, 0, 0]);
    f.extend_from_slice(&[198, 18, 0, 11, 198, 18, 0, 5]);
    f.extend_from_slice(&[8, 0, 0, 0, 0x00, 0x01, 0x00, 0x01, b'p', b'i', b'n', b'g']);
    f
}

/// Real 198.18.0.11 sends a UDP datagram to 198.18.0.5 port 161: not
/// answered, and never the kernel's (wan has a kernel interface on the
/// active appliance; `verdict.to_kernel`).
fn udp_to_gateway() -> Vec<u8> {
    let mut f = vec![
        0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0x02, 0x11, 0x08, 0x00,
    ];
    f.extend_from_slice(&[0x45, 0, 0, 0, 0x12, 0x35, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&[198, 18, 0, 11, 198, 18, 0, 5]);
    f.extend_from_slice(&[0x13, 0x88, 0, 161, 0, 0, 0, 0, b's', b'n', b'm', b'p']);
    f
}

fn seed() -> Vec<u8> {
    let mut d = vec![1, 0, 60, 0];
    for reload in [0xc1u8, 0xc0] {
        d.push(reload);
        burst(&mut d, &arp_for_gateway());
        burst(&mut d, &echo_to_gateway());
        burst(&mut d, &udp_to_gateway());
    }
    d
}

#[test]
fn the_gateway_seed_is_answered_only_by_the_active_snapshot() {
    let input = seed();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/pipeline/seed-gateway-roles");
    if std::env::var_os("LB_WRITE_SEEDS").is_some() {
        std::fs::write(&path, &input).expect("the corpus is writable");
    }
    let (v, summary) = lb_fuzz_harness::driver::run_with_summary(&input);
    assert!(v.is_empty(), "{v:?}\n{summary}");
    eprintln!("{summary}");
    assert!(
        summary.contains(" 1 arp,"),
        "one ARP reply, while active: {summary}"
    );
    assert!(
        summary.contains(" 1 echo,"),
        "one echo reply, while active: {summary}"
    );
    assert!(summary.contains("1 arp_ignored"), "{summary}");
    assert!(summary.contains("3 not_for_us"), "{summary}");
    assert_eq!(
        std::fs::read(&path).ok().as_deref(),
        Some(input.as_slice()),
        "the seed in the corpus is not this input (LB_WRITE_SEEDS=1 writes it)"
    );
}
