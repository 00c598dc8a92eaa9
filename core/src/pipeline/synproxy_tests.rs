//! The SYN proxy through the whole pipeline: the handshake, translation
//! both ways, retransmissions, resets, forged ACKs, and `auto` under and
//! without pressure. Frames are built with our own wire types (these tests
//! are about state and numbers; the golden fixtures check bytes against
//! scapy).

use std::net::Ipv4Addr;
use std::sync::Arc;

use lb_config::{Config, MacAddr};

use super::{Pipeline, Verdict};
use crate::buffer::{PacketBuf, VecBuf};
use crate::flow::FlowState;
use crate::snapshot::{Ids, Snapshot};
use crate::stats::{DropReason, WorkerStats};
use crate::synproxy::{CookieKey, ADVERTISED_WSCALE};
use crate::wire::tcp_options::{emit_sack, sack_blocks, TcpOptions, Timestamps, MAX_EMIT_LEN};
use crate::wire::{
    ethernet, ipv4, tcp, EtherType, EthernetFrame, IpProtocol, Ipv4Packet, Ipv4Repr, TcpFlags,
    TcpPacket,
};

const OUR: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 10);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 100);
const REAL: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 11);
const KEY: CookieKey = CookieKey::fixed(0x5359_4e50_524f_5859, 0x7465_7374_6b65_7931);
const NOW: u32 = 100_000;

const CONFIG: &str = r#"
[workers]
lcores = [1]
[[ports]]
name = "wan"
device = "net_null0"
address = "198.18.0.2/24"
mac = "02:00:00:00:00:02"
gateway = "198.18.0.1"
[[neighbors]]
address = "198.18.0.1"
mac = "02:00:00:00:00:01"
[[neighbors]]
address = "198.18.0.11"
mac = "02:00:00:00:00:11"
[[services]]
name = "web"
vip = "198.18.1.100"
port = 80
syn_proxy = "on"
[[services.reals]]
address = "198.18.0.11"
port = 8080
"#;

fn setup(mode: &str, capacity: usize) -> (Snapshot, Pipeline) {
    setup_text(
        &CONFIG.replace("syn_proxy = \"on\"", &format!("syn_proxy = \"{mode}\"")),
        capacity,
    )
}

/// [`setup`] of a config text of its own.
fn setup_text(text: &str, capacity: usize) -> (Snapshot, Pipeline) {
    let config = Config::parse(text).unwrap();
    let snap = Snapshot::compile(&config, &[OUR], 1, &mut Ids::default(), |_, _, _| true).unwrap();
    let mut p = Pipeline::new(0, 1, capacity, Arc::new(WorkerStats::default()));
    p.adopt(&snap);
    p.set_cookie_key(KEY);
    (snap, p)
}

/// A TCP segment as the tests write and read it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seg {
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    flags: u8,
    seq: u32,
    ack: u32,
    window: u16,
    options: Vec<u8>,
    payload: Vec<u8>,
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const SYNACK: u8 = 0x12;
const RST: u8 = 0x04;
const PSHACK: u8 = 0x18;

fn seg(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), flags: u8, seq: u32, ack: u32) -> Seg {
    Seg {
        src,
        dst,
        flags,
        seq,
        ack,
        window: 502,
        options: Vec::new(),
        payload: Vec::new(),
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

/// The gateway's MAC, which every test frame carries unless said.
const GATEWAY_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);

impl Seg {
    fn frame(&self) -> Vec<u8> {
        self.frame_from(GATEWAY_MAC)
    }

    /// [`Self::frame`], sent by `mac`.
    fn frame_from(&self, mac: MacAddr) -> Vec<u8> {
        let tcp_len = tcp::HEADER_LEN + self.options.len();
        let mut f = vec![0u8; ethernet::HEADER_LEN + ipv4::HEADER_LEN + tcp_len];
        let mut eth = EthernetFrame::new_unchecked(&mut f[..]);
        eth.set_dst_addr(OUR);
        eth.set_src_addr(mac);
        eth.set_ethertype(EtherType::Ipv4);
        let mut ip = Ipv4Packet::new_unchecked(eth.payload_mut());
        Ipv4Repr {
            src: self.src.0,
            dst: self.dst.0,
            protocol: IpProtocol::Tcp,
            payload_len: tcp_len + self.payload.len(),
            ttl: 64,
            dont_fragment: true,
            ident: 7,
            dscp_ecn: 0,
        }
        .emit(&mut ip);
        f.extend_from_slice(&self.payload);
        let ip_end = f.len();
        let mut t =
            TcpPacket::new_unchecked(&mut f[ethernet::HEADER_LEN + ipv4::HEADER_LEN..ip_end]);
        t.set_src_port(self.src.1);
        t.set_dst_port(self.dst.1);
        t.set_seq_number(self.seq);
        t.set_ack_number(self.ack);
        t.set_header_len(tcp_len);
        t.set_flags(TcpFlags(self.flags));
        t.set_window(self.window);
        t.options_mut().copy_from_slice(&self.options);
        t.fill_checksum(self.src.0, self.dst.0);
        f
    }

    /// Reads a frame the pipeline sent, checking its lengths and checksums.
    fn read(frame: &[u8]) -> Seg {
        let ip = Ipv4Packet::new_checked(&frame[ethernet::HEADER_LEN..]).expect("IPv4");
        assert!(ip.verify_checksum(), "IPv4 checksum");
        assert_eq!(
            usize::from(ip.total_len()) + ethernet::HEADER_LEN,
            frame.len(),
            "no padding, no missing bytes"
        );
        assert_eq!(ip.protocol(), IpProtocol::Tcp);
        let t = TcpPacket::new_checked(ip.payload()).expect("TCP");
        assert!(
            t.verify_checksum(ip.src_addr(), ip.dst_addr()),
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
        }
    }

    fn opts(&self) -> TcpOptions {
        TcpOptions::parse(&self.options)
    }
}

/// Runs `s` through the pipeline: what was sent, or the drop reason.
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

const C: (Ipv4Addr, u16) = (CLIENT, 40000);
const V: (Ipv4Addr, u16) = (VIP, 80);
const R: (Ipv4Addr, u16) = (REAL, 8080);
const ISN: u32 = 0xfff0_0000;
const REAL_ISN: u32 = 0x1234_5678;

fn client_syn(isn: u32) -> Seg {
    Seg {
        window: 64240,
        options: opts(TcpOptions {
            mss: Some(1460),
            wscale: Some(7),
            sack_permitted: true,
            timestamps: Some(Timestamps { val: 5000, ecr: 0 }),
        }),
        ..seg(C, V, SYN, isn, 0)
    }
}

/// The client's SYN, the cookie SYN-ACK, the client's ACK and the SYN to
/// the real: returns the cookie.
fn handshake_to_real(p: &mut Pipeline, snap: &Snapshot) -> u32 {
    handshake_to_real_frame(p, snap).0
}

/// The client's ACK of [`handshake_to_real`] (cookie `cookie`).
fn client_ack(cookie: u32) -> Seg {
    Seg {
        options: ts_opt(5001, NOW),
        ..seg(C, V, ACK, ISN.wrapping_add(1), cookie.wrapping_add(1))
    }
}

/// [`handshake_to_real`], which also returns the frame of the SYN to the
/// real, as sent.
fn handshake_to_real_frame(p: &mut Pipeline, snap: &Snapshot) -> (u32, Vec<u8>) {
    let synack = run(p, snap, &client_syn(ISN), NOW).expect("SYN-ACK");
    let cookie = synack.seq;
    let mut b = VecBuf::from_bytes(&client_ack(cookie).frame());
    assert_eq!(p.process(snap, 0, &mut b, NOW + 1), Verdict::Transmit(0));
    let syn = Seg::read(b.data());
    assert_eq!((syn.src, syn.dst, syn.flags), (C, R, SYN));
    (cookie, b.data().to_vec())
}

/// [`handshake_to_real`], then the real's SYN-ACK (window scale 5,
/// TSval 777) and the ACK to the real: returns the cookie.
fn established(p: &mut Pipeline, snap: &Snapshot) -> u32 {
    established_from(p, snap, GATEWAY_MAC)
}

/// [`established`], the real's SYN-ACK sent by `mac`.
fn established_from(p: &mut Pipeline, snap: &Snapshot, mac: MacAddr) -> u32 {
    let cookie = handshake_to_real(p, snap);
    let real_synack = Seg {
        window: 65160,
        options: opts(TcpOptions {
            mss: Some(1460),
            wscale: Some(5),
            sack_permitted: true,
            timestamps: Some(Timestamps {
                val: 777,
                ecr: 5001,
            }),
        }),
        ..seg(R, C, SYNACK, REAL_ISN, ISN.wrapping_add(1))
    };
    let ack = run_from(p, snap, &real_synack, mac, NOW + 2).expect("ACK to the real");
    assert_eq!((ack.src, ack.dst, ack.flags), (C, R, ACK));
    cookie
}

fn only_flow(p: &Pipeline) -> crate::flow::Flow {
    let e = p.flows().entries();
    assert_eq!(e.len(), 1, "one flow");
    *p.flows().get(e[0])
}

/// Found in audit (time): the SYN-ACK's TSval was the worker's clock,
/// the time since the start, so anyone who sent a SYN with timestamps
/// learned the box's uptime (and when it last restarted). It is the clock
/// plus an offset keyed per address pair (`CookieKey::ts_offset`): two
/// clients asking at once get unrelated values, while one client's
/// TSvals still grow with the clock (PAWS across its connections).
#[test]
fn the_syn_acks_tsval_tells_no_uptime() {
    let (snap, mut p) = setup("on", 64);
    let tsval = |p: &mut Pipeline, client: Ipv4Addr, now: u32| {
        let mut syn = client_syn(ISN);
        syn.src = (client, 40000);
        let synack = run(p, &snap, &syn, now).expect("SYN-ACK");
        synack.opts().timestamps.expect("timestamps").val
    };
    let a = tsval(&mut p, CLIENT, NOW);
    assert_ne!(a, NOW, "not the clock");
    let other = Ipv4Addr::new(198, 19, 100, 2);
    let b = tsval(&mut p, other, NOW);
    assert_ne!(a, b, "another client, another offset");
    assert_eq!(tsval(&mut p, CLIENT, NOW + 1_000), a.wrapping_add(1_000));
}

#[test]
fn the_handshake_goes_through_the_proxy_and_both_directions_are_translated() {
    let (snap, mut p) = setup("on", 64);
    // 1. SYN: answered by the appliance, nothing kept.
    let synack = run(&mut p, &snap, &client_syn(ISN), NOW).expect("SYN-ACK");
    assert_eq!((synack.src, synack.dst), (V, C));
    assert_eq!(synack.flags, SYNACK);
    assert_eq!(synack.ack, ISN.wrapping_add(1));
    assert!(synack.payload.is_empty());
    assert_eq!(
        synack.opts(),
        TcpOptions {
            mss: Some(1460),
            wscale: Some(ADVERTISED_WSCALE),
            sack_permitted: true,
            timestamps: Some(Timestamps {
                val: NOW.wrapping_add(KEY.ts_offset(CLIENT, VIP)),
                ecr: 5000
            }),
        }
    );
    assert_eq!(p.flows().len(), 0, "no state for a SYN");
    assert_eq!(p.stats().syn_proxy_cookies_sent.get(), 1);
    let cookie = synack.seq;

    // 2. The client's ACK becomes the SYN to the real.
    let ack = Seg {
        window: 502,
        options: ts_opt(5001, NOW),
        ..seg(C, V, ACK, ISN.wrapping_add(1), cookie.wrapping_add(1))
    };
    let syn = run(&mut p, &snap, &ack, NOW + 1).expect("SYN to the real");
    assert_eq!((syn.src, syn.dst, syn.flags), (C, R, SYN));
    assert_eq!((syn.seq, syn.ack), (ISN, 0), "the client's own ISN");
    assert_eq!(syn.window, 64256, "502 << 7: a SYN's window is unscaled");
    assert_eq!(
        syn.opts(),
        TcpOptions {
            mss: Some(1460),
            wscale: Some(7),
            sack_permitted: true,
            timestamps: Some(Timestamps { val: 5001, ecr: 0 }),
        }
    );
    let f = only_flow(&p);
    assert!(f.is_proxied() && f.is_proxy_waiting());
    assert_eq!(f.state(), FlowState::SynSent);
    assert_eq!(
        f.trust(),
        crate::flow::Trust::Unconfirmed,
        "until the real answers"
    );
    assert_eq!(p.stats().syn_proxy_cookies_accepted.get(), 1);

    // 3. Data before the real answered: deferred, untouched (the tests of
    //    `DeferList` below follow it further).
    let mut list = DeferList::new(DEFER_SLOTS, DEFER_MS);
    let early = Seg {
        payload: b"GET / HTTP/1.0\r\n\r\n".to_vec(),
        options: ts_opt(5002, NOW),
        ..seg(C, V, PSHACK, ISN.wrapping_add(1), cookie.wrapping_add(1))
    };
    assert_eq!(
        run_or_defer(&mut p, &snap, &mut list, &early, NOW + 1),
        DEFERRED
    );

    // 4. The real's SYN-ACK becomes the ACK to the real.
    let real_synack = Seg {
        window: 65160,
        options: opts(TcpOptions {
            mss: Some(1400),
            wscale: Some(5),
            sack_permitted: true,
            timestamps: Some(Timestamps {
                val: 777,
                ecr: 5001,
            }),
        }),
        ..seg(R, C, SYNACK, REAL_ISN, ISN.wrapping_add(1))
    };
    let ack = run(&mut p, &snap, &real_synack, NOW + 2).expect("ACK to the real");
    assert_eq!((ack.src, ack.dst, ack.flags), (C, R, ACK));
    assert_eq!((ack.seq, ack.ack), (ISN.wrapping_add(1), REAL_ISN + 1));
    assert_eq!(
        ack.window, 502,
        "the client's window, in the client's scale"
    );
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
    assert_eq!(f.trust(), crate::flow::Trust::Confirmed, "a confirmed flow");
    let e = p.flows().entries()[0];
    assert_eq!(
        p.flows().trust(e),
        crate::flow::Trust::Confirmed,
        "and classed so"
    );
    // The pass after the burst sends the deferred data on.
    let sent = release(&mut p, &snap, &mut list, NOW + 2);
    assert!(matches!(&sent[..], [Ok(s)] if s.payload == early.payload && s.dst == R));

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
        payload: b"GET / HTTP/1.0\r\n\r\n".to_vec(),
        options: o,
        ..seg(C, V, PSHACK, ISN.wrapping_add(1), cookie.wrapping_add(1))
    };
    let out = run(&mut p, &snap, &data, NOW + 3).expect("data to the real");
    assert_eq!((out.src, out.dst), (C, R));
    assert_eq!(out.seq, ISN.wrapping_add(1), "the client's numbers pass");
    assert_eq!(out.ack, REAL_ISN + 1);
    assert_eq!(out.window, 502);
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
        ..seg(R, C, PSHACK, REAL_ISN + 1, ISN.wrapping_add(1) + 18)
    };
    let back = run(&mut p, &snap, &reply, NOW + 4).expect("data to the client");
    assert_eq!((back.src, back.dst), (V, C));
    assert_eq!(back.seq, cookie.wrapping_add(1), "in the client's view");
    assert_eq!(back.ack, ISN.wrapping_add(1) + 18);
    assert_eq!(back.window, 250, "1000 << 5 >> 7");
    assert_eq!(
        back.opts().timestamps,
        Some(Timestamps {
            val: NOW + 3,
            ecr: 5003
        })
    );
    assert_eq!(back.payload, reply.payload);
}

