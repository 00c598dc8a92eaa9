//! Per-packet cost of `Pipeline::process` on prepared buffers, single
//! thread, no DPDK: established flows (NAT, TUN, DR) with 1 thousand and
//! 1 million active flows, NAT replies (the real's side of the same
//! flows), and new flows (SYN: lookup miss, schedule,
//! insert) with `wrr` and `mh`, each for IPv4 and for IPv6 (NAT66, 6in6,
//! DR; the rows named "IPv6 ...").
//!
//! `cargo bench -p lb-dataplane --bench pipeline` measures; without
//! `--bench` (as `cargo test --all-targets` runs it) it only does a smoke
//! run of about a thousand packets per case and checks the verdicts.
//!
//! It lives in the dataplane crate for one reason: the pipeline runs here
//! with the DPDK wrapper's prefetch and huge-page advice, as on a worker
//! (lb-core, which has no `unsafe`, has neither of its own). No EAL is
//! started: the buffers are `VecBuf`s with the wrapper's prefetch.
//!
//! Every packet is first restored into a reused `VecBuf` (the pipeline
//! rewrites it in place); that restore alone is measured in the same run
//! as the baseline, one frame at a time and in bursts as the cases run,
//! and the matching one is subtracted in the "minus baseline" column. The IPv4
//! and IPv6 runs of a case alternate (interleaved rounds), and the "v6/v4"
//! column is the median over the rounds of the two "minus baseline" costs'
//! ratio.
#![deny(unsafe_code)]

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Instant;

use lb_config::{Config, MacAddr};
use lb_core::buffer::RxChecksum;
use lb_core::flow::{Flow, Trust};
use lb_core::pipeline::{Pipeline, Verdict};
use lb_core::snapshot::{Ids, Snapshot};
use lb_core::stats::DropReason;
use lb_core::wire::{
    tcp, EtherType, EthernetFrame, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr,
    TcpFlags, TcpPacket,
};
use lb_core::{PacketBuf, VecBuf, WorkerStats};
use lb_dataplane::dpdk;

const OUR_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const GATEWAY_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const NOW: u32 = 1000;

const VIP_NAT: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 100);
const VIP_TUN: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 101);
const VIP_DR: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 102);
const VIP_MH: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 103);

const VIP6_NAT: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 0x100);
const VIP6_TUN: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 0x101);
const VIP6_DR: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 0x102);
const VIP6_MH: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 0x103);

/// One dual-stack port with static neighbors of both families; per family
/// a service per method, each `wrr` over 4 reals on the connected network,
/// and a `mh` NAT service (IPv6: NAT66, 6in6 TUN, DR).
const CONFIG: &str = r#"
[workers]
lcores = [1]
[[ports]]
name = "wan"
device = "net_null0"
address = "198.18.0.2/24"
mac = "02:00:00:00:00:02"
gateway = "198.18.0.1"
address6 = "2001:2::2/64"
gateway6 = "2001:2::1"
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
[[neighbors]]
address = "2001:2::1"
mac = "02:00:00:00:00:01"
[[neighbors]]
address = "2001:2::11"
mac = "02:00:00:00:02:11"
[[neighbors]]
address = "2001:2::12"
mac = "02:00:00:00:02:12"
[[neighbors]]
address = "2001:2::13"
mac = "02:00:00:00:02:13"
[[neighbors]]
address = "2001:2::14"
mac = "02:00:00:00:02:14"

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

[[services]]
name = "web-nat6"
vip = "2001:2:0:1::100"
port = 80
scheduler = "wrr"
forwarding = "nat"
[[services.reals]]
address = "2001:2::11"
port = 8080
weight = 4
[[services.reals]]
address = "2001:2::12"
port = 8080
weight = 3
[[services.reals]]
address = "2001:2::13"
port = 8080
weight = 2
[[services.reals]]
address = "2001:2::14"
port = 8080
weight = 1

[[services]]
name = "web-tun6"
vip = "2001:2:0:1::101"
port = 80
scheduler = "wrr"
forwarding = "tun"
[[services.reals]]
address = "2001:2::11"
weight = 4
[[services.reals]]
address = "2001:2::12"
weight = 3
[[services.reals]]
address = "2001:2::13"
weight = 2
[[services.reals]]
address = "2001:2::14"
weight = 1

[[services]]
name = "web-dr6"
vip = "2001:2:0:1::102"
port = 80
scheduler = "wrr"
forwarding = "dr"
[[services.reals]]
address = "2001:2::11"
weight = 4
[[services.reals]]
address = "2001:2::12"
weight = 3
[[services.reals]]
address = "2001:2::13"
weight = 2
[[services.reals]]
address = "2001:2::14"
weight = 1

[[services]]
name = "web-mh6"
vip = "2001:2:0:1::103"
port = 80
scheduler = "mh"
forwarding = "nat"
[[services.reals]]
address = "2001:2::11"
port = 8081
[[services.reals]]
address = "2001:2::12"
port = 8081
[[services.reals]]
address = "2001:2::13"
port = 8081
[[services.reals]]
address = "2001:2::14"
port = 8081
"#;

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

