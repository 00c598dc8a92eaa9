//! The SYN proxy for a NAT66 service through the whole pipeline: what
//! `synproxy_tests.rs` checks for IPv4 (the handshake, translation both
//! ways, early data, resets, forged ACKs, `auto` under pressure), over
//! IPv6 and in the IPv6 flow table; and a proxied IPv6 flow carried to a
//! sync peer.

use std::net::Ipv6Addr;
use std::sync::Arc;

use lb_config::{Config, MacAddr};

use super::{DeferList, Pipeline, Verdict, DEFER_MS, DEFER_SLOTS};
use crate::buffer::{PacketBuf, VecBuf};
use crate::flow::{Flow, FlowState, Trust};
use crate::snapshot::{Ids, Snapshot};
use crate::stats::{DropReason, WorkerStats};
use crate::synproxy::{CookieKey, CookieOptions, CookieTuple, ADVERTISED_WSCALE, PERIOD_MS};
use crate::wire::ipv6::{Ipv6Packet, Ipv6Repr};
use crate::wire::tcp_options::{emit_sack, sack_blocks, TcpOptions, Timestamps, MAX_EMIT_LEN};
use crate::wire::{ethernet, ipv6, tcp, EtherType, EthernetFrame, IpProtocol, TcpFlags, TcpPacket};

const OUR: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
const KEY: CookieKey = CookieKey::fixed(0x5359_4e50_524f_5859, 0x7465_7374_6b65_7936);
const NOW: u32 = 100_000;

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

const CONFIG: &str = r#"
[workers]
lcores = [1]
[[ports]]
name = "wan"
device = "net_null0"
address = "198.18.0.2/24"
address6 = "2001:2::2/64"
mac = "02:00:00:00:00:02"
gateway6 = "2001:2::1"
[[neighbors]]
address = "2001:2::1"
mac = "02:00:00:00:00:01"
[[neighbors]]
address = "2001:2::11"
mac = "02:00:00:00:00:11"
[[services]]
name = "web6"
vip = "2001:2:0:1::100"
port = 80
syn_proxy = "on"
[[services.reals]]
address = "2001:2::11"
port = 8080
"#;

fn setup(mode: &str, capacity: usize) -> (Snapshot, Pipeline) {
    let text = CONFIG.replace("syn_proxy = \"on\"", &format!("syn_proxy = \"{mode}\""));
    let config = Config::parse(&text).unwrap();
    let snap = Snapshot::compile(&config, &[OUR], 1, &mut Ids::default(), |_, _, _| true).unwrap();
    let mut p = Pipeline::new(0, 1, capacity, Arc::new(WorkerStats::default()));
    p.adopt(&snap);
    p.set_cookie_key(KEY);
    (snap, p)
}

/// A TCP segment over IPv6 as the tests write and read it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seg {
    src: (Ipv6Addr, u16),
    dst: (Ipv6Addr, u16),
    flags: u8,
    seq: u32,
    ack: u32,
    window: u16,
    options: Vec<u8>,
    payload: Vec<u8>,
    /// The hop limit (read back: what the pipeline sent).
    hops: u8,
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const SYNACK: u8 = 0x12;
const RST: u8 = 0x04;
const PSHACK: u8 = 0x18;

fn seg(src: (Ipv6Addr, u16), dst: (Ipv6Addr, u16), flags: u8, seq: u32, ack: u32) -> Seg {
    Seg {
        src,
        dst,
        flags,
        seq,
        ack,
        window: 502,
        options: Vec::new(),
        payload: Vec::new(),
        hops: 64,
    }
}

fn opts(o: TcpOptions) -> Vec<u8> {
    let mut b = [0u8; MAX_EMIT_LEN];
    let n = o.emit(&mut b);
    b[..n].to_vec()
}

fn ts_opt(val: u32, ecr: u32) -> Vec<u8> {
    opts(TcpOptions {
        timestamps: Some(Timestamps { val, ecr }),
        ..TcpOptions::default()
    })
}

const IP: usize = ethernet::HEADER_LEN;
const L4: usize = IP + ipv6::HEADER_LEN;

/// The gateway's MAC, which every test frame carries unless said.
const GATEWAY_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);

impl Seg {
    fn frame(&self) -> Vec<u8> {
        self.frame_from(GATEWAY_MAC)
    }

    /// [`Self::frame`], sent by `mac`.
    fn frame_from(&self, mac: MacAddr) -> Vec<u8> {
        let tcp_len = tcp::HEADER_LEN + self.options.len();
        let mut f = vec![0u8; L4 + tcp_len];
        let mut eth = EthernetFrame::new_unchecked(&mut f[..]);
        eth.set_dst_addr(OUR);
        eth.set_src_addr(mac);
        eth.set_ethertype(EtherType::Ipv6);
        Ipv6Repr {
            src: self.src.0,
            dst: self.dst.0,
            next_header: IpProtocol::Tcp,
            payload_len: tcp_len + self.payload.len(),
            hop_limit: self.hops,
            traffic_class: 0,
            flow_label: 0x12345,
        }
        .emit(&mut Ipv6Packet::new_unchecked(&mut f[IP..L4]));
        f.extend_from_slice(&self.payload);
        let mut t = TcpPacket::new_unchecked(&mut f[L4..]);
        t.set_src_port(self.src.1);
        t.set_dst_port(self.dst.1);
        t.set_seq_number(self.seq);
        t.set_ack_number(self.ack);
        t.set_header_len(tcp_len);
        t.set_flags(TcpFlags(self.flags));
        t.set_window(self.window);
        t.options_mut().copy_from_slice(&self.options);
        t.fill_checksum_v6(self.src.0, self.dst.0);
        f
    }

    /// Reads a frame the pipeline sent, checking its lengths and checksum.
    fn read(frame: &[u8]) -> Seg {
        let eth = EthernetFrame::new_checked(frame).expect("Ethernet");
        assert_eq!(eth.ethertype(), EtherType::Ipv6);
        let ip = Ipv6Packet::new_checked(&frame[IP..]).expect("IPv6");
        assert_eq!(ip.version(), 6);
        assert_eq!(
            usize::from(ip.payload_len()) + L4,
            frame.len(),
            "no padding, no missing bytes"
        );
        assert_eq!(ip.next_header(), IpProtocol::Tcp);
        let t = TcpPacket::new_checked(ip.payload()).expect("TCP");
        assert!(
            t.verify_checksum_v6(ip.src_addr(), ip.dst_addr()),
            "TCP checksum"
        );
        Seg {
            src: (ip.src_addr(), t.src_port()),
            dst: (ip.dst_addr(), t.dst_port()),
            flags: t.flags().bits(),
            seq: t.seq_number(),
            ack: t.ack_number(),
            window: t.window(),
            options: t.options().to_vec(),
            payload: t.payload().to_vec(),
            hops: ip.hop_limit(),
        }
    }

    fn opts(&self) -> TcpOptions {
        TcpOptions::parse(&self.options)
    }
}

/// Runs `s` through the pipeline: what was sent, or the verdict.
fn run(p: &mut Pipeline, snap: &Snapshot, s: &Seg, now: u32) -> Result<Seg, Verdict> {
    run_from(p, snap, s, GATEWAY_MAC, now)
}

/// [`run`] of a frame sent by `mac`.
fn run_from(
    p: &mut Pipeline,
    snap: &Snapshot,
    s: &Seg,
    mac: MacAddr,
    now: u32,
) -> Result<Seg, Verdict> {
    let mut b = VecBuf::from_bytes(&s.frame_from(mac));
    match p.process(snap, 0, &mut b, now) {
        Verdict::Transmit(0) => Ok(Seg::read(b.data())),
        v => Err(v),
    }
}

fn dropped(r: DropReason) -> Result<Seg, Verdict> {
    Err(Verdict::Drop(r))
}

const CLIENT: &str = "2001:2:0:10::a";
const VIP: &str = "2001:2:0:1::100";
const REAL: &str = "2001:2::11";

fn c() -> (Ipv6Addr, u16) {
    (v6(CLIENT), 40000)
}
fn v() -> (Ipv6Addr, u16) {
    (v6(VIP), 80)
}
fn r() -> (Ipv6Addr, u16) {
    (v6(REAL), 8080)
}
const ISN: u32 = 0xfff0_0000;
const REAL_ISN: u32 = 0x1234_5678;

fn client_syn(isn: u32) -> Seg {
    Seg {
        window: 64800,
        options: opts(TcpOptions {
            mss: Some(1440),
            wscale: Some(7),
            sack_permitted: true,
            timestamps: Some(Timestamps { val: 5000, ecr: 0 }),
        }),
        ..seg(c(), v(), SYN, isn, 0)
    }
}