#[test]
fn retransmissions_make_no_second_flow() {
    let (snap, mut p) = setup("on", 64);
    let a = run(&mut p, &snap, &client_syn(ISN), NOW).unwrap();
    let b = run(&mut p, &snap, &client_syn(ISN), NOW + 5).unwrap();
    assert_eq!(a.seq, b.seq, "the same cookie in the same period");
    assert_eq!(p.flows().len(), 0);
    let cookie = handshake_to_real(&mut p, &snap);
    assert_eq!(cookie, a.seq);
    // The ACK again while waiting: no second flow, no second SYN.
    let ack = Seg {
        options: ts_opt(5001, NOW),
        ..seg(C, V, ACK, ISN.wrapping_add(1), cookie.wrapping_add(1))
    };
    assert_eq!(
        run(&mut p, &snap, &ack, NOW + 1),
        dropped(DropReason::SynProxyPending)
    );
    // The SYN again while waiting: answered with a cookie again.
    let again = run(&mut p, &snap, &client_syn(ISN), NOW + 1).expect("SYN-ACK again");
    assert_eq!((again.flags, again.seq), (SYNACK, cookie));
    assert_eq!(p.flows().len(), 1);
    assert_eq!(p.stats().syn_proxy_cookies_accepted.get(), 1);
    assert_eq!(p.stats().syn_proxy_cookies_sent.get(), 4);
    // A real's segment that is no SYN-ACK while waiting: not passed on.
    let stray = seg(R, C, ACK, REAL_ISN, ISN.wrapping_add(1));
    assert_eq!(
        run(&mut p, &snap, &stray, NOW + 1),
        dropped(DropReason::SynProxyPending)
    );
    // A SYN-ACK that does not acknowledge our SYN: refused.
    let wrong = seg(R, C, SYNACK, REAL_ISN, ISN.wrapping_add(99));
    assert_eq!(
        run(&mut p, &snap, &wrong, NOW + 1),
        dropped(DropReason::SynProxyPending)
    );
    assert!(only_flow(&p).is_proxy_waiting());
}

#[test]
fn a_reset_in_the_window_closes_a_proxied_flow_and_one_outside_does_not() {
    for from_client in [true, false] {
        let (snap, mut p) = setup("on", 64);
        let cookie = established(&mut p, &snap);
        super::tests::assert_real_gauges_match_tables(&p, &snap);
        let far = if from_client {
            seg(C, V, RST, ISN.wrapping_add(1 << 30), 0)
        } else {
            seg(R, C, RST, REAL_ISN.wrapping_add(1 << 30), 0)
        };
        // Forwarded (the receiver judges it too) but believed by nobody here.
        run(&mut p, &snap, &far, NOW + 3).expect("forwarded");
        assert_eq!(
            only_flow(&p).state(),
            FlowState::Established,
            "from client: {from_client}"
        );
        let near = if from_client {
            seg(C, V, RST, ISN.wrapping_add(1), 0)
        } else {
            seg(R, C, RST, REAL_ISN + 1, 0)
        };
        let out = run(&mut p, &snap, &near, NOW + 4).expect("forwarded");
        if from_client {
            assert_eq!((out.dst, out.seq), (R, ISN.wrapping_add(1)));
        } else {
            assert_eq!(
                (out.dst, out.seq),
                (C, cookie.wrapping_add(1)),
                "in the client's view"
            );
        }
        assert_eq!(only_flow(&p).state(), FlowState::Closed);
        // Through the proxy's own paths too, the gauges follow the state.
        super::tests::assert_real_gauges_match_tables(&p, &snap);
        assert_eq!(p.stats().real(only_flow(&p).real_id).inactive.get(), 1);
    }
}

/// A stranger who knows a proxied flow's tuple forges the real's RST,
/// FIN and SYN from the internet (through the router: its MAC) at
/// exactly the number the real stands at. None is believed: each still
/// reaches the client, which judges it by its own window, and the flow
/// stays established. The real's own RST closes it, from where its
/// SYN-ACK came (here another MAC than its ARP answer, as bonding
/// balance-alb gives) or from its ARP answer's MAC (found in review: a
/// forged real RST within the window closed a proxied flow from
/// anywhere).
#[test]
fn a_forged_real_rst_fin_or_syn_from_elsewhere_leaves_a_proxied_flow_alone() {
    const FIN: u8 = 0x01;
    let its_own = MacAddr([2, 0, 0, 0, 0, 0x12]);
    let arp_answer = MacAddr([2, 0, 0, 0, 0, 0x11]);
    for closer in [its_own, arp_answer] {
        let (snap, mut p) = setup("on", 64);
        established_from(&mut p, &snap, its_own);
        for flags in [RST, FIN | ACK, SYN] {
            let forged = seg(R, C, flags, REAL_ISN + 1, ISN.wrapping_add(1));
            run(&mut p, &snap, &forged, NOW + 3).expect("on to the client");
            assert_eq!(only_flow(&p).state(), FlowState::Established, "{flags:#x}");
        }
        assert_eq!(p.stats().nat_replies_unvouched.get(), 3);
        let rst = seg(R, C, RST, REAL_ISN + 1, 0);
        run_from(&mut p, &snap, &rst, closer, NOW + 4).expect("forwarded");
        assert_eq!(only_flow(&p).state(), FlowState::Closed, "{closer:?}");
        assert_eq!(p.stats().nat_replies_unvouched.get(), 3);
    }
}

/// A re-send named while the flow waited, given back unsent after the
/// real answered: the flow's fields are the answered flow's now (its
/// real's sender mark in `children`), and nothing of them is undone, even
/// when the mark's second byte reads as the re-send's count (found in
/// review: only the count was compared).
#[test]
fn a_resend_given_back_after_the_answer_leaves_the_flow_alone() {
    // A sender whose mark's second byte is 1, the count of the first
    // re-send.
    let mac = (0..=255u8)
        .flat_map(|a| (0..=255u8).map(move |b| MacAddr([2, 0, 0, 0, a, b])))
        .find(|m| (crate::flow::sender_mark(0, m.0) >> 8) as u8 == 1)
        .expect("one in 256 has it");
    let (snap, mut p) = setup("on", 64);
    let cookie = handshake_to_real(&mut p, &snap);
    let late = NOW + 1 + SYN_RTO_MS;
    assert_eq!(
        run(&mut p, &snap, &client_ack(cookie), late),
        dropped(DropReason::SynProxyPending)
    );
    let due: Vec<_> = p.conntrack.take_syn_retries().iter().collect();
    assert_eq!(due.len(), 1, "named");
    let ack = run_from(&mut p, &snap, &real_synack(), mac, late + 1).expect("ACK to the real");
    assert_eq!(ack.flags, ACK);
    let answered = only_flow(&p);
    assert_eq!(answered.children, crate::flow::sender_mark(0, mac.0));
    assert_eq!(answered.syn_retries(), 1, "what the count would read");
    p.conntrack.syn_resend_unsent(due[0]);
    assert_eq!(only_flow(&p), answered);
}

#[test]
fn a_real_that_refuses_resets_the_client_at_the_number_it_expects() {
    let (snap, mut p) = setup("on", 64);
    let cookie = handshake_to_real(&mut p, &snap);
    // Waiting for the real: not established, inactive.
    super::tests::assert_real_gauges_match_tables(&p, &snap);
    assert_eq!(p.stats().real(only_flow(&p).real_id).inactive.get(), 1);
    let rst = seg(R, C, RST | ACK, 0, ISN.wrapping_add(1));
    let out = run(&mut p, &snap, &rst, NOW + 2).expect("RST to the client");
    assert_eq!((out.src, out.dst, out.flags), (V, C, RST | ACK));
    assert_eq!(out.seq, cookie.wrapping_add(1));
    assert_eq!(only_flow(&p).state(), FlowState::Closed);
}

#[test]
fn a_spoofed_ack_with_a_bad_cookie_is_dropped_and_counted() {
    let (snap, mut p) = setup("on", 64);
    let synack = run(&mut p, &snap, &client_syn(ISN), NOW).unwrap();
    for bad in [synack.seq ^ 0x100, synack.seq ^ 1, 12345] {
        let ack = seg(C, V, ACK, ISN.wrapping_add(1), bad.wrapping_add(1));
        assert_eq!(
            run(&mut p, &snap, &ack, NOW),
            dropped(DropReason::SynProxyBadCookie)
        );
    }
    // The right cookie from another port, or with another ISN: refused.
    let other_port = seg(
        (CLIENT, 40001),
        V,
        ACK,
        ISN.wrapping_add(1),
        synack.seq.wrapping_add(1),
    );
    assert_eq!(
        run(&mut p, &snap, &other_port, NOW),
        dropped(DropReason::SynProxyBadCookie)
    );
    let other_isn = seg(C, V, ACK, ISN.wrapping_add(2), synack.seq.wrapping_add(1));
    assert_eq!(
        run(&mut p, &snap, &other_isn, NOW),
        dropped(DropReason::SynProxyBadCookie)
    );
    // Two periods later the right one is refused too.
    let late = seg(C, V, ACK, ISN.wrapping_add(1), synack.seq.wrapping_add(1));
    let two_periods = NOW + 2 * crate::synproxy::PERIOD_MS;
    assert_eq!(
        run(&mut p, &snap, &late, two_periods),
        dropped(DropReason::SynProxyBadCookie)
    );
    assert_eq!(p.flows().len(), 0);
    assert_eq!(p.stats().syn_proxy_cookies_accepted.get(), 0);
    // One period later it is still good.
    let one_period = NOW + crate::synproxy::PERIOD_MS;
    assert!(run(&mut p, &snap, &late, one_period).is_ok());
    assert_eq!(p.flows().len(), 1);
}

#[test]
fn auto_engages_under_pressure_only() {
    let (snap, mut p) = setup("auto", 8);
    // Below half the table: SYNs go to the real and make flows.
    for port in 1000..1004u16 {
        let out = run(&mut p, &snap, &seg((CLIENT, port), V, SYN, 1, 0), NOW).unwrap();
        assert_eq!((out.dst, out.flags), (R, SYN), "port {port}");
    }
    assert!(!p.syn_pressure() || p.flows().len() >= 4);
    assert_eq!(p.flows().len(), 4);
    // Half full: the next SYN is answered by the proxy.
    let out = run(&mut p, &snap, &seg((CLIENT, 1004), V, SYN, 1, 0), NOW).unwrap();
    assert_eq!((out.src, out.flags), (V, SYNACK));
    assert_eq!(p.flows().len(), 4);
    assert!(p.syn_pressure());
    // Its ACK makes a proxied flow.
    let ack = seg((CLIENT, 1004), V, ACK, 2, out.seq.wrapping_add(1));
    let syn = run(&mut p, &snap, &ack, NOW).unwrap();
    assert_eq!((syn.dst, syn.flags), (R, SYN));
    assert_eq!(p.flows().len(), 5);
    // Resets bring the table below 3/8 (3 of 8): released.
    for port in 1000..1003u16 {
        let rst = seg((CLIENT, port), V, RST, 2, 0);
        run(&mut p, &snap, &rst, NOW).unwrap();
        // A new SYN on the closed tuple replaces the flow: use a sweep.
    }
    p.sweep(&snap, NOW + 60_000, 64);
    assert!(p.flows().len() < 3, "{}", p.flows().len());
    assert!(!p.syn_pressure());
    let out = run(
        &mut p,
        &snap,
        &seg((CLIENT, 2000), V, SYN, 1, 0),
        NOW + 60_000,
    )
    .unwrap();
    assert_eq!((out.dst, out.flags), (R, SYN), "released");
}

