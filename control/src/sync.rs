//! The sync thread (`[sync]`): the socket side of connection sync, on the
//! main lcore beside the control loop, never on a worker core. A primary
//! wakes every `interval`, takes each worker's recorded events (the
//! buffer hand-over of `lb_dataplane::sync`), packs them into messages of
//! at most `MAX_MESSAGE_LEN` bytes and sends them to `peer`, or a
//! heartbeat when there is nothing. A backup reads datagrams, drops those
//! not from `peer`'s address, parses them and routes each record to the
//! worker that owns its client, through that worker's bounded queue.
//!
//! A thread of its own rather than a step of the control loop: the loop
//! waits on health reports for up to 100 ms, which would hold a backup's
//! reading back by as much; this thread only ever blocks on its socket.
#![deny(unsafe_code)]

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, Sender, TrySendError};
use lb_config::SyncConfig;
use lb_core::flow::owner_of;
use lb_core::sync::{FlowRecord, Refused, SyncCounters, SyncEvents};
use lb_core::wire::sync::{MessageWriter, SyncHeader, MAX_MESSAGE_LEN};
use lb_dataplane::sync::ControlLinks;

/// The running sync thread.
pub struct SyncThread {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    /// What the thread counts (messages, and records refused or dropped
    /// before they reached a worker).
    pub counters: Arc<SyncCounters>,
    /// The address the socket is bound to.
    pub local: SocketAddr,
}

impl SyncThread {
    /// Binds `sync.listen` and starts the thread for `links`' role.
    pub fn start(sync: &SyncConfig, links: ControlLinks) -> io::Result<SyncThread> {
        let socket = UdpSocket::bind(sync.listen)?;
        let local = socket.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(SyncCounters::default());
        let (s, c, cfg) = (Arc::clone(&stop), Arc::clone(&counters), *sync);
        let handle =
            std::thread::Builder::new()
                .name("lb-sync".into())
                .spawn(move || match links {
                    ControlLinks::Primary(workers) => send_loop(&socket, &cfg, &workers, &c, &s),
                    ControlLinks::Backup(workers) => receive_loop(&socket, &cfg, &workers, &c, &s),
                })?;
        Ok(SyncThread {
            stop,
            handle: Some(handle),
            counters,
            local,
        })
    }

    /// Stops the thread (within one interval) and waits for it.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for SyncThread {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Packs records into messages and hands each finished one to `send`.
struct Packer {
    buf: [u8; MAX_MESSAGE_LEN],
    pending: Vec<FlowRecord>,
    sequence: u32,
}

impl Packer {
    fn new() -> Packer {
        Packer {
            buf: [0; MAX_MESSAGE_LEN],
            pending: Vec::new(),
            sequence: 0,
        }
    }

    /// Sends every pending record in as few messages as fit, or one
    /// heartbeat when there is none; returns (messages, records) sent.
    fn flush(&mut self, mut send: impl FnMut(&[u8]) -> bool) -> (u64, u64) {
        let (mut messages, mut records) = (0, 0);
        let mut next = 0;
        loop {
            self.sequence = self.sequence.wrapping_add(1);
            let mut w = MessageWriter::new(&mut self.buf, self.sequence);
            while next < self.pending.len() && w.push(&self.pending[next]) {
                next += 1;
            }
            let n = u64::from(w.count());
            let len = w.finish();
            if send(&self.buf[..len]) {
                messages += 1;
                records += n;
            }
            if next >= self.pending.len() {
                break;
            }
        }
        self.pending.clear();
        (messages, records)
    }
}

fn send_loop(
    socket: &UdpSocket,
    sync: &SyncConfig,
    workers: &[(Receiver<SyncEvents>, Sender<SyncEvents>)],
    counters: &SyncCounters,
    stop: &AtomicBool,
) {
    let mut packer = Packer::new();
    let mut next = Instant::now() + sync.interval;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now < next {
            std::thread::sleep((next - now).min(Duration::from_millis(100)));
            continue;
        }
        next += sync.interval;
        if next < now {
            next = now + sync.interval; // we fell behind: do not burst
        }
        for (full, empty) in workers {
            for mut events in full.try_iter() {
                packer.pending.extend(events.drain());
                // Its way back: the channel holds both buffers.
                let _ = empty.try_send(events);
            }
        }
        let (m, r) = packer.flush(|msg| match socket.send_to(msg, sync.peer) {
            Ok(_) => true,
            Err(e) => {
                log::debug!("sync: sending to {}: {e}", sync.peer);
                false
            }
        });
        counters.messages_sent.add(m);
        counters.flows_sent.add(r);
    }
}