/// Ethernet + IPv4 + TCP, no payload.
const FRAME_LEN: usize = 54;
/// Ethernet + IPv6 + TCP, no payload.
const FRAME6_LEN: usize = 74;
/// Frames per burst, as a worker receives them (`[dpdk] burst`).
const BURST: usize = 64;
/// IPv4 frames are stored one per cache line.
const STRIDE: usize = 64;
/// IPv6 frames (74 bytes) one per two cache lines.
const STRIDE6: usize = 128;

/// Prepared frames of distinct flows, `LEN` bytes each, one per `STRIDE`
/// bytes (aligned as the `Vec` is: every slot starts a cache line or two),
/// laid out in the order they are sent (like an rx ring: the frames are
/// read one after the other, the flows they belong to are in random
/// order).
struct Pool<const LEN: usize, const STRIDE: usize> {
    bytes: Vec<u8>,
}

type Pool4 = Pool<FRAME_LEN, STRIDE>;
type Pool6 = Pool<FRAME6_LEN, STRIDE6>;

/// Flow `i`'s client: 198.19.0.0/16, then the next source port.
fn client(i: u32) -> (Ipv4Addr, u16) {
    (
        Ipv4Addr::from(0xc613_0000 + (i & 0xffff)),
        1024 + (i >> 16) as u16,
    )
}

/// Flow `i`'s IPv6 client, in 2001:2::/48 (outside the port's 2001:2::/64
/// and the VIPs' 2001:2:0:1::/64): 4096 /64s (2001:2:0:100:: up), each
/// with up to 256 clients whose interface identifiers look random; the
/// source port as for IPv4.
fn client6(i: u32) -> (Ipv6Addr, u16) {
    let net = 0x2001_0002_0000_0100_u64 + u64::from(i & 0xfff);
    let iid = (u64::from(i >> 12) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (
        Ipv6Addr::from((u128::from(net) << 64) | u128::from(iid)),
        1024 + (i >> 16) as u16,
    )
}

impl<const LEN: usize, const STRIDE: usize> Pool<LEN, STRIDE> {
    /// Slot `k` holds what `write` puts there for flow `order[k]`.
    fn build(order: &[u32], mut write: impl FnMut(&mut [u8], u32)) -> Self {
        let mut bytes = vec![0u8; order.len() * STRIDE];
        for (slot, &i) in bytes.chunks_exact_mut(STRIDE).zip(order) {
            write(&mut slot[..LEN], i);
        }
        Pool { bytes }
    }

    fn len(&self) -> usize {
        self.bytes.len() / STRIDE
    }

    #[inline(always)]
    fn frame(&self, k: usize) -> &[u8] {
        let at = k * STRIDE;
        &self.bytes[at..at + LEN]
    }
}

impl Pool4 {
    /// Slot `k` holds a frame of flow `order[k]` to `vip`:`vip_port` with
    /// TCP `flags`.
    fn new(order: &[u32], vip: Ipv4Addr, vip_port: u16, flags: u8) -> Pool4 {
        Pool::build(order, |f, i| {
            write_tcp(f, client(i), (vip, vip_port), flags)
        })
    }
}

impl Pool6 {
    /// [`Pool4::new`] for IPv6.
    fn new(order: &[u32], vip: Ipv6Addr, vip_port: u16, flags: u8) -> Pool6 {
        Pool::build(order, |f, i| {
            write_tcp6(f, client6(i), (vip, vip_port), flags)
        })
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
    fill_tcp(&mut t, src.1, dst.1, flags);
    t.fill_checksum(src.0, dst.0);
}

/// [`write_tcp`] over IPv6 (no extension headers).
fn write_tcp6(f: &mut [u8], src: (Ipv6Addr, u16), dst: (Ipv6Addr, u16), flags: u8) {
    let mut eth = EthernetFrame::new_unchecked(f);
    eth.set_dst_addr(MacAddr(OUR_MAC));
    eth.set_src_addr(MacAddr(GATEWAY_MAC));
    eth.set_ethertype(EtherType::Ipv6);
    let mut ip = Ipv6Packet::new_unchecked(eth.payload_mut());
    Ipv6Repr {
        src: src.0,
        dst: dst.0,
        next_header: IpProtocol::Tcp,
        payload_len: tcp::HEADER_LEN,
        hop_limit: 64,
        traffic_class: 0,
        flow_label: 0,
    }
    .emit(&mut ip);
    let mut t = TcpPacket::new_unchecked(ip.payload_mut());
    fill_tcp(&mut t, src.1, dst.1, flags);
    t.fill_checksum_v6(src.0, dst.0);
}

fn fill_tcp(t: &mut TcpPacket<&mut [u8]>, src_port: u16, dst_port: u16, flags: u8) {
    t.set_src_port(src_port);
    t.set_dst_port(dst_port);
    // A SYN takes sequence number 1; what follows it comes next in order
    // (every pure ACK of a download does).
    t.set_seq_number(if flags & SYN != 0 { 1 } else { 2 });
    t.set_header_len(tcp::HEADER_LEN);
    t.set_flags(TcpFlags(flags));
    t.set_window(65535);
}

/// A `VecBuf` that prefetches as an mbuf does (the DPDK wrapper's
/// prefetch), so that `process_burst` prefetches a burst's flow-table lines
/// as it does on a worker.
#[derive(Debug, Clone)]
struct Buf(VecBuf);

impl Buf {
    fn from_bytes(bytes: &[u8]) -> Buf {
        Buf(VecBuf::from_bytes(bytes))
    }
}

impl PacketBuf for Buf {
    #[inline(always)]
    fn prefetch(line: *const u8) {
        dpdk::prefetch_line(line);
    }
    #[inline(always)]
    fn rx_ip_checksum(&self) -> RxChecksum {
        self.0.rx_ip_checksum()
    }
    #[inline(always)]
    fn data(&self) -> &[u8] {
        self.0.data()
    }
    #[inline(always)]
    fn data_mut(&mut self) -> &mut [u8] {
        self.0.data_mut()
    }
    #[inline(always)]
    fn headroom(&self) -> usize {
        self.0.headroom()
    }
    #[inline(always)]
    fn prepend(&mut self, n: usize) -> bool {
        self.0.prepend(n)
    }
    #[inline(always)]
    fn adj(&mut self, n: usize) -> bool {
        self.0.adj(n)
    }
    #[inline(always)]
    fn trim(&mut self, n: usize) -> bool {
        self.0.trim(n)
    }
    #[inline(always)]
    fn append(&mut self, n: usize) -> bool {
        self.0.append(n)
    }
}

/// Puts `frame` (`LEN` bytes) back into `buf`, undoing a TUN prepend
/// first. This is the baseline.
#[inline(always)]
fn restore<const LEN: usize>(buf: &mut Buf, frame: &[u8]) {
    let grown = buf.len() - LEN;
    if grown != 0 {
        buf.adj(grown);
    }
    buf.data_mut()[..LEN].copy_from_slice(&frame[..LEN]);
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

/// An address family: which frames a case sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    /// The row name's prefix (IPv4 rows keep their old names).
    fn prefix(self) -> &'static str {
        match self {
            Family::V4 => "",
            Family::V6 => "IPv6 ",
        }
    }
}

/// A service of the config, in both families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Svc {
    Nat,
    Tun,
    Dr,
    Mh,
}