/// The client's ACK of the cookie SYN-ACK.
fn client_ack(cookie: u32) -> Seg {
    Seg {
        options: ts_opt(5001, NOW),
        ..seg(c(), v(), ACK, ISN.wrapping_add(1), cookie.wrapping_add(1))
    }
}

/// The client's SYN, the cookie SYN-ACK, the client's ACK and the SYN to
/// the real: returns the cookie.
fn handshake_to_real(p: &mut Pipeline, snap: &Snapshot) -> u32 {
    let synack = run(p, snap, &client_syn(ISN), NOW).expect("SYN-ACK");
    let cookie = synack.seq;
    let syn = run(p, snap, &client_ack(cookie), NOW + 1).expect("SYN to the real");
    assert_eq!((syn.src, syn.dst, syn.flags), (c(), r(), SYN));
    cookie
}

/// The real's SYN-ACK (window scale 5, TSval 777).
fn real_synack() -> Seg {
    Seg {
        window: 65160,
        options: opts(TcpOptions {
            mss: Some(1440),
            wscale: Some(5),
            sack_permitted: true,
            timestamps: Some(Timestamps {
                val: 777,
                ecr: 5001,
            }),
        }),
        ..seg(r(), c(), SYNACK, REAL_ISN, ISN.wrapping_add(1))
    }
}

/// [`handshake_to_real`], then the real's SYN-ACK and the ACK to the
/// real: returns the cookie.
fn established(p: &mut Pipeline, snap: &Snapshot) -> u32 {
    let cookie = handshake_to_real(p, snap);
    let ack = run(p, snap, &real_synack(), NOW + 2).expect("ACK to the real");
    assert_eq!((ack.src, ack.dst, ack.flags), (c(), r(), ACK));
    cookie
}

/// The IPv6 side of the IPv4 test of the same name: a forged real RST,
/// FIN or SYN from the internet leaves a proxied flow established; the
/// real's own RST closes it, from where its SYN-ACK came (not its neighbor
/// answer's MAC) or from its neighbor answer's MAC.
#[test]
fn a_forged_real_rst_fin_or_syn_from_elsewhere_leaves_a_proxied_flow_alone() {
    const FIN: u8 = 0x01;
    let its_own = MacAddr([2, 0, 0, 0, 0, 0x12]);
    let nd_answer = MacAddr([2, 0, 0, 0, 0, 0x11]);
    for closer in [its_own, nd_answer] {
        let (snap, mut p) = setup("on", 64);
        handshake_to_real(&mut p, &snap);
        let ack = run_from(&mut p, &snap, &real_synack(), its_own, NOW + 2).expect("ACK");
        assert_eq!((ack.dst, ack.flags), (r(), ACK));
        for flags in [RST, FIN | ACK, SYN] {
            let forged = seg(r(), c(), flags, REAL_ISN + 1, ISN.wrapping_add(1));
            run(&mut p, &snap, &forged, NOW + 3).expect("on to the client");
            assert_eq!(only_flow(&p).state(), FlowState::Established, "{flags:#x}");
        }
        assert_eq!(p.stats().nat_replies_unvouched.get(), 3);
        let rst = seg(r(), c(), RST, REAL_ISN + 1, 0);
        run_from(&mut p, &snap, &rst, closer, NOW + 4).expect("forwarded");
        assert_eq!(only_flow(&p).state(), FlowState::Closed, "{closer:?}");
    }
}

fn only_flow(p: &Pipeline) -> Flow<Ipv6Addr> {
    let t = p.flows6().expect("an IPv6 table");
    let e = t.entries();
    assert_eq!(e.len(), 1, "one flow");
    *t.get(e[0])
}

fn flows6(p: &Pipeline) -> usize {
    p.flows6().map_or(0, |t| t.len())
}

/// Runs `s` as a worker does: a deferred frame (which must be untouched)
/// goes to `list`. The verdict.
fn run_or_defer(
    p: &mut Pipeline,
    snap: &Snapshot,
    list: &mut DeferList<VecBuf>,
    s: &Seg,
    now: u32,
) -> Verdict {
    let frame = s.frame();
    let mut b = VecBuf::from_bytes(&frame);
    let v = p.process(snap, 0, &mut b, now);
    if let Verdict::Defer6 { .. } = v {
        assert_eq!(b.data(), &frame[..], "a deferred frame is untouched");
        let stats = Arc::clone(p.stats());
        assert!(list.push(b, 0, v, now, &stats).is_ok(), "a free slot");
    }
    v
}

/// The worker's pass over `list`: what left it, in order.
fn release(
    p: &mut Pipeline,
    snap: &Snapshot,
    list: &mut DeferList<VecBuf>,
    now: u32,
) -> Vec<Result<Seg, Verdict>> {
    let mut out = Vec::new();
    list.release(p, snap, now, |b, v| {
        out.push(match v {
            Verdict::Transmit(0) => Ok(Seg::read(b.data())),
            v => Err(v),
        })
    });
    out
}

const DEFERRED: Verdict = Verdict::Defer6 { client_port: 40000 };

