//! The SYN proxy's steps on the wire for NAT66 services: what
//! `pipeline/synproxy.rs` does for IPv4 (design: `crate::synproxy`), over
//! IPv6 and in the IPv6 flow table. The flow side (cookie checks, state,
//! translations, deferrals, pressure) is the same generic code as IPv4's;
//! only the frames and the table differ. The cookie covers the IPv6
//! 4-tuple whole, with the same key and time slots; the SYN-ACK announces
//! [`Snapshot::syn_proxy_mss6`] (port MTU - 60, as Linux does for IPv6).
//! A lost SYN to a NAT66 real is sent again as an IPv4 one is (the same
//! `SynRetries` rules, in the IPv6 table; `resend_syns6`, which
//! `Pipeline::resend_syns` runs after the IPv4 table's). All of it is out
//! of line and cold: an IPv6 flow the proxy did not answer pays what an
//! IPv4 one does, a branch on its step.

use std::net::{IpAddr, Ipv6Addr};

use super::{Ipv6Meta, Pipeline, Ports, Verdict};
use crate::buffer::PacketBuf;
use crate::flow::{FlowKey, ProxyStep, ProxySyn, Segment, Target, Waiting};
use crate::forward::IP;
use crate::snapshot::Snapshot;
use crate::stats::DropReason;
use crate::synproxy::frames::{Seen, Segment as Frame};
use crate::synproxy::frames6::{read6, write6};
use crate::synproxy::{CookieOptions, CookieTuple, ADVERTISED_WSCALE, SYNACK_WINDOW};
use crate::wire::ipv6::DEFAULT_HOP_LIMIT;
use crate::wire::tcp_options::{TcpOptions, Timestamps};
use crate::wire::{EtherType, EthernetFrame, TcpFlags};

/// What comes of a proxy step for a client's IPv6 packet.
pub(super) enum Next6 {
    /// Done: this is the frame's fate.
    Done(Verdict),
    /// Forward it as any packet of this (new, not proxied) flow.
    Forward(Target<Ipv6Addr>),
}