impl Svc {
    fn name(self) -> &'static str {
        match self {
            Svc::Nat | Svc::Mh => "NAT",
            Svc::Tun => "TUN",
            Svc::Dr => "DR",
        }
    }
}

/// The frames of a case: one family's pool.
enum Frames {
    V4(Pool4),
    V6(Pool6),
}

impl Frames {
    /// Slot `k` holds a frame of flow `order[k]` to `svc`'s VIP of
    /// `family`, port `vip_port`, with TCP `flags`.
    fn new(family: Family, order: &[u32], svc: Svc, vip_port: u16, flags: u8) -> Frames {
        match family {
            Family::V4 => {
                let vip = match svc {
                    Svc::Nat => VIP_NAT,
                    Svc::Tun => VIP_TUN,
                    Svc::Dr => VIP_DR,
                    Svc::Mh => VIP_MH,
                };
                Frames::V4(Pool4::new(order, vip, vip_port, flags))
            }
            Family::V6 => {
                let vip = match svc {
                    Svc::Nat => VIP6_NAT,
                    Svc::Tun => VIP6_TUN,
                    Svc::Dr => VIP6_DR,
                    Svc::Mh => VIP6_MH,
                };
                Frames::V6(Pool6::new(order, vip, vip_port, flags))
            }
        }
    }

    fn frame(&self, k: usize) -> &[u8] {
        match self {
            Frames::V4(p) => p.frame(k),
            Frames::V6(p) => p.frame(k),
        }
    }

    /// Slot `k` holds a NAT real's segment (TCP `flags`) to flow
    /// `order[k]`'s client: from
    /// `reals[i]` (the real's address, as the flow's rewritten SYN
    /// carried it: 4 or 16 bytes) port 8080, in a frame from that real's
    /// MAC (its static neighbor entry).
    fn replies(family: Family, order: &[u32], reals: &[Vec<u8>], flags: u8) -> Frames {
        // 198.18.0.1x -> 02:00:00:00:01:1x (the decimal digits as hex),
        // 2001:2::1x -> 02:00:00:00:02:1x.
        let real_mac = |a: &[u8], v6: bool| {
            let last = a[a.len() - 1];
            let last = if v6 {
                last
            } else {
                ((last / 10) << 4) | (last % 10)
            };
            MacAddr([2, 0, 0, 0, if v6 { 2 } else { 1 }, last])
        };
        match family {
            Family::V4 => Frames::V4(Pool::build(order, |f, i| {
                let a = &reals[i as usize];
                let real = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
                write_tcp(f, (real, 8080), client(i), flags);
                EthernetFrame::new_unchecked(f).set_src_addr(real_mac(a, false));
            })),
            Family::V6 => Frames::V6(Pool::build(order, |f, i| {
                let a = &reals[i as usize];
                let real = Ipv6Addr::from(<[u8; 16]>::try_from(&a[..]).unwrap());
                write_tcp6(f, (real, 8080), client6(i), flags);
                EthernetFrame::new_unchecked(f).set_src_addr(real_mac(a, true));
            })),
        }
    }