#[test]
fn the_handshake_goes_through_the_proxy_over_ipv6_and_both_directions_are_translated() {
    let (snap, mut p) = setup("on", 64);
    assert_eq!(snap.syn_proxy_mss6, 1440, "port MTU 1500 - 60");
    // 1. SYN: answered by the appliance, nothing kept.
    let synack = run(&mut p, &snap, &client_syn(ISN), NOW).expect("SYN-ACK");
    assert_eq!((synack.src, synack.dst), (v(), c()));
    assert_eq!(synack.flags, SYNACK);
    assert_eq!(synack.ack, ISN.wrapping_add(1));
    assert_eq!(synack.hops, ipv6::DEFAULT_HOP_LIMIT, "a packet of ours");
    assert!(synack.payload.is_empty());
    assert_eq!(
        synack.opts(),
        TcpOptions {
            mss: Some(1440),
            wscale: Some(ADVERTISED_WSCALE),
            sack_permitted: true,
            timestamps: Some(Timestamps {
                val: NOW.wrapping_add(KEY.ts_offset(c().0, v().0)),
                ecr: 5000
            }),
        }
    );
    // The cookie is the one the key makes over the IPv6 tuple.
    let tuple = CookieTuple {
        client: v6(CLIENT),
        client_port: 40000,
        vip: v6(VIP),
        vip_port: 80,
    };
    let carried = CookieOptions::from_syn(1, Some(1440), Some(7), true);
    assert_eq!(synack.seq, KEY.make(&tuple, ISN, &carried, u64::from(NOW)));
    assert_eq!(flows6(&p), 0, "no state for a SYN");
    assert_eq!(p.flows().len(), 0, "nor in the IPv4 table");
    assert_eq!(p.stats().syn_proxy_cookies_sent.get(), 1);
    let cookie = synack.seq;

    // 2. The client's ACK becomes the SYN to the real.
    let syn = run(&mut p, &snap, &client_ack(cookie), NOW + 1).expect("SYN to the real");
    assert_eq!((syn.src, syn.dst, syn.flags), (c(), r(), SYN));
    assert_eq!((syn.seq, syn.ack), (ISN, 0), "the client's own ISN");
    assert_eq!(syn.window, 64256, "502 << 7: a SYN's window is unscaled");
    assert_eq!(syn.hops, 63, "forwarded: one hop less");
    assert_eq!(
        syn.opts(),
        TcpOptions {
            mss: Some(1440),
            wscale: Some(7),
            sack_permitted: true,
            timestamps: Some(Timestamps { val: 5001, ecr: 0 }),
        }
    );
    let f = only_flow(&p);
    assert!(f.is_proxied() && f.is_proxy_waiting());
    assert_eq!(f.state(), FlowState::SynSent);
    assert_eq!(f.trust(), Trust::Unconfirmed, "until the real answers");
    assert_eq!(p.stats().syn_proxy_cookies_accepted.get(), 1);

    // 3. Data before the real answered: deferred, untouched.
    let mut list = DeferList::new(DEFER_SLOTS, DEFER_MS);
    let early = Seg {
        payload: b"GET / HTTP/1.0\r\n\r\n".to_vec(),
        options: ts_opt(5002, NOW),
        ..seg(
            c(),
            v(),
            PSHACK,
            ISN.wrapping_add(1),
            cookie.wrapping_add(1),
        )
    };
    assert_eq!(
        run_or_defer(&mut p, &snap, &mut list, &early, NOW + 1),
        DEFERRED
    );
    assert_eq!(p.stats().syn_proxy_deferred.get(), 1);
    assert!(!list.due(&p, NOW + 1), "nothing to do while it waits");

    // 4. The real's SYN-ACK becomes the ACK to the real.
    let ack = run(&mut p, &snap, &real_synack(), NOW + 2).expect("ACK to the real");
    assert_eq!((ack.src, ack.dst, ack.flags), (c(), r(), ACK));
    assert_eq!((ack.seq, ack.ack), (ISN.wrapping_add(1), REAL_ISN + 1));
    assert_eq!(ack.window, 502, "the client's window, in its scale");
    assert_eq!(
        ack.opts().timestamps,
        Some(Timestamps {
            val: 5001,
            ecr: 777
        })
    );
    assert!(ack.payload.is_empty());
    let f = only_flow(&p);
    assert!(f.is_proxied() && !f.is_proxy_waiting());
    assert_eq!(f.state(), FlowState::Established);
    assert_eq!(f.trust(), Trust::Confirmed, "a confirmed flow");
    // The pass after the burst sends the deferred data on, translated.
    assert!(list.due(&p, NOW + 2));
    let sent = release(&mut p, &snap, &mut list, NOW + 2);
    assert_eq!(sent.len(), 1, "{sent:?}");
    let sent = sent[0].clone().expect("the early data to the real");
    assert_eq!((sent.src, sent.dst, sent.flags), (c(), r(), PSHACK));
    assert_eq!(sent.seq, ISN.wrapping_add(1), "the client's numbers pass");
    assert_eq!(sent.ack, REAL_ISN + 1, "in the real's space");
    assert_eq!(
        sent.opts().timestamps,
        Some(Timestamps {
            val: 5002,
            ecr: 777
        }),
        "TSecr back in the real's clock"
    );
    assert_eq!(sent.payload, early.payload);
    assert!(list.is_empty());
    assert_eq!(p.stats().dropped(DropReason::SynProxyPending), 0);

    // 5. Client to real: ack + delta, SACK edges + delta, TSecr - offset.
    let delta = REAL_ISN.wrapping_sub(cookie);
    let ts_off = NOW.wrapping_sub(777);
    let mut o = ts_opt(5003, NOW + 10);
    let mut sack = [0u8; 12];
    let n = emit_sack(
        &mut sack,
        &[(cookie.wrapping_add(100), cookie.wrapping_add(200))],
    );
    o.extend_from_slice(&sack[..n]);
    let data = Seg {
        payload: b"more".to_vec(),
        options: o,
        ..seg(
            c(),
            v(),
            PSHACK,
            ISN.wrapping_add(19),
            cookie.wrapping_add(1),
        )
    };
    let out = run(&mut p, &snap, &data, NOW + 3).expect("data to the real");
    assert_eq!((out.src, out.dst), (c(), r()));
    assert_eq!(out.seq, ISN.wrapping_add(19));
    assert_eq!(out.ack, REAL_ISN + 1);
    assert_eq!(out.window, 502);
    assert_eq!(out.hops, 63);
    assert_eq!(out.payload, data.payload);
    assert_eq!(
        out.opts().timestamps,
        Some(Timestamps {
            val: 5003,
            ecr: (NOW + 10).wrapping_sub(ts_off)
        })
    );
    let mut blocks = [(0, 0); 4];
    assert_eq!(sack_blocks(&out.options, &mut blocks), 1);
    assert_eq!(
        blocks[0],
        (
            cookie.wrapping_add(100).wrapping_add(delta),
            cookie.wrapping_add(200).wrapping_add(delta)
        )
    );

    // 6. Real to client: seq - delta, TSval + offset, window from scale 5
    //    to the proxy's 7.
    let reply = Seg {
        window: 1000,
        payload: b"HTTP/1.0 200 OK\r\n\r\n".to_vec(),
        options: ts_opt(780, 5003),
        ..seg(r(), c(), PSHACK, REAL_ISN + 1, ISN.wrapping_add(23))
    };
    let back = run(&mut p, &snap, &reply, NOW + 4).expect("data to the client");
    assert_eq!((back.src, back.dst), (v(), c()));
    assert_eq!(back.seq, cookie.wrapping_add(1), "in the client's view");
    assert_eq!(back.ack, ISN.wrapping_add(23));
    assert_eq!(back.window, 250, "1000 << 5 >> 7");
    assert_eq!(back.hops, 63);
    assert_eq!(
        back.opts().timestamps,
        Some(Timestamps {
            val: NOW + 3,
            ecr: 5003
        })
    );
    assert_eq!(back.payload, reply.payload);
    assert_eq!(
        p.stats().real(0).packets.get(),
        5,
        "SYN, ACK, the early data, data, reply"
    );
}

#[test]
fn a_forged_ipv6_ack_is_dropped_and_counted_whatever_bits_it_changes() {
    let (snap, mut p) = setup("on", 64);
    let synack = run(&mut p, &snap, &client_syn(ISN), NOW).unwrap();
    let cookie = synack.seq;
    for bad in [cookie ^ 0x100, cookie ^ 1, 12345] {
        let ack = seg(c(), v(), ACK, ISN.wrapping_add(1), bad.wrapping_add(1));
        assert_eq!(
            run(&mut p, &snap, &ack, NOW),
            dropped(DropReason::SynProxyBadCookie)
        );
    }
    // The right cookie from another client that differs in the high half
    // of its address only (the whole address is under the MAC), from
    // another port, or with another ISN: refused.
    let high = Ipv6Addr::from(u128::from(v6(CLIENT)) ^ (1u128 << 100));
    for (from, isn) in [
        ((high, 40000), ISN),
        ((v6(CLIENT), 40001), ISN),
        (c(), ISN.wrapping_add(1)),
    ] {
        let ack = seg(from, v(), ACK, isn.wrapping_add(1), cookie.wrapping_add(1));
        assert_eq!(
            run(&mut p, &snap, &ack, NOW),
            dropped(DropReason::SynProxyBadCookie),
            "{from:?} {isn}"
        );
    }
    // Two periods later the right one is refused too; one later, good.
    let late = seg(c(), v(), ACK, ISN.wrapping_add(1), cookie.wrapping_add(1));
    assert_eq!(
        run(&mut p, &snap, &late, NOW + 2 * PERIOD_MS),
        dropped(DropReason::SynProxyBadCookie)
    );
    assert_eq!(flows6(&p), 0);
    assert_eq!(p.stats().syn_proxy_cookies_accepted.get(), 0);
    assert!(run(&mut p, &snap, &late, NOW + PERIOD_MS).is_ok());
    assert_eq!(flows6(&p), 1);
    assert_eq!(p.stats().syn_proxy_cookies_accepted.get(), 1);
}

#[test]
fn retransmissions_and_strays_make_no_second_ipv6_flow() {
    let (snap, mut p) = setup("on", 64);
    let cookie = handshake_to_real(&mut p, &snap);
    // The ACK again while waiting: no second flow, no second SYN.
    assert_eq!(
        run(&mut p, &snap, &client_ack(cookie), NOW + 1),
        dropped(DropReason::SynProxyPending)
    );
    // The SYN again while waiting: answered with the same cookie.
    let again = run(&mut p, &snap, &client_syn(ISN), NOW + 1).expect("SYN-ACK again");
    assert_eq!((again.flags, again.seq), (SYNACK, cookie));
    // A SYN-ACK that does not acknowledge our SYN, or is not plain.
    for wrong in [
        seg(r(), c(), SYNACK, REAL_ISN, ISN.wrapping_add(99)),
        seg(r(), c(), SYNACK | 0x01, REAL_ISN, ISN.wrapping_add(1)),
        seg(r(), c(), ACK, REAL_ISN, ISN.wrapping_add(1)),
    ] {
        assert_eq!(
            run(&mut p, &snap, &wrong, NOW + 1),
            dropped(DropReason::SynProxyPending)
        );
    }
    assert_eq!(flows6(&p), 1);
    assert!(only_flow(&p).is_proxy_waiting());
}

