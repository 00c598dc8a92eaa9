//! The `pipeline` target reaches the SYN proxy's whole handshake: a seed
//! (kept in `fuzz/corpus/pipeline/seed-syn-proxy-handshake`) that sends a
//! client's SYN to the proxied NAT service, answers the cookie SYN-ACK with
//! the client's ACK, answers the SYN to the real with the real's SYN-ACK,
//! and exchanges data both ways, all through the driver's REPLY op (which
//! numbers each answer as the other end would). Every invariant holds and
//! the flow ends up proxied and answered by its real. The same two over
//! IPv6, to the NAT66 service tls-nat6 (`seed-syn-proxy6-*`); and a
//! restart that resets the real's old connection (`seed-syn-proxy-restart`).

use std::path::Path;

/// A TCP SYN from the golden client 198.19.0.10:40000 to web-nat
/// (198.18.1.100:80) on the one-arm wan port; lengths and checksums are
/// fixed by the frame flags.
fn syn() -> Vec<u8> {
    let mut f = vec![
        0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00, // Ethernet
        0x45, 0, 0, 0, 0x10, 0x01, 0x40, 0, 0x40, 0x06, 0, 0, // IPv4 ..
        198, 19, 0, 10, 198, 18, 1, 100, // addresses
        0x9c, 0x40, 0x00, 0x50, 0, 0, 0x03, 0xe8, 0, 0, 0, 0, // ports, seq, ack
        0xa0, 0x02, 0xfa, 0xf0, 0, 0, 0, 0, // offset 10 words, SYN, window
    ];
    // MSS 1460, SACK permitted, timestamps, NOP, window scale 7.
    f.extend_from_slice(&[
        2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0x13, 0x88, 0, 0, 0, 0, 1, 3, 3, 7,
    ]);
    f
}

/// An input's start: the one-arm topology, 1 worker, capacity 64, the
/// clock from 0; then `frame` as a BURST of one (port 0, worker 0, flags
/// 0x0f: lengths and checksums fixed).
fn opening(frame: &[u8]) -> Vec<u8> {
    let mut d = vec![1, 0, 60, 0];
    d.extend_from_slice(&[0x40, 0x00, 0x0f]);
    d.extend_from_slice(&(frame.len() as u16).to_be_bytes());
    d.extend_from_slice(frame);
    d
}

fn seed() -> Vec<u8> {
    let frame = syn();
    let mut d = opening(&frame);
    // The client answers the SYN-ACK (ACK), the real the SYN (SYN-ACK),
    // the real sends data after the ACK it got, the client answers it.
    for flags in [0x10u8, 0x12, 0x18, 0x18, 0x11, 0x11] {
        d.extend_from_slice(&[0xd0, flags, 0]);
    }
    d
}

#[test]
fn the_pipeline_target_reaches_the_whole_proxied_handshake() {
    let input = seed();
    let (v, summary) = lb_fuzz_harness::driver::run_with_summary(&input);
    assert!(v.is_empty(), "{v:?}\n{summary}");
    assert!(
        summary.contains("1 syn cookies sent") && summary.contains("1 proxied and answered"),
        "{summary}"
    );
    check_kept("seed-syn-proxy-handshake", &input);
}

/// The same handshake, with the client's request sent right after its ACK,
/// before the real answered (kept in `fuzz/corpus/pipeline/
/// seed-syn-proxy-early-data`): the pipeline defers it, the worker's pass
/// after the real's SYN-ACK sends it on, and the real answers it.
fn early_data_seed() -> Vec<u8> {
    let frame = syn();
    let mut d = opening(&frame);
    // The client's ACK (to the cookie SYN-ACK), then its request (to the
    // SYN-ACK again, the second latest sent: with data) before the real's
    // SYN-ACK (to the SYN to the real, now the latest); the real answers
    // the request it then got, with data; the client acknowledges; FINs.
    for (op, flags, b) in [
        (0xd0u8, 0x10u8, 0u8),
        (0xd1, 0x18, 0x80),
        (0xd0, 0x12, 0),
        (0xd0, 0x18, 0x80),
        (0xd0, 0x10, 0),
        (0xd0, 0x11, 0),
        (0xd0, 0x11, 0),
    ] {
        d.extend_from_slice(&[op, flags, b]);
    }
    d
}