#[test]
fn auto_on_standby_passes_what_it_did_before() {
    let (snap, mut p) = setup("auto", 64);
    // A mid-flow ACK with no flow: no_flow, as without the proxy.
    let ack = seg(C, V, ACK, 5, 5);
    assert_eq!(run(&mut p, &snap, &ack, NOW), dropped(DropReason::NoFlow));
    let (snap, mut p) = setup("off", 64);
    assert_eq!(run(&mut p, &snap, &ack, NOW), dropped(DropReason::NoFlow));
    let out = run(&mut p, &snap, &client_syn(ISN), NOW).unwrap();
    assert_eq!((out.dst, out.flags), (R, SYN), "off: SYNs go to the real");
    assert!(!only_flow(&p).is_proxied());
}

#[test]
fn hostile_options_in_a_syn_never_panic_and_still_get_an_answer() {
    let (snap, mut p) = setup("on", 64);
    for o in [
        vec![2, 0, 0, 0],
        vec![3, 1, 0, 0],
        vec![8, 40, 0, 0],
        vec![0, 0, 0, 0],
        vec![2, 4, 0, 0, 1, 1, 3, 3, 200, 4, 2, 8],
        vec![8, 10, 1, 2, 3, 4, 5, 6, 7, 8, 1, 1],
    ] {
        let s = Seg {
            options: o,
            ..seg(C, V, SYN, ISN, 0)
        };
        let out = run(&mut p, &snap, &s, NOW).expect("an answer");
        assert_eq!(out.flags, SYNACK);
        assert_eq!(out.options.len() % 4, 0);
    }
    // A SYN with payload: the SYN-ACK carries none.
    let s = Seg {
        payload: vec![0xaa; 100],
        ..seg(C, V, SYN, ISN, 0)
    };
    assert!(run(&mut p, &snap, &s, NOW).unwrap().payload.is_empty());
}

#[test]
fn a_real_without_window_scale_gets_windows_in_its_scale() {
    let (snap, mut p) = setup("on", 64);
    let cookie = handshake_to_real(&mut p, &snap);
    let real_synack = Seg {
        window: 29200,
        options: opts(TcpOptions {
            mss: Some(1460),
            ..TcpOptions::default()
        }),
        ..seg(R, C, SYNACK, REAL_ISN, ISN.wrapping_add(1))
    };
    let ack = run(&mut p, &snap, &real_synack, NOW + 2).unwrap();
    assert_eq!(ack.window, 64256, "502 << 7: the real reads it unscaled");
    assert_eq!(ack.opts().timestamps, None, "the real has none");
    let data = Seg {
        window: 100,
        ..seg(C, V, ACK, ISN.wrapping_add(1), cookie.wrapping_add(1))
    };
    assert_eq!(run(&mut p, &snap, &data, NOW + 3).unwrap().window, 12800);
    let reply = Seg {
        window: 29200,
        ..seg(R, C, ACK, REAL_ISN + 1, ISN.wrapping_add(1))
    };
    assert_eq!(
        run(&mut p, &snap, &reply, NOW + 3).unwrap().window,
        228,
        "29200 >> 7"
    );
}

#[test]
fn segments_the_proxy_terminates_must_have_good_checksums() {
    let (snap, mut p) = setup("on", 64);
    let mut f = client_syn(ISN).frame();
    let last = f.len() - 1;
    f[last] ^= 0xff; // an option byte: the TCP checksum no longer verifies
    let mut b = VecBuf::from_bytes(&f);
    assert_eq!(
        p.process(&snap, 0, &mut b, NOW),
        Verdict::Drop(DropReason::BadL4Checksum)
    );
    assert_eq!(p.stats().syn_proxy_cookies_sent.get(), 0);
    // On standby a broken mid-flow ACK is what it was without the proxy.
    let (snap, mut p) = setup("auto", 64);
    let mut f = seg(C, V, ACK, 5, 5).frame();
    let last = f.len() - 1;
    f[last] ^= 0xff;
    let mut b = VecBuf::from_bytes(&f);
    assert_eq!(
        p.process(&snap, 0, &mut b, NOW),
        Verdict::Drop(DropReason::NoFlow)
    );
}

/// Found by fuzzing: a SYN-ACK with FIN set moved a waiting flow to
/// FIN-WAIT and the proxy still acknowledged it as the real's answer.
#[test]
fn only_a_plain_syn_ack_to_an_opening_flow_completes_the_handshake() {
    let (snap, mut p) = setup("on", 64);
    handshake_to_real(&mut p, &snap);
    let odd = seg(R, C, SYNACK | 0x01, REAL_ISN, ISN.wrapping_add(1));
    assert_eq!(
        run(&mut p, &snap, &odd, NOW + 2),
        dropped(DropReason::SynProxyPending)
    );
    assert!(only_flow(&p).is_proxy_waiting());
    // The client gives up before the real answers: its RST goes to the
    // real, and the real's late SYN-ACK is not acknowledged.
    let rst = seg(C, V, RST, ISN.wrapping_add(1), 0);
    let out = run(&mut p, &snap, &rst, NOW + 3).expect("the RST to the real");
    assert_eq!((out.dst, out.flags), (R, RST));
    assert_eq!(only_flow(&p).state(), FlowState::Closed);
    let late = seg(R, C, SYNACK, REAL_ISN, ISN.wrapping_add(1));
    assert_eq!(
        run(&mut p, &snap, &late, NOW + 4),
        dropped(DropReason::SynProxyPending)
    );
}

/// Found by review: a blind RST to a flow waiting for its real's SYN-ACK
/// moved the flow's age, so a stranger could keep it alive, and went on to
/// the real. Only a RST near the client's ISN + 1 is the client's.
#[test]
fn a_blind_rst_neither_closes_nor_refreshes_a_waiting_flow() {
    let (snap, mut p) = setup("on", 64);
    handshake_to_real(&mut p, &snap);
    let before = only_flow(&p).last_seen;
    for far in [1u32 << 30, 1 << 17, (1u32 << 17).wrapping_neg()] {
        let blind = seg(C, V, RST, ISN.wrapping_add(1).wrapping_add(far), 0);
        assert_eq!(
            run(&mut p, &snap, &blind, NOW + 5000),
            dropped(DropReason::SynProxyPending),
            "{far:#x} away"
        );
    }
    let f = only_flow(&p);
    assert!(f.is_proxy_waiting());
    assert_eq!(f.state(), FlowState::SynSent);
    assert_eq!(f.last_seen, before, "the blind RSTs did not refresh it");
    // The client's own RST, a little off (reordering), still closes it.
    let own = seg(C, V, RST, ISN.wrapping_add(1).wrapping_add(100), 0);
    let out = run(&mut p, &snap, &own, NOW + 5001).expect("the RST to the real");
    assert_eq!((out.dst, out.flags), (R, RST));
    assert_eq!(only_flow(&p).state(), FlowState::Closed);
}

/// Found in review: a blind RST "from the real" (its address and port,
/// any sequence number, no ACK of our SYN) closed a flow waiting for the
/// real's SYN-ACK, and went on to the client at the number it accepts.
/// Only a RST that acknowledges our SYN is the real's answer.
#[test]
fn a_blind_rst_from_the_reals_side_neither_closes_a_waiting_flow_nor_reaches_the_client() {
    let (snap, mut p) = setup("on", 64);
    handshake_to_real(&mut p, &snap);
    for (flags, ack) in [
        (RST, 0),
        (RST, ISN.wrapping_add(1)),
        (RST | ACK, 0x0bad_f00d),
        (RST | ACK, ISN.wrapping_add(2)),
    ] {
        let blind = seg(R, C, flags, 0xdead_beef, ack);
        assert_eq!(
            run(&mut p, &snap, &blind, NOW + 5),
            dropped(DropReason::SynProxyPending),
            "flags {flags:#x} ack {ack:#x}"
        );
    }
    let f = only_flow(&p);
    assert!(f.is_proxy_waiting());
    assert_eq!(f.state(), FlowState::SynSent);
    // The real's own refusal still reaches the client.
    let rst = seg(R, C, RST | ACK, 0, ISN.wrapping_add(1));
    let out = run(&mut p, &snap, &rst, NOW + 6).expect("RST to the client");
    assert_eq!((out.src, out.dst, out.flags), (V, C, RST | ACK));
}

/// An ICMP error from the client about a segment the VIP sent it: the
/// quoted sequence number is in the client's view (the real's minus
/// delta) and goes to the real translated back.
#[test]
fn an_icmp_error_from_the_client_quotes_the_reals_sequence_number() {
    use crate::wire::{icmpv4, Icmpv4Packet, Icmpv4Type};
    let (snap, mut p) = setup("on", 64);
    let cookie = established(&mut p, &snap);
    // The quoted segment: VIP:80 -> client, seq cookie + 1 (8 bytes of TCP).
    let quote_len = ipv4::HEADER_LEN + 8;
    let msg_len = icmpv4::HEADER_LEN + quote_len;
    let mut f = vec![0u8; ethernet::HEADER_LEN + ipv4::HEADER_LEN + msg_len];
    let mut eth = EthernetFrame::new_unchecked(&mut f[..]);
    eth.set_dst_addr(OUR);
    eth.set_src_addr(MacAddr([2, 0, 0, 0, 0, 1]));
    eth.set_ethertype(EtherType::Ipv4);
    let mut ip = Ipv4Packet::new_unchecked(eth.payload_mut());
    Ipv4Repr {
        src: CLIENT,
        dst: VIP,
        protocol: IpProtocol::Icmp,
        payload_len: msg_len,
        ttl: 64,
        dont_fragment: false,
        ident: 9,
        dscp_ecn: 0,
    }
    .emit(&mut ip);
    let mut icmp = Icmpv4Packet::new_unchecked(ip.payload_mut());
    icmp.set_msg_type(Icmpv4Type::DestinationUnreachable);
    icmp.set_code(icmpv4::CODE_FRAG_NEEDED);
    icmp.clear_rest_of_header();
    icmp.set_next_hop_mtu(1400);
    let quote = icmp.payload_mut();
    Ipv4Repr {
        src: VIP,
        dst: CLIENT,
        protocol: IpProtocol::Tcp,
        payload_len: 1000,
        ttl: 63,
        dont_fragment: true,
        ident: 3,
        dscp_ecn: 0,
    }
    .emit(&mut Ipv4Packet::new_unchecked(
        &mut quote[..ipv4::HEADER_LEN],
    ));
    let mut q = TcpPacket::new_unchecked(&mut quote[ipv4::HEADER_LEN..]);
    q.set_src_port(80);
    q.set_dst_port(40000);
    q.set_seq_number(cookie.wrapping_add(1));
    icmp.fill_checksum();
    let mut b = VecBuf::from_bytes(&f);
    assert_eq!(p.process(&snap, 0, &mut b, NOW + 5), Verdict::Transmit(0));
    let out = Ipv4Packet::new_checked(&b.data()[ethernet::HEADER_LEN..]).unwrap();
    assert_eq!(out.dst_addr(), REAL);
    let msg = Icmpv4Packet::new_checked(out.payload()).unwrap();
    assert!(msg.verify_checksum());
    let quoted = &msg.payload()[ipv4::HEADER_LEN..];
    let q = TcpPacket::new_unchecked(quoted);
    assert_eq!((q.src_port(), q.dst_port()), (8080, 40000));
    assert_eq!(q.seq_number(), REAL_ISN + 1, "back in the real's space");
}

// Early data: deferred, then sent on once the real answered (`DeferList`).

use super::{DeferList, DEFER_MS, DEFER_SLOTS};
use crate::flow::synproxy::DEFER_PER_FLOW;

const DEFERRED: Verdict = Verdict::Defer {
    client_port: C.1,
    client: CLIENT,
};
const FINACK: u8 = 0x11;

/// The client's data `offset` bytes into its stream, sent before it heard
/// anything after the cookie SYN-ACK.
fn early_data(cookie: u32, offset: u32, payload: &[u8]) -> Seg {
    Seg {
        payload: payload.to_vec(),
        options: ts_opt(5002 + offset, NOW),
        ..seg(
            C,
            V,
            PSHACK,
            ISN.wrapping_add(1 + offset),
            cookie.wrapping_add(1),
        )
    }
}

