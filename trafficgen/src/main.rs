//! `lb-trafficgen`: a DPDK traffic generator for lb-appliance.
//!
//! It sends TCP flows the way a client population does (per flow a SYN,
//! then data segments, from many distinct client addresses and ports) or
//! UDP datagrams, over IPv4 or IPv6 (the VIP's family), at a TSC-paced rate or as fast as the port takes them,
//! through one DPDK port; it receives on the same port and counts what comes
//! back by kind. On this machine it runs over `net_memif` (or
//! vhost-user/virtio-user) facing the appliance or `dpdk-testpmd` in another
//! process; see `scripts/bench-throughput.sh` and `tests/loadgen.rs`.
#![deny(unsafe_code)]

mod counters;
mod frames;

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use lb_config::{parse_duration, MacAddr};
use lb_core::wire::TcpFlags;
use lb_core::PacketBuf;
use lb_dataplane::dpdk::{
    rdtsc, Eal, LcoreId, MbufBurst, Mempool, Port, PortSetup, PortStats, RxQueue, TxQueue,
    MAX_BURST,
};
use serde_json::json;

use counters::RxCounts;
use frames::{Clients, Endpoints, Kind, Order, Schedule, Template};

/// Sends TCP flows (SYN, then ACK|PSH data) or UDP datagrams from many
/// clients to a VIP through a DPDK port, and counts what comes back.
#[derive(Debug, Parser)]
#[command(name = "lb-trafficgen", version, about, long_about = None)]
struct Cli {
    /// EAL arguments as one string, split at whitespace, such as
    /// "--lcores 0@1 --no-huge -m 256 --no-pci --no-shconf --file-prefix tg".
    /// With one lcore it sends and receives; with two or more, the first
    /// worker lcore sends and the main lcore receives.
    #[arg(long, allow_hyphen_values = true, value_name = "ARGS")]
    eal: String,

    /// The port: a vdev string (given to the EAL as --vdev), such as
    /// net_memif0,role=client,socket=/tmp/lb.sock,socket-abstract=no, or a
    /// PCI address (given as -a).
    #[arg(long, value_name = "DEVICE")]
    device: String,

    /// Source MAC of the frames (default: the port's own).
    #[arg(long, value_name = "MAC")]
    src_mac: Option<MacAddr>,

    /// Destination MAC of the frames: the appliance port's MAC.
    #[arg(long, value_name = "MAC", default_value = "ff:ff:ff:ff:ff:ff")]
    dst_mac: MacAddr,

    /// The address to send to (the service's VIP): IPv4, or IPv6 (then the
    /// frames are Ethernet + IPv6 without extension headers + TCP/UDP, and
    /// --clients must be an IPv6 block too).
    #[arg(long, default_value = "198.18.1.100")]
    vip: IpAddr,

    /// The destination port (the service's port).
    #[arg(long, default_value_t = 80)]
    port: u16,

    /// The clients' block, of the VIP's family: flow i comes from its i-th
    /// host address, then, once every address has a flow, from the next
    /// source port (from 1024). IPv4 skips the network and broadcast
    /// addresses (up to /30), IPv6 the subnet-router anycast address (up to
    /// /126). [default: 198.19.0.0/16, or 2001:2:100::/64 with an IPv6 --vip]
    #[arg(long, value_name = "CIDR")]
    clients: Option<Clients>,

    /// Distinct flows, sent to in turn.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    flows: u64,

    /// Packets per flow, its SYN included; 0 = until --duration or a signal.
    #[arg(long, value_name = "N", default_value_t = 0)]
    packets_per_flow: u64,

    /// The order of the flows in each round after the SYNs: sequential
    /// (the order they were opened in) or scrambled (every flow once per
    /// round, in an order unrelated to that, as independent clients'
    /// packets arrive).
    #[arg(long, value_enum, default_value_t = Order::Sequential)]
    order: Order,

    /// Packets per second (suffixes k, M); 0 = as fast as the port takes them.
    #[arg(long, value_name = "PPS", default_value = "0", value_parser = parse_rate)]
    rate: u64,

    /// How long to send, from the first packet the port takes (or, with
    /// --warmup-rounds, from the end of the warm-up); 0s = no limit.
    #[arg(long, value_name = "TIME", default_value = "10s", value_parser = parse_duration)]
    duration: Duration,

