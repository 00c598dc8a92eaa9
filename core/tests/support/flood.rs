//! A flood lab at the pipeline level, shared by the reduced-scale tests
//! (`core/tests/flood.rs`) and the full-scale benchmark
//! (`core/benches/flood.rs`): one worker's `Pipeline`, a virtual clock,
//! spoofed floods at a given rate, and legitimate TCP connections whose
//! client and real behave like TCP endpoints (the real answers a SYN with a
//! SYN-ACK after 1 ms; the client answers a SYN-ACK with an ACK after its
//! delay, then sends data 1 ms later). A handshake *completes* when that
//! data reaches the real that got the connection's SYN.
//!
//! Addresses: the appliance 198.18.0.2, reals 198.18.0.11–14, clients
//! (legitimate and spoofed) in 198.19.0.0/16, all inside the benchmarking
//! range; nothing leaves the process.

#![allow(dead_code)] // each includer uses part of it

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

use lb_config::{Config, MacAddr};
use lb_core::pipeline::{Pipeline, Verdict};
use lb_core::snapshot::{Ids, Snapshot};
use lb_core::wire::{
    tcp, EtherType, EthernetFrame, IpProtocol, Ipv4Packet, Ipv4Repr, TcpFlags, TcpPacket,
};
use lb_core::{DropReason, PacketBuf, VecBuf, WorkerStats};

pub const OUR_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
pub const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

/// NAT, `wrr` over .11 and .12 (port 8080).
pub const VIP_NAT: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 100);
/// TUN, `wrr` over .13 and .14.
pub const VIP_TUN: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 101);
/// DR, `wrr` over .13 and .14.
pub const VIP_DR: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 102);
/// DR, `mh` over .13 and .14.
pub const VIP_MH: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 103);

/// The lab's configuration; `nat_extra` is added to the NAT service (for
/// example `syn_proxy = "on"`).
pub fn config(nat_extra: &str) -> String {
    let mut c = String::from(
        r#"
[workers]
lcores = [1]
[[ports]]
name = "wan"
device = "net_null0"
address = "198.18.0.2/24"
mac = "02:00:00:00:00:02"
gateway = "198.18.0.1"
"#,
    );
    for n in [1, 11, 12, 13, 14] {
        c += &format!(
            "[[neighbors]]\naddress = \"198.18.0.{n}\"\nmac = \"02:00:00:00:01:{n:02}\"\n"
        );
    }
    c += &format!(
        "[[services]]\nname = \"nat\"\nvip = \"{VIP_NAT}\"\nport = 80\nscheduler = \"wrr\"\n{nat_extra}\n\
         [[services.reals]]\naddress = \"198.18.0.11\"\nport = 8080\n\
         [[services.reals]]\naddress = \"198.18.0.12\"\nport = 8080\n"
    );
    for (name, vip, sched, fwd) in [
        ("tun", VIP_TUN, "wrr", "tun"),
        ("dr", VIP_DR, "wrr", "dr"),
        ("mh", VIP_MH, "mh", "dr"),
    ] {
        c += &format!(
            "[[services]]\nname = \"{name}\"\nvip = \"{vip}\"\nport = 80\nscheduler = \"{sched}\"\nforwarding = \"{fwd}\"\n\
             [[services.reals]]\naddress = \"198.18.0.13\"\n[[services.reals]]\naddress = \"198.18.0.14\"\n"
        );
    }
    c
}

fn is_real(ip: Ipv4Addr) -> bool {
    matches!(ip.octets(), [198, 18, 0, 11..=14])
}

/// The MAC a frame from `ip` comes from: a real's own (its `[[neighbors]]`
/// entry: the appliance believes a real's side of a NAT flow only from
/// there), else the router's side.
fn mac_of(ip: Ipv4Addr) -> [u8; 6] {
    match ip.octets() {
        // `02:00:00:00:01:{n:02}`: the decimal digits read as hex.
        [198, 18, 0, n @ 11..=14] => [2, 0, 0, 0, 1, 0x10 + (n - 10)],
        _ => PEER_MAC,
    }
}

