//! Per-packet cost of `Pipeline::process` on prepared buffers, single
//! thread, no DPDK: established flows (NAT, TUN, DR) with 1 thousand and
//! 1 million active flows, and new flows (SYN: lookup miss, schedule,
//! insert) with `wrr` and `mh`.
//!
//! `cargo bench -p lb-core --bench pipeline` measures; without
//! `--bench` (as `cargo test --all-targets` runs it) it only does a smoke
//! run of about a thousand packets per case and checks the verdicts.
//!
//! Every packet is first restored into a reused `VecBuf` (the pipeline
//! rewrites it in place); that restore alone is measured in the same run
//! as the baseline and subtracted in the "minus baseline" column.
#![deny(unsafe_code)]

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use lb_config::{Config, MacAddr};
use lb_core::flow::Flow;
use lb_core::pipeline::{Pipeline, Verdict};
use lb_core::snapshot::{Ids, Snapshot};
use lb_core::stats::DropReason;
use lb_core::wire::{
    tcp, EtherType, EthernetFrame, IpProtocol, Ipv4Packet, Ipv4Repr, TcpFlags, TcpPacket,
};
use lb_core::{PacketBuf, VecBuf, WorkerStats};

const OUR_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const GATEWAY_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const NOW: u32 = 1000;

const VIP_NAT: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 100);
const VIP_TUN: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 101);
const VIP_DR: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 102);
const VIP_MH: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 103);

/// One port with static neighbors; a service per method, each `wrr` over
/// 4 reals on the connected network, and a `mh` NAT service.
const CONFIG: &str = r#"
[workers]
lcores = [1]
[[ports]]
name = "wan"
device = "net_null0"
address = "198.18.0.2/24"
mac = "02:00:00:00:00:02"
gateway = "198.18.0.1"
mtu = 1500
[[neighbors]]
address = "198.18.0.1"
mac = "02:00:00:00:00:01"
[[neighbors]]
address = "198.18.0.11"
mac = "02:00:00:00:01:11"
[[neighbors]]
address = "198.18.0.12"
mac = "02:00:00:00:01:12"
[[neighbors]]
address = "198.18.0.13"
mac = "02:00:00:00:01:13"
[[neighbors]]
address = "198.18.0.14"
mac = "02:00:00:00:01:14"

[[services]]
name = "web-nat"
vip = "198.18.1.100"
port = 80
scheduler = "wrr"
forwarding = "nat"
[[services.reals]]
address = "198.18.0.11"
port = 8080
weight = 4
[[services.reals]]
address = "198.18.0.12"
port = 8080
weight = 3
[[services.reals]]
address = "198.18.0.13"
port = 8080
weight = 2
[[services.reals]]
address = "198.18.0.14"
port = 8080
weight = 1

[[services]]
name = "web-tun"
vip = "198.18.1.101"
port = 80
scheduler = "wrr"
forwarding = "tun"
[[services.reals]]
address = "198.18.0.11"
weight = 4
[[services.reals]]
address = "198.18.0.12"
weight = 3
[[services.reals]]
address = "198.18.0.13"
weight = 2
[[services.reals]]
address = "198.18.0.14"
weight = 1

[[services]]
name = "web-dr"
vip = "198.18.1.102"
port = 80
scheduler = "wrr"
forwarding = "dr"
[[services.reals]]
address = "198.18.0.11"
weight = 4
[[services.reals]]
address = "198.18.0.12"
weight = 3
[[services.reals]]
address = "198.18.0.13"
weight = 2
[[services.reals]]
address = "198.18.0.14"
weight = 1

[[services]]
name = "web-mh"
vip = "198.18.1.103"
port = 80
scheduler = "mh"
forwarding = "nat"
[[services.reals]]
address = "198.18.0.11"
port = 8081
[[services.reals]]
address = "198.18.0.12"
port = 8081
[[services.reals]]
address = "198.18.0.13"
port = 8081
[[services.reals]]
address = "198.18.0.14"
port = 8081
"#;

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

/// Ethernet + IPv4 + TCP, no payload.
const FRAME_LEN: usize = 54;
/// Frames per burst, as a worker receives them (`[dpdk] burst`).
const BURST: usize = 32;
/// Frames are stored one per cache line.
const STRIDE: usize = 64;

/// Prepared frames of distinct flows, one per cache line, laid out in the
/// order they are sent (like an rx ring: the frames are read one after the
/// other, the flows they belong to are in random order).
struct Pool {
    bytes: Vec<u8>,
}

/// Flow `i`'s client: 198.19.0.0/16, then the next source port.
fn client(i: u32) -> (Ipv4Addr, u16) {
    (
        Ipv4Addr::from(0xc613_0000 + (i & 0xffff)),
        1024 + (i >> 16) as u16,
    )
}