/// The real's SYN-ACK of [`established`].
fn real_synack() -> Seg {
    Seg {
        window: 65160,
        options: opts(TcpOptions {
            mss: Some(1460),
            wscale: Some(5),
            sack_permitted: true,
            timestamps: Some(Timestamps {
                val: 777,
                ecr: 5001,
            }),
        }),
        ..seg(R, C, SYNACK, REAL_ISN, ISN.wrapping_add(1))
    }
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
    if let Verdict::Defer { .. } = v {
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

#[test]
fn early_data_is_deferred_and_sent_on_translated_once_the_real_answers() {
    let (snap, mut p) = setup("on", 64);
    let mut list = DeferList::new(DEFER_SLOTS, DEFER_MS);
    let cookie = handshake_to_real(&mut p, &snap);
    let early = early_data(cookie, 0, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(
        run_or_defer(&mut p, &snap, &mut list, &early, NOW + 1),
        DEFERRED
    );
    assert_eq!(p.stats().syn_proxy_deferred.get(), 1);
    assert!(only_flow(&p).is_proxy_waiting());
    // While the flow waits, a pass has nothing to do; a forced one (after
    // a reload) keeps it, and does not count it again.
    assert!(!list.due(&p, NOW + 1));
    assert!(release(&mut p, &snap, &mut list, NOW + 1).is_empty());
    list.recheck();
    assert!(list.due(&p, NOW + 1));
    assert!(release(&mut p, &snap, &mut list, NOW + 1).is_empty());
    assert_eq!(list.len(), 1);
    assert_eq!(p.stats().syn_proxy_deferred.get(), 1);

    // The real answers: its SYN-ACK becomes the ACK to the real, and the
    // pass after the burst sends the data on, translated.
    let ack = run(&mut p, &snap, &real_synack(), NOW + 2).expect("ACK to the real");
    assert_eq!((ack.dst, ack.flags), (R, ACK));
    assert!(list.due(&p, NOW + 2));
    let out = release(&mut p, &snap, &mut list, NOW + 2);
    assert_eq!(out.len(), 1, "{out:?}");
    let sent = out[0].clone().expect("the data to the real");
    assert_eq!((sent.src, sent.dst, sent.flags), (C, R, PSHACK));
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
    assert!(!list.due(&p, NOW + 2));
    // Exactly what the same segment becomes when it arrives now.
    assert_eq!(run(&mut p, &snap, &early, NOW + 2), Ok(sent));
    assert_eq!(only_flow(&p).state(), FlowState::Established);
    assert_eq!(p.stats().dropped(DropReason::SynProxyPending), 0);
    assert_eq!(
        p.stats().real(0).packets.get(),
        4,
        "SYN, ACK, the data once, its repeat"
    );
}

#[test]
fn a_waiting_flow_defers_only_its_share_of_plausible_data() {
    let (snap, mut p) = setup("on", 64);
    let cookie = handshake_to_real(&mut p, &snap);
    let (isn1, ack) = (ISN.wrapping_add(1), cookie.wrapping_add(1));
    let data = |s: Seg| Seg {
        payload: vec![0x55; 10],
        ..s
    };
    for (what, s) in [
        ("no data (the ACK again)", seg(C, V, ACK, isn1, ack)),
        (
            "an ACK number that is not the cookie's",
            data(seg(C, V, PSHACK, isn1, ack.wrapping_add(1))),
        ),
        (
            "bytes beyond the window our SYN-ACK offered",
            data(seg(C, V, PSHACK, isn1.wrapping_add(64231), ack)),
        ),
        ("no ACK flag", data(seg(C, V, 0x08, isn1, ack))),
    ] {
        assert_eq!(
            run(&mut p, &snap, &s, NOW + 1),
            dropped(DropReason::SynProxyPending),
            "{what}"
        );
    }
    // Data up to the window's last byte, and a FIN: deferred, up to the
    // flow's share.
    assert_eq!(DEFER_PER_FLOW, 2);
    let last = data(seg(C, V, PSHACK, isn1.wrapping_add(64230), ack));
    assert_eq!(run(&mut p, &snap, &last, NOW + 1), Err(DEFERRED));
    let fin = seg(C, V, FINACK, isn1, ack);
    assert_eq!(run(&mut p, &snap, &fin, NOW + 1), Err(DEFERRED));
    assert_eq!(
        run(&mut p, &snap, &early_data(cookie, 0, b"x"), NOW + 1),
        dropped(DropReason::SynProxyPending),
        "beyond the flow's share"
    );
    let f = only_flow(&p);
    assert!(f.is_proxy_waiting() && f.state() == FlowState::SynSent);
}

#[test]
fn the_list_keeps_a_bounded_number_for_a_bounded_time_and_counts_the_rest() {
    let (snap, mut p) = setup("on", 64);
    let stats = Arc::clone(p.stats());
    let mut list = DeferList::new(1, DEFER_MS);
    let cookie = handshake_to_real(&mut p, &snap);
    let first = early_data(cookie, 0, b"first ");
    assert_eq!(
        run_or_defer(&mut p, &snap, &mut list, &first, NOW + 1),
        DEFERRED
    );
    // The flow's second finds every slot taken: dropped, as before.
    let mut b = VecBuf::from_bytes(&early_data(cookie, 6, b"second").frame());
    let v = p.process(&snap, 0, &mut b, NOW + 1);
    assert_eq!(v, DEFERRED);
    assert!(list.push(b, 0, v, NOW + 1, &stats).is_err());
    assert_eq!(stats.syn_proxy_deferred.get(), 1, "not counted as deferred");
    // (The caller counts what the list gives back or releases as dropped,
    // as the worker counts any drop verdict.)
    // Kept up to its age limit and not a millisecond longer.
    let limit = NOW + 1 + DEFER_MS;
    assert!(!list.due(&p, limit));
    assert!(release(&mut p, &snap, &mut list, limit).is_empty());
    assert!(list.due(&p, limit + 1));
    assert_eq!(
        release(&mut p, &snap, &mut list, limit + 1),
        vec![dropped(DropReason::SynProxyPending)]
    );
    assert!(list.is_empty());
    // A real that answers after that: the client's retransmission, after
    // the next pass, goes straight through.
    run(&mut p, &snap, &real_synack(), limit + 2).expect("ACK to the real");
    assert!(release(&mut p, &snap, &mut list, limit + 2).is_empty());
    let again = run(&mut p, &snap, &first, limit + 3).expect("the data to the real");
    assert_eq!((again.dst, again.payload), (R, first.payload));
    // A worker that stops frees what it still keeps.
    let cookie2 = {
        let (snap2, mut p2) = setup("on", 64);
        let c = handshake_to_real(&mut p2, &snap2);
        let mut l2 = DeferList::new(4, DEFER_MS);
        run_or_defer(&mut p2, &snap2, &mut l2, &early_data(c, 0, b"x"), NOW + 1);
        assert_eq!(l2.drain().count(), 1);
        assert!(l2.is_empty());
        c
    };
    assert_eq!(cookie2, cookie, "the same cookie in both lives");
}

#[test]
fn segments_after_the_answer_wait_behind_the_deferred_ones() {
    let (snap, mut p) = setup("on", 64);
    let mut list = DeferList::new(DEFER_SLOTS, DEFER_MS);
    let cookie = handshake_to_real(&mut p, &snap);
    let first = early_data(cookie, 0, b"first ");
    assert_eq!(
        run_or_defer(&mut p, &snap, &mut list, &first, NOW + 1),
        DEFERRED
    );
    run(&mut p, &snap, &real_synack(), NOW + 2).expect("ACK to the real");
    // Later in the same burst, before the pass: behind the first, however
    // many (not counted against the flow's share).
    let second = early_data(cookie, 6, b"second");
    let third = early_data(cookie, 12, b"third ");
    for s in [&second, &third] {
        assert_eq!(run_or_defer(&mut p, &snap, &mut list, s, NOW + 2), DEFERRED);
    }
    assert_eq!(p.stats().syn_proxy_deferred.get(), 3);
    let out: Vec<Seg> = release(&mut p, &snap, &mut list, NOW + 2)
        .into_iter()
        .map(|r| r.expect("to the real"))
        .collect();
    let got: Vec<(u32, &[u8])> = out
        .iter()
        .map(|s| (s.seq.wrapping_sub(ISN), &s.payload[..]))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, &b"first "[..]),
            (7, &b"second"[..]),
            (13, &b"third "[..])
        ],
        "in the order the client sent them"
    );
    assert!(out.iter().all(|s| s.dst == R && s.ack == REAL_ISN + 1));
    // After the pass: straight through.
    let fourth = early_data(cookie, 18, b"fourth");
    let sent = run(&mut p, &snap, &fourth, NOW + 3).expect("straight to the real");
    assert_eq!(sent.payload, fourth.payload);
    assert!(list.is_empty());
}

#[test]
fn deferred_data_of_a_flow_that_closed_meanwhile_is_dropped() {
    for real_refuses in [true, false] {
        let (snap, mut p) = setup("on", 64);
        let mut list = DeferList::new(DEFER_SLOTS, DEFER_MS);
        let cookie = handshake_to_real(&mut p, &snap);
        let early = early_data(cookie, 0, b"GET");
        assert_eq!(
            run_or_defer(&mut p, &snap, &mut list, &early, NOW + 1),
            DEFERRED
        );
        let rst = if real_refuses {
            seg(R, C, RST | ACK, 0, ISN.wrapping_add(1))
        } else {
            seg(C, V, RST, ISN.wrapping_add(1), 0)
        };
        run(&mut p, &snap, &rst, NOW + 2).expect("the RST goes on");
        assert_eq!(only_flow(&p).state(), FlowState::Closed);
        assert!(list.due(&p, NOW + 2), "real refuses: {real_refuses}");
        assert_eq!(
            release(&mut p, &snap, &mut list, NOW + 2),
            vec![dropped(DropReason::SynProxyPending)],
            "real refuses: {real_refuses}"
        );
    }
}

#[test]
fn a_deferred_segment_whose_flow_is_gone_makes_no_flow() {
    let (snap, mut p) = setup("on", 64);
    let cookie = handshake_to_real(&mut p, &snap);
    let early = early_data(cookie, 0, b"GET");
    // Its flow swept away (a worker that lost it, the same key).
    let (snap, mut p) = setup("on", 64);
    let mut b = VecBuf::from_bytes(&early.frame());
    assert_eq!(
        p.process_deferred(&snap, 0, &mut b, NOW + 2),
        Verdict::Drop(DropReason::SynProxyPending)
    );
    assert_eq!(p.flows().len(), 0);
    // Where a segment that arrives takes the cookie it acknowledges for a
    // connection (and becomes its SYN to the real).
    let mut b = VecBuf::from_bytes(&early.frame());
    assert_eq!(p.process(&snap, 0, &mut b, NOW + 2), Verdict::Transmit(0));
    assert_eq!(p.flows().len(), 1);
}

// The SYN to the real sent again (`flow::synproxy::SynRetries`).

use crate::flow::synproxy::{SYN_RETRIES, SYN_RETRY_QUEUE, SYN_RTO_MS, SYN_WATCH_EVERY_MS};

/// The worker's pass for SYNs to send again: each frame made, as sent
/// (whole bytes), or its verdict. Buffers come dirty, as mbufs do.
fn resend(p: &mut Pipeline, snap: &Snapshot, now: u32) -> Vec<Result<Vec<u8>, Verdict>> {
    let mut out = Vec::new();
    p.resend_syns(
        snap,
        now,
        || {
            let mut b = VecBuf::from_bytes(&[0xa5; 256]);
            assert!(b.trim(256));
            Some(b)
        },
        |b, v| {
            out.push(match v {
                Verdict::Transmit(0) => Ok(b.data().to_vec()),
                v => Err(v),
            })
        },
    );
    out
}