/// A TCP frame to the appliance's MAC, checksums filled.
#[allow(clippy::too_many_arguments)]
pub fn tcp_frame(
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    flags: TcpFlags,
    seq: u32,
    ack: u32,
    payload: usize,
) -> Vec<u8> {
    let l4 = tcp::HEADER_LEN + payload;
    let mut f = vec![0u8; 14 + 20 + l4];
    let mut eth = EthernetFrame::new_unchecked(&mut f[..]);
    eth.set_dst_addr(MacAddr(OUR_MAC));
    eth.set_src_addr(MacAddr(mac_of(src.0)));
    eth.set_ethertype(EtherType::Ipv4);
    let mut ip = Ipv4Packet::new_unchecked(eth.payload_mut());
    Ipv4Repr {
        src: src.0,
        dst: dst.0,
        protocol: IpProtocol::Tcp,
        payload_len: l4,
        ttl: 64,
        dont_fragment: true,
        ident: 0,
        dscp_ecn: 0,
    }
    .emit(&mut ip);
    let mut t = TcpPacket::new_unchecked(ip.payload_mut());
    t.set_src_port(src.1);
    t.set_dst_port(dst.1);
    t.set_seq_number(seq);
    t.set_ack_number(ack);
    t.set_header_len(tcp::HEADER_LEN);
    t.set_flags(flags);
    t.set_window(0xffff);
    t.fill_checksum(src.0, dst.0);
    f
}

/// What a sent frame was, as far as the endpoints care.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    /// The real it reaches (its address, and the port it is sent to), or
    /// None when it goes back to a client.
    pub real: Option<(Ipv4Addr, u16)>,
    pub src: (Ipv4Addr, u16),
    pub dst: (Ipv4Addr, u16),
    pub flags: TcpFlags,
    pub seq: u32,
    pub ack: u32,
}

/// Reads a frame the appliance sent: NAT (to a real's address), TUN (IPIP
/// to a real, the inner packet read), DR (to a real's MAC, the VIP
/// unchanged) or back to a client.
pub fn seen(frame: &[u8]) -> Option<Seen> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let mac = eth.dst_addr().0;
    let outer = Ipv4Packet::new_checked(eth.payload()).ok()?;
    let (ip, tunnel) = if outer.protocol() == IpProtocol::IpIp {
        (
            Ipv4Packet::new_checked(outer.payload()).ok()?,
            Some(outer.dst_addr()),
        )
    } else {
        (outer, None)
    };
    if ip.protocol() != IpProtocol::Tcp {
        return None;
    }
    let t = TcpPacket::new_checked(ip.payload()).ok()?;
    let dst = (ip.dst_addr(), t.dst_port());
    let real = if let Some(r) = tunnel {
        Some((r, dst.1))
    } else if is_real(dst.0) {
        Some(dst)
    } else if mac[..5] == [2, 0, 0, 0, 1] && mac[5] != 1 {
        // DR: the real's MAC (02:00:00:00:01:NN for 198.18.0.NN).
        Some((Ipv4Addr::new(198, 18, 0, mac[5]), dst.1))
    } else {
        None
    };
    Some(Seen {
        real,
        src: (ip.src_addr(), t.src_port()),
        dst,
        flags: t.flags(),
        seq: t.seq_number(),
        ack: t.ack_number(),
    })
}

/// A small deterministic generator (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A spoofed client address and port in 198.19.0.0/16.
    pub fn client(&mut self) -> (Ipv4Addr, u16) {
        let r = self.next();
        (
            Ipv4Addr::from(0xc613_0000 | (r as u32 & 0xffff)),
            1024 + ((r >> 16) as u16 % 64000),
        )
    }
}

/// What a flood sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flood {
    /// SYNs from spoofed tuples to a VIP.
    Syn(Ipv4Addr),
    /// Lone ACKs from spoofed tuples to a VIP.
    Ack(Ipv4Addr),
    /// A SYN then an ACK from each spoofed tuple to a VIP.
    SynThenAck(Ipv4Addr),
    /// RSTs with random sequence numbers on the lab's established
    /// connections' tuples.
    Rst,
}

