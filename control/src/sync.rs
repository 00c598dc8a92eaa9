//! The sync thread (`[sync]`): the socket side of connection sync and the
//! election of the active appliance, on the main lcore beside the control
//! loop, never on a worker core. Both roles do the same: every `interval`
//! the thread takes each worker's recorded events (the buffer hand-over
//! of `lb_dataplane::sync`), packs them into messages of at most
//! `MAX_MESSAGE_LEN` bytes and sends them to `peer`, or a heartbeat when
//! there is nothing; every message's flags say where this appliance
//! stands (`lb_core::sync::election`). Between sends it reads datagrams,
//! drops those not from `peer`'s address, parses them, feeds the peer's
//! flags to the election and routes each record to the worker that owns
//! its client, through that worker's bounded queue.
//!
//! What the election decides is published in [`SyncStatus`]: the control
//! loop republishes the snapshot when `active` changes (the floating
//! gateway is answered only while active) and the exporter shows it as
//! `lb_sync_active`. A peer that comes back (heard again after
//! `dead_after` of silence, or for the first time) gets a bulk pass:
//! every worker sends every flow it holds, so that a restarted appliance
//! holds the connections again before it may be needed; an active backup
//! that the primary asks for the gateway back steps down only once such
//! a pass, started after the primary came back, went out whole.
//!
//! A thread of its own rather than a step of the control loop: the loop
//! waits on health reports for up to 100 ms, which would hold reading and
//! the heartbeats back by as much; this thread only ever blocks on its
//! socket, for at most a few milliseconds past the next send.
#![deny(unsafe_code)]

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, Sender, TrySendError};
use lb_config::{SyncConfig, SyncRole};
use lb_core::flow::owner_of;
use lb_core::stats::Counter;
use lb_core::sync::election::{Change, Election};
use lb_core::sync::{FlowRecord, Refused, SyncCounters, SyncEvents};
use lb_core::wire::sync::{MessageWriter, SyncHeader, MAX_MESSAGE_LEN};
use lb_dataplane::sync::ControlLinks;

/// Where the election stands, for the control loop and the exporter.
#[derive(Debug)]
pub struct SyncStatus {
    pub role: SyncRole,
    /// This appliance is the active one (`lb_sync_active`).
    pub active: AtomicBool,
    /// A valid message from the peer arrived within `dead_after`.
    pub peer_alive: AtomicBool,
    /// Set by the sync thread on every change of `active`; the control
    /// loop clears it and republishes.
    pub changed: AtomicBool,
    /// Messages from the peer that never arrived (gaps in its sequence
    /// numbers; a restart of the peer is not a gap).
    pub messages_lost: Counter,
    /// Role changes since start.
    pub changes: Counter,
}

impl SyncStatus {
    fn new(role: SyncRole) -> SyncStatus {
        SyncStatus {
            role,
            active: AtomicBool::new(false),
            peer_alive: AtomicBool::new(false),
            changed: AtomicBool::new(false),
            messages_lost: Counter::default(),
            changes: Counter::default(),
        }
    }

    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }
}

/// The running sync thread.
pub struct SyncThread {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    /// What the thread counts (messages, and records refused or dropped
    /// before they reached a worker).
    pub counters: Arc<SyncCounters>,
    /// The election's outcome.
    pub status: Arc<SyncStatus>,
    /// The address the socket is bound to.
    pub local: SocketAddr,
}