#[test]
fn resets_close_a_proxied_ipv6_flow_in_either_space() {
    for from_client in [true, false] {
        let (snap, mut p) = setup("on", 64);
        let cookie = established(&mut p, &snap);
        let far = if from_client {
            seg(c(), v(), RST, ISN.wrapping_add(1 << 30), 0)
        } else {
            seg(r(), c(), RST, REAL_ISN.wrapping_add(1 << 30), 0)
        };
        run(&mut p, &snap, &far, NOW + 3).expect("forwarded");
        assert_eq!(only_flow(&p).state(), FlowState::Established);
        let near = if from_client {
            seg(c(), v(), RST, ISN.wrapping_add(1), 0)
        } else {
            seg(r(), c(), RST, REAL_ISN + 1, 0)
        };
        let out = run(&mut p, &snap, &near, NOW + 4).expect("forwarded");
        if from_client {
            assert_eq!((out.dst, out.seq), (r(), ISN.wrapping_add(1)));
        } else {
            assert_eq!((out.dst, out.seq), (c(), cookie.wrapping_add(1)));
        }
        assert_eq!(only_flow(&p).state(), FlowState::Closed);
    }
    // A real that refuses resets the client at the number it expects.
    let (snap, mut p) = setup("on", 64);
    let cookie = handshake_to_real(&mut p, &snap);
    let rst = seg(r(), c(), RST | ACK, 0, ISN.wrapping_add(1));
    let out = run(&mut p, &snap, &rst, NOW + 2).expect("RST to the client");
    assert_eq!((out.src, out.dst, out.flags), (v(), c(), RST | ACK));
    assert_eq!(out.seq, cookie.wrapping_add(1));
    assert_eq!(only_flow(&p).state(), FlowState::Closed);
    // The client gives up before the real answers: its RST goes on, and
    // its deferred data with it is dropped at the pass.
    let (snap, mut p) = setup("on", 64);
    let mut list = DeferList::new(DEFER_SLOTS, DEFER_MS);
    let cookie = handshake_to_real(&mut p, &snap);
    let early = Seg {
        payload: b"x".to_vec(),
        ..seg(
            c(),
            v(),
            PSHACK,
            ISN.wrapping_add(1),
            cookie.wrapping_add(1),
        )
    };
    assert_eq!(
        run_or_defer(&mut p, &snap, &mut list, &early, NOW + 1),
        DEFERRED
    );
    let out = run(
        &mut p,
        &snap,
        &seg(c(), v(), RST, ISN.wrapping_add(1), 0),
        NOW + 2,
    )
    .expect("the RST to the real");
    assert_eq!((out.dst, out.flags), (r(), RST));
    assert_eq!(
        release(&mut p, &snap, &mut list, NOW + 2),
        vec![dropped(DropReason::SynProxyPending)]
    );
    let late = seg(r(), c(), SYNACK, REAL_ISN, ISN.wrapping_add(1));
    assert_eq!(
        run(&mut p, &snap, &late, NOW + 3),
        dropped(DropReason::SynProxyPending)
    );
}

/// A blind RST to a waiting NAT66 flow is dropped and changes nothing
/// (as for IPv4).
#[test]
fn a_blind_rst_neither_closes_nor_refreshes_a_waiting_flow() {
    let (snap, mut p) = setup("on", 64);
    handshake_to_real(&mut p, &snap);
    let before = only_flow(&p).last_seen;
    let blind = seg(c(), v(), RST, ISN.wrapping_add(1 << 30), 0);
    assert_eq!(
        run(&mut p, &snap, &blind, NOW + 5000),
        dropped(DropReason::SynProxyPending)
    );
    let f = only_flow(&p);
    assert!(f.is_proxy_waiting());
    assert_eq!(f.state(), FlowState::SynSent);
    assert_eq!(f.last_seen, before);
    let own = seg(c(), v(), RST, ISN.wrapping_add(1), 0);
    let out = run(&mut p, &snap, &own, NOW + 5001).expect("the RST to the real");
    assert_eq!((out.dst, out.flags), (r(), RST));
    assert_eq!(only_flow(&p).state(), FlowState::Closed);
}

#[test]
fn an_ipv6_real_without_window_scale_gets_windows_in_its_scale() {
    let (snap, mut p) = setup("on", 64);
    let cookie = handshake_to_real(&mut p, &snap);
    let real_synack = Seg {
        window: 29200,
        options: opts(TcpOptions {
            mss: Some(1440),
            ..TcpOptions::default()
        }),
        ..seg(r(), c(), SYNACK, REAL_ISN, ISN.wrapping_add(1))
    };
    let ack = run(&mut p, &snap, &real_synack, NOW + 2).unwrap();
    assert_eq!(ack.window, 64256, "502 << 7: the real reads it unscaled");
    assert_eq!(ack.opts().timestamps, None, "the real has none");
    let data = Seg {
        window: 100,
        options: ts_opt(5003, NOW),
        ..seg(c(), v(), ACK, ISN.wrapping_add(1), cookie.wrapping_add(1))
    };
    let out = run(&mut p, &snap, &data, NOW + 3).unwrap();
    assert_eq!(out.window, 12800);
    assert_eq!(
        out.opts().timestamps,
        Some(Timestamps {
            val: 5003,
            ecr: NOW
        }),
        "no timestamp translation once the real refused them"
    );
    let reply = Seg {
        window: 29200,
        ..seg(r(), c(), ACK, REAL_ISN + 1, ISN.wrapping_add(1))
    };
    assert_eq!(run(&mut p, &snap, &reply, NOW + 3).unwrap().window, 228);
}

#[test]
fn ipv6_segments_the_proxy_terminates_must_have_good_checksums() {
    let (snap, mut p) = setup("on", 64);
    let mut f = client_syn(ISN).frame();
    let last = f.len() - 1;
    f[last] ^= 0xff;
    let mut b = VecBuf::from_bytes(&f);
    assert_eq!(
        p.process(&snap, 0, &mut b, NOW),
        Verdict::Drop(DropReason::BadL4Checksum)
    );
    assert_eq!(p.stats().syn_proxy_cookies_sent.get(), 0);
}

#[test]
fn auto_engages_under_pressure_of_the_ipv6_table_only() {
    let (snap, mut p) = setup("auto", 8);
    let client = |port| (v6(CLIENT), port);
    // Below half the IPv6 table: SYNs go to the real and make flows.
    for port in 1000..1004u16 {
        let out = run(&mut p, &snap, &seg(client(port), v(), SYN, 1, 0), NOW).unwrap();
        assert_eq!((out.dst, out.flags), (r(), SYN), "port {port}");
    }
    assert_eq!(flows6(&p), 4);
    assert!(p.syn_pressure6(), "half the IPv6 table: from now on");
    assert!(!p.syn_pressure(), "the IPv4 table is empty");
    // Half full: the next SYN is answered by the proxy.
    let out = run(&mut p, &snap, &seg(client(1004), v(), SYN, 1, 0), NOW).unwrap();
    assert_eq!((out.src, out.flags), (v(), SYNACK));
    assert_eq!(flows6(&p), 4);
    assert!(p.syn_pressure6() && !p.syn_pressure());
    let ack = seg(client(1004), v(), ACK, 2, out.seq.wrapping_add(1));
    let syn = run(&mut p, &snap, &ack, NOW).unwrap();
    assert_eq!((syn.dst, syn.flags), (r(), SYN));
    assert_eq!(flows6(&p), 5);
    // Below 3/8 again: released.
    for port in 1000..1003u16 {
        run(&mut p, &snap, &seg(client(port), v(), RST, 2, 0), NOW).unwrap();
    }
    p.sweep(&snap, NOW + 60_000, 64);
    assert!(flows6(&p) < 3, "{}", flows6(&p));
    assert!(!p.syn_pressure6());
    let out = run(
        &mut p,
        &snap,
        &seg(client(2000), v(), SYN, 1, 0),
        NOW + 60_000,
    )
    .unwrap();
    assert_eq!((out.dst, out.flags), (r(), SYN), "released");
    // On standby, a mid-flow ACK for no flow is no_flow as before.
    let (snap, mut p) = setup("auto", 64);
    assert_eq!(
        run(&mut p, &snap, &seg(c(), v(), ACK, 5, 5), NOW),
        dropped(DropReason::NoFlow)
    );
    // Off: SYNs go to the real.
    let (snap, mut p) = setup("off", 64);
    let out = run(&mut p, &snap, &client_syn(ISN), NOW).unwrap();
    assert_eq!((out.dst, out.flags), (r(), SYN));
    assert!(!only_flow(&p).is_proxied());
}

