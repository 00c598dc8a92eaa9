//! Starting and stopping the whole dataplane: EAL, the mbuf pool, every
//! port with one queue pair per worker, and one pinned worker per lcore.
#![deny(unsafe_code)]

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam::channel::{bounded, Receiver, Sender, TrySendError};
use lb_config::{Config, IPV6_MIN_MTU};

use crate::backoff::Doorbell;
use crate::dpdk::{
    self, spsc_ring, DpdkError, Eal, LaunchedLcore, LcoreId, Mempool, Port, PortSetup, PortStats,
};
use crate::kernel::{self, KernelPath, Tap};
use crate::sync::{self as sync_link, ControlLinks};
use crate::worker::FlowQuery;
use crate::worker::{Worker, HOLD_SLOTS};
use lb_core::pipeline::{Pipeline, DEFER_SLOTS};
use lb_core::snapshot::{CompileError, Ids, Snapshot};
use lb_core::stats::WorkerStats;

/// Slots of each hand-off ring between two workers (a power of two).
const HANDOFF_RING: u32 = 4096;
/// Receive and transmit descriptors per queue of a data port.
const PORT_DESCRIPTORS: u16 = 1024;
/// Receive and transmit descriptors per queue of a kernel interface's tap.
const TAP_DESCRIPTORS: u16 = 256;

/// How many mbufs can be out of the pool's reach at once under a flood:
/// `rings`, each port's and kernel interface's descriptors per receive and
/// per transmit queue (a kernel interface's transmit counts 0: a tap
/// writes to the kernel and frees at once) times its `queues` queue
/// pairs, whose receive rings hold a full ring of mbufs from the start and
/// whose transmit rings keep what they sent until their descriptors come
/// round again; the hand-off rings between every ordered pair of
/// `workers`; and the per-lcore caches of a pool of `mbufs`, up to 1.5
/// times the cache size each (DPDK flushes a cache above that), for the
/// workers and the main lcore; and what each worker keeps between polls:
/// its slots for packets held for a next hop and deferred by the SYN
/// proxy, and the frames it queues for each of the `taps` kernel
/// interfaces (found in audit: left out, a few hundred per worker); and
/// what it holds within a poll: the receive burst of `burst` frames on
/// their way to the transmit bursts, and the SYNs the SYN proxy sends
/// again, each in a buffer of its own (16 a family a poll).
fn mbufs_held(
    rings: &[(u16, u16)],
    queues: u16,
    workers: usize,
    taps: usize,
    mbufs: u32,
    burst: usize,
) -> MbufsHeld {
    let queues = usize::from(queues);
    MbufsHeld {
        // A tap's queue holds up to a whole burst (sync datagrams), the
        // rest up to the budgets' burst.
        in_workers: workers
            * (HOLD_SLOTS
                + DEFER_SLOTS
                + taps * dpdk::MAX_BURST
                + burst
                + 2 * lb_core::flow::synproxy::SYN_RETRY_QUEUE),
        on_rings: rings
            .iter()
            .map(|&(rx, tx)| queues * (usize::from(rx) + usize::from(tx)))
            .sum(),
        in_handoff: workers * workers.saturating_sub(1) * (HANDOFF_RING as usize - 1),
        in_caches: (workers + 1) * dpdk::mempool_cache_size(mbufs) as usize * 3 / 2,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MbufsHeld {
    in_workers: usize,
    on_rings: usize,
    in_handoff: usize,
    in_caches: usize,
}

impl MbufsHeld {
    fn total(self) -> usize {
        self.on_rings + self.in_handoff + self.in_caches + self.in_workers
    }
}

// The config bounds lcore ids by its own copy of DPDK's RTE_MAX_LCORE (it
// does not link DPDK): the build fails if the DPDK linked here disagrees.
const _: () = assert!(lb_config::RTE_MAX_LCORE == dpdk_sys::RTE_MAX_LCORE);

/// Why the dataplane could not start: always one line, naming the cause and
/// what to try.
#[derive(Debug)]
pub struct StartError(pub String);

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

impl From<CompileError> for StartError {
    fn from(e: CompileError) -> Self {
        StartError(e.to_string())
    }
}

impl From<DpdkError> for StartError {
    fn from(e: DpdkError) -> Self {
        StartError(e.to_string())
    }
}

/// How a worker's job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerEnd {
    /// It returned this code.
    Returned(i32),
    /// It panicked (logged with its message where it was caught).
    Panicked,
}

impl WorkerEnd {
    fn from_rc(rc: i32) -> WorkerEnd {
        if rc == dpdk::JOB_PANICKED {
            WorkerEnd::Panicked
        } else {
            WorkerEnd::Returned(rc)
        }
    }
}

impl fmt::Display for WorkerEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkerEnd::Returned(rc) => write!(f, "ended with {rc}"),
            WorkerEnd::Panicked => f.write_str("panicked"),
        }
    }
}