impl Pipeline {
    /// A client's SYN to answer, or ACK to check (`step`), for no flow in
    /// the IPv6 table; or early data to defer.
    #[allow(clippy::too_many_arguments)]
    #[cold]
    #[inline(never)]
    pub(super) fn syn_proxy_client6<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        service: usize,
        pkt: &mut B,
        ip: &Ipv6Meta,
        ports: Ports,
        seg: Segment,
        key: &FlowKey<Ipv6Addr>,
        step: ProxyStep,
        now: u32,
    ) -> Next6 {
        if step == ProxyStep::Defer {
            // Kept as it is, for later (see `flow::synproxy::Deferrals`);
            // its client is the frame's source (`DeferList` reads it).
            return Next6::Done(Verdict::Defer6 {
                client_port: ports.src,
            });
        }
        let clock = self.cookie_clock(now);
        let Some(ct) = self.conntrack6.as_mut() else {
            return Next6::Done(Verdict::Drop(DropReason::UnsupportedEthertype));
        };
        if ct.defer_rerun() {
            // A deferred segment whose flow is gone: it makes no new one.
            return Next6::Done(Verdict::Drop(DropReason::SynProxyPending));
        }
        let seen = read6(pkt.data(), ip.l4_start(), ip.end(), ip.src, ip.dst);
        let tuple = CookieTuple {
            client: ip.src,
            client_port: ports.src,
            vip: ip.dst,
            vip_port: ports.dst,
        };
        match step {
            ProxyStep::AnswerSyn => Next6::Done(match seen {
                Ok(seen) => self.answer_syn6(snap, pkt, ip, ports, &tuple, &seen, now),
                Err(r) => Verdict::Drop(r),
            }),
            ProxyStep::CheckCookie { .. } | ProxyStep::Restart => {
                let checked = seen.as_ref().ok().and_then(|s| {
                    let (isn, cookie) = (s.seq.wrapping_sub(1), s.ack.wrapping_sub(1));
                    self.cookies
                        .check(&tuple, isn, cookie, clock)
                        .map(|opts| (*s, isn, cookie, opts))
                });
                let engaged = match step {
                    ProxyStep::CheckCookie { engaged } => engaged,
                    // As over IPv4 (`Pipeline::syn_proxy_client`): the
                    // waiting flow makes way for the new one.
                    _ if checked.is_some()
                        && snap.client_elsewhere(self.in_port, IpAddr::V6(ip.src)) =>
                    {
                        return Next6::Done(Verdict::Drop(DropReason::ReversePath))
                    }
                    _ => match checked {
                        Some(_) if ct.syn_proxy_replace(key, now) => true,
                        _ => return Next6::Done(Verdict::Drop(DropReason::SynProxyPending)),
                    },
                };
                match (checked, seen) {
                    (Some((s, isn, cookie, opts)), _) => Next6::Done(
                        self.syn_to_real6(snap, service, pkt, ip, key, &s, isn, cookie, &opts, now),
                    ),
                    (None, Err(r)) if engaged => Next6::Done(Verdict::Drop(r)),
                    (None, _) if engaged => {
                        Next6::Done(Verdict::Drop(DropReason::SynProxyBadCookie))
                    }
                    // On standby (auto without pressure): as without the
                    // proxy (a Maglev pick-up, else no_flow).
                    (None, _) => {
                        let Some(ct) = self.conntrack6.as_mut() else {
                            return Next6::Done(Verdict::Drop(DropReason::UnsupportedEthertype));
                        };
                        match ct.syn_proxy_fallback(
                            snap,
                            service,
                            key,
                            seg,
                            now,
                            &mut self.schedulers,
                        ) {
                            Ok(t) => Next6::Forward(t),
                            Err(r) => Next6::Done(Verdict::Drop(r)),
                        }
                    }
                }
            }
            ProxyStep::None | ProxyStep::Translate | ProxyStep::Defer => {
                debug_assert!(false, "not a step for a new connection");
                Next6::Done(Verdict::Drop(DropReason::NoFlow))
            }
        }
    }

    /// The SYN becomes the SYN-ACK carrying the cookie, back to the client.
    #[allow(clippy::too_many_arguments)]
    fn answer_syn6<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        pkt: &mut B,
        ip: &Ipv6Meta,
        ports: Ports,
        tuple: &CookieTuple<Ipv6Addr>,
        seen: &Seen,
        now: u32,
    ) -> Verdict {
        let o = seen.options;
        let carried = CookieOptions::from_syn(1, o.mss, o.wscale, o.sack_permitted);
        let cookie = self
            .cookies
            .make(tuple, seen.seq, &carried, self.cookie_clock(now));
        let answer = Frame {
            src: ip.dst,
            dst: ip.src,
            src_port: ports.dst,
            dst_port: ports.src,
            seq: cookie,
            ack: seen.seq.wrapping_add(1),
            flags: TcpFlags::SYN | TcpFlags::ACK,
            window: SYNACK_WINDOW,
            ttl: DEFAULT_HOP_LIMIT,
            options: TcpOptions {
                mss: Some(snap.syn_proxy_mss6),
                wscale: o.wscale.map(|_| ADVERTISED_WSCALE),
                sack_permitted: o.sack_permitted,
                timestamps: o.timestamps.map(|t| Timestamps {
                    val: now.wrapping_add(self.cookies.ts_offset(ip.src, ip.dst)),
                    ecr: t.val,
                }),
            },
        };
        let Some(end) = write6(pkt, &answer) else {
            return Verdict::Drop(DropReason::NoHeadroom);
        };
        let v = self.egress.route6(snap, pkt, ip.src, end, now);
        if matches!(v, Verdict::Transmit(_) | Verdict::Hold6 { .. }) {
            self.stats.syn_proxy_cookies_sent.incr();
        }
        v
    }

    /// The client's ACK with a good cookie: a flow in the IPv6 table, and
    /// the ACK becomes the SYN to its real.
    #[allow(clippy::too_many_arguments)]
    fn syn_to_real6<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        service: usize,
        pkt: &mut B,
        ip: &Ipv6Meta,
        key: &FlowKey<Ipv6Addr>,
        seen: &Seen,
        isn: u32,
        cookie: u32,
        opts: &CookieOptions,
        now: u32,
    ) -> Verdict {
        let Some(ct) = self.conntrack6.as_mut() else {
            return Verdict::Drop(DropReason::UnsupportedEthertype);
        };
        let (target, syn) = match ct.syn_proxy_create(
            snap,
            service,
            key,
            isn,
            cookie,
            opts,
            seen.options.timestamps,
            seen.window,
            // Forwarded: one hop less, as NAT66 does (ipv6() checked > 1).
            ip.hop_limit - 1,
            now,
            &mut self.schedulers,
        ) {
            Ok(t) => t,
            Err(r) => return Verdict::Drop(r),
        };
        self.stats.syn_proxy_cookies_accepted.incr();
        let len = pkt.len() as u64;
        let Some(end) = write6(pkt, &syn_segment6(&syn)) else {
            return Verdict::Drop(DropReason::NoHeadroom);
        };
        let v = self.egress.route6(snap, pkt, target.real, end, now);
        self.count_forwarded(v, target.real_id, len);
        v
    }

    /// `Pipeline::resend_syns` for the IPv6 table: each NAT66 flow named
    /// due (`flow::synproxy::SynRetries`, the same rules as IPv4's) that
    /// still waits gets its SYN again, rebuilt from its entry, in a buffer
    /// `alloc` gives, routed as the first was; `out` gets it with its
    /// verdict and the pipeline (a `Hold6` names its next hop there). No
    /// buffer: dropped (`no_mbuf`) and given back to its flow, as IPv4's.
    pub(super) fn resend_syns6<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        now: u32,
        alloc: &mut impl FnMut() -> Option<B>,
        out: &mut impl FnMut(&Pipeline, B, Verdict),
    ) {
        let Some(ct) = self.conntrack6.as_mut() else {
            return;
        };
        if !ct.syn_retries_due() && !ct.proxy_resets_due() {
            return;
        }
        let due = ct.take_syn_retries();
        for named in due.iter() {
            let Some(syn) = self
                .conntrack6
                .as_ref()
                .and_then(|ct| ct.syn_to_resend(snap, named))
            else {
                continue;
            };
            let Some(mut pkt) = alloc() else {
                if let Some(ct) = self.conntrack6.as_mut() {
                    ct.syn_resend_unsent(named);
                }
                self.stats.drop_packet(DropReason::NoMbuf);
                continue;
            };
            let v = self.write_made6(snap, &mut pkt, &syn_segment6(&syn), now);
            if matches!(v, Verdict::Transmit(_) | Verdict::Hold6 { .. }) {
                self.stats.syn_proxy_syn_retransmits.incr();
            }
            out(self, pkt, v);
        }
        let resets = self
            .conntrack6
            .as_mut()
            .map(|ct| ct.take_proxy_resets())
            .unwrap_or_default();
        for r in resets {
            let Some(mut pkt) = alloc() else {
                self.stats.drop_packet(DropReason::NoMbuf);
                continue;
            };
            let seg = super::synproxy::reset_segment(&r, crate::wire::ipv6::DEFAULT_HOP_LIMIT);
            let v = self.write_made6(snap, &mut pkt, &seg, now);
            out(self, pkt, v);
        }
    }

    /// [`Pipeline::write_made`] for IPv6.
    fn write_made6<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        pkt: &mut B,
        seg: &crate::synproxy::frames::Segment<Ipv6Addr>,
        now: u32,
    ) -> Verdict {
        // A new buffer: the Ethernet header's type here, its addresses
        // from egress, as for the first.
        if !pkt.set_len(IP) {
            return Verdict::Drop(DropReason::NoHeadroom);
        }
        EthernetFrame::new_unchecked(pkt.data_mut()).set_ethertype(EtherType::Ipv6);
        let Some(end) = write6(pkt, seg) else {
            return Verdict::Drop(DropReason::NoHeadroom);
        };
        self.egress.route6(snap, pkt, seg.dst, end, now)
    }

    /// The real's SYN-ACK for a waiting IPv6 flow becomes the ACK to the
    /// real; the flow is established.
    #[allow(clippy::too_many_arguments)]
    #[cold]
    #[inline(never)]
    pub(super) fn syn_proxy_ack_to_real6<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        pkt: &mut B,
        ip: &Ipv6Meta,
        ports: Ports,
        seg: Segment,
        w: &Waiting,
        real_id: u32,
        now: u32,
    ) -> Verdict {
        let seen = match read6(pkt.data(), ip.l4_start(), ip.end(), ip.src, ip.dst) {
            Ok(s) => s,
            Err(r) => return Verdict::Drop(r),
        };
        if seen.ack != w.client_next {
            // Not an answer to the SYN we sent.
            return Verdict::Drop(DropReason::SynProxyPending);
        }
        let Some(ct) = self.conntrack6.as_mut() else {
            return Verdict::Drop(DropReason::UnsupportedEthertype);
        };
        let real_ts = seen.options.timestamps;
        let f = ct.syn_proxy_answered(w, seg, seen.options.wscale, real_ts.map(|t| t.val), now);
        let ack = Frame {
            src: ip.dst,
            dst: ip.src,
            src_port: ports.dst,
            dst_port: ports.src,
            seq: seen.ack,
            ack: seen.seq.wrapping_add(1),
            flags: TcpFlags::ACK,
            window: f.proxy_to_real().rescale(w.window),
            ttl: DEFAULT_HOP_LIMIT,
            options: TcpOptions {
                // The real's SYN-ACK echoes the client's TSval (which the
                // SYN carried): the ACK carries it again and echoes the
                // real's.
                timestamps: real_ts.filter(|_| w.timestamps).map(|t| Timestamps {
                    val: t.ecr,
                    ecr: t.val,
                }),
                ..TcpOptions::default()
            },
        };
        let len = pkt.len() as u64;
        let Some(end) = write6(pkt, &ack) else {
            return Verdict::Drop(DropReason::NoHeadroom);
        };
        let v = self.egress.route6(snap, pkt, ip.src, end, now);
        self.count_forwarded(v, real_id, len);
        v
    }
}