/// A proxied IPv6 flow's record carries its translation: the peer that
/// installs it translates the flow's next segments exactly as the
/// appliance that answered the handshake.
#[test]
fn a_proxied_ipv6_flow_fails_over_with_its_translation() {
    let (snap, mut p) = setup("on", 64);
    let cookie = established(&mut p, &snap);
    // While it waited there was nothing to send; now there is.
    let rec = only_flow(&p).sync_update(&snap).expect("a record");
    let proxy = match rec.change {
        crate::sync::FlowChange::Update(u) => u.proxy.expect("its translation"),
        _ => panic!("an update"),
    };
    assert_eq!(proxy.seq_offset, REAL_ISN.wrapping_sub(cookie));
    assert_eq!((proxy.client_wscale, proxy.real_wscale), (Some(7), Some(5)));
    let mut buf = [0u8; crate::wire::sync::MAX_RECORD_LEN];
    let n = rec.emit(&mut buf);
    let (parsed, _) = crate::sync::FlowRecord::parse(&buf[..n]).expect("parses");
    let (_, mut backup) = setup("on", 64);
    backup
        .sync_install(&snap, &parsed, NOW + 5)
        .expect("installed");
    let data = Seg {
        payload: b"after the takeover".to_vec(),
        options: ts_opt(5010, NOW + 20),
        ..seg(
            c(),
            v(),
            PSHACK,
            ISN.wrapping_add(1),
            cookie.wrapping_add(1),
        )
    };
    let reply = Seg {
        window: 1000,
        options: ts_opt(790, 5010),
        ..seg(r(), c(), ACK, REAL_ISN + 1, ISN.wrapping_add(19))
    };
    for now in [NOW + 6, NOW + 7] {
        // The same segments on both: the same frames out.
        let (a, b) = (
            run(&mut p, &snap, &data, now),
            run(&mut backup, &snap, &data, now),
        );
        assert_eq!(a, b);
        assert_eq!(a.as_ref().unwrap().ack, REAL_ISN + 1);
        let (a, b) = (
            run(&mut p, &snap, &reply, now),
            run(&mut backup, &snap, &reply, now),
        );
        assert_eq!(a, b);
        assert_eq!(a.as_ref().unwrap().seq, cookie.wrapping_add(1));
        assert_eq!(a.as_ref().unwrap().window, 250);
    }
}

/// An ICMPv6 error from the client about a segment the VIP sent it: the
/// quoted sequence number is in the client's view and goes to the real
/// translated back into the real's.
#[test]
fn an_icmpv6_error_from_the_client_quotes_the_reals_sequence_number() {
    use crate::wire::icmpv6::{self, Icmpv6Packet, Icmpv6Type};
    let (snap, mut p) = setup("on", 64);
    let cookie = established(&mut p, &snap);
    // Packet too big about VIP:80 -> client, seq cookie + 1.
    let quote = Seg {
        payload: vec![0; 1400],
        ..seg(v(), c(), ACK, cookie.wrapping_add(1), ISN.wrapping_add(1))
    }
    .frame();
    let quote = &quote[IP..IP + 40 + 20];
    let msg_len = icmpv6::HEADER_LEN + quote.len();
    let mut f = vec![0u8; L4 + msg_len];
    let mut eth = EthernetFrame::new_unchecked(&mut f[..]);
    eth.set_dst_addr(OUR);
    eth.set_src_addr(MacAddr([2, 0, 0, 0, 0, 1]));
    eth.set_ethertype(EtherType::Ipv6);
    Ipv6Repr {
        src: v6(CLIENT),
        dst: v6(VIP),
        next_header: IpProtocol::Icmpv6,
        payload_len: msg_len,
        hop_limit: 64,
        traffic_class: 0,
        flow_label: 0,
    }
    .emit(&mut Ipv6Packet::new_unchecked(&mut f[IP..L4]));
    let mut m = Icmpv6Packet::new_unchecked(&mut f[L4..]);
    m.set_msg_type(Icmpv6Type::PacketTooBig);
    m.set_code(0);
    m.set_mtu(1280);
    m.payload_mut().copy_from_slice(quote);
    m.fill_checksum(v6(CLIENT), v6(VIP));
    let mut b = VecBuf::from_bytes(&f);
    assert_eq!(p.process(&snap, 0, &mut b, NOW + 5), Verdict::Transmit(0));
    let out = Ipv6Packet::new_checked(&b.data()[IP..]).unwrap();
    assert_eq!(out.dst_addr(), v6(REAL));
    let msg = Icmpv6Packet::new_checked(out.payload()).unwrap();
    assert!(msg.verify_checksum(out.src_addr(), out.dst_addr()));
    let q = TcpPacket::new_checked(&msg.payload()[40..]).unwrap();
    assert_eq!((q.src_port(), q.dst_port()), (8080, 40000));
    assert_eq!(q.seq_number(), REAL_ISN + 1, "back in the real's space");
}

/// The IPv4 side is untouched by an IPv6 proxied flow, and an IPv6
/// segment deferred names its client by the frame it keeps.
#[test]
fn deferred_ipv6_frames_are_released_by_their_own_table() {
    let (snap, mut p) = setup("on", 64);
    let mut list = DeferList::new(DEFER_SLOTS, DEFER_MS);
    let cookie = handshake_to_real(&mut p, &snap);
    for (i, body) in [&b"one"[..], &b"two"[..]].into_iter().enumerate() {
        let s = Seg {
            payload: body.to_vec(),
            ..seg(
                c(),
                v(),
                PSHACK,
                ISN.wrapping_add(1 + 3 * i as u32),
                cookie.wrapping_add(1),
            )
        };
        assert_eq!(
            run_or_defer(&mut p, &snap, &mut list, &s, NOW + 1),
            DEFERRED
        );
    }
    // A third is beyond the flow's share: dropped.
    let third = Seg {
        payload: b"3".to_vec(),
        ..seg(
            c(),
            v(),
            PSHACK,
            ISN.wrapping_add(7),
            cookie.wrapping_add(1),
        )
    };
    assert_eq!(
        run_or_defer(&mut p, &snap, &mut list, &third, NOW + 1),
        Verdict::Drop(DropReason::SynProxyPending)
    );
    // A frame too short to hold an IPv6 header is given back.
    let stats = Arc::clone(p.stats());
    assert!(list
        .push(VecBuf::from_bytes(&[0; 20]), 0, DEFERRED, NOW, &stats)
        .is_err());
    assert_eq!(list.len(), 2);
    run(&mut p, &snap, &real_synack(), NOW + 2).expect("ACK to the real");
    let out = release(&mut p, &snap, &mut list, NOW + 2);
    let bodies: Vec<Vec<u8>> = out.into_iter().map(|s| s.expect("sent").payload).collect();
    assert_eq!(bodies, vec![b"one".to_vec(), b"two".to_vec()], "in order");
    assert_eq!(p.stats().syn_proxy_deferred.get(), 2);
}

// The SYN to the real sent again (`flow::synproxy::SynRetries`), for NAT66
// flows as for IPv4 ones.

use crate::flow::synproxy::{SYN_RETRIES, SYN_RTO_MS};

/// The worker's pass for SYNs to send again: each frame made, as sent
/// (whole bytes), or its verdict and the next hop a `Hold6` names. Buffers
/// come dirty, as mbufs do.
#[allow(clippy::type_complexity)]
fn resend(
    p: &mut Pipeline,
    snap: &Snapshot,
    now: u32,
) -> Vec<Result<Vec<u8>, (Verdict, Option<Ipv6Addr>)>> {
    let mut out = Vec::new();
    p.resend_syns_with(
        snap,
        now,
        || {
            let mut b = VecBuf::from_bytes(&[0xa5; 256]);
            assert!(b.trim(256));
            Some(b)
        },
        |p, b, v| {
            out.push(match v {
                Verdict::Transmit(0) => Ok(b.data().to_vec()),
                Verdict::Hold6 { index, .. } => Err((v, p.held_next_hop6(index))),
                v => Err((v, None)),
            })
        },
    );
    out
}

#[test]
fn a_lost_ipv6_syn_to_the_real_goes_again_backing_off_the_same_bytes() {
    let (snap, mut p) = setup("on", 64);
    let synack = run(&mut p, &snap, &client_syn(ISN), NOW).expect("SYN-ACK");
    let cookie = synack.seq;
    // The first SYN to the real (lost).
    let mut b = VecBuf::from_bytes(&client_ack(cookie).frame());
    assert_eq!(p.process(&snap, 0, &mut b, NOW + 1), Verdict::Transmit(0));
    let first = b.data().to_vec();
    let t0 = NOW + 1;
    // A client that keeps sending its ACK every 100 ms for 10 s.
    let mut at = Vec::new();
    for now in (t0 + 100..t0 + 10_000).step_by(100) {
        assert_eq!(
            run(&mut p, &snap, &client_ack(cookie), now),
            dropped(DropReason::SynProxyPending)
        );
        for r in resend(&mut p, &snap, now) {
            assert_eq!(r, Ok(first.clone()), "byte for byte, at {now}");
            at.push(now - t0);
        }
    }
    assert_eq!(
        at,
        vec![SYN_RTO_MS, 3 * SYN_RTO_MS, 7 * SYN_RTO_MS],
        "1 s, then 2 s, then 4 s after the last"
    );
    assert_eq!(
        p.stats().syn_proxy_syn_retransmits.get(),
        u64::from(SYN_RETRIES)
    );
    let again = Seg::read(&first);
    assert_eq!((again.src, again.dst, again.flags), (c(), r(), SYN));
    assert_eq!((again.seq, again.hops), (ISN, 63));
    assert_eq!(only_flow(&p).syn_retries(), SYN_RETRIES);
    assert!(p.flows().is_empty(), "nothing in the IPv4 table");
    // The real answers the last: the handshake completes (after the
    // client's last ACK: the clock does not go back).
    let ack = run(&mut p, &snap, &real_synack(), t0 + 10_000).expect("ACK to the real");
    assert_eq!((ack.dst, ack.flags), (r(), ACK));
    assert_eq!(only_flow(&p).state(), FlowState::Established);
}