/// One legitimate connection.
#[derive(Debug, Clone)]
struct Conn {
    client: (Ipv4Addr, u16),
    vip: Ipv4Addr,
    isn: u32,
    delay_ms: u32,
    /// The real that got its SYN (NAT: after any SYN proxy).
    real: Option<(Ipv4Addr, u16)>,
    /// The server's ISN as the client saw it.
    server_isn: Option<u32>,
    /// Client bytes sent after the handshake.
    sent: u32,
    completed: bool,
    /// Data that reached the wrong real, or not at all, after completing.
    lost: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// The real answers a SYN from `client` (index into conns) with a
    /// SYN-ACK.
    RealSynAck(usize, u32),
    ClientAck(usize),
    ClientData(usize),
}

/// The lab.
pub struct Lab {
    pub snap: Snapshot,
    pub pipeline: Pipeline,
    /// Virtual time, µs.
    pub now_us: u64,
    rng: Rng,
    conns: Vec<Conn>,
    by_client: HashMap<(Ipv4Addr, u16), usize>,
    events: BinaryHeap<Reverse<(u64, u64, Event)>>,
    next_event: u64,
    /// Flood frames sent so far.
    pub flood_sent: u64,
    /// Drops of legitimate frames, by reason.
    pub legit_drops: HashMap<DropReason, u64>,
    burst: Vec<VecBuf>,
    verdicts: Vec<Verdict>,
    /// Completed connections when the current run started (RST targets).
    targets: Vec<usize>,
}

impl Lab {
    /// A lab with a table of `capacity` entries.
    pub fn new(capacity: usize, nat_extra: &str, seed: u64) -> Lab {
        let config = Config::parse(&config(nat_extra)).expect("the lab config is valid");
        let snap = Snapshot::compile(
            &config,
            &[MacAddr(OUR_MAC)],
            1,
            &mut Ids::default(),
            |_, _, _| true,
        )
        .expect("the lab config compiles");
        let mut pipeline = Pipeline::new(0, 1, capacity, Arc::new(WorkerStats::default()));
        pipeline.adopt(&snap);
        Lab {
            snap,
            pipeline,
            now_us: 1_000_000,
            rng: Rng::new(seed),
            conns: Vec::new(),
            by_client: HashMap::new(),
            events: BinaryHeap::new(),
            next_event: 0,
            flood_sent: 0,
            legit_drops: HashMap::new(),
            burst: Vec::with_capacity(32),
            verdicts: vec![Verdict::Consumed; 32],
            targets: Vec::new(),
        }
    }

    fn now_ms(&self) -> u32 {
        (self.now_us / 1000) as u32
    }

    fn schedule(&mut self, at_us: u64, e: Event) {
        self.next_event += 1;
        self.events.push(Reverse((at_us, self.next_event, e)));
    }

    /// Runs one legitimate frame; what comes out goes to the endpoints.
    fn legit(&mut self, frame: Vec<u8>) -> Verdict {
        let mut b = VecBuf::with_room(&frame, 64, 256);
        let now = self.now_ms();
        let v = self.pipeline.process(&self.snap, 0, &mut b, now);
        match v {
            Verdict::Transmit(_) => {
                if let Some(s) = seen(b.data()) {
                    self.deliver(s);
                }
            }
            Verdict::Drop(r) => *self.legit_drops.entry(r).or_default() += 1,
            _ => {}
        }
        v
    }

    /// A frame the appliance sent arrives at a real or a client.
    fn deliver(&mut self, s: Seen) {
        let syn = s.flags.contains(TcpFlags::SYN);
        let ack = s.flags.contains(TcpFlags::ACK);
        if let Some(real) = s.real {
            let Some(&i) = self.by_client.get(&s.src) else {
                return;
            };
            if syn && !ack {
                self.conns[i].real = Some(real);
                let at = self.now_us + 1_000;
                self.schedule(at, Event::RealSynAck(i, s.seq));
            }
        } else if let Some(&i) = self.by_client.get(&s.dst) {
            if syn && ack {
                self.client_got_syn_ack(i, s.seq);
            }
        }
    }