    /// Rounds of the schedule (one packet per flow each; round 0 is the
    /// SYNs) sent before the measured phase: the "measured" figures and
    /// --duration start once the port has taken them. 2 measures
    /// established flows only (the SYN, then the first ACK that completes
    /// the handshake, are warm-up).
    #[arg(long, value_name = "N", default_value_t = 0)]
    warmup_rounds: u64,

    /// Payload bytes of a data segment or datagram (SYNs carry none); 10
    /// makes 64-byte TCP frames, 22 64-byte UDP frames (IPv6: 4 makes
    /// 78-byte TCP frames, 0 74-byte ones; 16 makes 78-byte UDP frames).
    #[arg(long, value_name = "BYTES", default_value_t = 64)]
    payload: u16,

    /// What to send.
    #[arg(long, value_enum, default_value_t = Mode::Tcp)]
    mode: Mode,

    /// Packets per transmit burst (at most 128).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=128))]
    burst: u16,

    /// How long to keep receiving after the last packet is sent.
    #[arg(long, value_name = "TIME", default_value = "500ms", value_parser = parse_duration)]
    drain: Duration,

    /// Give up when the port has taken no packet after this long (a memif
    /// or virtio peer that never connected).
    #[arg(long, value_name = "TIME", default_value = "10s", value_parser = parse_duration)]
    link_timeout: Duration,

    /// Size of the mbuf pool.
    #[arg(long, default_value_t = 8191)]
    mbufs: u32,

    /// Check the IPv4 header and the TCP/UDP checksums of what comes back,
    /// IPv6 included (inner packets of tunnels too; an IPv6 UDP checksum of
    /// 0 is wrong), counted as bad checksums.
    #[arg(long)]
    verify_checksums: bool,

    /// Also print the summary as one line of JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Tcp,
    Udp,
}

fn parse_rate(s: &str) -> Result<u64, String> {
    let (digits, mult) = match s.strip_suffix(['k', 'K']) {
        Some(d) => (d, 1_000),
        None => match s.strip_suffix('M') {
            Some(d) => (d, 1_000_000),
            None => (s, 1),
        },
    };
    let v: f64 = digits.parse().map_err(|_| {
        format!("invalid rate {s:?}: expected packets per second such as 500000, 500k or 2.5M")
    })?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("invalid rate {s:?}: must be 0 or more"));
    }
    Ok((v * f64::from(mult)).round() as u64)
}

/// What the sending side did.
#[derive(Debug, Clone, Default)]
struct TxResult {
    sent: u64,
    first: Option<u64>,
    last: u64,
    /// When the port had taken one packet per flow (the SYN round, TCP).
    opened: Option<u64>,
    /// When the port had taken the warm-up rounds: the measured phase
    /// starts (the first packet's time without warm-up).
    mark: Option<u64>,
    sent_at_mark: u64,
    /// The process's scheduler figures at the mark.
    sched_at_mark: Option<Sched>,
    no_mbuf: u64,
    timed_out: bool,
}

/// The sending side: builds bursts from the schedule, paces them by the
/// TSC, and retries what the port did not take.
struct Sender {
    txq: TxQueue,
    pool: Mempool,
    schedule: Schedule,
    syn: Template,
    data: Template,
    udp: Template,
    burst: MbufBurst,
    burst_size: usize,
    rate: u64,
    hz: u64,
    duration: u64,
    link_timeout: u64,
    began: u64,
    flows: u64,
    /// Packets of the warm-up rounds.
    warmup: u64,
    /// The mark's TSC for the receiving side (0 until then).
    mark_tsc: Arc<AtomicU64>,
    exhausted: bool,
    done: bool,
    res: TxResult,
}