#[test]
fn the_pipeline_target_defers_early_data_and_sends_it_on() {
    let input = early_data_seed();
    let (v, summary) = lb_fuzz_harness::driver::run_with_summary(&input);
    assert!(v.is_empty(), "{v:?}\n{summary}");
    assert!(
        summary.contains("1 deferred (1 sent on)")
            && summary.contains("1 proxied and answered")
            && !summary.contains("syn_proxy_pending"),
        "{summary}"
    );
    check_kept("seed-syn-proxy-early-data", &input);
}

/// The handshake with the SYN to the real lost (kept in `fuzz/corpus/
/// pipeline/seed-syn-proxy-syn-retry`): nobody answers it; a second later
/// the client's ACK comes again, and the worker's pass after it sends the
/// SYN to the real again (the driver checks it is the first, byte for
/// byte); the real answers that one, and data goes both ways.
fn syn_retry_seed() -> Vec<u8> {
    syn_retry_seed_of(&syn())
}

/// [`syn_retry_seed`] beginning with the SYN `frame`.
fn syn_retry_seed_of(frame: &[u8]) -> Vec<u8> {
    let mut d = opening(frame);
    // The client's ACK (to the cookie SYN-ACK): the SYN to the real, lost.
    d.extend_from_slice(&[0xd0, 0x10, 0]);
    // 1001 ms on, the client's ACK again (to the SYN-ACK, now the second
    // latest sent): the SYN again. The real answers it (the latest sent),
    // sends data after the ACK it got, the client answers; FINs.
    d.push(0x88);
    for (op, flags) in [
        (0xd1u8, 0x10u8),
        (0xd0, 0x12),
        (0xd0, 0x18),
        (0xd0, 0x18),
        (0xd0, 0x11),
        (0xd0, 0x11),
    ] {
        d.extend_from_slice(&[op, flags, 0]);
    }
    d
}

#[test]
fn the_pipeline_target_sends_a_lost_syn_to_the_real_again() {
    let input = syn_retry_seed();
    let (v, summary) = lb_fuzz_harness::driver::run_with_summary(&input);
    assert!(v.is_empty(), "{v:?}\n{summary}");
    assert!(
        summary.contains("1 SYNs sent again")
            && summary.contains("1 proxied and answered")
            && summary.contains("1 syn_proxy_pending"),
        "{summary}"
    );
    check_kept("seed-syn-proxy-syn-retry", &input);
}

/// A real that never answers (kept in `fuzz/corpus/pipeline/
/// seed-syn-proxy-give-up`): the client's ACK comes again every 876 ms,
/// keeping its flow alive (the fuzz configs' `tcp_syn_timeout` is 2 s),
/// the timer sends the SYN again three times, and 8 s after the last the
/// proxy gives up: the client gets a RST (`syn.reset` checks it) and the
/// flow is gone. Each reply answers the cookie SYN-ACK, which every SYN
/// sent again pushes one further back among the packets sent.
fn give_up_seed() -> Vec<u8> {
    let frame = syn();
    let mut d = opening(&frame);
    d.extend_from_slice(&[0xd0, 0x10, 0]);
    let (step, mut now, mut last_syn, mut resent) = (7 * 125 + 1, 0u32, 0u32, 0u32);
    while now < 18_500 {
        now += step;
        d.push(0x87);
        if resent < 3 && now - last_syn >= 1000 << resent {
            resent += 1;
            last_syn = now;
        }
        d.extend_from_slice(&[0xd0 + 1 + resent as u8, 0x10, 0]);
    }
    d
}

#[test]
fn the_pipeline_target_gives_up_on_a_real_that_never_answers() {
    let input = give_up_seed();
    let (v, summary) = lb_fuzz_harness::driver::run_with_summary(&input);
    assert!(v.is_empty(), "{v:?}\n{summary}");
    assert!(
        summary.contains("3 SYNs sent again, 1 clients reset")
            && summary.contains("0 flows and 0 IPv6 flows at the end"),
        "{summary}"
    );
    check_kept("seed-syn-proxy-give-up", &input);
}

