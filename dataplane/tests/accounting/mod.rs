//! Mbuf accounting, found sound in an audit (shared by the `mbuf_accounting*` tests): every mbuf the workers
//! take ends exactly once, end to end. The whole dataplane
//! (`Dataplane::start`, two workers, so packets are handed between them)
//! runs a golden scenario's frames, 200 times over, from a
//! `net_pcap` port, without its static neighbors: every next hop has to be
//! asked for (ARP requests made from the pool) and never answers, so
//! packets are held until they expire, replies and NAT go out, flows hand
//! off between the workers. After the stop, with the ports closed, the
//! pool must have every mbuf back (its per-lcore caches count as free).
//! Each scenario in its own test binary: the EAL starts once per process.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use lb_config::Config;
use lb_core::golden;
use lb_dataplane::engine::Dataplane;

/// The scenario's config on `device`, two workers, no static neighbors.
fn config(text: &str, device: &str, prefix: &str, port_extra: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with('[') {
            skipping = t == "[[neighbors]]";
        }
        if skipping {
            continue;
        }
        if t.starts_with("device") {
            out.push_str(&format!("device = \"{device}\"\n{port_extra}"));
        } else if t.starts_with("eal_args") {
            out.push_str(&format!(
                "eal_args = [\"--lcores\", \"0@0,1@0,2@0\", \"--no-huge\", \"-m\", \"256\", \
                 \"--no-pci\", \"--no-shconf\", \"--log-level=lib.eal:warning\", \
                 \"--file-prefix\", \"{prefix}\"]\n"
            ));
        } else if t.starts_with("lcores") {
            out.push_str("lcores = [1, 2]\n");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// What the workers counted in a run.
#[derive(Debug, Clone, Copy)]
pub struct Counts {
    pub rx: u64,
    pub handoffs: u64,
    pub held: u64,
    /// Deferred by the SYN proxy.
    pub deferred: u64,
    /// Dropped as chained (`multi_segment`).
    pub multi_segment: u64,
    pub to_kernel: u64,
    pub from_kernel: u64,
}

/// A folder removed when dropped: also when an assertion fails.
struct TempDir(PathBuf);

impl TempDir {
    fn new(path: PathBuf) -> TempDir {
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs scenario `name` (one port) as above.
pub fn run(name: &str) -> Counts {
    let scenario = golden::scenario(name);
    let one: Vec<Vec<u8>> = scenario.steps.iter().map(|s| s.input.clone()).collect();
    let frames: Vec<Vec<u8>> = (0..200).flat_map(|_| one.iter().cloned()).collect();
    run_frames(name, name, &frames, "")
}

/// [`run`], with `frames` (once each) on scenario `name`'s config, its
/// port given the lines `port_extra` too; `tag` names the run.
pub fn run_frames(name: &str, tag: &str, frames: &[Vec<u8>], port_extra: &str) -> Counts {
    let scenario = golden::scenario(name);
    let prefix = format!("lbt-audit-leak-{tag}");
    let dir = TempDir::new(std::env::temp_dir().join(format!("{prefix}-{}", std::process::id())));
    let dir = &dir.0;
    let frames: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    let input = dir.join("in.pcap");
    golden::write_pcap(&input, &frames);
    let (out0, out1) = (dir.join("out0.pcap"), dir.join("out1.pcap"));
    let device = format!(
        "net_pcap0,rx_pcap={i},rx_pcap={i},tx_pcap={},tx_pcap={}",
        out0.display(),
        out1.display(),
        i = input.display()
    );
    let text = config(&scenario.config, &device, &prefix, port_extra);
    let config = Config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let mut dp = Dataplane::start(&config, |_, _, _| true).expect("the dataplane starts");
    let pool = dp.mempool();
    // Every frame read (twice: one per queue; waited for, as the machine
    // allows), then held ones expired (3 s) and deferred ones too.
    let stats = dp.worker_stats();
    let sum = |f: &dyn Fn(&lb_dataplane::WorkerStats) -> u64| -> u64 {
        stats.iter().map(|(_, s)| f(s)).sum()
    };
    let end = std::time::Instant::now() + Duration::from_secs(60);
    while sum(&|s| s.rx_packets.get()) < 2 * frames.len() as u64
        && std::time::Instant::now() < end
        && dp.ended_workers().is_empty()
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(3_500));
    let rx = sum(&|s| s.rx_packets.get());
    let handoffs = sum(&|s| s.handoffs_in.get());
    let held = sum(&|s| s.held.get());
    let deferred = sum(&|s| s.syn_proxy_deferred.get());
    let to_kernel = sum(&|s| s.to_kernel.iter().map(|c| c.get()).sum());
    let from_kernel = sum(&|s| s.from_kernel.iter().map(|c| c.get()).sum());
    let multi_segment = sum(&|s| s.dropped(lb_dataplane::DropReason::MultiSegment));
    eprintln!(
        "{tag}: rx {rx}, handoffs {handoffs}, held {held}, deferred {deferred}, \
         multi_segment {multi_segment}, to kernel {to_kernel}, from kernel {from_kernel}, \
         in use while running {}",
        pool.in_use()
    );
    let ended = dp.ended_workers();
    assert!(ended.is_empty(), "workers ended (panicked?): {ended:?}");
    assert_eq!(rx, 2 * frames.len() as u64, "every frame received");
    drop(dp);
    assert_eq!(
        pool.in_use(),
        0,
        "mbufs not back in the pool after the stop"
    );
    Counts {
        rx,
        handoffs,
        held,
        deferred,
        multi_segment,
        to_kernel,
        from_kernel,
    }
}