/// No static neighbor for the real: a proxied flow whose first SYN to
/// the real (in the frame returned) is held while neighbor discovery
/// asks; the pipeline, and the cookie its client acknowledged.
fn first_syn_held_for_the_real() -> (Snapshot, Pipeline, u32, VecBuf) {
    let text = CONFIG.replace(
        "[[neighbors]]\naddress = \"2001:2::11\"\nmac = \"02:00:00:00:00:11\"\n",
        "",
    );
    let config = Config::parse(&text).unwrap();
    let snap = Snapshot::compile(&config, &[OUR], 1, &mut Ids::default(), |_, _, _| true).unwrap();
    let mut p = Pipeline::new(0, 1, 64, Arc::new(WorkerStats::default()));
    p.adopt(&snap);
    p.set_cookie_key(KEY);
    let cookie = run(&mut p, &snap, &client_syn(ISN), NOW)
        .expect("SYN-ACK")
        .seq;
    let mut b = VecBuf::from_bytes(&client_ack(cookie).frame());
    let v = p.process(&snap, 0, &mut b, NOW + 1);
    assert!(matches!(v, Verdict::Hold6 { port: 0, .. }), "{v:?}");
    (snap, p, cookie, b)
}

#[test]
fn an_ipv6_syn_sent_again_waits_for_neighbor_discovery_as_the_first_did() {
    // No static neighbor for the real: the first SYN is held while
    // neighbor discovery asks, and so is the one sent again; the pass
    // names its next hop.
    let (snap, mut p, cookie, b) = first_syn_held_for_the_real();
    let first = b.data().to_vec();
    let now = NOW + 1 + SYN_RTO_MS;
    let _ = run(&mut p, &snap, &client_ack(cookie), now);
    let mut out = Vec::new();
    p.resend_syns_with(
        &snap,
        now,
        || Some(VecBuf::from_bytes(&[])),
        |p, b, v| {
            let hop = match v {
                Verdict::Hold6 { index, .. } => p.held_next_hop6(index),
                _ => None,
            };
            out.push((b.data().to_vec(), v, hop))
        },
    );
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, first, "the same bytes");
    assert!(matches!(out[0].1, Verdict::Hold6 { port: 0, .. }));
    assert_eq!(out[0].2, Some(v6(REAL)), "its next hop named");
    assert_eq!(p.stats().syn_proxy_syn_retransmits.get(), 1, "on its way");
}