#[test]
fn a_lost_syn_to_the_real_goes_again_after_the_interval_and_the_handshake_completes() {
    let (snap, mut p) = setup("on", 64);
    let mut list = DeferList::new(DEFER_SLOTS, DEFER_MS);
    // The SYN to the real at NOW + 1 is lost; the client sent its request
    // right after its ACK: deferred.
    let (cookie, first) = handshake_to_real_frame(&mut p, &snap);
    let sent_at = NOW + 1;
    let request = early_data(cookie, 0, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(
        run_or_defer(&mut p, &snap, &mut list, &request, sent_at),
        DEFERRED
    );
    assert!(!p.syn_resends_due(), "no segment came late enough");
    // The client's ACK again before the interval: dropped as before, and
    // nothing goes to the real.
    let ack = client_ack(cookie);
    let early = sent_at + SYN_RTO_MS - 1;
    assert_eq!(
        run(&mut p, &snap, &ack, early),
        dropped(DropReason::SynProxyPending)
    );
    assert!(!p.syn_resends_due());
    assert!(resend(&mut p, &snap, early).is_empty());
    // After it: the segment keeps its fate, and the pass after the burst
    // sends the SYN again, the same bytes as the first (IPv4 id 0, the
    // TTL and options kept in the flow).
    let late = sent_at + SYN_RTO_MS;
    assert_eq!(
        run(&mut p, &snap, &ack, late),
        dropped(DropReason::SynProxyPending)
    );
    assert!(p.syn_resends_due());
    let again = resend(&mut p, &snap, late);
    assert_eq!(again.len(), 1, "{again:?}");
    let again = again[0].clone().expect("sent");
    let (a, b) = (Seg::read(&first), Seg::read(&again));
    assert_eq!((b.src, b.dst, b.flags), (C, R, SYN));
    assert_eq!((b.seq, b.ack), (ISN, 0), "the client's ISN again");
    assert_eq!(b.window, 64256, "502 << 7, as the first");
    assert_eq!(
        b.opts(),
        TcpOptions {
            mss: Some(1460),
            wscale: Some(7),
            sack_permitted: true,
            timestamps: Some(Timestamps { val: 5001, ecr: 0 }),
        },
        "the first SYN's options, the ACK's TSval"
    );
    assert!(b.payload.is_empty());
    assert_eq!(a, b);
    assert_eq!(again, first, "byte for byte, MACs and IPv4 header too");
    assert_eq!(p.stats().syn_proxy_syn_retransmits.get(), 1);
    assert!(!p.syn_resends_due(), "taken");
    assert!(resend(&mut p, &snap, late).is_empty());
    assert_eq!(only_flow(&p).syn_retries(), 1);
    // The client's request again (its retransmission): deferred too (the
    // flow's second slot), and before the next interval no SYN again.
    assert_eq!(
        run_or_defer(&mut p, &snap, &mut list, &request, late + 100),
        DEFERRED
    );
    assert!(!p.syn_resends_due());
    // The real answers this one: the flow is established and the deferred
    // data goes on, translated.
    let ack = run(&mut p, &snap, &real_synack(), late + 200).expect("ACK to the real");
    assert_eq!((ack.dst, ack.flags), (R, ACK));
    assert_eq!((ack.seq, ack.ack), (ISN.wrapping_add(1), REAL_ISN + 1));
    let f = only_flow(&p);
    assert!(!f.is_proxy_waiting() && f.state() == FlowState::Established);
    assert_eq!(
        f.children,
        crate::flow::sender_mark(0, GATEWAY_MAC.0),
        "its SYN is done with: where its real sends from instead"
    );
    let out = release(&mut p, &snap, &mut list, late + 200);
    assert_eq!(out.len(), 2, "{out:?}");
    for o in out {
        let sent = o.expect("the request to the real");
        assert_eq!(
            (sent.dst, sent.seq, sent.ack),
            (R, ISN.wrapping_add(1), REAL_ISN + 1)
        );
        assert_eq!(sent.payload, request.payload);
    }
    assert_eq!(
        p.stats().real(0).packets.get(),
        4,
        "the first SYN, the ACK, the request twice: a SYN sent again is no client packet"
    );
}

#[test]
fn the_syn_goes_again_at_most_three_times_backing_off_then_the_flow_times_out() {
    let (snap, mut p) = setup("on", 64);
    let (cookie, first) = handshake_to_real_frame(&mut p, &snap);
    let t0 = NOW + 1;
    let ack = client_ack(cookie);
    // A client that keeps at it every 100 ms for 20 s.
    let mut at = Vec::new();
    for now in (t0 + 100..t0 + 20_000).step_by(100) {
        assert_eq!(
            run(&mut p, &snap, &ack, now),
            dropped(DropReason::SynProxyPending)
        );
        for r in resend(&mut p, &snap, now) {
            assert_eq!(r, Ok(first.clone()), "at {now}");
            at.push(now - t0);
        }
    }
    assert_eq!(SYN_RETRIES, 3);
    assert_eq!(
        at,
        vec![SYN_RTO_MS, 3 * SYN_RTO_MS, 7 * SYN_RTO_MS],
        "1 s, then 2 s, then 4 s after the last"
    );
    assert_eq!(p.stats().syn_proxy_syn_retransmits.get(), 3);
    let f = only_flow(&p);
    assert!(f.is_proxy_waiting());
    assert_eq!(f.syn_retries(), SYN_RETRIES);
    // Then the flow times out as any half-open flow, from its client's
    // last segment (the SYNs sent again are not packets of it).
    let last = t0 + 19_900;
    assert_eq!(f.last_seen, last);
    p.sweep(&snap, last + snap.timeouts.syn, 64);
    assert_eq!(p.flows().len(), 1, "not yet");
    p.sweep(&snap, last + snap.timeouts.syn + 1, 64);
    assert_eq!(p.flows().len(), 0, "expired");
}

/// The worker's loop every `step` ms from `from` to `to`: the timer, then
/// the pass; when each SYN went again (ms after `t0`), checked to be the
/// first.
fn timers_until(
    p: &mut Pipeline,
    snap: &Snapshot,
    first: &[u8],
    (t0, from, to, step): (u32, u32, u32, usize),
) -> Vec<u32> {
    let mut at = Vec::new();
    for now in (from..to).step_by(step) {
        p.syn_timers(snap, now);
        for r in resend(p, snap, now) {
            if is_reset(&r) {
                continue;
            }
            assert_eq!(r.as_deref(), Ok(first), "at {now}");
            at.push(now - t0);
        }
    }
    at
}

/// Whether a frame out of a resend pass is a RST (to a client given up
/// on), not a SYN to a real.
fn is_reset(r: &Result<Vec<u8>, Verdict>) -> bool {
    matches!(r, Ok(f) if Seg::read(f).flags & RST != 0)
}

#[test]
fn a_silent_clients_lost_syn_goes_again_on_the_timer() {
    // The server speaks first (SSH, SMTP): after its ACK the client sends
    // nothing, so only the timer can ask the real again.
    let (snap, mut p) = setup("on", 64);
    let (_, first) = handshake_to_real_frame(&mut p, &snap);
    let t0 = NOW + 1;
    // Before the proxy gives up on it (15 s: the next test).
    let at = timers_until(&mut p, &snap, &first, (t0, t0, t0 + 14_000, 10));
    assert_eq!(SYN_RETRIES, 3);
    assert_eq!(at.len(), 3, "{at:?}");
    // Due at 1 s, 3 s and 7 s; the timer looks every 50 ms.
    for (got, due) in at.iter().zip([1, 3, 7].map(|n| n * SYN_RTO_MS)) {
        assert!((due..due + SYN_WATCH_EVERY_MS + 10).contains(got), "{at:?}");
    }
    assert_eq!(p.stats().syn_proxy_syn_retransmits.get(), 3);
    assert_eq!(only_flow(&p).syn_retries(), SYN_RETRIES);
}

/// Found in review: a real that never answers left a client whose server
/// speaks first waiting for ever (it got our SYN-ACK, so it thinks it is
/// connected). 8 s after the last of the three re-sends (15 s after the
/// SYN) the proxy gives up: the client gets a RST at the number it
/// expects, and the flow ends.
#[test]
fn a_real_that_never_answers_is_given_up_on_and_the_client_reset() {
    let (snap, mut p) = setup("on", 64);
    let (cookie, first) = handshake_to_real_frame(&mut p, &snap);
    let t0 = NOW + 1;
    let give_up = (1 + 2 + 4 + 8) * SYN_RTO_MS;
    let at = timers_until(&mut p, &snap, &first, (t0, t0, t0 + give_up - 100, 10));
    assert_eq!(at.len(), 3, "{at:?}");
    assert_eq!(p.flows().len(), 1, "still waiting");
    let mut resets = Vec::new();
    for now in t0 + give_up - 100..t0 + give_up + 200 {
        p.syn_timers(&snap, now);
        for r in resend(&mut p, &snap, now) {
            resets.push((now - t0, Seg::read(&r.expect("sent"))));
        }
    }
    assert_eq!(resets.len(), 1, "one RST");
    let (when, rst) = &resets[0];
    assert!(
        (give_up..give_up + SYN_WATCH_EVERY_MS + 100).contains(when),
        "at {when}"
    );
    assert_eq!((rst.src, rst.dst, rst.flags), (V, C, RST | ACK));
    assert_eq!(
        rst.seq,
        cookie.wrapping_add(1),
        "where the client expects it"
    );
    assert_eq!(rst.ack, ISN.wrapping_add(1));
    assert_eq!(p.flows().len(), 0, "the flow ended");
    assert_eq!(p.conntrack.syn_watched(), 0);
}

#[test]
fn the_timer_and_the_clients_segments_share_one_back_off() {
    let (snap, mut p) = setup("on", 64);
    let (cookie, first) = handshake_to_real_frame(&mut p, &snap);
    let t0 = NOW + 1;
    let ack = client_ack(cookie);
    // The client's ACK again at 1.2 s, the timer running all along: one
    // SYN for the second, whichever asked first.
    let mut at = timers_until(&mut p, &snap, &first, (t0, t0, t0 + 1_200, 10));
    assert_eq!(
        run(&mut p, &snap, &ack, t0 + 1_200),
        dropped(DropReason::SynProxyPending)
    );
    at.extend(timers_until(
        &mut p,
        &snap,
        &first,
        (t0, t0 + 1_200, t0 + 2_900, 10),
    ));
    assert_eq!(at.len(), 1, "{at:?}");
    // The next is due 2 s after that one, not sooner for a segment.
    let last = t0 + at[0];
    assert_eq!(
        run(&mut p, &snap, &ack, last + 2 * SYN_RTO_MS - 1),
        dropped(DropReason::SynProxyPending)
    );
    assert!(resend(&mut p, &snap, last + 2 * SYN_RTO_MS - 1).is_empty());
    assert_eq!(p.stats().syn_proxy_syn_retransmits.get(), 1);
}

#[test]
fn the_timer_sends_nothing_for_a_flow_that_expired_before_the_sweep() {
    // Found by fuzzing: the first look of the timer after a long quiet
    // spell, the flow expired and not yet swept.
    let (snap, mut p) = setup("on", 64);
    let (_, first) = handshake_to_real_frame(&mut p, &snap);
    let t0 = NOW + 1;
    let late = t0 + snap.timeouts.syn + 1;
    let at = timers_until(&mut p, &snap, &first, (t0, late, late + 1, 1));
    assert!(at.is_empty(), "{at:?}");
    assert_eq!(p.conntrack.syn_watched(), 0, "forgotten");
}

#[test]
fn the_timer_forgets_a_flow_whose_real_answered() {
    let (snap, mut p) = setup("on", 64);
    let (_, first) = handshake_to_real_frame(&mut p, &snap);
    let t0 = NOW + 1;
    assert_eq!(p.conntrack.syn_watched(), 1);
    let ack = run(&mut p, &snap, &real_synack(), t0 + 500).expect("ACK to the real");
    assert_eq!((ack.dst, ack.flags), (R, ACK));
    let at = timers_until(&mut p, &snap, &first, (t0, t0 + 500, t0 + 20_000, 10));
    assert!(at.is_empty(), "{at:?}");
    assert!(p.conntrack.syn_watched() == 0);
    assert_eq!(p.stats().syn_proxy_syn_retransmits.get(), 0);
}

#[test]
fn only_a_segment_from_the_client_that_saw_the_cookie_sends_the_syn_again() {
    let (snap, mut p) = setup("on", 64);
    let mut list = DeferList::new(DEFER_SLOTS, DEFER_MS);
    let cookie = handshake_to_real(&mut p, &snap);
    let (isn1, ack) = (ISN.wrapping_add(1), cookie.wrapping_add(1));
    // The client's request, deferred before the interval.
    let request = early_data(cookie, 0, b"GET");
    assert_eq!(
        run_or_defer(&mut p, &snap, &mut list, &request, NOW + 1),
        DEFERRED
    );
    assert!(!p.syn_resends_due());
    // Past the interval (and within the deferred frame's time).
    let now = NOW + 1 + SYN_RTO_MS + DEFER_MS / 4;
    let data = |s: Seg| Seg {
        payload: vec![0x55; 10],
        ..s
    };
    for (what, s) in [
        (
            "an ACK number that is not the cookie's",
            seg(C, V, ACK, isn1, ack.wrapping_add(1)),
        ),
        (
            "data with such an ACK number",
            data(seg(C, V, PSHACK, isn1, ack.wrapping_sub(1))),
        ),
        (
            "bytes beyond the window our SYN-ACK offered",
            data(seg(C, V, PSHACK, isn1.wrapping_add(64231), ack)),
        ),
        (
            "a sequence number far from the client's",
            seg(C, V, ACK, isn1.wrapping_add(1 << 30), ack),
        ),
        ("no ACK flag", data(seg(C, V, 0x08, isn1, ack))),
        (
            "another client port",
            seg((CLIENT, C.1 + 1), V, ACK, isn1, ack),
        ),
    ] {
        let _ = run(&mut p, &snap, &s, now);
        assert!(!p.syn_resends_due(), "{what}");
    }
    // The client's SYN again: answered with the cookie again, nothing to
    // the real.
    let synack = run(&mut p, &snap, &client_syn(ISN), now).expect("SYN-ACK again");
    assert_eq!(synack.flags, SYNACK);
    assert!(!p.syn_resends_due(), "a SYN");
    // The deferred segment run again (a reload's pass) is not the client
    // asking.
    list.recheck();
    assert!(release(&mut p, &snap, &mut list, now).is_empty());
    assert_eq!(list.len(), 1);
    assert!(!p.syn_resends_due(), "a re-run");
    assert_eq!(only_flow(&p).syn_retries(), 0);
    assert_eq!(p.stats().syn_proxy_syn_retransmits.get(), 0);
    // The client's own retransmission does.
    assert_eq!(
        run_or_defer(&mut p, &snap, &mut list, &request, now),
        DEFERRED
    );
    assert!(p.syn_resends_due());
    assert_eq!(resend(&mut p, &snap, now).len(), 1);
}

#[test]
fn a_real_that_answers_before_the_pass_gets_no_syn_again() {
    let (snap, mut p) = setup("on", 64);
    let cookie = handshake_to_real(&mut p, &snap);
    let now = NOW + 1 + SYN_RTO_MS;
    let _ = run(&mut p, &snap, &client_ack(cookie), now);
    assert!(p.syn_resends_due());
    // Later in the same burst, its answer to the first SYN.
    run(&mut p, &snap, &real_synack(), now).expect("ACK to the real");
    assert!(resend(&mut p, &snap, now).is_empty(), "it no longer waits");
    assert_eq!(p.stats().syn_proxy_syn_retransmits.get(), 0);
    // Nor one the client reset meanwhile.
    let (snap, mut p) = setup("on", 64);
    let cookie = handshake_to_real(&mut p, &snap);
    let _ = run(&mut p, &snap, &client_ack(cookie), now);
    run(&mut p, &snap, &seg(C, V, RST, ISN.wrapping_add(1), 0), now).expect("the RST");
    assert!(resend(&mut p, &snap, now).is_empty(), "closed");
}

#[test]
fn a_syn_sent_again_waits_for_its_next_hop_as_the_first_did() {
    // No static neighbor for the real: the first SYN is held while ARP
    // asks, and so is the one sent again.
    let text = CONFIG.replace(
        "[[neighbors]]\naddress = \"198.18.0.11\"\nmac = \"02:00:00:00:00:11\"\n",
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
    let held = Verdict::Hold {
        port: 0,
        next_hop: REAL,
    };
    let mut b = VecBuf::from_bytes(&client_ack(cookie).frame());
    assert_eq!(p.process(&snap, 0, &mut b, NOW + 1), held);
    let first = b.data().to_vec();
    assert_eq!(p.take_arp_requests().count(), 1, "asked for the real");
    let now = NOW + 1 + SYN_RTO_MS;
    let _ = run(&mut p, &snap, &client_ack(cookie), now);
    let mut out = Vec::new();
    p.resend_syns(
        &snap,
        now,
        || Some(VecBuf::from_bytes(&[])),
        |b, v| out.push((b.data().to_vec(), v)),
    );
    assert_eq!(
        out,
        vec![(first, held)],
        "held the same way, the same bytes"
    );
    assert_eq!(p.stats().syn_proxy_syn_retransmits.get(), 1, "on its way");
    // No buffer to be had: nothing sent, nothing retransmitted, one
    // `no_mbuf` drop.
    let now = now + 2 * SYN_RTO_MS;
    let _ = run(&mut p, &snap, &client_ack(cookie), now);
    p.resend_syns(
        &snap,
        now,
        || None::<VecBuf>,
        |_, _| panic!("nothing to send"),
    );
    assert_eq!(p.stats().syn_proxy_syn_retransmits.get(), 1);
    assert_eq!(p.stats().dropped(DropReason::NoMbuf), 1);
}

#[test]
fn a_burst_of_due_flows_beyond_the_queue_waits_for_the_next_segment() {
    let (snap, mut p) = setup("on", 64);
    let n = SYN_RETRY_QUEUE + 1;
    let ports: Vec<u16> = (0..n).map(|i| 41000 + i as u16).collect();
    let mut cookies = Vec::new();
    for &port in &ports {
        let c = (CLIENT, port);
        let synack = run(
            &mut p,
            &snap,
            &Seg {
                src: c,
                ..client_syn(ISN)
            },
            NOW,
        )
        .unwrap();
        let ack = Seg {
            src: c,
            ..client_ack(synack.seq)
        };
        run(&mut p, &snap, &ack, NOW + 1).expect("SYN to the real");
        cookies.push(ack);
    }
    let now = NOW + 1 + SYN_RTO_MS;
    for ack in &cookies {
        let _ = run(&mut p, &snap, ack, now);
    }
    let sent = resend(&mut p, &snap, now);
    assert_eq!(sent.len(), SYN_RETRY_QUEUE);
    let ports_sent: Vec<u16> = sent
        .iter()
        .map(|r| Seg::read(r.as_ref().unwrap()).src.1)
        .collect();
    assert_eq!(ports_sent, ports[..SYN_RETRY_QUEUE], "in order");
    // The last one was not counted against its flow: its next segment.
    let last = cookies.last().unwrap();
    let _ = run(&mut p, &snap, last, now + 1);
    let sent = resend(&mut p, &snap, now + 1);
    assert_eq!(sent.len(), 1);
    assert_eq!(Seg::read(sent[0].as_ref().unwrap()).src, last.src);
    assert_eq!(
        p.stats().syn_proxy_syn_retransmits.get(),
        SYN_RETRY_QUEUE as u64 + 1
    );
}

// Found in review of the SYN re-send.

#[test]
fn the_timer_sends_no_syn_to_a_real_a_reload_removed() {
    // A waiting flow whose real the operator removed: every packet of it
    // now ends it (`real_removed`), and nothing should go to that real.
    let mut ids = Ids::default();
    let config = Config::parse(CONFIG).unwrap();
    let snap = Snapshot::compile(&config, &[OUR], 1, &mut ids, |_, _, _| true).unwrap();
    let mut p = Pipeline::new(0, 1, 64, Arc::new(WorkerStats::default()));
    p.adopt(&snap);
    p.set_cookie_key(KEY);
    let (_, _first) = handshake_to_real_frame(&mut p, &snap);
    // The reload: the service's real is now .12 (.11 removed).
    let text = CONFIG
        .replace(
            "address = \"198.18.0.11\"\nport = 8080",
            "address = \"198.18.0.12\"\nport = 8080",
        )
        .replace(
            "[[services]]",
            "[[neighbors]]\naddress = \"198.18.0.12\"\nmac = \"02:00:00:00:00:12\"\n[[services]]",
        );
    let config2 = Config::parse(&text).unwrap();
    let snap2 = Snapshot::compile(&config2, &[OUR], 1, &mut ids, |_, _, _| true).unwrap();
    p.adopt(&snap2);
    let f = only_flow(&p);
    assert!(!snap2.real_present(f.real_id), "the flow's real is gone");
    // The silent client's timer.
    let t0 = NOW + 1;
    let mut sent = Vec::new();
    for now in (t0..t0 + 10_000).step_by(10) {
        p.syn_timers(&snap2, now);
        for b in resend(&mut p, &snap2, now).into_iter().flatten() {
            sent.push((now - t0, Seg::read(&b).dst));
        }
    }
    assert!(
        sent.is_empty(),
        "SYNs sent to the removed real after the reload: {sent:?}"
    );
}

#[test]
fn the_timer_serves_every_watched_flow_soon_after_it_is_due() {
    // Many silent clients whose first SYN was lost at once (the reals'
    // link down for a moment): each should get its first SYN again
    // about 1 s later, and surely before its flow expires.
    let (snap, mut p) = setup("on", 1 << 14);
    let n: usize = 4000;
    let t0 = NOW + 1;
    let mut ports = Vec::new();
    for i in 0..n {
        let c = (CLIENT, 10000 + i as u16);
        let synack = run(
            &mut p,
            &snap,
            &Seg {
                src: c,
                ..client_syn(ISN)
            },
            NOW,
        )
        .unwrap();
        let ack = Seg {
            src: c,
            ..client_ack(synack.seq)
        };
        run(&mut p, &snap, &ack, t0).expect("SYN to the real");
        ports.push(c.1);
    }
    assert_eq!(p.conntrack.syn_watched(), n);
    let mut first_again = std::collections::HashMap::new();
    let end = t0 + snap.timeouts.syn + 8 * SYN_RTO_MS;
    // A poll a millisecond (an idle adaptive worker's pace; a busy one
    // polls far more often), a sweep every 10.
    for now in t0..end {
        p.syn_timers(&snap, now);
        for r in resend(&mut p, &snap, now) {
            if is_reset(&r) {
                continue;
            }
            let s = Seg::read(&r.expect("sent"));
            first_again.entry(s.src.1).or_insert(now - t0);
        }
        if now % 10 == 0 {
            p.sweep(&snap, now, 256);
        }
    }
    let never = ports
        .iter()
        .filter(|p| !first_again.contains_key(p))
        .count();
    let latest = first_again.values().max().copied().unwrap_or(0);
    assert!(
        never == 0 && latest < 2 * SYN_RTO_MS,
        "of {n} silent flows: {never} never got their SYN again before they expired; \
         the latest first re-send came {latest} ms after the lost SYN; \
         {} SYNs sent again in all",
        p.stats().syn_proxy_syn_retransmits.get()
    );
}

#[test]
fn a_syn_named_for_a_flow_is_not_sent_for_the_next_flow_on_its_entry() {
    // The client's ACK names its flow's SYN (due); in the same burst the
    // client resets, opens again on the same tuple and ISN (its SYN is
    // answered with the same cookie) and ACKs: a new flow, likely in the
    // same entry, same key. The pass must not give that new flow a second
    // SYN at once (the back-off is per flow: none is due for it yet).
    let (snap, mut p) = setup("on", 64);
    let (cookie, _) = handshake_to_real_frame(&mut p, &snap);
    let now = NOW + 1 + SYN_RTO_MS;
    let ack = client_ack(cookie);
    let _ = run(&mut p, &snap, &ack, now);
    assert!(p.syn_resends_due());
    run(&mut p, &snap, &seg(C, V, RST, ISN.wrapping_add(1), 0), now).expect("the RST");
    let synack = run(&mut p, &snap, &client_syn(ISN), now).expect("SYN-ACK");
    let ack2 = client_ack(synack.seq);
    let first = run(&mut p, &snap, &ack2, now).expect("the new flow's first SYN");
    assert_eq!((first.dst, first.flags), (R, SYN));
    let again = resend(&mut p, &snap, now);
    assert!(
        again.is_empty(),
        "the new flow's SYN went twice at {now}: {} re-sends, {} counted",
        again.len(),
        p.stats().syn_proxy_syn_retransmits.get()
    );
}

// A SYN sent again that finds no buffer; what a waiting flow ages by.

/// [`resend`] with a pool that is empty unless `pool`: how many buffers
/// were asked for, and the frames sent.
fn resend_from(
    p: &mut Pipeline,
    snap: &Snapshot,
    now: u32,
    pool: bool,
) -> (usize, Vec<Result<Vec<u8>, Verdict>>) {
    let mut asked = 0;
    let mut out = Vec::new();
    p.resend_syns(
        snap,
        now,
        || {
            asked += 1;
            pool.then(|| VecBuf::from_bytes(&[0xa5; 64])).map(|mut b| {
                assert!(b.trim(64));
                b
            })
        },
        |b, v| {
            out.push(match v {
                Verdict::Transmit(0) => Ok(b.data().to_vec()),
                v => Err(v),
            })
        },
    );
    (asked, out)
}

#[test]
fn a_syn_that_finds_no_buffer_is_counted_and_costs_its_flow_no_attempt() {
    // A silent client; the pool is empty from 0.9 s to 1.5 s after the
    // lost SYN, when its first re-send falls due.
    let (snap, mut p) = setup("on", 64);
    let (_, first) = handshake_to_real_frame(&mut p, &snap);
    let t0 = NOW + 1;
    let (mut asked, mut sent) = (0, Vec::new());
    // Up to just before the proxy would give up on it (8 s after its last
    // re-send, at about 7.5 s).
    for now in t0..t0 + 15_000 {
        p.syn_timers(&snap, now);
        let empty = (t0 + 900..t0 + 1_500).contains(&now);
        let (n, out) = resend_from(&mut p, &snap, now, !empty);
        if empty {
            asked += n;
        }
        for r in out.iter().filter(|r| !is_reset(r)) {
            assert_eq!(r.as_deref(), Ok(&first[..]), "at {now}");
            sent.push(now - t0);
        }
    }
    // The timer looks every 50 ms: the flow was due at each look from
    // 1 s on (one buffer asked for each, none in between: no spinning),
    // each counted, and none cost it one of its three.
    let looks = 500 / SYN_WATCH_EVERY_MS as usize;
    assert!(
        (looks..=looks + 1).contains(&asked),
        "{asked} buffers asked for"
    );
    assert_eq!(p.stats().dropped(DropReason::NoMbuf), asked as u64);
    assert_eq!(p.stats().dropped_total(), asked as u64);
    // Its first re-send went at the first look with a buffer, and the
    // back-off counts from it: 2 s, then 4 s; three in all.
    assert_eq!(sent.len(), 3, "{sent:?}");
    let base = sent[0];
    assert!(
        (1_500..1_500 + SYN_WATCH_EVERY_MS).contains(&base),
        "{sent:?}"
    );
    for (got, due) in sent[1..].iter().zip([2, 6].map(|n| base + n * SYN_RTO_MS)) {
        assert!(
            (due..due + SYN_WATCH_EVERY_MS + 1).contains(got),
            "{sent:?}"
        );
    }
    assert_eq!(p.stats().syn_proxy_syn_retransmits.get(), 3);
    assert_eq!(only_flow(&p).syn_retries(), SYN_RETRIES);
}

#[test]
fn a_clients_segment_asks_again_after_a_syn_that_found_no_buffer() {
    let (snap, mut p) = setup("on", 64);
    let (cookie, first) = handshake_to_real_frame(&mut p, &snap);
    let ack = client_ack(cookie);
    let now = NOW + 1 + SYN_RTO_MS;
    // Due: the client's ACK names it, the pass finds no buffer.
    let _ = run(&mut p, &snap, &ack, now);
    assert_eq!(resend_from(&mut p, &snap, now, false), (1, Vec::new()));
    assert_eq!(p.stats().dropped(DropReason::NoMbuf), 1);
    assert!(!p.syn_resends_due(), "not again within the pass");
    assert_eq!(only_flow(&p).syn_retries(), 0, "given back");
    // Its next segment, a moment later: still due, sent now.
    let _ = run(&mut p, &snap, &ack, now + 1);
    let (asked, out) = resend_from(&mut p, &snap, now + 1, true);
    assert_eq!((asked, out), (1, vec![Ok(first)]));
    assert_eq!(only_flow(&p).syn_retries(), 1);
    // And the next is due 2 s after that one, not after the lost one.
    let _ = run(&mut p, &snap, &ack, now + 2 * SYN_RTO_MS);
    assert_eq!(resend_from(&mut p, &snap, now + 2 * SYN_RTO_MS, true).0, 0);
    let _ = run(&mut p, &snap, &ack, now + 1 + 2 * SYN_RTO_MS);
    assert_eq!(
        resend_from(&mut p, &snap, now + 1 + 2 * SYN_RTO_MS, true).0,
        1
    );
    assert_eq!(p.stats().syn_proxy_syn_retransmits.get(), 2);
    assert_eq!(p.stats().dropped(DropReason::NoMbuf), 1);
}

#[test]
fn the_last_re_send_that_finds_no_buffer_is_not_forgotten_by_the_timer() {
    // The client's segment names the flow's third re-send, the timer looks
    // before the pass (as the worker loop runs them), and the pass finds
    // no buffer: the flow must still be watched, so that the timer sends
    // it later although its client says nothing more.
    let (snap, mut p) = setup("on", 64);
    let (cookie, first) = handshake_to_real_frame(&mut p, &snap);
    let t0 = NOW + 1;
    let at = timers_until(&mut p, &snap, &first, (t0, t0, t0 + 3_100, 10));
    assert_eq!(at.len(), 2, "{at:?}");
    let due = t0 + at[1] + 4 * SYN_RTO_MS;
    let _ = run(&mut p, &snap, &client_ack(cookie), due);
    p.syn_timers(&snap, due);
    assert_eq!(resend_from(&mut p, &snap, due, false), (1, Vec::new()));
    assert_eq!(only_flow(&p).syn_retries(), 2);
    assert_eq!(p.conntrack.syn_watched(), 1, "still watched");
    let later = timers_until(&mut p, &snap, &first, (t0, due + 1, due + 200, 1));
    assert_eq!(later.len(), 1, "{later:?}");
    assert_eq!(only_flow(&p).syn_retries(), SYN_RETRIES);
    assert_eq!(p.stats().syn_proxy_syn_retransmits.get(), 3);
}

#[test]
fn a_waiting_flow_ages_from_its_clients_last_segment_not_from_syns_sent_again() {
    // A silent client, a silent real: the timer sends the SYN again at
    // 1, 3 and 7 s, and the flow still expires `tcp_syn_timeout` after
    // the client's ACK, as any half-open flow.
    let (snap, mut p) = setup("on", 64);
    let (cookie, first) = handshake_to_real_frame(&mut p, &snap);
    let t0 = NOW + 1;
    let at = timers_until(&mut p, &snap, &first, (t0, t0, t0 + 8_000, 10));
    assert_eq!(at.len(), 3, "{at:?}");
    assert_eq!(only_flow(&p).last_seen, t0, "the client's ACK");
    p.sweep(&snap, t0 + snap.timeouts.syn, 64);
    assert_eq!(p.flows().len(), 1, "not yet");
    p.sweep(&snap, t0 + snap.timeouts.syn + 1, 64);
    assert_eq!(p.flows().len(), 0, "expired on its SYN timeout");
    // A client that speaks keeps it as long as it does: what it sends is
    // the flow's last packet, re-send or not.
    let (snap, mut p) = setup("on", 64);
    let (cookie2, _) = handshake_to_real_frame(&mut p, &snap);
    assert_eq!(cookie2, cookie);
    let spoke = t0 + 500;
    assert_eq!(
        run(&mut p, &snap, &client_ack(cookie), spoke),
        dropped(DropReason::SynProxyPending)
    );
    assert!(!p.syn_resends_due(), "not due yet");
    assert_eq!(only_flow(&p).last_seen, spoke);
    // Not a segment a stranger could send blindly (not the cookie's ACK
    // number).
    let forged = Seg {
        ack: cookie.wrapping_add(2),
        ..client_ack(cookie)
    };
    let _ = run(&mut p, &snap, &forged, spoke + 100);
    assert_eq!(only_flow(&p).last_seen, spoke);
    p.sweep(&snap, spoke + snap.timeouts.syn, 64);
    assert_eq!(p.flows().len(), 1, "not yet");
    p.sweep(&snap, spoke + snap.timeouts.syn + 1, 64);
    assert_eq!(p.flows().len(), 0, "expired");
}

#[test]
fn a_full_table_does_not_take_a_syn_sent_again_for_use() {
    // Four entries: A waits since t0 (its real silent), B, C and D since
    // t0 + 500. At t0 + 1 s the timer sends A's SYN again. A fifth flow
    // then needs an entry: the oldest unused unconfirmed one is A (the
    // appliance's own SYN is not a packet of it), not B.
    let (snap, mut p) = setup("on", 4);
    let t0 = NOW + 1;
    let open = |p: &mut Pipeline, port: u16, at: u32| {
        let c = (CLIENT, port);
        let synack = run(
            p,
            &snap,
            &Seg {
                src: c,
                ..client_syn(ISN)
            },
            at - 1,
        )
        .unwrap();
        let ack = Seg {
            src: c,
            ..client_ack(synack.seq)
        };
        let syn = run(p, &snap, &ack, at).expect("SYN to the real");
        assert_eq!((syn.src, syn.flags), (c, SYN));
    };
    open(&mut p, 41000, t0);
    for port in 41001..41004 {
        open(&mut p, port, t0 + 500);
    }
    assert_eq!(p.flows().len(), 4);
    let mut again = Vec::new();
    for now in (t0 + 500..t0 + 1_100).step_by(10) {
        p.syn_timers(&snap, now);
        for r in resend(&mut p, &snap, now) {
            again.push(Seg::read(&r.expect("sent")).src.1);
        }
    }
    assert_eq!(again, vec![41000], "A's SYN, once");
    open(&mut p, 41004, t0 + 1_100);
    let ports: Vec<u16> = p
        .flows()
        .entries()
        .into_iter()
        .map(|e| p.flows().get(e).client_port())
        .collect();
    assert_eq!(p.flows().len(), 4);
    assert!(
        !ports.contains(&41000) && ports.contains(&41001),
        "A should have made room, not B: {ports:?}"
    );
    assert_eq!(p.stats().flows_evicted.get(), 1);
}

/// A Maglev service behind the SYN proxy (`mode`: on or auto).
fn setup_mh(mode: &str, capacity: usize) -> (Snapshot, Pipeline) {
    let text = CONFIG
        .replace("syn_proxy = \"on\"", &format!("syn_proxy = \"{mode}\""))
        .replace("port = 80\n", "port = 80\nscheduler = \"mh\"\n");
    setup_text(&text, capacity)
}

/// Found in review: while engaged, only a SYN and an ACK were the proxy's;
/// anything else for no flow went on as without it, and a Maglev service
/// picks a segment up mid-stream: spoofed flagless, PSH, FIN or RST
/// segments made flows, reached the real, and evicted a client waiting
/// for its real.
#[test]
fn engaged_the_proxy_makes_no_flow_of_a_segment_without_ack_even_for_maglev() {
    let (snap, mut p) = setup_mh("on", 64);
    for (i, flags) in [0x00u8, 0x08, 0x01, RST, RST | ACK].into_iter().enumerate() {
        let s = seg((CLIENT, 41000 + i as u16), V, flags, 7, 7);
        assert_eq!(
            run(&mut p, &snap, &s, NOW),
            dropped(DropReason::NoFlow),
            "flags {flags:#x}"
        );
    }
    assert_eq!(p.flows().len(), 0);
    // A flood of them leaves a client waiting for its real where it is.
    handshake_to_real(&mut p, &snap);
    for i in 0..200u32 {
        let src = Ipv4Addr::from(u32::from(Ipv4Addr::new(203, 0, 113, 0)) + i);
        let _ = run(&mut p, &snap, &seg((src, 1024), V, 0x00, i, 0), NOW + 1);
    }
    assert_eq!(p.flows().len(), 1);
    let e = p.flows().entries()[0];
    assert!(p.flows().get(e).is_proxy_waiting());
}

/// A deferred segment whose flow is gone makes none, whatever its flags
/// and the proxy's state: on standby a Maglev service would have picked a
/// segment without ACK up mid-stream.
#[test]
fn a_deferred_segment_without_a_flow_makes_none_on_standby_either() {
    let (snap, mut p) = setup_mh("auto", 64);
    let mut b = VecBuf::from_bytes(&seg(C, V, 0x08, 7, 0).frame());
    assert_eq!(
        p.process_deferred(&snap, 0, &mut b, NOW),
        Verdict::Drop(DropReason::SynProxyPending)
    );
    assert_eq!(p.flows().len(), 0);
    // Not deferred, the same segment is picked up as without the proxy.
    let mut b = VecBuf::from_bytes(&seg(C, V, 0x08, 7, 0).frame());
    assert_eq!(p.process(&snap, 0, &mut b, NOW), Verdict::Transmit(0));
    assert_eq!(p.flows().len(), 1);
}

/// Found in audit: one blind SYN on the tuple of a proxied flow the client
/// had half-closed ended the flow, and its translation with it: the real's
/// response then met no flow (`on`), or went out untranslated through a
/// new plain flow (`auto` on standby). A SYN on a half-closed flow now
/// changes nothing, and the response still reaches the client.
#[test]
fn a_blind_syn_does_not_end_a_half_closed_proxied_flow() {
    let (snap, mut p) = setup("on", 64);
    let cookie = established(&mut p, &snap);
    // The client half-closes (shutdown(SHUT_WR)) and waits for the response.
    let fin = Seg {
        options: ts_opt(5003, NOW),
        ..seg(C, V, FINACK, ISN.wrapping_add(1), cookie.wrapping_add(1))
    };
    run(&mut p, &snap, &fin, NOW + 3).expect("FIN to the real");
    assert_eq!(only_flow(&p).state(), FlowState::FinWait);
    // A stranger who knows only the tuple: one SYN, any ISN, no ACK.
    let _ = run(&mut p, &snap, &seg(C, V, SYN, 0x0bad_5eed, 0), NOW + 4);
    assert_eq!(only_flow(&p).state(), FlowState::FinWait);
    // The real's response, in the real's sequence space.
    let reply = Seg {
        payload: b"HTTP/1.0 200 OK\r\n\r\n".to_vec(),
        options: ts_opt(780, 5003),
        ..seg(R, C, PSHACK, REAL_ISN + 1, ISN.wrapping_add(2))
    };
    let back = run(&mut p, &snap, &reply, NOW + 5).map(|s| (s.dst, s.seq));
    assert_eq!(
        back,
        Ok((C, cookie.wrapping_add(1))),
        "the response still reaches the client"
    );
}

/// Found in audit: a stranger's SYN (no ACK needed) up to 1 MiB ahead of a
/// proxied flow's client moved its tracking, and a RST at its end then
/// closed the flow: about 2,048 blind pairs. A SYN on an established flow
/// moves nothing.
#[test]
fn a_blind_syn_then_rst_does_not_close_a_proxied_flow() {
    let (snap, mut p) = setup("on", 64);
    established(&mut p, &snap);
    assert_eq!(only_flow(&p).trust(), crate::flow::Trust::Confirmed);
    let ahead = ISN.wrapping_add(1 + (700 << 10));
    let _ = run(&mut p, &snap, &seg(C, V, SYN, ahead, 0), NOW + 3);
    let _ = run(
        &mut p,
        &snap,
        &seg(C, V, RST, ahead.wrapping_add(1), 0),
        NOW + 4,
    );
    assert_eq!(
        only_flow(&p).state(),
        FlowState::Established,
        "closed blind"
    );
}

/// Found in review: a new NAT flow takes its reply key from an unconfirmed
/// holder, and a flow the SYN proxy answered is unconfirmed until its
/// real answers: a stranger's SYN to another VIP on the same real, from
/// the client's address and port, ended it, and the real's SYN-ACK went
/// to the client from the wrong VIP, which it never asks again for (its
/// handshake is done). The proxied flow keeps its key.
#[test]
fn a_strangers_syn_to_another_vip_does_not_end_a_waiting_proxied_flow() {
    let text = CONFIG.to_string()
        + "[[services]]\nname = \"other\"\nvip = \"198.18.1.101\"\nport = 80\n\
           syn_proxy = \"off\"\n[[services.reals]]\naddress = \"198.18.0.11\"\nport = 8080\n";
    let (snap, mut p) = setup_text(&text, 64);
    handshake_to_real(&mut p, &snap);
    assert_eq!(p.flows().len(), 1, "waiting for the real");
    let other = (Ipv4Addr::new(198, 18, 1, 101), 80);
    assert_eq!(
        run(&mut p, &snap, &seg(C, other, SYN, 77, 0), NOW + 1).err(),
        Some(Verdict::Drop(DropReason::TupleInUse))
    );
    let real_synack = seg(R, C, SYNACK, REAL_ISN, ISN.wrapping_add(1));
    let r = run(&mut p, &snap, &real_synack, NOW + 2);
    assert!(
        matches!(&r, Ok(ack) if ack.dst == R && ack.flags == ACK),
        "the real's SYN-ACK no longer completes the client's connection: {r:?}"
    );
}

/// The SYN timer looks at no more than `SYN_WATCH_BUDGET` watched flows a
/// poll (found in audit: a look at a full watch list of both families, a
/// random flow-table read each, took up to a millisecond of one poll); a
/// longer list is looked at over the next polls in a row, not a tick
/// later, and every flow of it is seen.
#[test]
fn the_syn_timer_looks_at_a_bounded_number_of_flows_a_poll() {
    use crate::flow::synproxy::SYN_WATCH_BUDGET;
    let (snap, mut p) = setup("on", 4096);
    let n = 2 * SYN_WATCH_BUDGET + 100;
    for i in 0..n {
        let c = (CLIENT, 20_000 + i as u16);
        let syn = Seg {
            src: c,
            ..client_syn(ISN)
        };
        let synack = run(&mut p, &snap, &syn, NOW).expect("SYN-ACK");
        let ack = Seg {
            src: c,
            ..client_ack(synack.seq)
        };
        let mut b = VecBuf::from_bytes(&ack.frame());
        assert_eq!(p.process(&snap, 0, &mut b, NOW + 1), Verdict::Transmit(0));
    }
    assert_eq!(p.conntrack.syn_watched(), n);
    // Long after: every one of them expired, so each look forgets the
    // flows it sees.
    let later = NOW + 3_600_000;
    let mut watched = vec![p.conntrack.syn_watched()];
    for _ in 0..4 {
        p.syn_timers(&snap, later);
        watched.push(p.conntrack.syn_watched());
    }
    assert_eq!(
        watched,
        [n, n - SYN_WATCH_BUDGET, n - 2 * SYN_WATCH_BUDGET, 0, 0],
        "flows watched after each poll"
    );
}

/// A client's new ISN, as after its connect() gave up, or an application
/// that retries from the same port.
const ISN2: u32 = 0x7000_0000;

/// The client's SYN of a new connection from the same port (ISN `isn`)
/// and its ACK of the cookie SYN-ACK it gets: what became of the ACK.
fn start_again(p: &mut Pipeline, snap: &Snapshot, isn: u32, now: u32) -> Result<Seg, Verdict> {
    let synack = run(p, snap, &client_syn(isn), now).expect("a cookie SYN-ACK");
    assert_eq!((synack.flags, synack.ack), (SYNACK, isn.wrapping_add(1)));
    let ack = Seg {
        options: ts_opt(6001, now),
        ..seg(C, V, ACK, isn.wrapping_add(1), synack.seq.wrapping_add(1))
    };
    run(p, snap, &ack, now + 1)
}

/// A client that starts a new handshake (a new ISN, from the same port)
/// while its first proxied flow still waits for the real was stuck until
/// the proxy gave up (~15 s): the new SYN got a cookie, but the ACK of it
/// was dropped as early data of the waiting flow, whose cookie it does
/// not acknowledge. As Linux conntrack lets a new SYN through on a flow
/// the real has not confirmed, the ACK of the new cookie now replaces the
/// waiting flow: a SYN with the new ISN goes to a real, the old flow's
/// deferred data is dropped, not sent into the new connection, and the
/// real's late answer to the old SYN completes nothing.
#[test]
fn a_client_that_starts_again_while_its_flow_waits_gets_a_new_flow() {
    let (snap, mut p) = setup("on", 64);
    let mut list = DeferList::new(DEFER_SLOTS, DEFER_MS);
    let cookie = handshake_to_real(&mut p, &snap);
    let early = early_data(cookie, 0, b"old request");
    assert_eq!(
        run_or_defer(&mut p, &snap, &mut list, &early, NOW + 2),
        DEFERRED
    );
    let syn = start_again(&mut p, &snap, ISN2, NOW + 3_000).expect("a SYN to the real");
    assert_eq!((syn.src, syn.dst, syn.flags), (C, R, SYN));
    assert_eq!(syn.seq, ISN2, "the client's new ISN");
    assert_eq!(syn.opts().timestamps.map(|t| t.val), Some(6001));
    let f = only_flow(&p);
    assert!(f.is_proxy_waiting());
    assert_eq!(f.proxy_syn().map(|s| s.isn), Some(ISN2));
    assert_eq!(p.stats().syn_proxy_cookies_accepted.get(), 2);
    super::tests::assert_real_gauges_match_tables(&p, &snap);
    // The old flow's deferred data leaves its slot, to no one.
    assert!(list.due(&p, NOW + 3_001));
    let out = release(&mut p, &snap, &mut list, NOW + 3_001);
    assert_eq!(out, vec![dropped(DropReason::SynProxyPending)]);
    assert!(list.is_empty());
    // The real's late SYN-ACK to the old SYN completes nothing.
    assert_eq!(
        run(&mut p, &snap, &real_synack(), NOW + 3_002),
        dropped(DropReason::SynProxyPending)
    );
    // Its answer to the new one does.
    let answer = Seg {
        ..seg(R, C, SYNACK, REAL_ISN, ISN2.wrapping_add(1))
    };
    let ack = run(&mut p, &snap, &answer, NOW + 3_003).expect("the ACK to the real");
    assert_eq!(
        (ack.dst, ack.flags, ack.seq),
        (R, ACK, ISN2.wrapping_add(1))
    );
    assert_eq!(only_flow(&p).state(), FlowState::Established);
    super::tests::assert_real_gauges_match_tables(&p, &snap);
}

/// What may replace a waiting flow is an ACK whose cookie checks out for
/// its tuple: a blind ACK with any other number is dropped as before and
/// leaves the flow as it was (neither replaced nor refreshed); and a flow
/// its real confirmed is never replaced, even by a good cookie for a new
/// ISN (one a stranger who sees no traffic cannot have; here made by
/// another pipeline with the same key).
#[test]
fn only_a_good_cookie_replaces_a_waiting_flow_and_never_a_confirmed_one() {
    let (snap, mut p) = setup("on", 64);
    let cookie = handshake_to_real(&mut p, &snap);
    let before = only_flow(&p);
    for ack in [cookie.wrapping_add(2), cookie ^ 0x8000_0000, 0] {
        let blind = seg(C, V, ACK, ISN2.wrapping_add(1), ack);
        assert_eq!(
            run(&mut p, &snap, &blind, NOW + 500),
            dropped(DropReason::SynProxyPending)
        );
    }
    assert_eq!(only_flow(&p), before, "not replaced, not refreshed");
    assert_eq!(p.stats().syn_proxy_cookies_accepted.get(), 1);

    let (snap, mut p) = setup("on", 64);
    established(&mut p, &snap);
    let before = only_flow(&p);
    let (_, mut other) = setup("on", 64);
    let synack = run(&mut other, &snap, &client_syn(ISN2), NOW + 3).expect("a cookie");
    let ack = seg(C, V, ACK, ISN2.wrapping_add(1), synack.seq.wrapping_add(1));
    let _ = run(&mut p, &snap, &ack, NOW + 4);
    let after = only_flow(&p);
    assert_eq!(after.state(), FlowState::Established);
    assert_eq!(after.proxy_to_client(), before.proxy_to_client());
    assert_eq!(after.proxy_to_real(), before.proxy_to_real());
    assert_eq!(p.stats().syn_proxy_cookies_accepted.get(), 1);
}

/// A re-send of the old flow's SYN named in the same burst as the
/// restart is not sent (the entry is another flow's now, or gone), and
/// the new flow's SYN goes again on its own schedule, with the new ISN.
#[test]
fn a_restart_sends_the_old_syn_no_more_and_the_new_one_again_when_due() {
    let (snap, mut p) = setup("on", 64);
    let cookie = handshake_to_real(&mut p, &snap);
    // The client's ACK again, a second later: the old SYN is due again.
    assert_eq!(
        run(&mut p, &snap, &client_ack(cookie), NOW + 1_500),
        dropped(DropReason::SynProxyPending)
    );
    assert!(p.syn_resends_due());
    start_again(&mut p, &snap, ISN2, NOW + 1_600).expect("a SYN to the real");
    assert!(resend(&mut p, &snap, NOW + 1_601).is_empty(), "not the old");
    p.syn_timers(&snap, NOW + 2_700);
    let out = resend(&mut p, &snap, NOW + 2_700);
    assert_eq!(out.len(), 1, "the new SYN again");
    let syn = Seg::read(out[0].as_ref().expect("sent"));
    assert_eq!((syn.dst, syn.flags, syn.seq), (R, SYN, ISN2));
    assert_eq!(p.stats().syn_proxy_syn_retransmits.get(), 1);
}

/// A restart opens a flow, so its ACK passes the check a new flow's first
/// packet passes: from another port than the one its source's network is
/// on, it is dropped (`reverse_path`) and the waiting flow stays.
#[test]
fn a_restart_from_another_ports_network_is_refused() {
    const LAN_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 3]);
    let text = CONFIG.replace(
        "[[neighbors]]\naddress = \"198.18.0.1\"",
        "[[ports]]\nname = \"lan\"\ndevice = \"net_null1\"\naddress = \"10.9.0.2/24\"\n\
         mac = \"02:00:00:00:00:03\"\n[[neighbors]]\naddress = \"10.9.0.50\"\n\
         mac = \"02:00:00:00:00:50\"\n[[neighbors]]\naddress = \"198.18.0.1\"",
    );
    let config = Config::parse(&text).unwrap();
    let snap = Snapshot::compile(
        &config,
        &[OUR, LAN_MAC],
        1,
        &mut Ids::default(),
        |_, _, _| true,
    )
    .unwrap();
    let mut p = Pipeline::new(0, 1, 64, Arc::new(WorkerStats::default()));
    p.adopt(&snap);
    p.set_cookie_key(KEY);
    let host = (Ipv4Addr::new(10, 9, 0, 50), 40000);
    // Frames as they come in on `port`: to its MAC.
    let on = |p: &mut Pipeline, s: &Seg, port: usize, now: u32| {
        let mut f = s.frame_from(MacAddr([2, 0, 0, 0, 0, 0x50]));
        if port == 1 {
            f[..6].copy_from_slice(&LAN_MAC.0);
        }
        let mut b = VecBuf::from_bytes(&f);
        let v = p.process(&snap, port, &mut b, now);
        (v, Seg::read(b.data()))
    };
    let syn = Seg {
        src: host,
        ..client_syn(ISN)
    };
    let (v, synack) = on(&mut p, &syn, 1, NOW);
    assert_eq!(v, Verdict::Transmit(1), "the cookie SYN-ACK");
    let ack = seg(host, V, ACK, ISN + 1, synack.seq.wrapping_add(1));
    assert_eq!(on(&mut p, &ack, 1, NOW + 1).0, Verdict::Transmit(0));
    let before = only_flow(&p);
    let syn2 = Seg {
        src: host,
        ..client_syn(ISN2)
    };
    let (v, synack2) = on(&mut p, &syn2, 1, NOW + 2);
    assert_eq!(v, Verdict::Transmit(1));
    let ack2 = seg(host, V, ACK, ISN2 + 1, synack2.seq.wrapping_add(1));
    assert_eq!(
        on(&mut p, &ack2, 0, NOW + 3).0,
        Verdict::Drop(DropReason::ReversePath),
        "on wan"
    );
    assert_eq!(only_flow(&p), before);
    let (v, syn) = on(&mut p, &ack2, 1, NOW + 4);
    assert_eq!((v, syn.flags, syn.seq), (Verdict::Transmit(0), SYN, ISN2));
}