fn receive_loop(
    socket: &UdpSocket,
    sync: &SyncConfig,
    workers: &[Sender<FlowRecord>],
    counters: &SyncCounters,
    stop: &AtomicBool,
) {
    let _ = socket.set_read_timeout(Some(sync.interval.min(Duration::from_millis(100))));
    // Room for more than a message: a longer datagram is not ours.
    let mut buf = [0u8; 2 * MAX_MESSAGE_LEN];
    while !stop.load(Ordering::Relaxed) {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => {
                log::warn!("sync: receiving on {:?}: {e}", socket.local_addr());
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        receive(&buf[..n], from.ip(), sync.peer.ip(), workers, counters);
    }
}

/// One datagram from `from`: checked, counted, its records routed to
/// their owners' queues.
fn receive(
    datagram: &[u8],
    from: IpAddr,
    peer: IpAddr,
    workers: &[Sender<FlowRecord>],
    counters: &SyncCounters,
) {
    if canonical(from) != canonical(peer) {
        counters.refuse(Refused::NotFromPeer);
        return;
    }
    counters.messages_received.incr();
    let p = match SyncHeader::parse(datagram) {
        Ok((_, p)) => p,
        Err(why) => {
            counters.refuse(why);
            return;
        }
    };
    for r in p.records() {
        let r = match r {
            Ok(r) => r,
            Err(why) => {
                counters.refuse(why);
                return;
            }
        };
        counters.flows_received.incr();
        let owner = match r.client {
            IpAddr::V4(c) => owner_of(c, workers.len()),
            IpAddr::V6(c) => owner_of(c, workers.len()),
        };
        match workers.get(owner).map(|q| q.try_send(r)) {
            Some(Ok(())) => {}
            Some(Err(TrySendError::Full(_))) | None => counters.events_dropped.incr(),
            // The worker stopped: the appliance is stopping.
            Some(Err(TrySendError::Disconnected(_))) => {}
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is (a socket bound
/// to `[::]` reports IPv4 peers so).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam::channel::bounded;
    use lb_config::ForwardingMethod;
    use lb_core::flow::{FlowState, Trust};
    use lb_core::sync::{FlowChange, FlowUpdate};
    use lb_core::wire::sync::HEADER_LEN;
    use std::net::Ipv4Addr;

    const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));

    fn record(port: u16) -> FlowRecord {
        FlowRecord {
            proto: 6,
            client: Ipv4Addr::new(198, 51, 100, 7).into(),
            client_port: port,
            vip: Ipv4Addr::new(198, 18, 1, 100).into(),
            vip_port: 80,
            change: FlowChange::Update(FlowUpdate {
                real: Ipv4Addr::new(198, 18, 0, 11).into(),
                real_port: 8080,
                method: ForwardingMethod::Nat,
                state: FlowState::Established,
                trust: Trust::Confirmed,
                proxy: None,
            }),
        }
    }

    fn packed(records: usize) -> Vec<Vec<u8>> {
        let mut p = Packer::new();
        p.pending.extend((0..records).map(|i| record(i as u16)));
        let mut out = Vec::new();
        let (m, r) = p.flush(|msg| {
            out.push(msg.to_vec());
            true
        });
        assert_eq!((m as usize, r as usize), (out.len(), records));
        out
    }

    #[test]
    fn nothing_to_send_is_one_heartbeat() {
        let msgs = packed(0);
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].len(), HEADER_LEN);
        let (h, _) = SyncHeader::parse(&msgs[0]).unwrap();
        assert_eq!(h.count, 0);
    }

    #[test]
    fn many_records_split_into_datagrams_that_fit_and_arrive_whole() {
        let msgs = packed(100);
        assert!(msgs.len() >= 3, "{}", msgs.len());
        assert!(msgs.iter().all(|m| m.len() <= MAX_MESSAGE_LEN));
        let seqs: Vec<u32> = msgs
            .iter()
            .map(|m| SyncHeader::parse(m).unwrap().0.sequence)
            .collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
        let (tx, rx) = bounded(1000);
        let c = SyncCounters::default();
        for m in &msgs {
            receive(m, PEER, PEER, std::slice::from_ref(&tx), &c);
        }
        let ports: Vec<u16> = rx.try_iter().map(|r| r.client_port).collect();
        assert_eq!(ports, (0..100).collect::<Vec<u16>>());
        assert_eq!(c.messages_received.get(), msgs.len() as u64);
        assert_eq!(c.flows_received.get(), 100);
        assert_eq!(c.refused_total(), 0);
    }

    #[test]
    fn strangers_garbage_and_a_full_queue_are_counted_not_installed() {
        let (tx, rx) = bounded(2);
        let c = SyncCounters::default();
        let q = std::slice::from_ref(&tx);
        let msg = packed(5).remove(0);
        receive(&msg, "198.18.0.9".parse().unwrap(), PEER, q, &c);
        assert_eq!(c.refused(Refused::NotFromPeer), 1);
        assert_eq!(c.messages_received.get(), 0);
        receive(&msg[..10], PEER, PEER, q, &c);
        assert_eq!(c.refused(Refused::Truncated), 1);
        let mut bad = msg.clone();
        bad[0] ^= 0xff;
        receive(&bad, PEER, PEER, q, &c);
        assert_eq!(c.refused(Refused::BadMagic), 1);
        // An IPv4-mapped source is the peer too.
        receive(&msg, "::ffff:198.18.0.2".parse().unwrap(), PEER, q, &c);
        assert_eq!(rx.len(), 2, "the queue holds two");
        assert_eq!(c.events_dropped.get(), 3);
        assert_eq!(c.flows_received.get(), 5);
    }

    #[test]
    fn records_go_to_their_clients_owner() {
        let queues: Vec<_> = (0..4).map(|_| bounded(100)).collect();
        let tx: Vec<_> = queues.iter().map(|(t, _)| t.clone()).collect();
        let c = SyncCounters::default();
        let mut p = Packer::new();
        let clients: Vec<Ipv4Addr> = (1..=20).map(|i| Ipv4Addr::new(198, 51, 100, i)).collect();
        p.pending.extend(clients.iter().map(|&cl| FlowRecord {
            client: cl.into(),
            ..record(1)
        }));
        p.flush(|m| {
            receive(m, PEER, PEER, &tx, &c);
            true
        });
        for (w, (_, rx)) in queues.iter().enumerate() {
            for r in rx.try_iter() {
                let IpAddr::V4(cl) = r.client else { panic!() };
                assert_eq!(owner_of(cl, 4), w);
            }
        }
        assert_eq!(c.flows_received.get(), 20);
    }
}