/// Found in review: the passes that send SYNs again did not begin a
/// pipeline call, so on a worker that received nothing between them (the
/// timer alone makes them due) their held SYNs' next hops piled up, named
/// 0, 1, 2 ..., until `HELD6` of them, and every re-send held after that
/// was dropped as `neighbor_unresolved`. Each pass names its own from 0,
/// as a burst does.
#[test]
fn each_pass_that_sends_ipv6_syns_again_names_its_holds_from_zero() {
    use crate::flow::synproxy::SYN_WATCH_EVERY_MS;
    let (snap, mut p, _, _) = first_syn_held_for_the_real();
    // The client says nothing more: the timer alone, no burst between.
    let mut held = Vec::new();
    for now in (NOW + 1..NOW + 10_000).step_by(SYN_WATCH_EVERY_MS as usize) {
        p.syn_timers(&snap, now);
        for r in resend(&mut p, &snap, now) {
            match r {
                Err((Verdict::Hold6 { index, .. }, hop)) => held.push((index, hop)),
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(held, vec![(0, Some(v6(REAL))); usize::from(SYN_RETRIES)]);
}

#[test]
fn a_silent_ipv6_clients_lost_syn_goes_again_on_the_timer() {
    use crate::flow::synproxy::SYN_WATCH_EVERY_MS;
    // The server speaks first: after its ACK the client sends nothing, so
    // only the timer (of the IPv6 table) can ask the real again.
    let (snap, mut p) = setup("on", 64);
    let synack = run(&mut p, &snap, &client_syn(ISN), NOW).expect("SYN-ACK");
    let mut b = VecBuf::from_bytes(&client_ack(synack.seq).frame());
    assert_eq!(p.process(&snap, 0, &mut b, NOW + 1), Verdict::Transmit(0));
    let first = b.data().to_vec();
    let t0 = NOW + 1;
    let mut at = Vec::new();
    for now in (t0..t0 + 10_000).step_by(10) {
        p.syn_timers(&snap, now);
        for r in resend(&mut p, &snap, now) {
            assert_eq!(r, Ok(first.clone()), "byte for byte, at {now}");
            at.push(now - t0);
        }
    }
    assert_eq!(at.len(), usize::from(SYN_RETRIES), "{at:?}");
    for (got, due) in at.iter().zip([1, 3, 7].map(|n| n * SYN_RTO_MS)) {
        assert!((due..due + SYN_WATCH_EVERY_MS + 10).contains(got), "{at:?}");
    }
    assert_eq!(
        p.stats().syn_proxy_syn_retransmits.get(),
        u64::from(SYN_RETRIES)
    );
    assert_eq!(only_flow(&p).syn_retries(), SYN_RETRIES);
}

/// The timer's loop over the IPv6 table every ms from `from` to `to`, the
/// pool empty while `empty` holds: when each SYN went again (ms after
/// `t0`, checked to be `first`), and how many buffers the empty pool was
/// asked for.
fn timers_with_pool(
    p: &mut Pipeline,
    snap: &Snapshot,
    first: &[u8],
    (t0, from, to): (u32, u32, u32),
    empty: impl Fn(u32) -> bool,
) -> (Vec<u32>, usize) {
    let (mut at, mut asked) = (Vec::new(), 0);
    for now in from..to {
        p.syn_timers(snap, now);
        let dry = empty(now);
        p.resend_syns_with(
            snap,
            now,
            || {
                if dry {
                    asked += 1;
                    return None;
                }
                let mut b = VecBuf::from_bytes(&[0xa5; 128]);
                assert!(b.trim(128));
                Some(b)
            },
            |_, b, v| {
                if is_reset6(b.data()) {
                    // The proxy giving up on the flow (15 s), not a SYN.
                    return;
                }
                assert_eq!((v, b.data()), (Verdict::Transmit(0), first), "at {now}");
                at.push(now - t0);
            },
        );
    }
    (at, asked)
}

/// As over IPv4: a real that never answers is given up on 15 s after the
/// SYN, and the client gets a RST at the number it expects.
#[test]
fn an_ipv6_client_whose_real_never_answers_is_reset() {
    let (snap, mut p) = setup("on", 64);
    let synack = run(&mut p, &snap, &client_syn(ISN), NOW).expect("SYN-ACK");
    let mut b = VecBuf::from_bytes(&client_ack(synack.seq).frame());
    assert_eq!(p.process(&snap, 0, &mut b, NOW + 1), Verdict::Transmit(0));
    let t0 = NOW + 1;
    let mut resets = Vec::new();
    for now in t0..t0 + 16_000 {
        p.syn_timers(&snap, now);
        p.resend_syns_with(
            &snap,
            now,
            || {
                let mut b = VecBuf::from_bytes(&[0xa5; 128]);
                assert!(b.trim(128));
                Some(b)
            },
            |_, b, _| {
                if is_reset6(b.data()) {
                    resets.push((now - t0, b.data().to_vec()));
                }
            },
        );
    }
    assert_eq!(resets.len(), 1);
    assert!(resets[0].0 >= 15_000, "at {}", resets[0].0);
    let ip = Ipv6Packet::new_checked(&resets[0].1[14..]).unwrap();
    let t = TcpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!(t.flags(), TcpFlags::RST | TcpFlags::ACK);
    assert_eq!(t.seq_number(), synack.seq.wrapping_add(1));
    assert_eq!(p.flows6().map(|t| t.len()), Some(0), "the flow ended");
}

#[test]
fn an_ipv6_syn_that_finds_no_buffer_is_counted_and_costs_its_flow_no_attempt() {
    use crate::flow::synproxy::SYN_WATCH_EVERY_MS;
    // A silent client; the pool is empty from 0.9 s to 1.5 s after the
    // lost SYN, when its first re-send falls due.
    let (snap, mut p) = setup("on", 64);
    let synack = run(&mut p, &snap, &client_syn(ISN), NOW).expect("SYN-ACK");
    let mut b = VecBuf::from_bytes(&client_ack(synack.seq).frame());
    assert_eq!(p.process(&snap, 0, &mut b, NOW + 1), Verdict::Transmit(0));
    let first = b.data().to_vec();
    let t0 = NOW + 1;
    let (at, asked) = timers_with_pool(&mut p, &snap, &first, (t0, t0, t0 + 15_000), |now| {
        (t0 + 900..t0 + 1_500).contains(&now)
    });
    // Due at each look of the timer from 1 s on, one buffer asked for
    // each (no spinning), each counted; none cost the flow one of its
    // three, and the back-off counts from the first that went.
    let looks = 500 / SYN_WATCH_EVERY_MS as usize;
    assert!(
        (looks..=looks + 1).contains(&asked),
        "{asked} buffers asked for"
    );
    assert_eq!(p.stats().dropped(DropReason::NoMbuf), asked as u64);
    assert_eq!(p.stats().dropped_total(), asked as u64);
    assert_eq!(at.len(), usize::from(SYN_RETRIES), "{at:?}");
    let base = at[0];
    assert!(
        (1_500..1_500 + SYN_WATCH_EVERY_MS).contains(&base),
        "{at:?}"
    );
    for (got, due) in at[1..].iter().zip([2, 6].map(|n| base + n * SYN_RTO_MS)) {
        assert!((due..due + SYN_WATCH_EVERY_MS + 1).contains(got), "{at:?}");
    }
    assert_eq!(only_flow(&p).syn_retries(), SYN_RETRIES);
    assert_eq!(
        p.stats().syn_proxy_syn_retransmits.get(),
        u64::from(SYN_RETRIES)
    );
}

#[test]
fn a_waiting_ipv6_flow_ages_from_its_client_not_from_syns_sent_again() {
    // A silent client, a silent real: the timer sends the SYN again at
    // 1, 3 and 7 s, and the flow still expires `tcp_syn_timeout` after
    // the client's ACK.
    let (snap, mut p) = setup("on", 64);
    let synack = run(&mut p, &snap, &client_syn(ISN), NOW).expect("SYN-ACK");
    let cookie = synack.seq;
    let mut b = VecBuf::from_bytes(&client_ack(cookie).frame());
    assert_eq!(p.process(&snap, 0, &mut b, NOW + 1), Verdict::Transmit(0));
    let first = b.data().to_vec();
    let t0 = NOW + 1;
    let (at, _) = timers_with_pool(&mut p, &snap, &first, (t0, t0, t0 + 8_000), |_| false);
    assert_eq!(at.len(), usize::from(SYN_RETRIES), "{at:?}");
    assert_eq!(only_flow(&p).last_seen, t0, "the client's ACK");
    p.sweep(&snap, t0 + snap.timeouts.syn, 64);
    assert_eq!(flows6(&p), 1, "not yet");
    p.sweep(&snap, t0 + snap.timeouts.syn + 1, 64);
    assert_eq!(flows6(&p), 0, "expired on its SYN timeout");
    // The client's segment is its last packet, whether it sends the SYN
    // again or not.
    let (snap, mut p) = setup("on", 64);
    let synack = run(&mut p, &snap, &client_syn(ISN), NOW).expect("SYN-ACK");
    run(&mut p, &snap, &client_ack(synack.seq), t0).expect("SYN to the real");
    let spoke = t0 + 2 * SYN_RTO_MS;
    let _ = run(&mut p, &snap, &client_ack(synack.seq), spoke);
    assert_eq!(resend(&mut p, &snap, spoke).len(), 1);
    assert_eq!(only_flow(&p).last_seen, spoke);
    p.sweep(&snap, spoke + snap.timeouts.syn, 64);
    assert_eq!(flows6(&p), 1, "not yet");
    p.sweep(&snap, spoke + snap.timeouts.syn + 1, 64);
    assert_eq!(flows6(&p), 0, "expired");
}

/// Found in review: the MSS a NAT66 real was told came from `MSS_TABLE`, which
/// is IPv4's (536, 1220, 1440, 1460). Common IPv6 client MSS values fall
/// between its entries: PPPoE (IPv6 MTU 1492: MSS 1432) and 6in4 tunnels
/// (MTU 1480: MSS 1420) are both rounded down to 1220, so the real sends
/// such clients 14-15% more segments than it would without the proxy; and
/// a SYN without an MSS option gets IPv4's default 536 instead of IPv6's
/// 1220 (RFC 8200 §8.3, RFC 9293 §3.7.1). Linux's IPv6 cookies use their
/// own table (1220, 1420, 1440, 8940) for this reason.
#[test]
fn an_ipv6_clients_mss_reaches_the_real_without_ipv4_rounding() {
    for (client_mss, want_at_least) in [(Some(1432), 1420), (Some(1420), 1420), (None, 1220)] {
        let (snap, mut p) = setup("on", 64);
        let syn = Seg {
            options: opts(TcpOptions {
                mss: client_mss,
                wscale: Some(7),
                sack_permitted: true,
                timestamps: Some(Timestamps { val: 5000, ecr: 0 }),
            }),
            ..client_syn(ISN)
        };
        let synack = run(&mut p, &snap, &syn, NOW).expect("SYN-ACK");
        let to_real =
            run(&mut p, &snap, &client_ack(synack.seq), NOW + 1).expect("SYN to the real");
        let mss = to_real.opts().mss.expect("an MSS option");
        assert!(
            mss >= want_at_least,
            "client MSS {client_mss:?}: the real is told {mss}, want at least {want_at_least}"
        );
    }
}

/// `s`'s frame with an 8-byte Destination Options header (PadN) between
/// the IPv6 and TCP headers.
fn with_dstopts(s: &Seg) -> Vec<u8> {
    let f = s.frame();
    let mut out = f[..L4].to_vec();
    out.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
    out.extend_from_slice(&f[L4..]);
    let mut ip = Ipv6Packet::new_unchecked(&mut out[IP..L4]);
    let len = ip.payload_len();
    ip.set_payload_len(len + 8);
    ip.set_next_header(IpProtocol::Ipv6Opts);
    out
}

/// A frame the pipeline sent that may keep a Destination Options header:
/// the TCP segment read at the right offset, its checksum checked.
fn read_any(frame: &[u8]) -> Seg {
    let ip = Ipv6Packet::new_checked(&frame[IP..]).expect("IPv6");
    assert_eq!(usize::from(ip.payload_len()) + L4, frame.len());
    let l4 = if ip.next_header() == IpProtocol::Ipv6Opts {
        L4 + 8
    } else {
        L4
    };
    let t = TcpPacket::new_checked(&frame[l4..]).expect("TCP");
    assert!(
        t.verify_checksum_v6(ip.src_addr(), ip.dst_addr()),
        "TCP checksum"
    );
    Seg {
        src: (ip.src_addr(), t.src_port()),
        dst: (ip.dst_addr(), t.dst_port()),
        flags: t.flags().bits(),
        seq: t.seq_number(),
        ack: t.ack_number(),
        window: t.window(),
        options: t.options().to_vec(),
        payload: t.payload().to_vec(),
        hops: ip.hop_limit(),
    }
}

fn run_raw(p: &mut Pipeline, snap: &Snapshot, frame: &[u8], now: u32) -> Result<Seg, Verdict> {
    let mut b = VecBuf::from_bytes(frame);
    match p.process(snap, 0, &mut b, now) {
        Verdict::Transmit(0) => Ok(read_any(b.data())),
        v => Err(v),
    }
}

#[test]
fn client_segments_with_destination_options_go_through_the_proxy() {
    let (snap, mut p) = setup("on", 64);
    let synack = run_raw(&mut p, &snap, &with_dstopts(&client_syn(ISN)), NOW).expect("SYN-ACK");
    assert_eq!(synack.flags, SYNACK);
    let cookie = synack.seq;
    let syn = run_raw(&mut p, &snap, &with_dstopts(&client_ack(cookie)), NOW + 1)
        .expect("SYN to the real");
    assert_eq!((syn.src, syn.dst, syn.flags, syn.seq), (c(), r(), SYN, ISN));
    let mut list = DeferList::new(DEFER_SLOTS, DEFER_MS);
    let early = Seg {
        payload: b"GET / HTTP/1.0\r\n\r\n".to_vec(),
        options: ts_opt(5002, NOW),
        ..seg(
            c(),
            v(),
            PSHACK,
            ISN.wrapping_add(1),
            cookie.wrapping_add(1),
        )
    };
    let frame = with_dstopts(&early);
    let mut b = VecBuf::from_bytes(&frame);
    let verdict = p.process(&snap, 0, &mut b, NOW + 1);
    assert_eq!(verdict, DEFERRED);
    let stats = Arc::clone(p.stats());
    assert!(list.push(b, 0, verdict, NOW + 1, &stats).is_ok());
    let ack = run(&mut p, &snap, &real_synack(), NOW + 2).expect("ACK to the real");
    assert_eq!(ack.flags, ACK);
    let mut out = Vec::new();
    list.release(&mut p, &snap, NOW + 2, |b, v| {
        out.push(match v {
            Verdict::Transmit(0) => Ok(read_any(b.data())),
            v => Err(v),
        })
    });
    let sent = out[0].clone().expect("early data to the real");
    assert_eq!(
        (sent.src, sent.dst, sent.seq, sent.ack),
        (c(), r(), ISN.wrapping_add(1), REAL_ISN + 1)
    );
    assert_eq!(
        sent.opts().timestamps,
        Some(Timestamps {
            val: 5002,
            ecr: 777
        })
    );
    let data = Seg {
        payload: b"more".to_vec(),
        options: ts_opt(5003, NOW + 10),
        ..seg(
            c(),
            v(),
            PSHACK,
            ISN.wrapping_add(19),
            cookie.wrapping_add(1),
        )
    };
    let out = run_raw(&mut p, &snap, &with_dstopts(&data), NOW + 3).expect("data to the real");
    assert_eq!((out.seq, out.ack), (ISN.wrapping_add(19), REAL_ISN + 1));
    assert_eq!(out.payload, data.payload);
}

/// Whether an IPv6 frame out of a resend pass is a RST (to a client given
/// up on), not a SYN to a real.
fn is_reset6(frame: &[u8]) -> bool {
    crate::wire::Ipv6Packet::new_checked(&frame[14..])
        .ok()
        .and_then(|ip| {
            crate::wire::TcpPacket::new_checked(ip.payload())
                .ok()
                .map(|t| t.flags())
        })
        .is_some_and(|f| f.contains(crate::wire::TcpFlags::RST))
}

/// Found in review (the IPv4 twin is in `synproxy_tests`): engaged, a
/// segment without ACK for no flow to a Maglev service made a flow and
/// reached the real.
#[test]
fn engaged_the_proxy_makes_no_flow_of_a_segment_without_ack_even_for_maglev() {
    let text = CONFIG.replace("port = 80\n", "port = 80\nscheduler = \"mh\"\n");
    let config = Config::parse(&text).unwrap();
    let snap = Snapshot::compile(&config, &[OUR], 1, &mut Ids::default(), |_, _, _| true).unwrap();
    let mut p = Pipeline::new(0, 1, 64, Arc::new(WorkerStats::default()));
    p.adopt(&snap);
    p.set_cookie_key(KEY);
    for flags in [0x00u8, 0x08, RST] {
        assert_eq!(
            run(&mut p, &snap, &seg(c(), v(), flags, 7, 7), NOW),
            Err(Verdict::Drop(DropReason::NoFlow)),
            "flags {flags:#x}"
        );
    }
    assert_eq!(p.flows6().unwrap().len(), 0);
}

/// The IPv6 side of the IPv4 test of the same name: a client that starts
/// a new handshake from the same port while its first flow waits for the
/// real gets a new flow at the ACK of its new cookie (it was stuck until
/// the proxy gave up); the old flow's deferred data goes nowhere, the
/// real's late answer to the old SYN completes nothing, and a blind ACK
/// replaces nothing.
#[test]
fn a_client_that_starts_again_while_its_flow_waits_gets_a_new_flow() {
    const ISN2: u32 = 0x7000_0000;
    let (snap, mut p) = setup("on", 64);
    let mut list = DeferList::new(DEFER_SLOTS, DEFER_MS);
    let cookie = handshake_to_real(&mut p, &snap);
    let early = Seg {
        payload: b"old request".to_vec(),
        options: ts_opt(5002, NOW),
        ..seg(
            c(),
            v(),
            PSHACK,
            ISN.wrapping_add(1),
            cookie.wrapping_add(1),
        )
    };
    assert_eq!(
        run_or_defer(&mut p, &snap, &mut list, &early, NOW + 2),
        DEFERRED
    );
    let blind = seg(c(), v(), ACK, ISN2.wrapping_add(1), cookie.wrapping_add(2));
    assert_eq!(
        run(&mut p, &snap, &blind, NOW + 3),
        dropped(DropReason::SynProxyPending)
    );
    let synack = run(&mut p, &snap, &client_syn(ISN2), NOW + 3_000).expect("a cookie");
    assert_eq!((synack.flags, synack.ack), (SYNACK, ISN2.wrapping_add(1)));
    let ack = Seg {
        options: ts_opt(6001, NOW + 3_000),
        ..seg(
            c(),
            v(),
            ACK,
            ISN2.wrapping_add(1),
            synack.seq.wrapping_add(1),
        )
    };
    let syn = run(&mut p, &snap, &ack, NOW + 3_001).expect("a SYN to the real");
    assert_eq!(
        (syn.src, syn.dst, syn.flags, syn.seq),
        (c(), r(), SYN, ISN2)
    );
    let f = only_flow(&p);
    assert!(f.is_proxy_waiting());
    assert_eq!(f.proxy_syn().map(|s| s.isn), Some(ISN2));
    assert_eq!(p.stats().syn_proxy_cookies_accepted.get(), 2);
    assert!(list.due(&p, NOW + 3_001));
    let out = release(&mut p, &snap, &mut list, NOW + 3_001);
    assert_eq!(out, vec![dropped(DropReason::SynProxyPending)]);
    assert!(list.is_empty());
    assert_eq!(
        run(&mut p, &snap, &real_synack(), NOW + 3_002),
        dropped(DropReason::SynProxyPending)
    );
    let answer = seg(r(), c(), SYNACK, REAL_ISN, ISN2.wrapping_add(1));
    let ack = run(&mut p, &snap, &answer, NOW + 3_003).expect("the ACK to the real");
    assert_eq!(
        (ack.dst, ack.flags, ack.seq),
        (r(), ACK, ISN2.wrapping_add(1))
    );
    assert_eq!(only_flow(&p).state(), FlowState::Established);
}

/// The IPv6 side of the IPv4 test of the same name: a real that answers
/// the proxy's SYN with an ACK of another connection on the tuple gets a
/// RST at the number it acknowledged (only from where it is reached), and
/// the SYN sent again opens the connection.
#[test]
fn a_real_that_acks_another_connection_gets_a_reset_and_the_syn_again() {
    let real_mac = MacAddr([2, 0, 0, 0, 0, 0x11]);
    let (snap, mut p) = setup("on", 64);
    let cookie = handshake_to_real(&mut p, &snap);
    let sent_at = NOW + 1;
    let stale = seg(r(), c(), ACK, 0x0bad_0001, 0x00c0_ffee);
    assert_eq!(
        run(&mut p, &snap, &stale, sent_at + 1),
        dropped(DropReason::SynProxyPending)
    );
    let rst = run_from(&mut p, &snap, &stale, real_mac, sent_at + 1).expect("a RST to the real");
    assert_eq!(
        (rst.src, rst.dst, rst.flags, rst.seq, rst.ack, rst.window),
        (c(), r(), RST, 0x00c0_ffee, 0, 0)
    );
    assert!(rst.payload.is_empty() && rst.options.is_empty());
    let f = only_flow(&p);
    assert!(f.is_proxy_waiting() && f.state() == crate::flow::FlowState::SynSent);
    let late = sent_at + SYN_RTO_MS;
    assert_eq!(
        run(&mut p, &snap, &client_ack(cookie), late),
        dropped(DropReason::SynProxyPending)
    );
    assert_eq!(resend(&mut p, &snap, late).len(), 1, "the SYN again");
    let ack = run_from(&mut p, &snap, &real_synack(), real_mac, late + 1).expect("ACK to the real");
    assert_eq!((ack.dst, ack.flags), (r(), ACK));
    assert_eq!(only_flow(&p).state(), crate::flow::FlowState::Established);
}