impl SyncThread {
    /// Binds `sync.listen` and starts the thread.
    pub fn start(sync: &SyncConfig, links: ControlLinks) -> io::Result<SyncThread> {
        let socket = UdpSocket::bind(sync.listen)?;
        let local = socket.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(SyncCounters::default());
        let status = Arc::new(SyncStatus::new(sync.role));
        let (s, c, st, cfg) = (
            Arc::clone(&stop),
            Arc::clone(&counters),
            Arc::clone(&status),
            *sync,
        );
        let handle = std::thread::Builder::new()
            .name("lb-sync".into())
            .spawn(move || run(&socket, &cfg, &links, &c, &st, &s))?;
        Ok(SyncThread {
            stop,
            handle: Some(handle),
            counters,
            status,
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
    /// heartbeat when there is none, each with `flags`; returns
    /// (messages, records) sent.
    fn flush(&mut self, flags: u16, mut send: impl FnMut(&[u8]) -> bool) -> (u64, u64) {
        let (mut messages, mut records) = (0, 0);
        let mut next = 0;
        loop {
            self.sequence = self.sequence.wrapping_add(1);
            let mut w = MessageWriter::new(&mut self.buf, self.sequence);
            w.set_flags(flags);
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

/// The peer's sequence numbers as seen here: counts the gaps.
#[derive(Debug, Default)]
struct Sequence {
    last: Option<u32>,
}

impl Sequence {
    /// Messages missed before `seq` (0 for the next one, a repeat, or a
    /// restart of the peer, which begins again at 1).
    fn lost_before(&mut self, seq: u32) -> u64 {
        let lost = match self.last {
            Some(last) => {
                let gap = seq.wrapping_sub(last);
                // Far ahead or behind: a restart (or reordering), not loss.
                if (2..=1 << 16).contains(&gap) {
                    u64::from(gap - 1)
                } else {
                    0
                }
            }
            None => 0,
        };
        self.last = Some(seq);
        lost
    }
}

fn run(
    socket: &UdpSocket,
    sync: &SyncConfig,
    links: &ControlLinks,
    counters: &SyncCounters,
    status: &SyncStatus,
    stop: &AtomicBool,
) {
    let mut election = Election::new(sync.role, sync.dead_after, Instant::now());
    let mut packer = Packer::new();
    let mut sequence = Sequence::default();
    // Room for more than a message: a longer datagram is not ours.
    let mut buf = [0u8; 2 * MAX_MESSAGE_LEN];
    // The bulk pass asked for since the peer last came back, if any.
    let mut peer_bulk: Option<u64> = None;
    // The first heartbeat goes at once: the peer learns of us quickly.
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= next {
            next += sync.interval;
            if next < now {
                next = now + sync.interval; // we fell behind: do not burst
            }
            if election.handover_wanted(now) && peer_bulk.is_none() {
                peer_bulk = Some(links.shared.request_bulk());
            }
            // Read before the collection: what a worker handed over
            // before it said "done" goes out in this flush.
            let handed_over = peer_bulk.is_some_and(|n| links.shared.bulk_finished(n));
            collect(&links.outbound, &mut packer.pending);
            let (m, r) = packer.flush(election.flags(now), |msg| {
                match socket.send_to(msg, sync.peer) {
                    Ok(_) => true,
                    Err(e) => {
                        log::debug!("sync: sending to {}: {e}", sync.peer);
                        false
                    }
                }
            });
            counters.messages_sent.add(m);
            counters.flows_sent.add(r);
            decide(&mut election, now, handed_over, status, sync);
            continue;
        }
        let wait = (next - now).clamp(Duration::from_millis(1), Duration::from_millis(100));
        let _ = socket.set_read_timeout(Some(wait));
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(x) => x,
            // A signal (health-check threads, SIGHUP) interrupts the wait:
            // nothing went wrong.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                decide(&mut election, Instant::now(), false, status, sync);
                continue;
            }
            Err(e) => {
                log::warn!("sync: receiving on {:?}: {e}", socket.local_addr());
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let Some(h) = receive(
            &buf[..n],
            from.ip(),
            sync.peer.ip(),
            &links.inbound,
            counters,
        ) else {
            continue;
        };
        let now = Instant::now();
        status.messages_lost.add(sequence.lost_before(h.sequence));
        if election.heard(now, h.flags) {
            log::info!(
                "sync: peer {} heard ({}); sending it every flow held here",
                sync.peer,
                describe_flags(h.flags)
            );
            peer_bulk = Some(links.shared.request_bulk());
        }
        status.peer_alive.store(true, Ordering::Relaxed);
        decide(&mut election, now, false, status, sync);
    }
}

/// Takes every worker's handed-over buffer into `pending` and gives the
/// buffers back.
fn collect(outbound: &[(Receiver<SyncEvents>, Sender<SyncEvents>)], pending: &mut Vec<FlowRecord>) {
    for (full, empty) in outbound {
        for mut events in full.try_iter() {
            pending.extend(events.drain());
            // Its way back: the channel holds both buffers.
            let _ = empty.try_send(events);
        }
    }
}

/// Runs the election at `now` and publishes a change.
fn decide(
    election: &mut Election,
    now: Instant,
    handed_over: bool,
    status: &SyncStatus,
    sync: &SyncConfig,
) {
    status
        .peer_alive
        .store(election.peer_alive(now), Ordering::Relaxed);
    let Some(change) = election.tick(now, handed_over) else {
        return;
    };
    let state = if change.active() { "active" } else { "standby" };
    match change {
        Change::PrimaryActive => log::warn!(
            "sync: {} -> {state}: {} (flows made here meanwhile may break)",
            sync.role,
            change.reason()
        ),
        _ => log::info!("sync: {} -> {state}: {}", sync.role, change.reason()),
    }
    status.active.store(change.active(), Ordering::Release);
    status.changes.incr();
    status.changed.store(true, Ordering::Release);
}

fn describe_flags(f: u16) -> String {
    use lb_core::sync::election::flags;
    let role = if f & flags::PRIMARY != 0 {
        "primary"
    } else {
        "backup"
    };
    let state = if f & flags::ACTIVE != 0 {
        "active"
    } else {
        "standby"
    };
    let ask = if f & flags::TAKEBACK != 0 {
        ", asking for the gateway back"
    } else {
        ""
    };
    format!("{role}, {state}{ask}")
}

/// One datagram from `from`: checked, counted, its records routed to
/// their owners' queues. Returns its header when it is a valid message
/// from the peer (its records may still have been refused).
fn receive(
    datagram: &[u8],
    from: IpAddr,
    peer: IpAddr,
    workers: &[Sender<FlowRecord>],
    counters: &SyncCounters,
) -> Option<SyncHeader> {
    if canonical(from) != canonical(peer) {
        counters.refuse(Refused::NotFromPeer);
        return None;
    }
    counters.messages_received.incr();
    let (h, p) = match SyncHeader::parse(datagram) {
        Ok(x) => x,
        Err(why) => {
            counters.refuse(why);
            return None;
        }
    };
    for r in p.records() {
        let r = match r {
            Ok(r) => r,
            Err(why) => {
                counters.refuse(why);
                return Some(h);
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
    Some(h)
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
        let (m, r) = p.flush(0, |msg| {
            out.push(msg.to_vec());
            true
        });
        assert_eq!((m as usize, r as usize), (out.len(), records));
        out
    }

    #[test]
    fn gaps_in_the_peers_sequence_are_counted_restarts_are_not() {
        let mut s = Sequence::default();
        assert_eq!(s.lost_before(7), 0, "the first one heard");
        assert_eq!(s.lost_before(8), 0);
        assert_eq!(s.lost_before(11), 2);
        assert_eq!(s.lost_before(11), 0, "a repeat");
        assert_eq!(s.lost_before(1), 0, "the peer restarted");
        assert_eq!(s.lost_before(u32::MAX), 0);
        assert_eq!(s.lost_before(1), 1, "across the wrap: 0 was missed");
    }

    #[test]
    fn the_flags_go_in_every_message_of_a_flush() {
        let mut p = Packer::new();
        p.pending.extend((0..100).map(|i| record(i as u16)));
        let mut flags = Vec::new();
        p.flush(5, |m| {
            flags.push(SyncHeader::parse(m).unwrap().0.flags);
            true
        });
        assert!(flags.len() >= 3);
        assert!(flags.iter().all(|&f| f == 5), "{flags:?}");
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
        p.flush(0, |m| {
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