    fn client_got_syn_ack(&mut self, i: usize, server_isn: u32) {
        if self.conns[i].server_isn.is_none() {
            self.conns[i].server_isn = Some(server_isn);
            let at = self.now_us + u64::from(self.conns[i].delay_ms) * 1000;
            self.schedule(at, Event::ClientAck(i));
        }
    }

    /// Starts a legitimate connection to `vip` whose client takes
    /// `delay_ms` to answer the SYN-ACK. Returns the SYN's verdict.
    pub fn connect(&mut self, vip: Ipv4Addr, delay_ms: u32) -> Verdict {
        // Legitimate clients: 64 connections per address, from
        // 198.19.240.0/20 (a spoofed tuple may collide with one now and
        // then, as on the internet).
        let n = self.conns.len() as u32;
        let client = (
            Ipv4Addr::from(0xc613_f000 | ((n >> 6) & 0xfff)),
            2000 + (n & 0x3f) as u16,
        );
        let isn = self.rng.next() as u32;
        self.conns.push(Conn {
            client,
            vip,
            isn,
            delay_ms,
            real: None,
            server_isn: None,
            sent: 0,
            completed: false,
            lost: false,
        });
        self.by_client.insert(client, self.conns.len() - 1);
        self.legit(tcp_frame(client, (vip, 80), TcpFlags::SYN, isn, 0, 0))
    }

    fn event(&mut self, e: Event) {
        match e {
            Event::RealSynAck(i, client_isn) => {
                let c = &self.conns[i];
                let Some(real) = c.real else { return };
                let server_isn = 0x5000_0000 ^ (i as u32);
                if c.vip != VIP_NAT {
                    // TUN and DR reals answer the client directly.
                    self.client_got_syn_ack(i, server_isn);
                    return;
                }
                let frame = tcp_frame(
                    real,
                    c.client,
                    TcpFlags::SYN | TcpFlags::ACK,
                    server_isn,
                    client_isn.wrapping_add(1),
                    0,
                );
                self.legit(frame);
            }
            Event::ClientAck(i) => {
                let c = &self.conns[i];
                let Some(server) = c.server_isn else { return };
                let frame = tcp_frame(
                    c.client,
                    (c.vip, 80),
                    TcpFlags::ACK,
                    c.isn.wrapping_add(1),
                    server.wrapping_add(1),
                    0,
                );
                self.legit(frame);
                self.schedule(self.now_us + 1_000, Event::ClientData(i));
            }
            Event::ClientData(i) => {
                self.send_data(i);
            }
        }
    }

    /// The client of connection `i` sends 100 bytes; true when they reach
    /// the connection's real.
    fn send_data(&mut self, i: usize) -> bool {
        let c = &self.conns[i];
        let Some(server) = c.server_isn else {
            return false;
        };
        let (client, vip, seq) = (c.client, c.vip, c.isn.wrapping_add(1).wrapping_add(c.sent));
        let frame = tcp_frame(
            client,
            (vip, 80),
            TcpFlags::ACK | TcpFlags::PSH,
            seq,
            server.wrapping_add(1),
            100,
        );
        let mut b = VecBuf::with_room(&frame, 64, 256);
        let now = self.now_ms();
        let v = self.pipeline.process(&self.snap, 0, &mut b, now);
        let reached = match v {
            Verdict::Transmit(_) => seen(b.data()).is_some_and(|s| s.real == self.conns[i].real),
            Verdict::Drop(r) => {
                *self.legit_drops.entry(r).or_default() += 1;
                false
            }
            _ => false,
        };
        let c = &mut self.conns[i];
        c.sent += 100;
        if c.completed {
            c.lost |= !reached;
        } else {
            c.completed = reached;
        }
        reached
    }