/// [`syn_retry_seed`] with a scarce mbuf pool (`h0 & 0x80`; kept in
/// `seed-syn-proxy-syn-retry-no-mbuf`): a second on, the timer finds the
/// SYN due and the pass no buffer for it (`no_mbuf`); that costs the flow
/// nothing, so the client's ACK right after finds it still due, and the
/// pass after it sends the SYN (the real answers that one).
#[test]
fn the_pipeline_target_sends_a_syn_again_after_one_that_found_no_buffer() {
    let mut input = syn_retry_seed();
    input[0] |= 0x80;
    let (v, summary) = lb_fuzz_harness::driver::run_with_summary(&input);
    assert!(v.is_empty(), "{v:?}\n{summary}");
    assert!(
        summary.contains("1 SYNs sent again")
            && summary.contains("1 no_mbuf")
            && summary.contains("1 proxied and answered"),
        "{summary}"
    );
    check_kept("seed-syn-proxy-syn-retry-no-mbuf", &input);
}

/// A TCP SYN over IPv6 from 2001:2:0:10::a:40000 to tls-nat6
/// ([2001:2:0:1::100]:443) on the one-arm wan port, with the same options
/// (MSS 1440); the checksum is fixed by the frame flags.
fn syn6() -> Vec<u8> {
    let mut f = vec![
        0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x86, 0xdd, // Ethernet
        0x60, 0, 0, 0, 0, 40, 6, 64, // IPv6: payload 40, TCP, hop limit 64
        0x20, 0x01, 0, 2, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x0a, // client
        0x20, 0x01, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, // VIP
        0x9c, 0x40, 0x01, 0xbb, 0, 0, 0x03, 0xe8, 0, 0, 0, 0, // ports, seq, ack
        0xa0, 0x02, 0xfa, 0xf0, 0, 0, 0, 0, // offset 10 words, SYN, window
    ];
    f.extend_from_slice(&[
        2, 4, 5, 0xa0, 4, 2, 8, 10, 0, 0, 0x13, 0x88, 0, 0, 0, 0, 1, 3, 3, 7,
    ]);
    f
}

fn with_frame(frame: &[u8], replies: &[(u8, u8, u8)]) -> Vec<u8> {
    let mut d = opening(frame);
    for &(op, flags, b) in replies {
        d.extend_from_slice(&[op, flags, b]);
    }
    d
}

fn check_kept(name: &str, input: &[u8]) {
    let kept = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../corpus/pipeline")
        .join(name);
    if std::env::var_os("LB_WRITE_SEEDS").is_some() {
        std::fs::write(&kept, input).unwrap();
    }
    let on_disk = std::fs::read(&kept).unwrap_or_default();
    assert_eq!(
        on_disk,
        input,
        "the seed in the corpus is this input (LB_WRITE_SEEDS=1 writes {})",
        kept.display()
    );
}

#[test]
fn the_pipeline_target_reaches_the_whole_proxied_handshake_over_ipv6() {
    let replies: Vec<(u8, u8, u8)> = [0x10u8, 0x12, 0x18, 0x18, 0x11, 0x11]
        .into_iter()
        .map(|f| (0xd0, f, 0))
        .collect();
    let input = with_frame(&syn6(), &replies);
    let (v, summary) = lb_fuzz_harness::driver::run_with_summary(&input);
    assert!(v.is_empty(), "{v:?}\n{summary}");
    assert!(
        summary.contains("1 syn cookies sent")
            && summary.contains("1 IPv6 flows at the end, 1 proxied and answered"),
        "{summary}"
    );
    check_kept("seed-syn-proxy6-handshake", &input);
}