/// A running dataplane.
pub struct Dataplane {
    eal: Eal,
    ports: Vec<(String, Port)>,
    /// The taps of the ports' kernel interfaces (interface name, device):
    /// the interfaces go when these close.
    kernel_ports: Vec<(String, Port)>,
    /// Each kernel interface's port index and the groups it joins for the
    /// addresses only the dataplane holds (`kernel::Groups`).
    groups: Vec<(usize, kernel::Groups)>,
    workers: Vec<RunningWorker>,
    stop: Arc<AtomicBool>,
    snapshot: Arc<Snapshot>,
    /// Snapshots published before `snapshot`, kept until every worker has
    /// adopted a later one ([`Dataplane::reap_retired`]): what a worker
    /// drops then is never the last reference, so the memory of an old
    /// snapshot and its schedulers is freed here, on the control thread.
    retired: Vec<Arc<Snapshot>>,
    mempool: Mempool,
    ids: Ids,
    macs: Vec<lb_config::MacAddr>,
    /// The MTU each port really has.
    mtus: Vec<u16>,
    /// `[sync]`: the sync thread's ends of the workers' hand-overs, until
    /// it takes them.
    sync: Option<ControlLinks>,
}

/// The snapshot with each port's MTU as the dataplane sends it (the
/// config's, or the device's where the driver kept a smaller one): MTU
/// checks must match the wire.
fn with_port_mtus(mut snap: Snapshot, mtus: &[u16]) -> Snapshot {
    snap.set_port_mtus(mtus);
    snap
}

struct RunningWorker {
    lcore: LcoreId,
    launched: Option<LaunchedLcore>,
    stats: Arc<WorkerStats>,
    updates: Latest<Arc<Snapshot>>,
    /// `lb-appliance ctl connections`: pages of its flows.
    queries: Sender<FlowQuery>,
}

/// The control thread's end of a worker's snapshot slot: a one-slot
/// channel that holds the newest snapshot the worker has not taken yet.
/// Publishing replaces what is there, so it never blocks, however long a
/// worker goes without polling, and the worker finds the newest when it
/// comes back (it never needs the ones in between: each is whole).
struct Latest<T> {
    tx: Sender<T>,
    /// Our own handle on the slot, to take back what the worker did not.
    rx: Receiver<T>,
}

/// A slot and the worker's end of it.
fn latest<T>() -> (Latest<T>, Receiver<T>) {
    let (tx, rx) = bounded(1);
    (Latest { tx, rx: rx.clone() }, rx)
}

