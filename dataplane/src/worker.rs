//! The poll-mode worker: one per worker lcore, pinned by the EAL. It owns one
//! rx and one tx queue on every port, receives bursts, runs each packet
//! through the pipeline and transmits the results in bursts per port.
//! Between bursts (never per packet) it checks for a new config snapshot and
//! for the stop flag.
#![deny(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam::channel::Receiver;

use crate::buffer::PacketBuf;
use crate::dpdk::{MbufBurst, RxQueue, TxQueue};
use crate::pipeline::{self, Verdict};
use crate::snapshot::Snapshot;
use crate::stats::{DropReason, WorkerStats};

/// What a worker is handed when it is launched.
pub struct Worker {
    pub index: usize,
    pub rx: Vec<RxQueue>,
    pub tx: Vec<TxQueue>,
    pub burst: usize,
    pub snapshot: Arc<Snapshot>,
    pub updates: Receiver<Arc<Snapshot>>,
    pub stats: Arc<WorkerStats>,
    pub stop: Arc<AtomicBool>,
}

impl Worker {
    /// Polls until the stop flag is set; finishes the burst in hand first.
    pub fn run(mut self) -> i32 {
        let ports = self.tx.len();
        let mut rx_burst = MbufBurst::new();
        let mut out: Vec<MbufBurst> = (0..ports).map(|_| MbufBurst::new()).collect();
        let stats = Arc::clone(&self.stats);
        stats.generation.add(self.snapshot.generation);
        log::info!(
            "worker {} polling {} port(s), burst {}",
            self.index,
            ports,
            self.burst
        );
        while !self.stop.load(Ordering::Relaxed) {
            if let Ok(next) = self.updates.try_recv() {
                let latest = self.updates.try_iter().last().unwrap_or(next);
                let old = std::mem::replace(&mut self.snapshot, latest);
                stats
                    .generation
                    .add(self.snapshot.generation.wrapping_sub(old.generation));
            }
            let mut received = 0;
            for (port, rxq) in self.rx.iter_mut().enumerate() {
                let n = rxq.rx_burst(&mut rx_burst, self.burst);
                if n == 0 {
                    continue;
                }
                received += n;
                for mut m in rx_burst.drain() {
                    if m.segments() != 1 {
                        stats.drop_packet(DropReason::MultiSegment);
                        continue;
                    }
                    match pipeline::process(&self.snapshot, port, &mut m, &stats) {
                        Verdict::Transmit(to) => {
                            if let Err(m) = out[to].push(m) {
                                // Full: flush, then queue it.
                                flush(&mut self.tx[to], &mut out[to], &stats);
                                let _ = out[to].push(m);
                            }
                        }
                        Verdict::Drop(reason) => stats.drop_packet(reason),
                    }
                }
            }
            for (to, burst) in out.iter_mut().enumerate() {
                flush(&mut self.tx[to], burst, &stats);
            }
            stats.polls.incr();
            if received > 0 {
                stats.rx_packets.add(received as u64);
                stats.busy_polls.incr();
            }
        }
        log::info!("worker {} stopped", self.index);
        0
    }
}

fn flush(txq: &mut TxQueue, burst: &mut MbufBurst, stats: &WorkerStats) {
    if burst.is_empty() {
        return;
    }
    let mut sent = txq.tx_burst(burst);
    // One retry: a ring that was momentarily full often has room again.
    if !burst.is_empty() {
        sent += txq.tx_burst(burst);
    }
    stats.tx_packets.add(sent as u64);
    let failed = burst.free_all();
    if failed > 0 {
        stats.drop_packets(DropReason::TxFull, failed as u64);
    }
}

/// `PacketBuf` must be implemented by the mbuf for the pipeline to run on it.
#[allow(dead_code)]
fn assert_mbuf_is_packet_buf(m: &crate::dpdk::Mbuf) -> &dyn PacketBuf {
    m
}