#[test]
fn the_pipeline_target_defers_ipv6_early_data_and_sends_it_on() {
    let input = with_frame(
        &syn6(),
        &[
            (0xd0, 0x10, 0),
            (0xd1, 0x18, 0x80),
            (0xd0, 0x12, 0),
            (0xd0, 0x18, 0x80),
            (0xd0, 0x10, 0),
            (0xd0, 0x11, 0),
            (0xd0, 0x11, 0),
        ],
    );
    let (v, summary) = lb_fuzz_harness::driver::run_with_summary(&input);
    assert!(v.is_empty(), "{v:?}\n{summary}");
    assert!(
        summary.contains("1 deferred (1 sent on)")
            && summary.contains("1 proxied and answered")
            && !summary.contains("syn_proxy_pending"),
        "{summary}"
    );
    check_kept("seed-syn-proxy6-early-data", &input);
}

/// [`syn_retry_seed`] over IPv6, to tls-nat6 (kept in
/// `seed-syn-proxy6-syn-retry`): the SYN to the NAT66 real sent again.
#[test]
fn the_pipeline_target_sends_a_lost_ipv6_syn_to_the_real_again() {
    let input = syn_retry_seed_of(&syn6());
    let (v, summary) = lb_fuzz_harness::driver::run_with_summary(&input);
    assert!(v.is_empty(), "{v:?}\n{summary}");
    assert!(
        summary.contains("1 SYNs sent again")
            && summary.contains("1 IPv6 flows at the end, 1 proxied and answered")
            && summary.contains("1 syn_proxy_pending"),
        "{summary}"
    );
    check_kept("seed-syn-proxy6-syn-retry", &input);
}

/// A client that starts again while its proxied flow waits, and a real
/// that still holds the first connection (kept in `fuzz/corpus/pipeline/
/// seed-syn-proxy-restart`): the client's SYN and ACK (the SYN to the
/// real, unanswered); another client's handshake, which `rr` sends to the
/// other real (held for its ARP); a new SYN from the first client's port
/// with another ISN, and the ACK of its cookie (the waiting flow replaced:
/// the SYN with the new ISN to the first real again); the real answers
/// the first SYN with a bare ACK of it, which gets a RST at that number
/// (`out.syn-proxy`: `RstToReal`), then the new SYN with its SYN-ACK.
fn restart_seed() -> Vec<u8> {
    let first = syn();
    let with = |at: usize, bytes: &[u8]| {
        let mut f = syn();
        f[at..at + bytes.len()].copy_from_slice(bytes);
        f
    };
    // Another client port (14 + 20: the TCP source port), another ISN
    // (14 + 20 + 4: the sequence number).
    let other = with(34, &40001u16.to_be_bytes());
    let again = with(38, &0x7000_0000u32.to_be_bytes());
    let burst = |d: &mut Vec<u8>, f: &[u8]| {
        d.extend_from_slice(&[0x40, 0x00, 0x0f]);
        d.extend_from_slice(&(f.len() as u16).to_be_bytes());
        d.extend_from_slice(f);
    };
    let mut d = opening(&first);
    d.extend_from_slice(&[0xd0, 0x10, 0]);
    burst(&mut d, &other);
    d.extend_from_slice(&[0xd0, 0x10, 0]);
    burst(&mut d, &again);
    // Out so far, latest last: SYN-ACK 1, SYN 1 to the real, the other
    // client's SYN-ACK and its SYN to the other real (held), SYN-ACK 2.
    // The client ACKs the latest (out: SYN 2 to the real); the real ACKs
    // the fifth latest (SYN 1), and answers the second latest after the
    // RST (SYN 2).
    for (op, flags) in [(0xd0u8, 0x10u8), (0xd4, 0x10), (0xd1, 0x12), (0xd0, 0x18)] {
        d.extend_from_slice(&[op, flags, 0]);
    }
    d
}

#[test]
fn the_pipeline_target_restarts_a_waiting_flow_and_resets_the_reals_old_one() {
    let input = restart_seed();
    let (v, summary) = lb_fuzz_harness::driver::run_with_summary(&input);
    assert!(v.is_empty(), "{v:?}\n{summary}");
    // The real's ACK of its first SYN was answered (a RST), not dropped,
    // and the new connection opened.
    assert!(
        summary.contains("8 sent")
            && summary.contains("3 syn cookies sent")
            && summary.contains("1 proxied and answered")
            && !summary.contains("syn_proxy_pending"),
        "{summary}"
    );
    check_kept("seed-syn-proxy-restart", &input);
}