impl Pool {
    /// Slot `k` holds a frame of flow `order[k]` to `vip`:`vip_port` with
    /// TCP `flags`.
    fn new(order: &[u32], vip: Ipv4Addr, vip_port: u16, flags: u8) -> Pool {
        let mut bytes = vec![0u8; order.len() * STRIDE];
        for (slot, &i) in bytes.chunks_exact_mut(STRIDE).zip(order) {
            write_tcp(&mut slot[..FRAME_LEN], client(i), (vip, vip_port), flags);
        }
        Pool { bytes }
    }

    fn len(&self) -> usize {
        self.bytes.len() / STRIDE
    }

    #[inline(always)]
    fn frame(&self, k: usize) -> &[u8] {
        let at = k * STRIDE;
        &self.bytes[at..at + FRAME_LEN]
    }
}

/// A TCP segment with correct checksums, written into `f`.
fn write_tcp(f: &mut [u8], src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), flags: u8) {
    let mut eth = EthernetFrame::new_unchecked(f);
    eth.set_dst_addr(MacAddr(OUR_MAC));
    eth.set_src_addr(MacAddr(GATEWAY_MAC));
    eth.set_ethertype(EtherType::Ipv4);
    let mut ip = Ipv4Packet::new_unchecked(eth.payload_mut());
    Ipv4Repr {
        src: src.0,
        dst: dst.0,
        protocol: IpProtocol::Tcp,
        payload_len: tcp::HEADER_LEN,
        ttl: 64,
        dont_fragment: true,
        ident: 0,
        dscp_ecn: 0,
    }
    .emit(&mut ip);
    let mut t = TcpPacket::new_unchecked(ip.payload_mut());
    t.set_src_port(src.1);
    t.set_dst_port(dst.1);
    t.set_seq_number(1);
    t.set_header_len(tcp::HEADER_LEN);
    t.set_flags(TcpFlags(flags));
    t.set_window(65535);
    t.fill_checksum(src.0, dst.0);
}

/// Puts `frame` back into `buf`, undoing a TUN prepend first. This is the
/// baseline.
#[inline(always)]
fn restore(buf: &mut VecBuf, frame: &[u8]) {
    let grown = buf.len() - FRAME_LEN;
    if grown != 0 {
        buf.adj(grown);
    }
    buf.data_mut()[..FRAME_LEN].copy_from_slice(&frame[..FRAME_LEN]);
}

/// A pseudo-random permutation of `0..n` (xorshift Fisher-Yates from
/// `seed`), so that consecutive packets hit unrelated flows.
fn shuffled(n: usize, seed: u64) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n as u32).collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ seed;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

struct Bench {
    measure: bool,
    /// Packets per timed run (rounded up to whole passes over a pool).
    packets: usize,
    runs: usize,
    small: usize,
    large: usize,
    capacity: usize,
    snap: Snapshot,
    rows: Vec<Row>,
    /// Only cases whose name contains this.
    filter: Option<String>,
}