/// Found in review: a real that holds another connection on the tuple
/// (the client's last one in TIME_WAIT, which answers a SYN below its
/// sequence with an ACK, or one half open after its SYN-ACK was lost and
/// the client started again) answered the proxy's SYN with an ACK of that
/// one, which the proxy dropped: the flow waited for the give-up, 15 s.
/// The real gets a RST at the number it acknowledged (RFC 9293 3.10.7.3),
/// only when the ACK comes from where the real is reached, and the SYN
/// sent again opens the connection.
#[test]
fn a_real_that_acks_another_connection_gets_a_reset_and_the_syn_again() {
    let real_mac = MacAddr([2, 0, 0, 0, 0, 0x11]);
    let (snap, mut p) = setup("on", 64);
    let (cookie, first) = handshake_to_real_frame(&mut p, &snap);
    let sent_at = NOW + 1;
    let stale = seg(R, C, ACK, 0x0bad_0001, 0x00c0_ffee);
    // From elsewhere on the segment: believed in nothing, answered with
    // nothing.
    assert_eq!(
        run(&mut p, &snap, &stale, sent_at + 1),
        dropped(DropReason::SynProxyPending)
    );
    let rst = run_from(&mut p, &snap, &stale, real_mac, sent_at + 1).expect("a RST to the real");
    assert_eq!(
        (rst.src, rst.dst, rst.flags, rst.seq, rst.ack, rst.window),
        (C, R, RST, 0x00c0_ffee, 0, 0)
    );
    assert!(rst.payload.is_empty() && rst.options.is_empty());
    let f = only_flow(&p);
    assert!(
        f.is_proxy_waiting() && f.state() == FlowState::SynSent,
        "nothing of the flow moved"
    );
    // The client's ACK again, an interval later: the SYN goes again, and
    // the real, its old connection gone, answers it.
    let late = sent_at + SYN_RTO_MS;
    assert_eq!(
        run(&mut p, &snap, &client_ack(cookie), late),
        dropped(DropReason::SynProxyPending)
    );
    let again = resend(&mut p, &snap, late);
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].clone().expect("sent"), first);
    let ack = run_from(&mut p, &snap, &real_synack(), real_mac, late + 1).expect("ACK to the real");
    assert_eq!((ack.dst, ack.flags), (R, ACK));
    assert_eq!(only_flow(&p).state(), FlowState::Established);
}