impl Pipeline {
    /// [`Pipeline::syn_proxy_reset_real`] over IPv6.
    pub(super) fn syn_proxy_reset_real6<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        pkt: &mut B,
        ip: &Ipv6Meta,
        ports: Ports,
        real_id: u32,
        now: u32,
    ) -> Verdict {
        let seen = match read6(pkt.data(), ip.l4_start(), ip.end(), ip.src, ip.dst) {
            Ok(s) => s,
            Err(r) => return Verdict::Drop(r),
        };
        let rst = Frame {
            src: ip.dst,
            dst: ip.src,
            src_port: ports.dst,
            dst_port: ports.src,
            seq: seen.ack,
            ack: 0,
            flags: TcpFlags::RST,
            window: 0,
            ttl: DEFAULT_HOP_LIMIT,
            options: TcpOptions::default(),
        };
        let len = pkt.len() as u64;
        let Some(end) = write6(pkt, &rst) else {
            return Verdict::Drop(DropReason::NoHeadroom);
        };
        let v = self.egress.route6(snap, pkt, ip.src, end, now);
        self.count_forwarded(v, real_id, len);
        v
    }
}

/// The SYN to a NAT66 real as a segment to write: the first and each one
/// sent again alike.
fn syn_segment6(syn: &ProxySyn<Ipv6Addr>) -> Frame<Ipv6Addr> {
    Frame {
        src: syn.client,
        dst: syn.real,
        src_port: syn.client_port,
        dst_port: syn.real_port,
        seq: syn.isn,
        ack: 0,
        flags: TcpFlags::SYN,
        window: syn.window,
        ttl: syn.ttl,
        options: syn.options,
    }
}
