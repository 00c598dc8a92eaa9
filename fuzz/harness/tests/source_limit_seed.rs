//! The per-source seed of the `pipeline` corpus (`fuzz/corpus/pipeline/
//! seed-source-limit`): on the one-arm topology, a table of 5 flows and a
//! per-source limit of 2 (the capacity byte's top values set one), one
//! client opens four proxied NAT connections to web-nat (SYN, the client's
//! ACK of the cookie, the real's SYN-ACK, data both ways), then another
//! client one. The table is pressed from the third flow on: the client's
//! share is two confirmed flows, what it opens beyond is held one-way or
//! refused (`source_limit`), and every invariant holds (the table's audit
//! takes a held flow). `LB_WRITE_SEEDS=1 cargo test -p lb-fuzz-harness
//! --test source_limit_seed` writes it.

use std::path::Path;

/// A TCP SYN from 198.19.0.`host`:`port` to web-nat (198.18.1.100:80) on
/// the one-arm wan port, with MSS, SACK, timestamps and window scale.
fn syn(host: u8, port: u16) -> Vec<u8> {
    let mut f = vec![
        0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00, // Ethernet
        0x45, 0, 0, 0, 0x10, 0x01, 0x40, 0, 0x40, 0x06, 0, 0, // IPv4 ..
        198, 19, 0, host, 198, 18, 1, 100, // addresses
    ];
    f.extend_from_slice(&port.to_be_bytes());
    f.extend_from_slice(&[0x00, 0x50, 0, 0, 0x03, 0xe8, 0, 0, 0, 0]);
    f.extend_from_slice(&[0xa0, 0x02, 0xfa, 0xf0, 0, 0, 0, 0]);
    f.extend_from_slice(&[
        2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0x13, 0x88, 0, 0, 0, 0, 1, 3, 3, 7,
    ]);
    f
}

fn seed() -> Vec<u8> {
    // One-arm, one worker; capacity byte 184: a table of 4 + 184 % 61 = 5
    // flows, a per-source limit of 2 + 184 % 4 = 2; the clock from 0.
    let mut d = vec![1, 0, 184, 0];
    for (host, port) in [
        (10, 40000u16),
        (10, 40001),
        (10, 40002),
        (10, 40003),
        (11, 40000),
    ] {
        let f = syn(host, port);
        d.extend_from_slice(&[0x40, 0x00, 0x0f]);
        d.extend_from_slice(&(f.len() as u16).to_be_bytes());
        d.extend_from_slice(&f);
        // The client's ACK of the cookie, the real's SYN-ACK, data from
        // the real, the client's ACK of it.
        for flags in [0x10u8, 0x12, 0x18, 0x10] {
            d.extend_from_slice(&[0xd0, flags, 0]);
        }
    }
    d
}

#[test]
fn the_source_limit_seed_holds_a_share_and_every_invariant() {
    let input = seed();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/pipeline/seed-source-limit");
    if std::env::var_os("LB_WRITE_SEEDS").is_some() {
        std::fs::write(&path, &input).expect("the corpus is writable");
    }
    let (v, summary) = lb_fuzz_harness::driver::run_with_summary(&input);
    assert!(v.is_empty(), "{v:?}\n{summary}");
    eprintln!("{summary}");
    assert!(summary.contains(" source_limit;"), "{summary}");
    assert!(
        summary.ends_with(", 1 held one-way for their source"),
        "{summary}"
    );
    assert_eq!(
        std::fs::read(&path).ok().as_deref(),
        Some(input.as_slice()),
        "the seed in the corpus is not this input (LB_WRITE_SEEDS=1 writes it)"
    );
}