impl Sender {
    /// One round of the send loop; false once sending is over.
    #[inline]
    fn step(&mut self, now: u64, stop: &AtomicBool) -> bool {
        if self.done {
            return false;
        }
        let over_time = match (self.res.first, self.res.mark) {
            (_, Some(mark)) => self.duration != 0 && now.wrapping_sub(mark) >= self.duration,
            (Some(_), None) => false,
            (None, None) => {
                let late = now.wrapping_sub(self.began) >= self.link_timeout;
                self.res.timed_out = late;
                late
            }
        };
        if over_time || stop.load(Ordering::Relaxed) || (self.exhausted && self.burst.is_empty()) {
            self.burst.free_all();
            self.done = true;
            return false;
        }
        if self.burst.is_empty() && !self.exhausted {
            let n = self.due(now);
            self.fill(n);
        }
        if !self.burst.is_empty() {
            let k = self.txq.tx_burst(&mut self.burst);
            if k > 0 {
                self.res.first.get_or_insert(now);
                self.res.sent += k as u64;
                self.res.last = now;
                if self.res.opened.is_none() && self.res.sent >= self.flows {
                    self.res.opened = Some(now);
                }
                if self.res.mark.is_none() && self.res.sent >= self.warmup {
                    self.res.mark = Some(now);
                    self.res.sent_at_mark = self.res.sent;
                    self.res.sched_at_mark = Sched::now();
                    self.mark_tsc.store(now.max(1), Ordering::Release);
                }
            }
        }
        true
    }

    /// How many packets to build now: a whole burst when unpaced; when
    /// paced, a burst of about a millisecond's worth once that many are due.
    fn due(&self, now: u64) -> usize {
        if self.rate == 0 {
            return self.burst_size;
        }
        let size = (self.rate / 1000).clamp(1, self.burst_size as u64);
        let Some(first) = self.res.first else {
            return size as usize;
        };
        let elapsed = u128::from(now.wrapping_sub(first));
        let due = (elapsed * u128::from(self.rate) / u128::from(self.hz)) as u64;
        // The first burst went out at `first`: it is the one due at time 0.
        let allowed = (due + size).saturating_sub(self.res.sent);
        if allowed >= size {
            size as usize
        } else {
            0
        }
    }

    fn fill(&mut self, n: usize) {
        for _ in 0..n {
            let Some(mut m) = self.pool.alloc() else {
                self.res.no_mbuf += 1;
                return;
            };
            let Some(p) = self.schedule.next_packet() else {
                self.exhausted = true;
                return;
            };
            let t = match p.kind {
                Kind::Syn => &self.syn,
                Kind::Data => &self.data,
                Kind::Udp => &self.udp,
            };
            if !m.append(t.frame_len()) {
                self.res.no_mbuf += 1;
                return;
            }
            t.write(m.data_mut(), p.src, p.sport, p.seq);
            if self.burst.push(m).is_err() {
                return;
            }
        }
    }

    fn finish(mut self) -> TxResult {
        self.burst.free_all();
        self.res
    }
}

/// The receiving side.
struct Receiver {
    rxq: RxQueue,
    burst: MbufBurst,
    vip: IpAddr,
    verify: bool,
    counts: RxCounts,
    first: Option<u64>,
    last: u64,
    /// The sender's mark (0 until the warm-up is sent).
    mark_tsc: Arc<AtomicU64>,
    /// Packets received before the mark was seen.
    at_mark: Option<u64>,
}

impl Receiver {
    #[inline]
    fn poll(&mut self, now: u64) -> usize {
        if self.at_mark.is_none() && self.mark_tsc.load(Ordering::Acquire) != 0 {
            self.at_mark = Some(self.counts.packets);
        }
        // A chained or shared mbuf (which the receive queue frees as it
        // arrives) is a packet received all the same, of no kind counted.
        let mut unfit = 0;
        let n = self
            .rxq
            .rx_burst(&mut self.burst, MAX_BURST, |_| unfit += 1);
        self.counts.packets += unfit;
        self.counts.other += unfit;
        if n > 0 {
            for m in self.burst.as_mut_slice() {
                self.counts.count(m.data(), self.vip, self.verify);
            }
            self.burst.free_all();
            self.first.get_or_insert(now);
            self.last = now;
        }
        n
    }
}

/// How long the process's threads ran on a CPU and waited for one, in
/// nanoseconds (`/proc/self/task/*/schedstat`): on a shared machine the
/// measured phase is only as good as the CPU share the generator had.
#[derive(Debug, Clone, Copy, Default)]
struct Sched {
    run_ns: u64,
    wait_ns: u64,
}

impl Sched {
    fn now() -> Option<Sched> {
        let mut total = Sched::default();
        for task in std::fs::read_dir("/proc/self/task").ok()? {
            let Ok(text) = std::fs::read_to_string(task.ok()?.path().join("schedstat")) else {
                continue; // a thread that just ended
            };
            let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
            total.run_ns += fields.next()??;
            total.wait_ns += fields.next()??;
        }
        Some(total)
    }
}