/// Found in audit (time): the cookie's period number was the worker
/// clock's upper 16 bits, so a cookie seen once (by an earlier holder of
/// the client's address, or an on-path observer) was good again 2^32 ms
/// (49.7 days) later, when the clock came round. The pipeline counts the
/// clock's wraps and the cookie covers them.
#[test]
fn a_cookie_is_not_good_again_when_the_clock_comes_round() {
    let (snap, mut p) = setup("on", 64);
    let synack = run(&mut p, &snap, &client_syn(ISN), NOW).expect("SYN-ACK");
    let ack = client_ack(synack.seq);
    // The worker's clock goes round: its sweeps see every stretch of it.
    for at in [0x4000_0000, 0x8000_0000, 0xc000_0000, u32::MAX - 1000] {
        p.sweep(&snap, at, 16);
    }
    assert_eq!(
        run(&mut p, &snap, &ack, NOW + 1),
        dropped(DropReason::SynProxyBadCookie)
    );
    // A fresh SYN's cookie checks as ever.
    let synack = run(&mut p, &snap, &client_syn(ISN), NOW + 2).expect("SYN-ACK");
    let mut b = VecBuf::from_bytes(&client_ack(synack.seq).frame());
    assert_eq!(p.process(&snap, 0, &mut b, NOW + 3), Verdict::Transmit(0));
}