struct Row {
    name: String,
    /// ns/packet of each run.
    samples: Vec<f64>,
    baseline: Option<f64>,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

impl Bench {
    fn wanted(&self, name: &str) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|f| name.contains(f.as_str()))
    }

    fn pipeline(&self) -> Pipeline {
        let mut p = Pipeline::new(0, 1, self.capacity, Arc::new(WorkerStats::default()));
        p.adopt(&self.snap);
        p
    }

    fn passes(&self, n: usize) -> usize {
        self.packets.div_ceil(n).max(1)
    }

    /// Times `passes` passes over `pool`, restoring each frame and, if
    /// `p` is given, running the pipeline on it (with `ahead`, the keys of
    /// the pool's frames, prefetching the flow table ahead). Returns
    /// ns/packet; panics if a verdict is not `want`.
    fn time(
        &self,
        p: Option<&mut Pipeline>,
        pool: &Pool,
        passes: usize,
        want: Verdict,
        burst: bool,
    ) -> f64 {
        let n = pool.len();
        let mut buf = VecBuf::from_bytes(pool.frame(0));
        let mut good = 0usize;
        let start = Instant::now();
        match (p, burst) {
            (Some(p), false) => {
                for _ in 0..passes {
                    for k in 0..n {
                        restore(&mut buf, pool.frame(k));
                        let v = p.process(&self.snap, 0, black_box(&mut buf), NOW);
                        good += usize::from(black_box(v) == want);
                    }
                }
            }
            (Some(p), true) => {
                // As the worker runs: bursts of BURST frames through
                // process_burst, which prefetches the burst's flow entries.
                let mut bufs: Vec<VecBuf> = (0..BURST)
                    .map(|_| VecBuf::from_bytes(pool.frame(0)))
                    .collect();
                let mut verdicts = [Verdict::Consumed; BURST];
                for _ in 0..passes {
                    let mut k = 0;
                    while k < n {
                        let m = BURST.min(n - k);
                        for (j, b) in bufs[..m].iter_mut().enumerate() {
                            restore(b, pool.frame(k + j));
                        }
                        p.process_burst(
                            &self.snap,
                            0,
                            black_box(&mut bufs[..m]),
                            &mut verdicts[..m],
                            NOW,
                        );
                        good += verdicts[..m].iter().filter(|v| **v == want).count();
                        k += m;
                    }
                }
            }
            (None, _) => {
                for _ in 0..passes {
                    for k in 0..n {
                        restore(&mut buf, pool.frame(k));
                        black_box(&mut buf);
                        good += 1;
                    }
                }
            }
        }
        let elapsed = start.elapsed();
        let total = passes * n;
        assert_eq!(good, total, "unexpected verdicts (wanted {want:?})");
        elapsed.as_nanos() as f64 / total as f64
    }

    /// Warms up once, then times `runs` runs.
    fn repeat(
        &self,
        mut p: Option<&mut Pipeline>,
        pool: &Pool,
        want: Verdict,
        burst: bool,
    ) -> Vec<f64> {
        let passes = self.passes(pool.len());
        self.time(p.as_deref_mut(), pool, passes, want, burst);
        (0..self.runs)
            .map(|_| self.time(p.as_deref_mut(), pool, passes, want, burst))
            .collect()
    }

    fn row(&mut self, name: &str, samples: Vec<f64>, baseline: Option<f64>) {
        self.rows.push(Row {
            name: name.to_string(),
            samples,
            baseline,
        });
    }

    /// Restore only, over a pool of `n` frames in random order.
    fn baseline(&mut self, n: usize) -> f64 {
        let pool = Pool::new(&shuffled(n, 1), VIP_NAT, 80, ACK);
        let s = self.repeat(None, &pool, Verdict::Consumed, false);
        let m = median(&s);
        self.row(&format!("baseline: copy frame only, {}", label(n)), s, None);
        m
    }

    /// Parse, find no service, drop.
    fn parse_only(&mut self, baseline: f64) {
        if !self.wanted("parse only") {
            return;
        }
        let n = self.small;
        let pool = Pool::new(&shuffled(n, 1), VIP_NAT, 81, ACK);
        let mut p = self.pipeline();
        let s = self.repeat(
            Some(&mut p),
            &pool,
            Verdict::Drop(DropReason::NoService),
            true,
        );
        self.row("parse only (no service: drop)", s, Some(baseline));
    }

    /// Opens `n` flows with SYNs, then times ACKs of those flows. With
    /// `prefetch`, the bench also prefetches the flow table ahead.
    fn established(&mut self, method: &str, vip: Ipv4Addr, n: usize, baseline: f64, burst: bool) {
        let extra = if burst { "" } else { ", one packet at a time" };
        let name = format!("{method} established, {}{extra}", label(n));
        if !self.wanted(&name) {
            return;
        }
        let mut p = self.pipeline();
        let order = shuffled(n, 1);
        {
            // Opened in another order than the ACKs come in, so that flow
            // entries (allocated in opening order) are not read in sequence.
            let syns = Pool::new(&shuffled(n, 2), vip, 80, SYN);
            let mut buf = VecBuf::from_bytes(syns.frame(0));
            for i in 0..n {
                restore(&mut buf, syns.frame(i));
                assert_eq!(
                    p.process(&self.snap, 0, &mut buf, NOW),
                    Verdict::Transmit(0)
                );
            }
        }
        assert_eq!(p.flows().len(), n, "{method}: every SYN opened a flow");
        let acks = Pool::new(&order, vip, 80, ACK);
        // Check what one packet turns into, so that the timing below is of
        // the real path.
        let mut buf = VecBuf::from_bytes(acks.frame(0));
        assert_eq!(
            p.process(&self.snap, 0, &mut buf, NOW),
            Verdict::Transmit(0)
        );
        let d = buf.data();
        let real_mac = [2, 0, 0, 0, 1, 0x11];
        match method {
            "NAT" => {
                assert_eq!(d.len(), FRAME_LEN);
                assert_ne!(&d[30..34], &vip.octets(), "NAT rewrote the destination");
                assert_eq!(&d[36..38], &8080u16.to_be_bytes());
            }
            "TUN" => {
                assert_eq!(d.len(), FRAME_LEN + 20, "TUN prepended an outer header");
                assert_eq!(d[23], 4, "IPIP");
                assert_eq!(&d[50..54], &vip.octets());
            }
            "DR" => {
                assert_eq!(d.len(), FRAME_LEN);
                assert_eq!(&d[30..34], &vip.octets(), "DR leaves the IP header");
                assert_eq!(&d[..5], &real_mac[..5], "DR set a real's MAC");
            }
            _ => unreachable!(),
        }
        let s = self.repeat(Some(&mut p), &acks, Verdict::Transmit(0), burst);
        assert_eq!(p.flows().len(), n);
        self.row(&name, s, Some(baseline));
    }

    /// SYNs of `large` distinct flows into an empty table, averaged over
    /// the whole fill; a fresh pipeline for every run.
    fn new_flows(&mut self, sched: &str, vip: Ipv4Addr, baseline: f64) {
        let name = format!("new flow (SYN), {sched}, NAT, 0->{}", label(self.large));
        if !self.wanted(&name) {
            return;
        }
        let n = self.large;
        let pool = Pool::new(&shuffled(n, 1), vip, 80, SYN);
        let mut samples = Vec::new();
        for run in 0..=self.runs {
            let mut p = self.pipeline();
            let ns = self.time(Some(&mut p), &pool, 1, Verdict::Transmit(0), true);
            assert_eq!(p.flows().len(), n);
            if run > 0 {
                samples.push(ns);
            }
        }
        self.row(&name, samples, Some(baseline));
    }

    fn print(&self) {
        println!(
            "{:<48} {:>8} {:>15} {:>7}   runs min..max",
            "case", "ns/pkt", "minus baseline", "Mpps"
        );
        for r in &self.rows {
            let m = median(&r.samples);
            let lo = r.samples.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = r.samples.iter().copied().fold(0.0, f64::max);
            let minus = r
                .baseline
                .map_or(String::new(), |b| format!("{:.1}", m - b));
            let mpps = if r.baseline.is_some() {
                format!("{:.1}", 1000.0 / m)
            } else {
                String::new()
            };
            println!(
                "{:<48} {:>8.1} {:>15} {:>7}   {lo:.1}..{hi:.1}",
                r.name, m, minus, mpps
            );
        }
    }
}