/// The first lcore the EAL runs other than the main one.
fn worker_lcore(eal: &Eal) -> Option<LcoreId> {
    (0..1024)
        .map(LcoreId)
        .find(|l| *l != eal.info().main_lcore && eal.lcore_enabled(*l))
}

fn secs(ticks: u64, hz: u64) -> f64 {
    ticks as f64 / hz as f64
}

fn mpps(packets: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        packets as f64 / seconds / 1e6
    } else {
        0.0
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lb-trafficgen: {e}");
            ExitCode::from(1)
        }
    }
}

/// The clients' block: the one given, of the VIP's family, or the default
/// of that family.
fn clients(cli: &Cli) -> Result<Clients, String> {
    let default = if cli.vip.is_ipv6() {
        "2001:2:100::/64"
    } else {
        "198.19.0.0/16"
    };
    let clients = match cli.clients {
        Some(c) => c,
        None => default.parse()?,
    };
    if clients.is_ipv6() != cli.vip.is_ipv6() {
        let family = |v6: bool| if v6 { "IPv6" } else { "IPv4" };
        return Err(format!(
            "--vip {} is {} but --clients is an {} block ({}): both must be of one \
             family (NAT between IPv4 and IPv6 is not what the appliance does)",
            cli.vip,
            family(cli.vip.is_ipv6()),
            family(clients.is_ipv6()),
            clients,
        ));
    }
    Ok(clients)
}