    /// One flood frame of `kind`.
    fn flood_frame(&mut self, kind: Flood, second: &mut Option<Vec<u8>>) -> Vec<u8> {
        if let Some(f) = second.take() {
            return f;
        }
        let r = self.rng.next() as u32;
        match kind {
            Flood::Syn(vip) => {
                let c = self.rng.client();
                tcp_frame(c, (vip, 80), TcpFlags::SYN, r, 0, 0)
            }
            Flood::Ack(vip) => {
                let c = self.rng.client();
                tcp_frame(c, (vip, 80), TcpFlags::ACK, r, r.rotate_left(7), 0)
            }
            Flood::SynThenAck(vip) => {
                let c = self.rng.client();
                *second = Some(tcp_frame(
                    c,
                    (vip, 80),
                    TcpFlags::ACK,
                    r.wrapping_add(1),
                    r.rotate_left(7),
                    0,
                ));
                tcp_frame(c, (vip, 80), TcpFlags::SYN, r, 0, 0)
            }
            Flood::Rst => {
                if self.targets.is_empty() {
                    let c = self.rng.client();
                    return tcp_frame(c, (VIP_NAT, 80), TcpFlags::RST, r, 0, 0);
                }
                let c = &self.conns[self.targets[r as usize % self.targets.len()]];
                // Out of the window: at least 16 MiB from the client's
                // next sequence number.
                let next = c.isn.wrapping_add(1).wrapping_add(c.sent);
                let seq = next.wrapping_add((16 << 20) + (self.rng.next() as u32 % (0xf000_0000)));
                tcp_frame(c.client, (c.vip, 80), TcpFlags::RST, seq, 0, 0)
            }
        }
    }

    /// Runs `ms` milliseconds of virtual time with floods at `rate` frames
    /// per second each (in bursts of up to 32, and a sweep after each burst
    /// as a busy worker does), delivering the endpoints' events on time.
    pub fn run(&mut self, ms: u64, floods: &[(Flood, u64)]) {
        self.targets = (0..self.conns.len())
            .filter(|&i| self.conns[i].completed)
            .collect();
        let mut carry = vec![0u64; floods.len()];
        let mut second = vec![None; floods.len()];
        for _ in 0..ms {
            self.now_us += 1_000;
            for (k, &(kind, rate)) in floods.iter().enumerate() {
                carry[k] += rate;
                let mut n = carry[k] / 1000;
                carry[k] %= 1000;
                while n > 0 {
                    let m = n.min(32);
                    self.burst.clear();
                    for _ in 0..m {
                        let f = self.flood_frame(kind, &mut second[k]);
                        self.burst.push(VecBuf::with_room(&f, 64, 128));
                    }
                    let now = self.now_ms();
                    self.pipeline.process_burst(
                        &self.snap,
                        0,
                        &mut self.burst,
                        &mut self.verdicts[..m as usize],
                        now,
                    );
                    self.pipeline.sweep(&self.snap, now, 64);
                    self.flood_sent += m;
                    n -= m;
                }
            }
            if floods.is_empty() {
                let now = self.now_ms();
                self.pipeline.sweep(&self.snap, now, 256);
            }
            while let Some(Reverse((at, _, e))) = self.events.peek().copied() {
                if at > self.now_us {
                    break;
                }
                self.events.pop();
                self.event(e);
            }
        }
    }

    /// Connections started so far with `delay_ms` to `vip`: (started,
    /// completed).
    pub fn handshakes(&self, vip: Ipv4Addr, delay_ms: u32) -> (usize, usize) {
        let cs = self
            .conns
            .iter()
            .filter(|c| c.vip == vip && c.delay_ms == delay_ms);
        let started = cs.clone().count();
        (started, cs.filter(|c| c.completed).count())
    }

    /// Sends data on every completed connection: (completed, how many
    /// still reach their real).
    pub fn check_established(&mut self) -> (usize, usize) {
        let done: Vec<usize> = (0..self.conns.len())
            .filter(|&i| self.conns[i].completed)
            .collect();
        let kept = done.iter().filter(|&&i| self.send_data(i)).count();
        (done.len(), kept)
    }

    pub fn stats(&self) -> &WorkerStats {
        self.pipeline.stats()
    }
}