fn label(n: usize) -> String {
    if n >= 1_000_000 {
        format!("{}M flows", n / 1_000_000)
    } else if n >= 1000 {
        format!("{}k flows", n / 1000)
    } else {
        format!("{n} flows")
    }
}

fn main() {
    let measure = std::env::args().any(|a| a == "--bench");
    // `cargo bench -p lb-core --bench pipeline -- NAT` runs only the
    // cases whose name contains "NAT" (baselines always run).
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let config = Config::parse(CONFIG).expect("bench config is valid");
    let snap = Snapshot::compile(
        &config,
        &[MacAddr(OUR_MAC)],
        1,
        &mut Ids::default(),
        |_, _, _| true,
    )
    .expect("bench config compiles");
    let mut b = if measure {
        Bench {
            measure,
            packets: 2_000_000,
            runs: 5,
            small: 1000,
            large: 1_000_000,
            capacity: 1 << 21,
            snap,
            rows: Vec::new(),
            filter: filter.clone(),
        }
    } else {
        Bench {
            measure,
            packets: 1000,
            runs: 1,
            small: 100,
            large: 1000,
            capacity: 2048,
            snap,
            rows: Vec::new(),
            filter: None,
        }
    };
    let started = Instant::now();
    let (small, large) = (b.small, b.large);
    let base_small = b.baseline(small);
    let base_large = b.baseline(large);
    b.parse_only(base_small);
    for (method, vip) in [("NAT", VIP_NAT), ("TUN", VIP_TUN), ("DR", VIP_DR)] {
        b.established(method, vip, small, base_small, true);
        b.established(method, vip, large, base_large, true);
    }
    b.established("NAT", VIP_NAT, small, base_small, false);
    b.established("NAT", VIP_NAT, large, base_large, false);
    b.new_flows("wrr", VIP_NAT, base_large);
    b.new_flows("mh", VIP_MH, base_large);
    if b.measure {
        println!(
            "lb-core pipeline, single thread, {} runs of ~{} packets each after a warm-up run; median shown",
            b.runs, b.packets
        );
        println!(
            "flow table capacity {}, size_of::<Flow>() = {} bytes",
            b.capacity,
            std::mem::size_of::<Flow>()
        );
        b.print();
        println!("total {:.1} s", started.elapsed().as_secs_f64());
    } else {
        println!(
            "pipeline bench: smoke run passed ({} cases; pass --bench to measure)",
            b.rows.len()
        );
    }
}