impl<T> Latest<T> {
    /// Puts `value` in the slot, dropping one the worker has not taken.
    /// Ends: only this end sends, so once it took the old value out (or the
    /// worker did), the slot has room.
    fn replace(&self, mut value: T) {
        loop {
            match self.tx.try_send(value) {
                Ok(()) => return,
                Err(TrySendError::Full(v)) => {
                    drop(self.rx.try_recv());
                    value = v;
                }
                // Cannot happen while we hold `rx`.
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
    }
}

/// The EAL arguments for `config`: `[dpdk] eal_args` as given, then one
/// device argument per port (`-a` for a PCI address, `--vdev` otherwise).
pub fn eal_args(config: &Config) -> Vec<String> {
    let mut args = config.dpdk.eal_args.clone();
    for p in &config.ports {
        if is_pci_address(&p.device) {
            args.push("-a".into());
        } else {
            args.push("--vdev".into());
        }
        args.push(p.device.clone());
    }
    for (i, p) in config.ports.iter().enumerate() {
        if let Some(k) = &p.kernel_interface {
            args.push("--vdev".into());
            args.push(kernel::tap_vdev(i, k));
        }
    }
    args
}

/// The name DPDK gives the device: the vdev name before its first comma,
/// or the PCI address.
pub fn device_name(device: &str) -> &str {
    device.split(',').next().unwrap_or(device)
}

/// A port's addresses for the log: `198.18.0.2/24`, `2001:2::2/64` or both.
fn addresses(p: &lb_config::PortConfig) -> String {
    let v4 = p.address.map(|a| a.to_string());
    let v6 = p.address6.map(|a| a.to_string());
    let list: Vec<String> = v4.into_iter().chain(v6).collect();
    list.join(" ")
}

fn is_pci_address(device: &str) -> bool {
    // 0000:3b:00.0 or 3b:00.0, optionally followed by ,devargs
    let d = device_name(device);
    let parts: Vec<&str> = d.split(':').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.chars().all(|c| c.is_ascii_hexdigit());
    let (bus, devfn) = match parts.as_slice() {
        [dom, bus, devfn] if hex(dom, 4) => (*bus, *devfn),
        [bus, devfn] => (*bus, *devfn),
        _ => return false,
    };
    let Some((dev, func)) = devfn.split_once('.') else {
        return false;
    };
    hex(bus, 2) && hex(dev, 2) && func.len() == 1 && func.chars().all(|c| ('0'..='7').contains(&c))
}

impl Dataplane {
    /// Brings everything up and launches the workers. On error, what was
    /// started is stopped again (ports close when dropped).
    pub fn start(
        config: &Config,
        is_up: impl Fn(&str, std::net::IpAddr, u16) -> bool,
    ) -> Result<Dataplane, StartError> {
        let eal = Eal::init(&eal_args(config))?;
        log::info!(
            "{} up: main {}, {} lcore(s), socket {}",
            dpdk::version(),
            eal.info().main_lcore,
            eal.info().lcore_count,
            eal.info().socket_id
        );
        let queues = u16::try_from(config.workers.lcores.len())
            .map_err(|_| StartError("too many worker lcores".into()))?;
        for &l in &config.workers.lcores {
            let lcore = LcoreId(l);
            if !eal.lcore_enabled(lcore) || lcore == eal.info().main_lcore {
                return Err(StartError(format!(
                    "workers.lcores: {lcore} is not a worker lcore of the EAL (main {}); \
                     list it in the EAL core list (-l) of [dpdk] eal_args, apart from the main lcore",
                    eal.info().main_lcore
                )));
            }
        }
        // Data room: the largest frame (MTU + Ethernet + VLAN) plus headroom,
        // never below DPDK's default.
        let max_mtu = config.ports.iter().map(|p| p.mtu).max().unwrap_or(1500);
        let room = (usize::from(max_mtu) + 18 + dpdk_sys::RTE_PKTMBUF_HEADROOM as usize)
            .max(dpdk_sys::RTE_MBUF_DEFAULT_BUF_SIZE as usize);
        let room = u16::try_from(room).map_err(|_| StartError("MTU too large".into()))?;
        let mempool = Mempool::create(&eal, "lb_mbufs", config.dpdk.mbufs, room)?;
        log::info!(
            "mbuf pool: {} mbufs of {room} bytes ({})",
            config.dpdk.mbufs,
            Mempool::ops_name()
        );

        let mut ports = Vec::new();
        let mut rx_by_port = Vec::new();
        let mut tx_by_port = Vec::new();
        for p in &config.ports {
            let setup = PortSetup {
                device_name: device_name(&p.device),
                queues,
                mtu: p.mtu,
                mempool,
                rx_descriptors: PORT_DESCRIPTORS,
                tx_descriptors: PORT_DESCRIPTORS,
                mac: p.mac,
            };
            let (port, rx, tx) = Port::start(&eal, &setup)
                .map_err(|e| StartError(format!("port {} ({}): {e}", p.name, p.device)))?;
            log::info!(
                "port {} ({}, driver {}): {} up, mac {}, {} queue pair(s)",
                p.name,
                p.device,
                port.driver(),
                addresses(p),
                port.mac(),
                queues
            );
            ports.push((p.name.clone(), port));
            rx_by_port.push(rx.into_iter());
            tx_by_port.push(tx.into_iter());
        }
        let macs: Vec<_> = ports.iter().map(|(_, p)| p.mac()).collect();
        // What the dataplane sends at most on each port: the config's MTU,
        // or the device's where the driver kept a smaller one.
        let mtus: Vec<u16> = ports
            .iter()
            .zip(&config.ports)
            .map(|((_, port), p)| port.mtu().min(p.mtu))
            .collect();
        for (p, &mtu) in config.ports.iter().zip(&mtus) {
            // Validation holds the config's to this; a driver may not
            // (found in review).
            if p.address6.is_some() && mtu < IPV6_MIN_MTU {
                return Err(StartError(format!(
                    "port {} ({}): the device keeps an MTU of {mtu}, below {IPV6_MIN_MTU}, the IPv6 \
                     minimum link MTU (RFC 8200): a port with address6 needs a device that takes at \
                     least {IPV6_MIN_MTU}",
                    p.name, p.device
                )));
            }
        }
        // The kernel interfaces: the port's MAC (so that the kernel takes
        // the frames addressed to the port) and MTU, then its addresses.
        let mut kernel_ports = Vec::new();
        let mut groups = Vec::new();
        let mut taps_by_port = Vec::new();
        for (i, p) in config.ports.iter().enumerate() {
            let Some(name) = &p.kernel_interface else {
                taps_by_port.push(None);
                continue;
            };
            let device = kernel::tap_device(i);
            let setup = PortSetup {
                device_name: &device,
                queues,
                mtu: mtus[i],
                mempool,
                rx_descriptors: TAP_DESCRIPTORS,
                tx_descriptors: TAP_DESCRIPTORS,
                mac: Some(macs[i]),
            };
            let (tap, rx, tx) = Port::start(&eal, &setup).map_err(|e| {
                StartError(format!("port {}: kernel interface {name}: {e}", p.name))
            })?;
            kernel::configure(p, name, mtus[i])?;
            // Only for an IPv6 port, and never a reason not to start (a
            // host with IPv6 turned off has no socket for it): without
            // it, a switch that snoops MLD may forget the groups.
            if p.address6.is_some() {
                match kernel::Groups::open(name) {
                    Ok(g) => groups.push((i, g)),
                    Err(e) => log::warn!("{e}: the VIPs' multicast groups are not joined"),
                }
            }
            log::info!(
                "port {}: kernel interface {name} ({}, mac {}, {} queue pair(s))",
                p.name,
                tap.driver(),
                tap.mac(),
                queues
            );
            kernel_ports.push((name.clone(), tap));
            taps_by_port.push(Some((rx.into_iter(), tx.into_iter())));
        }
        let mut ids = Ids::default();
        // `is_up` gives each checked real's health (reals under a check start
        // down, the control thread decides).
        let snapshot = with_port_mtus(Snapshot::compile(config, &macs, 1, &mut ids, is_up)?, &mtus);
        snapshot.check_tunnel6_mtus(config)?;
        let snapshot = Arc::new(snapshot);
        let stop = Arc::new(AtomicBool::new(false));
        let left = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let n = config.workers.lcores.len();
        // Hand-off rings for every ordered pair of workers. Deep, so that an
        // owner descheduled for a moment loses nothing; under a flood all of
        // them together can hold more mbufs than a small pool has, and the
        // ports' receive rings then go without (rx_nombuf) until the owners
        // catch up: said at start, with what the rings of the ports and of
        // the kernel interfaces (found in audit: first left out), their
        // transmit rings and the lcores' caches (found in review: left out
        // after that) hold too.
        let rings: Vec<(u16, u16)> = ports
            .iter()
            .map(|(_, p)| p.descriptors())
            .chain(kernel_ports.iter().map(|(_, t)| (t.descriptors().0, 0)))
            .collect();
        let held = mbufs_held(
            &rings,
            queues,
            n,
            kernel_ports.len(),
            config.dpdk.mbufs,
            usize::from(config.dpdk.burst),
        );
        if held.total() > config.dpdk.mbufs as usize {
            log::warn!(
                "[dpdk] mbufs = {}: the ports' receive and transmit rings ({}, kernel \
                 interfaces' included), the {} hand-off rings between the workers ({}), \
                 the lcores' caches ({}) and the workers' hold, deferral and kernel \
                 queues and bursts in hand ({}) can hold more than that under a flood; give the pool at \
                 least {} to keep them from running it dry",
                config.dpdk.mbufs,
                held.on_rings,
                n * n.saturating_sub(1),
                held.in_handoff,
                held.in_caches,
                held.in_workers,
                held.total() * 2
            );
        }
        let mut producers: Vec<Vec<Option<dpdk::RingProducer>>> =
            (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
        let mut consumers: Vec<Vec<dpdk::RingConsumer>> = (0..n).map(|_| Vec::new()).collect();
        for (from, row) in producers.iter_mut().enumerate() {
            for (to, slot) in row.iter_mut().enumerate() {
                if from != to {
                    let (p, c) = spsc_ring(&eal, &format!("lb_handoff_{from}_{to}"), HANDOFF_RING)?;
                    *slot = Some(p);
                    consumers[to].push(c);
                }
            }
        }
        let (neighbor_tx, neighbor_rx): (Vec<_>, Vec<_>) = (0..n).map(|_| bounded(256)).unzip();
        let tsc_per_ms = eal.tsc_hz() / 1000;
        let doorbells: Vec<Arc<Doorbell>> = (0..n).map(|_| Arc::default()).collect();
        let mut dp = Dataplane {
            eal,
            ports,
            kernel_ports,
            groups,
            workers: Vec::new(),
            stop: Arc::clone(&stop),
            snapshot: Arc::clone(&snapshot),
            retired: Vec::new(),
            mempool,
            ids,
            macs,
            mtus,
            sync: None,
        };
        let mut worker_links: Vec<Option<sync_link::WorkerLink>> = match &config.sync {
            Some(_) => {
                let (w, c) = sync_link::links(n);
                dp.sync = Some(c);
                w.into_iter().map(Some).collect()
            }
            None => (0..n).map(|_| None).collect(),
        };
        // Both roles record: whichever is active tells the other.
        let syncs = config.sync.is_some();
        let capacity = config.flows.capacity as usize;
        // The flow tables' arrays on transparent huge pages (lb-core asks,
        // the DPDK wrapper's madvise does it); set once per process.
        lb_core::hint::set_huge_page_advice(dpdk::advise_huge_pages);
        for (index, (&l, (handoff_out, handoff_in))) in config
            .workers
            .lcores
            .iter()
            .zip(producers.into_iter().zip(consumers))
            .enumerate()
        {
            let (tx_updates, rx_updates) = latest();
            let (tx_queries, rx_queries) = bounded(1);
            let stats = Arc::new(WorkerStats::default());
            let mut pipeline = Pipeline::new(index, n, capacity, Arc::clone(&stats));
            if syncs {
                pipeline.enable_sync(lb_core::sync::EVENT_QUEUE_CAPACITY);
            }
            let worker = Worker {
                index,
                rx: rx_by_port
                    .iter_mut()
                    .map(|q| q.next().expect("one rx queue per worker"))
                    .collect(),
                tx: tx_by_port
                    .iter_mut()
                    .map(|q| q.next().expect("one tx queue per worker"))
                    .collect(),
                burst: usize::from(config.dpdk.burst),
                snapshot: Arc::clone(&snapshot),
                updates: rx_updates,
                stats: Arc::clone(&stats),
                stop: Arc::clone(&stop),
                left: Arc::clone(&left),
                pipeline,
                mempool,
                handoff_out,
                handoff_in,
                neighbors_out: (0..n)
                    .filter(|&j| j != index)
                    .map(|j| neighbor_tx[j].clone())
                    .collect(),
                neighbors_in: neighbor_rx[index].clone(),
                kernel: KernelPath::new(
                    taps_by_port
                        .iter_mut()
                        .map(|t| {
                            t.as_mut().map(|(rx, tx)| Tap {
                                rx: rx.next().expect("one tap rx queue per worker"),
                                tx: tx.next().expect("one tap tx queue per worker"),
                            })
                        })
                        .collect(),
                    dp.macs.clone(),
                ),
                tsc_per_ms,
                poll: config.workers.poll,
                doorbells: doorbells.clone(),
                sync: worker_links[index].take(),
                queries: rx_queries,
            };
            let launched = dp.eal.launch(LcoreId(l), move || worker.run());
            match launched {
                Ok(launched) => dp.workers.push(RunningWorker {
                    lcore: LcoreId(l),
                    launched: Some(launched),
                    stats,
                    updates: tx_updates,
                    queries: tx_queries,
                }),
                Err(e) => {
                    dp.shutdown();
                    return Err(e.into());
                }
            }
        }
        dp.join_groups();
        Ok(dp)
    }

    /// Each worker's end for flow listings (`ctl connections`), in worker
    /// order.
    pub fn flow_queries(&self) -> Vec<Sender<FlowQuery>> {
        self.workers.iter().map(|w| w.queries.clone()).collect()
    }

    pub fn port_names(&self) -> impl Iterator<Item = &str> {
        self.ports.iter().map(|(n, _)| n.as_str())
    }

    /// The ports with their names (handles share the port; it closes when
    /// the last one is dropped).
    pub fn ports(&self) -> Vec<(String, Port)> {
        self.ports.clone()
    }

    /// The kernel interfaces (interface name, tap device), in port order.
    pub fn kernel_ports(&self) -> Vec<(String, Port)> {
        self.kernel_ports.clone()
    }

    /// Each port's name and counters.
    pub fn port_stats(&self) -> Vec<(String, PortStats)> {
        self.ports
            .iter()
            .map(|(n, p)| (n.clone(), p.stats().unwrap_or_default()))
            .collect()
    }

    /// Each worker's lcore and counters.
    pub fn worker_stats(&self) -> Vec<(LcoreId, Arc<WorkerStats>)> {
        self.workers
            .iter()
            .map(|w| (w.lcore, Arc::clone(&w.stats)))
            .collect()
    }

    /// `[sync]`: the sync thread's ends of the workers' hand-overs (once;
    /// None without the section).
    pub fn take_sync_links(&mut self) -> Option<ControlLinks> {
        self.sync.take()
    }

    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    pub fn mempool(&self) -> Mempool {
        self.mempool
    }

    /// Compiles `config` against the running ports, keeping the ids of
    /// services and reals that remain. `is_up` gives each checked real's
    /// health. Does not publish.
    pub fn compile(
        &mut self,
        config: &Config,
        is_up: impl Fn(&str, std::net::IpAddr, u16) -> bool,
    ) -> Result<Snapshot, CompileError> {
        let generation = self.snapshot.generation + 1;
        let mut ids = self.ids.clone();
        // Short of fresh ids, removed reals' ids that every worker has
        // drained go to new reals.
        let stats: Vec<&WorkerStats> = self.workers.iter().map(|w| &*w.stats).collect();
        ids.prepare(config, &stats);
        let snap = with_port_mtus(
            Snapshot::compile(config, &self.macs, generation, &mut ids, is_up)?,
            &self.mtus,
        );
        snap.check_tunnel6_mtus(config)?;
        self.ids = ids;
        Ok(snap)
    }

    /// Hands `snapshot` to every worker, which switches to it between
    /// bursts. Never blocks: a worker that has not taken the previous one
    /// yet (it is stalled, say) gets this one instead when it comes back.
    pub fn publish(&mut self, snapshot: Snapshot) {
        let snapshot = Arc::new(snapshot);
        for w in &self.workers {
            w.updates.replace(Arc::clone(&snapshot));
        }
        let old = std::mem::replace(&mut self.snapshot, snapshot);
        self.retired.push(old);
        self.join_groups();
        self.reap_retired();
    }

    /// Waits up to `limit` until every running worker has switched to
    /// the snapshot of `generation` (or a later one); false if one has
    /// not by then (it is stuck, and forwards nothing meanwhile).
    pub fn wait_adopted(&self, generation: u64, limit: std::time::Duration) -> bool {
        wait_until(limit, || {
            self.workers
                .iter()
                .filter(|w| w.launched.as_ref().is_some_and(|l| !l.is_finished()))
                .all(|w| w.stats.generation.get_acquire() >= generation)
        })
    }

    /// Drops the retired snapshots no worker holds any more. Found in
    /// audit: the last worker to adopt a new snapshot freed the old one,
    /// and with it every Maglev table a reload replaced (about 128 KiB
    /// each, thousands with thousands of services), in one poll of its
    /// loop; so each is kept here, and freed here, on the control thread.
    /// Found in audit (churn): every snapshot at or after a stalled
    /// worker's generation was kept, though that worker holds only its
    /// own and its slot only the newest, so memory grew with publishes
    /// for as long as it was stalled. The control thread calls it on
    /// every tick.
    pub fn reap_retired(&mut self) {
        if self.retired.is_empty() {
            return;
        }
        reap(&mut self.retired);
        // What is left, someone still holds: workers stuck on as many
        // generations (stuck in a poll: the supervisor withdraws the VIPs
        // then).
        if self.retired.len() != RETIRED_WARN {
            return;
        }
        let oldest_running = self
            .workers
            .iter()
            .filter(|w| w.launched.is_some())
            .map(|w| w.stats.generation.get_acquire())
            .min()
            .unwrap_or(u64::MAX);
        log::warn!(
            "{} replaced configuration snapshots are still held by workers (the oldest running generation is {oldest_running})",
            self.retired.len()
        );
    }

    /// Has each kernel interface join the solicited-node groups of the
    /// addresses only the dataplane holds on its port, as the running
    /// snapshot has them (`kernel::Groups`).
    fn join_groups(&mut self) {
        for (port, g) in &mut self.groups {
            g.update(&kernel::dataplane_only6(&self.snapshot, *port));
        }
    }

    /// The workers that ended before the stop (a panic, caught at the
    /// lcore's entry, or an error), each once, with how: a worker only ends
    /// when told to. Any of them raises the stop flag, so that the others
    /// stop too; the caller stops the rest of the appliance. Does not block:
    /// the control thread calls it on every tick.
    pub fn ended_workers(&mut self) -> Vec<(LcoreId, WorkerEnd)> {
        let mut ended = Vec::new();
        for w in &mut self.workers {
            if !w.launched.as_ref().is_some_and(|l| l.is_finished()) {
                continue;
            }
            if let Some(l) = w.launched.take() {
                ended.push((w.lcore, WorkerEnd::from_rc(l.wait())));
            }
        }
        if !ended.is_empty() {
            self.stop.store(true, Ordering::Relaxed);
        }
        ended
    }

    /// Stops the workers (each finishes its burst) and returns the final
    /// port counters; the ports are stopped and closed when `self` drops.
    pub fn shutdown(&mut self) -> Vec<(String, PortStats)> {
        self.stop.store(true, Ordering::Relaxed);
        let finished = |w: &RunningWorker| w.launched.as_ref().is_none_or(|l| l.is_finished());
        if !wait_until(WORKER_STOP_DEADLINE, || self.workers.iter().all(finished)) {
            // A worker checks the stop flag between bursts, so one that has
            // not left its loop by now is stuck (a bug: a loop that does not
            // end). Waiting for it would hang the stop for ever, and stopping
            // the ports or the EAL under it would free what it still uses:
            // the only clean thing left is to end the process, which takes
            // the kernel interfaces (and their routes) and the memory with
            // it. The watchdog (Type=notify) would end it too, later.
            for w in self.workers.iter().filter(|w| !finished(w)) {
                log::error!(
                    "worker on {} did not stop within {:?}: it is stuck",
                    w.lcore,
                    WORKER_STOP_DEADLINE
                );
            }
            log::error!("exiting with status 1 without stopping the ports");
            std::process::exit(1);
        }
        for w in &mut self.workers {
            if let Some(l) = w.launched.take() {
                match WorkerEnd::from_rc(l.wait()) {
                    WorkerEnd::Returned(0) => {}
                    end => log::warn!("worker on {} {end}", w.lcore),
                }
            }
        }
        self.port_stats()
    }
}

/// How many replaced snapshots may wait for the workers before it is said.
const RETIRED_WARN: usize = 16;

/// Drops from `retired` what nothing else holds: a worker's snapshot
/// reaches it only through its slot, which holds only the newest (never
/// retired), so one that only `retired` holds can never be taken again,
/// and what is dropped here is the last reference (freed on this thread).
/// One a worker holds, or took from its slot and has not adopted yet, is
/// kept: that worker drops its reference, never the last one.
fn reap<T>(retired: &mut Vec<Arc<T>>) {
    retired.retain(|s| Arc::strong_count(s) > 1);
}

/// How long a stop waits for the workers to leave their loops (they look
/// at the stop flag between bursts, well under a millisecond apart; an
/// adaptive worker asleep wakes within about one).
pub const WORKER_STOP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(3);

/// Polls `done` every millisecond until it holds (true) or `limit` has
/// passed (false).
fn wait_until(limit: std::time::Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the start-up warning adds up: a default pool (16383) holds one
    /// port of two queue pairs and two workers; a second port with a
    /// kernel interface (whose transmit ring holds nothing) does not fit.
    #[test]
    fn the_mbufs_rings_and_caches_hold_are_counted() {
        let port = (PORT_DESCRIPTORS, PORT_DESCRIPTORS);
        let tap = (TAP_DESCRIPTORS, 0);
        let one = mbufs_held(&[port], 2, 2, 0, 16383, 64);
        assert_eq!(
            one,
            MbufsHeld {
                // Hold and deferral slots, a burst, 32 SYNs sent again.
                in_workers: 2 * (64 + 64 + 64 + 32),
                on_rings: 2 * 2048,
                in_handoff: 2 * 4095,
                in_caches: 3 * 384,
            }
        );
        assert!(one.total() <= 16383, "{one:?}");
        let two = mbufs_held(&[port, port, tap], 2, 2, 1, 16383, 64);
        assert_eq!(two.on_rings, 2 * 2 * 2048 + 2 * 256);
        // Each worker queues up to a whole burst for the kernel interface
        // (the sync peer's datagrams may take it all).
        assert_eq!(two.in_workers, 2 * (64 + 64 + 128 + 64 + 32));
        assert!(two.total() > 16383, "{two:?}");
        // A driver that gave fewer descriptors: counted as given.
        assert_eq!(mbufs_held(&[(512, 256)], 1, 1, 0, 16383, 32).on_rings, 768);
        // A small pool has small caches.
        assert_eq!(mbufs_held(&[port], 1, 1, 0, 100, 32).in_caches, 2 * 75);
    }

    #[test]
    fn waiting_for_the_workers_is_bounded() {
        let start = std::time::Instant::now();
        assert!(!wait_until(std::time::Duration::from_millis(50), || false));
        assert!(start.elapsed() >= std::time::Duration::from_millis(50));
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        let mut polls = 0;
        assert!(wait_until(std::time::Duration::from_secs(5), || {
            polls += 1;
            polls == 3
        }));
        assert_eq!(polls, 3);
    }

    #[test]
    fn pci_addresses_are_told_from_vdevs() {
        assert!(is_pci_address("0000:3b:00.0"));
        assert!(is_pci_address("3b:00.1"));
        assert!(is_pci_address("0000:af:1f.7,rxq_pkt_pad_en=1"));
        assert!(!is_pci_address("net_af_packet0,iface=lb0"));
        assert!(!is_pci_address("net_pcap0,rx_pcap=a.pcap"));
        assert!(!is_pci_address("0000:3b:00.8"));
        assert_eq!(device_name("net_af_packet0,iface=lb0"), "net_af_packet0");
        assert_eq!(device_name("0000:3b:00.0"), "0000:3b:00.0");
    }

    /// Found in audit (churn): every snapshot at or after a stalled
    /// worker's generation was kept while it was stalled. Only what a
    /// worker holds is: a stalled worker's own, and the one it took while
    /// others were published; what is dropped is freed here.
    #[test]
    fn reaping_keeps_only_the_snapshots_a_worker_holds() {
        let (slot, worker) = latest::<Arc<u64>>();
        let mut current = Arc::new(1u64);
        let mut retired: Vec<Arc<u64>> = Vec::new();
        let publish = |current: &mut Arc<u64>, retired: &mut Vec<Arc<u64>>, g: u64| {
            let next = Arc::new(g);
            slot.replace(Arc::clone(&next));
            retired.push(std::mem::replace(current, next));
            reap(retired);
        };
        // The worker runs 2, then stalls while 3..=1000 are published.
        publish(&mut current, &mut retired, 2);
        let held = worker.try_recv().unwrap();
        let watch = Arc::downgrade(&held);
        for g in 3..=1000 {
            publish(&mut current, &mut retired, g);
            assert!(retired.len() <= 1, "{g}: {} kept", retired.len());
        }
        assert_eq!(retired.iter().map(|s| **s).collect::<Vec<_>>(), [2]);
        // It comes back: takes the newest, then 1001 is published before it
        // drops 2: 1000 is in its hands, so kept; 2 is not yet let go.
        let taken = worker.try_recv().unwrap();
        assert_eq!(*taken, 1000);
        publish(&mut current, &mut retired, 1001);
        assert_eq!(retired.iter().map(|s| **s).collect::<Vec<_>>(), [2, 1000]);
        // It lets go of 2: the next reap frees it, here.
        drop(held);
        assert!(
            watch.upgrade().is_some(),
            "the worker's drop was not the last"
        );
        reap(&mut retired);
        assert!(watch.upgrade().is_none());
        assert_eq!(retired.iter().map(|s| **s).collect::<Vec<_>>(), [1000]);
        drop(taken);
        reap(&mut retired);
        assert!(retired.is_empty());
        assert_eq!(*worker.try_recv().unwrap(), 1001);
    }

    /// Found in review: the house rule is that what a worker drops is
    /// never the last reference, so that a replaced snapshot and its Maglev tables
    /// are freed on the control thread. With reaping by `strong_count`,
    /// the worker's `self.snapshot = next` (worker.rs) makes the control
    /// thread's next `reap` free the old snapshot at once, while the
    /// worker's `Schedulers` (`owners`) still hold that snapshot's
    /// schedulers until its `pipeline.adopt` a moment later: when `Ids`
    /// no longer keeps them spare (a worker stalled over many publishes),
    /// that adopt drops the last reference, and the tables are freed in
    /// the worker's loop. (Reaping by generation kept the snapshot until
    /// the worker had set its generation, after the adopt.)
    #[test]
    fn a_worker_never_drops_the_last_reference_to_a_scheduler() {
        use lb_core::scheduler::Schedulers;
        use std::net::{IpAddr, Ipv4Addr};
        let mut t = "[workers]\nlcores = [1]\n[[ports]]\nname = \"wan\"\n\
                     device = \"net_null0\"\naddress = \"198.18.0.2/24\"\n\
                     [[services]]\nname = \"web\"\nvip = \"198.18.1.100\"\nport = 80\n\
                     scheduler = \"mh\"\n[services.health_check]\nkind = \"tcp\"\n"
            .to_string();
        for j in 0..20 {
            t += &format!("[[services.reals]]\naddress = \"198.18.0.{}\"\n", 10 + j);
        }
        let config = Config::parse(&t).unwrap();
        let macs = [lb_config::MacAddr([2, 0, 0, 0, 0, 2])];
        let mut ids = Ids::default();
        let mut compile = |g: u64, down: Option<u8>| {
            Arc::new(
                Snapshot::compile(&config, &macs, g, &mut ids, |_, a, _| {
                    down.is_none_or(|d| a != IpAddr::V4(Ipv4Addr::new(198, 18, 0, d)))
                })
                .unwrap(),
            )
        };
        let mut current = compile(1, None);
        let mut retired: Vec<Arc<Snapshot>> = Vec::new();
        // The worker runs generation 1, its schedulers adopted.
        let mut held = Arc::clone(&current);
        let mut schedulers = Schedulers::for_worker(0);
        schedulers.adopt(&held);
        let first = Arc::downgrade(&held.services[0].scheduler);
        // It stalls while the control thread publishes 2..=41 (a real
        // flapping through the service's twenty): the spare tables go.
        for g in 2..=41u64 {
            let next = compile(g, Some(10 + (g % 20) as u8));
            retired.push(std::mem::replace(&mut current, next));
            reap(&mut retired);
        }
        // It comes back as the worker loop does (worker.rs): takes the
        // newest, keeps its old snapshot through the adopt...
        let old = std::mem::replace(&mut held, Arc::clone(&current));
        // ...the control thread ticks in between...
        reap(&mut retired);
        // ...the worker adopts the new snapshot's schedulers, then lets
        // the old snapshot go: none of it is the last reference.
        schedulers.adopt(&held);
        drop(old);
        assert!(
            first.upgrade().is_some(),
            "the worker dropped the last reference to generation 1's Maglev table"
        );
        // The control thread's next reap frees it.
        reap(&mut retired);
        assert!(first.upgrade().is_none(), "freed on the control thread");
    }

    /// Publishing to a worker that does not poll never blocks, and the
    /// worker finds the newest value when it comes back (the old publish
    /// fell back to a blocking send once its queue of 4 was full).
    #[test]
    fn a_stalled_worker_never_blocks_publishing_and_gets_the_newest() {
        let (slot, worker) = latest::<Arc<u64>>();
        let (done_tx, done) = std::sync::mpsc::channel();
        let publisher = std::thread::spawn(move || {
            for generation in 1..=1000u64 {
                slot.replace(Arc::new(generation));
            }
            done_tx.send(()).unwrap();
            slot
        });
        done.recv_timeout(std::time::Duration::from_secs(10))
            .expect("publishing blocked on a worker that does not poll");
        let slot = publisher.join().unwrap();
        // The worker comes back: one value waits, the newest.
        assert_eq!(worker.try_iter().map(|g| *g).collect::<Vec<_>>(), [1000]);
        // Values replaced unseen were dropped, not leaked.
        let held = Arc::new(0u64);
        slot.replace(Arc::clone(&held));
        slot.replace(Arc::new(1001));
        assert_eq!(Arc::strong_count(&held), 1);
        // A worker that keeps up sees every value.
        for g in 1002..1005u64 {
            slot.replace(Arc::new(g));
            let _ = worker.try_recv();
        }
        slot.replace(Arc::new(1005));
        assert_eq!(*worker.try_recv().unwrap(), 1005);
        assert!(worker.try_recv().is_err());
    }
}