    /// Restores frame `k` into `buf` (outside any timed loop).
    fn restore(&self, buf: &mut Buf, k: usize) {
        match self {
            Frames::V4(p) => restore::<FRAME_LEN>(buf, p.frame(k)),
            Frames::V6(p) => restore::<FRAME6_LEN>(buf, p.frame(k)),
        }
    }
}

/// Checks what the first frame of an established `svc` case turned into
/// (`d`), so that the timing is of the real path.
fn check_rewrite(family: Family, svc: Svc, d: &[u8]) {
    match (family, svc) {
        (Family::V4, Svc::Nat) => {
            assert_eq!(d.len(), FRAME_LEN);
            assert_ne!(&d[30..34], &VIP_NAT.octets(), "NAT rewrote the destination");
            assert_eq!(&d[36..38], &8080u16.to_be_bytes());
        }
        (Family::V4, Svc::Tun) => {
            assert_eq!(d.len(), FRAME_LEN + 20, "TUN prepended an outer header");
            assert_eq!(d[23], 4, "IPIP");
            assert_eq!(&d[50..54], &VIP_TUN.octets());
        }
        (Family::V4, Svc::Dr) => {
            assert_eq!(d.len(), FRAME_LEN);
            assert_eq!(&d[30..34], &VIP_DR.octets(), "DR leaves the IP header");
            assert_eq!(&d[..5], &[2, 0, 0, 0, 1], "DR set a real's MAC");
        }
        (Family::V6, Svc::Nat) => {
            assert_eq!(d.len(), FRAME6_LEN);
            assert_eq!(&d[12..14], &[0x86, 0xdd]);
            assert_eq!(&d[38..46], &[0x20, 0x01, 0, 2, 0, 0, 0, 0], "to a real");
            assert_eq!(&d[56..58], &8080u16.to_be_bytes(), "NAT66 rewrote the port");
        }
        (Family::V6, Svc::Tun) => {
            assert_eq!(d.len(), FRAME6_LEN + 40, "6in6 prepended an outer header");
            assert_eq!(d[20], 41, "IPv6 in IPv6");
            assert_eq!(&d[78..94], &VIP6_TUN.octets(), "the inner packet is intact");
        }
        (Family::V6, Svc::Dr) => {
            assert_eq!(d.len(), FRAME6_LEN);
            assert_eq!(&d[38..54], &VIP6_DR.octets(), "DR leaves the IP header");
            assert_eq!(&d[..5], &[2, 0, 0, 0, 2], "DR set a real's MAC");
        }
        _ => unreachable!(),
    }
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
    /// For an IPv6 row whose IPv4 row was measured in the same rounds: the
    /// median of the per-round ratios of their costs minus baseline.
    ratio: Option<f64>,
}

/// The baseline medians of a pool size, per family, for frames restored
/// one at a time and in bursts (a case subtracts the one measured the way
/// it runs: restoring 32 buffers and counting 32 verdicts per burst costs
/// the harness more than restoring one buffer again and again).
#[derive(Debug, Clone, Copy)]
struct Bases {
    v4: f64,
    v6: f64,
    v4_burst: f64,
    v6_burst: f64,
}

impl Bases {
    fn of(self, family: Family, burst: bool) -> f64 {
        match (family, burst) {
            (Family::V4, false) => self.v4,
            (Family::V6, false) => self.v6,
            (Family::V4, true) => self.v4_burst,
            (Family::V6, true) => self.v6_burst,
        }
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

impl Bench {
    /// Whether the filter lets the row `name` run: it is contained in
    /// the name; "IPv4 <rest>" picks the IPv4 rows that contain `rest`.
    fn wanted(&self, name: &str) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|f| match f.strip_prefix("IPv4 ") {
                Some(rest) => !name.starts_with("IPv6 ") && name.contains(rest),
                None => name.contains(f.as_str()),
            })
    }

    fn pipeline(&self) -> Pipeline {
        let mut p = Pipeline::new(0, 1, self.capacity, Arc::new(WorkerStats::default()));
        p.adopt(&self.snap);
        p
    }

    fn passes(&self, n: usize) -> usize {
        self.packets.div_ceil(n).max(1)
    }

    /// Times `passes` passes over `frames`, restoring each frame and, if
    /// `p` is given, running the pipeline on it (in bursts with `burst`,
    /// as a worker does). Returns ns/packet; panics if a verdict is not
    /// `want`.
    fn time(
        &self,
        p: Option<&mut Pipeline>,
        frames: &Frames,
        passes: usize,
        want: Verdict,
        burst: bool,
    ) -> f64 {
        match frames {
            Frames::V4(pool) => self.time_pool(p, pool, passes, want, burst),
            Frames::V6(pool) => self.time_pool(p, pool, passes, want, burst),
        }
    }