fn run(cli: &Cli) -> Result<ExitCode, String> {
    // Before the EAL starts: a bad command line changes nothing.
    let clients = clients(cli)?;
    let mut eal_args: Vec<String> = cli.eal.split_whitespace().map(str::to_owned).collect();
    let is_pci = cli.device.contains(':') && !cli.device.contains('=');
    eal_args.push(if is_pci { "-a" } else { "--vdev" }.to_owned());
    eal_args.push(cli.device.clone());
    let device_name = cli.device.split(',').next().unwrap_or_default().to_owned();

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .map_err(|e| format!("installing the signal handlers: {e}"))?;
    }

    let eal = Eal::init(&eal_args).map_err(|e| e.to_string())?;
    let hz = eal.tsc_hz();
    let pool =
        Mempool::create(&eal, "trafficgen", cli.mbufs, 2048 + 128).map_err(|e| e.to_string())?;
    let (port, mut rxs, mut txs) = Port::start(
        &eal,
        &PortSetup {
            device_name: &device_name,
            queues: 1,
            mtu: 1500,
            mempool: pool,
            rx_descriptors: 1024,
            tx_descriptors: 1024,
            mac: None,
        },
    )
    .map_err(|e| e.to_string())?;
    let (Some(rxq), Some(txq)) = (rxs.pop(), txs.pop()) else {
        return Err(format!("{device_name}: no queue"));
    };

    let ep = Endpoints {
        src_mac: cli.src_mac.unwrap_or_else(|| port.mac()),
        dst_mac: cli.dst_mac,
        vip: cli.vip,
        port: cli.port,
    };
    let payload = usize::from(cli.payload);
    let udp = cli.mode == Mode::Udp;
    let ticks = |d: Duration| (d.as_secs_f64() * hz as f64) as u64;
    let began = rdtsc();
    let mark_tsc = Arc::new(AtomicU64::new(0));
    let sender = Sender {
        txq,
        pool,
        schedule: Schedule::new(
            clients,
            cli.flows,
            cli.packets_per_flow,
            udp,
            u32::from(cli.payload),
            cli.order,
        ),
        syn: Template::tcp(&ep, TcpFlags::SYN, 0),
        data: Template::tcp(&ep, TcpFlags::ACK | TcpFlags::PSH, payload),
        udp: Template::udp(&ep, payload),
        burst: MbufBurst::new(),
        burst_size: usize::from(cli.burst),
        rate: cli.rate,
        hz,
        duration: ticks(cli.duration),
        link_timeout: ticks(cli.link_timeout),
        began,
        flows: cli.flows.max(1),
        warmup: cli.flows.max(1).saturating_mul(cli.warmup_rounds),
        mark_tsc: Arc::clone(&mark_tsc),
        exhausted: false,
        done: false,
        res: TxResult::default(),
    };
    let mut receiver = Receiver {
        rxq,
        burst: MbufBurst::new(),
        vip: cli.vip,
        verify: cli.verify_checksums,
        counts: RxCounts::default(),
        first: None,
        last: 0,
        mark_tsc,
        at_mark: None,
    };
    if cli.flows > clients.capacity() {
        log::warn!(
            "{} flows but only {} distinct client (address, port) pairs: flows repeat",
            cli.flows,
            clients.capacity()
        );
    }
    let tx_lcore = worker_lcore(&eal);
    eprintln!(
        "lb-trafficgen: {} {} flows from {} to {} on {} ({}), rate {}, {}",
        cli.flows,
        if udp { "UDP" } else { "TCP" },
        clients,
        SocketAddr::new(cli.vip, cli.port),
        device_name,
        port.driver(),
        if cli.rate == 0 {
            "as fast as possible".to_owned()
        } else {
            format!("{} pps", cli.rate)
        },
        match tx_lcore {
            Some(l) => format!("sending on {l}, receiving on {}", eal.info().main_lcore),
            None => format!("sending and receiving on {}", eal.info().main_lcore),
        }
    );

    let drain = ticks(cli.drain);
    let tx = match tx_lcore {
        None => {
            let mut sender = sender;
            let mut sending = true;
            let mut ended = 0;
            loop {
                let now = rdtsc();
                if sending {
                    sending = sender.step(now, &stop);
                    if !sending {
                        ended = now;
                    }
                }
                receiver.poll(now);
                if !sending && (now.wrapping_sub(ended) >= drain || sender.res.timed_out) {
                    break;
                }
            }
            sender.finish()
        }
        Some(lcore) => {
            let (done_tx, done_rx) = mpsc::channel();
            let stop_tx = Arc::clone(&stop);
            let mut sender = sender;
            let launched = eal
                .launch(lcore, move || {
                    while sender.step(rdtsc(), &stop_tx) {}
                    let _ = done_tx.send(sender.finish());
                    0
                })
                .map_err(|e| e.to_string())?;
            let mut result = None;
            let mut ended = 0;
            loop {
                let now = rdtsc();
                receiver.poll(now);
                if result.is_none() {
                    if let Ok(r) = done_rx.try_recv() {
                        result = Some(r);
                        ended = now;
                    }
                }
                if let Some(r) = &result {
                    if now.wrapping_sub(ended) >= drain || r.timed_out {
                        break;
                    }
                }
            }
            launched.wait();
            result.unwrap_or_default()
        }
    };
    let sched_end = Sched::now();
    let sched_end_tsc = rdtsc();
    let stats = port.stats().unwrap_or_default();
    let rx_secs = secs(
        receiver.last.saturating_sub(receiver.first.unwrap_or(0)),
        hz,
    );
    let rx_last = receiver.last;
    let rx_at_mark = receiver.at_mark;
    let counts = std::mem::take(&mut receiver.counts);
    drop(receiver);
    drop(port);
    if tx.timed_out {
        return Err(format!(
            "{device_name} took no packet in {:?}: is the peer up (a memif server, a vhost-user \
             backend) and is the link connected?",
            cli.link_timeout
        ));
    }
    let tx_secs = tx
        .first
        .map_or(0.0, |f| secs(tx.last.saturating_sub(f), hz));
    let syn = if udp { 0 } else { tx.sent.min(cli.flows) };
    let data = if udp { 0 } else { tx.sent - syn };
    let udp_sent = if udp { tx.sent } else { 0 };
    let flows = tx.sent.min(cli.flows);
    let first = tx.first.unwrap_or(0);
    let opened_secs = tx
        .opened
        .filter(|_| !udp)
        .map(|o| secs(o.saturating_sub(first), hz));
    // The measured phase: from the mark (the end of the warm-up rounds) to
    // the last packet sent, and to the last one received.
    let measured = tx.mark.map(|mark| {
        let tx_n = tx.sent - tx.sent_at_mark;
        let tx_s = secs(tx.last.saturating_sub(mark), hz);
        let rx_n = counts.packets - rx_at_mark.unwrap_or(counts.packets);
        let rx_s = secs(rx_last.saturating_sub(mark), hz);
        (secs(mark.saturating_sub(first), hz), tx_n, tx_s, rx_n, rx_s)
    });
    // CPU time and runqueue wait over the measured phase, per wall second.
    let cpu = match (tx.mark, tx.sched_at_mark, sched_end) {
        (Some(mark), Some(a), Some(b)) => {
            let wall_ns = secs(sched_end_tsc.saturating_sub(mark), hz) * 1e9;
            (wall_ns > 0.0).then(|| {
                (
                    b.run_ns.saturating_sub(a.run_ns) as f64 / wall_ns,
                    b.wait_ns.saturating_sub(a.wait_ns) as f64 / wall_ns,
                )
            })
        }
        _ => None,
    };
    let cpu_text = cpu.map_or_else(
        || "unknown".to_owned(),
        |(run, wait)| format!("{:.0} % (runqueue wait {:.0} %)", run * 100.0, wait * 100.0),
    );
    let dests: Vec<String> = counts
        .destinations
        .iter()
        .map(|(a, n)| format!("{a}={n}"))
        .collect();
    println!(
        "sent {} packets ({:.3} Mpps), received {} packets ({:.3} Mpps), to-real {}, to-vip {}, \
         ipip {}, arp {}, other {}, bad-checksum {}; flows {}, syn {}, data {}, udp {}; \
         send time {:.3} s, no-mbuf {}, port rx-missed {}; destinations {}",
        tx.sent,
        mpps(tx.sent, tx_secs),
        counts.packets,
        mpps(counts.packets, rx_secs),
        counts.to_real,
        counts.to_vip,
        counts.ipip,
        counts.arp,
        counts.other,
        counts.bad_checksum,
        flows,
        syn,
        data,
        udp_sent,
        tx_secs,
        tx.no_mbuf,
        stats.rx_missed,
        if dests.is_empty() {
            "none".to_owned()
        } else {
            dests.join(" ")
        }
    );
    match measured {
        Some((warm_s, tx_n, tx_s, rx_n, rx_s)) => println!(
            "measured after {} warm-up rounds ({} packets, {:.3} s; SYN round {}): sent {} packets \
             ({:.3} Mpps), received {} packets ({:.3} Mpps) in {:.3} s; CPU {}",
            cli.warmup_rounds,
            tx.sent_at_mark,
            warm_s,
            opened_secs.map_or_else(|| "-".to_owned(), |s| format!("{s:.3} s")),
            tx_n,
            mpps(tx_n, tx_s),
            rx_n,
            mpps(rx_n, rx_s),
            rx_s,
            cpu_text,
        ),
        None => println!(
            "measured after {} warm-up rounds: none (the warm-up was not sent: {} packets)",
            cli.warmup_rounds, tx.sent
        ),
    }
    if cli.json {
        let measured_json = measured.map(|(warm_s, tx_n, tx_s, rx_n, rx_s)| {
            json!({
                "warmup_rounds": cli.warmup_rounds,
                "warmup_packets": tx.sent_at_mark,
                "warmup_seconds": warm_s,
                "syn_round_seconds": opened_secs,
                "sent": tx_n,
                "sent_mpps": mpps(tx_n, tx_s),
                "received": rx_n,
                "received_mpps": mpps(rx_n, rx_s),
                "seconds": rx_s,
                "cpu": cpu.map(|c| c.0),
                "runqueue_wait": cpu.map(|c| c.1),
            })
        });
        let out = json!({
            "sent": {
                "packets": tx.sent,
                "mpps": mpps(tx.sent, tx_secs),
                "seconds": tx_secs,
                "flows": flows,
                "syn": syn,
                "data": data,
                "udp": udp_sent,
                "no_mbuf": tx.no_mbuf,
            },
            "received": {
                "mpps": mpps(counts.packets, rx_secs),
                "seconds": rx_secs,
                "counts": counts.to_json(),
            },
            "measured": measured_json,
            "port": port_json(&stats),
        });
        println!("{out}");
    }
    Ok(ExitCode::SUCCESS)
}

fn port_json(s: &PortStats) -> serde_json::Value {
    json!({
        "rx_packets": s.rx_packets,
        "tx_packets": s.tx_packets,
        "rx_missed": s.rx_missed,
        "rx_errors": s.rx_errors,
        "tx_errors": s.tx_errors,
        "rx_nombuf": s.rx_nombuf,
    })
}
