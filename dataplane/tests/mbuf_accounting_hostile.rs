//! Mbuf accounting (audit): a hostile stream through the whole worker loop (the pipeline is
//! fuzzed on its own; the loop around it, with real mbufs, is not): the
//! golden one-arm frames with bytes of their headers flipped, cut short
//! or grown with garbage, empty and tiny frames, and jumbo frames larger
//! than the mbuf data room (net_pcap hands those out chained: dropped as
//! `multi_segment`). No worker may end, and every mbuf must be back in
//! the pool after the stop. See `accounting`.

mod accounting;

use lb_core::golden;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn a_hostile_stream_ends_no_worker_and_leaks_no_mbuf() {
    let golden: Vec<Vec<u8>> = golden::scenario("one-arm")
        .steps
        .iter()
        .map(|s| s.input.clone())
        .collect();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut frames = Vec::new();
    for _ in 0..60 {
        for g in &golden {
            let mut f = g.clone();
            match rng.below(4) {
                // A few header bytes flipped.
                0 | 1 => {
                    for _ in 0..1 + rng.below(4) {
                        let i = rng.below(f.len().min(80));
                        f[i] ^= 1 << rng.below(8);
                    }
                }
                // Cut short.
                2 => f.truncate(rng.below(f.len())),
                // Grown with garbage.
                _ => {
                    for _ in 0..rng.below(1500) {
                        f.push(rng.next() as u8);
                    }
                }
            }
            frames.push(f);
        }
        frames.push(Vec::new());
        frames.push(vec![0xff; 1 + rng.below(13)]);
        // Jumbo: more than the 2048 bytes of data room, chained on receipt.
        let mut jumbo = golden[rng.below(golden.len())].clone();
        jumbo.resize(2049 + rng.below(9000), 0xaa);
        frames.push(jumbo);
    }
    let mut huge = golden[0].clone();
    huge.resize(65535, 0x55);
    frames.push(huge);
    let c = accounting::run_frames("one-arm", "hostile", &frames, "");
    assert!(
        c.multi_segment >= 2 * 61,
        "the jumbo frames came chained: {c:?}"
    );
}