    fn time_pool<const LEN: usize, const STRIDE: usize>(
        &self,
        p: Option<&mut Pipeline>,
        pool: &Pool<LEN, STRIDE>,
        passes: usize,
        want: Verdict,
        burst: bool,
    ) -> f64 {
        let n = pool.len();
        let mut buf = Buf::from_bytes(pool.frame(0));
        let mut bufs: Vec<Buf> = (0..BURST).map(|_| Buf::from_bytes(pool.frame(0))).collect();
        let mut verdicts = [want; BURST];
        let mut good = 0usize;
        let start = Instant::now();
        match (p, burst) {
            (Some(p), false) => {
                for _ in 0..passes {
                    for k in 0..n {
                        restore::<LEN>(&mut buf, pool.frame(k));
                        let v = p.process(&self.snap, 0, black_box(&mut buf), NOW);
                        good += usize::from(black_box(v) == want);
                    }
                }
            }
            (Some(p), true) => {
                // As the worker runs: bursts of BURST frames through
                // process_burst, which prefetches the burst's flow entries.
                for _ in 0..passes {
                    let mut k = 0;
                    while k < n {
                        let m = BURST.min(n - k);
                        for (j, b) in bufs[..m].iter_mut().enumerate() {
                            restore::<LEN>(b, pool.frame(k + j));
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
            (None, true) => {
                // The burst harness without the pipeline: the same
                // restores and verdict count, the verdicts left as they are.
                for _ in 0..passes {
                    let mut k = 0;
                    while k < n {
                        let m = BURST.min(n - k);
                        for (j, b) in bufs[..m].iter_mut().enumerate() {
                            restore::<LEN>(b, pool.frame(k + j));
                        }
                        black_box(&mut bufs[..m]);
                        black_box(&mut verdicts[..m]);
                        good += verdicts[..m].iter().filter(|v| **v == want).count();
                        k += m;
                    }
                }
            }
            (None, false) => {
                for _ in 0..passes {
                    for k in 0..n {
                        restore::<LEN>(&mut buf, pool.frame(k));
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

    /// Runs each of `sides` once to warm up, then `runs` rounds of each in
    /// turn: the samples of side i.
    fn interleave(&self, sides: &mut [Box<dyn FnMut() -> f64 + '_>]) -> Vec<Vec<f64>> {
        for s in sides.iter_mut() {
            s();
        }
        let mut out = vec![Vec::with_capacity(self.runs); sides.len()];
        for _ in 0..self.runs {
            for (o, s) in out.iter_mut().zip(sides.iter_mut()) {
                o.push(s());
            }
        }
        out
    }

    /// Records the rows of a case measured for the `families` listed (at
    /// most one of each), with a v6/v4 ratio when there are both.
    fn rows_of(&mut self, names: &[String], samples: Vec<Vec<f64>>, bases: &[Option<f64>]) {
        let ratio = match (&samples[..], bases) {
            ([s4, s6], [Some(b4), Some(b6)]) => {
                let r: Vec<f64> = s4
                    .iter()
                    .zip(s6)
                    .map(|(a, b)| (b - b6) / (a - b4))
                    .collect();
                Some(median(&r))
            }
            _ => None,
        };
        let last = names.len() - 1;
        for (i, ((name, s), base)) in names.iter().zip(samples).zip(bases).enumerate() {
            self.rows.push(Row {
                name: name.clone(),
                samples: s,
                baseline: *base,
                ratio: if i == last && i > 0 { ratio } else { None },
            });
        }
    }

    /// Of `families`, those whose row (named `name` after the family's
    /// prefix) is wanted, with their names.
    fn wanted_families(&self, families: &[Family], name: &str) -> (Vec<Family>, Vec<String>) {
        families
            .iter()
            .map(|&f| (f, format!("{}{name}", f.prefix())))
            .filter(|(_, n)| self.wanted(n))
            .unzip()
    }

    /// The memory floor of an established packet at `n` flows: its two
    /// dependent random reads (an index slot, then the 64-byte entry it
    /// names) and an entry write, with the burst's prefetch pattern
    /// (chunks of 16: every slot prefetched, then every entry, then each
    /// entry read and written), over arrays of the flow table's sizes on
    /// the same huge pages, and nothing else: no frame, no parse, no
    /// rewrite. What the pipeline costs at `n` flows can only be above
    /// this; how far above the 1k row it is says how much of the memory
    /// wait the pipeline's own work hides. ns per packet.
    fn memory_floor(&mut self, n: usize) {
        let name = format!("floor: slot then entry, prefetched, {}", label(n));
        if !self.wanted(&name) {
            return;
        }
        // The pipeline's `CHUNK` (private to lb-core).
        const CHUNK: usize = 16;
        let slots = (self.capacity * 4).next_power_of_two();
        let mask = slots - 1;
        let huge = |len: usize| {
            let mut v: Vec<u64> = Vec::with_capacity(len);
            lb_core::hint::advise_huge_pages(v.spare_capacity_mut());
            v.resize(len, 0);
            v
        };
        // Entries of 8 words (64 bytes), the index of u32 entry numbers.
        let mut entries = huge(self.capacity * 8);
        let mut index: Vec<u32> = Vec::with_capacity(slots);
        lb_core::hint::advise_huge_pages(index.spare_capacity_mut());
        index.resize(slots, 0);
        let slot_of =
            |k: u32| (u64::from(k).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 17) as usize & mask;
        // Flow k's entry is k (allocated in order, as the table does); its
        // slot a hash of k (collisions just share a slot: a floor).
        for k in 0..n as u32 {
            index[slot_of(k)] = k;
        }
        let order = shuffled(n, 7);
        let passes = self.passes(n);
        let mut run = || {
            let started = Instant::now();
            let mut sum = 0u64;
            for _ in 0..passes {
                for chunk in order.chunks(CHUNK) {
                    for &k in chunk {
                        dpdk::prefetch(&index[slot_of(k)]);
                    }
                    let mut at = [0usize; CHUNK];
                    for (a, &k) in at.iter_mut().zip(chunk) {
                        *a = index[slot_of(k)] as usize * 8;
                        dpdk::prefetch(&entries[*a]);
                    }
                    for &a in &at[..chunk.len()] {
                        sum = sum.wrapping_add(entries[a]);
                        entries[a + 1] = sum;
                    }
                }
            }
            black_box(sum);
            started.elapsed().as_nanos() as f64 / (passes * n) as f64
        };
        let samples = self.interleave(&mut [Box::new(&mut run) as Box<dyn FnMut() -> f64>]);
        self.rows_of(&[name], samples, &[None]);
    }

    /// Restore only, over a pool of `n` frames in random order, per family.
    fn baseline(&mut self, n: usize) -> Bases {
        let frames: Vec<Frames> = [Family::V4, Family::V6]
            .iter()
            .map(|&f| Frames::new(f, &shuffled(n, 1), Svc::Nat, 80, ACK))
            .collect();
        let passes = self.passes(n);
        let samples = {
            let mut sides: Vec<Box<dyn FnMut() -> f64>> = [false, true]
                .into_iter()
                .flat_map(|burst| frames.iter().map(move |f| (burst, f)))
                .map(|(burst, f)| {
                    let this = &*self;
                    Box::new(move || this.time(None, f, passes, Verdict::Consumed, burst))
                        as Box<dyn FnMut() -> f64>
                })
                .collect();
            self.interleave(&mut sides)
        };
        let bases = Bases {
            v4: median(&samples[0]),
            v6: median(&samples[1]),
            v4_burst: median(&samples[2]),
            v6_burst: median(&samples[3]),
        };
        let names = [
            format!("baseline: copy frame only, {}", label(n)),
            format!("IPv6 baseline: copy frame only, {}", label(n)),
            format!("baseline: copy bursts only, {}", label(n)),
            format!("IPv6 baseline: copy bursts only, {}", label(n)),
        ];
        self.rows_of(&names, samples, &[None; 4]);
        bases
    }

    /// Parse, find no service, drop.
    fn parse_only(&mut self, bases: Bases) {
        let (families, names) =
            self.wanted_families(&[Family::V4, Family::V6], "parse only (no service: drop)");
        if families.is_empty() {
            return;
        }
        let n = self.small;
        let frames: Vec<Frames> = families
            .iter()
            .map(|&f| Frames::new(f, &shuffled(n, 1), Svc::Nat, 81, ACK))
            .collect();
        let mut pipes: Vec<Pipeline> = families.iter().map(|_| self.pipeline()).collect();
        let passes = self.passes(n);
        let samples = {
            let this = &*self;
            let mut sides: Vec<Box<dyn FnMut() -> f64>> = pipes
                .iter_mut()
                .zip(&frames)
                .map(|(p, f)| {
                    Box::new(move || {
                        this.time(
                            Some(p),
                            f,
                            passes,
                            Verdict::Drop(DropReason::NoService),
                            true,
                        )
                    }) as Box<dyn FnMut() -> f64>
                })
                .collect();
            this.interleave(&mut sides)
        };
        let b: Vec<Option<f64>> = families.iter().map(|&f| Some(bases.of(f, true))).collect();
        self.rows_of(&names, samples, &b);
    }

    /// For each of `families`: opens `n` flows of `svc` with SYNs, then
    /// times ACKs of those flows (the families' runs interleaved), in
    /// bursts or one packet at a time.
    fn established(&mut self, svc: Svc, n: usize, bases: Bases, families: &[Family], burst: bool) {
        let extra = if burst { "" } else { ", one packet at a time" };
        let name = format!("{} established, {}{extra}", svc.name(), label(n));
        let (families, names) = self.wanted_families(families, &name);
        if families.is_empty() {
            return;
        }
        let mut pipes = Vec::new();
        let mut acks = Vec::new();
        for &family in &families {
            let mut p = self.pipeline();
            {
                // Opened in another order than the ACKs come in, so that
                // flow entries (allocated in opening order) are not read in
                // sequence.
                let syns = Frames::new(family, &shuffled(n, 2), svc, 80, SYN);
                let mut buf = Buf::from_bytes(syns.frame(0));
                for i in 0..n {
                    syns.restore(&mut buf, i);
                    assert_eq!(
                        p.process(&self.snap, 0, &mut buf, NOW),
                        Verdict::Transmit(0)
                    );
                }
            }
            assert_eq!(flows(&p, family), n, "{name}: every SYN opened a flow");
            let frames = Frames::new(family, &shuffled(n, 1), svc, 80, ACK);
            let mut buf = Buf::from_bytes(frames.frame(0));
            assert_eq!(
                p.process(&self.snap, 0, &mut buf, NOW),
                Verdict::Transmit(0)
            );
            check_rewrite(family, svc, buf.data());
            pipes.push(p);
            acks.push(frames);
        }
        let passes = self.passes(n);
        let samples = {
            let this = &*self;
            let mut sides: Vec<Box<dyn FnMut() -> f64>> = pipes
                .iter_mut()
                .zip(&acks)
                .map(|(p, f)| {
                    Box::new(move || this.time(Some(p), f, passes, Verdict::Transmit(0), burst))
                        as Box<dyn FnMut() -> f64>
                })
                .collect();
            this.interleave(&mut sides)
        };
        for (p, &family) in pipes.iter().zip(&families) {
            assert_eq!(flows(p, family), n);
        }
        let b: Vec<Option<f64>> = families.iter().map(|&f| Some(bases.of(f, burst))).collect();
        self.rows_of(&names, samples, &b);
    }

    /// For each of `families`: opens `n` NAT flows with a handshake (the
    /// client's SYN, the real's SYN-ACK, the client's ACK: confirmed, as
    /// a live connection is), then times their reals' ACKs back to the
    /// clients (the other half of a NAT flow's packets: reply key lookup,
    /// rewrite of the source, routed to the client through the gateway),
    /// in bursts.
    fn replies(&mut self, n: usize, bases: Bases, families: &[Family]) {
        let name = format!("NAT replies, {}", label(n));
        let (families, names) = self.wanted_families(families, &name);
        if families.is_empty() {
            return;
        }
        let mut pipes = Vec::new();
        let mut pools = Vec::new();
        for &family in &families {
            let mut p = self.pipeline();
            let opened = shuffled(n, 2);
            let syns = Frames::new(family, &opened, Svc::Nat, 80, SYN);
            let mut buf = Buf::from_bytes(syns.frame(0));
            // Each flow's real, as its rewritten SYN says.
            let mut reals = vec![Vec::new(); n];
            for (k, &i) in opened.iter().enumerate() {
                syns.restore(&mut buf, k);
                assert_eq!(
                    p.process(&self.snap, 0, &mut buf, NOW),
                    Verdict::Transmit(0)
                );
                let d = buf.data();
                reals[i as usize] = match family {
                    Family::V4 => d[30..34].to_vec(),
                    Family::V6 => d[38..54].to_vec(),
                };
            }
            let answers = Frames::replies(family, &opened, &reals, SYN | ACK);
            let acks = Frames::new(family, &opened, Svc::Nat, 80, ACK);
            for k in 0..n {
                for step in [&answers, &acks] {
                    step.restore(&mut buf, k);
                    assert_eq!(
                        p.process(&self.snap, 0, &mut buf, NOW),
                        Verdict::Transmit(0)
                    );
                }
            }
            assert!(
                confirmed(&p, family) == n,
                "{name}: every handshake confirmed its flow"
            );
            let frames = Frames::replies(family, &shuffled(n, 1), &reals, ACK);
            let mut buf = Buf::from_bytes(frames.frame(0));
            assert_eq!(
                p.process(&self.snap, 0, &mut buf, NOW),
                Verdict::Transmit(0),
                "{name}: a real's reply goes back"
            );
            let d = buf.data();
            match family {
                Family::V4 => assert_eq!(&d[26..30], &VIP_NAT.octets(), "from the VIP"),
                Family::V6 => assert_eq!(&d[22..38], &VIP6_NAT.octets(), "from the VIP"),
            }
            assert_eq!(&d[..6], &GATEWAY_MAC, "to the client's gateway");
            pipes.push(p);
            pools.push(frames);
        }
        let passes = self.passes(n);
        let samples = {
            let this = &*self;
            let mut sides: Vec<Box<dyn FnMut() -> f64>> = pipes
                .iter_mut()
                .zip(&pools)
                .map(|(p, f)| {
                    Box::new(move || this.time(Some(p), f, passes, Verdict::Transmit(0), true))
                        as Box<dyn FnMut() -> f64>
                })
                .collect();
            this.interleave(&mut sides)
        };
        let b: Vec<Option<f64>> = families.iter().map(|&f| Some(bases.of(f, true))).collect();
        self.rows_of(&names, samples, &b);
    }

    /// SYNs of `large` distinct flows into an empty table, averaged over
    /// the whole fill; a fresh pipeline for every run, the families' runs
    /// interleaved.
    fn new_flows(&mut self, sched: &str, svc: Svc, bases: Bases) {
        let name = format!("new flow (SYN), {sched}, NAT, 0->{}", label(self.large));
        let (families, names) = self.wanted_families(&[Family::V4, Family::V6], &name);
        if families.is_empty() {
            return;
        }
        let n = self.large;
        let pools: Vec<Frames> = families
            .iter()
            .map(|&f| Frames::new(f, &shuffled(n, 1), svc, 80, SYN))
            .collect();
        let samples = {
            let this = &*self;
            let mut sides: Vec<Box<dyn FnMut() -> f64>> = pools
                .iter()
                .zip(&families)
                .map(|(f, &family)| {
                    Box::new(move || {
                        let mut p = this.pipeline();
                        let ns = this.time(Some(&mut p), f, 1, Verdict::Transmit(0), true);
                        assert_eq!(flows(&p, family), n);
                        ns
                    }) as Box<dyn FnMut() -> f64>
                })
                .collect();
            this.interleave(&mut sides)
        };
        let b: Vec<Option<f64>> = families.iter().map(|&f| Some(bases.of(f, true))).collect();
        self.rows_of(&names, samples, &b);
    }

    fn print(&self) {
        println!(
            "{:<48} {:>8} {:>15} {:>7} {:>6}   runs min..max",
            "case", "ns/pkt", "minus baseline", "Mpps", "v6/v4"
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
            let ratio = r.ratio.map_or(String::new(), |x| format!("{x:.2}"));
            println!(
                "{:<48} {:>8.1} {:>15} {:>7} {:>6}   {lo:.1}..{hi:.1}",
                r.name, m, minus, mpps, ratio
            );
        }
    }
}

/// The number of confirmed flows in `family`'s table.
fn confirmed(p: &Pipeline, family: Family) -> usize {
    let confirmed = |t: Vec<Trust>| t.into_iter().filter(|t| *t == Trust::Confirmed).count();
    match family {
        Family::V4 => {
            let t = p.flows();
            confirmed(t.entries().into_iter().map(|e| t.trust(e)).collect())
        }
        Family::V6 => {
            let t = p.flows6().expect("a port has an IPv6 address");
            confirmed(t.entries().into_iter().map(|e| t.trust(e)).collect())
        }
    }
}

/// The number of flows in `family`'s table.
fn flows(p: &Pipeline, family: Family) -> usize {
    match family {
        Family::V4 => p.flows().len(),
        Family::V6 => p.flows6().expect("a port has an IPv6 address").len(),
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

/// A count from the environment, or `default`: `LB_BENCH_PACKETS`,
/// `LB_BENCH_RUNS` and `LB_BENCH_LARGE` (the flows of the "1M" cases) make
/// a short run, as `scripts/bench-instructions.sh` does under callgrind to
/// count instructions rather than nanoseconds.
fn env_count(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, not {v:?}")),
        Err(_) => default,
    }
}

fn main() {
    let measure = std::env::args().any(|a| a == "--bench");
    // The flow tables on transparent huge pages, as the engine asks.
    lb_core::hint::set_huge_page_advice(dpdk::advise_huge_pages);
    // `cargo bench -p lb-dataplane --bench pipeline -- NAT` runs only the
    // cases whose name contains "NAT" (baselines always run); "IPv6" only
    // the IPv6 rows, "IPv4 NAT" only the IPv4 ones (and then no ratio).
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
            packets: env_count("LB_BENCH_PACKETS", 2_000_000),
            runs: env_count("LB_BENCH_RUNS", 5),
            small: 1000,
            large: env_count("LB_BENCH_LARGE", 1_000_000),
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
    let both = [Family::V4, Family::V6];
    b.memory_floor(small);
    b.memory_floor(large);
    b.parse_only(base_small);
    for svc in [Svc::Nat, Svc::Tun, Svc::Dr] {
        b.established(svc, small, base_small, &both, true);
        b.established(svc, large, base_large, &both, true);
    }
    b.replies(small, base_small, &both);
    b.replies(large, base_large, &both);
    b.established(Svc::Nat, small, base_small, &[Family::V4], false);
    b.established(Svc::Nat, large, base_large, &[Family::V4], false);
    b.new_flows("wrr", Svc::Nat, base_large);
    b.new_flows("mh", Svc::Mh, base_large);
    if b.measure {
        println!(
            "lb-core pipeline, single thread, {} interleaved rounds of ~{} packets per case after a warm-up run; median shown",
            b.runs, b.packets
        );
        println!(
            "flow table capacity {}, size_of::<Flow>() = {} bytes, size_of::<Flow<Ipv6Addr>>() = {} bytes",
            b.capacity,
            std::mem::size_of::<Flow>(),
            std::mem::size_of::<Flow<Ipv6Addr>>()
        );
        b.print();
        println!("total {:.1} s", started.elapsed().as_secs_f64());
    } else {
        println!(
            "pipeline bench: smoke run passed ({} rows, IPv4 and IPv6; pass --bench to measure)",
            b.rows.len()
        );
    }
}
